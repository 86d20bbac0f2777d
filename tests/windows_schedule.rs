//! Windows scheduled runs with the real persnap.exe under wine: the exact
//! argument string a Task Scheduler task carries makes a backup recorded in
//! the schedule's history as scheduled (quoting included: paths with
//! spaces), and `persnap schedule toast` (how a failed run tells the user)
//! puts a balloon — a toast on Windows 10 and later — into the notification
//! area and removes it again. Starting the toast in another user's session
//! needs SYSTEM and a real Windows; not here.
#![cfg(windows)]

use std::os::windows::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use persnap::history::{History, Outcome};
use persnap::loadgen::{self, Mode};
use persnap::schedule::{Schedule, When, taskschd};

fn persnap_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("persnap.exe")
}

#[test]
fn a_toast_is_shown_in_the_notification_area() {
    let out = Command::new(persnap_exe())
        .args([
            "schedule",
            "toast",
            "--summary",
            "persnap: the scheduled backup “nightly” failed",
            "--body",
            "C:\\Apama\\store: failed during snapshot: insufficient storage",
            "--seconds",
            "1",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("Shown: persnap: the scheduled backup “nightly” failed"),
        "{said}"
    );
}

#[test]
fn the_tasks_arguments_make_a_scheduled_backup() {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("my store");
    let dest = root.path().join("backups offsite & co");
    let history = root.path().join("op's history");
    for dir in [&src, &dest, &history] {
        std::fs::create_dir(dir).unwrap();
    }
    loadgen::init(&src.join("persistence.db"), Mode::Wal, 1).unwrap();
    let s = Schedule {
        name: "nightly".into(),
        source: persnap::volume::canonical(&src).unwrap(),
        dest: persnap::volume::canonical(&dest).unwrap(),
        store_name: "persistence.db".into(),
        method: "sqlite-online".parse().unwrap(),
        retention: persnap::retention::RetentionPolicy {
            keep_last: Some(2),
            keep_days: None,
        },
        when: When::parse("02:00").unwrap(),
        history_dir: history.clone(),
        created: None,
        uid: None,
    };
    // Exactly what the task's <Arguments> holds, parsed by the child itself.
    let out = Command::new(persnap_exe())
        .raw_arg(taskschd::arguments(&s))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = History::at(&history).load().unwrap();
    let run = runs.last().expect("recorded in the schedule's history");
    assert_eq!(run.outcome, Outcome::Completed);
    assert_eq!(run.scheduled.as_deref(), Some("nightly"));
    assert_eq!(run.source, s.source);
    let backup = run.backup_path.clone().unwrap();
    assert!(backup.starts_with(&s.dest), "{}", backup.display());
}
