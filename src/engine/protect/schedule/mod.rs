//! Scheduled backups: what a schedule is, when it runs, and whether its
//! last run failed or never happened. Installing one is per platform:
//! `systemd.rs` (a timer and a service, Linux) and `taskschd.rs` (a Task
//! Scheduler task, Windows); both run the same `persnap backup … --scheduled
//! NAME` as root/SYSTEM, recorded in the history of the user who made the
//! schedule, like a manual run.
//!
//! Times are the machine's local time. [`When`] has the forms both
//! schedulers share (hourly, daily at, on weekdays at) plus, on Linux, any
//! systemd calendar expression.

pub mod systemd;
pub mod taskschd;
pub mod watch;

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Local, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::history::{Outcome, Run, RunKind};
use crate::method::MethodChoice;
use crate::retention::RetentionPolicy;

/// How late a run may start before it counts as missed.
pub const MISSED_GRACE: chrono::Duration = chrono::Duration::minutes(30);

/// One scheduled backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Short name: lower-case letters, digits and dashes.
    pub name: String,
    pub source: PathBuf,
    pub dest: PathBuf,
    pub store_name: String,
    pub method: MethodChoice,
    #[serde(default)]
    pub retention: RetentionPolicy,
    /// The backup speed of its runs.
    #[serde(default)]
    pub pace: crate::pace::Pace,
    pub when: When,
    /// The history the runs are recorded in (the user's).
    pub history_dir: PathBuf,
    /// When the schedule was installed (runs due before do not count).
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
    /// The user who made it (Unix): its runs write the backups and the
    /// history as this user, never as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Windows: the account the task runs as (`DOMAIN\user`), instead of
    /// SYSTEM, to reach network locations with that account's rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// That account's password, stored by Task Scheduler at install and
    /// never written anywhere by persnap (not serialized).
    #[serde(skip)]
    pub password: Secret,
    /// A repository the runs store their backups in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<ScheduleRepository>,
    /// What opens that repository: written by the helper into
    /// [`unlock_path`], which only root (SYSTEM) can read; never
    /// serialized with the schedule (whose record everyone may read).
    #[serde(skip)]
    pub unlock: Option<crate::repository::Unlock>,
    /// A second, offsite repository each run also stores the verified
    /// backup in (3-2-1), after `repository` or `dest` has it; the same
    /// retention applies there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<ScheduleRepository>,
    /// What opens it, written into [`offsite_unlock_path`] like `unlock`.
    #[serde(skip)]
    pub offsite_unlock: Option<crate::repository::Unlock>,
    /// Its runs also make a restore drill of its backups when one is due
    /// (see `drill`; schedules made before drills existed do not).
    #[serde(default)]
    pub drill: bool,
}

/// The repository of a schedule, as everyone may see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRepository {
    /// Where, as shown (no password in it).
    pub location: String,
    /// Which of the database's backups the repository keeps.
    #[serde(default)]
    pub keep: crate::repository::Keep,
    /// `dest` only stages each backup for the repository: the set is
    /// removed there once it is stored and checked.
    pub staged: bool,
}

/// Where the helper keeps what opens schedule `name`'s repository:
/// `/etc/persnap/repositories/NAME.json` (beside the units when
/// `PERSNAP_UNIT_DIR` moves them, for tests), or
/// `%ProgramData%\persnap\repositories\NAME.json`.
pub fn unlock_path(name: &str) -> PathBuf {
    #[cfg(windows)]
    let dir = crate::sys::admin_root().join("repositories");
    #[cfg(not(windows))]
    let dir = match std::env::var_os("PERSNAP_UNIT_DIR") {
        Some(units) => PathBuf::from(units).join("persnap-repositories"),
        None => PathBuf::from("/etc/persnap/repositories"),
    };
    dir.join(format!("{name}.json"))
}

/// Where the helper keeps what opens schedule `name`'s offsite
/// repository: beside [`unlock_path`], as `NAME.offsite.json` (a schedule's
/// name holds no dot, so no other schedule's file has that name).
pub fn offsite_unlock_path(name: &str) -> PathBuf {
    unlock_path(name).with_file_name(format!("{name}.offsite.json"))
}

