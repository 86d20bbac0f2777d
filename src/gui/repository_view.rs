//! The Repositories screen: connect to a repository (the connection test:
//! the password and the way there are tried, nothing is written) and see
//! every persnap backup in it by machine and database — one screen for a
//! fleet of correlators that share a repository.
//!
//! The location is remembered between launches. The password is kept in
//! the system's secret store (the keyring; Windows: Credential Manager)
//! once it opened the repository, unless the user unticks "Remember", and
//! is filled in from there; otherwise only while the app runs. Connecting
//! and the keyring run on threads of their own: rustic and D-Bus block,
//! and the window must not. The Back up screen uses the same fields when
//! its backups go into a repository.

use persnap::units::LocalTime;
use std::collections::BTreeMap;
use std::path::PathBuf;

use eframe::egui::{self, RichText, Ui};
use persnap::repository::{Address, Listed, Password, Repo, UntrustedKey};

use super::PersnapApp;
use super::jobs::{self, Connected, Job};
use super::widgets::{AMBER, GREEN, RED, failure};

/// What the screen holds while the app runs.
#[derive(Default)]
pub struct RepositoryState {
    /// Typed here (or filled in from the keyring), never saved by the app.
    pub password: String,
    connecting: Option<Job<Attempt>>,
    pub result: Option<Result<Connected, persnap::Error>>,
    /// The SFTP server answered with a key not trusted for the
    /// repository: shown, to be trusted once compared.
    pub untrusted: Option<UntrustedKey>,
    /// The location whose kept password was last looked up.
    recalled_for: String,
    recalling: Option<Job<Recalled>>,
    /// The password shown came from the keyring.
    pub from_keyring: bool,
    /// Passwords typed this session for other repositories (an offsite
    /// one), by location as shown; never saved.
    pub typed: std::collections::BTreeMap<String, String>,
    /// A backup was stored since the list was read: read it again.
    pub stale: bool,
    /// "Create a new repository": open, and what is typed there.
    pub create: Option<NewRepository>,
}

/// What a connection attempt found, and the SFTP server's key when that
/// was what refused it.
type Attempt = (Result<Connected, persnap::Error>, Option<UntrustedKey>);

/// A repository to create, as typed.
#[derive(Default)]
pub struct NewRepository {
    pub location: String,
    pub password: String,
    pub again: String,
    /// A new file to keep the password in too (optional).
    pub save_to: String,
    creating: Option<super::jobs::Job<Result<Box<Connected>, String>>>,
    pub failed: Option<String>,
}

/// What the keyring had for a location.
struct Recalled {
    location: String,
    password: Option<Password>,
}

impl RepositoryState {
    /// Take in what the connecting thread found.
    pub fn drain(&mut self) {
        let Some(job) = &self.connecting else { return };
        match job.end() {
            Some(Ok((result, untrusted))) => {
                self.result = Some(result);
                self.untrusted = untrusted;
                self.connecting = None;
            }
            None => {}
            Some(Err(jobs::Stopped)) => {
                self.connecting = None;
                self.result = Some(Err(persnap::Error::relayed(
                    persnap::ErrorKind::Protocol,
                    "Connecting stopped unexpectedly; try again.".into(),
                )));
            }
        }
    }

    pub fn is_connecting(&self) -> bool {
        self.connecting.is_some()
    }

