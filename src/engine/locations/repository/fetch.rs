//! Reading a backup's files back out of a repository, in bounded memory.
//!
//! rustic_core's restore reads packs on 20 threads, keeps a task per 4 KiB
//! piece until it is written and opens the file anew for every write, so a
//! 1 GiB database waited in memory (1.1 GiB measured, 2.1 GiB at 8 GiB;
//! docs/BENCHMARKS.md), and a read that fails panics inside its pool. Here
//! the pieces of the files, sorted by where they lie in the repository's
//! pack files, are read in ranges of at most [`RANGE`] bytes by [`READERS`]
//! threads; each range's pieces are decrypted and their authentication
//! codes checked (restic's AES-256-CTR and Poly1305-AES, through the crate
//! rustic itself uses), decompressed, and written at their place through
//! one open handle per file. At most [`READERS`] ranges are in memory.

use std::collections::HashMap;
use std::fs::File;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::Aead;
use rustic_core::repofile::{Node, PackId};
use rustic_core::{FileType, IndexedFullStatus, Repository, WriteBackend};

use super::Address;
use super::plain;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::CancelToken;

/// Threads reading from the repository at once: enough to keep a remote
/// server's latency hidden, few enough that their ranges stay small.
const READERS: usize = 6;
/// The most one read asks for (and holds in memory).
const RANGE: u32 = 4 << 20;
/// Pieces this close together in a pack are read in one request, the gap
/// with them (cheaper than a second request).
const GAP: u32 = 256 << 10;
/// Written pieces that follow each other in a file go out in one write of
/// up to this much.
const WRITE_BATCH: usize = 1 << 20;

/// The largest piece read back: the repository's index says how large
/// each piece is, and a damaged or hostile one could say 4 GiB (held in
/// memory once per reader). restic's and rustic's pieces are 8 MiB at
/// most; persnap's are a few pages.
const MAX_PIECE: u32 = 64 << 20;

const ADVICE_DAMAGED: &str = "The repository's copy of this backup is damaged. Use another backup, and check the repository (restic check --read-data).";

/// One piece of a file, and where it lies in the repository.
struct Piece {
    pack: u32,
    offset: u32,
    length: u32,
    uncompressed: Option<NonZeroU32>,
    size: u32,
    file: u32,
    at: u64,
}

/// The pieces `pieces` of pack `pack`, read as bytes `start..end` of it.
struct Range {
    pack: u32,
    start: u32,
    end: u32,
    pieces: std::ops::Range<usize>,
}

/// Counts for the progress display: bytes written, of `total`.
pub(super) struct Counts<'a> {
    pub done: &'a AtomicU64,
    pub total: &'a AtomicU64,
}

/// Write each of `files` (a name, plain and checked by the caller, and its
/// node in the snapshot's tree) as a new file in the folder `target`, from
/// the repository `repo` read through `backend`.
pub(super) fn files(
    location: &Address,
    repo: &Repository<IndexedFullStatus>,
    backend: &dyn WriteBackend,
    files: &[(PathBuf, Node)],
    target: &Path,
    counts: Counts<'_>,
    cancel: &CancelToken,
) -> Result<()> {
    let cipher = cipher(&repo.key()).ok_or_else(|| {
        damaged(
            location,
            "the repository's key has the wrong length".to_owned(),
        )
    })?;

    let (packs, mut pieces) = plan(location, repo, files)?;
    let total: u64 = pieces.iter().map(|p| u64::from(p.size)).sum();
    counts.total.store(total, Ordering::Relaxed);
    counts.done.store(0, Ordering::Relaxed);
    pieces.sort_unstable_by_key(|p| (p.pack, p.offset, p.file, p.at));
    let ranges = ranges(&pieces);

    let mut handles = Vec::with_capacity(files.len());
    for (name, node) in files {
        let path = target.join(name);
        let file = crate::sys::create_private(&path).map_err(Error::io(
            "create",
            &path,
            crate::error::HINT_DEST,
        ))?;
        file.set_len(node.meta.size)
            .map_err(Error::io("write", &path, crate::error::HINT_DEST))?;
        handles.push((file, path));
    }

    in_parallel(&ranges, READERS, cancel, |range| {
        read_range(
            location,
            backend,
            &cipher,
            &packs[range.pack as usize],
            range,
            &pieces[range.pieces.clone()],
            &handles,
            counts.done,
        )
    })?;
    cancel.check()?;
    for (file, path) in &handles {
        file.sync_all()
            .map_err(Error::io("write", path, crate::error::HINT_DEST))?;
    }
    Ok(())
}

