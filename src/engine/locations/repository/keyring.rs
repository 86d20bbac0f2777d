//! Repository passwords kept in the system's secret store, for the user:
//! the Secret Service on Linux (GNOME Keyring, KWallet, KeePassXC — over
//! the user's session bus), Credential Manager on Windows. Through
//! keyring-core and the stores of the keyring project.
//!
//! A password is filed under the repository's location as it is shown
//! (never with a password written into the address), so the app, the
//! command line and every window of the user find the same one. Nothing
//! here runs as root: a scheduled run's password is in the file the helper
//! wrote for it ([`super::Unlock`]), not in anybody's keyring.

use std::sync::Arc;

use keyring_core::{CredentialStore, Entry};

use super::{Address, Password};
use crate::error::{Error, ErrorKind, Result};

/// What persnap's entries are filed under ("service" in the Secret
/// Service's terms, the target's prefix in Credential Manager).
pub const SERVICE: &str = "persnap repository";

/// What the system's secret store is called, for messages.
pub fn store_name() -> &'static str {
    if cfg!(windows) {
        "Windows Credential Manager"
    } else {
        "the keyring (Secret Service)"
    }
}

/// `doing`: "kept in", "removed from".
fn unavailable(doing: &str, detail: String) -> Error {
    Error::Repository {
        what: format!("The password could not be {doing} {}.", store_name()),
        advice: if cfg!(windows) {
            "Type the password each time, or use a password file."
        } else {
            "Start and unlock a keyring (GNOME Keyring, KWallet or KeePassXC with its Secret Service on), or type the password each time, or use a password file."
        },
        detail,
        kind: ErrorKind::Internal,
    }
}

fn store(doing: &str) -> Result<Arc<CredentialStore>> {
    #[cfg(windows)]
    let made = windows_native_keyring_store::Store::new();
    #[cfg(not(windows))]
    let made = dbus_secret_service_keyring_store::Store::new();
    let store: Arc<CredentialStore> = made.map_err(|e| unavailable(doing, e.to_string()))?;
    Ok(store)
}

fn entry(location: &Address, doing: &str) -> Result<Entry> {
    // By the place alone: a server's key trusted later (`#host-key=`)
    // keeps the password found.
    Entry::new_in_store(
        &store(doing)?,
        SERVICE,
        &location.without_options().display(),
    )
    .map_err(|e| unavailable(doing, e.to_string()))
}

/// Keep the password of `location` (replacing one kept before).
pub fn remember(location: &Address, password: &Password) -> Result<()> {
    entry(location, "kept in")?
        .set_password(&password.0)
        .map_err(|e| unavailable("kept in", e.to_string()))
}

/// The password kept for `location`, if any. A secret store that cannot
/// be reached is an error (the caller may then ask for the password).
pub fn recall(location: &Address) -> Result<Option<Password>> {
    match entry(location, "read from")?.get_password() {
        Ok(password) => Ok(Some(Password::new(password))),
        Err(keyring_core::Error::NoEntry) => Ok(None),
        Err(e) => Err(Error::Repository {
            what: format!(
                "The password kept for {location} in {} could not be read.",
                store_name()
            ),
            advice: "Unlock the keyring, or type the password.",
            detail: e.to_string(),
            kind: ErrorKind::Internal,
        }),
    }
}

/// Forget the password kept for `location`; whether there was one.
pub fn forget(location: &Address) -> Result<bool> {
    match entry(location, "removed from")?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring_core::Error::NoEntry) => Ok(false),
        Err(e) => Err(unavailable("removed from", e.to_string())),
    }
}

/// Credential Manager for real: under wine in the Windows test run
/// (tests/windows/run.sh), or on Windows.
#[cfg(all(test, windows))]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_kept_recalled_and_forgotten_in_credential_manager() {
        let folder = std::env::temp_dir().join(format!("persnap-keyring-{}", std::process::id()));
        let location = Address::parse(folder.to_str().unwrap()).unwrap();
        assert!(recall(&location).unwrap().is_none(), "nothing kept yet");
        remember(&location, &Password::new("first")).unwrap();
        remember(&location, &Password::new("second")).unwrap();
        assert_eq!(recall(&location).unwrap().unwrap().expose(), "second");
        assert!(forget(&location).unwrap());
        assert!(recall(&location).unwrap().is_none());
        assert!(!forget(&location).unwrap(), "forgotten once");
    }
}
