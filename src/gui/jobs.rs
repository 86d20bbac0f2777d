//! Work off the UI thread: every slow job (probes, backups, test
//! snapshots, restores, drills, verification, schedules, protection, pins,
//! monitoring, surveys, connections) runs on a thread of its own and reports
//! through its own channel; every message wakes the UI with
//! `request_repaint`, so the window never waits on disk, SQLite or pkexec.
//!
//! Each job has its own end (`Job<T>`): a screen holding a `Job<Words>`
//! can only be told words, and a drain never sees another job's end.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};

use persnap::backup::BackupRequest;
use persnap::history::{Discard, History, Recorder, Run};
use persnap::manifest::Manifest;
use persnap::probe::ProbeReport;
use persnap::progress::{CancelToken, Level, Phase, Progress};
use persnap::protocol::{BackupOptions, Reply, Request, answer};

use persnap::pipeline;
use persnap::repository::deliver;
use persnap::repository::{Address, Keep, Password, Stored};

use crate::launch::{self, HelperRoute, RemoteFailure};

/// What a job tells the UI: how far it got, and at last its end `T`.
#[derive(Debug)]
pub enum Msg<T> {
    Phase(Phase),
    Bytes {
        phase: Phase,
        done: u64,
        total: u64,
    },
    Log(Level, String),
    /// A run's record changed (already saved to history).
    Run(Box<Run>),
    /// The job's end: what it made, or why not.
    Done(T),
}

/// What else happened in a backup, in words, each a warning or not.
pub type Notes = Vec<(Level, String)>;

/// The end of a job that asks the helper (schedules, protection,
/// monitoring): its reply, or why not.
pub type Told = Result<Box<Reply>, RemoteFailure>;

/// The end of a job said in words (a verification, a pin): how it went,
/// or why not.
pub type Words = Result<String, String>;

/// How a backup or a test snapshot ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Backup {
        dir: PathBuf,
        manifest: Box<Manifest>,
        /// What else happened, in words (its offsite copy).
        notes: Notes,
    },
    /// A backup kept by a repository (the staged copy is gone).
    Stored(Box<StoredBackup>),
    Failed(RemoteFailure),
    TestSnapshot(Result<String, String>),
}

/// What a probe found, or why it could not look.
pub type Probed = Result<Box<ProbeReport>, String>;

/// A repository connected to, and its persnap backups.
#[derive(Debug)]
pub struct Connected {
    /// Where, as shown (no password in it).
    pub location: String,
    pub backups: Vec<persnap::repository::Listed>,
    /// Why the password could not be kept in the keyring, when asked to.
    pub not_kept: Option<String>,
}

/// A backup that a repository keeps, as the result screen shows it.
#[derive(Debug, Clone)]
pub struct StoredBackup {
    pub stored: Stored,
    pub manifest: Manifest,
    /// What the verification before storing found, and how, in words.
    pub verification: String,
    /// What else happened, in words (retention, a password not kept, the
    /// offsite copy), each a warning or not.
    pub notes: Notes,
}

/// A finished restore, and the protection asked for with it.
#[derive(Debug, Clone)]
pub struct Restored {
    pub report: persnap::restore::RestoreReport,
    /// The protection's reply, or why it failed (the restore stands).
    pub protected: Option<Result<Box<Reply>, String>>,
}

/// A backup in a repository, to read out of it (verify, restore).
#[derive(Clone)]
pub struct InRepository {
    pub location: Address,
    /// Its id there.
    pub snapshot: String,
    /// As typed; `None`: the one kept in the keyring.
    pub password: Option<Password>,
    /// Where it is read out to (default: the user's staging folder).
    pub staging: Option<PathBuf>,
}

impl InRepository {
    /// Read it out into a scratch folder of the staging folder (removed
    /// when the guard drops); the set's folder.
    pub fn fetch(
        &self,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> persnap::Result<(persnap::verify::WorkDir, PathBuf)> {
        let repo = self.open()?;
        let staging = staging(self.staging.clone())?;
        deliver::fetch_staged(&repo, &self.snapshot, &staging, progress, cancel)
    }
}

/// Where a repository's backup is staged, or read out to: `given` (tests
/// give their own), else the user's staging folder; canonical, as the
/// helper insists.
pub fn staging(given: Option<PathBuf>) -> persnap::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir,
        None => deliver::staging_dir()?,
    };
    Ok(persnap::fsutil::canonicalize(&dir).unwrap_or(dir))
}

impl InRepository {
    /// Its repository, opened with the password typed, else the kept one.
    fn open(&self) -> persnap::Result<persnap::repository::Repo> {
        open_with_password(&self.location, self.password.clone())
    }
}

