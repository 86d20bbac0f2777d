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
//! from being restarted under it; the WAL is cloned first, then the
//! database file, and opening the pair replays the WAL.
//!
//! Who does what:
//! - root (the helper) opens the database folder once (no link followed),
//!   makes the work folder `.persnap-clone-ID` at the top of the same
//!   filesystem (root's, mode 0700, marked with a `trusted.` attribute only
//!   root can set) and creates the empty clone files in it;
//! - a child process, `persnap-helper hold-still`, running wholly as the
//!   owner of the database folder (never root unless only root can change
//!   that folder and those above it), gets the folder and the clone files as
//!   descriptors, makes itself non-dumpable first thing, opens the
//!   database through SQLite (defensive settings), takes the read lock
//!   with a bounded wait, checks (in the `/proc/self/fdinfo` of SQLite's
//!   own descriptor) that its lock is on the very files in the folder,
//!   clones them and lets go.
//!   SQLite never reads the owner's files inside the root process; a child
//!   that hangs is killed after the wait;
//! - the backup then copies and verifies from the clones like from any
//!   snapshot, opened through the work folder's descriptor, never its path
//!   (they must be the clones themselves, all of them:
//!   [`Clones::open_store`]), and [`Clones::release`] removes them; a run
//!   that was killed leaves a work folder that the next run's sweep removes.
//!
//! It is never a live copy: where the lock cannot be had within the wait
//! (a correlator in exclusive locking mode, a writer that never lets go),
//! the backup fails and nothing is copied.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use super::{ActiveSnapshot, SnapshotProvider, TAG};
use crate::error::{Error, Result};
use crate::fsutil::RunLock;
use crate::method::Method;
use crate::store::{FileRole, SqliteHeader, Store, StoreFile};
use crate::volume::{Mount, VolumeInfo};

/// How long the lock may be waited for by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);
/// A clone that held the database still longer than this is reported.
const SLOW_CLONE: Duration = Duration::from_millis(250);
/// What the holder may take beyond the wait before it is killed.
const HOLDER_MARGIN: Duration = Duration::from_secs(15);

const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// `XFS_IOC_FSGEOMETRY`: `_IOR('X', 126, struct xfs_fsop_geom)` (256 bytes).
const XFS_IOC_FSGEOMETRY: libc::c_ulong = 0x8100_587e;
/// `XFS_FSOP_GEOM_FLAGS_REFLINK`, in the geometry's `flags` (byte 92).
const XFS_GEOM_FLAGS_REFLINK: u32 = 1 << 20;
/// The mark of a work folder persnap made: a `trusted.` attribute, which
/// only root (CAP_SYS_ADMIN) can set, of value `clone RUN` (the run's tag:
/// the folder's name can be changed by the top folder's owner, the mark
/// cannot; leftovers of older versions say `clone` alone).
const MARK: &std::ffi::CStr = c"trusted.persnap";
const MARK_VALUE: &[u8] = b"clone";

/// The descriptors the holder gets: the database folder, then the clone
/// files of the database and of its WAL.
const HOLDER_FOLDER_FD: RawFd = 3;
const HOLDER_DB_FD: RawFd = 4;
const HOLDER_WAL_FD: RawFd = 5;

/// The name of a run's work folder, at the top of the filesystem.
pub fn name_prefix() -> String {
    format!(".{TAG}-clone-")
}

