//! egui_kittest tests of the real app (the same `PersnapApp` the window
//! runs): typing folders, backing up a live database, watching progress,
//! seeing the result and the new history row, failure messages, and image
//! snapshots of each screen (tests/snapshots/; refresh with
//! `UPDATE_SNAPSHOTS=1 cargo test`). The harness also fails any input
//! widget without an accessible name.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT as _, Queryable as _};
use persnap::history::{History, Outcome as RunOutcome};
use persnap::loadgen::{self, Mode};

use super::{Outcome, PersnapApp, Screen, Settings};
#[cfg(unix)]
use crate::launch::HelperRoute;

/// The test kit every test uses (the integration tests' own).
#[path = "../../tests/integration/common/mod.rs"]
mod kit;

fn harness(app: PersnapApp) -> Harness<'static, PersnapApp> {
    Harness::builder()
        .with_size([960.0, 720.0])
        .build_eframe(move |_| app)
}

/// The app on its Back up screen, with its own history.
fn app_with_history(dir: &Path) -> PersnapApp {
    let mut app =
        PersnapApp::with_settings(Settings::default(), Ok(History::at(dir.join("history"))));
    app.rt.screen = super::Screen::Backup;
    app
}

/// Step the UI until `done` holds (work happens on the jobs' threads).
fn wait_until(
    h: &mut Harness<'static, PersnapApp>,
    what: &str,
    mut done: impl FnMut(&PersnapApp) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

/// Until the overview shows what it found: the cards' survey and the
/// search both done (the list of databases found is drawn only under the
/// cards, so waiting for the search alone races the survey).
fn wait_for_overview(h: &mut Harness<'static, PersnapApp>) {
    wait_until(h, "the overview's survey and search", |app| {
        app.rt.overview.survey.is_some() && app.rt.overview.found.is_some()
    });
}

fn type_into(h: &mut Harness<'static, PersnapApp>, field: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, field).click();
    h.step();
    h.get_by_role_and_label(Role::TextInput, field)
        .type_text(text);
    h.step();
}

fn choose_method(h: &mut Harness<'static, PersnapApp>, option: &str) {
    h.get_by_role_and_label(Role::ComboBox, "Method").click();
    h.run_steps(3);
    h.get_by_label(option).click();
    h.run_steps(3);
}

fn check_copy(dir: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), scratch.path().join(e.file_name())).unwrap();
    }
    let db = scratch.path().join("persistence.db");
    persnap::verify::integrity_check(&db).unwrap();
    loadgen::check_invariant(&rusqlite::Connection::open(&db).unwrap()).unwrap();
}

fn backed_up_dir(app: &PersnapApp) -> PathBuf {
    match &app.rt.outcome {
        Some(Outcome::Backup { dir, .. }) => dir.clone(),
        other => panic!("expected a verified backup, got {other:?}"),
    }
}

/// Wait for the sqlite-online plan. Where a snapshot applies to the temp
/// folder (Windows: VSS), the plan for it may show first.
fn wait_for_online_plan(h: &mut Harness<'static, PersnapApp>) {
    wait_until(h, "the sqlite-online plan", |app| {
        app.rt.probe.as_ref().is_some_and(|p| {
            p.as_ref().is_ok_and(|r| {
                r.steps
                    .iter()
                    .any(|s| s.starts_with("Copy the live database"))
            })
        })
    });
}

#[test]
fn sqlite_online_backup_of_a_live_database_from_the_window() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = src.path().join("persistence.db");
    // Under wine, a rollback-journal writer racing a reader now and then
    // fails deleting its journal (SQLITE_IOERR_DELETE_NOENT), a wine
    // artefact; WAL mode has no journal to delete.
    loadgen::init(
        &db,
        if cfg!(windows) {
            Mode::Wal
        } else {
            Mode::Rollback
        },
        6,
    )
    .unwrap();
    let writer = kit::ThreadWriter::start(&db);

    let mut h = harness(app_with_history(data.path()));
    type_into(&mut h, "Database folder", src.path().to_str().unwrap());
    type_into(&mut h, "Backup location", dest.path().to_str().unwrap());
    choose_method(&mut h, "SQLite online backup (no snapshot)");
    wait_for_online_plan(&mut h);
    assert!(
        h.query_by_label_contains("Copy the live database persistence.db")
            .is_some(),
        "the plan is shown"
    );

    h.get_by_label("Back up now").click();
    h.run_steps(3);
    // Source and backup share a filesystem here: the app asks first.
    assert!(
        h.query_by_label("Before you back up").is_some(),
        "the app asks before a same-disk backup: {:?} {:?}",
        h.state()
            .rt
            .probe
            .as_ref()
            .map(|p| p.as_ref().map(|r| r.warnings.clone())),
        h.state().rt.outcome
    );
    h.get_by_label("Back up anyway").click();
    h.step();
    let mut phases = Vec::new();
    wait_until(&mut h, "the backup", |app| {
        if let Some(a) = &app.rt.activity
            && phases.last() != Some(&a.phase)
        {
            phases.push(a.phase);
        }
        app.rt.outcome.is_some()
    });
    let transactions = writer.stop();
    assert!(transactions > 0, "the database was live");
    assert!(phases.len() >= 2, "progress was shown: {phases:?}");
    let dir = backed_up_dir(h.state());
    check_copy(&dir);
    assert!(h.query_by_label("Backup verified").is_some());
    assert!(h.query_by_label("Open folder").is_some());

    h.get_by_label("History").click();
    h.step();
    assert_eq!(h.state().rt.runs.len(), 1);
    assert_eq!(h.state().rt.runs[0].outcome, RunOutcome::Completed);
    assert!(
        h.query_by_label("completed").is_some(),
        "the new row is in the table"
    );
    assert_eq!(
        h.state().settings.recent_sources.len(),
        1,
        "folders are remembered"
    );
}

/// A sqlite-online backup started from the window and waiting in its copy
/// step for a writer in the middle of a long commit (held by `_lock`);
/// the folders live as long as the struct.
struct WaitingBackup {
    h: Harness<'static, PersnapApp>,
    _lock: rusqlite::Connection,
    dest: tempfile::TempDir,
    _src: tempfile::TempDir,
    _data: tempfile::TempDir,
}

fn waiting_backup() -> WaitingBackup {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = src.path().join("persistence.db");
    loadgen::init(&db, Mode::Rollback, 1).unwrap();
    // A writer in the middle of a long commit: the online backup must wait.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE; UPDATE accounts SET balance = balance WHERE id = 0;")
        .unwrap();

    let mut h = harness(app_with_history(data.path()));
    type_into(&mut h, "Database folder", src.path().to_str().unwrap());
    type_into(&mut h, "Backup location", dest.path().to_str().unwrap());
    choose_method(&mut h, "SQLite online backup (no snapshot)");
    wait_for_online_plan(&mut h);
    h.get_by_label("Back up now").click();
    h.run_steps(3);
    h.get_by_label("Back up anyway").click();
    wait_until(&mut h, "the copy step", |app| {
        app.rt
            .activity
            .as_ref()
            .is_some_and(|a| a.phase == persnap::progress::Phase::Copy)
    });
    WaitingBackup {
        h,
        _lock: lock,
        dest,
        _src: src,
        _data: data,
    }
}

#[test]
fn cancel_stops_cleanly_and_is_recorded() {
    // Bound by name, so that the lock and the folders live to the end.
    let WaitingBackup {
        mut h,
        dest,
        _lock,
        _src,
        _data,
    } = waiting_backup();
    h.get_by_label("Cancel").click();
    h.step();
    let app = h.state();
    assert!(
        app.rt.activity.as_ref().is_some_and(|a| a.cancelling) || app.rt.outcome.is_some(),
        "the click cancels"
    );
    wait_until(&mut h, "the cancel", |app| app.rt.outcome.is_some());
    assert!(h.query_by_label("Backup cancelled").is_some());
    assert_eq!(
        h.state().rt.runs.last().unwrap().outcome,
        RunOutcome::Cancelled
    );
    assert_eq!(
        std::fs::read_dir(dest.path()).unwrap().count(),
        0,
        "no .partial left"
    );
}

/// Ask the window to close, as its close button does.
fn request_close(h: &mut Harness<'static, PersnapApp>) {
    h.input_mut()
        .viewports
        .entry(eframe::egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(eframe::egui::ViewportEvent::Close);
    h.step();
}

fn sent(h: &Harness<'static, PersnapApp>, command: &eframe::egui::ViewportCommand) -> bool {
    h.output()
        .viewport_output
        .get(&eframe::egui::ViewportId::ROOT)
        .is_some_and(|v| v.commands.contains(command))
}

#[test]
fn closing_during_a_backup_asks_and_cancels_it_cleanly() {
    use eframe::egui::ViewportCommand;
    // Bound by name, so that the lock and the folders live to the end.
    let WaitingBackup {
        mut h,
        dest,
        _lock,
        _src,
        _data,
    } = waiting_backup();
    // Closing asks first; the window stays.
    request_close(&mut h);
    assert!(sent(&h, &ViewportCommand::CancelClose), "the window stays");
    h.step();
    assert!(h.query_by_label("A backup is running").is_some());
    h.get_by_label("Keep it running").click();
    h.step();
    h.step();
    assert!(h.query_by_label("A backup is running").is_none());
    assert!(h.state().rt.activity.is_some(), "the backup goes on");
    // Asked again and confirmed: the backup is cancelled, then it closes.
    request_close(&mut h);
    h.step();
    h.get_by_label("Cancel the backup and close").click();
    wait_until(&mut h, "the cancel", |app| app.rt.outcome.is_some());
    h.step();
    assert!(sent(&h, &ViewportCommand::Close), "then the window closes");
    assert_eq!(
        h.state().rt.runs.last().unwrap().outcome,
        RunOutcome::Cancelled
    );
    assert_eq!(
        std::fs::read_dir(dest.path()).unwrap().count(),
        0,
        "nothing half-made is left"
    );
}

#[test]
fn missing_store_is_explained() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("notes.txt"), b"x").unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut h = harness(app_with_history(data.path()));
    type_into(&mut h, "Database folder", src.path().to_str().unwrap());
    wait_until(&mut h, "the probe", |app| {
        app.rt.probe.is_some() && app.rt.probing.is_none()
    });
    assert!(
        h.query_by_label_contains("No database file named persistence.db")
            .is_some()
    );
    assert!(
        h.query_by_label_contains("The folder contains: notes.txt")
            .is_some(),
        "lists what is there"
    );
    assert!(h.get_by_label("Back up now").accesskit_node().is_disabled());
}

#[cfg(unix)]
#[test]
fn unwritable_destination_fails_with_the_reason() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    loadgen::init(&src.path().join("persistence.db"), Mode::Wal, 1).unwrap();
    let ro = tempfile::tempdir().unwrap();
    let target: PathBuf = if persnap::fsutil::is_root() {
        // Root ignores permissions: a read-only bind mount refuses even root.
        let ok = std::process::Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(dest.path())
            .arg(ro.path())
            .status()
            .unwrap();
        assert!(ok.success());
        ro.path().to_owned()
    } else {
        std::fs::set_permissions(
            dest.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o555),
        )
        .unwrap();
        dest.path().to_owned()
    };
    let mut h = harness(app_with_history(data.path()));
    type_into(&mut h, "Database folder", src.path().to_str().unwrap());
    type_into(&mut h, "Backup location", target.to_str().unwrap());
    choose_method(&mut h, "SQLite online backup (no snapshot)");
    wait_until(&mut h, "the plan", |app| {
        app.rt
            .probe
            .as_ref()
            .is_some_and(|p| p.as_ref().is_ok_and(|r| !r.steps.is_empty()))
    });
    h.get_by_label("Back up now").click();
    h.run_steps(3);
    if h.query_by_label("Back up anyway").is_some() {
        h.get_by_label("Back up anyway").click();
    }
    wait_until(&mut h, "the failure", |app| app.rt.outcome.is_some());
    if persnap::fsutil::is_root() {
        let _ = std::process::Command::new("umount").arg(ro.path()).status();
    }
    std::fs::set_permissions(
        dest.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert!(
        h.query_by_label("The backup failed while checking the folders")
            .is_some()
    );
    assert!(
        h.query_by_label_contains("Cannot write to the backup location")
            .is_some()
    );
    assert_eq!(
        h.state().rt.runs.last().unwrap().outcome.label(),
        "failed",
        "recorded as failed"
    );
}

/// A child process, killed and reaped when dropped.
#[cfg(unix)]
struct KilledOnDrop(std::process::Child);

/// A running correlator with its store in `store`: persnap-loadgen under
/// that name, with -PstoreLocation, once it has made the store. Killed
/// when the test ends, also when it fails (before the volume is unmounted,
/// which it would keep busy).
#[cfg(unix)]
fn running_correlator(store: &Path) -> KilledOnDrop {
    use std::os::unix::process::CommandExt as _;
    let loadgen = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("persnap-loadgen");
    let correlator = KilledOnDrop(
        std::process::Command::new(loadgen)
            .arg0("correlator")
            .arg(format!("-PstoreLocation={}", store.display()))
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.join("persistence.db").exists() {
        assert!(Instant::now() < deadline, "the correlator made no store");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    correlator
}

#[cfg(unix)]
impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(unix)]
#[test]
fn btrfs_snapshot_backup_from_the_window_and_a_missing_helper() {
    if !kit::require_root_for(
        "btrfs_snapshot_backup_from_the_window",
        "loop volume, snapshots",
    ) {
        return;
    }
    let (vol, store) = kit::LoopVolume::btrfs_named("apama");
    let mnt = vol.mount.clone();
    loadgen::init(&store.join("persistence.db"), Mode::Wal, 4).unwrap();
    let writer = kit::ThreadWriter::start(&store.join("persistence.db"));
    let dest = tempfile::Builder::new()
        .prefix("persnap-gui-dest-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let data = tempfile::tempdir().unwrap();

    // The app and its helper share a registry of protected databases.
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    let mut app = app_with_history(data.path());
    share_registry(&mut app, &registry);
    let mut h = harness(app);
    type_into(&mut h, "Database folder", store.to_str().unwrap());
    type_into(&mut h, "Backup location", dest.path().to_str().unwrap());
    wait_until(&mut h, "the plan", |app| {
        app.rt
            .probe
            .as_ref()
            .is_some_and(|p| p.as_ref().is_ok_and(|r| !r.steps.is_empty()))
    });
    assert!(
        h.query_by_label_contains("Snapshot method: btrfs")
            .is_some()
    );
    // Not protected yet: the plan says what that costs, and offers it.
    assert!(
        h.query_by_label_contains("because this database is not protected yet")
            .is_some()
    );
    h.get_by_label("Protect this database…").click();
    wait_until(&mut h, "the registration", |app| app.rt.protected.is_some());
    let protected = h.state().rt.protected.clone().unwrap();
    assert_eq!(protected, Ok("apama".to_owned()));
    assert_eq!(
        registry.get("apama").unwrap().unwrap().folder,
        persnap::volume::canonical(&store).unwrap()
    );
    wait_until(&mut h, "the plan of a protected database", |app| {
        app.rt.probe.as_ref().is_some_and(|p| {
            p.as_ref()
                .is_ok_and(|r| r.protected_as.as_deref() == Some("apama"))
        })
    });
    assert!(
        h.query_by_label_contains("a protected database (asked for at most once a session)")
            .is_some()
    );
    assert!(h.query_by_label("Protect this database…").is_none());
    assert!(
        h.query_by_label_contains("Take a snapshot of btrfs subvolume")
            .is_some()
    );
    h.get_by_label("Back up now").click();
    wait_until(&mut h, "the backup", |app| app.rt.outcome.is_some());
    let dir = backed_up_dir(h.state());
    check_copy(&dir);
    assert!(h.query_by_label("Backup verified").is_some());

    // The helper is not where it should be: a plain elevation error.
    h.state_mut().rt.helper = Some(HelperRoute {
        helper: "/nonexistent/persnap-helper".into(),
        elevate: true,
        env: Vec::new(),
        become_user: None,
    });
    h.get_by_label("Back up now").click();
    wait_until(&mut h, "the elevation failure", |app| {
        matches!(app.rt.outcome, Some(Outcome::Failed(_)))
    });
    writer.stop();
    assert!(h.query_by_label("The backup did not run").is_some());
    assert!(
        h.query_by_label_contains("not installed at /nonexistent/persnap-helper")
            .is_some()
    );
    assert!(std::fs::read_dir(&mnt).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".persnap")
    }));
    drop(vol);
}

