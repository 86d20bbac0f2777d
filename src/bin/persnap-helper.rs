//! `persnap-helper`: the small program that does persnap's privileged work.
//!
//! Started by the GUI or CLI through pkexec (Linux) or UAC (Windows) — or
//! directly when the caller is root — it reads ONE request frame, validates
//! all of it (the elevation vouches for the caller, not for the request),
//! runs the engine, and streams event frames back, ending with exactly one
//! `done` or `error` frame. A `cancel` frame, or the caller hanging up,
//! cancels the work cleanly. Frames travel over stdin/stdout, or on Windows
//! (`--pipe NAME --parent-pid PID`) over the caller's named pipe after
//! checking that the pipe's server is that parent process. It never runs a shell; the only external tool (lvm) is
//! called by absolute path with a clean environment. Files it creates are
//! handed to the invoking user (`PKEXEC_UID`).
//!
//! Exit codes: 0 done; 2 request refused (bad input); 3 snapshot failed;
//! 4 copy failed; 5 verification failed; 6 cancelled; 7 busy; 9 protocol
//! error (bad frame, wrong version); 1 internal error.

use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use persnap::backup::{self, BackupFailure};
use persnap::error::{Error, ErrorKind};
use persnap::history::{Recorder, Run};
use persnap::progress::{CancelToken, Level, Phase, Progress};
use persnap::protocol::{self, Control, Event, FrameError, Reply, Request, Validated};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match persnap::pipe::parse_helper_args(&args) {
        Ok(None) => serve(Box::new(io::stdin()), Box::new(io::stdout())),
        Ok(Some(pipe)) => serve_pipe(&pipe),
        Err(e) => {
            let _ = writeln!(io::stderr(), "persnap-helper: {e}");
            ErrorKind::BadInput.exit_code()
        }
    };
    std::process::exit(code);
}

/// Windows: connect to the caller's pipe and check it is the caller's.
#[cfg(windows)]
fn serve_pipe(args: &persnap::pipe::HelperArgs) -> i32 {
    use persnap::pipe::windows::{Pipe, SharedPipe};
    let connected = Pipe::open(&args.pipe)
        .map_err(|e| e.to_string())
        .and_then(|pipe| {
            let server = pipe.server_pid().map_err(|e| e.to_string())?;
            persnap::pipe::check_peer("server", args.parent_pid, server)?;
            Ok(Arc::new(pipe))
        });
    match connected {
        Ok(pipe) => serve(
            Box::new(SharedPipe(Arc::clone(&pipe))),
            Box::new(SharedPipe(pipe)),
        ),
        // Nobody to tell but the exit code, which the caller reads.
        Err(_) => ErrorKind::Protocol.exit_code(),
    }
}

#[cfg(not(windows))]
fn serve_pipe(_args: &persnap::pipe::HelperArgs) -> i32 {
    let _ = writeln!(
        io::stderr(),
        "persnap-helper: --pipe is only used on Windows; here requests come on stdin"
    );
    ErrorKind::BadInput.exit_code()
}

