//! The protocol between the unprivileged front ends (CLI, GUI) and the
//! elevated `persnap-helper`.
//!
//! Frames are single lines of JSON (newline-delimited), at most
//! [`MAX_FRAME`] bytes each, and carry [`PROTOCOL_VERSION`]. The caller
//! writes one [`Request`] and may later write [`Control::Cancel`] (closing
//! the helper's stdin also cancels). The helper answers with a stream of
//! [`Event`]s ending in exactly one `Done` or `Error`.
//!
//! [`validate`] checks a request the way the helper must, since pkexec
//! vouches only for who the caller is, not for what it asks. Problems the
//! engine knows (a missing folder, a symlinked store file) keep the
//! engine's own message; the rest are [`Error::Refused`].

use std::io::{BufRead, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backup::{self, BackupRequest};
use crate::error::Error;
use crate::error::ErrorKind;
use crate::history::Run;
use crate::manifest::Manifest;
use crate::method::MethodChoice;
use crate::progress::{Level, Phase};
use crate::snapshot::SnapshotOptions;
use crate::{store, volume};

pub const PROTOCOL_VERSION: u32 = 2;
/// Longest frame accepted, newline included.
pub const MAX_FRAME: usize = 64 * 1024;
/// Longest path accepted in a request.
pub const MAX_PATH: usize = 4096;
/// Longest sqlite-online timeout accepted (one day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Largest snapshot size accepted (1 PiB).
pub const MAX_SNAPSHOT_SIZE: u64 = 1 << 50;

/// A schedule's repository, as the front end asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRepositoryRequest {
    /// What opens it (location, password, storage keys).
    pub unlock: crate::repository::Unlock,
    /// Which of the database's backups it keeps.
    #[serde(default)]
    pub keep: crate::repository::Keep,
    /// `dest` only stages the backups for the repository.
    pub staged: bool,
}

/// What the caller asks the helper to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type", deny_unknown_fields)]
pub enum Request {
    Backup {
        source: PathBuf,
        dest: PathBuf,
        store_name: String,
        method: MethodChoice,
        options: BackupOptions,
        /// The user to write the backup as, for a caller that is root
        /// itself (a scheduled run for the user who made the schedule).
        /// Under pkexec it can only be the invoking user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_as: Option<u32>,
    },
    /// What would run, and (with `test_snapshot`) whether a snapshot can be
    /// taken: one is created and removed again, nothing copied.
    Probe {
        source: PathBuf,
        dest: Option<PathBuf>,
        store_name: String,
        method: MethodChoice,
        options: BackupOptions,
        test_snapshot: bool,
    },
    /// Remove snapshots and mounts left by interrupted runs (unfinished
    /// backup folders are the user's own: the front end removes those).
    Cleanup {},
    /// Put a verified backup back in place of a store (see `restore`).
    Restore {
        backup: PathBuf,
        target: PathBuf,
        /// Then protect the restored database, in the same administrator
        /// step (a new machine going on where the old one stopped): a
        /// [`Request::Protect`] of `target`, checked once the database is
        /// there. If it fails, the restore stands and the reply says why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        then_protect: Option<Box<Request>>,
    },
    /// Install (or replace) a scheduled backup, run as root/SYSTEM and
    /// recorded in `history_dir` (see `schedule`).
    ScheduleAdd {
        name: String,
        source: PathBuf,
        dest: PathBuf,
        store_name: String,
        method: MethodChoice,
        options: BackupOptions,
        when: String,
        history_dir: PathBuf,
        /// Windows: run the task as this account, not SYSTEM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_as: Option<RunAs>,
        /// Also store each verified backup in a second, offsite
        /// repository (3-2-1); what opens it is kept like `repository`'s.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offsite: Option<ScheduleRepositoryRequest>,
        /// Store the runs' backups in a repository; what opens it is kept
        /// where only root (SYSTEM) can read it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repository: Option<ScheduleRepositoryRequest>,
    },
    /// Remove a scheduled backup (its backups and history stay).
    ScheduleRemove { name: String },
    /// Register a database as protected (see `registry`).
    DatabaseAdd {
        name: String,
        source: PathBuf,
        store_name: String,
    },
    /// Stop protecting a database, and remove the schedule its entry names
    /// (its backups and history stay).
    DatabaseRemove { name: String },
    /// Protect a database in one administrator step: take a test snapshot
    /// (created and removed, nothing copied) if asked, install its schedule
    /// (`when`, named after it) if given, and register it with its backup
    /// location and retention. When a step fails, nothing is left
    /// installed or registered.
    Protect {
        name: String,
        source: PathBuf,
        store_name: String,
        /// Where its backups go.
        location: PathBuf,
        method: MethodChoice,
        /// Its retention, and the options of its scheduled runs.
        options: BackupOptions,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        when: Option<String>,
        /// Where the scheduled runs record (needed with `when`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history_dir: Option<PathBuf>,
        /// Windows: the scheduled task runs as this account, not SYSTEM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_as: Option<RunAs>,
        test_snapshot: bool,
        /// Change how a database already protected under `name` (the same
        /// folder and store) is protected: its entry and its own schedule
        /// are replaced, nothing else is.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replace: bool,
        /// Its backups go into this repository (`location` stages them);
        /// what opens it goes only into its schedule's root-only file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repository: Option<ScheduleRepositoryRequest>,
        /// And a copy of each into this offsite repository (3-2-1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offsite: Option<ScheduleRepositoryRequest>,
    },
    /// Change the machine's monitoring settings and their secrets (the
    /// app's Notifications page; `persnap monitoring set` as root).
    MonitoringSet {
        update: crate::monitor::settings::Update,
    },
    /// Send a test message and a test ping to what is set, as the caller.
    MonitoringTest {},
}

/// An account and its password, for a schedule that runs as that account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    pub account: String,
    pub password: crate::schedule::Secret,
}

/// The two levels of authority the helper is started with, each its own
/// polkit action (`pkexec persnap-helper backup` or `… admin`; on Windows
/// UAC approves an administrator, which is the admin level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Authority {
    /// `io.github.persnap.backup`: back up and test-snapshot registered
    /// databases, nothing else.
    Backup,
    /// `io.github.persnap.admin`: everything the helper does.
    Admin,
}

