//! A protected database's page, opened from its card: how it stands, its
//! backups in a table with the reason for every failure in words, size
//! and duration over time, and what can be done — back up now, verify a
//! backup again, restore one, open its folder, stop protecting it.

use persnap::units::LocalTime;
use std::path::PathBuf;
use std::time::Duration;

use eframe::egui::{self, RichText, Ui};
use egui_extras::{Column, TableBuilder};
use persnap::history::{Outcome, Run};
use persnap::protection::{self, Assessment};
use persnap::protocol::Request;
use persnap::units;

use super::jobs::{self, Job};
use super::widgets::{AMBER, GREEN, RED, open_folder};
use super::{PersnapApp, RestoreDraft, Screen};

/// The page's state.
pub struct DatabasePage {
    pub name: String,
    /// The run whose backup is selected in the table.
    pub selected: Option<String>,
    /// Verifying a backup again: which, its progress, and how it went.
    pub(super) verifying: Option<(String, Job<jobs::Words>, super::widgets::Meter)>,
    pub verified: Option<(String, Result<String, String>)>,
    /// "Stop protecting": asked, running, and how it went.
    confirm_stop: bool,
    stopping: Option<Job<jobs::Told>>,
    pub stopped: Option<Result<String, String>>,
    /// Pins of the backups shown, as read (once each).
    pins: std::collections::HashMap<PathBuf, Option<persnap::pin::Pin>>,
    /// The note for pinning the selected backup.
    pub note: String,
    /// Pinning or unpinning a backup in its repository: which run, and how
    /// it went.
    repo_pin: Option<(String, Job<jobs::Words>)>,
    pub repo_pinned: Option<(String, Result<String, String>)>,
    /// A restore drill running (its progress), and how the last one went.
    drilling: Option<(Job<Drilled>, super::widgets::Meter)>,
    pub drilled: Option<Drilled>,
    /// "Back up before upgrading": asked, and its note.
    asking_upgrade: bool,
    pub upgrade_note: String,
    pub pin_error: Option<String>,
}

impl DatabasePage {
    pub fn new(name: &str) -> DatabasePage {
        DatabasePage {
            name: name.to_owned(),
            selected: None,
            verifying: None,
            verified: None,
            confirm_stop: false,
            stopping: None,
            stopped: None,
            pins: Default::default(),
            note: String::new(),
            repo_pin: None,
            repo_pinned: None,
            drilling: None,
            drilled: None,
            asking_upgrade: false,
            upgrade_note: "before upgrading Apama".into(),
            pin_error: None,
        }
    }

    pub fn busy(&self) -> bool {
        self.verifying.is_some() || self.stopping.is_some() || self.drilling.is_some()
    }

    /// Take in what the drill reported; whether it ended.
    fn drain_drill(&mut self) -> bool {
        let Some((job, meter)) = &mut self.drilling else {
            return false;
        };
        match job.drain(|msg| meter.update(&msg)) {
            Some(end) => {
                self.drilled = Some(end.unwrap_or_else(|s| Err(s.into())));
                self.drilling = None;
                true
            }
            None => false,
        }
    }

    /// Read the pins again (one was added or removed elsewhere).
    pub fn forget_pins(&mut self) {
        self.pins.clear();
    }

    /// The pin of the backup `path`, read once.
    fn pin_of(&mut self, path: &std::path::Path) -> Option<&persnap::pin::Pin> {
        self.pins
            .entry(path.to_owned())
            .or_insert_with(|| persnap::pin::read(path))
            .as_ref()
    }
}

/// Start a restore drill of the database of `card`: its folder (unless it
/// only stages for a repository), its repository and offsite one.
fn start_drill(app: &mut PersnapApp, ctx: &egui::Context, card: &Assessment) {
    let Some(history) = app.rt.history.clone() else {
        return;
    };
    let staged_only = card.repository.as_ref().is_some_and(|r| r.staged);
    let folder = super::widgets::location_of(card).filter(|_| !staged_only);
    let repository = |r: &persnap::registry::InRepository| {
        let location = persnap::repository::Address::parse(&r.location).ok()?;
        Some((
            location,
            super::repository_view::typed_password(app, &r.location),
        ))
    };
    let subject = persnap::drill::Subject {
        folder: card.folder.clone(),
        store_name: card.store_name.clone(),
        database: card.name.clone(),
    };
    let job = jobs::drill(
        ctx,
        subject,
        folder,
        card.repository.as_ref().and_then(repository),
        card.offsite.as_ref().and_then(repository),
        history,
        app.rt.staging.clone(),
    );
    if let Some(page) = &mut app.rt.database {
        page.drilled = None;
        page.drilling = Some((job, super::widgets::Meter::default()));
    }
}

