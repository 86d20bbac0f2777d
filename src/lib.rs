//! persnap engine: consistent backups of a live Apama correlator persistence
//! database (SQLite) taken from a filesystem snapshot.
//!
//! The engine never prints, never elevates and has no user interface. Front
//! ends (the CLI and GUI in `main.rs`, the elevated `persnap-helper`) call
//! [`backup::run_backup`] and friends and receive progress through the
//! [`progress::Progress`] trait they supply.
//!
//! Flow of one backup (see [`backup`]):
//! discover the store ([`store`]) → find its volume and snapshot method
//! ([`volume`]) → sweep leftovers and take a snapshot ([`snapshot`]) → stream
//! the store files from the snapshot into a `.partial` directory ([`copy`])
//! → release the snapshot → verify a scratch copy with SQLite ([`verify`]) →
//! write the manifest ([`manifest`]) → rename to the final name → record the
//! run in history ([`history`]).

pub mod backup;
pub mod copy;
pub mod error;
pub mod fsutil;
pub mod history;
pub mod loadgen;
pub mod manifest;
pub mod method;
pub mod online;
pub mod pipe;
pub mod privileged;
pub mod probe;
pub mod progress;
pub mod protocol;
pub mod registry;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod snapshot;
pub mod store;
pub mod sys;
pub mod tool;
pub mod units;
pub mod verify;
pub mod volume;
pub mod worker;

pub use error::{Error, ErrorKind, Result};

/// Version of this build, recorded in manifests and history.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
