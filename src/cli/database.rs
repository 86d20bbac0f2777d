//! `persnap database add|list|remove`: the registry of protected
//! databases (see `persnap::registry`). Listing reads the registry
//! directly; adding and removing go through the helper at the
//! administrator level (one administrator prompt).

use std::path::PathBuf;

use clap::Subcommand;
use persnap::protocol::{Reply, Request, answer};
use persnap::registry::Registry;

use super::{Failure, call_helper, remote_failure, resolve};
use crate::launch::RemoteFailure;

// Parsed once per run: the size of its largest command does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum DatabaseCommand {
    /// Protect a database (asks for the administrator password): operators may then back it up.
    Add {
        /// A short name: lower-case letters, digits, dashes (e.g. orders).
        name: String,
        /// The folder holding the database (the correlator's -PstoreLocation).
        #[arg(long, value_name = "DIR")]
        source: PathBuf,
        /// The database file name (the correlator's -PstoreName).
        #[arg(long, value_name = "NAME", default_value = persnap::store::DEFAULT_STORE_NAME)]
        store_name: String,
        /// Where its backups go. With it (or --repo), persnap also takes a
        /// test snapshot first and (with --at) installs its schedule, in the
        /// same step: when anything fails, nothing is changed.
        #[arg(long, value_name = "DIR")]
        dest: Option<PathBuf>,
        /// Its backups go into this repository (also into --dest when given).
        /// The connection is tested first; for its schedule, the password
        /// is kept where only root (Windows: SYSTEM) can read it.
        #[command(flatten)]
        repo: super::repo::RepoArgs,
        /// And a copy of each into a second, offsite repository.
        #[command(flatten)]
        offsite: super::repo::OffsiteArgs,
        /// When it is backed up (needs --dest or --repo): hourly, daily, 02:30, "Mon..Fri 22:00".
        #[arg(long, value_name = "WHEN")]
        at: Option<String>,
        #[command(flatten)]
        retention: super::RetentionArgs,
        /// How to get a consistent image: auto, btrfs, lvm, vss, reflink or sqlite-online.
        #[arg(long, default_value = "auto")]
        method: persnap::method::MethodChoice,
        /// Change how the database protected as NAME is protected (its
        /// location, schedule, retention, method); without --at its schedule goes.
        #[arg(long)]
        change: bool,
    },
    /// List the protected databases.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Look for databases to protect: running correlators (their -PstoreLocation,
    /// -PstoreName and --config files) and persistence.db files in the usual places.
    Find {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop protecting a database and remove its schedule (asks for the administrator password). Its backups stay.
    Remove { name: String },
}

