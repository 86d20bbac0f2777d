//! The engine: everything persnap does that is neither a screen nor root's
//! own work. Never prints, never elevates. Re-exported at the crate root
//! (`persnap::backup`, …).

// The stages a backup passes through, each a folder; their modules are
// re-exported here, so that `crate::copy` and `persnap::copy` stay the
// paths everybody uses.
pub mod capture;
pub use capture::{method, online, probe, snapshot, store, volume};
pub mod transfer;
pub use transfer::{copy, manifest, pace, verify};
pub mod locations;
pub use locations::{history, names, pin, repository, retention};
pub mod protect;
pub use protect::{discover, protection, registry, schedule};
pub mod platform;
pub use platform::{fsutil, pipe, sys, tool, units};

/// One backup run, and the sweep of leftovers.
pub mod backup;
/// Restore drills: proving every place a database's backups are kept can
/// give it back.
pub mod drill;
/// Typed errors with what to do.
pub mod error;
/// The invariant-keeping test workload.
pub mod loadgen;
/// Prometheus metrics and the other places administrators look.
pub mod monitor;
/// One backup, from the request to its recorded outcome, for every
/// front end.
#[cfg(feature = "repository")]
pub mod pipeline;
/// Progress and cancel.
pub mod progress;
/// The helper's frames, validation and levels.
pub mod protocol;
/// Putting a backup back.
pub mod restore;
/// The helper's unprivileged worker, which writes a user's backup.
pub mod worker;
