#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the kernel's iommufd selftest, built unchanged (build.sh), against ioasidd's
# iommufd node on FUSE.
#
# Starts its own daemon (--frontend fuse --fuse TMP/fuse, no netlink, a private admin
# socket), waits (bounded) for the FUSE nodes, raises vm.nr_hugepages to 64 (the
# hugepage variants need them; the old value is restored at exit), and runs the whole
# `iommufd` binary, then `iommufd_fail_nth`, each under an overall timeout and in
# private namespaces where /dev/iommu is TMP/fuse/iommu bind-mounted
# (with-dev-iommu.sh: the host's /dev is never written to). Then it stops the daemon
# with SIGTERM, which must exit 0 within 10 s, and judges the output with report.sh:
# every test in the allowlist must pass; the whole-binary figure
# "iommufd selftest: P/190 passed (...)" is printed and written to the figure file.
#
# Usage: run.sh --ioasidd PATH [--ioasid-run PATH] [--bin DIR] [--results FILE.json]
#               [--figure FILE.json] [--log FILE] [--allowlist FILE] [-- HARNESS-ARGS]
#   --ioasid-run PATH the launcher both binaries run under, so their fd-returning
#                    commands (CREATE_ACCESS, FAULT_QUEUE_ALLOC) get files (default:
#                    the ioasid-run built beside --ioasidd, examples/ioasid-run)
#   --bin DIR        where build.sh put iommufd and iommufd_fail_nth (default
#                    build/iommufd-selftest; built there if missing)
#   --results FILE   GoogleTest-style JSON, one test per allowlisted entry
#   --figure FILE    the whole-binary figure (JSON)
#   --log FILE       the daemon's log and both binaries' full output (default: a temp
#                    file, kept only if the stage fails)
#   --allowlist FILE default: the allowlist beside this script
#   HARNESS-ARGS     passed to iommufd, e.g. -r iommufd_ioas.no_domain.area (one test);
#                    allowlisted tests outside the selection are then not judged
# Last line: "iommufd-selftest: stage passed" or "iommufd-selftest: stage FAILED";
# exit 0 only when it passed. Needs root (FUSE, mounts, sysctl).
#
# Environment:
#   IOASID_SELFTEST_TIMEOUT      overall limit for iommufd in seconds (default 600; the
#                                harness's own limit is 30 s per test)
#   IOASID_SELFTEST_DEV_TIMEOUT  seconds to wait for the FUSE nodes (default 30)
#   IOASID_SELFTEST_VERBOSE=1    stream the suite's output while it runs
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
readonly SCRIPT_DIR REPO_DIR
readonly HUGEPAGES=64
readonly STOP_TIMEOUT=10
readonly FAIL_NTH_TIMEOUT=300
SUITE_TIMEOUT=${IOASID_SELFTEST_TIMEOUT:-600}
DEV_TIMEOUT=${IOASID_SELFTEST_DEV_TIMEOUT:-30}

IOASIDD=''
IOASID_RUN=''
BIN=$REPO_DIR/build/iommufd-selftest
RESULTS=''
FIGURE=''
LOG=''
ALLOWLIST=$SCRIPT_DIR/allowlist
HARNESS_ARGS=()
TMP=''
DAEMON_PID=''
OLD_HUGEPAGES=''
PROBLEMS=()

log() { echo "iommufd-selftest: $*"; }
die() { log "error: $*"; log "stage FAILED"; exit 1; }

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
    exit 2
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --ioasidd) IOASIDD=${2:?--ioasidd needs a path}; shift 2 ;;
            --ioasid-run) IOASID_RUN=${2:?--ioasid-run needs a path}; shift 2 ;;
            --bin) BIN=${2:?--bin needs a dir}; shift 2 ;;
            --results) RESULTS=${2:?--results needs a path}; shift 2 ;;
            --figure) FIGURE=${2:?--figure needs a path}; shift 2 ;;
            --log) LOG=${2:?--log needs a path}; shift 2 ;;
            --allowlist) ALLOWLIST=${2:?--allowlist needs a path}; shift 2 ;;
            --) shift; HARNESS_ARGS=("$@"); break ;;
            -h|--help) usage ;;
            *) echo "run.sh: unknown argument: $1" >&2; usage ;;
        esac
    done
    [ -n "$IOASIDD" ] || usage
    [ -x "$IOASIDD" ] || die "not an executable file: $IOASIDD"
    [ -n "$IOASID_RUN" ] || IOASID_RUN=$(dirname "$IOASIDD")/../examples/ioasid-run
    [ -x "$IOASID_RUN" ] || die "no ioasid-run at $IOASID_RUN (--ioasid-run)"
    [ -f "$ALLOWLIST" ] || die "no allowlist: $ALLOWLIST"
    [ "$(id -u)" -eq 0 ] || die "needs root (FUSE mount, namespaces, vm.nr_hugepages)"
}

