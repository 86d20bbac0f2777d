//! LVM: detecting that a folder lives on an LVM logical volume.
//!
//! A mount's device number is looked up in sysfs: device-mapper devices have
//! `/sys/dev/block/MAJ:MIN/dm/uuid`, which starts with `LVM-` for logical
//! volumes, and `dm/name`, which is `VG-LV` with dashes inside either name
//! doubled. Taking LVM snapshots is the provider's job (not in this build).

use std::fs;

use serde::{Deserialize, Serialize};

use crate::volume::Mount;

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
            return Some(LogicalVolume { vg: undouble(vg), lv: undouble(lv) });
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_device_mapper_names() {
        let lv = |vg: &str, lv: &str| Some(LogicalVolume { vg: vg.into(), lv: lv.into() });
        assert_eq!(split_dm_name("vg0-data"), lv("vg0", "data"));
        assert_eq!(split_dm_name("my--vg-apama--store"), lv("my-vg", "apama-store"));
        assert_eq!(split_dm_name("vg-lv--"), lv("vg", "lv-"));
        assert_eq!(split_dm_name("nodash"), None);
        assert_eq!(split_dm_name("-lv"), None);
    }
}
