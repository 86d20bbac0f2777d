//! The registry of protected databases: which correlator stores this
//! machine's administrator has agreed to protect.
//!
//! It is system-wide and owned by the administrator: one small JSON file
//! per database in `/etc/persnap/databases/` (Linux) or
//! `%ProgramData%\persnap\databases\` (Windows), written only by the
//! helper at the administrator level (`persnap database add|remove`) and
//! readable by everyone (the app lists it). What it decides: an operator
//! (the polkit action `io.github.persnap.backup`) may back up and
//! test-snapshot a registered database and nothing else, and a restore may
//! only go into a registered database's folder.
//!
//! The registry is trusted only when no one but the administrator could
//! have changed it: every folder from the root down to it, and every entry,
//! must be owned by root and writable by no one else (a root-owned sticky
//! folder like `/tmp` above it is fine: [`Registry::check_safe`]).
//! A registry that fails the check is refused as a whole, with the reason.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::method::MethodChoice;
use crate::retention::RetentionPolicy;

/// Where the registry lives unless `PERSNAP_REGISTRY_DIR` says otherwise
/// (tests; pkexec clears the environment, so a caller cannot point the
/// helper elsewhere).
#[cfg(unix)]
pub const DEFAULT_DIR: &str = "/etc/persnap/databases";

/// One protected database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Short name: lower-case letters, digits and dashes ("orders").
    pub name: String,
    /// The store folder (-PstoreLocation), canonical.
    pub folder: PathBuf,
    /// The store name (-PstoreName), `persistence.db` by default.
    pub store_name: String,
    /// Where its backups usually go (the app's default), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<PathBuf>,
    /// Who owned `location` when it was protected (Unix uid; root 0),
    /// recorded by the helper: its backups are written as that owner, and
    /// a location that has since changed hands (deleted and made again by
    /// someone else) is refused, never written for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_owner: Option<u32>,
    /// Its schedule's name, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "RetentionPolicy::is_keep_all")]
    pub retention: RetentionPolicy,
    /// How it is backed up (`auto`: the snapshot its disk takes).
    #[serde(default, skip_serializing_if = "MethodChoice::is_auto")]
    pub method: MethodChoice,
    /// When it was registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<chrono::DateTime<chrono::Utc>>,
    /// Its backups go into this repository (checked in `location` first,
    /// which keeps no copy when `staged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<InRepository>,
    /// And a copy of each backup goes into this offsite repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<InRepository>,
}

/// A protected database's repository, as the registry (which everyone may
/// read) records it: where, never with a password, and what it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InRepository {
    /// The repository's location as shown (no password in it).
    pub location: String,
    #[serde(default)]
    pub keep: crate::repository::Keep,
    /// Only the repository keeps the backups; `location` only stages them.
    #[serde(default)]
    pub staged: bool,
}

impl Database {
    /// `store_name` in `folder`, protected as `name`; nothing else set yet.
    pub fn new(name: &str, folder: impl Into<PathBuf>, store_name: &str) -> Database {
        Database {
            name: name.into(),
            folder: folder.into(),
            store_name: store_name.into(),
            location: None,
            location_owner: None,
            schedule: None,
            retention: RetentionPolicy::default(),
            method: MethodChoice::Auto,
            added: None,
            repository: None,
            offsite: None,
        }
    }
}

