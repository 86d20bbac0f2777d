//! Benchmark: how a repository should cut a big database file into chunks
//! (issue #30). No root needed.
//!
//!   cargo bench --bench chunking                          # 512 MiB, 7 backups per workload
//!   PERSNAP_BENCH_SIZE_MB=128 PERSNAP_BENCH_ROUNDS=4 cargo bench --bench chunking   # a quick look
//!
//! For each workload in `PERSNAP_BENCH_WORKLOADS` (default
//! `scattered,append`) a rollback-journal store of about
//! `PERSNAP_BENCH_SIZE_MB` MiB (default 512) is made with
//! `persnap-loadgen`, then backed up `PERSNAP_BENCH_ROUNDS` times (default
//! 7: a first backup and 6 incremental ones) into one repository per
//! scheme, all in the same rounds. Between two rounds the writer changes
//! about `PERSNAP_BENCH_CHANGE_PERCENT` (default 1) % of the store and
//! stops; the store is then copied (the copy stands in for the snapshot)
//! and every repository backs up that same copy, in alternating order.
//!
//! - `scattered`: `persnap-loadgen run --transactions N` (random transfers
//!   between accounts: changed pages scattered over the file); N is
//!   corrected each round from the share of pages that really changed,
//!   measured by comparing the page hashes of consecutive copies.
//! - `append`: `persnap-loadgen churn` (rows of 64 KiB appended, the
//!   oldest deleted so the table keeps its size; SQLite reuses the freed
//!   pages). The store is filled once before the first backup.
//!
//! Schemes (`PERSNAP_BENCH_SCHEMES`, default `4,8,16,64,rabin,seg4`): a
//! number is fixed-size chunks of that many KiB (4, one page, is the
//! baseline of the ratios; 8 is the product's choice since issue #30);
//! `rabin` is restic's content-defined chunking (1 MiB on average),
//! `rabinN` the same with N KiB on average; `segN` (`segN@M`: segments of
//! M MiB) is fixed N KiB chunks with the file stored as segments of
//! `PERSNAP_BENCH_SEGMENT_MB` MiB (default 64), each one file in a folder
//! of its own, so that an unchanged segment's list of chunks (its tree)
//! is the same blob as last time and is not written again. The segmented
//! layout is not the product's: stock `restic restore` gives back the
//! segments, to be put together with `cat`.
//!
//! Each backup runs in a child process (this binary, `--child`), through
//! rustic_core as the product does (`Repository::archive`, every file read
//! whole). Printed per scheme: what each incremental backup adds to the
//! repository (in total, from the files' sizes, and split into data
//! packs, tree packs and index; the trees also before compression), its
//! time (the archive step), its peak RSS (the archive step, from opening
//! the index on: the key derivation before it is left out), and the ratios
//! of these to 4 KiB's in the same round (medians).
//!
//! Everything lives in /var/tmp/persnap-bench-chunking-PID, removed on
//! exit, on panic and on Ctrl-C (`PERSNAP_BENCH_KEEP=1` keeps it).

#[path = "../tests/integration/common/mod.rs"]
mod common;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustic_backend::BackendOptions;
use rustic_core::repofile::{Chunker, Metadata, Node, NodeType};
use rustic_core::{
    BackupOptions, ConfigOptions, Credentials, KeyOptions, ReadSource, ReadSourceEntry,
    ReadSourceOpen, Repository, RepositoryOptions, RusticResult, SnapshotOptions,
};

use common::bin as target_bin;

const PASSWORD: &str = "benchmark password, not a secret";
const MIB: f64 = 1024.0 * 1024.0;
const PAGE: usize = 4096;
const FILE_NAME: &str = "persistence.db";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[derive(Clone, Debug, PartialEq)]
enum Scheme {
    Fixed(u64),
    Rabin(Option<u64>),
    Segmented { kib: u64, segment_mib: u64 },
}

impl Scheme {
    fn parse(s: &str, segment_mib: u64) -> Scheme {
        if s == "rabin" {
            Scheme::Rabin(None)
        } else if let Some(avg) = s.strip_prefix("rabin") {
            Scheme::Rabin(Some(avg.parse().expect("rabinN: N in KiB")))
        } else if let Some(kib) = s.strip_prefix("seg") {
            let (kib, seg) = match kib.split_once('@') {
                Some((k, m)) => (k, m.parse().expect("segN@M: M in MiB")),
                None => (kib, segment_mib),
            };
            Scheme::Segmented {
                kib: kib.parse().expect("segN: N in KiB"),
                segment_mib: seg,
            }
        } else {
            Scheme::Fixed(
                s.parse()
                    .expect("a chunk size in KiB, rabin, rabinN or segN"),
            )
        }
    }