impl Authority {
    /// The helper's first argument for this level.
    pub fn arg(self) -> &'static str {
        match self {
            Authority::Backup => "backup",
            Authority::Admin => "admin",
        }
    }

    pub fn from_arg(arg: &str) -> Option<Authority> {
        match arg {
            "backup" => Some(Authority::Backup),
            "admin" => Some(Authority::Admin),
            _ => None,
        }
    }

    /// The polkit action that grants this level.
    pub fn polkit_action(self) -> &'static str {
        match self {
            Authority::Backup => "io.github.persnap.backup",
            Authority::Admin => "io.github.persnap.admin",
        }
    }
}

impl Request {
    /// The level this request needs: backups and test snapshots of a
    /// database in `registry` need only the backup level; everything else
    /// is the administrator's. The front end asks for this level; the
    /// helper checks it again on what it validated (see [`Validated::needs`]).
    pub fn needs(&self, registry: &crate::registry::Registry) -> Authority {
        match self {
            // The snapshot's size is the administrator's choice.
            Request::Backup {
                source,
                store_name,
                options,
                ..
            }
            | Request::Probe {
                source,
                store_name,
                options,
                ..
            } if options.snapshot_size.is_none()
                && registry.find(source, store_name).ok().flatten().is_some() =>
            {
                Authority::Backup
            }
            _ => Authority::Admin,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupOptions {
    pub online_timeout_secs: u64,
    pub snapshot_size: Option<u64>,
    /// Deadline of the whole Volume Shadow Copy sequence (Windows).
    #[serde(default)]
    pub vss_timeout_secs: Option<u64>,
    /// How long a clone (`reflink`) may wait for SQLite's read lock.
    #[serde(default)]
    pub lock_wait_secs: Option<u64>,
    /// Retention applied after the backup verified (see `retention`).
    #[serde(default)]
    pub keep_last: Option<u32>,
    #[serde(default)]
    pub keep_days: Option<u32>,
    /// How hard the worker's copy may use the disk.
    #[serde(default)]
    pub pace: crate::pace::Pace,
    /// Staged for a repository alone (see `BackupRequest::staged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<crate::backup::Staged>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions::from_request(&crate::backup::BackupRequest::new("", ""))
    }
}

impl BackupOptions {
    /// The options of an engine request, for the wire.
    pub fn from_request(req: &crate::backup::BackupRequest) -> Self {
        BackupOptions {
            online_timeout_secs: req.online_timeout.as_secs(),
            snapshot_size: req.snapshot.size,
            vss_timeout_secs: req.snapshot.vss_deadline.map(|d| d.as_secs()),
            lock_wait_secs: req.snapshot.lock_wait.map(|d| d.as_secs()),
            keep_last: req.retention.keep_last,
            keep_days: req.retention.keep_days,
            pace: req.pace,
            staged: req.staged,
        }
    }
}

/// Sent by the caller after the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Control {
    Cancel,
}

/// What the helper reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Event {
    Phase {
        phase: Phase,
    },
    Progress {
        phase: Phase,
        bytes: u64,
        total: u64,
    },
    Log {
        level: Level,
        message: String,
    },
    /// The run's record changed; the caller stores it in its history.
    Run {
        run: Box<Run>,
    },
    Done {
        result: Box<Reply>,
    },
    Error {
        kind: ErrorKind,
        step: Option<Phase>,
        message: String,
    },
}

/// The successful result of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Reply {
    Backup {
        backup_dir: PathBuf,
        manifest: Manifest,
    },
    Probe {
        report: crate::probe::ProbeReport,
    },
    Cleanup {
        removed: Vec<String>,
    },
    DatabaseAdded {
        database: crate::registry::Database,
    },
    Protected {
        database: crate::registry::Database,
        /// What the test snapshot found, if one was taken.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probe: Option<Box<crate::probe::ProbeReport>>,
        /// The schedule installed, if one was asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule: Option<Box<crate::schedule::Schedule>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        installed: Option<crate::schedule::Installed>,
    },
    /// The monitoring settings as kept now.
    MonitoringSet {
        monitoring: crate::monitor::settings::Monitoring,
        /// What became of the hourly watch, when anything did (installed,
        /// removed, or why it could not be), in words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watch: Option<Result<String, String>>,
    },
    /// What each test found: the mail (none set: none), each ping by name.
    MonitoringTested {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mail: Option<Result<(), String>>,
        #[serde(default)]
        pings: Vec<(String, Result<(), String>)>,
    },
    DatabaseRemoved {
        name: String,
        existed: bool,
        /// Its schedule, removed with it (the one its entry named).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule_removed: Option<String>,
    },
    Restore {
        report: crate::restore::RestoreReport,
        /// The protection asked for with the restore: its reply
        /// ([`Reply::Protected`]), or why it failed (the restore stands).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protected: Option<Result<Box<Reply>, String>>,
    },
    ScheduleAdded {
        schedule: Box<crate::schedule::Schedule>,
        installed: crate::schedule::Installed,
    },
    ScheduleRemoved {
        name: String,
        existed: bool,
    },
}

/// The helper's answers, one type for each kind of request: a call
/// returns its own ([`answer`]), and the reply is matched once, here.
pub mod answer {
    use std::path::PathBuf;

    use super::{RemoteFailure, Reply};

    /// One kind of answer: taken from a reply, or the reply given back
    /// when it is of another kind.
    pub trait Answer: Sized {
        fn from_reply(reply: Reply) -> Result<Self, Box<Reply>>;
    }

    /// The answer to a call, or why there is none: a reply of another
    /// kind is the helper's mistake, said as such.
    pub fn answer<A: Answer>(reply: Result<Reply, RemoteFailure>) -> Result<A, RemoteFailure> {
        A::from_reply(reply?).map_err(|other| RemoteFailure::unexpected(*other))
    }

