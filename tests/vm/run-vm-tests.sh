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
#                        [--debs DIR [--install-results FILE]] [-- extra gtest args]
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
# examples/ioasid-run).
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
#
# --debs DIR (the Debian packages of packaging/deb/build-debs.sh): instead of the
# busybox initramfs, a Debian bookworm rootfs made with mmdebstrap (systemd, udev,
# kmod; cached as a tarball in the cache dir) into which apt installs the packages
# (Depends from Debian's mirror, maintainer scripts run in the chroot, where no systemd
# runs), packed as the initramfs and booted with systemd as PID 1: ioasidd.service
# starts from the package (ExecStartPre loads cuse), and ioasid-vm-test.service, ordered
# after it, runs init.sh (MODE=systemd). --ioasidd is then not put in the guest.
# --install-results FILE gets the installation's checks (GoogleTest-style JSON).
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
DEBS=''
INSTALL_RESULTS=''
INSTALL_CASES=()      # JSON test cases of the packages' installation (--debs)
INSTALL_FAILURES=0
readonly SELFTEST_DIR=$REPO_DIR/tests/iommufd-selftest
SELFTEST_PASSED=0
SELFTEST_FAILED=0
WORK_DIR=''
QEMU_PID=''
KERNEL_PKG=''
KERNEL_DIR=''
PROBLEMS=()           # stage-level failures (boot, timeout, daemon exit, ...)

log() { echo "vm: $*" >&2; }
die() {
    log "error: $*"
    # The installation's checks made so far still count (--install-results).
    if [ ${#INSTALL_CASES[@]} -gt 0 ]; then write_install_results; fi
    echo "vm: 0 passed, 1 failed"
    exit 1
}

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
            --debs) DEBS=${2:?--debs needs a directory}; shift 2 ;;
            --install-results) INSTALL_RESULTS=${2:?--install-results needs a path}; shift 2 ;;
            --) shift; GTEST_ARGS=("$@"); break ;;
            -h|--help) usage ;;
            *) log "unknown argument: $1"; usage ;;
        esac
    done
    if [ -z "$IOASIDD" ] || [ -z "$CONFORMANCE" ]; then usage; fi
    if [ -n "$SELFTEST" ] && [ -z "$IOASID_RUN" ]; then
        IOASID_RUN=$(dirname "$IOASIDD")/../examples/ioasid-run
    fi
    local f
    for f in "$IOASIDD" "$CONFORMANCE" ${SELFTEST:+"$SELFTEST" "$IOASID_RUN"}; do
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
    if [ -n "$DEBS" ]; then
        for t in mmdebstrap zstd chroot depmod; do command -v "$t" >/dev/null || missing+=("$t"); done
    fi
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

# The guest's settings for init.sh: limits, the suite's and the selftest's arguments.
write_stage_files() {
    local root=$1 arg
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
}

