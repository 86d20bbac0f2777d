//! "Is my database protected?": one answer per protected database, in plain
//! words, from what persnap knows — the runs recorded for it (the user's
//! history and the histories its schedules record into), its schedule, and
//! its backup location.
//!
//! [`assess`] is the rule, pure and tested on made-up histories;
//! [`survey`] gathers what it needs from the machine. The app's overview,
//! `persnap status` and its exit code (for monitoring systems) all read the
//! same [`Assessment`].

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, Local, Utc};
use serde::Serialize;

use crate::error::ErrorKind;
use crate::history::{History, Outcome, Run, RunKind};
use crate::registry::{Database, Registry};
use crate::schedule::{self, Schedule};

/// Without a schedule, a database whose newest verified backup is older
/// than this needs attention (a day, and a little for a late run).
pub const DEFAULT_MAX_AGE: Duration = Duration::hours(26);

/// How a database stands, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// A recent verified backup, and nothing went wrong since.
    Protected,
    /// Backed up, but not lately, or a scheduled run did not happen, or the
    /// backup location is nearly full.
    Attention,
    /// The newest backup attempt failed.
    Failing,
    /// No verified backup at all.
    Never,
}

impl Level {
    /// The exit status monitoring systems read (Nagios plugin convention:
    /// 0 OK, 1 warning, 2 critical; 3, "unknown", is `persnap status`'s own
    /// when it cannot tell).
    pub fn exit_code(self) -> i32 {
        match self {
            Level::Protected => 0,
            Level::Attention => 1,
            Level::Failing | Level::Never => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Level::Protected => "protected",
            Level::Attention => "needs attention",
            Level::Failing => "failing",
            Level::Never => "never backed up",
        }
    }
}

/// What the rules may be told.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// The newest verified backup must be younger than this. `None`: with a
    /// schedule, every run it was due for must have happened; without one,
    /// [`DEFAULT_MAX_AGE`].
    pub max_age: Option<Duration>,
}

/// A schedule as the overview shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleInfo {
    pub name: String,
    /// "every day at 02:00".
    pub when: String,
    pub next_run: Option<DateTime<Utc>>,
    pub dest: PathBuf,
}

/// One database's standing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub name: String,
    pub folder: PathBuf,
    pub store_name: String,
    pub level: Level,
    /// One line: "Protected: last verified backup 3 hours ago".
    pub headline: String,
    /// What to do about it, if anything.
    pub advice: Option<String>,
    /// The engineer's view: full error messages, paths, run ids.
    pub details: Vec<String>,
    /// The newest verified backup.
    pub last_good: Option<Run>,
    /// The newest backup attempt that has ended, good or not.
    pub last_run: Option<Run>,
    pub schedule: Option<ScheduleInfo>,
    /// Where its backups go.
    pub location: Option<PathBuf>,
    /// How it is backed up, and which of its backups are kept.
    pub method: crate::method::MethodChoice,
    pub retention: crate::retention::RetentionPolicy,
    /// Free space there, when it could be read.
    pub free: Option<u64>,
    /// Its backups go into this repository (`location` stages them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<crate::registry::InRepository>,
    /// And a copy of each goes into this offsite repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offsite: Option<crate::registry::InRepository>,
    /// The newest restore drill that passed: when its backups were last
    /// proven restorable from every place they are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proven: Option<Run>,
    /// The newest restore drill that ended, passed or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<Run>,
}

/// The backup runs of `db` in `runs`.
pub fn runs_of<'a>(db: &'a Database, runs: &'a [Run]) -> impl Iterator<Item = &'a Run> + 'a {
    runs.iter().filter(move |r| {
        r.kind == RunKind::Backup
            && same_path(&r.source, &db.folder)
            && r.store_name == db.store_name
    })
}

/// The schedules that back up `db`.
pub fn schedules_of<'a>(db: &Database, schedules: &'a [Schedule]) -> Vec<&'a Schedule> {
    let mut mine: Vec<&Schedule> = schedules
        .iter()
        .filter(|s| {
            db.schedule.as_deref() == Some(&s.name)
                || (same_path(&s.source, &db.folder) && s.store_name == db.store_name)
        })
        .collect();
    mine.sort_by_key(|s| db.schedule.as_deref() != Some(&s.name));
    mine
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || crate::fsutil::canonicalize(a).is_ok_and(|a| a == b)
}

