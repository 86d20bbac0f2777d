//! Every bad input gets a specific message, the documented exit code, and
//! leaves nothing behind. These run without root (one needs a second user
//! and runs only as root).
#![cfg(target_os = "linux")]

use crate::common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;
use persnap::loadgen::Mode;

struct Case {
    data: tempfile::TempDir,
    src: tempfile::TempDir,
    dest: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            data: tempfile::tempdir().unwrap(),
            src: tempfile::tempdir().unwrap(),
            dest: tempfile::tempdir().unwrap(),
        }
    }

    fn with_store() -> Case {
        let case = Case::new();
        make_store(case.src.path(), "persistence.db", Mode::Rollback, 1);
        case
    }

    /// Run `persnap backup` with the case's folders plus `extra` args;
    /// returns exit code and stderr. Nothing may be left in the destination.
    fn backup(&self, src: &Path, dest: &Path, extra: &[&str]) -> (i32, String) {
        let mut args = vec![
            "backup",
            "--source",
            src.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = persnap(self.data.path(), &args);
        assert!(out.stdout.is_empty(), "nothing on stdout for a failure");
        if dest.is_dir() {
            assert!(
                work_leftovers(dest).is_empty(),
                "left work behind in {}",
                dest.display()
            );
        }
        (out.status.code().unwrap(), stderr(&out))
    }
}

fn expect(result: (i32, String), code: i32, needles: &[&str]) {
    let (got, err) = result;
    assert_eq!(got, code, "exit code for: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} missing in: {err}");
    }
}

#[test]
fn missing_folder() {
    let c = Case::new();
    let gone = c.src.path().join("nope");
    expect(
        c.backup(&gone, c.dest.path(), &[]),
        2,
        &["does not exist", "-PstoreLocation"],
    );
}

#[test]
fn folder_is_a_file() {
    let c = Case::with_store();
    let file = c.src.path().join("persistence.db");
    expect(
        c.backup(&file, c.dest.path(), &[]),
        2,
        &["is not a folder", "not a file inside it"],
    );
}

#[test]
fn no_store_file_lists_what_is_there() {
    let c = Case::new();
    std::fs::write(c.src.path().join("other.db"), b"x").unwrap();
    std::fs::write(c.src.path().join("notes.txt"), b"x").unwrap();
    expect(
        c.backup(c.src.path(), c.dest.path(), &[]),
        2,
        &[
            "No database file named persistence.db",
            "notes.txt, other.db",
            "--store-name",
        ],
    );
}

#[test]
fn empty_folder_says_so() {
    let c = Case::new();
    expect(
        c.backup(c.src.path(), c.dest.path(), &[]),
        2,
        &["The folder is empty"],
    );
}

#[test]
fn not_sqlite() {
    let c = Case::new();
    std::fs::write(c.src.path().join("persistence.db"), vec![b'z'; 4096]).unwrap();
    expect(
        c.backup(c.src.path(), c.dest.path(), &[]),
        2,
        &["is not an SQLite database", "signature"],
    );
    std::fs::write(c.src.path().join("persistence.db"), b"").unwrap();
    expect(
        c.backup(c.src.path(), c.dest.path(), &[]),
        2,
        &["is not an SQLite database", "empty"],
    );
}

#[test]
fn symlinked_store_file() {
    let c = Case::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let real = make_store(elsewhere.path(), "real.db", Mode::Rollback, 1);
    symlink(&real, c.src.path().join("persistence.db")).unwrap();
    expect(
        c.backup(c.src.path(), c.dest.path(), &[]),
        2,
        &["is a symbolic link", "not a regular file"],
    );
}

#[test]
fn symlinked_or_special_companion_file() {
    let c = Case::with_store();
    symlink("/etc/passwd", c.src.path().join("persistence.db-journal")).unwrap();
    expect(
        c.backup(c.src.path(), c.dest.path(), &[]),
        2,
        &["persistence.db-journal is a symbolic link"],
    );
    std::fs::remove_file(c.src.path().join("persistence.db-journal")).unwrap();
    std::fs::create_dir(c.src.path().join("persistence.db-wal")).unwrap();
    expect(
        c.backup(c.src.path(), c.dest.path(), &[]),
        2,
        &["persistence.db-wal is a folder"],
    );
}

#[test]
fn bad_store_names() {
    let c = Case::with_store();
    for (name, why) in [
        ("../persistence.db", "path separator"),
        ("", "empty"),
        ("..", "names a folder"),
    ] {
        expect(
            c.backup(c.src.path(), c.dest.path(), &["--store-name", name]),
            2,
            &["is not valid", why],
        );
    }
}