    /// Fill the password in from the keyring when the location changed
    /// and nothing is typed (looked up on a thread, once per location).
    pub fn recall(&mut self, location: &str, ctx: &egui::Context) {
        if let Some(job) = &self.recalling {
            match job.end() {
                Some(Ok(found)) => {
                    self.recalling = None;
                    if let (Some(password), true) = (found.password, self.password.is_empty())
                        && found.location == location
                    {
                        self.password = password.expose().to_owned();
                        self.from_keyring = true;
                    }
                }
                None => return,
                Some(Err(jobs::Stopped)) => self.recalling = None,
            }
        }
        let location = location.trim();
        if location == self.recalled_for || self.recalling.is_some() {
            return;
        }
        // Another repository: what was filled in for the last one goes.
        if self.from_keyring {
            self.password.clear();
            self.from_keyring = false;
        }
        self.recalled_for = location.to_owned();
        let Ok(parsed) = Address::parse(location) else {
            return;
        };
        if !self.password.is_empty() {
            return;
        }
        let location = location.to_owned();
        self.recalling = Some(jobs::task(ctx, move || {
            let password = persnap::repository::keyring::recall(&parsed).ok().flatten();
            Recalled { location, password }
        }));
    }

    /// Open the repository and list it, on a thread; with `remember`, keep
    /// the password in the keyring once it opened the repository.
    pub fn connect(&mut self, location: &str, remember: bool, ctx: &egui::Context) {
        let (location, password) = (location.to_owned(), Password::new(self.password.clone()));
        self.connecting = Some(jobs::task(ctx, move || {
            let mut untrusted = None;
            let result = Address::parse(&location).and_then(|location| {
                let repo = Repo::open(&location, &password).inspect_err(|_| {
                    // Refused for the server's key? Then which, to ask.
                    untrusted = persnap::repository::untrusted_key(&location).ok().flatten();
                })?;
                let not_kept = remember
                    .then(|| persnap::repository::keyring::remember(&location, &password).err())
                    .flatten()
                    .map(|e| e.to_string());
                Ok(Connected {
                    location: location.display(),
                    backups: repo.list()?,
                    not_kept,
                })
            });
            (result, untrusted)
        }));
        self.result = None;
        self.untrusted = None;
    }
}

pub fn show(app: &mut PersnapApp, ui: &mut Ui) {
    app.rt.repositories.drain();
    refresh_if_stale(app, ui.ctx());
    ui.label(
        "A repository keeps backups deduplicated, compressed and encrypted, in a folder or on a server; \
         several machines may share one. Connect to see every backup in it, by machine and database.",
    );
    ui.add_space(8.0);
    let mut connect = false;
    egui::Grid::new("repository-connect")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            connect = fields(app, ui);
        });
    connect_row(app, ui, connect);
    create_section(app, ui);
    let st = &mut app.rt.repositories;
    ui.add_space(8.0);
    let mut trust = None;
    let restore = match &st.result {
        None => None,
        Some(Err(e)) => {
            match &st.untrusted {
                // Plain words first: the long refusal (the command line's
                // words) sits behind Details.
                Some(key) => {
                    ui.colored_label(
                        RED,
                        "persnap does not know this server yet, so nothing was sent to it.",
                    );
                    trust = ask_to_trust(ui, key);
                    egui::CollapsingHeader::new("Details")
                        .id_salt("repository-details")
                        .show(ui, |ui| {
                            ui.label(e.to_string());
                        });
                }
                None => failure(ui, e),
            }
            None
        }
        Some(Ok(connected)) => fleet(ui, connected),
    };
    if let Some(location) = trust {
        // The key is kept with the location (and so with every backup,
        // schedule and history entry made from here).
        app.settings.repository = location.as_str().to_owned();
        let st = &mut app.rt.repositories;
        st.untrusted = None;
        st.connect(
            app.settings.repository.trim(),
            app.settings.remember_password,
            ui.ctx(),
        );
    }
    if let Some((host, database)) = restore {
        app.open_restore_for(&host, &database);
    }
}

/// Connect (also on Enter in the password field, `enter`): opens and
/// lists the repository typed above, on a thread.
pub fn connect_row(app: &mut PersnapApp, ui: &mut Ui, enter: bool) {
    let st = &mut app.rt.repositories;
    let ready = !app.settings.repository.trim().is_empty()
        && !st.password.is_empty()
        && !st.is_connecting();
    let mut connect = enter;
    ui.horizontal(|ui| {
        connect |= ui
            .add_enabled(ready, egui::Button::new("Connect"))
            .clicked();
        if st.is_connecting() {
            ui.spinner();
            ui.label("Connecting…");
        }
    });
    if connect && ready {
        st.connect(
            app.settings.repository.trim(),
            app.settings.remember_password,
            ui.ctx(),
        );
    }
}