/// Whether the filesystem holding `folder` can clone files: `None` if it
/// can, else why not, in words that follow "it" ("cannot clone files").
pub fn cannot_clone(folder: &Path) -> Option<String> {
    let dir = match crate::sys::open_dir_nofollow(folder) {
        Ok(dir) => dir,
        Err(e) => return Some(format!("cannot be examined ({e})")),
    };
    match fs_magic(&dir) {
        Some(BTRFS_SUPER_MAGIC) => None,
        Some(XFS_SUPER_MAGIC) => {
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

fn fs_magic(file: &File) -> Option<i64> {
    // SAFETY: statfs is plain data; fstatfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } == 0).then_some(st.f_type as i64)
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
        let wal_name = format!("{}-wal", self.store_name);
        let db_target = clones.create(&self.store_name)?;
        let wal_target = clones.create(&wal_name)?;
        let held = run_holder(
            &owner,
            &volume.folder.join(&self.store_name),
            &folder,
            &db_target,
            &wal_target,
            self.lock_wait,
        )?;
        if db_target.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            return Err(Error::Tool {
                action: "clone the database".into(),
                reason: "the clone is empty".into(),
                hint: "Back up again; if this repeats, choose another method.",
            });
        }
        if !held.wal_cloned {
            clones.remove(&wal_name)?;
        }
        clones.held_still = Some(Duration::from_secs_f64(held.held_secs));
        if held.held_secs > SLOW_CLONE.as_secs_f64() {
            clones.warning = Some(format!(
                "The database was held still for {:.0} ms while its files were cloned, because they are in {} pieces on disk \
                 (every backup adds pieces for the pages the correlator writes while it copies), and the correlator's commits \
                 waited that long. Defragment the database while the correlator is stopped (xfs_fsr {} on XFS), or back up \
                 with a volume snapshot (LVM).",
                held.held_secs * 1000.0,
                held.extents,
                volume.folder.join(&self.store_name).display()
            ));
        }
        Ok(Box::new(clones))
    }

    fn sweep(&self, mounts: &[Mount]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        let mut seen = HashSet::new();
        for mount in mounts
            .iter()
            .filter(|m| !m.read_only && matches!(m.fs_type.as_str(), "xfs" | "btrfs"))
        {
            if !seen.insert(&mount.mount_point) {
                continue;
            }
            match sweep_top(&mount.mount_point) {
                Ok(mut done) => removed.append(&mut done),
                Err(e) => failed.push(e),
            }
        }
        match failed.into_iter().next() {
            Some(e) if removed.is_empty() => Err(e),
            _ => Ok(removed),
        }
    }
}

/// Remove the work folders of dead runs at the top of one filesystem,
/// through descriptors: only a folder that is root's, private and carries
/// persnap's mark, only the regular files in it, and the folder itself only
/// if its name still leads to it; an unmarked one (a run killed before it
/// marked its folder) only if it is empty.
fn sweep_top(top_path: &Path) -> Result<Vec<String>> {
    let failed = |path: &Path, e: io::Error| Error::Snapshot {
        action: format!("remove the leftover clones in {}", path.display()),
        source: e,
        hint: "Remove that folder by hand (as root).",
    };
    let Ok(top) = crate::sys::open_dir_nofollow(top_path) else {
        return Ok(Vec::new());
    };
    let Ok(entries) = fs::read_dir(format!("/proc/self/fd/{}", top.as_raw_fd())) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
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
        let path = top_path.join(&name);
        let Ok(dir) = open_dir_at(&top, &name) else {
            continue;
        };
        let Ok(meta) = dir.metadata() else {
            continue;
        };
        if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
            continue;
        }
        let Some(run) = mark_of(&dir) else {
            // A run killed between making its folder and marking it left
            // it empty: removing an empty folder takes nothing with it
            // (the kernel refuses a folder that is not empty).
            if same_file(&stat_at(&top, &name), &meta)
                && unlink_at(&top, &name, libc::AT_REMOVEDIR).is_ok()
            {
                removed.push(path.display().to_string());
            }
            continue;
        };
        // The run its mark names may be alive under another name (the top
        // folder's owner renamed its folder).
        if !run.is_empty() && RunLock::is_held(&run) {
            continue;
        }
        let inside = fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .map_err(|e| failed(&path, e))?;
        for file in inside.flatten() {
            let file_name = file.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if stat_at(&dir, file_name).is_ok_and(|m| m.is_file()) {
                unlink_at(&dir, file_name, 0).map_err(|e| failed(&path, e))?;
            }
        }
        if same_file(&stat_at(&top, &name), &meta) {
            unlink_at(&top, &name, libc::AT_REMOVEDIR).map_err(|e| failed(&path, e))?;
            removed.push(path.display().to_string());
        }
    }
    Ok(removed)
}

