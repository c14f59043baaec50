#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs a build tree into a temporary prefix (cmake --install --prefix) and checks
# what landed there: the programs, libioasid with its headers and pkg-config file, the
# systemd unit, the udev rule, the sysusers.d snippet and the manual pages. Then builds
# a small application against the installed library with pkg-config alone and runs it:
# it opens a node that does not exist and must print the ENOENT error (no daemon needed).
#
#   tests/install/check-install.sh BUILD_DIR [REPORT.json]
#
# Each check is one test case of a GoogleTest-style JSON report (default
# BUILD_DIR/test-results/unit-install.json), so scripts/count-results.sh counts them.
set -uo pipefail

build=$(cd "${1:?usage: check-install.sh BUILD_DIR [REPORT.json]}" && pwd)
report=${2:-$build/test-results/unit-install.json}
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/ioasid-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
# DESTDIR as well as the prefix: directories configured as absolute paths land in
# the temporary tree too, never in the system.
destdir=$work/root
prefix=$destdir$work/prefix

cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
version=$(sed -n 's/^project([^ ]* VERSION \([0-9.]*\).*/\1/p' "$source_dir/CMakeLists.txt")

cases=()    # JSON objects, one per check
failures=0
record() {  # name, ok (0/1), message
  local name=$1 ok=$2 message=${3:-}
  if [ "$ok" -eq 0 ]; then
    echo "ok      $name"
    cases+=("$(jq -cn --arg n "$name" '{name: $n, status: "RUN", result: "COMPLETED"}')")
  else
    echo "FAILED  $name: $message"
    failures=$((failures + 1))
    cases+=("$(jq -cn --arg n "$name" --arg m "$message" \
      '{name: $n, status: "RUN", result: "COMPLETED", failures: [{failure: $m, type: ""}]}')")
  fi
}
installed() {  # a configured directory or file: absolute, or relative to the prefix
  case $1 in /*) echo "$destdir$1" ;; *) echo "$prefix/$1" ;; esac
}
check_file() {  # a path, absolute or relative to the prefix
  local path
  path=$(installed "$1")
  if [ -f "$path" ]; then record "installs $1" 0; else record "installs $1" 1 "$path is missing"; fi
}
write_report() {
  mkdir -p "$(dirname "$report")"
  printf '%s\n' "${cases[@]}" | jq -s --argjson f "$failures" \
    '{tests: length, failures: $f, errors: 0, name: "AllTests",
      testsuites: [{name: "install", tests: length, failures: $f, testsuite: .}]}' >"$report"
}

# ---- cmake --install
if DESTDIR=$destdir cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" 2>&1; then
  record "cmake --install" 0
else
  record "cmake --install" 1 "$(tail -20 "$work/install.log")"
  write_report
  exit 1
fi

# GNUInstallDirs picks lib or lib/<multiarch>; the pkg-config file says which.
pc=$(find "$prefix" -name ioasid.pc -path '*/pkgconfig/*' | head -1)
if [ -z "$pc" ]; then
  record "installs ioasid.pc" 1 "no pkgconfig/ioasid.pc under $prefix"
  write_report
  exit 1
fi
libdir=$(dirname "$(dirname "$pc")")
libdir_rel=${libdir#"$prefix"/}
record "installs ioasid.pc ($libdir_rel/pkgconfig)" 0

# ---- the files
for program in ioasid-info ioasidctl ioasid-run; do
  check_file "bin/$program"
done
# The demos are not commands on PATH: IOASID_EXAMPLESDIR (libexec/ioasid).
examples=$(cache_value IOASID_EXAMPLESDIR)
for program in pasid-demo dma-demo mini-vmm dsa-memmove ats-copy iommufd-demo iommufd-fault-demo; do
  check_file "$examples/$program"
  if [ -e "$prefix/bin/$program" ]; then
    record "leaves $program out of bin" 1 "bin/$program was installed"
  fi
done
check_file sbin/ioasidd
check_file "$libdir_rel/libioasid.so"
check_file "$libdir_rel/libioasid.so.0"
check_file "$libdir_rel/libioasid.so.$version"
check_file include/ioasid-cuse/ioasid/client.hpp
check_file include/ioasid-cuse/linux/ioasid.h
check_file include/ioasid-cuse/linux/ioasid_iommu_fd.h
if [ -e "$prefix/include/linux/ioasid.h" ]; then
  record "leaves include/linux to the kernel headers" 1 "include/linux/ioasid.h was installed"
else
  record "leaves include/linux to the kernel headers" 0
fi
unit=$(cache_value IOASID_SYSTEMD_UNITDIR)/ioasidd.service
rule=$(cache_value IOASID_UDEV_RULESDIR)/60-ioasid.rules
sysusers=$(cache_value IOASID_SYSUSERSDIR)/ioasid.conf
check_file "$unit"
check_file "$rule"
check_file "$sysusers"
for page in "$source_dir"/docs/man/*.[148]; do
  [ -f "$page" ] || continue
  name=$(basename "$page")
  check_file "share/man/man${name##*.}/$name.gz"
done
# The FILES sections name this install's own files: each path there that is not the
# running system's (/dev, /run, /etc, the daemon's runtime places) was installed.
mandir=$(cache_value CMAKE_INSTALL_MANDIR)
mandir=${mandir:-share/man}  # GNUInstallDirs' default when the cache leaves it empty
# A path under the prefix the tree was configured for may be under this install's prefix.
configured_prefix=$(cache_value CMAKE_INSTALL_PREFIX)
for page in "$(installed "$mandir")"/man[148]/*; do
  [ -f "$page" ] || continue
  files=$(zcat -f "$page" | sed -e 's/\\-/-/g' | awk '/^\.SH / { in_files = ($2 == "FILES") } in_files && /^\.I / { print $2 }')
  for path in $files; do
    case $path in /dev/* | /run/* | /etc/* | /proc/* | /sys/*) continue ;; esac
    # Where an absolute install directory put it, or under this install's prefix.
    at=$destdir$path
    case $path in "$configured_prefix"/*) [ -e "$at" ] || at=$prefix/${path#"$configured_prefix"/} ;; esac
    if [ -e "$at" ]; then
      record "$(basename "$page") FILES names $path, which is installed" 0
    else
      record "$(basename "$page") FILES names $path, which is installed" 1 "$at is missing"
    fi
  done
done

# ---- what the system files say
group=$(cache_value IOASID_GROUP)
sbindir=$(cache_value CMAKE_INSTALL_SBINDIR)
[[ $sbindir == /* ]] || sbindir=$(cache_value CMAKE_INSTALL_PREFIX)/$sbindir
unit=$(installed "$unit")
if grep -qxF "ExecStart=$sbindir/ioasidd \$IOASIDD_OPTIONS" "$unit" 2>/dev/null &&
   grep -qxF "Restart=on-failure" "$unit"; then
  record "ioasidd.service starts $sbindir/ioasidd" 0
else
  record "ioasidd.service starts $sbindir/ioasidd" 1 "$(grep -E '^(ExecStart|Restart)=' "$unit" 2>&1)"
fi
# systemd-analyze verify parses the unit as systemd would load it; a bad setting is only
# a warning to it ("ignoring"), so any output fails the check too. ExecStart must name a
# program that exists: the installed daemon, and Documentation= the installed man page.
verify_unit() {  # unit file; prints what is wrong, fails if anything is
  local dir output
  dir=$(mktemp -d "$work/verify.XXXXXX")
  sed "s|^ExecStart=$sbindir/ioasidd |ExecStart=$(installed "$(cache_value CMAKE_INSTALL_SBINDIR)")/ioasidd |" \
    "$1" >"$dir/ioasidd.service"
  output=$(MANPATH=$prefix/share/man SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$dir/ioasidd.service" 2>&1) &&
    [ -z "$output" ] || { echo "${output:-systemd-analyze verify failed}"; return 1; }
}
if ! command -v systemd-analyze >/dev/null; then
  record "systemd-analyze verify ioasidd.service" 1 "systemd-analyze is missing (Debian: systemd)"
elif message=$(verify_unit "$unit"); then
  record "systemd-analyze verify ioasidd.service" 0
  # The check can fail: a misspelt setting and a missing program are both caught.
  sed 's/^Type=notify$/Type=notfy/' "$unit" >"$work/broken-type.service"
  sed "s|^ExecStart=$sbindir/ioasidd |ExecStart=$sbindir/ioasidd-missing |" "$unit" >"$work/broken-exec.service"
  if ! grep -qx "Type=notify" "$unit"; then
    record "systemd-analyze verify refuses a broken unit" 1 "ioasidd.service has no Type=notify line"
  elif verify_unit "$work/broken-type.service" >/dev/null || verify_unit "$work/broken-exec.service" >/dev/null; then
    record "systemd-analyze verify refuses a broken unit" 1 "Type=notfy or a missing ExecStart program passed"
  else
    record "systemd-analyze verify refuses a broken unit" 0
  fi
else
  record "systemd-analyze verify ioasidd.service" 1 "$message"
fi
for setting in Type=notify NotifyAccess=main RuntimeDirectory=ioasidd; do
  if grep -qxF "$setting" "$unit"; then record "ioasidd.service: $setting" 0
  else record "ioasidd.service: $setting" 1 "$(grep -E "^${setting%%=*}=" "$unit" || echo "no ${setting%%=*}=")"; fi
done
rule=$(installed "$rule")
if grep -qxF "SUBSYSTEM==\"cuse\", KERNEL==\"ioasid\", GROUP=\"$group\", MODE=\"0660\"" "$rule" 2>/dev/null; then
  record "60-ioasid.rules gives /dev/ioasid to group $group" 0
else
  record "60-ioasid.rules gives /dev/ioasid to group $group" 1 "$(grep -v '^#' "$rule" 2>&1)"
fi
sysusers=$(installed "$sysusers")
if grep -qxF "g $group -" "$sysusers" 2>/dev/null; then
  record "sysusers.d creates group $group" 0
else
  record "sysusers.d creates group $group" 1 "$(cat "$sysusers" 2>&1)"
fi

# ---- an application built against the installed library with pkg-config alone
export PKG_CONFIG_PATH=$libdir/pkgconfig
if flags=$(pkg-config --cflags --libs ioasid 2>&1) && [[ "$flags" == *"-lioasid"* ]] && [ "$(pkg-config --modversion ioasid)" = "$version" ]; then
  record "pkg-config --cflags --libs ioasid" 0
else
  record "pkg-config --cflags --libs ioasid" 1 "$flags"
fi

cat >"$work/app.cpp" <<'EOF'
// An application of libioasid: opens a node, reports the error.
#include <ioasid/client.hpp>
#include <linux/ioasid.h>

#include <cerrno>
#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto file = ioasid::client::File::open(argv[1]);
  if (file) {
    std::printf("unexpectedly opened %s\n", file->path().c_str());
    return 1;
  }
  std::printf("%s\n", file.error().what.c_str());
  const ioasid_dsa_desc copy = ioasid::client::dsa::memmove(0x2000, 0x1000, 64);
  return file.error().code == ENOENT && copy.xfer_size == 64 ? 0 : 1;
}
EOF
read -ra pc_flags <<<"$flags"
sanitize=()
# shellcheck disable=SC2054  # one option whose value has a comma
case "$(cache_value IOASID_SANITIZE)" in
  address) sanitize=(-fsanitize=address,undefined) ;;
  thread) sanitize=(-fsanitize=thread) ;;
esac
compiler=$(cache_value CMAKE_CXX_COMPILER)
if "${compiler:-c++}" -std=c++20 -Wall -Wextra -Werror "${sanitize[@]}" -o "$work/app" "$work/app.cpp" \
     "${pc_flags[@]}" >"$work/compile.log" 2>&1; then
  record "an application compiles and links with pkg-config" 0
else
  record "an application compiles and links with pkg-config" 1 "$(head -20 "$work/compile.log")"
fi

# Without C++20 the header says so first, in an #error naming the flag.
echo '#include <ioasid/client.hpp>' >"$work/old.cpp"
"${compiler:-c++}" -std=c++17 -fsyntax-only "$work/old.cpp" "${pc_flags[@]}" >"$work/old.log" 2>&1
status=$?
first_error=$(grep -m1 'error' "$work/old.log")
if [ $status -ne 0 ] && [[ "$first_error" == *"#error"*"needs C++20: compile with -std=c++20"* ]]; then
  record "the header built without -std=c++20 says it needs C++20" 0
else
  record "the header built without -std=c++20 says it needs C++20" 1 "exit $status: $(head -5 "$work/old.log")"
fi

missing_node=$work/no-such-dir/ioasid
if [ -x "$work/app" ]; then
  output=$(LD_LIBRARY_PATH=$libdir "$work/app" "$missing_node" 2>&1)
  status=$?
  if [ $status -eq 0 ] && [[ "$output" == "open $missing_node: No such file or directory"* ]]; then
    record "the application runs on the installed libioasid.so and reports ENOENT" 0
  else
    record "the application runs on the installed libioasid.so and reports ENOENT" 1 "exit $status: $output"
  fi
  resolved=$(LD_LIBRARY_PATH=$libdir ldd "$work/app" | awk '/libioasid\.so/ {print $3}')
  if [ "$resolved" = "$libdir/libioasid.so.0" ]; then
    record "the application loads libioasid.so.0 from the prefix" 0
  else
    record "the application loads libioasid.so.0 from the prefix" 1 "ldd: ${resolved:-not found}"
  fi
fi

# The installed examples find the library by themselves (RUNPATH $ORIGIN/../lib...).
output=$(env -u LD_LIBRARY_PATH "$prefix/bin/ioasid-info" --dev "$missing_node" 2>&1)
status=$?
if [ $status -eq 1 ] && [[ "$output" == *"open $missing_node: No such file or directory"* ]]; then
  record "installed ioasid-info runs and reports ENOENT" 0
else
  record "installed ioasid-info runs and reports ENOENT" 1 "exit $status: $output"
fi

# The installed iommufd-fault-demo (the uAPI headers alone, no library) knows its version
# and names the node it cannot open.
output=$("$(installed "$examples")/iommufd-fault-demo" --version 2>&1; "$(installed "$examples")/iommufd-fault-demo" --dev "$missing_node" 2>&1)
status=$?
if [ $status -eq 1 ] && [[ "$output" == "iommufd-fault-demo $version"$'\n'*"cannot open $missing_node: No such file or directory"* ]]; then
  record "installed iommufd-fault-demo runs and reports ENOENT" 0
else
  record "installed iommufd-fault-demo runs and reports ENOENT" 1 "exit $status: $output"
fi

# Every installed program prints "PROGRAM VERSION" for --version and exits 0.
for program in "$prefix"/bin/* "$(installed "$(cache_value CMAKE_INSTALL_SBINDIR)")"/* "$(installed "$examples")"/*; do
  name=$(basename "$program")
  output=$(env -u LD_LIBRARY_PATH "$program" --version 2>&1)
  status=$?
  if [ $status -eq 0 ] && [ "$output" = "$name $version" ]; then
    record "$name --version" 0
  else
    record "$name --version" 1 "exit $status: $output"
  fi
done

write_report
echo "check-install: ${#cases[@]} checks, $failures failed"
[ "$failures" -eq 0 ]
