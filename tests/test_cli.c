/* test_cli.c - the nndc command end to end: exit codes, diagnostics, every
 * shared model through check/ir/run, training that converges to known
 * weights, NaN diagnosis, checkpoints and bad data. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "codegen/target.h"
#include "util.h"

static const char *models[] = {"autoencoder", "deep_mlp", "lenet", "linreg", "logreg", "lstm", "mlp", "rnn"};
#define NMODELS (sizeof models / sizeof *models)

static void write_f32(const char *path, const Shape *s, uint64_t seed, float lo, float hi) {
  int64_t n = shape_numel(s);
  float *x = malloc((size_t)n * 4);
  util_fill(x, n, seed, lo, hi);
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, path, EL_F32, s, x), 0, "%s", d.buf ? d.buf : "");
  diag_free(&d);
  free(x);
}

static void write_i32(const char *path, const Shape *s, int32_t mod) {
  int64_t n = shape_numel(s);
  int32_t *x = malloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) x[i] = (int32_t)((i * 7 + 3) % mod);
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, path, EL_I32, s, x), 0);
  diag_free(&d);
  free(x);
}

static float *read_f32(const char *path, int64_t *n) {
  Shape s;
  float *x = util_read_f32(path, &s);
  cr_assert(x, "%s", path);
  *n = shape_numel(&s);
  return x;
}

Test(cli, usage_errors_exit_2) {
  int st;
  free(util_nndc(&st, " "));
  cr_expect_eq(st, 2);
  char *o = util_nndc(&st, "frobnicate x.nnd");
  cr_expect_eq(st, 2);
  cr_expect(strstr(o, "unknown command"), "%s", o);
  free(o);
  o = util_nndc(&st, "check %s/models/mlp.nnd --bogus", NNDC_SHARED_DIR);
  cr_expect_eq(st, 2);
  cr_expect(strstr(o, "unknown option '--bogus'"), "%s", o);
  free(o);
  o = util_nndc(&st, "run %s/models/mlp.nnd --engine gpu", NNDC_SHARED_DIR);
  cr_expect_eq(st, 2);
  free(o);
  free(util_nndc(&st, "check"));
  cr_expect_eq(st, 2);
  o = util_nndc(&st, "run %s/models/mlp.nnd --target sse9", NNDC_SHARED_DIR);
  cr_expect_eq(st, 2);
  cr_expect(strstr(o, "--target must be generic, avx2, avx512 or host"), "%s", o);
  free(o);
}

Test(cli, model_error_exit_1_with_caret) {
  char *dir = util_tmpdir(), path[512];
  snprintf(path, sizeof path, "%s/bad.nnd", dir);
  util_write_file(path, "input x: f32[4, 3]\ny = relu(x) @ x\n");
  int st;
  char *o = util_nndc(&st, "check %s", path);
  cr_expect_eq(st, 1);
  cr_expect(strstr(o, "bad.nnd:2:"), "%s", o);
  cr_expect(strstr(o, "error:"), "%s", o);
  cr_expect(strstr(o, "f32[4,3]"), "both shapes named: %s", o);
  cr_expect(strstr(o, "^"), "caret: %s", o);
  free(o);
  o = util_nndc(&st, "check %s/missing.nnd", dir);
  cr_expect_eq(st, 1);
  free(o);
  free(dir);
}

Test(cli, every_shared_model_checks_and_prints) {
  for (size_t i = 0; i < NMODELS; i++) {
    int st;
    char *o = util_nndc(&st, "check %s/models/%s.nnd", NNDC_SHARED_DIR, models[i]);
    cr_expect_eq(st, 0, "%s: %s", models[i], o);
    free(o);
    o = util_nndc(&st, "ir %s/models/%s.nnd", NNDC_SHARED_DIR, models[i]);
    cr_expect_eq(st, 0, "%s: %s", models[i], o);
    cr_expect(strstr(o, "matmul") || strstr(o, "conv2d"), "%s", models[i]);
    free(o);
    o = util_nndc(&st, "ir %s/models/%s.nnd --stage grad", NNDC_SHARED_DIR, models[i]);
    cr_expect_eq(st, 0, "%s grad: %s", models[i], o);
    free(o);
    o = util_nndc(&st, "ir %s/models/%s.nnd --stage parsed", NNDC_SHARED_DIR, models[i]);
    cr_expect_eq(st, 0, "%s parsed: %s", models[i], o);
    free(o);
    int small = strcmp(models[i], "lstm") && strcmp(models[i], "rnn"); /* dot takes minutes on 28 unrolled steps */
    if (small && system("command -v dot >/dev/null 2>&1") == 0) {
      o = util_nndc(&st, "ir %s/models/%s.nnd --stage opt --dot | dot -Tsvg >/dev/null", NNDC_SHARED_DIR, models[i]);
      cr_expect_eq(st, 0, "%s dot: %s", models[i], o);
      free(o);
    }
    o = util_nndc(&st, "ir %s/models/%s.nnd --stage opt --dot", NNDC_SHARED_DIR, models[i]);
    cr_expect_eq(st, 0, "%s dot: %s", models[i], o);
    cr_expect(!strncmp(o, "digraph", 7), "%s", models[i]);
    free(o);
  }
}

