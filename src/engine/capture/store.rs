//! Store discovery: find a correlator's SQLite store and its companions.
//!
//! A store is a main database file (`persistence.db` unless the correlator
//! was started with `-PstoreName=`) plus whichever of `-journal`, `-wal` and
//! `-shm` exist beside it. The SQLite header is read directly from the file,
//! so discovery never opens the live database through SQLite (which could
//! take locks or roll back a journal under the correlator's feet).

use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default store name of the Apama correlator.
pub const DEFAULT_STORE_NAME: &str = "persistence.db";
/// The 16 bytes every SQLite 3 database starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const HEADER_LEN: usize = 100;
/// Longest store name accepted (a file name on common filesystems).
pub const MAX_STORE_NAME_LEN: usize = 200;

/// What a file of the store set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileRole {
    Main,
    Journal,
    Wal,
    Shm,
}

impl FileRole {
    pub const ALL: [FileRole; 4] = [
        FileRole::Main,
        FileRole::Journal,
        FileRole::Wal,
        FileRole::Shm,
    ];

    /// Suffix appended to the store name for this file.
    pub fn suffix(self) -> &'static str {
        match self {
            FileRole::Main => "",
            FileRole::Journal => "-journal",
            FileRole::Wal => "-wal",
            FileRole::Shm => "-shm",
        }
    }
}

/// One file of the store set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFile {
    pub role: FileRole,
    pub name: String,
    pub size: u64,
}

/// How SQLite keeps transactions atomic for this database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JournalMode {
    /// Rollback journal (`-journal` file), SQLite's default.
    Rollback,
    /// Write-ahead log (`-wal` and `-shm` files).
    Wal,
}

impl std::fmt::Display for JournalMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JournalMode::Rollback => "rollback journal",
            JournalMode::Wal => "WAL",
        })
    }
}

/// The fields of the 100-byte SQLite header persnap reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqliteHeader {
    pub page_size: u32,
    pub write_version: u8,
    pub read_version: u8,
    /// Database size in pages as the header records it (may lag in old files).
    pub page_count: u32,
    pub change_counter: u32,
    pub user_version: u32,
}

impl SqliteHeader {
    /// Parse a header; `Err` carries a plain description of what is wrong.
    pub fn parse(bytes: &[u8]) -> std::result::Result<SqliteHeader, String> {
        if bytes.is_empty() {
            return Err("the file is empty".into());
        }
        if bytes.len() < HEADER_LEN {
            return Err(format!(
                "the file is only {} bytes, shorter than an SQLite header",
                bytes.len()
            ));
        }
        if &bytes[..16] != SQLITE_MAGIC {
            return Err("it does not start with the SQLite 3 signature".into());
        }
        let be16 = |o: usize| u16::from_be_bytes([bytes[o], bytes[o + 1]]);
        let be32 =
            |o: usize| u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let page_size = match be16(16) {
            1 => 65536,
            n => u32::from(n),
        };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(format!(
                "its header gives an impossible page size {page_size}"
            ));
        }
        Ok(SqliteHeader {
            page_size,
            write_version: bytes[18],
            read_version: bytes[19],
            change_counter: be32(24),
            page_count: be32(28),
            user_version: be32(60),
        })
    }

    /// WAL when the header's read/write versions say 2, else rollback.
    pub fn journal_mode(&self) -> JournalMode {
        if self.read_version == 2 || self.write_version == 2 {
            JournalMode::Wal
        } else {
            JournalMode::Rollback
        }
    }
}

/// A discovered store: its folder, name, files present and header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    pub dir: PathBuf,
    pub name: String,
    /// Main file first, then companions in [`FileRole::ALL`] order.
    pub files: Vec<StoreFile>,
    pub header: SqliteHeader,
}

impl Store {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn journal_mode(&self) -> JournalMode {
        self.header.journal_mode()
    }

    pub fn file(&self, role: FileRole) -> Option<&StoreFile> {
        self.files.iter().find(|f| f.role == role)
    }
}

