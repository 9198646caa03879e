/* test_jit.c - the LLVM JIT against the reference interpreter: every op of
 * ops.def on odd and aligned sizes, optimizer updates over 3 steps, thread
 * count independence, the vector math error bounds against libm, run-time
 * errors, vectorization of the emitted code and a whole MLP training step. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "codegen/codegen.h"
#include "codegen/kir.h"
#include "codegen/target.h"
#include "tests/util.h"

/* A graph under test with its arena and diagnostics. */
typedef struct T {
  UtilGraph u;
  float lo[4096], hi[4096]; /* fill range of each leaf by node id */
} T;

static T *t_new(void) {
  T *t = calloc(1, sizeof *t);
  util_graph_init(&t->u);
  return t;
}

static void t_free(T *t) {
  util_graph_fini(&t->u);
  free(t);
}

static Shape shp(int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  Shape s = {rank, {d0, d1, d2, d3}};
  return s;
}

static Node *leaf(T *t, Op op, DType dt, Shape s, float lo, float hi) {
  char name[32];
  snprintf(name, sizeof name, "l%d", t->u.g.nnodes);
  Node *n = ir_leaf(&t->u.g, (Loc){0}, op, dt, &s, name);
  t->lo[n->id] = lo;
  t->hi[n->id] = hi;
  return n;
}

static Node *in(T *t, Shape s, float lo, float hi) { return leaf(t, OP_INPUT, DT_F32, s, lo, hi); }

static Node *op(T *t, Op o, Node *a, Node *b, const Attr *at) {
  Node *x[2] = {a, b};
  Node *n = ir_op(&t->u.g, &t->u.d, (Loc){0}, o, x, b ? 2 : 1, at);
  cr_assert(n, "ir_op %s failed: %s", op_info[o].name, t->u.d.buf ? t->u.d.buf : "");
  return n;
}

/* Leaf data: f32 uniform in [lo, hi), i32 integers in [lo, hi). */
static void *leaf_data(T *t, const Node *n, uint64_t seed) {
  int64_t cnt = shape_numel(&n->shape);
  float *f = malloc((size_t)(cnt ? cnt : 1) * 4);
  util_fill(f, cnt, seed + (uint64_t)n->id, t->lo[n->id], t->hi[n->id]);
  if (n->dt == DT_I32) {
    int32_t *q = (int32_t *)f;
    for (int64_t i = 0; i < cnt; i++) q[i] = (int32_t)floorf(f[i]);
  }
  return f;
}

/* Values of the leaves of g, one buffer per node id (two copies: the
 * engines update params and states in place). */
typedef struct Bound {
  void *v[2][4096];
} Bound;

static Bound *bind_leaves(T *t) {
  Bound *b = calloc(1, sizeof *b);
  for (int i = 0; i < t->u.g.nnodes; i++) {
    const Node *n = t->u.g.nodes[i];
    if (n->op != OP_INPUT && n->op != OP_PARAM && n->op != OP_STATE) continue;
    int64_t bytes = shape_numel(&n->shape) * 4;
    b->v[0][i] = leaf_data(t, n, 7);
    b->v[1][i] = malloc((size_t)(bytes ? bytes : 4));
    memcpy(b->v[1][i], b->v[0][i], (size_t)bytes);
  }
  return b;
}

static void free_bound(Bound *b) {
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4096; i++) free(b->v[k][i]);
  free(b);
}

static double cmp_node(const char *label, const Node *n, const void *got, const void *want, double tol) {
  int64_t cnt = shape_numel(&n->shape);
  if (n->dt == DT_F32) return util_compare(label, got, want, cnt, tol, tol);
  float *a = malloc((size_t)(cnt ? cnt : 1) * 4), *b = malloc((size_t)(cnt ? cnt : 1) * 4);
  for (int64_t i = 0; i < cnt; i++) a[i] = (float)((const int32_t *)got)[i], b[i] = (float)((const int32_t *)want)[i];
  double e = util_compare(label, a, b, cnt, 0, 0);
  if (e == 0 || isnan(e)) e = 0;
  free(a);
  free(b);
  return e;
}

/* When nonzero: the bound on the few outliers check_steps tolerates in
 * updated f32 leaves (see there). */
static double leaf_outlier;

/* Runs roots on the interpreter and the JIT `steps` times (step 1..) and
 * compares every root (and every leaf, which updates write) within tol. */