/// The registry folder.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The system's registry.
    pub fn system() -> Registry {
        Registry {
            dir: std::env::var_os("PERSNAP_REGISTRY_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(default_dir),
        }
    }

    pub fn at(dir: impl Into<PathBuf>) -> Registry {
        Registry { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every registered database, by name. A registry that does not exist
    /// yet is empty.
    pub fn list(&self) -> Result<Vec<Database>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.unreadable(&self.dir, e)),
        };
        let mut found = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if validate_name(name).is_err() {
                continue;
            }
            found.push(self.read(name)?);
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// The database registered as `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Database>> {
        validate_name(name)?;
        match fs::symlink_metadata(self.entry(name)) {
            Ok(_) => self.read(name).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.unreadable(&self.entry(name), e)),
        }
    }

    /// The registered database kept in `folder` under `store_name`.
    pub fn find(&self, folder: &Path, store_name: &str) -> Result<Option<Database>> {
        Ok(self
            .list()?
            .into_iter()
            .find(|d| d.folder == folder && d.store_name == store_name))
    }

    /// The registered databases kept in `folder` (any store name).
    pub fn in_folder(&self, folder: &Path) -> Result<Vec<Database>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|d| d.folder == folder)
            .collect())
    }

    fn read(&self, name: &str) -> Result<Database> {
        let path = self.entry(name);
        let bytes = read_nofollow(&path).map_err(|e| self.unreadable(&path, e))?;
        let db: Database = serde_json::from_slice(&bytes).map_err(|e| Error::Registry {
            path: path.clone(),
            detail: format!("it is not a database entry ({e})"),
        })?;
        if db.name != name {
            return Err(Error::Registry {
                path,
                detail: format!("it names the database {:?}", db.name),
            });
        }
        Ok(db)
    }

    fn unreadable(&self, path: &Path, e: io::Error) -> Error {
        Error::Registry {
            path: path.to_owned(),
            detail: format!("it cannot be read ({e})"),
        }
    }

    /// Refuse a registry someone other than the administrator could have
    /// written: the folder, its parents and every entry must belong to
    /// root (or the helper's own user, when it runs without privileges)
    /// and be writable by no one else (Unix). Checked by the helper before
    /// it trusts an entry.
    pub fn check_safe(&self) -> Result<()> {
        // The folder and its entries; above it, every parent, judged as
        // what an administrator's folder may hang from (a sticky /tmp; on
        // Windows stock C:\ and ProgramData, where others may add but not
        // remove) — the same walk as `fsutil::admin_only_folder`.
        let mut checked: Vec<(PathBuf, bool)> = vec![(self.dir.clone(), false)];
        checked.extend(
            self.dir
                .ancestors()
                .skip(1)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| (p.to_owned(), true)),
        );
        if let Ok(entries) = fs::read_dir(&self.dir) {
            checked.extend(entries.filter_map(|e| e.ok()).map(|e| (e.path(), false)));
        }
        for (path, ancestor) in checked {
            match crate::sys::admin_only(&path, ancestor) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Registry {
                        path,
                        detail: format!(
                            "{e}; only administrators may be able to change the registry. {}",
                            crate::sys::ADMIN_ONLY_FIX
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Register `db` (replacing an entry of the same name). Administrator
    /// only: the helper calls this at the admin level.
    pub fn add(&self, db: &Database) -> Result<()> {
        validate_name(&db.name)?;
        crate::sys::create_admin_dir(&self.dir).map_err(|e| self.unwritable(&self.dir, e))?;
        self.check_safe()?;
        let mut json = serde_json::to_vec_pretty(db).expect("entries serialize");
        json.push(b'\n');
        let path = self.entry(&db.name);
        crate::fsutil::atomic_write_public(&path, &json).map_err(|e| self.unwritable(&path, e))
    }

    /// Unregister `name`; `false` when it was not registered.
    pub fn remove(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        let path = self.entry(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.unwritable(&path, e)),
        }
    }

    fn unwritable(&self, path: &Path, e: io::Error) -> Error {
        Error::Registry {
            path: path.to_owned(),
            detail: format!("it cannot be written ({e}); registering needs administrator rights"),
        }
    }
}

#[cfg(unix)]
fn default_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DIR)
}

#[cfg(windows)]
fn default_dir() -> PathBuf {
    crate::sys::admin_root().join("databases")
}

fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    crate::sys::open_nofollow(path)?
        .take(64 * 1024)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A name for the store `store_name` in `folder` that is not taken yet:
