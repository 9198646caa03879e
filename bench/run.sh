#!/bin/bash
# run.sh - the whole benchmark in one run on one machine: nndc (JIT) against
# PyTorch eager on the shared models (training step at batch 64, batch-1
# inference) at 1 and 2 threads, the JIT against the reference interpreter
# on the MLP training step, compile times, single matmuls against OpenBLAS,
# and AOT C (`nndc emit-c`) against the JIT.  Writes every measurement as a
# JSON line to bench/results/<time>.jsonl (and latest.jsonl) and prints the
# tables (bench/report.py).
#
#   bench/run.sh [NNDC]          (default: build-bench/nndc, a Release build)
# env: THREADS="1 2"  TRAIN_REPEATS=30  INFER_REPEATS=300  ROUNDS=3  SKIP="matmul aot"
# The model, baseline and scaling measurements are repeated ROUNDS times in
# fresh processes, nndc and PyTorch interleaved; report.py takes the median
# over the rounds (a shared VM's noise moves single runs by 10-30%).
# (the scaling rows, batch 256, run on every THREADS count: "1 2 4 8 16" on
# a larger machine gives the whole curve)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
nndc=${1:-$root/build-bench/nndc}
threads=${THREADS:-1 2}
train_reps=${TRAIN_REPEATS:-30}
infer_reps=${INFER_REPEATS:-300}
rounds=${ROUNDS:-3}
skip=${SKIP:-}
py=/usr/bin/python3
models="mlp logreg deep_mlp lenet rnn lstm autoencoder cnn_bn"
# the shared models, then our examples beyond them (cnn_bn: batch_norm)
model_path() { if [ -f "$root/../shared/models/$1.nnd" ]; then echo "$root/../shared/models/$1.nnd"; else echo "$root/examples/$1.nnd"; fi; }
mkdir -p "$here/results"
out=$here/results/$(date +%Y%m%d-%H%M%S).jsonl
: > "$out"

# The machine and the versions, for the README.
{
  printf '{"section":"meta","cpu":"%s","cores":%s,' "$(lscpu | sed -n 's/^Model name: *//p')" "$(nproc)"
  printf '"gcc":"%s",' "$(gcc -dumpfullversion)"
  printf '"llvm":"%s",' "$( (llvm-config-19 --version || /usr/lib/llvm-19/bin/llvm-config --version) 2>/dev/null)"
  printf '"torch":"%s",' "$($py -c 'import torch; print(torch.__version__)')"
  printf '"openblas":"%s",' "$(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo none)"
  printf '"date":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
} >> "$out"

# nndc bench's JSON lacks the fields the report joins on; prefix them.
tag() { sed "s/^{/{\"framework\":\"nndc\",\"section\":\"$1\",\"mode\":\"$2\",/"; }

for round in $(seq "$rounds"); do
for t in $threads; do
  for m in $models; do
    echo "nndc $m, $t thread(s)" >&2
    "$nndc" bench "$(model_path "$m")" --train -D N=64 --threads "$t" --repeats "$train_reps" --json |
      tag models train >> "$out"
    "$nndc" bench "$(model_path "$m")" -D N=1 --threads "$t" --repeats "$infer_reps" --json |
      tag models infer >> "$out"
  done
  echo "torch, $t thread(s)" >&2
  # glibc malloc keeps freed memory (the issue's setting: PyTorch's Adam
  # allocates temporaries each step and would otherwise pay page faults).
  MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_TOP_PAD_=100000000 \
    OMP_NUM_THREADS=$t $py "$here/torch_bench.py" --threads "$t" --repeats "$train_reps" \
    --infer-repeats "$infer_reps" | sed 's/^{/{"section": "models", /' >> "$out"
  echo "nndc mlp --baseline, $t thread(s)" >&2
  "$nndc" bench $root/../shared/models/mlp.nnd --train -D N=64 --threads "$t" --repeats "$train_reps" --baseline \
    --json | tag baseline train >> "$out"
done

# Scaling: the MLP and LeNet training steps at batch 256 on each thread count.
for t in $threads; do
  for m in mlp lenet; do
    echo "scaling $m, $t thread(s)" >&2
    "$nndc" bench "$root/../shared/models/$m.nnd" --train -D N=256 --threads "$t" --repeats "$train_reps" --json |
      tag scaling train >> "$out"
  done
done
done  # rounds

case " $skip " in *" matmul "*) ;; *)
  for round in $(seq "$rounds"); do echo "matmul" >&2; THREADS="$threads" "$here/matmul.sh" "$nndc" "$out"; done ;;
esac
case " $skip " in *" aot "*) ;; *) echo "aot" >&2; THREADS="$threads" REPEATS=$train_reps "$here/aot.sh" "$nndc" "$out" ;; esac

cp "$out" "$here/results/latest.jsonl"
$py "$here/report.py" "$out"
