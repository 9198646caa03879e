/* test_export.c - `nndc export` end to end.  Round trip: every shared model
 * and example (and the two models of tests/onnx/ort) with random params is
 * exported, imported back with `nndc import`, and both run on the same
 * random inputs (3 samples, where the export was built for the train
 * block's batch: the batch dimension is symbolic) give the same outputs to
 * 1e-5; ONNX's checker (full_check, Debian's python3-onnx) accepts every
 * exported file.  Oracle: ONNX Runtime's outputs of committed exports
 * (tests/onnx/gen_ort.py) are what `nndc run` computes, and exporting the
 * same model and params again gives the committed file byte for byte.
 * Errors: a graph tied to the batch size, no outputs, no -o, and the ops
 * ONNX cannot express, each named at its line. */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "codegen/codegen.h"
#include "util.h"

#define ORT NNDC_SRC_DIR "/tests/onnx/ort/"
#define CHECKER "/usr/bin/python3 -c 'import sys, onnx\nfor p in sys.argv[1:]: onnx.checker.check_model(onnx.load(p), full_check=True)'"

/* 1 if Debian's python3-onnx (the checker) is there. */
static int have_checker(void) {
  int st;
  free(util_run("/usr/bin/python3 -c 'import onnx' 2>&1", &st));
  return st == 0;
}

/* ONNX's checker with full_check (shape inference, strict) on path. */
static void check_model(const char *path) {
  if (!have_checker()) {
    fprintf(stderr, "export: ONNX checker skipped for %s (no python3-onnx)\n", path);
    return;
  }
  char cmd[8192];
  snprintf(cmd, sizeof cmd, CHECKER " %s 2>&1", path);
  int st;
  char *out = util_run(cmd, &st);
  cr_expect_eq(st, 0, "the ONNX checker refuses %s: %s", path, out);
  free(out);
}

/* Writes an .npy of n values (f32, or i32 when i32 is set). */
static void write_npy(const char *path, const Shape *s, const float *f, const int32_t *i) {
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, path, i ? EL_I32 : EL_F32, s, i ? (const void *)i : (const void *)f), 0, "%s", d.buf);
  diag_free(&d);
}

/* Random params of g as dir/p/<name>.npy (running variances in [0.5, 1.5),
 * the rest in [-0.3, 0.3)), and random inputs dir/<input>.npy for the inputs
 * g's outputs need (g built for 3 samples; i32 values in [0, 5)), their
 * --feed options appended to feeds. */
static void write_data(const Graph *g, const char *dir, char *feeds, size_t cap) {
  char p[4096];
  snprintf(p, sizeof p, "mkdir -p %s/p", dir);
  free(util_run(p, &(int){0}));
  for (int i = 0; i < g->nparams; i++) {
    const Node *n = g->params[i].node;
    int64_t k = shape_numel(&n->shape);
    float *v = malloc(sizeof(float) * (size_t)(k ? k : 1));
    int var = strstr(n->name, ".running_var") != NULL;
    util_fill(v, k, 100 + (uint64_t)i, var ? 0.5f : -0.3f, var ? 1.5f : 0.3f);
    snprintf(p, sizeof p, "%s/p/%s.npy", dir, n->name);
    write_npy(p, &n->shape, v, NULL);
    free(v);
  }
  uint8_t *need = calloc((size_t)g->nnodes, 1);
  Node **roots = malloc(sizeof(Node *) * (size_t)g->noutputs);
  for (int i = 0; i < g->noutputs; i++) roots[i] = g->outputs[i].node;
  ir_mark_deps(g, roots, g->noutputs, need);
  *feeds = 0;
  for (int i = 0; i < g->ninputs; i++) {
    const Node *n = g->inputs[i].node;
    if (!need[n->id]) continue;
    int64_t k = shape_numel(&n->shape);
    float *v = malloc(sizeof(float) * (size_t)(k ? k : 1));
    int32_t *iv = malloc(sizeof(int32_t) * (size_t)(k ? k : 1));
    util_fill(v, k, 7 + (uint64_t)i, n->dt == DT_I32 ? 0 : -1, n->dt == DT_I32 ? 5 : 1);
    for (int64_t j = 0; j < k; j++) iv[j] = (int32_t)v[j];
    snprintf(p, sizeof p, "%s/%s.npy", dir, n->name);
    write_npy(p, &n->shape, v, n->dt == DT_I32 ? iv : NULL);
    size_t len = strlen(feeds);
    snprintf(feeds + len, cap - len, " --feed %s=%s", n->name, p);
    free(v);
    free(iv);
  }
  free(need);
  free(roots);
}