/// The repository at `location`, opened with the password typed, else
/// the one kept in the keyring.
fn open_with_password(
    location: &Address,
    typed: Option<Password>,
) -> persnap::Result<persnap::repository::Repo> {
    persnap::repository::Repo::open(location, &pipeline::password_of(location, typed)?)
}

/// Where a backup goes besides (here: instead of) a folder.
pub struct IntoRepository {
    pub location: Address,
    /// As typed; `None`: the one kept in the keyring.
    pub password: Option<Password>,
    pub keep: Keep,
    /// Keep the password in the system's secret store once it opened the
    /// repository.
    pub remember: bool,
    /// Where the set is staged (default: the user's staging folder; tests
    /// give their own).
    pub staging: Option<PathBuf>,
    /// Only the repository keeps the backup (staged first); else the
    /// backup's folder keeps it too.
    pub staged: bool,
}

/// The UI's end of a job: messages in, cancel out.
pub struct Job<T> {
    pub rx: Receiver<Msg<T>>,
    pub cancel: CancelToken,
}

/// The job's thread went away without saying how its job ended (it panicked).
#[derive(Debug)]
pub struct Stopped;

/// Said when a job's thread went away without its end.
pub const STOPPED: &str = "This stopped unexpectedly; try again.";

impl From<Stopped> for String {
    fn from(_: Stopped) -> String {
        STOPPED.into()
    }
}

impl From<Stopped> for RemoteFailure {
    fn from(_: Stopped) -> RemoteFailure {
        RemoteFailure {
            kind: persnap::ErrorKind::Protocol,
            step: None,
            message: STOPPED.into(),
        }
    }
}

impl<T> Job<T> {
    /// Take in what the job said since the last look, each message handed
    /// to `each`; its end, once it came.
    pub fn drain(&self, mut each: impl FnMut(Msg<T>)) -> Option<Result<T, Stopped>> {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Done(end)) => return Some(Ok(end)),
                Ok(msg) => each(msg),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => return Some(Err(Stopped)),
            }
        }
    }

    /// The job's end, once it came (what it said on the way is let go).
    pub fn end(&self) -> Option<Result<T, Stopped>> {
        self.drain(drop)
    }
}

/// Sends messages and wakes the UI.
pub struct Notifier<T> {
    tx: Sender<Msg<T>>,
    ctx: eframe::egui::Context,
}

impl<T> Clone for Notifier<T> {
    fn clone(&self) -> Self {
        Notifier {
            tx: self.tx.clone(),
            ctx: self.ctx.clone(),
        }
    }
}

impl<T> Notifier<T> {
    fn send(&self, msg: Msg<T>) {
        let _ = self.tx.send(msg);
        self.ctx.request_repaint();
    }

    /// Say how the job ended.
    fn done(&self, end: T) {
        self.send(Msg::Done(end));
    }
}

impl<T> Progress for Notifier<T> {
    fn phase(&mut self, phase: Phase) {
        tracing::info!("== {phase}");
        self.send(Msg::Phase(phase));
    }
    fn bytes(&mut self, phase: Phase, done: u64, total: u64) {
        self.send(Msg::Bytes { phase, done, total });
    }
    fn log(&mut self, level: Level, message: &str) {
        match level {
            Level::Info => tracing::info!("{}", persnap::monitor::log::one_line(message)),
            Level::Warning => tracing::warn!("{}", persnap::monitor::log::one_line(message)),
        }
        self.send(Msg::Log(level, message.to_owned()));
    }
}

/// Saves each run to history, then tells the UI.
struct HistoryRecorder<T> {
    history: History,
    notify: Notifier<T>,
}

impl<T> Recorder for HistoryRecorder<T> {
    fn record(&mut self, run: &Run) -> persnap::Result<()> {
        let saved = self.history.upsert(run);
        self.notify.send(Msg::Run(Box::new(run.clone())));
        saved
    }
}

fn spawn<T: Send + 'static>(
    ctx: &eframe::egui::Context,
    work: impl FnOnce(Notifier<T>, CancelToken) + Send + 'static,
) -> Job<T> {
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

/// Run `work` on a thread, its value the job's end (for quick jobs that
/// report nothing on the way: a survey, a lookup, a connection).
pub fn task<T: Send + 'static>(
    ctx: &eframe::egui::Context,
    work: impl FnOnce() -> T + Send + 'static,
) -> Job<T> {
    spawn(ctx, move |notify, _| notify.done(work()))
}

