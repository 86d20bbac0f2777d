//! Verification: prove a backup set is intact and opens as a consistent
//! database.
//!
//! Every file is read back and hashed (so the bytes on disk are checked
//! against the hashes taken during the backup). When the set holds a
//! rollback journal or WAL with content, the files go into a scratch folder
//! (a reflink where the filesystem allows, else a copy made while hashing)
//! and SQLite opens the scratch copy — replaying the journal or WAL exactly
//! as the correlator would on restart; otherwise SQLite opens the backup in
//! place, read-only and immutable. Then `PRAGMA integrity_check`. The
//! backup's own files are only ever read.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};

use crate::copy::{self, CopiedFile, Meter};
use crate::error::{Error, HINT_DEST, Result};
use crate::manifest::{self, MANIFEST_NAME};
use crate::store::FileRole;

pub use crate::names::WORK_MARKER;
/// Most integrity problems reported in one message.
const MAX_INTEGRITY_ROWS: u32 = 20;

pub use crate::manifest::{ReadBack, Verification};

/// A check that passed: SQLite said `ok` and every hash matched (read
/// from where `read_back` says; `None`: a lone database, no hashes).
fn passed(
    (page_count, page_size): (u64, u64),
    read_back: Option<ReadBack>,
    started: Instant,
) -> Verification {
    Verification {
        integrity: "ok".into(),
        page_count,
        page_size,
        hashes_match: true,
        seconds: started.elapsed().as_secs_f64(),
        read_back,
    }
}

/// Drop every file of the set from memory, so that the read-back that
/// follows reads the disk. [`ReadBack::Disk`] only if the system confirmed
/// it for every file.
pub fn evict_set(backup_dir: &Path, files: &[CopiedFile]) -> ReadBack {
    let mut all = true;
    for file in files {
        let path = backup_dir.join(&file.name);
        let gone = crate::sys::open_nofollow(&path)
            .and_then(|f| crate::sys::evict(&f))
            .unwrap_or(false);
        all &= gone;
    }
    if all {
        ReadBack::Disk
    } else {
        ReadBack::Memory
    }
}

