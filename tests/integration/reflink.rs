//! The `reflink` method on real loop volumes with no LVM (needs root):
//! copy-on-write clones taken while SQLite's own read lock holds a live
//! database still. A `persnap-loadgen` writer runs as the database's own
//! user the whole time; every backup is checked with SQLite's integrity
//! check and the workload's invariant. A writer that never lets go is
//! refused within the wait; a filesystem that cannot clone is not offered;
//! a run killed while it waited for the lock leaves a work folder the next
//! run removes.
#![cfg(target_os = "linux")]

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use persnap::history::{History, Outcome};
use persnap::loadgen::Mode;
use persnap::manifest;

const BACKUPS_PER_CASE: usize = 20;
/// The database's own user (the correlator's account in real life).
const OWNER: &str = "daemon";

/// A folder `apama` on `vol`, owned by [`OWNER`], holding a store.
fn owned_store(vol: &LoopVolume, mode: Mode) -> (PathBuf, PathBuf) {
    owned_store_of(vol, mode, 16)
}

/// [`owned_store`] of about `size_mb` MiB.
fn owned_store_of(vol: &LoopVolume, mode: Mode, size_mb: u64) -> (PathBuf, PathBuf) {
    let dir = vol.mount.join("apama");
    std::fs::create_dir(&dir).unwrap();
    let db = make_store(&dir, "persistence.db", mode, size_mb);
    run_ok(
        Command::new("chown")
            .args(["-R", &format!("{OWNER}:{OWNER}")])
            .arg(&dir),
    );
    (dir, db)
}

fn clone_leftovers(vol: &LoopVolume) -> Vec<String> {
    names_with_prefix(&vol.mount, ".persnap-clone-")
}

fn backup(history: &Path, source: &Path, dest: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "backup",
        "--source",
        source.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    persnap(history, &args)
}

