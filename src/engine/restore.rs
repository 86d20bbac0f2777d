//! Restore: put a verified backup back in place of the correlator's store.
//!
//! 1. The backup folder must hold exactly the files its manifest lists.
//! 2. The store must not be in use: on Linux no process may hold any of its
//!    files open (found through `/proc/*/fd`); on Windows each file must
//!    open exclusively. Otherwise: "Stop the correlator first".
//! 3. The backup is verified while it is staged, before anything in the
//!    store folder changes: the set is copied into a staging folder inside
//!    the target folder with every SHA-256 checked on the way, then opened
//!    there with SQLite, which replays the captured journal or WAL, checks
//!    integrity and checkpoints the WAL. What remains is ONE self-contained
//!    database file. (One read of the backup, not a verification pass and
//!    then a copy.)
//! 4. The current store files (main, journal, WAL, shm) are moved aside
//!    into a timestamped safety folder in the target folder — never
//!    deleted — and the staged file is renamed into place (one atomic
//!    rename), then checked again where it now lies.
//! 5. The restore is recorded in history like a backup.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::copy::{self, Meter};
use crate::error::{Error, HINT_DEST, Result};
use crate::fsutil::{self, RunLock};
use crate::history::{Outcome, Recorder, Run, RunKind};
use crate::manifest::Manifest;
use crate::progress::{CancelToken, Level, Phase, Progress};
use crate::store::FileRole;
use crate::verify::{self, Verification, WorkDir};

/// Prefix of the folder the current store files are moved into.
pub const SAFETY_PREFIX: &str = "before-restore-";
/// Prefix of the staging folder (removed after the restore).
const STAGING_PREFIX: &str = ".persnap-restore-";

const HINT_TARGET: &str =
    "Check that the database folder is writable (restore as root, or as the correlator's user).";

/// What to restore, and where to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// A finished backup folder (holding manifest.json).
    pub backup: PathBuf,
    /// The correlator's store folder (-PstoreLocation).
    pub target: PathBuf,
    /// The store names the folder is registered with; a backup of another
    /// store is refused. Empty: any (a restore run by the engine directly).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub store_names: Vec<String>,
}

/// A finished restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The restored database file.
    pub restored: PathBuf,
    /// Where the store files that were there before now are (none if the
    /// folder held no store).
    pub safety_dir: Option<PathBuf>,
    /// The integrity check of the restored file where it lies.
    pub verification: Verification,
    /// When and where the backup was taken, for the person restoring.
    pub backup_taken: chrono::DateTime<Utc>,
    pub backup_host: String,
    pub warnings: Vec<String>,
}

/// Said on every restore: SQLite files carry the correlator's schema.
pub const VERSION_WARNING: &str = "A database written by a newer Apama version cannot be used by an older one: start the restored store with the same (or a newer) Apama version as the one that wrote it.";

/// A backup as read for a restore: its manifest, checked against the
/// folder, and each listed file open for reading (in manifest order).
pub struct BackupSet {
    pub manifest: Manifest,
    pub files: Vec<fs::File>,
}

/// Open the backup in `dir`: the folder must hold exactly the manifest's
/// files with their sizes; each is opened without following a link. In
/// the helper this runs with the credentials of the user who asked, so it
/// reaches only what that user may read.
pub fn open_backup(dir: &Path) -> Result<BackupSet> {
    let manifest = verify::read_listed(dir)?;
    let mut files = Vec::with_capacity(manifest.files.len());
    for file in &manifest.files {
        let path = dir.join(&file.name);
        let opened =
            crate::sys::open_nofollow(&path).map_err(Error::io("open", &path, HINT_DEST))?;
        let size = opened
            .metadata()
            .map_err(Error::io("examine", &path, HINT_DEST))?
            .len();
        if size != file.size {
            return Err(Error::BackupDamaged {
                path: dir.to_owned(),
                detail: format!(
                    "{} has {size} bytes, the manifest says {}",
                    file.name, file.size
                ),
            });
        }
        files.push(opened);
    }
    Ok(BackupSet { manifest, files })
}

/// A backup of another store than the folder is registered for is
/// refused (checked by the helper as root, and again where it runs).
pub fn check_store_name(req: &RestoreRequest, manifest: &Manifest) -> Result<()> {
    if req.store_names.is_empty() || req.store_names.contains(&manifest.store_name) {
        return Ok(());
    }
    Err(Error::Refused {
        field: "backup",
        reason: format!(
            "it is a backup of {:?}, but {} is registered for {}; restore a backup of that database",
            manifest.store_name,
            req.target.display(),
            req.store_names.join(", ")
        ),
    })
}