static void check_steps(T *t, Node **roots, int nroots, int threads, double tol, int steps, int training) {
  Bound *b = bind_leaves(t);
  Interp it;
  interp_init(&it, &t->u.g);
  uint8_t *want = calloc((size_t)t->u.g.nnodes + 1, 1);
  ir_mark_deps(&t->u.g, roots, nroots, want);
  JitProgram *p = jit_compile(&t->u.d, &t->u.g, roots, nroots, threads, 0);
  cr_assert(p, "jit_compile failed: %s", t->u.d.buf ? t->u.d.buf : "");
  for (int i = 0; i < t->u.g.nnodes; i++) {
    if (!b->v[0][i]) continue;
    it.val[i] = b->v[0][i];
    jit_bind(p, t->u.g.nodes[i], b->v[1][i]);
  }
  for (int s = 1; s <= steps; s++) {
    RunCtx ctx = {.seed = 42, .step = s, .training = training};
    cr_assert_eq(interp_run(&it, &t->u.d, want, &ctx), 0, "interp: %s", t->u.d.buf ? t->u.d.buf : "");
    cr_assert_eq(jit_run(p, &t->u.d, &ctx), 0, "jit: %s", t->u.d.buf ? t->u.d.buf : "");
  }
  for (int r = 0; r < nroots; r++) {
    const Node *n = roots[r];
    if (op_info[n->op].flags & F_UPDATE) continue;
    char label[64];
    snprintf(label, sizeof label, "%%%d %s", n->id, op_info[n->op].name);
    double e = cmp_node(label, n, jit_value(p, n), it.val[n->id], tol);
    cr_expect(e <= 1, "%s: JIT differs from the interpreter (worst %g)", label, e);
  }
  for (int i = 0; i < t->u.g.nnodes; i++) {
    if (!b->v[0][i]) continue;
    char label[64];
    snprintf(label, sizeof label, "leaf %%%d", i);
    const Node *x = t->u.g.nodes[i];
    if (leaf_outlier && x->dt == DT_F32) {
      /* RMSprop divides g by about |g|: where g is a rounding-level residue
       * the step is noise-sized (up to 10 lr), so a few elements (0.5%) may
       * differ, by at most leaf_outlier. */
      const float *got = b->v[1][i], *ref = b->v[0][i];
      int64_t cnt = shape_numel(&x->shape), bad = 0;
      double worst = 0;
      for (int64_t j = 0; j < cnt; j++) {
        double dd = fabs((double)got[j] - ref[j]);
        if (dd > tol + tol * fabs(ref[j])) bad++;
        if (dd > worst) worst = dd;
      }
      cr_expect(bad <= cnt / 200 && worst <= leaf_outlier, "%s: %lld of %lld elements differ, worst by %g", label,
                (long long)bad, (long long)cnt, worst);
      continue;
    }
    double e = cmp_node(label, x, b->v[1][i], b->v[0][i], tol);
    cr_expect(e <= 1, "%s: updated leaf differs (worst %g)", label, e);
  }
  jit_free(p);
  interp_free(&it);
  free(want);
  free_bound(b);
}

static void check(T *t, Node **roots, int nroots, double tol) { check_steps(t, roots, nroots, 2, tol, 1, 0); }

static Attr ai(int64_t i0, int64_t i1) {
  Attr a;
  memset(&a, 0, sizeof a);
  a.i[0] = i0;
  a.i[1] = i1;
  return a;
}

static Attr af(double f0, double f1) {
  Attr a;
  memset(&a, 0, sizeof a);
  a.f[0] = f0;
  a.f[1] = f1;
  return a;
}

Test(jit, binary_broadcast) {
  T *t = t_new();
  Node *a = in(t, shp(2, 3, 17, 0, 0), -2, 2), *b = in(t, shp(1, 17, 0, 0, 0), 0.5f, 2);
  Node *c = in(t, shp(2, 3, 1, 0, 0), -2, 2), *s = in(t, shp(0, 0, 0, 0, 0), -2, 2);
  Node *big = in(t, shp(2, 257, 31, 0, 0), -2, 2), *row = in(t, shp(1, 31, 0, 0, 0), -2, 2);
  Node *ia = leaf(t, OP_INPUT, DT_I32, shp(1, 17, 0, 0, 0), 0, 3);
  Node *ib = leaf(t, OP_INPUT, DT_I32, shp(1, 17, 0, 0, 0), 0, 3);
  Node *fb = in(t, shp(1, 17, 0, 0, 0), 0, 3);
  Node *r[32];
  int n = 0;
  r[n++] = op(t, OP_ADD, a, b, NULL);
  r[n++] = op(t, OP_SUB, a, c, NULL);
  r[n++] = op(t, OP_MUL, a, s, NULL);
  r[n++] = op(t, OP_DIV, a, b, NULL);
  r[n++] = op(t, OP_MAXIMUM, c, b, NULL);
  r[n++] = op(t, OP_MINIMUM, a, c, NULL);
  r[n++] = op(t, OP_ADD, big, row, NULL);
  r[n++] = op(t, OP_MUL, s, s, NULL);
  for (Op o = OP_EQ; o <= OP_GE; o++) {
    r[n++] = op(t, o, a, c, NULL);
    r[n++] = op(t, o, ia, ib, NULL);
    r[n++] = op(t, o, ia, op(t, OP_CAST, ib, NULL, NULL), NULL);
    r[n++] = op(t, o, fb, ia, NULL);
  }
  check(t, r, n, 1e-6);
  t_free(t);
}

Test(jit, unary_all) {
  T *t = t_new();
  Node *x = in(t, shp(2, 31, 17, 0, 0), -4, 4), *pos = in(t, shp(1, 257, 0, 0, 0), 0.01f, 30);
  Node *r[32];
  int n = 0;
  static const Op ops[] = {OP_NEG, OP_RELU, OP_SIGMOID, OP_TANH, OP_EXP, OP_ABS, OP_SOFTPLUS,
                           OP_GELU, OP_ERF, OP_SIGN, OP_DETACH};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) r[n++] = op(t, ops[i], x, NULL, NULL);
  Attr p2 = af(2, 0), p3 = af(1.5, 0), el = af(0.7, 0), lr = af(0.02, 0), cl = af(-1.5, 2);
  r[n++] = op(t, OP_POW, x, NULL, &p2);
  r[n++] = op(t, OP_POW, pos, NULL, &p3);
  r[n++] = op(t, OP_ELU, x, NULL, &el);
  r[n++] = op(t, OP_LEAKY_RELU, x, NULL, &lr);
  r[n++] = op(t, OP_CLAMP, x, NULL, &cl);
  r[n++] = op(t, OP_LOG, pos, NULL, NULL);
  r[n++] = op(t, OP_SQRT, pos, NULL, NULL);
  Node *big = in(t, shp(1, 64, 0, 0, 0), 15, 25);
  r[n++] = op(t, OP_SOFTPLUS, big, NULL, NULL);
  Node *iv = leaf(t, OP_INPUT, DT_I32, shp(1, 33, 0, 0, 0), -100, 100);
  r[n++] = op(t, OP_CAST, iv, NULL, NULL);
  check(t, r, n, 2e-6);
  t_free(t);
}

