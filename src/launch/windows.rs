//! Windows elevation: start `persnap-helper.exe` through UAC and talk to it
//! over a private named pipe.
//!
//! The helper's manifest says `requireAdministrator`; ShellExecuteExW with
//! the "runas" verb shows the UAC prompt, parented to persnap's window so
//! it appears in front of it. We keep the process handle: to notice a
//! helper that ends before connecting, to check that the pipe's client is
//! that very process, and to read its exit code. A declined prompt
//! (ERROR_CANCELLED) is a plain message, not an error code.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::Duration;

use persnap::history::Recorder;
use persnap::pipe::windows::{Pipe, SharedPipe, current_user_sid};
use persnap::pipe::{self, HelperArgs};
use persnap::progress::{CancelToken, Progress};
use persnap::protocol::{self, Reply, Request};
use winapi::shared::minwindef::DWORD;
use winapi::shared::winerror::ERROR_CANCELLED;
use winapi::um::errhandlingapi::GetLastError;
use winapi::um::handleapi::CloseHandle;
use winapi::um::processthreadsapi::{GetExitCodeProcess, GetProcessId};
use winapi::um::shellapi::{
    SEE_MASK_FLAG_NO_UI, SEE_MASK_NOASYNC, SEE_MASK_NOCLOSEPROCESS, SHELLEXECUTEINFOW,
    ShellExecuteExW,
};
use winapi::um::synchapi::WaitForSingleObject;
use winapi::um::winbase::INFINITE;
use winapi::um::winnt::HANDLE;
use winapi::um::winuser::SW_HIDE;

use super::{RemoteFailure, explain_exit, forward_cancel, relay};

/// How long the UAC prompt may wait for the user before persnap gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(600);

/// The window UAC prompts belong to (the GUI sets it; 0 for the CLI).
static OWNER_WINDOW: AtomicIsize = AtomicIsize::new(0);

/// Parent future UAC prompts to this window (an HWND).
pub fn set_owner_window(hwnd: isize) {
    OWNER_WINDOW.store(hwnd, Ordering::Relaxed);
}

/// The helper's process, owned.
struct Process(HANDLE);

unsafe impl Send for Process {}

impl Process {
    fn pid(&self) -> u32 {
        // SAFETY: a live process handle we own.
        unsafe { GetProcessId(self.0) }
    }

    fn wait(&self) -> Option<i32> {
        let mut code: DWORD = 0;
        // SAFETY: as above.
        unsafe {
            WaitForSingleObject(self.0, INFINITE);
            (GetExitCodeProcess(self.0, &mut code) != 0).then_some(code as i32)
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

use persnap::sys::wide;

/// What a failed ShellExecuteExW means for the person at the screen.
pub fn start_failure(error: u32, helper: &Path) -> RemoteFailure {
    if error == ERROR_CANCELLED {
        return RemoteFailure::elevation(
            "You declined the administrator prompt; the backup did not run.",
        );
    }
    let why = std::io::Error::from_raw_os_error(error as i32);
    // What Windows' policies answer, in words (the codes read as nonsense:
    // 8235 is "A referral was returned from the server").
    let policy = match error {
        // UAC: "Only elevate executables that are signed and validated".
        8235 => Some(
            "Windows here lets only signed programs ask for administrator rights, and this copy of persnap-helper.exe is not signed. Install a signed persnap release, or ask whoever manages this computer.",
        ),
        // Group Policy (Software Restriction) or AppLocker.
        1260 => Some(
            "A policy on this computer does not allow persnap-helper.exe to run. Ask whoever manages this computer to allow it.",
        ),
        // Smart App Control or Windows Defender Application Control.
        4551 | 4553 => Some(
            "Windows blocked persnap-helper.exe (Smart App Control or Application Control allows only programs it trusts, and this copy is not signed). Install a signed persnap release, or ask whoever manages this computer.",
        ),
        // Defender took the file for a threat.
        225 => Some(
            "Your antivirus blocked persnap-helper.exe. Check its quarantine and allow the file, or reinstall persnap.",
        ),
        _ => None,
    };
    match policy {
        Some(words) => RemoteFailure::elevation(format!("{words} (Details: {why})")),
        None => RemoteFailure::elevation(format!(
            "Could not start {} as administrator ({why}). Reinstall persnap if the file is missing.",
            helper.display(),
        )),
    }
}

/// What an unanswered administrator prompt that the user gave up on says.
pub const PROMPT_ABANDONED: &str = "You cancelled while Windows was still asking for administrator approval; the backup did not run. (If you approve the prompt now, the helper finds nobody waiting and ends at once.)";

/// [`start_elevated`] on a thread of its own, so that the person who gave
/// up on an unanswered UAC prompt can cancel: ShellExecuteExW does not
/// return until the prompt is answered. A cancel (or [`CONNECT_TIMEOUT`])
/// stops the wait; the caller then drops its pipe, so a helper approved
/// later finds nobody to serve and ends.
fn start_elevated_cancellable(
    helper: &Path,
    parameters: &str,
    cancel: &CancelToken,
) -> Result<Process, RemoteFailure> {
    let (helper, parameters) = (helper.to_owned(), parameters.to_owned());
    wait_cancellable(
        move || start_elevated(&helper, &parameters),
        cancel,
        CONNECT_TIMEOUT,
    )
}

/// Run `start` on a thread of its own and wait for it, until `cancel` or
/// `limit`.
fn wait_cancellable<T: Send + 'static>(
    start: impl FnOnce() -> Result<T, RemoteFailure> + Send + 'static,
    cancel: &CancelToken,
    limit: Duration,
) -> Result<T, RemoteFailure> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(start());
    });
    let deadline = std::time::Instant::now() + limit;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(started) => return started,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(RemoteFailure::elevation(
                    "The administrator prompt could not be shown; the backup did not run.",
                ));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if cancel.is_cancelled() {
                    return Err(RemoteFailure::elevation(PROMPT_ABANDONED));
                }
                if std::time::Instant::now() >= deadline {
                    return Err(RemoteFailure::elevation(
                        "Nobody answered the administrator prompt in time; the backup did not run.",
                    ));
                }
            }
        }
    }
}

