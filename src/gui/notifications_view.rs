//! The Notifications screen (issue #31): where a scheduled backup's
//! failure is told beyond this window — e-mail, a ping service per
//! database, node_exporter's textfile — with a test of each. The settings
//! are the machine's and the administrator's: they are read here (without
//! their secrets) and changed through the helper, one prompt per change.

use std::collections::BTreeMap;

use eframe::egui::{self, RichText, Ui};
use persnap::monitor::settings::{self, Change, Mail, MailSecurity, Monitoring, Summary, Update};
use persnap::protocol::{Reply, Request};
use persnap::schedule::Secret;

use super::PersnapApp;
use super::jobs::{self, Job};
use super::widgets::{AMBER, GREEN, RED};

/// The form, as typed (never saved by the app: the settings live in the
/// system).
#[derive(Default)]
pub struct NotificationsPage {
    /// Where the settings are read (tests; none: the system's).
    pub at: Option<std::path::PathBuf>,
    /// What is kept now; `None` until read.
    now: Option<Result<Monitoring, String>>,
    mail_on: bool,
    server: String,
    port: String,
    security_tls: bool,
    user: String,
    /// A new password; empty keeps the one kept.
    password: String,
    from: String,
    to: String,
    ca: String,
    /// The summary mail, when one is wanted.
    summary: Option<Summary>,
    textfile: String,
    /// New ping addresses by database; empty keeps the one kept.
    pings: BTreeMap<String, String>,
    /// Pings to stop.
    stop_pings: Vec<String>,
    job: Option<Job<jobs::Told>>,
    /// Whether the job saves (or tests).
    saving: bool,
    result: Option<Result<Vec<(bool, String)>, String>>,
}

impl NotificationsPage {
    /// Read what is kept, and fill the form with it.
    pub fn reload(&mut self) {
        let now = match &self.at {
            Some(path) => settings::load_at(path),
            None => settings::load(),
        }
        .map_err(|e| e.to_string());
        if let Ok(now) = &now {
            self.fill(now);
        }
        self.now = Some(now);
    }

    fn fill(&mut self, now: &Monitoring) {
        let mail = now.mail.clone();
        self.mail_on = mail.is_some();
        let mail = mail.unwrap_or(Mail {
            server: String::new(),
            port: 587,
            security: MailSecurity::Starttls,
            user: None,
            from: String::new(),
            to: Vec::new(),
            ca_file: None,
        });
        self.server = mail.server;
        self.port = mail.port.to_string();
        self.security_tls = mail.security == MailSecurity::Tls;
        self.user = mail.user.unwrap_or_default();
        self.password.clear();
        self.from = mail.from;
        self.to = mail.to.join(", ");
        self.ca = mail
            .ca_file
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        self.summary = now.summary;
        self.textfile = now
            .textfile_dir
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        self.pings.clear();
        self.stop_pings.clear();
    }

    /// The change the form asks for, against what is kept (`Err`: what to
    /// fix first, in words).
    pub fn update(&self, now: &Monitoring) -> Result<Update, String> {
        let mut update = Update::default();
        let textfile = self.textfile.trim();
        let kept = now.textfile_dir.as_ref().map(|p| p.display().to_string());
        if kept.as_deref() != Some(textfile) {
            update.textfile_dir = if textfile.is_empty() {
                Change::Remove
            } else {
                Change::Set(textfile.into())
            };
        }
        if self.mail_on {
            let security = if self.security_tls {
                MailSecurity::Tls
            } else {
                MailSecurity::Starttls
            };
            let port = match self.port.trim() {
                "" => security.default_port(),
                p => p
                    .parse()
                    .map_err(|_| format!("{p} is not a port number."))?,
            };
            if self.server.trim().is_empty() {
                return Err("Say which mail server sends the mail.".into());
            }
            let user = Some(self.user.trim().to_owned()).filter(|u| !u.is_empty());
            // The password kept goes only to the server and user it was
            // given for.
            let same = now.mail.as_ref().is_some_and(|m| {
                (m.server.as_str(), m.port, m.security, m.user.as_ref())
                    == (self.server.trim(), port, security, user.as_ref())
            });
            if user.is_some() && self.password.is_empty() && !same {
                return Err("Type the mail password: the server or user is new, and the password kept is only ever sent to the server it was given for.".into());
            }
            update.mail = Change::Set(Mail {
                server: self.server.trim().to_owned(),
                port,
                security,
                user,
                from: self.from.trim().to_owned(),
                to: self
                    .to
                    .split([',', ';'])
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect(),
                ca_file: Some(self.ca.trim())
                    .filter(|c| !c.is_empty())
                    .map(Into::into),
            });
            if !self.password.is_empty() {
                update.mail_password = Change::Set(Secret(self.password.clone()));
            }
            if self.summary != now.summary {
                update.summary = self.summary.map_or(Change::Remove, Change::Set);
            }
        } else if now.mail.is_some() {
            update.mail = Change::Remove;
            update.mail_password = Change::Remove;
        }
        for (name, address) in &self.pings {
            if !address.trim().is_empty() {
                update
                    .pings
                    .insert(name.clone(), Change::Set(Secret(address.trim().to_owned())));
            }
        }
        for name in &self.stop_pings {
            update.pings.insert(name.clone(), Change::Remove);
        }
        Ok(update)
    }