#[test]
fn destination_problems() {
    let c = Case::with_store();
    let missing = c.dest.path().join("missing");
    expect(
        c.backup(c.src.path(), &missing, &[]),
        2,
        &["is not there", "plugged in or mounted", "create the folder"],
    );
    let file = c.dest.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    expect(c.backup(c.src.path(), &file, &[]), 2, &["is not a folder"]);
    let inside = c.src.path().join("backups");
    std::fs::create_dir(&inside).unwrap();
    expect(
        c.backup(c.src.path(), &inside, &[]),
        2,
        &["is inside the database folder"],
    );
    expect(
        c.backup(c.src.path(), c.src.path().parent().unwrap(), &[]),
        2,
        &["is inside the backup location"],
    );
}

#[test]
fn unknown_and_unavailable_methods() {
    let c = Case::with_store();
    let (code, err) = c.backup(c.src.path(), c.dest.path(), &["--method", "copy"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown method \"copy\""), "{err}");
    expect(
        c.backup(c.src.path(), c.dest.path(), &["--method", "vss"]),
        2,
        &["does not apply"],
    );
}

#[test]
fn auto_on_a_folder_without_snapshots_refuses_and_offers_alternatives() {
    let c = Case::with_store();
    let info = persnap::volume::probe(c.src.path()).unwrap();
    if info.snapshot.method().is_some() {
        eprintln!(
            "SKIP: the temp folder's filesystem supports snapshots here; the ext4 loop test covers this"
        );
        return;
    }
    expect(
        c.backup(c.src.path(), c.dest.path(), &[]),
        3,
        &[
            "No snapshot is possible",
            "--method sqlite-online",
            "never copies live",
        ],
    );
    let runs = persnap::history::History::at(c.data.path()).load().unwrap();
    assert_eq!(
        runs.last().unwrap().outcome.label(),
        "failed",
        "failed attempts are recorded too"
    );
}

#[test]
fn unwritable_destination() {
    let c = Case::with_store();
    let dest = c.dest.path();
    std::fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    if persnap::fsutil::is_root() {
        // Root ignores permissions: use a read-only mount of the folder instead.
        eprintln!("as root: checked through a read-only bind mount");
        let ro = tempfile::tempdir().unwrap();
        let ok = |cmd: &mut std::process::Command| run_ok(cmd);
        ok(std::process::Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(dest)
            .arg(ro.path()));
        let result = c.backup(c.src.path(), ro.path(), &["--method", "sqlite-online"]);
        ok(std::process::Command::new("umount").arg(ro.path()));
        expect(
            result,
            2,
            &["Cannot write to the backup location", "Read-only"],
        );
    } else {
        expect(
            c.backup(c.src.path(), dest, &["--method", "sqlite-online"]),
            2,
            &["Cannot write to the backup location", "Permission denied"],
        );
    }
    std::fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn probe_reports_files_and_method() {
    let c = Case::with_store();
    std::fs::write(c.src.path().join("persistence.db-journal"), b"").unwrap();
    let out = persnap(
        c.data.path(),
        &[
            "probe",
            "--source",
            c.src.path().to_str().unwrap(),
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["store"]["files"][1]["name"], "persistence.db-journal");
    assert_eq!(v["store"]["header"]["page_size"], 4096);
    assert!(v["volume"]["mount"]["fs_type"].is_string());
    assert!(v["volume"]["snapshot"]["status"].is_string());
}

#[test]
fn verify_rejects_a_folder_that_is_not_a_backup() {
    let c = Case::with_store();
    let out = persnap(c.data.path(), &["verify", c.src.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a persnap backup"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unreadable_folder() {
    let c = Case::with_store();
    std::fs::set_permissions(
        c.src.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin("persnap"));
    // sqlite-online runs as the user (snapshot methods would ask the helper,
    // which reads as root).
    let (src, dest) = (
        c.src.path().to_str().unwrap(),
        c.dest.path().to_str().unwrap(),
    );
    cmd.args([
        "backup",
        "--source",
        src,
        "--dest",
        dest,
        "--method",
        "sqlite-online",
    ]);
    if persnap::fsutil::is_root() {
        // Root reads everything: ask as an unprivileged user instead.
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(
            c.data.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        cmd.uid(65534)
            .gid(65534)
            .env("XDG_RUNTIME_DIR", c.data.path());
    } else {
        std::fs::set_permissions(
            c.src.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
    }
    let out = cmd
        .env("PERSNAP_DATA_DIR", c.data.path().join("h"))
        .output()
        .unwrap();
    std::fs::set_permissions(
        c.src.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot be read")
            && err.contains("Permission denied")
            && err.contains("administrator"),
        "{err}"
    );
}
