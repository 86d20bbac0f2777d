//! The history screen: every run in a sortable, filterable table, a
//! details pane with the manifest or the error, and backup size and
//! duration over time (see `chart`).

use persnap::units::LocalTime;
use std::time::Duration;

use eframe::egui::{self, RichText, Ui};
use egui_extras::{Column, TableBuilder};
use persnap::history::{Outcome, Run};
use persnap::units;

use super::PersnapApp;
use super::RestoreDraft;
use super::widgets::{AMBER, GREEN, RED, open_folder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Date,
    Source,
    Method,
    Size,
    Duration,
    Result,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    #[default]
    All,
    Completed,
    Failed,
    Cancelled,
    Interrupted,
}

impl Filter {
    const ALL: [Filter; 5] = [
        Filter::All,
        Filter::Completed,
        Filter::Failed,
        Filter::Cancelled,
        Filter::Interrupted,
    ];

    fn label(self) -> &'static str {
        match self {
            Filter::All => "All runs",
            Filter::Completed => "Completed",
            Filter::Failed => "Failed",
            Filter::Cancelled => "Cancelled",
            Filter::Interrupted => "Interrupted",
        }
    }

    fn keeps(self, run: &Run) -> bool {
        match self {
            Filter::All => true,
            Filter::Completed => run.outcome == Outcome::Completed,
            Filter::Failed => matches!(run.outcome, Outcome::Failed { .. }),
            Filter::Cancelled => run.outcome == Outcome::Cancelled,
            Filter::Interrupted => run.outcome == Outcome::Interrupted,
        }
    }
}

/// Sorting, filtering and selection of the table.
#[derive(Debug, Clone, Default)]
pub struct ViewState {
    pub sort: SortKey,
    pub ascending: bool,
    pub filter: Filter,
    pub selected: Option<String>,
}

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    if let Some(error) = &app.rt.history_error {
        ui.colored_label(RED, error);
    }
    ui.horizontal(|ui| {
        let name = ui.label("Show");
        egui::ComboBox::from_id_salt("filter")
            .selected_text(app.rt.history_view.filter.label())
            .show_ui(ui, |ui| {
                for f in Filter::ALL {
                    ui.selectable_value(&mut app.rt.history_view.filter, f, f.label());
                }
            })
            .response
            .labelled_by(name.id);
        if ui.button("Reload").clicked() {
            app.reload_history();
        }
        ui.label(format!("{} runs", app.rt.runs.len()));
        if let Some(logs) = persnap::monitor::log::dir()
            && ui
                .button("Open log")
                .on_hover_text(format!(
                    "Every run's steps, with their times and errors, for support: {}",
                    logs.join(persnap::monitor::log::LOG_NAME).display()
                ))
                .clicked()
        {
            open_folder(&logs);
        }
    });
    if app.rt.runs.is_empty() {
        ui.label("No backups yet. Runs appear here as soon as they start.");
        return;
    }
    let rows = sorted_rows(&app.rt.runs, &app.rt.history_view);
    egui::Panel::bottom("history-plot")
        .resizable(true)
        .default_size(260.0)
        .show(ui, |ui| {
            let runs: Vec<&Run> = app.rt.runs.iter().collect();
            let height = ui.available_height();
            super::chart::size_and_duration(ui, "history", &runs, height);
        });
    egui::Panel::right("history-details")
        .resizable(true)
        .default_size(300.0)
        .max_size(480.0)
        .show(ui, |ui| details(app, ui));
    egui::ScrollArea::horizontal().show(ui, |ui| table(ui, &mut app.rt.history_view, &rows));
}

fn sorted_rows(runs: &[Run], view: &ViewState) -> Vec<Run> {
    let mut rows: Vec<Run> = runs
        .iter()
        .filter(|r| view.filter.keeps(r))
        .cloned()
        .collect();
    rows.sort_by(|a, b| {
        let ord = match view.sort {
            SortKey::Date => a.started.cmp(&b.started),
            SortKey::Source => a.source.cmp(&b.source),
            SortKey::Method => method(a).cmp(&method(b)),
            SortKey::Size => a.bytes.cmp(&b.bytes),
            SortKey::Duration => a
                .duration_secs
                .unwrap_or(0.0)
                .total_cmp(&b.duration_secs.unwrap_or(0.0)),
            SortKey::Result => a.outcome.label().cmp(b.outcome.label()),
        };
        if view.ascending { ord } else { ord.reverse() }
    });
    rows
}

fn method(run: &Run) -> String {
    let method = run
        .method
        .map_or_else(|| run.requested_method.to_string(), |m| m.to_string());
    match (run.kind, &run.scheduled) {
        (persnap::history::RunKind::Restore, _) => format!("restore ({method})"),
        (_, Some(schedule)) => format!("{method}, scheduled: {schedule}"),
        _ => method,
    }
}

