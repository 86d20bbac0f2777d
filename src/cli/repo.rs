//! `persnap repo init|list`, and the repository step of `persnap backup`,
//! `verify` and `restore` with `--repo`.

use persnap::units::LocalTime;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use persnap::progress::CancelToken;
use persnap::repository::{self, Address, Listed, Password, Repo, Stored};
use persnap::units;

use super::Failure;

/// A repository to use, and how to unlock it.
#[derive(clap::Args, Clone, Default)]
pub struct RepoArgs {
    /// A repository (restic format: deduplicated, compressed, encrypted):
    /// a folder's full path, sftp:user@host:/path, s3:https://host/bucket[/prefix]
    /// (keys in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or rest:https://host:port/.
    /// An SFTP server's key must be in ~/.ssh/known_hosts (or
    /// RCLONE_SFTP_KNOWN_HOSTS_FILE), or pinned: sftp:user@host:/path#host-key=SHA256:…;
    /// plain http:// to another machine needs #allow-plain-http at the end.
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
    pub fn unlock(&self) -> Result<Option<(Address, Password)>, Failure> {
        if let Some(file) = &self.repo_unlock {
            let unlock = persnap::repository::Unlock::read(file)?;
            let location = unlock.validate()?;
            warn(&location);
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
        let location = Address::parse(url)?;
        warn(&location);
        // A password kept in the keyring (persnap repo remember, or the
        // app) comes after a file given and before the terminal; a keyring
        // that cannot be reached is as good as an empty one here. Root
        // reads nobody's keyring (`sudo -E` would hand it a user's).
        let kept = || {
            (self.password_file.is_none() && !persnap::fsutil::is_root())
                .then(|| repository::keyring::recall(&location).ok().flatten())
                .flatten()
        };
        let password = match (&self.password_file, kept()) {
            (Some(file), _) => Password::from_file(file)?,
            (None, Some(kept)) => kept,
            (None, None) if std::io::stdin().is_terminal() => {
                let typed = rpassword::prompt_password(format!(
                    "Password for the repository {location}: "
                ))?;
                Password::new(typed)
            }
            (None, None) => {
                return Err(usage(
                    "The repository's password is needed: give --password-file FILE (or PERSNAP_PASSWORD_FILE), or keep it in your keyring once with persnap repo remember.",
                ));
            }
        };
        Ok(Some((location, password)))
    }

    pub fn required(&self) -> Result<(Address, Password), Failure> {
        self.unlock()?
            .ok_or_else(|| usage("Say which repository: --repo URL (or PERSNAP_REPOSITORY)."))
    }
}

/// Said each time a location is used that is taken with a risk
/// (`#allow-plain-http`).
fn warn(location: &Address) {
    if let Some(warning) = location.warning() {
        eprintln!("Warning: {warning}");
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
    /// Set by a schedule's run: the root-only (SYSTEM-only) file the helper
    /// wrote, holding the offsite repository, its password and keys.
    #[arg(long, value_name = "FILE", hide = true)]
    pub offsite_unlock: Option<PathBuf>,
}

impl OffsiteArgs {
    pub fn unlock(&self) -> Result<Option<(Address, Password)>, Failure> {
        if let Some(file) = &self.offsite_unlock {
            let unlock = persnap::repository::Unlock::read(file)?;
            let location = unlock.validate()?;
            for (key, value) in &unlock.environment {
                match std::env::var(key) {
                    // The helper refused keys that contradict the first
                    // repository's; the same ones are set already.
                    Ok(set) if &set == value => {}
                    Ok(_) => {
                        return Err(usage(&format!(
                            "The offsite repository needs another {key} than the first; one run passes one set of storage keys. Make the schedule again."
                        )));
                    }
                    // SAFETY: as for --repo-unlock: first thing in a
                    // scheduled run, before any thread starts.
                    Err(_) => unsafe { std::env::set_var(key, value) },
                }
            }
            return Ok(Some((location, unlock.password())));
        }
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
    /// Keep the repository's password in your keyring (Secret Service;
    /// Windows: Credential Manager), once it opened the repository: persnap
    /// and the app then use it without asking.
    Remember {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Remove the repository's password from your keyring.
    Forget {
        /// The repository (as given to remember).
        #[arg(long, value_name = "URL", env = "PERSNAP_REPOSITORY")]
        repo: String,
    },
}

pub fn run(cmd: RepoCommand) -> Result<(), Failure> {
    match cmd {
        RepoCommand::Init { repo } => {
            let (location, password) =
                if repo.password_file.is_none() && std::io::stdin().is_terminal() {
                    let location = Address::parse(repo.repo.as_deref().unwrap_or_default())?;
                    warn(&location);
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
        RepoCommand::Remember { repo } => {
            let location = Address::parse(repo.repo.as_deref().unwrap_or_default())?;
            // Asked for anew (not taken from the keyring it goes into).
            let password = match &repo.password_file {
                Some(file) => Password::from_file(file)?,
                None if std::io::stdin().is_terminal() => {
                    Password::new(rpassword::prompt_password(format!(
                        "Password for the repository {location}: "
                    ))?)
                }
                None => {
                    return Err(usage(
                        "The repository's password is needed: give --password-file FILE, or run this on a terminal.",
                    ));
                }
            };
            // Only a password that opens the repository is kept.
            Repo::open(&location, &password)?;
            repository::keyring::remember(&location, &password)?;
            eprintln!(
                "The password of {location} is kept in {}: persnap and the app use it from now on (persnap repo forget removes it).",
                repository::keyring::store_name()
            );
            Ok(())
        }
        RepoCommand::Forget { repo } => {
            let location = Address::parse(&repo)?;
            let store = repository::keyring::store_name();
            if repository::keyring::forget(&location)? {
                eprintln!("The password of {location} is no longer kept in {store}.");
            } else {
                eprintln!("No password of {location} was kept in {store}.");
            }
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

fn print_listed(location: &Address, listed: &[Listed]) {
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
            l.time.local_second(),
            l.host,
            l.database,
            units::bytes(l.bytes),
            l.note
                .as_deref()
                .unwrap_or(if l.pinned { "pinned" } else { "" }),
        )
    }
}

pub use persnap::repository::deliver::database_name;

/// Where `persnap backup --repo` without `--dest` stages the verified set
/// before storing it: the user's cache folder, created private.
pub fn staging_dir() -> Result<PathBuf, Failure> {
    Ok(persnap::repository::deliver::staging_dir()?)
}

/// What the helper is asked to keep for a schedule's repository, once the
/// connection test passed: a wrong password or a server out of reach is
/// said now, not at the first run.
pub fn tested(
    unlocked: Option<(Address, Password)>,
    keep: repository::Keep,
    staged: bool,
) -> persnap::Result<Option<persnap::protocol::ScheduleRepositoryRequest>> {
    let Some((location, password)) = unlocked else {
        return Ok(None);
    };
    Repo::open(&location, &password)?;
    Ok(Some(persnap::protocol::ScheduleRepositoryRequest {
        unlock: repository::Unlock::new(&location, &password),
        keep,
        staged,
    }))
}

/// Reads the backup `id` out of the repository into the staging folder,
/// runs `then` on the set (`persnap verify --repo`, which checks it whole), and
/// removes it again.
pub fn from_repository(
    (location, password): (Address, Password),
    id: &Path,
    then: impl FnOnce(PathBuf) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let cancel = CancelToken::new();
    let repo = Repo::open(&location, &password)?;
    let staging = staging_dir()?;
    let mut printer = super::Printer::new();
    let fetched = persnap::repository::deliver::fetch_staged(
        &repo,
        &id.to_string_lossy(),
        &staging,
        &mut printer,
        &cancel,
    );
    printer.finish_line();
    let (_scratch, set) = fetched?;
    then(set)
}

/// `persnap prune --repo`.
pub fn prune(
    (location, password): (Address, Password),
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
    for line in persnap::repository::deliver::forgotten_words(forgotten, keep, dry_run) {
        eprintln!("{line}");
    }
}

/// `persnap pin ID --repo …`: pin or (without a note) unpin.
pub fn pin(
    (location, password): (Address, Password),
    id: &str,
    note: Option<&str>,
) -> Result<(), Failure> {
    let repo = Repo::open(&location, &password)?;
    let history = persnap::history::History::open_default().ok();
    let replaced = persnap::repository::deliver::pin(&repo, id, note, history.as_ref())?;
    let new_id = replaced.id;
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
        stored.short_id(),
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
