//! A backup for a user, split at the privilege line (Linux).
//!
//! Root plans the database side, takes the snapshot, opens the store
//! files beneath it without following a link ([`crate::store::open_set`]),
//! streams them into pipes, checks the snapshot stayed intact and removes
//! it. Everything else runs in the worker ([`crate::worker`]), started as
//! the user: the backup folder, copy, verification, manifest, retention.
//! Root never opens, creates, renames or chowns anything in the backup
//! location.
//!
//! The worker is not trusted either: its frames are only passed on to the
//! caller (its own user), it may ask for one snapshot, and a worker that
//! stops reading its pipes for [`super::channel::STALL`] is killed and the
//! snapshot removed.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backup::{BackupRequest, SourcePlan};
use crate::error::{Error, ErrorKind, HINT_SOURCE, Result};
use crate::fsutil::RunLock;
use crate::progress::{CancelToken, Level, Phase, Progress};
use crate::protocol::{self, Event};
use crate::snapshot::{self, SnapshotGuard, SnapshotOptions};
use crate::store;
use crate::worker::{FromWorker, PIPES, ToWorker, WorkerRequest};

use super::channel::{Events, STALL};
use super::user::Identity;

/// A pipe whose writes give up after `limit` without progress, so a
/// reader that stops cannot block the helper (nor hold a snapshot).
struct Bounded {
    file: File,
    limit: Duration,
    cancel: Option<CancelToken>,
}

impl Bounded {
    fn new(fd: OwnedFd, limit: Duration, cancel: Option<CancelToken>) -> Bounded {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Bounded {
            file: File::from(fd),
            limit,
            cancel,
        }
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
            if started.elapsed() > self.limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the reader stopped reading",
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

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Run the backup `req` for `user`; returns the helper's exit code. The
/// final frame (done or error) has been queued on `events`.
pub fn backup_for(req: BackupRequest, user: &Identity, events: &Events) -> i32 {
    let started = (|| {
        let source = crate::backup::plan_source(&req)?;
        let locks = super::locks::for_database(&source.store.dir, &source.store.name)?;
        let worker = Worker::start(user)?;
        Ok::<_, Error>((source, locks, worker))
    })();
    let (source, _locks, worker) = match started {
        Ok(s) => s,
        Err(e) => return events.fail(&e, Some(Phase::Prepare)),
    };
    worker.serve(req, source, events)
}

struct Worker {
    child: std::process::Child,
    to_worker: Arc<Mutex<Bounded>>,
    pipes: Vec<OwnedFd>,
}

impl Worker {
    fn start(user: &Identity) -> Result<Worker> {
        let io = |e| Error::io("start the backup worker", "persnap-helper", HINT_SOURCE)(e);
        let exe = std::env::current_exe().map_err(io)?;
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        for _ in 0..PIPES {
            let (r, w) = pipe().map_err(io)?;
            // Out of the way of descriptors 3..6 they will be moved to.
            // SAFETY: fcntl duplicates a descriptor we own.
            let high = unsafe { libc::fcntl(r.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
            if high < 0 {
                return Err(io(std::io::Error::last_os_error()));
            }
            // SAFETY: a new descriptor we own.
            reads.push(unsafe { OwnedFd::from_raw_fd(high) });
            writes.push(w);
        }
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
        let raw: Vec<i32> = reads.iter().map(|r| r.as_raw_fd()).collect();
        // SAFETY: dup2 is async-signal-safe; targets 3..6 are free of the
        // sources (all at 100 or above).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                for (i, fd) in raw.iter().enumerate() {
                    if libc::dup2(*fd, crate::worker::FIRST_PIPE_FD + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        user.apply(&mut cmd);
        let mut child = cmd.spawn().map_err(io)?;
        drop(reads);
        let stdin = OwnedFd::from(child.stdin.take().expect("piped"));
        Ok(Worker {
            child,
            to_worker: Arc::new(Mutex::new(Bounded::new(stdin, STALL, None))),
            pipes: writes,
        })
    }

    fn send(to_worker: &Mutex<Bounded>, frame: &ToWorker) -> std::io::Result<()> {
        let mut w = to_worker.lock().unwrap_or_else(|p| p.into_inner());
        protocol::write_frame(&mut *w, frame)
    }

    /// Pass the worker's events on, take the snapshot when it asks.
    fn serve(mut self, req: BackupRequest, source: SourcePlan, events: &Events) -> i32 {
        let cancel = events.cancel().clone();
        let request = WorkerRequest::Backup {
            request: Box::new(req.clone()),
            source: Box::new(source.clone()),
        };
        {
            let mut w = self.to_worker.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = protocol::write_frame(&mut *w, &request) {
                drop(w);
                let _ = self.child.kill();
                let _ = self.child.wait();
                return events.fail(&worker_lost(&e.to_string()), Some(Phase::Prepare));
            }
        }
        let forward = {
            let to_worker = Arc::clone(&self.to_worker);
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                while !cancel.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = Worker::send(&to_worker, &ToWorker::Cancel);
            })
        };
        let _ = forward; // ends when the run is cancelled, or with the process
        let mut out = BufReader::new(self.child.stdout.take().expect("piped"));
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
                    let Some(pipes) = pipes.take() else {
                        continue; // one snapshot per run
                    };
                    let job = CaptureJob {
                        source: source.clone(),
                        options: req.snapshot.clone(),
                        tag,
                        pipes,
                        to_worker: Arc::clone(&self.to_worker),
                        events: events.clone(),
                        cancel: cancel.clone(),
                        worker_pid: self.child.id(),
                    };
                    capture = Some(std::thread::spawn(move || job.run()));
                }
            }
        }
        drop(pipes);
        if let Some(job) = capture {
            let _ = job.join();
        }
        let status = self.child.wait();
        match last {
            Some(code) => code,
            None => events.fail(&worker_lost(&format!("{status:?}")), Some(Phase::Finish)),
        }
    }
}

