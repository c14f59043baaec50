#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the Debian packages from a build tree with CPack (packaging/deb/cpack.cmake):
# configures the tree for Debian's layout (prefix /usr, the unit and the udev rule
# under /lib as bookworm's packages ship them), builds what the packages hold (a no-op
# in a tree the test command already built), then runs cpack.
#
#   packaging/deb/build-debs.sh [BUILD_DIR]      (default: build)
#
# The packages land in BUILD_DIR/debs: ioasidd, ioasid-tools, libioasid0,
# libioasid-dev, ioasid-examples (.deb) and their -dbgsym packages (.ddeb).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
jobs=${IOASID_JOBS:-2}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_INSTALL_PREFIX=/usr \
  -DIOASID_SYSTEMD_UNITDIR=/lib/systemd/system \
  -DIOASID_UDEV_RULESDIR=/lib/udev/rules.d \
  -DIOASID_SYSUSERSDIR=/usr/lib/sysusers.d >/dev/null
cmake --build "$build" -j "$jobs" --target ioasidd ioasid_client ioasid-info \
  ioasidctl ioasid-run pasid-demo dma-demo mini-vmm dsa-memmove ats-copy iommufd-demo \
  iommufd-fault-demo packaging_files
echo "build-debs: tree built (${SECONDS}s)"
rm -rf "$build/debs"
(cd "$build" && cpack -G DEB --config CPackConfig.cmake)
echo "build-debs: cpack done (${SECONDS}s)"

# CPack's -dbgsym packages (CMake 3.25) list absolute staging paths in their md5sums
# and have no /usr/share/doc: rewrite them as dh_strip's would be, md5sums relative,
# the debug files 0644, /usr/share/doc/<package>-dbgsym a link to <package>'s.
fix_ddeb() {
  local ddeb=$1 dir pkg
  dir=$(mktemp -d "$build/debs/.ddeb.XXXXXX")
  dpkg-deb -R "$ddeb" "$dir"
  pkg=$(dpkg-deb -f "$ddeb" Package)
  sed -i -E 's#^([0-9a-f]{32})  /.*/'"$pkg"'/#\1  #' "$dir/DEBIAN/md5sums"
  find "$dir/usr" -name '*.debug' -exec chmod 0644 {} +
  mkdir -p "$dir/usr/share/doc"
  ln -s "${pkg%-dbgsym}" "$dir/usr/share/doc/$pkg"
  dpkg-deb --root-owner-group -Zgzip -z1 -b "$dir" "$ddeb" >/dev/null
  rm -rf "$dir"
}
for ddeb in "$build"/debs/*.ddeb; do fix_ddeb "$ddeb"; done
echo "build-debs: -dbgsym fixed (${SECONDS}s)"
ls -1 "$build"/debs/*.deb "$build"/debs/*.ddeb
