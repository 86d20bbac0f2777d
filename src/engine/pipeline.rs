//! One backup, from the request to its recorded outcome, for every front
//! end: the command line, the app and scheduled runs (Linux and Windows)
//! all call [`run`]. They build a [`Job`], supply the way to the helper
//! ([`Helper`]: the engine never elevates) and show the progress and the
//! [`Done`] they get back; nothing else.
//!
//! The steps, in order:
//! 1. the runs of this history whose process died are marked interrupted
//!    (said as a warning, in local time);
//! 2. the folders are resolved here, so a mistake is said in the engine's
//!    words before any password prompt, and recorded as a failed run like
//!    the helper's refusals (a scheduled run sends them as they were
//!    checked when it was scheduled);
//! 3. the repository and the offsite repository are opened: a wrong
//!    password or an unreachable repository is said, and recorded, before
//!    any snapshot is taken (an offsite repository out of reach does not
//!    stop the backup; its copy is recorded as failed). A scheduled run
//!    that root started opens them only once it acts as its user;
//! 4. the backup itself: `sqlite-online` here, any snapshot through the
//!    helper, which writes it as the user it is for; a request the helper
//!    turns down is recorded as a failed run;
//! 5. the verified set is stored in the repository and read back there,
//!    then the repository's retention;
//! 6. the offsite copy, read back there, and its retention. A failed
//!    offsite copy leaves the backup good: [`Done::offsite`] says why.
//!
//! Everything the run did besides is in [`Done::notes`], in words, each a
//! warning or not; every front end shows the same words.

use crate::units::LocalTime;
use std::path::{Path, PathBuf};

use crate::backup::{self, BackupRequest};
use crate::error::{Error, ErrorKind};
use crate::history::{History, Recorder, Run};
use crate::manifest::Manifest;
use crate::method::{Method, MethodChoice};
use crate::progress::{CancelToken, Level, Phase, Progress};
use crate::protocol::{BackupOptions, RemoteFailure, Reply, Request};
use crate::repository::deliver::{self, Delivery};
use crate::repository::{Address, Keep, Password, Repo, Stored};

/// A repository a backup goes into.
pub struct Target {
    pub location: Address,
    /// As typed or read from a file; `None`: the one kept in the system's
    /// secret store for this location.
    pub password: Option<Password>,
    /// Which of this database's backups it keeps afterwards.
    pub keep: Keep,
    /// Keep the password in the system's secret store once it opened the
    /// repository (the app's "Remember it").
    pub remember: bool,
}

/// What to back up and where: one backup, all its places.
pub struct Job {
    /// The set: the store, the folder it goes into (with `staged`, the
    /// staging folder), the method and its options.
    pub backup: BackupRequest,
    /// Only the repository keeps the backup: `backup.dest` is the staging
    /// folder, and the set there is removed once stored.
    pub staged: bool,
    pub repository: Option<Target>,
    pub offsite: Option<Target>,
    /// The schedule that started the run (recorded on it); its folders
    /// are sent as they were checked when it was scheduled.
    pub schedule: Option<String>,
    /// A scheduled run root started for this user: the helper writes the
    /// backup as them, and this process becomes them as the helper starts
    /// ([`Helper`] does that); until then it touches nothing of theirs.
    /// `None` for `sqlite-online`, whose run becomes its user first.
    pub run_as: Option<u32>,
}

/// The way to the privileged helper, as the front end reaches it (pkexec,
/// UAC, or directly when already privileged).
pub trait Helper {
    /// Send `request` and relay the helper's events until it answers.
    fn call(
        &mut self,
        request: &Request,
        progress: &mut dyn Progress,
        recorder: &mut dyn Recorder,
        cancel: &CancelToken,
    ) -> Result<Reply, RemoteFailure>;
}

/// A finished backup: verified, and kept where it was asked to be.
#[derive(Debug, Clone)]
pub struct Done {
    /// The backup's folder (a staged one is gone by now).
    pub backup_dir: PathBuf,
    /// Only the repository keeps it.
    pub staged: bool,
    pub manifest: Manifest,
    /// Stored in the repository and read back there.
    pub stored: Option<Stored>,
    /// The offsite copy, or why it failed (the backup stays good).
    pub offsite: Option<Result<Stored, RemoteFailure>>,
    /// What else happened, in words, each a warning or not: leftovers
    /// removed, retention, the offsite copy, a password not kept.
    pub notes: Vec<(Level, String)>,
}

