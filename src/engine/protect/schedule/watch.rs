//! The hourly watch (`persnap monitoring watch`), installed while mail or
//! a ping address is set and removed when none is: it tells the channels
//! of a scheduled run that never happened (the machine was off, a timer
//! was disabled) and sends the summary mail. A run that did not happen
//! has no run of its own to say so, so something else must.
//!
//! Linux: `persnap-watch.service` and `.timer` beside the schedules'
//! units (hourly, `Persistent=`); Windows: the task
//! `\persnap\monitoring watch`, hourly as SYSTEM (a space no schedule's
//! name can hold keeps it apart from theirs).

use std::path::{Path, PathBuf};

use crate::error::Result;

/// The unit names (Linux).
pub const SERVICE: &str = "persnap-watch.service";
pub const TIMER: &str = "persnap-watch.timer";
/// The task's name (Windows).
pub const TASK: &str = "\\persnap\\monitoring watch";

/// The service: one watch, as root.
pub fn service_unit(exe: &Path) -> String {
    let exec = [exe.to_string_lossy().as_ref(), "monitoring", "watch"]
        .map(super::systemd::quote_arg)
        .join(" ");
    format!(
        "[Unit]\n\
         Description=persnap: tell missed backups and mail the summary\n\
         Documentation=man:persnap-monitoring(1)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         TimeoutStartSec=10min\n\
         ExecStart={exec}\n\
         Nice=10\n"
    )
}

/// The timer: hourly, catching up after the machine was off.
pub fn timer_unit() -> String {
    format!(
        "[Unit]\n\
         Description=persnap: the hourly watch of scheduled backups\n\
         \n\
         [Timer]\n\
         OnCalendar=hourly\n\
         RandomizedDelaySec=5min\n\
         Persistent=true\n\
         Unit={SERVICE}\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n"
    )
}

/// The Windows task: hourly as SYSTEM, stopped after 10 minutes (and,
/// as every persnap task, started as soon as it can after a start it
/// missed, on battery too).
pub fn task_xml(exe: &Path) -> String {
    let trigger = super::taskschd::trigger(&super::When::Hourly).expect("hourly is a task trigger");
    super::taskschd::task_document(&super::taskschd::TaskParts {
        description: "persnap: tell missed backups and mail the summary (hourly)",
        uri: TASK,
        trigger: &trigger,
        principal: "<UserId>S-1-5-18</UserId>",
        limit: "PT10M",
        command: &exe.to_string_lossy(),
        arguments: "monitoring watch",
    })
}

/// What [`keep`] did, in words (`None`: nothing needed doing).
pub type Done = Option<String>;

/// Have the watch installed when `wanted` (mail or a ping is set), with
/// `exe` the persnap that runs it, and removed when not. Root (SYSTEM)
/// runs `exe` every hour: it must be the administrators' alone, file and
/// folders, or anyone who could replace it would have their program run
/// with the machine's highest rights.
pub fn keep(wanted: bool, exe: &Path) -> Result<Done> {
    if wanted {
        exe_admin_only(exe)?;
    }
    #[cfg(windows)]
    return windows::keep(wanted, exe);
    #[cfg(not(windows))]
    linux::keep(wanted, exe)
}

/// Refuse to have the watch run `exe` when anybody but the
/// administrators could replace it.
pub fn exe_admin_only(exe: &Path) -> Result<()> {
    #[cfg(windows)]
    return super::taskschd::exe_admin_only(exe);
    #[cfg(not(windows))]
    crate::sys::admin_only(exe, false)
        .and_then(|()| {
            exe.parent()
                .map_or(Ok(()), crate::fsutil::admin_only_folder)
        })
        .map_err(|e| crate::Error::Refused {
            field: "program",
            reason: format!(
                "the hourly watch would run {} as root, but {e}; run the installed persnap (/usr/bin/persnap) instead",
                exe.display()
            ),
        })
}

/// Where the units are: the schedules' folder.
pub fn unit_paths() -> [PathBuf; 2] {
    let dir = super::systemd::unit_dir();
    [dir.join(SERVICE), dir.join(TIMER)]
}

#[cfg(not(windows))]
mod linux {
    use super::*;
    use crate::error::Error;

    const HINT: &str = "The hourly watch is the administrator's: run this as root (sudo).";

