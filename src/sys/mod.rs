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
