//! Telling administrators where they already look (issue #31): the
//! protection of every database as Prometheus metrics, for
//! `persnap status --format prometheus` and node_exporter's textfile
//! collector; an event per run for the Windows Event Log; a log file
//! for support; a scheduled run's ping address and failure mail; and a
//! summary mail.

#[cfg(feature = "alerts")]
pub mod alert;
pub mod events;
#[cfg(target_os = "linux")]
pub mod journal;
pub mod log;
#[cfg(feature = "alerts")]
pub mod mail;
pub mod metrics;
#[cfg(feature = "alerts")]
pub mod ping;
pub mod settings;
#[cfg(feature = "alerts")]
pub mod summary;
