//! `persnap monitoring`: the machine's monitoring settings (see
//! `persnap::monitor::settings`), and the refresh of node_exporter's
//! textfile after each scheduled run.

use std::path::PathBuf;

use persnap::monitor::{alert, metrics, settings};

use super::Failure;

/// What `persnap monitoring` was asked.
#[derive(clap::Subcommand)]
pub enum MonitoringCommand {
    /// What is set (addresses and passwords are not shown).
    Show,
    /// Change what is set (administrator only). Secrets are never taken
    /// on the command line: a ping address and the mail password are
    /// typed when asked, or read from standard input or a file.
    Set(Box<SetArgs>),
    /// Send a test message and a test ping to what is set (administrator
    /// only: it reads the secrets).
    Test,
    /// Tell the ping and mail of every scheduled run that was due and did
    /// not happen, once per due time (administrator only; run it hourly
    /// from a timer, see docs/MONITORING.md).
    Watch,
}

#[derive(clap::Args)]
pub struct SetArgs {
    /// After each scheduled run, write the metrics of every protected
    /// database into this folder as persnap.prom (node_exporter's
    /// textfile collector folder, e.g. /var/lib/prometheus/node-exporter).
    #[arg(long, value_name = "DIR", conflicts_with = "no_textfile")]
    textfile: Option<PathBuf>,
    /// Stop writing it.
    #[arg(long)]
    no_textfile: bool,
    /// Each scheduled run of database NAME pings an address (healthchecks.io
    /// or Uptime Kuma push URL) when it starts and when it ends, with the
    /// reason when it failed. The address is asked for (or read from
    /// standard input): it carries the check's token.
    #[arg(long, value_name = "NAME")]
    ping: Option<String>,
    /// Stop pinging for database NAME.
    #[arg(long, value_name = "NAME", conflicts_with = "ping")]
    no_ping: Option<String>,
    /// Send mail through this SMTP server when a scheduled run fails
    /// (HOST or HOST:PORT; the port is 587 for STARTTLS, 465 for TLS).
    #[arg(long, value_name = "HOST[:PORT]")]
    mail_server: Option<String>,
    /// How the connection to the mail server is protected (never in the
    /// clear).
    #[arg(long, value_enum, value_name = "HOW")]
    mail_security: Option<SecurityArg>,
    /// Log in to the mail server as USER; its password is asked for, or
    /// read from --mail-password-file or standard input.
    #[arg(long, value_name = "USER")]
    mail_user: Option<String>,
    /// Read the mail password from this file (its first line).
    #[arg(long, value_name = "FILE")]
    mail_password_file: Option<PathBuf>,
    /// The sender's address.
    #[arg(long, value_name = "ADDRESS")]
    mail_from: Option<String>,
    /// Who receives the mail (give it again for more; replaces the list).
    #[arg(long, value_name = "ADDRESS")]
    mail_to: Vec<String>,
    /// Trust the mail server's certificate when this certificate authority
    /// (a PEM file) signed it, beyond the system's.
    #[arg(long, value_name = "FILE")]
    mail_ca: Option<PathBuf>,
    /// Log in to the mail server no more (the password kept goes too).
    #[arg(long, conflicts_with_all = ["mail_user", "mail_password_file"])]
    no_mail_user: bool,
    /// Trust only the system's certificate authorities again.
    #[arg(long, conflicts_with = "mail_ca")]
    no_mail_ca: bool,
    /// Also mail a summary of every protected database each morning
    /// (daily) or each Monday morning (weekly), at 07:00; off stops it.
    #[arg(long, value_enum, value_name = "HOW_OFTEN")]
    summary: Option<SummaryArg>,
    /// Stop sending mail.
    #[arg(long, conflicts_with_all = ["mail_server", "mail_user", "mail_from", "mail_to", "mail_ca", "mail_security", "mail_password_file", "no_mail_user", "no_mail_ca"])]
    no_mail: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SummaryArg {
    Daily,
    Weekly,
    Off,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SecurityArg {
    /// STARTTLS, usually on port 587.
    Starttls,
    /// TLS from the start, usually on port 465.
    Tls,
}

fn bad(text: String) -> Failure {
    Failure {
        code: 2,
        error: anyhow::anyhow!("{text} Nothing was changed."),
    }
}

fn administrator_only() -> Result<(), Failure> {
    if persnap::fsutil::is_root() {
        return Ok(());
    }
    Err(Failure {
        code: persnap::ErrorKind::Elevation.exit_code(),
        error: anyhow::anyhow!(
            "Monitoring settings are the administrator's: run this as root (sudo) or as administrator. Nothing was changed."
        ),
    })
}

pub fn run(cmd: MonitoringCommand) -> Result<(), Failure> {
    match cmd {
        MonitoringCommand::Show => {
            let now = settings::load()?;
            show(&now);
            eprintln!("Kept in {}.", settings::path().display());
            Ok(())
        }
        MonitoringCommand::Set(args) => {
            administrator_only()?;
            set(*args)
        }
        MonitoringCommand::Test => {
            administrator_only()?;
            test()
        }
        MonitoringCommand::Watch => {
            administrator_only()?;
            watch()
        }
    }
}

fn show(now: &settings::Monitoring) {
    match &now.textfile_dir {
        Some(dir) => println!(
            "textfile: {} (rewritten after each scheduled run)",
            dir.join(metrics::TEXTFILE_NAME).display()
        ),
        None => println!("textfile: not written (persnap monitoring set --textfile DIR)"),
    }
    match &now.mail {
        Some(mail) => {
            println!(
                "mail: to {} from {} through {}:{} ({}), when a scheduled run fails",
                mail.to.join(", "),
                mail.from,
                mail.server,
                mail.port,
                match mail.security {
                    settings::MailSecurity::Starttls => "STARTTLS",
                    settings::MailSecurity::Tls => "TLS",
                }
            );
            if let Some(user) = &mail.user {
                println!("mail: logs in as {user} (the password is kept for root only)");
            }
            if let Some(ca) = &mail.ca_file {
                println!("mail: also trusts the authority in {}", ca.display());
            }
            match now.summary {
                Some(how_often) => println!(
                    "summary: every protected database, mailed {}",
                    how_often.describe()
                ),
                None => println!("summary: none (persnap monitoring set --summary daily)"),
            }
        }
        None => println!(
            "mail: none sent (persnap monitoring set --mail-server HOST --mail-from ADDRESS --mail-to ADDRESS)"
        ),
    }
    if now.pings.is_empty() {
        println!("pings: none (persnap monitoring set --ping NAME)");
    }
    for (name, host) in &now.pings {
        println!("ping: {name}'s scheduled runs ping {host} (the address is kept for root only)");
    }
}

/// A secret, typed when asked or read from standard input (its first
/// line); standard input serves one secret per command.
fn read_secret(prompt: &str, stdin_taken: &mut bool) -> Result<String, Failure> {
    use std::io::{BufRead, IsTerminal};
    let typed = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).map_err(|e| bad(format!("Nothing was typed ({e}).")))?
    } else {
        if *stdin_taken {
            return Err(bad(
                "Standard input can give one secret per command: give the mail password with --mail-password-file, or set the ping in a second command.".into(),
            ));
        }
        *stdin_taken = true;
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| bad(format!("Standard input could not be read ({e}).")))?;
        line
    };
    let typed = typed.trim().to_owned();
    if typed.is_empty() {
        return Err(bad(format!(
            "{} was empty.",
            prompt.trim_end_matches([' ', ':'])
        )));
    }
    Ok(typed)
}