/* Compares output `name` of run directories a and b; label names the model. */
static void compare_output(const char *label, const char *name, const char *a, const char *b) {
  char p[4096], q[4096], l[512];
  snprintf(p, sizeof p, "%s/%s.npy", a, name);
  snprintf(q, sizeof q, "%s/%s.npy", b, name);
  Shape sa, sb;
  float *x = util_read_f32(p, &sa), *y = util_read_f32(q, &sb);
  cr_assert(x && y, "%s: %s or %s missing", label, p, q);
  cr_expect(shape_eq(&sa, &sb), "%s: output %s has another shape", label, name);
  snprintf(l, sizeof l, "%s: %s", label, name);
  cr_expect_leq(util_compare(l, x, y, shape_numel(&sb), 1e-5, 1e-5), 1.0, "%s: outputs differ", l);
  free(x);
  free(y);
}

/* Models exported with -D: GPT-2 small (124M params) at test size, its
 * consts overridden; the GAN, whose batch only its noise has (no input
 * carries N: the export asks for a value). */
static const Define gpt2_small[] = {{"L", 16, 1}, {"V", 96, 1}, {"D", 32, 1}, {"H", 2, 1}, {"DH", 16, 1}};
static const Define gan_batch[] = {{"N", 3, 1}};
static const struct {
  const char *file, *args;
  const Define *defs;
  int ndefs;
} with_defs[] = {
  {"/gpt2.nnd", " -D L=16 -D V=96 -D D=32 -D H=2 -D DH=16", gpt2_small, 5},
  {"/gan.nnd", " -D N=3", gan_batch, 1},
};

/* Exports, imports and runs model `path` in dir; compares the two runs. */
static void round_trip(const char *path, const char *dir) {
  UtilGraph *t = util_graph_new();
  BuildOpts o = {0};
  o.batch = 3;
  const char *defs = "";
  for (size_t k = 0; k < sizeof with_defs / sizeof *with_defs; k++)
    if (strstr(path, with_defs[k].file)) {
      o.defs = with_defs[k].defs, o.ndefs = with_defs[k].ndefs;
      defs = with_defs[k].args;
    }
  cr_assert_eq(fe_compile_file(&t->d, &t->g, path, &o), 0, "%s: %s", path, t->d.buf);
  char feeds[8192];
  write_data(&t->g, dir, feeds, sizeof feeds);
  int st;
  char *out = util_nndc(&st, "export %s%s --load %s/p -o %s/m.onnx 2>&1", path, defs, dir, dir);
  if (st == 1 && strstr(out, "ONNX cannot express")) {
    fprintf(stderr, "export round trip: %s skipped: %s", path, out);
    free(out);
    util_graph_free(t);
    return;
  }
  cr_assert_eq(st, 0, "export %s: %s", path, out);
  free(out);
  char p[4096];
  snprintf(p, sizeof p, "%s/m.onnx", dir);
  check_model(p);
  out = util_nndc(&st, "import %s/m.onnx -o %s/imp 2>&1", dir, dir);
  cr_assert_eq(st, 0, "import of the export of %s: %s", path, out);
  free(out);
  out = util_nndc(&st, "run %s%s --load %s/p%s --engine interp --out %s/o1 2>&1", path, defs, dir, feeds, dir);
  cr_assert_eq(st, 0, "run %s: %s", path, out);
  free(out);
  out = util_nndc(&st, "run %s/imp/m.nnd --load %s/imp/m.safetensors%s --engine interp --out %s/o2 2>&1", dir, dir, feeds, dir);
  cr_assert_eq(st, 0, "run of the import of %s: %s", path, out);
  free(out);
  char o1[1024], o2[1024];
  snprintf(o1, sizeof o1, "%s/o1", dir);
  snprintf(o2, sizeof o2, "%s/o2", dir);
  for (int i = 0; i < t->g.noutputs; i++) compare_output(path, t->g.outputs[i].name, o2, o1);
  util_graph_free(t);
}