/// Judge `db` at `now`. `runs` may hold other databases' runs; `free` is
/// the free space at its backup location, if known.
pub fn assess(
    db: &Database,
    runs: &[Run],
    schedules: &[Schedule],
    free: Option<u64>,
    policy: Policy,
    now: DateTime<Local>,
) -> Assessment {
    let mine: Vec<&Run> = runs_of(db, runs).collect();
    let last_good = mine
        .iter()
        .filter(|r| is_good(r))
        .max_by_key(|r| r.started)
        .map(|r| (*r).clone());
    let last_run = mine
        .iter()
        .filter(|r| counts_as_attempt(r))
        .max_by_key(|r| r.started)
        .map(|r| (*r).clone());
    let schedules = schedules_of(db, schedules);
    let schedule = schedules.first().copied();
    let location = db
        .location
        .clone()
        .or_else(|| schedule.map(|s| s.dest.clone()))
        .or_else(|| last_good.as_ref().map(|r| r.destination.clone()));
    let mut a = Assessment {
        name: db.name.clone(),
        folder: db.folder.clone(),
        store_name: db.store_name.clone(),
        level: Level::Protected,
        headline: String::new(),
        advice: None,
        details: Vec::new(),
        last_good: last_good.clone(),
        last_run: last_run.clone(),
        schedule: schedule.map(|s| ScheduleInfo {
            name: s.name.clone(),
            when: s.when.describe(),
            next_run: s.when.next_due(now).map(|t| t.with_timezone(&Utc)),
            dest: s.dest.clone(),
        }),
        location,
        method: db.method,
        retention: db.retention,
        free,
        repository: db.repository.clone(),
        offsite: db.offsite.clone(),
        proven: None,
        last_drill: None,
    };
    (a.proven, a.last_drill) = crate::drill::last(&db.folder, &db.store_name, runs);

    // 1. The newest attempt failed (and nothing good came after it).
    if let Some(run) = &last_run
        && !is_good(run)
        && last_good.as_ref().is_none_or(|g| g.started < run.started)
    {
        let what = match &run.scheduled {
            Some(_) => "The scheduled backup",
            None => "The last backup",
        };
        a.level = Level::Failing;
        a.headline = format!(
            "{what} {} failed: {}.",
            moment(run.started, now),
            reason(&run.outcome)
        );
        a.advice = Some(advice(&run.outcome).into());
        if let Outcome::Failed { message, .. } = &run.outcome {
            a.details.push(message.clone());
        }
        a.details
            .push(format!("Run {} ({})", run.id, run.outcome.label()));
        if last_good.is_none() {
            a.details
                .push("There is no verified backup of this database yet.".into());
        }
        return a;
    }

    let Some(good) = &last_good else {
        a.level = Level::Never;
        a.headline = "Never backed up.".into();
        a.advice = Some(match schedule {
            Some(s) => format!(
                "The first scheduled backup runs {}; or back up now.",
                s.when
                    .next_due(now)
                    .map(|t| moment(t.with_timezone(&Utc), now))
                    .unwrap_or_else(|| s.when.describe())
            ),
            None => "Back up now, and set a schedule so that it happens on its own.".into(),
        });
        return a;
    };
    let good_at = good.finished.unwrap_or(good.started);
    let age = now.with_timezone(&Utc) - good_at;

    // 2. Its backups were found not restorable by the last drill.
    if let Some(drill) = &a.last_drill
        && drill.outcome != Outcome::Completed
        && a.proven.as_ref().is_none_or(|p| p.started < drill.started)
    {
        let problems = drill
            .drill
            .as_ref()
            .map(|r| r.problems())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| vec![reason(&drill.outcome)]);
        a.level = Level::Failing;
        a.headline = format!(
            "The restore drill {} found it not restorable from {}.",
            moment(drill.started, now),
            problems.join("; ")
        );
        a.advice = Some(format!(
            "Find out what happened there (a failing disk, a server, files deleted), back up again, then run a restore drill (persnap drill {}, or Check restorable on its page).",
            db.name
        ));
        for place in drill.drill.iter().flat_map(|r| &r.places) {
            if let Some(detail) = &place.detail {
                a.details.push(format!("{}: {detail}", place.kind.words()));
            }
        }
        a.details.push(format!("Drill {}", drill.id));
        return a;
    }

    // 3. A scheduled run did not happen.
    for s in &schedules {
        if let schedule::Status::Missed { due } = schedule::status(s, &mine_owned(&mine), now) {
            a.level = Level::Attention;
            a.headline = format!(
                "The scheduled backup {} did not run; last verified backup {}.",
                moment(due.with_timezone(&Utc), now),
                ago(age)
            );
            a.advice = Some(
                "The computer may have been off or asleep. Back up now, or check the schedule."
                    .into(),
            );
            a.details
                .push(format!("Schedule {} ({})", s.name, s.when.describe()));
            return a;
        }
    }

    // 4. Too old.
    let max_age = policy
        .max_age
        .or_else(|| schedule.is_none().then_some(DEFAULT_MAX_AGE));
    if let Some(max_age) = max_age
        && age > max_age
    {
        a.level = Level::Attention;
        a.headline = format!("No backup for {}.", span(age));
        a.advice = Some(match schedule {
            Some(_) => "Back up now, and check why the schedule has not made one.".into(),
            None => "Back up now, and set a schedule so that it happens on its own.".into(),
        });
        a.details
            .push(format!("Newest verified backup: {}", good_path(good)));
        return a;
    }

    // 5. Not proven restorable lately: no drill passed for a week and a
    // day, once it has been protected (or backed up) that long.
    let since = db
        .added
        .into_iter()
        .chain(mine.iter().filter(|r| is_good(r)).map(|r| r.started))
        .min();
    let proven_at = a.proven.as_ref().map(|p| p.finished.unwrap_or(p.started));
    let unproven_for = now.with_timezone(&Utc) - proven_at.or(since).unwrap_or(good_at);
    if unproven_for > crate::drill::OVERDUE {
        a.level = Level::Attention;
        a.headline = match proven_at {
            Some(t) => format!(
                "Backed up {}, but not proven restorable for {}: the last restore drill that passed was {}.",
                ago(age),
                span(unproven_for),
                moment(t, now)
            ),
            None => format!(
                "Backed up {}, but never proven restorable: no restore drill has passed in the {} it has been protected.",
                ago(age),
                span(unproven_for)
            ),
        };
        a.advice = Some(format!(
            "Run a restore drill: Check restorable on its page, or persnap drill {}.",
            db.name
        ));
        a.details
            .push(format!("Newest verified backup: {}", good_path(good)));
        return a;
    }

    // 6. Protected; warn of what will stop it.
    a.headline = format!("Protected: last verified backup {}.", ago(age));
    a.details
        .push(format!("Newest verified backup: {}", good_path(good)));
    if let Some(free) = free
        && good.bytes > 0
        && free < good.bytes.saturating_mul(2)
    {
        a.level = Level::Attention;
        a.headline = format!(
            "Protected, but the backup location has room for {} more.",
            if free < good.bytes { "no" } else { "one" }
        );
        a.advice = Some(
            "Free some space there, keep fewer backups (Settings), or choose a bigger location."
                .into(),
        );
        a.details.push(format!(
            "{} free; the newest backup is {}",
            crate::units::bytes(free),
            crate::units::bytes(good.bytes)
        ));
    } else if schedule.is_none() {
        a.advice = Some("No schedule: it is backed up only when someone starts a backup.".into());
    }
    a
}