fn set(args: SetArgs) -> Result<(), Failure> {
    use settings::Change;
    let now = settings::load()?;
    let mut update = settings::Update::default();
    let mut stdin_taken = false;
    if args.no_textfile {
        update.textfile_dir = Change::Remove;
    }
    if let Some(dir) = &args.textfile {
        update.textfile_dir = Change::Set(dir.clone());
    }
    if let Some(name) = args.no_ping {
        if !now.pings.contains_key(&name) {
            eprintln!("{name} had no ping address.");
        }
        update.pings.insert(name, Change::Remove);
    }
    let pinged = args.ping.clone();
    if let Some(name) = args.ping {
        let address = read_secret(
            &format!("The ping address for {name} (it is not shown): "),
            &mut stdin_taken,
        )?;
        update
            .pings
            .insert(name, Change::Set(persnap::schedule::Secret(address)));
    }
    if args.no_mail {
        update.mail = Change::Remove;
        update.mail_password = Change::Remove;
    }
    update.summary = match args.summary {
        None => Change::Keep,
        Some(SummaryArg::Off) => Change::Remove,
        Some(SummaryArg::Daily) => Change::Set(settings::Summary::Daily),
        Some(SummaryArg::Weekly) => Change::Set(settings::Summary::Weekly),
    };
    let mail_asked = args.mail_server.is_some()
        || args.mail_security.is_some()
        || args.mail_user.is_some()
        || args.mail_password_file.is_some()
        || args.mail_from.is_some()
        || !args.mail_to.is_empty()
        || args.mail_ca.is_some()
        || args.no_mail_user
        || args.no_mail_ca;
    if mail_asked {
        let old = now.mail.clone();
        let security = match args.mail_security {
            Some(SecurityArg::Tls) => settings::MailSecurity::Tls,
            Some(SecurityArg::Starttls) => settings::MailSecurity::Starttls,
            None => old
                .as_ref()
                .map_or(settings::MailSecurity::Starttls, |m| m.security),
        };
        let (server, port) = match (&args.mail_server, &old) {
            (Some(given), _) => server_and_port(given, security)?,
            // The security changed alone: its usual port with it.
            (None, Some(mail)) if args.mail_security.is_some() && mail.security != security => {
                (mail.server.clone(), security.default_port())
            }
            (None, Some(mail)) => (mail.server.clone(), mail.port),
            (None, None) => {
                return Err(bad(
                    "Say which mail server sends the mail: --mail-server HOST[:PORT].".into(),
                ));
            }
        };
        let from = args
            .mail_from
            .or_else(|| old.as_ref().map(|m| m.from.clone()))
            .ok_or_else(|| bad("Say who the mail is from: --mail-from ADDRESS.".into()))?;
        let to = if args.mail_to.is_empty() {
            old.as_ref().map(|m| m.to.clone()).unwrap_or_default()
        } else {
            args.mail_to
        };
        let user = match (&args.mail_user, args.no_mail_user) {
            (_, true) => None,
            (Some(user), _) => Some(user.clone()),
            (None, false) => old.as_ref().and_then(|m| m.user.clone()),
        };
        if args.no_mail_user {
            update.mail_password = Change::Remove;
        }
        if let Some(file) = &args.mail_password_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| bad(format!("{} cannot be read ({e}).", file.display())))?;
            let password = text.lines().next().unwrap_or_default().to_owned();
            if password.is_empty() {
                return Err(bad(format!("{} holds no password.", file.display())));
            }
            update.mail_password = Change::Set(persnap::schedule::Secret(password));
        } else if let Some(user) = &args.mail_user {
            let password =
                read_secret(&format!("The mail password for {user}: "), &mut stdin_taken)?;
            update.mail_password = Change::Set(persnap::schedule::Secret(password));
        }
        update.mail = Change::Set(settings::Mail {
            server,
            port,
            security,
            user,
            from,
            to,
            ca_file: if args.no_mail_ca {
                None
            } else {
                args.mail_ca.or_else(|| old.and_then(|m| m.ca_file))
            },
        });
    }
    let names: Vec<String> = persnap::schedule::list()
        .map_err(|e| bad(format!("The schedules cannot be read ({e}).")))?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let now = alert::apply(update, &names)?;
    if let Some(dir) = now
        .textfile_dir
        .as_ref()
        .filter(|_| args.textfile.is_some())
    {
        // Written once now: a folder that cannot take it is said here, not
        // after the next run.
        let survey = super::status::survey(false, None)?;
        super::status::write_textfile(dir, &survey.assessments)?;
        eprintln!(
            "Wrote {}; scheduled runs rewrite it after each run.",
            dir.join(metrics::TEXTFILE_NAME).display()
        );
    }
    if let Some(name) = &pinged
        && let Some(host) = now.pings.get(name)
    {
        if host.starts_with("http://")
            && !["http://127.", "http://localhost", "http://[::1]"]
                .iter()
                .any(|l| host.starts_with(l))
        {
            eprintln!(
                "Note: this address is not encrypted (http://); its token can be read on the way. Use https:// where the service offers it."
            );
        }
        eprintln!("{name}'s scheduled runs ping {host}.");
    }
    show(&now);
    eprintln!("Kept in {}.", settings::path().display());
    if mail_asked || pinged.is_some() {
        eprintln!("Try it: persnap monitoring test");
    }
    let watch = std::env::current_exe()
        .map_err(|e| format!("The settings are kept, but persnap cannot tell where it is installed ({e}) to run the hourly watch."))
        .and_then(|exe| alert::keep_watch(&now, &exe));
    match watch {
        Ok(Some(done)) => eprintln!("{done}"),
        Ok(None) => {}
        Err(e) => {
            return Err(Failure {
                code: 1,
                error: anyhow::anyhow!(e),
            });
        }
    }
    Ok(())
}

