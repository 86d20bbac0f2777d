//! The command-line front end: `persnap COMMAND` (docs/CLI.md lists them
//! all).
//!
//! Calls the same engine as the GUI. Human-readable progress goes to stderr;
//! stdout carries only results (the new backup's path, tables, JSON), so
//! scripts can use it. Exit codes are documented in `--help` and docs/COMMANDS.md.

use persnap::units::LocalTime;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod database;
mod drill;
mod monitoring;
mod repo;
mod restore;
mod status;

use clap::{Parser, Subcommand};
use persnap::backup::{self, BackupRequest};
use persnap::history::{Discard, History, Outcome, Run};
use persnap::method::{Method, MethodChoice};
use persnap::protocol::{BackupOptions, Request, answer};

use crate::launch::{self, RemoteFailure};
use persnap::pipeline::{self, Job, Target};
use persnap::probe::ProbeReport;
use persnap::progress::{CancelToken, Level, Phase, Progress};
use persnap::retention::RetentionPolicy;
use persnap::snapshot::SnapshotOptions;
use persnap::{units, verify, volume};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  internal error (a bug; please report it)
  2  bad input: folder, store name, backup location or method
  3  no snapshot possible, or taking/removing the snapshot failed
  4  copying failed (read error, backup location full or not writable, online backup timed out)
  5  verification failed (integrity check, hash mismatch, damaged backup)
  6  cancelled (Ctrl-C); nothing was kept
  7  another run or the history file is in the way
  8  elevation failed: authentication dismissed, not authorized, helper or pkexec missing
  9  the app and its helper do not understand each other (install the same persnap version for both)

Methods:
  auto           the snapshot method that applies to the folder's volume (btrfs or lvm;
                 vss on Windows; else reflink where the filesystem clones files).
                 Never falls back to copying live files.
  btrfs          read-only btrfs snapshot of the subvolume holding the folder (root)
  lvm            LVM snapshot of the logical volume holding the folder (root)
  vss            Windows Volume Shadow Copy (administrator)
  reflink        copy-on-write clones of the database files (XFS with reflink, btrfs),
                 taken while SQLite's own read lock holds the database still for a few
                 milliseconds (root). A correlator that never lets go of its database
                 (exclusive locking mode) is refused, never copied live.
  sqlite-online  SQLite's online backup API on the live database; no snapshot, no root.
                 Trade-off: in rollback-journal mode it holds a read lock for the whole
                 copy, stalling the correlator's commits meanwhile, and a database that
                 is never idle may not finish before --timeout. Chosen only explicitly.";