fn mine_owned(mine: &[&Run]) -> Vec<Run> {
    mine.iter().map(|r| (*r).clone()).collect()
}

fn good_path(run: &Run) -> String {
    run.backup_path
        .as_deref()
        .unwrap_or(&run.destination)
        .display()
        .to_string()
}

/// A completed run made a verified backup.
fn is_good(run: &Run) -> bool {
    matches!(run.outcome, Outcome::Completed)
        && run
            .verification
            .as_ref()
            .is_some_and(|v| v.hashes_match && v.integrity == "ok")
}

/// Runs that say something about whether backups work: finished ones,
/// except a backup someone cancelled by hand.
fn counts_as_attempt(run: &Run) -> bool {
    match run.outcome {
        Outcome::Running => false,
        Outcome::Cancelled => run.scheduled.is_some(),
        _ => true,
    }
}

/// Why a run did not make a backup, in a few plain words.
pub fn reason(outcome: &Outcome) -> String {
    let (kind, message) = match outcome {
        Outcome::Failed { kind, message, .. } => (*kind, message.as_str()),
        Outcome::Cancelled => return "it was stopped before it finished".into(),
        Outcome::Interrupted => {
            return "it stopped half-way (the computer shut down or persnap was stopped)".into();
        }
        Outcome::Completed => return "its copy could not be verified".into(),
        Outcome::Running => return "it did not finish".into(),
    };
    let m = message.to_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if says(&[
        "not enough free space",
        "no space left",
        "os error 28",
        "disk full",
    ]) {
        return "the backup location is full".into();
    }
    if says(&["backup location"]) && says(&["does not exist", "not a folder", "is not there"]) {
        return "the backup location is not there (a disk unplugged or a share offline?)".into();
    }
    if says(&["cannot write to the backup location", "permission denied"]) {
        return "persnap may not write to the backup location".into();
    }
    if says(&["no database file named", "database folder"])
        && says(&["does not exist", "no database file"])
    {
        return "the database is no longer where it was".into();
    }
    if says(&["backup hung"]) {
        return format!(
            "it hung and was stopped after {} hours",
            crate::schedule::RUN_TIME_LIMIT_HOURS
        );
    }
    if says(&["filled up"]) {
        return "the snapshot filled up while copying".into();
    }
    match kind {
        ErrorKind::Snapshot => "no snapshot of the disk could be taken".into(),
        ErrorKind::Copy => "copying the database failed".into(),
        ErrorKind::Verify => "the copy did not pass its check, so it was not kept".into(),
        ErrorKind::Busy => "another backup of it was running".into(),
        ErrorKind::Elevation => "it was not allowed to run as administrator".into(),
        ErrorKind::Cancelled => "it was stopped before it finished".into(),
        ErrorKind::BadInput => "the database or the backup location was not as expected".into(),
        ErrorKind::Internal | ErrorKind::Protocol => "persnap itself failed".into(),
    }
}

