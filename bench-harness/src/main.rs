//! bench-harness: see `bench-harness --help`.

use clap::Parser;

fn main() {
    let cli = bench_harness::cli::Cli::parse();
    if let Err(e) = bench_harness::cli::execute(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