fn server_and_port(
    given: &str,
    security: settings::MailSecurity,
) -> Result<(String, u16), Failure> {
    let (host, port) = match given.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| bad(format!("{port} is not a port number.")))?;
            (host, port)
        }
        _ => (given, security.default_port()),
    };
    let host = host.trim().trim_matches(['[', ']']);
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(bad(format!("{given} is not a mail server's name.")));
    }
    Ok((host.to_owned(), port))
}

fn test() -> Result<(), Failure> {
    let Some(alerts) = alert::Alerts::load(alert::run_id())? else {
        eprintln!(
            "Neither mail nor a ping address is set: nothing to test. See persnap monitoring set --help."
        );
        return Ok(());
    };
    // The secrets read as root; the servers spoken to as whoever ran sudo.
    #[cfg(unix)]
    if let Some(uid) = std::env::var("SUDO_UID")
        .ok()
        .and_then(|uid| uid.parse::<u32>().ok())
        .filter(|uid| *uid != 0)
    {
        persnap::privileged::user::become_uid(uid).map_err(|e| Failure {
            code: 1,
            error: anyhow::anyhow!("cannot act as uid {uid} ({e}); nothing was sent"),
        })?;
    }
    let mut failed = 0;
    if let Some(sent) = alerts.test_mail() {
        match sent {
            Ok(()) => eprintln!("Mail: a test message was sent; check that it arrived."),
            Err(e) => {
                failed += 1;
                eprintln!("Mail: {e}");
            }
        }
    }
    for (name, sent) in alerts.test_pings() {
        match sent {
            Ok(()) => eprintln!("Ping for {name}: the service took it."),
            Err(e) => {
                failed += 1;
                eprintln!("Ping for {name}: {e}");
            }
        }
    }
    if failed > 0 {
        return Err(Failure {
            code: 1,
            error: anyhow::anyhow!("{failed} of the tests failed (said above)."),
        });
    }
    Ok(())
}

