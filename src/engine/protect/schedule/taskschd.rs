//! Windows schedules: one Task Scheduler task per schedule, `\persnap\NAME`.
//!
//! The task runs `persnap.exe schedule run NAME` as SYSTEM with the
//! highest privileges (no UAC prompt, whether anybody
//! is logged on or not), starts a missed run as soon as it can
//! (`StartWhenAvailable`), never runs two at once, and stops after 12
//! hours. It is registered from XML with `schtasks.exe /Create /XML` (by
//! its absolute path in the system folder, no shell). A failed run exits
//! non-zero (the task's "Last Run Result") and raises a notification in the
//! user's session (`persnap schedule notify`).
//!
//! Each schedule is kept as JSON in `%ProgramData%\persnap\schedules`, a
//! folder only administrators may change: `list` reads it (definitions of
//! SYSTEM tasks are not readable by ordinary users), and the task's run
//! reads its backup from it ([`recorded`]). No path is on the task's
//! command line, because Task Scheduler expands `%VARIABLE%` in a task's
//! arguments, with no way to escape it: a folder named `100%` or
//! `%TEMP%` would otherwise be backed up from, or to, somewhere else.

use std::path::{Path, PathBuf};

#[cfg(windows)]
use super::{Installed, validate_name};
use super::{Schedule, When};
#[cfg(windows)]
use crate::error::{Error, Result};

/// The task folder all persnap tasks live in.
pub const TASK_FOLDER: &str = "\\persnap\\";

/// `\persnap\NAME`.
pub fn task_name(name: &str) -> String {
    format!("{TASK_FOLDER}{name}")
}

/// Where schedules are listed: `%ProgramData%\persnap\schedules` (or
/// `PERSNAP_SCHEDULE_DIR`).
pub fn registry_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PERSNAP_SCHEDULE_DIR") {
        return PathBuf::from(dir);
    }
    #[cfg(windows)]
    return crate::sys::admin_root().join("schedules");
    #[cfg(not(windows))]
    PathBuf::from(r"C:\ProgramData\persnap\schedules")
}

/// Where a schedule's SYSTEM runs keep their history: beside the record,
/// in the administrators' folder (readable by users), never in a folder a
/// user controls (which a junction could send anywhere).
pub fn history_dir(name: &str) -> PathBuf {
    registry_dir().join("history").join(name)
}

/// One argument for a Windows command line, quoted so that
/// `CommandLineToArgvW` (and Rust's `std::env::args`) reads it back.
pub fn quote_arg(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_owned();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(backslashes * 2));
    out.push('"');
    out
}

/// Text for an XML element or attribute.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The arguments of the task's action: the schedule's name only (plain
/// letters, digits and dashes, so nothing in it is expanded or quoted).
pub fn arguments(s: &Schedule) -> String {
    ["schedule", "run", s.name.as_str()].join(" ")
}

/// The arguments of the backup a schedule's run makes, as `persnap` reads
/// them: everything the record says (no environment in a task: the
/// history folder goes on the line too).
pub fn run_args(s: &Schedule) -> Vec<String> {
    let mut args = s.backup_args();
    args.extend([
        "--history-dir".into(),
        s.history_dir.to_string_lossy().into(),
    ]);
    args
}

/// The schedule `name` as recorded in `dir`, for its task's run. The
/// folder must be the administrators' alone (a run as SYSTEM must not take
/// its orders from a file a user could write), and the record must be a
/// plain file named for the schedule it holds.
pub fn recorded_in(dir: &Path, name: &str) -> crate::Result<Schedule> {
    use crate::error::Error;
    super::validate_name(name)?;
    let hint = "Run `persnap schedule add` again as administrator to re-create the schedule.";
    let path = dir.join(format!("{name}.json"));
    // The folder and the record itself: a user who made the record before
    // the folder was taken over must not have it run as SYSTEM.
    #[cfg(windows)]
    crate::sys::owned_by_admins(dir)
        .and_then(|()| crate::sys::owned_by_admins(&path))
        .map_err(Error::io("trust", &path, hint))?;
    let mut bytes = Vec::new();
    crate::sys::open_nofollow(&path)
        .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
        .map_err(Error::io("read", &path, hint))?;
    let s: Schedule = serde_json::from_slice(&bytes).map_err(|e| Error::Refused {
        field: "schedule",
        reason: format!(
            "{} is not a schedule persnap wrote ({e}). {hint}",
            path.display()
        ),
    })?;
    // The runs record where `schedule add` put their history (the
    // administrators' folder for this schedule), nowhere a record says.
    #[cfg(windows)]
    if s.history_dir != dir.join("history").join(name) {
        return Err(Error::Refused {
            field: "schedule",
            reason: format!(
                "{} sends the runs' history to {}, not to {}. {hint}",
                path.display(),
                s.history_dir.display(),
                dir.join("history").join(name).display()
            ),
        });
    }
    if s.name != name {
        return Err(Error::Refused {
            field: "schedule",
            reason: format!(
                "{} holds the schedule {:?}, not {name:?}. {hint}",
                path.display(),
                s.name
            ),
        });
    }
    Ok(s)
}

