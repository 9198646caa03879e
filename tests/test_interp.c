/* test_interp.c - the reference interpreter against PyTorch: each op's graph
 * is built directly with ir_leaf/ir_op, fed the golden inputs written by
 * tests/golden/gen_ops.py and compared with torch's output.  Also dropout
 * statistics and determinism, run-time errors (unfed inputs, labels out of
 * range), partial evaluation and re-running with new inputs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define GOLD NNDC_SRC_DIR "/tests/golden/ops/"

/* One test graph and everything it owns. */
typedef struct T {
  UtilGraph u;
  Interp it;
  int started;
} T;

static void t_init(T *t) {
  util_graph_init(&t->u);
  t->started = 0;
}

static void t_free(T *t) {
  if (t->started) interp_free(&t->it);
  util_graph_fini(&t->u);
}

static Shape shp(int rank, const int64_t *dims) {
  Shape s = {rank, {0}};
  for (int k = 0; k < rank; k++) s.dim[k] = dims[k];
  return s;
}
#define SHAPE(...) shp((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
static const Loc NOLOC = {0};

static void load(const char *name, Array *arr) {
  char path[512];
  Diag d;
  diag_init(&d);
  snprintf(path, sizeof path, GOLD "%s.npy", name);
  cr_assert_eq(npy_read(&d, path, arr), 0, "%s: %s", path, d.buf ? d.buf : "");
  diag_free(&d);
}

static int run(T *t, const uint8_t *want, const RunCtx *ctx) {
  if (!t->started) interp_init(&t->it, &t->u.g);
  t->started = 1;
  return interp_run(&t->it, &t->u.d, want, ctx);
}

/* Builds op over the golden operands of case `name`, runs it, and compares
 * with NAME_y.npy: dtype and shape exactly, values within atol/rtol.  With
 * crop, op's result is first sliced to the expected shape's leading part
 * (autodiff's crop of a conv2d gradient, conv_transpose2d's output_padding). */
static void golden_c(const char *name, Op op, int nin, const Attr *a, double tol, int crop) {
  T t;
  Array in[4], y;
  Node *leaf[4];
  char buf[256];
  t_init(&t);
  for (int k = 0; k < nin; k++) {
    snprintf(buf, sizeof buf, "%s_x%d", name, k);
    load(buf, &in[k]);
    leaf[k] = ir_leaf(&t.u.g, NOLOC, OP_INPUT, in[k].et == EL_I32 ? DT_I32 : DT_F32, &in[k].shape, buf);
  }
  snprintf(buf, sizeof buf, "%s_y", name);
  load(buf, &y);
  Node *n = ir_op(&t.u.g, &t.u.d, NOLOC, op, leaf, nin, a);
  cr_assert(n, "%s: %s", name, t.u.d.buf ? t.u.d.buf : "");
  if (crop) {
    Attr sa;
    memset(&sa, 0, sizeof sa);
    sa.shape = y.shape;
    n = ir_op(&t.u.g, &t.u.d, NOLOC, OP_SLICE, &n, 1, &sa);
    cr_assert(n, "%s: %s", name, t.u.d.buf ? t.u.d.buf : "");
  }
  cr_assert(shape_eq(&n->shape, &y.shape), "%s: inferred shape differs from torch's", name);
  cr_assert_eq(n->dt, y.et == EL_I32 ? DT_I32 : DT_F32, "%s: dtype", name);
  cr_assert(ir_verify(&t.u.g, &t.u.d) == 0, "%s: %s", name, t.u.d.buf);
  interp_init(&t.it, &t.u.g);
  t.started = 1;
  for (int k = 0; k < nin; k++) t.it.val[leaf[k]->id] = in[k].data;
  cr_assert_eq(interp_run(&t.it, &t.u.d, NULL, NULL), 0, "%s: %s", name, t.u.d.buf ? t.u.d.buf : "");
  int64_t cnt = shape_numel(&y.shape);
  if (y.et == EL_I32) {
    cr_assert_eq(memcmp(t.it.val[n->id], y.data, (size_t)cnt * 4), 0, "%s: i32 values differ", name);
  } else {
    double err = util_compare(name, t.it.val[n->id], y.data, cnt, tol, tol);
    cr_assert(err <= 1, "%s: mismatch (worst %g)", name, err);
  }
  for (int k = 0; k < nin; k++) array_free(&in[k]);
  array_free(&y);
  t_free(&t);
}

