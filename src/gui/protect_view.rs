//! "Protect a database": a short guided page from a database found on this
//! computer (or chosen) to one that is protected — where its backups go,
//! when they run and how long they are kept, in words, with sensible
//! defaults (every day at 02:00, keep 14 days) — and a summary of what will
//! run as administrator. One administrator prompt then takes a test
//! snapshot, installs the schedule and registers the database
//! (`Request::Protect`); when any step fails nothing is changed.

use std::path::{Path, PathBuf};

use eframe::egui::{self, RichText, Ui};
use persnap::discover::Found;
use persnap::method::MethodChoice;
use persnap::probe::ProbeReport;
use persnap::protocol::{BackupOptions, Reply, Request};
use persnap::units;

use super::widgets::{
    AMBER, DEFAULT_HOUR, DEFAULT_KEEP_DAYS, GREEN, KEEP_DAYS, Often, RED, keep_words,
};

/// How often, as this page offers it.
const OFFERED: [Often; 4] = [Often::Daily, Often::Weekdays, Often::Hourly, Often::Manual];

/// The schedule as the helper reads it (None: no schedule).
fn when_text(d: &ProtectDraft) -> Option<String> {
    d.often.when_text(&format!("{:02}:00", d.hour), "")
}
use super::jobs::{self, Job};
use super::{PersnapApp, Screen};
use crate::launch::RemoteFailure;

/// The page's state, while a database is being protected.
pub struct ProtectDraft {
    pub found: Found,
    /// The name it is protected as (for lists, schedules and operators).
    pub name: String,
    pub location: Option<PathBuf>,
    /// Where its registration sends its backups now, when changing it.
    pub registered_location: Option<PathBuf>,
    /// Its backups go into the repository (the app's, with its password)
    /// rather than a folder.
    pub into_repository: bool,
    /// And a copy of each into an offsite repository (3-2-1).
    pub offsite: bool,
    pub offsite_location: String,
    pub offsite_password: String,
    pub often: Often,
    /// The hour of a daily or weekday backup.
    pub hour: u32,
    pub keep_days: Option<u32>,
    /// Back up with SQLite's online backup (for a disk that takes no
    /// snapshots); offered only when the disk takes none.
    pub online: bool,
    /// Windows, a network location: the account the schedule runs as.
    pub account: String,
    pub password: String,
    pub probe: Option<Result<Box<ProbeReport>, String>>,
    probing: Option<Job<jobs::Probed>>,
    same_disk: Option<(PathBuf, bool)>,
    job: Option<Job<jobs::Told>>,
    pub result: Option<Result<Box<Reply>, RemoteFailure>>,
    /// What protecting said besides, each a warning (a password the
    /// keyring could not keep).
    pub warnings: Vec<String>,
    /// Changing how a protected database is protected (its name stays).
    pub replace: bool,
}

impl ProtectDraft {
    /// Stop waiting for the look at its disk (tests set their own).
    #[cfg(test)]
    pub fn forget_probing(&mut self) {
        self.probing = None;
    }

    /// A protection under way, as its job reports it (tests).
    #[cfg(test)]
    pub fn protecting(&mut self, job: Job<jobs::Told>) {
        self.result = None;
        self.job = Some(job);
    }
}

/// Open the page for `found`.
pub fn open(app: &mut PersnapApp, ctx: &egui::Context, found: Found) {
    let name = free_name(app, &found);
    let probe = persnap::backup::BackupRequest {
        store_name: found.store_name.clone(),
        ..persnap::backup::BackupRequest::new(&found.folder, "")
    };
    let probing = jobs::probe(ctx, probe, false, app.rt.registry.clone());
    app.rt.protect = Some(ProtectDraft {
        found,
        name,
        location: None,
        registered_location: None,
        into_repository: false,
        offsite: false,
        offsite_location: String::new(),
        offsite_password: String::new(),
        often: Often::Daily,
        hour: DEFAULT_HOUR,
        keep_days: Some(DEFAULT_KEEP_DAYS),
        online: false,
        account: String::new(),
        password: String::new(),
        probe: None,
        probing: Some(probing),
        same_disk: None,
        job: None,
        result: None,
        warnings: Vec::new(),
        replace: false,
    });
    app.rt.screen = Screen::Protect;
}

