//! Protecting a database in one administrator step (root: through the
//! helper, as the app's "Protect a database" does it): a test snapshot on
//! a real btrfs volume, the schedule installed, the database registered
//! with its location and retention — and when any step fails, nothing is
//! left installed or registered, and nothing that was there is replaced.
#![cfg(target_os = "linux")]

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use persnap::loadgen::Mode;
use persnap::protocol::{self, BackupOptions, Event, Reply, Request};
use persnap::registry::Registry;

struct Place {
    registry: tempfile::TempDir,
    units: tempfile::TempDir,
    history: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        Place {
            registry: tempfile::tempdir().unwrap(),
            units: tempfile::tempdir().unwrap(),
            history: tempfile::tempdir().unwrap(),
        }
    }

    fn registry(&self) -> Registry {
        Registry::at(self.registry.path().join("databases"))
    }

    fn units(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.units.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Send `request` to the helper, started as root at `level`; its exit
    /// code and its last event.
    fn call(&self, level: &str, request: &Request) -> (Option<i32>, Event) {
        let mut frame = Vec::new();
        protocol::write_frame(&mut frame, request).unwrap();
        let mut cmd = Command::new(bin("persnap-helper"));
        cmd.env("PERSNAP_REGISTRY_DIR", self.registry().dir())
            .env("PERSNAP_UNIT_DIR", self.units.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if level == "backup" {
            // As pkexec starts it for an operator.
            cmd.arg("backup").env("PKEXEC_UID", "0");
        }
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&frame).unwrap();
        let out = child.wait_with_output().unwrap();
        let mut reader = std::io::BufReader::new(&out.stdout[..]);
        let mut last = None;
        while let Ok(event) = protocol::read_frame::<Event>(&mut reader) {
            last = Some(event);
        }
        (out.status.code(), last.expect("the helper answered"))
    }

    fn protect(&self, name: &str, source: &Path, dest: &Path, method: &str) -> Request {
        Request::Protect {
            name: name.into(),
            source: source.to_owned(),
            store_name: "persistence.db".into(),
            location: dest.to_owned(),
            method: method.parse().unwrap(),
            options: BackupOptions {
                keep_days: Some(14),
                ..BackupOptions::default()
            },
            when: Some("daily 02:00".into()),
            history_dir: Some(self.history.path().to_owned()),
            run_as: None,
            test_snapshot: true,
            replace: false,
            repository: None,
            offsite: None,
        }
    }
}

