//! The server's access log as a log shipper reads it: one JSON object per line.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::wait::wait_until;

/// The keys every line has, `null` when unknown.
pub const KEYS: [&str; 14] = [
    "time",
    "shard",
    "client",
    "via",
    "user",
    "command",
    "target",
    "connected",
    "outbound",
    "reply",
    "bytes_up",
    "bytes_down",
    "duration_ms",
    "close",
];

/// The entries of a log text; panics on a line that is not a JSON object with exactly
/// [`KEYS`].
#[track_caller]
pub fn parse(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l:?}"));
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("access log line is not an object: {l:?}"));
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            let mut want = KEYS.to_vec();
            keys.sort_unstable();
            want.sort_unstable();
            assert_eq!(keys, want, "keys of {l}");
            v
        })
        .collect()
}

/// The entries in the file at `path` (none if it does not exist yet). A last line
/// without its newline is still being written and is left for the next read.
#[track_caller]
pub fn read(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text[..text.rfind('\n').map_or(0, |i| i + 1)]),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read the access log {}: {e}", path.display()),
    }
}

/// Waits up to `within` until `path` holds at least `n` entries; panics with what it
/// holds otherwise.
#[track_caller]
pub fn wait_entries(path: &Path, n: usize, within: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    let done = wait_until(within, || {
        got = read(path);
        got.len() >= n
    });
    assert!(
        done,
        "{} holds {} entries after {within:?}, expected {n}: {got:#?}",
        path.display(),
        got.len()
    );
    got
}

/// The entry whose `client` is `client`; panics unless there is exactly one.
#[track_caller]
pub fn for_client(entries: &[Value], client: SocketAddr) -> &Value {
    let want = client.to_string();
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["client"].as_str() == Some(want.as_str()))
        .collect();
    match found[..] {
        [one] => one,
        _ => panic!(
            "{} entries for client {client}, expected one: {entries:#?}",
            found.len()
        ),
    }
}

/// A string field, or `None` for `null`.
#[track_caller]
pub fn str_field<'a>(entry: &'a Value, key: &str) -> Option<&'a str> {
    match &entry[key] {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => panic!("{key} is neither a string nor null: {other} in {entry}"),
    }
}

/// A number field.
#[track_caller]
pub fn u64_field(entry: &Value, key: &str) -> u64 {
    entry[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a whole number in {entry}"))
}
