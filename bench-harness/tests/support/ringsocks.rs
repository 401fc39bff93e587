//! ringsocks itself, started in this process through its own command line and engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use bench_harness::run::Route;
use bench_harness::socks::Auth;
use clap::Parser;
use ringsocks::cli::Cli;
use ringsocks::config::{self, HostLimits};
use ringsocks::engine::Server;

pub struct Ringsocks {
    server: Server,
    pub addr: SocketAddr,
    pub auth: Option<Auth>,
    users_file: Option<PathBuf>,
}

impl Ringsocks {
    /// One shard on 127.0.0.1, an ephemeral port; with `auth`, that one user.
    pub fn start(auth: Option<Auth>) -> Ringsocks {
        static N: AtomicUsize = AtomicUsize::new(0);
        let mut argv: Vec<String> = ["ringsocks", "--listen", "127.0.0.1:0", "--shards", "1"]
            .map(String::from)
            .to_vec();
        let users_file = auth.as_ref().map(|a| {
            let path = std::env::temp_dir().join(format!(
                "bh-users-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, format!("{}:{}\n", a.user, a.pass)).unwrap();
            argv.extend(["--users".into(), path.display().to_string()]);
            path
        });
        let cli = Cli::try_parse_from(&argv).expect("valid ringsocks flags");
        let config =
            config::load(&cli.settings, None, Some(HostLimits::read())).expect("ringsocks config");
        let server = Server::start(config.engine).expect("ringsocks starts");
        let addr = server.local_addrs()[0];
        Ringsocks {
            server,
            addr,
            auth,
            users_file,
        }
    }

    pub fn route(&self) -> Route {
        Route {
            proxy: Some(self.addr),
            auth: self.auth.clone(),
        }
    }
}

impl Drop for Ringsocks {
    fn drop(&mut self) {
        self.server.stop();
        if let Some(p) = &self.users_file {
            let _ = std::fs::remove_file(p);
        }
    }
}