/// The set a successful `persnap backup` printed.
fn backup_dir(out: &std::process::Output) -> PathBuf {
    assert!(out.status.success(), "{}", stderr(out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn backups_under_writer(fs: &str, mode: Mode, test: &str) {
    if !require_root(test) {
        return;
    }
    let vol = LoopVolume::new(fs, 400);
    let (store_dir, db) = owned_store(&vol, mode);
    let dest = Destination::new();
    let history_dir = dest.dir.path().join("history");
    // Where no volume snapshot applies (xfs), automatic chooses the clone;
    // on btrfs the snapshot applies and the clone is asked for by name.
    let extra: &[&str] = if fs == "xfs" {
        &[]
    } else {
        &["--method", "reflink"]
    };
    let writer = Writer::start_as(&db, Some(OWNER));
    let mut last = -1;
    let mut held = Vec::new();
    for i in 0..BACKUPS_PER_CASE {
        let out = backup(&history_dir, &store_dir, &dest.backups, extra);
        let set = backup_dir(&out);
        let m = manifest::read(&set).unwrap();
        assert_eq!(m.method, persnap::method::Method::Reflink, "backup {i}");
        assert_eq!(m.verification.integrity, "ok");
        let still = m
            .held_still_secs
            .expect("the manifest records the time held still");
        held.push(still);
        let transfers = check_backup(&set, "persistence.db");
        assert!(transfers > last, "backup {i}: {transfers} after {last}");
        last = transfers;
        assert!(
            clone_leftovers(&vol).is_empty(),
            "clones left after backup {i}"
        );
    }
    let stats = writer.stop();
    let runs = History::at(&history_dir).load().unwrap();
    assert_eq!(runs.len(), BACKUPS_PER_CASE);
    for run in &runs {
        assert_eq!(run.outcome, Outcome::Completed);
        assert!(
            run.held_still_secs.is_some(),
            "history records the time held still"
        );
    }
    held.sort_by(f64::total_cmp);
    eprintln!(
        "{test}: {BACKUPS_PER_CASE} clones consistent; held still median {:.2} ms, max {:.2} ms; \
         writer did {} transactions, worst commit {:.1} ms",
        held[held.len() / 2] * 1000.0,
        held[held.len() - 1] * 1000.0,
        stats.transactions,
        stats.max_commit_ms
    );
    assert!(work_leftovers(&dest.backups).is_empty());
}

#[test]
fn twenty_clones_under_writer_xfs_rollback_journal() {
    backups_under_writer(
        "xfs",
        Mode::Rollback,
        "twenty_clones_under_writer_xfs_rollback_journal",
    );
}

#[test]
fn twenty_clones_under_writer_xfs_wal() {
    backups_under_writer("xfs", Mode::Wal, "twenty_clones_under_writer_xfs_wal");
}

#[test]
fn twenty_clones_under_writer_btrfs_rollback_journal() {
    backups_under_writer(
        "btrfs",
        Mode::Rollback,
        "twenty_clones_under_writer_btrfs_rollback_journal",
    );
}

#[test]
fn twenty_clones_under_writer_btrfs_wal() {
    backups_under_writer("btrfs", Mode::Wal, "twenty_clones_under_writer_btrfs_wal");
}

/// A process holding the database in SQLite's exclusive locking mode (as
/// a correlator configured so would): it never lets go.
struct Exclusive(std::process::Child);

impl Exclusive {
    fn hold(db: &Path) -> Exclusive {
        let mut child = Command::new("setpriv")
            .args([
                &format!("--reuid={OWNER}"),
                &format!("--regid={OWNER}"),
                "--init-groups",
            ])
            .arg(bin("persnap-loadgen"))
            .arg("hold")
            .arg(db)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        Exclusive(child)
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_database_held_in_exclusive_locking_mode_is_refused_within_the_wait_and_nothing_kept() {
    if !require_root(
        "a_database_held_in_exclusive_locking_mode_is_refused_within_the_wait_and_nothing_kept",
    ) {
        return;
    }
    let vol = LoopVolume::new("xfs", 300);
    for mode in [Mode::Rollback, Mode::Wal] {
        let (store_dir, db) = owned_store(&vol, mode);
        let dest = Destination::new();
        let history_dir = dest.dir.path().join("history");
        let holder = Exclusive::hold(&db);
        let started = Instant::now();
        let out = backup(
            &history_dir,
            &store_dir,
            &dest.backups,
            &["--lock-wait", "2"],
        );
        let took = started.elapsed();
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{mode:?}: {said}");
        assert!(
            said.contains("kept") && said.contains("exclusive locking mode"),
            "{said}"
        );
        assert!(
            took < Duration::from_secs(8),
            "{mode:?}: refused only after {took:?}"
        );
        assert!(
            took >= Duration::from_secs(2),
            "{mode:?}: did not wait: {took:?}"
        );
        // Nothing kept, nothing left behind.
        assert!(std::fs::read_dir(&dest.backups).unwrap().next().is_none());
        assert!(clone_leftovers(&vol).is_empty());
        let runs = History::at(&history_dir).load().unwrap();
        assert!(runs.iter().all(|r| r.outcome != Outcome::Completed));
        drop(holder);
        std::fs::remove_dir_all(&store_dir).unwrap();
    }
}

#[test]
fn a_filesystem_that_cannot_clone_is_not_offered() {
    if !require_root("a_filesystem_that_cannot_clone_is_not_offered") {
        return;
    }
    let ext4 = LoopVolume::new("ext4", 100);
    let (dir, _) = owned_store(&ext4, Mode::Rollback);
    let history = tempfile::tempdir().unwrap();
    let probe = persnap(
        history.path(),
        &["probe", "--source", dir.to_str().unwrap()],
    );
    let text = String::from_utf8_lossy(&probe.stdout).into_owned() + &stderr(&probe);
    assert!(!text.contains("Snapshot method: reflink"), "{text}");
    assert!(text.contains("cannot clone files"), "{text}");
    let dest = tempfile::tempdir().unwrap();
    let out = backup(history.path(), &dir, dest.path(), &["--method", "reflink"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot clone files"),
        "{}",
        stderr(&out)
    );
    assert!(clone_leftovers(&ext4).is_empty());

    // XFS made without reflink cannot either.
    let vol = tempfile::Builder::new()
        .prefix("persnap-vol-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let image = vol.path().join("fs.img");
    run_ok(Command::new("truncate").arg("-s300M").arg(&image));
    run_ok(
        Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=0"])
            .arg(&image),
    );
    let mnt = vol.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt),
    );
    let db_dir = mnt.join("apama");
    std::fs::create_dir(&db_dir).unwrap();
    make_store(&db_dir, "persistence.db", Mode::Rollback, 2);
    let probe = persnap(
        history.path(),
        &["probe", "--source", db_dir.to_str().unwrap()],
    );
    let text = String::from_utf8_lossy(&probe.stdout).into_owned() + &stderr(&probe);
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(text.contains("without reflink"), "{text}");
}

#[test]
fn a_root_database_in_a_folder_others_can_change_is_refused() {
    if !require_root("a_root_database_in_a_folder_others_can_change_is_refused") {
        return;
    }
    let vol = LoopVolume::new("xfs", 300);
    let dir = vol.mount.join("apama");
    std::fs::create_dir(&dir).unwrap();
    make_store(&dir, "persistence.db", Mode::Wal, 2);
    // Root's database, but anyone may swap its files: SQLite would follow
    // them as root.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let dest = Destination::new();
    let out = backup(
        &dest.dir.path().join("history"),
        &dir,
        &dest.backups,
        &["--method", "reflink"],
    );
    let said = stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("can be changed by other users"), "{said}");
    assert!(clone_leftovers(&vol).is_empty());
    // Made root's alone again, it is backed up.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = backup(
        &dest.dir.path().join("history"),
        &dir,
        &dest.backups,
        &["--method", "reflink"],
    );
    check_backup(&backup_dir(&out), "persistence.db");
}

#[test]
fn a_run_killed_while_waiting_for_the_lock_leaves_clones_the_next_run_removes() {
    if !require_root("a_run_killed_while_waiting_for_the_lock_leaves_clones_the_next_run_removes") {
        return;
    }
    let vol = LoopVolume::new("xfs", 300);
    let (store_dir, db) = owned_store(&vol, Mode::Rollback);
    let dest = Destination::new();
    let history_dir = dest.dir.path().join("history");
    let holder = Exclusive::hold(&db);
    // In a process group of its own: the run and its helper die together.
    let mut child = Command::new(bin("persnap"))
        .args(["backup", "--source", store_dir.to_str().unwrap()])
        .arg("--dest")
        .arg(&dest.backups)
        .args(["--lock-wait", "60"])
        .env("PERSNAP_DATA_DIR", &history_dir)
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Its work folder exists, marked as persnap's, while it waits for the
    // lock (the run is killed there, not between making and marking it).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !clone_leftovers(&vol)
        .first()
        .is_some_and(|name| marked(&vol.mount.join(name)))
    {
        assert!(Instant::now() < deadline, "no marked work folder appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: a signal to the process group the test started.
    assert_eq!(
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) },
        0
    );
    child.wait().unwrap();
    let left = clone_leftovers(&vol);
    assert_eq!(left.len(), 1, "{left:?}");
    let meta = std::fs::symlink_metadata(vol.mount.join(&left[0])).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (0, 0o700),
        "root's alone"
    );
    drop(holder);
    // The killed run is over once its run lock is free: its helper died
    // with the command (one process group), but the lock holder it started
    // has a session of its own and lets go of what it inherited only when
    // it ends, which under the load of the whole test suite takes a
    // moment. Until then no sweep may touch its folder.
    let tag = left[0].trim_start_matches(".persnap-clone-").to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    while persnap::fsutil::RunLock::is_held(&tag) {
        assert!(Instant::now() < deadline, "the killed run's helper lingers");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Something else with the prefix that persnap did not make stays, even
    // root's and private (someone may rename a root folder there): only a
    // folder with persnap's mark, which only root can set, is removed (an
    // unmarked one only when empty: a run killed before marking it).
    let decoy = vol.mount.join(".persnap-clone-0badf00d");
    std::fs::create_dir(&decoy).unwrap();
    std::fs::set_permissions(&decoy, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(decoy.join("keep"), b"root's").unwrap();

    // The next backup's sweep removes it (or that of another test's run:
    // a sweep covers every mount, so which run says so is not fixed).
    let unmarked = vol.mount.join(".persnap-clone-deadbeef");
    std::fs::create_dir(&unmarked).unwrap();
    std::fs::set_permissions(&unmarked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = backup(&history_dir, &store_dir, &dest.backups, &[]);
    check_backup(&backup_dir(&out), "persistence.db");
    assert!(!vol.mount.join(&left[0]).exists(), "{}", stderr(&out));
    assert!(!unmarked.exists(), "{}", stderr(&out));
    assert_eq!(clone_leftovers(&vol), [".persnap-clone-0badf00d"]);
    assert_eq!(std::fs::read(decoy.join("keep")).unwrap(), b"root's");
}

#[test]
fn a_clone_slowed_by_a_fragmented_file_is_said_with_what_to_do() {
    if !require_root("a_clone_slowed_by_a_fragmented_file_is_said_with_what_to_do") {
        return;
    }
    let vol = LoopVolume::new("xfs", 600);
    let (store_dir, db) = owned_store_of(&vol, Mode::Rollback, 160);
    // Fragment the database as backups do: while a clone shares its
    // blocks, every other page is rewritten (each becomes a piece of its
    // own), then the clone goes.
    let twin = vol.mount.join("twin");
    run_ok(
        Command::new("cp")
            .arg("--reflink=always")
            .arg(&db)
            .arg(&twin),
    );
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&db)
            .unwrap();
        let mut page = vec![0u8; 4096];
        let pages = file.metadata().unwrap().len() / 4096;
        for i in (1..pages).step_by(2) {
            file.read_exact_at(&mut page, i * 4096).unwrap();
            file.write_all_at(&page, i * 4096).unwrap();
        }
        file.sync_all().unwrap();
    }
    std::fs::remove_file(&twin).unwrap();
    let dest = Destination::new();
    let history_dir = dest.dir.path().join("history");
    let out = backup(
        &history_dir,
        &store_dir,
        &dest.backups,
        &["--method", "reflink"],
    );
    let said = stderr(&out);
    check_backup(&backup_dir(&out), "persistence.db");
    assert!(
        said.contains("pieces on disk") && said.contains("xfs_fsr"),
        "{said}"
    );
    let runs = History::at(&history_dir).load().unwrap();
    assert!(
        runs[0]
            .warnings
            .iter()
            .any(|w| w.contains("pieces on disk")),
        "{:?}",
        runs[0].warnings
    );
}

/// Whether a work folder carries persnap's mark (`trusted.persnap`).
fn marked(dir: &Path) -> bool {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let mut value = [0u8; 16];
    // SAFETY: lgetxattr writes at most value.len() bytes into value.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.persnap".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n > 0
}

/// The top folder's owner at work while backups run: every clone work
/// folder that appears is renamed away and replaced by one of the
/// owner's, in which the store's name keeps flipping between a plain file
/// and a FIFO (a FIFO opened for reading with no writer blocks for ever).
struct Swapper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Swapper {
    fn start(top: &Path, header: Vec<u8>, uid: u32, gid: u32) -> Swapper {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (top, flag) = (top.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            // This thread alone acts on files as the owner: its filesystem
            // ids change, and root's powers over files go with them.
            // SAFETY: plain system calls on this thread's credentials.
            unsafe {
                libc::syscall(libc::SYS_setfsgid, gid);
                libc::syscall(libc::SYS_setfsuid, uid);
            }
            let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            let mut swapped = std::collections::HashSet::new();
            let mut fake: Option<(std::ffi::CString, std::ffi::CString)> = None;
            while !flag.load(Ordering::Relaxed) {
                for name in names_with_prefix(&top, ".persnap-clone-") {
                    if name.ends_with(".away") || swapped.contains(&name) {
                        continue;
                    }
                    let work = top.join(&name);
                    if std::fs::rename(&work, top.join(format!("{name}.away"))).is_err() {
                        continue;
                    }
                    swapped.insert(name);
                    std::fs::create_dir(&work).unwrap();
                    std::fs::write(work.join("persistence.db"), &header).unwrap();
                    let fifo = c(&work.join("fifo"));
                    // SAFETY: mkfifo reads the C string.
                    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
                    fake = Some((c(&work.join("persistence.db")), fifo));
                }
                for _ in 0..500 {
                    if let Some((db, fifo)) = &fake {
                        // SAFETY: renameat2 reads the two C strings.
                        unsafe {
                            libc::syscall(
                                libc::SYS_renameat2,
                                libc::AT_FDCWD,
                                db.as_ptr(),
                                libc::AT_FDCWD,
                                fifo.as_ptr(),
                                libc::RENAME_EXCHANGE,
                            );
                        }
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            swapped.len()
        });
        Swapper {
            stop,
            thread: Some(thread),
        }
    }

    /// How many work folders it swapped.
    fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Wait for `child` (leader of its own process group) at most `limit`;
/// kill the group and say `None` if it is still running then.
fn wait_at_most(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            // SAFETY: a signal to the process group the test started.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn uid_of(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        run_ok(Command::new("id").arg(flag).arg(user))
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

#[test]
fn a_work_folder_swapped_for_one_with_a_fifo_neither_hangs_root_nor_is_copied() {
    if !require_root("a_work_folder_swapped_for_one_with_a_fifo_neither_hangs_root_nor_is_copied") {
        return;
    }
    let vol = LoopVolume::new("xfs", 400);
    let (store_dir, db) = owned_store(&vol, Mode::Wal);
    // The filesystem's top folder is the correlator's account's.
    let (uid, gid) = uid_of(OWNER);
    std::os::unix::fs::chown(&vol.mount, Some(uid), Some(gid)).unwrap();
    let header = std::fs::read(&db).unwrap()[..100].to_vec();
    // Root's own backups (the helper copies), and backups for a user as a
    // schedule runs them (root captures, the user's worker copies).
    let (dest, user_dest) = (Destination::new(), Destination::new());
    run_ok(
        Command::new("chown")
            .args(["-R", &format!("{OWNER}:{OWNER}")])
            .arg(user_dest.dir.path()),
    );
    let writer = Writer::start_as(&db, Some(OWNER));
    let swapper = Swapper::start(&vol.mount, header, uid, gid);
    let (mut good, mut refused) = (0, 0);
    for i in 0..50 {
        let (dest, as_user) = if i % 2 == 0 {
            (&dest, vec![])
        } else {
            (&user_dest, vec!["--as-uid".to_owned(), uid.to_string()])
        };
        let mut child = Command::new(bin("persnap"))
            .args(["backup", "--source", store_dir.to_str().unwrap()])
            .arg("--dest")
            .arg(&dest.backups)
            .args(["--method", "reflink"])
            .args(as_user)
            .env("PERSNAP_DATA_DIR", dest.dir.path().join("history"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dest.dir.path().join("said")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let status = wait_at_most(&mut child, Duration::from_secs(60));
        let status = status.unwrap_or_else(|| panic!("backup {i} hung on the swapped folder"));
        if status.success() {
            let mut out = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
            // What was copied is the clones, WAL and all.
            check_backup(Path::new(out.trim()), "persistence.db");
            good += 1;
        } else {
            refused += 1;
            let said = std::fs::read_to_string(dest.dir.path().join("said")).unwrap();
            eprintln!("backup {i} refused: {}", said.trim());
        }
    }
    let swapped = swapper.stop();
    writer.stop();
    eprintln!("{swapped} work folders swapped: {good} backups of the clones, {refused} refused");
    assert!(swapped > 0, "the work folder was never swapped");
    let completed: usize = [&dest, &user_dest]
        .iter()
        .map(|d| {
            let runs = History::at(d.dir.path().join("history")).load().unwrap();
            runs.iter()
                .filter(|r| r.outcome == Outcome::Completed)
                .count()
        })
        .sum();
    assert_eq!(
        completed, good,
        "only the backups checked above are recorded as good"
    );
    assert!(
        good >= 25,
        "the swaps do not keep backups from working: {good} of 50"
    );
}

/// The pid of the `persnap-helper hold-still` holding `db`, once it runs.
fn holder_of(db: &Path) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        (args.get(1) == Some(&&b"hold-still"[..])
            && args.get(2) == Some(&db.as_os_str().as_encoded_bytes()))
        .then_some(pid)
    })
}

#[test]
fn the_lock_holder_can_neither_be_examined_by_its_owner_nor_hang_root_with_its_output() {
    if !require_root(
        "the_lock_holder_can_neither_be_examined_by_its_owner_nor_hang_root_with_its_output",
    ) {
        return;
    }
    let vol = LoopVolume::new("xfs", 300);
    let (store_dir, db) = owned_store(&vol, Mode::Rollback);
    let db = std::fs::canonicalize(db).unwrap();
    let dest = Destination::new();
    // The holder waits for the lock (3 s) while the test looks at it.
    let holder = Exclusive::hold(&db);
    let mut child = Command::new(bin("persnap"))
        .args(["backup", "--source", store_dir.to_str().unwrap()])
        .arg("--dest")
        .arg(&dest.backups)
        .args(["--method", "reflink", "--lock-wait", "3"])
        .env("PERSNAP_DATA_DIR", dest.dir.path().join("history"))
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Some(pid) = holder_of(&db) {
            break pid;
        }
        assert!(Instant::now() < deadline, "no hold-still appeared");
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(300));
    // A process its owner may debug has its /proc entries owned by them;
    // a non-dumpable one's are root's (all but the folder /proc/PID).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let proc_owner = std::fs::metadata(format!("/proc/{pid}/fd")).unwrap().uid();
    // As if its owner had handed its output to a process of theirs that
    // never closes it: a second writer of the pipe root reads.
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/fd/1"))
        .unwrap();
    let started = Instant::now();
    let ended = wait_at_most(&mut child, Duration::from_secs(40));
    let took = started.elapsed();
    drop(held);
    drop(holder);
    let (uid, _) = uid_of(OWNER);
    assert!(
        status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string())),
        "the holder runs as the database's owner: {status}"
    );
    let mut wrong = Vec::new();
    if proc_owner != 0 {
        wrong.push(format!(
            "hold-still is dumpable after exec (its /proc entries are uid {proc_owner}'s): its owner can debug it"
        ));
    }
    match ended {
        None => wrong.push("root waited for ever on the held output pipe".to_owned()),
        Some(status) => assert_eq!(status.code(), Some(3), "refused as held still too long"),
    }
    assert!(wrong.is_empty(), "{wrong:#?} (after {took:?})");
    assert!(std::fs::read_dir(&dest.backups).unwrap().next().is_none());
    assert!(clone_leftovers(&vol).is_empty());
}