static void golden(const char *name, Op op, int nin, const Attr *a, double tol) { golden_c(name, op, nin, a, tol, 0); }

static Attr attr(void) {
  Attr a;
  memset(&a, 0, sizeof a);
  return a;
}

/* ------------------------------------------------------------ elementwise */

Test(interp, binary_broadcasting) {
  static const struct { const char *name; Op op; } ops[] = {
    {"add", OP_ADD}, {"sub", OP_SUB}, {"mul", OP_MUL}, {"div", OP_DIV},
    {"maximum", OP_MAXIMUM}, {"minimum", OP_MINIMUM}};
  static const char *kinds[] = {"bc", "outer", "3d"};
  char name[64];
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    for (int k = 0; k < 3; k++) {
      snprintf(name, sizeof name, "%s_%s", ops[i].name, kinds[k]);
      golden(name, ops[i].op, 2, NULL, 1e-6);
    }
  golden("div_same", OP_DIV, 2, NULL, 1e-6);
}

Test(interp, comparisons) {
  golden("eq", OP_EQ, 2, NULL, 0);
  golden("ne", OP_NE, 2, NULL, 0);
  golden("lt", OP_LT, 2, NULL, 0);
  golden("le", OP_LE, 2, NULL, 0);
  golden("gt", OP_GT, 2, NULL, 0);
  golden("ge", OP_GE, 2, NULL, 0);
  golden("lt_i32", OP_LT, 2, NULL, 0);
}

Test(interp, unary) {
  static const struct { const char *name; Op op; double f0, f1; } ops[] = {
    {"neg", OP_NEG, 0, 0}, {"relu", OP_RELU, 0, 0}, {"sigmoid", OP_SIGMOID, 0, 0},
    {"tanh", OP_TANH, 0, 0}, {"exp", OP_EXP, 0, 0}, {"abs", OP_ABS, 0, 0},
    {"softplus", OP_SOFTPLUS, 0, 0}, {"gelu", OP_GELU, 0, 0}, {"erf", OP_ERF, 0, 0},
    {"sign", OP_SIGN, 0, 0}, {"elu", OP_ELU, 0.7, 0}, {"leaky_relu", OP_LEAKY_RELU, 0.1, 0},
    {"clamp", OP_CLAMP, -0.5, 0.7}, {"pow2", OP_POW, 2, 0}, {"pow3", OP_POW, 3, 0},
    {"log", OP_LOG, 0, 0}, {"sqrt", OP_SQRT, 0, 0}, {"pow_half", OP_POW, 0.5, 0},
    {"cast", OP_CAST, 0, 0}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    Attr a = attr();
    a.f[0] = ops[i].f0;
    a.f[1] = ops[i].f1;
    golden(ops[i].name, ops[i].op, 1, &a, 1e-5);
  }
}

/* ------------------------------------------------------------- reductions */

Test(interp, reductions_every_axis_combo) {
  static const struct { const char *name; Op op; } ops[] = {{"sum", OP_SUM}, {"mean", OP_MEAN}, {"max", OP_MAX}};
  char name[64];
  for (int i = 0; i < 3; i++)
    for (int mask = 0; mask < 8; mask++)
      for (int kd = 0; kd < 2; kd++) {
        Attr a = attr();
        a.i[0] = mask;
        a.i[1] = kd;
        snprintf(name, sizeof name, "%s_m%d_k%d", ops[i].name, mask, kd);
        golden(name, ops[i].op, 1, &a, 1e-5);
      }
}

Test(interp, argmax) {
  char name[32];
  for (int ax = 0; ax < 3; ax++) {
    Attr a = attr();
    a.i[0] = ax;
    snprintf(name, sizeof name, "argmax_a%d", ax);
    golden(name, OP_ARGMAX, 1, &a, 0);
  }
  Attr a = attr();
  a.i[0] = -1;   /* negative axis counts from the end */
  T t;
  t_init(&t);
  Array x;
  load("argmax_a2_x0", &x);
  Node *in = ir_leaf(&t.u.g, NOLOC, OP_INPUT, DT_F32, &x.shape, "x");
  Node *n = ir_op(&t.u.g, &t.u.d, NOLOC, OP_ARGMAX, &in, 1, &a);
  cr_assert(n && n->a.i[0] == 2 && n->dt == DT_I32);
  array_free(&x);
  t_free(&t);
}

