#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# docs/UAPI.md is the reference for the /dev/ioasid contract; docs/UAPI-REFERENCE.md
# repeats part of it beside its examples. This fails when the two disagree or when
# either disagrees with the header:
#   - the numbered list of generic checks must be the same text in both;
#   - every ioctl's error list (UAPI.md "## Errors of each ioctl", one "### N. NAME"
#     per ioctl; UAPI-REFERENCE.md the list after "Errors" in its "## N. NAME" section)
#     must be the same text in both, whitespace aside;
#   - both docs must name the header's ioctls, with the header's numbers;
#   - each "`_IOWR('i', 1NN, struct x)`, S bytes" line of UAPI-REFERENCE.md must be the
#     header's command and struct size (compiled as _Static_asserts);
#   - every IOASID_* name either doc uses must be in the header.
# With IOASIDD, also every "`--option` ... default N" a doc states (UAPI.md,
# UAPI-REFERENCE.md, ADMIN.md, ... as given) must be what `IOASIDD --help` prints.
#
#   check-doc-agreement.sh UAPI.md UAPI-REFERENCE.md HEADER_DIR [IOASIDD [DOC...]]
set -u
export LC_ALL=C

if [ $# -lt 3 ]; then
  echo "usage: $0 UAPI.md UAPI-REFERENCE.md HEADER_DIR [IOASIDD [DOC...]]" >&2
  exit 2
fi
reference=$1 other=$2 headers=$3
shift 3
ioasidd=${1:-}
[ $# -gt 0 ] && shift
header=$headers/linux/ioasid.h
cc=${CC:-cc}
for file in "$reference" "$other" "$header"; do
  [ -r "$file" ] || { echo "$0: cannot read $file" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/doc-agreement.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "check-doc-agreement: $*" >&2
  failures=$((failures + 1))
}

# The first numbered list of a doc (the generic checks), on one line.
first_numbered_list() {
  awk '/^1\. / { on = 1 } on && /^$/ { exit } on { printf "%s ", $0 }' "$1" | tr -s ' \t' '  '
  echo
}

# "N NAME<TAB>error list on one line" for every ioctl of UAPI.md's errors section.
reference_errors() {
  awk '
    /^## / { in_errors = ($0 == "## Errors of each ioctl") }
    !in_errors { next }
    /^### [0-9]+\. IOASID_[A-Z_]+$/ { flush(); key = ($2 + 0) " " $3; text = ""; started = 0; done = 0; next }
    key == "" || done { next }
    /^$/ { if (started) done = 1; next }
    { started = 1; text = text " " $0 }
    function flush() { if (key != "") print key "\t" text }
    END { flush() }
  ' "$1" | sed -e 's/  */ /g' -e 's/\t /\t/'
}

# The same from UAPI-REFERENCE.md: the list after the "Errors" line of each section.
other_errors() {
  awk '
    /^## / { flush(); key = ""; if ($0 ~ /^## [0-9]+\. IOASID_[A-Z_]+$/) key = ($2 + 0) " " $3; text = ""; state = 0; next }
    key == "" { next }
    state == 0 && /^Errors/ { state = 1; next }
    state == 1 && /^$/ { next }
    state == 1 { state = 2 }
    state == 2 && /^$/ { state = 3; next }
    state == 2 { text = text " " $0 }
    function flush() { if (key != "") print key "\t" text }
    END { flush() }
  ' "$1" | sed -e 's/  */ /g' -e 's/\t /\t/'
}

# 1. The generic checks.
[ "$(first_numbered_list "$reference")" = "$(first_numbered_list "$other")" ] ||
  fail "the generic checks differ: $reference says \"$(first_numbered_list "$reference")\", $other says \"$(first_numbered_list "$other")\""

# 2. The error lists, ioctl by ioctl.
reference_errors "$reference" | sort >"$work/reference"
other_errors "$other" | sort >"$work/other"
# The header's ioctls, "N NAME".
sed -n 's/^#define \(IOASID_[A-Z_]*\) _IO[WR]*(IOASID_TYPE, IOASID_BASE + \([0-9]*\).*/\2 \1/p' "$header" |
  sort >"$work/header"
[ -s "$work/header" ] || fail "found no ioctl in $header"
for doc in reference other; do
  cut -f1 "$work/$doc" | diff -u --label header "$work/header" --label "$doc" - >"$work/diff" ||
    fail "the ioctls of $([ $doc = reference ] && echo "$reference" || echo "$other") are not the header's: $(cat "$work/diff")"
done
while IFS=$'\t' read -r key text; do
  theirs=$(awk -F '\t' -v key="$key" '$1 == key { print $2 }' "$work/other")
  [ "$text" = "$theirs" ] || fail "the errors of $key differ:
    $reference: $text
    $other: $theirs"
  [ -n "$text" ] || fail "$reference gives no errors for $key"
done <"$work/reference"

# 3. Commands and struct sizes against the header, compiled.
awk '
  /^## [0-9]+\. IOASID_[A-Z_]+$/ { name = $3; number = $2 + 0; next }
  name != "" && match($0, /^`_IOW?R?\(.i., [0-9]+(, struct [a-z_]+)?\)`/) {
    spec = substr($0, 2, RLENGTH - 2)
    split(spec, parts, /[(), ]+/)
    if (parts[3] != 100 + number) printf "#error \"%s is number %d in its heading, %s in its command\"\n", name, number, parts[3]
    printf "_Static_assert(%s == %s, \"%s is %s\");\n", name, spec, name, spec
    if ($0 ~ /, [0-9]+ bytes/) {
      size = $0; sub(/.*`, /, "", size); sub(/ bytes.*/, "", size)
      printf "_Static_assert(sizeof(struct %s) == %s, \"struct %s is %s bytes\");\n", parts[5], size, parts[5], size
    }
    name = ""
  }
' "$other" >"$work/sizes.body"
[ "$(grep -c 'IOASID_[A-Z_]* ==' "$work/sizes.body")" -eq "$(wc -l <"$work/header")" ] ||
  fail "$other does not give every ioctl's command line (\`_IOWR('i', ...)\`, S bytes)"
{
  echo '#include <linux/ioasid.h>'
  cat "$work/sizes.body"
} >"$work/sizes.c"
"$cc" -std=c11 -Wall -Wextra -Werror -I "$headers" -c "$work/sizes.c" -o "$work/sizes.o" >"$work/log" 2>&1 ||
  fail "$other's commands or sizes are not the header's: $(grep -E 'error' "$work/log")"

# 4. Every IOASID_* name is the header's (a prefix such as IOASID_FEAT_ aside, and the
#    names a doc's own examples define, and $IOASID_DEV of the examples).
for doc in "$reference" "$other"; do
  own=$(sed -n 's/^#define \(IOASID_[A-Z0-9_]*\).*/\1/p' "$doc")
  for name in $(grep -ohE '\bIOASID_[A-Z0-9_]*[A-Z0-9]\b' "$doc" | sort -u); do
    [ "$name" = IOASID_DEV ] && continue
    echo "$own" | grep -qxF "$name" && continue
    grep -qE "\b$name\b" "$header" || fail "$doc names $name, which $header does not define"
  done
done

# 5. Option defaults a doc states, against the daemon's help ("--fault-queue arg (=256)").
if [ -n "$ioasidd" ]; then
  "$ioasidd" --help | sed -n 's/^ *\(-h \[ \)\{0,1\}\(--[a-z0-9-]*\) [A-Z]* *(=\([^)]*\)).*/\2 \3/p' >"$work/defaults"
  [ -s "$work/defaults" ] || fail "found no defaults in $ioasidd --help"
  for doc in "$reference" "$other" "$@"; do
    # "`--opt`... (default N)", "(`--opt`, default N)", "(`--opt`, N)": the option, then
    # within a few words the number, across line breaks.
    tr '\n' ' ' <"$doc" | tr -s ' ' | grep -oE '`--[a-z0-9-]+`[^`.;]{0,30}\((default )?[0-9]+\)|\(`--[a-z0-9-]+`, (default )?[0-9]+\)' |
      sed -E 's/.*`(--[a-z0-9-]+)`.*[( ]([0-9]+)\)$/\1 \2/' | sort -u |
      while read -r option value; do
        expected=$(awk -v o="$option" '$1 == o { print $2 }' "$work/defaults")
        if [ -z "$expected" ]; then
          echo "$doc says $option defaults to $value; ioasidd --help gives it no default"
        elif [ "$expected" != "$value" ]; then
          echo "$doc says $option defaults to $value; ioasidd --help says $expected"
        fi
      done >>"$work/default-problems"
  done
  if [ -s "$work/default-problems" ]; then
    while read -r line; do fail "$line"; done <"$work/default-problems"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "check-doc-agreement: $failures problem(s)" >&2
  exit 1
fi
echo "check-doc-agreement: $other agrees with $reference ($(wc -l <"$work/reference") error lists) and the header"