/// Restore a backup through the engine's restore (the store folder
/// usually belongs to the correlator's user, so this needs administrator
/// rights): the same steps and words as the command line's.
///
/// A backup in a repository is read out of it first, as you, into your
/// staging folder; the restore then checks it whole as any other.
pub fn restore(
    ctx: &eframe::egui::Context,
    backup: PathBuf,
    from: Option<InRepository>,
    target: PathBuf,
    then_protect: Option<Request>,
    history: History,
    helper: Option<HelperRoute>,
) -> Job<Result<Box<Restored>, RemoteFailure>> {
    spawn(ctx, move |notify, cancel| {
        let mut progress = notify.clone();
        let mut recorder = HistoryRecorder {
            history,
            notify: notify.clone(),
        };
        let from = match from {
            None => Ok(pipeline::RestoreFrom::Folder(backup)),
            Some(from) => from.open().and_then(|repo| {
                Ok(pipeline::RestoreFrom::Repository {
                    repo: Box::new(repo),
                    id: from.snapshot.clone(),
                    staging: staging(from.staging.clone())?,
                })
            }),
        };
        let result = from
            .map_err(|e| RemoteFailure::local(&e, None))
            .and_then(|from| {
                let job = pipeline::RestoreJob {
                    from,
                    target,
                    then_protect,
                };
                let mut helper = launch::Launcher {
                    route: helper,
                    become_user: None,
                };
                pipeline::restore(job, &mut helper, &mut progress, &mut recorder, &cancel)
            })
            .map(|answer::Restored { report, protected }| Box::new(Restored { report, protected }));
        notify.done(result);
    })
}

/// Verify a backup again, as after the backup: the folder `dir`, or the
/// backup `from` a repository read out of it first (as you, into your
/// staging folder). Progress as it goes; cancelled cleanly (nothing is
/// changed by a verification, and what was read out goes).
pub fn verify(ctx: &eframe::egui::Context, dir: PathBuf, from: Option<InRepository>) -> Job<Words> {
    spawn(ctx, move |notify, cancel| {
        let mut progress = notify.clone();
        let result = (|| {
            let (_scratch, dir) = match &from {
                None => (None, dir),
                Some(from) => match from.fetch(&mut progress, &cancel) {
                    Ok((scratch, set)) => (Some(scratch), set),
                    Err(persnap::Error::Cancelled) => return Err(CANCELLED_VERIFY.into()),
                    Err(e) => {
                        return Err(format!("It could not be read out of the repository: {e}"));
                    }
                },
            };
            let mut meter = persnap::copy::Meter {
                phase: Phase::Verify,
                done: 0,
                total: 0,
                progress: &mut progress,
                cancel: &cancel,
                pacer: persnap::pace::Pacer::fast(),
            };
            match persnap::verify::verify_backup(
                &dir,
                &persnap::verify::scratch_parent(&dir),
                &mut meter,
            ) {
                Ok((manifest, _)) => Ok(format!(
                    "Verified again: all {} files are as they were written, and the database is intact.",
                    manifest.files.len()
                )),
                Err(persnap::Error::Cancelled) => Err(CANCELLED_VERIFY.into()),
                Err(e) => Err(format!("This backup is damaged: {e}")),
            }
        })();
        notify.done(result);
    })
}

/// Pin (with `note`) or unpin (without) a backup in its repository, and
/// follow its new id in `history`.
pub fn pin_in_repository(
    ctx: &eframe::egui::Context,
    from: InRepository,
    note: Option<String>,
    history: History,
) -> Job<Words> {
    spawn(ctx, move |notify, _cancel| {
        let result = from
            .open()
            .and_then(|repo| {
                deliver::pin(&repo, &from.snapshot, note.as_deref(), Some(&history))
            })
            .map(|replaced| {
                let id = &replaced.id[..replaced.id.len().min(8)];
                let mut words = match &note {
                    Some(_) => format!(
                        "Pinned: kept even when retention would delete it. Its id in the repository is now {id}."
                    ),
                    None => format!(
                        "Unpinned: retention may delete it again. Its id in the repository is now {id}."
                    ),
                };
                if let Some(left) = replaced.old_left {
                    words.push_str(&format!(" ({left})"));
                }
                words
            })
            .map_err(|e| e.to_string());
        notify.done(result);
    })
}

