//! Windows Volume Shadow Copy: the request sequence, its one deadline, the
//! retries and the abort, the meaning of VSS error codes, and the mapping
//! of a folder to its path inside the shadow copy.
//!
//! All of it is plain Rust over [`VssApi`], a trait with one method per
//! COM call, so the logic is tested on any platform with a scripted API.
//! The COM implementation (`vss_com.rs`) is a thin layer compiled on
//! Windows only.
//!
//! The shadow copy is made **without writers**, as the vendor's procedure
//! does with `vshadow -nw`: SQLite has no VSS writer, and involving every
//! writer on the machine (SQL Server, Hyper-V, Exchange, third-party ones)
//! would freeze their I/O for each backup and make the backup fail when
//! any one of them hangs. In the file-share backup context
//! (`VSS_CTX_FILE_SHARE_BACKUP`, non-persistent and auto-released) the
//! sequence is the one Microsoft documents for shadow copies without
//! writer participation: InitializeForBackup → SetContext →
//! IsVolumeSupported → StartSnapshotSet (retried while another set is in
//! progress) → AddToSnapshotSet → DoSnapshotSet → GetSnapshotProperties;
//! after the copy GetSnapshotProperties again (the shadow copy still
//! exists: Windows discards one whose shadow storage filled up) and
//! DeleteSnapshots. GatherWriterMetadata, PrepareForBackup and
//! BackupComplete do not belong to this context (VSS refuses the last two
//! there). Any failure after StartSnapshotSet calls AbortBackup, so the
//! VSS service never keeps a half-made set; a step cancelled at the
//! deadline is waited for (briefly) until VSS says it stopped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A COM result code as VSS returns it.
pub type Hresult = i32;
/// A VSS object id (GUID) as 16 bytes.
pub type VssId = u128;

/// Default for the whole snapshot sequence (configurable per request).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

/// How long a step cancelled at the deadline is waited for, beyond it,
/// before the backup is aborted anyway.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

pub const E_ACCESSDENIED: Hresult = 0x8007_0005_u32 as i32;
/// HRESULT_FROM_WIN32(ERROR_SERVICE_DISABLED).
pub const E_SERVICE_DISABLED: Hresult = 0x8007_0422_u32 as i32;
pub const RPC_E_DISCONNECTED: Hresult = 0x8001_0108_u32 as i32;
/// CoInitializeSecurity: security was already set in this process.
pub const RPC_E_TOO_LATE: Hresult = 0x8001_0119_u32 as i32;
pub const VSS_E_UNEXPECTED: Hresult = 0x8004_2302_u32 as i32;
pub const VSS_E_BAD_STATE: Hresult = 0x8004_2301_u32 as i32;
pub const VSS_E_PROVIDER_VETO: Hresult = 0x8004_2306_u32 as i32;
pub const VSS_E_OBJECT_NOT_FOUND: Hresult = 0x8004_2308_u32 as i32;
pub const VSS_E_VOLUME_NOT_SUPPORTED: Hresult = 0x8004_230C_u32 as i32;
pub const VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER: Hresult = 0x8004_230E_u32 as i32;
pub const VSS_E_UNEXPECTED_PROVIDER_ERROR: Hresult = 0x8004_230F_u32 as i32;
pub const VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED: Hresult = 0x8004_2312_u32 as i32;
pub const VSS_E_FLUSH_WRITES_TIMEOUT: Hresult = 0x8004_2313_u32 as i32;
pub const VSS_E_HOLD_WRITES_TIMEOUT: Hresult = 0x8004_2314_u32 as i32;
pub const VSS_E_UNEXPECTED_WRITER_ERROR: Hresult = 0x8004_2315_u32 as i32;
pub const VSS_E_SNAPSHOT_SET_IN_PROGRESS: Hresult = 0x8004_2316_u32 as i32;
pub const VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED: Hresult = 0x8004_2317_u32 as i32;
pub const VSS_E_WRITER_INFRASTRUCTURE: Hresult = 0x8004_2318_u32 as i32;
pub const VSS_E_WRITER_NOT_RESPONDING: Hresult = 0x8004_2319_u32 as i32;
pub const VSS_E_UNSUPPORTED_CONTEXT: Hresult = 0x8004_231B_u32 as i32;
pub const VSS_E_VOLUME_IN_USE: Hresult = 0x8004_231D_u32 as i32;
pub const VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED: Hresult = 0x8004_231E_u32 as i32;
pub const VSS_E_INSUFFICIENT_STORAGE: Hresult = 0x8004_231F_u32 as i32;
pub const VSS_E_REBOOT_REQUIRED: Hresult = 0x8004_2327_u32 as i32;
pub const VSS_E_NESTED_VOLUME_LIMIT: Hresult = 0x8004_232C_u32 as i32;
pub const VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT: Hresult = 0x8004_23F0_u32 as i32;
pub const VSS_E_WRITERERROR_OUTOFRESOURCES: Hresult = 0x8004_23F1_u32 as i32;
pub const VSS_E_WRITERERROR_TIMEOUT: Hresult = 0x8004_23F2_u32 as i32;
pub const VSS_E_WRITERERROR_RETRYABLE: Hresult = 0x8004_23F3_u32 as i32;
pub const VSS_E_WRITERERROR_NONRETRYABLE: Hresult = 0x8004_23F4_u32 as i32;
pub const VSS_S_ASYNC_CANCELLED: Hresult = 0x0004_230B;

