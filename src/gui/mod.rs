//! The desktop app: `persnap` with no arguments.
//!
//! One [`PersnapApp`] holds the persisted [`Settings`] (saved by eframe
//! between launches) apart from the runtime state, which is rebuilt at
//! every start. Each screen is its own file: `overview_view` (the first:
//! is each database protected?), `backup_view`, `history_view`,
//! `protect_view` (the guided "Protect a database"), `database_view` (one
//! database's backups and actions), `repository_view` (a repository's
//! backups by machine and database), `restore_view` (a database back onto
//! this computer, a new machine too), `schedule_view`,
//! `notifications_view`, `settings_view`; what several show is in
//! `widgets`. Slow work runs on threads: the jobs in `jobs`, each a
//! `Job<T>` owned by the screen that started it, with its own end `T`;
//! each screen drains its own jobs at the start of every frame.

mod backup_view;
mod chart;
mod database_view;
mod history_view;
mod jobs;
mod notifications_view;
mod overview_view;
mod protect_view;
mod repository_view;
mod restore_view;
mod schedule_view;
mod settings_view;
mod widgets;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Instant;

use eframe::egui;
use persnap::history::{History, Run};
use persnap::method::MethodChoice;
use persnap::probe::ProbeReport;
use persnap::progress::{Level, Phase};
use serde::{Deserialize, Serialize};

use crate::launch::RemoteFailure;
use jobs::{Job, Msg};

const SETTINGS_KEY: &str = "persnap.settings";
const MAX_RECENT: usize = 8;
pub const WINDOW_TITLE: &str = "persnap — live database backups";

/// Start the native window.
pub fn run() -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(WINDOW_TITLE)
            .with_app_id("persnap")
            .with_inner_size([960.0, 720.0])
            .with_min_inner_size([640.0, 480.0])
            .with_icon(window_icon()),
        ..Default::default()
    };
    eframe::run_native(
        WINDOW_TITLE,
        options,
        Box::new(|cc| Ok(Box::new(PersnapApp::new(cc)))),
    )
}

/// Light, dark, or follow the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

/// What is remembered between launches. Where a protected database's
/// backups go is not among it: its registration holds that, and only
/// there (an older settings file's `locations` is read and ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub source: String,
    pub dest: String,
    pub store_name: String,
    pub method: MethodChoice,
    pub theme: Theme,
    pub recent_sources: Vec<String>,
    pub recent_dests: Vec<String>,
    pub online_timeout_secs: u64,
    /// `--snapshot-size` for LVM, as typed (empty: automatic).
    pub snapshot_size: String,
    /// Retention after each verified backup: keep the newest N (0: all).
    pub keep_last: u32,
    /// … and every backup of the last D days (0: no age rule).
    pub keep_days: u32,
    /// The repository last used, on the Repositories screen or as the
    /// Back up screen's location (its password is never saved here; see
    /// `remember_password`).
    pub repository: String,
    /// The Back up screen's location is the repository, not a folder.
    pub into_repository: bool,
    /// Keep a repository's password in the system's secret store once it
    /// opened the repository.
    pub remember_password: bool,
    /// Backup speed: gentle on the correlator, or as fast as possible.
    pub pace: persnap::pace::Pace,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            source: String::new(),
            dest: String::new(),
            store_name: persnap::store::DEFAULT_STORE_NAME.into(),
            method: MethodChoice::Auto,
            theme: Theme::System,
            recent_sources: Vec::new(),
            recent_dests: Vec::new(),
            online_timeout_secs: persnap::online::DEFAULT_TIMEOUT.as_secs(),
            snapshot_size: String::new(),
            keep_last: 0,
            keep_days: 0,
            repository: String::new(),
            into_repository: false,
            remember_password: true,
            pace: persnap::pace::Pace::Gentle,
        }
    }
}

