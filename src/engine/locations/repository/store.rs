//! The repository itself, through rustic_core and rustic_backend: init,
//! open, store (with the read-back check), fetch, list, retention and
//! prune, pins. Built with the `repository` feature (on by default; the
//! fuzz target builds without it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use rustic_backend::BackendOptions;
use rustic_core::repofile::SnapshotId;
use rustic_core::{
    BackupOptions, ConfigOptions, Credentials, FileType, KeyOptions, LocalSource, LsOptions,
    OpenStatus, PathList, ProgressBars, ProgressType, ReadSource, ReadSourceEntry, ReadSourceOpen,
    Repository, RepositoryOptions, RusticError, RusticProgress, RusticResult, SnapshotOptions,
    WriteBackend,
};

use super::*;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{self, Manifest};
use crate::progress::{CancelToken, Phase, Progress};

/// The most files a backup set read back may hold (a database's files and
/// the manifest), and the most bytes its list of them may take besides
/// the ids of their chunks (67 bytes each: about 17 MiB per GiB of
/// 4 KiB chunks, counted from the snapshot's total of bytes).
const MAX_SET_FILES: usize = 1024;
const MAX_SET_TREE: u32 = 4 << 20;
/// Where a backup set lives inside its repository snapshot.
const SNAPSHOT_ROOT: &str = "/persnap";

