#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds everything and runs every test stage:
#   - unit tests (g++);
#   - an ASan+UBSan tree (clang): its unit tests, the conformance suite against a FUSE
#     daemon built the same way, and a bounded run of the dispatcher fuzzer;
#   - a TSan tree (g++): its unit tests and the conformance suite against its daemon;
#   - the conformance suite against the FUSE node, the kernel's own iommufd selftest
#     (Linux 6.12's, built unchanged, tests/iommufd-selftest) against the FUSE node's
#     /dev/iommu, the stress run (16 client processes, some killed, then no leak);
#   - the Debian packages (CPack, from the plain tree): built, lintian, their contents;
#   - in a QEMU VM with real CUSE, a Debian rootfs where apt installed the packages and
#     systemd started ioasidd.service: the conformance suite and the iommufd selftest.
# Ends with one line "N passed, N failed" over all stages; exits non-zero if anything
# failed. Run as root (FUSE mounts, the VM's initramfs).
#
#   scripts/run-tests.sh [--skip-vm] [--skip-asan] [--skip-tsan] [--skip-iommufd-selftest]
#                        [--fuzz-seconds N] [--stress-seconds N] [--jobs N]
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc)
skip_vm=0
skip_asan=0
skip_tsan=0
skip_iommufd_selftest=0
fuzz_seconds=60
stress_seconds=30
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-vm) skip_vm=1 ;;
    --skip-asan) skip_asan=1 ;;
    --skip-tsan) skip_tsan=1 ;;
    --skip-iommufd-selftest) skip_iommufd_selftest=1 ;;
    --fuzz-seconds) fuzz_seconds=$2; shift ;;
    --stress-seconds) stress_seconds=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    -h|--help) sed -n '3,16p' "$0"; exit 0 ;;
    *) echo "run-tests: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

build=$root/build
asan=$root/build-asan
tsan=$root/build-tsan
results=$build/test-results
figures=$build/figures  # fuzz, stress and iommufd selftest figures (docs/RELIABILITY.md)
selftest=$build/iommufd-selftest  # the kernel's iommufd selftest, built by its build.sh
stage_failures=0

say() { printf '\n=== %s  (%ds elapsed)\n' "$*" "$SECONDS"; }
stage_failed() { echo "run-tests: STAGE FAILED: $*"; stage_failures=$((stage_failures + 1)); }

build_tree() {  # dir, extra cmake args...; $targets, if set, are the only targets built
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null &&
    cmake --build "$dir" -j "$jobs" ${targets:+--target $targets}
}

# The sanitizer trees are built for their tests only, and at the cost of a test build:
#   - only what their stages run (targets=...): the unit test programs (unit_tests: the
#     ones ctest runs, with ioasid-run and its probe), the daemon, and under ASan the
#     conformance suite (with the helpers it starts) and the fuzzer; not the examples,
#     the stress program, nor under TSan a conformance suite (the plain one drives it);
#   - line tables only for debug information (-gline-tables-only, g++'s -g1), still -O2
#     -DNDEBUG as RelWithDebInfo: the sanitizers' reports keep their file:line stacks,
#     the code and the warnings are those of -O2, and a file compiles in a quarter (ASan)
#     to a third (TSan) less CPU time (docs/PERFORMANCE.md, "Test command runtime").
sanitizer_flags() {  # debug-info option
  printf -- '-DCMAKE_%s_FLAGS_RELWITHDEBINFO=-O2 %s -DNDEBUG\n' C "$1" CXX "$1"
}

# A stage that is one program (fuzz, stress) counts as one test in the summary.
one_test_report() {  # report file, name, exit status
  local result=COMPLETED failures=0
  [ "$3" -eq 0 ] || failures=1
  printf '{"tests":1,"failures":%d,"errors":0,"testsuites":[{"name":"%s","testsuite":[{"name":"%s","result":"%s"}]}]}\n' \
    "$failures" "$2" "$2" "$result" >"$1"
}

# Unit tests of a tree, then the conformance suite against the daemon built with it.
unit_and_conformance() {  # tree, label, suite binary
  local tree=$1 label=$2 suite=$3
  say "unit tests under $label ($tree)"
  # Install, man pages and the docs' checks look at files, not code: the plain tree runs them.
  (cd "$tree" && ctest -R '^unit\.' -E '^unit\.(install|man_pages|doc_examples|doc_agreement|spdx|cross_arm64|cli_options|cli_second_daemon|cli_service|cli_hints)$' --output-on-failure) ||
    stage_failed "unit tests ($label)"
  mkdir -p "$tree/test-results"
  say "conformance against a FUSE daemon built with $label"
  IOASIDD="$tree/cuse/ioasidd" "$suite" --gtest_output="json:$tree/test-results/conformance-fuse.json" ||
    stage_failed "conformance ($label)"
}

say "build ($build)"
rm -rf "$results" "$figures" "$asan/test-results" "$tsan/test-results"
mkdir -p "$results" "$figures"
# Debian's layout from the start (what packaging/deb/build-debs.sh sets), so that making
# the packages later relinks nothing.
if ! build_tree "$build" -DCMAKE_INSTALL_PREFIX=/usr -DIOASID_SYSTEMD_UNITDIR=/lib/systemd/system \
     -DIOASID_UDEV_RULESDIR=/lib/udev/rules.d -DIOASID_SYSUSERSDIR=/usr/lib/sysusers.d; then
  echo "run-tests: the build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

