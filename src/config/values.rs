//! Value types shared by flags and the configuration file: each parses from the text a
//! flag takes (`FromStr`, so clap names the flag in its error) and from TOML (serde, so
//! the error carries the file position), and prints back as the file takes it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::{DomainPattern, NetSet, DENY_INTERNAL};

/// Implements serde for a type through its `FromStr` and `Display`.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Implements serde for a clap `ValueEnum` by its value names.
macro_rules! serde_via_value_enum {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let v = self.to_possible_value().expect("no skipped variants");
                s.serialize_str(v.get_name())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                <$t as ValueEnum>::from_str(&text, false).map_err(|_| {
                    let allowed: Vec<String> = <$t as ValueEnum>::value_variants()
                        .iter()
                        .filter_map(|v| v.to_possible_value())
                        .map(|v| format!("`{}`", v.get_name()))
                        .collect();
                    serde::de::Error::custom(format!(
                        "`{text}` is not one of {}",
                        allowed.join(", ")
                    ))
                })
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}
serde_via_value_enum!(LogLevel);

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PreferFamily {
    Ipv6,
    Ipv4,
}
serde_via_value_enum!(PreferFamily);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ipv6Mode {
    PerConnection,
    PerSession,
}
serde_via_value_enum!(Ipv6Mode);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionName {
    Allow,
    Deny,
}
serde_via_value_enum!(ActionName);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CommandName {
    Connect,
    Bind,
    Udp,
}
serde_via_value_enum!(CommandName);

/// Seconds, fractions allowed; more than zero. A number in TOML (`10`, `0.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

impl Secs {
    fn from_f64(v: f64) -> Result<Secs, String> {
        if !v.is_finite() || v <= 0.0 || v > 1e9 {
            return Err(format!("{v} must be more than 0 seconds (and at most 1e9)"));
        }
        Ok(Secs(Duration::from_secs_f64(v)))
    }
}

impl FromStr for Secs {
    type Err = String;
    fn from_str(s: &str) -> Result<Secs, String> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number of seconds"))?;
        Secs::from_f64(v).map_err(|_| format!("`{s}` must be more than 0 seconds"))
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Num {
            Int(i64),
            Float(f64),
        }
        let v = match Num::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a number of seconds, like 10 or 0.5"))?
        {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        };
        Secs::from_f64(v).map_err(serde::de::Error::custom)
    }
}

/// CPU numbers, in the order given, without repeats (`0-3,8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;
    fn from_str(s: &str) -> Result<CpuList, String> {
        let mut cpus = Vec::new();
        for part in s.split(',').map(str::trim) {
            let bad = || format!("`{part}` in `{s}` is not a CPU or a range like 0-3");
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (
                    lo.parse().map_err(|_| bad())?,
                    hi.parse().map_err(|_| bad())?,
                ),
                None => {
                    let n = part.parse().map_err(|_| bad())?;
                    (n, n)
                }
            };
            if lo > hi || hi >= 4096 {
                return Err(bad());
            }
            for cpu in lo..=hi {
                if !cpus.contains(&cpu) {
                    cpus.push(cpu);
                }
            }
        }
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&parts.join(","))
    }
}
serde_via_str!(CpuList);

/// An inclusive port range `LO-HI`, LO ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<PortRange, String> {
        let bad = || format!("`{s}` is not a port range like 40000-40999");
        let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
        let (lo, hi): (u16, u16) = (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        );
        if lo == 0 || lo > hi {
            return Err(bad());
        }
        Ok(PortRange(lo, hi))
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}
serde_via_str!(PortRange);

/// A destination port or range in a rule: `443` or `"8000-8999"` (0 allowed: BIND and
/// UDP ASSOCIATE may name port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec(pub u16, pub u16);

impl FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<PortSpec, String> {
        let bad = || format!("`{s}` is not a port (0-65535) or a range like 8000-8999");
        let (lo, hi) = match s.split_once('-') {
            Some((lo, hi)) => (lo.trim().parse(), hi.trim().parse()),
            None => (s.trim().parse(), s.trim().parse()),
        };
        match (lo, hi) {
            (Ok(lo), Ok(hi)) if lo <= hi => Ok(PortSpec(lo, hi)),
            _ => Err(bad()),
        }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == self.1 {
            s.serialize_u16(self.0)
        } else {
            s.collect_str(&format_args!("{}-{}", self.0, self.1))
        }
    }
}

