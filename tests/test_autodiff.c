/* test_autodiff.c - pass_autodiff checked against central finite differences.
 *
 * Every differentiable op gets a small graph, built with the IR builders:
 * loss = sum(op(params...) * R) for a fixed random R, so every output element
 * weighs differently and a wrong transpose or a missing factor shows.  The
 * symbolic gradient (run by the reference interpreter) must match the
 * finite difference of the loss for every param element.  Inputs stay away
 * from kinks (relu, abs, clamp, max) by more than the step.  The shipped
 * models are checked the same way on a few elements of every param.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define MAXLEAF 16

typedef struct T {
  UtilGraph u;
  Node *leaf[MAXLEAF];     /* INPUT and PARAM leaves, bound to data[] */
  void *data[MAXLEAF];
  int nleaf;
  RunCtx ctx;
  double eps;              /* finite-difference step */
  double atol, rtol;       /* per element: |fd - sym| <= atol + rtol*|fd| ... */
  double stol;             /* ... + stol * max |sym| over the param (models: many kinks) */
} T;

static void t_init(T *t) {
  memset(t, 0, sizeof *t);
  util_graph_init(&t->u);
  t->ctx = (RunCtx){1234, 1, 0};
  t->eps = 1e-2;
  t->atol = 1e-3;
  t->rtol = 1e-2;
}

static void t_free(T *t) {
  for (int i = 0; i < t->nleaf; i++) free(t->data[i]);
  util_graph_fini(&t->u);
}

static Node *t_bind(T *t, Node *n, void *data) {
  cr_assert(t->nleaf < MAXLEAF);
  t->leaf[t->nleaf] = n;
  t->data[t->nleaf++] = data;
  return n;
}

static void add_param(Graph *g, Node *p) {
  Named *np = arena_alloc(g->arena, sizeof(Named) * (size_t)(g->nparams + 1));
  if (g->nparams) memcpy(np, g->params, sizeof(Named) * (size_t)g->nparams);
  np[g->nparams++] = (Named){p->name, p};
  g->params = np;
}

/* A param filled with values in [lo, hi). */
static Node *param(T *t, Shape s, float lo, float hi) {
  char name[16];
  snprintf(name, sizeof name, "p%d", t->nleaf);
  Node *p = ir_leaf(&t->u.g, (Loc){0}, OP_PARAM, DT_F32, &s, name);
  int64_t n = shape_numel(&s);
  float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
  util_fill(x, n, 100 + (uint64_t)t->nleaf, lo, hi);
  add_param(&t->u.g, p);
  return t_bind(t, p, x);
}

/* A param with |x| in [0.2, 1.2), random signs: away from kinks at 0. */
static Node *param_away(T *t, Shape s) {
  Node *p = param(t, s, -1, 1);
  float *x = t->data[t->nleaf - 1];
  for (int64_t i = 0; i < shape_numel(&s); i++) x[i] = x[i] < 0 ? x[i] - 0.2f : x[i] + 0.2f;
  return p;
}

/* A param whose values are distinct by at least 0.05 (for max and maxpool). */
static Node *param_distinct(T *t, Shape s) {
  Node *p = param(t, s, 0, 1);
  float *x = t->data[t->nleaf - 1];
  int64_t n = shape_numel(&s);
  for (int64_t i = 0; i < n; i++) x[i] = (float)((i * 37 + 11) % n) * 0.05f - 0.025f * (float)n;
  return p;
}

static Node *input(T *t, Shape s, float lo, float hi) {
  Node *p = ir_leaf(&t->u.g, (Loc){0}, OP_INPUT, DT_F32, &s, "in");
  int64_t n = shape_numel(&s);
  float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
  util_fill(x, n, 500 + (uint64_t)t->nleaf, lo, hi);
  return t_bind(t, p, x);
}

static Node *labels(T *t, Shape s, int classes) {
  Node *p = ir_leaf(&t->u.g, (Loc){0}, OP_INPUT, DT_I32, &s, "labels");
  int64_t n = shape_numel(&s);
  int32_t *x = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) x[i] = (int32_t)((i * 7 + 3) % classes);
  return t_bind(t, p, x);
}

static Node *op(T *t, Op o, Node *x, Node *y, const Attr *a) {
  Node *in[2] = {x, y};
  Node *n = ir_op(&t->u.g, &t->u.d, (Loc){0}, o, in, y ? 2 : 1, a);
  cr_assert(n, "building %s failed: %s", op_info[o].name, t->u.d.buf ? t->u.d.buf : "");
  return n;
}

static Attr at(double f0, double f1, int64_t i0, int64_t i1) {
  Attr a;
  memset(&a, 0, sizeof a);
  a.f[0] = f0, a.f[1] = f1, a.i[0] = i0, a.i[1] = i1;
  return a;
}

/* Runs the graph for `root` with every leaf bound; returns the interpreter. */
static void run(T *t, Interp *it, Node *const *roots, int nroots) {
  uint8_t *want = calloc((size_t)t->u.g.nnodes, 1);
  ir_mark_deps(&t->u.g, roots, nroots, want);
  interp_init(it, &t->u.g);
  for (int i = 0; i < t->nleaf; i++) it->val[t->leaf[i]->id] = t->data[i];
  int rc = interp_run(it, &t->u.d, want, &t->ctx);
  free(want);
  cr_assert_eq(rc, 0, "interp failed: %s", t->u.d.buf ? t->u.d.buf : "");
}

