//! One event per run that ended, with a stable id per kind, for the
//! places administrators watch: the Windows Event Log (source `persnap`,
//! Application log), where SCOM and Event Viewer filters are written
//! against the ids. The ids never change meaning; the table is in
//! docs/MONITORING.md.
//!
//! [`of`] is the rule, pure and tested; [`report`] writes it (Windows;
//! elsewhere the log file and a scheduled run's journal hold the same
//! words).

use crate::history::{Outcome, Run, RunKind};
use crate::progress::Phase;

/// How grave an event is (the Event Log's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Information,
    Warning,
    Error,
}

/// Every kind of event, with its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// 100: a backup was verified (and stored where it was asked to be).
    BackupVerified,
    /// 101: a backup failed.
    BackupFailed,
    /// 102: a backup could not start (its location gone, the store
    /// moved, a wrong password): nothing was taken.
    BackupRefused,
    /// 103: a backup was cancelled.
    BackupCancelled,
    /// 104: a backup's process ended before it did.
    BackupInterrupted,
    /// 105: a scheduled backup hung and was stopped.
    BackupHung,
    /// 106: the backup is good, but its offsite copy failed.
    OffsiteFailed,
    /// 107: the backup is verified and kept in its folder, but storing it
    /// in the repository failed.
    RepositoryFailed,
    /// 110: a database was restored.
    Restored,
    /// 111: a restore failed, was cancelled or interrupted.
    RestoreFailed,
    /// 120: a restore drill proved the backups restorable.
    DrillPassed,
    /// 121: a restore drill found a place that did not give its backups
    /// back (or was cancelled).
    DrillFailed,
}

impl Event {
    pub const ALL: [Event; 12] = [
        Event::BackupVerified,
        Event::BackupFailed,
        Event::BackupRefused,
        Event::BackupCancelled,
        Event::BackupInterrupted,
        Event::BackupHung,
        Event::OffsiteFailed,
        Event::RepositoryFailed,
        Event::Restored,
        Event::RestoreFailed,
        Event::DrillPassed,
        Event::DrillFailed,
    ];

    /// Its stable id.
    pub fn id(self) -> u32 {
        match self {
            Event::BackupVerified => 100,
            Event::BackupFailed => 101,
            Event::BackupRefused => 102,
            Event::BackupCancelled => 103,
            Event::BackupInterrupted => 104,
            Event::BackupHung => 105,
            Event::OffsiteFailed => 106,
            Event::RepositoryFailed => 107,
            Event::Restored => 110,
            Event::RestoreFailed => 111,
            Event::DrillPassed => 120,
            Event::DrillFailed => 121,
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Event::BackupVerified | Event::Restored | Event::DrillPassed => Severity::Information,
            Event::BackupCancelled
            | Event::BackupInterrupted
            | Event::OffsiteFailed
            | Event::RepositoryFailed => Severity::Warning,
            Event::BackupFailed
            | Event::BackupRefused
            | Event::BackupHung
            | Event::RestoreFailed
            | Event::DrillFailed => Severity::Error,
        }
    }
}

