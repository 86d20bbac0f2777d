//! A backup location that is a repository in the restic format:
//! deduplicated, compressed and encrypted, in a local folder or on a server
//! (SFTP, S3-compatible storage, a restic REST server such as
//! `rclone serve restic`). Written and read through rustic_core, so restic
//! itself can list and restore what persnap stores.
//!
//! A backup reaches a repository as a finished, verified backup set: the
//! snapshot, the copy and SQLite's checks run exactly as for a folder (into
//! a staging folder of the user's), then [`Repo::store`] stores the set's
//! files and its manifest as one repository snapshot, tagged with the host,
//! the database and the store name. What is then recorded as verified was
//! read back *from the repository* ([`StoreCheck`]): in persnap's
//! fixed-size repositories the new packs are read back and authenticated
//! and the stored lists matched with the pieces hashed from the snapshot;
//! in one that cuts pieces by content the backup is restored into a
//! scratch folder and checked with SHA-256 and SQLite's integrity check.
//! Either way a good record means "this restores".
//!
//! Everything here runs as the user whose backup it is, never as root.

use crate::units::LocalTime;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

mod chunks;
pub use chunks::{MAX_BLOB_BYTES, TREE_BYTES_PER_CHUNK, check_chunk_list, largest_storable};
#[cfg(feature = "repository")]
pub mod deliver;
#[cfg(feature = "repository")]
mod fetch;
#[cfg(feature = "repository")]
mod hostkey;
#[cfg(feature = "repository")]
pub use hostkey::{UntrustedKey, untrusted_key};
#[cfg(feature = "repository")]
pub mod keyring;
#[cfg(feature = "repository")]
mod paced;
#[cfg(feature = "repository")]
mod readback;
#[cfg(feature = "repository")]
mod store;
#[cfg(feature = "repository")]
pub use store::*;

/// The tag every persnap snapshot carries (with `database=` and `store=`).
pub const TAG: &str = "persnap";
/// The tag a snapshot carries instead, from being stored until it was read
/// back and checked: persnap lists, restores and keeps only snapshots
/// tagged [`TAG`], so a run that dies in between leaves nothing that looks
/// like a backup. Retention removes such leftovers of its own host and
/// database once they are [`PENDING_SWEEP_AFTER`] old (a younger one may be
/// a backup still being checked).
pub const PENDING_TAG: &str = "persnap-pending";
/// See [`PENDING_TAG`].
pub const PENDING_SWEEP_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(2);

/// A repository's address: where it is, as the user wrote it. (A
/// *location* is where a database's backups go, a folder or a
/// repository; a repository is reached at its address.)
/// - a folder: `/srv/backups/repo` (or `local:/srv/backups/repo`);
/// - SFTP: `sftp:user@host:/path` (`sftp:user@host:port:/path`), through
///   rclone (which must be installed);
/// - S3-compatible storage: `s3:https://host[:port]/bucket[/prefix]`, with
///   the keys in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, through
///   rclone;
/// - a restic REST server: `rest:https://host:port/path`.
///
/// A server's address may end in persnap's own options, after `#`, kept
/// with the location wherever it is recorded (so a scheduled run, as
/// another account, decides the same):
/// - `#host-key=SHA256:…` (SFTP): the server's key, as `ssh-keygen -l`
///   shows it, trusted for this repository; without it the server's key
///   must be in `RCLONE_SFTP_KNOWN_HOSTS_FILE` or `~/.ssh/known_hosts`;
/// - `#allow-plain-http` (REST, S3): `http://` to another machine, where
///   anyone in between reads and answers the traffic, is taken only so.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(String);

/// Never the raw address: it may hold a password.
impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Address").field(&self.display()).finish()
    }
}

/// The option that takes plain `http://` to another machine.
pub const ALLOW_PLAIN_HTTP: &str = "allow-plain-http";
/// The option that pins an SFTP server's key.
pub const HOST_KEY: &str = "host-key=";

