#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# VM stage: runs the conformance suite against a real CUSE /dev/ioasid, and
# optionally the kernel's iommufd selftest (tests/iommufd-selftest) against the
# daemon's CUSE /dev/iommu, under the launcher ioasid-run.
#
# The host kernel has no CONFIG_CUSE, so this boots Debian's cloud kernel (which ships
# cuse.ko) under qemu TCG with a throw-away initramfs holding busybox, fuse/cuse, the
# given binaries and their shared libraries. tests/vm/init.sh runs inside and reports
# over the serial console between marker lines, which are parsed here.
#
# Usage: run-vm-tests.sh --ioasidd PATH --conformance PATH [--results FILE]
#                        [--log FILE] [--iommufd-selftest PATH [--ioasid-run PATH]
#                        [--iommufd-results FILE] [--iommufd-figure FILE]]
#                        [--wait-ready PATH] [-- extra gtest args]
# Last line of output is always "vm: N passed, M failed"; exit 0 only if M is 0.
#
# --iommufd-selftest PATH is the `iommufd` binary tests/iommufd-selftest/build.sh
# made: the guest runs it (whole, once) after the conformance suite, and its output is
# judged on the host by tests/iommufd-selftest/report.sh against the same allowlist
# as the FUSE stage (an allowlisted test that does not pass fails this stage; N and M
# include the allowlisted tests). --iommufd-results gets the GoogleTest-style JSON
# (one test per allowlisted entry), --iommufd-figure the whole-binary figure.
# The guest runs it as `ioasid-run --iommu-node /dev/iommu --companion /dev/iommu-fd
# iommufd-selftest` (the fd-returning commands go through the daemon's CUSE companion
# node); --ioasid-run PATH is the launcher (default: the one built beside --ioasidd,
# examples/ioasid-run). --wait-ready PATH is ioasid-wait-ready, which the guest starts
# ioasidd under to wait for its READY=1 (default: tests/ready/ in the same build tree).
#
# Environment:
#   IOASID_VM_CACHE        kernel cache dir (default: tests/vm/cache)
#   IOASID_VM_KERNEL_PKG   kernel package to use (default: newest
#                          linux-image-6.1.0-<N>-cloud-amd64 known to apt)
#   IOASID_VM_TIMEOUT      overall limit for the VM in seconds (default: 900)
#   IOASID_VM_DEV_TIMEOUT  seconds to wait for /dev/ioasid in the guest (default: 30)
#   IOASID_VM_SELFTEST_TIMEOUT  limit for the iommufd selftest in the guest in seconds
#                          (default: 600; less if the VM's overall limit leaves less)
#   IOASID_VM_SELFTEST_ARGS  harness options for the iommufd selftest, split on white
#                          space (e.g. "-r iommufd_ioas.mock_domain.access_rw"); the
#                          allowlisted tests outside the selection are then not judged
#   IOASID_VM_VERBOSE=1    stream the serial console while the VM runs
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
readonly SCRIPT_DIR REPO_DIR
readonly MARK='@@IOASID-VM@@'    # keep in sync with init.sh

CACHE_DIR=${IOASID_VM_CACHE:-$SCRIPT_DIR/cache}
VM_TIMEOUT=${IOASID_VM_TIMEOUT:-900}
DEV_TIMEOUT=${IOASID_VM_DEV_TIMEOUT:-30}
STOP_TIMEOUT=10
SELFTEST_TIMEOUT=${IOASID_VM_SELFTEST_TIMEOUT:-600}
# The guest's memory: enough for the selftest's hugepages (64 x 2 MiB) and its
# 128 MiB dirty-tracking buffers beside the daemon and the initramfs.
readonly VM_MEMORY_MB=1536
# The guest bounds the suite itself so that on a hang it can still report the daemon
# log; leave it enough margin (boot + reporting) inside the host's overall limit.
TEST_TIMEOUT=$(( VM_TIMEOUT > 180 ? VM_TIMEOUT - 90 : VM_TIMEOUT / 2 ))
# The selftest starts after the conformance suite: the guest gives it what is left
# before this uptime (same margin), at most SELFTEST_TIMEOUT.
SELFTEST_DEADLINE=$TEST_TIMEOUT

