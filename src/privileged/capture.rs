//! A backup for a user, split at the privilege line (Linux).
//!
//! Root plans the database side, takes the snapshot, opens the store
//! files beneath it without following a link ([`crate::store::open_set`]),
//! streams them into pipes, checks the snapshot stayed intact and removes
//! it. Everything else runs in the worker ([`crate::worker`], started by
//! [`super::spawn`]) as the user: the backup folder, copy, verification,
//! manifest, retention. Root never opens, creates, renames or chowns
//! anything in the backup location. A worker that stops reading its pipes
//! for [`super::channel::STALL`] is cut off and the snapshot removed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backup::{BackupRequest, SourcePlan};
use crate::error::{Error, HINT_SOURCE, Result};
use crate::fsutil::RunLock;
use crate::progress::{CancelToken, Level, Phase, Progress};
use crate::snapshot::{self, SnapshotGuard, SnapshotOptions};
use crate::store;
use crate::worker::{PIPES, ToWorker, WorkerRequest};

use super::channel::{Events, STALL};
use super::spawn::{Bounded, Worker, pipe, worker_lost};
use super::user::Identity;

/// Run the backup `req` for `user`; returns the helper's exit code. The
/// final frame (done or error) has been queued on `events`.
pub fn backup_for(req: BackupRequest, user: &Identity, events: &Events) -> i32 {
    let started = (|| {
        let source = crate::backup::plan_source(&req)?;
        let locks = super::locks::for_database(&source.store.dir, &source.store.name)?;
        let io = |e| Error::io("create a pipe", "persnap-helper", HINT_SOURCE)(e);
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        for _ in 0..PIPES {
            let (r, w) = pipe().map_err(io)?;
            reads.push(r);
            writes.push(w);
        }
        let worker = Worker::start(user, reads, writes)?;
        Ok::<_, Error>((source, locks, worker))
    })();
    let (source, _locks, worker) = match started {
        Ok(s) => s,
        Err(e) => return events.fail(&e, Some(Phase::Prepare)),
    };
    let request = WorkerRequest::Backup {
        request: Box::new(req.clone()),
        source: Box::new(source.clone()),
    };
    let (events_for_capture, cancel) = (events.clone(), events.cancel().clone());
    let options = req.snapshot.clone();
    let on_capture =
        move |tag: String, pipes: Vec<OwnedFd>, to_worker: Arc<Mutex<Bounded>>, worker_pid: u32| {
            CaptureJob {
                source,
                options,
                tag,
                pipes,
                to_worker,
                events: events_for_capture,
                cancel,
                worker_pid,
            }
            .run()
        };
    worker.serve(request, events, Some(Box::new(on_capture)))
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