Test(jit, reductions) {
  T *t = t_new();
  Node *x = in(t, shp(3, 3, 5, 17, 0), -2, 2), *y = in(t, shp(2, 64, 257, 0, 0), -2, 2);
  Node *r[40];
  int n = 0;
  for (Op o = OP_SUM; o <= OP_MAX; o++) {
    for (int mask = 0; mask < 8; mask++) {
      Attr a = ai(mask, mask & 1);
      r[n++] = op(t, o, x, NULL, &a);
    }
    Attr a0 = ai(1, 0), a1 = ai(2, 1);
    r[n++] = op(t, o, y, NULL, &a0);
    r[n++] = op(t, o, y, NULL, &a1);
  }
  for (int ax = 0; ax < 3; ax++) {
    Attr a = ai(ax, 0);
    r[n++] = op(t, OP_ARGMAX, x, NULL, &a);
  }
  check(t, r, n, 1e-5);
  t_free(t);
}

Test(jit, shapes) {
  T *t = t_new();
  Node *x = in(t, shp(3, 3, 5, 17, 0), -2, 2), *y = in(t, shp(3, 3, 2, 17, 0), -2, 2);
  Node *r[16];
  int n = 0;
  Attr rs = ai(0, 0);
  rs.shape = shp(2, 15, 17, 0, 0);
  Node *re = op(t, OP_RESHAPE, x, NULL, &rs);
  r[n++] = op(t, OP_NEG, re, NULL, NULL);
  r[n++] = re;
  Attr ex = ai(0, 0);
  ex.shape = shp(4, 2, 3, 5, 17);
  r[n++] = op(t, OP_EXPAND, x, NULL, &ex);
  Node *col = in(t, shp(2, 5, 1, 0, 0), -2, 2);
  Attr ex2 = ai(0, 0);
  ex2.shape = shp(3, 3, 5, 31, 0);
  r[n++] = op(t, OP_EXPAND, col, NULL, &ex2);
  Attr tp = ai(2, 0);
  tp.i[1] = 0, tp.i[2] = 1;
  r[n++] = op(t, OP_TRANSPOSE, x, NULL, &tp);
  Attr t2 = ai(1, 0);
  r[n++] = op(t, OP_TRANSPOSE, re, NULL, &t2);
  Attr sl = ai(1, 2);
  sl.i[2] = 3;
  sl.shape = shp(3, 2, 3, 13, 0);
  Node *s = op(t, OP_SLICE, x, NULL, &sl);
  r[n++] = s;
  Attr sb = sl;
  sb.shape = x->shape;
  r[n++] = op(t, OP_SLICE_BWD, s, NULL, &sb);
  Node *cat[3] = {x, y, x};
  Attr c1 = ai(1, 0);
  r[n++] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_CONCAT, cat, 3, &c1);
  Node *cat0[2] = {x, x};
  Attr c0 = ai(0, 0);
  r[n++] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_CONCAT, cat0, 2, &c0);
  Attr c2 = ai(2, 0);
  r[n++] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_CONCAT, cat0, 2, &c2);
  Node *lab = leaf(t, OP_INPUT, DT_I32, shp(1, 31, 0, 0, 0), -1, 11);
  Attr oh = ai(0, 0);
  oh.shape = shp(2, 31, 10, 0, 0);
  r[n++] = op(t, OP_ONE_HOT, lab, NULL, &oh);
  for (int i = 0; i < n; i++) cr_assert(r[i]);
  check(t, r, n, 0);
  t_free(t);
}

/* Transposes walked in tiles (both walked axes >= 64) and plainly, and a
 * transposed product of a transpose, which simplify rewrites (the
 * interpreter runs the graph as built). */
Test(jit, transposes_tiled) {
  T *t = t_new();
  Node *r[6];
  int n = 0;
  Node *x = in(t, shp(2, 70, 131, 0, 0), -2, 2), *y = in(t, shp(3, 3, 65, 97, 0), -2, 2);
  Attr sw = ai(1, 0), p021 = ai(0, 2), p201 = ai(2, 0), p120 = ai(1, 2);
  p021.i[2] = 1, p201.i[2] = 1, p120.i[2] = 0;
  r[n++] = op(t, OP_TRANSPOSE, x, NULL, &sw);
  r[n++] = op(t, OP_TRANSPOSE, y, NULL, &p021);
  r[n++] = op(t, OP_TRANSPOSE, y, NULL, &p201);
  r[n++] = op(t, OP_TRANSPOSE, y, NULL, &p120);
  Node *a = in(t, shp(2, 33, 70, 0, 0), -1, 1), *b = in(t, shp(2, 33, 19, 0, 0), -1, 1);
  r[n++] = op(t, OP_TRANSPOSE, op(t, OP_MATMUL, op(t, OP_TRANSPOSE, a, NULL, &sw), b, NULL), NULL, &sw);
  check(t, r, n, 1e-5);
  t_free(t);
}

Test(jit, matmul) {
  T *t = t_new();
  Node *r[8];
  int n = 0;
  r[n++] = op(t, OP_MATMUL, in(t, shp(2, 17, 31, 0, 0), -1, 1), in(t, shp(2, 31, 257, 0, 0), -1, 1), NULL);
  r[n++] = op(t, OP_MATMUL, in(t, shp(2, 1, 3, 0, 0), -1, 1), in(t, shp(2, 3, 1, 0, 0), -1, 1), NULL);
  r[n++] = op(t, OP_MATMUL, in(t, shp(3, 3, 17, 31, 0), -1, 1), in(t, shp(3, 3, 31, 16, 0), -1, 1), NULL);
  r[n++] = op(t, OP_MATMUL, in(t, shp(3, 3, 17, 31, 0), -1, 1), in(t, shp(2, 31, 64, 0, 0), -1, 1), NULL);
  r[n++] = op(t, OP_MATMUL, in(t, shp(2, 64, 784, 0, 0), 0, 1), in(t, shp(2, 784, 256, 0, 0), -0.1f, 0.1f), NULL);
  check(t, r, n, 1e-5);
  t_free(t);
}

