//! Schedules (root: they are installed through the helper): the generated
//! systemd units pass `systemd-analyze verify`, bad times are refused with
//! systemd's reason, the service's own command line — run as systemd would
//! run it — makes a backup recorded in the user's history as scheduled, a
//! failed run notifies the desktop, a missed run is reported, and the
//! helper refuses to record into a history folder that is not the
//! invoking user's.
#![cfg(target_os = "linux")]

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use persnap::history::{History, Outcome};
use persnap::loadgen::Mode;

/// Split an `ExecStart=` line the way systemd does for the quoting persnap
/// writes: double-quoted words, `\"` `\\` `%%` `$$` escapes.
fn exec_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => word.push(chars.next().unwrap()),
                '%' | '$' => {
                    chars.next();
                    word.push(c);
                }
                c => word.push(c),
            }
        }
        words.push(word);
    }
    words
}

/// The words of a unit's `KEY=` line, as systemd splits them.
fn directive_words(unit: &str, key: &str) -> Vec<String> {
    let value = unit
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in\n{unit}"));
    exec_words(value)
}

/// Ask the helper (started directly, as pkexec would start it for `uid`)
/// to install the schedule `name` of the store in `source`, with units in
/// `units`; its output.
fn schedule_through_helper(
    name: &str,
    source: &Path,
    dest: &Path,
    history: &Path,
    uid: u32,
    units: &Path,
) -> std::process::Output {
    schedule_through_helper_into(name, source, dest, history, uid, units, None, None, "auto")
}

/// [`schedule_through_helper`], also (or only, when staged) into a
/// repository.
#[allow(clippy::too_many_arguments)]
fn schedule_through_helper_into(
    name: &str,
    source: &Path,
    dest: &Path,
    history: &Path,
    uid: u32,
    units: &Path,
    repository: Option<persnap::protocol::ScheduleRepositoryRequest>,
    offsite: Option<persnap::protocol::ScheduleRepositoryRequest>,
    method: &str,
) -> std::process::Output {
    use persnap::protocol::{self, BackupOptions, Request};
    let request = Request::ScheduleAdd {
        name: name.into(),
        source: persnap::volume::canonical(source).unwrap(),
        dest: persnap::backup::canonical_dest(dest).unwrap(),
        store_name: "persistence.db".into(),
        method: method.parse().unwrap(),
        options: BackupOptions::default(),
        when: "daily".into(),
        history_dir: persnap::fsutil::canonicalize(history).unwrap(),
        run_as: None,
        repository,
        offsite,
    };
    let mut frame = Vec::new();
    protocol::write_frame(&mut frame, &request).unwrap();
    let mut child = Command::new(bin("persnap-helper"))
        .arg("admin")
        .env("PKEXEC_UID", uid.to_string())
        .env("PERSNAP_UNIT_DIR", units)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&frame).unwrap();
    child.wait_with_output().unwrap()
}

/// Run a service unit's `ExecStart=` as systemd would (as root, with only
/// its `Environment=`); it must succeed.
fn run_service(unit: &str) -> std::process::Output {
    let run = try_service(unit);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    run
}

/// [`run_service`], whatever comes of it.
fn try_service(unit: &str) -> std::process::Output {
    try_service_with(unit, &[])
}

