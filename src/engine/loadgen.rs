//! A correlator-like write workload with an invariant, for rehearsals,
//! tests and benchmarks (driven by the `persnap-loadgen` binary).
//!
//! The database holds accounts with padded rows (to reach a chosen size)
//! and a growing ledger. Every transaction moves money between two accounts,
//! appends a ledger row and bumps a transfer counter, so in every consistent
//! state: the balances sum to `accounts * INITIAL_BALANCE`, and the counter
//! equals the number of ledger rows. A torn copy breaks one of these (or
//! fails SQLite's integrity check).

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

/// Starting balance of every account.
pub const INITIAL_BALANCE: i64 = 1_000;
const ACCOUNT_PAD: usize = 900;
const LEDGER_PAD: usize = 200;

/// SQLite journal mode for the generated database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Rollback,
    Wal,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rollback" | "delete" => Ok(Mode::Rollback),
            "wal" => Ok(Mode::Wal),
            _ => Err(format!("unknown journal mode {s:?}; use rollback or wal")),
        }
    }
}

/// What one writer run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WriterStats {
    pub transactions: u64,
    pub seconds: f64,
    /// Longest single commit (begin to commit returning), in milliseconds.
    pub max_commit_ms: f64,
    pub mean_commit_ms: f64,
    /// The 99th-percentile commit, in milliseconds.
    #[serde(default)]
    pub p99_commit_ms: f64,
}

/// Counts found when checking the invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantReport {
    pub accounts: i64,
    pub total_balance: i64,
    pub transfers: i64,
}

/// Create a fresh database of about `size_mb` MiB in `mode`.
pub fn init(path: &Path, mode: Mode, size_mb: u64) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    let journal = match mode {
        Mode::Rollback => "DELETE",
        Mode::Wal => "WAL",
    };
    conn.query_row(&format!("PRAGMA journal_mode={journal}"), [], |_| Ok(()))?;
    conn.execute_batch(
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad BLOB NOT NULL);
         CREATE TABLE ledger(seq INTEGER PRIMARY KEY, from_id INTEGER, to_id INTEGER, amount INTEGER, pad BLOB);
         CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);
         INSERT INTO meta VALUES('transfers', 0);",
    )?;
    let accounts = (size_mb * 1024 * 1024 / (ACCOUNT_PAD as u64 + 100)).max(10);
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert =
            tx.prepare("INSERT INTO accounts(id, balance, pad) VALUES(?1, ?2, randomblob(?3))")?;
        for id in 0..accounts {
            insert.execute(params![id as i64, INITIAL_BALANCE, ACCOUNT_PAD as i64])?;
        }
    }
    tx.commit()
}

/// The last commit: when it ended (seconds since the Unix epoch) and how
/// long it took (ms), for a timeline.
#[derive(Debug, Default)]
pub struct LastCommit(std::cell::Cell<Option<(f64, f64)>>);

impl LastCommit {
    pub fn take(&self) -> Option<(f64, f64)> {
        self.0.take()
    }
}

/// Run transfers until `stop` says so; returns what was done.
pub fn run(path: &Path, stop: impl FnMut() -> bool) -> rusqlite::Result<WriterStats> {
    run_observed(path, &LastCommit::default(), stop)
}

/// [`run`], leaving each commit in `last` for `stop` to see.
pub fn run_observed(
    path: &Path,
    last: &LastCommit,
    mut stop: impl FnMut() -> bool,
) -> rusqlite::Result<WriterStats> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    let accounts: i64 = conn.query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))?;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let started = Instant::now();
    let mut stats = WriterStats::default();
    let mut total_commit = 0.0;
    let mut commits: Vec<f64> = Vec::new();
    while !stop() {
        let (a, b) = (
            rng.below(accounts as u64) as i64,
            rng.below(accounts as u64) as i64,
        );
        let amount = rng.below(100) as i64 + 1;
        let t0 = Instant::now();
        transfer(&conn, a, b, amount)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        last.0.set(Some((end, ms)));
        stats.max_commit_ms = stats.max_commit_ms.max(ms);
        total_commit += ms;
        commits.push(ms);
        stats.transactions += 1;
    }
    commits.sort_by(f64::total_cmp);
    if let Some(last) = commits.len().checked_sub(1) {
        stats.p99_commit_ms = commits[last * 99 / 100];
    }
    stats.seconds = started.elapsed().as_secs_f64();
    stats.mean_commit_ms = if stats.transactions > 0 {
        total_commit / stats.transactions as f64
    } else {
        0.0
    };
    Ok(stats)
}

