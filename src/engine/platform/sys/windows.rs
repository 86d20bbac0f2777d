//! Windows implementations of [`crate::sys`], plus the volume facts the
//! VSS provider needs (volume root, filesystem, drive type).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use winapi::shared::minwindef::{DWORD, MAX_PATH};
use winapi::um::fileapi::{
    GetDiskFreeSpaceExW, GetDriveTypeW, GetVolumeInformationW, GetVolumePathNameW,
};
use winapi::um::handleapi::CloseHandle;
use winapi::um::processthreadsapi::{GetCurrentProcess, OpenProcessToken};
use winapi::um::securitybaseapi::GetTokenInformation;
use winapi::um::winbase::DRIVE_FIXED;
use winapi::um::winnt::{
    FILE_ATTRIBUTE_REPARSE_POINT, HANDLE, TOKEN_ELEVATION, TOKEN_QUERY, TokenElevation,
};

const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;

/// A path or text as a NUL-terminated UTF-16 string, for Win32 calls.
pub fn wide(text: impl AsRef<std::ffi::OsStr>) -> Vec<u16> {
    text.as_ref()
        .encode_wide()
        .chain(std::iter::once(0))
        .collect()
}

/// The NUL-terminated UTF-16 string at `text` (one a Win32 call returned).
///
/// # Safety
/// `text` must point to a NUL-terminated string, alive for the call.
unsafe fn from_wide_ptr(text: *const u16) -> OsString {
    let mut n = 0;
    // SAFETY: the caller's promise: readable up to and including the NUL.
    unsafe {
        while *text.add(n) != 0 {
            n += 1;
        }
        OsString::from_wide(std::slice::from_raw_parts(text, n))
    }
}

fn from_wide(buf: &[u16]) -> String {
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    OsString::from_wide(&buf[..end])
        .to_string_lossy()
        .into_owned()
}

/// Open an existing file for reading; a symbolic link or junction is an
/// error, never followed. With backup semantics: in the helper, which has
/// enabled SeBackupPrivilege, a store only the correlator's service account
/// may read is read all the same (its SQLite header before the snapshot);
/// elsewhere the flag changes nothing. It would also open a folder, which
/// is refused here.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    refuse_reparse_handle(&file, "a symbolic link or junction")?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a folder",
        ));
    }
    Ok(file)
}

/// Open for reading a file in a folder someone else may control: no link
/// or junction is followed, and anything but a plain file is refused.
pub fn open_untrusted(path: &Path) -> io::Result<File> {
    let file = open_nofollow(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Whether `path` was made by persnap's own side of the machine: owned by
/// Administrators, SYSTEM or the account running persnap (what an elevated
/// administrator and a SYSTEM task create), not by another user.
pub fn made_by_me(path: &Path) -> bool {
    if refuse_reparse_point(path).is_err() {
        return false;
    }
    with_security_of(path, |owner, _| Ok(trusted_owner(owner))).unwrap_or(false)
}

/// Administrators, SYSTEM, TrustedInstaller, or the account running persnap.
fn trusted_owner(sid: winapi::um::winnt::PSID) -> bool {
    use winapi::um::securitybaseapi::IsWellKnownSid;
    use winapi::um::winnt::{WinBuiltinAdministratorsSid, WinLocalSystemSid};
    let me = crate::pipe::windows::current_user_sid().ok();
    // SAFETY: a SID the caller holds alive (checked for null first).
    unsafe {
        !sid.is_null()
            && (IsWellKnownSid(sid, WinBuiltinAdministratorsSid) != 0
                || IsWellKnownSid(sid, WinLocalSystemSid) != 0
                || sid_string(sid) == TRUSTED_INSTALLER_SID
                || me.as_deref() == Some(sid_string(sid).as_str()))
    }
}

/// Create a new file (it must not exist). Access follows the folder's
/// permissions, which persnap's own folders restrict.
pub fn create_private(path: &Path) -> io::Result<File> {
    File::options().write(true).create_new(true).open(path)
}

/// Write all of `buf` at `offset` of `file` (each call names its offset,
/// so that several threads may write one file through one handle).
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.seek_write(&buf[done..], offset + done as u64)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => done += n,
        }
    }
    Ok(())
}

/// Open an existing lock file to test it.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    open_nofollow(path)
}

/// Open or create a file for locks and history.
pub fn open_shared_rw(path: &Path, truncate: bool) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
}

/// Create a folder (and its parents when `recursive`).
pub fn create_private_dir(path: &Path, recursive: bool) -> io::Result<()> {
    if recursive {
        fs::create_dir_all(path)
    } else {
        fs::create_dir(path)
    }
}

/// NTFS journals directory changes itself; nothing to flush.
pub fn fsync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Windows writes behind on its own; no hint needed.
pub fn write_behind(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Windows has no per-range write-out: its only way, FlushFileBuffers,
/// also flushes the disk's cache, which is what holds the correlator's
/// commits up, and costs milliseconds a step. A gentle copy there relies
/// on its pauses and the cache manager's lazy writer; the final fsync
/// makes the backup durable.
pub fn flush_range(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// No per-range cache advice on Windows.
pub fn drop_cached(_file: &File, _offset: u64, _len: u64) {}

/// Windows has no per-file cache eviction: what is read next may come
/// from memory.
pub fn evict(_file: &File) -> io::Result<bool> {
    Ok(false)
}

/// Block cloning is not used on Windows; the caller copies.
pub fn reflink(_src: &File, _dst: &File) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Nothing for the whole process on Windows: background mode there (very
/// low I/O priority) would also slow the helper's shadow copy work, and a
/// shadow copy kept longer costs a busy correlator more (copy-on-write).
/// Only a gentle copy runs in background mode ([`background_thread`]).
pub fn lower_io_priority() {}

/// Background processing mode (very low I/O and memory priority) for the
/// calling thread until the guard is dropped: a gentle copy's reads and
/// writes then wait for the correlator's.
pub fn background_thread() -> Background {
    use winapi::um::processthreadsapi::{GetCurrentThread, SetThreadPriority};
    const THREAD_MODE_BACKGROUND_BEGIN: i32 = 0x0001_0000;
    // SAFETY: pseudo-handle of this thread; failure only loses the hint.
    let began = unsafe { SetThreadPriority(GetCurrentThread(), THREAD_MODE_BACKGROUND_BEGIN) } != 0;
    Background(began, std::marker::PhantomData)
}

/// The calling thread in background mode while it lives (not `Send`: it
/// must end on the thread that began it).
pub struct Background(bool, std::marker::PhantomData<*const ()>);

impl Drop for Background {
    fn drop(&mut self) {
        use winapi::um::processthreadsapi::{GetCurrentThread, SetThreadPriority};
        const THREAD_MODE_BACKGROUND_END: i32 = 0x0002_0000;
        if self.0 {
            // SAFETY: as in background_thread, on the same thread.
            unsafe { SetThreadPriority(GetCurrentThread(), THREAD_MODE_BACKGROUND_END) };
        }
    }
}

/// Bytes available to this user on the volume holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let mut available = 0u64;
    // SAFETY: valid NUL-terminated path; out-pointers to locals.
    let ok = unsafe {
        GetDiskFreeSpaceExW(
            wide(path).as_ptr(),
            (&mut available as *mut u64).cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(available)
    }
}

/// Whether two existing paths are on the same volume.
pub fn same_filesystem(a: &Path, b: &Path) -> io::Result<bool> {
    let root = |p: &Path| volume_root(p).map(|r| crate::volume::plain_drive_path(&r));
    Ok(root(a)?.eq_ignore_ascii_case(&root(b)?))
}

/// Whether this process runs elevated (as administrator).
pub fn is_admin() -> bool {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: standard token query; the handle is closed below.
    unsafe {
        if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
            return false;
        }
        let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
        let mut len: DWORD = 0;
        let ok = GetTokenInformation(
            token,
            TokenElevation,
            (&mut elevation as *mut TOKEN_ELEVATION).cast(),
            std::mem::size_of::<TOKEN_ELEVATION>() as DWORD,
            &mut len,
        );
        CloseHandle(token);
        ok != 0 && elevation.TokenIsElevated != 0
    }
}

/// The Windows folder (`C:\\Windows`), as Windows reports it
/// (GetSystemWindowsDirectoryW), never from the environment.
pub fn windows_dir() -> PathBuf {
    let mut buf = [0u16; MAX_PATH + 1];
    // SAFETY: the buffer's length is passed with it.
    let n = unsafe {
        winapi::um::sysinfoapi::GetSystemWindowsDirectoryW(buf.as_mut_ptr(), buf.len() as u32)
    } as usize;
    if n > 0 && n < buf.len() {
        PathBuf::from(OsString::from_wide(&buf[..n]))
    } else {
        PathBuf::from(r"C:\Windows")
    }
}

/// The system folder (`C:\\Windows\\System32`), as Windows reports it
/// (GetSystemDirectoryW), never from the environment.
pub fn system_dir() -> PathBuf {
    let mut buf = [0u16; MAX_PATH + 1];
    // SAFETY: the buffer's length is passed with it.
    let n =
        unsafe { winapi::um::sysinfoapi::GetSystemDirectoryW(buf.as_mut_ptr(), buf.len() as u32) }
            as usize;
    if n > 0 && n < buf.len() {
        PathBuf::from(OsString::from_wide(&buf[..n]))
    } else {
        windows_dir().join("System32")
    }
}

/// This machine's name, for manifests and history.
pub fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_default()
}

/// `%ProgramData%` (normally `C:\\ProgramData`), as Windows knows it
/// (SHGetKnownFolderPath), never from the environment: a user can set
/// `ProgramData` for their own processes and, through `HKCU\\Environment`,
/// for an elevated one, which would then keep the administrator's records
/// where the SYSTEM task never looks.
pub fn program_data() -> PathBuf {
    known_folder(&winapi::um::knownfolders::FOLDERID_ProgramData)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
}

/// `C:\\Program Files` (64-bit), as Windows knows it.
pub fn program_files() -> PathBuf {
    known_folder(&winapi::um::knownfolders::FOLDERID_ProgramFilesX64)
        .or_else(|| known_folder(&winapi::um::knownfolders::FOLDERID_ProgramFiles))
        .unwrap_or_else(|| PathBuf::from(r"C:\Program Files"))
}

fn known_folder(id: &winapi::um::shtypes::KNOWNFOLDERID) -> Option<PathBuf> {
    use winapi::um::combaseapi::CoTaskMemFree;
    use winapi::um::shlobj::SHGetKnownFolderPath;
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: the string is allocated by the call and freed here (also on
    // failure, as the documentation asks).
    unsafe {
        let rc = SHGetKnownFolderPath(id, 0, std::ptr::null_mut(), &mut text);
        let out = (rc == 0 && !text.is_null()).then(|| PathBuf::from(from_wide_ptr(text)));
        CoTaskMemFree(text.cast());
        out
    }
}

/// The permissions of persnap's folders under `%ProgramData%`: owned by
/// Administrators, a protected DACL (nothing inherited from ProgramData,
/// where users may create files) giving SYSTEM and Administrators full
/// control and Users read only, inherited by everything inside.
pub const ADMIN_DIR_SDDL: &str = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)";

/// `%ProgramData%\persnap`, the root of the administrator's data.
pub fn admin_root() -> PathBuf {
    program_data().join("persnap")
}

/// Create a folder (and missing parents) for administrator-owned data
/// inside [`admin_root`]: the root and every folder down to `path` are
/// (re)made the administrators' — owner Administrators, protected DACL
/// ([`ADMIN_DIR_SDDL`]). A user who created one of them before persnap
/// did loses it. A reparse point on the way is refused, never followed.
pub fn create_admin_dir(path: &Path) -> io::Result<()> {
    let root = admin_root();
    if !path.starts_with(&root) {
        // Elsewhere (tests): the folder itself gets the permissions.
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        return secure_admin_dir(path);
    }
    secure_admin_dir(&root)?;
    // Every folder on the way gets the permissions too: one a user made
    // before persnap did is taken back, not trusted.
    let inner: Vec<&Path> = path.ancestors().take_while(|d| *d != root).collect();
    for dir in inner.into_iter().rev() {
        secure_admin_dir(dir)?;
    }
    Ok(())
}

/// A path that is a junction or symbolic link (a reparse point) is refused.
pub fn refuse_reparse_point(path: &Path) -> io::Result<()> {
    use std::os::windows::fs::MetadataExt;
    let meta = fs::symlink_metadata(path)?;
    if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(io::Error::other(format!(
            "{} is a junction or link; persnap does not follow it",
            path.display()
        )));
    }
    Ok(())
}

