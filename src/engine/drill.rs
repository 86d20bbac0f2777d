//! Restore drills: proving, again and again, that every place a database's
//! backups are kept can still give it back.
//!
//! A backup is checked the day it is made; a pack damaged on a disk since,
//! or an object lost on the offsite server, would otherwise be found at the
//! moment of need. A drill reads back, in full, from every place (the
//! backup folder, the repository, the offsite repository): the newest
//! backup of the database and one older one chosen at random — every
//! file's SHA-256 against its manifest, then SQLite's integrity check on
//! the result, in a scratch folder of the user's (never the database's
//! folder). In a repository it also reads one part of all the packs its
//! backups need ([`PACK_PARTS`] parts, the part read longest ago first, as
//! `restic check --read-data-subset n/m`), so that with weekly drills every
//! pack is read at least once in four weeks.
//!
//! Scheduled backups drill when one is due ([`due`]: every [`EVERY`]);
//! `persnap drill` and the app drill on demand. The result is a run of its
//! own in the history ([`crate::history::RunKind::Drill`]), read by the
//! overview and `persnap status` ("last proven restorable").

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::history::{Outcome, Run, RunKind};

/// How often scheduled runs drill.
pub const EVERY: Duration = Duration::days(7);
/// `persnap status` asks for attention when no drill passed for longer.
pub const OVERDUE: Duration = Duration::days(8);
/// A repository's packs are read in this many parts, one per drill.
pub const PACK_PARTS: u32 = 4;

/// What kind of place a drill read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlaceKind {
    Folder,
    Repository,
    Offsite,
}

impl PlaceKind {
    pub fn words(self) -> &'static str {
        match self {
            PlaceKind::Folder => "the backup location",
            PlaceKind::Repository => "the repository",
            PlaceKind::Offsite => "the offsite repository",
        }
    }
}

/// What one place gave back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checked {
    /// Where, as shown (no password in it).
    pub location: String,
    pub kind: PlaceKind,
    /// The backups read back whole (folder names, or ids in a repository).
    #[serde(default)]
    pub backups: Vec<String>,
    /// The part of the repository's packs read: `n` of `m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packs: Option<(u32, u32)>,
    /// What was damaged or missing, in plain words; none: it gave
    /// everything back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The full message behind the problem, for "Details".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Checked {
    /// The place and what went wrong there, in words.
    pub fn words(&self) -> String {
        let place = format!("{} {}", self.kind.words(), self.location);
        match &self.problem {
            Some(problem) => format!("{place}: {problem}"),
            None => format!("{place}: restorable"),
        }
    }
}

/// A drill's findings, place by place.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DrillReport {
    pub places: Vec<Checked>,
}

impl DrillReport {
    /// Every place gave its backups back (and there was one to drill).
    pub fn passed(&self) -> bool {
        !self.places.is_empty() && self.places.iter().all(|p| p.problem.is_none())
    }

    /// The places that did not, in words.
    pub fn problems(&self) -> Vec<String> {
        self.places
            .iter()
            .filter(|p| p.problem.is_some())
            .map(Checked::words)
            .collect()
    }
}

/// The drill runs of the store `store_name` in `folder`.
pub fn runs_of<'a>(
    folder: &'a Path,
    store_name: &'a str,
    runs: &'a [Run],
) -> impl Iterator<Item = &'a Run> + 'a {
    runs.iter().filter(move |r| {
        r.kind == RunKind::Drill && r.source == folder && r.store_name == store_name
    })
}

/// The newest drill that passed, and the newest that ended (passed or not).
pub fn last(folder: &Path, store_name: &str, runs: &[Run]) -> (Option<Run>, Option<Run>) {
    let ended: Vec<&Run> = runs_of(folder, store_name, runs)
        .filter(|r| !matches!(r.outcome, Outcome::Running | Outcome::Cancelled))
        .collect();
    let passed = ended
        .iter()
        .filter(|r| r.outcome == Outcome::Completed)
        .max_by_key(|r| r.started)
        .map(|r| (*r).clone());
    let newest = ended.iter().max_by_key(|r| r.started).map(|r| (*r).clone());
    (passed, newest)
}

