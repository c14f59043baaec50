#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Debian packages: builds them (packaging/deb/build-debs.sh), runs lintian on them
# and checks what each holds. One test case per check in a GoogleTest-style JSON report
# (scripts/count-results.sh counts it):
#   - build: cpack made the five .deb and a -dbgsym .ddeb for each package with ELF files;
#   - lintian: no error on any package (warnings are printed, docs/ARCHITECTURE.md);
#   - each package's contents: the files it must hold, nothing else's;
#   - the demos are in /usr/libexec/ioasid and /usr/bin holds only the four tools;
#   - every ELF file is stripped, and its debug file (by build id) is in a -dbgsym;
#   - Depends: dpkg-shlibdeps filled them in (ioasidd needs libfuse3-3), the tools and
#     demos need libioasid0 of the same version;
#   - each changelog.Debian.gz starts with the package's version.
# Installing them (apt, Depends from Debian, maintainer scripts) is the VM stage's
# (tests/vm/run-vm-tests.sh --debs).
#
#   tests/package/check-debs.sh BUILD_DIR [REPORT.json]
#
# IOASID_DEBS_PREBUILT=DIR checks the packages already in DIR instead of building them
# (how each check was seen to fail: packages altered by hand).
set -uo pipefail

build=$(cd "${1:?usage: check-debs.sh BUILD_DIR [REPORT.json]}" && pwd)
report=${2:-$build/test-results/packages.json}
root=$(cd "$(dirname "$0")/../.." && pwd)
debs=${IOASID_DEBS_PREBUILT:-$build/debs}
work=$(mktemp -d /tmp/ioasid-debs.XXXXXX)
trap 'rm -rf "$work"' EXIT

cases=()
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
write_report() {
  mkdir -p "$(dirname "$report")"
  printf '%s\n' "${cases[@]}" | jq -s --argjson f "$failures" \
    '{tests: length, failures: $f, errors: 0, name: "AllTests",
      testsuites: [{name: "packages", tests: length, failures: $f, testsuite: .}]}' >"$report"
}

packages=(ioasidd ioasid-tools libioasid0 libioasid-dev ioasid-examples)
with_elf=(ioasidd ioasid-tools libioasid0 ioasid-examples)
tools=(ioasid-info ioasidctl ioasid-run)
demos=(pasid-demo dma-demo mini-vmm dsa-memmove ats-copy iommufd-demo iommufd-fault-demo)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

