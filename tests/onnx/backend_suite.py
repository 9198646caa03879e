#!/usr/bin/python3
"""backend_suite.py - ONNX's own backend node tests through `nndc import` and `nndc run`.

    backend_suite.py NNDC [--data DIR] [--subset] [--jobs J] [--filter SUBSTR] [-v]

Every test directory of DIR (default /usr/share/libonnx-testdata/data/node:
model.onnx and test_data_set_*/{input,output}_*.pb) whose ops are all ones
the importer handles is imported, run on the JIT with each data set, and its
outputs compared with the expected ones (rtol 1e-3, atol 1e-5).  Printed:
pass / fail / unsupported per op (the op a test is named after: its first
non-Constant node), then the totals.  `unsupported` is a test the importer
refuses with a clear error (an attribute, dtype or form nndc has no
equivalent for); `fail` is a wrong value, a crash or any other error.

The suite feeds some operands as graph inputs that nndc needs as constants
(Reshape's shape, Slice's starts/ends/axes/steps, Squeeze/Unsqueeze/Reduce*
axes, Clip's bounds, Pow's exponent, Dropout's ratio, BatchNormalization's
running statistics, Split's sizes, the weights and sequence lengths of RNN,
GRU and LSTM), and scalar inputs, which `nndc run`
cannot feed (it feeds arrays with a sample axis): the runner folds those
inputs into initializers (their values from test_data_set_0) before
importing, as an exporter would have written them.

--subset runs the first 3 tests of each op (the CI run); exit status 1 if
any test fails (tests listed in KNOWN with a reason are reported, not
counted)."""
import concurrent.futures, os, re, shutil, subprocess, sys, tempfile
import numpy as np
import onnx
from onnx import numpy_helper

SUPPORTED = set("""Pad SoftmaxCrossEntropyLoss Resize Upsample PRelu And Or Xor Trilu Size ArgMin HardSigmoid HardSwish Softsign Selu Celu ThresholdedRelu Mish Expand ConstantOfShape RNN GRU LSTM Split Add Sub Mul Div Pow Equal Less Greater LessOrEqual GreaterOrEqual Max Min Sum Mean Neg Abs Sqrt
Exp Log Relu LeakyRelu Elu Sigmoid Tanh Softplus Erf Gelu Reciprocal Clip Where Not MatMul Gemm Conv ConvTranspose
MaxPool AveragePool GlobalAveragePool GlobalMaxPool BatchNormalization LayerNormalization Softmax LogSoftmax Reshape
Flatten Transpose Squeeze Unsqueeze Concat Slice Gather ReduceMean ReduceSum ReduceMax ReduceMin ReduceSumSquare
ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ArgMax Dropout Identity Constant Shape Cast""".split())

# operand slots nndc needs constant: op -> input indices
STATIC_SLOTS = {"Reshape": [1], "Slice": [1, 2, 3, 4], "Squeeze": [1], "Unsqueeze": [1], "ReduceSum": [1],
                "ReduceMean": [1], "ReduceMax": [1], "ReduceMin": [1], "ReduceSumSquare": [1], "ReduceL1": [1],
                "ReduceL2": [1], "ReduceLogSum": [1], "ReduceLogSumExp": [1], "Clip": [1, 2], "Pow": [1],
                "Dropout": [1, 2], "BatchNormalization": [3, 4], "Split": [1], "RNN": [1, 2, 3, 4],
                "GRU": [1, 2, 3, 4], "LSTM": [1, 2, 3, 4, 7], "Expand": [1], "ConstantOfShape": [0], "Trilu": [1],
                "Resize": [1, 2, 3], "Upsample": [1], "Pad": [1, 2, 3]}

# test -> why it is expected to fail (reported, not counted as a failure)
KNOWN = {}

RTOL, ATOL = 1e-3, 1e-5


def read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def data_sets(tdir):
    return sorted(d for d in os.listdir(tdir) if d.startswith("test_data_set_"))


def op_of(model):
    for n in model.graph.node:
        if n.op_type != "Constant":
            return n.op_type
    return model.graph.node[0].op_type if model.graph.node else "?"


def fold_static_inputs(model, tdir):
    """Graph inputs that feed STATIC_SLOTS, and scalar inputs (nndc run feeds
    arrays with a sample axis only), become initializers (data set 0)."""
    names = set()
    for n in model.graph.node:
        for k in STATIC_SLOTS.get(n.op_type, []):
            if k < len(n.input) and n.input[k]:
                names.add(n.input[k])
    inits = {i.name for i in model.graph.initializer}
    ds = data_sets(tdir)
    if not ds:
        return []
    folded = []
    inputs = [i for i in model.graph.input if i.name not in inits]
    for k, inp in enumerate(inputs):
        scalar = inp.type.tensor_type.HasField("shape") and len(inp.type.tensor_type.shape.dim) == 0
        if inp.name in names or scalar:
            arr = read_pb(os.path.join(tdir, ds[0], "input_%d.pb" % k))
            model.graph.initializer.append(numpy_helper.from_array(arr, inp.name))
            folded.append(k)
    keep = [i for k, i in enumerate(inputs) if k not in folded]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return folded


def to_feed(arr):
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype in (np.float32, np.int32, np.int64, np.uint8):
        return arr if arr.dtype != np.uint8 else arr.astype(np.int32)
    if arr.dtype in (np.int8, np.int16, np.uint16, np.uint32):
        return arr.astype(np.int32)
    return None


def nnd_names(nnd_path):
    ins, outs = [], []
    for line in open(nnd_path):
        m = re.match(r"input (\w+):", line)
        if m:
            ins.append(m.group(1))
        m = re.match(r"output (\w+)", line)
        if m:
            outs.append(m.group(1))
    return ins, outs