/// "Create a new repository": where, the password twice, the warning
/// that a lost password is lost backups (and a file to keep it in), then
/// Create, which also connects to it.
fn create_section(app: &mut PersnapApp, ui: &mut Ui) {
    let ctx = ui.ctx().clone();
    let st = &mut app.rt.repositories;
    if st.create.is_none() {
        if ui
            .button("Create a new repository…")
            .on_hover_text("In a folder, over SFTP, in S3 storage or on a REST server")
            .clicked()
        {
            st.create = Some(NewRepository::default());
        }
        return;
    }
    // What the creation reported.
    let mut created = None;
    if let Some(n) = &mut st.create
        && let Some(job) = &n.creating
    {
        created = job.end().map(|end| end.unwrap_or_else(|s| Err(s.into())));
    }
    match created {
        Some(Ok(connected)) => {
            app.settings.repository = connected.location.clone();
            let n = st.create.take().expect("open");
            st.password = n.password;
            st.from_keyring = false;
            st.result = Some(Ok(*connected));
            return;
        }
        Some(Err(e)) => {
            let n = st.create.as_mut().expect("open");
            n.creating = None;
            n.failed = Some(e);
        }
        None => {}
    }
    let n = st.create.as_mut().expect("open");
    let mut cancel = false;
    ui.group(|ui| {
        ui.heading("Create a new repository");
        egui::Grid::new("repository-create")
            .num_columns(2)
            .spacing([12.0, 8.0])
            .show(ui, |ui| {
                let label = ui.label("New repository");
                ui.add(
                    egui::TextEdit::singleline(&mut n.location)
                        .desired_width(480.0)
                        .hint_text("/srv/backups/repo, rest:https://host:8000/, sftp:user@host:/path, s3:https://host/bucket"),
                )
                .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Its password");
                ui.add(egui::TextEdit::singleline(&mut n.password).password(true).desired_width(240.0))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("The same password again");
                ui.add(egui::TextEdit::singleline(&mut n.again).password(true).desired_width(240.0))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Keep it also in this file");
                ui.add(
                    egui::TextEdit::singleline(&mut n.save_to)
                        .desired_width(480.0)
                        .hint_text("optional: a new file's full path, e.g. on a USB stick"),
                )
                .labelled_by(label.id);
                ui.end_row();
            });
        ui.colored_label(
            AMBER,
            "Keep this password safe. Without it nobody — not you, not persnap, not its makers — can read these backups, and it cannot be reset. Write it down or keep it in a file away from this computer.",
        );
        let location = Address::parse(n.location.trim());
        let problem = if n.location.trim().is_empty() {
            Some("Give the new repository's address.".to_owned())
        } else if let Err(e) = &location {
            Some(e.to_string())
        } else if n.password.is_empty() {
            Some("Give it a password.".into())
        } else if n.password != n.again {
            Some("The two passwords differ: type the same one twice.".into())
        } else {
            None
        };
        if let Some(problem) = &problem
            && !n.again.is_empty()
        {
            ui.colored_label(RED, problem);
        }
        if let Some(e) = &n.failed {
            ui.colored_label(RED, format!("Nothing was created: {e}"));
        }
        ui.horizontal(|ui| {
            let busy = n.creating.is_some();
            if ui
                .add_enabled(problem.is_none() && !busy, egui::Button::new("Create"))
                .clicked()
            {
                n.failed = None;
                let save_to = Some(n.save_to.trim())
                    .filter(|t| !t.is_empty())
                    .map(PathBuf::from);
                n.creating = Some(super::jobs::create_repository(
                    &ctx,
                    n.location.trim().to_owned(),
                    Password::new(n.password.clone()),
                    save_to,
                ));
            }
            if busy {
                ui.spinner();
                ui.label("Creating…");
            } else if ui.button("Cancel").clicked() {
                cancel = true;
            }
        });
    });
    if cancel {
        st.create = None;
    }
}

