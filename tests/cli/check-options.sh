#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every ioasidd option refuses bad values alike: exit 2, one line
# "ioasidd: --OPTION: what is wrong", then "Try 'ioasidd --help'.", and nothing
# made on the way (no directory, no mount, no socket). And NO_COLOR is honoured.
#
#   tests/cli/check-options.sh IOASIDD
set -uo pipefail

ioasidd=${1:?usage: check-options.sh IOASIDD}
work=$(mktemp -d /tmp/ioasid-cli.XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
checks=0

# OPTION VALUE...: each value alone must be refused, naming OPTION. The paths the daemon
# would create are under $work/made, which must not appear.
refuse() {
  local option=$1 value args output status first
  shift
  for value in "$@"; do
    checks=$((checks + 1))
    args=("$option=$value")
    [ "$option" = --fuse ] || args+=(--fuse "$work/made/fuse")
    [ "$option" = --admin-socket ] || args+=(--admin-socket "$work/made/admin.sock")
    args+=(--frontend fuse --no-netlink)
    [ "$option" = --no-netlink ] && args=("$option=$value" --fuse "$work/made/fuse" --admin-socket "$work/made/admin.sock")
    output=$(timeout 20 "$ioasidd" "${args[@]}" 2>&1 </dev/null)
    status=$?
    first=${output%%$'\n'*}
    if [ $status -ne 2 ] || [[ "$first" != "ioasidd: $option: "* ]] ||
       [ "$output" != "$first"$'\n'"Try 'ioasidd --help'." ] || [ -e "$work/made" ] ||
       grep -qF " $work/" /proc/self/mountinfo; then
      echo "FAILED  $option '$value': exit $status: $output"
      [ -e "$work/made" ] && echo "        left behind: $(find "$work/made")"
      failures=$((failures + 1))
      rm -rf "$work/made"
    else
      echo "ok      $option '$value': $first"
    fi
  done
}

numbers=(-1 abc 12abc 99999999999999999999 "" " 1" 0x10)
refuse --threads "${numbers[@]}" 0 65
refuse --workers "${numbers[@]}" 0 65
refuse --pin-limit "${numbers[@]}" 1073741825 18446744073709551615
refuse --max-files-per-user "${numbers[@]}" 65537
refuse --max-maps-per-user "${numbers[@]}" 1048577
refuse --max-ioasids-per-user "${numbers[@]}" 1048577
refuse --pasid-quota "${numbers[@]}" 0 1048576
refuse --pasid-bits "${numbers[@]}" 0 21
refuse --addr-width "${numbers[@]}" 0 47 50 58
refuse --fault-queue "${numbers[@]}" 0 1 65537
refuse --page-timeout "${numbers[@]}" 0 3600001
refuse --ats-timeout "${numbers[@]}" 0 60001
refuse --netlink-group "${numbers[@]}" 33
refuse --node-mode -1 abc 12abc 99999999999999999999 "" 8 0o660 17777
refuse --frontend "" abc CUSE
refuse --serve "" abc ioasid,
refuse --log-level "" verbose INFO
refuse --devname "" a/b
refuse --iommu-devname "" a/b
refuse --fuse ""
refuse --bind-node ""
refuse --bind-iommu-node ""
refuse --admin-socket "" "$work/made/$(printf 'x%.0s' {1..120})"
refuse --log-file ""
refuse --node-group no-such-group-ioasid
refuse --admin-group no-such-group-ioasid
refuse --device "" bogus "dma,name=x"
refuse --no-netlink 1

# Boost's own errors, in the same words.
expect() {  # EXPECTED-FIRST-LINE ARG...
  local expected=$1 output status
  shift
  checks=$((checks + 1))
  output=$(timeout 20 "$ioasidd" "$@" --fuse "$work/made/fuse" --admin-socket "$work/made/admin.sock" 2>&1 </dev/null)
  status=$?
  if [ $status -ne 2 ] || [ "$output" != "$expected"$'\n'"Try 'ioasidd --help'." ] || [ -e "$work/made" ]; then
    echo "FAILED  $*: exit $status: $output"
    failures=$((failures + 1))
    rm -rf "$work/made"
  else
    echo "ok      $*: $expected"
  fi
}
expect "ioasidd: --no-such-option: unknown option" --no-such-option
expect "ioasidd: --threads: given more than once" --threads 2 --threads 3
expect "ioasidd: takes no arguments" extra
checks=$((checks + 1))
output=$("$ioasidd" --threads 2>&1)
if [ $? -ne 2 ] || [ "$output" != "ioasidd: --threads: needs a value"$'\n'"Try 'ioasidd --help'." ]; then
  echo "FAILED  --threads without a value: $output"
  failures=$((failures + 1))
else
  echo "ok      --threads without a value"
fi

# NO_COLOR (https://no-color.org): set and not empty, the log on a terminal has no
# colour; empty, it has. A start that fails at once (no directory can be made in /proc)
# logs one error; script(1) gives it a terminal.
if command -v script >/dev/null; then
  has_colour() {  # NO_COLOR-VALUE
    local log
    log=$(NO_COLOR=$1 script -qec "'$ioasidd' --frontend fuse --fuse /proc/ioasid-none/fuse --admin-socket none \
            --no-netlink" /dev/null 2>&1)
    [[ "$log" == *$'\033['* ]]
  }
  for value in 1 "" ; do
    checks=$((checks + 1))
    if has_colour "$value"; then coloured=yes; else coloured=no; fi
    if { [ -n "$value" ] && [ $coloured = yes ]; } || { [ -z "$value" ] && [ $coloured = no ]; }; then
      echo "FAILED  NO_COLOR='$value': colour $coloured"
      failures=$((failures + 1))
    else
      echo "ok      NO_COLOR='$value': colour $coloured"
    fi
  done
fi

echo "check-options: $checks checks, $failures failed"
[ "$failures" -eq 0 ]
