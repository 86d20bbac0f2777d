//! Starting the unprivileged worker (`persnap-helper worker`) as the user
//! the work is for, and serving it.
//!
//! The worker gets its request on stdin, descriptors 3 and up (pipes of a
//! backup's store files, or a restore's backup files opened as the user
//! who asked), and a clean environment. Its frames are only passed on to
//! the caller (its own user's front end); a backup worker may ask for one
//! snapshot ([`super::capture`]). Nothing the worker says makes root do
//! anything else. Writes to it give up after [`super::channel::STALL`].

use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, HINT_SOURCE, Result};
use crate::progress::{CancelToken, Phase};
use crate::protocol::{self, Event};
use crate::worker::{FromWorker, ToWorker, WorkerRequest};

use super::channel::{Events, STALL};
use super::user::Identity;

/// A pipe whose writes give up after `limit` without progress, so a
/// reader that stops cannot block the helper (nor hold a snapshot).
pub(super) struct Bounded {
    file: File,
    limit: Duration,
    cancel: Option<CancelToken>,
    /// When all writing must be over, however steadily the reader reads.
    deadline: Option<Instant>,
}

impl Bounded {
    pub(super) fn new(fd: OwnedFd, limit: Duration, cancel: Option<CancelToken>) -> Bounded {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Bounded {
            file: File::from(fd),
            limit,
            cancel,
            deadline: None,
        }
    }

    /// Give up at `deadline` too (a reader that reads, but too slowly).
    pub(super) fn until(mut self, deadline: Instant) -> Bounded {
        self.deadline = Some(deadline);
        self
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let started = Instant::now();
        loop {
            match self.file.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            if self.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                return Err(std::io::Error::other("cancelled"));
            }
            if started.elapsed() > self.limit || self.deadline.is_some_and(|d| Instant::now() > d) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the reader stopped reading, or read too slowly",
                ));
            }
            let mut poll = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut poll, 1, 200) };
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What to run when a backup worker asks for its snapshot: given the run
/// tag, the pipes' writing ends, the channel to the worker and the worker.
pub(super) type OnCapture =
    Box<dyn FnOnce(String, Vec<OwnedFd>, Arc<Mutex<Bounded>>, Handle) + Send>;

/// How long a cancelled worker has to stop before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// The worker process, shared: killing and reaping go through the same
/// `Child`, so a worker is never signalled after it was reaped (its pid
/// could belong to someone else by then).
#[derive(Clone)]
pub(super) struct Handle(Arc<Mutex<std::process::Child>>);

impl Handle {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::process::Child> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kill the worker now (nothing if it has been reaped already).
    pub(super) fn kill(&self) {
        let _ = self.lock().kill();
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        self.lock().try_wait().ok().flatten()
    }

