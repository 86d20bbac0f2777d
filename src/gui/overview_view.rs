//! The first screen: is each protected database protected? One card per
//! database — its status in plain words and colour, the next scheduled
//! run, where backups go and the room left there, "Back up now" — and
//! below them the databases found on this computer that are not protected
//! yet, each one click from being protected. Engineers' details sit behind
//! "Details".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui::{self, RichText, Ui};
use persnap::discover::{self, Found};
use persnap::protection::{self, Assessment, Level, Survey};
use persnap::units;

use super::PersnapApp;
use super::backup_view::{self, back_up_now};
use super::jobs::{self, Job};
use super::widgets::{
    AMBER, GREEN, RED, entry_of, level_colour, location_of, on_one_disk, proven_words,
    suggested_location,
};

/// How often the cards are judged again while the window is open.
const REFRESH: Duration = Duration::from_secs(15);

/// The overview's runtime state.
#[derive(Default)]
pub struct OverviewState {
    pub survey: Option<Result<Survey, String>>,
    surveying: Option<Job<Result<Survey, String>>>,
    surveyed_at: Option<Instant>,
    /// Databases found on this computer (None: not looked yet).
    pub found: Option<Vec<Found>>,
    finding: Option<Job<Vec<Found>>>,
    /// Where to look for database files (None: the usual places; tests
    /// set their own).
    pub places: Option<Vec<PathBuf>>,
    /// Whether to look at running processes too (tests may turn it off).
    pub skip_processes: bool,
    /// The database whose card started the running backup.
    pub backing_up: Option<String>,
    /// The folder offered for backups when none is chosen (None: a
    /// `persnap-backups` folder in the user's home).
    pub suggested: Option<PathBuf>,
    /// The time the cards are judged at (None: now; image tests fix it).
    pub now: Option<chrono::DateTime<chrono::Local>>,
    /// Whether a database folder and a backup location share a disk, as
    /// last looked (at most once per survey, not at every frame).
    same_disk: std::collections::HashMap<(PathBuf, PathBuf), bool>,
}

impl OverviewState {
    /// Judge the cards again at the next frame (after a backup, a
    /// registration, a schedule change).
    pub fn invalidate(&mut self) {
        self.surveyed_at = None;
    }

    /// Look for databases again at the next frame.
    pub fn look_again(&mut self) {
        self.found = None;
        self.finding = None;
    }

    pub fn busy(&self) -> bool {
        self.surveying.is_some() || self.finding.is_some()
    }
}

/// Start or collect the survey and the search; called every frame.
pub fn keep_fresh(app: &mut PersnapApp, ctx: &egui::Context) {
    let o = &mut app.rt.overview;
    match o.surveying.as_ref().and_then(Job::end) {
        Some(Ok(result)) => {
            o.survey = Some(result);
            o.surveying = None;
            o.same_disk.clear();
        }
        Some(Err(jobs::Stopped)) => o.surveying = None,
        None => {}
    }
    match o.finding.as_ref().and_then(Job::end) {
        Some(Ok(found)) => {
            o.found = Some(found);
            o.finding = None;
        }
        Some(Err(jobs::Stopped)) => {
            o.found = Some(Vec::new());
            o.finding = None;
        }
        None => {}
    }
    let due = o.surveyed_at.is_none_or(|t| t.elapsed() >= REFRESH);
    if due && o.surveying.is_none() {
        o.surveyed_at = Some(Instant::now());
        let registry = app.rt.registry.clone();
        let runs = app.rt.runs.clone();
        let schedules = app.rt.schedules.list.clone();
        let now = o.now.unwrap_or_else(chrono::Local::now);
        o.surveying = Some(jobs::task(ctx, move || {
            protection::survey(
                &registry,
                &runs,
                &schedules,
                &protection::load_history,
                Default::default(),
                now,
            )
            .map_err(|e| e.to_string())
        }));
    }
    if o.found.is_none() && o.finding.is_none() {
        let places = o.places.clone().unwrap_or_else(discover::usual_places);
        let processes = !o.skip_processes;
        o.finding = Some(jobs::task(ctx, move || {
            let running = if processes {
                discover::running()
            } else {
                Vec::new()
            };
            discover::merge(running, discover::search(&places))
        }));
    }
    if o.busy() {
        ctx.request_repaint_after(Duration::from_millis(100));
    } else {
        ctx.request_repaint_after(REFRESH);
    }
}

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    keep_fresh(app, ui.ctx());
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let cards: Vec<Assessment> = match &app.rt.overview.survey {
                Some(Ok(s)) => s.assessments.clone(),
                Some(Err(e)) => {
                    ui.colored_label(
                        RED,
                        format!("persnap cannot read the list of protected databases: {e}"),
                    );
                    Vec::new()
                }
                None => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Looking at the protected databases…");
                    });
                    return;
                }
            };
            if cards.is_empty() {
                ui.heading("No database is protected yet");
                ui.label(
                    "Protect a database and persnap keeps verified backups of it, \
                     taken from a snapshot while the correlator keeps running.",
                );
                restore_button(app, ui);
            } else {
                summary(ui, &cards, first_backup_running(app).as_deref());
                for card in &cards {
                    database_card(app, ui, card);
                    ui.add_space(8.0);
                }
            }
            if let Some(Ok(s)) = &app.rt.overview.survey {
                for note in &s.notes {
                    ui.colored_label(AMBER, note);
                }
            }
            ui.add_space(8.0);
            found_list(app, ui, &cards);
            if !cards.is_empty() {
                ui.add_space(12.0);
                ui.separator();
                ui.heading("Get a database back");
                restore_button(app, ui);
            }
        });
}

