#!/usr/bin/env bash
# Build the Windows setup program persnap-<version>-setup.exe from Linux:
# cross-compile the release executables (MinGW; manifests, icon and version
# embedded by build.rs), then NSIS (makensis, amd64-unicode). Prints the
# setup program's path last. Output goes into $CARGO_TARGET_DIR (target/
# when unset).
# Needs the x86_64-pc-windows-gnu Rust target, mingw-w64 and nsis.
# PERSNAP_PROFILE=dev packs the unoptimized build instead (the tests do,
# with the build they already made; what ships is release).
#
# Signing (Authenticode), with osslsigncode: set PERSNAP_SIGN_PFX to a
# code-signing certificate with its key (.pfx), PERSNAP_SIGN_PASSWORD_FILE
# to a file holding its password (or PERSNAP_SIGN_PASSWORD to the password
# itself), and optionally PERSNAP_SIGN_TIMESTAMP to a timestamp server's
# URL. Then persnap.exe, persnap-helper.exe, the uninstaller and the setup
# program are all signed. Without a certificate the build is unsigned:
# Windows then names no publisher when it asks for administrator rights,
# and Smart App Control (on a fresh Windows 11) blocks it.
set -euo pipefail
# Paths the caller gave, relative to where they were, before moving to the
# repository.
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
for name in CARGO_TARGET_DIR PERSNAP_SIGN_PFX PERSNAP_SIGN_PASSWORD_FILE; do
  if [ -n "${!name:-}" ]; then export "$name=$(absolute "${!name}")"; fi
done
cd "$(dirname "$0")/.."
target=x86_64-pc-windows-gnu
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
# A wrong certificate path fails now, not after the build.
if [ -n "${PERSNAP_SIGN_PFX:-}" ] && [ ! -f "$PERSNAP_SIGN_PFX" ]; then
  echo "PERSNAP_SIGN_PFX: no file $PERSNAP_SIGN_PFX" >&2
  exit 1
fi
profile=${PERSNAP_PROFILE:-release}
cargo build --profile "$profile" --locked --target "$target" --bins
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
bindir=$target_dir/$target/$(if [ "$profile" = dev ]; then echo debug; else echo "$profile"; fi)
setup=$target_dir/persnap-$version-setup.exe

# What the setup program packs, copied: signing changes the files, and
# cargo's own stay as cargo built them.
stage=$target_dir/windows-setup
rm -rf "$stage"
mkdir -p "$stage"
cp "$bindir/persnap.exe" "$bindir/persnap-helper.exe" "$stage/"
# The tests' unoptimized build is 360 MB with its symbols: packed as it
# is, with LZMA, each setup program takes three minutes to make.
compress=()
if [ "$profile" = dev ]; then
  x86_64-w64-mingw32-strip -s "$stage/persnap.exe" "$stage/persnap-helper.exe"
  compress=(-DCOMPRESSOR=zlib)
fi

# The Event Log's message file (installer/windows/persnap-events.c): every
# id from 1 to 1000 is its event's own text (%1; %0: no line break after).
events=$(mktemp -d)
{
  echo 'LanguageNames=(English=0x409:MSG00409)'
  for id in $(seq 1 1000); do printf 'MessageId=%d\nLanguage=English\n%%1%%0\n.\n' "$id"; done
} > "$events/persnap-events.mc"
# windres finds the message table's .bin in its working folder.
(cd "$events" && x86_64-w64-mingw32-windmc persnap-events.mc \
  && x86_64-w64-mingw32-windres -i persnap-events.rc -O coff -o persnap-events.o)
x86_64-w64-mingw32-gcc -shared -nostdlib -s -Wl,-e,DllMain -o "$stage/persnap-events.dll" \
  installer/windows/persnap-events.c "$events/persnap-events.o"
rm -rf "$events"

sign=()
if [ -n "${PERSNAP_SIGN_PFX:-}" ]; then
  if [ -z "${PERSNAP_SIGN_PASSWORD_FILE:-}" ] && [ -n "${PERSNAP_SIGN_PASSWORD:-}" ]; then
    # osslsigncode takes a password on its command line or from a file:
    # a file only this user can read, removed when done.
    secret=$(mktemp -d)
    trap 'rm -rf "$secret"' EXIT
    printf '%s' "$PERSNAP_SIGN_PASSWORD" > "$secret/password"
    export PERSNAP_SIGN_PASSWORD_FILE=$secret/password
  fi
  unset PERSNAP_SIGN_PASSWORD
  export PERSNAP_SIGN_PFX PERSNAP_SIGN_TIMESTAMP="${PERSNAP_SIGN_TIMESTAMP:-}"
  installer/sign-windows.sh "$stage/persnap.exe" "$stage/persnap-helper.exe" "$stage/persnap-events.dll"
  # makensis signs the uninstaller and the setup program with it.
  sign=(-DSIGN_CMD="$PWD/installer/sign-windows.sh")
else
  echo "note: unsigned build (set PERSNAP_SIGN_PFX to sign): Windows will show \"Unknown publisher\" when it asks for administrator rights, and Smart App Control on a fresh Windows 11 will block it." >&2
fi

makensis -V2 "${compress[@]}" -DVERSION="$version" -DBINDIR="$stage" "${sign[@]}" \
  -DOUTFILE="$setup" installer/windows/persnap.nsi >&2
echo "$setup"
