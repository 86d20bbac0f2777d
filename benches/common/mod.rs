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
