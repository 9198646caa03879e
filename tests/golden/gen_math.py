#!/usr/bin/python3
"""gen_math.py - float32 sweeps over the whole range of every math routine
and PyTorch's float32 results (tests/test_math.c reads them).

Run with /usr/bin/python3 (PyTorch 1.13, numpy) from anywhere:
    /usr/bin/python3 tests/golden/gen_math.py
Unary case NAME writes math/NAME_x.npy (f32[n]: a logarithmic sweep of both
signs from the smallest subnormal to FLT_MAX, a dense grid around 0, dense
grids over the op's interesting range, its branch points and their
neighbours 1-3 ulp away, +-0, +-inf, NaN) and math/NAME_y.npy (PyTorch's
result).  Loss cases write their operands (NAME_x.npy, NAME_t.npy), the loss
of each row or element alone (NAME_y.npy) and of the whole batch
(NAME_mean.npy); softmax cases one [R, C] input and both axes.

PyTorch's CPU kernels are vectorized (AVX2 here): every case is evaluated
as one tensor padded to a multiple of 64 elements, so each element goes
through the vector path (gelu's erf there is an approximation; the scalar
remainder path uses libm's).  The case table must match tests/test_math.c.
"""
import os
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "math")
F32 = np.float32
FMAX = np.finfo(F32).max
TINY = F32(2.0 ** -149)                 # smallest subnormal
FMIN = F32(2.0 ** -126)                 # smallest normal


def common():
    """The part of every sweep: both signs of a log sweep over every binade
    (subnormals included), a dense grid on [-1, 1], the special values."""
    mags = np.minimum(np.logspace(np.log10(TINY), np.log10(FMAX), 480), FMAX).astype(F32)
    mags = np.concatenate([mags, [TINY, 2 * TINY, 3 * TINY, FMIN - TINY, FMIN, np.nextafter(FMIN, F32(1)), FMAX]])
    near0 = np.linspace(-1, 1, 257, dtype=F32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], F32)
    return np.concatenate([mags, -mags, near0, special]).astype(F32)


def around(points, k=3):
    """Each point, both signs, and its neighbours up to k ulp away."""
    out = []
    for p in points:
        for s in (F32(p), F32(-p)):
            up = dn = s
            out.append(s)
            for _ in range(k):
                up, dn = np.nextafter(up, F32(np.inf)), np.nextafter(dn, F32(-np.inf))
                out += [up, dn]
    return np.array(out, F32)


def sweep(ranges=(), points=()):
    parts = [common(), around(points)]
    parts += [np.linspace(lo, hi, n, dtype=F32) for lo, hi, n in ranges]
    return np.concatenate(parts).astype(F32)


def torch_vec(fn, x):
    """fn over x as one contiguous tensor padded to whole vectors."""
    pad = (-len(x)) % 64
    xp = np.concatenate([x, np.ones(pad, F32)])
    y = fn(torch.from_numpy(xp)).numpy()[: len(x)]
    return np.ascontiguousarray(y.astype(F32))


def save(name, **arrays):
    for k, v in arrays.items():
        np.save(os.path.join(OUT, f"{name}_{k}.npy"), np.ascontiguousarray(v))


def pow_fn(p):
    return lambda t: t ** p


# name, torch function, extra dense ranges, branch points.  The .nnd
# expression of each is in tests/test_math.c.
UNARY = [
    ("exp", torch.exp, [(-110, 95, 1200)], [88.72283, 88.7228, 87.33654, 103.97208, 104.0, 0.34657359]),
    ("log", torch.log, [(0.5, 2, 600), (0.99, 1.01, 200)], [0.70710677, 1.0, 1.4142135, FMIN]),
    ("sqrt", torch.sqrt, [(0, 4, 200)], [1.0, FMIN]),
    ("tanh", torch.tanh, [(-12, 12, 1200)], [0.3, 0.55, 0.625, 9.0, 9.01, 10.0, 44.0]),
    ("sigmoid", torch.sigmoid, [(-110, 110, 1200)], [16.6, 88.72283, 88.7228, 103.97208]),
    ("softplus", F.softplus, [(-110, 30, 1400)], [20.0, 17.0, 12.0, 88.72283, 103.97208, 1e-7]),
    ("gelu", F.gelu, [(-12, 12, 1200), (-6, -2, 400)], [0.70710677, 3.0, 5.0, 5.5]),
    ("elu", F.elu, [(-20, 5, 800), (-1e-3, 0, 200)], [1e-7, 88.72283, 103.97208]),
    ("elu_a07", lambda t: F.elu(t, alpha=0.7), [(-20, 5, 400)], [1e-7]),
    ("erf", torch.erf, [(-6, 6, 1200)], [0.5, 1.0, 0.84375, 0.921875, 3.9, 4.0, 10.0]),
    ("relu", torch.relu, [], []),
    ("leaky_relu", F.leaky_relu, [], []),
    ("abs", torch.abs, [], []),
    ("neg", torch.neg, [], []),
    ("clamp", lambda t: torch.clamp(t, -0.5, 0.7), [], [0.5, 0.7]),
    ("pow_2", pow_fn(2.0), [(-4, 4, 400)], [1.8446744e19]),
    ("pow_3", pow_fn(3.0), [(-4, 4, 400)], [6.9814635e12]),
    ("pow_0p5", pow_fn(0.5), [(0, 4, 400)], []),
    ("pow_m0p5", pow_fn(-0.5), [(0, 4, 400)], []),
    ("pow_m1", pow_fn(-1.0), [(-4, 4, 400)], [FMAX / 4]),
    ("pow_m2", pow_fn(-2.0), [(-4, 4, 400)], [1.8446744e19, 5.421011e-20]),
    ("pow_1p5", pow_fn(1.5), [(-4, 4, 400)], [6.9814635e25]),
    ("pow_m1p5", pow_fn(-1.5), [(-4, 4, 400)], []),
]