/// Whose rights open the live database: the folder's owner, with the
/// groups the system gives them.
struct Owner {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Owner {
    fn of(meta: &fs::Metadata, folder: &Path) -> std::result::Result<Owner, String> {
        let uid = meta.uid();
        if uid == 0 {
            // The holder then runs as root, and SQLite follows whatever a
            // folder on the way leads to: only if nobody else can change
            // any of them.
            if let Err(e) = crate::fsutil::admin_only_folder(folder) {
                return Err(format!(
                    "the database folder belongs to root, but it or a folder above it can be changed by other users ({e}); \
                     persnap will not open a database there as root"
                ));
            }
            return Ok(Owner {
                uid: 0,
                gid: 0,
                groups: vec![0],
            });
        }
        let (_, gid, groups) = crate::sys::user_ids(uid).ok_or_else(|| {
            format!("the database folder's owner (uid {uid}) is not a user this system knows")
        })?;
        if gid == 0 || groups.contains(&0) {
            return Err(format!(
                "the database folder's owner (uid {uid}) is in the root group; persnap will not open the database with root's group"
            ));
        }
        Ok(Owner { uid, gid, groups })
    }
}

/// What the holder reports, as one line of JSON on its standard output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
enum Report {
    Cloned {
        /// From the moment the lock was had to the moment it was let go.
        held_secs: f64,
        wal_cloned: bool,
        /// Pieces (extents) the cloned files are in on disk: a clone's
        /// time grows with them.
        #[serde(default)]
        extents: u64,
    },
    /// The lock could not be had within the wait.
    Busy {
        waited_secs: f64,
    },
    /// A file is not the one SQLite locked (a name was swapped).
    Changed {
        message: String,
    },
    Failed {
        action: String,
        message: String,
    },
}

/// Run `persnap-helper hold-still` as `owner` on the database `db_path`
/// in `folder`, cloning into `db_target` and `wal_target`.
fn run_holder(
    owner: &Owner,
    db_path: &Path,
    folder: &File,
    db_target: &File,
    wal_target: &File,
    lock_wait: Duration,
) -> Result<Held> {
    let exe = std::env::current_exe().map_err(Error::io(
        "find",
        "persnap-helper",
        crate::error::HINT_SOURCE,
    ))?;
    if exe.file_stem().is_none_or(|s| s != "persnap-helper") {
        return Err(Error::MethodUnavailable {
            method: Method::Reflink,
            reason: "it runs only in persnap-helper",
        });
    }
    let start = |e| {
        Error::io(
            "start",
            "persnap-helper hold-still",
            crate::error::HINT_SOURCE,
        )(e)
    };
    let mut cmd = Command::new(&exe);
    cmd.arg("hold-still")
        .arg(db_path)
        .arg(lock_wait.as_millis().to_string())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let given =
        crate::sys::give_descriptors(&mut cmd, &[folder, db_target, wal_target], HOLDER_FOLDER_FD)
            .map_err(start)?;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            // Its own session: no terminal's signals reach it.
            libc::setsid();
            Ok(())
        });
    }
    // (Not dumpable: the holder makes itself so first thing, as execve
    // undoes whatever is set here.)
    crate::sys::run_wholly_as(&mut cmd, owner.uid, owner.gid, owner.groups.clone());
    let mut child = cmd.spawn().map_err(start)?;
    drop(given);
    let out = child.stdout.take().expect("piped");
    let deadline = Instant::now() + lock_wait + HOLDER_MARGIN;
    let (status, text) = watch_holder(&mut child, out, deadline);
    let report: Option<Report> = std::str::from_utf8(&text)
        .ok()
        .and_then(|text| serde_json::from_str(text.trim()).ok());
    match (status, report) {
        (None, _) => Err(Error::Tool {
            action: format!("hold {} still", db_path.display()),
            reason: format!(
                "SQLite did not answer within {} s, so it was stopped",
                (lock_wait + HOLDER_MARGIN).as_secs()
            ),
            hint: "Check that the database's files are plain files; try again, or choose another method.",
        }),
        (Some(_), Some(Report::Busy { waited_secs })) => Err(Error::HeldByCorrelator {
            path: db_path.to_owned(),
            waited: waited_secs,
        }),
        (Some(_), Some(Report::Changed { message })) => Err(Error::Refused {
            field: "source",
            reason: message,
        }),
        (Some(_), Some(Report::Failed { action, message })) => Err(Error::Tool {
            action,
            reason: message,
            hint: "Check that the database is readable by its folder's owner and not damaged.",
        }),
        (Some(status), Some(report @ Report::Cloned { .. })) if status.success() => Ok(report),
        (Some(status), _) => Err(Error::Tool {
            action: format!("hold {} still", db_path.display()),
            reason: format!("persnap-helper hold-still ended ({status}) without saying why"),
            hint: "Back up again; if this repeats, choose another method.",
        }),
    }
    .map(|r| match r {
        Report::Cloned {
            held_secs,
            wal_cloned,
            extents,
        } => Held {
            held_secs,
            wal_cloned,
            extents,
        },
        _ => unreachable!("only Cloned is Ok"),
    })
}

/// The most of the holder's output that is read (its report is one line).
const REPORT_LIMIT: usize = 64 * 1024;

