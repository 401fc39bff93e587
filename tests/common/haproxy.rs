//! HAProxy as the layer 4 balancer in front of ringsocks nodes: TCP mode, round robin,
//! `send-proxy-v2` to every node. Runs in the foreground (`-db`) as a child of the test,
//! killed on drop.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use super::netstat;
use super::server::START_TIMEOUT;
use super::wait::wait_until;

pub struct Haproxy {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy on a free loopback port, balancing over `nodes` (PROXY protocol
    /// listeners) round robin. Panics if HAProxy is missing or does not come up.
    #[track_caller]
    pub fn start(nodes: &[SocketAddr]) -> Haproxy {
        let mut last = String::new();
        // A port found free can be taken before HAProxy binds it: try a few.
        for _ in 0..3 {
            match Haproxy::try_start(nodes) {
                Ok(h) => return h,
                Err(e) => last = e,
            }
        }
        panic!("HAProxy did not start: {last}");
    }

    fn try_start(nodes: &[SocketAddr]) -> Result<Haproxy, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(addr, nodes)).expect("write haproxy.cfg");
        let mut child = match Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "haproxy is missing: install the Debian package `haproxy` (apt-get install haproxy)"
            ),
            Err(e) => panic!("cannot run haproxy: {e}"),
        };
        let stderr = Arc::new(Mutex::new(String::new()));
        let reader = {
            let mut pipe = child.stderr.take().expect("stderr is piped");
            let sink = stderr.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        let mut haproxy = Haproxy {
            child,
            addr,
            stderr,
            reader: Some(reader),
            _dir: dir,
        };
        // Ready once its own socket listens on the frontend address (a probe connection
        // would become a session on a node and spoil the nodes' logs).
        let pid = haproxy.child.id();
        let mut exited = None;
        let up = wait_until(START_TIMEOUT, || {
            exited = haproxy.child.try_wait().ok().flatten();
            exited.is_some() || netstat::listening(pid).contains(&addr)
        });
        if let Some(status) = exited {
            return Err(format!("exited {status}: {}", haproxy.stderr()));
        }
        if !up {
            return Err(format!(
                "not listening on {addr} after {START_TIMEOUT:?}: {}",
                haproxy.stderr()
            ));
        }
        Ok(haproxy)
    }

    /// The frontend clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if thread::panicking() {
            eprintln!("--- haproxy stderr ---\n{}--- end ---", self.stderr());
        }
    }
}

fn config(frontend: SocketAddr, nodes: &[SocketAddr]) -> String {
    let mut cfg = format!(
        "global\n\
         \x20   maxconn 256\n\
         \n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 30s\n\
         \x20   timeout server 30s\n\
         \n\
         frontend socks\n\
         \x20   bind {frontend}\n\
         \x20   default_backend nodes\n\
         \n\
         backend nodes\n\
         \x20   balance roundrobin\n"
    );
    for (i, node) in nodes.iter().enumerate() {
        cfg.push_str(&format!("    server node{i} {node} send-proxy-v2\n"));
    }
    cfg
}
