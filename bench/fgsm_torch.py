#!/usr/bin/python3
"""FGSM on the full Fashion-MNIST test set in PyTorch, with params that nndc trained,
for the README's table beside `nndc attack` (PyTorch 1.13; run with /usr/bin/python3).

  bench/fgsm_torch.py mlp|lenet PARAMS.safetensors [--eps 0,0.05,0.1,0.2]

The models are those of tests/golden/gen_inspect.py (the shared MLP and LeNet with
nndc's param layout; the layer names of examples/mlp.nnd and lenet.nnd are mapped to them).
x' = clamp(x + eps * sign(d loss / d x), 0, 1), batches of 1000, as `nndc attack`.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
import gen_inspect as gi  # noqa: E402

# examples/*.nnd's layer names -> the shared models' param names
NAMES = {"mlp": {"h.W": "W1", "h.b": "b1", "logits.W": "W2", "logits.b": "b2"},
         "lenet": {"a1.w": "c1", "a1.b": "c1b", "a2.w": "c2", "a2.b": "c2b", "f1.W": "f1", "f1.b": "f1b",
                   "f2.W": "f2", "f2.b": "f2b", "logits.W": "f3", "logits.b": "f3b"}}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], np.float32).reshape(v["shape"]).copy())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["mlp", "lenet"])
    ap.add_argument("params")
    ap.add_argument("--eps", default="0,0.05,0.1,0.2")
    a = ap.parse_args()
    p = read_safetensors(a.params)
    p = {NAMES[a.model].get(k, k): v for k, v in p.items()}
    model = gi.mlp if a.model == "mlp" else gi.lenet
    x = torch.from_numpy(gi.idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).copy()).float() / 255.0
    y = torch.from_numpy(gi.idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
    eps = [float(e) for e in a.eps.split(",")]
    sums = np.zeros((len(eps), 2))
    for b in range(0, len(x), 1000):
        xb, yb = x[b:b + 1000], y[b:b + 1000]
        g = gi.grad_x(model, p, xb, yb)
        for k, e in enumerate(eps):
            xa = torch.clamp(xb + e * torch.sign(g), 0, 1) if e > 0 else xb
            with torch.no_grad():
                lg = model(p, xa)
                sums[k] += [F.cross_entropy(lg, yb).item() * len(xb), (lg.argmax(1) == yb).sum().item()]
    print("%10s %10s %10s" % ("eps", "loss", "accuracy"))
    for k, e in enumerate(eps):
        print("%10g %10.4f %10.4f" % (e, sums[k][0] / len(x), sums[k][1] / len(x)))


if __name__ == "__main__":
    main()
