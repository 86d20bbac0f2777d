//! The names persnap gives what it writes in a backup location, in one
//! place: the sweep, retention and the backup itself must agree on them.

/// Suffix of the folder a backup is written into until it is verified.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Prefix of scratch folders used by verification.
pub const SCRATCH_PREFIX: &str = ".persnap-verify-";
/// Prefix of the folder beside a set staged for a repository that holds
/// the pieces hashed as it was copied (`crate::copy::pieces_path`).
pub const PIECES_PREFIX: &str = ".persnap-pieces-";
/// Prefix of folders being deleted by retention (removed by the next
/// sweep if a crash interrupts the deletion).
pub const DELETING_PREFIX: &str = ".persnap-deleting-";
/// Marker file retention writes inside a backup before it sets it aside
/// for deletion: only a deletion of ours is finished by a sweep.
pub const DELETION_MARKER: &str = ".persnap-deleting";
/// Marker file placed in every folder persnap creates for temporary work.
pub const WORK_MARKER: &str = ".persnap-work";

/// A name persnap uses in file, unit and task names (schedules, protected
/// databases): 1 to 40 lower-case letters, digits and dashes, not starting
/// with a dash. `what` and `example` are for the refusal ("schedule",
/// "nightly").
pub fn check_plain_name(name: &str, what: &str, example: &str) -> crate::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        return Ok(());
    }
    Err(crate::Error::Refused {
        field: "name",
        reason: format!(
            "{name:?} is not a {what} name: use 1 to 40 lower-case letters, digits and dashes (e.g. {example})"
        ),
    })
}
