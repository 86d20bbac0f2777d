//! Benchmark: how fast persnap is and how little it disturbs the writer,
//! measured side by side with baselines in the same run.
//!
//!   sudo cargo bench --bench backup                 # 100 MiB and 2 GiB
//!   sudo PERSNAP_BENCH_SIZES=100 cargo bench --bench backup
//!
//! Needs root (btrfs loop volume). For each database size, on a btrfs loop
//! volume with a live invariant-keeping writer (`persnap-loadgen run`):
//! 1. persnap backup wall time / `cp` of the same files from a snapshot of
//!    the same volume (target <= 1.10);
//! 2. the writer's worst commit while persnap backs up / its worst commit in
//!    an equally long window with no backup (target <= 1.5), and the same
//!    for the sqlite-online method;
//! 3. peak RSS of the helper doing the backup (target: flat across sizes);
//! 4. verification time / `sqlite3 DB 'PRAGMA integrity_check'` on the same
//!    copy (target <= 1.1).
//!
//! Backups go to the root disk (another filesystem), as real ones do.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!(
        "The backup benchmark needs Linux (btrfs loop volumes, a writer process); nothing to do here."
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
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::common::{LoopVolume, Writer, bin as target_bin, run_ok as run};

    /// Run the helper directly (root) with one backup request; wall time and
    /// its peak RSS (KiB) from wait4.
    fn helper_backup(store: &Path, dest: &Path, method: &str) -> (Duration, i64, PathBuf) {
        // The helper's own frames, so the benchmark speaks the protocol
        // version it was built with (it once hand-wrote version 1).
        let request = persnap::protocol::Request::Backup {
            source: store.to_owned(),
            dest: dest.to_owned(),
            store_name: "persistence.db".into(),
            method: method.parse().unwrap(),
            options: persnap::protocol::BackupOptions {
                online_timeout_secs: 3600,
                ..Default::default()
            },
            run_as: None,
        };
        let started = Instant::now();
        let mut child = Command::new(target_bin("persnap-helper"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        persnap::protocol::write_frame(&mut stdin, &request).unwrap();
        stdin.flush().unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || std::io::read_to_string(out).unwrap());
        let mut status = 0;
        // wait4 instead of Child::wait: it also reports the child's peak RSS.
        // SAFETY: wait4 on our own child; rusage is plain data.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        std::mem::forget(child); // already reaped
        let elapsed = started.elapsed();
        drop(stdin);
        let events = reader.join().unwrap();
        let done = events.lines().last().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(done).unwrap_or_default();
        let dir = v["result"]["backup_dir"]
            .as_str()
            .unwrap_or_else(|| panic!("backup failed: {done}"));
        (elapsed, usage.ru_maxrss, PathBuf::from(dir))
    }

    fn cp_from_snapshot(vol: &LoopVolume, dest: &Path) -> Duration {
        let snap = vol.mount.join("bench-snap");
        run(Command::new("btrfs")
            .args(["subvolume", "snapshot", "-r"])
            .arg(vol.mount.join("apama"))
            .arg(&snap));
        let target = dest.join("cp-baseline");
        std::fs::create_dir_all(&target).unwrap();
        let files: Vec<PathBuf> = std::fs::read_dir(&snap)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let started = Instant::now();
        run(Command::new("cp").args(&files).arg(&target));
        run(Command::new("sync").arg("-f").arg(&target));
        let elapsed = started.elapsed();
        run(Command::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(&snap));
        std::fs::remove_dir_all(&target).unwrap();
        elapsed
    }

    fn sqlite3_integrity(backup: &Path) -> Duration {
        let scratch = backup.with_extension("sqlite3-check");
        std::fs::create_dir_all(&scratch).unwrap();
        for f in std::fs::read_dir(backup).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), scratch.join(f.file_name())).unwrap();
        }
        let started = Instant::now();
        let out = run(Command::new("sqlite3")
            .arg(scratch.join("persistence.db"))
            .arg("PRAGMA integrity_check"));
        let elapsed = started.elapsed();
        assert_eq!(out, "ok");
        std::fs::remove_dir_all(&scratch).unwrap();
        elapsed
    }

    struct Row {
        size_mb: u64,
        backup: Duration,
        cp: Duration,
        stall_backup: f64,
        stall_idle: f64,
        stall_online: f64,
        rss_kib: i64,
        verify: f64,
        sqlite3: Duration,
    }

    fn measure(size_mb: u64) -> Row {
        let vol = LoopVolume::made_by(size_mb * 3 + 600, &["mkfs.btrfs", "-q", "-f"], false);
        let store = vol.subvolume("apama");
        let db = store.join("persistence.db");
        eprintln!("creating a {size_mb} MiB database…");
        run(Command::new(target_bin("persnap-loadgen"))
            .arg("init")
            .arg(&db)
            .args(["--mode", "rollback", "--size-mb", &size_mb.to_string()]));
        let dest = PathBuf::from(format!(
            "/var/tmp/persnap-bench-dest-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dest).unwrap();

        let cp = cp_from_snapshot(&vol, &dest);
        let writer = Writer::start(&db);
        let (backup, rss_kib, dir) = helper_backup(&store, &dest, "auto");
        let stall_backup = writer.stop().max_commit_ms;
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let verify = manifest["verification"]["seconds"].as_f64().unwrap();
        let sqlite3 = sqlite3_integrity(&dir);
        std::fs::remove_dir_all(&dir).unwrap();

        let idle = Writer::start(&db);
        std::thread::sleep(backup.max(Duration::from_secs(1)));
        let stall_idle = idle.stop().max_commit_ms;

        let writer = Writer::start(&db);
        let (_, _, online_dir) = helper_backup(&store, &dest, "sqlite-online");
        let stall_online = writer.stop().max_commit_ms;
        std::fs::remove_dir_all(&online_dir).unwrap();
        let _ = std::fs::remove_dir_all(&dest);
        Row {
            size_mb,
            backup,
            cp,
            stall_backup,
            stall_idle,
            stall_online,
            rss_kib,
            verify,
            sqlite3,
        }
    }

    pub fn main() {
        if std::env::args().any(|a| a == "--list" || a == "--test") {
            return; // `cargo test --benches` probes benches; nothing to list.
        }
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIP: the benchmark needs root (btrfs loop volume); run: sudo cargo bench --bench backup"
            );
            return;
        }
        let sizes: Vec<u64> = std::env::var("PERSNAP_BENCH_SIZES")
            .unwrap_or_else(|_| "100,2048".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let rows: Vec<Row> = sizes.iter().map(|&s| measure(s)).collect();
        println!(
            "| DB size | backup | cp from snapshot | ratio (<=1.10) | worst commit: backup / idle (<=1.5) | sqlite-online / idle | helper peak RSS | verify | sqlite3 integrity_check | ratio (<=1.1) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} MiB | {:.2} s | {:.2} s | {:.2} | {:.0} / {:.0} ms = {:.2} | {:.0} / {:.0} ms = {:.2} | {} MiB | {:.2} s | {:.2} s | {:.2} |",
                r.size_mb,
                r.backup.as_secs_f64(),
                r.cp.as_secs_f64(),
                r.backup.as_secs_f64() / r.cp.as_secs_f64(),
                r.stall_backup,
                r.stall_idle,
                r.stall_backup / r.stall_idle,
                r.stall_online,
                r.stall_idle,
                r.stall_online / r.stall_idle,
                r.rss_kib / 1024,
                r.verify,
                r.sqlite3.as_secs_f64(),
                r.verify / r.sqlite3.as_secs_f64(),
            );
        }
        if rows.len() >= 2 {
            let (small, big) = (&rows[0], &rows[rows.len() - 1]);
            println!(
                "\npeak RSS {} MiB → {} MiB: ratio {:.2} (target: flat within 10%)",
                small.rss_kib / 1024,
                big.rss_kib / 1024,
                big.rss_kib as f64 / small.rss_kib as f64
            );
        }
    }
}