impl Address {
    pub fn parse(text: &str) -> Result<Address> {
        let text = text.trim();
        let shown = Address(text.to_owned()).display();
        let bad = |reason: &str| Error::Repository {
            what: format!("\"{shown}\" is not a repository location I understand: {reason}."),
            advice: ADVICE_LOCATION,
            detail: String::new(),
            kind: ErrorKind::BadInput,
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let (base, options) = split_options(text);
        for option in &options {
            let known = match scheme(base) {
                Some(("rest" | "s3", _)) => *option == ALLOW_PLAIN_HTTP,
                Some(("sftp", _)) => option.strip_prefix(HOST_KEY).is_some_and(is_fingerprint),
                _ => false,
            };
            if !known {
                return Err(bad(&format!(
                    "\"#{option}\" is not an option of this kind of storage (#{HOST_KEY}SHA256:… for SFTP, #{ALLOW_PLAIN_HTTP} for REST and S3)"
                )));
            }
        }
        match scheme(base) {
            Some(("local", path)) | Some(("", path)) => {
                if !Path::new(path).is_absolute() {
                    return Err(bad("a folder must be given with its full path"));
                }
            }
            Some(("rest", url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad("the address must start with http:// or https://"));
                }
                let parsed = url::Url::parse(url)
                    .map_err(|_| bad("the address is not a valid web address"))?;
                // What follows `?` or `#` would be shown (and recorded)
                // as it is: no place for anything secret.
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(bad("give the server's address without ? or #"));
                }
                refuse_plain_http(&parsed, &options).map_err(|r| bad(&r))?;
            }
            Some(("s3", url)) => {
                let parsed = url::Url::parse(url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| bad("write it as s3:https://host/bucket"))?;
                // Its parts go into an rclone remote: plain characters only,
                // and no keys in the address (they belong in the environment).
                let plain = |t: &str| {
                    t.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':')
                    })
                };
                if !parsed.username().is_empty()
                    || parsed.password().is_some()
                    || parsed.query().is_some()
                    || !plain(parsed.host_str().unwrap_or_default())
                    || !plain(parsed.path())
                {
                    return Err(bad(
                        "give the host and bucket only; the keys go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    ));
                }
                refuse_plain_http(&parsed, &options).map_err(|r| bad(&r))?;
            }
            Some(("sftp", rest)) => {
                sftp_parts(rest).ok_or_else(|| bad("write it as sftp:user@host:/path"))?;
            }
            Some((other, _)) => {
                return Err(bad(&format!(
                    "\"{other}:\" is not a kind of storage persnap knows"
                )));
            }
            None => return Err(bad("a folder must be given with its full path")),
        }
        Ok(Address(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address without persnap's options (see [`Address`]).
    fn base(&self) -> &str {
        split_options(&self.0).0
    }

    /// An SFTP location's server and port.
    #[cfg_attr(not(feature = "repository"), allow(dead_code))]
    fn sftp_host(&self) -> Option<(String, u16)> {
        match scheme(self.base()) {
            Some(("sftp", rest)) => {
                let (_, host, port, _) = sftp_parts(rest)?;
                Some((host.to_owned(), port.map_or(Some(22), |p| p.parse().ok())?))
            }
            _ => None,
        }
    }

    /// The same place without persnap's options.
    #[cfg_attr(not(feature = "repository"), allow(dead_code))]
    fn without_options(&self) -> Address {
        Address(self.base().to_owned())
    }

    /// The SFTP server's key trusted for this repository (`SHA256:…`).
    pub fn host_key(&self) -> Option<&str> {
        split_options(&self.0)
            .1
            .into_iter()
            .find_map(|o| o.strip_prefix(HOST_KEY))
    }

    /// This SFTP location with the server's key `fingerprint` trusted (in
    /// place of one trusted before).
    pub fn with_host_key(&self, fingerprint: &str) -> Result<Address> {
        let (base, options) = split_options(&self.0);
        let mut text = base.to_owned();
        let mut rest: Vec<&str> = options
            .into_iter()
            .filter(|o| !o.starts_with(HOST_KEY))
            .collect();
        let pin = format!("{HOST_KEY}{fingerprint}");
        rest.push(&pin);
        text.push('#');
        text.push_str(&rest.join(","));
        Address::parse(&text)
    }

    /// Whether both name the same place, whatever options or spelling
    /// (`local:`, a trailing `/`, a password) tell them apart.
    pub fn same_place(&self, other: &Address) -> bool {
        let place = |l: &Address| -> String {
            let base = l.base();
            match scheme(base) {
                Some(("local" | "", path)) => {
                    let trimmed = path.trim_end_matches(['/', '\\']);
                    let path = if trimmed.is_empty() { path } else { trimmed };
                    if cfg!(windows) {
                        format!("folder:{}", path.replace('/', "\\").to_lowercase())
                    } else {
                        format!("folder:{path}")
                    }
                }
                Some((kind, rest)) => {
                    let rest = match url::Url::parse(rest) {
                        Ok(mut u) => {
                            let _ = u.set_password(None);
                            let _ = u.set_username("");
                            u.to_string()
                        }
                        Err(_) => rest.to_lowercase(),
                    };
                    format!("{kind}:{}", rest.trim_end_matches('/'))
                }
                None => base.to_owned(),
            }
        };
        place(self) == place(other)
    }

    /// What to warn about each time it is used: plain `http://` taken
    /// with `#allow-plain-http`.
    pub fn warning(&self) -> Option<String> {
        let (base, options) = split_options(&self.0);
        let url = match scheme(base) {
            Some(("rest" | "s3", url)) => url::Url::parse(url).ok()?,
            _ => return None,
        };
        (url.scheme() == "http" && options.contains(&ALLOW_PLAIN_HTTP) && !is_loopback(&url))
            .then(|| {
                format!(
                    "The repository {self} is reached over plain http://: anyone between here and the server can read what is sent and answer in the server's place. Use https:// if the server offers it."
                )
            })
    }

    /// The kind of storage: "folder", "rest", "s3" or "sftp".
    pub fn kind(&self) -> &'static str {
        match scheme(self.base()) {
            Some(("rest", _)) => "rest",
            Some(("s3", _)) => "s3",
            Some(("sftp", _)) => "sftp",
            _ => "folder",
        }
    }

    /// Whether the storage key `key` is one this kind of storage takes
    /// (`AWS_*` for S3, `RCLONE_SFTP_*` for SFTP; none for a folder or a
    /// REST server), so that no key reaches storage it was not given for.
    pub fn takes_key(&self, key: &str) -> bool {
        match scheme(self.base()) {
            Some(("s3", _)) => key.starts_with("AWS_"),
            Some(("sftp", _)) => key.starts_with("RCLONE_SFTP_"),
            _ => false,
        }
    }

    /// Whether it is reached over SFTP.
    pub fn is_sftp(&self) -> bool {
        matches!(scheme(self.base()), Some(("sftp", _)))
    }

    /// The folder, for a repository in a folder on this machine.
    pub fn folder(&self) -> Option<&Path> {
        match scheme(self.base()) {
            Some(("local" | "", path)) => Some(Path::new(path)),
            _ => None,
        }
    }

    /// The location without any password written into it (for history,
    /// logs and the screen).
    pub fn display(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once(':') else {
            return self.0.clone();
        };
        if !rest.contains("://") {
            return self.0.clone();
        }
        match url::Url::parse(rest) {
            Ok(mut parsed) => {
                if parsed.password().is_some() {
                    let _ = parsed.set_password(None);
                }
                format!("{scheme}:{parsed}")
            }
            // Not an address: it may still hold a password, so only its
            // kind is shown.
            Err(_) => format!("{scheme}:(the address given)"),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// `text` without persnap's options (after `#`, for a server), and them.
/// A folder's path may hold `#` itself: it has no options.
fn split_options(text: &str) -> (&str, Vec<&str>) {
    match scheme(text) {
        Some(("rest" | "s3" | "sftp", _)) => match text.split_once('#') {
            Some((base, options)) => (base, options.split(',').collect()),
            None => (text, Vec::new()),
        },
        _ => (text, Vec::new()),
    }
}

/// `SHA256:` and 43 characters of base64, as `ssh-keygen -l` shows a key.
fn is_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/'))
    })
}

