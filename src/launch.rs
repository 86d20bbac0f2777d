//! Starting the privileged work from the unprivileged front ends.
//!
//! The engine never elevates; this module does, for the CLI and the GUI:
//! - already root/administrator: run the helper next to this executable (or
//!   the installed one) directly, frames over its stdin and stdout;
//! - Linux otherwise: `pkexec /usr/libexec/persnap/persnap-helper`, whose
//!   path the polkit action (installer/linux) is bound to, frames over its
//!   stdin and stdout;
//! - Windows otherwise: the helper beside persnap.exe, started through UAC
//!   (`windows.rs`), frames over a private named pipe.
//!
//! pkexec's and UAC's own failures (dismissed, not authorized, declined, no
//! helper) become plain messages. The `sqlite-online` method needs no
//! elevation and runs in-process (see `persnap::pipeline`).

#[cfg(windows)]
pub mod windows;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use persnap::error::ErrorKind;
use persnap::fsutil;
use persnap::history::Recorder;
use persnap::progress::{CancelToken, Progress};
use persnap::protocol::{self, Control, Event, Reply, Request, answer};

/// Where the packages install the helper; the polkit action names this path.
#[cfg(not(windows))]
pub const INSTALLED_HELPER: &str = "/usr/libexec/persnap/persnap-helper";
pub const PKEXEC: &str = "/usr/bin/pkexec";
/// pkexec's exit status when the user dismissed the authentication dialog.
const PKEXEC_DISMISSED: i32 = 126;
/// pkexec's exit status when polkit said no (or the program is unknown to it).
const PKEXEC_NOT_AUTHORIZED: i32 = 127;

pub use persnap::protocol::RemoteFailure;

/// How the helper will be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperRoute {
    /// The helper executable.
    pub helper: PathBuf,
    /// Through elevation (pkexec, UAC) or directly (already privileged).
    pub elevate: bool,
    /// Extra environment for a helper started directly (pkexec and UAC
    /// start it with a clean one): e.g. `PERSNAP_UNIT_DIR` in tests.
    pub env: Vec<(String, PathBuf)>,
    /// Root only: once the helper runs, this process becomes that user
    /// (a scheduled run records into the user's history as the user).
    pub become_user: Option<u32>,
}

/// Decide how to start the helper, or say plainly why it cannot be.
#[cfg(windows)]
pub fn route() -> Result<HelperRoute, RemoteFailure> {
    let helper = sibling_helper().ok_or_else(|| {
        RemoteFailure::elevation(
            "persnap-helper.exe is missing from persnap's folder. Reinstall persnap (the setup program installs both).",
        )
    })?;
    Ok(HelperRoute {
        helper,
        elevate: !fsutil::is_root(),
        env: Vec::new(),
        become_user: None,
    })
}

/// Decide how to start the helper, or say plainly why it cannot be.
#[cfg(not(windows))]
pub fn route() -> Result<HelperRoute, RemoteFailure> {
    if fsutil::is_root() {
        let helper = sibling_helper().unwrap_or_else(|| PathBuf::from(INSTALLED_HELPER));
        if !helper.is_file() {
            return Err(not_installed(&helper));
        }
        return Ok(HelperRoute {
            helper,
            elevate: false,
            env: Vec::new(),
            become_user: None,
        });
    }
    if !Path::new(PKEXEC).is_file() {
        return Err(RemoteFailure::elevation(
            "Snapshots need administrator rights, and pkexec (polkit) is not installed. Install the pkexec package, or run persnap as root.",
        ));
    }
    let helper = PathBuf::from(INSTALLED_HELPER);
    if !helper.is_file() {
        return Err(not_installed(&helper));
    }
    Ok(HelperRoute {
        helper,
        elevate: true,
        env: Vec::new(),
        become_user: None,
    })
}

