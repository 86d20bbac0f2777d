//! `persnap-helper`: the small program that does persnap's privileged work.
//!
//! Started by the GUI or CLI through pkexec (Linux) or UAC (Windows) — or
//! directly when the caller is root — it reads ONE request frame, validates
//! all of it (the elevation vouches for the caller, not for the request),
//! runs the engine, and streams event frames back, ending with exactly one
//! `done` or `error` frame. A `cancel` frame, or the caller hanging up,
//! cancels the work cleanly. Frames travel over stdin/stdout, or on Windows
//! (`--pipe NAME --parent-pid PID`) over the caller's named pipe after
//! checking that the pipe's server is that parent process. It never runs a
//! shell; the only external tool (lvm) is called by absolute path with a
//! clean environment.
//!
//! Its first argument is the level of authority polkit granted
//! (`backup` or `admin`, each its own action, see `protocol::Authority`);
//! root and Windows' UAC are the admin level. What root does is listed in
//! `persnap::privileged`; a backup for a user is written by a worker
//! running as that user (`persnap-helper worker`, started by the helper
//! itself, never as root).
//!
//! Exit codes: 0 done; 2 request refused (bad input); 3 snapshot failed;
//! 4 copy failed; 5 verification failed; 6 cancelled; 7 busy; 8 the
//! request needs the administrator level; 9 protocol
//! error (bad frame, wrong version); 1 internal error.

// A Windows-subsystem program: UAC starts it without a console, so no
// console or Terminal window shows (Windows Terminal, the default terminal
// since Windows 11 22H2, shows one even for a hidden start), and none can
// be closed in the middle of a backup. It talks over its pipe.
#![cfg_attr(windows, windows_subsystem = "windows")]

use std::io::{self, BufReader, Read, Write};
#[cfg(windows)]
use std::sync::Arc;
use std::time::Duration;

use persnap::backup::{self, BackupFailure};
use persnap::error::{Error, ErrorKind};
use persnap::privileged::channel::{self, Events};
use persnap::progress::{CancelToken, Phase};
use persnap::protocol::{self, Authority, Control, FrameError, Reply, Request, Validated};
use persnap::registry::Registry;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The reflink method's lock holder, started by the helper itself as
    // the database folder's owner: it stays in the helper's mount
    // namespace, where the descriptors it was given were opened.
    #[cfg(target_os = "linux")]
    if args.first().is_some_and(|a| a == "hold-still") {
        std::process::exit(persnap::snapshot::reflink::hold_still(&args[1..]));
    }
    persnap::privileged::start();
    let code = match args.first().map(String::as_str) {
        Some("worker") if args.len() == 1 => worker(),
        _ => match level_and_channel(&args) {
            Ok((level, None)) => serve(level, Box::new(io::stdin()), Box::new(io::stdout())),
            Ok((level, Some(pipe))) => serve_pipe(level, &pipe),
            Err(e) => {
                let _ = writeln!(io::stderr(), "persnap-helper: {e}");
                ErrorKind::BadInput.exit_code()
            }
        },
    };
    std::process::exit(code);
}

/// The level polkit granted (its first argument; pkexec matched the
/// action on it), and the Windows pipe. Without pkexec the caller is root
/// or an elevated administrator: the admin level.
fn level_and_channel(
    args: &[String],
) -> Result<(Authority, Option<persnap::pipe::HelperArgs>), String> {
    let (level, rest) = match args.first().and_then(|a| Authority::from_arg(a)) {
        Some(level) => (Some(level), &args[1..]),
        None => (None, args),
    };
    let level = match (level, invoking_uid()) {
        (Some(level), Some(_)) => level,
        (None, Some(_)) => {
            return Err("started through pkexec without a level (backup or admin)".into());
        }
        (_, None) => Authority::Admin,
    };
    Ok((level, persnap::pipe::parse_helper_args(rest)?))
}

/// The user pkexec started the helper for (none: started directly).
fn invoking_uid() -> Option<u32> {
    #[cfg(unix)]
    return persnap::privileged::user::pkexec_uid();
    #[cfg(not(unix))]
    None
}

