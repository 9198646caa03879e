#!/usr/bin/python3
"""torch_bench.py - the shared example models written in PyTorch (1.13,
eager mode), timed the way `nndc bench` times them: a training step
(forward, backward, optimizer step as in the model's `train` block) at
batch 64, and batch-1 inference.  Prints one JSON object per measurement.

Run it as bench/run.sh does, with glibc's malloc kept from returning memory
to the kernel after every step (the benchmark issue asks for this so that
PyTorch's Adam, which allocates fresh temporaries each step, is not charged
for page faults):

  MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 \
  MALLOC_TOP_PAD_=100000000 /usr/bin/python3 bench/torch_bench.py --threads 1

Weights are random (only the time matters).  nnd stores a dense weight as
[in, out]; torch.nn.Linear stores [out, in] and multiplies by its transpose,
which is how a PyTorch user writes the same layer.  The recurrent models
use torch.nn.RNN / torch.nn.LSTM (batch_first), the idiomatic PyTorch form
of the unrolled cells in rnn.nnd and lstm.nnd (nn.RNN/LSTM carry a second
bias vector, b_hh; its cost is negligible)."""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(784, 256), nn.Linear(256, 10)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


class Logreg(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(784, 10)

    def forward(self, x):
        return self.l(x)


class DeepMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.h1, self.h2, self.out = nn.Linear(784, 512), nn.Linear(512, 256), nn.Linear(256, 10)

    def forward(self, x):
        a1 = F.dropout(F.elu(self.h1(x)), 0.2, self.training)
        a2 = F.dropout(F.elu(self.h2(a1)), 0.2, self.training)
        return self.out(a2)


class Lenet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.f1, self.f2, self.f3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        a1 = F.max_pool2d(torch.relu(self.c1(x)), 2)    # [N, 6, 12, 12]
        a2 = F.max_pool2d(torch.relu(self.c2(a1)), 2)   # [N, 16, 4, 4]
        h = torch.flatten(a2, 1)                        # [N, 256]
        h = torch.relu(self.f1(h))
        h = torch.relu(self.f2(h))
        return self.f3(h)


class CnnBn(nn.Module):
    """examples/cnn_bn.nnd: two blocks of conv 3x3 (no bias), batch_norm,
    relu, max pool 2; dense 3136 -> 128 with batch_norm, dropout 0.3; 10."""
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.b1, self.b2 = nn.BatchNorm2d(32), nn.BatchNorm2d(64)
        self.f1, self.bf = nn.Linear(3136, 128, bias=False), nn.BatchNorm1d(128)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        a1 = F.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)   # [N, 32, 14, 14]
        a2 = F.max_pool2d(torch.relu(self.b2(self.c2(a1))), 2)  # [N, 64, 7, 7]
        h = torch.relu(self.bf(self.f1(torch.flatten(a2, 1))))
        return self.out(F.dropout(h, 0.3, self.training))


class Block(nn.Module):
    """One pre-norm encoder block of examples/transformer.nnd."""
    def __init__(self, d=64, h=4):
        super().__init__()
        self.h, self.dh = h, d // h
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.m1, self.m2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def heads(self, x):                                 # [N, T, D] -> [N, H, T, DH]
        return x.reshape(x.shape[0], x.shape[1], self.h, self.dh).transpose(1, 2)

    def forward(self, x):
        a = self.n1(x)
        s = torch.softmax(self.heads(self.q(a)) @ self.heads(self.k(a)).transpose(2, 3) / self.dh ** 0.5, -1)
        o = (s @ self.heads(self.v(a))).transpose(1, 2).reshape(x.shape)
        x = x + self.o(o)
        return x + self.m2(F.gelu(self.m1(self.n2(x))))


class Transformer(nn.Module):
    """examples/transformer.nnd: rows of the image embedded, a learned
    position embedding, two blocks, mean over positions, 10 classes."""
    def __init__(self, d=64):
        super().__init__()
        self.e, self.pos = nn.Linear(28, d), nn.Parameter(torch.randn(28, d) * 0.02)
        self.b1, self.b2, self.nf, self.out = Block(d), Block(d), nn.LayerNorm(d), nn.Linear(d, 10)

    def forward(self, x):                               # x: [N, 28, 28]
        h = self.b2(self.b1(self.e(x) + self.pos))
        return self.out(self.nf(h).mean(1))


class Rnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.out = nn.RNN(28, 128, batch_first=True), nn.Linear(128, 10)

    def forward(self, x):                               # x: [N, 28, 28]
        _, h = self.rnn(x)                              # h: [1, N, 128]
        return self.out(h[0])


class Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.out = nn.LSTM(28, 128, batch_first=True), nn.Linear(128, 10)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.out(h[0])


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1, self.e2 = nn.Linear(784, 128), nn.Linear(128, 32)
        self.d1, self.d2 = nn.Linear(32, 128), nn.Linear(128, 784)

    def forward(self, x):
        code = torch.relu(self.e2(torch.relu(self.e1(x))))
        return code, torch.sigmoid(self.d2(torch.relu(self.d1(code))))


class Vae(nn.Module):
    """examples/vae.nnd: 784 -> 400 -> (mu, logvar) of 20; decoder 20 -> 400 -> 784."""
    def __init__(self):
        super().__init__()
        self.h, self.mu, self.lv = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.d1, self.d2 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = torch.relu(self.h(x))
        mu, logvar = self.mu(h), self.lv(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.d2(torch.relu(self.d1(z))), mu, logvar


def elbo(net, x, y):
    """The negative ELBO per sample (vae.nnd's loss); reconstructions for inference."""
    logits, mu, logvar = net(x)
    if y is None:
        return torch.sigmoid(logits)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    return recon - 0.5 * torch.sum(1 + logvar - mu * mu - torch.exp(logvar)) / x.shape[0]


def classify(net, x, y):
    """Loss for training, outputs (softmax probabilities) for inference."""
    logits = net(x)
    return F.cross_entropy(logits, y) if y is not None else torch.softmax(logits, -1)


def reconstruct(net, x, y):
    code, recon = net(x)
    return F.mse_loss(recon, x) if y is not None else (code, recon)


# name: (module, input shape per sample, loss/outputs, optimizer as in the train block)
MODELS = {
    "mlp": (Mlp, (784,), classify, lambda p: torch.optim.Adam(p, lr=1e-3)),
    "logreg": (Logreg, (784,), classify, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "deep_mlp": (DeepMlp, (784,), classify, lambda p: torch.optim.RMSprop(p, lr=1e-3)),
    "lenet": (Lenet, (1, 28, 28), classify, lambda p: torch.optim.Adam(p, lr=1e-3)),
    "cnn_bn": (CnnBn, (1, 28, 28), classify, lambda p: torch.optim.Adam(p, lr=1e-3)),
    "transformer": (Transformer, (28, 28), classify, lambda p: torch.optim.Adam(p, lr=1e-3)),
    "vae": (Vae, (784,), elbo, lambda p: torch.optim.Adam(p, lr=1e-3)),
    "rnn": (Rnn, (28, 28), classify, lambda p: torch.optim.Adam(p, lr=1e-3)),
    "lstm": (Lstm, (28, 28), classify, lambda p: torch.optim.Adam(p, lr=1e-3)),
    "autoencoder": (Autoencoder, (784,), reconstruct, lambda p: torch.optim.Adam(p, lr=1e-3)),
}


def timed(fn, warmup, repeats):
    """Per-call seconds of fn over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    s = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        s.append(time.perf_counter() - t0)
    return s


def bench_train(name, batch, warmup, repeats):
    cls, shape, run, make_opt = MODELS[name]
    net = cls()
    net.train()
    opt = make_opt(net.parameters())
    x = torch.rand(batch, *shape)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = run(net, x, y)
        loss.backward()
        opt.step()
    return timed(step, warmup, repeats)


def bench_infer(name, batch, warmup, repeats):
    cls, shape, run, _ = MODELS[name]
    net = cls()
    net.eval()
    x = torch.rand(batch, *shape)

    def step():
        with torch.no_grad():
            run(net, x, None)
    return timed(step, warmup, repeats)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--infer-batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=50, help="timed training steps")
    ap.add_argument("--infer-repeats", type=int, default=500, help="timed inference calls")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models.split(","):
        if name not in MODELS:
            sys.exit("torch_bench.py: unknown model %s" % name)
        for mode, fn, batch, reps in (("train", bench_train, args.train_batch, args.repeats),
                                      ("infer", bench_infer, args.infer_batch, args.infer_repeats)):
            s = fn(name, batch, max(5, reps // 10), reps)
            print(json.dumps({"framework": "torch", "version": torch.__version__, "model": name, "mode": mode,
                              "batch": batch, "threads": torch.get_num_threads(), "repeats": reps,
                              "step_us_min": min(s) * 1e6, "step_us_median": statistics.median(s) * 1e6,
                              "step_us_max": max(s) * 1e6}), flush=True)


if __name__ == "__main__":
    main()
