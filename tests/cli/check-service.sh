#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ioasidd under a service manager (issue 16, "The service"):
#  - readiness: ioasid-wait-ready returns once ioasidd sent READY=1, with its STATUS=
#    line; the nodes answer at once; a daemon that exits first, or a program that never
#    says READY=1, fails it;
#  - logging: with stderr the journal's stream (JOURNAL_STREAM), "<N>" priority prefixes
#    and no timestamp; otherwise the usual timestamped lines;
#  - the default node on a machine without CUSE: --frontend auto bind-mounts the FUSE
#    nodes onto /dev/ioasid, /dev/iommu and /dev/iommu-fd, never over a node that
#    exists, and the default client finds it; --frontend fuse does not. These run in a
#    mount namespace of their own with a tmpfs on /dev, never touching the host's /dev.
# Needs root, /dev/fuse and unshare (exit 77: skipped).
#
#   tests/cli/check-service.sh IOASIDD IOASID-INFO IOASID-WAIT-READY
set -uo pipefail

ioasidd=${1:?usage: check-service.sh IOASIDD IOASID-INFO IOASID-WAIT-READY}
info=${2:?usage: check-service.sh IOASIDD IOASID-INFO IOASID-WAIT-READY}
wait_ready=${3:?usage: check-service.sh IOASIDD IOASID-INFO IOASID-WAIT-READY}
if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ] || ! command -v unshare >/dev/null; then
  echo "skipped: needs root, /dev/fuse and unshare"
  exit 77
