//! Work off the UI thread: probes, backups and test snapshots run on worker
//! threads and report through a channel; every message wakes the UI with
//! `request_repaint`, so the window never waits on disk, SQLite or pkexec.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};

use persnap::backup::{self, BackupRequest};
use persnap::history::{Discard, History, Recorder, Run};
use persnap::manifest::Manifest;
use persnap::method::{Method, MethodChoice};
use persnap::probe::ProbeReport;
use persnap::progress::{CancelToken, Level, Phase, Progress};
use persnap::protocol::{BackupOptions, Reply, Request};

use crate::launch::{self, HelperRoute, RemoteFailure};

/// What a worker tells the UI.
#[derive(Debug)]
pub enum Msg {
    Phase(Phase),
    Bytes {
        phase: Phase,
        done: u64,
        total: u64,
    },
    Log(Level, String),
    /// A run's record changed (already saved to history).
    Run(Box<Run>),
    BackupDone(Result<(PathBuf, Box<Manifest>), RemoteFailure>),
    TestSnapshotDone(Result<String, String>),
    RestoreDone(Result<Box<persnap::restore::RestoreReport>, RemoteFailure>),
    /// A schedule was installed or removed (or not).
    ScheduleDone(Result<Box<Reply>, RemoteFailure>),
    /// A database was registered as protected (the helper's reply), or not.
    ProtectDone(Result<Box<Reply>, RemoteFailure>),
    Probed {
        key: String,
        result: Result<Box<ProbeReport>, String>,
    },
}

/// The UI's end of a worker: messages in, cancel out.
pub struct Job {
    pub rx: Receiver<Msg>,
    pub cancel: CancelToken,
}

/// Sends messages and wakes the UI.
#[derive(Clone)]
pub struct Notifier {
    tx: Sender<Msg>,
    ctx: eframe::egui::Context,
}

impl Notifier {
    fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
        self.ctx.request_repaint();
    }
}

impl Progress for Notifier {
    fn phase(&mut self, phase: Phase) {
        self.send(Msg::Phase(phase));
    }
    fn bytes(&mut self, phase: Phase, done: u64, total: u64) {
        self.send(Msg::Bytes { phase, done, total });
    }
    fn log(&mut self, level: Level, message: &str) {
        self.send(Msg::Log(level, message.to_owned()));
    }
}

/// Saves each run to history, then tells the UI.
struct HistoryRecorder {
    history: History,
    notify: Notifier,
    /// Whether any run was recorded (a request refused before it started
    /// records none).
    recorded: bool,
}

impl Recorder for HistoryRecorder {
    fn record(&mut self, run: &Run) -> persnap::Result<()> {
        self.recorded = true;
        let saved = self.history.upsert(run);
        self.notify.send(Msg::Run(Box::new(run.clone())));
        saved
    }
}

fn spawn(
    ctx: &eframe::egui::Context,
    work: impl FnOnce(Notifier, CancelToken) + Send + 'static,
) -> Job {
    let (tx, rx) = channel();
    let cancel = CancelToken::new();
    let notify = Notifier {
        tx,
        ctx: ctx.clone(),
    };
    let token = cancel.clone();
    std::thread::spawn(move || work(notify, token));
    Job { rx, cancel }
}

/// Restore a backup through the helper (the store folder usually belongs
/// to the correlator's user, so this needs administrator rights).
pub fn restore(
    ctx: &eframe::egui::Context,
    backup: PathBuf,
    target: PathBuf,
    history: History,
    helper: Option<HelperRoute>,
) -> Job {
    spawn(ctx, move |notify, cancel| {
        let mut progress = notify.clone();
        let mut recorder = HistoryRecorder {
            history,
            notify: notify.clone(),
            recorded: false,
        };
        let request = Request::Restore { backup, target };
        let result = match route(helper)
            .and_then(|r| launch::call_via(r, &request, &mut progress, &mut recorder, &cancel))
        {
            Ok(Reply::Restore { report }) => Ok(Box::new(report)),
            Ok(other) => Err(RemoteFailure::unexpected(other)),
            Err(f) => Err(f),
        };
        notify.send(Msg::RestoreDone(result));
    })
}

/// Install or remove a schedule through the helper (system scheduler
/// entries need administrator rights).
pub fn schedule_change(
    ctx: &eframe::egui::Context,
    request: Request,
    helper: Option<HelperRoute>,
) -> Job {
    spawn(ctx, move |notify, cancel| {
        let mut progress = notify.clone();
        let result = route(helper)
            .and_then(|r| launch::call_via(r, &request, &mut progress, &mut Discard, &cancel));
        notify.send(Msg::ScheduleDone(result.map(Box::new)));
    })
}

