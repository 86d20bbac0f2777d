//! Linux schedules: one systemd timer and service per schedule.
//!
//! The service runs `persnap backup … --scheduled NAME` as root (so no
//! pkexec prompt), with `PERSNAP_DATA_DIR` pointing at the history of the
//! user who made the schedule. Failed runs exit non-zero, so systemd marks
//! the service failed (`systemctl --failed`). The timer is `Persistent=`,
//! so a run missed while the machine was off happens at the next boot.
//! When a run fails, the service's `ExecStopPost=` (`persnap schedule
//! notify NAME`) raises a desktop notification in the user's session.
//! Calendar expressions are checked with `systemd-analyze calendar` before
//! anything is written, and the schedule itself is kept as JSON in a
//! comment of the service unit, so `list` reads back exactly what was
//! asked for.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Installed, Schedule, When, validate_name};
use crate::error::{Error, Result};

/// Where schedules are installed unless `PERSNAP_UNIT_DIR` says otherwise.
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";
const UNIT_PREFIX: &str = "persnap-backup-";
const SCHEDULE_MARK: &str = "# persnap-schedule: ";
const HINT_UNITS: &str = "Installing a schedule needs administrator rights: run it with sudo.";

/// The folder unit files go to.
pub fn unit_dir() -> PathBuf {
    std::env::var_os("PERSNAP_UNIT_DIR")
        .map_or_else(|| PathBuf::from(SYSTEM_UNIT_DIR), PathBuf::from)
}

pub fn service_name(name: &str) -> String {
    format!("{UNIT_PREFIX}{name}.service")
}

pub fn timer_name(name: &str) -> String {
    format!("{UNIT_PREFIX}{name}.timer")
}

/// One argument of `ExecStart=`, quoted for systemd (`"`, `\`, and the
/// `%` specifier and `$` variable characters escaped).
pub fn quote_arg(arg: &str) -> String {
    let mut out = String::from("\"");
    for c in arg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The command the service runs.
fn exec_start(s: &Schedule, exe: &Path) -> String {
    let args = s.backup_args();
    let mut line = quote_arg(&exe.to_string_lossy());
    for a in &args {
        line.push(' ');
        line.push_str(&quote_arg(a));
    }
    line
}

/// The service unit: one backup, as root, at low CPU and I/O priority.
pub fn service_unit(s: &Schedule, exe: &Path) -> String {
    let json = serde_json::to_string(s).expect("schedules serialize");
    format!(
        "{SCHEDULE_MARK}{json}\n\
         [Unit]\n\
         Description=persnap backup {name}: {source} to {dest}\n\
         Documentation=man:persnap-backup(1)\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         TimeoutStartSec={limit}h\n\
         Environment={env}\n\
         ExecStart={exec}\n\
         ExecStopPost={notify}\n\
         Nice=10\n\
         IOSchedulingClass=best-effort\n\
         IOSchedulingPriority=7\n",
        name = s.name,
        limit = super::RUN_TIME_LIMIT_HOURS,
        source = s.source.display().to_string().replace('%', "%%"),
        dest = s.dest.display().to_string().replace('%', "%%"),
        env = quote_arg(&format!("PERSNAP_DATA_DIR={}", s.history_dir.display())),
        exec = exec_start(s, exe),
        notify = [
            exe.to_string_lossy().as_ref(),
            "schedule",
            "notify",
            &s.name
        ]
        .map(quote_arg)
        .join(" "),
    )
}

/// The timer unit: when, and catching up on runs missed while off.
pub fn timer_unit(s: &Schedule) -> String {
    format!(
        "[Unit]\n\
         Description=persnap backup schedule {name} ({calendar})\n\
         \n\
         [Timer]\n\
         OnCalendar={calendar}\n\
         Persistent=true\n\
         Unit={service}\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        name = s.name,
        calendar = s.when.to_systemd(),
        service = service_name(&s.name),
    )
}

/// Check with systemd that it understands when a schedule runs.
pub fn check_calendar(when: &When) -> Result<()> {
    let expr = &when.to_systemd();
    let out = crate::tool::run(
        Path::new("/usr/bin/systemd-analyze"),
        &["calendar".as_ref(), expr.as_ref()],
        Duration::from_secs(10),
    )
    .map_err(|e| Error::Tool {
        action: "check the schedule with systemd-analyze".into(),
        reason: e.to_string(),
        hint: "Install systemd.",
    })?;
    if !out.status.success() {
        return Err(Error::Refused {
            field: "at",
            reason: format!(
                "{expr:?} is not a time persnap understands, nor a systemd calendar expression ({}); examples: {}",
                out.stderr.trim(),
                super::WHEN_EXAMPLES
            ),
        });
    }
    Ok(())
}

/// Write the schedule's units into `dir` (each atomically).
pub fn write_units(s: &Schedule, dir: &Path, exe: &Path) -> Result<Vec<PathBuf>> {
    validate_name(&s.name)?;
    let service = dir.join(service_name(&s.name));
    let timer = dir.join(timer_name(&s.name));
    crate::fsutil::atomic_write(&service, service_unit(s, exe).as_bytes())
        .map_err(Error::io("write", &service, HINT_UNITS))?;
    crate::fsutil::atomic_write(&timer, timer_unit(s).as_bytes())
        .map_err(Error::io("write", &timer, HINT_UNITS))?;
    Ok(vec![service, timer])
}

/// Every schedule whose units are in `dir`.
pub fn list(dir: &Path) -> Result<Vec<Schedule>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", dir, HINT_UNITS)(e)),
    };
    let mut found: Vec<Schedule> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(UNIT_PREFIX) && name.ends_with(".service")
        })
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|text| {
            text.lines()
                .next()?
                .strip_prefix(SCHEDULE_MARK)
                .and_then(|j| serde_json::from_str(j).ok())
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Remove a schedule's unit files from `dir`. Returns false if there was
/// no such schedule.
pub fn remove_units(name: &str, dir: &Path) -> Result<bool> {
    validate_name(name)?;
    let mut removed = false;
    for unit in [timer_name(name), service_name(name)] {
        let path = dir.join(unit);
        match fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", path, HINT_UNITS)(e)),
        }
    }
    Ok(removed)
}