/// Restore, recording the run through `recorder`.
pub fn run_restore(
    req: &RestoreRequest,
    recorder: &mut dyn Recorder,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> std::result::Result<RestoreReport, (Phase, Error)> {
    run_restore_from(
        req,
        &mut || open_backup(&req.backup),
        recorder,
        progress,
        cancel,
    )
}

/// [`run_restore`] with the backup opened by `open` (the helper's worker
/// gets it already open, from the user who asked).
pub fn run_restore_from(
    req: &RestoreRequest,
    open: &mut dyn FnMut() -> Result<BackupSet>,
    recorder: &mut dyn Recorder,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> std::result::Result<RestoreReport, (Phase, Error)> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let tag = id[..8].to_owned();
    let lock = RunLock::acquire(&tag).map_err(|e| {
        (
            Phase::Prepare,
            Error::io(
                "create the run lock",
                "/run/persnap",
                "Check that /run or $XDG_RUNTIME_DIR is writable.",
            )(e),
        )
    })?;
    let mut run = new_run(req, id, tag.clone());
    recorder.record(&run).map_err(|e| (Phase::Prepare, e))?;
    let started = Instant::now();
    let mut step = Phase::Prepare;
    let result = execute(req, open, &tag, &mut run, &mut step, progress, cancel);
    run.finished = Some(Utc::now());
    run.duration_secs = Some(started.elapsed().as_secs_f64());
    run.outcome = match &result {
        Ok(_) => Outcome::Completed,
        Err(Error::Cancelled) => Outcome::Cancelled,
        Err(e) => Outcome::Failed {
            step,
            kind: e.kind(),
            message: e.to_string(),
        },
    };
    if let Err(e) = recorder.record(&run) {
        progress.log(Level::Warning, &e.to_string());
    }
    drop(lock);
    result.map_err(|e| (step, e))
}

fn new_run(req: &RestoreRequest, id: String, tag: String) -> Run {
    Run::starting(
        RunKind::Restore,
        id,
        tag,
        req.backup.clone(),
        String::new(),
        req.target.clone(),
    )
}

fn execute(
    req: &RestoreRequest,
    open: &mut dyn FnMut() -> Result<BackupSet>,
    tag: &str,
    run: &mut Run,
    step: &mut Phase,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<RestoreReport> {
    progress.phase(Phase::Prepare);
    let target = prepare_target(&req.target)?;
    run.destination = target.clone();

    let BackupSet { manifest, files } = open()?;
    if files.len() != manifest.files.len() {
        return Err(Error::Protocol {
            detail: format!(
                "{} of the backup's {} files arrived",
                files.len(),
                manifest.files.len()
            ),
        });
    }
    check_store_name(req, &manifest)?;
    run.store_name = manifest.store_name.clone();
    run.method = Some(manifest.method);
    run.files = manifest.files.len() as u32;
    run.bytes = manifest.total_bytes;

    *step = Phase::Prepare;
    let live = store_paths(&target, &manifest.store_name);
    check_not_in_use(&live)?;
    cancel.check()?;

    *step = Phase::Copy;
    progress.phase(Phase::Copy);
    // Staging verifies: hashes on the way in, integrity after the replay.
    let staging = WorkDir::create(target.join(format!("{STAGING_PREFIX}{tag}")))?;
    let mut meter = Meter {
        phase: Phase::Copy,
        done: 0,
        total: manifest.total_bytes,
        progress,
        cancel,
        pacer: crate::pace::Pacer::fast(),
    };
    let staged = stage(files, &manifest, staging.path(), &mut meter)
        .map_err(|e| verify::as_damaged(&req.backup, e))?;
    cancel.check()?;

    *step = Phase::Finish;
    progress.phase(Phase::Finish);
    check_not_in_use(&live)?;
    // The restored file belongs to whoever owned the store (or its folder).
    let owner_like = if live[0].is_file() {
        live[0].clone()
    } else {
        target.clone()
    };
    crate::sys::take_ownership_of(&staged, &owner_like).map_err(Error::io(
        "set the owner of",
        &staged,
        HINT_TARGET,
    ))?;
    let safety_dir = move_aside(&target, &live)?;
    if let Some(dir) = &safety_dir {
        progress.log(
            Level::Info,
            &format!("The previous store files are kept in {}", dir.display()),
        );
    }
    let restored = target.join(&manifest.store_name);
    fs::rename(&staged, &restored).map_err(Error::io(
        "move the restored database into",
        &restored,
        HINT_TARGET,
    ))?;
    fsutil::fsync_dir(&target).map_err(Error::io("flush", &target, HINT_TARGET))?;
    drop(staging);

    *step = Phase::Verify;
    progress.phase(Phase::Verify);
    let verification = verify::check_database(&restored)?;
    run.verification = Some(verification.clone());
    let warnings = vec![VERSION_WARNING.to_owned()];
    run.warnings = warnings.clone();
    Ok(RestoreReport {
        restored,
        safety_dir,
        verification,
        backup_taken: manifest.finished,
        backup_host: manifest.host.clone(),
        warnings,
    })
}

/// The target folder, created if missing, canonical.
fn prepare_target(target: &Path) -> Result<PathBuf> {
    if !target.exists() {
        fs::create_dir_all(target).map_err(Error::io(
            "create the database folder",
            target,
            HINT_TARGET,
        ))?;
    }
    let target = fsutil::canonicalize(target).map_err(Error::io("open", target, HINT_TARGET))?;
    if !target.is_dir() {
        return Err(Error::DestNotDir { path: target });
    }
    Ok(target)
}

/// Every file SQLite may use for the store `name` in `dir`.
fn store_paths(dir: &Path, name: &str) -> Vec<PathBuf> {
    FileRole::ALL
        .iter()
        .map(|role| dir.join(format!("{name}{}", role.suffix())))
        .collect()
}

/// Copy the set into `staging` (hashes checked on the way), let SQLite
/// replay the journal or WAL, fold the WAL into the main file, and return
/// the single database file that results.
fn stage(
    files: Vec<fs::File>,
    manifest: &Manifest,
    staging: &Path,
    meter: &mut Meter,
) -> Result<PathBuf> {
    let wanted: Vec<_> = manifest
        .files
        .iter()
        .zip(files)
        .filter(|(f, _)| f.role != FileRole::Shm)
        .map(|(f, file)| {
            let listed = crate::store::StoreFile {
                role: f.role,
                name: f.name.clone(),
                size: f.size,
            };
            (listed, file)
        })
        .collect();
    let copied = copy::copy_opened(wanted, staging, meter)?;
    for (file, got) in manifest
        .files
        .iter()
        .filter(|f| f.role != FileRole::Shm)
        .zip(copied)
    {
        verify::check_hash(file, (got.size, got.sha256))?;
    }
    let db = staging.join(&manifest.store_name);
    verify::consolidate(&db)?;
    for role in [FileRole::Journal, FileRole::Wal, FileRole::Shm] {
        let leftover = staging.join(format!("{}{}", manifest.store_name, role.suffix()));
        match fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", leftover, HINT_TARGET)(e)),
        }
    }
    fs::File::options()
        .write(true)
        .open(&db)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("flush", &db, HINT_TARGET))?;
    Ok(db)
}

