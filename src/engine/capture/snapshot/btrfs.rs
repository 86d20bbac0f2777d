//! btrfs provider: a read-only snapshot of the subvolume holding the folder.
//!
//! The snapshot is made with the kernel's `BTRFS_IOC_SNAP_CREATE_V2` ioctl
//! (no dependency on btrfs-progs) and placed at the root of the mount that
//! holds the folder, under the hidden name `.persnap-snapshot-<id>`. It is
//! removed with `BTRFS_IOC_SNAP_DESTROY`. The sweep removes only entries
//! that carry that prefix AND are read-only btrfs subvolumes, so it can never
//! delete a user's data.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{ActiveSnapshot, SnapshotProvider, TAG};
use crate::error::{Error, Result};
use crate::fsutil::RunLock;
use crate::method::Method;
use crate::volume::{Mount, SnapshotSupport, VolumeInfo};

/// Name prefix of every persnap btrfs snapshot.
pub fn name_prefix() -> String {
    format!(".{TAG}-snapshot-")
}

const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// Inode number of every subvolume's root directory.
const SUBVOLUME_ROOT_INO: u64 = 256;
const SUBVOL_RDONLY: u64 = 1 << 1;
const NAME_MAX_V2: usize = 4040;
const NAME_MAX_V1: usize = 4088;
/// `_IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)`
const IOC_SNAP_CREATE_V2: libc::c_ulong = 0x5000_9417;
/// `_IOW(0x94, 15, struct btrfs_ioctl_vol_args)`
const IOC_SNAP_DESTROY: libc::c_ulong = 0x5000_940f;
/// `_IOR(0x94, 25, __u64)`
const IOC_SUBVOL_GETFLAGS: libc::c_ulong = 0x8008_9419;

#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; NAME_MAX_V2],
}

#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; NAME_MAX_V1],
}

pub struct BtrfsProvider;

/// Whether a btrfs snapshot can be taken for `folder`, in plain words.
pub fn support(folder: &Path, mount: &Mount) -> SnapshotSupport {
    match subvolume_root(folder, mount) {
        Ok(root) => SnapshotSupport::Available {
            method: Method::Btrfs,
            detail: format!("btrfs subvolume {} on {}", root.display(), mount.device),
        },
        Err(reason) => SnapshotSupport::Unavailable { reason },
    }
}

/// The root of the subvolume holding `folder`: the highest ancestor within
/// the mount on the same device number. It must be a subvolume root (inode
/// 256), or the subvolume is not reachable through this mount.
pub fn subvolume_root(folder: &Path, mount: &Mount) -> std::result::Result<PathBuf, String> {
    let stat =
        |p: &Path| fs::metadata(p).map_err(|e| format!("cannot examine {}: {e}", p.display()));
    let dev = stat(folder)?.dev();
    let mut root = folder.to_owned();
    for dir in folder
        .ancestors()
        .skip(1)
        .take_while(|d| d.starts_with(&mount.mount_point))
    {
        if stat(dir)?.dev() != dev {
            break;
        }
        root = dir.to_owned();
    }
    if stat(&root)?.ino() == SUBVOLUME_ROOT_INO {
        Ok(root)
    } else {
        Err(format!(
            "it is on btrfs, but the subvolume holding it is not visible through the mount at {} (that mount shows \
             only a subfolder, {}, of a subvolume); mount the subvolume itself, or move the database into a subvolume \
             with `btrfs subvolume create`",
            mount.mount_point.display(),
            mount.root.display()
        ))
    }
}

impl SnapshotProvider for BtrfsProvider {
    fn method(&self) -> Method {
        Method::Btrfs
    }

    fn create(&self, volume: &VolumeInfo, id: &str) -> Result<Box<dyn ActiveSnapshot>> {
        let root = subvolume_root(&volume.folder, &volume.mount).map_err(|reason| {
            Error::MethodNotApplicable {
                method: Method::Btrfs,
                path: volume.folder.clone(),
                reason,
            }
        })?;
        let parent = volume.mount.mount_point.clone();
        let name = format!("{}{id}", name_prefix());
        create_readonly_snapshot(&root, &parent, &name)?;
        let path = parent.join(&name);
        let inside = volume
            .folder
            .strip_prefix(&root)
            .expect("root is an ancestor of the folder");
        Ok(Box::new(BtrfsSnapshot {
            folder: path.join(inside),
            id: path.to_string_lossy().into_owned(),
            parent,
            name,
            released: false,
        }))
    }

