#!/bin/sh
# Build the Debian package target/debian/persnap_<version>-1_amd64.deb:
# release binaries, manual pages generated from the CLI definitions, then
# cargo-deb with the asset list in Cargo.toml ([package.metadata.deb]).
# Needs cargo-deb (`cargo install cargo-deb --locked`).
# PERSNAP_PROFILE=dev packs the unoptimized build instead (the tests do,
# with the build they already made; what ships is release).
set -eu
cd "$(dirname "$0")/.."
profile=${PERSNAP_PROFILE:-release}
cargo build --profile "$profile" --locked --bins
bindir=${CARGO_TARGET_DIR:-target}/$(if [ "$profile" = dev ]; then echo debug; else echo "$profile"; fi)
rm -rf target/man
"$bindir/persnap" man target/man
cargo deb --no-build --locked --profile "$profile"