/// The event a run that ended makes, and its message in plain words
/// (`None` while it runs).
pub fn of(run: &Run) -> Option<(Event, String)> {
    let store = format!("{} in {}", run.store_name, run.source.display());
    let by = run
        .scheduled
        .as_deref()
        .map(|s| format!(" (scheduled: {s})"))
        .unwrap_or_default();
    let failure = |outcome: &Outcome| match outcome {
        Outcome::Failed { step, message, .. } => format!("during {step}: {message}"),
        Outcome::Cancelled => "it was cancelled.".to_owned(),
        _ => "its process ended before it did.".to_owned(),
    };
    let id = &run.id[..run.id.len().min(8)];
    let (event, words) = match (run.kind, &run.outcome) {
        (_, Outcome::Running) => return None,
        (RunKind::Backup, Outcome::Completed) => match &run.offsite {
            _ if let Some(why) = run
                .warnings
                .iter()
                .find_map(|w| w.strip_prefix(crate::history::NOT_STORED)) =>
            {
                (
                    Event::RepositoryFailed,
                    format!(
                        "The backup of {store}{by} is verified and kept in {}, but it was not stored in the repository: {why}",
                        run.destination.display()
                    ),
                )
            }
            Some(crate::repository::Offsite::Failed { location, message }) => (
                Event::OffsiteFailed,
                format!(
                    "The backup of {store}{by} is verified and kept in {}, but its offsite copy into {location} failed: {message}",
                    run.destination.display()
                ),
            ),
            _ => (
                Event::BackupVerified,
                format!(
                    "The backup of {store}{by} is verified and kept in {} ({}, {} files).",
                    run.destination.display(),
                    crate::units::bytes(run.bytes),
                    run.files
                ),
            ),
        },
        (RunKind::Backup, Outcome::Failed { step, message, .. })
            if *step == Phase::Prepare && run.snapshot_id.is_none() =>
        {
            (
                Event::BackupRefused,
                format!("The backup of {store}{by} could not start; nothing was taken: {message}"),
            )
        }
        (RunKind::Backup, Outcome::Failed { message, .. })
            if message.starts_with("The scheduled backup hung") =>
        {
            (
                Event::BackupHung,
                format!("The backup of {store}{by}: {message}"),
            )
        }
        (RunKind::Backup, Outcome::Failed { .. }) => (
            Event::BackupFailed,
            format!("The backup of {store}{by} failed {}", failure(&run.outcome)),
        ),
        (RunKind::Backup, Outcome::Cancelled) => (
            Event::BackupCancelled,
            format!("The backup of {store}{by} was cancelled; nothing was kept."),
        ),
        (RunKind::Backup, Outcome::Interrupted) => (
            Event::BackupInterrupted,
            format!(
                "The backup of {store}{by} was interrupted: its process ended before it did; nothing was kept."
            ),
        ),
        (RunKind::Restore, Outcome::Completed) => (
            Event::Restored,
            format!(
                "The backup in {} was restored into {}.",
                run.source.display(),
                run.destination.display()
            ),
        ),
        (RunKind::Restore, outcome) => (
            Event::RestoreFailed,
            format!(
                "The restore of the backup in {} into {} did not happen: {}",
                run.source.display(),
                run.destination.display(),
                failure(outcome)
            ),
        ),
        (RunKind::Drill, Outcome::Completed) => (
            Event::DrillPassed,
            format!("The backups of {store}{by} were proven restorable (restore drill)."),
        ),
        (RunKind::Drill, outcome) => (
            Event::DrillFailed,
            format!(
                "The restore drill of {store}{by} did not prove its backups restorable {}",
                failure(outcome)
            ),
        ),
    };
    Some((event, format!("{words} (run {id})")))
}