    fn sweep(&self, mounts: &[Mount]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for mount in mounts
            .iter()
            .filter(|m| m.fs_type == "btrfs" && !m.read_only)
        {
            if !seen.insert(&mount.mount_point) {
                continue;
            }
            for name in leftover_names(&mount.mount_point) {
                destroy_snapshot(&mount.mount_point, &name)?;
                removed.push(mount.mount_point.join(&name).display().to_string());
            }
        }
        Ok(removed)
    }
}

/// Entries of `dir` that are leftover persnap snapshots: tagged name, run
/// lock free, read-only subvolume.
fn leftover_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| {
            name.strip_prefix(&name_prefix())
                .is_some_and(|tag| !RunLock::is_held(tag))
        })
        .filter(|name| is_readonly_subvolume(&dir.join(name)))
        .collect()
}

fn is_readonly_subvolume(path: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_dir() || meta.ino() != SUBVOLUME_ROOT_INO {
        return false;
    }
    let Ok(dir) = open_dir(path) else {
        return false;
    };
    if !is_btrfs(&dir) {
        return false;
    }
    let mut flags: u64 = 0;
    // SAFETY: SUBVOL_GETFLAGS writes one u64 through the pointer.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), IOC_SUBVOL_GETFLAGS, &mut flags as *mut u64) };
    rc == 0 && flags & SUBVOL_RDONLY != 0
}

fn is_btrfs(dir: &File) -> bool {
    // SAFETY: statfs fills the zeroed struct; the fd is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatfs(dir.as_raw_fd(), &mut st) };
    rc == 0 && st.f_type as i64 == BTRFS_SUPER_MAGIC
}

fn open_dir(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

fn copy_name<const N: usize>(name: &str) -> [u8; N] {
    let mut buf = [0u8; N];
    buf[..name.len()].copy_from_slice(name.as_bytes());
    buf
}

fn create_readonly_snapshot(root: &Path, parent: &Path, name: &str) -> Result<()> {
    let action = || {
        format!(
            "create a btrfs snapshot of {} in {}",
            root.display(),
            parent.display()
        )
    };
    let map = |source: io::Error| snapshot_error(action(), source);
    let src = open_dir(root).map_err(map)?;
    let dst = open_dir(parent).map_err(map)?;
    let mut args = VolArgsV2 {
        fd: i64::from(src.as_raw_fd()),
        transid: 0,
        flags: SUBVOL_RDONLY,
        unused: [0; 4],
        name: copy_name::<NAME_MAX_V2>(name),
    };
    // SAFETY: args is a correctly sized btrfs_ioctl_vol_args_v2; both fds are open.
    let rc = unsafe {
        libc::ioctl(
            dst.as_raw_fd(),
            IOC_SNAP_CREATE_V2,
            &mut args as *mut VolArgsV2,
        )
    };
    if rc != 0 {
        return Err(map(io::Error::last_os_error()));
    }
    Ok(())
}

/// Delete the snapshot `parent/name`; a snapshot already gone is fine.
fn destroy_snapshot(parent: &Path, name: &str) -> Result<()> {
    let action = || format!("remove the btrfs snapshot {}", parent.join(name).display());
    let dst = open_dir(parent).map_err(|e| snapshot_error(action(), e))?;
    let mut args = VolArgs {
        fd: 0,
        name: copy_name::<NAME_MAX_V1>(name),
    };
    // SAFETY: args is a correctly sized btrfs_ioctl_vol_args; the fd is open.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), IOC_SNAP_DESTROY, &mut args as *mut VolArgs) };
    let err = io::Error::last_os_error();
    match rc {
        0 => Ok(()),
        _ if err.kind() == io::ErrorKind::NotFound => Ok(()),
        _ => Err(snapshot_error(action(), err)),
    }
}

fn snapshot_error(action: String, source: io::Error) -> Error {
    match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::NeedsAdmin {
            method: Method::Btrfs,
            action,
            source,
        },
        Some(libc::EROFS) => Error::Snapshot {
            action,
            source,
            hint: "The btrfs filesystem is mounted read-only; persnap needs it writable to place the snapshot.",
        },
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::Snapshot {
            action,
            source,
            hint: "The btrfs filesystem is out of space or quota for the snapshot's metadata; free some space.",
        },
        _ => Error::Snapshot {
            action,
            source,
            hint: "Check the kernel log (dmesg) for btrfs messages.",
        },
    }
}

struct BtrfsSnapshot {
    id: String,
    folder: PathBuf,
    parent: PathBuf,
    name: String,
    released: bool,
}

impl ActiveSnapshot for BtrfsSnapshot {
    fn id(&self) -> &str {
        &self.id
    }

    fn folder(&self) -> &Path {
        &self.folder
    }

    fn release(&mut self) -> Result<()> {
        if !self.released {
            destroy_snapshot(&self.parent, &self.name)?;
            self.released = true;
        }
        Ok(())
    }
}
