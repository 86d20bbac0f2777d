//! The COM side of Volume Shadow Copy (Windows only): [`ComApi`] implements
//! [`VssApi`] with one IVssBackupComponents call per method and nothing
//! else, and [`VssProvider`] plugs the sequence of `vss.rs` into the
//! snapshot provider trait. All decisions (order, deadline, retries,
//! aborts, messages, paths) live in `vss.rs`, where they are tested.
//!
//! Snapshots are made in the file-share backup context
//! (VSS_CTX_FILE_SHARE_BACKUP: no writers, as `vshadow -nw`), which makes
//! them non-persistent and auto-released: Windows deletes them when the
//! requester releases its IVssBackupComponents or its process dies, so an
//! interrupted run can never leave a shadow copy behind and there is
//! nothing to sweep.

use std::ptr::null_mut;
use std::time::Duration;

use winapi::shared::guiddef::GUID;
use winapi::shared::minwindef::{BOOL, FALSE, TRUE};
use winapi::shared::rpcdce::{RPC_C_AUTHN_LEVEL_PKT_PRIVACY, RPC_C_IMP_LEVEL_IDENTIFY};
use winapi::shared::winerror::{HRESULT, S_OK};
use winapi::um::combaseapi::{CoInitializeEx, CoInitializeSecurity};
use winapi::um::objbase::COINIT_MULTITHREADED;
use winapi::um::objidlbase::EOAC_DYNAMIC_CLOAKING;
use winapi::um::processthreadsapi::GetCurrentProcess;
use winapi::um::vsbackup::{
    CreateVssBackupComponents, IVssBackupComponents, VssFreeSnapshotProperties,
};
use winapi::um::vss::{
    IVssAsync, VSS_CTX_FILE_SHARE_BACKUP, VSS_OBJECT_SNAPSHOT, VSS_SNAPSHOT_PROP,
};
use winapi::um::wow64apiset::IsWow64Process;

use super::vss::{
    self, AsyncState, Hresult, Sequence, Shadow, SystemClock, VssApi, VssAsync, VssId,
};
use super::{ActiveSnapshot, SnapshotProvider};
use crate::error::Result;
use crate::method::Method;
use crate::volume::{Mount, VolumeInfo};

const VSS_S_ASYNC_PENDING: HRESULT = 0x0004_2309;
const VSS_S_ASYNC_FINISHED: HRESULT = 0x0004_230A;

fn check(hr: HRESULT) -> std::result::Result<(), Hresult> {
    if hr < 0 { Err(hr) } else { Ok(()) }
}

fn guid_to_id(g: &GUID) -> VssId {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&g.Data1.to_le_bytes());
    bytes[4..6].copy_from_slice(&g.Data2.to_le_bytes());
    bytes[6..8].copy_from_slice(&g.Data3.to_le_bytes());
    bytes[8..].copy_from_slice(&g.Data4);
    u128::from_le_bytes(bytes)
}

fn id_to_guid(id: VssId) -> GUID {
    let b = id.to_le_bytes();
    GUID {
        Data1: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        Data2: u16::from_le_bytes([b[4], b[5]]),
        Data3: u16::from_le_bytes([b[6], b[7]]),
        Data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
    }
}

const GUID_NULL: GUID = GUID {
    Data1: 0,
    Data2: 0,
    Data3: 0,
    Data4: [0; 8],
};

use crate::sys::wide;

/// An owned IVssAsync.
pub struct ComAsync(*mut IVssAsync);

impl VssAsync for ComAsync {
    fn query_status(&mut self) -> std::result::Result<AsyncState, Hresult> {
        let mut status: HRESULT = 0;
        // SAFETY: self.0 is a live IVssAsync we own.
        check(unsafe { (*self.0).QueryStatus(&mut status, null_mut()) })?;
        Ok(match status {
            VSS_S_ASYNC_PENDING => AsyncState::Pending,
            VSS_S_ASYNC_FINISHED | S_OK => AsyncState::Finished,
            other => AsyncState::Failed(other),
        })
    }

    fn cancel(&mut self) {
        // SAFETY: as above.
        unsafe {
            (*self.0).Cancel();
        }
    }
}

impl Drop for ComAsync {
    fn drop(&mut self) {
        // SAFETY: we hold one reference.
        unsafe {
            (*self.0).Release();
        }
    }
}

/// An owned IVssBackupComponents.
pub struct ComApi(*mut IVssBackupComponents);

// The object lives in the multithreaded apartment, where COM objects may
// be used from any thread; persnap uses it from one thread at a time.
unsafe impl Send for ComApi {}

