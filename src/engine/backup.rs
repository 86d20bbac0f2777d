//! One backup run, start to finish, and the sweep of leftovers.
//!
//! [`run_backup`] records the run in history as `Running`, then:
//! prepare (discover the store, find its volume, choose the method, check
//! space) → sweep leftovers → snapshot → copy into `<name>.partial` →
//! release the snapshot → verify → write the manifest → rename to the final
//! name → record the outcome. Every temporary thing (snapshot, `.partial`,
//! scratch folder) is owned by a guard, so an error, a cancel or a panic
//! removes it, and the run is recorded as Failed/Cancelled, never Completed.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::copy::{self, CopiedFile, Meter};
use crate::error::{Error, ErrorKind, HINT_DEST, Result};
use crate::fsutil::{self, RunLock};
use crate::history::{Outcome, Recorder, Run};
use crate::manifest::{self, Manifest};
use crate::method::{Method, MethodChoice};
use crate::pace::{Pace, Pacer};
use crate::progress::{CancelToken, Level, Phase, Progress};
use crate::snapshot::{self, SnapshotGuard, SnapshotOptions};
use crate::store::{self, Store};
use crate::verify::{self, WORK_MARKER, WorkDir};
use crate::volume::{self, VolumeInfo};
use crate::{online, units};

pub use crate::names::{PARTIAL_SUFFIX, SCRATCH_PREFIX};

/// What to back up, where to, and how.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackupRequest {
    pub source: PathBuf,
    pub dest: PathBuf,
    pub store_name: String,
    pub method: MethodChoice,
    /// How long `sqlite-online` may wait for its read lock.
    pub online_timeout: Duration,
    pub snapshot: SnapshotOptions,
    /// Old backups of this store at `dest` to delete after this one is
    /// verified (default: keep all).
    pub retention: crate::retention::RetentionPolicy,
    /// How hard the copy and the verification may use the disk.
    #[serde(default)]
    pub pace: Pace,
    /// An operator's backup into a protected database's location, set by
    /// the helper (never taken from the caller): recorded in the manifest,
    /// and counted apart by retention.
    #[serde(default)]
    pub on_request: bool,
    /// A set staged for a repository that alone keeps it, removed once
    /// stored (see [`Staged`]). The helper never lets one into a protected
    /// database's location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<Staged>,
}

/// A set staged for a repository that alone keeps it: written without
/// flushing it to the disk, and its hashes checked against the copy where
/// it is (perhaps in memory), not read back from the disk. The repository's
/// check after storing compares what was stored with the pieces hashed
/// here as the bytes came from the snapshot, and reads back from the disk
/// what was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Staged {
    /// The repository's piece size (its fixed chunks): each piece's
    /// SHA-256 is taken as it is read from the snapshot, and kept beside
    /// the set ([`crate::copy::pieces_path`]). `None`: none are taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece_size: Option<u32>,
}

impl Staged {
    /// The piece sizes a request may ask for (a repository's fixed chunks).
    pub const PIECE_SIZES: std::ops::RangeInclusive<u32> = 512..=(64 << 20);
}

impl BackupRequest {
    pub fn new(source: impl Into<PathBuf>, dest: impl Into<PathBuf>) -> Self {
        BackupRequest {
            source: source.into(),
            dest: dest.into(),
            store_name: store::DEFAULT_STORE_NAME.into(),
            method: MethodChoice::Auto,
            online_timeout: online::DEFAULT_TIMEOUT,
            snapshot: SnapshotOptions::default(),
            retention: Default::default(),
            pace: Pace::default(),
            on_request: false,
            staged: None,
        }
    }
}

/// A successful run.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub run: Run,
    pub manifest: Manifest,
    pub backup_dir: PathBuf,
}

/// A failed run: the step that failed and why.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct BackupFailure {
    pub step: Phase,
    pub run_id: Option<String>,
    #[source]
    pub error: Error,
}

