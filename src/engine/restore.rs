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
    /// The folder is no protected database's (a new machine, a new
    /// folder): it must hold none of the store's files, so nothing is
    /// replaced. Set by the helper.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unprotected: bool,
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

/// Said when a restore was cancelled: it stops only before the database
/// folder is changed (after that it finishes what it began).
pub const CANCELLED: &str =
    "The restore was cancelled before anything in the database folder changed; it is as it was.";

/// Said on every restore: SQLite files carry the correlator's schema.
pub const VERSION_WARNING: &str = "A database written by a newer Apama version cannot be used by an older one: start the restored database with the same (or a newer) Apama version as the one that wrote it.";

/// Who writes a restore's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "as")]
pub enum Writer {
    /// The folder's owner: the files are theirs from the start.
    Owner { uid: u32, gid: u32, name: String },
    /// Root, in a folder that only root can change (nor any folder above
    /// it): a correlator run as root.
    Root,
    /// The administrator persnap runs as (Windows: the elevated helper).
    Administrator,
}

impl Writer {
    /// In words, for the plan.
    pub fn words(&self) -> String {
        match self {
            Writer::Owner { name, .. } => format!(
                "written as {name}, the folder's owner: the restored files are {name}'s"
            ),
            Writer::Root => "written as root, because the folder belongs to root and nobody else can change it: the restored files are root's, readable by root only".into(),
            Writer::Administrator => "written as the administrator".into(),
        }
    }
}

/// A restore as it would run, found out before anything is read out of a
/// repository or asked of the administrator: every refusal comes first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The folder, canonical (a new one: under its canonical parent).
    pub target: PathBuf,
    /// It does not exist yet: the restore creates it.
    pub creates: bool,
    /// The protected databases registered in the folder.
    pub protected_as: Vec<String>,
    /// The store's files in the folder now (moved aside, never deleted).
    pub replaces: Vec<String>,
    pub writer: Writer,
    /// Room the restore needs there, and what is free.
    pub needed: u64,
    pub free: Option<u64>,
}

impl RestorePlan {
    /// What will happen, in words, one line each.
    pub fn words(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let target = self.target.display();
        lines.push(match (self.creates, self.protected_as.as_slice()) {
            (true, _) => format!("Creates the folder {target} and restores the database into it."),
            (false, []) => {
                format!("Restores the database into {target}, which holds none of its files yet.")
            }
            (false, names) => format!(
                "Restores the database into {target}, the folder of the protected database {}.",
                names.join(", ")
            ),
        });
        if !self.replaces.is_empty() {
            lines.push(format!(
                "The files there now ({}) are moved into a before-restore-… folder beside them, never deleted.",
                self.replaces.join(", ")
            ));
        }
        let mut writer = self.writer.words();
        if let Some(first) = writer.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        lines.push(format!("{writer}."));
        lines.push(match self.free {
            Some(free) => format!(
                "It needs {} there; {} is free.",
                crate::units::bytes(self.needed),
                crate::units::bytes(free)
            ),
            None => format!("It needs {} there.", crate::units::bytes(self.needed)),
        });
        lines.push("The backup is checked while it is put in place (every file's SHA-256, then SQLite's integrity check), and the restored database is checked again where it lies.".into());
        lines
    }
}

/// `path` in canonical form: an existing folder's, or for a folder still
/// to be made, its nearest existing ancestor's with the rest appended
/// (plain names only).
pub fn canonical_target(path: &Path) -> Result<PathBuf> {
    let (base, rest) = existing_base(path)?;
    let real = fsutil::canonicalize(&base).map_err(Error::io("open", &base, HINT_TARGET))?;
    if !real.is_dir() {
        return Err(Error::DestNotDir { path: real });
    }
    Ok(rest.iter().fold(real, |p, name| p.join(name)))
}

/// The nearest folder of `path` (itself or above) that exists, and the
/// names below it still to be made.
fn existing_base(path: &Path) -> Result<(PathBuf, Vec<std::ffi::OsString>)> {
    let mut base = path.to_owned();
    let mut rest = Vec::new();
    while fs::symlink_metadata(&base).is_err() {
        let refused = |why: &str| Error::RestoreTarget {
            path: path.to_owned(),
            reason: why.to_owned(),
        };
        match base.components().next_back() {
            Some(std::path::Component::Normal(name)) => rest.push(name.to_owned()),
            _ => return Err(refused("give a folder's full path, without . or ..")),
        }
        if !base.pop() || base.as_os_str().is_empty() {
            return Err(refused("no folder above it exists"));
        }
    }
    rest.reverse();
    Ok((base, rest))
}

