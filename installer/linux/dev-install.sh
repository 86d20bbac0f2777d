#!/bin/sh
# Development install of the privileged helper and its polkit action, so a
# locally built persnap can elevate through pkexec. Run as root from the
# repository after `cargo build --release` (or pass the helper's path):
#   sudo installer/linux/dev-install.sh [target/release/persnap-helper]
# Undo with: sudo installer/linux/dev-install.sh --uninstall
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = "--uninstall" ]; then
  rm -f /usr/libexec/persnap/persnap-helper /usr/share/polkit-1/actions/io.github.persnap.policy
  rmdir /usr/libexec/persnap 2>/dev/null || true
  echo "removed the persnap helper and its polkit action"
  exit 0
fi
helper=${1:-$here/../../target/release/persnap-helper}
[ -f "$helper" ] || { echo "no helper at $helper; run cargo build --release first" >&2; exit 1; }
install -D -m 0755 -o root -g root "$helper" /usr/libexec/persnap/persnap-helper
install -D -m 0644 -o root -g root "$here/io.github.persnap.policy" /usr/share/polkit-1/actions/io.github.persnap.policy
echo "installed /usr/libexec/persnap/persnap-helper and the polkit actions io.github.persnap.backup and io.github.persnap.admin"
