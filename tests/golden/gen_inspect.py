#!/usr/bin/python3
"""Golden values for tests/test_inspect.c (`nndc run --grad-input`, `nndc attack`),
from PyTorch 1.13.

Run with /usr/bin/python3 from this directory.  For the shared MLP and LeNet
(../../../shared/models/{mlp,lenet}.nnd, written here in PyTorch with the same
param layout), trains each briefly on Fashion-MNIST (seeded) so that the attack
has something to break, and writes under inspect/:
  x.npy            u8 [64, 784]: the first 64 test images (nndc divides by 255)
  y.npy            i32 [64]: their labels
  <m>/<param>.npy  the params (a parameter directory for --load)
  <m>.grad_loss.npy  d cross_entropy / d x over the first 16 samples (mean over them)
  <m>.grad_top.npy   d sum_n max_c logits[n, c] / d x over the first 16 samples
  <m>.fgsm.npy     f32 [len(EPS), 2]: loss and accuracy over the 64 samples at each
                   eps of EPS, x' = clamp(x + eps * sign(d loss / d x), 0, 1)
"""
import gzip
import os
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "inspect")
DATA = "/usr/share/datasets/fashion-mnist"
EPS = [0.0, 0.05, 0.1, 0.2]
NGRAD, NFGSM = 16, 64


def idx(name, offset):
    with gzip.open(os.path.join(DATA, name)) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def mlp_params(g):
    def u(shape, fan_in, fan_out):  # glorot_uniform
        a = (6.0 / (fan_in + fan_out)) ** 0.5
        return (torch.rand(shape, generator=g) * 2 - 1) * a
    return {"W1": torch.randn(784, 256, generator=g) * (2.0 / 784) ** 0.5, "b1": torch.zeros(256),
            "W2": u((256, 10), 256, 10), "b2": torch.zeros(10)}


def mlp(p, x):
    h = torch.relu(x.reshape(x.shape[0], 784) @ p["W1"] + p["b1"])
    return h @ p["W2"] + p["b2"]


def lenet_params(g):
    def hu(shape, fan_in):  # he_uniform
        b = (6.0 / fan_in) ** 0.5
        return (torch.rand(shape, generator=g) * 2 - 1) * b
    return {"c1": hu((6, 1, 5, 5), 25), "c1b": torch.zeros(6), "c2": hu((16, 6, 5, 5), 150),
            "c2b": torch.zeros(16), "f1": hu((256, 120), 256), "f1b": torch.zeros(120),
            "f2": hu((120, 84), 120), "f2b": torch.zeros(84),
            "f3": (torch.rand(84, 10, generator=g) * 2 - 1) * (6.0 / 94) ** 0.5, "f3b": torch.zeros(10)}


def lenet(p, x):
    x = x.reshape(x.shape[0], 1, 28, 28)
    a1 = F.max_pool2d(torch.relu(F.conv2d(x, p["c1"], p["c1b"])), 2)
    a2 = F.max_pool2d(torch.relu(F.conv2d(a1, p["c2"], p["c2b"])), 2)
    h = a2.flatten(1)
    h = torch.relu(h @ p["f1"] + p["f1b"])
    h = torch.relu(h @ p["f2"] + p["f2b"])
    return h @ p["f3"] + p["f3b"]


def train(model, p, steps=300, batch=64):
    xs = torch.from_numpy(idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:steps * batch].copy()).float() / 255.0
    ys = torch.from_numpy(idx("train-labels-idx1-ubyte.gz", 8)[:steps * batch].astype(np.int64))
    for t in p.values():
        t.requires_grad_(True)
    opt = torch.optim.Adam(p.values(), lr=1e-3)
    for k in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(p, xs[k * batch:(k + 1) * batch]), ys[k * batch:(k + 1) * batch]).backward()
        opt.step()
    return {k: v.detach() for k, v in p.items()}


def grad_x(model, p, x, y):
    x = x.clone().requires_grad_(True)
    logits = model(p, x)
    obj = F.cross_entropy(logits, y) if y is not None else logits.max(dim=1).values.sum()
    obj.backward()
    return x.grad


def fgsm(model, p, x, y):
    g = grad_x(model, p, x, y)
    rows = []
    for e in EPS:
        xa = torch.clamp(x + e * torch.sign(g), 0, 1) if e > 0 else x
        with torch.no_grad():
            logits = model(p, xa)
            rows.append([F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()])
    return np.array(rows, np.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    xu8 = idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:NFGSM].copy()
    yl = idx("t10k-labels-idx1-ubyte.gz", 8)[:NFGSM].astype(np.int32)
    np.save(os.path.join(OUT, "x.npy"), xu8)
    np.save(os.path.join(OUT, "y.npy"), yl)
    x = torch.from_numpy(xu8).float() / 255.0   # f32 division, as nndc's u1 -> f32
    y = torch.from_numpy(yl.astype(np.int64))
    for name, model, init in [("mlp", mlp, mlp_params), ("lenet", lenet, lenet_params)]:
        p = train(model, init(torch.Generator().manual_seed(1)))
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        for k, v in p.items():
            np.save(os.path.join(OUT, name, k + ".npy"), v.numpy().astype(np.float32))
        xs = x[:NGRAD]
        np.save(os.path.join(OUT, name + ".grad_loss.npy"), grad_x(model, p, xs, y[:NGRAD]).numpy())
        np.save(os.path.join(OUT, name + ".grad_top.npy"), grad_x(model, p, xs, None).numpy())
        table = fgsm(model, p, x, y)
        np.save(os.path.join(OUT, name + ".fgsm.npy"), table)
        print(name, "loss, accuracy at eps", EPS, "\n", table)


if __name__ == "__main__":
    main()