impl Address {
    /// The password written into the address, if any (to keep it out of
    /// the repository library's own messages).
    pub(super) fn secret(&self) -> Option<String> {
        let (_, rest) = self.0.split_once(':')?;
        let parsed = url::Url::parse(rest).ok()?;
        parsed.password().map(|p| {
            url::form_urlencoded::parse(format!("p={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| p.to_owned())
        })
    }
    /// The repository's storage as rustic_backend takes it, and for SFTP
    /// the known_hosts file (this run's own) rclone checks the server
    /// against: it must live as long as the connection.
    fn backend_options(&self) -> Result<(BackendOptions, Option<tempfile::TempPath>)> {
        let mut known_hosts = None;
        let repository = match scheme(self.base()) {
            // On Windows rustic takes `local:C:\x` for a relative folder
            // named so: a drive path goes bare, with backslashes only.
            Some(("local" | "", path)) if cfg!(windows) => path.replace('/', "\\"),
            Some(("local" | "", path)) => format!("local:{path}"),
            Some(("rest", url)) => format!("rest:{url}"),
            // SFTP and S3 go through rclone (`rclone serve restic`, started
            // and stopped by rustic for the run), with an on-the-fly remote:
            // no rclone configuration is needed.
            Some(("sftp", _)) => {
                let (host, port) = self.sftp_host().expect("checked when parsed");
                let file = super::hostkey::trusted(self, &host, port)?;
                let remote = self.rclone_remote(Some(&file))?;
                known_hosts = Some(file);
                format!("rclone:{remote}")
            }
            Some(("s3", _)) => format!("rclone:{}", self.rclone_remote(None)?),
            _ => unreachable!("checked when parsed"),
        };
        Ok((
            BackendOptions::default().repository(repository),
            known_hosts,
        ))
    }

    /// The on-the-fly rclone remote of an SFTP location (checking the
    /// server against `known_hosts`) or an S3 one.
    fn rclone_remote(&self, known_hosts: Option<&Path>) -> Result<String> {
        Ok(match scheme(self.base()) {
            Some(("sftp", rest)) => {
                let (user, host, port, root) = sftp_parts(rest).expect("checked when parsed");
                let port = port.unwrap_or("22");
                // Quoted for rclone, a quote written twice.
                let known = known_hosts
                    .map(|f| {
                        format!(
                            ",known_hosts_file='{}'",
                            f.display().to_string().replace('\'', "''")
                        )
                    })
                    .unwrap_or_default();
                format!(":sftp,host={host},user={user},port={port}{known}:{root}")
            }
            Some(("s3", url)) => {
                let (scheme_part, rest) = url.split_once("://").expect("checked when parsed");
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                if path.trim_matches('/').is_empty() {
                    return Err(Error::Repository {
                        what: format!("{} names no bucket.", self.display()),
                        advice: ADVICE_LOCATION,
                        detail: String::new(),
                        kind: ErrorKind::BadInput,
                    });
                }
                // The keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
                format!(":s3,provider=Other,env_auth=true,endpoint='{scheme_part}://{host}':{path}")
            }
            _ => unreachable!("only SFTP and S3 go through rclone"),
        })
    }

    /// Connects to the repository's storage (starting rclone for SFTP and
    /// S3, the SFTP server's key checked first).
    fn connect(&self) -> Result<Storage> {
        let (options, known_hosts) = self.backend_options()?;
        let backends = options
            .to_backends()
            .map_err(|e| plain(self, "connecting", &e))?;
        Ok(Storage {
            backends,
            _known_hosts: known_hosts.map(Arc::new),
        })
    }

    /// Why S3 storage turned persnap away, when it was its keys: rclone
    /// (which stores the repository) does not tell rustic, which then only
    /// sees a missing file or a failed request. So rclone is asked once
    /// more, itself, to list the place, and what it says is returned when
    /// the storage refused the keys (or none were given).
    pub(super) fn s3_keys_refused(&self) -> Option<String> {
        if !matches!(scheme(self.base()), Some(("s3", _))) {
            return None;
        }
        let remote = self.rclone_remote(None).ok()?;
        let mut command = std::process::Command::new("rclone");
        // No console window of its own on Windows.
        #[cfg(windows)]
        std::os::windows::process::CommandExt::creation_flags(&mut command, 0x0800_0000);
        let mut child = command
            .args([
                "lsf",
                "--max-depth",
                "1",
                "--retries",
                "1",
                "--low-level-retries",
                "1",
                "--contimeout",
                "10s",
                "--timeout",
                "20s",
            ])
            .arg(remote)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let mut stderr = child.stderr.take()?;
        let reader = std::thread::spawn(move || {
            let mut said = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
            said
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let said = reader.join().ok()?;
        let refused = [
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AccessDenied",
            "NoCredentialProviders",
            "status code: 403",
        ];
        // From the storage's word on (rclone's time and prefix are noise).
        said.lines().find_map(|line| {
            let at = refused.iter().find_map(|r| line.find(r))?;
            Some(line[at..].trim().to_owned())
        })
    }
}

impl Password {
    fn credentials(&self) -> Credentials {
        Credentials::password(&self.0)
    }
}

impl Keep {
    fn options(&self) -> rustic_core::KeepOptions {
        let mut options = rustic_core::KeepOptions::default();
        let count = |n: Option<u32>| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        options.keep_last = count(self.last);
        options.keep_hourly = count(self.hourly);
        options.keep_daily = count(self.daily);
        options.keep_weekly = count(self.weekly);
        options.keep_within = self
            .within_days
            .map(|d| rustic_core::jiff::Span::new().days(i64::from(d)));
        options
    }
}

/// Creates a new, empty repository (format 2: compressed).
pub fn init(location: &Address, password: &Password) -> Result<()> {
    let storage = location.connect()?;
    let repo = Repository::new(&RepositoryOptions::default(), &storage.backends)
        .map_err(|e| plain(location, "connecting", &e))?;
    match repo.config_id() {
        Ok(Some(_)) => {
            return Err(Error::Repository {
                what: format!("There is already a repository at {location}."),
                advice: "Use it as it is (with its password), or choose another place for a new one.",
                detail: String::new(),
                kind: ErrorKind::BadInput,
            });
        }
        Ok(None) => {}
        Err(e) => return Err(plain(location, "connecting", &e)),
    }
    repo.init(
        &password.credentials(),
        &KeyOptions::default(),
        &config_options(),
    )
    .map_err(|e| plain(location, "creating the repository", &e))?;
    Ok(())
}

/// How a new repository cuts files into pieces (chunks) for
/// deduplication. SQLite changes whole pages in place, scattered over the
/// file: content-defined chunks (restic's default, 1 MiB on average)
/// then nearly all change between two backups, while fixed-size chunks of
/// a few pages keep all but the changed ones. Two pages rather than one:
/// every backup writes the list of all of a file's chunks anew (67 bytes
/// a chunk), holds it in memory, and a list may not pass 4 GiB; at 8 KiB
/// it is half as long, which outweighs the neighbouring page each changed
/// page brings along unless more than about 0.5 % of the pages change
/// between two backups, halves the memory a backup takes and doubles the
/// largest file a repository holds, to about 489 GiB (docs/BENCHMARKS.md,
/// "Repositories: chunking for big databases").
fn config_options() -> ConfigOptions {
    let mut options = ConfigOptions::default();
    // The benchmark compares chunkings side by side: "rabin", or a fixed
    // size in KiB.
    let chosen = std::env::var("PERSNAP_REPO_CHUNKING").ok();
    match chosen.as_deref() {
        Some("rabin") => {}
        other => {
            let kib = other.and_then(|k| k.parse().ok()).unwrap_or(CHUNK_KIB);
            options.set_chunker = Some(rustic_core::repofile::Chunker::FixedSize);
            options.set_chunk_size = Some(bytesize::ByteSize::kib(kib));
        }
    }
    options
}

/// Tests only (debug builds): with `PERSNAP_TEST_PAUSE_BEFORE_READ_BACK`
/// (or `…_BEFORE_STORE`) naming a FIFO, the store waits for a line on it
/// before its read-back (or before it reads the set), so that a test can
/// damage what was just written, deterministically. (Compiled in release
/// too, where it does nothing: no code differs between the two builds, so
/// the tests' unoptimized build warns of all a release build would.)
fn test_pause(before: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    if let Some(fifo) = std::env::var_os(format!("PERSNAP_TEST_PAUSE_BEFORE_{before}")) {
        let mut line = String::new();
        if let Ok(f) = std::fs::File::open(fifo) {
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut line);
        }
    }
}

/// Two of SQLite's default (4 KiB) pages: see [`config_options`].
const CHUNK_KIB: u64 = 8;
/// The pieces of a repository persnap made, in bytes (for a set staged
/// before its repository is opened: a repository with other pieces has
/// its set hashed again by the check).
pub const DEFAULT_PIECE_SIZE: u32 = CHUNK_KIB as u32 * 1024;

/// A repository's storage, connected.
#[derive(Clone)]
struct Storage {
    backends: rustic_core::RepositoryBackends,
    /// The SFTP server's trusted keys, which rclone reads on every
    /// connection: removed when the last user of the storage is gone.
    _known_hosts: Option<Arc<tempfile::TempPath>>,
}

/// A repository, opened with its password.
pub struct Repo {
    location: Address,
    backends: rustic_core::RepositoryBackends,
    _known_hosts: Option<Arc<tempfile::TempPath>>,
    repo: Repository<OpenStatus>,
    meter: Meter,
    /// Read past rustic's local cache (the read-back check).
    no_cache: bool,
    /// The master key, derived from the password once.
    key: rustic_core::repofile::MasterKey,
}

/// The repository opened with its master key ([`master_key`]): the key
/// files are read and the password's key derived once per [`Repo`].
fn opened_with_key(
    location: &Address,
    backends: &rustic_core::RepositoryBackends,
    key: &rustic_core::repofile::MasterKey,
    meter: &Meter,
    options: RepositoryOptions,
) -> Result<Repository<OpenStatus>> {
    let key = key.clone();
    Repository::new_with_progress(&options, backends, meter.clone())
        .map_err(|e| plain(location, "connecting", &e))?
        .open(&Credentials::Masterkey(key))
        .map_err(|e| plain(location, "opening the repository", &e))
}

/// The repository's master key, from the first of its key files (judged
/// by [`judged_keys`]) that the password opens. rustic is then given the
/// master key, not the password: it reads no key file itself, so a server
/// that answers one way to this read and another way to a second one
/// cannot slip it a key file not judged.
fn master_key(
    location: &Address,
    backend: &dyn WriteBackend,
    password: &Password,
) -> Result<rustic_core::repofile::MasterKey> {
    let keys = judged_keys(location, backend)?;
    if keys.is_empty() {
        return Err(Error::Repository {
            what: format!("There is no repository at {location}."),
            advice: "Check the address, or create the repository first (persnap repo init).",
            detail: "it holds no key files".into(),
            kind: ErrorKind::BadInput,
        });
    }
    for key in keys {
        match key.key_from_password(&password.0) {
            Ok(key) => {
                let (encrypt, k, r) = key.to_keys();
                let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
                // rustic's own form of a master key (its fields are Base64).
                let master = serde_json::json!({
                    "mac": { "k": b64(&k), "r": b64(&r) },
                    "encrypt": b64(&encrypt),
                });
                return serde_json::from_value(master).map_err(|e| Error::Repository {
                    what: format!("The key of the repository {location} could not be used."),
                    advice: "Report this as a bug in persnap.",
                    detail: e.to_string(),
                    kind: ErrorKind::Internal,
                });
            }
            // Another password's key.
            Err(e) if e.is_code("C001") => {}
            Err(e) => return Err(plain(location, "opening the repository", &e)),
        }
    }
    Err(Error::Repository {
        what: format!("The password for the repository {location} is wrong."),
        advice: ADVICE_PASSWORD,
        detail: String::new(),
        kind: ErrorKind::BadInput,
    })
}

/// The most key files a repository may hold: rustic tries each with the
/// password, a fraction of a second apiece.
const MAX_KEYS: usize = 64;
/// A key file is some 450 bytes.
const MAX_KEY_FILE: u32 = 64 << 10;
/// Index and snapshot files are read whole into memory.
const MAX_INDEX_FILE: u32 = 256 << 20;
const MAX_SNAPSHOT_FILE: u32 = 16 << 20;
/// The most work a key's scrypt may ask for, four times that of the keys
/// rustic makes (N = 2^17, r = 8, p = 1; restic's are at most N = 2^15,
/// r = 8 with p up to about 16): memory is 128 · N · r bytes (here at
/// most 128 MiB), time grows with N · r · p.
const MAX_SCRYPT_N_R: u64 = 1 << 20;
const MAX_SCRYPT_N_R_P: u64 = 4 << 20;

/// The repository's key files, read once and judged; a repository whose
/// storage holds what neither restic nor rustic makes, and what would
/// make every open take days or all memory before the password is judged
/// at all, is refused: rustic would try every key file with that file's
/// own scrypt N, r, p, and reads key, index and snapshot files whole. So
/// their sizes are checked from the listing, and each key file is read
/// (capped) and its parameters checked before a key is derived from any.
fn judged_keys(
    location: &Address,
    backend: &dyn WriteBackend,
) -> Result<Vec<rustic_core::repofile::KeyFile>> {
    let listing = |kind: FileType| {
        backend
            .list_with_size(kind)
            .map_err(|e| plain(location, "listing the repository's files", &e))
    };
    let refused = |detail: String| Error::Repository {
        what: format!(
            "The repository {location} holds a file that neither restic nor persnap makes, which would stall or exhaust this computer when the repository is opened; it was not opened."
        ),
        advice: "Someone who can write to the repository's storage may have put it there. Check the repository (restic check) and its storage's access; remove the file named in the details if you know it is not yours, then try again.",
        detail,
        kind: ErrorKind::BadInput,
    };
    for (kind, folder, cap) in [
        (FileType::Index, "index", MAX_INDEX_FILE),
        (FileType::Snapshot, "snapshots", MAX_SNAPSHOT_FILE),
    ] {
        if let Some((id, size)) = listing(kind)?.into_iter().find(|(_, size)| *size > cap) {
            let id = id.to_hex();
            return Err(refused(format!(
                "{folder}/{} is {size} bytes, more than the {cap} persnap reads",
                &*id
            )));
        }
    }
    let keys = listing(FileType::Key)?;
    if keys.len() > MAX_KEYS {
        return Err(refused(format!(
            "keys/ holds {} key files, more than the {MAX_KEYS} persnap tries",
            keys.len()
        )));
    }
    let mut judged = Vec::with_capacity(keys.len());
    for (id, size) in keys {
        let name = id.to_hex();
        let name: &str = &name;
        if size > MAX_KEY_FILE {
            return Err(refused(format!(
                "keys/{name} is {size} bytes, more than the {MAX_KEY_FILE} of a key file"
            )));
        }
        let bytes = backend
            .read_full(FileType::Key, &id)
            .map_err(|e| plain(location, "reading the repository's keys", &e))?;
        if bytes.len() > MAX_KEY_FILE as usize {
            return Err(refused(format!(
                "keys/{name} is {} bytes, more than the {MAX_KEY_FILE} of a key file",
                bytes.len()
            )));
        }
        let key: rustic_core::repofile::KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| refused(format!("keys/{name} is not a key file: {e}")))?;
        let (n, r, p) = (u64::from(key.n), u64::from(key.r), u64::from(key.p));
        let sane = key.kdf == "scrypt"
            && n.is_power_of_two()
            && n > 1
            && r > 0
            && p > 0
            && n.saturating_mul(r) <= MAX_SCRYPT_N_R
            && n.saturating_mul(r).saturating_mul(p) <= MAX_SCRYPT_N_R_P;
        if !sane {
            return Err(refused(format!(
                "keys/{name} asks for {} with N = {n}, r = {r}, p = {p}: more work than any key restic or rustic makes (N · r at most {MAX_SCRYPT_N_R}, N · r · p at most {MAX_SCRYPT_N_R_P})",
                key.kdf
            )));
        }
        judged.push(key);
    }
    Ok(judged)
}

/// Counts the bytes rustic reports, for [`Progress`].
#[derive(Debug, Clone, Default)]
struct Meter {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

impl ProgressBars for Meter {
    fn progress(&self, kind: ProgressType, _prefix: &str) -> rustic_core::Progress {
        match kind {
            ProgressType::Bytes => {
                self.done.store(0, Ordering::Relaxed);
                self.total.store(0, Ordering::Relaxed);
                rustic_core::Progress::new(self.clone())
            }
            _ => rustic_core::Progress::hidden(),
        }
    }
}

impl RusticProgress for Meter {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.total.store(len, Ordering::Relaxed);
    }
    fn set_title(&self, _: &str) {}
    fn inc(&self, inc: u64) {
        self.done.fetch_add(inc, Ordering::Relaxed);
    }
    fn finish(&self) {}
}

/// Drop from memory every file of the repository folder `root` changed
/// since `since`, so that the read-back reads what the disk holds. `true`
/// only if the system confirmed it for every one.
fn evict_new_files(root: &Path, since: std::time::SystemTime) -> bool {
    fn walk(dir: &Path, since: std::time::SystemTime, all: &mut bool) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            *all = false;
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                *all = false;
                continue;
            };
            if meta.is_dir() {
                walk(&entry.path(), since, all);
            } else if meta.is_file() && meta.modified().is_ok_and(|m| m >= since) {
                // Flushed first: only clean pages can be dropped (and what
                // is recorded as stored should be on the disk).
                let gone = crate::sys::open_nofollow(&entry.path())
                    .and_then(|f| f.sync_all().and_then(|()| crate::sys::evict(&f)))
                    .unwrap_or(false);
                *all &= gone;
            }
        }
    }
    let mut all = true;
    for part in ["data", "index", "snapshots"] {
        walk(&root.join(part), since, &mut all);
    }
    all
}

