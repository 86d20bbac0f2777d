//! The check of a backup just stored, without reading the whole backup
//! back (issue #30): what this backup added is read back from the
//! storage and authenticated, and the backup's stored list of pieces is
//! compared with the pieces of the verified copy.
//!
//! Exactly what is checked, and what is not:
//! - the stored backup's list of pieces for each file is exactly the list
//!   of that file's fixed-size pieces, in order, each hashed (SHA-256,
//!   restic's piece id): for a staged set, as its bytes came from the
//!   snapshot ([`crate::copy::copy_staged`]); else, and to say which side
//!   changed when they differ, from the verified copy it was stored from,
//!   hashed again whole (matching the manifest, whose database passed
//!   SQLite's integrity check when the backup was made) and in pieces in
//!   one read ([`crate::copy::hash_pieces`]);
//! - every pack file holding a piece or a list of this backup that the
//!   previous checked backup of the same database does not also use is
//!   read back from the storage (past any cache; for a repository in a
//!   folder, after its new files were dropped from memory where the system
//!   allows): its SHA-256 is its name; each piece in it decrypts with a
//!   valid authentication code, unpacks to its stated size and hashes to
//!   its id; and where the repository's index places this backup's pieces
//!   in it is where its header has them. So pieces a failed or cancelled
//!   run left behind, which a later backup reuses, are read back then;
//! - packs the previous checked backup also uses are not read again here
//!   (its own check read them): the restore drills prove them.

use std::sync::atomic::{AtomicU64, Ordering};

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use rustic_core::{FileType, Id, WriteBackend};
use sha2::{Digest, Sha256};

use super::Address;
use super::plain;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::CancelToken;

/// Threads reading packs back at once.
const READERS: usize = 4;
/// The largest piece unpacked (as [`super::fetch`]).
const MAX_PIECE: u32 = 64 << 20;
/// The largest list of pieces unpacked (a tree blob).
const MAX_LIST: u64 = super::chunks::MAX_LIST_BYTES;
/// The largest pack read back whole: rustic's data packs grow to 128 MiB
/// in a very large repository, and a tree pack holds a list of up to
/// [`MAX_LIST`] bytes.
const MAX_PACK: u64 = MAX_LIST + (128 << 20);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// restic's cipher with the repository's master key.
pub(super) fn cipher(
    location: &Address,
    key: &rustic_core::repofile::MasterKey,
) -> Result<Aes256CtrPoly1305Aes> {
    super::fetch::cipher(key).ok_or_else(|| {
        damaged(
            location,
            "the repository's key has the wrong length".to_owned(),
        )
    })
}

/// Where the repository's index places one blob in its pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placed {
    pub blob: String,
    pub offset: u32,
    pub length: u32,
    pub uncompressed: Option<u32>,
}

/// What [`read_back_packs`] read.
pub(super) struct PacksRead {
    pub packs: usize,
    pub bytes: u64,
}

/// Read each pack in `new` back from `backend` and check it whole, and
/// that each blob `expected` of it is where its header says (see the
/// module's documentation); `done` counts the bytes read.
pub(super) fn read_back_packs(
    location: &Address,
    backend: &dyn WriteBackend,
    cipher: &Aes256CtrPoly1305Aes,
    new: &[(Id, u32, Vec<Placed>)],
    done: &AtomicU64,
    cancel: &CancelToken,
) -> Result<PacksRead> {
    super::fetch::in_parallel(new, READERS, cancel, |(id, size, expected)| {
        let checked = if u64::from(*size) > MAX_PACK {
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
                .and_then(|found| {
                    match expected.iter().find(|e| !found.contains(e)) {
                        None => Ok(()),
                        Some(e) => Err(damaged(
                            location,
                            format!(
                                "pack {}: the index places the piece {} at {} ({} bytes), which its header does not",
                                id.to_hex().as_str(),
                                e.blob,
                                e.offset,
                                e.length
                            ),
                        )),
                    }
                })
        };
        checked?;
        done.fetch_add(u64::from(*size), Ordering::Relaxed);
        Ok(())
    })?;
    cancel.check()?;
    Ok(PacksRead {
        packs: new.len(),
        bytes: new.iter().map(|(_, size, _)| u64::from(*size)).sum(),
    })
}

