//! Telling administrators where they already look (issue #31): the
//! protection of every database as Prometheus metrics, for
//! `persnap status --format prometheus` and node_exporter's textfile
//! collector; and a log file for support.

pub mod log;
pub mod metrics;
