//! The history of backup runs, kept as versioned JSON in the user's data
//! directory and replaced atomically (temp file + rename) on every change.
//!
//! A run is written as `Running` when it starts and rewritten with its
//! outcome when it ends. A `Running` entry whose run lock is no longer held
//! (the process died, or the machine rebooted) becomes `Interrupted` the next
//! time history is loaded ([`History::recover`]). Updates take an exclusive
//! lock on `history.lock`, so concurrent runs never lose each other's entries.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::fsutil::{self, FileLock, RunLock};
use crate::method::{Method, MethodChoice};
use crate::progress::Phase;
use crate::verify::Verification;

/// Format version of history.json; readers refuse newer ones.
pub const HISTORY_FORMAT: u32 = 1;
const FILE_NAME: &str = "history.json";
const LOCK_NAME: &str = "history.lock";
/// The longest history read (years of runs are a few MiB).
const MAX_HISTORY: u64 = 64 * 1024 * 1024;

/// How a run ended (or that it has not yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Outcome {
    Running,
    Completed,
    Failed {
        step: Phase,
        kind: ErrorKind,
        message: String,
    },
    Cancelled,
    /// The process ended without recording an outcome.
    Interrupted,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Completed => "completed",
            Outcome::Failed { .. } => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// One backup run.
/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// A backup: `source` is the store folder, `destination` the backup location.
    #[default]
    Backup,
    /// A restore: `source` is the backup folder, `destination` the store folder.
    Restore,
    /// A restore drill: `source` is the store folder whose backups were
    /// read back, `destination` its first backup location; what each
    /// place gave back is in `drill`.
    Drill,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    /// Short tag carried by the run's lock, snapshot and work folders.
    pub tag: String,
    #[serde(default)]
    pub kind: RunKind,
    /// The schedule that started this run (none: started by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<String>,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub duration_secs: Option<f64>,
    pub source: PathBuf,
    pub store_name: String,
    pub destination: PathBuf,
    /// The finished backup set, once it exists.
    pub backup_path: Option<PathBuf>,
    pub requested_method: MethodChoice,
    pub method: Option<Method>,
    pub snapshot_id: Option<String>,
    /// How long the live database was held still (SQLite's read lock) for
    /// a clone, in seconds (the reflink method only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_still_secs: Option<f64>,
    /// The backup speed it ran at (none: before there was a choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<crate::pace::Pace>,
    /// Seconds a gentle backup rested between its steps, leaving the disk
    /// to the correlator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rested_secs: Option<f64>,
    pub bytes: u64,
    pub files: u32,
    pub outcome: Outcome,
    pub verification: Option<Verification>,
    /// The repository the verified set was stored in, and how that copy
    /// was checked (none: a backup folder only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<crate::repository::Stored>,
    /// The offsite copy, when the backup has a second location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<crate::repository::Offsite>,
    /// A restore drill's findings, place by place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<crate::drill::DrillReport>,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub host: String,
    pub tool_version: String,
}

impl Run {
    /// A run that starts now: recorded as running, everything else to come.
    pub fn starting(
        kind: RunKind,
        id: String,
        tag: String,
        source: PathBuf,
        store_name: String,
        destination: PathBuf,
    ) -> Run {
        Run {
            id,
            tag,
            kind,
            scheduled: None,
            started: Utc::now(),
            finished: None,
            duration_secs: None,
            source,
            store_name,
            destination,
            backup_path: None,
            requested_method: MethodChoice::Auto,
            method: None,
            snapshot_id: None,
            held_still_secs: None,
            pace: None,
            rested_secs: None,
            bytes: 0,
            files: 0,
            outcome: Outcome::Running,
            verification: None,
            repository: None,
            offsite: None,
            drill: None,
            warnings: Vec::new(),
            host: crate::manifest::host_name(),
            tool_version: crate::TOOL_VERSION.into(),
        }
    }
}

impl Run {
    /// A backup that was refused before it could start (the helper turned
    /// the request down: the backup location is gone, the store moved),
    /// recorded by the caller so that the failure is not invisible.
    pub fn refused(
        source: PathBuf,
        store_name: String,
        destination: PathBuf,
        kind: ErrorKind,
        message: String,
    ) -> Run {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tag = id[..8].to_owned();
        let mut run = Run::starting(RunKind::Backup, id, tag, source, store_name, destination);
        run.finished = Some(run.started);
        run.duration_secs = Some(0.0);
        run.outcome = Outcome::Failed {
            step: Phase::Prepare,
            kind,
            message,
        };
        run
    }
}

#[derive(Serialize, Deserialize)]
struct HistoryFile {
    format: u32,
    runs: Vec<Run>,
}

/// Where a run's record goes each time it changes: the history file, or —
/// in the elevated helper — a frame to the unprivileged caller, who owns
/// the history.
pub trait Recorder {
    fn record(&mut self, run: &Run) -> Result<()>;
}

impl Recorder for History {
    fn record(&mut self, run: &Run) -> Result<()> {
        self.upsert(run)
    }
}

/// A recorder for work that is not a run (probes, cleanups).
pub struct Discard;

impl Recorder for Discard {
    fn record(&mut self, _: &Run) -> Result<()> {
        Ok(())
    }
}

/// The history store in one folder.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
}

