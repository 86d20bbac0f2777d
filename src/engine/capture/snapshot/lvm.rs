//! LVM provider: a snapshot of the logical volume holding the folder — the
//! vendor's documented Linux method.
//!
//! * Finding the LV: the mount's device number is looked up in sysfs
//!   (`/sys/dev/block/MAJ:MIN/dm/uuid` starts with `LVM-` for logical
//!   volumes; `dm/name` is `VG-LV` with dashes inside names doubled), then
//!   `lvs` reports its size and type.
//! * Size: classic snapshots need room for the blocks that change during the
//!   backup; [`choose_size`] takes a fifth of the origin (at least 1 GiB,
//!   never more than the origin), bounded by the volume group's free space,
//!   or `--snapshot-size`. Thin volumes get a thin snapshot in their pool
//!   (no size; activation skip turned off so it can be mounted).
//! * No freeze: `lvcreate -s` suspends the device, and device-mapper freezes
//!   the filesystem for the suspend. An extra `fsfreeze` around it makes
//!   lvcreate fail on current kernels.
//! * The snapshot is mounted read-only (xfs `nouuid,norecovery`, ext4
//!   `noload`) in a private mount namespace ([`super::mount`]). After the
//!   copy, `lvs` must show it still valid: an overflowed snapshot fails the
//!   backup.
//! * Teardown: unmount, then `lvremove` — but only of a volume that carries
//!   the persnap tag AND has an origin, so the real volume can never be
//!   removed. The sweep removes tagged snapshots and mounts of dead runs.
//!
//! All lvm calls go through [`crate::tool`]: absolute path, clean
//! environment, time limit, JSON reports.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::mount::{self, MOUNT_PREFIX, MOUNT_ROOT};
use super::{ActiveSnapshot, SnapshotProvider, TAG};
use crate::error::{Error, Result};
use crate::fsutil::RunLock;
use crate::method::Method;
use crate::tool::{self, ToolOutput};
use crate::units;
use crate::volume::{Mount, VolumeInfo};

const LVM_PATHS: &[&str] = &["/usr/sbin/lvm", "/sbin/lvm"];
const REPORT_LIMIT: Duration = Duration::from_secs(30);
const CHANGE_LIMIT: Duration = Duration::from_secs(120);
/// Smallest default snapshot (the vendor's example used 1 GiB).
const DEFAULT_MIN_SIZE: u64 = 1 << 30;
/// Below this, a snapshot is too small to be worth trying.
const MIN_USEFUL_SIZE: u64 = 32 << 20;
const HINT_LVM: &str = "Check the volume group with `vgs` and `lvs`, and the kernel log (dmesg).";

/// Name prefix of every persnap LVM snapshot.
pub fn name_prefix() -> String {
    format!("{TAG}_snap_")
}

/// A logical volume, by volume group and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalVolume {
    pub vg: String,
    pub lv: String,
}

impl LogicalVolume {
    pub fn display(&self) -> String {
        format!("{}/{}", self.vg, self.lv)
    }
}

/// The logical volume a mount's device is, if it is one.
pub fn logical_volume_of(mount: &Mount) -> Option<LogicalVolume> {
    let dm = format!("/sys/dev/block/{}:{}/dm", mount.major, mount.minor);
    let uuid = fs::read_to_string(format!("{dm}/uuid")).ok()?;
    if !uuid.starts_with("LVM-") {
        return None;
    }
    let name = fs::read_to_string(format!("{dm}/name")).ok()?;
    split_dm_name(name.trim())
}

/// Split a device-mapper name `VG-LV` (dashes in names doubled) into parts.
pub fn split_dm_name(name: &str) -> Option<LogicalVolume> {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let undouble = |s: &str| s.replace("--", "-");
            let (vg, lv) = (&name[..i], &name[i + 1..]);
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some(LogicalVolume {
                vg: undouble(vg),
                lv: undouble(lv),
            });
        }
        i += 1;
    }
    None
}