/// The drill running, or what the last one found.
fn drill_state(page: &mut DatabasePage, ui: &mut Ui) {
    if let Some((job, meter)) = &mut page.drilling {
        if meter.show(ui, "Checking that it restores", drill_phase_words) {
            job.cancel.cancel();
        }
        ui.ctx().request_repaint_after(Duration::from_millis(250));
        return;
    }
    match &page.drilled {
        None => {}
        Some(Ok(report)) if report.passed() => {
            ui.colored_label(
                GREEN,
                "Restorable: every place gave its backups back whole, and SQLite found them intact.",
            );
            for place in &report.places {
                ui.label(format!("• {}", place.words()));
            }
        }
        Some(Ok(report)) => {
            ui.colored_label(RED, "Not restorable from every place:");
            for place in &report.places {
                let line = format!("• {}", place.words());
                if place.problem.is_some() {
                    ui.colored_label(RED, line);
                } else {
                    ui.label(line);
                }
            }
            let details: Vec<String> = report
                .places
                .iter()
                .filter_map(|p| Some(format!("{}: {}", p.kind.words(), p.detail.as_ref()?)))
                .collect();
            if !details.is_empty() {
                egui::CollapsingHeader::new("Details")
                    .id_salt("drill-details")
                    .show(ui, |ui| {
                        for line in details {
                            ui.label(line);
                        }
                    });
            }
        }
        Some(Err(e)) => {
            ui.colored_label(RED, format!("The restore drill could not run: {e}"));
        }
    }
}

fn drill_phase_words(phase: persnap::progress::Phase) -> &'static str {
    match phase {
        persnap::progress::Phase::Copy => "reading a backup out of its repository",
        _ => "reading back and checking",
    }
}

/// How a restore drill ended: what each place gave back, or why it could
/// not run.
type Drilled = Result<Box<persnap::drill::DrillReport>, String>;

/// Open the page of `name`.
pub fn open(app: &mut PersnapApp, name: &str) {
    app.rt.database = Some(DatabasePage::new(name));
    app.rt.screen = Screen::Database;
}

fn drain(app: &mut PersnapApp) {
    let Some(page) = &mut app.rt.database else {
        return;
    };
    if let Some((id, job, meter)) = &mut page.verifying
        && let Some(end) = job.drain(|msg| meter.update(&msg))
    {
        page.verified = Some((id.clone(), end.unwrap_or_else(|s| Err(s.into()))));
        page.verifying = None;
    }
    // A pin in a repository gives the backup a new id: the history
    // follows it, and so does the page.
    if let Some((id, job)) = &page.repo_pin
        && let Some(end) = job.end()
    {
        page.repo_pinned = Some((id.clone(), end.unwrap_or_else(|s| Err(s.into()))));
        page.repo_pin = None;
        app.reload_history();
        return;
    }
    // A drill's run is in the history now: the card and page say it.
    if page.drain_drill() {
        app.reload_history();
        app.rt.overview.invalidate();
        return;
    }
    let Some(page) = &mut app.rt.database else {
        return;
    };
    let mut stopped = false;
    if let Some(job) = &page.stopping {
        match job.end() {
            Some(Ok(result)) => {
                page.stopping = None;
                stopped = result.is_ok();
                page.stopped = Some(result.map(|_| String::new()).map_err(|f| f.message));
            }
            None => {}
            Some(Err(jobs::Stopped)) => page.stopping = None,
        }
    }
    if stopped {
        app.rt.overview.invalidate();
        app.rt.overview.look_again();
        app.rt.schedules.reload();
    }
}

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    drain(app);
    // Its standing, judged again after a backup from this page.
    super::overview_view::keep_fresh(app, ui.ctx());
    let Some(name) = app.rt.database.as_ref().map(|p| p.name.clone()) else {
        app.rt.screen = Screen::Overview;
        return;
    };
    if ui.button("Back to all databases").clicked() {
        app.rt.database = None;
        app.rt.screen = Screen::Overview;
        return;
    }
    if let Some(Ok(_)) = app.rt.database.as_ref().and_then(|p| p.stopped.as_ref()) {
        ui.heading(format!("{name} is no longer protected."));
        ui.label("Its schedule is removed. Its backups and their history stay where they are.");
        return;
    }
    let card = app.rt.overview.survey.as_ref().and_then(|s| {
        s.as_ref()
            .ok()
            .and_then(|s| s.assessments.iter().find(|a| a.name == name).cloned())
    });
    let Some(card) = card else {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Looking at the protected databases…");
        });
        return;
    };
    let runs: Vec<Run> = {
        let db = persnap::registry::Database::new(&card.name, &card.folder, &card.store_name);
        let mut mine: Vec<Run> = protection::runs_of(&db, &app.rt.runs).cloned().collect();
        mine.sort_by_key(|r| std::cmp::Reverse(r.started));
        mine
    };
    header(app, ui, &card);
    ui.add_space(6.0);
    egui::Panel::bottom("database-chart")
        .resizable(true)
        .default_size(240.0)
        .show(ui, |ui| {
            let all: Vec<&Run> = runs.iter().collect();
            let height = ui.available_height();
            super::chart::size_and_duration(ui, &format!("db-{name}"), &all, height);
        });
    if app.rt.restore.is_some() {
        egui::Panel::right("database-restore")
            .resizable(true)
            .default_size(320.0)
            .show(ui, |ui| super::history_view::restore_panel(app, ui));
    }
    selected_actions(app, ui, &runs);
    table(app, ui, &runs);
}