#[derive(Parser)]
#[command(name = "persnap", version, about = "Consistent backups of a live Apama correlator persistence database, taken from a filesystem snapshot.", after_help = EXIT_CODES)]
pub struct Cli {
    /// Also write what goes into persnap's log file to the terminal (each
    /// step, with its time).
    #[arg(long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Back up a live store: snapshot, copy, verify, record.
    Backup {
        #[command(flatten)]
        set: BackupSetArgs,
        /// Also (or, without --dest, only) store the verified backup in a repository.
        #[command(flatten)]
        repo: repo::RepoArgs,
        #[command(flatten)]
        offsite: repo::OffsiteArgs,
        /// Seconds the sqlite-online method may wait for its read lock.
        #[arg(long, value_name = "SECS", default_value_t = persnap::online::DEFAULT_TIMEOUT.as_secs())]
        timeout: u64,
        /// Size of a classic LVM snapshot (e.g. 2G): room for what changes during the backup.
        /// Default: a fifth of the volume, at least 1 GiB, bounded by the volume group's free space.
        #[arg(long, value_name = "SIZE", value_parser = persnap::units::parse_size)]
        snapshot_size: Option<u64>,
        #[command(flatten)]
        retention: RetentionArgs,
        /// Set by a schedule's service: the run is recorded as started by it.
        #[arg(long, value_name = "NAME", hide = true)]
        scheduled: Option<String>,
        /// Set by a schedule's task (Windows): the history to record into.
        #[arg(long, value_name = "DIR", hide = true)]
        history_dir: Option<PathBuf>,
        /// Set by a schedule's service (Linux, run as root): the user who
        /// made the schedule, whom the backup and its history belong to.
        #[arg(long, value_name = "UID", hide = true)]
        as_uid: Option<u32>,
        /// Set by a schedule with a repository and no folder: where the
        /// backup is staged (the user's), instead of --dest.
        #[arg(long, value_name = "DIR", hide = true, conflicts_with = "dest")]
        staging: Option<PathBuf>,
        /// Set by a schedule: after the run, a restore drill of its
        /// backups when one is due (a week after the last).
        #[arg(long, hide = true, requires = "scheduled")]
        drill: bool,
        /// Windows: seconds the whole Volume Shadow Copy sequence may take (default 120).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
        vss_timeout: Option<u64>,
        /// reflink: seconds to wait for SQLite's read lock before giving up (default 10, at most 300).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=300))]
        lock_wait: Option<u64>,
    },
    /// Show what was found, which snapshot method applies and what a backup would do.
    Probe {
        #[arg(long, value_name = "DIR")]
        source: PathBuf,
        #[arg(long, value_name = "NAME", default_value = persnap::store::DEFAULT_STORE_NAME)]
        store_name: String,
        /// Also plan a backup into this folder (space, steps).
        #[arg(long, value_name = "DIR")]
        dest: Option<PathBuf>,
        #[arg(long, default_value = "auto")]
        method: MethodChoice,
        /// Take a snapshot and remove it again, copying nothing (needs administrator rights).
        #[arg(long)]
        test_snapshot: bool,
        /// The backup speed the plan is for (gentle or fast).
        #[arg(long, value_name = "gentle|fast", default_value = "gentle")]
        pace: persnap::pace::Pace,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-check a backup: files and SHA-256 hashes against its manifest, and SQLite's integrity check.
    Verify {
        /// The backup folder (the one holding manifest.json), or with
        /// --repo the backup's id in the repository.
        backup: PathBuf,
        /// Verify a backup stored in this repository: read it back whole and check it.
        #[command(flatten)]
        repo: repo::RepoArgs,
    },
    /// List past runs.
    History {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only the runs that went into this repository (as the first
        /// location or the offsite copy). No password is needed: this reads
        /// your history; `persnap repo list` reads the repository itself.
        #[arg(long, value_name = "URL")]
        repo: Option<String>,
    },
    /// Remove leftovers of interrupted runs: persnap snapshots and unfinished backup folders.
    Cleanup {
        /// Also look for unfinished backup folders here (history's locations are always searched).
        #[arg(long, value_name = "DIR")]
        dest: Vec<PathBuf>,
    },
    /// Put a backup back in place of the store: verify it, refuse while the
    /// database is in use, keep the current files in a safety folder, restore
    /// atomically, check the result, record it in history. What will happen
    /// is said first, and every refusal comes before anything is read out of
    /// a repository.
    Restore {
        /// The backup folder (holding manifest.json), or with --repo the
        /// backup's id in the repository (persnap repo list shows them).
        /// Leave it out and give --database for the newest backup of a
        /// database.
        backup: Option<PathBuf>,
        /// Restore a backup stored in this repository.
        #[command(flatten)]
        repo: repo::RepoArgs,
        /// With --repo: the newest backup of this database (its name in
        /// the repository, as persnap repo list shows it).
        #[arg(long, value_name = "NAME")]
        database: Option<String>,
        /// With --database: the machine whose backups to restore (its host
        /// name), when backups of that database from several machines are
        /// in the repository.
        #[arg(long, value_name = "HOST", requires = "database")]
        host: Option<String>,
        /// With --database: the newest backup (which it is anyway).
        #[arg(long, requires = "database")]
        latest: bool,
        /// The correlator's store folder (-PstoreLocation): a protected
        /// database's folder, or a new or empty one (created if missing;
        /// on a new machine).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// Delete old backups of a store by a retention policy. The newest good
    /// backup is never deleted; unreadable or unverified ones are never touched.
    Prune {
        /// The backup location.
        #[arg(long, value_name = "DIR", required_unless_present = "repo")]
        dest: Option<PathBuf>,
        /// Prune in this repository instead: the backups of --database
        /// taken on --host, then the data no backup needs.
        #[command(flatten)]
        repo: repo::RepoArgs,
        /// Repositories: the database whose backups to prune (persnap repo list shows them).
        #[arg(long, value_name = "NAME", required_unless_present = "dest")]
        database: Option<String>,
        /// Repositories: the machine that took them (default: this one).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        #[arg(long, value_name = "NAME", default_value = persnap::store::DEFAULT_STORE_NAME)]
        store_name: String,
        #[command(flatten)]
        retention: RetentionArgs,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Keep a backup whatever retention says, with a note ("before upgrading Apama to 10.15").
    Pin {
        /// The backup folder (the one holding manifest.json).
        backup: PathBuf,
        /// Why it is kept.
        #[arg(long, value_name = "TEXT", required_unless_present = "remove")]
        note: Option<String>,
        /// Unpin it: retention may delete it again.
        #[arg(long, conflicts_with = "note")]
        remove: bool,
        /// Pin a backup in this repository (BACKUP is then its id). As in
        /// restic, the backup gets a new id, which is printed.
        #[command(flatten)]
        repo: repo::RepoArgs,
    },
    /// Back up on a schedule (Linux: a systemd timer; the snapshot is taken as root, the backup written as you).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// How a scheduled run's failure is told: mail, pings, node_exporter's
    /// textfile (see also `persnap status --format prometheus`).
    #[command(subcommand)]
    Monitoring(monitoring::MonitoringCommand),
    /// Is every protected database protected? Exit status for monitoring:
    /// 0 all have a recent verified backup, 1 one needs attention (old
    /// backup, missed run, location nearly full), 2 a backup failed or never
    /// happened, 3 persnap cannot tell (nothing protected). With
    /// `--format prometheus` the state is in the metrics, and the exit
    /// status is 0 once they are written (3 when persnap cannot tell).
    Status {
        /// Print JSON instead of text (the same as `--format json`).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// How to say it: `text` (default), `json`, or `prometheus` (the
        /// text exposition format: persnap_protected,
        /// persnap_last_success_timestamp_seconds, … per database).
        #[arg(long, value_enum)]
        format: Option<status::Format>,
        /// With `--format prometheus`: write the metrics into this folder
        /// as persnap.prom, atomically (node_exporter's textfile collector
        /// folder, e.g. /var/lib/prometheus/node-exporter), instead of
        /// printing them.
        #[arg(long, value_name = "DIR", requires = "format")]
        textfile: Option<std::path::PathBuf>,
        /// How old the newest verified backup may be (90m, 26h, 3d, 1w).
        /// Default: with a schedule, every run it was due for must have
        /// happened; without one, 26h.
        #[arg(long, value_name = "AGE", value_parser = status::parse_age)]
        max_age: Option<chrono::Duration>,
    },
    /// Restore drill: read the newest backup and one older one back whole
    /// from every place a protected database's backups are kept (its
    /// folder, repository, offsite repository), check every file and
    /// SQLite's integrity, read the next part of each repository's packs,
    /// and record whether it is restorable. Writes nothing in the database's
    /// folder. Exit status 5 when a place did not give its backups back.
    Drill {
        /// The protected database (persnap database list); without it, all.
        name: Option<String>,
        /// The file whose first line is the repository's password (else
        /// your keyring, else asked on the terminal).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// The same for the offsite repository.
        #[arg(long, value_name = "FILE")]
        offsite_password_file: Option<PathBuf>,
        /// How hard the reads may use the disk (gentle or fast).
        #[arg(long, value_name = "gentle|fast", default_value = "gentle")]
        pace: persnap::pace::Pace,
    },
    /// The protected databases: add, list, remove.
    #[command(subcommand)]
    Database(database::DatabaseCommand),
    /// Repositories (restic format: deduplicated, compressed, encrypted; a
    /// folder or a server): create one, list its backups.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Write the manual pages and the Markdown reference (persnap.md)
    /// into DIR (for packaging).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// An offsite repository as a run opens it: where, its password, and
/// which backups it keeps.
type OffsiteUnlocked = (
    persnap::repository::Address,
    persnap::repository::Password,
    persnap::repository::Keep,
);

/// An error with the exit code it maps to.
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let code = error
            .downcast_ref::<persnap::Error>()
            .map_or(1, |e| e.kind().exit_code());
        Failure { code, error }
    }
}

/// What a backup reads, where it writes, and how it gets a consistent image
/// (`backup` and `schedule add`).
#[derive(clap::Args)]
pub struct BackupSetArgs {
    /// The folder holding the database (the correlator's -PstoreLocation).
    #[arg(long, value_name = "DIR")]
    source: PathBuf,
    /// The folder to write the backup into (preferably on another disk).
    /// With --repo and without --dest, the backup is staged in your cache
    /// folder and only the repository keeps it.
    #[arg(long, value_name = "DIR")]
    dest: Option<PathBuf>,
    /// The database file name (the correlator's -PstoreName).
    #[arg(long, value_name = "NAME", default_value = persnap::store::DEFAULT_STORE_NAME)]
    store_name: String,
    /// How to get a consistent image: auto, btrfs, lvm, vss, reflink or sqlite-online (`persnap --help` explains each).
    #[arg(long, default_value = "auto")]
    method: MethodChoice,
    /// Backup speed: gentle (small steps, leaving the disk to the correlator in
    /// between; up to twice as long) or fast (the disk flat out; the correlator's
    /// commits may wait while it copies).
    #[arg(long, value_name = "gentle|fast", default_value = "gentle")]
    pace: persnap::pace::Pace,
}

/// Which older backups of a store to keep at a location (retention);
/// neither given: keep all. Applied only after a verified backup.
#[derive(clap::Args)]
pub struct RetentionArgs {
    /// Keep the newest N good backups of this store at the location.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    keep_last: Option<u32>,
    /// Keep (at least) every backup of the last D days.
    #[arg(long, value_name = "D", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    keep_days: Option<u32>,
    /// Repositories: keep one backup an hour for the last N hours that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    keep_hourly: Option<u32>,
    /// Repositories: keep one backup a day for the last N days that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    keep_daily: Option<u32>,
    /// Repositories: keep one backup a week for the last N weeks that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    keep_weekly: Option<u32>,
}

impl RetentionArgs {
    /// --keep-last and --keep-days, as given.
    pub(crate) fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: self.keep_last,
            keep_days: self.keep_days,
        }
    }

    /// For a backup location: the hourly, daily and weekly rules are a
    /// repository's only, and are refused rather than ignored.
    pub(crate) fn for_folder(&self) -> Result<RetentionPolicy, Failure> {
        if self
            .keep_hourly
            .or(self.keep_daily)
            .or(self.keep_weekly)
            .is_some()
        {
            return Err(Failure {
                code: 2,
                error: anyhow::anyhow!(
                    "--keep-hourly, --keep-daily and --keep-weekly apply to repositories (--repo); for a backup location use --keep-last and --keep-days."
                ),
            });
        }
        Ok(self.policy())
    }

    pub(crate) fn for_repository(&self) -> persnap::repository::Keep {
        persnap::repository::Keep {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            within_days: self.keep_days,
        }
    }
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Create (or replace) a schedule (asks for administrator rights). Runs are recorded in your history.
    Add {
        /// A short name: lower-case letters, digits, dashes.
        name: String,
        #[command(flatten)]
        set: BackupSetArgs,
        /// When (local time): hourly, daily, 02:30, "Mon..Fri 22:00", "Sat,Sun 06:00";
        /// on Linux also any systemd calendar expression ("*-*-* 00/6:00").
        #[arg(long, value_name = "WHEN")]
        at: String,
        #[command(flatten)]
        retention: RetentionArgs,
        /// Windows: run as this account (DOMAIN\user) instead of SYSTEM, to reach a
        /// network location with its rights. Asks for its password, which Task
        /// Scheduler stores (read from standard input when that is not a terminal).
        #[arg(long, value_name = "ACCOUNT")]
        run_as: Option<String>,
        /// Also (or, without --dest, only) store each backup in a repository. Its
        /// password is kept where only root (Windows: SYSTEM) can read it.
        #[command(flatten)]
        repo: repo::RepoArgs,
        /// And a copy of each in a second, offsite repository (its password
        /// kept the same way; the same retention applies there).
        #[command(flatten)]
        offsite: repo::OffsiteArgs,
    },
    /// List the schedules.
    List,
    /// Remove a schedule (asks for administrator rights). Its backups and history stay.
    Remove {
        #[arg(required_unless_present = "all")]
        name: Option<String>,
        /// Every schedule (the uninstallers run this).
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
    /// Report schedules whose last run failed or that missed a run (exit status 1 if any).
    Check {
        /// Also raise a desktop notification for each (run at login).
        #[arg(long)]
        notify: bool,
    },
    /// Windows: what a schedule's task runs: the backup recorded for NAME
    /// in the administrators' schedules folder (no path is on the task's
    /// command line, where Task Scheduler would expand %VARIABLES%).
    #[command(hide = true)]
    Run { name: String },
    /// Run by a schedule's service after each run: a desktop notification
    /// when it did not succeed (systemd sets SERVICE_RESULT).
    #[command(hide = true)]
    Notify { name: String },
    /// Started as the user by a failed scheduled run, to show its
    /// notification in their session.
    #[command(hide = true)]
    Toast {
        #[arg(long)]
        summary: String,
        #[arg(long)]
        body: String,
        /// How long it stays (it is then removed from the notification area).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Backup {
            set:
                BackupSetArgs {
                    source,
                    dest,
                    store_name,
                    method,
                    pace,
                },
            timeout,
            snapshot_size,
            vss_timeout,
            lock_wait,
            retention,
            scheduled,
            history_dir,
            as_uid,
            staging,
            drill,
            repo,
            offsite,
        } => {
            let repo = repo.unlock()?;
            if dest.is_none() && repo.is_none() {
                return Err(Failure {
                    code: 2,
                    error: anyhow::anyhow!(
                        "Say where the backup goes: --dest DIR (a folder) and/or --repo URL (a repository)."
                    ),
                });
            }
            let offsite = offsite.unlock()?.map(|(location, password)| Target {
                location,
                password: Some(password),
                keep: retention.for_repository(),
                remember: false,
            });
            // What a drill after the run opens, kept before the run takes it.
            let drill_places = drill.then(|| {
                (
                    repo.clone(),
                    offsite.as_ref().map(|t| {
                        (
                            t.location.clone(),
                            t.password.clone().unwrap_or_else(|| unreachable!("given")),
                            t.keep.clone(),
                        )
                    }),
                )
            });
            let staged = dest.is_none();
            let dest = match (dest, staging) {
                (Some(dest), _) => dest,
                (None, Some(staging)) => staging,
                (None, None) => repo::staging_dir()?,
            };
            let req = BackupRequest {
                source,
                dest,
                store_name,
                method,
                online_timeout: Duration::from_secs(timeout),
                snapshot: SnapshotOptions {
                    size: snapshot_size,
                    vss_deadline: vss_timeout.map(std::time::Duration::from_secs),
                    lock_wait: lock_wait.map(std::time::Duration::from_secs),
                },
                // A staged set is removed anyway; a repository keeps by
                // its own rules (which may be hourly, daily, weekly).
                retention: if repo.is_some() && staged {
                    Default::default()
                } else {
                    retention.for_folder()?
                },
                pace,
                on_request: false,
                // The pipeline says so for the set it stages.
                staged: None,
            };
            let history = match history_dir {
                Some(dir) => History::at(dir),
                None => History::open_default()?,
            };
            let into = repo.map(|(location, password)| Target {
                location,
                password: Some(password),
                keep: retention.for_repository(),
                remember: false,
            });
            // Linux: a scheduled run pings its start here, as root before
            // it acts as its user (Windows: in `schedule run`).
            let start_ping = match &scheduled {
                Some(name) if cfg!(unix) && persnap::fsutil::is_root() => {
                    monitoring::start_ping(name)
                }
                _ => None,
            };
            let result = backup_cmd(
                req.clone(),
                staged,
                history.clone(),
                scheduled.clone(),
                as_uid,
                into,
                offsite,
            );
            // A good backup still fails the run when its places are no
            // longer restorable; a failed one keeps its own error.
            let result = match (drill_places, &scheduled) {
                (Some((repo, offsite)), Some(name)) => {
                    let drilled =
                        scheduled_drill(&req, staged, &history, name, as_uid, repo, offsite);
                    result.and(drilled)
                }
                _ => result,
            };
            if result.is_err()
                && let Some(name) = scheduled
            {
                after_failed_scheduled_run(&name);
            }
            // Never longer than the ping's deadline.
            if let Some(ping) = start_ping {
                let _ = ping.recv_timeout(persnap::monitor::ping::RUN_DEADLINE);
            }
            result
        }
        Command::Probe {
            source,
            store_name,
            dest,
            method,
            test_snapshot,
            json,
            pace,
        } => {
            let mut req = BackupRequest::new(source, dest.clone().unwrap_or_default());
            req.store_name = store_name;
            req.method = method;
            req.pace = pace;
            probe_cmd(req, dest.is_some(), test_snapshot, json)
        }
        // A folder given is a folder, even with a repository in the
        // environment.
        Command::Verify { backup, repo: _ } if backup.is_dir() => verify_cmd(backup),
        Command::Verify { backup, repo } => match repo.unlock()? {
            None => verify_cmd(backup),
            Some(unlocked) => repo::from_repository(unlocked, &backup, verify_cmd),
        },
        Command::History { json, repo } => history_cmd(json, repo.as_deref()),
        Command::Cleanup { dest } => cleanup_cmd(dest),
        Command::Restore {
            backup,
            repo,
            database,
            host,
            latest: _,
            to,
        } => restore::run(restore::Asked {
            backup,
            repo,
            database,
            host,
            to,
        }),
        Command::Schedule(cmd) => schedule_cmd(cmd),
        Command::Monitoring(cmd) => monitoring::run(cmd),
        Command::Database(cmd) => database::run(cmd),
        Command::Repo(cmd) => repo::run(cmd),
        Command::Status {
            json,
            format,
            textfile,
            max_age,
        } => {
            let format = match (json, format) {
                (true, _) => status::Format::Json,
                (false, format) => format.unwrap_or(status::Format::Text),
            };
            status::run(format, textfile, max_age)
        }
        Command::Drill {
            name,
            password_file,
            offsite_password_file,
            pace,
        } => drill::run(drill::Asked {
            name,
            password_file,
            offsite_password_file,
            pace,
        }),
        Command::Prune {
            dest,
            store_name,
            retention,
            dry_run,
            repo,
            database,
            host,
        } => match dest {
            // A folder given here wins over a repository from the environment.
            Some(dest) => prune_cmd(&dest, &store_name, retention.for_folder()?, dry_run),
            None => repo::prune(
                repo.required()?,
                host.unwrap_or_else(persnap::manifest::host_name),
                &database.unwrap_or_default(),
                &retention.for_repository(),
                dry_run,
            ),
        },
        Command::Man { dir } => man_pages(&dir),
        Command::Pin {
            backup,
            note,
            remove,
            repo,
        } => {
            if !backup.is_dir()
                && let Some(unlocked) = repo.unlock()?
            {
                return repo::pin(unlocked, &backup.to_string_lossy(), note.as_deref());
            }
            if remove {
                if persnap::pin::unpin(&backup)? {
                    eprintln!(
                        "Unpinned {}: retention may delete it again.",
                        backup.display()
                    );
                } else {
                    eprintln!("{} was not pinned.", backup.display());
                }
            } else {
                persnap::pin::pin(&backup, note.as_deref().unwrap_or_default())?;
                eprintln!("Pinned {}: retention never deletes it.", backup.display());
            }
            Ok(())
        }
    }
}

/// A backup, through the engine's pipeline: the same steps, records and
/// words as the app's. Here: the user of a scheduled run, the signals
/// that cancel, and what is printed.
fn backup_cmd(
    req: BackupRequest,
    staged: bool,
    history: History,
    schedule: Option<String>,
    as_uid: Option<u32>,
    repository: Option<Target>,
    offsite: Option<Target>,
) -> Result<(), Failure> {
    // A scheduled run starts as root and acts for the user who made the
    // schedule: the helper writes the backup as them, and this process
    // becomes them as soon as the helper runs. One that needs no snapshot
    // (sqlite-online) becomes its user right away, before it opens
    // anything. Without root there is nobody else to be.
    let online = req.method == MethodChoice::Explicit(Method::SqliteOnline);
    let as_uid = as_uid.filter(|uid| *uid != 0 && persnap::fsutil::is_root());
    #[cfg(unix)]
    if let (Some(uid), true) = (as_uid, online) {
        persnap::privileged::user::become_uid(uid).map_err(|e| anyhow::anyhow!(e))?;
    }
    let run_as = as_uid.filter(|_| !online);
    let cancel = CancelToken::new();
    install_cancel_on_signals(&cancel)?;
    let mut progress = Printer::new();
    let mut helper = launch::Launcher {
        route: None,
        become_user: run_as,
    };
    let job = Job {
        backup: req,
        staged,
        repository,
        offsite,
        schedule,
        run_as,
    };
    let mut recorder = history.clone();
    let result = pipeline::run(
        job,
        &history,
        &mut recorder,
        &mut helper,
        &mut progress,
        &cancel,
    );
    progress.finish_line();
    let done = result.map_err(remote_failure)?;
    let m = &done.manifest;
    let seconds = (m.finished - m.started).num_milliseconds() as f64 / 1000.0;
    eprintln!(
        "Backup verified: {} files, {}, integrity {}, {} pages, method {}, took {}.",
        m.files.len(),
        units::bytes(m.total_bytes),
        m.verification.integrity,
        m.verification.page_count,
        m.method,
        units::duration(Duration::from_secs_f64(seconds.max(0.0)))
    );
    eprintln!("How: {}.", done.how());
    if let Some(stored) = &done.stored {
        repo::print_stored(stored);
    }
    if let Some(Ok(copy)) = &done.offsite {
        eprint!("Offsite: ");
        repo::print_stored(copy);
    }
    for (_, line) in &done.notes {
        eprintln!("{line}");
    }
    println!("{}", done.shown());
    match &done.offsite {
        // Said above, in the notes; the exit status says it too.
        Some(Err(f)) => Err(Failure {
            code: f.kind.exit_code(),
            error: anyhow::anyhow!(
                "The offsite copy failed (said above); the backup itself is good and kept."
            ),
        }),
        _ => Ok(()),
    }
}

fn prune_cmd(
    dest: &std::path::Path,
    store_name: &str,
    policy: RetentionPolicy,
    dry_run: bool,
) -> Result<(), Failure> {
    if policy.is_keep_all() {
        return Err(Failure {
            code: 2,
            error: anyhow::anyhow!(
                "Say what to keep: --keep-last N and/or --keep-days D. Nothing was deleted."
            ),
        });
    }
    let dest = backup::canonical_dest(dest)?;
    let removed = persnap::retention::apply(&dest, store_name, &policy, dry_run)?;
    let verb = if dry_run { "Would delete" } else { "Deleted" };
    for path in &removed {
        println!("{verb} {}", path.display());
    }
    eprintln!(
        "{} backup(s) {} ({}).",
        removed.len(),
        if dry_run {
            "would be deleted"
        } else {
            "deleted"
        },
        policy.describe()
    );
    Ok(())
}

/// Resolve a path here when possible (see [`pipeline::resolve`]).
fn resolve(
    path: &std::path::Path,
    canonical: fn(&std::path::Path) -> persnap::Result<PathBuf>,
) -> Result<PathBuf, Failure> {
    Ok(pipeline::resolve(path, canonical)?)
}

fn remote_failure(f: RemoteFailure) -> Failure {
    let error = match f.step {
        Some(step) => anyhow::anyhow!("backup failed during {step}: {}", f.message),
        None => anyhow::anyhow!("{}", f.message),
    };
    Failure {
        code: f.kind.exit_code(),
        error,
    }
}

fn install_cancel_on_signals(cancel: &CancelToken) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        // A second signal while cancelling exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 130, cancel.flag())?;
        signal_hook::flag::register(sig, cancel.flag())?;
    }
    Ok(())
}

