//! How the engine reports what it is doing, and how a caller stops it.
//!
//! The engine never prints. Front ends implement [`Progress`] (the CLI prints
//! a line per phase, the GUI forwards events over a channel, the helper
//! writes protocol frames) and pass a [`CancelToken`] the engine polls
//! between blocks of work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// The steps of a backup, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Prepare,
    Snapshot,
    Copy,
    Release,
    Verify,
    Finish,
    /// Storing the verified set in a repository, and reading it back.
    Store,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Snapshot => "snapshot",
            Phase::Copy => "copy",
            Phase::Release => "release snapshot",
            Phase::Verify => "verify",
            Phase::Finish => "finish",
            Phase::Store => "store in repository",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How serious a log message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Info,
    Warning,
}

/// Receives the engine's progress. Calls come from the thread running the
/// backup; implementations must be quick (forward, do not block).
pub trait Progress {
    /// A new phase begins.
    fn phase(&mut self, phase: Phase);
    /// `done` of `total` bytes of the current phase are processed.
    fn bytes(&mut self, phase: Phase, done: u64, total: u64);
    /// Something worth telling the user.
    fn log(&mut self, level: Level, message: &str);
}

/// A [`Progress`] that discards everything.
pub struct Silent;

impl Progress for Silent {
    fn phase(&mut self, _: Phase) {}
    fn bytes(&mut self, _: Phase, _: u64, _: u64) {}
    fn log(&mut self, _: Level, _: &str) {}
}

/// Shared flag a caller sets to stop a running backup cleanly.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for signal handlers (`signal_hook::flag::register`).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }

    /// `Err(Cancelled)` once cancelled.
    pub fn check(&self) -> crate::Result<()> {
        if self.is_cancelled() {
            Err(crate::Error::Cancelled)
        } else {
            Ok(())
        }
    }
}
