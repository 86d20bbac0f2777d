//! A restore, split at the privilege line (Linux).
//!
//! The request was checked at the admin level: the target is a registered
//! database's folder that root does not own. Root then only opens the
//! backup — with the credentials of the user who asked, so it reaches
//! nothing that user could not read — checks nothing holds the store open
//! (as root, who sees every process), takes the database's lock and starts
//! the worker as the **owner of the database folder** with the backup's
//! files open at descriptors 3 and up. The worker stages, verifies,
//! replays, moves the old files aside and renames the restored file into
//! place: every file it makes is the folder owner's, nothing is chowned.

use std::os::fd::OwnedFd;

use crate::error::Error;
use crate::progress::Phase;
use crate::restore::{self, RestoreRequest};
use crate::worker::WorkerRequest;

use super::channel::Events;
use super::spawn::Worker;
use super::user::Identity;

/// Restore `req` for `invoker` (who asked; `None`: root itself). Returns
/// the helper's exit code; the final frame is queued on `events`.
pub fn restore_for(req: RestoreRequest, invoker: Option<&Identity>, events: &Events) -> i32 {
    let started = (|| {
        let owner = Identity::owner_of(&req.target)?;
        let set = match invoker {
            Some(user) => user.run_as(|| restore::open_backup(&req.backup))?,
            None => restore::open_backup(&req.backup),
        }?;
        restore::check_store_name(&req, &set.manifest)?;
        let locks = super::locks::database(&req.target, &set.manifest.store_name)?;
        restore::check_store_not_in_use(&req.target, &set.manifest.store_name)?;
        let files: Vec<OwnedFd> = set.files.into_iter().map(OwnedFd::from).collect();
        let worker = Worker::start(&owner, files, Vec::new())?;
        Ok::<_, Error>((set.manifest, locks, worker))
    })();
    let (manifest, _locks, worker) = match started {
        Ok(s) => s,
        Err(e) => return events.fail(&e, Some(Phase::Prepare)),
    };
    let request = WorkerRequest::Restore {
        request: Box::new(req),
        manifest: Box::new(manifest),
    };
    worker.serve(request, events, None)
}