impl ComApi {
    /// Initialize COM (multithreaded, with the security VSS requires) and
    /// create the backup components object.
    pub fn new() -> std::result::Result<ComApi, Hresult> {
        // SAFETY: documented COM start-up calls. RPC_E_TOO_LATE (security
        // already set by something else in the process) is an error: the
        // level VSS needs for its callbacks is then not ours to know.
        unsafe {
            let hr = CoInitializeEx(null_mut(), COINIT_MULTITHREADED);
            check(hr)?;
            // Once per process: COM takes its security once, and a second
            // call (a second snapshot in one process) fails RPC_E_TOO_LATE.
            static SECURITY: std::sync::OnceLock<HRESULT> = std::sync::OnceLock::new();
            let hr = *SECURITY.get_or_init(|| {
                CoInitializeSecurity(
                    null_mut(),
                    -1,
                    null_mut(),
                    null_mut(),
                    RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
                    RPC_C_IMP_LEVEL_IDENTIFY,
                    null_mut(),
                    EOAC_DYNAMIC_CLOAKING,
                    null_mut(),
                )
            });
            check(hr)?;
            let mut components: *mut IVssBackupComponents = null_mut();
            check(CreateVssBackupComponents(&mut components))?;
            Ok(ComApi(components))
        }
    }

    fn this(&self) -> &IVssBackupComponents {
        // SAFETY: created non-null in `new`, released only in Drop.
        unsafe { &*self.0 }
    }

    fn take_async(hr: HRESULT, op: *mut IVssAsync) -> std::result::Result<ComAsync, Hresult> {
        check(hr)?;
        Ok(ComAsync(op))
    }
}

impl Drop for ComApi {
    fn drop(&mut self) {
        // SAFETY: we hold one reference. Releasing the backup components
        // also removes any non-persistent snapshot it still owns.
        unsafe {
            (*self.0).Release();
        }
    }
}

impl VssApi for ComApi {
    type Async = ComAsync;

    fn initialize_for_backup(&mut self) -> std::result::Result<(), Hresult> {
        // SAFETY: plain COM call on our object (null XML: a new backup).
        check(unsafe { self.this().InitializeForBackup(null_mut()) })
    }

    fn set_context_without_writers(&mut self) -> std::result::Result<(), Hresult> {
        // SAFETY: as above.
        check(unsafe { self.this().SetContext(VSS_CTX_FILE_SHARE_BACKUP as i32) })
    }

    fn is_volume_supported(&mut self, volume: &str) -> std::result::Result<bool, Hresult> {
        let mut name = wide(volume);
        let mut supported: BOOL = FALSE;
        // SAFETY: NUL-terminated volume name; out-pointer to a local.
        check(unsafe {
            self.this()
                .IsVolumeSupported(GUID_NULL, name.as_mut_ptr(), &mut supported)
        })?;
        Ok(supported != FALSE)
    }

    fn start_snapshot_set(&mut self) -> std::result::Result<VssId, Hresult> {
        let mut id = GUID_NULL;
        // SAFETY: out-pointer to a local.
        check(unsafe { self.this().StartSnapshotSet(&mut id) })?;
        Ok(guid_to_id(&id))
    }

    fn add_to_snapshot_set(&mut self, volume: &str) -> std::result::Result<VssId, Hresult> {
        let mut name = wide(volume);
        let mut id = GUID_NULL;
        // SAFETY: NUL-terminated name; out-pointer to a local.
        check(unsafe {
            self.this()
                .AddToSnapshotSet(name.as_mut_ptr(), GUID_NULL, &mut id)
        })?;
        Ok(guid_to_id(&id))
    }

    fn do_snapshot_set(&mut self) -> std::result::Result<ComAsync, Hresult> {
        let mut op = null_mut();
        // SAFETY: as above; the async object is owned by ComAsync.
        ComApi::take_async(unsafe { self.this().DoSnapshotSet(&mut op) }, op)
    }

    fn snapshot_device(&mut self, snapshot: VssId) -> std::result::Result<String, Hresult> {
        // SAFETY: the properties are read, copied, then freed with the
        // matching VSS function.
        unsafe {
            let mut prop: VSS_SNAPSHOT_PROP = std::mem::zeroed();
            check(
                self.this()
                    .GetSnapshotProperties(id_to_guid(snapshot), &mut prop),
            )?;
            let device = wide_ptr_to_string(prop.m_pwszSnapshotDeviceObject);
            VssFreeSnapshotProperties(&mut prop);
            Ok(device)
        }
    }

    fn delete_snapshot(&mut self, snapshot: VssId) -> std::result::Result<(), Hresult> {
        let (mut deleted, mut not_deleted) = (0, GUID_NULL);
        // SAFETY: out-pointers to locals.
        check(unsafe {
            self.this().DeleteSnapshots(
                id_to_guid(snapshot),
                VSS_OBJECT_SNAPSHOT,
                TRUE,
                &mut deleted,
                &mut not_deleted,
            )
        })
    }

