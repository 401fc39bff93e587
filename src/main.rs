//! The `ringsocks` binary: flags, start-up checks, signals. Everything else is the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use ringsocks::cli::Args;
use ringsocks::config::{self, HostLimits};
use ringsocks::engine::Server;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line, like every other start-up problem (clap adds a usage hint below).
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("ringsocks: {}", first.trim_start_matches("error: "));
            return ExitCode::FAILURE;
        }
    };
    env_logger::Builder::new()
        .filter_level(args.log_level.filter())
        .format_target(false)
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringsocks: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = config::build(args, HostLimits::read())?;
    // Signals are caught before the shards exist, so none can kill the process halfway.
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let shards = config.cpus.len();
    let mut server = Server::start(config)?;
    let mut out = std::io::stdout().lock();
    for addr in server.local_addrs() {
        writeln!(out, "listening on {addr}")?;
    }
    out.flush()?;
    drop(out);
    log::info!("{shards} shards serving");
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: shutting down");
    }
    server.stop();
    Ok(())
}
