//! The protocol between the unprivileged front ends (CLI, GUI) and the
//! elevated `persnap-helper`.
//!
//! Frames are single lines of JSON (newline-delimited), at most
//! [`MAX_FRAME`] bytes each, and carry [`PROTOCOL_VERSION`]. The caller
//! writes one [`Request`] and may later write [`Control::Cancel`] (closing
//! the helper's stdin also cancels). The helper answers with a stream of
//! [`Event`]s ending in exactly one `Done` or `Error`.
//!
//! [`validate`] checks a request the way the helper must, since pkexec
//! vouches only for who the caller is, not for what it asks. Problems the
//! engine knows (a missing folder, a symlinked store file) keep the
//! engine's own message; the rest are [`Error::Refused`].

pub const PROTOCOL_VERSION: u32 = 2;
/// Longest frame accepted, newline included.
pub const MAX_FRAME: usize = 64 * 1024;
/// Longest path accepted in a request.
pub const MAX_PATH: usize = 4096;
/// Longest sqlite-online timeout accepted (one day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Largest snapshot size accepted (1 PiB).
pub const MAX_SNAPSHOT_SIZE: u64 = 1 << 50;

pub mod answer;
mod frames;
mod levels;
mod requests;
mod validate;

pub use frames::*;
pub use levels::*;
pub use requests::*;
pub use validate::*;

#[cfg(test)]
mod tests;