fn probe_cmd(
    req: BackupRequest,
    dest_given: bool,
    test_snapshot: bool,
    json: bool,
) -> Result<(), Failure> {
    let report = if test_snapshot {
        let request = Request::Probe {
            source: resolve(&req.source, volume::canonical)?,
            dest: if dest_given {
                Some(resolve(&req.dest, backup::canonical_dest)?)
            } else {
                None
            },
            store_name: req.store_name.clone(),
            method: req.method,
            options: BackupOptions::default(),
            test_snapshot: true,
        };
        let mut printer = Printer::new();
        launch::ask(&request, &mut printer, &mut Discard, &CancelToken::new())
            .map(|answer::Probed(report)| report)
            .map_err(remote_failure)?
    } else {
        persnap::probe::probe(&req, dest_given, false)?
    };
    let report = report.look_up(&persnap::registry::Registry::system());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_probe(&report);
    match &report.test_snapshot {
        Some(Err(why)) => Err(Failure {
            code: persnap::ErrorKind::Snapshot.exit_code(),
            error: anyhow::anyhow!("test snapshot failed: {why}"),
        }),
        _ => Ok(()),
    }
}

fn print_probe(report: &ProbeReport) {
    let store = &report.store;
    println!("Database {} in {}", store.name, store.dir.display());
    println!(
        "  journal mode: {}, page size {}, {} pages",
        store.journal_mode(),
        store.header.page_size,
        store.header.page_count
    );
    for f in &store.files {
        println!("  {:<40} {:>12}", f.name, units::bytes(f.size));
    }
    let m = &report.volume.mount;
    println!(
        "Volume: {} ({}) mounted at {}",
        m.device,
        m.fs_type,
        m.mount_point.display()
    );
    match &report.volume.snapshot {
        volume::SnapshotSupport::Available { method, detail } => {
            println!("Snapshot method: {method} ({detail})")
        }
        volume::SnapshotSupport::Unavailable { reason } => {
            println!(
                "Snapshot method: none: {reason}. Only --method sqlite-online (or stopping the correlator) can back this up."
            )
        }
    }
    if let Some(why) = &report.blocked {
        println!("A backup cannot run: {why}");
    }
    let snapshot = report.method.is_some_and(Method::is_snapshot);
    match &report.protected_as {
        Some(name) => println!(
            "Protected as {name}: backing it up needs only the backup permission (which operators can be given)."
        ),
        None if snapshot && cfg!(unix) => println!(
            "Not a protected database: backing it up needs the administrator's password each time (`persnap database add NAME --source {}{}` protects it).",
            report.store.dir.display(),
            if store.name == persnap::store::DEFAULT_STORE_NAME {
                String::new()
            } else {
                format!(" --store-name {}", store.name)
            }
        ),
        None => {}
    }
    if !report.steps.is_empty() {
        println!("A backup would, as administrator:");
        for (i, step) in report.steps.iter().enumerate() {
            println!("  {}. {step}", i + 1);
        }
    }
    for warning in &report.warnings {
        println!("Warning: {warning}");
    }
    match &report.test_snapshot {
        Some(Ok(msg)) => println!("{msg}"),
        Some(Err(why)) => println!("Test snapshot failed: {why}"),
        None => {}
    }
}

