//! The check of a backup just stored, without reading the whole backup
//! back (issue #30): what this backup added is read back from the
//! storage and authenticated, and the backup's stored list of pieces is
//! compared with the pieces of the verified copy.
//!
//! Exactly what is checked, and what is not:
//! - the copy the backup was stored from is the verified one: each of its
//!   files is hashed again (SHA-256, whole) and matches the manifest, whose
//!   database passed SQLite's integrity check when the backup was made;
//! - that copy is cut into the repository's fixed-size pieces here, each
//!   piece hashed (SHA-256, restic's piece id), and the stored backup's
//!   list of pieces for each file is exactly that list, in order, each
//!   piece known to the repository's index;
//! - every pack file this backup wrote is read back from the storage (past
//!   any cache; for a repository in a folder, after its new files were
//!   dropped from memory where the system allows): its SHA-256 is its
//!   name, and each piece in it decrypts with a valid authentication code,
//!   unpacks to its stated size, and hashes to its id;
//! - pieces that earlier backups stored are not read again here: the
//!   restore drills prove them.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::Aead;
use rustic_core::repofile::Node;
use rustic_core::{FileType, Id, WriteBackend};
use sha2::{Digest, Sha256};

use super::Location;
use super::store::plain;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::CancelToken;

/// Threads reading packs back at once.
const READERS: usize = 4;
/// The largest piece unpacked (as [`super::fetch`]).
const MAX_PIECE: u32 = 64 << 20;
/// The largest pack read back whole: rustic's packs grow to 128 MiB in a
/// very large repository.
const MAX_PACK: u32 = 512 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// restic's cipher with the repository's master key.
pub(super) fn cipher(
    location: &Location,
    key: &rustic_core::repofile::MasterKey,
) -> Result<Aes256CtrPoly1305Aes> {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&key.encrypt);
    bytes.extend_from_slice(&key.mac.k);
    bytes.extend_from_slice(&key.mac.r);
    if bytes.len() != 64 {
        return Err(damaged(
            location,
            "the repository's key has the wrong length".to_owned(),
        ));
    }
    Ok(Aes256CtrPoly1305Aes::new(
        aes256ctr_poly1305aes::Key::from_slice(&bytes),
    ))
}

/// The ids of the fixed-size pieces (`chunk` bytes, the last shorter) of
/// the file at `path`, and the SHA-256 of the whole file, in one read.
pub(super) fn piece_ids(
    path: &Path,
    chunk: usize,
    cancel: &CancelToken,
) -> Result<(Vec<String>, String, u64)> {
    let mut file = crate::sys::open_nofollow(path).map_err(Error::io(
        "read",
        path,
        crate::error::HINT_DEST,
    ))?;
    let mut whole = Sha256::new();
    let mut ids = Vec::new();
    let mut buf = vec![0u8; chunk.max(1) * 256];
    let mut size = 0u64;
    let mut piece = Sha256::new();
    let mut in_piece = 0usize;
    loop {
        cancel.check()?;
        let n = file
            .read(&mut buf)
            .map_err(Error::io("read", path, crate::error::HINT_DEST))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        whole.update(&buf[..n]);
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let take = (chunk - in_piece).min(rest.len());
            piece.update(&rest[..take]);
            in_piece += take;
            rest = &rest[take..];
            if in_piece == chunk {
                ids.push(hex(&std::mem::take(&mut piece).finalize()));
                in_piece = 0;
            }
        }
    }
    if in_piece > 0 {
        ids.push(hex(&piece.finalize()));
    }
    Ok((ids, hex(&whole.finalize()), size))
}

/// The ids a stored file's node lists, as hex.
pub(super) fn listed_ids(node: &Node) -> Vec<String> {
    node.content
        .iter()
        .flatten()
        .map(|id| id.into_inner().to_hex().to_string())
        .collect()
}

/// The pack files in the repository now, as hex ids.
pub(super) fn packs(location: &Location, backend: &dyn WriteBackend) -> Result<HashSet<String>> {
    Ok(backend
        .list(FileType::Pack)
        .map_err(|e| plain(location, "listing the repository's files", &e))?
        .into_iter()
        .map(|id| id.to_hex().to_string())
        .collect())
}

/// What [`read_back_packs`] read.
pub(super) struct PacksRead {
    pub packs: usize,
    pub bytes: u64,
}

