#!/usr/bin/env python3
"""ort_bench.py MODEL.onnx BATCH THREADS REPEATS - ONNX Runtime's latency of
one run of MODEL.onnx (its one input random, BATCH samples) on THREADS
intra-op threads (sequential execution, every graph optimization): prints
the median and the min over REPEATS timed runs after 20 warm-up runs, in
microseconds, as JSON.  onnxruntime comes from a venv (pip), only for this."""
import json, sys, time
import numpy as np
import onnxruntime as ort

path, n, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.random.default_rng(0).standard_normal([n if isinstance(d, str) else d for d in i.shape]).astype(np.float32)
for _ in range(20):
    s.run(None, {i.name: x})
t = []
for _ in range(repeats):
    t0 = time.perf_counter()
    s.run(None, {i.name: x})
    t.append((time.perf_counter() - t0) * 1e6)
print(json.dumps({"onnxruntime": ort.__version__, "batch": n, "threads": threads, "median_us": float(np.median(t)),
                  "min_us": float(np.min(t))}))