/// One call of the sequence, named as in the VSS API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    InitializeForBackup,
    SetContext,
    IsVolumeSupported,
    StartSnapshotSet,
    AddToSnapshotSet,
    DoSnapshotSet,
    GetSnapshotProperties,
    /// GetSnapshotProperties after the copy: is the shadow copy still there?
    CheckSnapshot,
    DeleteSnapshots,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The state of an asynchronous VSS operation (IVssAsync::QueryStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncState {
    Pending,
    Finished,
    /// Ended with this error code (also VSS_S_ASYNC_CANCELLED).
    Failed(Hresult),
}

/// An asynchronous operation in flight.
pub trait VssAsync {
    fn query_status(&mut self) -> std::result::Result<AsyncState, Hresult>;
    /// Ask VSS to stop the operation (after the deadline).
    fn cancel(&mut self);
}

/// One method per COM call on IVssBackupComponents, nothing more.
pub trait VssApi {
    type Async: VssAsync;
    fn initialize_for_backup(&mut self) -> std::result::Result<(), Hresult>;
    /// SetContext(VSS_CTX_FILE_SHARE_BACKUP): no writers, non-persistent,
    /// released with the object.
    fn set_context_without_writers(&mut self) -> std::result::Result<(), Hresult>;
    fn is_volume_supported(&mut self, volume: &str) -> std::result::Result<bool, Hresult>;
    fn start_snapshot_set(&mut self) -> std::result::Result<VssId, Hresult>;
    fn add_to_snapshot_set(&mut self, volume: &str) -> std::result::Result<VssId, Hresult>;
    fn do_snapshot_set(&mut self) -> std::result::Result<Self::Async, Hresult>;
    /// GetSnapshotProperties → the shadow copy's device object
    /// (`\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN`), then
    /// VssFreeSnapshotProperties.
    fn snapshot_device(&mut self, snapshot: VssId) -> std::result::Result<String, Hresult>;
    /// DeleteSnapshots(snapshot, VSS_OBJECT_SNAPSHOT, force).
    fn delete_snapshot(&mut self, snapshot: VssId) -> std::result::Result<(), Hresult>;
    fn abort_backup(&mut self) -> std::result::Result<(), Hresult>;
}

/// Time as the sequence sees it; tests substitute a clock that jumps.
pub trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration);
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration)
    }
}

/// A shadow copy that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    pub snapshot_id: VssId,
    /// `\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN`
    pub device: String,
}

/// The sequence, its deadline and its clock.
pub struct Sequence<'a, A: VssApi, C: Clock> {
    pub api: &'a mut A,
    pub clock: &'a C,
    pub deadline: Instant,
    pub volume: &'a str,
}