static double eval_loss(T *t) {
  Interp it;
  run(t, &it, &t->u.g.loss, 1);
  double l = ((float *)it.val[t->u.g.loss->id])[0];
  interp_free(&it);
  return l;
}

/* Compares d loss/d p[e] for the chosen elements; returns the mismatches. */
static int check_param(T *t, int pi, const float *sym, const int64_t *el, int nel) {
  float *x = t->data[pi];
  int bad = 0;
  double big = 0;
  for (int64_t i = 0; i < shape_numel(&t->leaf[pi]->shape); i++) big = fmax(big, fabs(sym[i]));
  double atol = t->atol + t->stol * big;
  const char *name = t->leaf[pi]->name;
  for (int k = 0; k < nel; k++) {
    int64_t e = el[k];
    float keep = x[e];
    x[e] = keep + (float)t->eps;
    double lp = eval_loss(t);
    x[e] = keep - (float)t->eps;
    double lm = eval_loss(t);
    x[e] = keep;
    double fd = (lp - lm) / (((double)keep + t->eps) - ((double)keep - t->eps));
    if (!(fabs(fd - sym[e]) <= atol + t->rtol * fabs(fd))) {
      if (bad++ < 5)
        fprintf(stderr, "%s[%lld]: symbolic %.7g, finite difference %.7g\n", name, (long long)e,
                sym[e], fd);
    }
  }
  return bad;
}

/* Picks up to max elements of n: the largest |g| first, then spread evenly. */
static int pick(const float *g, int64_t n, int64_t *el, int max) {
  if (n <= max) {
    for (int64_t i = 0; i < n; i++) el[i] = i;
    return (int)n;
  }
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (fabsf(g[i]) > fabsf(g[best])) best = i;
  el[0] = best;
  for (int k = 1; k < max; k++) el[k] = (int64_t)((double)k * (double)n / max + 7 * k) % n;
  return max;
}

/* Differentiates g->loss (already set) and checks every param. */
static void check_loss(T *t, int max_el) {
  Graph *g = &t->u.g;
  cr_assert_eq(pass_autodiff(&t->u.d, g), 0, "autodiff failed: %s", t->u.d.buf ? t->u.d.buf : "");
  cr_assert_eq(ir_verify(g, &t->u.d), 0, "verify: %s", t->u.d.buf ? t->u.d.buf : "");
  Interp it;
  run(t, &it, g->grads, g->nparams);
  int bad = 0;
  for (int i = 0; i < g->nparams; i++) {
    Node *p = g->params[i].node;
    cr_assert(shape_eq(&g->grads[i]->shape, &p->shape), "gradient shape of %s", p->name);
    int64_t n = shape_numel(&p->shape);
    const float *sym = it.val[g->grads[i]->id];
    int64_t el[64];
    int nel = pick(sym, n, el, max_el < 64 ? max_el : 64);
    int pi = 0;
    while (t->leaf[pi] != p) pi++;
    bad += check_param(t, pi, sym, el, nel);
  }
  interp_free(&it);
  cr_expect_eq(bad, 0, "%d gradient elements differ from finite differences", bad);
}

/* loss = sum(y * R), R fixed random, then the check. */
static void check(T *t, Node *y) {
  Node *r = input(t, y->shape, -1, 1);
  Attr a = at(0, 0, 0, 0);
  t->u.g.loss = op(t, OP_SUM, op(t, OP_MUL, y, r, NULL), NULL, &a);
  check_loss(t, 64);
}

#define S1(a) ((Shape){1, {a}})
#define S2(a, b) ((Shape){2, {a, b}})
#define S3(a, b, c) ((Shape){3, {a, b, c}})
#define S4(a, b, c, d) ((Shape){4, {a, b, c, d}})
#define S0 ((Shape){0, {0}})

/* One binary op with operands of shapes sa, sb. */
static void bin_case(Op o, Shape sa, Shape sb, float lo, float hi) {
  T t;
  t_init(&t);
  Node *a = param(&t, sa, -1, 1), *b = param(&t, sb, lo, hi);
  check(&t, op(&t, o, a, b, NULL));
  t_free(&t);
}

/* ---------------------------------------------------------- table */

Test(autodiff, every_differentiable_op_has_a_rule) {
  for (int o = 0; o < OP_COUNT; o++)
    if (!(op_info[o].flags & (F_LEAF | F_NOGRAD)))
      cr_expect(autodiff_has_rule((Op)o), "no gradient rule for %s", op_info[o].name);
  cr_expect(!autodiff_has_rule(OP_ARGMAX));
}

/* ---------------------------------------------------------- binary */

Test(autodiff, add_broadcasts) {
  bin_case(OP_ADD, S2(4, 5), S1(5), -1, 1);
  bin_case(OP_ADD, S2(4, 1), S3(2, 1, 5), -1, 1);
  bin_case(OP_ADD, S1(3), S0, -1, 1);
}

