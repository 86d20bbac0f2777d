#!/usr/bin/env bash
# The installers, proven by installing them (root; CI runs it):
# 1. Linux: build the .deb, `apt-get install` it, check every file lands
#    where polkit and the desktop expect it, then back up a live database
#    on a btrfs volume with the INSTALLED binaries, as an unprivileged user,
#    through the real pkexec and polkitd (a test rule says yes); check the
#    backup, then remove the package and check its files are gone.
# 2. Windows: build setup.exe with NSIS, install it silently under wine,
#    check the files, shortcut and uninstall entry, run the installed
#    persnap.exe, uninstall silently, check everything is gone.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

if [ "$(id -u)" != 0 ]; then
  if [ "${PERSNAP_REQUIRE_ROOT_TESTS:-}" = 1 ]; then
    echo "FAIL: tests/installers/run.sh must run as root here" >&2
    exit 1
  fi
  echo "SKIP tests/installers/run.sh: needs root (installs packages, loop volumes, polkit)"
  exit 0
fi

fail() { echo "FAIL: $*" >&2; exit 1; }
# `cmd | grep -q` under pipefail fails at random: grep exits at the first
# match and cmd dies of SIGPIPE. Read the whole output first.
output_has() { local pattern=$1 out; shift; out=$("$@") || return 1; grep -q -- "$pattern" <<<"$out"; }
step() { echo "== $*"; }

# ---------------------------------------------------------------- Linux
step "build the .deb"
installer/package-deb.sh
deb=$(ls -t target/debian/persnap_*_amd64.deb | head -n1)
output_has "Depends:.*pkexec" dpkg-deb --info "$deb" || fail "the package does not depend on pkexec"

step "install $deb"
apt-get remove -y -qq persnap >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$repo/$deb" >/dev/null
for f in /usr/bin/persnap /usr/libexec/persnap/persnap-helper \
         /usr/share/polkit-1/actions/io.github.persnap.policy \
         /usr/share/applications/io.github.persnap.desktop \
         /etc/xdg/autostart/io.github.persnap-check.desktop \
         /usr/share/icons/hicolor/256x256/apps/persnap.png \
         /usr/share/icons/hicolor/scalable/apps/persnap.svg \
         /usr/share/man/man1/persnap.1.gz /usr/share/man/man1/persnap-backup.1.gz; do
  [ -e "$f" ] || fail "$f is missing after installing the package"
done
[ "$(stat -c %a /usr/libexec/persnap/persnap-helper)" = 755 ] || fail "helper mode"
grep -q '<annotate key="org.freedesktop.policykit.exec.path">/usr/libexec/persnap/persnap-helper</annotate>' \
  /usr/share/polkit-1/actions/io.github.persnap.policy || fail "the polkit action is not bound to the installed helper"
for level in backup admin; do
  grep -q "<annotate key=\"org.freedesktop.policykit.exec.argv1\">$level</annotate>" \
    /usr/share/polkit-1/actions/io.github.persnap.policy || fail "no polkit action bound to the helper's $level level"
done
if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate /usr/share/applications/io.github.persnap.desktop
  desktop-file-validate /etc/xdg/autostart/io.github.persnap-check.desktop
fi
output_has persnap /usr/bin/persnap --version || fail "the installed persnap does not run"