fn refusal(event: Event) -> String {
    match event {
        Event::Error { message, .. } => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_database_is_protected_in_one_step_or_not_at_all() {
    if !require_root("a_database_is_protected_in_one_step_or_not_at_all") {
        return;
    }
    let (vol, store) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store, "persistence.db", Mode::Wal, 2);
    let writer = Writer::start(&store.join("persistence.db"));
    let dest = Destination::new();
    let place = Place::new();

    // An operator's level cannot protect anything.
    let request = place.protect("orders", &store, &dest.backups, "auto");
    let (code, event) = place.call("backup", &request);
    assert_eq!(code, Some(8), "refused as needing the administrator");
    let message = refusal(event);
    assert!(message.contains("administrator"), "{message}");
    assert!(place.registry().list().unwrap().is_empty());
    assert!(place.units().is_empty());

    // A test snapshot that cannot be taken (btrfs asked for, on a folder
    // of the root disk): nothing registered, no schedule installed.
    let plain = tempfile::tempdir().unwrap();
    make_store(plain.path(), "persistence.db", Mode::Wal, 1);
    let (code, event) = place.call(
        "admin",
        &place.protect("plain", plain.path(), &dest.backups, "btrfs"),
    );
    assert_ne!(code, Some(0));
    let message = refusal(event);
    assert!(message.contains("btrfs"), "{message}");
    assert!(place.registry().list().unwrap().is_empty());
    assert!(place.units().is_empty(), "{:?}", place.units());

    // The whole way, while the correlator writes.
    let (code, event) = place.call("admin", &request);
    let Event::Done { result } = event else {
        panic!("expected Protected, got {event:?} ({code:?})");
    };
    let Reply::Protected {
        database,
        probe,
        schedule,
        installed,
    } = *result
    else {
        panic!("expected Protected, got {result:?}");
    };
    assert_eq!(code, Some(0));
    let probe = probe.expect("a test snapshot was taken");
    assert_eq!(
        probe.method.map(|m| m.to_string()).as_deref(),
        Some("btrfs"),
        "{probe:?}"
    );
    assert!(vol.snapshot_leftovers().is_empty(), "the snapshot is gone");
    let schedule = schedule.expect("a schedule");
    assert_eq!(schedule.name, "orders");
    assert_eq!(schedule.when.describe(), "every day at 02:00");
    assert_eq!(schedule.retention.keep_days, Some(14));
    assert!(installed.is_some());
    assert_eq!(
        place.units(),
        [
            "persnap-backup-orders.service",
            "persnap-backup-orders.timer"
        ]
    );
    let registered = place.registry().list().unwrap();
    assert_eq!(registered, std::slice::from_ref(&database));
    let canonical_dest = persnap::backup::canonical_dest(&dest.backups).unwrap();
    assert_eq!(database.location.as_deref(), Some(canonical_dest.as_path()));
    assert_eq!(database.schedule.as_deref(), Some("orders"));
    assert_eq!(database.retention.keep_days, Some(14));

    // Again: it is protected already; the entry and schedule stay as
    // they were.
    let unit = |p: &Place| {
        std::fs::read_to_string(p.units.path().join("persnap-backup-orders.timer")).unwrap()
    };
    let timer = unit(&place);
    let mut again = place.protect("orders-2", &store, &dest.backups, "auto");
    if let Request::Protect { when, .. } = &mut again {
        *when = Some("hourly".into());
    }
    let message = refusal(place.call("admin", &again).1);
    assert!(
        message.contains("protected already, as orders"),
        "{message}"
    );
    assert_eq!(
        place.registry().list().unwrap(),
        std::slice::from_ref(&database)
    );
    assert_eq!(unit(&place), timer);

    // Another database under a taken name, or under the name of a schedule
    // made on its own: refused, the schedule left alone.
    let other = tempfile::tempdir().unwrap();
    make_store(other.path(), "persistence.db", Mode::Wal, 1);
    let message = refusal(
        place
            .call(
                "admin",
                &place.protect("orders", other.path(), &dest.backups, "auto"),
            )
            .1,
    );
    assert!(
        message.contains("another database is protected as orders"),
        "{message}"
    );
    place.registry().remove("orders").unwrap();
    let mut taken = place.protect("orders", other.path(), &dest.backups, "sqlite-online");
    if let Request::Protect { test_snapshot, .. } = &mut taken {
        *test_snapshot = false;
    }
    let message = refusal(place.call("admin", &taken).1);
    assert!(
        message.contains("a schedule named orders exists already"),
        "{message}"
    );
    assert_eq!(unit(&place), timer);
    assert!(place.registry().list().unwrap().is_empty());

    let stats = writer.stop();
    assert!(stats.transactions > 20, "the correlator kept writing");
}

#[test]
fn the_command_line_protects_in_the_same_one_step() {
    if !require_root("the_command_line_protects_in_the_same_one_step") {
        return;
    }
    let (_vol, store) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store, "persistence.db", Mode::Wal, 1);
    let plain = tempfile::tempdir().unwrap();
    make_store(plain.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let place = Place::new();
    let data = tempfile::tempdir().unwrap();
    let add = |name: &str, source: &Path| {
        Command::new(bin("persnap"))
            .args(["database", "add", name, "--source"])
            .arg(source)
            .arg("--dest")
            .arg(&dest.backups)
            .args(["--at", "Mon..Fri 22:00", "--keep-days", "30"])
            .env("PERSNAP_REGISTRY_DIR", place.registry().dir())
            .env("PERSNAP_UNIT_DIR", place.units.path())
            .env("PERSNAP_DATA_DIR", data.path())
            .output()
            .unwrap()
    };
    // No snapshot on the root disk: refused with the reason and what to
    // do, nothing changed.
    let out = add("plain", plain.path());
    assert_eq!(out.status.code(), Some(3), "a snapshot failure");
    let said = stderr(&out);
    assert!(
        said.contains("The test snapshot did not work, so nothing was changed"),
        "{said}"
    );
    assert!(said.contains("--method sqlite-online"), "{said}");
    assert!(
        !said.contains("backup failed"),
        "nothing was backed up: {said}"
    );
    assert!(place.registry().list().unwrap().is_empty());
    assert!(place.units().is_empty());

    let out = add("orders", &store);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("Scheduled Mon, Tue, Wed, Thu, Fri at 22:00"),
        "{said}"
    );
    let db = place.registry().get("orders").unwrap().unwrap();
    assert_eq!(db.schedule.as_deref(), Some("orders"));
    assert_eq!(db.retention.keep_days, Some(30));
    assert_eq!(place.units().len(), 2);

    // Changing how it is protected: its own schedule is replaced; another
    // database cannot take its name; a database not protected cannot be
    // changed.
    let change = |name: &str, source: &Path, at: Option<&str>| {
        let mut cmd = Command::new(bin("persnap"));
        cmd.args(["database", "add", name, "--change", "--source"])
            .arg(source)
            .arg("--dest")
            .arg(&dest.backups)
            .args(["--keep-days", "7"])
            .env("PERSNAP_REGISTRY_DIR", place.registry().dir())
            .env("PERSNAP_UNIT_DIR", place.units.path())
            .env("PERSNAP_DATA_DIR", data.path());
        if let Some(at) = at {
            cmd.args(["--at", at]);
        }
        cmd.output().unwrap()
    };
    let timer =
        || std::fs::read_to_string(place.units.path().join("persnap-backup-orders.timer")).unwrap();
    let out = change("orders", &store, Some("hourly"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(timer().contains("OnCalendar=hourly"), "{}", timer());
    assert_eq!(
        place
            .registry()
            .get("orders")
            .unwrap()
            .unwrap()
            .retention
            .keep_days,
        Some(7)
    );
    let out = change("orders", plain.path(), Some("daily"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("orders protects another database"),
        "{}",
        stderr(&out)
    );
    assert!(timer().contains("OnCalendar=hourly"), "unchanged");
    let out = change("audit", &store, None);
    assert!(
        stderr(&out).contains("no database is protected as audit"),
        "{}",
        stderr(&out)
    );
    // No schedule any more: its schedule goes.
    let out = change("orders", &store, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(place.units().is_empty(), "{:?}", place.units());
    assert_eq!(
        place.registry().get("orders").unwrap().unwrap().schedule,
        None
    );
    let out = change("orders", &store, Some("Mon..Fri 22:00"));
    assert!(out.status.success(), "{}", stderr(&out));

    // Stopping protection takes its schedule with it; its backups stay.
    let out = Command::new(bin("persnap"))
        .args(["database", "remove", "orders"])
        .env("PERSNAP_REGISTRY_DIR", place.registry().dir())
        .env("PERSNAP_UNIT_DIR", place.units.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its schedule orders is removed"),
        "{}",
        stderr(&out)
    );
    assert!(place.registry().list().unwrap().is_empty());
    assert!(place.units().is_empty(), "{:?}", place.units());
}

/// What an independent review found, each a test: a schedule that fails to
/// install leaves no entry (and nothing installed); stopping protection
/// removes only the database's own schedule, not one that has since come
/// to back up something else under its name; an old-style registration
/// cannot take a name that is taken.
#[test]
fn a_failed_step_or_a_stale_name_changes_nothing_else() {
    if !require_root("a_failed_step_or_a_stale_name_changes_nothing_else") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let other = tempfile::tempdir().unwrap();
    make_store(other.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let place = Place::new();
    let mut request = place.protect("orders", store.path(), &dest.backups, "sqlite-online");
    if let Request::Protect {
        when,
        test_snapshot,
        ..
    } = &mut request
    {
        // systemd refuses this when the schedule is installed.
        *when = Some("Mon..Fry 25:61".into());
        *test_snapshot = false;
    }
    let (code, event) = place.call("admin", &request);
    assert_ne!(code, Some(0));
    let message = refusal(event);
    assert!(!message.is_empty());
    assert!(
        place.registry().list().unwrap().is_empty(),
        "the entry went again"
    );
    assert!(place.units().is_empty(), "{:?}", place.units());

    // Protected with its schedule; then a schedule of the same name is made
    // on its own for another folder.
    let mut good = place.protect("orders", store.path(), &dest.backups, "sqlite-online");
    if let Request::Protect { test_snapshot, .. } = &mut good {
        *test_snapshot = false;
    }
    let (code, event) = place.call("admin", &good);
    assert_eq!(code, Some(0), "{event:?}");
    let elsewhere = Request::ScheduleAdd {
        name: "orders".into(),
        source: persnap::volume::canonical(other.path()).unwrap(),
        dest: persnap::backup::canonical_dest(&dest.backups).unwrap(),
        store_name: "persistence.db".into(),
        method: "sqlite-online".parse().unwrap(),
        options: BackupOptions::default(),
        when: "daily".into(),
        history_dir: persnap::fsutil::canonicalize(place.history.path()).unwrap(),
        run_as: None,
        repository: None,
        offsite: None,
    };
    let (code, event) = place.call("admin", &elsewhere);
    assert_eq!(code, Some(0), "{event:?}");
    let (code, event) = place.call(
        "admin",
        &Request::DatabaseRemove {
            name: "orders".into(),
        },
    );
    assert_eq!(code, Some(0), "{event:?}");
    let Event::Done { result } = event else {
        panic!()
    };
    assert!(
        matches!(
            *result,
            Reply::DatabaseRemoved {
                schedule_removed: None,
                ..
            }
        ),
        "{result:?}"
    );
    assert_eq!(place.units().len(), 2, "the other schedule stays");

    // The old registration request cannot take a taken name.
    let (code, _) = place.call(
        "admin",
        &Request::DatabaseAdd {
            name: "audit".into(),
            source: store.path().to_owned(),
            store_name: "persistence.db".into(),
        },
    );
    assert_eq!(code, Some(0));
    let message = refusal(
        place
            .call(
                "admin",
                &Request::DatabaseAdd {
                    name: "audit".into(),
                    source: other.path().to_owned(),
                    store_name: "persistence.db".into(),
                },
            )
            .1,
    );
    assert!(
        message.contains("another database is protected as audit"),
        "{message}"
    );
    assert_eq!(
        place.registry().get("audit").unwrap().unwrap().folder,
        persnap::volume::canonical(store.path()).unwrap()
    );
}

/// A database protected into a repository through the helper: what opens
/// the repository is refused when a hostile caller slips anything else in
/// (another variable, a password over two lines, storage persnap does not
/// know), and then nothing is registered or installed; the good one is
/// kept where only root reads it, the registry and the unit name the
/// repository without its password, and stopping protection removes it.
#[test]
fn a_database_protected_into_a_repository_keeps_its_password_for_root() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root("a_database_protected_into_a_repository_keeps_its_password_for_root") {
        return;
    }
    let (_vol, store) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store, "persistence.db", Mode::Wal, 1);
    let staging = Destination::new();
    let place = Place::new();
    // A user's history: a schedule into a repository is never made as root.
    std::os::unix::fs::chown(place.history.path(), Some(65534), Some(65534)).unwrap();
    let repo = staging.dir.path().join("repo");
    let with = |unlock: persnap::repository::Unlock| {
        let mut request = place.protect("vault", &store, &staging.backups, "auto");
        if let Request::Protect {
            repository,
            options,
            ..
        } = &mut request
        {
            *options = BackupOptions::default();
            *repository = Some(protocol::ScheduleRepositoryRequest {
                unlock,
                keep: persnap::repository::Keep {
                    last: Some(3),
                    ..Default::default()
                },
                staged: true,
            });
        }
        request
    };
    let unlock = |location: &str, password: &str, environment: &[(&str, &str)]| {
        persnap::repository::Unlock {
            location: location.into(),
            password: password.into(),
            environment: environment
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    };
    let good = repo.to_str().unwrap();
    for (hostile, said) in [
        (
            unlock(good, "vault secret", &[("LD_PRELOAD", "/tmp/evil.so")]),
            "LD_PRELOAD",
        ),
        (unlock(good, "vault\nsecret", &[]), "one line"),
        (unlock("ftp://host/repo", "vault secret", &[]), "ftp"),
        (
            unlock(good, "vault secret", &[("RCLONE_SFTP_KEY_FILE", "a\nb")]),
            "not one line",
        ),
    ] {
        let message = refusal(place.call("admin", &with(hostile)).1);
        assert!(message.contains(said), "{said}: {message}");
        assert!(place.registry().list().unwrap().is_empty());
        assert!(place.units().is_empty(), "{:?}", place.units());
    }

    // An offsite copy must go elsewhere, with keys that agree with the
    // first repository's (one run has one environment).
    let offsite_place = staging.dir.path().join("offsite");
    let offsite_good = offsite_place.to_str().unwrap();
    let with_offsite = |first: persnap::repository::Unlock, second: persnap::repository::Unlock| {
        let mut request = with(first);
        if let Request::Protect { offsite, .. } = &mut request {
            *offsite = Some(protocol::ScheduleRepositoryRequest {
                unlock: second,
                keep: persnap::repository::Keep {
                    last: Some(3),
                    ..Default::default()
                },
                staged: false,
            });
        }
        request
    };
    for (first, second, said) in [
        (
            unlock(good, "vault secret", &[]),
            unlock(good, "vault secret", &[]),
            "another repository",
        ),
        (
            unlock(
                "s3:http://127.0.0.1:9/a",
                "vault secret",
                &[("AWS_ACCESS_KEY_ID", "one")],
            ),
            unlock(
                "s3:http://127.0.0.1:9/b",
                "other",
                &[("AWS_ACCESS_KEY_ID", "two")],
            ),
            "another AWS_ACCESS_KEY_ID",
        ),
        // The first one's keys would reach the offsite server.
        (
            unlock(
                "s3:http://127.0.0.1:9/a",
                "vault secret",
                &[("AWS_SESSION_TOKEN", "t")],
            ),
            unlock("s3:http://127.0.0.1:9/b", "other", &[]),
            "another AWS_SESSION_TOKEN",
        ),
        // Keys go only to storage of their kind.
        (
            unlock(good, "vault secret", &[]),
            unlock(offsite_good, "other", &[("AWS_ACCESS_KEY_ID", "one")]),
            "not a key of this kind",
        ),
    ] {
        let message = refusal(place.call("admin", &with_offsite(first, second)).1);
        assert!(message.contains(said), "{said}: {message}");
        assert!(place.registry().list().unwrap().is_empty());
        assert!(place.units().is_empty(), "{:?}", place.units());
    }

    // Recorded with other rules than the run applies to it: refused.
    let mut other_rules = with_offsite(
        unlock(good, "vault secret", &[]),
        unlock(offsite_good, "offsite secret", &[]),
    );
    if let Request::Protect {
        offsite: Some(o), ..
    } = &mut other_rules
    {
        o.keep = Default::default();
    }
    let message = refusal(place.call("admin", &other_rules).1);
    assert!(message.contains("same rules"), "{message}");
    assert!(place.units().is_empty(), "{:?}", place.units());

    let (code, event) = place.call(
        "admin",
        &with_offsite(
            unlock(good, "vault secret", &[]),
            unlock(offsite_good, "offsite secret", &[]),
        ),
    );
    let Event::Done { result } = event else {
        panic!("expected Protected, got {event:?} ({code:?})");
    };
    let Reply::Protected { database, .. } = *result else {
        panic!("expected Protected, got {result:?}");
    };
    let kept = database.repository.clone().expect("its repository");
    assert_eq!(kept.location, good);
    assert_eq!(kept.keep.last, Some(3));
    assert!(kept.staged);
    assert_eq!(
        database.offsite.as_ref().map(|o| o.location.as_str()),
        Some(offsite_good)
    );
    let registry_text: String = std::fs::read_dir(place.registry().dir())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(registry_text.contains(good), "{registry_text}");
    assert!(!registry_text.contains("vault secret"), "{registry_text}");
    let service =
        std::fs::read_to_string(place.units.path().join("persnap-backup-vault.service")).unwrap();
    assert!(service.contains("--repo-unlock"), "{service}");
    assert!(!service.contains("vault secret"), "{service}");
    let file = place.units.path().join("persnap-repositories/vault.json");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("vault secret")
    );
    let offsite_file = place
        .units
        .path()
        .join("persnap-repositories/vault.offsite.json");
    assert_eq!(
        std::fs::metadata(&offsite_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&offsite_file)
            .unwrap()
            .contains("offsite secret")
    );
    assert!(service.contains("--offsite-unlock"), "{service}");
    assert!(!registry_text.contains("offsite secret"), "{registry_text}");

    // A schedule of the same name that fails to install (a calendar
    // systemd does not take) leaves this one's files as they were.
    let clobber = Request::ScheduleAdd {
        name: "vault".into(),
        source: persnap::volume::canonical(&store).unwrap(),
        dest: persnap::backup::canonical_dest(&staging.backups).unwrap(),
        store_name: "persistence.db".into(),
        method: "auto".parse().unwrap(),
        options: BackupOptions::default(),
        when: "*-*-* 99:99:99".into(),
        history_dir: place.history.path().to_owned(),
        run_as: None,
        repository: Some(protocol::ScheduleRepositoryRequest {
            unlock: unlock(good, "intruder", &[]),
            keep: Default::default(),
            staged: true,
        }),
        offsite: None,
    };
    let (code, _) = place.call("admin", &clobber);
    assert_ne!(code, Some(0), "a calendar systemd refuses");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("vault secret"),
        "its own file stays"
    );
    assert!(offsite_file.is_file(), "its offsite file stays");

    // Stopping protection takes the schedule and its password file too.
    let (code, event) = place.call(
        "admin",
        &Request::DatabaseRemove {
            name: "vault".into(),
        },
    );
    assert!(matches!(event, Event::Done { .. }), "{event:?} ({code:?})");
    assert!(!file.exists(), "its password file goes with it");
    assert!(!offsite_file.exists(), "and the offsite one");
    assert!(place.registry().list().unwrap().is_empty());
}

/// `persnap database add --repo … --offsite …`: the connection to each
/// tested first (a wrong password changes nothing), then the same one step
/// through the helper; the entry names both repositories, never their
/// passwords, and the schedule's runs open them from root's files.
#[test]
fn the_command_line_protects_into_a_repository_with_an_offsite_copy() {
    if !require_root("the_command_line_protects_into_a_repository_with_an_offsite_copy") {
        return;
    }
    let (_vol, store) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store, "persistence.db", Mode::Wal, 1);
    let place = Place::new();
    let work = tempfile::tempdir().unwrap();
    // A user's history: a schedule into a repository is never made as root.
    std::fs::create_dir(work.path().join("history")).unwrap();
    std::os::unix::fs::chown(work.path().join("history"), Some(65534), Some(65534)).unwrap();
    let (repo, offsite) = (work.path().join("repo"), work.path().join("offsite"));
    let (right, wrong) = (work.path().join("right"), work.path().join("wrong"));
    std::fs::write(&right, "repository secret\n").unwrap();
    std::fs::write(&wrong, "not it\n").unwrap();
    for r in [&repo, &offsite] {
        run_ok(
            Command::new(bin("persnap"))
                .args(["repo", "init", "--repo"])
                .arg(r)
                .arg("--password-file")
                .arg(&right),
        );
    }
    let add = |offsite_password: &Path| {
        Command::new(bin("persnap"))
            .args(["database", "add", "ledger", "--source"])
            .arg(&store)
            .arg("--repo")
            .arg(&repo)
            .arg("--password-file")
            .arg(&right)
            .arg("--offsite")
            .arg(&offsite)
            .arg("--offsite-password-file")
            .arg(offsite_password)
            .args(["--at", "daily", "--keep-last", "7"])
            .env("PERSNAP_REGISTRY_DIR", place.registry().dir())
            .env("PERSNAP_UNIT_DIR", place.units.path())
            .env("PERSNAP_DATA_DIR", work.path().join("history"))
            .env("PERSNAP_STAGING_DIR", work.path().join("staging"))
            .output()
            .unwrap()
    };
    let out = add(&wrong);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("The offsite repository: The password"),
        "{}",
        stderr(&out)
    );
    assert!(place.registry().list().unwrap().is_empty());
    assert!(place.units().is_empty());

    let out = add(&right);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("backed up into the repository"), "{said}");
    assert!(said.contains("goes offsite"), "{said}");
    let db = place.registry().get("ledger").unwrap().unwrap();
    let r = db.repository.expect("its repository");
    assert_eq!(r.location, repo.to_str().unwrap());
    assert_eq!(r.keep.last, Some(7));
    assert!(r.staged);
    assert_eq!(
        db.offsite.map(|o| o.location),
        Some(offsite.to_str().unwrap().to_owned())
    );
    let service =
        std::fs::read_to_string(place.units.path().join("persnap-backup-ledger.service")).unwrap();
    assert!(!service.contains("repository secret"), "{service}");
    for file in ["ledger.json", "ledger.offsite.json"] {
        let text =
            std::fs::read_to_string(place.units.path().join("persnap-repositories").join(file))
                .unwrap();
        assert!(text.contains("repository secret"), "{file}");
    }
}