/// Open the page to change how `db` is protected, filled in as it is now.
pub fn change(app: &mut PersnapApp, ctx: &egui::Context, db: &persnap::registry::Database) {
    let found =
        persnap::discover::describe(&db.folder, &db.store_name, persnap::discover::Origin::File);
    let schedule = db
        .schedule
        .as_ref()
        .and_then(|name| app.rt.schedules.list.iter().find(|s| &s.name == name))
        .map(|s| s.when.clone());
    open(app, ctx, found);
    let Some(d) = &mut app.rt.protect else {
        return;
    };
    d.replace = true;
    d.name = db.name.clone();
    d.location = db.location.clone();
    d.registered_location = db.location.clone();
    if let Some(r) = db.repository.as_ref().filter(|r| r.staged) {
        d.into_repository = true;
        d.keep_days = r.keep.within_days;
        app.settings.repository = r.location.clone();
    }
    if let Some(o) = &db.offsite {
        d.offsite = true;
        d.offsite_location = o.location.clone();
    }
    let d = app.rt.protect.as_mut().expect("a draft");
    d.keep_days = db.retention.keep_days;
    d.online = db.method == MethodChoice::Explicit(persnap::method::Method::SqliteOnline);
    use chrono::Timelike as _;
    (d.often, d.hour) = match schedule {
        None if db.schedule.is_none() => (Often::Manual, 2),
        Some(persnap::schedule::When::Hourly) => (Often::Hourly, 2),
        Some(persnap::schedule::When::Daily(t)) => (Often::Daily, t.hour()),
        Some(persnap::schedule::When::Weekly(_, t)) => (Often::Weekdays, t.hour()),
        _ => (Often::Daily, 2),
    };
}

/// A name no protected database and no schedule has yet.
fn free_name(app: &PersnapApp, found: &Found) -> String {
    let base = persnap::registry::suggest_name(&app.rt.registry, &found.folder, &found.store_name);
    let taken = |n: &str| app.rt.schedules.list.iter().any(|s| s.name == n);
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken(n) && persnap::registry::validate_name(n).is_ok())
        .expect("some suffix is free")
}

fn drain(app: &mut PersnapApp) {
    let Some(d) = &mut app.rt.protect else {
        return;
    };
    if let Some(job) = &d.probing {
        match job.end() {
            Some(Ok(result)) => {
                d.probe = Some(result);
                d.probing = None;
            }
            None => {}
            Some(Err(jobs::Stopped)) => d.probing = None,
        }
    }
    let mut done = false;
    if let Some(job) = &d.job {
        let mut said = Vec::new();
        let end = job.drain(|msg| {
            if let jobs::Msg::Log(persnap::progress::Level::Warning, text) = msg {
                said.push(text);
            }
        });
        d.warnings.extend(said);
        match end {
            Some(Ok(result)) => {
                done = result.is_ok();
                d.result = Some(result);
                d.job = None;
            }
            None => {}
            Some(Err(jobs::Stopped)) => {
                d.result = Some(Err(RemoteFailure {
                    kind: persnap::ErrorKind::Internal,
                    step: None,
                    message: "the protection stopped unexpectedly; try again".into(),
                }));
                d.job = None;
            }
        }
    }
    if done {
        // Where its backups go is in its registration, now written.
        app.rt.overview.invalidate();
        app.rt.overview.look_again();
        app.rt.schedules.reload();
    }
}

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    drain(app);
    if app.rt.protect.is_none() {
        app.rt.screen = Screen::Overview;
        return;
    }
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let replace = app.rt.protect.as_ref().is_some_and(|d| d.replace);
            ui.heading(if replace {
                "Change how it is protected"
            } else {
                "Protect a database"
            });
            ui.add_space(4.0);
            if matches!(
                app.rt.protect.as_ref().and_then(|d| d.result.as_ref()),
                Some(Ok(_))
            ) {
                finished(app, ui);
                return;
            }
            let busy = app.rt.protect.as_ref().is_some_and(|d| d.job.is_some());
            ui.add_enabled_ui(!busy, |ui| {
                the_database(app, ui);
                ui.add_space(8.0);
                the_location(app, ui);
                ui.add_space(8.0);
                the_schedule(app, ui);
                ui.add_space(8.0);
            });
            check(app, ui);
        });
}

fn step(ui: &mut Ui, number: u32, title: &str) {
    ui.label(
        RichText::new(format!("{number}. {title}"))
            .strong()
            .size(16.0),
    );
}