/// Move the store files that exist into a new timestamped safety folder.
fn move_aside(target: &Path, live: &[PathBuf]) -> Result<Option<PathBuf>> {
    let present: Vec<&PathBuf> = live
        .iter()
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .collect();
    if present.is_empty() {
        return Ok(None);
    }
    let dir = target.join(format!(
        "{SAFETY_PREFIX}{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    fs::create_dir(&dir).map_err(Error::io("create the safety folder", &dir, HINT_TARGET))?;
    for path in present {
        let name = path.file_name().expect("store paths have names");
        fs::rename(path, dir.join(name)).map_err(Error::io("move aside", path, HINT_TARGET))?;
    }
    fsutil::fsync_dir(&dir).map_err(Error::io("flush", &dir, HINT_DEST))?;
    crate::sys::take_ownership_of(&dir, target).map_err(Error::io(
        "set the owner of",
        &dir,
        HINT_TARGET,
    ))?;
    Ok(Some(dir))
}

/// Refuse while any file of the store `name` in `dir` is open in a process.
pub fn check_store_not_in_use(dir: &Path, name: &str) -> Result<()> {
    check_not_in_use(&store_paths(dir, name))
}

/// Refuse while any store file is open in another process.
fn check_not_in_use(paths: &[PathBuf]) -> Result<()> {
    let users = crate::sys::processes_using(paths);
    if users.is_empty() {
        return Ok(());
    }
    Err(Error::StoreInUse {
        users: users.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_cover_every_sqlite_file() {
        let paths = store_paths(Path::new("/db"), "persistence.db");
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "persistence.db",
                "persistence.db-journal",
                "persistence.db-wal",
                "persistence.db-shm"
            ]
        );
    }

    #[test]
    fn files_in_use_are_named_with_their_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("persistence.db");
        fs::write(&path, b"x").unwrap();
        let held = fs::File::open(&path).unwrap();
        let err = check_not_in_use(std::slice::from_ref(&path)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Stop the correlator first"), "{text}");
        if cfg!(target_os = "linux") {
            assert!(
                text.contains(&std::process::id().to_string()),
                "names the process: {text}"
            );
        }
        drop(held);
        check_not_in_use(&[path]).unwrap();
    }
}