impl Settings {
    /// Which backups are kept after each verified one (0: no such rule).
    pub fn retention(&self) -> persnap::retention::RetentionPolicy {
        persnap::retention::RetentionPolicy {
            keep_last: (self.keep_last > 0).then_some(self.keep_last),
            keep_days: (self.keep_days > 0).then_some(self.keep_days),
        }
    }

    /// What is saved: as they are, but a repository's address without a
    /// password written into it (`rest:https://user:secret@host/`).
    pub fn to_save(&self) -> Settings {
        let mut saved = self.clone();
        if let Ok(location) = persnap::repository::Address::parse(self.repository.trim()) {
            saved.repository = location.display();
        } else {
            // Not understood: a password or token may be anywhere in it
            // (`?token=…`), so it is not kept.
            saved.repository.clear();
        }
        saved
    }

    fn remember(list: &mut Vec<String>, value: &str) {
        if value.trim().is_empty() {
            return;
        }
        list.retain(|v| v != value);
        list.insert(0, value.to_owned());
        list.truncate(MAX_RECENT);
    }
}

/// The screens, as tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Overview,
    /// "Protect a database", opened from the overview (not a tab).
    Protect,
    /// One protected database's page, opened from its card (not a tab).
    Database,
    /// "Restore a database", from the overview or a repository's row (not
    /// a tab).
    Restore,
    Backup,
    History,
    Repositories,
    Schedules,
    Notifications,
    Settings,
}

/// A running backup or test snapshot, as the UI shows it.
pub struct Activity {
    pub job: Job<Outcome>,
    pub test_only: bool,
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
    pub started: Instant,
    pub phase_started: Instant,
    pub log: Vec<(Level, String)>,
    pub cancelling: bool,
}

/// What the last backup or test snapshot ended with.
pub use jobs::Outcome;

/// State rebuilt at every start, never saved.
pub struct Runtime {
    pub screen: Screen,
    pub history: Option<History>,
    pub history_error: Option<String>,
    pub runs: Vec<Run>,
    pub probe: Option<Result<Box<ProbeReport>, String>>,
    pub probe_key: String,
    /// The probe running, and the folders (`probe_key`) it looks at.
    pub probing: Option<(String, Job<jobs::Probed>)>,
    pub activity: Option<Activity>,
    pub outcome: Option<Outcome>,
    /// Warnings the user must confirm before the backup starts.
    pub confirm: Option<Vec<String>>,
    pub history_view: history_view::ViewState,
    pub last_applied_theme: Option<Theme>,
    /// How to reach the helper; `None` decides at each use (tests fix it).
    pub helper: Option<crate::launch::HelperRoute>,
    /// Where a backup into a repository is staged; `None`: the user's
    /// staging folder (tests fix it).
    pub staging: Option<PathBuf>,
    /// A restore being prepared, running or just finished.
    pub restore: Option<RestoreDraft>,
    /// The "Restore a database" page, while it is open.
    pub restore_page: Option<restore_view::RestorePage>,
    /// Folder dialogs here, and folders typed where none opens.
    pub folders: widgets::Folders,
    pub schedules: schedule_view::ScheduleState,
    /// The Notifications screen's form and its helper call.
    pub notifications: notifications_view::NotificationsPage,
    pub repositories: repository_view::RepositoryState,
    /// "Protect this database": the registration running, and how it went.
    pub protecting: Option<Job<jobs::Told>>,
    pub protected: Option<Result<String, String>>,
    /// The registry of protected databases (the system's; tests use their own).
    pub registry: persnap::registry::Registry,
    pub overview: overview_view::OverviewState,
    /// The "Protect a database" page, while it is open.
    pub protect: Option<protect_view::ProtectDraft>,
    /// The page of one protected database, while it is open.
    pub database: Option<database_view::DatabasePage>,
    /// The note to pin the running backup with, once it is verified.
    pub pin_next: Option<String>,
    /// How pinning the last such backup went.
    pub pinned: Option<Result<String, String>>,
    /// A backup into a repository to pin once stored: where, its id, the
    /// note; and the pin under way.
    pin_pending: Option<(String, String, String)>,
    pinning: Option<Job<jobs::Words>>,
    /// The window was asked to close while work was running: asked
    /// whether to stop it, and (once confirmed) closing when it has.
    pub close_asked: bool,
    pub close_confirmed: bool,
    /// The history file as last read (its modification time), and when it
    /// was last looked at: a run recorded by the command line or a
    /// scheduled run shows without a restart.
    history_seen: Option<std::time::SystemTime>,
    history_checked: Option<Instant>,
}