// ---- image snapshots of each screen, with fixed content ----

fn fixture_history() -> History {
    fixture_history_in("")
}

/// The fixture history in a folder of `test`'s own (tests run side by
/// side); written with "/" so the path on screen is the same on every
/// platform.
fn fixture_history_in(test: &str) -> History {
    let dir = PathBuf::from(format!("/tmp/persnap-gui-fixture/{test}/history/").replace("//", "/"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let runs: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            let outcome = match i {
                4 => serde_json::json!({"status": "failed", "step": "snapshot", "kind": "snapshot",
                    "message": "Volume group vg0 has no free space for a snapshot."}),
                5 => serde_json::json!({"status": "interrupted"}),
                _ => serde_json::json!({"status": "completed"}),
            };
            serde_json::json!({
                "id": format!("run{i}"), "tag": format!("0000000{i}"),
                "started": format!("2026-11-2{}T0{}:00:00Z", i / 2, i + 1),
                "finished": format!("2026-11-2{}T0{}:01:00Z", i / 2, i + 1),
                "duration_secs": 20.0 + 7.0 * i as f64,
                "source": "/srv/apama/store", "store_name": "persistence.db",
                "destination": "/backups",
                "backup_path": if i < 4 { serde_json::json!(format!("/backups/persistence-run{i}")) } else { serde_json::Value::Null },
                "requested_method": "auto", "method": "lvm", "snapshot_id": null,
                "bytes": (200u64 + 30 * i) << 20, "files": 2, "outcome": outcome,
                "verification": if i < 4 { serde_json::json!({"integrity": "ok", "page_count": 51200, "page_size": 4096, "hashes_match": true, "seconds": 3.5}) } else { serde_json::Value::Null },
                "warnings": [], "host": "correlator-1", "tool_version": "0.1.0"
            })
        })
        .collect();
    std::fs::write(
        dir.join("history.json"),
        serde_json::to_vec(&serde_json::json!({"format": 1, "runs": runs})).unwrap(),
    )
    .unwrap();
    History::at(dir)
}

#[test]
fn screens_match_their_snapshots() {
    // The theme the system gives at 100 %, and light at 200 %.
    let mut results = screens(Settings::default(), 1.0, "");
    let light = Settings {
        theme: super::Theme::Light,
        ..Settings::default()
    };
    results.extend(screens(light, 2.0, "_light_2x"));
}

/// Each tab's screen, as `name{suffix}` image snapshots.
fn screens(settings: Settings, scale: f32, suffix: &str) -> egui_kittest::SnapshotResults {
    let mut app = PersnapApp::with_settings(settings, Ok(fixture_history()));
    // The app opens on the overview; it looks nowhere on this computer.
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    let mut h = Harness::builder()
        .with_size([960.0, 720.0])
        .with_pixels_per_point(scale)
        .build_eframe(move |_| app);
    wait_for_overview(&mut h);
    h.get_by_label("Back up").click();
    h.run();
    h.snapshot(format!("backup_screen_empty{suffix}"));
    h.get_by_label("History").click();
    h.run();
    h.get_by_label("interrupted").click();
    h.run();
    h.snapshot(format!("history_screen{suffix}"));
    h.get_by_label("Settings").click();
    h.run();
    h.snapshot(format!("settings_screen{suffix}"));
    h.state_mut().settings.repository = "rest:https://backups.example.net:8000/fleet/".into();
    h.state_mut().rt.repositories.password = "not shown".into();
    h.state_mut().rt.repositories.result = Some(Ok(fixture_fleet()));
    h.get_by_label("Repositories").click();
    h.run();
    h.snapshot(format!("repositories_screen{suffix}"));
    // The Back up screen with the same repository as its location.
    h.state_mut().settings.into_repository = true;
    h.get_by_label("Back up").click();
    h.run();
    h.snapshot(format!("backup_screen_repository{suffix}"));
    h.state_mut().settings.into_repository = false;
    let schedules = fixture_schedules();
    h.state_mut().rt.schedules.dir = schedules.path().to_owned();
    h.get_by_label("Schedules").click();
    h.run();
    h.snapshot(format!("schedules_screen{suffix}"));
    // Mail and a ping set, as an administrator would have them.
    let monitoring = tempfile::tempdir().unwrap();
    let at = monitoring.path().join("monitoring.json");
    std::fs::write(
        &at,
        r#"{"mail":{"server":"smtp.example.com","port":587,"security":"starttls","user":"persnap@example.com","from":"persnap@example.com","to":["ops@example.com","dba@example.com"]},"pings":{"weekly-offsite":"https://hc-ping.com"},"summary":"daily"}"#,
    )
    .unwrap();
    h.state_mut().rt.notifications.at = Some(at);
    h.get_by_label("Notifications").click();
    h.run();
    h.snapshot(format!("notifications_screen{suffix}"));
    assert!(h.unnamed_widgets().is_empty());
    h.take_snapshot_results()
}

/// A repository three correlators share, as the Repositories screen
/// lists it (times relative to now, so the screen reads the same any day).
fn fixture_fleet() -> super::jobs::Connected {
    let now = chrono::Utc::now();
    let mut backups = Vec::new();
    for (host, database, count, hours, mib, pinned) in [
        ("corr-eu-1", "orders", 24, 1, 812, 1),
        ("corr-eu-1", "positions", 24, 1, 96, 0),
        ("corr-eu-2", "orders", 12, 2, 790, 0),
        ("corr-us-1", "orders", 7, 30, 1533, 2),
        ("corr-us-1", "risk", 3, 74, 40, 0),
    ] {
        for i in 0..count {
            backups.push(persnap::repository::Listed {
                id: format!("{:08x}{:056x}", i, 0),
                time: now - chrono::Duration::hours(hours + i),
                host: host.into(),
                database: database.into(),
                store_name: "persistence.db".into(),
                bytes: mib << 20,
                files: 2,
                pinned: i < pinned,
                note: None,
            });
        }
    }
    super::jobs::Connected {
        location: "rest:https://backups.example.net:8000/fleet/".into(),
        backups,
        not_kept: None,
    }
}

/// A 1 MiB WAL store made in `src`, backed up with sqlite-online into
/// `dest`, recorded in `data`'s history.
fn online_backup(src: &Path, dest: &Path, data: &Path) -> persnap::backup::BackupReport {
    loadgen::init(&src.join("persistence.db"), Mode::Wal, 1).unwrap();
    let mut history = History::at(data.join("history"));
    let mut req = persnap::backup::BackupRequest::new(
        persnap::volume::canonical(src).unwrap(),
        persnap::fsutil::canonicalize(dest).unwrap(),
    );
    req.method = persnap::method::MethodChoice::Explicit(persnap::method::Method::SqliteOnline);
    persnap::backup::run_backup(
        &req,
        &mut history,
        &mut persnap::progress::Silent,
        &persnap::progress::CancelToken::new(),
    )
    .unwrap()
}

/// A real repository in a folder, with one backup of a real database in
/// it: the screen connects (the connection test), lists it under this
/// machine, and says a wrong password in words.
#[test]
fn the_repositories_screen_connects_and_lists_backups_by_machine_and_database() {
    let (src, dest, data) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let done = online_backup(src.path(), dest.path(), data.path());
    let cancel = persnap::progress::CancelToken::new();
    let place = data.path().join("repo");
    let location = persnap::repository::Address::parse(place.to_str().unwrap()).unwrap();
    let password = persnap::repository::Password::new("fleet password");
    persnap::repository::init(&location, &password).unwrap();
    // Made where it was asked for (on Windows too, where rustic once took
    // `local:C:\…` for a relative folder).
    assert!(place.join("config").is_file(), "no repository in {place:?}");
    persnap::repository::Repo::open(&location, &password)
        .unwrap()
        .store(
            &done.backup_dir,
            &done.manifest,
            "orders",
            false,
            &mut persnap::progress::Silent,
            &cancel,
        )
        .unwrap();

    let mut app = app_with_history(data.path());
    app.rt.screen = Screen::Repositories;
    // This test does not touch the keyring (tests/integration/keyring.rs does).
    app.settings.remember_password = false;
    let mut h = harness(app);
    h.run_steps(2);
    type_into(&mut h, "Repository", place.to_str().unwrap());
    h.get_by_role_and_label(Role::PasswordInput, "Password")
        .click();
    h.step();
    h.get_by_role_and_label(Role::PasswordInput, "Password")
        .type_text("not the password");
    h.step();
    h.get_by_label("Connect").click();
    wait_until(&mut h, "the wrong password", |app| {
        app.rt.repositories.result.is_some()
    });
    match &h.state().rt.repositories.result {
        Some(Err(e)) => assert!(e.to_string().contains("is wrong"), "{e}"),
        _ => panic!("a wrong password connected"),
    }
    h.get_by_label_contains("The password for the repository");

    h.state_mut().rt.repositories.password = "fleet password".into();
    h.run_steps(2);
    h.get_by_label("Connect").click();
    wait_until(&mut h, "the listing", |app| {
        matches!(app.rt.repositories.result, Some(Ok(_)))
    });
    h.get_by_label_contains("1 backup of 1 database from 1 machine");
    h.get_by_label(&persnap::manifest::host_name());
    h.get_by_label("orders");
    h.get_by_label("just now");
    assert!(h.unnamed_widgets().is_empty());
    // The location is remembered; the password is not saved with it.
    assert_eq!(h.state().settings.repository, place.to_str().unwrap());
    assert!(
        !serde_json::to_string(&h.state().settings)
            .unwrap()
            .contains("fleet password")
    );
}