/// Decide a classic snapshot's size in bytes (a whole number of extents).
pub fn choose_size(
    lv: &LogicalVolume,
    origin: u64,
    vg_free: u64,
    extent: u64,
    requested: Option<u64>,
) -> Result<u64> {
    let extent = extent.max(1);
    let round_down = |n: u64| n / extent * extent;
    let round_up = |n: u64| n.div_ceil(extent) * extent;
    if let Some(want) = requested {
        let want = round_up(want.max(extent));
        if want > vg_free {
            return Err(Error::SnapshotSizeTooLarge {
                vg: lv.vg.clone(),
                requested: units::bytes(want),
                free: units::bytes(vg_free),
            });
        }
        return Ok(want);
    }
    let desired = round_up((origin / 5).max(DEFAULT_MIN_SIZE).min(origin.max(extent)));
    let needed = round_up(MIN_USEFUL_SIZE.min(desired));
    let size = round_down(desired.min(vg_free));
    if size < needed || size == 0 {
        return Err(Error::VgNoSpace {
            vg: lv.vg.clone(),
            needed: units::bytes(needed),
            free: units::bytes(vg_free),
        });
    }
    Ok(size)
}

/// The lvm2 tool, found at a fixed path.
struct Lvm {
    bin: PathBuf,
}

type Row = HashMap<String, String>;

impl Lvm {
    fn locate() -> Result<Lvm> {
        tool::find(LVM_PATHS)
            .map(|bin| Lvm { bin })
            .ok_or_else(|| Error::Tool {
                action: "take an LVM snapshot".into(),
                reason: format!(
                    "the lvm2 tools are not installed (looked for {})",
                    LVM_PATHS.join(" and ")
                ),
                hint: "Install the lvm2 package.",
            })
    }

    fn run(&self, action: &str, args: &[&str], limit: Duration) -> Result<ToolOutput> {
        let os: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let out = tool::run(&self.bin, &os, limit).map_err(|e| Error::Tool {
            action: action.to_owned(),
            reason: e.to_string(),
            hint: HINT_LVM,
        })?;
        if !out.status.success() {
            return Err(Error::Tool {
                action: action.to_owned(),
                reason: out.reason(),
                hint: HINT_LVM,
            });
        }
        Ok(out)
    }

    /// `lvs`/`vgs` as JSON rows (`kind` is "lv" or "vg"), values in bytes.
    fn report(&self, command: &str, kind: &str, fields: &str, select: &str) -> Result<Vec<Row>> {
        let action = format!("ask LVM about {select}");
        let args = [
            command,
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            fields,
            select,
        ];
        let out = self.run(&action, &args, REPORT_LIMIT)?;
        parse_report(&out.stdout, kind).map_err(|reason| Error::Tool {
            action,
            reason,
            hint: HINT_LVM,
        })
    }

    fn lv(&self, vg: &str, lv: &str, fields: &str) -> Result<Row> {
        let target = format!("{vg}/{lv}");
        let mut rows = self.report("lvs", "lv", fields, &target)?;
        rows.pop().ok_or_else(|| Error::Tool {
            action: format!("find logical volume {target}"),
            reason: "lvs listed nothing".into(),
            hint: HINT_LVM,
        })
    }

    /// lvremove, but only of a persnap-tagged snapshot (never an origin).
    fn remove_snapshot(&self, vg: &str, name: &str) -> Result<()> {
        let row = match self.lv(vg, name, "lv_tags,origin") {
            Ok(row) => row,
            Err(_) if !self.exists(vg, name) => return Ok(()),
            Err(e) => return Err(e),
        };
        let tagged = field(&row, "lv_tags").split(',').any(|t| t == TAG);
        if !tagged || field(&row, "origin").is_empty() {
            return Err(Error::Tool {
                action: format!("remove {vg}/{name}"),
                reason: "it is not a persnap snapshot (no persnap tag or no origin), so persnap refuses to remove it".into(),
                hint: "Remove it yourself if it is really unwanted.",
            });
        }
        let target = format!("{vg}/{name}");
        self.run(
            &format!("remove the LVM snapshot {target}"),
            &["lvremove", "-y", "-q", &target],
            CHANGE_LIMIT,
        )?;
        Ok(())
    }

    fn exists(&self, vg: &str, name: &str) -> bool {
        self.report("lvs", "lv", "lv_name", &format!("{vg}/{name}"))
            .is_ok_and(|r| !r.is_empty())
    }
}

