//! Taking a verified backup set into a repository, for every front end:
//! where the set is staged when only a repository keeps it, storing it
//! (and its offsite copy) with the outcome recorded on the run, retention
//! afterwards, and the sweep of sets that dead runs left staged.
//!
//! The command line and the app both back up into a repository through
//! [`Delivery`]: open it first (a wrong password or an unreachable server
//! is said before any snapshot is taken), back up into the staging folder
//! ([`staging_dir`], after [`sweep_staging`]) or the backup folder, then
//! [`Delivery::deliver`] the verified set. Runs as the user whose backup
//! it is, never as root.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::history::{History, Outcome, Run};
use crate::manifest::Manifest;
use crate::progress::{CancelToken, Level, Phase, Progress};

use super::{Address, Forgotten, Keep, Offsite, Password, Repo, Stored};

/// Where a backup is staged before it is stored when only a repository
/// keeps it: the user's cache folder (or `PERSNAP_STAGING_DIR`), created
/// private to them.
pub fn staging_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("PERSNAP_STAGING_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            directories::ProjectDirs::from("", "", "persnap").map(|p| p.cache_dir().join("staging"))
        })
        .ok_or_else(|| Error::Repository {
            what: "No home folder is known to stage the backup in.".into(),
            advice: "Give a backup location as well (--dest DIR).",
            detail: String::new(),
            kind: ErrorKind::BadInput,
        })?;
    std::fs::create_dir_all(&dir).map_err(Error::io(
        "create the staging folder",
        &dir,
        crate::error::HINT_DEST,
    ))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(Error::io("make private", &dir, crate::error::HINT_DEST))?;
    }
    Ok(dir)
}

/// How old a staged set must be before a sweep may take it for a dead
/// run's (besides its run lock being free): a run between its backup and
/// its store holds no lock for a moment.
const STAGED_SWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Sets staged for a repository by runs that died before storing them
/// (their run lock is free, and they are over an hour old): removed from
/// the staging folder `dir` before another is staged. One line for each.
pub fn sweep_staging(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    // The sets first, then the pieces of those gone (in whatever order
    // the folder lists them).
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with(crate::names::PIECES_PREFIX)
    });
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if is_read_back_scratch(&name) {
            if let Some(line) =
                sweep_scratch(&path, "a read-back from a repository that was stopped")
            {
                lines.push(line);
            }
            continue;
        }
        // The pieces of a staged set go with it (or after it).
        if let Some(set) = name.strip_prefix(crate::names::PIECES_PREFIX) {
            if !dir.join(set).exists()
                && let Some(line) = sweep_scratch(&path, "a backup for a repository that stopped")
            {
                lines.push(line);
            }
            continue;
        }
        // A finished set's name ends in its run's tag: `…-6c2ab96f`.
        let Some(tag) = name
            .rsplit_once('-')
            .map(|(_, tag)| tag)
            .filter(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            continue;
        };
        let old = std::fs::symlink_metadata(&path).is_ok_and(|m| {
            m.is_dir()
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STAGED_SWEEP_AFTER)
        });
        if !old
            || !path.join(crate::manifest::MANIFEST_NAME).is_file()
            || crate::fsutil::RunLock::is_held(tag)
        {
            continue;
        }
        lines.push(match std::fs::remove_dir_all(&path) {
            Ok(()) => format!(
                "Removed {}, staged for a repository by a run that stopped before storing it.",
                path.display()
            ),
            Err(e) => format!(
                "Could not remove {} ({e}), staged by a run that stopped; delete it by hand.",
                path.display()
            ),
        });
    }
    lines
}

/// A scratch folder a backup was read back into from a repository (the
/// store's check, a fetch for verify or restore, a manifest read alone):
/// `.persnap-verify-repo-check-1a2b3c4d`, `…-fetch-…`, `…-manifest-…`.
fn is_read_back_scratch(name: &str) -> bool {
    name.strip_prefix(crate::names::SCRATCH_PREFIX)
        .and_then(|rest| {
            ["repo-check-", "fetch-", "manifest-"]
                .iter()
                .find_map(|kind| rest.strip_prefix(kind))
        })
        .is_some_and(|id| id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes the read-back scratch folder `path` left by a run that was
/// killed (a whole copy of a database), when it is persnap's (its work
/// marker inside) and nothing in it changed for [`STAGED_SWEEP_AFTER`]:
/// a read-back under way keeps writing its files.
fn sweep_scratch(path: &Path, left_by: &str) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_dir() || !path.join(crate::verify::WORK_MARKER).is_file() {
        return None;
    }
    let fresh = |m: &std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age <= STAGED_SWEEP_AFTER)
    };
    if fresh(&meta) {
        return None;
    }
    // The set folder inside and its files (two levels: nothing deeper is
    // written).
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        let meta = std::fs::symlink_metadata(entry.path()).ok()?;
        if fresh(&meta) {
            return None;
        }
        if meta.is_dir() {
            for inner in std::fs::read_dir(entry.path()).ok()?.flatten() {
                if fresh(&std::fs::symlink_metadata(inner.path()).ok()?) {
                    return None;
                }
            }
        }
    }
    Some(match std::fs::remove_dir_all(path) {
        Ok(()) => format!("Removed {}, left by {left_by}.", path.display()),
        Err(e) => format!(
            "Could not remove {} ({e}), left by {left_by}; delete it by hand.",
            path.display()
        ),
    })
}