/* Feeds random inputs of the right shapes to every shared model (N = 5). */
static void run_model(const char *engine, const char *model) {
  char *dir = util_tmpdir(), src[512], feeds[2048] = "";
  snprintf(src, sizeof src, "%s/models/%s.nnd", NNDC_SHARED_DIR, model);
  Diag d;
  diag_init(&d);
  Arena a;
  arena_init(&a);
  Graph g;
  graph_init(&g, &a);
  Define def = {"N", 5, 1};
  BuildOpts o = {&def, 1, NULL, 0, 0, 0};
  cr_assert_eq(fe_compile_file(&d, &g, src, &o), 0, "%s", d.buf);
  for (int i = 0; i < g.ninputs; i++) {
    const Node *in = g.inputs[i].node;
    char path[600];
    snprintf(path, sizeof path, "%s/%s.npy", dir, in->name);
    if (in->dt == DT_I32) write_i32(path, &in->shape, 10);
    else write_f32(path, &in->shape, (uint64_t)i + 1, 0, 1);
    size_t l = strlen(feeds);
    snprintf(feeds + l, sizeof feeds - l, " --feed %s=%s", in->name, path);
  }
  int st;
  char *out = util_nndc(&st, "run %s %s --engine %s --out %s/out --grad", src, feeds, engine, dir);
  cr_assert_eq(st, 0, "%s: %s", model, out);
  free(out);
  char p[700];
  snprintf(p, sizeof p, "%s/out/loss.npy", dir);
  int64_t n;
  float *loss = read_f32(p, &n);
  cr_expect_eq(n, 1);
  cr_expect(isfinite(loss[0]) && loss[0] > 0, "%s loss %g", model, loss[0]);
  free(loss);
  for (int i = 0; i < g.nparams; i++) {
    snprintf(p, sizeof p, "%s/out/grad.%s.npy", dir, g.params[i].name);
    float *gr = read_f32(p, &n);
    cr_expect_eq(n, shape_numel(&g.params[i].node->shape), "%s", p);
    free(gr);
  }
  for (int i = 0; i < g.noutputs; i++)
    if (!strcmp(g.outputs[i].name, "probs")) {
      snprintf(p, sizeof p, "%s/out/probs.npy", dir);
      float *pr = read_f32(p, &n);
      for (int r = 0; r < 5; r++) {
        double s = 0;
        for (int k = 0; k < 10; k++) s += pr[r * 10 + k];
        cr_expect(fabs(s - 1) < 1e-4, "%s: probs row %d sums to %g", model, r, s);
      }
      free(pr);
    }
  arena_free(&a);
  diag_free(&d);
  free(dir);
}

Test(cli, every_shared_model_runs_on_interp, .timeout = 300) {
  for (size_t i = 0; i < NMODELS; i++) run_model("interp", models[i]);
}

Test(cli, every_shared_model_runs_on_jit, .timeout = 300) {
  for (size_t i = 0; i < NMODELS; i++) run_model("jit", models[i]);
}

Test(cli, run_skips_what_needs_unfed_inputs) {
  char *dir = util_tmpdir(), x[600];
  snprintf(x, sizeof x, "%s/x.npy", dir);
  Shape s = {2, {3, 784}};
  write_f32(x, &s, 3, 0, 1);
  int st;
  char *o = util_nndc(&st, "run %s/models/mlp.nnd --engine interp --feed x=%s --out %s", NNDC_SHARED_DIR, x, dir);
  cr_expect_eq(st, 0, "%s", o);
  cr_expect(strstr(o, "loss 'loss' skipped") || strstr(o, "skipped"), "%s", o);
  free(o);
  char p[700];
  snprintf(p, sizeof p, "%s/probs.npy", dir);
  int64_t n;
  free(read_f32(p, &n));
  cr_expect_eq(n, 30);
  o = util_nndc(&st, "run %s/models/mlp.nnd --engine interp --out %s", NNDC_SHARED_DIR, dir);
  cr_expect_eq(st, 1, "nothing computable: %s", o);
  free(o);
  o = util_nndc(&st, "run %s/models/mlp.nnd --engine interp --feed z=%s", NNDC_SHARED_DIR, x);
  cr_expect_eq(st, 1, "unknown input: %s", o);
  cr_expect(strstr(o, "no input named 'z'"), "%s", o);
  free(o);
  free(dir);
}

/* An input without a symbolic dimension is fed whole, whatever the other
 * inputs' sample counts; inputs that share one must agree on it. */
Test(cli, run_inputs_without_symbolic_dims) {
  char *dir = util_tmpdir(), m[600], a[600], b[600], c[600], y[600];
  snprintf(m, sizeof m, "%s/ab.nnd", dir);
  cr_assert_eq(util_write_file(m, "input a: f32[N, 1, 5]\ninput b: f32[4, 5]\ninput c: f32[N, 2]\n"
                                  "output y = sum(a, axis=1) @ transpose(b)\noutput z = c * 2\n"), 0);
  snprintf(a, sizeof a, "%s/a.npy", dir);
  snprintf(b, sizeof b, "%s/b.npy", dir);
  snprintf(c, sizeof c, "%s/c.npy", dir);
  Shape sa = {3, {3, 1, 5}}, sb = {2, {4, 5}}, sc = {2, {3, 2}};
  write_f32(a, &sa, 1, -1, 1);
  write_f32(b, &sb, 2, -1, 1);
  write_f32(c, &sc, 3, -1, 1);
  for (int e = 0; e < 2; e++) {
    int st;
    char *o = util_nndc(&st, "run %s --engine %s --feed a=%s --feed b=%s --feed c=%s --out %s", m, e ? "jit" : "interp", a, b,
                   c, dir);
    cr_expect_eq(st, 0, "%s", o);
    free(o);
    snprintf(y, sizeof y, "%s/y.npy", dir);
    int64_t n;
    float *v = read_f32(y, &n);
    cr_expect_eq(n, 12);
    float xa[15], xb[20];
    util_fill(xa, 15, 1, -1, 1);
    util_fill(xb, 20, 2, -1, 1);
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 4; j++) {
        double want = 0;
        for (int k = 0; k < 5; k++) want += (double)xa[i * 5 + k] * xb[j * 5 + k];
        cr_expect_float_eq(v[i * 4 + j], want, 1e-5, "y[%d][%d] = %g, want %g", i, j, v[i * 4 + j], want);
      }
    free(v);
  }
  /* c shares N with a: 4 samples against a's 3 is an error naming N */
  Shape sc4 = {2, {4, 2}};
  write_f32(c, &sc4, 3, -1, 1);
  int st;
  char *o = util_nndc(&st, "run %s --engine interp --feed a=%s --feed b=%s --feed c=%s --out %s", m, a, b, c, dir);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "'N'") && strstr(o, "error"), "%s", o);
  free(o);
  /* b's fixed first dimension must match */
  Shape sb5 = {2, {5, 5}};
  write_f32(b, &sb5, 2, -1, 1);
  write_f32(c, &sc, 3, -1, 1);
  o = util_nndc(&st, "run %s --engine interp --feed a=%s --feed b=%s --feed c=%s --out %s", m, a, b, c, dir);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "b.npy: error:"), "%s", o);
  free(o);
  free(dir);
}

