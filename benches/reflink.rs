//! Benchmark: how much a `reflink` backup (a copy-on-write clone taken
//! under SQLite's read lock) disturbs the correlator's commits, side by
//! side with no backup and with `sqlite-online` on the same store in the
//! same run (issue #16).
//!
//!   sudo cargo bench --bench reflink                # 1 GiB, rollback and WAL
//!   sudo PERSNAP_BENCH_SIZES=200 PERSNAP_BENCH_ROUNDS=3 cargo bench --bench reflink
//!
//! Needs root (an XFS loop volume made with reflink, no LVM: where the
//! method is for). For each size and journal mode, a store made by
//! `persnap-loadgen init` with a writer (`persnap-loadgen run`, commits
//! fsynced, flat out) running throughout its measured windows. Each of
//! `PERSNAP_BENCH_ROUNDS` (default 5) rounds measures the writer's worst
//! commit in four windows, in this order:
//! - idle: no backup, as long as the round's reflink backup took (at
//!   least 2 s);
//! - bare clones: `persnap probe --method reflink --test-snapshot` five
//!   times (the database held still and cloned, the clones removed,
//!   nothing copied: the part of a backup only the lock is to blame for);
//! - reflink: `persnap backup --method reflink` into a folder on the root
//!   disk (the whole backup: clone, copy from the clones, verification);
//! - sqlite-online: `persnap backup --method sqlite-online` likewise (the
//!   first round only: in rollback mode it holds the writer off for the
//!   whole copy).
//!
//! Printed: worst commit of each window, reflink / idle (target <= 1.5)
//! and sqlite-online / idle, the backups' wall times, how long each
//! reflink backup held the database still (from its manifest), and how
//! many extents the database file has (`filefrag`): a clone's time grows
//! with them, and every page written after a clone is a new extent.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("The reflink benchmark needs Linux (XFS loop volumes); nothing to do here.");
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
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use crate::common::{LoopVolume, Writer, bin as target_bin, run_ok as run};

    /// An XFS loop volume (reflink on) with a folder for backups beside
    /// it on the root disk; all removed on drop.
    fn place(size_mb: u64) -> LoopVolume {
        let place =
            LoopVolume::made_by(size_mb, &["mkfs.xfs", "-q", "-f", "-m", "reflink=1"], false);
        std::fs::create_dir_all(place.dir.path().join("backups")).unwrap();
        place
    }

    /// `persnap backup` as root; wall time, the set, and the seconds it
    /// held the database still (reflink only).
    fn backup(store: &Path, dest: &Path, method: &str) -> (Duration, Option<f64>) {
        let started = Instant::now();
        let out = Command::new(target_bin("persnap"))
            .args(["backup", "--method", method, "--source"])
            .arg(store)
            .arg("--dest")
            .arg(dest)
            .env("PERSNAP_DATA_DIR", dest.join(".history"))
            .output()
            .unwrap();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let set = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(set.join("manifest.json")).unwrap()).unwrap();
        std::fs::remove_dir_all(&set).unwrap();
        (took, manifest["held_still_secs"].as_f64())
    }

    /// `persnap probe --method reflink --test-snapshot`: the time the
    /// database was held still, in seconds.
    fn bare_clone(store: &Path, history: &Path) -> f64 {
        let out = run(Command::new(target_bin("persnap"))
            .args([
                "probe",
                "--method",
                "reflink",
                "--test-snapshot",
                "--source",
            ])
            .arg(store)
            .env("PERSNAP_DATA_DIR", history));
        let ms = out
            .split("held still for ")
            .nth(1)
            .and_then(|rest| rest.split(" ms").next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no time held still in: {out}"));
        ms / 1000.0
    }

    /// Extents of `file` (filefrag).
    fn extents(file: &Path) -> u64 {
        let out = run(Command::new("filefrag").arg(file));
        out.rsplit(": ")
            .next()
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("filefrag said: {out}"))
    }

    struct Round {
        idle: f64,
        bare: f64,
        bare_held: f64,
        extents: u64,
        reflink: f64,
        reflink_wall: Duration,
        held: f64,
        transactions: u64,
    }

    fn measure(size_mb: u64, mode: &str, rounds: usize) {
        let place = place(size_mb * 2 + 600);
        let store = place.mount.join("apama");
        std::fs::create_dir(&store).unwrap();
        let db = store.join("persistence.db");
        eprintln!("creating a {size_mb} MiB {mode} database…");
        run(Command::new(target_bin("persnap-loadgen"))
            .arg("init")
            .arg(&db)
            .args(["--mode", mode, "--size-mb", &size_mb.to_string()]));
        let dest = place.dir.path().join("backups");
        let mut results = Vec::new();
        let mut online = None;
        let mut window = Duration::from_secs(2);
        for round in 1..=rounds {
            let idle = Writer::start(&db);
            std::thread::sleep(window);
            let idle = idle.stop().max_commit_ms;

            let extents = extents(&db);
            let writer = Writer::start(&db);
            let mut bare_held: f64 = 0.0;
            for _ in 0..5 {
                bare_held = bare_held.max(bare_clone(&store, &dest.join(".history")));
                std::thread::sleep(Duration::from_millis(200));
            }
            let bare = writer.stop().max_commit_ms;

            let writer = Writer::start(&db);
            let (reflink_wall, held) = backup(&store, &dest, "reflink");
            let stats = writer.stop();
            let reflink = stats.max_commit_ms;
            let transactions = stats.transactions;
            window = reflink_wall.max(Duration::from_secs(2));
            let held = held.expect("a reflink backup records the time held still");
            eprintln!(
                "[{size_mb} MiB {mode}] round {round}: {extents} extents; worst commit idle {idle:.1} ms, \
                 bare clones {bare:.1} ms (held still up to {:.2} ms), reflink backup {reflink:.1} ms \
                 (held still {:.2} ms, backup {:.2} s, {transactions} commits)",
                bare_held * 1000.0,
                held * 1000.0,
                reflink_wall.as_secs_f64()
            );
            if online.is_none() {
                let writer = Writer::start(&db);
                let (wall, _) = backup(&store, &dest, "sqlite-online");
                let worst = writer.stop().max_commit_ms;
                eprintln!(
                    "[{size_mb} MiB {mode}] sqlite-online: worst commit {worst:.1} ms, backup {:.2} s",
                    wall.as_secs_f64()
                );
                online = Some((worst, wall, idle));
            }
            results.push(Round {
                idle,
                bare,
                bare_held,
                extents,
                reflink,
                reflink_wall,
                held,
                transactions,
            });
        }
        println!("\n### {size_mb} MiB, {mode}\n");
        println!(
            "| round | extents | worst commit idle | during bare clones | ratio | held still (bare, worst of 5) | during a reflink backup | ratio (<= 1.5) | held still | reflink backup | commits during it |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for (i, r) in results.iter().enumerate() {
            println!(
                "| {} | {} | {:.1} ms | {:.1} ms | {:.2} | {:.2} ms | {:.1} ms | {:.2} | {:.2} ms | {:.2} s | {} |",
                i + 1,
                r.extents,
                r.idle,
                r.bare,
                r.bare / r.idle,
                r.bare_held * 1000.0,
                r.reflink,
                r.reflink / r.idle,
                r.held * 1000.0,
                r.reflink_wall.as_secs_f64(),
                r.transactions
            );
        }
        let mut bare: Vec<f64> = results.iter().map(|r| r.bare / r.idle).collect();
        bare.sort_by(f64::total_cmp);
        println!(
            "\nbare clones / idle: median {:.2}, worst {:.2}",
            bare[bare.len() / 2],
            bare[bare.len() - 1]
        );
        let mut ratios: Vec<f64> = results.iter().map(|r| r.reflink / r.idle).collect();
        ratios.sort_by(f64::total_cmp);
        let mut held: Vec<f64> = results.iter().map(|r| r.held * 1000.0).collect();
        held.sort_by(f64::total_cmp);
        println!(
            "reflink backup / idle: median {:.2}, worst {:.2}; held still: median {:.2} ms, max {:.2} ms",
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1],
            held[held.len() / 2],
            held[held.len() - 1]
        );
        if let Some((worst, wall, idle)) = online {
            println!(
                "sqlite-online (round 1): worst commit {worst:.1} ms = {:.2} × that round's idle {idle:.1} ms; backup {:.2} s",
                worst / idle,
                wall.as_secs_f64()
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
                "SKIP: the benchmark needs root (XFS loop volume); run: sudo cargo bench --bench reflink"
            );
            return;
        }
        let sizes: Vec<u64> = std::env::var("PERSNAP_BENCH_SIZES")
            .unwrap_or_else(|_| "1024".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let rounds: usize = std::env::var("PERSNAP_BENCH_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        for size in sizes {
            for mode in ["rollback", "wal"] {
                measure(size, mode, rounds);
            }
        }
    }
}