/// The restore panel's state.
pub struct RestoreDraft {
    /// The backup folder; for a backup in a repository, its id there.
    pub backup: PathBuf,
    /// The repository the backup is in (it is read out of it first).
    pub repository: Option<jobs::InRepository>,
    /// Where to restore to, as typed (default: where the backup came from).
    pub target: String,
    pub job: Option<Job<Result<Box<jobs::Restored>, RemoteFailure>>>,
    /// Its progress (step, bytes, speed, time left).
    pub meter: widgets::Meter,
    pub result: Option<Result<Box<jobs::Restored>, RemoteFailure>>,
}

impl RestoreDraft {
    /// Restoring `backup` (out of `repository`, if it is there) into
    /// `target` (where it came from, until the user changes it).
    pub fn new(
        backup: PathBuf,
        repository: Option<jobs::InRepository>,
        target: &std::path::Path,
    ) -> RestoreDraft {
        RestoreDraft {
            backup,
            repository,
            target: target.display().to_string(),
            job: None,
            meter: Default::default(),
            result: None,
        }
    }
}

pub struct PersnapApp {
    pub settings: Settings,
    pub rt: Runtime,
}

/// How one screen opens another: through the app, so that no screen
/// imports another's page (the screens stay free of import circles).
impl PersnapApp {
    /// A protected database's page.
    pub fn open_database(&mut self, name: &str) {
        database_view::open(self, name);
    }

    /// The restore page, empty.
    pub fn open_restore(&mut self) {
        restore_view::open(self, restore_view::RestorePage::new());
    }

    /// The restore page, for a database of a machine in a repository.
    pub fn open_restore_for(&mut self, host: &str, database: &str) {
        restore_view::open(
            self,
            restore_view::RestorePage::for_database(host, database),
        );
    }

    /// The Protect page for a database found on this machine.
    pub fn open_protect(&mut self, ctx: &egui::Context, found: persnap::discover::Found) {
        protect_view::open(self, ctx, found);
    }

    /// The Protect page of a protected database, to change how it is
    /// protected.
    pub fn change_protection(&mut self, ctx: &egui::Context, db: &persnap::registry::Database) {
        protect_view::change(self, ctx, db);
    }
}