    /// Any reply (a request whose answers differ by what it found).
    impl Answer for Reply {
        fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
            Ok(reply)
        }
    }

    /// A backup: its folder and manifest.
    #[derive(Debug)]
    pub struct Backed {
        pub backup_dir: PathBuf,
        pub manifest: crate::manifest::Manifest,
    }

    /// A probe: what was found, and the test snapshot if one was asked for.
    #[derive(Debug)]
    pub struct Probed(pub crate::probe::ProbeReport);

    /// What a cleanup removed, a line each.
    #[derive(Debug)]
    pub struct Cleaned(pub Vec<String>);

    /// A restore, and the protection asked for with it.
    #[derive(Debug)]
    pub struct Restored {
        pub report: crate::restore::RestoreReport,
        pub protected: Option<Result<Box<Reply>, String>>,
    }

    /// A schedule installed.
    #[derive(Debug)]
    pub struct Scheduled {
        pub schedule: Box<crate::schedule::Schedule>,
        pub installed: crate::schedule::Installed,
    }

    /// A schedule removed, or there was none by that name.
    #[derive(Debug)]
    pub struct Unscheduled {
        pub name: String,
        pub existed: bool,
    }

    /// A database no longer protected, or there was none by that name.
    #[derive(Debug)]
    pub struct Unprotected {
        pub name: String,
        pub existed: bool,
        pub schedule_removed: Option<String>,
    }

    impl Answer for Backed {
        fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
            match reply {
                Reply::Backup {
                    backup_dir,
                    manifest,
                } => Ok(Backed {
                    backup_dir,
                    manifest,
                }),
                other => Err(Box::new(other)),
            }
        }
    }

    impl Answer for Probed {
        fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
            match reply {
                Reply::Probe { report } => Ok(Probed(report)),
                other => Err(Box::new(other)),
            }
        }
    }

    impl Answer for Cleaned {
        fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
            match reply {
                Reply::Cleanup { removed } => Ok(Cleaned(removed)),
                other => Err(Box::new(other)),
            }
        }
    }

    impl Answer for Restored {
        fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
            match reply {
                Reply::Restore { report, protected } => Ok(Restored { report, protected }),
                other => Err(Box::new(other)),
            }
        }
    }

    impl Answer for Scheduled {
        fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
            match reply {
                Reply::ScheduleAdded {
                    schedule,
                    installed,
                } => Ok(Scheduled {
                    schedule,
                    installed,
                }),
                other => Err(Box::new(other)),
            }
        }
    }

    impl Answer for Unscheduled {
        fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
            match reply {
                Reply::ScheduleRemoved { name, existed } => Ok(Unscheduled { name, existed }),
                other => Err(Box::new(other)),
            }
        }
    }

    impl Answer for Unprotected {
        fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
            match reply {
                Reply::DatabaseRemoved {
                    name,
                    existed,
                    schedule_removed,
                } => Ok(Unprotected {
                    name,
                    existed,
                    schedule_removed,
                }),
                other => Err(Box::new(other)),
            }
        }
    }
}

/// Why a helper call failed: the error class, the step, and the message.
#[derive(Debug, Clone)]
pub struct RemoteFailure {
    pub kind: ErrorKind,
    pub step: Option<Phase>,
    pub message: String,
}

impl RemoteFailure {
    /// An engine error that happened here, not in the helper (sqlite-online
    /// runs in-process; requests are built here), in the same form.
    pub fn local(error: &Error, step: Option<Phase>) -> Self {
        RemoteFailure {
            kind: error.kind(),
            step,
            message: error.to_string(),
        }
    }

    /// The helper answered a request with the reply of another kind (a bug).
    pub fn unexpected(reply: Reply) -> Self {
        RemoteFailure {
            kind: ErrorKind::Protocol,
            step: None,
            message: format!("the helper answered with an unexpected result: {reply:?}"),
        }
    }

    /// Elevation itself failed (dismissed, not authorized, no helper).
    pub fn elevation(message: impl Into<String>) -> Self {
        RemoteFailure {
            kind: ErrorKind::Elevation,
            step: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            Some(step) => write!(f, "failed during {step}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RemoteFailure {}

/// One frame on the wire: the version plus the payload, flattened.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frame<T> {
    pub version: u32,
    #[serde(flatten)]
    pub body: T,
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("the frame is larger than {MAX_FRAME} bytes")]
    TooLarge,
    #[error("the frame is not valid JSON for this protocol: {0}")]
    BadJson(String),
    #[error(
        "protocol version mismatch: got {got}, this persnap speaks {PROTOCOL_VERSION}; install the same persnap version for the app and the helper"
    )]
    Version { got: u64 },
    #[error("the stream ended before a frame arrived")]
    Eof,
    #[error("reading the frame failed: {0}")]
    Io(String),
}

/// Write one frame (a line of JSON).
pub fn write_frame<T: Serialize>(out: &mut impl Write, body: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(&Frame {
        version: PROTOCOL_VERSION,
        body,
    })
    .expect("frames serialize");
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Read one line, refusing lines over [`MAX_FRAME`] without buffering them.
pub fn read_line(input: &mut impl BufRead) -> Result<Vec<u8>, FrameError> {
    let mut line = Vec::new();
    loop {
        let buf = input
            .fill_buf()
            .map_err(|e| FrameError::Io(e.to_string()))?;
        if buf.is_empty() {
            return if line.is_empty() {
                Err(FrameError::Eof)
            } else {
                Ok(line)
            };
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        if line.len() + chunk.len() > MAX_FRAME {
            return Err(FrameError::TooLarge);
        }
        line.extend_from_slice(chunk);
        let n = chunk.len();
        input.consume(n);
        if done {
            return Ok(line);
        }
    }
}

/// Parse a frame: size, JSON, version, then the payload.
pub fn parse_frame<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, FrameError> {
    if line.len() > MAX_FRAME {
        return Err(FrameError::TooLarge);
    }
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| FrameError::BadJson(e.to_string()))?;
    let got = value
        .get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| FrameError::BadJson("no version field".into()))?;
    if got != u64::from(PROTOCOL_VERSION) {
        return Err(FrameError::Version { got });
    }
    let mut value = value;
    value
        .as_object_mut()
        .expect("checked object")
        .remove("version");
    serde_json::from_value(value).map_err(|e| FrameError::BadJson(e.to_string()))
}

/// Read and parse one frame.
pub fn read_frame<T: serde::de::DeserializeOwned>(
    input: &mut impl BufRead,
) -> Result<T, FrameError> {
    parse_frame(&read_line(input)?)
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Refused {
        field,
        reason: reason.into(),
    }
}

