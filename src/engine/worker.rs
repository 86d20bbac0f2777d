//! The helper's unprivileged worker: the part of a backup that writes,
//! run as the user the backup is for.
//!
//! The privileged helper decides the database side as root (store,
//! volume, method: [`crate::backup::SourcePlan`]) and starts
//! `persnap-helper worker` as the invoking user, with four pipes as file
//! descriptors 3 to 6. The worker runs the ordinary engine
//! ([`crate::backup::run_backup_with`]): it checks the backup location,
//! creates the `.partial` folder, asks for the snapshot ([`FromWorker::Capture`]),
//! copies the store files as they arrive through the pipes (hashing them),
//! waits for the helper's word that the snapshot stayed intact, verifies,
//! writes the manifest, renames, and applies retention — every file its
//! own from its creation, every deletion one it could have made itself.
//!
//! Frames are the helper protocol's ([`crate::protocol::write_frame`]).

use std::fs::File;
use std::io::{BufRead, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backup::{BackupRequest, Capture, Captured, Plan, SourcePlan};
use crate::error::{Error, ErrorKind, Result};
use crate::history::{Recorder, Run};
use crate::progress::{CancelToken, Level, Phase, Progress};
use crate::protocol::{self, Event};
use crate::snapshot::SnapshotOptions;
use crate::store::{JournalMode, StoreFile};

/// The first descriptor of the store-file pipes.
pub const FIRST_PIPE_FD: i32 = 3;
/// One pipe per file a store can have.
pub const PIPES: usize = 4;

/// The work the helper gives its worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum WorkerRequest {
    Backup {
        request: Box<BackupRequest>,
        source: Box<SourcePlan>,
    },
    /// A restore, run as the database folder's owner; the backup's files
    /// (as `manifest` lists them) are open at descriptors 3 and up.
    Restore {
        request: Box<crate::restore::RestoreRequest>,
        manifest: Box<crate::manifest::Manifest>,
    },
}

/// The backup a restore worker was given: `manifest` and its files, open
/// at descriptors 3 and up in manifest order.
pub fn inherited_backup(manifest: crate::manifest::Manifest) -> Result<crate::restore::BackupSet> {
    if manifest.files.len() > PIPES {
        return Err(Error::Protocol {
            detail: format!("a backup of {} files", manifest.files.len()),
        });
    }
    let mut files = Vec::with_capacity(manifest.files.len());
    for (i, file) in manifest.files.iter().enumerate() {
        let fd = FIRST_PIPE_FD + i as i32;
        files.push(crate::sys::inherited_file(fd).map_err(|e| Error::Protocol {
            detail: format!("the backup file {} did not arrive: {e}", file.name),
        })?);
    }
    Ok(crate::restore::BackupSet { manifest, files })
}

/// The helper to its worker, after the request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ToWorker {
    Cancel,
    /// The snapshot exists; `files` arrive through the pipes, in order.
    Captured {
        snapshot_id: String,
        journal_mode: JournalMode,
        files: Vec<StoreFile>,
        /// Seconds the live database was held still (a clone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held_still_secs: Option<f64>,
        /// Something the user should know about the snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
    /// No snapshot could be taken.
    CaptureFailed {
        kind: ErrorKind,
        message: String,
    },
    /// Every file was sent and the snapshot removed; `error` if the
    /// snapshot did not stay intact (the copy is then not to be trusted).
    CaptureChecked {
        error: Option<(ErrorKind, String)>,
    },
}

/// The worker to the helper.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum FromWorker {
    /// For the caller, passed on as it is.
    Event { event: Event },
    /// Take the snapshot for run `tag` now.
    Capture { tag: String },
}

/// The worker's frames out, shared by the threads that send them.
#[derive(Clone)]
pub struct Out(Arc<Mutex<Box<dyn Write + Send>>>);

impl Out {
    pub fn new(out: Box<dyn Write + Send>) -> Out {
        Out(Arc::new(Mutex::new(out)))
    }

    pub fn send(&self, frame: &FromWorker) {
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A helper that went away also closes our stdin, which cancels.
        let _ = protocol::write_frame(&mut *out, frame);
    }

    pub fn event(&self, event: Event) {
        self.send(&FromWorker::Event { event });
    }

    /// Send the final frame of the work; its exit code.
    pub fn finish(
        &self,
        result: std::result::Result<crate::protocol::Reply, (Phase, Error)>,
    ) -> i32 {
        let (event, code) = match result {
            Ok(reply) => (
                Event::Done {
                    result: Box::new(reply),
                },
                0,
            ),
            Err((step, error)) => (
                Event::Error {
                    kind: error.kind(),
                    step: Some(step),
                    message: error.to_string(),
                },
                error.kind().exit_code(),
            ),
        };
        self.event(event);
        code
    }
}