/// COM on this thread for ShellExecuteExW (Microsoft: initialize COM,
/// apartment-threaded, before calling it, since the verb may be carried
/// out by a shell extension); undone when dropped.
struct ComForShell(bool);

impl ComForShell {
    fn new() -> Self {
        use winapi::um::combaseapi::CoInitializeEx;
        use winapi::um::objbase::{COINIT_APARTMENTTHREADED, COINIT_DISABLE_OLE1DDE};
        // SAFETY: plain COM start-up on this thread; balanced in Drop only
        // when it succeeded (S_OK or S_FALSE).
        let hr = unsafe {
            CoInitializeEx(
                std::ptr::null_mut(),
                COINIT_APARTMENTTHREADED | COINIT_DISABLE_OLE1DDE,
            )
        };
        ComForShell(hr >= 0)
    }
}

impl Drop for ComForShell {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: matches the successful CoInitializeEx above.
            unsafe { winapi::um::combaseapi::CoUninitialize() };
        }
    }
}

/// ShellExecuteExW "runas": the UAC prompt, then the elevated helper.
fn start_elevated(helper: &Path, parameters: &str) -> Result<Process, RemoteFailure> {
    let _com = ComForShell::new();
    let verb = wide("runas");
    let file = wide(helper);
    let params = wide(parameters);
    // SAFETY: SHELLEXECUTEINFOW is plain data; the strings outlive the call.
    unsafe {
        let mut info: SHELLEXECUTEINFOW = std::mem::zeroed();
        info.cbSize = std::mem::size_of::<SHELLEXECUTEINFOW>() as DWORD;
        info.fMask = SEE_MASK_NOCLOSEPROCESS | SEE_MASK_NOASYNC | SEE_MASK_FLAG_NO_UI;
        info.hwnd = OWNER_WINDOW.load(Ordering::Relaxed) as _;
        info.lpVerb = verb.as_ptr();
        info.lpFile = file.as_ptr();
        info.lpParameters = params.as_ptr();
        info.nShow = SW_HIDE;
        if ShellExecuteExW(&mut info) == 0 {
            return Err(start_failure(GetLastError(), helper));
        }
        if info.hProcess.is_null() {
            return Err(RemoteFailure::elevation(
                "Windows started the helper but gave no handle to it; the backup did not run.",
            ));
        }
        Ok(Process(info.hProcess))
    }
}

fn channel_failure(what: &str, e: impl std::fmt::Display) -> RemoteFailure {
    RemoteFailure::elevation(format!(
        "Could not {what} the administrator helper: {e}. The backup did not run."
    ))
}

