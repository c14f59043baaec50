#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs a command that opens /dev/iommu against a FUSE node, without touching the
# host's /dev.
#
# The command runs in private mount and PID namespaces. There, /dev is an overlay whose
# lower layer is the host's /dev (so /dev/null, /dev/urandom, /dev/fd, ... work as
# usual, and the host's /dev/pts and /dev/shm are bound back on top), and whose upper
# layer is a tmpfs that only this namespace sees: /dev/iommu is created there and the
# node is bind-mounted onto it (and NODE-fd, its companion, onto /dev/iommu-fd). Nothing is ever written to the host's /dev, so nothing
# can be left behind, even after a SIGKILL. A host /dev/iommu (a real kernel iommufd)
# is hidden. The PID namespace has /proc remounted (the fail_nth tests write
# /proc/self/task/<tid>/fail-nth) and means that when the command's process dies, every
# process it left behind (the harness's per-test children) is killed with it; and when
# this script is killed, so is the command (--kill-child). The command is not the
# namespace's PID 1 (a shell is), so it behaves as on a host.
#
# Usage: with-dev-iommu.sh NODE -- COMMAND [ARG]...
#   NODE  the file to serve as /dev/iommu, or "none": no /dev/iommu at all
# Exit status: the command's. Needs root (mounts).
set -euo pipefail

readonly INNER_FLAG=--inner-namespace

die() { echo "with-dev-iommu: error: $*" >&2; exit 125; }

# Inside the namespaces: SCRATCH is an empty host dir to mount the tmpfs on.
inner() {
    local scratch=$1 node=$2; shift 3
    mount -t tmpfs -o mode=0700,size=16m tmpfs "$scratch" || die "mount tmpfs on $scratch"
    mkdir "$scratch/upper" "$scratch/work" "$scratch/host-dev"
    mount --rbind /dev "$scratch/host-dev" || die "bind /dev"
    # The mounts below the host's /dev (pts, shm, ...): an overlay only sees the file
    # system at /dev itself, so they are bound back afterwards, outermost first.
    local subs=() target done_target skip
    while IFS= read -r target; do
        skip=0
        for done_target in "${subs[@]}"; do
            case $target in "$done_target"/*|"$done_target") skip=1 ;; esac
        done
        [ "$skip" -eq 1 ] || subs+=("$target")
    done < <(awk '$5 ~ /^\/dev\// { print $5 }' /proc/self/mountinfo | sort -u)
    mount -t overlay overlay \
        -o "lowerdir=/dev,upperdir=$scratch/upper,workdir=$scratch/work" /dev ||
        die "mount an overlay on /dev"
    for target in "${subs[@]}"; do
        [ -d "$target" ] || continue
        mount --rbind "$scratch/host-dev${target#/dev}" "$target" || die "bind $target"
    done
    # The namespace's /dev/iommu: the node, or none at all (hiding a host one).
    rm -f /dev/iommu /dev/iommu-fd
    if [ "$node" != none ]; then
        : >/dev/iommu
        mount --bind "$node" /dev/iommu || die "bind $node onto /dev/iommu"
        # Its companion node (iommufd commands that hand out files), when served.
        if [ -e "$node-fd" ]; then
            : >/dev/iommu-fd
            mount --bind "$node-fd" /dev/iommu-fd || die "bind $node-fd onto /dev/iommu-fd"
        fi
    fi
    # The overlay's own scaffolding is not the command's business.
    umount -l "$scratch/host-dev" 2>/dev/null || true
    # Not exec: this shell stays the namespace's init (PID 1, reaping orphans), so the
    # command runs as an ordinary process, as it would on a host.
    local rc=0
    "$@" || rc=$?
    exit "$rc"
}

main() {
    if [ "${1:-}" = "$INNER_FLAG" ]; then
        shift
        inner "$@"
    fi
    if [ $# -lt 3 ] || [ "$2" != -- ]; then
        awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
        exit 2
    fi
    local node=$1
    [ "$(id -u)" -eq 0 ] || die "needs root (mounts)"
    if [ "$node" != none ]; then
        [ -e "$node" ] || die "no such node: $node"
        node=$(realpath "$node")
    fi
    command -v unshare >/dev/null || die "unshare is missing (util-linux)"
    local scratch rc=0
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/with-dev-iommu.XXXXXX")
    # The tmpfs on the scratch dir lives in the namespace only: the host keeps an
    # empty dir, removed here.
    trap 'rmdir "$scratch" 2>/dev/null || true' EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    unshare --mount --propagation private --pid --fork --kill-child --mount-proc \
        "${BASH_SOURCE[0]}" "$INNER_FLAG" "$scratch" "$node" -- "${@:3}" || rc=$?
    exit "$rc"
}

main "$@"
