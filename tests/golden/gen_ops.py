#!/usr/bin/python3
"""gen_ops.py - golden inputs and PyTorch outputs for every op of the
reference interpreter (tests/test_interp.c reads them).

Run with /usr/bin/python3 (PyTorch 1.13, numpy) from anywhere:
    /usr/bin/python3 tests/golden/gen_ops.py
Each case NAME writes NAME_x0.npy, NAME_x1.npy, ... (operands, in order) and
NAME_y.npy (the expected result).  Shapes are small and odd so that an index
mix-up cannot hide; attributes are repeated in test_interp.c beside the case.
"""
import os
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops")
rng = np.random.default_rng(1234)


def f32(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def save(name, inputs, y):
    for k, x in enumerate(inputs):
        np.save(os.path.join(OUT, f"{name}_x{k}.npy"), np.array(x, order="C"))
    y = np.asarray(y)
    y = y.astype(np.int32 if y.dtype.kind in "iu" else np.float32)
    np.save(os.path.join(OUT, f"{name}_y.npy"), np.array(y, order="C"))


def case(name, fn, *inputs):
    t = [torch.from_numpy(x) for x in inputs]
    save(name, inputs, fn(*t).detach().numpy())


def binaries():
    ops = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
           "maximum": torch.maximum, "minimum": torch.minimum}
    for name, fn in ops.items():
        case(f"{name}_bc", fn, f32(3, 5), f32(5))          # trailing broadcast
        case(f"{name}_outer", fn, f32(3, 1), f32(1, 5))    # both sides stretch
        case(f"{name}_3d", fn, f32(2, 3, 4), f32(3, 1))    # rank differs
    case("div_same", torch.div, f32(3, 5), f32(3, 5, lo=0.5, hi=2))
    cmps = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge}
    for name, fn in cmps.items():
        a = rng.integers(-2, 3, size=(3, 5)).astype(np.float32)   # small ints: many ties
        b = rng.integers(-2, 3, size=(5,)).astype(np.float32)
        case(name, lambda x, y, fn=fn: fn(x, y).float(), a, b)
    a = rng.integers(-2, 3, size=(3, 5)).astype(np.float32)
    b = rng.integers(-2, 3, size=(3, 1)).astype(np.int32)       # i32 compared by value
    case("lt_i32", lambda x, y: torch.lt(x, y).float(), a, b)


def unaries():
    x = f32(3, 5, lo=-3, hi=3)
    x[0, 0], x[0, 1], x[0, 2] = 0.0, 25.0, -25.0                 # softplus threshold, sign 0
    pos = f32(3, 5, lo=0.1, hi=4)
    ops = {"neg": torch.neg, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
           "exp": lambda t: torch.exp(torch.clamp(t, max=10)), "abs": torch.abs,
           "softplus": F.softplus, "gelu": F.gelu, "erf": torch.erf, "sign": torch.sign,
           "elu": lambda t: F.elu(t, alpha=0.7), "leaky_relu": lambda t: F.leaky_relu(t, 0.1),
           "clamp": lambda t: torch.clamp(t, -0.5, 0.7), "pow2": lambda t: t ** 2,
           "pow3": lambda t: t ** 3}
    for name, fn in ops.items():
        if name == "exp":
            case(name, torch.exp, np.clip(x, -10, 10))
        else:
            case(name, fn, x)
    case("log", torch.log, pos)
    case("sqrt", torch.sqrt, pos)
    case("pow_half", lambda t: t ** 0.5, pos)
    case("cast", lambda t: t.float(), rng.integers(-5, 6, size=(2, 3)).astype(np.int32))


def reductions():
    x = f32(2, 3, 4)
    t = torch.from_numpy(x)
    for mask in range(8):
        axes = [k for k in range(3) if mask >> k & 1] or [0, 1, 2]
        for kd in (0, 1):
            y = {"sum": torch.sum(t, dim=axes, keepdim=bool(kd)),
                 "mean": torch.mean(t, dim=axes, keepdim=bool(kd)),
                 "max": torch.amax(t, dim=axes, keepdim=bool(kd))}
            for name, v in y.items():
                save(f"{name}_m{mask}_k{kd}", [x], v.numpy())
    for ax in (0, 1, 2):
        save(f"argmax_a{ax}", [x], torch.argmax(t, dim=ax).numpy())


def shapes():
    x = f32(2, 3, 4)
    case("transpose", lambda t: t.permute(2, 0, 1), x)
    case("slice", lambda t: t[1:2, 0:3, 2:4], x)
    case("slice_bwd", lambda t: F.pad(t, (2, 0, 0, 0, 1, 0)), f32(1, 3, 2))   # into [2,3,4] at [1,0,2]
    case("concat", lambda a, b, c: torch.cat([a, b, c], dim=1), f32(2, 1, 4), f32(2, 3, 4), f32(2, 2, 4))
    case("expand", lambda t: t.expand(2, 3, 4), f32(3, 1))


def matrix():
    case("matmul", torch.matmul, f32(3, 4), f32(4, 5))
    case("matmul_bb", torch.matmul, f32(2, 3, 4), f32(2, 4, 5))
    case("matmul_b2", torch.matmul, f32(2, 3, 4), f32(4, 5))