/* ------------------------------------------------------------------ shape */

Test(interp, shape_ops) {
  Attr a = attr();
  a.i[0] = 2, a.i[1] = 0, a.i[2] = 1;
  golden("transpose", OP_TRANSPOSE, 1, &a, 0);
  a = attr();
  a.i[0] = 1, a.i[1] = 0, a.i[2] = 2;
  a.shape = SHAPE(1, 3, 2);
  golden("slice", OP_SLICE, 1, &a, 0);
  a.shape = SHAPE(2, 3, 4);
  golden("slice_bwd", OP_SLICE_BWD, 1, &a, 0);
  a = attr();
  a.i[0] = 1;
  golden("concat", OP_CONCAT, 3, &a, 0);
  a.i[0] = -2;
  golden("concat", OP_CONCAT, 3, &a, 0);
  a = attr();
  a.shape = SHAPE(2, 3, 4);
  golden("expand", OP_EXPAND, 1, &a, 0);
}

Test(interp, reshape_keeps_order) {
  T t;
  t_init(&t);
  Shape s = SHAPE(3, 5), s2 = SHAPE(5, 1, 3);
  Node *x = ir_leaf(&t.u.g, NOLOC, OP_INPUT, DT_F32, &s, "x");
  Node *r = ir_reshape(&t.u.g, x, &s2);
  float xv[15];
  for (int i = 0; i < 15; i++) xv[i] = (float)i * 0.5f;
  interp_init(&t.it, &t.u.g);
  t.started = 1;
  t.it.val[x->id] = xv;
  cr_assert_eq(interp_run(&t.it, &t.u.d, NULL, NULL), 0);
  cr_assert(shape_eq(&r->shape, &s2));
  cr_assert_eq(memcmp(t.it.val[r->id], xv, sizeof xv), 0);
  t_free(&t);
}

Test(interp, sum_to_undoes_broadcast) {
  T t;
  t_init(&t);
  Shape s = SHAPE(2, 3, 4), to = SHAPE(3, 1);
  Node *x = ir_leaf(&t.u.g, NOLOC, OP_INPUT, DT_F32, &s, "x");
  Node *r = ir_sum_to(&t.u.g, x, &to);
  cr_assert(shape_eq(&r->shape, &to));
  float xv[24];
  for (int i = 0; i < 24; i++) xv[i] = (float)i;
  run(&t, NULL, NULL);
  t.it.val[x->id] = xv;
  cr_assert_eq(run(&t, NULL, NULL), 0);
  const float *y = t.it.val[r->id];
  for (int j = 0; j < 3; j++) {
    float want = 0;
    for (int b = 0; b < 2; b++)
      for (int k = 0; k < 4; k++) want += xv[b * 12 + j * 4 + k];
    cr_assert_float_eq(y[j], want, 1e-4);
  }
  t_free(&t);
}

/* ----------------------------------------------------------------- matrix */

Test(interp, matmul) {
  golden("matmul", OP_MATMUL, 2, NULL, 1e-5);
  golden("matmul_bb", OP_MATMUL, 2, NULL, 1e-5);
  golden("matmul_b2", OP_MATMUL, 2, NULL, 1e-5);
}

/* ----------------------------------------------------------------- neural */

Test(interp, softmax) {
  Attr a = attr();
  golden("softmax_a0", OP_SOFTMAX, 1, &a, 1e-5);
  golden("log_softmax_a0", OP_LOG_SOFTMAX, 1, &a, 1e-5);
  a.i[0] = 1;
  golden("softmax_a1", OP_SOFTMAX, 1, &a, 1e-5);
  golden("log_softmax_a1", OP_LOG_SOFTMAX, 1, &a, 1e-5);
  golden("softmax_3d", OP_SOFTMAX, 1, &a, 1e-5);
  a.i[0] = -1;
  golden("softmax_a1", OP_SOFTMAX, 1, &a, 1e-5);
}