fn outcome_text(run: &Run) -> RichText {
    let label = run.outcome.label();
    match run.outcome {
        Outcome::Completed => RichText::new(label).color(GREEN),
        Outcome::Failed { .. } => RichText::new(label).color(RED),
        Outcome::Cancelled | Outcome::Interrupted => RichText::new(label).color(AMBER),
        Outcome::Running => RichText::new(label),
    }
}

fn table(ui: &mut Ui, view: &mut ViewState, rows: &[Run]) {
    let columns = [
        ("Date", SortKey::Date),
        ("Source", SortKey::Source),
        ("Method", SortKey::Method),
        ("Size", SortKey::Size),
        ("Duration", SortKey::Duration),
        ("Result", SortKey::Result),
    ];
    TableBuilder::new(ui)
        .striped(true)
        .sense(egui::Sense::click())
        .column(Column::auto().at_least(140.0))
        .column(Column::initial(130.0).clip(true))
        .columns(Column::auto(), 4)
        .column(Column::remainder())
        .header(22.0, |mut header| {
            for (title, key) in columns {
                header.col(|ui| {
                    let arrow = match (view.sort == key, view.ascending) {
                        (true, true) => " (ascending)",
                        (true, false) => " (descending)",
                        _ => "",
                    };
                    if ui
                        .button(RichText::new(format!("{title}{arrow}")).strong())
                        .on_hover_text(format!("Sort by {}", title.to_lowercase()))
                        .clicked()
                    {
                        view.ascending = if view.sort == key {
                            !view.ascending
                        } else {
                            key != SortKey::Date
                        };
                        view.sort = key;
                    }
                });
            }
            header.col(|ui| {
                ui.strong("Verification");
            });
        })
        .body(|mut body| {
            for run in rows {
                body.row(20.0, |mut row| {
                    row.set_selected(view.selected.as_deref() == Some(run.id.as_str()));
                    cell(&mut row, run.started.local_minute());
                    cell(&mut row, run.source.display().to_string());
                    cell(&mut row, method(run));
                    cell(
                        &mut row,
                        if run.bytes > 0 {
                            units::bytes(run.bytes)
                        } else {
                            "–".into()
                        },
                    );
                    cell(
                        &mut row,
                        run.duration_secs.map_or("–".into(), |s| {
                            units::duration(Duration::from_secs_f64(s))
                        }),
                    );
                    cell(&mut row, outcome_text(run));
                    cell(
                        &mut row,
                        run.verification
                            .as_ref()
                            .map_or("–".to_owned(), |v| format!("integrity {}", v.integrity)),
                    );
                    if row.response().clicked() {
                        view.selected = Some(run.id.clone());
                    }
                });
            }
        });
}

/// A table cell whose text does not swallow the click that selects the row.
fn cell(row: &mut egui_extras::TableRow<'_, '_>, text: impl Into<egui::WidgetText>) {
    row.col(|ui| {
        ui.add(egui::Label::new(text).selectable(false));
    });
}

fn details(app: &mut PersnapApp, ui: &mut Ui) {
    let Some(run) = app
        .rt
        .history_view
        .selected
        .as_ref()
        .and_then(|id| app.rt.runs.iter().find(|r| &r.id == id))
        .cloned()
    else {
        ui.label("Select a run to see its details.");
        return;
    };
    let run = &run;
    if app.rt.restore.is_some() {
        restore_panel(app, ui);
        return;
    }
    ui.heading(outcome_text(run).heading());
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("run-details").num_columns(2).show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(k);
                ui.label(v);
                ui.end_row();
            };
            row("Started", run.started.local_second());
            row("Source", format!("{} ({})", run.source.display(), run.store_name));
            row("Backup location", run.destination.display().to_string());
            row("Method", method(run));
            if let Some(pace) = run.pace {
                let rested = match run.rested_secs {
                    Some(secs) if secs >= 0.05 => format!(
                        " (paused {:.1} s in all, leaving the disk to the correlator)",
                        secs
                    ),
                    _ => String::new(),
                };
                row("Backup speed", format!("{}{rested}", pace.label()));
            }
            if let Some(id) = &run.snapshot_id {
                row("Snapshot", id.clone());
            }
            row("Host", run.host.clone());
            if let Some(v) = &run.verification {
                row("Verification", v.words());
            }
            if let Some(stored) = &run.repository {
                row("Repository", stored_words(stored));
            }
            match &run.offsite {
                Some(persnap::repository::Offsite::Stored { copy }) => {
                    row("Offsite copy", stored_words(copy));
                }
                Some(persnap::repository::Offsite::Failed { location, message }) => {
                    row("Offsite copy", format!("Failed, to {location}: {message}"));
                }
                None => {}
            }
        });
        if let Outcome::Failed { step, message, .. } = &run.outcome {
            ui.colored_label(RED, format!("Failed during {step}: {message}"));
        }
        for warning in &run.warnings {
            ui.colored_label(AMBER, warning);
        }
        if let (None, Some(stored), Outcome::Completed) =
            (&run.backup_path, &run.repository, &run.outcome)
            && let Some(draft) = super::repository_view::restore_draft(app, run, stored)
            && ui.button("Restore this backup…").clicked()
        {
            app.rt.restore = Some(draft);
        }
        if let Some(path) = &run.backup_path {
            ui.horizontal(|ui| {
                if ui.button("Open folder").clicked() {
                    open_folder(path);
                }
                let restorable = run.outcome == Outcome::Completed && path.is_dir();
                if ui.add_enabled(restorable, egui::Button::new("Restore this backup…")).clicked() {
                    app.rt.restore = Some(RestoreDraft::new(path.clone(), None, &run.source));
                }
            });
            match std::fs::read_to_string(path.join(persnap::manifest::MANIFEST_NAME)) {
                Ok(text) => {
                    ui.label("manifest.json");
                    ui.add(egui::Label::new(RichText::new(text).monospace().small()).wrap());
                }
                Err(e) => {
                    ui.colored_label(AMBER, format!("The manifest cannot be read ({e}); the backup may have been moved or deleted."));
                }
            }
        }
    });
}

