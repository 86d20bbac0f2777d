use std::path::{Path, PathBuf};

use super::validate::*;
use super::*;
use crate::error::{Error, ErrorKind};
use crate::volume;

#[test]
fn monitoring_settings_and_their_tests_are_the_administrators() {
    let registry = crate::registry::Registry::at(std::env::temp_dir().join("persnap-no-registry"));
    for request in [
        Request::MonitoringSet {
            update: Default::default(),
        },
        Request::MonitoringTest {},
    ] {
        assert_eq!(request.needs(&registry), Authority::Admin);
        let mut validated = validate(request).unwrap();
        let refused = validated
            .authorize(Authority::Backup, &registry)
            .unwrap_err();
        assert!(
            matches!(refused, Error::NeedsAdminLevel { .. }),
            "{refused}"
        );
        assert!(validated.authorize(Authority::Admin, &registry).is_ok());
    }
    // A secret in the request is never in its Debug form (logs).
    let request = Request::MonitoringSet {
        update: crate::monitor::settings::Update {
            mail_password: crate::monitor::settings::Change::Set(crate::schedule::Secret(
                "pw-in-debug".into(),
            )),
            ..Default::default()
        },
    };
    assert!(!format!("{request:?}").contains("pw-in-debug"));
}

#[test]
fn a_call_gets_its_own_answer_or_a_plain_protocol_failure() {
    use answer::{Cleaned, Unscheduled, answer};
    let removed = || {
        Ok(Reply::ScheduleRemoved {
            name: "nightly".into(),
            existed: true,
        })
    };
    let got: Unscheduled = answer(removed()).unwrap();
    assert_eq!((got.name.as_str(), got.existed), ("nightly", true));
    // Another kind is the helper's mistake, never taken for this one.
    let wrong = answer::<Cleaned>(removed()).unwrap_err();
    assert_eq!(wrong.kind, ErrorKind::Protocol);
    assert!(
        wrong.message.contains("unexpected result"),
        "{}",
        wrong.message
    );
    // The helper's own failure passes through as it was.
    let failed = RemoteFailure::elevation("dismissed");
    let passed = answer::<Cleaned>(Err(failed)).unwrap_err();
    assert_eq!(
        (passed.kind, passed.message.as_str()),
        (ErrorKind::Elevation, "dismissed")
    );
}
use std::io::Cursor;

#[test]
fn frames_round_trip_with_version() {
    let mut buf = Vec::new();
    write_frame(&mut buf, &Control::Cancel).unwrap();
    assert_eq!(buf, b"{\"version\":2,\"type\":\"cancel\"}\n");
    assert_eq!(
        read_frame::<Control>(&mut Cursor::new(buf)).unwrap(),
        Control::Cancel
    );
}

