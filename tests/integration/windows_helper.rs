//! The helper's Windows channel, with the real helper executable (run under
//! wine in CI): it connects to the caller's named pipe only after checking
//! the pipe's server is the parent it was given, then serves one request
//! with the same frames as on Linux. UAC itself cannot be shown under wine;
//! the front end's ShellExecuteExW path is covered by unit tests.
#![cfg(windows)]

use std::io::BufReader;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use persnap::loadgen::{self, Mode};
use persnap::method::MethodChoice;
use persnap::pipe::windows::{Pipe, SharedPipe, current_user_sid};
use persnap::pipe::{self, HelperArgs};
use persnap::protocol::{self, BackupOptions, Event, Reply, Request};

fn helper() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("persnap-helper.exe")
}

fn server(args: &HelperArgs) -> Pipe {
    Pipe::create(&args.pipe, &pipe::pipe_sddl(&current_user_sid().unwrap())).unwrap()
}

#[test]
fn helper_serves_a_request_over_the_pipe_of_its_parent() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    loadgen::init(&src.path().join("persistence.db"), Mode::Wal, 1).unwrap();
    let args = HelperArgs {
        pipe: pipe::random_pipe_name(),
        parent_pid: std::process::id(),
    };
    let server = server(&args);
    let mut child = Command::new(helper())
        .args(pipe::helper_command_line(&args).split(' '))
        .spawn()
        .unwrap();
    server.accept(None, Duration::from_secs(60)).unwrap();
    pipe::check_peer("client", child.id(), server.client_pid().unwrap()).unwrap();

    let server = Arc::new(server);
    let request = Request::Probe {
        source: persnap::volume::canonical(src.path()).unwrap(),
        dest: Some(persnap::volume::canonical(dest.path()).unwrap()),
        store_name: "persistence.db".into(),
        method: MethodChoice::Auto,
        options: BackupOptions::default(),
        test_snapshot: false,
    };
    protocol::write_frame(&mut SharedPipe(Arc::clone(&server)), &request).unwrap();
    let mut events = BufReader::new(SharedPipe(Arc::clone(&server)));
    let mut last = None;
    while let Ok(event) = protocol::read_frame::<Event>(&mut events) {
        last = Some(event);
    }
    assert!(child.wait().unwrap().success());
    let Some(Event::Done { result }) = last else {
        panic!("no final frame: {last:?}")
    };
    let Reply::Probe { report } = *result else {
        panic!("not a probe reply: {result:?}")
    };
    assert_eq!(report.store.files[0].name, "persistence.db");
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.contains("Volume Shadow Copy")),
        "{:?}",
        report.steps
    );
}

#[test]
fn helper_refuses_a_pipe_whose_server_is_not_its_parent() {
    let args = HelperArgs {
        pipe: pipe::random_pipe_name(),
        parent_pid: std::process::id(),
    };
    let server = server(&args);
    // The helper is told a different parent: it must hang up without a word.
    let lie = HelperArgs {
        parent_pid: std::process::id() + 4,
        ..args.clone()
    };
    let mut child = Command::new(helper())
        .args(pipe::helper_command_line(&lie).split(' '))
        .spawn()
        .unwrap();
    server.accept(None, Duration::from_secs(60)).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(9), "protocol error exit");
    let mut events = BufReader::new(SharedPipe(Arc::new(server)));
    assert!(
        matches!(
            protocol::read_frame::<Event>(&mut events),
            Err(protocol::FrameError::Eof)
        ),
        "nothing was said"
    );
}