impl Repo {
    pub fn open(location: &Address, password: &Password) -> Result<Repo> {
        let meter = Meter::default();
        let Storage {
            backends,
            _known_hosts,
        } = location.connect()?;
        let key = master_key(location, &*backends.repository(), password)?;
        let repo = opened_with_key(
            location,
            &backends,
            &key,
            &meter,
            RepositoryOptions::default(),
        )?;
        Ok(Repo {
            location: location.clone(),
            backends,
            _known_hosts,
            repo,
            meter,
            no_cache: false,
            key,
        })
    }

    /// The repository opened anew, for a step that consumes it.
    /// Read and write the repository at `pace` from now on, when it is a
    /// folder on this machine (a server's disks are its own).
    pub fn pace(&mut self, pace: crate::pace::Pace) {
        if self.location.folder().is_none() {
            return;
        }
        if let Some(paced) = super::paced::Paced::wrap(self.backends.repository(), pace) {
            self.backends = rustic_core::RepositoryBackends::new(paced, self.backends.repo_hot());
        }
    }

    fn reopened(&self) -> Result<Repository<OpenStatus>> {
        opened_with_key(
            &self.location,
            &self.backends,
            &self.key,
            &self.meter,
            RepositoryOptions::default().no_cache(self.no_cache),
        )
    }

    pub fn location(&self) -> &Address {
        &self.location
    }

    /// The smallest piece this repository cuts a file into: the size of
    /// its fixed-size chunks, or its smallest content-defined one. What
    /// [`super::check_chunk_list`] takes, before a backup is stored.
    pub fn smallest_chunk(&self) -> u64 {
        let config = self.repo.config();
        match config.chunker() {
            rustic_core::repofile::Chunker::FixedSize => config.chunk_size() as u64,
            rustic_core::repofile::Chunker::Rabin => config.chunk_min_size() as u64,
        }
    }

    /// The size of the repository's pieces when it cuts them at a fixed
    /// size (as a repository persnap made does); `None` when it cuts them
    /// by content.
    pub fn piece_size(&self) -> Option<u32> {
        let config = self.repo.config();
        (config.chunker() == rustic_core::repofile::Chunker::FixedSize)
            .then(|| u32::try_from(config.chunk_size()).ok())
            .flatten()
    }

    /// Every persnap backup in the repository, oldest first (other
    /// snapshots are left out).
    pub fn list(&self) -> Result<Vec<Listed>> {
        self.list_tagged(TAG)
    }

