//! Finding databases to protect without typing a path: real processes
//! started as `correlator` with the options Apama documents, a YAML
//! configuration, and files on disk (backups of them are not offered).
#![cfg(target_os = "linux")]

use crate::common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use persnap::discover::{self, Origin};
use persnap::store::JournalMode;

/// `persnap-loadgen` started under the name `correlator`: a process that
/// looks like one to the system and writes its store.
struct Correlator(Child);

impl Correlator {
    fn start(cwd: &Path, args: &[&str]) -> Correlator {
        Self::start_with(cwd, args, None)
    }

    /// `store`: where its (unread) configuration puts the store.
    fn start_with(cwd: &Path, args: &[&str], store: Option<&Path>) -> Correlator {
        let mut cmd = Command::new(bin("persnap-loadgen"));
        if let Some(store) = store {
            cmd.env("LOADGEN_STORE_LOCATION", store);
        }
        let child = cmd
            .arg0("correlator")
            .args(args)
            .current_dir(cwd)
            .spawn()
            .unwrap();
        Correlator(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Correlator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn running_correlators_are_found_by_their_options_and_configuration() {
    let work = tempfile::tempdir().unwrap();
    // One with a relative -PstoreLocation (from its working folder) and a name.
    let a = Correlator::start(
        work.path(),
        &["-P", "-PstoreLocation=store-a", "-PstoreName=orders.db"],
    );
    // One configured only by a YAML file next to it, with ${PARENT_DIR}.
    let config_dir = work.path().join("conf");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("correlator.yaml"),
        "correlator:\n  persistence:\n    enabled: true\n    storeLocation: ${PARENT_DIR}/../store-b\n",
    )
    .unwrap();
    let b = Correlator::start_with(
        work.path(),
        &["--config", "conf/correlator.yaml"],
        Some(&work.path().join("store-b")),
    );
    // A process that merely mentions a correlator is not one.
    let mut grep = Command::new("sleep")
        .args(["30", "-PstoreLocation=/nowhere"])
        .spawn()
        .unwrap();
    wait_for(&work.path().join("store-a/orders.db"));
    wait_for(&work.path().join("store-b/persistence.db"));

    let found = discover::running();
    let _ = grep.kill();
    let _ = grep.wait();
    let canonical = |p: &str| persnap::fsutil::canonicalize(&work.path().join(p)).unwrap();
    let of = |pid: u32| {
        found
            .iter()
            .find(|f| matches!(f.origin, Origin::Process { pid: p, .. } if p == pid))
            .unwrap_or_else(|| panic!("process {pid} not found in {found:#?}"))
    };
    let fa = of(a.pid());
    assert_eq!(fa.folder, canonical("store-a"));
    assert_eq!(fa.store_name, "orders.db");
    assert_eq!(fa.journal_mode, Some(JournalMode::Rollback));
    assert!(fa.bytes.unwrap() > 0);
    assert_eq!(fa.note, None);
    let fb = of(b.pid());
    assert_eq!(
        fb.folder,
        canonical("store-b"),
        "the YAML's ${{PARENT_DIR}} was applied"
    );
    assert_eq!(fb.store_name, "persistence.db");
    assert!(
        !found.iter().any(|f| f.folder == Path::new("/nowhere")),
        "only correlators count: {found:#?}"
    );

    // The CLI lists them, as a person would see them.
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(bin("persnap"))
        .args(["database", "find"])
        .env("PERSNAP_DATA_DIR", data.path())
        .env("PERSNAP_SEARCH_PATH", work.path())
        .env("PERSNAP_REGISTRY_DIR", data.path().join("registry"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with(canonical("store-a").to_str().unwrap()))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("orders.db")
            && line.contains("rollback journal")
            && line.contains(&format!("running correlator (process {})", a.pid()))
            && line.ends_with("not protected"),
        "{line}"
    );
    // store-b was found running, and is not listed a second time as a file.
    let b_lines = text
        .lines()
        .filter(|l| l.starts_with(canonical("store-b").to_str().unwrap()))
        .count();
    assert_eq!(b_lines, 1, "{text}");
}

#[test]
fn files_in_the_usual_places_are_found_but_not_backups_of_them() {
    let place = tempfile::tempdir().unwrap();
    let store = place.path().join("apama/work/store");
    std::fs::create_dir_all(&store).unwrap();
    make_store(&store, "persistence.db", persnap::loadgen::Mode::Wal, 1);
    // A backup set beside it holds a persistence.db and a manifest.
    let backup = place
        .path()
        .join("backups/persistence.db-20261201T020000Z-1a2b3c4d");
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::copy(store.join("persistence.db"), backup.join("persistence.db")).unwrap();
    std::fs::write(backup.join("manifest.json"), "{}").unwrap();
    // Hidden folders are not searched.
    let hidden = place.path().join(".cache/store");
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::copy(store.join("persistence.db"), hidden.join("persistence.db")).unwrap();

    let found = discover::search(&[place.path().to_owned()]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].folder,
        persnap::fsutil::canonicalize(&store).unwrap()
    );
    assert_eq!(found[0].journal_mode, Some(JournalMode::Wal));
    assert!(matches!(found[0].origin, Origin::File));
}

/// Any user can start a process named `correlator` whose `--config` names
/// a file built to hurt whoever reads it: a kilobyte of nested YAML
/// aliases, a FIFO, `/dev/zero`. Discovery, in a process limited to 1 GiB
/// of address space, still lists each correlator and says its
/// configuration was not read.
#[test]
fn hostile_configurations_are_refused_and_the_correlator_still_listed() {
    let work = tempfile::tempdir().unwrap();
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..26u8 {
        let (prev, this) = ((b'a' + i - 1) as char, (b'a' + i) as char);
        bomb.push_str(&format!(
            "{this}: &{this} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    bomb.push_str("correlator:\n  persistence:\n    enabled: true\n    storeName: *z\n");
    assert!(bomb.len() < 1500, "a kilobyte or so: {}", bomb.len());
    std::fs::write(work.path().join("bomb.yaml"), &bomb).unwrap();
    let fifo = work.path().join("fifo.yaml");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let stores = ["store-bomb", "store-fifo", "store-zero"];
    let configs = ["bomb.yaml", "fifo.yaml", "/dev/zero"];
    let running: Vec<Correlator> = stores
        .iter()
        .zip(configs)
        .map(|(store, config)| {
            Correlator::start(
                work.path(),
                &["--config", config, &format!("-PstoreLocation={store}")],
            )
        })
        .collect();
    for store in stores {
        wait_for(&work.path().join(store).join("persistence.db"));
    }
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("persnap"));
    cmd.args(["database", "find"])
        .env("PERSNAP_DATA_DIR", data.path())
        .env("PERSNAP_SEARCH_PATH", data.path())
        .env("PERSNAP_REGISTRY_DIR", data.path().join("registry"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("discovery hung on a hostile configuration");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (text, notes) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    for (store, config) in stores.iter().zip(configs) {
        let folder = persnap::fsutil::canonicalize(&work.path().join(store)).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(folder.to_str().unwrap())),
            "{store} listed: {text}"
        );
        assert!(
            notes.lines().any(|l| l.contains(folder.to_str().unwrap())
                && l.contains("configuration")
                && l.contains(config)
                && l.contains("was not read")),
            "{store}: its configuration refused, in words: {notes}"
        );
    }
    drop(running);
}