/// Wait for the holder until `deadline` (then kill it), reading its output
/// as it comes without ever waiting on the pipe: a pipe's other end can
/// be held open by a process the holder's owner handed it to, so the end
/// of the output is when the holder ends, not when the pipe closes.
/// Returns how it ended (`None`: killed) and what it said.
fn watch_holder(
    child: &mut std::process::Child,
    mut out: std::process::ChildStdout,
    deadline: Instant,
) -> (Option<std::process::ExitStatus>, Vec<u8>) {
    // SAFETY: fcntl on the pipe descriptor we hold.
    unsafe {
        let flags = libc::fcntl(out.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(out.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    // What is in the pipe now, at most a report's worth per call (a writer
    // that never stops cannot keep this loop here).
    let mut drain = |text: &mut Vec<u8>| {
        let mut read = 0;
        while read < REPORT_LIMIT {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    read += n;
                    let room = REPORT_LIMIT.saturating_sub(text.len());
                    text.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    };
    loop {
        drain(&mut text);
        match child.try_wait() {
            Ok(Some(status)) => {
                // All it wrote before it ended is in the pipe.
                drain(&mut text);
                return (Some(status), text);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return (None, text);
            }
        }
    }
}

struct Held {
    held_secs: f64,
    wal_cloned: bool,
    extents: u64,
}

/// `persnap-helper hold-still DB WAIT_MS`: the holder, started by
/// [`run_holder`] as the database folder's owner with the folder at
/// descriptor 3 and the clone files at 4 and 5. Prints one [`Report`];
/// returns the exit code.
pub fn hold_still(args: &[String]) -> i32 {
    // First of all: execve made this process dumpable again (it runs with
    // its user's own ids), so its owner could attach a debugger to it, or
    // open its descriptors through /proc, while it holds root's.
    // SAFETY: prctl on this process alone.
    let private = unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0) == 0 && libc::prctl(libc::PR_GET_DUMPABLE) == 0
    };
    let report = match (args, std::env::var_os("PKEXEC_UID")) {
        _ if !private => failed(
            "start",
            format!(
                "it could not keep its user from examining it ({})",
                io::Error::last_os_error()
            ),
        ),
        ([db, wait_ms], None) => match wait_ms.parse::<u64>() {
            Ok(ms) => hold_and_clone(Path::new(db), Duration::from_millis(ms)),
            Err(_) => failed("read its arguments", "the wait is not a number"),
        },
        _ => failed(
            "start",
            "hold-still runs only as persnap-helper's own child, with its arguments",
        ),
    };
    let ok = matches!(report, Report::Cloned { .. });
    let line = serde_json::to_string(&report).expect("a report serializes");
    let _ = writeln!(io::stdout(), "{line}");
    if ok { 0 } else { 1 }
}

fn failed(action: &str, message: impl std::fmt::Display) -> Report {
    Report::Failed {
        action: action.to_owned(),
        message: message.to_string(),
    }
}

/// The inherited descriptor `fd`, which must be a folder when `dir`, else
/// a file.
fn inherited(fd: RawFd, dir: bool) -> std::result::Result<File, Report> {
    // SAFETY: fcntl probes whether the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(failed("start", format!("descriptor {fd} was not given")));
    }
    // SAFETY: an open descriptor handed to us for our own use.
    let file = unsafe { File::from_raw_fd(fd) };
    let right = file
        .metadata()
        .is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() });
    if right {
        Ok(file)
    } else {
        Err(failed(
            "start",
            format!("descriptor {fd} is not what it should be"),
        ))
    }
}

fn hold_and_clone(db_path: &Path, lock_wait: Duration) -> Report {
    match hold_and_clone_inner(db_path, lock_wait) {
        Ok(report) | Err(report) => report,
    }
}

