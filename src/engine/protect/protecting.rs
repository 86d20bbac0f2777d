//! Protecting a database, as one transaction the helper runs for the
//! administrator: everything checked before anything changes, the test
//! snapshot, the registration, then the schedule; a schedule that fails to
//! install is removed and the entry put back as it was. The helper supplies
//! what only it knows (who pkexec started it for, the persnap that
//! scheduled runs start) and the test snapshot, which holds its locks.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// What protecting needs from the helper.
pub struct Protector<'a> {
    pub registry: &'a crate::registry::Registry,
    /// The user pkexec started the helper for (none: root itself, or
    /// Windows, where UAC approved an administrator).
    pub invoking_uid: Option<u32>,
    /// The persnap that scheduled runs start.
    pub exe: PathBuf,
    /// Takes the test snapshot of a request (with the helper's locks).
    pub probe: &'a dyn Fn(&crate::backup::BackupRequest) -> Result<Box<crate::probe::ProbeReport>>,
}

/// A database protected: its entry, the test snapshot's report, and the
/// schedule installed for it.
pub struct Protected {
    pub database: crate::registry::Database,
    pub probe: Option<Box<crate::probe::ProbeReport>>,
    pub schedule: Option<Box<crate::schedule::Schedule>>,
    pub installed: Option<crate::schedule::Installed>,
}

