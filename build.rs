//! Build script: on Windows targets, embed the application manifests
//! (installer/windows/*.manifest) as resources: `requireAdministrator` for
//! persnap-helper.exe (UAC prompts before it starts), `asInvoker` for
//! persnap.exe, which also gets the icon. Compiled with the MinGW resource compiler (`windres`);
//! nothing happens for other targets.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=installer/windows");
    println!("cargo:rerun-if-changed=assets/persnap.ico");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for bin in ["persnap-helper", "persnap"] {
        let object = out.join(format!("{bin}-resources.o"));
        compile_resources(&format!("installer/windows/{bin}.rc"), &object);
        println!("cargo:rustc-link-arg-bin={bin}={}", object.display());
    }
}

fn compile_resources(rc: &str, object: &PathBuf) {
    let windres = std::env::var("WINDRES").unwrap_or_else(|_| "x86_64-w64-mingw32-windres".into());
    let status = Command::new(&windres)
        .args([
            "--input-format=rc",
            "--output-format=coff",
            "--include-dir=installer/windows",
            "--include-dir=assets",
            "-i",
            rc,
            "-o",
        ])
        .arg(object)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {windres} (apt install binutils-mingw-w64-x86-64): {e}")
        });
    assert!(status.success(), "{windres} failed on {rc}");
}
