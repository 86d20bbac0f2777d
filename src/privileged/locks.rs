//! Locks the helper holds while it works: one run per database at a time
//! (for the whole run), and at most [`MAX_SNAPSHOTS`] snapshots on the
//! machine at once (a slot is held only while its snapshot exists), so no
//! caller can pile up snapshots. Both live in the helper's run folder,
//! which only root can enter (checked before use).

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Most snapshots persnap holds at once.
pub const MAX_SNAPSHOTS: usize = 4;

/// Locks released on drop (and by the kernel if the helper dies).
#[derive(Debug)]
pub struct Held {
    _files: Vec<File>,
}

fn run_dir() -> Result<PathBuf> {
    let dir = crate::sys::lock_dirs()
        .into_iter()
        .next()
        .expect("at least one lock dir");
    crate::sys::secure_private_dir(&dir).map_err(Error::io(
        "use the run folder",
        &dir,
        "Remove the folder; persnap creates it again, private to the administrator.",
    ))?;
    Ok(dir)
}

fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    let file = crate::sys::open_shared_rw(path, false)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    Error::io("create the lock", path.to_owned(), "Check /run/persnap.")
}

/// Lock the database `folder`/`store_name` for one run (backup, test
/// snapshot or restore). Refused (busy) when another run has it.
pub fn database(folder: &Path, store_name: &str) -> Result<Held> {
    let dir = run_dir()?;
    let key = Sha256::digest(folder.join(store_name).as_os_str().as_encoded_bytes());
    let path = dir.join(format!("db-{}.lock", crate::copy::hex(&key[..8])));
    match try_lock(&path).map_err(io(&path))? {
        Some(file) => Ok(Held { _files: vec![file] }),
        None => Err(Error::DatabaseBusy {
            path: folder.join(store_name),
        }),
    }
}

/// One of the [`MAX_SNAPSHOTS`] snapshot slots, held only while a snapshot
/// exists. Refused (busy) when all are taken.
pub fn snapshot_slot() -> Result<Held> {
    let dir = run_dir()?;
    for slot in 0..MAX_SNAPSHOTS {
        let path = dir.join(format!("snapshot-slot-{slot}.lock"));
        if let Some(file) = try_lock(&path).map_err(io(&path))? {
            return Ok(Held { _files: vec![file] });
        }
    }
    Err(Error::TooManySnapshots { max: MAX_SNAPSHOTS })
}