/// The name a backup carries in the repository: the protected database's
/// name when it is registered, else the store folder's own name.
pub fn database_name(source: &Path, store_name: &str) -> String {
    let registry = crate::registry::Registry::system();
    match registry.find(source, store_name) {
        Ok(Some(db)) => db.name,
        _ => crate::registry::suggest_name(&registry, source, store_name),
    }
}

/// Removes a set staged for a repository when dropped, whatever happened:
/// a repository backup leaves no full copy behind.
pub struct Staged(pub Option<PathBuf>);

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
            let _ = std::fs::remove_dir_all(crate::copy::pieces_path(dir));
        }
    }
}

/// A repository a backup is going into, opened before the backup starts.
pub struct Delivery {
    /// Opened, or why not (a scheduled run opens it only once it acts as
    /// its user; see [`Delivery::later`]).
    repo: Result<Repo>,
    location: Address,
    /// Only the repository keeps the backup: the set is staged, and
    /// removed once stored.
    staged: bool,
    /// Which of this database's backups the repository keeps afterwards.
    keep: Keep,
}

/// What [`Delivery::deliver`] did.
pub struct Delivered {
    pub stored: Stored,
    /// Retention afterwards, in words (what went, or, as a warning, why
    /// it did not).
    pub retention: Vec<(Level, String)>,
}

impl Delivery {
    /// Open the repository now: a wrong password or an unreachable server
    /// is said before any snapshot is taken.
    pub fn open(location: Address, password: &Password, staged: bool, keep: Keep) -> Result<Self> {
        let repo = Repo::open(&location, password)?;
        Ok(Delivery {
            repo: Ok(repo),
            location,
            staged,
            keep,
        })
    }

    /// A repository opened only once the backup is made (a scheduled run,
    /// which must act as its user first): `repo` is how that went, and a
    /// failure to open it is then the store step's.
    pub fn later(repo: Result<Repo>, location: Address, staged: bool, keep: Keep) -> Self {
        Delivery {
            repo,
            location,
            staged,
            keep,
        }
    }

    /// The repository, when it is open.
    pub fn repo(&self) -> Option<&Repo> {
        self.repo.as_ref().ok()
    }

    /// Read and write the repository at the backup's pace (see
    /// [`Repo::pace`]).
    pub fn pace(&mut self, pace: crate::pace::Pace) {
        if let Ok(repo) = &mut self.repo {
            repo.pace(pace);
        }
    }

    /// The set `backup_dir` when it is staged: removed when the guard
    /// drops, whatever happened (hold it until an offsite copy, too, has
    /// read it).
    pub fn staged_set(&self, backup_dir: &Path) -> Staged {
        Staged(self.staged.then(|| backup_dir.to_owned()))
    }