/// Create `dir` if missing and give it the administrators' protected
/// permissions ([`ADMIN_DIR_SDDL`]), taking ownership first if a user made
/// it (the helper runs elevated; ownership needs SeTakeOwnershipPrivilege
/// and SeRestorePrivilege, enabled here).
pub fn secure_admin_dir(dir: &Path) -> io::Result<()> {
    let created = create_dir_with_sddl(dir, ADMIN_DIR_SDDL)?;
    refuse_reparse_point(dir)?;
    if created {
        return Ok(());
    }
    // Best effort: an administrator holds both; if not, the change below
    // fails with a plain "access denied".
    let _ = enable_privilege("SeTakeOwnershipPrivilege");
    let _ = enable_privilege("SeRestorePrivilege");
    apply_sddl(dir, ADMIN_DIR_SDDL)
}

/// Give `path` the owner (if any) and DACL of `sddl`, protected from
/// inheritance. The folder is opened once, as itself (a junction or link
/// in its place is refused, never followed), and changed through that
/// handle: nothing can be swapped in between the check and the change.
pub fn apply_sddl(path: &Path, sddl: &str) -> io::Result<()> {
    use winapi::um::accctrl::SE_FILE_OBJECT;
    use winapi::um::aclapi::SetSecurityInfo;
    use winapi::um::fileapi::{
        BY_HANDLE_FILE_INFORMATION, CreateFileW, GetFileInformationByHandle, OPEN_EXISTING,
    };
    use winapi::um::handleapi::INVALID_HANDLE_VALUE;
    use winapi::um::winnt::{
        DACL_SECURITY_INFORMATION, FILE_ATTRIBUTE_DIRECTORY, FILE_SHARE_DELETE, FILE_SHARE_READ,
        FILE_SHARE_WRITE, OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
        READ_CONTROL, WRITE_DAC, WRITE_OWNER,
    };
    // SAFETY: a NUL-terminated name; the handle is closed on every path.
    let handle = unsafe {
        CreateFileW(
            wide(path).as_ptr(),
            READ_CONTROL | WRITE_DAC | WRITE_OWNER,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            std::ptr::null_mut(),
            OPEN_EXISTING,
            FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT,
            std::ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    struct Closing(HANDLE);
    impl Drop for Closing {
        fn drop(&mut self) {
            // SAFETY: a handle we opened.
            unsafe { CloseHandle(self.0) };
        }
    }
    let handle = Closing(handle);
    // SAFETY: the structure is filled by the call.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    if unsafe { GetFileInformationByHandle(handle.0, &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    if info.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT != 0
        || info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY == 0
    {
        return Err(io::Error::other(format!(
            "{} is a junction, a link or not a folder; persnap does not follow it",
            path.display()
        )));
    }
    with_descriptor(sddl, |sd| {
        // SAFETY: owner and DACL point into `sd`, alive for the call.
        unsafe {
            let (owner, dacl) = owner_and_dacl(sd);
            let mut what = DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION;
            if !owner.is_null() {
                what |= OWNER_SECURITY_INFORMATION;
            }
            let rc = SetSecurityInfo(
                handle.0,
                SE_FILE_OBJECT,
                what,
                owner,
                std::ptr::null_mut(),
                dacl,
                std::ptr::null_mut(),
            );
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc as i32));
            }
        }
        Ok(())
    })
}

/// Run `use_it` with the security descriptor `sddl` describes (freed after).
fn with_descriptor<T>(
    sddl: &str,
    use_it: impl FnOnce(winapi::um::winnt::PSECURITY_DESCRIPTOR) -> io::Result<T>,
) -> io::Result<T> {
    use winapi::shared::sddl::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
    };
    use winapi::um::winbase::LocalFree;
    // SAFETY: the descriptor is allocated by the call and freed after use.
    unsafe {
        let mut sd: winapi::um::winnt::PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        if ConvertStringSecurityDescriptorToSecurityDescriptorW(
            wide(sddl).as_ptr(),
            SDDL_REVISION_1 as DWORD,
            &mut sd,
            std::ptr::null_mut(),
        ) == 0
        {
            return Err(io::Error::last_os_error());
        }
        let result = use_it(sd);
        LocalFree(sd.cast());
        result
    }
}

/// The owner and DACL of the descriptor `sd` (pointers into it).
///
/// # Safety
/// `sd` must be a valid security descriptor, alive while they are used.
unsafe fn owner_and_dacl(
    sd: winapi::um::winnt::PSECURITY_DESCRIPTOR,
) -> (winapi::um::winnt::PSID, winapi::um::winnt::PACL) {
    use winapi::um::securitybaseapi::{GetSecurityDescriptorDacl, GetSecurityDescriptorOwner};
    let (mut owner, mut dacl) = (std::ptr::null_mut(), std::ptr::null_mut());
    let (mut defaulted, mut present) = (0, 0);
    // SAFETY: the caller's promise; out-pointers to locals.
    unsafe {
        GetSecurityDescriptorOwner(sd, &mut owner, &mut defaulted);
        GetSecurityDescriptorDacl(sd, &mut present, &mut dacl, &mut defaulted);
    }
    (owner, dacl)
}

