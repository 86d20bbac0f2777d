//! LVM snapshots on a real kernel with device-mapper, inside a VM.
//!
//! The host kernel has no device-mapper, so this boots Debian's kernel under
//! qemu (TCG) with a small initramfs (tests/vm/mkinitrd.sh) and runs
//! tests/vm/guest.sh, which drives this build's real `persnap` and
//! `persnap-helper` and `persnap-loadgen` binaries (shared over 9p) against xfs, ext4 and thin
//! logical volumes: backups under a live writer, snapshot overflow, a volume
//! group without free space, a backup killed mid-copy, a folder not on LVM.
//! Needs root (CI is root) plus qemu-system-x86, linux-image-amd64,
//! busybox-static and lvm2 (installed by .ci/setup).
#![cfg(target_os = "linux")]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

const SCENARIOS: [&str; 7] = [
    "consistent_xfs_rollback",
    "consistent_ext4_wal",
    "thin",
    "overflow",
    "no_free_space",
    "killed",
    "not_lvm",
];

/// Debian's kernel version and image, when installed.
fn guest_kernel() -> Option<(String, PathBuf)> {
    let mut versions: Vec<String> = std::fs::read_dir("/lib/modules")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|v| v.ends_with("-amd64") && Path::new(&format!("/boot/vmlinuz-{v}")).exists())
        .collect();
    versions.sort();
    let v = versions.pop()?;
    let image = PathBuf::from(format!("/boot/vmlinuz-{v}"));
    Some((v, image))
}

fn vm_prerequisites() -> Result<(String, PathBuf), String> {
    for tool in [
        "/usr/bin/qemu-system-x86_64",
        "/bin/busybox",
        "/sbin/lvm",
        "/sbin/mkfs.xfs",
        "/usr/bin/cpio",
    ] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is missing (run .ci/setup)"));
        }
    }
    guest_kernel()
        .ok_or_else(|| "no Debian kernel (linux-image-amd64) in /boot (run .ci/setup)".into())
}

// About 7 minutes on one core under TCG: tests/all.sh runs it beside the
// other tests (`cargo test --test integration lvm_vm:: -- --ignored` runs it alone).
#[test]
#[ignore = "slow (a VM under TCG): tests/all.sh runs it in parallel with the rest"]
fn lvm_snapshots_on_a_real_kernel() {
    if !require_root("lvm_snapshots_on_a_real_kernel") {
        return;
    }
    let (kver, kernel) = match vm_prerequisites() {
        Ok(k) => k,
        Err(why) if std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_some() => {
            panic!("cannot run the LVM VM: {why}")
        }
        Err(why) => return eprintln!("SKIP lvm_snapshots_on_a_real_kernel: {why}"),
    };
    let work = tempfile::Builder::new()
        .prefix("persnap-vm-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    for name in ["persnap", "persnap-helper", "persnap-loadgen"] {
        std::fs::copy(bin(name), share.join(name)).unwrap();
    }
    let vm = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm");
    let initrd = work.path().join("initrd.gz");
    run_ok(
        Command::new(vm.join("mkinitrd.sh"))
            .arg(&initrd)
            .arg(vm.join("guest.sh"))
            .arg(&kver)
            .arg(bin("persnap"))
            .arg(bin("persnap-helper"))
            .arg(bin("persnap-loadgen")),
    );

    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("1500")
        .arg("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "2048",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=host0,security_model=none",
            share.display()
        ))
        .args(["-append", "console=ttyS0 panic=-1 quiet edd=off"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    let results: Vec<&str> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RESULT "))
        .collect();
    eprintln!(
        "VM ran {:.0} s (TCG); kernel {kver}",
        started.elapsed().as_secs_f64()
    );
    for line in log
        .lines()
        .filter(|l| l.starts_with("RESULT ") || l.starts_with("TIME "))
    {
        eprintln!("  {line}");
    }
    assert!(
        log.contains("=== SCENARIOS DONE ==="),
        "the guest did not finish; serial log:\n{log}"
    );
    for scenario in SCENARIOS {
        let line = results
            .iter()
            .find(|r| r.split(' ').next() == Some(scenario));
        let line = line.unwrap_or_else(|| panic!("no result for {scenario}; serial log:\n{log}"));
        assert!(line.starts_with(&format!("{scenario} OK")), "{line}");
    }
}