impl Done {
    /// How the set was checked before it was stored, in words.
    pub fn how(&self) -> &'static str {
        if self.staged {
            crate::manifest::Verification::STAGED_WORDS
        } else {
            self.manifest.verification.read_back_words()
        }
    }

    /// What the verification found and how, in words.
    pub fn verification_words(&self) -> String {
        if self.staged {
            self.manifest.verification.words_staged()
        } else {
            self.manifest.verification.words()
        }
    }

    /// Where the backup is, as a person looks for it: its folder, or its
    /// id in the repository when only the repository keeps it.
    pub fn shown(&self) -> String {
        match &self.stored {
            Some(stored) if self.staged => stored.snapshot.clone(),
            _ => self.backup_dir.display().to_string(),
        }
    }
}

/// Records runs through the front end's recorder, marked with the
/// schedule that started them.
struct Tagged<'a> {
    inner: &'a mut dyn Recorder,
    schedule: Option<String>,
    /// Whether any run was recorded.
    recorded: bool,
}

impl Recorder for Tagged<'_> {
    fn record(&mut self, run: &Run) -> crate::Result<()> {
        let mut run = run.clone();
        run.scheduled = self.schedule.clone();
        self.recorded = true;
        self.inner.record(&run)
    }
}

/// Remembers the run recorded last, to report how it ended.
struct Watched<'a> {
    inner: &'a mut dyn Recorder,
    last: Option<Run>,
}

impl Recorder for Watched<'_> {
    fn record(&mut self, run: &Run) -> crate::Result<()> {
        self.last = Some(run.clone());
        self.inner.record(run)
    }
}

impl Watched<'_> {
    /// The event of the run recorded last, as it stands in `history` now
    /// (the steps after the helper's, storing and copying offsite, update
    /// it there), written where administrators look.
    fn report(self, history: Option<&History>) {
        let Some(last) = self.last else {
            return;
        };
        let now = history
            .and_then(|h| h.load().ok())
            .and_then(|runs| runs.into_iter().find(|r| r.id == last.id))
            .unwrap_or(last);
        // Nobody cancels a scheduled run on Linux but systemd, stopping it
        // at its time limit (then it hung) or on request: the service's
        // `schedule notify`, which knows which, reports it, once.
        if cfg!(target_os = "linux")
            && now.scheduled.is_some()
            && now.outcome == crate::history::Outcome::Cancelled
        {
            return;
        }
        crate::monitor::events::report(&now);
    }
}

/// A backup of `req` turned down before it started (the location gone,
/// the store moved, a wrong password; not a dismissed prompt, not a
/// cancel): still a backup that did not happen, so it goes into
/// `recorder`.
pub fn record_refusal(recorder: &mut dyn Recorder, req: &BackupRequest, failure: &RemoteFailure) {
    if matches!(failure.kind, ErrorKind::Elevation | ErrorKind::Cancelled) {
        return;
    }
    let run = Run::refused(
        req.source.clone(),
        req.store_name.clone(),
        req.dest.clone(),
        failure.kind,
        failure.message.clone(),
    );
    let _ = recorder.record(&run);
}

/// Mark the runs of `history` whose process died as interrupted, saying
/// so (in local time, as everything shown to a person).
fn recover(history: &History, progress: &mut dyn Progress) -> Result<(), RemoteFailure> {
    let runs = history
        .recover()
        .map_err(|e| RemoteFailure::local(&e, Some(Phase::Prepare)))?;
    for run in runs {
        let when = run.started.local_second();
        progress.log(
            Level::Warning,
            &format!("The backup started {when} was interrupted; its leftovers are removed now."),
        );
    }
    Ok(())
}

/// Resolve a path here when possible, so a mistake gets the engine's
/// message before any password prompt; a path this user may not read
/// goes to the helper as given (it checks again, as root).
pub fn resolve(
    path: &Path,
    canonical: fn(&Path) -> crate::Result<PathBuf>,
) -> crate::Result<PathBuf> {
    match canonical(path) {
        Ok(p) => Ok(p),
        Err(Error::SourceUnreadable { .. } | Error::DestNotWritable { .. })
            if path.is_absolute() =>
        {
            Ok(path.to_owned())
        }
        Err(e) => Err(e),
    }
}

/// The repositories of a job, opened.
struct Opened {
    delivery: Option<Delivery>,
    offsite: Option<(crate::Result<Repo>, Address, Keep)>,
}