Test(interp, one_hot_and_losses) {
  Attr a = attr();
  a.shape = SHAPE(6, 4);
  golden("one_hot", OP_ONE_HOT, 1, &a, 0);
  golden("cross_entropy", OP_CROSS_ENTROPY, 2, NULL, 1e-5);
  golden("mse", OP_MSE, 2, NULL, 1e-5);
  golden("bce_logits", OP_BCE_LOGITS, 2, NULL, 1e-5);
}

Test(interp, cross_entropy_label_out_of_range) {
  T t;
  t_init(&t);
  Shape ls = SHAPE(2, 10), ys = SHAPE(2);
  Node *in[2] = {ir_leaf(&t.u.g, NOLOC, OP_INPUT, DT_F32, &ls, "logits"),
                 ir_leaf(&t.u.g, NOLOC, OP_INPUT, DT_I32, &ys, "y")};
  Node *ce = ir_op(&t.u.g, &t.u.d, NOLOC, OP_CROSS_ENTROPY, in, 2, NULL);
  cr_assert(ce);
  float logits[20] = {0};
  int32_t lab[2] = {3, 12};
  run(&t, NULL, NULL);
  diag_clear(&t.u.d);
  t.it.val[in[0]->id] = logits;
  t.it.val[in[1]->id] = lab;
  cr_assert_eq(run(&t, NULL, NULL), -1);
  cr_assert(strstr(t.u.d.buf, "label 12 out of range [0, 10)"), "%s", t.u.d.buf);
  lab[1] = 9;
  diag_clear(&t.u.d);
  cr_assert_eq(run(&t, NULL, NULL), 0, "%s", t.u.d.buf);
  cr_assert_float_eq(*(float *)t.it.val[ce->id], logf(10), 1e-5);   /* uniform logits */
  t_free(&t);
}

/* --------------------------------------------------------------- dropout */

#define DN 100000

/* Runs dropout(ones[DN], p) and returns the output (owned by t). */
static const float *dropout_run(T *t, Node **x, double p, int64_t key, const RunCtx *ctx, float *ones) {
  if (!*x) {
    Shape s = SHAPE(DN);
    *x = ir_leaf(&t->u.g, NOLOC, OP_INPUT, DT_F32, &s, "x");
    Attr a = attr();
    a.f[0] = p;
    a.i[0] = key;
    cr_assert(ir_op(&t->u.g, &t->u.d, NOLOC, OP_DROPOUT, x, 1, &a));
    interp_init(&t->it, &t->u.g);
    t->started = 1;
    t->it.val[(*x)->id] = ones;
  }
  cr_assert_eq(interp_run(&t->it, &t->u.d, NULL, ctx), 0);
  return t->it.val[t->u.g.nnodes - 1];
}

static int64_t nkept(const float *y) {
  int64_t k = 0;
  for (int i = 0; i < DN; i++) k += y[i] != 0;
  return k;
}

Test(interp, dropout_statistics_and_masks) {
  T t;
  Node *x = NULL;
  float *ones = malloc(sizeof(float) * DN), *first = malloc(sizeof(float) * DN);
  for (int i = 0; i < DN; i++) ones[i] = 1;
  t_init(&t);
  RunCtx ctx = {7, 1, 1};
  const float *y = dropout_run(&t, &x, 0.3, 5, &ctx, ones);
  double frac = (double)nkept(y) / DN;
  cr_assert(fabs(frac - 0.7) < 0.01, "kept fraction %g", frac);
  for (int i = 0; i < DN; i++)
    cr_assert(y[i] == 0 || fabsf(y[i] - 1 / 0.7f) < 1e-6f, "kept value %g not scaled", y[i]);
  memcpy(first, y, sizeof(float) * DN);
  y = dropout_run(&t, &x, 0.3, 5, &ctx, ones);                    /* same step: same mask */
  cr_assert_eq(memcmp(first, y, sizeof(float) * DN), 0);
  ctx.step = 2;                                                   /* next step: new mask */
  y = dropout_run(&t, &x, 0.3, 5, &ctx, ones);
  int64_t diff = 0;
  for (int i = 0; i < DN; i++) diff += (first[i] != 0) != (y[i] != 0);
  cr_assert(diff > DN / 5, "only %lld mask bits changed", (long long)diff);
  ctx.training = 0;                                               /* inference: identity */
  y = dropout_run(&t, &x, 0.3, 5, &ctx, ones);
  cr_assert_eq(memcmp(ones, y, sizeof(float) * DN), 0);
  t_free(&t);

  t_init(&t);                                                     /* another key: another mask */
  x = NULL;
  ctx = (RunCtx){7, 1, 1};
  y = dropout_run(&t, &x, 0.3, 6, &ctx, ones);
  diff = 0;
  for (int i = 0; i < DN; i++) diff += (first[i] != 0) != (y[i] != 0);
  cr_assert(diff > DN / 5);
  t_free(&t);
  free(ones);
  free(first);
}

