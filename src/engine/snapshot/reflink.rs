//! Copy-on-write clones of the store files, taken under SQLite's own lock
//! (the `reflink` method): for filesystems that clone files (XFS made with
//! reflink, the default since xfsprogs 5.1; btrfs) where no volume
//! snapshot applies, such as XFS straight on a partition.
//!
//! A clone of one file is atomic (`FICLONE`); the set is made consistent by
//! holding SQLite's read lock while the files are cloned. In rollback-journal
//! mode the lock (SHARED) keeps every writer out of the database file, so
//! the database file alone is the committed state and is all that is
//! cloned. In WAL mode a read transaction keeps checkpoints from copying
//! into the database file anything the reader might still need and the WAL
//! from being rewritten under it; the WAL is cloned first, then the
//! database file, and opening the pair replays the WAL.
//!
//! Who does what:
//! - root opens the database folder once (no link followed), makes the
//!   work folder `.persnap-clone-ID` at the top of the same filesystem
//!   (root's, mode 0700), and creates the empty clone files in it;
//! - a thread acting as the owner of the database folder (never root unless
//!   only root can change the folder and those above it) opens the database
//!   through SQLite, takes the read lock with a bounded wait, checks that
//!   the files SQLite holds are the very files in the folder root opened,
//!   clones them into the files root made, and lets go at once;
//! - the backup then copies and verifies from the clones like from any
//!   snapshot, and [`Clones::release`] removes them; a run that was killed
//!   leaves a work folder that the next run's sweep removes.
//!
//! It is never a live copy: where the lock cannot be had within the wait
//! (a correlator in exclusive locking mode, a writer that never lets go),
//! the backup fails and nothing is copied.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::{ActiveSnapshot, SnapshotProvider, TAG};
use crate::error::{Error, Result};
use crate::fsutil::RunLock;
use crate::method::Method;
use crate::volume::{Mount, VolumeInfo};

/// How long the lock may be waited for by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// `XFS_IOC_FSGEOMETRY`: `_IOR('X', 126, struct xfs_fsop_geom)` (256 bytes).
const XFS_IOC_FSGEOMETRY: libc::c_ulong = 0x8100_587e;
/// `XFS_FSOP_GEOM_FLAGS_REFLINK`, in the geometry's `flags` (byte 92).
const XFS_GEOM_FLAGS_REFLINK: u32 = 1 << 20;

/// The name of a run's work folder, at the top of the filesystem.
pub fn name_prefix() -> String {
    format!(".{TAG}-clone-")
}

/// Whether the filesystem holding `folder` can clone files: `None` if it
/// can, else why not, in words that follow "it" ("cannot clone files").
pub fn cannot_clone(folder: &Path) -> Option<String> {
    let dir = match crate::sys::open_dir_nofollow(folder) {
        Ok(dir) => dir,
        Err(e) => return Some(format!("cannot examine {}: {e}", folder.display())),
    };
    // SAFETY: statfs is plain data; fstatfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(dir.as_raw_fd(), &mut st) } != 0 {
        return Some(format!(
            "cannot examine {}: {}",
            folder.display(),
            io::Error::last_os_error()
        ));
    }
    match st.f_type as i64 {
        BTRFS_SUPER_MAGIC => None,
        XFS_SUPER_MAGIC => {
            let mut geometry = [0u8; 256];
            // SAFETY: the ioctl fills the 256-byte version-5 geometry.
            let rc = unsafe {
                libc::ioctl(
                    dir.as_raw_fd(),
                    XFS_IOC_FSGEOMETRY as _,
                    geometry.as_mut_ptr(),
                )
            };
            let flags = u32::from_ne_bytes(geometry[92..96].try_into().expect("4 bytes"));
            if rc == 0 && flags & XFS_GEOM_FLAGS_REFLINK != 0 {
                None
            } else {
                Some("was made without reflink, so it cannot clone files".to_owned())
            }
        }
        _ => Some("cannot clone files".to_owned()),
    }
}