fn the_database(app: &mut PersnapApp, ui: &mut Ui) {
    let d = app.rt.protect.as_mut().expect("a draft");
    step(ui, 1, "The database");
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal_wrapped(|ui| {
            ui.strong(d.found.folder.display().to_string());
            ui.label(&d.found.store_name);
        });
        let mut facts = vec![d.found.origin_words()];
        if let Some(b) = d.found.bytes {
            facts.push(units::bytes(b));
        }
        if let Some(m) = d.found.journal_mode {
            facts.push(m.to_string());
        }
        ui.label(facts.join(" · "));
        ui.horizontal(|ui| {
            let label = ui.label("Protected as");
            ui.add_enabled(
                !d.replace,
                egui::TextEdit::singleline(&mut d.name).desired_width(200.0),
            )
            .labelled_by(label.id)
                .on_hover_text("A short name for lists, schedules and operators");
        });
        if let Err(e) = persnap::registry::validate_name(&d.name) {
            ui.colored_label(AMBER, e.to_string());
        }
        match &d.probe {
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Looking at its disk…");
                });
            }
            Some(Err(e)) => {
                ui.colored_label(RED, e);
            }
            Some(Ok(report)) => match (report.method, &report.blocked) {
                (Some(m), _) => {
                    ui.label(format!("Backed up from a {}.", snapshot_words(m)));
                    // The disk should take snapshots, but the test one did
                    // not work: SQLite's own backup is the way left.
                    let snapshot_failed = matches!(
                        &d.result,
                        Some(Err(f)) if f.kind == persnap::ErrorKind::Snapshot
                    );
                    if snapshot_failed || d.online {
                        ui.checkbox(
                            &mut d.online,
                            "Back up with SQLite's online backup instead (the correlator's writes wait while it copies)",
                        );
                    }
                }
                (None, Some(why)) => {
                    ui.colored_label(
                        AMBER,
                        "This disk cannot take snapshots, so persnap cannot copy the database while the correlator writes to it.",
                    );
                    ui.checkbox(
                        &mut d.online,
                        "Back up with SQLite's online backup instead (the correlator's writes wait while it copies)",
                    );
                    egui::CollapsingHeader::new("Details")
                        .id_salt("why-no-snapshot")
                        .show(ui, |ui| ui.label(why));
                }
                (None, None) => {}
            },
        }
    });
}

/// The snapshot a method takes, in words.
fn snapshot_words(m: persnap::method::Method) -> &'static str {
    use persnap::method::Method;
    match m {
        Method::Btrfs => "snapshot of its disk (btrfs)",
        Method::Lvm => "snapshot of its disk (LVM)",
        Method::Vss => "shadow copy of its disk (Volume Shadow Copy)",
        Method::Reflink => "copy-on-write clone, taken while the database is briefly held still",
        Method::SqliteOnline => "copy made by SQLite itself",
    }
}