fn verify_cmd(dir: PathBuf) -> Result<(), Failure> {
    let cancel = CancelToken::new();
    install_cancel_on_signals(&cancel)?;
    let scratch_parent = verify::scratch_parent(&dir);
    let mut printer = Printer::new();
    printer.phase(Phase::Verify);
    let mut meter = persnap::copy::Meter {
        phase: Phase::Verify,
        done: 0,
        total: 0,
        progress: &mut printer,
        cancel: &cancel,
        pacer: persnap::pace::Pacer::fast(),
    };
    let result = verify::verify_backup(&dir, &scratch_parent, &mut meter);
    printer.finish_line();
    let (manifest, v) = result?;
    println!(
        "OK: {} files ({}) match their SHA-256; integrity {}; {} pages of {} bytes; backed up {} from {}",
        manifest.files.len(),
        units::bytes(manifest.total_bytes),
        v.integrity,
        v.page_count,
        v.page_size,
        manifest.finished.local_second(),
        manifest.source_dir.display()
    );
    println!("How: {}.", v.read_back_words());
    Ok(())
}

fn history_cmd(json: bool, repo: Option<&str>) -> Result<(), Failure> {
    let history = History::open_default()?;
    history.recover()?;
    let mut runs = history.load()?;
    if let Some(repo) = repo {
        let shown = persnap::repository::Address::parse(repo)?.display();
        runs.retain(|run| {
            let offsite = match &run.offsite {
                Some(persnap::repository::Offsite::Stored { copy }) => Some(&copy.location),
                Some(persnap::repository::Offsite::Failed { location, .. }) => Some(location),
                None => None,
            };
            run.repository.as_ref().map(|r| &r.location) == Some(&shown)
                || offsite == Some(&shown)
                || run.destination.as_os_str() == shown.as_str()
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    if runs.is_empty() {
        match repo {
            Some(repo) => println!(
                "None of your backups went into {} (persnap repo list shows what it holds).",
                persnap::repository::Address::parse(repo)?.display()
            ),
            None => println!(
                "No backups yet. History is kept in {}.",
                history.path().display()
            ),
        }
        return Ok(());
    }
    println!(
        "{:<19}  {:<11}  {:<13}  {:>10}  {:>9}  {:<6}  BACKUP / REASON",
        "STARTED", "RESULT", "METHOD", "SIZE", "DURATION", "CHECK"
    );
    for run in &runs {
        println!("{}", history_row(run));
    }
    Ok(())
}

fn history_row(run: &Run) -> String {
    let started = run.started.local_second();
    let method = run
        .method
        .map_or_else(|| run.requested_method.to_string(), |m| m.to_string());
    let size = if run.bytes > 0 {
        units::bytes(run.bytes)
    } else {
        "-".into()
    };
    let duration = run
        .duration_secs
        .map_or("-".into(), |s| units::duration(Duration::from_secs_f64(s)));
    let check = run
        .verification
        .as_ref()
        .map_or("-", |v| v.integrity.as_str());
    let detail = match (&run.outcome, &run.backup_path, &run.repository) {
        (Outcome::Failed { step, message, .. }, _, _) => format!("{step}: {message}"),
        (_, Some(path), _) => path.display().to_string(),
        (_, None, Some(stored)) => format!("{} in {}", stored.short_id(), stored.location),
        _ => run.source.display().to_string(),
    };
    format!(
        "{started:<19}  {:<11}  {method:<13}  {size:>10}  {duration:>9}  {check:<6}  {detail}",
        run.outcome.label()
    )
}

fn cleanup_cmd(extra: Vec<PathBuf>) -> Result<(), Failure> {
    let history = History::open_default()?;
    history.recover()?;
    let mut dests: Vec<PathBuf> = history.load()?.into_iter().map(|r| r.destination).collect();
    dests.extend(extra);
    // Only folders that still exist, in canonical form (the helper insists).
    let mut dests: Vec<PathBuf> = dests
        .iter()
        .filter_map(|d| persnap::fsutil::canonicalize(d).ok())
        .filter(|d| d.is_dir())
        .collect();
    dests.sort();
    dests.dedup();
    // Unfinished backup folders are this user's own: removed here, as the
    // user. Snapshots and mounts need the administrator (the helper).
    let mut lines = backup::sweep_work_dirs(&dests);
    match launch::route() {
        Ok(_) => {
            let answer::Cleaned(removed) = launch::ask(
                &Request::Cleanup {},
                &mut Printer::new(),
                &mut Discard,
                &CancelToken::new(),
            )
            .map_err(remote_failure)?;
            lines.extend(removed);
        }
        Err(why) => eprintln!(
            "note: {}; leftover snapshots were not looked for.",
            why.message.trim_end_matches('.')
        ),
    }
    if lines.is_empty() {
        println!("Nothing to clean up.");
    }
    for line in &lines {
        println!("{line}");
    }
    if lines.iter().any(|l| l.starts_with("Could not")) {
        let error = anyhow::anyhow!(
            "some leftovers could not be removed (see above); run `persnap cleanup` as root"
        );
        return Err(Failure {
            code: persnap::ErrorKind::Snapshot.exit_code(),
            error,
        });
    }
    Ok(())
}

/// Prints phases and throttled progress to stderr.
struct Printer {
    tty: bool,
    last: Instant,
    phase_started: Instant,
    open_line: bool,
}

impl Printer {
    fn new() -> Self {
        let now = Instant::now();
        Printer {
            tty: std::io::stderr().is_terminal(),
            last: now,
            phase_started: now,
            open_line: false,
        }
    }

    fn finish_line(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
    }
}

impl Progress for Printer {
    fn phase(&mut self, phase: Phase) {
        self.finish_line();
        self.phase_started = Instant::now();
        tracing::info!("== {phase}");
        eprintln!("== {phase}");
    }

    fn bytes(&mut self, _phase: Phase, done: u64, total: u64) {
        let now = Instant::now();
        let interval = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if now.duration_since(self.last) < interval && done < total {
            return;
        }
        self.last = now;
        let secs = now
            .duration_since(self.phase_started)
            .as_secs_f64()
            .max(1e-3);
        let pct = if total > 0 {
            done as f64 * 100.0 / total as f64
        } else {
            100.0
        };
        let line = format!(
            "   {} of {} ({pct:.0}%), {}/s",
            units::bytes(done),
            units::bytes(total),
            units::bytes((done as f64 / secs) as u64)
        );
        if self.tty {
            eprint!("\r{line:<60}");
            let _ = std::io::stderr().flush();
            self.open_line = true;
        } else {
            eprintln!("{line}");
        }
    }

    fn log(&mut self, level: Level, message: &str) {
        self.finish_line();
        match level {
            Level::Info => {
                tracing::info!("{}", persnap::monitor::log::one_line(message));
                eprintln!("   {message}");
            }
            Level::Warning => {
                tracing::warn!("{}", persnap::monitor::log::one_line(message));
                eprintln!("   warning: {message}");
            }
        }
    }
}

/// Write the manual pages (`persnap.1`, `persnap-backup.1`, …), generated
/// from the same definitions as `--help`, into `dir`, and beside them the
/// same as one Markdown page (`persnap.md`, kept as docs/CLI.md).
fn man_pages(dir: &std::path::Path) -> Result<(), Failure> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    std::fs::write(dir.join("persnap.md"), reference_markdown())?;
    Ok(())
}

/// The command-line reference in Markdown, from the same definitions as
/// `--help` and the manual pages (docs/CLI.md; a test fails when that
/// file is not what this makes).
pub fn reference_markdown() -> String {
    let options = clap_markdown::MarkdownOptions::new()
        .title("persnap: the command line".to_owned())
        .show_footer(false);
    format!(
        "<!-- Made from the program's own definitions by `persnap man DIR` (DIR/persnap.md);\n     \
         UPDATE_DOCS=1 cargo test --bin persnap reference rewrites it. Do not edit by hand. -->\n\n{}",
        clap_markdown::help_markdown_custom::<Cli>(&options)
    )
}

/// Where a schedule's backups go, in words.
fn schedule_target(s: &persnap::schedule::Schedule) -> String {
    match &s.repository {
        None => s.dest.display().to_string(),
        Some(r) if r.staged => format!("the repository {}", r.location),
        Some(r) => format!("{} and the repository {}", s.dest.display(), r.location),
    }
}

fn schedule_cmd(cmd: ScheduleCommand) -> Result<(), Failure> {
    use persnap::schedule;
    match cmd {
        ScheduleCommand::Add {
            name,
            set:
                BackupSetArgs {
                    source,
                    dest,
                    store_name,
                    method,
                    pace,
                },
            at,
            retention,
            run_as,
            repo,
            offsite,
        } => {
            let run_as = run_as
                .map(|account| account_with_password(&account))
                .transpose()?;
            let repo = repo.unlock()?;
            let offsite = repo::tested(offsite.unlock()?, retention.for_repository(), false)
                .map_err(|e| anyhow::anyhow!("The offsite repository: {e}"))?;
            let staged = dest.is_none();
            let dest = match (dest, &repo) {
                (Some(dest), _) => dest,
                (None, Some(_)) => repo::staging_dir()?,
                (None, None) => {
                    return Err(Failure {
                        code: 2,
                        error: anyhow::anyhow!(
                            "Say where the backups go: --dest DIR (a folder) and/or --repo URL (a repository)."
                        ),
                    });
                }
            };
            let mut req = BackupRequest::new(
                resolve(&source, volume::canonical)?,
                resolve(&dest, backup::canonical_dest)?,
            );
            req.store_name = store_name;
            req.method = method;
            req.pace = pace;
            req.retention = if repo.is_some() && staged {
                Default::default()
            } else {
                retention.for_folder()?
            };
            let repository = repo::tested(repo, retention.for_repository(), staged)?;
            let history = History::open_default()?;
            let request = launch::schedule_request(
                &name,
                &req,
                &at,
                history.dir(),
                run_as,
                repository,
                offsite,
            )?;
            let answer::Scheduled {
                schedule: s,
                installed,
            } = call_helper(&request)?;
            eprintln!(
                "Schedule {}: back up {} to {}, {}.",
                s.name,
                s.source.display(),
                schedule_target(&s),
                s.when.describe()
            );
            eprintln!("{}", installed.note);
            Ok(())
        }
        ScheduleCommand::List => {
            for (s, status) in schedules_with_status()? {
                println!(
                    "{}\t{}\t{} -> {}\t{}\t{}",
                    s.name,
                    s.when.describe(),
                    s.source.display(),
                    schedule_target(&s),
                    match &s.repository {
                        Some(r) if !r.keep.is_keep_all() => r.keep.describe(),
                        Some(_) => "keep every backup".to_owned(),
                        None => s.retention.describe(),
                    },
                    status_line(&status)
                );
            }
            Ok(())
        }
        ScheduleCommand::Run { name } => {
            let s = schedule::taskschd::recorded(&name, persnap::repository::deliver::staging_dir)?;
            let args =
                std::iter::once("persnap".to_owned()).chain(schedule::taskschd::run_args(&s));
            let cli = Cli::try_parse_from(args).map_err(|e| Failure {
                code: persnap::ErrorKind::BadInput.exit_code(),
                error: anyhow::anyhow!(
                    "the schedule {name} records a backup persnap cannot run: {e}"
                ),
            })?;
            // Windows: the task is SYSTEM's (or its account's); Linux does
            // this in the service's `ExecStart` and `schedule notify`.
            let alerts = monitoring::alerts_for_run();
            if let Some(alerts) = &alerts
                && let Err(e) = alerts.started(&name)
            {
                monitoring::warn(&e);
            }
            let ran = run(cli);
            monitoring::refresh_textfile();
            if let Some(alerts) = alerts {
                let last = find_schedule(&name).and_then(|s| last_scheduled_run(&s, false));
                let ending = scheduled_ending(&name, ran.is_ok(), "Task Scheduler", last.as_ref());
                monitoring::run_ended(alerts, &name, ending);
            }
            ran
        }
        ScheduleCommand::Check { notify } => check_schedules(notify),
        ScheduleCommand::Notify { name } => {
            // As root, before acting as the schedule's user.
            monitoring::refresh_textfile();
            let alerts = monitoring::alerts_for_run();
            after_scheduled_service(&name, alerts);
            Ok(())
        }
        ScheduleCommand::Toast {
            summary,
            body,
            seconds,
        } => show_toast(&summary, &body, Duration::from_secs(seconds)),
        ScheduleCommand::Remove { name: None, .. } => {
            // Every one is tried: the uninstallers run this, and one that
            // cannot go must not leave the others running a deleted program.
            let all = schedule::list()?;
            let mut failed = Vec::new();
            for s in &all {
                if let Err(e) = remove_schedule(&s.name) {
                    eprintln!("Could not remove schedule {}: {:#}", s.name, e.error);
                    failed.push((s.name.clone(), e));
                }
            }
            eprintln!("Removed {} schedule(s).", all.len() - failed.len());
            // The uninstallers run this: no task of persnap's may be left
            // running a deleted program, the hourly watch neither.
            match persnap::schedule::watch::keep(false, std::path::Path::new("")) {
                Ok(Some(done)) => eprintln!("{done} (`persnap monitoring set` puts it back.)"),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("Could not remove the hourly watch: {e}");
                    failed.push(("the hourly watch".into(), e.into()));
                }
            }
            let Some(code) = failed.last().map(|(_, e)| e.code) else {
                return Ok(());
            };
            let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
            Err(Failure {
                code,
                error: anyhow::anyhow!(
                    "{} schedule(s) could not be removed ({}); see the reasons above, then run `persnap schedule remove --all` again as administrator.",
                    names.len(),
                    names.join(", ")
                ),
            })
        }
        ScheduleCommand::Remove {
            name: Some(name), ..
        } => remove_schedule(&name),
    }
}

/// The account a schedule runs as, with its password: asked for without
/// echo on a terminal, else one line of standard input (for scripts).
fn account_with_password(account: &str) -> Result<persnap::protocol::RunAs, Failure> {
    persnap::schedule::validate_account(account)?;
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {account}: "))?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        return Err(Failure {
            code: persnap::ErrorKind::BadInput.exit_code(),
            error: anyhow::anyhow!(
                "no password for {account}; Task Scheduler needs it to run the backup as that account"
            ),
        });
    }
    Ok(persnap::protocol::RunAs {
        account: account.to_owned(),
        password: persnap::schedule::Secret(password),
    })
}

