#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Compiles every ```c block of a markdown file as its own translation unit.
#
#   tests/docs/check-doc-examples.sh DOC HEADER_DIR
#
# Each block is written to a temporary file and compiled with
#   ${CC:-cc} -std=c11 -Wall -Wextra -Werror -I HEADER_DIR -c
# A failing block is named by the line of its opening fence in DOC. Exits non-zero when
# any block fails, when a block is not closed, when a ```c fence is indented (it would
# not be checked), or when DOC has no ```c block at all.
set -u

if [ $# -ne 2 ]; then
  echo "usage: $0 DOC HEADER_DIR" >&2
  exit 2
fi
doc=$1
headers=$2
cc=${CC:-cc}
[ -r "$doc" ] || { echo "$0: cannot read $doc" >&2; exit 2; }
[ -d "$headers" ] || { echo "$0: $headers is not a directory" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/doc-examples.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT

# Split the blocks into $work/block-<line>.c; problems go to $work/problems.
awk -v dir="$work" '
  function problem(text) { print text > (dir "/problems") }
  inblock && /^```[[:space:]]*$/ { close(file); inblock = 0; next }
  inblock { print > file; next }
  /^```c[[:space:]]*$/ { inblock = 1; start = NR; file = sprintf("%s/block-%06d.c", dir, NR); printf "" > file; next }
  /^[[:space:]]+```c[[:space:]]*$/ { problem(sprintf("line %d: indented ```c fence (blocks must start at column 0)", NR)) }
  END { if (inblock) problem(sprintf("line %d: ```c block is never closed", start)) }
' "$doc"

failed=0
if [ -s "$work/problems" ]; then
  sed "s|^|$doc: |" "$work/problems" >&2
  failed=1
fi

total=0
bad=0
for source in "$work"/block-*.c; do
  [ -e "$source" ] || break
  total=$((total + 1))
  line=$(basename "$source" .c)
  line=$((10#${line#block-}))
  if ! "$cc" -std=c11 -Wall -Wextra -Werror -I "$headers" -c "$source" -o "$work/block.o" \
      >"$work/log" 2>&1; then
    bad=$((bad + 1))
    echo "FAIL: $doc: the C block at line $line does not compile:" >&2
    # Compiler lines name the temporary file; show them as DOC:LINE instead.
    awk -v doc="$doc" -v base="$line" -v src="$source" '
      index($0, src ":") == 1 {
        rest = substr($0, length(src) + 2)
        split(rest, parts, ":")
        if (parts[1] ~ /^[0-9]+$/) { print doc ":" (base + parts[1]) substr(rest, length(parts[1]) + 1); next }
      }
      { print }
    ' "$work/log" | sed 's/^/    /' >&2
  fi
done

if [ "$total" -eq 0 ]; then
  echo "FAIL: $doc has no \`\`\`c block" >&2
  exit 1
fi
if [ "$bad" -ne 0 ] || [ "$failed" -ne 0 ]; then
  echo "$doc: $bad of $total C blocks failed to compile" >&2
  exit 1
fi
echo "$doc: all $total C blocks compile"