Test(jit, softmax_losses) {
  T *t = t_new();
  Node *x = in(t, shp(3, 3, 5, 17, 0), -5, 5), *lg = in(t, shp(2, 31, 10, 0, 0), -5, 5);
  Node *lab = leaf(t, OP_INPUT, DT_I32, shp(1, 31, 0, 0, 0), 0, 10);
  Node *a = in(t, shp(2, 17, 3, 0, 0), -3, 3), *b = in(t, shp(2, 17, 3, 0, 0), 0, 1);
  Node *r[16];
  int n = 0;
  for (int ax = 0; ax < 3; ax++) {
    Attr at = ai(ax, 0);
    r[n++] = op(t, OP_SOFTMAX, x, NULL, &at);
    r[n++] = op(t, OP_LOG_SOFTMAX, x, NULL, &at);
  }
  r[n++] = op(t, OP_CROSS_ENTROPY, lg, lab, NULL);
  Node *ce_in[3] = {lg, lab, in(t, shp(0, 0, 0, 0, 0), 0.5f, 2)};
  r[n++] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_CE_BWD, ce_in, 3, NULL);  /* its gradient, dy / N scaled */
  r[n++] = op(t, OP_MSE, a, b, NULL);
  r[n++] = op(t, OP_BCE_LOGITS, a, b, NULL);
  check(t, r, n, 1e-5);
  t_free(t);
}

Test(jit, cross_entropy_label_error) {
  T *t = t_new();
  Node *lg = in(t, shp(2, 4, 10, 0, 0), -5, 5);
  Node *lab = leaf(t, OP_INPUT, DT_I32, shp(1, 4, 0, 0, 0), 0, 10);
  Node *ce = op(t, OP_CROSS_ENTROPY, lg, lab, NULL);
  JitProgram *p = jit_compile(&t->u.d, &t->u.g, &ce, 1, 1, 0);
  cr_assert(p);
  float x[40] = {0};
  int32_t y[4] = {1, 2, 10, 3};
  jit_bind(p, lg, x);
  jit_bind(p, lab, y);
  RunCtx ctx = {0, 1, 0};
  cr_assert_eq(jit_run(p, &t->u.d, &ctx), -1);
  cr_assert(strstr(t->u.d.buf, "label 10 out of range [0, 10)"), "got: %s", t->u.d.buf);
  y[2] = 9;
  diag_clear(&t->u.d);
  cr_assert_eq(jit_run(p, &t->u.d, &ctx), 0);
  cr_assert(fabsf(*(float *)jit_value(p, ce) - logf(10)) < 1e-5f);
  jit_free(p);
  t_free(t);
}

Test(jit, dropout_bit_identical) {
  T *t = t_new();
  Node *x = in(t, shp(2, 17, 31, 0, 0), -2, 2);
  Attr d1 = af(0.3, 0), d2 = af(0.5, 0);
  d1.i[0] = 11, d2.i[0] = 12;
  Node *r[2] = {op(t, OP_DROPOUT, x, NULL, &d1), op(t, OP_DROPOUT, x, NULL, &d2)};
  check_steps(t, r, 2, 2, 0, 2, 1);
  check_steps(t, r, 2, 2, 0, 1, 0);
  t_free(t);
}

/* conv2d(x, w) with attrs c and its two gradients (for a random dy) into r[*n..]. */
static void conv_with_grads(T *t, Node *x, Node *w, const Attr *c, Node **r, int *n) {
  Node *y = op(t, OP_CONV2D, x, w, c);
  r[(*n)++] = y;
  Node *dy = in(t, y->shape, -1, 1);
  Attr bx = *c, bw = *c;
  bx.shape = x->shape;
  bw.shape = w->shape;
  r[(*n)++] = op(t, OP_CONV2D_BWD_X, dy, w, &bx);
  r[(*n)++] = op(t, OP_CONV2D_BWD_W, x, dy, &bw);
}

Test(jit, conv_pool) {
  T *t = t_new();
  Node *x = in(t, shp(4, 2, 3, 9, 11), -1, 1), *w = in(t, shp(4, 5, 3, 3, 3), -1, 1);
  Node *r[16];
  int n = 0;
  for (int cfg = 0; cfg < 2; cfg++) {
    Attr c = ai(cfg ? 2 : 1, cfg ? 1 : 0);
    conv_with_grads(t, x, w, &c, r, &n);
  }
  for (int cfg = 0; cfg < 2; cfg++) {
    Attr pa = ai(cfg ? 3 : 2, cfg ? 2 : 2);
    Node *mp = op(t, OP_MAXPOOL2D, x, NULL, &pa), *ap = op(t, OP_AVGPOOL2D, x, NULL, &pa);
    r[n++] = mp;
    r[n++] = ap;
    Node *dy = in(t, mp->shape, -1, 1);
    Attr bx = pa;
    bx.shape = x->shape;
    r[n++] = op(t, OP_MAXPOOL2D_BWD, x, dy, &bx);
    r[n++] = op(t, OP_AVGPOOL2D_BWD, dy, NULL, &bx);
  }
  check(t, r, n, 1e-5);
  t_free(t);
}

