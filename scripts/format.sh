#!/usr/bin/env bash
# The C++ tree's layout, by clang-format (Debian 12's clang-format 14; style in .clang-format).
# Usage: scripts/format.sh          reformats every C++ file in place
#        scripts/format.sh --check  lists the files that differ and exits 1 if any does (test command)
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files 'src/*.cpp' 'src/*.h' 'tools/*.cpp' 'tools/*.h' 'tests/*.cpp' 'tests/*.h' 2>/dev/null ||
  find src tools tests \( -name '*.cpp' -o -name '*.h' \) -print)
if [ "${1:-}" = "--check" ]; then
  bad=0
  for f in "${files[@]}"; do
    if ! clang-format --style=file "$f" | cmp -s - "$f"; then echo "format: $f differs from clang-format"; bad=1; fi
  done
  if [ "$bad" = 1 ]; then echo "format: run scripts/format.sh to fix"; exit 1; fi
  echo "format: ${#files[@]} C++ files follow .clang-format"
else
  clang-format --style=file -i "${files[@]}"
fi
