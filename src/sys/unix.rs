//! Linux (and other Unix) implementations of [`crate::sys`].

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Open an existing file for reading; a symbolic link in the last
/// component is an error, never followed.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Create a new file (it must not exist) readable only by its owner.
pub fn create_private(path: &Path) -> io::Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Open or create a file that other users may read (locks, history).
/// Never through a symbolic link: a root process (a scheduled backup)
/// writes these into a user's folder, where the user could plant one.
pub fn open_shared_rw(path: &Path, truncate: bool) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Create a folder (and its parents when `recursive`) only its owner can enter.
pub fn create_private_dir(path: &Path, recursive: bool) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(recursive)
        .mode(0o700)
        .create(path)
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
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
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
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

/// Make `dst` (a new, empty file) share `src`'s blocks (FICLONE): an
/// instant copy on btrfs and reflink-enabled xfs. Fails with EOPNOTSUPP,
/// EXDEV or EINVAL where that is not possible; the caller then copies.
pub fn reflink(src: &File, dst: &File) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source descriptor as its argument.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            BEST_EFFORT_LOWEST,
        );
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
pub fn is_admin() -> bool {
    // SAFETY: geteuid has no failure modes.
    unsafe { libc::geteuid() == 0 }
}

/// This machine's host name, for manifests and history.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Where run locks live: the system one (`/run/persnap`, emptied at boot)
/// for root, the user's runtime folder otherwise; the first is used for
/// new locks, all are checked.
pub fn lock_dirs() -> Vec<PathBuf> {
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
    if is_admin() {
        dirs.push(PathBuf::from("/run/persnap"));
        dirs.push(user_dir);
    } else {
        dirs.push(user_dir);
        dirs.push(PathBuf::from("/run/persnap"));
    }
    dirs
}

/// `file:` URI of an absolute path for SQLite, every byte outside the
/// unreserved set percent-encoded (so `?`, `#` and `%` in folder names
/// stay part of the path).
pub fn sqlite_file_uri(path: &Path) -> String {
    super::percent_encoded("file:", path.as_os_str().as_bytes(), b"/-._~")
}

/// Processes (as "pid (name)") holding any of `paths` open, found through
/// `/proc/*/fd`. Processes this user cannot inspect are skipped (the
/// helper runs as root and sees all).
pub fn processes_using(paths: &[PathBuf]) -> Vec<String> {
    let wanted: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut users = Vec::new();
    for entry in procs.filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .filter_map(|fd| fd.ok())
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .any(|target| wanted.contains(&target));
        if holds {
            let name = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            users.push(format!(
                "process {pid} ({}) has the database open",
                name.trim()
            ));
        }
    }
    users
}

/// Give `path` the owner and group of `like` (and, for a file, its
/// permission bits): a file restored by the root helper must belong to
/// the correlator's user, as the file it replaces did.
pub fn take_ownership_of(path: &Path, like: &Path) -> io::Result<()> {
    let reference = fs::metadata(like)?;
    std::os::unix::fs::lchown(path, Some(reference.uid()), Some(reference.gid()))?;
    if reference.is_file() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(reference.mode() & 0o7777))?;
    }
    Ok(())
}

/// The home folder of `user` from the password database.
pub fn home_of(user: &str) -> Option<PathBuf> {
    let name = std::ffi::CString::new(user).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwnam_r writes into pwd and buf, both sized as declared.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into buf, NUL-terminated.
    let dir = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}
