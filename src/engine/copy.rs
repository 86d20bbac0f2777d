//! Streaming copy of the store files, hashing as it goes.
//!
//! Files are read in fixed-size blocks (memory stays constant whatever the
//! database size), hashed with SHA-256 on the way through, written to new
//! files that must not exist yet, and fsynced; the target folder is fsynced
//! at the end. Progress is reported per block; the cancel token is polled
//! per block. SHA-256 runs on a second thread so it overlaps the I/O;
//! written data is pushed to disk in small batches (write-behind) and read
//! data is dropped from the page cache, so a backup disturbs the
//! correlator's own I/O as little as it can. Sources given to this module
//! are snapshots or backups, never live files.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, HINT_DEST, HINT_SOURCE, Result};
use crate::fsutil;
use crate::pace::{Pacer, Step};
use crate::progress::{CancelToken, Phase, Progress};
use crate::store::{FileRole, StoreFile};

/// Size of the copy buffer.
pub const BLOCK: usize = 1 << 20;

/// A file as copied: its name, role, size and SHA-256 (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedFile {
    pub name: String,
    pub role: FileRole,
    pub size: u64,
    pub sha256: String,
}

/// Running totals of a multi-file copy, for progress reports.
pub struct Meter<'a> {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
    pub progress: &'a mut dyn Progress,
    pub cancel: &'a CancelToken,
    /// How hard the copy may use the disk (see [`crate::pace`]).
    pub pacer: Pacer,
}

impl Meter<'_> {
    fn advance(&mut self, n: usize) -> Result<()> {
        self.done += n as u64;
        self.total = self.total.max(self.done);
        self.progress.bytes(self.phase, self.done, self.total);
        self.cancel.check()
    }
}

/// Copy the opened store files (from a snapshot) into `to` (which must
/// exist), each under its own name.
pub fn copy_opened(
    files: Vec<(StoreFile, File)>,
    to: &Path,
    meter: &mut Meter,
) -> Result<Vec<CopiedFile>> {
    let mut copied = Vec::with_capacity(files.len());
    for (file, input) in files {
        let dst = to.join(&file.name);
        let (size, sha256) = write_copy(
            input,
            Path::new(&file.name),
            &dst,
            Durability::Durable,
            meter,
        )?;
        if size != file.size {
            return Err(Error::Io {
                action: "read all of",
                path: file.name.clone().into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{size} of {} bytes arrived", file.size),
                ),
                hint: HINT_SOURCE,
            });
        }
        copied.push(CopiedFile {
            name: file.name,
            role: file.role,
            size,
            sha256,
        });
    }
    fsutil::fsync_dir(to).map_err(Error::io("flush the backup folder", to, HINT_DEST))?;
    Ok(copied)
}

/// Whether a copy must reach the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// A backup file copied from a snapshot: written behind as it goes and
    /// fsynced; the snapshot's pages are dropped from the cache.
    Durable,
    /// A scratch copy that lives for seconds: never fsynced. Going fast,
    /// it is left to the page cache (it usually never reaches the disk);
    /// going gently, each step is written out before the next, as a
    /// backup's are, so that it cannot reach the disk in one burst.
    Scratch,
}

fn copy_file(
    src: &Path,
    dst: &Path,
    durability: Durability,
    meter: &mut Meter,
) -> Result<(u64, String)> {
    let input = crate::sys::open_nofollow(src).map_err(Error::io("open", src, HINT_SOURCE))?;
    write_copy(input, src, dst, durability, meter)
}

/// Copy `input` (read errors name `src`) into the new file `dst`,
/// returning size and SHA-256; a durable copy is fsynced.
fn write_copy(
    input: File,
    src: &Path,
    dst: &Path,
    durability: Durability,
    meter: &mut Meter,
) -> Result<(u64, String)> {
    let mut output =
        crate::sys::create_private(dst).map_err(Error::io("create", dst, HINT_DEST))?;
    let digest = stream(
        input,
        src,
        HINT_SOURCE,
        Some((&mut output, dst, durability)),
        meter,
    )?;
    if durability == Durability::Durable {
        output
            .sync_all()
            .map_err(Error::io("flush", dst, HINT_DEST))?;
    }
    Ok(digest)
}

/// A scratch copy of `src` (for verification), returning `src`'s size and
/// SHA-256. Where the filesystem allows, `dst` shares `src`'s blocks (a
/// reflink: no data written) and `src` is only read for its hash; else a
/// copy is made that is never fsynced.
pub fn scratch_copy(src: &Path, dst: &Path, meter: &mut Meter) -> Result<(u64, String)> {
    let input = crate::sys::open_nofollow(src).map_err(Error::io("open", src, HINT_DEST))?;
    let output = crate::sys::create_private(dst).map_err(Error::io("create", dst, HINT_DEST))?;
    if fsutil::reflink(&input, &output).is_err() {
        drop(output);
        std::fs::remove_file(dst).map_err(Error::io("remove", dst, HINT_DEST))?;
        return copy_file(src, dst, Durability::Scratch, meter);
    }
    stream(input, src, HINT_DEST, None, meter)
}

/// SHA-256 of a file, read in blocks.
pub fn hash_file(path: &Path, meter: &mut Meter) -> Result<(u64, String)> {
    let input = File::open(path).map_err(Error::io("open", path, HINT_DEST))?;
    stream(input, path, HINT_DEST, None, meter)
}