def unaries():
    for name, fn, ranges, points in UNARY:
        x = sweep(ranges, points)
        save(name, x=x, y=torch_vec(fn, x))
    # mean(log(softplus(x))): one fused kernel (softplus, log) then the mean
    x = np.linspace(-30, -15, 64, dtype=F32)
    y = torch.mean(torch.log(F.softplus(torch.from_numpy(x))))
    save("log_softplus", x=x, y=np.array(y.item(), F32))


def ce_rows(name, x, t):
    """Per-row losses (each row its own cross_entropy) and the batch mean."""
    tx, tt = torch.from_numpy(x), torch.from_numpy(t).long()
    rows = np.array([F.cross_entropy(tx[r:r + 1], tt[r:r + 1]).item() for r in range(len(t))], F32)
    save(name, x=x, t=t, y=rows, mean=np.array(F.cross_entropy(tx, tt).item(), F32))


def losses():
    # the case: a confidently right row, loss 1.19e-6 in PyTorch
    ce_rows("ce_one", np.array([[0.0, 13.63]], F32), np.array([1], np.int32))
    # two classes: every margin, confident right and wrong, at several offsets
    # (the offset is rounded away by x - max in the old lowering)
    margins = [-90, -30, -13.63, -5, -1, -1e-3, 0, 1e-3, 1, 5, 13.63, 17, 20, 30, 90]
    x, t = [], []
    for base in (0.0, 50.0, 3e4):
        for m in margins:
            x.append([base, base + m])
            t.append(1)
    ce_rows("ce2", np.array(x, F32), np.array(t, np.int32))
    # fewer than 8 classes (PyTorch sums exp(x - max) in order, as the
    # kernels do) and 10 classes (PyTorch sums in vector lanes)
    rng = np.random.default_rng(7)
    for c, name in ((7, "ce7"), (10, "ce10")):
        x, t = [], []
        for scale in (0.1, 3.0, 30.0):
            for off in (0.0, 40.0):
                for which in ("max", "rand"):
                    row = rng.normal(size=c) * scale + off
                    x.append(row)
                    t.append(int(np.argmax(row) if which == "max" else np.argmin(row) if which == "min" else rng.integers(c)))
        x.append(np.full(c, 3.0))                        # uniform: log(c)
        t.append(0)
        row = np.full(c, -20.0)                          # one confident class
        row[2] = 0.0
        x.append(row)
        t.append(2)
        ce_rows(name, np.array(x, F32), np.array(t, np.int32))
    # bce_logits element by element: every logit against targets 0, 1 and
    # nearly 1 (the linear term (1 - t) z loses digits as z - z t)
    zs = [-100, -17, -3, -1, -1e-3, 0, 1e-3, 1, 3, 17, 100]
    z = np.array([v for v in zs for _ in range(3)], F32)
    t = np.array([0.0, 1.0, 0.99999] * len(zs), F32)
    tz, tt = torch.from_numpy(z), torch.from_numpy(t)
    rows = np.array([F.binary_cross_entropy_with_logits(tz[i:i + 1], tt[i:i + 1]).item() for i in range(len(z))], F32)
    save("bce", x=z, t=t, y=rows, mean=np.array(F.binary_cross_entropy_with_logits(tz, tt).item(), F32))
    a = np.array([1, 1e-3, 1e3, 1e19, 1e-20, -7], F32)
    b = np.array([1 + 2 ** -23, -1e-3, 1e3 + 0.5, -1e19, 0, 7.5], F32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    rows = np.array([F.mse_loss(ta[i:i + 1], tb[i:i + 1]).item() for i in range(len(a))], F32)
    save("mse", x=a, t=b, y=rows, mean=np.array(F.mse_loss(ta, tb).item(), F32))


def softmaxes():
    rng = np.random.default_rng(11)
    rows = [rng.normal(size=9) * s for s in (0.01, 1, 10, 40, 300)]
    rows.append(np.array([0, 13.63, -1e4, 5, -np.inf, 2, 13.63, -90, 0.5]))   # masked, confident
    rows.append(np.array([1e4, 1e4 + 30, 1e4 - 100, 1e4, 1e4 + 30, 1e4, 1e4 - 1, 1e4, 1e4]))
    x = np.array(rows, F32)
    tx = torch.from_numpy(x)
    save("softmax", x=x, a1=F.softmax(tx, 1).numpy(), a0=F.softmax(tx, 0).numpy())
    save("log_softmax", x=x, a1=F.log_softmax(tx, 1).numpy(), a0=F.log_softmax(tx, 0).numpy())


if __name__ == "__main__":
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".npy"):
            os.remove(os.path.join(OUT, f))
    unaries(); losses(); softmaxes()
