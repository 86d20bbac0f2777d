//! Linux: one structured record per run that ended, into the systemd
//! journal through its native protocol (a datagram of `FIELD=value`
//! lines on its socket), so that `journalctl PERSNAP_OUTCOME=failed` or
//! `journalctl -o verbose SYSLOG_IDENTIFIER=persnap` finds every backup
//! that failed, with its store, its location and the plain message.
//! A scheduled run's own lines go to the journal through its unit as
//! before; this record adds the fields. No journal (no socket): nothing
//! is sent and nothing fails.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// The journal's socket (`PERSNAP_JOURNAL_SOCKET` moves it, for tests).
fn socket() -> PathBuf {
    std::env::var_os("PERSNAP_JOURNAL_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/systemd/journal/socket"))
}

/// The fields in the native protocol: `NAME=value\n`, or, for a value
/// with a line break, `NAME\n`, its length (64 bits, little-endian), the
/// value and `\n`.
pub fn encode(fields: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Send one record; `Ok(false)` when there is no journal to send to.
pub fn send(fields: &[(&str, String)]) -> io::Result<bool> {
    let path = socket();
    if !path.exists() {
        return Ok(false);
    }
    UnixDatagram::unbound()?.send_to(&encode(fields), &path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_framed_as_the_journal_reads_them() {
        let out = encode(&[
            ("MESSAGE", "one line".to_owned()),
            ("DETAIL", "two\nlines".to_owned()),
        ]);
        let mut expected = b"MESSAGE=one line\nDETAIL\n".to_vec();
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(b"two\nlines\n");
        assert_eq!(out, expected);
    }
}
