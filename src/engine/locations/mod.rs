//! Locations: where backups are kept (folders and repositories), which may
//! go, which are pinned, and the history of every run.

/// The run history.
pub mod history;
/// What persnap names in a backup location.
pub mod names;
/// Backups worth keeping: pinned with a note, never deleted by retention.
pub mod pin;
/// Repositories in the restic format (deduplicated, encrypted, remote).
pub mod repository;
/// Which old backups may go.
pub mod retention;