# Writes initramfs.cpio.gz into WORK_DIR from the kernel dir and the two binaries.
build_initramfs() {
    local kdir=$1 root=$WORK_DIR/root arg
    mkdir -p "$root"/{dev,proc,sys,tmp,run,etc,root,lib/modules,usr/local/bin}
    install_busybox "$root"
    cp "$kdir"/*.ko "$kdir/modules.order" "$root/lib/modules/"
    mv "$root/lib/modules/modules.order" "$root/etc/modules.order"
    # Fixed names: init.sh runs "ioasidd" and "ioasid-conformance" from PATH.
    install_binary "$IOASIDD" "$root/usr/local/bin/ioasidd"
    install_binary "$CONFORMANCE" "$root/usr/local/bin/ioasid-conformance"
    install_libs "$root" "$IOASIDD"
    install_libs "$root" "$CONFORMANCE"
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
    write_stage_files "$root"
    install -m 0755 "$SCRIPT_DIR/init.sh" "$root/init"
    # -R 0:0: files must belong to root inside the guest whoever builds the image.
    (cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) |
        gzip -1 >"$WORK_DIR/initramfs.img" || die "building the initramfs failed"
}

# ---------------------------------------------------------------- Debian rootfs (--debs)

# What the guest's rootfs is made of: the suite, the mirror, the packages beside the
# Essential ones (apt; systemd as PID 1, udev for the rule, kmod for the unit's
# modprobe, procps for pidof). The cached base tarball's name hashes all of it.
readonly ROOTFS_SUITE=bookworm
readonly ROOTFS_MIRRORS=("deb http://deb.debian.org/debian bookworm main"
                         "deb http://deb.debian.org/debian bookworm-updates main"
                         "deb http://deb.debian.org/debian-security bookworm-security main")
readonly ROOTFS_INCLUDE=systemd,udev,kmod,procps
# The guest needs no documentation (copyright files stay, as Debian's own images do).
readonly ROOTFS_DPKGOPTS=('path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/doc/*'
                          'path-include=/usr/share/doc/*/copyright' 'path-exclude=/usr/share/locale/*'
                          'path-exclude=/usr/share/info/*')
ROOT_MOUNTS=()

install_record() {  # name, ok (0/1), message
    local name=$1 ok=$2 message=${3:-}
    if [ "$ok" -eq 0 ]; then
        log "install: ok      $name"
        INSTALL_CASES+=("$(jq -cn --arg n "$name" '{name: $n, status: "RUN", result: "COMPLETED"}')")
    else
        log "install: FAILED  $name: $message"
        INSTALL_FAILURES=$((INSTALL_FAILURES + 1))
        INSTALL_CASES+=("$(jq -cn --arg n "$name" --arg m "$message" \
            '{name: $n, status: "RUN", result: "COMPLETED", failures: [{failure: $m, type: ""}]}')")
    fi
}

write_install_results() {
    [ -n "$INSTALL_RESULTS" ] && [ ${#INSTALL_CASES[@]} -gt 0 ] || return 0
    mkdir -p "$(dirname "$INSTALL_RESULTS")"
    printf '%s\n' "${INSTALL_CASES[@]}" | jq -s --argjson f "$INSTALL_FAILURES" \
        '{tests: length, failures: $f, errors: 0, name: "AllTests",
          testsuites: [{name: "package-install", tests: length, failures: $f, testsuite: .}]}' \
        >"$INSTALL_RESULTS"
}

# The base rootfs (no project package), made once by mmdebstrap and kept as a tarball
# with apt's lists; its downloaded .debs are kept in CACHE_DIR/apt-archives. Sets BASE_TAR.
prepare_base_rootfs() {
    local key tmp
    key=$(printf '%s\n' "$ROOTFS_SUITE" "${ROOTFS_MIRRORS[@]}" "$ROOTFS_INCLUDE" "${ROOTFS_DPKGOPTS[@]}" |
          sha256sum | cut -c1-12)
    BASE_TAR=$CACHE_DIR/rootfs-$ROOTFS_SUITE-$key.tar
    [ -f "$BASE_TAR" ] && return 0
    command -v mmdebstrap >/dev/null || die "mmdebstrap missing (scripts/install-deps.sh)"
    log "making the base rootfs with mmdebstrap (once; cached as $BASE_TAR)"
    mkdir -p "$CACHE_DIR/apt-archives"
    tmp=$CACHE_DIR/.rootfs.$$.tar
    local args=(--variant=apt --include="$ROOTFS_INCLUDE" --skip=download/empty
                --skip=essential/unlink --skip=cleanup/apt/lists
                --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
                --setup-hook="sync-in $CACHE_DIR/apt-archives /var/cache/apt/archives/"
                --customize-hook="sync-out /var/cache/apt/archives $CACHE_DIR/apt-archives")
    local opt
    for opt in "${ROOTFS_DPKGOPTS[@]}"; do args+=(--dpkgopt="$opt"); done
    # Debian's python3 for mmtarfilter (the path filters run it once per package): a
    # python3 found first on PATH through a version manager's shim made it minutes slower.
    if ! PATH=/usr/sbin:/usr/bin:/sbin:/bin mmdebstrap "${args[@]}" "$ROOTFS_SUITE" "$tmp" "${ROOTFS_MIRRORS[@]}" >"$WORK_DIR/mmdebstrap.log" 2>&1; then
        tail -n 30 "$WORK_DIR/mmdebstrap.log" >&2
        rm -f "$tmp"
        die "mmdebstrap failed"
    fi
    mv "$tmp" "$BASE_TAR"
}

umount_root() {
    local i
    for (( i=${#ROOT_MOUNTS[@]} - 1; i >= 0; i-- )); do
        umount -l "${ROOT_MOUNTS[$i]}" 2>/dev/null || true
    done
    ROOT_MOUNTS=()
}

# apt installs the packages in the chroot: no systemd and no udev run there, which the
# maintainer scripts must survive. Each check is one test case (--install-results).
install_debs() {
    local root=$1 debs=() d out rc=0 names=()
    for d in "$DEBS"/*.deb; do debs+=("$d"); names+=("$(dpkg-deb -f "$d" Package)"); done
    [ ${#debs[@]} -gt 0 ] || die "no .deb in $DEBS"
    mkdir -p "$root/tmp/debs"
    cp "${debs[@]}" "$root/tmp/debs/"
    mkdir -p "$CACHE_DIR/apt-archives"
    cp "$CACHE_DIR"/apt-archives/*.deb "$root/var/cache/apt/archives/" 2>/dev/null || true
    mount -t proc proc "$root/proc" && ROOT_MOUNTS+=("$root/proc")
    mount --bind /dev "$root/dev" && ROOT_MOUNTS+=("$root/dev")
    local apt=(chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y
               --no-install-recommends -o Dpkg::Use-Pty=0)
    out=$("${apt[@]}" $(printf '/tmp/debs/%s ' $(cd "$root/tmp/debs" && ls)) 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] && grep -qE '404|Unable to fetch' <<<"$out"; then
        # The cached lists name versions the mirror no longer has.
        chroot "$root" apt-get update -qq >/dev/null 2>&1 || true
        rc=0
        out=$("${apt[@]}" $(printf '/tmp/debs/%s ' $(cd "$root/tmp/debs" && ls)) 2>&1) || rc=$?
    fi
    printf '%s\n' "$out" >"$WORK_DIR/apt-install.log"
    if [ "$rc" -eq 0 ]; then
        install_record "apt installs ${names[*]} (Depends from Debian, maintainer scripts without systemd)" 0
    else
        install_record "apt installs ${names[*]} (Depends from Debian, maintainer scripts without systemd)" 1 \
            "$(tail -n 15 <<<"$out")"
    fi
    cp "$root"/var/cache/apt/archives/*.deb "$CACHE_DIR/apt-archives/" 2>/dev/null || true
    rm -f "$root"/var/cache/apt/archives/*.deb
    local p bad=()
    for p in "${names[@]}"; do
        chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || bad+=("$p")
    done
    if [ ${#bad[@]} -eq 0 ]; then install_record "dpkg: every package 'install ok installed'" 0
    else install_record "dpkg: every package 'install ok installed'" 1 "not installed: ${bad[*]}"; fi
    if out=$(chroot "$root" getent group ioasid); then
        install_record "postinst created the system group ioasid" 0
    else
        install_record "postinst created the system group ioasid" 1 "no group ioasid in /etc/group"
    fi
    if [ "$(readlink "$root/etc/systemd/system/multi-user.target.wants/ioasidd.service")" = /lib/systemd/system/ioasidd.service ]; then
        install_record "postinst enabled ioasidd.service (deb-systemd-helper)" 0
    else
        install_record "postinst enabled ioasidd.service (deb-systemd-helper)" 1 \
            "$(ls -l "$root/etc/systemd/system/multi-user.target.wants/" 2>&1)"
    fi
    # Remove, purge and install again: prerm/postrm without systemd, the enablement
    # forgotten on purge and made again on the next installation.
    rc=0
    out=$(chroot "$root" dpkg --purge ioasidd 2>&1) || rc=$?
    if [ "$rc" -eq 0 ] && [ ! -e "$root/etc/systemd/system/multi-user.target.wants/ioasidd.service" ] &&
       [ ! -e "$root/lib/systemd/system/ioasidd.service" ] &&
       out=$(chroot "$root" dpkg -i /tmp/debs/"$(cd "$root/tmp/debs" && ls ioasidd_*.deb)" 2>&1) &&
       [ -L "$root/etc/systemd/system/multi-user.target.wants/ioasidd.service" ]; then
        install_record "ioasidd purged (unit disabled) and installed again (enabled)" 0
    else
        install_record "ioasidd purged (unit disabled) and installed again (enabled)" 1 "$out"
    fi
    umount_root
    rm -rf "$root/tmp/debs"
}

# From the guest's console: systemd started ioasidd.service from the package's unit
# file and enabled it, and udev applied the package's rule to the CUSE node.
check_service_state() {
    local state
    state=$(section service-state || true)
    if grep -qx 'ActiveState=active' <<<"$state" &&
       grep -qx 'FragmentPath=/lib/systemd/system/ioasidd.service' <<<"$state" &&
       grep -qx 'UnitFileState=enabled' <<<"$state"; then
        install_record "systemd started the enabled ioasidd.service from the package at boot" 0
    else
        install_record "systemd started the enabled ioasidd.service from the package at boot" 1 \
            "${state:-no service state in the console log}"
    fi
    if grep -qx 'node=660 ioasid' <<<"$state"; then
        install_record "udev gave /dev/ioasid to group ioasid, mode 0660 (60-ioasid.rules)" 0
    else
        install_record "udev gave /dev/ioasid to group ioasid, mode 0660 (60-ioasid.rules)" 1 \
            "$(grep '^node=' <<<"$state" || echo 'no node line')"
    fi
    write_install_results
}

# Copies BINARY to DEST in the rootfs; its libraries must come from the packages or
# the base system (checked with the guest's own loader after everything is in).
install_guest_binary() {
    local root=$1 src=$2 dest=$3
    mkdir -p "$root$(dirname "$dest")"
    install_binary "$src" "$root$dest"
    chmod 0755 "$root$dest"
}

# Writes initramfs.cpio.zst into WORK_DIR: the Debian rootfs with the packages, the
# suite, the selftest, the test unit and the kernel's fuse/cuse modules.
build_debian_initramfs() {
    local kdir=$1 root=$WORK_DIR/root kver arg
    prepare_base_rootfs
    mkdir -p "$root"
    tar -C "$root" --numeric-owner -xf "$BASE_TAR" || die "unpacking $BASE_TAR failed"
    install_debs "$root"
    # The suite, its helper probe and the selftest (the packages' programs are used
    # for the rest: init.sh, MODE=systemd).
    install_guest_binary "$root" "$CONFORMANCE" /usr/local/bin/ioasid-conformance
    local probe
    probe=$(grep -aoE '/[A-Za-z0-9._+/-]*/ioasid_run_probe' "$CONFORMANCE" | head -n 1 || true)
    [ -n "$probe" ] && [ -x "$probe" ] &&
        install_guest_binary "$root" "$probe" /usr/local/libexec/ioasid-conformance/ioasid_run_probe
    if [ -n "$SELFTEST" ]; then
        install_guest_binary "$root" "$SELFTEST" /usr/local/bin/iommufd-selftest
    fi
    local missing
    missing=$(for f in "$root"/usr/local/bin/* "$root"/usr/local/libexec/ioasid-conformance/*; do
                  chroot "$root" ldd "${f#"$root"}" 2>&1 | grep 'not found' || true
              done)
    [ -z "$missing" ] || die "libraries missing in the guest: $missing"
    # fuse.ko and cuse.ko where modprobe (the unit's ExecStartPre) finds them.
    kver=${KERNEL_PKG#linux-image-}
    mkdir -p "$root/lib/modules/$kver/kernel/fs/fuse"
    cp "$kdir"/*.ko "$root/lib/modules/$kver/kernel/fs/fuse/"
    # (No modules.order or modules.builtin: only these two modules are there.)
    depmod -b "$root" "$kver" 2>/dev/null || die "depmod failed"
    # How the daemon runs (the unit's EnvironmentFile), and the stage's test unit.
    printf 'IOASIDD_OPTIONS="--frontend cuse --no-netlink --log-level info --page-timeout 1500"\n' \
        >"$root/etc/default/ioasidd"
    mkdir -p "$root/usr/local/libexec/ioasid-vm"
    install -m 0755 "$SCRIPT_DIR/init.sh" "$root/usr/local/libexec/ioasid-vm/init.sh"
    install -m 0644 "$SCRIPT_DIR/ioasid-vm-test.service" "$SCRIPT_DIR/ioasid-vm-fallback.service" \
        "$root/etc/systemd/system/"
    ln -sf ../ioasid-vm-test.service "$root/etc/systemd/system/multi-user.target.wants/ioasid-vm-test.service"
    ln -sf ../ioasid-vm-fallback.service "$root/etc/systemd/system/multi-user.target.wants/ioasid-vm-fallback.service"
    # Nothing else on the serial console, no first-boot questions.
    local unit
    for unit in serial-getty@ttyS0.service getty@tty1.service systemd-firstboot.service \
                apt-daily.timer apt-daily-upgrade.timer; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
    echo >>"$root/etc/machine-id"
    write_stage_files "$root"
    (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) |
        zstd -q -T0 -3 >"$WORK_DIR/initramfs.img" || die "building the initramfs failed"
    rm -rf "$root"
}

# ---------------------------------------------------------------- boot + report

cleanup() {
    if [ -n "$QEMU_PID" ]; then kill "$QEMU_PID" 2>/dev/null || true; fi
    # Never remove the tree while /dev is bound into it.
    umount_root
    if [ -n "$WORK_DIR" ]; then rm -rf "$WORK_DIR"; fi
}

# Boots the VM with the serial console going to LOG. Returns timeout's status.
boot_vm() {
    local kdir=$1 rc=0 tail_pid='' append="console=ttyS0 panic=-1 quiet"
    # systemd as PID 1 (--debs): its status lines off the console, the selftest's
    # hugepages reserved by the kernel itself.
    [ -z "$DEBS" ] || append+=" rdinit=/lib/systemd/systemd systemd.show_status=0 hugepages=64"
    : >"$LOG"
    if [ "${IOASID_VM_VERBOSE:-0}" = 1 ]; then
        tail -n +1 -f "$LOG" >&2 &
        tail_pid=$!
    fi
    # TCG only: KVM is present here but hangs when nested. -cpu max so binaries built
    # for a modern host CPU (SSE4.2, AVX2, ...) do not hit SIGILL on qemu64.
    timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 \
        -accel tcg -cpu max -m "$VM_MEMORY_MB" -smp 2 -nographic -no-reboot \
        -kernel "$kdir/vmlinuz" -initrd "$WORK_DIR/initramfs.img" \
        -append "$append" \
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
    if [ -n "$DEBS" ]; then
        local rootfs_start=$SECONDS
        build_debian_initramfs "$kdir"
        log "Debian rootfs with the packages installed, packed in $(( SECONDS - rootfs_start ))s" \
            "($(( $(stat -c %s "$WORK_DIR/initramfs.img") / 1048576 )) MiB)"
    else
        build_initramfs "$kdir"
    fi
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
    [ -z "$DEBS" ] || check_service_state
    [ -z "$DEBS" ] || log "package installation: ${#INSTALL_CASES[@]} checks, $INSTALL_FAILURES failed"
    # A log we chose the name of is only worth keeping when something failed.
    if [ "$failed" -eq 0 ] && [ "$own_log" -eq 1 ]; then rm -f "$LOG"; fi
    echo "vm: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

main "$@"