Test(autodiff, sub_mul_div) {
  bin_case(OP_SUB, S2(3, 5), S1(5), -1, 1);
  bin_case(OP_SUB, S0, S2(2, 3), -1, 1);
  bin_case(OP_MUL, S2(3, 5), S2(3, 1), -1, 1);
  bin_case(OP_MUL, S3(2, 3, 4), S0, -1, 1);
  bin_case(OP_DIV, S2(3, 4), S1(4), 0.5f, 1.5f);
  bin_case(OP_DIV, S0, S2(2, 3), 0.5f, 1.5f);
}

Test(autodiff, maximum_minimum) {
  for (int m = 0; m < 2; m++) {
    T t;
    t_init(&t);
    Node *a = param(&t, S2(3, 4), -1, 1), *b = param(&t, S1(4), -1, 1);
    float *x = t.data[0], *y = t.data[1];
    for (int i = 0; i < 12; i++)   /* keep every pair apart by >= 0.1 */
      if (fabsf(x[i] - y[i % 4]) < 0.1f) x[i] = y[i % 4] + (i % 2 ? 0.15f : -0.15f);
    check(&t, op(&t, m ? OP_MINIMUM : OP_MAXIMUM, a, b, NULL));
    t_free(&t);
  }
}

/* maximum(p, p) = p: each side gets half of dy, so d/dp = dy exactly once. */
Test(autodiff, maximum_ties_split_evenly) {
  T t;
  t_init(&t);
  Node *p = param(&t, S1(5), -1, 1);
  check(&t, op(&t, OP_MAXIMUM, p, p, NULL));
  t_free(&t);
  t_init(&t);
  p = param(&t, S1(5), -1, 1);
  check(&t, op(&t, OP_MINIMUM, p, p, NULL));
  t_free(&t);
}

/* ---------------------------------------------------------- unary */

static void un_case(Op o, Attr a, int away, float lo, float hi) {
  T t;
  t_init(&t);
  Node *p = away ? param_away(&t, S2(3, 5)) : param(&t, S2(3, 5), lo, hi);
  check(&t, op(&t, o, p, NULL, &a));
  t_free(&t);
}

Test(autodiff, unary_smooth) {
  Attr z = at(0, 0, 0, 0);
  un_case(OP_NEG, z, 0, -1, 1);
  un_case(OP_SIGMOID, z, 0, -2, 2);
  un_case(OP_TANH, z, 0, -2, 2);
  un_case(OP_EXP, z, 0, -1, 1);
  un_case(OP_LOG, z, 0, 0.5f, 2);
  un_case(OP_SQRT, z, 0, 0.5f, 2);
  un_case(OP_SOFTPLUS, z, 0, -3, 3);
  un_case(OP_GELU, z, 0, -2, 2);
  un_case(OP_ERF, z, 0, -1.5f, 1.5f);
}

Test(autodiff, pow) {
  un_case(OP_POW, at(3, 0, 0, 0), 0, -1, 1);
  un_case(OP_POW, at(2, 0, 0, 0), 0, -1, 1);
  un_case(OP_POW, at(0.5, 0, 0, 0), 0, 0.5f, 2);
  un_case(OP_POW, at(-1.5, 0, 0, 0), 0, 0.5f, 2);
  un_case(OP_POW, at(1, 0, 0, 0), 0, -1, 1);
}

Test(autodiff, unary_kinks) {
  Attr z = at(0, 0, 0, 0);
  un_case(OP_RELU, z, 1, 0, 0);
  un_case(OP_ABS, z, 1, 0, 0);
  un_case(OP_ELU, at(1.3, 0, 0, 0), 1, 0, 0);
  un_case(OP_LEAKY_RELU, at(0.1, 0, 0, 0), 1, 0, 0);
  un_case(OP_CLAMP, at(-0.5, 0.7, 0, 0), 1, 0, 0);
}

/* softplus is linear above 20: the gradient is exactly 1 there. */
Test(autodiff, softplus_threshold) {
  T t;
  t_init(&t);
  Node *p = param(&t, S1(4), 21, 30);
  check(&t, op(&t, OP_SOFTPLUS, p, NULL, NULL));
  t_free(&t);
}

/* ---------------------------------------------------------- reductions */

Test(autodiff, reductions_every_axis_set) {
  static const Op ops[] = {OP_SUM, OP_MEAN, OP_MAX};
  for (int o = 0; o < 3; o++)
    for (int mask = 0; mask < 8; mask++)
      for (int keep = 0; keep < 2; keep++) {
        T t;
        t_init(&t);
        Node *p = ops[o] == OP_MAX ? param_distinct(&t, S3(2, 3, 4)) : param(&t, S3(2, 3, 4), -1, 1);
        Attr a = at(0, 0, mask, keep);
        check(&t, op(&t, ops[o], p, NULL, &a));
        t_free(&t);
      }
}