Test(export, round_trip_of_every_model, .timeout = 900) {
  const char *pats[] = {NNDC_SHARED_DIR "/models/*.nnd", NNDC_SRC_DIR "/examples/*.nnd", ORT "*.nnd"};
  char *dir = util_tmpdir();
  int n = 0;
  for (size_t k = 0; k < sizeof pats / sizeof *pats; k++) {
    glob_t gl;
    if (glob(pats[k], 0, NULL, &gl)) continue;
    for (size_t i = 0; i < gl.gl_pathc; i++) {
      char sub[512];
      snprintf(sub, sizeof sub, "%s/%d", dir, n++);
      cr_assert_eq(mkdir(sub, 0777), 0);
      round_trip(gl.gl_pathv[i], sub);
    }
    globfree(&gl);
  }
  cr_expect_geq(n, 19, "only %d models found", n);
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  free(util_run(cmd, &(int){0}));
  free(dir);
}

/* A file's bytes (malloc'd) and length. */
static uint8_t *slurp(const char *path, size_t *len) {
  Diag d;
  diag_init(&d);
  uint8_t *b = rt_read_file(&d, path, len);
  cr_assert(b, "%s", d.buf);
  diag_free(&d);
  return b;
}

Test(export, matches_onnxruntime, .timeout = 300) {
  static const char *models[] = {"ops", "conv", "transformer", "lstm", "gpt"};
  static const char *engines[] = {"jit", "interp"};
  char *dir = util_tmpdir();
  for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
    char p[4096], args[1024], feeds[8192] = "";
    snprintf(p, sizeof p, ORT "%s/args", models[m]);
    FILE *f = fopen(p, "r");
    cr_assert(f && fgets(args, sizeof args, f), "%s", p);
    fclose(f);
    args[strcspn(args, "\n")] = 0;
    int st;
    char *out = util_nndc(&st, "export " NNDC_SRC_DIR "/%s --load " ORT "%s/params.safetensors -o %s/%s.onnx 2>&1", args,
                          models[m], dir, models[m]);
    cr_assert_eq(st, 0, "%s: %s", models[m], out);
    free(out);
    size_t la, lb;
    snprintf(p, sizeof p, "%s/%s.onnx", dir, models[m]);
    uint8_t *a = slurp(p, &la);
    char q[4096];
    snprintf(q, sizeof q, ORT "%s/model.onnx", models[m]);
    uint8_t *b = slurp(q, &lb);
    cr_expect(la == lb && !memcmp(a, b, la),
              "%s: the export differs from the committed %s (rerun tests/onnx/gen_ort.py if the exporter changed)", models[m], q);
    free(a);
    free(b);
    check_model(p);
    glob_t gl;
    snprintf(p, sizeof p, ORT "%s/in_*.npy", models[m]);
    cr_assert_eq(glob(p, 0, NULL, &gl), 0);
    for (size_t i = 0; i < gl.gl_pathc; i++) {
      const char *base = strrchr(gl.gl_pathv[i], '/') + 4;
      size_t len = strlen(feeds);
      snprintf(feeds + len, sizeof feeds - len, " --feed %.*s=%s", (int)(strlen(base) - 4), base, gl.gl_pathv[i]);
    }
    globfree(&gl);
    for (int e = 0; e < 2; e++) {
      out = util_nndc(&st, "run " NNDC_SRC_DIR "/%s --load " ORT "%s/params.safetensors%s --engine %s --out %s/%s_%s 2>&1", args,
                      models[m], feeds, engines[e], dir, models[m], engines[e]);
      cr_assert_eq(st, 0, "%s: %s", models[m], out);
      free(out);
      snprintf(p, sizeof p, ORT "%s/out_*.npy", models[m]);
      cr_assert_eq(glob(p, 0, NULL, &gl), 0);
      for (size_t i = 0; i < gl.gl_pathc; i++) {
        const char *base = strrchr(gl.gl_pathv[i], '/') + 5;
        char name[256], got[4096], label[1024];
        snprintf(name, sizeof name, "%.*s", (int)(strlen(base) - 4), base);
        snprintf(got, sizeof got, "%s/%s_%s/%s.npy", dir, models[m], engines[e], name);
        Shape sg, se;
        float *x = util_read_f32(got, &sg), *y = util_read_f32(gl.gl_pathv[i], &se);
        cr_assert(x && y, "%s, %s", got, gl.gl_pathv[i]);
        cr_expect(shape_eq(&sg, &se), "%s: %s has another shape than ONNX Runtime's", models[m], name);
        snprintf(label, sizeof label, "%s %s (%s) vs onnxruntime", models[m], name, engines[e]);
        cr_expect_leq(util_compare(label, x, y, shape_numel(&se), 1e-5, 1e-5), 1.0, "%s", label);
        free(x);
        free(y);
      }
      globfree(&gl);
    }
  }
  free(dir);
}

