//! The Schedules screen: the scheduled backups installed on this machine
//! with how each last went (ran, failed, missed), a form that schedules the
//! backup set up on the Back up screen, and removal. Installing and
//! removing go through the helper (one polkit/UAC prompt); listing does not.

use persnap::units::LocalTime;
use std::path::PathBuf;

use eframe::egui::{self, Ui};
use persnap::protocol::{Reply, Request};
use persnap::schedule::{self, Schedule, Status, When};

use super::PersnapApp;
use super::backup_view::{self};
use super::jobs::{self, Job};
use super::widgets::{AMBER, DEFAULT_HOUR, GREEN, Often, RED, pace_words};
use crate::launch::RemoteFailure;

/// The screen's state (never saved: schedules live in the system).
pub struct ScheduleState {
    /// Where schedules are listed (tests point it at a folder of their own).
    pub dir: PathBuf,
    pub list: Vec<Schedule>,
    pub list_error: Option<String>,
    pub name: String,
    pub often: Often,
    pub time: String,
    pub custom: String,
    /// Windows: the account to run as instead of SYSTEM (empty: SYSTEM),
    /// and its password (runtime only, never saved).
    pub run_as: String,
    pub password: String,
    pub job: Option<Job<jobs::Told>>,
    pub result: Option<Result<String, RemoteFailure>>,
}

impl Default for ScheduleState {
    fn default() -> Self {
        ScheduleState {
            dir: schedule::default_dir(),
            list: Vec::new(),
            list_error: None,
            name: "nightly".into(),
            often: Often::Daily,
            time: format!("{DEFAULT_HOUR:02}:00"),
            custom: String::new(),
            run_as: String::new(),
            password: String::new(),
            job: None,
            result: None,
        }
    }
}

impl ScheduleState {
    pub fn reload(&mut self) {
        match schedule::list_in(&self.dir) {
            Ok(list) => {
                self.list = list;
                self.list_error = None;
            }
            Err(e) => self.list_error = Some(e.to_string()),
        }
    }

    /// The form's "when", as [`When::parse`] reads it.
    fn when_text(&self) -> String {
        self.often
            .when_text(&self.time, &self.custom)
            .unwrap_or_default()
    }

    /// Take what a finished install or removal reported.
    pub fn drain(&mut self) {
        let Some(job) = &self.job else { return };
        let Some(end) = job.end() else { return };
        let result = end.unwrap_or_else(|s| Err(s.into()));
        self.job = None;
        self.result = Some(result.and_then(|reply| match *reply {
            Reply::ScheduleAdded {
                schedule,
                installed,
            } => Ok(format!(
                "Scheduled “{}”: {}. {}",
                schedule.name,
                schedule.when.describe(),
                installed.note
            )),
            Reply::ScheduleRemoved {
                name,
                existed: true,
            } => Ok(format!("Removed “{name}”; its backups and history stay.")),
            Reply::ScheduleRemoved { name, .. } => Ok(format!("There was no schedule “{name}”.")),
            other => Err(RemoteFailure::unexpected(other)),
        }));
        self.reload();
    }
}

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            ui.heading("Scheduled backups");
            list(app, ui);
            ui.separator();
            ui.heading("New schedule");
            form(app, ui);
            result(app, ui);
        });
}

fn list(app: &mut PersnapApp, ui: &mut Ui) {
    let st = &app.rt.schedules;
    if let Some(e) = &st.list_error {
        ui.colored_label(RED, format!("Cannot read the schedules: {e}"));
    }
    if st.list.is_empty() {
        ui.label("No schedules yet. A schedule backs up the database folder and backup location chosen on the Back up screen at the times you pick, as administrator, without asking each time.");
        return;
    }
    let mut remove = None;
    let busy = st.job.is_some();
    egui::Grid::new("schedules")
        .num_columns(6)
        .striped(true)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            for title in ["Name", "When", "Backs up", "Keeps", "Last run", ""] {
                ui.strong(title);
            }
            ui.end_row();
            for s in &st.list {
                ui.label(&s.name);
                ui.label(s.when.describe());
                ui.label(format!(
                    "{} to {}{}",
                    s.source.display(),
                    s.dest.display(),
                    pace_words(s.pace)
                ));
                ui.label(s.retention.describe());
                status_label(ui, &schedule::status(s, &app.rt.runs, chrono::Local::now()));
                let button = egui::Button::new(format!("Remove “{}”", s.name));
                if ui.add_enabled(!busy, button).clicked() {
                    remove = Some(s.name.clone());
                }
                ui.end_row();
            }
        });
    if let Some(name) = remove {
        start(app, ui.ctx(), Request::ScheduleRemove { name });
    }
}

