#!/usr/bin/python3
"""Golden values for tests/test_steps.c: the two train steps of steps/gan.nnd
(spec 8, adversarial training) computed by PyTorch 1.13.

Run with /usr/bin/python3 from this directory.  Writes steps/init/<param>.npy
(the params the test loads, running statistics included), steps/x.npy and
steps/z.npy (24 samples: three batches of 8 in order, no shuffling), and
steps/after/<param>.npy: the params after the three iterations, each of which
runs the discriminator's step (loss d_loss on params dr.*, adam) and then the
generator's step (g_loss on g1.* and fake.*, its own adam) on the same batch,
the generator's forward pass (batch_norm in training mode, so its running
statistics update) run afresh in each step, as nndc does.
"""
import os
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "steps")
B, ITERS = 8, 3

rng = np.random.RandomState(7)
shapes = {
    "g1.W": (2, 8), "g1.gamma": (8,), "g1.beta": (8,), "fake.W": (8, 4), "fake.b": (4,),
    "dr.h.W": (4, 8), "dr.h.b": (8,), "dr.o.W": (8, 1), "dr.o.b": (1,),
}
init = {k: rng.uniform(-0.8, 0.8, s).astype(np.float32) for k, s in shapes.items()}
init["g1.gamma"] += 1.0
init["g1.running_mean"] = np.zeros(8, np.float32)
init["g1.running_var"] = np.ones(8, np.float32)
x = (rng.randn(ITERS * B, 4) * 0.5 + 1.0).astype(np.float32)
z = rng.randn(ITERS * B, 2).astype(np.float32)

P = {k: torch.tensor(v, requires_grad=not k.startswith("g1.running")) for k, v in init.items()}
D = [P[k] for k in ("dr.h.W", "dr.h.b", "dr.o.W", "dr.o.b")]
G = [P[k] for k in ("g1.W", "g1.gamma", "g1.beta", "fake.W", "fake.b")]
opt_d = torch.optim.Adam(D, lr=0.01, betas=(0.5, 0.999), foreach=False)
opt_g = torch.optim.Adam(G, lr=0.02, betas=(0.5, 0.999), foreach=False)


def gen(zb):
    h = F.batch_norm(zb @ P["g1.W"], P["g1.running_mean"], P["g1.running_var"], P["g1.gamma"], P["g1.beta"],
                     training=True, momentum=0.1, eps=1e-5)
    return F.relu(h) @ P["fake.W"] + P["fake.b"]


def disc(v):
    h = F.leaky_relu(v @ P["dr.h.W"] + P["dr.h.b"], 0.2)
    return h @ P["dr.o.W"] + P["dr.o.b"]


bce = F.binary_cross_entropy_with_logits
for it in range(ITERS):
    xb, zb = torch.tensor(x[it * B:(it + 1) * B]), torch.tensor(z[it * B:(it + 1) * B])
    fake = gen(zb)
    real_logit, fake_logit = disc(xb), disc(fake.detach())
    d_loss = bce(real_logit, torch.ones_like(real_logit)) + bce(fake_logit, torch.zeros_like(fake_logit))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    fake = gen(zb)
    gen_logit = disc(fake)
    g_loss = bce(gen_logit, torch.ones_like(gen_logit))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    print("iteration %d: d_loss %.6f g_loss %.6f" % (it + 1, d_loss.item(), g_loss.item()))

for d in ("init", "after"):
    os.makedirs(os.path.join(OUT, d), exist_ok=True)
for k, v in init.items():
    np.save(os.path.join(OUT, "init", k + ".npy"), v)
    np.save(os.path.join(OUT, "after", k + ".npy"), P[k].detach().numpy())
np.save(os.path.join(OUT, "x.npy"), x)
np.save(os.path.join(OUT, "z.npy"), z)