/// Write what opens the repositories of `s` (if it has them) where only
/// root (SYSTEM) can read it; a file it no longer needs goes.
pub fn write_unlock(s: &Schedule) -> Result<()> {
    for (unlock, path) in [
        (&s.unlock, unlock_path(&s.name)),
        (&s.offsite_unlock, offsite_unlock_path(&s.name)),
    ] {
        let Some(unlock) = unlock else {
            remove_file(&path)?;
            continue;
        };
        let json = serde_json::to_vec(unlock).expect("an unlock serializes");
        crate::fsutil::write_secret(&path, &json, s.run_as.as_deref()).map_err(crate::error::Error::io(
            "write",
            path.clone(),
            "Scheduling needs administrator rights; check that /etc/persnap (Windows: %ProgramData%\\persnap) belongs to the administrator.",
        ))?;
    }
    Ok(())
}

/// What opens schedule `name`'s repositories as it is now, to put back
/// when installing its replacement fails (a failed install must not
/// leave the schedule that was there without its files, or with another's).
pub struct UnlockFiles {
    name: String,
    /// The account the schedule there runs as, who may read them.
    run_as: Option<String>,
    main: Option<Vec<u8>>,
    offsite: Option<Vec<u8>>,
}

impl UnlockFiles {
    pub fn saved(name: &str) -> UnlockFiles {
        let read = |path: PathBuf| {
            crate::sys::secret_only(&path)
                .ok()
                .and_then(|()| std::fs::read(&path).ok())
        };
        let run_as = list()
            .ok()
            .and_then(|all| all.into_iter().find(|s| s.name == name))
            .and_then(|s| s.run_as);
        UnlockFiles {
            name: name.to_owned(),
            run_as,
            main: read(unlock_path(name)),
            offsite: read(offsite_unlock_path(name)),
        }
    }

    /// Put them back as they were (gone if there were none).
    pub fn put_back(&self) -> Result<()> {
        for (bytes, path) in [
            (&self.main, unlock_path(&self.name)),
            (&self.offsite, offsite_unlock_path(&self.name)),
        ] {
            match bytes {
                Some(bytes) => crate::fsutil::write_secret(&path, bytes, self.run_as.as_deref())
                    .map_err(crate::error::Error::io(
                        "put back",
                        path.clone(),
                        "Remove the schedule and make it again.",
                    ))?,
                None => remove_file(&path)?,
            }
        }
        Ok(())
    }
}

/// Remove what opens schedule `name`'s repositories (and their folder once
/// empty); nothing there is fine.
pub fn remove_unlock(name: &str) -> Result<()> {
    // Only in a folder of the administrator's, as they are written: never
    // through a folder someone else could have swapped.
    let dir = unlock_path(name)
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    if std::fs::symlink_metadata(&dir).is_err() {
        return Ok(());
    }
    crate::fsutil::admin_only_folder(&dir).map_err(crate::error::Error::io(
        "check",
        dir.clone(),
        "The folder of the repositories' files must be the administrator's alone.",
    ))?;
    remove_file(&unlock_path(name))?;
    remove_file(&offsite_unlock_path(name))?;
    if let Some(dir) = unlock_path(name).parent() {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::error::Error::io(
            "remove",
            path.to_owned(),
            "Remove it as administrator.",
        )(e)),
    }
}

/// A password: never printed, never serialized with what holds it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"…\"" })
    }
}

/// Check a Windows account name as Task Scheduler takes it: `user`,
/// `DOMAIN\user`, `.\user` or `user@domain`, without the characters
/// account names cannot hold.
pub fn validate_account(account: &str) -> Result<()> {
    let (domain, user) = match account.split_once('\\') {
        Some((d, u)) => (Some(d), u),
        None => (None, account),
    };
    let bad = |text: &str| {
        text.is_empty()
            || text.len() > 104
            || text
                .chars()
                .any(|c| c.is_control() || "\"/\\[]:;|=,+*?<>%".contains(c))
    };
    if bad(user) || domain.is_some_and(|d| d != "." && bad(d)) {
        return Err(Error::Refused {
            field: "run_as",
            reason: format!(
                "{account:?} is not a Windows account name; say DOMAIN\\user, .\\user (this computer) or user@domain"
            ),
        });
    }
    Ok(())
}

/// Whether `path` is on a network share (`\\host\share`, or its long
/// form `\\?\UNC\host\share`, which a mapped drive canonicalizes to).
pub fn is_network_path(path: &Path) -> bool {
    crate::snapshot::vss::is_network_path(&path.to_string_lossy())
}