    /// Store the verified set `backup_dir` (whose run the backup recorded
    /// as completed), read it back, record the outcome on the run, then
    /// apply retention.
    pub fn deliver(
        self,
        history: &History,
        backup_dir: &Path,
        manifest: &Manifest,
        database: &str,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<Delivered> {
        let stored = store(
            &self.repo,
            &self.location,
            history,
            backup_dir,
            manifest,
            database,
            self.staged,
            progress,
            cancel,
        )?;
        let retention = match (&self.repo, self.keep.is_keep_all()) {
            (Ok(repo), false) => apply_keep(repo, &manifest.host, database, &self.keep),
            _ => Vec::new(),
        };
        Ok(Delivered { stored, retention })
    }
}

/// Stores a verified backup set in the repository and records the outcome
/// on the run (already recorded as completed by the backup itself).
#[allow(clippy::too_many_arguments)]
pub fn store(
    repo: &Result<Repo>,
    location: &Address,
    history: &History,
    backup_dir: &Path,
    manifest: &Manifest,
    database: &str,
    staged: bool,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Stored> {
    // The run is this process's now: others see it running, not dead.
    let tag = &manifest.run_id[..manifest.run_id.len().min(8)];
    let _alive = crate::fsutil::RunLock::acquire(tag).ok();
    let mut run = history
        .load()?
        .into_iter()
        .find(|r| r.id == manifest.run_id);
    if let Some(run) = &mut run {
        run.outcome = Outcome::Running;
        if staged {
            run.destination = PathBuf::from(location.display());
        }
        history.upsert(run)?;
    }
    let result = match repo {
        Ok(repo) => repo.store(backup_dir, manifest, database, staged, progress, cancel),
        // Opened only now (a scheduled run, once it acts as its user).
        Err(e) => Err(Error::relayed(e.kind(), e.to_string())),
    };
    if let Some(mut run) = run {
        finish(&mut run, &result, staged);
        history.upsert(&run)?;
    }
    result
}

/// Stores the same verified set in the offsite repository and records how
/// that went. The backup stays good whatever happens here.
#[allow(clippy::too_many_arguments)]
pub fn store_offsite(
    offsite: &Result<Repo>,
    location: &Address,
    history: &History,
    (backup_dir, staged): (&Path, bool),
    manifest: &Manifest,
    database: &str,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Stored> {
    let tag = &manifest.run_id[..manifest.run_id.len().min(8)];
    let _alive = crate::fsutil::RunLock::acquire(tag).ok();
    let result = match offsite {
        Ok(offsite) => offsite.store(backup_dir, manifest, database, staged, progress, cancel),
        // Not reachable when the backup began: the backup went ahead.
        Err(e) => Err(Error::relayed(e.kind(), e.to_string())),
    };
    let record = match &result {
        Ok(copy) => Offsite::Stored { copy: copy.clone() },
        Err(e) => Offsite::Failed {
            location: location.display(),
            message: e.to_string(),
        },
    };
    if let Some(mut run) = history
        .load()?
        .into_iter()
        .find(|r| r.id == manifest.run_id)
    {
        run.offsite = Some(record);
        history.upsert(&run)?;
    }
    result
}

fn finish(run: &mut Run, result: &Result<Stored>, staged: bool) {
    let now = chrono::Utc::now();
    run.finished = Some(now);
    run.duration_secs = Some((now - run.started).num_milliseconds() as f64 / 1000.0);
    if staged {
        run.backup_path = None;
    }
    match result {
        Ok(stored) => {
            run.outcome = Outcome::Completed;
            run.repository = Some(stored.clone());
        }
        // With a backup folder the verified folder backup stands; only its
        // copy in the repository failed.
        Err(e) if !staged => {
            run.outcome = Outcome::Completed;
            run.warnings
                .push(format!("{}{e}", crate::history::NOT_STORED));
        }
        Err(Error::Cancelled) => run.outcome = Outcome::Cancelled,
        Err(e) => {
            run.verification = None;
            run.outcome = Outcome::Failed {
                step: Phase::Store,
                kind: e.kind(),
                message: e.to_string(),
            }
        }
    }
}

/// What retention removed (or would remove), in words.
pub fn forgotten_words(forgotten: &Forgotten, keep: &Keep, dry_run: bool) -> Vec<String> {
    let (verb, space) = if dry_run {
        ("would be removed", "")
    } else {
        (
            "removed",
            " The room only they used is given back by a prune a day later, so that a backup another machine stores meanwhile keeps what it needs.",
        )
    };
    let mut lines = vec![format!(
        "{} backup(s) {verb}, {} kept ({}; the newest and pinned ones always).{space}",
        forgotten.removed.len(),
        forgotten.kept,
        keep.describe()
    )];
    if forgotten.unfinished > 0 {
        lines.push(format!(
            "{} unfinished backup(s) {verb} (stored by runs that stopped before checking them; never restored from).",
            forgotten.unfinished
        ));
    }
    lines
}

/// Retention after a verified backup, in words: a failure here is a
/// warning, the backup itself is good (`persnap prune --repo` tries again).
pub fn apply_keep(repo: &Repo, host: &str, database: &str, keep: &Keep) -> Vec<(Level, String)> {
    match repo.forget(host, database, keep, false) {
        Ok(forgotten) => forgotten_words(&forgotten, keep, false)
            .into_iter()
            .map(|line| (Level::Info, line))
            .collect(),
        Err(e) => vec![(
            Level::Warning,
            format!(
                "warning: the backup is good, but old backups in {} were not removed: {e}",
                repo.location()
            ),
        )],
    }
}

/// Read the backup `id` out of `repo` into a scratch folder of its own in
/// `staging` (the user's), for a verify or a restore, which check it
/// whole. The scratch folder goes when the returned guard drops; the path
/// is the set's folder inside it.
pub fn fetch_staged(
    repo: &Repo,
    id: &str,
    staging: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<(crate::verify::WorkDir, PathBuf)> {
    let scratch = crate::verify::WorkDir::create(staging.join(format!(
        "{}fetch-{}",
        crate::names::SCRATCH_PREFIX,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )))?;
    let set = repo.fetch(id, scratch.path(), progress, cancel)?;
    Ok((scratch, set))
}

/// The manifest of backup `id` in `repo`, read out alone into a scratch
/// folder of `staging` (removed again): what a restore will put back,
/// before the whole backup is read.
pub fn read_manifest(repo: &Repo, id: &str, staging: &Path) -> Result<crate::manifest::Manifest> {
    let scratch = crate::verify::WorkDir::create(staging.join(format!(
        "{}manifest-{}",
        crate::names::SCRATCH_PREFIX,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )))?;
    repo.fetch_manifest(id, scratch.path())
}

/// Pin backup `id` in `repo` with `note` (none: unpin), and follow it in
/// `history`: as in restic, the backup gets a new id, and the runs that
/// name the old one (as stored there, or copied offsite) name the new one.
pub fn pin(
    repo: &Repo,
    id: &str,
    note: Option<&str>,
    history: Option<&crate::history::History>,
) -> Result<super::Replaced> {
    let replaced = repo.pin(id, note)?;
    let Some(history) = history else {
        return Ok(replaced);
    };
    let Ok(runs) = history.load() else {
        return Ok(replaced);
    };
    let shown = repo.location().display();
    for mut run in runs {
        let mut changed = false;
        for stored in run
            .repository
            .iter_mut()
            .chain(run.offsite.iter_mut().filter_map(|o| match o {
                super::Offsite::Stored { copy } => Some(copy),
                super::Offsite::Failed { .. } => None,
            }))
        {
            if stored.location == shown && stored.snapshot == replaced.old {
                stored.snapshot.clone_from(&replaced.id);
                changed = true;
            }
        }
        if changed {
            let _ = history.upsert(&run);
        }
    }
    Ok(replaced)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn age(path: &Path, by: std::time::Duration) {
        let when = std::time::SystemTime::now() - by;
        std::fs::File::open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    /// A read-back killed midway leaves a whole copy of a database in
    /// the staging folder: the next sweep removes it once nothing in it
    /// changed for an hour, and leaves a live one, or one not persnap's.
    #[test]
    fn scratch_folders_of_killed_read_backs_are_swept() {
        let staging = tempfile::tempdir().unwrap();
        let make = |name: &str, marker: bool, old: bool| {
            let dir = staging.path().join(name);
            let set = dir.join("orders-1a2b3c4d");
            std::fs::create_dir_all(&set).unwrap();
            std::fs::write(set.join("persistence.db"), vec![0u8; 4096]).unwrap();
            if marker {
                std::fs::write(dir.join(crate::verify::WORK_MARKER), b"").unwrap();
            }
            if old {
                let hours = std::time::Duration::from_secs(3 * 3600);
                for p in [
                    set.join("persistence.db"),
                    set.clone(),
                    dir.join(crate::verify::WORK_MARKER),
                    dir.clone(),
                ] {
                    if p.exists() {
                        age(&p, hours);
                    }
                }
            }
            dir
        };
        let killed = make(".persnap-verify-repo-check-1a2b3c4d", true, true);
        let fetched = make(".persnap-verify-fetch-0badcafe", true, true);
        let live = make(".persnap-verify-fetch-12345678", true, false);
        let not_ours = make(".persnap-verify-manifest-abcdef01", false, true);
        let other = make("holiday-photos", true, true);
        // The pieces of a staged set: swept once the set is gone and they
        // are old, never while the set is there.
        let orphaned = make(
            ".persnap-pieces-orders-20261207T090000Z-1a2b3c4d",
            true,
            true,
        );
        let kept_set = staging.path().join("orders-20261207T100000Z-0badcafe");
        std::fs::create_dir(&kept_set).unwrap();
        let with_set = make(
            ".persnap-pieces-orders-20261207T100000Z-0badcafe",
            true,
            true,
        );
        // A dead run's set and its pieces go in one sweep, whichever the
        // folder lists first.
        let dead_set = staging.path().join("orders-20261207T080000Z-2b3c4d5e");
        std::fs::create_dir(&dead_set).unwrap();
        std::fs::write(dead_set.join(crate::manifest::MANIFEST_NAME), b"{}").unwrap();
        age(
            &dead_set.join(crate::manifest::MANIFEST_NAME),
            std::time::Duration::from_secs(3 * 3600),
        );
        age(&dead_set, std::time::Duration::from_secs(3 * 3600));
        let dead_pieces = make(
            ".persnap-pieces-orders-20261207T080000Z-2b3c4d5e",
            true,
            true,
        );
        let lines = sweep_staging(staging.path());
        assert!(!dead_set.exists() && !dead_pieces.exists(), "{lines:?}");
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(
            !killed.exists() && !fetched.exists() && !orphaned.exists(),
            "{lines:?}"
        );
        assert!(live.exists() && not_ours.exists() && other.exists() && with_set.exists());
    }
}