fi
work=$(mktemp -d /tmp/ioasid-service.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
check() {  # NAME CONDITION-EXIT-STATUS MESSAGE
  if [ "$2" -eq 0 ]; then echo "ok      $1"; else echo "FAILED  $1: $3"; failures=$((failures + 1)); fi
}
stop() {  # PID: SIGTERM, then wait (not our child: ioasid-wait-ready started it)
  kill -TERM "$1" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

# ---- readiness
# To a file, not $(...): the daemon keeps the output it inherited open.
"$wait_ready" --timeout 20 --pid-file "$work/a.pid" -- "$ioasidd" --frontend fuse --fuse "$work/a" \
  --admin-socket "$work/a.sock" --no-netlink --log-file "$work/a.log" >"$work/a.out" 2>&1
status=$?
out=$(cat "$work/a.out")
pid=$(cat "$work/a.pid" 2>/dev/null)
[ -n "$pid" ] && pids+=("$pid")
[ $status -eq 0 ] && [[ "$out" == *"is ready: serving $work/a/ioasid and $work/a/iommu and $work/a/iommu-fd (fuse), admin socket $work/a.sock" ]]
check "ioasid-wait-ready returns on READY=1 with the daemon's status" $? "exit $status: $out"
# No retry: ready means answering.
IOASID_DEV=$work/a/ioasid "$info" >"$work/a.info" 2>&1
check "the node answers as soon as the daemon is ready" $? "$(cat "$work/a.info")"
[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
check "ioasid-wait-ready leaves the daemon running" $? "pid '$pid'"
[ -n "$pid" ] && stop "$pid"
check "the daemon stops on SIGTERM" $? "still running"

out=$("$wait_ready" --timeout 20 -- "$ioasidd" --frontend fuse --fuse /proc/ioasid-none/fuse --admin-socket none \
  --no-netlink 2>&1)
status=$?
[ $status -eq 1 ] && [[ "$out" == *"exited with status 1 before it was ready (its last status: cannot start the front end: "* ]]
check "a daemon that cannot start fails the wait, with its status line" $? "exit $status: $out"

start=$SECONDS
out=$("$wait_ready" --timeout 1 -- sleep 30 2>&1)
status=$?
[ $status -eq 1 ] && [[ "$out" == *"sleep was not ready within 1 s; stopping it" ]] && [ $((SECONDS - start)) -lt 10 ]
check "a program that never says READY=1 times out and is stopped" $? "exit $status after $((SECONDS - start)) s: $out"

# ---- logging: an error line, to stderr (a file standing for the journal's stream)
log_line() {  # JOURNAL_STREAM value or "", the first line the daemon wrote
  : >"$work/stderr"
  local stream=$1
  [ "$stream" = match ] && stream=$(stat -c '%d:%i' "$work/stderr")
  JOURNAL_STREAM=$stream "$ioasidd" --frontend fuse --fuse /proc/ioasid-none/fuse --admin-socket none --no-netlink \
    2>"$work/stderr" </dev/null >/dev/null
  grep -m1 "cannot start the front end" "$work/stderr"
}
line=$(log_line match)
[[ "$line" == "<3>cannot start the front end: "* ]]
check "under the journal: <3> priority prefix, no timestamp" $? "'$line'"
line=$(log_line "1:1")
[[ "$line" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}\ [0-9:.]+\ error\ cannot\ start\ the\ front\ end ]]
check "JOURNAL_STREAM of another file: timestamped lines" $? "'$line'"
line=$(log_line "")
[[ "$line" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}\ [0-9:.]+\ error\ cannot\ start\ the\ front\ end ]]
check "no JOURNAL_STREAM: timestamped lines" $? "'$line'"

# ---- the default node without CUSE, in a mount namespace with a /dev of its own
cat >"$work/ns.sh" <<'NS'
set -u
ioasidd=$1 info=$2 wait_ready=$3 work=$4
mount -t tmpfs -o mode=0755 tmpfs /dev
mknod -m 0666 /dev/fuse c 10 229
mknod -m 0666 /dev/null c 1 3
say() { echo "$1 $2"; }
node_type() {
  if [ -c "$1" ]; then echo char; elif [ -f "$1" ]; then echo file; elif [ -e "$1" ]; then echo other
  else echo missing; fi
}
unset IOASID_DEV
# 1: auto without /dev/cuse binds every node onto /dev.
"$wait_ready" --timeout 20 --pid-file "$work/b.pid" -- "$ioasidd" --frontend auto --fuse "$work/b" \
  --admin-socket none --no-netlink --log-file "$work/b.log" >"$work/b.out" 2>&1
say auto-ready $?
say auto-ioasid "$(node_type /dev/ioasid)"
say auto-iommu "$(node_type /dev/iommu)"
say auto-iommu-fd "$(node_type /dev/iommu-fd)"
"$info" >"$work/b.info" 2>&1
say auto-client $?
pid=$(cat "$work/b.pid")
kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
say auto-after-stop "$(node_type /dev/ioasid) $(node_type /dev/iommu)"
# 2: a node that exists (a kernel's /dev/iommu) is left alone, its companion too.
mknod -m 0600 /dev/iommu c 1 3
"$wait_ready" --timeout 20 --pid-file "$work/c.pid" -- "$ioasidd" --frontend auto --fuse "$work/c" \
  --admin-socket none --no-netlink --log-file "$work/c.log" >"$work/c.out" 2>&1
say kept-ready $?
say kept-iommu "$(node_type /dev/iommu) $(node_type /dev/iommu-fd)"
say kept-ioasid "$(node_type /dev/ioasid)"
grep -q "/dev/iommu exists already" "$work/c.log"; say kept-warned $?
pid=$(cat "$work/c.pid")
kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
rm /dev/iommu
# 3: --frontend fuse binds nothing unasked.
"$wait_ready" --timeout 20 --pid-file "$work/d.pid" -- "$ioasidd" --frontend fuse --fuse "$work/d" \
  --admin-socket none --no-netlink --log-file "$work/d.log" >"$work/d.out" 2>&1
say fuse-ready $?
say fuse-ioasid "$(node_type /dev/ioasid)"
pid=$(cat "$work/d.pid")
kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
NS
unshare -m --propagation private bash "$work/ns.sh" "$ioasidd" "$info" "$wait_ready" "$work" >"$work/ns.out" 2>&1
result() { sed -n "s/^$1 //p" "$work/ns.out"; }
details() { echo "$(cat "$work/ns.out") log: $(cat "$work/$1.log" "$work/$1.out" 2>/dev/null)"; }
[ "$(result auto-ready)" = 0 ]
check "auto without CUSE: ready" $? "$(details b)"
[ "$(result auto-ioasid) $(result auto-iommu) $(result auto-iommu-fd)" = "file file file" ]
check "auto without CUSE: the FUSE nodes are bind-mounted onto /dev/ioasid, /dev/iommu, /dev/iommu-fd" $? "$(details b)"
[ "$(result auto-client)" = 0 ]
check "auto without CUSE: a client finds /dev/ioasid by default" $? "$(cat "$work/b.info" 2>/dev/null)"
[ "$(result auto-after-stop)" = "missing missing" ]
check "auto without CUSE: the bind targets it made are removed on stop" $? "$(details b)"
[ "$(result kept-ready)" = 0 ] && [ "$(result kept-iommu)" = "char missing" ] &&
  [ "$(result kept-ioasid)" = "file" ] && [ "$(result kept-warned)" = 0 ]
check "auto without CUSE: an existing /dev/iommu is left alone (and its companion), with a warning" $? "$(details c)"
[ "$(result fuse-ready) $(result fuse-ioasid)" = "0 missing" ]
check "--frontend fuse binds nothing unasked" $? "$(details d)"

echo "$failures failed"
[ "$failures" -eq 0 ]