/* ------------------------------------------------------ conv and pooling */

Test(interp, conv2d_and_backward) {
  char name[64];
  for (int s = 1; s <= 2; s++)
    for (int p = 0; p <= 1; p++) {
      Attr a = attr();
      a.i[0] = s;
      a.i[1] = p;
      snprintf(name, sizeof name, "conv_s%d_p%d", s, p);
      golden(name, OP_CONV2D, 2, &a, 1e-5);
      a.shape = SHAPE(2, 3, 7, 7);
      snprintf(name, sizeof name, "conv_bwd_x_s%d_p%d", s, p);
      golden(name, OP_CONV2D_BWD_X, 2, &a, 1e-5);
      a.shape = SHAPE(4, 3, 3, 3);
      snprintf(name, sizeof name, "conv_bwd_w_s%d_p%d", s, p);
      golden(name, OP_CONV2D_BWD_W, 2, &a, 1e-5);
    }
}

/* The full convolution attrs: strides, paddings, dilations (h, w), groups. */
static Attr cattr(const int64_t v[7]) {
  Attr a = attr();
  for (int k = 0; k < 7; k++) a.i[k] = v[k];
  return a;
}

/* gen_ops.py's CONV_MORE: dilation, per-axis stride and padding, groups
 * (depthwise with multiplier 2 and plain depthwise), and the gradients. */
Test(interp, conv2d_dilation_groups) {
  static const struct { const char *name; int64_t a[7]; Shape x, w; } cs[] = {
    {"convm_dil", {1, 1, 1, 1, 2, 2, 1}, {4, {2, 3, 9, 8}}, {4, {4, 3, 3, 2}}},
    {"convm_rect", {2, 1, 3, 2, 1, 2, 1}, {4, {2, 3, 9, 11}}, {4, {5, 3, 3, 4}}},
    {"convm_g2", {2, 1, 2, 1, 1, 1, 2}, {4, {2, 4, 7, 9}}, {4, {6, 2, 3, 3}}},
    {"convm_dw2", {1, 1, 1, 0, 2, 1, 3}, {4, {2, 3, 8, 7}}, {4, {6, 1, 3, 3}}},
    {"convm_dw", {2, 1, 1, 1, 1, 1, 5}, {4, {1, 5, 6, 7}}, {4, {5, 1, 3, 3}}},
  };
  char name[64];
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
    Attr a = cattr(cs[i].a);
    golden(cs[i].name, OP_CONV2D, 2, &a, 1e-5);
    a.shape = cs[i].x;
    snprintf(name, sizeof name, "%s_bwd_x", cs[i].name);
    golden(name, OP_CONV2D_BWD_X, 2, &a, 1e-5);
    a.shape = cs[i].w;
    snprintf(name, sizeof name, "%s_bwd_w", cs[i].name);
    golden(name, OP_CONV2D_BWD_W, 2, &a, 1e-5);
  }
}

/* conv_transpose2d as CONV2D_BWD_X with torch's output shape (stride 2 and
 * output_padding 1, groups 2, dilation 2, output_padding >= stride below
 * the dilation); its gradients: dx = conv2d(dy, w) (cropped to x), dw =
 * conv2d_bwd_w(dy, x). */
