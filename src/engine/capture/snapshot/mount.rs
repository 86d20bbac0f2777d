//! Mounting snapshot devices read-only, where nobody else sees them.
//!
//! Before the first mount, the process moves into a private mount namespace
//! (`unshare(CLONE_NEWNS)` + recursive private propagation), so the snapshot
//! mount is invisible to other processes and vanishes with the process,
//! however it dies. `unshare` refuses in a multi-threaded process; then the
//! mount is made in the shared namespace, in a root-only folder under
//! `/run/persnap`, and the leftover sweep takes care of it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Where snapshot mounts are placed (`mnt-<tag>` inside).
pub const MOUNT_ROOT: &str = "/run/persnap";
/// Prefix of a snapshot mount folder's name.
pub const MOUNT_PREFIX: &str = "mnt-";

/// Whether this process now has a private mount namespace.
pub fn private_namespace() -> bool {
    static PRIVATE: OnceLock<bool> = OnceLock::new();
    *PRIVATE.get_or_init(|| {
        // SAFETY: plain syscalls; a failure leaves the process unchanged.
        unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
        }
    })
}

/// Read-only mount options that let a snapshot of a live filesystem mount:
/// no journal replay, and for xfs no duplicate-UUID refusal.
pub fn snapshot_options(fs_type: &str) -> &'static str {
    match fs_type {
        "xfs" => "nouuid,norecovery",
        "ext4" | "ext3" => "noload",
        _ => "",
    }
}

/// The folder a run's snapshot is mounted at.
pub fn mount_dir(tag: &str) -> PathBuf {
    Path::new(MOUNT_ROOT).join(format!("{MOUNT_PREFIX}{tag}"))
}

fn c(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Mount `device` (type `fs_type`) read-only at a new folder `target`.
pub fn mount_readonly(device: &Path, target: &Path, fs_type: &str) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        crate::sys::secure_private_dir(parent)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(target)?;
    let options = CString::new(snapshot_options(fs_type)).expect("no NUL");
    let fs = CString::new(fs_type).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            c(device)?.as_ptr(),
            c(target)?.as_ptr(),
            fs.as_ptr(),
            flags,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        let _ = std::fs::remove_dir(target);
        return Err(err);
    }
    Ok(())
}

/// Unmount `target`, retrying while busy, then remove the folder. A target
/// that is not mounted (or already gone) is fine.
pub fn unmount(target: &Path) -> io::Result<()> {
    let path = c(target)?;
    let mut last = None;
    for attempt in 0..10u64 {
        // SAFETY: valid C string.
        if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
            last = None;
            break;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => {
                last = None;
                break;
            }
            Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(100 * (attempt + 1))),
            _ => return Err(err),
        }
        last = Some(err);
    }
    if let Some(err) = last {
        return Err(err);
    }
    match std::fs::remove_dir(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_mounts_skip_journal_replay() {
        assert_eq!(snapshot_options("xfs"), "nouuid,norecovery");
        assert_eq!(snapshot_options("ext4"), "noload");
        assert_eq!(snapshot_options("vfat"), "");
    }
}