impl Protector<'_> {
    /// Protect a database: the checks, the test snapshot, its registration,
    /// then its schedule; a schedule that fails to install is removed and the
    /// entry put back as it was. Failures name no backup step (nothing is
    /// backed up).
    pub fn protect(&self, protection: crate::protocol::Protection) -> Result<Protected> {
        let registry = self.registry;
        let crate::protocol::Protection {
            probe: test,
            schedule,
            mut database,
            replace,
        } = protection;
        database.location_owner = location_owner(&database);
        // Everything checked before root does anything: the registry safe,
        // nothing taken (or, for a change, the same database), the history
        // folder the invoking user's own.
        let checked = registry.check_safe().and_then(|_| {
            if let Some(s) = &schedule {
                self.invoking_user_owns(&s.history_dir)?;
            }
            // Its backups will be written as the location's owner: a location
            // others can change is refused now, not at the first backup.
            if let Some(location) = &database.location
                && std::fs::symlink_metadata(location).is_ok()
                && matches!(
                    crate::backup::location_writer(location)?,
                    crate::restore::Writer::Root
                )
                && self.invoking_uid.is_some_and(|uid| uid != 0)
            {
                return Err(Error::Refused {
                    field: "location",
                    reason: format!(
                        "{} belongs to root, and root writes only its own backups: choose a \
                         folder of yours, or give this one to the account that makes the backups (chown)",
                        location.display()
                    ),
                });
            }
            if replace {
                replaceable(&database, schedule.is_some(), registry).map(Some)
            } else {
                not_taken(&database, schedule.is_some(), registry).map(|_| None)
            }
        });
        // The entry as it was, and its own schedule.
        let (before, old_schedule) = match checked {
            Ok(Some((before, own))) => (Some(before), own),
            Ok(None) => (None, None),
            Err(e) => return Err(e),
        };
        let probe = test
            .as_ref()
            .map(|req| (self.probe)(req).and_then(snapshot_taken))
            .transpose()?;
        // Changed to no schedule: the one it had goes first (if that fails,
        // nothing has changed).
        if schedule.is_none()
            && let Some(old) = &old_schedule
            && let Err(e) = crate::schedule::uninstall(old)
        {
            return Err(e);
        }
        // The entry before the schedule: a schedule never runs for a database
        // that is not registered.
        registry.add(&database)?;
        let (schedule, installed) = match schedule.map(|s| self.install_schedule(s)).transpose() {
            Ok(Some((s, i))) => (Some(s), Some(i)),
            Ok(None) => (None, None),
            Err(e) => {
                // Whatever the failed install left goes, and the entry is as it
                // was — without a schedule, if its own was just replaced.
                let _ = crate::schedule::uninstall(&database.name);
                let restored = match before {
                    None => registry.remove(&database.name).map(|_| ()),
                    Some(mut b) => {
                        if old_schedule.as_deref() == Some(database.name.as_str()) {
                            b.schedule = None;
                        }
                        registry.add(&b)
                    }
                };
                let e = match restored {
                    Ok(()) => e,
                    Err(r) => Error::Relayed {
                        kind: e.kind(),
                        message: format!("{e} (and the registry could not be put back: {r})"),
                    },
                };
                return Err(e);
            }
        };
        Ok(Protected {
            database,
            probe,
            schedule,
            installed,
        })
    }

    /// Install a schedule for the invoking user, who must own the folder its
    /// runs record into (Windows: SYSTEM runs record beside the schedule, in
    /// the administrators' folder, never in a folder a user controls).
    pub fn install_schedule(
        &self,
        mut schedule: Box<crate::schedule::Schedule>,
    ) -> crate::Result<(Box<crate::schedule::Schedule>, crate::schedule::Installed)> {
        schedule.uid = self.schedule_owner(&schedule.history_dir);
        // Repositories are opened, and rclone started, by whoever the runs act
        // for: never root, which would reach a server the request chose with
        // root's rights and keys.
        #[cfg(unix)]
        if schedule.uid.is_none_or(|uid| uid == 0)
            && (schedule.repository.is_some() || schedule.offsite.is_some())
        {
            return Err(Error::Refused {
                field: "repository",
                reason: "a schedule made as root would open its repositories as root; make it as \
                         the user whose backups these are (run persnap as that user: it asks for \
                         the administrator password when it needs it)"
                    .into(),
            });
        }
        #[cfg(windows)]
        {
            schedule.history_dir = crate::schedule::taskschd::history_dir(&schedule.name);
            crate::sys::create_admin_dir(&schedule.history_dir).map_err(Error::io(
                "create",
                &schedule.history_dir,
                "Run persnap as administrator.",
            ))?;
        }
        self.invoking_user_owns(&schedule.history_dir)?;
        // What opens its repositories, where only root (SYSTEM) reads it; an
        // older one of the same name goes — unless the install fails, and then
        // the files are as they were (a schedule that was there keeps its own).
        let before = crate::schedule::UnlockFiles::saved(&schedule.name);
        let installed = crate::schedule::write_unlock(&schedule)
            .and_then(|()| crate::schedule::install(&schedule, &self.exe));
        let installed = match installed {
            Ok(installed) => installed,
            Err(e) => {
                let _ = before.put_back();
                return Err(e);
            }
        };
        schedule.unlock = None;
        schedule.offsite_unlock = None;
        Ok((schedule, installed))
    }

    /// Stop protecting `name`: its own schedule first (a schedule left behind
    /// would go on backing up a database nobody protects), then its entry.
    pub fn unprotect(&self, name: &str) -> Result<(bool, Option<String>)> {
        let registry = self.registry;
        registry.check_safe()?;
        let schedule = registry.get(name)?.as_ref().and_then(own_schedule);
        let removed = match &schedule {
            Some(s) => crate::schedule::uninstall(s)?.then(|| s.clone()),
            None => None,
        };
        Ok((registry.remove(name)?, removed))
    }

    /// Register a database with no schedule and no test snapshot (`persnap
    /// database add`): a new protection replaces nothing.
    pub fn add(
        &self,
        mut database: crate::registry::Database,
    ) -> Result<crate::registry::Database> {
        database.location_owner = location_owner(&database);
        not_taken(&database, false, self.registry)?;
        self.registry.add(&database)?;
        Ok(database)
    }

    /// Scheduled runs write history as root into this folder: under pkexec
    /// it must be the invoking user's own (Windows: the folder's access
    /// list governs it).
    fn invoking_user_owns(&self, dir: &Path) -> Result<()> {
        #[cfg(unix)]
        if let Some(uid) = self.invoking_uid
            && crate::sys::owner_of(dir) != Some(uid)
        {
            return Err(Error::Refused {
                field: "history_dir",
                reason: format!(
                    "{} does not belong to you (uid {uid}); a schedule records into your own history folder",
                    dir.display()
                ),
            });
        }
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }

    /// Whom a schedule's runs act for: the user pkexec started the helper
    /// for, else (root itself) the owner of the history folder it records
    /// into (Windows: nobody's; SYSTEM's runs record beside the schedule).
    fn schedule_owner(&self, history_dir: &Path) -> Option<u32> {
        #[cfg(unix)]
        return self
            .invoking_uid
            .or_else(|| crate::sys::owner_of(history_dir));
        #[cfg(not(unix))]
        {
            let _ = history_dir;
            None
        }
    }
}

