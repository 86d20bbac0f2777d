//! The few operating-system calls the engine needs, one file per platform
//! with the same functions: opening without following links, private
//! files and folders, free space, durability and cache hints, privileges,
//! the host name and where run locks live. Everything above this module is
//! platform-neutral.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// A SQLite `file:` URI naming the Windows path `path` exactly as given,
/// in every form Windows paths take: `C:\dir`, the long-path form
/// `\\?\C:\dir`, shares `\\host\share\dir` and `\\?\UNC\host\share\dir`
/// (what a mapped network drive canonicalizes to), with spaces, `#`, `%`,
/// `?` and non-ASCII names.
///
/// The path follows `file:` directly, with no `//` authority: SQLite then
/// takes everything up to the query as the path, percent-decoded, and its
/// Windows file layer opens a path that starts with `\` or `X:\` as is
/// (no rewriting, so the `\\?\` prefix and its long paths survive). The
/// `file:///C:/…` form cannot name a share (SQLite reads `file:///UNC/…`
/// as a local folder) nor keep `\\?\`. Every byte other than letters,
/// digits, `\ : - . _ ~` is percent-encoded, `/` too, so a path that
/// starts with `//` is never read as an authority.
pub fn windows_file_uri(path: &str) -> String {
    percent_encoded("file:", path.as_bytes(), b"\\:-._~")
}

/// `prefix` then `bytes`, every byte that is not alphanumeric or in `safe`
/// percent-encoded (for SQLite `file:` URIs).
fn percent_encoded(prefix: &str, bytes: &[u8], safe: &[u8]) -> String {
    let mut uri = String::from(prefix);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::windows_file_uri;

    #[test]
    fn windows_paths_of_every_form_become_uris_sqlite_reads_back() {
        for (path, uri) in [
            (r"C:\data\persistence.db", r"file:C:\data\persistence.db"),
            (
                r"\\?\C:\data\persistence.db",
                r"file:\\%3F\C:\data\persistence.db",
            ),
            (
                r"\\nas\share\backups\persistence.db",
                r"file:\\nas\share\backups\persistence.db",
            ),
            (
                r"\\?\UNC\nas\share\backups\persistence.db",
                r"file:\\%3F\UNC\nas\share\backups\persistence.db",
            ),
            (
                r"C:\Apama data\#1 100%\what?.db",
                r"file:C:\Apama%20data\%231%20100%25\what%3F.db",
            ),
            (r"C:\Daten\Größe.db", r"file:C:\Daten\Gr%C3%B6%C3%9Fe.db"),
            (r"//nas/share/x.db", r"file:%2F%2Fnas%2Fshare%2Fx.db"),
        ] {
            assert_eq!(windows_file_uri(path), uri, "{path}");
            // SQLite's own reading of the URI gives back the path exactly.
            assert_eq!(sqlite_uri_path(&windows_file_uri(path)), path);
        }
        // Long paths keep every component.
        let long = format!(
            r"\\?\C:\{}\persistence.db",
            vec!["d".repeat(200); 3].join(r"\")
        );
        assert_eq!(sqlite_uri_path(&windows_file_uri(&long)), long);
    }

    /// The path SQLite takes from a `file:` URI with no authority: the
    /// text up to `?` or `#`, percent-decoded (sqlite3ParseUri).
    fn sqlite_uri_path(uri: &str) -> String {
        let rest = uri.strip_prefix("file:").unwrap();
        assert!(!rest.starts_with("//"), "no authority: {uri}");
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let bytes = &rest.as_bytes()[..end];
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&rest[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
