//! The `ringsocks` binary: flags, start-up checks, signals, the two helper subcommands.
//! Everything else is the library.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use ringsocks::cli::{Cli, Command};
use ringsocks::config::{self, commands, Config, HostLimits, LogTarget};
use ringsocks::engine::{Observers, Server};
use ringsocks::ops::privileges;
use ringsocks::ops::systemd::Notifier;
use ringsocks::telemetry::{AccessLog, Exporter, LogDest, ProcessStats, Sources};

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line, like every other start-up problem (clap adds a usage hint below).
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            // Keep what is allowed, when clap lists it on a line of its own.
            let allowed = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("[possible values:"))
                .map_or(String::new(), |l| format!(" {l}"));
            eprintln!(
                "ringsocks: {}{allowed}",
                first.trim_start_matches("error: ")
            );
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        Some(Command::HashPassword) => hash_password(),
        Some(Command::CheckConfig { file }) => check_config(&cli, file),
        None => run(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringsocks: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> Result<(), Error> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    let hash = commands::hash_password_line(&input, argon2::Params::default())?;
    println!("{hash}");
    Ok(())
}

fn check_config(cli: &Cli, file: &std::path::Path) -> Result<(), Error> {
    if cli.config.is_some() {
        return Err("check-config takes the file itself: drop --config".into());
    }
    let text = commands::check_config(&cli.settings, file)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn load(cli: &Cli) -> Result<Config, config::ConfigError> {
    config::load(
        &cli.settings,
        cli.config.as_deref(),
        Some(HostLimits::read()),
    )
}

fn run(cli: &Cli) -> Result<(), Error> {
    let config = load(cli)?;
    env_logger::Builder::new()
        .filter_level(config.ops.log_level.filter())
        .format_target(false)
        .init();
    let notify = Notifier::from_env().map_err(|e| format!("NOTIFY_SOCKET is unusable: {e}"))?;
    // Looked up before anything is bound, so a missing user fails early.
    let identity = match &config.ops.run_as_user {
        Some(user) => Some(privileges::lookup(
            user,
            config.ops.run_as_group.as_deref(),
        )?),
        None => None,
    };
    let access_log = match &config.ops.access_log {
        Some(target) => {
            let dest = match target {
                LogTarget::Stderr => LogDest::Stderr,
                LogTarget::File(path) => LogDest::File(path.clone()),
            };
            Some(Arc::new(AccessLog::start(dest).map_err(|e| {
                format!("cannot open the access log: {e}; fix --access-log")
            })?))
        }
        None => None,
    };
    // Signals are caught before the shards exist, so none can kill the process halfway.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let drain_timeout = config.ops.drain_timeout;
    let shards = config.engine.cpus.len();
    let observers = Observers {
        access_log: access_log.clone(),
    };
    let mut server = Server::start_with(config.engine, observers)?;
    let process = Arc::new(ProcessStats::default());
    let exporter = match config.ops.metrics_listen {
        Some(addr) => {
            let sources = Sources {
                process: process.clone(),
                access_log: access_log.as_ref().map(|l| l.stats()),
                ..server.sources()
            };
            Some(Exporter::start(addr, sources).map_err(|e| {
                format!("cannot serve metrics on {addr}: {e}; fix --metrics-listen")
            })?)
        }
        None => None,
    };
    if let Some(id) = &identity {
        privileges::drop_to(id)?;
    }
    let mut out = std::io::stdout().lock();
    for addr in server.local_addrs() {
        writeln!(out, "listening on {addr}")?;
    }
    if let Some(exporter) = &exporter {
        writeln!(out, "metrics on {}", exporter.local_addr())?;
    }
    out.flush()?;
    drop(out);
    log::info!("{shards} shards serving");
    let _ = notify.ready();
    let _ = notify.status(&format!("serving with {shards} shards"));

    for sig in signals.forever() {
        match sig {
            SIGHUP => reload(cli, &server, &notify, &process, access_log.as_deref()),
            _ => {
                log::info!(
                    "signal {sig}: draining for up to {} s (SIGINT again stops at once)",
                    drain_timeout.as_secs_f64()
                );
                let _ = notify.stopping();
                process.set_draining(true);
                drain(&mut server, &mut signals, drain_timeout);
                break;
            }
        }
    }
    server.stop();
    if let Some(log) = &access_log {
        log.flush();
    }
    Ok(())
}

/// SIGHUP: re-reads configuration, users and rules; a bad file keeps the old ones.
fn reload(
    cli: &Cli,
    server: &Server,
    notify: &Notifier,
    process: &ProcessStats,
    log: Option<&AccessLog>,
) {
    let _ = notify.reloading();
    match load(cli) {
        Ok(config) => {
            server.reload(config.engine.policy);
            process.reload_succeeded();
            log::info!("configuration reloaded; open sessions keep their settings");
        }
        Err(e) => {
            process.reload_failed();
            log::error!("reload failed, keeping the running configuration: {e}");
        }
    }
    if let Some(log) = log {
        log.reopen();
    }
    let _ = notify.ready();
}

/// Lets sessions finish for up to `timeout`; SIGINT (or a second SIGTERM) cuts it short.
fn drain(server: &mut Server, signals: &mut Signals, timeout: Duration) {
    server.begin_drain();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if server.wait_finished(Duration::from_millis(100)) {
            log::info!("all sessions finished");
            return;
        }
        if signals.pending().any(|s| s == SIGINT || s == SIGTERM) {
            log::info!("stopping at once");
            return;
        }
    }
    log::info!("drain timeout: closing the sessions left");
}
