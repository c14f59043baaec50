#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs, builds, starts ioasidd (CUSE when the kernel has it, else the FUSE
# fallback, which --frontend auto bind-mounts onto /dev/ioasid) and runs the demo
# programs against it once it has said it is ready (READY=1, see ioasid-wait-ready):
# those of /dev/ioasid, then iommufd-demo on the daemon's second node, Linux's iommufd
# uAPI (CUSE: /dev/iommu; FUSE: the file iommu beside ioasid in the mount), and
# iommufd-fault-demo, an unchanged iommufd program reading a fault queue, under ioasid-run.
# Run as root. The daemon is stopped at the end.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
run=$(mktemp -d /tmp/ioasid-demo.XXXXXX)
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target ioasidd ioasid-info ioasidctl pasid-demo dma-demo mini-vmm dsa-memmove \
  ats-copy iommufd-demo iommufd-fault-demo ioasid-run ioasid-wait-ready

daemon_pid=
monitor_pid=
cleanup() {
  [ -z "$monitor_pid" ] || kill "$monitor_pid" 2>/dev/null || true
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    # Not this shell's child (ioasid-wait-ready started it): wait for it to go, 10 s at most.
    for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$run"
}
trap cleanup EXIT

echo "== starting ioasidd"
# Returns once the daemon has sent READY=1: every node it serves exists and answers.
"$build/tests/ready/ioasid-wait-ready" --timeout 30 --pid-file "$run/ioasidd.pid" -- \
  "$build/cuse/ioasidd" --frontend auto --fuse "$run/fuse" \
  --admin-socket "$run/admin.sock" --log-file "$run/ioasidd.log" || { cat "$run/ioasidd.log"; exit 1; }
daemon_pid=$(cat "$run/ioasidd.pid")
grep -E "frontend|serving" "$run/ioasidd.log"
# The daemon serves both nodes by default: the iommu node is /dev/iommu (FUSE: the file
# iommu in the mount, bind-mounted there). It says which in its status (a kernel with
# iommufd keeps its own /dev/iommu: then CUSE serves none, FUSE only the mount's file).
# Its companion node (iommu-fd beside it) serves the iommufd commands that return an fd.
status=$("$build/examples/ioasidctl" --socket "$run/admin.sock" --json status)
iommu_dev=$(jq -r '.nodes[] | select((endswith("/ioasid") or endswith("-fd")) | not)' <<<"$status" | head -n 1)
iommu_fd_dev=$(jq -r '.nodes[] | select(endswith("-fd"))' <<<"$status" | head -n 1)

export IOASID_DEV=/dev/ioasid
echo; echo "== ioasid-info"; "$build/examples/ioasid-info"
echo; echo "== pasid-demo"; "$build/examples/pasid-demo"
echo; echo "== dma-demo, watched by: ioasidctl monitor ioas map device fault"
"$build/examples/ioasidctl" --socket "$run/admin.sock" monitor ioas map device fault >"$run/monitor.out" 2>&1 &
monitor_pid=$!
for _ in $(seq 50); do grep -q "^ioasidctl monitor: " "$run/monitor.out" && break; sleep 0.1; done
"$build/examples/dma-demo"
sleep 0.2  # events reach the monitor within about 5 ms (docs/EVENTS.md)
kill "$monitor_pid" && wait "$monitor_pid" 2>/dev/null || true
monitor_pid=
echo "-- its events:"; cat "$run/monitor.out"
echo; echo "== mini-vmm"; "$build/examples/mini-vmm"
echo; echo "== dsa-memmove"; "$build/examples/dsa-memmove"
echo; echo "== ats-copy"; "$build/examples/ats-copy"
if [ -n "$iommu_dev" ]; then
  echo; echo "== iommufd-demo ($iommu_dev)"; IOMMU_DEV=$iommu_dev "$build/examples/iommufd-demo"
else
  echo; echo "== iommufd-demo: skipped, the daemon serves no iommu node (see its log)"
fi
if [ -n "$iommu_dev" ] && [ -n "$iommu_fd_dev" ]; then
  # Unchanged: IOMMU_FAULT_QUEUE_ALLOC's fd comes from ioasid-run (seccomp, NOTIF_ADDFD).
  echo; echo "== iommufd-fault-demo under ioasid-run ($iommu_dev, $iommu_fd_dev)"
  "$build/examples/ioasid-run" --iommu-node "$iommu_dev" --companion "$iommu_fd_dev" \
    "$build/examples/iommufd-fault-demo" --dev "$iommu_dev"
else
  echo; echo "== iommufd-fault-demo: skipped, the daemon serves no iommu node and companion (see its log)"
fi
echo; echo "== ioasidctl status"; "$build/examples/ioasidctl" --socket "$run/admin.sock" status
echo; echo "== daemon log"; cat "$run/ioasidd.log"
