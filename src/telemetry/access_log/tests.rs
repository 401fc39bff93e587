use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::mpsc::Sender;
use std::time::Instant;

use serde_json::Value;

use super::*;

fn full_entry() -> AccessEntry {
    AccessEntry {
        shard: 3,
        client: "203.0.113.7:50412".parse().unwrap(),
        via: Some("10.0.0.2:41000".parse().unwrap()),
        user: Some("alice \"the\" admin".into()),
        command: Some(Command::Connect),
        target: Some(Address::Domain("example.com".into(), 443)),
        connected: Some("[2001:db8::1]:443".parse().unwrap()),
        outbound: Some("192.0.2.10:40312".parse().unwrap()),
        reply: Some(ReplyCode::Succeeded),
        bytes_up: 517,
        bytes_down: 1 << 40,
        duration: Duration::from_micros(1_234_567),
        close: CloseReason::Completed,
    }
}

fn bare_entry(shard: usize) -> AccessEntry {
    AccessEntry {
        shard,
        client: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9)),
        via: None,
        user: None,
        command: None,
        target: None,
        connected: None,
        outbound: None,
        reply: None,
        bytes_up: 0,
        bytes_down: 0,
        duration: Duration::ZERO,
        close: CloseReason::HandshakeTimeout,
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn lines_are_json_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone())).unwrap();
    let before = SystemTime::now();
    log.record(full_entry());
    log.record(bare_entry(1));
    assert!(log.flush());
    let got = lines(&path);
    assert_eq!(got.len(), 2);
    let l = &got[0];
    let time = l["time"].as_str().unwrap();
    assert_eq!(time.len(), "2026-03-21T10:11:12.345Z".len(), "{time}");
    assert!(time.ends_with('Z'), "UTC: {time}");
    let stamped: jiff::Timestamp = time.parse().unwrap();
    let before = jiff::Timestamp::try_from(before).unwrap();
    let gap = stamped.as_millisecond() - before.as_millisecond();
    assert!(
        (-1..60_000).contains(&gap),
        "stamped at record time: {gap} ms"
    );
    assert_eq!(l["shard"], 3);
    assert_eq!(l["client"], "203.0.113.7:50412");
    assert_eq!(l["via"], "10.0.0.2:41000");
    assert_eq!(l["user"], "alice \"the\" admin");
    assert_eq!(l["command"], "connect");
    assert_eq!(l["target"], "example.com:443");
    assert_eq!(l["connected"], "[2001:db8::1]:443");
    assert_eq!(l["outbound"], "192.0.2.10:40312");
    assert_eq!(l["reply"], "succeeded");
    assert_eq!(l["bytes_up"], 517);
    assert_eq!(l["bytes_down"], 1u64 << 40);
    assert_eq!(l["duration_ms"], 1234.567);
    assert_eq!(l["close"], "completed");
    assert_eq!(l.as_object().unwrap().len(), 14);
    let b = &got[1];
    for key in [
        "via",
        "user",
        "command",
        "target",
        "connected",
        "outbound",
        "reply",
    ] {
        assert!(b[key].is_null(), "{key} is null when unknown");
    }
    assert_eq!(b["close"], "handshake_timeout");
    assert_eq!(
        b.as_object().unwrap().len(),
        14,
        "absent values still have their key"
    );
    assert_eq!(log.stats().written(), 2);
}

#[test]
fn reopen_after_rename_writes_to_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let log = AccessLog::start(LogDest::File(path.clone())).unwrap();
    log.record(bare_entry(1));
    assert!(log.flush());
    std::fs::rename(&path, &rotated).unwrap();
    // Before the reopen, lines still go to the renamed file.
    log.record(bare_entry(2));
    log.reopen();
    log.record(bare_entry(3));
    assert!(log.flush());
    let shards = |p: &Path| -> Vec<u64> {
        lines(p)
            .iter()
            .map(|l| l["shard"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(shards(&rotated), [1, 2]);
    assert_eq!(shards(&path), [3]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777 & !0o022,
        0o640 & !0o022,
        "created 0640 (less the umask)"
    );
}

#[test]
fn a_failed_reopen_keeps_writing_to_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join("access.log");
    let moved = dir.path().join("moved.log");
    let log = AccessLog::start(LogDest::File(path.clone())).unwrap();
    std::fs::rename(&path, &moved).unwrap();
    std::fs::remove_dir(&logs).unwrap();
    log.reopen();
    log.record(bare_entry(7));
    assert!(log.flush());
    assert_eq!(lines(&moved).len(), 1);
    assert_eq!(log.stats().errors(), 1);
}

#[test]
fn dropping_the_last_handle_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone())).unwrap();
    let clone = log.clone();
    drop(log);
    clone.record(full_entry());
    drop(clone);
    assert_eq!(lines(&path).len(), 1);
}

/// A writer that tells the test when it is first written to, then blocks until the test
/// lets it go: a disk that stalls.
struct Stalled {
    entered: Option<Sender<()>>,
    release: Receiver<()>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(entered) = self.entered.take() {
            let _ = entered.send(());
            let _ = self.release.recv_timeout(Duration::from_secs(30));
        }
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_channel_drops_instead_of_blocking() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Stalled {
        entered: Some(entered_tx),
        release: release_rx,
        out: out.clone(),
    };
    let log = AccessLog::to_writer(Box::new(sink), 2).unwrap();
    log.record(bare_entry(0));
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the writer reaches the stalled disk");
    // The writer is stuck: two entries fit in the channel, the rest are dropped at once.
    let start = Instant::now();
    for shard in 1..=10 {
        log.record(bare_entry(shard));
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "record never waits for the writer ({:?})",
        start.elapsed()
    );
    assert_eq!(log.stats().dropped(), 8);
    release.send(()).unwrap();
    assert!(log.flush());
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let shards: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["shard"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(shards, [0, 1, 2]);
    assert_eq!(log.stats().written(), 3);
}

#[test]
fn destinations_parse() {
    assert_eq!(LogDest::parse("-"), LogDest::Stderr);
    assert_eq!(LogDest::parse("stderr"), LogDest::Stderr);
    assert_eq!(
        LogDest::parse("/var/log/ringsocks/access.log"),
        LogDest::File("/var/log/ringsocks/access.log".into())
    );
}

#[test]
fn an_unopenable_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("access.log");
    let err = AccessLog::start(LogDest::File(path.clone())).err().unwrap();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}