    fn arg(&self) -> String {
        match self {
            Scheme::Fixed(k) => k.to_string(),
            Scheme::Rabin(None) => "rabin".into(),
            Scheme::Rabin(Some(a)) => format!("rabin{a}"),
            Scheme::Segmented { kib, segment_mib } => format!("seg{kib}@{segment_mib}"),
        }
    }

    fn label(&self) -> String {
        match self {
            Scheme::Fixed(k) => format!("fixed {k} KiB"),
            Scheme::Rabin(None) => "content-defined (Rabin, 1 MiB avg)".into(),
            Scheme::Rabin(Some(a)) => format!("content-defined (Rabin, {a} KiB avg)"),
            Scheme::Segmented { kib, segment_mib } => {
                format!("fixed {kib} KiB, {segment_mib} MiB segments")
            }
        }
    }

    fn config(&self) -> ConfigOptions {
        let mut c = ConfigOptions::default();
        match self {
            Scheme::Fixed(kib) | Scheme::Segmented { kib, .. } => {
                c.set_chunker = Some(Chunker::FixedSize);
                c.set_chunk_size = Some(bytesize::ByteSize::kib(*kib));
            }
            Scheme::Rabin(None) => {}
            Scheme::Rabin(Some(avg)) => {
                c.set_chunker = Some(Chunker::Rabin);
                c.set_chunk_size = Some(bytesize::ByteSize::kib(*avg));
                c.set_chunk_min_size = Some(bytesize::ByteSize::kib((*avg / 4).max(1)));
                c.set_chunk_max_size = Some(bytesize::ByteSize::kib(*avg * 8));
            }
        }
        c
    }

    fn segment_bytes(&self) -> Option<u64> {
        match self {
            Scheme::Segmented { segment_mib, .. } => Some(segment_mib << 20),
            _ => None,
        }
    }
}

fn repository(dir: &Path, cache: &Path) -> Repository<()> {
    let backends = BackendOptions::default()
        .repository(format!("local:{}", dir.display()))
        .to_backends()
        .unwrap();
    Repository::new(&RepositoryOptions::default().cache_dir(cache), &backends).unwrap()
}

// ---------------------------------------------------------------------
// The child: one backup.

/// The store's copy as the source of a backup: one file, or segments of
/// it, each a file in a folder of its own. The files' metadata is fixed
/// (the same every backup), so an unchanged segment gives the same tree.
struct Source {
    file: PathBuf,
    size: u64,
    segment: Option<u64>,
}

struct Piece {
    file: PathBuf,
    offset: u64,
    len: u64,
}

impl ReadSourceOpen for Piece {
    type Reader = std::io::Take<std::fs::File>;
    fn open(self) -> RusticResult<Self::Reader> {
        let mut f = std::fs::File::open(&self.file).unwrap();
        f.seek(SeekFrom::Start(self.offset)).unwrap();
        Ok(f.take(self.len))
    }
}

fn file_node(name: &str, size: u64) -> Node {
    let meta = Metadata {
        mode: Some(0o600),
        mtime: Some(rustic_core::jiff::Timestamp::from_second(1_800_000_000).unwrap()),
        size,
        ..Default::default()
    };
    Node::new_node(std::ffi::OsStr::new(name), NodeType::File, meta)
}