/// Windows: connect to the caller's pipe and check it is the caller's.
#[cfg(windows)]
fn serve_pipe(level: Authority, args: &persnap::pipe::HelperArgs) -> i32 {
    use persnap::pipe::windows::{Pipe, SharedPipe};
    let connected = Pipe::open(&args.pipe)
        .map_err(|e| e.to_string())
        .and_then(|pipe| {
            let server = pipe.server_pid().map_err(|e| e.to_string())?;
            persnap::pipe::check_peer("server", args.parent_pid, server)?;
            Ok(Arc::new(pipe))
        });
    match connected {
        Ok(pipe) => serve(
            level,
            Box::new(SharedPipe(Arc::clone(&pipe))),
            Box::new(SharedPipe(pipe)),
        ),
        // Nobody to tell but the exit code, which the caller reads.
        Err(_) => ErrorKind::Protocol.exit_code(),
    }
}

#[cfg(not(windows))]
fn serve_pipe(_level: Authority, _args: &persnap::pipe::HelperArgs) -> i32 {
    let _ = writeln!(
        io::stderr(),
        "persnap-helper: --pipe is only used on Windows; here requests come on stdin"
    );
    ErrorKind::BadInput.exit_code()
}

/// How long a write to the caller may block (shorter in tests, never
/// under pkexec, whose environment the caller cannot set).
fn stall_bound() -> Duration {
    let from_env = std::env::var("PERSNAP_STALL_SECS")
        .ok()
        .filter(|_| invoking_uid().is_none())
        .and_then(|s| s.parse().ok());
    from_env.map_or(channel::STALL, Duration::from_secs)
}

fn serve(level: Authority, input: Box<dyn Read + Send>, output: Box<dyn Write + Send>) -> i32 {
    persnap::fsutil::lower_io_priority();
    let events = Events::new(output, CancelToken::new(), stall_bound());
    let code = handle(level, input, events.clone());
    events.flush(Duration::from_secs(5));
    code
}