/// What to tell the person scheduling a backup to a network location to
/// run as SYSTEM (None when it does not apply).
pub fn network_note(s: &Schedule) -> Option<String> {
    if s.run_as.is_some() || !(is_network_path(&s.dest) || is_network_path(&s.source)) {
        return None;
    }
    Some(format!(
        "The backup location {} is on the network. Scheduled runs go there as SYSTEM, which a share knows only as this computer's own account (DOMAIN\\COMPUTER$): give that account write access to the share, or re-create the schedule with --run-as DOMAIN\\user (an administrator account that can write there; its password is stored by Task Scheduler).",
        s.dest.display()
    ))
}

impl Schedule {
    /// The newest run this schedule started, from the history it records into.
    pub fn last_run<'a>(&self, runs: &'a [Run]) -> Option<&'a Run> {
        runs.iter()
            .filter(|r| r.kind == RunKind::Backup && r.scheduled.as_deref() == Some(&self.name))
            .max_by_key(|r| r.started)
    }

    /// The run that decided how this schedule's newest run ended: its
    /// backup, or, when the backup was verified, the restore drill made
    /// after it when that failed.
    pub fn deciding_run<'a>(&self, runs: &'a [Run]) -> Option<&'a Run> {
        let backup = self.last_run(runs);
        let drill = runs
            .iter()
            .filter(|r| r.kind == RunKind::Drill && r.scheduled.as_deref() == Some(&self.name))
            .max_by_key(|r| r.started);
        match (backup, drill) {
            (Some(b), Some(d))
                if b.outcome == Outcome::Completed
                    && d.started >= b.started
                    && d.outcome != Outcome::Completed =>
            {
                Some(d)
            }
            (b, _) => b,
        }
    }

    /// The `persnap` arguments of one scheduled run.
    pub fn backup_args(&self) -> Vec<String> {
        let staged = self.repository.as_ref().is_some_and(|r| r.staged);
        let mut args: Vec<String> = vec![
            "backup".into(),
            "--source".into(),
            self.source.to_string_lossy().into(),
            if staged { "--staging" } else { "--dest" }.into(),
            self.dest.to_string_lossy().into(),
            "--store-name".into(),
            self.store_name.clone(),
            "--method".into(),
            self.method.to_string(),
            "--pace".into(),
            self.pace.to_string(),
        ];
        match &self.repository {
            Some(repository) => {
                args.extend([
                    "--repo-unlock".into(),
                    unlock_path(&self.name).to_string_lossy().into(),
                ]);
                let keep = &repository.keep;
                for (flag, n) in [
                    ("--keep-last", keep.last),
                    ("--keep-hourly", keep.hourly),
                    ("--keep-daily", keep.daily),
                    ("--keep-weekly", keep.weekly),
                    ("--keep-days", keep.within_days),
                ] {
                    if let Some(n) = n {
                        args.extend([flag.into(), n.to_string()]);
                    }
                }
            }
            None => {
                if let Some(n) = self.retention.keep_last {
                    args.extend(["--keep-last".into(), n.to_string()]);
                }
                if let Some(d) = self.retention.keep_days {
                    args.extend(["--keep-days".into(), d.to_string()]);
                }
            }
        }
        if self.offsite.is_some() {
            args.extend([
                "--offsite-unlock".into(),
                offsite_unlock_path(&self.name).to_string_lossy().into(),
            ]);
        }
        args.extend(["--scheduled".into(), self.name.clone()]);
        if self.drill {
            args.push("--drill".into());
        }
        if let Some(uid) = self.uid.filter(|uid| *uid != 0) {
            args.extend(["--as-uid".into(), uid.to_string()]);
        }
        args
    }
}

/// When a schedule runs, in local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum When {
    /// At the start of every hour.
    Hourly,
    /// Every day at a time.
    Daily(NaiveTime),
    /// On some days of the week (Monday first, no repeats) at a time.
    Weekly(Vec<Weekday>, NaiveTime),
    /// A systemd calendar expression (Linux only), checked when installed.
    Calendar(String),
}

const WHEN_EXAMPLES: &str = "hourly, daily, 02:30, \"Mon..Fri 22:00\", \"Sat,Sun 06:00\"";

