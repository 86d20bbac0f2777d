//! Snapshot providers: one file per method, behind one small trait.
//!
//! A provider takes an atomic, read-only image of the volume holding the
//! database folder and hands back an [`ActiveSnapshot`] through which the
//! store files are read. [`SnapshotGuard`] releases it when dropped, so a
//! snapshot never outlives the backup that took it, on error or panic too.
//! Every snapshot carries the persnap tag ([`TAG`]) in its name; a provider's
//! [`SnapshotProvider::sweep`] removes tagged leftovers of runs that were
//! killed before they could clean up, and nothing else.

#[cfg(target_os = "linux")]
pub mod btrfs;
#[cfg(target_os = "linux")]
pub mod lvm;
#[cfg(target_os = "linux")]
pub mod mount;
#[cfg(target_os = "linux")]
pub mod reflink;
pub mod vss;
#[cfg(windows)]
pub mod vss_com;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::method::{Method, MethodChoice};
use crate::store::{Store, StoreFile};
use crate::volume::{Mount, SnapshotSupport, VolumeInfo};

/// The tag every persnap snapshot's name carries.
pub const TAG: &str = "persnap";

/// The longest a clone (`reflink`) may be asked to wait for SQLite's lock.
pub const MAX_LOCK_WAIT_SECS: u64 = 300;

/// A way of taking snapshots.
pub trait SnapshotProvider {
    fn method(&self) -> Method;

    /// Snapshot the volume holding `volume.folder`. `id` is unique per run
    /// and becomes part of the snapshot's name.
    fn create(&self, volume: &VolumeInfo, id: &str) -> Result<Box<dyn ActiveSnapshot>>;

    /// Remove persnap-tagged snapshots left by interrupted runs on any of
    /// `mounts`. Returns a description of each one removed.
    fn sweep(&self, mounts: &[Mount]) -> Result<Vec<String>>;
}

/// A snapshot that exists until [`ActiveSnapshot::release`] is called.
pub trait ActiveSnapshot: Send {
    /// What identifies the snapshot to an administrator (its path or name).
    fn id(&self) -> &str;
    /// The database folder as it appears inside the snapshot.
    fn folder(&self) -> &Path;
    /// Whether the snapshot is still intact after the copy (an LVM snapshot
    /// that overflowed is not). Snapshots that cannot overflow are.
    fn check_valid(&self) -> Result<()> {
        Ok(())
    }
    /// How long the live database was held still for the image (a clone
    /// under SQLite's lock); `None` where nothing was held.
    fn held_still(&self) -> Option<std::time::Duration> {
        None
    }
    /// Something the user should know about this snapshot (plain words).
    fn warning(&self) -> Option<String> {
        None
    }
    /// Refuse store files opened from [`ActiveSnapshot::folder`] that are
    /// not the snapshot's own (a folder someone else can change, looked up
    /// by path again).
    fn check_opened(&self, _opened: &[(crate::store::StoreFile, std::fs::File)]) -> Result<()> {
        Ok(())
    }
    /// The store `store_name` as the snapshot shows it, every file open
    /// for reading. By default it is looked up in
    /// [`ActiveSnapshot::folder`] (no link followed, plain files only) and
    /// checked with [`ActiveSnapshot::check_opened`]; a snapshot in a
    /// folder someone else can rename (the clones) opens its own files
    /// through its descriptors instead, never by path.
    fn open_store(&self, store_name: &str) -> Result<(Store, Vec<(StoreFile, std::fs::File)>)> {
        let image = crate::store::discover(self.folder(), store_name)?;
        let files = crate::store::open_set(&image)?;
        self.check_opened(&files)?;
        Ok((image, files))
    }
    /// Remove the snapshot. Must be safe to call more than once.
    fn release(&mut self) -> Result<()>;
}

/// Attempts to release a snapshot before giving up.
const RELEASE_ATTEMPTS: u32 = 5;

/// Owns an active snapshot and releases it on every path out.
pub struct SnapshotGuard {
    inner: Box<dyn ActiveSnapshot>,
    released: bool,
}

impl SnapshotGuard {
    pub fn new(inner: Box<dyn ActiveSnapshot>) -> Self {
        SnapshotGuard {
            inner,
            released: false,
        }
    }

    pub fn id(&self) -> &str {
        self.inner.id()
    }

    pub fn folder(&self) -> PathBuf {
        self.inner.folder().to_owned()
    }

    pub fn check_valid(&self) -> Result<()> {
        self.inner.check_valid()
    }

    pub fn held_still(&self) -> Option<std::time::Duration> {
        self.inner.held_still()
    }

    pub fn warning(&self) -> Option<String> {
        self.inner.warning()
    }