/// What a backup would do, decided before anything is changed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub store: Store,
    pub volume: VolumeInfo,
    pub method: Method,
    /// The backup location, canonical.
    pub dest: PathBuf,
    /// Bytes the backup needs free at the location (set + scratch copy).
    pub needed_bytes: u64,
    pub free_bytes: u64,
    /// The location shares the database's filesystem.
    pub dest_on_same_filesystem: bool,
    /// Old backups to delete once this one is verified.
    pub retention: crate::retention::RetentionPolicy,
    pub pace: Pace,
    /// Staged for a repository that alone keeps it (see [`Staged`]).
    pub staged: bool,
}

impl Plan {
    /// The steps a backup would run, in words, for previews.
    pub fn describe_steps(&self) -> Vec<String> {
        let n = self.store.files.len();
        let files = format!(
            "{n} file{} ({})",
            if n == 1 { "" } else { "s" },
            units::bytes(self.store.total_bytes())
        );
        let verify = if self.staged {
            "Verify the copy where it is (most likely still in memory: it is removed once stored, and the repository's own check reads what was stored back from the disk): every file against its SHA-256, then PRAGMA integrity_check (SQLite replays any journal/WAL in a scratch copy)".to_owned()
        } else {
            format!(
                "Verify the copy: read every file back against its SHA-256{}, let SQLite replay any journal/WAL in a scratch copy (a reflink where the location allows), run PRAGMA integrity_check",
                match self.pace {
                    Pace::Fast => "",
                    _ => " (gently too)",
                }
            )
        };
        let keep = if self.staged {
            format!(
                "Write manifest.json and stage the backup in {}",
                self.dest.display()
            )
        } else {
            format!(
                "Write manifest.json and keep the backup in {}",
                self.dest.display()
            )
        };
        let mut steps = match (&self.method, &self.volume.snapshot) {
            (Method::SqliteOnline, _) => vec![
                format!(
                    "Copy the live database {} with SQLite's online backup (no snapshot; the writer may pause meanwhile)",
                    self.store.name
                ),
                verify,
                keep,
            ],
            (_, support) => {
                let what = match support {
                    crate::volume::SnapshotSupport::Available { detail, .. } => detail.clone(),
                    crate::volume::SnapshotSupport::Unavailable { .. } => {
                        self.volume.mount.device.clone()
                    }
                };
                vec![
                    format!("Take a snapshot of {what}"),
                    format!("Copy {files} from the snapshot, {}", self.pace.manner()),
                    "Remove the snapshot".to_owned(),
                    verify,
                    keep,
                ]
            }
        };
        if !self.retention.is_keep_all() {
            steps.push(format!(
                "Then delete older backups of {} in {} ({}; never the newest good one)",
                self.store.name,
                self.dest.display(),
                self.retention.describe()
            ));
        }
        steps
    }

    /// Things worth a warning before starting: space, same filesystem.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.free_bytes < self.needed_bytes {
            warnings.push(format!(
                "The backup location has {} free but the backup needs {} (the files plus a scratch copy for verification).",
                units::bytes(self.free_bytes),
                units::bytes(self.needed_bytes)
            ));
        }
        if self.dest_on_same_filesystem {
            warnings.push(SAME_FS_WARNING.to_owned());
        }
        warnings
    }
}

const SAME_FS_WARNING: &str = "The backup location is on the same filesystem as the database: this protects against mistakes, not against losing the disk. Prefer another disk.";

/// The database side of a plan: the store as found, its volume and the
/// method. In the helper it is decided as root (who can read the store)
/// and handed to the worker that writes the backup as the user.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourcePlan {
    pub store: Store,
    pub volume: VolumeInfo,
    pub method: Method,
    /// The database filesystem's device number (Unix), to tell whether the
    /// backup location shares it without looking at the database again.
    pub device: Option<u64>,
}