/// [`recorded_in`] the schedules folder, for a run by the account the task
/// runs as: a backup into a repository alone is staged in that account's
/// own folder (`staging`: SYSTEM's profile, or the `--run-as` account's),
/// not in the one recorded — the staging folder of the administrator who
/// made the schedule, which the account may not write, and in which SYSTEM
/// should not write.
pub fn recorded(
    name: &str,
    staging: impl FnOnce() -> crate::Result<PathBuf>,
) -> crate::Result<Schedule> {
    for_this_account(recorded_in(&registry_dir(), name)?, staging)
}

fn for_this_account(
    mut s: Schedule,
    staging: impl FnOnce() -> crate::Result<PathBuf>,
) -> crate::Result<Schedule> {
    if s.repository.as_ref().is_some_and(|r| r.staged) {
        s.dest = staging()?;
    }
    Ok(s)
}

/// The trigger for `when`; `None` for systemd calendar expressions, which
/// Task Scheduler cannot express.
pub fn trigger(when: &When) -> Option<String> {
    let start = |t: &chrono::NaiveTime| format!("2020-01-01T{}", t.format("%H:%M:00"));
    Some(match when {
        When::Hourly => format!(
            "<CalendarTrigger><StartBoundary>{}</StartBoundary>\
             <Repetition><Interval>PT1H</Interval><Duration>P1D</Duration>\
             <StopAtDurationEnd>false</StopAtDurationEnd></Repetition>\
             <ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay></CalendarTrigger>",
            start(&chrono::NaiveTime::MIN)
        ),
        When::Daily(t) => format!(
            "<CalendarTrigger><StartBoundary>{}</StartBoundary>\
             <ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay></CalendarTrigger>",
            start(t)
        ),
        When::Weekly(days, t) => format!(
            "<CalendarTrigger><StartBoundary>{}</StartBoundary><ScheduleByWeek>\
             <WeeksInterval>1</WeeksInterval><DaysOfWeek>{}</DaysOfWeek></ScheduleByWeek>\
             </CalendarTrigger>",
            start(t),
            days.iter()
                .map(|d| format!("<{}/>", task_day(*d)))
                .collect::<String>()
        ),
        When::Calendar(_) => return None,
    })
}

/// The element name Task Scheduler uses for a day.
fn task_day(d: chrono::Weekday) -> &'static str {
    use chrono::Weekday::*;
    match d {
        Mon => "Monday",
        Tue => "Tuesday",
        Wed => "Wednesday",
        Thu => "Thursday",
        Fri => "Friday",
        Sat => "Saturday",
        Sun => "Sunday",
    }
}

/// Who the task runs as: SYSTEM, or the schedule's account, logged on
/// with the password Task Scheduler stores (so it reaches network shares
/// with that account's rights, whether anybody is logged on or not).
fn principal(s: &Schedule) -> String {
    match &s.run_as {
        None => "<UserId>S-1-5-18</UserId>".into(),
        Some(account) => format!(
            "<UserId>{}</UserId>\n      <LogonType>Password</LogonType>",
            xml_escape(account)
        ),
    }
}

/// The whole task definition.
pub fn task_xml(s: &Schedule, exe: &Path, trigger: &str) -> String {
    task_document(&TaskParts {
        description: &format!(
            "persnap backup {}: {} to {} ({})",
            s.name,
            s.source.display(),
            s.dest.display(),
            s.when.describe()
        ),
        uri: &task_name(&s.name),
        trigger,
        principal: &principal(s),
        limit: &format!("PT{}H", super::RUN_TIME_LIMIT_HOURS),
        command: &exe.to_string_lossy(),
        arguments: &arguments(s),
    })
}

