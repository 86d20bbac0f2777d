//! The backup screen: choose folders, see what was found and what will
//! happen, back up with live progress, see the result.

use persnap::units::LocalTime;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui::{self, RichText, Ui};
use persnap::backup::BackupRequest;
use persnap::method::{Method, MethodChoice};
use persnap::progress::{Level, Phase};
use persnap::units;
use persnap::volume::SnapshotSupport;

use super::widgets::{AMBER, GREEN, RED, open_folder};
use super::{Activity, Outcome, PersnapApp, Settings, jobs};
use persnap::schedule::{self, Status};

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            failed_schedule_banner(app, ui);
            missed_banner(app, ui);
            inputs(app, ui);
            keep_probe_fresh(app, ui.ctx());
            ui.separator();
            found(app, ui);
            ui.separator();
            if let Some(request) = plan(app, ui) {
                app.rt.protected = None;
                app.rt.protecting = Some(jobs::protect(
                    ui.ctx(),
                    request,
                    app.rt.helper.clone(),
                    false,
                ));
            }
            actions(app, ui);
            activity(app, ui);
            outcome(app, ui);
        });
    confirm_dialog(app, ui);
}

fn inputs(app: &mut PersnapApp, ui: &mut Ui) {
    let busy = app.rt.activity.is_some();
    ui.add_enabled_ui(!busy, |ui| {
        egui::Grid::new("inputs").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
            let s = &mut app.settings;
            let no_dialog = &mut app.rt.folders.no_dialog;
            super::widgets::folder_field(ui, "Database folder", &mut s.source, "the correlator's -PstoreLocation folder", "Choose database folder…", Some(&s.recent_sources), no_dialog);
            ui.end_row();
            let name = ui.label("Store name");
            ui.add(egui::TextEdit::singleline(&mut s.store_name).desired_width(200.0).hint_text("persistence.db"))
                .labelled_by(name.id)
                .on_hover_text("The database file name: persistence.db unless the correlator runs with -PstoreName=");
            ui.end_row();
            ui.label("Backups go into");
            ui.horizontal(|ui| {
                ui.radio_value(&mut s.into_repository, false, "a folder");
                ui.radio_value(&mut s.into_repository, true, "a repository (deduplicated, encrypted; local or remote)");
            });
            ui.end_row();
            if s.into_repository {
                super::repository_view::fields(app, ui);
                connection_test_row(app, ui);
            } else {
                super::widgets::folder_field(ui, "Backup location", &mut s.dest, "a folder, preferably on another disk", "Choose backup location…", Some(&s.recent_dests), &mut app.rt.folders.no_dialog);
                ui.end_row();
            }
            method_row(ui, &mut app.settings.method);
            pace_row(ui, &mut app.settings.pace);
        });
    });
}

/// "Test connection" for the repository chosen, and how it went.
pub fn connection_test_row(app: &mut PersnapApp, ui: &mut Ui) {
    let st = &mut app.rt.repositories;
    st.drain();
    ui.label("");
    ui.horizontal(|ui| {
        let ready = !app.settings.repository.trim().is_empty()
            && !st.password.is_empty()
            && !st.is_connecting();
        if ui
            .add_enabled(ready, egui::Button::new("Test connection"))
            .on_hover_text("Open the repository with this password; nothing is written")
            .clicked()
        {
            st.connect(
                app.settings.repository.trim(),
                app.settings.remember_password,
                ui.ctx(),
            );
        }
        if st.is_connecting() {
            ui.spinner();
            ui.label("Connecting…");
        }
    });
    ui.end_row();
    if st.is_connecting() {
        return;
    }
    match &st.result {
        None => {}
        Some(Ok(connected)) => {
            ui.label("");
            ui.vertical(|ui| {
                let n = connected.backups.len();
                ui.colored_label(
                    GREEN,
                    format!(
                        "Connected to {}: it holds {n} persnap backup{}.",
                        connected.location,
                        if n == 1 { "" } else { "s" }
                    ),
                );
                if let Some(why) = &connected.not_kept {
                    ui.colored_label(AMBER, why);
                }
            });
            ui.end_row();
        }
        Some(Err(e)) => {
            ui.label("");
            ui.vertical(|ui| super::widgets::failure(ui, e));
            ui.end_row();
        }
    }
}

