#!/usr/bin/python3
"""torch_train.py - trains a model of bench/torch_bench.py on Fashion-MNIST
with the recipe of its .nnd example (optimizer, batch, epochs; pixels
scaled to [0, 1]; reshuffled every epoch; he_uniform weights and zero biases
(cnn_bn) or glorot_uniform (transformer) weights and zero biases as the
example declares them, PyTorch's defaults elsewhere) and prints
the test accuracy after every epoch and the wall time: the PyTorch
reference of the README's Fashion-MNIST table.

  /usr/bin/python3 bench/torch_train.py --model cnn_bn --epochs 7 --threads 2
  /usr/bin/python3 bench/torch_train.py --model vae --epochs 10 --batch 128
"""
import argparse
import gzip
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_bench import MODELS, elbo

D = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def he_uniform(net):
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")   # bound sqrt(6 / fan_in)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def glorot_uniform(net):
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


INIT = {"cnn_bn": he_uniform, "transformer": glorot_uniform, "vae": glorot_uniform}   # as the examples declare their params


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cnn_bn")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cls, shape, run, make_opt = MODELS[args.model]
    xs = torch.from_numpy(idx(D + "/train-images-idx3-ubyte.gz").astype(np.float32) / 255).reshape(-1, *shape)
    ys = torch.from_numpy(idx(D + "/train-labels-idx1-ubyte.gz").astype(np.int64))
    xt = torch.from_numpy(idx(D + "/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255).reshape(-1, *shape)
    yt = torch.from_numpy(idx(D + "/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    net = cls()
    INIT.get(args.model, he_uniform)(net)
    opt = make_opt(net.parameters())
    n = xs.shape[0] // args.batch * args.batch   # a final partial batch is dropped, as nndc does
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(xs.shape[0])[:n]
        for k in range(0, n, args.batch):
            i = perm[k:k + args.batch]
            opt.zero_grad(set_to_none=True)
            loss = run(net, xs[i], ys[i] if run is not elbo else 0)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            if run is elbo:   # the test loss: the negative ELBO per sample (one draw of z)
                res = "test loss %.4f" % (sum(run(net, xt[k:k + 1000], 0).item() for k in range(0, 10000, 1000)) / 10)
            else:
                acc = sum((net(xt[k:k + 1000]).argmax(1) == yt[k:k + 1000]).sum().item() for k in range(0, 10000, 1000))
                res = "test accuracy %.4f" % (acc / 10000)
        print("epoch %d/%d: %s  (%.0f s)" % (epoch + 1, args.epochs, res, time.time() - t0), flush=True)


if __name__ == "__main__":
    main()
