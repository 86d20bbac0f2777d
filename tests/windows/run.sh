#!/usr/bin/env bash
# Windows build and tests, from Linux: cross-build persnap.exe and
# persnap-helper.exe for x86_64-pc-windows-gnu in release, as the setup
# program ships them, or unoptimized with PERSNAP_PROFILE=dev (as
# tests/all.sh does: it compiles in half the time) (failing on any warning),
# then run every test that can run under wine: the library (protocol,
# validation, VSS sequencing and path mapping, named-pipe security), the
# app's kittest tests (image snapshots need a display: Xvfb) and the helper
# serving a request over its pipe.
# Needs (see .ci/setup): rustup target x86_64-pc-windows-gnu, mingw-w64,
# wine, Xvfb.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-pc-windows-gnu
profile=${PERSNAP_PROFILE:-release}

log=$(mktemp)
cargo build --profile "$profile" --locked --target "$target" --bins --message-format short 2>&1 | tee "$log"
if grep -E '^(warning|error)' "$log"; then
  echo "the Windows build has warnings (above)" >&2
  exit 1
fi
rm -f "$log"

export WINEPREFIX=${WINEPREFIX:-/tmp/persnap-wineprefix} WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
unset WAYLAND_DISPLAY
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  wineboot --init >/dev/null 2>&1
  wineserver -w
fi
stub="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$stub" ]; then
  x86_64-w64-mingw32-gcc -O2 -shared -o "$stub" tests/windows/bcryptprimitives.c tests/windows/bcryptprimitives.def -ladvapi32
fi

# The app stays a console program, so that in consoles and scripts the
# command line waits, prints and returns its exit status (started from the
# Start menu it lets go of its console). The helper is a Windows-subsystem
# program: started by UAC, it must show no console or Terminal window
# (Windows Terminal ignores a hidden start), and it serves its pipe
# (tests/integration/windows_helper.rs runs this very build's helper over it).
built=${CARGO_TARGET_DIR:-target}/$target/$(if [ "$profile" = dev ]; then echo debug; else echo "$profile"; fi)
subsystem() { x86_64-w64-mingw32-objdump -p "$1" | sed -n 's/^Subsystem.*(\(.*\))$/\1/p'; }
[ "$(subsystem "$built/persnap.exe")" = "Windows CUI" ] \
  || { echo "persnap.exe is not a console program" >&2; exit 1; }
[ "$(subsystem "$built/persnap-helper.exe")" = "Windows GUI" ] \
  || { echo "persnap-helper.exe is a console program: Windows Terminal would show its window" >&2; exit 1; }
[ "$(wine "$built/persnap.exe" --version | tr -d '\r')" = "persnap $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" ] \
  || { echo "persnap.exe --version printed nothing to its console" >&2; exit 1; }
set +e
wine "$built/persnap.exe" verify 'C:\no\such\backup' 2>/dev/null
status=$?
set -e
[ "$status" -ne 0 ] || { echo "persnap.exe's exit status did not reach its caller" >&2; exit 1; }

# The Windows Event Log (issue #31): each run that ends writes one event
# under the source "persnap" with the id of its kind and its plain message.
# Wine keeps no events, but its ReportEventW says what it was given on its
# debug channels (the type and id on "advapi", the message on "eventlog");
# a child started from a test program would not get these channels, so
# persnap.exe runs here. What only real Windows shows (Event Viewer's text
# through the message file) is docs/MONITORING.md's one-minute check.
events=$(mktemp -d)
mkdir "$events/store" "$events/backups"
sqlite3 "$events/store/persistence.db" 'CREATE TABLE t(x); INSERT INTO t VALUES (1);'
event_run() {
  PERSNAP_DATA_DIR="$(winepath -w "$events/data" 2>/dev/null)" \
    PERSNAP_LOG_DIR="$(winepath -w "$events/logs" 2>/dev/null)" \
    WINEDEBUG=fixme+advapi,trace+eventlog,warn+eventlog,err+eventlog \
    wine "$built/persnap.exe" backup --method sqlite-online \
      --source "$(winepath -w "$events/store" 2>/dev/null)" \
      --dest "$(winepath -w "$events/$1" 2>/dev/null)" 2>&1 || true
}
# type (4 information, 1 error) and id (0x64 = 100 verified, 0x66 = 102 could not start)
check_event() {
  local said=$1 kind=$2 id=$3 words=$4
  [ "$(grep -c 'ReportEventW (' <<<"$said")" = 1 ] \
    || { echo "not one event:"; echo "$said"; exit 1; } >&2
  grep -q "ReportEventW ([0-9A-F]*,$kind,0x0000,$id," <<<"$said" \
    || { echo "not event $id of type $kind:"; echo "$said"; exit 1; } >&2
  grep -q "eventlog:ReportEventW L\"$words" <<<"$said" \
    || { echo "the event's words are not \"$words…\":"; echo "$said"; exit 1; } >&2
}
check_event "$(event_run backups)" 0x0004 0x00000064 "The backup of persistence.db in "
# (wine cuts a long message short: its start only)
check_event "$(event_run unplugged)" 0x0001 0x00000066 "The backup of persistence.db in "
rm -rf "$events"
echo "the Windows Event Log: a verified backup wrote event 100, one that could not start event 102"

# A network share for the share-path tests: wine serves \\host\share (and
# \\?\UNC\host\share) from dosdevices/unc/HOST/SHARE; this one leads to
# wine's temporary folder, where the tests' temporary folders are.
temp_unix="$WINEPREFIX/drive_c/users/$(id -un)/Temp"
mkdir -p "$temp_unix" "$WINEPREFIX/dosdevices/unc/persnap-test"
ln -sfn "$temp_unix" "$WINEPREFIX/dosdevices/unc/persnap-test/temp"
export PERSNAP_TEST_SHARE='\\persnap-test\temp'

# A private X display for wine's Vulkan/GL (kittest image snapshots).
# Xvfb picks a free display itself and writes its number once it accepts
# connections (-displayfd), so nothing is guessed or waited for by time.
# -noreset: by default an X server resets when its last client leaves, and
# a test program connecting during that reset is dropped ("X connection
# broken"), which happened between two test programs.
ready=$(mktemp)
Xvfb -displayfd 3 -noreset -nolisten tcp -screen 0 1280x800x24 3>"$ready" >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true; wineserver -k 2>/dev/null || true; rm -f "$ready"' EXIT
for _ in $(seq 200); do
  [ -s "$ready" ] && break
  kill -0 $xvfb 2>/dev/null || { echo "Xvfb did not start" >&2; exit 1; }
  sleep 0.1
done
display=:$(tr -d '\n' <"$ready")
[ "$display" != ":" ] || { echo "Xvfb did not start within 20 s" >&2; exit 1; }
# (cargo test's own profile, test, is dev's.)
if [ "$profile" = dev ]; then
  DISPLAY=$display cargo test --locked --target "$target"
else
  DISPLAY=$display cargo test --profile "$profile" --locked --target "$target"
fi