/* max over tied maxima shares dy evenly (as torch.amax). */
Test(autodiff, max_ties_split_evenly) {
  T t;
  t_init(&t);
  Node *p = param(&t, S2(2, 3), 0, 1);
  float *x = t.data[0];
  float v[6] = {1, 3, 3, 2, 2, 0};
  memcpy(x, v, sizeof v);
  Attr all = at(0, 0, 0, 0), ax1 = at(0, 0, 2, 0);
  Node *m1 = op(&t, OP_MAX, p, NULL, &all);
  Node *m2 = op(&t, OP_SUM, op(&t, OP_MAX, p, NULL, &ax1), NULL, &all);
  t.u.g.loss = op(&t, OP_ADD, m1, m2, NULL);
  cr_assert_eq(pass_autodiff(&t.u.d, &t.u.g), 0);
  Interp it;
  run(&t, &it, t.u.g.grads, 1);
  float want[6] = {0, 1, 1, 0.5f, 0.5f, 0};
  cr_expect(util_compare("max ties", it.val[t.u.g.grads[0]->id], want, 6, 1e-6, 0) <= 1);
  interp_free(&it);
  t_free(&t);
}

/* ---------------------------------------------------------- shape */

Test(autodiff, reshape_transpose_expand) {
  T t;
  t_init(&t);
  Node *p = param(&t, S3(2, 3, 4), -1, 1);
  Attr a = at(0, 0, 0, 0);
  a.shape = S2(4, 6);
  Node *r = op(&t, OP_RESHAPE, p, NULL, &a);
  Attr tr = at(0, 0, 1, 0);
  tr.i[1] = 0;
  check(&t, op(&t, OP_MUL, op(&t, OP_TRANSPOSE, r, NULL, &tr), op(&t, OP_TRANSPOSE, r, NULL, &tr), NULL));
  t_free(&t);

  t_init(&t);
  p = param(&t, S3(2, 3, 4), -1, 1);
  Attr t3 = at(0, 0, 2, 0);
  t3.i[1] = 0, t3.i[2] = 1;
  check(&t, op(&t, OP_TRANSPOSE, p, NULL, &t3));
  t_free(&t);

  t_init(&t);
  p = param(&t, S2(3, 1), -1, 1);
  Attr e = at(0, 0, 0, 0);
  e.shape = S3(2, 3, 4);
  check(&t, op(&t, OP_EXPAND, p, NULL, &e));
  t_free(&t);
}

Test(autodiff, slice_and_slice_bwd) {
  T t;
  t_init(&t);
  Node *p = param(&t, S3(3, 5, 4), -1, 1);
  Attr a = at(0, 0, 1, 2);
  a.i[2] = 0;
  a.shape = S3(2, 2, 4);
  check(&t, op(&t, OP_SLICE, p, NULL, &a));
  t_free(&t);

  t_init(&t);
  p = param(&t, S2(2, 3), -1, 1);
  Attr b = at(0, 0, 1, 2);
  b.shape = S2(4, 6);
  check(&t, op(&t, OP_SLICE_BWD, p, NULL, &b));
  t_free(&t);
}

Test(autodiff, concat_three_operands) {
  T t;
  t_init(&t);
  Node *in[3];
  in[0] = param(&t, S3(2, 2, 3), -1, 1);
  in[1] = input(&t, S3(2, 1, 3), -1, 1);
  in[2] = param(&t, S3(2, 4, 3), -1, 1);
  Attr a = at(0, 0, 1, 0);
  Node *c = ir_op(&t.u.g, &t.u.d, (Loc){0}, OP_CONCAT, in, 3, &a);
  cr_assert(c);
  check(&t, c);
  t_free(&t);
}

/* ---------------------------------------------------------- matmul */

Test(autodiff, matmul_forms) {
  Shape fa[3] = {S2(3, 4), S3(2, 3, 4), S3(2, 3, 4)};
  Shape fb[3] = {S2(4, 5), S3(2, 4, 5), S2(4, 5)};
  for (int f = 0; f < 3; f++) bin_case(OP_MATMUL, fa[f], fb[f], -1, 1);
}

/* ---------------------------------------------------------- neural */

Test(autodiff, softmax_and_log_softmax_axes) {
  for (int o = 0; o < 2; o++)
    for (int ax = 0; ax < 2; ax++) {
      T t;
      t_init(&t);
      Node *p = param(&t, S2(3, 4), -2, 2);
      Attr a = at(0, 0, ax, 0);
      check(&t, op(&t, o ? OP_LOG_SOFTMAX : OP_SOFTMAX, p, NULL, &a));
      t_free(&t);
    }
}

/* In training the gradient is the same mask times 1/(1-p). */
Test(autodiff, dropout_training) {
  T t;
  t_init(&t);
  t.ctx.training = 1;
  Node *p = param(&t, S2(6, 7), -1, 1);
  Attr a = at(0.3, 0, 99, 0);
  Node *y = op(&t, OP_DROPOUT, p, NULL, &a);
  check(&t, y);
  /* and it does drop: some gradients are 0, the rest 1/(1-p) times R */
  Interp it;
  run(&t, &it, t.u.g.grads, 1);
  const float *gp = it.val[t.u.g.grads[0]->id], *r = t.data[1];
  int zeros = 0;
  for (int i = 0; i < 42; i++) {
    if (gp[i] == 0) zeros++;
    else cr_expect(fabsf(gp[i] - r[i] / 0.7f) < 1e-5f);
  }
  cr_expect(zeros > 3 && zeros < 25, "dropped %d of 42", zeros);
  interp_free(&it);
  t_free(&t);
}