/// An SFTP server the app has never seen (a real sshd on loopback, with
/// a host key of its own): connecting is refused before anything is sent,
/// the server's key is shown as ssh shows it, and "Trust this key" keeps
/// it with the repository's address, then connects again past the check
/// (where, here, the server turns the login away: no client key is set).
#[cfg(target_os = "linux")]
#[test]
fn the_repositories_screen_shows_an_unknown_sftp_servers_key_and_trusts_it_once() {
    if !kit::require_root_for(
        "the_repositories_screen_shows_an_unknown_sftp_servers_key_and_trusts_it_once",
        "sshd runs as a real daemon",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("host_key");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile /dev/null\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PidFile {}\nSubsystem sftp internal-sftp\n",
            host_key.display(),
            dir.path().join("sshd.pid").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut sshd = std::process::Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sshd (openssh-server) starts");
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not start");
        assert!(sshd.try_wait().unwrap().is_none(), "sshd stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _sshd = Stop(sshd);
    let listed = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(host_key.with_extension("pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let location = format!("sftp:root@127.0.0.1:{port}:/srv/never-made");

    let data = tempfile::tempdir().unwrap();
    let mut app = app_with_history(data.path());
    app.rt.screen = Screen::Repositories;
    app.settings.remember_password = false;
    let mut h = harness(app);
    h.run_steps(2);
    type_into(&mut h, "Repository", &location);
    h.state_mut().rt.repositories.password = "fleet password".into();
    h.run_steps(2);
    h.get_by_label("Connect").click();
    wait_until(&mut h, "the refusal", |app| {
        app.rt.repositories.result.is_some()
    });
    match &h.state().rt.repositories.result {
        Some(Err(e)) => assert!(e.to_string().contains("not trusted"), "{e}"),
        _ => panic!("an unknown server was trusted"),
    }
    let shown = format!("The server's key is {fingerprint} (ssh-ed25519)");
    h.get_by_label_contains(&shown);
    if let Ok(path) = std::env::var("PERSNAP_LOOK") {
        h.render().unwrap().save(path).unwrap();
    }
    h.get_by_label("Trust this key and connect").click();
    h.run_steps(2);
    let pinned = format!("{location}#host-key={fingerprint}");
    assert_eq!(h.state().settings.repository, pinned);
    wait_until(&mut h, "the second attempt", |app| {
        app.rt.repositories.result.is_some() && !app.rt.repositories.is_connecting()
    });
    // Past the key check: the server itself answered (and turned the
    // login away).
    match &h.state().rt.repositories.result {
        Some(Err(e)) => assert!(!e.to_string().contains("not trusted"), "{e}"),
        other => panic!("connected without a client key: {other:?}"),
    }
    assert!(h.state().rt.repositories.untrusted.is_none());
    // Kept with the address, as saved.
    assert!(
        serde_json::to_string(&h.state().settings.to_save())
            .unwrap()
            .contains(&format!("host-key={fingerprint}"))
    );
}

/// A live database backed up into a repository from the Back up screen:
/// the location is a repository, the connection test says a wrong
/// password in words, the plan says what happens in the repository, and
/// the backup is stored, read back and checked there; what the repository
/// holds restores consistent, and nothing stays staged.
#[test]
fn a_live_database_is_backed_up_into_a_repository_from_the_back_up_screen() {
    let (src, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = src.path().join("persistence.db");
    loadgen::init(&db, Mode::Wal, 4).unwrap();
    let place = data.path().join("repo");
    let location = persnap::repository::Address::parse(place.to_str().unwrap()).unwrap();
    let password = persnap::repository::Password::new("repository password");
    persnap::repository::init(&location, &password).unwrap();
    let staging = data.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let writer = kit::ThreadWriter::start(&db);

    let mut app = app_with_history(data.path());
    // This test does not touch the keyring (tests/integration/keyring.rs does).
    app.settings.remember_password = false;
    app.rt.staging = Some(staging.clone());
    let mut h = harness(app);
    type_into(&mut h, "Database folder", src.path().to_str().unwrap());
    h.get_by_label("a repository (deduplicated, encrypted; local or remote)")
        .click();
    h.run_steps(2);
    type_into(&mut h, "Repository", place.to_str().unwrap());
    h.get_by_role_and_label(Role::PasswordInput, "Password")
        .click();
    h.step();
    h.get_by_role_and_label(Role::PasswordInput, "Password")
        .type_text("not the password");
    h.step();
    h.get_by_label("Test connection").click();
    wait_until(&mut h, "the wrong password", |app| {
        app.rt.repositories.result.is_some()
    });
    h.get_by_label_contains("The password for the repository");
    h.state_mut().rt.repositories.password = "repository password".into();
    h.run_steps(2);
    h.get_by_label("Test connection").click();
    wait_until(&mut h, "the connection", |app| {
        matches!(app.rt.repositories.result, Some(Ok(_)))
    });
    h.get_by_label_contains("it holds 0 persnap backups");

    choose_method(&mut h, "SQLite online backup (no snapshot)");
    wait_for_online_plan(&mut h);
    h.get_by_label_contains("store it in the repository");
    h.get_by_label_contains("read back from there what it wrote");
    assert!(h.unnamed_widgets().is_empty());

    h.get_by_label("Back up now").click();
    h.run_steps(3);
    // The staging folder may share the database's disk: asked first.
    if h.query_by_label("Back up anyway").is_some() {
        h.get_by_label("Back up anyway").click();
        h.step();
    }
    let mut phases = Vec::new();
    wait_until(&mut h, "the backup", |app| {
        if let Some(a) = &app.rt.activity
            && phases.last() != Some(&a.phase)
        {
            phases.push(a.phase);
        }
        app.rt.outcome.is_some()
    });
    assert!(writer.stop() > 0, "the database was live");
    assert!(
        phases.contains(&persnap::progress::Phase::Store),
        "the repository step was shown: {phases:?}"
    );
    let done = match &h.state().rt.outcome {
        Some(Outcome::Stored(done)) => done.clone(),
        other => panic!("expected a backup stored in the repository, got {other:?}"),
    };
    assert!(done.stored.check.hashes_match);
    assert_eq!(done.stored.check.integrity, "ok");
    // Staged for the repository alone: said as such, not as a folder's
    // read-back from memory.
    assert!(
        done.verification
            .contains("the copy staged for the repository was hashed again"),
        "{}",
        done.verification
    );
    h.get_by_label("Backup stored and verified");
    if let Ok(path) = std::env::var("PERSNAP_LOOK_STORED") {
        h.set_size(eframe::egui::Vec2::new(960.0, 1300.0));
        h.run_steps(3);
        h.render().unwrap().save(path).unwrap();
    }
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        0,
        "nothing stays staged"
    );

    // What the repository holds restores consistent.
    let repo = persnap::repository::Repo::open(&location, &password).unwrap();
    let listed = repo.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, done.stored.snapshot);
    let scratch = tempfile::tempdir().unwrap();
    let set = repo
        .fetch(
            &listed[0].id,
            scratch.path(),
            &mut persnap::progress::Silent,
            &persnap::progress::CancelToken::new(),
        )
        .unwrap();
    check_copy(&set);

    // The history has it as stored, not as a folder.
    assert_eq!(h.state().rt.runs.len(), 1);
    let run = &h.state().rt.runs[0];
    assert_eq!(run.outcome, RunOutcome::Completed);
    assert_eq!(
        run.repository.as_ref().map(|r| r.snapshot.as_str()),
        Some(done.stored.snapshot.as_str())
    );
    assert_eq!(run.backup_path, None);
}

/// One schedule, kept as this platform keeps them; a systemd calendar, so
/// its state does not depend on today's date.
fn fixture_schedules() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let s = persnap::schedule::Schedule {
        name: "weekly-offsite".into(),
        source: "/var/lib/apama/store".into(),
        dest: "/mnt/offsite".into(),
        store_name: "persistence.db".into(),
        method: persnap::method::MethodChoice::Auto,
        retention: persnap::retention::RetentionPolicy {
            keep_last: Some(4),
            keep_days: None,
        },
        pace: Default::default(),
        when: persnap::schedule::When::Calendar("Sun *-*-* 03:00:00".into()),
        history_dir: "/home/op/.local/share/persnap".into(),
        created: None,
        uid: None,
        run_as: None,
        password: Default::default(),
        repository: None,
        unlock: None,
        offsite: None,
        offsite_unlock: None,
        drill: false,
    };
    #[cfg(windows)]
    std::fs::write(
        dir.path().join("weekly-offsite.json"),
        serde_json::to_vec(&s).unwrap(),
    )
    .unwrap();
    #[cfg(not(windows))]
    persnap::schedule::systemd::write_units(&s, dir.path(), Path::new("/usr/bin/persnap")).unwrap();
    dir
}

/// The app and its helper (run directly) use `registry` for protected
/// databases.
fn share_registry(app: &mut PersnapApp, registry: &persnap::registry::Registry) {
    app.rt.registry = registry.clone();
    let mut helper = direct_helper();
    helper
        .env
        .push(("PERSNAP_REGISTRY_DIR".into(), registry.dir().to_owned()));
    app.rt.helper = Some(helper);
}

/// The app's history folder made a user's (nobody's): the helper, run
/// directly by root here, refuses a schedule into a repository made as
/// root (its runs would open the repository as root), and takes the
/// folder's owner as the schedule's maker.
#[cfg(target_os = "linux")]
fn history_of_a_user(data: &Path) {
    let dir = data.join("history");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
}

/// Schedules go into `units` (not the system's), for the app and for the
/// helper it starts.
#[cfg(target_os = "linux")]
fn share_unit_dir(app: &mut PersnapApp, units: &Path) {
    if let Some(helper) = &mut app.rt.helper {
        helper
            .env
            .push(("PERSNAP_UNIT_DIR".into(), units.to_owned()));
    }
    app.rt.schedules.dir = units.to_owned();
}

/// The helper built beside the test executable, run directly (no
/// elevation needed to restore into a folder this user owns).
fn direct_helper() -> crate::launch::HelperRoute {
    let exe = std::env::current_exe().unwrap();
    let helper = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(format!("persnap-helper{}", std::env::consts::EXE_SUFFIX));
    assert!(
        helper.is_file(),
        "build the helper first (cargo test builds it): {}",
        helper.display()
    );
    crate::launch::HelperRoute {
        helper,
        elevate: false,
        env: Vec::new(),
        become_user: None,
    }
}

#[test]
fn restore_from_history_keeps_the_old_files_and_records_the_restore() {
    let (src, dest, data) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    online_backup(src.path(), dest.path(), data.path());

    // A restore goes only into a protected database's folder, which
    // never belongs to root.
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    registry
        .add(&persnap::registry::Database::new(
            "restored",
            persnap::volume::canonical(src.path()).unwrap(),
            "persistence.db",
        ))
        .unwrap();
    #[cfg(unix)]
    if persnap::fsutil::is_root() {
        std::os::unix::fs::chown(src.path(), Some(65534), Some(65534)).unwrap();
    }
    let mut app = app_with_history(data.path());
    share_registry(&mut app, &registry);
    let mut h = harness(app);
    h.get_by_label("History").click();
    h.run_steps(3);
    h.get_by_label("completed").click();
    h.run_steps(3);
    h.get_by_label("Restore this backup…").click();
    h.run_steps(3);
    assert!(
        h.query_by_label_contains("Stop the correlator first")
            .is_some()
    );
    h.get_by_label("Restore now").click();
    wait_until(&mut h, "the restore", |app| {
        app.rt.restore.as_ref().is_some_and(|d| d.result.is_some())
    });
    let result = h
        .state()
        .rt
        .restore
        .as_ref()
        .unwrap()
        .result
        .clone()
        .unwrap();
    let report = result
        .unwrap_or_else(|f| panic!("restore failed: {f}"))
        .report;
    assert!(h.query_by_label_contains("Restored").is_some());
    let safety = report.safety_dir.expect("the old store was kept");
    assert!(safety.join("persistence.db").is_file());
    assert!(persnap::verify::check_database(&src.path().join("persistence.db")).is_ok());
    assert!(h.state().rt.runs.iter().any(
        |r| r.kind == persnap::history::RunKind::Restore && r.outcome == RunOutcome::Completed
    ));
    h.get_by_label("Close").click();
    h.run_steps(2);
    assert!(h.state().rt.restore.is_none());
}

#[test]
fn a_failed_scheduled_backup_is_highlighted_and_retention_shows_in_the_plan() {
    let data = tempfile::tempdir().unwrap();
    let history = History::at(data.path().join("history"));
    let run: persnap::history::Run = serde_json::from_value(serde_json::json!({
        "id": "1", "tag": "deadbeef", "scheduled": "nightly",
        "started": "2026-11-20T02:00:00Z", "finished": "2026-11-20T02:00:03Z", "duration_secs": 3.0,
        "source": "/var/lib/apama/store", "store_name": "persistence.db", "destination": "/backup",
        "backup_path": null, "requested_method": "auto", "method": "lvm", "snapshot_id": null,
        "bytes": 0, "files": 0, "verification": null, "host": "h", "tool_version": "0.1.0",
        "outcome": {"status": "failed", "step": "snapshot", "kind": "snapshot", "message": "Volume group vg0 has no free space."}
    }))
    .unwrap();
    history.upsert(&run).unwrap();
    let mut h = harness(app_with_history(data.path()));
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("The scheduled backup “nightly”")
            .is_some(),
        "highlighted on launch"
    );

    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    loadgen::init(&src.path().join("persistence.db"), Mode::Wal, 1).unwrap();
    h.state_mut().settings.keep_last = 3;
    type_into(&mut h, "Database folder", src.path().to_str().unwrap());
    type_into(&mut h, "Backup location", dest.path().to_str().unwrap());
    choose_method(&mut h, "SQLite online backup (no snapshot)");
    wait_until(&mut h, "the plan with retention", |app| {
        app.rt.probe.as_ref().is_some_and(|p| {
            p.as_ref().is_ok_and(|r| {
                r.steps
                    .iter()
                    .any(|s| s.contains("keep the newest 3 backups"))
            })
        })
    });
    assert!(
        h.query_by_label_contains("Then delete older backups of persistence.db")
            .is_some()
    );
}

/// Backup speed is gentle unless chosen otherwise, each choice says what
/// it means for the correlator, and the backup asked for runs at it.
#[test]
fn backup_speed_is_gentle_unless_chosen_and_says_what_it_means() {
    use persnap::pace::Pace;
    let data = tempfile::tempdir().unwrap();
    let mut h = harness(app_with_history(data.path()));
    h.run_steps(2);
    assert_eq!(h.state().settings.pace, Pace::Gentle);
    assert!(
        h.query_by_label_contains("leaves the disk to the correlator")
            .is_some()
    );
    h.get_by_label("As fast as possible").click();
    h.run_steps(2);
    assert_eq!(h.state().settings.pace, Pace::Fast);
    assert_eq!(
        super::backup_view::request(&h.state().settings).pace,
        Pace::Fast
    );
    assert!(h.query_by_label_contains("flat out").is_some());
    h.get_by_label("Gentle (recommended)").click();
    h.run_steps(2);
    assert_eq!(
        super::backup_view::request(&h.state().settings).pace,
        Pace::Gentle
    );
}

/// Schedules are installed through the real helper (run directly: this
/// needs root, as CI is), into a unit folder of the test's own.
#[cfg(target_os = "linux")]
#[test]
fn schedules_are_created_listed_and_removed_from_the_app() {
    if !kit::require_root_for(
        "schedules_are_created_listed_and_removed_from_the_app",
        "the helper installs schedules",
    ) {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let units = tempfile::tempdir().unwrap();
    loadgen::init(&src.path().join("persistence.db"), Mode::Wal, 1).unwrap();
    let mut app = app_with_history(data.path());
    app.settings.source = src.path().to_str().unwrap().into();
    app.settings.dest = dest.path().to_str().unwrap().into();
    app.settings.keep_last = 5;
    app.rt.helper = Some(direct_helper());
    share_unit_dir(&mut app, units.path());
    let mut h = harness(app);
    h.get_by_label("Schedules").click();
    h.run_steps(2);
    assert!(h.query_by_label_contains("No schedules yet").is_some());

    h.get_by_role_and_label(Role::ComboBox, "How often").click();
    h.run_steps(3);
    h.get_by_label("On weekdays (Monday to Friday)").click();
    h.run_steps(3);
    assert!(
        h.query_by_label_contains("Mon, Tue, Wed, Thu, Fri at 02:00, as administrator, gently (in small steps, leaving the disk to the correlator in between), then verify it and keep the newest 5 backups")
            .is_some(),
        "the plan in words"
    );
    h.get_by_label("Create schedule").click();
    wait_until(&mut h, "the schedule installed", |app| {
        app.rt.schedules.job.is_none() && app.rt.schedules.result.is_some()
    });
    let said = format!("{:?}", h.state().rt.schedules.result);
    assert!(said.contains("Scheduled “nightly”"), "{said}");
    let timer = std::fs::read_to_string(units.path().join("persnap-backup-nightly.timer")).unwrap();
    assert!(
        timer.contains("OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 02:00:00"),
        "{timer}"
    );
    let service =
        std::fs::read_to_string(units.path().join("persnap-backup-nightly.service")).unwrap();
    let history_dir = persnap::fsutil::canonicalize(&data.path().join("history")).unwrap();
    assert!(
        service.contains(&format!("PERSNAP_DATA_DIR={}", history_dir.display())),
        "runs record into the app's history: {service}"
    );
    assert!(
        h.query_by_label("Mon, Tue, Wed, Thu, Fri at 02:00")
            .is_some(),
        "listed"
    );
    assert!(
        h.query_by_label("not run yet").is_some(),
        "listed with its state"
    );

    h.get_by_label("Remove “nightly”").click();
    wait_until(&mut h, "the schedule removed", |app| {
        app.rt.schedules.job.is_none()
            && format!("{:?}", app.rt.schedules.result).contains("Removed")
    });
    assert_eq!(std::fs::read_dir(units.path()).unwrap().count(), 0);
    assert!(h.query_by_label_contains("No schedules yet").is_some());
}

/// The Back up screen set to a repository, scheduled from the Schedules
/// screen: a wrong password is said before anything is installed; the
/// right one goes into a file only root can read, never into the unit;
/// removing the schedule removes that file.
#[cfg(target_os = "linux")]
#[test]
fn a_schedule_into_a_repository_is_made_from_the_app() {
    use std::os::unix::fs::PermissionsExt;
    if !kit::require_root_for(
        "a_schedule_into_a_repository_is_made_from_the_app",
        "the helper installs schedules",
    ) {
        return;
    }
    let (src, data, units) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    loadgen::init(&src.path().join("persistence.db"), Mode::Wal, 1).unwrap();
    let place = data.path().join("repo");
    let location = persnap::repository::Address::parse(place.to_str().unwrap()).unwrap();
    persnap::repository::init(
        &location,
        &persnap::repository::Password::new("nightly secret"),
    )
    .unwrap();
    let staging = data.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    history_of_a_user(data.path());
    let mut app = app_with_history(data.path());
    app.settings.source = src.path().to_str().unwrap().into();
    app.settings.into_repository = true;
    app.settings.repository = place.to_str().unwrap().into();
    app.settings.remember_password = false;
    app.settings.keep_last = 7;
    app.rt.staging = Some(staging.clone());
    app.rt.repositories.password = "not the password".into();
    app.rt.helper = Some(direct_helper());
    share_unit_dir(&mut app, units.path());
    let mut h = harness(app);
    h.get_by_label("Schedules").click();
    h.run_steps(2);
    h.get_by_label_contains(&format!(
        "store it in the repository {} as you, read it back from there and check it, and keep the newest 7",
        place.display()
    ));
    h.get_by_label_contains("does not hold it");
    h.get_by_label("Create schedule").click();
    wait_until(&mut h, "the wrong password", |app| {
        app.rt.schedules.job.is_none() && app.rt.schedules.result.is_some()
    });
    let said = format!("{:?}", h.state().rt.schedules.result);
    assert!(said.contains("is wrong"), "{said}");
    assert_eq!(
        std::fs::read_dir(units.path()).unwrap().count(),
        0,
        "nothing installed"
    );

    h.state_mut().rt.repositories.password = "nightly secret".into();
    h.state_mut().rt.schedules.result = None;
    h.run_steps(2);
    h.get_by_label("Create schedule").click();
    wait_until(&mut h, "the schedule installed", |app| {
        app.rt.schedules.job.is_none() && app.rt.schedules.result.is_some()
    });
    let said = format!("{:?}", h.state().rt.schedules.result);
    assert!(said.contains("Scheduled “nightly”"), "{said}");
    let service =
        std::fs::read_to_string(units.path().join("persnap-backup-nightly.service")).unwrap();
    assert!(service.contains("--repo-unlock"), "{service}");
    assert!(!service.contains("nightly secret"), "{service}");
    let unlock = units.path().join("persnap-repositories/nightly.json");
    let mode = std::fs::metadata(&unlock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only root reads it");
    let kept: persnap::repository::Unlock =
        serde_json::from_slice(&std::fs::read(&unlock).unwrap()).unwrap();
    assert_eq!(kept.password, "nightly secret");
    assert_eq!(kept.location, place.to_str().unwrap());

    h.get_by_label("Remove “nightly”").click();
    wait_until(&mut h, "the schedule removed", |app| {
        app.rt.schedules.job.is_none()
            && format!("{:?}", app.rt.schedules.result).contains("Removed")
    });
    assert!(!unlock.exists(), "its password file goes with it");
}

#[cfg(target_os = "linux")]
#[test]
fn a_missed_scheduled_run_is_shown_on_the_backup_screen() {
    use chrono::Timelike;
    let data = tempfile::tempdir().unwrap();
    let units = tempfile::tempdir().unwrap();
    let due = chrono::Local::now() - chrono::Duration::hours(2);
    let s = persnap::schedule::Schedule {
        name: "nightly".into(),
        source: "/srv/apama".into(),
        dest: "/backup".into(),
        store_name: "persistence.db".into(),
        method: persnap::method::MethodChoice::Auto,
        retention: Default::default(),
        pace: Default::default(),
        when: persnap::schedule::When::Daily(due.time().with_nanosecond(0).unwrap()),
        history_dir: data.path().join("history"),
        created: Some(chrono::Utc::now() - chrono::Duration::days(3)),
        uid: None,
        run_as: None,
        password: Default::default(),
        repository: None,
        unlock: None,
        offsite: None,
        offsite_unlock: None,
        drill: false,
    };
    persnap::schedule::systemd::write_units(&s, units.path(), Path::new("/usr/bin/persnap"))
        .unwrap();
    let mut app = app_with_history(data.path());
    app.rt.schedules.dir = units.path().to_owned();
    app.rt.schedules.reload();
    let mut h = harness(app);
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("The scheduled backup “nightly” did not run. It was due")
            .is_some(),
        "missed runs are highlighted"
    );
    assert!(
        h.query_by_label_contains("may have been off or asleep")
            .is_some()
    );
    h.get_by_label("Schedules").click();
    h.run_steps(2);
    assert!(h.query_by_label_contains("missed the run due").is_some());
}

// ---- the overview ----

/// Two protected databases in a registry of fixed content: one whose last
/// run was interrupted (in the fixture history), one never backed up.
fn fixture_registry() -> persnap::registry::Registry {
    // A folder of its own for each window (tests run side by side).
    let dir = tempfile::Builder::new()
        .prefix("persnap-gui-registry-")
        .tempdir()
        .unwrap()
        .keep();
    for (name, folder, location) in [
        ("orders", "/srv/apama/store", "/backups"),
        ("audit", "/srv/apama/audit", "/mnt/offsite"),
    ] {
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::json!({"name": name, "folder": folder,
                "store_name": "persistence.db", "location": location})
            .to_string(),
        )
        .unwrap();
    }
    persnap::registry::Registry::at(dir)
}

fn fixture_overview(test: &str, theme: super::Theme, scale: f32) -> Harness<'static, PersnapApp> {
    let settings = Settings {
        theme,
        ..Settings::default()
    };
    let mut app = PersnapApp::with_settings(settings, Ok(fixture_history_in(test)));
    app.rt.registry = fixture_registry();
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    use chrono::TimeZone as _;
    app.rt.overview.now = Some(
        chrono::Local
            .with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
            .unwrap(),
    );
    let mut h = Harness::builder()
        .with_size([960.0, 720.0])
        .with_pixels_per_point(scale)
        .build_eframe(move |_| app);
    wait_for_overview(&mut h);
    h.run();
    h
}