/// The database whose backup is running from its card, if one is.
fn first_backup_running(app: &PersnapApp) -> Option<String> {
    app.rt.activity.as_ref()?;
    app.rt.overview.backing_up.clone()
}

/// The way to a database's backups on a new machine (or this one).
fn restore_button(app: &mut PersnapApp, ui: &mut Ui) {
    ui.horizontal(|ui| {
        if ui.button("Restore a database from a backup…").clicked() {
            app.open_restore();
        }
        ui.label("From a repository or a backup folder, onto this computer: after a failure, or on a new machine.");
    });
}

/// One line over the cards: how many are fine. A database whose first
/// backup is running (`first`) is neither fine nor in need: it is being
/// backed up.
fn summary(ui: &mut Ui, cards: &[Assessment], first: Option<&str>) {
    let running = |c: &&Assessment| c.level == Level::Never && first == Some(c.name.as_str());
    let cards: Vec<&Assessment> = cards.iter().filter(|c| !running(c)).collect();
    if cards.is_empty() {
        ui.heading("Its first backup is running.");
        ui.add_space(4.0);
        return;
    }
    let fine = cards.iter().filter(|c| c.level == Level::Protected).count();
    let (text, colour) = if fine == cards.len() {
        (
            match cards.len() {
                1 => "Your database is protected.".to_owned(),
                n => format!("All {n} databases are protected."),
            },
            GREEN,
        )
    } else {
        (
            match (cards.len() - fine, cards.len()) {
                (_, 1) => "Your database needs your attention.".to_owned(),
                (1, n) => format!("1 of {n} databases needs your attention."),
                (k, n) => format!("{k} of {n} databases need your attention."),
            },
            AMBER,
        )
    };
    ui.heading(RichText::new(text).color(colour));
    ui.add_space(4.0);
}