pub fn method_label(choice: MethodChoice) -> &'static str {
    match choice {
        MethodChoice::Auto => "Automatic (the snapshot that fits)",
        MethodChoice::Explicit(Method::Btrfs) => "btrfs snapshot",
        MethodChoice::Explicit(Method::Lvm) => "LVM snapshot",
        MethodChoice::Explicit(Method::Vss) => "Volume Shadow Copy (Windows)",
        MethodChoice::Explicit(Method::Reflink) => "Copy-on-write clone (XFS, btrfs)",
        MethodChoice::Explicit(Method::SqliteOnline) => "SQLite online backup (no snapshot)",
    }
}

pub fn method_row(ui: &mut Ui, method: &mut MethodChoice) {
    let name = ui.label("Method");
    egui::ComboBox::from_id_salt("method")
        .selected_text(method_label(*method))
        .show_ui(ui, |ui| {
            for choice in [MethodChoice::Auto]
                .into_iter()
                .chain(Method::ALL.map(MethodChoice::Explicit))
            {
                ui.selectable_value(method, choice, method_label(choice));
            }
        })
        .response
        .labelled_by(name.id);
    ui.end_row();
}

/// "Backup speed": gentle (the default) or as fast as possible, with what
/// the choice means for the correlator.
pub fn pace_row(ui: &mut Ui, pace: &mut persnap::pace::Pace) {
    use persnap::pace::Pace;
    ui.label("Backup speed");
    ui.vertical(|ui| {
        ui.horizontal(|ui| {
            for choice in Pace::OFFERED {
                let text = match choice {
                    Pace::Gentle => "Gentle (recommended)",
                    _ => "As fast as possible",
                };
                ui.radio_value(pace, choice, text);
            }
        });
        ui.label(egui::RichText::new(pace.explain()).weak());
    });
    ui.end_row();
}

fn probe_key(s: &Settings) -> String {
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
        s.source.trim(),
        s.dest.trim(),
        s.into_repository,
        s.store_name.trim(),
        s.method,
        s.keep_last,
        s.keep_days,
        s.pace
    )
}

/// The newest scheduled run, if it failed, said at the top of the screen
/// (a scheduled backup fails with nobody watching).
pub fn failed_schedule_banner(app: &PersnapApp, ui: &mut Ui) {
    let newest = app
        .rt
        .runs
        .iter()
        .filter(|r| r.scheduled.is_some())
        .max_by_key(|r| r.started);
    let Some(run) = newest else { return };
    let persnap::history::Outcome::Failed { step, message, .. } = &run.outcome else {
        return;
    };
    ui.colored_label(
        RED,
        format!(
            "The scheduled backup “{}” of {} failed on {} during {step}: {message} See History for details.",
            run.scheduled.as_deref().unwrap_or_default(),
            run.source.display(),
            run.started.local_minute(),
        ),
    );
    ui.separator();
}

/// The backup this screen describes: into its folder, or, for a
/// repository, into the staging folder the set is checked in first.
pub fn request_here(app: &PersnapApp) -> BackupRequest {
    let mut req = request(&app.settings);
    if app.settings.into_repository {
        req.dest = jobs::staging(app.rt.staging.clone()).unwrap_or_default();
        req.staged = Some(persnap::backup::Staged::default());
    }
    req
}

/// The request the current settings describe.
pub fn request(s: &Settings) -> BackupRequest {
    let mut req = BackupRequest::new(resolve(&s.source), resolve(&s.dest));
    req.store_name = s.store_name.trim().to_owned();
    req.method = s.method;
    req.online_timeout = Duration::from_secs(s.online_timeout_secs.max(1));
    req.snapshot.size = persnap::units::parse_size(&s.snapshot_size)
        .ok()
        .filter(|_| !s.snapshot_size.trim().is_empty());
    req.retention = s.retention();
    req.pace = s.pace;
    req
}

/// Canonical when possible (the helper insists on canonical paths).
fn resolve(text: &str) -> PathBuf {
    let path = PathBuf::from(text.trim());
    persnap::fsutil::canonicalize(&path).unwrap_or(path)
}

