//! The access log: one JSON line per session, written by a thread of its own.
//!
//! [`AccessLog::record`] never blocks: it puts the entry on a bounded channel and, when the
//! writer has fallen behind (a slow disk, a blocked stderr), drops it and counts the drop.
//! A session's shard must never wait on a disk. The writer batches: it flushes whenever
//! the channel runs empty, so a burst costs one write per buffer, not per line.
//!
//! [`AccessLog::reopen`] (on SIGHUP) makes the writer open the path again: entries
//! recorded before the call go to the old file, entries recorded after it to the new one.
//! Rotate by renaming the file, then signal. Each entry carries the reopen generation it
//! was recorded in, so the order holds without the caller ever waiting for the writer.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::labels::CloseReason;
use crate::proto::{Address, Command, ReplyCode};

/// Entries waiting for the writer before new ones are dropped. About 1 MiB of entries:
/// seconds of headroom at tens of thousands of sessions per second.
pub const DEFAULT_CAPACITY: usize = 4096;

/// How long [`AccessLog::flush`] waits for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    Stderr,
    /// Appended to; created with mode 0640 if missing.
    File(PathBuf),
}

impl LogDest {
    /// `-` or `stderr` is standard error; anything else a file path.
    pub fn parse(arg: &str) -> LogDest {
        match arg {
            "-" | "stderr" => LogDest::Stderr,
            path => LogDest::File(PathBuf::from(path)),
        }
    }
}

impl fmt::Display for LogDest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogDest::Stderr => f.write_str("stderr"),
            LogDest::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One finished session. `None` fields are logged as `null`.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    pub shard: usize,
    /// The client: the address a PROXY protocol header carried, else the peer.
    pub client: SocketAddr,
    /// The balancer the connection came through when a PROXY protocol header was used.
    pub via: Option<SocketAddr>,
    /// The RFC 1929 user, if the session authenticated.
    pub user: Option<String>,
    pub command: Option<Command>,
    /// The destination as the client asked for it (a name, or an address).
    pub target: Option<Address>,
    /// The address actually connected to (or, for BIND, the peer that connected).
    pub connected: Option<SocketAddr>,
    /// The outbound socket's local address.
    pub outbound: Option<SocketAddr>,
    pub reply: Option<ReplyCode>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// From accept to close.
    pub duration: Duration,
    pub close: CloseReason,
}

/// Counts of the access log, for the exporter.
#[derive(Debug, Default)]
pub struct AccessLogStats {
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

impl AccessLogStats {
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }
}

// Nearly every message is an entry, so the size difference wastes nothing, and boxing
// would cost an allocation per session on the shard.
#[allow(clippy::large_enum_variant)]
enum Msg {
    /// An entry, its time, and the reopen generation it was recorded in.
    Entry(SystemTime, u64, AccessEntry),
    /// Look at the reopen generation now (a reopen with no entries after it).
    Wake,
    Flush(SyncSender<()>),
    Close,
}

/// A handle to the access log writer. Clones share it; the last one dropped flushes and
/// stops the writer.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

struct Inner {
    tx: SyncSender<Msg>,
    stats: Arc<AccessLogStats>,
    /// Bumped by each reopen.
    generation: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Blocks only until the writer takes it; it is draining, or gone (then this fails).
        let _ = self.tx.send(Msg::Close);
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(thread) = thread.take() {
            let _ = thread.join();
        }
    }
}

