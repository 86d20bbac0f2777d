//! "Restore a database": get a database back onto this computer — after a
//! failure, or onto a new machine when the old one is gone — from its
//! backups in a repository (a folder, SFTP, S3, REST; the offsite one when
//! the first is lost) or in a backup folder.
//!
//! The page goes in the order an administrator thinks: where the backups
//! are, which database and which backup (the newest unless another is
//! chosen, each with its date, size and how it was verified), where it
//! goes (its old folder by default; any new or empty folder will do), and
//! then — before the button — what will happen and what it needs, in
//! words, or why it cannot happen (a folder others can change, a database
//! in use, no room). One administrator prompt then restores it and, when
//! asked, protects it with the same repository, so that the next backups
//! go on where the old machine's stopped.

use persnap::units::LocalTime;
use std::path::PathBuf;

use eframe::egui::{self, RichText, Ui};
use persnap::manifest::Manifest;
use persnap::protocol::{BackupOptions, Reply, Request};
use persnap::repository::{Address, Listed, Password};
use persnap::restore::RestorePlan;

use super::jobs::{self, InRepository, Job, Restored};
use super::widgets::{AMBER, DEFAULT_HOUR, DEFAULT_KEEP_DAYS, GREEN, RED};
use super::widgets::{Meter, folder_field};
use super::{PersnapApp, Screen};
use crate::launch::RemoteFailure;

/// The page while it is open.
#[derive(Default)]
pub struct RestorePage {
    /// The backups are in a backup folder, not a repository.
    pub from_folder: bool,
    /// That backup folder, as typed or chosen.
    pub folder: String,
    /// The machine and database chosen among the repository's backups.
    pub chosen: Option<(String, String)>,
    /// The backup chosen (its id); `None`: the newest.
    pub backup: Option<String>,
    /// Where it goes, as typed (its old folder until changed).
    pub target: String,
    /// The target was typed or chosen (not filled in from the manifest).
    target_touched: bool,
    /// Protect it once it is back, with the same repository.
    pub protect: bool,
    /// The chosen backup's manifest: for which backup, and what it says.
    manifest: Option<(String, ManifestLookup)>,
    /// The plan for the target as it stands, and what it was made for.
    pub plan: Option<(String, Result<RestorePlan, String>)>,
    pub job: Option<Job<Result<Box<Restored>, RemoteFailure>>>,
    pub meter: Meter,
    pub result: Option<Result<Box<Restored>, RemoteFailure>>,
}

enum ManifestLookup {
    Reading(Job<persnap::Result<Manifest>>),
    Read(Result<Box<Manifest>, String>),
}

impl RestorePage {
    /// A new page; from a repository unless there is none to use.
    pub fn new() -> RestorePage {
        RestorePage {
            protect: true,
            ..RestorePage::default()
        }
    }

    /// The page for a database of a connected repository (its row on the
    /// Repositories screen).
    pub fn for_database(host: &str, database: &str) -> RestorePage {
        RestorePage {
            chosen: Some((host.to_owned(), database.to_owned())),
            ..RestorePage::new()
        }
    }

    pub fn running(&self) -> bool {
        self.job.is_some()
    }

    /// Take in what the restore job reported.
    pub fn drain(&mut self) -> Option<bool> {
        let job = self.job.as_ref()?;
        let end = job.drain(|msg| self.meter.update(&msg))?;
        let result = end.unwrap_or_else(|s| Err(s.into()));
        let finished = result.is_ok();
        self.result = Some(result);
        self.job = None;
        Some(finished)
    }
}

/// Open the page.
pub fn open(app: &mut PersnapApp, page: RestorePage) {
    app.rt.restore_page = Some(page);
    app.rt.screen = Screen::Restore;
}

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    if app.rt.restore_page.is_none() {
        app.rt.restore_page = Some(RestorePage::new());
    }
    app.rt.repositories.drain();
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            ui.heading("Restore a database");
            ui.label(
                "Get a database back onto this computer from its backups: after a failure, \
                 or onto a new machine when the old one is gone.",
            );
            ui.add_space(8.0);
            let busy = {
                let page = app.rt.restore_page.as_ref().expect("open");
                page.running() || page.result.is_some()
            };
            // Once it runs, its progress and then its result are the page.
            if busy {
                running_or_done(app, ui);
                return;
            }
            source(app, ui);
            ui.add_space(6.0);
            let Some(chosen) = chosen_backup(app, ui) else {
                return;
            };
            ui.add_space(6.0);
            destination(app, ui, &chosen);
            ui.add_space(6.0);
            plan(app, ui, &chosen);
        });
}

