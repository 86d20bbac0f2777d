//! Running external system tools (lvm) safely.
//!
//! Tools are found only at fixed absolute paths, run without a shell, with
//! a cleared environment (a fixed PATH and the C locale, so their messages
//! are predictable), no stdin, and a time limit after which they are killed.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The PATH every tool runs with (Unix).
#[cfg(unix)]
const SAFE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// What a finished tool printed.
#[derive(Debug)]
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// All the tool said, for error messages: what it printed on stdout
    /// (schtasks writes some of its errors there) before [`Self::reason`].
    pub fn said(&self) -> String {
        match self.stdout.trim() {
            "" => self.reason(),
            out => format!("{out} {}", self.reason()),
        }
    }

    /// The last meaningful line of stderr, for error messages.
    pub fn reason(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        match lines.as_slice() {
            [] => format!("exit status {}", self.status),
            l => l.join(" / "),
        }
    }
}

/// The first of `candidates` that exists as a file.
pub fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Run `program args…` with a time limit; the child is killed at the limit.
pub fn run(program: &Path, args: &[&OsStr], limit: Duration) -> io::Result<ToolOutput> {
    let mut command = Command::new(program);
    command.args(args).env_clear();
    #[cfg(unix)]
    command
        .env("PATH", SAFE_PATH)
        .env("LC_ALL", "C")
        .env("LVM_SUPPRESS_FD_WARNINGS", "1");
    // Windows: nothing of the caller's environment reaches the tool, in
    // particular not its `SystemRoot`/`windir`, which an unelevated user
    // can set for an elevated process (HKCU\Environment) to have COM load
    // a DLL of theirs. But Windows components (COM in-process servers,
    // Winsock) need them, so the tool gets them as Windows reports its own
    // folder, and a PATH of the system folders only.
    #[cfg(windows)]
    {
        let windows = crate::sys::windows_dir();
        let path = std::env::join_paths([crate::sys::system_dir(), windows.clone()])
            .map_err(io::Error::other)?;
        command
            .env("SystemRoot", &windows)
            .env("windir", &windows)
            .env("PATH", path);
        // No console window of its own (the helper has none to share).
        use std::os::windows::process::CommandExt;
        command.creation_flags(0x0800_0000); // CREATE_NO_WINDOW
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = drain(child.stdout.take().expect("piped"));
    let err = drain(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} did not finish within {} s and was stopped",
                    program.display(),
                    limit.as_secs()
                ),
            ));
        }
        thread::sleep(Duration::from_millis(10));
    };
    // What the tool wrote is in the pipes by the time it has ended; a
    // process it started may still hold them open (wine starts its desktop
    // process from a tool that touches a window, with the tool's handles),
    // and is not waited for.
    let grace = Instant::now() + AFTER_EXIT;
    Ok(ToolOutput {
        status,
        stdout: out.collect(grace),
        stderr: err.collect(grace),
    })
}

/// How long a tool's output is still read after the tool itself ended.
const AFTER_EXIT: Duration = Duration::from_secs(2);

/// A pipe read on a thread of its own into a buffer.
struct Drain {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drain {
    /// What was read: all of it once the pipe closed, else what had come
    /// by `until`.
    fn collect(self, until: Instant) -> String {
        let _ = self
            .done
            .recv_timeout(until.saturating_duration_since(Instant::now()));
        let buf = self.buf.lock().map(|b| b.clone()).unwrap_or_default();
        crate::sys::decode_tool_output(&buf)
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> Drain {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, done) = std::sync::mpsc::channel();
    let into = std::sync::Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            if let Ok(mut b) = into.lock() {
                b.extend_from_slice(&chunk[..n]);
            }
        }
        let _ = tx.send(());
    });
    Drain { buf, done }
}

#[cfg(all(test, windows))]
mod windows_tests {
    use super::*;

    /// Windows components a tool loads need `SystemRoot`; it comes from
    /// Windows, not from the caller (who may have set it to their folder).
    #[test]
    fn a_tool_sees_the_system_folder_and_nothing_of_the_callers_environment() {
        let cmd = crate::sys::system_dir().join("cmd.exe");
        let out = run(
            &cmd,
            &[OsStr::new("/c"), OsStr::new("set")],
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(out.status.success(), "{}", out.reason());
        let windows = crate::sys::windows_dir().to_string_lossy().to_lowercase();
        let seen = out.stdout.to_lowercase();
        for name in ["systemroot", "windir"] {
            assert!(
                seen.lines()
                    .any(|l| l.trim() == format!("{name}={windows}")),
                "{name} is not {windows}: {}",
                out.stdout
            );
        }
        assert!(
            std::env::var_os("CARGO_MANIFEST_DIR").is_some()
                && !seen.contains("cargo_manifest_dir"),
            "{}",
            out.stdout
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn runs_with_a_clean_environment_and_captures_output() {
        assert!(
            std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
            "cargo sets this for tests"
        );
        let out = run(Path::new("/usr/bin/env"), &[], Duration::from_secs(5)).unwrap();
        assert!(out.status.success());
        assert!(
            out.stdout.contains("LC_ALL=C") && !out.stdout.contains("CARGO_MANIFEST_DIR"),
            "{}",
            out.stdout
        );
    }

    #[test]
    fn a_process_the_tool_left_behind_holding_its_output_is_not_waited_for() {
        let started = Instant::now();
        let out = run(
            Path::new("/bin/sh"),
            &[OsStr::new("-c"), OsStr::new("echo said; sleep 30 &")],
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.trim(), "said");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited {:?} for the sleep that kept the pipe",
            started.elapsed()
        );
    }

    #[test]
    fn kills_a_tool_at_its_time_limit() {
        let started = Instant::now();
        let err = run(
            Path::new("/bin/sleep"),
            &[OsStr::new("30")],
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