fn worker_lost(detail: &str) -> Error {
    Error::Relayed {
        kind: ErrorKind::Internal,
        message: format!(
            "The backup worker stopped unexpectedly ({detail}); nothing was kept and the snapshot was removed. Please report this."
        ),
    }
}

struct CaptureJob {
    source: SourcePlan,
    options: SnapshotOptions,
    tag: String,
    pipes: Vec<OwnedFd>,
    to_worker: Arc<Mutex<Bounded>>,
    events: Events,
    cancel: CancelToken,
    worker_pid: u32,
}

impl CaptureJob {
    fn run(mut self) {
        let pipes = std::mem::take(&mut self.pipes);
        if let Err(e) = self.capture(pipes) {
            // Before the snapshot existed, or while sending: say why.
            let frame = if e.0 {
                ToWorker::CaptureChecked {
                    error: Some((e.1.kind(), e.1.to_string())),
                }
            } else {
                ToWorker::CaptureFailed {
                    kind: e.1.kind(),
                    message: e.1.to_string(),
                }
            };
            if Worker::send(&self.to_worker, &frame).is_err() {
                // SAFETY: the worker is our child; it will not read again.
                unsafe { libc::kill(self.worker_pid as i32, libc::SIGKILL) };
            }
        }
    }

    /// Err((whether the worker was told the snapshot exists, why)).
    fn capture(&mut self, pipes: Vec<OwnedFd>) -> std::result::Result<(), (bool, Error)> {
        let before = |e| (false, e);
        if self.tag.len() != 8 || !self.tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(before(Error::Protocol {
                detail: format!("{:?} is not a run tag", self.tag),
            }));
        }
        let _lock = RunLock::acquire(&self.tag).map_err(|e| {
            before(Error::io(
                "create the run lock",
                "/run/persnap",
                "Remove /run/persnap; persnap creates it again.",
            )(e))
        })?;
        let mut events = self.events.clone();
        for line in snapshot::sweep_all() {
            events.log(Level::Info, &line);
        }
        let provider = snapshot::provider(self.source.method, &self.options).map_err(before)?;
        let mut guard = SnapshotGuard::new(
            provider
                .create(&self.source.volume, &self.tag)
                .map_err(before)?,
        );
        let image = store::discover(&guard.folder(), &self.source.store.name).map_err(before)?;
        let files = store::open_set(&image).map_err(before)?;
        Worker::send(
            &self.to_worker,
            &ToWorker::Captured {
                snapshot_id: guard.id().to_owned(),
                journal_mode: image.journal_mode(),
                files: files.iter().map(|(f, _)| f.clone()).collect(),
            },
        )
        .map_err(|e| before(worker_lost(&e.to_string())))?;
        let after = |e| (true, e);
        let mut pipes = pipes.into_iter();
        for (file, mut input) in files {
            let pipe = pipes.next().expect("as many pipes as store files");
            let mut out = Bounded::new(pipe, STALL, Some(self.cancel.clone()));
            send_file(&mut input, &mut out, &file.name, &self.cancel).map_err(after)?;
        }
        drop(pipes);
        let valid = guard.check_valid();
        let released = release(&mut guard);
        match released {
            Ok(()) => events.log(Level::Info, &format!("Removed snapshot {}", guard.id())),
            Err(e) => events.log(
                Level::Warning,
                &format!("{e} The next backup or `persnap cleanup` will remove it."),
            ),
        }
        valid.map_err(after)?;
        Worker::send(&self.to_worker, &ToWorker::CaptureChecked { error: None })
            .map_err(|e| after(worker_lost(&e.to_string())))
    }
}

/// Release the snapshot, retrying briefly while the filesystem is busy.
fn release(guard: &mut SnapshotGuard) -> Result<()> {
    let mut last = Ok(());
    for attempt in 1..=5u64 {
        last = guard.release();
        if last.is_ok() {
            return last;
        }
        std::thread::sleep(Duration::from_millis(200 * attempt));
    }
    last
}

/// One store file into its pipe, dropping the snapshot's pages behind.
fn send_file(input: &mut File, out: &mut Bounded, name: &str, cancel: &CancelToken) -> Result<()> {
    let mut buf = vec![0u8; crate::copy::BLOCK];
    let mut offset = 0u64;
    loop {
        cancel.check()?;
        let n = input
            .read(&mut buf)
            .map_err(Error::io("read", name, HINT_SOURCE))?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n]).map_err(|e| {
            if cancel.is_cancelled() {
                Error::Cancelled
            } else {
                worker_lost(&e.to_string())
            }
        })?;
        crate::fsutil::drop_cached(input, offset, n as u64);
        offset += n as u64;
    }
}
