use std::fs::{self, File};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use winapi::shared::minwindef::DWORD;

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
        eprintln!("SKIP share forms: PERSNAP_TEST_SHARE is not set (tests/windows/run.sh sets it)");
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
    // The test's name as the harness knows it: this module's path without
    // the crate's name (so that moving the module cannot break it).
    let (_, here) = module_path!().split_once("::").unwrap();
    let test = format!("{here}::ctrl_c_in_a_console_of_its_own");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &test, "--ignored"])
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