impl When {
    /// Read the forms people write: `hourly`, `daily`, `02:30`,
    /// `daily 02:30`, `Mon..Fri 22:00`, `Sat,Sun 06:00`, `weekdays 22:00`;
    /// anything else is kept as a systemd calendar expression.
    pub fn parse(text: &str) -> Result<When> {
        let text = text.trim();
        if text.is_empty() || text.len() > 200 || text.contains(['\n', '\r']) {
            return Err(Error::Refused {
                field: "at",
                reason: format!("say when the backup runs, e.g. {WHEN_EXAMPLES}"),
            });
        }
        let lower = text.to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let parsed = match words.as_slice() {
            ["hourly"] => Some(When::Hourly),
            ["daily"] => Some(When::Daily(NaiveTime::MIN)),
            [time] => parse_time(time).map(When::Daily),
            ["daily", time] => parse_time(time).map(When::Daily),
            [days, time] => parse_days(days)
                .zip(parse_time(time))
                .map(|(d, t)| When::Weekly(d, t)),
            _ => None,
        };
        Ok(parsed.unwrap_or_else(|| When::Calendar(text.to_owned())))
    }

    /// The systemd `OnCalendar=` expression.
    pub fn to_systemd(&self) -> String {
        match self {
            When::Hourly => "hourly".into(),
            When::Daily(t) => format!("*-*-* {}", t.format("%H:%M:00")),
            When::Weekly(days, t) => {
                format!("{} *-*-* {}", day_list(days, ","), t.format("%H:%M:00"))
            }
            When::Calendar(expr) => expr.clone(),
        }
    }

    /// In words, for lists and the app.
    pub fn describe(&self) -> String {
        match self {
            When::Hourly => "every hour".into(),
            When::Daily(t) => format!("every day at {}", t.format("%H:%M")),
            When::Weekly(days, t) => format!("{} at {}", day_list(days, ", "), t.format("%H:%M")),
            When::Calendar(expr) => format!("systemd calendar {expr:?}"),
        }
    }

    /// The latest time at or before `now` the schedule was due, or `None`
    /// for calendar expressions (systemd alone knows those).
    pub fn previous_due(&self, now: DateTime<Local>) -> Option<DateTime<Local>> {
        match self {
            When::Hourly => local(now.date_naive().and_hms_opt(now.hour(), 0, 0)?),
            When::Daily(t) => (0..=2).find_map(|back| due_on(now, back, *t)),
            When::Weekly(days, t) => (0..=8)
                .filter(|back| {
                    let day = now.date_naive() - chrono::Duration::days(*back);
                    days.contains(&day.weekday())
                })
                .find_map(|back| due_on(now, back, *t)),
            When::Calendar(_) => None,
        }
    }
}

impl When {
    /// The first time after `now` the schedule is due, or `None` for
    /// calendar expressions (systemd alone knows those).
    pub fn next_due(&self, now: DateTime<Local>) -> Option<DateTime<Local>> {
        let at = |ahead: i64, time: NaiveTime| {
            let day = now.date_naive() + chrono::Duration::days(ahead);
            local(day.and_time(time)).filter(|due| *due > now)
        };
        match self {
            When::Hourly => local(now.date_naive().and_hms_opt(now.hour(), 0, 0)?)
                .map(|hour| hour + chrono::Duration::hours(1)),
            When::Daily(t) => (0..=2).find_map(|ahead| at(ahead, *t)),
            When::Weekly(days, t) => (0..=8)
                .filter(|ahead| {
                    let day = now.date_naive() + chrono::Duration::days(*ahead);
                    days.contains(&day.weekday())
                })
                .find_map(|ahead| at(ahead, *t)),
            When::Calendar(_) => None,
        }
    }
}

/// `back` days before `now`, at `time`, if that is not after `now`.
fn due_on(now: DateTime<Local>, back: i64, time: NaiveTime) -> Option<DateTime<Local>> {
    let day = now.date_naive() - chrono::Duration::days(back);
    local(day.and_time(time)).filter(|due| *due <= now)
}