/* t = x @ [1, -2, 3] + 0.5 exactly: plain SGD must find the weights. */
static void write_linreg(const char *dir, int64_t n) {
  char px[600], pt[600];
  snprintf(px, sizeof px, "%s/x.npy", dir);
  snprintf(pt, sizeof pt, "%s/t.npy", dir);
  Shape sx = {2, {n, 3}}, st = {2, {n, 1}};
  float *x = malloc((size_t)n * 12), *t = malloc((size_t)n * 4);
  util_fill(x, n * 3, 5, -1, 1);
  for (int64_t i = 0; i < n; i++) t[i] = x[3 * i] - 2 * x[3 * i + 1] + 3 * x[3 * i + 2] + 0.5f;
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, px, EL_F32, &sx, x), 0);
  cr_assert_eq(npy_write(&d, pt, EL_F32, &st, t), 0);
  diag_free(&d);
  free(x);
  free(t);
}

static void train_linreg(const char *engine) {
  char *dir = util_tmpdir();
  write_linreg(dir, 30);
  int st;
  char *o = util_nndc(&st, "train %s/models/linreg.nnd --engine %s --data x=%s/x.npy --data t=%s/t.npy --epochs 300 --save %s/ck",
                 NNDC_SHARED_DIR, engine, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", o);
  cr_expect(strstr(o, "epoch 300/300: train loss"), "%s", o);
  free(o);
  char p[700];
  int64_t n;
  snprintf(p, sizeof p, "%s/ck/w.npy", dir);
  float *w = read_f32(p, &n);
  cr_expect(fabsf(w[0] - 1) < 0.02f && fabsf(w[1] + 2) < 0.02f && fabsf(w[2] - 3) < 0.02f, "w = %g %g %g", w[0],
            w[1], w[2]);
  free(w);
  snprintf(p, sizeof p, "%s/ck/b.npy", dir);
  float *b = read_f32(p, &n);
  cr_expect(fabsf(b[0] - 0.5f) < 0.02f, "b = %g", b[0]);
  free(b);
  /* --load continues from the checkpoint: the loss starts near zero */
  o = util_nndc(&st, "run %s/models/linreg.nnd --engine %s --feed x=%s/x.npy --feed t=%s/t.npy --load %s/ck --out %s",
           NNDC_SHARED_DIR, engine, dir, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", o);
  free(o);
  snprintf(p, sizeof p, "%s/loss.npy", dir);
  float *l = read_f32(p, &n);
  cr_expect(l[0] < 1e-3f, "loss after training %g", l[0]);
  free(l);
  free(dir);
}

Test(cli, train_linreg_finds_weights_interp, .timeout = 300) { train_linreg("interp"); }
Test(cli, train_linreg_finds_weights_jit, .timeout = 300) { train_linreg("jit"); }

Test(cli, nan_loss_names_the_op) {
  char *dir = util_tmpdir(), path[600];
  snprintf(path, sizeof path, "%s/nan.nnd", dir);
  util_write_file(path,
                  "input x: f32[N, 2]\n"
                  "param w: f32[2, 1] = full(-1)\n"
                  "z = x @ w\n"
                  "l = log(z)\n"
                  "loss = mean(l * l)\n"
                  "train { batch = 2 }\n");
  Shape s = {2, {4, 2}};
  char x[600];
  snprintf(x, sizeof x, "%s/x.npy", dir);
  write_f32(x, &s, 9, 0.5f, 1);
  int st;
  char *o = util_nndc(&st, "train %s --engine interp --data x=%s", path, x);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "nan.nnd:4:"), "names the line of log: %s", o);
  cr_expect(strstr(o, "'log'"), "names the op: %s", o);
  free(o);
  free(dir);
}

Test(cli, data_errors) {
  char *dir = util_tmpdir(), x[600], y[600], bad[600];
  snprintf(x, sizeof x, "%s/x.npy", dir);
  snprintf(y, sizeof y, "%s/y.npy", dir);
  snprintf(bad, sizeof bad, "%s/bad.idx", dir);
  Shape sx = {2, {10, 784}}, sy = {1, {9}};
  write_f32(x, &sx, 1, 0, 1);
  write_i32(y, &sy, 10);
  util_write_file(bad, "this is not an idx file at all");
  int st;
  char *o = util_nndc(&st, "train %s/models/mlp.nnd --engine interp --data x=%s --data y=%s", NNDC_SHARED_DIR, x, y);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "samples"), "%s", o);
  free(o);
  o = util_nndc(&st, "train %s/models/mlp.nnd --engine interp --data x=%s --data y=%s", NNDC_SHARED_DIR, bad, y);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "bad.idx"), "%s", o);
  free(o);
  free(dir);
}

