//! `persnap drill [NAME]`: a restore drill of the protected databases (see
//! `persnap::drill`), and the drill a scheduled backup run makes when one
//! is due.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use persnap::drill::{self, Subject};
use persnap::history::{History, Recorder};
use persnap::pace::Pace;
use persnap::progress::CancelToken;
use persnap::registry::{Database, Registry};
use persnap::repository::{Address, Password, Repo};

use super::{Failure, Printer, install_cancel_on_signals};

/// What `persnap drill` was asked.
pub struct Asked {
    pub name: Option<String>,
    pub password_file: Option<PathBuf>,
    pub offsite_password_file: Option<PathBuf>,
    pub pace: Pace,
}

pub fn run(asked: Asked) -> Result<(), Failure> {
    let registry = Registry::system();
    let all = registry.list()?;
    let chosen: Vec<Database> = match &asked.name {
        Some(name) => match all.into_iter().find(|d| &d.name == name) {
            Some(db) => vec![db],
            None => {
                return Err(usage(&format!(
                    "No database is protected as {name} (persnap database list shows them)."
                )));
            }
        },
        None if all.is_empty() => {
            return Err(usage(
                "No database is protected yet: there is nothing to drill (persnap database add).",
            ));
        }
        None => all,
    };
    let history = History::open_default()?;
    history.recover()?;
    let cancel = CancelToken::new();
    install_cancel_on_signals(&cancel)?;
    let staging = super::repo::staging_dir()?;
    let mut failed = Vec::new();
    for db in &chosen {
        let repository = db
            .repository
            .as_ref()
            .map(|r| open(&r.location, asked.password_file.as_deref()))
            .transpose()?;
        let offsite = db
            .offsite
            .as_ref()
            .map(|r| open(&r.location, asked.offsite_password_file.as_deref()))
            .transpose()?;
        let staged_only = db.repository.as_ref().is_some_and(|r| r.staged);
        let folder = db.location.clone().filter(|_| !staged_only);
        let subject = Subject {
            folder: db.folder.clone(),
            store_name: db.store_name.clone(),
            database: db.name.clone(),
        };
        eprintln!("Restore drill of {}:", db.name);
        let report = drill_one(
            &subject,
            folder,
            repository.as_ref(),
            offsite.as_ref(),
            &history,
            &staging,
            asked.pace,
            None,
            &cancel,
        )?;
        if !report.passed() {
            failed.push(db.name.clone());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: persnap::ErrorKind::Verify.exit_code(),
            error: anyhow::anyhow!(
                "Not proven restorable: {}. Find out what happened to the place named above (a disk, the server), then back up again and drill again (persnap drill).",
                failed.join(", ")
            ),
        })
    }
}

fn usage(message: &str) -> Failure {
    Failure {
        code: 2,
        error: anyhow::anyhow!("{message}"),
    }
}

/// A repository the registry names, opened with the password from `file`,
/// else your keyring, else the terminal.
fn open(location: &str, file: Option<&Path>) -> Result<Repo, Failure> {
    let location = Address::parse(location)?;
    let kept = || {
        (!persnap::fsutil::is_root())
            .then(|| {
                persnap::repository::keyring::recall(&location)
                    .ok()
                    .flatten()
            })
            .flatten()
    };
    let password = match (file, kept()) {
        (Some(file), _) => Password::from_file(file)?,
        (None, Some(kept)) => kept,
        (None, None) if std::io::stdin().is_terminal() => Password::new(
            rpassword::prompt_password(format!("Password for the repository {location}: "))?,
        ),
        (None, None) => {
            return Err(usage(&format!(
                "The password of {location} is needed: give --password-file FILE (--offsite-password-file for the offsite one), or keep it in your keyring (persnap repo remember)."
            )));
        }
    };
    Ok(Repo::open(&location, &password)?)
}

/// Drill one database at its places, saying what each gave back.
#[allow(clippy::too_many_arguments)]
pub fn drill_one(
    subject: &Subject,
    folder: Option<PathBuf>,
    repository: Option<&Repo>,
    offsite: Option<&Repo>,
    history: &History,
    staging: &Path,
    pace: Pace,
    scheduled: Option<String>,
    cancel: &CancelToken,
) -> Result<persnap::drill::DrillReport, Failure> {
    let places = drill::places(folder, repository, offsite);
    let previous = history.load()?;
    let mut printer = Printer::new();
    let mut recorder: Box<dyn Recorder> = Box::new(history.clone());
    let drilled = drill::run(
        subject,
        &places,
        &previous,
        staging,
        pace,
        scheduled,
        &mut *recorder,
        &mut printer,
        cancel,
    );
    printer.finish_line();
    let (_, report) = drilled?;
    for place in &report.places {
        let backups = if place.backups.is_empty() {
            String::new()
        } else {
            format!(" (read back whole: {})", place.backups.join(", "))
        };
        let packs = place
            .packs
            .map(|(n, m)| format!(", part {n} of {m} of its packs read"))
            .unwrap_or_default();
        eprintln!("  {}{backups}{packs}", place.words());
        if let Some(detail) = &place.detail {
            eprintln!("    Details: {detail}");
        }
    }
    Ok(report)
}