fn keep_probe_fresh(app: &mut PersnapApp, ctx: &egui::Context) {
    let key = probe_key(&app.settings);
    if key == app.rt.probe_key || app.rt.probing.is_some() {
        return;
    }
    if app.settings.source.trim().is_empty() {
        app.rt.probe = None;
        app.rt.probe_key = key;
        return;
    }
    let dest_given = app.settings.into_repository || !app.settings.dest.trim().is_empty();
    let job = jobs::probe(ctx, request_here(app), dest_given, app.rt.registry.clone());
    app.rt.probing = Some((key, job));
}

fn found(app: &PersnapApp, ui: &mut Ui) {
    ui.heading("What was found");
    let report = match &app.rt.probe {
        None if app.settings.source.trim().is_empty() => {
            ui.label("Choose the folder that holds the correlator's database (the folder given as -PstoreLocation).");
            return;
        }
        None => {
            ui.label("Looking…");
            return;
        }
        Some(Err(message)) => {
            ui.colored_label(RED, message);
            return;
        }
        Some(Ok(report)) => report,
    };
    let store = &report.store;
    egui::Grid::new("files")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            for file in &store.files {
                ui.label(&file.name);
                ui.label(units::bytes(file.size));
                ui.end_row();
            }
        });
    ui.label(format!(
        "Journal mode: {} · page size {} bytes · {} pages",
        store.journal_mode(),
        store.header.page_size,
        store.header.page_count
    ));
    let m = &report.volume.mount;
    ui.label(format!(
        "Volume: {} ({}), mounted at {}",
        m.device,
        m.fs_type,
        m.mount_point.display()
    ));
    match &report.volume.snapshot {
        SnapshotSupport::Available { method, detail } => {
            ui.colored_label(GREEN, format!("Snapshot method: {method} ({detail})"));
        }
        SnapshotSupport::Unavailable { reason } => {
            ui.colored_label(RED, format!("No snapshot is possible here: {reason}."));
        }
    }
    if let Some((free, needed)) = report.dest_space {
        let text = format!(
            "{}: {} free; this backup needs {}.",
            if app.settings.into_repository {
                "Staging folder (the backup is checked there before it goes into the repository)"
            } else {
                "Backup location"
            },
            units::bytes(free),
            units::bytes(needed)
        );
        ui.colored_label(
            if free < needed {
                RED
            } else {
                ui.visuals().text_color()
            },
            text,
        );
    }
    for warning in &report.warnings {
        ui.colored_label(AMBER, format!("Warning: {warning}"));
    }
}

/// The plan in words; returns the registration to start when "Protect
/// this database…" was clicked.
fn plan(app: &PersnapApp, ui: &mut Ui) -> Option<persnap::protocol::Request> {
    let Some(Ok(report)) = &app.rt.probe else {
        return None;
    };
    ui.heading("Plan");
    if let Some(why) = &report.blocked {
        ui.colored_label(RED, why);
        return None;
    }
    if report.steps.is_empty() {
        ui.label("Choose a backup location to see the plan.");
        return None;
    }
    let sized = !app.settings.snapshot_size.trim().is_empty();
    let who = match (&report.method, &report.protected_as) {
        (Some(Method::SqliteOnline), _) => "as you".to_owned(),
        _ if cfg!(windows) => "as administrator (Windows asks for permission)".to_owned(),
        (_, Some(_)) if sized => "as administrator (the snapshot size is set in Settings, and choosing it needs the administrator's password)".to_owned(),
        (_, Some(name)) => format!(
            "with your permission to back up “{name}”, a protected database (asked for at most once a session)"
        ),
        (_, None) => "as administrator (the administrator's password is asked each time, because this database is not protected yet)".to_owned(),
    };
    ui.label(format!("\"Back up now\" will, {who}:"));
    for (i, step) in report.steps.iter().enumerate() {
        ui.label(format!("  {}. {step}", i + 1));
    }
    if app.settings.into_repository {
        ui.label("and then, as you:");
        ui.label(format!(
            "  {}. store it in the repository {}: only what the repository does not hold yet is written, compressed and encrypted;",
            report.steps.len() + 1,
            repository_shown(&app.settings.repository)
        ));
        ui.label(format!(
            "  {}. read back from there what it wrote (every new piece, from the disk) and check that the list of all of its pieces is exactly the copy's; only then is it recorded as good, and the staged copy removed.",
            report.steps.len() + 2
        ));
    }
    protect_row(app, ui, report)
}

