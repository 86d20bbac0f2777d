//! The machine: its folders, its name, free space and volumes.

use std::ffi::OsString;
use std::io;
use std::os::windows::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use winapi::shared::minwindef::{DWORD, MAX_PATH};
use winapi::um::fileapi::{
    GetDiskFreeSpaceExW, GetDriveTypeW, GetVolumeInformationW, GetVolumePathNameW,
};
use winapi::um::winbase::DRIVE_FIXED;

use super::*;

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

pub(super) fn known_folder(id: &winapi::um::shtypes::KNOWNFOLDERID) -> Option<PathBuf> {
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

/// Not used on Windows (no sudo).
pub fn home_of(_user: &str) -> Option<PathBuf> {
    None
}