impl<A: VssApi, C: Clock> Sequence<'_, A, C> {
    /// Run every step up to a snapshot that exists. On any failure after
    /// StartSnapshotSet the backup is aborted before the error returns.
    pub fn create(&mut self) -> Result<Shadow> {
        self.call(Step::InitializeForBackup, |api| api.initialize_for_backup())?;
        self.call(Step::SetContext, |api| api.set_context_without_writers())?;
        let volume = self.volume;
        if !self.call(Step::IsVolumeSupported, |api| {
            api.is_volume_supported(volume)
        })? {
            return Err(vss_error(
                Step::IsVolumeSupported,
                VSS_E_VOLUME_NOT_SUPPORTED,
            ));
        }
        self.start_snapshot_set()?;
        let created = self.populate();
        if created.is_err() {
            let _ = self.api.abort_backup();
        }
        created
    }

    /// The steps after StartSnapshotSet.
    fn populate(&mut self) -> Result<Shadow> {
        let volume = self.volume;
        let snapshot_id = self.call(Step::AddToSnapshotSet, |api| {
            api.add_to_snapshot_set(volume)
        })?;
        let snapshot = self.call(Step::DoSnapshotSet, |api| api.do_snapshot_set())?;
        self.wait(Step::DoSnapshotSet, snapshot)?;
        let device = self.call(Step::GetSnapshotProperties, |api| {
            api.snapshot_device(snapshot_id)
        })?;
        Ok(Shadow {
            snapshot_id,
            device,
        })
    }

    /// StartSnapshotSet, retried while another program's set is in progress
    /// (only one set can be made at a time on a machine).
    fn start_snapshot_set(&mut self) -> Result<VssId> {
        let mut pause = Duration::from_millis(250);
        loop {
            match self.api.start_snapshot_set() {
                Ok(id) => return Ok(id),
                Err(VSS_E_SNAPSHOT_SET_IN_PROGRESS) if self.clock.now() + pause < self.deadline => {
                    self.clock.sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(code) => return Err(vss_error(Step::StartSnapshotSet, code)),
            }
        }
    }

    /// After the copy: delete the shadow copy (already gone is fine).
    pub fn finish(&mut self, shadow: &Shadow) -> Result<()> {
        self.api
            .delete_snapshot(shadow.snapshot_id)
            .or_else(|code| match code {
                VSS_E_OBJECT_NOT_FOUND => Ok(()),
                code => Err(vss_error(Step::DeleteSnapshots, code)),
            })
    }

    fn call<T>(
        &mut self,
        step: Step,
        f: impl FnOnce(&mut A) -> std::result::Result<T, Hresult>,
    ) -> Result<T> {
        if self.clock.now() >= self.deadline {
            return Err(timeout(step));
        }
        f(self.api).map_err(|code| vss_error(step, code))
    }

    /// Poll an asynchronous step until it ends or the deadline passes;
    /// then cancel it and wait (at most [`CANCEL_GRACE`]) until VSS says it
    /// stopped, so the abort that follows does not race the step.
    fn wait(&mut self, step: Step, mut op: A::Async) -> Result<()> {
        let mut pause = Duration::from_millis(20);
        loop {
            match op.query_status().map_err(|code| vss_error(step, code))? {
                AsyncState::Finished => return Ok(()),
                AsyncState::Failed(code) => return Err(vss_error(step, code)),
                AsyncState::Pending if self.clock.now() >= self.deadline => {
                    op.cancel();
                    let give_up = self.clock.now() + CANCEL_GRACE;
                    while let Ok(AsyncState::Pending) = op.query_status() {
                        if self.clock.now() >= give_up {
                            break;
                        }
                        self.clock.sleep(Duration::from_millis(100));
                    }
                    return Err(timeout(step));
                }
                AsyncState::Pending => {
                    self.clock.sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
}

/// After the copy: the shadow copy must still exist. Windows discards a
/// shadow copy whose shadow storage fills up while it is in use (as an LVM
/// snapshot overflows), and reads from it then fail or, worse, the copy
/// came partly from before and partly from after; such a copy is never
/// trusted.
pub fn check_still_there<A: VssApi>(api: &mut A, shadow: &Shadow) -> Result<()> {
    match api.snapshot_device(shadow.snapshot_id) {
        Ok(_) => Ok(()),
        Err(VSS_E_OBJECT_NOT_FOUND) => Err(Error::Vss {
            step: Step::CheckSnapshot.to_string(),
            code: Some(VSS_E_OBJECT_NOT_FOUND as u32),
            detail: "the shadow storage filled up during the copy, so Windows discarded the shadow copy and this copy cannot be trusted; \
                     give the shadow storage more space (for example `vssadmin resize shadowstorage /for=C: /on=C: /maxsize=10%`) and run the backup again"
                .into(),
        }),
        Err(code) => Err(vss_error(Step::CheckSnapshot, code)),
    }
}

fn timeout(step: Step) -> Error {
    Error::Vss {
        step: step.to_string(),
        code: None,
        detail: "the Volume Shadow Copy service did not finish in time (the whole snapshot has one deadline, --vss-timeout); \
                 the machine may be very busy, or the Volume Shadow Copy service may be stuck (restarting it, or the machine, helps)"
            .into(),
    }
}

/// A VSS failure at `step`, in plain words.
pub fn vss_error(step: Step, code: Hresult) -> Error {
    Error::Vss {
        step: step.to_string(),
        code: Some(code as u32),
        detail: explain(code).into(),
    }
}

/// What an error code means for the person running the backup.
pub fn explain(code: Hresult) -> &'static str {
    match code {
        E_ACCESSDENIED => {
            "Volume Shadow Copy needs administrator rights; run persnap's helper as administrator (accept the UAC prompt)"
        }
        VSS_E_INSUFFICIENT_STORAGE => {
            "there is not enough free space on the volume for the shadow copy's changes; free some space or enlarge the shadow storage (vssadmin resize shadowstorage)"
        }
        VSS_E_SNAPSHOT_SET_IN_PROGRESS => {
            "another program (often another backup) is making a shadow copy right now and did not finish before the deadline; try again later"
        }
        VSS_E_PROVIDER_VETO => {
            "the shadow copy provider refused to make the snapshot; the System event log says why"
        }
        VSS_E_VOLUME_NOT_SUPPORTED | VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER => {
            "this volume does not support shadow copies (VSS needs a local NTFS or ReFS volume; network shares, FAT and removable drives do not work)"
        }
        VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED | VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED => {
            "the volume already has as many shadow copies as Windows allows; delete old ones (vssadmin delete shadows) and try again"
        }
        VSS_E_FLUSH_WRITES_TIMEOUT | VSS_E_HOLD_WRITES_TIMEOUT => {
            "Windows could not pause writes to the volume long enough for the snapshot because the disk is very busy; try again at a quieter time"
        }
        VSS_E_WRITERERROR_TIMEOUT | VSS_E_WRITERERROR_RETRYABLE | VSS_E_WRITER_NOT_RESPONDING => {
            "a VSS writer did not respond in time; try again (see `vssadmin list writers`)"
        }
        VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT
        | VSS_E_WRITERERROR_NONRETRYABLE
        | VSS_E_UNEXPECTED_WRITER_ERROR => {
            "a VSS writer reported an error; `vssadmin list writers` shows which one, and the Application event log why"
        }
        VSS_E_WRITERERROR_OUTOFRESOURCES => {
            "a VSS writer ran out of memory or other resources; try again when the machine is less loaded"
        }
        VSS_E_WRITER_INFRASTRUCTURE => {
            "the VSS writer infrastructure is not working; restart the Volume Shadow Copy service (or the machine)"
        }
        VSS_E_BAD_STATE => {
            "the Volume Shadow Copy service was asked to do things out of order (a persnap bug; please report it)"
        }
        VSS_E_UNEXPECTED_PROVIDER_ERROR => {
            "the shadow copy provider failed unexpectedly; the System event log says why"
        }
        VSS_E_VOLUME_IN_USE => {
            "the volume is in use by another shadow copy operation; try again later"
        }
        VSS_E_UNSUPPORTED_CONTEXT => {
            "this edition of Windows does not support the kind of shadow copy persnap makes"
        }
        VSS_S_ASYNC_CANCELLED => "the operation was cancelled",
        VSS_E_UNEXPECTED => {
            "the Volume Shadow Copy service failed unexpectedly; the Application event log (source VSS) says why, and restarting the service often helps"
        }
        VSS_E_NESTED_VOLUME_LIMIT => {
            "the database is on a volume nested too deeply for shadow copies (for example a virtual disk inside another virtual disk); keep the database on a volume of its own disk"
        }
        VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED => {
            "Windows has no room for another shadow storage association; remove unused ones (vssadmin list shadowstorage, vssadmin delete shadowstorage) and try again"
        }
        VSS_E_REBOOT_REQUIRED => {
            "Windows must be restarted before it can make shadow copies again; restart the machine and run the backup"
        }
        E_SERVICE_DISABLED => {
            "the Volume Shadow Copy service is disabled; set it to Manual in Services (services.msc) and run the backup again"
        }
        RPC_E_DISCONNECTED => {
            "the Volume Shadow Copy service stopped while persnap was talking to it; run the backup again (restart the service if it keeps happening)"
        }
        RPC_E_TOO_LATE => {
            "something else in the helper set up Windows' COM security before persnap could, so the shadow copy service might not be able to call back; this is a persnap bug, please report it"
        }
        _ => {
            "the Volume Shadow Copy service reported an error; the Application and System event logs say more"
        }
    }
}

/// A 32-bit persnap cannot make shadow copies on 64-bit Windows (VSS
/// refuses WOW64 requesters); say so before trying.
pub fn check_bitness(running_under_wow64: bool) -> Result<()> {
    if running_under_wow64 {
        return Err(Error::Vss {
            step: "start".into(),
            code: None,
            detail: "this is a 32-bit build of persnap running on 64-bit Windows, and Volume Shadow Copy only works from 64-bit programs there; install the 64-bit persnap".into(),
        });
    }
    Ok(())
}

/// Whether Volume Shadow Copy applies to `folder` on the volume `root`
/// (filesystem `fs_type`, a fixed local disk or not), in plain words.
pub fn support(
    folder: &str,
    root: &str,
    fs_type: &str,
    fixed_disk: bool,
) -> crate::volume::SnapshotSupport {
    use crate::volume::SnapshotSupport::{Available, Unavailable};
    if is_network_path(folder) || is_network_path(root) {
        return Unavailable {
            reason:
                "it is on a network share, and Volume Shadow Copy can only snapshot local volumes"
                    .into(),
        };
    }
    if !fixed_disk {
        return Unavailable {
            reason: format!(
                "it is on {root}, which is not a fixed local disk (removable and network drives have no shadow copies)"
            ),
        };
    }
    if !["NTFS", "ReFS"]
        .iter()
        .any(|fs| fs.eq_ignore_ascii_case(fs_type))
    {
        return Unavailable {
            reason: format!(
                "it is on {root}, a {fs_type} volume; Volume Shadow Copy needs NTFS or ReFS"
            ),
        };
    }
    Available {
        method: crate::method::Method::Vss,
        detail: format!("volume {root} ({fs_type}, Volume Shadow Copy)"),
    }
}

/// A Windows folder path split for snapshotting: the volume it is on
/// (with a trailing backslash, as VSS wants it) and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePath {
    pub volume: String,
    pub below_root: String,
}

/// Strip `\\?\` (long-path form) so paths compare in one form.
pub fn strip_verbatim(path: &str) -> &str {
    path.strip_prefix(r"\\?\")
        .filter(|rest| !rest.starts_with("UNC\\"))
        .unwrap_or(path)
}

/// Split `folder` at `volume_root` (as GetVolumePathNameW returned it: a
/// drive root `C:\` or a mount folder `C:\mnt\data\`). Network paths are
/// refused: VSS snapshots local volumes only.
pub fn split_at_volume(folder: &str, volume_root: &str) -> Result<VolumePath> {
    if is_network_path(folder) || is_network_path(volume_root) {
        return Err(Error::Vss {
            step: "find the volume".into(),
            code: None,
            detail: format!(
                "{folder} is on a network share, and Volume Shadow Copy can only snapshot local volumes; back up on the machine that has the disk, or use --method sqlite-online"
            ),
        });
    }
    let folder_plain = strip_verbatim(folder);
    let mut root = strip_verbatim(volume_root).to_owned();
    if !root.ends_with('\\') {
        root.push('\\');
    }
    let with_separator = format!("{}\\", folder_plain.trim_end_matches('\\'));
    let below = strip_prefix_ignore_case(&with_separator, &root).ok_or_else(|| Error::Vss {
        step: "find the volume".into(),
        code: None,
        detail: format!("{folder} is not below the volume root {volume_root}"),
    })?;
    Ok(VolumePath {
        volume: root,
        below_root: below.trim_end_matches('\\').to_owned(),
    })
}

/// The folder as seen inside the shadow copy.
pub fn shadow_folder(device: &str, path: &VolumePath) -> PathBuf {
    let device = device.trim_end_matches('\\');
    if path.below_root.is_empty() {
        PathBuf::from(format!("{device}\\"))
    } else {
        PathBuf::from(format!("{device}\\{}", path.below_root))
    }
}

/// Whether `path` is on a network share (`\\host\share`, or its long
/// form `\\?\UNC\host\share`, which a mapped drive canonicalizes to).
pub fn is_network_path(path: &str) -> bool {
    path.starts_with(r"\\?\UNC\")
        || (path.starts_with(r"\\") && !path.starts_with(r"\\?\") && !path.starts_with(r"\\.\"))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;
    use std::rc::Rc;

    use super::*;

    /// A clock that only moves when the code sleeps.
    struct FakeClock {
        start: Instant,
        elapsed: Cell<Duration>,
    }

    impl FakeClock {
        fn new() -> Self {
            FakeClock {
                start: Instant::now(),
                elapsed: Cell::new(Duration::ZERO),
            }
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.start + self.elapsed.get()
        }
        fn sleep(&self, d: Duration) {
            self.elapsed.set(self.elapsed.get() + d);
        }
    }

    type Log = Rc<RefCell<Vec<String>>>;

    struct FakeAsync {
        name: &'static str,
        states: VecDeque<AsyncState>,
        log: Log,
        cancelled: bool,
        /// Polls that still say "pending" after the cancel.
        stopping: usize,
    }

    impl VssAsync for FakeAsync {
        fn query_status(&mut self) -> std::result::Result<AsyncState, Hresult> {
            if self.cancelled {
                if self.stopping == 0 {
                    self.log
                        .borrow_mut()
                        .push(format!("{} cancelled", self.name));
                    return Ok(AsyncState::Failed(VSS_S_ASYNC_CANCELLED));
                }
                self.stopping -= 1;
                return Ok(AsyncState::Pending);
            }
            Ok(self.states.pop_front().unwrap_or(AsyncState::Pending))
        }
        fn cancel(&mut self) {
            self.cancelled = true;
            self.log.borrow_mut().push(format!("cancel {}", self.name));
        }
    }

    /// Scripted API: every call succeeds unless `fail` names it; async
    /// steps finish after `pending` polls; StartSnapshotSet reports "in
    /// progress" `busy` times first.
    struct FakeApi {
        log: Log,
        fail: Option<(&'static str, Hresult)>,
        pending: usize,
        busy: usize,
        async_result: Option<(&'static str, AsyncState)>,
        stopping: usize,
        /// The shadow copy was discarded (its storage filled up).
        discarded: bool,
    }

    impl FakeApi {
        fn new() -> Self {
            FakeApi {
                log: Rc::default(),
                fail: None,
                pending: 1,
                busy: 0,
                async_result: None,
                stopping: 0,
                discarded: false,
            }
        }
        fn step(&mut self, name: &'static str) -> std::result::Result<(), Hresult> {
            self.log.borrow_mut().push(name.to_owned());
            match self.fail {
                Some((n, code)) if n == name => Err(code),
                _ => Ok(()),
            }
        }
        fn op(&mut self, name: &'static str) -> std::result::Result<FakeAsync, Hresult> {
            self.step(name)?;
            let mut states: VecDeque<_> =
                std::iter::repeat_n(AsyncState::Pending, self.pending).collect();
            states.push_back(match self.async_result {
                Some((n, state)) if n == name => state,
                _ => AsyncState::Finished,
            });
            Ok(FakeAsync {
                name,
                states,
                log: self.log.clone(),
                cancelled: false,
                stopping: self.stopping,
            })
        }
        fn calls(&self) -> Vec<String> {
            self.log.borrow().clone()
        }
    }

    impl VssApi for FakeApi {
        type Async = FakeAsync;
        fn initialize_for_backup(&mut self) -> std::result::Result<(), Hresult> {
            self.step("InitializeForBackup")
        }
        fn set_context_without_writers(&mut self) -> std::result::Result<(), Hresult> {
            self.step("SetContext")
        }
        fn is_volume_supported(&mut self, volume: &str) -> std::result::Result<bool, Hresult> {
            self.step("IsVolumeSupported")?;
            Ok(volume != r"E:\")
        }
        fn start_snapshot_set(&mut self) -> std::result::Result<VssId, Hresult> {
            if self.busy > 0 {
                self.busy -= 1;
                self.log.borrow_mut().push("StartSnapshotSet busy".into());
                return Err(VSS_E_SNAPSHOT_SET_IN_PROGRESS);
            }
            self.step("StartSnapshotSet").map(|_| 1)
        }
        fn add_to_snapshot_set(&mut self, volume: &str) -> std::result::Result<VssId, Hresult> {
            self.step("AddToSnapshotSet")?;
            assert_eq!(volume, r"C:\");
            Ok(42)
        }
        fn do_snapshot_set(&mut self) -> std::result::Result<FakeAsync, Hresult> {
            self.op("DoSnapshotSet")
        }
        fn snapshot_device(&mut self, snapshot: VssId) -> std::result::Result<String, Hresult> {
            self.step("GetSnapshotProperties")?;
            assert_eq!(snapshot, 42);
            if self.discarded {
                return Err(VSS_E_OBJECT_NOT_FOUND);
            }
            Ok(r"\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy7".into())
        }
        fn delete_snapshot(&mut self, snapshot: VssId) -> std::result::Result<(), Hresult> {
            self.step("DeleteSnapshots")?;
            assert_eq!(snapshot, 42);
            Ok(())
        }
        fn abort_backup(&mut self) -> std::result::Result<(), Hresult> {
            self.step("AbortBackup")
        }
    }

    fn create(api: &mut FakeApi, clock: &FakeClock, volume: &str) -> Result<Shadow> {
        let deadline = clock.now() + DEFAULT_DEADLINE;
        Sequence {
            api,
            clock,
            deadline,
            volume,
        }
        .create()
    }

    /// The writer-free sequence (as `vshadow -nw`): no GatherWriterMetadata,
    /// SetBackupState, PrepareForBackup or BackupComplete.
    const FULL: [&str; 6] = [
        "InitializeForBackup",
        "SetContext",
        "IsVolumeSupported",
        "StartSnapshotSet",
        "AddToSnapshotSet",
        "DoSnapshotSet",
    ];

    #[test]
    fn the_full_sequence_runs_in_order_and_cleans_up() {
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        api.pending = 3;
        let shadow = create(&mut api, &clock, r"C:\").unwrap();
        assert_eq!(
            shadow,
            Shadow {
                snapshot_id: 42,
                device: r"\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy7".into()
            }
        );
        let mut expected: Vec<String> = FULL.iter().map(|s| s.to_string()).collect();
        expected.push("GetSnapshotProperties".into());
        assert_eq!(api.calls(), expected);
        let deadline = clock.now() + DEFAULT_DEADLINE;
        Sequence {
            api: &mut api,
            clock: &clock,
            deadline,
            volume: r"C:\",
        }
        .finish(&shadow)
        .unwrap();
        assert_eq!(api.calls()[expected.len()..], ["DeleteSnapshots"]);
        for writer_step in [
            "GatherWriterMetadata",
            "SetBackupState",
            "PrepareForBackup",
            "BackupComplete",
        ] {
            assert!(!api.calls().iter().any(|c| c == writer_step));
        }
    }

    #[test]
    fn every_failure_after_start_snapshot_set_aborts_the_backup() {
        for (i, step) in FULL
            .iter()
            .enumerate()
            .chain([(6, &"GetSnapshotProperties")])
        {
            let (mut api, clock) = (FakeApi::new(), FakeClock::new());
            api.fail = Some((step, VSS_E_INSUFFICIENT_STORAGE));
            let err = create(&mut api, &clock, r"C:\").unwrap_err();
            assert!(err.to_string().contains(step), "{step}: {err}");
            assert!(err.to_string().contains("not enough free space"), "{err}");
            let aborted = api.calls().last().map(String::as_str) == Some("AbortBackup");
            assert_eq!(
                aborted,
                i > 3,
                "{step}: abort only once a set was started: {:?}",
                api.calls()
            );
        }
    }

    #[test]
    fn an_async_step_that_fails_aborts_with_its_code() {
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        api.async_result = Some(("DoSnapshotSet", AsyncState::Failed(VSS_E_PROVIDER_VETO)));
        let err = create(&mut api, &clock, r"C:\").unwrap_err();
        assert!(
            err.to_string().contains("DoSnapshotSet")
                && err.to_string().contains("provider refused"),
            "{err}"
        );
        assert_eq!(api.calls().last().unwrap(), "AbortBackup");
    }

    #[test]
    fn one_deadline_covers_the_whole_sequence_and_cancels_the_pending_step() {
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        api.pending = 100_000; // far beyond the deadline
        let err = create(&mut api, &clock, r"C:\").unwrap_err();
        assert!(err.to_string().contains("did not finish in time"), "{err}");
        assert!(
            clock.elapsed.get() >= DEFAULT_DEADLINE
                && clock.elapsed.get() < DEFAULT_DEADLINE + Duration::from_secs(1)
        );
        assert_eq!(
            api.calls()[api.calls().len() - 3..],
            [
                "cancel DoSnapshotSet",
                "DoSnapshotSet cancelled",
                "AbortBackup"
            ],
            "the cancelled step is waited for, then the set aborted"
        );

        // Time spent in early steps counts against later ones.
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        api.busy = 1000;
        let err = create(&mut api, &clock, r"C:\").unwrap_err();
        assert!(err.to_string().contains("another program"), "{err}");
        assert!(
            clock.elapsed.get() <= DEFAULT_DEADLINE,
            "{:?}",
            clock.elapsed.get()
        );
        assert!(
            !api.calls().contains(&"AbortBackup".to_owned()),
            "no set was started, nothing to abort"
        );
    }

    #[test]
    fn a_set_in_progress_elsewhere_is_waited_for() {
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        api.busy = 3;
        create(&mut api, &clock, r"C:\").unwrap();
        assert_eq!(
            api.calls()
                .iter()
                .filter(|c| c.as_str() == "StartSnapshotSet busy")
                .count(),
            3
        );
        assert!(clock.elapsed.get() >= Duration::from_millis(250 + 500 + 1000));
    }

    #[test]
    fn unsupported_volume_and_access_denied_are_plain() {
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        let err = create(&mut api, &clock, r"E:\").unwrap_err();
        assert!(
            err.to_string().contains("does not support shadow copies"),
            "{err}"
        );
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        api.fail = Some(("InitializeForBackup", E_ACCESSDENIED));
        let err = create(&mut api, &clock, r"C:\").unwrap_err();
        assert!(err.to_string().contains("administrator"), "{err}");
        assert!(
            err.to_string().contains("0x80070005"),
            "the code is kept for support: {err}"
        );
    }

    #[test]
    fn a_cancel_that_never_ends_is_waited_for_only_briefly() {
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        api.pending = 100_000;
        api.stopping = 100_000;
        let err = create(&mut api, &clock, r"C:\").unwrap_err();
        assert!(err.to_string().contains("did not finish in time"), "{err}");
        let waited = clock.elapsed.get();
        assert!(
            waited >= DEFAULT_DEADLINE + CANCEL_GRACE
                && waited < DEFAULT_DEADLINE + CANCEL_GRACE + Duration::from_secs(1),
            "{waited:?}"
        );
        assert_eq!(api.calls().last().unwrap(), "AbortBackup");
        // A cancel that takes a few polls is followed to its end.
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        api.pending = 100_000;
        api.stopping = 5;
        create(&mut api, &clock, r"C:\").unwrap_err();
        assert!(api.calls().contains(&"DoSnapshotSet cancelled".to_owned()));
    }

    #[test]
    fn a_shadow_copy_discarded_during_the_copy_is_reported_plainly() {
        let mut api = FakeApi::new();
        let shadow = Shadow {
            snapshot_id: 42,
            device: "x".into(),
        };
        check_still_there(&mut api, &shadow).unwrap();
        api.discarded = true;
        let err = check_still_there(&mut api, &shadow).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("shadow storage filled up"), "{text}");
        assert!(text.contains("vssadmin resize shadowstorage"), "{text}");
        assert!(text.contains("0x80042308"), "{text}");
    }

    #[test]
    fn finish_deletes_and_a_copy_already_gone_is_fine() {
        let (mut api, clock) = (FakeApi::new(), FakeClock::new());
        let shadow = Shadow {
            snapshot_id: 42,
            device: "x".into(),
        };
        let deadline = clock.now() + DEFAULT_DEADLINE;
        let mut seq = Sequence {
            api: &mut api,
            clock: &clock,
            deadline,
            volume: r"C:\",
        };
        seq.finish(&shadow).unwrap();
        seq.api.fail = Some(("DeleteSnapshots", VSS_E_OBJECT_NOT_FOUND));
        seq.finish(&shadow).unwrap();
        seq.api.fail = Some(("DeleteSnapshots", VSS_E_BAD_STATE));
        let err = seq.finish(&shadow).unwrap_err();
        assert!(err.to_string().contains("DeleteSnapshots"), "{err}");
    }

    #[test]
    fn more_codes_have_plain_words() {
        for (code, words) in [
            (VSS_E_UNEXPECTED, "Application event log"),
            (VSS_E_NESTED_VOLUME_LIMIT, "nested too deeply"),
            (
                VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED,
                "shadow storage association",
            ),
            (VSS_E_REBOOT_REQUIRED, "restart the machine"),
            (E_SERVICE_DISABLED, "services.msc"),
            (RPC_E_DISCONNECTED, "stopped while persnap was talking"),
            (RPC_E_TOO_LATE, "COM security"),
        ] {
            let text = vss_error(Step::InitializeForBackup, code).to_string();
            assert!(text.contains(words), "{code:#x}: {text}");
            assert!(text.contains(&format!("0x{:08X}", code as u32)), "{text}");
        }
    }

    #[test]
    fn bitness_is_checked() {
        assert!(check_bitness(false).is_ok());
        assert!(
            check_bitness(true)
                .unwrap_err()
                .to_string()
                .contains("64-bit")
        );
    }

    #[test]
    fn folders_map_into_the_shadow_copy() {
        let dev = r"\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy7";
        let p = split_at_volume(r"C:\ProgramData\Apama\store", r"C:\").unwrap();
        assert_eq!(
            p,
            VolumePath {
                volume: r"C:\".into(),
                below_root: r"ProgramData\Apama\store".into()
            }
        );
        assert_eq!(
            shadow_folder(dev, &p),
            PathBuf::from(format!(r"{dev}\ProgramData\Apama\store"))
        );
        // Long-path form, other case, mount folder, the volume root itself.
        let p = split_at_volume(r"\\?\c:\Data\store\", r"C:\").unwrap();
        assert_eq!(p.below_root, r"Data\store");
        let p = split_at_volume(r"D:\mnt\apama\db", r"D:\mnt\apama\").unwrap();
        assert_eq!(
            (p.volume.as_str(), p.below_root.as_str()),
            (r"D:\mnt\apama\", "db")
        );
        let p = split_at_volume(r"D:\mnt\apama", r"D:\mnt\apama\").unwrap();
        assert_eq!(p.below_root, "");
        assert_eq!(shadow_folder(dev, &p), PathBuf::from(format!(r"{dev}\")));
        let p = split_at_volume(r"E:\", r"E:\").unwrap();
        assert_eq!(p.below_root, "");
        let long = format!(r"C:\{}", ["x".repeat(200), "y".repeat(200)].join("\\"));
        assert_eq!(
            split_at_volume(&long, r"C:\").unwrap().below_root.len(),
            401
        );
    }

    #[test]
    fn network_paths_are_refused_plainly() {
        for path in [r"\\server\share\apama", r"\\?\UNC\server\share\apama"] {
            let err = split_at_volume(path, r"\\server\share\").unwrap_err();
            assert!(err.to_string().contains("network share"), "{err}");
        }
        let err = split_at_volume(r"D:\other", r"C:\").unwrap_err();
        assert!(
            err.to_string().contains("not below the volume root"),
            "{err}"
        );
    }

    #[test]
    fn support_says_why_not() {
        use crate::volume::SnapshotSupport;
        let ok = support(r"C:\ProgramData\Apama", r"C:\", "NTFS", true);
        assert!(
            matches!(
                ok,
                SnapshotSupport::Available {
                    method: crate::method::Method::Vss,
                    ..
                }
            ),
            "{ok:?}"
        );
        let reason = |s: SnapshotSupport| match s {
            SnapshotSupport::Unavailable { reason } => reason,
            other => panic!("{other:?}"),
        };
        assert!(
            reason(support(r"\\srv\share\db", r"\\srv\share\", "NTFS", false))
                .contains("network share")
        );
        assert!(
            reason(support(r"F:\db", r"F:\", "NTFS", false)).contains("not a fixed local disk")
        );
        assert!(reason(support(r"E:\db", r"E:\", "FAT32", true)).contains("needs NTFS or ReFS"));
    }
}
