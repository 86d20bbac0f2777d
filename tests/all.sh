#!/usr/bin/env bash
# Every test persnap has, in an order that keeps them short on two cores:
# the LVM VM (qemu under TCG: about 7 minutes on one core, the slowest
# test by far) runs in the background while the other Linux tests and the
# Windows build and tests use the rest of the machine. The VM test is
# `#[ignore]`d in a plain `cargo test` for that reason; this runs it
# (`cargo test --test integration lvm_vm:: -- --ignored` runs it alone).
#
#   tests/all.sh [FUZZ_SECONDS]   (default 30)
#
# Each step says how long it took. The first failure stops everything
# (the VM too).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${1:-30}
# The Windows tests and the installers use unoptimized builds: the Linux
# ones are the tests' own, already built, and an unoptimized Windows build
# compiles in half the time of a release one. The installers are proven
# the same way whatever the optimizer did; what ships is built in release
# (installer/package-*.sh without PERSNAP_PROFILE).
export PERSNAP_PROFILE=dev
# moto and aiosmtpd, where .ci/setup had to put them in a virtual
# environment (Debian's own Python).
if [ -x /opt/persnap-ci/venv/bin/python3 ]; then
  export PATH=/opt/persnap-ci/venv/bin:$PATH
fi

started=$SECONDS
step() { echo "== $* ($((SECONDS - started)) s)"; }

step "build the Linux tests"
built=$(mktemp)
cargo test --locked --no-run 2>&1 | tee "$built"
vm_test=$(sed -n 's/^ *Executable tests\/integration\/main.rs (\(.*\))$/\1/p' "$built")
rm -f "$built"
[ -x "$vm_test" ] || { echo "FAIL: the LVM VM test was not built" >&2; exit 1; }

step "start the LVM VM test in the background"
vm_log=$(mktemp)
# Its own process group, so that a failure elsewhere stops qemu too.
setsid "$vm_test" --ignored --nocapture lvm_vm:: >"$vm_log" 2>&1 &
vm=$!
trap 'kill -- -$vm 2>/dev/null || true; rm -f "$vm_log"' EXIT

step "the Linux tests"
cargo test --locked

step "the Windows build and tests (under wine)"
tests/windows/run.sh

step "wait for the LVM VM test"
if ! wait "$vm"; then
  cat "$vm_log"
  echo "FAIL: the LVM VM test (above)" >&2
  exit 1
fi
grep -E '^(test |VM ran|  RESULT|  TIME|SKIP)' "$vm_log" || true

step "the installers"
tests/installers/run.sh

step "fuzz the helper's frames for $fuzz_seconds s"
tests/fuzz/run.sh "$fuzz_seconds"

step "all tests passed"