/// "Protect this database…": register it once (the administrator's
/// password), so its backups need only the backup permission — which an
/// administrator may also give to operators.
fn protect_row(
    app: &PersnapApp,
    ui: &mut Ui,
    report: &persnap::probe::ProbeReport,
) -> Option<persnap::protocol::Request> {
    if let Some(result) = &app.rt.protected {
        match result {
            Ok(name) => ui.colored_label(
                GREEN,
                format!("“{name}” is now a protected database: backing it up no longer needs the administrator's password."),
            ),
            Err(message) => ui.colored_label(RED, format!("The database was not protected: {message}")),
        };
    }
    // Windows has no separate backup permission yet: UAC approves an
    // administrator either way.
    if cfg!(windows)
        || report.protected_as.is_some()
        || !report.method.is_some_and(Method::is_snapshot)
    {
        return None;
    }
    ui.horizontal(|ui| {
        let busy = app.rt.protecting.is_some() || app.rt.activity.is_some();
        let clicked = ui
            .add_enabled(!busy, egui::Button::new("Protect this database…"))
            .on_hover_text(
                "Register it once with the administrator's password; then backing it up needs only the backup permission (which operators can be given)",
            )
            .clicked();
        if app.rt.protecting.is_some() {
            ui.label("Waiting for the administrator's permission…");
        } else {
            ui.label("once, with the administrator's password; after that, backing it up needs only your backup permission.");
        }
        clicked.then(|| persnap::protocol::Request::DatabaseAdd {
            name: persnap::registry::suggest_name(
                &app.rt.registry,
                &report.store.dir,
                &report.store.name,
            ),
            source: report.store.dir.clone(),
            store_name: report.store.name.clone(),
        })
    })
    .inner
}

/// A repository's location as shown (never with a password in it).
fn repository_shown(text: &str) -> String {
    persnap::repository::Address::parse(text.trim())
        .map(|l| l.display())
        .unwrap_or_else(|_| "(give its address above)".into())
}

fn ready(app: &PersnapApp) -> Option<&persnap::probe::ProbeReport> {
    if app.settings.into_repository
        && (persnap::repository::Address::parse(app.settings.repository.trim()).is_err()
            || app.rt.repositories.password.is_empty())
    {
        return None;
    }
    match &app.rt.probe {
        Some(Ok(r)) if r.blocked.is_none() && !r.steps.is_empty() && app.rt.probing.is_none() => {
            Some(r)
        }
        _ => None,
    }
}

fn actions(app: &mut PersnapApp, ui: &mut Ui) {
    ui.add_space(8.0);
    let idle = app.rt.activity.is_none();
    let report = ready(app).cloned();
    let snapshot_method = report
        .as_ref()
        .and_then(|r| r.method)
        .is_some_and(Method::is_snapshot);
    // A backup that cannot fit is not offered at all (it would only fail).
    let no_room = report
        .as_ref()
        .and_then(|r| r.dest_space)
        .filter(|(free, needed)| free < needed);
    ui.horizontal(|ui| {
        let enabled = idle && report.is_some() && no_room.is_none();
        let backup = ui
            .add_enabled(
                enabled,
                egui::Button::new(RichText::new("Back up now").strong()),
            )
            .on_hover_text("Ctrl+B");
        let shortcut = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::B);
        let by_key =
            enabled && app.rt.confirm.is_none() && ui.input_mut(|i| i.consume_shortcut(&shortcut));
        if backup.clicked() || by_key {
            match report
                .as_ref()
                .map(|r| r.warnings.clone())
                .unwrap_or_default()
            {
                warnings if warnings.is_empty() => start_backup(app, ui.ctx()),
                warnings => app.rt.confirm = Some(warnings),
            }
        }
        let test = ui.add_enabled(idle && snapshot_method, egui::Button::new("Test snapshot"));
        if test
            .on_hover_text("Create a snapshot and remove it again, copying nothing")
            .clicked()
        {
            start_test_snapshot(app, ui.ctx());
        }
    });
    if let Some((free, needed)) = no_room {
        ui.colored_label(
            RED,
            format!(
                "It does not fit: the backup needs {} there and {} is free. Free some space there, or choose another location.",
                units::bytes(needed),
                units::bytes(free)
            ),
        );
    }
}

