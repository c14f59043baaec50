#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fetches the kernel's iommufd selftest sources: Debian's linux-source-6.12, pinned at
# 6.12.118-1~deb12u1 and checked against a pinned sha256, is downloaded with
# apt-get download, and only the six files the suite needs are extracted, keeping
# their paths relative to the kernel tree:
#   tools/testing/selftests/{kselftest_harness.h,kselftest.h}
#   tools/testing/selftests/iommu/{iommufd.c,iommufd_utils.h,iommufd_fail_nth.c}
#   drivers/iommu/iommufd/iommufd_test.h
# Both the .deb and the extracted files are cached (the latter keyed by version), so a
# second run neither downloads nor decompresses anything. They are GPL-2.0 kernel
# files: they live in the git-ignored cache only and are never committed.
#
# If the pinned version is gone from the mirror, the apt candidate of linux-source-6.12
# is used instead, with a loud warning; the version used is recorded in the source
# dir's VERSION file (build.sh and run.sh carry it into their output).
#
# Usage: fetch.sh [--deb FILE]
#   --deb FILE   seed the cache with a local copy of the pinned .deb (checked against
#                the pinned sha256 like a download) instead of downloading it
# Prints the source dir (the root of the extracted tree) as the last line of stdout;
# everything else goes to stderr.
#
# Environment:
#   IOASID_SELFTEST_CACHE  cache dir (default: tests/iommufd-selftest/cache)
#   IOASID_SELFTEST_DEB    same as --deb
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly PKG=linux-source-6.12
readonly PIN=6.12.118-1~deb12u1
readonly PIN_SHA256=896aff3b39299fa0dd36fef4f5db56ab189182e39abbbb1227dafdc7fcfe3fc3
readonly MEMBERS=(
    tools/testing/selftests/kselftest_harness.h
    tools/testing/selftests/kselftest.h
    tools/testing/selftests/iommu/iommufd.c
    tools/testing/selftests/iommu/iommufd_utils.h
    tools/testing/selftests/iommu/iommufd_fail_nth.c
    drivers/iommu/iommufd/iommufd_test.h
)

CACHE_DIR=${IOASID_SELFTEST_CACHE:-$SCRIPT_DIR/cache}
SEED_DEB=${IOASID_SELFTEST_DEB:-}
TMP=''

log() { echo "iommufd-selftest fetch: $*" >&2; }
die() { log "error: $*"; exit 1; }
loud() {
    local line
    echo '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!' >&2
    for line in "$@"; do echo "!!! $line" >&2; done
    echo '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!' >&2
}

run_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --deb) SEED_DEB=${2:?--deb needs a file}; shift 2 ;;
            -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
            *) die "unknown argument: $1" ;;
        esac
    done
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }

deb_path() { echo "$CACHE_DIR/debs/${PKG}_$1_all.deb"; }
src_dir() { echo "$CACHE_DIR/src/$1"; }

# The extracted files of VERSION are complete and still match the sums taken when
# they were extracted.
src_ok() {
    local dir
    dir=$(src_dir "$1")
    [ -f "$dir/complete" ] && (cd "$dir" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1)
}

# The sha256 apt's index lists for PKG=VERSION (empty if apt does not know it).
index_sha256() {
    apt-cache show "$PKG=$1" 2>/dev/null | sed -n 's/^SHA256: //p' | head -n 1
}

candidate() {
    apt-cache policy "$PKG" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '^(none)$' || true
}

