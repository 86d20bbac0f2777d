//! Widgets more than one screen uses: the progress of a long job (step,
//! bytes, speed, time left, Cancel) and a folder field that can always be
//! typed into, whose folder dialog says so when it cannot open.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui::{self, Color32, Ui};
use persnap::progress::Phase;
use persnap::protection::{self, Assessment, Level};
use persnap::units;

use super::jobs::Msg;

/// How far a job has got, as its messages say.
pub struct Meter {
    pub phase: Option<Phase>,
    pub done: u64,
    pub total: u64,
    pub started: Instant,
    pub phase_started: Instant,
    pub cancelling: bool,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            phase: None,
            done: 0,
            total: 0,
            started: Instant::now(),
            phase_started: Instant::now(),
            cancelling: false,
        }
    }
}

impl Meter {
    /// Take in a message of the job (others are left alone).
    pub fn update<T>(&mut self, msg: &Msg<T>) {
        match *msg {
            Msg::Phase(phase) => self.enter(phase),
            Msg::Bytes { phase, done, total } => {
                if self.phase != Some(phase) {
                    self.enter(phase);
                }
                self.done = done;
                self.total = total;
            }
            _ => {}
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = Some(phase);
        self.done = 0;
        self.total = 0;
        self.phase_started = Instant::now();
    }

    /// The step in words, a bar with bytes, the speed and the time left,
    /// and Cancel (which sets `cancel`); `what` names the job ("Restoring").
    pub fn show(&mut self, ui: &mut Ui, what: &str, words: fn(Phase) -> &'static str) -> bool {
        let mut cancel = false;
        ui.group(|ui| {
            ui.heading(match self.phase {
                Some(p) => format!("{what}: {}", words(p)),
                None => format!("{what}: starting…"),
            });
            let fraction = if self.total > 0 {
                self.done as f32 / self.total as f32
            } else {
                0.0
            };
            let text = if self.total > 0 {
                format!(
                    "{} of {}",
                    units::bytes(self.done),
                    units::bytes(self.total)
                )
            } else {
                format!("{} elapsed", units::duration(self.started.elapsed()))
            };
            ui.add(
                egui::ProgressBar::new(fraction)
                    .text(text)
                    .animate(self.total == 0),
            );
            if self.total > 0 {
                let elapsed = self.phase_started.elapsed().as_secs_f64().max(0.001);
                let speed = self.done as f64 / elapsed;
                let left = (speed > 0.0 && self.total > self.done)
                    .then(|| Duration::from_secs_f64((self.total - self.done) as f64 / speed))
                    .map_or("–".into(), units::duration);
                ui.label(format!(
                    "{}/s · about {left} left in this step",
                    units::bytes(speed as u64)
                ));
            }
            if self.cancelling {
                ui.label("Cancelling… nothing half-done is kept.");
            } else if ui.button("Cancel").clicked() {
                self.cancelling = true;
                cancel = true;
            }
        });
        cancel
    }
}

/// A folder, typed or chosen with the system's folder dialog (`button`),
/// or picked from `recent` ones: one row of a two-column grid (`label`
/// names the field; the caller ends the row). Where no dialog can open
/// (no desktop portal on a server), the row says so instead of doing
/// nothing, and the path is typed.
pub fn folder_field(
    ui: &mut Ui,
    label: &str,
    value: &mut String,
    hint: &str,
    button: &str,
    recent: Option<&[String]>,
    no_dialog: &mut bool,
) {
    let name = ui.label(label);
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(value)
                .desired_width(440.0)
                .hint_text(hint),
        )
        .labelled_by(name.id);
        if ui.button(button).clicked()
            && let Some(dir) = pick_folder(label, value, no_dialog)
        {
            *value = dir.display().to_string();
        }
        if *no_dialog {
            ui.colored_label(AMBER, "No folder dialog opens here: type the path.")
                .on_hover_text(NO_DIALOG);
        }
        if let Some(recent) = recent {
            ui.add_enabled_ui(!recent.is_empty(), |ui| {
                ui.menu_button(format!("Recent {}s", label.to_lowercase()), |ui| {
                    for item in recent {
                        if ui.button(item).clicked() {
                            *value = item.clone();
                            ui.close();
                        }
                    }
                });
            });
        }
    });
}

