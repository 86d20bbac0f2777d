//! The backup methods persnap knows and how a user chooses among them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A concrete way of getting a consistent image of the store files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Read-only btrfs snapshot of the subvolume holding the folder.
    Btrfs,
    /// LVM snapshot of the logical volume holding the folder.
    Lvm,
    /// Windows Volume Shadow Copy.
    Vss,
    /// Copy-on-write clones of the store files (XFS with reflink, btrfs),
    /// taken while SQLite's own read lock holds the database still.
    Reflink,
    /// SQLite's online backup API on the live database (no snapshot).
    SqliteOnline,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Btrfs,
        Method::Lvm,
        Method::Vss,
        Method::Reflink,
        Method::SqliteOnline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Btrfs => "btrfs",
            Method::Lvm => "lvm",
            Method::Vss => "vss",
            Method::Reflink => "reflink",
            Method::SqliteOnline => "sqlite-online",
        }
    }

    /// Whether this method works from a filesystem snapshot.
    pub fn is_snapshot(self) -> bool {
        !matches!(self, Method::SqliteOnline)
    }

    /// One sentence for plans and help texts.
    pub fn describe(self) -> &'static str {
        match self {
            Method::Btrfs => "read-only btrfs snapshot of the subvolume holding the database",
            Method::Lvm => "LVM snapshot of the logical volume holding the database",
            Method::Vss => "Windows Volume Shadow Copy of the volume holding the database",
            Method::Reflink => {
                "copy-on-write clone of the database files, taken while the database is briefly held still (XFS, btrfs)"
            }
            Method::SqliteOnline => {
                "SQLite online backup of the live database (no snapshot; pauses the writer while copying in rollback-journal mode)"
            }
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for: a specific method, or whatever snapshot applies.
/// On the wire and in history it is the same word as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MethodChoice {
    /// The snapshot method that applies to the folder's volume. Never
    /// `sqlite-online` and never a live copy.
    #[default]
    Auto,
    Explicit(Method),
}

impl fmt::Display for MethodChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MethodChoice::Auto => f.write_str("auto"),
            MethodChoice::Explicit(m) => m.fmt(f),
        }
    }
}

impl From<MethodChoice> for String {
    fn from(choice: MethodChoice) -> String {
        choice.to_string()
    }
}

impl TryFrom<String> for MethodChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl MethodChoice {
    pub fn is_auto(&self) -> bool {
        *self == MethodChoice::Auto
    }
}

impl FromStr for MethodChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(MethodChoice::Auto);
        }
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .map(MethodChoice::Explicit)
            .ok_or_else(|| {
                format!("unknown method {s:?}; choose one of auto, btrfs, lvm, vss, reflink, sqlite-online")
            })
    }
}