impl History {
    /// `$PERSNAP_DATA_DIR`, else the platform's data folder for persnap
    /// (`~/.local/share/persnap` on Linux).
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("PERSNAP_DATA_DIR") {
            return Some(PathBuf::from(dir));
        }
        // Under sudo, the history is the invoking user's, not root's.
        if fsutil::is_root()
            && let Some(home) = std::env::var("SUDO_USER")
                .ok()
                .filter(|u| u != "root")
                .and_then(|u| crate::sys::home_of(&u))
        {
            return Some(home.join(".local/share/persnap"));
        }
        directories::ProjectDirs::from("", "", "persnap").map(|p| p.data_dir().to_owned())
    }

    pub fn open_default() -> Result<History> {
        let dir = Self::default_dir().ok_or_else(|| Error::History {
            path: PathBuf::from("~"),
            action: "located",
            detail: "no home folder is known; set PERSNAP_DATA_DIR".into(),
        })?;
        Ok(History::at(dir))
    }

    pub fn at(dir: impl Into<PathBuf>) -> History {
        History { dir: dir.into() }
    }

    /// The folder the history is kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// All runs, oldest first, as stored (see [`History::recover`]).
    pub fn load(&self) -> Result<Vec<Run>> {
        let path = self.path();
        // Never a link, a FIFO or a file without end: a monitoring check
        // reads other users' histories.
        let bytes = match crate::fsutil::read_untrusted(&path, MAX_HISTORY) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error("read", e.to_string())),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.error("read", format!("not valid JSON: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
        if format > u64::from(HISTORY_FORMAT) {
            return Err(self.error(
                "read",
                format!("it was written by a newer persnap (format {format}); upgrade persnap"),
            ));
        }
        let file: HistoryFile =
            serde_json::from_value(value).map_err(|e| self.error("read", e.to_string()))?;
        Ok(file.runs)
    }

    /// Mark runs left `Running` by dead processes as `Interrupted`; returns them.
    pub fn recover(&self) -> Result<Vec<Run>> {
        let recovered = self.modify(|runs| {
            let mut recovered = Vec::new();
            for run in runs
                .iter_mut()
                .filter(|r| r.outcome == Outcome::Running && !RunLock::is_held(&r.tag))
            {
                run.outcome = Outcome::Interrupted;
                recovered.push(run.clone());
            }
            recovered
        })?;
        // Only this process turned them (under the history's lock): each
        // is said once.
        for run in &recovered {
            log_run(run);
            crate::monitor::events::report(run);
        }
        Ok(recovered)
    }

    /// Insert `run`, or replace the stored run with the same id.
    pub fn upsert(&self, run: &Run) -> Result<()> {
        log_run(run);
        self.modify(|runs| match runs.iter_mut().find(|r| r.id == run.id) {
            Some(slot) => *slot = run.clone(),
            None => runs.push(run.clone()),
        })
    }

    fn modify<T>(&self, change: impl FnOnce(&mut Vec<Run>) -> T) -> Result<T> {
        self.ensure_dir()?;
        let _lock = FileLock::exclusive(&self.dir.join(LOCK_NAME))
            .map_err(|e| self.error("locked", e.to_string()))?;
        let mut runs = self.load()?;
        let before = runs.clone();
        let out = change(&mut runs);
        if runs != before {
            let json = serde_json::to_vec_pretty(&HistoryFile {
                format: HISTORY_FORMAT,
                runs,
            })
            .expect("history serializes");
            // Written by its owner: a scheduled run drops to the user who
            // made the schedule before it records anything.
            fsutil::atomic_write(&self.path(), &json)
                .map_err(|e| self.error("written", e.to_string()))?;
        }
        Ok(out)
    }

    fn ensure_dir(&self) -> Result<()> {
        crate::sys::create_private_dir(&self.dir, true)
            .map_err(|e| self.error("created", e.to_string()))
    }

    fn error(&self, action: &'static str, detail: String) -> Error {
        Error::History {
            path: self.path(),
            action,
            detail,
        }
    }
}
/// The start of the warning a backup kept in its folder gets when storing
/// it in the repository failed (the backup stands; see
/// `repository::deliver`).
pub const NOT_STORED: &str = "It was not stored in the repository: ";

/// A run as it is recorded, into the log (see [`crate::monitor::log`]):
/// what, from where to where, and how it ended, in the words the app
/// shows.
fn log_run(run: &Run) {
    let line = crate::monitor::log::one_line;
    let what = line(&format!(
        "{:?} run {} of {} in {} to {}",
        run.kind,
        &run.id[..run.id.len().min(8)],
        run.store_name,
        run.source.display(),
        run.destination.display()
    ));
    match &run.outcome {
        Outcome::Running => tracing::info!("{what}: started"),
        Outcome::Completed => tracing::info!(
            "{what}: completed in {:.2} s, {} bytes, {} files{}",
            run.duration_secs.unwrap_or_default(),
            run.bytes,
            run.files,
            run.warnings
                .iter()
                .map(|w| format!("; warning: {}", line(w)))
                .collect::<String>()
        ),
        Outcome::Failed {
            step,
            kind,
            message,
        } => tracing::error!("{what}: failed during {step} ({kind:?}): {}", line(message)),
        Outcome::Cancelled => tracing::warn!("{what}: cancelled"),
        Outcome::Interrupted => tracing::warn!("{what}: interrupted (its process ended)"),
    }
}