fn status_label(ui: &mut Ui, status: &Status) {
    let local = |t: &chrono::DateTime<chrono::Utc>| t.local_minute();
    match status {
        Status::Fine { last: None } => ui.label("not run yet"),
        Status::Fine { last: Some(t) } => ui.colored_label(GREEN, format!("ran {}", local(t))),
        Status::Failed { run } => ui.colored_label(
            RED,
            format!("{} {}", run.outcome.label(), local(&run.started)),
        ),
        Status::Missed { due } => {
            ui.colored_label(AMBER, format!("missed the run due {}", due.local_minute()))
        }
    };
}

fn form(app: &mut PersnapApp, ui: &mut Ui) {
    // Windows, backing up to a network location: offer another account
    // than SYSTEM (which a share knows only as the computer's account).
    let offer_account = cfg!(windows)
        && (schedule::is_network_path(&backup_view::request(&app.settings).dest)
            || !app.rt.schedules.run_as.is_empty());
    let st = &mut app.rt.schedules;
    egui::Grid::new("new-schedule")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            let name = ui.label("Schedule name");
            ui.text_edit_singleline(&mut st.name).labelled_by(name.id);
            ui.end_row();

            let name = ui.label("How often");
            egui::ComboBox::from_id_salt("often")
                .selected_text(Often::words(st.often))
                .show_ui(ui, |ui| {
                    for often in [Often::Hourly, Often::Daily, Often::Weekdays, Often::Custom] {
                        if cfg!(windows) && often == Often::Custom {
                            continue;
                        }
                        ui.selectable_value(&mut st.often, often, Often::words(often));
                    }
                })
                .response
                .labelled_by(name.id);
            ui.end_row();

            match st.often {
                Often::Daily | Often::Weekdays => {
                    let name = ui.label("At (24-hour time)");
                    ui.add(egui::TextEdit::singleline(&mut st.time).desired_width(80.0))
                        .labelled_by(name.id);
                    ui.end_row();
                }
                Often::Custom => {
                    let name = ui.label("systemd calendar expression");
                    ui.add(egui::TextEdit::singleline(&mut st.custom).hint_text("*-*-* 00/6:00"))
                        .labelled_by(name.id);
                    ui.end_row();
                }
                Often::Hourly | Often::Manual => {}
            }
            if offer_account {
                let name = ui.label("Run as (optional)");
                ui.add(
                    egui::TextEdit::singleline(&mut st.run_as)
                        .hint_text("SYSTEM, or DOMAIN\\user for a network location"),
                )
                .labelled_by(name.id);
                ui.end_row();
                if !st.run_as.trim().is_empty() {
                    let name = ui.label("Its password");
                    ui.add(egui::TextEdit::singleline(&mut st.password).password(true))
                        .labelled_by(name.id);
                    ui.end_row();
                }
            }
        });
    let planned = plan(app);
    match &planned {
        Ok(words) => ui.label(words),
        Err(why) => ui.colored_label(AMBER, why),
    };
    let ready = planned.is_ok() && app.rt.schedules.job.is_none();
    if ui
        .add_enabled(ready, egui::Button::new("Create schedule"))
        .clicked()
    {
        let req = backup_view::request_here(app);
        let into = repository(app).ok().flatten();
        let st = &app.rt.schedules;
        let run_as = (!st.run_as.trim().is_empty()).then(|| persnap::protocol::RunAs {
            account: st.run_as.trim().to_owned(),
            password: schedule::Secret(st.password.clone()),
        });
        let built = match &app.rt.history {
            Some(history) => crate::launch::schedule_request(
                st.name.trim(),
                &req,
                &st.when_text(),
                history.dir(),
                run_as,
                into,
                None,
            ),
            None => Err(persnap::Error::History {
                path: PathBuf::from("~"),
                action: "located",
                detail: "no history folder; scheduled runs need one to record into".into(),
            }),
        };
        match built {
            Ok(request) => {
                // The password travels in the request only.
                app.rt.schedules.password.clear();
                start(app, ui.ctx(), request)
            }
            Err(e) => app.rt.schedules.result = Some(Err(RemoteFailure::local(&e, None))),
        }
    }
    if app.rt.schedules.job.is_some() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Waiting for administrator approval and the scheduler…");
        });
    }
}