/* Full conv attrs: strides (h, w), paddings (h, w), dilations (h, w), groups. */
static Attr conv_at(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t g) {
  Attr a = ai(sh, ph);
  a.i[2] = sw, a.i[3] = pw, a.i[4] = dh, a.i[5] = dw, a.i[6] = g;
  return a;
}

/* conv2d with dilation, per-axis stride/padding, groups 2 and depthwise,
 * with both gradients; conv_transpose2d (CONV2D_BWD_X of a given output
 * shape, output_padding 1, groups 2, dilation 2) and its weight gradient. */
Test(jit, conv_dilation_groups_transpose) {
  T *t = t_new();
  Node *r[32];
  int n = 0;
  static const struct { Shape x, w; int64_t a[7]; } cs[] = {
    {{4, {2, 3, 11, 9}}, {4, {4, 3, 3, 2}}, {1, 2, 2, 1, 2, 3, 1}},
    {{4, {2, 4, 9, 8}}, {4, {6, 2, 3, 3}}, {2, 1, 1, 1, 1, 2, 2}},
    {{4, {2, 8, 8, 8}}, {4, {8, 1, 3, 3}}, {1, 1, 1, 1, 1, 1, 8}},
  };
  for (int i = 0; i < 3; i++) {
    const int64_t *v = cs[i].a;
    Attr c = conv_at(v[0], v[2], v[1], v[3], v[4], v[5], v[6]);
    conv_with_grads(t, in(t, cs[i].x, -1, 1), in(t, cs[i].w, -1, 1), &c, r, &n);
  }
  /* x [2,4,5,6], w [4,3,3,3], groups 2: C_out 6; stride 2, padding 1,
   * output_padding 1, dilation (2, 1) */
  Node *x = in(t, shp(4, 2, 4, 5, 6), -1, 1), *w = in(t, shp(4, 4, 3, 3, 3), -1, 1);
  Attr c = conv_at(2, 2, 1, 1, 2, 1, 2);
  c.shape = shp(4, 2, 6, 4 * 2 - 2 + 2 * 2 + 1 + 1, 5 * 2 - 2 + 2 + 1 + 1);
  Node *y = op(t, OP_CONV2D_BWD_X, x, w, &c);
  r[n++] = y;
  Attr bw = c;
  bw.shape = w->shape;
  r[n++] = op(t, OP_CONV2D_BWD_W, in(t, y->shape, -1, 1), x, &bw);
  check(t, r, n, 1e-5);
  t_free(t);
}

/* One update op of kind o over a [31, 17] param, run 3 steps. */
static void check_update(Op o, const double *f, int64_t i0) {
  T *t = t_new();
  Shape s = shp(2, 31, 17, 0, 0);
  Node *x[4];
  x[0] = leaf(t, OP_PARAM, DT_F32, s, -1, 1);
  x[1] = in(t, s, -1, 1);
  int nin = o == OP_OPT_SGD || o == OP_OPT_ADAGRAD ? 3 : 4;
  for (int k = 2; k < nin; k++) x[k] = leaf(t, OP_STATE, DT_F32, s, 0, k == 3 ? 0.5f : 0.2f);
  Attr a;
  memset(&a, 0, sizeof a);
  for (int k = 0; k < 6; k++) a.f[k] = f[k];
  a.i[0] = i0;
  Node *u = ir_op(&t->u.g, &t->u.d, (Loc){0}, o, x, nin, &a);
  cr_assert(u);
  check_steps(t, &u, 1, 2, 1e-5, 3, 0);
  t_free(t);
}

Test(jit, optimizers) {
  double sgd[] = {0.1, 0, 0, 0, 0, 0}, sgdm[] = {0.1, 0.9, 0.01, 0, 0, 0};
  check_update(OP_OPT_SGD, sgd, 0);
  check_update(OP_OPT_SGD, sgdm, 0);
  check_update(OP_OPT_SGD, sgdm, 1);
  double adam[] = {0.01, 0.9, 0.999, 1e-8, 0, 0}, adamwd[] = {0.01, 0.8, 0.99, 1e-6, 0.1, 0};
  check_update(OP_OPT_ADAM, adam, 0);
  check_update(OP_OPT_ADAM, adamwd, 0);
  check_update(OP_OPT_ADAM, adamwd, 1);
  double rms[] = {0.01, 0.99, 1e-8, 0, 0, 0}, rmsm[] = {0.01, 0.9, 1e-6, 0.9, 0.05, 0};
  check_update(OP_OPT_RMSPROP, rms, 0);
  check_update(OP_OPT_RMSPROP, rmsm, 0);
  double ada[] = {0.01, 1e-10, 0, 0, 0, 0}, adawd[] = {0.05, 1e-10, 0.1, 0, 0, 0};
  check_update(OP_OPT_ADAGRAD, ada, 0);
  check_update(OP_OPT_ADAGRAD, adawd, 0);
}