    pub fn check_opened(&self, opened: &[(crate::store::StoreFile, std::fs::File)]) -> Result<()> {
        self.inner.check_opened(opened)
    }

    /// [`ActiveSnapshot::open_store`]: the store and its files, open.
    pub fn open_store(&self, store_name: &str) -> Result<(Store, Vec<(StoreFile, std::fs::File)>)> {
        self.inner.open_store(store_name)
    }

    /// Release now and report whether that worked; may be retried. If it
    /// never succeeds, dropping the guard tries once more.
    pub fn release(&mut self) -> Result<()> {
        self.inner.release()?;
        self.released = true;
        Ok(())
    }

    /// [`SnapshotGuard::release`], retried briefly (a busy filesystem can
    /// refuse for a moment); the last error if it never works.
    pub fn release_retrying(&mut self) -> Result<()> {
        let mut last = Ok(());
        for attempt in 1..=RELEASE_ATTEMPTS {
            last = self.release();
            if last.is_ok() || attempt == RELEASE_ATTEMPTS {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
        }
        last
    }
}

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        if !self.released {
            // Nothing to report to from here; a failure leaves a tagged
            // leftover that the next run's sweep removes.
            let _ = self.inner.release();
        }
    }
}

/// Which snapshot method applies to `folder` on `mount`, in plain words.
#[cfg(target_os = "linux")]
pub fn support_for(folder: &Path, mount: &Mount) -> SnapshotSupport {
    if mount.fs_type == "btrfs" {
        return match btrfs::support(folder, mount) {
            // A subvolume the mount does not show: clones still work.
            SnapshotSupport::Unavailable { reason } => match reflink::describe(folder, mount) {
                Some(detail) => SnapshotSupport::Available {
                    method: Method::Reflink,
                    detail,
                },
                None => SnapshotSupport::Unavailable { reason },
            },
            available => available,
        };
    }
    if let Some(detail) = lvm::describe(mount) {
        return SnapshotSupport::Available {
            method: Method::Lvm,
            detail,
        };
    }
    if let Some(detail) = reflink::describe(folder, mount) {
        return SnapshotSupport::Available {
            method: Method::Reflink,
            detail,
        };
    }
    SnapshotSupport::Unavailable {
        reason: format!(
            "it is on a {} filesystem ({}, mounted at {}) that is neither btrfs nor an LVM logical volume, and {}",
            mount.fs_type,
            mount.device,
            mount.mount_point.display(),
            reflink::cannot_clone(folder).unwrap_or_else(|| "cannot clone files".into())
        ),
    }
}

/// Decide the method for a request. `Auto` only ever picks a snapshot
/// method that applies; an explicit snapshot method must apply too.
pub fn choose_method(choice: MethodChoice, volume: &VolumeInfo) -> Result<Method> {
    match (choice, &volume.snapshot) {
        (MethodChoice::Explicit(Method::SqliteOnline), _) => Ok(Method::SqliteOnline),
        // Clones work wherever the filesystem makes them, beside a volume
        // snapshot too.
        (MethodChoice::Explicit(Method::Reflink), _) if volume.clones => Ok(Method::Reflink),
        (MethodChoice::Auto, SnapshotSupport::Available { method, .. }) => Ok(*method),
        (MethodChoice::Auto, SnapshotSupport::Unavailable { reason }) => {
            Err(Error::NoSnapshotPossible {
                path: volume.folder.clone(),
                reason: reason.clone(),
            })
        }
        (MethodChoice::Explicit(wanted), SnapshotSupport::Available { method, .. })
            if wanted == *method =>
        {
            Ok(wanted)
        }
        (MethodChoice::Explicit(wanted), support) => Err(Error::MethodNotApplicable {
            method: wanted,
            path: volume.folder.clone(),
            reason: match support {
                SnapshotSupport::Available { method, detail } => {
                    format!("the {method} method applies here ({detail})")
                }
                SnapshotSupport::Unavailable { reason } => reason.clone(),
            },
        }),
    }
}

/// Settings that shape a snapshot.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SnapshotOptions {
    /// Size of a classic LVM snapshot in bytes (`--snapshot-size`); chosen
    /// from the origin and the free space when absent.
    pub size: Option<u64>,
    /// The one deadline for the whole Volume Shadow Copy sequence
    /// (default [`vss::DEFAULT_DEADLINE`]).
    pub vss_deadline: Option<std::time::Duration>,
    /// How long a clone may wait for SQLite's read lock (default
    /// `reflink::DEFAULT_LOCK_WAIT`).
    #[serde(default)]
    pub lock_wait: Option<std::time::Duration>,
}

