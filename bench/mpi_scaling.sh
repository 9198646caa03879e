#!/usr/bin/env bash
# Data-parallel scaling of `nndc train` on Fashion-MNIST (README "Training on
# several machines", bench/README.md): K processes x 1 thread against one
# process x K threads against one process x 1 thread, on one machine.
#   bench/mpi_scaling.sh [NNDC] [MODEL] [K]      (defaults: build/nndc, examples/mlp.nnd, 2)
# The time per epoch is (T(E epochs) - T(0 epochs)) / E, E = EPOCHS (default 2),
# so that reading the data and compiling are not counted; the best of
# ROUNDS (default 3) rounds.  The global batch is the model's (64 for the MLP):
# K processes take 64 / K samples each per step.
set -euo pipefail
NNDC=${1:-build/nndc}
MODEL=${2:-examples/mlp.nnd}
K=${3:-2}
E=${EPOCHS:-2}
ROUNDS=${ROUNDS:-3}
D=${D:-/usr/share/datasets/fashion-mnist}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
DATA="--data x=$D/train-images-idx3-ubyte.gz --data y=$D/train-labels-idx1-ubyte.gz --batch"
B=$(sed -n 's/^ *batch *= *\([0-9]*\).*/\1/p' "$MODEL" | head -1)
B=${B:-32}

calc() { awk "BEGIN { printf \"%.3f\", $* }"; }

secs() {   # wall seconds of a command
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /tmp/mpi_scaling.$$.log 2>&1 || { cat /tmp/mpi_scaling.$$.log >&2; exit 1; }
  t1=$(date +%s.%N)
  calc "$t1 - $t0"
}

epoch_s() {   # LAUNCH... : best per-epoch seconds over the rounds
  local best=1e9 r full none e
  for r in $(seq "$ROUNDS"); do
    none=$(secs "$@" --epochs 0)
    full=$(secs "$@" --epochs "$E")
    e=$(calc "($full - $none) / $E")
    best=$(calc "$e < $best ? $e : $best")
  done
  echo "$best"
}

one1=$(epoch_s "$NNDC" train "$MODEL" $DATA "$B" --threads 1)
rank=$(epoch_s mpirun --oversubscribe -np "$K" "$NNDC" train "$MODEL" $DATA $((B / K)) --threads 1)
comm=$(grep -o 'allreduce[^)]*' /tmp/mpi_scaling.$$.log | tail -1 || true)
thr=$(epoch_s "$NNDC" train "$MODEL" $DATA "$B" --threads "$K")
echo "last epoch of the $K-process run: $comm"
rm -f /tmp/mpi_scaling.$$.log
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| configuration | s per epoch | speedup |\n|---|---:|---:|\n'
printf '| 1 process x 1 thread | %.2f | 1.00 |\n' "$one1"
printf '| %d processes x 1 thread | %.2f | %.2f |\n' "$K" "$rank" "$(calc "$one1 / $rank")"
printf '| 1 process x %d threads | %.2f | %.2f |\n' "$K" "$thr" "$(calc "$one1 / $thr")"
