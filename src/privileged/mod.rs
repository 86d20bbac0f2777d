//! The privileged room: what `persnap-helper` does as root (or SYSTEM),
//! and nothing else. Everything here is used by the helper, but for
//! `user`, with which a scheduled run root started (the command line)
//! becomes its user.
//!
//! Root does exactly this:
//! - [`start`]: tighten the process (umask 077, private mount namespace)
//!   before anything else runs; on Windows, borrow a console without a
//!   window for the console programs it starts, ignore console interrupts (the
//!   cancel frame is the way to stop) and enable SeBackupPrivilege, the one
//!   privilege reading store files from the shadow copy needs;
//! - [`locks`]: one run per database, a bounded number of snapshots at
//!   once, in a run folder only root can enter;
//! - take, mount and remove the snapshot (`crate::snapshot`), and open the
//!   store files beneath it without following a link ([`capture`]);
//! - start the unprivileged worker as the user the work is for
//!   ([`user`]), which writes everything: backup folders, manifests,
//!   verification scratch, retention, restores;
//! - register databases and install schedules (administrator level only).
//!
//! [`channel`] keeps an untrusted caller from stalling any of it.

#[cfg(target_os = "linux")]
pub mod capture;
pub mod channel;
pub mod locks;
#[cfg(target_os = "linux")]
pub mod restore;
#[cfg(target_os = "linux")]
pub mod spawn;
#[cfg(unix)]
pub mod user;

/// Harden the process before it reads anything: files it creates are
/// private whatever the caller's umask, and (Linux) mounts it makes are
/// seen by no other process. Call first thing in `main`, while the process
/// has one thread (`unshare` refuses otherwise).
pub fn start() {
    #[cfg(unix)]
    {
        // SAFETY: umask cannot fail; ignoring a signal is always allowed.
        unsafe {
            libc::umask(0o077);
            // A terminal's stop keys must not stop root in the middle of a
            // backup (holding a snapshot, or a database still): the caller
            // stops a run with the cancel frame.
            for signal in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
                libc::signal(signal, libc::SIG_IGN);
            }
        }
        occupy_low_descriptors();
    }
    #[cfg(target_os = "linux")]
    if crate::fsutil::is_root() {
        crate::snapshot::mount::private_namespace();
    }
    #[cfg(windows)]
    {
        // Neither is fatal: without a console there is nothing to ignore,
        // and without the privilege (not an administrator) the store is
        // read with the caller's own rights.
        crate::sys::windowless_console();
        let _ = crate::sys::ignore_console_interrupts();
        let _ = crate::sys::enable_backup_privilege();
    }
}

/// Keep descriptors 0 to 6 taken (by /dev/null where the caller left them
/// closed), so nothing the helper opens later lands on them: 0–2 are the
/// standard streams, 3–6 are where the worker gets its files, and a pipe
/// of std's own there would be overwritten when they are placed.
#[cfg(unix)]
fn occupy_low_descriptors() {
    loop {
        // SAFETY: open and fcntl on a descriptor we own.
        unsafe {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if fd < 0 {
                return;
            }
            if fd > crate::worker::FIRST_PIPE_FD + crate::worker::PIPES as i32 - 1 {
                libc::close(fd);
                return;
            }
            if fd >= crate::worker::FIRST_PIPE_FD {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
}
