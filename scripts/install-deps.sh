#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs every Debian 12 package the build, the tests and the VM stage need.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libfuse3-dev fuse3
  libnl-3-dev libsystemd-dev
  libboost-dev libboost-program-options-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  qemu-system-x86 busybox-static cpio kmod
  clang libclang-rt-14-dev jq
  # the arm64 build check (tests/cross): clang with the cross C++ library's headers
  libstdc++-12-dev-arm64-cross
  # the iommufd selftest stage: xz for the kernel source tarball, mount and unshare
  # (util-linux, essential) for its namespace, linux/vfio.h
  xz-utils mount linux-libc-dev
  # the Debian packages (CPack: dpkg-shlibdeps from dpkg-dev, file, objcopy) and lintian;
  # the VM stage's Debian rootfs (mmdebstrap), packed with zstd
  dpkg-dev file binutils lintian mmdebstrap zstd
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "install-deps: all packages present"; exit 0; }

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "install-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