/// Create `dir` with the security descriptor `sddl` from the start;
/// `false` if it existed already.
fn create_dir_with_sddl(dir: &Path, sddl: &str) -> io::Result<bool> {
    use winapi::shared::winerror::ERROR_ALREADY_EXISTS;
    use winapi::um::fileapi::CreateDirectoryW;
    use winapi::um::minwinbase::SECURITY_ATTRIBUTES;
    with_descriptor(sddl, |sd| {
        let mut sa = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as DWORD,
            lpSecurityDescriptor: sd,
            bInheritHandle: 0,
        };
        // SAFETY: a NUL-terminated name and attributes that outlive the call.
        if unsafe { CreateDirectoryW(wide(dir).as_ptr(), &mut sa) } != 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(ERROR_ALREADY_EXISTS as i32) {
            return Ok(false);
        }
        Err(err)
    })
}

/// A secret file's permissions: owner Administrators; SYSTEM, which runs
/// the schedules, and Administrators, who own it anyway (and so could
/// always take it) and whose helper reads it to put it back when replacing
/// a schedule fails. A schedule run as a named account adds that account,
/// read only ([`secret_sddl`]).
const SECRET_FILE_SDDL: &str = "O:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)";

/// [`SECRET_FILE_SDDL`], readable also by `reader` (a SID string).
fn secret_sddl(reader: Option<&str>) -> String {
    match reader {
        None => SECRET_FILE_SDDL.into(),
        Some(sid) => format!("{SECRET_FILE_SDDL}(A;;FR;;;{sid})"),
    }
}

/// The SID (`S-1-5-21-…`) of a Windows account as Task Scheduler takes it:
/// `user`, `.\\user`, `DOMAIN\\user` or `user@domain`.
pub fn account_sid(account: &str) -> io::Result<String> {
    use winapi::um::winbase::LookupAccountNameW;
    // `.\user` is Task Scheduler's "this computer"; the lookup wants the
    // name alone (it looks on this computer first).
    let name = account.strip_prefix(".\\").unwrap_or(account);
    let mut sid = vec![0u8; 256];
    let mut domain = [0u16; 256];
    let (mut sid_len, mut domain_len) = (sid.len() as DWORD, domain.len() as DWORD);
    let mut kind = 0;
    // SAFETY: buffers with their lengths.
    let ok = unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            wide(name).as_ptr(),
            sid.as_mut_ptr().cast(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    } != 0;
    if !ok {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("Windows does not know the account {account} ({e})"),
        ));
    }
    Ok(sid_string(sid.as_mut_ptr().cast()))
}

/// Write a secret for SYSTEM (and, read only, the account `reader`, that
/// a schedule runs as): `path` is made anew (an old one is removed first: a
/// file replaced in place keeps its old permissions) with
/// [`SECRET_FILE_SDDL`].
pub fn write_secret(path: &Path, bytes: &[u8], reader: Option<&str>) -> io::Result<()> {
    use std::io::Write;
    use std::os::windows::io::FromRawHandle;
    use winapi::um::fileapi::{CREATE_NEW, CreateFileW};
    use winapi::um::handleapi::INVALID_HANDLE_VALUE;
    use winapi::um::minwinbase::SECURITY_ATTRIBUTES;
    use winapi::um::winnt::GENERIC_WRITE;
    let sid = reader.map(account_sid).transpose()?;
    let sddl = secret_sddl(sid.as_deref());
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let handle = with_descriptor(&sddl, |sd| {
        let mut sa = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as DWORD,
            lpSecurityDescriptor: sd,
            bInheritHandle: 0,
        };
        // SAFETY: a NUL-terminated name and attributes that outlive the
        // call; the handle becomes a File below, which closes it.
        let handle = unsafe {
            CreateFileW(
                wide(path).as_ptr(),
                GENERIC_WRITE,
                0,
                &mut sa,
                CREATE_NEW,
                FILE_FLAG_OPEN_REPARSE_POINT,
                std::ptr::null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        Ok(handle)
    })?;
    // SAFETY: a file handle we own, given to File once.
    let mut file = unsafe { File::from_raw_handle(handle.cast()) };
    file.write_all(bytes)?;
    file.sync_all()
}

/// Refuse a secret file only administrators should be able to change.
pub fn secret_only(path: &Path) -> io::Result<()> {
    refuse_reparse_point(path)?;
    owned_by_admins(path)
}

/// How to mend what [`admin_only`] refuses.
pub const ADMIN_ONLY_FIX: &str =
    "Let persnap's helper make it again (remove the folder as administrator).";

/// Whether only administrators can change `path` ([`owned_by_admins`]);
/// a folder *above* it (`ancestor`) may also let others add entries, as
/// stock `C:\` (Authenticated Users: create folders) and `C:\ProgramData`
/// (Users: create files and folders) do.
/// Adding is harmless there, like a sticky `/tmp` on Unix: what matters is
/// that nobody else may delete, rename or re-permission what is already
/// inside (DELETE on it, or delete-child, write-DAC or take-ownership on
/// the folder), so persnap's own folder cannot be swapped.
pub fn admin_only(path: &Path, ancestor: bool) -> io::Result<()> {
    refuse_reparse_point(path)?;
    with_security_of(path, |owner, dacl| {
        match judge_security(owner, dacl, ancestor) {
            Some(problem) => Err(io::Error::other(format!("{} {problem}", path.display()))),
            None => Ok(()),
        }
    })
}

/// Whether only administrators can change `path`: it is owned by
/// Administrators, SYSTEM, TrustedInstaller or the (elevated) account
/// running persnap, and
/// its DACL (as Windows applies it, inherited entries included) lets
/// nobody else write, add, delete or change permissions. A missing (NULL)
/// DACL lets everyone in, and is refused.
pub fn owned_by_admins(path: &Path) -> io::Result<()> {
    admin_only(path, false)
}

/// Run `judge` with the owner and DACL of `path` (as Windows applies them,
/// inherited entries included).
fn with_security_of<T>(
    path: &Path,
    judge: impl FnOnce(winapi::um::winnt::PSID, winapi::um::winnt::PACL) -> io::Result<T>,
) -> io::Result<T> {
    use winapi::um::accctrl::SE_FILE_OBJECT;
    use winapi::um::aclapi::GetNamedSecurityInfoW;
    use winapi::um::winbase::LocalFree;
    use winapi::um::winnt::{
        DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PACL, PSECURITY_DESCRIPTOR, PSID,
    };
    // SAFETY: GetNamedSecurityInfoW allocates the descriptor, freed below;
    // the owner and DACL point into it and are used only inside `judge`.
    unsafe {
        let mut owner: PSID = std::ptr::null_mut();
        let mut dacl: PACL = std::ptr::null_mut();
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        let rc = GetNamedSecurityInfoW(
            wide(path).as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut sd,
        );
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
        let result = judge(owner, dacl);
        LocalFree(sd.cast());
        result
    }
}

/// TrustedInstaller (`NT SERVICE\TrustedInstaller`), owner of `C:\` and
/// of Program Files on stock Windows, with full control of what is in
/// Program Files: only the system's servicing (as SYSTEM) may act as it.
const TRUSTED_INSTALLER_SID: &str =
    "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464";

/// What makes an owner and DACL unsafe for a folder persnap trusts (see
/// [`admin_only`]), in words that follow the path; `None` if it is safe.
fn judge_security(
    owner: winapi::um::winnt::PSID,
    dacl: winapi::um::winnt::PACL,
    ancestor: bool,
) -> Option<String> {
    use winapi::um::securitybaseapi::GetAce;
    use winapi::um::winnt::{
        ACCESS_ALLOWED_ACE, ACCESS_ALLOWED_ACE_TYPE, ACE_HEADER, DELETE, FILE_ADD_FILE,
        FILE_ADD_SUBDIRECTORY, FILE_APPEND_DATA, FILE_DELETE_CHILD, FILE_WRITE_DATA, GENERIC_ALL,
        GENERIC_WRITE, INHERIT_ONLY_ACE, PSID, WRITE_DAC, WRITE_OWNER,
    };
    // SAFETY: the SIDs and ACEs point into a live descriptor (the caller's).
    unsafe {
        let trusted = |sid: PSID| trusted_owner(sid);
        if !trusted(owner) {
            return Some(format!(
                "is owned by {}, not by Administrators or SYSTEM",
                sid_string(owner)
            ));
        }
        if dacl.is_null() {
            return Some("lets everyone in (no DACL)".into());
        }
        let mut writes = FILE_WRITE_DATA
            | FILE_ADD_FILE
            | FILE_APPEND_DATA
            | FILE_ADD_SUBDIRECTORY
            | FILE_DELETE_CHILD
            | DELETE
            | WRITE_DAC
            | WRITE_OWNER
            | GENERIC_WRITE
            | GENERIC_ALL;
        if ancestor {
            // Adding files and folders (the same bits as write and append
            // data) is what stock C:\ and ProgramData allow.
            writes &= !(FILE_ADD_FILE | FILE_ADD_SUBDIRECTORY);
        }
        for i in 0..u32::from((*dacl).AceCount) {
            let mut ace: *mut std::ffi::c_void = std::ptr::null_mut();
            if GetAce(dacl, i, &mut ace) == 0 {
                continue;
            }
            let header = &*(ace as *const ACE_HEADER);
            if header.AceType != ACCESS_ALLOWED_ACE_TYPE || header.AceFlags & INHERIT_ONLY_ACE != 0
            {
                continue;
            }
            let allowed = &*(ace as *const ACCESS_ALLOWED_ACE);
            let sid = (&allowed.SidStart as *const u32).cast_mut().cast();
            if allowed.Mask & writes != 0 && !trusted(sid) {
                return Some(format!(
                    "may be changed by {} (access mask 0x{:x})",
                    account_or_sid(sid),
                    allowed.Mask
                ));
            }
        }
        None
    }
}

/// An account's name for messages (`BUILTIN\Users`), or its SID.
fn account_or_sid(sid: winapi::um::winnt::PSID) -> String {
    use winapi::um::winbase::LookupAccountSidW;
    let (mut name, mut domain) = ([0u16; 256], [0u16; 256]);
    let (mut name_len, mut domain_len) = (name.len() as DWORD, domain.len() as DWORD);
    let mut kind = 0;
    // SAFETY: buffers with their lengths; the SID is the caller's, alive.
    let ok = unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid,
            name.as_mut_ptr(),
            &mut name_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    } != 0;
    let text = sid_string(sid);
    if !ok {
        return text;
    }
    let (name, domain) = (from_wide(&name), from_wide(&domain));
    if domain.is_empty() {
        format!("{name} ({text})")
    } else {
        format!("{domain}\\{name} ({text})")
    }
}