impl PersnapApp {
    pub fn new(cc: &eframe::CreationContext<'_>) -> Self {
        #[cfg(windows)]
        own_uac_prompts(cc);
        let settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, SETTINGS_KEY))
            .unwrap_or_default();
        let mut app = Self::with_settings(settings, History::open_default());
        // Missed and failed runs show from the start (tests load on demand).
        app.rt.schedules.reload();
        app
    }

    /// Build the app around given settings and history (tests use this).
    pub fn with_settings(settings: Settings, history: persnap::Result<History>) -> Self {
        let (history, history_error) = match history {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut app = PersnapApp {
            settings,
            rt: Runtime {
                screen: Screen::Overview,
                history,
                history_error,
                runs: Vec::new(),
                probe: None,
                probe_key: String::new(),
                probing: None,
                activity: None,
                outcome: None,
                confirm: None,
                history_view: Default::default(),
                last_applied_theme: None,
                helper: None,
                staging: None,
                restore: None,
                restore_page: None,
                folders: Default::default(),
                schedules: Default::default(),
                notifications: Default::default(),
                repositories: Default::default(),
                protecting: None,
                protected: None,
                registry: persnap::registry::Registry::system(),
                overview: Default::default(),
                protect: None,
                database: None,
                pin_next: None,
                pinned: None,
                pin_pending: None,
                pinning: None,
                close_asked: false,
                close_confirmed: false,
                history_seen: None,
                history_checked: None,
            },
        };
        app.reload_history();
        app
    }

    /// Pin a backup just stored in a repository ("Back up before
    /// upgrading"), and take in how it went.
    fn pin_in_repository(&mut self, ctx: &egui::Context) {
        if let Some(end) = self.rt.pinning.as_ref().and_then(Job::end) {
            self.rt.pinned = Some(end.unwrap_or_else(|s| Err(s.into())));
            self.rt.pinning = None;
            self.reload_history();
        }
        let Some((location, snapshot, note)) = self.rt.pin_pending.take() else {
            return;
        };
        let (Ok(parsed), Some(history)) = (
            persnap::repository::Address::parse(&location),
            self.rt.history.clone(),
        ) else {
            return;
        };
        let from = jobs::InRepository {
            location: parsed,
            snapshot,
            password: repository_view::typed_password(self, &location),
            staging: self.rt.staging.clone(),
        };
        self.rt.pinning = Some(jobs::pin_in_repository(ctx, from, Some(note), history));
    }

    /// Read the history again when it changed on disk (checked every two
    /// seconds): the cards and History follow runs made elsewhere.
    fn follow_history(&mut self) {
        if self
            .rt
            .history_checked
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(2))
        {
            return;
        }
        self.rt.history_checked = Some(Instant::now());
        let Some(history) = &self.rt.history else {
            return;
        };
        let modified = std::fs::metadata(history.path())
            .and_then(|m| m.modified())
            .ok();
        if modified != self.rt.history_seen {
            self.reload_history();
            self.rt.overview.invalidate();
        }
    }

    pub fn reload_history(&mut self) {
        let Some(history) = &self.rt.history else {
            return;
        };
        self.rt.history_seen = std::fs::metadata(history.path())
            .and_then(|m| m.modified())
            .ok();
        let loaded = history.recover().and_then(|_| history.load());
        match loaded {
            Ok(runs) => {
                self.rt.runs = runs;
                self.rt.history_error = None;
            }
            Err(e) => self.rt.history_error = Some(e.to_string()),
        }
    }

    /// Apply everything the restore job reported since the last frame.
    fn drain_restore(&mut self) {
        let Some(draft) = &mut self.rt.restore else {
            return;
        };
        let Some(job) = &draft.job else { return };
        let end = job.drain(|msg| {
            draft.meter.update(&msg);
            if let Msg::Run(run) = msg {
                upsert_run(&mut self.rt.runs, *run);
            }
        });
        if let Some(end) = end {
            draft.result = Some(end.unwrap_or_else(|s| Err(s.into())));
            draft.job = None;
            self.reload_history();
        }
    }

    fn drain_messages(&mut self) {
        self.drain_restore();
        let restored = self.rt.restore_page.as_mut().and_then(|p| p.drain());
        if restored.is_some() {
            // The card, History and the repository's list show it at once.
            self.reload_history();
            self.rt.overview.invalidate();
            self.rt.overview.look_again();
        }
        self.rt.schedules.drain();
        let protected = match self.rt.protecting.as_ref().and_then(Job::end) {
            Some(Ok(result)) => Some(
                result
                    .map(|reply| match *reply {
                        persnap::protocol::Reply::DatabaseAdded { database }
                        | persnap::protocol::Reply::Protected { database, .. } => database.name,
                        _ => String::new(),
                    })
                    .map_err(|f| f.message),
            ),
            Some(Err(jobs::Stopped)) => Some(Err(
                "the registration stopped unexpectedly; try again".into(),
            )),
            None => None,
        };
        if let Some(result) = protected {
            self.rt.protecting = None;
            if result.is_ok() {
                self.rt.overview.invalidate();
                self.rt.overview.look_again();
            }
            self.rt.protected = Some(result);
            // Look again (a probe under way reads the registry as it was):
            // the plan now says what a protected backup needs.
            self.rt.probing = None;
            self.rt.probe_key.clear();
        }
        // Its folders are looked at however it ended: a probe that
        // panicked is said, not started again at every frame.
        if let Some((key, job)) = &self.rt.probing
            && let Some(end) = job.end()
        {
            self.rt.probe = Some(end.unwrap_or_else(|s| Err(s.into())));
            self.rt.probe_key = key.clone();
            self.rt.probing = None;
        }
        let Some(activity) = &mut self.rt.activity else {
            return;
        };
        let runs = &mut self.rt.runs;
        let finished = activity.job.drain(|msg| match msg {
            Msg::Phase(phase) => {
                activity.phase = phase;
                activity.done = 0;
                activity.total = 0;
                activity.phase_started = Instant::now();
            }
            Msg::Bytes { phase, done, total } => {
                activity.phase = phase;
                activity.done = done;
                activity.total = total;
            }
            Msg::Log(level, text) => activity.log.push((level, text)),
            Msg::Run(run) => upsert_run(runs, *run),
            Msg::Done(_) => {}
        });
        let finished = finished.map(|end| end.unwrap_or_else(|s| Outcome::Failed(s.into())));
        if let Some(Outcome::Stored(_)) = &finished {
            // The Repositories screen lists it without a Connect.
            self.rt.repositories.stale = true;
        }
        if let Some(outcome) = finished {
            // "Back up before upgrading": the backup is kept, with its note.
            if let Some(note) = self.rt.pin_next.take() {
                self.rt.pinned = match &outcome {
                    Outcome::Backup { dir, .. } => Some(
                        persnap::pin::pin(dir, &note)
                            .map(|_| format!("This backup is kept: {}", dir.display()))
                            .map_err(|e| e.to_string()),
                    ),
                    // In a repository: pinned there, on a thread.
                    Outcome::Stored(done) => {
                        self.rt.pin_pending = Some((
                            done.stored.location.clone(),
                            done.stored.snapshot.clone(),
                            note,
                        ));
                        None
                    }
                    _ => None,
                };
                if let Some(page) = &mut self.rt.database {
                    page.forget_pins();
                }
            }
            self.rt.outcome = Some(outcome);
            self.rt.activity = None;
            self.reload_history();
            self.rt.overview.invalidate();
        }
    }

    /// A restore running: it must not be cut short.
    fn restoring(&self) -> bool {
        self.rt.restore.as_ref().is_some_and(|r| r.job.is_some())
            || self
                .rt
                .restore_page
                .as_ref()
                .is_some_and(restore_view::RestorePage::running)
    }

    /// Closing the window while a backup or restore runs asks first (a
    /// backup is cancelled cleanly, its snapshot removed, before the
    /// window goes; a restore is waited for).
    fn guard_close(&mut self, ctx: &egui::Context) {
        let busy = self.rt.activity.is_some() || self.restoring();
        if ctx.input(|i| i.viewport().close_requested()) && busy {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.rt.close_asked = true;
        }
        if self.rt.close_confirmed && !busy {
            self.rt.close_asked = false;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if !self.rt.close_asked {
            return;
        }
        if !busy {
            self.rt.close_asked = false;
            return;
        }
        let restoring = self.restoring();
        egui::Modal::new(egui::Id::unique("close-while-busy")).show(ctx, |ui| {
            ui.set_max_width(420.0);
            if restoring {
                ui.heading("A restore is running");
                ui.label("Stopping it half-way would leave the database folder half-restored. persnap closes when it has finished.");
            } else {
                ui.heading("A backup is running");
                ui.label("If you close persnap now, the backup is cancelled: the snapshot is removed and nothing half-made is kept.");
            }
            if self.rt.close_confirmed {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(if restoring {
                        "Closing when the restore has finished…"
                    } else {
                        "Cancelling the backup, then closing…"
                    });
                });
                return;
            }
            ui.horizontal(|ui| {
                if ui.button("Keep it running").clicked() {
                    self.rt.close_asked = false;
                }
                let close = if restoring {
                    "Close when it has finished"
                } else {
                    "Cancel the backup and close"
                };
                if ui.button(close).clicked() {
                    self.rt.close_confirmed = true;
                    if let Some(a) = &mut self.rt.activity {
                        a.job.cancel.cancel();
                        a.cancelling = true;
                    }
                }
            });
        });
    }

    fn apply_theme(&mut self, ctx: &egui::Context) {
        if self.rt.last_applied_theme == Some(self.settings.theme) {
            return;
        }
        ctx.set_theme(match self.settings.theme {
            Theme::System => egui::ThemePreference::System,
            Theme::Light => egui::ThemePreference::Light,
            Theme::Dark => egui::ThemePreference::Dark,
        });
        self.rt.last_applied_theme = Some(self.settings.theme);
    }

    fn tabs(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("persnap");
            ui.separator();
            for (screen, label) in [
                (Screen::Overview, "Overview"),
                (Screen::Backup, "Back up"),
                (Screen::History, "History"),
                (Screen::Repositories, "Repositories"),
                (Screen::Schedules, "Schedules"),
                (Screen::Notifications, "Notifications"),
                (Screen::Settings, "Settings"),
            ] {
                let current = self.rt.screen == screen
                    || (matches!(
                        self.rt.screen,
                        Screen::Protect | Screen::Database | Screen::Restore
                    ) && screen == Screen::Overview);
                if ui.selectable_label(current, label).clicked() {
                    if matches!(screen, Screen::Schedules | Screen::Notifications) {
                        self.rt.schedules.reload();
                    }
                    if screen == Screen::Notifications {
                        self.rt.notifications.reload();
                    }
                    self.rt.screen = screen;
                }
            }
        });
    }
}