/// Who may write a restore into `target` (or, for a new folder, into the
/// folder it is made in): its owner; root only where root alone can change
/// the folder and every folder above it. Refused where anyone else could
/// swap what the restore works on.
pub fn writer_of(target: &Path) -> Result<Writer> {
    #[cfg(unix)]
    {
        let (base, _) = existing_base(target)?;
        let (uid, gid) =
            crate::sys::owner_and_group(&base).map_err(Error::io("examine", &base, HINT_TARGET))?;
        let refused = |reason: String| Error::RestoreTarget {
            path: target.to_owned(),
            reason,
        };
        if uid == 0 {
            return match fsutil::admin_only_folder(&base) {
                Ok(()) => Ok(Writer::Root),
                Err(e) => Err(refused(format!(
                    "{} belongs to root, and {e}; persnap writes as root only where nobody else can change the folder or any folder above it. Make it writable by root alone (chmod go-w), or give it to the correlator's user (chown)",
                    base.display()
                ))),
            };
        }
        let name = crate::sys::user_ids(uid).map_or_else(|| format!("uid {uid}"), |(n, _, _)| n);
        // The folder's own group counts as the owner's only when it is
        // their primary (private) group.
        let private = crate::sys::primary_group(uid).unwrap_or(u32::MAX);
        if crate::sys::has_extended_acl(&base) {
            return Err(refused(format!(
                "{} has an access control list that may let others change it; a restore writes there as the folder's owner ({name}), and nobody else may be able to swap what it works on",
                base.display()
            )));
        }
        match crate::sys::only_owner_can_change(&base, uid, private) {
            Ok(()) => Ok(Writer::Owner { uid, gid, name }),
            Err(e) => Err(refused(format!(
                "{e}; a restore writes there as the folder's owner ({name}), and nobody else may be able to swap what it works on. Make the folders writable by their owner only (chmod go-w)"
            ))),
        }
    }
    #[cfg(not(unix))]
    {
        existing_base(target)?;
        Ok(Writer::Administrator)
    }
}