fn advice(outcome: &Outcome) -> &'static str {
    let message = match outcome {
        Outcome::Failed { message, .. } => message.to_lowercase(),
        _ => return "Back up now; if it fails again, open its history for the details.",
    };
    if message.contains("free space") || message.contains("no space left") {
        "Free some space at the backup location or keep fewer backups, then back up now."
    } else {
        "Open its history for the details, fix what it says, then back up now."
    }
}

/// "3 hours ago", "just now", "2 days ago".
pub fn ago(age: Duration) -> String {
    if age < Duration::minutes(1) {
        return "just now".into();
    }
    format!("{} ago", span(age))
}

/// "5 minutes", "3 hours", "2 days".
pub fn span(age: Duration) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    // Rounded to the nearest unit: 2 h 58 min is "3 hours".
    let minutes = age.num_minutes();
    if minutes < 60 {
        plural(minutes.max(1), "minute")
    } else if minutes < 48 * 60 {
        plural((minutes + 30) / 60, "hour")
    } else {
        plural((minutes + 12 * 60) / (24 * 60), "day")
    }
}

/// A database's lines, as `persnap status` and the summary mail say
/// them: name, headline, what to do, next run, location.
pub fn describe(a: &Assessment, now: DateTime<Local>) -> String {
    let mut out = format!("{}: {}\n", a.name, a.headline);
    if let Some(advice) = &a.advice {
        out += &format!("  {advice}\n");
    }
    if let Some(s) = &a.schedule {
        let next = s
            .next_run
            .map(|t| moment(t, now))
            .unwrap_or_else(|| "as the scheduler decides".into());
        out += &format!("  Next backup {next} ({}, schedule {}).\n", s.when, s.name);
    }
    match (&a.repository, &a.location) {
        (Some(r), _) if r.staged => {
            out += &format!("  Backups go into the repository {}.\n", r.location);
        }
        (_, Some(location)) => {
            let free = a
                .free
                .map(|f| format!(", {} free", crate::units::bytes(f)))
                .unwrap_or_default();
            out += &format!("  Backups go to {}{free}.\n", location.display());
        }
        _ => {}
    }
    if let Some(o) = &a.offsite {
        out += &format!("  A copy of each goes offsite, into {}.\n", o.location);
    }
    if let Some(proven) = &a.proven {
        out += &format!(
            "  Last proven restorable {} (restore drill).\n",
            moment(proven.started, now)
        );
    }
    out
}