/// The helper built beside this executable: same folder, or one up for
/// cargo's test executables (`target/<profile>/deps/`).
fn sibling_helper() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let name = format!("persnap-helper{}", std::env::consts::EXE_SUFFIX);
    [dir.join(&name), dir.parent()?.join(&name)]
        .into_iter()
        .find(|p| p.is_file())
}

fn not_installed(path: &Path) -> RemoteFailure {
    RemoteFailure::elevation(format!(
        "The persnap helper is not installed at {}. Install the persnap package; for a development build run \
         `installer/linux/dev-install.sh` as root (see docs/INSTALL.md, \"Development install\").",
        path.display()
    ))
}

/// The helper request that installs a schedule of `req`, recorded in the
/// history in `history_dir` (created if it is not there yet).
pub fn schedule_request(
    name: &str,
    req: &persnap::backup::BackupRequest,
    at: &str,
    history_dir: &std::path::Path,
    run_as: Option<persnap::protocol::RunAs>,
    repository: Option<persnap::protocol::ScheduleRepositoryRequest>,
    offsite: Option<persnap::protocol::ScheduleRepositoryRequest>,
) -> persnap::Result<Request> {
    persnap::schedule::validate_name(name)?;
    let history_dir = records_folder(history_dir)?;
    Ok(Request::ScheduleAdd {
        name: name.to_owned(),
        source: req.source.clone(),
        dest: req.dest.clone(),
        store_name: req.store_name.clone(),
        method: req.method,
        options: persnap::protocol::BackupOptions::from_request(req),
        when: persnap::schedule::When::parse(at)?.to_string(),
        history_dir,
        run_as,
        repository,
        offsite,
    })
}

/// The history folder scheduled runs record into (created, private to the
/// user, if it is not there yet), as the helper is given it: canonical.
pub fn records_folder(history_dir: &std::path::Path) -> persnap::Result<std::path::PathBuf> {
    persnap::sys::create_private_dir(history_dir, true).map_err(persnap::Error::io(
        "create",
        history_dir,
        "Check the permissions of your home folder.",
    ))?;
    persnap::fsutil::canonicalize(history_dir).map_err(persnap::Error::io(
        "open",
        history_dir,
        "Check the permissions of your home folder.",
    ))
}

/// The helper as the front ends reach it, for the engine's pipeline:
/// the route given (tests fix theirs), else the one [`route`] decides.
pub struct Launcher {
    pub route: Option<HelperRoute>,
    /// Root only: once the helper runs, this process becomes that user.
    pub become_user: Option<u32>,
}

impl persnap::pipeline::Helper for Launcher {
    fn call(
        &mut self,
        request: &Request,
        progress: &mut dyn Progress,
        recorder: &mut dyn Recorder,
        cancel: &CancelToken,
    ) -> Result<Reply, RemoteFailure> {
        let mut route = match self.route.clone() {
            Some(route) => route,
            None => route()?,
        };
        route.become_user = self.become_user;
        call_via(route, request, progress, recorder, cancel)
    }
}

/// Send `request` to the helper and relay its events until it finishes.
pub fn call(
    request: &Request,
    progress: &mut dyn Progress,
    recorder: &mut dyn Recorder,
    cancel: &CancelToken,
) -> Result<Reply, RemoteFailure> {
    call_via(route()?, request, progress, recorder, cancel)
}

/// [`call`], returning the answer of the kind the caller expects (see
/// [`persnap::protocol::answer`]).
pub fn ask<A: answer::Answer>(
    request: &Request,
    progress: &mut dyn Progress,
    recorder: &mut dyn Recorder,
    cancel: &CancelToken,
) -> Result<A, RemoteFailure> {
    answer::answer(call(request, progress, recorder, cancel))
}

/// [`ask`] with the route decided by the caller.
pub fn ask_via<A: answer::Answer>(
    route: HelperRoute,
    request: &Request,
    progress: &mut dyn Progress,
    recorder: &mut dyn Recorder,
    cancel: &CancelToken,
) -> Result<A, RemoteFailure> {
    answer::answer(call_via(route, request, progress, recorder, cancel))
}

