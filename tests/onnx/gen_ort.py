#!/usr/bin/env python3
"""gen_ort.py - ONNX Runtime's outputs for models `nndc export` wrote: the
independent oracle of tests/test_export.c (export_matches_onnxruntime).

    python3 -m venv /tmp/venv-ort && /tmp/venv-ort/bin/pip install onnxruntime onnx numpy
    /tmp/venv-ort/bin/python tests/onnx/gen_ort.py build/nndc

For each model of MODELS (small sizes through -D) it writes
tests/onnx/ort/<name>/: params.safetensors (random params, running
variances in [0.5, 1.5)), model.onnx (`nndc export ... --load` of them),
in_<input>.npy (3 samples; i32 inputs in [0, 5)), out_<output>.npy (what
onnxruntime computes from model.onnx on them), and args (the .nnd and its
-D options, for the test).  The test exports the same model and params
again, expects model.onnx byte for byte, and expects `nndc run` of the .nnd
to give out_*.npy to 1e-5.  onnxruntime is only needed here, never to build
or test."""
import json, os, subprocess, sys, tempfile
import numpy as np
import onnx
import onnxruntime as ort

MODELS = [
    ("ops", "tests/onnx/ort/ops.nnd", []),
    ("conv", "tests/onnx/ort/conv.nnd", []),
    ("transformer", "examples/transformer.nnd", ["-D", "T=8", "-D", "D=16", "-D", "H=2", "-D", "DH=8"]),
    ("lstm", "examples/lstm.nnd", ["-D", "T=6", "-D", "H=16"]),
    ("gpt", "examples/gpt.nnd", ["-D", "L=8", "-D", "D=16", "-D", "H=2", "-D", "DH=8"]),
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_safetensors(path, tensors):
    header, off, blobs = {}, 0, []
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def nndc(binary, *args):
    subprocess.run([binary, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def generate(binary, name, nnd, defs, seed):
    out = os.path.join(ROOT, "tests/onnx/ort", name)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        nndc(binary, "export", nnd, *defs, "-o", os.path.join(tmp, "init.onnx"))
        inits = onnx.load(os.path.join(tmp, "init.onnx")).graph.initializer
    params = []
    for t in inits:
        shape = tuple(t.dims)
        if t.name.endswith(".running_var"):
            params.append((t.name, rng.uniform(0.5, 1.5, shape)))
        else:
            params.append((t.name, 0.3 * rng.standard_normal(shape)))
    write_safetensors(os.path.join(out, "params.safetensors"), params)
    model = os.path.join(out, "model.onnx")
    nndc(binary, "export", nnd, *defs, "--load", os.path.join("tests/onnx/ort", name, "params.safetensors"), "-o", model)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [3 if isinstance(d, str) else d for d in i.shape]
        a = rng.integers(0, 5, shape).astype(np.int32) if i.type == "tensor(int32)" else rng.standard_normal(shape).astype(np.float32)
        feeds[i.name] = a
        np.save(os.path.join(out, "in_%s.npy" % i.name), a)
    for o, v in zip(sess.get_outputs(), sess.run(None, feeds)):
        np.save(os.path.join(out, "out_%s.npy" % o.name), np.asarray(v, dtype=np.float32))
    with open(os.path.join(out, "args"), "w") as f:
        f.write(" ".join([nnd] + defs) + "\n")
    print("%s: %d params, %d inputs, %d outputs (onnxruntime %s)" % (name, len(params), len(feeds), len(sess.get_outputs()), ort.__version__))


def main():
    binary = os.path.abspath(sys.argv[1])
    for k, (name, nnd, defs) in enumerate(MODELS):
        generate(binary, name, nnd, defs, 1000 + k)


if __name__ == "__main__":
    main()