fn header(app: &mut PersnapApp, ui: &mut Ui, card: &Assessment) {
    let now = app.rt.overview.now.unwrap_or_else(chrono::Local::now);
    ui.horizontal_wrapped(|ui| {
        ui.heading(&card.name);
        ui.weak(format!("{} in {}", card.store_name, card.folder.display()));
    });
    ui.colored_label(super::widgets::level_colour(card.level), &card.headline);
    if let Some(advice) = &card.advice {
        ui.label(advice);
    }
    match &card.schedule {
        Some(s) => ui.label(format!(
            "Backed up {}; next {}.",
            s.when,
            s.next_run
                .map(|t| protection::moment(t, now))
                .unwrap_or_else(|| "when the scheduler says".into())
        )),
        None => ui.label("No schedule: backed up when you click Back up now."),
    };
    if let Some(words) = super::widgets::proven_words(card, now) {
        ui.label(words);
    }
    let location = super::widgets::location_of(card);
    let busy = app.rt.database.as_ref().is_some_and(DatabasePage::busy);
    ui.horizontal(|ui| {
        let can = app.rt.activity.is_none() && location.is_some();
        if ui
            .add_enabled(
                can,
                egui::Button::new(RichText::new("Back up now").strong()),
            )
            .on_disabled_hover_text("Another backup is running, or no location is chosen")
            .clicked()
            && let Some(l) = &location
        {
            super::backup_view::back_up_now(
                app,
                ui.ctx(),
                &super::widgets::entry_of(card),
                l,
            );
        }
        let in_repository = card.repository.as_ref().is_some_and(|r| r.staged);
        if let Some(l) = location.as_ref().filter(|_| !in_repository)
            && ui.button("Open backups folder").clicked()
        {
            open_folder(l);
        }
        if ui
            .add_enabled(can, egui::Button::new("Back up before upgrading…"))
            .on_disabled_hover_text("Another backup is running")
            .on_hover_text(
                "A backup kept even when retention would delete it, for going back to the version before",
            )
            .clicked()
            && let Some(page) = &mut app.rt.database
        {
            page.asking_upgrade = true;
        }
        if ui
            .add_enabled(!busy && card.last_good.is_some(), egui::Button::new("Check restorable now"))
            .on_hover_text(
                "A restore drill: read the newest backup and one older one back whole from every place its backups are kept, and check them; nothing in the database's folder is touched",
            )
            .clicked()
        {
            start_drill(app, ui.ctx(), card);
        }
        if ui
            .add_enabled(!busy, egui::Button::new("Change…"))
            .on_hover_text("Where its backups go, when, and for how long")
            .clicked()
        {
            let entry = super::widgets::entry_of(card);
            app.change_protection(ui.ctx(), &entry);
        }
        if ui
            .add_enabled(!busy, egui::Button::new("Stop protecting…"))
            .clicked()
            && let Some(page) = &mut app.rt.database
        {
            page.confirm_stop = true;
        }
    });
    if app.rt.overview.backing_up.as_deref() == Some(card.name.as_str()) {
        super::backup_view::activity(app, ui);
        super::backup_view::outcome(app, ui);
    }
    let Some(page) = &mut app.rt.database else {
        return;
    };
    drill_state(page, ui);
    if page.asking_upgrade {
        let mut go = false;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.label(
                "A correlator upgrades its database in place, and the older version cannot open it again. \
                 persnap backs it up now and keeps this backup even when retention would delete it, so that you can go back.",
            );
            ui.horizontal(|ui| {
                let label = ui.label("Note");
                ui.add(egui::TextEdit::singleline(&mut page.upgrade_note).desired_width(280.0))
                    .labelled_by(label.id);
                go = ui.button("Back up and keep it").clicked();
                if ui.button("Not now").clicked() {
                    page.asking_upgrade = false;
                }
            });
        });
        if go && let Some(l) = &location {
            page.asking_upgrade = false;
            let note = page.upgrade_note.trim().to_owned();
            app.rt.pin_next = Some(note);
            app.rt.pinned = None;
            super::backup_view::back_up_now(app, ui.ctx(), &super::widgets::entry_of(card), l);
            return;
        }
    }
    match &app.rt.pinned {
        Some(Ok(words)) if app.rt.overview.backing_up.as_deref() == Some(card.name.as_str()) => {
            ui.colored_label(GREEN, words);
        }
        Some(Err(e)) => {
            ui.colored_label(
                RED,
                format!("The backup was made but could not be pinned: {e}"),
            );
        }
        _ => {}
    }
    let Some(page) = &mut app.rt.database else {
        return;
    };
    if page.confirm_stop {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.colored_label(
                AMBER,
                format!(
                    "Stop protecting {}? Its schedule is removed and operators can no longer back it up. Its backups stay.",
                    card.name
                ),
            );
            ui.horizontal(|ui| {
                if ui.button(format!("Stop protecting {}", card.name)).clicked() {
                    page.confirm_stop = false;
                    page.stopped = None;
                    page.stopping = Some(jobs::protect(
                        ui.ctx(),
                        Request::DatabaseRemove {
                            name: card.name.clone(),
                        },
                        app.rt.helper.clone(),
                        false,
                    ));
                }
                if ui.button("Keep protecting").clicked() {
                    page.confirm_stop = false;
                }
            });
        });
    }
    if page.stopping.is_some() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Waiting for the administrator's permission…");
        });
    }
    if let Some(Err(e)) = &page.stopped {
        ui.colored_label(RED, format!("It is still protected: {e}"));
    }
}

