#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the kernel's iommufd selftest, unchanged, against the project's own headers:
# `iommufd` (190 tests) and `iommufd_fail_nth` (7 tests), from the sources fetch.sh
# extracts.
#
# The suite includes the mock driver's header by a relative quoted path
# (iommufd_utils.h: "../../../../drivers/iommu/iommufd/iommufd_test.h"), which no -I can
# override. So the build stages its own tree where that path IS the project's
# uapi/iommufd_test/iommufd_test.h; the package's copy is kept aside as
# iommufd_test.h.package, unused. <linux/iommufd.h> comes from the project's uapi/
# (-I uapi), <linux/vfio.h> from the system. The compiler's dependency output is
# checked to prove both headers are the project's. Flags as the kernel's Makefile and
# lib.mk: -Wall -O2 -Wno-unused-function -D_GNU_SOURCE.
#
# Usage: build.sh [--out DIR] [--src DIR]
#   --out DIR  where the binaries (and the staged tree) go
#              (default: build/iommufd-selftest)
#   --src DIR  an extracted source tree (default: what fetch.sh prints)
# Writes DIR/iommufd, DIR/iommufd_fail_nth and DIR/VERSION (the kernel source version,
# whether it is the pinned one, and the sha256 of the two project headers).
#
# Environment: CC (default gcc), CFLAGS_EXTRA (appended, e.g. -g).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
readonly SCRIPT_DIR REPO_DIR
readonly SELFTESTS=tools/testing/selftests
readonly MOCK_HEADER=drivers/iommu/iommufd/iommufd_test.h
readonly PROJECT_UAPI=$REPO_DIR/uapi
readonly PROJECT_MOCK_HEADER=$PROJECT_UAPI/iommufd_test/iommufd_test.h
readonly CFLAGS=(-Wall -O2 -Wno-unused-function -D_GNU_SOURCE)

OUT=$REPO_DIR/build/iommufd-selftest
SRC=''
CC=${CC:-gcc}

log() { echo "iommufd-selftest build: $*" >&2; }
die() { log "error: $*"; exit 1; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --out) OUT=${2:?--out needs a dir}; shift 2 ;;
            --src) SRC=${2:?--src needs a dir}; shift 2 ;;
            -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
            *) die "unknown argument: $1" ;;
        esac
    done
}

# A fresh copy of the sources in OUT/tree, with the project's mock header in place.
stage_tree() {
    local tree=$OUT/tree f
    rm -rf "$tree"
    mkdir -p "$tree/$SELFTESTS/iommu" "$tree/$(dirname "$MOCK_HEADER")"
    for f in kselftest_harness.h kselftest.h \
             iommu/iommufd.c iommu/iommufd_utils.h iommu/iommufd_fail_nth.c; do
        [ -f "$SRC/$SELFTESTS/$f" ] || die "$SRC/$SELFTESTS/$f missing (run fetch.sh)"
        cp "$SRC/$SELFTESTS/$f" "$tree/$SELFTESTS/$f"
    done
    cp "$SRC/$MOCK_HEADER" "$tree/$MOCK_HEADER.package"
    cp "$PROJECT_MOCK_HEADER" "$tree/$MOCK_HEADER"
}

# Compiles one program from the staged tree; its dependency list must name the
# project's two headers and no other iommufd.h or iommufd_test.h.
compile() {
    local prog=$1 dir=$OUT/tree/$SELFTESTS/iommu deps
    deps=$OUT/$prog.d
    # From the source's own dir, like the kernel's make, so the harness prints the
    # same relative file names in its messages.
    # shellcheck disable=SC2086  # CFLAGS_EXTRA is a list of flags
    (cd "$dir" && "$CC" "${CFLAGS[@]}" ${CFLAGS_EXTRA:-} -I "$PROJECT_UAPI" \
        -MD -MF "$deps" "$prog.c" -o "$OUT/$prog") || die "compiling $prog failed"
    # One dependency per line, as absolute paths.
    local files
    files=$(sed -e 's/^[^:]*://' -e 's/\\$//' "$deps" | tr -s ' \t' '\n' | sed '/^$/d' |
        while IFS= read -r f; do
            case $f in /*) ;; *) f=$dir/$f ;; esac
            realpath -m "$f"
        done)
    grep -qx "$(realpath "$PROJECT_UAPI/linux/iommufd.h")" <<<"$files" ||
        die "$prog did not include the project's uapi/linux/iommufd.h"
    grep -qx "$(realpath "$OUT/tree/$MOCK_HEADER")" <<<"$files" ||
        die "$prog did not include the staged $MOCK_HEADER"
    local stray
    stray=$(grep -E '/iommufd(_test)?\.h$' <<<"$files" |
        grep -vx -e "$(realpath "$PROJECT_UAPI/linux/iommufd.h")" \
                 -e "$(realpath "$OUT/tree/$MOCK_HEADER")" || true)
    [ -z "$stray" ] || die "$prog included other iommufd headers: $stray"
}

main() {
    parse_args "$@"
    command -v "$CC" >/dev/null || die "no C compiler $CC (scripts/install-deps.sh)"
    [ -f /usr/include/linux/vfio.h ] || die "no /usr/include/linux/vfio.h (linux-libc-dev)"
    if [ -z "$SRC" ]; then
        SRC=$("$SCRIPT_DIR/fetch.sh" | tail -n 1) || die "fetch.sh failed"
    fi
    SRC=$(cd "$SRC" && pwd)
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    local start=$SECONDS prog stamp
    # Everything the binaries depend on: sources, the project's headers, the system's
    # vfio.h, compiler and flags, and this script.
    stamp=$({
        cat "$SRC/VERSION" "$SRC/SHA256SUMS" 2>/dev/null
        sha256sum "$PROJECT_UAPI/linux/iommufd.h" "$PROJECT_MOCK_HEADER" \
            /usr/include/linux/vfio.h "${BASH_SOURCE[0]}"
        "$CC" --version | head -n 1
        echo "${CFLAGS[*]} ${CFLAGS_EXTRA:-}"
    } | sha256sum | cut -d' ' -f1)
    if [ -x "$OUT/iommufd" ] && [ -x "$OUT/iommufd_fail_nth" ] && [ -f "$OUT/VERSION" ] &&
        [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ]; then
        log "$OUT/iommufd and iommufd_fail_nth are up to date"
        return 0
    fi
    rm -f "$OUT/.stamp"
    stage_tree
    for prog in iommufd iommufd_fail_nth; do
        compile "$prog"
    done
    {
        cat "$SRC/VERSION" 2>/dev/null || echo "version=unknown"
        echo "uapi_iommufd_h_sha256=$(sha256sum "$PROJECT_UAPI/linux/iommufd.h" | cut -d' ' -f1)"
        echo "iommufd_test_h_sha256=$(sha256sum "$PROJECT_MOCK_HEADER" | cut -d' ' -f1)"
    } >"$OUT/VERSION"
    echo "$stamp" >"$OUT/.stamp"
    log "built $OUT/iommufd and $OUT/iommufd_fail_nth" \
        "($(sed -n 's/^version=//p' "$OUT/VERSION"), $((SECONDS - start)) s)"
}

main "$@"