/// What a clone would be of, in words, where the filesystem clones.
pub fn describe(folder: &Path, mount: &Mount) -> Option<String> {
    cannot_clone(folder).is_none().then(|| {
        format!(
            "copy-on-write clone on {} ({}), taken while the database is briefly held still",
            mount.device, mount.fs_type
        )
    })
}

pub struct ReflinkProvider {
    /// The store's name in the folder (`persistence.db`).
    pub store_name: String,
    /// How long the read lock may be waited for.
    pub lock_wait: Duration,
}

impl SnapshotProvider for ReflinkProvider {
    fn method(&self) -> Method {
        Method::Reflink
    }

    fn create(&self, volume: &VolumeInfo, id: &str) -> Result<Box<dyn ActiveSnapshot>> {
        crate::store::validate_store_name(&self.store_name)?;
        let not_here = |reason: String| Error::MethodNotApplicable {
            method: Method::Reflink,
            path: volume.folder.clone(),
            reason,
        };
        if let Some(reason) = cannot_clone(&volume.folder) {
            return Err(not_here(format!(
                "its {} filesystem ({}) {reason}",
                volume.mount.fs_type, volume.mount.device
            )));
        }
        let folder = crate::sys::open_dir_nofollow(&volume.folder).map_err(Error::io(
            "open",
            &volume.folder,
            crate::error::HINT_SOURCE,
        ))?;
        let folder_meta = folder.metadata().map_err(Error::io(
            "examine",
            &volume.folder,
            crate::error::HINT_SOURCE,
        ))?;
        let owner = Owner::of(&folder_meta, &volume.folder).map_err(not_here)?;

        let mut clones = Clones::make(&volume.mount.mount_point, folder_meta.dev(), id)?;
        let names = [self.store_name.clone(), format!("{}-wal", self.store_name)];
        let targets = names
            .iter()
            .map(|name| clones.create(name))
            .collect::<Result<Vec<File>>>()?;
        let db_path = volume.folder.join(&self.store_name);
        let lock_wait = self.lock_wait;
        let held = crate::sys::as_user_on_a_thread(owner.uid, owner.gid, &[owner.gid], || {
            hold_still_and_clone(&db_path, &folder, &names, &targets, lock_wait)
        })
        .map_err(|e| Error::Snapshot {
            action: format!("act as the owner of {}", volume.folder.display()),
            source: e,
            hint: "persnap-helper must run as root.",
        })??;
        drop(targets);
        if !held.wal_cloned {
            clones.remove(&names[1])?;
        }
        clones.held_still = Some(held.held);
        Ok(Box::new(clones))
    }

    fn sweep(&self, mounts: &[Mount]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut seen = HashSet::new();
        for mount in mounts.iter().filter(|m| !m.read_only) {
            if !seen.insert(&mount.mount_point) {
                continue;
            }
            let Ok(entries) = fs::read_dir(&mount.mount_point) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let Some(tag) = name.strip_prefix(&name_prefix()) else {
                    continue;
                };
                if RunLock::is_held(tag) {
                    continue;
                }
                let path = mount.mount_point.join(&name);
                // Only a work folder persnap made: root's, private, a folder.
                let ours = fs::symlink_metadata(&path)
                    .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o077 == 0);
                if !ours {
                    continue;
                }
                fs::remove_dir_all(&path).map_err(|e| Error::Snapshot {
                    action: format!("remove the leftover clones in {}", path.display()),
                    source: e,
                    hint: "Remove that folder by hand (as root).",
                })?;
                removed.push(path.display().to_string());
            }
        }
        Ok(removed)
    }
}

