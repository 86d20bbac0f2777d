//! Benchmark: hourly backups into a repository (restic format) against
//! backups into folders, side by side in the same run (issue #15).
//!
//!   sudo cargo bench --bench repository        # 1 GiB × 24 backups, then 8 GiB × 2
//!   sudo PERSNAP_BENCH_SIZES=100 PERSNAP_BENCH_ROUNDS=4 PERSNAP_BENCH_RSS_SIZES= \
//!        cargo bench --bench repository        # a quick look
//!
//! Needs root (btrfs loop volume, `persnap backup --method btrfs`). For each
//! size in `PERSNAP_BENCH_SIZES` (MiB, default 1024), a rollback-journal
//! store made by `persnap-loadgen init` on a btrfs loop volume is backed up
//! `PERSNAP_BENCH_ROUNDS` times (default 24). Between two backups
//! `persnap-loadgen run --transactions N` changes about
//! `PERSNAP_BENCH_CHANGE_PERCENT` (default 1) % of the store's pages; the
//! share that really changed is measured by comparing the page hashes of
//! consecutive backups, and N is adjusted from it for the next round. The
//! writer is stopped while the backups run, so every backup of a round
//! holds the same database. Each round, in alternating order, with the page
//! cache dropped (`sync`, `drop_caches`) before each:
//!
//! - `persnap backup --method btrfs --source STORE --dest FOLDERS` (the
//!   baseline: a full verified copy in a folder on the root disk);
//! - `persnap backup --method btrfs --source STORE --repo REPO
//!   --password-file F`, one repository in a folder on the root disk per
//!   chunk size in `PERSNAP_BENCH_CHUNKINGS` (KiB, or `rabin`; default 4,
//!   the product's choice; `4,8` compares fixed 4 and 8 KiB chunks).
//!
//! Printed per round and in sum, against the targets of issue #15:
//! repository size after all backups / one copy of the store (≤ 1.5; the
//! folders take one copy each); each incremental (rounds 2..) repository
//! backup's wall time / the folder backup's (≤ 0.6), with where the
//! repository backup's time goes (from its history record); after the
//! series, `persnap restore` of the newest backup from the repository /
//! from its folder (≤ 1.5), into a protected database's folder owned by
//! `nobody` (the product restores only there), and `persnap verify` of
//! both; the peak RSS of the `persnap` process storing into the repository
//! (≤ 256 MiB; wait4's ru_maxrss, the largest process of its tree).
//!
//! `PERSNAP_BENCH_RSS_SIZES` (default 8192) adds sizes measured with
//! `PERSNAP_BENCH_RSS_ROUNDS` (default 2) backups only and no restore: the
//! peak RSS of a first and an incremental backup at that size, and their
//! times against the folder's.
//!
//! Everything lives in /var/tmp/persnap-bench-repo-PID (the store's loop
//! image, the folders, the repositories, the history, the staging folder,
//! rustic's cache and the protected-database registry, none of them the
//! system's), removed on exit, on panic and on Ctrl-C.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!(
        "The repository benchmark needs Linux (btrfs loop volumes, snapshot backups); nothing to do here."
    );
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(target_os = "linux")]
#[path = "../tests/integration/common/mod.rs"]
mod common;

#[cfg(target_os = "linux")]
mod linux {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use crate::common::{self, bin as target_bin};

    const PASSWORD: &str = "benchmark password, not a secret";
    const MIB: f64 = 1024.0 * 1024.0;
    /// The restore target's owner: the product never restores as root.
    const RESTORE_OWNER: (u32, u32) = (65534, 65534);

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    /// Stop at the next step (the workspace is removed as the panic unwinds).
    fn check_interrupted() {
        if INTERRUPTED.load(Ordering::Relaxed) {
            panic!("interrupted; cleaning up");
        }
    }

    fn run(cmd: &mut Command) -> String {
        check_interrupted();
        common::run_ok(cmd)
    }

