#!/usr/bin/env bash
# Sign Windows programs in place with Authenticode (osslsigncode):
#   PERSNAP_SIGN_PFX=cert.pfx [PERSNAP_SIGN_PASSWORD_FILE=file]
#   [PERSNAP_SIGN_TIMESTAMP=url] installer/sign-windows.sh FILE...
# installer/package-windows.sh runs it on persnap.exe and
# persnap-helper.exe, and makensis runs it (!uninstfinalize, !finalize) on
# the uninstaller and the setup program. The password is read from a file
# so that it never appears on a command line (other users can list those).
# A timestamp keeps the signature valid after the certificate expires.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 FILE..." >&2; exit 2; }
: "${PERSNAP_SIGN_PFX:?set PERSNAP_SIGN_PFX to the code-signing certificate (.pfx) to sign with}"
command -v osslsigncode >/dev/null || { echo "osslsigncode is missing (apt install osslsigncode)" >&2; exit 1; }
args=(sign -pkcs12 "$PERSNAP_SIGN_PFX" -n persnap -h sha256)
if [ -n "${PERSNAP_SIGN_PASSWORD_FILE:-}" ]; then
  args+=(-readpass "$PERSNAP_SIGN_PASSWORD_FILE")
fi
if [ -n "${PERSNAP_SIGN_TIMESTAMP:-}" ]; then
  args+=(-ts "$PERSNAP_SIGN_TIMESTAMP")
fi
for file in "$@"; do
  rm -f "$file.signed"
  # Its report to stderr: callers read the setup program's path from stdout.
  if ! osslsigncode "${args[@]}" -in "$file" -out "$file.signed" >&2; then
    rm -f "$file.signed"
    echo "could not sign $file" >&2
    exit 1
  fi
  mv -f "$file.signed" "$file"
done