/// restic's cipher (AES-256-CTR and Poly1305-AES) with the repository's
/// master key; `None` if the key is not 64 bytes.
pub(super) fn cipher(key: &rustic_core::repofile::MasterKey) -> Option<Aes256CtrPoly1305Aes> {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&key.encrypt);
    bytes.extend_from_slice(&key.mac.k);
    bytes.extend_from_slice(&key.mac.r);
    (bytes.len() == 64)
        .then(|| Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&bytes)))
}

/// restic's sealed form (a 16-byte nonce, the ciphertext, a 16-byte
/// authentication code), opened; `None` when it is too short or the code
/// does not match.
pub(super) fn unseal(cipher: &Aes256CtrPoly1305Aes, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 32 {
        return None;
    }
    let nonce =
        aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&sealed[..16]);
    cipher.decrypt(nonce, &sealed[16..]).ok()
}

/// Runs `work` on each of `items` on up to `threads` threads, in order of
/// the items; the first error (or a cancel) stops the rest, and the error
/// is returned.
pub(super) fn in_parallel<T: Sync>(
    items: &[T],
    threads: usize,
    cancel: &CancelToken,
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if cancel.is_cancelled() {
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    if let Err(e) = work(&items[i]) {
                        stop.store(true, Ordering::Relaxed);
                        failed
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every piece of every file, found in the repository's index, and the
/// packs they lie in.
fn plan(
    location: &Address,
    repo: &Repository<IndexedFullStatus>,
    files: &[(PathBuf, Node)],
) -> Result<(Vec<PackId>, Vec<Piece>)> {
    let mut packs = Vec::new();
    let mut pack_index: HashMap<PackId, u32> = HashMap::new();
    let mut pieces = Vec::new();
    for (file, (name, node)) in files.iter().enumerate() {
        let mut at = 0u64;
        for id in node.content.iter().flatten() {
            let entry = repo
                .get_index_entry(id)
                .map_err(|e| plain(location, "finding the backup's data", &e))?;
            let pack = *pack_index.entry(entry.pack).or_insert_with(|| {
                packs.push(entry.pack);
                u32::try_from(packs.len() - 1).expect("fewer than 2^32 packs")
            });
            let size = entry.location.data_length();
            // What the index says is not trusted to add up or to fit.
            let fits = entry
                .location
                .offset
                .checked_add(entry.location.length)
                .is_some()
                && entry.location.length <= MAX_PIECE + 32
                && size <= MAX_PIECE;
            if !fits {
                return Err(damaged(
                    location,
                    format!(
                        "{}: the index places a piece at {} ({} bytes, {size} unpacked), which no repository holds",
                        name.display(),
                        entry.location.offset,
                        entry.location.length
                    ),
                ));
            }
            pieces.push(Piece {
                pack,
                offset: entry.location.offset,
                length: entry.location.length,
                uncompressed: entry.location.uncompressed_length,
                size,
                file: u32::try_from(file).expect("fewer than 2^32 files"),
                at,
            });
            at += u64::from(size);
        }
        if at != node.meta.size {
            return Err(damaged(
                location,
                format!(
                    "{}: its pieces hold {at} bytes, its size is {}",
                    name.display(),
                    node.meta.size
                ),
            ));
        }
    }
    Ok((packs, pieces))
}

/// The pieces (sorted by pack and offset) grouped into reads.
fn ranges(pieces: &[Piece]) -> Vec<Range> {
    let mut ranges: Vec<Range> = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let end = p.offset + p.length;
        if let Some(last) = ranges.last_mut()
            && last.pack == p.pack
            && p.offset <= last.end.saturating_add(GAP)
            && end.max(last.end) - last.start <= RANGE
        {
            last.end = last.end.max(end);
            last.pieces.end = i + 1;
            continue;
        }
        ranges.push(Range {
            pack: p.pack,
            start: p.offset,
            end,
            pieces: i..i + 1,
        });
    }
    ranges
}

/// Read one range, check and write its pieces.
#[allow(clippy::too_many_arguments)]
fn read_range(
    location: &Address,
    backend: &dyn WriteBackend,
    cipher: &Aes256CtrPoly1305Aes,
    pack: &PackId,
    range: &Range,
    pieces: &[Piece],
    handles: &[(File, PathBuf)],
    done: &AtomicU64,
) -> Result<()> {
    let data = backend
        .read_partial(
            FileType::Pack,
            pack,
            false,
            range.start,
            range.end - range.start,
        )
        .map_err(|e| plain(location, "reading the backup back", &e))?;
    if data.len() != (range.end - range.start) as usize {
        return Err(damaged(
            location,
            format!(
                "pack {pack}: {} bytes read at {}, {} asked for",
                data.len(),
                range.start,
                range.end - range.start
            ),
        ));
    }
    let mut batch = Batch::default();
    let mut last: Option<(u32, Vec<u8>)> = None;
    for piece in pieces {
        // The same piece may be in a file more than once (pages of zeros).
        if last
            .as_ref()
            .is_none_or(|(offset, _)| *offset != piece.offset)
        {
            let from = (piece.offset - range.start) as usize;
            let sealed = &data[from..from + piece.length as usize];
            last = Some((piece.offset, open(location, cipher, pack, piece, sealed)?));
        }
        let (_, plain) = last.as_ref().expect("set above");
        batch.add(handles, piece.file, piece.at, plain)?;
        done.fetch_add(u64::from(piece.size), Ordering::Relaxed);
    }
    batch.flush(handles)
}

/// A piece's bytes: decrypted (its authentication code checked), then
/// decompressed, and of the size the index gives.
fn open(
    location: &Address,
    cipher: &Aes256CtrPoly1305Aes,
    pack: &PackId,
    piece: &Piece,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let at = || format!("pack {pack} at {} ({} bytes)", piece.offset, piece.length);
    if sealed.len() < 32 {
        return Err(damaged(location, format!("{}: too short", at())));
    }
    let mut plain = unseal(cipher, sealed).ok_or_else(|| {
        damaged(
            location,
            format!("{}: its authentication code does not match", at()),
        )
    })?;
    if piece.uncompressed.is_some() {
        // Never unpacked past the size the index gives: a piece made to
        // inflate to gigabytes stops there.
        plain = zstd::bulk::decompress(&plain[..], piece.size as usize).map_err(|e| {
            damaged(
                location,
                format!(
                    "{}: does not unpack to the {} bytes the index gives: {e}",
                    at(),
                    piece.size
                ),
            )
        })?;
    }
    if plain.len() != piece.size as usize {
        return Err(damaged(
            location,
            format!(
                "{}: {} bytes, the index says {}",
                at(),
                plain.len(),
                piece.size
            ),
        ));
    }
    Ok(plain)
}

/// Bytes for one file that follow each other, written at once.
#[derive(Default)]
struct Batch {
    file: u32,
    at: u64,
    bytes: Vec<u8>,
}

impl Batch {
    fn add(&mut self, handles: &[(File, PathBuf)], file: u32, at: u64, bytes: &[u8]) -> Result<()> {
        let follows =
            !self.bytes.is_empty() && self.file == file && self.at + self.bytes.len() as u64 == at;
        if !follows || self.bytes.len() + bytes.len() > WRITE_BATCH {
            self.flush(handles)?;
            self.file = file;
            self.at = at;
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self, handles: &[(File, PathBuf)]) -> Result<()> {
        if !self.bytes.is_empty() {
            let (file, path) = &handles[self.file as usize];
            crate::sys::write_all_at(file, &self.bytes, self.at).map_err(Error::io(
                "write",
                path,
                crate::error::HINT_DEST,
            ))?;
            self.bytes.clear();
        }
        Ok(())
    }
}

fn damaged(location: &Address, detail: String) -> Error {
    Error::Repository {
        what: format!(
            "A backup read back from the repository {location} does not match what was stored."
        ),
        advice: ADVICE_DAMAGED,
        detail,
        kind: ErrorKind::Verify,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A piece whose authentication code is right (someone who holds the
    /// repository's key, or a bug) but that unpacks to 4 GiB where the
    /// index says 4 KiB: refused in words, without unpacking it.
    #[test]
    fn a_piece_that_inflates_past_its_stated_size_is_refused_without_inflating() {
        let key = [7u8; 64];
        let cipher = Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&key));
        // 4 GiB of zeros, as a quarter million small zstd frames.
        let frame = zstd::bulk::compress(&[0u8; 128 << 10], 1).unwrap();
        let bomb: Vec<u8> = frame.repeat(32 << 10);
        let nonce = [1u8; 16];
        let mut sealed = nonce.to_vec();
        sealed.extend(
            cipher
                .encrypt(
                    aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&nonce),
                    &bomb[..],
                )
                .unwrap(),
        );
        let piece = Piece {
            pack: 0,
            offset: 0,
            length: u32::try_from(sealed.len()).unwrap(),
            uncompressed: NonZeroU32::new(4096),
            size: 4096,
            file: 0,
            at: 0,
        };
        let location = Address::parse(if cfg!(windows) { r"C:\r" } else { "/r" }).unwrap();
        let started = std::time::Instant::now();
        let e = open(&location, &cipher, &PackId::default(), &piece, &sealed).unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        let e = format!("{e} {e:?}");
        assert!(
            e.contains("does not unpack to the 4096 bytes the index gives"),
            "{e}"
        );
    }

    fn piece(pack: u32, offset: u32, length: u32) -> Piece {
        Piece {
            pack,
            offset,
            length,
            uncompressed: None,
            size: length - 32,
            file: 0,
            at: 0,
        }
    }

    #[test]
    fn pieces_close_together_are_read_at_once_and_no_read_is_larger_than_a_range() {
        let pieces = [
            piece(0, 0, 4128),
            piece(0, 4128, 4128),
            // The same piece again (a page of zeros twice in the file).
            piece(0, 4128, 4128),
            // A gap a request is dearer than.
            piece(0, 8256 + GAP, 4128),
            // Too far: a read of its own.
            piece(0, 8256 + 3 * GAP, 4128),
            // Another pack: a read of RANGE at most.
            piece(1, 0, 4128),
            piece(1, 4128, RANGE - 4128),
            piece(1, RANGE, 4128),
            // Close, but larger than RANGE alone: read alone.
            piece(1, RANGE + 8192, RANGE + 1),
        ];
        let got: Vec<_> = ranges(&pieces)
            .into_iter()
            .map(|r| (r.pack, r.start, r.end, r.pieces))
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, 8256 + GAP + 4128, 0..4),
                (0, 8256 + 3 * GAP, 8256 + 3 * GAP + 4128, 4..5),
                (1, 0, RANGE, 5..7),
                (1, RANGE, RANGE + 4128, 7..8),
                (1, RANGE + 8192, 2 * RANGE + 8193, 8..9),
            ]
        );
    }
}