fn the_location(app: &mut PersnapApp, ui: &mut Ui) {
    let suggested = app
        .rt
        .overview
        .suggested
        .clone()
        .or_else(super::widgets::suggested_location);
    let d = app.rt.protect.as_mut().expect("a draft");
    step(ui, 2, "Where its backups go");
    ui.horizontal(|ui| {
        ui.radio_value(&mut d.into_repository, false, "a folder");
        ui.radio_value(
            &mut d.into_repository,
            true,
            "a repository (deduplicated, encrypted; local or remote)",
        );
    });
    if d.into_repository {
        egui::Grid::new("protect-repository")
            .num_columns(2)
            .spacing([12.0, 8.0])
            .show(ui, |ui| {
                super::repository_view::fields(app, ui);
                super::backup_view::connection_test_row(app, ui);
            });
        ui.label(
            "Each backup is checked in a folder of yours first, then stored in the repository and read back from there; only then is it recorded as good.",
        );
        offsite_rows(app, ui);
        return;
    }
    let folders = &mut app.rt.folders;
    ui.horizontal_wrapped(|ui| {
        match &d.location {
            Some(l) => {
                ui.label(format!("Backups go to {}.", l.display()));
            }
            None => {
                ui.colored_label(AMBER, "Choose a folder, preferably on another disk.");
            }
        }
        if let Some(now) = d
            .registered_location
            .as_ref()
            .filter(|now| d.replace && d.location.as_ref() != Some(*now))
        {
            ui.label(format!(
                "Until you save the changes, they still go to {}.",
                now.display()
            ));
        }
        let choose = if d.location.is_some() {
            "Change…"
        } else {
            "Choose a folder…"
        };
        if let Some(dir) = super::widgets::choose_folder(
            ui,
            choose,
            &format!("Where to keep backups of {}", d.name),
            "protect-location",
            folders,
        ) {
            d.location = Some(persnap::fsutil::canonicalize(&dir).unwrap_or(dir));
        }
        if let Some(suggested) = suggested
            && d.location.as_deref() != Some(suggested.as_path())
            && ui
                .button(format!("Use {}", suggested.display()))
                .on_hover_text("A folder persnap creates for you")
                .clicked()
            && std::fs::create_dir_all(&suggested).is_ok()
        {
            d.location = Some(persnap::fsutil::canonicalize(&suggested).unwrap_or(suggested));
        }
    });
    if let Some(l) = d.location.clone() {
        let same = match &d.same_disk {
            Some((looked, same)) if *looked == l => *same,
            _ => {
                let same = super::widgets::on_one_disk(&d.found.folder, &l);
                d.same_disk = Some((l.clone(), same));
                same
            }
        };
        if same {
            ui.colored_label(
                AMBER,
                "This folder is on the database's own disk: if the disk fails, both are lost. A folder on another disk is safer.",
            );
        }
        if let Some(unsafe_location) = unsafe_location(&l) {
            ui.colored_label(RED, unsafe_location);
        }
        if cfg!(windows) && persnap::schedule::is_network_path(&l) && d.often != Often::Manual {
            ui.label("Scheduled backups to a network folder run as an account that can reach it:");
            egui::Grid::new("protect-account")
                .num_columns(2)
                .show(ui, |ui| {
                    let label = ui.label("Account");
                    ui.add(egui::TextEdit::singleline(&mut d.account).hint_text("DOMAIN\\user"))
                        .labelled_by(label.id);
                    ui.end_row();
                    let label = ui.label("Its password");
                    ui.add(egui::TextEdit::singleline(&mut d.password).password(true))
                        .labelled_by(label.id);
                    ui.end_row();
                });
        }
    }
    offsite_rows(app, ui);
}

/// "Also keep a copy offsite": a second repository, and its password.
fn offsite_rows(app: &mut PersnapApp, ui: &mut Ui) {
    let d = app.rt.protect.as_mut().expect("a draft");
    ui.checkbox(
        &mut d.offsite,
        "Also keep a copy offsite, in a second repository (on another machine or in the cloud)",
    );
    if !d.offsite {
        return;
    }
    egui::Grid::new("protect-offsite")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            let label = ui.label("Offsite repository");
            ui.add(
                egui::TextEdit::singleline(&mut d.offsite_location)
                    .desired_width(480.0)
                    .hint_text(
                        "sftp:user@host:/path, s3:https://host/bucket, rest:https://host:8000/",
                    ),
            )
            .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Offsite password");
            ui.add(
                egui::TextEdit::singleline(&mut d.offsite_password)
                    .password(true)
                    .desired_width(240.0),
            )
            .labelled_by(label.id);
            ui.end_row();
        });
    ui.label(
        "After each backup is kept, the same backup is stored there too and read back from there. If that place cannot be reached, the backup is still kept, and its offsite copy is shown as failed.",
    );
}