Test(interp, conv_transpose2d) {
  static const struct { const char *name; int64_t a[7]; Shape y, w; } cs[] = {
    {"convt_s2_op1", {2, 1, 2, 1, 1, 1, 1}, {4, {2, 3, 10, 12}}, {4, {4, 3, 3, 3}}},
    {"convt_g2", {1, 0, 2, 1, 1, 1, 2}, {4, {2, 6, 7, 8}}, {4, {4, 3, 3, 2}}},
    {"convt_dil2", {2, 1, 2, 1, 2, 2, 1}, {4, {2, 3, 10, 9}}, {4, {2, 3, 3, 2}}},
    {"convt_op_dil", {1, 1, 1, 1, 2, 2, 1}, {4, {1, 3, 8, 5}}, {4, {2, 3, 3, 2}}},
  };
  char name[64];
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
    Attr a = cattr(cs[i].a);
    a.shape = cs[i].y;
    golden(cs[i].name, OP_CONV2D_BWD_X, 2, &a, 1e-5);
    snprintf(name, sizeof name, "%s_dx", cs[i].name);
    golden_c(name, OP_CONV2D, 2, &a, 1e-5, 1);
    a.shape = cs[i].w;
    snprintf(name, sizeof name, "%s_dw", cs[i].name);
    golden(name, OP_CONV2D_BWD_W, 2, &a, 1e-5);
  }
}

Test(interp, pooling_and_backward) {
  static const int ks[3][2] = {{2, 2}, {3, 2}, {3, 1}};
  char name[64];
  for (int i = 0; i < 3; i++) {
    Attr a = attr();
    a.i[0] = ks[i][0];
    a.i[1] = ks[i][1];
    a.shape = SHAPE(2, 3, 7, 7);
    snprintf(name, sizeof name, "maxpool_k%d_s%d", ks[i][0], ks[i][1]);
    golden(name, OP_MAXPOOL2D, 1, &a, 0);
    snprintf(name, sizeof name, "avgpool_k%d_s%d", ks[i][0], ks[i][1]);
    golden(name, OP_AVGPOOL2D, 1, &a, 1e-5);
    snprintf(name, sizeof name, "maxpool_bwd_k%d_s%d", ks[i][0], ks[i][1]);
    golden(name, OP_MAXPOOL2D_BWD, 2, &a, 1e-6);
    snprintf(name, sizeof name, "avgpool_bwd_k%d_s%d", ks[i][0], ks[i][1]);
    golden(name, OP_AVGPOOL2D_BWD, 1, &a, 1e-5);
  }
}

/* ----------------------------------------------------- driver behaviour */

Test(interp, unfed_input_is_an_error) {
  T t;
  t_init(&t);
  Shape s = SHAPE(4);
  Node *x = ir_leaf(&t.u.g, NOLOC, OP_INPUT, DT_F32, &s, "x");
  ir_un(&t.u.g, OP_RELU, x);
  cr_assert_eq(run(&t, NULL, NULL), -1);
  cr_assert(strstr(t.u.d.buf, "input 'x' is not fed"), "%s", t.u.d.buf);
  t_free(&t);
}

Test(interp, want_mask_and_rerun) {
  T t;
  t_init(&t);
  Shape s = SHAPE(4);
  Node *x = ir_leaf(&t.u.g, NOLOC, OP_INPUT, DT_F32, &s, "x");
  Node *y = ir_leaf(&t.u.g, NOLOC, OP_INPUT, DT_F32, &s, "y");
  Node *r = ir_bin(&t.u.g, OP_MUL, ir_un(&t.u.g, OP_RELU, x), ir_scalar(&t.u.g, 3));
  Node *e = ir_un(&t.u.g, OP_EXP, y);   /* y is not fed: must not be needed */
  uint8_t *want = calloc((size_t)t.u.g.nnodes, 1);
  want[r->id] = 1;
  float xv[4] = {-1, 2, -3, 4};
  run(&t, want, NULL);
  diag_clear(&t.u.d);
  t.it.val[x->id] = xv;
  cr_assert_eq(run(&t, want, NULL), 0, "%s", t.u.d.buf);
  cr_assert_null(t.it.val[e->id]);
  const float *rv = t.it.val[r->id];
  cr_assert(rv[0] == 0 && rv[1] == 6 && rv[2] == 0 && rv[3] == 12);
  float xv2[4] = {1, 1, 1, -1};
  t.it.val[x->id] = xv2;                                /* new input: new result */
  cr_assert_eq(run(&t, want, NULL), 0);
  rv = t.it.val[r->id];
  cr_assert(rv[0] == 3 && rv[3] == 0);
  ir_mark_deps(&t.u.g, &e, 1, want);
  cr_assert(want[y->id] && want[e->id] && want[x->id]);
  free(want);
  t_free(&t);
}