/// A local wall-clock time (the earlier one when the clock goes back; none
/// inside the hour skipped when it goes forward).
fn local(naive: chrono::NaiveDateTime) -> Option<DateTime<Local>> {
    Local.from_local_datetime(&naive).earliest()
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

/// `mon..fri`, `mon-fri`, `sat,sun`, `weekdays`, `weekends`, `mon`.
fn parse_days(text: &str) -> Option<Vec<Weekday>> {
    let mut days = Vec::new();
    for part in text.split(',') {
        match part {
            "weekdays" => days.extend(range(Weekday::Mon, Weekday::Fri)),
            "weekends" => days.extend([Weekday::Sat, Weekday::Sun]),
            _ => match part.split_once("..").or_else(|| part.split_once('-')) {
                Some((a, b)) => days.extend(range(day(a)?, day(b)?)),
                None => days.push(day(part)?),
            },
        }
    }
    days.sort_by_key(|d| d.num_days_from_monday());
    days.dedup();
    (!days.is_empty()).then_some(days)
}

const WEEK: [(Weekday, &str); 7] = [
    (Weekday::Mon, "monday"),
    (Weekday::Tue, "tuesday"),
    (Weekday::Wed, "wednesday"),
    (Weekday::Thu, "thursday"),
    (Weekday::Fri, "friday"),
    (Weekday::Sat, "saturday"),
    (Weekday::Sun, "sunday"),
];

/// A day by its whole name or at least its first three letters.
fn day(text: &str) -> Option<Weekday> {
    WEEK.iter()
        .find(|(_, name)| text.len() >= 3 && name.starts_with(text))
        .map(|(d, _)| *d)
}

fn range(from: Weekday, to: Weekday) -> Vec<Weekday> {
    let mut out = vec![from];
    let mut d = from;
    while d != to {
        d = d.succ();
        out.push(d);
    }
    out
}

fn day_list(days: &[Weekday], sep: &str) -> String {
    days.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

impl fmt::Display for When {
    /// The form [`When::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Hourly => f.write_str("hourly"),
            When::Daily(t) => write!(f, "daily {}", t.format("%H:%M")),
            When::Weekly(days, t) => write!(f, "{} {}", day_list(days, ","), t.format("%H:%M")),
            When::Calendar(expr) => f.write_str(expr),
        }
    }
}

impl From<When> for String {
    fn from(w: When) -> String {
        w.to_string()
    }
}

impl TryFrom<String> for When {
    type Error = Error;
    fn try_from(text: String) -> Result<When> {
        When::parse(&text)
    }
}

/// Names are part of unit file and task names: keep them plain.
pub fn validate_name(name: &str) -> Result<()> {
    crate::names::check_plain_name(name, "schedule", "nightly")
}

/// Paths go into unit files and task XML, one value per line: refuse any
/// with control characters (a newline would start a directive of its own).
pub fn check_plain_paths(s: &Schedule) -> Result<()> {
    for (field, path) in [
        ("source", &s.source),
        ("dest", &s.dest),
        ("history_dir", &s.history_dir),
    ] {
        if path.to_string_lossy().chars().any(char::is_control) {
            return Err(Error::Refused {
                field,
                reason: format!(
                    "{path:?} contains a control character (such as a line break); scheduled backups need folder names without them"
                ),
            });
        }
    }
    if s.store_name.chars().any(char::is_control) {
        return Err(Error::Refused {
            field: "store_name",
            reason: "the store name contains a control character".into(),
        });
    }
    Ok(())
}

/// Install (or replace) a schedule on this machine; needs root/administrator.
/// `exe` is the persnap executable the scheduler runs.
pub fn install(s: &Schedule, exe: &Path) -> Result<Installed> {
    validate_name(&s.name)?;
    check_plain_paths(s)?;
    #[cfg(windows)]
    return taskschd::install(s, exe);
    #[cfg(not(windows))]
    systemd::install(s, exe)
}

/// Remove a schedule (and what opens its repository); `false` when there
/// was none by that name.
pub fn uninstall(name: &str) -> Result<bool> {
    validate_name(name)?;
    #[cfg(windows)]
    let removed = taskschd::uninstall(name)?;
    #[cfg(not(windows))]
    let removed = systemd::uninstall(name)?;
    remove_unlock(name)?;
    Ok(removed)
}

/// Every schedule installed on this machine (readable without privileges).
pub fn list() -> Result<Vec<Schedule>> {
    list_in(&default_dir())
}

/// Where this platform keeps schedules: the systemd unit folder, or the
/// schedule records of Task Scheduler tasks.
pub fn default_dir() -> PathBuf {
    #[cfg(windows)]
    return taskschd::registry_dir();
    #[cfg(not(windows))]
    systemd::unit_dir()
}

/// The schedules kept in `dir` (see [`default_dir`]).
pub fn list_in(dir: &Path) -> Result<Vec<Schedule>> {
    #[cfg(windows)]
    return taskschd::list(dir);
    #[cfg(not(windows))]
    systemd::list(dir)
}

