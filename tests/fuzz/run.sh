#!/bin/sh
# Fuzz the helper's frame parser and request validation for a bounded time.
#   tests/fuzz/run.sh [SECONDS]   (default 60)
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); the stable
# toolchain is allowed the nightly flags cargo-fuzz uses via RUSTC_BOOTSTRAP.
set -eu
cd "$(dirname "$0")/../.."
seconds=${1:-60}
corpus=tests/fuzz/corpus/frames
mkdir -p "$corpus"
# Seed with well-formed frames so the fuzzer starts deep in validation.
printf '%s\n' '{"version":2,"type":"cleanup"}' > "$corpus/seed-cleanup"
printf '%s\n' '{"version":2,"type":"database-add","name":"orders","source":"/tmp","store_name":"persistence.db"}' > "$corpus/seed-database"
printf '%s\n' '{"version":2,"type":"restore","backup":"/tmp","target":"/var/tmp"}' > "$corpus/seed-restore"
printf '%s\n%s\n' '{"version":2,"type":"cancel"}' '{"version":2,"type":"capture-checked","error":null}' > "$corpus/seed-worker"
printf '%s\n' '{"version":2,"type":"backup","source":"/tmp","dest":"/var/tmp","store_name":"persistence.db","method":"auto","options":{"online_timeout_secs":60,"snapshot_size":null}}' > "$corpus/seed-backup"
printf '%s\n%s\n' '{"version":2,"type":"probe","source":"/tmp","dest":null,"store_name":"p.db","method":"btrfs","options":{"online_timeout_secs":5,"snapshot_size":1024},"test_snapshot":false}' '{"version":2,"type":"cancel"}' > "$corpus/seed-probe"
# --dev: the profile tests/fuzz/Cargo.toml sets (opt-level 1, debug
# assertions), which builds in half the time of cargo-fuzz's release one.
RUSTC_BOOTSTRAP=1 cargo fuzz run --dev --fuzz-dir tests/fuzz frames "$corpus" -- -max_total_time="$seconds" -max_len=70000