IOASIDD=''
CONFORMANCE=''
RESULTS=''
LOG=''
GTEST_ARGS=()
SELFTEST=''
SELFTEST_RESULTS=''
SELFTEST_FIGURE=''
IOASID_RUN=''
WAIT_READY=''
readonly SELFTEST_DIR=$REPO_DIR/tests/iommufd-selftest
SELFTEST_PASSED=0
SELFTEST_FAILED=0
WORK_DIR=''
QEMU_PID=''
KERNEL_PKG=''
KERNEL_DIR=''
PROBLEMS=()           # stage-level failures (boot, timeout, daemon exit, ...)

log() { echo "vm: $*" >&2; }
die() { log "error: $*"; echo "vm: 0 passed, 1 failed"; exit 1; }

usage() {
    sed -n '11,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --ioasidd) IOASIDD=${2:?--ioasidd needs a path}; shift 2 ;;
            --conformance) CONFORMANCE=${2:?--conformance needs a path}; shift 2 ;;
            --results) RESULTS=${2:?--results needs a path}; shift 2 ;;
            --log) LOG=${2:?--log needs a path}; shift 2 ;;
            --iommufd-selftest) SELFTEST=${2:?--iommufd-selftest needs a path}; shift 2 ;;
            --iommufd-results) SELFTEST_RESULTS=${2:?--iommufd-results needs a path}; shift 2 ;;
            --iommufd-figure) SELFTEST_FIGURE=${2:?--iommufd-figure needs a path}; shift 2 ;;
            --ioasid-run) IOASID_RUN=${2:?--ioasid-run needs a path}; shift 2 ;;
            --wait-ready) WAIT_READY=${2:?--wait-ready needs a path}; shift 2 ;;
            --) shift; GTEST_ARGS=("$@"); break ;;
            -h|--help) usage ;;
            *) log "unknown argument: $1"; usage ;;
        esac
    done
    if [ -z "$IOASIDD" ] || [ -z "$CONFORMANCE" ]; then usage; fi
    if [ -n "$SELFTEST" ] && [ -z "$IOASID_RUN" ]; then
        IOASID_RUN=$(dirname "$IOASIDD")/../examples/ioasid-run
    fi
    # The guest starts ioasidd under it (waits for READY=1): from the same build tree.
    [ -n "$WAIT_READY" ] || WAIT_READY=$(dirname "$IOASIDD")/../tests/ready/ioasid-wait-ready
    local f
    for f in "$IOASIDD" "$CONFORMANCE" "$WAIT_READY" ${SELFTEST:+"$SELFTEST" "$IOASID_RUN"}; do
        if [ ! -f "$f" ] || [ ! -x "$f" ]; then die "not an executable file: $f"; fi
    done
}

run_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Host tools; install-deps.sh installs them all when one is missing.
ensure_tools() {
    local t missing=()
    for t in qemu-system-x86_64 cpio gzip dpkg-deb apt-get apt-cache modinfo ldd \
             timeout flock jq; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    [ -x /bin/busybox ] || missing+=(busybox-static)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "missing ${missing[*]}; running scripts/install-deps.sh"
    "$REPO_DIR/scripts/install-deps.sh" >&2 || die "install-deps.sh failed"
}

# ---------------------------------------------------------------- kernel + modules

newest_kernel_pkg() {
    apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' 2>/dev/null |
        awk '{print $1}' | sort -V | tail -n 1
}

newest_cached_pkg() {
    local d
    for d in "$CACHE_DIR"/linux-image-*/; do
        [ -f "$d/complete" ] && basename "$d"
    done | sort -V | tail -n 1
}