fn handle(level: Authority, input: Box<dyn Read + Send>, mut events: Events) -> i32 {
    let mut input = BufReader::new(input);
    let request = match protocol::read_frame::<Request>(&mut input) {
        Ok(r) => r,
        Err(e) => {
            return events.fail(
                &Error::Protocol {
                    detail: e.to_string(),
                },
                None,
            );
        }
    };
    let registry = Registry::system();
    // At the backup level, look at nothing a request names (no folder is
    // listed, no file opened) unless it is a registered database.
    if level == Authority::Backup
        && let Err(e) = registry.check_safe().and_then(|_| {
            let sized = matches!(
                &request,
                Request::Backup { options, .. } | Request::Probe { options, .. }
                    if options.snapshot_size.is_some()
            );
            match request.needs(&registry) {
                Authority::Backup => Ok(()),
                Authority::Admin if sized => Err(Error::NeedsAdminLevel {
                    what: "Choosing the snapshot size".into(),
                    why: String::new(),
                }),
                Authority::Admin => Err(Error::NeedsAdminLevel {
                    what: "This request".into(),
                    why: " because it is not a backup or test snapshot of a protected database (an administrator registers one with `persnap database add`)".into(),
                }),
            }
        })
    {
        return events.fail(&e, None);
    }
    // The backup location is the user's business: look at it with their
    // rights first, so root never says what is in a folder they cannot see.
    #[cfg(target_os = "linux")]
    if !to_registered_location(&request, &registry)
        && let Err(e) = user_can_see_dest(&request)
    {
        return events.fail(&e, None);
    }
    // Under pkexec a user's worker writes the backup and checks its
    // location with the user's rights (as `user_can_see_dest` just did);
    // root does not resolve it again.
    let dest: fn(&std::path::Path) -> persnap::Result<std::path::PathBuf> =
        if cfg!(target_os = "linux") && invoking_uid().is_some_and(|uid| uid != 0) {
            protocol::dest_as_given
        } else {
            backup::canonical_dest
        };
    let validated = protocol::validate_with(request, dest).and_then(|mut v| {
        v.authorize(level, &registry)?;
        Ok(v)
    });
    let validated = match validated {
        Ok(v) => v,
        Err(e) => return events.fail(&e, None),
    };
    watch_for_cancel(input, events.cancel().clone());
    let cancel = events.cancel().clone();
    match validated {
        Validated::Backup(mut req, run_as) => {
            // A protected database's location keeps only backups that
            // reached its disk and were read back from there: never a set
            // staged for a repository (any platform, whoever asks).
            if registry
                .find(&req.source, &req.store_name)
                .ok()
                .flatten()
                .is_some_and(|db| db.location.as_deref() == Some(req.dest.as_path()))
            {
                req.staged = None;
            }
            #[cfg(target_os = "linux")]
            {
                use persnap::restore::Writer;
                let writer = match registered_writer(&mut req, level, run_as, &registry) {
                    Ok(writer) => writer,
                    Err(e) => return events.fail(&e, Some(Phase::Prepare)),
                };
                let user = match writer {
                    Some(Writer::Owner { uid, .. }) => {
                        Some(persnap::privileged::user::Identity::of_uid(uid))
                    }
                    Some(Writer::Root | Writer::Administrator) => None,
                    None => backup_user(run_as),
                };
                if let Some(user) = user {
                    return match user {
                        Ok(user) => persnap::privileged::capture::backup_for(req, &user, &events),
                        Err(e) => events.fail(&e, Some(Phase::Prepare)),
                    };
                }
            }
            // Windows: the elevated administrator writes (UAC approved
            // the same user); a root caller's backup is root's own.
            #[cfg(not(target_os = "linux"))]
            let _ = run_as;
            let mut recorder = events.clone();
            match backup::run_backup(&req, &mut recorder, &mut events, &cancel) {
                Ok(report) => events.done(Reply::Backup {
                    backup_dir: report.backup_dir,
                    manifest: report.manifest,
                }),
                Err(BackupFailure { step, error, .. }) => events.fail(&error, Some(step)),
            }
        }
        Validated::Probe {
            request,
            dest_given,
            test_snapshot,
        } => {
            // For a user, root leaves the backup location alone: the front
            // end looks at it itself, with the user's rights.
            let dest_given = dest_given && invoking_uid().is_none();
            match probe(&request, dest_given, test_snapshot) {
                Ok(report) => events.done(Reply::Probe { report: *report }),
                Err(e) => events.fail(&e, Some(Phase::Prepare)),
            }
        }
        Validated::Restore(req, None) => restore(req, &events),
        Validated::Restore(req, Some(then_protect)) => {
            let target = req.target.clone();
            let (step, held) = events.holding_final();
            let code = restore(req, &step);
            let report = match held.take() {
                Some(protocol::Event::Done { result }) => match *result {
                    Reply::Restore { report, .. } => report,
                    other => return events.done(other),
                },
                Some(other) => {
                    events.send(other);
                    return code;
                }
                None => return code,
            };
            // The database is back: its protection is checked now, as any
            // protection is, and taken in the same administrator step.
            let protected = match protocol::validate_with(*then_protect, dest).and_then(|mut v| {
                v.authorize(level, &registry)?;
                Ok(v)
            }) {
                Ok(Validated::Protect(protection)) if protection.database.folder == target => {
                    let (step, held) = events.holding_final();
                    match protector(&registry).protect(*protection) {
                        Ok(p) => step.done(protected(p)),
                        Err(e) => step.fail(&e, None),
                    };
                    match held.take() {
                        Some(protocol::Event::Done { result }) => Ok(result),
                        Some(protocol::Event::Error { message, .. }) => Err(message),
                        _ => Err("the protection ended without a word".into()),
                    }
                }
                Ok(_) => Err("only the restored folder may be protected with it".into()),
                Err(e) => Err(e.to_string()),
            };
            events.done(Reply::Restore {
                report,
                protected: Some(protected),
            })
        }
        Validated::ScheduleAdd(schedule) => match protector(&registry).install_schedule(schedule) {
            Ok((schedule, installed)) => events.done(Reply::ScheduleAdded {
                schedule,
                installed,
            }),
            Err(e) => events.fail(&e, Some(Phase::Prepare)),
        },
        Validated::ScheduleRemove { name } => match persnap::schedule::uninstall(&name) {
            Ok(existed) => events.done(Reply::ScheduleRemoved { name, existed }),
            Err(e) => events.fail(&e, Some(Phase::Prepare)),
        },
        Validated::DatabaseAdd(database) => match protector(&registry).add(database) {
            Ok(database) => events.done(Reply::DatabaseAdded { database }),
            Err(e) => events.fail(&e, Some(Phase::Prepare)),
        },
        Validated::DatabaseRemove { name } => match protector(&registry).unprotect(&name) {
            Ok((existed, schedule_removed)) => events.done(Reply::DatabaseRemoved {
                name,
                existed,
                schedule_removed,
            }),
            Err(e) => events.fail(&e, Some(Phase::Prepare)),
        },
        Validated::Protect(protection) => match protector(&registry).protect(*protection) {
            Ok(p) => events.done(protected(p)),
            Err(e) => events.fail(&e, None),
        },
        Validated::MonitoringSet(update) => monitoring_set(*update, &events),
        Validated::MonitoringTest => monitoring_test(&events),
        Validated::Cleanup => {
            let removed = persnap::snapshot::sweep_all();
            let failed = removed.iter().any(|l| l.starts_with("Could not"));
            events.done(Reply::Cleanup { removed });
            if failed {
                ErrorKind::Snapshot.exit_code()
            } else {
                0
            }
        }
    }
}