    pub fn keep(wanted: bool, exe: &Path) -> Result<Done> {
        let [service, timer] = unit_paths();
        if wanted {
            let units = [(&service, service_unit(exe)), (&timer, timer_unit())];
            let same = units
                .iter()
                .all(|(path, text)| std::fs::read_to_string(path).ok().as_deref() == Some(text));
            if !same {
                for (path, text) in &units {
                    crate::fsutil::atomic_write(path, text.as_bytes())
                        .map_err(Error::io("write", path, HINT))?;
                }
                super::super::systemd::systemctl(&["daemon-reload"])?;
            }
            // Every time: a timer an earlier enable missed, or that was
            // disabled by hand, is started again.
            let active = super::super::systemd::systemctl(&["enable", "--now", TIMER])?;
            return Ok((!same).then(|| if active {
                format!("The hourly watch is on (systemctl list-timers {TIMER}): it tells missed runs and sends the summary.")
            } else {
                format!(
                    "The hourly watch's units are in {} (systemd is not running here, or PERSNAP_UNIT_DIR points elsewhere): enable {TIMER} where systemd runs them.",
                    timer.parent().unwrap_or(Path::new("/")).display()
                )
            }));
        }
        if !service.exists() && !timer.exists() {
            return Ok(None);
        }
        // A timer systemd does not know is fine: the files decide.
        let _ = super::super::systemd::systemctl(&["disable", "--now", TIMER]);
        for path in [&timer, &service] {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("remove", path, HINT)(e));
                }
                _ => {}
            }
        }
        let _ = super::super::systemd::systemctl(&["daemon-reload"]);
        Ok(Some("The hourly watch is off.".into()))
    }
}

#[cfg(windows)]
mod windows {
    use super::*;
    use crate::error::Error;
    use crate::schedule::taskschd;

    /// The record that persnap made the task, in the administrators'
    /// folder beside the schedules' (removal asks Task Scheduler only when
    /// it is there: wine's schtasks cannot tell whether a task exists).
    fn record() -> PathBuf {
        taskschd::registry_dir().join("monitoring-watch.installed")
    }

    pub fn keep(wanted: bool, exe: &Path) -> Result<Done> {
        if wanted {
            let dir = taskschd::registry_dir();
            crate::sys::create_admin_dir(&dir)
                .and_then(|()| crate::sys::owned_by_admins(&dir))
                .map_err(Error::io("secure", &dir, "Run persnap as administrator."))?;
            let out = taskschd::register(&dir, "monitoring-watch", TASK, &task_xml(exe), &[])?;
            if !out.status.success() {
                return Err(Error::Tool {
                    action: format!("create the scheduled task {TASK}"),
                    reason: out.said(),
                    hint: "Creating a task that runs as SYSTEM needs administrator rights.",
                });
            }
            let record = record();
            crate::fsutil::atomic_write(&record, TASK.as_bytes())
                .and_then(|()| crate::sys::owned_by_admins(&record))
                .map_err(Error::io("write", &record, "Run persnap as administrator."))?;
            return Ok(Some(format!(
                "The hourly watch is on (the task {TASK}, as SYSTEM): it tells missed runs and sends the summary."
            )));
        }
        let record = record();
        if !record.exists() {
            return Ok(None);
        }
        taskschd::delete(
            TASK,
            "Run persnap as administrator, or delete the task in Task Scheduler (folder persnap).",
            taskschd::run_schtasks,
        )?;
        std::fs::remove_file(&record).map_err(Error::io(
            "remove",
            &record,
            "Run persnap as administrator.",
        ))?;
        Ok(Some("The hourly watch is off.".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_runs_persnap_hourly_and_catches_up() {
        let service = service_unit(Path::new("/usr/bin/persnap"));
        assert!(service.contains("ExecStart=\"/usr/bin/persnap\" \"monitoring\" \"watch\"\n"));
        let timer = timer_unit();
        assert!(timer.contains("OnCalendar=hourly\n"));
        assert!(timer.contains("Persistent=true\n"));
        assert!(timer.contains(&format!("Unit={SERVICE}\n")));
        // Never mistaken for a schedule's units.
        assert!(!SERVICE.starts_with("persnap-backup-"));
        assert!(service.contains("After=network-online.target\n"));
        let task = task_xml(Path::new(r"C:\Program Files\persnap\persnap.exe"));
        assert!(task.contains("<UserId>S-1-5-18</UserId>"));
        assert!(task.contains("<StartWhenAvailable>true</StartWhenAvailable>"));
        assert!(task.contains("<DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>"));
        assert!(task.contains("<Interval>PT1H</Interval>"));
        assert!(task.contains(r"<Command>C:\Program Files\persnap\persnap.exe</Command>"));
    }
}