fn remove_schedule(name: &str) -> Result<(), Failure> {
    persnap::schedule::validate_name(name)?;
    let request = Request::ScheduleRemove {
        name: name.to_owned(),
    };
    let answer::Unscheduled { existed, .. } = call_helper(&request)?;
    if !existed {
        return Err(Failure {
            code: 2,
            error: anyhow::anyhow!(
                "There is no schedule named {name} (persnap schedule list shows them)."
            ),
        });
    }
    eprintln!("Removed schedule {name}; its backups and history stay.");
    Ok(())
}

/// Send one request through the helper (elevating as needed), relaying
/// its progress to the terminal.
fn call_helper<A: answer::Answer>(request: &Request) -> Result<A, Failure> {
    let mut progress = Printer::new();
    let mut history = persnap::history::Discard;
    let result = launch::ask(request, &mut progress, &mut history, &CancelToken::new());
    progress.finish_line();
    result.map_err(remote_failure)
}

fn status_line(status: &persnap::schedule::Status) -> String {
    use persnap::schedule::Status;
    match status {
        Status::Fine { last: None } => "not run yet".into(),
        Status::Fine { last: Some(t) } => format!("last ran {}", t.local_minute()),
        Status::Failed { run } => format!(
            "LAST RUN {} {}",
            run.outcome.label().to_uppercase(),
            run.started.local_minute()
        ),
        Status::Missed { due } => format!("MISSED the run due {}", due.local_minute()),
    }
}

