#!/bin/sh
# layers.sh - the include-direction check: layers only point down.
#
#   sh tests/layers.sh ROOT        check the tree at ROOT (0: clean, 1: violations)
#   sh tests/layers.sh --selftest  check that a tree with violations fails
#   sh tests/layers.sh --objects OBJ...  the same order for links (see below)
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
#
# Includes do not show a function declared in a low layer's header and
# defined in a higher layer (diag.c once lived in frontend/ while ir/ir.h
# declared it); --objects checks the links: every undefined symbol of an
# object of the library (CMakeFiles/nndc_core.dir/<source>.o) that another
# of them defines must be defined in its own layer or one it may include.
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
forbidden="codegen:frontend runtime:frontend runtime:passes"
allowed() {
  case " $forbidden " in
    *" $1:$2 "*) return 1 ;;
  esac
  return 0
}

# The links of the library objects "$@": "L OBJ LAYER RANK SOURCE" lines, then nm's
# output, into one awk that resolves each undefined symbol to its definer.
check_objects() {
  for o in "$@"; do
    src=${o#*nndc_core.dir/}
    src=${src#./}
    src=${src%.o}
    set -- $(layer "$src")
    [ $# -eq 2 ] || { echo "layers.sh: $o belongs to no layer" >&2; return 2; }
    echo "L $o $1 $2 $src"
  done > "$tmp/objs"
  for o in $(cut -d' ' -f2 "$tmp/objs"); do
    nm -g --defined-only "$o" | awk -v o="$o" 'NF == 3 { print "D", o, $3 }'
    nm -u "$o" | awk -v o="$o" '{ print "U", o, $NF }'
  done > "$tmp/syms"
  cat "$tmp/objs" "$tmp/syms" | awk -v forbidden="$forbidden" '
    BEGIN { n = split(forbidden, f, " "); for (i = 1; i <= n; i++) bad[f[i]] = 1 }
    $1 == "L" { name[$2] = $3; rank[$2] = $4; src[$2] = $5 }
    $1 == "D" { def[$3] = $2 }
    $1 == "U" { use[++nu] = $2 " " $3 }
    END {
      for (i = 1; i <= nu; i++) {
        split(use[i], u, " "); d = def[u[2]]
        if (d == "") continue
        if (rank[d] > rank[u[1]] || bad[name[u[1]] ":" name[d]]) {
          printf "%s: %s uses %s, defined in %s of %s\n", src[u[1]], name[u[1]], u[2], src[d], name[d]
          status = 1
        }
      }
      exit status
    }'
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

if [ "${1:-}" = --objects ]; then
  shift
  if check_objects "$@"; then
    echo "layers.sh: every link of the $# library objects points down"
    exit 0
  fi
  exit 1
fi

[ $# -eq 1 ] || { echo "usage: layers.sh ROOT | --selftest | --objects OBJ..." >&2; exit 2; }
if check "$1"; then
  echo "layers.sh: every include points down"
else
  exit 1
fi