    /// Wait for the worker to end, reaping it.
    fn wait(&self) -> std::process::ExitStatus {
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(super) struct Worker {
    child: Handle,
    stdout: std::process::ChildStdout,
    pub(super) to_worker: Arc<Mutex<Bounded>>,
    pub(super) pipes: Vec<OwnedFd>,
}

impl Worker {
    /// Start the worker as `user` with `give` at descriptors 3 and up;
    /// `keep` (the writing ends of its pipes) stay here.
    pub(super) fn start(user: &Identity, give: Vec<OwnedFd>, keep: Vec<OwnedFd>) -> Result<Worker> {
        let io = |e| Error::io("start the worker", "persnap-helper", HINT_SOURCE)(e);
        user.make_run_dir().map_err(|e| {
            Error::io(
                "make the run folder of",
                crate::sys::user_run_dir(user.uid),
                "Remove /run/persnap-users; persnap creates it again.",
            )(e)
        })?;
        let exe = std::env::current_exe().map_err(io)?;
        let mut cmd = Command::new(exe);
        cmd.arg("worker")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let runtime = std::path::PathBuf::from(format!("/run/user/{}", user.uid));
        if crate::sys::owner_of(&runtime) == Some(user.uid) {
            cmd.env("XDG_RUNTIME_DIR", runtime);
        }
        let given: Vec<&dyn AsRawFd> = give.iter().map(|fd| fd as &dyn AsRawFd).collect();
        let reads = crate::sys::give_descriptors(&mut cmd, &given, crate::worker::FIRST_PIPE_FD)
            .map_err(io)?;
        drop(give);
        user.apply(&mut cmd);
        let mut child = cmd.spawn().map_err(io)?;
        drop(reads);
        let stdin = OwnedFd::from(child.stdin.take().expect("piped"));
        let stdout = child.stdout.take().expect("piped");
        Ok(Worker {
            child: Handle(Arc::new(Mutex::new(child))),
            stdout,
            to_worker: Arc::new(Mutex::new(Bounded::new(stdin, STALL, None))),
            pipes: keep,
        })
    }

    pub(super) fn send(to_worker: &Mutex<Bounded>, frame: &ToWorker) -> std::io::Result<()> {
        let mut w = to_worker.lock().unwrap_or_else(|p| p.into_inner());
        protocol::write_frame(&mut *w, frame)
    }

    /// Send `request`, pass the worker's events on, and start `on_capture`
    /// (once) when a backup worker asks for its snapshot.
    pub(super) fn serve(
        mut self,
        request: WorkerRequest,
        events: &Events,
        mut on_capture: Option<OnCapture>,
    ) -> i32 {
        let cancel = events.cancel().clone();
        {
            let mut w = self.to_worker.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = protocol::write_frame(&mut *w, &request) {
                drop(w);
                self.child.kill();
                self.child.wait();
                return events.fail(&worker_lost(&e.to_string()), Some(Phase::Prepare));
            }
        }
        // A cancelled worker is told, then — a backup's, whose snapshot and
        // slot matter — killed if it does not stop. A restore is never
        // killed: past its point of no return it must finish what it began.
        let kill_on_cancel = on_capture.is_some();
        let forward = {
            let (to_worker, cancel, child) = (
                Arc::clone(&self.to_worker),
                cancel.clone(),
                self.child.clone(),
            );
            std::thread::spawn(move || {
                while !cancel.is_cancelled() {
                    if child.exited().is_some() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = Worker::send(&to_worker, &ToWorker::Cancel);
                if !kill_on_cancel {
                    return;
                }
                let told = Instant::now();
                while told.elapsed() < GRACE {
                    if child.exited().is_some() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                child.kill();
            })
        };
        let mut out = BufReader::new(self.stdout);
        let mut pipes = Some(std::mem::take(&mut self.pipes));
        let mut capture = None;
        let mut last = None;
        while let Ok(frame) = protocol::read_frame::<FromWorker>(&mut out) {
            match frame {
                FromWorker::Event { event } => {
                    if matches!(event, Event::Done { .. } | Event::Error { .. }) {
                        last = Some(match &event {
                            Event::Error { kind, .. } => kind.exit_code(),
                            _ => 0,
                        });
                    }
                    events.send(event);
                }
                FromWorker::Capture { tag } => {
                    // One snapshot per run, and only for a backup worker.
                    let (Some(pipes), Some(start)) = (pipes.take(), on_capture.take()) else {
                        continue;
                    };
                    let (to_worker, child) = (Arc::clone(&self.to_worker), self.child.clone());
                    capture = Some(std::thread::spawn(move || {
                        start(tag, pipes, to_worker, child)
                    }));
                }
            }
        }
        drop(pipes);
        if let Some(job) = capture {
            let _ = job.join();
        }
        let status = self.child.wait();
        let _ = forward.join();
        match last {
            Some(code) => code,
            None => events.fail(&worker_lost(&format!("{status:?}")), Some(Phase::Finish)),
        }
    }
}

pub(super) fn worker_lost(detail: &str) -> Error {
    Error::Relayed {
        kind: ErrorKind::Internal,
        message: format!(
            "The worker stopped unexpectedly ({detail}); nothing was kept and the snapshot was removed. Please report this."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_reader_that_reads_too_slowly_is_cut_off_at_the_deadline() {
        let (r, w) = pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut r = File::from(r);
            let mut buf = [0u8; 512];
            // Steady, but far too slow: never blocked long enough to stall.
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let started = Instant::now();
        let mut out = Bounded::new(w, Duration::from_secs(60), None)
            .until(started + Duration::from_millis(500));
        let err = out.write_all(&vec![0u8; 64 << 20]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(out);
        reader.join().unwrap();
    }
}
