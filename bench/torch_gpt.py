#!/usr/bin/python3
"""torch_gpt.py - examples/gpt.nnd in PyTorch: the same model, started from
nndc's own initial params (a safetensors file written by
`nndc train examples/gpt.nnd ... --epochs 0 --seed S --save init.safetensors`),
fed the same windows in nndc's order (spec 9 text windows; the per-epoch
permutation of runtime/data.c's data_permutation, reimplemented below), with
torch.optim.AdamW at the train block's settings: the PyTorch reference of
the README's bits-per-byte figure.

  /usr/bin/python3 bench/torch_gpt.py --train train.txt --test test.txt --init init.safetensors --seed 1
"""
import argparse
import json
import math
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F

M64 = (1 << 64) - 1
L, D, H, DH, V = 64, 128, 4, 32, 256


def rng_mix(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def permutation(seed, epoch, n):
    """runtime/data.c data_permutation: Fisher-Yates keyed by (seed, epoch)."""
    stream = rng_mix(0x5348554646 ^ epoch)
    key = rng_mix(seed ^ rng_mix(stream))
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng_mix((key + i) & M64) % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def windows(path):
    b = np.frombuffer(open(path, "rb").read(), dtype=np.uint8)
    ns = (len(b) - L) // (L - 1) + 1
    idx = np.arange(ns)[:, None] * (L - 1) + np.arange(L)[None, :]
    return torch.from_numpy(b[idx].astype(np.int64))


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__" or v["dtype"] != "F32" or "." in k and k.split(".")[-1] in ("exp_avg", "exp_avg_sq"):
            continue
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(v["shape"]).copy())
    return out


def forward(p, x):
    N = x.shape[0]
    h = p["wte"][x] + p["wpe"]
    mask = torch.ones(L, L, dtype=torch.bool).tril()
    for blk in ("h1", "h2"):
        def g(name):
            return p[f"{blk}.{name}"]
        a = F.layer_norm(h, (D,), g("g1"), g("c1"), 1e-5)
        q, k, v = ((a @ g(f"a.{t}.W") + g(f"a.{t}.b")).reshape(N, L, H, DH).transpose(1, 2) for t in "qkv")
        s = torch.softmax((q @ k.transpose(2, 3) / math.sqrt(DH)).masked_fill(~mask, float("-inf")), dim=-1)
        o = (s @ v).transpose(1, 2).reshape(N, L, D) @ g("a.out.W") + g("a.out.b")
        h = h + o
        m = F.gelu(F.layer_norm(h, (D,), g("g2"), g("c2"), 1e-5) @ g("m1.W") + g("m1.b"))
        h = h + (m @ g("m2.W") + g("m2.b"))
    logits = F.layer_norm(h, (D,), p["gf"], p["cf"], 1e-5) @ p["wte"].t()
    return F.cross_entropy(logits[:, :L - 1].reshape(-1, V), x[:, 1:].reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    p = load_safetensors(a.init)
    params = [t.requires_grad_() for t in p.values()]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=a.weight_decay)
    tr, te = windows(a.train), windows(a.test)
    nb = len(tr) // a.batch
    t0 = time.time()
    for ep in range(1, a.epochs + 1):
        perm = torch.tensor(permutation(a.seed, ep, len(tr)))
        tot = 0.0
        for bi in range(nb):
            loss = forward(p, tr[perm[bi * a.batch:(bi + 1) * a.batch]])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item()
            if (bi + 1) % 100 == 0:
                print(f"epoch {ep} batch {bi + 1}/{nb} loss {tot / (bi + 1):.4f} ({time.time() - t0:.0f} s)", flush=True)
        with torch.no_grad():
            s = sum(forward(p, te[i:i + a.batch]).item() * len(te[i:i + a.batch]) for i in range(0, len(te), a.batch))
        tl = s / len(te)
        print(f"epoch {ep}: train loss {tot / nb:.4f} bits_per_byte {tot / nb / math.log(2):.4f} | "
              f"test loss {tl:.4f} bits_per_byte {tl / math.log(2):.4f}  ({time.time() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
