//! Backups worth keeping: a backup pinned with a note ("before upgrading
//! Apama to 10.15") is never deleted by retention, whatever its policy.
//!
//! A pin lives beside the backups, at their location, in
//! `.persnap-pins/<backup folder name>.json` — not inside the backup
//! folder, whose files are exactly those its manifest lists — so that
//! whoever applies retention there (the user, or a scheduled run writing
//! as the user) sees it, and a backup copied elsewhere goes without it.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, HINT_DEST, Result};

/// The folder of pins at a backup location.
pub const PINS_DIR: &str = ".persnap-pins";

/// The longest note kept.
pub const MAX_NOTE: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// Why it is kept, in the user's words.
    pub note: String,
    pub pinned: DateTime<Utc>,
}

/// Refuse to apply retention at `dest` unless its pins folder, if there is
/// one, is a plain folder of this process's user: one swapped for a link,
/// or made by someone else, could hide the pins that keep backups.
pub fn check_pins_folder(dest: &Path) -> Result<()> {
    let dir = dest.join(PINS_DIR);
    let meta = match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other,
    };
    if meta.is_ok_and(|m| m.is_dir()) && crate::sys::made_by_me(&dir) {
        return Ok(());
    }
    Err(Error::Refused {
        field: "dest",
        reason: format!(
            "the pins folder {} is not a folder of yours, so persnap cannot tell which \
             backups are pinned; no old backup was deleted. Remove it, or move it aside, \
             and pin the backups you keep again",
            dir.display()
        ),
    })
}

/// Where the pin of `backup_dir` is kept.
fn pin_path(backup_dir: &Path) -> Option<PathBuf> {
    let name = backup_dir.file_name()?;
    let mut file = name.to_owned();
    file.push(".json");
    Some(backup_dir.parent()?.join(PINS_DIR).join(file))
}

/// Whether `backup_dir` is pinned: anything at its pin's place counts
/// (nothing is read, so no file put there can stall or mislead
/// retention; a pin can only ever keep a backup).
pub fn is_pinned(backup_dir: &Path) -> bool {
    pin_path(backup_dir).is_some_and(|p| std::fs::symlink_metadata(p).is_ok())
}

/// The pin of `backup_dir`, if it is pinned. A pin that cannot be read as
/// one (not a plain file, too long, not JSON) still pins it, without a note.
pub fn read(backup_dir: &Path) -> Option<Pin> {
    use std::io::Read as _;
    if !is_pinned(backup_dir) {
        return None;
    }
    let path = pin_path(backup_dir)?;
    let mut bytes = Vec::new();
    let read = crate::sys::open_untrusted(&path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut bytes))
        .is_ok();
    Some(
        read.then(|| serde_json::from_slice(&bytes).ok())
            .flatten()
            .unwrap_or(Pin {
                note: String::new(),
                pinned: DateTime::<Utc>::MIN_UTC,
            }),
    )
}

/// Pin `backup_dir` (a persnap backup: a folder holding its manifest) with
/// `note`; pinning again replaces the note.
pub fn pin(backup_dir: &Path, note: &str) -> Result<Pin> {
    let note = note.trim();
    if note.chars().count() > MAX_NOTE || note.chars().any(char::is_control) {
        return Err(Error::Refused {
            field: "note",
            reason: format!("keep the note to one line of at most {MAX_NOTE} characters"),
        });
    }
    if !backup_dir.join(crate::manifest::MANIFEST_NAME).is_file() {
        return Err(Error::NotABackup {
            path: backup_dir.to_owned(),
            detail: "it holds no manifest.json".into(),
        });
    }
    let path = pin_path(backup_dir).ok_or_else(|| Error::NotABackup {
        path: backup_dir.to_owned(),
        detail: "it is not a folder inside a backup location".into(),
    })?;
    let dir = path.parent().expect("pins have a folder");
    if std::fs::symlink_metadata(dir).is_err() {
        crate::sys::create_private_dir(dir, false).map_err(Error::io("create", dir, HINT_DEST))?;
    }
    let dest = dir.parent().expect("the pins folder is in a location");
    check_pins_folder(dest)?;
    let pin = Pin {
        note: note.to_owned(),
        pinned: Utc::now(),
    };
    let mut json = serde_json::to_vec_pretty(&pin).expect("pins serialize");
    json.push(b'\n');
    crate::fsutil::atomic_write(&path, &json).map_err(Error::io("write", &path, HINT_DEST))?;
    Ok(pin)
}

/// Unpin `backup_dir`; `false` when it was not pinned.
pub fn unpin(backup_dir: &Path) -> Result<bool> {
    let Some(path) = pin_path(backup_dir) else {
        return Ok(false);
    };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", &path, HINT_DEST)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_kept_beside_the_backup_and_read_back() {
        let dest = tempfile::tempdir().unwrap();
        let backup = dest.path().join("persistence.db-20261121T040000Z-abcd");
        std::fs::create_dir(&backup).unwrap();
        assert!(pin(&backup, "before upgrading").is_err(), "not a backup");
        std::fs::write(backup.join(crate::manifest::MANIFEST_NAME), b"{}").unwrap();
        assert_eq!(read(&backup), None);
        pin(&backup, "  before upgrading Apama to 10.15 ").unwrap();
        assert_eq!(
            read(&backup).unwrap().note,
            "before upgrading Apama to 10.15"
        );
        assert_eq!(
            std::fs::read_dir(&backup).unwrap().count(),
            1,
            "nothing added to the backup itself"
        );
        assert!(pin(&backup, "two\nlines").is_err());
        assert!(pin(&backup, &"x".repeat(MAX_NOTE + 1)).is_err());
        assert!(unpin(&backup).unwrap());
        assert!(!unpin(&backup).unwrap());
        assert_eq!(read(&backup), None);
        // A damaged pin, or anything else in its place, still keeps the
        // backup.
        let path = pin_path(&backup).unwrap();
        std::fs::write(&path, b"not json").unwrap();
        assert!(read(&backup).is_some());
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(is_pinned(&backup) && read(&backup).is_some_and(|p| p.note.is_empty()));
    }
}