    fn abort_backup(&mut self) -> std::result::Result<(), Hresult> {
        // SAFETY: as above.
        check(unsafe { self.this().AbortBackup() })
    }
}

/// # Safety
/// `p` is null or a NUL-terminated UTF-16 string.
unsafe fn wide_ptr_to_string(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: the caller guarantees a terminator.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` elements were just read.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Whether this is a 32-bit process on 64-bit Windows.
fn running_under_wow64() -> bool {
    let mut wow64: BOOL = FALSE;
    // SAFETY: pseudo-handle of this process, out-pointer to a local.
    unsafe { IsWow64Process(GetCurrentProcess(), &mut wow64) != 0 && wow64 != FALSE }
}

/// Volume Shadow Copy snapshots.
pub struct VssProvider {
    pub deadline: Duration,
}

impl Default for VssProvider {
    fn default() -> Self {
        VssProvider {
            deadline: vss::DEFAULT_DEADLINE,
        }
    }
}

impl SnapshotProvider for VssProvider {
    fn method(&self) -> Method {
        Method::Vss
    }

    fn create(&self, volume: &VolumeInfo, _id: &str) -> Result<Box<dyn ActiveSnapshot>> {
        vss::check_bitness(running_under_wow64())?;
        let folder = volume.folder.to_string_lossy().into_owned();
        let root = volume.mount.mount_point.to_string_lossy().into_owned();
        let path = vss::split_at_volume(&folder, &root)?;
        let mut api =
            ComApi::new().map_err(|code| vss::vss_error(vss::Step::InitializeForBackup, code))?;
        let clock = SystemClock;
        let deadline = std::time::Instant::now() + self.deadline;
        let shadow = Sequence {
            api: &mut api,
            clock: &clock,
            deadline,
            volume: &path.volume,
        }
        .create()?;
        let folder = vss::shadow_folder(&shadow.device, &path);
        let id = shadow.device.clone();
        Ok(Box::new(ActiveShadow {
            api: std::sync::Mutex::new(Some(api)),
            shadow,
            folder,
            id,
            deadline: self.deadline,
            volume: path.volume,
        }))
    }

    fn sweep(&self, _mounts: &[Mount]) -> Result<Vec<String>> {
        // Backup-context shadow copies die with the process that made them.
        Ok(Vec::new())
    }
}

struct ActiveShadow {
    api: std::sync::Mutex<Option<ComApi>>,
    shadow: Shadow,
    folder: std::path::PathBuf,
    id: String,
    deadline: Duration,
    volume: String,
}

impl ActiveSnapshot for ActiveShadow {
    fn id(&self) -> &str {
        &self.id
    }

    fn folder(&self) -> &std::path::Path {
        &self.folder
    }

    fn check_valid(&self) -> Result<()> {
        let mut api = self.api.lock().unwrap_or_else(|e| e.into_inner());
        match api.as_mut() {
            Some(api) => vss::check_still_there(api, &self.shadow),
            None => Ok(()),
        }
    }

    fn release(&mut self) -> Result<()> {
        let taken = self.api.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut api) = taken else {
            return Ok(());
        };
        let clock = SystemClock;
        let deadline = std::time::Instant::now() + self.deadline;
        let finished = Sequence {
            api: &mut api,
            clock: &clock,
            deadline,
            volume: &self.volume,
        }
        .finish(&self.shadow);
        // Dropping `api` releases the components, which removes the
        // non-persistent snapshot even if DeleteSnapshots failed.
        drop(api);
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_round_trip() {
        let g = GUID {
            Data1: 0x1234_5678,
            Data2: 0x9abc,
            Data3: 0xdef0,
            Data4: [1, 2, 3, 4, 5, 6, 7, 8],
        };
        let back = id_to_guid(guid_to_id(&g));
        assert_eq!(
            (back.Data1, back.Data2, back.Data3, back.Data4),
            (g.Data1, g.Data2, g.Data3, g.Data4)
        );
    }

    /// Under wine there is no VSS service: the provider must fail with a
    /// plain VSS error, never crash or hang. (On real Windows as a normal
    /// user it fails with "needs administrator rights".)
    #[test]
    fn without_a_working_vss_service_the_error_is_plain() {
        match ComApi::new() {
            Err(code) => {
                let e = vss::vss_error(vss::Step::InitializeForBackup, code);
                assert!(e.to_string().contains("Volume Shadow Copy failed"), "{e}");
            }
            Ok(mut api) => {
                let clock = SystemClock;
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                let result = Sequence {
                    api: &mut api,
                    clock: &clock,
                    deadline,
                    volume: r"C:\",
                }
                .create();
                if let Err(e) = result {
                    assert!(e.to_string().contains("Volume Shadow Copy failed"), "{e}");
                }
            }
        }
    }
}
