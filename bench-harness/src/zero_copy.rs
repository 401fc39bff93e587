//! Bulk bytes moved without copying them through the harness's memory, so that the
//! harness spends its core on moving data, not on memcpy, and a fast server is not
//! measured against the harness's own ceiling.
//!
//! [`Feeder`] writes the stream: a [`Template`] pipe holds a whole number of stream
//! periods once per thread, `tee(2)` duplicates its pages into a connection's pipe and
//! `splice(2)` hands them to the socket; the bytes are the stream's, so verified runs use
//! it too. [`Drain`] discards what arrives, socket to pipe to `/dev/null`, both by splice;
//! verified runs read into memory instead. Anything that fails to set up falls back to
//! plain reads and writes.

use std::fs::File;
use std::io::{self, ErrorKind, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::pipe::{self, PipeFlags, SpliceFlags};

use crate::stream::{Position, Stream, PERIOD};

/// Pipe capacity asked for: 1 MiB, the default `fs.pipe-max-size`.
const PIPE_SIZE: usize = 1 << 20;

fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let (r, w) = pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
    // A smaller pipe still works, with more calls.
    let size = pipe::fcntl_setpipe_size(&w, PIPE_SIZE).or_else(|_| pipe::fcntl_getpipe_size(&w))?;
    Ok((r, w, size))
}

/// The stream from offset 0 in a pipe, a whole number of periods long: any copy of it
/// continues the stream where the previous copy ended. One per thread; its pages are
/// shared by every copy.
pub struct Template {
    r: OwnedFd,
    _w: OwnedFd,
    len: usize,
}

impl Template {
    pub fn new(stream: &Stream) -> io::Result<Arc<Template>> {
        let (r, w, size) = nonblocking_pipe()?;
        let len = size / PERIOD * PERIOD;
        let mut filled = 0;
        let mut file = File::from(w);
        while filled < len {
            filled += file.write(stream.at(filled as u64, len - filled))?;
        }
        Ok(Arc::new(Template {
            r,
            _w: OwnedFd::from(file),
            len,
        }))
    }
}

/// Feeds the stream to one socket: copies of the template, by reference, through a pipe.
pub struct Feeder {
    template: Arc<Template>,
    out_r: OwnedFd,
    out_w: OwnedFd,
    /// Bytes in the out pipe, not yet taken by the socket.
    queued: usize,
}

impl Feeder {
    /// A feeder for a connection whose stream position is `at` (it must be at the start
    /// of a period, as a fresh connection is).
    pub fn new(template: &Arc<Template>, at: &Position) -> io::Result<Feeder> {
        if at.offset % PERIOD as u64 != 0 {
            return Err(io::Error::new(ErrorKind::InvalidInput, "mid-period"));
        }
        let (out_r, out_w, size) = nonblocking_pipe()?;
        if size < template.len {
            // A partial copy would break the stream.
            return Err(io::Error::new(ErrorKind::OutOfMemory, "pipe too small"));
        }
        Ok(Feeder {
            template: template.clone(),
            out_r,
            out_w,
            queued: 0,
        })
    }

    /// Moves stream bytes into `sock` until it would block; `at` counts what it took.
    pub fn write(&mut self, sock: impl AsFd, at: &mut Position) -> io::Result<()> {
        loop {
            if self.queued == 0 {
                // The out pipe is empty, so the whole template fits.
                let t = &self.template;
                self.queued = pipe::tee(&t.r, &self.out_w, t.len, SpliceFlags::NONBLOCK)?;
            }
            let flags = SpliceFlags::NONBLOCK | SpliceFlags::MORE;
            match pipe::splice(&self.out_r, None, &sock, None, self.queued, flags) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.queued -= n;
                    at.offset += n as u64;
                }
                Err(e) if e == rustix::io::Errno::AGAIN => return Ok(()),
                Err(e) if e == rustix::io::Errno::INTR => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Discards what one socket receives through a pipe.
pub struct Drain {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
    null: File,
}

impl Drain {
    pub fn new() -> io::Result<Drain> {
        let (r, w, size) = nonblocking_pipe()?;
        let null = File::options().write(true).open("/dev/null")?;
        Ok(Drain { r, w, size, null })
    }

    /// Discards what `sock` holds until it would block, adding each piece's length to
    /// `counted` as it goes. Ok(false) at end of stream.
    pub fn read(&mut self, sock: impl AsFd, mut counted: impl FnMut(u64)) -> io::Result<bool> {
        let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
        loop {
            match pipe::splice(&sock, None, &self.w, None, self.size, flags) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    let mut left = n;
                    while left > 0 {
                        left -= pipe::splice(&self.r, None, &self.null, None, left, flags)?;
                    }
                    counted(n as u64);
                }
                Err(e) if e == rustix::io::Errno::AGAIN => return Ok(true),
                Err(e) if e == rustix::io::Errno::INTR => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn fed_bytes_are_the_stream_across_several_templates() {
        let (tx, mut rx) = pair();
        tx.set_nonblocking(true).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let stream = Stream::new(64 * 1024);
        let mut at = Position::default();
        let template = Template::new(&stream).unwrap();
        let mut feeder = Feeder::new(&template, &at).unwrap();
        let want = 3 * template.len as u64 + 12_345;
        let mut checked = Position::default();
        let mut buf = vec![0; 64 * 1024];
        // Bounded: every round either feeds or reads, and the reader stops at `want`.
        for _ in 0..100_000 {
            if at.offset < want {
                feeder.write(&tx, &mut at).unwrap();
            }
            let n = rx.read(&mut buf).unwrap();
            checked.check(&stream, &buf[..n]).unwrap();
            if checked.offset >= want {
                return;
            }
        }
        panic!("only {} of {want} bytes arrived", checked.offset);
    }

    #[test]
    fn drained_bytes_are_counted_and_end_of_stream_is_seen() {
        let (mut tx, rx) = pair();
        rx.set_nonblocking(true).unwrap();
        let mut drain = Drain::new().unwrap();
        let total = 3 * 1024 * 1024 + 17;
        let writer = std::thread::spawn(move || {
            tx.write_all(&vec![7u8; total]).unwrap();
        });
        let mut counted = 0u64;
        let mut open = true;
        let mut polls = 0;
        while open {
            open = drain.read(&rx, |n| counted += n).unwrap();
            if open {
                polls += 1;
                assert!(polls < 1_000_000, "end of stream never came");
                let mut fds = [rustix::event::PollFd::new(
                    &rx,
                    rustix::event::PollFlags::IN,
                )];
                let timeout = rustix::event::Timespec {
                    tv_sec: 10,
                    tv_nsec: 0,
                };
                rustix::event::poll(&mut fds, Some(&timeout)).unwrap();
            }
        }
        writer.join().unwrap();
        assert_eq!(counted, total as u64);
    }
}
