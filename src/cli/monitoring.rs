//! `persnap monitoring`: the machine's monitoring settings (see
//! `persnap::monitor::settings`), and the refresh of node_exporter's
//! textfile after each scheduled run.

use std::path::PathBuf;

use persnap::monitor::{metrics, settings};

use super::Failure;

/// What `persnap monitoring` was asked.
#[derive(clap::Subcommand)]
pub enum MonitoringCommand {
    /// What is set.
    Show,
    /// Change what is set (administrator only).
    Set {
        /// After each scheduled run, write the metrics of every protected
        /// database into this folder as persnap.prom (node_exporter's
        /// textfile collector folder, e.g. /var/lib/prometheus/node-exporter).
        #[arg(long, value_name = "DIR", conflicts_with = "no_textfile")]
        textfile: Option<PathBuf>,
        /// Stop writing it.
        #[arg(long)]
        no_textfile: bool,
    },
}

pub fn run(cmd: MonitoringCommand) -> Result<(), Failure> {
    match cmd {
        MonitoringCommand::Show => {
            let now = settings::load()?;
            match &now.textfile_dir {
                Some(dir) => println!(
                    "textfile: {} (rewritten after each scheduled run)",
                    dir.join(metrics::TEXTFILE_NAME).display()
                ),
                None => println!("textfile: not written (persnap monitoring set --textfile DIR)"),
            }
            eprintln!("Kept in {}.", settings::path().display());
            Ok(())
        }
        MonitoringCommand::Set {
            textfile,
            no_textfile,
        } => {
            if !persnap::fsutil::is_root() {
                return Err(Failure {
                    code: persnap::ErrorKind::Elevation.exit_code(),
                    error: anyhow::anyhow!(
                        "Monitoring settings are the administrator's: run this as root (sudo) or as administrator. Nothing was changed."
                    ),
                });
            }
            let mut now = settings::load()?;
            if no_textfile {
                now.textfile_dir = None;
            }
            if let Some(dir) = textfile {
                let dir = persnap::fsutil::canonicalize(&dir).map_err(|e| Failure {
                    code: 2,
                    error: anyhow::anyhow!(
                        "{} cannot be used ({e}). Give node_exporter's textfile folder, which must exist. Nothing was changed.",
                        dir.display()
                    ),
                })?;
                // Written once now: a folder that cannot take it is said
                // here, not after the next run.
                let survey = super::status::survey(false, None)?;
                metrics::write_textfile(&dir, &survey.assessments)?;
                eprintln!(
                    "Wrote {}; scheduled runs rewrite it after each run.",
                    dir.join(metrics::TEXTFILE_NAME).display()
                );
                now.textfile_dir = Some(dir);
            }
            settings::save(&now)?;
            eprintln!("Kept in {}.", settings::path().display());
            Ok(())
        }
    }
}

/// After a scheduled run (root, or SYSTEM): the textfile rewritten when
/// one is set, from every schedule's history. Never fails the run: a
/// problem is said, and logged.
pub fn refresh_textfile() {
    let dir = match settings::load() {
        Ok(settings::Monitoring {
            textfile_dir: Some(dir),
        }) => dir,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!("the metrics textfile was not written: {e}");
            eprintln!("persnap: the metrics textfile was not written: {e}");
            return;
        }
    };
    let written = super::status::survey(false, None)
        .and_then(|survey| metrics::write_textfile(&dir, &survey.assessments));
    match written {
        Ok(()) => tracing::info!(
            "metrics written into {}",
            dir.join(metrics::TEXTFILE_NAME).display()
        ),
        Err(e) => {
            tracing::warn!("the metrics textfile was not written: {e}");
            eprintln!("persnap: the metrics textfile was not written: {e}");
        }
    }
}