fn confirm_dialog(app: &mut PersnapApp, ui: &mut Ui) {
    let Some(warnings) = app.rt.confirm.clone() else {
        return;
    };
    let modal = egui::Modal::new(egui::Id::unique("persnap-confirm-backup")).show(ui.ctx(), |ui| {
        ui.heading("Before you back up");
        for w in &warnings {
            ui.colored_label(AMBER, format!("Warning: {w}"));
        }
        ui.horizontal(|ui| {
            if ui.button("Back up anyway").clicked() {
                app.rt.confirm = None;
                start_backup(app, ui.ctx());
            }
            if ui.button("Don't back up").clicked() {
                app.rt.confirm = None;
            }
        });
    });
    if modal.should_close() {
        app.rt.confirm = None;
    }
}

fn new_activity(job: jobs::Job<super::Outcome>, test_only: bool) -> Activity {
    let now = Instant::now();
    Activity {
        job,
        test_only,
        phase: Phase::Prepare,
        done: 0,
        total: 0,
        started: now,
        phase_started: now,
        log: Vec::new(),
        cancelling: false,
    }
}

pub fn start_backup(app: &mut PersnapApp, ctx: &egui::Context) {
    let req = request_here(app);
    let s = &app.settings;
    let into = if s.into_repository {
        match persnap::repository::Address::parse(s.repository.trim()) {
            Ok(location) => Some(jobs::IntoRepository {
                location,
                password: Some(persnap::repository::Password::new(
                    app.rt.repositories.password.clone(),
                )),
                // The rules set in Settings, as for a folder.
                keep: persnap::repository::Keep::like_folder(&req.retention),
                remember: s.remember_password && !app.rt.repositories.from_keyring,
                staging: app.rt.staging.clone(),
                staged: true,
            }),
            Err(e) => {
                app.rt.outcome = Some(Outcome::Failed(crate::launch::RemoteFailure::local(
                    &e, None,
                )));
                return;
            }
        }
    } else {
        None
    };
    start_backup_into(app, ctx, req, into, None);
}

/// Start the backup `req` (the Back up screen's, or a protected database's
/// with its own method and retention), into a repository with `into`.
pub fn start_backup_into(
    app: &mut PersnapApp,
    ctx: &egui::Context,
    req: BackupRequest,
    into: Option<jobs::IntoRepository>,
    offsite: Option<jobs::IntoRepository>,
) {
    let Some(history) = app.rt.history.clone() else {
        app.rt.outcome = Some(Outcome::Failed(crate::launch::RemoteFailure {
            kind: persnap::ErrorKind::Busy,
            step: None,
            message: app.rt.history_error.clone().unwrap_or_default(),
        }));
        return;
    };
    let s = &mut app.settings;
    Settings::remember(&mut s.recent_sources, s.source.trim());
    if into.is_none() {
        Settings::remember(&mut s.recent_dests, s.dest.trim());
    }
    app.rt.outcome = None;
    app.rt.activity = Some(new_activity(
        jobs::backup(ctx, req, history, app.rt.helper.clone(), into, offsite),
        false,
    ));
}

fn start_test_snapshot(app: &mut PersnapApp, ctx: &egui::Context) {
    app.rt.outcome = None;
    app.rt.activity = Some(new_activity(
        jobs::test_snapshot(ctx, request(&app.settings), app.rt.helper.clone()),
        true,
    ));
}

