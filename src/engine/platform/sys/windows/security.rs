//! Security descriptors: folders and secrets only administrators (and
//! SYSTEM) may change or read, who owns what, and judging a path as root
//! would.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use winapi::shared::minwindef::DWORD;
use winapi::um::handleapi::CloseHandle;
use winapi::um::processthreadsapi::{GetCurrentProcess, OpenProcessToken};
use winapi::um::securitybaseapi::GetTokenInformation;
use winapi::um::winnt::{
    FILE_ATTRIBUTE_REPARSE_POINT, HANDLE, TOKEN_ELEVATION, TOKEN_QUERY, TokenElevation,
};

use super::*;

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
pub(super) fn trusted_owner(sid: winapi::um::winnt::PSID) -> bool {
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
pub(super) fn with_descriptor<T>(
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
pub(super) unsafe fn owner_and_dacl(
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
pub(super) fn create_dir_with_sddl(dir: &Path, sddl: &str) -> io::Result<bool> {
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
pub(super) const SECRET_FILE_SDDL: &str = "O:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)";

/// [`SECRET_FILE_SDDL`], readable also by `reader` (a SID string).
pub(super) fn secret_sddl(reader: Option<&str>) -> String {
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
pub(super) fn with_security_of<T>(
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
pub(super) const TRUSTED_INSTALLER_SID: &str =
    "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464";

/// What makes an owner and DACL unsafe for a folder persnap trusts (see
/// [`admin_only`]), in words that follow the path; `None` if it is safe.
pub(super) fn judge_security(
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
pub(super) fn account_or_sid(sid: winapi::um::winnt::PSID) -> String {
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
pub(super) fn judge_sddl(sddl: &str, ancestor: bool) -> io::Result<Option<String>> {
    with_descriptor(sddl, |sd| {
        // SAFETY: owner and DACL point into `sd`, alive for the call.
        let (owner, dacl) = unsafe { owner_and_dacl(sd) };
        Ok(judge_security(owner, dacl, ancestor))
    })
}

/// A SID in its `S-1-…` form (empty if it cannot be converted).
pub(super) fn sid_string(sid: winapi::um::winnt::PSID) -> String {
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