/// How a kind of path is resolved, with the engine's errors.
type Resolver = fn(&Path) -> Result<PathBuf, Error>;

/// A path from a request must be absolute, short, free of `.`/`..`, exist
/// (as `resolve` says), and be canonical already (no symbolic links).
pub fn check_path(field: &'static str, path: &Path, resolve: Resolver) -> Result<(), Error> {
    let text = path.as_os_str().as_encoded_bytes();
    if text.len() > MAX_PATH {
        return Err(invalid(
            field,
            format!("the path is longer than {MAX_PATH} bytes"),
        ));
    }
    if text.contains(&0) {
        return Err(invalid(field, "the path contains a NUL byte"));
    }
    if !path.is_absolute() {
        return Err(invalid(
            field,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(invalid(
            field,
            format!("{} contains . or .. components", path.display()),
        ));
    }
    let real = resolve(path)?;
    if real != path {
        return Err(invalid(
            field,
            format!(
                "{} is not canonical (it resolves to {}); symbolic links are refused",
                path.display(),
                real.display()
            ),
        ));
    }
    Ok(())
}

/// Most backups or days a policy may name (a typo guard, not a limit anyone
/// should reach).
const MAX_KEEP: u32 = 100_000;

fn check_retention(options: &BackupOptions) -> Result<crate::retention::RetentionPolicy, Error> {
    for (field, value) in [
        ("options.keep_last", options.keep_last),
        ("options.keep_days", options.keep_days),
    ] {
        if value.is_some_and(|v| v == 0 || v > MAX_KEEP) {
            return Err(invalid(field, format!("must be between 1 and {MAX_KEEP}")));
        }
    }
    Ok(crate::retention::RetentionPolicy {
        keep_last: options.keep_last,
        keep_days: options.keep_days,
    })
}

fn check_options(options: &BackupOptions) -> Result<SnapshotOptions, Error> {
    if let Some(size) = options.staged.and_then(|s| s.piece_size)
        && !crate::backup::Staged::PIECE_SIZES.contains(&size)
    {
        return Err(invalid(
            "options.staged.piece_size",
            "must be between 512 bytes and 64 MiB",
        ));
    }
    if options.online_timeout_secs == 0 || options.online_timeout_secs > MAX_TIMEOUT_SECS {
        return Err(invalid(
            "options.online_timeout_secs",
            format!("must be between 1 and {MAX_TIMEOUT_SECS}"),
        ));
    }
    if options
        .snapshot_size
        .is_some_and(|s| s == 0 || s > MAX_SNAPSHOT_SIZE)
    {
        return Err(invalid(
            "options.snapshot_size",
            "must be between 1 byte and 1 PiB",
        ));
    }
    if options
        .vss_timeout_secs
        .is_some_and(|s| s == 0 || s > MAX_TIMEOUT_SECS)
    {
        return Err(invalid(
            "options.vss_timeout_secs",
            format!("must be between 1 and {MAX_TIMEOUT_SECS}"),
        ));
    }
    if options
        .lock_wait_secs
        .is_some_and(|s| s == 0 || s > crate::snapshot::MAX_LOCK_WAIT_SECS)
    {
        return Err(invalid(
            "options.lock_wait_secs",
            format!(
                "must be between 1 and {}",
                crate::snapshot::MAX_LOCK_WAIT_SECS
            ),
        ));
    }
    // A share below a fifth is for measuring on a test machine: through
    // the helper it would only keep a snapshot (and the run) for ages.
    if matches!(options.pace, crate::pace::Pace::Share(p) if p < 20) {
        return Err(invalid(
            "options.pace",
            "must be gentle, fast, or a share of at least 20%",
        ));
    }
    Ok(SnapshotOptions {
        size: options.snapshot_size,
        vss_deadline: options.vss_timeout_secs.map(std::time::Duration::from_secs),
        lock_wait: options.lock_wait_secs.map(std::time::Duration::from_secs),
    })
}

/// A validated request, ready for the engine.
#[derive(Debug)]
pub enum Validated {
    /// A backup, and the user to write it as (none: the caller).
    Backup(BackupRequest, Option<u32>),
    Probe {
        request: BackupRequest,
        dest_given: bool,
        test_snapshot: bool,
    },
    Cleanup,
    /// A restore, and the protection to apply once the database is back
    /// (validated then: the database must be there first).
    Restore(crate::restore::RestoreRequest, Option<Box<Request>>),
    ScheduleAdd(Box<crate::schedule::Schedule>),
    ScheduleRemove {
        name: String,
    },
    DatabaseAdd(crate::registry::Database),
    DatabaseRemove {
        name: String,
    },
    Protect(Box<Protection>),
    MonitoringSet(Box<crate::monitor::settings::Update>),
    MonitoringTest,
}

/// A validated [`Request::Protect`]: its steps, in order.
#[derive(Debug)]
pub struct Protection {
    /// The test snapshot, if asked for.
    pub probe: Option<BackupRequest>,
    /// The schedule to install, if any (named after the database).
    pub schedule: Option<Box<crate::schedule::Schedule>>,
    /// The registry entry, with its location, retention and schedule.
    pub database: crate::registry::Database,
    /// It replaces the entry of the same database (see [`Request::Protect`]).
    pub replace: bool,
}

impl Validated {
    /// What this request may do at `level`: `Ok` or why not, in words.
    /// The registry must be safe ([`crate::registry::Registry::check_safe`])
    /// before it decides anything.
    pub fn authorize(
        &mut self,
        level: Authority,
        registry: &crate::registry::Registry,
    ) -> Result<(), Error> {
        if level == Authority::Admin {
            if let Validated::Restore(req, _) = self {
                registry.check_safe()?;
                Self::restore_target_allowed(req, registry)?;
            }
            return Ok(());
        }
        let (what, request) = match &*self {
            Validated::Backup(req, _) => ("Backing up", req),
            Validated::Probe { request, .. } => ("Testing a snapshot of", request),
            other => {
                return Err(Error::NeedsAdminLevel {
                    what: other.describe(),
                    why: String::new(),
                });
            }
        };
        registry.check_safe()?;
        if request.snapshot.size.is_some() {
            // An LVM snapshot takes room in the volume group: how much is
            // the administrator's choice.
            return Err(Error::NeedsAdminLevel {
                what: "Choosing the snapshot size".into(),
                why: String::new(),
            });
        }
        let (source, store_name) = (&request.source, &request.store_name);
        if registry.find(source, store_name)?.is_some() {
            return Ok(());
        }
        Err(Error::NeedsAdminLevel {
            what: format!("{what} {}", source.join(store_name).display()),
            why: " because it is not a protected database (an administrator registers it with `persnap database add`)".into(),
        })
    }

    /// A restore writes into a registered database's folder, or into a
    /// folder holding none of the store's files (new, or empty: a new
    /// machine), and only as whoever owns it (root only where nobody else
    /// can change it; see [`crate::restore::writer_of`]).
    fn restore_target_allowed(
        req: &mut crate::restore::RestoreRequest,
        registry: &crate::registry::Registry,
    ) -> Result<(), Error> {
        let registered = match std::fs::symlink_metadata(&req.target) {
            Ok(_) => registry.in_folder(&req.target)?,
            Err(_) => Vec::new(),
        };
        crate::restore::writer_of(&req.target)?;
        req.unprotected = registered.is_empty();
        req.store_names = registered.into_iter().map(|d| d.store_name).collect();
        Ok(())
    }

    /// The request in words, for refusals.
    fn describe(&self) -> String {
        match self {
            Validated::Backup(..) => "Backing up".into(),
            Validated::Probe { .. } => "Testing a snapshot".into(),
            Validated::Cleanup => "Removing leftover snapshots".into(),
            Validated::Restore(r, _) => format!("Restoring into {}", r.target.display()),
            Validated::ScheduleAdd(s) => format!("Scheduling the backup {:?}", s.name),
            Validated::ScheduleRemove { name } => format!("Removing the schedule {name:?}"),
            Validated::DatabaseAdd(db) => format!("Protecting the database {:?}", db.name),
            Validated::DatabaseRemove { name } => {
                format!("Unprotecting the database {name:?}")
            }
            Validated::Protect(p) => format!("Protecting the database {:?}", p.database.name),
            Validated::MonitoringSet(_) => "Changing the monitoring settings".into(),
            Validated::MonitoringTest => "Testing the monitoring settings".into(),
        }
    }
}

/// Everything the helper checks before it acts.
pub fn validate(request: Request) -> Result<Validated, Error> {
    validate_with(request, backup::canonical_dest)
}

/// A backup location taken as it is given: for a helper whose worker
/// checks it with the user's own rights (see [`validate_with`]).
pub fn dest_as_given(path: &Path) -> Result<PathBuf, Error> {
    Ok(path.to_owned())
}

/// [`validate`], with backup locations of backups and probes resolved by
/// `dest`: [`backup::canonical_dest`] when whoever validates also writes,
/// or [`dest_as_given`] when the user checked it with their own rights (so
/// root never says what is in a folder they cannot see).
pub fn validate_with(request: Request, dest: Resolver) -> Result<Validated, Error> {
    let dest_resolver = dest;
    match request {
        Request::Backup {
            source,
            dest,
            store_name,
            method,
            options,
            run_as,
        } => {
            let req = backup_request(
                source,
                Some(dest),
                store_name,
                method,
                &options,
                dest_resolver,
            )?;
            Ok(Validated::Backup(req, run_as.filter(|uid| *uid != 0)))
        }
        Request::Probe {
            source,
            dest,
            store_name,
            method,
            options,
            test_snapshot,
        } => {
            let dest_given = dest.is_some();
            let request =
                backup_request(source, dest, store_name, method, &options, dest_resolver)?;
            Ok(Validated::Probe {
                request,
                dest_given,
                test_snapshot,
            })
        }
        Request::Cleanup {} => Ok(Validated::Cleanup),
        Request::Restore {
            backup,
            target,
            then_protect,
        } => {
            let Validated::Restore(req, _) = restore_request(backup, target)? else {
                unreachable!("a restore validates to one");
            };
            if let Some(protect) = &then_protect {
                check_protect_after_restore(protect, &req.target)?;
            }
            Ok(Validated::Restore(req, then_protect))
        }
        Request::ScheduleAdd {
            name,
            source,
            dest,
            store_name,
            method,
            options,
            when,
            history_dir,
            run_as,
            repository,
            offsite,
        } => {
            crate::schedule::validate_name(&name)?;
            let shown = |r: ScheduleRepositoryRequest| -> Result<_, Error> {
                let location = r.unlock.validate()?;
                Ok((
                    Some(crate::schedule::ScheduleRepository {
                        location: location.display(),
                        keep: r.keep,
                        staged: r.staged,
                    }),
                    Some(r.unlock),
                ))
            };
            if let (Some(first), Some(second)) = (&repository, &offsite) {
                check_offsite(&first.unlock, &second.unlock)?;
            }
            let (repository, unlock) = repository.map_or(Ok((None, None)), shown)?;
            let (offsite, offsite_unlock) = offsite.map_or(Ok((None, None)), shown)?;
            if let Some(run_as) = &run_as {
                if !cfg!(windows) {
                    return Err(Error::Refused {
                        field: "run_as",
                        reason: "schedules run as root and write as the user who made them here; another account is for Windows".into(),
                    });
                }
                crate::schedule::validate_account(&run_as.account)?;
                if run_as.password.0.len() > 256 || run_as.password.0.contains('\0') {
                    return Err(Error::Refused {
                        field: "run_as",
                        reason: "the password is longer than 256 characters or holds a NUL".into(),
                    });
                }
            }
            let (run_as, password) = run_as.map_or((None, Default::default()), |r| {
                (Some(r.account), r.password)
            });
            let req = backup_request(
                source,
                Some(dest),
                store_name,
                method,
                &options,
                backup::canonical_dest,
            )?;
            // A run applies one set of rules to both of its places: the
            // offsite one is recorded with exactly those, or refused.
            if let Some(o) = &offsite {
                let applied = match &repository {
                    Some(r) => r.keep.clone(),
                    None => crate::repository::Keep::like_folder(&req.retention),
                };
                if o.keep != applied {
                    return Err(Error::Refused {
                        field: "offsite",
                        reason: format!(
                            "the offsite repository keeps by the same rules as the backup ({}); give it those",
                            applied.describe()
                        ),
                    });
                }
            }
            let when = crate::schedule::When::parse(&when)?;
            // The folder the root/SYSTEM runs write history into; the helper
            // also checks that the invoking user owns it.
            check_path("history_dir", &history_dir, canonical_dir)?;
            Ok(Validated::ScheduleAdd(Box::new(
                crate::schedule::Schedule {
                    name,
                    source: req.source,
                    dest: req.dest,
                    store_name: req.store_name,
                    method: req.method,
                    retention: req.retention,
                    pace: req.pace,
                    when,
                    history_dir,
                    created: Some(chrono::Utc::now()),
                    uid: None,
                    run_as,
                    password,
                    repository,
                    unlock,
                    offsite,
                    offsite_unlock,
                    drill: true,
                },
            )))
        }
        Request::ScheduleRemove { name } => {
            crate::schedule::validate_name(&name)?;
            Ok(Validated::ScheduleRemove { name })
        }
        Request::DatabaseAdd {
            name,
            source,
            store_name,
        } => {
            crate::registry::validate_name(&name)?;
            check_path("source", &source, volume::canonical)?;
            store::validate_store_name(&store_name)?;
            match store::discover(&source, &store_name) {
                // A folder with no database yet, registered to restore one
                // into (a new machine): none of the store's files may be
                // there, so nothing half-there is taken for a database.
                Err(Error::StoreNotFound { .. })
                    if !crate::restore::holds_store_files(&source, &store_name) => {}
                found => {
                    found?;
                }
            }
            let mut database = crate::registry::Database::new(&name, source, &store_name);
            database.added = Some(chrono::Utc::now());
            Ok(Validated::DatabaseAdd(database))
        }
        Request::DatabaseRemove { name } => {
            crate::registry::validate_name(&name)?;
            Ok(Validated::DatabaseRemove { name })
        }
        protect @ Request::Protect { .. } => protect_request(protect),
        // Checked whole where it is applied (monitor::alert::apply), with
        // the settings it changes.
        Request::MonitoringSet { update } => Ok(Validated::MonitoringSet(Box::new(update))),
        Request::MonitoringTest {} => Ok(Validated::MonitoringTest),
    }
}

/// A run opens both repositories in one environment: the offsite one must
/// be another place, and its storage keys may not contradict the first's.
fn check_offsite(
    first: &crate::repository::Unlock,
    offsite: &crate::repository::Unlock,
) -> Result<(), Error> {
    let refused = |reason: String| Error::Refused {
        field: "offsite",
        reason,
    };
    // The same place however written (`/srv/r`, `local:/srv/r/`).
    if first.validate()?.same_place(&offsite.validate()?) {
        return Err(refused(
            "the offsite copy must go to another repository than the first".into(),
        ));
    }
    // Each takes only the keys of its own kind (checked above), so keys
    // meet only where both are the same kind of storage: there they must
    // be the same keys, or one repository's would reach the other's server.
    let mut a = first.environment.clone();
    let mut b = offsite.environment.clone();
    a.sort();
    b.sort();
    let same_kind = first.validate()?.kind() == offsite.validate()?.kind();
    if same_kind && a != b {
        let key = a
            .iter()
            .chain(&b)
            .find(|kv| !(a.contains(kv) && b.contains(kv)))
            .map_or("storage key", |(k, _)| k.as_str());
        return Err(refused(format!(
            "the offsite repository needs another {key} than the first; one run passes one set of storage keys, so both must use the same"
        )));
    }
    Ok(())
}

#[cfg(all(test, feature = "repository"))]
mod offsite_tests {
    /// `/srv/r` and `local:/srv/r/` are one place: an "offsite" copy there
    /// would be no copy at all.
    #[test]
    fn the_offsite_repository_is_another_place_however_written() {
        let unlock = |location: &str| crate::repository::Unlock {
            location: location.into(),
            password: "p".into(),
            environment: Vec::new(),
        };
        let (a, b, c) = if cfg!(windows) {
            (r"C:\srv\r", r"local:C:\srv\r\", r"D:\offsite")
        } else {
            ("/srv/r", "local:/srv/r/", "/mnt/offsite")
        };
        let e = super::check_offsite(&unlock(a), &unlock(b)).unwrap_err();
        assert!(e.to_string().contains("another repository"), "{e}");
        super::check_offsite(&unlock(a), &unlock(c)).unwrap();
    }
}

/// Each step of a [`Request::Protect`] is checked as the request of its
/// own would be (the registration, the schedule, the test snapshot).
fn protect_request(request: Request) -> Result<Validated, Error> {
    let Request::Protect {
        name,
        source,
        store_name,
        location,
        method,
        options,
        when,
        history_dir,
        run_as,
        test_snapshot,
        replace,
        repository,
        offsite,
    } = request
    else {
        unreachable!("called with a protect request");
    };
    // Checked as a schedule's would be, also when there is no schedule
    // (then nothing but its location and rules is kept).
    let recorded = |r: &Option<ScheduleRepositoryRequest>| -> Result<_, Error> {
        Ok(match r {
            None => None,
            Some(r) => Some(crate::registry::InRepository {
                location: r.unlock.validate()?.display(),
                keep: r.keep.clone(),
                staged: r.staged,
            }),
        })
    };
    let in_repository = recorded(&repository)?;
    let in_offsite = recorded(&offsite)?;
    if let (Some(first), Some(second)) = (&repository, &offsite) {
        check_offsite(&first.unlock, &second.unlock)?;
    }
    let Validated::DatabaseAdd(mut database) = validate(Request::DatabaseAdd {
        name: name.clone(),
        source: source.clone(),
        store_name: store_name.clone(),
    })?
    else {
        unreachable!("a database-add validates to one");
    };
    let req = backup_request(
        database.folder.clone(),
        Some(location),
        store_name.clone(),
        method,
        &options,
        backup::canonical_dest,
    )?;
    let schedule = match (when, history_dir) {
        (Some(when), Some(history_dir)) => {
            let Validated::ScheduleAdd(schedule) = validate(Request::ScheduleAdd {
                name: name.clone(),
                source: source.clone(),
                dest: req.dest.clone(),
                store_name: store_name.clone(),
                method,
                options: options.clone(),
                when,
                history_dir,
                run_as,
                repository,
                offsite,
            })?
            else {
                unreachable!("a schedule-add validates to one");
            };
            Some(schedule)
        }
        (Some(_), None) => {
            return Err(invalid(
                "history_dir",
                "a schedule needs a folder its runs record into",
            ));
        }
        (None, _) if run_as.is_some() => {
            return Err(invalid(
                "run_as",
                "an account is only for a schedule's runs",
            ));
        }
        (None, _) => None,
    };
    database.location = Some(req.dest.clone());
    database.repository = in_repository;
    database.offsite = in_offsite;
    database.retention = req.retention;
    database.method = method;
    database.schedule = schedule.as_ref().map(|s| s.name.clone());
    let probe = test_snapshot.then_some(req);
    Ok(Validated::Protect(Box::new(Protection {
        probe,
        schedule,
        database,
        replace,
    })))
}

/// An existing folder, canonical.
fn canonical_dir(path: &Path) -> Result<PathBuf, Error> {
    let real = crate::fsutil::canonicalize(path).map_err(Error::io(
        "open",
        path,
        "Give an existing folder.",
    ))?;
    if !real.is_dir() {
        return Err(invalid(
            "history_dir",
            format!("{} is not a folder", real.display()),
        ));
    }
    Ok(real)
}

/// The protection asked for with a restore: of the restored folder, a
/// new one (not a change), under a valid name. The rest is checked once
/// the database is there, as any protection is.
fn check_protect_after_restore(protect: &Request, target: &Path) -> Result<(), Error> {
    let Request::Protect {
        name,
        source,
        store_name,
        replace,
        ..
    } = protect
    else {
        return Err(invalid(
            "then_protect",
            "only a protection may follow a restore",
        ));
    };
    crate::registry::validate_name(name)?;
    store::validate_store_name(store_name)?;
    if source != target || *replace {
        return Err(invalid(
            "then_protect",
            "it must newly protect the very folder restored into",
        ));
    }
    Ok(())
}

/// A restore reads a real backup folder (canonical, holding a regular
/// manifest.json) and writes into an existing canonical folder; neither
/// inside the other.
fn restore_request(backup: PathBuf, target: PathBuf) -> Result<Validated, Error> {
    check_path("backup", &backup, backup::canonical_dest)?;
    let manifest = backup.join(crate::manifest::MANIFEST_NAME);
    if !std::fs::symlink_metadata(&manifest).is_ok_and(|m| m.is_file()) {
        return Err(invalid(
            "backup",
            format!(
                "{} holds no manifest.json; it is not a persnap backup",
                backup.display()
            ),
        ));
    }
    // The folder may be new (a new machine): then its nearest existing
    // folder is canonical, and the rest plain names.
    check_path("target", &target, crate::restore::canonical_target)?;
    if target.starts_with(&backup) || backup.starts_with(&target) {
        return Err(invalid(
            "target",
            "the backup and the database folder must not contain each other",
        ));
    }
    Ok(Validated::Restore(
        crate::restore::RestoreRequest {
            backup,
            target,
            store_names: Vec::new(),
            unprotected: false,
        },
        None,
    ))
}

fn backup_request(
    source: PathBuf,
    dest: Option<PathBuf>,
    store_name: String,
    method: MethodChoice,
    options: &BackupOptions,
    dest_resolver: Resolver,
) -> Result<BackupRequest, Error> {
    check_path("source", &source, volume::canonical)?;
    store::validate_store_name(&store_name)?;
    // The source must hold a real SQLite store: regular files, no links.
    store::discover(&source, &store_name)?;
    if let Some(dest) = &dest {
        check_path("dest", dest, dest_resolver)?;
        if dest.starts_with(&source) {
            return Err(Error::DestInsideSource {
                dest: dest.clone(),
                source_dir: source,
            });
        }
        if source.starts_with(dest) {
            return Err(Error::SourceInsideDest {
                dest: dest.clone(),
                source_dir: source,
            });
        }
    }
    let snapshot = check_options(options)?;
    let mut req = BackupRequest::new(source, dest.unwrap_or_default());
    req.store_name = store_name;
    req.method = method;
    req.online_timeout = std::time::Duration::from_secs(options.online_timeout_secs);
    req.snapshot = snapshot;
    req.retention = check_retention(options)?;
    req.pace = options.pace;
    req.staged = options.staged;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitoring_settings_and_their_tests_are_the_administrators() {
        let registry =
            crate::registry::Registry::at(std::env::temp_dir().join("persnap-no-registry"));
        for request in [
            Request::MonitoringSet {
                update: Default::default(),
            },
            Request::MonitoringTest {},
        ] {
            assert_eq!(request.needs(&registry), Authority::Admin);
            let mut validated = validate(request).unwrap();
            let refused = validated
                .authorize(Authority::Backup, &registry)
                .unwrap_err();
            assert!(
                matches!(refused, Error::NeedsAdminLevel { .. }),
                "{refused}"
            );
            assert!(validated.authorize(Authority::Admin, &registry).is_ok());
        }
        // A secret in the request is never in its Debug form (logs).
        let request = Request::MonitoringSet {
            update: crate::monitor::settings::Update {
                mail_password: crate::monitor::settings::Change::Set(crate::schedule::Secret(
                    "pw-in-debug".into(),
                )),
                ..Default::default()
            },
        };
        assert!(!format!("{request:?}").contains("pw-in-debug"));
    }

    #[test]
    fn a_call_gets_its_own_answer_or_a_plain_protocol_failure() {
        use answer::{Cleaned, Unscheduled, answer};
        let removed = || {
            Ok(Reply::ScheduleRemoved {
                name: "nightly".into(),
                existed: true,
            })
        };
        let got: Unscheduled = answer(removed()).unwrap();
        assert_eq!((got.name.as_str(), got.existed), ("nightly", true));
        // Another kind is the helper's mistake, never taken for this one.
        let wrong = answer::<Cleaned>(removed()).unwrap_err();
        assert_eq!(wrong.kind, ErrorKind::Protocol);
        assert!(
            wrong.message.contains("unexpected result"),
            "{}",
            wrong.message
        );
        // The helper's own failure passes through as it was.
        let failed = RemoteFailure::elevation("dismissed");
        let passed = answer::<Cleaned>(Err(failed)).unwrap_err();
        assert_eq!(
            (passed.kind, passed.message.as_str()),
            (ErrorKind::Elevation, "dismissed")
        );
    }
    use std::io::Cursor;

    #[test]
    fn frames_round_trip_with_version() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Control::Cancel).unwrap();
        assert_eq!(buf, b"{\"version\":2,\"type\":\"cancel\"}\n");
        assert_eq!(
            read_frame::<Control>(&mut Cursor::new(buf)).unwrap(),
            Control::Cancel
        );
    }

    #[test]
    fn refuses_wrong_version_bad_json_and_oversized_frames() {
        let wrong = br#"{"version":1,"type":"cancel"}"#;
        assert_eq!(
            parse_frame::<Control>(wrong).unwrap_err(),
            FrameError::Version { got: 1 }
        );
        assert!(
            FrameError::Version { got: 1 }
                .to_string()
                .contains("same persnap version")
        );
        assert!(matches!(
            parse_frame::<Control>(b"{nope"),
            Err(FrameError::BadJson(_))
        ));
        assert!(matches!(
            parse_frame::<Control>(br#"{"type":"cancel"}"#),
            Err(FrameError::BadJson(_))
        ));
        let huge = vec![b' '; MAX_FRAME + 10];
        assert_eq!(
            read_line(&mut Cursor::new(huge)).unwrap_err(),
            FrameError::TooLarge
        );
        assert_eq!(
            read_line(&mut Cursor::new(Vec::new())).unwrap_err(),
            FrameError::Eof
        );
    }

    #[test]
    fn unknown_methods_and_fields_are_refused() {
        let bad_method = br#"{"version":2,"type":"cleanup","extra":1}"#;
        assert!(matches!(
            parse_frame::<Request>(bad_method),
            Err(FrameError::BadJson(_))
        ));
        let line = br#"{"version":2,"type":"backup","source":"/a","dest":"/b","store_name":"x","method":"copy-live","options":{"online_timeout_secs":1,"snapshot_size":null}}"#;
        let err = parse_frame::<Request>(line).unwrap_err();
        assert!(err.to_string().contains("copy-live"), "{err}");
    }

    #[test]
    fn backup_speed_is_gentle_when_not_said_and_only_a_known_one() {
        let options = |pace: &str| {
            serde_json::from_str::<BackupOptions>(&format!(
                r#"{{"online_timeout_secs":1,"snapshot_size":null{pace}}}"#
            ))
        };
        assert_eq!(options("").unwrap().pace, crate::pace::Pace::Gentle);
        assert_eq!(
            options(r#","pace":"fast""#).unwrap().pace,
            crate::pace::Pace::Fast
        );
        assert_eq!(
            options(r#","pace":"40%""#).unwrap().pace,
            crate::pace::Pace::Share(40)
        );
        for bad in [r#","pace":"slow""#, r#","pace":"1%""#, r#","pace":7"#] {
            assert!(options(bad).is_err(), "{bad}");
        }
        // Shares below a fifth are for the benchmark, not for requests.
        let with = |pace| BackupOptions {
            pace,
            ..Default::default()
        };
        assert!(check_options(&with(crate::pace::Pace::Share(10))).is_err());
        // A staged set's pieces: a repository's chunk sizes only.
        let staged = |piece_size| BackupOptions {
            staged: Some(crate::backup::Staged { piece_size }),
            ..Default::default()
        };
        for fine in [None, Some(512), Some(8192), Some(64 << 20)] {
            assert!(check_options(&staged(fine)).is_ok(), "{fine:?}");
        }
        for bad in [Some(0), Some(1), Some(511), Some((64 << 20) + 1)] {
            assert!(check_options(&staged(bad)).is_err(), "{bad:?}");
        }
        assert!(check_options(&with(crate::pace::Pace::Share(40))).is_ok());
        assert!(check_options(&with(crate::pace::Pace::Gentle)).is_ok());
        let mut req = crate::backup::BackupRequest::new("/a", "/b");
        req.pace = crate::pace::Pace::Fast;
        assert_eq!(
            BackupOptions::from_request(&req).pace,
            crate::pace::Pace::Fast
        );
    }

    #[cfg(unix)]
    #[test]
    fn paths_must_be_absolute_canonical_and_bounded() {
        let refused = |p: &Path| {
            check_path("source", p, volume::canonical)
                .unwrap_err()
                .to_string()
        };
        assert!(refused(Path::new("relative/db")).contains("not an absolute path"));
        assert!(refused(Path::new("/tmp/../etc")).contains(".."));
        assert!(refused(&PathBuf::from(format!("/{}", "a".repeat(MAX_PATH)))).contains("longer"));
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        check_path("source", &real, volume::canonical).unwrap();
        let link = real.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(refused(&link).contains("not canonical"));
    }

    #[cfg(windows)]
    #[test]
    fn windows_paths_must_be_absolute_canonical_and_bounded() {
        let refused = |p: &Path| {
            check_path("source", p, volume::canonical)
                .unwrap_err()
                .to_string()
        };
        assert!(refused(Path::new(r"relative\db")).contains("not an absolute path"));
        assert!(
            refused(Path::new(r"\no-drive\db")).contains("not an absolute path")
                || refused(Path::new(r"\no-drive\db")).contains("not canonical")
        );
        assert!(refused(Path::new(r"C:\Windows\..\Users")).contains(".."));
        assert!(
            refused(&PathBuf::from(format!(r"C:\{}", "a".repeat(MAX_PATH)))).contains("longer")
        );
        let dir = tempfile::tempdir().unwrap();
        let real = volume::canonical(dir.path()).unwrap();
        check_path("source", &real, volume::canonical).unwrap();
        // canonicalize's verbatim spelling of the same folder is not the
        // canonical form persnap uses (C:\...), so it is refused.
        let verbatim = std::fs::canonicalize(dir.path()).unwrap();
        assert!(
            refused(&verbatim).contains("not canonical"),
            "{}",
            verbatim.display()
        );
    }
}