/// Reject store names that are not a plain file name.
pub fn validate_store_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_STORE_NAME_LEN {
        Some("it is too long")
    } else if name.contains('/') || name.contains('\\') {
        Some("it contains a path separator")
    } else if name == "." || name == ".." {
        Some("it names a folder")
    } else if name.chars().any(|c| c.is_control()) {
        Some("it contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidStoreName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Find the store `store_name` in `dir` and read its header.
pub fn discover(dir: &Path, store_name: &str) -> Result<Store> {
    validate_store_name(store_name)?;
    check_source_dir(dir)?;
    let mut files = Vec::new();
    for role in FileRole::ALL {
        let name = format!("{store_name}{}", role.suffix());
        let path = dir.join(&name);
        match fs::symlink_metadata(&path) {
            Ok(meta) => {
                require_regular(&path, &meta)?;
                require_one_name(&path, &meta)?;
                files.push(StoreFile {
                    role,
                    name,
                    size: meta.len(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && role == FileRole::Main => {
                return Err(store_not_found(dir, store_name));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::SourceUnreadable { path, source }),
        }
    }
    let header = read_header(&dir.join(store_name))?;
    Ok(Store {
        dir: dir.to_owned(),
        name: store_name.to_owned(),
        files,
        header,
    })
}

/// Open every file of `store` for reading, as it is now (a store seen
/// inside a snapshot). No symbolic link is followed anywhere on the way:
/// on Linux the folder is opened with `RESOLVE_NO_SYMLINKS` and the files
/// beneath that descriptor with `O_NOFOLLOW`, so a link planted after the
/// store was checked cannot lead the helper elsewhere. Each must be a
/// regular file; sizes are taken from the open file.
pub fn open_set(store: &Store) -> Result<Vec<(StoreFile, fs::File)>> {
    let dir =
        crate::sys::open_dir_nofollow(&store.dir).map_err(|source| Error::SourceUnreadable {
            path: store.dir.clone(),
            source,
        })?;
    let mut opened = Vec::with_capacity(store.files.len());
    for file in &store.files {
        let path = store.dir.join(&file.name);
        let handle = crate::sys::open_beneath(&dir, &store.dir, &file.name).map_err(|source| {
            Error::SourceUnreadable {
                path: path.clone(),
                source,
            }
        })?;
        let meta = handle
            .metadata()
            .map_err(|source| Error::SourceUnreadable {
                path: path.clone(),
                source,
            })?;
        require_regular(&path, &meta)?;
        require_one_name(&path, &meta)?;
        opened.push((
            StoreFile {
                size: meta.len(),
                ..file.clone()
            },
            handle,
        ));
    }
    Ok(opened)
}

fn check_source_dir(dir: &Path) -> Result<()> {
    let meta = fs::metadata(dir).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::SourceMissing {
            path: dir.to_owned(),
        },
        _ => Error::SourceUnreadable {
            path: dir.to_owned(),
            source,
        },
    })?;
    if !meta.is_dir() {
        return Err(Error::SourceNotDir {
            path: dir.to_owned(),
        });
    }
    fs::read_dir(dir).map_err(|source| Error::SourceUnreadable {
        path: dir.to_owned(),
        source,
    })?;
    Ok(())
}

/// A store file with other names (hard links) could be anyone's file:
/// refused, as a symbolic link is.
fn require_one_name(path: &Path, meta: &Metadata) -> Result<()> {
    if crate::sys::link_count(meta) > 1 {
        return Err(Error::StoreFileNotRegular {
            path: path.to_owned(),
            what: "a file with other names (hard links)",
        });
    }
    Ok(())
}

fn require_regular(path: &Path, meta: &Metadata) -> Result<()> {
    let ft = meta.file_type();
    let what = if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a folder"
    } else if ft.is_file() {
        return Ok(());
    } else {
        "a device, pipe or socket"
    };
    Err(Error::StoreFileNotRegular {
        path: path.to_owned(),
        what,
    })
}

fn store_not_found(dir: &Path, store_name: &str) -> Error {
    const SHOWN: usize = 12;
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let listing = match names.len() {
        0 => "The folder is empty.".to_owned(),
        n if n <= SHOWN => format!("The folder contains: {}.", names.join(", ")),
        n => format!(
            "The folder contains: {} and {} more.",
            names[..SHOWN].join(", "),
            n - SHOWN
        ),
    };
    Error::StoreNotFound {
        dir: dir.to_owned(),
        store_name: store_name.to_owned(),
        listing,
    }
}

/// Read the first 100 bytes without following links or opening via SQLite
/// (root reads it in a folder the database's owner controls: a FIFO put
/// there after the look cannot hang it).
pub fn read_header(path: &Path) -> Result<SqliteHeader> {
    let mut file = crate::sys::open_untrusted(path).map_err(|source| Error::SourceUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let mut buf = Vec::with_capacity(HEADER_LEN);
    (&mut file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(|source| Error::SourceUnreadable {
            path: path.to_owned(),
            source,
        })?;
    SqliteHeader::parse(&buf).map_err(|detail| Error::NotSqlite {
        path: path.to_owned(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(read: u8, page: u16) -> Vec<u8> {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(SQLITE_MAGIC);
        h[16..18].copy_from_slice(&page.to_be_bytes());
        h[18] = read;
        h[19] = read;
        h[28..32].copy_from_slice(&7u32.to_be_bytes());
        h
    }

    #[cfg(unix)]
    #[test]
    fn a_store_file_with_other_names_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("persistence.db"), header(1, 4096)).unwrap();
        let elsewhere = dir.path().join("someone-elses.db");
        std::fs::write(&elsewhere, b"not yours").unwrap();
        let store = discover(dir.path(), "persistence.db").unwrap();
        std::fs::hard_link(&elsewhere, dir.path().join("persistence.db-journal")).unwrap();
        let err = discover(dir.path(), "persistence.db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hard links"), "found when looking: {err}");
        let mut later = store.clone();
        later.files.push(StoreFile {
            role: FileRole::Journal,
            name: "persistence.db-journal".into(),
            size: 9,
        });
        let err = open_set(&later).unwrap_err().to_string();
        assert!(err.contains("hard links"), "and when opening: {err}");
        std::fs::remove_file(dir.path().join("persistence.db-journal")).unwrap();
        let store = discover(dir.path(), "persistence.db").unwrap();
        assert_eq!(open_set(&store).unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_in_place_of_the_database_does_not_block_the_look() {
        // Root reads the header in the owner's folder: a FIFO swapped in
        // after the folder was listed must not hang it (no writer ever
        // comes).
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("persistence.db");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tx.send(read_header(&fifo).map(|_| ()).map_err(|e| e.to_string()))
        });
        let said = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading the header of a FIFO blocked");
        assert!(said.unwrap_err().contains("cannot be read"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_link_anywhere_on_the_way_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("persistence.db"), header(1, 4096)).unwrap();
        let store = discover(&real, "persistence.db").unwrap();
        std::fs::rename(&real, dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("moved"), &real).unwrap();
        let err = open_set(&store).unwrap_err().to_string();
        assert!(err.contains("cannot be read"), "{err}");
    }

    #[test]
    fn parses_wal_and_rollback_headers() {
        let wal = SqliteHeader::parse(&header(2, 4096)).unwrap();
        assert_eq!(
            (wal.page_size, wal.page_count, wal.journal_mode()),
            (4096, 7, JournalMode::Wal)
        );
        let big = SqliteHeader::parse(&header(1, 1)).unwrap();
        assert_eq!(
            (big.page_size, big.journal_mode()),
            (65536, JournalMode::Rollback)
        );
    }

    #[test]
    fn rejects_bad_headers_with_reasons() {
        assert_eq!(SqliteHeader::parse(&[]).unwrap_err(), "the file is empty");
        assert!(
            SqliteHeader::parse(&[0; 20])
                .unwrap_err()
                .contains("only 20 bytes")
        );
        assert!(
            SqliteHeader::parse(&[b'x'; 100])
                .unwrap_err()
                .contains("signature")
        );
        assert!(
            SqliteHeader::parse(&header(1, 1000))
                .unwrap_err()
                .contains("page size 1000")
        );
    }

    #[test]
    fn store_names_must_be_plain_file_names() {
        for bad in ["", "a/b", "..", "x\ny", "a\\b"] {
            assert!(validate_store_name(bad).is_err(), "{bad:?} accepted");
        }
        validate_store_name("persistence.db").unwrap();
        validate_store_name("my store.db").unwrap();
    }
}