/// Whose rights open the live database: the folder's owner.
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    fn of(meta: &fs::Metadata, folder: &Path) -> std::result::Result<Owner, String> {
        if meta.uid() == 0 {
            // As root, SQLite would follow whatever a folder on the way
            // leads to: only if nobody else can change any of them.
            if let Err(e) = crate::fsutil::admin_only_folder(folder) {
                return Err(format!(
                    "the database folder belongs to root, but it or a folder above it can be changed by other users ({e}); \
                     persnap will not open a database there as root"
                ));
            }
        }
        Ok(Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

/// What holding the database still achieved.
struct Held {
    /// From the moment the lock was had to the moment it was let go.
    held: Duration,
    wal_cloned: bool,
}

/// Open the database at `db_path` through SQLite, take the read lock
/// (waiting at most `lock_wait`), check that SQLite holds the very files
/// `folder` has, clone them into `targets` (the database, its WAL), let go.
/// Runs as the folder's owner.
fn hold_still_and_clone(
    db_path: &Path,
    folder: &File,
    names: &[String; 2],
    targets: &[File],
    lock_wait: Duration,
) -> Result<Held> {
    let sqlite_failed = |e: rusqlite::Error| Error::Tool {
        action: format!("hold {} still with SQLite's read lock", db_path.display()),
        reason: e.to_string(),
        hint: "Check that the database is readable by its folder's owner and not damaged.",
    };
    let conn = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(sqlite_failed)?;
    conn.busy_timeout(lock_wait).map_err(sqlite_failed)?;
    conn.execute_batch("BEGIN").map_err(sqlite_failed)?;
    let asked = Instant::now();
    let locked = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    });
    if let Err(e) = locked {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        return Err(if busy {
            Error::HeldByCorrelator {
                path: db_path.to_owned(),
                waited: asked.elapsed().as_secs_f64(),
            }
        } else {
            sqlite_failed(e)
        });
    }
    let locked_at = Instant::now();
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(sqlite_failed)?;
    let wal = journal_mode.eq_ignore_ascii_case("wal");

    // The files SQLite has open now, and the ones in the folder root
    // opened: the same, or someone swapped a name since.
    let held_by_sqlite = open_files();
    let source = |name: &str| -> Result<Option<File>> {
        match crate::sys::open_beneath(folder, db_path, name) {
            Ok(file) => {
                let meta = file.metadata().map_err(Error::io(
                    "examine",
                    db_path.with_file_name(name),
                    crate::error::HINT_SOURCE,
                ))?;
                if !meta.is_file() || !held_by_sqlite.contains(&(meta.dev(), meta.ino())) {
                    return Err(Error::Refused {
                        field: "source",
                        reason: format!(
                            "{} is not the file SQLite opened under that name (it changed while persnap held the database); nothing was copied",
                            db_path.with_file_name(name).display()
                        ),
                    });
                }
                Ok(Some(file))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(
                "open",
                db_path.with_file_name(name),
                crate::error::HINT_SOURCE,
            )(e)),
        }
    };
    let db = source(&names[0])?.ok_or_else(|| {
        Error::io("open", db_path, crate::error::HINT_SOURCE)(io::ErrorKind::NotFound.into())
    })?;
    let wal_file = if wal { source(&names[1])? } else { None };
    if wal {
        // The lock itself lives in the shared-memory file: it too must be
        // the one in the folder.
        source(&format!("{}-shm", names[0]))?;
    }

    // The WAL before the database: frames a checkpoint copies into the
    // database meanwhile are in the WAL already.
    let clone = |src: &File, dst: &File, name: &str| {
        crate::sys::reflink(src, dst).map_err(|e| Error::Snapshot {
            action: format!("clone {}", db_path.with_file_name(name).display()),
            source: e,
            hint: "The filesystem refused to clone the file; choose another method (persnap plan lists them).",
        })
    };
    if let Some(wal_file) = &wal_file {
        clone(wal_file, &targets[1], &names[1])?;
    }
    clone(&db, &targets[0], &names[0])?;
    conn.execute_batch("COMMIT").map_err(sqlite_failed)?;
    let held = locked_at.elapsed();
    let wal_cloned = wal_file.is_some();
    // SQLite lets go of its files before ours are closed: a POSIX lock
    // goes with the first descriptor of its file a process closes.
    drop(conn);
    drop((db, wal_file));
    Ok(Held { held, wal_cloned })
}

