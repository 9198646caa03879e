#!/usr/bin/env bash
# gpt2_bench.sh - GPT-2 small's training step (forward, backward, AdamW),
# nndc against PyTorch eager on the same model, alternating processes in
# one run: for each sequence length and thread count, `nndc bench --train`
# (median of REPEATS steps after its warm-up) and bench/torch_gpt2.py
# (median of STEPS steps after one), with each process's peak resident
# memory.  llm.c's figure is measured by hand (bench/README.md says how).
#   bash bench/gpt2_bench.sh            # SEQS="64 256" THREADS="1 2" BATCH=4
set -euo pipefail
cd "$(dirname "$0")/.."
NNDC=${NNDC:-build/nndc}
SEQS=${SEQS:-"64 256"}
THREADS=${THREADS:-"1 2"}
BATCH=${BATCH:-4}
REPEATS=${REPEATS:-3}
STEPS=${STEPS:-3}
PY=${PY:-/usr/bin/python3}
echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs," \
     "$(grep -o -w 'avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')load $(cut -d' ' -f1-3 /proc/loadavg)"
for T in $SEQS; do
  for th in $THREADS; do
    out=$(/usr/bin/time -f "peak %M KiB" "$NNDC" bench examples/gpt2.nnd --train -D N="$BATCH" -D L="$T" \
            --threads "$th" --repeats "$REPEATS" 2>&1)
    echo "nndc  B=$BATCH T=$T threads=$th: $(echo "$out" | grep -E '^compile|^step' | tr '\n' ' ')" \
         "$(echo "$out" | grep -o 'peak [0-9]* KiB')"
    echo "torch $($PY bench/torch_gpt2.py --batch "$BATCH" --seq "$T" --threads "$th" --steps "$STEPS")"
  done
done