Test(autodiff, losses) {
  T t;
  t_init(&t);
  Node *z = param(&t, S2(5, 4), -2, 2);
  Node *lab = labels(&t, S1(5), 4);
  check(&t, op(&t, OP_CROSS_ENTROPY, z, lab, NULL));
  t_free(&t);

  bin_case(OP_MSE, S2(3, 4), S2(3, 4), -1, 1);
  bin_case(OP_BCE_LOGITS, S2(3, 4), S2(3, 4), 0, 1);
}

/* ---------------------------------------------------------- conv, pool */

static void conv_case(Shape sx, Shape sw, int stride, int pad) {
  T t;
  t_init(&t);
  Node *x = param(&t, sx, -1, 1), *w = param(&t, sw, -1, 1);
  Attr a = at(0, 0, stride, pad);
  check(&t, op(&t, OP_CONV2D, x, w, &a));
  t_free(&t);
}

Test(autodiff, conv2d) {
  conv_case(S4(2, 3, 7, 6), S4(4, 3, 3, 3), 2, 1);
  conv_case(S4(1, 2, 5, 5), S4(3, 2, 2, 3), 1, 0);
}

/* The backward convolutions are differentiable too (double backward). */
Test(autodiff, conv2d_bwd_ops) {
  T t;
  t_init(&t);
  Node *dy = param(&t, S4(2, 4, 4, 3), -1, 1), *w = param(&t, S4(4, 3, 3, 3), -1, 1);
  Attr a = at(0, 0, 2, 1);
  a.shape = S4(2, 3, 7, 6);
  check(&t, op(&t, OP_CONV2D_BWD_X, dy, w, &a));
  t_free(&t);

  t_init(&t);
  Node *x = param(&t, S4(2, 3, 7, 6), -1, 1);
  dy = param(&t, S4(2, 4, 4, 3), -1, 1);
  a.shape = S4(4, 3, 3, 3);
  check(&t, op(&t, OP_CONV2D_BWD_W, x, dy, &a));
  t_free(&t);
}

/* The full convolution attrs: strides, paddings, dilations (h, w), groups. */
static Attr conv_at(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t g) {
  Attr a = at(0, 0, sh, ph);
  a.i[2] = sw, a.i[3] = pw, a.i[4] = dh, a.i[5] = dw, a.i[6] = g;
  return a;
}

static void conv_case_at(Shape sx, Shape sw, Attr a) {
  T t;
  t_init(&t);
  Node *x = param(&t, sx, -1, 1), *w = param(&t, sw, -1, 1);
  check(&t, op(&t, OP_CONV2D, x, w, &a));
  t_free(&t);
}

Test(autodiff, conv2d_dilation_groups) {
  conv_case_at(S4(2, 4, 7, 6), S4(6, 2, 3, 2), conv_at(2, 1, 1, 2, 2, 1, 2));  /* groups 2, dilation, per axis */
  conv_case_at(S4(1, 3, 6, 5), S4(3, 1, 3, 3), conv_at(1, 1, 1, 1, 1, 2, 3));  /* depthwise */
  conv_case_at(S4(1, 2, 6, 7), S4(4, 1, 2, 3), conv_at(1, 3, 0, 1, 3, 1, 2));  /* depthwise, multiplier 2 */
}

/* conv_transpose2d(x, w) is CONV2D_BWD_X(x, w) with the output shape given:
 * H_out = (H-1) s - 2 p + d (KH-1) + op + 1; op >= s (below d) leaves
 * outputs of conv2d(., w) past x's rows, which the gradient crops. */
static void convt_case(Shape sx, Shape sw, Attr a, int64_t oph, int64_t opw) {
  T t;
  t_init(&t);
  Node *x = param(&t, sx, -1, 1), *w = param(&t, sw, -1, 1);
  int64_t op_[2] = {oph, opw};
  a.shape = S4(sx.dim[0], sw.dim[1] * a.i[6], 0, 0);
  for (int k = 0; k < 2; k++)
    a.shape.dim[2 + k] = (sx.dim[2 + k] - 1) * a.i[2 * k] - 2 * a.i[2 * k + 1] + a.i[4 + k] * (sw.dim[2 + k] - 1) + op_[k] + 1;
  check(&t, op(&t, OP_CONV2D_BWD_X, x, w, &a));
  t_free(&t);
}

Test(autodiff, conv_transpose2d) {
  convt_case(S4(1, 4, 3, 4), S4(4, 3, 3, 2), conv_at(2, 2, 1, 1, 1, 1, 2), 1, 1);  /* stride 2, op 1, groups 2 */
  convt_case(S4(2, 2, 3, 3), S4(2, 3, 2, 3), conv_at(2, 1, 0, 1, 2, 2, 1), 1, 0);  /* dilation 2 */
  convt_case(S4(1, 2, 4, 3), S4(2, 3, 3, 2), conv_at(1, 1, 1, 1, 2, 2, 1), 1, 1);  /* op >= stride, < dilation */
}