/// [`judge_security`] of a descriptor given as SDDL (tests: the stock
/// permissions of Windows folders).
#[cfg(test)]
fn judge_sddl(sddl: &str, ancestor: bool) -> io::Result<Option<String>> {
    with_descriptor(sddl, |sd| {
        // SAFETY: owner and DACL point into `sd`, alive for the call.
        let (owner, dacl) = unsafe { owner_and_dacl(sd) };
        Ok(judge_security(owner, dacl, ancestor))
    })
}

/// A SID in its `S-1-…` form (empty if it cannot be converted).
fn sid_string(sid: winapi::um::winnt::PSID) -> String {
    use winapi::shared::sddl::ConvertSidToStringSidW;
    use winapi::um::winbase::LocalFree;
    if sid.is_null() {
        return "nobody".into();
    }
    // SAFETY: the string is allocated by the call and freed here.
    unsafe {
        let mut text: *mut u16 = std::ptr::null_mut();
        if ConvertSidToStringSidW(sid, &mut text) == 0 {
            return String::new();
        }
        let out = from_wide_ptr(text).to_string_lossy().into_owned();
        LocalFree(text.cast());
        out
    }
}

/// Enable a privilege the elevated token holds (best effort).
fn enable_privilege(name: &str) -> io::Result<()> {
    use winapi::shared::winerror::ERROR_NOT_ALL_ASSIGNED;
    use winapi::um::errhandlingapi::GetLastError;
    use winapi::um::securitybaseapi::AdjustTokenPrivileges;
    use winapi::um::winbase::LookupPrivilegeValueW;
    use winapi::um::winnt::{
        LUID_AND_ATTRIBUTES, SE_PRIVILEGE_ENABLED, TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES,
    };
    // SAFETY: token handle closed below; structures sized as declared.
    unsafe {
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES, &mut token) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut tp = TOKEN_PRIVILEGES {
            PrivilegeCount: 1,
            Privileges: [LUID_AND_ATTRIBUTES {
                Luid: std::mem::zeroed(),
                Attributes: SE_PRIVILEGE_ENABLED,
            }],
        };
        let mut result = Ok(());
        if LookupPrivilegeValueW(
            std::ptr::null(),
            wide(name).as_ptr(),
            &mut tp.Privileges[0].Luid,
        ) == 0
            || AdjustTokenPrivileges(
                token,
                0,
                &mut tp,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ) == 0
        {
            result = Err(io::Error::last_os_error());
        } else if GetLastError() == ERROR_NOT_ALL_ASSIGNED {
            // The call "succeeds" for a privilege the token does not hold.
            result = Err(io::Error::other(format!(
                "this account does not hold {name}"
            )));
        }
        CloseHandle(token);
        result
    }
}

/// Enable SeBackupPrivilege for this process (the helper, once, at
/// start): with it, files opened with backup semantics are read whatever
/// their permissions say, as backup programs do, so a store folder only
/// the correlator's service account may read is still backed up from the
/// shadow copy (which keeps the live files' permissions).
pub fn enable_backup_privilege() -> io::Result<()> {
    enable_privilege("SeBackupPrivilege")
}