fn the_schedule(app: &mut PersnapApp, ui: &mut Ui) {
    let d = app.rt.protect.as_mut().expect("a draft");
    step(ui, 3, "When, and for how long");
    egui::Grid::new("protect-when")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            let label = ui.label("Back up");
            egui::ComboBox::from_id_salt("protect-often")
                .selected_text(d.often.words())
                .show_ui(ui, |ui| {
                    for often in OFFERED {
                        ui.selectable_value(&mut d.often, often, often.words());
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            if matches!(d.often, Often::Daily | Often::Weekdays) {
                let label = ui.label("At");
                egui::ComboBox::from_id_salt("protect-hour")
                    .selected_text(format!("{:02}:00", d.hour))
                    .show_ui(ui, |ui| {
                        for hour in 0..24 {
                            ui.selectable_value(&mut d.hour, hour, format!("{hour:02}:00"));
                        }
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
            }
            let label = ui.label("Keep");
            egui::ComboBox::from_id_salt("protect-keep")
                .selected_text(keep_words(d.keep_days))
                .show_ui(ui, |ui| {
                    for keep in KEEP_DAYS {
                        ui.selectable_value(&mut d.keep_days, keep, keep_words(keep));
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
        });
    ui.label(plan_words(d));
}

fn plan_words(d: &ProtectDraft) -> String {
    let when = when_text(d)
        .and_then(|w| persnap::schedule::When::parse(&w).ok())
        .map(|w| format!("persnap backs it up {}", w.describe()))
        .unwrap_or_else(|| "persnap backs it up when you click Back up now".into());
    let keep = match d.keep_days {
        Some(days) => format!("keeps each backup for {days} days, then deletes it"),
        None => "keeps every backup".into(),
    };
    format!("{when}, and {keep}.")
}

/// Why `location` cannot hold a protected database's backups, in words:
/// others can change it, and backups are written as its owner whoever asks
/// (a folder not made yet is made by the first backup, and judged then).
fn unsafe_location(location: &Path) -> Option<String> {
    std::fs::symlink_metadata(location).ok()?;
    match persnap::backup::location_writer_or_why(location) {
        Err(why) => Some(why),
        Ok(persnap::restore::Writer::Root) if !persnap::fsutil::is_root() => Some(format!(
            "{} belongs to root, and root writes only its own backups: choose a folder of yours, or give this one to the account that makes the backups (chown).",
            location.display()
        )),
        Ok(_) => None,
    }
}

/// Whether the page is ready to protect, or what is missing, in words.
fn ready(d: &ProtectDraft, repository: &str, password: &str) -> Result<(), &'static str> {
    if persnap::registry::validate_name(&d.name).is_err() {
        return Err("Give it a short name (lower-case letters, digits and dashes) first.");
    }
    if d.location
        .as_deref()
        .is_some_and(|l| unsafe_location(l).is_some())
    {
        return Err("Choose a backup location only its owner can change (above).");
    }
    if d.into_repository {
        if persnap::repository::Address::parse(repository.trim()).is_err() {
            return Err(
                "Give the repository's address (a folder's full path, sftp:, s3: or rest:).",
            );
        }
        if password.is_empty() {
            return Err("Give the repository's password.");
        }
    } else if d.location.is_none() {
        return Err("Choose where its backups go first.");
    }
    if d.offsite {
        if persnap::repository::Address::parse(d.offsite_location.trim()).is_err() {
            return Err(
                "Give the offsite repository's address (sftp:, s3:, rest: or a folder's full path).",
            );
        }
        if d.offsite_password.is_empty() {
            return Err("Give the offsite repository's password.");
        }
    }
    match &d.probe {
        None => return Err("Looking at its disk…"),
        Some(Err(_)) => return Err("persnap cannot read this database (above)."),
        Some(Ok(r)) if r.method.is_none() && !d.online => {
            return Err(
                "This disk takes no snapshots: choose SQLite's online backup (above), or keep the database on a disk that takes them.",
            );
        }
        Some(Ok(_)) => {}
    }
    Ok(())
}

fn check(app: &mut PersnapApp, ui: &mut Ui) {
    let history_dir = app.rt.history.as_ref().map(|h| h.dir().to_owned());
    let repository = app.settings.repository.clone();
    let password = app.rt.repositories.password.clone();
    let remember = app.settings.remember_password && !app.rt.repositories.from_keyring;
    let staging = app.rt.staging.clone();
    let d = app.rt.protect.as_mut().expect("a draft");
    step(ui, 4, "Check, and protect");
    ui.label(format!(
        "When you click {}, persnap asks for the administrator's permission once. As administrator it then:",
        if d.replace { "Save changes" } else { "Protect" }
    ));
    let method = method_of(d);
    let test = if method.is_auto() {
        "takes a test snapshot of the database's disk and removes it again (nothing is copied);"
    } else {
        "checks that it can read the database (SQLite's online backup takes no snapshot);"
    };
    let mut steps = vec![test.to_owned()];
    if let Some(when) = when_text(d).and_then(|w| persnap::schedule::When::parse(&w).ok()) {
        steps.push(format!(
            "installs a schedule that backs it up {}, run by the system as administrator;",
            when.describe(),
        ));
        if d.into_repository || d.offsite {
            steps.push(
                "writes the repository's address and password into a file only the administrator can read, for the scheduled runs (the schedule itself does not hold the password);"
                    .to_owned(),
            );
        }
    }
    if d.replace && d.often == Often::Manual {
        steps.push("removes its schedule, if it has one;".to_owned());
    }
    steps.push(if d.replace {
        format!("records the changes to how {} is protected.", d.name)
    } else {
        format!(
            "records {} as a protected database, so that you and the operators can back it up without the administrator's password.",
            d.name
        )
    });
    for s in &steps {
        ui.label(format!("  • {s}"));
    }
    ui.label("If any of this does not work, nothing is changed.");
    ui.add_space(4.0);
    let readiness = ready(d, &repository, &password);
    let busy = d.job.is_some();
    let mut start = false;
    let mut cancel = false;
    ui.horizontal(|ui| {
        let button = ui
            .add_enabled(
                readiness.is_ok() && !busy,
                egui::Button::new(
                    RichText::new(if d.replace { "Save changes" } else { "Protect" }).strong(),
                ),
            )
            .on_disabled_hover_text(readiness.err().unwrap_or("Protecting…"));
        button.widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Button,
                readiness.is_ok() && !busy,
                if d.replace {
                    format!("Save how {} is protected", d.name)
                } else {
                    format!("Protect {}", d.name)
                },
            )
        });
        start = button.clicked();
        cancel = ui.add_enabled(!busy, egui::Button::new("Cancel")).clicked();
    });
    if let Err(why) = readiness {
        ui.colored_label(AMBER, why);
    }
    if busy {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Waiting for the administrator's permission, then testing and installing…");
        });
    }
    if let Some(Err(f)) = &d.result {
        ui.colored_label(RED, format!("It was not protected: {}", f.message));
        ui.label("Nothing was changed. Correct what the message says and click Protect again.");
    }
    if start {
        let request = history_dir
            .ok_or_else(|| persnap::Error::History {
                path: PathBuf::from("~"),
                action: "located",
                detail: "no history folder; scheduled runs need one to record into".into(),
            })
            .and_then(|h| {
                let into = if d.into_repository {
                    Some((
                        persnap::repository::Address::parse(repository.trim())?,
                        persnap::repository::Password::new(password.clone()),
                        jobs::staging(staging)?,
                    ))
                } else {
                    None
                };
                let offsite = if d.offsite {
                    Some((
                        persnap::repository::Address::parse(d.offsite_location.trim())?,
                        persnap::repository::Password::new(d.offsite_password.clone()),
                    ))
                } else {
                    None
                };
                request(d, &h, into, offsite)
            });
        match request {
            Ok(request) => {
                // Typed this session: Back up now uses them (else the keyring).
                if d.offsite
                    && let Ok(l) = persnap::repository::Address::parse(d.offsite_location.trim())
                {
                    app.rt
                        .repositories
                        .typed
                        .insert(l.display(), d.offsite_password.clone());
                }
                d.result = None;
                d.warnings.clear();
                d.job = Some(jobs::protect(
                    ui.ctx(),
                    request,
                    app.rt.helper.clone(),
                    remember,
                ));
            }
            Err(e) => d.result = Some(Err(RemoteFailure::local(&e, None))),
        }
    }
    if cancel {
        app.rt.protect = None;
        app.rt.screen = Screen::Overview;
    }
}