#[cfg(windows)]
fn show_toast(summary: &str, body: &str, keep: Duration) -> Result<(), Failure> {
    crate::notify::windows::show_balloon(summary, body, keep)?;
    eprintln!("Shown: {summary}");
    Ok(())
}

#[cfg(not(windows))]
fn show_toast(summary: &str, body: &str, _keep: Duration) -> Result<(), Failure> {
    let own = History::default_dir().unwrap_or_else(|| PathBuf::from("/"));
    crate::notify::desktop(&own, summary, body)?;
    Ok(())
}

/// Every installed schedule with its state, judged from the history it
/// records into.
fn schedules_with_status()
-> persnap::Result<Vec<(persnap::schedule::Schedule, persnap::schedule::Status)>> {
    let now = chrono::Local::now();
    Ok(persnap::schedule::list()?
        .into_iter()
        .map(|s| {
            let runs = History::at(&s.history_dir).load().unwrap_or_default();
            let status = persnap::schedule::status(&s, &runs, now);
            (s, status)
        })
        .collect())
}

/// Report schedules whose last run failed or that missed a run; exit 1 if
/// any did. With `notify`, also as desktop notifications (run at login).
fn check_schedules(notify: bool) -> Result<(), Failure> {
    use persnap::schedule::{self, Status};
    let mut problems = 0;
    for (s, status) in schedules_with_status()? {
        let (summary, body) = match status {
            Status::Fine { .. } => continue,
            Status::Failed { run } => {
                schedule::failure_message(&s.name, Some(&run), "see persnap history")
            }
            Status::Missed { due } => schedule::missed_message(&s, due),
        };
        problems += 1;
        println!("{summary}: {body}");
        if notify && let Err(e) = crate::notify::desktop(&s.history_dir, &summary, &body) {
            eprintln!("persnap: no desktop notification ({e})");
        }
    }
    if problems > 0 {
        return Err(Failure {
            code: 1,
            error: anyhow::anyhow!("{problems} schedule(s) need attention"),
        });
    }
    eprintln!("All schedules ran as planned.");
    Ok(())
}

