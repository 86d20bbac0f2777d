//! The test kit: real loop-mounted volumes, a real writer process, the
//! package's real binaries, running a command (on a [`Machine`] of its
//! own), and the root gate. One
//! file for every test: the integration tests (`mod common`), the
//! benchmarks and the app's tests (each `#[path]` to this file).
//!
//! Tests that need root call [`require_root`]: outside CI they skip with a
//! printed reason; with `PERSNAP_REQUIRE_ROOT_TESTS=1` (set by `.ci/run`) a
//! skip is a failure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use persnap::history::History;
use persnap::loadgen::{self, Mode, WriterStats};
use persnap::progress::{Level, Phase, Progress};

/// True when the test may go on; prints why and returns false otherwise.
pub fn require_root(test: &str) -> bool {
    require_root_for(test, "loop devices, mounts, snapshots")
}

/// [`require_root`], saying what the test needs root for.
pub fn require_root_for(test: &str, why: &str) -> bool {
    if persnap::fsutil::is_root() {
        return true;
    }
    if std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_some() {
        panic!("{test} needs root, and PERSNAP_REQUIRE_ROOT_TESTS forbids skipping it");
    }
    eprintln!("SKIP {test}: needs root ({why}); run the tests as root or via .ci/run");
    false
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A loop device with a filesystem, mounted in a temporary folder on the
/// root disk; unmounted and detached on drop.
pub struct LoopVolume {
    pub dir: tempfile::TempDir,
    pub device: String,
    pub mount: PathBuf,
}

impl LoopVolume {
    /// `fs` is btrfs, ext4 or xfs.
    pub fn new(fs: &str, size_mb: u64) -> LoopVolume {
        let mkfs = format!("mkfs.{fs}");
        let quiet = if fs == "ext4" { "-F" } else { "-f" };
        LoopVolume::made_by(size_mb, &[&mkfs, "-q", quiet], false)
    }

    /// An image of `size_mb` MiB made by `mkfs` (the command and its
    /// arguments; the device comes last). With `direct_io` the loop device
    /// bypasses the page cache, so that the volume behaves as a partition
    /// of the disk (the benchmarks).
    pub fn made_by(size_mb: u64, mkfs: &[&str], direct_io: bool) -> LoopVolume {
        let dir = tempfile::Builder::new()
            .prefix("persnap-vol-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let image = dir.path().join("fs.img");
        run_ok(
            Command::new("truncate")
                .arg(format!("-s{size_mb}M"))
                .arg(&image),
        );
        let mut losetup = Command::new("losetup");
        losetup.args(["-f", "--show"]);
        if direct_io {
            losetup.arg("--direct-io=on");
        }
        let device = run_ok(losetup.arg(&image));
        run_ok(Command::new(mkfs[0]).args(&mkfs[1..]).arg(&device));
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        run_ok(Command::new("mount").arg(&device).arg(&mount));
        LoopVolume { dir, device, mount }
    }

    /// Create the btrfs subvolume `name` at its top; its path.
    pub fn subvolume(&self, name: &str) -> PathBuf {
        let sub = self.mount.join(name);
        run_ok(
            Command::new("btrfs")
                .args(["subvolume", "create"])
                .arg(&sub),
        );
        sub
    }

    /// A btrfs volume with a subvolume `apama` to hold the store.
    pub fn btrfs_with_subvolume(size_mb: u64) -> (LoopVolume, PathBuf) {
        let vol = LoopVolume::new("btrfs", size_mb);
        let sub = vol.subvolume("apama");
        (vol, sub)
    }

    /// A 300 MiB btrfs volume with a subvolume `name` (the app's tests).
    pub fn btrfs_named(name: &str) -> (LoopVolume, PathBuf) {
        let vol = LoopVolume::new("btrfs", 300);
        let sub = vol.subvolume(name);
        (vol, sub)
    }

    /// Names at the mount's root that look like persnap snapshots.
    pub fn snapshot_leftovers(&self) -> Vec<String> {
        names_with_prefix(&self.mount, ".persnap-snapshot-")
    }
}

impl Drop for LoopVolume {
    fn drop(&mut self) {
        for attempt in 0..20 {
            let ok = Command::new("umount")
                .arg(&self.mount)
                .status()
                .is_ok_and(|s| s.success());
            if ok || attempt == 19 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

pub fn names_with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Folders in `dest` that are unfinished work (`.partial`, scratch).
pub fn work_leftovers(dest: &Path) -> Vec<String> {
    std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") || n.starts_with(".persnap-verify-"))
        .collect()
}

/// Path of a binary of this package: as Cargo built it for an integration
/// test or benchmark, else (the app's own tests) beside the test program.
pub fn bin(name: &str) -> PathBuf {
    let built = match name {
        "persnap" => option_env!("CARGO_BIN_EXE_persnap"),
        "persnap-loadgen" => option_env!("CARGO_BIN_EXE_persnap-loadgen"),
        "persnap-helper" => option_env!("CARGO_BIN_EXE_persnap-helper"),
        other => panic!("unknown binary {other}"),
    };
    built.map(PathBuf::from).unwrap_or_else(|| {
        // target/<profile>/deps/<test program>: the binaries sit one up.
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join(name)
    })
}

/// Create a store of about `size_mb` MiB at `dir/name`.
pub fn make_store(dir: &Path, name: &str, mode: Mode, size_mb: u64) -> PathBuf {
    let db = dir.join(name);
    loadgen::init(&db, mode, size_mb).unwrap();
    db
}

/// A `persnap-loadgen run` process writing transfers into a database.
pub struct Writer {
    child: Option<Child>,
    /// Its output, after the "ready" line: the statistics at the end.
    stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
    stop_file: PathBuf,
    _stop_dir: tempfile::TempDir,
}

impl Writer {
    pub fn start(db: &Path) -> Writer {
        Writer::start_as(db, None)
    }

    /// [`Writer::start`] as the user `user` (a correlator runs as its own
    /// account; needs root).
    pub fn start_as(db: &Path, user: Option<&str>) -> Writer {
        Writer::spawn(db, user, None)
    }

    /// [`Writer::start`] committing `rate` times a second, evenly spaced,
    /// as a correlator persisting on a timer does.
    pub fn start_at_rate(db: &Path, rate: f64) -> Writer {
        Writer::spawn(db, None, Some(rate))
    }

    /// [`Writer::start`] with more `persnap-loadgen run` arguments.
    pub fn start_with(db: &Path, args: &[&str]) -> Writer {
        Writer::spawn_with(db, None, None, args)
    }

    fn spawn(db: &Path, user: Option<&str>, rate: Option<f64>) -> Writer {
        Writer::spawn_with(db, user, rate, &[])
    }

    fn spawn_with(db: &Path, user: Option<&str>, rate: Option<f64>, args: &[&str]) -> Writer {
        let stop_dir = tempfile::tempdir().unwrap();
        let stop_file = stop_dir.path().join("stop");
        let mut cmd = match user {
            Some(user) => {
                // The user must see the stop file appear.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(
                        stop_dir.path(),
                        std::fs::Permissions::from_mode(0o755),
                    )
                    .unwrap();
                }
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .arg("--init-groups")
                    .arg(bin("persnap-loadgen"));
                cmd
            }
            None => Command::new(bin("persnap-loadgen")),
        };
        let mut child = cmd
            .arg("run")
            .arg(db)
            .arg("--stop-file")
            .arg(&stop_file)
            .arg("--ready-after=20")
            .args(rate.map(|r| format!("--rate={r}")))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start writer");
        // Going once it says 20 transfers are committed. (Reading the
        // database to see them would contend for its lock with a writer
        // going flat out, and can starve under load.)
        let (said, heard) = std::sync::mpsc::channel();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let read = stdout.read_line(&mut line);
            let _ = said.send((read.map(|_| line), stdout));
        });
        let (line, stdout) = match heard.recv_timeout(Duration::from_secs(300)) {
            Ok((Ok(line), stdout)) if line.trim() == "ready" => (line, stdout),
            Ok((line, _)) => {
                let status = child.wait();
                panic!("the writer stopped before 20 transfers ({status:?}): {line:?}")
            }
            Err(_) => {
                let _ = child.kill();
                panic!("the writer committed no 20 transfers in 5 minutes")
            }
        };
        drop(line);
        Writer {
            child: Some(child),
            stdout: Some(stdout),
            stop_file,
            _stop_dir: stop_dir,
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    pub fn stop(mut self) -> WriterStats {
        use std::io::Read;
        std::fs::write(&self.stop_file, b"").unwrap();
        let mut stats = String::new();
        self.stdout
            .take()
            .unwrap()
            .read_to_string(&mut stats)
            .unwrap();
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(status.success(), "writer failed: {status}");
        serde_json::from_str(&stats).expect("writer stats")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Check a backup set: copy it to scratch, let SQLite replay, check
/// integrity and the workload invariant. Returns the transfer count.
pub fn check_backup(backup_dir: &Path, store_name: &str) -> i64 {
    consistency(backup_dir, store_name).unwrap_or_else(|e| panic!("{}: {e}", backup_dir.display()))
}

/// Like [`check_backup`], but says what is wrong instead of panicking.
pub fn consistency(backup_dir: &Path, store_name: &str) -> Result<i64, String> {
    let scratch = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(backup_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), scratch.path().join(entry.file_name())).unwrap();
    }
    let db = scratch.path().join(store_name);
    persnap::verify::integrity_check(&db).map_err(|e| e.to_string())?;
    let conn = rusqlite::Connection::open(&db).map_err(|e| e.to_string())?;
    Ok(loadgen::check_invariant(&conn)
        .map_err(|e| format!("invariant broken: {e}"))?
        .transfers)
}

/// Run the CLI with its own history folder.
pub fn persnap(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(bin("persnap"))
        .args(args)
        .env("PERSNAP_DATA_DIR", data_dir)
        .output()
        .unwrap()
}

/// A computer of its own for the command line: its history, registry of
/// protected databases, schedules, logs and staging folder in one
/// temporary folder, and no journal record leaving the test.
pub struct Machine {
    pub dir: tempfile::TempDir,
    /// More environment (a repository, a server's keys).
    pub env: Vec<(String, std::ffi::OsString)>,
}

impl Machine {
    /// In the system's temporary folder.
    pub fn new() -> Machine {
        Machine::in_dir(&std::env::temp_dir())
    }

    /// In `parent` (`/var/tmp`: where other users may be let in).
    pub fn in_dir(parent: &Path) -> Machine {
        let dir = tempfile::Builder::new()
            .prefix("persnap-machine-")
            .tempdir_in(parent)
            .unwrap();
        // Each 0755 whatever the umask: a registry others may change is
        // refused.
        for sub in ["history", "staging", "databases", "units"] {
            let sub = dir.path().join(sub);
            std::fs::create_dir(&sub).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        Machine {
            dir,
            env: Vec::new(),
        }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// The history and settings (`PERSNAP_DATA_DIR`).
    pub fn data(&self) -> PathBuf {
        self.path("history")
    }

    pub fn history(&self) -> History {
        History::at(self.data())
    }

    /// The protected databases (`PERSNAP_REGISTRY_DIR`).
    pub fn registry(&self) -> PathBuf {
        self.path("databases")
    }

    /// Where schedules' systemd units go (`PERSNAP_UNIT_DIR`).
    pub fn units(&self) -> PathBuf {
        self.path("units")
    }

    /// The log file's folder (`PERSNAP_LOG_DIR`).
    pub fn logs(&self) -> PathBuf {
        self.path("logs")
    }

    /// Where journal records would go (`PERSNAP_JOURNAL_SOCKET`): nothing
    /// listens there unless a test binds it.
    pub fn journal_socket(&self) -> PathBuf {
        self.path("journal.socket")
    }

    /// `persnap ARGS` on this machine.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("persnap"));
        cmd.args(args)
            .env("PERSNAP_DATA_DIR", self.data())
            .env("PERSNAP_STAGING_DIR", self.path("staging"))
            .env("PERSNAP_REGISTRY_DIR", self.registry())
            .env("PERSNAP_UNIT_DIR", self.units())
            .env("PERSNAP_LOG_DIR", self.logs())
            .env("PERSNAP_JOURNAL_SOCKET", self.journal_socket())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `persnap ARGS` on this machine, run to its end.
    pub fn persnap(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A progress sink that calls `act` as each phase starts (for injecting
/// faults at a chosen moment of a real backup).
pub struct OnPhase<F: FnMut(Phase)>(pub F);

impl<F: FnMut(Phase)> Progress for OnPhase<F> {
    fn phase(&mut self, phase: Phase) {
        (self.0)(phase)
    }
    fn bytes(&mut self, _: Phase, _: u64, _: u64) {}
    fn log(&mut self, _: Level, _: &str) {}
}

/// A backup location on the root disk (another filesystem than the loop
/// volumes, as real backups are) with its own history.
pub struct Destination {
    pub dir: tempfile::TempDir,
    pub history: History,
    pub backups: PathBuf,
}

impl Destination {
    pub fn new() -> Destination {
        let dir = tempfile::Builder::new()
            .prefix("persnap-dest-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let backups = dir.path().join("backups");
        std::fs::create_dir(&backups).unwrap();
        Destination {
            history: History::at(dir.path().join("history")),
            backups,
            dir,
        }
    }
}

/// A writer keeping the invariant on its own connection, on a thread of
/// the test (the app's tests, which run without the package's binaries).
pub struct ThreadWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl ThreadWriter {
    pub fn start(db: &Path) -> ThreadWriter {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, db) = (std::sync::Arc::clone(&stop), db.to_owned());
        let thread = std::thread::spawn(move || {
            loadgen::run(&db, || flag.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap()
                .transactions
        });
        ThreadWriter {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop it; how many transactions it committed.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}