pub fn activity(app: &mut PersnapApp, ui: &mut Ui) {
    let Some(a) = &mut app.rt.activity else {
        return;
    };
    ui.add_space(8.0);
    ui.group(|ui| {
        let what = if a.test_only {
            "Testing a snapshot"
        } else {
            "Backing up"
        };
        ui.heading(format!("{what}: {}", phase_words(a.phase)));
        let fraction = if a.total > 0 {
            a.done as f32 / a.total as f32
        } else {
            0.0
        };
        let elapsed = a.phase_started.elapsed().as_secs_f64().max(0.001);
        let speed = a.done as f64 / elapsed;
        let eta = if speed > 0.0 && a.total > a.done {
            Some(Duration::from_secs_f64((a.total - a.done) as f64 / speed))
        } else {
            None
        };
        let text = if a.total > 0 {
            format!("{} of {}", units::bytes(a.done), units::bytes(a.total))
        } else {
            format!("{} elapsed", units::duration(a.started.elapsed()))
        };
        ui.add(
            egui::ProgressBar::new(fraction)
                .text(text)
                .animate(a.total == 0),
        );
        if a.total > 0 {
            let eta = eta.map_or("–".into(), units::duration);
            ui.label(format!(
                "{}/s · about {eta} left in this step",
                units::bytes(speed as u64)
            ));
        }
        if a.cancelling {
            ui.label("Cancelling… removing the snapshot and the unfinished copy.");
        } else if ui.button("Cancel").clicked() {
            a.job.cancel.cancel();
            a.cancelling = true;
        }
        egui::CollapsingHeader::new("Details").show(ui, |ui| {
            for (level, line) in &a.log {
                match level {
                    Level::Info => ui.label(line),
                    Level::Warning => ui.colored_label(AMBER, line),
                };
            }
        });
    });
}

pub fn phase_words(phase: Phase) -> &'static str {
    match phase {
        Phase::Prepare => "checking the folders",
        Phase::Snapshot => "taking the snapshot",
        Phase::Copy => "copying the database files",
        Phase::Release => "removing the snapshot",
        Phase::Verify => "verifying the copy",
        Phase::Finish => "writing the manifest",
        Phase::Store => "storing it in the repository",
    }
}

pub fn outcome(app: &mut PersnapApp, ui: &mut Ui) {
    let Some(outcome) = &app.rt.outcome else {
        return;
    };
    ui.add_space(8.0);
    ui.group(|ui| match outcome {
        Outcome::Backup {
            dir,
            manifest,
            notes,
        } => {
            ui.heading(RichText::new("Backup verified").color(GREEN));
            egui::Grid::new("result").num_columns(2).show(ui, |ui| {
                let secs = (manifest.finished - manifest.started)
                    .num_milliseconds()
                    .max(0) as u64;
                let rows = [
                    ("Location", dir.display().to_string()),
                    (
                        "Size",
                        format!(
                            "{} in {} file{}",
                            units::bytes(manifest.total_bytes),
                            manifest.files.len(),
                            if manifest.files.len() == 1 { "" } else { "s" }
                        ),
                    ),
                    ("Verification", manifest.verification.words()),
                    ("Method", manifest.method.to_string()),
                    ("Duration", units::duration(Duration::from_millis(secs))),
                ];
                for (k, v) in rows {
                    ui.label(k);
                    ui.label(v);
                    ui.end_row();
                }
            });
            notes_lines(ui, notes);
            if ui.button("Open folder").clicked() {
                open_folder(dir);
            }
        }
        Outcome::Stored(done) => {
            let (stored, manifest) = (&done.stored, &done.manifest);
            ui.heading(RichText::new("Backup stored and verified").color(GREEN));
            egui::Grid::new("result").num_columns(2).show(ui, |ui| {
                let rows = [
                    ("Repository", stored.location.clone()),
                    ("Backup", stored.short_id().to_owned()),
                    (
                        "Size",
                        format!(
                            "{} in {} file{}; {} of it new to the repository ({} stored, compressed and encrypted)",
                            units::bytes(manifest.total_bytes),
                            manifest.files.len(),
                            if manifest.files.len() == 1 { "" } else { "s" },
                            units::bytes(stored.bytes_new),
                            units::bytes(stored.bytes_stored),
                        ),
                    ),
                    ("Verification", done.verification.clone()),
                    ("In the repository", stored.check.checked.clone()),
                    ("Method", manifest.method.to_string()),
                    (
                        "Duration",
                        units::duration(Duration::from_secs_f64(stored.seconds.max(0.0))),
                    ),
                ];
                for (k, v) in rows {
                    ui.label(k);
                    ui.add(egui::Label::new(v).wrap());
                    ui.end_row();
                }
            });
            if let Some(warning) = &stored.warning {
                ui.colored_label(AMBER, format!("Warning: {warning}"));
            }
            notes_lines(ui, &done.notes);
        }
        Outcome::Failed(f) if f.kind == persnap::ErrorKind::Cancelled => {
            ui.heading(RichText::new("Backup cancelled").color(AMBER));
            ui.label(&f.message);
        }
        Outcome::Failed(f) => {
            let title = match f.step {
                Some(step) => format!("The backup failed while {}", phase_words(step)),
                None => "The backup did not run".to_owned(),
            };
            ui.heading(RichText::new(title).color(RED));
            ui.label(&f.message);
        }
        Outcome::TestSnapshot(Ok(message)) => {
            ui.heading(RichText::new("Snapshot test passed").color(GREEN));
            ui.label(message);
        }
        Outcome::TestSnapshot(Err(message)) => {
            ui.heading(RichText::new("Snapshot test failed").color(RED));
            ui.label(message);
        }
    });
}

