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
use std::path::{Path, PathBuf};
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

/// The SHA-256 of each piece of a file, in order.
pub type Pieces = Vec<[u8; 32]>;

/// Copy the opened store files (from a snapshot) into `to` (which must
/// exist), each under its own name, and flush them to the disk.
pub fn copy_opened(
    files: Vec<(StoreFile, File)>,
    to: &Path,
    meter: &mut Meter,
) -> Result<Vec<CopiedFile>> {
    let copied = copy_all(files, to, Durability::Durable, None, meter)?;
    fsutil::fsync_dir(to).map_err(Error::io("flush the backup folder", to, HINT_DEST))?;
    Ok(copied.into_iter().map(|(file, _)| file).collect())
}

/// [`copy_opened`] for a set staged for a repository: not flushed to the
/// disk, and with `piece_size`, the SHA-256 of each piece of every file
/// taken as the bytes were read (see [`crate::backup::Staged`]).
pub fn copy_staged(
    files: Vec<(StoreFile, File)>,
    to: &Path,
    piece_size: Option<u32>,
    meter: &mut Meter,
) -> Result<Vec<(CopiedFile, Pieces)>> {
    copy_all(
        files,
        to,
        Durability::Staged,
        piece_size.filter(|p| *p > 0).map(|p| p as usize),
        meter,
    )
}

fn copy_all(
    files: Vec<(StoreFile, File)>,
    to: &Path,
    durability: Durability,
    piece_size: Option<usize>,
    meter: &mut Meter,
) -> Result<Vec<(CopiedFile, Pieces)>> {
    let mut copied = Vec::with_capacity(files.len());
    for (file, input) in files {
        let dst = to.join(&file.name);
        let (size, sha256, pieces) = write_copy(
            input,
            Path::new(&file.name),
            &dst,
            durability,
            piece_size,
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
        copied.push((
            CopiedFile {
                name: file.name,
                role: file.role,
                size,
                sha256,
            },
            pieces,
        ));
    }
    Ok(copied)
}

/// Where the pieces hashed while a staged set `set` was copied are kept:
/// a folder beside it, one file per store file.
pub fn pieces_path(set: &Path) -> PathBuf {
    let name = set.file_name().unwrap_or_default().to_string_lossy();
    set.with_file_name(format!("{}{name}", crate::names::PIECES_PREFIX))
}

/// Write the pieces of the file `name` of a staged set: the piece size
/// (4 bytes, little-endian), then each piece's SHA-256.
pub fn write_pieces(dir: &Path, name: &str, piece_size: u32, ids: &[[u8; 32]]) -> Result<()> {
    let path = dir.join(name);
    let mut out = std::io::BufWriter::new(
        crate::sys::create_private(&path).map_err(Error::io("create", &path, HINT_DEST))?,
    );
    out.write_all(&piece_size.to_le_bytes())
        .and_then(|_| ids.iter().try_for_each(|id| out.write_all(id)))
        .and_then(|_| out.flush())
        .map_err(Error::io("write", &path, HINT_DEST))
}

/// The pieces [`write_pieces`] kept for `name` (a file of `file_size`
/// bytes), if they are there: the piece size and each piece's SHA-256.
/// Only a plain file is read (never through a link), and no more of it
/// than the smallest pieces of such a file take.
pub fn read_pieces(dir: &Path, name: &str, file_size: u64) -> Result<Option<(u32, Vec<[u8; 32]>)>> {
    let path = dir.join(name);
    let bad = |why: &str| {
        Error::io("read", &path, HINT_DEST)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            why.to_owned(),
        ))
    };
    let file = match crate::sys::open_nofollow(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, HINT_DEST)(e)),
    };
    if !file
        .metadata()
        .map_err(Error::io("read", &path, HINT_DEST))?
        .is_file()
    {
        return Err(bad("not a plain file"));
    }
    let smallest = u64::from(*crate::backup::Staged::PIECE_SIZES.start());
    let most = 4 + 32 * file_size.div_ceil(smallest);
    let mut bytes = Vec::new();
    file.take(most + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::io("read", &path, HINT_DEST))?;
    if bytes.len() as u64 > most {
        return Err(bad("longer than any list of the file's pieces"));
    }
    if bytes.len() < 4 || (bytes.len() - 4) % 32 != 0 {
        return Err(bad("not a list of pieces"));
    }
    let size = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let ids = bytes[4..]
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    Ok(Some((size, ids)))
}

