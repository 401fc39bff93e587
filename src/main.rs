//! The `ringsocks` binary: flags, start-up checks, signals, the two helper subcommands.
//! Everything else is the library.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use ringsocks::cli::{Cli, Command};
use ringsocks::config::{self, commands, HostLimits};
use ringsocks::engine::Server;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line, like every other start-up problem (clap adds a usage hint below).
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("ringsocks: {}", first.trim_start_matches("error: "));
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

fn hash_password() -> Result<(), Box<dyn std::error::Error>> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    let hash = commands::hash_password_line(&input, argon2::Params::default())?;
    println!("{hash}");
    Ok(())
}

fn check_config(cli: &Cli, file: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    if cli.config.is_some() {
        return Err("check-config takes the file itself: drop --config".into());
    }
    let text = commands::check_config(&cli.settings, file)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = config::load(
        &cli.settings,
        cli.config.as_deref(),
        Some(HostLimits::read()),
    )?;
    env_logger::Builder::new()
        .filter_level(config.ops.log_level.filter())
        .format_target(false)
        .init();
    // Signals are caught before the shards exist, so none can kill the process halfway.
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let shards = config.engine.cpus.len();
    let mut server = Server::start(config.engine)?;
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