/// Find the store, its volume and the method that applies.
pub fn plan_source(req: &BackupRequest) -> Result<SourcePlan> {
    store::validate_store_name(&req.store_name)?;
    let source = volume::canonical(&req.source)?;
    let store = store::discover(&source, &req.store_name)?;
    let volume = volume::probe(&source)?;
    let method = snapshot::choose_method(req.method, &volume)?;
    Ok(SourcePlan {
        device: crate::sys::device_of(&source),
        store,
        volume,
        method,
    })
}

/// Check a request and decide how it would run, changing nothing.
pub fn plan(req: &BackupRequest) -> Result<Plan> {
    plan_with(req, plan_source(req)?)
}

/// The whole plan, given the database side: the backup location checked
/// (by whoever writes the backup), space, same filesystem.
pub fn plan_with(req: &BackupRequest, source_plan: SourcePlan) -> Result<Plan> {
    let SourcePlan {
        store,
        volume,
        method,
        device,
    } = source_plan;
    let source = store.dir.clone();
    let dest = canonical_dest(&req.dest)?;
    if dest.starts_with(&source) {
        return Err(Error::DestInsideSource {
            dest,
            source_dir: source,
        });
    }
    if source.starts_with(&dest) {
        return Err(Error::SourceInsideDest {
            dest,
            source_dir: source,
        });
    }
    let needed_bytes = store.total_bytes() * 2 + copy::BLOCK as u64;
    let free_bytes = fsutil::free_space(&dest).map_err(|source| Error::DestNotWritable {
        path: dest.clone(),
        source,
    })?;
    let dest_on_same_filesystem = match device {
        Some(dev) => crate::sys::device_of(&dest) == Some(dev),
        None => fsutil::same_filesystem(&source, &dest).unwrap_or(false),
    };
    Ok(Plan {
        store,
        volume,
        method,
        dest,
        needed_bytes,
        free_bytes,
        dest_on_same_filesystem,
        retention: req.retention,
        pace: req.pace,
        staged: req.staged.is_some(),
    })
}

/// Who writes the backups of a protected database into its registered
/// location, whoever asked (an operator's "Back up now" and the schedule
/// alike): the location's owner — so the location need not be writable by
/// anyone else, and everything in it is one identity's, which retention
/// trusts. Root only where root alone can change the folder and every
/// folder above it. A location others can change is refused: they could
/// swap what the backup writes or deletes.
pub fn location_writer(dest: &Path) -> Result<crate::restore::Writer> {
    let meta = fs::symlink_metadata(dest).map_err(|_| Error::DestMissing {
        path: dest.to_owned(),
    })?;
    if !meta.is_dir() {
        return Err(Error::DestNotDir {
            path: dest.to_owned(),
        });
    }
    location_writer_or_why(dest).map_err(|reason| Error::Refused {
        field: "dest",
        reason: reason.trim_end_matches('.').to_owned(),
    })
}

/// [`location_writer`] of an existing folder, or why not in plain words
/// (the app says it before the Protect button).
pub fn location_writer_or_why(dest: &Path) -> std::result::Result<crate::restore::Writer, String> {
    folder_writer(dest).map_err(|problem| {
        format!(
            "The backup location {} {problem}. Backups of a protected database are written \
             as the location's owner, and nobody else may be able to rename or replace what \
             is in it. Make it writable by its owner only (chmod 755); operators no longer \
             need to write there.",
            dest.display()
        )
    })
}

