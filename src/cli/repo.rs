//! `persnap repo init|list`, and the repository step of `persnap backup`,
//! `verify` and `restore` with `--repo`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use persnap::history::{History, Outcome, Run};
use persnap::manifest::Manifest;
use persnap::progress::{CancelToken, Phase, Progress};
use persnap::repository::{self, Listed, Location, Password, Repo, Stored};
use persnap::units;

use super::Failure;

/// A repository to use, and how to unlock it.
#[derive(clap::Args, Clone, Default)]
pub struct RepoArgs {
    /// A repository (restic format: deduplicated, compressed, encrypted):
    /// a folder's full path, sftp:user@host:/path, s3:https://host/bucket[/prefix]
    /// (keys in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or rest:http://host:port/.
    #[arg(long, value_name = "URL", env = "PERSNAP_REPOSITORY")]
    pub repo: Option<String>,
    /// The file whose first line is the repository's password (without it,
    /// the password is asked for on the terminal).
    #[arg(long, value_name = "FILE", env = "PERSNAP_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Set by a schedule's run: the root-only (SYSTEM-only) file the helper
    /// wrote, holding the repository, its password and storage keys.
    #[arg(long, value_name = "FILE", hide = true)]
    pub repo_unlock: Option<PathBuf>,
}

impl RepoArgs {
    /// The repository and its password, when one is given.
    pub fn unlock(&self) -> Result<Option<(Location, Password)>, Failure> {
        if let Some(file) = &self.repo_unlock {
            let unlock = persnap::repository::Unlock::read(file)?;
            let location = unlock.validate()?;
            for (key, value) in &unlock.environment {
                // SAFETY: a scheduled run sets these first thing, before
                // it starts any thread (cancel handling, the helper's
                // relay, rustic's runtime all come later).
                unsafe { std::env::set_var(key, value) };
            }
            return Ok(Some((location, unlock.password())));
        }
        let Some(url) = &self.repo else {
            if self.password_file.is_some() && std::env::var_os("PERSNAP_PASSWORD_FILE").is_none() {
                return Err(usage(
                    "--password-file is for a repository: give --repo too.",
                ));
            }
            return Ok(None);
        };
        let location = Location::parse(url)?;
        let password = match &self.password_file {
            Some(file) => Password::from_file(file)?,
            None if std::io::stdin().is_terminal() => {
                let typed = rpassword::prompt_password(format!(
                    "Password for the repository {location}: "
                ))?;
                Password::new(typed)
            }
            None => {
                return Err(usage(
                    "The repository's password is needed: give --password-file FILE (or PERSNAP_PASSWORD_FILE).",
                ));
            }
        };
        Ok(Some((location, password)))
    }

    pub fn required(&self) -> Result<(Location, Password), Failure> {
        self.unlock()?
            .ok_or_else(|| usage("Say which repository: --repo URL (or PERSNAP_REPOSITORY)."))
    }
}

fn usage(message: &str) -> Failure {
    Failure {
        code: 2,
        error: anyhow::anyhow!("{message}"),
    }
}

/// A second, offsite repository the same backup is also stored in (3-2-1).
#[derive(clap::Args, Clone, Default)]
pub struct OffsiteArgs {
    /// After the backup is verified (and stored), store the same backup in
    /// this repository too, and read it back from there.
    #[arg(long, value_name = "URL", env = "PERSNAP_OFFSITE_REPOSITORY")]
    pub offsite: Option<String>,
    /// The file whose first line is the offsite repository's password.
    #[arg(long, value_name = "FILE", env = "PERSNAP_OFFSITE_PASSWORD_FILE")]
    pub offsite_password_file: Option<PathBuf>,
}

