//! TCP sockets of this network namespace as /proc/net/tcp{,6} lists them: how a test sees
//! connections the server under test still holds, direct descriptors included (those are
//! missing from its /proc/PID/fd).

use std::net::SocketAddr;

use super::udp::parse_proc_addr;

/// A TCP state, numbered as in the kernel's `include/net/tcp_states.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpState(pub u8);

impl TcpState {
    pub const ESTABLISHED: TcpState = TcpState(1);
    pub const CLOSE_WAIT: TcpState = TcpState(8);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
}

/// Every TCP socket in this network namespace, time-wait ones included.
pub fn tcp_sockets() -> Vec<TcpSocket> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        out.extend(text.lines().skip(1).filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = parse_proc_addr(fields.next()?)?;
            let remote = parse_proc_addr(fields.next()?)?;
            let state = u8::from_str_radix(fields.next()?, 16).ok()?;
            Some(TcpSocket {
                local,
                remote,
                state: TcpState(state),
            })
        }));
    }
    out
}

/// Connections accepted on `listener` that the accepting side has not closed: still
/// established, or in close-wait (the peer closed, the server did not). A server that
/// forgets a connection leaves it in one of these states for good. (A connection the
/// peer reset is gone from the table at once, whoever holds it: count those some other
/// way.)
pub fn unclosed_accepted(listener: SocketAddr) -> Vec<TcpSocket> {
    tcp_sockets()
        .into_iter()
        .filter(|s| {
            s.local == listener
                && (s.state == TcpState::ESTABLISHED || s.state == TcpState::CLOSE_WAIT)
        })
        .collect()
}

/// ICMP destination-unreachable messages this network namespace has sent (ICMPv6 with
/// `v6`), from /proc/net/snmp{,6}.
pub fn icmp_unreachables_sent(v6: bool) -> u64 {
    if v6 {
        let text = std::fs::read_to_string("/proc/net/snmp6").expect("read /proc/net/snmp6");
        return text
            .lines()
            .find_map(|l| l.strip_prefix("Icmp6OutDestUnreachs"))
            .and_then(|v| v.trim().parse().ok())
            .expect("Icmp6OutDestUnreachs in /proc/net/snmp6");
    }
    let text = std::fs::read_to_string("/proc/net/snmp").expect("read /proc/net/snmp");
    // A header line of names, then a line of values, both starting with "Icmp:".
    let mut rows = text.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (rows.next(), rows.next());
    names
        .zip(values)
        .and_then(|(n, v)| {
            n.split_whitespace()
                .zip(v.split_whitespace())
                .find(|(name, _)| *name == "OutDestUnreachs")
                .and_then(|(_, value)| value.parse().ok())
        })
        .expect("Icmp OutDestUnreachs in /proc/net/snmp")
}

/// The TCP addresses process `pid` listens on: the listening sockets of /proc/net/tcp{,6}
/// whose inode is one of the process's descriptors. How a test learns a port the server
/// picked but does not print (the metrics port with `--metrics-listen 127.0.0.1:0`).
pub fn listening(pid: u32) -> Vec<SocketAddr> {
    const LISTEN: u8 = 0x0a;
    let inodes: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|link| {
                    let link = link.to_str()?.to_string();
                    link.strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        out.extend(text.lines().skip(1).filter_map(|line| {
            // sl local remote st queues timer retransmits uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (state == LISTEN && inodes.contains(&inode))
                .then(|| parse_proc_addr(fields[1]))
                .flatten()
        }));
    }
    out.sort();
    out.dedup();
    out
}
