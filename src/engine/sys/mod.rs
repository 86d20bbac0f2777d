//! The few operating-system calls the engine needs, one file per platform
//! with the same functions: opening without following links, private
//! files and folders, free space, durability and cache hints, privileges,
//! the host name and where run locks live. Everything above this module is
//! platform-neutral.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// `prefix` then `bytes`, every byte that is not alphanumeric or in `safe`
/// percent-encoded (for SQLite `file:` URIs).
fn percent_encoded(prefix: &str, bytes: &[u8], safe: &[u8]) -> String {
    let mut uri = String::from(prefix);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}
