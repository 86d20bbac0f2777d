//! The Windows Event Log.

use std::io;

use super::*;

/// The Windows Event Log's source name of persnap's events (registered by
/// the setup program, with `persnap-events.dll` as its message file).
pub const EVENT_SOURCE: &str = "persnap";

/// Write one event into the Application log under [`EVENT_SOURCE`]: its
/// id, its type and its message (the message file turns id and message
/// into the text Event Viewer shows: the message itself).
pub fn report_event(
    id: u32,
    severity: crate::monitor::events::Severity,
    message: &str,
) -> io::Result<()> {
    use crate::monitor::events::Severity;
    use winapi::um::winbase::{DeregisterEventSource, RegisterEventSourceW, ReportEventW};
    use winapi::um::winnt::{
        EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE,
    };
    let source = wide(EVENT_SOURCE);
    // An event's strings are at most 31,839 characters.
    let text: String = message.chars().take(31_000).collect();
    let text = wide(&text);
    let kind = match severity {
        Severity::Information => EVENTLOG_INFORMATION_TYPE,
        Severity::Warning => EVENTLOG_WARNING_TYPE,
        Severity::Error => EVENTLOG_ERROR_TYPE,
    };
    // SAFETY: a NUL-terminated name; the handle is closed below.
    let log = unsafe { RegisterEventSourceW(std::ptr::null(), source.as_ptr()) };
    if log.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut strings = [text.as_ptr()];
    // SAFETY: one NUL-terminated string, alive for the call; no raw data.
    let ok = unsafe {
        ReportEventW(
            log,
            kind,
            0,
            id,
            std::ptr::null_mut(),
            1,
            0,
            strings.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    };
    let error = io::Error::last_os_error();
    // SAFETY: the handle RegisterEventSourceW gave.
    unsafe { DeregisterEventSource(log) };
    if ok == 0 { Err(error) } else { Ok(()) }
}