fn upsert_run(runs: &mut Vec<Run>, run: Run) {
    match runs.iter_mut().find(|r| r.id == run.id) {
        Some(slot) => *slot = run,
        None => runs.push(run),
    }
}

/// The window's icon (the same artwork as the installed icons).
fn window_icon() -> egui::IconData {
    eframe::icon_data::from_png_bytes(include_bytes!("../../assets/icons/persnap-128.png"))
        .expect("the bundled icon is a valid PNG")
}

/// UAC prompts for the helper belong to this window (they appear in front
/// of it, not behind).
#[cfg(windows)]
fn own_uac_prompts(cc: &eframe::CreationContext<'_>) {
    use raw_window_handle::{HasWindowHandle, RawWindowHandle};
    if let Ok(handle) = cc.window_handle()
        && let RawWindowHandle::Win32(win32) = handle.as_raw()
    {
        crate::launch::windows::set_owner_window(win32.hwnd.get());
    }
}

impl eframe::App for PersnapApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.apply_theme(&ctx);
        self.drain_messages();
        self.pin_in_repository(&ctx);
        self.follow_history();
        // Looked at again every two seconds, even with nothing touched.
        ctx.request_repaint_after(std::time::Duration::from_secs(2));
        self.guard_close(&ctx);
        egui::Panel::top("tabs").show(ui, |ui| self.tabs(ui));
        egui::CentralPanel::default_margins().show(ui, |ui| match self.rt.screen {
            Screen::Overview => overview_view::show(self, ui),
            Screen::Protect => protect_view::show(self, ui),
            Screen::Database => database_view::show(self, ui),
            Screen::Restore => restore_view::show(self, ui),
            Screen::Backup => backup_view::show(self, ui),
            Screen::History => history_view::show(self, ui),
            Screen::Repositories => repository_view::show(self, ui),
            Screen::Schedules => schedule_view::show(self, ui),
            Screen::Notifications => notifications_view::show(self, ui),
            Screen::Settings => settings_view::show(self, ui),
        });
        if self.rt.activity.is_some() || self.rt.probing.is_some() {
            // Keep speed and ETA fresh even between progress messages.
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.settings.to_save());
    }
}