/// What differs between persnap's tasks; everything else (never stopped
/// on battery, started as soon as it can after a missed start, one run at
/// a time, low priority) is the same for each.
pub struct TaskParts<'a> {
    pub description: &'a str,
    pub uri: &'a str,
    /// A trigger element ([`trigger`]).
    pub trigger: &'a str,
    /// The principal's elements (`<UserId>…`).
    pub principal: &'a str,
    /// `ExecutionTimeLimit`, as ISO 8601 (`PT12H`).
    pub limit: &'a str,
    pub command: &'a str,
    pub arguments: &'a str,
}

/// A task definition for Task Scheduler's `/XML`.
pub fn task_document(t: &TaskParts) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Author>persnap</Author>
    <Description>{description}</Description>
    <URI>{uri}</URI>
  </RegistrationInfo>
  <Triggers>
    {trigger}
  </Triggers>
  <Principals>
    <Principal id="Author">
      {principal}
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>{limit}</ExecutionTimeLimit>
    <Priority>7</Priority>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{command}</Command>
      <Arguments>{arguments}</Arguments>
    </Exec>
  </Actions>
</Task>
"#,
        description = xml_escape(t.description),
        uri = xml_escape(t.uri),
        trigger = t.trigger,
        principal = t.principal,
        limit = t.limit,
        command = xml_escape(t.command),
        arguments = xml_escape(t.arguments),
    )
}

/// Every schedule kept in `dir`.
pub fn list(dir: &Path) -> crate::Result<Vec<Schedule>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(crate::Error::io(
                "read",
                dir,
                "Check the permissions of the folder.",
            )(e));
        }
    };
    let mut found: Vec<Schedule> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<Schedule>(&bytes).ok())
        .filter(|s| super::validate_name(&s.name).is_ok())
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// `C:\Windows\System32\schtasks.exe`, from the system folder Windows
/// reports (never PATH).
#[cfg(windows)]
fn schtasks() -> PathBuf {
    crate::sys::system_dir().join("schtasks.exe")
}

#[cfg(windows)]
pub fn run_schtasks(args: &[&std::ffi::OsStr]) -> Result<crate::tool::ToolOutput> {
    let program = schtasks();
    crate::tool::run(&program, args, std::time::Duration::from_secs(60)).map_err(|e| Error::Tool {
        action: "run schtasks.exe".into(),
        reason: e.to_string(),
        hint: "Task Scheduler must be available (the \"Task Scheduler\" service running).",
    })
}

/// Register the task from its XML (replacing one of the same name), then
/// record the schedule for `list`.
#[cfg(windows)]
pub fn install(s: &Schedule, exe: &Path) -> Result<Installed> {
    let trigger = trigger(&s.when).ok_or_else(|| Error::Refused {
        field: "at",
        reason: format!(
            "{:?} is a systemd calendar expression; on Windows say hourly, daily, a time (02:30) or days and a time (\"Mon..Fri 22:00\")",
            s.when.to_string()
        ),
    })?;
    // What the task runs as SYSTEM must be the administrators' alone: a
    // persnap.exe in a folder users may change (a copy under C:\ or a data
    // drive inherits "Authenticated Users: Modify") would be theirs to
    // replace, and run with the machine's highest rights.
    exe_admin_only(exe)?;
    // The folder is the administrators' alone (owner, protected DACL), so
    // nobody else can plant or rewrite the XML between this write and
    // schtasks' read; the file is created new, never opened if it exists.
    let dir = registry_dir();
    crate::sys::create_admin_dir(&dir)
        .and_then(|()| crate::sys::owned_by_admins(&dir))
        .map_err(Error::io("secure", &dir, "Run persnap as administrator."))?;
    // The record first (the task's runs read it): if it cannot be written,
    // no task exists that would run an older or planted one.
    let json = dir.join(format!("{}.json", s.name));
    let bytes = serde_json::to_vec_pretty(s).expect("schedules serialize");
    crate::fsutil::atomic_write(&json, &bytes)
        .and_then(|()| crate::sys::owned_by_admins(&json))
        .map_err(Error::io("write", &json, "Run persnap as administrator."))?;
    let task = task_name(&s.name);
    // The password goes to schtasks, which hands it to Task Scheduler to
    // store; persnap keeps it nowhere.
    let account: Vec<&std::ffi::OsStr> = match &s.run_as {
        Some(account) => vec![
            "/RU".as_ref(),
            account.as_ref(),
            "/RP".as_ref(),
            s.password.0.as_ref(),
        ],
        None => Vec::new(),
    };
    let out = register(&dir, &s.name, &task, &task_xml(s, exe, &trigger), &account);
    let out = out.inspect_err(|_| {
        let _ = std::fs::remove_file(&json);
    })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&json);
        return Err(Error::Tool {
            action: format!("create the scheduled task {task}"),
            reason: out.said(),
            hint: if s.run_as.is_some() {
                "Check the account name and its password; the account also needs the right to log on as a batch job."
            } else {
                "Creating a task that runs as SYSTEM needs administrator rights."
            },
        });
    }
    Ok(Installed {
        written: vec![task.clone(), json.display().to_string()],
        active: true,
        note: match (&s.run_as, super::network_note(s)) {
            (Some(account), _) => format!(
                "The task {task} is in Task Scheduler (runs as {account}, highest privileges, whether anybody is logged on or not)."
            ),
            (None, Some(network)) => format!(
                "The task {task} is in Task Scheduler (runs as SYSTEM, highest privileges). {network}"
            ),
            (None, None) => format!(
                "The task {task} is in Task Scheduler (runs as SYSTEM, highest privileges)."
            ),
        },
    })
}