/// The repository the Back up screen's backups go into, as a schedule
/// asks for it (its password goes to a file only root can read), or what
/// is missing.
fn repository(
    app: &PersnapApp,
) -> Result<Option<persnap::protocol::ScheduleRepositoryRequest>, String> {
    let s = &app.settings;
    if !s.into_repository {
        return Ok(None);
    }
    let location =
        persnap::repository::Address::parse(s.repository.trim()).map_err(|e| e.to_string())?;
    if app.rt.repositories.password.is_empty() {
        return Err("Enter the repository's password on the Back up screen first.".into());
    }
    let password = persnap::repository::Password::new(app.rt.repositories.password.clone());
    Ok(Some(persnap::protocol::ScheduleRepositoryRequest {
        unlock: persnap::repository::Unlock::new(&location, &password),
        keep: persnap::repository::Keep::like_folder(&s.retention()),
        staged: true,
    }))
}

/// What the new schedule will do, in words, or what is missing.
fn plan(app: &PersnapApp) -> Result<String, String> {
    let s = &app.settings;
    let st = &app.rt.schedules;
    schedule::validate_name(st.name.trim()).map_err(|e| e.to_string())?;
    let into = repository(app)?;
    if s.source.trim().is_empty() || (into.is_none() && s.dest.trim().is_empty()) {
        return Err(
            "A database protected from the Overview has its schedule already. For another backup, choose its database folder and backup location on the Back up screen first."
                .into(),
        );
    }
    let when = When::parse(&st.when_text()).map_err(|e| e.to_string())?;
    if matches!(st.often, Often::Daily | Often::Weekdays) && matches!(when, When::Calendar(_)) {
        return Err(format!(
            "{:?} is not a time: write it as HH:MM, e.g. 02:30.",
            st.time
        ));
    }
    let req = backup_view::request_here(app);
    let account = st.run_as.trim();
    if !account.is_empty() {
        schedule::validate_account(account).map_err(|e| e.to_string())?;
        if st.password.is_empty() {
            return Err(format!(
                "Enter the password of {account}: Task Scheduler needs it to run the backup as that account."
            ));
        }
    }
    let mut words = format!(
        "Back up {} ({}) to {} {}, as administrator{}, {}, then verify it and {}. Each run is recorded in History; a failed or missed run is shown here and on the Back up screen.",
        req.source.display(),
        req.store_name,
        req.dest.display(),
        when.describe(),
        if account.is_empty() {
            String::new()
        } else {
            format!(" ({account})")
        },
        req.pace.manner(),
        req.retention.describe()
    );
    if let Some(into) = &into {
        words = format!(
            "Back up {} ({}) {}, as administrator{}, {}; verify it, store it in the repository {} as you, read it back from there and check it, and keep {}. The repository's password goes into a file only the administrator can read; the schedule itself does not hold it. Each run is recorded in History; a failed or missed run is shown here and on the Back up screen.",
            req.source.display(),
            req.store_name,
            when.describe(),
            if account.is_empty() {
                String::new()
            } else {
                format!(" ({account})")
            },
            req.pace.manner(),
            into.unlock
                .validate()
                .map(|l| l.display())
                .unwrap_or_default(),
            if into.keep.is_keep_all() {
                "every backup".to_owned()
            } else {
                into.keep.describe().trim_start_matches("keep ").to_owned()
            },
        );
    }
    if cfg!(windows) && account.is_empty() && into.is_none() && schedule::is_network_path(&req.dest)
    {
        words.push_str(
            " The backup location is on the network: scheduled runs reach it as SYSTEM, which a share knows only as this computer's own account. Give that account write access to the share, or enter an account above that can write there.",
        );
    }
    Ok(words)
}

fn result(app: &PersnapApp, ui: &mut Ui) {
    match &app.rt.schedules.result {
        Some(Ok(words)) => {
            ui.colored_label(GREEN, words);
        }
        Some(Err(f)) => {
            ui.colored_label(RED, format!("The schedule was not changed: {f}"));
        }
        None => {}
    }
}

fn start(app: &mut PersnapApp, ctx: &egui::Context, request: Request) {
    app.rt.schedules.result = None;
    app.rt.schedules.job = Some(jobs::schedule_change(ctx, request, app.rt.helper.clone()));
}