/// Where the watch remembers which missed runs (and failed runs of
/// named-account tasks, `NAME failed`) it told: beside the settings,
/// root's.
fn told_path() -> PathBuf {
    settings::path().with_file_name("monitoring.missed.json")
}

fn watch() -> Result<(), Failure> {
    use persnap::schedule::{self, Status};
    let Some(alerts) = alert::Alerts::load(alert::run_id())? else {
        eprintln!("Neither mail nor a ping address is set: nothing to tell.");
        return Ok(());
    };
    let path = told_path();
    // One watch at a time (the timer's and one run by hand would tell
    // everything twice): the second waits, then finds it told.
    let lock = path.with_extension("lock");
    let _one = persnap::fsutil::FileLock::exclusive(&lock).map_err(|e| Failure {
        code: 1,
        error: anyhow::anyhow!("The watch cannot take its lock {} ({e}).", lock.display()),
    })?;
    let mut told: std::collections::BTreeMap<String, chrono::DateTime<chrono::Utc>> =
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Default::default(),
        };
    let now = chrono::Local::now();
    // Well inside the service's 10 minutes, whatever the servers do: what
    // is left is told at the next watch.
    let budget = std::time::Instant::now() + std::time::Duration::from_secs(8 * 60);
    let mut missed = 0;
    let mut untold = 0;
    for s in schedule::list().map_err(|e| bad(format!("The schedules cannot be read ({e}).")))? {
        let runs = super::runs_as_maker(&s);
        let (key, when, summary, body) = match schedule::status(&s, &runs, now) {
            Status::Missed { due } => {
                missed += 1;
                let (summary, body) = schedule::missed_message(&s, due);
                (
                    s.name.clone(),
                    due.with_timezone(&chrono::Utc),
                    summary,
                    body,
                )
            }
            // A task that runs as a named Windows account cannot read the
            // secrets to tell its own failure (or its drill's): the watch
            // tells it, once.
            _ if s.run_as.is_some() => {
                let Some(run) = s
                    .deciding_run(&runs)
                    .filter(|r| r.outcome != persnap::history::Outcome::Completed)
                else {
                    continue;
                };
                let (summary, body) =
                    schedule::failure_message(&s.name, Some(run), "Task Scheduler");
                (format!("{} failed", s.name), run.started, summary, body)
            }
            _ => continue,
        };
        if told.get(&key) == Some(&when) {
            continue;
        }
        if std::time::Instant::now() > budget {
            untold += 1;
            continue;
        }
        eprintln!("{summary}: {body}");
        let ending = alert::Ending {
            ok: false,
            summary,
            body,
        };
        // Remembered only once every channel took it (a network not up
        // yet after boot, a mail server down): else told again next time.
        if run_ended(alerts.clone(), &s.name, ending) {
            told.insert(key, when);
            let json = serde_json::to_vec_pretty(&told).expect("times serialize");
            persnap::fsutil::atomic_write_private(&path, &json).map_err(|e| Failure {
                code: 1,
                error: anyhow::anyhow!("{} cannot be written ({e}).", path.display()),
            })?;
        } else {
            untold += 1;
        }
    }
    if missed == 0 {
        eprintln!("No scheduled run was missed.");
    }
    let summed = summary(&alerts, now);
    if untold > 0 {
        return Err(Failure {
            code: 1,
            error: anyhow::anyhow!(
                "{untold} missed or failed run(s) could not be told yet (said above); the next watch tries again."
            ),
        });
    }
    summed
}