fn hold_and_clone_inner(
    db_path: &Path,
    lock_wait: Duration,
) -> std::result::Result<Report, Report> {
    let folder = inherited(HOLDER_FOLDER_FD, true)?;
    let db_target = inherited(HOLDER_DB_FD, false)?;
    let wal_target = inherited(HOLDER_WAL_FD, false)?;
    let name = db_path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| crate::store::validate_store_name(n).is_ok())
        .ok_or_else(|| failed("start", "the database's name is not a store name"))?
        .to_owned();
    let (wal_name, shm_name) = (format!("{name}-wal"), format!("{name}-shm"));
    // What SQLite opens from here on is new.
    let before = open_descriptors();
    // Declared before the connection, so that on every path they are closed
    // after it: a POSIX lock goes with the first descriptor of its file a
    // process closes, and SQLite's lock is this process's.
    let mut sources: Vec<File> = Vec::new();
    let sqlite_failed =
        |e: rusqlite::Error| failed("hold the database still with SQLite's read lock", e);
    let mut conn = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(sqlite_failed)?;
    crate::verify::defensive(&conn).map_err(sqlite_failed)?;
    // SQLite's own busy handler waits longer and longer between tries (up
    // to 100 ms), and a writer that commits back to back leaves gaps far
    // shorter than that: try again every 200 µs until the wait is over.
    let _ = LOCK_DEADLINE.set(Instant::now() + lock_wait);
    conn.busy_handler(Some(try_again_soon))
        .map_err(sqlite_failed)?;
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
            Report::Busy {
                waited_secs: asked.elapsed().as_secs_f64(),
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

    // The lock must be this process's, on the very files in the folder.
    // In rollback mode it is SHARED on the database file; in WAL mode it is
    // the read mark in the shared-memory file, and the database and WAL
    // SQLite reads must be the ones in the folder. Each file is opened here
    // from the folder (kept open until SQLite lets go) and compared.
    let changed = |what: &str| Report::Changed {
        message: format!(
            "{} is not the file SQLite {what} (a name in the folder changed while persnap held the database); nothing was copied",
            db_path.display()
        ),
    };
    let open_source = |n: &str| -> std::result::Result<File, Report> {
        let file = crate::sys::open_beneath(&folder, db_path, n)
            .map_err(|e| failed(&format!("open {n}"), e))?;
        let meta = file
            .metadata()
            .map_err(|e| failed(&format!("examine {n}"), e))?;
        if !meta.is_file() || meta.nlink() != 1 {
            return Err(changed("opened"));
        }
        Ok(file)
    };
    // sources: the database, then in WAL mode the WAL and the shared memory.
    sources.push(open_source(&name)?);
    if wal {
        sources.push(open_source(&wal_name)?);
        sources.push(open_source(&shm_name)?);
    }
    // The descriptors SQLite opened: new since it started, and not these.
    let ours: Vec<String> = sources.iter().map(|f| f.as_raw_fd().to_string()).collect();
    let sqlite_fds: Vec<(String, (u64, u64))> = open_descriptors()
        .into_iter()
        .filter(|(fd, _)| !before.iter().any(|(b, _)| b == fd) && !ours.contains(fd))
        .collect();
    if wal {
        for file in &sources {
            let id = file.metadata().map(|m| file_id(&m)).ok();
            if !id.is_some_and(|id| sqlite_fds.iter().any(|(_, f)| *f == id)) {
                return Err(changed("opened"));
            }
        }
    }
    let locked = if wal { &sources[2] } else { &sources[0] };
    let locked = locked
        .metadata()
        .map(|m| file_id(&m))
        .map_err(|e| failed("examine the locked file", e))?;
    let still_locked = || -> std::result::Result<(), Report> {
        if sqlite_holds_lock(&sqlite_fds, locked) {
            Ok(())
        } else {
            Err(changed("locked"))
        }
    };
    still_locked()?;
    // The WAL before the database: frames a checkpoint copies into the
    // database meanwhile are in the WAL already.
    let clone = |src: &File, dst: &File, n: &str| {
        crate::sys::reflink(src, dst).map_err(|e| failed(&format!("clone {n}"), e))
    };
    if wal {
        clone(&sources[1], &wal_target, &wal_name)?;
    }
    clone(&sources[0], &db_target, &name)?;
    // Still held: nothing let go of the lock meanwhile.
    still_locked()?;
    conn.execute_batch("COMMIT").map_err(sqlite_failed)?;
    let held_secs = locked_at.elapsed().as_secs_f64();
    drop(conn);
    let extents = [&sources[0]]
        .into_iter()
        .chain(wal.then(|| &sources[1]))
        .map(|f| crate::sys::extent_count(f).unwrap_or(0))
        .sum();
    drop(sources);
    Ok(Report::Cloned {
        held_secs,
        wal_cloned: wal,
        extents,
    })
}

/// When the holder stops asking for the lock (one holder per process).
static LOCK_DEADLINE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// SQLite's busy handler for the holder: wait 200 µs and try again, until
/// [`LOCK_DEADLINE`].
fn try_again_soon(_tries: i32) -> bool {
    if LOCK_DEADLINE.get().is_some_and(|d| Instant::now() < *d) {
        std::thread::sleep(Duration::from_micros(200));
        true
    } else {
        false
    }
}

/// Device and inode of a file.
fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn same_file(a: &io::Result<fs::Metadata>, b: &fs::Metadata) -> bool {
    a.as_ref().is_ok_and(|a| file_id(a) == file_id(b))
}

/// Whether this process holds a POSIX lock (SQLite's) on the file `id`
/// through one of the descriptors SQLite opened (`sqlite_fds`). Read from
/// that descriptor's `/proc/self/fdinfo`, which lists only the locks set
/// through it: a few lines, where `/proc/locks` lists every lock on the
/// system, a list any user can make as long as they like.
fn sqlite_holds_lock(sqlite_fds: &[(String, (u64, u64))], id: (u64, u64)) -> bool {
    let me = std::process::id().to_string();
    sqlite_fds
        .iter()
        .filter(|(_, file)| *file == id)
        .any(|(fd, _)| {
            fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).is_ok_and(|info| {
                let locks: Vec<&str> = info
                    .lines()
                    .filter_map(|l| l.strip_prefix("lock:"))
                    .collect();
                !parse_locks(&locks.join("\n"), &me).is_empty()
            })
        })
}

