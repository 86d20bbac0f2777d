//! The log file for support (issue #31): every run's steps, timings and
//! errors, one line each, so that when a scheduled run at 02:00 fails
//! there is more than the history's one line. Never a secret: the lines
//! are the words persnap shows (repository addresses in their shown
//! form), and only persnap's own events are written.
//!
//! Where: a user's runs in `logs/` of their persnap data folder; root's
//! (scheduled runs, Linux) in `/var/log/persnap`, the administrators'
//! (Windows) in `%ProgramData%\persnap\logs`; `PERSNAP_LOG_DIR` moves it
//! (tests). The file is rotated by size when a process opens it: each
//! process is one run or one session of the app, so a run's lines are
//! never split across files.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The log's name in its folder.
pub const LOG_NAME: &str = "persnap.log";
/// Rotated once it is this large ...
pub const MAX_BYTES: u64 = 10 << 20;
/// ... into `persnap.log.1` … `persnap.log.5` (the oldest goes).
pub const KEEP: u32 = 5;

/// The folder this process logs into; `None` when no home folder is
/// known.
pub fn dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PERSNAP_LOG_DIR") {
        return Some(PathBuf::from(dir));
    }
    // Root never writes into a user's folder (a scheduled run has the
    // user's data folder in its environment): its own, beside the system's.
    if crate::fsutil::is_root() {
        #[cfg(unix)]
        return Some(PathBuf::from("/var/log/persnap"));
        #[cfg(windows)]
        return Some(crate::sys::admin_root().join("logs"));
    }
    crate::history::History::default_dir().map(|d| d.join("logs"))
}

/// `text` on one line: a line break or other control character (a path
/// may hold one) is shown escaped, so that no line of the log can be
/// forged by a folder's name.
pub fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Rename `path` to `path.1` (and each older one a number up, the oldest
/// of [`KEEP`] removed) when it has grown to `max` bytes.
pub fn rotate_if_large(path: &Path, max: u64, keep: u32) -> io::Result<()> {
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() >= max) {
        return Ok(());
    }
    let numbered = |i: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{i}"));
        PathBuf::from(name)
    };
    let _ = std::fs::remove_file(numbered(keep));
    for i in (1..keep).rev() {
        let _ = std::fs::rename(numbered(i), numbered(i + 1));
    }
    std::fs::rename(path, numbered(1))
}

/// The log in `dir`, opened to append (the folder made, private to this
/// account; the file rotated first when large). A link in its place is
/// refused, never followed.
pub fn open(dir: &Path) -> io::Result<File> {
    #[cfg(windows)]
    if crate::fsutil::is_root() && dir.starts_with(crate::sys::admin_root()) {
        crate::sys::create_admin_dir(dir)?;
    } else {
        crate::sys::create_private_dir(dir, true)?;
    }
    #[cfg(not(windows))]
    crate::sys::create_private_dir(dir, true)?;
    let path = dir.join(LOG_NAME);
    // A rename that fails (two processes rotating at once) leaves it for
    // the next process to rotate; logging goes on.
    let _ = rotate_if_large(&path, MAX_BYTES, KEEP);
    let mut options = File::options();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(&path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a plain file",
            path.display()
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_a_line_break_cannot_forge_a_line() {
        assert_eq!(
            one_line("/srv/x\n2026-12-07T00:00:00Z  INFO forged"),
            "/srv/x\\n2026-12-07T00:00:00Z  INFO forged"
        );
        assert_eq!(one_line("plain é"), "plain é");
    }

    #[test]
    fn a_large_log_is_rotated_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(LOG_NAME);
        for round in 0..7u8 {
            std::fs::write(&log, vec![b'a' + round; 100]).unwrap();
            rotate_if_large(&log, 50, 3).unwrap();
        }
        assert!(!log.exists(), "rotated away");
        // The newest three are kept, newest first.
        for (i, expected) in [(1, b'g'), (2, b'f'), (3, b'e')] {
            let kept = std::fs::read(dir.path().join(format!("{LOG_NAME}.{i}"))).unwrap();
            assert_eq!(kept[0], expected, "{LOG_NAME}.{i}");
        }
        assert!(!dir.path().join(format!("{LOG_NAME}.4")).exists());
        // A small one stays.
        std::fs::write(&log, b"small").unwrap();
        rotate_if_large(&log, 50, 3).unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"small");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_in_the_logs_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"not a log").unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::os::unix::fs::symlink(&elsewhere, logs.join(LOG_NAME)).unwrap();
        assert!(open(&logs).is_err());
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not a log");
    }
}