fn database_card(app: &mut PersnapApp, ui: &mut Ui, card: &Assessment) {
    // Its first backup running: not red "never backed up", and nothing to
    // do but wait.
    let first = card.level == Level::Never
        && first_backup_running(app).as_deref() == Some(card.name.as_str());
    let shown;
    let card = if first {
        let mut c = card.clone();
        c.headline = "Its first backup is running.".into();
        c.advice = None;
        shown = c;
        &shown
    } else {
        card
    };
    let colour = if first {
        ui.visuals().text_color()
    } else {
        level_colour(card.level)
    };
    let now = app.rt.overview.now.unwrap_or_else(chrono::Local::now);
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(2.0, colour))
        .inner_margin(12.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal(|ui| {
                ui.heading(&card.name);
                ui.weak(format!("{} in {}", card.store_name, card.folder.display()));
            });
            ui.label(RichText::new(&card.headline).color(colour).strong());
            if let Some(advice) = &card.advice {
                ui.label(advice);
            }
            match &card.schedule {
                Some(s) => ui.label(format!(
                    "Next backup: {} ({}).",
                    s.next_run
                        .map(|t| protection::moment(t, now))
                        .unwrap_or_else(|| "when the scheduler says".into()),
                    s.when
                )),
                None => ui.label("Next backup: none scheduled."),
            };
            if let Some(words) = proven_words(card, now) {
                ui.label(words);
            }
            let location = location_of(card);
            location_row(app, ui, card, location.as_deref());
            actions(app, ui, card, location.as_deref());
            if app.rt.overview.backing_up.as_deref() == Some(card.name.as_str()) {
                backup_view::activity(app, ui);
                backup_view::outcome(app, ui);
            }
            egui::CollapsingHeader::new("Details")
                .id_salt(("details", &card.name))
                .show(ui, |ui| {
                    for line in &card.details {
                        ui.label(line);
                    }
                    if let Some(run) = &card.last_run {
                        ui.label(format!(
                            "Last run {}: {}, {}",
                            run.id,
                            run.outcome.label(),
                            run.method
                                .map(|m| m.to_string())
                                .unwrap_or("no method".into())
                        ));
                    }
                });
        });
}

fn location_row(app: &mut PersnapApp, ui: &mut Ui, card: &Assessment, location: Option<&Path>) {
    if let Some(o) = &card.offsite {
        ui.label(format!(
            "A copy of each goes offsite, into the repository {}.",
            o.location
        ));
    }
    if let Some(r) = card.repository.as_ref().filter(|r| r.staged) {
        ui.label(format!(
            "Backups go into the repository {} (deduplicated, encrypted).",
            r.location
        ));
        return;
    }
    ui.horizontal_wrapped(|ui| {
        match location {
            Some(l) => {
                // Judged there by the survey: the location shown.
                let free = card
                    .free
                    .map(|f| format!(" — {} free", units::bytes(f)))
                    .unwrap_or_default();
                ui.label(format!("Backups go to {}{free}.", l.display()));
            }
            None => {
                ui.colored_label(AMBER, "Where should its backups go?");
            }
        }
        // Its registration says where: changed on its Protect page, with
        // one administrator prompt, never in the app alone.
        let choose = if location.is_some() {
            ui.weak("Changing where backups go needs the administrator's password.");
            "Change…"
        } else {
            ui.weak("Choosing where backups go needs the administrator's password.");
            "Choose backup location…"
        };
        if let Some(dir) = super::widgets::choose_folder(
            ui,
            choose,
            &format!(
                "Where to keep backups of {} (a folder, preferably on another disk)",
                card.name
            ),
            &format!("location-{}", card.name),
            &mut app.rt.folders,
        ) {
            change_location(app, ui.ctx(), card, &dir);
        }
        if location.is_none()
            && let Some(suggested) = app
                .rt
                .overview
                .suggested
                .clone()
                .or_else(suggested_location)
        {
            let label = format!("Use {}", suggested.display());
            if ui
                .button(label)
                .on_hover_text("A folder persnap creates for you")
                .clicked()
                && std::fs::create_dir_all(&suggested).is_ok()
            {
                change_location(app, ui.ctx(), card, &suggested);
            }
        }
    });
    if let Some(l) = location
        && shares_disk(app, &card.folder, l)
    {
        ui.colored_label(
            AMBER,
            "These backups are on the database's own disk: if the disk fails, both are lost. Choose a folder on another disk.",
        );
    }
}

/// Whether `folder` and `location` are on one disk; only said of two
/// folders that both exist (a location not made yet, or a database folder
/// this user cannot see, is not judged).
fn shares_disk(app: &mut PersnapApp, folder: &Path, location: &Path) -> bool {
    *app.rt
        .overview
        .same_disk
        .entry((folder.to_owned(), location.to_owned()))
        .or_insert_with(|| on_one_disk(folder, location))
}

/// Send its backups to `dir`: its Protect page, filled in as it is
/// protected now but for the location, to be saved with the
/// administrator's password (nothing changes until then).
fn change_location(app: &mut PersnapApp, ctx: &egui::Context, card: &Assessment, dir: &Path) {
    let dir = persnap::fsutil::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    app.change_protection(ctx, &entry_of(card));
    if let Some(d) = &mut app.rt.protect {
        d.location = Some(dir);
    }
}

