//! A backup for a user, split at the privilege line (Linux).
//!
//! Root plans the database side, takes the snapshot, opens the store
//! files in it without following a link (through the snapshot's own
//! descriptors where it has them: [`SnapshotGuard::open_store`]),
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
use std::time::{Duration, Instant};

use crate::backup::{BackupRequest, SourcePlan};
use crate::error::{Error, HINT_SOURCE, Result};
use crate::fsutil::RunLock;
use crate::progress::{CancelToken, Level, Phase, Progress};
use crate::snapshot::{self, SnapshotGuard, SnapshotOptions};
use crate::worker::{PIPES, ToWorker, WorkerRequest};

use super::channel::{Events, STALL};
use super::spawn::{Bounded, Handle, Worker, pipe, worker_lost};

/// The slowest the worker may read the store files (bytes per second)
/// before the snapshot is released under it.
const MIN_RATE: u64 = 512 * 1024;
use super::user::Identity;

/// The database side of `req`, planned as root, refused if the folder is
/// no longer the one validation saw: looked up again it must be the same
/// canonical path, or a link has been swapped in since. (Inside the
/// snapshot the path is then opened without following any link.)
pub fn plan_unchanged(req: &BackupRequest) -> Result<SourcePlan> {
    let source = crate::backup::plan_source(req)?;
    same_folder(&req.source, &source.store.dir)?;
    Ok(source)
}

/// [`plan_unchanged`]'s check alone: `folder`, looked up again, is still
/// the canonical path validation saw.
pub fn source_unchanged(folder: &std::path::Path) -> Result<()> {
    same_folder(folder, &crate::volume::canonical(folder)?)
}

fn same_folder(asked: &std::path::Path, found: &std::path::Path) -> Result<()> {
    if asked == found {
        return Ok(());
    }
    Err(Error::Refused {
        field: "source",
        reason: format!(
            "{} changed while persnap looked at it (it now leads to {}); nothing was read",
            asked.display(),
            found.display()
        ),
    })
}

/// Run the backup `req` for `user`; returns the helper's exit code. The
/// final frame (done or error) has been queued on `events`.
pub fn backup_for(req: BackupRequest, user: &Identity, events: &Events) -> i32 {
    let started = (|| {
        let source = plan_unchanged(&req)?;
        let locks = super::locks::database(&source.store.dir, &source.store.name)?;
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
        move |tag: String, pipes: Vec<OwnedFd>, to_worker: Arc<Mutex<Bounded>>, worker: Handle| {
            CaptureJob {
                source,
                options,
                tag,
                pipes,
                to_worker,
                events: events_for_capture,
                cancel,
                worker,
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
    worker: Handle,
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
                // It will not read again: it must not wait for ever either.
                self.worker.kill();
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
        // A slot only while the snapshot exists: a worker that stalls later
        // cannot keep others from taking theirs.
        let _slot = super::locks::snapshot_slot().map_err(before)?;
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
        let provider =
            snapshot::provider(self.source.method, &self.options, &self.source.store.name)
                .map_err(before)?;
        let mut guard = SnapshotGuard::new(
            provider
                .create(&self.source.volume, &self.tag)
                .map_err(before)?,
        );
        // From the snapshot's own descriptors where it has them (the
        // clones): a folder someone else can rename is not looked up again.
        let (image, files) = guard.open_store(&self.source.store.name).map_err(before)?;
        Worker::send(
            &self.to_worker,
            &ToWorker::Captured {
                snapshot_id: guard.id().to_owned(),
                held_still_secs: guard.held_still().map(|d| d.as_secs_f64()),
                warning: guard.warning(),
                journal_mode: image.journal_mode(),
                files: files.iter().map(|(f, _)| f.clone()).collect(),
            },
        )
        .map_err(|e| before(worker_lost(&e.to_string())))?;
        let after = |e| (true, e);
        // The snapshot is held at most this long, however the worker reads.
        let total: u64 = files.iter().map(|(f, _)| f.size).sum();
        let deadline = Instant::now() + STALL + Duration::from_secs(total / MIN_RATE);
        let mut pipes = pipes.into_iter();
        for (file, mut input) in files {
            let pipe = pipes.next().expect("as many pipes as store files");
            let mut out = Bounded::new(pipe, STALL, Some(self.cancel.clone())).until(deadline);
            send_file(&mut input, &mut out, &file.name, &self.cancel).map_err(after)?;
        }
        drop(pipes);
        let valid = guard.check_valid();
        let released = guard.release_retrying();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_swapped_for_a_link_after_validation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = crate::volume::canonical(dir.path()).unwrap();
        let other = base.join("other");
        std::fs::create_dir(&other).unwrap();
        crate::loadgen::init(
            &other.join("persistence.db"),
            crate::loadgen::Mode::Rollback,
            1,
        )
        .unwrap();
        // Validation saw `orders` as a real folder; now it leads elsewhere.
        let orders = base.join("orders");
        std::os::unix::fs::symlink(&other, &orders).unwrap();
        let request = |source: &std::path::Path| {
            let mut req = BackupRequest::new(source, &base);
            // Any method: what matters is which folder is planned.
            req.method = crate::method::MethodChoice::Explicit(crate::method::Method::SqliteOnline);
            req
        };
        let err = plan_unchanged(&request(&orders)).unwrap_err().to_string();
        assert!(err.contains("changed while persnap looked"), "{err}");
        plan_unchanged(&request(&other)).unwrap();
    }
}