/// Whether a copy must reach the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// A backup file copied from a snapshot: written behind as it goes and
    /// fsynced; the snapshot's pages are dropped from the cache.
    Durable,
    /// A set staged for a repository, read again right after: never
    /// fsynced; the snapshot's pages are dropped from the cache (as for a
    /// durable copy), the copy's are left to the cache (as for scratch).
    Staged,
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
    write_copy(input, src, dst, durability, None, meter).map(|(size, sha256, _)| (size, sha256))
}

/// Copy `input` (read errors name `src`) into the new file `dst`,
/// returning size and SHA-256; a durable copy is fsynced.
fn write_copy(
    input: File,
    src: &Path,
    dst: &Path,
    durability: Durability,
    piece_size: Option<usize>,
    meter: &mut Meter,
) -> Result<(u64, String, Pieces)> {
    let mut output =
        crate::sys::create_private(dst).map_err(Error::io("create", dst, HINT_DEST))?;
    let digest = stream_pieces(
        input,
        src,
        HINT_SOURCE,
        Some((&mut output, dst, durability)),
        piece_size,
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
/// circulate between the threads (at most four exist), keeping memory
/// flat whatever the file size.
fn stream(
    input: File,
    src: &Path,
    hint: &'static str,
    output: Option<(&mut File, &Path, Durability)>,
    meter: &mut Meter,
) -> Result<(u64, String)> {
    stream_pieces(input, src, hint, output, None, meter).map(|(size, sha256, _)| (size, sha256))
}

/// The file at `path` read once, unpaced: its size, its SHA-256 and the
/// SHA-256 of each of its `piece_size`-byte pieces (the last may be
/// shorter), the same way a staged copy takes them from the snapshot.
/// Links are not followed.
pub fn hash_pieces(
    path: &Path,
    piece_size: usize,
    cancel: &CancelToken,
) -> Result<(u64, String, Pieces)> {
    let input = crate::sys::open_nofollow(path).map_err(Error::io("read", path, HINT_DEST))?;
    let mut silent = crate::progress::Silent;
    let mut meter = Meter {
        phase: Phase::Verify,
        done: 0,
        total: 0,
        progress: &mut silent,
        cancel,
        pacer: Pacer::fast(),
    };
    stream_pieces(input, path, HINT_DEST, None, Some(piece_size), &mut meter)
}

/// [`stream`], also taking the SHA-256 of every `piece_size` bytes (the
/// last piece may be shorter) on a third thread.
fn stream_pieces(
    mut input: File,
    src: &Path,
    hint: &'static str,
    mut output: Option<(&mut File, &Path, Durability)>,
    piece_size: Option<usize>,
    meter: &mut Meter,
) -> Result<(u64, String, Pieces)> {
    const BUFFERS: usize = 4;
    let (to_hash, hash_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (to_reuse, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    std::thread::scope(|scope| {
        let (to_pieces, pieces_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
        let pieces = match piece_size {
            Some(piece_size) => {
                let to_reuse = to_reuse.clone();
                Some(scope.spawn(move || {
                    let mut ids = Vec::new();
                    let mut piece = Sha256::new();
                    let mut in_piece = 0usize;
                    for (buf, n) in pieces_rx {
                        let mut rest = &buf[..n];
                        while !rest.is_empty() {
                            let take = (piece_size - in_piece).min(rest.len());
                            piece.update(&rest[..take]);
                            in_piece += take;
                            rest = &rest[take..];
                            if in_piece == piece_size {
                                ids.push(std::mem::take(&mut piece).finalize().into());
                                in_piece = 0;
                            }
                        }
                        let _ = to_reuse.send(buf);
                    }
                    if in_piece > 0 {
                        ids.push(piece.finalize().into());
                    }
                    ids
                }))
            }
            None => None,
        };
        let with_pieces = pieces.is_some();
        let hasher = scope.spawn(move || {
            let mut hasher = Sha256::new();
            for (buf, n) in hash_rx {
                hasher.update(&buf[..n]);
                if with_pieces {
                    let _ = to_pieces.send((buf, n));
                } else {
                    let _ = to_reuse.send(buf);
                }
            }
            hex(&hasher.finalize())
        });
        let mut fresh = BUFFERS;
        let mut size = 0u64;
        let mut flushed = 0u64;
        let from_snapshot = matches!(
            output,
            Some((_, _, Durability::Durable | Durability::Staged))
        );
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
            if from_snapshot {
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
        let ids = pieces
            .map(|p| p.join().expect("hashing does not panic"))
            .unwrap_or_default();
        result.map(|size| (size, digest, ids))
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

    #[test]
    fn a_staged_copy_hashes_its_pieces_as_it_reads_and_keeps_them_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("set")).unwrap();
        // Pieces that do not divide the copy's blocks, and a short last one.
        let data: Vec<u8> = (0..BLOCK * 3 + 12_345)
            .map(|i| (i.wrapping_mul(7919) % 251) as u8)
            .collect();
        std::fs::write(dir.path().join("db"), &data).unwrap();
        let cancel = CancelToken::new();
        for piece in [8192usize, 5000, BLOCK * 2] {
            let out = dir.path().join(format!("set-{piece}"));
            std::fs::create_dir(&out).unwrap();
            let mut meter = Meter {
                phase: Phase::Copy,
                done: 0,
                total: 0,
                progress: &mut Silent,
                cancel: &cancel,
                pacer: crate::pace::Pacer::fast(),
            };
            let file = StoreFile {
                role: FileRole::Main,
                name: "db".into(),
                size: data.len() as u64,
            };
            let input = File::open(dir.path().join("db")).unwrap();
            let copied =
                copy_staged(vec![(file, input)], &out, Some(piece as u32), &mut meter).unwrap();
            let (copy, ids) = &copied[0];
            assert_eq!(std::fs::read(out.join("db")).unwrap(), data);
            assert_eq!(copy.sha256, hex(&Sha256::digest(&data)));
            let expected: Vec<[u8; 32]> = data
                .chunks(piece)
                .map(|c| Sha256::digest(c).into())
                .collect();
            assert_eq!(ids, &expected, "pieces of {piece} bytes");
            // Hashed again from the copy (the check, when the pieces are
            // missing or differ): the same, the same way.
            assert_eq!(
                hash_pieces(&out.join("db"), piece, &cancel).unwrap(),
                (data.len() as u64, copy.sha256.clone(), expected.clone())
            );
            // Kept beside the set, and read back as they were.
            let kept = pieces_path(&out);
            assert_eq!(
                kept.file_name().unwrap().to_str().unwrap(),
                format!(".persnap-pieces-set-{piece}")
            );
            std::fs::create_dir(&kept).unwrap();
            write_pieces(&kept, "db", piece as u32, ids).unwrap();
            assert_eq!(
                read_pieces(&kept, "db", data.len() as u64).unwrap(),
                Some((piece as u32, expected))
            );
            assert_eq!(read_pieces(&kept, "other", 1).unwrap(), None);
        }
        // A list cut short is refused, never read as fewer pieces.
        let kept = pieces_path(&dir.path().join("set-8192"));
        let path = kept.join("db");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        assert!(read_pieces(&kept, "db", data.len() as u64).is_err());
        // Nor is one longer than the smallest pieces of the file take, or
        // anything but a plain file (a link to /dev/zero would never end).
        assert!(read_pieces(&kept, "db", 512).is_err());
        #[cfg(unix)]
        {
            std::fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
            assert!(read_pieces(&kept, "db", data.len() as u64).is_err());
        }
    }
}
