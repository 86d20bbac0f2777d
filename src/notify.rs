//! Desktop notifications for scheduled runs that failed or were missed.
//!
//! Linux: a freedesktop `Notify` call (zbus) on the session bus of the
//! user whose history the schedule records into. Only that user may use
//! their session bus: a run that is still root shows it through this
//! program started as them (`persnap schedule toast`). Windows: a
//! notification-area balloon, which Windows 10 and later show as a toast;
//! a scheduled run (SYSTEM, in session 0 where nobody sees anything)
//! starts `persnap schedule toast` as the user of each active session to
//! show it there.

/// freedesktop Notify on the session bus of the owner of `owner_of`
/// (`/run/user/UID/bus`, or `PERSNAP_NOTIFY_BUS`).
#[cfg(unix)]
pub fn desktop(owner_of: &std::path::Path, summary: &str, body: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let owner = std::fs::metadata(owner_of)?;
    let bus = match std::env::var("PERSNAP_NOTIFY_BUS") {
        Ok(bus) => bus,
        Err(_) => {
            let socket = format!("/run/user/{}/bus", owner.uid());
            anyhow::ensure!(
                std::path::Path::new(&socket).exists(),
                "the user has no desktop session ({socket} is missing)"
            );
            format!("unix:path={socket}")
        }
    };
    if persnap::fsutil::is_root() && owner.uid() != 0 {
        // As them: this program, with nothing of root's environment.
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["schedule", "toast", "--summary", summary, "--body", body])
            .env_clear()
            .env("PERSNAP_NOTIFY_BUS", &bus)
            .uid(owner.uid())
            .gid(owner.gid())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Ok(());
    }
    notify_on(&bus, summary, body)
}

/// The `Notify` call itself, on the bus at `address`: urgent (it is a
/// failure), with persnap's name and the error icon, until dismissed by
/// the server's rule.
#[cfg(all(target_os = "linux", feature = "alerts"))]
fn notify_on(address: &str, summary: &str, body: &str) -> anyhow::Result<()> {
    use zbus::zvariant::Value;
    let connection = zbus::blocking::connection::Builder::address(address)?.build()?;
    let mut hints = std::collections::HashMap::<&str, Value>::new();
    hints.insert("urgency", Value::U8(2));
    let reply = connection.call_method(
        Some("org.freedesktop.Notifications"),
        "/org/freedesktop/Notifications",
        Some("org.freedesktop.Notifications"),
        "Notify",
        &(
            "persnap",
            0u32,
            "dialog-error",
            summary,
            body,
            Vec::<&str>::new(),
            hints,
            -1i32,
        ),
    )?;
    let _id: u32 = reply.body().deserialize()?;
    Ok(())
}

/// Other Unix systems have no session bus persnap knows; a build without
/// alerts has no notifications.
#[cfg(all(unix, not(all(target_os = "linux", feature = "alerts"))))]
fn notify_on(_address: &str, _summary: &str, _body: &str) -> anyhow::Result<()> {
    anyhow::bail!("desktop notifications are only sent on Linux, by a build with alerts")
}

/// Windows: show it in every active user session (from SYSTEM), or here.
#[cfg(windows)]
pub fn desktop(_owner_of: &std::path::Path, summary: &str, body: &str) -> anyhow::Result<()> {
    if windows::in_service_session() {
        let shown = windows::toast_in_user_sessions(summary, body)?;
        anyhow::ensure!(shown > 0, "nobody is logged on to see it");
        Ok(())
    } else {
        windows::show_balloon(summary, body, std::time::Duration::from_secs(10))
    }
}

#[cfg(windows)]
pub mod windows {
    use std::mem::{size_of, zeroed};
    use std::ptr::null_mut;
    use std::time::{Duration, Instant};

