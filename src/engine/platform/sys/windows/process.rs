//! This process: its privileges, its priority, and its console.

use std::io;

use winapi::shared::minwindef::DWORD;
use winapi::um::handleapi::CloseHandle;
use winapi::um::processthreadsapi::{GetCurrentProcess, OpenProcessToken};
use winapi::um::securitybaseapi::GetTokenInformation;
use winapi::um::winnt::{HANDLE, TOKEN_QUERY};

use super::*;

/// Nothing for the whole process on Windows: background mode there (very
/// low I/O priority) would also slow the helper's shadow copy work, and a
/// shadow copy kept longer costs a busy correlator more (copy-on-write).
/// Only a gentle copy runs in background mode ([`background_thread`]).
pub fn lower_io_priority() {}

/// Background processing mode (very low I/O and memory priority) for the
/// calling thread until the guard is dropped: a gentle copy's reads and
/// writes then wait for the correlator's.
pub fn background_thread() -> Background {
    use winapi::um::processthreadsapi::{GetCurrentThread, SetThreadPriority};
    const THREAD_MODE_BACKGROUND_BEGIN: i32 = 0x0001_0000;
    // SAFETY: pseudo-handle of this thread; failure only loses the hint.
    let began = unsafe { SetThreadPriority(GetCurrentThread(), THREAD_MODE_BACKGROUND_BEGIN) } != 0;
    Background(began, std::marker::PhantomData)
}

/// The calling thread in background mode while it lives (not `Send`: it
/// must end on the thread that began it).
pub struct Background(bool, std::marker::PhantomData<*const ()>);

impl Drop for Background {
    fn drop(&mut self) {
        use winapi::um::processthreadsapi::{GetCurrentThread, SetThreadPriority};
        const THREAD_MODE_BACKGROUND_END: i32 = 0x0002_0000;
        if self.0 {
            // SAFETY: as in background_thread, on the same thread.
            unsafe { SetThreadPriority(GetCurrentThread(), THREAD_MODE_BACKGROUND_END) };
        }
    }
}

/// Enable a privilege the elevated token holds (best effort).
pub(super) fn enable_privilege(name: &str) -> io::Result<()> {
    use winapi::shared::winerror::ERROR_NOT_ALL_ASSIGNED;
    use winapi::um::errhandlingapi::GetLastError;
    use winapi::um::securitybaseapi::AdjustTokenPrivileges;
    use winapi::um::winbase::LookupPrivilegeValueW;
    use winapi::um::winnt::{
        LUID_AND_ATTRIBUTES, SE_PRIVILEGE_ENABLED, TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES,
    };
    // SAFETY: token handle closed below; structures sized as declared.
    unsafe {
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES, &mut token) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut tp = TOKEN_PRIVILEGES {
            PrivilegeCount: 1,
            Privileges: [LUID_AND_ATTRIBUTES {
                Luid: std::mem::zeroed(),
                Attributes: SE_PRIVILEGE_ENABLED,
            }],
        };
        let mut result = Ok(());
        if LookupPrivilegeValueW(
            std::ptr::null(),
            wide(name).as_ptr(),
            &mut tp.Privileges[0].Luid,
        ) == 0
            || AdjustTokenPrivileges(
                token,
                0,
                &mut tp,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ) == 0
        {
            result = Err(io::Error::last_os_error());
        } else if GetLastError() == ERROR_NOT_ALL_ASSIGNED {
            // The call "succeeds" for a privilege the token does not hold.
            result = Err(io::Error::other(format!(
                "this account does not hold {name}"
            )));
        }
        CloseHandle(token);
        result
    }
}

/// Enable SeBackupPrivilege for this process (the helper, once, at
/// start): with it, files opened with backup semantics are read whatever
/// their permissions say, as backup programs do, so a store folder only
/// the correlator's service account may read is still backed up from the
/// shadow copy (which keeps the live files' permissions).
pub fn enable_backup_privilege() -> io::Result<()> {
    enable_privilege("SeBackupPrivilege")
}

