//! Win32 named pipes with overlapped I/O (see the parent module).

use std::io;
use std::ptr::null_mut;
use std::sync::Arc;
use std::time::Duration;

use winapi::shared::minwindef::{DWORD, FALSE, TRUE};
use winapi::shared::sddl::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use winapi::shared::winerror::{
    ERROR_BROKEN_PIPE, ERROR_IO_PENDING, ERROR_NO_DATA, ERROR_PIPE_CONNECTED, WAIT_TIMEOUT,
};
use winapi::um::errhandlingapi::GetLastError;
use winapi::um::fileapi::{CreateFileW, OPEN_EXISTING, ReadFile, WriteFile};
use winapi::um::handleapi::{CloseHandle, INVALID_HANDLE_VALUE};
use winapi::um::ioapiset::{CancelIoEx, GetOverlappedResult};
use winapi::um::minwinbase::{OVERLAPPED, SECURITY_ATTRIBUTES};
use winapi::um::namedpipeapi::{ConnectNamedPipe, CreateNamedPipeW};
use winapi::um::processthreadsapi::{GetCurrentProcess, OpenProcessToken};
use winapi::um::securitybaseapi::GetTokenInformation;
use winapi::um::synchapi::{CreateEventW, WaitForMultipleObjects};
use winapi::um::winbase::{
    FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, GetNamedPipeClientProcessId,
    GetNamedPipeServerProcessId, LocalFree, PIPE_ACCESS_DUPLEX, PIPE_READMODE_BYTE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_WAIT, SECURITY_IDENTIFICATION,
    SECURITY_SQOS_PRESENT, WAIT_OBJECT_0,
};
use winapi::um::winnt::{
    GENERIC_READ, GENERIC_WRITE, HANDLE, PSECURITY_DESCRIPTOR, TOKEN_QUERY, TOKEN_USER, TokenUser,
};

const BUFFER: DWORD = 64 * 1024;

use crate::sys::wide;

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// An owned Win32 handle.
struct Handle(HANDLE);

// Handles are plain kernel object references, usable from any thread.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

/// One end of a persnap pipe. Clone the `Arc` to read on one thread and
/// write on another; every operation is overlapped and waited for.
pub struct Pipe {
    handle: Handle,
}

/// The current user's SID as a string (`S-1-5-21-…`).
pub fn current_user_sid() -> io::Result<String> {
    // SAFETY: token query into a buffer sized by the first call; the SID
    // string is freed with LocalFree.
    unsafe {
        let mut token: HANDLE = null_mut();
        if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
            return Err(last_error());
        }
        let token = Handle(token);
        let mut len: DWORD = 0;
        GetTokenInformation(token.0, TokenUser, null_mut(), 0, &mut len);
        let mut buf = vec![0u8; len as usize];
        if GetTokenInformation(token.0, TokenUser, buf.as_mut_ptr().cast(), len, &mut len) == 0 {
            return Err(last_error());
        }
        let user = &*(buf.as_ptr() as *const TOKEN_USER);
        let mut text: *mut u16 = null_mut();
        if ConvertSidToStringSidW(user.User.Sid, &mut text) == 0 {
            return Err(last_error());
        }
        let mut n = 0;
        while *text.add(n) != 0 {
            n += 1;
        }
        let sid = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
        LocalFree(text.cast());
        Ok(sid)
    }
}