fn field<'a>(row: &'a Row, name: &str) -> &'a str {
    row.get(name).map(|s| s.trim()).unwrap_or("")
}

fn number(row: &Row, name: &str) -> u64 {
    field(row, name)
        .split('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Rows of an lvm JSON report: `{"report":[{"lv":[{...}]}]}`.
pub fn parse_report(json: &str, kind: &str) -> std::result::Result<Vec<Row>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("unreadable lvm report: {e}"))?;
    let rows = value["report"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(|r| r[kind].as_array());
    let rows = rows.ok_or_else(|| format!("the lvm report has no {kind} section"))?;
    Ok(rows
        .iter()
        .map(|row| {
            row.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect())
}

/// Whether this kernel has device-mapper at all.
fn device_mapper_present() -> bool {
    Path::new("/dev/mapper/control").exists()
}

/// What the provider needs to know from the request.
#[derive(Debug, Clone, Default)]
pub struct LvmProvider {
    /// `--snapshot-size`, in bytes.
    pub snapshot_size: Option<u64>,
}

impl SnapshotProvider for LvmProvider {
    fn method(&self) -> Method {
        Method::Lvm
    }

    fn create(&self, volume: &VolumeInfo, id: &str) -> Result<Box<dyn ActiveSnapshot>> {
        let lv = logical_volume_of(&volume.mount).ok_or_else(|| Error::MethodNotApplicable {
            method: Method::Lvm,
            path: volume.folder.clone(),
            reason: format!(
                "its filesystem ({}) is not on an LVM logical volume",
                volume.mount.device
            ),
        })?;
        let lvm = Lvm::locate()?;
        let origin = lvm.lv(&lv.vg, &lv.lv, "lv_size,segtype,pool_lv")?;
        let name = format!("{}{id}", name_prefix());
        let target = lv.display();
        let mut args = vec!["lvcreate", "-q", "-y", "-s", "-n", &name, "--addtag", TAG];
        let size;
        if field(&origin, "segtype") == "thin" {
            args.extend(["--setactivationskip", "n"]);
        } else {
            let vg = lvm
                .report("vgs", "vg", "vg_free,vg_extent_size", &lv.vg)?
                .pop()
                .unwrap_or_default();
            let bytes = choose_size(
                &lv,
                number(&origin, "lv_size"),
                number(&vg, "vg_free"),
                number(&vg, "vg_extent_size"),
                self.snapshot_size,
            )?;
            size = format!("{bytes}b");
            args.extend(["-L", &size]);
        }
        args.push(&target);
        lvm.run(
            &format!("create an LVM snapshot of {target}"),
            &args,
            CHANGE_LIMIT,
        )
        .map_err(explain_create_failure)?;
        let mut snapshot = LvmSnapshot {
            lvm,
            vg: lv.vg.clone(),
            name: name.clone(),
            id: format!("{}/{name}", lv.vg),
            mount_dir: mount::mount_dir(id),
            folder: PathBuf::new(),
            mounted: false,
            removed: false,
        };
        if let Err(e) = snapshot.mount(volume) {
            // A snapshot that overflowed already cannot be mounted; say so.
            let error = snapshot.check_valid().err().unwrap_or(e);
            let _ = snapshot.release();
            return Err(error);
        }
        Ok(Box::new(snapshot))
    }

    fn sweep(&self, mounts: &[Mount]) -> Result<Vec<String>> {
        let mut removed = sweep_mount_dirs(mounts)?;
        if !device_mapper_present() {
            return Ok(removed);
        }
        let Ok(lvm) = Lvm::locate() else {
            return Ok(removed);
        };
        let fields = "lv_name,vg_name,lv_tags,origin,lv_kernel_major,lv_kernel_minor";
        for row in lvm.report("lvs", "lv", fields, &format!("@{TAG}"))? {
            let name = field(&row, "lv_name");
            let Some(tag) = name.strip_prefix(&name_prefix()) else {
                continue;
            };
            if RunLock::is_held(tag) {
                continue;
            }
            let (major, minor) = (
                number(&row, "lv_kernel_major"),
                number(&row, "lv_kernel_minor"),
            );
            for m in mounts
                .iter()
                .filter(|m| u64::from(m.major) == major && u64::from(m.minor) == minor)
            {
                mount::unmount(&m.mount_point).map_err(|e| unmount_error(&m.mount_point, e))?;
            }
            lvm.remove_snapshot(field(&row, "vg_name"), name)?;
            removed.push(format!("{}/{name}", field(&row, "vg_name")));
        }
        Ok(removed)
    }
}

/// Unmount and remove `/run/persnap/mnt-<tag>` folders of dead runs.
fn sweep_mount_dirs(mounts: &[Mount]) -> Result<Vec<String>> {
    let Ok(entries) = fs::read_dir(MOUNT_ROOT) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(tag) = name.strip_prefix(MOUNT_PREFIX) else {
            continue;
        };
        if RunLock::is_held(tag) {
            continue;
        }
        let dir = entry.path();
        if mounts.iter().any(|m| m.mount_point == dir) {
            removed.push(format!("snapshot mount {}", dir.display()));
        }
        mount::unmount(&dir).map_err(|e| unmount_error(&dir, e))?;
    }
    Ok(removed)
}

fn unmount_error(dir: &Path, source: std::io::Error) -> Error {
    Error::Snapshot {
        action: format!("unmount the snapshot at {}", dir.display()),
        source,
        hint: "A process may still be using it; find it with `fuser -m` and try `persnap cleanup` again.",
    }
}

/// lvcreate's own words, plus what to do about the common failures.
fn explain_create_failure(e: Error) -> Error {
    match e {
        Error::Tool { action, reason, .. }
            if reason.contains("Insufficient free space") || reason.contains("insufficient") =>
        {
            Error::Tool {
                action,
                reason,
                hint: "The volume group ran out of free space; choose a smaller --snapshot-size or free space in it.",
            }
        }
        Error::Tool { action, reason, .. } if reason.contains("suspend") => Error::Tool {
            action,
            reason,
            hint: "The volume could not be suspended; is the filesystem frozen (fsfreeze) by another tool? Thaw it and retry.",
        },
        other => other,
    }
}

struct LvmSnapshot {
    lvm: Lvm,
    vg: String,
    name: String,
    id: String,
    mount_dir: PathBuf,
    folder: PathBuf,
    mounted: bool,
    removed: bool,
}

impl LvmSnapshot {
    fn mount(&mut self, volume: &VolumeInfo) -> Result<()> {
        let device = self.lvm.lv(&self.vg, &self.name, "lv_dm_path")?;
        let device = PathBuf::from(field(&device, "lv_dm_path"));
        mount::private_namespace();
        mount::mount_readonly(&device, &self.mount_dir, &volume.mount.fs_type).map_err(
            |source| Error::Snapshot {
                action: format!(
                    "mount the snapshot {} read-only at {}",
                    device.display(),
                    self.mount_dir.display()
                ),
                source,
                hint: "Check the kernel log (dmesg) for the filesystem's messages.",
            },
        )?;
        self.mounted = true;
        // The folder inside the filesystem: the mount's root plus the path below the mount point.
        let below = volume
            .folder
            .strip_prefix(&volume.mount.mount_point)
            .unwrap_or(Path::new(""));
        let root = volume
            .mount
            .root
            .strip_prefix("/")
            .unwrap_or(&volume.mount.root);
        self.folder = self.mount_dir.join(root).join(below);
        Ok(())
    }
}

impl ActiveSnapshot for LvmSnapshot {
    fn id(&self) -> &str {
        &self.id
    }

    fn folder(&self) -> &Path {
        &self.folder
    }

    fn check_valid(&self) -> Result<()> {
        let row = self
            .lvm
            .lv(&self.vg, &self.name, "lv_attr,data_percent,lv_size")?;
        let state = field(&row, "lv_attr").chars().nth(4).unwrap_or('-');
        let percent: f64 = field(&row, "data_percent").parse().unwrap_or(0.0);
        if matches!(state, 'I' | 'S') || percent >= 100.0 {
            return Err(Error::SnapshotOverflow {
                snapshot: self.id.clone(),
                size: units::bytes(number(&row, "lv_size")),
            });
        }
        Ok(())
    }

    fn release(&mut self) -> Result<()> {
        if self.mounted {
            mount::unmount(&self.mount_dir).map_err(|e| unmount_error(&self.mount_dir, e))?;
            self.mounted = false;
        }
        if !self.removed {
            self.lvm.remove_snapshot(&self.vg, &self.name)?;
            self.removed = true;
        }
        Ok(())
    }
}

/// What `persnap probe` says about an LVM volume.
pub fn describe(mount: &Mount) -> Option<String> {
    let lv = logical_volume_of(mount)?;
    let detail = Lvm::locate()
        .and_then(|lvm| lvm.lv(&lv.vg, &lv.lv, "lv_size,segtype,pool_lv"))
        .map(|row| match field(&row, "segtype") {
            "thin" => format!(
                "thin logical volume {} ({}): persnap takes a thin snapshot in pool {}/{} (no size needed; it uses free pool space)",
                lv.display(),
                units::bytes(number(&row, "lv_size")),
                lv.vg,
                field(&row, "pool_lv")
            ),
            _ => format!("logical volume {} ({})", lv.display(), units::bytes(number(&row, "lv_size"))),
        })
        .unwrap_or_else(|_| format!("logical volume {}", lv.display()));
    Some(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_device_mapper_names() {
        let lv = |vg: &str, lv: &str| {
            Some(LogicalVolume {
                vg: vg.into(),
                lv: lv.into(),
            })
        };
        assert_eq!(split_dm_name("vg0-data"), lv("vg0", "data"));
        assert_eq!(
            split_dm_name("my--vg-apama--store"),
            lv("my-vg", "apama-store")
        );
        assert_eq!(split_dm_name("vg-lv--"), lv("vg", "lv-"));
        assert_eq!(split_dm_name("nodash"), None);
        assert_eq!(split_dm_name("-lv"), None);
    }

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn lv() -> LogicalVolume {
        LogicalVolume {
            vg: "vg0".into(),
            lv: "data".into(),
        }
    }

    #[test]
    fn default_size_is_a_fifth_of_the_origin_at_least_a_gib_bounded_by_free_space() {
        assert_eq!(
            choose_size(&lv(), 100 * GIB, 50 * GIB, 4 * MIB, None).unwrap(),
            20 * GIB
        );
        assert_eq!(
            choose_size(&lv(), 2 * GIB, 50 * GIB, 4 * MIB, None).unwrap(),
            GIB
        );
        assert_eq!(
            choose_size(&lv(), 400 * MIB, 50 * GIB, 4 * MIB, None).unwrap(),
            400 * MIB,
            "never more than the origin"
        );
        assert_eq!(
            choose_size(&lv(), 100 * GIB, 3 * GIB + 1, 4 * MIB, None).unwrap(),
            3 * GIB,
            "what is free, in whole extents"
        );
    }

    #[test]
    fn no_free_space_is_refused_with_what_to_do() {
        let err = choose_size(&lv(), 100 * GIB, 0, 4 * MIB, None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("Volume group vg0 has no free space") && text.contains("vgextend vg0"),
            "{text}"
        );
        assert!(
            choose_size(&lv(), 100 * GIB, 8 * MIB, 4 * MIB, None).is_err(),
            "8 MiB is not a useful snapshot"
        );
    }

    #[test]
    fn requested_size_is_rounded_to_extents_and_must_fit() {
        assert_eq!(
            choose_size(&lv(), GIB, GIB, 4 * MIB, Some(5 * MIB)).unwrap(),
            8 * MIB
        );
        assert_eq!(
            choose_size(&lv(), GIB, GIB, 4 * MIB, Some(1)).unwrap(),
            4 * MIB
        );
        let err = choose_size(&lv(), GIB, GIB, 4 * MIB, Some(2 * GIB)).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn parses_lvm_json_reports() {
        let json = r#"{"report": [ {"lv": [ {"lv_name":"data", "vg_name":"vg0", "lv_size":"335544320"} ] } ] }"#;
        let rows = parse_report(json, "lv").unwrap();
        assert_eq!(field(&rows[0], "lv_name"), "data");
        assert_eq!(number(&rows[0], "lv_size"), 335_544_320);
        assert!(parse_report(json, "vg").is_err());
        assert!(parse_report("nonsense", "lv").is_err());
    }
}