/// Check a restore of the store `store_name` (`bytes` in all) into
/// `target` before anything is read or asked: the folder (new, holding
/// none of the store's files, or a protected database's), who writes
/// there, the room there, and that nothing has the database open (all
/// processes as root; as a user, those the user may inspect).
pub fn plan(
    target: &Path,
    store_name: &str,
    bytes: u64,
    registry: &crate::registry::Registry,
) -> Result<RestorePlan> {
    crate::store::validate_store_name(store_name)?;
    let target = canonical_target(target)?;
    let creates = fs::symlink_metadata(&target).is_err();
    let refused = |reason: String| Error::RestoreTarget {
        path: target.clone(),
        reason,
    };
    let registered = if creates {
        Vec::new()
    } else {
        registry.in_folder(&target)?
    };
    if !registered.is_empty() && !registered.iter().any(|d| d.store_name == store_name) {
        return Err(refused(format!(
            "it is the folder of the protected database {}, whose store is {}, not {store_name}; restore a backup of that database there, or choose another folder",
            registered
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            registered
                .iter()
                .map(|d| d.store_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )));
    }
    let replaces = present_files(&target, store_name);
    if registered.is_empty() {
        nothing_to_replace(&target, &replaces)?;
    }
    let writer = writer_of(&target)?;
    let (base, _) = existing_base(&target)?;
    let needed = bytes;
    let free = room_for(&base, needed)?;
    if !creates {
        check_store_not_in_use(&target, store_name)?;
    }
    Ok(RestorePlan {
        target,
        creates,
        protected_as: registered.into_iter().map(|d| d.name).collect(),
        replaces,
        writer,
        needed,
        free,
    })
}

/// A folder that is no protected database's must hold none of the
/// store's files (`present`): a restore replaces only a protected
/// database's.
fn nothing_to_replace(target: &Path, present: &[String]) -> Result<()> {
    if present.is_empty() {
        return Ok(());
    }
    Err(Error::RestoreTarget {
        path: target.to_owned(),
        reason: format!(
            "it holds {} of a database persnap does not protect, and a restore replaces only a protected database's files. Choose a new or empty folder, or protect that database first (persnap database add)",
            present.join(", ")
        ),
    })
}

/// The free space at `dir`, refused when less than `needed` (unknown:
/// not refused here; the copy says so if it runs out).
pub fn room_for(dir: &Path, needed: u64) -> Result<Option<u64>> {
    let free = crate::sys::free_space(dir).ok();
    if let Some(free) = free
        && free < needed
    {
        return Err(Error::NoRoomToRestore {
            path: dir.to_owned(),
            needed: crate::units::bytes(needed),
            free: crate::units::bytes(free),
        });
    }
    Ok(free)
}

/// Whether any file of the store `store_name` is in `dir` (any kind of
/// file, links too).
pub fn holds_store_files(dir: &Path, store_name: &str) -> bool {
    !present_files(dir, store_name).is_empty()
}

/// The names of the store's files in `dir` now.
fn present_files(dir: &Path, store_name: &str) -> Vec<String> {
    store_paths(dir, store_name)
        .into_iter()
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect()
}

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
    if req.unprotected {
        nothing_to_replace(&target, &present_files(&target, &manifest.store_name))?;
    }
    run.store_name = manifest.store_name.clone();
    run.method = Some(manifest.method);
    run.files = manifest.files.len() as u32;
    run.bytes = manifest.total_bytes;

    *step = Phase::Prepare;
    let live = store_paths(&target, &manifest.store_name);
    check_not_in_use(&live)?;
    room_for(&target, manifest.total_bytes)?;
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
            &format!("The previous database files are kept in {}", dir.display()),
        );
    }
    let restored = target.join(&manifest.store_name);
    fsutil::rename(&staged, &restored).map_err(Error::io(
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
        fsutil::rename(path, &dir.join(name)).map_err(Error::io(
            "move aside",
            path,
            HINT_TARGET,
        ))?;
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

    fn registry(dir: &Path) -> crate::registry::Registry {
        crate::registry::Registry::at(dir.join("databases"))
    }

    #[test]
    fn a_new_folder_is_made_and_said_first() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("apama").join("store");
        let plan = plan(&target, "persistence.db", 4096, &registry(dir.path())).unwrap();
        assert!(plan.creates);
        assert!(plan.replaces.is_empty() && plan.protected_as.is_empty());
        assert_eq!(
            plan.target,
            fsutil::canonicalize(dir.path())
                .unwrap()
                .join("apama/store")
        );
        let words = plan.words().join("\n");
        assert!(words.contains("Creates the folder"), "{words}");
        assert!(words.contains("It needs 4.0 KiB there"), "{words}");
        assert!(!target.exists(), "a plan changes nothing");
    }

    #[test]
    fn a_folder_holding_an_unprotected_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("persistence.db-wal"), b"x").unwrap();
        let e = plan(dir.path(), "persistence.db", 1, &registry(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("persistence.db-wal of a database persnap does not protect"),
            "{e}"
        );
        // Another store's files are none of its business.
        plan(dir.path(), "other.db", 1, &registry(dir.path())).unwrap();
    }

    #[test]
    fn a_protected_folder_takes_only_its_own_store() {
        let dir = tempfile::tempdir().unwrap();
        let folder = fsutil::canonicalize(dir.path()).unwrap();
        let registry = registry(dir.path());
        registry
            .add(&crate::registry::Database::new(
                "orders",
                &folder,
                "persistence.db",
            ))
            .unwrap();
        fs::write(folder.join("persistence.db"), b"x").unwrap();
        let plan_ok = plan(&folder, "persistence.db", 1, &registry).unwrap();
        assert_eq!(plan_ok.protected_as, ["orders"]);
        assert_eq!(plan_ok.replaces, ["persistence.db"]);
        assert!(
            plan_ok
                .words()
                .join(" ")
                .contains("moved into a before-restore-")
        );
        let e = plan(&folder, "other.db", 1, &registry)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("whose store is persistence.db, not other.db"),
            "{e}"
        );
    }

    #[test]
    fn too_little_room_is_said_in_words_before_anything() {
        let dir = tempfile::tempdir().unwrap();
        let e = plan(
            dir.path(),
            "persistence.db",
            u64::MAX / 4,
            &registry(dir.path()),
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Copy);
        let text = e.to_string();
        assert!(
            text.contains("not enough room") && text.contains("PiB"),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_others_can_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let e = plan(&shared, "persistence.db", 1, &registry(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod go-w"), "{e}");
        // Nor a new folder made inside it.
        let e = plan(
            &shared.join("new"),
            "persistence.db",
            1,
            &registry(dir.path()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("chmod go-w"), "{e}");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o700)).unwrap();
        let plan = plan(&shared, "persistence.db", 1, &registry(dir.path())).unwrap();
        let expected = if fsutil::is_root() {
            Writer::Root
        } else {
            // SAFETY: getuid cannot fail.
            let uid = unsafe { libc::getuid() };
            match plan.writer {
                Writer::Owner { uid: got, .. } => assert_eq!(got, uid),
                ref other => panic!("{other:?}"),
            }
            plan.writer.clone()
        };
        assert_eq!(plan.writer, expected);
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
