//! Small filesystem tools: durable atomic writes, directory fsync, free
//! space, and the run locks that tell live runs from leftovers.
//!
//! Every run holds an exclusive lock (`flock`, `LockFileEx`) on `run-<tag>.lock` in a runtime
//! directory for as long as it lives. Snapshots, `.partial` folders and
//! scratch folders carry the run's tag in their names, so a sweep can tell a
//! leftover (nobody holds its lock: the run died, or the machine rebooted and
//! `/run` was emptied) from the work of a backup that is still running.

use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::path::Path;
use std::path::PathBuf;

pub use crate::sys::{
    drop_cached, flush_range, free_space, fsync_dir, lower_io_priority, reflink, same_filesystem,
    write_behind,
};

/// Read a small file in a folder someone else may write (a manifest, a
/// history, a configuration): no link followed, never blocked by a FIFO,
/// a regular file only, and at most `cap` bytes — a longer file is an
/// error, not a truncated read.
pub fn read_untrusted(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    read_untrusted_with(path, cap).map(|(bytes, _)| bytes)
}

/// [`read_untrusted`], with the metadata of the very file read (its owner
/// is judged from the open file, not looked up again by path).
pub fn read_untrusted_with(path: &Path, cap: u64) -> io::Result<(Vec<u8>, fs::Metadata)> {
    use std::io::Read as _;
    let file = crate::sys::open_untrusted(path)?;
    let meta = file.metadata()?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {cap} bytes"),
        ));
    }
    Ok((bytes, meta))
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
/// The file is created with the process's umask (private in the helper).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, bytes, 0o666)
}

/// [`atomic_write`] of a file only its owner may read (mode 0600 on Unix).
pub fn atomic_write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, bytes, 0o600)
}

/// Refuse `dir` unless it and every folder above it are the
/// administrator's, so that nobody else could have swapped what root
/// writes or removes there (the error names the folder).
pub fn admin_only_folder(dir: &Path) -> io::Result<()> {
    for (i, folder) in dir.ancestors().enumerate() {
        crate::sys::admin_only(folder, i > 0)?;
    }
    Ok(())
}

/// Write a secret (a repository's password for scheduled runs) where only
/// root (SYSTEM) can read it: into `path`, in a folder made the
/// administrator's, mode 0600 (Windows: SYSTEM and Administrators, and the
/// account `reader` a schedule runs as, read only). Refused if a folder on
/// the way is not the administrator's.
pub fn write_secret(path: &Path, bytes: &[u8], reader: Option<&str>) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    crate::sys::create_admin_dir(dir)?;
    admin_only_folder(dir)?;
    #[cfg(unix)]
    {
        // Linux schedules run as root; no account reads the file.
        let _ = reader;
        atomic_write_private(path, bytes)
    }
    #[cfg(windows)]
    return crate::sys::write_secret(path, bytes, reader);
}

/// [`atomic_write`] of a file everyone may read (mode 0644 whatever the
/// umask): the registry of protected databases.
pub fn atomic_write_public(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, bytes, 0o644)
}

fn atomic_write_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A fresh file, never an existing one (nor what a planted link names).
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut options = fs::File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        if mode != 0o666 {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// How long a rename waits, step by step, for another program to let go
/// of a file in the folder (about 10 s in all).
const RENAME_WAITS_MS: [u64; 12] = [10, 20, 40, 80, 160, 320, 640, 1000, 1500, 2000, 2000, 2000];

/// `fs::rename`, patient with programs that open new files for a moment.
/// On Windows a folder cannot be renamed while any file in it is open, and
/// antivirus real-time scanning (Defender) and the search indexer open
/// every new file: the rename is tried again for about 10 s when Windows
/// says "access denied", "sharing violation" or "lock violation", and if
/// it still fails the error says what most likely held it.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    rename_retrying(from, to, |a, b| fs::rename(a, b), &RENAME_WAITS_MS)
}

