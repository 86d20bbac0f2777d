//! A restore, split at the privilege line (Linux).
//!
//! The request was checked at the admin level: the target is a registered
//! database's folder, or one holding none of the store's files (a new
//! machine), and nobody but its owner (or root) can change it or any
//! folder above it. Root then only opens the backup — with the
//! credentials of the user who asked, so it reaches nothing that user
//! could not read — checks nothing holds the store open (as root, who sees
//! every process) and takes the database's lock. The restore itself is
//! written by whoever owns the folder: a worker started as the **owner of
//! the database folder** with the backup's files open at descriptors 3
//! and up, which stages, verifies, replays, moves the old files aside and
//! renames the restored file into place, so every file it makes is the
//! owner's and nothing is chowned; or, for a folder that only root can
//! change (a correlator run as root), root itself, in this process.

use std::os::fd::OwnedFd;

use crate::error::Error;
use crate::progress::Phase;
use crate::protocol::Reply;
use crate::restore::{self, BackupSet, RestoreRequest, Writer};
use crate::worker::WorkerRequest;

use super::channel::Events;
use super::spawn::Worker;
use super::user::Identity;

/// Who goes on with a restore once root has opened the backup.
enum Next {
    /// The folder owner's worker, with the backup's files.
    Owner(Worker, crate::manifest::Manifest),
    /// Root itself: the folder is root's and nobody else can change it.
    Root(BackupSet),
}

/// Restore `req` for `invoker` (who asked; `None`: root itself). Returns
/// the helper's exit code; the final frame is queued on `events`.
pub fn restore_for(req: RestoreRequest, invoker: Option<&Identity>, events: &Events) -> i32 {
    let started = (|| {
        let writer = restore::writer_of(&req.target)?;
        let set = match invoker {
            Some(user) => user.run_as(|| restore::open_backup(&req.backup))?,
            None => restore::open_backup(&req.backup),
        }?;
        restore::check_store_name(&req, &set.manifest)?;
        let locks = super::locks::database(&req.target, &set.manifest.store_name)?;
        restore::check_store_not_in_use(&req.target, &set.manifest.store_name)?;
        let next = match writer {
            Writer::Owner { uid, gid, name } => {
                let owner = Identity::of_uid(uid).unwrap_or(Identity {
                    uid,
                    gid,
                    groups: vec![gid],
                    name,
                });
                let manifest = set.manifest.clone();
                let files: Vec<OwnedFd> = set.files.into_iter().map(OwnedFd::from).collect();
                Next::Owner(Worker::start(&owner, files, Vec::new())?, manifest)
            }
            Writer::Root | Writer::Administrator => Next::Root(set),
        };
        Ok::<_, Error>((locks, next))
    })();
    let (_locks, next) = match started {
        Ok(s) => s,
        Err(e) => return events.fail(&e, Some(Phase::Prepare)),
    };
    match next {
        Next::Owner(worker, manifest) => {
            let request = WorkerRequest::Restore {
                request: Box::new(req),
                manifest: Box::new(manifest),
            };
            worker.serve(request, events, None)
        }
        Next::Root(set) => {
            let mut set = Some(set);
            let mut open = || {
                set.take().ok_or_else(|| Error::Protocol {
                    detail: "the backup was opened twice".into(),
                })
            };
            let (mut recorder, mut progress) = (events.clone(), events.clone());
            let cancel = events.cancel().clone();
            match restore::run_restore_from(&req, &mut open, &mut recorder, &mut progress, &cancel)
            {
                Ok(report) => events.done(Reply::Restore {
                    report,
                    protected: None,
                }),
                Err((step, error)) => events.fail(&error, Some(step)),
            }
        }
    }
}