/// When the summary was last sent: beside the settings, root's.
fn summary_sent_path() -> PathBuf {
    settings::path().with_file_name("monitoring.summary.json")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SummarySent {
    sent: chrono::DateTime<chrono::Utc>,
}

/// The summary mail, when one is set and due; its time remembered only
/// once it was sent (a mail server that is down is tried again at the
/// next watch).
fn summary(alerts: &alert::Alerts, now: chrono::DateTime<chrono::Local>) -> Result<(), Failure> {
    let path = summary_sent_path();
    let sent = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<SummarySent>(&bytes).ok())
        .map(|s| s.sent);
    // Every history is read for it: only when one is due, not every hour.
    if !alerts.summary_due(sent, now) {
        return Ok(());
    }
    let survey = super::status::survey(false, None)?;
    let alerts = alerts.clone();
    let outcome = alert::within(alert::END_LIMIT, move || alerts.summary(&survey, sent, now))
        .unwrap_or_else(|| {
            Some(Err(format!(
                "The summary mail did not finish within {} s and was left.",
                alert::END_LIMIT.as_secs()
            )))
        });
    match outcome {
        None => Ok(()),
        Some(Ok(())) => {
            eprintln!("The summary was mailed.");
            let json = serde_json::to_vec_pretty(&SummarySent {
                sent: now.with_timezone(&chrono::Utc),
            })
            .expect("times serialize");
            persnap::fsutil::atomic_write_private(&path, &json).map_err(|e| Failure {
                code: 1,
                error: anyhow::anyhow!(
                    "The summary was mailed, but {} cannot be written ({e}): the next watch mails it again.",
                    path.display()
                ),
            })
        }
        Some(Err(e)) => Err(Failure {
            code: 1,
            error: anyhow::anyhow!("{e} It is tried again at the next watch."),
        }),
    }
}