/// Said where the folder dialog could not open.
pub const NO_DIALOG: &str = "No folder dialog can open on this computer (it needs a desktop's file chooser): type the folder's full path instead.";

/// The system's folder dialog; `None` when cancelled or when it could not
/// open, which `no_dialog` then records. A dialog that "answers" faster
/// than anyone could read it never opened (rfd reports both as nothing).
pub fn pick_folder(title: &str, start: &str, no_dialog: &mut bool) -> Option<std::path::PathBuf> {
    let mut dialog = rfd::FileDialog::new().set_title(title);
    if Path::new(start).is_dir() {
        dialog = dialog.set_directory(start);
    }
    let asked = Instant::now();
    let picked = dialog.pick_folder();
    *no_dialog = picked.is_none() && asked.elapsed() < Duration::from_millis(250);
    picked
}

/// What the app knows of folder dialogs here, and the folders typed
/// instead where none can open (by the field they are for).
#[derive(Default)]
pub struct Folders {
    /// The system's folder dialog could not open on this computer.
    pub no_dialog: bool,
    pub typed: std::collections::HashMap<String, String>,
}

/// A button (`button`) that chooses a folder with the system's dialog
/// (`title`); where no dialog can open, it says so and a field takes the
/// folder's path instead, with "Use this folder". The folder chosen or
/// typed, once given. `key` names the field among the typed ones.
pub fn choose_folder(
    ui: &mut Ui,
    button: &str,
    title: &str,
    key: &str,
    folders: &mut Folders,
) -> Option<std::path::PathBuf> {
    let mut chosen = None;
    if ui.button(button).on_hover_text(title).clicked() {
        chosen = pick_folder(title, "", &mut folders.no_dialog);
    }
    if folders.no_dialog {
        let typed = folders.typed.entry(key.to_owned()).or_default();
        let label = ui.label("Folder");
        ui.add(
            egui::TextEdit::singleline(typed)
                .desired_width(320.0)
                .hint_text("type the folder's full path"),
        )
        .on_hover_text(title)
        .labelled_by(label.id);
        if ui
            .add_enabled(
                !typed.trim().is_empty(),
                egui::Button::new("Use this folder"),
            )
            .clicked()
        {
            chosen = Some(std::path::PathBuf::from(typed.trim()));
        }
        ui.colored_label(AMBER, NO_DIALOG);
    }
    chosen
}

/// The app's colours: good, bad, needs a look.
pub const GREEN: egui::Color32 = egui::Color32::from_rgb(0x2e, 0x9e, 0x4f);
pub const RED: egui::Color32 = egui::Color32::from_rgb(0xd6, 0x3b, 0x3b);
pub const AMBER: egui::Color32 = egui::Color32::from_rgb(0xd9, 0x8c, 0x1a);

/// Show a folder in the system's file manager (no shell involved).
pub fn open_folder(dir: &Path) {
    let opener = if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener).arg(dir).spawn();
}

pub fn level_colour(level: Level) -> Color32 {
    match level {
        Level::Protected => GREEN,
        Level::Attention => AMBER,
        Level::Failing | Level::Never => RED,
    }
}

/// Where this database's backups go: what its registration says (else its
/// schedule or its last backup), the one place its card shows, its free
/// space is judged at and Back up now writes to. The app keeps no record
/// of its own: a choice made here changes the registration.
pub fn location_of(card: &Assessment) -> Option<PathBuf> {
    card.location.clone()
}

