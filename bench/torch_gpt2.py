#!/usr/bin/python3
"""torch_gpt2.py - the training step of examples/gpt2.nnd (GPT-2 small: 12
layers, 12 heads, width 768, vocabulary padded to 50304, tied embeddings,
GPT-2's initialization) in PyTorch eager: forward, backward and AdamW on a
batch of B random token windows of length T.  Prints the median step time
over --steps steps after --warmup, and the process's peak resident memory:
the PyTorch column of bench/README.md's GPT-2 table.

  /usr/bin/python3 bench/torch_gpt2.py --batch 4 --seq 64 --threads 2
"""
import argparse
import math
import resource
import statistics
import time

import torch
import torch.nn.functional as F

V, CTX, D, H, LAYERS = 50304, 1024, 768, 12, 12


def init(gen):
    def normal(*shape, std=0.02):
        return (torch.randn(*shape, generator=gen) * std).requires_grad_()

    def zeros(*shape):
        return torch.zeros(*shape).requires_grad_()

    def ones(*shape):
        return torch.ones(*shape).requires_grad_()

    pstd = 0.02 / math.sqrt(2 * LAYERS)
    p = {"wte": normal(V, D), "wpe": normal(CTX, D), "gf": ones(D), "cf": zeros(D), "blocks": []}
    for _ in range(LAYERS):
        p["blocks"].append({
            "g1": ones(D), "c1": zeros(D), "g2": ones(D), "c2": zeros(D),
            "qkv": normal(D, 3 * D), "qkvb": zeros(3 * D), "proj": normal(D, D, std=pstd), "projb": zeros(D),
            "fc": normal(D, 4 * D), "fcb": zeros(4 * D), "fcproj": normal(4 * D, D, std=pstd), "fcprojb": zeros(D)})
    return p


def params(p):
    out = [p["wte"], p["wpe"], p["gf"], p["cf"]]
    for b in p["blocks"]:
        out += list(b.values())
    return out


def loss_of(p, x):
    N, T = x.shape
    h = p["wte"][x] + p["wpe"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for b in p["blocks"]:
        a = F.layer_norm(h, (D,), b["g1"], b["c1"], 1e-5)
        q, k, v = (a @ b["qkv"] + b["qkvb"]).split(D, dim=-1)
        q, k, v = (t.reshape(N, T, H, D // H).transpose(1, 2) for t in (q, k, v))
        s = torch.softmax((q @ k.transpose(2, 3) / math.sqrt(D // H)).masked_fill(~mask, float("-inf")), dim=-1)
        h = h + ((s @ v).transpose(1, 2).reshape(N, T, D) @ b["proj"] + b["projb"])
        m = F.gelu(F.layer_norm(h, (D,), b["g2"], b["c2"], 1e-5) @ b["fc"] + b["fcb"])
        h = h + (m @ b["fcproj"] + b["fcprojb"])
    logits = F.layer_norm(h, (D,), p["gf"], p["cf"], 1e-5) @ p["wte"].t()
    return F.cross_entropy(logits[:, :T - 1].reshape(-1, V), x[:, 1:].reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(0)
    p = init(gen)
    opt = torch.optim.AdamW(params(p), lr=3e-4, weight_decay=0.0)
    times = []
    for i in range(a.warmup + a.steps):
        x = torch.randint(0, 50257, (a.batch, a.seq), generator=gen)
        t0 = time.perf_counter()
        loss = loss_of(p, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__} B={a.batch} T={a.seq} threads={a.threads}: step median {statistics.median(times) * 1e3:.0f} ms "
          f"min {min(times) * 1e3:.0f} ms over {a.steps}, loss {loss.item():.3f}, peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