/// Console interrupts (Ctrl+C, Ctrl+Break) the helper has ignored.
pub static IGNORED_INTERRUPTS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The helper ignores Ctrl+C and Ctrl+Break: started from an elevated
/// console it shares the console, and the keystroke meant for persnap
/// would otherwise kill it mid-copy. persnap catches it and sends the
/// cancel frame, which the helper obeys (removing the partial copy and the
/// shadow copy). Closing the console, logging off and shutting down still
/// end it, as they should.
pub fn ignore_console_interrupts() -> io::Result<()> {
    use winapi::shared::minwindef::{BOOL, FALSE, TRUE};
    use winapi::um::consoleapi::SetConsoleCtrlHandler;
    use winapi::um::wincon::{CTRL_BREAK_EVENT, CTRL_C_EVENT};
    unsafe extern "system" fn handler(event: DWORD) -> BOOL {
        if event == CTRL_C_EVENT || event == CTRL_BREAK_EVENT {
            IGNORED_INTERRUPTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            TRUE
        } else {
            FALSE
        }
    }
    // SAFETY: registers a handler that only touches an atomic.
    if unsafe { SetConsoleCtrlHandler(Some(handler), TRUE) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Give a process without a console (the helper, a Windows-subsystem
/// program so that no console or Terminal window shows when UAC starts
/// it) a console that has no window, for the console programs it starts
/// (schtasks, rclone) to share: started from a process without one, each
/// would get a window of its own. The console is borrowed from a `cmd.exe`
/// started with CREATE_NO_WINDOW, which ends as soon as the helper is
/// attached (a console lives while any process is attached to it). Best
/// effort: without it, those programs show windows, nothing fails.
pub fn windowless_console() {
    use std::os::windows::process::CommandExt;
    use winapi::um::wincon::{AttachConsole, GetConsoleWindow};
    const CREATE_NO_WINDOW: u32 = 0x0800_0000;
    // SAFETY: plain queries and calls on this process's console.
    if !unsafe { GetConsoleWindow() }.is_null() {
        return;
    }
    let cmd = system_dir().join("cmd.exe");
    // `/k` waits on its input, a pipe held here, until it is closed.
    let Ok(mut host) = std::process::Command::new(cmd)
        .args(["/d", "/q", "/k"])
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .creation_flags(CREATE_NO_WINDOW)
        .spawn()
    else {
        return;
    };
    // The console exists once cmd runs; try for up to a second.
    for _ in 0..50 {
        // SAFETY: attaching to a child's console; failure changes nothing.
        if unsafe { AttachConsole(host.id()) } != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(host.stdin.take());
    let _ = host.kill();
    let _ = host.wait();
}

/// The app started from the Start menu or Explorer: Windows made a console
/// window just for it (persnap.exe is a console program, so that in cmd,
/// PowerShell and scripts the command line waits, prints and returns its
/// exit status). Let go of that console, so no console window stays beside
/// the app; one shared with a shell that started the app is kept.
pub fn release_own_console() {
    use winapi::um::wincon::{FreeConsole, GetConsoleProcessList};
    let mut processes = [0u32; 2];
    // SAFETY: the buffer's length is passed with it.
    let attached = unsafe { GetConsoleProcessList(processes.as_mut_ptr(), 2) };
    if attached == 1 {
        // SAFETY: plain call; nothing else holds the console.
        unsafe { FreeConsole() };
    }
}

/// Whether the privilege `name` is enabled in this process's token.
pub fn privilege_enabled(name: &str) -> io::Result<bool> {
    use winapi::um::winbase::LookupPrivilegeValueW;
    use winapi::um::winnt::{LUID, SE_PRIVILEGE_ENABLED, TOKEN_PRIVILEGES, TokenPrivileges};
    // SAFETY: the buffer is sized by the first call; handle closed below.
    unsafe {
        let mut luid: LUID = std::mem::zeroed();
        if LookupPrivilegeValueW(std::ptr::null(), wide(name).as_ptr(), &mut luid) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut len: DWORD = 0;
        GetTokenInformation(token, TokenPrivileges, std::ptr::null_mut(), 0, &mut len);
        let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
        let ok = GetTokenInformation(
            token,
            TokenPrivileges,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as DWORD,
            &mut len,
        );
        CloseHandle(token);
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        let privileges = &*(buf.as_ptr() as *const TOKEN_PRIVILEGES);
        let all = std::slice::from_raw_parts(
            privileges.Privileges.as_ptr(),
            privileges.PrivilegeCount as usize,
        );
        Ok(all.iter().any(|p| {
            p.Luid.LowPart == luid.LowPart
                && p.Luid.HighPart == luid.HighPart
                && p.Attributes & SE_PRIVILEGE_ENABLED != 0
        }))
    }
}

/// Create `dir` if missing. Under persnap's folder in ProgramData (the
/// elevated helper's run locks) it is made the administrators' like every
/// folder there ([`create_admin_dir`]): a user may not plant or remove the
/// locks that tell a live run from a leftover. Elsewhere (the user's own
/// profile) its permissions come from its parent's inheritable ACL.
pub fn secure_private_dir(dir: &Path) -> io::Result<()> {
    if dir.starts_with(admin_root()) && is_admin() {
        return create_admin_dir(dir);
    }
    fs::create_dir_all(dir)
}

/// Open a folder as the base of [`open_beneath`] (the store folder inside
/// the shadow copy): with backup semantics, so that with SeBackupPrivilege
/// its permissions do not stand in the way, and as itself, so that a
/// junction or link in its place is refused, never followed.
pub fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    let dir = File::options()
        .read(true)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    refuse_reparse_handle(&dir, "a junction or link")?;
    Ok(dir)
}

/// Open `name` in the folder `dir_path` for reading, never through a link,
/// with backup semantics (see [`open_dir_nofollow`]).
pub fn open_beneath(_dir: &File, dir_path: &Path, name: &str) -> io::Result<File> {
    if name.contains(['/', '\\', ':']) || name == ".." || name == "." {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let file = File::options()
        .read(true)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(dir_path.join(name))?;
    refuse_reparse_handle(&file, "a symbolic link or junction")?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a folder",
        ));
    }
    Ok(file)
}

fn refuse_reparse_handle(file: &File, what: &str) -> io::Result<()> {
    use std::os::windows::fs::MetadataExt;
    if file.metadata()?.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}"),
        ));
    }
    Ok(())
}

/// Inherited files are a Linux worker's; never on Windows.
pub fn inherited_file(fd: i32) -> io::Result<File> {
    inherited_pipe(fd)
}

/// Inherited pipes are a Linux worker's; never on Windows.
pub fn inherited_pipe(fd: i32) -> io::Result<File> {
    Err(io::Error::other(format!(
        "no inherited descriptor {fd} on Windows"
    )))
}

/// Hard links are not looked at on Windows (the snapshot is read by path).
pub fn link_count(_meta: &fs::Metadata) -> u64 {
    1
}

/// The device number of a path's filesystem (not used on Windows).
pub fn device_of(_path: &Path) -> Option<u64> {
    None
}

/// Where run locks live: under ProgramData for the elevated helper, under
/// the user's local application data otherwise; all are checked.
pub fn lock_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("PERSNAP_RUN_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    let system = Some(admin_root().join("run"));
    let user =
        std::env::var_os("LOCALAPPDATA").map(|d| PathBuf::from(d).join("persnap").join("run"));
    let (first, second) = if is_admin() {
        (system, user)
    } else {
        (user, system)
    };
    dirs.extend(first);
    dirs.extend(second);
    if dirs.is_empty() {
        dirs.push(std::env::temp_dir().join("persnap-run"));
    }
    dirs
}

/// A SQLite `file:` URI for `path`, in any Windows path form (see
/// [`super::windows_file_uri`]).
pub fn sqlite_file_uri(path: &Path) -> String {
    super::windows_file_uri(&long_path_form(&path.to_string_lossy()))
}

/// A long absolute path (scratch copies deep in a backup folder) in the
/// `\\?\` form, which Windows opens past 260 characters; SQLite hands the
/// name to CreateFileW as it is, so a plain one that long would fail.
fn long_path_form(path: &str) -> String {
    const CLASSIC_MAX: usize = 248;
    let bytes = path.as_bytes();
    if path.len() < CLASSIC_MAX || path.contains('/') {
        path.to_owned()
    } else if let Some(share) = path
        .strip_prefix(r"\\")
        .filter(|p| !p.starts_with(['?', '.']))
    {
        format!(r"\\?\UNC\{share}")
    } else if bytes.len() > 2 && bytes[0].is_ascii_alphabetic() && &bytes[1..3] == b":\\" {
        format!(r"\\?\{path}")
    } else {
        path.to_owned()
    }
}

/// The root of the volume holding `path` (`C:\`, or a mount folder such as
/// `C:\mnt\data\`), as GetVolumePathNameW reports it.
pub fn volume_root(path: &Path) -> io::Result<String> {
    let mut buf = vec![0u16; 32 * 1024];
    // SAFETY: buffer length passed with the buffer.
    let ok =
        unsafe { GetVolumePathNameW(wide(path).as_ptr(), buf.as_mut_ptr(), buf.len() as DWORD) };
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(from_wide(&buf))
    }
}

