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

/// What [`keep`] did, in words (`None`: nothing needed doing).
pub type Done = Option<String>;

/// Have the watch installed when `wanted` (mail or a ping is set), with
/// `exe` the persnap that runs it, and removed when not.
pub fn keep(wanted: bool, exe: &Path) -> Result<Done> {
    #[cfg(windows)]
    return windows::keep(wanted, exe);
    #[cfg(not(windows))]
    linux::keep(wanted, exe)
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
            if same {
                return Ok(None);
            }
            for (path, text) in &units {
                crate::fsutil::atomic_write(path, text.as_bytes())
                    .map_err(Error::io("write", path, HINT))?;
            }
            let active = super::super::systemd::systemctl(&["daemon-reload"])
                .and_then(|_| super::super::systemd::systemctl(&["enable", "--now", TIMER]))?;
            return Ok(Some(if active {
                format!(
                    "The hourly watch is on (systemctl list-timers {TIMER}): it tells missed runs and sends the summary."
                )
            } else {
                format!(
                    "The hourly watch's units are in {}; systemd is not running here, enable {TIMER} once it is.",
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
        Ok(Some(
            "The hourly watch is off: no mail or ping is set.".into(),
        ))
    }
}

#[cfg(windows)]
mod windows {
    use super::*;
    use crate::error::Error;
    use std::ffi::OsStr;

    fn schtasks(args: &[&OsStr]) -> Result<crate::tool::ToolOutput> {
        let program = crate::sys::system_dir().join("schtasks.exe");
        crate::tool::run(&program, args, std::time::Duration::from_secs(60)).map_err(|e| {
            Error::Tool {
                action: "run schtasks.exe".into(),
                reason: e.to_string(),
                hint: "Task Scheduler must be available (the \"Task Scheduler\" service running).",
            }
        })
    }

    fn exists() -> Result<bool> {
        Ok(
            schtasks(&["/Query".as_ref(), "/TN".as_ref(), TASK.as_ref()])?
                .status
                .success(),
        )
    }

    pub fn keep(wanted: bool, exe: &Path) -> Result<Done> {
        if wanted {
            // SYSTEM runs it: the program must be the administrators' alone.
            super::super::taskschd::exe_admin_only(exe)?;
            let command = format!(
                "{} monitoring watch",
                super::super::taskschd::quote_arg(&exe.to_string_lossy())
            );
            let out = schtasks(&[
                "/Create".as_ref(),
                "/TN".as_ref(),
                TASK.as_ref(),
                "/TR".as_ref(),
                command.as_ref(),
                "/SC".as_ref(),
                "HOURLY".as_ref(),
                "/RU".as_ref(),
                "SYSTEM".as_ref(),
                "/RL".as_ref(),
                "HIGHEST".as_ref(),
                "/F".as_ref(),
            ])?;
            if !out.status.success() {
                return Err(Error::Tool {
                    action: format!("create the scheduled task {TASK}"),
                    reason: out.said(),
                    hint: "Creating a task that runs as SYSTEM needs administrator rights.",
                });
            }
            return Ok(Some(format!(
                "The hourly watch is on (the task {TASK}, as SYSTEM): it tells missed runs and sends the summary."
            )));
        }
        if !exists()? {
            return Ok(None);
        }
        let out = schtasks(&[
            "/Delete".as_ref(),
            "/TN".as_ref(),
            TASK.as_ref(),
            "/F".as_ref(),
        ])?;
        if !out.status.success() {
            return Err(Error::Tool {
                action: format!("delete the scheduled task {TASK}"),
                reason: out.said(),
                hint: "Run persnap as administrator, or delete the task in Task Scheduler.",
            });
        }
        Ok(Some(
            "The hourly watch is off: no mail or ping is set.".into(),
        ))
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
    }
}