/// [`rename`] with the rename and its waits given (tests inject errors).
fn rename_retrying(
    from: &Path,
    to: &Path,
    rename: impl Fn(&Path, &Path) -> io::Result<()>,
    waits_ms: &[u64],
) -> io::Result<()> {
    let mut waits = waits_ms.iter();
    loop {
        let e = match rename(from, to) {
            Ok(()) => return Ok(()),
            Err(e) if held_open(&e) => e,
            Err(e) => return Err(e),
        };
        match waits.next() {
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(*ms)),
            None => {
                let seconds = waits_ms.iter().sum::<u64>().div_ceil(1000);
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{e}; for {seconds} s another program kept a file in {} open — usually antivirus real-time scanning or the search indexer. Try again; if it keeps happening, exclude the backup folder from scanning (or check that your account may change that folder)",
                        from.display()
                    ),
                ));
            }
        }
    }
}

/// Whether Windows refused a rename because something has a file open:
/// ERROR_ACCESS_DENIED (5), ERROR_SHARING_VIOLATION (32),
/// ERROR_LOCK_VIOLATION (33). Unix renames never wait for readers.
fn held_open(e: &io::Error) -> bool {
    cfg!(windows) && matches!(e.raw_os_error(), Some(5 | 32 | 33))
}

/// `fs::canonicalize`, in the form people write: on Windows a drive path
/// short enough not to need it loses the `\\?\` prefix.
pub fn canonicalize(path: &Path) -> io::Result<PathBuf> {
    let real = fs::canonicalize(path)?;
    Ok(if cfg!(windows) {
        PathBuf::from(crate::volume::plain_drive_path(&real.to_string_lossy()))
    } else {
        real
    })
}

/// Whether this process runs with administrator (root) rights.
pub fn is_root() -> bool {
    crate::sys::is_admin()
}

fn lock_dirs() -> Vec<PathBuf> {
    crate::sys::lock_dirs()
}

fn lock_name(tag: &str) -> String {
    format!("run-{tag}.lock")
}

/// An exclusive lock proving the run `tag` is alive. Released on drop (and
/// by the kernel when the process dies, however it dies).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: File,
}

impl RunLock {
    pub fn acquire(tag: &str) -> io::Result<RunLock> {
        let dir = lock_dirs()
            .into_iter()
            .next()
            .expect("at least one lock dir");
        crate::sys::secure_private_dir(&dir)?;
        let path = dir.join(lock_name(tag));
        let file = crate::sys::open_shared_rw(&path, false)?;
        file.try_lock().map_err(|e| match e {
            TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
            TryLockError::Error(e) => e,
        })?;
        Ok(RunLock { path, _file: file })
    }

