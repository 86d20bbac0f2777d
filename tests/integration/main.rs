//! Every integration test, as modules of one test binary: one link of
//! the crate instead of one per file, and one test kit (`common`) for
//! them all. `cargo test --test integration` runs them; one module with
//! `cargo test --test integration schedule::`. Tests that need root or a
//! VM skip with a printed reason elsewhere (CI fails if they skip there).
//!
//! Modules run side by side in one process: a test must not depend on
//! anything another module's test could change at the same time (a
//! global sweep, a daemon it restarts, a process-wide setting).

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod bad_input;
#[cfg(target_os = "linux")]
mod btrfs_backup;
#[cfg(target_os = "linux")]
mod discover;
#[cfg(target_os = "linux")]
mod faults;
#[cfg(target_os = "linux")]
mod gui_window;
#[cfg(target_os = "linux")]
mod helper;
#[cfg(target_os = "linux")]
mod keyring;
#[cfg(target_os = "linux")]
mod lvm_vm;
#[cfg(target_os = "linux")]
mod online_backup;
#[cfg(target_os = "linux")]
mod protect;
#[cfg(target_os = "linux")]
mod reflink;
#[cfg(target_os = "linux")]
mod repository;
#[cfg(target_os = "linux")]
mod restore;
#[cfg(target_os = "linux")]
mod retention;
#[cfg(target_os = "linux")]
mod schedule;
#[cfg(target_os = "linux")]
mod status;
#[cfg(windows)]
mod windows_helper;
#[cfg(windows)]
mod windows_schedule;