/// Who may write into folder `dest` for root: its owner, or root where
/// root alone can change it and every folder above it. `Err`: what is
/// wrong with it, to follow its name ("belongs to uid 1001, who could …").
pub fn folder_writer(dest: &Path) -> std::result::Result<crate::restore::Writer, String> {
    use crate::restore::Writer;
    let refused = |problem: String| problem;
    #[cfg(unix)]
    {
        let (uid, gid) = crate::sys::owner_and_group(dest)
            .map_err(|e| format!("{} cannot be examined ({e}).", dest.display()))?;
        if uid == 0 {
            return fsutil::admin_only_folder(dest)
                .map(|()| Writer::Root)
                .map_err(|e| refused(format!("belongs to root, but {e}")));
        }
        let name = crate::sys::user_ids(uid).map_or_else(|| format!("uid {uid}"), |(n, _, _)| n);
        // An access list may let anyone in, whatever the mode says.
        if crate::sys::has_extended_acl(dest) {
            return Err(refused(
                "has an access control list that may let others change it".into(),
            ));
        }
        // No group write at all on the location or a folder above it: a
        // primary group may have other members too.
        crate::sys::only_owner_can_change(dest, uid, u32::MAX)
            .map(|()| Writer::Owner { uid, gid, name })
            .map_err(|e| refused(format!("is not safe: {e}")))
    }
    #[cfg(not(unix))]
    {
        fsutil::admin_only_folder(dest)
            .map(|()| Writer::Administrator)
            .map_err(|e| refused(format!("is not safe: {e}")))
    }
}

/// Canonical form of a backup location, with the engine's errors.
pub fn canonical_dest(dest: &Path) -> Result<PathBuf> {
    let path = fsutil::canonicalize(dest).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::DestMissing {
            path: dest.to_owned(),
        },
        _ => Error::DestNotWritable {
            path: dest.to_owned(),
            source,
        },
    })?;
    if !path.is_dir() {
        return Err(Error::DestNotDir { path });
    }
    Ok(path)
}

/// Where a backup's store files come from: a snapshot taken in this
/// process ([`LocalSnapshot`]), or — in the helper's unprivileged worker —
/// one the privileged helper takes and streams in.
pub trait Capture {
    /// Plan the database side (a process that can read the store does).
    fn plan_source(&mut self, req: &BackupRequest) -> Result<SourcePlan>;
    /// Take the snapshot for run `tag` and open the store files it shows.
    fn take(
        &mut self,
        plan: &Plan,
        tag: &str,
        options: &SnapshotOptions,
        progress: &mut dyn Progress,
    ) -> Result<Box<dyn Captured>>;
}

/// A snapshot of the store, open for copying.
pub trait Captured {
    /// What identifies the snapshot to an administrator.
    fn id(&self) -> &str;
    fn journal_mode(&self) -> store::JournalMode;
    /// How long the live database was held still for the image, in
    /// seconds (a clone under SQLite's lock); `None` where nothing was.
    fn held_still(&self) -> Option<f64> {
        None
    }
    /// Something the user should know about the snapshot (a slow clone).
    fn warning(&self) -> Option<String> {
        None
    }
    /// The store files as the snapshot shows them, each open for reading
    /// (called once).
    fn files(&mut self) -> Result<Vec<(store::StoreFile, fs::File)>>;
    /// After the copy: whether the snapshot stayed intact (an LVM
    /// snapshot can overflow), so the copy can be trusted.
    fn check_valid(&mut self) -> Result<()>;
    /// Remove the snapshot; a failure is a warning in `run`.
    fn release(self: Box<Self>, run: &mut Run, progress: &mut dyn Progress);
}

/// Snapshots taken by this process (root, or the helper itself).
pub struct LocalSnapshot;

impl Capture for LocalSnapshot {
    fn plan_source(&mut self, req: &BackupRequest) -> Result<SourcePlan> {
        plan_source(req)
    }

    fn take(
        &mut self,
        plan: &Plan,
        tag: &str,
        options: &SnapshotOptions,
        progress: &mut dyn Progress,
    ) -> Result<Box<dyn Captured>> {
        for line in snapshot::sweep_all() {
            progress.log(Level::Info, &line);
        }
        let provider = snapshot::provider(plan.method, options, &plan.store.name)?;
        let guard = SnapshotGuard::new(provider.create(&plan.volume, tag)?);
        let (image, files) = guard.open_store(&plan.store.name)?;
        Ok(Box::new(Local {
            guard,
            journal_mode: image.journal_mode(),
            files: Some(files),
        }))
    }
}

struct Local {
    guard: SnapshotGuard,
    journal_mode: store::JournalMode,
    files: Option<Vec<(store::StoreFile, fs::File)>>,
}