/// Open the job's repositories. A wrong password (either), or a
/// repository that cannot be opened, is an error before the snapshot;
/// an offsite repository out of reach is not (its copy fails later).
fn open(
    repository: Option<Target>,
    offsite: Option<Target>,
    staged: bool,
    notes: &mut Vec<(Level, String)>,
) -> Result<Opened, (Error, Address, bool)> {
    let delivery = match repository {
        None => None,
        Some(t) => {
            let password = password_of(&t.location, t.password.clone())
                .map_err(|e| (e, t.location.clone(), false))?;
            let delivery = Delivery::open(t.location.clone(), &password, staged, t.keep.clone())
                .map_err(|e| (e, t.location.clone(), false))?;
            remember(&t, &password, notes);
            Some(delivery)
        }
    };
    let offsite = match offsite {
        None => None,
        Some(t) => {
            let opened = match password_of(&t.location, t.password.clone())
                .and_then(|password| Ok((Repo::open(&t.location, &password)?, password)))
            {
                Err(e) if e.kind() == ErrorKind::BadInput => {
                    return Err((e, t.location.clone(), true));
                }
                Ok((repo, password)) => {
                    remember(&t, &password, notes);
                    Ok(repo)
                }
                Err(e) => Err(e),
            };
            Some((opened, t.location, t.keep))
        }
    };
    Ok(Opened { delivery, offsite })
}

/// The password given, else the one kept in the secret store, else what
/// to do.
pub fn password_of(location: &Address, given: Option<Password>) -> crate::Result<Password> {
    if let Some(given) = given {
        return Ok(given);
    }
    crate::repository::keyring::recall(location)?.ok_or_else(|| Error::Repository {
        what: format!("The password of the repository {location} is not kept on this computer."),
        advice: "Connect to it once on the Repositories screen with \"Remember it\" ticked (or run persnap repo remember --repo …), then try again.",
        detail: String::new(),
        kind: ErrorKind::BadInput,
    })
}

/// Keep `password` in the secret store when asked; a failure is a
/// warning.
fn remember(t: &Target, password: &Password, notes: &mut Vec<(Level, String)>) {
    if t.remember
        && let Err(e) = crate::repository::keyring::remember(&t.location, password)
    {
        notes.push((Level::Warning, e.to_string()));
    }
}

/// The same repositories opened only once the backup is made (a
/// scheduled run, once it acts as its user): a failure to open one is
/// then its store step's.
fn open_later(repository: Option<Target>, offsite: Option<Target>, staged: bool) -> Opened {
    let opened = |t: &Target| {
        password_of(&t.location, t.password.clone())
            .and_then(|password| Repo::open(&t.location, &password))
    };
    Opened {
        delivery: repository.map(|t| Delivery::later(opened(&t), t.location, staged, t.keep)),
        offsite: offsite.map(|t| (opened(&t), t.location, t.keep)),
    }
}