# The hugepage variants map 2 MiB pages (128 MiB for domain_dirty128M_huge).
raise_hugepages() {
    local f=/proc/sys/vm/nr_hugepages now
    [ -w "$f" ] || { log "WARNING: $f is not writable; hugepage tests may fail"; return 0; }
    now=$(cat "$f")
    [ "$now" -lt "$HUGEPAGES" ] || return 0
    OLD_HUGEPAGES=$now
    echo "$HUGEPAGES" >"$f" 2>/dev/null || true
    now=$(cat "$f")
    if [ "$now" -ge "$HUGEPAGES" ]; then
        log "vm.nr_hugepages: $OLD_HUGEPAGES -> $now (restored at exit)"
    else
        log "WARNING: vm.nr_hugepages is $now, not $HUGEPAGES (memory?); hugepage tests may fail"
    fi
}

restore_hugepages() {
    if [ -n "$OLD_HUGEPAGES" ]; then
        echo "$OLD_HUGEPAGES" >/proc/sys/vm/nr_hugepages 2>/dev/null ||
            log "WARNING: could not restore vm.nr_hugepages to $OLD_HUGEPAGES"
        OLD_HUGEPAGES=''
    fi
}

start_daemon() {
    "$IOASIDD" --frontend fuse --fuse "$TMP/fuse" --no-netlink \
        --admin-socket "$TMP/admin.sock" --log-level info \
        >"$TMP/ioasidd.log" 2>&1 </dev/null &
    DAEMON_PID=$!
}

# Bounded wait for the FUSE file system's nodes; notices an early exit.
wait_for_nodes() {
    local i=0
    while [ "$i" -lt $((DEV_TIMEOUT * 10)) ]; do
        if [ -e "$TMP/fuse/iommu" ] || [ -e "$TMP/fuse/ioasid" ]; then return 0; fi
        if ! alive "$DAEMON_PID"; then
            local rc=0
            wait "$DAEMON_PID" || rc=$?
            DAEMON_PID=''
            tail -n 20 "$TMP/ioasidd.log" | sed 's/^/  ioasidd: /'
            die "ioasidd exited with status $rc before its FUSE nodes appeared"
        fi
        sleep 0.1
        i=$((i + 1))
    done
    die "no node in $TMP/fuse within $DEV_TIMEOUT s"
}

# PID is running (not gone, not a zombie waiting to be reaped).
alive() {
    local state
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# SIGTERM, a bounded wait, then the exit status, which must be 0.
stop_daemon() {
    [ -n "$DAEMON_PID" ] || return 0
    local pid=$DAEMON_PID rc=0 i=0
    DAEMON_PID=''
    if ! alive "$pid"; then
        wait "$pid" || rc=$?
        PROBLEMS+=("ioasidd had exited (status $rc) before it was stopped")
        return 0
    fi
    kill -TERM "$pid"
    while alive "$pid" && [ "$i" -lt $((STOP_TIMEOUT * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if alive "$pid"; then
        PROBLEMS+=("ioasidd still running $STOP_TIMEOUT s after SIGTERM (killed)")
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || PROBLEMS+=("ioasidd exit status $rc after SIGTERM (expected 0)")
}

cleanup() {
    set +e
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        sleep 1
        kill -KILL "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    restore_hugepages
    if [ -n "$TMP" ]; then
        mountpoint -q "$TMP/fuse" 2>/dev/null && umount -l "$TMP/fuse"
        rm -rf "$TMP"
    fi
}

# Runs one binary in the namespaces, output to FILE; prints its exit status.
run_binary() {
    local limit=$1 out=$2 node=$3; shift 3
    local rc=0
    if [ "${IOASID_SELFTEST_VERBOSE:-0}" = 1 ]; then
        timeout -k 10 "$limit" "$SCRIPT_DIR/with-dev-iommu.sh" "$node" -- "$@" 2>&1 </dev/null |
            tee "$out" >&2 || rc=${PIPESTATUS[0]}
    else
        timeout -k 10 "$limit" "$SCRIPT_DIR/with-dev-iommu.sh" "$node" -- "$@" \
            >"$out" 2>&1 </dev/null || rc=$?
    fi
    echo "$rc"
}

# A binary's exit status: 0 (all passed) and 1 (some failed) are the harness's
# verdicts, judged from its output; anything else is a problem of the stage.
check_status() {
    local what=$1 rc=$2 limit=$3
    case $rc in
        0|1) ;;
        124|137) PROBLEMS+=("$what did not finish within $limit s (killed)") ;;
        125) PROBLEMS+=("$what: could not set up /dev/iommu in a namespace") ;;
        *) PROBLEMS+=("$what exited with status $rc") ;;
    esac
}