/// "today at 14:02", "yesterday at 02:00", "on Tuesday at 02:00",
/// "on 3 Nov at 02:00", "tomorrow at 02:00".
pub fn moment(t: DateTime<Utc>, now: DateTime<Local>) -> String {
    let t = t.with_timezone(&Local);
    let days = (t.date_naive() - now.date_naive()).num_days();
    let time = t.format("%H:%M");
    match days {
        0 => format!("today at {time}"),
        -1 => format!("yesterday at {time}"),
        1 => format!("tomorrow at {time}"),
        -6..=-2 | 2..=6 => format!("on {} at {time}", weekday_name(t.weekday())),
        _ => format!("on {} at {time}", t.format("%-d %b")),
    }
}

fn weekday_name(d: chrono::Weekday) -> &'static str {
    use chrono::Weekday::*;
    match d {
        Mon => "Monday",
        Tue => "Tuesday",
        Wed => "Wednesday",
        Thu => "Thursday",
        Fri => "Friday",
        Sat => "Saturday",
        Sun => "Sunday",
    }
}

/// A schedule's history, read by whoever asks.
pub fn load_history(s: &Schedule) -> crate::Result<Vec<Run>> {
    History::at(&s.history_dir).load()
}

/// Everything the assessments need, read from the machine.
#[derive(Debug, Clone)]
pub struct Survey {
    pub assessments: Vec<Assessment>,
    /// What could not be read (a schedule's history, a location's free
    /// space), in words; the assessments stand without it.
    pub notes: Vec<String>,
}