/// The notes after a backup; warnings (an offsite copy that failed, a
/// password not kept) in amber.
fn notes_lines(ui: &mut Ui, notes: &[(Level, String)]) {
    for (level, note) in notes {
        match level {
            Level::Warning => ui.colored_label(AMBER, note),
            Level::Info => ui.label(note),
        };
    }
}

/// Start a backup of the protected database `db` to `location`, shown on
/// its card, with its own method and retention (not the Back up screen's).
pub fn back_up_now(
    app: &mut PersnapApp,
    ctx: &egui::Context,
    db: &persnap::registry::Database,
    location: &Path,
) {
    let s = &mut app.settings;
    s.source = db.folder.display().to_string();
    s.store_name = db.store_name.clone();
    let mut req = request(&app.settings);
    req.dest = location.to_owned();
    req.method = db.method;
    req.retention = db.retention;
    app.rt.overview.backing_up = Some(db.name.clone());
    // Into its repository: staged first, with the password kept in the
    // keyring (a scheduled run has its own, in root's file).
    let into = match db.repository.as_ref().map(|r| into_repository(app, r)) {
        None => None,
        Some(Ok(into)) => Some(into),
        Some(Err(e)) => {
            app.rt.outcome = Some(super::Outcome::Failed(crate::launch::RemoteFailure::local(
                &e, None,
            )));
            return;
        }
    };
    if !into.as_ref().is_some_and(|i| i.staged) {
        app.settings.dest = location.display().to_string();
    }
    // Its offsite copy (never staged: it is a copy of the first).
    let offsite = db
        .offsite
        .as_ref()
        .and_then(|o| into_repository(app, o).ok());
    start_backup_into(app, ctx, req, into, offsite);
}

/// A protected database's repository, as a backup goes into it: with the
/// password typed this session for it, else the keyring's.
fn into_repository(
    app: &PersnapApp,
    place: &persnap::registry::InRepository,
) -> persnap::Result<super::jobs::IntoRepository> {
    let location = persnap::repository::Address::parse(&place.location)?;
    Ok(super::jobs::IntoRepository {
        password: super::repository_view::typed_password(app, &location.display()),
        location,
        keep: place.keep.clone(),
        remember: false,
        staging: app.rt.staging.clone(),
        staged: place.staged,
    })
}

/// Schedules that missed a run, said at the top of the Back up screen.
pub fn missed_banner(app: &PersnapApp, ui: &mut Ui) {
    let now = chrono::Local::now();
    let mut any = false;
    for s in &app.rt.schedules.list {
        if let Status::Missed { due } = schedule::status(s, &app.rt.runs, now) {
            let (_, body) = schedule::missed_message(s, due);
            ui.colored_label(
                AMBER,
                format!("The scheduled backup “{}” did not run. {body}", s.name),
            );
            any = true;
        }
    }
    if any {
        ui.separator();
    }
}
