//! Finding databases to protect, so that no one has to type a path: the
//! stores of running correlators (their command lines' `-PstoreLocation` /
//! `-PstoreName`, or the `correlator.persistence` settings of the YAML files
//! they were given with `--config`), and `persistence.db` files in the
//! places Apama installations keep them.
//!
//! It runs as the user, changes nothing and opens no database: a store is
//! described from its folder listing and its 100-byte SQLite header. What it
//! cannot see (another user's process's working folder, an unreadable
//! configuration file) it says, rather than guess.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::store::{self, DEFAULT_STORE_NAME, JournalMode};

/// How a store was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Origin {
    /// A running correlator process.
    Process {
        pid: u32,
        /// Its command line, as the system shows it.
        command: String,
    },
    /// A Windows service that starts a correlator.
    Service { name: String, command: String },
    /// Found on disk, in one of the usual places.
    File,
}

/// A database persnap could protect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found {
    /// The store folder (-PstoreLocation), canonical when it exists.
    pub folder: PathBuf,
    /// The store name (-PstoreName).
    pub store_name: String,
    pub origin: Origin,
    /// The store's files together, when they could be read.
    pub bytes: Option<u64>,
    pub journal_mode: Option<JournalMode>,
    /// Why it could not be looked at more closely (missing yet, unreadable).
    pub note: Option<String>,
}

impl Found {
    /// "correlator (process 4711)", "service ApamaCorrelator", "file".
    pub fn origin_words(&self) -> String {
        match &self.origin {
            Origin::Process { pid, .. } => format!("running correlator (process {pid})"),
            Origin::Service { name, .. } => format!("correlator service {name}"),
            Origin::File => "database file".into(),
        }
    }
}

/// Where a correlator keeps its store, read from its arguments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Persistence {
    pub enabled: bool,
    pub location: Option<String>,
    pub name: Option<String>,
}

impl Persistence {
    /// Later settings win, as the correlator applies them.
    fn merge(&mut self, other: Persistence) {
        self.enabled |= other.enabled;
        if other.location.is_some() {
            self.location = other.location;
        }
        if other.name.is_some() {
            self.name = other.name;
        }
    }
}

/// Whether `argv` starts a correlator (`correlator`, `correlator.exe`,
/// with any folder before it).
pub fn is_correlator(argv: &[String]) -> bool {
    argv.first().is_some_and(|exe| {
        let base = exe.rsplit(['/', '\\']).next().unwrap_or(exe).to_lowercase();
        base == "correlator" || base == "correlator.exe"
    })
}

/// The persistence options of a correlator's command line, and the
/// configuration files it names (`--config FILE`, `--config=FILE`, `-f`
/// is not a config option and is not read). YAML files are read by
/// [`read_config`]; command-line options are applied after them.
pub fn parse_args(argv: &[String]) -> (Persistence, Vec<String>) {
    let mut p = Persistence::default();
    let mut configs = Vec::new();
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--config" {
            if let Some(file) = args.next() {
                configs.push(file.clone());
            }
        } else if let Some(file) = arg.strip_prefix("--config=") {
            configs.push(file.to_owned());
        } else if arg == "-P" || arg == "--persistence" {
            p.enabled = true;
        } else if let Some(option) = arg.strip_prefix("-P") {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            match key {
                "storeLocation" => p.location = Some(value.to_owned()),
                "storeName" => p.name = Some(value.to_owned()),
                "enabled" => p.enabled = value.eq_ignore_ascii_case("true"),
                _ => {}
            }
            if key != "enabled" {
                p.enabled = true;
            }
        }
    }
    (p, configs)
}

/// The longest configuration file read.
pub const MAX_CONFIG: u64 = 1024 * 1024;