/// Read each pack in `new` back from `backend` and check it whole (see
/// the module's documentation); `done` counts the bytes read.
pub(super) fn read_back_packs(
    location: &Location,
    backend: &dyn WriteBackend,
    cipher: &Aes256CtrPoly1305Aes,
    new: &[(Id, u32)],
    done: &AtomicU64,
    cancel: &CancelToken,
) -> Result<PacksRead> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..READERS.min(new.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= new.len() || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if cancel.is_cancelled() {
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    let (id, size) = &new[i];
                    let checked = if *size > MAX_PACK {
                        Err(damaged(
                            location,
                            format!(
                                "pack {}: {size} bytes, larger than any pack",
                                id.to_hex().as_str()
                            ),
                        ))
                    } else {
                        backend
                            .read_full(FileType::Pack, id)
                            .map_err(|e| plain(location, "reading the backup back", &e))
                            .and_then(|bytes| check_pack(location, cipher, &id.to_hex(), &bytes))
                    };
                    match checked {
                        Ok(()) => {
                            done.fetch_add(u64::from(*size), Ordering::Relaxed);
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            failed
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    cancel.check()?;
    Ok(PacksRead {
        packs: new.len(),
        bytes: new.iter().map(|(_, size)| u64::from(*size)).sum(),
    })
}

/// One pack file, whole: its name is its SHA-256; its header (encrypted,
/// at its end, its length in the last four bytes) lists its pieces, which
/// fill it exactly; each piece decrypts, unpacks to its stated size and
/// hashes to its id.
fn check_pack(
    location: &Location,
    cipher: &Aes256CtrPoly1305Aes,
    id: &str,
    bytes: &[u8],
) -> Result<()> {
    let bad = |what: String| damaged(location, format!("pack {id}: {what}"));
    if hex(&Sha256::digest(bytes)) != id {
        return Err(bad("its contents do not match its name".into()));
    }
    let n = bytes.len();
    let header_len = bytes
        .get(n.saturating_sub(4)..)
        .filter(|b| b.len() == 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad("too short".into()))?;
    let blobs_end = n
        .checked_sub(4 + header_len)
        .ok_or_else(|| bad("its header is longer than the pack".into()))?;
    let header = open(cipher, &bytes[blobs_end..n - 4])
        .ok_or_else(|| bad("its header's authentication code does not match".into()))?;
    let mut at = 0usize;
    let mut pos = 0usize;
    let u32_at = |pos: usize| {
        header
            .get(pos..pos + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    while pos < header.len() {
        let kind = header[pos];
        let (length, unpacked, id_at) = match kind {
            0 | 1 => (u32_at(pos + 1), None, pos + 5),
            2 | 3 => (u32_at(pos + 1), u32_at(pos + 5), pos + 9),
            other => return Err(bad(format!("its header names a piece of kind {other}"))),
        };
        let length = length.ok_or_else(|| bad("its header is cut short".into()))? as usize;
        let blob_id = header
            .get(id_at..id_at + 32)
            .ok_or_else(|| bad("its header is cut short".into()))?;
        pos = id_at + 32;
        let sealed = at
            .checked_add(length)
            .filter(|end| *end <= blobs_end)
            .map(|end| &bytes[at..end])
            .ok_or_else(|| bad("its header places a piece past its end".into()))?;
        at += length;
        let what = || format!("the piece {} at {}", hex(blob_id), at - length);
        let mut plain = open(cipher, sealed).ok_or_else(|| {
            bad(format!(
                "{}: its authentication code does not match",
                what()
            ))
        })?;
        if kind >= 2 {
            let size = unpacked.ok_or_else(|| bad("its header is cut short".into()))?;
            if size > MAX_PIECE {
                return Err(bad(format!(
                    "{}: {size} bytes unpacked, larger than any piece",
                    what()
                )));
            }
            plain = zstd::bulk::decompress(&plain, size as usize)
                .ok()
                .filter(|p| p.len() == size as usize)
                .ok_or_else(|| bad(format!("{}: does not unpack to its {size} bytes", what())))?;
        }
        if Sha256::digest(&plain).as_slice() != blob_id {
            return Err(bad(format!("{}: its contents do not match its id", what())));
        }
    }
    if at != blobs_end {
        return Err(bad("its pieces do not fill it".into()));
    }
    Ok(())
}

/// restic's sealed form (a 16-byte nonce, the ciphertext, a 16-byte
/// authentication code), opened; `None` when the code does not match.
fn open(cipher: &Aes256CtrPoly1305Aes, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 32 {
        return None;
    }
    let nonce =
        aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&sealed[..16]);
    cipher.decrypt(nonce, &sealed[16..]).ok()
}

pub(super) fn damaged(location: &Location, detail: String) -> Error {
    Error::Repository {
        what: format!(
            "What this backup wrote into the repository {location} does not read back as it was written."
        ),
        advice: "Back up again; if this repeats, check the storage the repository is on (restic check --read-data).",
        detail,
        kind: ErrorKind::Verify,
    }
}
