#!/usr/bin/python3
"""Golden values for tests/test_optim.c, from torch.optim (PyTorch 1.13).

Run with /usr/bin/python3 from this directory.  For every optimizer
configuration below, a [2,3] param starts at P0 and takes STEPS steps with
the fixed gradients G[k]; optim/<case>.p.npy holds the param after each
step ([STEPS,2,3]) and optim/<case>.<slot>.npy the optimizer state after
each step.  Also writes the inputs, params, loss and gradients of a tiny MLP
(matmul + bias + relu + cross_entropy) under optim/mlp.*.npy.
The case table must match the one in tests/test_optim.c.
"""
import os
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim")
STEPS = 4

CASES = [
    ("sgd_plain", torch.optim.SGD, dict(lr=0.1)),
    ("sgd_momentum", torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    ("sgd_nesterov", torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd_wd", torch.optim.SGD, dict(lr=0.1, weight_decay=0.01)),
    ("sgd_momentum_wd", torch.optim.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.1)),
    ("adam", torch.optim.Adam, dict(lr=0.01)),
    ("adam_wd", torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)),
    ("adamw", torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    ("rmsprop", torch.optim.RMSprop, dict(lr=0.01)),
    ("rmsprop_momentum", torch.optim.RMSprop, dict(lr=0.01, momentum=0.9)),
    ("rmsprop_wd", torch.optim.RMSprop, dict(lr=0.02, alpha=0.9, eps=1e-6, momentum=0.5, weight_decay=0.1)),
    ("adagrad", torch.optim.Adagrad, dict(lr=0.1)),
    ("adagrad_wd", torch.optim.Adagrad, dict(lr=0.1, eps=1e-6, weight_decay=0.1)),
]

SLOTS = {"SGD": ["momentum_buffer"], "Adam": ["exp_avg", "exp_avg_sq"],
         "AdamW": ["exp_avg", "exp_avg_sq"], "RMSprop": ["square_avg", "momentum_buffer"],
         "Adagrad": ["sum"]}


def save(name, a):
    np.save(os.path.join(OUT, name + ".npy"), a)


def optim_cases():
    rng = np.random.RandomState(42)
    p0 = rng.uniform(-1, 1, (2, 3)).astype(np.float32)
    grads = rng.uniform(-1, 1, (STEPS, 2, 3)).astype(np.float32)
    save("p0", p0)
    save("grads", grads)
    for name, cls, kw in CASES:
        p = torch.tensor(p0.copy(), requires_grad=True)
        opt = cls([p], foreach=False, **kw)
        ps, states = [], {s: [] for s in SLOTS[cls.__name__]}
        for k in range(STEPS):
            p.grad = torch.tensor(grads[k])
            opt.step()
            ps.append(p.detach().numpy().copy())
            st = opt.state[p]
            for s in states:
                if st.get(s) is not None:
                    states[s].append(st[s].numpy().copy())
        save(name + ".p", np.stack(ps))
        for s, v in states.items():
            if v:
                save(name + "." + s, np.stack(v))


def mlp():
    rng = np.random.RandomState(7)
    x = rng.uniform(-1, 1, (4, 5)).astype(np.float32)
    y = np.array([2, 0, 1, 2], dtype=np.int32)
    ps = {"W1": rng.uniform(-0.8, 0.8, (5, 6)), "b1": rng.uniform(-0.3, 0.3, (6,)),
          "W2": rng.uniform(-0.8, 0.8, (6, 3)), "b2": rng.uniform(-0.3, 0.3, (3,))}
    t = {k: torch.tensor(v.astype(np.float32), requires_grad=True) for k, v in ps.items()}
    h = torch.relu(torch.tensor(x) @ t["W1"] + t["b1"])
    logits = h @ t["W2"] + t["b2"]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y, dtype=torch.int64))
    loss.backward()
    save("mlp.x", x)
    save("mlp.y", y)
    save("mlp.loss", np.array(loss.item(), dtype=np.float32))
    for k, v in t.items():
        save("mlp." + k, v.detach().numpy())
        save("mlp.grad." + k, v.grad.numpy())


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    optim_cases()
    mlp()
