//! Typed errors of the engine.
//!
//! Every message names the problem and says what to do next, so front ends
//! can show it unchanged. [`Error::kind`] groups errors into the classes the
//! CLI turns into distinct exit codes ([`ErrorKind::exit_code`]).

use std::io;
use std::path::PathBuf;

use crate::method::Method;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The class of an error, which decides the CLI exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The request itself is wrong: paths, store name, method choice.
    BadInput,
    /// No snapshot could be taken or released.
    Snapshot,
    /// Reading the snapshot or writing the backup failed.
    Copy,
    /// The copy exists but is not a consistent, intact database.
    Verify,
    /// The user (or a signal) stopped the run.
    Cancelled,
    /// Another persnap run holds the lock, or history could not be written.
    Busy,
    /// Elevation to administrator rights failed or was refused.
    Elevation,
    /// A bug: persnap itself failed (a panic).
    Internal,
    /// The helper and its caller could not understand each other.
    Protocol,
}

impl ErrorKind {
    /// Exit codes documented in docs/COMMANDS.md and `persnap --help`.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::BadInput => 2,
            ErrorKind::Snapshot => 3,
            ErrorKind::Copy => 4,
            ErrorKind::Verify => 5,
            ErrorKind::Cancelled => 6,
            ErrorKind::Busy => 7,
            ErrorKind::Elevation => 8,
            ErrorKind::Internal => 1,
            ErrorKind::Protocol => 9,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "The database folder {path} does not exist. Check the path, or choose the folder given to the correlator as -PstoreLocation."
    )]
    SourceMissing { path: PathBuf },

    #[error(
        "{path} is not a folder. Choose the folder that holds the database files, not a file inside it."
    )]
    SourceNotDir { path: PathBuf },

    #[error(
        "The database folder {path} cannot be read ({source}). Run persnap as a user who can read it, or as administrator."
    )]
    SourceUnreadable { path: PathBuf, source: io::Error },

    #[error(
        "No database file named {store_name} in {dir}. {listing} If the correlator was started with -PstoreName=..., give that name with --store-name."
    )]
    StoreNotFound {
        dir: PathBuf,
        store_name: String,
        listing: String,
    },

    #[error(
        "{path} is not an SQLite database ({detail}). Check that this is the correlator's persistence folder and store name."
    )]
    NotSqlite { path: PathBuf, detail: String },

    #[error(
        "{path} is {what}, not a regular file; persnap refuses to back it up because a link could point anywhere. Point persnap at the folder that really holds the files."
    )]
    StoreFileNotRegular { path: PathBuf, what: &'static str },

    #[error(
        "The store name {name:?} is not valid: {reason}. Give the file name only, as in -PstoreName (default persistence.db)."
    )]
    InvalidStoreName { name: String, reason: &'static str },

    #[error(
        "The backup location {path} is not there. If it is on a disk or a network share, check that it is plugged in or mounted; otherwise create the folder, or choose another location."
    )]
    DestMissing { path: PathBuf },

    #[error("The backup location {path} is not a folder. Choose a folder.")]
    DestNotDir { path: PathBuf },

    #[error(
        "Cannot write to the backup location {path} ({source}). Choose a folder you can write to, or fix its permissions."
    )]
    DestNotWritable { path: PathBuf, source: io::Error },

    #[error(
        "The backup location {dest} is inside the database folder {source_dir}. Backups must live outside the folder they protect; choose another location."
    )]
    DestInsideSource { dest: PathBuf, source_dir: PathBuf },

    #[error(
        "The database folder {source_dir} is inside the backup location {dest}. Choose a backup location that does not contain the database."
    )]
    SourceInsideDest { dest: PathBuf, source_dir: PathBuf },

    #[error(
        "Not enough free space in {path}: the backup needs {} (the files plus a scratch copy for verification) but only {} is free. Free some space or choose another location.",
        crate::units::bytes(*needed),
        crate::units::bytes(*available)
    )]
    InsufficientSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },

    #[error(
        "No snapshot is possible for {path}: {reason}. persnap never copies live database files, because such copies are torn. Alternatives: move the database to a btrfs subvolume, an LVM logical volume or a filesystem that clones files (XFS made with reflink), use --method sqlite-online (SQLite's online backup, which pauses the writer while it copies), or stop the correlator and copy the files."
    )]
    NoSnapshotPossible { path: PathBuf, reason: String },

    #[error(
        "The {method} method does not apply to {path}: {reason}. Use --method auto to pick the method that applies, or --method sqlite-online."
    )]
    MethodNotApplicable {
        method: Method,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "The {method} method is not available in this build of persnap ({reason}). Use --method auto or --method sqlite-online."
    )]
    MethodUnavailable {
        method: Method,
        reason: &'static str,
    },

    #[error(
        "Taking a {method} snapshot needs administrator rights ({action}: {source}). Run the backup as root (sudo persnap ...) or through the persnap helper."
    )]
    NeedsAdmin {
        method: Method,
        action: String,
        source: io::Error,
    },

    #[error(
        "Volume group {vg} has no free space for a snapshot: an LVM snapshot needs at least {needed} and {free} are free. Free space with `vgextend {vg} /dev/NEWDISK` (add a disk) or `lvreduce` (shrink another volume), or choose another method (--method sqlite-online)."
    )]
    VgNoSpace {
        vg: String,
        needed: String,
        free: String,
    },

    #[error(
        "The requested snapshot size {requested} does not fit: volume group {vg} has {free} free. Choose a smaller --snapshot-size, or free space in {vg}."
    )]
    SnapshotSizeTooLarge {
        vg: String,
        requested: String,
        free: String,
    },

    #[error(
        "The snapshot {snapshot} filled up ({size}) during the backup: the volume changed more than the snapshot could hold, so the copy cannot be trusted and was not kept. Make the snapshot larger with --snapshot-size, or back up at a quieter time."
    )]
    SnapshotOverflow { snapshot: String, size: String },

    #[error(
        "There is not enough room in {path} to read the backup out of the repository: it needs {needed} and {free} is free. Nothing was read out. Free some space on that disk, then try again."
    )]
    NoRoomToReadOut {
        path: PathBuf,
        needed: String,
        free: String,
    },

    #[error("persnap cannot restore into {path}: {reason}.")]
    RestoreTarget { path: PathBuf, reason: String },

    #[error(
        "There is not enough room in {path} to restore: the database needs {needed} and {free} is free. Free some space there, or restore into a folder on another disk."
    )]
    NoRoomToRestore {
        path: PathBuf,
        needed: String,
        free: String,
    },

    #[error(
        "The database is in use ({users}). Stop the correlator first, then restore; persnap never replaces the files of a running database."
    )]
    StoreInUse { users: String },

    #[error("Volume Shadow Copy failed at {step}{}: {detail}.", vss_code(*.code))]
    Vss {
        step: String,
        code: Option<u32>,
        detail: String,
    },

    #[error("Could not {action} ({source}). {hint}")]
    Snapshot {
        action: String,
        source: io::Error,
        hint: &'static str,
    },

    #[error("Could not {action}: {reason}. {hint}")]
    Tool {
        action: String,
        reason: String,
        hint: &'static str,
    },

    #[error("Could not {action} {path} ({source}). {hint}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },

    #[error(
        "The SQLite online backup did not finish within {seconds} s because the database kept changing or stayed locked. Use a snapshot method, raise --timeout, or back up when the correlator is quieter."
    )]
    OnlineTimeout { seconds: u64 },

    #[error("SQLite could not {action} {path} ({source}). {hint}")]
    Sqlite {
        action: &'static str,
        path: PathBuf,
        source: Box<rusqlite::Error>,
        hint: &'static str,
    },

    #[error(
        "Verification failed: SQLite's integrity check of the copy reported: {report}. The backup was not kept; take another backup, and check the database and its disk if this repeats."
    )]
    IntegrityFailed { report: String },

    #[error(
        "Verification failed: {file} changed after it was copied (expected SHA-256 {expected}, found {actual}). The backup location may be failing; check the disk and take another backup."
    )]
    HashMismatch {
        file: String,
        expected: String,
        actual: String,
    },

    #[error(
        "The backup in {path} is incomplete or altered: {detail}. Use another backup, or take a new one."
    )]
    BackupDamaged { path: PathBuf, detail: String },

    #[error("{path} is not a persnap backup ({detail}). Give the folder that holds manifest.json.")]
    NotABackup { path: PathBuf, detail: String },

    #[error("The list of protected databases ({path}) cannot be used: {detail}.")]
    Registry { path: PathBuf, detail: String },

    #[error("The monitoring settings ({path}) cannot be used: {detail}.")]
    MonitoringSettings { path: PathBuf, detail: String },

    #[error("The monitoring settings were not changed: {detail}")]
    MonitoringChange { detail: String },

    #[error(
        "{what} needs the administrator's permission{why}. Ask an administrator, or run it as one (persnap asks for the administrator password when it is needed)."
    )]
    NeedsAdminLevel { what: String, why: String },

    #[error("The helper refused the request ({field}): {reason}.")]
    Refused { field: &'static str, reason: String },

    /// An error another persnap process reported (the helper to its
    /// worker), kept as it was said.
    #[error("{message}")]
    Relayed { kind: ErrorKind, message: String },

    #[error("The helper protocol failed: {detail}")]
    Protocol { detail: String },

    #[error("The backup was cancelled; nothing was kept and the snapshot was removed.")]
    Cancelled,

    #[error(
        "Another persnap run is working on {path} right now. Wait for it to finish, then try again."
    )]
    DatabaseBusy { path: PathBuf },

    #[error(
        "The correlator kept {path} locked for the whole {waited:.0} s persnap may wait, so it could not be held still for a clone; nothing was copied. A correlator in exclusive locking mode never lets go: back it up with a volume snapshot (LVM) or with --method sqlite-online. Otherwise try again when it is quieter."
    )]
    HeldByCorrelator { path: PathBuf, waited: f64 },

    #[error(
        "{max} persnap snapshots are already being taken on this machine. Wait for one of them to finish, then try again."
    )]
    TooManySnapshots { max: usize },

    #[error(
        "The backup history at {path} could not be {action} ({detail}). Check that the folder is writable; move the damaged file aside to start a new history."
    )]
    History {
        path: PathBuf,
        action: &'static str,
        detail: String,
    },

    /// A repository could not be used: what happened, what to do, and the
    /// repository library's own words.
    #[error("{what} {advice}{}", details(detail))]
    Repository {
        what: String,
        advice: &'static str,
        detail: String,
        kind: ErrorKind,
    },
}