impl Progress for Out {
    fn phase(&mut self, phase: Phase) {
        self.event(Event::Phase { phase });
    }
    fn bytes(&mut self, phase: Phase, bytes: u64, total: u64) {
        self.event(Event::Progress {
            phase,
            bytes,
            total,
        });
    }
    fn log(&mut self, level: Level, message: &str) {
        self.event(Event::Log {
            level,
            message: message.to_owned(),
        });
    }
}

impl Recorder for Out {
    fn record(&mut self, run: &Run) -> Result<()> {
        self.event(Event::Run {
            run: Box::new(run.clone()),
        });
        Ok(())
    }
}

/// Read the helper's frames after the request: `Cancel` fires `cancel`
/// (as does the helper hanging up); the rest go to the returned channel.
pub fn listen(mut input: impl BufRead + Send + 'static, cancel: CancelToken) -> Receiver<ToWorker> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        loop {
            match protocol::read_frame::<ToWorker>(&mut input) {
                Ok(ToWorker::Cancel) => break,
                Ok(other) => {
                    if tx.send(other).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        cancel.cancel();
    });
    rx
}

/// The store files as the helper captures them.
pub struct FromHelper {
    pub source: Option<SourcePlan>,
    pub out: Out,
    pub rx: Receiver<ToWorker>,
    pub cancel: CancelToken,
}

/// Wait for the helper's next frame, giving up when cancelled.
fn next(rx: &Receiver<ToWorker>, cancel: &CancelToken) -> Result<ToWorker> {
    loop {
        cancel.check()?;
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(frame) => return Ok(frame),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Err(Error::Cancelled),
        }
    }
}

fn unexpected(frame: &ToWorker) -> Error {
    Error::Protocol {
        detail: format!("the helper sent an unexpected frame: {frame:?}"),
    }
}

impl Capture for FromHelper {
    fn plan_source(&mut self, _req: &BackupRequest) -> Result<SourcePlan> {
        self.source.take().ok_or_else(|| Error::Protocol {
            detail: "the database was planned twice".into(),
        })
    }

    fn take(
        &mut self,
        _plan: &Plan,
        tag: &str,
        _options: &SnapshotOptions,
        _progress: &mut dyn Progress,
    ) -> Result<Box<dyn Captured>> {
        self.out.send(&FromWorker::Capture {
            tag: tag.to_owned(),
        });
        match next(&self.rx, &self.cancel)? {
            ToWorker::Captured {
                snapshot_id,
                journal_mode,
                files,
                held_still_secs,
                warning,
            } if files.len() <= PIPES => Ok(Box::new(Streamed {
                snapshot_id,
                journal_mode,
                held_still_secs,
                warning,
                files: Some(files),
                checked: None,
                rx: std::mem::replace(&mut self.rx, std::sync::mpsc::channel().1),
                cancel: self.cancel.clone(),
            })),
            ToWorker::CaptureFailed { kind, message } => Err(Error::relayed(kind, message)),
            other => Err(unexpected(&other)),
        }
    }
}

struct Streamed {
    snapshot_id: String,
    journal_mode: JournalMode,
    held_still_secs: Option<f64>,
    warning: Option<String>,
    files: Option<Vec<StoreFile>>,
    checked: Option<Result<()>>,
    rx: Receiver<ToWorker>,
    cancel: CancelToken,
}

impl Captured for Streamed {
    fn id(&self) -> &str {
        &self.snapshot_id
    }

    fn journal_mode(&self) -> JournalMode {
        self.journal_mode
    }

    fn held_still(&self) -> Option<f64> {
        self.held_still_secs
    }

    fn warning(&self) -> Option<String> {
        self.warning.clone()
    }

    fn files(&mut self) -> Result<Vec<(StoreFile, File)>> {
        let files = self.files.take().unwrap_or_default();
        let mut opened = Vec::with_capacity(files.len());
        for (i, file) in files.into_iter().enumerate() {
            let fd = FIRST_PIPE_FD + i as i32;
            let pipe = crate::sys::inherited_pipe(fd).map_err(|e| Error::Protocol {
                detail: format!("the store file {} did not arrive: {e}", file.name),
            })?;
            opened.push((file, pipe));
        }
        Ok(opened)
    }

    fn check_valid(&mut self) -> Result<()> {
        if self.checked.is_none() {
            self.checked = Some(match next(&self.rx, &self.cancel)? {
                ToWorker::CaptureChecked { error: None } => Ok(()),
                ToWorker::CaptureChecked {
                    error: Some((kind, message)),
                } => Err(Error::relayed(kind, message)),
                other => Err(unexpected(&other)),
            });
        }
        match self.checked.as_ref().expect("set above") {
            Ok(()) => Ok(()),
            Err(e) => Err(Error::relayed(e.kind(), e.to_string())),
        }
    }

    /// The helper removes the snapshot (and says so) before it confirms.
    fn release(self: Box<Self>, _run: &mut Run, _progress: &mut dyn Progress) {}
}