Test(cli, failed_save_keeps_previous_checkpoint, .timeout = 120) {
  char *dir = util_tmpdir();
  write_linreg(dir, 6);
  int st;
  char *o = util_nndc(&st, "train %s/models/linreg.nnd --engine interp --data x=%s/x.npy --data t=%s/t.npy --epochs 2 --save %s/ck.safetensors",
                 NNDC_SHARED_DIR, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", o);
  free(o);
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cp %s/ck.safetensors %s/before && chmod 555 %s", dir, dir, dir);
  free(util_run(cmd, &st));
  /* a save into a directory that is a regular file must fail cleanly */
  o = util_nndc(&st, "train %s/models/linreg.nnd --engine interp --data x=%s/x.npy --data t=%s/t.npy --epochs 2 --save %s/before/ck",
           NNDC_SHARED_DIR, dir, dir, dir);
  cr_expect_eq(st, 1, "%s", o);
  free(o);
  snprintf(cmd, sizeof cmd, "chmod 755 %s; cmp %s/ck.safetensors %s/before", dir, dir, dir);
  free(util_run(cmd, &st));
  cr_expect_eq(st, 0, "previous checkpoint intact");
  o = util_nndc(&st, "run %s/models/linreg.nnd --engine interp --feed x=%s/x.npy --load %s/ck.safetensors --out %s",
           NNDC_SHARED_DIR, dir, dir, dir);
  cr_expect_eq(st, 0, "%s", o);
  free(o);
  free(dir);
}

Test(cli, bench_json_reports_every_field, .timeout = 300) {
  int st;
  char *o = util_nndc(&st, "bench %s/models/mlp.nnd --train --json --repeats 3 -D N=8 --baseline", NNDC_SHARED_DIR);
  cr_assert_eq(st, 0, "%s", o);
  const char *keys[] = {"\"compile_ms\"", "\"step_us_min\"", "\"step_us_median\"", "\"step_us_max\"",
                        "\"samples_per_s\"", "\"gflops\"", "\"peak_bytes\"", "\"kernels\"", "\"speedup_vs_interp\""};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) cr_expect(strstr(o, keys[i]), "%s missing: %s", keys[i], o);
  cr_expect(strstr(o, "\"batch\":8"), "%s", o);
  free(o);
  o = util_nndc(&st, "bench %s/models/lenet.nnd --repeats 2 -D N=2", NNDC_SHARED_DIR);
  cr_expect_eq(st, 0, "%s", o);
  cr_expect(strstr(o, "GFLOP/s"), "%s", o);
  free(o);
}

/* embedding: an id outside [0, V) stops the run with an error that names
 * the op and its source line, on both engines; in range, both agree. */
Test(cli, embedding_id_out_of_range) {
  char *dir = util_tmpdir(), m[600], ids[600];
  snprintf(m, sizeof m, "%s/emb.nnd", dir);
  cr_assert_eq(util_write_file(m, "input ids: i32[N, 3]\nparam table: f32[5, 4] = normal(0, 1)\n"
                                  "output y = embedding(table, ids)\n"), 0);
  snprintf(ids, sizeof ids, "%s/ids.npy", dir);
  Shape s = {2, {2, 3}};
  write_i32(ids, &s, 5);
  for (int e = 0; e < 2; e++) {
    int st;
    char *o = util_nndc(&st, "run %s --engine %s --feed ids=%s --out %s", m, e ? "jit" : "interp", ids, dir);
    cr_expect_eq(st, 0, "%s", o);
    free(o);
  }
  int32_t bad[6] = {0, 1, 2, 3, 4, 6};
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, ids, EL_I32, &s, bad), 0);
  diag_free(&d);
  for (int e = 0; e < 2; e++) {
    int st;
    char *o = util_nndc(&st, "run %s --engine %s --feed ids=%s --out %s", m, e ? "jit" : "interp", ids, dir);
    cr_expect_eq(st, 1, "%s", o);
    cr_expect(strstr(o, "emb.nnd:3:") && strstr(o, "id 6 out of range [0, 5)"), "%s", o);
    free(o);
  }
  free(dir);
}

/* `@` with broadcast leading batch axes ([2,1,3,4] @ [5,4,2] -> [2,5,3,2])
 * and cross_entropy over leading positions ([2,3,C] logits, [2,3] labels =
 * the flattened [6,C] loss), on both engines against naive loops. */
Test(cli, batched_matmul_and_positional_cross_entropy) {
  char *dir = util_tmpdir(), m[600], pa[600], pb[600], pl[600], y[600];
  snprintf(m, sizeof m, "%s/mm.nnd", dir);
  cr_assert_eq(util_write_file(m, "input a: f32[2, 1, 3, 4]\ninput b: f32[5, 4, 2]\ninput l: i32[2, 3]\n"
                                  "output y = a @ b\nloss = cross_entropy(sum(a, axis=1), l)\n"), 0);
  snprintf(pa, sizeof pa, "%s/a.npy", dir);
  snprintf(pb, sizeof pb, "%s/b.npy", dir);
  snprintf(pl, sizeof pl, "%s/l.npy", dir);
  Shape sa = {4, {2, 1, 3, 4}}, sb = {3, {5, 4, 2}}, sl = {2, {2, 3}};
  write_f32(pa, &sa, 11, -1, 1);
  write_f32(pb, &sb, 12, -1, 1);
  write_i32(pl, &sl, 4);
  float a[24], b[40];
  util_fill(a, 24, 11, -1, 1);
  util_fill(b, 40, 12, -1, 1);
  double want_loss = 0;
  for (int p = 0; p < 6; p++) {   /* logits row p = a[i, 0, r, :], label (p*7+3) % 4 */
    const float *x = a + p * 4;
    int lab = (p * 7 + 3) % 4;
    double mx = x[0], se = 0;
    for (int c = 1; c < 4; c++) mx = fmax(mx, x[c]);
    for (int c = 0; c < 4; c++) se += exp(x[c] - mx);
    want_loss += (log(se) + mx - x[lab]) / 6;
  }
  for (int e = 0; e < 2; e++) {
    int st;
    char *o = util_nndc(&st, "run %s --engine %s --feed a=%s --feed b=%s --feed l=%s --out %s", m, e ? "jit" : "interp", pa, pb,
                   pl, dir);
    cr_expect_eq(st, 0, "%s", o);
    double loss = 0;
    const char *lp = strstr(o, "loss = ");
    cr_assert(lp, "%s", o);
    loss = strtod(lp + 7, NULL);
    cr_expect(fabs(loss - want_loss) < 1e-5 * (1 + fabs(want_loss)), "loss %g, want %g", loss, want_loss);
    free(o);
    snprintf(y, sizeof y, "%s/y.npy", dir);
    int64_t n;
    float *v = read_f32(y, &n);
    cr_assert_eq(n, 60);
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 5; j++)
        for (int r = 0; r < 3; r++)
          for (int c = 0; c < 2; c++) {
            double w = 0;
            for (int k = 0; k < 4; k++) w += (double)a[(i * 3 + r) * 4 + k] * b[(j * 4 + k) * 2 + c];
            float g = v[((i * 5 + j) * 3 + r) * 2 + c];
            cr_expect(fabs(g - w) < 1e-5, "y[%d,%d,%d,%d] = %g, want %g", i, j, r, c, g, w);
          }
    free(v);
  }
  free(dir);
}

