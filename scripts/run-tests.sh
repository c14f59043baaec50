#!/usr/bin/env bash
# Builds everything and runs every test stage: unit tests (plain and ASan+UBSan),
# the conformance suite against a FUSE node, and the same suite under real CUSE in
# a QEMU VM. Ends with one line "N passed, N failed" over all stages; exits
# non-zero if anything failed. Run as root (FUSE mounts, the VM's initramfs).
#
#   scripts/run-tests.sh [--skip-vm] [--skip-asan] [--jobs N]
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc)
skip_vm=0
skip_asan=0
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-vm) skip_vm=1 ;;
    --skip-asan) skip_asan=1 ;;
    --jobs) jobs=$2; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "run-tests: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

build=$root/build
asan=$root/build-asan
results=$build/test-results
stage_failures=0

say() { printf '\n=== %s  (%ds elapsed)\n' "$*" "$SECONDS"; }
stage_failed() { echo "run-tests: STAGE FAILED: $*"; stage_failures=$((stage_failures + 1)); }

build_tree() {  # dir, extra cmake args...
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null &&
    cmake --build "$dir" -j "$jobs"
}

say "build ($build)"
rm -rf "$results" "$asan/test-results"
mkdir -p "$results"
if ! build_tree "$build"; then
  echo "run-tests: the build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

say "unit tests"
(cd "$build" && ctest -R '^unit\.' --output-on-failure) || stage_failed "unit tests"

if [ "$skip_asan" -eq 0 ]; then
  say "unit tests under ASan+UBSan ($asan)"
  if build_tree "$asan" -DIOASID_SANITIZE=address -DIOASID_BUILD_DAEMON=OFF; then
    (cd "$asan" && ctest -R '^unit\.' --output-on-failure) || stage_failed "unit tests (ASan+UBSan)"
  else
    stage_failed "ASan+UBSan build"
  fi
fi

say "conformance against the FUSE node"
"$build/tests/conformance/ioasid-conformance" --gtest_output="json:$results/conformance-fuse.json" ||
  stage_failed "conformance (FUSE)"

if [ "$skip_vm" -eq 0 ]; then
  say "VM stage: conformance against real CUSE under QEMU"
  "$root/tests/vm/run-vm-tests.sh" --ioasidd "$build/cuse/ioasidd" \
    --conformance "$build/tests/conformance/ioasid-conformance" \
    --results "$results/conformance-cuse-vm.json" --log "$build/vm-console.log" ||
    stage_failed "VM stage (see $build/vm-console.log)"
fi

say "summary"
"$root/scripts/count-results.sh" "$stage_failures" "$results" "$asan/test-results"
