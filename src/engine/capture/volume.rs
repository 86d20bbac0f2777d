//! Which volume holds a folder, and which snapshot method applies to it.
//!
//! Mounts are read from `/proc/self/mountinfo` (never by running `df`): the
//! mount whose mount point is the longest prefix of the canonical folder
//! path holds the folder (the last such line wins, as later mounts cover
//! earlier ones). The snapshot method is decided by the providers in
//! [`crate::snapshot`].

#[cfg(target_os = "linux")]
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::method::Method;
use crate::snapshot;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    /// Path inside the filesystem that is mounted (btrfs: the subvolume).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub read_only: bool,
    pub fs_type: String,
    /// The mount source, usually a device such as `/dev/sda1`.
    pub device: String,
}

/// Whether, and how, a snapshot of a folder's volume can be taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum SnapshotSupport {
    /// `method` applies; `detail` says what would be snapshotted.
    Available { method: Method, detail: String },
    /// No snapshot method applies, for `reason` (plain words).
    Unavailable { reason: String },
}

impl SnapshotSupport {
    pub fn method(&self) -> Option<Method> {
        match self {
            SnapshotSupport::Available { method, .. } => Some(*method),
            SnapshotSupport::Unavailable { .. } => None,
        }
    }
}

/// The volume holding a folder and its snapshot support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The folder, canonical.
    pub folder: PathBuf,
    pub mount: Mount,
    pub snapshot: SnapshotSupport,
    /// Whether the filesystem can clone files (the `reflink` method
    /// applies, beside any volume snapshot).
    #[serde(default)]
    pub clones: bool,
}

/// Parse the text of a mountinfo file; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let mut post = post.split(' ');
    let (major, minor) = pre.get(2)?.split_once(':')?;
    let options = pre.get(5)?;
    Some(Mount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: PathBuf::from(unescape(pre.get(3)?)),
        mount_point: PathBuf::from(unescape(pre.get(4)?)),
        read_only: options.split(',').any(|o| o == "ro"),
        fs_type: post.next()?.to_owned(),
        device: unescape(post.next()?),
    })
}

/// Undo the kernel's octal escapes (`\040` for space and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path` (canonical): longest mount-point prefix, last wins.
pub fn mount_for<'a>(path: &Path, mounts: &'a [Mount]) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .fold(None, |best: Option<&Mount>, m| match best {
            Some(b) if b.mount_point.as_os_str().len() > m.mount_point.as_os_str().len() => Some(b),
            _ => Some(m),
        })
}

#[cfg(target_os = "linux")]
pub fn read_mounts() -> Result<Vec<Mount>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|source| Error::Io {
        action: "read the list of mounts from",
        path: path.to_owned(),
        source,
        hint: "persnap needs /proc to be mounted.",
    })?;
    Ok(parse_mountinfo(&text))
}

/// Find the volume of `folder` and which snapshot method applies to it.
#[cfg(target_os = "linux")]
pub fn probe(folder: &Path) -> Result<VolumeInfo> {
    let folder = canonical(folder)?;
    let mounts = read_mounts()?;
    let mount = mount_for(&folder, &mounts)
        .cloned()
        .ok_or_else(|| Error::NoSnapshotPossible {
            path: folder.clone(),
            reason: "no mount in /proc/self/mountinfo holds it".into(),
        })?;
    let snapshot = snapshot::support_for(&folder, &mount);
    let clones = snapshot::reflink::cannot_clone(&folder).is_none();
    Ok(VolumeInfo {
        folder,
        mount,
        snapshot,
        clones,
    })
}