/// A value TOML may give as a number or as text with a unit or range.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrText::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a port like 443 or a range like \"8000-8999\"")
        })? {
            NumOrText::Num(n) => u16::try_from(n)
                .map(|p| PortSpec(p, p))
                .map_err(|_| serde::de::Error::custom(format!("{n} is not a port (0-65535)"))),
            NumOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Bytes per second: a number with an optional unit, `k`/`M`/`G` (×1000) or
/// `Ki`/`Mi`/`Gi` (×1024), optionally followed by `B` or `B/s`: `10M`, `512KiB/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u64);

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        let bad =
            || format!("`{s}` is not a rate: give bytes per second like 1000000, 10M or 512KiB/s");
        let t = s.trim();
        let t = t.strip_suffix("/s").unwrap_or(t);
        let t = t.strip_suffix('B').unwrap_or(t);
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit {
            "" => 1,
            "k" | "K" => 1000,
            "M" => 1000 * 1000,
            "G" => 1000 * 1000 * 1000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            _ => return Err(bad()),
        };
        match n.checked_mul(mult) {
            Some(v) if v > 0 => Ok(Rate(v)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrText::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected bytes per second, like 1000000 or \"10M\"")
        })? {
            NumOrText::Num(n) if n > 0 => Ok(Rate(n as u64)),
            NumOrText::Num(n) => Err(serde::de::Error::custom(format!("{n} must be more than 0"))),
            NumOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A network: a CIDR or a bare address (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        if let Ok(net) = s.trim().parse::<IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        s.trim()
            .parse::<IpAddr>()
            .map(|ip| Cidr(IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is not a network like 10.0.0.0/8 or an address"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
serde_via_str!(Cidr);

/// An entry of a rule's address list: a network or `deny-internal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEntry {
    pub text: String,
    pub set: NetSet,
}

impl FromStr for NetEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<NetEntry, String> {
        let set = NetSet::parse_entry(s)?;
        let text = if s.trim() == DENY_INTERNAL {
            DENY_INTERNAL.to_string()
        } else {
            set.to_string()
        };
        Ok(NetEntry { text, set })
    }
}

impl fmt::Display for NetEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
serde_via_str!(NetEntry);

/// A rule's domain pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEntry(pub DomainPattern);

impl FromStr for DomainEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<DomainEntry, String> {
        DomainPattern::parse(s).map(DomainEntry)
    }
}

impl fmt::Display for DomainEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
serde_via_str!(DomainEntry);

/// An access log destination: a path, or `-` for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    File(std::path::PathBuf),
}

impl FromStr for LogTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<LogTarget, String> {
        match s {
            "" => Err("give a file path, or `-` for stderr".into()),
            "-" => Ok(LogTarget::Stderr),
            path => Ok(LogTarget::File(path.into())),
        }
    }
}

impl fmt::Display for LogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogTarget::Stderr => f.write_str("-"),
            LogTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}
serde_via_str!(LogTarget);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let p = |s: &str| s.parse::<CpuList>();
        assert_eq!(p("0-3,8").unwrap().0, vec![0, 1, 2, 3, 8]);
        assert_eq!(p("2").unwrap().0, vec![2]);
        assert_eq!(p("1,1-2").unwrap().0, vec![1, 2]);
        assert_eq!(p("0-3,8").unwrap().to_string(), "0,1,2,3,8");
        assert!(p("3-1").is_err());
        assert!(p("a").is_err());
        assert!(p("").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!("0.5".parse::<Secs>().unwrap().0, Duration::from_millis(500));
        assert_eq!("300".parse::<Secs>().unwrap().0, Duration::from_secs(300));
        for bad in ["0", "-1", "NaN", "ten", "inf"] {
            assert!(bad.parse::<Secs>().is_err(), "{bad}");
        }
    }

    #[test]
    fn port_ranges_and_specs() {
        assert_eq!(
            "40000-40999".parse::<PortRange>().unwrap(),
            PortRange(40000, 40999)
        );
        assert_eq!("5-5".parse::<PortRange>().unwrap(), PortRange(5, 5));
        for bad in ["0-5", "9-5", "9"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
        assert_eq!("443".parse::<PortSpec>().unwrap(), PortSpec(443, 443));
        assert_eq!("80-90".parse::<PortSpec>().unwrap(), PortSpec(80, 90));
        assert!("90-80".parse::<PortSpec>().is_err());
        assert!("70000".parse::<PortSpec>().is_err());
    }

    #[test]
    fn rates() {
        let r = |s: &str| s.parse::<Rate>().map(|r| r.0);
        assert_eq!(r("1000"), Ok(1000));
        assert_eq!(r("10M"), Ok(10_000_000));
        assert_eq!(r("10MB/s"), Ok(10_000_000));
        assert_eq!(r("512KiB/s"), Ok(512 * 1024));
        assert_eq!(r("1Gi"), Ok(1 << 30));
        for bad in ["0", "", "10X", "M", "1.5M", "-3", "99999999999G"] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert!("10.0.0.0/40".parse::<Cidr>().is_err());
        assert!(
            DENY_INTERNAL.parse::<Cidr>().is_err(),
            "only rules take the built-in"
        );
        let e: NetEntry = DENY_INTERNAL.parse().unwrap();
        assert_eq!(e.to_string(), DENY_INTERNAL);
        assert!(e.set.contains("169.254.169.254".parse().unwrap()));
    }

    #[test]
    fn log_targets() {
        assert_eq!("-".parse::<LogTarget>().unwrap(), LogTarget::Stderr);
        assert_eq!(
            "/var/log/x".parse::<LogTarget>().unwrap().to_string(),
            "/var/log/x"
        );
        assert!("".parse::<LogTarget>().is_err());
    }
}