/// A backup's copy in a repository, in words: where, as which snapshot,
/// what it added, and how it was checked.
fn stored_words(stored: &persnap::repository::Stored) -> String {
    let mut words = format!(
        "{}, backup {}: {} new ({} stored), {}.",
        stored.location,
        stored.short_id(),
        persnap::units::bytes(stored.bytes_new),
        persnap::units::bytes(stored.bytes_stored),
        stored.check.checked
    );
    if let Some(warning) = &stored.warning {
        words.push(' ');
        words.push_str(warning);
    }
    words
}

/// Restore: where to, what happens, then the result.
pub fn restore_panel(app: &mut PersnapApp, ui: &mut Ui) {
    let ctx = ui.ctx().clone();
    let Some(draft) = &mut app.rt.restore else {
        return;
    };
    ui.heading("Restore a backup");
    match &draft.repository {
        Some(from) => ui.label(format!(
            "Backup {} in the repository {} (read out of it first, into your staging folder)",
            draft.backup.display(),
            from.location
        )),
        None => ui.label(format!("Backup: {}", draft.backup.display())),
    };
    let name = ui.label("Restore into (the correlator's database folder)");
    ui.add_enabled(
        draft.job.is_none() && draft.result.is_none(),
        egui::TextEdit::singleline(&mut draft.target),
    )
    .labelled_by(name.id);
    ui.colored_label(
        AMBER,
        "Stop the correlator first: persnap refuses while any program has the database open.",
    );
    ui.label("The backup is verified first; the files in the folder now are moved into a before-restore-… folder there, never deleted.");
    ui.label(persnap::restore::VERSION_WARNING);
    match (&draft.job, &draft.result) {
        (Some(job), _) => {
            if draft
                .meter
                .show(ui, "Restoring", super::widgets::restore_phase_words)
            {
                job.cancel.cancel();
            }
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
        (None, None) => {
            let mut go = false;
            let mut cancel = false;
            ui.horizontal(|ui| {
                go = ui
                    .add_enabled(
                        !draft.target.trim().is_empty(),
                        egui::Button::new("Restore now"),
                    )
                    .clicked();
                cancel = ui.button("Cancel").clicked();
            });
            if cancel {
                app.rt.restore = None;
                return;
            }
            if go && let Some(history) = app.rt.history.clone() {
                let target = std::path::PathBuf::from(draft.target.trim());
                draft.job = Some(super::jobs::restore(
                    &ctx,
                    draft.backup.clone(),
                    draft.repository.clone(),
                    target,
                    None,
                    history,
                    app.rt.helper.clone(),
                ));
            }
        }
        (None, Some(result)) => {
            match result {
                Ok(restored) => {
                    let report = &restored.report;
                    ui.colored_label(
                        GREEN,
                        format!(
                            "Restored {}: integrity {}",
                            report.restored.display(),
                            report.verification.integrity
                        ),
                    );
                    if let Some(dir) = &report.safety_dir {
                        ui.label(format!("The previous files are kept in {}", dir.display()));
                    }
                }
                Err(failure) if failure.kind == persnap::ErrorKind::Cancelled => {
                    ui.label(persnap::restore::CANCELLED);
                }
                Err(failure) => {
                    ui.colored_label(RED, format!("The restore did not happen: {failure}"));
                }
            }
            if ui.button("Close").clicked() {
                app.rt.restore = None;
            }
        }
    }
}
