//! The machine's monitoring settings (issue #31), kept by the
//! administrator beside the registry of protected databases:
//! `/etc/persnap/monitoring.json` (Windows:
//! `%ProgramData%\persnap\monitoring.json`). Everyone may read it (it
//! holds no secret); only administrators may change it, and a scheduled
//! run, which reads it as root (SYSTEM), refuses one anybody else could
//! have changed.
//!
//! What carries a token or a password (ping addresses, the mail server's
//! password) is kept apart, in `monitoring.secrets.json` beside it, which
//! only root (SYSTEM and administrators) can read ([`Secrets`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the administrator set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monitoring {
    /// node_exporter's (windows_exporter's) textfile collector folder:
    /// after each scheduled run, the metrics of every protected database
    /// are written there as `persnap.prom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textfile_dir: Option<PathBuf>,
    /// E-mail after a scheduled run fails (its password is a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<Mail>,
    /// The databases (schedules) whose runs ping an address, by name,
    /// with the address's host as shown (the address itself is a secret).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pings: BTreeMap<String, String>,
    /// A mail about every protected database, each morning or each
    /// Monday morning (needs [`Monitoring::mail`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

impl Monitoring {
    /// Whether a scheduled run has anybody to tell beyond the log.
    pub fn alerts(&self) -> bool {
        self.mail.is_some() || !self.pings.is_empty()
    }
}

/// How often the summary mail is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Summary {
    /// Every morning, from [`SUMMARY_HOUR`].
    Daily,
    /// Every Monday morning, from [`SUMMARY_HOUR`].
    Weekly,
}

/// The local hour from which a summary is due (the hourly watch sends it
/// at its first run from then).
pub const SUMMARY_HOUR: u32 = 7;

impl Summary {
    /// In words, for the settings page and `monitoring show`.
    pub fn describe(self) -> &'static str {
        match self {
            Summary::Daily => "every morning at 07:00",
            Summary::Weekly => "every Monday at 07:00",
        }
    }

    /// The newest time a summary became due at or before `now`.
    pub fn last_due(self, now: chrono::DateTime<chrono::Local>) -> chrono::DateTime<chrono::Local> {
        use chrono::{Datelike, TimeZone};
        let mut day = now.date_naive();
        loop {
            let due = day
                .and_hms_opt(SUMMARY_HOUR, 0, 0)
                .and_then(|t| chrono::Local.from_local_datetime(&t).earliest());
            let right_day = self == Summary::Daily || day.weekday() == chrono::Weekday::Mon;
            if let Some(due) = due.filter(|due| right_day && *due <= now) {
                return due;
            }
            day = day.pred_opt().expect("a day before");
        }
    }

    /// Whether one is due at `now`, the last having been sent at `sent`
    /// (never: due at once, so that the first arrives within the hour and
    /// shows it works).
    pub fn due(
        self,
        sent: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Local>,
    ) -> bool {
        // A time ahead of now: the clock was set back; not a reason to
        // stay silent until it catches up.
        sent.is_none_or(|sent| sent < self.last_due(now) || sent > now)
    }
}

/// How the connection to the mail server is protected. Never
/// opportunistic: a server that does not offer it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailSecurity {
    /// STARTTLS on the submission port (587).
    Starttls,
    /// TLS from the first byte (465).
    Tls,
}

impl MailSecurity {
    pub fn default_port(self) -> u16 {
        match self {
            MailSecurity::Starttls => 587,
            MailSecurity::Tls => 465,
        }
    }
}

/// Where failure mail goes, and through which server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// The server's name, as its certificate names it.
    pub server: String,
    pub port: u16,
    pub security: MailSecurity,
    /// The user name to log in with (none: the server takes mail
    /// without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The sender's address.
    pub from: String,
    /// Who receives it.
    pub to: Vec<String>,
    /// A certificate authority (PEM) to trust beyond the system's, for a
    /// server whose certificate an internal authority signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// A change to one setting: kept as it is, set, or removed. Secrets are
/// changed this way because whoever asks cannot read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change<T> {
    #[default]
    Keep,
    Set(T),
    Remove,
}

impl<T> Change<T> {
    /// `now` after the change.
    pub fn applied(self, now: Option<T>) -> Option<T> {
        match self {
            Change::Keep => now,
            Change::Set(value) => Some(value),
            Change::Remove => None,
        }
    }
}

/// A change to the settings and their secrets, as `persnap monitoring
/// set` and the app's Notifications page ask for it (through the helper).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(default)]
    pub textfile_dir: Change<PathBuf>,
    #[serde(default)]
    pub mail: Change<Mail>,
    #[serde(default)]
    pub mail_password: Change<crate::schedule::Secret>,
    /// Ping addresses by database name; the others are kept.
    #[serde(default)]
    pub pings: BTreeMap<String, Change<crate::schedule::Secret>>,
    #[serde(default)]
    pub summary: Change<Summary>,
}