def neural():
    x = f32(3, 5, lo=-4, hi=4)
    for ax in (0, 1):
        case(f"softmax_a{ax}", lambda t: F.softmax(t, dim=ax), x)
        case(f"log_softmax_a{ax}", lambda t: F.log_softmax(t, dim=ax), x)
    case("softmax_3d", lambda t: F.softmax(t, dim=1), f32(2, 3, 4))
    lab = np.array([0, 3, 1, 7, -1, 2], dtype=np.int32)             # 7, -1: out of range
    oh = np.zeros((6, 4), np.float32)
    for r, c in enumerate(lab):
        if 0 <= c < 4:
            oh[r, c] = 1
    save("one_hot", [lab], oh)
    logits, y = f32(5, 4, lo=-3, hi=3), np.array([0, 3, 1, 1, 2], dtype=np.int32)
    case("cross_entropy", lambda a, b: F.cross_entropy(a, b.long()), logits, y)
    case("mse", F.mse_loss, f32(3, 5), f32(3, 5))
    case("bce_logits", F.binary_cross_entropy_with_logits, f32(3, 5, lo=-5, hi=5), f32(3, 5, lo=0, hi=1))


def conv():
    for s in (1, 2):
        for p in (0, 1):
            x, w, = f32(2, 3, 7, 7), f32(4, 3, 3, 3)
            tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
            y = F.conv2d(tx, tw, stride=s, padding=p)
            dy = f32(*y.shape)
            y.backward(torch.from_numpy(dy))
            save(f"conv_s{s}_p{p}", [x, w], y.detach().numpy())
            save(f"conv_bwd_x_s{s}_p{p}", [dy, w], tx.grad.numpy())
            save(f"conv_bwd_w_s{s}_p{p}", [x, dy], tw.grad.numpy())


def pool():
    for k, s in ((2, 2), (3, 2), (3, 1)):
        for name, fn in (("maxpool", F.max_pool2d), ("avgpool", F.avg_pool2d)):
            x = f32(2, 3, 7, 7)
            tx = torch.from_numpy(x).requires_grad_()
            y = fn(tx, k, s)
            dy = f32(*y.shape)
            y.backward(torch.from_numpy(dy))
            save(f"{name}_k{k}_s{s}", [x], y.detach().numpy())
            if name == "maxpool":
                save(f"{name}_bwd_k{k}_s{s}", [x, dy], tx.grad.numpy())
            else:
                save(f"{name}_bwd_k{k}_s{s}", [dy], tx.grad.numpy())


# conv2d with dilation, per-axis stride/padding and groups; conv_transpose2d.
# (name, x shape, w shape, stride, padding, dilation, groups); test_interp.c
# repeats the attributes.
CONV_MORE = [
    ("convm_dil", (2, 3, 9, 8), (4, 3, 3, 2), 1, 1, 2, 1),
    ("convm_rect", (2, 3, 9, 11), (5, 3, 3, 4), (2, 3), (1, 2), (1, 2), 1),
    ("convm_g2", (2, 4, 7, 9), (6, 2, 3, 3), 2, 1, 1, 2),
    ("convm_dw2", (2, 3, 8, 7), (6, 1, 3, 3), 1, (1, 0), (2, 1), 3),
    ("convm_dw", (1, 5, 6, 7), (5, 1, 3, 3), (2, 1), 1, 1, 5),
]
# (name, x shape, w shape, stride, padding, output_padding, groups, dilation)
CONVT = [
    ("convt_s2_op1", (2, 4, 5, 6), (4, 3, 3, 3), 2, 1, 1, 1, 1),
    ("convt_g2", (2, 4, 5, 5), (4, 3, 3, 2), (1, 2), (0, 1), 0, 2, 1),
    ("convt_dil2", (2, 2, 4, 5), (2, 3, 3, 2), 2, 1, (1, 0), 1, 2),
    ("convt_op_dil", (1, 2, 5, 4), (2, 3, 3, 2), 1, 1, 1, 1, 2),   # output_padding >= stride, < dilation
]


def conv_more():
    for name, xs, ws, st, pd, dl, g in CONV_MORE:
        x, w = f32(*xs), f32(*ws)
        tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
        y = F.conv2d(tx, tw, stride=st, padding=pd, dilation=dl, groups=g)
        dy = f32(*y.shape)
        y.backward(torch.from_numpy(dy))
        save(name, [x, w], y.detach().numpy())
        save(f"{name}_bwd_x", [dy, w], tx.grad.numpy())
        save(f"{name}_bwd_w", [x, dy], tw.grad.numpy())
    for name, xs, ws, st, pd, op, g, dl in CONVT:
        x, w = f32(*xs), f32(*ws)
        tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
        y = F.conv_transpose2d(tx, tw, stride=st, padding=pd, output_padding=op, groups=g, dilation=dl)
        dy = f32(*y.shape)
        y.backward(torch.from_numpy(dy))
        save(name, [x, w], y.detach().numpy())
        save(f"{name}_dx", [dy, w], tx.grad.numpy())   # conv2d(dy, w), cropped to x
        save(f"{name}_dw", [dy, x], tw.grad.numpy())   # conv2d_bwd_w(dy, x)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".npy"):
            os.remove(os.path.join(OUT, f))
    binaries(); unaries(); reductions(); shapes(); matrix(); neural(); conv(); pool()
    conv_more()