#[test]
fn helper_refuses_names_it_did_not_make() {
    let out = Command::new(helper())
        .args(["--pipe", r"\\.\pipe\spooler", "--parent-pid", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a persnap pipe name"));
}

/// One request to the helper over stdin/stdout (as when already
/// administrator); the last frame it sent.
fn ask_helper(
    helper: &std::path::Path,
    request: &Request,
    env: &[(&str, &std::path::Path)],
) -> Event {
    use std::io::Write;
    let mut child = Command::new(helper)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut frame = Vec::new();
    protocol::write_frame(&mut frame, request).unwrap();
    child.stdin.take().unwrap().write_all(&frame).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut reader = BufReader::new(&out.stdout[..]);
    let mut last = None;
    while let Ok(event) = protocol::read_frame::<Event>(&mut reader) {
        last = Some(event);
    }
    last.expect("the helper said nothing")
}

/// A schedule becomes a Task Scheduler task `\persnap\NAME` (registered by
/// wine's schtasks.exe from persnap's XML) plus its record; removing it
/// deletes both. Calendar expressions Task Scheduler cannot express are
/// refused with the forms it can.
#[test]
fn helper_installs_and_removes_a_task_scheduler_task() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let history = tempfile::tempdir().unwrap();
    let records = tempfile::tempdir().unwrap();
    loadgen::init(&src.path().join("persistence.db"), Mode::Wal, 1).unwrap();
    let name = format!("test-{}", std::process::id());
    let add = |when: &str| Request::ScheduleAdd {
        name: name.clone(),
        source: persnap::volume::canonical(src.path()).unwrap(),
        dest: persnap::volume::canonical(dest.path()).unwrap(),
        store_name: "persistence.db".into(),
        method: MethodChoice::Auto,
        options: BackupOptions::default(),
        when: when.into(),
        history_dir: persnap::fsutil::canonicalize(history.path()).unwrap(),
        run_as: None,
        repository: None,
        offsite: None,
    };
    let env = [("PERSNAP_SCHEDULE_DIR", records.path())];
    // Installed as the setup installs it: in Program Files, which only
    // administrators may change (the build folder may be anywhere).
    let program_files = std::path::PathBuf::from(std::env::var("ProgramFiles").unwrap());
    let install_dir = program_files.join(format!("persnap-test-{}", std::process::id()));
    let helper_exe = installed_in(&install_dir);
    let task_file = std::path::PathBuf::from(std::env::var("windir").unwrap())
        .join("System32")
        .join("Tasks")
        .join("persnap")
        .join(&name);

    match ask_helper(&helper_exe, &add("*-*-01 03:00"), &env) {
        Event::Error { message, .. } => assert!(
            message.contains("is a systemd calendar expression; on Windows say hourly"),
            "{message}"
        ),
        other => panic!("expected a refusal: {other:?}"),
    }
    assert!(!task_file.exists());

    // A task runs persnap.exe as SYSTEM: never one in a folder others may
    // change. Under wine, /tmp (mode 1777) reads as a folder Everyone may
    // empty, as a folder under C:\ with "Authenticated Users: Modify" does
    // on Windows.
    let unsafe_dir =
        std::path::PathBuf::from(format!(r"Z:\tmp\persnap-exe-{}", std::process::id()));
    let unsafe_helper = installed_in(&unsafe_dir);
    match ask_helper(&unsafe_helper, &add("Mon..Fri 22:30"), &env) {
        Event::Error { message, .. } => assert!(
            message.contains("highest rights") && message.contains("Program Files"),
            "{message}"
        ),
        other => panic!("a persnap.exe others may replace was scheduled: {other:?}"),
    }
    std::fs::remove_dir_all(&unsafe_dir).unwrap();
    assert!(!task_file.exists());

    let event = ask_helper(&helper_exe, &add("Mon..Fri 22:30"), &env);
    let Event::Done { result } = event else {
        panic!("not installed: {event:?}")
    };
    let Reply::ScheduleAdded {
        schedule,
        installed,
    } = *result
    else {
        panic!("{result:?}")
    };
    assert!(
        installed.note.contains("runs as SYSTEM"),
        "{}",
        installed.note
    );
    let task = std::fs::read(&task_file).expect("the task is registered");
    let task = String::from_utf8_lossy(&task);
    assert!(task.contains(&format!("persnap backup {name}")), "{task}");
    // (wine's Task Scheduler keeps no action, `<Exec/>`; Windows keeps
    // ours, which the unit tests check: `schedule run NAME` only.)
    assert!(
        !task.contains("--source")
            && (!task.contains("<Arguments>")
                || task.contains(&format!("<Arguments>schedule run {name}</Arguments>"))),
        "no path on the task's command line: {task}"
    );
    assert_eq!(
        persnap::schedule::taskschd::list(records.path()).unwrap(),
        vec![(*schedule).clone()],
        "recorded for listing"
    );
    // SYSTEM's runs record beside the schedule, in the administrators'
    // folder, not in the user's (which a junction could redirect), and
    // that folder lets nobody else write.
    assert_eq!(
        schedule.history_dir,
        records.path().join("history").join(&name),
        "the runs' history is the administrators'"
    );
    persnap::sys::owned_by_admins(records.path()).unwrap();
    persnap::sys::owned_by_admins(&schedule.history_dir).unwrap();

    let Event::Done { result } = ask_helper(
        &helper_exe,
        &Request::ScheduleRemove { name: name.clone() },
        &env,
    ) else {
        panic!("not removed")
    };
    assert!(matches!(
        *result,
        Reply::ScheduleRemoved { existed: true, .. }
    ));
    assert!(!task_file.exists(), "the task is gone");
    assert!(
        persnap::schedule::taskschd::list(records.path())
            .unwrap()
            .is_empty()
    );
    std::fs::remove_dir_all(&install_dir).unwrap();
}

/// The helper and persnap.exe of this build copied into `dir`, as the
/// setup installs them side by side; the copied helper.
fn installed_in(dir: &std::path::Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let built = helper();
    for exe in ["persnap-helper.exe", "persnap.exe"] {
        std::fs::copy(built.with_file_name(exe), dir.join(exe)).unwrap();
    }
    dir.join("persnap-helper.exe")
}