Test(interp, const_fill_and_sgd_update_delegated) {
  T t;
  t_init(&t);
  Shape s = SHAPE(3);
  Node *p = ir_leaf(&t.u.g, NOLOC, OP_PARAM, DT_F32, &s, "w");
  Node *st = ir_leaf(&t.u.g, NOLOC, OP_STATE, DT_F32, &s, "w.buf");
  Node *g = ir_const(&t.u.g, NOLOC, &s, 2.0);
  Attr a = attr();
  a.f[0] = 0.5;   /* lr, no momentum */
  Node *in[3] = {p, g, st};
  Node *u = ir_op(&t.u.g, &t.u.d, NOLOC, OP_OPT_SGD, in, 3, &a);
  cr_assert(u && u->shape.rank == 0, "%s", t.u.d.buf ? t.u.d.buf : "");
  float pv[3] = {1, 2, 3}, sv[3] = {0, 0, 0};
  run(&t, NULL, NULL);
  cr_assert(strstr(t.u.d.buf, "param 'w' is not fed"), "%s", t.u.d.buf);
  t.it.val[p->id] = pv;
  t.it.val[st->id] = sv;
  RunCtx ctx = {0, 1, 1};
  cr_assert_eq(run(&t, NULL, &ctx), 0);
  cr_assert(pv[0] == 0 && pv[1] == 1 && pv[2] == 2, "%g %g %g", pv[0], pv[1], pv[2]);
  cr_assert_eq(*(float *)t.it.val[u->id], 0);
  t_free(&t);
}

/* rand is uniform on [0, 1) and randn standard normal (moments of 2^16
 * draws), fresh at every step, the same for the same (seed, step). */
Test(interp, noise_moments_and_steps) {
  T t;
  t_init(&t);
  Attr a = attr();
  a.shape = (Shape){1, {65536}};
  a.i[0] = 3;
  Node *u = ir_op(&t.u.g, &t.u.d, (Loc){0}, OP_RAND, NULL, 0, &a);
  a.i[0] = 4;
  Node *z = ir_op(&t.u.g, &t.u.d, (Loc){0}, OP_RANDN, NULL, 0, &a);
  cr_assert(u && z, "%s", t.u.d.buf ? t.u.d.buf : "");
  float *first = malloc(65536 * sizeof *first);
  for (int step = 1; step <= 2; step++) {
    Interp it;
    interp_init(&it, &t.u.g);
    RunCtx ctx = {42, step, 1};
    cr_assert_eq(interp_run(&it, &t.u.d, NULL, &ctx), 0, "%s", t.u.d.buf ? t.u.d.buf : "");
    const float *uv = it.val[u->id], *zv = it.val[z->id];
    double su = 0, sz = 0, sz2 = 0, lo = 1, hi = 0;
    int same = 0;
    for (int i = 0; i < 65536; i++) {
      su += uv[i], sz += zv[i], sz2 += (double)zv[i] * zv[i];
      lo = fmin(lo, uv[i]), hi = fmax(hi, uv[i]);
      if (step == 1) first[i] = zv[i];
      else same += first[i] == zv[i];
    }
    cr_expect(lo >= 0 && hi < 1, "rand outside [0, 1): %g %g", lo, hi);
    cr_expect(fabs(su / 65536 - 0.5) < 0.01, "rand mean %g", su / 65536);
    cr_expect(fabs(sz / 65536) < 0.02, "randn mean %g", sz / 65536);
    cr_expect(fabs(sqrt(sz2 / 65536) - 1) < 0.02, "randn std %g", sqrt(sz2 / 65536));
    if (step == 2) cr_expect_lt(same, 100, "step 2 drew step 1's values (%d equal)", same);
    interp_free(&it);
  }
  free(first);
  t_free(&t);
}