/// Where the backups are: a repository (address, password, Connect) or a
/// backup folder.
fn source(app: &mut PersnapApp, ui: &mut Ui) {
    let page = app.rt.restore_page.as_mut().expect("open");
    ui.label(RichText::new("Where are its backups?").strong());
    ui.horizontal(|ui| {
        ui.radio_value(&mut page.from_folder, false, "in a repository");
        ui.radio_value(&mut page.from_folder, true, "in a backup folder");
    });
    if page.from_folder {
        let page = app.rt.restore_page.as_mut().expect("open");
        egui::Grid::new("restore-folder")
            .num_columns(2)
            .spacing([12.0, 8.0])
            .show(ui, |ui| {
                folder_field(
                    ui,
                    "Backup folder",
                    &mut page.folder,
                    "a folder holding manifest.json",
                    "Choose…",
                    None,
                    &mut app.rt.folders.no_dialog,
                );
                ui.end_row();
            });
        return;
    }
    let mut connect = false;
    egui::Grid::new("restore-repository")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            connect = super::repository_view::fields(app, ui);
        });
    super::repository_view::connect_row(app, ui, connect);
    let st = &app.rt.repositories;
    if let Some(Err(e)) = &st.result {
        super::widgets::failure(ui, e);
    }
}

/// The backup to restore, with what is known of it.
#[derive(Clone)]
struct Chosen {
    /// A repository backup (its id there) or a backup folder.
    from: From,
    store_name: String,
    bytes: u64,
    /// The database's name (in the repository; else its folder's).
    database: String,
    manifest: Option<Box<Manifest>>,
}

#[derive(Clone)]
enum From {
    Repository { location: String, id: String },
    Folder(PathBuf),
}

/// Which database and backup; the chosen backup once known.
fn chosen_backup(app: &mut PersnapApp, ui: &mut Ui) -> Option<Chosen> {
    if app.rt.restore_page.as_ref().expect("open").from_folder {
        return folder_backup(app, ui);
    }
    let Some(Ok(connected)) = &app.rt.repositories.result else {
        return None;
    };
    let location = connected.location.clone();
    let backups = connected.backups.clone();
    if backups.is_empty() {
        ui.label("This repository holds no persnap backup.");
        return None;
    }
    let page = app.rt.restore_page.as_mut().expect("open");
    // Each database of each machine, newest backup first.
    let mut databases: Vec<(String, String)> = backups
        .iter()
        .map(|l| (l.host.clone(), l.database.clone()))
        .collect();
    databases.sort();
    databases.dedup();
    if page.chosen.as_ref().is_none_or(|c| !databases.contains(c)) {
        page.chosen = Some(databases[0].clone());
        page.backup = None;
    }
    ui.label(RichText::new("Which database?").strong());
    let (host, database) = page.chosen.clone().expect("chosen above");
    let words = |(h, d): &(String, String)| format!("{d} from the machine {h}");
    let label = ui.label("Database");
    egui::ComboBox::from_id_salt("restore-database")
        .selected_text(words(&(host.clone(), database.clone())))
        .width(420.0)
        .show_ui(ui, |ui| {
            for choice in &databases {
                if ui
                    .selectable_label(page.chosen.as_ref() == Some(choice), words(choice))
                    .clicked()
                {
                    page.chosen = Some(choice.clone());
                    page.backup = None;
                }
            }
        })
        .response
        .labelled_by(label.id);
    let mut of_db: Vec<&Listed> = backups
        .iter()
        .filter(|l| l.host == host && l.database == database)
        .collect();
    of_db.sort_by_key(|l| std::cmp::Reverse(l.time));
    ui.add_space(4.0);
    ui.label(RichText::new("Which backup?").strong());
    let newest = of_db[0].id.clone();
    let selected = page.backup.clone().unwrap_or(newest.clone());
    egui::ScrollArea::vertical()
        .id_salt("restore-backups")
        .max_height(160.0)
        .show(ui, |ui| {
            for (i, l) in of_db.iter().enumerate() {
                let mut text = format!(
                    "{} · {}",
                    l.time.local_minute(),
                    persnap::units::bytes(l.bytes)
                );
                if i == 0 {
                    text.push_str(" · the newest");
                }
                if l.pinned {
                    text.push_str(&format!(
                        " · kept: {}",
                        l.note.as_deref().unwrap_or("pinned")
                    ));
                }
                if ui.radio(selected == l.id, text).clicked() {
                    page.backup = (l.id != newest).then(|| l.id.clone());
                }
            }
        });
    let listed = of_db
        .iter()
        .find(|l| l.id == selected)
        .map(|l| (*l).clone())
        .expect("the selection is one of them");
    ui.label(
        "Each was verified when it was made: read back from the repository, every file's SHA-256 \
         checked and SQLite's integrity check passed.",
    );
    let from = InRepository {
        location: Address::parse(&location).ok()?,
        snapshot: listed.id.clone(),
        password: super::repository_view::typed_password(app, &location),
        staging: app.rt.staging.clone(),
    };
    let manifest = manifest(app, ui, &listed.id, from);
    Some(Chosen {
        from: From::Repository {
            location,
            id: listed.id.clone(),
        },
        store_name: listed.store_name.clone(),
        bytes: listed.bytes,
        database: listed.database.clone(),
        manifest,
    })
}

