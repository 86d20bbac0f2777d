#!/bin/sh
# Build the Debian package target/debian/persnap_<version>-1_amd64.deb:
# release binaries, manual pages generated from the CLI definitions, then
# cargo-deb with the asset list in Cargo.toml ([package.metadata.deb]).
# Needs cargo-deb (`cargo install cargo-deb --locked`).
set -eu
cd "$(dirname "$0")/.."
cargo build --release --locked --bins
rm -rf target/man
target/release/persnap man target/man
cargo deb --no-build --locked
