//! What the benchmarks share: running a command that must succeed, the
//! package's own binaries, and a `persnap-loadgen run` writer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Run `cmd`; its trimmed standard output. Panics (with its errors) if it
/// fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A binary of this package, built beside the benchmark.
pub fn target_bin(name: &str) -> PathBuf {
    // benches run from target/release/deps; the binaries sit one up.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join(name)
}

/// A writer process (`persnap-loadgen run`); its statistics come back when
/// it stops. One still running when the benchmark panics is killed, so
/// that the volume it writes to can be unmounted.
pub struct Writer(Option<Child>, PathBuf);

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Writer {
    pub fn start(db: &Path) -> Writer {
        Writer::start_with(db, &[])
    }

    /// With more `persnap-loadgen run` arguments (`--rate 100`).
    pub fn start_with(db: &Path, args: &[&str]) -> Writer {
        let stop = db.with_extension("stop");
        let _ = std::fs::remove_file(&stop);
        let child = Command::new(target_bin("persnap-loadgen"))
            .arg("run")
            .arg(db)
            .arg("--stop-file")
            .arg(&stop)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        Writer(Some(child), stop)
    }

    /// Stop it; its statistics (`max_commit_ms`, `transactions`, …).
    pub fn stop(mut self) -> serde_json::Value {
        std::fs::write(&self.1, b"").unwrap();
        let child = self.0.take().expect("running");
        let out = child.wait_with_output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// A loop volume for a benchmark: an image of `size_mb` MiB in
/// `/var/tmp/<stem>-<pid>/fs.img`, made by `mkfs` (the command and its
/// arguments; the device comes last) and mounted at `mnt` beside it. With
/// `direct_io` the loop device bypasses the page cache, so the volume
/// behaves as a partition of the disk. Unmounted and removed on drop.
pub struct LoopVolume {
    pub dir: PathBuf,
    pub dev: String,
    pub mnt: PathBuf,
}

impl LoopVolume {
    pub fn new(stem: &str, size_mb: u64, mkfs: &[&str], direct_io: bool) -> LoopVolume {
        let dir = PathBuf::from(format!("/var/tmp/{stem}-{}", std::process::id()));
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let img = dir.join("fs.img");
        run(Command::new("truncate")
            .arg(format!("-s{size_mb}M"))
            .arg(&img));
        let mut losetup = Command::new("losetup");
        losetup.args(["-f", "--show"]);
        if direct_io {
            losetup.arg("--direct-io=on");
        }
        let dev = run(losetup.arg(&img));
        run(Command::new(mkfs[0]).args(&mkfs[1..]).arg(&dev));
        run(Command::new("mount").arg(&dev).arg(&mnt));
        LoopVolume { dir, dev, mnt }
    }

    /// Create the btrfs subvolume `name` at its top; its path.
    pub fn subvolume(&self, name: &str) -> PathBuf {
        let path = self.mnt.join(name);
        run(Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(&path));
        path
    }
}

impl Drop for LoopVolume {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