/// One pack file, whole: its name is its SHA-256; its header (encrypted,
/// at its end, its length in the last four bytes) lists its pieces, which
/// fill it exactly; each piece decrypts, unpacks to its stated size and
/// hashes to its id.
fn check_pack(
    location: &Address,
    cipher: &Aes256CtrPoly1305Aes,
    id: &str,
    bytes: &[u8],
) -> Result<Vec<Placed>> {
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
    let blobs_end = header_len
        .checked_add(4)
        .and_then(|h| n.checked_sub(h))
        .ok_or_else(|| bad("its header is longer than the pack".into()))?;
    let header = super::fetch::unseal(cipher, &bytes[blobs_end..n - 4])
        .ok_or_else(|| bad("its header's authentication code does not match".into()))?;
    let mut at = 0usize;
    let mut pos = 0usize;
    let mut placed = Vec::new();
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
        let mut plain = super::fetch::unseal(cipher, sealed).ok_or_else(|| {
            bad(format!(
                "{}: its authentication code does not match",
                what()
            ))
        })?;
        // Data pieces are small; a tree (a list of pieces) may be long.
        let limit = if kind == 1 || kind == 3 {
            MAX_LIST
        } else {
            u64::from(MAX_PIECE)
        };
        if kind < 2 && plain.len() as u64 > limit {
            return Err(bad(format!(
                "{}: {} bytes, larger than any piece",
                what(),
                plain.len()
            )));
        }
        if kind >= 2 {
            let size = unpacked.ok_or_else(|| bad("its header is cut short".into()))?;
            if u64::from(size) > limit {
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
        placed.push(Placed {
            blob: hex(blob_id),
            offset: u32::try_from(at - length).map_err(|_| bad("longer than 4 GiB".into()))?,
            length: u32::try_from(length).map_err(|_| bad("a piece over 4 GiB".into()))?,
            uncompressed: if kind >= 2 { unpacked } else { None },
        });
    }
    if at != blobs_end {
        return Err(bad("its pieces do not fill it".into()));
    }
    Ok(placed)
}

pub(super) fn damaged(location: &Address, detail: String) -> Error {
    Error::Repository {
        what: format!(
            "What this backup wrote into the repository {location} does not read back as it was written."
        ),
        advice: "Back up again; if this repeats, check the storage the repository is on (restic check --read-data).",
        detail,
        kind: ErrorKind::Verify,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes256ctr_poly1305aes::aead::Aead as _;

    fn cipher() -> Aes256CtrPoly1305Aes {
        Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&[7u8; 64]))
    }

    fn seal(cipher: &Aes256CtrPoly1305Aes, plain: &[u8]) -> Vec<u8> {
        let nonce = [3u8; 16];
        let mut sealed = nonce.to_vec();
        sealed.extend(
            cipher
                .encrypt(
                    aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&nonce),
                    plain,
                )
                .unwrap(),
        );
        sealed
    }

    /// A pack of one blob of `kind` (2 and 3: compressed), as restic lays
    /// it out; its id.
    fn pack(cipher: &Aes256CtrPoly1305Aes, kind: u8, plain: &[u8]) -> (Vec<u8>, String) {
        let stored = if kind >= 2 {
            zstd::bulk::compress(plain, 3).unwrap()
        } else {
            plain.to_vec()
        };
        let mut pack = seal(cipher, &stored);
        let mut header = vec![kind];
        header.extend((pack.len() as u32).to_le_bytes());
        if kind >= 2 {
            header.extend((plain.len() as u32).to_le_bytes());
        }
        header.extend(Sha256::digest(plain));
        let header = seal(cipher, &header);
        let header_len = header.len() as u32;
        pack.extend(header);
        pack.extend(header_len.to_le_bytes());
        let id = hex(&Sha256::digest(&pack));
        (pack, id)
    }

    fn location() -> Address {
        // Any place: nothing is reached (a folder is spelled per system).
        Address::parse("rest:https://backup.example:8000/repo").unwrap()
    }

    /// A list of pieces (a tree) longer than any data piece — a database
    /// of ~8 GiB in 8 KiB pieces lists about 70 MB — reads back; a data
    /// piece as long is refused, and so is any damage.
    #[test]
    fn a_long_list_reads_back_and_damage_never_does() {
        let cipher = cipher();
        let long = vec![b'7'; 70 << 20];
        let (tree_pack, id) = pack(&cipher, 3, &long);
        let placed = check_pack(&location(), &cipher, &id, &tree_pack).unwrap();
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[0].offset, 0);
        assert_eq!(placed[0].uncompressed, Some(70 << 20));
        assert_eq!(placed[0].blob, hex(&Sha256::digest(&long)));

        let (data_pack, id) = pack(&cipher, 2, &long);
        let refused = check_pack(&location(), &cipher, &id, &data_pack).unwrap_err();
        assert!(
            format!("{refused:?}").contains("larger than any piece"),
            "{refused:?}"
        );

        let small = b"a page of a database".repeat(100);
        let (mut damaged, id) = pack(&cipher, 0, &small);
        assert!(check_pack(&location(), &cipher, &id, &damaged).is_ok());
        damaged[20] ^= 1;
        let refused = check_pack(&location(), &cipher, &id, &damaged).unwrap_err();
        assert!(format!("{refused:?}").contains("do not match its name"));
        // Renamed to its new contents: the piece's own code still fails.
        let renamed = hex(&Sha256::digest(&damaged));
        let refused = check_pack(&location(), &cipher, &renamed, &damaged).unwrap_err();
        assert!(
            format!("{refused:?}").contains("authentication code does not match"),
            "{refused:?}"
        );
    }
}