/// Writes events to the caller; a caller that went away cancels the work.
#[derive(Clone)]
struct Events {
    cancel: CancelToken,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Events {
    fn send(&self, event: Event) {
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if protocol::write_frame(&mut *out, &event).is_err() {
            self.cancel.cancel();
        }
    }

    /// The final frame of a request that succeeded; exit code 0.
    fn done(&self, reply: Reply) -> i32 {
        self.send(Event::Done {
            result: Box::new(reply),
        });
        0
    }

    fn fail(&self, error: &Error, step: Option<Phase>) -> i32 {
        self.send(Event::Error {
            kind: error.kind(),
            step,
            message: error.to_string(),
        });
        error.kind().exit_code()
    }
}

impl Progress for Events {
    fn phase(&mut self, phase: Phase) {
        self.send(Event::Phase { phase });
    }
    fn bytes(&mut self, phase: Phase, bytes: u64, total: u64) {
        self.send(Event::Progress {
            phase,
            bytes,
            total,
        });
    }
    fn log(&mut self, level: Level, message: &str) {
        self.send(Event::Log {
            level,
            message: message.to_owned(),
        });
    }
}

impl Recorder for Events {
    fn record(&mut self, run: &Run) -> persnap::Result<()> {
        self.send(Event::Run {
            run: Box::new(run.clone()),
        });
        Ok(())
    }
}

fn serve(input: Box<dyn Read + Send>, output: Box<dyn Write + Send>) -> i32 {
    persnap::fsutil::lower_io_priority();
    let mut events = Events {
        cancel: CancelToken::new(),
        out: Arc::new(Mutex::new(output)),
    };
    let mut input = BufReader::new(input);
    let request = match protocol::read_frame::<Request>(&mut input) {
        Ok(r) => r,
        Err(e) => {
            return events.fail(
                &Error::Protocol {
                    detail: e.to_string(),
                },
                None,
            );
        }
    };
    let validated = match protocol::validate(request) {
        Ok(v) => v,
        Err(e) => return events.fail(&e, None),
    };
    watch_for_cancel(input, events.cancel.clone());
    match validated {
        Validated::Backup(req) => {
            let cancel = events.cancel.clone();
            let mut recorder = events.clone();
            match backup::run_backup(&req, &mut recorder, &mut events, &cancel) {
                Ok(report) => {
                    hand_to_invoking_user(&report.backup_dir);
                    events.done(Reply::Backup {
                        backup_dir: report.backup_dir,
                        manifest: report.manifest,
                    })
                }
                Err(BackupFailure { step, error, .. }) => events.fail(&error, Some(step)),
            }
        }
        Validated::Probe {
            request,
            dest_given,
            test_snapshot,
        } => match persnap::probe::probe(&request, dest_given, test_snapshot) {
            Ok(report) => events.done(Reply::Probe { report }),
            Err(e) => events.fail(&e, Some(Phase::Prepare)),
        },
        Validated::Restore(req) => {
            let cancel = events.cancel.clone();
            let mut recorder = events.clone();
            match persnap::restore::run_restore(&req, &mut recorder, &mut events, &cancel) {
                Ok(report) => events.done(Reply::Restore { report }),
                Err((step, error)) => events.fail(&error, Some(step)),
            }
        }
        Validated::ScheduleAdd(schedule) => {
            let installed = invoking_user_owns(&schedule.history_dir)
                .and_then(|_| persnap::schedule::install(&schedule, &scheduled_exe()));
            match installed {
                Ok(installed) => events.done(Reply::ScheduleAdded {
                    schedule,
                    installed,
                }),
                Err(e) => events.fail(&e, Some(Phase::Prepare)),
            }
        }
        Validated::ScheduleRemove { name } => match persnap::schedule::uninstall(&name) {
            Ok(existed) => events.done(Reply::ScheduleRemoved { name, existed }),
            Err(e) => events.fail(&e, Some(Phase::Prepare)),
        },
        Validated::Cleanup { dests } => {
            let removed = backup::sweep_leftovers(&dests);
            let failed = removed.iter().any(|l| l.starts_with("Could not"));
            events.send(Event::Done {
                result: Box::new(Reply::Cleanup { removed }),
            });
            if failed {
                ErrorKind::Snapshot.exit_code()
            } else {
                0
            }
        }
    }
}

/// Cancel when the caller says so or goes away (stdin closes).
fn watch_for_cancel(mut input: BufReader<Box<dyn Read + Send>>, cancel: CancelToken) {
    std::thread::spawn(move || {
        loop {
            match protocol::read_frame::<Control>(&mut input) {
                Ok(Control::Cancel) | Err(FrameError::Eof) | Err(FrameError::Io(_)) => break,
                Err(_) => continue, // a garbled control frame is ignored, not obeyed
            }
        }
        cancel.cancel();
    });
}

/// The persnap executable a schedule runs: the one installed beside this
/// helper (development builds), else the packaged one. Never from the
/// request.
fn scheduled_exe() -> std::path::PathBuf {
    let name = format!("persnap{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|helper| Some(helper.parent()?.join(&name)))
        .filter(|p| p.is_file());
    beside.unwrap_or_else(|| std::path::PathBuf::from(INSTALLED_PERSNAP))
}

#[cfg(unix)]
const INSTALLED_PERSNAP: &str = "/usr/bin/persnap";
#[cfg(windows)]
const INSTALLED_PERSNAP: &str = r"C:\Program Files\persnap\persnap.exe";

/// The user pkexec started the helper for (none: started directly).
#[cfg(unix)]
fn pkexec_uid() -> Option<u32> {
    std::env::var("PKEXEC_UID").ok()?.parse().ok()
}

/// Scheduled runs write history as root into this folder: under pkexec it
/// must be the invoking user's own.
#[cfg(unix)]
fn invoking_user_owns(dir: &Path) -> persnap::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(uid) = pkexec_uid() else {
        return Ok(());
    };
    let owner = std::fs::symlink_metadata(dir).map(|m| m.uid()).ok();
    if owner == Some(uid) {
        return Ok(());
    }
    Err(Error::Refused {
        field: "history_dir",
        reason: format!(
            "{} does not belong to you (uid {uid}); a schedule records into your own history folder",
            dir.display()
        ),
    })
}

/// Windows: UAC approved an administrator; the folder's ACL governs it.
#[cfg(windows)]
fn invoking_user_owns(_dir: &Path) -> persnap::Result<()> {
    Ok(())
}

/// Under pkexec, give the new backup to the user who asked for it.
#[cfg(unix)]
fn hand_to_invoking_user(dir: &Path) {
    let Some(uid) = pkexec_uid() else {
        return;
    };
    let gid = primary_gid(uid);
    let entries = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path());
    for path in std::iter::once(dir.to_owned()).chain(entries) {
        // lchown: never follow a link, though the folder holds none.
        if let Err(e) = std::os::unix::fs::lchown(&path, Some(uid), gid) {
            let _ = writeln!(
                io::stderr(),
                "persnap-helper: cannot give {} to uid {uid}: {e}",
                path.display()
            );
        }
    }
}

/// Windows: UAC elevates the same user (or an administrator who approved
/// the prompt); new files inherit the backup folder's permissions.
#[cfg(windows)]
fn hand_to_invoking_user(_dir: &Path) {}

#[cfg(unix)]
fn primary_gid(uid: u32) -> Option<u32> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r writes into pwd and buf, both sized as declared.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pwd.pw_gid)
}
