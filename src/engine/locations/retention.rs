//! Retention: which old backups of a store may go, per backup location.
//!
//! A policy keeps the newest `keep_last` good backups and every backup
//! newer than `keep_days`; a backup kept by either rule stays. Whatever the
//! policy, the newest good backup is never deleted, a backup whose manifest
//! cannot be read or whose verification did not pass is never touched
//! (persnap does not judge what it cannot read), and folders that are not
//! persnap backups of this store are ignored; a pinned backup (see `pin`)
//! is never deleted. It is applied only after a
//! successful, verified backup, or on request (`persnap prune`, with
//! `--dry-run` to list what would go).
//!
//! Deleting renames the folder to `.persnap-deleting-…` first, so a crash
//! mid-delete never leaves a half-deleted folder that looks like a backup.
//!
//! Retention judges and deletes only folders made by whoever applies it
//! (their owner is this process's user), reads manifests without following
//! links or blocking on a FIFO, and refuses to act at all when the pins
//! folder is not a plain folder of that same user — so nobody else's
//! folders can count as "the newest backups" and push the real ones out.
//! That is all it can do in a folder others may rename in: there, pins
//! keyed by name can be moved away. A protected database's location is
//! therefore its owner's alone (see `backup::location_writer`).

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, HINT_DEST, Result};
use crate::manifest;

pub use crate::names::{DELETING_PREFIX, DELETION_MARKER};

/// How many backups to keep. `None` in both: keep everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep the newest N good backups.
    pub keep_last: Option<u32>,
    /// Keep every backup finished within the last D days.
    pub keep_days: Option<u32>,
}

impl RetentionPolicy {
    pub fn is_keep_all(&self) -> bool {
        self.keep_last.is_none() && self.keep_days.is_none()
    }

    /// In words, for plans and settings.
    pub fn describe(&self) -> String {
        match (self.keep_last, self.keep_days) {
            (None, None) => "keep every backup".into(),
            (Some(n), None) => format!("keep the newest {n} backups"),
            (None, Some(d)) => format!("keep the backups of the last {d} days"),
            (Some(n), Some(d)) => {
                format!("keep the newest {n} backups and all of the last {d} days")
            }
        }
    }
}

/// A backup folder found at a location.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub path: PathBuf,
    pub finished: DateTime<Utc>,
    /// The manifest says the verification passed.
    pub good: bool,
    /// Pinned with a note (see `pin`): never deleted.
    pub pinned: bool,
    /// Asked for by an operator ("Back up now" at the backup level): such
    /// backups are counted apart, so clicks never push out the schedule's.
    pub on_request: bool,
}

/// The candidates `policy` lets go, given the time `now`. Pure: the rules
/// in one place, tested over random histories. Backups an operator asked
/// for and all others are two sets, each kept by the policy on its own.
pub fn to_delete<'a>(
    policy: &RetentionPolicy,
    candidates: &'a [Candidate],
    now: DateTime<Utc>,
) -> Vec<&'a Candidate> {
    if policy.is_keep_all() {
        return Vec::new();
    }
    let (asked, rest): (Vec<&Candidate>, Vec<&Candidate>) =
        candidates.iter().partition(|c| c.on_request);
    let mut doomed = to_delete_among(policy, rest, now);
    doomed.extend(to_delete_among(policy, asked, now));
    doomed
}

fn to_delete_among<'a>(
    policy: &RetentionPolicy,
    candidates: Vec<&'a Candidate>,
    now: DateTime<Utc>,
) -> Vec<&'a Candidate> {
    let mut good: Vec<&Candidate> = candidates.into_iter().filter(|c| c.good).collect();
    good.sort_by_key(|c| std::cmp::Reverse(c.finished));
    let keep_last = policy.keep_last.unwrap_or(0).max(1) as usize;
    let kept_by_count: Vec<&PathBuf> = good.iter().take(keep_last).map(|c| &c.path).collect();
    let cutoff = policy.keep_days.map(|d| now - Duration::days(i64::from(d)));
    good.into_iter()
        .filter(|c| !kept_by_count.contains(&&c.path))
        .filter(|c| cutoff.is_none_or(|cutoff| c.finished < cutoff))
        .filter(|c| !c.pinned)
        .collect()
}

