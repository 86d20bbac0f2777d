//! The standing of every protected database in Prometheus' text
//! exposition format (version 0.0.4), from the same [`Assessment`]s the
//! app's overview and `persnap status` read.
//!
//! Every metric is a gauge, named as Prometheus' conventions ask
//! (`persnap_` prefix, base units as suffixes, timestamps in Unix seconds)
//! and checked by `promtool check metrics` in the tests. Each sample is
//! labelled `database` (its registered name) and, where it is about its
//! backups, `location`: where they go, as the app shows it (a repository's
//! address never holds a password). A timestamp of something that never
//! happened is 0, so that `time() - persnap_last_success_timestamp_seconds
//! > 93600` fires for a database never backed up too.
//!
//! No sample carries a timestamp of its own: node_exporter's textfile
//! collector skips a file that does.

use std::fmt::Write as _;

use crate::history::{Outcome, Run};
use crate::protection::{Assessment, Level};

/// The file node_exporter's textfile collector reads from its folder
/// (only names ending in `.prom` are read; the temporary file an atomic
/// write makes beside it is not).
pub const TEXTFILE_NAME: &str = "persnap.prom";

/// Where a database's backups go, as the app says it: its repository when
/// only the repository keeps them, else its backup folder.
pub fn location_of(a: &Assessment) -> String {
    match (&a.repository, &a.location) {
        (Some(r), _) if r.staged => r.location.clone(),
        (_, Some(folder)) => folder.display().to_string(),
        (Some(r), None) => r.location.clone(),
        (None, None) => String::new(),
    }
}

/// A label value, escaped as the format asks (`\`, `"` and new lines).
fn label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

fn seconds(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// When a run ended (when it started, if that was not recorded).
fn ended(run: &Run) -> f64 {
    seconds(run.finished.unwrap_or(run.started))
}

/// One family: its help, its type and a sample per database that has a
/// value (non-finite values are never written).
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    with_location: bool,
    value: &'a dyn Fn(&Assessment) -> Option<f64>,
}

/// Every family, in the order they are written.
fn families() -> Vec<Family<'static>> {
    vec![
        Family {
            name: "persnap_protected",
            help: "1 when the database is protected (persnap status would exit 0), else 0.",
            with_location: false,
            value: &|a| Some(f64::from(u8::from(a.level == Level::Protected))),
        },
        Family {
            name: "persnap_last_success_timestamp_seconds",
            help: "When the newest verified backup ended, in Unix seconds (0: never).",
            with_location: true,
            value: &|a| Some(a.last_good.as_ref().map_or(0.0, ended)),
        },
        Family {
            name: "persnap_last_attempt_timestamp_seconds",
            help: "When the newest backup attempt that has ended began, in Unix seconds (0: never).",
            with_location: true,
            value: &|a| Some(a.last_run.as_ref().map_or(0.0, |r| seconds(r.started))),
        },
        Family {
            name: "persnap_last_attempt_success",
            help: "1 when the newest backup attempt that has ended was verified, 0 when it failed, was cancelled or was interrupted.",
            with_location: true,
            value: &|a| {
                a.last_run
                    .as_ref()
                    .map(|r| f64::from(u8::from(r.outcome == Outcome::Completed)))
            },
        },
        Family {
            name: "persnap_backup_size_bytes",
            help: "The size of the newest verified backup's files, in bytes.",
            with_location: true,
            value: &|a| a.last_good.as_ref().map(|r| r.bytes as f64),
        },
        Family {
            name: "persnap_backup_duration_seconds",
            help: "How long the newest verified backup took, in seconds.",
            with_location: true,
            value: &|a| a.last_good.as_ref().and_then(|r| r.duration_secs),
        },
        Family {
            name: "persnap_last_drill_success_timestamp_seconds",
            help: "When a restore drill last proved the database's backups restorable from every place they are kept, in Unix seconds (0: never).",
            with_location: true,
            value: &|a| Some(a.proven.as_ref().map_or(0.0, ended)),
        },
        Family {
            name: "persnap_last_drill_success",
            help: "1 when the newest restore drill that has ended proved the backups restorable, 0 when it did not.",
            with_location: true,
            value: &|a| {
                a.last_drill
                    .as_ref()
                    .map(|d| f64::from(u8::from(a.proven.as_ref().is_some_and(|p| p.id == d.id))))
            },
        },
        Family {
            name: "persnap_location_free_bytes",
            help: "Free space where the database's backups are written, in bytes (when it could be read).",
            with_location: true,
            value: &|a| a.free.map(|f| f as f64),
        },
    ]
}

/// The exposition of `assessments`: every family with its help and type,
/// then `persnap_state`, 1 for the state each database is in (protected,
/// attention, failing, never) and 0 for the others.
pub fn exposition(assessments: &[Assessment]) -> String {
    let mut out = String::new();
    for family in families() {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} gauge", family.name);
        for a in assessments {
            let Some(value) = (family.value)(a).filter(|v| v.is_finite()) else {
                continue;
            };
            let database = label(&a.name);
            if family.with_location {
                let _ = writeln!(
                    out,
                    "{}{{database=\"{database}\",location=\"{}\"}} {value}",
                    family.name,
                    label(&location_of(a))
                );
            } else {
                let _ = writeln!(out, "{}{{database=\"{database}\"}} {value}", family.name);
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP persnap_state 1 for the state the database is in (protected, attention, failing, never), 0 for the others."
    );
    let _ = writeln!(out, "# TYPE persnap_state gauge");
    for a in assessments {
        for (state, level) in [
            ("protected", Level::Protected),
            ("attention", Level::Attention),
            ("failing", Level::Failing),
            ("never", Level::Never),
        ] {
            let _ = writeln!(
                out,
                "persnap_state{{database=\"{}\",state=\"{state}\"}} {}",
                label(&a.name),
                u8::from(a.level == level)
            );
        }
    }
    out
}

/// Write [`exposition`] into `dir` as [`TEXTFILE_NAME`], atomically (a
/// temporary file beside it, renamed over it), readable by everyone: the
/// textfile collector runs as its own user.
pub fn write_textfile(dir: &std::path::Path, assessments: &[Assessment]) -> crate::Result<()> {
    let path = dir.join(TEXTFILE_NAME);
    crate::fsutil::atomic_write_public(&path, exposition(assessments).as_bytes()).map_err(
        crate::Error::io(
            "write",
            &path,
            "Check that the folder exists and that this account may write there (node_exporter's textfile folder is usually root's).",
        ),
    )
}

/// Why a textfile folder cannot be written by root, in words (`problem`
/// follows the folder's name, from [`crate::backup::folder_writer`]).
pub fn unsafe_folder(dir: &std::path::Path, problem: &str) -> String {
    format!(
        "node_exporter's textfile folder {} {problem}; persnap writes {TEXTFILE_NAME} there as the folder's owner, so nobody but that owner must be able to change it or a folder above it: make them writable by their owner only (chmod 755)",
        dir.display()
    )
}
