//! Who the work is for, and running as them.
//!
//! pkexec tells the helper which user asked (`PKEXEC_UID`); a restore is
//! for the owner of the database folder. [`Identity`] is that user's uid,
//! primary group and supplementary groups, read from the system's user
//! database before anything is started. [`Identity::apply`] sets a
//! command to drop to it between fork and exec (groups, then gid, then
//! uid, checked afterwards), so every file the child creates is that
//! user's from its creation: nothing is ever chowned.

use std::io;
use std::process::Command;

use crate::error::{Error, Result};

/// A user to act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub name: String,
}

/// Become the user `uid` for the rest of the process (see
/// [`Identity::become_now`]); why not, in words.
pub fn become_uid(uid: u32) -> std::result::Result<(), String> {
    Identity::of_uid(uid)
        .map_err(|e| e.to_string())?
        .become_now()
        .map_err(|e| e.to_string())
}

/// The user pkexec started the helper for; `None` when it was started
/// directly (by root, or by a scheduled run).
pub fn pkexec_uid() -> Option<u32> {
    std::env::var("PKEXEC_UID").ok()?.parse().ok()
}

impl Identity {
    /// The user `uid`, with the groups the system gives them.
    pub fn of_uid(uid: u32) -> Result<Identity> {
        let (name, gid, groups) = crate::sys::user_ids(uid).ok_or_else(|| Error::Refused {
            field: "user",
            reason: format!("there is no user with uid {uid} on this machine"),
        })?;
        Ok(Identity {
            uid,
            gid,
            groups,
            name,
        })
    }

    /// Run `work` on a thread of its own whose file access is this user's:
    /// its groups and filesystem ids (`setgroups`, `setfsgid`,
    /// `setfsuid`, the raw system calls, which change only the calling
    /// thread on Linux). Changing the filesystem uid from 0 also drops the
    /// thread's file capabilities, so whatever it opens, it opens as the
    /// user; its real uid stays root's, so the user cannot signal it. The
    /// thread ends with `work`; no other thread is affected.
    pub fn run_as<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T> {
        crate::sys::as_user_on_a_thread(self.uid, self.gid, &self.groups, work).map_err(|e| {
            Error::io(
                "act as",
                self.name.clone(),
                "persnap-helper must run as root.",
            )(e)
        })
    }

    /// Become this user for the rest of the process (every thread): a
    /// root front end that started the helper for a scheduled run and now
    /// records the run in the user's history as the user.
    pub fn become_now(&self) -> io::Result<()> {
        self.make_run_dir()?;
        // SAFETY: glibc's wrappers change the credentials of every thread.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0
                || libc::setresgid(self.gid, self.gid, self.gid) != 0
                || libc::setresuid(self.uid, self.uid, self.uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let (mut r, mut e, mut s) = (0, 0, 0);
            libc::getresuid(&mut r, &mut e, &mut s);
            if (r, e, s) != (self.uid, self.uid, self.uid) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
        }
        Ok(())
    }

    /// Make this user's run-lock folder, as root, so their runs never
    /// depend on a folder in `/tmp` another user could make first (see
    /// `sys::make_user_run_dir`). Nothing to do for root or when not root.
    pub fn make_run_dir(&self) -> io::Result<()> {
        if self.uid == 0 || !crate::fsutil::is_root() {
            return Ok(());
        }
        crate::sys::make_user_run_dir(self.uid, self.gid)
    }

    /// Whether this is root (the helper then needs no worker).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Make `cmd` run as this user: supplementary groups, gid, uid (in
    /// that order, all three of real, effective and saved), then check
    /// that root cannot be regained. The child also dies with the helper.
    pub fn apply(&self, cmd: &mut Command) {
        crate::sys::run_wholly_as(cmd, self.uid, self.gid, self.groups.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_acting_as_a_user_reads_only_what_they_may() {
        if !crate::fsutil::is_root() {
            eprintln!("SKIP a_thread_acting_as_a_user_reads_only_what_they_may: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"root only").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let nobody = Identity::of_uid(65534).unwrap();
        let read = nobody.run_as(|| std::fs::read(&secret)).unwrap();
        assert_eq!(
            read.unwrap_err().kind(),
            io::ErrorKind::PermissionDenied,
            "the thread has nobody's rights"
        );
        assert!(
            std::fs::read(&secret).is_ok(),
            "the rest of the process is still root"
        );
    }

    #[test]
    fn a_child_runs_with_exactly_the_users_ids() {
        if !crate::fsutil::is_root() {
            eprintln!("SKIP a_child_runs_with_exactly_the_users_ids: needs root");
            return;
        }
        let nobody = Identity::of_uid(65534).unwrap();
        let mut cmd = Command::new("/usr/bin/id");
        nobody.apply(&mut cmd);
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("uid=65534"), "{text}");
        assert!(!text.contains("(root)"), "no trace of root: {text}");
    }
}