/* The batch dimension stays symbolic (the import reads it back as N), unless -D binds it. */
Test(export, batch_dimension_stays_symbolic_unless_bound) {
  char *dir = util_tmpdir();
  const char *cases[2][2] = {{"", "input x: f32[N, 784]"}, {"-D N=4", "input x: f32[4, 784]"}};
  for (int k = 0; k < 2; k++) {
    int st;
    char *out = util_nndc(&st, "export " NNDC_SRC_DIR "/examples/mlp.nnd %s -o %s/mlp.onnx 2>&1", cases[k][0], dir);
    cr_assert_eq(st, 0, "%s", out);
    cr_expect(!!strstr(out, "symbolic: N") == !k, "%s", out);
    free(out);
    out = util_nndc(&st, "import %s/mlp.onnx -o %s 2>&1 && cat %s/mlp.nnd", dir, dir, dir);
    cr_assert_eq(st, 0, "%s", out);
    cr_expect(strstr(out, cases[k][1]), "expected '%s' in:\n%s", cases[k][1], out);
    free(out);
  }
  free(dir);
}

/* A value tied to the batch size, no output, no -o: clear errors, exit 1 (2 for usage). */
Test(export, errors_exit_1_with_the_line) {
  char *dir = util_tmpdir();
  char p[4096];
  snprintf(p, sizeof p, "%s/m.nnd", dir);
  cr_assert_eq(util_write_file(p, "input x: f32[N, 4]\n\noutput y = sum(x) / dim(x, 0)\n"), 0);
  int st;
  char *out = util_nndc(&st, "export %s -o %s/m.onnx 2>&1", p, dir);
  cr_expect_eq(st, 1, "%s", out);
  cr_expect(strstr(out, "m.nnd:3:") && strstr(out, "depends on the value of N") && strstr(out, "-D N=VALUE") &&
            strstr(out, "output y = sum(x) / dim(x, 0)\n"), "%s", out);
  free(out);
  out = util_nndc(&st, "export %s -D N=8 -o %s/m.onnx 2>&1", p, dir);
  cr_expect_eq(st, 0, "bound, it exports: %s", out);
  free(out);
  cr_assert_eq(util_write_file(p, "input x: f32[N, 4]\nparam w: f32[4]\nloss = mean(x * w)\n"), 0);
  out = util_nndc(&st, "export %s -o %s/m.onnx 2>&1", p, dir);
  cr_expect_eq(st, 1, "%s", out);
  cr_expect(strstr(out, "no `output` to export"), "%s", out);
  free(out);
  out = util_nndc(&st, "export %s 2>&1", p);
  cr_expect_eq(st, 2, "%s", out);
  cr_expect(strstr(out, "export needs -o M.onnx"), "%s", out);
  free(out);
  free(dir);
}

/* The library names each op ONNX cannot express at its line: a training
 * graph's dropout, a gradient's ops. */
Test(export, inexpressible_ops_are_named_at_their_line) {
  UtilGraph *t = util_graph_new();
  BuildOpts o = {0};
  o.training = 1;
  cr_assert_eq(util_compile(&t->d, &t->g,
                            "input x: f32[N, 1, 4, 4]\nparam w: f32[2, 1, 3, 3]\n"
                            "h = maxpool2d(conv2d(x, w, padding=1), 2)\noutput y = dropout(h, 0.5)\nloss = mean(h)\n",
                            &o), 0, "%s", t->d.buf);
  cr_assert_eq(pass_autodiff(&t->d, &t->g), 0, "%s", t->d.buf);
  t->g.outputs[0].node = ir_bin(&t->g, OP_ADD, t->g.outputs[0].node, ir_sum_to(&t->g, t->g.grads[0], &(Shape){0, {0}}));
  float *params[1] = {calloc(18, sizeof(float))};
  uint8_t *buf = NULL;
  size_t len;
  cr_expect_eq(onnx_export(&t->d, &t->g, NULL, 0, params, &buf, &len), -1);
  cr_expect_null(buf);
  const char *msg = t->d.buf ? t->d.buf : "";
  cr_expect(strstr(msg, "test.nnd:4:") && strstr(msg, "ONNX cannot express 'dropout'"), "%s", msg);
  cr_expect(strstr(msg, "ONNX cannot express 'conv2d_bwd_w'") || strstr(msg, "ONNX cannot express 'maxpool2d_bwd'"), "%s", msg);
  free(params[0]);
  util_graph_free(t);
}