/* Results are bit-identical with 1 and 2 threads. */
Test(jit, threads_identical) {
  T *t = t_new();
  Node *a = in(t, shp(2, 67, 300, 0, 0), -1, 1), *w = in(t, shp(2, 300, 129, 0, 0), -1, 1);
  Node *mm = op(t, OP_MATMUL, a, w, NULL);
  Node *th = op(t, OP_TANH, mm, NULL, NULL);
  Attr sm = ai(1, 0);
  Node *r[2] = {th, op(t, OP_SOFTMAX, mm, NULL, &sm)};
  float *av = leaf_data(t, a, 1), *wv = leaf_data(t, w, 2);
  float *out[2][2];
  for (int k = 0; k < 2; k++) {
    JitProgram *p = jit_compile(&t->u.d, &t->u.g, r, 2, k + 1, 1);
    cr_assert(p);
    jit_bind(p, a, av);
    jit_bind(p, w, wv);
    RunCtx ctx = {0, 1, 0};
    cr_assert_eq(jit_run(p, &t->u.d, &ctx), 0);
    for (int j = 0; j < 2; j++) {
      out[k][j] = malloc(67 * 129 * 4);
      memcpy(out[k][j], jit_value(p, r[j]), 67 * 129 * 4);
    }
    int np;
    const KernelProf *kp = jit_profile(p, &np);
    cr_assert_eq(np, 4);  /* pack (gemm.c), matmul, tanh, softmax */
    cr_assert_str_eq(kp[0].name, "pack");
    cr_assert_str_eq(kp[1].name, "matmul");
    cr_assert_eq(kp[1].calls, 1);
    cr_assert_float_eq(kp[1].flops, 2.0 * 67 * 300 * 129, 1);
    cr_assert(jit_compile_seconds(p) > 0 && jit_peak_bytes(p) >= 3 * 67 * 129 * 4);
    jit_free(p);
  }
  for (int j = 0; j < 2; j++) {
    cr_expect(memcmp(out[0][j], out[1][j], 67 * 129 * 4) == 0, "output %d differs between 1 and 2 threads", j);
    free(out[0][j]);
    free(out[1][j]);
  }
  free(av);
  free(wv);
  t_free(t);
}

/* Max error of the JIT's exp, log, tanh, erf over a dense sweep vs libm
 * (double): the bounds stated in codegen/llvm.c. */
Test(jit, vector_math_bounds) {
  enum { N = 200001 };
  T *t = t_new();
  Shape s = shp(1, N, 0, 0, 0);
  Node *x = in(t, s, 0, 1), *px = in(t, s, 0, 1), *tx = in(t, s, 0, 1);
  Op ops[4] = {OP_EXP, OP_LOG, OP_TANH, OP_ERF};
  Node *r[4], *src[4] = {x, px, tx, tx};
  for (int k = 0; k < 4; k++) r[k] = op(t, ops[k], src[k], NULL, NULL);
  float *xv = malloc(N * 4), *pv = malloc(N * 4), *tv = malloc(N * 4), *vals[4] = {xv, pv, tv, tv};
  for (int i = 0; i < N; i++) {
    xv[i] = -87.0f + 175.0f * (float)i / (N - 1);
    tv[i] = -6.0f + 12.0f * (float)i / (N - 1);
    pv[i] = ldexpf(1.0f + (float)(i % 1000) / 1000.0f, i / 1000 - 126);  /* 2^-126 .. 2^74 */
  }
  pv[0] = 1e-40f;  /* a denormal */
  JitProgram *p = jit_compile(&t->u.d, &t->u.g, r, 4, 1, 0);
  cr_assert(p);
  jit_bind(p, x, xv);
  jit_bind(p, px, pv);
  jit_bind(p, tx, tv);
  RunCtx ctx = {0, 1, 0};
  cr_assert_eq(jit_run(p, &t->u.d, &ctx), 0);
  double worst[4] = {0};
  for (int k = 0; k < 4; k++) {
    const float *y = jit_value(p, r[k]);
    for (int i = 0; i < N; i++) {
      float xi = vals[k][i];
      double ref = ops[k] == OP_EXP ? exp(xi) : ops[k] == OP_LOG ? log(xi) : ops[k] == OP_TANH ? tanh(xi) : erf(xi);
      double err = ops[k] == OP_ERF ? fabs(y[i] - ref) : fabs(y[i] - ref) / fmax(fabs(ref), 1e-30);
      if (err > worst[k]) worst[k] = err;
    }
  }
  cr_expect(worst[0] < 4e-7, "exp max rel error %g", worst[0]);
  cr_expect(worst[1] < 4e-7, "log max rel error %g", worst[1]);
  cr_expect(worst[2] < 6e-7, "tanh max rel error %g", worst[2]);
  cr_expect(worst[3] < 4e-7, "erf max abs error %g", worst[3]);
  const float *e = jit_value(p, r[0]);
  cr_expect(e[0] > 0 && isfinite(e[N - 1]), "exp range ends");
  const float *lg = jit_value(p, r[1]);
  cr_expect(fabs(lg[0] - log(1e-40)) < 1e-4, "log of a denormal: %g", lg[0]);
  jit_free(p);
  free(xv);
  free(pv);
  free(tv);
  t_free(t);
}

/* NNDC_DUMP_LLVM=1 shows vector code in the elementwise and matmul loops. */
Test(jit, vectorizes) {
  T *t = t_new();
  Node *a = in(t, shp(2, 64, 256, 0, 0), -1, 1), *w = in(t, shp(2, 256, 256, 0, 0), -1, 1);
  Node *r = op(t, OP_EXP, op(t, OP_MATMUL, a, w, NULL), NULL, NULL);
  char path[] = "/tmp/nndc-jit-dump-XXXXXX";
  int fd = mkstemp(path), saved = dup(2);
  cr_assert(fd >= 0);
  fflush(stderr);
  dup2(fd, 2);
  setenv("NNDC_DUMP_LLVM", "1", 1);
  JitProgram *p = jit_compile(&t->u.d, &t->u.g, &r, 1, 1, 0);
  unsetenv("NNDC_DUMP_LLVM");
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  cr_assert(p);
  jit_free(p);
  FILE *f = fdopen(fd, "r");
  fseek(f, 0, SEEK_SET);
  char line[4096];
  int vec = 0;
  char want[32];  /* the vectors of the target compiled for (NNDC_TARGET in the per-target runs) */
  snprintf(want, sizeof want, "<%d x float>", target_vector_width(target_current()));
  while (fgets(line, sizeof line, f)) vec += strstr(line, want) != NULL;
  fclose(f);
  unlink(path);
  cr_expect(vec > 10, "expected %s in the optimized IR (%d lines)", want, vec);
  t_free(t);
}