step "back up a live database with the installed binaries, as a user, through pkexec"
user=persnap_pkg
id "$user" >/dev/null 2>&1 || useradd --create-home "$user"
rule=/etc/polkit-1/rules.d/10-persnap-package-test.rules
work=$(mktemp -d /var/tmp/persnap-pkg-XXXXXX)
cleanup() {
  [ -n "${writer:-}" ] && kill "$writer" 2>/dev/null || true
  rm -f "$rule" /etc/persnap/databases/pkgtest.json
  pkill -x polkitd 2>/dev/null || true
  umount "$work/mnt" 2>/dev/null || true
  [ -n "${loopdev:-}" ] && losetup -d "$loopdev" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
truncate -s 300M "$work/fs.img"
loopdev=$(losetup -f --show "$work/fs.img")
mkfs.btrfs -q -f "$loopdev"
mkdir "$work/mnt" "$work/dest" "$work/data"
mount "$loopdev" "$work/mnt"
btrfs -q subvolume create "$work/mnt/apama"
target/release/persnap-loadgen init "$work/mnt/apama/persistence.db" --size-mb 8 >/dev/null
target/release/persnap-loadgen run "$work/mnt/apama/persistence.db" --stop-file "$work/stop" >/dev/null &
writer=$!
chown "$user:" "$work/dest" "$work/data"
chmod 755 "$work"
# The administrator protects the database (as root: no prompt); the user
# may then back it up with the backup action alone.
/usr/bin/persnap database add pkgtest --source "$work/mnt/apama" || fail "persnap database add failed"
output_has '^pkgtest' /usr/bin/persnap database list || fail "the database is not listed"
cat > "$rule" <<RULE
// persnap package test; removed when the test ends
polkit.addRule(function(action, subject) {
  if (action.id == "io.github.persnap.backup" && subject.user == "$user") return polkit.Result.YES;
});
RULE
# pkexec reaches polkitd over the system bus: start one unless one answers.
if ! dbus-send --system --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.GetId >/dev/null 2>&1; then
  mkdir -p /run/dbus
  rm -f /run/dbus/system_bus_socket /run/dbus/pid
  dbus-daemon --system --fork
fi
pkill -x polkitd 2>/dev/null || true
sleep 0.3
out=$(runuser -u "$user" -- env PERSNAP_DATA_DIR="$work/data" XDG_RUNTIME_DIR="$work/data" \
  /usr/bin/persnap backup --source "$work/mnt/apama" --dest "$work/dest") || fail "the backup through pkexec failed"
touch "$work/stop"; wait "$writer"; writer=
backup=$(echo "$out" | tail -n1)
[ -f "$backup/manifest.json" ] || fail "no backup at $backup"
[ "$(stat -c %U "$backup")" = "$user" ] || fail "the backup does not belong to $user"
runuser -u "$user" -- /usr/bin/persnap verify "$backup" >/dev/null || fail "the backup does not verify"
cp -r "$backup" "$work/check"   # checking replays the journal: never in the backup itself
target/release/persnap-loadgen check "$work/check/persistence.db" >/dev/null || fail "the backup breaks the invariant"
output_has '^\.persnap' ls -a "$work/mnt" && fail "a snapshot was left behind"
echo "backup $backup made by $user through pkexec with the installed helper: verified, invariant holds"

step "schedule a backup as the user through pkexec; removing the package removes it"
# Scheduling is the administrator's: this rule stands for the password.
cat > "$rule" <<RULE
// persnap package test; removed when the test ends
polkit.addRule(function(action, subject) {
  if ((action.id == "io.github.persnap.backup" || action.id == "io.github.persnap.admin") && subject.user == "$user") return polkit.Result.YES;
});
RULE
pkill -x polkitd 2>/dev/null || true
sleep 0.3
unit=/etc/systemd/system/persnap-backup-pkgtest.service
said=$(runuser -u "$user" -- env PERSNAP_DATA_DIR="$work/data" XDG_RUNTIME_DIR="$work/data" \
  /usr/bin/persnap schedule add pkgtest --source "$work/mnt/apama" --dest "$work/dest" --at "Mon..Fri 02:00" 2>&1) \
  || fail "schedule add through pkexec failed: $said"
[ -f "$unit" ] || fail "no unit after schedule add: $said"
grep -q '^ExecStart="/usr/bin/persnap" "backup"' "$unit" || fail "the unit does not run the installed persnap"
grep -q "PERSNAP_DATA_DIR=$work/data" "$unit" || fail "the unit does not record into the user's history"

step "remove the package"
apt-get remove -y -qq persnap >/dev/null
[ ! -e "$unit" ] || fail "the schedule outlived the package"
for f in /usr/bin/persnap /usr/libexec/persnap/persnap-helper /usr/share/polkit-1/actions/io.github.persnap.policy; do
  [ ! -e "$f" ] || fail "$f is still there after removing the package"
done
# The login check is a configuration file: kept until purged, and TryExec
# keeps it quiet meanwhile.
autostart=/etc/xdg/autostart/io.github.persnap-check.desktop
if [ -e "$autostart" ]; then
  grep -q '^TryExec=persnap$' "$autostart" || fail "the login check has no TryExec"
fi
apt-get purge -y -qq persnap >/dev/null
[ ! -e "$autostart" ] || fail "the login check is still there after purging"

# -------------------------------------------------------------- Windows
step "build setup.exe"
setup=$(installer/package-windows.sh | tail -n1)
[ -f "$setup" ] || fail "no setup program"

export WINEPREFIX=$(mktemp -d /tmp/persnap-setup-wine-XXXXXX) WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY
wineboot --init >/dev/null 2>&1; wineserver -w
x86_64-w64-mingw32-gcc -O2 -shared -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
  tests/windows/bcryptprimitives.c tests/windows/bcryptprimitives.def -ladvapi32
pf="$WINEPREFIX/drive_c/Program Files/persnap"
menu="$WINEPREFIX/drive_c/ProgramData/Microsoft/Windows/Start Menu/Programs/persnap.lnk"

step "install silently under wine"
wine "$setup" /S; wineserver -w
for f in "$pf/persnap.exe" "$pf/persnap-helper.exe" "$pf/Uninstall.exe" "$menu"; do
  [ -e "$f" ] || fail "$f is missing after the silent install"
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
output_has "$version" wine reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\persnap' /v DisplayVersion || fail "no uninstall entry with the version"
output_has persnap wine "C:\\Program Files\\persnap\\persnap.exe" --version || fail "the installed persnap.exe does not run"

step "schedule a backup under wine (a Task Scheduler task); uninstalling removes it"
mkdir -p "$WINEPREFIX/drive_c/apama" "$WINEPREFIX/drive_c/backups"
target/release/persnap-loadgen init "$WINEPREFIX/drive_c/apama/persistence.db" --size-mb 1 >/dev/null
wine "C:\\Program Files\\persnap\\persnap.exe" schedule add pkgtest --source 'C:\apama' --dest 'C:\backups' --at daily \
  || fail "schedule add under wine failed"
task="$WINEPREFIX/drive_c/windows/system32/tasks/persnap/pkgtest"
record="$WINEPREFIX/drive_c/ProgramData/persnap/schedules/pkgtest.json"
[ -f "$task" ] && [ -f "$record" ] || fail "no task or record after schedule add"

step "uninstall silently under wine"
wine "C:\\Program Files\\persnap\\Uninstall.exe" /S; wineserver -w
sleep 2; wineserver -w
for f in "$pf/persnap.exe" "$pf/persnap-helper.exe" "$pf/Uninstall.exe" "$menu" "$task" "$record"; do
  [ ! -e "$f" ] || fail "$f is still there after the silent uninstall"
done
wineserver -k 2>/dev/null || true
rm -rf "$WINEPREFIX"
echo "installers: ok"