/// The provider implementing a snapshot method on this platform.
#[cfg(target_os = "linux")]
pub fn provider(
    method: Method,
    options: &SnapshotOptions,
    store_name: &str,
) -> Result<Box<dyn SnapshotProvider>> {
    match method {
        Method::Reflink => Ok(Box::new(reflink::ReflinkProvider {
            store_name: store_name.to_owned(),
            lock_wait: options.lock_wait.unwrap_or(reflink::DEFAULT_LOCK_WAIT),
        })),
        Method::Btrfs => Ok(Box::new(btrfs::BtrfsProvider)),
        Method::Lvm => Ok(Box::new(lvm::LvmProvider {
            snapshot_size: options.size,
        })),
        Method::Vss => Err(Error::MethodUnavailable {
            method,
            reason: "Volume Shadow Copy exists only on Windows",
        }),
        Method::SqliteOnline => Err(Error::MethodUnavailable {
            method,
            reason: "it is not a snapshot method",
        }),
    }
}

/// The provider implementing a snapshot method on this platform.
#[cfg(windows)]
pub fn provider(
    method: Method,
    options: &SnapshotOptions,
    _store_name: &str,
) -> Result<Box<dyn SnapshotProvider>> {
    match method {
        Method::Reflink => Err(Error::MethodUnavailable {
            method,
            reason: "clones on Windows (ReFS) are not supported yet",
        }),
        Method::Vss => Ok(Box::new(vss_com::VssProvider {
            deadline: options.vss_deadline.unwrap_or(vss::DEFAULT_DEADLINE),
        })),
        Method::Btrfs | Method::Lvm => Err(Error::MethodUnavailable {
            method,
            reason: "it exists only on Linux",
        }),
        Method::SqliteOnline => Err(Error::MethodUnavailable {
            method,
            reason: "it is not a snapshot method",
        }),
    }
}

/// Remove persnap-tagged snapshots of interrupted runs on every mounted
/// volume. Returns one line per snapshot removed or problem found.
#[cfg(target_os = "linux")]
pub fn sweep_all() -> Vec<String> {
    let mounts = match crate::volume::read_mounts() {
        Ok(mounts) => mounts,
        Err(e) => return vec![e.to_string()],
    };
    let providers: [Box<dyn SnapshotProvider>; 3] = [
        Box::new(btrfs::BtrfsProvider),
        Box::new(lvm::LvmProvider::default()),
        Box::new(reflink::ReflinkProvider {
            store_name: String::new(),
            lock_wait: reflink::DEFAULT_LOCK_WAIT,
        }),
    ];
    let mut lines = Vec::new();
    for provider in providers {
        match provider.sweep(&mounts) {
            Ok(removed) => lines.extend(
                removed
                    .into_iter()
                    .map(|r| format!("Removed leftover snapshot {r}")),
            ),
            Err(e) => lines.push(format!(
                "Could not remove a leftover {} snapshot: {e}",
                provider.method()
            )),
        }
    }
    lines
}

/// Windows: shadow copies made in the backup context are removed by
/// Windows when the process that made them ends, so none can be left over.
#[cfg(windows)]
pub fn sweep_all() -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(snapshot: SnapshotSupport) -> VolumeInfo {
        let mount = crate::volume::parse_mountinfo("1 0 8:1 / / rw - ext4 /dev/sda1 rw").remove(0);
        VolumeInfo {
            folder: "/db".into(),
            mount,
            snapshot,
            clones: false,
        }
    }

    #[test]
    fn auto_never_falls_back_to_a_live_copy() {
        let none = volume(SnapshotSupport::Unavailable {
            reason: "ext4".into(),
        });
        let err = choose_method(MethodChoice::Auto, &none).unwrap_err();
        assert!(matches!(err, Error::NoSnapshotPossible { .. }));
        assert!(
            err.to_string().contains("sqlite-online"),
            "offers the explicit alternative: {err}"
        );
        assert_eq!(
            choose_method(MethodChoice::Explicit(Method::SqliteOnline), &none).unwrap(),
            Method::SqliteOnline
        );
    }

    #[test]
    fn explicit_method_must_match_the_volume() {
        let btrfs = volume(SnapshotSupport::Available {
            method: Method::Btrfs,
            detail: "subvolume /".into(),
        });
        assert_eq!(
            choose_method(MethodChoice::Auto, &btrfs).unwrap(),
            Method::Btrfs
        );
        assert_eq!(
            choose_method(MethodChoice::Explicit(Method::Btrfs), &btrfs).unwrap(),
            Method::Btrfs
        );
        let err = choose_method(MethodChoice::Explicit(Method::Lvm), &btrfs).unwrap_err();
        assert!(
            err.to_string().contains("the btrfs method applies here"),
            "{err}"
        );
    }
}
