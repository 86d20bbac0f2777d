//! An SFTP server's own key, checked before rclone connects.
//!
//! rclone's SFTP trusts any server unless it is given a known_hosts file,
//! and then says only "key is unknown", without the key. So the server's
//! keys are asked for first (OpenSSH's `ssh-keyscan`), and held against
//! what is trusted for this repository: the key pinned in its location
//! (`#host-key=SHA256:…`), else the entries for the server in
//! `RCLONE_SFTP_KNOWN_HOSTS_FILE` or `~/.ssh/known_hosts` (found by
//! OpenSSH's `ssh-keygen -F`, which reads hashed names too). A key that is
//! not trusted is refused, with its fingerprint as ssh shows it. The
//! trusted keys are then written into a known_hosts file of this run's
//! own, which rclone is told to check every connection against: a server
//! answering in the real one's place later is refused by rclone itself.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use sha2::Digest;

use super::Address;
use crate::error::{Error, ErrorKind, Result};

const ADVICE_HOST_KEY: &str = "Compare the fingerprint with the server's own key (or ask its administrator). Only if it is the same, trust it: give the repository with #host-key= and the fingerprint at its end, as shown, or add the key to ~/.ssh/known_hosts; then try again.";

/// A key as known_hosts holds it: its type and its base64.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostKey {
    kind: String,
    blob: String,
}

impl HostKey {
    /// `SHA256:…`, as `ssh-keygen -l` and ssh show it.
    fn fingerprint(&self) -> String {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(&self.blob)
            .unwrap_or_default();
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha2::Sha256::digest(&blob))
        )
    }

    /// From a known_hosts line (`names type base64 [comment]`); markers
    /// (`@revoked`, `@cert-authority`) and comments are not trusted keys.
    fn from_line(line: &str) -> Option<HostKey> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let (_names, kind, blob) = (fields.next()?, fields.next()?, fields.next()?);
        let plain = |t: &str| {
            t.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '@' | '.')
            })
        };
        (plain(kind) && plain(blob)).then(|| HostKey {
            kind: kind.to_owned(),
            blob: blob.to_owned(),
        })
    }
}