def run_test(nndc, tdir):
    """-> (status, message): status pass, fail or unsupported."""
    model = onnx.load(os.path.join(tdir, "model.onnx"))
    work = tempfile.mkdtemp(prefix="nndc_onnx_")
    try:
        folded = fold_static_inputs(model, tdir)
        mpath = os.path.join(work, "model.onnx")
        onnx.save(model, mpath)
        r = subprocess.run([nndc, "import", mpath, "-o", work], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            msg = r.stderr.strip().splitlines()[0] if r.stderr.strip() else "exit %d" % r.returncode
            if r.returncode == 1 and "unsupported" in r.stderr and "importer bug" not in r.stderr:
                return "unsupported", msg
            return "fail", "import: " + msg
        ins, outs = nnd_names(os.path.join(work, "model.nnd"))
        for ds in data_sets(tdir):
            dsdir = os.path.join(tdir, ds)
            feeds, k, j = [], 0, 0
            while os.path.exists(os.path.join(dsdir, "input_%d.pb" % k)):
                if k not in folded:
                    arr = to_feed(read_pb(os.path.join(dsdir, "input_%d.pb" % k)))
                    if arr is None:
                        return "unsupported", "input %d's element type" % k
                    if j >= len(ins):
                        return "fail", "more data inputs than model inputs"
                    p = os.path.join(work, "in_%d.npy" % k)
                    np.save(p, np.ascontiguousarray(arr))
                    feeds += ["--feed", "%s=%s" % (ins[j], p)]
                    j += 1
                k += 1
            odir = os.path.join(work, "out_" + ds)
            r = subprocess.run([nndc, "run", os.path.join(work, "model.nnd"), "--load",
                                os.path.join(work, "model.safetensors"), "--out", odir, "--threads", "1"] + feeds,
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                return "fail", "run: " + (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[0]
            for k, name in enumerate(outs):
                exp = read_pb(os.path.join(dsdir, "output_%d.pb" % k))
                got = np.load(os.path.join(odir, name + ".npy"))
                if exp.dtype == np.bool_:
                    exp = exp.astype(np.float32)
                if got.shape != exp.shape:
                    return "fail", "%s: output %d has shape %s, expected %s" % (ds, k, got.shape, exp.shape)
                e64, g64 = exp.astype(np.float64), got.astype(np.float64)
                bad = ~np.isclose(g64, e64, rtol=RTOL, atol=ATOL, equal_nan=True)
                if bad.any():
                    i = np.argwhere(bad)[0]
                    return "fail", "%s: output %d at %s: %r, expected %r (%d of %d differ)" % (
                        ds, k, tuple(i), g64[tuple(i)], e64[tuple(i)], bad.sum(), bad.size)
        return "pass", ""
    except subprocess.TimeoutExpired:
        return "fail", "timeout"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    nndc = os.path.abspath(args[0])
    data, subset, jobs, filt, verbose = "/usr/share/libonnx-testdata/data/node", False, os.cpu_count() or 1, None, False
    i = 1
    while i < len(args):
        a = args[i]
        if a == "--data": data = args[i + 1]; i += 1
        elif a == "--subset": subset = True
        elif a == "--jobs": jobs = int(args[i + 1]); i += 1
        elif a == "--filter": filt = args[i + 1]; i += 1
        elif a == "-v": verbose = True
        else:
            print("unknown option " + a, file=sys.stderr)
            return 2
        i += 1
    tests, per_op_seen = [], {}
    stats = {}
    for t in sorted(os.listdir(data)):
        tdir = os.path.join(data, t)
        if not os.path.exists(os.path.join(tdir, "model.onnx")) or (filt and filt not in t):
            continue
        try:
            model = onnx.load(os.path.join(tdir, "model.onnx"))
        except Exception:
            continue
        op = op_of(model)
        s = stats.setdefault(op, {"pass": 0, "fail": 0, "unsupported": 0, "known": 0, "skipped": 0})
        ops = {n.op_type for n in model.graph.node}
        if not ops <= SUPPORTED:
            s["skipped"] += 1
            continue
        if subset and per_op_seen.get(op, 0) >= 3:
            continue
        per_op_seen[op] = per_op_seen.get(op, 0) + 1
        tests.append((t, tdir, op))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        results = list(ex.map(lambda x: (x, run_test(nndc, x[1])), tests))
    fails = 0
    for (t, tdir, op), (status, msg) in results:
        if status == "fail" and t in KNOWN:
            status, msg = "known", KNOWN[t] + " (" + msg + ")"
        stats[op][status] += 1
        fails += status == "fail"
        if status == "fail" or (verbose and status != "pass") or status == "known":
            print("%-11s %s: %s" % (status.upper(), t, msg))
    print("\n%-22s %5s %5s %6s %6s %8s" % ("op", "pass", "fail", "unsup", "known", "skipped"))
    tot = {"pass": 0, "fail": 0, "unsupported": 0, "known": 0, "skipped": 0}
    for op in sorted(stats):
        s = stats[op]
        if op in SUPPORTED:
            print("%-22s %5d %5d %6d %6d %8d" % (op, s["pass"], s["fail"], s["unsupported"], s["known"], s["skipped"]))
        for k in tot:
            tot[k] += s[k]
    print("%-22s %5d %5d %6d %6d %8d" % ("total", tot["pass"], tot["fail"], tot["unsupported"], tot["known"], tot["skipped"]))
    print("(skipped: tests of ops nndc does not import; unsup: the importer refuses a form of a supported op)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