/// The schedule `db`'s entry names, if it is really its own: installed,
/// backing up the same folder and store (a schedule of that name made on
/// its own since is not touched).
fn own_schedule(db: &crate::registry::Database) -> Option<String> {
    let name = db.schedule.as_ref()?;
    crate::schedule::list()
        .ok()?
        .into_iter()
        .find(|s| &s.name == name && s.source == db.folder && s.store_name == db.store_name)
        .map(|s| s.name)
}

/// A test snapshot's report, if it found that backups can be taken: the
/// snapshot was made and removed (or the method takes none).
fn snapshot_taken(
    report: Box<crate::probe::ProbeReport>,
) -> crate::Result<Box<crate::probe::ProbeReport>> {
    let failed = match (&report.method, &report.test_snapshot) {
        (_, Some(Ok(_))) => None,
        (Some(m), _) if !m.is_snapshot() => None,
        (_, Some(Err(e))) => Some(e.clone()),
        (_, None) => Some(report.blocked.clone().unwrap_or_default()),
    };
    match failed {
        None => Ok(report),
        Some(reason) => Err(Error::Relayed {
            kind: ErrorKind::Snapshot,
            message: format!("The test snapshot did not work, so nothing was changed: {reason}"),
        }),
    }
}

/// A change replaces only the entry of the same database (same name,
/// folder and store) and its own schedule, never a schedule of that name
/// made on its own: the entry as it was, and its own schedule.
fn replaceable(
    database: &crate::registry::Database,
    scheduled: bool,
    registry: &crate::registry::Registry,
) -> crate::Result<(crate::registry::Database, Option<String>)> {
    let Some(before) = registry.get(&database.name)? else {
        return Err(name_refused(format!(
            "no database is protected as {}; protect it first",
            database.name
        )));
    };
    if before.folder != database.folder || before.store_name != database.store_name {
        return Err(name_refused(format!(
            "{} protects another database ({} in {})",
            database.name,
            before.store_name,
            before.folder.display()
        )));
    }
    let own = own_schedule(&before);
    if scheduled
        && own.as_deref() != Some(database.name.as_str())
        && schedule_named(&database.name)?
    {
        return Err(name_refused(format!(
            "a schedule named {} exists already and is not this database's; remove it first",
            database.name
        )));
    }
    Ok((before, own))
}

/// A new protection replaces nothing: not another database's entry, not
/// this database's, not a schedule of the same name.
pub fn not_taken(
    database: &crate::registry::Database,
    scheduled: bool,
    registry: &crate::registry::Registry,
) -> crate::Result<()> {
    let all = registry.list()?;
    if let Some(db) = all
        .iter()
        .find(|d| d.folder == database.folder && d.store_name == database.store_name)
    {
        return Err(name_refused(format!(
            "this database is protected already, as {}",
            db.name
        )));
    }
    if all.iter().any(|db| db.name == database.name) {
        return Err(name_refused(format!(
            "another database is protected as {}; choose another name",
            database.name
        )));
    }
    if scheduled && schedule_named(&database.name)? {
        return Err(name_refused(format!(
            "a schedule named {} exists already; choose another name or remove that schedule first",
            database.name
        )));
    }
    Ok(())
}

/// Whether a schedule named `name` is installed.
fn schedule_named(name: &str) -> crate::Result<bool> {
    Ok(crate::schedule::list()?.iter().any(|s| s.name == name))
}

/// A protection refused for its name.
fn name_refused(reason: String) -> Error {
    Error::Refused {
        field: "name",
        reason,
    }
}

/// Who owns a database's location now (Unix uid), as recorded when it is
/// protected; never what the request says.
pub fn location_owner(database: &crate::registry::Database) -> Option<u32> {
    #[cfg(unix)]
    {
        match crate::backup::location_writer(database.location.as_deref()?).ok()? {
            crate::restore::Writer::Owner { uid, .. } => Some(uid),
            crate::restore::Writer::Root => Some(0),
            crate::restore::Writer::Administrator => None,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = database;
        None
    }
}
