//! The real window under Xvfb, driven with xdotool like a person would:
//! type the database folder and the backup location, read the plan, press
//! Ctrl+B ("Back up now"), see the result. The backup of a live database
//! on a btrfs loop volume must appear and be consistent. Screenshots go to
//! target/tmp/gui-screenshots/ (with PERSNAP_UPDATE_SCREENSHOTS=1 also to
//! assets/screenshots/, which README.md shows). Needs root (loop volume),
//! Xvfb, xdotool and ImageMagick (installed by .ci/setup).
#![cfg(target_os = "linux")]

mod common;

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

    let display = format!(":{}", 90 + std::process::id() % 100);
    let _xvfb = Killed(
        Command::new("Xvfb")
            .args([&display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"])
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
    let runtime = home.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let _app = Killed(
        Command::new(bin("persnap"))
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("PERSNAP_DATA_DIR", home.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let window = xdotool(&display, &["search", "--sync", "--name", "^persnap"]);
    let window = window.lines().next().unwrap().to_owned();
    std::thread::sleep(Duration::from_secs(2));
    xdotool(&display, &["windowfocus", "--sync", &window]);
    // It opens on the overview: nothing protected yet, what was found.
    screenshot(&display, &window, &shots, "0-overview.png");
    click_at(&display, &window, BACK_UP_TAB);
    screenshot(&display, &window, &shots, "1-start.png");

    type_at(&display, &window, (330, 44), store_dir.to_str().unwrap());
    type_at(&display, &window, (330, 100), dest.path().to_str().unwrap());
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