/// Whether a scheduled run should drill now: no drill ended in the last
/// [`EVERY`] (a failed one counts, so that a damaged repository is not
/// read again at every hourly run; it is said until it is fixed).
pub fn due(folder: &Path, store_name: &str, runs: &[Run], now: DateTime<Utc>) -> bool {
    last(folder, store_name, runs)
        .1
        .is_none_or(|r| now - r.started >= EVERY)
}

/// Which part (1..=`m`) of a repository's packs to read next, given the
/// parts read before and when: one never read, else the one read longest
/// ago, so that `m` drills in a row read every part.
pub fn next_part(m: u32, read: &[(u32, DateTime<Utc>)]) -> u32 {
    (1..=m.max(1))
        .min_by_key(|n| {
            read.iter()
                .filter(|(part, _)| part == n)
                .map(|(_, when)| *when)
                .max()
        })
        .unwrap_or(1)
}

/// The parts of `m` read in the repository at `location` by earlier drills
/// of this store, and when.
pub fn parts_read(
    folder: &Path,
    store_name: &str,
    runs: &[Run],
    location: &str,
    m: u32,
) -> Vec<(u32, DateTime<Utc>)> {
    runs_of(folder, store_name, runs)
        .filter_map(|r| Some((r.started, r.drill.as_ref()?)))
        .flat_map(|(when, report)| {
            report
                .places
                .iter()
                .filter(move |p| p.location == location && p.problem.is_none())
                .filter_map(move |p| match p.packs {
                    Some((n, of)) if of == m => Some((n, when)),
                    _ => None,
                })
        })
        .collect()
}

/// The newest of `items` (by `key`), and one other chosen at random: what
/// a drill reads back from a place.
pub fn newest_and_one_older<T: Clone, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort_by_key(|t| std::cmp::Reverse(key(t)));
    let mut chosen: Vec<T> = sorted.first().map(|t| (*t).clone()).into_iter().collect();
    if sorted.len() > 1 {
        let pick = (uuid::Uuid::new_v4().as_u128() % (sorted.len() as u128 - 1)) as usize + 1;
        chosen.push(sorted[pick].clone());
    }
    chosen
}

/// The database a drill is for.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Its store folder and store name (how its runs are found).
    pub folder: PathBuf,
    pub store_name: String,
    /// Its name in a repository (`database=` tag).
    pub database: String,
}

#[cfg(feature = "repository")]
pub use running::*;

#[cfg(feature = "repository")]
mod running {
    use super::*;
    use crate::copy::Meter;
    use crate::error::{Error, Result};
    use crate::history::Recorder;
    use crate::progress::{CancelToken, Level, Phase, Progress};
    use crate::repository::Repo;

    /// A place to drill.
    pub enum Place<'a> {
        /// A backup folder (the database's backups directly in it).
        Folder(PathBuf),
        /// An opened repository, the first or the offsite one.
        Repository { repo: &'a Repo, kind: PlaceKind },
    }