/// List the connected repository again when a backup was stored since
/// (the same location and password, nothing kept anew).
pub fn refresh_if_stale(app: &mut PersnapApp, ctx: &egui::Context) {
    let st = &mut app.rt.repositories;
    if !st.stale || st.is_connecting() || !matches!(st.result, Some(Ok(_))) {
        return;
    }
    st.stale = false;
    if !st.password.is_empty() {
        st.connect(app.settings.repository.trim(), false, ctx);
    }
}

/// The repository's address, its password and whether to keep it, as rows
/// of a two-column grid (this screen's and the Back up screen's); whether
/// Enter was pressed in the password field.
pub fn fields(app: &mut PersnapApp, ui: &mut Ui) -> bool {
    let st = &mut app.rt.repositories;
    let name = ui.label("Repository");
    ui.add(
        egui::TextEdit::singleline(&mut app.settings.repository)
            .desired_width(480.0)
            .hint_text("/srv/backups/repo, rest:https://host:8000/, sftp:user@host:/path, s3:https://host/bucket"),
    )
    .labelled_by(name.id);
    ui.end_row();
    st.recall(app.settings.repository.trim(), ui.ctx());
    let name = ui.label("Password");
    let mut enter = false;
    ui.horizontal(|ui| {
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut st.password)
                    .password(true)
                    .desired_width(240.0),
            )
            .labelled_by(name.id);
        if field.changed() {
            st.from_keyring = false;
        }
        enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let store = persnap::repository::keyring::store_name();
        if st.from_keyring {
            ui.label(format!("(kept in {store})"));
        } else {
            ui.checkbox(&mut app.settings.remember_password, "Remember it")
                .on_hover_text(format!(
                    "Keep the password in {store} once it opened the repository, so that it is not asked again"
                ));
        }
    });
    ui.end_row();
    enter
}

/// The password typed this session for the repository at `location` (as
/// shown), if it is the one on these screens; else the worker asks the
/// keyring.
pub fn typed_password(app: &PersnapApp, location: &str) -> Option<Password> {
    Address::parse(app.settings.repository.trim())
        .ok()
        .filter(|typed| typed.display() == location)
        .filter(|_| !app.rt.repositories.password.is_empty())
        .map(|_| Password::new(app.rt.repositories.password.clone()))
        .or_else(|| {
            app.rt
                .repositories
                .typed
                .get(location)
                .map(|p| Password::new(p.clone()))
        })
}

/// The backup a run stored in a repository, to read out of it (verify,
/// restore), with the password typed this session if there is one.
pub fn stored_backup(
    app: &PersnapApp,
    stored: &persnap::repository::Stored,
) -> Option<super::jobs::InRepository> {
    Some(super::jobs::InRepository {
        location: Address::parse(&stored.location).ok()?,
        password: typed_password(app, &stored.location),
        snapshot: stored.snapshot.clone(),
        staging: app.rt.staging.clone(),
    })
}

/// The restore of the backup a run stored in a repository.
pub fn restore_draft(
    app: &PersnapApp,
    run: &persnap::history::Run,
    stored: &persnap::repository::Stored,
) -> Option<super::RestoreDraft> {
    Some(super::RestoreDraft::new(
        PathBuf::from(stored.short_id()),
        Some(stored_backup(app, stored)?),
        &run.source,
    ))
}

