#!/bin/bash
# Build the initramfs for the LVM test VM: busybox, lvm2, mkfs tools, the
# kernel modules device-mapper needs, and the shared libraries of the
# binaries the guest runs from the 9p share.
# Usage: mkinitrd.sh OUT.cpio.gz GUEST_SCRIPT KVER BINARY...
set -euo pipefail
OUT=$1; GUEST=$2; K=$3; shift 3
R=$(mktemp -d /tmp/persnap-initrd.XXXX)
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,run,etc/lvm,mnt,host,lib/modules/$K}
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
copy_libs() { for l in $(ldd "$1" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -Ln "$l" "$R$l" 2>/dev/null || true; done; }
for b in /sbin/lvm /sbin/mkfs.xfs /sbin/mkfs.ext4 /sbin/dmsetup; do cp -L "$b" "$R/sbin/"; copy_libs "$b"; done
for b in "$@"; do copy_libs "$b"; done
for c in pvcreate vgcreate lvcreate lvremove lvs vgs pvs vgchange vgremove pvremove lvchange; do ln -sf lvm "$R/sbin/$c"; done
MODS="virtio_pci 9pnet_virtio 9p dm-mod dm-bufio dm-snapshot dm-thin-pool loop libcrc32c xfs crc16 mbcache jbd2 ext4"
: > "$R/modlist"
for m in $MODS; do
  for dep in $(modprobe -S "$K" --show-depends "$m" | awk '$1=="insmod"{print $2}'); do
    base=$(basename "$dep")
    case $base in *.xz) plain=${base%.xz};; *.zst) plain=${base%.zst};; *) plain=$base;; esac
    [ -e "$R/lib/modules/$K/$plain" ] && continue
    case $base in
      *.xz) xz -dc "$dep" > "$R/lib/modules/$K/$plain";;
      *.zst) zstd -dqc "$dep" > "$R/lib/modules/$K/$plain";;
      *) cp "$dep" "$R/lib/modules/$K/";;
    esac
    echo "$plain" >> "$R/modlist"
  done
done
cat > "$R/etc/lvm/lvm.conf" <<'CONF'
devices { obtain_device_list_from_udev = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { thin_check_executable = "" }
CONF
cat > "$R/init" <<INIT
#!/bin/sh
export PATH=/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run
mkdir -p /run/lock/lvm
for m in \$(cat /modlist); do insmod /lib/modules/$K/\$m || echo "insmod \$m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L host0 /host || echo "9p mount failed"
echo "=== GUEST START ==="
sh /guest.sh
echo "=== GUEST RC=\$? ==="
sync
poweroff -f
INIT
chmod +x "$R/init"
cp "$GUEST" "$R/guest.sh"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT"