impl AccessLog {
    /// Opens `dest` and starts the writer thread, with [`DEFAULT_CAPACITY`].
    pub fn start(dest: LogDest) -> io::Result<AccessLog> {
        AccessLog::with_capacity(dest, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(dest: LogDest, capacity: usize) -> io::Result<AccessLog> {
        let sink = Sink::open(&dest)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open access log {dest}: {e}")))?;
        AccessLog::spawn(dest, sink, capacity)
    }

    fn spawn(dest: LogDest, sink: Sink, capacity: usize) -> io::Result<AccessLog> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let stats = Arc::new(AccessLogStats::default());
        let generation = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            dest,
            sink,
            stats: stats.clone(),
            generation: generation.clone(),
            current: 0,
            line: Vec::with_capacity(512),
        };
        let thread = thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(AccessLog {
            inner: Arc::new(Inner {
                tx,
                stats,
                generation,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Queues a line for `entry`, stamped with the current time. Never blocks: if the
    /// writer is behind, the entry is dropped and counted.
    pub fn record(&self, entry: AccessEntry) {
        let generation = self.inner.generation.load(Relaxed);
        match self
            .inner
            .tx
            .try_send(Msg::Entry(SystemTime::now(), generation, entry))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.stats.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Reopens the file (log rotation): what was recorded before this call goes to the old
    /// file, what is recorded after it to the new one. A no-op for stderr. If the path
    /// cannot be opened, the old file stays in use and the error is logged and counted.
    pub fn reopen(&self) {
        self.inner.generation.fetch_add(1, Relaxed);
        // Wakes an idle writer; if the channel is full, the next entry carries the news.
        let _ = self.inner.tx.try_send(Msg::Wake);
    }

    /// Waits (up to 5 s) until every entry queued before this call is written out and
    /// flushed; whether that happened.
    pub fn flush(&self) -> bool {
        let (ack, done) = mpsc::sync_channel(1);
        if self.inner.tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
        done.recv_timeout(FLUSH_WAIT).is_ok()
    }

    pub fn stats(&self) -> Arc<AccessLogStats> {
        self.inner.stats.clone()
    }

    /// A log whose writer writes to `sink` (tests: a writer that blocks).
    #[cfg(test)]
    fn to_writer(sink: Box<dyn Write + Send>, capacity: usize) -> io::Result<AccessLog> {
        AccessLog::spawn(LogDest::Stderr, Sink(BufWriter::new(sink)), capacity)
    }
}

struct Sink(BufWriter<Box<dyn Write + Send>>);

impl Sink {
    fn open(dest: &LogDest) -> io::Result<Sink> {
        let out: Box<dyn Write + Send> = match dest {
            LogDest::Stderr => Box::new(io::stderr()),
            LogDest::File(path) => Box::new(open_file(path)?),
        };
        Ok(Sink(BufWriter::with_capacity(64 * 1024, out)))
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

struct Writer {
    dest: LogDest,
    sink: Sink,
    stats: Arc<AccessLogStats>,
    generation: Arc<AtomicU64>,
    /// The reopen generation of the file open now.
    current: u64,
    /// Reused for each line.
    line: Vec<u8>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Entry(time, generation, entry) => {
                        self.catch_up(generation);
                        self.write(time, &entry);
                    }
                    Msg::Wake => self.catch_up(self.generation.load(Relaxed)),
                    Msg::Flush(ack) => {
                        self.flush();
                        let _ = ack.try_send(());
                    }
                    Msg::Close => {
                        self.flush();
                        return;
                    }
                }
                next = rx.try_recv().ok();
            }
            // The channel ran empty: the end of a burst.
            self.flush();
        }
        self.flush();
    }

    fn write(&mut self, time: SystemTime, entry: &AccessEntry) {
        self.line.clear();
        if serde_json::to_writer(&mut self.line, &Line::new(time, entry)).is_err() {
            self.stats.errors.fetch_add(1, Relaxed);
            return;
        }
        self.line.push(b'\n');
        match self.sink.0.write_all(&self.line) {
            Ok(()) => {
                self.stats.written.fetch_add(1, Relaxed);
            }
            Err(_) => {
                self.stats.errors.fetch_add(1, Relaxed);
            }
        }
    }

    fn flush(&mut self) {
        if self.sink.0.flush().is_err() {
            self.stats.errors.fetch_add(1, Relaxed);
        }
    }

    /// Reopens the file if a reopen was asked for since it was opened.
    fn catch_up(&mut self, generation: u64) {
        if generation > self.current {
            self.current = generation;
            self.reopen_file();
        }
    }

    fn reopen_file(&mut self) {
        let LogDest::File(path) = self.dest.clone() else {
            return;
        };
        self.flush();
        match open_file(&path) {
            Ok(file) => self.sink = Sink(BufWriter::with_capacity(64 * 1024, Box::new(file))),
            Err(e) => {
                self.stats.errors.fetch_add(1, Relaxed);
                log::warn!(
                    "cannot reopen access log {}: {e}; still writing to the old file",
                    path.display()
                );
            }
        }
    }
}

/// The JSON form of an entry. Every key is always present, so a line can be read without
/// guessing which keys exist.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    shard: usize,
    client: SocketAddr,
    via: Option<SocketAddr>,
    user: Option<&'a str>,
    command: Option<&'static str>,
    target: Option<String>,
    connected: Option<SocketAddr>,
    outbound: Option<SocketAddr>,
    reply: Option<&'static str>,
    bytes_up: u64,
    bytes_down: u64,
    duration_ms: f64,
    close: &'static str,
}

impl<'a> Line<'a> {
    fn new(time: SystemTime, e: &'a AccessEntry) -> Line<'a> {
        Line {
            time: rfc3339(time),
            shard: e.shard,
            client: e.client,
            via: e.via,
            user: e.user.as_deref(),
            command: e.command.map(Command::name),
            target: e.target.as_ref().map(Address::to_string),
            connected: e.connected,
            outbound: e.outbound,
            reply: e.reply.map(ReplyCode::name),
            bytes_up: e.bytes_up,
            bytes_down: e.bytes_down,
            // Microsecond resolution is plenty for a log line.
            duration_ms: e.duration.as_micros() as f64 / 1000.0,
            close: e.close.name(),
        }
    }
}

/// UTC, millisecond resolution: `2026-03-21T10:11:12.345Z`.
fn rfc3339(time: SystemTime) -> String {
    match jiff::Timestamp::try_from(time) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

#[cfg(test)]
mod tests;