/// A server on this machine itself: nobody is in between.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Plain `http://` to another machine is refused unless the location says
/// `#allow-plain-http`: whoever is in between could read the repository's
/// (encrypted) files and answer in the server's place, so that a backup is
/// recorded as stored and read back while the server holds nothing.
fn refuse_plain_http(url: &url::Url, options: &[&str]) -> std::result::Result<(), String> {
    if url.scheme() == "http" && !is_loopback(url) && !options.contains(&ALLOW_PLAIN_HTTP) {
        return Err(format!(
            "plain http:// to another machine lets anyone in between read the traffic and answer in the server's place; use https://, or, on a network that is yours alone, end the address with #{ALLOW_PLAIN_HTTP}"
        ));
    }
    Ok(())
}

/// `("s3", rest)` for `s3:rest`; `("", path)` for a plain absolute path
/// (also a Windows one, `C:\…`, whose drive letter is not a scheme).
fn scheme(text: &str) -> Option<(&str, &str)> {
    if Path::new(text).is_absolute() || text.starts_with('/') {
        return Some(("", text));
    }
    let (scheme, rest) = text.split_once(':')?;
    if scheme.len() < 2 || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((scheme, rest))
}

/// `user@host[:port]:/path` → its parts.
fn sftp_parts(rest: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let (user, rest) = rest.split_once('@')?;
    let (host_port, root) = rest.split_once(":/")?;
    let (host, port) = match host_port.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    // Only plain characters: the parts go into an rclone remote, where
    // `,` `=` `'` and `:` would add options (`ssh=` runs a command).
    let plain = |part: &str| {
        !part.is_empty()
            && !part.starts_with('-')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let ok = plain(user)
        && plain(host)
        && port.is_none_or(|p| p.parse::<u16>().is_ok())
        && root
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    ok.then(|| (user, host, port, &rest[rest.len() - root.len() - 1..]))
}

const ADVICE_LOCATION: &str = "Give a folder's full path, or sftp:user@host:/path, s3:https://host/bucket, or rest:https://host:port/.";

/// A repository password. Never printed, never on a command line.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Password {
    pub fn new(text: impl Into<String>) -> Password {
        Password(text.into())
    }

    /// The password itself, for a password field to hold (never to show).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first line of a file, as `--password-file` and restic read it.
    /// Keep the password in a new file at `path` (its first line), that
    /// only you can read: for safekeeping, so that a lost keyring or a
    /// forgotten password does not lose the backups. An existing file is
    /// never overwritten.
    pub fn save_to(&self, path: &Path) -> Result<()> {
        let refused = |detail: String| Error::Repository {
            what: format!("The password could not be saved in {}.", path.display()),
            advice: "Give a new file's full path in a folder you can write (a USB stick, a password safe's folder), or write the password down.",
            detail,
            kind: ErrorKind::BadInput,
        };
        if !path.is_absolute() {
            return Err(refused("give the file's full path".into()));
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| refused(e.to_string()))?;
        use std::io::Write;
        writeln!(file, "{}", self.0)
            .and_then(|()| file.sync_all())
            .map_err(|e| refused(e.to_string()))
    }

    pub fn from_file(path: &Path) -> Result<Password> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Repository {
            what: format!("Cannot read the password file {}.", path.display()),
            advice: "Give a file that holds the repository's password on its first line.",
            detail: e.to_string(),
            kind: ErrorKind::BadInput,
        })?;
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(Error::Repository {
                what: format!("The password file {} is empty.", path.display()),
                advice: "Write the repository's password on its first line.",
                detail: String::new(),
                kind: ErrorKind::BadInput,
            });
        }
        Ok(Password(line.to_owned()))
    }
}

/// The storage keys a repository may take from the environment (S3 and
/// SFTP through rclone), and the only variables an [`Unlock`] may carry.
pub const UNLOCK_ENVIRONMENT: [&str; 7] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    // The SSH key to log in with, and the server keys to trust.
    "RCLONE_SFTP_KEY_FILE",
    "RCLONE_SFTP_KNOWN_HOSTS_FILE",
];

