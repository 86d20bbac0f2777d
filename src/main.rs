//! `persnap`: the command-line front end of the persnap engine.
//!
//! `persnap --help` lists the commands; see `cli.rs`.

mod cli;
mod launch;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(failure) = cli::run(cli) {
        eprintln!("error: {:#}", failure.error);
        std::process::exit(failure.code);
    }
}
