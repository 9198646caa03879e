#!/usr/bin/python3
"""gen_norm.py - PyTorch's values for tests/golden/norm/norm.nnd: batch_norm
over [N, C, H, W] and [N, C] (training and evaluation modes, running
statistics) and layer_norm, through one SGD step.

Run with /usr/bin/python3 (PyTorch 1.13, numpy) from anywhere:
    /usr/bin/python3 tests/golden/gen_norm.py
Writes into tests/golden/norm/: x.npy, y.npy (the batch), init/ (every param
and running statistic before the step, as `nndc train --load` reads them),
step/ (the same after one training step of sgd(lr=0.5) on the batch: params
and running statistics), eval_logits.npy (the evaluation-mode output with
the stepped state) and train_logits.npy (the training-mode output before
the step).  test_cli's norm_* tests compare nndc's results with them.
"""
import os
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "norm")
rng = np.random.default_rng(77)


def f32(*shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


init = {
    "k": f32(3, 2, 3, 3, lo=-0.5, hi=0.5),
    "g1": f32(3, lo=0.5, hi=1.5), "b1": f32(3, lo=-0.3, hi=0.3),
    "W": f32(12, 4, lo=-0.6, hi=0.6),
    "g2": f32(4, lo=0.5, hi=1.5), "b2": f32(4, lo=-0.3, hi=0.3),
    "lw": f32(4, lo=0.5, hi=1.5), "lb": f32(4, lo=-0.3, hi=0.3),
    "h1.running_mean": f32(3, lo=-0.5, hi=0.5), "h1.running_var": f32(3, lo=0.5, hi=2.0),
    "h2.running_mean": f32(4, lo=-0.5, hi=0.5), "h2.running_var": f32(4, lo=0.5, hi=2.0),
}
x = f32(8, 2, 6, 6, lo=-2, hi=2)
y = rng.integers(0, 4, size=(8,)).astype(np.int32)

t = {k: torch.tensor(v, requires_grad=not k.startswith("h")) for k, v in init.items()}


def forward(training):
    h1 = F.batch_norm(F.conv2d(torch.from_numpy(x), t["k"], padding=1), t["h1.running_mean"],
                      t["h1.running_var"], t["g1"], t["b1"], training=training, momentum=0.1, eps=1e-5)
    p = F.max_pool2d(F.relu(h1), 3).flatten(1)
    h2 = F.batch_norm(p @ t["W"], t["h2.running_mean"], t["h2.running_var"], t["g2"], t["b2"],
                      training=training, momentum=0.3, eps=1e-3)
    return F.layer_norm(F.relu(h2), (4,), t["lw"], t["lb"], eps=1e-5)


logits = forward(True)   # updates the running statistics in place
loss = F.cross_entropy(logits, torch.from_numpy(y).long())
loss.backward()
with torch.no_grad():
    for k, v in t.items():
        if v.grad is not None:
            v -= 0.5 * v.grad
    eval_logits = forward(False)

for d in ("init", "step"):
    os.makedirs(os.path.join(OUT, d), exist_ok=True)
for k, v in init.items():
    np.save(os.path.join(OUT, "init", k + ".npy"), v)
    np.save(os.path.join(OUT, "step", k + ".npy"), t[k].detach().numpy().astype(np.float32))
np.save(os.path.join(OUT, "x.npy"), x)
np.save(os.path.join(OUT, "y.npy"), y)
np.save(os.path.join(OUT, "train_logits.npy"), logits.detach().numpy().astype(np.float32))
np.save(os.path.join(OUT, "eval_logits.npy"), eval_logits.numpy().astype(np.float32))
print("loss", float(loss))