/* layer_norm(x, w, b, eps) and layer_norm(x) over the last axis, on both
 * engines, against torch.nn.functional.layer_norm's formula (biased
 * variance) in double; its argument errors. */
Test(cli, layer_norm_values_and_errors) {
  char *dir = util_tmpdir(), m[600], px[600], py[600];
  snprintf(m, sizeof m, "%s/ln.nnd", dir);
  cr_assert_eq(util_write_file(m, "input x: f32[3, 2, 5]\nparam w: f32[5] = normal(0, 1)\nparam b: f32[5] = normal(0, 1)\n"
                                  "output y = layer_norm(x, eps=1e-3)\noutput z = layer_norm(x, w, b)\n"), 0);
  snprintf(px, sizeof px, "%s/x.npy", dir);
  Shape sx = {3, {3, 2, 5}};
  write_f32(px, &sx, 21, -3, 3);
  float x[30];
  util_fill(x, 30, 21, -3, 3);
  for (int e = 0; e < 2; e++) {
    int st;
    char *o = util_nndc(&st, "run %s --engine %s --feed x=%s --out %s", m, e ? "jit" : "interp", px, dir);
    cr_expect_eq(st, 0, "%s", o);
    free(o);
    snprintf(py, sizeof py, "%s/y.npy", dir);
    int64_t n;
    float *y = read_f32(py, &n);
    cr_assert_eq(n, 30);
    for (int r = 0; r < 6; r++) {
      double mean = 0, var = 0;
      for (int k = 0; k < 5; k++) mean += x[r * 5 + k] / 5.0;
      for (int k = 0; k < 5; k++) var += (x[r * 5 + k] - mean) * (x[r * 5 + k] - mean) / 5.0;
      for (int k = 0; k < 5; k++) {
        double want = (x[r * 5 + k] - mean) / sqrt(var + 1e-3);
        cr_expect(fabs(y[r * 5 + k] - want) < 1e-5, "engine %d y[%d] = %g, want %g", e, r * 5 + k, y[r * 5 + k], want);
      }
    }
    free(y);
  }
  static const char *const bad[][2] = {
    {"input x: f32[3, 5]\nparam w: f32[5]\noutput y = layer_norm(x, w)\n", "both w and b, or neither"},
    {"input x: f32[3, 5]\nparam w: f32[4]\nparam b: f32[4]\noutput y = layer_norm(x, w, b)\n", "w must be f32[5]"},
  };
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(util_write_file(m, bad[i][0]), 0);
    int st;
    char *o = util_nndc(&st, "check %s", m);
    cr_expect_eq(st, 1, "%s", o);
    cr_expect(strstr(o, bad[i][1]), "%s", o);
    free(o);
  }
  free(dir);
}

/* batch_norm over [N, C, H, W] and [N, C] and layer_norm against PyTorch
 * (tests/golden/gen_norm.py): one training step of sgd on a batch from
 * given params and running statistics gives torch's params and running
 * statistics (batch statistics, the unbiased running variance, momentum),
 * on both engines and every target the host runs; then the evaluation-mode
 * output with the stepped state (running statistics) is torch's. */
Test(cli, norm_against_torch) {
  const char *G = NNDC_SRC_DIR "/tests/golden/norm";
  static const char *const names[] = {"k", "g1", "b1", "W", "g2", "b2", "lw", "lb", "h1.running_mean",
                                      "h1.running_var", "h2.running_mean", "h2.running_var"};
  static const char *const runs[][2] = {{"interp", "host"}, {"jit", "generic"}, {"jit", "avx2"}, {"jit", "avx512"}};
  char *dir = util_tmpdir(), p[900], q[900];
  for (int e = 0; e < 4; e++) {
    int tk = target_parse(runs[e][1]);   /* runs[0] is the host: always run */
    if (e > 0 && !target_host_runs((TargetKind)tk)) continue;
    int st;
    char *o = util_nndc(&st, "train %s/norm.nnd --data x=%s/x.npy --data y=%s/y.npy --load %s/init --save %s/s%d "
                   "--no-shuffle --engine %s --target %s", G, G, G, G, dir, e, runs[e][0], runs[e][1]);
    cr_assert_eq(st, 0, "%s", o);
    free(o);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
      snprintf(p, sizeof p, "%s/s%d/%s.npy", dir, e, names[i]);
      snprintf(q, sizeof q, "%s/step/%s.npy", G, names[i]);
      int64_t n, m;
      float *got = read_f32(p, &n), *want = read_f32(q, &m);
      cr_assert_eq(n, m);
      char label[200];
      snprintf(label, sizeof label, "%s/%s %s", runs[e][0], runs[e][1], names[i]);
      cr_expect_leq(util_compare(label, got, want, n, 1e-5, 1e-4), 1.0, "%s", label);
      free(got);
      free(want);
    }
    o = util_nndc(&st, "run %s/norm.nnd --feed x=%s/x.npy --load %s/s%d --out %s/r%d --engine %s --target %s", G, G,
             dir, e, dir, e, runs[e][0], runs[e][1]);
    cr_assert_eq(st, 0, "%s", o);
    free(o);
    snprintf(p, sizeof p, "%s/r%d/logits.npy", dir, e);
    snprintf(q, sizeof q, "%s/eval_logits.npy", G);
    int64_t n, m;
    float *got = read_f32(p, &n), *want = read_f32(q, &m);
    cr_assert_eq(n, m);
    cr_expect_leq(util_compare("eval logits", got, want, n, 1e-5, 1e-4), 1.0, "%s/%s", runs[e][0], runs[e][1]);
    free(got);
    free(want);
  }
  free(dir);
}

