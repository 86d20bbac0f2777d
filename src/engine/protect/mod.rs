//! Protection: which databases are protected, whether each is, the ones
//! found to protect, and their schedules.

/// Finding correlator stores to protect.
pub mod discover;
/// Protecting a database as one transaction (the helper runs it).
pub mod protecting;
/// "Is my database protected?", per database.
pub mod protection;
/// Protected databases.
pub mod registry;
/// Scheduled backups (systemd, Task Scheduler).
pub mod schedule;