/// What installing did, for the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    /// Files or scheduler entries written.
    pub written: Vec<String>,
    /// The scheduler is running it now (false: e.g. no systemd running).
    pub active: bool,
    /// One sentence on its state.
    pub note: String,
}

/// The state of a schedule, judged from the history.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Its last run completed (or it has not been due yet).
    Fine { last: Option<DateTime<Utc>> },
    /// Its last run failed, was cancelled, or stopped half-way.
    Failed { run: Box<Run> },
    /// It was due and nothing ran (the machine was off, asleep, or the
    /// scheduler did not start it).
    Missed { due: DateTime<Local> },
}

/// Judge `s` at `now` from `runs` (the history it records into).
pub fn status(s: &Schedule, runs: &[Run], now: DateTime<Local>) -> Status {
    let last = s.last_run(runs);
    if let Some(due) = s.when.previous_due(now - MISSED_GRACE) {
        let due_utc = due.with_timezone(&Utc);
        let created_before = s.created.is_none_or(|c| c <= due_utc);
        // A run that started within a minute before the due time (clock
        // skew between the scheduler and us) still counts.
        let ran = last.is_some_and(|r| r.started >= due_utc - chrono::Duration::minutes(1));
        if created_before && !ran {
            return Status::Missed { due };
        }
    }
    match last {
        Some(run) if !matches!(run.outcome, Outcome::Completed | Outcome::Running) => {
            Status::Failed {
                run: Box::new(run.clone()),
            }
        }
        _ => Status::Fine {
            last: last.map(|r| r.started),
        },
    }
}

/// What to tell the user about a scheduled run that did not succeed:
/// summary and body of the notification.
pub fn failure_message(name: &str, run: Option<&Run>, scheduler_said: &str) -> (String, String) {
    if let Some(drill) = run.filter(|r| r.kind == RunKind::Drill)
        && let Some((_, words)) = crate::monitor::events::of(drill)
    {
        return (
            format!("persnap: the restore drill of \u{201c}{name}\u{201d} failed"),
            words,
        );
    }
    let summary = format!("persnap: the scheduled backup \u{201c}{name}\u{201d} failed");
    let body = match run {
        Some(run) => match &run.outcome {
            Outcome::Failed { step, message, .. } => {
                format!("{}: failed during {step}: {message}", run.source.display())
            }
            other => format!(
                "{}: the run ended {} ({scheduler_said})",
                run.source.display(),
                other.label()
            ),
        },
        None => format!("It did not start a backup ({scheduler_said})."),
    };
    (summary, body)
}

/// How long a scheduled run may take before the scheduler stops it
/// (systemd's `TimeoutStartSec=`, Task Scheduler's `ExecutionTimeLimit`):
/// a run that hangs on a stalled disk, share or server must not keep its
/// schedule from ever running again.
pub const RUN_TIME_LIMIT_HOURS: u32 = 12;

/// A scheduled run of `name` was stopped at [`RUN_TIME_LIMIT_HOURS`]: its
/// record (left running, interrupted or cancelled by the stop) now says it
/// hung, so status and notices say so, not "interrupted" or "missed".
pub fn record_hung(history: &crate::history::History, name: &str) -> Result<Option<Run>> {
    let runs = history.load()?;
    let Some(mut run) = runs.into_iter().rev().find(|r| {
        r.scheduled.as_deref() == Some(name)
            && matches!(
                r.outcome,
                Outcome::Running | Outcome::Interrupted | Outcome::Cancelled
            )
    }) else {
        return Ok(None);
    };
    run.outcome = Outcome::Failed {
        step: crate::progress::Phase::Copy,
        kind: crate::error::ErrorKind::Cancelled,
        message: format!(
            "The scheduled backup hung: it was still running after {RUN_TIME_LIMIT_HOURS} \
             hours and was stopped. Something it waited for did not answer (a stalled disk, \
             network share or repository server); check the backup location, then back up now."
        ),
    };
    run.finished.get_or_insert_with(Utc::now);
    history.upsert(&run)?;
    crate::monitor::events::report(&run);
    Ok(Some(run))
}