/// Filesystem name (NTFS, ReFS, FAT32 …) and whether the volume is a fixed
/// local disk.
pub fn volume_facts(root: &str) -> io::Result<(String, bool)> {
    let root_w: Vec<u16> = root.encode_utf16().chain(std::iter::once(0)).collect();
    let mut fs_name = [0u16; MAX_PATH + 1];
    // SAFETY: buffers with their lengths; unused outputs are null.
    let ok = unsafe {
        GetVolumeInformationW(
            root_w.as_ptr(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            fs_name.as_mut_ptr(),
            fs_name.len() as DWORD,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: valid NUL-terminated root path.
    let fixed = unsafe { GetDriveTypeW(root_w.as_ptr()) } == DRIVE_FIXED;
    Ok((from_wide(&fs_name), fixed))
}

/// Store files another process has open, each said as "process 1234
/// (correlator.exe) has the database open". The Restart Manager names the
/// holders; a file it names nobody for still counts as in use when it
/// cannot be opened for reading without sharing (so a read-only file, or
/// one only readable by its owner, is never taken for "not in use": the
/// check asks for no write access).
pub fn processes_using(paths: &[PathBuf]) -> Vec<String> {
    const ERROR_SHARING_VIOLATION: i32 = 32;
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return Vec::new();
    }
    let holders = restart_manager_holders(&existing).unwrap_or_default();
    if !holders.is_empty() {
        return holders
            .iter()
            .map(|(pid, app)| describe_holder(*pid, app))
            .collect();
    }
    existing
        .into_iter()
        .filter(|p| {
            let exclusive = File::options().read(true).share_mode(0).open(p);
            matches!(exclusive, Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION))
        })
        .map(|p| format!("another program has {} open", p.display()))
        .collect()
}

/// "process 1234 (Apama correlator) has the database open".
pub fn describe_holder(pid: u32, app: &str) -> String {
    let app = app.trim();
    if app.is_empty() {
        format!("process {pid} has the database open")
    } else {
        format!("process {pid} ({app}) has the database open")
    }
}

/// The processes (id, application name) the Restart Manager says hold any
/// of `paths` open.
fn restart_manager_holders(paths: &[&PathBuf]) -> io::Result<Vec<(u32, String)>> {
    use winapi::shared::winerror::{ERROR_MORE_DATA, ERROR_SUCCESS};
    use winapi::um::restartmanager::{
        CCH_RM_SESSION_KEY, RM_PROCESS_INFO, RmEndSession, RmGetList, RmRegisterResources,
        RmStartSession,
    };
    let names: Vec<Vec<u16>> = paths.iter().map(|p| wide(p.as_os_str())).collect();
    let mut pointers: Vec<*const u16> = names.iter().map(|n| n.as_ptr()).collect();
    let mut session: DWORD = 0;
    let mut key = [0u16; CCH_RM_SESSION_KEY + 1];
    // SAFETY: buffers sized as the API documents; the session is ended on
    // every path.
    unsafe {
        let rc = RmStartSession(&mut session, 0, key.as_mut_ptr());
        if rc != ERROR_SUCCESS {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
        struct Session(DWORD);
        impl Drop for Session {
            fn drop(&mut self) {
                // SAFETY: a session we started.
                unsafe {
                    RmEndSession(self.0);
                }
            }
        }
        let _end = Session(session);
        let rc = RmRegisterResources(
            session,
            pointers.len() as u32,
            pointers.as_mut_ptr(),
            0,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        if rc != ERROR_SUCCESS {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
        let mut infos: Vec<RM_PROCESS_INFO> = Vec::new();
        for _ in 0..3 {
            let (mut needed, mut count, mut reasons) = (0u32, infos.len() as u32, 0u32);
            let rc = RmGetList(
                session,
                &mut needed,
                &mut count,
                if infos.is_empty() {
                    std::ptr::null_mut()
                } else {
                    infos.as_mut_ptr()
                },
                &mut reasons,
            );
            if rc == ERROR_SUCCESS {
                infos.truncate(count as usize);
                return Ok(infos
                    .iter()
                    .map(|i| (i.Process.dwProcessId, from_wide(&i.strAppName)))
                    .collect());
            }
            if rc != ERROR_MORE_DATA {
                return Err(io::Error::from_raw_os_error(rc as i32));
            }
            infos = vec![std::mem::zeroed(); needed as usize + 1];
        }
        Err(io::Error::other("the list of programs kept changing"))
    }
}

/// Give the file `path` the access the file `like` had (a restored store
/// file, the one it replaces): `like`'s own (explicit) entries and its
/// protection; inherited entries come from the folder, as they did for
/// `like`. A service account given access on the old file itself keeps
/// it on the restored one. Nothing for a folder `like` (new files inherit
/// its permissions already).
pub fn take_ownership_of(path: &Path, like: &Path) -> io::Result<()> {
    use winapi::um::accctrl::SE_FILE_OBJECT;
    use winapi::um::aclapi::{GetNamedSecurityInfoW, SetNamedSecurityInfoW};
    use winapi::um::securitybaseapi::GetSecurityDescriptorControl;
    use winapi::um::winbase::LocalFree;
    use winapi::um::winnt::{
        DACL_SECURITY_INFORMATION, PACL, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
        SE_DACL_PROTECTED, UNPROTECTED_DACL_SECURITY_INFORMATION,
    };
    if !fs::symlink_metadata(like)?.is_file() {
        return Ok(());
    }
    // SAFETY: the descriptor is allocated by GetNamedSecurityInfoW and
    // freed below; the DACL points into it.
    unsafe {
        let mut dacl: PACL = std::ptr::null_mut();
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        let rc = GetNamedSecurityInfoW(
            wide(like).as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut sd,
        );
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
        let (mut control, mut revision) = (0, 0);
        GetSecurityDescriptorControl(sd, &mut control, &mut revision);
        // Unprotected: the entries marked inherited are taken from the
        // folder again, the file's own ones are copied.
        let protection = if control & SE_DACL_PROTECTED != 0 {
            PROTECTED_DACL_SECURITY_INFORMATION
        } else {
            UNPROTECTED_DACL_SECURITY_INFORMATION
        };
        let rc = if dacl.is_null() {
            0
        } else {
            SetNamedSecurityInfoW(
                wide(path).as_ptr() as *mut u16,
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | protection,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                dacl,
                std::ptr::null_mut(),
            )
        };
        LocalFree(sd.cast());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
    }
    Ok(())
}

/// Not used on Windows (no sudo).
pub fn home_of(_user: &str) -> Option<PathBuf> {
    None
}

/// A console tool's output as text: Windows console programs (schtasks,
/// vssadmin) write to a pipe in the OEM code page (850 on a German or
/// French Windows, 437 on an English one), not UTF-8, so "Zugriff
/// verweigert" or "Accès refusé" would otherwise come out garbled.
pub fn decode_tool_output(bytes: &[u8]) -> String {
    use winapi::um::stringapiset::MultiByteToWideChar;
    use winapi::um::winnls::CP_OEMCP;
    if bytes.is_empty() || bytes.len() > i32::MAX as usize {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    // SAFETY: lengths passed with their buffers; the first call sizes the
    // second.
    unsafe {
        let n = MultiByteToWideChar(
            CP_OEMCP,
            0,
            bytes.as_ptr().cast(),
            bytes.len() as i32,
            std::ptr::null_mut(),
            0,
        );
        if n <= 0 {
            return String::from_utf8_lossy(bytes).into_owned();
        }
        let mut wide_text = vec![0u16; n as usize];
        MultiByteToWideChar(
            CP_OEMCP,
            0,
            bytes.as_ptr().cast(),
            bytes.len() as i32,
            wide_text.as_mut_ptr(),
            n,
        );
        String::from_utf16_lossy(&wide_text)
    }
}

/// Every Win32 service on this machine: its name and the command line it
/// starts (`QueryServiceConfigW`'s binary path), running or not. Services
/// this user may not query are left out.
pub fn service_command_lines() -> Vec<(String, String)> {
    use winapi::shared::winerror::ERROR_MORE_DATA;
    use winapi::um::errhandlingapi::GetLastError;
    use winapi::um::winnt::SERVICE_WIN32;
    use winapi::um::winsvc::{
        CloseServiceHandle, ENUM_SERVICE_STATUS_PROCESSW, EnumServicesStatusExW, OpenSCManagerW,
        OpenServiceW, QUERY_SERVICE_CONFIGW, QueryServiceConfigW, SC_ENUM_PROCESS_INFO,
        SC_MANAGER_ENUMERATE_SERVICE, SERVICE_QUERY_CONFIG, SERVICE_STATE_ALL,
    };
    let mut out = Vec::new();
    // SAFETY: handles are closed below; the buffers (u64s, for the
    // structures' alignment) are sized by the calls and outlive every
    // pointer into them.
    unsafe {
        let manager = OpenSCManagerW(
            std::ptr::null(),
            std::ptr::null(),
            SC_MANAGER_ENUMERATE_SERVICE,
        );
        if manager.is_null() {
            return out;
        }
        let mut buf: Vec<u64> = vec![0; 8 * 1024];
        let mut resume: DWORD = 0;
        for _ in 0..1000 {
            let (mut needed, mut count): (DWORD, DWORD) = (0, 0);
            let ok = EnumServicesStatusExW(
                manager,
                SC_ENUM_PROCESS_INFO,
                SERVICE_WIN32,
                SERVICE_STATE_ALL,
                buf.as_mut_ptr().cast(),
                (buf.len() * 8) as DWORD,
                &mut needed,
                &mut count,
                &mut resume,
                std::ptr::null(),
            );
            if ok == 0 && GetLastError() != ERROR_MORE_DATA {
                break;
            }
            let entries = std::slice::from_raw_parts(
                buf.as_ptr().cast::<ENUM_SERVICE_STATUS_PROCESSW>(),
                count as usize,
            );
            for entry in entries {
                let service = OpenServiceW(manager, entry.lpServiceName, SERVICE_QUERY_CONFIG);
                if service.is_null() {
                    continue;
                }
                let mut size: DWORD = 0;
                QueryServiceConfigW(service, std::ptr::null_mut(), 0, &mut size);
                let mut config: Vec<u64> = vec![0; (size as usize).div_ceil(8).max(1)];
                if QueryServiceConfigW(service, config.as_mut_ptr().cast(), size, &mut size) != 0 {
                    let config = &*config.as_ptr().cast::<QUERY_SERVICE_CONFIGW>();
                    out.push((
                        wide_ptr(entry.lpServiceName),
                        wide_ptr(config.lpBinaryPathName),
                    ));
                }
                CloseServiceHandle(service);
            }
            if ok != 0 {
                break;
            }
            // More to come, from where `resume` says: with room for it.
            if needed as usize > buf.len() * 8 {
                buf = vec![0; (needed as usize).div_ceil(8)];
            }
        }
        CloseServiceHandle(manager);
    }
    out
}

/// A NUL-terminated wide string.
///
/// # Safety
/// `p` is null or points at a NUL-terminated UTF-16 string.
unsafe fn wide_ptr(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: as the caller promises.
    unsafe {
        let len = (0..).take_while(|&i| *p.add(i) != 0).count();
        String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
    }
}

/// A command line split as Windows programs split theirs
/// (`CommandLineToArgvW`).
pub fn split_command_line(line: &str) -> Vec<String> {
    use winapi::um::shellapi::CommandLineToArgvW;
    use winapi::um::winbase::LocalFree;
    let wide_line = wide(line);
    let mut argc = 0;
    // SAFETY: the array CommandLineToArgvW returns is freed below.
    unsafe {
        let argv = CommandLineToArgvW(wide_line.as_ptr(), &mut argc);
        if argv.is_null() {
            return Vec::new();
        }
        let args = (0..argc as usize).map(|i| wide_ptr(*argv.add(i))).collect();
        LocalFree(argv.cast());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A real database, opened by SQLite through the URI of every path
    /// form that names it: the drive form, the long-path form and, where a
    /// share leads to it (`PERSNAP_TEST_SHARE`, which the Windows test
    /// script sets up as `\\host\share` on wine), both share forms.
    #[test]
    fn sqlite_opens_a_database_through_every_path_form() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("Apama #1 100% Größe");
        fs::create_dir(&folder).unwrap();
        let db = folder.join("persistence.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (42);")
            .unwrap();
        drop(conn);
        let drive = fs::canonicalize(&db).unwrap();
        let plain = PathBuf::from(crate::snapshot::vss::strip_verbatim(
            &drive.to_string_lossy(),
        ));
        let mut forms = vec![drive.clone(), plain];
        if let Some(share) = std::env::var_os("PERSNAP_TEST_SHARE") {
            // The share is the temporary folder's parent's root, seen
            // through the network redirector.
            let share = PathBuf::from(share);
            let below = dir.path().file_name().unwrap();
            let at = share
                .join(below)
                .join("Apama #1 100% Größe")
                .join("persistence.db");
            let unc = at.to_string_lossy().into_owned();
            let verbatim = format!(r"\\?\UNC\{}", unc.trim_start_matches('\\'));
            forms.push(PathBuf::from(unc));
            forms.push(PathBuf::from(verbatim));
        } else {
            eprintln!(
                "SKIP share forms: PERSNAP_TEST_SHARE is not set (tests/windows/run.sh sets it)"
            );
        }
        for path in forms {
            let uri = format!("{}?immutable=1", sqlite_file_uri(&path));
            let conn = rusqlite::Connection::open_with_flags(
                &uri,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )
            .unwrap_or_else(|e| panic!("{} as {uri}: {e}", path.display()));
            let x: i64 = conn
                .query_row("SELECT x FROM t", [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{} as {uri}: {e}", path.display()));
            assert_eq!(x, 42, "{uri}");
        }
    }

    /// Give a file the owner and DACL of `sddl` (tests).
    fn apply_file_sddl(path: &Path, sddl: &str) -> io::Result<()> {
        use winapi::um::securitybaseapi::SetFileSecurityW;
        use winapi::um::winnt::{DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION};
        let _ = enable_privilege("SeRestorePrivilege");
        with_descriptor(sddl, |sd| {
            // SAFETY: a NUL-terminated name and a descriptor alive for the call.
            let ok = unsafe {
                SetFileSecurityW(
                    wide(path).as_ptr(),
                    OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                    sd,
                )
            };
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }

    /// A descriptor given as SDDL, as Windows reads it and writes it back
    /// (tests: wine does not keep the descriptor a file is created with).
    fn sddl_as_windows_reads_it(sddl: &str) -> String {
        use winapi::shared::sddl::{
            ConvertSecurityDescriptorToStringSecurityDescriptorW, SDDL_REVISION_1,
        };
        use winapi::um::winbase::LocalFree;
        use winapi::um::winnt::{DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION};
        with_descriptor(sddl, |sd| {
            // SAFETY: the string is allocated by the call and freed here.
            unsafe {
                let mut text: *mut u16 = std::ptr::null_mut();
                let ok = ConvertSecurityDescriptorToStringSecurityDescriptorW(
                    sd,
                    SDDL_REVISION_1 as DWORD,
                    OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                    &mut text,
                    std::ptr::null_mut(),
                );
                assert!(ok != 0, "{}", io::Error::last_os_error());
                let out = from_wide_ptr(text).to_string_lossy().into_owned();
                LocalFree(text.cast());
                Ok(out)
            }
        })
        .unwrap()
    }

    #[test]
    fn a_secret_is_for_system_administrators_and_the_account_a_schedule_runs_as() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::env::var("USERNAME").unwrap();
        let sid = account_sid(&me).unwrap();
        assert_eq!(
            Some(sid.as_str()),
            crate::pipe::windows::current_user_sid().ok().as_deref()
        );
        assert_eq!(account_sid(&format!(".\\{me}")).unwrap(), sid);
        let err = account_sid("persnap-no-such-account").unwrap_err();
        assert!(
            err.to_string().contains("does not know the account"),
            "{err}"
        );

        let sddl = sddl_as_windows_reads_it(&secret_sddl(Some(&sid)));
        assert!(
            sddl.starts_with("O:BAD:P"),
            "protected, Administrators': {sddl}"
        );
        for ace in ["(A;;FA;;;SY)", "(A;;FA;;;BA)", &format!("(A;;FR;;;{sid})")] {
            assert!(sddl.contains(ace), "{ace} missing from {sddl}");
        }
        assert_eq!(sddl.matches("(A;").count(), 3, "{sddl}");
        let sddl = sddl_as_windows_reads_it(&secret_sddl(None));
        assert!(
            !sddl.contains(&sid) && sddl.matches("(A;").count() == 2,
            "{sddl}"
        );
        // Written with the account's entry, and the same file again for
        // SYSTEM alone.
        let path = dir.path().join("nightly.json");
        write_secret(&path, b"{1}", Some(&me)).unwrap();
        write_secret(&path, b"{2}", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{2}");
        secret_only(&path).unwrap();
    }

    /// Stock permissions, as `(Get-Acl X).Sddl` prints them on Windows 10,
    /// 11 and Server 2016+.
    const STOCK_C: &str = "O:S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464\
        G:S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464\
        D:PAI(A;OICIIO;SDGXGWGR;;;AU)(A;;LC;;;AU)(A;OICIIO;GA;;;SY)(A;;FA;;;SY)\
        (A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)";
    const STOCK_PROGRAM_DATA: &str = "O:SYG:SYD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)\
        (A;OICIIO;GA;;;CO)(A;OICI;0x1200a9;;;BU)(A;CI;DCLCRPCR;;;BU)";
    const STOCK_PROGRAM_FILES: &str = "O:S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464\
        D:PAI(A;;FA;;;S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464)\
        (A;OICIIO;GA;;;S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464)\
        (A;;0x1301bf;;;SY)(A;OICIIO;GA;;;SY)(A;;0x1301bf;;;BA)(A;OICIIO;GA;;;BA)\
        (A;;0x1200a9;;;BU)(A;OICIIO;GXGR;;;BU)(A;OICIIO;GA;;;CO)(A;;0x1200a9;;;AC)";

    #[test]
    fn stock_windows_folders_above_persnaps_own_are_trusted() {
        for (name, sddl) in [
            ("C:\\", STOCK_C),
            ("C:\\ProgramData", STOCK_PROGRAM_DATA),
            ("C:\\Program Files", STOCK_PROGRAM_FILES),
        ] {
            assert_eq!(judge_sddl(sddl, true).unwrap(), None, "{name} above");
        }
        // persnap's own folder is held to more: nobody else may add to it.
        assert_eq!(judge_sddl(ADMIN_DIR_SDDL, false).unwrap(), None);
        let own = judge_sddl(STOCK_PROGRAM_DATA, false).unwrap().unwrap();
        assert!(own.contains("may be changed by"), "{own}");
        let own = judge_sddl(STOCK_C, false).unwrap().unwrap();
        assert!(
            own.contains("may be changed by") && own.contains("S-1-5-11"),
            "{own}"
        );
    }

    #[test]
    fn a_folder_above_that_others_may_empty_or_take_is_refused() {
        for (what, sddl) in [
            // Users may delete what is inside (and so rename persnap's folder).
            (
                "delete child",
                "O:SYD:P(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)(A;;DT;;;BU)",
            ),
            ("take ownership", "O:SYD:P(A;OICI;FA;;;SY)(A;;WO;;;BU)"),
            ("change permissions", "O:SYD:P(A;OICI;FA;;;SY)(A;;WD;;;AU)"),
            ("modify", "O:SYD:P(A;OICI;FA;;;SY)(A;;0x1301bf;;;AU)"),
            ("delete itself", "O:SYD:P(A;OICI;FA;;;SY)(A;;SD;;;WD)"),
            ("a user's", "O:S-1-5-21-1-2-3-1001D:P(A;OICI;FA;;;SY)"),
        ] {
            let problem = judge_sddl(sddl, true).unwrap();
            assert!(problem.is_some(), "{what}: {sddl} was trusted");
        }
    }

    #[test]
    fn sqlite_opens_a_database_deeper_than_260_characters() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = fs::canonicalize(dir.path()).unwrap();
        while folder.as_os_str().len() < 300 {
            folder.push("a-folder-name-of-forty-characters-------");
        }
        fs::create_dir_all(&folder).unwrap();
        let db = folder.join("persistence.db");
        rusqlite::Connection::open_with_flags(
            sqlite_file_uri(&db),
            rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (7);")
        .unwrap();
        let plain = PathBuf::from(crate::snapshot::vss::strip_verbatim(&db.to_string_lossy()));
        assert!(plain.as_os_str().len() > 300 && !plain.starts_with(r"\\?\"));
        let uri = format!("{}?immutable=1", sqlite_file_uri(&plain));
        assert!(uri.starts_with(r"file:\\%3F\"), "{uri}");
        let conn = rusqlite::Connection::open_with_flags(
            &uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        let x: i64 = conn.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 7);
        assert_eq!(long_path_form(r"C:\short"), r"C:\short");
        let share = format!(r"\\host\share\{}", "x".repeat(300));
        assert!(long_path_form(&share).starts_with(r"\\?\UNC\host\share\"));
    }

    #[test]
    fn console_tool_output_is_read_in_the_oem_code_page() {
        // "Zugriff verweigert: Größe" as a German schtasks writes it (code
        // page 850; 437 agrees on these letters).
        let oem = b"Zugriff verweigert: Gr\x94\xe1e";
        let cp = unsafe { winapi::um::winnls::GetOEMCP() };
        if cp == 850 || cp == 437 {
            assert_eq!(decode_tool_output(oem), "Zugriff verweigert: Größe");
        } else {
            assert_eq!(decode_tool_output(b"plain"), "plain", "code page {cp}");
        }
        assert_eq!(decode_tool_output(b""), "");
    }

    #[test]
    fn the_helper_can_enable_backup_privilege() {
        // wine's administrator token holds the privilege, as an elevated
        // administrator's does on Windows.
        enable_backup_privilege().unwrap();
        assert!(privilege_enabled("SeBackupPrivilege").unwrap());
        assert!(enable_privilege("SeNoSuchPrivilege").is_err());
    }

    #[test]
    fn store_files_open_with_backup_semantics_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("persistence.db"), b"data").unwrap();
        fs::create_dir(dir.path().join("persistence.db-wal")).unwrap();
        let base = open_dir_nofollow(dir.path()).unwrap();
        let mut f = open_beneath(&base, dir.path(), "persistence.db").unwrap();
        let mut text = String::new();
        use std::io::Read;
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "data");
        for bad in ["..", "a\\b", "a/b", "persistence.db:stream"] {
            assert!(open_beneath(&base, dir.path(), bad).is_err(), "{bad}");
        }
        assert!(
            open_beneath(&base, dir.path(), "persistence.db-wal").is_err(),
            "a folder is not a store file"
        );
        assert!(open_beneath(&base, dir.path(), "missing").is_err());
    }

    /// The store's header is read with backup intent (so SeBackupPrivilege
    /// applies to a store only the service account may read; wine does not
    /// enforce the ACL, so what shows here is the intent: a folder, which
    /// Windows opens only with backup semantics, is opened and refused as
    /// a folder, not denied).
    #[test]
    fn the_store_header_is_read_with_backup_intent() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("persistence.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t(x);")
            .unwrap();
        enable_backup_privilege().unwrap();
        // Only SYSTEM may read it, as with a store of a service account's.
        let only_system = "O:SYD:P(A;;FA;;;SY)";
        apply_file_sddl(&db, only_system).unwrap();
        let header = crate::store::read_header(&db).unwrap();
        assert!(header.page_size >= 512, "{header:?}");
        let err = open_nofollow(dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "it is a folder");
    }

    #[test]
    fn console_interrupts_do_not_stop_the_helper() {
        // In a process of its own (it takes a new console): this very test
        // binary, running only the part below.
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report.txt");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "engine::sys::windows::tests::ctrl_c_in_a_console_of_its_own",
                "--ignored",
            ])
            .env("PERSNAP_CTRL_C_REPORT", &report)
            .status()
            .unwrap();
        assert!(status.success(), "{status:?}");
        assert_eq!(
            fs::read_to_string(&report).unwrap(),
            "still running after Ctrl+C",
            "the handler saw the interrupt and the process lived on"
        );
    }

    #[test]
    #[ignore = "run by console_interrupts_do_not_stop_the_helper in a process of its own"]
    fn ctrl_c_in_a_console_of_its_own() {
        use winapi::um::consoleapi::AllocConsole;
        use winapi::um::wincon::{CTRL_C_EVENT, FreeConsole, GenerateConsoleCtrlEvent};
        let report = PathBuf::from(std::env::var_os("PERSNAP_CTRL_C_REPORT").unwrap());
        // A console of its own, as an elevated console window is (the
        // test's own output is a pipe, which takes no control events).
        // SAFETY: plain calls on this process's console.
        unsafe {
            FreeConsole();
            assert!(AllocConsole() != 0, "{}", io::Error::last_os_error());
        }
        ignore_console_interrupts().unwrap();
        let before = IGNORED_INTERRUPTS.load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: sends Ctrl+C to this process's console group.
        let sent = unsafe { GenerateConsoleCtrlEvent(CTRL_C_EVENT, 0) } != 0;
        assert!(sent, "{}", io::Error::last_os_error());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while IGNORED_INTERRUPTS.load(std::sync::atomic::Ordering::SeqCst) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the handler never ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        fs::write(&report, "still running after Ctrl+C").unwrap();
    }

    #[test]
    fn a_file_held_open_without_sharing_is_in_use_even_when_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("persistence.db");
        fs::write(&db, b"x").unwrap();
        let mut perms = fs::metadata(&db).unwrap().permissions();
        perms.set_readonly(true);
        fs::set_permissions(&db, perms).unwrap();
        assert!(processes_using(std::slice::from_ref(&db)).is_empty());
        let held = File::options().read(true).share_mode(0).open(&db).unwrap();
        let users = processes_using(std::slice::from_ref(&db));
        assert_eq!(users.len(), 1, "{users:?}");
        assert!(
            users[0].contains("has the database open") || users[0].contains("open"),
            "{users:?}"
        );
        drop(held);
        assert!(processes_using(std::slice::from_ref(&db)).is_empty());
        assert_eq!(
            describe_holder(1234, "Apama correlator "),
            "process 1234 (Apama correlator) has the database open"
        );
        assert_eq!(describe_holder(7, ""), "process 7 has the database open");
    }
}

/// The Windows Event Log's source name of persnap's events (registered by
/// the setup program, with `persnap-events.dll` as its message file).
pub const EVENT_SOURCE: &str = "persnap";

/// Write one event into the Application log under [`EVENT_SOURCE`]: its
/// id, its type and its message (the message file turns id and message
/// into the text Event Viewer shows: the message itself).
pub fn report_event(
    id: u32,
    severity: crate::monitor::events::Severity,
    message: &str,
) -> io::Result<()> {
    use crate::monitor::events::Severity;
    use winapi::um::winbase::{DeregisterEventSource, RegisterEventSourceW, ReportEventW};
    use winapi::um::winnt::{
        EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE,
    };
    let source = wide(EVENT_SOURCE);
    // An event's strings are at most 31,839 characters.
    let text: String = message.chars().take(31_000).collect();
    let text = wide(&text);
    let kind = match severity {
        Severity::Information => EVENTLOG_INFORMATION_TYPE,
        Severity::Warning => EVENTLOG_WARNING_TYPE,
        Severity::Error => EVENTLOG_ERROR_TYPE,
    };
    // SAFETY: a NUL-terminated name; the handle is closed below.
    let log = unsafe { RegisterEventSourceW(std::ptr::null(), source.as_ptr()) };
    if log.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut strings = [text.as_ptr()];
    // SAFETY: one NUL-terminated string, alive for the call; no raw data.
    let ok = unsafe {
        ReportEventW(
            log,
            kind,
            0,
            id,
            std::ptr::null_mut(),
            1,
            0,
            strings.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    };
    let error = io::Error::last_os_error();
    // SAFETY: the handle RegisterEventSourceW gave.
    unsafe { DeregisterEventSource(log) };
    if ok == 0 { Err(error) } else { Ok(()) }
}