write_log() {
    {
        echo "==== ioasidd $IOASIDD --frontend fuse (log)"
        cat "$TMP/ioasidd.log" 2>/dev/null
        echo "==== iommufd${HARNESS_ARGS[*]:+ ${HARNESS_ARGS[*]}} (output)"
        cat "$TMP/iommufd.tap" 2>/dev/null
        echo "==== iommufd_fail_nth (output)"
        cat "$TMP/fail_nth.tap" 2>/dev/null
    } >"$LOG"
}

main() {
    parse_args "$@"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    if [ ! -x "$BIN/iommufd" ] || [ ! -x "$BIN/iommufd_fail_nth" ]; then
        log "no binaries in $BIN; building them"
        "$SCRIPT_DIR/build.sh" --out "$BIN" || die "build.sh failed"
    fi
    BIN=$(cd "$BIN" && pwd)
    local own_log=0 host_had_iommu=0 start=$SECONDS
    if [ -z "$LOG" ]; then
        LOG=$(mktemp "${TMPDIR:-/tmp}/iommufd-selftest.XXXXXX.log")
        own_log=1
    fi
    [ -e /dev/iommu ] && host_had_iommu=1
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/iommufd-selftest.XXXXXX")
    local version
    version=$(sed -n 's/^version=//p' "$BIN/VERSION" 2>/dev/null || true)
    if grep -q '^pinned=no' "$BIN/VERSION" 2>/dev/null; then
        version+=" (NOT THE PINNED VERSION: see fetch.sh's warning)"
    fi
    log "kernel sources: linux-source-6.12 ${version:-unknown}"

    raise_hugepages
    start_daemon
    wait_for_nodes
    local node=$TMP/fuse/iommu
    if [ ! -e "$node" ]; then
        log "NOTE: $TMP/fuse holds no 'iommu' node: this ioasidd does not serve the iommufd"
        log "      uAPI yet. Running the suite anyway, without /dev/iommu: every test fails in"
        log "      setup (Expected -1 != self->fd)."
        node=none
    fi

    local rc suite_start=$SECONDS
    log "running iommufd${HARNESS_ARGS[*]:+ ${HARNESS_ARGS[*]}} (limit ${SUITE_TIMEOUT} s)"
    rc=$(run_binary "$SUITE_TIMEOUT" "$TMP/iommufd.tap" "$node" "$IOASID_RUN" "$BIN/iommufd" "${HARNESS_ARGS[@]}")
    check_status iommufd "$rc" "$SUITE_TIMEOUT"
    local suite_time=$((SECONDS - suite_start))
    alive "$DAEMON_PID" || PROBLEMS+=("ioasidd died during the suite")
    rc=$(run_binary "$FAIL_NTH_TIMEOUT" "$TMP/fail_nth.tap" "$node" "$IOASID_RUN" "$BIN/iommufd_fail_nth")
    check_status iommufd_fail_nth "$rc" "$FAIL_NTH_TIMEOUT"
    stop_daemon
    restore_hugepages
    if mountpoint -q "$TMP/fuse"; then
        PROBLEMS+=("$TMP/fuse still mounted after ioasidd exited")
        umount -l "$TMP/fuse" || true
    fi
    if [ "$host_had_iommu" -eq 0 ] && [ -e /dev/iommu ]; then
        PROBLEMS+=("the host's /dev/iommu exists after the run (it must never be touched)")
    fi
    write_log

    local report_args=(--tap "$TMP/iommufd.tap" --fail-nth-tap "$TMP/fail_nth.tap"
                       --allowlist "$ALLOWLIST" --version-file "$BIN/VERSION")
    [ -z "$RESULTS" ] || report_args+=(--results "$RESULTS")
    [ -z "$FIGURE" ] || report_args+=(--figure "$FIGURE")
    [ ${#HARNESS_ARGS[@]} -eq 0 ] || report_args+=(--selection)
    local verdict=0
    "$SCRIPT_DIR/report.sh" "${report_args[@]}" || verdict=$?
    [ "$verdict" -le 1 ] || PROBLEMS+=("report.sh failed (status $verdict)")

    log "suite ${suite_time} s, stage $((SECONDS - start)) s"
    local p
    for p in "${PROBLEMS[@]}"; do log "FAILED: $p"; done
    if [ "$verdict" -ne 0 ] || [ ${#PROBLEMS[@]} -gt 0 ]; then
        if [ ${#PROBLEMS[@]} -gt 0 ]; then
            log "---- ioasidd log (last 30 lines) ----"
            tail -n 30 "$TMP/ioasidd.log" 2>/dev/null | sed 's/^/  /'
        fi
        log "full log: $LOG"
        log "stage FAILED"
        exit 1
    fi
    [ "$own_log" -eq 0 ] || rm -f "$LOG"
    log "stage passed"
}

main "$@"