/* batch_norm's misuses: each a clean FILE:LINE:COL error. */
Test(cli, batch_norm_errors) {
  static const char *const bad[][2] = {
    {"input x: f32[4, 3, 2]\nparam w: f32[3]\nparam b: f32[3]\nh = batch_norm(x, w, b)\noutput y = h\n",
     "4:16: error: batch_norm needs x f32[N, C] or f32[N, C, H, W], got f32[4,3,2]"},
    {"input x: f32[4, 3]\nparam w: f32[4]\nparam b: f32[3]\nh = batch_norm(x, w, b)\noutput y = h\n",
     "4:19: error: batch_norm: w must be f32[3] (the channels of x), got f32[4]"},
    {"input x: f32[4, 3]\nparam w: f32[3]\nparam b: f32[3]\noutput y = relu(batch_norm(x, w, b))\n",
     "4:17: error: batch_norm keeps running statistics named after its assignment"},
    {"input x: f32[4, 3]\nparam w: f32[3]\nparam b: f32[3]\nh = batch_norm(x, w, b, momentum=2)\noutput y = h\n",
     "momentum must be in [0, 1], got 2"},
    {"input x: f32[4, 3]\nparam w: f32[3]\nparam b: f32[3]\nconst e = 0\nh = batch_norm(x, w, b, eps=e)\noutput y = h\n",
     "eps must be > 0, got 0"},
    {"input x: f32[4, 3]\nparam w: f32[3]\nparam b: f32[3]\nh = batch_norm(x, w, b, momentum=x)\noutput y = h\n",
     "error: momentum must be a compile-time number"},
    {"input x: f32[4, 3]\nparam w: f32[3]\nparam b: f32[3]\nfn bn2(x, w, b) {\n  h = batch_norm(x, w, b)\n"
     "  return batch_norm(h, w, b)\n}\nz = bn2(x, w, b)\noutput y = z\n",
     "6:10: error: a second batch_norm with the prefix 'z' would share its running statistics"},
    {"input x: f32[4, 3]\nparam w: f32[3]\nparam b: f32[3]\nfn blk(x, w, b) {\n  param running_mean: f32[3]\n"
     "  return batch_norm(x, w, b) + running_mean\n}\nz = blk(x, w, b)\noutput y = z\n",
     "running statistic 'z.running_mean' clashes with the param z.running_mean"},
  };
  char *dir = util_tmpdir(), m[600];
  snprintf(m, sizeof m, "%s/bn.nnd", dir);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_assert_eq(util_write_file(m, bad[i][0]), 0);
    int st;
    char *o = util_nndc(&st, "check %s", m);
    cr_expect_eq(st, 1, "%s", o);
    cr_expect(strstr(o, bad[i][1]), "case %zu: %s", i, o);
    free(o);
  }
  /* one value per channel cannot train (torch refuses it too) */
  cr_assert_eq(util_write_file(m, "input x: f32[N, 3]\ninput t: f32[N, 3]\nparam w: f32[3]\nparam b: f32[3]\n"
                                  "h = batch_norm(x, w, b)\nloss = mse(h, t)\n"), 0);
  int st;
  char *o = util_nndc(&st, "bench %s --train -D N=1 --repeats 1", m);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "more than one value per channel"), "%s", o);
  free(o);
  free(dir);
}

/* conv2d's dilation, groups and [h, w] pairs and conv_transpose2d as the
 * language spells them, on both engines, against the torch outputs of
 * tests/golden/gen_ops.py (its CONV_MORE and CONVT cases, same operands). */
Test(cli, conv_options_match_torch, .timeout = 300) {
  static const struct { const char *name, *x, *w, *call; } cs[] = {
    {"convm_rect", "f32[2, 3, 9, 11]", "f32[5, 3, 3, 4]", "conv2d(x, w, stride=[2, 3], padding=[1, 2], dilation=[1, 2])"},
    {"convm_g2", "f32[2, 4, 7, 9]", "f32[6, 2, 3, 3]", "conv2d(x, w, stride=2, padding=1, groups=2)"},
    {"convm_dw2", "f32[2, 3, 8, 7]", "f32[6, 1, 3, 3]", "conv2d(x, w, padding=[1, 0], dilation=[2, 1], groups=3)"},
    {"convt_s2_op1", "f32[2, 4, 5, 6]", "f32[4, 3, 3, 3]", "conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)"},
    {"convt_g2", "f32[2, 4, 5, 5]", "f32[4, 3, 3, 2]", "conv_transpose2d(x, w, stride=[1, 2], padding=[0, 1], groups=2)"},
    {"convt_dil2", "f32[2, 2, 4, 5]", "f32[2, 3, 3, 2]",
     "conv_transpose2d(x, w, stride=2, padding=1, output_padding=[1, 0], dilation=2)"},
    {"convt_op_dil", "f32[1, 2, 5, 4]", "f32[2, 3, 3, 2]", "conv_transpose2d(x, w, padding=1, output_padding=1, dilation=2)"},
  };
  char *dir = util_tmpdir(), m[600], src[600], gold[400], py[700];
  snprintf(m, sizeof m, "%s/c.nnd", dir);
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
    snprintf(src, sizeof src, "input x: %s\ninput w: %s\noutput y = %s\n", cs[i].x, cs[i].w, cs[i].call);
    cr_assert_eq(util_write_file(m, src), 0);
    snprintf(gold, sizeof gold, NNDC_SRC_DIR "/tests/golden/ops/%s", cs[i].name);
    int64_t nw;
    snprintf(py, sizeof py, "%s_y.npy", gold);
    float *want = read_f32(py, &nw);
    for (int e = 0; e < 2; e++) {
      int st;
      char *o = util_nndc(&st, "run %s --engine %s --feed x=%s_x0.npy --feed w=%s_x1.npy --out %s", m, e ? "jit" : "interp",
                     gold, gold, dir);
      cr_expect_eq(st, 0, "%s: %s", cs[i].call, o);
      free(o);
      snprintf(py, sizeof py, "%s/y.npy", dir);
      int64_t n;
      float *y = read_f32(py, &n);
      cr_assert_eq(n, nw, "%s: %lld values, torch has %lld", cs[i].call, (long long)n, (long long)nw);
      char label[300];
      snprintf(label, sizeof label, "%s engine %d", cs[i].call, e);
      cr_expect_leq(util_compare(label, y, want, n, 1e-5, 1e-5), 1.0, "%s", label);
      free(y);
    }
    free(want);
  }
  free(dir);
}