/// Console interrupts (Ctrl+C, Ctrl+Break) the helper has ignored.
pub static IGNORED_INTERRUPTS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The helper ignores Ctrl+C and Ctrl+Break: started from an elevated
/// console it shares the console, and the keystroke meant for persnap
/// would otherwise kill it mid-copy. persnap catches it and sends the
/// cancel frame, which the helper obeys (removing the partial copy and the
/// shadow copy). Closing the console, logging off and shutting down still
/// end it, as they should.
pub fn ignore_console_interrupts() -> io::Result<()> {
    use winapi::shared::minwindef::{BOOL, FALSE, TRUE};
    use winapi::um::consoleapi::SetConsoleCtrlHandler;
    use winapi::um::wincon::{CTRL_BREAK_EVENT, CTRL_C_EVENT};
    unsafe extern "system" fn handler(event: DWORD) -> BOOL {
        if event == CTRL_C_EVENT || event == CTRL_BREAK_EVENT {
            IGNORED_INTERRUPTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            TRUE
        } else {
            FALSE
        }
    }
    // SAFETY: registers a handler that only touches an atomic.
    if unsafe { SetConsoleCtrlHandler(Some(handler), TRUE) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Give a process without a console (the helper, a Windows-subsystem
/// program so that no console or Terminal window shows when UAC starts
/// it) a console that has no window, for the console programs it starts
/// (schtasks, rclone) to share: started from a process without one, each
/// would get a window of its own. The console is borrowed from a `cmd.exe`
/// started with CREATE_NO_WINDOW, which ends as soon as the helper is
/// attached (a console lives while any process is attached to it). Best
/// effort: without it, those programs show windows, nothing fails.
pub fn windowless_console() {
    use std::os::windows::process::CommandExt;
    use winapi::um::wincon::{AttachConsole, GetConsoleWindow};
    const CREATE_NO_WINDOW: u32 = 0x0800_0000;
    // SAFETY: plain queries and calls on this process's console.
    if !unsafe { GetConsoleWindow() }.is_null() {
        return;
    }
    let cmd = system_dir().join("cmd.exe");
    // `/k` waits on its input, a pipe held here, until it is closed.
    let Ok(mut host) = std::process::Command::new(cmd)
        .args(["/d", "/q", "/k"])
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .creation_flags(CREATE_NO_WINDOW)
        .spawn()
    else {
        return;
    };
    // The console exists once cmd runs; try for up to a second.
    for _ in 0..50 {
        // SAFETY: attaching to a child's console; failure changes nothing.
        if unsafe { AttachConsole(host.id()) } != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(host.stdin.take());
    let _ = host.kill();
    let _ = host.wait();
}

/// The app started from the Start menu or Explorer: Windows made a console
/// window just for it (persnap.exe is a console program, so that in cmd,
/// PowerShell and scripts the command line waits, prints and returns its
/// exit status). Let go of that console, so no console window stays beside
/// the app; one shared with a shell that started the app is kept.
pub fn release_own_console() {
    use winapi::um::wincon::{FreeConsole, GetConsoleProcessList};
    let mut processes = [0u32; 2];
    // SAFETY: the buffer's length is passed with it.
    let attached = unsafe { GetConsoleProcessList(processes.as_mut_ptr(), 2) };
    if attached == 1 {
        // SAFETY: plain call; nothing else holds the console.
        unsafe { FreeConsole() };
    }
}

/// Whether the privilege `name` is enabled in this process's token.
pub fn privilege_enabled(name: &str) -> io::Result<bool> {
    use winapi::um::winbase::LookupPrivilegeValueW;
    use winapi::um::winnt::{LUID, SE_PRIVILEGE_ENABLED, TOKEN_PRIVILEGES, TokenPrivileges};
    // SAFETY: the buffer is sized by the first call; handle closed below.
    unsafe {
        let mut luid: LUID = std::mem::zeroed();
        if LookupPrivilegeValueW(std::ptr::null(), wide(name).as_ptr(), &mut luid) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut len: DWORD = 0;
        GetTokenInformation(token, TokenPrivileges, std::ptr::null_mut(), 0, &mut len);
        let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
        let ok = GetTokenInformation(
            token,
            TokenPrivileges,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as DWORD,
            &mut len,
        );
        CloseHandle(token);
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        let privileges = &*(buf.as_ptr() as *const TOKEN_PRIVILEGES);
        let all = std::slice::from_raw_parts(
            privileges.Privileges.as_ptr(),
            privileges.PrivilegeCount as usize,
        );
        Ok(all.iter().any(|p| {
            p.Luid.LowPart == luid.LowPart
                && p.Luid.HighPart == luid.HighPart
                && p.Attributes & SE_PRIVILEGE_ENABLED != 0
        }))
    }
}
