//! Looking before leaping: what a backup would do, and whether a snapshot
//! can really be taken ("Test snapshot": create one and remove it again,
//! copying nothing).

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backup::{self, BackupRequest};
use crate::error::{Error, Result};
use crate::fsutil::RunLock;
use crate::method::Method;
use crate::snapshot::{self, SnapshotGuard, SnapshotOptions};
use crate::store::{self, Store};
use crate::volume::{self, VolumeInfo};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub store: Store,
    pub volume: VolumeInfo,
    /// The method a backup would use, if one applies.
    pub method: Option<Method>,
    /// The steps a backup would run, in words (needs a backup location).
    pub steps: Vec<String>,
    /// Warnings to show before starting (space, same disk).
    pub warnings: Vec<String>,
    /// Free bytes at the backup location, and bytes the backup needs there.
    pub dest_space: Option<(u64, u64)>,
    /// Why a backup cannot run, if it cannot.
    pub blocked: Option<String>,
    /// The result of the test snapshot, if one was asked for.
    pub test_snapshot: Option<std::result::Result<String, String>>,
    /// The name it is registered under, if it is a protected database (its
    /// backups then need only the backup permission); filled in by the
    /// front end from the registry it reads ([`ProbeReport::look_up`]).
    #[serde(default)]
    pub protected_as: Option<String>,
}

impl ProbeReport {
    /// Say whether the store is a protected database in `registry`.
    pub fn look_up(mut self, registry: &crate::registry::Registry) -> ProbeReport {
        self.protected_as = registry
            .find(&self.store.dir, &self.store.name)
            .ok()
            .flatten()
            .map(|db| db.name);
        self
    }
}

/// Inspect `req` (the destination only if `dest_given`), changing nothing
/// unless `test_snapshot` asks for a snapshot to be made and removed.
pub fn probe(req: &BackupRequest, dest_given: bool, test_snapshot: bool) -> Result<ProbeReport> {
    let source = volume::canonical(&req.source)?;
    let store = store::discover(&source, &req.store_name)?;
    let volume = volume::probe(&source)?;
    let mut report = ProbeReport {
        store,
        volume,
        method: None,
        steps: Vec::new(),
        warnings: Vec::new(),
        dest_space: None,
        blocked: None,
        test_snapshot: None,
        protected_as: None,
    };

    match snapshot::choose_method(req.method, &report.volume) {
        Ok(method) => report.method = Some(method),
        Err(e) => report.blocked = Some(e.to_string()),
    }
    if dest_given && report.blocked.is_none() {
        match backup::plan(req) {
            Ok(plan) => {
                report.steps = plan.describe_steps();
                report.warnings = plan.warnings();
                report.dest_space = Some((plan.free_bytes, plan.needed_bytes));
            }
            Err(e) => report.blocked = Some(e.to_string()),
        }
    }
    if test_snapshot {
        report.test_snapshot = Some(match report.method {
            Some(m) if m.is_snapshot() => {
                try_snapshot(&report.volume, m, &req.snapshot, &req.store_name)
                    .map_err(|e| e.to_string())
            }
            Some(_) => Err("The sqlite-online method takes no snapshot.".into()),
            None => Err(report.blocked.clone().unwrap_or_default()),
        });
    }
    Ok(report)
}

/// Create a snapshot, check the store is visible in it, remove it.
pub fn try_snapshot(
    volume: &VolumeInfo,
    method: Method,
    options: &SnapshotOptions,
    store_name: &str,
) -> Result<String> {
    let started = Instant::now();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let _lock = RunLock::acquire(&tag).map_err(Error::io(
        "create the run lock",
        Path::new("/run/persnap"),
        "Check that /run is writable.",
    ))?;
    let provider = snapshot::provider(method, options, store_name)?;
    let mut guard = SnapshotGuard::new(provider.create(volume, &tag)?);
    let id = guard.id().to_owned();
    let (seen, files) = guard.open_store(store_name)?;
    // Closed before the snapshot goes (a mounted one cannot go while open).
    drop(files);
    guard.check_valid()?;
    let held = guard.held_still();
    guard.release()?;
    let held = held
        .map(|h| {
            format!(
                " The database was held still for {:.1} ms.",
                h.as_secs_f64() * 1000.0
            )
        })
        .unwrap_or_default();
    Ok(format!(
        "Snapshot OK: created {id}, found {} ({} files) in it, removed it again, in {:.1} s.{held}",
        seen.name,
        seen.files.len(),
        started.elapsed().as_secs_f64()
    ))
}
