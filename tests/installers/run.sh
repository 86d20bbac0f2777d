#!/usr/bin/env bash
# The installers, proven by installing them (root; CI runs it):
# 1. Linux: build the .deb, `apt-get install` it, check every file lands
#    where polkit and the desktop expect it, then back up a live database
#    on a btrfs volume with the INSTALLED binaries, as an unprivileged user,
#    through the real pkexec and polkitd (a test rule says yes); check the
#    backup, then remove the package and check its files are gone.
# 2. Windows: build setup.exe with NSIS twice, unsigned and signed with a
#    throwaway certificate; check the version resource of every program and
#    the signatures. Under wine: a setup finding an earlier persnap in
#    another folder stops; install the unsigned one silently, asking for
#    another folder (it must land in Program Files); check the files,
#    shortcut and uninstall entry, run the installed persnap.exe; upgrade
#    with the signed one and check every installed program is signed; a
#    running persnap.exe stops both the setup and the uninstaller and is
#    left running; schedule a backup; an uninstall whose schedule removal
#    fails changes nothing; uninstall silently, check everything is gone
#    but persnap's data in ProgramData.
#
#   tests/installers/run.sh                                   both
#   PERSNAP_INSTALLERS=linux|windows tests/installers/run.sh  one of them
# The Windows build goes into $CARGO_TARGET_DIR (target/ when unset).
# PERSNAP_PROFILE=dev installs the unoptimized builds (tests/all.sh does:
# it has built them already); the default is release, as shipped.
set -euo pipefail
# A target folder given relative to where the caller is.
case ${CARGO_TARGET_DIR:-/} in /*) ;; *) export CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR ;; esac
cd "$(dirname "$0")/../.."
repo=$PWD
parts=${PERSNAP_INSTALLERS:-all}
profile=${PERSNAP_PROFILE:-release}
profile_dir=$(if [ "$profile" = dev ]; then echo debug; else echo "$profile"; fi)
linux_bin=${CARGO_TARGET_DIR:-$repo/target}/$profile_dir
case $parts in
  all | linux | windows) ;;
  *) echo "PERSNAP_INSTALLERS must be all, linux or windows, not $parts" >&2; exit 2 ;;
esac

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
# Each part adds what to undo when the script ends, however it ends.
cleanups=()
cleanup() { local c; for c in "${cleanups[@]}"; do "$c"; done; }
trap cleanup EXIT

# ---------------------------------------------------------------- Linux
linux_installer() {
step "build the .deb"
installer/package-deb.sh
deb=$(ls -t "${CARGO_TARGET_DIR:-$repo/target}"/debian/persnap_*_amd64.deb | head -n1)
output_has "Depends:.*pkexec" dpkg-deb --info "$deb" || fail "the package does not depend on pkexec"

step "install $deb"
apt-get remove -y -qq persnap >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
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
linux_cleanup() {
  [ -n "${writer:-}" ] && kill "$writer" 2>/dev/null || true
  rm -f "$rule" /etc/persnap/databases/pkgtest.json
  pkill -x polkitd 2>/dev/null || true
  umount "$work/mnt" 2>/dev/null || true
  [ -n "${loopdev:-}" ] && losetup -d "$loopdev" 2>/dev/null || true
  rm -rf "$work"
}
cleanups+=(linux_cleanup)
truncate -s 300M "$work/fs.img"
loopdev=$(losetup -f --show "$work/fs.img")
mkfs.btrfs -q -f "$loopdev"
mkdir "$work/mnt" "$work/dest" "$work/data"
mount "$loopdev" "$work/mnt"
btrfs -q subvolume create "$work/mnt/apama"
"$linux_bin/persnap-loadgen" init "$work/mnt/apama/persistence.db" --size-mb 8 >/dev/null
"$linux_bin/persnap-loadgen" run "$work/mnt/apama/persistence.db" --stop-file "$work/stop" >/dev/null &
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
"$linux_bin/persnap-loadgen" check "$work/check/persistence.db" >/dev/null || fail "the backup breaks the invariant"
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
}

# -------------------------------------------------------------- Windows
windows_cleanup() {
  [ -n "${busy:-}" ] && kill "$busy" 2>/dev/null || true
  if [ -n "${prefix:-}" ]; then
    WINEPREFIX=$prefix wineserver -k 2>/dev/null || true
    rm -rf "$prefix"
  fi
  [ -n "${wtmp:-}" ] && rm -rf "$wtmp"
}

windows_installer() {
cleanups+=(windows_cleanup)
wtmp=$(mktemp -d /tmp/persnap-setup-XXXXXX)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bindir=$target_dir/x86_64-pc-windows-gnu/$profile_dir
# package-windows.sh prints the setup program's path last on stdout and
# everything else (cargo, makensis, signing) on stderr, kept in build.log.
package() {
  local out rc=0
  out=$(installer/package-windows.sh 2>"$wtmp/build.log") || rc=$?
  cat "$wtmp/build.log" >&2
  [ "$rc" = 0 ] || fail "installer/package-windows.sh failed (exit code $rc)"
  setup=$(tail -n1 <<<"$out")
  [ -f "$setup" ] || fail "no setup program"
}

step "build setup.exe, unsigned"
package
grep -q '^note: unsigned build' "$wtmp/build.log" || fail "an unsigned build does not say it is unsigned"
unsigned=$wtmp/persnap-$version-unsigned-setup.exe
cp "$setup" "$unsigned"
for f in "$unsigned" "$target_dir/windows-setup/persnap.exe" "$target_dir/windows-setup/persnap-helper.exe"; do
  out=$(osslsigncode verify -in "$f" 2>&1) && fail "$f is signed, though no certificate was given"
  grep -q "No signature found" <<<"$out" || fail "osslsigncode cannot read $f: $out"
done

step "the version resource of every program"
tests/installers/check-windows-version.sh "$version" \
  "$bindir/persnap.exe" "$bindir/persnap-helper.exe" "$bindir/persnap-loadgen.exe"

step "build setup.exe, signed with a throwaway certificate"
sign=$wtmp/sign
mkdir -m 700 "$sign"
openssl rand -hex 16 > "$sign/password"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=persnap test signing (throwaway)" \
  -addext extendedKeyUsage=codeSigning -addext keyUsage=digitalSignature \
  -keyout "$sign/key.pem" -out "$sign/cert.pem" >"$sign/openssl.log" 2>&1 \
  && openssl pkcs12 -export -inkey "$sign/key.pem" -in "$sign/cert.pem" \
    -passout "file:$sign/password" -out "$sign/persnap.pfx" >>"$sign/openssl.log" 2>&1 \
  || { cat "$sign/openssl.log" >&2; fail "could not make the test certificate"; }
# The password from a file, as a release build should have it.
PERSNAP_SIGN_PFX=$sign/persnap.pfx PERSNAP_SIGN_PASSWORD_FILE=$sign/password package
grep -q '^note: unsigned build' "$wtmp/build.log" && fail "a signed build says it is unsigned"
signed=$wtmp/persnap-$version-signed-setup.exe
cp "$setup" "$signed"
signed_by_test_certificate() {
  osslsigncode verify -CAfile "$sign/cert.pem" -in "$1" >"$wtmp/verify.log" 2>&1 \
    || { cat "$wtmp/verify.log" >&2; fail "$1 is not signed with the test certificate"; }
}
signed_by_test_certificate "$signed"

step "a wine prefix"
prefix=$(mktemp -d /tmp/persnap-setup-wine-XXXXXX)
export WINEPREFIX=$prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY
wineboot --init >/dev/null 2>&1; wineserver -w
x86_64-w64-mingw32-gcc -O2 -shared -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
  tests/windows/bcryptprimitives.c tests/windows/bcryptprimitives.def -ladvapi32
drive=$WINEPREFIX/drive_c
pf="$drive/Program Files/persnap"
menu="$drive/ProgramData/Microsoft/Windows/Start Menu/Programs/persnap.lnk"
uninstall_key='HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\persnap'

step "an earlier persnap in another folder stops the setup"
mkdir -p "$drive/elsewhere"
: > "$drive/elsewhere/persnap.exe"
wine reg add 'HKLM\Software\persnap' /v InstallDir /d 'C:\elsewhere' /f >/dev/null
rc=0; wine "$unsigned" /S || rc=$?
[ "$rc" = 2 ] || fail "the setup went on (exit code $rc) though persnap is installed in C:\\elsewhere"
[ ! -e "$pf" ] || fail "the setup installed though persnap is installed in C:\\elsewhere"
wine reg delete 'HKLM\Software\persnap' /f >/dev/null
rm -rf "$drive/elsewhere"

step "install the unsigned setup silently, asking for another folder (/D=)"
wine "$unsigned" /S '/D=C:\elsewhere'; wineserver -w
for f in "$pf/persnap.exe" "$pf/persnap-helper.exe" "$pf/Uninstall.exe" "$menu"; do
  [ -e "$f" ] || fail "$f is missing after the silent install"
done
[ ! -e "$drive/elsewhere" ] || fail "the setup installed into the folder /D= named"
output_has "$version" wine reg query "$uninstall_key" /v DisplayVersion || fail "no uninstall entry with the version"
output_has persnap wine "C:\\Program Files\\persnap\\persnap.exe" --version || fail "the installed persnap.exe does not run"
tests/installers/check-windows-version.sh "$version" "$pf/persnap.exe" "$pf/persnap-helper.exe"
# The Event Log's source, with its message file: a DLL whose message table
# has every event id (objdump lists the resource).
event_key='HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\persnap'
output_has 'persnap-events.dll' wine reg query "$event_key" /v EventMessageFile \
  || fail "the Event Log source persnap is not registered with its message file"
output_has '0x7' wine reg query "$event_key" /v TypesSupported || fail "the Event Log source has no TypesSupported"
[ -f "$pf/persnap-events.dll" ] || fail "the Event Log's message file is not installed"
output_has '^	DLL$' x86_64-w64-mingw32-objdump -p "$pf/persnap-events.dll" || fail "persnap-events.dll is not a DLL"
output_has '^%1%0$' strings -e l "$pf/persnap-events.dll" || fail "persnap-events.dll has no message table"

step "upgrade with the signed setup: every installed program is signed"
wine "$signed" /S; wineserver -w
for f in persnap.exe persnap-helper.exe persnap-events.dll Uninstall.exe; do
  signed_by_test_certificate "$pf/$f"
done

step "a running persnap.exe stops the setup and the uninstaller, and is left running"
# A stand-in with persnap's file name: the load generator writing to a
# database until a stop file appears, as a backup would be busy.
mkdir -p "$drive/busy"
cp "$bindir/persnap-loadgen.exe" "$drive/busy/persnap.exe"
wine 'C:\busy\persnap.exe' init 'C:\busy\persistence.db' --size-mb 1 >/dev/null
before=$(stat -c %y "$drive/busy/persistence.db")
wine 'C:\busy\persnap.exe' run 'C:\busy\persistence.db' --stop-file 'C:\busy\stop' >/dev/null &
busy=$!
for _ in $(seq 150); do
  [ "$(stat -c %y "$drive/busy/persistence.db")" != "$before" ] && break
  sleep 0.2
done
[ "$(stat -c %y "$drive/busy/persistence.db")" != "$before" ] || fail "the stand-in persnap.exe does not write"
installed=$(stat -c %z "$pf/persnap.exe")
rc=0; wine "$signed" /S || rc=$?
[ "$rc" = 2 ] || fail "the setup did not stop (exit code $rc) while persnap.exe ran"
# _?= runs the uninstaller in place and waits for it, so its exit code is
# the uninstall's. NSIS takes the rest of the command line as the folder,
# unquoted: given as two arguments, wine joins them with a space and no quotes.
rc=0; wine 'C:\Program Files\persnap\Uninstall.exe' /S '_?=C:\Program' 'Files\persnap' || rc=$?
[ "$rc" = 2 ] || fail "the uninstaller did not stop (exit code $rc) while persnap.exe ran"
for f in "$pf/persnap.exe" "$pf/persnap-helper.exe" "$pf/Uninstall.exe" "$menu"; do
  [ -e "$f" ] || fail "$f was removed while persnap.exe ran"
done
[ "$(stat -c %z "$pf/persnap.exe")" = "$installed" ] || fail "persnap.exe was replaced while it ran"
kill -0 "$busy" 2>/dev/null || fail "the running persnap.exe was ended"
touch "$drive/busy/stop"
wait "$busy" || fail "the stand-in persnap.exe failed"
busy=

step "schedule a backup under wine (a Task Scheduler task); uninstalling removes it"
mkdir -p "$drive/apama" "$drive/backups"
wine "$bindir/persnap-loadgen.exe" init 'C:\apama\persistence.db' --size-mb 1 >/dev/null
wine "C:\\Program Files\\persnap\\persnap.exe" schedule add pkgtest --source 'C:\apama' --dest 'C:\backups' --at daily \
  || fail "schedule add under wine failed"
task="$drive/windows/system32/tasks/persnap/pkgtest"
record="$drive/ProgramData/persnap/schedules/pkgtest.json"
[ -f "$task" ] && [ -f "$record" ] || fail "no task or record after schedule add"

step "an uninstall that cannot remove the scheduled backups changes nothing"
# A persnap.exe whose `schedule remove --all` fails: the load generator
# knows no such command.
cp "$pf/persnap.exe" "$wtmp/persnap.exe"
cp "$bindir/persnap-loadgen.exe" "$pf/persnap.exe"
rc=0; wine 'C:\Program Files\persnap\Uninstall.exe' /S '_?=C:\Program' 'Files\persnap' || rc=$?
[ "$rc" = 2 ] || fail "the uninstaller went on (exit code $rc) though the schedules could not be removed"
for f in "$pf/persnap.exe" "$pf/persnap-helper.exe" "$pf/Uninstall.exe" "$menu" "$task" "$record"; do
  [ -e "$f" ] || fail "$f was removed though the schedules could not be removed"
done
output_has "$version" wine reg query "$uninstall_key" /v DisplayVersion || fail "the uninstall entry was removed though the schedules could not be removed"
cp "$wtmp/persnap.exe" "$pf/persnap.exe"

step "uninstall silently under wine"
wine "C:\\Program Files\\persnap\\Uninstall.exe" /S; wineserver -w
sleep 2; wineserver -w
for f in "$pf/persnap.exe" "$pf/persnap-helper.exe" "$pf/persnap-events.dll" "$pf/Uninstall.exe" "$menu" "$task" "$record"; do
  [ ! -e "$f" ] || fail "$f is still there after the silent uninstall"
done
wine reg query 'HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\persnap' >/dev/null 2>&1 \
  && fail "the Event Log source is still registered after the uninstall"
# Settings and history stay (the uninstaller says so).
[ -d "$drive/ProgramData/persnap" ] || fail "the uninstaller removed persnap's data in ProgramData"
}

if [ "$parts" != windows ]; then linux_installer; fi
if [ "$parts" != linux ]; then windows_installer; fi
echo "installers: ok"
