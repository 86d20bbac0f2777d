//! Windows notifications of failed scheduled runs, with the real persnap.exe
//! under wine: `persnap schedule toast` puts a balloon (a toast on Windows 10
//! and later) into the notification area and removes it again. Starting it
//! in another user's session needs SYSTEM and a real Windows; not here.
#![cfg(windows)]

use std::path::PathBuf;
use std::process::Command;

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
