#!/bin/bash
# aot.sh - ahead-of-time C against the JIT: for each model, `nndc emit-c
# --train` -> gcc -O3 -march=native with bench/aot_driver.c, timing
# <m>_train_step; then `nndc bench --train` on the same model and batch.
# One thread: the AOT C built without OpenMP vs the JIT with --threads 1;
# two threads: built with -fopenmp (OMP_NUM_THREADS=2) vs --threads 2.
#
#   bench/aot.sh [NNDC] [OUT.jsonl]      (defaults: build-bench/nndc, stdout)
# env: MODELS="mlp lenet" REPEATS=50 THREADS="1 2" N=64
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
nndc=${1:-$root/build-bench/nndc}
out=${2:-/dev/stdout}
models=${MODELS:-mlp lenet}
reps=${REPEATS:-50}
threads=${THREADS:-1 2}
batch=${N:-64}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for m in $models; do
  src=$root/../shared/models/$m.nnd
  [ -f "$src" ] || src=$root/examples/$m.nnd
  gen=$work/$m
  mkdir -p "$gen"
  "$nndc" emit-c "$src" -o "$gen" --train -D N="$batch" >/dev/null
  # One line per field of the generated structs, e.g.
  #   float *W1;  /* param W1 f32[784,256] */  ->  p.W1 = param(784*256);
  awk '
    match($0, /^ *(const )?(float|int32_t) \*[A-Za-z0-9_]+; *\/\* (param|input|output|state) [^ ]+ (f32|i32)\[[0-9,]*\]/) {
      line = substr($0, RSTART, RLENGTH)
      field = line; sub(/^ *(const )?(float|int32_t) \*/, "", field); sub(/;.*/, "", field)
      kind = line; sub(/^.*\/\* /, "", kind); sub(/ .*/, "", kind)
      dt = line; sub(/^.*(param|input|output|state) [^ ]+ /, "", dt); sub(/\[.*/, "", dt)
      dims = line; sub(/^.*\[/, "", dims); sub(/\]$/, "", dims)
      n = dims == "" ? "1" : dims; gsub(/,/, "*", n)
      if (kind == "param") print "p." field " = param(" n ");"
      else if (kind == "input") print "in." field " = " (dt == "i32" ? "iin(" : "fin(") n ");"
      else if (kind == "output") print "out." field " = zeros(" n ");"
      else print "#ifdef TRAIN\ns." field " = zeros(" n ");\n#endif"
    }' "$gen/$m.h" > "$gen/aot_fill.inc"
  for t in $threads; do
    omp=""
    [ "$t" -gt 1 ] && omp=-fopenmp
    gcc -std=c11 -O3 -march=native $omp -DTRAIN -DMODEL="$m" -DMODEL_H="\"$m.h\"" -I "$gen" \
      "$here/aot_driver.c" "$gen/$m.c" -lm -o "$gen/drv$t"
    OMP_NUM_THREADS=$t "$gen/drv$t" "$reps" | sed "s/^{/{\"threads\":$t,\"batch\":$batch,\"mode\":\"train\",/" >> "$out"
    "$nndc" bench "$src" --train -D N="$batch" --threads "$t" --repeats "$reps" --json |
      sed "s/^{/{\"framework\":\"nndc\",\"section\":\"aot\",\"mode\":\"train\",/" >> "$out"
  done
done
