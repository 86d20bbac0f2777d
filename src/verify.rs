//! Verification: prove a backup set is intact and opens as a consistent
//! database.
//!
//! The backup's files are copied into a scratch folder while being hashed
//! (so the bytes on disk are checked against the hashes taken during the
//! backup), then SQLite opens the scratch copy — replaying a hot rollback
//! journal or the WAL exactly as the correlator would on restart — and runs
//! `PRAGMA integrity_check`. The backup's own files are only ever read.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::copy::{self, CopiedFile, Meter};
use crate::error::{Error, HINT_DEST, Result};
use crate::manifest::{self, MANIFEST_NAME};

/// Marker file placed in every folder persnap creates for temporary work.
pub const WORK_MARKER: &str = ".persnap-work";
/// Most integrity problems reported in one message.
const MAX_INTEGRITY_ROWS: u32 = 20;

/// The outcome of a verification that passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// `ok`, as SQLite's integrity check reported it.
    pub integrity: String,
    /// Pages in the database after replaying the journal or WAL.
    pub page_count: u64,
    pub page_size: u64,
    /// Every file's SHA-256 matched when read back.
    pub hashes_match: bool,
    pub seconds: f64,
}

/// A folder removed (with everything in it) when dropped.
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Create `path` (mode 0700) with the persnap work marker inside.
    pub fn create(path: PathBuf) -> Result<WorkDir> {
        fs::DirBuilder::new().mode(0o700).create(&path).map_err(|source| Error::DestNotWritable {
            path: path.parent().unwrap_or(&path).to_owned(),
            source,
        })?;
        let dir = WorkDir { path, keep: false };
        fs::write(dir.path.join(WORK_MARKER), b"").map_err(Error::io("write in", dir.path.clone(), HINT_DEST))?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop owning the folder (it became the finished backup).
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Verify the set `files` in `backup_dir`, using a scratch folder `scratch`
/// (which must not exist; it is removed afterwards).
pub fn verify_set(backup_dir: &Path, files: &[CopiedFile], store_name: &str, scratch: PathBuf, meter: &mut Meter) -> Result<Verification> {
    let started = Instant::now();
    let scratch = WorkDir::create(scratch)?;
    for file in files {
        let (size, sha256) = copy::copy_one(&backup_dir.join(&file.name), &scratch.path().join(&file.name), meter)?;
        if sha256 != file.sha256 || size != file.size {
            return Err(Error::HashMismatch { file: file.name.clone(), expected: file.sha256.clone(), actual: sha256 });
        }
    }
    let (page_count, page_size) = integrity_check(&scratch.path().join(store_name))?;
    Ok(Verification {
        integrity: "ok".into(),
        page_count,
        page_size,
        hashes_match: true,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Open a scratch copy read-write (so SQLite can replay its journal or WAL)
/// and run the integrity check. Returns page count and page size.
pub fn integrity_check(db: &Path) -> Result<(u64, u64)> {
    let failed = |e: rusqlite::Error| Error::IntegrityFailed { report: format!("SQLite could not read the copy: {e}") };
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(failed)?;
    let mut stmt = conn.prepare(&format!("PRAGMA integrity_check({MAX_INTEGRITY_ROWS})")).map_err(failed)?;
    let rows: Vec<String> =
        stmt.query_map([], |r| r.get(0)).map_err(failed)?.collect::<rusqlite::Result<_>>().map_err(failed)?;
    if rows != ["ok"] {
        return Err(Error::IntegrityFailed { report: rows.join("; ") });
    }
    let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).map_err(failed);
    Ok((pragma("page_count")? as u64, pragma("page_size")? as u64))
}

/// Re-check a finished backup: files exactly as the manifest lists them,
/// hashes, and SQLite integrity. Scratch space goes in `scratch_parent`.
pub fn verify_backup(backup_dir: &Path, scratch_parent: &Path, meter: &mut Meter) -> Result<(manifest::Manifest, Verification)> {
    let manifest = manifest::read(backup_dir)?;
    check_listing(backup_dir, &manifest)?;
    meter.total = manifest.files.iter().map(|f| f.size).sum();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let scratch = scratch_parent.join(format!(".persnap-verify-{}", &tag[..8]));
    let verification = verify_set(backup_dir, &manifest.files, &manifest.store_name, scratch, meter).map_err(|e| match e {
        Error::HashMismatch { file, expected, actual } => Error::BackupDamaged {
            path: backup_dir.to_owned(),
            detail: format!("{file} does not match its recorded SHA-256 (expected {expected}, found {actual})"),
        },
        other => other,
    })?;
    Ok((manifest, verification))
}

/// The folder must hold exactly the manifest's files, with their sizes.
fn check_listing(dir: &Path, manifest: &manifest::Manifest) -> Result<()> {
    let damaged = |detail: String| Error::BackupDamaged { path: dir.to_owned(), detail };
    for file in &manifest.files {
        let meta = fs::symlink_metadata(dir.join(&file.name)).map_err(|e| damaged(format!("{} is missing ({e})", file.name)))?;
        if !meta.is_file() {
            return Err(damaged(format!("{} is not a regular file", file.name)));
        }
        if meta.len() != file.size {
            return Err(damaged(format!("{} has {} bytes, the manifest says {}", file.name, meta.len(), file.size)));
        }
    }
    let listed: std::collections::HashSet<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    let entries = fs::read_dir(dir).map_err(Error::io("read", dir, HINT_DEST))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST_NAME && !listed.contains(name.as_str()) {
            return Err(damaged(format!("it holds {name}, which the manifest does not list")));
        }
    }
    Ok(())
}