/// Device and inode of every file this process has open.
fn open_files() -> HashSet<(u64, u64)> {
    let Ok(entries) = fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| fs::metadata(e.path()).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// A run's work folder and the clones in it, removed when released or
/// dropped.
pub struct Clones {
    top: File,
    dir: File,
    name: String,
    path: PathBuf,
    files: Vec<String>,
    held_still: Option<Duration>,
    released: bool,
}

impl Clones {
    /// Make the work folder `.persnap-clone-ID` in `top` (the top of the
    /// filesystem, device `dev`): root's, private, opened once.
    fn make(top_path: &Path, dev: u64, id: &str) -> Result<Clones> {
        let name = format!("{}{id}", name_prefix());
        let path = top_path.join(&name);
        let shown = path.display().to_string();
        let failed = |e: io::Error| Error::Snapshot {
            action: format!("make the folder {shown} for the clones"),
            source: e,
            hint: "persnap needs to write at the top of the database's filesystem (as root).",
        };
        let top = crate::sys::open_dir_nofollow(top_path).map_err(failed)?;
        if top.metadata().map_err(failed)?.dev() != dev {
            return Err(Error::MethodNotApplicable {
                method: Method::Reflink,
                path: top_path.to_owned(),
                reason: "the top of the mount is not on the database's filesystem".into(),
            });
        }
        let c = CString::new(name.as_str()).expect("no NUL in a tag");
        // SAFETY: mkdirat and openat on a directory descriptor we hold.
        if unsafe { libc::mkdirat(top.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        let fd = unsafe {
            libc::openat(
                top.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor we own.
        let dir = unsafe { File::from_raw_fd(fd) };
        let clones = Clones {
            top,
            dir,
            name,
            path,
            files: Vec::new(),
            held_still: None,
            released: false,
        };
        let meta = clones.dir.metadata().map_err(failed)?;
        if meta.uid() != 0 || meta.mode() & 0o077 != 0 || meta.dev() != dev {
            return Err(failed(io::Error::from_raw_os_error(libc::EPERM)));
        }
        Ok(clones)
    }

    /// A new, empty file `name` in the work folder, for a clone.
    fn create(&mut self, name: &str) -> Result<File> {
        let c = CString::new(name).map_err(|_| Error::Refused {
            field: "store",
            reason: format!("{name:?} is not a file name"),
        })?;
        // SAFETY: openat on a directory descriptor we hold.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(Error::Snapshot {
                action: format!("create {}", self.path.join(name).display()),
                source: io::Error::last_os_error(),
                hint: "persnap needs to write at the top of the database's filesystem (as root).",
            });
        }
        self.files.push(name.to_owned());
        // SAFETY: a new descriptor we own.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        let c = CString::new(name).expect("checked when created");
        // SAFETY: unlinkat on a directory descriptor we hold.
        if unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::NotFound {
                return Err(Error::Snapshot {
                    action: format!("remove the clone {}", self.path.join(name).display()),
                    source: e,
                    hint: "The next backup or `persnap cleanup` removes it.",
                });
            }
        }
        self.files.retain(|f| f != name);
        Ok(())
    }
}

impl Drop for Clones {
    fn drop(&mut self) {
        // A run that failed before the guard owned it; a failure here
        // leaves a work folder that the next run's sweep removes.
        let _ = self.release();
    }
}

impl ActiveSnapshot for Clones {
    fn id(&self) -> &str {
        self.path.to_str().unwrap_or("clones")
    }

    fn folder(&self) -> &Path {
        &self.path
    }

    fn held_still(&self) -> Option<Duration> {
        self.held_still
    }

    fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        for name in self.files.clone() {
            self.remove(&name)?;
        }
        let c = CString::new(self.name.as_str()).expect("no NUL in a tag");
        // SAFETY: unlinkat on a directory descriptor we hold.
        if unsafe { libc::unlinkat(self.top.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::NotFound {
                return Err(Error::Snapshot {
                    action: format!("remove the folder {}", self.path.display()),
                    source: e,
                    hint: "The next backup or `persnap cleanup` removes it.",
                });
            }
        }
        self.released = true;
        Ok(())
    }
}