/// Write the event of `run` where administrators look: on Windows, the
/// Application log under the source `persnap` (registered by the setup
/// program). A failure to write it never fails the run; it is logged.
pub fn report(run: &Run) {
    let Some((event, message)) = of(run) else {
        return;
    };
    tracing::debug!("event {}: {message}", event.id());
    #[cfg(windows)]
    if let Err(e) = crate::sys::report_event(event.id(), event.severity(), &message) {
        tracing::warn!("the event could not be written into the Windows Event Log: {e}");
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = super::journal::send(&journal_fields(run, event, &message)) {
        tracing::warn!("the event could not be sent to the journal: {e}");
    }
}

/// The journal record of `run`'s event: the message and its priority,
/// and the fields to find it by.
#[cfg(target_os = "linux")]
fn journal_fields(run: &Run, event: Event, message: &str) -> Vec<(&'static str, String)> {
    let priority = match event.severity() {
        Severity::Information => 6,
        Severity::Warning => 4,
        Severity::Error => 3,
    };
    let location = match &run.repository {
        Some(stored) => stored.location.clone(),
        None => run.destination.display().to_string(),
    };
    let mut fields = vec![
        ("MESSAGE", message.to_owned()),
        ("PRIORITY", priority.to_string()),
        ("SYSLOG_IDENTIFIER", "persnap".to_owned()),
        ("PERSNAP_EVENT_ID", event.id().to_string()),
        ("PERSNAP_KIND", format!("{:?}", run.kind).to_lowercase()),
        ("PERSNAP_OUTCOME", run.outcome.label().to_owned()),
        ("PERSNAP_SOURCE", run.source.display().to_string()),
        ("PERSNAP_STORE_NAME", run.store_name.clone()),
        ("PERSNAP_LOCATION", location),
        ("PERSNAP_RUN_ID", run.id.clone()),
    ];
    if let Some(schedule) = &run.scheduled {
        fields.push(("PERSNAP_SCHEDULE", schedule.clone()));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn run(kind: RunKind, outcome: Outcome) -> Run {
        let mut run = Run::starting(
            kind,
            "0123456789abcdef".into(),
            "01234567".into(),
            "/srv/apama/store".into(),
            "persistence.db".into(),
            "/backups".into(),
        );
        run.outcome = outcome;
        run
    }

    fn failed(step: Phase, message: &str) -> Outcome {
        Outcome::Failed {
            step,
            kind: ErrorKind::Copy,
            message: message.into(),
        }
    }

    #[test]
    fn every_run_that_ended_makes_one_event_with_its_id_in_plain_words() {
        assert_eq!(of(&run(RunKind::Backup, Outcome::Running)), None);
        let mut good = run(RunKind::Backup, Outcome::Completed);
        good.bytes = 3 << 20;
        good.files = 2;
        good.scheduled = Some("orders".into());
        let (event, words) = of(&good).unwrap();
        assert_eq!((event, event.id()), (Event::BackupVerified, 100));
        assert_eq!(
            words,
            "The backup of persistence.db in /srv/apama/store (scheduled: orders) is verified and kept in /backups (3.0 MiB, 2 files). (run 01234567)"
        );
        good.offsite = Some(crate::repository::Offsite::Failed {
            location: "sftp:backup@vault:/persnap".into(),
            message: "Could not reach the repository.".into(),
        });
        assert_eq!(of(&good).unwrap().0.id(), 106);
        assert_eq!(of(&good).unwrap().0.severity(), Severity::Warning);
        good.warnings.push(format!(
            "{}Could not reach the repository.",
            crate::history::NOT_STORED
        ));
        let (event, words) = of(&good).unwrap();
        assert_eq!((event.id(), event.severity()), (107, Severity::Warning));
        assert!(
            words.contains("is verified and kept in /backups, but it was not stored in the repository: Could not reach the repository."),
            "{words}"
        );

        let refused = Run::refused(
            "/srv/apama/store".into(),
            "persistence.db".into(),
            "/gone".into(),
            ErrorKind::BadInput,
            "The backup location /gone does not exist.".into(),
        );
        let (event, words) = of(&refused).unwrap();
        assert_eq!((event.id(), event.severity()), (102, Severity::Error));
        assert!(
            words.contains(
                "could not start; nothing was taken: The backup location /gone does not exist."
            ),
            "{words}"
        );

        let (event, words) = of(&run(
            RunKind::Backup,
            failed(Phase::Copy, "The disk is full."),
        ))
        .unwrap();
        assert_eq!(event.id(), 101);
        assert!(
            words.contains("failed during copy: The disk is full."),
            "{words}"
        );
        assert_eq!(
            of(&run(RunKind::Backup, Outcome::Cancelled))
                .unwrap()
                .0
                .id(),
            103
        );
        assert_eq!(
            of(&run(RunKind::Backup, Outcome::Interrupted))
                .unwrap()
                .0
                .id(),
            104
        );
        let hung = failed(
            Phase::Copy,
            "The scheduled backup hung: it was still running after 6 hours and was stopped.",
        );
        assert_eq!(of(&run(RunKind::Backup, hung)).unwrap().0.id(), 105);
        assert_eq!(
            of(&run(RunKind::Restore, Outcome::Completed))
                .unwrap()
                .0
                .id(),
            110
        );
        assert_eq!(
            of(&run(RunKind::Restore, Outcome::Cancelled))
                .unwrap()
                .0
                .id(),
            111
        );
        assert_eq!(
            of(&run(RunKind::Drill, Outcome::Completed)).unwrap().0.id(),
            120
        );
        let (event, words) = of(&run(
            RunKind::Drill,
            failed(
                Phase::Verify,
                "Not restorable from the backup folder /backups.",
            ),
        ))
        .unwrap();
        assert_eq!((event.id(), event.severity()), (121, Severity::Error));
        assert!(
            words.contains("Not restorable from the backup folder /backups."),
            "{words}"
        );
        // Ids are unique, and never reused.
        let mut ids: Vec<u32> = Event::ALL.iter().map(|e| e.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), Event::ALL.len());
    }
}