/// Register `task` from `xml` (replacing one of the same name), the XML
/// written to `.STEM.task.xml` in `dir` — the administrators' folder, made
/// so by the caller — created new, so that nobody else can plant or
/// rewrite it before schtasks reads it, and removed after. `extra`: more
/// `schtasks /Create` arguments. What schtasks said, for the caller to
/// judge.
#[cfg(windows)]
pub fn register(
    dir: &Path,
    stem: &str,
    task: &str,
    xml: &str,
    extra: &[&std::ffi::OsStr],
) -> Result<crate::tool::ToolOutput> {
    let xml_path = dir.join(format!(".{stem}.task.xml"));
    let _ = std::fs::remove_file(&xml_path);
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&xml_path)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(&utf16_with_bom(xml))
        })
        .map_err(Error::io(
            "write",
            &xml_path,
            "Run persnap as administrator.",
        ))?;
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "/Create".as_ref(),
        "/TN".as_ref(),
        task.as_ref(),
        "/XML".as_ref(),
        xml_path.as_os_str(),
        "/F".as_ref(),
    ];
    args.extend(extra);
    let out = run_schtasks(&args);
    let _ = std::fs::remove_file(&xml_path);
    out
}

/// Delete `task`. Failing is an error (with `hint`) only when the task is
/// still there afterwards; whether it was deleted comes back.
#[cfg(windows)]
pub fn delete(
    task: &str,
    hint: &'static str,
    schtasks: impl Fn(&[&std::ffi::OsStr]) -> Result<crate::tool::ToolOutput>,
) -> Result<bool> {
    let deleted = schtasks(&[
        "/Delete".as_ref(),
        "/TN".as_ref(),
        task.as_ref(),
        "/F".as_ref(),
    ])?;
    if !deleted.status.success() {
        let still = schtasks(&["/Query".as_ref(), "/TN".as_ref(), task.as_ref()])?;
        if still.status.success() {
            return Err(Error::Tool {
                action: format!("remove the scheduled task {task}"),
                reason: deleted.said(),
                hint,
            });
        }
    }
    Ok(deleted.status.success())
}

/// Refuse to have a task run `exe` when anyone but administrators could
/// replace it: the file, its folder and the folders above (which may, like
/// stock `C:\` and Program Files, let others add but not change or remove).
#[cfg(windows)]
pub fn exe_admin_only(exe: &Path) -> Result<()> {
    let folder = exe.parent().unwrap_or(exe);
    crate::sys::owned_by_admins(exe)
        .and_then(|()| crate::fsutil::admin_only_folder(folder))
        .map_err(|e| Error::Refused {
            field: "program",
            reason: format!(
                "a scheduled task would run {} with the machine's highest rights, but {e}. Install persnap with its setup program (into {}) and schedule from there.",
                exe.display(),
                crate::sys::program_files().join("persnap").display()
            ),
        })
}

