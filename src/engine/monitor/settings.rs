//! The machine's monitoring settings (issue #31), kept by the
//! administrator beside the registry of protected databases:
//! `/etc/persnap/monitoring.json` (Windows:
//! `%ProgramData%\persnap\monitoring.json`). Everyone may read it (it
//! holds no secret); only administrators may change it, and a scheduled
//! run, which reads it as root (SYSTEM), refuses one anybody else could
//! have changed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the administrator set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monitoring {
    /// node_exporter's (windows_exporter's) textfile collector folder:
    /// after each scheduled run, the metrics of every protected database
    /// are written there as `persnap.prom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textfile_dir: Option<PathBuf>,
}

/// Where they are kept: beside the registry's folder.
pub fn path() -> PathBuf {
    let registry = crate::registry::Registry::system();
    registry
        .dir()
        .parent()
        .unwrap_or(Path::new("."))
        .join("monitoring.json")
}

fn unreadable(path: &Path, detail: String) -> Error {
    Error::MonitoringSettings {
        path: path.to_owned(),
        detail,
    }
}

/// The settings (none set when there is no file). Read as an
/// administrator, a file or folder someone else could change is refused.
pub fn load() -> Result<Monitoring> {
    let path = path();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Monitoring::default()),
        Err(e) => return Err(unreadable(&path, e.to_string())),
    };
    if crate::fsutil::is_root() {
        let judged = crate::sys::admin_only(&path, false).and_then(|()| {
            path.parent()
                .map_or(Ok(()), crate::fsutil::admin_only_folder)
        });
        if let Err(e) = judged {
            return Err(unreadable(
                &path,
                format!(
                    "{e}; only administrators may be able to change it. {}",
                    crate::sys::ADMIN_ONLY_FIX
                ),
            ));
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| unreadable(&path, e.to_string()))
}

/// Keep `settings` (administrators only: the folder is theirs).
pub fn save(settings: &Monitoring) -> Result<()> {
    let path = path();
    let dir = path.parent().unwrap_or(Path::new("."));
    let json = serde_json::to_vec_pretty(settings).expect("settings serialize");
    crate::sys::create_admin_dir(dir)
        .and_then(|()| crate::fsutil::atomic_write_public(&path, &json))
        .map_err(|e| {
            Error::io(
                "write",
                &path,
                "Monitoring settings are the administrator's: run this as root (sudo) or as administrator.",
            )(e)
        })
}