/// Hands a CA bundle given in `AWS_CA_BUNDLE` to rclone in its own words.
/// rclone 1.60 (Debian 12's) reaches no S3 storage at all while that
/// variable is set: its AWS library cannot add the bundle to rclone's
/// connections and gives up ("LoadCustomCABundleError"). rclone's own
/// `RCLONE_CA_CERT` does the same thing (only those certificates are
/// trusted), so the bundle goes there (unless it is set already) and
/// `AWS_CA_BUNDLE` is left out of the environment rclone starts in.
///
/// # Safety
///
/// It changes the process's environment: call it first thing in `main`,
/// before any thread starts.
pub unsafe fn hand_ca_bundle_to_rclone() {
    let Some(bundle) = std::env::var_os("AWS_CA_BUNDLE") else {
        return;
    };
    // SAFETY: no other thread runs yet (the caller's promise).
    unsafe {
        if !bundle.is_empty() && std::env::var_os("RCLONE_CA_CERT").is_none() {
            std::env::set_var("RCLONE_CA_CERT", &bundle);
        }
        std::env::remove_var("AWS_CA_BUNDLE");
    }
}

/// What opens a repository for a scheduled run: its location, password
/// and storage keys. The helper writes it into a file only root (SYSTEM)
/// can read; the schedule itself (world-readable) never holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlock {
    pub location: String,
    pub password: String,
    /// Storage keys, from [`UNLOCK_ENVIRONMENT`] only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<(String, String)>,
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlock")
            .field("location", &Address(self.location.clone()).display())
            .finish_non_exhaustive()
    }
}

impl Unlock {
    /// The repository and its password, with the storage keys of its kind
    /// set in this environment now.
    pub fn new(location: &Address, password: &Password) -> Unlock {
        Unlock {
            location: location.as_str().to_owned(),
            password: password.0.clone(),
            environment: UNLOCK_ENVIRONMENT
                .iter()
                .filter(|k| location.takes_key(k))
                .filter_map(|k| Some(((*k).to_owned(), std::env::var(k).ok()?)))
                .collect(),
        }
    }

    /// Refuse what a hostile caller could put in: a location persnap does
    /// not understand, a password or key that would not survive a line,
    /// any variable but the storage keys.
    pub fn validate(&self) -> Result<Address> {
        let location = Address::parse(&self.location)?;
        let refused = |reason: String| Error::Refused {
            field: "repository",
            reason,
        };
        let plain = |t: &str| !t.contains(['\0', '\n', '\r']);
        if self.password.is_empty() || self.password.len() > 1024 || !plain(&self.password) {
            return Err(refused(
                "the repository's password must be 1 to 1024 characters on one line".into(),
            ));
        }
        if self.environment.len() > UNLOCK_ENVIRONMENT.len() {
            return Err(refused("too many storage keys".into()));
        }
        for (key, value) in &self.environment {
            if !UNLOCK_ENVIRONMENT.contains(&key.as_str()) {
                return Err(refused(format!(
                    "{key:?} is not a storage key persnap passes on (only {})",
                    UNLOCK_ENVIRONMENT.join(", ")
                )));
            }
            if value.len() > 4096 || !plain(value) {
                return Err(refused(format!("the value of {key} is not one line")));
            }
            if !location.takes_key(key) {
                return Err(refused(format!(
                    "{key} is not a key of this kind of storage ({location})"
                )));
            }
        }
        Ok(location)
    }

    /// Read what the helper wrote for a scheduled run (as root, before the
    /// run becomes its user). Refused unless only root (SYSTEM) can read it.
    pub fn read(path: &Path) -> Result<Unlock> {
        let unreadable = |detail: String| Error::Repository {
            what: format!(
                "The file that opens this schedule's repository ({}) cannot be used.",
                path.display()
            ),
            advice: "Make the schedule again (persnap schedule add … --repo): that writes the file anew.",
            detail,
            kind: ErrorKind::BadInput,
        };
        crate::sys::secret_only(path).map_err(|e| unreadable(e.to_string()))?;
        let text = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let unlock: Unlock =
            serde_json::from_slice(&text).map_err(|e| unreadable(e.to_string()))?;
        unlock.validate()?;
        Ok(unlock)
    }

    pub fn password(&self) -> Password {
        Password(self.password.clone())
    }
}

/// One persnap backup in a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    /// The repository snapshot's id (restic's, in full).
    pub id: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub host: String,
    pub database: String,
    pub store_name: String,
    pub bytes: u64,
    pub files: u64,
    /// Kept whatever retention says (`persnap pin ID --repo …`).
    #[serde(default)]
    pub pinned: bool,
    /// Why it is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Listed {
    /// The id as restic shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(8)]
    }
}

/// Which backup in a repository to read back: one by its id, or the
/// newest of a database (from `host`; without it, from the one host
/// holding that database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    Id(String),
    Newest {
        database: String,
        host: Option<String>,
    },
}

