//! The summary mail (issue #31): every protected database in the words of
//! `persnap status`, each morning or each Monday morning, sent by the
//! hourly `persnap monitoring watch`. A server nobody logs in to still
//! shows, once a day, that its backups are happening, not only when they
//! stop.

use crate::protection::{self, Level, Survey};

use super::mail::Letter;
use super::settings::Summary;

/// The summary of `survey` on machine `host` at `now`.
pub fn letter(
    host: &str,
    how_often: Summary,
    survey: &Survey,
    now: chrono::DateTime<chrono::Local>,
) -> Letter {
    let all = &survey.assessments;
    let troubled: Vec<String> = all
        .iter()
        .filter(|a| a.level != Level::Protected)
        .map(|a| format!("{} ({})", a.name, a.level.label()))
        .collect();
    let subject = match (all.len(), troubled.len()) {
        (0, _) => format!("persnap on {host}: no database is protected"),
        (1, 0) => format!("persnap on {host}: the database is protected"),
        (n, 0) => format!("persnap on {host}: all {n} databases are protected"),
        // A subject stays a line: three names, then how many more.
        (n, k) => format!(
            "persnap on {host}: {k} of {n} not protected: {}{}",
            troubled[..k.min(3)].join(", "),
            if k > 3 {
                format!(" and {} more", k - 3)
            } else {
                String::new()
            }
        ),
    };
    let mut body = format!(
        "{} summary of the backups on {host}, {} {}.\n\n",
        match how_often {
            Summary::Daily => "The daily",
            Summary::Weekly => "The weekly",
        },
        now.format("%A"),
        crate::units::LocalTime::local_minute_zone(&now)
    );
    if all.is_empty() {
        body += "No database is protected on this machine: nothing is backed up. \
                 Protect one in the persnap app, or with `persnap database add`.\n";
    }
    // The troubled first: they are what the reader must act on.
    let mut ordered: Vec<_> = all.iter().collect();
    ordered.sort_by_key(|a| std::cmp::Reverse(a.level));
    for a in ordered {
        body += &protection::describe(a, now);
        body.push('\n');
    }
    for note in &survey.notes {
        body += &format!("Note: {note}\n");
    }
    body += &format!(
        "This summary is sent {} (`persnap monitoring set --summary off` on {host} stops \
         it); a failed or missed backup is mailed when it happens.\n",
        how_often.describe()
    );
    Letter { subject, body }
}
