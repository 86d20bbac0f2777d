//! `persnap`: the desktop app (no arguments) and the command line (any
//! arguments), both on the same engine.
//!
//! `persnap --help` lists the commands (see `cli.rs`); the app lives in
//! `gui/`; `launch.rs` starts the privileged helper for both.
//!
//! On Windows the program is built for the GUI subsystem, so starting the
//! app from the Start menu opens no console window beside it; started from
//! a console, it attaches to that console and the command line prints
//! there as usual.
#![cfg_attr(all(windows, feature = "gui"), windows_subsystem = "windows")]

mod cli;
#[cfg(feature = "gui")]
mod gui;
mod launch;
mod notify;

use clap::Parser;

fn main() {
    #[cfg(windows)]
    persnap::sys::attach_parent_console();
    #[cfg(feature = "gui")]
    if std::env::args_os().len() == 1 {
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