fn actions(app: &mut PersnapApp, ui: &mut Ui, card: &Assessment, location: Option<&Path>) {
    let idle = app.rt.activity.is_none();
    ui.horizontal(|ui| {
        let can = idle && location.is_some();
        let button = ui.add_enabled(
            can,
            egui::Button::new(RichText::new("Back up now").strong()),
        );
        let button = if location.is_none() {
            button.on_disabled_hover_text("Choose where its backups go first")
        } else {
            button.on_disabled_hover_text("Another backup is running")
        };
        // Each card's button has its own accessible name.
        button.widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Button,
                can,
                format!("Back up {} now", card.name),
            )
        });
        if button.clicked()
            && let Some(location) = location
        {
            back_up_now(app, ui.ctx(), &entry_of(card), location);
        }
        let history = ui
            .button("Backups and restore")
            .on_hover_text("Its backups, their history, Verify again and Restore");
        history.widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Button,
                true,
                format!("Backups of {}", card.name),
            )
        });
        if history.clicked() {
            app.open_database(&card.name);
        }
        if let Some(good) = card.last_good.as_ref().and_then(|r| r.backup_path.clone())
            && ui
                .button("Open last backup")
                .on_hover_text(good.display().to_string())
                .clicked()
        {
            super::widgets::open_folder(&good);
        }
        if ui
            .button("Settings…")
            .on_hover_text("Where its backups go, when, and for how long")
            .clicked()
        {
            app.change_protection(ui.ctx(), &entry_of(card));
        }
    });
}

/// What was found on this computer and is not protected yet.
fn found_list(app: &mut PersnapApp, ui: &mut Ui, cards: &[Assessment]) {
    let protected = |f: &Found| {
        cards
            .iter()
            .any(|c| c.folder == f.folder && c.store_name == f.store_name)
    };
    ui.horizontal(|ui| {
        ui.heading("Protect a database");
        if app.rt.overview.finding.is_some() {
            ui.spinner();
        } else if ui.button("Look again").clicked() {
            app.rt.overview.look_again();
        }
    });
    let Some(found) = app.rt.overview.found.clone() else {
        ui.label("Looking for correlators and their databases on this computer…");
        return;
    };
    let offered: Vec<&Found> = found.iter().filter(|f| !protected(f)).collect();
    if offered.is_empty() {
        ui.label(
            "No other running correlator or persistence.db was found on this computer. \
             Choose its folder instead.",
        );
    } else {
        ui.label("Found on this computer:");
    }
    for f in offered {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal_wrapped(|ui| {
                ui.strong(f.folder.display().to_string());
                ui.label(&f.store_name);
            });
            let mut facts = vec![f.origin_words()];
            if let Some(b) = f.bytes {
                facts.push(units::bytes(b));
            }
            if let Some(m) = f.journal_mode {
                facts.push(m.to_string());
            }
            ui.label(facts.join(" · "));
            if let Some(note) = &f.note {
                ui.colored_label(AMBER, note);
            }
            let ready = f.bytes.is_some();
            let button = ui
                .add_enabled(ready, egui::Button::new("Protect…"))
                .on_hover_text(
                    "Choose where its backups go and when; then one administrator prompt",
                );
            button.widget_info(|| {
                egui::WidgetInfo::labeled(
                    egui::Role::Button,
                    ready,
                    format!("Protect {}", f.folder.display()),
                )
            });
            if button.clicked() {
                app.open_protect(ui.ctx(), f.clone());
            }
        });
    }
    ui.horizontal(|ui| {
        if let Some(dir) = super::widgets::choose_folder(
            ui,
            "Choose a database folder…",
            "The correlator's database folder (-PstoreLocation)",
            "database-folder",
            &mut app.rt.folders,
        ) {
            let f = discover::describe(
                &dir,
                persnap::store::DEFAULT_STORE_NAME,
                discover::Origin::File,
            );
            if let Some(list) = &mut app.rt.overview.found {
                list.retain(|g| g.folder != f.folder || g.store_name != f.store_name);
                list.insert(0, f);
            }
        }
    });
}