/* conv2d_bwd_w of a dy that stops short of x's outputs (conv_transpose2d's
 * weight gradient when output_padding >= stride) and its double backward. */
Test(autodiff, conv2d_bwd_w_short_dy) {
  T t;
  t_init(&t);
  Node *x = param(&t, S4(1, 3, 7, 4), -1, 1), *dy = param(&t, S4(1, 2, 4, 3), -1, 1);
  Attr a = conv_at(1, 1, 1, 1, 2, 2, 1);
  a.shape = S4(2, 3, 3, 2);
  check(&t, op(&t, OP_CONV2D_BWD_W, x, dy, &a));
  t_free(&t);
}

static void pool_case(Op o, int size, int stride) {
  T t;
  t_init(&t);
  Node *x = param_distinct(&t, S4(2, 2, 6, 5));
  Attr a = at(0, 0, size, stride);
  check(&t, op(&t, o, x, NULL, &a));
  t_free(&t);
}

Test(autodiff, pooling) {
  pool_case(OP_MAXPOOL2D, 2, 2);
  pool_case(OP_MAXPOOL2D, 3, 2);
  pool_case(OP_AVGPOOL2D, 2, 2);
  pool_case(OP_AVGPOOL2D, 3, 1);

  T t;
  t_init(&t);
  Node *dy = param(&t, S4(2, 2, 2, 2), -1, 1);
  Attr a = at(0, 0, 3, 2);
  a.shape = S4(2, 2, 6, 5);
  check(&t, op(&t, OP_AVGPOOL2D_BWD, dy, NULL, &a));
  t_free(&t);
}

/* ---------------------------------------------------------- graph-level */

/* A chain that reuses nodes: gradients of shared uses add up. */
Test(autodiff, shared_uses_accumulate) {
  T t;
  t_init(&t);
  Node *w = param(&t, S2(4, 3), -1, 1), *x = input(&t, S2(5, 4), -1, 1);
  Node *h = op(&t, OP_TANH, op(&t, OP_MATMUL, x, w, NULL), NULL, NULL);
  Node *y = op(&t, OP_MUL, h, op(&t, OP_SIGMOID, h, NULL, NULL), NULL);
  check(&t, op(&t, OP_ADD, y, h, NULL));
  t_free(&t);
}

/* A param the loss does not use gets a zero of its shape; backward nodes
 * point at the line of the forward node they come from. */
Test(autodiff, unused_param_and_locations) {
  T t;
  t_init(&t);
  Source src = {0};
  Loc l7 = {&src, 7, 1}, l9 = {&src, 9, 1};
  Node *p = param(&t, S1(3), -1, 1), *q = param(&t, S2(2, 2), -1, 1);
  (void)q;
  Node *y = ir_op(&t.u.g, &t.u.d, l7, OP_TANH, &p, 1, NULL);
  Attr all = at(0, 0, 0, 0);
  t.u.g.loss = ir_op(&t.u.g, &t.u.d, l9, OP_SUM, &y, 1, &all);
  int nfwd = t.u.g.nnodes;
  cr_assert_eq(pass_autodiff(&t.u.d, &t.u.g), 0);
  Node *gq = t.u.g.grads[1];
  cr_expect_eq(gq->op, OP_CONST);
  cr_expect_eq(gq->a.f[0], 0.0);
  cr_expect(shape_eq(&gq->shape, &q->shape));
  int saw7 = 0;
  for (int i = nfwd; i < t.u.g.nnodes; i++) {
    Node *n = t.u.g.nodes[i];
    if (n == gq) continue;
    cr_expect(n->loc.line == 7 || n->loc.line == 9, "node %d (%s) at line %d", i, op_info[n->op].name,
              n->loc.line);
    saw7 += n->loc.line == 7;
  }
  cr_expect(saw7 > 0);
  t_free(&t);
}

Test(autodiff, no_loss_is_an_error) {
  T t;
  t_init(&t);
  param(&t, S1(3), -1, 1);
  cr_expect_eq(pass_autodiff(&t.u.d, &t.u.g), -1);
  cr_expect_eq(t.u.d.nerrors, 1);
  t_free(&t);
}

/* ---------------------------------------------------------- models */

static void fill_model_params(T *t) {
  Graph *g = &t->u.g;
  for (int i = 0; i < g->nparams; i++) {
    Node *p = g->params[i].node;
    int64_t n = shape_numel(&p->shape);
    double fan = p->shape.rank >= 2 ? (double)n / (double)p->shape.dim[p->shape.rank == 2 ? 1 : 0] : 10;
    float a = (float)sqrt(3.0 / fan);
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    util_fill(x, n, 900 + (uint64_t)i, -a, a);
    t_bind(t, p, x);
  }
}

static void fill_model_inputs(T *t) {
  Graph *g = &t->u.g;
  for (int i = 0; i < g->ninputs; i++) {
    Node *in = g->inputs[i].node;
    int64_t n = shape_numel(&in->shape);
    if (in->dt == DT_I32) {
      int32_t *y = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
      for (int64_t k = 0; k < n; k++) y[k] = (int32_t)((k * 7 + 3) % 10);
      t_bind(t, in, y);
    } else {
      float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
      util_fill(x, n, 700 + (uint64_t)i, 0, 1);
      t_bind(t, in, x);
    }
  }
}

