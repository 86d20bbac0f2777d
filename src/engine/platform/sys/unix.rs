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

/// Open for reading a file in a folder someone else may control: no link
/// is followed, a FIFO or device cannot block the open (`O_NONBLOCK`), and
/// anything but a regular file is refused.
pub fn open_untrusted(path: &Path) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Whether `path` itself (not what a link names) belongs to the user this
/// process acts as (its effective uid).
pub fn made_by_me(path: &Path) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    owner_of(path) == Some(me)
}

/// Open a folder for use as a base of [`open_beneath`], following no
/// symbolic link in any component of `path` (Linux: `openat2` with
/// `RESOLVE_NO_SYMLINKS`).
pub fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: open_how is plain data; zero is a valid value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: openat2 reads `how` (of the size given) and the C string.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a new descriptor we own.
            return Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOSYS) {
            return Err(err);
        }
    }
    // Kernels before 5.6: refuse a link in any component by looking.
    let mut walked = PathBuf::new();
    for part in path.components() {
        walked.push(part);
        if fs::symlink_metadata(&walked)?.file_type().is_symlink() {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
    }
    File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

/// Open the file `name` (one plain component) in the folder `dir` for
/// reading, never through a symbolic link. `_dir_path` names the folder
/// for platforms without descriptor-relative opens.
pub fn open_beneath(dir: &File, _dir_path: &Path, name: &str) -> io::Result<File> {
    if name.contains('/') || name == ".." || name == "." {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let c =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: openat on a directory descriptor we hold, with a C string.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // O_NONBLOCK only kept a FIFO from hanging the open; reads of a
    // regular file ignore it, and anything else is refused by the caller.
    Ok(file)
}

/// The pipe a parent left open at descriptor `fd` (the worker's store
/// files), refused unless it really is one.
pub fn inherited_pipe(fd: i32) -> io::Result<File> {
    inherited(fd, libc::S_IFIFO, "a pipe")
}

/// The regular file a parent left open at descriptor `fd` (a restore
/// worker's backup files).
pub fn inherited_file(fd: i32) -> io::Result<File> {
    inherited(fd, libc::S_IFREG, "a file")
}

fn inherited(fd: i32, kind: libc::mode_t, what: &str) -> io::Result<File> {
    // SAFETY: fstat writes into the zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != kind {
        return Err(io::Error::other(format!("descriptor {fd} is not {what}")));
    }
    // SAFETY: the descriptor was left to this process by its parent, for it.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// How many names (hard links) the file has.
pub fn link_count(meta: &fs::Metadata) -> u64 {
    meta.nlink()
}

/// The uid owning `path` (the path itself, not what a link names).
pub fn owner_of(path: &Path) -> Option<u32> {
    fs::symlink_metadata(path).ok().map(|m| m.uid())
}

/// The device number of the filesystem holding `path`.
pub fn device_of(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.dev())
}

/// Create a new file (it must not exist) readable only by its owner.
pub fn create_private(path: &Path) -> io::Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Write all of `buf` at `offset` of `file`, leaving its position alone
/// (so that several threads may write one file through one handle).
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
}

/// Open an existing lock file to test it: no link followed, no blocking
/// on a FIFO, and it must be a regular file.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a lock file"));
    }
    Ok(file)
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

/// How to mend what [`admin_only`] refuses.
pub const ADMIN_ONLY_FIX: &str = "Fix it with `chown root:root` and `chmod go-w`.";

