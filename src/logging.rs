//! The log file, for both front ends: persnap's events (the engine's and
//! the front ends' own: each step of a run, what it said, how it ended)
//! appended to [`persnap::monitor::log`]'s file, one line each with the
//! time; with `--verbose`, mirrored to the terminal. Only persnap's own
//! events are written (a library's debug lines may hold a server's
//! address with its password), and never its arguments as typed.

use std::sync::Mutex;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Start logging for this process (`what`: the command, or "the app");
/// the log file's path, when it could be opened. A log that cannot be
/// opened is not an error: everything else works without it.
pub fn init(what: &str, verbose: bool) -> Option<std::path::PathBuf> {
    let dir = persnap::monitor::log::dir();
    let file = dir
        .as_deref()
        .and_then(|d| persnap::monitor::log::open(d).ok());
    let path = file
        .as_ref()
        .and(dir)
        .map(|d| d.join(persnap::monitor::log::LOG_NAME));
    // persnap's own events only: the libraries' (rustic's, through `log`,
    // is not bridged) may hold a server's address with its password.
    let filter = Targets::new()
        .with_default(LevelFilter::OFF)
        .with_target("persnap", LevelFilter::DEBUG);
    let to_file = file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_target(false)
            .with_writer(Mutex::new(f))
    });
    let to_terminal = verbose.then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_target(false)
            .with_writer(std::io::stderr)
    });
    let _ = tracing_subscriber::registry()
        .with(to_file)
        .with(to_terminal)
        .with(filter)
        .try_init();
    tracing::info!(
        "persnap {} started: {what} (process {}{})",
        persnap::TOOL_VERSION,
        std::process::id(),
        if persnap::fsutil::is_root() {
            ", as the administrator"
        } else {
            ""
        }
    );
    path
}