/// Run one backup, from the request to its recorded outcome (see the
/// module's documentation for the steps). Runs are recorded through
/// `recorder` (the front end's: the app also shows each one as it
/// changes); `history` is the same history, read and updated by the
/// later steps.
pub fn run(
    job: Job,
    history: &History,
    recorder: &mut dyn Recorder,
    helper: &mut dyn Helper,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Done, RemoteFailure> {
    let mut watched = Watched {
        inner: recorder,
        last: None,
    };
    let result = run_steps(job, history, &mut watched, helper, progress, cancel);
    // One event for the run, once it has ended everywhere.
    watched.report(Some(history));
    result
}

fn run_steps(
    job: Job,
    history: &History,
    recorder: &mut dyn Recorder,
    helper: &mut dyn Helper,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Done, RemoteFailure> {
    let Job {
        mut backup,
        staged,
        repository,
        offsite,
        schedule,
        run_as,
    } = job;
    let online = backup.method == MethodChoice::Explicit(Method::SqliteOnline);
    // A scheduled run root started acts as its user only once the helper
    // runs: until then it opens nothing and records nothing of theirs.
    let later = run_as.is_some() && !online;
    let mut recorder = Tagged {
        inner: recorder,
        schedule: schedule.clone(),
        recorded: false,
    };
    let mut notes = Vec::new();
    if !later {
        recover(history, progress)?;
    }
    if !online && schedule.is_none() {
        let resolved = resolve(&backup.source, crate::volume::canonical)
            .and_then(|source| Ok((source, resolve(&backup.dest, backup::canonical_dest)?)));
        match resolved {
            Ok((source, dest)) => (backup.source, backup.dest) = (source, dest),
            Err(e) => {
                // Recorded like the helper's refusals: a backup disk gone
                // is a backup that did not happen.
                let f = RemoteFailure::local(&e, None);
                record_refusal(&mut recorder, &backup, &f);
                return Err(f);
            }
        }
    }
    if !staged {
        // A folder that keeps the backup gets one read back from its disk.
        backup.staged = None;
    }
    if staged {
        // Retention is the repository's: the staged set goes anyway.
        backup.retention = Default::default();
        // Read from where it is: the repository's check after storing
        // compares it with the pieces hashed from the snapshot's bytes,
        // and reads back from the disk what was stored. (A repository
        // opened only later is taken to have persnap's pieces.)
        backup.staged = Some(crate::backup::Staged {
            piece_size: Some(crate::repository::DEFAULT_PIECE_SIZE),
        });
    }
    let mut targets = Some((repository, offsite));
    let mut opened = None;
    if !later {
        let (repository, offsite) = targets.take().expect("not taken yet");
        match open(repository, offsite, staged, &mut notes) {
            Ok(o) => opened = Some(o),
            Err((e, location, is_offsite)) => {
                let f = RemoteFailure {
                    kind: e.kind(),
                    step: Some(Phase::Prepare),
                    message: if is_offsite {
                        format!("The offsite repository: {e}")
                    } else {
                        e.to_string()
                    },
                };
                let mut shown = backup.clone();
                shown.dest = PathBuf::from(location.display());
                record_refusal(&mut recorder, &shown, &f);
                return Err(f);
            }
        }
        if staged {
            sweep_staging(&backup.dest, &mut notes);
        }
        // A store too large for the list of pieces of the repository that
        // alone keeps it is refused now, before any snapshot. (Where a
        // folder keeps it too, or for the offsite copy, the store refuses
        // just that copy, before writing anything.)
        let o = opened.as_ref().expect("opened above");
        let alone = o
            .delivery
            .as_ref()
            .filter(|_| staged)
            .and_then(Delivery::repo);
        if let Some(staged) = backup.staged.as_mut() {
            staged.piece_size = alone
                .and_then(Repo::piece_size)
                .filter(|size| crate::backup::Staged::PIECE_SIZES.contains(size));
        }
        if let (Some(bytes), Some(repo)) = (store_bytes(&backup.source, &backup.store_name), alone)
            && let Err(e) = crate::repository::check_chunk_list(bytes, repo.smallest_chunk())
        {
            let f = RemoteFailure::local(&e, Some(Phase::Prepare));
            let mut shown = backup.clone();
            shown.dest = PathBuf::from(repo.location().display());
            record_refusal(&mut recorder, &shown, &f);
            return Err(f);
        }
    }
    let result = if online {
        // No snapshot, no elevation: the engine runs here.
        let result = backup::run_backup(&backup, &mut recorder, progress, cancel)
            .map(|r| (r.backup_dir, r.manifest))
            .map_err(|f| RemoteFailure::local(&f.error, Some(f.step)));
        // Turned down before a run began (its lock taken, say).
        if let Err(f) = &result
            && !recorder.recorded
        {
            record_refusal(&mut recorder, &backup, f);
        }
        result
    } else {
        let request = Request::Backup {
            source: backup.source.clone(),
            dest: backup.dest.clone(),
            store_name: backup.store_name.clone(),
            method: backup.method,
            options: BackupOptions::from_request(&backup),
            run_as,
        };
        let called = helper.call(&request, progress, &mut recorder, cancel);
        if later && !crate::fsutil::is_root() {
            // This process is the user now (still root: the helper never
            // started, and its failure is said below).
            if let Err(f) = recover(history, progress) {
                progress.log(Level::Warning, &f.message);
            }
        }
        let result = crate::protocol::answer::answer(called)
            .map(|b: crate::protocol::answer::Backed| (b.backup_dir, b.manifest));
        // Turned down before it started: recorded, so that a scheduled
        // run is seen to fail, not to be missed; only as the user whose
        // history it is.
        if let Err(f) = &result
            && !recorder.recorded
            && (run_as.is_none() || !crate::fsutil::is_root())
        {
            record_refusal(&mut recorder, &backup, f);
        }
        result
    };
    let (backup_dir, manifest) = result?;
    let database = deliver::database_name(&backup.source, &backup.store_name);
    let opened = match opened {
        Some(o) => o,
        None => {
            // Acting as the user now: the repositories of a scheduled run
            // open, and what dead runs left staged goes, removed by them.
            let (repository, offsite) = targets.take().expect("not taken yet");
            let o = open_later(repository, offsite, staged);
            if staged && let Some(staging) = backup_dir.parent() {
                sweep_staging(staging, &mut notes);
            }
            o
        }
    };
    // Repositories on this machine's disks go at the backup's pace.
    let mut opened = opened;
    if let Some(delivery) = opened.delivery.as_mut() {
        delivery.pace(backup.pace);
    }
    if let Some((Ok(repo), _, _)) = opened.offsite.as_mut() {
        repo.pace(backup.pace);
    }
    // Removed at the end, once the offsite copy too has read it.
    let _staged = opened.delivery.as_ref().map(|d| d.staged_set(&backup_dir));
    let mut stored = None;
    if let Some(delivery) = opened.delivery {
        let delivered = delivery
            .deliver(history, &backup_dir, &manifest, &database, progress, cancel)
            .map_err(|e| RemoteFailure::local(&e, Some(Phase::Store)))?;
        notes.extend(delivered.retention);
        stored = Some(delivered.stored);
    }
    let mut offsite_result = None;
    if let Some((repo, location, keep)) = opened.offsite {
        let copied = deliver::store_offsite(
            &repo,
            &location,
            history,
            (&backup_dir, staged),
            &manifest,
            &database,
            progress,
            cancel,
        );
        match &copied {
            Ok(copy) => notes.push((
                Level::Info,
                format!(
                    "Its offsite copy is stored in {} as {} and was read back from there.",
                    copy.location,
                    copy.short_id()
                ),
            )),
            Err(e) => notes.push((
                Level::Warning,
                format!("The backup is good and kept, but its offsite copy failed: {e}"),
            )),
        }
        // Old copies go only once the new one is there.
        if let (Ok(repo), Ok(_), false) = (&repo, &copied, keep.is_keep_all()) {
            notes.extend(deliver::apply_keep(repo, &manifest.host, &database, &keep));
        }
        offsite_result = Some(copied.map_err(|e| RemoteFailure::local(&e, Some(Phase::Store))));
    }
    Ok(Done {
        backup_dir,
        staged,
        manifest,
        stored,
        offsite: offsite_result,
        notes,
    })
}

/// The bytes of the store's files as they are now (its database, journal
/// or WAL, and a manifest's worth), when this process may see them; the
/// helper sees them anyway.
fn store_bytes(source: &Path, store_name: &str) -> Option<u64> {
    let mut total = 1 << 20;
    for role in crate::store::FileRole::ALL {
        let path = source.join(format!("{store_name}{}", role.suffix()));
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => total += meta.len(),
            Err(_) if role == crate::store::FileRole::Main => return None,
            Err(_) => {}
        }
    }
    Some(total)
}

fn sweep_staging(staging: &Path, notes: &mut Vec<(Level, String)>) {
    notes.extend(
        deliver::sweep_staging(staging)
            .into_iter()
            .map(|line| (Level::Info, line)),
    );
}

/// Where the backup to restore is.
pub enum RestoreFrom {
    /// A backup folder.
    Folder(PathBuf),
    /// Backup `id` in the repository `repo` (opened by the front end, as
    /// the user): read out first into a scratch folder of `staging` (the
    /// user's; room for all of it is checked before anything is read),
    /// then restored as a folder is; the scratch folder goes afterwards.
    Repository {
        repo: Box<Repo>,
        id: String,
        staging: PathBuf,
    },
}

/// One restore: what, where to, and what follows it.
pub struct RestoreJob {
    pub from: RestoreFrom,
    /// The folder the database goes into (checked again by the helper).
    pub target: PathBuf,
    /// A [`Request::Protect`] of the restored database, in the same
    /// administrator step (a new machine going on where the old one
    /// stopped).
    pub then_protect: Option<Request>,
}

/// Put a backup back, for every front end: read out of its repository
/// when it is in one, then restored through the helper, which checks it
/// whole, keeps the files that were there and records the run through
/// `recorder`. A failure before the helper (the repository, the room to
/// read it out) is returned as the helper's would be, unrecorded: nothing
/// was asked of the administrator and nothing changed.
pub fn restore(
    job: RestoreJob,
    helper: &mut dyn Helper,
    progress: &mut dyn Progress,
    recorder: &mut dyn Recorder,
    cancel: &CancelToken,
) -> Result<crate::protocol::answer::Restored, RemoteFailure> {
    let (_scratch, backup) = match job.from {
        RestoreFrom::Folder(dir) => (None, dir),
        RestoreFrom::Repository { repo, id, staging } => {
            let (scratch, set) = deliver::fetch_staged(&repo, &id, &staging, progress, cancel)
                .map_err(|e| RemoteFailure::local(&e, None))?;
            (Some(scratch), set)
        }
    };
    let request = Request::Restore {
        backup,
        target: job.target,
        then_protect: job.then_protect.map(Box::new),
    };
    let mut watched = Watched {
        inner: recorder,
        last: None,
    };
    let answer =
        crate::protocol::answer::answer(helper.call(&request, progress, &mut watched, cancel));
    watched.report(None);
    answer
}
