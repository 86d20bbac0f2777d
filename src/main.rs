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
mod notify;

use clap::Parser;

fn main() {
    // SAFETY: first thing, before any thread starts.
    unsafe { persnap::repository::hand_ca_bundle_to_rclone() };
    #[cfg(feature = "gui")]
    if std::env::args_os().len() == 1 {
        #[cfg(windows)]
        persnap::sys::release_own_console();
        if let Err(e) = gui::run() {
            eprintln!(
                "error: the window could not open ({e}). Use the command line instead: persnap --help"
            );
            std::process::exit(1);
        }
        return;
    }
    let cli = cli::Cli::parse();
    if let Err(failure) = cli::run(cli) {
        eprintln!("error: {:#}", failure.error);
        std::process::exit(failure.code);
    }
}
