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
