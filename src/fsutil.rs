//! Small filesystem tools: durable atomic writes, directory fsync, free
//! space, and the run locks that tell live runs from leftovers.
//!
//! Every run holds an exclusive `flock` on `run-<tag>.lock` in a runtime
//! directory for as long as it lives. Snapshots, `.partial` folders and
//! scratch folders carry the run's tag in their names, so a sweep can tell a
//! leftover (nobody holds its lock: the run died, or the machine rebooted and
//! `/run` was emptied) from the work of a backup that is still running.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = File::options().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
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

/// Make a directory's entries (new files, renames) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Start writing `len` bytes at `offset` of `file` to disk now, and wait
/// for the window before it: a steady trickle instead of a burst at fsync.
/// Only a scheduling hint; the caller still fsyncs.
pub fn write_behind(file: &File, offset: u64, len: u64) {
    let fd = file.as_raw_fd();
    // SAFETY: plain syscalls on an open descriptor; errors only lose the hint.
    unsafe {
        libc::sync_file_range(fd, offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        if offset >= len {
            libc::sync_file_range(
                fd,
                (offset - len) as i64,
                len as i64,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
    }
}

/// Tell the kernel the bytes just read from `file` will not be read again
/// (snapshot files), so a backup does not push the correlator's working
/// set out of the page cache. Only a hint.
pub fn drop_cached(file: &File, offset: u64, len: u64) {
    // SAFETY: advisory syscall on an open descriptor.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset as i64, len as i64, libc::POSIX_FADV_DONTNEED);
    }
}

/// Make `dst` (a new, empty file) share `src`'s blocks (FICLONE): an
/// instant copy on btrfs and reflink-enabled xfs. Fails with EOPNOTSUPP,
/// EXDEV or EINVAL where that is not possible; the caller then copies.
pub fn reflink(src: &File, dst: &File) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source descriptor as its argument.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Put this process's disk I/O behind other processes' at the same class:
/// best-effort, lowest level (7). Schedulers that honour priorities
/// (mq-deadline, bfq) then serve the correlator's commits first. Not the
/// idle class: on a disk that is never idle it would starve the backup.
/// Threads started afterwards inherit it. Only a hint; errors are ignored.
pub fn lower_io_priority() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const BEST_EFFORT_LOWEST: libc::c_long = (2 << 13) | 7;
    // SAFETY: ioprio_set takes three integers.
    unsafe {
        libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0 as libc::c_long, BEST_EFFORT_LOWEST);
    }
}

/// Bytes available to unprivileged users on the filesystem holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs fills the zeroed struct from a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Whether two existing paths are on the same filesystem (device number).
pub fn same_filesystem(a: &Path, b: &Path) -> io::Result<bool> {
    Ok(fs::metadata(a)?.dev() == fs::metadata(b)?.dev())
}

/// Whether this process runs with root rights.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no failure modes.
    unsafe { libc::geteuid() == 0 }
}

/// Directories where run locks may live, the one this process uses first.
fn lock_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("PERSNAP_RUN_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    // SAFETY: getuid has no failure modes.
    let uid = unsafe { libc::getuid() };
    let user_dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("persnap"),
        None => std::env::temp_dir().join(format!("persnap-{uid}")),
    };
    if is_root() {
        dirs.push(PathBuf::from("/run/persnap"));
        dirs.push(user_dir);
    } else {
        dirs.push(user_dir);
        dirs.push(PathBuf::from("/run/persnap"));
    }
    dirs
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
        let dir = lock_dirs().into_iter().next().expect("at least one lock dir");
        fs::create_dir_all(&dir)?;
        let path = dir.join(lock_name(tag));
        let file = File::options().read(true).write(true).create(true).truncate(false).mode(0o644).open(&path)?;
        flock(&file, libc::LOCK_EX | libc::LOCK_NB)?;
        Ok(RunLock { path, _file: file })
    }

    /// Whether any process holds the lock of run `tag`.
    pub fn is_held(tag: &str) -> bool {
        lock_dirs().iter().any(|dir| {
            let Ok(file) = File::open(dir.join(lock_name(tag))) else { return false };
            match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
                Ok(()) => false,
                Err(e) => e.raw_os_error() == Some(libc::EWOULDBLOCK),
            }
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on an open fd.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A whole-file exclusive lock, waited for (used around history updates).
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        let file = File::options().read(true).write(true).create(true).truncate(false).mode(0o644).open(path)?;
        flock(&file, libc::LOCK_EX)?;
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

    #[test]
    fn run_lock_is_seen_while_held_and_gone_after() {
        let tag = format!("t{}", std::process::id());
        assert!(!RunLock::is_held(&tag));
        let lock = RunLock::acquire(&tag).unwrap();
        assert!(RunLock::is_held(&tag));
        assert!(RunLock::acquire(&tag).is_err(), "a second holder is refused");
        drop(lock);
        assert!(!RunLock::is_held(&tag));
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("persnap-fsutil-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&d).unwrap();
        d
    }

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
}
