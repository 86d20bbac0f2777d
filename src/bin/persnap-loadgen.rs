//! `persnap-loadgen`: a correlator-like writer for rehearsals, tests and
//! benchmarks. It creates a database, writes transfers that keep an
//! invariant while persnap backs it up, and checks copies afterwards.
//!
//!   persnap-loadgen init DB --mode rollback|wal --size-mb N
//!   persnap-loadgen run DB [--seconds S] [--stop-file F] [--transactions N] [--rate PER_SEC]
//!                                                          (stats as JSON on stdout)
//!   persnap-loadgen churn DB --append-kib N --keep-mb M [--row-kib K]
//!                                       (append-and-delete: large rows added,
//!                                        the oldest deleted; stats as JSON)
//!   persnap-loadgen check DB                               (exit 0 when consistent)
//!   persnap-loadgen hold DB            (hold it as a correlator in exclusive
//!                                       locking mode does, until a signal)
//!
//! Started under the name `correlator` (argv[0]), it stands in for one:
//! `correlator -PstoreLocation=DIR [-PstoreName=NAME] [--config FILE]` creates
//! the store if needed (relative folders from its working folder) and writes
//! transfers into it until SIGTERM — what persnap's discovery looks for.
//!
//! `run` also stops cleanly on SIGTERM/SIGINT. Never point `check` at a live
//! database: it opens the file read-write (to let SQLite replay a journal).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use persnap::loadgen::{self, Mode};

#[derive(Parser)]
#[command(
    name = "persnap-loadgen",
    about = "Invariant-keeping SQLite write workload for testing persnap"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new database of about SIZE_MB MiB.
    Init {
        db: PathBuf,
        #[arg(long, default_value = "rollback")]
        mode: Mode,
        #[arg(long, default_value_t = 20)]
        size_mb: u64,
    },
    /// Write transfers until the time is up, the stop file appears, N
    /// transfers are done, or a signal arrives.
    Run {
        db: PathBuf,
        #[arg(long)]
        seconds: Option<f64>,
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// Stop after this many transfers (the benchmark changes a measured
        /// share of the pages between two backups).
        #[arg(long)]
        transactions: Option<u64>,
        /// Commit at most this many transfers a second, evenly spaced (as
        /// a correlator persisting on a timer does); default: flat out.
        #[arg(long, value_name = "PER_SEC")]
        rate: Option<f64>,
        /// Write each commit's end (seconds since the Unix epoch) and its
        /// time (ms) into FILE, one line each, to line stalls up with what
        /// happened meanwhile.
        #[arg(long, value_name = "FILE")]
        timeline: Option<PathBuf>,
        /// Print "ready" on its own line once N transfers are committed
        /// (before the statistics at the end): a test waits for it instead
        /// of reading the database, whose lock a reader would contend for.
        #[arg(long, value_name = "N")]
        ready_after: Option<u64>,
    },
    /// The append-and-delete workload: add N KiB of large rows at the end
    /// of an events table, deleting the oldest rows to keep it at most
    /// M MiB (then SQLite reuses their pages).
    Churn {
        db: PathBuf,
        #[arg(long)]
        append_kib: u64,
        #[arg(long)]
        keep_mb: u64,
        /// The size of one row.
        #[arg(long, default_value_t = 64)]
        row_kib: u64,
    },
    /// Check integrity and the invariant of a copy.
    Check { db: PathBuf },
    /// Hold the database as a correlator in SQLite's exclusive locking
    /// mode does (it never lets go), until SIGTERM or SIGINT. Prints
    /// `held` once it holds it.
    Hold { db: PathBuf },
}

/// Pretend to be a correlator: the store from `-PstoreLocation` /
/// `-PstoreName` (only these forms).
fn as_correlator(args: &[String]) -> Result<()> {
    // It does not read YAML: a test that configures one by `--config`
    // says where that puts the store in LOADGEN_STORE_LOCATION.
    let mut location = std::env::var_os("LOADGEN_STORE_LOCATION")
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let mut name = "persistence.db".to_owned();
    for arg in args {
        if let Some(dir) = arg.strip_prefix("-PstoreLocation=") {
            location = dir.into();
        } else if let Some(file) = arg.strip_prefix("-PstoreName=") {
            name = file.to_owned();
        }
    }
    std::fs::create_dir_all(&location)?;
    let db = location.join(name);
    if !db.exists() {
        loadgen::init(&db, Mode::Rollback, 1)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    // A correlator commits now and then, not flat out.
    loadgen::run(&db, || {
        std::thread::sleep(Duration::from_millis(5));
        stop.load(Ordering::Relaxed)
    })?;
    Ok(())
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_stem())
        .is_some_and(|stem| stem == "correlator")
    {
        return as_correlator(&argv[1..]);
    }
    match Args::parse().command {
        Cmd::Init { db, mode, size_mb } => {
            if db.exists() {
                bail!(
                    "{} already exists; remove it or choose another path",
                    db.display()
                );
            }
            loadgen::init(&db, mode, size_mb)
                .with_context(|| format!("creating {}", db.display()))?;
        }
        Cmd::Run {
            db,
            seconds,
            stop_file,
            transactions,
            rate,
            timeline,
            ready_after,
        } => {
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, Arc::clone(&stop))?;
            }
            let deadline = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
            // `stop` is asked once before each transfer.
            let mut started = 0u64;
            let spacing = rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r));
            let mut next = Instant::now();
            let mut log = timeline
                .map(|f| std::fs::File::create(f).map(std::io::BufWriter::new))
                .transpose()?;
            let last_done = loadgen::LastCommit::default();
            let stats = loadgen::run_observed(&db, &last_done, || {
                if let (Some(log), Some((end, ms))) = (log.as_mut(), last_done.take()) {
                    use std::io::Write;
                    let _ = writeln!(log, "{end:.6} {ms:.3}");
                }
                if let Some(spacing) = spacing {
                    // The next slot; a late commit does not cause a burst.
                    next = (next + spacing).max(Instant::now());
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                let done = transactions.is_some_and(|n| started >= n);
                // Asked before each transfer: `started` are committed.
                if ready_after == Some(started) {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ready");
                    let _ = out.flush();
                }
                started += 1;
                done || stop.load(Ordering::Relaxed)
                    || deadline.is_some_and(|d| Instant::now() >= d)
                    || stop_file.as_ref().is_some_and(|f| f.exists())
            })?;
            println!("{}", serde_json::to_string(&stats)?);
        }
        Cmd::Churn {
            db,
            append_kib,
            keep_mb,
            row_kib,
        } => {
            let stats = loadgen::churn(&db, append_kib << 10, keep_mb << 20, row_kib << 10)?;
            println!("{}", serde_json::to_string(&stats)?);
        }
        Cmd::Hold { db } => {
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, Arc::clone(&stop))?;
            }
            let conn = rusqlite::Connection::open(&db)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            let _: String = conn.query_row("PRAGMA locking_mode=EXCLUSIVE", [], |r| r.get(0))?;
            // One write takes the exclusive lock, which it then keeps.
            conn.execute_batch(
                "BEGIN EXCLUSIVE; UPDATE meta SET v = v WHERE k = 'transfers'; COMMIT;",
            )?;
            println!("held");
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Cmd::Check { db } => {
            persnap::verify::integrity_check(&db)?;
            let conn = rusqlite::Connection::open(&db)?;
            let report = loadgen::check_invariant(&conn).map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