static void model_case(const char *file, int small_t) {
  T t;
  t_init(&t);
  char path[512];
  snprintf(path, sizeof path, "%s/models/%s", NNDC_SHARED_DIR, file);
  Define defs[3] = {{"N", 3, 1}, {"T", 3, 1}, {"H", 6, 1}};
  BuildOpts o = {defs, small_t ? 3 : 1, NULL, 0, 0, 0};
  cr_assert_eq(fe_compile_file(&t.u.d, &t.u.g, path, &o), 0, "%s: %s", file, t.u.d.buf ? t.u.d.buf : "");
  cr_assert(t.u.g.loss, "%s has a loss", file);
  fill_model_params(&t);
  fill_model_inputs(&t);
  /* relu and maxpool kinks lie closer than any usable step to some of the
   * thousands of values one param moves, so the finite difference of the
   * small gradients is off by a few percent of the largest. */
  t.eps = 3e-3;
  t.atol = 5e-4;
  t.rtol = 3e-2;
  t.stol = 2e-2;
  check_loss(&t, 4);
  t_free(&t);
}

Test(autodiff_models, mlp) { model_case("mlp.nnd", 0); }
Test(autodiff_models, deep_mlp) { model_case("deep_mlp.nnd", 0); }
Test(autodiff_models, logreg) { model_case("logreg.nnd", 0); }
Test(autodiff_models, linreg) { model_case("linreg.nnd", 0); }
Test(autodiff_models, autoencoder) { model_case("autoencoder.nnd", 0); }
Test(autodiff_models, lenet) { model_case("lenet.nnd", 0); }
Test(autodiff_models, rnn) { model_case("rnn.nnd", 1); }
Test(autodiff_models, lstm) { model_case("lstm.nnd", 1); }

/* detach(x) is the identity with no gradient (spec 6): d/dw sum(w *
 * detach(w) * r) = detach(w) * r, not 2 w r; and through detach alone none. */
Test(autodiff, detach_stops_the_gradient) {
  T t;
  t_init(&t);
  Node *w = param(&t, S1(7), -1, 1);
  Node *r = input(&t, S1(7), -1, 1);
  Node *dw = op(&t, OP_DETACH, w, NULL, NULL);
  Attr a = at(0, 0, 0, 0);
  t.u.g.loss = op(&t, OP_SUM, op(&t, OP_MUL, op(&t, OP_MUL, w, dw, NULL), r, NULL), NULL, &a);
  cr_assert_eq(pass_autodiff(&t.u.d, &t.u.g), 0, "%s", t.u.d.buf ? t.u.d.buf : "");
  Interp it;
  run(&t, &it, t.u.g.grads, 1);
  const float *g = it.val[t.u.g.grads[0]->id], *wv = it.val[w->id], *rv = it.val[r->id];
  for (int i = 0; i < 7; i++) cr_expect_float_eq(g[i], wv[i] * rv[i], 1e-6, "[%d] %g, want %g", i, g[i], wv[i] * rv[i]);
  interp_free(&it);
  t_free(&t);
}

/* where(c > 0, a, b): a gets dy where the condition holds, b elsewhere,
 * each summed back over its broadcast axes; the condition none. */
Test(autodiff, where_broadcast) {
  T t;
  t_init(&t);
  Node *a = param(&t, S2(4, 5), -1, 1), *b = param(&t, S1(5), -1, 1);
  Node *c = input(&t, S2(4, 1), -1, 1);
  Node *in[3] = {op(&t, OP_GT, c, ir_scalar(&t.u.g, 0), NULL), a, b};
  Node *w = ir_op(&t.u.g, &t.u.d, (Loc){0}, OP_WHERE, in, 3, NULL);
  cr_assert(w, "%s", t.u.d.buf ? t.u.d.buf : "");
  check(&t, w);
  t_free(&t);
}

/* tril: dy flows to the kept elements only. */
Test(autodiff, tril) {
  for (int k = -1; k <= 2; k++) {
    T t;
    t_init(&t);
    Node *a = param(&t, S3(2, 4, 5), -1, 1);
    Attr at_ = at(0.5, 0, k, 0);
    check(&t, op(&t, OP_TRIL, a, NULL, &at_));
    t_free(&t);
  }
}

/* embedding: the table's rows receive dy, added over repeated ids. */
Test(autodiff, embedding) {
  T t;
  t_init(&t);
  Node *tab = param(&t, S2(5, 3), -1, 1);
  Node *ids = labels(&t, S2(2, 7), 5);
  check(&t, op(&t, OP_EMBEDDING, tab, ids, NULL));
  t_free(&t);
}

/* A model's text compiled in training mode, then every param checked
 * (loss = sum(y * r) with r a fed random input). */
/* The model of text (training mode) with its params filled and its inputs
 * bound to draws in [lo, hi) from seeds seed, seed + 1, ...; the tolerances
 * of the source cases. */
