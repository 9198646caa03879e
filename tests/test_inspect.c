/* test_inspect.c - the gradient with respect to an input and what is built
 * on it: pass_autodiff's input targets (Node.wrt) against central finite
 * differences on both engines, `nndc run --grad-input` (d loss / d x, and the
 * top logit's gradient without labels) and `nndc attack` (FGSM) against
 * PyTorch on the shared MLP and LeNet (tests/golden/gen_inspect.py), the
 * saliency PNG, and the command's errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define GOLD NNDC_SRC_DIR "/tests/golden/inspect/"

/* ------------------------------------------------- the pass, by itself */

static const char *fd_src =
    "input x: f32[3, 2, 6, 6]\n"
    "input y: i32[3]\n"
    "param w: f32[4, 2, 3, 3] = normal(0, 0.5)\n"
    "param v: f32[16, 5] = normal(0, 0.5)\n"
    "h = tanh(conv2d(x, w, padding=1))\n"
    "h = avgpool2d(h, 3)\n"
    "logits = flatten(h) @ v\n"
    "output probs = softmax(logits)\n"
    "loss = cross_entropy(logits, y)\n";

/* Runs the graph's roots on engine kind k with x, params and labels bound. */
static void run_roots(Graph *g, EngineKind k, Node **roots, int n, float *x, float **params, int32_t *y,
                      float **out) {
  Diag d;
  diag_init(&d);
  EngineOpts eo = {k, 1, 0};
  Engine *e = engine_new(&d, g, roots, n, &eo);
  cr_assert(e, "%s", d.buf ? d.buf : "");
  engine_bind(e, g->inputs[0].node, x);
  engine_bind(e, g->inputs[1].node, y);
  for (int i = 0; i < g->nparams; i++) engine_bind(e, g->params[i].node, params[i]);
  RunCtx ctx = {0, 1, 0};
  cr_assert_eq(engine_run(e, &d, &ctx), 0, "%s", d.buf ? d.buf : "");
  for (int i = 0; i < n; i++) {
    int64_t m = shape_numel(&roots[i]->shape);
    memcpy(out[i], engine_value(e, roots[i]), (size_t)m * 4);
  }
  engine_free(e);
  diag_free(&d);
}

/* d loss / d x and d top logit / d x, on both engines, against central differences of the loss. */
Test(inspect, input_gradient_matches_finite_differences) {
  UtilGraph *t = util_graph_new();
  BuildOpts o = {0};
  cr_assert_eq(util_compile(&t->d, &t->g, fd_src, &o), 0, "%s", t->d.buf);
  Graph *g = &t->g;
  g->inputs[0].node->wrt = 1;
  Node *top = autodiff_top_logit(&t->d, g);
  cr_assert(top);
  cr_assert_eq(top->in[0]->in[0]->op, OP_MATMUL, "the top logit is taken before the softmax");
  cr_assert_eq(pass_autodiff(&t->d, g), 0, "%s", t->d.buf);
  cr_assert(g->input_grads && g->input_grads[0] && !g->input_grads[1], "only x is a target");
  cr_assert_eq(ir_verify(g, &t->d), 0, "%s", t->d.buf);
  ModelState ms;
  cr_assert_eq(model_state_init(&t->d, g, &ms, 7), 0);
  int64_t nx = shape_numel(&g->inputs[0].node->shape);
  float *x = malloc((size_t)nx * 4), *gx = malloc((size_t)nx * 4), loss[2];
  util_fill(x, nx, 3, 0, 1);
  int32_t y[3] = {1, 4, 0};
  for (int k = 0; k < 2; k++) {
    EngineKind kind = k ? ENGINE_JIT : ENGINE_INTERP;
    Node *roots[1] = {g->input_grads[0]};
    float *outs[1] = {gx};
    run_roots(g, kind, roots, 1, x, ms.params, y, outs);
    int bad = 0;
    for (int64_t i = 0; i < nx; i += 7) {
      double h = 1e-2, f[2];
      float keep = x[i];
      for (int s = 0; s < 2; s++) {
        x[i] = keep + (float)(s ? -h : h);
        Node *lr[1] = {g->loss};
        float *lo[1] = {loss};
        run_roots(g, ENGINE_INTERP, lr, 1, x, ms.params, y, lo);
        f[s] = loss[0];
      }
      x[i] = keep;
      double fd = (f[0] - f[1]) / (2 * h);
      if (fabs(fd - gx[i]) > 2e-3 + 2e-2 * fabs(fd) && bad++ < 5)
        fprintf(stderr, "x[%lld]: %s %g, finite differences %g\n", (long long)i, k ? "jit" : "interp", gx[i], fd);
    }
    cr_expect_eq(bad, 0, "%d mismatches (%s)", bad, k ? "jit" : "interp");
  }
  model_state_free(g, &ms);
  free(x);
  free(gx);
  util_graph_free(t);
}

/* ----------------------------------------- the commands, against PyTorch */