/// Create a new repository at `location` with `password` (kept also in
/// the file `save_to`, when given, before anything is created), then open
/// and list it.
pub fn create_repository(
    ctx: &eframe::egui::Context,
    location: String,
    password: Password,
    save_to: Option<PathBuf>,
) -> Job<Result<Box<Connected>, String>> {
    spawn(ctx, move |notify, _cancel| {
        let result = (|| {
            let location = Address::parse(&location)?;
            if let Some(file) = &save_to {
                password.save_to(file)?;
            }
            persnap::repository::init(&location, &password)?;
            let repo = persnap::repository::Repo::open(&location, &password)?;
            Ok::<_, persnap::Error>(Box::new(Connected {
                location: location.display(),
                backups: repo.list()?,
                not_kept: None,
            }))
        })();
        notify.done(result.map_err(|e| e.to_string()));
    })
}

/// Said when a verification was cancelled.
pub const CANCELLED_VERIFY: &str =
    "The verification was cancelled; nothing was changed, and the backup is as it was.";

/// A repository to drill: where, and the password typed this session
/// (`None`: the one kept in the keyring).
pub type DrillRepository = (Address, Option<Password>);

/// A restore drill of one database (see `persnap::drill`): its folder, its
/// repository and offsite one, read back as you, recorded in `history`.
pub fn drill(
    ctx: &eframe::egui::Context,
    subject: persnap::drill::Subject,
    folder: Option<PathBuf>,
    repository: Option<DrillRepository>,
    offsite: Option<DrillRepository>,
    history: History,
    staging: Option<PathBuf>,
) -> Job<Result<Box<persnap::drill::DrillReport>, String>> {
    spawn(ctx, move |notify, cancel| {
        let result = (|| {
            let open = |(location, typed): DrillRepository| open_with_password(&location, typed);
            let repository = repository.map(open).transpose()?;
            let offsite = offsite.map(open).transpose()?;
            let places = persnap::drill::places(folder, repository.as_ref(), offsite.as_ref());
            let staging = self::staging(staging)?;
            let previous = history.load()?;
            let mut recorder = HistoryRecorder {
                history,
                notify: notify.clone(),
            };
            let mut progress = notify.clone();
            persnap::drill::run(
                &subject,
                &places,
                &previous,
                &staging,
                persnap::pace::Pace::Gentle,
                None,
                &mut recorder,
                &mut progress,
                &cancel,
            )
        })();
        notify.done(
            result
                .map(|(_, report)| Box::new(report))
                .map_err(|e| e.to_string()),
        );
    })
}

/// The manifest of a backup in a repository, read out alone (a few
/// kilobytes), for the restore page: where it came from and what it holds.
pub fn manifest_of(
    ctx: &eframe::egui::Context,
    from: InRepository,
) -> Job<persnap::Result<Manifest>> {
    task(ctx, move || {
        from.open().and_then(|repo| {
            let staging = staging(from.staging.clone())?;
            deliver::read_manifest(&repo, &from.snapshot, &staging)
        })
    })
}

/// Change or test the monitoring settings through the helper (they are
/// the administrator's, and their secrets root's).
pub fn monitoring(
    ctx: &eframe::egui::Context,
    request: Request,
    helper: Option<HelperRoute>,
) -> Job<Told> {
    spawn(ctx, move |notify, cancel| {
        let mut progress = notify.clone();
        let result = route(helper)
            .and_then(|r| launch::call_via(r, &request, &mut progress, &mut Discard, &cancel));
        notify.done(result.map(Box::new));
    })
}

/// Install or remove a schedule through the helper (system scheduler
/// entries need administrator rights).
pub fn schedule_change(
    ctx: &eframe::egui::Context,
    request: Request,
    helper: Option<HelperRoute>,
) -> Job<Told> {
    spawn(ctx, move |notify, cancel| {
        // Into a repository: the connection test first, so that a wrong
        // password or a server out of reach is said now, not at the
        // first run.
        if let Request::ScheduleAdd {
            repository: Some(into),
            ..
        } = &request
            && let Err(e) = connection_test(into)
        {
            notify.done(Err(RemoteFailure::local(&e, None)));
            return;
        }
        let mut progress = notify.clone();
        let result = route(helper)
            .and_then(|r| launch::call_via(r, &request, &mut progress, &mut Discard, &cancel));
        notify.done(result.map(Box::new));
    })
}

