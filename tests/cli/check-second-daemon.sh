#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A second ioasidd on a live daemon's --fuse directory or --bind-node path is refused
# with a clear error, and the first keeps serving; a failed start removes the
# directories it made; a killed daemon's dead mount is still taken over. Needs root and
# /dev/fuse (exit 77: skipped).
#
#   tests/cli/check-second-daemon.sh IOASIDD IOASID-INFO
set -uo pipefail

ioasidd=${1:?usage: check-second-daemon.sh IOASIDD IOASID-INFO}
info=${2:?usage: check-second-daemon.sh IOASIDD IOASID-INFO}
if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ]; then
  echo "skipped: needs root and /dev/fuse"
  exit 77
fi
work=$(mktemp -d /tmp/ioasid-second.XXXXXX)
first_pid=
cleanup() {
  [ -n "$first_pid" ] && kill "$first_pid" 2>/dev/null && wait "$first_pid"
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
check() {  # NAME CONDITION-EXIT-STATUS MESSAGE
  if [ "$2" -eq 0 ]; then echo "ok      $1"; else echo "FAILED  $1: $3"; failures=$((failures + 1)); fi
}
mounted() { grep -qF " $1 " /proc/self/mountinfo; }

touch "$work/node"
"$ioasidd" --frontend fuse --no-netlink --admin-socket none --serve ioasid \
  --fuse "$work/first" --bind-node "$work/node" >"$work/first.log" 2>&1 &
first_pid=$!  # the daemon's own pid: SIGTERM must reach it
for _ in $(seq 100); do
  grep -q "serving" "$work/first.log" && break
  kill -0 "$first_pid" 2>/dev/null || break
  sleep 0.1
done
"$info" --dev "$work/node" >/dev/null 2>&1
check "the first daemon serves $work/node" $? "$(cat "$work/first.log")"

# Same --fuse directory.
output=$(timeout 20 "$ioasidd" --frontend fuse --no-netlink --admin-socket none --serve ioasid \
           --fuse "$work/first" 2>&1)
status=$?
[ $status -eq 1 ] && [[ "$output" == *"--fuse $work/first is a mount point already (another ioasidd serving there?)"* ]]
check "a second daemon on the same --fuse dir is refused" $? "exit $status: $output"

# Same --bind-node path, another --fuse directory that it must not leave behind.
output=$(timeout 20 "$ioasidd" --frontend fuse --no-netlink --admin-socket none --serve ioasid \
           --fuse "$work/second/fuse" --bind-node "$work/node" 2>&1)
status=$?
[ $status -eq 1 ] && [[ "$output" == *"the bind path $work/node is a mount point already"* ]]
check "a second daemon on the same --bind-node path is refused" $? "exit $status: $output"
[ ! -e "$work/second" ]
check "the refused daemon removed the directories it made" $? "$(find "$work/second" 2>&1)"

"$info" --dev "$work/node" >/dev/null 2>&1 && "$info" --dev "$work/first/ioasid" >/dev/null 2>&1 &&
  kill -0 "$first_pid"
check "the first daemon still serves" $? "$(cat "$work/first.log")"

# A start failing after the mount (the admin socket's directory cannot be made) unmounts
# and removes what it made.
touch "$work/file"
output=$(timeout 20 "$ioasidd" --frontend fuse --no-netlink --serve ioasid --fuse "$work/third/a/b" \
           --admin-socket "$work/file/admin.sock" 2>&1)
status=$?
[ $status -eq 1 ] && [ ! -e "$work/third" ] && ! mounted "$work/third/a/b"
check "a failed start leaves no directory and no mount" $? "exit $status: $output; $(find "$work/third" 2>&1)"

kill "$first_pid"
wait "$first_pid"
status=$?
first_pid=
[ $status -eq 0 ] && ! mounted "$work/node" && ! mounted "$work/first" && [ ! -e "$work/first" ] && [ -f "$work/node" ]
check "the first daemon stops cleanly and removes its mount dir" $? "exit $status: $(tail -3 "$work/first.log")"

# A daemon killed outright leaves a dead mount: the next one detaches it, not refuses it.
start_on() {  # DIR LOG: starts a daemon, waits until it serves; sets first_pid
  "$ioasidd" --frontend fuse --no-netlink --admin-socket none --serve ioasid --fuse "$1" >"$2" 2>&1 &
  first_pid=$!
  for _ in $(seq 100); do
    grep -q "serving" "$2" && return 0
    kill -0 "$first_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
mkdir "$work/stale"
start_on "$work/stale" "$work/killed.log"
kill -KILL "$first_pid"
wait "$first_pid" 2>/dev/null
first_pid=
start_on "$work/stale" "$work/next.log" && "$info" --dev "$work/stale/ioasid" >/dev/null 2>&1
check "a daemon on a killed daemon's dead mount detaches it and serves" $? "$(cat "$work/next.log")"
kill "$first_pid"
wait "$first_pid"
first_pid=
! mounted "$work/stale" && [ -d "$work/stale" ]
check "it unmounts on exit and keeps the directory it did not make" $? "$(grep "$work/stale" /proc/self/mountinfo)"

echo "check-second-daemon: $failures failed"
[ "$failures" -eq 0 ]
