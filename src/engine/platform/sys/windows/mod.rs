//! Windows implementations of [`crate::sys`], one file per concern:
//! files, security descriptors, this process, the machine, other
//! programs, and the Event Log.

use std::ffi::OsString;
use std::os::windows::ffi::{OsStrExt, OsStringExt};

pub(super) const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
pub(super) const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;

/// A path or text as a NUL-terminated UTF-16 string, for Win32 calls.
pub fn wide(text: impl AsRef<std::ffi::OsStr>) -> Vec<u16> {
    text.as_ref()
        .encode_wide()
        .chain(std::iter::once(0))
        .collect()
}

/// The NUL-terminated UTF-16 string at `text` (one a Win32 call returned).
///
/// # Safety
/// `text` must point to a NUL-terminated string, alive for the call.
pub(super) unsafe fn from_wide_ptr(text: *const u16) -> OsString {
    let mut n = 0;
    // SAFETY: the caller's promise: readable up to and including the NUL.
    unsafe {
        while *text.add(n) != 0 {
            n += 1;
        }
        OsString::from_wide(std::slice::from_raw_parts(text, n))
    }
}

pub(super) fn from_wide(buf: &[u16]) -> String {
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    OsString::from_wide(&buf[..end])
        .to_string_lossy()
        .into_owned()
}

/// A NUL-terminated wide string.
///
/// # Safety
/// `p` is null or points at a NUL-terminated UTF-16 string.
pub(super) unsafe fn wide_ptr(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: as the caller promises.
    unsafe {
        let len = (0..).take_while(|&i| *p.add(i) != 0).count();
        String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
    }
}

mod events;
mod files;
mod process;
mod security;
mod services;
mod system;

pub use events::*;
pub use files::*;
pub use process::*;
pub use security::*;
pub use services::*;
pub use system::*;

#[cfg(test)]
mod tests;