fn transfer(conn: &Connection, from: i64, to: i64, amount: i64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "UPDATE accounts SET balance = balance - ?2 WHERE id = ?1",
        params![from, amount],
    )?;
    tx.execute(
        "UPDATE accounts SET balance = balance + ?2, pad = randomblob(?3) WHERE id = ?1",
        params![to, amount, ACCOUNT_PAD as i64],
    )?;
    tx.execute(
        "INSERT INTO ledger(from_id, to_id, amount, pad) VALUES(?1, ?2, ?3, randomblob(?4))",
        params![from, to, amount, LEDGER_PAD as i64],
    )?;
    tx.execute("UPDATE meta SET v = v + 1 WHERE k = 'transfers'", [])?;
    tx.commit()
}

/// What one append-and-delete run did ([`churn`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChurnStats {
    pub rows_added: u64,
    pub rows_deleted: u64,
    /// Rows the events table holds afterwards.
    pub rows_kept: u64,
    pub seconds: f64,
}

/// The append-and-delete workload: a log of large rows (as a correlator
/// keeping a window of recent events), new ones added at the end, the
/// oldest deleted. Appends `append_bytes` of rows of `row_bytes` each
/// (random, so incompressible), committing about every MiB, and after
/// each commit deletes the oldest rows until the table holds at most
/// `keep_bytes`. SQLite reuses the freed pages for the next rows, so the
/// file stops growing once the table is full. The table (`events`) is
/// made on first use; the accounts, ledger and the invariant are left
/// alone.
pub fn churn(
    path: &Path,
    append_bytes: u64,
    keep_bytes: u64,
    row_bytes: u64,
) -> rusqlite::Result<ChurnStats> {
    let started = Instant::now();
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    )?;
    let row_bytes = row_bytes.max(1);
    let keep_rows = (keep_bytes / row_bytes) as i64;
    let per_commit = ((1u64 << 20) / row_bytes).max(1);
    let mut rows = append_bytes.div_ceil(row_bytes);
    let mut stats = ChurnStats::default();
    while rows > 0 {
        let batch = rows.min(per_commit);
        let tx = conn.unchecked_transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO events(body) VALUES(randomblob(?1))")?;
            for _ in 0..batch {
                insert.execute(params![row_bytes as i64])?;
            }
        }
        let deleted = tx.execute(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq \
             LIMIT max(0, (SELECT count(*) FROM events) - ?1))",
            params![keep_rows],
        )?;
        tx.commit()?;
        stats.rows_added += batch;
        stats.rows_deleted += deleted as u64;
        rows -= batch;
    }
    stats.rows_kept =
        conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64;
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Check the invariant on an open database (a copy, never the live one).
pub fn check_invariant(conn: &Connection) -> Result<InvariantReport, String> {
    let q = |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map_err(|e| format!("{sql}: {e}"))
    };
    let report = InvariantReport {
        accounts: q("SELECT count(*) FROM accounts")?,
        total_balance: q("SELECT sum(balance) FROM accounts")?,
        transfers: q("SELECT v FROM meta WHERE k = 'transfers'")?,
    };
    let ledger_rows = q("SELECT count(*) FROM ledger")?;
    if report.total_balance != report.accounts * INITIAL_BALANCE {
        return Err(format!(
            "balances sum to {}, expected {}",
            report.total_balance,
            report.accounts * INITIAL_BALANCE
        ));
    }
    if report.transfers != ledger_rows {
        return Err(format!(
            "transfer counter {} but {} ledger rows",
            report.transfers, ledger_rows
        ));
    }
    Ok(report)
}

/// Minimal deterministic PRNG (no dependency needed for a workload).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_keeps_a_window_of_rows_and_the_invariant() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("persistence.db");
        init(&db, Mode::Rollback, 1).unwrap();
        let first = churn(&db, 4 << 20, 2 << 20, 64 << 10).unwrap();
        assert_eq!(first.rows_added, 64);
        assert_eq!(first.rows_kept, 32);
        assert_eq!(first.rows_deleted, 32);
        let size = std::fs::metadata(&db).unwrap().len();
        // Freed pages are reused: the file does not grow by what is added.
        let again = churn(&db, 4 << 20, 2 << 20, 64 << 10).unwrap();
        assert_eq!(again.rows_kept, 32);
        assert!(std::fs::metadata(&db).unwrap().len() <= size + (1 << 20));
        let conn = Connection::open(&db).unwrap();
        check_invariant(&conn).unwrap();
    }
}
