#!/bin/bash
# matmul.sh - single matrix products, OpenBLAS's cblas_sgemm (bench/matmul.c)
# against nndc (`nndc bench bench/mm.nnd -D M= -D K= -D N=`), at 1 and 2
# threads; appends JSON lines for bench/report.py.  The shapes are the
# MLP's forward products at batch 64 and 128, the backward products of the
# first layer (dW = x^T @ dy: 784x64 @ 64x256; dx = dy @ W^T: 64x256 @
# 256x784), squares, and the classifier layer.
#
#   bench/matmul.sh [NNDC] [OUT.jsonl]     env: THREADS="1 2" REPEATS=50
# Needs libopenblas-dev (apt-get install libopenblas-dev; bench only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
nndc=${1:-$root/build-bench/nndc}
out=${2:-/dev/stdout}
threads=${THREADS:-1 2}
reps=${REPEATS:-50}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -std=c11 -O2 "$here/matmul.c" -lopenblas -o "$work/matmul"
gcc -std=c11 -O2 -march=native "$here/peak.c" -o "$work/peak"
"$work/peak" | sed 's/^{/{"section":"peak",/' >> "$out"

# M K N
shapes="64 784 256
128 784 256
784 64 256
64 256 784
64 256 10
512 512 512
1024 1024 1024"
for t in $threads; do
  while read -r m k n; do
    r=$reps
    [ "$m" -ge 1024 ] && r=$(( reps / 5 > 5 ? reps / 5 : 5 ))
    "$work/matmul" "$m" "$k" "$n" "$t" "$r" | sed 's/^{/{"section":"matmul",/' >> "$out"
    "$nndc" bench "$here/mm.nnd" -D M="$m" -D K="$k" -D N="$n" --threads "$t" --repeats "$r" --json |
      sed "s/^{/{\"framework\":\"nndc\",\"section\":\"matmul\",\"M\":$m,\"K\":$k,\"N\":$n,/" >> "$out"
  done <<< "$shapes"
done