/// The "Protect a database" page for a running correlator's database,
/// filled in with its defaults (fixed paths and facts, for the images).
fn fixture_protect(
    theme: super::Theme,
    scale: f32,
    registry: &Path,
) -> Harness<'static, PersnapApp> {
    let settings = Settings {
        theme,
        ..Settings::default()
    };
    let mut app = PersnapApp::with_settings(settings, Ok(fixture_history_in("protect")));
    app.rt.registry = persnap::registry::Registry::at(registry.join("databases"));
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    app.rt.overview.suggested = Some(PathBuf::from("/home/op/persnap-backups"));
    // Any real report will do: the page shows only the method it names.
    let store = tempfile::tempdir().unwrap();
    loadgen::init(&store.path().join("persistence.db"), Mode::Wal, 1).unwrap();
    let mut report = persnap::probe::probe(
        &persnap::backup::BackupRequest::new(store.path(), ""),
        false,
        false,
    )
    .unwrap();
    report.method = Some(persnap::method::Method::Btrfs);
    report.blocked = None;
    let mut h = Harness::builder()
        .with_size([960.0, 760.0])
        .with_pixels_per_point(scale)
        .build_eframe(move |_| app);
    wait_for_overview(&mut h);
    let found = persnap::discover::Found {
        folder: PathBuf::from("/srv/apama/orders-eu"),
        store_name: "persistence.db".into(),
        origin: persnap::discover::Origin::Process {
            pid: 4711,
            command: "correlator -PstoreLocation=/srv/apama/orders-eu".into(),
        },
        bytes: Some(48 << 20),
        journal_mode: Some(persnap::store::JournalMode::Wal),
        note: None,
    };
    let ctx = h.ctx.clone();
    super::protect_view::open(h.state_mut(), &ctx, found);
    let d = h.state_mut().rt.protect.as_mut().unwrap();
    d.probe = Some(Ok(Box::new(report)));
    d.location = Some(PathBuf::from("/mnt/offsite"));
    d.forget_probing();
    h.run();
    h
}

/// `h` (light, 100 %) as the image `name`, and the same screen made by
/// `make` dark at 100 %, light at 200 % and dark at 200 %.
fn in_both_themes_at_both_scales(
    mut h: Harness<'static, PersnapApp>,
    name: &str,
    make: impl Fn(super::Theme, f32) -> Harness<'static, PersnapApp>,
) {
    h.snapshot(name);
    let mut results = h.take_snapshot_results();
    for (theme, scale, suffix) in [
        (super::Theme::Dark, 1.0, "_dark"),
        (super::Theme::Light, 2.0, "_2x"),
        (super::Theme::Dark, 2.0, "_dark_2x"),
    ] {
        let mut h = make(theme, scale);
        h.snapshot(format!("{name}{suffix}"));
        results.extend(h.take_snapshot_results());
    }
}

#[test]
fn protecting_a_database_is_one_page_in_words() {
    let registry = tempfile::tempdir().unwrap();
    let h = fixture_protect(super::Theme::Light, 1.0, registry.path());
    assert!(h.query_by_label("Protect a database").is_some());
    assert!(
        h.query_by_label("running correlator (process 4711) · 48.0 MiB · WAL")
            .is_some()
    );
    assert!(
        h.query_by_label("Backed up from a snapshot of its disk (btrfs).")
            .is_some()
    );
    assert!(
        h.query_by_label_contains(
            "persnap backs it up every day at 02:00, and keeps each backup for 14 days"
        )
        .is_some()
    );
    assert!(
        h.query_by_label_contains("installs a schedule that backs it up every day at 02:00")
            .is_some(),
        "what runs as administrator"
    );
    assert!(h.query_by_label("Protect orders-eu").is_some());
    assert!(h.unnamed_widgets().is_empty());
    in_both_themes_at_both_scales(h, "protect_screen", |theme, scale| {
        fixture_protect(theme, scale, registry.path())
    });
}

#[test]
fn a_databases_page_shows_its_backups_in_words() {
    let mut h = fixture_overview("database", super::Theme::Light, 1.0);
    h.get_by_label("Backups of orders").click();
    h.run();
    assert!(h.query_by_label("orders").is_some());
    assert!(
        h.query_by_label(
            "failed: it stopped half-way (the computer shut down or persnap was stopped)"
        )
        .is_some(),
        "the reason of a failure, in words"
    );
    assert!(
        h.query_by_label("Select a backup to verify it again, open it or restore it.")
            .is_some()
    );
    let first = h.get_all_by_label("verified backup").next().unwrap();
    first.click();
    h.run();
    assert!(h.query_by_label("Verify again").is_some());
    assert!(h.unnamed_widgets().is_empty());
    h.snapshot("database_screen");
    let mut results = h.take_snapshot_results();
    let mut h = fixture_overview("database", super::Theme::Dark, 2.0);
    h.get_by_label("Backups of orders").click();
    h.run();
    h.snapshot("database_screen_dark_2x");
    results.extend(h.take_snapshot_results());
}

#[test]
fn the_overview_says_which_database_needs_what() {
    let h = fixture_overview("overview", super::Theme::Light, 1.0);
    assert!(
        h.query_by_label("0 of 2 databases need your attention.")
            .is_none()
    );
    assert!(
        h.query_by_label("2 of 2 databases need your attention.")
            .is_some()
    );
    assert!(
        h.query_by_label_contains("failed: it stopped half-way")
            .is_some(),
        "the interrupted run is the reason"
    );
    assert!(h.query_by_label("Never backed up.").is_some());
    assert!(h.query_by_label("Backups go to /mnt/offsite.").is_some());
    assert!(
        h.query_by_label_contains("No other running correlator")
            .is_some()
    );
    // Each card's button says which database it backs up.
    assert!(h.query_by_label("Back up orders now").is_some());
    assert!(h.query_by_label("Back up audit now").is_some());
    assert!(h.unnamed_widgets().is_empty());
    in_both_themes_at_both_scales(h, "overview_screen", |theme, scale| {
        fixture_overview("overview", theme, scale)
    });
}

/// From the empty overview through "Protect a database" to a first
/// backup, with the mouse only: the page offers SQLite's online backup for
/// a disk without snapshots, a folder for the backups, and a schedule in
/// words; one helper request protects the database.
#[test]
fn an_empty_overview_leads_to_protecting_a_database() {
    let data = tempfile::tempdir().unwrap();
    let place = tempfile::tempdir().unwrap();
    let store = place.path().join("apama/store");
    std::fs::create_dir_all(&store).unwrap();
    loadgen::init(&store.join("persistence.db"), Mode::Rollback, 1).unwrap();
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    let mut app = PersnapApp::with_settings(
        Settings::default(),
        Ok(History::at(data.path().join("history"))),
    );
    share_registry(&mut app, &registry);
    app.rt.overview.places = Some(vec![place.path().to_owned()]);
    app.rt.overview.skip_processes = true;
    let backups = data.path().join("backups");
    app.rt.overview.suggested = Some(backups.clone());
    let mut h = harness(app);
    wait_for_overview(&mut h);
    assert!(h.query_by_label("No database is protected yet").is_some());
    let folder = persnap::fsutil::canonicalize(&store).unwrap();
    h.get_by_label(&format!("Protect {}", folder.display()))
        .click();
    wait_until(&mut h, "a look at its disk", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.probe.is_some())
    });
    assert!(h.query_by_label("Protect a database").is_some());
    // Not ready yet, and it says why.
    assert!(
        h.query_by_label("Choose where its backups go first.")
            .is_some()
    );
    if h.query_by_label_contains("cannot take snapshots").is_some() {
        h.get_by_label_contains("SQLite's online backup instead")
            .click();
        h.run();
    }
    h.get_by_label(&format!("Use {}", backups.display()))
        .click();
    h.run();
    assert!(backups.is_dir());
    assert!(
        h.query_by_label_contains(
            "persnap backs it up every day at 02:00, and keeps each backup for 14 days"
        )
        .is_some(),
        "the defaults, in words"
    );
    h.get_by_role_and_label(Role::ComboBox, "Back up").click();
    h.run_steps(3);
    h.get_by_label("Only when I click Back up now").click();
    h.run_steps(3);
    assert!(h.query_by_label_contains("installs a schedule").is_none());
    assert!(h.unnamed_widgets().is_empty());
    h.get_by_label("Protect store").click();
    wait_until(&mut h, "the protection", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.result.is_some())
    });
    // Where the disk should take snapshots but the test one fails (wine
    // has no Volume Shadow Copy), nothing is changed and SQLite's online
    // backup is offered.
    if matches!(h.state().rt.protect.as_ref().unwrap().result, Some(Err(_))) {
        assert!(
            h.query_by_label_contains("It was not protected: The test snapshot did not work")
                .is_some()
        );
        assert!(registry.get("store").unwrap().is_none(), "nothing changed");
        h.get_by_label_contains("SQLite's online backup instead")
            .click();
        h.run();
        h.get_by_label("Protect store").click();
        wait_until(&mut h, "the second protection", |app| {
            app.rt
                .protect
                .as_ref()
                .is_some_and(|d| matches!(d.result, Some(Ok(_))))
        });
    }
    assert!(
        h.query_by_label("store is set up for protection.")
            .is_some(),
        "{:?}",
        h.state().rt.protect.as_ref().unwrap().result
    );
    // A password the keyring could not keep is said on this page, not
    // lost: the same protection, as its job would report that warning.
    let reply = h
        .state()
        .rt
        .protect
        .as_ref()
        .unwrap()
        .result
        .clone()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    h.state_mut()
        .rt
        .protect
        .as_mut()
        .unwrap()
        .protecting(super::jobs::Job {
            rx,
            cancel: persnap::progress::CancelToken::new(),
        });
    let not_kept = "The password could not be kept in the keyring.";
    tx.send(super::jobs::Msg::Log(
        persnap::progress::Level::Warning,
        not_kept.into(),
    ))
    .unwrap();
    tx.send(super::jobs::Msg::Done(reply)).unwrap();
    h.run_steps(3);
    h.get_by_label(not_kept);
    h.get_by_label("store is set up for protection.");
    let entry = registry.get("store").unwrap().unwrap();
    assert_eq!(entry.folder, folder);
    let backups = persnap::fsutil::canonicalize(&backups).unwrap();
    assert_eq!(entry.location.as_deref(), Some(backups.as_path()));
    assert_eq!(entry.retention.keep_days, Some(14));
    assert_eq!(entry.schedule, None);
    // The first backup, one click away; the card then says it is protected.
    h.get_by_label("Back up now").click();
    wait_until(&mut h, "the backup", |app| app.rt.outcome.is_some());
    check_copy(&backed_up_dir(h.state()));
    wait_until(&mut h, "its card", |app| {
        app.rt.screen == Screen::Overview
            && app.rt.overview.survey.as_ref().is_some_and(|s| {
                s.as_ref().is_ok_and(|s| {
                    s.assessments.len() == 1
                        && s.assessments[0].level == persnap::protection::Level::Protected
                })
            })
            && app.rt.overview.found.is_some()
    });
    assert!(h.query_by_label("Your database is protected.").is_some());
    assert!(
        h.query_by_label_contains(&format!("Protect {}", folder.display()))
            .is_none(),
        "a protected database is no longer offered"
    );

    // Its page: the backup in the table; verified again, then found
    // damaged once a file of it is changed.
    let dir = backed_up_dir(h.state());
    h.get_by_label("Backups of store").click();
    h.run();
    assert!(
        h.query_by_label("No schedule: backed up when you click Back up now.")
            .is_some()
    );
    h.get_by_label("verified backup").click();
    h.run();
    h.get_by_label("Verify again").click();
    wait_until(&mut h, "the verification", |app| {
        app.rt
            .database
            .as_ref()
            .is_some_and(|p| p.verified.is_some())
    });
    assert!(
        h.query_by_label_contains("Verified again: all").is_some(),
        "{:?}",
        h.state().rt.database.as_ref().unwrap().verified
    );
    let db = dir.join("persistence.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&db, bytes).unwrap();
    h.get_by_label("Verify again").click();
    wait_until(&mut h, "the second verification", |app| {
        app.rt
            .database
            .as_ref()
            .is_some_and(|p| p.verified.as_ref().is_some_and(|v| v.1.is_err()))
    });
    assert!(
        h.query_by_label_contains("This backup is damaged")
            .is_some()
    );

    // Pin it with a note: the table says so, and so does the location.
    type_into(&mut h, "Keep it, with a note", "known state");
    h.get_by_label("Pin").click();
    h.run();
    assert!(h.query_by_label("pinned: known state").is_some());
    assert!(
        h.query_by_label("Kept even when retention would delete it: known state.")
            .is_some()
    );
    assert_eq!(persnap::pin::read(&dir).unwrap().note, "known state");
    h.get_by_label("Unpin").click();
    h.run();
    assert!(persnap::pin::read(&dir).is_none());
    // "Back up before upgrading": a new backup, kept with its note.
    h.get_by_label("Back up before upgrading…").click();
    h.run();
    h.get_by_label("Back up and keep it").click();
    wait_until(&mut h, "the kept backup", |app| {
        app.rt.activity.is_none() && app.rt.pinned.is_some()
    });
    let kept = match &h.state().rt.pinned {
        Some(Ok(words)) => PathBuf::from(
            words
                .strip_prefix("This backup is kept: ")
                .unwrap_or_else(|| panic!("{words}")),
        ),
        other => panic!("expected a pinned backup, got {other:?}"),
    };
    assert_ne!(kept, dir);
    check_copy(&kept);
    assert_eq!(
        persnap::pin::read(&kept).unwrap().note,
        "before upgrading Apama"
    );
    assert!(h.query_by_label_contains("This backup is kept").is_some());
    wait_until(&mut h, "its standing, judged again", |app| {
        app.rt.overview.survey.as_ref().is_some_and(|s| {
            s.as_ref().is_ok_and(|s| {
                s.assessments[0]
                    .last_good
                    .as_ref()
                    .is_some_and(|g| g.backup_path.as_ref() == Some(&kept))
            })
        })
    });
    assert!(h.query_by_label("pinned: before upgrading Apama").is_some());
    assert!(
        h.query_by_label("Protected: last verified backup just now.")
            .is_some()
    );

    // A scheduled run fails (the command a schedule runs, its location
    // gone): the card turns red and says which run failed and why.
    let persnap_exe = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(format!("persnap{}", std::env::consts::EXE_SUFFIX));
    let gone = data.path().join("gone");
    let out = std::process::Command::new(persnap_exe)
        .args([
            "backup",
            "--method",
            "sqlite-online",
            "--scheduled",
            "store",
            "--source",
        ])
        .arg(&folder)
        .arg("--dest")
        .arg(&gone)
        .env("PERSNAP_DATA_DIR", data.path().join("history"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    h.state_mut().reload_history();
    h.state_mut().rt.overview.invalidate();
    h.get_by_label("Back to all databases").click();
    wait_until(&mut h, "the card turning red", |app| {
        app.rt.screen == Screen::Overview
            && app.rt.overview.survey.as_ref().is_some_and(|s| {
                s.as_ref()
                    .is_ok_and(|s| s.assessments[0].level == persnap::protection::Level::Failing)
            })
    });
    assert!(
        h.query_by_label_contains("The scheduled backup").is_some()
            && h.query_by_label_contains("failed: the backup location is not there")
                .is_some(),
        "{:?}",
        h.state().rt.overview.survey
    );
    h.get_by_label("Backups of store").click();
    h.run();

    // Stop protecting it: asked first, then gone from the registry; its
    // backups stay.
    h.get_by_label("Stop protecting…").click();
    h.run();
    h.get_by_label("Keep protecting").click();
    h.run();
    assert!(registry.get("store").unwrap().is_some());
    h.get_by_label("Stop protecting…").click();
    h.run();
    h.get_by_label("Stop protecting store").click();
    wait_until(&mut h, "the unprotection", |app| {
        app.rt
            .database
            .as_ref()
            .is_some_and(|p| p.stopped.is_some())
    });
    assert!(h.query_by_label("store is no longer protected.").is_some());
    assert!(registry.get("store").unwrap().is_none());
    assert!(dir.is_dir(), "its backups stay");
}

/// The whole way a new user goes, on a real btrfs volume: a correlator is
/// running; the overview finds it by its command line; the Protect page
/// takes a test snapshot, installs its daily schedule and registers it in
/// one step; it is backed up and shown protected; then its backup location
/// disappears and the card turns red with the reason.
#[cfg(target_os = "linux")]
#[test]
fn the_overview_protects_a_running_correlator_and_keeps_watch() {
    if !kit::require_root_for("the_overview_protects_a_running_correlator", "loop volume") {
        return;
    }
    let (vol, store) = kit::LoopVolume::btrfs_named("orders");
    let correlator = running_correlator(&store);

    let data = tempfile::tempdir().unwrap();
    let dest = tempfile::Builder::new()
        .prefix("persnap-gui-dest-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    let units = tempfile::tempdir().unwrap();
    let mut app = PersnapApp::with_settings(
        Settings::default(),
        Ok(History::at(data.path().join("history"))),
    );
    share_registry(&mut app, &registry);
    share_unit_dir(&mut app, units.path());
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.suggested = Some(dest.path().join("orders"));
    let mut h = harness(app);
    wait_for_overview(&mut h);
    let folder = persnap::volume::canonical(&store).unwrap();
    assert!(
        h.query_by_label_contains(&format!(
            "running correlator (process {})",
            correlator.0.id()
        ))
        .is_some(),
        "found by its command line"
    );
    h.get_by_label(&format!("Protect {}", folder.display()))
        .click();
    wait_until(&mut h, "a look at its disk", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.probe.is_some())
    });
    assert!(
        h.query_by_label("Backed up from a snapshot of its disk (btrfs).")
            .is_some()
    );
    h.get_by_label(&format!("Use {}", dest.path().join("orders").display()))
        .click();
    h.run();
    // The defaults: every day at 02:00, 14 days kept.
    h.get_by_label("Protect orders").click();
    wait_until(&mut h, "the protection", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.result.is_some())
    });
    assert!(
        h.query_by_label("orders is set up for protection.")
            .is_some(),
        "{:?}",
        h.state().rt.protect.as_ref().unwrap().result
    );
    assert!(
        h.query_by_label("A test snapshot worked: it was taken and removed again.")
            .is_some()
    );
    assert_eq!(vol.snapshot_leftovers(), Vec::<String>::new());
    let entry = registry.get("orders").unwrap().unwrap();
    assert_eq!(entry.folder, folder);
    assert_eq!(entry.schedule.as_deref(), Some("orders"));
    assert_eq!(entry.retention.keep_days, Some(14));
    let timer = std::fs::read_to_string(units.path().join("persnap-backup-orders.timer")).unwrap();
    assert!(timer.contains("OnCalendar=*-*-* 02:00:00"), "{timer}");
    h.get_by_label("Done").click();
    h.step();
    wait_until(&mut h, "its card", |app| {
        app.rt
            .overview
            .survey
            .as_ref()
            .is_some_and(|s| s.as_ref().is_ok_and(|s| s.assessments.len() == 1))
    });
    assert!(h.query_by_label("Never backed up.").is_some());
    assert!(
        h.query_by_label("Next backup: today at 02:00 (every day at 02:00).")
            .is_some()
            || h.query_by_label("Next backup: tomorrow at 02:00 (every day at 02:00).")
                .is_some(),
        "the next run, on the card"
    );
    h.get_by_label("Back up orders now").click();
    wait_until(&mut h, "the backup", |app| app.rt.outcome.is_some());
    let dir = backed_up_dir(h.state());
    check_copy(&dir);
    wait_until(&mut h, "the card turning green", |app| {
        app.rt.overview.survey.as_ref().is_some_and(|s| {
            s.as_ref()
                .is_ok_and(|s| s.assessments[0].level == persnap::protection::Level::Protected)
        })
    });
    assert!(h.query_by_label("Your database is protected.").is_some());
    assert!(
        h.query_by_label("Protected: last verified backup just now.")
            .is_some()
    );
    // Change how it is protected, from its page: backed up only by hand
    // now; its schedule goes.
    h.get_by_label("Backups of orders").click();
    h.run();
    h.get_by_label("Change…").click();
    wait_until(&mut h, "a look at its disk", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.probe.is_some())
    });
    assert!(h.query_by_label("Change how it is protected").is_some());
    h.get_by_role_and_label(Role::ComboBox, "Back up").click();
    h.run_steps(3);
    h.get_by_label("Only when I click Back up now").click();
    h.run_steps(3);
    assert!(h.query_by_label_contains("removes its schedule").is_some());
    h.get_by_label("Save how orders is protected").click();
    wait_until(&mut h, "the change", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.result.is_some())
    });
    assert!(
        h.query_by_label("The changes to how orders is protected are saved.")
            .is_some(),
        "{:?}",
        h.state().rt.protect.as_ref().unwrap().result
    );
    assert_eq!(registry.get("orders").unwrap().unwrap().schedule, None);
    assert!(!units.path().join("persnap-backup-orders.timer").exists());
    h.get_by_label("Done").click();
    h.step();
    wait_until(&mut h, "its card without a schedule", |app| {
        app.rt.screen == Screen::Overview
            && app.rt.overview.survey.as_ref().is_some_and(|s| {
                s.as_ref()
                    .is_ok_and(|s| s.assessments[0].schedule.is_none())
            })
    });
    assert!(h.query_by_label("Next backup: none scheduled.").is_some());

    // The backup disk goes away: the next backup fails and the card says why.
    std::fs::remove_dir_all(dest.path().join("orders")).unwrap();
    h.get_by_label("Back up orders now").click();
    wait_until(&mut h, "the failed backup", |app| {
        matches!(app.rt.outcome, Some(Outcome::Failed(_)))
    });
    wait_until(&mut h, "the card turning red", |app| {
        app.rt.overview.survey.as_ref().is_some_and(|s| {
            s.as_ref()
                .is_ok_and(|s| s.assessments[0].level == persnap::protection::Level::Failing)
        })
    });
    assert!(
        h.query_by_label_contains("failed: the backup location is not there")
            .is_some()
    );
    drop(correlator);
    drop(vol);
}