/// What can be done with the selected backup.
fn selected_actions(app: &mut PersnapApp, ui: &mut Ui, runs: &[Run]) {
    let Some(page) = &mut app.rt.database else {
        return;
    };
    let Some(run) = page
        .selected
        .as_ref()
        .and_then(|id| runs.iter().find(|r| &r.id == id))
    else {
        ui.label("Select a backup to verify it again, open it or restore it.");
        return;
    };
    if let (None, Some(stored), Outcome::Completed) =
        (&run.backup_path, &run.repository, &run.outcome)
    {
        let stored = stored.clone();
        let run = run.clone();
        in_repository(app, ui, &run, &stored);
        return;
    }
    let Some(path) = run
        .backup_path
        .clone()
        .filter(|_| run.outcome == Outcome::Completed)
    else {
        ui.label(format!("{}: {}", when(run), result_words(run)));
        return;
    };
    let there = path.is_dir();
    let mut restore = false;
    ui.horizontal_wrapped(|ui| {
        ui.strong(format!("Backup of {}", when(run)));
        if ui
            .add_enabled(
                there && page.verifying.is_none(),
                egui::Button::new("Verify again"),
            )
            .on_hover_text("Read every file back and check the database, as after the backup")
            .clicked()
        {
            page.verified = None;
            page.verifying = Some((
                run.id.clone(),
                jobs::verify(ui.ctx(), path.clone(), None),
                Default::default(),
            ));
        }
        if ui
            .add_enabled(there, egui::Button::new("Open folder"))
            .clicked()
        {
            open_folder(&path);
        }
        restore = ui
            .add_enabled(there, egui::Button::new("Restore…"))
            .on_hover_text("Put this backup back in place of the database")
            .clicked();
    });
    if !there {
        ui.colored_label(
            AMBER,
            "This backup is no longer there (moved, or deleted by retention).",
        );
    } else {
        let pinned = page.pin_of(&path).cloned();
        ui.horizontal_wrapped(|ui| match pinned {
            Some(pin) => {
                ui.label(format!(
                    "Kept even when retention would delete it{}.",
                    if pin.note.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", pin.note)
                    }
                ));
                if ui
                    .button("Unpin")
                    .on_hover_text("Retention may delete it again")
                    .clicked()
                {
                    page.pin_error = persnap::pin::unpin(&path).err().map(|e| e.to_string());
                    page.pins.remove(&path);
                }
            }
            None => {
                note_field(ui, &mut page.note);
                if ui
                    .button("Pin")
                    .on_hover_text("Kept even when retention would delete it")
                    .clicked()
                {
                    page.pin_error = persnap::pin::pin(&path, &page.note)
                        .err()
                        .map(|e| e.to_string());
                    page.pins.remove(&path);
                    page.note.clear();
                }
            }
        });
        if let Some(e) = &page.pin_error {
            ui.colored_label(RED, e);
        }
    }
    verification(ui, page, run);
    if restore {
        app.rt.restore = Some(RestoreDraft::new(path, None, &run.source));
    }
}

