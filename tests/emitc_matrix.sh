#!/usr/bin/env bash
# emitc_matrix.sh NNDC SRC_DIR SHARED_DIR - the emitted C of every example
# and every shared model, for every code-generation target, builds without a
# warning under gcc and clang, with and without OpenMP:
#   -std=c99 -O2 -Wall -Wextra -Werror -pedantic -march=<the target's level>
# Each model is emitted with --train (its file holds the forward pass and the
# training step) at its train block's batch and at an odd small batch (3);
# the recurrent models with T=3 steps (the same kernels as 28, a tenth of the
# code).  Compiles only: running every target's C is test_emitc's job (under
# NNDC_TARGET), and the host may lack AVX-512.  The jobs run on every core.
set -uo pipefail
nndc=$1 src=$2 shared=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A march=([generic]=x86-64 [avx2]=x86-64-v3 [avx512]=x86-64-v4)
jobs=$work/jobs
: > "$jobs"
emitted=0 bad=0
for model in "$src"/examples/*.nnd "$shared"/models/*.nnd; do
  name=$(basename "$model" .nnd)
  tag=$(basename "$(dirname "$model")")
  defs=""
  grep -q '^const T *=' "$model" && defs="-D T=3"
  targets="generic avx2 avx512" sizes="default 3"
  # GPT-2 small is gpt.nnd's kernels twelve times over (2 MB of C, a minute
  # of gcc -O2 each): one target, the small batch, two compilations
  [ "$name" = gpt2 ] && targets=avx2 sizes=3
  for target in $targets; do
    for size in $sizes; do
      dir=$work/$tag.$name.$target.$size
      d=$defs
      [ "$size" = 3 ] && d="$d -D N=3"
      if ! "$nndc" emit-c "$model" -o "$dir" --train --target "$target" $d > "$work/emit.log" 2>&1; then
        echo "FAIL emit $tag/$name $target N=$size:"; cat "$work/emit.log"
        bad=$((bad + 1))
        continue
      fi
      emitted=$((emitted + 1))
      for cc in gcc clang; do
        for omp in "" -fopenmp; do
          # the small batch: one compiler each way is enough
          if [ "$size" = 3 ] && { [ "$cc" = gcc ] && [ -n "$omp" ] || [ "$cc" = clang ] && [ -z "$omp" ]; }; then continue; fi
          echo "$cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -march=${march[$target]} $omp -c $dir/$name.c -o /dev/null" >> "$jobs"
        done
      done
    done
  done
done
total=$(wc -l < "$jobs")
# each job prints PASS or FAIL with the compiler's output
xargs -P "$(nproc)" -I{} -d '\n' sh -c 'if out=$({} 2>&1); then echo "PASS {}"; else printf "FAIL {}\n%s\n" "$out"; fi' < "$jobs" > "$work/results"
fails=$(grep -c '^FAIL' "$work/results")
grep -A30 '^FAIL' "$work/results" | head -200
passed=$((total - fails))
echo "emitc_matrix: $emitted emissions, $total compilations"
echo "emitc_matrix: $passed passed, $((fails + bad)) failed"
[ $((fails + bad)) -eq 0 ]
