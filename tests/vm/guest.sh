#!/bin/sh
# Guest side of tests/integration/lvm_vm.rs, run as root inside the test VM (a real
# kernel with device-mapper). Drives the real persnap binaries from the 9p
# share against xfs and ext4 logical volumes with a live writer, and prints
# one "RESULT <scenario> OK|FAIL <detail>" line per scenario.
export PATH=/sbin:/bin PERSNAP_DATA_DIR=/tmp/history
P=/host/persnap
G=/host/persnap-loadgen
B=/tmp/backups
STORE=/mnt/data/store
mkdir -p $B /mnt/data

res() { echo "RESULT $1 $2 $3"; }
persnap_lvs() { lvs --noheadings -o lv_name @persnap 2>/dev/null | tr -d ' ' | tr '\n' ' '; }
partials() { ls -d $B/*.partial $B/.persnap-verify-* 2>/dev/null; }

truncate -s 1400M /tmp/pv.img
LOOP=$(losetup -f)
losetup "$LOOP" /tmp/pv.img && pvcreate -q "$LOOP" && vgcreate -q vgtest "$LOOP" || { echo "VG setup failed"; exit 1; }

# make_volume NAME FS [thin]: create, format and mount an LV with a store folder.
make_volume() {
  if [ "$3" = thin ]; then
    lvcreate -q -y -L 300M -T vgtest/pool >/dev/null && lvcreate -q -y -V 400M -T vgtest/pool -n "$1" >/dev/null || return 1
  else
    lvcreate -q -y -L 400M -n "$1" vgtest >/dev/null || return 1
  fi
  if [ "$2" = xfs ]; then mkfs.xfs -q -f "/dev/vgtest/$1"; else mkfs.ext4 -q -F "/dev/vgtest/$1"; fi || return 1
  mount -t "$2" "/dev/vgtest/$1" /mnt/data && mkdir -p $STORE
}

drop_volume() {
  umount /mnt/data
  lvremove -q -y "vgtest/$1" >/dev/null
  [ "$2" = thin ] && lvremove -q -y vgtest/pool >/dev/null
  rm -rf $B/* /tmp/history
}

start_writer() { rm -f /tmp/stop; $G run $STORE/persistence.db --stop-file /tmp/stop > /tmp/writer.json & WPID=$!; sleep 1; }
stop_writer() { touch /tmp/stop; wait $WPID; }

# backups NAME COUNT: COUNT backups under the writer, each checked for
# integrity and the invariant on a scratch copy.
backups() {
  n=0; live=0
  start_writer
  i=0
  while [ $i -lt "$2" ]; do
    i=$((i+1))
    t0=$(cut -d' ' -f1 /proc/uptime)
    out=$($P backup --source $STORE --dest $B 2>/tmp/err) || { res "$1" FAIL "backup $i: $(tail -n 2 /tmp/err | tr '\n' ' ')"; stop_writer; return; }
    if [ -s "$out/persistence.db-journal" ] || [ -s "$out/persistence.db-wal" ]; then live=$((live+1)); fi
    rm -rf /tmp/chk && mkdir /tmp/chk && cp "$out"/persistence.db* /tmp/chk/
    $G check /tmp/chk/persistence.db >/tmp/chk.out 2>&1 || { res "$1" FAIL "backup $i inconsistent: $(cat /tmp/chk.out)"; stop_writer; return; }
    echo "TIME backup $i $(cut -d' ' -f1 /proc/uptime) since $t0"
    rm -rf "$out"
    n=$((n+1))
  done
  stop_writer
  [ -z "$(persnap_lvs)" ] || { res "$1" FAIL "snapshot left behind: $(persnap_lvs)"; return; }
  [ -z "$(partials)" ] || { res "$1" FAIL "work folder left behind"; return; }
  res "$1" OK "$n backups consistent ($live with a live journal/WAL); writer $(cat /tmp/writer.json)"
}

scenario_consistent() { # FS MODE
  name=consistent_$1_$2
  make_volume data "$1" || { res $name FAIL "volume setup"; return; }
  $G init $STORE/persistence.db --mode "$2" --size-mb 8
  backups $name 5
  drop_volume data
}

scenario_thin() {
  make_volume thin ext4 thin || { res thin FAIL "thin volume setup"; return; }
  $G init $STORE/persistence.db --mode rollback --size-mb 4
  $P probe --source $STORE | grep -q "thin snapshot in pool vgtest/pool" || { res thin FAIL "probe does not explain thin: $($P probe --source $STORE)"; drop_volume thin thin; return; }
  backups thin 2
  drop_volume thin thin
}

scenario_overflow() {
  make_volume data xfs || { res overflow FAIL "volume setup"; return; }
  $G init $STORE/persistence.db --mode rollback --size-mb 32
  rm -f /tmp/stopdd
  ( i=0; while [ ! -f /tmp/stopdd ] && [ $i -lt 15 ]; do dd if=/dev/zero of=/mnt/data/fill$i bs=1M count=16 conv=fsync 2>/dev/null; i=$((i+1)); done ) &
  DD=$!
  sleep 1
  $P backup --source $STORE --dest $B --snapshot-size 8M >/tmp/out 2>/tmp/err; rc=$?
  touch /tmp/stopdd; wait $DD
  if [ $rc = 3 ] && grep -q "filled up" /tmp/err && [ -z "$(ls $B)" ] && [ -z "$(persnap_lvs)" ]; then
    res overflow OK "exit 3: $(grep -o 'The snapshot [^:]*filled up[^:]*' /tmp/err)"
  else
    res overflow FAIL "rc=$rc left=[$(ls $B) $(persnap_lvs)] err=$(tail -n 1 /tmp/err)"
  fi
  drop_volume data
}

scenario_no_free_space() {
  make_volume data ext4 || { res no_free_space FAIL "volume setup"; return; }
  $G init $STORE/persistence.db --mode wal --size-mb 2
  lvcreate -q -y -l 100%FREE -n filler vgtest >/dev/null
  $P backup --source $STORE --dest $B >/tmp/out 2>/tmp/err; rc=$?
  lvremove -q -y vgtest/filler >/dev/null
  if [ $rc = 3 ] && grep -q "Volume group vgtest has no free space" /tmp/err && [ -z "$(ls $B)" ]; then
    res no_free_space OK "exit 3: $(grep -o 'Volume group vgtest has no free space[^.]*' /tmp/err)"
  else
    res no_free_space FAIL "rc=$rc err=$(tail -n 1 /tmp/err)"
  fi
  drop_volume data
}

helper_pid() {
  for p in /proc/[0-9]*; do
    grep -q persnap-helper "$p/cmdline" 2>/dev/null && { echo "${p#/proc/}"; return; }
  done
}

scenario_killed() {
  make_volume data xfs || { res killed FAIL "volume setup"; return; }
  $G init $STORE/persistence.db --mode rollback --size-mb 48
  $P backup --source $STORE --dest $B >/dev/null 2>/tmp/killed.err &
  PID=$!
  # The privileged work happens in the helper; kill it (SIGKILL: no cleanup
  # code runs) once its private mount namespace shows the snapshot mount.
  HPID=""
  t=0
  while [ $t -lt 1500 ]; do
    t=$((t+1))
    [ -z "$HPID" ] && HPID=$(helper_pid)
    [ -n "$HPID" ] && grep -q /run/persnap/mnt- /proc/$HPID/mountinfo 2>/dev/null && break
    usleep 20000
  done
  # While the helper sees its snapshot mount, nobody else may: the mount
  # lives in the helper's private namespace (unshare before any thread).
  outside=$(grep -c /run/persnap/mnt- /proc/mounts)
  [ -n "$HPID" ] && kill -9 $HPID
  wait $PID; cli_rc=$?
  during="$(persnap_lvs)"
  if [ -z "$during" ]; then res killed FAIL "could not catch the helper mid-copy (helper pid '$HPID')"; drop_volume data; return; fi
  [ "$outside" = 0 ] || { res killed FAIL "snapshot mount visible outside the helper's private namespace while it ran"; drop_volume data; return; }
  grep -q /run/persnap /proc/mounts && { res killed FAIL "snapshot mount visible outside the private namespace"; drop_volume data; return; }
  $P cleanup >/tmp/out 2>/tmp/err; rc=$?
  status=$($P history --json | grep -o '"status": "[a-z]*"' | head -n 1)
  if [ $cli_rc != 0 ] && [ $rc = 0 ] && [ -z "$(persnap_lvs)" ] && [ -z "$(partials)" ] && [ -z "$(ls /run/persnap 2>/dev/null | grep mnt-)" ] && echo "$status" | grep -q interrupted; then
    res killed OK "helper killed with snapshot $during (CLI exit $cli_rc: $(tail -n 1 /tmp/killed.err | cut -c1-80)); cleanup removed it and the .partial; history: $status"
  else
    res killed FAIL "cli_rc=$cli_rc rc=$rc lvs=[$(persnap_lvs)] partials=[$(partials)] history=$status out=$(cat /tmp/out /tmp/err | tr '\n' ' ')"
  fi
  drop_volume data
}

scenario_not_lvm() {
  mkdir -p /tmp/plain && $G init /tmp/plain/persistence.db --mode rollback --size-mb 1
  $P backup --source /tmp/plain --dest $B --method lvm >/dev/null 2>/tmp/err; rc=$?
  if [ $rc = 2 ] && grep -q "The lvm method does not apply" /tmp/err; then
    res not_lvm OK "exit 2: $(grep -o 'The lvm method does not apply[^.]*' /tmp/err)"
  else
    res not_lvm FAIL "rc=$rc err=$(tail -n 1 /tmp/err)"
  fi
}

for s in "consistent xfs rollback" "consistent ext4 wal" thin overflow no_free_space killed not_lvm; do
  t0=$(cut -d' ' -f1 /proc/uptime)
  scenario_$s
  echo "TIME $s $(cut -d' ' -f1 /proc/uptime) since $t0"
done
echo "=== SCENARIOS DONE ==="
