#!/bin/sh
# Build the Windows setup program target/persnap-<version>-setup.exe from
# Linux: cross-compile the release executables (MinGW; manifests and icon
# embedded by build.rs), then NSIS (makensis, amd64-unicode).
# Needs the x86_64-pc-windows-gnu Rust target, mingw-w64 and nsis.
set -eu
cd "$(dirname "$0")/.."
target=x86_64-pc-windows-gnu
cargo build --release --locked --target "$target" --bins
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
makensis -V2 -DVERSION="$version" -DBINDIR="$PWD/target/$target/release" \
  -DOUTFILE="$PWD/target/persnap-$version-setup.exe" installer/windows/persnap.nsi
echo "target/persnap-$version-setup.exe"
