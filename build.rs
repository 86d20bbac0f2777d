//! Build script: on Windows targets, embed the application manifests
//! (installer/windows/*.manifest) as resources: `requireAdministrator` for
//! persnap-helper.exe (UAC prompts before it starts), `asInvoker` for
//! persnap.exe, which also gets the icon. Every executable (persnap-loadgen.exe
//! too) gets a version resource (installer/windows/version.rc) with
//! Cargo.toml's version, written here into OUT_DIR/persnap-version.h.
//! Compiled with the MinGW resource compiler (`windres`); nothing happens
//! for other targets.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=installer/windows");
    println!("cargo:rerun-if-changed=assets/persnap.ico");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    write_version_header(&out);
    for bin in ["persnap-helper", "persnap", "persnap-loadgen"] {
        let object = out.join(format!("{bin}-resources.o"));
        compile_resources(&format!("installer/windows/{bin}.rc"), &out, &object);
        println!("cargo:rustc-link-arg-bin={bin}={}", object.display());
    }
}

/// The version for version.rc, as a header in OUT_DIR (an include file
/// rather than `-D` defines: windres hands defines to the preprocessor
/// through a shell, which strips the quotes off a string define). The numeric version has
/// four parts; a pre-release ("0.2.0-rc.1") shows as 0,2,0,0 there and in
/// full in the strings.
fn write_version_header(out: &Path) {
    let part = |name: &str| -> u16 {
        let value = std::env::var(name).expect("cargo sets CARGO_PKG_VERSION_*");
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number up to 65535"))
    };
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let header = format!(
        "#define PERSNAP_VERSION_COMMA {},{},{},0\n#define PERSNAP_VERSION_STR \"{version}\"\n",
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    );
    std::fs::write(out.join("persnap-version.h"), header).expect("cannot write persnap-version.h");
}

fn compile_resources(rc: &str, out: &Path, object: &Path) {
    let windres = std::env::var("WINDRES").unwrap_or_else(|_| "x86_64-w64-mingw32-windres".into());
    let status = Command::new(&windres)
        .args([
            "--input-format=rc",
            "--output-format=coff",
            "--include-dir=installer/windows",
            "--include-dir=assets",
        ])
        .arg(format!("--include-dir={}", out.display()))
        .args(["-i", rc, "-o"])
        .arg(object)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {windres} (apt install binutils-mingw-w64-x86-64): {e}")
        });
    assert!(status.success(), "{windres} failed on {rc}");
}
