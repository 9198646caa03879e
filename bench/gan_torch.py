#!/usr/bin/python3
"""examples/gan.nnd trained by PyTorch, for the Frechet distance comparison
in bench/README.md: the same multilayer perceptrons (glorot_uniform weights,
zero biases), the same losses, adam(lr=2e-4, beta1=0.5) for each network,
batch 64 (the last partial batch dropped), the samples reshuffled every epoch,
and every iteration the discriminator's step then the generator's, each with
fresh noise.  Writes OUT.npy: 10,000 generated images [10000, 1, 28, 28] in
[0, 1] (what `nndc run examples/gan.nnd -D N=10000` writes as samples.npy).

usage: gan_torch.py TRAIN-IMAGES.gz EPOCHS OUT.npy [SEED]
"""
import gzip
import sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i + 2 < len(sizes):
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def main():
    path, epochs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    torch.manual_seed(seed)
    with gzip.open(path) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    x = torch.tensor(x)
    G, D = mlp([64, 128, 256, 784]), mlp([784, 256, 128, 1])
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    B, n = 64, x.shape[0]
    bce = F.binary_cross_entropy_with_logits
    for ep in range(epochs):
        perm = torch.randperm(n)
        sd = sg = 0.0
        for b in range(n // B):
            real = x[perm[b * B:(b + 1) * B]] * 2 - 1
            fake = torch.tanh(G(torch.randn(B, 64)))
            lr, lf = D(real), D(fake.detach())
            d_loss = bce(lr, torch.ones_like(lr)) + bce(lf, torch.zeros_like(lf))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            lg = D(torch.tanh(G(torch.randn(B, 64))))
            g_loss = bce(lg, torch.ones_like(lg))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            sd, sg = sd + d_loss.item(), sg + g_loss.item()
        print("epoch %d/%d: d_loss %.4f g_loss %.4f" % (ep + 1, epochs, sd / (n // B), sg / (n // B)), flush=True)
    with torch.no_grad():
        s = torch.cat([torch.tanh(G(torch.randn(1000, 64))) for _ in range(10)]) * 0.5 + 0.5
    np.save(out, s.numpy().reshape(-1, 1, 28, 28).astype(np.float32))


if __name__ == "__main__":
    main()