/// Read `input` to the end in blocks, optionally writing each block to
/// `output`; returns size and SHA-256. Hashing runs on a second thread, so
/// SHA-256 of one block overlaps the read and write of the next; blocks
/// circulate between the two threads (at most three exist), keeping memory
/// flat whatever the file size.
fn stream(
    mut input: File,
    src: &Path,
    hint: &'static str,
    mut output: Option<(&mut File, &Path, Durability)>,
    meter: &mut Meter,
) -> Result<(u64, String)> {
    const BUFFERS: usize = 3;
    let (to_hash, hash_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (to_reuse, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut hasher = Sha256::new();
            for (buf, n) in hash_rx {
                hasher.update(&buf[..n]);
                let _ = to_reuse.send(buf);
            }
            hex(&hasher.finalize())
        });
        let mut fresh = BUFFERS;
        let mut size = 0u64;
        let mut flushed = 0u64;
        let durable = matches!(output, Some((_, _, Durability::Durable)));
        let paced = meter.pacer.is_paced();
        // Gentle: this thread's I/O goes after the correlator's (Windows'
        // background mode; for this copy only, not the snapshot's work).
        let _background = paced.then(crate::sys::background_thread);
        let mut step = Step::default();
        let result = loop {
            let mut buf = if fresh > 0 {
                fresh -= 1;
                vec![0u8; BLOCK]
            } else {
                free_rx
                    .recv()
                    .expect("the hashing thread returns every block")
            };
            let want = if paced {
                (meter.pacer.step().saturating_sub(step.read) as usize).clamp(4096, BLOCK)
            } else {
                BLOCK
            };
            let began = Instant::now();
            let n = match input.read(&mut buf[..want]) {
                Ok(0) => break Ok(size),
                Ok(n) => n,
                Err(e) => break Err(Error::io("read", src, hint)(e)),
            };
            step.read += n as u64;
            step.read_time += began.elapsed();
            if let Some((out, dst, _)) = output.as_mut() {
                let began = Instant::now();
                if let Err(e) = out.write_all(&buf[..n]) {
                    break Err(Error::io("write", *dst, HINT_DEST)(e));
                }
                step.written += n as u64;
                step.write_time += began.elapsed();
            }
            if durable {
                // The source of a backup copy is a snapshot nobody reads
                // again. (A backup being verified is read again right
                // after, by SQLite, so its pages stay.)
                fsutil::drop_cached(&input, size, n as u64);
            }
            size += n as u64;
            if paced && step.read >= meter.pacer.step() {
                // Gentle: this step on the disk before the next, then rest.
                // (A scratch copy too: left to the page cache, it would
                // reach the disk in one burst, unpaced.)
                // The step's writes reach the disk before the pause, so
                // the pause leaves the disk idle and at most one step's
                // writes are ever queued in front of the correlator.
                if let Some((out, dst, _)) = output.as_mut() {
                    let began = Instant::now();
                    if let Err(e) = fsutil::flush_range(out, flushed, size - flushed) {
                        break Err(Error::io("write", *dst, HINT_DEST)(e));
                    }
                    flushed = size;
                    step.write_time += began.elapsed();
                }
                let rest = meter.pacer.settle(std::mem::take(&mut step));
                std::thread::sleep(rest);
            } else if !paced
                && let Some((out, dst, Durability::Durable)) = output.as_ref()
                && size - flushed >= crate::pace::FAST_STEP
            {
                // Fast: dirty pages go to disk in steady batches instead
                // of one burst at the final fsync.
                if let Err(e) = fsutil::write_behind(out, flushed, size - flushed) {
                    break Err(Error::io("write", *dst, HINT_DEST)(e));
                }
                flushed = size;
            }
            to_hash
                .send((buf, n))
                .expect("the hashing thread runs until the sender closes");
            if let Err(e) = meter.advance(n) {
                break Err(e);
            }
        };
        drop(to_hash);
        let digest = hasher.join().expect("hashing does not panic");
        result.map(|size| (size, digest))
    })
}

/// Lower-case hexadecimal of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn copies_multi_block_files_with_sha256() {
        let dir =
            std::env::temp_dir().join(format!("persnap-copy-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("out")).unwrap();
        let data: Vec<u8> = (0..BLOCK * 2 + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("a"), &data).unwrap();
        let files = [StoreFile {
            role: FileRole::Main,
            name: "a".into(),
            size: data.len() as u64,
        }];
        let cancel = CancelToken::new();
        let mut meter = Meter {
            phase: Phase::Copy,
            done: 0,
            total: 0,
            progress: &mut Silent,
            cancel: &cancel,
            pacer: crate::pace::Pacer::fast(),
        };
        let opened = |files: &[StoreFile]| {
            files
                .iter()
                .map(|f| (f.clone(), File::open(dir.join(&f.name)).unwrap()))
                .collect::<Vec<_>>()
        };
        let copied = copy_opened(opened(&files), &dir.join("out"), &mut meter).unwrap();
        assert_eq!(std::fs::read(dir.join("out/a")).unwrap(), data);
        assert_eq!(copied[0].sha256, hex(&Sha256::digest(&data)));
        assert_eq!(
            (copied[0].size, meter.done),
            (data.len() as u64, data.len() as u64)
        );
        let err = copy_opened(opened(&files), &dir.join("out"), &mut meter).unwrap_err();
        assert!(
            err.to_string().contains("Could not create"),
            "never overwrites: {err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