/// The backup `which` names among `listed` (a repository's list), or why
/// none, in words: an id unknown or not unique; a database no host holds,
/// or that several hosts hold (each named with its newest backup, so the
/// choice can be made).
pub fn choose(listed: &[Listed], which: &Which, location: &str) -> Result<Listed> {
    let refused = |what: String, advice: &'static str| Error::Repository {
        what,
        advice,
        detail: String::new(),
        kind: ErrorKind::BadInput,
    };
    match which {
        Which::Id(id) => {
            let found: Vec<&Listed> = listed
                .iter()
                .filter(|l| l.id.starts_with(id.as_str()))
                .collect();
            match found.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(refused(
                    format!("The repository {location} holds no persnap backup {id}."),
                    "List its backups (persnap repo list) and give one of their ids.",
                )),
                _ => Err(refused(
                    format!("More than one backup in {location} starts with {id}."),
                    "Give more characters of the id.",
                )),
            }
        }
        Which::Newest { database, host } => {
            let of_db: Vec<&Listed> = listed.iter().filter(|l| &l.database == database).collect();
            if of_db.is_empty() {
                let mut names: Vec<&str> = listed.iter().map(|l| l.database.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                return Err(refused(
                    if names.is_empty() {
                        format!("The repository {location} holds no persnap backups yet.")
                    } else {
                        format!(
                            "The repository {location} holds no backup of a database named {database}; it holds {}.",
                            names.join(", ")
                        )
                    },
                    "Give the name of a database it holds (persnap repo list shows them).",
                ));
            }
            let mut hosts: Vec<&str> = of_db.iter().map(|l| l.host.as_str()).collect();
            hosts.sort_unstable();
            hosts.dedup();
            let host = match (host, hosts.as_slice()) {
                (Some(h), _) if hosts.contains(&h.as_str()) => h.as_str(),
                (Some(h), _) => {
                    return Err(refused(
                        format!(
                            "No backup of {database} from the machine {h} is in {location}; it has backups of {database} from {}.",
                            hosts.join(", ")
                        ),
                        "Give one of those machines with --host.",
                    ));
                }
                (None, [one]) => one,
                (None, _) => {
                    let choices: Vec<String> = hosts
                        .iter()
                        .map(|h| {
                            let newest =
                                of_db.iter().filter(|l| l.host == *h).map(|l| l.time).max();
                            format!(
                                "{h} (newest {})",
                                newest.map_or_else(String::new, |t| t.local_minute())
                            )
                        })
                        .collect();
                    return Err(refused(
                        format!(
                            "Backups of {database} from more than one machine are in {location}: {}.",
                            choices.join(", ")
                        ),
                        "Say which machine's backups to restore with --host.",
                    ));
                }
            };
            Ok((*of_db
                .iter()
                .filter(|l| l.host == host)
                .max_by_key(|l| l.time)
                .expect("the host holds a backup of the database"))
            .clone())
        }
    }
}

/// What [`Repo::store`] stored and how it was checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// Where, as shown to people (no password in it).
    pub location: String,
    pub snapshot: String,
    /// Bytes of the backup set read into the repository.
    pub bytes_read: u64,
    /// Of those, bytes that were new to the repository (before compression).
    pub bytes_new: u64,
    /// What the new data takes in the repository (compressed, encrypted).
    pub bytes_stored: u64,
    pub seconds: f64,
    pub check: StoreCheck,
    /// Something that went wrong after the backup was checked and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl Stored {
    /// The snapshot's id as restic shows it.
    pub fn short_id(&self) -> &str {
        &self.snapshot[..self.snapshot.len().min(8)]
    }
}

/// The offsite copy of a backup (3-2-1): the same verified set, stored in
/// a second repository and read back from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Offsite {
    Stored {
        copy: Stored,
    },
    /// The backup itself is good; only its offsite copy failed.
    Failed {
        location: String,
        message: String,
    },
}

/// How a stored backup was checked, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreCheck {
    /// What was checked, in words (also in the history and the app).
    pub checked: String,
    pub hashes_match: bool,
    /// SQLite's integrity check: of the copy read back whole, else the
    /// verified copy's (from its manifest).
    pub integrity: String,
    pub seconds: f64,
}

/// The read-back check, as the history and the manifest describe it.
pub const STORE_CHECK: &str = "read back from the repository into a scratch folder: every file's SHA-256 matched the manifest and SQLite's integrity check passed";
/// The check of a backup stored in a repository that cuts fixed-size
/// pieces (persnap's): what this backup wrote, read back; the rest is the
/// restore drills' (see `readback.rs`).
#[cfg(feature = "repository")]
pub fn store_check_packs(packs: usize, bytes: u64, from_snapshot: bool) -> String {
    let matched = if from_snapshot {
        "the pieces hashed as its files were read from the snapshot"
    } else {
        "the verified copy"
    };
    format!(
        "read back from the repository: the {packs} pack file(s) holding its pieces that the previous checked backup does not use ({}), each piece authenticated and its SHA-256 checked, and the backup's list of pieces matched {matched}; pieces the previous backup also uses were read back by its own check, and all are proven by restore drills",
        crate::units::bytes(bytes)
    )
}
/// Said after [`STORE_CHECK`] for a repository in a folder on this machine,
/// by where its new files were read from.
pub const STORE_CHECK_DISK: &str =
    " (the repository's new files were dropped from memory first, so they were read from the disk)";
pub const STORE_CHECK_MEMORY: &str = " (the system may have served the repository's new files from memory, so this proves what was written, not the disk)";

/// Which backups of one database (from one host) a repository keeps. A
/// backup is kept if any rule keeps it; the newest and pinned ones always.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub within_days: Option<u32>,
}

impl Keep {
    /// The same rules as a backup folder's: the newest N, the last D days.
    pub fn like_folder(policy: &crate::retention::RetentionPolicy) -> Keep {
        Keep {
            last: policy.keep_last,
            within_days: policy.keep_days,
            ..Keep::default()
        }
    }

    pub fn is_keep_all(&self) -> bool {
        *self == Keep::default()
    }

