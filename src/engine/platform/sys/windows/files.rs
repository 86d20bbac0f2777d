//! Files and folders: opening without following reparse points, private
//! and shared files, the handles a worker inherits, and SQLite's paths.

use std::fs::{self, File};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use winapi::um::winnt::FILE_ATTRIBUTE_REPARSE_POINT;

use super::*;

/// Open an existing file for reading; a symbolic link or junction is an
/// error, never followed. With backup semantics: in the helper, which has
/// enabled SeBackupPrivilege, a store only the correlator's service account
/// may read is read all the same (its SQLite header before the snapshot);
/// elsewhere the flag changes nothing. It would also open a folder, which
/// is refused here.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    refuse_reparse_handle(&file, "a symbolic link or junction")?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a folder",
        ));
    }
    Ok(file)
}

/// Open for reading a file in a folder someone else may control: no link
/// or junction is followed, and anything but a plain file is refused.
pub fn open_untrusted(path: &Path) -> io::Result<File> {
    let file = open_nofollow(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Create a new file (it must not exist). Access follows the folder's
/// permissions, which persnap's own folders restrict.
pub fn create_private(path: &Path) -> io::Result<File> {
    File::options().write(true).create_new(true).open(path)
}

/// Write all of `buf` at `offset` of `file` (each call names its offset,
/// so that several threads may write one file through one handle).
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.seek_write(&buf[done..], offset + done as u64)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => done += n,
        }
    }
    Ok(())
}

/// Open an existing lock file to test it.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    open_nofollow(path)
}

/// Open or create a file for locks and history.
pub fn open_shared_rw(path: &Path, truncate: bool) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
}

/// Create a folder (and its parents when `recursive`).
pub fn create_private_dir(path: &Path, recursive: bool) -> io::Result<()> {
    if recursive {
        fs::create_dir_all(path)
    } else {
        fs::create_dir(path)
    }
}

/// NTFS journals directory changes itself; nothing to flush.
pub fn fsync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Windows writes behind on its own; no hint needed.
pub fn write_behind(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Windows has no per-range write-out: its only way, FlushFileBuffers,
/// also flushes the disk's cache, which is what holds the correlator's
/// commits up, and costs milliseconds a step. A gentle copy there relies
/// on its pauses and the cache manager's lazy writer; the final fsync
/// makes the backup durable.
pub fn flush_range(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// No per-range cache advice on Windows.
pub fn drop_cached(_file: &File, _offset: u64, _len: u64) {}

/// Windows has no per-file cache eviction: what is read next may come
/// from memory.
pub fn evict(_file: &File) -> io::Result<bool> {
    Ok(false)
}

/// Block cloning is not used on Windows; the caller copies.
pub fn reflink(_src: &File, _dst: &File) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Create `dir` if missing. Under persnap's folder in ProgramData (the
/// elevated helper's run locks) it is made the administrators' like every
/// folder there ([`create_admin_dir`]): a user may not plant or remove the
/// locks that tell a live run from a leftover. Elsewhere (the user's own
/// profile) its permissions come from its parent's inheritable ACL.
pub fn secure_private_dir(dir: &Path) -> io::Result<()> {
    if dir.starts_with(admin_root()) && is_admin() {
        return create_admin_dir(dir);
    }
    fs::create_dir_all(dir)
}

/// Open a folder as the base of [`open_beneath`] (the store folder inside
/// the shadow copy): with backup semantics, so that with SeBackupPrivilege
/// its permissions do not stand in the way, and as itself, so that a
/// junction or link in its place is refused, never followed.
pub fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    let dir = File::options()
        .read(true)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    refuse_reparse_handle(&dir, "a junction or link")?;
    Ok(dir)
}

/// Open `name` in the folder `dir_path` for reading, never through a link,
/// with backup semantics (see [`open_dir_nofollow`]).
pub fn open_beneath(_dir: &File, dir_path: &Path, name: &str) -> io::Result<File> {
    if name.contains(['/', '\\', ':']) || name == ".." || name == "." {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let file = File::options()
        .read(true)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(dir_path.join(name))?;
    refuse_reparse_handle(&file, "a symbolic link or junction")?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a folder",
        ));
    }
    Ok(file)
}

pub(super) fn refuse_reparse_handle(file: &File, what: &str) -> io::Result<()> {
    use std::os::windows::fs::MetadataExt;
    if file.metadata()?.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}"),
        ));
    }
    Ok(())
}

/// Inherited files are a Linux worker's; never on Windows.
pub fn inherited_file(fd: i32) -> io::Result<File> {
    inherited_pipe(fd)
}

/// Inherited pipes are a Linux worker's; never on Windows.
pub fn inherited_pipe(fd: i32) -> io::Result<File> {
    Err(io::Error::other(format!(
        "no inherited descriptor {fd} on Windows"
    )))
}

/// Hard links are not looked at on Windows (the snapshot is read by path).
pub fn link_count(_meta: &fs::Metadata) -> u64 {
    1
}

/// The device number of a path's filesystem (not used on Windows).
pub fn device_of(_path: &Path) -> Option<u64> {
    None
}

/// Where run locks live: under ProgramData for the elevated helper, under
/// the user's local application data otherwise; all are checked.
pub fn lock_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("PERSNAP_RUN_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    let system = Some(admin_root().join("run"));
    let user =
        std::env::var_os("LOCALAPPDATA").map(|d| PathBuf::from(d).join("persnap").join("run"));
    let (first, second) = if is_admin() {
        (system, user)
    } else {
        (user, system)
    };
    dirs.extend(first);
    dirs.extend(second);
    if dirs.is_empty() {
        dirs.push(std::env::temp_dir().join("persnap-run"));
    }
    dirs
}

/// A SQLite `file:` URI for `path`, in any Windows path form (see
/// [`super::windows_file_uri`]).
pub fn sqlite_file_uri(path: &Path) -> String {
    crate::sys::windows_file_uri(&long_path_form(&path.to_string_lossy()))
}

/// A long absolute path (scratch copies deep in a backup folder) in the
/// `\\?\` form, which Windows opens past 260 characters; SQLite hands the
/// name to CreateFileW as it is, so a plain one that long would fail.
pub(super) fn long_path_form(path: &str) -> String {
    const CLASSIC_MAX: usize = 248;
    let bytes = path.as_bytes();
    if path.len() < CLASSIC_MAX || path.contains('/') {
        path.to_owned()
    } else if let Some(share) = path
        .strip_prefix(r"\\")
        .filter(|p| !p.starts_with(['?', '.']))
    {
        format!(r"\\?\UNC\{share}")
    } else if bytes.len() > 2 && bytes[0].is_ascii_alphabetic() && &bytes[1..3] == b":\\" {
        format!(r"\\?\{path}")
    } else {
        path.to_owned()
    }
}