/// the folder's own name made plain (`/srv/Apama Orders` →
/// `apama-orders`), with `-2`, `-3`, … if another database has it.
pub fn suggest_name(registry: &Registry, folder: &Path, store_name: &str) -> String {
    let raw = folder
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut plain: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while plain.contains("--") {
        plain = plain.replace("--", "-");
    }
    let mut base: String = plain.trim_matches('-').chars().take(34).collect();
    base = base.trim_end_matches('-').to_owned();
    if base.is_empty() {
        base = "database".into();
    }
    let taken = |name: &str| {
        registry
            .get(name)
            .ok()
            .flatten()
            .is_some_and(|db| db.folder != folder || db.store_name != store_name)
    };
    let mut name = base.clone();
    let mut n = 2;
    while taken(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// A database name: 1 to 40 lower-case letters, digits and dashes.
pub fn validate_name(name: &str) -> Result<()> {
    crate::names::check_plain_name(name, "database", "orders")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, folder: &Path) -> Database {
        Database::new(name, folder, "persistence.db")
    }

    #[test]
    fn entries_round_trip_and_are_found_by_folder_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::at(dir.path().join("databases"));
        assert!(reg.list().unwrap().is_empty(), "no registry yet: empty");
        fs::create_dir(reg.dir()).unwrap();
        for (name, folder) in [
            ("orders", "/srv/apama/orders"),
            ("audit", "/srv/apama/audit"),
        ] {
            let json = serde_json::to_vec(&sample(name, Path::new(folder))).unwrap();
            fs::write(reg.entry(name), json).unwrap();
        }
        fs::write(reg.dir().join("notes.txt"), b"ignored").unwrap();
        let names: Vec<_> = reg.list().unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["audit", "orders"]);
        let found = reg
            .find(Path::new("/srv/apama/orders"), "persistence.db")
            .unwrap();
        assert_eq!(found.unwrap().name, "orders");
        assert!(
            reg.find(Path::new("/srv/apama/orders"), "other.db")
                .unwrap()
                .is_none()
        );
        assert!(reg.remove("orders").unwrap());
        assert!(!reg.remove("orders").unwrap());
        assert!(reg.get("orders").unwrap().is_none());
    }

    #[test]
    fn suggested_names_are_plain_and_free() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::at(dir.path().join("databases"));
        fs::create_dir(reg.dir()).unwrap();
        let name = |folder: &str, store: &str| suggest_name(&reg, Path::new(folder), store);
        let db = "persistence.db";
        assert_eq!(name("/srv/Apama Orders", db), "apama-orders");
        assert_eq!(name("/", db), "database");
        let json = serde_json::to_vec(&sample("store", Path::new("/a/store"))).unwrap();
        fs::write(reg.entry("store"), json).unwrap();
        assert_eq!(name("/a/store", db), "store", "its own name");
        assert_eq!(name("/b/store", db), "store-2");
        assert_eq!(
            name("/a/store", "other.db"),
            "store-2",
            "another store in the same folder is another database"
        );
        validate_name(&name(&format!("/{}", "x".repeat(90)), db)).unwrap();
    }

    #[test]
    fn names_are_plain() {
        for bad in ["", "Orders", "a/b", "../x", "-x", &"a".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name("orders-2").unwrap();
    }

    #[cfg(windows)]
    #[test]
    fn the_registry_folder_is_the_administrators_alone() {
        let base = tempfile::tempdir().unwrap();
        let plain = base.path().join("plain");
        fs::create_dir(&plain).unwrap();
        // Everyone may write here.
        crate::sys::apply_sddl(&plain, "D:(A;OICI;FA;;;WD)").unwrap();
        let err = crate::sys::owned_by_admins(&plain).unwrap_err().to_string();
        assert!(
            err.contains("may be changed by") || err.contains("not by Administrators"),
            "{err}"
        );
        let reg = Registry::at(base.path().join("databases"));
        reg.add(&sample("orders", Path::new(r"C:\srv\a"))).unwrap();
        crate::sys::owned_by_admins(reg.dir()).unwrap();
        reg.check_safe().unwrap();
        assert_eq!(reg.get("orders").unwrap().unwrap().name, "orders");
    }

    #[cfg(unix)]
    #[test]
    fn a_registry_others_could_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        if !crate::fsutil::is_root() {
            eprintln!("SKIP a_registry_others_could_write_is_refused: needs root (ownership)");
            return;
        }
        let base = tempfile::Builder::new()
            .prefix("persnap-registry-")
            .tempdir_in("/var/lib")
            .unwrap();
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let reg = Registry::at(base.path().join("databases"));
        reg.add(&sample("orders", Path::new("/srv/a"))).unwrap();
        reg.check_safe().unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(reg.entry("orders")).unwrap().mode() & 0o777,
            0o644,
            "everyone may read the registry"
        );
        assert_eq!(
            reg.get("orders").unwrap().unwrap().folder,
            Path::new("/srv/a")
        );
        fs::set_permissions(reg.dir(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = reg.check_safe().unwrap_err().to_string();
        assert!(err.contains("writable"), "{err}");
        fs::set_permissions(reg.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(reg.entry("orders"), Some(65534), None).unwrap();
        let err = reg.check_safe().unwrap_err().to_string();
        assert!(err.contains("owned"), "{err}");
    }
}
