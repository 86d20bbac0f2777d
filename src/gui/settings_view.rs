//! The settings screen: theme, preferred method and its options, recent
//! folders, and where history is kept. Saved between launches.

use eframe::egui::{self, Ui};

use super::backup_view::{method_row, pace_row};
use super::widgets::RED;
use super::{PersnapApp, Theme};

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    let s = &mut app.settings;
    egui::Grid::new("settings").num_columns(2).spacing([12.0, 10.0]).show(ui, |ui| {
        ui.label("Theme");
        ui.horizontal(|ui| {
            ui.radio_value(&mut s.theme, Theme::System, "Follow the system");
            ui.radio_value(&mut s.theme, Theme::Light, "Light");
            ui.radio_value(&mut s.theme, Theme::Dark, "Dark");
        });
        ui.end_row();

        method_row(ui, &mut s.method);
        pace_row(ui, &mut s.pace);

        let name = ui.label("LVM snapshot size");
        ui.horizontal(|ui| {
            ui.add(egui::TextEdit::singleline(&mut s.snapshot_size).desired_width(100.0).hint_text("automatic")).labelled_by(name.id);
            match persnap::units::parse_size(&s.snapshot_size) {
                Err(e) if !s.snapshot_size.trim().is_empty() => {
                    ui.colored_label(RED, e);
                }
                _ => {
                    ui.label("e.g. 2G; room for what changes during a backup. Empty: a fifth of the volume, at least 1 GiB.");
                }
            }
        });
        ui.end_row();

        let name = ui.label("SQLite online backup timeout (s)");
        ui.add(egui::DragValue::new(&mut s.online_timeout_secs).range(1..=persnap::protocol::MAX_TIMEOUT_SECS)).labelled_by(name.id);
        ui.end_row();

        let name = ui.label("Keep the newest backups");
        ui.horizontal(|ui| {
            ui.add(egui::DragValue::new(&mut s.keep_last).range(0..=10_000)).labelled_by(name.id);
            ui.label("0: keep all. Applied after each verified backup, per database and location.");
        });
        ui.end_row();

        let name = ui.label("Keep every backup of the last days");
        ui.horizontal(|ui| {
            ui.add(egui::DragValue::new(&mut s.keep_days).range(0..=10_000)).labelled_by(name.id);
            ui.label("0: no age rule. The newest good backup is never deleted.");
        });
        ui.end_row();

        ui.label("Recent folders");
        if ui.button("Forget recent folders").clicked() {
            s.recent_sources.clear();
            s.recent_dests.clear();
        }
        ui.end_row();

        ui.label("History file");
        match &app.rt.history {
            Some(h) => ui.label(h.path().display().to_string()),
            None => ui.colored_label(RED, app.rt.history_error.clone().unwrap_or_default()),
        };
        ui.end_row();
    });
}
