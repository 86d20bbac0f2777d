//! The engine: everything persnap does that is neither a screen nor root's
//! own work. Never prints, never elevates. Re-exported at the crate root
//! (`persnap::backup`, …).

/// One backup run, and the sweep of leftovers.
pub mod backup;
/// Streaming copy with SHA-256.
pub mod copy;
/// Finding correlator stores to protect.
pub mod discover;
/// Restore drills: proving every place a database's backups are kept can
/// give it back.
pub mod drill;
/// Typed errors with what to do.
pub mod error;
/// Atomic writes, run locks.
pub mod fsutil;
/// The run history.
pub mod history;
/// The invariant-keeping test workload.
pub mod loadgen;
/// A backup's manifest.
pub mod manifest;
/// Backup methods.
pub mod method;
/// Prometheus metrics and the other places administrators look.
pub mod monitor;
/// What persnap names in a backup location.
pub mod names;
/// SQLite's online backup (sqlite-online).
pub mod online;
/// How hard a backup may use the disk (gentle or fast).
pub mod pace;
/// Backups worth keeping: pinned with a note, never deleted by retention.
pub mod pin;
/// The Windows channel to the helper.
pub mod pipe;
/// One backup, from the request to its recorded outcome, for every
/// front end.
#[cfg(feature = "repository")]
pub mod pipeline;
/// What was found, changing nothing.
pub mod probe;
/// Progress and cancel.
pub mod progress;
/// "Is my database protected?", per database.
pub mod protection;
/// The helper's frames, validation and levels.
pub mod protocol;
/// Protected databases.
pub mod registry;
/// Repositories in the restic format (deduplicated, encrypted, remote).
pub mod repository;
/// Putting a backup back.
pub mod restore;
/// Which old backups may go.
pub mod retention;
/// Scheduled backups (systemd, Task Scheduler).
pub mod schedule;
/// Snapshot providers, one per file.
pub mod snapshot;
/// Finding the store and its files.
pub mod store;
/// The few OS calls, one file per platform.
pub mod sys;
/// Running external tools safely.
pub mod tool;
/// Sizes and durations in words.
pub mod units;
/// Verification.
pub mod verify;
/// Which volume holds a folder.
pub mod volume;
/// The helper's unprivileged worker, which writes a user's backup.
pub mod worker;
