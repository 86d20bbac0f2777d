//! Windows schedules: one Task Scheduler task per schedule, `\persnap\NAME`.
//!
//! The task runs `persnap.exe backup … --scheduled NAME --history-dir DIR`
//! as SYSTEM with the highest privileges (no UAC prompt, whether anybody
//! is logged on or not), starts a missed run as soon as it can
//! (`StartWhenAvailable`), never runs two at once, and stops after 12
//! hours. It is registered from XML with `schtasks.exe /Create /XML` (by
//! its absolute path in the system folder, no shell). A failed run exits
//! non-zero (the task's "Last Run Result") and raises a notification in the
//! user's session (`persnap schedule notify`).
//!
//! Task definitions of SYSTEM tasks are not readable by ordinary users, so
//! each schedule is also kept as JSON in `%ProgramData%\persnap\schedules`,
//! which `list` reads.

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
    std::env::var_os("ProgramData")
        .map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from)
        .join("persnap")
        .join("schedules")
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

/// The arguments of the task's action.
pub fn arguments(s: &Schedule) -> String {
    let mut args = s.backup_args();
    // No environment in a task: the history folder goes on the line.
    args.extend([
        "--history-dir".into(),
        s.history_dir.to_string_lossy().into(),
    ]);
    args.iter()
        .map(|a| quote_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
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

/// The whole task definition.
pub fn task_xml(s: &Schedule, exe: &Path, trigger: &str) -> String {
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
      <UserId>S-1-5-18</UserId>
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
    <ExecutionTimeLimit>PT12H</ExecutionTimeLimit>
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
        description = xml_escape(&format!(
            "persnap backup {}: {} to {} ({})",
            s.name,
            s.source.display(),
            s.dest.display(),
            s.when.describe()
        )),
        uri = xml_escape(&task_name(&s.name)),
        command = xml_escape(&exe.to_string_lossy()),
        arguments = xml_escape(&arguments(s)),
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
    let mut buf = [0u16; 260];
    // SAFETY: the buffer's length is passed with it.
    let n =
        unsafe { winapi::um::sysinfoapi::GetSystemDirectoryW(buf.as_mut_ptr(), buf.len() as u32) }
            as usize;
    let dir = if n > 0 && n < buf.len() {
        PathBuf::from(String::from_utf16_lossy(&buf[..n]))
    } else {
        PathBuf::from(r"C:\Windows\System32")
    };
    dir.join("schtasks.exe")
}

#[cfg(windows)]
fn run_schtasks(args: &[&std::ffi::OsStr]) -> Result<crate::tool::ToolOutput> {
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
    // The folder is the administrators' alone (owner, protected DACL), so
    // nobody else can plant or rewrite the XML between this write and
    // schtasks' read; the file is created new, never opened if it exists.
    let dir = registry_dir();
    crate::sys::create_admin_dir(&dir)
        .and_then(|()| crate::sys::owned_by_admins(&dir))
        .map_err(Error::io("secure", &dir, "Run persnap as administrator."))?;
    let xml_path = dir.join(format!(".{}.task.xml", s.name));
    let _ = std::fs::remove_file(&xml_path);
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&xml_path)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(&utf16_with_bom(&task_xml(s, exe, &trigger)))
        })
        .map_err(Error::io(
            "write",
            &xml_path,
            "Run persnap as administrator.",
        ))?;
    let task = task_name(&s.name);
    let out = run_schtasks(&[
        "/Create".as_ref(),
        "/TN".as_ref(),
        task.as_ref(),
        "/XML".as_ref(),
        xml_path.as_os_str(),
        "/F".as_ref(),
    ]);
    let _ = std::fs::remove_file(&xml_path);
    let out = out?;
    if !out.status.success() {
        return Err(Error::Tool {
            action: format!("create the scheduled task {task}"),
            reason: format!("{} {}", out.stdout.trim(), out.reason()),
            hint: "Creating a task that runs as SYSTEM needs administrator rights.",
        });
    }
    let json = dir.join(format!("{}.json", s.name));
    let bytes = serde_json::to_vec_pretty(s).expect("schedules serialize");
    crate::fsutil::atomic_write(&json, &bytes).map_err(Error::io(
        "write",
        &json,
        "Run persnap as administrator.",
    ))?;
    Ok(Installed {
        written: vec![task.clone(), json.display().to_string()],
        active: true,
        note: format!("The task {task} is in Task Scheduler (runs as SYSTEM, highest privileges)."),
    })
}

/// Delete the task and its record.
#[cfg(windows)]
pub fn uninstall(name: &str) -> Result<bool> {
    validate_name(name)?;
    let task = task_name(name);
    let out = run_schtasks(&[
        "/Delete".as_ref(),
        "/TN".as_ref(),
        task.as_ref(),
        "/F".as_ref(),
    ])?;
    let json = registry_dir().join(format!("{name}.json"));
    let recorded = match std::fs::remove_file(&json) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(Error::io("remove", &json, "Run persnap as administrator.")(
                e,
            ));
        }
    };
    Ok(out.status.success() || recorded)
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
            when: When::parse(when).unwrap(),
            history_dir: r"C:\Users\op & co\AppData\Roaming\persnap\data".into(),
            created: None,
            uid: None,
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
        let args = split_windows(&arguments(&sample("02:00")));
        assert_eq!(args[0], "backup");
        assert_eq!(args[2], r"C:\Apama\my store");
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
            "op &amp; co",
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