/// A restore: on Linux split at the privilege line (root opens the
/// backup as the user who asked; the folder's owner writes), elsewhere
/// the elevated administrator's own.
fn restore(req: persnap::restore::RestoreRequest, events: &Events) -> i32 {
    #[cfg(target_os = "linux")]
    {
        let invoker = match invoking_user() {
            Some(Ok(user)) => Some(user),
            Some(Err(e)) => return events.fail(&e, Some(Phase::Prepare)),
            None => None,
        };
        persnap::privileged::restore::restore_for(req, invoker.as_ref(), events)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (mut recorder, mut progress) = (events.clone(), events.clone());
        let cancel = events.cancel().clone();
        match persnap::restore::run_restore(&req, &mut recorder, &mut progress, &cancel) {
            Ok(report) => events.done(Reply::Restore {
                report,
                protected: None,
            }),
            Err((step, error)) => events.fail(&error, Some(step)),
        }
    }
}

/// Protecting, with what only the helper knows: who pkexec started it
/// for, the persnap scheduled runs start, and the test snapshot (which
/// holds the database's lock and a snapshot slot).
fn protector(registry: &Registry) -> persnap::protect::protecting::Protector<'_> {
    persnap::protect::protecting::Protector {
        registry,
        invoking_uid: invoking_uid(),
        exe: scheduled_exe(),
        probe: &|req| probe(req, false, true),
    }
}

/// A protection's reply.
fn protected(p: persnap::protect::protecting::Protected) -> Reply {
    Reply::Protected {
        database: p.database,
        probe: p.probe,
        schedule: p.schedule,
        installed: p.installed,
    }
}

/// A probe: the same checks as a backup (the folder unchanged since it
/// was validated), and a test snapshot counts against the database's lock
/// and the snapshot slots.
fn probe(
    request: &backup::BackupRequest,
    dest_given: bool,
    test_snapshot: bool,
) -> persnap::Result<Box<persnap::probe::ProbeReport>> {
    #[cfg(target_os = "linux")]
    let _locks =
        persnap::privileged::capture::source_unchanged(&request.source).and_then(|_| {
            use persnap::privileged::locks;
            test_snapshot
                .then(|| {
                    let db = locks::database(&request.source, &request.store_name)?;
                    Ok((db, locks::snapshot_slot()?))
                })
                .transpose()
        })?;
    persnap::probe::probe(request, dest_given, test_snapshot).map(Box::new)
}

/// The user a backup is written as: the one pkexec started the helper
/// for, unless that is root. `None`: the helper runs for root itself.
#[cfg(target_os = "linux")]
fn invoking_user() -> Option<persnap::Result<persnap::privileged::user::Identity>> {
    let uid = invoking_uid().filter(|uid| *uid != 0)?;
    Some(persnap::privileged::user::Identity::of_uid(uid))
}

/// Whether `request` backs up a protected database into the location its
/// registration names (the registry, which only administrators write,
/// says where that is: root looks at nothing the caller chose).
#[cfg(target_os = "linux")]
fn to_registered_location(request: &Request, registry: &Registry) -> bool {
    let Request::Backup {
        source,
        store_name,
        dest,
        ..
    } = request
    else {
        return false;
    };
    registry
        .find(source, store_name)
        .ok()
        .flatten()
        .is_some_and(|db| db.location.as_deref() == Some(dest.as_path()))
}