/// A folder removed (with everything in it) when dropped.
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Create `path` (mode 0700) with the persnap work marker inside.
    pub fn create(path: PathBuf) -> Result<WorkDir> {
        crate::sys::create_private_dir(&path, false).map_err(|source| Error::DestNotWritable {
            path: path.parent().unwrap_or(&path).to_owned(),
            source,
        })?;
        let dir = WorkDir { path, keep: false };
        fs::write(dir.path.join(WORK_MARKER), b"").map_err(Error::io(
            "write in",
            dir.path.clone(),
            HINT_DEST,
        ))?;
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
/// (which must not exist; it is removed afterwards) when SQLite has a
/// journal or WAL to replay. Without one, nothing is copied: the backup is
/// hashed and checked in place, opened immutable and read-only.
/// `from_disk`: drop the set from memory first, so that its hashes are
/// read from the disk (a set staged for a repository is read where it is:
/// the repository's own check reads back from the disk what was stored).
pub fn verify_set(
    backup_dir: &Path,
    files: &[CopiedFile],
    store_name: &str,
    scratch: PathBuf,
    from_disk: bool,
    meter: &mut Meter,
) -> Result<Verification> {
    let started = Instant::now();
    let read_back = if from_disk {
        evict_set(backup_dir, files)
    } else {
        ReadBack::Memory
    };
    let (page_count, page_size) = if files.iter().any(needs_replay) {
        let scratch = WorkDir::create(scratch)?;
        for file in files {
            let read = copy::scratch_copy(
                &backup_dir.join(&file.name),
                &scratch.path().join(&file.name),
                meter,
            )?;
            check_hash(file, read)?;
        }
        integrity_check(&scratch.path().join(store_name))?
    } else {
        for file in files {
            check_hash(file, copy::hash_file(&backup_dir.join(&file.name), meter)?)?;
        }
        integrity_check_in_place(&backup_dir.join(store_name))?
    };
    Ok(passed((page_count, page_size), Some(read_back), started))
}

/// Whether SQLite would change the main file when opening the set: a
/// non-empty rollback journal, or a WAL holding frames (beyond its 32-byte
/// header). Such a set is checked in a scratch copy.
fn needs_replay(file: &CopiedFile) -> bool {
    const WAL_HEADER: u64 = 32;
    match file.role {
        FileRole::Journal => file.size > 0,
        FileRole::Wal => file.size > WAL_HEADER,
        FileRole::Main | FileRole::Shm => false,
    }
}

/// The bytes read back must be the bytes recorded.
pub(crate) fn check_hash(file: &CopiedFile, (size, sha256): (u64, String)) -> Result<()> {
    if sha256 != file.sha256 || size != file.size {
        return Err(Error::HashMismatch {
            file: file.name.clone(),
            expected: file.sha256.clone(),
            actual: sha256,
        });
    }
    Ok(())
}

/// Open a scratch copy read-write (so SQLite can replay its journal or WAL)
/// and run the integrity check. Returns page count and page size.
pub fn integrity_check(db: &Path) -> Result<(u64, u64)> {
    let conn = open_defensive(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A scratch copy is thrown away: nothing need be fsynced (a WAL's
    // checkpoint on close). A rollback journal is replayed as the schema
    // is read, before this applies; its sync then writes only what the
    // replay changed when the copy was paced (each step already on the
    // disk), or the whole unsynced copy when it went fast.
    conn.execute_batch("PRAGMA synchronous = OFF")
        .map_err(unreadable)?;
    run_integrity_check(&conn)
}

/// Check a single, self-contained database file where it lies (read-only,
/// immutable): a restored store.
pub fn check_database(db: &Path) -> Result<Verification> {
    let started = Instant::now();
    let (page_count, page_size) = integrity_check_in_place(db)?;
    Ok(passed((page_count, page_size), None, started))
}

/// Open a staged copy read-write so SQLite replays its journal or WAL,
/// check its integrity, and fold a WAL into the main file, leaving one
/// self-contained database file.
pub fn consolidate(db: &Path) -> Result<()> {
    let conn = open_defensive(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    run_integrity_check(&conn)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(unreadable)?;
    if mode.eq_ignore_ascii_case("wal") {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(unreadable)?;
    }
    conn.close().map_err(|(_, e)| unreadable(e))
}

/// Run the integrity check on a database with nothing to replay, without
/// writing anything: opened read-only as `immutable` (no locks, no
/// journal, no WAL index).
fn integrity_check_in_place(db: &Path) -> Result<(u64, u64)> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open_defensive(
        format!("{}?immutable=1", crate::sys::sqlite_file_uri(db)),
        flags,
    )?;
    run_integrity_check(&conn)
}

/// Open a copy of a database with SQLite's defensive settings: the file
/// may have been made by anyone, so its schema may not run functions or
/// change SQLite's own state (`SQLITE_DBCONFIG_DEFENSIVE`,
/// `trusted_schema=OFF`).
fn open_defensive(path: impl AsRef<Path>, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags).map_err(unreadable)?;
    defensive(&conn).map_err(unreadable)?;
    Ok(conn)
}

/// SQLite's defensive settings on `conn` (see [`open_defensive`]).
pub(crate) fn defensive(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.execute_batch("PRAGMA trusted_schema = OFF")
}

fn unreadable(e: rusqlite::Error) -> Error {
    Error::IntegrityFailed {
        report: format!("SQLite could not read the copy: {e}"),
    }
}

fn run_integrity_check(conn: &Connection) -> Result<(u64, u64)> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA integrity_check({MAX_INTEGRITY_ROWS})"))
        .map_err(unreadable)?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(unreadable)?
        .collect::<rusqlite::Result<_>>()
        .map_err(unreadable)?;
    if rows != ["ok"] {
        return Err(Error::IntegrityFailed {
            report: rows.join("; "),
        });
    }
    let pragma = |name: &str| {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map_err(unreadable)
    };
    Ok((pragma("page_count")? as u64, pragma("page_size")? as u64))
}

/// Where [`verify_backup`] of `dir` keeps its scratch copy: beside the
/// backup when that folder is writable, else the temporary folder.
pub fn scratch_parent(dir: &Path) -> std::path::PathBuf {
    let parent = crate::fsutil::canonicalize(dir)
        .ok()
        .and_then(|d| d.parent().map(std::path::PathBuf::from));
    let writable = |p: &Path| {
        let probe = p.join(format!(".persnap-probe-{}", std::process::id()));
        let ok = std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    };
    match parent {
        Some(p) if writable(&p) => p,
        _ => std::env::temp_dir(),
    }
}

/// Re-check a finished backup: files exactly as the manifest lists them,
/// hashes, and SQLite integrity. Scratch space goes in `scratch_parent`.
pub fn verify_backup(
    backup_dir: &Path,
    scratch_parent: &Path,
    meter: &mut Meter,
) -> Result<(manifest::Manifest, Verification)> {
    let manifest = read_listed(backup_dir)?;
    meter.total = manifest.files.iter().map(|f| f.size).sum();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let scratch = scratch_parent.join(format!(".persnap-verify-{}", &tag[..8]));
    let verification = verify_set(
        backup_dir,
        &manifest.files,
        &manifest.store_name,
        scratch,
        true,
        meter,
    )
    .map_err(|e| as_damaged(backup_dir, e))?;
    Ok((manifest, verification))
}

/// A backup's manifest, after checking the folder holds exactly its files
/// with their sizes (cheap: no file is read).
pub fn read_listed(backup_dir: &Path) -> Result<manifest::Manifest> {
    let manifest = manifest::read(backup_dir)?;
    check_listing(backup_dir, &manifest)?;
    Ok(manifest)
}

/// A hash mismatch found while reading a backup: the backup is damaged.
pub fn as_damaged(backup_dir: &Path, e: Error) -> Error {
    match e {
        Error::HashMismatch {
            file,
            expected,
            actual,
        } => Error::BackupDamaged {
            path: backup_dir.to_owned(),
            detail: format!(
                "{file} does not match its recorded SHA-256 (expected {expected}, found {actual})"
            ),
        },
        other => other,
    }
}

/// The folder must hold exactly the manifest's files, with their sizes.
fn check_listing(dir: &Path, manifest: &manifest::Manifest) -> Result<()> {
    let damaged = |detail: String| Error::BackupDamaged {
        path: dir.to_owned(),
        detail,
    };
    for file in &manifest.files {
        let meta = fs::symlink_metadata(dir.join(&file.name))
            .map_err(|e| damaged(format!("{} is missing ({e})", file.name)))?;
        if !meta.is_file() {
            return Err(damaged(format!("{} is not a regular file", file.name)));
        }
        if meta.len() != file.size {
            return Err(damaged(format!(
                "{} has {} bytes, the manifest says {}",
                file.name,
                meta.len(),
                file.size
            )));
        }
    }
    let listed: std::collections::HashSet<&str> =
        manifest.files.iter().map(|f| f.name.as_str()).collect();
    let entries = fs::read_dir(dir).map_err(Error::io("read", dir, HINT_DEST))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST_NAME && !listed.contains(name.as_str()) {
            return Err(damaged(format!(
                "it holds {name}, which the manifest does not list"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{CancelToken, Phase, Silent};
    use std::fs::File;

    fn hashed(dir: &Path, name: &str, role: FileRole) -> CopiedFile {
        let cancel = CancelToken::new();
        let mut meter = Meter {
            phase: Phase::Verify,
            done: 0,
            total: 0,
            progress: &mut Silent,
            cancel: &cancel,
            pacer: crate::pace::Pacer::fast(),
        };
        let (size, sha256) = copy::hash_file(&dir.join(name), &mut meter).unwrap();
        CopiedFile {
            name: name.into(),
            role,
            size,
            sha256,
        }
    }

    fn verify(dir: &Path, files: &[CopiedFile]) -> (Result<Verification>, PathBuf) {
        let cancel = CancelToken::new();
        let mut meter = Meter {
            phase: Phase::Verify,
            done: 0,
            total: 0,
            progress: &mut Silent,
            cancel: &cancel,
            pacer: crate::pace::Pacer::fast(),
        };
        let scratch = dir.parent().unwrap().join("scratch");
        (
            verify_set(dir, files, "db", scratch.clone(), true, &mut meter),
            scratch,
        )
    }

    fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    fs::read(&p).unwrap(),
                )
            })
            .collect();
        all.sort();
        all
    }

    /// The read-back says where its bytes came from: the disk when every
    /// page could be dropped first; memory when the system kept some (here
    /// a page another mapping holds; on Windows, always).
    #[test]
    fn the_read_back_says_whether_it_read_the_disk() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("set");
        fs::create_dir(&dir).unwrap();
        let conn = Connection::open(dir.join("db")).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1),(2);")
            .unwrap();
        drop(conn);
        // (Windows flushes only through a handle that may write.)
        File::options()
            .read(true)
            .write(true)
            .open(dir.join("db"))
            .unwrap()
            .sync_all()
            .unwrap();
        let files = [hashed(&dir, "db", FileRole::Main)];
        let (v, _) = verify(&dir, &files);
        let expected = if cfg!(target_os = "linux") {
            ReadBack::Disk
        } else {
            ReadBack::Memory
        };
        assert_eq!(v.unwrap().read_back, Some(expected));

        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // Someone maps the file and touches its first page: that page
            // cannot be dropped, and the check says so.
            let held = File::open(dir.join("db")).unwrap();
            let len = held.metadata().unwrap().len() as usize;
            // SAFETY: a private read-only mapping of an open file, read
            // once and unmapped below.
            unsafe {
                let map = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    held.as_raw_fd(),
                    0,
                );
                assert_ne!(map, libc::MAP_FAILED);
                assert_eq!(std::ptr::read_volatile(map as *const u8), b'S');
                let (v, _) = verify(&dir, &files);
                libc::munmap(map, len);
                let v = v.unwrap();
                assert_eq!(v.read_back, Some(ReadBack::Memory));
                assert!(v.words().contains("may have served the bytes from memory"));
            }
        }
    }

    #[test]
    fn a_set_with_nothing_to_replay_is_checked_in_place_without_writing() {
        let root = tempfile::tempdir().unwrap();
        // Characters that mean something in a URI (Windows forbids `?`).
        let dir = root.path().join(if cfg!(windows) {
            "odd #% name"
        } else {
            "odd ?#% name"
        });
        fs::create_dir(&dir).unwrap();
        let conn = Connection::open(dir.join("db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2); PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        drop(conn);
        let files: Vec<_> = ["db", "db-wal"]
            .iter()
            .filter(|n| dir.join(n).exists())
            .map(|n| {
                hashed(
                    &dir,
                    n,
                    if *n == "db" {
                        FileRole::Main
                    } else {
                        FileRole::Wal
                    },
                )
            })
            .collect();
        assert!(!files.iter().any(needs_replay), "{files:?}");
        let before = listing(&dir);
        let (result, scratch) = verify(&dir, &files);
        let v = result.unwrap();
        assert_eq!((v.integrity.as_str(), v.hashes_match), ("ok", true));
        assert!(v.page_count >= 2);
        assert_eq!(
            listing(&dir),
            before,
            "nothing created or changed in the backup"
        );
        assert!(!scratch.exists(), "no scratch copy was needed");
    }

    #[test]
    fn a_hot_journal_is_replayed_in_a_scratch_copy_that_goes_away() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("backup");
        fs::create_dir(&dir).unwrap();
        let conn = Connection::open(dir.join("db")).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(conn);
        // A journal with content makes SQLite replay (here it is not a valid
        // hot journal, so SQLite discards it; what matters is where).
        fs::write(dir.join("db-journal"), vec![0u8; 512]).unwrap();
        let files = [
            hashed(&dir, "db", FileRole::Main),
            hashed(&dir, "db-journal", FileRole::Journal),
        ];
        let before = listing(&dir);
        let (result, scratch) = verify(&dir, &files);
        result.unwrap();
        assert_eq!(
            listing(&dir),
            before,
            "the backup itself is never opened for writing"
        );
        assert!(!scratch.exists(), "the scratch copy is removed");
    }

    #[test]
    fn a_changed_byte_fails_verification_in_both_paths() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("backup");
        fs::create_dir(&dir).unwrap();
        Connection::open(dir.join("db"))
            .unwrap()
            .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let main = hashed(&dir, "db", FileRole::Main);
        let mut bytes = fs::read(dir.join("db")).unwrap();
        bytes[200] ^= 0xff;
        fs::write(dir.join("db"), &bytes).unwrap();
        let (result, _) = verify(&dir, std::slice::from_ref(&main));
        assert!(
            matches!(result, Err(Error::HashMismatch { .. })),
            "{result:?}"
        );
        fs::write(dir.join("db-journal"), vec![0u8; 512]).unwrap();
        let journal = hashed(&dir, "db-journal", FileRole::Journal);
        let (result, scratch) = verify(&dir, &[main, journal]);
        assert!(
            matches!(result, Err(Error::HashMismatch { .. })),
            "{result:?}"
        );
        assert!(!scratch.exists());
    }
}
