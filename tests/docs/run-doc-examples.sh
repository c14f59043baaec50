#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the C examples of a markdown file against a live daemon.
#
#   tests/docs/run-doc-examples.sh DOC HEADER_DIR NODE
#
# Blocks with a main() are linked as programs and run with IOASID_DEV=NODE; the other
# blocks are linked together with doc-examples-driver.c (next to this script), which
# calls their functions in a scenario and checks what the reference says they do.
# Needs a daemon serving NODE, e.g. `ioasidd --frontend fuse --fuse DIR` (NODE=DIR/ioasid).
set -u

if [ $# -ne 3 ]; then
  echo "usage: $0 DOC HEADER_DIR NODE" >&2
  exit 2
fi
doc=$1
headers=$2
node=$3
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
flags=(-std=c11 -Wall -Wextra -Werror -I "$headers")

work=$(mktemp -d "${TMPDIR:-/tmp}/doc-run.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT

awk -v dir="$work" '
  inblock && /^```[[:space:]]*$/ { close(file); inblock = 0; next }
  inblock { print > file; next }
  /^```c[[:space:]]*$/ { inblock = 1; file = sprintf("%s/block-%06d.c", dir, NR); printf "" > file; next }
' "$doc"

failed=0
objects=()
programs=()
for source in "$work"/block-*.c; do
  [ -e "$source" ] || continue
  line=$(basename "$source" .c)
  line=$((10#${line#block-}))
  if grep -q '^int main(' "$source"; then
    if "$cc" "${flags[@]}" "$source" -o "$work/program-$line" 2>"$work/log"; then
      programs+=("$line")
    else
      echo "FAIL: block at line $line does not build" >&2; cat "$work/log" >&2; failed=1
    fi
  else
    if "$cc" "${flags[@]}" -c "$source" -o "$source.o" 2>"$work/log"; then
      objects+=("$source.o")
    else
      echo "FAIL: block at line $line does not compile" >&2; cat "$work/log" >&2; failed=1
    fi
  fi
done

if ! "$cc" "${flags[@]}" -D_GNU_SOURCE "$here/doc-examples-driver.c" "${objects[@]}" -o "$work/driver" 2>"$work/log"; then
  echo "FAIL: the driver does not link with the examples" >&2; cat "$work/log" >&2
  exit 1
fi

for line in "${programs[@]}"; do
  echo "== program from line $line"
  if IOASID_DEV=$node timeout 60 "$work/program-$line"; then
    echo "-- ok"
  else
    echo "-- exit $? (program from line $line)"
    failed=1
  fi
done

echo "== driver"
if IOASID_DEV=$node timeout 120 "$work/driver"; then
  echo "-- ok"
else
  echo "-- driver failed"
  failed=1
fi
exit $failed