impl Captured for Local {
    fn id(&self) -> &str {
        self.guard.id()
    }
    fn journal_mode(&self) -> store::JournalMode {
        self.journal_mode
    }
    fn held_still(&self) -> Option<f64> {
        self.guard.held_still().map(|d| d.as_secs_f64())
    }
    fn warning(&self) -> Option<String> {
        self.guard.warning()
    }
    fn files(&mut self) -> Result<Vec<(store::StoreFile, fs::File)>> {
        Ok(self.files.take().unwrap_or_default())
    }
    fn check_valid(&mut self) -> Result<()> {
        self.guard.check_valid()
    }
    fn release(self: Box<Self>, run: &mut Run, progress: &mut dyn Progress) {
        release_with_retry(self.guard, run, progress)
    }
}

/// Run one backup, recording it through `recorder` as it starts and ends.
/// Callers recover interrupted runs first ([`crate::history::History::recover`]).
#[allow(clippy::result_large_err)] // returned once per run; clarity over size
pub fn run_backup(
    req: &BackupRequest,
    recorder: &mut dyn Recorder,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> std::result::Result<BackupReport, BackupFailure> {
    run_backup_with(req, &mut LocalSnapshot, recorder, progress, cancel)
}

/// [`run_backup`] with the store files coming from `capture`.
#[allow(clippy::result_large_err)]
pub fn run_backup_with(
    req: &BackupRequest,
    capture: &mut dyn Capture,
    recorder: &mut dyn Recorder,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> std::result::Result<BackupReport, BackupFailure> {
    let early = |error| BackupFailure {
        step: Phase::Prepare,
        run_id: None,
        error,
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let tag = id[..8].to_owned();
    let lock = RunLock::acquire(&tag).map_err(|e| {
        early(Error::io(
            "create the run lock",
            "/run/persnap",
            "Check that /run or $XDG_RUNTIME_DIR is writable.",
        )(e))
    })?;
    let mut run = new_run(req, id, tag);
    recorder.record(&run).map_err(early)?;
    let started = Instant::now();
    let mut step = Phase::Prepare;
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        execute(req, capture, &mut run, &mut step, progress, cancel)
    }));
    run.finished = Some(Utc::now());
    run.duration_secs = Some(started.elapsed().as_secs_f64());
    let outcome = match result {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(error)) => Err(error),
        Err(panic) => {
            run.outcome = Outcome::Failed {
                step,
                kind: ErrorKind::Internal,
                message: panic_message(&panic),
            };
            let _ = recorder.record(&run);
            drop(lock);
            panic::resume_unwind(panic);
        }
    };
    let report = match outcome {
        Ok((manifest, backup_dir)) => {
            run.outcome = Outcome::Completed;
            Ok(BackupReport {
                run: run.clone(),
                manifest,
                backup_dir,
            })
        }
        Err(error) => {
            run.outcome = match &error {
                Error::Cancelled => Outcome::Cancelled,
                e => Outcome::Failed {
                    step,
                    kind: e.kind(),
                    message: e.to_string(),
                },
            };
            Err(BackupFailure {
                step,
                run_id: Some(run.id.clone()),
                error,
            })
        }
    };
    if let Err(e) = recorder.record(&run) {
        progress.log(Level::Warning, &e.to_string());
    }
    drop(lock);
    report.map(|mut r| {
        r.run = run;
        r
    })
}

fn new_run(req: &BackupRequest, id: String, tag: String) -> Run {
    let mut run = Run::starting(
        crate::history::RunKind::Backup,
        id,
        tag,
        req.source.clone(),
        req.store_name.clone(),
        req.dest.clone(),
    );
    run.requested_method = req.method;
    run.pace = Some(req.pace);
    run
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("persnap failed internally ({text}); nothing was kept. Please report this.")
}