/* The first n samples of the golden u8 images as DIR/x<n>.npy, and their labels as DIR/y<n>.npy. */
static void write_first(const char *dir, int64_t n) {
  Diag d;
  diag_init(&d);
  Array x, y;
  cr_assert_eq(npy_read(&d, GOLD "x.npy", &x), 0);
  cr_assert_eq(npy_read(&d, GOLD "y.npy", &y), 0);
  x.shape.dim[0] = n, y.shape.dim[0] = n;
  char p[4096];
  snprintf(p, sizeof p, "%s/x%lld.npy", dir, (long long)n);
  cr_assert_eq(npy_write(&d, p, x.et, &x.shape, x.data), 0);
  snprintf(p, sizeof p, "%s/y%lld.npy", dir, (long long)n);
  cr_assert_eq(npy_write(&d, p, y.et, &y.shape, y.data), 0);
  array_free(&x);
  array_free(&y);
  diag_free(&d);
}

static void expect_close(const char *label, const char *got_path, const char *want_path) {
  Shape gs, ws;
  float *got = util_read_f32(got_path, &gs), *want = util_read_f32(want_path, &ws);
  cr_assert(got && want, "%s", label);
  int64_t n = shape_numel(&ws);
  cr_assert_eq(shape_numel(&gs), n, "%s: %lld values, want %lld", label, (long long)shape_numel(&gs), (long long)n);
  double top = 0;
  for (int64_t i = 0; i < n; i++) top = fmax(top, fabs(want[i]));
  cr_assert(top > 0, "%s: a zero golden gradient tests nothing", label);
  /* to 1e-4 of the largest magnitude */
  cr_expect_leq(util_compare(label, got, want, n, 1e-4 * top, 0), 1.0, "%s", label);
  free(got);
  free(want);
}

static const char *engines[] = {"jit", "interp"};

static void grad_case(const char *model) {
  char *dir = util_tmpdir();
  write_first(dir, 16);
  for (int e = 0; e < 2; e++) {
    int st;
    char *o = util_nndc(&st, "run %s/models/%s.nnd --load " GOLD "%s --feed x=%s/x16.npy --feed y=%s/y16.npy "
                        "--grad-input x --out %s/l --engine %s", NNDC_SHARED_DIR, model, model, dir, dir, dir,
                        engines[e]);
    cr_assert_eq(st, 0, "%s", o);
    free(o);
    char got[4096], want[4096], label[256];
    snprintf(got, sizeof got, "%s/l/grad.x.npy", dir);
    snprintf(want, sizeof want, GOLD "%s.grad_loss.npy", model);
    snprintf(label, sizeof label, "%s %s d loss / d x", model, engines[e]);
    expect_close(label, got, want);
    o = util_nndc(&st, "run %s/models/%s.nnd --load " GOLD "%s --feed x=%s/x16.npy --grad-input x --out %s/t "
                  "--engine %s --png", NNDC_SHARED_DIR, model, model, dir, dir, engines[e]);
    cr_assert_eq(st, 0, "%s", o);
    cr_expect(strstr(o, "top logit"), "the note says what was differentiated: %s", o);
    free(o);
    snprintf(got, sizeof got, "%s/t/grad.x.npy", dir);
    snprintf(want, sizeof want, GOLD "%s.grad_top.npy", model);
    snprintf(label, sizeof label, "%s %s d top logit / d x", model, engines[e]);
    expect_close(label, got, want);
  }
  free(dir);
}

Test(inspect, mlp_input_gradients_match_pytorch) { grad_case("mlp"); }
Test(inspect, lenet_input_gradients_match_pytorch) { grad_case("lenet"); }

/* Parses attack's table: a line per eps, "eps loss accuracy". */
static int parse_table(const char *out, double *rows, int max) {
  const char *p = strstr(out, "accuracy\n");
  if (!p) return 0;
  p += 9;
  int n = 0;
  double e, l, a;
  int used;
  while (n < max && sscanf(p, "%lf %lf %lf%n", &e, &l, &a, &used) == 3) {
    rows[3 * n] = e, rows[3 * n + 1] = l, rows[3 * n + 2] = a;
    n++;
    p += used;
  }
  return n;
}