/// A backup kept only by a repository: verified again and restored by
/// reading it out of the repository first (as you, into your staging
/// folder).
fn in_repository(
    app: &mut PersnapApp,
    ui: &mut Ui,
    run: &Run,
    stored: &persnap::repository::Stored,
) {
    let Some(from) = super::repository_view::stored_backup(app, stored) else {
        ui.label(format!("{}: in {}", when(run), stored.location));
        return;
    };
    let Some(page) = &mut app.rt.database else {
        return;
    };
    let mut restore = false;
    ui.horizontal_wrapped(|ui| {
        ui.strong(format!(
            "Backup of {}, in the repository {} ({})",
            when(run),
            stored.location,
            stored.short_id()
        ));
        if ui
            .add_enabled(page.verifying.is_none(), egui::Button::new("Verify again"))
            .on_hover_text(
                "Read it back out of the repository, then every file and the database, as after the backup",
            )
            .clicked()
        {
            page.verified = None;
            page.verifying = Some((
                run.id.clone(),
                jobs::verify(ui.ctx(), PathBuf::new(), Some(from.clone())),
                Default::default(),
            ));
        }
        restore = ui
            .button("Restore…")
            .on_hover_text("Read it out of the repository and put it back in place of the database")
            .clicked();
    });
    // Kept even when retention would delete it: pinned in the repository.
    let mut pin = None;
    ui.horizontal_wrapped(|ui| {
        note_field(ui, &mut page.note);
        let idle = page.repo_pin.is_none();
        if ui
            .add_enabled(idle, egui::Button::new("Pin"))
            .on_hover_text("Kept even when retention would delete it")
            .clicked()
        {
            pin = Some(Some(page.note.trim().to_owned()));
        }
        if ui
            .add_enabled(idle, egui::Button::new("Unpin"))
            .on_hover_text("Retention may delete it again")
            .clicked()
        {
            pin = Some(None);
        }
        if !idle {
            ui.spinner();
        }
    });
    if let Some((id, result)) = &page.repo_pinned
        && *id == run.id
    {
        match result {
            Ok(words) => ui.colored_label(GREEN, words),
            Err(e) => ui.colored_label(RED, format!("Nothing changed: {e}")),
        };
    }
    verification(ui, page, run);
    if let (Some(note), Some(history)) = (pin, app.rt.history.clone()) {
        let job = jobs::pin_in_repository(ui.ctx(), from.clone(), note, history);
        if let Some(page) = &mut app.rt.database {
            page.note.clear();
            page.repo_pinned = None;
            page.repo_pin = Some((run.id.clone(), job));
        }
    }
    if restore {
        app.rt.restore = Some(RestoreDraft::new(
            PathBuf::from(stored.short_id()),
            Some(from),
            &run.source,
        ));
    }
}