/// Everything after the run is recorded; `step` tracks where we are.
fn execute(
    req: &BackupRequest,
    capture: &mut dyn Capture,
    run: &mut Run,
    step: &mut Phase,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<(Manifest, PathBuf)> {
    progress.phase(Phase::Prepare);
    let plan = plan_with(req, capture.plan_source(req)?)?;
    run.source = plan.store.dir.clone();
    run.destination = plan.dest.clone();
    run.method = Some(plan.method);
    for line in sweep_work_dirs(std::slice::from_ref(&plan.dest)) {
        progress.log(Level::Info, &line);
    }
    if plan.free_bytes < plan.needed_bytes {
        return Err(Error::InsufficientSpace {
            path: plan.dest,
            needed: plan.needed_bytes,
            available: plan.free_bytes,
        });
    }
    if plan.dest_on_same_filesystem {
        warn(run, progress, SAME_FS_WARNING);
    }
    let started = run.started;
    let name = format!(
        "{}-{}-{}",
        plan.store.name,
        started.format("%Y%m%dT%H%M%SZ"),
        run.tag
    );
    let partial = WorkDir::create(plan.dest.join(format!("{name}{PARTIAL_SUFFIX}")))?;
    let mut meter = Meter {
        phase: Phase::Copy,
        done: 0,
        total: plan.store.total_bytes(),
        progress,
        cancel,
        pacer: Pacer::new(plan.pace),
    };
    let (copied, journal_mode) = match plan.method {
        Method::SqliteOnline => {
            *step = Phase::Copy;
            meter.progress.phase(Phase::Copy);
            let file = online::backup(
                &plan.store,
                &partial.path().join(&plan.store.name),
                req.online_timeout,
                &mut meter,
            )?;
            (vec![(file, Vec::new())], plan.store.journal_mode())
        }
        _ => copy_from_snapshot(
            &plan,
            capture,
            &req.snapshot,
            run,
            step,
            (partial.path(), req.staged),
            &mut meter,
        )?,
    };
    cancel.check()?;
    let (files, pieces): (Vec<CopiedFile>, Vec<copy::Pieces>) = copied.into_iter().unzip();
    run.bytes = files.iter().map(|f| f.size).sum();
    run.files = files.len() as u32;

    *step = Phase::Verify;
    meter.progress.phase(Phase::Verify);
    let mut meter = Meter {
        phase: Phase::Verify,
        done: 0,
        total: run.bytes,
        progress: meter.progress,
        cancel,
        pacer: meter.pacer,
    };
    let scratch = plan.dest.join(format!("{SCRATCH_PREFIX}{}", run.tag));
    let verification = verify::verify_set(
        partial.path(),
        &files,
        &plan.store.name,
        scratch,
        req.staged.is_none(),
        &mut meter,
    )?;
    run.verification = Some(verification.clone());
    run.rested_secs = meter
        .pacer
        .is_paced()
        .then(|| meter.pacer.rested().as_secs_f64());
    cancel.check()?;

    *step = Phase::Finish;
    meter.progress.phase(Phase::Finish);
    let manifest = Manifest {
        format: manifest::MANIFEST_FORMAT,
        tool: "persnap".into(),
        tool_version: crate::TOOL_VERSION.into(),
        run_id: run.id.clone(),
        host: run.host.clone(),
        source_dir: plan.store.dir.clone(),
        store_name: plan.store.name.clone(),
        journal_mode,
        method: plan.method,
        snapshot_id: run.snapshot_id.clone(),
        held_still_secs: run.held_still_secs,
        started,
        finished: Utc::now(),
        total_bytes: run.bytes,
        files,
        verification,
        on_request: req.on_request,
    };
    let final_dir = plan.dest.join(&name);
    // The pieces hashed as the bytes came from the snapshot, beside the
    // staged set, for the repository's check (which hashes the set again
    // without them).
    let pieces = match req.staged.and_then(|s| s.piece_size) {
        Some(size) if plan.method != Method::SqliteOnline => {
            let dir = WorkDir::create(copy::pieces_path(&final_dir))?;
            for (file, ids) in manifest.files.iter().zip(&pieces) {
                copy::write_pieces(dir.path(), &file.name, size, ids)?;
            }
            Some(dir)
        }
        _ => None,
    };
    finish(partial, &manifest, &final_dir)?;
    if let Some(dir) = pieces {
        dir.keep();
    }
    prune(req, &plan.dest, &plan.store.name, run, progress);
    run.backup_path = Some(final_dir.clone());
    Ok((manifest, final_dir))
}

/// Snapshot, copy the store as the snapshot shows it, release the snapshot.
fn copy_from_snapshot(
    plan: &Plan,
    capture: &mut dyn Capture,
    options: &SnapshotOptions,
    run: &mut Run,
    step: &mut Phase,
    (partial, staged): (&Path, Option<Staged>),
    meter: &mut Meter,
) -> Result<(Vec<(CopiedFile, copy::Pieces)>, store::JournalMode)> {
    *step = Phase::Snapshot;
    meter.progress.phase(Phase::Snapshot);
    let mut captured = capture.take(plan, &run.tag, options, meter.progress)?;
    run.snapshot_id = Some(captured.id().to_owned());
    run.held_still_secs = captured.held_still();
    let created = match run.held_still_secs {
        Some(held) => format!(
            "Cloned the database's files into {}, holding the database still for {:.1} ms",
            captured.id(),
            held * 1000.0
        ),
        None => format!("Created snapshot {}", captured.id()),
    };
    meter.progress.log(Level::Info, &created);
    if let Some(warning) = captured.warning() {
        warn(run, meter.progress, &warning);
    }
    meter.cancel.check()?;

    *step = Phase::Copy;
    meter.progress.phase(Phase::Copy);
    let files = captured.files()?;
    meter.total = files.iter().map(|(f, _)| f.size).sum();
    // A snapshot that overflowed mid-copy can fail reads; say so rather than
    // report the read error, and never trust a copy from it.
    let copied = match staged {
        Some(staged) => copy::copy_staged(files, partial, staged.piece_size, meter),
        None => copy::copy_opened(files, partial, meter)
            .map(|files| files.into_iter().map(|f| (f, Vec::new())).collect()),
    }
    .map_err(|e| captured.check_valid().err().unwrap_or(e))?;
    captured.check_valid()?;

    *step = Phase::Release;
    meter.progress.phase(Phase::Release);
    let journal_mode = captured.journal_mode();
    captured.release(run, meter.progress);
    Ok((copied, journal_mode))
}

/// Release a snapshot, retrying briefly; a final failure is a warning (the
/// copy is good) and the next run's sweep removes the snapshot.
fn release_with_retry(mut guard: SnapshotGuard, run: &mut Run, progress: &mut dyn Progress) {
    match guard.release_retrying() {
        Ok(()) => progress.log(Level::Info, &format!("Removed snapshot {}", guard.id())),
        Err(e) => warn(
            run,
            progress,
            &format!("{e} The next backup or `persnap cleanup` will remove it."),
        ),
    }
}

fn warn(run: &mut Run, progress: &mut dyn Progress, message: &str) {
    progress.log(Level::Warning, message);
    run.warnings.push(message.to_owned());
}

/// Manifest in, work marker out, rename to the final name, flush.
/// After a verified backup: delete what the retention policy lets go. A
/// failure here is a warning; the new backup stands.
fn prune(
    req: &BackupRequest,
    dest: &Path,
    store_name: &str,
    run: &mut Run,
    progress: &mut dyn Progress,
) {
    if req.retention.is_keep_all() {
        return;
    }
    match crate::retention::apply_to(dest, store_name, Some(&req.source), &req.retention, false) {
        Ok(removed) => {
            for path in removed {
                progress.log(
                    Level::Info,
                    &format!(
                        "Deleted old backup {} ({})",
                        path.display(),
                        req.retention.describe()
                    ),
                );
            }
        }
        Err(e) => warn(run, progress, &format!("Old backups were not deleted: {e}")),
    }
}

fn finish(partial: WorkDir, manifest: &Manifest, final_dir: &Path) -> Result<()> {
    manifest::write(partial.path(), manifest)?;
    let marker = partial.path().join(WORK_MARKER);
    fs::remove_file(&marker).map_err(Error::io("remove", marker, HINT_DEST))?;
    fsutil::rename(partial.path(), final_dir).map_err(Error::io(
        "rename the finished backup to",
        final_dir,
        HINT_DEST,
    ))?;
    partial.keep();
    let parent = final_dir.parent().expect("backup folder has a parent");
    fsutil::fsync_dir(parent).map_err(Error::io("flush", parent, HINT_DEST))
}

/// Remove leftovers of interrupted runs: tagged snapshots on every mounted
/// volume, and `.partial`/scratch folders in `dests`. Only things whose run
/// is provably dead (its run lock is free) are touched. Returns one line per
/// thing removed or per problem found.
pub fn sweep_leftovers(dests: &[PathBuf]) -> Vec<String> {
    let mut lines = snapshot::sweep_all();
    lines.extend(sweep_work_dirs(dests));
    lines
}

/// The part of [`sweep_leftovers`] in backup locations: unfinished backup
/// folders and interrupted deletions, removed by whoever owns them.
pub fn sweep_work_dirs(dests: &[PathBuf]) -> Vec<String> {
    let mut lines = Vec::new();
    for dest in dests {
        for dir in interrupted_deletions(dest) {
            match crate::retention::finish_deleting(&dir) {
                Ok(()) => lines.push(format!("Finished deleting old backup {}", dir.display())),
                Err(e) => lines.push(format!(
                    "Could not remove {} ({e}); delete it by hand.",
                    dir.display()
                )),
            }
        }
    }
    for dest in dests {
        for dir in leftover_work_dirs(dest) {
            match fs::remove_dir_all(&dir) {
                Ok(()) => lines.push(format!(
                    "Removed unfinished backup folder {}",
                    dir.display()
                )),
                Err(e) => lines.push(format!(
                    "Could not remove unfinished backup folder {} ({e}); delete it by hand.",
                    dir.display()
                )),
            }
        }
    }
    lines
}

/// Old backups whose deletion by retention was interrupted (see
/// [`crate::retention::interrupted_deletion`]: ours, and not pinned).
fn interrupted_deletions(dest: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dest) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(crate::names::DELETING_PREFIX)
        })
        .map(|e| e.path())
        .filter(|p| crate::retention::interrupted_deletion(p))
        .collect()
}

