//! Other programs: which hold a file open, the services' command lines,
//! and what tools print.

use std::fs::File;
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::path::PathBuf;

use winapi::shared::minwindef::DWORD;

use super::*;

/// Store files another process has open, each said as "process 1234
/// (correlator.exe) has the database open". The Restart Manager names the
/// holders; a file it names nobody for still counts as in use when it
/// cannot be opened for reading without sharing (so a read-only file, or
/// one only readable by its owner, is never taken for "not in use": the
/// check asks for no write access).
pub fn processes_using(paths: &[PathBuf]) -> Vec<String> {
    const ERROR_SHARING_VIOLATION: i32 = 32;
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return Vec::new();
    }
    let holders = restart_manager_holders(&existing).unwrap_or_default();
    if !holders.is_empty() {
        return holders
            .iter()
            .map(|(pid, app)| describe_holder(*pid, app))
            .collect();
    }
    existing
        .into_iter()
        .filter(|p| {
            let exclusive = File::options().read(true).share_mode(0).open(p);
            matches!(exclusive, Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION))
        })
        .map(|p| format!("another program has {} open", p.display()))
        .collect()
}

/// "process 1234 (Apama correlator) has the database open".
pub fn describe_holder(pid: u32, app: &str) -> String {
    let app = app.trim();
    if app.is_empty() {
        format!("process {pid} has the database open")
    } else {
        format!("process {pid} ({app}) has the database open")
    }
}

