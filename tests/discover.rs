//! Finding databases to protect without typing a path: real processes
//! started as `correlator` with the options Apama documents, a YAML
//! configuration, and files on disk (backups of them are not offered).
#![cfg(target_os = "linux")]

mod common;

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