/// ` (Details: …)`, or nothing.
fn details(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" (Details: {detail})")
    }
}

impl Error {
    /// The error as another process reported it (`Cancelled` stays itself,
    /// so the run is recorded as cancelled).
    pub fn relayed(kind: ErrorKind, message: String) -> Error {
        match kind {
            ErrorKind::Cancelled => Error::Cancelled,
            kind => Error::Relayed { kind, message },
        }
    }

    pub fn kind(&self) -> ErrorKind {
        use Error::*;
        match self {
            SourceMissing { .. }
            | SourceNotDir { .. }
            | SourceUnreadable { .. }
            | StoreNotFound { .. }
            | NotSqlite { .. }
            | StoreFileNotRegular { .. }
            | InvalidStoreName { .. }
            | DestMissing { .. }
            | DestNotDir { .. }
            | DestNotWritable { .. }
            | DestInsideSource { .. }
            | SourceInsideDest { .. }
            | NotABackup { .. }
            | Refused { .. }
            | RestoreTarget { .. }
            | Registry { .. }
            | MonitoringSettings { .. }
            | MonitoringChange { .. }
            | MethodNotApplicable { .. }
            | MethodUnavailable { .. } => ErrorKind::BadInput,
            NoSnapshotPossible { .. }
            | NeedsAdmin { .. }
            | Snapshot { .. }
            | Vss { .. }
            | Tool { .. }
            | VgNoSpace { .. }
            | SnapshotSizeTooLarge { .. }
            | SnapshotOverflow { .. }
            | HeldByCorrelator { .. } => ErrorKind::Snapshot,
            InsufficientSpace { .. }
            | NoRoomToRestore { .. }
            | NoRoomToReadOut { .. }
            | Io { .. }
            | OnlineTimeout { .. } => ErrorKind::Copy,
            Sqlite { .. } | IntegrityFailed { .. } | HashMismatch { .. } | BackupDamaged { .. } => {
                ErrorKind::Verify
            }
            Cancelled => ErrorKind::Cancelled,
            Relayed { kind, .. } | Repository { kind, .. } => *kind,
            NeedsAdminLevel { .. } => ErrorKind::Elevation,
            Protocol { .. } => ErrorKind::Protocol,
            History { .. } | StoreInUse { .. } | DatabaseBusy { .. } | TooManySnapshots { .. } => {
                ErrorKind::Busy
            }
        }
    }

    /// Shorthand for an I/O failure on a path, with the advice to show.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        hint: &'static str,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
            hint,
        }
    }
}

/// Advice for I/O failures while writing the backup.
pub const HINT_DEST: &str = "Check that the backup location is writable and has free space.";
/// Advice for I/O failures while reading the database or its snapshot.
pub const HINT_SOURCE: &str =
    "Check that the database folder is readable; run as administrator if needed.";

/// ` (error 0x8004231F)`, or nothing when there is no code.
fn vss_code(code: Option<u32>) -> String {
    code.map(|c| format!(" (error 0x{c:08X})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes in words people read, never raw byte counts.
    #[test]
    fn too_little_room_is_said_in_mib_and_gib() {
        let e = Error::InsufficientSpace {
            path: "/backups".into(),
            needed: 3 << 30,
            available: 200 << 20,
        };
        let text = e.to_string();
        assert!(
            text.contains("needs 3.0 GiB") && text.contains("200.0 MiB is free"),
            "{text}"
        );
        assert!(!text.contains("bytes"), "{text}");
    }
}
