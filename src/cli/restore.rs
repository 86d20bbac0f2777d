//! `persnap restore`: put a backup back, from a folder or a repository,
//! into a protected database's folder or a new or empty one (a new
//! machine). Every refusal the folder, its owner, the room there or a
//! running correlator gives is said before anything is read out of a
//! repository or asked of the administrator.

use persnap::units::LocalTime;
use std::path::PathBuf;

use persnap::pipeline::{self, RestoreFrom, RestoreJob};
use persnap::progress::CancelToken;
use persnap::registry::Registry;
use persnap::repository::{self, Address, Password, Repo, Which};
use persnap::restore::{self, RestorePlan};
use persnap::units;

use super::repo::RepoArgs;
use super::{Failure, Printer, install_cancel_on_signals, resolve};
use crate::launch;

/// What `persnap restore` was asked.
pub struct Asked {
    pub backup: Option<PathBuf>,
    pub repo: RepoArgs,
    pub database: Option<String>,
    pub host: Option<String>,
    pub to: PathBuf,
}

pub fn run(asked: Asked) -> Result<(), Failure> {
    let Asked {
        backup,
        repo,
        database,
        host,
        to,
    } = asked;
    // A folder given is a folder, even with a repository in the
    // environment.
    if let Some(dir) = backup.as_ref().filter(|b| b.is_dir()) {
        if database.is_some() {
            return Err(usage(
                "--database chooses a backup in a repository; a backup folder was given.",
            ));
        }
        return from_folder(dir.clone(), to);
    }
    let which = match (backup, database) {
        (Some(id), None) => Which::Id(id.to_string_lossy().into_owned()),
        (None, Some(database)) => Which::Newest { database, host },
        (Some(_), Some(_)) => {
            return Err(usage(
                "Give either a backup's id or --database (its newest backup), not both.",
            ));
        }
        (None, None) => {
            return Err(usage(
                "Say what to restore: a backup folder, or with --repo a backup's id or --database NAME.",
            ));
        }
    };
    match repo.unlock()? {
        Some(unlocked) => from_repository(unlocked, &which, to),
        None => match which {
            Which::Id(path) => from_folder(PathBuf::from(path), to),
            Which::Newest { .. } => Err(usage(
                "--database chooses a backup in a repository: give --repo URL (or PERSNAP_REPOSITORY).",
            )),
        },
    }
}

fn usage(message: &str) -> Failure {
    Failure {
        code: 2,
        error: anyhow::anyhow!("{message}"),
    }
}

/// A backup folder: its manifest read (as you), the plan checked, then the
/// helper restores.
fn from_folder(backup: PathBuf, to: PathBuf) -> Result<(), Failure> {
    let backup = resolve(&backup, persnap::backup::canonical_dest)?;
    let manifest = persnap::verify::read_listed(&backup)?;
    let plan = restore::plan(
        &to,
        &manifest.store_name,
        manifest.total_bytes,
        &Registry::system(),
    )?;
    say(&plan);
    restore_through_helper(RestoreFrom::Folder(backup), plan.target)
}

/// A backup in a repository: chosen from its list, the plan checked, and
/// only then read out (into your staging folder) and restored.
fn from_repository(
    (location, password): (Address, Password),
    which: &Which,
    to: PathBuf,
) -> Result<(), Failure> {
    let repo = Repo::open(&location, &password)?;
    let chosen = repository::choose(&repo.list()?, which, &location.display())?;
    eprintln!(
        "The backup {} of {} taken on {} at {} ({}).",
        chosen.short_id(),
        chosen.database,
        chosen.host,
        chosen.time.local_second(),
        units::bytes(chosen.bytes)
    );
    let plan = restore::plan(&to, &chosen.store_name, chosen.bytes, &Registry::system())?;
    say(&plan);
    let from = RestoreFrom::Repository {
        repo: Box::new(repo),
        id: chosen.id.clone(),
        staging: super::repo::staging_dir()?,
    };
    restore_through_helper(from, plan.target)
}

/// The plan, in words, before anything happens.
fn say(plan: &RestorePlan) {
    for line in plan.words() {
        eprintln!("{line}");
    }
}

/// The engine's restore (read out of the repository first when the
/// backup is in one), through the helper, said as it goes.
fn restore_through_helper(from: RestoreFrom, target: PathBuf) -> Result<(), Failure> {
    let mut history = persnap::history::History::open_default()?;
    let cancel = CancelToken::new();
    install_cancel_on_signals(&cancel)?;
    let mut progress = Printer::new();
    let job = RestoreJob {
        from,
        target,
        then_protect: None,
    };
    let mut helper = launch::Launcher {
        route: None,
        become_user: None,
    };
    let result =
        pipeline::restore(job, &mut helper, &mut progress, &mut history, &cancel).map(|r| r.report);
    progress.finish_line();
    let report = result.map_err(|f| Failure {
        code: f.kind.exit_code(),
        error: match (f.kind, f.step) {
            (persnap::ErrorKind::Cancelled, _) => anyhow::anyhow!(restore::CANCELLED),
            (_, Some(step)) => anyhow::anyhow!("the restore failed during {step}: {}", f.message),
            (_, None) => anyhow::anyhow!("{}", f.message),
        },
    })?;
    eprintln!(
        "Restored the backup taken {} on {}: integrity {}, {} pages.",
        report.backup_taken.local_second(),
        if report.backup_host.is_empty() {
            "an unknown host"
        } else {
            &report.backup_host
        },
        report.verification.integrity,
        report.verification.page_count,
    );
    if let Some(dir) = &report.safety_dir {
        eprintln!(
            "The files that were there before are kept in {}",
            dir.display()
        );
    }
    for w in &report.warnings {
        eprintln!("Note: {w}");
    }
    println!("{}", report.restored.display());
    Ok(())
}