/// [`call`] with the route decided by the caller.
pub fn call_via(
    route: HelperRoute,
    request: &Request,
    progress: &mut dyn Progress,
    recorder: &mut dyn Recorder,
    cancel: &CancelToken,
) -> Result<Reply, RemoteFailure> {
    if !route.helper.is_file() {
        return Err(not_installed(&route.helper));
    }
    #[cfg(windows)]
    if route.elevate {
        return windows::call_elevated(&route.helper, request, progress, recorder, cancel);
    }
    call_child(route, request, progress, recorder, cancel)
}

/// Run the helper as a child (through pkexec when elevating on Linux),
/// frames over its stdin and stdout.
fn call_child(
    route: HelperRoute,
    request: &Request,
    progress: &mut dyn Progress,
    recorder: &mut dyn Recorder,
    cancel: &CancelToken,
) -> Result<Reply, RemoteFailure> {
    let via_pkexec = route.elevate && cfg!(unix);
    // The level decides which polkit action pkexec asks about; the helper
    // checks the request against it again.
    let level = request.needs(&persnap::registry::Registry::system());
    let mut cmd = if via_pkexec {
        let mut c = Command::new(PKEXEC);
        c.arg(&route.helper);
        c
    } else {
        let mut c = Command::new(&route.helper);
        c.envs(route.env.iter().map(|(k, v)| (k, v)));
        c
    };
    cmd.arg(level.arg());
    // Windows (already elevated): no console window for the helper, and no
    // console whose closing or Ctrl+C could end it mid-copy; the cancel
    // frame stops it.
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        cmd.creation_flags(CREATE_NO_WINDOW);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            RemoteFailure::elevation(format!("Could not start {}: {e}", route.helper.display()))
        })?;
    #[cfg(unix)]
    if let Some(uid) = route.become_user
        && let Err(e) = persnap::privileged::user::become_uid(uid)
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(RemoteFailure::elevation(format!(
            "Could not act as uid {uid} for the scheduled run ({e}); the backup did not run."
        )));
    }
    let mut stdin = child.stdin.take().expect("piped");
    protocol::write_frame(&mut stdin, request).map_err(|e| {
        RemoteFailure::elevation(format!("Could not send the request to the helper: {e}"))
    })?;
    let finished = Arc::new(AtomicBool::new(false));
    let forwarder = forward_cancel(stdin, cancel.clone(), Arc::clone(&finished));
    let stderr = child.stderr.take().expect("piped");
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let result = relay(
        BufReader::new(child.stdout.take().expect("piped")),
        progress,
        recorder,
    );
    let result = result.map(|r| r.map_err(|f| explain_level(f, level)));
    let status = child
        .wait()
        .map_err(|e| RemoteFailure::elevation(format!("Lost the helper: {e}")))?;
    finished.store(true, Ordering::SeqCst);
    let _ = forwarder.join();
    let stderr = stderr.join().unwrap_or_default();
    result.unwrap_or_else(|| Err(explain_exit(status.code(), via_pkexec, &stderr)))
}

/// Pass the helper's events on until it stops sending; the final frame's
/// result, if one came.
fn relay(
    mut events: impl BufRead,
    progress: &mut dyn Progress,
    recorder: &mut dyn Recorder,
) -> Option<Result<Reply, RemoteFailure>> {
    let mut result = None;
    while let Ok(event) = protocol::read_frame::<Event>(&mut events) {
        match event {
            Event::Phase { phase } => progress.phase(phase),
            Event::Progress {
                phase,
                bytes,
                total,
            } => progress.bytes(phase, bytes, total),
            Event::Log { level, message } => progress.log(level, &message),
            Event::Run { run } => {
                if let Err(e) = recorder.record(&run) {
                    progress.log(persnap::progress::Level::Warning, &e.to_string());
                }
            }
            Event::Done { result: outcome } => result = Some(Ok(*outcome)),
            Event::Error {
                kind,
                step,
                message,
            } => {
                result = Some(Err(RemoteFailure {
                    kind,
                    step,
                    message,
                }))
            }
        }
    }
    result
}