    /// The snapshots tagged `tag` ([`TAG`], or [`PENDING_TAG`] for those
    /// not checked yet), oldest first.
    fn list_tagged(&self, tag: &str) -> Result<Vec<Listed>> {
        let snaps = self
            .repo
            .get_all_snapshots()
            .map_err(|e| plain(&self.location, "listing the backups", &e))?;
        let mut listed: Vec<Listed> = snaps
            .into_iter()
            .filter(|s| s.tags.contains(tag))
            .map(|s| {
                let tag = |key: &str| {
                    s.tags
                        .iter()
                        .find_map(|t| t.strip_prefix(&format!("{key}=")).map(str::to_owned))
                        .unwrap_or_default()
                };
                let summary = s.summary.clone().unwrap_or_default();
                let pinned = matches!(s.delete, rustic_core::repofile::DeleteOption::Never);
                Listed {
                    pinned,
                    note: s.description.clone().filter(|_| pinned),
                    id: s.id.to_string(),
                    time: chrono::DateTime::from_timestamp_millis(
                        s.time.timestamp().as_millisecond(),
                    )
                    .unwrap_or_default(),
                    host: s.hostname.clone(),
                    database: tag("database"),
                    store_name: tag("store"),
                    bytes: summary.total_bytes_processed,
                    files: summary.total_files_processed,
                }
            })
            .collect();
        listed.sort_by_key(|l| l.time);
        Ok(listed)
    }