# ---- build
if { [ -n "${IOASID_DEBS_PREBUILT:-}" ] && echo "prebuilt: $debs" >"$work/build.log"; } ||
   "$root/packaging/deb/build-debs.sh" "$build" >"$work/build.log" 2>&1; then
  grep '^build-debs: ' "$work/build.log"
  missing=()
  for p in "${packages[@]}"; do compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p.deb"); done
  for p in "${with_elf[@]}"; do compgen -G "$debs/${p}-dbgsym_*.ddeb" >/dev/null || missing+=("$p-dbgsym.ddeb"); done
  if [ ${#missing[@]} -eq 0 ]; then
    record "build: cpack made the packages and their -dbgsym" 0
  else
    record "build: cpack made the packages and their -dbgsym" 1 "missing: ${missing[*]}"
  fi
else
  record "build: cpack made the packages and their -dbgsym" 1 "$(tail -20 "$work/build.log")"
  write_report
  exit 1
fi
deb() { compgen -G "$debs/${1}_*.deb" | head -1; }
ddeb() { compgen -G "$debs/${1}-dbgsym_*.ddeb" | head -1; }

# ---- lintian: errors fail, warnings are shown
lintian --tag-display-limit 0 --display-info "$debs"/*.deb "$debs"/*.ddeb >"$work/lintian.log" 2>&1
sed 's/^/  lintian: /' "$work/lintian.log"
errors=$(grep -c '^E: ' "$work/lintian.log")
if [ "$errors" -eq 0 ] && ! grep -q '^internal error\|^lintian: ' "$work/lintian.log"; then
  record "lintian: no errors ($(grep -c '^W: ' "$work/lintian.log") warnings)" 0
else
  record "lintian: no errors" 1 "$(grep -E '^(E: |internal error|lintian: )' "$work/lintian.log" | head -20)"
fi

# ---- contents
for p in "${packages[@]}"; do
  dpkg-deb -c "$(deb "$p")" | awk '{ print $6 }' | sed 's|^\./|/|' >"$work/$p.files"
  mkdir -p "$work/x/$p" && dpkg-deb -x "$(deb "$p")" "$work/x/$p"
  dpkg-deb -e "$(deb "$p")" "$work/x/$p/DEBIAN"
done
expect() {  # package, files...
  local p=$1 f missing=(); shift
  for f in "$@" "/usr/share/doc/$p/copyright" "/usr/share/doc/$p/changelog.Debian.gz"; do
    grep -qxF "$f" "$work/$p.files" || missing+=("$f")
  done
  if [ ${#missing[@]} -eq 0 ]; then record "$p holds its files" 0
  else record "$p holds its files" 1 "missing: ${missing[*]}"; fi
}
man_pages() {  # package -> the man pages of docs/man it ships (see packaging/CMakeLists.txt)
  local page name
  for page in "$root"/docs/man/*.[1-8]; do
    [ -f "$page" ] || continue
    name=$(basename "$page")
    case "$1:${name%.*}" in
      ioasidd:ioasidd) ;;
      ioasid-tools:ioasidd) continue ;;
      ioasid-tools:*) [[ " ${demos[*]} " == *" ${name%.*} "* || $name == *.[347] ]] && continue ;;
      *) continue ;;
    esac
    echo "/usr/share/man/man${name##*.}/$name.gz"
  done
}
expect ioasidd /usr/sbin/ioasidd /lib/systemd/system/ioasidd.service /lib/udev/rules.d/60-ioasid.rules \
  /usr/lib/sysusers.d/ioasid.conf $(man_pages ioasidd)
expect ioasid-tools $(printf '/usr/bin/%s ' "${tools[@]}") $(man_pages ioasid-tools)
expect libioasid0 "/usr/lib/$multiarch/libioasid.so.0"
expect libioasid-dev "/usr/lib/$multiarch/libioasid.so" "/usr/lib/$multiarch/pkgconfig/ioasid.pc" \
  /usr/include/ioasid-cuse/ioasid/client.hpp /usr/include/ioasid-cuse/linux/ioasid.h \
  /usr/include/ioasid-cuse/linux/ioasid_iommu_fd.h
expect ioasid-examples $(printf '/usr/libexec/ioasid/%s ' "${demos[@]}")

# Nothing demo-ish on PATH: /usr/bin holds exactly the tools, no package has /usr/local.
on_path=$(cat "$work"/*.files | grep -E '^/usr/(s?bin|local)/.+[^/]$' | sort | tr '\n' ' ')
want=$( (printf '/usr/bin/%s\n' "${tools[@]}"; echo /usr/sbin/ioasidd) | sort | tr '\n' ' ')
if [ "$on_path" = "$want" ]; then
  record "on PATH: only ioasidd and the tools (the demos are in /usr/libexec/ioasid)" 0
else
  record "on PATH: only ioasidd and the tools (the demos are in /usr/libexec/ioasid)" 1 "found: $on_path"
fi

# The library's runtime package: SONAME, shlibs, ldconfig trigger.
lib=$work/x/libioasid0/usr/lib/$multiarch/libioasid.so.0
soname=$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" = libioasid.so.0 ] && grep -q '^libioasid 0 libioasid0 ' "$work/x/libioasid0/DEBIAN/shlibs" 2>/dev/null &&
   grep -qx 'activate-noawait ldconfig' "$work/x/libioasid0/DEBIAN/triggers" 2>/dev/null; then
  record "libioasid0: SONAME libioasid.so.0, shlibs, ldconfig trigger" 0
else
  record "libioasid0: SONAME libioasid.so.0, shlibs, ldconfig trigger" 1 \
    "SONAME '$soname'; shlibs: $(cat "$work/x/libioasid0/DEBIAN/shlibs" 2>&1)"
fi

# ---- stripped, with the debug symbols in -dbgsym
for p in "${with_elf[@]}"; do
  mkdir -p "$work/dbg/$p" && dpkg-deb -x "$(ddeb "$p")" "$work/dbg/$p" 2>/dev/null
  problems=()
  while IFS= read -r f; do
    file -b "$f" | grep -q '^ELF' || continue
    rel=${f#"$work/x/$p"}
    readelf -S "$f" | grep -q '\.debug_info' && problems+=("$rel has .debug_info")
    readelf -S "$f" | grep -q ' \.symtab' && problems+=("$rel has a .symtab")
    id=$(readelf -n "$f" | sed -n 's/.*Build ID: \([0-9a-f]*\)/\1/p')
    dbg=$work/dbg/$p/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
    if [ -z "$id" ] || ! readelf -S "$dbg" 2>/dev/null | grep -q '\.debug_info'; then
      problems+=("$rel: no debug file for build id '${id}' in $p-dbgsym")
    fi
  done < <(find "$work/x/$p" -path "*/DEBIAN" -prune -o -type f -print)
  if [ ${#problems[@]} -eq 0 ]; then record "$p: ELF files stripped, debug symbols in $p-dbgsym" 0
  else record "$p: ELF files stripped, debug symbols in $p-dbgsym" 1 "${problems[*]}"; fi
done

# ---- Depends
field() { dpkg-deb -f "$(deb "$1")" "$2"; }
version=$(field ioasidd Version)
check_depends() {  # package, pattern (extended regex), what
  local depends
  depends=$(field "$1" Depends)
  if grep -qE "$2" <<<"$depends"; then record "$1 depends on $3" 0
  else record "$1 depends on $3" 1 "Depends: $depends"; fi
}
check_depends ioasidd '(^|, )libfuse3-3 \(>= ' "libfuse3-3 (dpkg-shlibdeps)"
check_depends ioasidd '(^|, )libc6 \(>= ' "libc6 (dpkg-shlibdeps)"
check_depends ioasid-tools "(^|, )libioasid0 \\(= ${version//./\\.}\\)" "libioasid0 (= $version)"
check_depends ioasid-examples "(^|, )libioasid0 \\(= ${version//./\\.}\\)" "libioasid0 (= $version)"
check_depends libioasid-dev "(^|, )libioasid0 \\(= ${version//./\\.}\\)" "libioasid0 (= $version)"

# ---- maintainer scripts and changelogs
scripts_ok=0
for s in postinst prerm postrm; do
  f=$work/x/ioasidd/DEBIAN/$s
  { [ -x "$f" ] && sh -n "$f"; } || scripts_ok=1
done
if [ $scripts_ok -eq 0 ] && grep -q 'deb-systemd-helper' "$work/x/ioasidd/DEBIAN/postinst" &&
   grep -q 'systemd-sysusers' "$work/x/ioasidd/DEBIAN/postinst"; then
  record "ioasidd has its postinst, prerm and postrm" 0
else
  record "ioasidd has its postinst, prerm and postrm" 1 "$(ls -l "$work/x/ioasidd/DEBIAN")"
fi
bad=()
for p in "${packages[@]}"; do
  top=$(zcat "$work/x/$p/usr/share/doc/$p/changelog.Debian.gz" 2>/dev/null | head -1)
  [[ $top == "ioasid-cuse ($(field "$p" Version)) "* ]] || bad+=("$p: '$top'")
done
if [ ${#bad[@]} -eq 0 ]; then record "changelog.Debian.gz names the package version" 0
else record "changelog.Debian.gz names the package version" 1 "${bad[*]}"; fi

write_report
echo "check-debs: ${#cases[@]} checks, $failures failed"
[ "$failures" -eq 0 ]
