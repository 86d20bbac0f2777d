//! The real window under Xvfb, driven with xdotool like a person would:
//! protect a running correlator's database with the mouse only; and on
//! the Back up screen type the database folder and the backup location,
//! read the plan, press Ctrl+B ("Back up now"), see the result. The backup of a live database
//! on a btrfs loop volume must appear and be consistent. Screenshots go to
//! target/tmp/gui-screenshots/ (with PERSNAP_UPDATE_SCREENSHOTS=1 also to
//! assets/screenshots/, which README.md and docs/APP.md show). Needs root (loop volume),
//! Xvfb, xdotool and ImageMagick (installed by .ci/setup).
#![cfg(target_os = "linux")]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use persnap::loadgen::Mode;

/// Kills the child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tools_present() -> Result<(), String> {
    for tool in ["/usr/bin/Xvfb", "/usr/bin/xdotool", "/usr/bin/import"] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is missing (run .ci/setup)"));
        }
    }
    Ok(())
}

fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn screenshot(display: &str, window: &str, dir: &Path, name: &str) {
    let path = dir.join(name);
    let ok = Command::new("import")
        .args(["-window", window])
        .arg(&path)
        .env("DISPLAY", display)
        .status()
        .unwrap();
    assert!(ok.success(), "screenshot {name}");
    if std::env::var_os("PERSNAP_UPDATE_SCREENSHOTS").is_some() {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/screenshots");
        std::fs::create_dir_all(&assets).unwrap();
        std::fs::copy(&path, assets.join(name)).unwrap();
    }
}

/// Where the "Back up" tab is (window-relative, at 100 %).
const BACK_UP_TAB: (u32, u32) = (204, 12);
/// On the overview with one database found: its "Protect…".
const FOUND_PROTECT: (u32, u32) = (50, 207);
/// On the Protect page: "Use ~/persnap-backups", then "Protect".
const USE_SUGGESTED: (u32, u32) = (420, 241);
const PROTECT: (u32, u32) = (37, 539);
/// When it is protected: "Back up now".
const FIRST_BACKUP: (u32, u32) = (52, 168);
/// On its card, once backed up (a line says when it was last proven
/// restorable): "Backups and restore".
const CARD_BACKUPS: (u32, u32) = (185, 187);