/// For a backup of a protected database into its registered location:
/// who writes it (the location's owner, see `backup::location_writer`),
/// whoever asked. Root writes only its own backups (root itself asking,
/// for no one else): for an operator or a user's schedule a root-owned
/// location is refused, so root never runs a backup's copy and check in
/// this process for someone else. At the backup level nothing is pruned:
/// an operator's clicks cannot push restore points out; the schedule's
/// runs apply the registration's retention. `None`: any other backup
/// (written as before).
#[cfg(target_os = "linux")]
fn registered_writer(
    req: &mut persnap::backup::BackupRequest,
    level: Authority,
    run_as: Option<u32>,
    registry: &Registry,
) -> persnap::Result<Option<persnap::restore::Writer>> {
    let Some(db) = registry.find(&req.source, &req.store_name)? else {
        return Ok(None);
    };
    if db.location.as_deref() != Some(req.dest.as_path()) {
        return Ok(None);
    }
    let writer = backup::location_writer(&req.dest)?;
    let owner_now = match &writer {
        persnap::restore::Writer::Owner { uid, .. } => Some(*uid),
        persnap::restore::Writer::Root => Some(0),
        persnap::restore::Writer::Administrator => None,
    };
    if let (Some(recorded), Some(now)) = (db.location_owner, owner_now)
        && recorded != now
    {
        return Err(Error::Refused {
            field: "dest",
            reason: format!(
                "the backup location {} now belongs to uid {now}, not to uid {recorded} as when \
                 the database was protected; someone may have made it again in its place. \
                 Check the folder, then protect the database again to accept its owner",
                req.dest.display()
            ),
        });
    }
    let for_someone =
        invoking_uid().is_some_and(|uid| uid != 0) || run_as.is_some_and(|uid| uid != 0);
    if matches!(writer, persnap::restore::Writer::Root) && for_someone {
        return Err(Error::Refused {
            field: "dest",
            reason: format!(
                "the backup location {} belongs to root, and root writes only its own backups; \
                 give the folder to the account that makes this database's backups \
                 (chown ACCOUNT {}), and it writes them for everyone who asks",
                req.dest.display(),
                req.dest.display()
            ),
        });
    }
    // An operator's backup prunes nothing, and is counted apart by the
    // schedule's retention: clicks never push its restore points out.
    req.on_request = level != Authority::Admin;
    // A protected database's location keeps backups that reached the disk.
    req.staged = None;
    if req.on_request {
        req.retention = Default::default();
    }
    Ok(Some(writer))
}

/// The backup location of a backup or probe, checked with the invoking
/// user's credentials (on a thread of its own) before root looks at it.
#[cfg(target_os = "linux")]
fn user_can_see_dest(request: &Request) -> persnap::Result<()> {
    let dest = match request {
        Request::Backup { dest, .. }
        | Request::Probe {
            dest: Some(dest), ..
        } => dest,
        _ => return Ok(()),
    };
    let Some(user) = invoking_user() else {
        return Ok(());
    };
    user?.run_as(|| protocol::check_path("dest", dest, backup::canonical_dest))?
}

/// Who a backup is written as: `run_as` when the caller is root itself
/// (a scheduled run), else the invoking user; under pkexec a request for
/// anyone else is refused.
#[cfg(target_os = "linux")]
fn backup_user(
    run_as: Option<u32>,
) -> Option<persnap::Result<persnap::privileged::user::Identity>> {
    match (run_as, invoking_uid()) {
        (Some(wanted), Some(caller)) if wanted != caller => Some(Err(Error::Refused {
            field: "run_as",
            reason: format!("you (uid {caller}) may only back up as yourself, not as uid {wanted}"),
        })),
        (Some(uid), _) => Some(persnap::privileged::user::Identity::of_uid(uid)),
        (None, _) => invoking_user(),
    }
}

