#!/usr/bin/python3
"""report.py - prints the tables of bench/README.md (Markdown) from the JSON
lines bench/run.sh wrote:  /usr/bin/python3 bench/report.py RESULTS.jsonl

Ratios are PyTorch median / nndc median (above 1: nndc is faster), JIT vs
interpreter and AOT vs JIT likewise slower / faster.  A measurement taken in
several rounds (separate processes, interleaved with its baseline) reports
the median over the rounds of each round's median; `min` columns are the
fastest step of all, less disturbed by other processes on a shared machine."""
import json
import sys


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def pick(rows, **kw):
    """The rows matching kw merged into one: run.sh measures each in ROUNDS
    separate processes, so numbers are the median over them (fields ending
    in _min the minimum, _max the maximum)."""
    match = [r for r in rows if all(r.get(k) == v for k, v in kw.items())]
    if len(match) < 2:
        return match[0] if match else None
    out = dict(match[0])
    for k, v in match[0].items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        vals = sorted(r[k] for r in match if isinstance(r.get(k), (int, float)))
        if k.endswith("_min"):
            out[k] = vals[0]
        elif k.endswith("_max"):
            out[k] = vals[-1]
        else:
            out[k] = vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
    out["rounds"] = len(match)
    return out


def each(rows, keys, **kw):
    """One merged row (pick) per distinct value of keys among the rows
    matching kw, in order of first appearance."""
    seen = []
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            key = tuple(r.get(k) for k in keys)
            if key not in seen:
                seen.append(key)
                yield pick(rows, **kw, **dict(zip(keys, key)))


def us(x):
    return "%.1f" % x if x < 100 else "%.0f" % x


def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"


def models_table(rows, mode, title):
    print("\n### %s\n" % title)
    print("| model | threads | nndc median µs (min) | PyTorch median µs (min) | PyTorch / nndc (median) | (min) |")
    print("|---|---:|---:|---:|---:|---:|")
    names = []
    for r in rows:
        if r.get("section") == "models" and r.get("mode") == mode and r["model"] not in names:
            names.append(r["model"])
    threads = sorted({r["threads"] for r in rows if r.get("section") == "models"})
    for name in names:
        for t in threads:
            n = pick(rows, section="models", framework="nndc", mode=mode, model=name, threads=t)
            p = pick(rows, section="models", framework="torch", mode=mode, model=name, threads=t)
            if not n and not p:
                continue
            cell = lambda r: "%s (%s)" % (us(r["step_us_median"]), us(r["step_us_min"])) if r else "-"
            print("| %s | %d | %s | %s | %s | %s |" % (
                name, t, cell(n), cell(p),
                ratio(p and p["step_us_median"], n and n["step_us_median"]),
                ratio(p and p["step_us_min"], n and n["step_us_min"])))


def baseline_table(rows):
    print("\n### nndc JIT vs reference interpreter, MLP training step (batch 64)\n")
    print("| threads | JIT median µs | interpreter median µs | speedup |")
    print("|---:|---:|---:|---:|")
    for r in each(rows, ("threads",), section="baseline"):
        print("| %d | %s | %s | %.1f× |" % (r["threads"], us(r["step_us_median"]),
                                         us(r["baseline_interp_us_median"]), r["speedup_vs_interp"]))


def compile_table(rows):
    print("\n### Compile time of the training graph, batch 64 (frontend + autodiff/optimizer passes + LLVM codegen)\n")
    print("| model | threads | total ms | frontend ms | passes ms | codegen ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in each(rows, ("model",), section="models", framework="nndc", mode="train", threads=1):
        print("| %s | %d | %.0f | %.1f | %.1f | %.0f |" % (r["model"], r["threads"], r["compile_ms"],
                                                         r["frontend_ms"], r["passes_ms"], r["codegen_ms"]))


def scaling_table(rows):
    if not pick(rows, section="scaling"):
        return
    print("\n### Scaling: training step at batch 256 against the same step on 1 thread\n")
    print("| model | threads | median µs (min) | speedup over 1 thread (median) | (min) |")
    print("|---|---:|---:|---:|---:|")
    for r in each(rows, ("model", "threads"), section="scaling"):
        one = pick(rows, section="scaling", model=r["model"], threads=1)
        print("| %s | %d | %s (%s) | %s | %s |" % (
            r["model"], r["threads"], us(r["step_us_median"]), us(r["step_us_min"]),
            ratio(one and one["step_us_median"], r["step_us_median"]),
            ratio(one and one["step_us_min"], r["step_us_min"])))


def matmul_table(rows):
    peak = pick(rows, section="peak")
    if not pick(rows, section="matmul"):
        return
    pk = peak["peak_gflops_per_core"] if peak else None
    print("\n### Single matmul C[M,N] = A[M,K] @ B[K,N] against OpenBLAS (sgemm)\n")
    if pk:
        print("Peak: %.0f GFLOP/s per core, measured by bench/peak.c (FMA at the widest vector width, registers only); "
              "%% of peak = GFLOP/s / (peak x threads).\n" % pk)
    print("| M×K×N | threads | OpenBLAS GFLOP/s (% peak) | nndc GFLOP/s (% peak) | nndc / OpenBLAS |")
    print("|---|---:|---:|---:|---:|")
    for r in each(rows, ("M", "K", "N", "threads"), section="matmul", framework="openblas"):
        n = pick(rows, section="matmul", framework="nndc", M=r["M"], K=r["K"], N=r["N"], threads=r["threads"])
        gf = lambda g: "%.1f (%.0f%%)" % (g, 100 * g / (pk * r["threads"])) if pk else "%.1f" % g
        print("| %d×%d×%d | %d | %s | %s | %s |" % (r["M"], r["K"], r["N"], r["threads"], gf(r["gflops"]),
                                                  gf(n["gflops"]) if n else "-",
                                                  ratio(n and n["gflops"], r["gflops"])))


def aot_table(rows):
    if not pick(rows, framework="aot"):
        return
    print("\n### AOT C (`nndc emit-c --train`, gcc -O3 -march=native) vs JIT, training step (batch 64)\n")
    print("| model | threads | AOT median µs (min) | JIT median µs (min) | AOT / JIT time |")
    print("|---|---:|---:|---:|---:|")
    for r in each(rows, ("model", "threads"), framework="aot"):
        j = pick(rows, section="aot", framework="nndc", model=r["model"], threads=r["threads"])
        print("| %s | %d | %s (%s) | %s | %s |" % (
            r["model"], r["threads"], us(r["step_us_median"]), us(r["step_us_min"]),
            "%s (%s)" % (us(j["step_us_median"]), us(j["step_us_min"])) if j else "-",
            ratio(r["step_us_median"], j and j["step_us_median"])))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS.jsonl")
    rows = load(sys.argv[1])
    meta = pick(rows, section="meta")
    if meta:
        print("Machine: %s, %d cores; gcc %s, LLVM %s, PyTorch %s, OpenBLAS %s; %s" % (
            meta["cpu"], meta["cores"], meta["gcc"], meta["llvm"], meta["torch"], meta["openblas"], meta["date"]))
    models_table(rows, "train", "Training step, batch 64 (forward, backward, optimizer)")
    models_table(rows, "infer", "Inference, batch 1")
    baseline_table(rows)
    compile_table(rows)
    scaling_table(rows)
    matmul_table(rows)
    aot_table(rows)


if __name__ == "__main__":
    main()