/// After a scheduled run, as its service's `ExecStopPost`: the
/// administrators' channels first, then, unless systemd says it
/// succeeded, the user whose history it records into, on their desktop.
/// Never fails the unit.
fn after_scheduled_service(name: &str, alerts: Option<persnap::monitor::alert::Alerts>) {
    let result = std::env::var("SERVICE_RESULT").unwrap_or_else(|_| "unknown".into());
    let ok = result == "success";
    let service = persnap::schedule::systemd::service_name(name);
    let said = format!("systemd: {result}; see journalctl -u {service}");
    let Some(s) = find_schedule(name) else {
        eprintln!("persnap: no schedule named {name}; nothing to notify");
        return;
    };
    let last = last_scheduled_run(&s, result == "timeout");
    let ending = scheduled_ending(name, ok, &said, last.as_ref());
    // Still root: the schedule's user cannot stop this process before
    // the administrators are told.
    if let Some(alerts) = alerts {
        monitoring::run_ended(alerts, name, ending.clone());
    }
    if !ok {
        tell_scheduled_failure(&s, last.as_ref(), &ending);
    }
}

fn find_schedule(name: &str) -> Option<persnap::schedule::Schedule> {
    persnap::schedule::list()
        .ok()
        .and_then(|all| all.into_iter().find(|s| s.name == name))
}

/// The user a scheduled run acts for (Unix): who made the schedule, or
/// for schedules made before that was recorded, the history folder's
/// owner. `None` when this process is that user already, or root's own.
#[cfg(unix)]
fn schedule_maker(s: &persnap::schedule::Schedule) -> Option<u32> {
    s.uid
        .or_else(|| persnap::sys::owner_of(&s.history_dir))
        .filter(|uid| *uid != 0 && persnap::fsutil::is_root())
}