/// Delete the task and its record.
#[cfg(windows)]
pub fn uninstall(name: &str) -> Result<bool> {
    uninstall_with(name, &registry_dir(), run_schtasks)
}

/// [`uninstall`], with `schtasks` given (tests make it fail). A task that
/// stays after `/Delete` failed is an error that says why, and its record
/// stays with it (a task whose record is gone would run nothing and be
/// listed nowhere); a task that was not there is not.
#[cfg(windows)]
fn uninstall_with(
    name: &str,
    dir: &Path,
    schtasks: impl Fn(&[&std::ffi::OsStr]) -> Result<crate::tool::ToolOutput>,
) -> Result<bool> {
    validate_name(name)?;
    let deleted = delete(
        &task_name(name),
        "Remove it in Task Scheduler (folder persnap), or run `persnap schedule remove` again as administrator.",
        schtasks,
    )?;
    let json = dir.join(format!("{name}.json"));
    let recorded = match std::fs::remove_file(&json) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(Error::io("remove", &json, "Run persnap as administrator.")(
                e,
            ));
        }
    };
    Ok(deleted || recorded)
}

/// schtasks reads task XML as UTF-16 (it says so in the declaration).
pub fn utf16_with_bom(text: &str) -> Vec<u8> {
    std::iter::once(0xFEFFu16)
        .chain(text.encode_utf16())
        .flat_map(u16::to_le_bytes)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::MethodChoice;
    use crate::retention::RetentionPolicy;

    fn sample(when: &str) -> Schedule {
        Schedule {
            name: "nightly".into(),
            source: r"C:\Apama\my store".into(),
            dest: r"D:\Backups\apama".into(),
            store_name: "persistence.db".into(),
            method: MethodChoice::Auto,
            retention: RetentionPolicy {
                keep_last: Some(7),
                keep_days: None,
            },
            pace: Default::default(),
            when: When::parse(when).unwrap(),
            history_dir: r"C:\Users\op & co\AppData\Roaming\persnap\data".into(),
            created: None,
            uid: None,
            run_as: None,
            password: Default::default(),
            repository: None,
            unlock: None,
            offsite: None,
            offsite_unlock: None,
            drill: false,
        }
    }

    /// What `CommandLineToArgvW` does, for the round trip.
    fn split_windows(line: &str) -> Vec<String> {
        let mut args = Vec::new();
        let mut cur = String::new();
        let mut in_quotes = false;
        let mut have = false;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\\' {
                let start = i;
                while i < chars.len() && chars[i] == '\\' {
                    i += 1;
                }
                let n = i - start;
                if i < chars.len() && chars[i] == '"' {
                    cur.push_str(&"\\".repeat(n / 2));
                    if n % 2 == 1 {
                        cur.push('"');
                        i += 1;
                    }
                } else {
                    cur.push_str(&"\\".repeat(n));
                }
                have = true;
                continue;
            }
            match c {
                '"' => {
                    in_quotes = !in_quotes;
                    have = true;
                }
                ' ' | '\t' if !in_quotes => {
                    if have {
                        args.push(std::mem::take(&mut cur));
                        have = false;
                    }
                }
                c => {
                    cur.push(c);
                    have = true;
                }
            }
            i += 1;
        }
        if have {
            args.push(cur);
        }
        args
    }

    #[test]
    fn arguments_survive_windows_quoting() {
        for arg in [
            "plain",
            "",
            "with space",
            r"C:\dir with space\",
            r#"quote"inside"#,
            r#"back\"slash"#,
            r"trailing\\",
        ] {
            assert_eq!(
                split_windows(&quote_arg(arg)),
                vec![arg.to_owned()],
                "{arg:?}"
            );
        }
        let mut s = sample("02:00");
        s.source = r"C:\Apama\100% %TEMP% store".into();
        assert_eq!(arguments(&s), "schedule run nightly");
        let args = split_windows(
            &run_args(&s)
                .iter()
                .map(|a| quote_arg(a))
                .collect::<Vec<_>>()
                .join(" "),
        );
        assert_eq!(args[0], "backup");
        assert_eq!(args[2], r"C:\Apama\100% %TEMP% store");
        assert_eq!(
            args[args.len() - 4..],
            [
                "--scheduled",
                "nightly",
                "--history-dir",
                r"C:\Users\op & co\AppData\Roaming\persnap\data"
            ]
        );
    }

    #[test]
    fn a_schedule_can_run_as_a_named_account_for_network_locations() {
        let mut s = sample("02:00");
        s.dest = r"\\?\UNC\nas\backups\apama".into();
        let note = crate::schedule::network_note(&s).unwrap();
        assert!(
            note.contains("COMPUTER$") && note.contains("--run-as"),
            "{note}"
        );
        s.run_as = Some(r"CORP\svc-backup".into());
        s.password = crate::schedule::Secret("hunter2".into());
        assert!(crate::schedule::network_note(&s).is_none());
        let xml = task_xml(
            &s,
            Path::new(r"C:\p\persnap.exe"),
            &trigger(&s.when).unwrap(),
        );
        assert!(xml.contains(r"<UserId>CORP\svc-backup</UserId>"), "{xml}");
        assert!(xml.contains("<LogonType>Password</LogonType>"), "{xml}");
        assert!(
            xml.contains("<RunLevel>HighestAvailable</RunLevel>"),
            "{xml}"
        );
        assert!(
            !xml.contains("S-1-5-18") && !xml.contains("hunter2"),
            "{xml}"
        );
        let record = serde_json::to_string(&s).unwrap();
        assert!(
            record.contains("svc-backup") && !record.contains("hunter2"),
            "{record}"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        for good in [
            r"CORP\svc-backup",
            r".\backup",
            "backup@corp.example",
            "Backup Operator",
        ] {
            crate::schedule::validate_account(good).unwrap();
        }
        for bad in [
            "",
            r"CORP\",
            r"\user",
            "a/b",
            "x\"y",
            "%USERNAME%",
            "a\nb",
            r"a\b\c",
        ] {
            assert!(crate::schedule::validate_account(bad).is_err(), "{bad:?}");
        }
        assert!(crate::schedule::network_note(&sample("02:00")).is_none());
        assert!(crate::schedule::is_network_path(Path::new(r"\\nas\share")));
        assert!(!crate::schedule::is_network_path(Path::new(r"\\?\C:\x")));
    }

    #[test]
    fn no_path_reaches_the_tasks_command_line() {
        let mut s = sample("02:00");
        s.source = r"C:\%SystemRoot%\store".into();
        s.dest = r"D:\100%\backups".into();
        let xml = task_xml(
            &s,
            Path::new(r"C:\Program Files\persnap\persnap.exe"),
            &trigger(&s.when).unwrap(),
        );
        let line = xml.lines().find(|l| l.contains("<Arguments>")).unwrap();
        assert_eq!(line.trim(), "<Arguments>schedule run nightly</Arguments>");
    }

    #[test]
    fn a_run_reads_only_the_record_of_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        #[cfg(windows)]
        crate::sys::create_admin_dir(dir.path()).unwrap();
        let mut s = sample("02:00");
        if cfg!(windows) {
            // Elsewhere than the administrators' history folder: refused.
            std::fs::write(
                dir.path().join("nightly.json"),
                serde_json::to_vec(&s).unwrap(),
            )
            .unwrap();
            let err = recorded_in(dir.path(), "nightly").unwrap_err().to_string();
            assert!(err.contains("sends the runs' history to"), "{err}");
            s.history_dir = dir.path().join("history").join("nightly");
        }
        std::fs::write(
            dir.path().join("nightly.json"),
            serde_json::to_vec(&s).unwrap(),
        )
        .unwrap();
        assert_eq!(recorded_in(dir.path(), "nightly").unwrap(), s);
        let mut other = s.clone();
        other.history_dir = dir.path().join("history").join("other");
        if !cfg!(windows) {
            other.history_dir = s.history_dir.clone();
        }
        std::fs::write(
            dir.path().join("other.json"),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        let err = recorded_in(dir.path(), "other").unwrap_err().to_string();
        assert!(err.contains("not \"other\""), "{err}");
        assert!(recorded_in(dir.path(), "missing").is_err());
        assert!(recorded_in(dir.path(), "../nightly").is_err());
        std::fs::write(dir.path().join("junk.json"), b"{").unwrap();
        let err = recorded_in(dir.path(), "junk").unwrap_err().to_string();
        assert!(err.contains("not a schedule persnap wrote"), "{err}");
    }

    #[test]
    fn task_xml_runs_as_system_at_the_right_times() {
        let s = sample("Mon..Fri 22:30");
        let xml = task_xml(
            &s,
            Path::new(r"C:\Program Files\persnap\persnap.exe"),
            &trigger(&s.when).unwrap(),
        );
        for want in [
            "<UserId>S-1-5-18</UserId>",
            "<RunLevel>HighestAvailable</RunLevel>",
            "<StartWhenAvailable>true</StartWhenAvailable>",
            "<MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>",
            "<StartBoundary>2020-01-01T22:30:00</StartBoundary>",
            "<DaysOfWeek><Monday/><Tuesday/><Wednesday/><Thursday/><Friday/></DaysOfWeek>",
            r"<Command>C:\Program Files\persnap\persnap.exe</Command>",
            "<Arguments>schedule run nightly</Arguments>",
            "<URI>\\persnap\\nightly</URI>",
        ] {
            assert!(xml.contains(want), "{want} missing from\n{xml}");
        }
        assert!(
            trigger(&When::Hourly)
                .unwrap()
                .contains("<Interval>PT1H</Interval>")
        );
        assert!(trigger(&When::Calendar("*-*-01".into())).is_none());
    }

    #[test]
    fn a_run_into_a_repository_alone_stages_in_the_running_accounts_folder() {
        let own = || {
            Ok(PathBuf::from(
                r"C:\Windows\system32\config\systemprofile\staging",
            ))
        };
        let mut s = sample("hourly");
        assert_eq!(for_this_account(s.clone(), own).unwrap().dest, s.dest);
        s.repository = Some(crate::schedule::ScheduleRepository {
            location: "C:\\repo".into(),
            keep: Default::default(),
            staged: true,
        });
        let run = for_this_account(s.clone(), own).unwrap();
        assert_eq!(run.dest, own().unwrap());
        assert!(run_args(&run).contains(&own().unwrap().to_string_lossy().into_owned()));
    }

    #[test]
    fn the_registry_lists_what_was_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample("hourly");
        std::fs::write(
            dir.path().join("nightly.json"),
            serde_json::to_vec(&s).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("junk.json"), b"{").unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![s]);
    }
}