# Which kernel: explicit, else newest known to apt, else newest already cached, else
# refresh apt's lists (a fresh machine may have none) and ask again.
pick_kernel_pkg() {
    local pkg=${IOASID_VM_KERNEL_PKG:-}
    [ -n "$pkg" ] || pkg=$(newest_kernel_pkg)
    [ -n "$pkg" ] || pkg=$(newest_cached_pkg)
    if [ -z "$pkg" ]; then
        log "no cloud kernel known to apt; running apt-get update"
        run_as_root apt-get update -qq >&2 || die "apt-get update failed"
        pkg=$(newest_kernel_pkg)
    fi
    [ -n "$pkg" ] || die "no linux-image-6.1.0-*-cloud-amd64 package available"
    KERNEL_PKG=$pkg
}

# Path of module NAME (dashes and underscores are interchangeable) inside a tree.
find_module() {
    local tree=$1 name=$2 alt
    alt=$(tr '_-' '-_' <<<"$name")
    find "$tree" \( -name "$name.ko*" -o -name "$alt.ko*" \) -print -quit
}

# Uncompressed copy of a module in DEST; modules may ship as .ko, .ko.xz or .ko.zst.
decompress_module() {
    local src=$1 dest=$2 name
    name=$(basename "$src")
    case $name in
        *.ko) cp "$src" "$dest/$name" ;;
        *.ko.xz) xz -dc "$src" >"$dest/${name%.xz}" ;;
        *.ko.zst) zstd -qdc "$src" >"$dest/${name%.zst}" ;;
        *.ko.gz) gzip -dc "$src" >"$dest/${name%.gz}" ;;
        *) die "unknown module format: $src" ;;
    esac
}

# Appends NAME's dependencies, then NAME, to modules.order (depth first, no repeats),
# since there is no modules.dep in the package (depmod runs at install time).
add_module() {
    local tree=$1 dest=$2 name=$3 src ko dep
    grep -qx "$name.ko" "$dest/modules.order" 2>/dev/null && return 0
    src=$(find_module "$tree" "$name")
    [ -n "$src" ] || die "module $name not found in the kernel package"
    decompress_module "$src" "$dest"
    ko=$(basename "${src%.ko*}").ko
    [ "$ko" = "$name.ko" ] || mv "$dest/$ko" "$dest/$name.ko"
    for dep in $(modinfo -F depends "$dest/$name.ko" | tr ',' ' '); do
        add_module "$tree" "$dest" "$dep"
    done
    echo "$name.ko" >>"$dest/modules.order"
}