    /// Whether any process holds the lock of run `tag`. Folders someone
    /// else made (a `/tmp/persnap-<uid>` taken first) do not count.
    pub fn is_held(tag: &str) -> bool {
        lock_dirs().iter().any(|dir| {
            if !is_root() && !crate::sys::made_by_me(dir) && !dir.starts_with("/run/persnap") {
                return false;
            }
            // Never through a link, never blocking on a FIFO, only a file.
            let Ok(file) = crate::sys::open_lock_file(&dir.join(lock_name(tag))) else {
                return false;
            };
            matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A whole-file exclusive lock, waited for (used around history updates).
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        let file = crate::sys::open_shared_rw(path, false)?;
        file.lock()?;
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempdir();
        let path = dir.join("f.json");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn planted_links_are_never_written_through() {
        let dir = tempdir();
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = dir.join("history.json");
        let tmp = dir.join(format!(".history.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        atomic_write(&path, b"new").unwrap();
        let lock = dir.join(".lock");
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        assert!(
            FileLock::exclusive(&lock).is_err(),
            "a linked lock file is refused"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn an_untrusted_read_takes_plain_small_files_only_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        fs::write(&plain, b"{}").unwrap();
        assert_eq!(read_untrusted(&plain, 2).unwrap(), b"{}");
        assert!(read_untrusted(&plain, 1).is_err(), "over the cap: refused");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&plain, &link).unwrap();
        assert!(read_untrusted(&link, 10).is_err(), "a link is not followed");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(read_untrusted(&fifo, 10).is_err()).unwrap());
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(5)),
            Ok(true),
            "a FIFO is refused at once"
        );
        assert!(read_untrusted(Path::new("/dev/zero"), 10).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_fifo_or_link_is_not_a_lock() {
        let tag = format!("f{:07}", std::process::id() % 10_000_000);
        let dir = lock_dirs().into_iter().next().unwrap();
        crate::sys::secure_private_dir(&dir).unwrap();
        let path = dir.join(lock_name(&tag));
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(RunLock::is_held(&tag)).unwrap());
        let held = rx.recv_timeout(std::time::Duration::from_secs(5));
        fs::remove_file(&path).unwrap();
        assert_eq!(
            held,
            Ok(false),
            "a FIFO neither blocks nor counts as a lock"
        );
        if is_root() {
            assert_eq!(
                lock_dirs(),
                std::env::var_os("PERSNAP_RUN_DIR")
                    .map(PathBuf::from)
                    .into_iter()
                    .chain([PathBuf::from("/run/persnap")])
                    .collect::<Vec<_>>(),
                "root trusts no folder a user could have made"
            );
        }
    }

    #[test]
    fn run_lock_is_seen_while_held_and_gone_after() {
        let tag = format!("t{}", std::process::id());
        assert!(!RunLock::is_held(&tag));
        let lock = RunLock::acquire(&tag).unwrap();
        assert!(RunLock::is_held(&tag));
        assert!(
            RunLock::acquire(&tag).is_err(),
            "a second holder is refused"
        );
        drop(lock);
        assert!(!RunLock::is_held(&tag));
    }

    fn tempdir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("persnap-fsutil-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn io_priority_is_lowered_to_best_effort_7() {
        let got = std::thread::spawn(|| {
            lower_io_priority();
            // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS, self).
            unsafe { libc::syscall(libc::SYS_ioprio_get, 1 as libc::c_long, 0 as libc::c_long) }
        })
        .join()
        .unwrap();
        assert_eq!(got, (2 << 13) | 7);
    }

    #[test]
    fn a_rename_waits_out_a_file_held_open_and_names_the_cause() {
        use std::cell::Cell;
        let tries = Cell::new(0);
        // Windows' answers while Defender or the indexer has a file open.
        let held = |code: i32, for_tries: usize| {
            let tries = &tries;
            move |_: &Path, _: &Path| {
                tries.set(tries.get() + 1);
                if tries.get() <= for_tries {
                    Err(io::Error::from_raw_os_error(code))
                } else {
                    Ok(())
                }
            }
        };
        let (a, b) = (Path::new("a.partial"), Path::new("a"));
        let waits = [1, 1, 1];
        if cfg!(windows) {
            for code in [5, 32, 33] {
                tries.set(0);
                rename_retrying(a, b, held(code, 2), &waits).unwrap();
                assert_eq!(tries.get(), 3, "error {code}: tried until it went");
                tries.set(0);
                let err = rename_retrying(a, b, held(code, 100), &waits).unwrap_err();
                assert_eq!(tries.get(), 4, "error {code}: once, then once per wait");
                assert_eq!(err.raw_os_error(), None);
                let said = err.to_string();
                assert!(
                    said.contains("another program kept a file in a.partial open")
                        && said.contains("antivirus"),
                    "{said}"
                );
            }
        }
        // Anything else is not waited for: a missing folder stays missing.
        tries.set(0);
        let err = rename_retrying(a, b, held(2, 100), &waits).unwrap_err();
        assert_eq!((tries.get(), err.kind()), (1, io::ErrorKind::NotFound));
    }

    #[test]
    fn same_filesystem_is_seen() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        assert!(same_filesystem(a.path(), b.path()).unwrap());
        let plain = crate::volume::canonical(a.path()).unwrap();
        assert!(same_filesystem(&plain, b.path()).unwrap());
    }
}