impl Pipe {
    /// Create the server end: first instance only, local clients only,
    /// access as `sddl` says.
    pub fn create(name: &str, sddl: &str) -> io::Result<Pipe> {
        // SAFETY: the descriptor lives until after CreateNamedPipeW and is
        // freed with LocalFree.
        unsafe {
            let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
            if ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide(sddl).as_ptr(),
                SDDL_REVISION_1 as DWORD,
                &mut descriptor,
                null_mut(),
            ) == 0
            {
                return Err(last_error());
            }
            let mut attributes = SECURITY_ATTRIBUTES {
                nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as DWORD,
                lpSecurityDescriptor: descriptor,
                bInheritHandle: FALSE,
            };
            let handle = CreateNamedPipeW(
                wide(name).as_ptr(),
                PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE | FILE_FLAG_OVERLAPPED,
                PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                1,
                BUFFER,
                BUFFER,
                0,
                &mut attributes,
            );
            LocalFree(descriptor);
            if handle == INVALID_HANDLE_VALUE {
                return Err(last_error());
            }
            Ok(Pipe {
                handle: Handle(handle),
            })
        }
    }

    /// Open the client end of an existing pipe. The server may only
    /// identify this process, not act as it.
    pub fn open(name: &str) -> io::Result<Pipe> {
        // SAFETY: plain CreateFileW with a NUL-terminated name.
        let handle = unsafe {
            CreateFileW(
                wide(name).as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                0,
                null_mut(),
                OPEN_EXISTING,
                FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(last_error());
        }
        Ok(Pipe {
            handle: Handle(handle),
        })
    }

    /// Wait for the client to connect, giving up when `abandon` (a process
    /// handle, e.g. the helper's) is signalled first or after `timeout`.
    pub fn accept(&self, abandon: Option<HANDLE>, timeout: Duration) -> io::Result<()> {
        let event = new_event()?;
        let mut overlapped = overlapped_with(&event);
        // SAFETY: the OVERLAPPED and its event outlive the operation: we
        // wait for it, or cancel it and wait, before returning.
        unsafe {
            if ConnectNamedPipe(self.handle.0, &mut overlapped) != 0 {
                return Ok(());
            }
            match GetLastError() {
                // Connected before we asked; or connected and already gone
                // again (its end of the stream reads as end of file).
                ERROR_PIPE_CONNECTED | ERROR_NO_DATA => return Ok(()),
                ERROR_IO_PENDING => {}
                _ => return Err(last_error()),
            }
            let mut handles = vec![event.0];
            handles.extend(abandon);
            let millis = timeout.as_millis().min(u32::MAX as u128 - 1) as DWORD;
            let woke =
                WaitForMultipleObjects(handles.len() as DWORD, handles.as_ptr(), FALSE, millis);
            if woke == WAIT_OBJECT_0 {
                let mut n = 0;
                if GetOverlappedResult(self.handle.0, &mut overlapped, &mut n, TRUE) == 0 {
                    return Err(last_error());
                }
                return Ok(());
            }
            CancelIoEx(self.handle.0, &mut overlapped);
            let mut n = 0;
            GetOverlappedResult(self.handle.0, &mut overlapped, &mut n, TRUE);
            Err(if woke == WAIT_TIMEOUT {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the helper did not connect in time",
                )
            } else {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the helper ended before it connected",
                )
            })
        }
    }

    /// Process id of the connected client (server side).
    pub fn client_pid(&self) -> io::Result<u32> {
        let mut pid = 0;
        // SAFETY: out-pointer to a local.
        if unsafe { GetNamedPipeClientProcessId(self.handle.0, &mut pid) } == 0 {
            return Err(last_error());
        }
        Ok(pid)
    }

    /// Process id of the server (client side).
    pub fn server_pid(&self) -> io::Result<u32> {
        let mut pid = 0;
        // SAFETY: out-pointer to a local.
        if unsafe { GetNamedPipeServerProcessId(self.handle.0, &mut pid) } == 0 {
            return Err(last_error());
        }
        Ok(pid)
    }

    fn overlapped_io(
        &self,
        op: impl FnOnce(HANDLE, *mut OVERLAPPED, &mut DWORD) -> i32,
    ) -> io::Result<usize> {
        let event = new_event()?;
        let mut overlapped = overlapped_with(&event);
        let mut n: DWORD = 0;
        // SAFETY: the operation is waited for before `overlapped` goes away.
        unsafe {
            if op(self.handle.0, &mut overlapped, &mut n) == 0 {
                match GetLastError() {
                    ERROR_IO_PENDING => {
                        if GetOverlappedResult(self.handle.0, &mut overlapped, &mut n, TRUE) == 0 {
                            return broken_pipe_is_eof(last_error());
                        }
                    }
                    _ => return broken_pipe_is_eof(last_error()),
                }
            } else if GetOverlappedResult(self.handle.0, &mut overlapped, &mut n, TRUE) == 0 {
                return broken_pipe_is_eof(last_error());
            }
        }
        Ok(n as usize)
    }
}

/// The other end closing is the end of the stream, as with stdin.
fn broken_pipe_is_eof(e: io::Error) -> io::Result<usize> {
    if e.raw_os_error() == Some(ERROR_BROKEN_PIPE as i32) {
        Ok(0)
    } else {
        Err(e)
    }
}