/// `persnap-helper worker`: the unprivileged half of a backup, started by
/// the helper as the invoking user (see `persnap::worker`). Never as root.
fn worker() -> i32 {
    use persnap::worker::{self, FromHelper, Out, WorkerRequest};
    if persnap::fsutil::is_root() || invoking_uid().is_some() {
        let _ = writeln!(
            io::stderr(),
            "persnap-helper: the worker runs only as the user a backup is for, started by the helper"
        );
        return ErrorKind::BadInput.exit_code();
    }
    let mut input = BufReader::new(io::stdin());
    let out = Out::new(Box::new(io::stdout()));
    let request = match protocol::read_frame::<WorkerRequest>(&mut input) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(io::stderr(), "persnap-helper worker: {e}");
            return ErrorKind::Protocol.exit_code();
        }
    };
    let cancel = CancelToken::new();
    let rx = worker::listen(input, cancel.clone());
    match request {
        WorkerRequest::Backup { request, source } => {
            let mut capture = FromHelper {
                source: Some(*source),
                out: out.clone(),
                rx,
                cancel: cancel.clone(),
            };
            let (mut recorder, mut progress) = (out.clone(), out.clone());
            let result = backup::run_backup_with(
                &request,
                &mut capture,
                &mut recorder,
                &mut progress,
                &cancel,
            )
            .map(|report| Reply::Backup {
                backup_dir: report.backup_dir,
                manifest: report.manifest,
            })
            .map_err(|BackupFailure { step, error, .. }| (step, error));
            out.finish(result)
        }
        WorkerRequest::Restore { request, manifest } => {
            let mut set = Some(*manifest);
            let mut open = || {
                let manifest = set.take().ok_or_else(|| Error::Protocol {
                    detail: "the backup was opened twice".into(),
                })?;
                worker::inherited_backup(manifest)
            };
            let (mut recorder, mut progress) = (out.clone(), out.clone());
            let result = persnap::restore::run_restore_from(
                &request,
                &mut open,
                &mut recorder,
                &mut progress,
                &cancel,
            )
            .map(|report| Reply::Restore {
                report,
                protected: None,
            });
            out.finish(result)
        }
    }
}

/// Cancel when the caller says so or goes away (stdin closes).
fn watch_for_cancel(mut input: BufReader<Box<dyn Read + Send>>, cancel: CancelToken) {
    std::thread::spawn(move || {
        loop {
            match protocol::read_frame::<Control>(&mut input) {
                Ok(Control::Cancel) | Err(FrameError::Eof) | Err(FrameError::Io(_)) => break,
                Err(_) => continue, // a garbled control frame is ignored, not obeyed
            }
        }
        cancel.cancel();
    });
}

/// The persnap executable a schedule runs: the one installed beside this
/// helper (development builds), else the packaged one. Never from the
/// request.
fn scheduled_exe() -> std::path::PathBuf {
    let name = format!("persnap{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|helper| Some(helper.parent()?.join(&name)))
        .filter(|p| p.is_file());
    beside.unwrap_or_else(|| std::path::PathBuf::from(INSTALLED_PERSNAP))
}

#[cfg(unix)]
const INSTALLED_PERSNAP: &str = "/usr/bin/persnap";
#[cfg(windows)]
const INSTALLED_PERSNAP: &str = r"C:\Program Files\persnap\persnap.exe";

/// Keep the monitoring settings the administrator changed (the same
/// checks as `persnap monitoring set`).
#[cfg(feature = "alerts")]
fn monitoring_set(update: persnap::monitor::settings::Update, events: &Events) -> i32 {
    let names: Vec<String> = persnap::schedule::list()
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    match persnap::monitor::alert::apply(update, &names) {
        Ok(monitoring) => {
            let watch =
                persnap::monitor::alert::keep_watch(&monitoring, &scheduled_exe()).transpose();
            events.done(Reply::MonitoringSet { monitoring, watch })
        }
        Err(e) => events.fail(&e, Some(Phase::Prepare)),
    }
}

/// Send the tests: the secrets are read as root, the network is spoken
/// as the user who asked (a server's answers never reach a root process).
#[cfg(feature = "alerts")]
fn monitoring_test(events: &Events) -> i32 {
    let alerts = match persnap::monitor::alert::Alerts::load(uuid::Uuid::new_v4()) {
        Ok(alerts) => alerts,
        Err(e) => return events.fail(&e, Some(Phase::Prepare)),
    };
    #[cfg(unix)]
    if let Some(uid) = invoking_uid().filter(|uid| *uid != 0)
        && let Err(e) = persnap::privileged::user::become_uid(uid)
    {
        return events.fail(
            &persnap::Error::Refused {
                field: "user",
                reason: e,
            },
            Some(Phase::Prepare),
        );
    }
    let (mail, pings) = match &alerts {
        Some(alerts) => (alerts.test_mail(), alerts.test_pings()),
        None => (None, Vec::new()),
    };
    events.done(Reply::MonitoringTested { mail, pings })
}

#[cfg(not(feature = "alerts"))]
fn monitoring_set(_: persnap::monitor::settings::Update, events: &Events) -> i32 {
    monitoring_test(events)
}

#[cfg(not(feature = "alerts"))]
fn monitoring_test(events: &Events) -> i32 {
    events.fail(
        &persnap::Error::Refused {
            field: "type",
            reason: "this helper was built without mail and pings".into(),
        },
        Some(Phase::Prepare),
    )
}
