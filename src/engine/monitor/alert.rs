//! What a scheduled run tells administrators beyond the log (issue #31):
//! its ping address that it started and how it ended, and, when it
//! failed, an e-mail with the plain reason the card shows.
//!
//! The settings and their secrets are read as root (SYSTEM) before the
//! run acts as its user and kept in memory; nothing here ever fails the
//! run: what could not be sent comes back as words for the log.

use std::time::Instant;

use super::mail::{self, Letter};
use super::ping::{self, Ping};
use super::settings::{self, Monitoring, Secrets};

/// The channels of one run.
#[derive(Debug, Clone)]
pub struct Alerts {
    settings: Monitoring,
    secrets: Secrets,
    /// Pairs a run's start with its end at the ping service.
    run: uuid::Uuid,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub ok: bool,
    /// One line.
    pub summary: String,
    /// The plain reason, or what was done.
    pub body: String,
}

/// The id of this run: systemd's invocation id, which the service's start
/// and its `ExecStopPost` share; a new one elsewhere.
pub fn run_id() -> uuid::Uuid {
    std::env::var("INVOCATION_ID")
        .ok()
        .and_then(|id| uuid::Uuid::try_parse(&id).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
}

impl Alerts {
    /// What the administrator set, with its secrets (root only); `None`
    /// when no channel is set.
    pub fn load(run: uuid::Uuid) -> crate::Result<Option<Alerts>> {
        let settings = settings::load()?;
        if !settings.alerts() {
            return Ok(None);
        }
        let secrets = settings::load_secrets()?;
        Ok(Some(Alerts::with(settings, secrets, run)))
    }

    pub fn with(settings: Monitoring, secrets: Secrets, run: uuid::Uuid) -> Alerts {
        Alerts {
            settings,
            secrets,
            run,
        }
    }

    fn ping_url(&self, name: &str) -> Option<Result<url::Url, String>> {
        self.secrets
            .pings
            .get(name)
            .map(|secret| ping::parse(&secret.0))
    }

    /// Tell `name`'s ping address the run started.
    pub fn started(&self, name: &str) -> Result<(), String> {
        self.ping(name, &Ping::Start, Instant::now() + ping::RUN_DEADLINE)
    }

    fn ping(&self, name: &str, what: &Ping, deadline: Instant) -> Result<(), String> {
        match self.ping_url(name) {
            None => Ok(()),
            Some(Err(e)) => Err(format!("The ping address of {name} is not usable: {e}")),
            Some(Ok(url)) => ping::send(&url, what, self.run, deadline)
                .map_err(|e| format!("The ping for {name} was not sent: {e}")),
        }
    }

    /// Tell them how the run of `name` ended: its ping, and mail when it
    /// failed. What could not be sent, in words.
    pub fn ended(&self, name: &str, ending: &Ending) -> Vec<String> {
        let mut problems = Vec::new();
        let ping = if ending.ok {
            Ping::Success(format!("{}\n{}", ending.summary, ending.body))
        } else {
            Ping::Failure(format!("{}: {}", ending.summary, ending.body))
        };
        if let Err(e) = self.ping(name, &ping, Instant::now() + ping::RUN_DEADLINE) {
            problems.push(e);
        }
        if !ending.ok
            && let Some(mail) = &self.settings.mail
            && let Err(e) = mail::send(
                mail,
                self.secrets.mail_password.as_ref(),
                &failure_letter(name, &crate::manifest::host_name(), ending),
            )
        {
            problems.push(format!("The failure mail was not sent: {e}"));
        }
        problems
    }

    /// A test of the mail settings, as the settings page's button and
    /// `persnap monitoring test` send it.
    pub fn test_mail(&self) -> Option<Result<(), String>> {
        let mail = self.settings.mail.as_ref()?;
        let host = crate::manifest::host_name();
        Some(mail::send(
            mail,
            self.secrets.mail_password.as_ref(),
            &Letter {
                subject: format!("persnap on {host}: a test message"),
                body: format!(
                    "This is a test from persnap's monitoring settings on {host}.\n\n\
                     When a scheduled backup there fails, a message like this one says \
                     which database, what went wrong and what to do."
                ),
            },
        ))
    }

    /// The summary of `survey`, when one is set and due at `now` (the last
    /// sent at `sent`): `None` when none was due.
    pub fn summary(
        &self,
        survey: &crate::protection::Survey,
        sent: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Local>,
    ) -> Option<Result<(), String>> {
        if !self.summary_due(sent, now) {
            return None;
        }
        let how_often = self.settings.summary?;
        let mail = self.settings.mail.as_ref()?;
        let letter = super::summary::letter(&crate::manifest::host_name(), how_often, survey, now);
        Some(
            mail::send(mail, self.secrets.mail_password.as_ref(), &letter)
                .map_err(|e| format!("The summary mail was not sent: {e}")),
        )
    }

    /// Whether a summary is set and due at `now`, the last sent at `sent`
    /// (asked before the survey it needs is made: every history is read).
    pub fn summary_due(
        &self,
        sent: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Local>,
    ) -> bool {
        self.settings.mail.is_some()
            && self
                .settings
                .summary
                .is_some_and(|how_often| how_often.due(sent, now))
    }

    /// A test ping to every address, by name.
    pub fn test_pings(&self) -> Vec<(String, Result<(), String>)> {
        self.secrets
            .pings
            .keys()
            .map(|name| {
                let deadline = Instant::now() + ping::RUN_DEADLINE;
                (name.clone(), self.ping(name, &Ping::Test, deadline))
            })
            .collect()
    }
}

/// Run `work` on a thread of its own and wait for it at most `limit`:
/// a server that hangs past every timeout (a name lookup that never
/// returns, a mail server trickling bytes) never holds the run longer.
/// `None`: it did not finish in time (the thread is left to the
/// process's end).
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(limit).ok()
}

