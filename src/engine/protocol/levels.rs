//! The two levels of authority, and which one a request needs.

use serde::{Deserialize, Serialize};

use crate::error::Error;

use super::*;

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