#[test]
fn refuses_wrong_version_bad_json_and_oversized_frames() {
    let wrong = br#"{"version":1,"type":"cancel"}"#;
    assert_eq!(
        parse_frame::<Control>(wrong).unwrap_err(),
        FrameError::Version { got: 1 }
    );
    assert!(
        FrameError::Version { got: 1 }
            .to_string()
            .contains("same persnap version")
    );
    assert!(matches!(
        parse_frame::<Control>(b"{nope"),
        Err(FrameError::BadJson(_))
    ));
    assert!(matches!(
        parse_frame::<Control>(br#"{"type":"cancel"}"#),
        Err(FrameError::BadJson(_))
    ));
    let huge = vec![b' '; MAX_FRAME + 10];
    assert_eq!(
        read_line(&mut Cursor::new(huge)).unwrap_err(),
        FrameError::TooLarge
    );
    assert_eq!(
        read_line(&mut Cursor::new(Vec::new())).unwrap_err(),
        FrameError::Eof
    );
}

#[test]
fn unknown_methods_and_fields_are_refused() {
    let bad_method = br#"{"version":2,"type":"cleanup","extra":1}"#;
    assert!(matches!(
        parse_frame::<Request>(bad_method),
        Err(FrameError::BadJson(_))
    ));
    let line = br#"{"version":2,"type":"backup","source":"/a","dest":"/b","store_name":"x","method":"copy-live","options":{"online_timeout_secs":1,"snapshot_size":null}}"#;
    let err = parse_frame::<Request>(line).unwrap_err();
    assert!(err.to_string().contains("copy-live"), "{err}");
}

#[test]
fn backup_speed_is_gentle_when_not_said_and_only_a_known_one() {
    let options = |pace: &str| {
        serde_json::from_str::<BackupOptions>(&format!(
            r#"{{"online_timeout_secs":1,"snapshot_size":null{pace}}}"#
        ))
    };
    assert_eq!(options("").unwrap().pace, crate::pace::Pace::Gentle);
    assert_eq!(
        options(r#","pace":"fast""#).unwrap().pace,
        crate::pace::Pace::Fast
    );
    assert_eq!(
        options(r#","pace":"40%""#).unwrap().pace,
        crate::pace::Pace::Share(40)
    );
    for bad in [r#","pace":"slow""#, r#","pace":"1%""#, r#","pace":7"#] {
        assert!(options(bad).is_err(), "{bad}");
    }
    // Shares below a fifth are for the benchmark, not for requests.
    let with = |pace| BackupOptions {
        pace,
        ..Default::default()
    };
    assert!(check_options(&with(crate::pace::Pace::Share(10))).is_err());
    // A staged set's pieces: a repository's chunk sizes only.
    let staged = |piece_size| BackupOptions {
        staged: Some(crate::backup::Staged { piece_size }),
        ..Default::default()
    };
    for fine in [None, Some(512), Some(8192), Some(64 << 20)] {
        assert!(check_options(&staged(fine)).is_ok(), "{fine:?}");
    }
    for bad in [Some(0), Some(1), Some(511), Some((64 << 20) + 1)] {
        assert!(check_options(&staged(bad)).is_err(), "{bad:?}");
    }
    assert!(check_options(&with(crate::pace::Pace::Share(40))).is_ok());
    assert!(check_options(&with(crate::pace::Pace::Gentle)).is_ok());
    let mut req = crate::backup::BackupRequest::new("/a", "/b");
    req.pace = crate::pace::Pace::Fast;
    assert_eq!(
        BackupOptions::from_request(&req).pace,
        crate::pace::Pace::Fast
    );
}

#[cfg(unix)]
#[test]
fn paths_must_be_absolute_canonical_and_bounded() {
    let refused = |p: &Path| {
        check_path("source", p, volume::canonical)
            .unwrap_err()
            .to_string()
    };
    assert!(refused(Path::new("relative/db")).contains("not an absolute path"));
    assert!(refused(Path::new("/tmp/../etc")).contains(".."));
    assert!(refused(&PathBuf::from(format!("/{}", "a".repeat(MAX_PATH)))).contains("longer"));
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::canonicalize(dir.path()).unwrap();
    check_path("source", &real, volume::canonical).unwrap();
    let link = real.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert!(refused(&link).contains("not canonical"));
}

#[cfg(windows)]
#[test]
fn windows_paths_must_be_absolute_canonical_and_bounded() {
    let refused = |p: &Path| {
        check_path("source", p, volume::canonical)
            .unwrap_err()
            .to_string()
    };
    assert!(refused(Path::new(r"relative\db")).contains("not an absolute path"));
    assert!(
        refused(Path::new(r"\no-drive\db")).contains("not an absolute path")
            || refused(Path::new(r"\no-drive\db")).contains("not canonical")
    );
    assert!(refused(Path::new(r"C:\Windows\..\Users")).contains(".."));
    assert!(refused(&PathBuf::from(format!(r"C:\{}", "a".repeat(MAX_PATH)))).contains("longer"));
    let dir = tempfile::tempdir().unwrap();
    let real = volume::canonical(dir.path()).unwrap();
    check_path("source", &real, volume::canonical).unwrap();
    // canonicalize's verbatim spelling of the same folder is not the
    // canonical form persnap uses (C:\...), so it is refused.
    let verbatim = std::fs::canonicalize(dir.path()).unwrap();
    assert!(
        refused(&verbatim).contains("not canonical"),
        "{}",
        verbatim.display()
    );
}
