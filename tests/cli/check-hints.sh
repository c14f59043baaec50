#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Errors that name the fix (issue 16, "What a new user tripped on"):
#  - a dead daemon: a client opening its stale FUSE node (ENOTCONN) is told ioasidd is
#    not running, to restart it or unmount the mount, which is named; a restart on the
#    same paths takes them back;
#  - a node that exists elsewhere: /dev/ioasid missing while the FUSE node is at
#    /run/ioasidd/fuse/ioasid: set IOASID_DEV, or --bind-node (in a mount namespace with
#    tmpfs on /dev and /run, never the host's);
#  - --bind-node onto a directory: the daemon refuses at start, naming a file path, and
#    leaves nothing behind.
# Needs root, /dev/fuse and unshare (exit 77: skipped).
#
#   tests/cli/check-hints.sh IOASIDD IOASID-INFO IOASID-WAIT-READY
set -uo pipefail

ioasidd=${1:?usage: check-hints.sh IOASIDD IOASID-INFO IOASID-WAIT-READY}
info=${2:?usage: check-hints.sh IOASIDD IOASID-INFO IOASID-WAIT-READY}
wait_ready=${3:?usage: check-hints.sh IOASIDD IOASID-INFO IOASID-WAIT-READY}
if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ] || ! command -v unshare >/dev/null; then
  echo "skipped: needs root, /dev/fuse and unshare"
  exit 77
fi
work=$(mktemp -d /tmp/ioasid-hints.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
  umount -l "$work/node" "$work/m" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
check() {  # NAME CONDITION-EXIT-STATUS MESSAGE
  if [ "$2" -eq 0 ]; then echo "ok      $1"; else echo "FAILED  $1: $3"; failures=$((failures + 1)); fi
}
start() {  # NAME: a daemon on $work/m, its ioasid node bound onto $work/node
  "$wait_ready" --timeout 20 --pid-file "$work/$1.pid" -- "$ioasidd" --frontend fuse --serve ioasid \
    --fuse "$work/m" --bind-node "$work/node" --admin-socket none --no-netlink --log-file "$work/$1.log" \
    >"$work/$1.out" 2>&1
  local status=$?
  [ -s "$work/$1.pid" ] && pids+=("$(cat "$work/$1.pid")")
  return $status
}

# ---- a dead daemon
start first
check "a daemon serves $work/node" $? "$(cat "$work/first.out" "$work/first.log")"
kill -KILL "$(cat "$work/first.pid")"
while kill -0 "$(cat "$work/first.pid")" 2>/dev/null; do sleep 0.1; done
out=$("$info" --dev "$work/node" 2>&1)
[[ "$out" == *"Transport endpoint is not connected (ioasidd is not running: "*"restart it (systemctl restart ioasidd, or ioasidd)"*"umount -l $work/node)"* ]]
check "a dead daemon's bind path: the client says ioasidd is not running, restart or umount" $? "$out"
out=$("$info" --dev "$work/m/ioasid" 2>&1)
[[ "$out" == *"(ioasidd is not running: "*"umount -l $work/m)"* ]]
check "a dead daemon's mount: the hint names the mount point to unmount" $? "$out"
start second
check "a restart on the same paths takes the dead mounts back" $? "$(cat "$work/second.out" "$work/second.log")"
"$info" --dev "$work/node" >/dev/null 2>&1
check "after the restart the node answers" $? "$("$info" --dev "$work/node" 2>&1)"

# ---- --bind-node onto a directory
mkdir "$work/dir"
out=$("$ioasidd" --frontend fuse --serve ioasid --fuse "$work/made/fuse" --bind-node "$work/dir" \
  --admin-socket none --no-netlink 2>&1 </dev/null)
status=$?
[ $status -eq 1 ] && [[ "$out" == *"the bind path $work/dir is a directory: a node is bind-mounted onto a file, e.g. $work/dir/ioasid"* ]] &&
  [ ! -e "$work/made" ] && ! grep -qF " $work/dir " /proc/self/mountinfo
check "--bind-node onto a directory: refused at start, naming a file, nothing left" $? "exit $status: $out"

# ---- a node that exists elsewhere (the FUSE fallback without --bind-node, defaults)
cat >"$work/ns.sh" <<'NS'
set -u
ioasidd=$1 info=$2 wait_ready=$3 work=$4
mount -t tmpfs -o mode=0755 tmpfs /dev && mount -t tmpfs -o mode=0755 tmpfs /run || exit 1
mknod -m 0666 /dev/fuse c 10 229
mknod -m 0666 /dev/null c 1 3
unset IOASID_DEV
"$wait_ready" --timeout 20 --pid-file "$work/ns.pid" -- "$ioasidd" --frontend fuse --no-netlink \
  --log-file "$work/ns.log" >"$work/ns.out" 2>&1 || exit 1
"$info" 2>&1
pid=$(cat "$work/ns.pid")
kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
NS
out=$(unshare -m --propagation private bash "$work/ns.sh" "$ioasidd" "$info" "$wait_ready" "$work" 2>&1)
[[ "$out" == *"open /dev/ioasid: No such file or directory (ioasidd serves the node at /run/ioasidd/fuse/ioasid: set IOASID_DEV=/run/ioasidd/fuse/ioasid, or start ioasidd with --bind-node /dev/ioasid)"* ]]
check "the node elsewhere: set IOASID_DEV or start ioasidd with --bind-node" $? "$out $(cat "$work/ns.out" "$work/ns.log" 2>/dev/null)"
out=$(IOASID_DEV=$work/none "$info" 2>&1)
[[ "$out" == *"open $work/none: No such file or directory (is ioasidd running? Start it"* ]]
check "no node anywhere: is ioasidd running? Start it" $? "$out"

echo "$failures failed"
[ "$failures" -eq 0 ]