#[cfg(all(test, windows))]
mod windows_tests {
    use super::*;
    use std::os::windows::process::ExitStatusExt;

    fn said(code: u32, stderr: &str) -> crate::tool::ToolOutput {
        crate::tool::ToolOutput {
            status: std::process::ExitStatus::from_raw(code),
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    /// schtasks as it answers when the task exists and may not be deleted
    /// (`delete_ok` false), or is deleted, or was never there.
    fn schtasks(
        exists: bool,
        delete_ok: bool,
    ) -> impl Fn(&[&std::ffi::OsStr]) -> Result<crate::tool::ToolOutput> {
        move |args| {
            Ok(match args[0].to_str().unwrap() {
                "/Delete" if exists && delete_ok => said(0, ""),
                "/Delete" if exists => said(1, "ERROR: Access is denied."),
                "/Delete" => said(1, "ERROR: The system cannot find the file specified."),
                "/Query" if exists => said(0, ""),
                "/Query" => said(1, "ERROR: The system cannot find the file specified."),
                other => panic!("unexpected schtasks {other}"),
            })
        }
    }

    #[test]
    fn a_task_that_could_not_be_deleted_is_reported_and_keeps_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("nightly.json");
        std::fs::write(&record, b"{}").unwrap();
        let err = uninstall_with("nightly", dir.path(), schtasks(true, false))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Access is denied") && err.contains(r"\persnap\nightly"),
            "{err}"
        );
        assert!(record.exists(), "the record of a task still there stays");

        assert!(uninstall_with("nightly", dir.path(), schtasks(true, true)).unwrap());
        assert!(!record.exists());
        // Neither task nor record: nothing was removed, and that is no error.
        assert!(!uninstall_with("nightly", dir.path(), schtasks(false, false)).unwrap());
        // A record whose task was already gone is removed.
        std::fs::write(&record, b"{}").unwrap();
        assert!(uninstall_with("nightly", dir.path(), schtasks(false, false)).unwrap());
        assert!(!record.exists());
    }
}