/// A running correlator protected into a repository from its Protect page
/// (one administrator prompt: test snapshot, schedule, registration; the
/// repository's password only in root's file), then backed up from its
/// card: stored, read back and checked there, restorable consistent, the
/// card green, nothing left staged.
#[cfg(target_os = "linux")]
#[test]
fn a_running_correlator_is_protected_into_a_repository_and_backed_up_there() {
    use std::os::unix::fs::PermissionsExt;
    if !kit::require_root_for(
        "a_running_correlator_is_protected_into_a_repository",
        "loop volume",
    ) {
        return;
    }
    let (vol, store) = kit::LoopVolume::btrfs_named("ledger");
    let correlator = running_correlator(&store);

    let data = tempfile::Builder::new()
        .prefix("persnap-gui-repo-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let place = data.path().join("repo");
    let location = persnap::repository::Address::parse(place.to_str().unwrap()).unwrap();
    let password = persnap::repository::Password::new("ledger secret");
    persnap::repository::init(&location, &password).unwrap();
    // And a second one for the offsite copies, with its own password.
    let offsite_place = data.path().join("offsite");
    let offsite = persnap::repository::Address::parse(offsite_place.to_str().unwrap()).unwrap();
    let offsite_password = persnap::repository::Password::new("offsite secret");
    persnap::repository::init(&offsite, &offsite_password).unwrap();
    let staging = data.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    let units = tempfile::tempdir().unwrap();
    history_of_a_user(data.path());
    let mut app = PersnapApp::with_settings(
        Settings::default(),
        Ok(History::at(data.path().join("history"))),
    );
    app.settings.remember_password = false;
    app.rt.staging = Some(staging.clone());
    share_registry(&mut app, &registry);
    share_unit_dir(&mut app, units.path());
    app.rt.overview.places = Some(Vec::new());
    let mut h = harness(app);
    wait_for_overview(&mut h);
    let folder = persnap::volume::canonical(&store).unwrap();
    h.get_by_label(&format!("Protect {}", folder.display()))
        .click();
    wait_until(&mut h, "a look at its disk", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.probe.is_some())
    });
    h.get_by_label("a repository (deduplicated, encrypted; local or remote)")
        .click();
    h.run_steps(2);
    type_into(&mut h, "Repository", place.to_str().unwrap());
    h.get_by_role_and_label(Role::PasswordInput, "Password")
        .click();
    h.step();
    h.get_by_role_and_label(Role::PasswordInput, "Password")
        .type_text("ledger secret");
    h.step();
    h.get_by_label_contains("Also keep a copy offsite").click();
    h.run_steps(2);
    type_into(
        &mut h,
        "Offsite repository",
        offsite_place.to_str().unwrap(),
    );
    h.get_by_role_and_label(Role::PasswordInput, "Offsite password")
        .click();
    h.step();
    h.get_by_role_and_label(Role::PasswordInput, "Offsite password")
        .type_text("offsite secret");
    h.step();
    h.get_by_label_contains(
        "writes the repository's address and password into a file only the administrator can read",
    );
    assert!(h.unnamed_widgets().is_empty());
    h.get_by_label("Protect ledger").click();
    wait_until(&mut h, "the protection", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.result.is_some())
    });
    assert!(
        h.query_by_label("ledger is set up for protection.")
            .is_some(),
        "{:?}",
        h.state().rt.protect.as_ref().unwrap().result
    );
    h.get_by_label_contains(&format!(
        "Backups go into the repository {}",
        place.display()
    ));
    let entry = registry.get("ledger").unwrap().unwrap();
    let kept = entry
        .repository
        .clone()
        .expect("recorded with its repository");
    assert_eq!(kept.location, place.to_str().unwrap());
    assert_eq!(kept.keep.within_days, Some(14));
    assert!(kept.staged);
    assert_eq!(
        entry.offsite.as_ref().map(|o| o.location.as_str()),
        offsite_place.to_str()
    );
    let registered = serde_json::to_string(&entry).unwrap();
    assert!(!registered.contains("ledger secret"), "{registered}");
    assert!(!registered.contains("offsite secret"), "{registered}");
    assert!(
        units
            .path()
            .join("persnap-repositories/ledger.offsite.json")
            .is_file()
    );
    let service =
        std::fs::read_to_string(units.path().join("persnap-backup-ledger.service")).unwrap();
    assert!(service.contains("--repo-unlock"), "{service}");
    assert!(!service.contains("ledger secret"), "{service}");
    let unlock = units.path().join("persnap-repositories/ledger.json");
    let mode = std::fs::metadata(&unlock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only root reads it");

    h.get_by_label("Done").click();
    h.step();
    wait_until(&mut h, "its card", |app| {
        app.rt
            .overview
            .survey
            .as_ref()
            .is_some_and(|s| s.as_ref().is_ok_and(|s| s.assessments.len() == 1))
    });
    h.get_by_label_contains("Backups go into the repository");
    h.get_by_label("Back up ledger now").click();
    wait_until(&mut h, "the backup", |app| app.rt.outcome.is_some());
    let done = match &h.state().rt.outcome {
        Some(Outcome::Stored(done)) => done.clone(),
        other => panic!("expected a backup stored in the repository, got {other:?}"),
    };
    assert_eq!(done.manifest.method, persnap::method::Method::Btrfs);
    assert_eq!(vol.snapshot_leftovers(), Vec::<String>::new());
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        0,
        "nothing stays staged"
    );
    let repo = persnap::repository::Repo::open(&location, &password).unwrap();
    let listed = repo.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].database, "ledger");
    // Its offsite copy too, said on the result.
    let offsite_listed = persnap::repository::Repo::open(&offsite, &offsite_password)
        .unwrap()
        .list()
        .unwrap();
    assert_eq!(offsite_listed.len(), 1, "{offsite_listed:?}");
    assert!(
        done.notes
            .iter()
            .any(|(_, n)| n.contains("offsite copy is stored")),
        "{:?}",
        done.notes
    );
    let scratch = tempfile::tempdir().unwrap();
    let set = repo
        .fetch(
            &listed[0].id,
            scratch.path(),
            &mut persnap::progress::Silent,
            &persnap::progress::CancelToken::new(),
        )
        .unwrap();
    check_copy(&set);
    wait_until(&mut h, "the card turning green", |app| {
        app.rt.overview.survey.as_ref().is_some_and(|s| {
            s.as_ref()
                .is_ok_and(|s| s.assessments[0].level == persnap::protection::Level::Protected)
        })
    });
    h.get_by_label("Protected: last verified backup just now.");

    // Restored from the repository, from History: read out of it first,
    // then put back as any backup is (the correlator stopped; the store
    // folder belongs to its user, never to root).
    drop(correlator);
    std::os::unix::fs::chown(&store, Some(65534), Some(65534)).unwrap();
    h.get_by_label("History").click();
    h.run_steps(3);
    h.get_by_label("completed").click();
    h.run_steps(3);
    h.get_by_label("Restore this backup…").click();
    h.run_steps(3);
    h.get_by_label_contains("in the repository");
    h.get_by_label("Restore now").click();
    wait_until(&mut h, "the restore", |app| {
        app.rt.restore.as_ref().is_some_and(|d| d.result.is_some())
    });
    let result = h
        .state()
        .rt
        .restore
        .as_ref()
        .unwrap()
        .result
        .clone()
        .unwrap();
    let report = result
        .unwrap_or_else(|f| panic!("restore failed: {f}"))
        .report;
    assert!(
        report
            .safety_dir
            .expect("the old store was kept")
            .join("persistence.db")
            .is_file()
    );
    let restored = store.join("persistence.db");
    persnap::verify::integrity_check(&restored).unwrap();
    loadgen::check_invariant(&rusqlite::Connection::open(&restored).unwrap()).unwrap();
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        0,
        "nothing read out of the repository stays"
    );
}

/// The app's saved settings never hold a password written into a
/// repository's address.
#[test]
fn a_password_in_a_repository_address_is_not_saved() {
    let settings = Settings {
        repository: "rest:https://alice:secret@backups.example.net:8000/fleet/".into(),
        ..Settings::default()
    };
    let saved = serde_json::to_string(&settings.to_save()).unwrap();
    assert!(!saved.contains("secret"), "{saved}");
    assert!(
        saved.contains("alice@backups.example.net:8000/fleet/"),
        "{saved}"
    );
    for odd in [
        "rest:not an address but:secret@",
        "s3:https://host/bucket?token=secret",
        "rest:https://host:8000/repo#secret",
    ] {
        let odd = Settings {
            repository: odd.into(),
            ..Settings::default()
        };
        let saved = serde_json::to_string(&odd.to_save()).unwrap();
        assert!(!saved.contains("secret"), "{saved}");
    }
}

