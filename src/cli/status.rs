//! `persnap status`: is every protected database protected? One line per
//! database in plain words, what to do when it is not, and an exit status
//! monitoring systems read (Nagios plugin convention: 0 all protected,
//! 1 something needs attention, 2 a backup failed or never happened,
//! 3 persnap cannot tell).

use persnap::history::History;
use persnap::monitor::metrics;
use persnap::protection::{self, Level, Policy};
use persnap::registry::Registry;

use super::Failure;

/// `persnap status` could not tell (no database protected, registry unreadable).
pub const EXIT_UNKNOWN: i32 = 3;

/// `26h`, `3d`, `90m`, `1w`: how old the newest verified backup may be.
pub fn parse_age(text: &str) -> Result<chrono::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not an age; say 90m, 26h, 3d or 1w"))?;
    let d = match unit.trim() {
        "m" | "min" => chrono::Duration::minutes(n),
        "h" | "" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        "w" => chrono::Duration::weeks(n),
        _ => return Err(format!("{text:?} is not an age; say 90m, 26h, 3d or 1w")),
    };
    if n == 0 {
        return Err("the age must be more than 0".into());
    }
    Ok(d)
}

/// A schedule's history, read as its maker when status runs as root (as
/// a monitoring check does): the folder is theirs to fill with links.
fn load_as_owner(s: &persnap::schedule::Schedule) -> persnap::Result<Vec<persnap::history::Run>> {
    #[cfg(unix)]
    if persnap::fsutil::is_root() {
        let owner = s
            .uid
            .or_else(|| persnap::sys::owner_of(&s.history_dir))
            .filter(|uid| *uid != 0);
        if let Some(uid) = owner {
            let dir = s.history_dir.clone();
            return persnap::privileged::user::Identity::of_uid(uid)?
                .run_as(move || History::at(&dir).load())?;
        }
    }
    protection::load_history(s)
}

/// Every protected database judged: from this user's own history (with
/// `own`) and each schedule's, read as its maker.
pub fn survey(own: bool, max_age: Option<chrono::Duration>) -> persnap::Result<protection::Survey> {
    let own_runs = match History::open_default().ok().filter(|_| own) {
        Some(h) => {
            let _ = h.recover();
            h.load().unwrap_or_default()
        }
        None => Vec::new(),
    };
    let schedules = persnap::schedule::list().unwrap_or_default();
    protection::survey(
        &Registry::system(),
        &own_runs,
        &schedules,
        &load_as_owner,
        Policy { max_age },
        chrono::Local::now(),
    )
}

/// How `persnap status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A few lines per database, in words.
    Text,
    /// Every assessment, whole.
    Json,
    /// Prometheus' text exposition format.
    Prometheus,
}

pub fn run(
    format: Format,
    textfile: Option<std::path::PathBuf>,
    max_age: Option<chrono::Duration>,
) -> Result<(), Failure> {
    if textfile.is_some() && format != Format::Prometheus {
        return Err(Failure {
            code: 2,
            error: anyhow::anyhow!(
                "--textfile writes Prometheus metrics: give --format prometheus."
            ),
        });
    }
    let unknown = |message: String| Failure {
        code: EXIT_UNKNOWN,
        error: anyhow::anyhow!(message),
    };
    let registry = Registry::system();
    let survey = survey(true, max_age).map_err(|e| unknown(format!("persnap cannot tell: {e}")))?;
    if format == Format::Prometheus {
        // The state is in the values; a note (a history that could not be
        // read) goes to the error stream, as with the text.
        for note in &survey.notes {
            eprintln!("note: {note}");
        }
        if survey.assessments.is_empty() {
            eprintln!(
                "note: no database is protected on this computer ({}).",
                registry.dir().display()
            );
        }
        return match textfile {
            Some(dir) => {
                write_textfile(&dir, &survey.assessments)?;
                eprintln!(
                    "Wrote the metrics of {} protected database(s) into {}.",
                    survey.assessments.len(),
                    dir.join(metrics::TEXTFILE_NAME).display()
                );
                Ok(())
            }
            None => {
                print!("{}", metrics::exposition(&survey.assessments));
                Ok(())
            }
        };
    }
    if format == Format::Json {
        let out = serde_json::json!({
            "databases": survey.assessments,
            "notes": survey.notes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for a in &survey.assessments {
            print!("{}", protection::describe(a, chrono::Local::now()));
        }
        for note in &survey.notes {
            eprintln!("note: {note}");
        }
    }
    if survey.assessments.is_empty() {
        return Err(unknown(format!(
            "No database is protected on this computer ({} is empty). Protect one in the app, or with `persnap database add NAME --source DIR`.",
            registry.dir().display()
        )));
    }
    let worst = survey
        .assessments
        .iter()
        .map(|a| a.level)
        .max()
        .unwrap_or(Level::Protected);
    if worst == Level::Protected {
        return Ok(());
    }
    let names: Vec<&str> = survey
        .assessments
        .iter()
        .filter(|a| a.level == worst)
        .map(|a| a.name.as_str())
        .collect();
    Err(Failure {
        code: worst.exit_code(),
        error: anyhow::anyhow!("{}: {}", worst.label(), names.join(", ")),
    })
}

/// Write the metrics into node_exporter's textfile folder `dir` as the
/// folder's owner (root only where root alone can change it and every
/// folder above it): root never writes where somebody else could swap
/// what it writes for a link elsewhere.
pub fn write_textfile(
    dir: &std::path::Path,
    assessments: &[persnap::protection::Assessment],
) -> persnap::Result<()> {
    #[cfg(unix)]
    if persnap::fsutil::is_root() {
        let writer =
            persnap::backup::folder_writer(dir).map_err(|problem| persnap::Error::Refused {
                field: "textfile",
                reason: metrics::unsafe_folder(dir, &problem),
            })?;
        if let persnap::restore::Writer::Owner { uid, .. } = writer {
            return persnap::privileged::user::Identity::of_uid(uid)?
                .run_as(|| metrics::write_textfile(dir, assessments))?;
        }
    }
    metrics::write_textfile(dir, assessments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_read_as_people_write_them() {
        assert_eq!(parse_age("26h"), Ok(chrono::Duration::hours(26)));
        assert_eq!(parse_age("3d"), Ok(chrono::Duration::days(3)));
        assert_eq!(parse_age("90m"), Ok(chrono::Duration::minutes(90)));
        assert_eq!(parse_age("1w"), Ok(chrono::Duration::weeks(1)));
        assert_eq!(parse_age("12"), Ok(chrono::Duration::hours(12)));
        assert!(parse_age("0h").is_err());
        assert!(parse_age("soon").is_err());
        assert!(parse_age("3y").is_err());
    }
}