fn method_of(d: &ProtectDraft) -> MethodChoice {
    if d.online {
        MethodChoice::Explicit(persnap::method::Method::SqliteOnline)
    } else {
        MethodChoice::Auto
    }
}

/// The helper request for the page as filled in; `into`: the repository,
/// its password and the folder its backups are checked in first.
fn request(
    d: &ProtectDraft,
    history_dir: &Path,
    into: Option<(
        persnap::repository::Address,
        persnap::repository::Password,
        PathBuf,
    )>,
    offsite: Option<(persnap::repository::Address, persnap::repository::Password)>,
) -> persnap::Result<Request> {
    let when = when_text(d);
    let history_dir = match when {
        Some(_) => Some(crate::launch::records_folder(history_dir)?),
        None => None,
    };
    let run_as = (!d.account.trim().is_empty()).then(|| persnap::protocol::RunAs {
        account: d.account.trim().to_owned(),
        password: persnap::schedule::Secret(d.password.clone()),
    });
    let (location, keep_days, repository) = match into {
        // The staged copy goes once stored: the repository keeps by the
        // rules, the folder by none.
        Some((location, password, staging)) => (
            staging,
            None,
            Some(persnap::protocol::ScheduleRepositoryRequest {
                unlock: persnap::repository::Unlock::new(&location, &password),
                keep: persnap::repository::Keep {
                    within_days: d.keep_days,
                    ..Default::default()
                },
                staged: true,
            }),
        ),
        None => (d.location.clone().unwrap_or_default(), d.keep_days, None),
    };
    Ok(Request::Protect {
        name: d.name.clone(),
        source: d.found.folder.clone(),
        store_name: d.found.store_name.clone(),
        location,
        method: method_of(d),
        options: BackupOptions {
            keep_days,
            ..BackupOptions::default()
        },
        when,
        history_dir,
        run_as: run_as.filter(|_| d.often != Often::Manual),
        test_snapshot: true,
        replace: d.replace,
        repository,
        offsite: offsite.map(
            |(location, password)| persnap::protocol::ScheduleRepositoryRequest {
                unlock: persnap::repository::Unlock::new(&location, &password),
                keep: persnap::repository::Keep {
                    within_days: d.keep_days,
                    ..Default::default()
                },
                staged: false,
            },
        ),
    })
}