    /// In words: "the last 7, one a day for 14 days".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.last {
            parts.push(format!("the newest {n}"));
        }
        if let Some(n) = self.hourly {
            parts.push(format!("one an hour for {n} hours"));
        }
        if let Some(n) = self.daily {
            parts.push(format!("one a day for {n} days"));
        }
        if let Some(n) = self.weekly {
            parts.push(format!("one a week for {n} weeks"));
        }
        if let Some(n) = self.within_days {
            parts.push(format!("all of the last {n} days"));
        }
        if parts.is_empty() {
            "keep all".into()
        } else {
            format!("keep {}", parts.join(", "))
        }
    }
}

/// What [`Repo::forget`] removed (or would remove).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forgotten {
    pub removed: Vec<Listed>,
    pub kept: usize,
    /// Snapshots of runs that died before their check ([`PENDING_TAG`]),
    /// removed (or, in a dry run, to be removed).
    pub unfinished: usize,
}

#[cfg(all(test, feature = "repository"))]
mod tests {
    use super::*;

    /// What a hostile caller could ask the helper to write for a schedule
    /// is refused: anything but the storage keys, lines that would not
    /// stay lines, a location persnap does not understand.
    #[test]
    fn an_unlock_carries_only_a_location_a_password_and_storage_keys() {
        let folder = if cfg!(windows) {
            r"C:\srv\repo"
        } else {
            "/srv/repo"
        };
        let good = Unlock {
            location: "s3:https://s3.example.com/bucket".into(),
            password: "s3cret".into(),
            environment: vec![("AWS_ACCESS_KEY_ID".into(), "AKIA".into())],
        };
        assert!(good.validate().is_ok());
        // Keys go only to the kind of storage that takes them.
        for (location, key) in [
            (folder, "AWS_ACCESS_KEY_ID"),
            ("sftp:u@h:/srv", "AWS_SECRET_ACCESS_KEY"),
            ("s3:https://h/bucket", "RCLONE_SFTP_KEY_FILE"),
            ("rest:http://127.0.0.1:8000/", "AWS_SESSION_TOKEN"),
        ] {
            let e = Unlock {
                location: location.into(),
                password: "p".into(),
                environment: vec![(key.into(), "x".into())],
            }
            .validate()
            .expect_err("refused")
            .to_string();
            assert!(
                e.contains("not a key of this kind"),
                "{location} {key}: {e}"
            );
        }
        assert!(!format!("{good:?}").contains("s3cret"), "{good:?}");
        let refused = |change: &dyn Fn(&mut Unlock)| {
            let mut bad = good.clone();
            change(&mut bad);
            bad.validate().expect_err("refused").to_string()
        };
        for key in ["LD_PRELOAD", "PATH", "RCLONE_CONFIG", "aws_access_key_id"] {
            let e = refused(&|u| u.environment = vec![(key.into(), "x".into())]);
            assert!(e.contains("not a storage key"), "{key}: {e}");
        }
        let e = refused(&|u| {
            u.environment = vec![("AWS_REGION".into(), "eu\nLD_PRELOAD=/tmp/x".into())]
        });
        assert!(e.contains("not one line"), "{e}");
        for password in ["", "two\nlines", "nul\0", &"x".repeat(1025)] {
            let e = refused(&|u| u.password = password.to_owned());
            assert!(e.contains("1 to 1024 characters"), "{e}");
        }
        let e = refused(&|u| {
            u.location = "relative/repo".into();
            u.environment.clear();
        });
        assert!(e.contains("full path"), "{e}");
        let e = refused(&|u| {
            u.location = "ftp://host/repo".into();
            u.environment.clear();
        });
        assert!(e.contains("not a kind of storage"), "{e}");
    }

