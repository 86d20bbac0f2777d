//! The helper's answers, one type for each kind of request: a call
//! returns its own ([`answer`]), and the reply is matched once, here.

use std::path::PathBuf;

use super::{RemoteFailure, Reply};

/// One kind of answer: taken from a reply, or the reply given back
/// when it is of another kind.
pub trait Answer: Sized {
    fn from_reply(reply: Reply) -> Result<Self, Box<Reply>>;
}

/// The answer to a call, or why there is none: a reply of another
/// kind is the helper's mistake, said as such.
pub fn answer<A: Answer>(reply: Result<Reply, RemoteFailure>) -> Result<A, RemoteFailure> {
    A::from_reply(reply?).map_err(|other| RemoteFailure::unexpected(*other))
}

/// Any reply (a request whose answers differ by what it found).
impl Answer for Reply {
    fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
        Ok(reply)
    }
}

/// A backup: its folder and manifest.
#[derive(Debug)]
pub struct Backed {
    pub backup_dir: PathBuf,
    pub manifest: crate::manifest::Manifest,
}

/// A probe: what was found, and the test snapshot if one was asked for.
#[derive(Debug)]
pub struct Probed(pub crate::probe::ProbeReport);

/// What a cleanup removed, a line each.
#[derive(Debug)]
pub struct Cleaned(pub Vec<String>);

/// A restore, and the protection asked for with it.
#[derive(Debug)]
pub struct Restored {
    pub report: crate::restore::RestoreReport,
    pub protected: Option<Result<Box<Reply>, String>>,
}

/// A schedule installed.
#[derive(Debug)]
pub struct Scheduled {
    pub schedule: Box<crate::schedule::Schedule>,
    pub installed: crate::schedule::Installed,
}

/// A schedule removed, or there was none by that name.
#[derive(Debug)]
pub struct Unscheduled {
    pub name: String,
    pub existed: bool,
}

/// A database no longer protected, or there was none by that name.
#[derive(Debug)]
pub struct Unprotected {
    pub name: String,
    pub existed: bool,
    pub schedule_removed: Option<String>,
}

impl Answer for Backed {
    fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
        match reply {
            Reply::Backup {
                backup_dir,
                manifest,
            } => Ok(Backed {
                backup_dir,
                manifest,
            }),
            other => Err(Box::new(other)),
        }
    }
}

impl Answer for Probed {
    fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
        match reply {
            Reply::Probe { report } => Ok(Probed(report)),
            other => Err(Box::new(other)),
        }
    }
}

impl Answer for Cleaned {
    fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
        match reply {
            Reply::Cleanup { removed } => Ok(Cleaned(removed)),
            other => Err(Box::new(other)),
        }
    }
}

impl Answer for Restored {
    fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
        match reply {
            Reply::Restore { report, protected } => Ok(Restored { report, protected }),
            other => Err(Box::new(other)),
        }
    }
}

impl Answer for Scheduled {
    fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
        match reply {
            Reply::ScheduleAdded {
                schedule,
                installed,
            } => Ok(Scheduled {
                schedule,
                installed,
            }),
            other => Err(Box::new(other)),
        }
    }
}

impl Answer for Unscheduled {
    fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
        match reply {
            Reply::ScheduleRemoved { name, existed } => Ok(Unscheduled { name, existed }),
            other => Err(Box::new(other)),
        }
    }
}

impl Answer for Unprotected {
    fn from_reply(reply: Reply) -> Result<Self, Box<Reply>> {
        match reply {
            Reply::DatabaseRemoved {
                name,
                existed,
                schedule_removed,
            } => Ok(Unprotected {
                name,
                existed,
                schedule_removed,
            }),
            other => Err(Box::new(other)),
        }
    }
}
