//! The names persnap gives what it writes in a backup location, in one
//! place: the sweep, retention and the backup itself must agree on them.

/// Suffix of the folder a backup is written into until it is verified.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Prefix of scratch folders used by verification.
pub const SCRATCH_PREFIX: &str = ".persnap-verify-";
/// Prefix of folders being deleted by retention (removed by the next
/// sweep if a crash interrupts the deletion).
pub const DELETING_PREFIX: &str = ".persnap-deleting-";
/// Marker file placed in every folder persnap creates for temporary work.
pub const WORK_MARKER: &str = ".persnap-work";
