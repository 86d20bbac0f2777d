//! Capture: finding the store and its volume, choosing how it is captured,
//! and taking the snapshot (or SQLite's online backup).

/// Backup methods.
pub mod method;
/// SQLite's online backup (sqlite-online).
pub mod online;
/// What was found, changing nothing.
pub mod probe;
/// Snapshot providers, one per file.
pub mod snapshot;
/// Finding the store and its files.
pub mod store;
/// Which volume holds a folder.
pub mod volume;
