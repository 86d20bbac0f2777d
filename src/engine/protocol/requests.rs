//! What travels between the front ends and the helper: the request, its
//! events and its reply, and why a call failed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::error::ErrorKind;
use crate::history::Run;
use crate::manifest::Manifest;
use crate::method::MethodChoice;
use crate::progress::{Level, Phase};

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