/// Write a cancel frame when the token fires; close stdin when finished.
fn forward_cancel(
    mut stdin: impl Write + Send + 'static,
    cancel: CancelToken,
    finished: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut sent = false;
        while !finished.load(Ordering::SeqCst) {
            if cancel.is_cancelled() && !sent {
                // If the helper is gone already there is nothing to cancel.
                let _ = protocol::write_frame(&mut stdin, &Control::Cancel);
                sent = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// A refusal of the helper's level, said for the person who asked.
fn explain_level(failure: RemoteFailure, level: persnap::protocol::Authority) -> RemoteFailure {
    if failure.kind == ErrorKind::Elevation && level == persnap::protocol::Authority::Backup {
        return RemoteFailure {
            message: format!(
                "{} (the database's registration may have changed since persnap looked)",
                failure.message
            ),
            ..failure
        };
    }
    failure
}

/// pkexec exits 127 both when polkit says no and when it cannot reach
/// polkit at all ("Error getting authority", "Error checking for
/// authorization"); only its message tells them apart.
fn polkit_unreachable(stderr: &str) -> bool {
    stderr.contains("Error getting authority")
        || stderr.contains("Error checking for authorization")
}

/// The helper ended without a final frame: say why in plain words.
fn explain_exit(code: Option<i32>, via_pkexec: bool, stderr: &str) -> RemoteFailure {
    match (via_pkexec, code) {
        (true, Some(PKEXEC_DISMISSED)) => RemoteFailure::elevation(
            "You dismissed the administrator authentication; the backup did not run.",
        ),
        (true, Some(PKEXEC_NOT_AUTHORIZED)) if polkit_unreachable(stderr) => {
            RemoteFailure::elevation(format!(
                "The system's authorization service (polkit) did not answer, so persnap could not ask for administrator rights; \
             the backup did not run. Check that D-Bus and polkit are running (`systemctl status polkit`), or run as root. \
             pkexec said: {}",
                stderr.trim()
            ))
        }
        (true, Some(PKEXEC_NOT_AUTHORIZED)) => RemoteFailure::elevation(
            "You are not authorized to do this (the administrator's permission was not given); nothing was done. \
             Operators may back up the databases an administrator protected (`persnap database list`); \
             everything else needs the administrator's password. See docs/PRIVILEGES.md.",
        ),
        _ => RemoteFailure {
            kind: ErrorKind::Internal,
            step: None,
            message: format!(
                "The persnap helper stopped unexpectedly (exit status {}){}. Nothing was recorded as good; run `persnap cleanup`.",
                code.map_or("killed by a signal".into(), |c| c.to_string()),
                if stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", stderr.trim())
                }
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkexec_failures_become_plain_messages() {
        let dismissed = explain_exit(Some(126), true, "");
        assert_eq!(dismissed.kind, ErrorKind::Elevation);
        assert!(
            dismissed.message.contains("dismissed"),
            "{}",
            dismissed.message
        );

        let refused = explain_exit(
            Some(127),
            true,
            "Error executing command as another user: Not authorized\n",
        );
        assert!(
            refused.message.contains("not authorized"),
            "{}",
            refused.message
        );

        let unreachable = explain_exit(
            Some(127),
            true,
            "Error getting authority: Error initializing authority: Could not connect: Connection refused",
        );
        assert_eq!(unreachable.kind, ErrorKind::Elevation);
        assert!(
            unreachable.message.contains("did not answer"),
            "{}",
            unreachable.message
        );
        assert!(
            unreachable.message.contains("Connection refused"),
            "pkexec's own words are kept: {}",
            unreachable.message
        );

        let crashed = explain_exit(None, false, "");
        assert_eq!(crashed.kind, ErrorKind::Internal);
        assert!(
            crashed.message.contains("killed by a signal"),
            "{}",
            crashed.message
        );
    }
}