impl OffsiteArgs {
    pub fn unlock(&self) -> Result<Option<(Location, Password)>, Failure> {
        RepoArgs {
            repo: self.offsite.clone(),
            password_file: self.offsite_password_file.clone(),
            repo_unlock: None,
        }
        .unlock()
    }
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Create a new, empty repository (asks for its password twice on a
    /// terminal). Keep the password: without it the backups cannot be read.
    Init {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// List the persnap backups in a repository, by host and database
    /// (several machines may share one repository).
    List {
        #[command(flatten)]
        repo: RepoArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: RepoCommand) -> Result<(), Failure> {
    match cmd {
        RepoCommand::Init { repo } => {
            let (location, password) =
                if repo.password_file.is_none() && std::io::stdin().is_terminal() {
                    let location = Location::parse(repo.repo.as_deref().unwrap_or_default())?;
                    let first = rpassword::prompt_password("Password for the new repository: ")?;
                    let again = rpassword::prompt_password("The same password again: ")?;
                    if first != again || first.is_empty() {
                        return Err(usage(
                            "The two passwords differ (or are empty); nothing was created.",
                        ));
                    }
                    (location, Password::new(first))
                } else {
                    repo.required()?
                };
            repository::init(&location, &password)?;
            eprintln!(
                "Created an empty repository at {location}. Keep its password safe: without it, nobody can read the backups."
            );
            Ok(())
        }
        RepoCommand::List { repo, json } => {
            let (location, password) = repo.required()?;
            let listed = Repo::open(&location, &password)?.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                print_listed(&location, &listed);
            }
            Ok(())
        }
    }
}

fn print_listed(location: &Location, listed: &[Listed]) {
    if listed.is_empty() {
        println!("No persnap backups in {location} yet.");
        return;
    }
    println!(
        "{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  PINNED",
        "ID", "TAKEN", "HOST", "DATABASE", "SIZE"
    );
    for l in listed {
        println!(
            "{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  {}",
            l.short_id(),
            l.time
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S"),
            l.host,
            l.database,
            units::bytes(l.bytes),
            l.note
                .as_deref()
                .unwrap_or(if l.pinned { "pinned" } else { "" }),
        )
    }
}

/// Where `persnap backup --repo` without `--dest` stages the verified set
/// before storing it: the user's cache folder, created private.
pub fn staging_dir() -> Result<PathBuf, Failure> {
    let dir = std::env::var_os("PERSNAP_STAGING_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            directories::ProjectDirs::from("", "", "persnap").map(|p| p.cache_dir().join("staging"))
        })
        .ok_or_else(|| usage("No home folder is known to stage the backup in; give --dest DIR."))?;
    std::fs::create_dir_all(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// How old a staged set must be before a sweep may take it for a dead
/// run's (besides its run lock being free): a run between its backup and
/// its store holds no lock for a moment.
const STAGED_SWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Sets staged for a repository by runs that died before storing them
/// (their run lock is free, and they are over an hour old): removed from
/// the staging folder `dir` before another is staged. One line for each.
pub fn sweep_staging(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // A finished set's name ends in its run's tag: `…-6c2ab96f`.
        let Some(tag) = name
            .rsplit_once('-')
            .map(|(_, tag)| tag)
            .filter(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            continue;
        };
        let old = std::fs::symlink_metadata(&path).is_ok_and(|m| {
            m.is_dir()
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STAGED_SWEEP_AFTER)
        });
        if !old
            || !path.join(persnap::manifest::MANIFEST_NAME).is_file()
            || persnap::fsutil::RunLock::is_held(tag)
        {
            continue;
        }
        lines.push(match std::fs::remove_dir_all(&path) {
            Ok(()) => format!(
                "Removed {}, staged for a repository by a run that stopped before storing it.",
                path.display()
            ),
            Err(e) => format!(
                "Could not remove {} ({e}), staged by a run that stopped; delete it by hand.",
                path.display()
            ),
        });
    }
    lines
}

/// The name a backup carries in the repository: the protected database's
/// name when it is registered, else the store folder's own name.
pub fn database_name(source: &Path, store_name: &str) -> String {
    let registry = persnap::registry::Registry::system();
    match registry.find(source, store_name) {
        Ok(Some(db)) => db.name,
        _ => persnap::registry::suggest_name(&registry, source, store_name),
    }
}

/// Stores a verified backup set in the repository and records the outcome
/// on the run (already recorded as completed by the backup itself).
#[allow(clippy::too_many_arguments)]
pub fn store(
    repo: &persnap::Result<Repo>,
    location: &Location,
    history: &History,
    backup_dir: &Path,
    manifest: &Manifest,
    database: &str,
    staged: bool,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Stored, Failure> {
    // The run is this process's now: others see it running, not dead.
    let tag = &manifest.run_id[..manifest.run_id.len().min(8)];
    let _alive = persnap::fsutil::RunLock::acquire(tag).ok();
    let mut run = history
        .load()?
        .into_iter()
        .find(|r| r.id == manifest.run_id);
    if let Some(run) = &mut run {
        run.outcome = Outcome::Running;
        if staged {
            run.destination = PathBuf::from(location.display());
        }
        history.upsert(run)?;
    }
    let result = match repo {
        Ok(repo) => repo.store(backup_dir, manifest, database, progress, cancel),
        // Opened only now (a scheduled run, once it acts as its user).
        Err(e) => Err(persnap::Error::relayed(e.kind(), e.to_string())),
    };
    if let Some(mut run) = run {
        finish(&mut run, &result, staged);
        history.upsert(&run)?;
    }
    Ok(result?)
}

/// Stores the same verified set in the offsite repository and records how
/// that went. The backup stays good whatever happens here.
#[allow(clippy::too_many_arguments)]
pub fn store_offsite(
    offsite: &persnap::Result<Repo>,
    location: &Location,
    history: &History,
    backup_dir: &Path,
    manifest: &Manifest,
    database: &str,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Stored, Failure> {
    let tag = &manifest.run_id[..manifest.run_id.len().min(8)];
    let _alive = persnap::fsutil::RunLock::acquire(tag).ok();
    let result = match offsite {
        Ok(offsite) => offsite.store(backup_dir, manifest, database, progress, cancel),
        // Not reachable when the backup began: the backup went ahead.
        Err(e) => Err(persnap::Error::relayed(e.kind(), e.to_string())),
    };
    let record = match &result {
        Ok(copy) => repository::Offsite::Stored { copy: copy.clone() },
        Err(e) => repository::Offsite::Failed {
            location: location.display(),
            message: e.to_string(),
        },
    };
    if let Some(mut run) = history
        .load()?
        .into_iter()
        .find(|r| r.id == manifest.run_id)
    {
        run.offsite = Some(record);
        history.upsert(&run)?;
    }
    result.map_err(|e| Failure {
        code: e.kind().exit_code(),
        error: anyhow::anyhow!("The backup is good and kept, but its offsite copy failed: {e}"),
    })
}

/// Removes a set staged for a repository when dropped, whatever happened:
/// a repository backup leaves no full copy behind.
pub struct Staged(pub Option<PathBuf>);

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn finish(run: &mut Run, result: &persnap::Result<Stored>, staged: bool) {
    let now = chrono::Utc::now();
    run.finished = Some(now);
    run.duration_secs = Some((now - run.started).num_milliseconds() as f64 / 1000.0);
    if staged {
        run.backup_path = None;
    }
    match result {
        Ok(stored) => {
            run.outcome = Outcome::Completed;
            run.repository = Some(stored.clone());
        }
        // With --dest the verified folder backup stands; only its copy in
        // the repository failed.
        Err(e) if !staged => {
            run.outcome = Outcome::Completed;
            run.warnings
                .push(format!("It was not stored in the repository: {e}"));
        }
        Err(persnap::Error::Cancelled) => run.outcome = Outcome::Cancelled,
        Err(e) => {
            run.verification = None;
            run.outcome = Outcome::Failed {
                step: Phase::Store,
                kind: e.kind(),
                message: e.to_string(),
            }
        }
    }
}

/// Reads the backup `id` out of the repository into the staging folder,
/// runs `then` on the set (verify or restore, which check it whole), and
/// removes it again.
pub fn from_repository(
    (location, password): (Location, Password),
    id: &Path,
    then: impl FnOnce(PathBuf) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let cancel = CancelToken::new();
    let repo = Repo::open(&location, &password)?;
    let staging = staging_dir()?;
    let scratch = persnap::verify::WorkDir::create(staging.join(format!(
        "{}fetch-{}",
        persnap::names::SCRATCH_PREFIX,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )))?;
    let mut printer = super::Printer::new();
    let set = repo.fetch(&id.to_string_lossy(), scratch.path(), &mut printer, &cancel);
    printer.finish_line();
    then(set?)
}

/// `persnap prune --repo`.
pub fn prune(
    (location, password): (Location, Password),
    host: String,
    database: &str,
    keep: &repository::Keep,
    dry_run: bool,
) -> Result<(), Failure> {
    if keep.is_keep_all() {
        return Err(usage(
            "Say what to keep: --keep-last, --keep-hourly, --keep-daily, --keep-weekly and/or --keep-days. Nothing was removed.",
        ));
    }
    let repo = Repo::open(&location, &password)?;
    let forgotten = repo.forget(&host, database, keep, dry_run)?;
    for l in &forgotten.removed {
        println!("{}", l.id);
    }
    print_forgotten(&forgotten, keep, dry_run);
    Ok(())
}

pub fn print_forgotten(forgotten: &repository::Forgotten, keep: &repository::Keep, dry_run: bool) {
    let (verb, space) = if dry_run {
        ("would be removed", "")
    } else {
        (
            "removed",
            " The room only they used is given back by a prune a day later, so that a backup another machine stores meanwhile keeps what it needs.",
        )
    };
    eprintln!(
        "{} backup(s) {verb}, {} kept ({}; the newest and pinned ones always).{space}",
        forgotten.removed.len(),
        forgotten.kept,
        keep.describe()
    );
    if forgotten.unfinished > 0 {
        eprintln!(
            "{} unfinished backup(s) {verb} (stored by runs that stopped before checking them; never restored from).",
            forgotten.unfinished
        );
    }
}

/// Retention after a verified backup: a failure here is a warning, the
/// backup itself is good (`persnap prune --repo` tries again).
pub fn apply_keep(repo: &Repo, host: &str, database: &str, keep: &repository::Keep) {
    match repo.forget(host, database, keep, false) {
        Ok(forgotten) => print_forgotten(&forgotten, keep, false),
        Err(e) => eprintln!(
            "warning: the backup is good, but old backups in {} were not removed: {e}",
            repo.location()
        ),
    }
}

/// `persnap pin ID --repo …`: pin or (without a note) unpin.
pub fn pin(
    (location, password): (Location, Password),
    id: &str,
    note: Option<&str>,
) -> Result<(), Failure> {
    let repo = Repo::open(&location, &password)?;
    let replaced = repo.pin(id, note)?;
    let new_id = replaced.id;
    // The history names the backup by id: follow it to the new one.
    if let Ok(history) = persnap::history::History::open_default()
        && let Ok(runs) = history.load()
    {
        for mut run in runs {
            let mut changed = false;
            for stored in run
                .repository
                .iter_mut()
                .chain(run.offsite.iter_mut().filter_map(|o| match o {
                    persnap::repository::Offsite::Stored { copy } => Some(copy),
                    persnap::repository::Offsite::Failed { .. } => None,
                }))
            {
                if stored.location == repo.location().display() && stored.snapshot == replaced.old {
                    stored.snapshot.clone_from(&new_id);
                    changed = true;
                }
            }
            if changed {
                let _ = history.upsert(&run);
            }
        }
    }
    if let Some(warning) = &replaced.old_left {
        eprintln!("Warning: {warning}");
    }
    match note {
        Some(_) => eprintln!(
            "Pinned: retention never removes it. Its id is now {}.",
            &new_id[..8]
        ),
        None => eprintln!(
            "Unpinned: retention may remove it again. Its id is now {}.",
            &new_id[..8]
        ),
    }
    println!("{new_id}");
    Ok(())
}

pub fn print_stored(stored: &Stored) {
    eprintln!(
        "Stored in the repository {} as {}: {} read, {} new ({} after compression), took {}; {}.",
        stored.location,
        &stored.snapshot[..8],
        units::bytes(stored.bytes_read),
        units::bytes(stored.bytes_new),
        units::bytes(stored.bytes_stored),
        units::duration(std::time::Duration::from_secs_f64(stored.seconds)),
        stored.check.checked
    );
    if let Some(warning) = &stored.warning {
        eprintln!("Warning: {warning}");
    }
}
