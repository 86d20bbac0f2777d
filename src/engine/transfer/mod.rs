//! Copy and verification: streaming the store's files with SHA-256 at a
//! pace the correlator does not feel, checking them with SQLite, and the
//! manifest that records it.

/// Streaming copy with SHA-256.
pub mod copy;
/// A backup's manifest.
pub mod manifest;
/// How hard a backup may use the disk (gentle or fast).
pub mod pace;
/// Verification.
pub mod verify;