/// Write the units, then have systemd load and start the timer.
pub fn install(s: &Schedule, exe: &Path) -> Result<Installed> {
    check_calendar(&s.when)?;
    let dir = unit_dir();
    let written = write_units(s, &dir, exe)?;
    let started = systemctl(&["daemon-reload"])
        .and_then(|_| systemctl(&["enable", "--now", &timer_name(&s.name)]))?;
    let note = if started {
        format!(
            "The timer is active (systemctl list-timers {}).",
            timer_name(&s.name)
        )
    } else {
        format!(
            "systemd is not running here; the units are in {} and start with the next boot once enabled.",
            dir.display()
        )
    };
    Ok(Installed {
        written: written.iter().map(|p| p.display().to_string()).collect(),
        active: started,
        note,
    })
}

/// Stop and disable the timer, remove both units.
pub fn uninstall(name: &str) -> Result<bool> {
    // A timer systemd does not know is fine: the files decide.
    let _ = systemctl(&["disable", "--now", &timer_name(name)]);
    let removed = remove_units(name, &unit_dir())?;
    if removed {
        let _ = systemctl(&["daemon-reload"]);
    }
    Ok(removed)
}

/// Run systemctl when systemd runs (and units go to the system folder);
/// `Ok(false)` when not.
pub(super) fn systemctl(args: &[&str]) -> Result<bool> {
    if !Path::new("/run/systemd/system").is_dir() || std::env::var_os("PERSNAP_UNIT_DIR").is_some()
    {
        return Ok(false);
    }
    let os_args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let fail = |reason: String| Error::Tool {
        action: format!("systemctl {}", args.join(" ")),
        reason,
        hint: "Check `systemctl status` and the journal.",
    };
    let out = crate::tool::run(
        Path::new("/usr/bin/systemctl"),
        &os_args,
        Duration::from_secs(30),
    )
    .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(out.reason()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::method::MethodChoice;
    use crate::retention::RetentionPolicy;

    fn sample() -> Schedule {
        Schedule {
            name: "nightly".into(),
            source: "/var/lib/apama/my store%$\"x".into(),
            dest: "/backup/apama".into(),
            store_name: "persistence.db".into(),
            method: MethodChoice::Auto,
            retention: RetentionPolicy {
                keep_last: Some(7),
                keep_days: None,
            },
            pace: Default::default(),
            when: When::parse("02:00").unwrap(),
            history_dir: "/home/op/.local/share/persnap".into(),
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

    #[test]
    fn arguments_are_quoted_for_systemd() {
        assert_eq!(quote_arg(r#"/a b/%n$X"q\"#), r#""/a b/%%n$$X\"q\\""#);
    }

    #[test]
    fn units_carry_the_schedule_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample();
        write_units(&s, dir.path(), Path::new("/usr/bin/persnap")).unwrap();
        let service =
            fs::read_to_string(dir.path().join("persnap-backup-nightly.service")).unwrap();
        assert!(service.contains("ExecStart=\"/usr/bin/persnap\" \"backup\" \"--source\" \"/var/lib/apama/my store%%$$\\\"x\""), "{service}");
        assert!(
            service.contains("\"--keep-last\" \"7\"")
                && service.contains("\"--scheduled\" \"nightly\""),
            "{service}"
        );
        assert!(
            service.contains("Environment=\"PERSNAP_DATA_DIR=/home/op/.local/share/persnap\""),
            "{service}"
        );
        let timer = fs::read_to_string(dir.path().join("persnap-backup-nightly.timer")).unwrap();
        assert!(
            timer.contains("OnCalendar=*-*-* 02:00:00") && timer.contains("Persistent=true"),
            "{timer}"
        );
        assert_eq!(list(dir.path()).unwrap(), vec![s]);
        assert!(remove_units("nightly", dir.path()).unwrap());
        assert!(list(dir.path()).unwrap().is_empty());
        assert!(!remove_units("nightly", dir.path()).unwrap());
    }
}