/// Assess every database in `registry`, from the user's runs `own_runs`
/// plus the history of every schedule in `schedules`, each read by `load`
/// (a monitoring check running as root reads each as its owner).
pub fn survey(
    registry: &Registry,
    own_runs: &[Run],
    schedules: &[Schedule],
    load: &dyn Fn(&Schedule) -> crate::Result<Vec<Run>>,
    policy: Policy,
    now: DateTime<Local>,
) -> crate::Result<Survey> {
    let databases = registry.list()?;
    let mut runs: Vec<Run> = own_runs.to_vec();
    let mut notes = Vec::new();
    let mut read_dirs: Vec<PathBuf> = Vec::new();
    for s in schedules {
        if read_dirs.contains(&s.history_dir) {
            continue;
        }
        read_dirs.push(s.history_dir.clone());
        match load(s) {
            Ok(theirs) => {
                for run in theirs {
                    if !runs.iter().any(|r| r.id == run.id) {
                        runs.push(run);
                    }
                }
            }
            Err(e) => notes.push(format!(
                "The history of the schedule \u{201c}{}\u{201d} could not be read: {e}",
                s.name
            )),
        }
    }
    let assessments = databases
        .iter()
        .map(|db| {
            let draft = assess(db, &runs, schedules, None, policy, now);
            let free = draft
                .location
                .as_deref()
                .and_then(|l| crate::sys::free_space(l).ok());
            assess(db, &runs, schedules, free, policy, now)
        })
        .collect();
    Ok(Survey { assessments, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::manifest::Verification;
    use crate::progress::Phase;
    use crate::schedule::When;
    use chrono::TimeZone;

    fn now() -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 12, 3, 14, 0, 0).unwrap()
    }

    fn db() -> Database {
        Database::new("orders", "/srv/apama/store", "persistence.db")
    }

    fn run(id: &str, hours_ago: i64, outcome: Outcome, scheduled: Option<&str>) -> Run {
        let mut r = Run::starting(
            RunKind::Backup,
            id.into(),
            id.into(),
            "/srv/apama/store".into(),
            "persistence.db".into(),
            "/backups".into(),
        );
        r.started = now().with_timezone(&Utc) - Duration::hours(hours_ago);
        r.finished = Some(r.started + Duration::minutes(2));
        r.scheduled = scheduled.map(Into::into);
        r.bytes = 1000;
        if outcome == Outcome::Completed {
            r.verification = Some(Verification {
                integrity: "ok".into(),
                page_count: 1,
                page_size: 4096,
                hashes_match: true,
                seconds: 0.1,
                read_back: None,
            });
            r.backup_path = Some(format!("/backups/persistence.db-{id}").into());
        }
        r.outcome = outcome;
        r
    }

    fn full() -> Outcome {
        Outcome::Failed {
            step: Phase::Copy,
            kind: ErrorKind::Copy,
            message: "Not enough free space in /backups: the backup needs 10 bytes".into(),
        }
    }

    fn nightly() -> Schedule {
        Schedule {
            name: "nightly".into(),
            source: "/srv/apama/store".into(),
            dest: "/backups".into(),
            store_name: "persistence.db".into(),
            method: crate::method::MethodChoice::Auto,
            retention: Default::default(),
            pace: Default::default(),
            when: When::parse("02:00").unwrap(),
            history_dir: "/home/op/.local/share/persnap".into(),
            created: Some(now().with_timezone(&Utc) - Duration::days(30)),
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

    fn judge(runs: &[Run], schedules: &[Schedule]) -> Assessment {
        assess(&db(), runs, schedules, None, Policy::default(), now())
    }

    #[test]
    fn a_recent_verified_backup_is_protected() {
        let a = judge(&[run("a", 3, Outcome::Completed, None)], &[]);
        assert_eq!(a.level, Level::Protected);
        assert_eq!(a.headline, "Protected: last verified backup 3 hours ago.");
        assert!(a.advice.unwrap().contains("No schedule"));
        assert_eq!(a.location.as_deref(), Some(Path::new("/backups")));
    }

    fn drill(id: &str, hours_ago: i64, problem: Option<&str>) -> Run {
        let mut r = run(id, hours_ago, Outcome::Completed, None);
        r.kind = RunKind::Drill;
        r.verification = None;
        r.drill = Some(crate::drill::DrillReport {
            places: vec![crate::drill::Checked {
                location: "sftp:backup@nas:/srv/repo".into(),
                kind: crate::drill::PlaceKind::Offsite,
                backups: vec!["1a2b3c4d".into()],
                packs: Some((2, 4)),
                problem: problem.map(Into::into),
                detail: None,
            }],
        });
        if problem.is_some() {
            r.outcome = Outcome::Failed {
                step: Phase::Verify,
                kind: ErrorKind::Verify,
                message: "Not restorable".into(),
            };
        }
        r
    }

    #[test]
    fn a_drill_that_found_a_place_damaged_is_failing_and_names_it() {
        let runs = [
            run("a", 3, Outcome::Completed, None),
            drill("d1", 200, None),
            drill(
                "d2",
                2,
                Some("the backup 1a2b3c4d could not be read back whole"),
            ),
        ];
        let a = judge(&runs, &[]);
        assert_eq!(a.level, Level::Failing);
        assert!(
            a.headline.contains("the offsite repository sftp:backup@nas:/srv/repo: the backup 1a2b3c4d could not be read back"),
            "{}",
            a.headline
        );
        assert!(a.advice.unwrap().contains("persnap drill orders"));
        // A drill that passes since makes it restorable again.
        let mut later = runs.to_vec();
        later.push(drill("d3", 1, None));
        let a = judge(&later, &[]);
        assert_eq!(a.level, Level::Protected, "{}", a.headline);
        assert_eq!(a.proven.unwrap().id, "d3");
    }

    #[test]
    fn no_drill_for_eight_days_needs_attention_once_protected_that_long() {
        // Protected (backed up) two days: not yet.
        let runs = [
            run("first", 48, Outcome::Completed, None),
            run("a", 3, Outcome::Completed, None),
        ];
        assert_eq!(judge(&runs, &[]).level, Level::Protected);
        // Backed up for ten days, never drilled.
        let runs = [
            run("first", 240, Outcome::Completed, None),
            run("a", 3, Outcome::Completed, None),
        ];
        let a = judge(&runs, &[]);
        assert_eq!(a.level, Level::Attention);
        assert!(
            a.headline.contains("never proven restorable"),
            "{}",
            a.headline
        );
        // The last drill that passed was nine days ago.
        let mut runs = runs.to_vec();
        runs.push(drill("d", 216, None));
        let a = judge(&runs, &[]);
        assert_eq!(a.level, Level::Attention);
        assert!(
            a.headline.contains("not proven restorable for 9 days"),
            "{}",
            a.headline
        );
        // And a week ago is fine.
        runs.push(drill("d2", 168, None));
        assert_eq!(judge(&runs, &[]).level, Level::Protected);
    }

    #[test]
    fn nothing_at_all_is_never_backed_up() {
        let a = judge(&[], &[]);
        assert_eq!(a.level, Level::Never);
        assert_eq!(a.headline, "Never backed up.");
        let a = judge(&[], &[nightly()]);
        assert_eq!(a.level, Level::Never);
        assert!(
            a.advice.unwrap().contains("tomorrow at 02:00"),
            "the first run is named"
        );
        assert_eq!(
            a.schedule.unwrap().next_run,
            Some(
                Local
                    .with_ymd_and_hms(2026, 12, 4, 2, 0, 0)
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
    }

    #[test]
    fn a_failed_scheduled_run_after_the_last_good_one_is_failing_with_the_reason() {
        let runs = [
            run("good", 36, Outcome::Completed, Some("nightly")),
            run("bad", 12, full(), Some("nightly")),
        ];
        let a = judge(&runs, &[nightly()]);
        assert_eq!(a.level, Level::Failing);
        assert_eq!(
            a.headline,
            "The scheduled backup today at 02:00 failed: the backup location is full."
        );
        assert!(a.advice.unwrap().contains("Free some space"));
        assert!(
            a.details[0].contains("Not enough free space"),
            "{:?}",
            a.details
        );
        assert_eq!(a.last_good.unwrap().id, "good");
    }

    #[test]
    fn a_good_run_after_a_failure_clears_it() {
        let runs = [
            run("bad", 12, full(), Some("nightly")),
            run("good", 1, Outcome::Completed, None),
        ];
        assert_eq!(judge(&runs, &[nightly()]).level, Level::Protected);
    }

    #[test]
    fn a_backup_cancelled_by_hand_is_no_failure_but_a_cancelled_schedule_is() {
        let runs = [
            run("good", 3, Outcome::Completed, None),
            run("cancelled", 1, Outcome::Cancelled, None),
        ];
        assert_eq!(judge(&runs, &[]).level, Level::Protected);
        let runs = [
            run("good", 30, Outcome::Completed, None),
            run("cancelled", 12, Outcome::Cancelled, Some("nightly")),
        ];
        let a = judge(&runs, &[nightly()]);
        assert_eq!(a.level, Level::Failing);
        assert!(
            a.headline.contains("stopped before it finished"),
            "{}",
            a.headline
        );
    }

    #[test]
    fn an_old_backup_without_a_schedule_needs_attention() {
        let a = judge(&[run("old", 75, Outcome::Completed, None)], &[]);
        assert_eq!(a.level, Level::Attention);
        assert_eq!(a.headline, "No backup for 3 days.");
        assert_eq!(a.level.exit_code(), 1);
    }

    #[test]
    fn a_missed_scheduled_run_needs_attention() {
        // Last good 36 h ago; today's 02:00 run never happened.
        let a = judge(
            &[run("old", 36, Outcome::Completed, Some("nightly"))],
            &[nightly()],
        );
        assert_eq!(a.level, Level::Attention);
        assert!(
            a.headline
                .starts_with("The scheduled backup today at 02:00 did not run"),
            "{}",
            a.headline
        );
        // With today's run there, it is protected.
        let a = judge(
            &[run("new", 12, Outcome::Completed, Some("nightly"))],
            &[nightly()],
        );
        assert_eq!(a.level, Level::Protected, "{}", a.headline);
        assert_eq!(a.advice, None);
    }

    #[test]
    fn max_age_overrides_the_schedule() {
        let runs = [run("new", 12, Outcome::Completed, Some("nightly"))];
        let policy = Policy {
            max_age: Some(Duration::hours(6)),
        };
        let a = assess(&db(), &runs, &[nightly()], None, policy, now());
        assert_eq!(a.level, Level::Attention);
        assert_eq!(a.headline, "No backup for 12 hours.");
    }

    #[test]
    fn a_nearly_full_location_needs_attention() {
        let runs = [run("a", 3, Outcome::Completed, None)];
        let a = assess(&db(), &runs, &[], Some(1500), Policy::default(), now());
        assert_eq!(a.level, Level::Attention);
        assert_eq!(
            a.headline,
            "Protected, but the backup location has room for one more."
        );
        let a = assess(&db(), &runs, &[], Some(500), Policy::default(), now());
        assert!(a.headline.contains("room for no more"));
        let a = assess(&db(), &runs, &[], Some(5000), Policy::default(), now());
        assert_eq!(a.level, Level::Protected);
    }

    #[test]
    fn an_unverified_or_other_databases_run_does_not_count() {
        let mut unverified = run("u", 1, Outcome::Completed, None);
        unverified.verification.as_mut().unwrap().integrity = "*** in database main ***".into();
        let mut other = run("o", 1, Outcome::Completed, None);
        other.source = "/srv/other".into();
        let a = judge(&[unverified, other], &[]);
        assert_eq!(
            a.level,
            Level::Failing,
            "an unverified completed run is a failure"
        );
        let mut other = run("o", 1, Outcome::Completed, None);
        other.store_name = "other.db".into();
        assert_eq!(judge(&[other], &[]).level, Level::Never);
    }

    #[test]
    fn reasons_are_plain() {
        let failed = |kind, message: &str| Outcome::Failed {
            step: Phase::Copy,
            kind,
            message: message.into(),
        };
        assert_eq!(reason(&full()), "the backup location is full");
        assert!(
            reason(&failed(
                ErrorKind::BadInput,
                "The backup location /mnt/usb does not exist. Create the folder first"
            ))
            .contains("unplugged")
        );
        assert_eq!(
            reason(&failed(
                ErrorKind::Snapshot,
                "Could not create the snapshot"
            )),
            "no snapshot of the disk could be taken"
        );
        assert!(reason(&Outcome::Interrupted).contains("half-way"));
    }

    #[test]
    fn moments_and_ages_read_naturally() {
        let n = now();
        let at = |d: u32, h: u32| {
            Local
                .with_ymd_and_hms(2026, 12, d, h, 0, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(moment(at(3, 2), n), "today at 02:00");
        assert_eq!(moment(at(2, 2), n), "yesterday at 02:00");
        assert_eq!(moment(at(4, 2), n), "tomorrow at 02:00");
        assert_eq!(moment(at(1, 2), n), "on Tuesday at 02:00");
        assert_eq!(
            moment(
                Local
                    .with_ymd_and_hms(2026, 11, 3, 2, 0, 0)
                    .unwrap()
                    .with_timezone(&Utc),
                n
            ),
            "on 3 Nov at 02:00"
        );
        assert_eq!(ago(Duration::seconds(20)), "just now");
        assert_eq!(ago(Duration::minutes(1)), "1 minute ago");
        assert_eq!(ago(Duration::hours(47)), "47 hours ago");
        assert_eq!(ago(Duration::hours(49)), "2 days ago");
    }
}