/// What to tell the user about a run that never happened.
pub fn missed_message(s: &Schedule, due: DateTime<Local>) -> (String, String) {
    (
        format!(
            "persnap: the scheduled backup \u{201c}{}\u{201d} did not run",
            s.name
        ),
        format!(
            "It was due {} ({}) and nothing ran: the computer may have been off or asleep. Back up now, or check the schedule.",
            crate::units::LocalTime::local_minute(&due),
            s.when.describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn time(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn when_reads_what_people_write_and_round_trips() {
        use Weekday::*;
        let cases = [
            ("hourly", When::Hourly),
            ("daily", When::Daily(time(0, 0))),
            ("02:30", When::Daily(time(2, 30))),
            ("Daily 23:05", When::Daily(time(23, 5))),
            (
                "Mon..Fri 22:00",
                When::Weekly(vec![Mon, Tue, Wed, Thu, Fri], time(22, 0)),
            ),
            ("sat,sun 06:00", When::Weekly(vec![Sat, Sun], time(6, 0))),
            (
                "weekdays 01:00",
                When::Weekly(vec![Mon, Tue, Wed, Thu, Fri], time(1, 0)),
            ),
            (
                "Fri-Mon 01:00",
                When::Weekly(vec![Mon, Fri, Sat, Sun], time(1, 0)),
            ),
            ("wednesday 12:00", When::Weekly(vec![Wed], time(12, 0))),
            ("*-*-01 03:00", When::Calendar("*-*-01 03:00".into())),
            ("25:00", When::Calendar("25:00".into())),
        ];
        for (text, want) in cases {
            let got = When::parse(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(
                When::parse(&got.to_string()).unwrap(),
                got,
                "{text} round trip"
            );
        }
        assert!(When::parse("").is_err() && When::parse("a\nb").is_err());
    }

    #[test]
    fn when_becomes_systemd_calendar_expressions() {
        assert_eq!(When::parse("02:30").unwrap().to_systemd(), "*-*-* 02:30:00");
        assert_eq!(
            When::parse("Mon..Wed 22:00").unwrap().to_systemd(),
            "Mon,Tue,Wed *-*-* 22:00:00"
        );
        assert_eq!(When::Hourly.to_systemd(), "hourly");
    }

    #[test]
    fn paths_with_line_breaks_are_refused() {
        let mut s = schedule("02:00", Local::now());
        check_plain_paths(&s).unwrap();
        s.source = "/data\nExecStartPre=/bin/sh".into();
        let err = check_plain_paths(&s).unwrap_err().to_string();
        assert!(err.contains("control character"), "{err}");
        assert!(install(&s, Path::new("/usr/bin/persnap")).is_err());
    }

    #[test]
    fn next_due_times() {
        let now = at(2026, 12, 3, 14, 30); // a Thursday
        assert_eq!(When::Hourly.next_due(now), Some(at(2026, 12, 3, 15, 0)));
        let daily = When::parse("02:00").unwrap();
        assert_eq!(daily.next_due(now), Some(at(2026, 12, 4, 2, 0)));
        let later = When::parse("22:00").unwrap();
        assert_eq!(later.next_due(now), Some(at(2026, 12, 3, 22, 0)));
        let weekdays = When::parse("Mon..Fri 01:00").unwrap();
        assert_eq!(
            weekdays.next_due(at(2026, 12, 4, 14, 0)),
            Some(at(2026, 12, 7, 1, 0))
        );
        assert_eq!(When::Calendar("*-*-* 03:00".into()).next_due(now), None);
    }

    #[test]
    fn previous_due_times() {
        // 2026-11-24 is a Tuesday.
        let now = at(2026, 11, 24, 10, 15);
        assert_eq!(
            When::Hourly.previous_due(now),
            Some(at(2026, 11, 24, 10, 0))
        );
        assert_eq!(
            When::parse("02:00").unwrap().previous_due(now),
            Some(at(2026, 11, 24, 2, 0))
        );
        assert_eq!(
            When::parse("11:00").unwrap().previous_due(now),
            Some(at(2026, 11, 23, 11, 0))
        );
        assert_eq!(
            When::parse("sat,sun 06:00").unwrap().previous_due(now),
            Some(at(2026, 11, 22, 6, 0))
        );
        assert_eq!(
            When::parse("tue 11:00").unwrap().previous_due(now),
            Some(at(2026, 11, 17, 11, 0)),
            "today's is later: the one a week ago"
        );
        assert_eq!(When::Calendar("*-*-01".into()).previous_due(now), None);
    }

    fn schedule(when: &str, created: DateTime<Local>) -> Schedule {
        Schedule {
            name: "nightly".into(),
            source: "/data".into(),
            dest: "/backup".into(),
            store_name: "persistence.db".into(),
            method: MethodChoice::Auto,
            retention: RetentionPolicy::default(),
            pace: Default::default(),
            when: When::parse(when).unwrap(),
            history_dir: "/h".into(),
            created: Some(created.with_timezone(&Utc)),
            uid: None,
            run_as: None,
            password: Default::default(),
            repository: None,
            unlock: None,
            offsite: None,
            offsite_unlock: None,
            drill: false,
        }
    }

    fn scheduled_run(started: DateTime<Local>, outcome: Outcome) -> Run {
        let mut run = Run::starting(
            RunKind::Backup,
            "id".into(),
            "tag".into(),
            "/data".into(),
            "persistence.db".into(),
            "/backup".into(),
        );
        run.started = started.with_timezone(&Utc);
        run.scheduled = Some("nightly".into());
        run.outcome = outcome;
        run
    }

    #[test]
    fn a_failed_drill_after_a_good_backup_is_what_the_run_is_told_by() {
        let s = schedule("02:00", at(2026, 11, 1, 12, 0));
        let backup = scheduled_run(at(2026, 11, 24, 2, 0), Outcome::Completed);
        let mut drill = scheduled_run(
            at(2026, 11, 24, 2, 5),
            Outcome::Failed {
                step: crate::progress::Phase::Verify,
                message: "a page of the database did not read back".into(),
                kind: crate::error::ErrorKind::Verify,
            },
        );
        drill.kind = RunKind::Drill;
        let runs = [backup.clone(), drill.clone()];
        assert_eq!(s.deciding_run(&runs), Some(&drill));
        let (summary, body) = failure_message("nightly", s.deciding_run(&runs), "systemd");
        assert!(summary.contains("restore drill"), "{summary}");
        assert!(body.contains("did not read back"), "{body}");
        // A drill that passed, or an older one, leaves the backup deciding.
        drill.outcome = Outcome::Completed;
        assert_eq!(
            s.deciding_run(&[backup.clone(), drill.clone()]),
            Some(&backup)
        );
        let mut old = drill.clone();
        old.started = backup.started - chrono::Duration::days(1);
        old.outcome = Outcome::Interrupted;
        assert_eq!(s.deciding_run(&[backup.clone(), old]), Some(&backup));
        // A failed backup is what is told, whatever its drill found.
        let mut failed = backup.clone();
        failed.outcome = Outcome::Interrupted;
        drill.outcome = Outcome::Interrupted;
        assert_eq!(s.deciding_run(&[failed.clone(), drill]), Some(&failed));
    }

    #[test]
    fn status_tells_fine_failed_and_missed_apart() {
        let now = at(2026, 11, 24, 10, 15);
        let s = schedule("02:00", at(2026, 11, 1, 12, 0));
        let ok_today = scheduled_run(at(2026, 11, 24, 2, 0), Outcome::Completed);
        assert!(matches!(
            status(&s, std::slice::from_ref(&ok_today), now),
            Status::Fine { .. }
        ));
        let failed = scheduled_run(
            at(2026, 11, 24, 2, 0),
            Outcome::Failed {
                step: crate::progress::Phase::Snapshot,
                message: "no space".into(),
                kind: crate::error::ErrorKind::Snapshot,
            },
        );
        assert!(matches!(
            status(&s, &[ok_today, failed], now),
            Status::Failed { .. }
        ));
        let yesterday = scheduled_run(at(2026, 11, 23, 2, 0), Outcome::Completed);
        assert_eq!(
            status(&s, &[yesterday], now),
            Status::Missed {
                due: at(2026, 11, 24, 2, 0)
            }
        );
        assert_eq!(
            status(&s, &[], now),
            Status::Missed {
                due: at(2026, 11, 24, 2, 0)
            },
            "never ran although due"
        );
        let new = schedule("02:00", at(2026, 11, 24, 9, 0));
        assert_eq!(
            status(&new, &[], now),
            Status::Fine { last: None },
            "made after the due time: nothing missed yet"
        );
        let grace = schedule("10:00", at(2026, 11, 1, 12, 0));
        assert!(
            matches!(status(&grace, &[], now), Status::Missed { due } if due == at(2026, 11, 23, 10, 0)),
            "a run due 15 minutes ago may still be starting; yesterday's counts"
        );
    }
}