    /// The places of a database: its backup folder (if it keeps one), its
    /// repository and its offsite one, in that order.
    pub fn places<'a>(
        folder: Option<PathBuf>,
        repository: Option<&'a Repo>,
        offsite: Option<&'a Repo>,
    ) -> Vec<Place<'a>> {
        let repositories = [
            (repository, PlaceKind::Repository),
            (offsite, PlaceKind::Offsite),
        ];
        folder
            .map(Place::Folder)
            .into_iter()
            .chain(
                repositories
                    .into_iter()
                    .filter_map(|(repo, kind)| Some(Place::Repository { repo: repo?, kind })),
            )
            .collect()
    }

    impl Place<'_> {
        fn shown(&self) -> (String, PlaceKind) {
            match self {
                Place::Folder(dir) => (dir.display().to_string(), PlaceKind::Folder),
                Place::Repository { repo, kind } => (repo.location().display(), *kind),
            }
        }
    }

    /// Drill `subject` at every place, recording one run through
    /// `recorder` (with `previous`, the runs so far, to pick the packs to
    /// read). Read-back copies go into scratch folders in `staging` (the
    /// user's), removed after each check. A place that fails does not stop
    /// the others; the run fails if any did. Errors: the run could not be
    /// recorded, or it was cancelled.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        subject: &Subject,
        places: &[Place],
        previous: &[Run],
        staging: &Path,
        pace: crate::pace::Pace,
        scheduled: Option<String>,
        recorder: &mut dyn Recorder,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<(Run, DrillReport)> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tag = id[..8].to_owned();
        let destination = places
            .first()
            .map(|p| PathBuf::from(p.shown().0))
            .unwrap_or_default();
        let mut run = Run::starting(
            RunKind::Drill,
            id,
            tag,
            subject.folder.clone(),
            subject.store_name.clone(),
            destination,
        );
        run.scheduled = scheduled;
        run.pace = Some(pace);
        recorder.record(&run)?;
        let started = std::time::Instant::now();
        let mut report = DrillReport::default();
        let mut outcome = Ok(());
        for place in places {
            let (location, kind) = place.shown();
            progress.log(
                Level::Info,
                &format!("Reading back from {} {location}", kind.words()),
            );
            let mut checked = Checked {
                location,
                kind,
                backups: Vec::new(),
                packs: None,
                problem: None,
                detail: None,
            };
            let result = match place {
                Place::Folder(dir) => {
                    drill_folder(subject, dir, pace, &mut checked, progress, cancel)
                }
                Place::Repository { repo, .. } => drill_repository(
                    subject,
                    repo,
                    previous,
                    staging,
                    pace,
                    &mut checked,
                    progress,
                    cancel,
                ),
            };
            match result {
                Ok(()) => {}
                Err(Error::Cancelled) => {
                    outcome = Err(Error::Cancelled);
                    break;
                }
                Err(e) => {
                    checked.detail = Some(e.to_string());
                    checked.problem.get_or_insert_with(|| e.to_string());
                }
            }
            if let Some(problem) = &checked.problem {
                progress.log(
                    Level::Warning,
                    &format!("{}: {problem}", checked.kind.words()),
                );
            }
            report.places.push(checked);
        }
        if report.places.is_empty() && outcome.is_ok() {
            report.places.push(Checked {
                location: String::new(),
                kind: PlaceKind::Folder,
                backups: Vec::new(),
                packs: None,
                problem: Some("it has no backup location to read back from".into()),
                detail: None,
            });
        }
        run.finished = Some(Utc::now());
        run.duration_secs = Some(started.elapsed().as_secs_f64());
        run.files = report.places.iter().map(|p| p.backups.len() as u32).sum();
        run.outcome = match (&outcome, report.passed()) {
            (Err(_), _) => Outcome::Cancelled,
            (Ok(()), true) => Outcome::Completed,
            (Ok(()), false) => Outcome::Failed {
                step: Phase::Verify,
                kind: crate::ErrorKind::Verify,
                message: format!("Not restorable from {}.", report.problems().join("; ")),
            },
        };
        run.drill = Some(report.clone());
        recorder.record(&run)?;
        crate::monitor::events::report(&run);
        // Error::Cancelled speaks of a backup; a drill says what it is.
        outcome
            .map_err(|_| Error::Relayed {
                kind: crate::ErrorKind::Cancelled,
                message:
                    "The restore drill was cancelled; nothing in the database's folder was touched."
                        .into(),
            })
            .map(|()| (run, report))
    }

    /// Read the backup in `dir` back whole and check it, at `pace`.
    fn read_back(
        dir: &Path,
        scratch: &Path,
        pace: crate::pace::Pace,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<()> {
        let mut meter = Meter {
            phase: Phase::Verify,
            done: 0,
            total: 0,
            progress,
            cancel,
            pacer: crate::pace::Pacer::new(pace),
        };
        crate::verify::verify_backup(dir, scratch, &mut meter).map(|_| ())
    }

    /// The newest good backup in `dir` and one older, each read back and
    /// checked whole.
    fn drill_folder(
        subject: &Subject,
        dir: &Path,
        pace: crate::pace::Pace,
        checked: &mut Checked,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<()> {
        let good: Vec<_> =
            crate::retention::candidates_of(dir, &subject.store_name, Some(&subject.folder))?
                .into_iter()
                .filter(|c| c.good)
                .collect();
        if good.is_empty() {
            checked.problem = Some("no verified backup of the database is there".into());
            return Ok(());
        }
        for c in newest_and_one_older(&good, |c| c.finished) {
            cancel.check()?;
            let name = c
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            checked.backups.push(name.clone());
            let scratch = crate::verify::scratch_parent(&c.path);
            if let Err(e) = read_back(&c.path, &scratch, pace, progress, cancel) {
                if matches!(e, Error::Cancelled) {
                    return Err(e);
                }
                checked.problem = Some(format!("the backup {name} is damaged"));
                return Err(e);
            }
        }
        Ok(())
    }

    /// The newest backup of the database in `repo` and one older, each
    /// read out and checked whole; then the next part of the packs.
    #[allow(clippy::too_many_arguments)]
    fn drill_repository(
        subject: &Subject,
        repo: &Repo,
        previous: &[Run],
        staging: &Path,
        pace: crate::pace::Pace,
        checked: &mut Checked,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<()> {
        let all = repo.list()?;
        let of_db: Vec<_> = all
            .into_iter()
            .filter(|l| l.database == subject.database && l.store_name == subject.store_name)
            .collect();
        // This machine's backups; on a machine that took over, those the
        // old one left are its backups too.
        let host = crate::manifest::host_name();
        let mine: Vec<_> = if of_db.iter().any(|l| l.host == host) {
            of_db.into_iter().filter(|l| l.host == host).collect()
        } else {
            of_db
        };
        if mine.is_empty() {
            checked.problem = Some(format!(
                "it holds no backup of the database {}",
                subject.database
            ));
            return Ok(());
        }
        for l in newest_and_one_older(&mine, |l| l.time) {
            cancel.check()?;
            checked.backups.push(l.short_id().to_owned());
            let fetched =
                crate::repository::deliver::fetch_staged(repo, &l.id, staging, progress, cancel);
            let (scratch, set) = match fetched {
                Ok(fetched) => fetched,
                Err(e) => {
                    if !matches!(e, Error::Cancelled) {
                        checked.problem = Some(format!(
                            "the backup {} could not be read back whole",
                            l.short_id()
                        ));
                    }
                    return Err(e);
                }
            };
            if let Err(e) = read_back(&set, scratch.path(), pace, progress, cancel) {
                if !matches!(e, Error::Cancelled) {
                    checked.problem = Some(format!("the backup {} is damaged", l.short_id()));
                }
                return Err(e);
            }
        }
        cancel.check()?;
        let location = repo.location().display();
        let n = next_part(
            PACK_PARTS,
            &parts_read(
                &subject.folder,
                &subject.store_name,
                previous,
                &location,
                PACK_PARTS,
            ),
        );
        checked.packs = Some((n, PACK_PARTS));
        let problems = repo.check_packs(n, PACK_PARTS, progress)?;
        if !problems.is_empty() {
            checked.problem = Some(format!(
                "part {n} of {PACK_PARTS} of the data it keeps is damaged or missing"
            ));
            checked.detail = Some(problems.join("; "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::days(days)
    }

    /// Weekly drills choosing their part as [`next_part`] does read every
    /// pack of a synthetic index within four weeks, whatever happened
    /// before; the parts are rustic's (`id % m == n % m`).
    #[test]
    fn weekly_drills_read_every_pack_within_four_weeks() {
        let ids: Vec<u32> = (0..1000u32)
            .map(|i| i.wrapping_mul(2_654_435_761).rotate_left(7))
            .collect();
        let in_part = |id: u32, n: u32| id % PACK_PARTS == n % PACK_PARTS;
        for history in [
            vec![],
            vec![(2, at(-3))],
            vec![(1, at(-30)), (4, at(-2)), (3, at(-9))],
        ] {
            let mut read = history.clone();
            let mut seen = std::collections::HashSet::<u32>::new();
            for week in 0..PACK_PARTS as i64 {
                let n = next_part(PACK_PARTS, &read);
                read.push((n, at(week * 7)));
                seen.extend(ids.iter().copied().filter(|id| in_part(*id, n)));
            }
            assert_eq!(seen.len(), ids.len(), "after {history:?}");
        }
    }

    #[test]
    fn the_part_read_longest_ago_comes_next() {
        assert_eq!(next_part(4, &[]), 1);
        assert_eq!(next_part(4, &[(1, at(0)), (2, at(1))]), 3);
        assert_eq!(
            next_part(4, &[(1, at(5)), (2, at(1)), (3, at(2)), (4, at(3))]),
            2
        );
    }

    #[test]
    fn the_newest_is_always_read_and_one_other_at_random() {
        let items = [3, 9, 1, 7];
        for _ in 0..50 {
            let chosen = newest_and_one_older(&items, |i| *i);
            assert_eq!(chosen[0], 9);
            assert_eq!(chosen.len(), 2);
            assert_ne!(chosen[1], 9);
        }
        assert_eq!(newest_and_one_older(&[5], |i| *i), [5]);
        assert!(newest_and_one_older::<i32, i32>(&[], |i| *i).is_empty());
    }

    fn drill_run(days: i64, passed: bool, packs: Option<(u32, u32)>) -> Run {
        let mut run = Run::starting(
            RunKind::Drill,
            format!("d{days}"),
            "t".into(),
            PathBuf::from("/db"),
            "persistence.db".into(),
            PathBuf::from("/backups"),
        );
        run.started = at(days);
        run.outcome = if passed {
            Outcome::Completed
        } else {
            Outcome::Failed {
                step: crate::progress::Phase::Verify,
                kind: crate::ErrorKind::Verify,
                message: "damaged".into(),
            }
        };
        run.drill = Some(DrillReport {
            places: vec![Checked {
                location: "/repo".into(),
                kind: PlaceKind::Repository,
                backups: vec!["abc".into()],
                packs,
                problem: (!passed).then(|| "damaged".into()),
                detail: None,
            }],
        });
        run
    }

    #[test]
    fn a_drill_is_due_a_week_after_the_last_one_ended() {
        let db = Path::new("/db");
        assert!(due(db, "persistence.db", &[], at(0)));
        let runs = [drill_run(0, false, None)];
        assert!(!due(db, "persistence.db", &runs, at(6)));
        assert!(due(db, "persistence.db", &runs, at(7)));
        assert!(
            due(db, "other.db", &runs, at(1)),
            "another store's drills do not count"
        );
    }

    #[test]
    fn only_parts_read_without_a_problem_count() {
        let runs = [
            drill_run(0, true, Some((1, 4))),
            drill_run(7, false, Some((2, 4))),
            drill_run(8, true, Some((3, 8))),
        ];
        let read = parts_read(Path::new("/db"), "persistence.db", &runs, "/repo", 4);
        assert_eq!(read, [(1, at(0))]);
        let (passed, newest) = last(Path::new("/db"), "persistence.db", &runs);
        assert_eq!(passed.unwrap().id, "d8");
        assert_eq!(newest.unwrap().id, "d8");
    }
}