/// The page once the database is protected: what was done, and the first
/// backup one click away.
fn finished(app: &mut PersnapApp, ui: &mut Ui) {
    let d = app.rt.protect.as_ref().expect("a draft");
    let Some(Ok(reply)) = &d.result else {
        return;
    };
    let Reply::Protected {
        database,
        probe,
        schedule,
        ..
    } = &**reply
    else {
        return;
    };
    // Not "protected" yet: that takes its first backup.
    let heading = if d.replace {
        format!(
            "The changes to how {} is protected are saved.",
            database.name
        )
    } else {
        format!("{} is set up for protection.", database.name)
    };
    ui.heading(RichText::new(heading).color(GREEN));
    let mut lines = Vec::new();
    match probe.as_ref().and_then(|p| p.test_snapshot.as_ref()) {
        Some(Ok(_)) => {
            lines.push("A test snapshot worked: it was taken and removed again.".to_owned())
        }
        _ => lines.push("Its backups are made by SQLite's online backup.".to_owned()),
    }
    match schedule {
        Some(s) => {
            let next = s
                .when
                .next_due(chrono::Local::now())
                .map(|t| {
                    format!(
                        "; the first is {}",
                        persnap::protection::moment(
                            t.with_timezone(&chrono::Utc),
                            chrono::Local::now()
                        )
                    )
                })
                .unwrap_or_default();
            lines.push(format!("It is backed up {}{next}.", s.when.describe()));
        }
        None => lines.push("It is backed up when you click Back up now.".into()),
    }
    match (&database.repository, &database.location) {
        (Some(r), _) if r.staged => lines.push(format!(
            "Backups go into the repository {} (deduplicated, encrypted).",
            r.location
        )),
        (_, Some(l)) => lines.push(format!("Backups go to {}.", l.display())),
        _ => {}
    }
    if let Some(o) = &database.offsite {
        lines.push(format!(
            "A copy of each goes offsite, into the repository {}.",
            o.location
        ));
    }
    for line in &lines {
        ui.label(line);
    }
    // Said, not hidden: "Back up now" will ask for a password not kept.
    for warning in &d.warnings {
        ui.colored_label(AMBER, warning);
    }
    ui.label("Make its first backup now, so that it is protected from today.");
    let entry = database.clone();
    let location = database.location.clone();
    let details: Vec<String> = probe
        .as_ref()
        .and_then(|p| p.test_snapshot.clone())
        .and_then(Result::ok)
        .into_iter()
        .chain(
            schedule
                .as_ref()
                .map(|s| format!("Schedule {}: {}", s.name, s.when)),
        )
        .collect();
    let mut back_up = false;
    let mut close = false;
    ui.horizontal(|ui| {
        back_up = ui
            .add_enabled(
                app.rt.activity.is_none() && location.is_some(),
                egui::Button::new(RichText::new("Back up now").strong()),
            )
            .clicked();
        close = ui.button("Done").clicked();
    });
    egui::CollapsingHeader::new("Details")
        .id_salt("protect-details")
        .show(ui, |ui| {
            for line in &details {
                ui.label(line);
            }
        });
    if back_up && let Some(location) = location {
        super::backup_view::back_up_now(app, ui.ctx(), &entry, &location);
        close = true;
    }
    if close {
        app.rt.protect = None;
        app.rt.screen = Screen::Overview;
    }
}
