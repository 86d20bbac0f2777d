//! persnap engine: consistent backups of a live Apama correlator persistence
//! database (SQLite) taken from a filesystem snapshot.
//!
//! Three rooms, each a folder: `engine/` (never prints, never elevates, no
//! user interface; its modules are re-exported here), `privileged/` (the
//! only things the helper does as root) and the front ends (`main.rs`,
//! `cli.rs`, `gui/`; and `bin/persnap-helper.rs`). Front ends build a
//! job for `pipeline::run` (one backup or restore, for every front end)
//! and receive progress through the [`progress::Progress`] trait they
//! supply.
//!
//! Flow of one backup (see [`backup`]):
//! discover the store ([`store`]) → find its volume and snapshot method
//! ([`volume`]) → sweep leftovers and take a snapshot ([`snapshot`]) → stream
//! the store files from the snapshot into a `.partial` directory ([`copy`])
//! → release the snapshot → verify a scratch copy with SQLite ([`verify`]) →
//! write the manifest ([`manifest`]) → rename to the final name → record the
//! run in history ([`history`]).

mod engine;
pub mod privileged;

pub use engine::*;
pub use error::{Error, ErrorKind, Result};

/// Version of this build, recorded in manifests and history.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