/* run --png: an output [N, 1, H, W] (and [N, H, W], [N, 3, H, W]) becomes
 * DIR/NAME.png; the file is checked as a PNG reader would: signature, chunk
 * CRCs (zlib's crc32), IHDR, the IDAT inflated by zlib, every pixel at its
 * place in the grid (ceil(sqrt(N)) per row, one black pixel between). */
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

Test(cli, run_png_writes_image_grids) {
  char *dir = util_tmpdir(), m[600], px[600], pp[700];
  snprintf(m, sizeof m, "%s/img.nnd", dir);
  cr_assert_eq(util_write_file(m, "input x: f32[N, 20]\noutput g = reshape(x, [dim(x, 0), 1, 4, 5])\n"
                                  "output rgb = reshape(concat(x, x, x, axis=1), [dim(x, 0), 3, 4, 5])\n"
                                  "output flat = x * 2\n"), 0);
  snprintf(px, sizeof px, "%s/x.npy", dir);
  Shape sx = {2, {5, 20}};
  write_f32(px, &sx, 3, -0.2f, 1.2f);
  float x[100];
  util_fill(x, 100, 3, -0.2f, 1.2f);
  int st;
  char *o = util_nndc(&st, "run %s --feed x=%s --out %s --png", m, px, dir);
  cr_assert_eq(st, 0, "%s", o);
  cr_expect(strstr(o, "wrote 2 images"), "%s", o);
  free(o);
  for (int rgb = 0; rgb < 2; rgb++) {
    snprintf(pp, sizeof pp, "%s/%s.png", dir, rgb ? "rgb" : "g");
    FILE *f = fopen(pp, "rb");
    cr_assert(f, "%s", pp);
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cr_assert(n > 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8));
    uint8_t *idat = NULL;
    size_t idat_len = 0, at = 8;
    uint32_t W = 0, H = 0;
    while (at + 12 <= n) {
      uint32_t len = rd32(buf + at);
      cr_assert(at + 12 + len <= n);
      uint32_t crc = (uint32_t)crc32(crc32(0, Z_NULL, 0), buf + at + 4, len + 4);
      cr_expect_eq(crc, rd32(buf + at + 8 + len), "chunk CRC");
      if (!memcmp(buf + at + 4, "IHDR", 4)) {
        W = rd32(buf + at + 8), H = rd32(buf + at + 12);
        cr_expect_eq(buf[at + 16], 8);
        cr_expect_eq(buf[at + 17], rgb ? 2 : 0);
      } else if (!memcmp(buf + at + 4, "IDAT", 4)) idat = buf + at + 8, idat_len = len;
      at += 12 + len;
    }
    /* 5 images of 4x5: 3 per row, 2 rows, one-pixel gaps */
    cr_assert_eq(W, 3 * 6 - 1);
    cr_assert_eq(H, 2 * 5 - 1);
    int c = rgb ? 3 : 1;
    uLongf rl = (uLongf)((W * c + 1) * H);
    uint8_t *raw = malloc(rl);
    cr_assert_eq(uncompress(raw, &rl, idat, (uLong)idat_len), Z_OK);
    cr_assert_eq(rl, (uLongf)((W * c + 1) * H));
    for (int k = 0; k < 5; k++)
      for (int y = 0; y < 4; y++)
        for (int xx = 0; xx < 5; xx++)
          for (int ch = 0; ch < c; ch++) {
            float v = x[k * 20 + y * 5 + xx];
            int want = v <= 0 ? 0 : v >= 1 ? 255 : (int)lrintf(v * 255);
            int got = raw[(k / 3 * 5 + y) * (W * c + 1) + 1 + (k % 3 * 6 + xx) * c + ch];
            cr_expect_eq(got, want, "image %d pixel (%d, %d)", k, y, xx);
          }
    cr_expect_eq(raw[4 * (W * c + 1) + 1], 0, "the gap row is black");
    free(raw);
  }
  snprintf(pp, sizeof pp, "%s/flat.png", dir);
  cr_expect(access(pp, F_OK) != 0, "a [N, 20] output is no image");
  free(dir);
}

/* randn's extreme draws are finite: seed 7137126 makes the first draw of
 * `run`'s first noise node have its top 24 bits all ones (u = (2^24 - 1/2)
 * / 2^24, which rounds to 1 in float: erfinv(1) was infinite, and a VAE
 * trained on it stopped with NaN after 2.6 million draws), seed 48067671
 * all zeros; every engine and target gives sqrt(2) erfinv(+-(1 - 2^-24)). */