/// Refuse a path that anyone but this process's user (root, in the
/// helper) owns or could write: that owner, no group or other write bit.
/// An `ancestor` may also be a root-owned sticky folder such as `/tmp`,
/// where others cannot replace what they do not own. Symbolic links are
/// judged as themselves, never followed.
pub fn admin_only(path: &Path, ancestor: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    // SAFETY: geteuid has no failure modes.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(io::Error::other(format!(
            "{} is owned by uid {}, not by root",
            path.display(),
            meta.uid()
        )));
    }
    let sticky_root = ancestor && meta.uid() == 0 && meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky_root {
        return Err(io::Error::other(format!(
            "{} is writable by others (mode {:o})",
            path.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Refuse a folder (and every folder above it) that anyone but `uid` or
/// root owns, or that others could write: write bits only for the owner,
/// or for a group that is the owner's own (`gid`, a user private group).
/// An ancestor may also be a root-owned sticky folder such as `/tmp`.
/// Symbolic links are judged as themselves, never followed. A restore
/// writes there as `uid`: nobody else may swap what it works on.
pub fn only_owner_can_change(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    for (i, folder) in dir.ancestors().enumerate() {
        let meta = fs::symlink_metadata(folder)?;
        let mode = meta.mode();
        if meta.uid() != uid && meta.uid() != 0 {
            return Err(io::Error::other(format!(
                "{} belongs to uid {}, who could swap the folder",
                folder.display(),
                meta.uid()
            )));
        }
        let sticky_root = i > 0 && meta.uid() == 0 && mode & 0o1000 != 0;
        let own_group = meta.uid() == uid && meta.gid() == gid && uid != 0;
        let group_writes = mode & 0o020 != 0 && !own_group;
        if (mode & 0o002 != 0 || group_writes) && !sticky_root {
            return Err(io::Error::other(format!(
                "{} can be changed by other users (mode {:o})",
                folder.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

/// The primary group of `uid` (from the user database), or `None`.
pub fn primary_group(uid: u32) -> Option<u32> {
    user_ids(uid).map(|(_, gid, _)| gid)
}

/// Whether `path` carries an access control list beyond its mode bits
/// (a `system.posix_acl_access` attribute: named users or groups), which
/// the mode's group bits do not show.
pub fn has_extended_acl(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    let name = c"system.posix_acl_access";
    // SAFETY: lgetxattr with a null buffer of size 0 only reports the size.
    let size = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    size >= 0
}

/// The owner and group of `path` (not following a link).
pub fn owner_and_group(path: &Path) -> io::Result<(u32, u32)> {
    let meta = fs::symlink_metadata(path)?;
    Ok((meta.uid(), meta.gid()))
}

/// Refuse a secret file anyone but root (this process's user) owns, or
/// that anyone else could read or write; links are not followed.
pub fn secret_only(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    // SAFETY: geteuid has no failure modes.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a plain file",
            path.display()
        )));
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Err(io::Error::other(format!(
            "{} is owned by uid {}, not by root",
            path.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} can be read or changed by others (mode {:o}); it holds a password",
            path.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Create a folder (and missing parents) the administrator owns and
/// everyone may read: mode 0755 whatever the umask.
pub fn create_admin_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
    missing.reverse();
    for dir in missing {
        match fs::DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Create `dir` if missing (mode 0700) and make sure it is a real folder
/// that this process's user owns and nobody else can enter: the run-lock
/// and mount folders under `/run`, which a careless umask or an earlier
/// caller must not have left open.
pub fn secure_private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no failure modes.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a folder (a link or file is in its place); remove it",
            dir.display()
        )));
    }
    if meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} must belong to uid {me} with mode 0700 (it is uid {}, mode {:o}); remove it so persnap can create it again",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Make a directory's entries (new files, renames) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Start writing `len` bytes at `offset` of `file` to disk now, and wait
/// for the window before it: a steady trickle instead of a burst at fsync.
/// The caller still fsyncs. A write error the wait sees is returned: the
/// kernel reports it once, so the final fsync might not.
pub fn write_behind(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: plain syscall on an open descriptor; an error here only
    // loses the head start (the wait below, or the fsync, writes anyway).
    unsafe {
        libc::sync_file_range(fd, offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
    if offset >= len {
        return flush_range(file, offset - len, len);
    }
    Ok(())
}

/// Write `len` bytes of `file` from `offset` to the disk and wait until
/// they are there (no cache flush: the final fsync does that): a gentle
/// copy's small sync, whose duration tells how busy the disk is.
pub fn flush_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an open descriptor.
    let rc = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// Drop every page of `file` from the page cache and report whether none
/// is left there, so that what is read next comes from the disk. Only
/// clean pages can go: a file written and fsynced has none other. `false`
/// when the system kept some page (dirty, or mapped by someone).
pub fn evict(file: &File) -> io::Result<bool> {
    // SAFETY: advisory syscall on an open descriptor (length 0: to the end).
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let len = file.metadata()?.len();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    // Map and ask in windows of 1 GiB: the residency vector stays small.
    const WINDOW: u64 = 1 << 30;
    let mut resident = vec![0u8; (WINDOW / page) as usize];
    let mut offset = 0u64;
    while offset < len {
        let span = (len - offset).min(WINDOW);
        // SAFETY: a read-only shared mapping of an open file, unmapped
        // below; mincore only fills `resident` (one byte per page).
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                span as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset as i64,
            );
            if map == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let rc = libc::mincore(map, span as usize, resident.as_mut_ptr());
            let err = io::Error::last_os_error();
            libc::munmap(map, span as usize);
            if rc != 0 {
                return Err(err);
            }
        }
        let pages = span.div_ceil(page) as usize;
        if resident[..pages].iter().any(|b| b & 1 != 0) {
            return Ok(false);
        }
        offset += span;
    }
    Ok(true)
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

/// The user `uid` as the system's user database knows them: name,
/// primary group and every group they are in (`getgrouplist`).
pub fn user_ids(uid: u32) -> Option<(String, u32, Vec<u32>)> {
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: getpwuid_r writes into pwd and buf, both sized as declared.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf, NUL-terminated.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    let gid = pwd.pw_gid;
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: groups holds n entries; getgrouplist updates n.
    let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
    if rc < 0 {
        groups.resize(n.max(0) as usize, 0);
        // SAFETY: as above, with the size getgrouplist asked for.
        unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
    }
    groups.truncate(n.max(0) as usize);
    Some((name.to_string_lossy().into_owned(), gid, groups))
}

// The 32-bit-id system calls (on 32-bit x86 and ARM the plain ones take
// 16-bit ids).
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups32;
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
const SYS_SETFSUID: libc::c_long = libc::SYS_setfsuid32;
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
const SYS_SETFSGID: libc::c_long = libc::SYS_setfsgid32;
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups;
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
const SYS_SETFSUID: libc::c_long = libc::SYS_setfsuid;
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
const SYS_SETFSGID: libc::c_long = libc::SYS_setfsgid;

/// Run `work` (from root) on a thread of its own whose file access is the
/// user `uid`'s: groups `groups`, filesystem ids `gid` and `uid`
/// (`setgroups`, `setfsgid`, `setfsuid`, the raw system calls, which
/// change only the calling thread on Linux). Changing the filesystem uid
/// from 0 also drops the thread's file capabilities, so whatever it opens,
/// it opens as the user; its real uid stays root's, so the user cannot
/// signal it. The thread ends with `work`; no other thread is affected.
/// Descriptors opened before keep the rights they were opened with.
pub fn as_user_on_a_thread<T: Send>(
    uid: u32,
    gid: u32,
    groups: &[u32],
    work: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: raw credential syscalls on this thread only.
                let dropped = unsafe {
                    libc::syscall(SYS_SETGROUPS, groups.len(), groups.as_ptr()) == 0 && {
                        libc::syscall(SYS_SETFSGID, gid);
                        libc::syscall(SYS_SETFSUID, uid);
                        // Both return the previous id; asking again (with an
                        // invalid id) says what they are now.
                        libc::syscall(SYS_SETFSGID, u32::MAX) == i64::from(gid) as libc::c_long
                            && libc::syscall(SYS_SETFSUID, u32::MAX)
                                == i64::from(uid) as libc::c_long
                    }
                };
                if !dropped {
                    return Err(io::Error::last_os_error());
                }
                Ok(work())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Make `cmd`'s child get `fds` at descriptors `first`, `first + 1`, … .
/// Returns copies of them (moved out of the way of those numbers) that
/// must live until the child is started.
pub fn give_descriptors(
    cmd: &mut std::process::Command,
    fds: &[&dyn AsRawFd],
    first: std::os::fd::RawFd,
) -> io::Result<Vec<std::os::fd::OwnedFd>> {
    let mut high = Vec::with_capacity(fds.len());
    for fd in fds {
        // SAFETY: fcntl duplicates a descriptor we hold, at 100 or above.
        let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        high.push(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(copy) });
    }
    let raw: Vec<std::os::fd::RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: dup2 is async-signal-safe; the targets are free of the
    // sources (all at 100 or above).
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, first + i as std::os::fd::RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(high)
}

/// Make `cmd` run as the user `uid`: supplementary groups `groups`, then
/// gid, then uid (all three of real, effective and saved), then check that
/// root cannot be regained. The child also dies with its parent.
pub fn run_wholly_as(cmd: &mut std::process::Command, uid: u32, gid: u32, groups: Vec<u32>) {
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let (mut r, mut e, mut s) = (0, 0, 0);
            libc::getresuid(&mut r, &mut e, &mut s);
            if (r, e, s) != (uid, uid, uid) || libc::setuid(0) == 0 && uid != 0 {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            // After the change of credentials, which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// How many pieces (extents) `file` is in on disk (`FS_IOC_FIEMAP`,
/// counting only).
pub fn extent_count(file: &File) -> io::Result<u64> {
    // struct fiemap without room for extents: the kernel only counts.
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
    }
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    let mut map = Fiemap {
        start: 0,
        length: u64::MAX,
        flags: 0,
        mapped_extents: 0,
        extent_count: 0,
        reserved: 0,
    };
    // SAFETY: FIEMAP with extent_count 0 writes only mapped_extents.
    if unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, &mut map) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(map.mapped_extents))
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

/// Nothing more per thread on Unix: the process's I/O priority
/// ([`lower_io_priority`]) already covers the copy.
pub fn background_thread() -> Background {
    Background
}

/// See [`background_thread`].
pub struct Background;

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

/// The root-made folder of users' run folders (see [`make_user_run_dir`]).
pub const USERS_RUN_DIR: &str = "/run/persnap-users";

/// A user's run-lock folder made by root: `/run/persnap-users/<uid>`.
pub fn user_run_dir(uid: u32) -> PathBuf {
    Path::new(USERS_RUN_DIR).join(uid.to_string())
}

/// Root: make `uid`'s run-lock folder, the user's own (mode 0700) inside a
/// root-owned folder nobody else may write, so every run of that user —
/// from a desktop, a terminal or a schedule that starts while nobody is
/// logged in — keeps its run locks in one place nobody else can take
/// first. Set up through descriptors: nothing is chowned by path.
pub fn make_user_run_dir(uid: u32, gid: u32) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let parent = Path::new(USERS_RUN_DIR);
    match fs::DirBuilder::new().mode(0o755).create(parent) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let parent_dir = open_dir_nofollow(parent)?;
    let meta = parent_dir.metadata()?;
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{USERS_RUN_DIR} must be root's, writable by nobody else; remove it"
        )));
    }
    // Users must pass through it to their own folder (the helper's umask
    // made it 0700).
    // SAFETY: fchmod on the descriptor we hold, root's and checked above.
    if unsafe { libc::fchmod(parent_dir.as_raw_fd(), 0o755) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let name = std::ffi::CString::new(uid.to_string()).expect("digits");
    // SAFETY: mkdirat on a descriptor we hold, with a C string.
    if unsafe { libc::mkdirat(parent_dir.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    // SAFETY: openat beneath the held descriptor, no link followed.
    let fd = unsafe {
        libc::openat(
            parent_dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened, owned by this File alone.
    let dir = unsafe { File::from_raw_fd(fd) };
    // SAFETY: fchown/fchmod on the descriptor we hold.
    unsafe {
        if libc::fchown(dir.as_raw_fd(), uid, gid) != 0 || libc::fchmod(dir.as_raw_fd(), 0o700) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where run locks live: the system one (`/run/persnap`, emptied at boot)
/// for root; for a user, their folder made by root
/// ([`make_user_run_dir`]) when there is one, else their runtime folder,
/// else `/tmp/persnap-<uid>`. New locks go in the first; a run is alive if
/// its lock is held in any of them that belongs to the user — so runs of
/// one user that started in different ways still see each other.
pub fn lock_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("PERSNAP_RUN_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if is_admin() {
        // Root never trusts a folder a user could have made first (such as
        // /tmp/persnap-0): its locks live in /run/persnap only.
        dirs.push(PathBuf::from("/run/persnap"));
        return dirs;
    }
    // SAFETY: geteuid has no failure modes.
    let uid = unsafe { libc::geteuid() };
    let mine = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid);
    let made_by_root = user_run_dir(uid);
    if mine(&made_by_root) {
        dirs.push(made_by_root);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        dirs.push(PathBuf::from(d).join("persnap"));
    }
    let session = PathBuf::from(format!("/run/user/{uid}"));
    if mine(&session) {
        dirs.push(session.join("persnap"));
    }
    dirs.push(std::env::temp_dir().join(format!("persnap-{uid}")));
    dirs.push(PathBuf::from("/run/persnap"));
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let new = !seen.contains(d);
        seen.push(d.clone());
        new
    });
    dirs
}

/// `file:` URI of an absolute path for SQLite, every byte outside the
/// unreserved set percent-encoded (so `?`, `#` and `%` in folder names
/// stay part of the path).
pub fn sqlite_file_uri(path: &Path) -> String {
    // An empty authority (`file://` then the path), so a path that starts
    // with `//` is not read as a host name.
    let prefix = if path.is_absolute() {
        "file://"
    } else {
        "file:"
    };
    super::percent_encoded(prefix, path.as_os_str().as_bytes(), b"/-._~")
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
    // Only root changes owners: a restore run as the folder's owner (the
    // helper's worker) makes files that are that owner's already.
    if is_admin() {
        std::os::unix::fs::lchown(path, Some(reference.uid()), Some(reference.gid()))?;
    }
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

/// A tool's output as text (UTF-8 here; tools run with LC_ALL=C).
pub fn decode_tool_output(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