/// The backup folder's manifest, read here (it is a few kilobytes).
fn folder_backup(app: &mut PersnapApp, ui: &mut Ui) -> Option<Chosen> {
    let page = app.rt.restore_page.as_mut().expect("open");
    let folder = page.folder.trim().to_owned();
    if folder.is_empty() {
        return None;
    }
    let fresh = !matches!(&page.manifest, Some((key, _)) if *key == folder);
    if fresh {
        let read = persnap::verify::read_listed(std::path::Path::new(&folder))
            .map(Box::new)
            .map_err(|e| e.to_string());
        page.manifest = Some((folder.clone(), ManifestLookup::Read(read)));
    }
    let Some((_, ManifestLookup::Read(read))) = &page.manifest else {
        return None;
    };
    match read {
        Err(e) => {
            ui.colored_label(RED, e);
            None
        }
        Ok(m) => {
            about(ui, m);
            Some(Chosen {
                from: From::Folder(PathBuf::from(&folder)),
                store_name: m.store_name.clone(),
                bytes: m.total_bytes,
                database: persnap::repository::deliver::database_name(&m.source_dir, &m.store_name),
                manifest: Some(m.clone()),
            })
        }
    }
}

/// The chosen repository backup's manifest, read out alone on a thread.
fn manifest(
    app: &mut PersnapApp,
    ui: &mut Ui,
    id: &str,
    from: InRepository,
) -> Option<Box<Manifest>> {
    let page = app.rt.restore_page.as_mut().expect("open");
    if !matches!(&page.manifest, Some((key, _)) if key == id) {
        page.manifest = Some((
            id.to_owned(),
            ManifestLookup::Reading(jobs::manifest_of(ui.ctx(), from)),
        ));
    }
    let (_, lookup) = page.manifest.as_mut().expect("set above");
    if let ManifestLookup::Reading(job) = lookup {
        match job.end() {
            Some(Ok(read)) => {
                *lookup = ManifestLookup::Read(read.map(Box::new).map_err(|e| e.to_string()))
            }
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Reading what the backup holds…");
                });
                return None;
            }
            Some(Err(jobs::Stopped)) => {
                *lookup = ManifestLookup::Read(Err("reading the backup's manifest stopped".into()))
            }
        }
    }
    match lookup {
        ManifestLookup::Read(Ok(m)) => {
            about(ui, m);
            Some(m.clone())
        }
        ManifestLookup::Read(Err(e)) => {
            ui.colored_label(
                AMBER,
                format!("What the backup holds could not be read yet: {e}"),
            );
            None
        }
        ManifestLookup::Reading(_) => None,
    }
}

/// Where and when the backup was taken, in words.
fn about(ui: &mut Ui, m: &Manifest) {
    ui.label(format!(
        "Taken on {} at {} from {} ({} file{}, {}).",
        if m.host.is_empty() {
            "an unknown machine"
        } else {
            &m.host
        },
        m.finished.local_minute(),
        m.source_dir.join(&m.store_name).display(),
        m.files.len(),
        if m.files.len() == 1 { "" } else { "s" },
        persnap::units::bytes(m.total_bytes),
    ));
}

/// Where it goes: its old folder until another is typed or chosen.
fn destination(app: &mut PersnapApp, ui: &mut Ui, chosen: &Chosen) {
    let page = app.rt.restore_page.as_mut().expect("open");
    if !page.target_touched
        && let Some(m) = &chosen.manifest
    {
        page.target = m.source_dir.display().to_string();
    }
    ui.label(RichText::new("Where does it go?").strong());
    ui.label("The correlator's database folder (its -PstoreLocation): the folder it was in, or any new or empty folder.");
    let before = page.target.clone();
    egui::Grid::new("restore-target")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            folder_field(
                ui,
                "Restore into",
                &mut page.target,
                "/var/lib/apama/store",
                "Choose…",
                None,
                &mut app.rt.folders.no_dialog,
            );
            ui.end_row();
        });
    if page.target != before {
        page.target_touched = true;
    }
}