say "unit tests"
(cd "$build" && ctest -R '^unit\.' --output-on-failure) || stage_failed "unit tests"

say "conformance against the FUSE node"
"$build/tests/conformance/ioasid-conformance" --gtest_output="json:$results/conformance-fuse.json" ||
  stage_failed "conformance (FUSE)"

if [ "$skip_iommufd_selftest" -eq 0 ]; then
  say "the kernel's iommufd selftest against the FUSE node's /dev/iommu (tests/iommufd-selftest)"
  # Fetching the sources (once, then cached) and building can fail on their own:
  # without the binaries the VM stage leaves the selftest out.
  if "$root/tests/iommufd-selftest/build.sh" --out "$selftest"; then
    "$root/tests/iommufd-selftest/run.sh" --ioasidd "$build/cuse/ioasidd" --bin "$selftest" \
      --results "$results/iommufd-selftest-fuse.json" --figure "$figures/iommufd-selftest.json" \
      --log "$build/iommufd-selftest.log" ||
      stage_failed "iommufd selftest (FUSE; see $build/iommufd-selftest.log)"
  else
    rm -f "$selftest/iommufd"
    stage_failed "iommufd selftest: fetching or building it"
  fi
fi

say "stress: 16 client processes for ${stress_seconds}s, some killed, then nothing may be left"
"$build/tests/stress/ioasid-stress" --seconds "$stress_seconds" --json "$figures/stress.json"
status=$?
one_test_report "$results/stress.json" stress "$status"
[ "$status" -eq 0 ] || stage_failed "stress"

say "Debian packages: build (CPack), lintian, contents (tests/package/check-debs.sh)"
debs=()
if "$root/tests/package/check-debs.sh" "$build" "$results/packages.json"; then
  debs=(--debs "$build/debs" --install-results "$results/package-install.json")
else
  stage_failed "Debian packages"
  # The VM stage still runs, on the build tree's binaries, if no package was made.
  compgen -G "$build/debs/*.deb" >/dev/null &&
    debs=(--debs "$build/debs" --install-results "$results/package-install.json")
fi

if [ "$skip_vm" -eq 0 ]; then
  vm_selftest=()
  if [ "$skip_iommufd_selftest" -eq 0 ] && [ -x "$selftest/iommufd" ]; then
    vm_selftest=(--iommufd-selftest "$selftest/iommufd"
                 --iommufd-results "$results/iommufd-selftest-cuse-vm.json"
                 --iommufd-figure "$figures/iommufd-selftest-vm.json")
  fi
  say "VM stage: the packages installed, conformance${vm_selftest[0]:+ and the iommufd selftest} against real CUSE under QEMU"
  "$root/tests/vm/run-vm-tests.sh" --ioasidd "$build/cuse/ioasidd" \
    --conformance "$build/tests/conformance/ioasid-conformance" \
    --results "$results/conformance-cuse-vm.json" --log "$build/vm-console.log" \
    "${vm_selftest[@]}" "${debs[@]}" ||
    stage_failed "VM stage (see $build/vm-console.log)"
fi

if [ "$skip_asan" -eq 0 ]; then
  say "ASan+UBSan build with clang, the fuzzer included ($asan)"
  # A tree configured with another compiler cannot switch: start it afresh.
  [ -f "$asan/CMakeCache.txt" ] && ! grep -q '^CMAKE_CXX_COMPILER:.*clang' "$asan/CMakeCache.txt" && rm -rf "$asan"
  mapfile -t flags < <(sanitizer_flags -gline-tables-only)
  if targets="unit_tests ioasid-conformance dispatcher_fuzzer" CC=clang CXX=clang++ \
       build_tree "$asan" -DIOASID_SANITIZE=address -DIOASID_FUZZ=ON -DIOASID_BUILD_DAEMON=ON -DIOASID_BUILD_BENCH=OFF "${flags[@]}"; then
    unit_and_conformance "$asan" "ASan+UBSan" "$asan/tests/conformance/ioasid-conformance"
    say "fuzzing the dispatcher for ${fuzz_seconds}s"
    "$root/tests/fuzz/run-fuzz.sh" "$asan" "$fuzz_seconds" "$figures/fuzz.json"
    status=$?
    one_test_report "$asan/test-results/fuzz.json" fuzz "$status"
    [ "$status" -eq 0 ] || stage_failed "fuzzing"
  else
    stage_failed "ASan+UBSan build"
  fi
fi

if [ "$skip_tsan" -eq 0 ]; then
  say "TSan build ($tsan)"
  mapfile -t flags < <(sanitizer_flags -g1)
  if targets="unit_tests ioasidd" \
       build_tree "$tsan" -DIOASID_SANITIZE=thread -DIOASID_BUILD_DAEMON=ON -DIOASID_BUILD_BENCH=OFF "${flags[@]}"; then
    # The plain suite drives the TSan daemon: TSan cannot follow the suite's own
    # children, which fork a threaded process and start threads.
    unit_and_conformance "$tsan" "TSan" "$build/tests/conformance/ioasid-conformance"
  else
    stage_failed "TSan build"
  fi
fi

say "summary"
for figure in "$figures"/*.json; do [ -f "$figure" ] && echo "  $(basename "$figure" .json): $(jq -c . "$figure")"; done
"$root/scripts/count-results.sh" "$stage_failures" "$results" "$asan/test-results" "$tsan/test-results"