impl ReadSource for Source {
    type Open = Piece;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<Piece>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(Some(self.size))
    }

    fn entries(&self) -> Self::Iter {
        let root = PathBuf::from("/src");
        let mut out = Vec::new();
        match self.segment {
            None => out.push(Ok(ReadSourceEntry {
                path: root.join(FILE_NAME),
                node: file_node(FILE_NAME, self.size),
                open: Some(Piece {
                    file: self.file.clone(),
                    offset: 0,
                    len: self.size,
                }),
            })),
            Some(seg) => {
                let mut offset = 0;
                let mut n = 0;
                while offset < self.size || n == 0 {
                    let len = seg.min(self.size - offset);
                    let dir = format!("{n:05}");
                    let name = format!("{FILE_NAME}.{n:05}");
                    out.push(Ok(ReadSourceEntry {
                        path: root
                            .join(format!("{FILE_NAME}.segments"))
                            .join(&dir)
                            .join(&name),
                        node: file_node(&name, len),
                        open: Some(Piece {
                            file: self.file.clone(),
                            offset,
                            len,
                        }),
                    }));
                    offset += len;
                    n += 1;
                }
            }
        }
        out.into_iter()
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn child(args: &[String]) {
    let [repo_dir, cache, scheme, file] = args else {
        panic!("--child REPO CACHE SCHEME FILE")
    };
    let scheme = Scheme::parse(scheme, 0);
    let repo = repository(Path::new(repo_dir), Path::new(cache))
        .open(&Credentials::password(PASSWORD))
        .unwrap();
    // The peak from here on: the key derivation (scrypt's memory) is
    // the same for every scheme and is left out.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let repo = repo.to_indexed_ids().unwrap();
    let snap = SnapshotOptions::default()
        .host("bench".to_owned())
        .to_snapshot()
        .unwrap();
    let mut opts = BackupOptions::default().as_path(PathBuf::from("/persnap/bench"));
    opts.parent_opts.force = true;
    let size = std::fs::metadata(file).unwrap().len();
    let source = Source {
        file: PathBuf::from(file),
        size,
        segment: scheme.segment_bytes(),
    };
    let saved = repo
        .archive(&opts, &source, snap, &[PathBuf::from("/src")])
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let s = saved.summary.unwrap();
    println!(
        "{}",
        serde_json::json!({
            "seconds": seconds,
            "hwm_kib": status_kib("VmHWM:"),
            "data_added": s.data_added,
            "data_added_packed": s.data_added_packed,
            "files_added": s.data_added_files,
            "files_added_packed": s.data_added_files_packed,
            "trees_added": s.data_added_trees,
            "trees_added_packed": s.data_added_trees_packed,
            "bytes": s.total_bytes_processed,
            "files": s.total_files_processed,
        })
    );
}

// ---------------------------------------------------------------------
// The parent.

struct Workspace(PathBuf);

impl Drop for Workspace {
    fn drop(&mut self) {
        if std::env::var_os("PERSNAP_BENCH_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn check_interrupted() {
    if INTERRUPTED.load(Ordering::Relaxed) {
        panic!("interrupted; cleaning up");
    }
}

fn run(cmd: &mut Command) -> String {
    check_interrupted();
    common::run_ok(cmd)
}

/// Bytes of the files under `dir` (their lengths, not blocks).
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                bytes_under(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[derive(Clone, Copy, Default)]
struct Sizes {
    data: u64,
    index: u64,
    other: u64,
}

impl Sizes {
    fn of(repo: &Path) -> Sizes {
        let data = bytes_under(&repo.join("data"));
        let index = bytes_under(&repo.join("index"));
        Sizes {
            data,
            index,
            other: bytes_under(repo) - data - index,
        }
    }
    fn total(&self) -> u64 {
        self.data + self.index + self.other
    }
}

#[derive(Clone, Default)]
struct Backup {
    seconds: f64,
    hwm_kib: u64,
    rss_kib: i64,
    grew: u64,
    grew_data: u64,
    grew_index: u64,
    files_packed: u64,
    trees: u64,
    trees_packed: u64,
    size: u64,
}

/// One backup into `repo`, in a child process; what it did.
fn backup(repo: &Path, cache: &Path, scheme: &Scheme, file: &Path) -> Backup {
    check_interrupted();
    let before = Sizes::of(repo);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--child")
        .arg(repo)
        .arg(cache)
        .arg(scheme.arg())
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).unwrap();
    let mut status = 0;
    // SAFETY: wait4 on our own child; rusage is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(waited, child.id() as i32, "wait4 failed");
    std::mem::forget(child);
    let err = err.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "backup into {} failed: {err}",
        repo.display()
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let after = Sizes::of(repo);
    let n = |k: &str| v[k].as_u64().unwrap();
    Backup {
        seconds: v["seconds"].as_f64().unwrap(),
        hwm_kib: n("hwm_kib"),
        rss_kib: usage.ru_maxrss,
        grew: after.total() - before.total(),
        grew_data: after.data - before.data,
        grew_index: after.index - before.index,
        files_packed: n("files_added_packed"),
        trees: n("trees_added"),
        trees_packed: n("trees_added_packed"),
        size: after.total(),
    }
}

/// A hash of every 4 KiB page, read in pieces (the benchmark's own
/// memory stays small: a child forked from it inherits its peak RSS).
fn page_hashes(file: &Path) -> Vec<u64> {
    use std::hash::{Hash, Hasher};
    let mut f = std::fs::File::open(file).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut out = Vec::new();
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match f.read(&mut buf[filled..]).unwrap() {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            return out;
        }
        out.extend(buf[..filled].chunks(PAGE).map(|p| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            p.hash(&mut h);
            h.finish()
        }));
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

struct Round {
    changed: Option<usize>,
    pages: usize,
    backups: Vec<Backup>,
}

fn series(
    ws: &Path,
    workload: &str,
    size_mb: u64,
    rounds: usize,
    percent: f64,
    schemes: &[Scheme],
) -> Vec<Round> {
    let dir = ws.join(workload);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join(FILE_NAME);
    let loadgen = target_bin("persnap-loadgen");
    let started = Instant::now();
    match workload {
        "scattered" => {
            run(Command::new(&loadgen).arg("init").arg(&db).args([
                "--mode",
                "rollback",
                "--size-mb",
                &size_mb.to_string(),
            ]));
        }
        "append" => {
            run(Command::new(&loadgen).arg("init").arg(&db).args([
                "--mode",
                "rollback",
                "--size-mb",
                "1",
            ]));
            run(Command::new(&loadgen).arg("churn").arg(&db).args([
                "--append-kib",
                &(size_mb * 1024).to_string(),
                "--keep-mb",
                &size_mb.to_string(),
            ]));
        }
        other => panic!("unknown workload {other:?}: scattered or append"),
    }
    eprintln!(
        "[{workload}] store made: {:.1} MiB in {:.1} s",
        std::fs::metadata(&db).unwrap().len() as f64 / MIB,
        started.elapsed().as_secs_f64()
    );
    let repos: Vec<PathBuf> = (0..schemes.len())
        .map(|i| dir.join(format!("repo-{i}")))
        .collect();
    let cache = dir.join("cache");
    for (repo, scheme) in repos.iter().zip(schemes) {
        std::fs::create_dir_all(repo).unwrap();
        repository(repo, &cache)
            .init(
                &Credentials::password(PASSWORD),
                &KeyOptions::default(),
                &scheme.config(),
            )
            .unwrap();
    }
    let snap = dir.join("snapshot");
    std::fs::create_dir_all(&snap).unwrap();
    let copy = snap.join(FILE_NAME);
    let mut before: Option<Vec<u64>> = None;
    let mut transactions = 0u64;
    let mut done = Vec::new();
    for round in 0..rounds {
        if round > 0 {
            match workload {
                "scattered" => {
                    run(Command::new(&loadgen)
                        .arg("run")
                        .arg(&db)
                        .args(["--transactions", &transactions.to_string()]));
                }
                _ => {
                    let kib = (size_mb as f64 * 1024.0 * percent / 100.0).round() as u64;
                    run(Command::new(&loadgen).arg("churn").arg(&db).args([
                        "--append-kib",
                        &kib.max(64).to_string(),
                        "--keep-mb",
                        &size_mb.to_string(),
                    ]));
                }
            }
        }
        std::fs::copy(&db, &copy).unwrap();
        let hashes = page_hashes(&copy);
        let pages = hashes.len();
        let changed = before.as_ref().map(|b| {
            hashes
                .iter()
                .enumerate()
                .filter(|(i, h)| b.get(*i) != Some(h))
                .count()
        });
        // About `percent` % of the pages: a transfer changes about two.
        let target = pages as f64 * percent / 100.0;
        transactions = match changed {
            Some(c) if c > 0 => ((transactions as f64) * target / c as f64).round() as u64,
            _ => (target / 2.0).round() as u64,
        }
        .max(1);
        before = Some(hashes);
        let mut order: Vec<usize> = (0..schemes.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut backups = vec![Backup::default(); schemes.len()];
        for &k in &order {
            backups[k] = backup(&repos[k], &cache, &schemes[k], &copy);
        }
        let r = Round {
            changed,
            pages,
            backups,
        };
        print_round(workload, round, &r, schemes);
        done.push(r);
    }
    if std::env::var_os("PERSNAP_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    done
}

fn print_round(workload: &str, round: usize, r: &Round, schemes: &[Scheme]) {
    let changed = match r.changed {
        Some(n) => format!(
            "{n} of {} pages changed ({:.2} %)",
            r.pages,
            n as f64 * 100.0 / r.pages as f64
        ),
        None => format!("{} pages, first backup", r.pages),
    };
    eprintln!("[{workload}] round {}: {changed}", round + 1);
    for (s, b) in schemes.iter().zip(&r.backups) {
        eprintln!(
            "    {:<40} {:7.2} s  +{:8.2} MiB (data {:.2}, index {:.2}; trees {:.2} → {:.2} MiB)  archive peak {} MiB, process {} MiB",
            s.label(),
            b.seconds,
            b.grew as f64 / MIB,
            b.grew_data as f64 / MIB,
            b.grew_index as f64 / MIB,
            b.trees as f64 / MIB,
            b.trees_packed as f64 / MIB,
            b.hwm_kib / 1024,
            b.rss_kib / 1024,
        );
    }
}

fn report(workload: &str, percent: f64, rounds: &[Round], schemes: &[Scheme]) {
    let base = schemes.iter().position(|s| *s == Scheme::Fixed(4));
    let incr: Vec<&Round> = rounds.iter().skip(1).collect();
    let pages = rounds.last().map_or(0, |r| r.pages);
    let changed: Vec<f64> = incr
        .iter()
        .filter_map(|r| r.changed.map(|c| c as f64 * 100.0 / r.pages as f64))
        .collect();
    println!();
    println!(
        "## {workload}: {:.0} MiB store ({pages} pages), {} backups, {:.2} % of pages changed per backup (median; target {percent} %)",
        pages as f64 * PAGE as f64 / MIB,
        rounds.len(),
        median(changed)
    );
    println!();
    println!(
        "| scheme | first backup | per incremental backup: repository grows | data packs | tree packs (trees before compression) | index | time | peak RSS | growth / 4 KiB's | time / 4 KiB's | peak RSS / 4 KiB's | repository after {} backups |",
        rounds.len()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (k, s) in schemes.iter().enumerate() {
        let med =
            |f: &dyn Fn(&Backup) -> f64| median(incr.iter().map(|r| f(&r.backups[k])).collect());
        let ratio = |f: &dyn Fn(&Backup) -> f64| match base {
            Some(b) => format!(
                "{:.2}",
                median(
                    incr.iter()
                        .map(|r| f(&r.backups[k]) / f(&r.backups[b]))
                        .collect()
                )
            ),
            None => "–".into(),
        };
        let mib = |x: f64| x / MIB;
        println!(
            "| {} | {:.1} MiB | {:.2} MiB | {:.2} MiB | {:.2} MiB ({:.2} MiB) | {:.2} MiB | {:.2} s | {:.0} MiB | {} | {} | {} | {:.1} MiB |",
            s.label(),
            mib(rounds[0].backups[k].grew as f64),
            mib(med(&|b| b.grew as f64)),
            mib(med(&|b| b.files_packed as f64)),
            mib(med(&|b| b.trees_packed as f64)),
            mib(med(&|b| b.trees as f64)),
            mib(med(&|b| b.grew_index as f64)),
            med(&|b| b.seconds),
            med(&|b| b.hwm_kib as f64) / 1024.0,
            ratio(&|b| b.grew as f64),
            ratio(&|b| b.seconds),
            ratio(&|b| b.hwm_kib as f64),
            mib(rounds.last().unwrap().backups[k].size as f64),
        );
    }
    println!();
    println!(
        "(medians of backups 2..{}; peak RSS is the archive step's, key derivation left out; the whole process's peak was at most {} MiB)",
        rounds.len(),
        rounds
            .iter()
            .flat_map(|r| r.backups.iter().map(|b| b.rss_kib))
            .max()
            .unwrap_or(0)
            / 1024
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes benches; nothing to list.
    }
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2..]);
        return;
    }
    let size_mb: u64 = env_or("PERSNAP_BENCH_SIZE_MB", "512").parse().unwrap();
    let rounds: usize = env_or("PERSNAP_BENCH_ROUNDS", "7").parse().unwrap();
    let percent: f64 = env_or("PERSNAP_BENCH_CHANGE_PERCENT", "1").parse().unwrap();
    let segment_mib: u64 = env_or("PERSNAP_BENCH_SEGMENT_MB", "64").parse().unwrap();
    let schemes: Vec<Scheme> = env_or("PERSNAP_BENCH_SCHEMES", "4,8,16,64,rabin,seg4")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Scheme::parse(s, segment_mib))
        .collect();
    let workloads = env_or("PERSNAP_BENCH_WORKLOADS", "scattered,append");
    let loadgen = target_bin("persnap-loadgen");
    assert!(
        loadgen.exists(),
        "{} is not built (cargo build --release --bin persnap-loadgen)",
        loadgen.display()
    );
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
    let ws = Workspace(PathBuf::from(format!(
        "/var/tmp/persnap-bench-chunking-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&ws.0).unwrap();
    eprintln!(
        "chunking benchmark: {size_mb} MiB, {rounds} backups, {percent} % changed, schemes {}",
        schemes
            .iter()
            .map(Scheme::label)
            .collect::<Vec<_>>()
            .join("; ")
    );
    for workload in workloads
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        let r = series(&ws.0, workload, size_mb, rounds, percent, &schemes);
        report(workload, percent, &r, &schemes);
    }
}
