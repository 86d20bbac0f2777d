//! How large a file a repository can hold. The restic format lists every
//! piece (chunk) of every file of a folder in one tree blob, and a blob's
//! length is a 4-byte field: so the number of chunks of a backup set, and
//! with it the largest database, is bounded by the repository's chunk size
//! (docs/BENCHMARKS.md, "Repositories: chunking for big databases").

use crate::error::{Error, ErrorKind, Result};
use crate::units;

/// The most bytes one blob may hold. Its length is a 4-byte field in
/// restic's format (a pack header entry's `len_data`, the index's
/// `length` and `uncompressed_length`), and rustic_core 0.13 refuses a
/// longer one when it encrypts it (`src/backend/decrypt.rs`,
/// `encrypt_data`: "Failed to convert data length to u32"): only after
/// the whole file has been read and its data stored, since the tree is
/// written last.
pub const MAX_BLOB_BYTES: u64 = u32::MAX as u64;

/// The most bytes of a backup's list of pieces persnap reads: it is read
/// into memory whole (and a repository someone else made may say any
/// size), so it is bounded well below [`MAX_BLOB_BYTES`]. A set is
/// refused before it is stored when its list would be longer.
pub const MAX_LIST_BYTES: u64 = 1 << 30;

/// What one chunk adds to the tree listing its file (before compression):
/// its id as 64 hex digits, quoted, and a comma.
pub const TREE_BYTES_PER_CHUNK: u64 = 67;

/// Room kept in the tree for the rest of what it says: the files' names
/// and metadata, a few hundred bytes each, and each file's last, partial
/// chunk.
const TREE_ROOM: u64 = 1 << 20;

/// The most bytes of files one folder of a backup may hold in a
/// repository that cuts them into chunks of `chunk_bytes` (content-defined
/// chunking: give its smallest chunk).
pub fn largest_storable(chunk_bytes: u64) -> u64 {
    ((MAX_LIST_BYTES.min(MAX_BLOB_BYTES) - TREE_ROOM) / TREE_BYTES_PER_CHUNK)
        .saturating_mul(chunk_bytes.max(1))
}

/// Refuses, in words, a backup set a repository cannot hold, before any
/// of it is read or stored: `set_bytes` is the sum of the set's files (the
/// database, its journal or WAL, and the manifest: they are listed in one
/// tree), `chunk_bytes` the repository's chunk size (for content-defined
/// chunking, its smallest chunk). rustic would otherwise store the whole
/// file's data and then fail on its list, leaving unused data behind.
pub fn check_chunk_list(set_bytes: u64, chunk_bytes: u64) -> Result<()> {
    let chunk_bytes = chunk_bytes.max(1);
    let largest = largest_storable(chunk_bytes);
    if set_bytes <= largest {
        return Ok(());
    }
    let chunks = set_bytes.div_ceil(chunk_bytes);
    Err(Error::Repository {
        what: format!(
            "This database ({}) is too large for this repository, which cuts files into pieces of {}: the list of a file's pieces is kept in one record, which persnap reads back whole and allows up to 1 GiB: enough for {} of files. Nothing was stored.",
            units::bytes(set_bytes),
            units::bytes(chunk_bytes),
            units::bytes(largest)
        ),
        advice: "Back this database up into a folder, or into a new repository that cuts larger pieces (one created with PERSNAP_REPO_CHUNKING=16 holds about 240 GiB, with 64 about 970 GiB).",
        detail: format!(
            "{chunks} chunks of {chunk_bytes} bytes make a tree of about {} bytes ({TREE_BYTES_PER_CHUNK} bytes each), more than the {MAX_LIST_BYTES} persnap reads back (a blob's 4-byte length allows {MAX_BLOB_BYTES})",
            chunks.saturating_mul(TREE_BYTES_PER_CHUNK)
        ),
        kind: ErrorKind::BadInput,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_file_whose_list_of_chunks_outgrows_a_blob_is_refused_in_words() {
        // 4 KiB chunks (SQLite's page): about 61 GiB at most, 8 KiB (the
        // product's) about 122 GiB, as a 1 GiB list allows.
        let largest = largest_storable(4 << 10);
        assert!(largest > 61 * GIB && largest < 62 * GIB, "{largest}");
        let largest8 = largest_storable(8 << 10);
        assert!(largest8 > 122 * GIB && largest8 < 123 * GIB, "{largest8}");
        for ok in [10 * GIB, 60 * GIB] {
            assert!(check_chunk_list(ok, 4 << 10).is_ok(), "{ok}");
        }
        let refused = check_chunk_list(500 * GIB, 4 << 10).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::BadInput);
        let said = refused.to_string();
        assert!(
            said.starts_with("This database (500.0 GiB) is too large for this repository, which cuts files into pieces of 4.0 KiB"),
            "{said}"
        );
        assert!(
            said.contains("enough for 61.1 GiB of files. Nothing was stored."),
            "{said}"
        );
        assert!(said.contains("more than the 1073741824"), "{said}");
        // Just past the limit, and larger pieces.
        assert!(check_chunk_list(largest + 1, 4 << 10).is_err());
        assert!(check_chunk_list(largest, 4 << 10).is_ok());
        assert!(check_chunk_list(240 * GIB, 16 << 10).is_ok());
        assert!(check_chunk_list(250 * GIB, 16 << 10).is_err());
        assert!(check_chunk_list(970 * GIB, 64 << 10).is_ok());
        // Content-defined chunking, judged by its smallest chunk (512 KiB).
        assert!(check_chunk_list(7_000 * GIB, 512 << 10).is_ok());
        // A nonsense chunk size does not divide by zero.
        assert!(check_chunk_list(GIB, 0).is_err());
    }
}