/// Find the volume of `folder` (GetVolumePathNameW, GetVolumeInformationW)
/// and whether Volume Shadow Copy applies to it.
#[cfg(windows)]
pub fn probe(folder: &Path) -> Result<VolumeInfo> {
    let folder = canonical(folder)?;
    let unreadable = |source| Error::SourceUnreadable {
        path: folder.clone(),
        source,
    };
    let root = crate::sys::volume_root(&folder).map_err(unreadable)?;
    let (fs_type, fixed) =
        crate::sys::volume_facts(&root).unwrap_or_else(|_| ("unknown".into(), false));
    let snapshot = snapshot::vss::support(&folder.to_string_lossy(), &root, &fs_type, fixed);
    let mount = Mount {
        major: 0,
        minor: 0,
        root: PathBuf::from("\\"),
        mount_point: PathBuf::from(&root),
        read_only: false,
        fs_type,
        device: root.clone(),
    };
    Ok(VolumeInfo {
        folder,
        mount,
        snapshot,
        clones: false,
    })
}

/// Canonical form of a folder, with the engine's errors for bad folders.
/// On Windows, a drive path short enough not to need it loses the `\\?\`
/// prefix canonicalize adds (`C:\Data`, as people write it).
pub fn canonical(folder: &Path) -> Result<PathBuf> {
    crate::fsutil::canonicalize(folder).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::SourceMissing {
            path: folder.to_owned(),
        },
        _ => Error::SourceUnreadable {
            path: folder.to_owned(),
            source,
        },
    })
}

/// `\\?\C:\x` → `C:\x` when the plain form means the same: a drive path
/// under the classic length limit. UNC and long paths stay verbatim.
pub fn plain_drive_path(path: &str) -> String {
    const CLASSIC_MAX: usize = 248;
    match path.strip_prefix(r"\\?\") {
        Some(rest)
            if rest.len() < CLASSIC_MAX
                && rest.as_bytes().get(1) == Some(&b':')
                && rest.as_bytes()[0].is_ascii_alphabetic() =>
        {
            rest.to_owned()
        }
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:45 /@data /srv/data rw,relatime shared:5 - btrfs /dev/loop0 rw,space_cache=v2,subvolid=256,subvol=/@data
31 22 253:2 / /mnt/my\\040disk ro,relatime - xfs /dev/mapper/vg0-data rw
32 30 0:46 / /srv/data/tmp rw - tmpfs tmpfs rw
33 22 0:47 / /srv/data rw - ext4 /dev/sdb1 rw
";

    #[test]
    fn windows_paths_lose_the_verbatim_prefix_only_when_harmless() {
        assert_eq!(
            plain_drive_path(r"\\?\C:\ProgramData\Apama"),
            r"C:\ProgramData\Apama"
        );
        assert_eq!(plain_drive_path(r"\\?\UNC\srv\share"), r"\\?\UNC\srv\share");
        let long = format!(r"\\?\C:\{}", "x".repeat(300));
        assert_eq!(plain_drive_path(&long), long);
        assert_eq!(
            plain_drive_path(r"\\?\Volume{1234}\db"),
            r"\\?\Volume{1234}\db"
        );
        assert_eq!(plain_drive_path("/srv/data"), "/srv/data");
    }

    #[test]
    fn parses_fields_and_escapes() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].fs_type, "btrfs");
        assert_eq!(m[1].root, PathBuf::from("/@data"));
        assert_eq!((m[2].major, m[2].minor), (253, 2));
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/my disk"));
        assert!(m[2].read_only && !m[0].read_only);
        assert_eq!(m[2].device, "/dev/mapper/vg0-data");
    }

    #[test]
    fn longest_prefix_and_last_mount_win() {
        let m = parse_mountinfo(SAMPLE);
        let find = |p: &str| mount_for(Path::new(p), &m).unwrap().mount_point.clone();
        assert_eq!(find("/srv/data/tmp/x"), PathBuf::from("/srv/data/tmp"));
        assert_eq!(
            find("/srv/database"),
            PathBuf::from("/"),
            "prefix is by path component"
        );
        assert_eq!(
            mount_for(Path::new("/srv/data/db"), &m).unwrap().fs_type,
            "ext4",
            "overmount wins"
        );
        assert_eq!(find("/mnt/my disk/db"), PathBuf::from("/mnt/my disk"));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse_mountinfo("garbage\n1 2 x:y / / rw - ext4 /dev/x rw\n").is_empty());
    }
}