/// A verification of `run`'s backup under way (its progress, and Cancel),
/// or how it went.
fn verification(ui: &mut Ui, page: &mut DatabasePage, run: &Run) {
    if let Some((id, job, meter)) = &mut page.verifying
        && *id == run.id
    {
        if meter.show(ui, "Verifying again", verify_phase_words) {
            job.cancel.cancel();
        }
        ui.ctx().request_repaint_after(Duration::from_millis(250));
    }
    if let Some((id, result)) = &page.verified
        && *id == run.id
    {
        match result {
            Ok(words) => ui.colored_label(GREEN, words),
            Err(words) if words == jobs::CANCELLED_VERIFY => ui.label(words),
            Err(words) => ui.colored_label(RED, words),
        };
    }
}

fn verify_phase_words(phase: persnap::progress::Phase) -> &'static str {
    match phase {
        persnap::progress::Phase::Copy => "reading it out of the repository",
        _ => "reading every file back and checking the database",
    }
}

/// The note a backup is pinned with.
fn note_field(ui: &mut Ui, note: &mut String) {
    let label = ui.label("Keep it, with a note");
    ui.add(
        egui::TextEdit::singleline(note)
            .hint_text("before upgrading Apama to 10.15")
            .desired_width(260.0),
    )
    .labelled_by(label.id);
}

fn when(run: &Run) -> String {
    run.started.local_minute()
}

/// A run's result in words, with the reason for a failure.
fn result_words(run: &Run) -> String {
    match &run.outcome {
        Outcome::Completed => "verified backup".into(),
        Outcome::Running => "running".into(),
        Outcome::Cancelled => "cancelled".into(),
        other => format!("failed: {}", protection::reason(other)),
    }
}

fn table(app: &mut PersnapApp, ui: &mut Ui, runs: &[Run]) {
    if runs.is_empty() {
        ui.label("No backups of this database yet.");
        return;
    }
    let Some(page) = &mut app.rt.database else {
        return;
    };
    TableBuilder::new(ui)
        .striped(true)
        .sense(egui::Sense::click())
        .column(Column::auto().at_least(130.0))
        .column(Column::auto().at_least(70.0))
        .column(Column::auto().at_least(60.0))
        .column(Column::auto().at_least(80.0))
        .column(Column::auto().at_least(60.0))
        .column(Column::remainder())
        .header(22.0, |mut header| {
            for title in ["When", "Size", "Took", "How", "Kept", "Result"] {
                header.col(|ui| {
                    ui.strong(title);
                });
            }
        })
        .body(|body| {
            body.rows(20.0, runs.len(), |mut row| {
                let run = &runs[row.index()];
                row.set_selected(page.selected.as_deref() == Some(run.id.as_str()));
                let cell = |row: &mut egui_extras::TableRow<'_, '_>, text: RichText| {
                    row.col(|ui| {
                        ui.add(egui::Label::new(text).selectable(false).truncate());
                    });
                };
                cell(&mut row, RichText::new(when(run)));
                cell(
                    &mut row,
                    RichText::new(if run.bytes > 0 {
                        units::bytes(run.bytes)
                    } else {
                        "–".into()
                    }),
                );
                cell(
                    &mut row,
                    RichText::new(run.duration_secs.map_or("–".into(), |s| {
                        units::duration(Duration::from_secs_f64(s))
                    })),
                );
                let how = match &run.scheduled {
                    Some(_) => "scheduled",
                    None => "by hand",
                };
                cell(&mut row, RichText::new(how));
                let kept = run
                    .backup_path
                    .as_deref()
                    .filter(|_| run.outcome == Outcome::Completed)
                    .and_then(|p| page.pin_of(p))
                    .map(|pin| {
                        if pin.note.is_empty() {
                            "pinned".to_owned()
                        } else {
                            format!("pinned: {}", pin.note)
                        }
                    })
                    .unwrap_or_default();
                cell(&mut row, RichText::new(kept));
                let words = result_words(run);
                let colour = match run.outcome {
                    Outcome::Completed => GREEN,
                    Outcome::Running => ui_neutral(),
                    Outcome::Cancelled => AMBER,
                    _ => RED,
                };
                cell(&mut row, RichText::new(words).color(colour));
                if row.response().clicked() {
                    page.selected = Some(run.id.clone());
                }
            });
        });
}

fn ui_neutral() -> egui::Color32 {
    egui::Color32::GRAY
}