/// The `correlator.persistence` settings of one YAML configuration file,
/// with `${PARENT_DIR}` replaced by the file's folder.
///
/// Any user can start a process named `correlator` with `--config` naming
/// any file, and every persnap app on the machine reads it: so the file
/// must be a regular file of at most [`MAX_CONFIG`] (no FIFO, device or
/// link), owned by `owner` (the process's user) or root when one is
/// given, and free of YAML aliases (a kilobyte of nested aliases expands
/// to gigabytes).
pub fn read_config(path: &Path, owner: Option<u32>) -> Result<Persistence, String> {
    let refused = |why: &str| format!("its configuration {} was not read: {why}", path.display());
    let (bytes, meta) = crate::fsutil::read_untrusted_with(path, MAX_CONFIG).map_err(|e| {
        refused(&format!(
            "it cannot be read as a plain file of at most 1 MiB ({e})"
        ))
    })?;
    // Judged from the very file read, not looked up again by path.
    #[cfg(unix)]
    if let Some(owner) = owner {
        use std::os::unix::fs::MetadataExt as _;
        let file_owner = meta.uid();
        if file_owner != owner && file_owner != 0 {
            return Err(refused(
                "it belongs to another user than the correlator's, or to nobody persnap trusts",
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (owner, meta);
    let text = String::from_utf8(bytes).map_err(|_| refused("it is not text"))?;
    if uses_aliases(&text) {
        return Err(refused(
            "it uses YAML anchors or aliases (&name, *name), or nests deeper than 64 levels, which persnap does not read; \
             browse to the store folder instead",
        ));
    }
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .map_err(|e| format!("{} is not YAML ({e})", path.display()))?;
    let parent = path
        .parent()
        .unwrap_or(Path::new("."))
        .to_string_lossy()
        .into_owned();
    let mut p = Persistence::default();
    for doc in docs {
        let section = &doc["correlator"]["persistence"];
        if section.is_badvalue() {
            continue;
        }
        let text_of = |key: &str| {
            let v = &section[key];
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_i64().map(|n| n.to_string()))
                .map(|s| s.replace("${PARENT_DIR}", &parent))
        };
        p.merge(Persistence {
            enabled: section["enabled"].as_bool().unwrap_or(false)
                || section["enabled"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("true")),
            location: text_of("storeLocation"),
            name: text_of("storeName"),
        });
    }
    Ok(p)
}

/// Whether the YAML `text` is one persnap does not read: it names or
/// refers to an anchor (the loader copies every anchored node, so nested
/// anchors blow up as aliases do), nests deeper than [`MAX_YAML_DEPTH`]
/// (the loader recurses: deep nesting overflows the stack), or does not
/// parse (the loader then says why). Read event by event, iteratively.
fn uses_aliases(text: &str) -> bool {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let Ok((event, _)) = parser.next_token() else {
            return false;
        };
        match event {
            Event::StreamEnd => return false,
            Event::Alias(_) => return true,
            Event::Scalar(_, _, anchor, _) if anchor != 0 => return true,
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                depth += 1;
                if anchor != 0 || depth > MAX_YAML_DEPTH {
                    return true;
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// How deep a configuration may nest (Apama's are a handful of levels).
const MAX_YAML_DEPTH: usize = 64;

/// Describe the store `name` in `folder`: size and journal mode, or why not.
pub fn describe(folder: &Path, name: &str, origin: Origin) -> Found {
    let canonical = crate::fsutil::canonicalize(folder).unwrap_or_else(|_| folder.to_owned());
    let mut found = Found {
        folder: canonical,
        store_name: name.to_owned(),
        origin,
        bytes: None,
        journal_mode: None,
        note: None,
    };
    match store::discover(&found.folder, name) {
        Ok(s) => {
            found.bytes = Some(s.total_bytes());
            found.journal_mode = Some(s.journal_mode());
        }
        Err(e) => found.note = Some(e.to_string()),
    }
    found
}

/// The store of one running correlator, from its command line (`argv`)
/// and working folder (`cwd`, when it could be read), or why it cannot be
/// told.
pub fn from_command_line(
    argv: &[String],
    cwd: Option<&Path>,
    owner: Option<u32>,
    origin: Origin,
) -> Option<Found> {
    let (mut p, configs) = parse_args(argv);
    let mut notes = Vec::new();
    let resolve = |path: &str| -> Option<PathBuf> {
        let path = Path::new(path);
        if path.is_absolute() {
            Some(path.to_owned())
        } else {
            cwd.map(|cwd| cwd.join(path))
        }
    };
    // The files come first; the command line's own -P options win.
    let mut from_files = Persistence::default();
    for config in &configs {
        let Some(file) = resolve(config) else {
            notes.push(format!(
                "its configuration {config} is relative to a working folder persnap cannot see"
            ));
            continue;
        };
        let files = if file.is_dir() {
            let mut yaml: Vec<PathBuf> = fs::read_dir(&file)
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            yaml.retain(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml"));
            yaml.sort();
            yaml
        } else {
            vec![file]
        };
        for file in files {
            match read_config(&file, owner) {
                Ok(fp) => from_files.merge(fp),
                Err(e) => notes.push(e),
            }
        }
    }
    from_files.merge(std::mem::take(&mut p));
    let p = from_files;
    if !p.enabled && p.location.is_none() {
        return None;
    }
    let name = p.name.clone().unwrap_or_else(|| DEFAULT_STORE_NAME.into());
    // No location: the correlator's working folder.
    let location = p.location.clone().unwrap_or_else(|| ".".into());
    let Some(folder) = resolve(&location) else {
        return Some(Found {
            folder: PathBuf::from(location),
            store_name: name,
            origin,
            bytes: None,
            journal_mode: None,
            note: Some(
                "its store folder is relative to the correlator's working folder, which only its own user or an administrator can see; browse to the folder instead"
                    .into(),
            ),
        });
    };
    let mut found = describe(&folder, &name, origin);
    if !notes.is_empty() {
        let extra = notes.join("; ");
        found.note = Some(match found.note {
            Some(n) => format!("{n} ({extra})"),
            None => extra,
        });
    }
    Some(found)
}

/// Running correlators on this machine (Linux: `/proc`; Windows: the
/// correlator services, below).
#[cfg(target_os = "linux")]
pub fn running() -> Vec<Found> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !is_correlator(&argv) {
            continue;
        }
        let cwd = fs::read_link(entry.path().join("cwd")).ok();
        let owner = crate::sys::owner_of(&entry.path());
        let origin = Origin::Process {
            pid,
            command: argv.join(" "),
        };
        if let Some(f) = from_command_line(&argv, cwd.as_deref(), owner, origin) {
            found.push(f);
        }
    }
    found
}

/// Correlators installed as Windows services (running or not), by the
/// command line each service starts. Relative folders are resolved
/// against the correlator's own folder (services start in System32, so a
/// relative store there is said, not guessed).
#[cfg(windows)]
pub fn running() -> Vec<Found> {
    crate::sys::service_command_lines()
        .into_iter()
        .filter_map(|(name, line)| {
            let argv = crate::sys::split_command_line(&line);
            if !is_correlator(&argv) {
                return None;
            }
            let origin = Origin::Service {
                name,
                command: line,
            };
            from_command_line(&argv, None, None, origin)
        })
        .collect()
}

#[cfg(not(any(target_os = "linux", windows)))]
pub fn running() -> Vec<Found> {
    Vec::new()
}

/// The usual places Apama stores live, for [`search`]; `PERSNAP_SEARCH_PATH`
/// (folders separated as in `PATH`) replaces them.
pub fn usual_places() -> Vec<PathBuf> {
    if let Some(paths) = std::env::var_os("PERSNAP_SEARCH_PATH") {
        return std::env::split_paths(&paths).collect();
    }
    #[cfg(windows)]
    let mut places: Vec<PathBuf> = [
        r"C:\ProgramData",
        r"C:\SoftwareAG",
        r"C:\Program Files\SoftwareAG",
        r"C:\Program Files\Software AG",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    #[cfg(not(windows))]
    let mut places: Vec<PathBuf> = ["/var/lib", "/opt", "/srv", "/data"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(home) = directories::UserDirs::new().map(|u| u.home_dir().to_owned()) {
        places.push(home);
    }
    places
}

/// How deep [`search`] looks under each place, and how many folders in all.
const SEARCH_DEPTH: usize = 6;
const SEARCH_FOLDERS: usize = 20_000;

/// `persistence.db` files under `places` (not following links, not into
/// hidden or system folders), at most [`SEARCH_DEPTH`] levels down.
pub fn search(places: &[PathBuf]) -> Vec<Found> {
    let mut found = Vec::new();
    let mut budget = SEARCH_FOLDERS;
    for place in places {
        walk(place, 0, &mut budget, &mut found);
    }
    found
}

fn walk(dir: &Path, depth: usize, budget: &mut usize, found: &mut Vec<Found>) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let entries: Vec<fs::DirEntry> = entries.filter_map(|e| e.ok()).collect();
    // A persnap backup holds a persistence.db too: not a database to protect.
    if entries.iter().any(|e| e.file_name() == "manifest.json") {
        return;
    }
    let mut subdirs = Vec::new();
    for entry in entries {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_file() && name == DEFAULT_STORE_NAME {
            found.push(describe(dir, DEFAULT_STORE_NAME, Origin::File));
        } else if kind.is_dir() && depth < SEARCH_DEPTH && !skipped(&name) {
            subdirs.push(entry.path());
        }
    }
    subdirs.sort();
    for sub in subdirs {
        walk(&sub, depth + 1, budget, found);
    }
}

/// Folders no store lives in, or that persnap itself makes.
fn skipped(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with("before-restore-")
        // A backup being written (its manifest comes last).
        || name.ends_with(crate::names::PARTIAL_SUFFIX)
        || [
            "node_modules",
            "proc",
            "sys",
            "Windows",
            "$Recycle.Bin",
            "snap",
            "cache",
            "Cache",
        ]
        .contains(&name)
}

/// Everything found: running correlators first, then files on disk not
/// already named by one, each store once.
pub fn everything() -> Vec<Found> {
    merge(running(), search(&usual_places()))
}

/// Running first; a file already found through a process is not repeated.
pub fn merge(running: Vec<Found>, files: Vec<Found>) -> Vec<Found> {
    let mut seen: BTreeMap<(PathBuf, String), ()> = BTreeMap::new();
    let mut out = Vec::new();
    for f in running.into_iter().chain(files) {
        if seen
            .insert((f.folder.clone(), f.store_name.clone()), ())
            .is_none()
        {
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A correlator service, made through the real service manager (wine's
    /// under the Windows tests), is found with its store; none other is.
    #[cfg(windows)]
    #[test]
    fn correlator_services_are_found_by_their_command_lines() {
        use crate::sys::wide;
        use winapi::um::winnt::{
            DELETE, SERVICE_DEMAND_START, SERVICE_ERROR_NORMAL, SERVICE_WIN32_OWN_PROCESS,
        };
        use winapi::um::winsvc::{
            CloseServiceHandle, CreateServiceW, DeleteService, OpenSCManagerW,
            SC_MANAGER_CREATE_SERVICE,
        };
        let name = format!("persnap-test-correlator-{}", std::process::id());
        let line = r#""C:\Program Files\Software AG\Apama\bin\correlator.exe" --name orders -PstoreLocation=C:\apama\orders -PstoreName=orders.db"#;
        // SAFETY: plain service manager calls; handles closed below.
        let service = unsafe {
            let manager = OpenSCManagerW(
                std::ptr::null(),
                std::ptr::null(),
                SC_MANAGER_CREATE_SERVICE,
            );
            assert!(!manager.is_null(), "the service manager");
            let service = CreateServiceW(
                manager,
                wide(&name).as_ptr(),
                wide("persnap test correlator").as_ptr(),
                DELETE,
                SERVICE_WIN32_OWN_PROCESS,
                SERVICE_DEMAND_START,
                SERVICE_ERROR_NORMAL,
                wide(line).as_ptr(),
                std::ptr::null(),
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
            );
            CloseServiceHandle(manager);
            assert!(!service.is_null(), "a service was made");
            service
        };
        let found = running();
        let services = crate::sys::service_command_lines();
        // SAFETY: the handle made above, opened with DELETE.
        unsafe {
            DeleteService(service);
            CloseServiceHandle(service);
        }
        assert!(
            services.len() > found.len(),
            "the other services were looked at and left out: {services:?}"
        );
        let mine: Vec<&Found> = found
            .iter()
            .filter(|f| matches!(&f.origin, Origin::Service { name: n, .. } if *n == name))
            .collect();
        assert_eq!(mine.len(), 1, "{found:?}");
        assert_eq!(mine[0].folder, PathBuf::from(r"C:\apama\orders"));
        assert_eq!(mine[0].store_name, "orders.db");
        assert_eq!(mine[0].origin_words(), format!("correlator service {name}"));
    }

    fn argv(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn command_lines_say_where_the_store_is() {
        assert!(is_correlator(&argv(
            "/opt/softwareag/Apama/bin/correlator -p 15903"
        )));
        assert!(is_correlator(&argv(
            r"C:\SoftwareAG\Apama\bin\correlator.exe -P"
        )));
        assert!(!is_correlator(&argv("/usr/bin/grep correlator")));
        let (p, configs) = parse_args(&argv(
            "correlator -P -PstoreLocation=/srv/store -PstoreName=orders.db --config a.yaml --config=b.yaml",
        ));
        assert_eq!(
            p,
            Persistence {
                enabled: true,
                location: Some("/srv/store".into()),
                name: Some("orders.db".into()),
            }
        );
        assert_eq!(configs, ["a.yaml", "b.yaml"]);
        let (p, _) = parse_args(&argv("correlator -p 15903"));
        assert!(!p.enabled, "no persistence option: nothing to protect");
    }

    #[test]
    fn yaml_configuration_is_read_with_parent_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("correlator.yaml");
        fs::write(
            &file,
            "correlator:\n  persistence:\n    enabled: true\n    storeLocation: ${PARENT_DIR}/store\n    storeName: mystore.db\n",
        )
        .unwrap();
        let p = read_config(&file, None).unwrap();
        assert!(p.enabled);
        assert_eq!(
            p.location.as_deref(),
            Some(format!("{}/store", dir.path().display()).as_str())
        );
        assert_eq!(p.name.as_deref(), Some("mystore.db"));
        fs::write(&file, "correlator: [unclosed").unwrap();
        assert!(read_config(&file, None).unwrap_err().contains("not YAML"));
        // A kilobyte of nested aliases (billions of nodes once expanded).
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..26 {
            let (prev, this) = ((b'a' + i - 1) as char, (b'a' + i) as char);
            bomb.push_str(&format!(
                "{this}: &{this} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        fs::write(&file, &bomb).unwrap();
        assert!(read_config(&file, None).unwrap_err().contains("aliases"));
        // Anchors alone are copied by the loader too: nested, they blow up.
        fs::write(
            &file,
            "a: &a [&b [&c [x, x, x]]]\ncorrelator: {persistence: {enabled: true}}\n",
        )
        .unwrap();
        assert!(read_config(&file, None).unwrap_err().contains("anchors"));
        // The loader recurses: 400,000 levels of nesting would overflow
        // the stack of every app that lists correlators.
        fs::write(&file, format!("{}x\n", "- ".repeat(400_000))).unwrap();
        assert!(
            read_config(&file, None)
                .unwrap_err()
                .contains("nests deeper")
        );
    }

    #[test]
    fn a_relative_store_without_a_visible_working_folder_says_so() {
        let f = from_command_line(
            &argv("correlator -PstoreLocation=store"),
            None,
            None,
            Origin::File,
        )
        .unwrap();
        assert!(f.note.unwrap().contains("working folder"));
        assert!(f.bytes.is_none());
    }

    /// A backup persnap is writing (its `.partial` folder, manifest still
    /// to come) is not a database to protect; the store beside it is.
    #[test]
    fn backups_being_written_are_not_offered() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let partial = dir
            .path()
            .join("backups/persistence.db-20261206T020000Z-1a2b3c4d.partial");
        for folder in [&store, &partial] {
            fs::create_dir_all(folder).unwrap();
            fs::write(folder.join(DEFAULT_STORE_NAME), b"SQLite format 3\0").unwrap();
        }
        let found = search(&[dir.path().to_owned()]);
        let folders: Vec<&Path> = found.iter().map(|f| f.folder.as_path()).collect();
        assert_eq!(folders, [store.as_path()]);
    }

    #[test]
    fn merge_keeps_each_store_once_running_first() {
        let a = |origin| Found {
            folder: "/srv/store".into(),
            store_name: "persistence.db".into(),
            origin,
            bytes: None,
            journal_mode: None,
            note: None,
        };
        let out = merge(
            vec![a(Origin::Process {
                pid: 1,
                command: "correlator".into(),
            })],
            vec![a(Origin::File)],
        );
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0].origin, Origin::Process { .. }));
    }
}