    use winapi::shared::minwindef::FALSE;
    use winapi::shared::windef::HWND;
    use winapi::um::handleapi::CloseHandle;
    use winapi::um::processthreadsapi::{
        CreateProcessAsUserW, GetCurrentProcessId, PROCESS_INFORMATION, ProcessIdToSessionId,
        STARTUPINFOW,
    };
    use winapi::um::shellapi::{
        NIF_ICON, NIF_INFO, NIF_TIP, NIIF_ERROR, NIM_ADD, NIM_DELETE, NOTIFYICONDATAW,
        Shell_NotifyIconW,
    };
    use winapi::um::userenv::{CreateEnvironmentBlock, DestroyEnvironmentBlock};
    use winapi::um::winbase::{CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT};
    use winapi::um::winuser::{
        CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, HWND_MESSAGE, IDI_ERROR,
        LoadIconW, MSG, PM_REMOVE, PeekMessageW, RegisterClassW, TranslateMessage, WNDCLASSW,
    };
    use winapi::um::wtsapi32::WTSQueryUserToken;

    /// `WTS_SESSION_INFOW` (winapi 0.3 lacks the session enumeration).
    #[repr(C)]
    struct SessionInfo {
        session_id: u32,
        _station_name: *mut u16,
        state: i32,
    }
    /// `WTSActive`: a user is logged on and connected.
    const WTS_ACTIVE: i32 = 0;

    #[link(name = "wtsapi32")]
    unsafe extern "system" {
        fn WTSEnumerateSessionsW(
            server: winapi::um::winnt::HANDLE,
            reserved: u32,
            version: u32,
            info: *mut *mut SessionInfo,
            count: *mut u32,
        ) -> i32;
        fn WTSFreeMemory(memory: *mut std::ffi::c_void);
    }

    use persnap::sys::wide;

    /// Copy `text` into a fixed UTF-16 field, cut to fit with its NUL.
    fn fill(field: &mut [u16], text: &str) {
        let units: Vec<u16> = text.encode_utf16().take(field.len() - 1).collect();
        field[..units.len()].copy_from_slice(&units);
        field[units.len()] = 0;
    }

    /// Session 0 is where services and SYSTEM tasks run; no desktop.
    pub fn in_service_session() -> bool {
        let mut session = 0u32;
        // SAFETY: writes one u32.
        let ok = unsafe { ProcessIdToSessionId(GetCurrentProcessId(), &mut session) };
        ok != 0 && session == 0
    }

    /// Start `persnap schedule toast` as the user of each active session;
    /// returns how many were started.
    pub fn toast_in_user_sessions(summary: &str, body: &str) -> anyhow::Result<usize> {
        let exe = std::env::current_exe()?;
        let quote = persnap::schedule::taskschd::quote_arg;
        let line = format!(
            "{} schedule toast --summary {} --body {}",
            quote(&exe.to_string_lossy()),
            quote(summary),
            quote(body)
        );
        let mut sessions: *mut SessionInfo = null_mut();
        let mut count = 0u32;
        // SAFETY: WTSEnumerateSessionsW allocates the array, freed below.
        if unsafe {
            // A null server handle: this machine.
            WTSEnumerateSessionsW(null_mut(), 0, 1, &mut sessions, &mut count)
        } == 0
        {
            anyhow::bail!("cannot list sessions: {}", std::io::Error::last_os_error());
        }
        // SAFETY: the array has `count` entries until WTSFreeMemory.
        let active: Vec<u32> = unsafe { std::slice::from_raw_parts(sessions, count as usize) }
            .iter()
            .filter(|s| s.state == WTS_ACTIVE)
            .map(|s| s.session_id)
            .collect();
        // SAFETY: allocated by WTSEnumerateSessionsW.
        unsafe { WTSFreeMemory(sessions.cast()) };
        Ok(active
            .into_iter()
            .filter(|id| start_as_session_user(*id, &exe, &line).is_ok())
            .count())
    }