/// [`try_service`] with more in its environment.
fn try_service_with(unit: &str, more: &[(&str, &str)]) -> std::process::Output {
    let env = directive_words(unit, "Environment").remove(0);
    let words = directive_words(unit, "ExecStart");
    let (key, value) = env.split_once('=').unwrap();
    Command::new(&words[0])
        .args(&words[1..])
        .env_clear()
        .env(key, value)
        .envs(more.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn schedule_units_verify_and_their_command_backs_up() {
    if !require_root("schedule_units_verify_and_their_command_backs_up") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let m = Machine::new();
    let (s, d) = (
        store.path().to_str().unwrap(),
        dest.backups.to_str().unwrap(),
    );

    let bad = m.persnap(&[
        "schedule",
        "add",
        "nightly",
        "--source",
        s,
        "--dest",
        d,
        "--at",
        "every full moon",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("nor a systemd calendar expression")
            && stderr(&bad).contains("Failed to parse calendar specification"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(
        std::fs::read_dir(m.units()).unwrap().count(),
        0,
        "nothing written"
    );

    let add = m.persnap(&[
        "schedule",
        "add",
        "nightly",
        "--source",
        s,
        "--dest",
        d,
        "--method",
        "sqlite-online",
        "--at",
        "Mon..Fri 02:00",
        "--keep-last",
        "3",
    ]);
    assert!(add.status.success(), "{}", stderr(&add));
    let service = m.units().join("persnap-backup-nightly.service");
    let timer = m.units().join("persnap-backup-nightly.timer");
    // --man=no: the unit's Documentation= page comes with the package,
    // which is not installed here (tests/installers/run.sh installs it).
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&service)
        .arg(&timer)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let timer_text = std::fs::read_to_string(&timer).unwrap();
    assert!(
        timer_text.contains("OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 02:00:00"),
        "{timer_text}"
    );

    let list = m.persnap(&["schedule", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.starts_with("nightly\tMon, Tue, Wed, Thu, Fri at 02:00\t")
            && listed.contains("keep the newest 3 backups")
            && listed.trim_end().ends_with("not run yet"),
        "{listed}"
    );

    // Run the service's command as systemd would, with its environment.
    run_service(&std::fs::read_to_string(&service).unwrap());
    let runs = m.history().load().unwrap();
    let last = runs.last().unwrap();
    assert_eq!(last.outcome, Outcome::Completed);
    assert_eq!(
        last.scheduled.as_deref(),
        Some("nightly"),
        "recorded as started by the schedule"
    );
    let list = m.persnap(&["schedule", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("\tlast ran "),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );

    let remove = m.persnap(&["schedule", "remove", "nightly"]);
    assert!(remove.status.success(), "{}", stderr(&remove));
    assert_eq!(std::fs::read_dir(m.units()).unwrap().count(), 0);
    let again = m.persnap(&["schedule", "remove", "nightly"]);
    assert_eq!(again.status.code(), Some(2));

    // What the uninstallers run: every schedule goes.
    for (name, at) in [("a", "hourly"), ("b", "Sat,Sun 06:00")] {
        let add = m.persnap(&[
            "schedule", "add", name, "--source", s, "--dest", d, "--at", at,
        ]);
        assert!(add.status.success(), "{}", stderr(&add));
    }
    assert_eq!(std::fs::read_dir(m.units()).unwrap().count(), 4);
    let all = m.persnap(&["schedule", "remove", "--all"]);
    assert!(all.status.success(), "{}", stderr(&all));
    assert!(
        stderr(&all).contains("Removed 2 schedule(s)"),
        "{}",
        stderr(&all)
    );
    assert_eq!(std::fs::read_dir(m.units()).unwrap().count(), 0);
}

/// A private session bus and a monitor of Notify calls on it.
struct SessionBus {
    address: String,
    daemon_pid: String,
    monitor: std::process::Child,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SessionBus {
    fn start() -> SessionBus {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("dbus-daemon")
            .args([
                "--session",
                "--fork",
                "--nopidfile",
                "--print-address=1",
                "--print-pid=1",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dbus-daemon: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let address = printed
            .lines()
            .find(|l| l.starts_with("unix:"))
            .unwrap()
            .to_owned();
        let daemon_pid = printed
            .lines()
            .find(|l| l.parse::<u32>().is_ok())
            .unwrap()
            .to_owned();
        let log = dir.path().join("monitor.txt");
        let monitor = Command::new("dbus-monitor")
            .args([
                "--address",
                &address,
                "interface='org.freedesktop.Notifications'",
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        SessionBus {
            address,
            daemon_pid,
            monitor,
            out: log,
            _dir: dir,
        }
    }

    fn seen(&mut self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = self.monitor.kill();
        let _ = self.monitor.wait();
        std::fs::read_to_string(&self.out).unwrap()
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.monitor.kill();
        let _ = self.monitor.wait();
        let _ = Command::new("kill").arg(&self.daemon_pid).status();
    }
}

#[test]
fn a_failed_scheduled_run_raises_a_desktop_notification() {
    if !require_root("a_failed_scheduled_run_raises_a_desktop_notification") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let m = Machine::new();
    let add = m.persnap(&[
        "schedule",
        "add",
        "hourly",
        "--source",
        store.path().to_str().unwrap(),
        "--dest",
        dest.backups.to_str().unwrap(),
        "--method",
        "sqlite-online",
        "--at",
        "hourly",
    ]);
    assert!(add.status.success(), "{}", stderr(&add));
    let text = std::fs::read_to_string(m.units().join("persnap-backup-hourly.service")).unwrap();
    let exec = directive_words(&text, "ExecStart");
    let post = directive_words(&text, "ExecStopPost");
    assert_eq!(post[1..], ["schedule", "notify", "hourly"]);

    // The database goes away: the scheduled run fails, as systemd would see.
    std::fs::remove_file(store.path().join("persistence.db")).unwrap();
    let run = Command::new(&exec[0])
        .args(&exec[1..])
        .env_clear()
        .env("PERSNAP_DATA_DIR", m.data())
        .output()
        .unwrap();
    assert!(
        !run.status.success(),
        "the failed run exits non-zero for systemd"
    );

    let mut bus = SessionBus::start();
    let notify = |result: &str| {
        Command::new(&post[0])
            .args(&post[1..])
            .env_clear()
            .env("SERVICE_RESULT", result)
            .env("PERSNAP_UNIT_DIR", m.units())
            .env("PERSNAP_NOTIFY_BUS", &bus.address)
            .output()
            .unwrap()
    };
    let ok = notify("success");
    assert!(
        ok.status.success() && ok.stderr.is_empty(),
        "nothing said after a success: {}",
        stderr(&ok)
    );
    let failed = notify("exit-code");
    assert!(failed.status.success(), "notifying never fails the unit");
    assert!(
        stderr(&failed).contains("failed during"),
        "{}",
        stderr(&failed)
    );
    let seen = bus.seen();
    assert!(
        seen.contains("member=Notify"),
        "a Notify call went out: {seen}"
    );
    assert!(
        seen.contains("persnap: the scheduled backup “hourly” failed"),
        "{seen}"
    );
    assert!(
        seen.contains("No database file named persistence.db"),
        "with the reason: {seen}"
    );
    assert_eq!(
        seen.matches("member=Notify").count(),
        1,
        "only for the failure"
    );
}

/// A schedule due every day two hours ago, made three days ago, that
/// never ran, recording into `history_dir`.
fn missed_daily(history_dir: &Path) -> persnap::schedule::Schedule {
    use chrono::{Duration, Local, Timelike, Utc};
    use persnap::schedule::{Schedule, When};
    let due = Local::now() - Duration::hours(2);
    Schedule {
        name: "daily".into(),
        source: "/srv/apama".into(),
        dest: "/backup".into(),
        store_name: "persistence.db".into(),
        method: persnap::method::MethodChoice::Auto,
        retention: Default::default(),
        pace: Default::default(),
        when: When::Daily(due.time().with_nanosecond(0).unwrap()),
        history_dir: history_dir.to_owned(),
        created: Some(Utc::now() - Duration::days(3)),
        uid: None,
        run_as: None,
        password: Default::default(),
        repository: None,
        unlock: None,
        offsite: None,
        offsite_unlock: None,
        drill: false,
    }
}

#[test]
fn a_missed_run_is_reported_until_one_runs() {
    use chrono::{Duration, Utc};
    use persnap::schedule::systemd;
    let m = Machine::new();
    let s = missed_daily(&m.data());
    systemd::write_units(&s, &m.units(), &bin("persnap")).unwrap();
    let check = m.persnap(&["schedule", "check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        said.contains("the scheduled backup “daily” did not run")
            && said.contains("may have been off or asleep"),
        "{said}"
    );
    let list = m.persnap(&["schedule", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("MISSED the run due"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );

    // A scheduled run after the due time settles it.
    let mut run = persnap::history::Run::starting(
        persnap::history::RunKind::Backup,
        "r1".into(),
        "t1".into(),
        s.source.clone(),
        s.store_name.clone(),
        s.dest.clone(),
    );
    run.scheduled = Some("daily".into());
    run.started = Utc::now() - Duration::minutes(100);
    run.outcome = Outcome::Completed;
    m.history().upsert(&run).unwrap();
    let check = m.persnap(&["schedule", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn the_helper_records_only_into_the_invoking_users_history() {
    if !require_root("the_helper_records_only_into_the_invoking_users_history") {
        return;
    }
    use persnap::protocol::{self, Event};
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let units = tempfile::tempdir().unwrap();
    // Root's folder, while pkexec says user 4242 asked.
    let history = tempfile::tempdir().unwrap();
    let out = schedule_through_helper(
        "nightly",
        store.path(),
        &dest.backups,
        history.path(),
        4242,
        units.path(),
    );
    assert_eq!(out.status.code(), Some(2), "refused as bad input");
    let mut reader = std::io::BufReader::new(&out.stdout[..]);
    let event: Event = protocol::read_frame(&mut reader).unwrap();
    match event {
        Event::Error { message, .. } => assert!(
            message.contains("does not belong to you (uid 4242)"),
            "{message}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(units.path()).unwrap().count(),
        0,
        "nothing installed"
    );
}

const USER: &str = "persnap_sched";

/// The unprivileged user who makes schedules in these tests.
fn schedule_user() -> u32 {
    if Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        run_ok(Command::new("useradd").args(["--create-home", USER]));
    }
    run_ok(Command::new("id").args(["-u", USER]))
        .parse()
        .unwrap()
}

/// A folder in /var/tmp that belongs to `uid`.
fn user_dir(name: &str, uid: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(name)
        .tempdir_in("/var/tmp")
        .unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
    dir
}

#[test]
fn a_scheduled_backup_into_a_repository_keeps_its_password_from_all_but_root() {
    if !require_root("a_scheduled_backup_into_a_repository_keeps_its_password_from_all_but_root") {
        return;
    }
    use persnap::repository::{Address, Keep, Password, Unlock};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const PASSWORD: &str = "only root and the user know this";
    let uid = schedule_user();
    let (_vol, store) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store, "persistence.db", Mode::Wal, 2);
    let (staging, history, place) = (
        user_dir("persnap-sched-staging-", uid),
        user_dir("persnap-sched-data-", uid),
        user_dir("persnap-sched-repo-", uid),
    );
    let (repo, offsite) = (place.path().join("repo"), place.path().join("offsite"));
    let password_file = place.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    std::os::unix::fs::chown(&password_file, Some(uid), Some(uid)).unwrap();
    // The user makes the repository, and a second one for the offsite
    // copies (3-2-1).
    for repo in [&repo, &offsite] {
        run_ok(
            Command::new("runuser")
                .args(["-u", USER, "--"])
                .arg(bin("persnap"))
                .args(["repo", "init", "--repo"])
                .arg(repo)
                .arg("--password-file")
                .arg(&password_file),
        );
    }

    let units = tempfile::tempdir().unwrap();
    let unlock = Unlock::new(
        &Address::parse(repo.to_str().unwrap()).unwrap(),
        &Password::new(PASSWORD),
    );
    let out = schedule_through_helper_into(
        "to-repo",
        &store,
        staging.path(),
        history.path(),
        uid,
        units.path(),
        Some(persnap::protocol::ScheduleRepositoryRequest {
            unlock,
            keep: Keep {
                last: Some(2),
                ..Keep::default()
            },
            staged: true,
        }),
        Some(persnap::protocol::ScheduleRepositoryRequest {
            unlock: Unlock::new(
                &Address::parse(offsite.to_str().unwrap()).unwrap(),
                &Password::new(PASSWORD),
            ),
            // The same rules as the first (anything else is refused).
            keep: Keep {
                last: Some(2),
                ..Keep::default()
            },
            staged: false,
        }),
        "auto",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The schedule everyone may read names the repository, never its
    // password; that is in a file of root's alone.
    let service =
        std::fs::read_to_string(units.path().join("persnap-backup-to-repo.service")).unwrap();
    assert!(!service.contains(PASSWORD), "{service}");
    let unlock_file = units.path().join("persnap-repositories/to-repo.json");
    let meta = std::fs::metadata(&unlock_file).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    assert!(
        std::fs::read_to_string(&unlock_file)
            .unwrap()
            .contains(PASSWORD)
    );
    let offsite_file = units
        .path()
        .join("persnap-repositories/to-repo.offsite.json");
    let meta = std::fs::metadata(&offsite_file).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    let words = directive_words(&service, "ExecStart");
    assert!(words.contains(&"--repo-unlock".to_owned()), "{words:?}");
    assert!(words.contains(&"--offsite-unlock".to_owned()), "{words:?}");
    assert!(
        !words.contains(&"--dest".to_owned()),
        "staged only: {words:?}"
    );

    // Three runs, as systemd starts them (as root): each stored and read
    // back as the user, the staged set gone, two kept (--keep-last 2).
    let mut ids = Vec::new();
    for _ in 0..3 {
        let run = run_service(&service);
        ids.push(String::from_utf8_lossy(&run.stdout).trim().to_owned());
    }
    let list = |repo: &Path| -> Vec<persnap::repository::Listed> {
        let listed = Command::new(bin("persnap"))
            .args(["repo", "list", "--json", "--repo"])
            .arg(repo)
            .arg("--password-file")
            .arg(&password_file)
            .output()
            .unwrap();
        serde_json::from_slice(&listed.stdout).unwrap()
    };
    let listed = list(&repo);
    assert_eq!(
        listed.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
        ids[1..],
        "the newest two are kept"
    );
    // The offsite repository has them too, by the same rules.
    assert_eq!(list(&offsite).len(), 2, "offsite: the newest two");
    fn walk(dir: &Path, each: &mut dyn FnMut(&Path)) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            each(&path);
            if path.is_dir() && !path.is_symlink() {
                walk(&path, each);
            }
        }
    }
    walk(place.path(), &mut |path| {
        assert_eq!(
            std::fs::symlink_metadata(path).unwrap().uid(),
            uid,
            "{} is the user's: the run wrote as them, not as root",
            path.display()
        );
    });
    assert_eq!(
        std::fs::read_dir(staging.path()).unwrap().count(),
        0,
        "nothing left staged"
    );
    let (runs, drills): (Vec<_>, Vec<_>) = History::at(history.path())
        .load()
        .unwrap()
        .into_iter()
        .partition(|r| r.kind == persnap::history::RunKind::Backup);
    assert_eq!(runs.len(), 3);
    // The first run's drill (due) read its repository and offsite one
    // back, as the user; the next two were not due.
    assert_eq!(drills.len(), 1, "{drills:#?}");
    let report = drills[0].drill.as_ref().unwrap();
    assert!(report.passed(), "{report:#?}");
    let kinds: Vec<_> = report.places.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            persnap::drill::PlaceKind::Repository,
            persnap::drill::PlaceKind::Offsite
        ]
    );
    for (run, id) in runs.iter().zip(&ids) {
        assert_eq!(run.outcome, Outcome::Completed, "{run:#?}");
        assert_eq!(run.scheduled.as_deref(), Some("to-repo"));
        assert_eq!(run.repository.as_ref().unwrap().snapshot, *id);
        assert!(
            matches!(
                run.offsite,
                Some(persnap::repository::Offsite::Stored { .. })
            ),
            "{run:#?}"
        );
        assert!(run.backup_path.is_none(), "{run:#?}");
    }
    // The newest restores consistent, read by Debian's restic.
    let restored = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("restic")
            .arg("--repo")
            .arg(&repo)
            .arg("--password-file")
            .arg(&password_file)
            .args(["--no-cache", "restore", &ids[2], "--target"])
            .arg(restored.path()),
    );
    let set = restored.path().join("persnap").join(&listed[1].database);
    std::fs::remove_file(set.join("manifest.json")).unwrap();
    check_backup(&set, "persistence.db");

    // Made readable by others, the file is refused and the run fails.
    std::fs::set_permissions(&unlock_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = try_service(&service);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("can be read or changed by others"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // Removing the schedule removes the file (and its folder).
    let remove = Command::new(bin("persnap"))
        .args(["schedule", "remove", "to-repo"])
        .env("PERSNAP_UNIT_DIR", units.path())
        .env("PERSNAP_DATA_DIR", history.path())
        .output()
        .unwrap();
    assert!(remove.status.success(), "{}", stderr(&remove));
    assert!(!unlock_file.exists());
    assert!(!offsite_file.exists());
    assert_eq!(std::fs::read_dir(units.path()).unwrap().count(), 0);
}

#[test]
fn a_scheduled_run_writes_as_the_user_who_made_it() {
    if !require_root("a_scheduled_run_writes_as_the_user_who_made_it") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let uid = schedule_user();
    let (_vol, store) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store, "persistence.db", Mode::Wal, 2);
    let user_dir = |name: &str| user_dir(name, uid);
    let (dest, history) = (
        user_dir("persnap-sched-dest-"),
        user_dir("persnap-sched-data-"),
    );
    let units = tempfile::tempdir().unwrap();
    // Made by the user through the helper (pkexec says who asked).
    let out = schedule_through_helper(
        "as-user",
        &store,
        dest.path(),
        history.path(),
        uid,
        units.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text =
        std::fs::read_to_string(units.path().join("persnap-backup-as-user.service")).unwrap();
    let words = directive_words(&text, "ExecStart");
    assert!(
        words
            .windows(2)
            .any(|w| w[0] == "--as-uid" && w[1] == uid.to_string()),
        "the run acts for its maker: {words:?}"
    );

    // The run, as systemd starts it: as root.
    let run = run_service(&text);
    let backup = std::path::PathBuf::from(String::from_utf8_lossy(&run.stdout).trim());
    check_backup(&backup, "persistence.db");
    for path in std::iter::once(backup.clone())
        .chain(
            std::fs::read_dir(&backup)
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .chain([history.path().join("history.json")])
    {
        assert_eq!(
            std::fs::symlink_metadata(&path).unwrap().uid(),
            uid,
            "{} is the user's",
            path.display()
        );
    }
    let runs = History::at(history.path()).load().unwrap();
    assert_eq!(runs.last().unwrap().outcome, Outcome::Completed);
    assert_eq!(runs.last().unwrap().scheduled.as_deref(), Some("as-user"));
    // The first run also proved its backups restorable (a drill was due),
    // as the user; the next one, a week early, does not drill again.
    let drills = |runs: &[persnap::history::Run]| -> Vec<persnap::history::Run> {
        runs.iter()
            .filter(|r| r.kind == persnap::history::RunKind::Drill)
            .cloned()
            .collect()
    };
    let first = drills(&runs);
    assert_eq!(first.len(), 1, "{runs:?}");
    let report = first[0].drill.as_ref().unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.places[0].kind, persnap::drill::PlaceKind::Folder);
    assert_eq!(first[0].scheduled.as_deref(), Some("as-user"));
    let again = run_service(&text);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let runs = History::at(history.path()).load().unwrap();
    assert_eq!(drills(&runs).len(), 1, "not due again for a week");
}

/// A scheduled sqlite-online run takes no snapshot, so it becomes its user
/// before it opens either of its repositories: rclone, which rustic starts
/// to reach SFTP (and S3) storage, never runs as root — not with a key file
/// the user named, not against a server the user chose.
#[test]
fn a_scheduled_online_run_reaches_its_repositories_only_as_its_user() {
    if !require_root("a_scheduled_online_run_reaches_its_repositories_only_as_its_user") {
        return;
    }
    use persnap::repository::{Address, Keep, Password, Unlock};
    use std::os::unix::fs::PermissionsExt;
    let uid = schedule_user();
    let (store, staging, history) = (
        user_dir("persnap-sched-store-", uid),
        user_dir("persnap-sched-staging-", uid),
        user_dir("persnap-sched-data-", uid),
    );
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    // An rclone that says who ran it, and goes no further.
    let fake = tempfile::tempdir().unwrap();
    std::fs::set_permissions(fake.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = fake.path().join("who");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let rclone = fake.path().join("rclone");
    std::fs::write(
        &rclone,
        format!("#!/bin/sh\nid -u >> {}\nexit 1\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&rclone, std::fs::Permissions::from_mode(0o755)).unwrap();
    // S3 on loopback: nothing answers there, and persnap checks no host
    // key first (an SFTP server's key is checked before rclone starts).
    let unlock = |place: &str| {
        let mut unlock = Unlock::new(
            &Address::parse(&format!("s3:http://127.0.0.1:9/{place}")).unwrap(),
            &Password::new("the password"),
        );
        unlock.environment = vec![
            ("AWS_ACCESS_KEY_ID".into(), "persnap".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "persnap-secret".into()),
        ];
        unlock
    };
    let units = tempfile::tempdir().unwrap();
    let out = schedule_through_helper_into(
        "online-repo",
        store.path(),
        staging.path(),
        history.path(),
        uid,
        units.path(),
        Some(persnap::protocol::ScheduleRepositoryRequest {
            unlock: unlock("repo"),
            keep: Keep::default(),
            staged: true,
        }),
        Some(persnap::protocol::ScheduleRepositoryRequest {
            unlock: unlock("offsite"),
            keep: Keep::default(),
            staged: false,
        }),
        "sqlite-online",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let service =
        std::fs::read_to_string(units.path().join("persnap-backup-online-repo.service")).unwrap();
    let path = format!("{}:/usr/bin:/bin", fake.path().display());
    let run = try_service_with(&service, &[("PATH", &path)]);
    assert!(!run.status.success(), "rclone fails here, so does the run");
    let who = std::fs::read_to_string(&log).unwrap();
    assert!(!who.is_empty(), "rclone was started");
    for line in who.lines() {
        assert_eq!(
            line.trim(),
            uid.to_string(),
            "rclone ran as {line}, not as the user: {who}"
        );
    }
    // The failure is the user's to see: recorded in their history.
    let runs = History::at(history.path()).load().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert!(
        matches!(runs[0].outcome, Outcome::Failed { .. }),
        "{runs:#?}"
    );
}

/// A run that hangs (a stalled share, a FIFO planted where it reads) is
/// stopped by systemd at the schedule's time limit (`TimeoutStartSec=`),
/// so the timer fires again; the stop is then recorded as a hang, and
/// status says so instead of "interrupted" or "missed".
#[test]
fn a_run_stopped_at_its_time_limit_is_reported_as_hung() {
    use chrono::{Duration, NaiveTime, Utc};
    use persnap::schedule::{Schedule, When, systemd};
    let m = Machine::new();
    let s = Schedule {
        name: "nightly".into(),
        source: "/srv/apama".into(),
        dest: "/backup".into(),
        store_name: "persistence.db".into(),
        method: persnap::method::MethodChoice::Auto,
        retention: Default::default(),
        pace: Default::default(),
        when: When::Daily(NaiveTime::from_hms_opt(2, 0, 0).unwrap()),
        history_dir: m.data(),
        created: Some(Utc::now() - Duration::days(1)),
        uid: None,
        run_as: None,
        password: Default::default(),
        repository: None,
        unlock: None,
        offsite: None,
        offsite_unlock: None,
        drill: false,
    };
    systemd::write_units(&s, &m.units(), &bin("persnap")).unwrap();
    let service =
        std::fs::read_to_string(m.units().join(systemd::service_name("nightly"))).unwrap();
    assert!(service.contains("\nTimeoutStartSec=12h\n"), "{service}");
    // The run was left running when systemd stopped it.
    let mut run = persnap::history::Run::starting(
        persnap::history::RunKind::Backup,
        "r1".into(),
        "t1".into(),
        s.source.clone(),
        s.store_name.clone(),
        s.dest.clone(),
    );
    run.scheduled = Some("nightly".into());
    run.started = Utc::now() - Duration::hours(12);
    m.history().upsert(&run).unwrap();
    let out = Command::new(bin("persnap"))
        .args(["schedule", "notify", "nightly"])
        .env("PERSNAP_UNIT_DIR", m.units())
        .env("PERSNAP_DATA_DIR", m.data())
        .env("SERVICE_RESULT", "timeout")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("hung"), "{said}");
    let runs = m.history().load().unwrap();
    assert!(
        matches!(&runs[0].outcome, Outcome::Failed { message, .. } if message.contains("still running after 12 hours")),
        "{:?}",
        runs[0].outcome
    );
    assert_eq!(
        persnap::protection::reason(&runs[0].outcome),
        "it hung and was stopped after 12 hours"
    );
}

/// Another local user makes `/tmp/persnap-<uid>` before a scheduled run
/// that starts while its maker is logged out (no runtime folder): the run
/// still takes its run lock — in the folder root makes for that user — and
/// backs up.
#[test]
fn a_tmp_folder_taken_by_another_user_does_not_stop_a_scheduled_run() {
    if !require_root("a_tmp_folder_taken_by_another_user_does_not_stop_a_scheduled_run") {
        return;
    }
    const OTHER_USER: &str = "persnap-sched-tmp";
    if Command::new("id")
        .arg(OTHER_USER)
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        run_ok(Command::new("useradd").args(["--create-home", OTHER_USER]));
    }
    let uid: u32 = run_ok(Command::new("id").args(["-u", OTHER_USER]))
        .parse()
        .unwrap();
    let (store, dest, history) = (
        user_dir("persnap-sched-store-", uid),
        user_dir("persnap-sched-dest-", uid),
        user_dir("persnap-sched-data-", uid),
    );
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let units = tempfile::tempdir().unwrap();
    let out = schedule_through_helper_into(
        "tmp-taken",
        store.path(),
        dest.path(),
        history.path(),
        uid,
        units.path(),
        None,
        None,
        "sqlite-online",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Taken first by someone else (nobody), private to them.
    let taken = std::path::PathBuf::from(format!("/tmp/persnap-{uid}"));
    let _ = std::fs::remove_dir_all(&taken);
    std::fs::create_dir(&taken).unwrap();
    std::os::unix::fs::chown(&taken, Some(65534), Some(65534)).unwrap();
    let service =
        std::fs::read_to_string(units.path().join("persnap-backup-tmp-taken.service")).unwrap();
    let run = try_service(&service);
    std::fs::remove_dir_all(&taken).unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let backup = std::path::PathBuf::from(String::from_utf8_lossy(&run.stdout).trim());
    check_backup(&backup, "persistence.db");
    let own = persnap::sys::user_run_dir(uid);
    let meta = std::fs::symlink_metadata(&own).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o700));
}

/// `sudo persnap schedule add --repo …`: a schedule made as root would
/// open its repositories (and start rclone) as root. Refused, in words,
/// and nothing installed.
#[test]
fn a_schedule_made_as_root_into_a_repository_is_refused() {
    if !require_root("a_schedule_made_as_root_into_a_repository_is_refused") {
        return;
    }
    use persnap::repository::{Address, Keep, Password, Unlock};
    let (store, staging, history) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let units = tempfile::tempdir().unwrap();
    let unlock = Unlock::new(
        &Address::parse("sftp:backup@127.0.0.1:/srv/repo").unwrap(),
        &Password::new("the password"),
    );
    let out = schedule_through_helper_into(
        "root-repo",
        store.path(),
        staging.path(),
        history.path(),
        0,
        units.path(),
        Some(persnap::protocol::ScheduleRepositoryRequest {
            unlock,
            keep: Keep::default(),
            staged: true,
        }),
        None,
        "sqlite-online",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("made as root would open its repositories as root"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_dir(units.path()).unwrap().count(),
        0,
        "nothing installed"
    );
}

/// node_exporter's textfile (issue #31): set once by the administrator
/// (`persnap monitoring set --textfile`), written at once, and rewritten
/// by the service's `schedule notify` after each scheduled run, as root,
/// from the schedule's history: the metrics follow the run.
#[test]
fn each_scheduled_run_rewrites_the_metrics_textfile() {
    if !require_root("each_scheduled_run_rewrites_the_metrics_textfile") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let m = Machine::new();
    let admin = tempfile::tempdir().unwrap();
    let registry = admin.path().join("databases");
    let textfiles = tempfile::tempdir().unwrap();
    let persnap = |args: &[&str]| {
        Command::new(bin("persnap"))
            .args(args)
            .env("PERSNAP_UNIT_DIR", m.units())
            .env("PERSNAP_DATA_DIR", m.data())
            .env("PERSNAP_REGISTRY_DIR", &registry)
            .env("PERSNAP_LOG_DIR", admin.path().join("logs"))
            .output()
            .unwrap()
    };
    let add = persnap(&[
        "database",
        "add",
        "orders",
        "--source",
        store.path().to_str().unwrap(),
        "--dest",
        dest.backups.to_str().unwrap(),
        "--method",
        "sqlite-online",
        "--at",
        "hourly",
    ]);
    assert!(add.status.success(), "{}", stderr(&add));
    // A folder others could change is refused before anything is kept:
    // whoever could swap persnap.prom for a link would have root write
    // where they liked.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let shared = textfiles.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = persnap(&["monitoring", "set", "--textfile", shared.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("writable by their owner only"),
        "{}",
        stderr(&refused)
    );
    assert!(!admin.path().join("monitoring.json").exists());
    std::fs::remove_dir(&shared).unwrap();
    // node_exporter's folder is its account's (Debian: prometheus): the
    // file is written as that account, never by root in its folder.
    const NOBODY: u32 = 65534;
    std::os::unix::fs::chown(textfiles.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let set = persnap(&[
        "monitoring",
        "set",
        "--textfile",
        textfiles.path().to_str().unwrap(),
    ]);
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(admin.path().join("monitoring.json").is_file());
    let prom = textfiles.path().join("persnap.prom");
    let metrics = || std::fs::read_to_string(&prom).unwrap();
    assert!(
        metrics().contains("persnap_state{database=\"orders\",state=\"never\"} 1"),
        "written at once: {}",
        metrics()
    );
    assert_eq!(std::fs::metadata(&prom).unwrap().uid(), NOBODY);
    // A textfile alone needs no hourly watch.
    assert!(!m.units().join("persnap-watch.timer").exists());

    // The scheduled run and its ExecStopPost, as systemd runs them.
    let service = std::fs::read_dir(m.units())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("persnap-backup-")
                && p.extension().is_some_and(|e| e == "service")
        })
        .unwrap();
    let text = std::fs::read_to_string(&service).unwrap();
    let exec = directive_words(&text, "ExecStart");
    let post = directive_words(&text, "ExecStopPost");
    let unit_env = |cmd: &mut Command| {
        cmd.env_clear()
            .env("PERSNAP_DATA_DIR", m.data())
            .env("PERSNAP_UNIT_DIR", m.units())
            .env("PERSNAP_REGISTRY_DIR", &registry)
            .env("PERSNAP_LOG_DIR", admin.path().join("logs"));
    };
    let mut run = Command::new(&exec[0]);
    run.args(&exec[1..]);
    unit_env(&mut run);
    let ran = run.output().unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    let mut notify = Command::new(&post[0]);
    notify.args(&post[1..]).env("SERVICE_RESULT", "success");
    unit_env(&mut notify);
    let notified = notify.output().unwrap();
    assert!(notified.status.success(), "{}", stderr(&notified));
    let after = metrics();
    assert_eq!(std::fs::metadata(&prom).unwrap().uid(), NOBODY);
    assert!(
        after.contains("persnap_protected{database=\"orders\"} 1")
            && after.contains("persnap_state{database=\"orders\",state=\"protected\"} 1"),
        "rewritten after the run: {after}"
    );
    let show = persnap(&["monitoring", "show"]);
    assert!(
        String::from_utf8_lossy(&show.stdout).contains(&prom.display().to_string()),
        "{}",
        String::from_utf8_lossy(&show.stdout)
    );

    // Stopped: nothing is written any more.
    let unset = persnap(&["monitoring", "set", "--no-textfile"]);
    assert!(unset.status.success(), "{}", stderr(&unset));
    std::fs::remove_file(&prom).unwrap();
    let notified = notify.output().unwrap();
    assert!(notified.status.success(), "{}", stderr(&notified));
    assert!(!prom.exists());
}

/// Run `cmd` with `stdin` on its standard input, and take what it said.
fn output_with_stdin(cmd: &mut Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A ping server on loopback: every request's method, path with query
/// and body, answered 200 (or never, when it hangs).
struct PingServer {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

impl PingServer {
    fn start(hang: bool) -> PingServer {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = seen.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if hang {
                    // Taken, never answered.
                    held.push(stream);
                    continue;
                }
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut words = line.split_whitespace();
                let (method, target) = (
                    words.next().unwrap_or_default().to_owned(),
                    words.next().unwrap_or_default().to_owned(),
                );
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                keep.lock().unwrap().push((
                    method,
                    target,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                );
            }
        });
        PingServer { port, seen }
    }

    fn take(&self) -> Vec<(String, String, String)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// A throwaway certificate authority and a certificate it signed for
/// localhost: (the authority's PEM, the server's certificate, its key).
fn test_certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| run_ok(Command::new("openssl").current_dir(dir).args(args));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=persnap test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// aiosmtpd on loopback, killed when dropped.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    inbox: std::path::PathBuf,
}

impl SmtpServer {
    fn start(cert: &Path, key: &Path, inbox: &Path, user: &str, password: &str) -> SmtpServer {
        use std::io::BufRead;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/common/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([cert, key, inbox])
            .args([user, password])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("aiosmtpd did not start (pip install aiosmtpd==1.4.6): {line:?}")
        });
        SmtpServer {
            child,
            port,
            inbox: inbox.to_owned(),
        }
    }

    /// The messages it took, oldest first.
    fn messages(&self) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(&self.inbox)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` holding `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if meta.is_file()
            && std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_scheduled_run_pings_and_mails_what_happened() {
    if !require_root("a_scheduled_run_pings_and_mails_what_happened") {
        return;
    }
    const TOKEN: &str = "tok-9f3a1c";
    const MAIL_PASSWORD: &str = "mail-pw-7Qx2";
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let m = Machine::new();
    let admin = tempfile::tempdir().unwrap();
    let registry = admin.path().join("databases");
    let certs = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificates(certs.path());
    let smtp = SmtpServer::start(&cert, &key, inbox.path(), "persnap", MAIL_PASSWORD);
    let pings = PingServer::start(false);
    let env = |cmd: &mut Command| {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("PERSNAP_UNIT_DIR", m.units())
            .env("PERSNAP_DATA_DIR", m.data())
            .env("PERSNAP_REGISTRY_DIR", &registry)
            .env("PERSNAP_LOG_DIR", admin.path().join("logs"));
    };
    let persnap_with = |args: &[&str], stdin: &str| {
        let mut cmd = Command::new(bin("persnap"));
        cmd.args(args);
        env(&mut cmd);
        output_with_stdin(&mut cmd, stdin)
    };
    let add = persnap_with(
        &[
            "database",
            "add",
            "orders",
            "--source",
            store.path().to_str().unwrap(),
            "--dest",
            dest.backups.to_str().unwrap(),
            "--method",
            "sqlite-online",
            "--at",
            "hourly",
        ],
        "",
    );
    assert!(add.status.success(), "{}", stderr(&add));

    // A ping for a database that does not exist is refused in words.
    let wrong = persnap_with(&["monitoring", "set", "--ping", "invoices"], "http://x/y\n");
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("No protected database or schedule is named invoices"),
        "{}",
        stderr(&wrong)
    );

    // The address and the password come on standard input and from a
    // file, never on the command line.
    let ping_url = format!("http://127.0.0.1:{}/ping/{TOKEN}", pings.port);
    let set = persnap_with(
        &["monitoring", "set", "--ping", "orders"],
        &format!("{ping_url}\n"),
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let password_file = certs.path().join("mail-password");
    std::fs::write(&password_file, format!("{MAIL_PASSWORD}\n")).unwrap();
    let server = format!("localhost:{}", smtp.port);
    let set = persnap_with(
        &[
            "monitoring",
            "set",
            "--mail-server",
            &server,
            "--mail-security",
            "starttls",
            "--mail-user",
            "persnap",
            "--mail-password-file",
            password_file.to_str().unwrap(),
            "--mail-from",
            "persnap@corr-01.test",
            "--mail-to",
            "ops@example.test",
            "--mail-ca",
            ca.to_str().unwrap(),
        ],
        "",
    );
    assert!(set.status.success(), "{}", stderr(&set));
    // The password kept is never sent to another server: a new server
    // needs it again.
    let moved = persnap_with(
        &["monitoring", "set", "--mail-server", "smtp.elsewhere.test"],
        "",
    );
    assert!(!moved.status.success());
    assert!(
        stderr(&moved).contains("give the password again"),
        "{}",
        stderr(&moved)
    );
    std::fs::remove_file(&password_file).unwrap();
    let shown = persnap_with(&["monitoring", "show"], "");
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains(&format!(
            "orders's scheduled runs ping http://127.0.0.1:{}",
            pings.port
        )),
        "{shown}"
    );
    assert!(
        shown.contains("to ops@example.test from persnap@corr-01.test"),
        "{shown}"
    );
    let secrets = admin.path().join("monitoring.secrets.json");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&secrets).unwrap().mode() & 0o777, 0o600);

    // The test button's command: one message, one ping.
    let tested = persnap_with(&["monitoring", "test"], "");
    assert!(tested.status.success(), "{}", stderr(&tested));
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].contains("a test message"), "{}", mail[0]);
    let seen = pings.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "POST");
    assert!(
        seen[0].1.starts_with(&format!("/ping/{TOKEN}?rid=")),
        "{seen:?}"
    );

    // The scheduled run and its ExecStopPost, as systemd runs them: one
    // invocation id for both.
    let service = std::fs::read_dir(m.units())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("persnap-backup-")
                && p.extension().is_some_and(|e| e == "service")
        })
        .unwrap();
    let text = std::fs::read_to_string(&service).unwrap();
    let exec = directive_words(&text, "ExecStart");
    let post = directive_words(&text, "ExecStopPost");
    let invocation = "0123456789abcdef0123456789abcdef";
    let rid = "01234567-89ab-cdef-0123-456789abcdef";
    let run_and_notify = |result: &str| {
        let mut run = Command::new(&exec[0]);
        run.args(&exec[1..]);
        env(&mut run);
        run.env("INVOCATION_ID", invocation);
        let started = std::time::Instant::now();
        let ran = run.output().unwrap();
        let run_took = started.elapsed();
        let mut notify = Command::new(&post[0]);
        notify.args(&post[1..]);
        env(&mut notify);
        notify
            .env("INVOCATION_ID", invocation)
            .env("SERVICE_RESULT", result);
        let started = std::time::Instant::now();
        let notified = notify.output().unwrap();
        assert!(notified.status.success(), "{}", stderr(&notified));
        (ran, run_took, notified, started.elapsed())
    };
    let (ran, plain_run_took, ..) = run_and_notify("success");
    assert!(ran.status.success(), "{}", stderr(&ran));
    let seen = pings.take();
    assert_eq!(
        seen.iter()
            .map(|(m, t, _)| (m.as_str(), t.as_str()))
            .collect::<Vec<_>>(),
        [
            ("POST", format!("/ping/{TOKEN}/start?rid={rid}").as_str()),
            ("POST", format!("/ping/{TOKEN}?rid={rid}").as_str()),
        ],
        "{seen:?}"
    );
    assert!(seen[1].2.contains("succeeded"), "{seen:?}");
    assert_eq!(smtp.messages().len(), 1, "no mail for a good run");

    // A run that fails: its store is gone. The fail ping and the mail
    // carry the plain reason the card shows.
    let moved = store.path().with_extension("moved");
    std::fs::rename(store.path(), &moved).unwrap();
    let (ran, ..) = run_and_notify("exit-code");
    std::fs::rename(&moved, store.path()).unwrap();
    assert!(!ran.status.success());
    let seen = pings.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].1, format!("/ping/{TOKEN}/fail?rid={rid}"));
    assert!(seen[1].2.contains("failed"), "{seen:?}");
    let history = m.history().load().unwrap();
    let Outcome::Failed { message, .. } = &history.last().unwrap().outcome else {
        panic!("{:?}", history.last());
    };
    assert!(
        seen[1].2.contains(message.as_str()),
        "{seen:?} lacks {message}"
    );
    let mail = smtp.messages();
    assert_eq!(mail.len(), 2, "{mail:?}");
    assert!(mail[1].contains("Subject: persnap on "), "{}", mail[1]);
    assert!(
        mail[1].contains("the backup of orders failed"),
        "{}",
        mail[1]
    );
    assert!(mail[1].contains("To: ops@example.test"), "{}", mail[1]);
    let unfolded = mail[1].replace("=\r\n", "").replace("=\n", "");
    assert!(unfolded.contains("What to do"), "{unfolded}");

    // While a ping or mail is set, the hourly watch is installed beside
    // the schedules' units.
    let watch_unit = m.units().join("persnap-watch.service");
    let watch = directive_words(&std::fs::read_to_string(&watch_unit).unwrap(), "ExecStart");
    assert_eq!(watch[1..], ["monitoring", "watch"], "{watch:?}");
    assert!(m.units().join("persnap-watch.timer").is_file());

    // The summary: mailed by the first watch, then not again that day.
    let set = persnap_with(&["monitoring", "set", "--summary", "daily"], "");
    assert!(set.status.success(), "{}", stderr(&set));
    let shown = persnap_with(&["monitoring", "show"], "");
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("mailed every morning at 07:00"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
    let watched = persnap_with(&["monitoring", "watch"], "");
    assert!(watched.status.success(), "{}", stderr(&watched));
    assert!(pings.take().is_empty(), "no run was missed");
    let mail = smtp.messages();
    assert_eq!(mail.len(), 3, "{mail:?}");
    let summary = mail[2].replace("=\r\n", "").replace("=\n", "");
    assert!(
        summary.contains("1 of 1 not protected: orders (failing)"),
        "{summary}"
    );
    assert!(
        summary.contains("The daily summary of the backups on"),
        "{summary}"
    );
    assert!(
        summary.contains("orders: The scheduled backup") && summary.contains("failed"),
        "the words of persnap status: {summary}"
    );
    let watched = persnap_with(&["monitoring", "watch"], "");
    assert!(watched.status.success(), "{}", stderr(&watched));
    assert_eq!(smtp.messages().len(), 3, "one summary a day");

    // The token and the password are nowhere but the secrets file: not in
    // the settings, the history, the log, the units.
    for secret in [TOKEN, MAIL_PASSWORD] {
        let mut found = files_holding(admin.path(), secret);
        found.extend(files_holding(&m.data(), secret));
        found.extend(files_holding(&m.units(), secret));
        assert_eq!(found, std::slice::from_ref(&secrets), "{secret}");
    }
    let log = files_holding(&admin.path().join("logs"), "orders");
    assert!(!log.is_empty(), "the runs are logged");

    // A ping server that takes the connection and never answers delays
    // neither the run nor its ExecStopPost past the pings' deadline (10 s).
    let hanging = PingServer::start(true);
    let set = persnap_with(
        &["monitoring", "set", "--ping", "orders"],
        &format!("http://127.0.0.1:{}/ping/{TOKEN}\n", hanging.port),
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let (ran, run_took, notified, notify_took) = run_and_notify("success");
    assert!(ran.status.success(), "{}", stderr(&ran));
    // The ping's deadline, and slack for a loaded machine.
    let deadline = std::time::Duration::from_secs(10 + 5);
    assert!(
        run_took < plain_run_took + deadline,
        "{run_took:?} against {plain_run_took:?}"
    );
    assert!(notify_took < deadline, "{notify_took:?}");
    assert!(
        stderr(&notified).contains("did not take the ping"),
        "{}",
        stderr(&notified)
    );
    assert!(!stderr(&notified).contains(TOKEN), "{}", stderr(&notified));

    // The login and the own authority can each go alone; the password
    // kept goes with the login.
    let plain = persnap_with(&["monitoring", "set", "--no-mail-user", "--no-mail-ca"], "");
    assert!(plain.status.success(), "{}", stderr(&plain));
    let shown = persnap_with(&["monitoring", "show"], "");
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("mail: to ops@example.test")
            && !shown.contains("logs in as")
            && !shown.contains("also trusts"),
        "{shown}"
    );
    assert!(files_holding(admin.path(), MAIL_PASSWORD).is_empty());

    // Nothing left to tell: the watch goes, and the summary with the mail.
    let unset = persnap_with(
        &["monitoring", "set", "--no-mail", "--no-ping", "orders"],
        "",
    );
    assert!(unset.status.success(), "{}", stderr(&unset));
    assert!(
        stderr(&unset).contains("The hourly watch is off"),
        "{}",
        stderr(&unset)
    );
    assert!(!watch_unit.exists());
    assert!(!m.units().join("persnap-watch.timer").exists());
    let shown = persnap_with(&["monitoring", "show"], "");
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains("summary:"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
}

#[test]
fn a_missed_run_is_told_to_its_ping_once() {
    use persnap::schedule::systemd;
    if !require_root("a_missed_run_is_told_to_its_ping_once") {
        return;
    }
    let m = Machine::new();
    let admin = tempfile::tempdir().unwrap();
    let s = missed_daily(&m.data());
    systemd::write_units(&s, &m.units(), &bin("persnap")).unwrap();
    let pings = PingServer::start(false);
    let persnap = |args: &[&str], stdin: &str| {
        output_with_stdin(
            Command::new(bin("persnap"))
                .args(args)
                .env("PERSNAP_UNIT_DIR", m.units())
                .env("PERSNAP_DATA_DIR", m.data())
                .env("PERSNAP_REGISTRY_DIR", admin.path().join("databases"))
                .env("PERSNAP_LOG_DIR", admin.path().join("logs")),
            stdin,
        )
    };
    // The hourly watch runs its program as root: a persnap anybody else
    // could replace is refused for it (the settings are kept, and said).
    let theirs = tempfile::tempdir().unwrap();
    let copy = theirs.path().join("persnap");
    std::fs::copy(bin("persnap"), &copy).unwrap();
    std::os::unix::fs::chown(theirs.path(), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&copy, Some(65534), Some(65534)).unwrap();
    let planted = output_with_stdin(
        Command::new(&copy)
            .args(["monitoring", "set", "--ping", "daily"])
            .env("PERSNAP_UNIT_DIR", m.units())
            .env("PERSNAP_DATA_DIR", m.data())
            .env("PERSNAP_REGISTRY_DIR", admin.path().join("databases"))
            .env("PERSNAP_LOG_DIR", admin.path().join("logs")),
        "http://127.0.0.1:9/ping/tok-missed\n",
    );
    assert!(!planted.status.success());
    assert!(
        stderr(&planted).contains("the hourly watch would run"),
        "{}",
        stderr(&planted)
    );
    assert!(!m.units().join("persnap-watch.service").exists());
    drop(theirs);

    // A service that cannot be reached yet (the network not up after a
    // boot): the missed run is not marked told, and the next watch tells it.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = down.local_addr().unwrap().port();
    drop(down);
    let set = persnap(
        &["monitoring", "set", "--ping", "daily"],
        &format!("http://127.0.0.1:{down_port}/ping/tok-missed\n"),
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let watched = persnap(&["monitoring", "watch"], "");
    assert_eq!(watched.status.code(), Some(1), "{}", stderr(&watched));
    assert!(
        stderr(&watched).contains("could not be told yet"),
        "{}",
        stderr(&watched)
    );
    let set = persnap(
        &["monitoring", "set", "--ping", "daily"],
        &format!("http://127.0.0.1:{}/ping/tok-missed\n", pings.port),
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let watched = persnap(&["monitoring", "watch"], "");
    assert!(watched.status.success(), "{}", stderr(&watched));
    let seen = pings.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].1.starts_with("/ping/tok-missed/fail?rid="),
        "{seen:?}"
    );
    assert!(seen[0].2.contains("did not run"), "{seen:?}");
    // The next watch knows it was told.
    let again = persnap(&["monitoring", "watch"], "");
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(pings.take(), []);

    // A task run as a named Windows account cannot read the secrets to
    // tell its own failure: the watch tells it, once.
    let named = tempfile::tempdir().unwrap();
    let mut s = missed_daily(named.path());
    s.name = "named".into();
    s.run_as = Some(r"CORP\svc-backup".into());
    systemd::write_units(&s, &m.units(), &bin("persnap")).unwrap();
    let mut run = persnap::history::Run::starting(
        persnap::history::RunKind::Backup,
        "r1".into(),
        "t1".into(),
        s.source.clone(),
        s.store_name.clone(),
        s.dest.clone(),
    );
    run.scheduled = Some("named".into());
    run.started = chrono::Utc::now() - chrono::Duration::minutes(100);
    run.outcome = Outcome::Failed {
        step: persnap::progress::Phase::Snapshot,
        kind: persnap::ErrorKind::Snapshot,
        message: "the shadow copy storage is full".into(),
    };
    History::at(named.path()).upsert(&run).unwrap();
    let set = persnap(
        &["monitoring", "set", "--ping", "named"],
        &format!("http://127.0.0.1:{}/ping/tok-named\n", pings.port),
    );
    assert!(set.status.success(), "{}", stderr(&set));
    for told in [1, 0] {
        let watched = persnap(&["monitoring", "watch"], "");
        assert!(watched.status.success(), "{}", stderr(&watched));
        let seen = pings.take();
        assert_eq!(seen.len(), told, "{seen:?}");
        if told == 1 {
            assert!(
                seen[0].1.starts_with("/ping/tok-named/fail?rid="),
                "{seen:?}"
            );
            assert!(
                seen[0].2.contains("the shadow copy storage is full"),
                "{seen:?}"
            );
        }
    }
}