/// `read` done as the maker of schedule `s` (see [`schedule_maker`]), on
/// a thread of its own whose file access is theirs: a root read of a
/// user's folder could be pointed anywhere. When that cannot be, it is
/// said, and nothing is read.
fn as_maker<T: Send + Default>(
    s: &persnap::schedule::Schedule,
    read: impl FnOnce() -> T + Send,
) -> T {
    #[cfg(unix)]
    if let Some(uid) = schedule_maker(s) {
        return persnap::privileged::user::Identity::of_uid(uid)
            .and_then(|user| user.run_as(read))
            .unwrap_or_else(|e| {
                eprintln!("persnap: cannot read the history as uid {uid} ({e})");
                T::default()
            });
    }
    #[cfg(not(unix))]
    let _ = s;
    read()
}

/// The run that decided how schedule `s` last ended (its backup, or its
/// restore drill when that failed), read as its maker; a run stopped at
/// its time limit is recorded as hung first.
fn last_scheduled_run(
    s: &persnap::schedule::Schedule,
    timed_out: bool,
) -> Option<persnap::history::Run> {
    as_maker(s, || {
        let history = History::at(&s.history_dir);
        if timed_out && let Err(e) = persnap::schedule::record_hung(&history, &s.name) {
            eprintln!("persnap: could not record that the run hung ({e})");
        }
        let runs = history.load().unwrap_or_default();
        s.deciding_run(&runs).cloned()
    })
}

/// Every run in the history of schedule `s`, read as its maker.
pub(crate) fn runs_as_maker(s: &persnap::schedule::Schedule) -> Vec<persnap::history::Run> {
    as_maker(s, || History::at(&s.history_dir).load().unwrap_or_default())
}

/// How scheduled run `name` ended, in the words the card and the
/// notification use.
fn scheduled_ending(
    name: &str,
    ok: bool,
    scheduler_said: &str,
    last: Option<&persnap::history::Run>,
) -> persnap::monitor::alert::Ending {
    if ok {
        let body = last
            .and_then(persnap::monitor::events::of)
            .map(|(_, message)| message)
            .unwrap_or_else(|| "It ran and ended well.".to_owned());
        persnap::monitor::alert::Ending {
            ok,
            summary: format!("persnap: the scheduled backup \u{201c}{name}\u{201d} succeeded"),
            body,
        }
    } else {
        let (summary, body) = persnap::schedule::failure_message(name, last, scheduler_said);
        persnap::monitor::alert::Ending { ok, summary, body }
    }
}

/// A scheduled backup failed. Linux: the service's ExecStopPost tells the
/// user (also when the process dies). Windows: tell them now.
/// A scheduled run's restore drill, when one is due: its folder (unless
/// it only stages for a repository), its repository and offsite one, as
/// the user who made the schedule.
fn scheduled_drill(
    req: &BackupRequest,
    staged: bool,
    history: &History,
    name: &str,
    as_uid: Option<u32>,
    repo: Option<(persnap::repository::Address, persnap::repository::Password)>,
    offsite: Option<OffsiteUnlocked>,
) -> Result<(), Failure> {
    // Never as root for a user's schedule (the run may have stopped
    // before it became them).
    #[cfg(unix)]
    if let Some(uid) = as_uid.filter(|uid| *uid != 0 && persnap::fsutil::is_root()) {
        persnap::privileged::user::become_uid(uid).map_err(|e| anyhow::anyhow!(e))?;
    }
    #[cfg(not(unix))]
    let _ = as_uid;
    let runs = history.load()?;
    if !persnap::drill::due(&req.source, &req.store_name, &runs, chrono::Utc::now()) {
        return Ok(());
    }
    let open = |location: persnap::repository::Address, password| {
        persnap::repository::Repo::open(&location, &password)
    };
    let repository = repo.map(|(l, p)| open(l, p)).transpose();
    let offsite = offsite.map(|(l, p, _)| open(l, p)).transpose();
    let (repository, offsite) = match (repository, offsite) {
        (Ok(r), Ok(o)) => (r, o),
        (Err(e), _) | (_, Err(e)) => {
            return Err(Failure {
                code: e.kind().exit_code(),
                error: anyhow::anyhow!("The restore drill could not open a repository: {e}"),
            });
        }
    };
    let subject = persnap::drill::Subject {
        folder: req.source.clone(),
        store_name: req.store_name.clone(),
        database: repo::database_name(&req.source, &req.store_name),
    };
    // A run that stages for its repository stages in the user's folder.
    let staging = if staged {
        req.dest.clone()
    } else {
        repo::staging_dir()?
    };
    eprintln!("A restore drill is due:");
    let cancel = CancelToken::new();
    let report = drill::drill_one(
        &subject,
        (!staged).then(|| req.dest.clone()),
        repository.as_ref(),
        offsite.as_ref(),
        history,
        &staging,
        req.pace,
        Some(name.to_owned()),
        &cancel,
    )?;
    if report.passed() {
        return Ok(());
    }
    Err(Failure {
        code: persnap::ErrorKind::Verify.exit_code(),
        error: anyhow::anyhow!(
            "The restore drill found it not restorable from {}.",
            report.problems().join("; ")
        ),
    })
}

fn after_failed_scheduled_run(name: &str) {
    if cfg!(windows)
        && let Some(s) = find_schedule(name)
    {
        let last = last_scheduled_run(&s, false);
        let ending = scheduled_ending(name, false, "Task Scheduler", last.as_ref());
        tell_scheduled_failure(&s, last.as_ref(), &ending);
    }
}

/// Tell the user who made schedule `s` that its run failed: its event
/// when systemd stopped it on request, and a desktop notification, as
/// them.
fn tell_scheduled_failure(
    s: &persnap::schedule::Schedule,
    last: Option<&persnap::history::Run>,
    ending: &persnap::monitor::alert::Ending,
) {
    // A run stopped on request: its event is this one (the pipeline
    // leaves a stopped scheduled run to this; a hung one was reported
    // when it was recorded).
    if let Some(run) = last
        && run.outcome == persnap::history::Outcome::Cancelled
    {
        persnap::monitor::events::report(run);
    }
    eprintln!("{}: {}", ending.summary, ending.body);
    #[cfg(unix)]
    if let Some(uid) = schedule_maker(s)
        && let Err(e) = persnap::privileged::user::become_uid(uid)
    {
        eprintln!("persnap: cannot act as uid {uid} ({e}); no desktop notification");
        return;
    }
    if let Err(e) = crate::notify::desktop(&s.history_dir, &ending.summary, &ending.body) {
        eprintln!("persnap: no desktop notification ({e})");
    }
}

#[cfg(test)]
mod tests {
    /// docs/CLI.md is what the program says of itself (on Linux: the
    /// Windows build offers a few options more); UPDATE_DOCS=1 rewrites it.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_command_line_reference_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CLI.md");
        let made = super::reference_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &made).unwrap();
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            kept == made,
            "docs/CLI.md is not what the command line says of itself: run `UPDATE_DOCS=1 cargo test --bin persnap reference` and commit it"
        );
    }

    /// clap's own consistency checks of every command and argument (an
    /// argument named in `required_unless_present` must exist in each
    /// command that flattens it, and so on): these panic only when that
    /// command is parsed, so check them all here.
    #[test]
    fn every_command_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