/// The persnap backups of `store_name` in `dest`: folders named
/// `<store>-<time>-<id>`, made by this process's user, holding a manifest
/// for that store. Folders whose manifest cannot be read are reported as
/// not good; folders someone else made are not backups of ours at all.
pub fn candidates(dest: &Path, store_name: &str) -> Result<Vec<Candidate>> {
    candidates_of(dest, store_name, None)
}

/// [`candidates`] of the database in `source` only (`None`: of any
/// database with that store name): databases that share a location and a
/// store name never prune each other.
pub fn candidates_of(
    dest: &Path,
    store_name: &str,
    source: Option<&Path>,
) -> Result<Vec<Candidate>> {
    let same_source = |dir: &Path| {
        source.is_none_or(|source| {
            dir == source
                || crate::fsutil::canonicalize(dir)
                    .is_ok_and(|d| crate::fsutil::canonicalize(source).is_ok_and(|s| d == s))
        })
    };
    let entries = fs::read_dir(dest).map_err(Error::io("read", dest, HINT_DEST))?;
    let prefix = format!("{store_name}-");
    let mut found = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if !is_dir || !name.starts_with(&prefix) || name.ends_with(crate::names::PARTIAL_SUFFIX) {
            continue;
        }
        if !crate::sys::made_by_me(&path) {
            continue;
        }
        if fs::symlink_metadata(path.join(manifest::MANIFEST_NAME)).is_err() {
            continue;
        }
        let candidate = match manifest::read(&path) {
            Ok(m) if m.store_name == store_name && same_source(&m.source_dir) => Candidate {
                pinned: crate::pin::is_pinned(&path),
                path,
                finished: m.finished,
                good: m.verification.integrity == "ok",
                on_request: m.on_request,
            },
            Ok(_) => continue,
            Err(_) => Candidate {
                pinned: crate::pin::is_pinned(&path),
                path,
                finished: DateTime::<Utc>::MIN_UTC,
                good: false,
                on_request: false,
            },
        };
        found.push(candidate);
    }
    Ok(found)
}