/// Click a window-relative point.
fn click_at(display: &str, window: &str, (x, y): (u32, u32)) {
    xdotool(
        display,
        &[
            "mousemove",
            "--window",
            window,
            &x.to_string(),
            &y.to_string(),
            "click",
            "1",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
}

/// The window's pixels, to see whether it changed.
fn pixels(display: &str, window: &str) -> Vec<u8> {
    let out = Command::new("import")
        .args(["-window", window, "rgb:-"])
        .env("DISPLAY", display)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Click a point that opens another page, and wait until the window
/// shows something else. On a machine loaded by the whole test suite the
/// app may still be settling when the first click comes (a click on a
/// widget drawn for the first time in that very frame is not one yet), so
/// a click that changed nothing in 10 s is made again, up to three times.
fn click_to_open(display: &str, window: &str, at: (u32, u32)) {
    let before = pixels(display, window);
    for _ in 0..3 {
        click_at(display, window, at);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if pixels(display, window) != before {
                std::thread::sleep(Duration::from_millis(500));
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    panic!("clicking at {at:?} changed nothing on the screen");
}

/// Click a window-relative point, then type.
fn type_at(display: &str, window: &str, at: (u32, u32), text: &str) {
    click_at(display, window, at);
    xdotool(display, &["type", "--delay", "20", text]);
    std::thread::sleep(Duration::from_millis(300));
}

fn finished_backup(dest: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dest)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.join("manifest.json").is_file())
}

/// Xvfb and the app in it, with its window found and focused; both end
/// on drop.
struct Window {
    display: String,
    window: String,
    _app: Killed,
    _xvfb: Killed,
}

impl Window {
    /// The app with `home` as its home, on a display of its own
    /// (`offset` keeps two tests apart), with extra environment `env`.
    fn open(home: &Path, offset: u32, env: &[(&str, &Path)]) -> Window {
        // A display nobody holds: an X server that was killed leaves its
        // lock and socket behind, and a new one would not start there.
        let mut number = 90 + offset + std::process::id() % 100;
        while Path::new(&format!("/tmp/.X{number}-lock")).exists()
            || Path::new(&format!("/tmp/.X11-unix/X{number}")).exists()
        {
            number += 2;
        }
        let display = format!(":{number}");
        let xvfb = Killed(
            Command::new("Xvfb")
                .args([
                    &display,
                    "-noreset",
                    "-screen",
                    "0",
                    "1280x900x24",
                    "-nolisten",
                    "tcp",
                ])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{}", &display[1..]));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "Xvfb did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let runtime = home.join("run");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let mut cmd = Command::new(bin("persnap"));
        cmd.env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env("HOME", home)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("PERSNAP_DATA_DIR", home.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let app = Killed(cmd.spawn().unwrap());
        let window = xdotool(&display, &["search", "--sync", "--name", "^persnap"]);
        let window = window.lines().next().unwrap().to_owned();
        std::thread::sleep(Duration::from_secs(2));
        xdotool(&display, &["windowfocus", "--sync", &window]);
        Window {
            display,
            window,
            _app: app,
            _xvfb: xvfb,
        }
    }
}

/// A machine of its own for the app (home, registry, schedules, no
/// databases to find) and its window, on a display `offset` keeps apart.
struct Machine {
    home: tempfile::TempDir,
    registry: tempfile::TempDir,
    units: tempfile::TempDir,
    _nowhere: tempfile::TempDir,
    shots: PathBuf,
    window: Window,
}

impl Machine {
    fn new(offset: u32) -> Machine {
        let home = tempfile::tempdir().unwrap();
        // The app's history is a user's: a schedule into a repository made
        // as root is refused (its runs would open the repository as root),
        // and the history folder's owner stands for the user.
        let data = home.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
        let (registry, units, nowhere) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let window = Window::open(
            home.path(),
            offset,
            &[
                ("PERSNAP_REGISTRY_DIR", registry.path()),
                ("PERSNAP_UNIT_DIR", units.path()),
                ("PERSNAP_SEARCH_PATH", nowhere.path()),
            ],
        );
        Machine {
            home,
            registry,
            units,
            _nowhere: nowhere,
            shots,
            window,
        }
    }
}

/// Wait up to two minutes for `done`, saying `what` if it never comes.
fn wait_for(what: &str, shots: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} never came; see the screenshots in {}",
            shots.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
}

/// The way a new user goes, with the mouse only: a correlator runs on a
/// btrfs volume; the overview finds it; Protect… opens the page; one
/// click chooses the offered backup folder, one protects it (test
/// snapshot, schedule, registration); Back up now makes the first backup;
/// the card turns green; its page shows the backup.
#[test]
fn real_window_protects_a_running_correlator() {
    use std::os::unix::process::CommandExt as _;
    if !require_root("real_window_protects_a_running_correlator") {
        return;
    }
    if let Err(why) = tools_present() {
        assert!(
            std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_none(),
            "cannot run the window test: {why}"
        );
        return eprintln!("SKIP real_window_protects_a_running_correlator: {why}");
    }
    let (_vol, store) = LoopVolume::btrfs_with_subvolume(300);
    let correlator = Killed(
        Command::new(bin("persnap-loadgen"))
            .arg0("correlator")
            .arg(format!("-PstoreLocation={}", store.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the correlator's store", Path::new("."), || {
        store.join("persistence.db").exists()
    });
    let m = Machine::new(100);
    let (home, registry, units, shots) = (&m.home, &m.registry, &m.units, &m.shots);
    let (d, win) = (m.window.display.as_str(), m.window.window.as_str());
    // It opens on the overview: nothing protected yet, the correlator found.
    screenshot(d, win, shots, "0-overview.png");
    click_to_open(d, win, FOUND_PROTECT);
    screenshot(d, win, shots, "4-protect.png");
    click_to_open(d, win, USE_SUGGESTED);
    click_at(d, win, PROTECT);
    let entry = registry.path().join("apama.json");
    wait_for("the registration", shots, || entry.is_file());
    assert!(units.path().join("persnap-backup-apama.timer").is_file());
    screenshot(d, win, shots, "5-protected.png");
    click_at(d, win, FIRST_BACKUP);
    let backups = home.path().join("persnap-backups");
    wait_for("the first backup", shots, || {
        finished_backup(&backups).is_some()
    });
    std::thread::sleep(Duration::from_secs(1));
    screenshot(d, win, shots, "6-overview-protected.png");
    check_backup(&finished_backup(&backups).unwrap(), "persistence.db");
    click_to_open(d, win, CARD_BACKUPS);
    // Its page draws its chart on the next frames (slower on a busy machine).
    std::thread::sleep(Duration::from_secs(2));
    screenshot(d, win, shots, "7-database.png");
    let registered: persnap::registry::Database =
        serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    assert_eq!(registered.schedule.as_deref(), Some("apama"));
    assert_eq!(registered.retention.keep_days, Some(14));
    drop(correlator);
}

#[test]
fn real_window_backs_up_a_live_database() {
    if !require_root("real_window_backs_up_a_live_database") {
        return;
    }
    if let Err(why) = tools_present() {
        assert!(
            std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_none(),
            "cannot run the window test: {why}"
        );
        return eprintln!("SKIP real_window_backs_up_a_live_database: {why}");
    }
    let (_vol, store_dir) = LoopVolume::btrfs_with_subvolume(300);
    let db = make_store(&store_dir, "persistence.db", Mode::Rollback, 8);
    let writer = Writer::start(&db);
    let dest = tempfile::Builder::new()
        .prefix("persnap-window-dest-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let shown = Window::open(home.path(), 0, &[]);
    let (display, window) = (shown.display.clone(), shown.window.clone());
    click_to_open(&display, &window, BACK_UP_TAB);
    screenshot(&display, &window, &shots, "1-start.png");

    type_at(&display, &window, (330, 44), store_dir.to_str().unwrap());
    type_at(&display, &window, (330, 128), dest.path().to_str().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    screenshot(&display, &window, &shots, "2-plan.png");

    xdotool(&display, &["key", "ctrl+b"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let backup = loop {
        if let Some(b) = finished_backup(dest.path()) {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "no backup appeared; see the screenshots in {}",
            shots.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(2));
    screenshot(&display, &window, &shots, "3-done.png");
    writer.stop();
    check_backup(&backup, "persistence.db");
    let runs = persnap::history::History::at(home.path().join("data"))
        .load()
        .unwrap();
    assert_eq!(runs.last().map(|r| r.outcome.label()), Some("completed"));
    eprintln!(
        "window test: backup {} verified; screenshots in {}",
        backup.display(),
        shots.display()
    );
}

/// On the restore page (at 100 %): the repository's address, its
/// password, Connect; and once the plan is shown, "Restore and protect".
const RESTORE_FROM_OVERVIEW: (u32, u32) = (120, 86);
const REPOSITORY_FIELD: (u32, u32) = (320, 134);
const PASSWORD_FIELD: (u32, u32) = (200, 163);
const CONNECT: (u32, u32) = (40, 186);
const RESTORE_AND_PROTECT: (u32, u32) = (74, 636);

/// A database lost with its machine, got back the way a new administrator
/// would: a fresh machine (its own home, registry and schedules), the
/// Overview's "Restore a database from a backup…", the repository's
/// address and password typed, Connect, "Restore and protect": the
/// database is back where it was, consistent, and protected with the
/// same repository. The README's restore screenshots come from here.
#[test]
fn real_window_restores_a_lost_machines_database() {
    if !require_root("real_window_restores_a_lost_machines_database") {
        return;
    }
    if let Err(why) = tools_present() {
        assert!(
            std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_none(),
            "cannot run the window test: {why}"
        );
        return eprintln!("SKIP real_window_restores_a_lost_machines_database: {why}");
    }
    // The old machine: a database backed up into a repository, then gone.
    let old = tempfile::Builder::new()
        .prefix("persnap-window-old-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let store = old.path().join("apama").join("store");
    std::fs::create_dir_all(&store).unwrap();
    let db = make_store(&store, "persistence.db", Mode::Wal, 4);
    let writer = Writer::start(&db);
    std::thread::sleep(Duration::from_millis(500));
    writer.stop();
    let repo = old.path().join("repo");
    let password = old.path().join("password");
    std::fs::write(&password, "ledger secret\n").unwrap();
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
        let out = Command::new(bin("persnap"))
            .args(&args)
            .arg("--repo")
            .arg(&repo)
            .arg("--password-file")
            .arg(&password)
            .env("PERSNAP_DATA_DIR", old.path().join("history"))
            .env("PERSNAP_STAGING_DIR", old.path().join("staging"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let expected = check_backup(&store, "persistence.db");
    std::fs::rename(old.path().join("apama"), old.path().join("gone")).unwrap();

    // The new machine.
    let m = Machine::new(200);
    let (registry, units, shots) = (&m.registry, &m.units, &m.shots);
    let (d, win) = (m.window.display.as_str(), m.window.window.as_str());
    click_to_open(d, win, RESTORE_FROM_OVERVIEW);
    type_at(d, win, REPOSITORY_FIELD, repo.to_str().unwrap());
    type_at(d, win, PASSWORD_FIELD, "ledger secret");
    click_to_open(d, win, CONNECT);
    // Connected, the backup's manifest read, the plan said.
    std::thread::sleep(Duration::from_secs(4));
    screenshot(d, win, shots, "8-restore.png");
    click_at(d, win, RESTORE_AND_PROTECT);
    let entry = registry.path().join("store.json");
    wait_for("the restore and protection", shots, || entry.is_file());
    std::thread::sleep(Duration::from_secs(1));
    screenshot(d, win, shots, "9-restored.png");
    assert_eq!(check_backup(&store, "persistence.db"), expected);
    let registered: persnap::registry::Database =
        serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    assert_eq!(registered.folder, store);
    assert_eq!(
        registered.repository.map(|r| r.location),
        Some(repo.to_str().unwrap().to_owned())
    );
    assert!(units.path().join("persnap-backup-store.timer").is_file());
}