/// `.partial` and scratch folders in `dest` that hold the work marker and
/// whose run is dead.
fn leftover_work_dirs(dest: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dest) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let tag = work_dir_tag(&name)?;
            let path = e.path();
            let ours = fs::symlink_metadata(&path).ok()?.is_dir()
                && crate::sys::made_by_me(&path)
                && path.join(WORK_MARKER).is_file();
            (ours && !RunLock::is_held(tag)).then_some(path)
        })
        .collect()
}

/// The run tag in a work folder's name, if it is one.
fn work_dir_tag(name: &str) -> Option<&str> {
    let tag = if let Some(rest) = name.strip_prefix(SCRATCH_PREFIX) {
        rest
    } else {
        let stem = name.strip_suffix(PARTIAL_SUFFIX)?;
        stem.get(stem.len().checked_sub(8)?..)?
    };
    (tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_work_folders_by_tag() {
        assert_eq!(
            work_dir_tag("persistence.db-20261123T101010Z-0a1b2c3d.partial"),
            Some("0a1b2c3d")
        );
        assert_eq!(work_dir_tag(".persnap-verify-deadbeef"), Some("deadbeef"));
        assert_eq!(work_dir_tag("holiday.partial"), None);
        assert_eq!(
            work_dir_tag("persistence.db-20261123T101010Z-0a1b2c3d"),
            None
        );
        assert_eq!(work_dir_tag(".persnap-verify-xyz"), None);
    }
}