    fn env_or(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_owned())
    }

    fn list(name: &str, default: &str) -> Vec<String> {
        env_or(name, default)
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// A child process's wall time, peak RSS and output.
    struct Timed {
        wall: Duration,
        rss_kib: i64,
        stdout: String,
    }

    /// Runs `cmd` to its end; panics with its stderr if it fails.
    fn timed(cmd: &mut Command) -> Timed {
        check_interrupted();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut status = 0;
        // wait4 instead of Child::wait: it also reports the peak RSS (of
        // the child, or of a descendant it reaped, whichever was larger).
        // SAFETY: wait4 on our own child; rusage is plain data.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        assert_eq!(waited, child.id() as i32, "wait4 failed");
        std::mem::forget(child); // already reaped
        let wall = started.elapsed();
        let stdout = out.join().unwrap();
        let stderr = err.join().unwrap();
        let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        assert!(ok, "{cmd:?} failed (status {status}):\n{stderr}");
        Timed {
            wall,
            rss_kib: usage.ru_maxrss,
            stdout: stdout.trim().to_owned(),
        }
    }

    /// Flush and drop the page cache, so every timed step reads from disk.
    fn drop_caches() {
        if env_or("PERSNAP_BENCH_DROP_CACHES", "1") == "0" {
            return;
        }
        run(&mut Command::new("sync"));
        std::fs::write("/proc/sys/vm/drop_caches", b"3\n").expect("drop the page cache");
    }

    /// Disk usage of a file or folder, as `du` counts it (bytes).
    fn du(path: &Path) -> u64 {
        let meta = std::fs::symlink_metadata(path).unwrap();
        let mut total = meta.blocks() * 512;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                total += du(&entry.unwrap().path());
            }
        }
        total
    }

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }

    /// The benchmark's folder and the btrfs loop volume in it; removed
    /// when dropped (also as a panic unwinds).
    struct Workspace {
        dir: PathBuf,
        mnt: PathBuf,
        dev: Option<String>,
    }

    impl Workspace {
        fn new(size_mb: u64) -> Workspace {
            let dir = PathBuf::from(format!(
                "/var/tmp/persnap-bench-repo-{}-{size_mb}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            // `nobody` restores into a folder in here.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let mnt = dir.join("mnt");
            let mut ws = Workspace {
                dir,
                mnt,
                dev: None,
            };
            for sub in ["folders", "history", "staging", "cache", "registry", "mnt"] {
                std::fs::create_dir_all(ws.path(sub)).unwrap();
            }
            std::fs::set_permissions(ws.path("registry"), std::fs::Permissions::from_mode(0o700))
                .unwrap();
            std::fs::write(ws.path("password"), format!("{PASSWORD}\n")).unwrap();
            let img = ws.path("fs.img");
            run(Command::new("truncate")
                .arg(format!("-s{}M", size_mb * 5 / 4 + 1024))
                .arg(&img));
            let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&img));
            ws.dev = Some(dev.clone());
            run(Command::new("mkfs.btrfs").args(["-q", "-f", &dev]));
            run(Command::new("mount").arg(&dev).arg(&ws.mnt));
            run(Command::new("btrfs")
                .args(["subvolume", "create"])
                .arg(ws.store()));
            ws
        }

        fn path(&self, sub: &str) -> PathBuf {
            self.dir.join(sub)
        }

        fn store(&self) -> PathBuf {
            self.mnt.join("apama")
        }

        fn db(&self) -> PathBuf {
            self.store().join("persistence.db")
        }

        /// The CLI with this workspace's history, staging folder, registry
        /// and cache (rustic's too), never the system's.
        fn persnap(&self, args: &[&str]) -> Command {
            let mut cmd = Command::new(target_bin("persnap"));
            cmd.args(args)
                .env("PERSNAP_DATA_DIR", self.path("history"))
                .env("PERSNAP_STAGING_DIR", self.path("staging"))
                .env("PERSNAP_REGISTRY_DIR", self.path("registry"))
                .env("XDG_CACHE_HOME", self.path("cache"))
                .env_remove("PERSNAP_REPOSITORY")
                .env_remove("PERSNAP_PASSWORD_FILE")
                .env_remove("PERSNAP_REPO_CHUNKING");
            cmd
        }

        fn repo_args(&self, repo: &Path) -> Vec<String> {
            vec![
                "--repo".into(),
                repo.display().to_string(),
                "--password-file".into(),
                self.path("password").display().to_string(),
            ]
        }
    }

    impl Drop for Workspace {
        fn drop(&mut self) {
            if let Some(dev) = &self.dev {
                let unmounted = Command::new("umount")
                    .arg(&self.mnt)
                    .status()
                    .is_ok_and(|s| s.success());
                if !unmounted {
                    let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
                }
                let _ = Command::new("losetup").arg("-d").arg(dev).status();
            }
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                eprintln!("could not remove {}: {e}", self.dir.display());
            }
        }
    }

    /// Hashes of each page of a database file.
    fn page_hashes(db: &Path) -> Vec<u64> {
        use std::hash::{Hash, Hasher};
        let mut file = std::fs::File::open(db).unwrap();
        let mut header = [0u8; 18];
        file.read_exact(&mut header).unwrap();
        let page_size = match u16::from_be_bytes([header[16], header[17]]) {
            1 => 65536,
            n => usize::from(n),
        };
        let mut file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(db).unwrap());
        let mut page = vec![0u8; page_size];
        let mut hashes = Vec::new();
        loop {
            match file.read_exact(&mut page) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("{}: {e}", db.display()),
            }
            let mut h = std::collections::hash_map::DefaultHasher::new();
            page.hash(&mut h);
            hashes.push(h.finish());
        }
        hashes
    }

    /// Pages of `now` that differ from `before` (pages added count too).
    fn changed(before: &[u64], now: &[u64]) -> usize {
        now.iter()
            .enumerate()
            .filter(|(i, h)| before.get(*i) != Some(h))
            .count()
    }

    /// A repository in the series.
    struct Repo {
        chunking: String,
        path: PathBuf,
    }

    impl Repo {
        fn label(&self) -> String {
            match self.chunking.parse::<u64>() {
                Ok(kib) => format!("fixed {kib} KiB"),
                Err(_) => self.chunking.clone(),
            }
        }
    }

    /// One repository backup of a round.
    struct RepoBackup {
        wall: Duration,
        rss_kib: i64,
        /// Disk usage of the repository folder afterwards.
        size: u64,
        /// From its history record: storing (rustic's archive) and the
        /// read-back check, in seconds; the rest of the wall time is the
        /// verified copy into the staging folder and the process's start.
        store: f64,
        check: f64,
        bytes_new: u64,
        bytes_stored: u64,
        id: String,
    }

    struct Round {
        transfers: u64,
        pages: usize,
        changed: Option<usize>,
        folder: Duration,
        folder_rss_kib: i64,
        /// Disk usage of this round's folder backup.
        folder_size: u64,
        repos: Vec<RepoBackup>,
    }

    struct Restores {
        folder: Vec<Duration>,
        repo: Vec<Duration>,
        verify_folder: Duration,
        verify_repo: Duration,
    }

    struct Series {
        size_mb: u64,
        repos: Vec<String>,
        rounds: Vec<Round>,
        restores: Option<Restores>,
        load_before: String,
        load_after: String,
    }

    /// A folder `nobody` owns, registered as a protected database's, to
    /// restore into.
    fn restore_target(ws: &Workspace) -> PathBuf {
        let target = ws.path("restore-target");
        std::fs::create_dir(&target).unwrap();
        run(Command::new(target_bin("persnap-loadgen"))
            .arg("init")
            .arg(target.join("persistence.db"))
            .args(["--mode", "rollback", "--size-mb", "1"]));
        for entry in std::fs::read_dir(&target).unwrap() {
            let (uid, gid) = RESTORE_OWNER;
            std::os::unix::fs::chown(entry.unwrap().path(), Some(uid), Some(gid)).unwrap();
        }
        std::os::unix::fs::chown(&target, Some(RESTORE_OWNER.0), Some(RESTORE_OWNER.1)).unwrap();
        run(&mut ws.persnap(&[
            "database",
            "add",
            "bench-restore",
            "--source",
            target.to_str().unwrap(),
        ]));
        target
    }

    /// Removes what a restore moved aside, leaving the restored file.
    fn clear_before_restore(target: &Path) {
        for entry in std::fs::read_dir(target).unwrap() {
            let entry = entry.unwrap();
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("before-restore-")
            {
                std::fs::remove_dir_all(entry.path()).unwrap();
            }
        }
    }

    fn series(size_mb: u64, rounds: usize, chunkings: &[String], restore: bool) -> Series {
        let load_before = loadavg();
        let ws = Workspace::new(size_mb);
        let db = ws.db();
        eprintln!("[{size_mb} MiB] creating the store…");
        let t = Instant::now();
        run(Command::new(target_bin("persnap-loadgen"))
            .arg("init")
            .arg(&db)
            .args(["--mode", "rollback", "--size-mb", &size_mb.to_string()]));
        eprintln!(
            "[{size_mb} MiB] created in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        let repos: Vec<Repo> = chunkings
            .iter()
            .map(|c| {
                let path = ws.path(&format!("repo-{c}"));
                let mut init = ws.persnap(&["repo", "init"]);
                init.args(ws.repo_args(&path));
                if c != "4" {
                    init.env("PERSNAP_REPO_CHUNKING", c);
                }
                run(&mut init);
                Repo {
                    chunking: c.clone(),
                    path,
                }
            })
            .collect();
        let target_percent: f64 = env_or("PERSNAP_BENCH_CHANGE_PERCENT", "1")
            .parse()
            .expect("PERSNAP_BENCH_CHANGE_PERCENT is a number");
        let history = persnap::history::History::at(ws.path("history"));
        let mut transfers = 0u64;
        let mut before: Vec<u64> = Vec::new();
        let mut previous_folder: Option<PathBuf> = None;
        let mut done: Vec<Round> = Vec::new();
        for round in 1..=rounds {
            if round > 1 {
                if transfers == 0 {
                    // About two account pages per transfer, then corrected
                    // by what the pages show.
                    transfers = ((before.len() as f64 * target_percent / 100.0 / 2.0).round()
                        as u64)
                        .max(1);
                }
                let out = run(Command::new(target_bin("persnap-loadgen"))
                    .arg("run")
                    .arg(&db)
                    .args(["--transactions", &transfers.to_string()]));
                let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(stats["transactions"].as_u64(), Some(transfers));
            }
            // Folder first in odd rounds, repositories first in even ones.
            let mut order: Vec<Option<usize>> = std::iter::once(None)
                .chain((0..repos.len()).map(Some))
                .collect();
            if round % 2 == 0 {
                order.reverse();
            }
            let mut folder = None;
            let mut repo_backups: Vec<Option<RepoBackup>> = repos.iter().map(|_| None).collect();
            for which in order {
                drop_caches();
                match which {
                    None => {
                        let t = timed(&mut ws.persnap(&[
                            "backup",
                            "--method",
                            "btrfs",
                            "--source",
                            ws.store().to_str().unwrap(),
                            "--dest",
                            ws.path("folders").to_str().unwrap(),
                        ]));
                        folder = Some(t);
                    }
                    Some(k) => {
                        let repo = &repos[k];
                        let mut cmd = ws.persnap(&[
                            "backup",
                            "--method",
                            "btrfs",
                            "--source",
                            ws.store().to_str().unwrap(),
                        ]);
                        cmd.args(ws.repo_args(&repo.path));
                        let t = timed(&mut cmd);
                        let runs = history.load().unwrap();
                        let stored = runs
                            .iter()
                            .rev()
                            .find_map(|r| r.repository.as_ref().filter(|s| s.snapshot == t.stdout))
                            .unwrap_or_else(|| panic!("no history record of {}", t.stdout));
                        repo_backups[k] = Some(RepoBackup {
                            wall: t.wall,
                            rss_kib: t.rss_kib,
                            size: du(&repo.path),
                            store: stored.seconds - stored.check.seconds,
                            check: stored.check.seconds,
                            bytes_new: stored.bytes_new,
                            bytes_stored: stored.bytes_stored,
                            id: t.stdout.clone(),
                        });
                    }
                }
            }
            let folder = folder.unwrap();
            let folder_dir = PathBuf::from(&folder.stdout);
            let hashes = page_hashes(&folder_dir.join("persistence.db"));
            let changed_pages = (round > 1).then(|| changed(&before, &hashes));
            let written = if round > 1 { transfers } else { 0 };
            if let Some(n) = changed_pages {
                // Aim the next round at the target share.
                let share = n as f64 / hashes.len() as f64;
                let wanted = hashes.len() as f64 * target_percent / 100.0;
                if share > 0.0 {
                    let next = (transfers as f64 * wanted / n as f64).round() as u64;
                    transfers = next.clamp((transfers / 4).max(1), transfers * 4);
                }
            }
            let r = Round {
                transfers: written,
                pages: hashes.len(),
                changed: changed_pages,
                folder: folder.wall,
                folder_rss_kib: folder.rss_kib,
                folder_size: du(&folder_dir),
                repos: repo_backups.into_iter().map(Option::unwrap).collect(),
            };
            print_round(size_mb, round, &r, &repos);
            done.push(r);
            before = hashes;
            // Only the newest folder backup is kept (for the restore);
            // the folders' total is the sum of each one's size.
            if let Some(old) = previous_folder.replace(folder_dir) {
                std::fs::remove_dir_all(old).unwrap();
            }
        }
        let restores = restore.then(|| {
            let folder_backup = previous_folder.clone().unwrap();
            let newest = &done.last().unwrap().repos[0].id;
            let repo = &repos[0];
            let target = restore_target(&ws);
            let restore_folder = || {
                drop_caches();
                let t = timed(&mut ws.persnap(&[
                    "restore",
                    folder_backup.to_str().unwrap(),
                    "--to",
                    target.to_str().unwrap(),
                ]));
                clear_before_restore(&target);
                t.wall
            };
            let restore_repo = || {
                drop_caches();
                let mut cmd = ws.persnap(&["restore", newest, "--to", target.to_str().unwrap()]);
                cmd.args(ws.repo_args(&repo.path));
                let t = timed(&mut cmd);
                clear_before_restore(&target);
                t.wall
            };
            eprintln!("[{size_mb} MiB] restoring the newest backup (folder, repository, repository, folder)…");
            let f1 = restore_folder();
            let r1 = restore_repo();
            let r2 = restore_repo();
            let f2 = restore_folder();
            drop_caches();
            let verify_folder =
                timed(&mut ws.persnap(&["verify", folder_backup.to_str().unwrap()])).wall;
            drop_caches();
            let mut cmd = ws.persnap(&["verify", newest]);
            cmd.args(ws.repo_args(&repo.path));
            let verify_repo = timed(&mut cmd).wall;
            Restores {
                folder: vec![f1, f2],
                repo: vec![r1, r2],
                verify_folder,
                verify_repo,
            }
        });
        Series {
            size_mb,
            repos: repos.iter().map(Repo::label).collect(),
            rounds: done,
            restores,
            load_before,
            load_after: loadavg(),
        }
    }

    fn print_round(size_mb: u64, round: usize, r: &Round, repos: &[Repo]) {
        let changed = match r.changed {
            Some(n) => format!(
                "{n} of {} pages ({:.2} %) after {} transfers",
                r.pages,
                n as f64 * 100.0 / r.pages as f64,
                r.transfers
            ),
            None => format!("{} pages, first backup", r.pages),
        };
        eprintln!(
            "[{size_mb} MiB] round {round}: {changed}; folder {:.2} s",
            r.folder.as_secs_f64()
        );
        for (repo, b) in repos.iter().zip(&r.repos) {
            eprintln!(
                "    repo {}: {:.2} s ({:.2} × folder; store {:.2} s, read-back check {:.2} s), {:.1} MiB new ({:.1} MiB stored), repository {:.1} MiB, peak RSS {} MiB",
                repo.label(),
                b.wall.as_secs_f64(),
                b.wall.as_secs_f64() / r.folder.as_secs_f64(),
                b.store,
                b.check,
                b.bytes_new as f64 / MIB,
                b.bytes_stored as f64 / MIB,
                b.size as f64 / MIB,
                b.rss_kib / 1024
            );
        }
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return f64::NAN;
        }
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }

    fn verdict(met: bool) -> &'static str {
        if met { "met" } else { "MISSED" }
    }

    fn report(s: &Series) {
        let last = s.rounds.last().unwrap();
        let n = s.rounds.len();
        let copy = last.folder_size as f64;
        println!();
        println!(
            "## {} MiB store, {n} backups (load average before {}, after {})",
            s.size_mb, s.load_before, s.load_after
        );
        println!();
        let mut head = "| round | pages changed | folder backup |".to_owned();
        let mut rule = "|---|---|---|".to_owned();
        for label in &s.repos {
            head += &format!(
                " repo ({label}) backup | ratio (<= 0.6) | store / read-back | peak RSS | repository | × one copy |"
            );
            rule += "---|---|---|---|---|---|";
        }
        println!("{head}");
        println!("{rule}");
        for (i, r) in s.rounds.iter().enumerate() {
            let changed = match r.changed {
                Some(c) => format!("{:.2} %", c as f64 * 100.0 / r.pages as f64),
                None => "first".to_owned(),
            };
            let mut line = format!(
                "| {} | {changed} | {:.2} s |",
                i + 1,
                r.folder.as_secs_f64()
            );
            for b in &r.repos {
                line += &format!(
                    " {:.2} s | {:.2} | {:.2} / {:.2} s | {} MiB | {:.0} MiB | {:.2} |",
                    b.wall.as_secs_f64(),
                    b.wall.as_secs_f64() / r.folder.as_secs_f64(),
                    b.store,
                    b.check,
                    b.rss_kib / 1024,
                    b.size as f64 / MIB,
                    b.size as f64 / copy
                );
            }
            println!("{line}");
        }
        println!();
        let folders: u64 = s.rounds.iter().map(|r| r.folder_size).sum();
        let changed: Vec<f64> = s
            .rounds
            .iter()
            .filter_map(|r| r.changed.map(|c| c as f64 * 100.0 / r.pages as f64))
            .collect();
        println!(
            "one copy of the store (the newest folder backup): {:.1} MiB; {n} folder backups: {:.1} MiB = {:.2} × one copy",
            copy / MIB,
            folders as f64 / MIB,
            folders as f64 / copy
        );
        if !changed.is_empty() {
            println!(
                "pages changed between backups: median {:.2} %, min {:.2} %, max {:.2} %",
                median(changed.clone()),
                changed.iter().copied().fold(f64::INFINITY, f64::min),
                changed.iter().copied().fold(0.0, f64::max)
            );
        }
        println!(
            "folder backup: median {:.2} s; its peak RSS {} MiB",
            median(s.rounds.iter().map(|r| r.folder.as_secs_f64()).collect()),
            s.rounds.iter().map(|r| r.folder_rss_kib).max().unwrap() / 1024
        );
        for (k, label) in s.repos.iter().enumerate() {
            let size = last.repos[k].size as f64;
            let ratio = size / copy;
            println!(
                "repository ({label}) after {n} backups: {:.1} MiB = {ratio:.2} × one copy (target <= 1.5: {})",
                size / MIB,
                verdict(ratio <= 1.5)
            );
            let incr: Vec<&Round> = s.rounds.iter().skip(1).collect();
            if !incr.is_empty() {
                let ratios: Vec<f64> = incr
                    .iter()
                    .map(|r| r.repos[k].wall.as_secs_f64() / r.folder.as_secs_f64())
                    .collect();
                let worst = ratios.iter().copied().fold(0.0, f64::max);
                let med = median(ratios);
                println!(
                    "  incremental backups (rounds 2..{n}), repository / folder wall time: median {med:.2}, worst {worst:.2} (target <= 0.6: {})",
                    verdict(worst <= 0.6)
                );
                let wall = median(incr.iter().map(|r| r.repos[k].wall.as_secs_f64()).collect());
                let store = median(incr.iter().map(|r| r.repos[k].store).collect());
                let check = median(incr.iter().map(|r| r.repos[k].check).collect());
                let new = median(incr.iter().map(|r| r.repos[k].bytes_new as f64).collect());
                let stored = median(
                    incr.iter()
                        .map(|r| r.repos[k].bytes_stored as f64)
                        .collect(),
                );
                println!(
                    "  where an incremental repository backup's time goes (medians): {wall:.2} s = {:.2} s verified copy into the staging folder (and start) + {store:.2} s storing + {check:.2} s read-back check; {:.1} MiB new, {:.1} MiB stored",
                    wall - store - check,
                    new / MIB,
                    stored / MIB
                );
                let growth = (size - s.rounds[0].repos[k].size as f64) / (n - 1) as f64;
                println!(
                    "  repository growth per incremental backup: {:.1} MiB (first backup {:.1} MiB)",
                    growth / MIB,
                    s.rounds[0].repos[k].size as f64 / MIB
                );
            }
            let rss = s.rounds.iter().map(|r| r.repos[k].rss_kib).max().unwrap();
            println!(
                "  peak RSS of persnap storing into it: {} MiB (first backup {} MiB, largest incremental {} MiB) (target <= 256 MiB: {})",
                rss / 1024,
                s.rounds[0].repos[k].rss_kib / 1024,
                s.rounds
                    .iter()
                    .skip(1)
                    .map(|r| r.repos[k].rss_kib)
                    .max()
                    .unwrap_or(0)
                    / 1024,
                verdict(rss <= 256 * 1024)
            );
        }
        if let Some(r) = &s.restores {
            let secs = |v: &[Duration]| {
                v.iter()
                    .map(|d| format!("{:.2} s", d.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mean =
                |v: &[Duration]| v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64;
            let ratio = mean(&r.repo) / mean(&r.folder);
            println!(
                "restore of the newest backup: from the folder {} (mean {:.2} s), from the repository ({}) {} (mean {:.2} s): ratio {ratio:.2} (target <= 1.5: {})",
                secs(&r.folder),
                mean(&r.folder),
                s.repos[0],
                secs(&r.repo),
                mean(&r.repo),
                verdict(ratio <= 1.5)
            );
            println!(
                "verify of the newest backup: folder {:.2} s, repository {:.2} s: ratio {:.2}",
                r.verify_folder.as_secs_f64(),
                r.verify_repo.as_secs_f64(),
                r.verify_repo.as_secs_f64() / r.verify_folder.as_secs_f64()
            );
        }
    }

    pub fn main() {
        if std::env::args().any(|a| a == "--list" || a == "--test") {
            return; // `cargo test --benches` probes benches; nothing to list.
        }
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIP: the benchmark needs root (btrfs loop volume, snapshot backups); run: sudo cargo bench --bench repository"
            );
            return;
        }
        for tool in ["mkfs.btrfs", "btrfs", "losetup"] {
            if !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                eprintln!("SKIP: the benchmark needs {tool} (btrfs-progs, util-linux)");
                return;
            }
        }
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&flag)).unwrap();
        }
        std::thread::spawn(move || {
            loop {
                if flag.load(Ordering::Relaxed) {
                    INTERRUPTED.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let sizes: Vec<u64> = list("PERSNAP_BENCH_SIZES", "1024")
            .iter()
            .map(|s| s.parse().expect("PERSNAP_BENCH_SIZES: sizes in MiB"))
            .collect();
        let rss_sizes: Vec<u64> = list("PERSNAP_BENCH_RSS_SIZES", "8192")
            .iter()
            .map(|s| s.parse().expect("PERSNAP_BENCH_RSS_SIZES: sizes in MiB"))
            .collect();
        let rounds: usize = env_or("PERSNAP_BENCH_ROUNDS", "24").parse().unwrap();
        let rss_rounds: usize = env_or("PERSNAP_BENCH_RSS_ROUNDS", "2").parse().unwrap();
        let chunkings = list("PERSNAP_BENCH_CHUNKINGS", "4");
        let mut all = Vec::new();
        for &size in &sizes {
            let s = series(size, rounds, &chunkings, true);
            report(&s);
            all.push(s);
        }
        for &size in &rss_sizes {
            let s = series(size, rss_rounds, &chunkings[..1], false);
            report(&s);
            all.push(s);
        }
        if all.len() >= 2 {
            println!();
            for s in &all {
                let rss = s.rounds.iter().map(|r| r.repos[0].rss_kib).max().unwrap();
                println!(
                    "peak RSS storing {} MiB into the repository ({}): {} MiB (target <= 256 MiB: {})",
                    s.size_mb,
                    s.repos[0],
                    rss / 1024,
                    verdict(rss <= 256 * 1024)
                );
            }
        }
    }
}
