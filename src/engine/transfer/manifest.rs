//! `manifest.json`: what a backup set holds and how it was made.
//!
//! Written into every backup set after verification passed, read back by
//! `persnap verify`. File names are checked on reading, so a tampered
//! manifest cannot point verification outside its folder.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::copy::CopiedFile;
use crate::error::{Error, HINT_DEST, Result};
use crate::fsutil;
use crate::method::Method;
use crate::store::{FileRole, JournalMode};

pub const MANIFEST_NAME: &str = "manifest.json";
/// Format version of the manifest; readers refuse newer ones.
pub const MANIFEST_FORMAT: u32 = 1;

/// The longest manifest read (one lists a handful of files).
pub const MAX_MANIFEST: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tool: String,
    pub tool_version: String,
    pub run_id: String,
    pub host: String,
    pub source_dir: PathBuf,
    pub store_name: String,
    pub journal_mode: JournalMode,
    pub method: Method,
    /// The snapshot the files were copied from (none for sqlite-online).
    pub snapshot_id: Option<String>,
    /// How long the live database was held still by SQLite's read lock
    /// while its files were cloned, in seconds (the reflink method only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_still_secs: Option<f64>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub total_bytes: u64,
    pub files: Vec<CopiedFile>,
    pub verification: Verification,
    /// Asked for by an operator into a protected database's location (the
    /// helper says so, not the caller): retention counts such backups
    /// apart, so clicks never push out the schedule's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_request: bool,
}

pub fn write(dir: &Path, manifest: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST_NAME);
    let json = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
    fsutil::atomic_write(&path, &json).map_err(Error::io("write", path, HINT_DEST))
}

pub fn read(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_NAME);
    let not_backup = |detail: String| Error::NotABackup {
        path: dir.to_owned(),
        detail,
    };
    // A backup location may be shared: no link, FIFO or huge file planted
    // as a manifest can mislead or stall whoever reads it.
    let bytes = crate::fsutil::read_untrusted(&path, MAX_MANIFEST)
        .map_err(|e| not_backup(format!("cannot read {MANIFEST_NAME}: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| not_backup(format!("{MANIFEST_NAME} is not valid JSON: {e}")))?;
    let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
    if format > u64::from(MANIFEST_FORMAT) {
        return Err(not_backup(format!(
            "it was written by a newer persnap (manifest format {format}); upgrade persnap"
        )));
    }
    let manifest: Manifest = serde_json::from_value(value)
        .map_err(|e| not_backup(format!("{MANIFEST_NAME} is incomplete: {e}")))?;
    check_names(&manifest).map_err(not_backup)?;
    Ok(manifest)
}

/// File names must be the store name plus a known suffix, each once.
fn check_names(m: &Manifest) -> std::result::Result<(), String> {
    crate::store::validate_store_name(&m.store_name).map_err(|e| e.to_string())?;
    let mut seen = std::collections::HashSet::new();
    for file in &m.files {
        let expected = format!("{}{}", m.store_name, file.role.suffix());
        if file.name != expected || !seen.insert(file.role) {
            return Err(format!(
                "the manifest lists an unexpected file {:?}",
                file.name
            ));
        }
    }
    if !seen.contains(&FileRole::Main) {
        return Err("the manifest lists no main database file".into());
    }
    Ok(())
}

/// This machine's host name, for manifests and history.
pub fn host_name() -> String {
    crate::sys::host_name()
}

/// The outcome of a verification that passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// `ok`, as SQLite's integrity check reported it.
    pub integrity: String,
    /// Pages in the database after replaying the journal or WAL.
    pub page_count: u64,
    pub page_size: u64,
    /// Every file's SHA-256 matched when read back.
    pub hashes_match: bool,
    pub seconds: f64,
    /// Where the bytes read back came from. Absent in manifests of
    /// persnap 0.1 before this was recorded (their read-back may have come
    /// from memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_back: Option<ReadBack>,
}

/// Where a verification's read-back got its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadBack {
    /// Every file was dropped from memory first (and the system confirmed
    /// none of its pages stayed): the bytes hashed came from the disk.
    Disk,
    /// The system may have served some bytes from memory (Windows, or
    /// pages Linux would not let go): the check proves the copy was
    /// written as recorded, not that the disk holds it.
    Memory,
}

impl Verification {
    /// What was checked, in words (the manifest's reader, the app, the
    /// command line).
    pub fn words(&self) -> String {
        format!(
            "SQLite's integrity check said {} on {} pages; {}",
            self.integrity,
            self.page_count,
            self.read_back_words()
        )
    }

    /// [`Verification::words`] for a set staged for a repository that
    /// alone keeps it (removed once stored).
    pub fn words_staged(&self) -> String {
        format!(
            "SQLite's integrity check said {} on {} pages; {}",
            self.integrity,
            self.page_count,
            Self::STAGED_WORDS
        )
    }

    /// How a set staged for a repository was checked before it was stored.
    pub const STAGED_WORDS: &'static str = "the copy staged for the repository was hashed again where it was (most likely in memory) and matched the hashes taken as it was copied; the repository's own check reads what was stored back from the disk";

    /// Where the read-back's bytes came from, in words.
    pub fn read_back_words(&self) -> &'static str {
        match self.read_back {
            Some(ReadBack::Disk) => {
                "every file was read back from the disk (dropped from memory first) and matched its SHA-256"
            }
            Some(ReadBack::Memory) | None => {
                "every file was read back and matched its SHA-256 (the system may have served the bytes from memory, so this proves the copy, not the disk)"
            }
        }
    }
}