    /// What the last save or test said (none while it runs).
    #[cfg(all(test, target_os = "linux"))]
    pub fn result(&self) -> Option<Result<Vec<(bool, String)>, String>> {
        self.result.clone().filter(|_| self.job.is_none())
    }

    /// Take what the helper answered.
    fn drain(&mut self) {
        let Some(job) = &self.job else { return };
        let result = match job.end() {
            Some(Ok(result)) => result,
            None => return,
            Some(Err(jobs::Stopped)) => {
                self.job = None;
                return;
            }
        };
        self.job = None;
        self.result = Some(match result.map(|reply| *reply) {
            Ok(Reply::MonitoringSet { monitoring, watch }) => {
                self.fill(&monitoring);
                self.now = Some(Ok(monitoring));
                let mut lines = vec![(
                    true,
                    "Saved. Scheduled runs use these settings from their next run.".to_owned(),
                )];
                match watch {
                    Some(Ok(done)) => lines.push((true, done)),
                    Some(Err(e)) => lines.push((false, e)),
                    None => {}
                }
                Ok(lines)
            }
            Ok(Reply::MonitoringTested { mail, pings }) => {
                let mut lines = Vec::new();
                match mail {
                    Some(Ok(())) => lines.push((
                        true,
                        "E-mail: a test message was sent; check that it arrived.".into(),
                    )),
                    Some(Err(e)) => lines.push((false, format!("E-mail: {e}"))),
                    None => {}
                }
                for (name, sent) in pings {
                    lines.push(match sent {
                        Ok(()) => (true, format!("Ping for {name}: the service took it.")),
                        Err(e) => (false, format!("Ping for {name}: {e}")),
                    });
                }
                if lines.is_empty() {
                    lines.push((
                        false,
                        "Nothing is set to test: save e-mail or a ping address first.".into(),
                    ));
                }
                Ok(lines)
            }
            Ok(other) => Err(crate::launch::RemoteFailure::unexpected(other).message),
            Err(f) => Err(f.message),
        });
    }
}

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    let names: Vec<String> = app
        .rt
        .schedules
        .list
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let helper = app.rt.helper.clone();
    let page = &mut app.rt.notifications;
    if page.now.is_none() {
        page.reload();
    }
    page.drain();
    ui.heading("Notifications");
    ui.label("When a scheduled backup fails, tell the administrators where they already look — even when nobody has this window open. While e-mail or a ping is set, an hourly check also tells a backup that did not run at all. These settings are the computer's: saving them asks for the administrator's permission.");
    ui.add_space(6.0);
    let now = match &page.now {
        Some(Ok(now)) => now.clone(),
        Some(Err(e)) => {
            ui.colored_label(RED, format!("The settings cannot be read: {e}"));
            return;
        }
        None => return,
    };
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.group(|ui| {
            ui.checkbox(&mut page.mail_on, RichText::new("Send an e-mail when a scheduled backup fails").strong());
            ui.add_enabled_ui(page.mail_on, |ui| {
                egui::Grid::new("mail").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
                    let l = ui.label("Mail server");
                    ui.horizontal(|ui| {
                        ui.add(egui::TextEdit::singleline(&mut page.server).hint_text("smtp.example.com").desired_width(220.0)).labelled_by(l.id);
                        let p = ui.label("port");
                        ui.add(egui::TextEdit::singleline(&mut page.port).desired_width(50.0)).labelled_by(p.id);
                    });
                    ui.end_row();
                    ui.label("Protection");
                    ui.horizontal(|ui| {
                        if ui.radio(!page.security_tls, "STARTTLS (port 587)").clicked() {
                            page.security_tls = false;
                            page.port = "587".into();
                        }
                        if ui.radio(page.security_tls, "TLS (port 465)").clicked() {
                            page.security_tls = true;
                            page.port = "465".into();
                        }
                    });
                    ui.end_row();
                    let l = ui.label("User name");
                    ui.add(egui::TextEdit::singleline(&mut page.user).hint_text("none: the server takes mail without").desired_width(260.0)).labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Password");
                    let kept = now.mail.as_ref().is_some_and(|m| m.user.is_some());
                    ui.add(egui::TextEdit::singleline(&mut page.password).password(true).hint_text(if kept { "kept; type to change" } else { "" }).desired_width(260.0)).labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("From");
                    ui.add(egui::TextEdit::singleline(&mut page.from).hint_text("persnap@example.com").desired_width(260.0)).labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("To");
                    ui.add(egui::TextEdit::singleline(&mut page.to).hint_text("ops@example.com, dba@example.com").desired_width(360.0)).labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Own certificate authority");
                    ui.add(egui::TextEdit::singleline(&mut page.ca).hint_text("optional: a PEM file, for a server your own authority signed").desired_width(360.0)).labelled_by(l.id);
                    ui.end_row();
                    ui.label("Summary");
                    ui.horizontal(|ui| {
                        for (choice, words) in [
                            (None, "none"),
                            (Some(Summary::Daily), "every morning"),
                            (Some(Summary::Weekly), "every Monday"),
                        ] {
                            if ui.radio(page.summary == choice, words).clicked() {
                                page.summary = choice;
                            }
                        }
                    });
                    ui.end_row();
                });
                ui.label("The connection is always protected: a server that offers neither is refused, and nothing is sent in the clear. The summary lists every protected database at 07:00, so a quiet week is seen to be a good one.");
            });
        });
        ui.add_space(6.0);
        ui.group(|ui| {
            ui.label(RichText::new("Ping a monitoring service (healthchecks.io, Uptime Kuma)").strong());
            ui.label("Each scheduled run pings its database's address when it starts and when it ends, with the reason when it failed. The service warns you when a ping is missing or says failed. The address carries a token, so it is never shown again once saved.");
            if names.is_empty() {
                ui.label("No database has a schedule yet: protect one with a schedule first.");
            }
            for name in &names {
                let kept = now.pings.get(name);
                ui.horizontal(|ui| {
                    let l = ui.label(RichText::new(name).strong());
                    let address = page.pings.entry(name.clone()).or_default();
                    let hint = if kept.is_some() {
                        "paste a new address to change it"
                    } else {
                        "https://hc-ping.com/… or https://…/api/push/…"
                    };
                    ui.add(egui::TextEdit::singleline(address).hint_text(hint).desired_width(340.0))
                        .labelled_by(l.id);
                    if let Some(host) = kept {
                        let mut stop = page.stop_pings.contains(name);
                        if ui.checkbox(&mut stop, format!("Stop pinging {host}")).changed() {
                            page.stop_pings.retain(|n| n != name);
                            if stop {
                                page.stop_pings.push(name.clone());
                            }
                        }
                    } else {
                        ui.label("no ping yet");
                    }
                });
            }
        });
        ui.add_space(6.0);
        ui.group(|ui| {
            ui.label(RichText::new("Prometheus").strong());
            ui.horizontal(|ui| {
                let l = ui.label("node_exporter's textfile folder");
                ui.add(egui::TextEdit::singleline(&mut page.textfile).hint_text("e.g. /var/lib/prometheus/node-exporter").desired_width(320.0)).labelled_by(l.id);
            });
            ui.label("After each scheduled run, every protected database's metrics are written there as persnap.prom, as the folder's owner, so nobody else must be able to change the folder. Empty: not written.");
        });
        ui.add_space(8.0);
        let busy = page.job.is_some();
        let update = page.update(&now);
        ui.horizontal(|ui| {
            let save = ui.add_enabled(!busy && update.is_ok(), egui::Button::new("Save…"))
                .on_hover_text("Asks for the administrator's permission, then keeps these settings for every scheduled run.");
            if save.clicked()
                && let Ok(update) = &update
            {
                page.saving = true;
                page.result = None;
                page.job = Some(jobs::monitoring(ui.ctx(), Request::MonitoringSet { update: update.clone() }, helper.clone()));
                page.password.clear();
            }
            let test = ui.add_enabled(!busy && now.alerts(), egui::Button::new("Send a test…"))
                .on_hover_text("Asks for the administrator's permission, then sends a test message and a test ping to what is saved.");
            if test.clicked() {
                page.saving = false;
                page.result = None;
                page.job = Some(jobs::monitoring(ui.ctx(), Request::MonitoringTest {}, helper.clone()));
            }
            if busy {
                ui.spinner();
                ui.label(if page.saving { "Saving: waiting for the administrator's permission…" } else { "Testing: waiting for the administrator's permission…" });
            }
        });
        if let Err(e) = &update {
            ui.colored_label(AMBER, e);
        } else if !now.alerts() {
            ui.label("Save e-mail or a ping address, then send a test.");
        }
        match &page.result {
            Some(Ok(lines)) => {
                for (good, line) in lines {
                    ui.colored_label(if *good { GREEN } else { RED }, line);
                }
            }
            Some(Err(e)) => {
                ui.colored_label(RED, format!("Nothing was changed: {e}"));
            }
            None => {}
        }
    });
}