    fn start_as_session_user(
        session: u32,
        exe: &std::path::Path,
        line: &str,
    ) -> std::io::Result<()> {
        let mut token = null_mut();
        // SAFETY: needs SYSTEM (SE_TCB_NAME); the token is closed below.
        if unsafe { WTSQueryUserToken(session, &mut token) } == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut env = null_mut();
        // SAFETY: the block is destroyed below; on failure none is used.
        let have_env = unsafe { CreateEnvironmentBlock(&mut env, token, FALSE) } != 0;
        let app = wide(exe);
        let mut cmdline = wide(line);
        let mut desktop = wide("winsta0\\default");
        // SAFETY: zeroed STARTUPINFOW/PROCESS_INFORMATION are valid inputs.
        let mut si: STARTUPINFOW = unsafe { zeroed() };
        si.cb = size_of::<STARTUPINFOW>() as u32;
        si.lpDesktop = desktop.as_mut_ptr();
        let mut pi: PROCESS_INFORMATION = unsafe { zeroed() };
        // SAFETY: all strings are NUL-terminated and outlive the call.
        let ok = unsafe {
            CreateProcessAsUserW(
                token,
                app.as_ptr(),
                cmdline.as_mut_ptr(),
                null_mut(),
                null_mut(),
                FALSE,
                CREATE_UNICODE_ENVIRONMENT | CREATE_NO_WINDOW,
                if have_env { env } else { null_mut() },
                null_mut(),
                &mut si,
                &mut pi,
            )
        };
        let result = if ok != 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        };
        // SAFETY: each handle is closed once; the block was created above.
        unsafe {
            if ok != 0 {
                CloseHandle(pi.hThread);
                CloseHandle(pi.hProcess);
            }
            if have_env {
                DestroyEnvironmentBlock(env);
            }
            CloseHandle(token);
        }
        result
    }

    /// A notification-area balloon (a toast on Windows 10 and later), kept
    /// for `keep`, then removed.
    pub fn show_balloon(summary: &str, body: &str, keep: Duration) -> anyhow::Result<()> {
        let hwnd = message_window()?;
        // SAFETY: a zeroed NOTIFYICONDATAW with cbSize set is the documented start.
        let mut nid: NOTIFYICONDATAW = unsafe { zeroed() };
        nid.cbSize = size_of::<NOTIFYICONDATAW>() as u32;
        nid.hWnd = hwnd;
        nid.uID = 1;
        nid.uFlags = NIF_ICON | NIF_TIP | NIF_INFO;
        // SAFETY: a system icon, no module needed.
        nid.hIcon = unsafe { LoadIconW(null_mut(), IDI_ERROR) };
        fill(&mut nid.szTip, "persnap");
        fill(&mut nid.szInfoTitle, summary);
        fill(&mut nid.szInfo, body);
        nid.dwInfoFlags = NIIF_ERROR;
        // SAFETY: nid is fully initialized above.
        if unsafe { Shell_NotifyIconW(NIM_ADD, &mut nid) } == 0 {
            // SAFETY: our window.
            unsafe { DestroyWindow(hwnd) };
            anyhow::bail!("the notification area refused the notification");
        }
        pump_messages(keep);
        // SAFETY: removes the icon added above, then our window.
        unsafe {
            Shell_NotifyIconW(NIM_DELETE, &mut nid);
            DestroyWindow(hwnd);
        }
        Ok(())
    }

    /// A hidden message-only window to own the notification icon.
    fn message_window() -> anyhow::Result<HWND> {
        let class = wide("persnap-notify");
        // SAFETY: a zeroed WNDCLASSW with a name and window procedure.
        let mut wc: WNDCLASSW = unsafe { zeroed() };
        wc.lpfnWndProc = Some(DefWindowProcW);
        wc.lpszClassName = class.as_ptr();
        // SAFETY: registering twice in one process fails harmlessly.
        unsafe { RegisterClassW(&wc) };
        // SAFETY: the class was registered above; HWND_MESSAGE: no UI.
        let hwnd = unsafe {
            CreateWindowExW(
                0,
                class.as_ptr(),
                class.as_ptr(),
                0,
                0,
                0,
                0,
                0,
                HWND_MESSAGE,
                null_mut(),
                null_mut(),
                null_mut(),
            )
        };
        anyhow::ensure!(
            !hwnd.is_null(),
            "cannot create a window: {}",
            std::io::Error::last_os_error()
        );
        Ok(hwnd)
    }

    fn pump_messages(keep: Duration) {
        let until = Instant::now() + keep;
        while Instant::now() < until {
            // SAFETY: a zeroed MSG is filled by PeekMessageW.
            let mut msg: MSG = unsafe { zeroed() };
            while unsafe { PeekMessageW(&mut msg, null_mut(), 0, 0, PM_REMOVE) } != 0 {
                unsafe {
                    TranslateMessage(&msg);
                    DispatchMessageW(&msg);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