static void source_model(T *t, const char *text, uint64_t seed, float lo, float hi) {
  t_init(t);
  BuildOpts o = {0};
  o.training = 1;
  cr_assert_eq(util_compile(&t->u.d, &t->u.g, text, &o), 0, "%s", t->u.d.buf ? t->u.d.buf : "");
  fill_model_params(t);
  Graph *g = &t->u.g;
  for (int i = 0; i < g->ninputs; i++) {
    Node *in = g->inputs[i].node;
    int64_t n = shape_numel(&in->shape);
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    util_fill(x, n, seed + (uint64_t)i, lo, hi);
    t_bind(t, in, x);
  }
  t->eps = 1e-3;
  t->atol = 2e-3;
  t->rtol = 1e-2;
}

static void source_case(const char *text) {
  T t;
  source_model(&t, text, 500, -2, 2);
  check_loss(&t, 24);
  t_free(&t);
}

/* batch_norm in training mode (the batch's statistics) and layer_norm: one
 * NORMALIZE_BWD carries the gradient through the statistics' dependence on
 * x; finite differences of the whole composite check it, w and b too. */
Test(autodiff, batch_norm_training) {
  source_case("input x: f32[4, 3, 5, 3]\ninput r: f32[4, 3, 5, 3]\nparam s: f32[3, 5, 3] = uniform(0.5, 1.5)\n"
              "param w: f32[3] = uniform(0.5, 1.5)\nparam b: f32[3] = uniform(-1, 1)\n"
              "h = batch_norm(x * s, w, b)\nloss = sum(h * r)\n");
  source_case("input x: f32[6, 4]\ninput r: f32[6, 4]\nparam s: f32[4] = uniform(0.5, 1.5)\n"
              "param w: f32[4] = uniform(0.5, 1.5)\nparam b: f32[4] = uniform(-1, 1)\n"
              "h = batch_norm(x * s, w, b, eps=1e-3)\nloss = sum(h * r)\n");
}

Test(autodiff, layer_norm) {
  source_case("input x: f32[2, 3, 7]\ninput r: f32[2, 3, 7]\nparam s: f32[7] = uniform(0.5, 1.5)\n"
              "param w: f32[7] = uniform(0.5, 1.5)\nparam b: f32[7] = uniform(-1, 1)\n"
              "loss = sum(layer_norm(x * s, w, b) * r) + sum(layer_norm(x * s + b, eps=1e-3) * r)\n");
}

/* 1 if g holds a node of op o. */
static int has_op(const Graph *g, Op o) {
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i]->op == o) return 1;
  return 0;
}

/* Attention as users write it, fused by passes/attention.c into ATTN and
 * differentiated as flash attention (ATTN_LSE, ATTN_BWD): finite
 * differences of the whole composite, through q, k and v's params.  65
 * keys (at least ATTN_MIN_KEYS, so fused by default) with a causal mask
 * and odd head sizes; then 9 keys forced with NNDC_ATTENTION=fused, a mask
 * shifted by k = 2 and the scale as a product. */
static void attention_case(const char *text, int forced) {
  if (forced) setenv("NNDC_ATTENTION", "fused", 1);
  T t;
  source_model(&t, text, 700, -1, 1);
  check_loss(&t, 24);
  const Graph *g = &t.u.g;
  cr_assert(has_op(g, OP_ATTN) && has_op(g, OP_ATTN_BWD) && has_op(g, OP_ATTN_LSE), "attention was not fused");
  t_free(&t);
  if (forced) unsetenv("NNDC_ATTENTION");
}

Test(autodiff, flash_attention) {
  attention_case("input x: f32[2, 65, 4]\ninput r: f32[2, 2, 65, 3]\n"
                 "param wq: f32[4, 2, 5] = uniform(-1, 1)\nparam wk: f32[4, 2, 5] = uniform(-1, 1)\n"
                 "param wv: f32[4, 2, 3] = uniform(-1, 1)\n"
                 "q = transpose(reshape(x @ reshape(wq, [4, 10]), [2, 65, 2, 5]), [0, 2, 1, 3])\n"
                 "k = transpose(reshape(x @ reshape(wk, [4, 10]), [2, 65, 2, 5]), [0, 2, 1, 3])\n"
                 "v = transpose(reshape(x @ reshape(wv, [4, 6]), [2, 65, 2, 3]), [0, 2, 1, 3])\n"
                 "o = softmax(tril(q @ transpose(k, [0, 1, 3, 2]) / sqrt(5), fill=-inf)) @ v\n"
                 "loss = sum(o * r)\n", 0);
  attention_case("input x: f32[3, 9, 4]\ninput r: f32[3, 9, 2]\n"
                 "param wq: f32[4, 6] = uniform(-1, 1)\nparam wk: f32[4, 6] = uniform(-1, 1)\n"
                 "param wv: f32[4, 2] = uniform(-1, 1)\n"
                 "o = softmax(tril(0.7 * ((x @ wq) @ transpose(x @ wk, [0, 2, 1])), k=2, fill=-inf)) @ (x @ wv)\n"
                 "loss = sum(o * r)\n", 1);
}