pub fn run(cmd: DatabaseCommand) -> Result<(), Failure> {
    match cmd {
        DatabaseCommand::Add {
            name,
            source,
            store_name,
            dest,
            repo,
            offsite,
            at,
            retention,
            method,
            change,
        } => {
            persnap::registry::validate_name(&name)?;
            let source = resolve(&source, persnap::volume::canonical)?;
            let usage = |message: &str| Failure {
                code: 2,
                error: anyhow::anyhow!("{message}"),
            };
            if (dest.is_some() || repo.repo.is_some())
                && !persnap::restore::holds_store_files(&source, &store_name)
                && std::fs::read_dir(&source).is_ok()
            {
                return Err(usage(&format!(
                    "There is no database {store_name} in {} yet, so no test snapshot can be taken: restore one into it first (persnap restore … --to {}), then protect it. To only register the folder now, leave out --dest and --repo.",
                    source.display(),
                    source.display()
                )));
            }
            let repo = repo.unlock()?;
            let staged = dest.is_none() && repo.is_some();
            // Each tested before the administrator is asked.
            let repository = super::repo::tested(repo, retention.for_repository(), staged)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let offsite = super::repo::tested(offsite.unlock()?, retention.for_repository(), false)
                .map_err(|e| anyhow::anyhow!("The offsite repository: {e}"))?;
            let dest = match (dest, staged) {
                (Some(dest), _) => Some(dest),
                (None, true) => Some(super::repo::staging_dir()?),
                (None, false) => None,
            };
            if dest.is_none() && (at.is_some() || change || !method.is_auto() || offsite.is_some())
            {
                return Err(usage(
                    "--at, --method, --change and --offsite say how its backups are made: give where they go with --dest or --repo",
                ));
            }
            let request = match dest {
                None if !retention.policy().is_keep_all() => {
                    return Err(Failure {
                        code: 2,
                        error: anyhow::anyhow!(
                            "--keep-last and --keep-days say which backups to keep at a location: give it with --dest"
                        ),
                    });
                }
                None => Request::DatabaseAdd {
                    name,
                    source,
                    store_name,
                },
                Some(dest) => {
                    let history_dir = match &at {
                        Some(_) => Some(crate::launch::records_folder(
                            persnap::history::History::open_default()?.dir(),
                        )?),
                        None => None,
                    };
                    // Staged only: the repository keeps by its rules, the
                    // staging folder keeps nothing.
                    let policy = if staged {
                        Default::default()
                    } else {
                        retention.for_folder()?
                    };
                    Request::Protect {
                        name,
                        source,
                        store_name,
                        location: resolve(&dest, persnap::backup::canonical_dest)?,
                        method,
                        options: persnap::protocol::BackupOptions {
                            keep_last: policy.keep_last,
                            keep_days: policy.keep_days,
                            ..Default::default()
                        },
                        when: at,
                        history_dir,
                        run_as: None,
                        test_snapshot: true,
                        replace: change,
                        repository,
                        offsite,
                    }
                }
            };
            match call_helper(&request)? {
                Reply::DatabaseAdded { database } => {
                    if persnap::restore::holds_store_files(&database.folder, &database.store_name) {
                        eprintln!(
                            "Protected {}: {} in {}. Operators may now back it up.",
                            database.name,
                            database.store_name,
                            database.folder.display()
                        );
                    } else {
                        eprintln!(
                            "Registered {}: {} in {}, where there is no database yet. Restore one into it (persnap restore … --to {}); it can be backed up once it is there.",
                            database.name,
                            database.store_name,
                            database.folder.display(),
                            database.folder.display()
                        );
                    }
                    Ok(())
                }
                Reply::Protected {
                    database,
                    probe,
                    schedule,
                    installed,
                } => {
                    let place = match &database.repository {
                        Some(r) if r.staged => format!("into the repository {}", r.location),
                        _ => format!(
                            "to {}",
                            database
                                .location
                                .as_deref()
                                .unwrap_or(std::path::Path::new("?"))
                                .display()
                        ),
                    };
                    eprintln!(
                        "Protected {}: {} in {}, backed up {place}. Operators may now back it up.",
                        database.name,
                        database.store_name,
                        database.folder.display(),
                    );
                    if let Some(o) = &database.offsite {
                        eprintln!("A copy of each goes offsite, into {}.", o.location);
                    }
                    if let Some(Ok(said)) = probe.as_ref().and_then(|p| p.test_snapshot.as_ref()) {
                        eprintln!("{said}");
                    }
                    match schedule {
                        Some(s) => eprintln!(
                            "Scheduled {}; {}.",
                            s.when.describe(),
                            s.retention.describe()
                        ),
                        None => eprintln!(
                            "No schedule: back it up with `persnap backup --source {} --dest DIR`.",
                            database.folder.display()
                        ),
                    }
                    if let Some(i) = installed {
                        eprintln!("{}", i.note);
                    }
                    Ok(())
                }
                other => Err(remote_failure(RemoteFailure::unexpected(other))),
            }
        }
        DatabaseCommand::List { json } => {
            let all = Registry::system().list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                eprintln!(
                    "No database is protected yet; an administrator adds one with `persnap database add NAME --source DIR`."
                );
            }
            if !json {
                for db in &all {
                    println!("{}\t{}\t{}", db.name, db.folder.display(), db.store_name);
                }
            }
            Ok(())
        }
        DatabaseCommand::Find { json } => {
            let found = persnap::discover::everything();
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
                return Ok(());
            }
            if found.is_empty() {
                eprintln!(
                    "No correlator is running and no persistence.db was found in the usual places; give the folder with `persnap database add NAME --source DIR`."
                );
            }
            let registry = Registry::system();
            for f in &found {
                let size = f
                    .bytes
                    .map(persnap::units::bytes)
                    .unwrap_or_else(|| "?".into());
                let mode = f
                    .journal_mode
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "?".into());
                let protected = registry
                    .find(&f.folder, &f.store_name)
                    .ok()
                    .flatten()
                    .map(|d| format!("protected as {}", d.name))
                    .unwrap_or_else(|| "not protected".into());
                println!(
                    "{}\t{}\t{size}\t{mode}\t{}\t{protected}",
                    f.folder.display(),
                    f.store_name,
                    f.origin_words()
                );
                if let Some(note) = &f.note {
                    eprintln!("  {}: {note}", f.folder.display());
                }
            }
            Ok(())
        }
        DatabaseCommand::Remove { name } => {
            persnap::registry::validate_name(&name)?;
            let answer::Unprotected {
                existed,
                schedule_removed,
                ..
            } = call_helper(&Request::DatabaseRemove { name: name.clone() })?;
            if !existed {
                return Err(Failure {
                    code: 2,
                    error: anyhow::anyhow!(
                        "No database is registered as {name} (persnap database list shows them)."
                    ),
                });
            }
            match schedule_removed {
                Some(s) => eprintln!(
                    "{name} is no longer protected and its schedule {s} is removed; its backups stay."
                ),
                None => eprintln!("{name} is no longer protected; its backups stay."),
            }
            Ok(())
        }
    }
}