/// From lock lines as `/proc/locks` and `/proc/PID/fdinfo` (after its
/// `lock:`) write them, the file and first byte of each POSIX lock `pid`
/// holds: `1: POSIX  ADVISORY  READ 5434 fe:00:10010808 1073741826 1073742335`.
fn parse_locks(text: &str, pid: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (kind, _, _, owner, id, start) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            if kind != "POSIX" || owner != pid {
                return None;
            }
            Some((id.to_owned(), start.parse().ok()?))
        })
        .collect()
}

/// Every descriptor of this process and the file it is open on.
fn open_descriptors() -> Vec<(String, (u64, u64))> {
    let Ok(entries) = fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let fds: Vec<RawFd> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // Without the listing's own descriptor, closed by now (its number is
    // the next file's, such as the database SQLite opens).
    fds.into_iter()
        // SAFETY: fcntl only asks whether the descriptor is open.
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
        .filter_map(|fd| {
            let meta = fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
            Some((fd.to_string(), file_id(&meta)))
        })
        .collect()
}

fn c_name(name: &str) -> io::Result<CString> {
    if name.contains('/') || name == "." || name == ".." {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    CString::new(name).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`, opening nothing.
fn stat_at(dir: &File, name: &str) -> io::Result<fs::Metadata> {
    c_name(name)?;
    // Through the folder's descriptor; a link is examined, not followed.
    fs::symlink_metadata(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

fn unlink_at(dir: &File, name: &str, flags: libc::c_int) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: unlinkat on a directory descriptor we hold.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn open_dir_at(dir: &File, name: &str) -> io::Result<File> {
    let c = c_name(name)?;
    // SAFETY: openat on a directory descriptor we hold.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The run a work folder's mark names (empty for an older version's
/// mark), `None` if it carries none.
fn mark_of(dir: &File) -> Option<String> {
    let mut value = [0u8; 64];
    // SAFETY: fgetxattr writes at most value.len() bytes.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            MARK.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    let value = &value[..usize::try_from(n).ok()?];
    if value == MARK_VALUE {
        return Some(String::new());
    }
    let run = value.strip_prefix(MARK_VALUE)?.strip_prefix(b" ")?;
    std::str::from_utf8(run).ok().map(str::to_owned)
}

/// A run's work folder and the clones in it, removed when released or
/// dropped.
pub struct Clones {
    top: File,
    dir: File,
    dir_meta: fs::Metadata,
    name: String,
    path: PathBuf,
    /// Each clone's name and (device, inode).
    files: Vec<(String, (u64, u64))>,
    held_still: Option<Duration>,
    /// What to tell the user about this clone (a slow one).
    warning: Option<String>,
    released: bool,
}

impl Clones {
    /// Make the work folder `.persnap-clone-ID` in `top` (the top of the
    /// filesystem, device `dev`): root's, private, marked, opened once.
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
        let c = c_name(&name).map_err(failed)?;
        // SAFETY: mkdirat on a directory descriptor we hold.
        if unsafe { libc::mkdirat(top.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        let dir = open_dir_at(&top, &name).map_err(failed)?;
        let dir_meta = dir.metadata().map_err(failed)?;
        let mut clones = Clones {
            top,
            dir,
            dir_meta,
            name,
            path,
            files: Vec::new(),
            held_still: None,
            warning: None,
            released: false,
        };
        let m = &clones.dir_meta;
        let empty = fs::read_dir(format!("/proc/self/fd/{}", clones.dir.as_raw_fd()))
            .map_err(failed)?
            .next()
            .is_none();
        if m.uid() != 0 || m.mode() & 0o077 != 0 || m.dev() != dev || !empty {
            // Not the folder just made (someone swapped the name): leave
            // it as it is.
            clones.released = true;
            return Err(failed(io::Error::from_raw_os_error(libc::EPERM)));
        }
        let mark = [MARK_VALUE, b" ", id.as_bytes()].concat();
        // SAFETY: fsetxattr reads the value of the length given.
        let marked = unsafe {
            libc::fsetxattr(
                clones.dir.as_raw_fd(),
                MARK.as_ptr(),
                mark.as_ptr().cast(),
                mark.len(),
                0,
            )
        };
        if marked != 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        Ok(clones)
    }

    /// A new, empty file `name` in the work folder, for a clone.
    fn create(&mut self, name: &str) -> Result<File> {
        let failed = |e: io::Error| Error::Snapshot {
            action: format!("create {}", self.path.join(name).display()),
            source: e,
            hint: "persnap needs to write at the top of the database's filesystem (as root).",
        };
        let c = c_name(name).map_err(failed)?;
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
            return Err(failed(io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor we own.
        let file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata().map_err(failed)?;
        self.files.push((name.to_owned(), file_id(&meta)));
        Ok(file)
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        match unlink_at(&self.dir, name, 0) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::Snapshot {
                    action: format!("remove the clone {}", self.path.join(name).display()),
                    source: e,
                    hint: "The next backup or `persnap cleanup` removes it.",
                });
            }
            _ => {}
        }
        self.files.retain(|(f, _)| f != name);
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

    fn warning(&self) -> Option<String> {
        self.warning.clone()
    }

    /// Each file opened is one of the clones, and every clone is opened:
    /// the database without its WAL clone is not what was held still.
    fn check_opened(&self, opened: &[(StoreFile, File)]) -> Result<()> {
        let refused = |reason: String| Error::Refused {
            field: "source",
            reason,
        };
        let mut seen = HashSet::new();
        for (file, handle) in opened {
            let id = handle.metadata().map(|m| file_id(&m)).ok();
            if !self.files.iter().any(|(_, clone)| Some(*clone) == id) {
                return Err(refused(format!(
                    "{} in {} is not the clone persnap made (the folder was changed); nothing was copied",
                    file.name,
                    self.path.display()
                )));
            }
            seen.extend(id);
        }
        if let Some((name, _)) = self.files.iter().find(|(_, clone)| !seen.contains(clone)) {
            return Err(refused(format!(
                "the clone {name} in {} is missing from the files opened (the folder was changed); nothing was copied",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// The clones, opened through the work folder's descriptor (its name
    /// at the top of the filesystem is the top folder owner's to rename
    /// and replace): no link followed, a FIFO never waited for, each one
    /// the very file root created, and all of them.
    fn open_store(&self, store_name: &str) -> Result<(Store, Vec<(StoreFile, File)>)> {
        let mut opened = Vec::new();
        for role in FileRole::ALL {
            let name = format!("{store_name}{}", role.suffix());
            let Some((_, clone)) = self.files.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let path = self.path.join(&name);
            let unreadable = |source| Error::SourceUnreadable {
                path: path.clone(),
                source,
            };
            let handle = match crate::sys::open_beneath(&self.dir, &self.path, &name) {
                Ok(handle) => handle,
                // Said below as a clone missing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(unreadable(e)),
            };
            let meta = handle.metadata().map_err(unreadable)?;
            if !meta.is_file() || file_id(&meta) != *clone {
                return Err(Error::Refused {
                    field: "source",
                    reason: format!(
                        "{name} in {} is not the clone persnap made; nothing was copied",
                        self.path.display()
                    ),
                });
            }
            let size = meta.len();
            opened.push((StoreFile { role, name, size }, handle));
        }
        self.check_opened(&opened)?;
        let (main, handle) = opened
            .first()
            .filter(|(f, _)| f.role == FileRole::Main)
            .ok_or_else(|| Error::StoreNotFound {
                dir: self.path.clone(),
                store_name: store_name.to_owned(),
                listing: "The database was not cloned.".into(),
            })?;
        let main_path = self.path.join(&main.name);
        // Read at an offset: the copy reads the file from its start.
        let mut header = [0u8; 100];
        let mut got = 0;
        while got < header.len() {
            use std::os::unix::fs::FileExt;
            match handle.read_at(&mut header[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::SourceUnreadable {
                        path: main_path,
                        source,
                    });
                }
            }
        }
        let header = SqliteHeader::parse(&header[..got]).map_err(|detail| Error::NotSqlite {
            path: main_path,
            detail,
        })?;
        let store = Store {
            dir: self.path.clone(),
            name: store_name.to_owned(),
            files: opened.iter().map(|(f, _)| f.clone()).collect(),
            header,
        };
        Ok((store, opened))
    }

    fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        for (name, _) in self.files.clone() {
            self.remove(&name)?;
        }
        // Only the folder this run made, if its name still leads there.
        if same_file(&stat_at(&self.top, &self.name), &self.dir_meta) {
            match unlink_at(&self.top, &self.name, libc::AT_REMOVEDIR) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::Snapshot {
                        action: format!("remove the folder {}", self.path.display()),
                        source: e,
                        hint: "The next backup or `persnap cleanup` removes it.",
                    });
                }
                _ => {}
            }
        }
        self.released = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clones of a WAL-mode database, in a real work folder (root's,
    /// marked: needs root).
    fn made_clones(top: &Path) -> Clones {
        made_clones_for(top, "0badc0de")
    }

    fn made_clones_for(top: &Path, run: &str) -> Clones {
        let live = tempfile::tempdir().unwrap();
        let db = live.path().join("persistence.db");
        crate::loadgen::init(&db, crate::loadgen::Mode::Wal, 1).unwrap();
        let dev = fs::metadata(top).unwrap().dev();
        let mut clones = Clones::make(top, dev, run).unwrap();
        clones
            .create("persistence.db")
            .unwrap()
            .write_all(&fs::read(&db).unwrap())
            .unwrap();
        clones
            .create("persistence.db-wal")
            .unwrap()
            .write_all(b"frames")
            .unwrap();
        clones
    }

    #[test]
    fn a_clone_missing_from_what_is_opened_is_refused() {
        if !crate::fsutil::is_root() {
            eprintln!("SKIP a_clone_missing_from_what_is_opened_is_refused: needs root");
            return;
        }
        let top = tempfile::tempdir_in("/var/tmp").unwrap();
        let clones = made_clones(top.path());
        let by_path = |clones: &Clones| {
            let image = crate::store::discover(clones.folder(), "persistence.db").unwrap();
            crate::store::open_set(&image).unwrap()
        };
        clones.check_opened(&by_path(&clones)).unwrap();
        let (store, files) = clones.open_store("persistence.db").unwrap();
        assert_eq!(store.files.len(), 2);
        assert_eq!(store.journal_mode(), crate::store::JournalMode::Wal);
        assert_eq!(files[1].0.size, 6);
        // The WAL clone goes after the clone (or a second swap of the
        // folder hid it when the files were looked up): the database
        // alone would be a backup without its committed WAL.
        fs::remove_file(clones.folder().join("persistence.db-wal")).unwrap();
        let err = clones
            .check_opened(&by_path(&clones))
            .unwrap_err()
            .to_string();
        assert!(err.contains("clone persistence.db-wal in"), "{err}");
        let err = clones.open_store("persistence.db").unwrap_err().to_string();
        assert!(err.contains("clone persistence.db-wal in"), "{err}");
    }

    #[test]
    fn a_live_runs_work_folder_renamed_is_not_swept() {
        if !crate::fsutil::is_root() {
            eprintln!("SKIP a_live_runs_work_folder_renamed_is_not_swept: needs root");
            return;
        }
        let top = tempfile::tempdir_in("/var/tmp").unwrap();
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let _alive = RunLock::acquire(&run).unwrap();
        let clones = made_clones_for(top.path(), &run);
        // The top folder's owner gives it a name no live run has.
        fs::rename(
            clones.folder(),
            top.path().join(format!("{}{run}.away", name_prefix())),
        )
        .unwrap();
        assert_eq!(sweep_top(top.path()).unwrap(), Vec::<String>::new());
        assert!(stat_at(&clones.dir, "persistence.db").is_ok());
        clones.open_store("persistence.db").unwrap();
    }

    #[test]
    fn a_lock_is_found_only_through_the_descriptor_that_set_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("persistence.db");
        fs::write(&path, b"x").unwrap();
        let (locker, other) = (File::open(&path).unwrap(), File::open(&path).unwrap());
        let id = file_id(&locker.metadata().unwrap());
        let fds = |f: &File| vec![(f.as_raw_fd().to_string(), id)];
        assert!(!sqlite_holds_lock(&fds(&locker), id), "no lock yet");
        // SQLite's SHARED lock: a read lock on the shared byte range.
        // SAFETY: flock is plain data; fcntl reads it.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_RDLCK as _;
        lock.l_whence = libc::SEEK_SET as _;
        lock.l_start = 0x4000_0002;
        lock.l_len = 510;
        assert_eq!(
            unsafe { libc::fcntl(locker.as_raw_fd(), libc::F_SETLK, &lock) },
            0
        );
        assert!(sqlite_holds_lock(&fds(&locker), id));
        assert!(!sqlite_holds_lock(&fds(&other), id), "not set through it");
        assert!(
            !sqlite_holds_lock(&fds(&locker), (id.0, id.1 + 1)),
            "another file"
        );
    }

    #[test]
    fn locks_are_read_for_this_process_only() {
        let text = "1: POSIX  ADVISORY  READ 5434 fe:00:10010813 123 123\n\
                    2: POSIX  ADVISORY  READ 999 fe:00:77 128 128\n\
                    3: FLOCK  ADVISORY  WRITE 5434 fe:00:55 0 EOF\n\
                    4: POSIX  ADVISORY  READ 5434 103:02:42 1073741826 1073742335\n\
                    5: -> POSIX  ADVISORY  WRITE 5434 fe:00:66 0 EOF\n";
        assert_eq!(
            parse_locks(text, "5434"),
            [
                ("fe:00:10010813".to_owned(), 123),
                ("103:02:42".to_owned(), 1073741826)
            ]
        );
    }
}
