//! A few threads for work that must not run on a shard: today, argon2 password checks.
//!
//! Jobs queue on a bounded channel; a full queue refuses the job at once instead of
//! letting a flood of slow checks build an unbounded backlog.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct Workers {
    queue: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// `threads` workers sharing a queue of at most `capacity` waiting jobs.
    pub fn start(threads: usize, capacity: usize) -> std::io::Result<Workers> {
        let (tx, rx) = mpsc::sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || run(&rx))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Workers {
            queue: Some(tx),
            threads,
        })
    }

    /// Queues `job`; gives it back when the queue is full or the workers stopped.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        match &self.queue {
            Some(tx) => tx.try_send(job).map_err(|e| match e {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            }),
            None => Err(job),
        }
    }
}

fn run(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only to take one job, never while running it.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queue ends the workers once the jobs already queued are done.
        self.queue = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn runs_jobs_off_the_caller() {
        let workers = Workers::start(2, 16).unwrap();
        let (tx, rx) = channel();
        let caller = std::thread::current().id();
        for i in 0..8 {
            let tx = tx.clone();
            workers
                .submit(Box::new(move || {
                    tx.send((i, std::thread::current().id())).unwrap()
                }))
                .ok()
                .unwrap();
        }
        let mut seen: Vec<_> = (0..8)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert!(seen.iter().all(|(_, id)| *id != caller));
        seen.sort_by_key(|(i, _)| *i);
        assert_eq!(
            seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_full_queue_refuses_instead_of_growing() {
        let workers = Workers::start(1, 1).unwrap();
        let (block_tx, block_rx) = mpsc::channel::<()>();
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        workers
            .submit(Box::new(move || {
                s.fetch_add(1, Ordering::SeqCst);
                let _ = block_rx.recv();
            }))
            .ok()
            .unwrap();
        // Wait until the worker holds the first job, so the queue itself is empty.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while started.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "worker never started");
            std::thread::yield_now();
        }
        assert!(
            workers.submit(Box::new(|| {})).is_ok(),
            "one job fits the queue"
        );
        assert!(
            workers.submit(Box::new(|| {})).is_err(),
            "the second does not"
        );
        block_tx.send(()).unwrap();
    }
}