/// The processes (id, application name) the Restart Manager says hold any
/// of `paths` open.
pub(super) fn restart_manager_holders(paths: &[&PathBuf]) -> io::Result<Vec<(u32, String)>> {
    use winapi::shared::winerror::{ERROR_MORE_DATA, ERROR_SUCCESS};
    use winapi::um::restartmanager::{
        CCH_RM_SESSION_KEY, RM_PROCESS_INFO, RmEndSession, RmGetList, RmRegisterResources,
        RmStartSession,
    };
    let names: Vec<Vec<u16>> = paths.iter().map(|p| wide(p.as_os_str())).collect();
    let mut pointers: Vec<*const u16> = names.iter().map(|n| n.as_ptr()).collect();
    let mut session: DWORD = 0;
    let mut key = [0u16; CCH_RM_SESSION_KEY + 1];
    // SAFETY: buffers sized as the API documents; the session is ended on
    // every path.
    unsafe {
        let rc = RmStartSession(&mut session, 0, key.as_mut_ptr());
        if rc != ERROR_SUCCESS {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
        struct Session(DWORD);
        impl Drop for Session {
            fn drop(&mut self) {
                // SAFETY: a session we started.
                unsafe {
                    RmEndSession(self.0);
                }
            }
        }
        let _end = Session(session);
        let rc = RmRegisterResources(
            session,
            pointers.len() as u32,
            pointers.as_mut_ptr(),
            0,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        if rc != ERROR_SUCCESS {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
        let mut infos: Vec<RM_PROCESS_INFO> = Vec::new();
        for _ in 0..3 {
            let (mut needed, mut count, mut reasons) = (0u32, infos.len() as u32, 0u32);
            let rc = RmGetList(
                session,
                &mut needed,
                &mut count,
                if infos.is_empty() {
                    std::ptr::null_mut()
                } else {
                    infos.as_mut_ptr()
                },
                &mut reasons,
            );
            if rc == ERROR_SUCCESS {
                infos.truncate(count as usize);
                return Ok(infos
                    .iter()
                    .map(|i| (i.Process.dwProcessId, from_wide(&i.strAppName)))
                    .collect());
            }
            if rc != ERROR_MORE_DATA {
                return Err(io::Error::from_raw_os_error(rc as i32));
            }
            infos = vec![std::mem::zeroed(); needed as usize + 1];
        }
        Err(io::Error::other("the list of programs kept changing"))
    }
}

/// A console tool's output as text: Windows console programs (schtasks,
/// vssadmin) write to a pipe in the OEM code page (850 on a German or
/// French Windows, 437 on an English one), not UTF-8, so "Zugriff
/// verweigert" or "Accès refusé" would otherwise come out garbled.
pub fn decode_tool_output(bytes: &[u8]) -> String {
    use winapi::um::stringapiset::MultiByteToWideChar;
    use winapi::um::winnls::CP_OEMCP;
    if bytes.is_empty() || bytes.len() > i32::MAX as usize {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    // SAFETY: lengths passed with their buffers; the first call sizes the
    // second.
    unsafe {
        let n = MultiByteToWideChar(
            CP_OEMCP,
            0,
            bytes.as_ptr().cast(),
            bytes.len() as i32,
            std::ptr::null_mut(),
            0,
        );
        if n <= 0 {
            return String::from_utf8_lossy(bytes).into_owned();
        }
        let mut wide_text = vec![0u16; n as usize];
        MultiByteToWideChar(
            CP_OEMCP,
            0,
            bytes.as_ptr().cast(),
            bytes.len() as i32,
            wide_text.as_mut_ptr(),
            n,
        );
        String::from_utf16_lossy(&wide_text)
    }
}

/// Every Win32 service on this machine: its name and the command line it
/// starts (`QueryServiceConfigW`'s binary path), running or not. Services
/// this user may not query are left out.
pub fn service_command_lines() -> Vec<(String, String)> {
    use winapi::shared::winerror::ERROR_MORE_DATA;
    use winapi::um::errhandlingapi::GetLastError;
    use winapi::um::winnt::SERVICE_WIN32;
    use winapi::um::winsvc::{
        CloseServiceHandle, ENUM_SERVICE_STATUS_PROCESSW, EnumServicesStatusExW, OpenSCManagerW,
        OpenServiceW, QUERY_SERVICE_CONFIGW, QueryServiceConfigW, SC_ENUM_PROCESS_INFO,
        SC_MANAGER_ENUMERATE_SERVICE, SERVICE_QUERY_CONFIG, SERVICE_STATE_ALL,
    };
    let mut out = Vec::new();
    // SAFETY: handles are closed below; the buffers (u64s, for the
    // structures' alignment) are sized by the calls and outlive every
    // pointer into them.
    unsafe {
        let manager = OpenSCManagerW(
            std::ptr::null(),
            std::ptr::null(),
            SC_MANAGER_ENUMERATE_SERVICE,
        );
        if manager.is_null() {
            return out;
        }
        let mut buf: Vec<u64> = vec![0; 8 * 1024];
        let mut resume: DWORD = 0;
        for _ in 0..1000 {
            let (mut needed, mut count): (DWORD, DWORD) = (0, 0);
            let ok = EnumServicesStatusExW(
                manager,
                SC_ENUM_PROCESS_INFO,
                SERVICE_WIN32,
                SERVICE_STATE_ALL,
                buf.as_mut_ptr().cast(),
                (buf.len() * 8) as DWORD,
                &mut needed,
                &mut count,
                &mut resume,
                std::ptr::null(),
            );
            if ok == 0 && GetLastError() != ERROR_MORE_DATA {
                break;
            }
            let entries = std::slice::from_raw_parts(
                buf.as_ptr().cast::<ENUM_SERVICE_STATUS_PROCESSW>(),
                count as usize,
            );
            for entry in entries {
                let service = OpenServiceW(manager, entry.lpServiceName, SERVICE_QUERY_CONFIG);
                if service.is_null() {
                    continue;
                }
                let mut size: DWORD = 0;
                QueryServiceConfigW(service, std::ptr::null_mut(), 0, &mut size);
                let mut config: Vec<u64> = vec![0; (size as usize).div_ceil(8).max(1)];
                if QueryServiceConfigW(service, config.as_mut_ptr().cast(), size, &mut size) != 0 {
                    let config = &*config.as_ptr().cast::<QUERY_SERVICE_CONFIGW>();
                    out.push((
                        wide_ptr(entry.lpServiceName),
                        wide_ptr(config.lpBinaryPathName),
                    ));
                }
                CloseServiceHandle(service);
            }
            if ok != 0 {
                break;
            }
            // More to come, from where `resume` says: with room for it.
            if needed as usize > buf.len() * 8 {
                buf = vec![0; (needed as usize).div_ceil(8)];
            }
        }
        CloseServiceHandle(manager);
    }
    out
}

/// A command line split as Windows programs split theirs
/// (`CommandLineToArgvW`).
pub fn split_command_line(line: &str) -> Vec<String> {
    use winapi::um::shellapi::CommandLineToArgvW;
    use winapi::um::winbase::LocalFree;
    let wide_line = wide(line);
    let mut argc = 0;
    // SAFETY: the array CommandLineToArgvW returns is freed below.
    unsafe {
        let argv = CommandLineToArgvW(wide_line.as_ptr(), &mut argc);
        if argv.is_null() {
            return Vec::new();
        }
        let args = (0..argc as usize).map(|i| wide_ptr(*argv.add(i))).collect();
        LocalFree(argv.cast());
        args
    }
}