# apt-get download PKG=VERSION into TMP; on failure refreshes apt's lists once (they
# may be missing on a fresh machine, or stale) and retries.
apt_download() {
    local version=$1 opts=()
    # As root, apt drops to the _apt user, which cannot write our private tmp dir.
    [ "$(id -u)" -eq 0 ] && opts=(-o APT::Sandbox::User=root)
    rm -f "$TMP"/*.deb
    if (cd "$TMP" && apt-get download "${opts[@]}" "$PKG=$version") >"$TMP/apt.log" 2>&1; then
        return 0
    fi
    log "apt-get download $PKG=$version failed; running apt-get update and retrying"
    run_as_root apt-get update -qq >&2 || die "apt-get update failed"
    (cd "$TMP" && apt-get download "${opts[@]}" "$PKG=$version") >"$TMP/apt.log" 2>&1 || {
        sed 's/^/  apt: /' "$TMP/apt.log" >&2
        return 1
    }
}

# Moves the downloaded (or seeded) FILE into the cache as VERSION's .deb once its
# sha256 is EXPECTED.
cache_deb() {
    local file=$1 version=$2 expected=$3 got
    got=$(sha256 "$file")
    [ "$got" = "$expected" ] ||
        die "sha256 mismatch for $file: got $got, expected $expected (for $PKG $version)"
    mkdir -p "$CACHE_DIR/debs"
    cp "$file" "$(deb_path "$version").part"
    mv "$(deb_path "$version").part" "$(deb_path "$version")"
    log "cached $(deb_path "$version") (sha256 $got)"
}

# Makes sure the pinned .deb is in the cache; returns 1 if it cannot be had.
get_pinned_deb() {
    local deb
    deb=$(deb_path "$PIN")
    if [ -f "$deb" ]; then
        [ "$(sha256 "$deb")" = "$PIN_SHA256" ] && return 0
        log "cached $deb does not match the pinned sha256; fetching it again"
        rm -f "$deb"
    fi
    if [ -n "$SEED_DEB" ]; then
        [ -f "$SEED_DEB" ] || die "no such file: $SEED_DEB"
        log "seeding the cache from $SEED_DEB"
        cache_deb "$SEED_DEB" "$PIN" "$PIN_SHA256"
        return 0
    fi
    log "downloading $PKG=$PIN (~154 MB)"
    local start=$SECONDS
    apt_download "$PIN" || return 1
    log "downloaded in $((SECONDS - start)) s"
    cache_deb "$(ls "$TMP"/*.deb)" "$PIN" "$PIN_SHA256"
}

# The pin is gone: takes apt's candidate, checked against apt's own index. Sets VERSION.
get_candidate_deb() {
    local cand expected
    cand=$(candidate)
    [ -n "$cand" ] || die "apt knows no $PKG at all; cannot fall back"
    loud "THE PINNED $PKG $PIN IS NOT AVAILABLE (not cached, not on the mirror)." \
         "FALLING BACK TO THE APT CANDIDATE $PKG $cand." \
         "Its tests may differ from the pinned ones: results are not comparable." \
         "Seed the cache with the pinned .deb (--deb FILE, or snapshot.debian.org) to restore the pin."
    VERSION=$cand
    src_ok "$cand" && return 0
    if [ ! -f "$(deb_path "$cand")" ]; then
        apt_download "$cand" || die "apt-get download $PKG=$cand failed too"
        expected=$(index_sha256 "$cand")
        [ -n "$expected" ] || die "apt's index lists no SHA256 for $PKG=$cand"
        cache_deb "$(ls "$TMP"/*.deb)" "$cand" "$expected"
    fi
}

# The streaming pipeline: the .deb's data tar, its inner linux-source tarball, xz
# (multi-threaded: the stream has many blocks), and tar taking only MEMBERS. Nothing
# but the wanted files touches the disk.
extract() {
    local version=$1 deb dest top=$PKG m
    deb=$(deb_path "$version")
    dest=$TMP/src
    mkdir -p "$dest"
    local wanted=()
    for m in "${MEMBERS[@]}"; do wanted+=("$top/$m"); done
    log "extracting ${#MEMBERS[@]} files from $(basename "$deb")"
    local start=$SECONDS status
    # No --occurrence: a tar that stopped at the last wanted member would kill the
    # stages before it with SIGPIPE, and dpkg-deb reports that as an error of its own.
    # The members are at ~97% of the stream anyway, so reading to its end costs little,
    # and every stage must then succeed.
    set +e
    dpkg-deb --fsys-tarfile "$deb" |
        tar -xO "./usr/src/$top.tar.xz" |
        xz -T0 -dc |
        tar -x -C "$dest" --strip-components=1 "${wanted[@]}"
    status=("${PIPESTATUS[@]}")
    set -e
    [ "${status[*]}" = "0 0 0 0" ] ||
        die "extracting from $deb failed (statuses of dpkg-deb, tar, xz, tar: ${status[*]})"
    for m in "${MEMBERS[@]}"; do
        [ -s "$dest/$m" ] || die "$m missing from $deb"
    done
    log "extracted in $((SECONDS - start)) s"
    (cd "$dest" && sha256sum "${MEMBERS[@]}" >SHA256SUMS)
    {
        echo "version=$version"
        echo "pinned=$([ "$version" = "$PIN" ] && echo yes || echo no)"
        echo "deb_sha256=$(sha256 "$deb")"
    } >"$dest/VERSION"
    touch "$dest/complete"
    rm -rf "$(src_dir "$version")"
    mkdir -p "$CACHE_DIR/src"
    mv "$dest" "$(src_dir "$version")"
}

cleanup() { if [ -n "$TMP" ]; then rm -rf "$TMP"; fi; }

main() {
    parse_args "$@"
    for t in apt-get apt-cache dpkg-deb tar xz sha256sum flock; do
        command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh installs it)"
    done
    mkdir -p "$CACHE_DIR"
    CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
    # Concurrent runs share the cache: one fetches, the others wait and reuse it.
    exec 9>"$CACHE_DIR/.lock"
    flock 9
    VERSION=$PIN
    if ! src_ok "$PIN"; then
        TMP=$(mktemp -d "$CACHE_DIR/.fetch.XXXXXX")
        trap cleanup EXIT
        if get_pinned_deb; then
            :
        else
            get_candidate_deb
        fi
        src_ok "$VERSION" || extract "$VERSION"
    fi
    [ "$VERSION" = "$PIN" ] || loud "USING $PKG $VERSION, NOT THE PINNED $PIN"
    log "sources of $PKG $VERSION: $(src_dir "$VERSION")"
    src_dir "$VERSION"
}

main "$@"
