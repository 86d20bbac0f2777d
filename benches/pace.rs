//! Benchmark: how much a backup holds up the correlator's commits on the
//! disk the database lives on, gentle against fast, side by side with
//! what no backup avoids and with the vendor's procedure by hand, in one
//! run (issue #17).
//!
//!   sudo cargo bench --bench pace
//!   sudo PERSNAP_BENCH_SIZE=600 PERSNAP_BENCH_ROUNDS=2 PERSNAP_BENCH_SHARES=20,40,60,80,100 cargo bench --bench pace
//!
//! Needs root. One disk: a btrfs loop volume (direct I/O, so it behaves
//! as a partition) whose image lies on the root disk holds a rollback-journal store made by `persnap-loadgen init`
//! (`PERSNAP_BENCH_SIZE` MiB, default 600), and the backups go to a folder
//! on the root disk too. A writer (`persnap-loadgen run --rate 100`: 100
//! transfers a second, each commit fsynced, as a correlator persisting on
//! a timer) runs through each window; after `sync` and 3 s of quiet, a
//! window is 1 s of writer alone,
//! the thing measured `PERSNAP_BENCH_REPEAT` times (default 3) with 1 s
//! between, and 1 s more. Each of `PERSNAP_BENCH_ROUNDS` rounds (default
//! 2) measures these windows, in this order:
//! - idle: no backup, as long as the round's gentle window;
//! - bare snapshot: `btrfs subvolume snapshot -r` and `delete`, nothing
//!   copied (what every backup of this method does);
//! - snapshot kept: the same, the snapshot kept as long as a gentle
//!   backup's copy keeps it (half its time), nothing copied: what btrfs
//!   itself costs the writer while a snapshot shares its blocks;
//! - gentle: `persnap backup --pace gentle` (the default);
//! - fast: `persnap backup --pace fast`;
//! - cp: the vendor's procedure by hand: snapshot, `cp` the store files
//!   out of it, `sync -f`, delete the snapshot;
//! - the curve: `persnap backup --pace N%` for each share in
//!   `PERSNAP_BENCH_SHARES` (default 20,40,60,80,100).
//!
//! Printed: per window, the writer's worst and 99th-percentile commit
//! (over all rounds) and the mean wall time of one backup, then the
//! targets: gentle worst / bare-snapshot worst (<= 1.5), gentle time /
//! fast time (<= 2.0), fast / cp, both in time and in worst commit
//! (<= 1.0).

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("The pace benchmark needs Linux (btrfs loop volumes); nothing to do here.");
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

    /// A btrfs loop volume whose image is on the root disk (direct I/O:
    /// it behaves as a partition of the root disk, not as a file in its
    /// page cache), with the store's subvolume, and a folder for backups on
    /// the root disk; all removed on drop.
    struct Place(LoopVolume);

    impl Place {
        fn new(size_mb: u64) -> Place {
            let vol = LoopVolume::made_by(size_mb * 3 + 600, &["mkfs.btrfs", "-q", "-f"], true);
            std::fs::create_dir_all(vol.dir.path().join("backups")).unwrap();
            vol.subvolume("apama");
            Place(vol)
        }

        fn store(&self) -> PathBuf {
            self.0.mount.join("apama")
        }

        fn backups(&self) -> PathBuf {
            self.0.dir.path().join("backups")
        }
    }

    /// `persnap backup` as root at `pace`; its wall time.
    fn backup(place: &Place, pace: &str) -> Duration {
        let started = Instant::now();
        let out = Command::new(target_bin("persnap"))
            .args(["backup", "--method", "btrfs", "--pace", pace, "--source"])
            .arg(place.store())
            .arg("--dest")
            .arg(place.backups())
            .env("PERSNAP_DATA_DIR", place.0.dir.path().join("history"))
            .output()
            .unwrap();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "{pace}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let set = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(set.join("manifest.json").is_file(), "{set:?}");
        std::fs::remove_dir_all(&set).unwrap();
        took
    }

    fn snapshot(place: &Place) -> PathBuf {
        let snap = place.0.mount.join("bench-snap");
        run(Command::new("btrfs")
            .args(["subvolume", "snapshot", "-r"])
            .arg(place.store())
            .arg(&snap));
        snap
    }

    fn delete(snap: &Path) {
        run(Command::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(snap));
    }

    /// A snapshot taken, kept for `hold`, and deleted; nothing copied.
    fn bare(place: &Place, hold: Duration) -> Duration {
        let started = Instant::now();
        let snap = snapshot(place);
        std::thread::sleep(hold);
        delete(&snap);
        started.elapsed()
    }

    /// Let the disk settle between windows: what one window wrote is on
    /// the disk, and the filesystems' own background work is done.
    fn settle() {
        run(&mut Command::new("sync"));
        std::thread::sleep(Duration::from_secs(3));
    }

    /// The vendor's procedure by hand: snapshot, cp, sync, delete.
    fn by_hand(place: &Place) -> Duration {
        let started = Instant::now();
        let snap = snapshot(place);
        let target = place.backups().join("cp");
        std::fs::create_dir_all(&target).unwrap();
        let files: Vec<PathBuf> = std::fs::read_dir(&snap)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        run(Command::new("cp").args(&files).arg(&target));
        run(Command::new("sync").arg("-f").arg(&target));
        delete(&snap);
        let took = started.elapsed();
        std::fs::remove_dir_all(&target).unwrap();
        took
    }

    /// What one kind of window showed, over all rounds.
    #[derive(Default, Clone)]
    struct Seen {
        worst: f64,
        p99: f64,
        took: Vec<f64>,
        transactions: u64,
    }

    impl Seen {
        fn mean(&self) -> f64 {
            self.took.iter().sum::<f64>() / self.took.len().max(1) as f64
        }
    }

    /// One window: the writer alone for a second, `what` `repeat` times a
    /// second apart, a second more. (An idle window sleeps `idle`.)
    fn window(
        db: &Path,
        repeat: usize,
        seen: &mut Seen,
        idle: Option<Duration>,
        mut what: impl FnMut() -> Duration,
    ) -> Duration {
        settle();
        let writer = Writer::start_with(db, &["--rate", "100"]);
        std::thread::sleep(Duration::from_secs(1));
        let started = Instant::now();
        match idle {
            Some(d) => std::thread::sleep(d),
            None => {
                for i in 0..repeat {
                    if i > 0 {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    seen.took.push(what().as_secs_f64());
                }
            }
        }
        let length = started.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        let stats = writer.stop();
        seen.worst = seen.worst.max(stats.max_commit_ms);
        seen.p99 = seen.p99.max(stats.p99_commit_ms);
        seen.transactions += stats.transactions;
        length
    }

    pub fn main() {
        if std::env::args().any(|a| a == "--list" || a == "--test") {
            return; // `cargo test --benches` probes benches; nothing to list.
        }
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIP: the benchmark needs root (btrfs loop volume); run: sudo cargo bench --bench pace"
            );
            return;
        }
        let env =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        let size_mb: u64 = env("PERSNAP_BENCH_SIZE", "600").parse().unwrap();
        let rounds: usize = env("PERSNAP_BENCH_ROUNDS", "2").parse().unwrap();
        let repeat: usize = env("PERSNAP_BENCH_REPEAT", "3").parse().unwrap();
        let shares: Vec<u8> = env("PERSNAP_BENCH_SHARES", "20,40,60,80,100")
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();

        let place = Place::new(size_mb);
        let db = place.store().join("persistence.db");
        eprintln!("creating a {size_mb} MiB database…");
        run(Command::new(target_bin("persnap-loadgen"))
            .arg("init")
            .arg(&db)
            .args(["--mode", "rollback", "--size-mb", &size_mb.to_string()]));
        run(&mut Command::new("sync"));

        let (mut idle, mut bare_seen, mut held, mut gentle, mut fast, mut cp) = Default::default();
        let mut curve: Vec<Seen> = vec![Seen::default(); shares.len()];
        for round in 1..=rounds {
            eprintln!("round {round} of {rounds}");
            let gentle_window = window(&db, repeat, &mut gentle, None, || backup(&place, "gentle"));
            window(
                &db,
                repeat,
                &mut idle,
                Some(gentle_window),
                || unreachable!(),
            );
            window(&db, repeat, &mut bare_seen, None, || {
                bare(&place, Duration::ZERO)
            });
            // As long as the snapshot lives during a gentle backup (about
            // half of it: the copy; the rest is verification).
            let hold = Duration::from_secs_f64(gentle.mean() / 2.0);
            window(&db, repeat, &mut held, None, || bare(&place, hold));
            window(&db, repeat, &mut fast, None, || backup(&place, "fast"));
            window(&db, repeat, &mut cp, None, || by_hand(&place));
            for (share, seen) in shares.iter().zip(curve.iter_mut()) {
                window(&db, repeat, seen, None, || {
                    backup(&place, &format!("{share}%"))
                });
            }
        }
        let (idle, bare_seen, held, gentle, fast, cp): (Seen, Seen, Seen, Seen, Seen, Seen) =
            (idle, bare_seen, held, gentle, fast, cp);

        println!(
            "{size_mb} MiB rollback-journal store on btrfs, writer at 100 commits/s, backups to the same disk; {rounds} rounds × {repeat} per window"
        );
        println!("| window | worst commit | p99 commit | commits | one backup (mean) |");
        println!("|---|---|---|---|---|");
        let row = |name: &str, s: &Seen| {
            println!(
                "| {name} | {:.1} ms | {:.1} ms | {} | {} |",
                s.worst,
                s.p99,
                s.transactions,
                if s.took.is_empty() {
                    "—".to_owned()
                } else {
                    format!("{:.2} s", s.mean())
                }
            )
        };
        row("idle", &idle);
        row("bare snapshot + delete", &bare_seen);
        row(
            "snapshot kept for half a gentle backup, nothing copied",
            &held,
        );
        row("gentle (default)", &gentle);
        row("fast", &fast);
        row("cp from snapshot, by hand", &cp);
        for (share, seen) in shares.iter().zip(&curve) {
            row(&format!("paced at {share} %"), seen);
        }
        println!();
        println!(
            "gentle worst / bare-snapshot worst: {:.1} / {:.1} ms = {:.2} (target <= 1.5)",
            gentle.worst,
            bare_seen.worst,
            gentle.worst / bare_seen.worst
        );
        println!(
            "gentle worst / worst with the snapshot kept as long, nothing copied: {:.1} / {:.1} ms = {:.2}",
            gentle.worst,
            held.worst,
            gentle.worst / held.worst
        );
        println!(
            "p99: gentle {:.1}, fast {:.1}, cp {:.1}, snapshot kept {:.1}, idle {:.1} ms",
            gentle.p99, fast.p99, cp.p99, held.p99, idle.p99
        );
        println!(
            "gentle time / fast time: {:.2} / {:.2} s = {:.2} (target <= 2.0)",
            gentle.mean(),
            fast.mean(),
            gentle.mean() / fast.mean()
        );
        println!(
            "fast / cp by hand: time {:.2} / {:.2} s = {:.2}, worst commit {:.1} / {:.1} ms = {:.2} (target <= 1.0)",
            fast.mean(),
            cp.mean(),
            fast.mean() / cp.mean(),
            fast.worst,
            cp.worst,
            fast.worst / cp.worst
        );
    }
}