# Downloads and unpacks PKG into CACHE_DIR/PKG (vmlinuz, *.ko, modules.order) unless
# a complete copy is already there. Only the few needed files are kept.
fetch_kernel() {
    local pkg=$1 tmp deb
    local dest=$CACHE_DIR/$pkg
    [ -f "$dest/complete" ] && return 0
    rm -rf "$CACHE_DIR"/.download.*    # left by an interrupted run (we hold the lock)
    log "downloading $pkg"
    tmp=$(mktemp -d "$CACHE_DIR/.download.XXXXXX")
    if ! (cd "$tmp" && apt-get download "$pkg" >apt.log 2>&1); then
        # Stale lists point at versions the mirror no longer has.
        log "apt-get download failed; running apt-get update and retrying"
        run_as_root apt-get update -qq >&2 || { rm -rf "$tmp"; die "apt-get update failed"; }
        (cd "$tmp" && apt-get download "$pkg" >apt.log 2>&1) ||
            { cat "$tmp/apt.log" >&2; rm -rf "$tmp"; die "apt-get download $pkg failed"; }
    fi
    deb=$(ls "$tmp"/*.deb)
    dpkg-deb -x "$deb" "$tmp/root" || { rm -rf "$tmp"; die "dpkg-deb -x $deb failed"; }
    rm -rf "$dest"
    mkdir -p "$dest"
    cp "$tmp"/root/boot/vmlinuz-* "$dest/vmlinuz" || die "no vmlinuz in $pkg"
    local name
    for name in fuse cuse; do
        add_module "$tmp/root/lib/modules" "$dest" "$name"
    done
    rm -rf "$tmp"
    touch "$dest/complete"
    log "cached $pkg in $dest ($(tr '\n' ' ' <"$dest/modules.order"))"
}

# Sets KERNEL_DIR. The lock serialises concurrent runs sharing the cache.
prepare_kernel() {
    mkdir -p "$CACHE_DIR"
    pick_kernel_pkg
    exec 9>"$CACHE_DIR/.lock"
    flock 9
    fetch_kernel "$KERNEL_PKG"
    flock -u 9
    KERNEL_DIR=$CACHE_DIR/$KERNEL_PKG
}

# ---------------------------------------------------------------- initramfs

# Copies FILE into the tree at the same absolute path (symlinks resolved).
install_host_file() {
    local root=$1 file=$2
    mkdir -p "$root$(dirname "$file")"
    cp -L "$file" "$root$file"
}

# Every shared library BINARY needs plus the dynamic loader, at the paths ldd resolved
# them to, so absolute RUNPATHs in build-tree binaries keep working too.
install_libs() {
    local root=$1 bin=$2 out line lib
    if ! out=$(ldd "$bin" 2>&1); then
        grep -q 'not a dynamic executable' <<<"$out" && return 0
        die "ldd $bin failed: $out"
    fi
    if grep -q 'not found' <<<"$out"; then
        die "unresolved libraries for $bin: $(grep 'not found' <<<"$out" | tr -s '\t\n' '  ')"
    fi
    while IFS= read -r line; do
        lib=''
        case $line in
            *' => '/*) lib=${line#* => }; lib=${lib%% (*} ;;
            *[[:space:]]/*' ('*) lib=${line#"${line%%/*}"}; lib=${lib%% (*} ;;
        esac
        [ -n "$lib" ] || continue
        install_host_file "$root" "$lib"
        # A build-tree library (libioasid) also goes where the loader looks by default:
        # its RUNPATH directory may be hidden in the guest (a build under /tmp, which
        # the guest mounts a tmpfs on).
        case $lib in
            /lib/*|/lib64/*|/usr/lib/*|/usr/lib64/*) ;;
            *) mkdir -p "$root/usr/lib" && cp -L "$lib" "$root/usr/lib/$(basename "$lib")" ;;
        esac
    done <<<"$out"
}

# Debug builds are ~20x larger than their code; the guest unpacks the initramfs slowly
# under TCG, so drop DWARF but keep the symbol table for backtraces.
install_binary() {
    local src=$1 dest=$2
    if command -v strip >/dev/null; then
        strip --strip-debug -o "$dest" "$src" || die "strip $src failed"
    else
        cp -L "$src" "$dest"
    fi
}

# The conformance suite runs ioasid-run, its probe, examples/iommufd-fault-demo
# (IommuFdCommand.*UnderIoasidRun, IommufdFaultDemo.*) and examples/ats-copy
# (Ats.TheAtsCopyExampleRuns) at the build-tree paths compiled into it, or where
# $IOASID_RUN, $IOASID_RUN_PROBE, $IOMMUFD_FAULT_DEMO and $ATS_COPY say. A build
# tree under /tmp is hidden in the guest (a tmpfs is mounted there), so they go to
# /usr/local/libexec/ioasid-conformance/ and init.sh points the variables there.
install_conformance_helpers() {
    local root=$1 path dir=/usr/local/libexec/ioasid-conformance
    mkdir -p "$root$dir"
    while IFS= read -r path; do
        [ -n "$path" ] && [ -f "$path" ] && [ -x "$path" ] || continue
        install_binary "$path" "$root$dir/$(basename "$path")"
        install_libs "$root" "$path"
    done < <(grep -aoE '/[A-Za-z0-9._+/-]*/(ioasid-run|ioasid_run_probe|iommufd-fault-demo|ats-copy)' "$CONFORMANCE" | sort -u)
}

# Only /bin/sh is linked here (for /init's shebang): init.sh creates the other applet
# links with "busybox --install -s", one process instead of ~400 ln forks.
install_busybox() {
    local root=$1
    install_host_file "$root" /bin/busybox
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin}
    ln -s busybox "$root/bin/sh"
}