/// Apply `policy` to the backups of `store_name` in `dest`. With `dry_run`
/// nothing is deleted. Returns the folders deleted (or that would be).
pub fn apply(
    dest: &Path,
    store_name: &str,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<Vec<PathBuf>> {
    apply_to(dest, store_name, None, policy, dry_run)
}

/// [`apply`] to the backups of the database in `source` only.
pub fn apply_to(
    dest: &Path,
    store_name: &str,
    source: Option<&Path>,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<Vec<PathBuf>> {
    let found = candidates_of(dest, store_name, source)?;
    crate::pin::check_pins_folder(dest)?;
    let doomed: Vec<PathBuf> = to_delete(policy, &found, Utc::now())
        .into_iter()
        .map(|c| c.path.clone())
        .collect();
    if dry_run {
        return Ok(doomed);
    }
    for path in &doomed {
        remove_backup(path)?;
    }
    Ok(doomed)
}

/// Mark `path` as being deleted by us (the marker inside: only its owner
/// can write there), set it aside, then delete it, the marker last — so an
/// interrupted deletion is finished by the next sweep, and a folder someone
/// else renamed to look like one is not.
fn remove_backup(path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .expect("backup folders have names")
        .to_string_lossy();
    let marker = path.join(DELETION_MARKER);
    fs::write(&marker, b"").map_err(Error::io("mark for deletion", path, HINT_DEST))?;
    let doomed = path.with_file_name(format!("{DELETING_PREFIX}{name}"));
    crate::fsutil::rename(path, &doomed).map_err(Error::io(
        "set aside for deletion",
        path,
        HINT_DEST,
    ))?;
    finish_deleting(&doomed).map_err(Error::io("delete", &doomed, HINT_DEST))
}

/// Delete a folder set aside by [`remove_backup`]: everything but the
/// deletion marker, then the marker, then the folder.
pub fn finish_deleting(doomed: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(doomed)? {
        let entry = entry?;
        if entry.file_name() == DELETION_MARKER {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    match fs::remove_file(doomed.join(DELETION_MARKER)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    fs::remove_dir(doomed)
}

/// Whether `dir` (named `.persnap-deleting-<backup>`) is a deletion of ours
/// that was interrupted: made by us, marked by us from inside (or already
/// empty), and not the set-aside name of a pinned backup.
pub fn interrupted_deletion(dir: &Path) -> bool {
    let Some(original) = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(DELETING_PREFIX))
    else {
        return false;
    };
    let is_dir = fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    if !is_dir
        || !crate::sys::made_by_me(dir)
        || crate::pin::is_pinned(&dir.with_file_name(original))
    {
        return false;
    }
    let marker = dir.join(DELETION_MARKER);
    let marked =
        fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file()) && crate::sys::made_by_me(&marker);
    marked || fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator (splitmix64): reproducible random
    /// histories without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn history(rng: &mut Rng, now: DateTime<Utc>) -> Vec<Candidate> {
        (0..rng.below(30))
            .map(|i| Candidate {
                path: PathBuf::from(format!("/b/persistence.db-{i}")),
                finished: now - Duration::minutes(rng.below(60 * 24 * 90) as i64),
                good: rng.below(5) != 0,
                pinned: rng.below(7) == 0,
                on_request: rng.below(3) == 0,
            })
            .collect()
    }

    fn policy(rng: &mut Rng) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: (rng.below(3) != 0).then(|| rng.below(6) as u32),
            keep_days: (rng.below(3) != 0).then(|| rng.below(40) as u32),
        }
    }

    #[test]
    fn retention_properties_hold_over_random_histories() {
        let now = Utc::now();
        let mut rng = Rng(0x5eed);
        for _ in 0..5000 {
            let backups = history(&mut rng, now);
            let policy = policy(&mut rng);
            let doomed = to_delete(&policy, &backups, now);
            for asked in [false, true] {
                let newest_good = backups
                    .iter()
                    .filter(|c| c.good && c.on_request == asked)
                    .max_by_key(|c| c.finished);
                if let Some(newest) = newest_good {
                    assert!(
                        !doomed.iter().any(|d| d.path == newest.path),
                        "the newest good backup of each kind stays: {policy:?}"
                    );
                }
            }
            assert!(
                doomed.iter().all(|d| d.good),
                "only verified backups are ever deleted"
            );
            assert!(
                doomed.iter().all(|d| !d.pinned),
                "a pinned backup is never deleted"
            );
            if policy.is_keep_all() {
                assert!(doomed.is_empty(), "no policy, nothing deleted");
                continue;
            }
            for asked in [false, true] {
                // Each kind is ranked on its own: an operator's clicks never
                // push out the schedule's backups.
                let mut good: Vec<&Candidate> = backups
                    .iter()
                    .filter(|c| c.good && c.on_request == asked)
                    .collect();
                good.sort_by_key(|c| std::cmp::Reverse(c.finished));
                for (rank, c) in good.iter().enumerate() {
                    let deleted = doomed.iter().any(|d| d.path == c.path);
                    let by_count = policy.keep_last.is_some_and(|n| rank < n as usize);
                    let by_age = policy
                        .keep_days
                        .is_some_and(|d| c.finished >= now - Duration::days(i64::from(d)));
                    if by_count || by_age || c.pinned {
                        assert!(!deleted, "kept by a rule: rank {rank}, {policy:?}");
                    } else if rank > 0 {
                        assert!(deleted, "kept by no rule must go: rank {rank}, {policy:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn policies_read_plainly() {
        let p = RetentionPolicy {
            keep_last: Some(7),
            keep_days: Some(30),
        };
        assert_eq!(
            p.describe(),
            "keep the newest 7 backups and all of the last 30 days"
        );
        assert_eq!(RetentionPolicy::default().describe(), "keep every backup");
    }
}
