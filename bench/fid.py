#!/usr/bin/python3
"""Frechet distance between two sets of feature vectors (numpy only):
|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the square root's trace taken
as the sum of the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2)
(symmetric, so numpy's eigh suffices).  Lower is better.

usage: fid.py A.npy B.npy     (each [n, d]: one feature vector per image)
"""
import sys
import numpy as np


def sqrt_psd(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    r = sqrt_psd(s1)
    ev = np.linalg.eigvalsh(r @ s2 @ r)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())


if __name__ == "__main__":
    a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
    print("%.4f" % frechet(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)))