/// How long the end of a run may take for its ping and its mail together.
pub const END_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Check `update` and keep it: the secrets first (settings that name a
/// ping never lack its address), then the settings. `names` are the
/// databases (schedules) a ping may be set for. What was kept comes back.
pub fn apply(update: settings::Update, names: &[String]) -> crate::Result<Monitoring> {
    use settings::Change;
    let refused = |detail: String| crate::Error::MonitoringChange { detail };
    let mut now = settings::load()?;
    let mut secrets = settings::load_secrets()?;
    now.textfile_dir = match update.textfile_dir {
        Change::Set(dir) => {
            let dir = crate::fsutil::canonicalize(&dir).map_err(|e| {
                refused(format!(
                    "{} cannot be used ({e}). Give node_exporter's textfile folder, which must exist.",
                    dir.display()
                ))
            })?;
            if !dir.is_dir() {
                return Err(refused(format!("{} is not a folder.", dir.display())));
            }
            #[cfg(unix)]
            if crate::fsutil::is_root() {
                crate::backup::folder_writer(&dir).map_err(|problem| {
                    refused(format!(
                        "{}.",
                        super::metrics::unsafe_folder(&dir, &problem)
                    ))
                })?;
            }
            Some(dir)
        }
        other => other.applied(now.textfile_dir),
    };
    for (name, change) in update.pings {
        match change {
            Change::Keep => {}
            Change::Remove => {
                now.pings.remove(&name);
                secrets.pings.remove(&name);
            }
            Change::Set(address) => {
                if !names.contains(&name) {
                    return Err(refused(format!(
                        "No protected database or schedule is named {name}{}.",
                        if names.is_empty() {
                            String::new()
                        } else {
                            format!(" (there are: {})", names.join(", "))
                        }
                    )));
                }
                let url = ping::parse(&address.0).map_err(refused)?;
                now.pings.insert(name.clone(), ping::shown(&url));
                secrets
                    .pings
                    .insert(name, crate::schedule::Secret(url.to_string()));
            }
        }
    }
    now.mail = match update.mail {
        Change::Set(mut mail) => {
            mail.server = mail.server.trim().to_owned();
            if mail.server.is_empty() || mail.server.contains(['/', ' ', ':']) {
                return Err(refused(format!(
                    "{:?} is not a mail server's name.",
                    mail.server
                )));
            }
            if mail.port == 0 {
                mail.port = mail.security.default_port();
            }
            mail::parse_address(&mail.from).map_err(refused)?;
            mail.to.retain(|to| !to.trim().is_empty());
            if mail.to.is_empty() {
                return Err(refused("Say who receives the mail.".into()));
            }
            for to in &mail.to {
                mail::parse_address(to).map_err(refused)?;
            }
            mail.user = mail.user.filter(|u| !u.trim().is_empty());
            if let Some(ca) = &mail.ca_file {
                let ca = crate::fsutil::canonicalize(ca)
                    .map_err(|e| refused(format!("{} cannot be used ({e}).", ca.display())))?;
                mail::check_ca_file(&ca).map_err(refused)?;
                mail.ca_file = Some(ca);
            }
            // The password kept goes only to the server it was given for.
            let elsewhere = now.mail.as_ref().is_some_and(|old| {
                (&old.server, old.port, old.security, &old.user)
                    != (&mail.server, mail.port, mail.security, &mail.user)
            });
            if elsewhere
                && mail.user.is_some()
                && update.mail_password == Change::Keep
                && secrets.mail_password.is_some()
            {
                return Err(refused(
                    "The mail server or user changed: give the password again, so that the one kept is never sent to another server.".into(),
                ));
            }
            if mail.user.is_none() && matches!(update.mail_password, Change::Set(_)) {
                return Err(refused(
                    "A mail password needs a user name to log in with.".into(),
                ));
            }
            Some(mail)
        }
        other => other.applied(now.mail),
    };
    let summary_set = matches!(update.summary, Change::Set(_));
    now.summary = update.summary.applied(now.summary);
    if now.mail.is_none() {
        if summary_set {
            return Err(refused(
                "The summary is sent by mail: set the mail server first.".into(),
            ));
        }
        // No mail, no summary: it goes with it.
        now.summary = None;
    }
    secrets.mail_password = update.mail_password.applied(secrets.mail_password);
    if let Some(password) = &secrets.mail_password
        && password.0.is_empty()
    {
        return Err(refused("The mail password is empty.".into()));
    }
    if now.mail.as_ref().is_none_or(|m| m.user.is_none()) {
        secrets.mail_password = None;
    }
    settings::save_secrets(&secrets)?;
    settings::save(&now)?;
    Ok(now)
}

/// Have the hourly watch (`persnap monitoring watch`, run by `exe`)
/// installed while `now` has mail or a ping, removed when not: what was
/// done, in words, or why it could not be (the settings stay kept).
pub fn keep_watch(now: &Monitoring, exe: &std::path::Path) -> Result<Option<String>, String> {
    crate::schedule::watch::keep(now.alerts(), exe).map_err(|e| {
        format!(
            "The settings are kept, but the hourly watch that tells missed runs and sends the summary was not {}: {e}",
            if now.alerts() { "installed" } else { "removed" }
        )
    })
}

/// The mail a failed run sends: which database, on which machine, what
/// went wrong, what to do.
pub fn failure_letter(name: &str, host: &str, ending: &Ending) -> Letter {
    let when = crate::units::LocalTime::local_minute_zone(&chrono::Local::now());
    Letter {
        subject: if ending.summary.ends_with("did not run") {
            format!("persnap on {host}: the backup of {name} did not run")
        } else if ending.summary.contains("restore drill") {
            format!("persnap on {host}: the restore drill of {name} failed")
        } else {
            format!("persnap on {host}: the backup of {name} failed")
        },
        body: format!(
            "{summary}\n\n{body}\n\n\
             Machine: {host}\nDatabase: {name}\nWhen: {when}\n\n\
             What to do: fix what is said above, then back up now (in persnap on \
             {host}, or `persnap status` there to see every database). Until a backup \
             succeeds, the newest good backup is older than planned.\n\n\
             Support: the log of this run is in persnap's log folder on {host}.\n",
            summary = ending.summary,
            body = ending.body,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_mail_names_the_machine_the_database_and_the_reason() {
        let letter = failure_letter(
            "orders",
            "corr-01",
            &Ending {
                ok: false,
                summary: "persnap: the scheduled backup \u{201c}orders\u{201d} failed".into(),
                body: "/var/apama: failed during snapshot: the volume group is full".into(),
            },
        );
        assert_eq!(
            letter.subject,
            "persnap on corr-01: the backup of orders failed"
        );
        assert!(letter.body.contains("the volume group is full"));
        assert!(letter.body.contains("Machine: corr-01"));
        assert!(letter.body.contains("What to do"));
        let drill = failure_letter(
            "orders",
            "corr-01",
            &Ending {
                ok: false,
                summary: "persnap: the restore drill of \u{201c}orders\u{201d} failed".into(),
                body: "The restore drill of persistence.db did not prove its backups restorable"
                    .into(),
            },
        );
        assert_eq!(
            drill.subject,
            "persnap on corr-01: the restore drill of orders failed"
        );
    }
}
