#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every source file of the project names its licence in an SPDX line near its top
# (C, C++, shell, CMake, templates, man pages), and LICENSE holds the texts.
#
#   check-spdx.sh SOURCE_DIR
set -u
root=${1:?usage: check-spdx.sh SOURCE_DIR}
cd "$root" || exit 2
[ -r LICENSE ] || { echo "check-spdx: no LICENSE file"; exit 1; }

# The tracked files when this is a git checkout, else what a tarball holds.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  list() { git ls-files; }
else
  list() { find . -type f -not -path './build*' -not -path './.git/*' | sed 's|^\./||'; }
fi

missing=0 checked=0
while IFS= read -r file; do
  case "$file" in
    *.cpp | *.h | *.hpp | *.c | *.sh | *CMakeLists.txt | *.in | *.[18] | .ci/run) ;;
    *) continue ;;
  esac
  checked=$((checked + 1))
  if ! head -n 3 "$file" | grep -q 'SPDX-License-Identifier: '; then
    echo "check-spdx: $file has no SPDX-License-Identifier line in its first 3 lines"
    missing=$((missing + 1))
  fi
done < <(list)
echo "check-spdx: $checked files, $missing without an SPDX line"
[ "$missing" -eq 0 ] && [ "$checked" -gt 0 ]