    /// Stores a verified backup set as one repository snapshot, then reads
    /// it back and checks it. A cancelled or failed store leaves no
    /// snapshot behind (the data it wrote is consistent and indexed, and
    /// goes at the next prune).
    /// `staged`: the set was staged for this store, with the pieces its
    /// copy hashed from the snapshot's bytes beside it
    /// ([`crate::copy::pieces_path`]); the check compares the stored lists
    /// with them.
    pub fn store(
        &self,
        backup_dir: &Path,
        manifest: &Manifest,
        database: &str,
        staged: bool,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<Stored> {
        check_database_name(database)?;
        // A set whose list of pieces the repository cannot hold is refused
        // before any of it is stored.
        let manifest_bytes = std::fs::metadata(backup_dir.join(manifest::MANIFEST_NAME))
            .map(|m| m.len())
            .unwrap_or(0);
        super::check_chunk_list(
            manifest.files.iter().map(|f| f.size).sum::<u64>() + manifest_bytes,
            self.smallest_chunk(),
        )?;
        let started = Instant::now();
        // Files the store writes are newer than this (with room for a
        // filesystem's coarse timestamps).
        let since = std::time::SystemTime::now() - Duration::from_secs(2);
        progress.phase(Phase::Store);
        let when =
            rustic_core::jiff::Timestamp::from_millisecond(manifest.started.timestamp_millis())
                .map(|t| t.to_zoned(rustic_core::jiff::tz::TimeZone::UTC))
                .ok();
        let mut options = SnapshotOptions::default()
            .host(manifest.host.clone())
            .label(database.to_owned());
        if let Some(when) = when {
            options = options.time(when);
        }
        let tags = |tag: &str| format!("{tag},database={database},store={}", manifest.store_name);
        let snap = options
            .add_tags(&tags(PENDING_TAG))
            .and_then(|o| o.to_snapshot())
            .map_err(|e| plain(&self.location, "preparing the snapshot", &e))?;
        let mut backup_opts =
            BackupOptions::default().as_path(PathBuf::from(format!("{SNAPSHOT_ROOT}/{database}")));
        // Every file is read whole: deduplication finds what is unchanged.
        backup_opts.parent_opts.force = true;
        let paths = PathList::from_iter([backup_dir.to_path_buf()]);
        let source = LocalSource::new(
            backup_opts.ignore_save_opts,
            &backup_opts.excludes,
            &backup_opts.ignore_filter_opts,
            &paths.paths(),
        )
        .map_err(|e| plain(&self.location, "reading the backup set", &e))?;
        let stop = cancel.flag();
        let source = Cancellable {
            inner: source,
            stop: stop.clone(),
        };
        let repo = self
            .reopened()?
            .to_indexed_ids()
            .map_err(|e| plain(&self.location, "reading the repository's index", &e))?;
        test_pause("STORE");
        let saved = self.while_showing(Phase::Store, progress, || {
            repo.archive(&backup_opts, &source, snap, &paths.paths())
        });
        let saved = saved.map_err(|e| plain(&self.location, STORING, &e))?;
        let forget = |why: Error| -> Error {
            // Nothing half-stored is left as a backup.
            match self.repo.delete_snapshots(&[saved.id]) {
                Ok(()) => why,
                Err(e) => Error::Repository {
                    what: format!(
                        "{why} The unchecked copy {} could not be removed from the repository again ({}).",
                        &saved.id.to_string()[..8],
                        e.display_log()
                    ),
                    advice: "Do not rely on it: remove it with restic forget, or back up again.",
                    detail: String::new(),
                    kind: why.kind(),
                },
            }
        };
        if cancel.is_cancelled() {
            return Err(forget(Error::Cancelled));
        }
        let summary = saved.summary.clone().unwrap_or_default();
        let expected: u64 = manifest.files.iter().map(|f| f.size).sum();
        let manifest_bytes = std::fs::metadata(backup_dir.join(manifest::MANIFEST_NAME))
            .map(|m| m.len())
            .unwrap_or(0);
        if summary.total_bytes_processed != expected + manifest_bytes {
            return Err(forget(Error::Repository {
                what: format!(
                    "Not all of the backup reached the repository {}: {} of {} bytes were read.",
                    self.location,
                    summary.total_bytes_processed,
                    expected + manifest_bytes
                ),
                advice: "Back up again; if this repeats, check the disk the backup is staged on.",
                detail: String::new(),
                kind: ErrorKind::Copy,
            }));
        }
        let id = saved.id.to_string();
        let check = self
            .check_stored(&id, manifest, (backup_dir, staged), since, progress, cancel)
            .map_err(forget)?;
        // Checked: now it is a backup.
        let final_tags = tags(TAG)
            .parse::<rustic_core::repofile::StringList>()
            .map_err(|e| Error::Repository {
                what: format!("The backup's tags could not be written: {e}."),
                advice: "Report this as a bug in persnap.",
                detail: String::new(),
                kind: ErrorKind::Copy,
            })?;
        let replaced = self
            .replace(saved.clone(), |s| {
                s.set_tags(vec![final_tags]);
            })
            .map_err(forget)?;
        Ok(Stored {
            location: self.location.display(),
            snapshot: replaced.id,
            warning: replaced.old_left,
            bytes_read: summary.total_bytes_processed,
            bytes_new: summary.data_added,
            bytes_stored: summary.data_added_packed,
            seconds: started.elapsed().as_secs_f64(),
            check,
        })
    }

    /// Checks the backup just stored as snapshot `id` (see
    /// [`super::readback`] for exactly what is read and compared): the
    /// verified copy in `backup_dir` hashed again into the repository's
    /// pieces, its stored lists compared with them, and every pack holding
    /// this backup's pieces that the previous checked backup of this
    /// database does not use read back from the storage and authenticated. A repository that cuts pieces by content
    /// (restic's own default) is read back whole instead.
    #[allow(clippy::too_many_arguments)]
    fn check_stored(
        &self,
        id: &str,
        manifest: &Manifest,
        (backup_dir, staged): (&Path, bool),
        since: std::time::SystemTime,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<StoreCheck> {
        let started = Instant::now();
        test_pause("READ_BACK");
        let where_from = self.location.folder().map(|root| {
            if evict_new_files(root, since) {
                STORE_CHECK_DISK
            } else {
                STORE_CHECK_MEMORY
            }
        });
        // Read from the repository itself, not from the local cache the
        // store just filled.
        let uncached = opened_with_key(
            &self.location,
            &self.backends,
            &self.key,
            &self.meter,
            RepositoryOptions::default().no_cache(true),
        )?;
        let config = uncached.config();
        if config.chunker() != rustic_core::repofile::Chunker::FixedSize {
            return self.check_by_fetching(id, manifest, backup_dir, where_from, progress, cancel);
        }
        let chunk = config.chunk_size();
        let key = uncached.key();
        let repo = uncached
            .to_indexed()
            .map_err(|e| plain(&self.location, "reading the repository's index", &e))?;
        let entry = self.one_tagged(id, PENDING_TAG)?;
        progress.phase(Phase::Verify);
        let mismatch = |detail: String| super::readback::damaged(&self.location, detail);
        // Just written: a list that does not read is damage.
        let entries = self
            .set_entries(&repo, &entry)
            .map_err(|e| mismatch(e.to_string()))?;
        // The manifest stored is the one written.
        if crate::manifest::read(backup_dir)? != *manifest {
            return Err(Error::Repository {
                what: format!(
                    "The backup's manifest changed after it was written, before it was stored in {}.",
                    self.location
                ),
                advice: "Back up again; if this repeats, check the disk the backup is staged on.",
                detail: String::new(),
                kind: ErrorKind::Verify,
            });
        }
        // The stored lists: exactly the pieces of the verified copy.
        let mut names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
        names.push(manifest::MANIFEST_NAME);
        if entries.len() != names.len() {
            return Err(mismatch(format!(
                "the stored backup holds {} files, the backup {}",
                entries.len(),
                names.len()
            )));
        }
        let pieces = staged.then(|| crate::copy::pieces_path(backup_dir));
        let mut from_snapshot = 0;
        for name in names {
            let node = entries
                .iter()
                .find(|(path, _)| path.as_os_str() == name)
                .map(|(_, node)| node)
                .ok_or_else(|| mismatch(format!("{name} is not in the stored backup")))?;
            let listed = manifest.files.iter().find(|f| f.name == name);
            // A staged set's pieces were hashed as its bytes came from the
            // snapshot: the stored list must be exactly those.
            let pieces_match = match (listed, &pieces) {
                (Some(file), Some(dir)) => match crate::copy::read_pieces(dir, name, file.size)? {
                    Some((size, ids)) if size as usize == chunk => {
                        let stored = node.content.iter().flatten().map(|id| id.into_inner());
                        let hashed = ids.iter().map(|id| rustic_core::Id::new(*id));
                        Some(node.meta.size == file.size && stored.eq(hashed))
                    }
                    _ => None,
                },
                _ => None,
            };
            if pieces_match == Some(true) {
                from_snapshot += 1;
                continue;
            }
            // Without them (or when they differ, to say which side
            // changed): the copy it was stored from, hashed again.
            let (size, sha256, ids) =
                crate::copy::hash_pieces(&backup_dir.join(name), chunk, cancel)?;
            if let Some(file) = listed
                && (file.sha256 != sha256 || file.size != size)
            {
                return Err(Error::Repository {
                    what: format!(
                        "The backup's copy of {name} changed after it was verified, before it was stored in {}.",
                        self.location
                    ),
                    advice: "Back up again; if this repeats, check the disk the backup is staged on.",
                    detail: String::new(),
                    kind: ErrorKind::Verify,
                });
            }
            if pieces_match == Some(false) {
                return Err(mismatch(format!(
                    "{name}: the stored list of its pieces is not the list of the pieces hashed as it was read from the snapshot"
                )));
            }
            let stored = node.content.iter().flatten().map(|id| id.into_inner());
            if node.meta.size != size || !stored.eq(ids.iter().map(|id| rustic_core::Id::new(*id)))
            {
                return Err(mismatch(format!(
                    "{name}: the stored list of its pieces is not the list of the pieces hashed from the verified copy"
                )));
            }
        }
        // The packs this backup's pieces and lists are in, where the index
        // places them; those the previous checked backup of this database
        // also uses were read back by its own check.
        let wanted = self.placed(&repo, &entry, &entries)?;
        let previous = self
            .list()?
            .into_iter()
            .filter(|l| {
                l.host == entry.host
                    && l.database == entry.database
                    && l.id != entry.id
                    && l.time <= entry.time
            })
            .max_by_key(|l| l.time);
        let checked_before: std::collections::HashSet<String> = match &previous {
            Some(previous) => {
                let entries = self.set_entries(&repo, previous)?;
                self.placed(&repo, previous, &entries)?
                    .into_keys()
                    .collect()
            }
            None => Default::default(),
        };
        let backend = self.backends.repository();
        let sizes: std::collections::HashMap<String, (rustic_core::Id, u32)> = backend
            .list_with_size(FileType::Pack)
            .map_err(|e| plain(&self.location, "listing the repository's files", &e))?
            .into_iter()
            .map(|(id, size)| (id.to_hex().to_string(), (id, size)))
            .collect();
        let mut new = Vec::new();
        for (pack, blobs) in wanted {
            if checked_before.contains(&pack) {
                continue;
            }
            let (id, size) = sizes.get(&pack).ok_or_else(|| {
                mismatch(format!(
                    "pack {pack}, which holds pieces of this backup, is not in the repository"
                ))
            })?;
            new.push((*id, *size, blobs));
        }
        let cipher = super::readback::cipher(&self.location, &key)?;
        self.meter.done.store(0, Ordering::Relaxed);
        self.meter.total.store(
            new.iter().map(|(_, size, _)| u64::from(*size)).sum(),
            Ordering::Relaxed,
        );
        let read = self.while_showing(Phase::Verify, progress, || {
            super::readback::read_back_packs(
                &self.location,
                &*backend,
                &cipher,
                &new,
                &self.meter.done,
                cancel,
            )
        })?;
        Ok(StoreCheck {
            checked: format!(
                "{}{}",
                store_check_packs(
                    read.packs,
                    read.bytes,
                    from_snapshot == manifest.files.len()
                ),
                where_from.unwrap_or_default()
            ),
            hashes_match: true,
            integrity: manifest.verification.integrity.clone(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The check of a backup stored in a repository that cuts pieces by
    /// content: the whole backup read back into a scratch folder beside
    /// `near`, its files' SHA-256 compared with the manifest and SQLite's
    /// integrity check run on it.
    fn check_by_fetching(
        &self,
        id: &str,
        manifest: &Manifest,
        near: &Path,
        where_from: Option<&str>,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<StoreCheck> {
        let started = Instant::now();
        let scratch = crate::verify::WorkDir::create(crate::verify::scratch_parent(near).join(
            format!("{}repo-check-{}", crate::names::SCRATCH_PREFIX, &id[..8]),
        ))?;
        // Read from the repository itself, not from the local cache the
        // store just filled.
        let uncached = Repo {
            repo: opened_with_key(
                &self.location,
                &self.backends,
                &self.key,
                &self.meter,
                RepositoryOptions::default().no_cache(true),
            )?,
            location: self.location.clone(),
            backends: self.backends.clone(),
            _known_hosts: self._known_hosts.clone(),
            meter: self.meter.clone(),
            no_cache: true,
            key: self.key.clone(),
        };
        let set = uncached.fetch_tagged(id, PENDING_TAG, None, scratch.path(), progress, cancel)?;
        progress.phase(Phase::Verify);
        let mut meter = crate::copy::Meter {
            phase: Phase::Verify,
            done: 0,
            total: 0,
            progress,
            cancel,
            pacer: crate::pace::Pacer::fast(),
        };
        let (restored, verification) =
            crate::verify::verify_backup(&set, scratch.path(), &mut meter)?;
        if restored != *manifest {
            return Err(Error::Repository {
                what: format!(
                    "What the repository {} gave back is not this backup: its manifest differs.",
                    self.location
                ),
                advice: "Back up again; if this repeats, check the repository (restic check --read-data).",
                detail: String::new(),
                kind: ErrorKind::Verify,
            });
        }
        Ok(StoreCheck {
            checked: format!("{STORE_CHECK}{}", where_from.unwrap_or_default()),
            hashes_match: verification.hashes_match,
            integrity: verification.integrity,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Restores the backup set of snapshot `id` (a full id or its start)
    /// into a new folder inside `into`, and returns that folder. The files
    /// are not checked here: restore and verify check them.
    pub fn fetch(
        &self,
        id: &str,
        into: &Path,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<PathBuf> {
        self.fetch_tagged(id, TAG, None, into, progress, cancel)
    }

    /// Read part `n` of `m` of every pack the repository's backups need
    /// (the packs whose id falls in that part, as `restic check
    /// --read-data-subset n/m`; parts 1..=m together are every pack) back
    /// from the storage, past the local cache, with the repository's own
    /// structure checked as well; what is damaged or missing, in rustic's
    /// words (nothing: all of it read back intact).
    pub fn check_packs(&self, n: u32, m: u32, progress: &mut dyn Progress) -> Result<Vec<String>> {
        let repo = opened_with_key(
            &self.location,
            &self.backends,
            &self.key,
            &self.meter,
            RepositoryOptions::default().no_cache(true),
        )?;
        let options = rustic_core::CheckOptions::default()
            .read_data(true)
            .read_data_subset(rustic_core::ReadSubsetOption::IdSubSet((n, m)));
        let results = self
            .while_showing(Phase::Verify, progress, || repo.check(options))
            .map_err(|e| plain(&self.location, "checking the repository", &e))?;
        // Only errors: a warning (an unused blob, say) leaves every backup
        // restorable.
        Ok(results
            .0
            .iter()
            .filter(|(level, _)| format!("{level:?}") == "Error")
            .map(|(_, e)| e.to_string())
            .collect())
    }

    /// The manifest of backup `id` alone (a few kilobytes: where it came
    /// from, its files and how it was checked), read out into a new
    /// folder inside `into`, before the whole backup is read.
    pub fn fetch_manifest(&self, id: &str, into: &Path) -> Result<Manifest> {
        let set = self.fetch_tagged(
            id,
            TAG,
            Some(crate::manifest::MANIFEST_NAME),
            into,
            &mut crate::progress::Silent,
            &CancelToken::new(),
        )?;
        crate::manifest::read(&set)
    }

    /// [`Repo::fetch`] of a snapshot tagged `tag`; with `only`, of that
    /// one file of it.
    fn fetch_tagged(
        &self,
        id: &str,
        tag: &str,
        only: Option<&str>,
        into: &Path,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<PathBuf> {
        let entry = self.one_tagged(id, tag)?;
        check_database_name(&entry.database)?;
        crate::store::validate_store_name(&entry.store_name)?;
        // Room for all of it, said before anything is read (every read-out
        // comes here: a restore, a verification, a drill).
        if only.is_none()
            && let Ok(free) = crate::sys::free_space(into)
            && free < entry.bytes
        {
            // The folder people know: the staging folder, not the scratch
            // folder made in it for this read-out.
            let shown = match into.file_name() {
                Some(name)
                    if name
                        .to_string_lossy()
                        .starts_with(crate::names::SCRATCH_PREFIX) =>
                {
                    into.parent().unwrap_or(into)
                }
                _ => into,
            };
            return Err(Error::NoRoomToReadOut {
                path: shown.to_owned(),
                needed: crate::units::bytes(entry.bytes),
                free: crate::units::bytes(free),
            });
        }
        let repo = self
            .reopened()?
            .to_indexed()
            .map_err(|e| plain(&self.location, "reading the repository's index", &e))?;
        let entries = self.set_entries(&repo, &entry)?;
        let target = into.join(format!("{}-{}", entry.database, entry.short_id()));
        std::fs::create_dir(&target).map_err(Error::io(
            "create",
            &target,
            crate::error::HINT_DEST,
        ))?;
        let entries: Vec<_> = match only {
            Some(name) => entries
                .into_iter()
                .filter(|(path, _)| path.as_os_str() == name)
                .collect(),
            None => entries,
        };
        let backend = self.backends.repository();
        let fetched = self.while_showing(Phase::Copy, progress, || {
            super::fetch::files(
                &self.location,
                &repo,
                &*backend,
                &entries,
                &target,
                super::fetch::Counts {
                    done: &self.meter.done,
                    total: &self.meter.total,
                },
                cancel,
            )
        });
        fetched?;
        cancel.check()?;
        only_plain_files(&target)?;
        Ok(target)
    }

    /// Every pack holding a piece of the set `entries` of backup `entry`,
    /// or one of the lists (trees) on its way from the snapshot's root,
    /// with where the index places each of those blobs in it.
    fn placed(
        &self,
        repo: &Repository<rustic_core::IndexedFullStatus>,
        entry: &Listed,
        entries: &[(PathBuf, rustic_core::repofile::Node)],
    ) -> Result<std::collections::HashMap<String, Vec<super::readback::Placed>>> {
        let located = |what: &str, e: Box<RusticError>| {
            super::readback::damaged(
                &self.location,
                format!(
                    "{what} is in no pack of the repository ({})",
                    e.display_log()
                ),
            )
        };
        let mut packs: std::collections::HashMap<String, Vec<super::readback::Placed>> =
            std::collections::HashMap::new();
        // rustic_core does not name its index entry's type: its fields.
        macro_rules! add {
            ($e:expr, $blob:expr) => {{
                let e = $e;
                packs.entry(e.pack.to_hex().to_string()).or_default().push(
                    super::readback::Placed {
                        blob: $blob,
                        offset: e.location.offset,
                        length: e.location.length,
                        uncompressed: e.location.uncompressed_length.map(|u| u.get()),
                    },
                );
            }};
        }
        let snapshot = repo
            .get_snapshot_from_str(&entry.id, |_| true)
            .map_err(|e| plain(&self.location, "finding the backup", &e))?;
        let mut trees = vec![snapshot.tree];
        for path in [
            SNAPSHOT_ROOT.to_owned(),
            format!("{SNAPSHOT_ROOT}/{}", entry.database),
        ] {
            let node = repo
                .node_from_snapshot_path(&format!("{}:{path}", entry.id), |_| true)
                .map_err(|e| plain(&self.location, "finding the backup", &e))?;
            trees.extend(node.subtree);
        }
        for tree in trees {
            let e = repo
                .get_index_entry(&tree)
                .map_err(|e| located(&format!("the list {}", tree.to_hex().as_str()), e))?;
            add!(e, tree.to_hex().to_string());
        }
        for (name, node) in entries {
            for piece in node.content.iter().flatten() {
                let e = repo.get_index_entry(piece).map_err(|e| {
                    located(
                        &format!(
                            "{}: the piece {}",
                            name.display(),
                            piece.into_inner().to_hex().as_str()
                        ),
                        e,
                    )
                })?;
                add!(e, piece.into_inner().to_hex().to_string());
            }
        }
        for blobs in packs.values_mut() {
            blobs.sort_by(|a, b| a.offset.cmp(&b.offset).then(a.blob.cmp(&b.blob)));
            blobs.dedup();
        }
        Ok(packs)
    }

    /// The files of backup set `entry` in its snapshot's tree: only plain
    /// files, each directly in the set and with a plain name (rustic joins
    /// a tree's names onto the target as they are, so a snapshot someone
    /// else made could otherwise write anywhere). One level only, and only
    /// so many entries: a snapshot someone else made may hold a tree of
    /// millions, which would all be listed into memory before the first
    /// odd one is refused.
    fn set_entries(
        &self,
        repo: &Repository<rustic_core::IndexedFullStatus>,
        entry: &Listed,
    ) -> Result<Vec<(PathBuf, rustic_core::repofile::Node)>> {
        let node = repo
            .node_from_snapshot_path(
                &format!("{}:{SNAPSHOT_ROOT}/{}", entry.id, entry.database),
                |_| true,
            )
            .map_err(|e| plain(&self.location, "finding the backup", &e))?;
        let not_ours = |detail: String| Error::NotABackup {
            path: PathBuf::from(format!("{} ({})", entry.short_id(), self.location)),
            detail,
        };
        if let Some(tree) = node.subtree {
            let size = repo
                .get_index_entry(&tree)
                .map_err(|e| plain(&self.location, "reading the backup's list of files", &e))?
                .location
                .data_length();
            // The list holds every chunk id of the files, as many as the
            // snapshot's bytes make in this repository's chunks.
            // Never more than persnap reads: the repository may be
            // someone else's, its sizes anything.
            let allowed = u64::from(MAX_SET_TREE)
                .saturating_add(
                    entry
                        .bytes
                        .div_ceil(self.smallest_chunk().max(1))
                        .saturating_mul(super::TREE_BYTES_PER_CHUNK),
                )
                .min(super::chunks::MAX_LIST_BYTES);
            if u64::from(size) > allowed {
                return Err(not_ours(format!(
                    "the repository's copy lists its files in {size} bytes, more than the {allowed} its {} bytes of files take; it was not made by persnap",
                    entry.bytes
                )));
            }
        }
        let mut options = LsOptions::default();
        options.recursive = false;
        let entries: Vec<(PathBuf, rustic_core::repofile::Node)> = repo
            .ls(&node, &options)
            .map_err(|e| plain(&self.location, "reading the backup's list of files", &e))?
            .take(MAX_SET_FILES + 1)
            .collect::<RusticResult<_>>()
            .map_err(|e| plain(&self.location, "reading the backup's list of files", &e))?;
        if entries.len() > MAX_SET_FILES {
            return Err(not_ours(format!(
                "the repository's copy holds more than {MAX_SET_FILES} files; it was not made by persnap"
            )));
        }
        for (path, file) in &entries {
            let mut parts = path.components();
            let one_plain_name = matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            );
            if !one_plain_name
                || file.node_type != rustic_core::repofile::NodeType::File
                || file.meta.links > 1
            {
                return Err(Error::NotABackup {
                    path: PathBuf::from(format!("{} ({})", entry.short_id(), self.location)),
                    detail: format!(
                        "the repository's copy holds {}, which is not a plain file of a backup; it was not made by persnap",
                        path.display()
                    ),
                });
            }
        }
        Ok(entries)
    }

    /// Runs `work` on another thread, passing rustic's byte counts to
    /// `progress` meanwhile.
    fn while_showing<T: Send>(
        &self,
        phase: Phase,
        progress: &mut dyn Progress,
        work: impl FnOnce() -> T + Send,
    ) -> T {
        std::thread::scope(|s| {
            let handle = s.spawn(work);
            while !handle.is_finished() {
                std::thread::sleep(Duration::from_millis(100));
                let total = self.meter.total.load(Ordering::Relaxed);
                let done = self.meter.done.load(Ordering::Relaxed);
                progress.bytes(phase, done.min(total.max(done)), total.max(done));
            }
            handle.join().expect("the repository thread does not panic")
        })
    }
}

/// A backup set read out of a repository holds plain files only: a
/// snapshot someone else made may hold links or folders, which no backup
/// persnap stores has, and which verify and restore must never follow.
fn only_plain_files(set: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(set).map_err(Error::io("read", set, crate::error::HINT_DEST))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("read", set, crate::error::HINT_DEST))?;
        let kind =
            entry
                .file_type()
                .map_err(Error::io("read", entry.path(), crate::error::HINT_DEST))?;
        if !kind.is_file() {
            return Err(Error::NotABackup {
                path: set.to_owned(),
                detail: format!(
                    "the repository's copy holds {:?}, which is not a plain file; it was not made by persnap",
                    entry.file_name()
                ),
            });
        }
    }
    Ok(())
}

impl Repo {
    /// Applies `keep` to the backups of `database` taken on `host`: the
    /// newest and pinned ones are never removed, nor anything of another
    /// host or database. Then prunes (unless `dry_run`) with rustic's safe
    /// defaults: data no backup needs is deleted by a prune at least 23
    /// hours later, so that a backup another machine is storing meanwhile
    /// (repositories have no lock) keeps what it relies on.
    pub fn forget(
        &self,
        host: &str,
        database: &str,
        keep: &Keep,
        dry_run: bool,
    ) -> Result<Forgotten> {
        check_database_name(database)?;
        if keep.is_keep_all() {
            return Ok(Forgotten {
                removed: Vec::new(),
                kept: 0,
                unfinished: 0,
            });
        }
        let database_tag = format!("database={database}");
        let old_enough = chrono::Utc::now() - PENDING_SWEEP_AFTER;
        let unfinished: Vec<SnapshotId> = self
            .repo
            .get_matching_snapshots(|s| {
                s.tags.contains(PENDING_TAG)
                    && s.tags.contains(&database_tag)
                    && s.hostname == host
                    && s.time.timestamp().as_millisecond() < old_enough.timestamp_millis()
            })
            .map_err(|e| plain(&self.location, "listing the backups", &e))?
            .into_iter()
            .map(|s| s.id)
            .collect();
        let listed = self.list()?;
        let ours: Vec<&Listed> = listed
            .iter()
            .filter(|l| l.host == host && l.database == database)
            .collect();
        let ids: Vec<String> = ours.iter().map(|l| l.id.clone()).collect();
        let snaps = self
            .repo
            .get_snapshots(&ids)
            .map_err(|e| plain(&self.location, "reading the backups", &e))?;
        let decided = keep
            .options()
            .apply(snaps, &rustic_core::jiff::Zoned::now())
            .map_err(|e| plain(&self.location, "choosing what to keep", &e))?;
        let newest = ours.last().map(|l| l.id.clone());
        let mut removed = Vec::new();
        let mut gone = Vec::new();
        for decision in &decided {
            let id = decision.snapshot.id.to_string();
            let entry = ours.iter().find(|l| l.id == id).expect("listed above");
            if decision.keep || entry.pinned || Some(&id) == newest.as_ref() {
                continue;
            }
            removed.push((*entry).clone());
            gone.push(decision.snapshot.id);
        }
        let kept = ours.len() - removed.len();
        let unfinished_count = unfinished.len();
        gone.extend(unfinished);
        if !dry_run && !gone.is_empty() {
            self.repo
                .delete_snapshots(&gone)
                .map_err(|e| plain(&self.location, "removing old backups", &e))?;
            let options = rustic_core::PruneOptions::default();
            let plan = self
                .repo
                .prune_plan(&options)
                .map_err(|e| plain(&self.location, "planning the prune", &e))?;
            self.repo
                .prune(&options, plan)
                .map_err(|e| plain(&self.location, "pruning", &e))?;
        }
        removed.sort_by_key(|l| l.time);
        Ok(Forgotten {
            removed,
            kept,
            unfinished: unfinished_count,
        })
    }

    /// Pins the backup `id` (kept whatever retention says, with `note`),
    /// or unpins it. As in restic, the snapshot is saved anew: returns its
    /// new id.
    pub fn pin(&self, id: &str, note: Option<&str>) -> Result<Replaced> {
        let entry = self.one(id)?;
        let snap = self
            .repo
            .get_snapshots(&[entry.id.as_str()])
            .map_err(|e| plain(&self.location, "reading the backup", &e))?
            .remove(0);
        self.replace(snap, |snap| match note {
            Some(note) => {
                snap.delete = rustic_core::repofile::DeleteOption::Never;
                snap.description = Some(note.to_owned());
            }
            None => {
                snap.delete = rustic_core::repofile::DeleteOption::NotSet;
                snap.description = None;
            }
        })
    }

    /// Saves `snap` changed by `change` as a new snapshot file (a
    /// snapshot's id is the hash of its file, so the change gives it a new
    /// one), then removes the old file. If that removal fails (an
    /// append-only server), the change still stands: [`Replaced::old_left`]
    /// says so.
    fn replace(
        &self,
        mut snap: rustic_core::repofile::SnapshotFile,
        change: impl FnOnce(&mut rustic_core::repofile::SnapshotFile),
    ) -> Result<Replaced> {
        let ids = || -> Result<std::collections::BTreeSet<SnapshotId>> {
            Ok(self
                .repo
                .list::<SnapshotId>()
                .map_err(|e| plain(&self.location, "listing the backups", &e))?
                .collect())
        };
        let old = snap.id;
        change(&mut snap);
        let before = ids()?;
        self.repo
            .save_snapshots(vec![snap.clone()])
            .map_err(|e| plain(&self.location, "saving the backup's new description", &e))?;
        // The new file is the one that appeared, with this time, host,
        // tags and tree (another machine may be saving its own meanwhile).
        let appeared: Vec<String> = ids()?
            .difference(&before)
            .map(ToString::to_string)
            .collect();
        let new = self
            .repo
            .get_snapshots(&appeared)
            .map_err(|e| plain(&self.location, "reading the backups", &e))?
            .into_iter()
            .find(|s| {
                s.time == snap.time
                    && s.hostname == snap.hostname
                    && s.tags == snap.tags
                    && s.tree == snap.tree
                    && s.delete == snap.delete
            })
            .map(|s| s.id)
            .ok_or_else(|| Error::Repository {
                what: format!(
                    "The backup's new description was saved in {}, but is not found there.",
                    self.location
                ),
                advice: "List the repository's backups and try again.",
                detail: String::new(),
                kind: ErrorKind::Copy,
            })?;
        let old_left = self.repo.delete_snapshots(&[old]).err().map(|e| {
            format!(
                "The earlier description of backup {} (id {}) could not be removed from {} ({}); restic lists both until it is removed (restic forget {}).",
                &new.to_string()[..8],
                &old.to_string()[..8],
                self.location,
                e.display_log(),
                old
            )
        });
        Ok(Replaced {
            id: new.to_string(),
            old: old.to_string(),
            old_left,
        })
    }

    /// The one persnap backup whose id starts with `id`.
    fn one(&self, id: &str) -> Result<Listed> {
        self.one_tagged(id, TAG)
    }

    fn one_tagged(&self, id: &str, tag: &str) -> Result<Listed> {
        let listed = self.list_tagged(tag)?;
        let found: Vec<Listed> = listed
            .into_iter()
            .filter(|l| l.id.starts_with(id))
            .collect();
        match <[Listed; 1]>::try_from(found) {
            Ok([one]) => Ok(one),
            Err(found) if found.is_empty() => Err(Error::Repository {
                what: format!(
                    "The repository {} holds no persnap backup {id}.",
                    self.location
                ),
                advice: "List its backups (persnap repo list) and give one of their ids.",
                detail: String::new(),
                kind: ErrorKind::BadInput,
            }),
            Err(_) => Err(Error::Repository {
                what: format!(
                    "More than one backup in {} starts with {id}.",
                    self.location
                ),
                advice: "Give more characters of the id.",
                detail: String::new(),
                kind: ErrorKind::BadInput,
            }),
        }
    }
}

/// A snapshot saved anew (pinned, unpinned, or checked).
#[derive(Debug)]
pub struct Replaced {
    /// Its new id.
    pub id: String,
    /// The id it had.
    pub old: String,
    /// Why the old snapshot file is still there, if it is.
    pub old_left: Option<String>,
}

/// The database name is part of the snapshot's path and tags: a plain
/// name only, as the registry has it.
fn check_database_name(name: &str) -> Result<()> {
    crate::registry::validate_name(name)
}

/// A source whose files stop reading once the run is cancelled, so a
/// cancel does not wait for the whole set to be stored.
struct Cancellable<S> {
    inner: S,
    stop: Arc<AtomicBool>,
}

impl<S: ReadSource> ReadSource for Cancellable<S>
where
    S::Open: Send,
    S::Iter: Send,
{
    type Open = CancellableOpen<S::Open>;
    type Iter = std::iter::Map<
        S::Iter,
        Box<
            dyn Fn(
                    RusticResult<ReadSourceEntry<S::Open>>,
                ) -> RusticResult<ReadSourceEntry<CancellableOpen<S::Open>>>
                + Send
                + Sync,
        >,
    >;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        let stop = self.stop.clone();
        self.inner.entries().map(Box::new(move |entry| {
            entry.map(|e| ReadSourceEntry {
                path: e.path,
                node: e.node,
                open: e.open.map(|open| CancellableOpen {
                    open,
                    stop: stop.clone(),
                }),
            })
        }))
    }
}

struct CancellableOpen<O> {
    open: O,
    stop: Arc<AtomicBool>,
}

impl<O: ReadSourceOpen> ReadSourceOpen for CancellableOpen<O> {
    type Reader = CancellableReader<O::Reader>;
    fn open(self) -> RusticResult<Self::Reader> {
        Ok(CancellableReader {
            inner: self.open.open()?,
            stop: self.stop,
        })
    }
}

struct CancellableReader<R> {
    inner: R,
    stop: Arc<AtomicBool>,
}

impl<R: std::io::Read> std::io::Read for CancellableReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            // Not ErrorKind::Interrupted: readers retry on that.
            return Err(std::io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}
