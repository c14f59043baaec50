#!/bin/sh
# SPDX-License-Identifier: MIT
# The man pages against the programs: fails when an option `ioasidd --help` prints has
# no entry in ioasidd.8's OPTIONS, a command ioasidctl's help lists has none in
# ioasidctl.8's COMMANDS, or a page documents one the program no longer has, or
# ioasidd.8 misses a default device or states an option's default other than the
# help's; the same for ioasid-run's options in ioasid-run.1 and ioasid-info's in
# ioasid-info.1 when their paths are given; when an installed PROGRAM named has no page
# PROGRAM.1 or PROGRAM.8, or the uAPI's ioasid.4 is missing; when `ioasidctl monitor
# --help` has an option ioasidctl.8's MONITOR section lacks; and, where groff is
# installed, when a page draws a groff warning.
#   check-man.sh IOASIDD IOASIDCTL MANDIR [IOASID_RUN [IOASID_INFO [PROGRAM...]]]
set -eu
if [ $# -lt 3 ]; then
  echo "usage: $0 IOASIDD IOASIDCTL MANDIR [IOASID_RUN [IOASID_INFO [PROGRAM...]]]" >&2
  exit 2
fi
ioasidd=$1 ioasidctl=$2 mandir=$3 ioasid_run=${4:-} ioasid_info=${5:-}
shift $(($# < 5 ? $# : 5))
programs="$*"
failures=0

fail() {
  echo "check-man: $*" >&2
  failures=$((failures + 1))
}

# The tags of a section's .TP entries (the line after each .TP), roff's \- and font
# escapes removed: ".BI --fuse \" DIR\"", ".B status".
entry_tags() {  # PAGE SECTION
  sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$1" |
    awk -v name="$2" '/^\.SH / { in_section = ($2 == name) } in_section && previous == ".TP" { print } { previous = $0 }'
}

# Every word of `expected` must be in `documented` and the other way round.
compare() {  # WHAT PAGE EXPECTED DOCUMENTED
  for word in $3; do
    echo "$4" | grep -qxF -e "$word" || fail "$2 has no entry for $1 $word"
  done
  for word in $4; do
    echo "$3" | grep -qxF -e "$word" || fail "$2 documents $1 $word, which the program does not have"
  done
}

# The long options a program's --help lists against the OPTIONS entries of its page.
compare_options() {  # PROGRAM PAGE
  local options documented
  options=$("$1" --help | grep -oE -e '^ +(-[a-zA-Z] \[ )?--[a-z0-9-]+' | grep -oE -e '--[a-z0-9-]+$')
  documented=$(entry_tags "$2" OPTIONS | grep -oE -e '(^|[ "])--[a-z0-9-]+' | grep -oE -e '--[a-z0-9-]+')
  [ -n "$options" ] || fail "found no options in $1 --help"
  compare option "$2" "$options" "$documented"
}

page=$mandir/ioasidd.8
compare_options "$ioasidd" "$page"
# The devices served without --device (they change as device models are added).
defaults=$("$ioasidd" --help | tr -s ' \n' '  ' | sed -n 's/.*Without --device:\([a-z0-9 ]*\)(.*/\1/p')
[ -n "$defaults" ] || fail "found no default devices in $ioasidd --help"
for device in $defaults; do
  grep -qx -e "\.B $device" "$page" || fail "$page does not name the default device $device"
done

# Every default `ioasidd --help` prints ("--fault-queue N (=256)") is the entry's
# "Default: 256." (roff macros and escapes removed, font alternations joined).
entry_text() {  # PAGE OPTION
  sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\&//g' "$1" | awk -v option="$2" '
    /^\.(TP|SH|SS)/ { if (in_entry) exit; tagged = ($1 == ".TP"); next }
    tagged { tagged = 0; in_entry = (index($0 " ", option " ") > 0); next }
    !in_entry { next }
    /^\.(B|I|BR|IR|RB|BI|IB)( |$)/ { $1 = ""; line = $0; gsub(/"/, "", line); gsub(/ /, "", line); printf " %s", line; next }
    /^\./ { next }
    { printf " %s", $0 }
  '
}
"$ioasidd" --help | sed -n 's/^ *\(-h \[ \)\{0,1\}\(--[a-z0-9-]*\) [A-Z]* *(=\([^)]*\)).*/\2 \3/p' >"${TMPDIR:-/tmp}/check-man-defaults.$$"
[ -s "${TMPDIR:-/tmp}/check-man-defaults.$$" ] || fail "found no defaults in $ioasidd --help"
while read -r option value; do
  entry_text "$mandir/ioasidd.8" "$option" | grep -qF -e "Default: $value." ||
    fail "$mandir/ioasidd.8 does not say $option defaults to $value, as ioasidd --help does"
done <"${TMPDIR:-/tmp}/check-man-defaults.$$"
rm -f "${TMPDIR:-/tmp}/check-man-defaults.$$"

page=$mandir/ioasidctl.8
commands=$("$ioasidctl" --json help | grep -oE -e '"cmd": *"[^"]+"' | cut -d'"' -f4)
documented=$(entry_tags "$page" COMMANDS | awk '{ print $2 }')
[ -n "$commands" ] || fail "found no commands in $ioasidctl --json help"
compare command "$page" "$commands" "$documented"

if [ -n "$ioasid_run" ]; then
  compare_options "$ioasid_run" "$mandir/ioasid-run.1"
fi
if [ -n "$ioasid_info" ]; then
  compare_options "$ioasid_info" "$mandir/ioasid-info.1"
fi

# The monitor's options (after `ioasidctl monitor`) in ioasidctl.8's MONITOR section.
monitor_options=$("$ioasidctl" monitor --help | grep -oE -e '^ +(-[a-zA-Z] \[ )?--[a-z0-9-]+' | grep -oE -e '--[a-z0-9-]+$')
documented=$(entry_tags "$page" MONITOR | grep -oE -e '(^|[ "])--[a-z0-9-]+' | grep -oE -e '--[a-z0-9-]+')
[ -n "$monitor_options" ] || fail "found no options in $ioasidctl monitor --help"
compare "monitor option" "$page" "$monitor_options" "$documented"

# A page for every installed program, and the device's.
for program in $programs; do
  [ -f "$mandir/$program.1" ] || [ -f "$mandir/$program.8" ] ||
    fail "the installed program $program has no manual page ($mandir/$program.1 or .8)"
done
[ -f "$mandir/ioasid.4" ] || fail "the uAPI has no manual page ($mandir/ioasid.4)"

if command -v groff >/dev/null; then
  for page in "$mandir"/*.[148]; do
    warnings=$(groff -man -ww -z "$page" 2>&1)
    [ -z "$warnings" ] || fail "groff warns about $page: $warnings"
  done
fi

if [ "$failures" -ne 0 ]; then
  echo "check-man: $failures problem(s)" >&2
  exit 1
fi
echo "check-man: every option and command is documented"