/// A problem of a scheduled run's monitoring, never its result: into the
/// log, and on standard error (the journal, for a service).
pub fn warn(problem: &str) {
    tracing::warn!("{problem}");
    eprintln!("persnap: {problem}");
}

/// A scheduled run's channels, read as root (SYSTEM) before it acts as
/// its user. A problem with them is said and logged, never fails the run.
pub fn alerts_for_run() -> Option<alert::Alerts> {
    match alert::Alerts::load(alert::run_id()) {
        Ok(alerts) => alerts,
        Err(e) => {
            warn(&format!("no ping or mail for this run: {e}"));
            None
        }
    }
}

/// The start ping of a scheduled run, on its own thread: the backup never
/// waits for it; what it said arrives on the channel (waited for at most
/// the ping's deadline after the run).
pub fn start_ping(name: &str) -> Option<std::sync::mpsc::Receiver<()>> {
    let alerts = alerts_for_run()?;
    let name = name.to_owned();
    let (done, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Err(e) = alerts.started(&name) {
            warn(&e);
        }
        let _ = done.send(());
    });
    Some(said)
}

/// Tell the channels how a scheduled run ended, within
/// [`alert::END_LIMIT`] whatever the servers do; what failed is said.
/// Whether every channel took it.
pub fn run_ended(alerts: alert::Alerts, name: &str, ending: alert::Ending) -> bool {
    let who = name.to_owned();
    let problems = alert::within(alert::END_LIMIT, move || alerts.ended(&who, &ending))
        .unwrap_or_else(|| {
            vec![format!(
                "The ping and mail for {name} did not finish within {} s and were left.",
                alert::END_LIMIT.as_secs()
            )]
        });
    let told = problems.is_empty();
    for problem in problems {
        warn(&problem);
    }
    told
}

/// After a scheduled run (root, or SYSTEM): the textfile rewritten when
/// one is set, from every schedule's history. Never fails the run: a
/// problem is said, and logged.
pub fn refresh_textfile() {
    let dir = match settings::load() {
        Ok(settings::Monitoring {
            textfile_dir: Some(dir),
            ..
        }) => dir,
        Ok(_) => return,
        Err(e) => {
            warn(&format!("the metrics textfile was not written: {e}"));
            return;
        }
    };
    let written = super::status::survey(false, None)
        .and_then(|survey| super::status::write_textfile(&dir, &survey.assessments));
    match written {
        Ok(()) => tracing::info!(
            "metrics written into {}",
            dir.join(metrics::TEXTFILE_NAME).display()
        ),
        Err(e) => {
            warn(&format!("the metrics textfile was not written: {e}"));
        }
    }
}