/// What will happen, or why it cannot, before the button; then the
/// button, which says what it asks for.
fn plan(app: &mut PersnapApp, ui: &mut Ui, chosen: &Chosen) {
    let registry = app.rt.registry.clone();
    let page = app.rt.restore_page.as_mut().expect("open");
    let target = page.target.trim().to_owned();
    if target.is_empty() {
        ui.colored_label(AMBER, "Type or choose the folder it goes into.");
        return;
    }
    let key = format!("{target}\n{}\n{}", chosen.store_name, chosen.bytes);
    if !matches!(&page.plan, Some((k, _)) if *k == key) {
        let planned = persnap::restore::plan(
            std::path::Path::new(&target),
            &chosen.store_name,
            chosen.bytes,
            &registry,
        )
        .map_err(|e| e.to_string());
        page.plan = Some((key, planned));
    }
    let Some((_, planned)) = &page.plan else {
        return;
    };
    ui.label(RichText::new("What will happen").strong());
    let plan = match planned {
        Ok(plan) => plan.clone(),
        Err(e) => {
            ui.colored_label(RED, e);
            return;
        }
    };
    for line in plan.words() {
        ui.label(format!("• {line}"));
    }
    ui.colored_label(
        AMBER,
        "Stop the correlator first: persnap refuses while any program has the database open.",
    );
    ui.label(persnap::restore::VERSION_WARNING);
    let protected_already = !plan.protected_as.is_empty();
    let in_repository = matches!(chosen.from, From::Repository { .. });
    if in_repository && !protected_already {
        ui.add_space(4.0);
        ui.checkbox(
            &mut page.protect,
            format!(
                "Then protect it: back it up into this repository every day at {DEFAULT_HOUR:02}:00 and keep each backup {DEFAULT_KEEP_DAYS} days"
            ),
        );
        if page.protect {
            ui.label(format!(
                "Its backups go on where the old machine's stopped, under this machine's name ({}). Change how later with Change… on its card.",
                persnap::manifest::host_name()
            ));
            if no_snapshots_for(&plan.target) {
                ui.label("Its disk takes no snapshots, so its backups will use SQLite's online backup (the correlator's commits may pause while it copies).");
            }
        }
    }
    ui.add_space(6.0);
    let protect = page.protect && in_repository && !protected_already;
    let button = if protect {
        "Restore and protect"
    } else {
        "Restore"
    };
    ui.horizontal(|ui| {
        let go = ui.button(button).clicked();
        ui.label("Asks for the administrator's password once.");
        if go {
            start(app, ui.ctx(), chosen, &plan, protect);
        }
    });
}

/// The target's disk takes no snapshot that persnap can use.
fn no_snapshots_for(target: &std::path::Path) -> bool {
    let base = target
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(target)
        .to_owned();
    persnap::volume::probe(&base).is_ok_and(|v| v.snapshot.method().is_none() && !v.clones)
}

/// Start the restore (and the protection with it).
fn start(
    app: &mut PersnapApp,
    ctx: &egui::Context,
    chosen: &Chosen,
    plan: &RestorePlan,
    protect: bool,
) {
    let Some(history) = app.rt.history.clone() else {
        return;
    };
    let (backup, from) = match &chosen.from {
        From::Folder(dir) => (dir.clone(), None),
        From::Repository { location, id } => {
            let Ok(parsed) = Address::parse(location) else {
                return;
            };
            (
                PathBuf::from(id),
                Some(InRepository {
                    location: parsed,
                    snapshot: id.clone(),
                    password: super::repository_view::typed_password(app, location),
                    staging: app.rt.staging.clone(),
                }),
            )
        }
    };
    let then_protect = match (&from, protect) {
        (Some(from), true) => match protection(app, chosen, plan, from) {
            Ok(request) => Some(request),
            Err(e) => {
                app.rt.restore_page.as_mut().expect("open").result =
                    Some(Err(RemoteFailure::local(&e, None)));
                return;
            }
        },
        _ => None,
    };
    let job = jobs::restore(
        ctx,
        backup,
        from,
        plan.target.clone(),
        then_protect,
        history,
        app.rt.helper.clone(),
    );
    let page = app.rt.restore_page.as_mut().expect("open");
    page.meter = Meter::default();
    page.job = Some(job);
}