/// Register a database as protected (`DatabaseAdd`), or protect it with
/// its location, schedule and a test snapshot (`Protect`), through the
/// helper (the administrator's permission, asked once).
pub fn protect(ctx: &eframe::egui::Context, request: Request, helper: Option<HelperRoute>) -> Job {
    spawn(ctx, move |notify, cancel| {
        let mut progress = notify.clone();
        let result = match route(helper)
            .and_then(|r| launch::call_via(r, &request, &mut progress, &mut Discard, &cancel))
        {
            Ok(
                reply @ (Reply::DatabaseAdded { .. }
                | Reply::Protected { .. }
                | Reply::DatabaseRemoved { .. }),
            ) => Ok(Box::new(reply)),
            Ok(other) => Err(RemoteFailure::unexpected(other)),
            Err(f) => Err(f),
        };
        notify.send(Msg::ProtectDone(result));
    })
}

/// Inspect the folders (unprivileged; reads headers and mounts only).
pub fn probe(
    ctx: &eframe::egui::Context,
    req: BackupRequest,
    dest_given: bool,
    key: String,
    registry: persnap::registry::Registry,
) -> Job {
    spawn(ctx, move |notify, _| {
        let result = persnap::probe::probe(&req, dest_given, false)
            .map(|report| Box::new(report.look_up(&registry)))
            .map_err(|e| e.to_string());
        notify.send(Msg::Probed { key, result });
    })
}

/// How to reach the helper: decided now, or fixed by the caller (tests).
fn route(fixed: Option<HelperRoute>) -> Result<HelperRoute, RemoteFailure> {
    fixed.map_or_else(launch::route, Ok)
}

/// Run a backup: in-process for sqlite-online, else through the helper.
pub fn backup(
    ctx: &eframe::egui::Context,
    req: BackupRequest,
    history: History,
    helper: Option<HelperRoute>,
) -> Job {
    spawn(ctx, move |notify, cancel| {
        let mut progress = notify.clone();
        let mut recorder = HistoryRecorder {
            history: history.clone(),
            notify: notify.clone(),
            recorded: false,
        };
        if let Ok(runs) = history.recover() {
            for run in runs {
                progress.log(
                    Level::Warning,
                    &format!(
                        "The backup started {} was interrupted; its leftovers are removed now.",
                        run.started
                    ),
                );
            }
        }
        let result = if req.method == MethodChoice::Explicit(Method::SqliteOnline) {
            backup::run_backup(&req, &mut recorder, &mut progress, &cancel)
                .map(|r| (r.backup_dir, Box::new(r.manifest)))
                .map_err(|f| RemoteFailure::local(&f.error, Some(f.step)))
        } else {
            let request = Request::Backup {
                source: req.source.clone(),
                dest: req.dest.clone(),
                store_name: req.store_name.clone(),
                method: req.method,
                options: BackupOptions::from_request(&req),
                run_as: None,
            };
            match route(helper)
                .and_then(|r| launch::call_via(r, &request, &mut progress, &mut recorder, &cancel))
            {
                Ok(Reply::Backup {
                    backup_dir,
                    manifest,
                }) => Ok((backup_dir, Box::new(manifest))),
                Ok(other) => Err(RemoteFailure::unexpected(other)),
                Err(f) => Err(f),
            }
        };
        // Refused before it started: history says so.
        if let Err(f) = &result
            && !recorder.recorded
        {
            launch::record_refusal(&mut recorder, &req, f);
        }
        notify.send(Msg::BackupDone(result));
    })
}

/// Create and remove a snapshot through the helper, copying nothing.
pub fn test_snapshot(
    ctx: &eframe::egui::Context,
    req: BackupRequest,
    helper: Option<HelperRoute>,
) -> Job {
    spawn(ctx, move |notify, cancel| {
        let request = Request::Probe {
            source: req.source.clone(),
            dest: None,
            store_name: req.store_name.clone(),
            method: req.method,
            options: BackupOptions::from_request(&req),
            test_snapshot: true,
        };
        let mut progress = notify.clone();
        let result = match route(helper)
            .and_then(|r| launch::call_via(r, &request, &mut progress, &mut Discard, &cancel))
        {
            Ok(Reply::Probe { report }) => report
                .test_snapshot
                .unwrap_or_else(|| Err("no test result".into())),
            Ok(other) => Err(RemoteFailure::unexpected(other).message),
            Err(f) => Err(f.message),
        };
        notify.send(Msg::TestSnapshotDone(result));
    })
}
