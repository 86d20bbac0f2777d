//! Telling administrators where they already look (issue #31): the
//! protection of every database as Prometheus metrics, for
//! `persnap status --format prometheus` and node_exporter's textfile
//! collector; an event per run for the Windows Event Log; and a log
//! file for support.

pub mod events;
#[cfg(target_os = "linux")]
pub mod journal;
pub mod log;
pub mod metrics;
pub mod settings;