/// The protection asked for with the restore: into the same repository
/// (the password that opened it), every day at 02:00, kept 14 days.
fn protection(
    app: &PersnapApp,
    chosen: &Chosen,
    plan: &RestorePlan,
    from: &InRepository,
) -> persnap::Result<Request> {
    let password = match &from.password {
        Some(p) => p.clone(),
        None => persnap::repository::keyring::recall(&from.location)?
            .unwrap_or_else(|| Password::new(String::new())),
    };
    let history = app.rt.history.as_ref().expect("checked by the caller");
    let name = if persnap::registry::validate_name(&chosen.database).is_ok()
        && app
            .rt
            .registry
            .get(&chosen.database)
            .ok()
            .flatten()
            .is_none()
    {
        chosen.database.clone()
    } else {
        persnap::registry::suggest_name(&app.rt.registry, &plan.target, &chosen.store_name)
    };
    let method = if no_snapshots_for(&plan.target) {
        persnap::method::MethodChoice::Explicit(persnap::method::Method::SqliteOnline)
    } else {
        persnap::method::MethodChoice::Auto
    };
    Ok(Request::Protect {
        name,
        source: plan.target.clone(),
        store_name: chosen.store_name.clone(),
        location: jobs::staging(app.rt.staging.clone())?,
        method,
        options: BackupOptions::default(),
        when: Some(format!("{DEFAULT_HOUR:02}:00")),
        history_dir: Some(crate::launch::records_folder(history.dir())?),
        run_as: None,
        test_snapshot: true,
        replace: false,
        repository: Some(persnap::protocol::ScheduleRepositoryRequest {
            unlock: persnap::repository::Unlock::new(&from.location, &password),
            keep: persnap::repository::Keep {
                within_days: Some(DEFAULT_KEEP_DAYS),
                ..Default::default()
            },
            staged: true,
        }),
        offsite: None,
    })
}

/// The restore running (with its progress and Cancel), or how it ended.
fn running_or_done(app: &mut PersnapApp, ui: &mut Ui) {
    let page = app.rt.restore_page.as_mut().expect("open");
    if page.job.is_some() {
        ui.add_space(8.0);
        if page
            .meter
            .show(ui, "Restoring", super::widgets::restore_phase_words)
            && let Some(job) = &page.job
        {
            job.cancel.cancel();
        }
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(250));
        return;
    }
    let Some(result) = &page.result else {
        return;
    };
    ui.add_space(8.0);
    let mut open_database = None;
    let mut again = false;
    ui.group(|ui| match result {
        Ok(restored) => {
            let report = &restored.report;
            let checked = if report.verification.integrity == "ok" {
                "checked, and intact".to_owned()
            } else {
                format!("checked: {}", report.verification.integrity)
            };
            ui.colored_label(
                GREEN,
                format!(
                    "The database is back: {} ({checked}).",
                    report.restored.display()
                ),
            );
            ui.label(format!(
                "It is the backup taken on {} at {}.",
                if report.backup_host.is_empty() {
                    "an unknown machine"
                } else {
                    &report.backup_host
                },
                report
                    .backup_taken.local_minute()
            ));
            if let Some(dir) = &report.safety_dir {
                ui.label(format!(
                    "The files that were there before are kept in {}.",
                    dir.display()
                ));
            }
            match &restored.protected {
                None => {}
                Some(Ok(reply)) => {
                    if let Reply::Protected { database, .. } = &**reply {
                        ui.colored_label(
                            GREEN,
                            format!(
                                "It is protected as {}: backed up into the repository every day at {DEFAULT_HOUR:02}:00.",
                                database.name
                            ),
                        );
                        open_database = Some(database.name.clone());
                    }
                }
                Some(Err(why)) => {
                    ui.colored_label(
                        AMBER,
                        format!("The database is back, but it is not protected yet: {why}"),
                    );
                    ui.label("Protect it from the Overview, where it is listed among the databases found.");
                }
            }
            ui.label("Start the correlator with it when you are ready.");
        }
        Err(failure) if failure.kind == persnap::ErrorKind::Cancelled => {
            ui.label(persnap::restore::CANCELLED);
            again = true;
        }
        Err(failure) => {
            ui.colored_label(RED, format!("The restore did not happen: {failure}"));
            again = true;
        }
    });
    ui.horizontal(|ui| {
        if let Some(name) = &open_database
            && ui.button("Open its page").clicked()
        {
            app.open_database(name);
            return;
        }
        if again && ui.button("Try again").clicked() {
            let page = app.rt.restore_page.as_mut().expect("open");
            page.result = None;
            page.plan = None;
        }
        if ui.button("Back to the overview").clicked() {
            app.rt.restore_page = None;
            app.rt.screen = Screen::Overview;
        }
    });
}
