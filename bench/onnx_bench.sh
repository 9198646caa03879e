#!/bin/sh
# onnx_bench.sh [NNDC] [PYTHON] - latency of an imported CNN: nndc (JIT,
# `nndc bench` of the model `nndc import` wrote) against ONNX Runtime on the
# same .onnx file (bench/ort_bench.py), batch 1 and 64, 1 and 2 threads.
# The model: bench/onnx_cnn.py (examples/cnn_bn.nnd's CNN, exported by
# Debian's PyTorch 1.13).  PYTHON has onnxruntime and numpy (a venv:
# python3 -m venv /tmp/venv-ort && /tmp/venv-ort/bin/pip install onnxruntime numpy).
# Rounds (ROUNDS, default 3) alternate the two; the table gives the median
# of the rounds' medians and the fastest run of all, and the load average at the end.
set -eu
NNDC=${1:-build/nndc}
PY=${2:-/tmp/venv-ort/bin/python}
ROUNDS=${ROUNDS:-3}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
/usr/bin/python3 "$(dirname "$0")/onnx_cnn.py" "$D/cnn.onnx" 2>/dev/null
"$NNDC" import "$D/cnn.onnx" -o "$D" >/dev/null
for r in $(seq "$ROUNDS"); do
  for n in 1 64; do
    for t in 1 2; do
      reps=$([ "$n" = 1 ] && echo 300 || echo 50)
      "$NNDC" bench "$D/cnn.nnd" -D N="$n" --threads "$t" --repeats "$reps" --json |
        sed "s/^/nndc $n $t /" >> "$D/res"
      "$PY" "$(dirname "$0")/ort_bench.py" "$D/cnn.onnx" "$n" "$t" "$reps" | sed "s/^/ort $n $t /" >> "$D/res"
    done
  done
done
/usr/bin/python3 - "$D/res" <<'PY'
import json, statistics, sys
res = {}
for line in open(sys.argv[1]):
    who, n, t, js = line.split(" ", 3)
    j = json.loads(js)
    v = (j["step_us_median"], j["step_us_min"]) if who == "nndc" else (j["median_us"], j["min_us"])
    res.setdefault((int(n), int(t)), {}).setdefault(who, []).append(v)
print("| batch | threads | nndc median µs (min) | ONNX Runtime median µs (min) | ORT / nndc time, median (min) |")
print("|---:|---:|---:|---:|---:|")
for (n, t), v in sorted(res.items()):
    a, b = statistics.median(x[0] for x in v["nndc"]), statistics.median(x[0] for x in v["ort"])
    am, bm = min(x[1] for x in v["nndc"]), min(x[1] for x in v["ort"])
    print("| %d | %d | %.0f (%.0f) | %.0f (%.0f) | %.2f (%.2f) |" % (n, t, a, am, b, bm, b / a, bm / am))
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