/* Every shared model's whole training step (forward, backward and its
 * optimizer), 3 steps: outputs, loss, metrics, and every param and optimizer
 * state (which hold the gradients) agree with the interpreter.  Odd batch
 * sizes exercise the loop remainders. */
/* The training step of shared model `file` (forward, backward, optimizer)
 * in a new T; roots[0..*n) receive the loss, outputs, metrics and updates. */
static T *training_step(const char *file, const Define *defs, int ndefs, Node **roots, int *n_out) {
  T *t = t_new();
  BuildOpts o = {.defs = defs, .ndefs = ndefs, .training = 1};
  char path[512];
  snprintf(path, sizeof path, "%s/models/%s", NNDC_SHARED_DIR, file);
  cr_assert_eq(fe_compile_file(&t->u.d, &t->u.g, path, &o), 0, "%s", t->u.d.buf);
  cr_assert_eq(pass_autodiff(&t->u.d, &t->u.g), 0, "%s", t->u.d.buf);
  cr_assert_eq(pass_optim(&t->u.d, &t->u.g), 0, "%s", t->u.d.buf);
  int n = 0;
  roots[n++] = t->u.g.loss;
  for (int i = 0; i < t->u.g.noutputs && n < 48; i++) roots[n++] = t->u.g.outputs[i].node;
  for (int i = 0; i < t->u.g.nmetrics && n < 48; i++) roots[n++] = t->u.g.metrics[i].node;
  for (int i = 0; i < t->u.g.nupdates && n < 64; i++) roots[n++] = t->u.g.updates[i];
  cr_assert(n < 64, "too many roots");
  *n_out = n;
  return t;
}

static void model_train_steps(const char *file, const Define *defs, int ndefs, double tol) {
  Node *roots[64];
  int n;
  T *t = training_step(file, defs, ndefs, roots, &n);
  for (int i = 0; i < t->u.g.nnodes; i++) {
    const Node *x = t->u.g.nodes[i];
    t->lo[i] = x->op == OP_STATE ? 0 : -0.1f;
    t->hi[i] = x->op == OP_STATE ? 0 : 0.1f;
    if (x->op == OP_INPUT && x->dt == DT_I32) t->lo[i] = 0, t->hi[i] = 10;
    if (x->op == OP_INPUT && x->dt == DT_F32) t->lo[i] = 0, t->hi[i] = 1;
  }
  check_steps(t, roots, n, 2, tol, 3, 1);
  t_free(t);
}

Test(jit_models, mlp) { Define d = {"N", 17, 1}; model_train_steps("mlp.nnd", &d, 1, 2e-5); }
Test(jit_models, logreg) { Define d = {"N", 31, 1}; model_train_steps("logreg.nnd", &d, 1, 2e-5); }
Test(jit_models, linreg) { Define d = {"N", 257, 1}; model_train_steps("linreg.nnd", &d, 1, 2e-5); }
Test(jit_models, deep_mlp) {
  Define d = {"N", 3, 1};
  leaf_outlier = 0.001;  /* lr / 10 of rmsprop(lr=0.001)'s sign-like first step 10 lr */
  model_train_steps("deep_mlp.nnd", &d, 1, 5e-5);
}
Test(jit_models, autoencoder) { Define d = {"N", 5, 1}; model_train_steps("autoencoder.nnd", &d, 1, 5e-5); }
Test(jit_models, lenet, .timeout = 300) { Define d = {"N", 3, 1}; model_train_steps("lenet.nnd", &d, 1, 5e-5); }
Test(jit_models, rnn, .timeout = 300) { Define d = {"N", 3, 1}; model_train_steps("rnn.nnd", &d, 1, 5e-5); }
Test(jit_models, lstm, .timeout = 300) { Define d = {"N", 3, 1}; model_train_steps("lstm.nnd", &d, 1, 5e-5); }

/* The JIT's code generation for every target, also those this host cannot
 * execute (the per-target runs of this suite execute the ones it can): the
 * training step of every shared model compiles to object code, at its train
 * block's batch and at batch 3 (the recurrent ones with 3 steps). */
Test(jit_targets, every_model_compiles_for_every_target, .timeout = 600) {
  static const char *const models[] = {"mlp", "logreg", "linreg", "deep_mlp", "autoencoder", "lenet", "rnn", "lstm"};
  for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++)
    for (int small = 0; small < 2; small++) {
      Define defs[2] = {{"T", 3, 1}, {"N", 3, 1}};
      int recurrent = !strcmp(models[mi], "rnn") || !strcmp(models[mi], "lstm");
      char file[64];
      snprintf(file, sizeof file, "%s.nnd", models[mi]);
      Node *roots[64];
      int n;
      T *t = training_step(file, recurrent ? defs : defs + 1, recurrent + small, roots, &n);
      for (int tk = 0; tk < TARGET_COUNT; tk++) {
        target_set(tk);
        Arena a;
        arena_init(&a);
        KProgram *p = codegen_lower(&t->u.d, &a, &t->u.g, roots, n);
        cr_assert(p, "%s", t->u.d.buf ? t->u.d.buf : "");
        cr_expect_eq(p->target, tk);
        size_t bytes = llvm_compile_object(&t->u.d, p);
        cr_expect_gt(bytes, 0, "%s for %s: %s", models[mi], target_name(tk), t->u.d.buf ? t->u.d.buf : "");
        arena_free(&a);
      }
      target_set(-1);
      t_free(t);
    }
}