/// What went wrong in words, rustic's own words behind "Details".
/// The SFTP server's key, to compare with the server's own and trust
/// once: the location with the key trusted, when the user said so.
fn ask_to_trust(ui: &mut Ui, key: &UntrustedKey) -> Option<Address> {
    ui.add_space(6.0);
    let said = match &key.instead_of {
        Some(before) => format!(
            "The server's key is now {} ({}); {before} was trusted. Trust the new key only if the server's administrator changed it (on the server: ssh-keygen -lf {}).",
            key.fingerprint,
            key.kind,
            key.server_file()
        ),
        None => format!(
            "The server's key is {} ({}). Compare it with the server's own (on the server: ssh-keygen -lf {}); trust it only if it is the same.",
            key.fingerprint,
            key.kind,
            key.server_file()
        ),
    };
    ui.colored_label(AMBER, said);
    ui.button("Trust this key and connect")
        .on_hover_text("It is kept with the repository's address, for every backup and schedule")
        .clicked()
        .then(|| key.trusted.clone())
}

/// Every backup of the repository, by machine, then database; the
/// machine and database whose Restore… was clicked.
fn fleet(ui: &mut Ui, connected: &Connected) -> Option<(String, String)> {
    let mut restore = None;
    let mut by_host: BTreeMap<&str, BTreeMap<&str, Vec<&Listed>>> = BTreeMap::new();
    for l in &connected.backups {
        by_host
            .entry(l.host.as_str())
            .or_default()
            .entry(l.database.as_str())
            .or_default()
            .push(l);
    }
    let databases: usize = by_host.values().map(BTreeMap::len).sum();
    ui.colored_label(
        GREEN,
        format!(
            "Connected to {}: {} backup{} of {} database{} from {} machine{}.",
            connected.location,
            connected.backups.len(),
            plural(connected.backups.len()),
            databases,
            plural(databases),
            by_host.len(),
            plural(by_host.len()),
        ),
    );
    if let Some(why) = &connected.not_kept {
        ui.colored_label(AMBER, why);
    }
    if connected.backups.is_empty() {
        ui.label("It holds no persnap backup yet: on the Back up screen, choose it as the backup location.");
        return None;
    }
    let now = chrono::Utc::now();
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("repository-fleet")
            .num_columns(8)
            .striped(true)
            .spacing([18.0, 4.0])
            .show(ui, |ui| {
                for title in [
                    "Machine", "Database", "Store", "Backups", "Newest", "Size", "Pinned", "",
                ] {
                    ui.label(RichText::new(title).strong());
                }
                ui.end_row();
                for (host, databases) in &by_host {
                    for (i, (database, backups)) in databases.iter().enumerate() {
                        let newest = backups
                            .iter()
                            .max_by_key(|l| l.time)
                            .expect("a database listed has a backup");
                        // The machine once, on its first row.
                        ui.label(if i == 0 {
                            RichText::new(*host).strong()
                        } else {
                            RichText::new("")
                        });
                        ui.label(*database);
                        ui.label(&newest.store_name);
                        ui.label(backups.len().to_string());
                        let age = now - newest.time;
                        let when = RichText::new(persnap::protection::ago(age));
                        // As `persnap status` judges it: older than a day
                        // and a bit is worth a look.
                        let when = if age > persnap::protection::DEFAULT_MAX_AGE {
                            when.color(AMBER)
                        } else {
                            when
                        };
                        ui.label(when).on_hover_text(
                            newest
                                .time.local_second(),
                        );
                        ui.label(persnap::units::bytes(newest.bytes));
                        let pinned = backups.iter().filter(|l| l.pinned).count();
                        ui.label(if pinned == 0 {
                            "–".to_owned()
                        } else {
                            pinned.to_string()
                        });
                        if ui
                            .button("Restore…")
                            .on_hover_text(format!(
                                "Restore {database} from the machine {host} onto this computer"
                            ))
                            .clicked()
                        {
                            restore = Some((host.to_string(), database.to_string()));
                        }
                        ui.end_row();
                    }
                }
            });
        ui.add_space(6.0);
        ui.label(
            "Newest in amber: more than 26 hours ago. Sizes are each database's newest backup, before deduplication.",
        );
    });
    restore
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