    #[test]
    fn locations_are_parsed_or_refused_in_words() {
        // A full path is the platform's own.
        let (folder, local) = if cfg!(windows) {
            (r"C:\srv\repo", r"local:C:\srv\repo")
        } else {
            ("/srv/repo", "local:/srv/repo")
        };
        for ok in [
            folder,
            local,
            "rest:http://127.0.0.1:8000/",
            "s3:https://s3.example.com/bucket/persnap",
            "sftp:backup@host:/srv/repo",
            "sftp:backup@host:2222:/srv/repo",
        ] {
            Address::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "repo",
            "rest:ftp://x",
            "sftp:host:/x",
            "sftp:-oProxyCommand=x@host:/x",
            "sftp:u@host:99999:/x",
            "gopher:x",
        ] {
            let e = Address::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("repository location"), "{e}");
        }
    }

    #[test]
    fn a_password_in_an_address_is_never_shown() {
        let l = Address::parse("rest:https://alice:s3cret@host:8000/repo").unwrap();
        assert_eq!(l.display(), "rest:https://alice@host:8000/repo");
        assert!(!format!("{l}").contains("s3cret"));
        assert!(!format!("{:?}", Password::new("s3cret")).contains("s3cret"));
    }

    #[test]
    fn a_password_never_shows_even_when_odd() {
        for (text, secret) in [
            ("rest:https://alice:ab/cd@host:8000/repo", "ab/cd"),
            ("rest:https://alice:p%40ss@host/", "p%40ss"),
            ("rest:https://alice:s3cret@host:99999/", "s3cret"),
        ] {
            let shown = Address(text.to_owned()).display();
            assert!(!shown.contains(secret), "{text} shown as {shown}");
            if let Err(e) = Address::parse(text) {
                assert!(!e.to_string().contains(secret), "{e}");
            }
        }
    }

    #[test]
    fn rclone_options_cannot_be_slipped_into_an_address() {
        for bad in [
            "sftp:u@h,ssh=touch /tmp/x:/srv",
            "sftp:u@h:/srv,ssh=x",
            "sftp:u'x@h:/srv",
            "s3:https://h/bucket,env_auth=false",
            "s3:https://key:secret@h/bucket",
            "s3:https://h/bucket?x=y",
            // Shown and recorded as written: nothing may hide there.
            "rest:https://h:8000/repo?token=secret",
            "rest:https://h:8000/repo#secret",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad} was taken");
        }
    }

    /// Someone in between could answer in a plain-http server's place:
    /// taken only to this machine itself or when the location says so.
    #[test]
    fn plain_http_to_another_machine_is_refused_unless_allowed() {
        for bad in [
            "rest:http://192.0.2.7:8000/",
            "rest:http://backup.example.com/repo",
            "s3:http://192.0.2.7:9000/bucket",
        ] {
            let e = Address::parse(bad).expect_err(bad).to_string();
            assert!(
                e.contains("plain http://") && e.contains("#allow-plain-http"),
                "{e}"
            );
            let allowed = Address::parse(&format!("{bad}#allow-plain-http")).unwrap();
            assert!(allowed.warning().unwrap().contains("plain http://"));
        }
        for fine in [
            "rest:http://127.0.0.1:8000/",
            "rest:http://localhost:8000/",
            "rest:http://[::1]:8000/",
            "s3:http://127.0.0.1:9000/bucket",
            "rest:https://backup.example.com/repo",
        ] {
            let l = Address::parse(fine).unwrap_or_else(|e| panic!("{fine}: {e}"));
            assert_eq!(l.warning(), None, "{fine}");
        }
        // Options belong to servers, and only known ones.
        for bad in [
            "rest:https://h/#host-key=SHA256:c5xEG2/MbrbHOauP42ccF5fuHhQ+7XeSNotHfyH6P6s",
            "sftp:u@h:/srv#allow-plain-http",
            "sftp:u@h:/srv#host-key=SHA256:short",
            "sftp:u@h:/srv#ssh=x",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn an_sftp_location_carries_its_servers_key() {
        let fp = "SHA256:c5xEG2/MbrbHOauP42ccF5fuHhQ+7XeSNotHfyH6P6s";
        let l = Address::parse("sftp:u@h:2222:/srv/r").unwrap();
        assert_eq!(l.host_key(), None);
        let pinned = l.with_host_key(fp).unwrap();
        assert_eq!(
            pinned.as_str(),
            format!("sftp:u@h:2222:/srv/r#host-key={fp}")
        );
        assert_eq!(pinned.host_key(), Some(fp));
        assert_eq!(pinned.base(), "sftp:u@h:2222:/srv/r");
        assert!(pinned.is_sftp() && pinned.same_place(&l));
        let other = "SHA256:AAAAG2/MbrbHOauP42ccF5fuHhQ+7XeSNotHfyH6P6s";
        let repinned = pinned.with_host_key(other).unwrap();
        assert_eq!(repinned.host_key(), Some(other));
        assert_eq!(repinned.as_str().matches("host-key").count(), 1);
    }

    #[test]
    fn the_same_place_is_known_however_written() {
        let (a, b) = if cfg!(windows) {
            (r"C:\srv\r", r"local:C:\srv\r\")
        } else {
            ("/srv/r", "local:/srv/r/")
        };
        let same = |x: &str, y: &str| {
            Address::parse(x)
                .unwrap()
                .same_place(&Address::parse(y).unwrap())
        };
        assert!(same(a, b));
        assert!(same(
            "rest:https://alice:pw@host:8000/repo",
            "rest:https://host:8000/repo/"
        ));
        assert!(!same(
            "rest:https://host:8000/a",
            "rest:https://host:8000/b"
        ));
        assert!(!same(a, "sftp:u@h:/srv/r"));
    }

    #[test]
    fn debug_never_shows_a_password() {
        let l = Address::parse("rest:https://alice:s3cret@host:8000/repo").unwrap();
        assert!(!format!("{l:?}").contains("s3cret"), "{l:?}");
    }

    #[test]
    fn sftp_parts_are_split() {
        assert_eq!(
            sftp_parts("u@h:2222:/srv/r"),
            Some(("u", "h", Some("2222"), "/srv/r"))
        );
        assert_eq!(sftp_parts("u@h:/srv/r"), Some(("u", "h", None, "/srv/r")));
    }
}

#[cfg(feature = "repository")]
const ADVICE_PASSWORD: &str =
    "Type the password the repository was created with; a forgotten password cannot be recovered.";
#[cfg(feature = "repository")]
const ADVICE_REACH_SFTP: &str = "Check that the SSH server is running and reachable, that it accepts your key (the one in RCLONE_SFTP_KEY_FILE, or your ssh-agent's) and that its own key is the one trusted in RCLONE_SFTP_KNOWN_HOSTS_FILE (a key that changed is refused); then try again.";
#[cfg(feature = "repository")]
const ADVICE_S3_KEYS: &str = "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the keys of a user that may read and write this bucket, then try again.";
#[cfg(feature = "repository")]
const ADVICE_REACH: &str = "Check that the server is running and reachable from this machine, and that the address is right; then try again.";
#[cfg(feature = "repository")]
const STORING: &str = "storing the backup";

#[cfg(feature = "repository")]
/// Turns rustic's error into one that says what to do.
pub(super) fn plain(location: &Address, doing: &str, e: &rustic_core::RusticError) -> Error {
    let mut detail = e.display_log();
    if let Some(secret) = location.secret() {
        let (_, rest) = location.0.split_once(':').unwrap_or_default();
        let raw = url::Url::parse(rest)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
            .unwrap_or_default();
        for text in [secret, raw] {
            if !text.is_empty() {
                detail = detail.replace(&text, "***");
            }
        }
    }
    if e.is_incorrect_password() {
        return Error::Repository {
            what: format!("The password for the repository {location} is wrong."),
            advice: ADVICE_PASSWORD,
            detail,
            kind: ErrorKind::BadInput,
        };
    }
    let lower = detail.to_lowercase();
    if (lower.contains("backend")
        || lower.contains("config file")
        || lower.contains("no repository"))
        && let Some(said) = location.s3_keys_refused()
    {
        let what = if said.starts_with("NoCredentialProviders") {
            format!(
                "No keys for the S3 storage at {location} were given (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): {doing} failed."
            )
        } else {
            format!(
                "The S3 storage at {location} refused the keys it was given (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): {doing} failed."
            )
        };
        return Error::Repository {
            what,
            advice: ADVICE_S3_KEYS,
            detail: format!("{said}; {detail}"),
            kind: ErrorKind::BadInput,
        };
    }
    let (what, advice, ek) = if lower.contains("no space left")
        || lower.contains("quota")
        || lower.contains("entity too large")
        || lower.contains("insufficient storage")
    {
        (
            format!("The repository {location} is full: {doing} failed."),
            "Free space where the repository is (prune old backups, or enlarge the storage), then back up again.",
            ErrorKind::Copy,
        )
    } else if doing == STORING
        && (lower.contains("backend")
            || lower.contains("connection")
            || lower.contains("receiver is gone"))
    {
        // A REST server whose disk is full drops the upload: from here it
        // looks like a connection that went away.
        (
            format!(
                "The repository {location} stopped taking the backup while it was being stored: its server went away, or its storage is full."
            ),
            "Check that the server is running and has free space (prune old backups, or enlarge the storage), then back up again.",
            ErrorKind::Copy,
        )
    } else if lower.contains("backend")
        || lower.contains("connection")
        || lower.contains("dns")
        || lower.contains("timed out")
    {
        (
            format!("Could not reach the repository {location}: {doing} failed."),
            if location.is_sftp() {
                ADVICE_REACH_SFTP
            } else {
                ADVICE_REACH
            },
            ErrorKind::Copy,
        )
    } else if lower.contains("config file") || lower.contains("no repository") {
        (
            format!("There is no repository at {location}."),
            "Check the address, or create the repository first (persnap repo init).",
            ErrorKind::BadInput,
        )
    } else {
        (
            format!("The repository {location} could not be used: {doing} failed."),
            "Check the address and that the repository is intact (restic check), then try again.",
            ErrorKind::Copy,
        )
    };
    Error::Repository {
        what,
        advice,
        detail,
        kind: ek,
    }
}

#[cfg(test)]
mod choose_tests {
    use super::*;

    fn listed(id: &str, host: &str, database: &str, hour: u32) -> Listed {
        Listed {
            id: id.into(),
            time: chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(hour) * 3600, 0)
                .unwrap(),
            host: host.into(),
            database: database.into(),
            store_name: "persistence.db".into(),
            bytes: 1,
            files: 2,
            pinned: false,
            note: None,
        }
    }

    fn newest(database: &str, host: Option<&str>) -> Which {
        Which::Newest {
            database: database.into(),
            host: host.map(str::to_owned),
        }
    }

    #[test]
    fn the_newest_of_a_database_held_by_one_host() {
        let all = [
            listed("aa01", "a", "orders", 1),
            listed("aa03", "a", "orders", 3),
            listed("aa02", "a", "orders", 2),
            listed("bb09", "a", "other", 9),
        ];
        assert_eq!(
            choose(&all, &newest("orders", None), "r").unwrap().id,
            "aa03"
        );
        assert_eq!(
            choose(&all, &Which::Id("aa02".into()), "r").unwrap().id,
            "aa02"
        );
    }

    #[test]
    fn several_hosts_are_named_and_one_can_be_chosen() {
        let all = [
            listed("aa01", "old-server", "orders", 1),
            listed("bb01", "new-server", "orders", 5),
        ];
        let e = choose(&all, &newest("orders", None), "r")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("old-server") && e.contains("new-server") && e.contains("--host"),
            "{e}"
        );
        let one = choose(&all, &newest("orders", Some("old-server")), "r").unwrap();
        assert_eq!(one.id, "aa01");
        let e = choose(&all, &newest("orders", Some("gone")), "r")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gone") && e.contains("old-server"), "{e}");
    }

    #[test]
    fn unknown_names_and_ids_say_what_there_is() {
        let all = [
            listed("aa01", "a", "orders", 1),
            listed("aa02", "a", "orders", 2),
        ];
        let e = choose(&all, &newest("billing", None), "r")
            .unwrap_err()
            .to_string();
        assert!(e.contains("billing") && e.contains("orders"), "{e}");
        let e = choose(&[], &newest("billing", None), "r")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no persnap backups yet"), "{e}");
        let e = choose(&all, &Which::Id("aa".into()), "r")
            .unwrap_err()
            .to_string();
        assert!(e.contains("More than one"), "{e}");
        let e = choose(&all, &Which::Id("zz".into()), "r")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no persnap backup zz"), "{e}");
    }
}