/// Register a database as protected (`DatabaseAdd`), or protect it with
/// its location, schedule and a test snapshot (`Protect`), through the
/// helper (the administrator's permission, asked once).
///
/// Into a repository: the connection is tested first (nothing is asked of
/// the administrator for a wrong password), and with `remember` the
/// password is kept in the keyring for "Back up now".
pub fn protect(
    ctx: &eframe::egui::Context,
    request: Request,
    helper: Option<HelperRoute>,
    remember: bool,
) -> Job<Told> {
    spawn(ctx, move |notify, cancel| {
        if let Request::Protect {
            repository,
            offsite,
            ..
        } = &request
        {
            for (into, which) in [(repository, ""), (offsite, "The offsite repository: ")] {
                let Some(into) = into else { continue };
                let opened = connection_test(into).map(|(location, password)| {
                    if remember
                        && let Err(e) = persnap::repository::keyring::remember(&location, &password)
                    {
                        notify.send(Msg::Log(Level::Warning, e.to_string()));
                    }
                });
                if let Err(e) = opened {
                    let mut f = RemoteFailure::local(&e, None);
                    f.message = format!("{which}{}", f.message);
                    notify.done(Err(f));
                    return;
                }
            }
        }
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
        notify.done(result);
    })
}

/// Inspect the folders (unprivileged; reads headers and mounts only).
pub fn probe(
    ctx: &eframe::egui::Context,
    req: BackupRequest,
    dest_given: bool,
    registry: persnap::registry::Registry,
) -> Job<Probed> {
    task(ctx, move || {
        persnap::probe::probe(&req, dest_given, false)
            .map(|report| Box::new(report.look_up(&registry)))
            .map_err(|e| e.to_string())
    })
}

/// The connection test of a repository a request names, before the
/// administrator is asked: a wrong password or a server out of reach is
/// said now, not at the first run. What opened it.
fn connection_test(
    into: &persnap::protocol::ScheduleRepositoryRequest,
) -> persnap::Result<(Address, Password)> {
    let location = into.unlock.validate()?;
    let password = into.unlock.password();
    persnap::repository::Repo::open(&location, &password)?;
    Ok((location, password))
}

/// How to reach the helper: decided now, or fixed by the caller (tests).
fn route(fixed: Option<HelperRoute>) -> Result<HelperRoute, RemoteFailure> {
    fixed.map_or_else(launch::route, Ok)
}

/// Run a backup through the engine's pipeline (the same steps, records
/// and words as the command line's): into the folder of `req`, or with
/// `into` staged and stored in that repository, and with `offsite` also
/// stored there.
pub fn backup(
    ctx: &eframe::egui::Context,
    mut req: BackupRequest,
    history: History,
    helper: Option<HelperRoute>,
    into: Option<IntoRepository>,
    offsite: Option<IntoRepository>,
) -> Job<Outcome> {
    spawn(ctx, move |notify, cancel| {
        let mut progress = notify.clone();
        let mut recorder = HistoryRecorder {
            history: history.clone(),
            notify: notify.clone(),
        };
        let staged = into.as_ref().is_some_and(|i| i.staged);
        let result = match into
            .as_ref()
            .filter(|i| i.staged)
            .map(|i| staging(i.staging.clone()))
        {
            Some(Err(e)) => Err(RemoteFailure::local(&e, Some(Phase::Prepare))),
            Some(Ok(staging)) => {
                req.dest = staging;
                Ok(())
            }
            None => Ok(()),
        };
        let target = |i: IntoRepository| pipeline::Target {
            location: i.location,
            password: i.password,
            keep: i.keep,
            remember: i.remember,
        };
        let result = result.and_then(|()| {
            let job = pipeline::Job {
                backup: req,
                staged,
                repository: into.map(target),
                offsite: offsite.map(target),
                schedule: None,
                run_as: None,
            };
            let mut helper = launch::Launcher {
                route: helper,
                become_user: None,
            };
            pipeline::run(
                job,
                &history,
                &mut recorder,
                &mut helper,
                &mut progress,
                &cancel,
            )
        });
        notify.done(match result {
            Ok(done) => match done.stored.clone() {
                Some(stored) => Outcome::Stored(Box::new(StoredBackup {
                    verification: done.verification_words(),
                    stored,
                    manifest: done.manifest,
                    notes: done.notes,
                })),
                None => Outcome::Backup {
                    dir: done.backup_dir,
                    manifest: Box::new(done.manifest),
                    notes: done.notes,
                },
            },
            Err(f) => Outcome::Failed(f),
        });
    })
}

/// Create and remove a snapshot through the helper, copying nothing.
pub fn test_snapshot(
    ctx: &eframe::egui::Context,
    req: BackupRequest,
    helper: Option<HelperRoute>,
) -> Job<Outcome> {
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
            .and_then(|r| launch::ask_via(r, &request, &mut progress, &mut Discard, &cancel))
        {
            Ok(answer::Probed(report)) => report
                .test_snapshot
                .unwrap_or_else(|| Err("no test result".into())),
            Err(f) => Err(f.message),
        };
        notify.done(Outcome::TestSnapshot(result));
    })
}