# Writes initramfs.cpio.gz into WORK_DIR from the kernel dir and the two binaries.
build_initramfs() {
    local kdir=$1 root=$WORK_DIR/root arg
    mkdir -p "$root"/{dev,proc,sys,tmp,run,etc,root,lib/modules,usr/local/bin}
    install_busybox "$root"
    cp "$kdir"/*.ko "$kdir/modules.order" "$root/lib/modules/"
    mv "$root/lib/modules/modules.order" "$root/etc/modules.order"
    # Fixed names: init.sh runs "ioasidd", "ioasid-wait-ready" and "ioasid-conformance" from PATH.
    install_binary "$IOASIDD" "$root/usr/local/bin/ioasidd"
    install_binary "$CONFORMANCE" "$root/usr/local/bin/ioasid-conformance"
    install_libs "$root" "$IOASIDD"
    install_libs "$root" "$CONFORMANCE"
    install_binary "$WAIT_READY" "$root/usr/local/bin/ioasid-wait-ready"
    install_libs "$root" "$WAIT_READY"
    install_conformance_helpers "$root"
    # init.sh runs the selftest when this file exists, under ioasid-run.
    if [ -n "$SELFTEST" ]; then
        install_binary "$SELFTEST" "$root/usr/local/bin/iommufd-selftest"
        install_libs "$root" "$SELFTEST"
        install_binary "$IOASID_RUN" "$root/usr/local/bin/ioasid-run"
        install_libs "$root" "$IOASID_RUN"
    fi
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    cat >"$root/etc/vm-stage.conf" <<EOF
DEV_TIMEOUT=$DEV_TIMEOUT
TEST_TIMEOUT=$TEST_TIMEOUT
STOP_TIMEOUT=$STOP_TIMEOUT
SELFTEST_TIMEOUT=$SELFTEST_TIMEOUT
SELFTEST_DEADLINE=$SELFTEST_DEADLINE
EOF
    : >"$root/etc/gtest-args"
    for arg in "${GTEST_ARGS[@]}"; do
        [[ $arg != *$'\n'* ]] || die "gtest arguments must not contain newlines"
        printf '%s\n' "$arg" >>"$root/etc/gtest-args"
    done
    local selftest_args=()
    read -ra selftest_args <<<"${IOASID_VM_SELFTEST_ARGS:-}"
    : >"$root/etc/selftest-args"
    for arg in "${selftest_args[@]}"; do printf '%s\n' "$arg" >>"$root/etc/selftest-args"; done
    install -m 0755 "$SCRIPT_DIR/init.sh" "$root/init"
    # -R 0:0: files must belong to root inside the guest whoever builds the image.
    (cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) |
        gzip -1 >"$WORK_DIR/initramfs.cpio.gz" || die "building the initramfs failed"
}

# ---------------------------------------------------------------- boot + report

cleanup() {
    if [ -n "$QEMU_PID" ]; then kill "$QEMU_PID" 2>/dev/null || true; fi
    if [ -n "$WORK_DIR" ]; then rm -rf "$WORK_DIR"; fi
}

# Boots the VM with the serial console going to LOG. Returns timeout's status.
boot_vm() {
    local kdir=$1 rc=0 tail_pid=''
    : >"$LOG"
    if [ "${IOASID_VM_VERBOSE:-0}" = 1 ]; then
        tail -n +1 -f "$LOG" >&2 &
        tail_pid=$!
    fi
    # TCG only: KVM is present here but hangs when nested. -cpu max so binaries built
    # for a modern host CPU (SSE4.2, AVX2, ...) do not hit SIGILL on qemu64.
    timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 \
        -accel tcg -cpu max -m "$VM_MEMORY_MB" -smp 2 -nographic -no-reboot \
        -kernel "$kdir/vmlinuz" -initrd "$WORK_DIR/initramfs.cpio.gz" \
        -append "console=ttyS0 panic=-1 quiet" \
        </dev/null >"$LOG" 2>&1 &
    QEMU_PID=$!
    wait "$QEMU_PID" || rc=$?
    QEMU_PID=''
    [ -n "$tail_pid" ] && { sleep 0.2; kill "$tail_pid" 2>/dev/null || true; }
    return "$rc"
}

# The console log without the serial tty's carriage returns and without terminal
# escape sequences (firmware and console resets glue them to the start of lines).
clean_log() {
    sed -e 's/\r$//' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[A-Za-z]//g' "$LOG"
}

# Prints the lines between "MARK BEGIN name" and "MARK END name" of the console log.
# Fails if the section is absent or unterminated.
section() {
    local name=$1
    clean_log | awk -v b="$MARK BEGIN $name" -v e="$MARK END $name" '
        $0 == e && on { on = 0; done = 1; next }
        on { print }
        $0 == b { on = 1 }
        END { exit done ? 0 : 1 }'
}

# "passed failed skipped" from gtest's JSON (per test: result COMPLETED, failed if it
# has a "failures" array; tests are nested at a fixed indent in gtest's output).
count_results() {
    awk '
        /^          "result": "COMPLETED"/ { completed++ }
        /^          "result": "SKIPPED"/ { skipped++ }
        /^          "failures": \[/ { failed++ }
        END { printf "%d %d %d\n", completed - failed, failed, skipped }' "$1"
}

# The iommufd selftest's TAP output, judged by report.sh (the FUSE stage's rules and
# allowlist). Sets SELFTEST_PASSED/SELFTEST_FAILED (allowlisted tests) and adds
# problems to PROBLEMS.
judge_selftest() {
    local tap=$WORK_DIR/iommufd-selftest.tap json=$WORK_DIR/iommufd-selftest.json
    local info rc args verdict=0
    info=$(section iommufd-selftest-info | tr '\n' ' ' | sed 's/ *$//' || true)
    [ -z "$info" ] || log "iommufd selftest in the guest: $info"
    if ! section iommufd-selftest-output >"$tap"; then
        PROBLEMS+=("no iommufd selftest output in the console log")
        return 0
    fi
    rc=$(section iommufd-selftest-exit | tr -d '[:space:]' || true)
    case $rc in
        0|1) ;;
        137) PROBLEMS+=("iommufd selftest killed in the guest (time limit or SIGKILL)") ;;
        *) PROBLEMS+=("iommufd selftest exited with status ${rc:-unknown}") ;;
    esac
    args=(--tap "$tap" --allowlist "$SELFTEST_DIR/allowlist" --results "$json"
          --label "iommufd selftest (CUSE VM)")
    [ -f "$(dirname "$SELFTEST")/VERSION" ] && args+=(--version-file "$(dirname "$SELFTEST")/VERSION")
    [ -z "${IOASID_VM_SELFTEST_ARGS:-}" ] || args+=(--selection)
    [ -z "$SELFTEST_FIGURE" ] || args+=(--figure "$SELFTEST_FIGURE")
    "$SELFTEST_DIR/report.sh" "${args[@]}" >&2 || verdict=$?
    if [ "$verdict" -gt 1 ] || [ ! -s "$json" ]; then
        PROBLEMS+=("report.sh failed on the iommufd selftest output (status $verdict)")
        return 0
    fi
    if [ -n "$SELFTEST_RESULTS" ]; then
        mkdir -p "$(dirname "$SELFTEST_RESULTS")"
        cp "$json" "$SELFTEST_RESULTS"
    fi
    # The allowlisted tests count like the conformance tests in the last line.
    read -r SELFTEST_PASSED SELFTEST_FAILED < <(jq -r '"\(.tests - .failures) \(.failures)"' "$json")
}

print_failure_details() {
    log "---- gtest output (last 40 lines) ----"
    section gtest-output | tail -n 40 >&2 || true
    log "---- ioasidd log (last 40 lines) ----"
    section daemon-log | tail -n 40 >&2 || true
    if ! grep -q "$MARK START" "$LOG"; then
        log "---- serial console (last 40 lines) ----"
        clean_log | tail -n 40 >&2
    fi
    log "full serial console log: $LOG"
}

main() {
    parse_args "$@"
    ensure_tools
    local start=$SECONDS kdir boot_rc=0 json passed=0 failed=0 skipped=0 status line
    prepare_kernel
    kdir=$KERNEL_DIR
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ioasid-vm.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    local own_log=0
    if [ -z "$LOG" ]; then
        LOG=$(mktemp "${TMPDIR:-/tmp}/ioasid-vm-console.XXXXXX.log")
        own_log=1
    fi
    build_initramfs "$kdir"
    log "booting $(basename "$kdir") (timeout ${VM_TIMEOUT}s, console: $LOG)"
    local vm_start=$SECONDS
    boot_vm "$kdir" || boot_rc=$?
    local vm_time=$(( SECONDS - vm_start ))

    if [ "$boot_rc" -eq 124 ] || [ "$boot_rc" -eq 137 ]; then
        PROBLEMS+=("VM timed out after ${VM_TIMEOUT}s (qemu killed)")
    fi
    if ! grep -q "$MARK START" "$LOG"; then
        PROBLEMS+=("VM did not boot to /init (qemu status $boot_rc)")
    elif ! grep -q "$MARK DONE" "$LOG"; then
        PROBLEMS+=("guest did not finish (no DONE marker)")
    fi
    while IFS= read -r line; do
        PROBLEMS+=("guest: ${line#*VM-STAGE-ERROR: }")
    done < <(clean_log | grep 'VM-STAGE-ERROR:' || true)

    json=$WORK_DIR/conformance.json
    if section conformance-json >"$json" && [ -s "$json" ]; then
        read -r passed failed skipped < <(count_results "$json")
        if [ -n "$RESULTS" ]; then
            mkdir -p "$(dirname "$RESULTS")"
            cp "$json" "$RESULTS"
        fi
    else
        PROBLEMS+=("no conformance JSON in the console log")
    fi
    # A crash after the JSON was written (teardown, sanitizers) still fails the stage.
    status=$(section conformance-exit | tr -d '[:space:]' || true)
    if [ -s "$json" ] && [ -n "$status" ] && [ "$status" != 0 ] && [ "$failed" -eq 0 ]; then
        PROBLEMS+=("conformance exited with status $status but reported no failing test")
    fi
    if [ -n "$SELFTEST" ]; then
        judge_selftest
        passed=$(( passed + SELFTEST_PASSED ))
        failed=$(( failed + SELFTEST_FAILED ))
    fi
    status=$(section daemon-exit | tr -d '[:space:]' || true)
    if [ "$status" != 0 ] && ! printf '%s\n' "${PROBLEMS[@]}" | grep -q 'ioasidd exit status'; then
        PROBLEMS+=("ioasidd exit status: ${status:-unknown} (expected 0)")
    fi

    local boot_time
    boot_time=$(clean_log | sed -n "s/.*$MARK START uptime=//p" | head -n 1)
    log "guest boot ${boot_time:-?}s, VM ${vm_time}s, stage $(( SECONDS - start ))s;" \
        "skipped tests: $skipped"
    for line in "${PROBLEMS[@]}"; do log "FAILED: $line"; done
    if [ ${#PROBLEMS[@]} -gt 0 ] || [ "$failed" -gt 0 ]; then
        print_failure_details
    fi
    failed=$(( failed + ${#PROBLEMS[@]} ))
    # A log we chose the name of is only worth keeping when something failed.
    if [ "$failed" -eq 0 ] && [ "$own_log" -eq 1 ]; then rm -f "$LOG"; fi
    echo "vm: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

main "$@"
