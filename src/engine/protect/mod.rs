//! Protection: which databases are protected, whether each is, the ones
//! found to protect, and their schedules.

/// Finding correlator stores to protect.
pub mod discover;
/// "Is my database protected?", per database.
pub mod protection;
/// Protected databases.
pub mod registry;
/// Scheduled backups (systemd, Task Scheduler).
pub mod schedule;