Test(cli, randn_extreme_draws_are_finite) {
  char *dir = util_tmpdir(), m[600], p[700];
  snprintf(m, sizeof m, "%s/r.nnd", dir);
  cr_assert_eq(util_write_file(m, "output r = randn([1])\n"), 0);
  static const char *const runs[][2] = {{"interp", "host"}, {"jit", "generic"}, {"jit", "avx2"}, {"jit", "avx512"}};
  static const long long seeds[] = {7137126, 48067671};
  for (int e = 0; e < 4; e++) {
    int tk = target_parse(runs[e][1]);   /* runs[0] is the host: always run */
    if (e > 0 && !target_host_runs((TargetKind)tk)) continue;
    for (int s = 0; s < 2; s++) {
      int st;
      char *o = util_nndc(&st, "run %s --seed %lld --out %s --engine %s --target %s", m, seeds[s], dir, runs[e][0], runs[e][1]);
      cr_assert_eq(st, 0, "%s", o);
      free(o);
      snprintf(p, sizeof p, "%s/r.npy", dir);
      int64_t n;
      float *r = read_f32(p, &n);
      cr_assert_eq(n, 1);
      /* sqrt(2) erfinv(1 - 2^-24) = 5.41998 */
      cr_expect(isfinite(r[0]) && fabs(fabs(r[0]) - 5.41998) < 2e-3 && (r[0] > 0) == (s == 0), "%s/%s seed %lld: %g",
                runs[e][0], runs[e][1], seeds[s], r[0]);
      free(r);
    }
  }
  free(dir);
}

/* A .txt file fed to an i32[N, L] input: byte tokens in windows of L that
 * share one byte (spec 9): "abcdefghij" with L = 4 is abcd, defg, ghij;
 * a non-i32 input or a text shorter than a window is an error. */
Test(cli, text_data_windows) {
  char *dir = util_tmpdir(), m[600], txt[600], out[700];
  snprintf(m, sizeof m, "%s/t.nnd", dir);
  cr_assert_eq(util_write_file(m, "input x: i32[N, 4]\noutput y = float(x)\n"), 0);
  snprintf(txt, sizeof txt, "%s/t.txt", dir);
  cr_assert_eq(util_write_file(txt, "abcdefghijk"), 0);   /* the 11th byte starts no whole window */
  int st;
  char *o = util_nndc(&st, "run %s --feed x=%s --out %s", m, txt, dir);
  cr_assert_eq(st, 0, "%s", o);
  free(o);
  snprintf(out, sizeof out, "%s/y.npy", dir);
  int64_t n;
  float *y = read_f32(out, &n);
  cr_assert_eq(n, 12);
  const char *want = "abcddefgghij";
  for (int i = 0; i < 12; i++) cr_expect_eq(y[i], (float)(unsigned char)want[i], "element %d", i);
  free(y);
  cr_assert_eq(util_write_file(m, "input x: f32[N, 4]\noutput y = x\n"), 0);
  o = util_nndc(&st, "run %s --feed x=%s --out %s", m, txt, dir);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "t.txt: error: a text file feeds an i32[N, L] input"), "%s", o);
  free(o);
  cr_assert_eq(util_write_file(m, "input x: i32[N, 40]\noutput y = float(x)\n"), 0);
  o = util_nndc(&st, "run %s --feed x=%s --out %s", m, txt, dir);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "holds 11 bytes: fewer than one window of 40"), "%s", o);
  free(o);
  free(dir);
}

/* generate: a "model" whose logits at each position favour the next byte
 * value (an embedding of the identity shifted by one), so greedy decoding
 * (temperature 0) continues the alphabet, also past the context length
 * (the context slides); sampling is reproducible from --seed; a model that
 * is not a byte-level language model, or no --load, is an error. */
Test(cli, generate_text) {
  char *dir = util_tmpdir(), m[600], p[600], tp[700];
  snprintf(m, sizeof m, "%s/lm.nnd", dir);
  cr_assert_eq(util_write_file(m, "input x: i32[N, 5]\nparam t: f32[256, 256]\n"
                                  "output logits = embedding(t, x) * 3\n"), 0);
  snprintf(p, sizeof p, "%s/p", dir);
  cr_assert_eq(mkdir(p, 0777), 0);
  float *t = calloc(256 * 256, sizeof *t);
  for (int b = 0; b < 256; b++) {
    for (int c = 'a'; c <= 'z'; c++) t[b * 256 + c] = 2;   /* sampled among the top 20: printable */
    t[b * 256 + (b + 1) % 256] = 4;
  }
  Shape s = {2, {256, 256}};
  Diag d;
  diag_init(&d);
  snprintf(tp, sizeof tp, "%s/t.npy", p);
  cr_assert_eq(npy_write(&d, tp, EL_F32, &s, t), 0);
  diag_free(&d);
  free(t);
  int st;
  for (int e = 0; e < 2; e++) {
    char *o = util_nndc(&st, "generate %s --load %s --prompt abc --tokens 9 --temperature 0 --engine %s", m, p,
                   e ? "jit" : "interp");
    cr_expect_eq(st, 0, "%s", o);
    cr_expect_str_eq(o, "abcdefghijkl\n");
    free(o);
  }
  char *o1 = util_nndc(&st, "generate %s --load %s --prompt x --tokens 40 --seed 7 --top-k 20 --temperature 20", m, p);
  char *o2 = util_nndc(&st, "generate %s --load %s --prompt x --tokens 40 --seed 7 --top-k 20 --temperature 20 --engine interp", m, p);
  char *o3 = util_nndc(&st, "generate %s --load %s --prompt x --tokens 40 --seed 8 --top-k 20 --temperature 20", m, p);
  cr_expect_str_eq(o1, o2, "the same seed on both engines");
  cr_expect_str_neq(o1, o3, "another seed, another text");
  cr_expect_eq(strlen(o1), 42);
  free(o1);
  free(o2);
  free(o3);
  char *o = util_nndc(&st, "generate %s --prompt abc", m);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "--load"), "%s", o);
  free(o);
  cr_assert_eq(util_write_file(m, "input x: f32[N, 5]\nparam t: f32[256, 256]\noutput logits = x\n"), 0);
  o = util_nndc(&st, "generate %s --load %s", m, p);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "one i32[N, L] input of byte tokens"), "%s", o);
  free(o);
  o = util_nndc(&st, "generate %s --load %s --temperature -1", m, p);
  cr_expect_eq(st, 2, "%s", o);
  free(o);
  free(dir);
}