static void attack_case(const char *model) {
  Shape s;
  char path[4096];
  snprintf(path, sizeof path, GOLD "%s.fgsm.npy", model);
  float *want = util_read_f32(path, &s);
  cr_assert(want && s.rank == 2 && s.dim[0] == 4 && s.dim[1] == 2);
  for (int e = 0; e < 2; e++) {
    int st;
    /* batch 24: two full batches and a tail of 16 */
    char *o = util_nndc(&st, "attack %s/models/%s.nnd --load " GOLD "%s --test x=" GOLD "x.npy --test y=" GOLD
                        "y.npy --eps 0,0.05,0.1,0.2 --batch 24 --engine %s", NNDC_SHARED_DIR, model, model,
                        engines[e]);
    cr_assert_eq(st, 0, "%s", o);
    cr_expect(strstr(o, "x clipped to [0, 1]"), "%s", o);
    double rows[3 * 8];
    cr_assert_eq(parse_table(o, rows, 8), 4, "%s", o);
    for (int k = 0; k < 4; k++) {
      /* printed to 4 decimals; one sample of 64 is 0.0156 */
      cr_expect_float_eq(rows[3 * k + 2], want[2 * k + 1], 1e-4, "%s %s eps %g: accuracy %g, PyTorch %g", model,
                         engines[e], rows[3 * k], rows[3 * k + 2], want[2 * k + 1]);
      cr_expect(fabs(rows[3 * k + 1] - want[2 * k]) <= 1e-3 * fabs(want[2 * k]) + 1e-4,
                "%s %s eps %g: loss %g, PyTorch %g", model, engines[e], rows[3 * k], rows[3 * k + 1], want[2 * k]);
    }
    cr_expect(rows[3 * 3 + 2] < rows[2], "the attack lowers the accuracy");
    free(o);
  }
  free(want);
}

Test(inspect, mlp_fgsm_matches_pytorch) { attack_case("mlp"); }
Test(inspect, lenet_fgsm_matches_pytorch) { attack_case("lenet"); }

/* ------------------------------------------------------ the PNG, errors */

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

Test(inspect, saliency_png_pairs_each_input_with_its_map) {
  char *dir = util_tmpdir();
  write_first(dir, 5);
  int st;
  char *o = util_nndc(&st, "run %s/models/lenet.nnd --load " GOLD "lenet --feed x=%s/x5.npy --feed y=%s/y5.npy "
                      "--grad-input x --png --out %s", NNDC_SHARED_DIR, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", o);
  free(o);
  char p[4096];
  snprintf(p, sizeof p, "%s/grad.x.png", dir);
  FILE *f = fopen(p, "rb");
  cr_assert(f, "%s", p);
  unsigned char h[24];
  cr_assert_eq(fread(h, 1, 24, f), 24u);
  fclose(f);
  cr_expect(!memcmp(h, "\x89PNG\r\n\x1a\n", 8) && !memcmp(h + 12, "IHDR", 4));
  /* 5 tiles, 3 per row: each 28 x (28 + 1 + 28), one-pixel borders between */
  cr_expect_eq(be32(h + 16), 3 * 58 - 1);
  cr_expect_eq(be32(h + 20), 2 * 29 - 1);
  free(dir);
}

Test(inspect, errors) {
  static const struct {
    const char *args;  /* after "nndc "; %s: the shared directory */
    int status;
    const char *says;
  } cases[] = {
      {"run %s/models/mlp.nnd --feed x=" GOLD "x.npy --feed y=" GOLD "y.npy --grad-input y", 1,
       "error: --grad-input: input 'y' is i32"},
      {"run %s/models/mlp.nnd --feed x=" GOLD "x.npy --grad-input z", 1, "no input named 'z'"},
      {"attack %s/models/mlp.nnd --eps 0.1", 2, "attack needs --test"},
      {"attack %s/models/mlp.nnd --test x=" GOLD "x.npy --test y=" GOLD "y.npy --eps 0.1,-1", 2,
       "--eps needs numbers >= 0"},
      {"attack %s/models/mlp.nnd --test x=" GOLD "x.npy", 1, "error: attack needs the model's loss"},
      {"attack %s/models/mlp.nnd --test x=" GOLD "x.npy --test y=" GOLD "y.npy --grad-input y", 1,
       "error: --grad-input: input 'y' is i32"},
      {"attack %s/models/mlp.nnd --test x=" NNDC_SRC_DIR "/tests/golden/npy/f4_0x3.npy --test y=" GOLD "y.npy", 1,
       "holds no samples to attack"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    int st;
    char args[1024];
    snprintf(args, sizeof args, cases[k].args, NNDC_SHARED_DIR);
    char *o = util_nndc(&st, "%s", args);
    cr_expect_eq(st, cases[k].status, "%s: %s", args, o);
    cr_expect(strstr(o, cases[k].says), "%s: %s", args, o);
    free(o);
  }
}

Test(inspect, ir_shows_the_input_gradient) {
  int st;
  char *o = util_nndc(&st, "ir %s/models/lenet.nnd --stage grad --grad-input x", NNDC_SHARED_DIR);
  cr_assert_eq(st, 0, "%s", o);
  const char *g = strstr(o, "grad input x = %");
  cr_assert(g, "%s", o);
  char want[64];
  snprintf(want, sizeof want, "%%%d = conv2d_bwd_x(", atoi(g + strlen("grad input x = %")));
  cr_expect(strstr(o, want), "d loss / d x comes from the first convolution's backward: %s", want);
  free(o);
  o = util_nndc(&st, "ir %s/models/lenet.nnd --stage grad", NNDC_SHARED_DIR);
  cr_expect(st == 0 && !strstr(o, "grad input"), "%s", o);
  free(o);
}
