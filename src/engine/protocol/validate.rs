//! Everything the helper checks before it acts: a request becomes a
//! [`Validated`] one, or is refused in words.

use std::path::{Component, Path, PathBuf};

use crate::backup::{self, BackupRequest};
use crate::error::Error;
use crate::method::MethodChoice;
use crate::snapshot::SnapshotOptions;
use crate::{store, volume};

use super::*;

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

pub(super) fn check_options(options: &BackupOptions) -> Result<SnapshotOptions, Error> {
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