/* A target the host cannot execute is refused with a clear error, never run. */
Test(jit_targets, unrunnable_target_refused) {
  if (target_host() == TARGET_AVX512) cr_skip_test("this host runs every target");
  T *t = t_new();
  cr_assert_eq(util_compile(&t->u.d, &t->u.g, "input x: f32[4, 3]\noutput y = relu(x) @ transpose(x)\n", NULL), 0);
  Node *r = t->u.g.outputs[0].node;
  target_set(TARGET_AVX512);
  JitProgram *p = jit_compile(&t->u.d, &t->u.g, &r, 1, 1, 0);
  target_set(-1);
  cr_expect_null(p);
  cr_expect(t->u.d.buf && strstr(t->u.d.buf, "cannot execute code for target 'avx512'"), "%s", t->u.d.buf ? t->u.d.buf : "");
  jit_free(p);
  t_free(t);
}

/* where(c, a, b) with the three broadcast, an f32 or i32 condition, alone
 * and fused with its operands' elementwise producers (a group of three
 * external operands). */
Test(jit, where_broadcast) {
  T *t = t_new();
  Node *a = in(t, shp(2, 3, 17, 0, 0), -2, 2), *b = in(t, shp(1, 17, 0, 0, 0), -2, 2);
  Node *c = in(t, shp(2, 3, 1, 0, 0), -1, 1);
  Node *ic = leaf(t, OP_INPUT, DT_I32, shp(1, 17, 0, 0, 0), 0, 2);
  Node *zero = ir_scalar(&t->u.g, 0);
  Node *w1[3] = {op(t, OP_GT, c, zero, NULL), a, b};
  Node *w2[3] = {ic, op(t, OP_RELU, a, NULL, NULL), op(t, OP_MUL, b, b, NULL)};
  Node *w3[3] = {c, zero, a};
  Node *r[3];
  r[0] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_WHERE, w1, 3, NULL);
  r[1] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_WHERE, w2, 3, NULL);
  r[2] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_WHERE, w3, 3, NULL);
  cr_assert(r[0] && r[1] && r[2], "%s", t->u.d.buf ? t->u.d.buf : "");
  check(t, r, 3, 1e-6);
  t_free(t);
}

/* tril over the last two axes of odd and square shapes, every k sign. */
Test(jit, tril_every_k) {
  T *t = t_new();
  Node *x = in(t, shp(3, 2, 5, 7, 0), -2, 2), *sq = in(t, shp(2, 16, 16, 0, 0), -2, 2);
  Node *r[6];
  int n = 0;
  static const int64_t ks[] = {0, -1, 3};
  for (int i = 0; i < 3; i++) {
    Attr a = af(i == 1 ? -1e9 : 0.25, 0);
    a.i[0] = ks[i];
    r[n++] = op(t, OP_TRIL, x, NULL, &a);
    r[n++] = op(t, OP_TRIL, sq, NULL, &a);
  }
  check(t, r, n, 1e-6);
  t_free(t);
}

/* embedding's gather and its row-summing gradient (repeated ids, odd and
 * aligned widths, one wider than two column blocks, ids of rank 0 to 2). */
Test(jit, embedding_and_gradient) {
  T *t = t_new();
  Node *tab = in(t, shp(2, 7, 13, 0, 0), -2, 2), *tab16 = in(t, shp(2, 5, 16, 0, 0), -2, 2);
  Node *ids = leaf(t, OP_INPUT, DT_I32, shp(2, 3, 11, 0, 0), 0, 7);
  Node *ids0 = leaf(t, OP_INPUT, DT_I32, shp(0, 0, 0, 0, 0), 0, 5);
  Node *ids1 = leaf(t, OP_INPUT, DT_I32, shp(1, 40, 0, 0, 0), 0, 5);
  Node *dy = in(t, shp(3, 3, 11, 13, 0), -1, 1), *dy1 = in(t, shp(2, 40, 16, 0, 0), -1, 1);
  Node *dyw = in(t, shp(3, 2, 11, 150, 0), -1, 1), *idsw = leaf(t, OP_INPUT, DT_I32, shp(2, 2, 11, 0, 0), 0, 9);
  Node *r[6];
  r[0] = op(t, OP_EMBEDDING, tab, ids, NULL);
  r[1] = op(t, OP_EMBEDDING, tab16, ids0, NULL);
  r[2] = op(t, OP_EMBEDDING, tab16, ids1, NULL);
  Attr a = af(0, 0);
  a.shape = tab->shape;
  r[3] = op(t, OP_EMBEDDING_BWD, dy, ids, &a);
  a.shape = tab16->shape;
  r[4] = op(t, OP_EMBEDDING_BWD, dy1, ids1, &a);
  a.shape = shp(2, 9, 150, 0, 0);
  r[5] = op(t, OP_EMBEDDING_BWD, dyw, idsw, &a);
  check(t, r, 6, 1e-6);
  t_free(t);
}

/* rand and randn: the JIT draws what the interpreter draws (seed, key,
 * step, element), on 1 and 2 threads, over several steps. */
Test(jit, noise_draws_as_the_interpreter) {
  T *t = t_new();
  Attr a = af(0, 0);
  a.shape = shp(2, 33, 17, 0, 0);
  a.i[0] = 7;
  Node *r[3];
  r[0] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_RAND, NULL, 0, &a);
  a.i[0] = 8;
  r[1] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_RANDN, NULL, 0, &a);
  a.shape = shp(1, 1000, 0, 0, 0);
  r[2] = ir_op(&t->u.g, &t->u.d, (Loc){0}, OP_RANDN, NULL, 0, &a);
  cr_assert(r[0] && r[1] && r[2], "%s", t->u.d.buf ? t->u.d.buf : "");
  check_steps(t, r, 3, 2, 1e-5, 3, 0);
  t_free(t);
}