/// When its backups were last proven restorable (a restore drill read
/// them back from every place), if they have backups at all.
pub fn proven_words(card: &Assessment, now: chrono::DateTime<chrono::Local>) -> Option<String> {
    card.last_good.as_ref()?;
    Some(match &card.proven {
        Some(drill) => {
            let places = drill
                .drill
                .as_ref()
                .map(|r| {
                    r.places
                        .iter()
                        .map(|p| p.kind.words().trim_start_matches("the "))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            format!(
                "Last proven restorable {} (restore drill: {places}).",
                protection::moment(drill.started, now)
            )
        }
        None if card.schedule.is_some() => {
            "Not proven restorable yet: the first restore drill runs with its next scheduled backup."
                .into()
        }
        None => {
            "Not proven restorable yet: a restore drill (Check restorable now, on its page) reads its backups back."
                .into()
        }
    })
}

/// Whether two folders that both exist share a disk (a folder not made
/// yet, or one this user cannot see, is not judged).
pub fn on_one_disk(folder: &Path, location: &Path) -> bool {
    folder.is_dir()
        && location.is_dir()
        && persnap::fsutil::same_filesystem(folder, location).unwrap_or(false)
}

/// A folder for backups the user can create: `persnap-backups` in their
/// home folder.
pub fn suggested_location() -> Option<PathBuf> {
    let home = directories::UserDirs::new()?.home_dir().to_owned();
    Some(home.join("persnap-backups"))
}

/// The registry entry a card stands for.
pub fn entry_of(card: &Assessment) -> persnap::registry::Database {
    let mut db = persnap::registry::Database::new(&card.name, &card.folder, &card.store_name);
    db.method = card.method;
    db.retention = card.retention;
    db.location = card.location.clone();
    db.schedule = card.schedule.as_ref().map(|s| s.name.clone());
    db.repository = card.repository.clone();
    db.offsite = card.offsite.clone();
    db
}

pub fn failure(ui: &mut Ui, e: &persnap::Error) {
    match e {
        persnap::Error::Repository {
            what,
            advice,
            detail,
            ..
        } => {
            ui.colored_label(RED, format!("{what} {advice}"));
            if !detail.is_empty() {
                egui::CollapsingHeader::new("Details")
                    .id_salt("repository-details")
                    .show(ui, |ui| {
                        ui.label(detail);
                    });
            }
        }
        other => {
            ui.colored_label(RED, other.to_string());
        }
    }
}

pub fn restore_phase_words(phase: persnap::progress::Phase) -> &'static str {
    use persnap::progress::Phase;
    match phase {
        Phase::Prepare => "checking the folder",
        Phase::Copy => "reading the backup and checking every file",
        Phase::Finish => "putting it in place",
        Phase::Verify => "checking the restored database",
        Phase::Store => "protecting it",
        Phase::Snapshot | Phase::Release => "taking a test snapshot",
    }
}

/// How often a database's backups run, as the app offers it: one
/// definition, one set of words; each screen offers the ones that apply
/// (the Protect page has no custom calendar, the Schedules screen no
/// "only when I click").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Often {
    Hourly,
    Daily,
    Weekdays,
    /// A systemd calendar expression (Linux).
    Custom,
    /// No schedule: only when someone clicks "Back up now".
    Manual,
}

impl Often {
    pub fn words(self) -> &'static str {
        match self {
            Often::Hourly => "Every hour",
            Often::Daily => "Every day",
            Often::Weekdays => "On weekdays (Monday to Friday)",
            Often::Custom => "Custom (systemd calendar)",
            Often::Manual => "Only when I click Back up now",
        }
    }

    /// What the scheduler reads ([`persnap::schedule::When::parse`]): at
    /// `at` (24-hour time), or the `custom` expression; `None`: no
    /// schedule.
    pub fn when_text(self, at: &str, custom: &str) -> Option<String> {
        match self {
            Often::Hourly => Some("hourly".into()),
            Often::Daily => Some(at.trim().to_owned()),
            Often::Weekdays => Some(format!("Mon..Fri {}", at.trim())),
            Often::Custom => Some(custom.trim().to_owned()),
            Often::Manual => None,
        }
    }
}

/// When a protected database is backed up unless chosen otherwise: every
/// day at this hour (the Protect page, and a database restored onto a new
/// machine and protected with it; its card's Change… changes it).
pub const DEFAULT_HOUR: u32 = 2;
/// How long its backups are kept unless chosen otherwise, in days.
pub const DEFAULT_KEEP_DAYS: u32 = 14;
/// How long backups may be kept, as offered (None: all of them).
pub const KEEP_DAYS: [Option<u32>; 6] = [Some(7), Some(14), Some(30), Some(90), Some(365), None];

pub fn keep_words(days: Option<u32>) -> String {
    match days {
        Some(d) => format!("{d} days"),
        None => "all of them (nothing is deleted)".into(),
    }
}

/// A backup speed in words, as a list of schedules says it (empty for the
/// default).
pub fn pace_words(pace: persnap::pace::Pace) -> &'static str {
    match pace {
        persnap::pace::Pace::Fast => " (as fast as possible)",
        _ => "",
    }
}