/// What only root (SYSTEM, administrators) may read.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// The mail server's password for [`Mail::user`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_password: Option<crate::schedule::Secret>,
    /// Each database's ping address, by name (it carries the token).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pings: BTreeMap<String, crate::schedule::Secret>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("mail_password", &self.mail_password)
            .field("pings", &self.pings.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where the secrets are kept: beside [`path`].
pub fn secrets_path() -> PathBuf {
    path().with_file_name("monitoring.secrets.json")
}

/// The secrets (none when there is no file). Root (an administrator)
/// only: the file must be root's alone, in a folder only administrators
/// can change.
pub fn load_secrets() -> Result<Secrets> {
    let path = secrets_path();
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Secrets::default()),
        _ => {}
    }
    let judged = crate::sys::secret_only(&path).and_then(|()| {
        path.parent()
            .map_or(Ok(()), crate::fsutil::admin_only_folder)
    });
    if let Err(e) = judged {
        return Err(unreadable(&path, e.to_string()));
    }
    let bytes = std::fs::read(&path).map_err(|e| {
        unreadable(
            &path,
            format!("{e}; only root (an administrator) can read it"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| unreadable(&path, e.to_string()))
}

/// Keep the secrets where only root (SYSTEM, administrators) can read
/// them; none left, the file goes.
pub fn save_secrets(secrets: &Secrets) -> Result<()> {
    let path = secrets_path();
    let failed = |e| {
        Error::io(
            "write",
            &path,
            "Monitoring settings are the administrator's: run this as root (sudo) or as administrator.",
        )(e)
    };
    if secrets == &Secrets::default() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
            _ => Ok(()),
        };
    }
    let json = serde_json::to_vec_pretty(secrets).expect("secrets serialize");
    crate::fsutil::write_secret(&path, &json, None).map_err(failed)
}

/// Where they are kept: beside the registry's folder.
pub fn path() -> PathBuf {
    let registry = crate::registry::Registry::system();
    registry
        .dir()
        .parent()
        .unwrap_or(Path::new("."))
        .join("monitoring.json")
}

fn unreadable(path: &Path, detail: String) -> Error {
    Error::MonitoringSettings {
        path: path.to_owned(),
        detail,
    }
}

/// The settings (none set when there is no file). Read as an
/// administrator, a file or folder someone else could change is refused.
pub fn load() -> Result<Monitoring> {
    read(&path(), true)
}

/// What `path` holds, taken as it is (the app's tests: a file of their
/// own, never the system's).
pub fn load_at(path: &Path) -> Result<Monitoring> {
    read(path, false)
}

fn read(path: &Path, judge: bool) -> Result<Monitoring> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Monitoring::default()),
        Err(e) => return Err(unreadable(path, e.to_string())),
    };
    if judge && crate::fsutil::is_root() {
        let judged = crate::sys::admin_only(path, false).and_then(|()| {
            path.parent()
                .map_or(Ok(()), crate::fsutil::admin_only_folder)
        });
        if let Err(e) = judged {
            return Err(unreadable(
                path,
                format!(
                    "{e}; only administrators may be able to change it. {}",
                    crate::sys::ADMIN_ONLY_FIX
                ),
            ));
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| unreadable(path, e.to_string()))
}

/// Keep `settings` (administrators only: the folder is theirs).
pub fn save(settings: &Monitoring) -> Result<()> {
    let path = path();
    let dir = path.parent().unwrap_or(Path::new("."));
    let json = serde_json::to_vec_pretty(settings).expect("settings serialize");
    crate::sys::create_admin_dir(dir)
        .and_then(|()| crate::fsutil::atomic_write_public(&path, &json))
        .map_err(|e| {
            Error::io(
                "write",
                &path,
                "Monitoring settings are the administrator's: run this as root (sudo) or as administrator.",
            )(e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> chrono::DateTime<chrono::Local> {
        chrono::Local.with_ymd_and_hms(y, m, d, h, 30, 0).unwrap()
    }

    #[test]
    fn a_summary_is_due_once_each_morning_or_each_monday() {
        // 2026-12-07 is a Monday.
        let monday_6 = at(2026, 12, 7, 6);
        let monday_8 = at(2026, 12, 7, 8);
        let tuesday_8 = at(2026, 12, 8, 8);
        assert_eq!(
            Summary::Daily.last_due(monday_8),
            monday_8 - chrono::Duration::minutes(90)
        );
        assert_eq!(
            Summary::Daily.last_due(monday_6).date_naive(),
            at(2026, 12, 6, 7).date_naive()
        );
        assert_eq!(
            Summary::Weekly.last_due(tuesday_8).date_naive(),
            monday_8.date_naive()
        );
        assert_eq!(
            Summary::Weekly.last_due(monday_6).date_naive(),
            at(2026, 11, 30, 7).date_naive()
        );
        // Never sent: due at once.
        assert!(Summary::Weekly.due(None, monday_6));
        // Sent at 08:30 on Monday: not again that day, again on Tuesday's
        // morning for a daily one, not before next Monday for a weekly one.
        let sent = Some(monday_8.with_timezone(&chrono::Utc));
        assert!(!Summary::Daily.due(sent, monday_8 + chrono::Duration::hours(5)));
        assert!(Summary::Daily.due(sent, tuesday_8));
        assert!(!Summary::Weekly.due(sent, tuesday_8));
        assert!(Summary::Weekly.due(sent, at(2026, 12, 14, 7)));
    }
}
