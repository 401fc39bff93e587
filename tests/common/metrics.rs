//! The server's Prometheus endpoint as a scraper sees it: where it listens, one scrape
//! over plain HTTP, the exposition parsed into series, and `promtool check metrics`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::server::Server;
use super::wait::{read_until_closed, wait_until, IO_TIMEOUT};

/// The address of the server's metrics listener, from the `metrics on ADDR` line it
/// prints after its `listening on` lines.
#[track_caller]
pub fn metrics_addr(server: &Server) -> SocketAddr {
    let line = server.wait_stdout_line("metrics on ", Duration::from_secs(10));
    let Some(addr) = line else {
        panic!("no `metrics on` line; stderr:\n{}", server.stderr());
    };
    addr.trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad metrics address {addr:?}: {e}"))
}

/// A raw HTTP exchange: status code, the head's lines, the body.
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `GET path` with `Connection: close`, read to the end.
#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to the metrics listener {addr}: {e}"));
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("send the request to {addr}: {e}"));
    let bytes = read_until_closed(&mut stream, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("read the answer of {addr}{path}: {e}"));
    let text = String::from_utf8(bytes).expect("the answer is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Response {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// One scrape of `/metrics`: must answer 200 with the Prometheus text format.
#[track_caller]
pub fn scrape(addr: SocketAddr) -> Metrics {
    let resp = get(addr, "/metrics");
    assert_eq!(resp.status, 200, "GET /metrics: {}", resp.head);
    let ctype = resp.header("content-type").unwrap_or_default();
    assert!(
        ctype.starts_with("text/plain") && ctype.contains("version=0.0.4"),
        "content type {ctype:?}"
    );
    Metrics::parse(&resp.body)
}

/// Scrapes until `cond` holds, for up to `within`; returns the last scrape either way
/// (the caller asserts on it, so a failure shows the values seen).
pub fn scrape_until(
    addr: SocketAddr,
    within: Duration,
    mut cond: impl FnMut(&Metrics) -> bool,
) -> Metrics {
    let mut last = scrape(addr);
    wait_until(within, || {
        last = scrape(addr);
        cond(&last)
    });
    last
}

/// One sample: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the text format; panics on a line it cannot read.
    #[track_caller]
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("unreadable sample {l:?}")))
            .collect();
        Metrics {
            text: text.to_string(),
            samples,
        }
    }

    /// The series of `name` whose labels include every pair of `labels`.
    pub fn series<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the matching series; 0 when there is none (a counter not yet counted).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name, labels).map(|s| s.value).sum()
    }

    /// Whether any series of `name` is exposed at all.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The `# TYPE` of `name`.
    pub fn type_of(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            let rest = l.strip_prefix("# TYPE ")?;
            let (n, t) = rest.split_once(' ')?;
            (n == name).then(|| t.trim())
        })
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `k="v",k2="v2"}` (escapes \\ \" \n in values); returns the labels and what follows.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches(',');
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        s = &after[end + 1..];
    }
}

/// Runs `promtool check metrics` on `text`; panics with promtool's complaints unless it
/// passes without any (lint problems included).
#[track_caller]
pub fn promtool_check(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is missing: install the Debian package `prometheus` \
             (apt-get install prometheus), which provides /usr/bin/promtool"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let exited = wait_until(IO_TIMEOUT, || child.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("promtool check metrics still running after {IO_TIMEOUT:?}");
    }
    let status = child.wait().expect("promtool's status");
    let mut out = String::new();
    let _ = child.stdout.take().expect("piped").read_to_string(&mut out);
    let _ = child.stderr.take().expect("piped").read_to_string(&mut out);
    assert!(
        status.success() && out.trim().is_empty(),
        "promtool check metrics: {status}\n{out}\n--- exposition ---\n{text}"
    );
}