/// Start the helper through UAC and relay its events until it finishes.
pub fn call_elevated(
    helper: &Path,
    request: &Request,
    progress: &mut dyn Progress,
    recorder: &mut dyn Recorder,
    cancel: &CancelToken,
) -> Result<Reply, RemoteFailure> {
    let sid = current_user_sid().map_err(|e| channel_failure("prepare a private channel to", e))?;
    let args = HelperArgs {
        pipe: pipe::random_pipe_name(),
        parent_pid: std::process::id(),
    };
    let server = Pipe::create(&args.pipe, &pipe::pipe_sddl(&sid))
        .map_err(|e| channel_failure("open a private channel to", e))?;
    let process = start_elevated_cancellable(helper, &pipe::helper_command_line(&args), cancel)?;
    if let Err(e) = server.accept(Some(process.0), CONNECT_TIMEOUT) {
        return Err(match e.kind() {
            std::io::ErrorKind::BrokenPipe => explain_exit(process.wait(), false, ""),
            _ => channel_failure("connect to", e),
        });
    }
    let client = server
        .client_pid()
        .map_err(|e| channel_failure("identify", e))?;
    pipe::check_peer("client", process.pid(), client).map_err(|e| channel_failure("trust", e))?;
    let server = Arc::new(server);
    protocol::write_frame(&mut SharedPipe(Arc::clone(&server)), request)
        .map_err(|e| channel_failure("send the request to", e))?;
    let finished = Arc::new(AtomicBool::new(false));
    let forwarder = forward_cancel(
        SharedPipe(Arc::clone(&server)),
        cancel.clone(),
        Arc::clone(&finished),
    );
    let result = relay(
        BufReader::new(SharedPipe(Arc::clone(&server))),
        progress,
        recorder,
    );
    let code = process.wait();
    finished.store(true, Ordering::SeqCst);
    let _ = forwarder.join();
    result.unwrap_or_else(|| Err(explain_exit(code, false, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unanswered prompt can be given up on: the start blocks (as
    /// ShellExecuteExW does until the prompt is answered) and the cancel,
    /// given a moment later, ends the wait at once.
    #[test]
    fn a_cancel_ends_the_wait_for_an_unanswered_prompt() {
        let cancel = CancelToken::new();
        let later = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            later.cancel();
        });
        let started = std::time::Instant::now();
        let unanswered = || -> Result<(), RemoteFailure> {
            std::thread::sleep(Duration::from_secs(120));
            Ok(())
        };
        let failure = wait_cancellable(unanswered, &cancel, CONNECT_TIMEOUT).unwrap_err();
        assert_eq!(failure.message, PROMPT_ABANDONED);
        assert_eq!(failure.kind, persnap::ErrorKind::Elevation);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // Unanswered past the limit: said plainly too.
        let failure = wait_cancellable(unanswered, &CancelToken::new(), Duration::from_millis(200))
            .unwrap_err();
        assert!(
            failure.message.contains("Nobody answered"),
            "{}",
            failure.message
        );
        // Answered: its result.
        assert!(wait_cancellable(|| Ok(7), &CancelToken::new(), CONNECT_TIMEOUT).unwrap() == 7);
    }

    #[test]
    fn a_declined_prompt_is_said_plainly() {
        let declined = start_failure(
            ERROR_CANCELLED,
            Path::new(r"C:\Program Files\persnap\persnap-helper.exe"),
        );
        assert_eq!(
            declined.message,
            "You declined the administrator prompt; the backup did not run."
        );
        assert_eq!(declined.kind, persnap::ErrorKind::Elevation);
        for (code, says) in [
            (8235, "only signed programs"),
            (1260, "does not allow"),
            (4551, "Smart App Control"),
            (225, "antivirus"),
        ] {
            let blocked = start_failure(code, Path::new(r"C:\x\persnap-helper.exe"));
            assert!(
                blocked.message.contains(says) && blocked.message.contains("Details:"),
                "{code}: {}",
                blocked.message
            );
            assert!(!blocked.message.starts_with("Could not start"), "{code}");
        }
        let missing = start_failure(2, Path::new(r"C:\x\persnap-helper.exe"));
        assert!(
            missing.message.contains(r"C:\x\persnap-helper.exe")
                && missing.message.contains("Reinstall"),
            "{}",
            missing.message
        );
    }
}