/// A new repository at `repo` (its password in the file `password`)
/// holding one backup of the store in `store`, made by the command line
/// with its data in `data`.
#[cfg(target_os = "linux")]
fn repository_with_a_backup(data: &Path, store: &Path, repo: &Path, password: &Path) {
    for args in [
        vec!["repo", "init"],
        vec![
            "backup",
            "--source",
            store.to_str().unwrap(),
            "--method",
            "sqlite-online",
        ],
    ] {
        let out = persnap_command(data)
            .args(&args)
            .arg("--repo")
            .arg(repo)
            .arg("--password-file")
            .arg(password)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The persnap command built beside the test executable.
#[cfg(target_os = "linux")]
fn persnap_command(data: &Path) -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let persnap = exe.parent().unwrap().parent().unwrap().join("persnap");
    assert!(
        persnap.is_file(),
        "cargo test builds it: {}",
        persnap.display()
    );
    let mut cmd = std::process::Command::new(persnap);
    cmd.env("PERSNAP_DATA_DIR", data.join("history"))
        .env("PERSNAP_STAGING_DIR", data.join("staging"))
        .env("PERSNAP_REGISTRY_DIR", data.join("databases"));
    cmd
}

/// A database lost with its machine, got back onto a new one with the app
/// alone: from the empty overview, with only the offsite repository's
/// address and password typed (the first repository is lost too), it is
/// restored into the folder it was in (gone with the old machine),
/// protected with that repository in the same administrator step, and its
/// next backup goes into that repository.
#[cfg(target_os = "linux")]
#[test]
fn a_lost_machines_database_is_restored_and_protected_from_the_app() {
    if !kit::require_root_for(
        "a_lost_machines_database_is_restored_and_protected_from_the_app",
        "the helper restores into a folder only root can change",
    ) {
        return;
    }
    // The old machine: its database, backed up into a repository with a
    // copy in an offsite one.
    let old = tempfile::Builder::new()
        .prefix("persnap-gui-old-machine-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let store = old.path().join("apama").join("store");
    std::fs::create_dir_all(&store).unwrap();
    loadgen::init(&store.join("persistence.db"), Mode::Wal, 2).unwrap();
    let mut n = 0;
    loadgen::run(&store.join("persistence.db"), || {
        n += 1;
        n > 25
    })
    .unwrap();
    // `repo` is the offsite repository, the one that survives.
    let (first, repo) = (old.path().join("first"), old.path().join("offsite"));
    let (first_password, password) = (
        old.path().join("first-password"),
        old.path().join("password"),
    );
    std::fs::write(&first_password, "first secret\n").unwrap();
    std::fs::write(&password, "ledger secret\n").unwrap();
    for sub in ["history", "staging", "databases"] {
        std::fs::create_dir(old.path().join(sub)).unwrap();
    }
    let run = |args: &[&std::ffi::OsStr]| {
        let out = persnap_command(old.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    run(&[
        os("repo"),
        os("init"),
        os("--repo"),
        repo.as_os_str(),
        os("--password-file"),
        password.as_os_str(),
    ]);
    run(&[
        os("repo"),
        os("init"),
        os("--repo"),
        first.as_os_str(),
        os("--password-file"),
        first_password.as_os_str(),
    ]);
    run(&[
        os("backup"),
        os("--source"),
        store.as_os_str(),
        os("--method"),
        os("sqlite-online"),
        os("--repo"),
        first.as_os_str(),
        os("--password-file"),
        first_password.as_os_str(),
        os("--offsite"),
        repo.as_os_str(),
        os("--offsite-password-file"),
        password.as_os_str(),
    ]);
    // Its first repository is lost with it: only the offsite one is left.
    std::fs::remove_dir_all(&first).unwrap();
    let expected = loadgen::check_invariant(
        &rusqlite::Connection::open(store.join("persistence.db")).unwrap(),
    )
    .unwrap()
    .transfers;
    // The machine is gone, its folder with it.
    std::fs::rename(old.path().join("apama"), old.path().join("gone")).unwrap();

    // The new machine: its own history, registry and staging folder.
    let data = tempfile::Builder::new()
        .prefix("persnap-gui-new-machine-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let staging = data.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    let units = tempfile::tempdir().unwrap();
    history_of_a_user(data.path());
    let mut app = PersnapApp::with_settings(
        Settings::default(),
        Ok(History::at(data.path().join("history"))),
    );
    app.settings.remember_password = false;
    app.rt.staging = Some(staging.clone());
    share_registry(&mut app, &registry);
    share_unit_dir(&mut app, units.path());
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    let mut h = harness(app);
    wait_for_overview(&mut h);
    assert!(h.query_by_label("No database is protected yet").is_some());
    h.get_by_label("Restore a database from a backup…").click();
    h.run_steps(2);
    type_into(&mut h, "Repository", repo.to_str().unwrap());
    h.get_by_role_and_label(Role::PasswordInput, "Password")
        .click();
    h.step();
    h.get_by_role_and_label(Role::PasswordInput, "Password")
        .type_text("ledger secret");
    h.step();
    h.get_by_label("Connect").click();
    // Its old folder is offered, and what will happen is said first.
    wait_until(&mut h, "the plan", |app| {
        app.rt
            .restore_page
            .as_ref()
            .is_some_and(|p| matches!(&p.plan, Some((_, Ok(plan))) if plan.target == store))
    });
    h.run_steps(2);
    h.get_by_label_contains("the newest");
    h.get_by_label_contains(&format!("Creates the folder {}", store.display()));
    h.get_by_label_contains("Written as root");
    h.get_by_label_contains("Stop the correlator first");
    assert!(h.unnamed_widgets().is_empty());
    h.get_by_label("Restore and protect").click();
    wait_until(&mut h, "the restore", |app| {
        app.rt
            .restore_page
            .as_ref()
            .is_some_and(|p| p.result.is_some())
    });
    h.run_steps(2);
    let restored = h
        .state()
        .rt
        .restore_page
        .as_ref()
        .unwrap()
        .result
        .clone()
        .unwrap()
        .unwrap_or_else(|f| panic!("restore failed: {f}"));
    assert!(
        matches!(&restored.protected, Some(Ok(_))),
        "{:?}",
        restored.protected
    );
    h.get_by_label_contains("The database is back");

    h.get_by_label_contains("It is protected as store");
    let db = store.join("persistence.db");
    persnap::verify::integrity_check(&db).unwrap();
    let got = loadgen::check_invariant(&rusqlite::Connection::open(&db).unwrap())
        .unwrap()
        .transfers;
    assert_eq!(got, expected, "the newest backup, whole");
    let entry = registry.get("store").unwrap().expect("protected");
    assert_eq!(entry.folder, store);
    assert_eq!(
        entry.repository.as_ref().map(|r| r.location.as_str()),
        repo.to_str()
    );
    assert!(units.path().join("persnap-backup-store.timer").is_file());
    assert!(h.state().rt.runs.iter().any(
        |r| r.kind == persnap::history::RunKind::Restore && r.outcome == RunOutcome::Completed
    ));

    // Its card, and its next backup into the same repository.
    h.get_by_label("Back to the overview").click();
    wait_until(&mut h, "its card", |app| {
        app.rt
            .overview
            .survey
            .as_ref()
            .is_some_and(|s| s.as_ref().is_ok_and(|s| s.assessments.len() == 1))
    });
    h.get_by_label("Back up store now").click();
    wait_until(&mut h, "the backup", |app| app.rt.outcome.is_some());
    assert!(
        matches!(h.state().rt.outcome, Some(Outcome::Stored(_))),
        "{:?}",
        h.state().rt.outcome
    );
    let location = persnap::repository::Address::parse(repo.to_str().unwrap()).unwrap();
    let listed = persnap::repository::Repo::open(
        &location,
        &persnap::repository::Password::new("ledger secret"),
    )
    .unwrap()
    .list()
    .unwrap();
    assert_eq!(listed.len(), 2, "the old machine's and this one's");
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        0,
        "nothing read out of the repository stays"
    );
}

/// "Check restorable now" on a database's page: a restore drill of its
/// backup folder proves it restorable, and the card says when; a backup
/// file damaged since makes the next drill say which one, and the card
/// turns red.
#[test]
fn a_restore_drill_from_the_database_page_proves_it_or_names_the_damage() {
    let (src, dest, data) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = online_backup(src.path(), dest.path(), data.path());
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    let mut entry = persnap::registry::Database::new(
        "orders",
        persnap::volume::canonical(src.path()).unwrap(),
        "persistence.db",
    );
    entry.location = Some(persnap::fsutil::canonicalize(dest.path()).unwrap());
    registry.add(&entry).unwrap();
    let staging = data.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let mut app = PersnapApp::with_settings(
        Settings::default(),
        Ok(History::at(data.path().join("history"))),
    );
    share_registry(&mut app, &registry);
    app.rt.staging = Some(staging);
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    let mut h = harness(app);
    wait_for_overview(&mut h);
    h.get_by_label_contains("Not proven restorable yet");
    h.get_by_label("Backups of orders").click();
    h.run_steps(3);
    h.get_by_label("Check restorable now").click();
    wait_until(&mut h, "the drill", |app| {
        app.rt
            .database
            .as_ref()
            .is_some_and(|p| p.drilled.is_some())
    });
    h.run_steps(3);
    h.get_by_label_contains("Restorable: every place gave its backups back whole");
    h.get_by_label_contains(&format!(
        "the backup location {}: restorable",
        entry.location.as_ref().unwrap().display()
    ));
    h.get_by_label_contains("Last proven restorable today at");
    assert!(h.unnamed_widgets().is_empty());

    // The backup is damaged since: the next drill names it, the card is red.
    let file = first.backup_dir.join("persistence.db");
    let mut perms = std::fs::metadata(&file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&file, perms).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    h.get_by_label("Check restorable now").click();
    wait_until(&mut h, "the second drill", |app| {
        app.rt
            .database
            .as_ref()
            .is_some_and(|p| matches!(&p.drilled, Some(Ok(r)) if !r.passed()))
    });
    wait_until(&mut h, "the card turning red", |app| {
        app.rt.overview.survey.as_ref().is_some_and(|s| {
            s.as_ref()
                .is_ok_and(|s| s.assessments[0].level == persnap::protection::Level::Failing)
        })
    });
    h.run_steps(3);
    h.get_by_label("Not restorable from every place:");
    // On the page's drill result and in its standing above.
    let damaged = format!(
        "the backup {} is damaged",
        first.backup_dir.file_name().unwrap().to_string_lossy()
    );
    assert_eq!(h.query_all_by_label_contains(&damaged).count(), 2);
    h.get_by_label_contains("The restore drill today at");
}

/// Verify again and restore show their progress as a backup does (the
/// step, bytes, speed and time left) with a Cancel that stops the job,
/// and a cancelled one says that nothing changed.
#[test]
fn verify_and_restore_show_progress_and_cancel() {
    use super::jobs::Msg;
    use persnap::progress::Phase;
    let mut h = fixture_overview("database", super::Theme::Light, 1.0);
    h.get_by_label("Backups of orders").click();
    h.run();
    h.get_all_by_label("verified backup")
        .next()
        .unwrap()
        .click();
    h.run();
    let selected = h
        .state()
        .rt
        .database
        .as_ref()
        .unwrap()
        .selected
        .clone()
        .unwrap();
    // A verification under way, as its job reports it.
    let (tx, rx) = std::sync::mpsc::channel();
    let cancel = persnap::progress::CancelToken::new();
    h.state_mut().rt.database.as_mut().unwrap().verifying = Some((
        selected.clone(),
        super::jobs::Job {
            rx,
            cancel: cancel.clone(),
        },
        Default::default(),
    ));
    tx.send(Msg::Phase(Phase::Verify)).unwrap();
    tx.send(Msg::Bytes {
        phase: Phase::Verify,
        done: 3 << 20,
        total: 12 << 20,
    })
    .unwrap();
    h.run_steps(3);
    h.get_by_label("Verifying again: reading every file back and checking the database");
    h.get_by_label_contains("3.0 MiB of 12.0 MiB");
    h.get_by_label_contains("left in this step");
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(cancel.is_cancelled(), "Cancel stops the job");
    h.get_by_label("Cancelling… nothing half-done is kept.");
    tx.send(Msg::Done(Err(super::jobs::CANCELLED_VERIFY.into())))
        .unwrap();
    h.run_steps(3);
    h.get_by_label(super::jobs::CANCELLED_VERIFY);
    assert!(h.state().rt.database.as_ref().unwrap().verifying.is_none());

    // A restore from History, the same way.
    let (tx, rx) = std::sync::mpsc::channel();
    let cancel = persnap::progress::CancelToken::new();
    let mut draft = super::RestoreDraft::new(
        PathBuf::from("/backups/persistence.db-x"),
        None,
        Path::new("/srv/apama/store"),
    );
    draft.job = Some(super::jobs::Job {
        rx,
        cancel: cancel.clone(),
    });
    h.state_mut().rt.restore = Some(draft);
    tx.send(Msg::Bytes {
        phase: Phase::Copy,
        done: 1 << 20,
        total: 4 << 20,
    })
    .unwrap();
    h.run_steps(3);
    h.get_by_label("Restoring: reading the backup and checking every file");
    h.get_by_label_contains("1.0 MiB of 4.0 MiB");
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(cancel.is_cancelled());
    tx.send(Msg::Done(Err(crate::launch::RemoteFailure {
        kind: persnap::ErrorKind::Cancelled,
        step: Some(Phase::Copy),
        message: "cancelled".into(),
    })))
    .unwrap();
    h.run_steps(3);
    h.get_by_label(persnap::restore::CANCELLED);
}

/// Small things said plainly: one database needing attention is "your
/// database", not "1 of 1 databases"; a card whose first backup is
/// running is not red "never backed up"; a card's Settings… opens how it
/// is protected; a backup that cannot fit is not offered, and the
/// shortfall is in MiB and GiB.
#[test]
fn the_app_says_the_small_things_plainly() {
    let (src, dest, data) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    loadgen::init(&src.path().join("persistence.db"), Mode::Wal, 1).unwrap();
    let folder = persnap::volume::canonical(src.path()).unwrap();
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    let mut entry = persnap::registry::Database::new("orders", &folder, "persistence.db");
    entry.location = Some(persnap::fsutil::canonicalize(dest.path()).unwrap());
    registry.add(&entry).unwrap();
    let mut app = PersnapApp::with_settings(
        Settings::default(),
        Ok(History::at(data.path().join("history"))),
    );
    share_registry(&mut app, &registry);
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    let mut h = harness(app);
    wait_for_overview(&mut h);
    h.get_by_label("Your database needs your attention.");
    h.get_by_label("Never backed up.");

    // Its first backup under way.
    let (_tx, rx) = std::sync::mpsc::channel();
    let now = Instant::now();
    h.state_mut().rt.activity = Some(super::Activity {
        job: super::jobs::Job {
            rx,
            cancel: persnap::progress::CancelToken::new(),
        },
        test_only: false,
        phase: persnap::progress::Phase::Copy,
        done: 0,
        total: 0,
        started: now,
        phase_started: now,
        log: Vec::new(),
        cancelling: false,
    });
    h.state_mut().rt.overview.backing_up = Some("orders".into());
    h.run_steps(3);
    assert_eq!(
        h.query_all_by_label("Its first backup is running.").count(),
        2,
        "over the cards and on its card"
    );
    assert!(h.query_by_label("Never backed up.").is_none());
    assert!(
        h.query_by_label("Your database needs your attention.")
            .is_none()
    );
    h.state_mut().rt.activity = None;
    h.state_mut().rt.overview.backing_up = None;
    h.run_steps(3);

    // Settings… on its card: where its backups go, when, how long.
    h.get_by_label("Settings…").click();
    h.run_steps(3);
    assert_eq!(h.state().rt.screen, Screen::Protect);
    assert!(h.state().rt.protect.as_ref().is_some_and(|d| d.replace));

    // The Back up screen, where the backup would not fit.
    h.state_mut().rt.protect = None;
    h.state_mut().rt.screen = Screen::Backup;
    h.run_steps(2);
    type_into(&mut h, "Database folder", folder.to_str().unwrap());
    type_into(&mut h, "Backup location", dest.path().to_str().unwrap());
    choose_method(&mut h, "SQLite online backup (no snapshot)");
    wait_until(&mut h, "the plan", |app| {
        app.rt.probing.is_none() && matches!(&app.rt.probe, Some(Ok(r)) if r.dest_space.is_some())
    });
    if let Some(Ok(report)) = &mut h.state_mut().rt.probe {
        report.dest_space = Some((1 << 20, 10 << 30));
    }
    h.run_steps(3);
    h.get_by_label_contains("It does not fit: the backup needs 10.0 GiB there and 1.0 MiB is free");
    h.get_by_label("Back up now").click();
    h.run_steps(3);
    assert!(h.state().rt.activity.is_none(), "not offered, not started");
    assert!(h.state().rt.confirm.is_none(), "no \"Back up anyway\"");
}

/// Settings as an older persnap saved them (RON, as eframe keeps them
/// between launches), read the way the app reads them at its start.
fn settings_saved_as(ron: &str) -> Settings {
    struct Saved(String);
    impl eframe::Storage for Saved {
        fn get_string(&self, key: &str) -> Option<String> {
            (key == super::SETTINGS_KEY).then(|| self.0.clone())
        }
        fn set_string(&mut self, _: &str, _: String) {}
        fn remove_string(&mut self, _: &str) {}
        fn flush(&mut self) {}
    }
    eframe::get_value(&Saved(ron.to_owned()), super::SETTINGS_KEY)
        .unwrap_or_else(|| panic!("settings saved as {ron} do not load"))
}

/// A protected database whose registration sends its backups to one
/// folder, and the app's settings from an older persnap, which still name
/// another folder for it ("Change…" on its card once kept its own record):
/// the overview of it, with a verified backup an hour old that is bigger
/// than any disk (so the room left is judged, and is none).
struct TwoRecords {
    h: Harness<'static, PersnapApp>,
    registry: persnap::registry::Registry,
    registered: PathBuf,
    old: PathBuf,
    /// Its folders, gone once dropped: bind them for the whole test.
    _dirs: [tempfile::TempDir; 4],
}

fn a_database_with_two_records(no_dialog: bool) -> TwoRecords {
    let dirs = [(); 4].map(|_| tempfile::tempdir().unwrap());
    let [src, registered, old, data] = &dirs;
    loadgen::init(&src.path().join("persistence.db"), Mode::Wal, 1).unwrap();
    let folder = persnap::volume::canonical(src.path()).unwrap();
    let registered = persnap::fsutil::canonicalize(registered.path()).unwrap();
    let old = persnap::fsutil::canonicalize(old.path()).unwrap();
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    let mut entry = persnap::registry::Database::new("orders", &folder, "persistence.db");
    entry.location = Some(registered.clone());
    // Backed up by SQLite itself, here in the test (no helper, no root).
    entry.method = persnap::method::MethodChoice::Explicit(persnap::method::Method::SqliteOnline);
    registry.add(&entry).unwrap();
    let history = data.path().join("history");
    std::fs::create_dir_all(&history).unwrap();
    let started = chrono::Utc::now() - chrono::Duration::hours(1);
    let run = serde_json::json!({
        "id": "big", "tag": "00000001",
        "started": started, "finished": started + chrono::Duration::minutes(1),
        "duration_secs": 60.0,
        "source": folder, "store_name": "persistence.db",
        "destination": registered, "backup_path": registered.join("persistence-big"),
        "requested_method": "sqlite-online", "method": "sqlite-online", "snapshot_id": null,
        "bytes": 1u64 << 60, "files": 1, "outcome": {"status": "completed"},
        "verification": {"integrity": "ok", "page_count": 1, "page_size": 4096,
            "hashes_match": true, "seconds": 0.1},
        "warnings": [], "host": "correlator-1", "tool_version": "0.1.0"
    });
    std::fs::write(
        history.join("history.json"),
        serde_json::to_vec(&serde_json::json!({"format": 1, "runs": [run]})).unwrap(),
    )
    .unwrap();
    let settings = settings_saved_as(&format!(
        "(locations: {{\"orders\": {:?}}}, keep_last: 3)",
        old.display().to_string()
    ));
    assert_eq!(settings.keep_last, 3, "the rest of the old file is kept");
    let mut app = PersnapApp::with_settings(settings, Ok(History::at(history)));
    share_registry(&mut app, &registry);
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    app.rt.folders.no_dialog = no_dialog;
    let mut h = harness(app);
    wait_for_overview(&mut h);
    TwoRecords {
        h,
        registry,
        registered,
        old,
        _dirs: dirs,
    }
}

/// The card of `name`, as last judged.
fn card_of(app: &PersnapApp, name: &str) -> persnap::protection::Assessment {
    match &app.rt.overview.survey {
        Some(Ok(s)) => s
            .assessments
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no card for {name}")),
        other => panic!("no survey: {other:?}"),
    }
}

/// Issue #30: a protected database has one record of where its backups
/// go, its registration's. An older settings file naming another folder
/// for it changes nothing: its card shows the registered location, with
/// the free space there, and says the room left there.
#[test]
fn a_protected_databases_card_shows_and_judges_its_registered_location() {
    let TwoRecords {
        mut h,
        registered,
        old,
        _dirs,
        ..
    } = a_database_with_two_records(false);
    if let Ok(path) = std::env::var("PERSNAP_LOOK") {
        h.render().unwrap().save(path).unwrap();
    }
    let card = card_of(h.state(), "orders");
    assert_eq!(card.location.as_deref(), Some(registered.as_path()));
    let free = card.free.expect("the free space at its location");
    h.get_by_label(&format!(
        "Backups go to {} — {} free.",
        registered.display(),
        persnap::units::bytes(free)
    ));
    h.get_by_label("Protected, but the backup location has room for no more.");
    assert!(
        h.query_by_label_contains(&old.display().to_string())
            .is_none(),
        "the folder of the old settings is not shown"
    );
    h.get_by_label("Changing where backups go needs the administrator's password.");
}

/// Back up now, on its card and on its page, writes into the registered
/// location, never into the folder an older settings file names.
#[test]
fn back_up_now_writes_into_a_protected_databases_registered_location() {
    let TwoRecords {
        mut h,
        registered,
        old,
        _dirs,
        ..
    } = a_database_with_two_records(false);
    h.get_by_label("Back up orders now").click();
    wait_until(&mut h, "the backup from its card", |app| {
        app.rt.outcome.is_some()
    });
    let dir = backed_up_dir(h.state());
    assert!(dir.starts_with(&registered), "{}", dir.display());
    check_copy(&dir);
    h.state_mut().rt.outcome = None;
    h.get_by_label("Backups of orders").click();
    h.run_steps(3);
    h.get_by_label("Back up now").click();
    wait_until(&mut h, "the backup from its page", |app| {
        app.rt.outcome.is_some() && app.rt.activity.is_none()
    });
    let second = backed_up_dir(h.state());
    assert_ne!(second, dir);
    assert!(second.starts_with(&registered), "{}", second.display());
    assert_eq!(
        std::fs::read_dir(&old).unwrap().count(),
        0,
        "nothing goes into the old settings' folder"
    );
}

/// "Change…" on a protected database's card does not make a record of
/// its own: the folder chosen opens its Protect page, filled in as it is
/// protected but for the new folder (the old one said until saved), and
/// saving it there — the administrator's step — changes its registration;
/// then the card shows, judges and backs up into the new folder.
#[test]
fn changing_a_protected_databases_location_on_its_card_changes_its_registration() {
    let TwoRecords {
        mut h,
        registry,
        registered,
        old,
        _dirs,
    } = a_database_with_two_records(true);
    let new = persnap::fsutil::canonicalize(_dirs[3].path())
        .unwrap()
        .join("new");
    std::fs::create_dir(&new).unwrap();
    // Where no folder dialog opens, the card's field takes it typed (the
    // first "Use this folder": the card's, over the list below).
    h.state_mut()
        .rt
        .folders
        .typed
        .insert("location-orders".into(), new.display().to_string());
    h.run_steps(2);
    h.get_all_by_label("Use this folder")
        .next()
        .unwrap()
        .click();
    h.run_steps(3);
    assert_eq!(h.state().rt.screen, Screen::Protect);
    let d = h.state().rt.protect.as_ref().expect("its Protect page");
    assert!(d.replace, "a change of how it is protected");
    assert_eq!(d.name, "orders");
    assert_eq!(d.location.as_deref(), Some(new.as_path()));
    h.get_by_label("Change how it is protected");
    h.get_by_label(&format!("Backups go to {}.", new.display()));
    h.get_by_label(&format!(
        "Until you save the changes, they still go to {}.",
        registered.display()
    ));
    // Nothing changed yet, and the app keeps no record of its own.
    assert_eq!(
        registry.get("orders").unwrap().unwrap().location.as_deref(),
        Some(registered.as_path())
    );
    let saved = serde_json::to_string(&h.state().settings.to_save()).unwrap();
    assert!(!saved.contains(&new.display().to_string()), "{saved}");
    assert!(!saved.contains(&old.display().to_string()), "{saved}");
    if let Ok(path) = std::env::var("PERSNAP_LOOK_CHANGE") {
        h.render().unwrap().save(path).unwrap();
    }
    #[cfg(target_os = "linux")]
    saved_by_the_administrator(h, &registry, &new);
}

/// Its Protect page saved (the helper, run directly here, as root),
/// then the card in its new place.
#[cfg(target_os = "linux")]
fn saved_by_the_administrator(
    mut h: Harness<'static, PersnapApp>,
    registry: &persnap::registry::Registry,
    new: &Path,
) {
    if !kit::require_root_for(
        "changing_a_protected_databases_location_on_its_card",
        "the helper records the location's owner",
    ) {
        return;
    }
    wait_until(&mut h, "a look at its disk", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.probe.is_some())
    });
    h.get_by_label("Save how orders is protected").click();
    wait_until(&mut h, "the change", |app| {
        app.rt.protect.as_ref().is_some_and(|d| d.result.is_some())
    });
    assert!(
        h.query_by_label("The changes to how orders is protected are saved.")
            .is_some(),
        "{:?}",
        h.state().rt.protect.as_ref().unwrap().result
    );
    assert_eq!(
        registry.get("orders").unwrap().unwrap().location.as_deref(),
        Some(new)
    );
    h.get_by_label("Done").click();
    wait_until(&mut h, "its card with the new location", |app| {
        app.rt.screen == Screen::Overview
            && app.rt.overview.survey.as_ref().is_some_and(|s| {
                s.as_ref()
                    .is_ok_and(|s| s.assessments[0].location.as_deref() == Some(new))
            })
    });
    let free = card_of(h.state(), "orders").free.expect("its free space");
    h.get_by_label(&format!(
        "Backups go to {} — {} free.",
        new.display(),
        persnap::units::bytes(free)
    ));
    h.get_by_label("Back up orders now").click();
    wait_until(&mut h, "the backup", |app| app.rt.outcome.is_some());
    let dir = backed_up_dir(h.state());
    assert!(dir.starts_with(new), "{}", dir.display());
}

/// Where no folder dialog can open (a server without a desktop portal),
/// every folder the app asks for can be typed: the database folder to
/// protect here, said plainly.
#[test]
fn where_no_folder_dialog_opens_the_folder_is_typed() {
    let place = tempfile::tempdir().unwrap();
    let store = place.path().join("store");
    std::fs::create_dir(&store).unwrap();
    loadgen::init(&store.join("persistence.db"), Mode::Rollback, 1).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut app = PersnapApp::with_settings(
        Settings::default(),
        Ok(History::at(data.path().join("history"))),
    );
    share_registry(
        &mut app,
        &persnap::registry::Registry::at(data.path().join("databases")),
    );
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    // As found out by a dialog that could not open.
    app.rt.folders.no_dialog = true;
    let mut h = harness(app);
    wait_for_overview(&mut h);
    h.get_by_label_contains("No folder dialog can open on this computer");
    type_into(&mut h, "Folder", store.to_str().unwrap());
    h.get_by_label("Use this folder").click();
    h.run_steps(3);
    let folder = persnap::volume::canonical(&store).unwrap();
    assert!(
        h.state().rt.overview.found.as_ref().is_some_and(|f| f
            .iter()
            .any(|f| persnap::volume::canonical(&f.folder).ok() == Some(folder.clone()))),
        "offered to protect"
    );
    assert!(h.unnamed_widgets().is_empty());
}

/// A repository created from the app: its password typed twice (a
/// mismatch is refused, nothing created), the warning that a lost
/// password is lost backups, the password kept in a file too; then it is
/// there, opened and listed.
#[test]
fn a_repository_is_created_from_the_app_with_its_password_twice() {
    let data = tempfile::tempdir().unwrap();
    let place = data.path().join("repo");
    let kept = data.path().join("repo-password.txt");
    let mut app = PersnapApp::with_settings(
        Settings::default(),
        Ok(History::at(data.path().join("history"))),
    );
    app.settings.remember_password = false;
    app.rt.screen = Screen::Repositories;
    let mut h = harness(app);
    h.run();
    h.get_by_label("Create a new repository…").click();
    h.run_steps(2);
    h.get_by_label_contains("Keep this password safe");
    type_into(&mut h, "New repository", place.to_str().unwrap());
    for (field, text) in [
        ("Its password", "ledger secret"),
        ("The same password again", "ledger secrte"),
    ] {
        h.get_by_role_and_label(Role::PasswordInput, field).click();
        h.step();
        h.get_by_role_and_label(Role::PasswordInput, field)
            .type_text(text);
        h.step();
    }
    h.run_steps(2);
    h.get_by_label("The two passwords differ: type the same one twice.");
    h.get_by_label("Create").click();
    h.run_steps(3);
    assert!(!place.exists(), "nothing created");
    h.state_mut().rt.repositories.create.as_mut().unwrap().again = "ledger secret".into();
    type_into(&mut h, "Keep it also in this file", kept.to_str().unwrap());
    h.run_steps(2);
    assert!(
        h.query_by_label("The two passwords differ: type the same one twice.")
            .is_none()
    );
    assert!(h.unnamed_widgets().is_empty());
    h.get_by_label("Create").click();
    wait_until(&mut h, "the new repository", |app| {
        matches!(app.rt.repositories.result, Some(Ok(_)))
    });
    h.run_steps(2);
    h.get_by_label_contains("Connected to");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "ledger secret\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only its owner reads it");
    }
    let location = persnap::repository::Address::parse(place.to_str().unwrap()).unwrap();
    persnap::repository::Repo::open(
        &location,
        &persnap::repository::Password::new("ledger secret"),
    )
    .expect("it opens with the password typed");
}