/// Where a key's type comes in the host key types rclone's SSH client
/// (Go's x/crypto) asks for, first preferred: a server with several keys
/// shows rclone the first it has.
fn rclone_order(kind: &str) -> usize {
    const ORDER: [&str; 6] = [
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
        "ssh-dss",
        "ssh-ed25519",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// How known_hosts names a server: `host`, or `[host]:port`.
fn known_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Runs an OpenSSH tool and returns what it wrote.
fn run(command: &mut Command, tool: &str) -> Result<String> {
    // No console window of its own on Windows.
    #[cfg(windows)]
    std::os::windows::process::CommandExt::creation_flags(command, 0x0800_0000);
    let out = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Repository {
            what: format!(
                "{tool} (part of OpenSSH's client) could not be run, so the SFTP server's key cannot be checked."
            ),
            advice: "Install OpenSSH's client (the openssh-client package; on Windows, the OpenSSH Client feature), then try again.",
            detail: e.to_string(),
            kind: ErrorKind::BadInput,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The keys the server at `host:port` answers with.
fn scan(location: &Address, host: &str, port: u16) -> Result<Vec<HostKey>> {
    let said = run(
        Command::new("ssh-keyscan").args(["-T", "15", "-p", &port.to_string(), host]),
        "ssh-keyscan",
    )?;
    let keys: Vec<HostKey> = said.lines().filter_map(HostKey::from_line).collect();
    if keys.is_empty() {
        return Err(Error::Repository {
            what: format!(
                "Could not reach the repository {location}: the SSH server at {host}:{port} did not answer."
            ),
            advice: "Check that the SSH server is running and reachable from this machine, and that the address is right; then try again.",
            detail: String::new(),
            kind: ErrorKind::Copy,
        });
    }
    Ok(keys)
}

/// The known_hosts file trusted when no key is pinned.
fn known_hosts_file() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("RCLONE_SFTP_KNOWN_HOSTS_FILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(file));
    }
    directories::UserDirs::new().map(|u| u.home_dir().join(".ssh").join("known_hosts"))
}

/// The keys `file` trusts for `name`.
fn known(file: &std::path::Path, name: &str) -> Result<Vec<HostKey>> {
    if !file.is_file() {
        return Ok(Vec::new());
    }
    let said = run(
        Command::new("ssh-keygen")
            .arg("-F")
            .arg(name)
            .arg("-f")
            .arg(file),
        "ssh-keygen",
    )?;
    Ok(said.lines().filter_map(HostKey::from_line).collect())
}

/// An SFTP server's key not trusted for its repository: to be shown, and
/// trusted once the user compared it with the server's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntrustedKey {
    /// As ssh shows it: `SHA256:…`.
    pub fingerprint: String,
    /// Its type, as ssh names it (`ssh-ed25519`).
    pub kind: String,
    /// The key trusted before, when the server's key changed.
    pub instead_of: Option<String>,
    /// The repository's location with this key trusted (`#host-key=…`).
    pub trusted: Address,
}

impl UntrustedKey {
    /// Where an OpenSSH server keeps its public key of this type, to
    /// compare (`ssh-keygen -lf` it there).
    pub fn server_file(&self) -> String {
        let kind = match self.kind.as_str() {
            k if k.starts_with("ecdsa-") => "ecdsa",
            "ssh-rsa" => "rsa",
            "ssh-dss" => "dsa",
            _ => "ed25519",
        };
        format!("/etc/ssh/ssh_host_{kind}_key.pub")
    }
}

/// The SFTP server of `location` answers with a key not trusted for it:
/// which (`None`: trusted, or not SFTP).
pub fn untrusted_key(location: &Address) -> Result<Option<UntrustedKey>> {
    let Some((host, port)) = location.sftp_host() else {
        return Ok(None);
    };
    Ok(judge(location, &host, port)?.err().map(|(key, _)| key))
}

/// The server's keys trusted for `location`, or the one it answers with
/// instead (and all it offered).
#[allow(clippy::type_complexity)]
fn judge(
    location: &Address,
    host: &str,
    port: u16,
) -> Result<std::result::Result<Vec<HostKey>, (UntrustedKey, Vec<HostKey>)>> {
    let offered = scan(location, host, port)?;
    let pinned = location.host_key();
    let trusted: Vec<HostKey> = match pinned {
        Some(pin) => offered
            .iter()
            .filter(|k| k.fingerprint() == pin)
            .cloned()
            .collect(),
        None => {
            let known = match known_hosts_file() {
                Some(file) => known(&file, &known_name(host, port))?,
                None => Vec::new(),
            };
            offered
                .iter()
                .filter(|k| known.contains(k))
                .cloned()
                .collect()
        }
    };
    // rclone takes the one key the server shows it, of the first type in
    // its own order (Go's SSH client), and checks only that one: the key
    // to trust is that one (an ssh-ed25519 key trusted is no help while
    // rclone is shown the ecdsa one).
    let checked = offered
        .iter()
        .min_by_key(|k| rclone_order(&k.kind))
        .expect("scan returns a key at least");
    if trusted.contains(checked) {
        return Ok(Ok(trusted));
    }
    let fingerprint = checked.fingerprint();
    let untrusted = UntrustedKey {
        kind: checked.kind.clone(),
        instead_of: pinned.map(str::to_owned),
        trusted: location.with_host_key(&fingerprint)?,
        fingerprint,
    };
    Ok(Err((untrusted, offered)))
}

/// Checks the server's key of the SFTP location `location` (at
/// `host:port`) and returns the known_hosts file rclone is to check every
/// connection against; refused, with the key's fingerprint, when the
/// server's key is not trusted.
pub(super) fn trusted(location: &Address, host: &str, port: u16) -> Result<tempfile::TempPath> {
    let name = known_name(host, port);
    let trusted = match judge(location, host, port)? {
        Ok(trusted) => trusted,
        Err((key, offered)) => {
            let compare = key.server_file();
            let UntrustedKey {
                fingerprint,
                kind,
                instead_of,
                trusted: with_pin,
            } = key;
            let what = match instead_of {
                Some(pin) => format!(
                    "The SSH server at {host}:{port} answered with the key {fingerprint} ({kind}), not with the key {pin} trusted for the repository {location}: someone may be answering in the server's place, or the server's key was changed. Nothing was sent to it. If the server's key was changed on purpose (compare: ssh-keygen -lf {compare} on the server), the repository is {with_pin}"
                ),
                None => format!(
                    "The SSH server at {host}:{port} answered with the key {fingerprint} ({kind}), which is not trusted for the repository {location} (it is not in {}): it may be another machine answering in the server's place. Nothing was sent to it. Once you know it is the server's key (compare: ssh-keygen -lf {compare} on the server), the repository is {with_pin}",
                    known_hosts_file().map_or_else(
                        || "a known_hosts file".to_owned(),
                        |f| f.display().to_string()
                    )
                ),
            };
            return Err(Error::Repository {
                what,
                advice: ADVICE_HOST_KEY,
                detail: offered
                    .iter()
                    .map(|k| format!("{} {}", k.kind, k.fingerprint()))
                    .collect::<Vec<_>>()
                    .join(", "),
                kind: ErrorKind::BadInput,
            });
        }
    };
    let refused = |e: std::io::Error| Error::Repository {
        what: "The SSH server's trusted key could not be written down for the connection.".into(),
        advice: "Check that the temporary folder has free space and can be written, then try again.",
        detail: e.to_string(),
        kind: ErrorKind::Copy,
    };
    let mut file = tempfile::Builder::new()
        .prefix("persnap-known-hosts-")
        .tempfile()
        .map_err(refused)?;
    for key in trusted {
        writeln!(file, "{name} {} {}", key.kind, key.blob).map_err(refused)?;
    }
    file.flush().map_err(refused)?;
    Ok(file.into_temp_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_as_ssh_shows_them() {
        // As `ssh-keygen -lf` shows this key.
        let key = HostKey::from_line(
            "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBz5GdxhRtXgrXjrbSNz6V7jg8qfcFGL3mq+w5pWBp4y",
        )
        .unwrap();
        assert_eq!(key.kind, "ssh-ed25519");
        assert_eq!(
            key.fingerprint(),
            "SHA256:c5xEG2/MbrbHOauP42ccF5fuHhQ+7XeSNotHfyH6P6s"
        );
        assert!(HostKey::from_line("# comment").is_none());
        assert!(HostKey::from_line("@revoked * ssh-ed25519 AAAA").is_none());
        assert_eq!(known_name("h", 22), "h");
        // A server with the usual three keys shows rclone its ECDSA one.
        let mut kinds = ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"];
        kinds.sort_by_key(|k| rclone_order(k));
        assert_eq!(kinds, ["ecdsa-sha2-nistp256", "ssh-rsa", "ssh-ed25519"]);
        assert_eq!(known_name("h", 2222), "[h]:2222");
    }
}
