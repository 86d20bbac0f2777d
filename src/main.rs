//! `persnap`: the desktop app (no arguments) and the command line (any
//! arguments), both on the same engine.
//!
//! `persnap --help` lists the commands (see `cli.rs`); the app lives in
//! `gui/`; `launch.rs` starts the privileged helper for both.
//!
//! On Windows it stays a console program, so that the command line in cmd,
//! PowerShell and scripts waits, prints and returns its exit status; the
//! app started from the Start menu lets go of the console Windows made for
//! it, so no console window stays beside it.

mod cli;
#[cfg(feature = "gui")]
mod gui;
mod launch;
mod logging;
mod notify;

use clap::{CommandFactory, FromArgMatches};

fn main() {
    // SAFETY: first thing, before any thread starts.
    unsafe { persnap::repository::hand_ca_bundle_to_rclone() };
    #[cfg(feature = "gui")]
    if std::env::args_os().len() == 1 {
        #[cfg(windows)]
        persnap::sys::release_own_console();
        logging::init("the app", false);
        if let Err(e) = gui::run() {
            tracing::error!("the window could not open: {e}");
            eprintln!(
                "error: the window could not open ({e}). Use the command line instead: persnap --help"
            );
            std::process::exit(1);
        }
        tracing::info!("the app closed");
        return;
    }
    let matches = cli::Cli::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The command's name only: what was typed may hold an address with
    // its password.
    let mut what = String::from("persnap");
    let mut level = Some(&matches);
    while let Some((name, sub)) = level.and_then(|m| m.subcommand()) {
        what = format!("{what} {name}");
        level = Some(sub);
    }
    logging::init(&what, cli.verbose);
    match cli::run(cli) {
        Ok(()) => tracing::info!("{what}: done"),
        Err(failure) => {
            tracing::error!(
                "{what}: exit status {}: {}",
                failure.code,
                persnap::monitor::log::one_line(&format!("{:#}", failure.error))
            );
            eprintln!("error: {:#}", failure.error);
            std::process::exit(failure.code);
        }
    }
}