/// A database kept in a repository: a backup there is pinned and
/// unpinned from its page (the history follows its new id), and "Back up
/// before upgrading…" makes a backup and pins it there with its note.
#[cfg(target_os = "linux")]
#[test]
fn repository_backups_are_pinned_and_kept_before_upgrading_from_the_app() {
    let data = tempfile::Builder::new()
        .prefix("persnap-gui-pin-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let store = data.path().join("store");
    std::fs::create_dir(&store).unwrap();
    loadgen::init(&store.join("persistence.db"), Mode::Wal, 1).unwrap();
    let store = persnap::volume::canonical(&store).unwrap();
    for sub in ["history", "staging", "databases"] {
        std::fs::create_dir(data.path().join(sub)).unwrap();
    }
    let repo = data.path().join("repo");
    let password = data.path().join("password");
    std::fs::write(&password, "ledger secret\n").unwrap();
    let mut entry = persnap::registry::Database::new("orders", &store, "persistence.db");
    entry.method = persnap::method::MethodChoice::Explicit(persnap::method::Method::SqliteOnline);
    entry.location = Some(persnap::fsutil::canonicalize(&data.path().join("staging")).unwrap());
    entry.repository = Some(persnap::registry::InRepository {
        location: repo.to_str().unwrap().into(),
        keep: Default::default(),
        staged: true,
    });
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    registry.add(&entry).unwrap();
    repository_with_a_backup(data.path(), &store, &repo, &password);
    let listed = || {
        persnap::repository::Repo::open(
            &persnap::repository::Address::parse(repo.to_str().unwrap()).unwrap(),
            &persnap::repository::Password::new("ledger secret"),
        )
        .unwrap()
        .list()
        .unwrap()
    };
    let mut app = PersnapApp::with_settings(
        Settings::default(),
        Ok(History::at(data.path().join("history"))),
    );
    share_registry(&mut app, &registry);
    app.settings.remember_password = false;
    app.settings.repository = repo.to_str().unwrap().into();
    app.rt.repositories.password = "ledger secret".into();
    app.rt.staging = Some(data.path().join("staging"));
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    let mut h = harness(app);
    wait_for_overview(&mut h);
    h.get_by_label("Backups of orders").click();
    h.run_steps(3);
    h.get_all_by_label("verified backup")
        .next()
        .unwrap()
        .click();
    h.run_steps(3);
    type_into(&mut h, "Keep it, with a note", "known state");
    h.get_by_label("Pin").click();
    wait_until(&mut h, "the pin", |app| {
        app.rt
            .database
            .as_ref()
            .is_some_and(|p| p.repo_pinned.is_some())
    });
    h.run_steps(2);
    h.get_by_label_contains("Pinned: kept even when retention would delete it");
    let now = listed();
    assert_eq!(now.len(), 1);
    assert!(now[0].pinned && now[0].note.as_deref() == Some("known state"));
    // The history names it by its new id.
    let runs = History::at(data.path().join("history")).load().unwrap();
    assert_eq!(runs[0].repository.as_ref().unwrap().snapshot, now[0].id);
    h.get_by_label("Unpin").click();
    wait_until(&mut h, "the unpin", |app| {
        app.rt.database.as_ref().is_some_and(
            |p| matches!(&p.repo_pinned, Some((_, Ok(w))) if w.starts_with("Unpinned")),
        )
    });
    assert!(!listed()[0].pinned);

    // Back up before upgrading: stored, then pinned there with its note.
    h.get_by_label("Back up before upgrading…").click();
    h.run_steps(2);
    h.get_by_label("Back up and keep it").click();
    wait_until(&mut h, "the kept backup", |app| {
        app.rt.activity.is_none() && app.rt.pinned.is_some()
    });
    assert!(
        matches!(&h.state().rt.pinned, Some(Ok(w)) if w.starts_with("Pinned")),
        "{:?}",
        h.state().rt.pinned
    );
    let now = listed();
    assert_eq!(now.len(), 2);
    let newest = now.iter().max_by_key(|l| l.time).unwrap();
    assert!(newest.pinned);
    assert_eq!(newest.note.as_deref(), Some("before upgrading Apama"));
}

/// A run the command line (or a schedule) records while the app is open
/// shows without a restart: the app follows its history file.
#[test]
fn a_run_recorded_elsewhere_shows_without_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let history = History::at(data.path().join("history"));
    let mut app = app_with_history(data.path());
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    let mut h = harness(app);
    h.run();
    assert!(h.state().rt.runs.is_empty());
    let mut run = persnap::history::Run::refused(
        "/srv/apama/store".into(),
        "persistence.db".into(),
        "/backups".into(),
        persnap::ErrorKind::Copy,
        "made elsewhere".into(),
    );
    run.id = "from-the-command-line".into();
    history.upsert(&run).unwrap();
    wait_until(&mut h, "the run made elsewhere", |app| {
        app.rt.runs.iter().any(|r| r.id == "from-the-command-line")
    });
}

