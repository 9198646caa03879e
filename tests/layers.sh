#!/bin/sh
# layers.sh - the include-direction check: layers only point down.
#
#   sh tests/layers.sh ROOT        check the tree at ROOT (0: clean, 1: violations)
#   sh tests/layers.sh --selftest  check that a tree with violations fails
#
# Every `#include "..."` of the library and the command line is resolved as
# the compiler does (beside the including file, then ROOT/include and ROOT)
# and both files are mapped to their layer, lowest first:
#   support  ir/support/           arena, diagnostics, the counter-based RNG
#   ir       ir/                   the tensor graph
#   frontend frontend/  passes passes/  codegen codegen/  runtime runtime/
#   api      api.c, include/       the embedding API
#   tools    tools/                the command line
# A file may include a header of its own layer or of a layer below it, except
# that codegen never includes frontend/ and the runtime never frontend/ or
# passes/.  Each violation is reported as FILE:LINE with both layers; an
# include that resolves to no file of the tree is a violation too, so a
# moved header cannot slip past the check.
set -u

# layer PATH (relative to ROOT) -> "name rank", or nothing outside the layers
layer() {
  case $1 in
    ir/support/*) echo "support 0" ;;
    ir/*) echo "ir 1" ;;
    frontend/*) echo "frontend 2" ;;
    passes/*) echo "passes 3" ;;
    codegen/*) echo "codegen 4" ;;
    runtime/*) echo "runtime 5" ;;
    api.c | include/*) echo "api 6" ;;
    tools/*) echo "tools 7" ;;
  esac
}

# allowed FROM TO (layer names, TO below or equal FROM): the forbidden neighbours
allowed() {
  case $1:$2 in
    codegen:frontend | runtime:frontend | runtime:passes) return 1 ;;
  esac
  return 0
}

check() {
  root=$(cd "$1" && pwd -P) || exit 2
  bad=0
  files=$(cd "$root" && find ir frontend passes codegen runtime include tools api.c \
            \( -name '*.c' -o -name '*.h' -o -name '*.def' \) -type f 2>/dev/null | sort)
  [ -n "$files" ] || { echo "layers.sh: no sources under $root" >&2; exit 2; }
  for f in $files; do
    set -- $(layer "$f")
    fl=$1 fr=$2
    # "LINE HEADER" for every quoted include
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$root/$f" |
      sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1 \2/' > "$tmp/inc"
    while read -r line inc; do
      h=""
      for dir in "$(dirname "$root/$f")" "$root/include" "$root"; do
        if [ -f "$dir/$inc" ]; then
          h=$(realpath --relative-to="$root" "$dir/$inc")
          break
        fi
      done
      if [ -z "$h" ]; then
        echo "$f:$line: includes \"$inc\", which is no file of the tree"
        bad=1
        continue
      fi
      hl=$(layer "$h")
      if [ -z "$hl" ]; then
        echo "$f:$line: $fl includes $h, which belongs to no layer"
        bad=1
        continue
      fi
      set -- $hl
      if [ "$2" -gt "$fr" ]; then
        echo "$f:$line: $fl includes $h of $1, a layer above it"
        bad=1
      elif ! allowed "$fl" "$1"; then
        echo "$f:$line: $fl includes $h of $1 (codegen never includes frontend/, the runtime never frontend/ or passes/)"
        bad=1
      fi
    done < "$tmp/inc"
  done
  return $bad
}

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

if [ "${1:-}" = --selftest ]; then
  t=$tmp/tree
  mkdir -p "$t/ir/support" "$t/frontend" "$t/codegen" "$t/runtime" "$t/passes" "$t/tools"
  echo '#include <stdint.h>' > "$t/ir/support/support.h"
  printf '#include "support/support.h"\n' > "$t/ir/ir.h"
  printf '#include "../ir/ir.h"\n' > "$t/frontend/frontend.h"
  printf '#include "../ir/ir.h"\n' > "$t/passes/passes.h"
  printf '#include "../ir/ir.h"\n' > "$t/runtime/runtime.h"
  printf '#include "../ir/ir.h"\n' > "$t/codegen/codegen.h"
  printf '#include "ir.h"\n#include "../runtime/runtime.h"\n' > "$t/ir/interp.c"
  printf '#include "codegen.h"\n\n#include "../frontend/frontend.h"\n' > "$t/codegen/c.c"
  printf '#include "runtime.h"\n#include "passes/passes.h"\n#include "../codegen/codegen.h"\n' > "$t/runtime/api.c"
  printf '#include "../ir.h"\n' > "$t/ir/support/diag.c"
  printf '#include "frontend/frontend.h"\n#include "nowhere.h"\n' > "$t/tools/nndc.c"
  out=$(check "$t") && { echo "layers.sh --selftest: a tree with violations passed"; exit 1; }
  echo "$out"
  for want in 'ir/interp.c:2: ir includes runtime/runtime.h of runtime' \
              'codegen/c.c:3: codegen includes frontend/frontend.h of frontend' \
              'runtime/api.c:2: runtime includes passes/passes.h of passes' \
              'ir/support/diag.c:1: support includes ir/ir.h of ir' \
              'tools/nndc.c:2: includes "nowhere.h"'; do
    case $out in
      *"$want"*) ;;
      *) echo "layers.sh --selftest: missing: $want"; exit 1 ;;
    esac
  done
  [ "$(echo "$out" | wc -l)" -eq 5 ] || { echo "layers.sh --selftest: expected exactly 5 violations"; exit 1; }
  echo "layers.sh --selftest: ok"
  exit 0
fi

[ $# -eq 1 ] || { echo "usage: layers.sh ROOT | --selftest" >&2; exit 2; }
if check "$1"; then
  echo "layers.sh: every include points down"
else
  exit 1
fi