fn new_event() -> io::Result<Handle> {
    // SAFETY: an unnamed manual-reset event.
    let event = unsafe { CreateEventW(null_mut(), TRUE, FALSE, null_mut()) };
    if event.is_null() {
        Err(last_error())
    } else {
        Ok(Handle(event))
    }
}

fn overlapped_with(event: &Handle) -> OVERLAPPED {
    // SAFETY: OVERLAPPED is plain data; zero is its initial state.
    let mut overlapped: OVERLAPPED = unsafe { std::mem::zeroed() };
    overlapped.hEvent = event.0;
    overlapped
}

impl io::Read for &Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(u32::MAX as usize) as DWORD;
        // SAFETY: `buf` outlives the waited-for operation.
        self.overlapped_io(|h, o, n| unsafe { ReadFile(h, buf.as_mut_ptr().cast(), len, n, o) })
    }
}

impl io::Write for &Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len().min(u32::MAX as usize) as DWORD;
        // SAFETY: `buf` outlives the waited-for operation.
        let n =
            self.overlapped_io(|h, o, n| unsafe { WriteFile(h, buf.as_ptr().cast(), len, n, o) })?;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader or writer over a shared pipe, for APIs that want ownership.
#[derive(Clone)]
pub struct SharedPipe(pub Arc<Pipe>);

impl io::Read for SharedPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl io::Write for SharedPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use super::*;
    use crate::pipe::{check_peer, pipe_sddl, random_pipe_name};

    fn server() -> (String, Pipe) {
        let name = random_pipe_name();
        let sddl = pipe_sddl(&current_user_sid().unwrap());
        (name.clone(), Pipe::create(&name, &sddl).unwrap())
    }

    #[test]
    fn frames_flow_both_ways_while_a_read_is_pending() {
        let (name, server) = server();
        let client = std::thread::spawn(move || {
            let client = Arc::new(Pipe::open(&name).unwrap());
            // A reader blocked on the pipe must not stop this thread's writes.
            let reader = {
                let c = SharedPipe(Arc::clone(&client));
                std::thread::spawn(move || {
                    let mut line = String::new();
                    BufReader::new(c).read_line(&mut line).unwrap();
                    line
                })
            };
            std::thread::sleep(Duration::from_millis(200));
            (&*client).write_all(b"event 1\nevent 2\n").unwrap();
            (client.server_pid().unwrap(), reader.join().unwrap())
        });
        server.accept(None, Duration::from_secs(10)).unwrap();
        assert!(check_peer("helper", std::process::id(), server.client_pid().unwrap()).is_ok());
        let mut events = BufReader::new(SharedPipe(Arc::new(server)));
        let mut line = String::new();
        events.read_line(&mut line).unwrap();
        assert_eq!(line, "event 1\n");
        (&*events.get_ref().0).write_all(b"cancel\n").unwrap();
        let (server_pid, got) = client.join().unwrap();
        assert_eq!(server_pid, std::process::id());
        assert_eq!(got, "cancel\n");
    }

    #[test]
    fn only_one_instance_of_a_name_can_exist() {
        let (name, _server) = server();
        let again = Pipe::create(&name, &pipe_sddl(&current_user_sid().unwrap()));
        assert!(
            again.is_err(),
            "a squatter cannot create the pipe first and intercept the helper"
        );
    }

    #[test]
    fn accept_gives_up_after_its_timeout() {
        let (_name, server) = server();
        let err = server.accept(None, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn a_closed_client_reads_as_end_of_stream() {
        let (name, server) = server();
        let client = std::thread::spawn(move || drop(Pipe::open(&name).unwrap()));
        server.accept(None, Duration::from_secs(10)).unwrap();
        client.join().unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(io::Read::read(&mut &server, &mut buf).unwrap(), 0);
    }

    /// A client that connects and goes before the server accepts
    /// (ERROR_NO_DATA) has connected: its stream simply ends.
    #[test]
    fn a_client_gone_before_accept_reads_as_end_of_stream() {
        let (name, server) = server();
        drop(Pipe::open(&name).unwrap());
        server.accept(None, Duration::from_secs(10)).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(io::Read::read(&mut &server, &mut buf).unwrap(), 0);
    }
}