/// Backups of a protected database are written as its location's owner,
/// whoever asks: a location others can change is refused on the page, in
/// words, before the button (not by the first backup).
#[cfg(unix)]
#[test]
fn the_protect_page_refuses_a_location_others_can_change() {
    use std::os::unix::fs::PermissionsExt;
    let registry = tempfile::tempdir().unwrap();
    let mut h = fixture_protect(super::Theme::Light, 1.0, registry.path());
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    h.state_mut().rt.protect.as_mut().unwrap().location = Some(shared.path().to_owned());
    h.run();
    assert!(
        h.query_by_label_contains(
            "Backups of a protected database are written as the location's owner"
        )
        .is_some()
    );
    assert!(h.query_by_label_contains("chmod 755").is_some());
    if let Ok(path) = std::env::var("PERSNAP_LOOK") {
        h.render().unwrap().save(path).unwrap();
    }
    assert!(
        h.query_by_label_contains("Choose a backup location only its owner can change")
            .is_some(),
        "the button says what is missing"
    );
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    h.run();
    assert!(h.query_by_label_contains("chmod 755").is_none());
}

/// One failure, asked of the command line and of the app alike.
#[cfg(target_os = "linux")]
struct FailureRow {
    name: &'static str,
    method: persnap::method::Method,
    /// The backup folder; `None`: only the repository keeps it (staged).
    dest: Option<PathBuf>,
    /// A repository and the file holding the password given for it.
    repo: Option<(String, PathBuf)>,
    offsite: Option<(String, PathBuf)>,
    /// Cancelled once the copy begins (the store is locked: it waits).
    cancel: bool,
    /// What the words must say, whoever shows them.
    words: &'static str,
}

/// One table of failures run through the command line and through the
/// app (issue #30): both make the engine's one pipeline call, so each row
/// ends with the same recorded outcome (step, kind and message) and the
/// same words, and the command line's exit status is the kind's. Rows that
/// need root (a full tmpfs, the helper) are skipped, saying so, without it.
#[cfg(target_os = "linux")]
#[test]
fn the_command_line_and_the_app_fail_alike() {
    use persnap::method::Method;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("store");
    std::fs::create_dir(&src).unwrap();
    loadgen::init(&src.join("persistence.db"), Mode::Rollback, 1).unwrap();
    let right = work.path().join("right-password");
    std::fs::write(&right, "the right one\n").unwrap();
    let wrong = work.path().join("wrong-password");
    std::fs::write(&wrong, "not it\n").unwrap();
    let repo = work.path().join("repo");
    let init = persnap_command(&work.path().join("init"))
        .args(["repo", "init", "--repo"])
        .arg(&repo)
        .arg("--password-file")
        .arg(&right)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let folder = work.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let repo = repo.to_str().unwrap().to_owned();

    let mut rows = vec![
        FailureRow {
            name: "a wrong offsite password",
            method: Method::SqliteOnline,
            dest: Some(folder.clone()),
            repo: None,
            offsite: Some((repo.clone(), wrong.clone())),
            cancel: false,
            words: "The offsite repository: The password for the repository",
        },
        FailureRow {
            name: "a wrong password",
            method: Method::SqliteOnline,
            dest: None,
            repo: Some((repo.clone(), wrong.clone())),
            offsite: None,
            cancel: false,
            words: "is wrong",
        },
        FailureRow {
            name: "a server out of reach",
            method: Method::SqliteOnline,
            dest: None,
            // Port 9 (discard) is closed on loopback: its key cannot be
            // asked for (a REST server's retries would take a minute).
            repo: Some(("sftp:persnap@127.0.0.1:9:/repo".into(), right.clone())),
            offsite: None,
            cancel: false,
            words: "reach",
        },
        FailureRow {
            name: "a backup folder gone",
            method: Method::SqliteOnline,
            dest: Some(work.path().join("unplugged")),
            repo: None,
            offsite: None,
            cancel: false,
            words: "is not there",
        },
        FailureRow {
            name: "a cancel while copying",
            method: Method::SqliteOnline,
            dest: Some(folder.clone()),
            repo: None,
            offsite: None,
            cancel: true,
            words: "cancel",
        },
    ];
    let mut full = None;
    if kit::require_root_for(
        "the_command_line_and_the_app_fail_alike (full location, helper refusal)",
        "a tmpfs mount, and the helper run directly",
    ) {
        let tiny = work.path().join("tiny");
        std::fs::create_dir(&tiny).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&tiny)
            .status()
            .unwrap();
        assert!(mounted.success());
        full = Some(tiny.clone());
        rows.push(FailureRow {
            name: "a full backup location",
            method: Method::SqliteOnline,
            dest: Some(tiny),
            repo: None,
            offsite: None,
            cancel: false,
            words: "",
        });
        rows.push(FailureRow {
            name: "a request the helper refuses",
            // The temp folder is on no logical volume.
            method: Method::Lvm,
            dest: Some(folder.clone()),
            repo: None,
            offsite: None,
            cancel: false,
            words: "",
        });
    }

    for (i, row) in rows.iter().enumerate() {
        let data = work.path().join(format!("row-{i}"));
        // The store is held locked for the cancel row: the copy waits.
        let lock = row.cancel.then(|| {
            let lock = rusqlite::Connection::open(src.join("persistence.db")).unwrap();
            lock.execute_batch(
                "BEGIN EXCLUSIVE; UPDATE accounts SET balance = balance WHERE id = 0;",
            )
            .unwrap();
            lock
        });

        // The command line.
        let cli_data = data.join("cli");
        let mut cmd = persnap_command(&cli_data);
        cmd.env("PERSNAP_STAGING_DIR", data.join("staging"))
            .args(["backup", "--method", row.method.as_str(), "--source"])
            .arg(&src);
        if let Some(dest) = &row.dest {
            cmd.arg("--dest").arg(dest);
        }
        if let Some((url, password)) = &row.repo {
            cmd.args(["--repo", url])
                .arg("--password-file")
                .arg(password);
        }
        if let Some((url, password)) = &row.offsite {
            cmd.args(["--offsite", url])
                .arg("--offsite-password-file")
                .arg(password);
        }
        let out = if row.cancel {
            cmd.stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let stderr = child.stderr.take().unwrap();
            let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
            let mut said = String::new();
            for line in lines.by_ref() {
                let line = line.unwrap();
                said.push_str(&line);
                said.push('\n');
                if line == format!("== {}", persnap::progress::Phase::Copy) {
                    break;
                }
            }
            // SAFETY: a plain kill(2) of our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            for line in lines {
                said.push_str(&line.unwrap());
                said.push('\n');
            }
            let status = child.wait().unwrap();
            (status, said)
        } else {
            let out = cmd.output().unwrap();
            (
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (status, said) = out;
        let cli_runs = History::at(cli_data.join("history")).load().unwrap();

        // The app, its Back up button's own call.
        let mut h = harness(app_with_history(&data.join("app")));
        h.state_mut().rt.helper = Some(direct_helper());
        let mut req =
            persnap::backup::BackupRequest::new(&src, row.dest.clone().unwrap_or_default());
        req.method = persnap::method::MethodChoice::Explicit(row.method);
        let place =
            |(url, password): &(String, PathBuf), staged: bool| super::jobs::IntoRepository {
                location: persnap::repository::Address::parse(url).unwrap(),
                password: Some(persnap::repository::Password::from_file(password).unwrap()),
                keep: Default::default(),
                remember: false,
                staging: Some(data.join("staging")),
                staged,
            };
        let into = row.repo.as_ref().map(|r| place(r, row.dest.is_none()));
        let offsite = row.offsite.as_ref().map(|r| place(r, false));
        let ctx = h.ctx.clone();
        super::backup_view::start_backup_into(h.state_mut(), &ctx, req, into, offsite);
        if row.cancel {
            wait_until(&mut h, "the copy step", |app| {
                app.rt
                    .activity
                    .as_ref()
                    .is_some_and(|a| a.phase == persnap::progress::Phase::Copy)
            });
            h.get_by_label("Cancel").click();
        }
        wait_until(&mut h, "the outcome", |app| app.rt.outcome.is_some());
        drop(lock);
        let failure = match &h.state().rt.outcome {
            Some(Outcome::Failed(f)) => f.clone(),
            _ => panic!("{}: the app did not fail", row.name),
        };
        let app_runs = History::at(data.join("app").join("history"))
            .load()
            .unwrap();

        // Alike.
        assert_eq!(
            status.code(),
            Some(failure.kind.exit_code()),
            "{}: the exit status is the app's kind ({:?}): {said}",
            row.name,
            failure.kind
        );
        assert!(
            said.contains(&failure.message),
            "{}: the command line says the app's words\n  app: {}\n  cli: {said}",
            row.name,
            failure.message
        );
        assert!(
            failure
                .message
                .to_lowercase()
                .contains(&row.words.to_lowercase()),
            "{}: {}",
            row.name,
            failure.message
        );
        assert_eq!(
            cli_runs.len(),
            1,
            "{}: one run recorded: {cli_runs:?}",
            row.name
        );
        assert_eq!(
            app_runs.len(),
            1,
            "{}: one run recorded: {app_runs:?}",
            row.name
        );
        assert_eq!(
            cli_runs[0].outcome, app_runs[0].outcome,
            "{}: the same recorded outcome",
            row.name
        );
        assert!(
            matches!(
                cli_runs[0].outcome,
                RunOutcome::Failed { .. } | RunOutcome::Cancelled
            ),
            "{}: {:?}",
            row.name,
            cli_runs[0].outcome
        );
        assert_eq!(
            cli_runs[0].destination, app_runs[0].destination,
            "{}",
            row.name
        );
        eprintln!("{}: {:?} — {}", row.name, failure.kind, failure.message);
    }
    // Nothing was left behind in the folders, by either.
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
    if let Some(tiny) = full {
        assert_eq!(std::fs::read_dir(&tiny).unwrap().count(), 0);
        let _ = std::process::Command::new("umount").arg(&tiny).status();
    }
}

/// The Notifications page saves through the real helper (root: the
/// secrets file is root's) and its test button pings the address saved.
#[cfg(target_os = "linux")]
#[test]
fn notifications_are_saved_and_tested_through_the_helper() {
    use std::io::{BufRead, BufReader, Write};
    if !persnap::fsutil::is_root() {
        eprintln!("SKIP notifications_are_saved_and_tested_through_the_helper: needs root");
        return;
    }
    let admin = tempfile::tempdir().unwrap();
    let registry = admin.path().join("databases");
    let schedules = fixture_schedules();
    // A ping service on loopback: the first request line of each ping.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut line = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            let _ = seen_tx.send(line);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let mut app = PersnapApp::with_settings(Settings::default(), Ok(fixture_history()));
    app.rt.overview.places = Some(Vec::new());
    app.rt.overview.skip_processes = true;
    let mut helper = direct_helper();
    helper.env = vec![
        ("PERSNAP_REGISTRY_DIR".into(), registry.clone()),
        ("PERSNAP_UNIT_DIR".into(), schedules.path().to_owned()),
    ];
    app.rt.helper = Some(helper);
    app.rt.schedules.dir = schedules.path().to_owned();
    app.rt.notifications.at = Some(admin.path().join("monitoring.json"));
    let mut h = harness(app);
    h.get_by_label("Notifications").click();
    h.run();
    let address = format!("http://127.0.0.1:{port}/ping/tok-gui-51");
    h.get_by_label("weekly-offsite").click();
    h.get_by_label("weekly-offsite").type_text(&address);
    h.run();
    h.get_by_label("Save…").click();
    h.step();
    wait_until(&mut h, "the save", |app| {
        app.rt.notifications.result().is_some()
    });
    let said = h.state().rt.notifications.result().unwrap();
    assert!(said.is_ok(), "{said:?}");
    // With a ping set, the hourly watch of missed runs is installed.
    assert!(
        said.as_ref()
            .unwrap()
            .iter()
            .any(|(good, line)| *good && line.contains("hourly watch")),
        "{said:?}"
    );
    assert!(schedules.path().join("persnap-watch.timer").is_file());
    let kept = std::fs::read_to_string(admin.path().join("monitoring.json")).unwrap();
    assert!(
        kept.contains(&format!("http://127.0.0.1:{port}")) && !kept.contains("tok-gui-51"),
        "{kept}"
    );
    let secrets = std::fs::read_to_string(admin.path().join("monitoring.secrets.json")).unwrap();
    assert!(secrets.contains("tok-gui-51"), "{secrets}");

    h.get_by_label("Send a test…").click();
    // The click taken (the save's words go), then its answer.
    h.step();
    assert!(h.state().rt.notifications.result().is_none());
    wait_until(&mut h, "the test", |app| {
        app.rt.notifications.result().is_some()
    });
    let said = h.state().rt.notifications.result().unwrap().unwrap();
    assert_eq!(
        said,
        [(
            true,
            "Ping for weekly-offsite: the service took it.".to_owned()
        )]
    );
    let line = seen
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(line.starts_with("POST /ping/tok-gui-51?rid="), "{line}");
}
