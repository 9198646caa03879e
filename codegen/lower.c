/* lower.c - tensor graph -> kernel IR (kir.h), one kernel per node.
 *
 * Contract: lower_program takes the nodes the roots need, gives every
 * non-leaf node a buffer (RESHAPE aliases its operand's buffer, CONST is
 * filled at compile time, leaves are bound by the caller, interior members
 * of a fused group have none) and emits the kernels of each computing node
 * with the semantics of the reference interpreter (ir/interp.c); the
 * planner (plan.c) then gives the buffers offsets by liveness.
 * Elementwise ops collapse contiguous dims so the common case is one flat
 * PARALLEL|VECTOR loop.  Products go through gemm.c (with a packing kernel
 * and scratch buffer before them when gemm.c asks, made once per operand);
 * convolutions are products too (im2col / col2im / im2row kernels around
 * them); fused groups go through lower_fused.c, a group holding a product
 * as gemm.c's epilogue; the optimizer updates of one rule share a kernel.
 */
#include <math.h>
#include <string.h>
#include "kir.h"
#include "target.h"

/* The state of lowering one kernel. */
typedef struct L {
  Arena *a;
  KProgram *p;
  KGen kg;         /* builds the current kernel (kg.k) */
  const Graph *g;
  struct Packed *packed;  /* the packed copies of B made so far */
  int *hbase;      /* [g nnodes] first hyperparameter slot of each update, -1: none yet */
} L;

/* A packed copy of a matmul's right operand (gemm_pack), made once and
 * read by every product with the same operand: graph values never change
 * once computed, and the planner keeps the copy live to its last reader. */
typedef struct Packed {
  struct Packed *next;
  int src, dst;    /* buffer of the operand, of the copy */
  int64_t batch, K, N, rs, cs;
} Packed;

/* ------------------------------------------------------------ expressions */

/* Thin names for gemm.c's KGen builders (kir.h) on the current kernel. */
static KExpr *ci(L *l, int64_t v) { return kg_int(&l->kg, v); }
static KExpr *cf(L *l, double v) { return kg_f32(&l->kg, v); }
static KExpr *cd(L *l, double v) { return kg_f64(&l->kg, v); }
static KExpr *var(L *l, int v) { return kg_var(&l->kg, v); }
static KExpr *ctxv(L *l, int slot) { return kg_ctx(&l->kg, slot); }
static KExpr *bin(L *l, int op, KExpr *x, KExpr *y) { return kg_bin(&l->kg, op, x, y); }
static KExpr *add(L *l, KExpr *x, KExpr *y) { return kg_add(&l->kg, x, y); }
static KExpr *mul(L *l, KExpr *x, KExpr *y) { return kg_bin(&l->kg, KB_MUL, x, y); }
static KExpr *addi(L *l, KExpr *x, int64_t c) { return kg_addi(&l->kg, x, c); }
static KExpr *muli(L *l, KExpr *x, int64_t c) { return kg_muli(&l->kg, x, c); }
static KExpr *un(L *l, int op, KExpr *x) { return kg_un(&l->kg, op, x); }
static KExpr *sel(L *l, KExpr *c, KExpr *x, KExpr *y) { return kg_sel(&l->kg, c, x, y); }
static KExpr *cast(L *l, KType t, KExpr *x) { return kg_cast(&l->kg, t, x); }
static KExpr *load(L *l, int buf, KExpr *idx) { return kg_load(&l->kg, buf, idx); }

/* x clamped to [0, n-1]: a safe index for a load whose value is masked. */
static KExpr *clampi(L *l, KExpr *x, int64_t n) {
  return bin(l, KB_MIN, bin(l, KB_MAX, x, ci(l, 0)), ci(l, n - 1));
}

/* 0 <= x < n */
static KExpr *inrange(L *l, KExpr *x, int64_t n) {
  return bin(l, KB_AND, bin(l, KB_GE, x, ci(l, 0)), bin(l, KB_LT, x, ci(l, n)));
}

static KExpr *f01(L *l, KExpr *c) { return sel(l, c, cf(l, 1), cf(l, 0)); }

/* ------------------------------------------------------------- statements */

static KStmt **store(L *l, KStmt **at, int buf, KExpr *idx, KExpr *val) { return kg_store(&l->kg, at, buf, idx, val); }
/* Declares a local initialised to v; its number goes to *var. */
static KStmt **let(L *l, KStmt **at, int *v, KExpr *init) { return kg_let(&l->kg, at, v, init); }
static KStmt **set(L *l, KStmt **at, int v, KExpr *val) { return kg_set(&l->kg, at, v, val); }
static KStmt **if_(L *l, KStmt ***at, KExpr *cond) { return kg_if(&l->kg, at, cond); }

/* Opens `for (v = 0; v < n; v++)`; *at advances past it; returns its body slot.
 * A PARALLEL loop sets the kernel's parallel extent. */
static KStmt **loop(L *l, KStmt ***at, int *v, int64_t n, int flags) {
  KExpr *ve;
  KStmt **body = kg_loop(&l->kg, at, &ve, ci(l, 0), ci(l, n), 1, flags);
  *v = ve->var;
  return body;
}

/* Like loop, but a loop of extent 1 is elided and its variable is 0. */
static KStmt **loop_or_zero(L *l, KStmt ***at, KExpr **ve, int64_t n, int flags) {
  if (n == 1 && !(flags & KL_PARALLEL)) {
    *ve = ci(l, 0);
    return *at;
  }
  int v;
  KStmt **body = loop(l, at, &v, n, flags);
  *ve = var(l, v);
  return body;
}

/* A loop that is never elided: statements can follow it at *at. */
static KStmt **loopv(L *l, KStmt ***at, KExpr **ve, int64_t n, int flags) {
  int v;
  KStmt **body = loop(l, at, &v, n, flags);
  *ve = var(l, v);
  return body;
}

/* Loops over dims[0..r): the outermost PARALLEL when par, the innermost
 * VECTOR; ve[k] receives each loop variable.  Returns the innermost body. */
static KStmt **nest(L *l, KStmt **at, const int64_t *dims, int r, int par, KExpr **ve) {
  for (int k = 0; k < r; k++) {
    int flags = (k == 0 && par ? KL_PARALLEL : 0) | (k == r - 1 ? KL_VECTOR : 0);
    at = loop_or_zero(l, &at, &ve[k], dims[k], flags);
  }
  return at;
}

/* Flat C-order index of ve[0..r) in dims. */
static KExpr *flat(L *l, KExpr *const *ve, const int64_t *dims, int r) {
  KExpr *e = ci(l, 0);
  for (int k = 0; k < r; k++) e = add(l, muli(l, e, dims[k]), ve[k]);
  return e;
}

/* sum ve[k] * strides[k] */
static KExpr *strided(L *l, KExpr *const *ve, const int64_t *strides, int r) {
  KExpr *e = ci(l, 0);
  for (int k = 0; k < r; k++) e = add(l, e, muli(l, ve[k], strides[k]));
  return e;
}

/* ---------------------------------------------------------------- kernels */

static int64_t numel(const Node *n) { return shape_numel(&n->shape); }

/* A new f32 arena buffer of numel elements: work space of a kernel of n. */
static int add_scratch(KProgram *p, const Node *n, int64_t numel) {
  KBuffer *b = &p->bufs[p->nbufs];
  b->kind = KB_ARENA;
  b->dt = DT_F32;
  b->numel = numel;
  b->node = n;
  b->scratch = 1;
  b->offset = p->arena_bytes;
  p->arena_bytes += ((size_t)numel * 4 + 63) & ~(size_t)63;
  return p->nbufs++;
}

static int buf_of(L *l, const Node *n) {
  int b = l->p->node_buf[n->id];
  NNDC_ASSERT(b >= 0);
  return b;
}

/* Makes k the kernel l builds (the capacity of its variables unknown:
 * regrown on the next one). */
static void build_on(L *l, Kernel *k) { l->kg = (KGen){.a = l->a, .p = l->p, .k = k}; }

static Kernel *kernel_new(L *l, const Node *n) {
  Kernel *k = arena_alloc(l->a, sizeof *k);
  k->node = n;
  k->opname = op_info[n->op].name;
  k->name = arena_printf(l->a, "k%d_%s", n->id, op_info[n->op].name);
  build_on(l, k);
  return k;
}

/* C-order strides of s broadcast to an output of rank r (0 on broadcast axes). */
void lower_bcast_strides(const Shape *s, const int64_t *odims, int r, int64_t *st) {
  int64_t acc = 1;
  for (int k = r - 1; k >= 0; k--) {
    int sk = k - (r - s->rank);
    int64_t d = sk >= 0 ? s->dim[sk] : 1;
    st[k] = (d == 1 && odims[k] != 1) || sk < 0 ? 0 : acc;
    acc *= d;
  }
}

/* Merges adjacent output dims through which every operand is contiguous (or
 * broadcast), so elementwise loops are as flat as possible.  dims/st are
 * updated in place; returns the new rank. */
int lower_collapse(int64_t *dims, int r, int64_t (*st)[MAX_RANK], int nst) {
  int w = 0;
  for (int k = 0; k < r; k++) {
    if (w > 0) {
      int ok = 1;
      for (int j = 0; j < nst; j++) ok &= st[j][w - 1] == st[j][k] * dims[k];
      if (ok) {
        dims[w - 1] *= dims[k];
        for (int j = 0; j < nst; j++) st[j][w - 1] = st[j][k];
        continue;
      }
    }
    dims[w] = dims[k];
    for (int j = 0; j < nst; j++) st[j][w] = st[j][k];
    w++;
  }
  return w;
}

/* Loaded operand value in float: i32 operands are converted by value. */
static KExpr *as_f(L *l, KExpr *x) { return cast(l, KT_F32, x); }

/* The elementwise ops compute what PyTorch's float32 CPU kernels compute,
 * in their order of operations, so that they agree to a few ulp over the
 * whole range (tests/test_math.c), also where PyTorch's formula rounds an
 * intermediate that a later step cancels (elu's exp(x) - 1 near 0, gelu's
 * 1 + erf in the negative tail); gelu's erf is the exact one. */

/* x ** p: PyTorch's special exponents are products, quotients and square
 * roots (2: x*x, 3: x*x*x, -2: 1/(x*x), 0.5: sqrt, -0.5: 1/sqrt, -1: 1/x),
 * which overflow, underflow and treat -0 and -inf as those do; other
 * exponents are powf. */
static KExpr *pow_value(L *l, KExpr *x, double p) {
  KExpr *one = cf(l, 1), *sq = mul(l, x, x);
  if (p == 1) return x;
  if (p == 2) return sq;
  if (p == 3) return mul(l, sq, x);
  if (p == -2) return bin(l, KB_DIV, one, sq);
  if (p == -1) return bin(l, KB_DIV, one, x);
  if (p == 0.5) return un(l, KU_SQRT, x);
  if (p == -0.5) return bin(l, KB_DIV, one, un(l, KU_SQRT, x));
  return bin(l, KB_POW, x, cf(l, p));
}

static KExpr *ew_value(L *l, const Node *n, KExpr **x) {
  const double *f = n->a.f;
  KExpr *z = cf(l, 0), *one = cf(l, 1);
  switch (n->op) {
  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MAXIMUM: case OP_MINIMUM: {
    static const int map[] = {KB_ADD, KB_SUB, KB_MUL, KB_DIV, KB_MAX, KB_MIN};
    return bin(l, map[n->op - OP_ADD], as_f(l, x[0]), as_f(l, x[1]));
  }
  case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE: {
    static const int map[] = {KB_EQ, KB_NE, KB_LT, KB_LE, KB_GT, KB_GE};
    KExpr *a = x[0], *b = x[1];
    if (a->t != b->t) a = cast(l, KT_F64, a), b = cast(l, KT_F64, b);  /* exact for i32 and f32 */
    return f01(l, bin(l, map[n->op - OP_EQ], a, b));
  }
  case OP_NEG: return un(l, KU_NEG, x[0]);
  case OP_POW: return pow_value(l, x[0], f[0]);
  case OP_RELU: return sel(l, bin(l, KB_LE, x[0], z), z, x[0]);   /* NaN passes */
  case OP_SIGMOID: return bin(l, KB_DIV, one, add(l, one, un(l, KU_EXP, un(l, KU_NEG, x[0]))));
  case OP_TANH: return un(l, KU_TANH, x[0]);
  case OP_EXP: return un(l, KU_EXP, x[0]);
  case OP_LOG: return un(l, KU_LOG, x[0]);
  case OP_SQRT: return un(l, KU_SQRT, x[0]);
  case OP_ABS: return un(l, KU_ABS, x[0]);
  case OP_SOFTPLUS: return sel(l, bin(l, KB_GT, x[0], cf(l, 20)), x[0], un(l, KU_LOG1P, un(l, KU_EXP, x[0])));
  case OP_ELU:   /* exp(x) - 1, not expm1: PyTorch's result near 0 is that rounding */
    return sel(l, bin(l, KB_GT, x[0], z), x[0],
               mul(l, cf(l, f[0]), bin(l, KB_SUB, un(l, KU_EXP, x[0]), one)));
  case OP_LEAKY_RELU: return sel(l, bin(l, KB_GT, x[0], z), x[0], mul(l, x[0], cf(l, f[0])));
  case OP_GELU:   /* PyTorch's erf here is an approximation (1.5e-7); KU_ERF is right to an ulp */
    return mul(l, mul(l, x[0], cf(l, 0.5)),
               add(l, one, un(l, KU_ERF, mul(l, x[0], cf(l, 0.70710678118654752440)))));
  case OP_CLAMP:   /* NaN passes */
    return sel(l, bin(l, KB_LT, x[0], cf(l, f[0])), cf(l, f[0]),
               sel(l, bin(l, KB_GT, x[0], cf(l, f[1])), cf(l, f[1]), x[0]));
  case OP_ERF: return un(l, KU_ERF, x[0]);
  case OP_SIGN:
    return sel(l, bin(l, KB_GT, x[0], z), one, sel(l, bin(l, KB_LT, x[0], z), cf(l, -1), z));
  case OP_CAST: return as_f(l, x[0]);
  case OP_DETACH: case OP_EXPAND: return x[0];
  case OP_WHERE: return sel(l, bin(l, KB_NE, as_f(l, x[0]), z), as_f(l, x[1]), as_f(l, x[2]));
  case OP_NORMALIZE: return bin(l, KB_DIV, bin(l, KB_SUB, x[0], x[1]), un(l, KU_SQRT, add(l, x[2], cf(l, f[0]))));
  default: NNDC_ASSERT(0 && "not elementwise");
  }
  return NULL;
}

KExpr *lower_ew_value(Arena *a, const Node *n, KExpr **x) {
  L l = {.a = a, .kg = {.a = a}};
  return ew_value(&l, n, x);
}

/* Elementwise ops and EXPAND: one nest over the (collapsed) output shape. */
static void lower_ew(L *l, const Node *n) {
  int64_t dims[MAX_RANK], st[4][MAX_RANK];
  int r = n->shape.rank, nst = n->nin + 1;
  memcpy(dims, n->shape.dim, sizeof dims);
  for (int j = 0; j < n->nin; j++) lower_bcast_strides(&n->in[j]->shape, dims, r, st[j]);
  lower_bcast_strides(&n->shape, dims, r, st[n->nin]);
  r = lower_collapse(dims, r, st, nst);
  KExpr *ve[MAX_RANK], *x[3];
  KStmt **at = nest(l, &l->kg.k->body, dims, r, r > 0, ve);
  for (int j = 0; j < n->nin; j++) x[j] = load(l, buf_of(l, n->in[j]), strided(l, ve, st[j], r));
  store(l, at, buf_of(l, n), strided(l, ve, st[n->nin], r), ew_value(l, n, x));
  l->kg.k->flops = (double)numel(n);
}

/* Columns a strip of the reduction below sums at once. */
enum { RSTRIP = 8 };

/* One strip of w kept elements along the last (contiguous) axis at j0:
 * w accumulators (f64, as the interpreter) summed over the reduced axes in
 * order, so the loads of a row of the strip are contiguous and the SLP
 * vectorizer makes them vector operations. */
static void reduce_strip(L *l, KStmt **at, const Node *n, KExpr **kv, const int64_t *kd, const int64_t *ks, int nk,
                         const int64_t *rd, const int64_t *rs, int nr, int64_t count, KExpr *j0, int w) {
  int ismax = n->op == OP_MAX, acc[RSTRIP];
  for (int c = 0; c < w; c++) at = let(l, at, &acc[c], ismax ? cf(l, -INFINITY) : cd(l, 0));
  KExpr *rv[MAX_RANK];
  KStmt **body = loopv(l, &at, &rv[0], rd[0], 0);
  if (nr > 1) body = nest(l, body, rd + 1, nr - 1, 0, rv + 1);
  KExpr *base = add(l, strided(l, kv, ks, nk - 1), add(l, strided(l, rv, rs, nr), muli(l, j0, ks[nk - 1])));
  for (int c = 0; c < w; c++) {
    KExpr *x = load(l, buf_of(l, n->in[0]), add(l, base, ci(l, c * ks[nk - 1])));
    body = set(l, body, acc[c], ismax ? bin(l, KB_MAX, var(l, acc[c]), x) : add(l, var(l, acc[c]), cast(l, KT_F64, x)));
  }
  KExpr *row = flat(l, kv, kd, nk - 1);
  for (int c = 0; c < w; c++) {
    KExpr *res = var(l, acc[c]);
    if (n->op == OP_MEAN) res = bin(l, KB_DIV, res, cd(l, (double)count));
    at = store(l, at, buf_of(l, n), add(l, muli(l, row, kd[nk - 1]), add(l, j0, ci(l, c))), res);
  }
}

/* A reduction keeping the last axis: strips of RSTRIP kept elements (the
 * PARALLEL loop is over the first kept axis, or over the strips), the
 * last strip narrower. */
static void reduce_strips(L *l, const Node *n, const int64_t *kd, const int64_t *ks, int nk, const int64_t *rd,
                          const int64_t *rs, int nr, int64_t count) {
  KExpr *kv[MAX_RANK], *sv;
  KStmt **at = &l->kg.k->body;
  for (int k = 0; k < nk - 1; k++) at = loop_or_zero(l, &at, &kv[k], kd[k], k == 0 ? KL_PARALLEL : 0);
  int64_t J = kd[nk - 1], nfull = J / RSTRIP, rem = J % RSTRIP;
  KStmt **body = loopv(l, &at, &sv, nfull + (rem > 0), nk == 1 ? KL_PARALLEL : 0);
  KExpr *j0 = muli(l, sv, RSTRIP);
  if (rem == 0) {
    reduce_strip(l, body, n, kv, kd, ks, nk, rd, rs, nr, count, j0, RSTRIP);
    return;
  }
  KStmt **full = if_(l, &body, bin(l, KB_LT, sv, ci(l, nfull)));
  reduce_strip(l, full, n, kv, kd, ks, nk, rd, rs, nr, count, j0, RSTRIP);
  KStmt **last = if_(l, &body, bin(l, KB_GE, sv, ci(l, nfull)));
  reduce_strip(l, last, n, kv, kd, ks, nk, rd, rs, nr, count, j0, (int)rem);
}

/* SUM, MEAN, MAX over an axis mask: kept axes outside (parallel), reduced
 * axes inside with an accumulator (f64 for sums, so long sums stay exact). */
static void lower_reduce(L *l, const Node *n) {
  const Shape *s = &n->in[0]->shape;
  uint64_t mask = (uint64_t)n->a.i[0];
  if (mask == 0) mask = ((uint64_t)1 << s->rank) - 1;
  int64_t kd[MAX_RANK], rd[MAX_RANK], ks[MAX_RANK], rs[MAX_RANK], stride = 1, count = 1;
  int nk = 0, nr = 0;
  int64_t strides[MAX_RANK];
  for (int k = s->rank - 1; k >= 0; k--) strides[k] = stride, stride *= s->dim[k];
  for (int k = 0; k < s->rank; k++) {
    if (!(mask >> k & 1)) kd[nk] = s->dim[k], ks[nk++] = strides[k];
    else if (k > 0 && (mask >> (k - 1) & 1))  /* adjacent reduced axes are one */
      rd[nr - 1] *= s->dim[k], rs[nr - 1] = strides[k], count *= s->dim[k];
    else rd[nr] = s->dim[k], rs[nr++] = strides[k], count *= s->dim[k];
  }
  KExpr *kv[MAX_RANK], *rv[MAX_RANK];
  KStmt **at = &l->kg.k->body;
  l->kg.k->flops = (double)numel(n->in[0]);
  if (nr > 0 && nk > 0 && !(mask >> (s->rank - 1) & 1) && kd[nk - 1] >= RSTRIP) {
    reduce_strips(l, n, kd, ks, nk, rd, rs, nr, count);
    return;
  }
  for (int k = 0; k < nk; k++) at = loop_or_zero(l, &at, &kv[k], kd[k], k == 0 ? KL_PARALLEL : 0);
  int ismax = n->op == OP_MAX, acc;
  if (!ismax && nr > 0 && (mask >> (s->rank - 1) & 1) && rd[nr - 1] >= 4 * RSTRIP) {
    /* a sum along the contiguous last axis: RSTRIP partial sums (f64) of
     * interleaved elements, added in a fixed order, so it vectorizes */
    int part[RSTRIP];
    for (int c = 0; c < RSTRIP; c++) at = let(l, at, &part[c], cd(l, 0));
    KStmt **body = at;
    if (nr > 1) {  /* at advances past the outer loops, body is inside them */
      body = loopv(l, &at, &rv[0], rd[0], 0);
      if (nr > 2) body = nest(l, body, rd + 1, nr - 2, 0, rv + 1);
    }
    int64_t len = rd[nr - 1], nfull = len / RSTRIP, st = rs[nr - 1];
    KExpr *base = add(l, strided(l, kv, ks, nk), strided(l, rv, rs, nr - 1)), *iv, *tv;
    int xb = buf_of(l, n->in[0]);
    KStmt **cl = loopv(l, &body, &iv, nfull, 0);
    for (int c = 0; c < RSTRIP; c++) {
      KExpr *x = load(l, xb, add(l, base, muli(l, add(l, muli(l, iv, RSTRIP), ci(l, c)), st)));
      cl = set(l, cl, part[c], add(l, var(l, part[c]), cast(l, KT_F64, x)));
    }
    if (len > nfull * RSTRIP) {
      KStmt **tl = loopv(l, &body, &tv, len - nfull * RSTRIP, 0);
      KExpr *x = load(l, xb, add(l, base, muli(l, add(l, tv, ci(l, nfull * RSTRIP)), st)));
      set(l, tl, part[0], add(l, var(l, part[0]), cast(l, KT_F64, x)));
    }
    if (nr == 1) at = body;  /* past the loops */
    KExpr *sum[RSTRIP];
    for (int c = 0; c < RSTRIP; c++) sum[c] = var(l, part[c]);
    for (int w = RSTRIP / 2; w > 0; w /= 2)
      for (int c = 0; c < w; c++) sum[c] = add(l, sum[2 * c], sum[2 * c + 1]);
    KExpr *res = sum[0];
    if (n->op == OP_MEAN) res = bin(l, KB_DIV, res, cd(l, (double)count));
    store(l, at, buf_of(l, n), flat(l, kv, kd, nk), res);
    return;
  }
  at = let(l, at, &acc, ismax ? cf(l, -INFINITY) : cd(l, 0));
  KExpr *zero = ci(l, 0);
  KStmt **body = loopv(l, &at, nr ? &rv[0] : &zero, nr ? rd[0] : 1, nr == 1 ? KL_VECTOR : 0);
  if (nr > 1) body = nest(l, body, rd + 1, nr - 1, 0, rv + 1);
  KExpr *x = load(l, buf_of(l, n->in[0]), add(l, strided(l, kv, ks, nk), strided(l, rv, rs, nr)));
  set(l, body, acc, ismax ? bin(l, KB_MAX, var(l, acc), x) : add(l, var(l, acc), cast(l, KT_F64, x)));
  KExpr *res = var(l, acc);
  if (n->op == OP_MEAN) res = bin(l, KB_DIV, res, cd(l, (double)count));
  store(l, at, buf_of(l, n), flat(l, kv, kd, nk), res);
}

/* Splits the shape of x around axis ax into [outer, A, inner]. */
static void split_axis(const Shape *s, int ax, int64_t *outer, int64_t *A, int64_t *inner) {
  *outer = *inner = 1;
  for (int k = 0; k < ax; k++) *outer *= s->dim[k];
  for (int k = ax + 1; k < s->rank; k++) *inner *= s->dim[k];
  *A = s->dim[ax];
}

/* ARGMAX: the first index of the maximum along the axis (i32). */
static void lower_argmax(L *l, const Node *n) {
  int64_t O, A, I;
  split_axis(&n->in[0]->shape, (int)n->a.i[0], &O, &A, &I);
  KExpr *o, *t, *a;
  KStmt **at = &l->kg.k->body;
  at = loop_or_zero(l, &at, &o, O, KL_PARALLEL);
  at = loop_or_zero(l, &at, &t, I, 0);
  int xb = buf_of(l, n->in[0]), best, bi;
  KExpr *base = add(l, muli(l, o, A * I), t);
  at = let(l, at, &best, load(l, xb, base));
  at = let(l, at, &bi, ci(l, 0));
  KStmt **in = loopv(l, &at, &a, A, 0);
  KExpr *x = load(l, xb, add(l, base, muli(l, a, I)));
  int c;
  in = let(l, in, &c, bin(l, KB_GT, x, var(l, best)));
  in = set(l, in, bi, sel(l, var(l, c), a, var(l, bi)));
  set(l, in, best, sel(l, var(l, c), x, var(l, best)));
  store(l, at, buf_of(l, n), add(l, muli(l, o, I), t), var(l, bi));
}

/* TRANSPOSE: out[k...] = in at the permuted index.  When the output axis
 * `ri` that walks the input contiguously is not the output's last axis and
 * both are at least 2 * TRANSPOSE_TILE long, the two are walked in tiles of
 * TRANSPOSE_TILE x TRANSPOSE_TILE (the other axes outside), so the strided
 * side of the copy stays in cache: a plain walk reads a new line (and often
 * a new page) for every element. */
enum { TRANSPOSE_TILE = 32 };

static void lower_transpose(L *l, const Node *n) {
  const Shape *s = &n->in[0]->shape;
  int64_t ist[MAX_RANK], st[MAX_RANK], acc = 1;
  for (int k = s->rank - 1; k >= 0; k--) ist[k] = acc, acc *= s->dim[k];
  for (int k = 0; k < s->rank; k++) st[k] = ist[n->a.i[k]];
  KExpr *ve[MAX_RANK];
  int r = n->shape.rank, ri = -1;
  const int64_t *d = n->shape.dim, T = TRANSPOSE_TILE;
  for (int k = 0; k < r - 1; k++)
    if (st[k] == 1) ri = k;
  int xb = buf_of(l, n->in[0]), ob = buf_of(l, n);
  if (ri < 0 || d[ri] < 2 * T || d[r - 1] < 2 * T) {
    KStmt **at = nest(l, &l->kg.k->body, n->shape.dim, r, r > 0, ve);
    store(l, at, ob, flat(l, ve, n->shape.dim, r), load(l, xb, strided(l, ve, st, r)));
    return;
  }
  KStmt **at = &l->kg.k->body;
  int first = 1;
  for (int k = 0; k < r - 1; k++) {
    if (k == ri) continue;
    at = loop_or_zero(l, &at, &ve[k], d[k], first ? KL_PARALLEL : 0);
    first = 0;
  }
  int lo[2] = {ri, r - 1};
  KExpr *tile[2];
  for (int j = 0; j < 2; j++)
    at = loopv(l, &at, &tile[j], (d[lo[j]] + T - 1) / T, first && j == 0 ? KL_PARALLEL : 0);
  for (int j = 0; j < 2; j++) {
    KExpr *t0 = muli(l, tile[j], T);
    at = kg_loop(&l->kg, &at, &ve[lo[j]], t0, bin(l, KB_MIN, addi(l, t0, T), ci(l, d[lo[j]])), 1,
                 j == 1 ? KL_VECTOR : 0);
  }
  store(l, at, ob, flat(l, ve, d, r), load(l, xb, strided(l, ve, st, r)));
}

/* SLICE: out = in at (index + start). */
static void lower_slice(L *l, const Node *n) {
  const Shape *s = &n->in[0]->shape;
  int r = n->shape.rank;
  KExpr *ve[MAX_RANK], *iv[MAX_RANK];
  KStmt **at = nest(l, &l->kg.k->body, n->shape.dim, r, r > 0, ve);
  for (int k = 0; k < r; k++) iv[k] = addi(l, ve[k], n->a.i[k]);
  store(l, at, buf_of(l, n), flat(l, ve, n->shape.dim, r), load(l, buf_of(l, n->in[0]), flat(l, iv, s->dim, r)));
}

/* SLICE_BWD: zeros of the output shape with the operand placed at start. */
static void lower_slice_bwd(L *l, const Node *n) {
  const Shape *s = &n->in[0]->shape;
  int r = n->shape.rank;
  KExpr *ve[MAX_RANK], *iv[MAX_RANK], *ok = NULL;
  KStmt **at = nest(l, &l->kg.k->body, n->shape.dim, r, r > 0, ve);
  for (int k = 0; k < r; k++) {
    KExpr *d = addi(l, ve[k], -n->a.i[k]);
    KExpr *c = inrange(l, d, s->dim[k]);
    ok = ok ? bin(l, KB_AND, ok, c) : c;
    iv[k] = clampi(l, d, s->dim[k]);
  }
  KExpr *x = load(l, buf_of(l, n->in[0]), flat(l, iv, s->dim, r));
  store(l, at, buf_of(l, n), flat(l, ve, n->shape.dim, r), ok ? sel(l, ok, x, cf(l, 0)) : x);
}

/* CONCAT: per operand, a nest copying its [outer, C_j*inner] block. */
static void lower_concat(L *l, const Node *n) {
  int64_t O, A, I, off = 0;
  split_axis(&n->shape, (int)n->a.i[0], &O, &A, &I);
  KStmt **at = &l->kg.k->body;
  for (int j = 0; j < n->nin; j++) {
    int64_t C = n->in[j]->shape.dim[n->a.i[0]];
    KExpr *o, *t;
    KStmt **in = loopv(l, &at, &o, O, O > 1 ? KL_PARALLEL : 0);
    in = loop_or_zero(l, &in, &t, C * I, KL_VECTOR);
    KExpr *dst = add(l, add(l, muli(l, o, A * I), ci(l, off * I)), t);
    store(l, in, buf_of(l, n), dst, load(l, buf_of(l, n->in[j]), add(l, muli(l, o, C * I), t)));
    off += C;
  }
}

/* Operand j (rows x cols) of matmul n: its buffer, or the buffer of the
 * operand of a TRANSPOSE fused into the product (passes/fuse.c), read in
 * place with swapped strides. */
static GemmOperand mm_operand(L *l, const Node *n, int j, int64_t rows, int64_t cols) {
  const Node *x = n->in[j];
  int64_t bs = x->shape.rank == 3 ? rows * cols : 0;
  const int *grp = l->g->fuse_group;
  if (x->op == OP_TRANSPOSE && grp && (grp[x->id] == FUSE_IN_PLACE || (grp[x->id] >= 0 && grp[x->id] != x->id)))
    return (GemmOperand){buf_of(l, x->in[0]), bs, 1, rows};
  return (GemmOperand){buf_of(l, x), bs, cols, 1};
}

/* Appends to kernel k (a kernel of node n) C[b] = A[b] @ B[b] (gemm.c),
 * after a kernel packing B into scratch when gemm.c asks for it; bbatch is
 * 1 when every batch shares B.  A packed copy is made once per operand. */
static void lower_gemm(L *l, Kernel *k, const Node *n, int64_t batch, int64_t bbatch, int64_t M, int64_t N, int64_t K,
                       GemmOperand A, GemmOperand B, GemmOperand C, const GemmEpi *epi) {
  int64_t pack = gemm_pack_numel(M, N, K, B.cs == 1);
  if (pack > 0) {
    Packed *c = l->packed;
    while (c && !(c->src == B.buf && c->batch == bbatch && c->K == K && c->N == N && c->rs == B.rs && c->cs == B.cs))
      c = c->next;
    if (!c) {
      c = arena_alloc(l->a, sizeof *c);
      *c = (Packed){l->packed, B.buf, add_scratch(l->p, n, bbatch * pack), bbatch, K, N, B.rs, B.cs};
      l->packed = c;
      Kernel *pk = kernel_new(l, n);
      pk->name = arena_printf(l->a, "k%d_pack", n->id);
      pk->opname = "pack";
      gemm_pack(&l->kg, bbatch, N, K, B, c->dst);
      l->p->kernels[l->p->nkernels++] = pk;
    }
    B.buf = c->dst;
  }
  build_on(l, k);
  gemm_lower(&l->kg, batch, M, N, K, A, B, C, pack > 0, epi);
}

/* MATMUL [B?,M,K] @ [B?,K,N] into buffer cb, through epi if any (a [K,N]
 * right operand is shared by every batch). */
static void lower_matmul_into(L *l, const Node *n, int cb, const GemmEpi *epi) {
  const Shape *as = &n->in[0]->shape, *bs = &n->in[1]->shape;
  int64_t M = as->dim[as->rank - 2], K = as->dim[as->rank - 1], N = bs->dim[bs->rank - 1];
  int64_t batch = as->rank == 3 ? as->dim[0] : 1, bbatch = bs->rank == 3 ? batch : 1;
  GemmOperand A = mm_operand(l, n, 0, M, K), B = mm_operand(l, n, 1, K, N);
  GemmOperand C = {cb, M * N, N, 1};
  lower_gemm(l, l->kg.k, n, batch, bbatch, M, N, K, A, B, C, epi);
}

static void lower_matmul(L *l, const Node *n) { lower_matmul_into(l, n, buf_of(l, n), NULL); }

/* SOFTMAX, LOG_SOFTMAX along an axis: max, sum of exp, then write. */
static void lower_softmax(L *l, const Node *n) {
  int64_t O, A, I;
  split_axis(&n->shape, (int)n->a.i[0], &O, &A, &I);
  int xb = buf_of(l, n->in[0]), ob = buf_of(l, n), m, s;
  KExpr *o, *t, *a1, *a2, *a3;
  KStmt **at = &l->kg.k->body;
  at = loop_or_zero(l, &at, &o, O, KL_PARALLEL);
  at = loop_or_zero(l, &at, &t, I, 0);
  KExpr *base = add(l, muli(l, o, A * I), t);
  at = let(l, at, &m, cf(l, -INFINITY));
  KStmt **in = loopv(l, &at, &a1, A, 0);
  set(l, in, m, bin(l, KB_MAX, var(l, m), load(l, xb, add(l, base, muli(l, a1, I)))));
  at = let(l, at, &s, cf(l, 0));
  in = loopv(l, &at, &a2, A, 0);
  KExpr *e = un(l, KU_EXP, bin(l, KB_SUB, load(l, xb, add(l, base, muli(l, a2, I))), var(l, m)));
  set(l, in, s, add(l, var(l, s), e));
  in = loopv(l, &at, &a3, A, I == 1 ? KL_VECTOR : 0);
  KExpr *idx = add(l, base, muli(l, a3, I));
  KExpr *d = bin(l, KB_SUB, load(l, xb, idx), var(l, m)), *v;
  if (n->op == OP_SOFTMAX) v = bin(l, KB_DIV, un(l, KU_EXP, d), var(l, s));
  else v = bin(l, KB_SUB, d, un(l, KU_LOG, var(l, s)));
  store(l, in, ob, idx, v);
  l->kg.k->flops = 4.0 * (double)numel(n);
}

/* Loops over (p, q) of a group after *at, which advances past them. */
static KStmt **pq_loops(L *l, KStmt ***at, KExpr **p, KExpr **q, int64_t P, int64_t Q, int qflags) {
  if (P == 1) {
    *p = ci(l, 0);
    return loopv(l, at, q, Q, qflags);
  }
  KStmt **b = loopv(l, at, p, P, 0);
  return loop_or_zero(l, &b, q, Q, qflags);
}

/* VAR(x, mean): per group (PARALLEL) the mean of (x - mean)^2 in f64.
 * NORMALIZE_BWD(gy, x, mean, var): per group, with r = 1/sqrt(var + eps)
 * and xhat = (x - mean) r, the sums of gy and gy xhat (f64) in one pass,
 * then dx = r (gy - sum(gy)/n - xhat sum(gy xhat)/n) in a second. */
static void lower_norm(L *l, const Node *n) {
  int isvar = n->op == OP_VAR;
  const Node *x = n->in[isvar ? 0 : 1], *mean = n->in[isvar ? 1 : 2];
  int64_t P, G, Q;
  int split = norm_split(&x->shape, (uint64_t)n->a.i[0], &P, &G, &Q);
  NNDC_ASSERT(split == 0 && "sema normalizes over axes around adjacent kept ones only");
  double cnt = (double)P * (double)Q;
  int xb = buf_of(l, x), ob = buf_of(l, n), m, r = -1, s1, s2 = -1, ga, gb;
  KExpr *g, *p, *q;
  KStmt **at = &l->kg.k->body;
  KStmt **grp = loopv(l, &at, &g, G, KL_PARALLEL);
  grp = let(l, grp, &m, load(l, buf_of(l, mean), g));
  if (!isvar)
    grp = let(l, grp, &r, bin(l, KB_DIV, cf(l, 1), un(l, KU_SQRT, add(l, load(l, buf_of(l, n->in[3]), g), cf(l, n->a.f[0])))));
  grp = let(l, grp, &s1, cd(l, 0));
  if (!isvar) grp = let(l, grp, &s2, cd(l, 0));
  KStmt **in = pq_loops(l, &grp, &p, &q, P, Q, 0);
  KExpr *idx = add(l, muli(l, add(l, muli(l, p, G), g), Q), q);
  KExpr *d = bin(l, KB_SUB, load(l, xb, idx), var(l, m));
  if (isvar) {
    KExpr *dd = cast(l, KT_F64, d);
    set(l, in, s1, add(l, var(l, s1), mul(l, dd, dd)));
    store(l, grp, ob, g, cast(l, KT_F32, bin(l, KB_DIV, var(l, s1), cd(l, cnt))));
    l->kg.k->flops = 3.0 * (double)numel(x);
    return;
  }
  KExpr *gy = load(l, buf_of(l, n->in[0]), idx);
  in = set(l, in, s1, add(l, var(l, s1), cast(l, KT_F64, gy)));
  set(l, in, s2, add(l, var(l, s2), cast(l, KT_F64, mul(l, gy, mul(l, d, var(l, r))))));
  grp = let(l, grp, &ga, cast(l, KT_F32, bin(l, KB_DIV, var(l, s1), cd(l, cnt))));
  grp = let(l, grp, &gb, cast(l, KT_F32, bin(l, KB_DIV, var(l, s2), cd(l, cnt))));
  KExpr *p2, *q2;
  in = pq_loops(l, &grp, &p2, &q2, P, Q, KL_VECTOR);
  idx = add(l, muli(l, add(l, muli(l, p2, G), g), Q), q2);
  KExpr *xh = mul(l, bin(l, KB_SUB, load(l, xb, idx), var(l, m)), var(l, r));
  KExpr *t = bin(l, KB_SUB, bin(l, KB_SUB, load(l, buf_of(l, n->in[0]), idx), var(l, ga)), mul(l, xh, var(l, gb)));
  store(l, in, ob, idx, mul(l, var(l, r), t));
  l->kg.k->flops = 10.0 * (double)numel(x);
}

/* splitmix64's finalizer (rng_mix in runtime.h) in kernel IR. */
static KExpr *mix(L *l, KExpr *z) {
  z = addi(l, z, (int64_t)0x9E3779B97F4A7C15ull);
  z = muli(l, bin(l, KB_XOR, z, bin(l, KB_SHR, z, ci(l, 30))), (int64_t)0xBF58476D1CE4E5B9ull);
  z = muli(l, bin(l, KB_XOR, z, bin(l, KB_SHR, z, ci(l, 27))), (int64_t)0x94D049BB133111EBull);
  return bin(l, KB_XOR, z, bin(l, KB_SHR, z, ci(l, 31)));
}

/* EMBEDDING: table [V, D], ids [P...] -> y [P..., D]: rows copied, positions
 * in parallel; an id outside [0, V) stops the run (the read is clamped). */
static void lower_embedding(L *l, const Node *n) {
  int64_t V = n->in[0]->shape.dim[0], D = n->in[0]->shape.dim[1], P = shape_numel(&n->in[1]->shape);
  int id;
  KExpr *p, *d;
  KStmt **at = &l->kg.k->body;
  KStmt **row = loopv(l, &at, &p, P, KL_PARALLEL);
  row = let(l, row, &id, load(l, buf_of(l, n->in[1]), p));
  KStmt **err = if_(l, &row, bin(l, KB_OR, bin(l, KB_LT, var(l, id), ci(l, 0)), bin(l, KB_GE, var(l, id), ci(l, V))));
  kg_error(&l->kg, err, var(l, id));
  KStmt **col = loopv(l, &row, &d, D, KL_VECTOR);
  store(l, col, buf_of(l, n), add(l, muli(l, p, D), d),
        load(l, buf_of(l, n->in[0]), add(l, muli(l, clampi(l, var(l, id), V), D), d)));
  l->kg.k->errfmt = "embedding: id %lld out of range [0, %lld)";
  l->kg.k->errarg = V;
}

/* EMBEDDING_BWD: dy [P..., D], ids [P...] -> dtable [V, D]: blocks of
 * EMB_COLS columns in parallel, each zeroed row by row and then summed
 * over the positions in order (rows of the block contiguous), so the
 * result does not depend on the threads (ids outside [0, V) add nothing:
 * the forward pass has stopped on them). */
enum { EMB_COLS = 64 };

static void lower_embedding_bwd(L *l, const Node *n) {
  int64_t V = n->shape.dim[0], D = n->shape.dim[1], P = shape_numel(&n->in[1]->shape);
  int64_t B = EMB_COLS, nblk = (D + B - 1) / B;
  int id;
  KExpr *c, *d, *v, *p;
  int ob = buf_of(l, n);
  KStmt **at = &l->kg.k->body;
  KStmt **blk = loopv(l, &at, &c, nblk, KL_PARALLEL);
  KExpr *d0 = muli(l, c, B), *d1 = bin(l, KB_MIN, addi(l, d0, B), ci(l, D));
  KStmt **z = loopv(l, &blk, &v, V, 0);
  z = kg_loop(&l->kg, &z, &d, d0, d1, 1, KL_VECTOR);
  store(l, z, ob, add(l, muli(l, v, D), d), cf(l, 0));
  KStmt **pos = loopv(l, &blk, &p, P, 0);
  pos = let(l, pos, &id, load(l, buf_of(l, n->in[1]), p));
  KStmt **in = if_(l, &pos, bin(l, KB_AND, bin(l, KB_GE, var(l, id), ci(l, 0)), bin(l, KB_LT, var(l, id), ci(l, V))));
  in = kg_loop(&l->kg, &in, &d, d0, d1, 1, KL_VECTOR);
  KExpr *o = add(l, muli(l, var(l, id), D), d);
  store(l, in, ob, o, add(l, load(l, ob, o), load(l, buf_of(l, n->in[0]), add(l, muli(l, p, D), d))));
  l->kg.k->flops = (double)P * (double)D;
}

/* TRIL: x [..., H, W] -> y: y[i] = (i % W) - (i / W % H) <= k ? x[i] : fill. */
static void lower_tril(L *l, const Node *n) {
  int64_t H = n->shape.dim[n->shape.rank - 2], W = n->shape.dim[n->shape.rank - 1];
  KExpr *i;
  KStmt **at = &l->kg.k->body;
  at = loop_or_zero(l, &at, &i, numel(n), KL_PARALLEL | KL_VECTOR);
  KExpr *c = bin(l, KB_REM, i, ci(l, W)), *r = bin(l, KB_REM, bin(l, KB_DIV, i, ci(l, W)), ci(l, H));
  KExpr *keep = bin(l, KB_LE, bin(l, KB_SUB, c, r), ci(l, n->a.i[0]));
  store(l, at, buf_of(l, n), i, sel(l, keep, load(l, buf_of(l, n->in[0]), i), cf(l, n->a.f[0])));
}

/* Element i of noise or dropout node n as drawn: part * numel(n) + i, so a
 * process's slice of a data-parallel batch draws what one process with the
 * whole batch would (RunCtx.part). */
static KExpr *global_elem(L *l, const Node *n, KExpr *i) {
  return add(l, i, muli(l, ctxv(l, KCTX_PART), numel(n)));
}

/* RAND, RANDN: element i of noise node `key` at the step in the run
 * context: u = (rng_bits(seed, rng_noise_stream(key, step), i) >> 40 +
 * 1/2) / 2^24 in (0, 1); RAND gives rng_uniform's draw (top 24 bits /
 * 2^24, in [0, 1)), RANDN
 * sqrt(2) erfinv(2u - 1) (rng_normal_of in ir/support/support.h, the same
 * float formula: the engines agree to the rounding of log and sqrt). */
static void lower_noise(L *l, const Node *n) {
  KExpr *i;
  KStmt **at = &l->kg.k->body;
  at = loop_or_zero(l, &at, &i, numel(n), n->shape.rank ? KL_PARALLEL | KL_VECTOR : 0);
  KExpr *stream = bin(l, KB_XOR, mix(l, bin(l, KB_XOR, ci(l, n->a.i[0] * (int64_t)0x100000001B3ull), ctxv(l, KCTX_STEP))),
                      ci(l, 0xA015E));
  KExpr *bits = mix(l, add(l, mix(l, bin(l, KB_XOR, ctxv(l, KCTX_SEED), mix(l, stream))), global_elem(l, n, i)));
  KExpr *top = cast(l, KT_F32, bin(l, KB_SHR, bits, ci(l, 40)));
  if (n->op == OP_RAND) {
    store(l, at, buf_of(l, n), i, mul(l, top, cf(l, 1.0 / 16777216.0)));
    return;
  }
  /* x = 2u - 1 as an odd integer over 2^24, exact (rng_normal_of) */
  KExpr *odd = addi(l, muli(l, bin(l, KB_SHR, bits, ci(l, 40)), 2), 1 - 16777216);
  KExpr *x = mul(l, cast(l, KT_F32, odd), cf(l, 1.0 / 16777216.0));
  KExpr *w = un(l, KU_NEG, un(l, KU_LOG, mul(l, bin(l, KB_SUB, cf(l, 1), x), add(l, cf(l, 1), x))));
  static const double lo[] = {2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                              -0.00125372503, -0.00417768164, 0.246640727, 1.50140941};
  static const double hi[] = {-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                              -0.0076224613, 0.00943887047, 1.00167406, 2.83297682};
  KExpr *wl = bin(l, KB_SUB, w, cf(l, 2.5)), *wh = bin(l, KB_SUB, un(l, KU_SQRT, w), cf(l, 3));
  KExpr *pl = cf(l, lo[0]), *ph = cf(l, hi[0]);
  for (int k = 1; k < 9; k++) pl = add(l, cf(l, lo[k]), mul(l, pl, wl)), ph = add(l, cf(l, hi[k]), mul(l, ph, wh));
  KExpr *p = sel(l, bin(l, KB_LT, w, cf(l, 5)), pl, ph);
  store(l, at, buf_of(l, n), i, mul(l, mul(l, p, x), cf(l, 1.41421356237309504880)));
}

static void lower_dropout(L *l, const Node *n) {
  float p = (float)n->a.f[0];
  int64_t key = n->a.i[0];
  KExpr *i;
  KStmt **at = &l->kg.k->body;
  at = loop_or_zero(l, &at, &i, numel(n), n->shape.rank ? KL_PARALLEL | KL_VECTOR : 0);
  KExpr *stream = bin(l, KB_XOR, mix(l, bin(l, KB_XOR, ci(l, key * (int64_t)0x100000001B3ull), ctxv(l, KCTX_STEP))),
                      ci(l, 0xD50));
  KExpr *bits = mix(l, add(l, mix(l, bin(l, KB_XOR, ctxv(l, KCTX_SEED), mix(l, stream))), global_elem(l, n, i)));
  KExpr *u = mul(l, cast(l, KT_F32, bin(l, KB_SHR, bits, ci(l, 40))), cf(l, 1.0 / 16777216.0));
  KExpr *x = load(l, buf_of(l, n->in[0]), i);
  KExpr *scaled = cast(l, KT_F32, bin(l, KB_DIV, cast(l, KT_F64, x), cd(l, 1.0 - n->a.f[0])));
  KExpr *kept = sel(l, bin(l, KB_GE, u, cf(l, p)), scaled, cf(l, 0));
  store(l, at, buf_of(l, n), i, sel(l, bin(l, KB_NE, ctxv(l, KCTX_TRAINING), ci(l, 0)), kept, x));
}

/* ONE_HOT: out[n, c] = labels[n] == c. */
static void lower_one_hot(L *l, const Node *n) {
  int64_t C = n->shape.dim[n->shape.rank - 1], N = numel(n->in[0]);
  KExpr *r, *c;
  KStmt **at = &l->kg.k->body;
  at = loop_or_zero(l, &at, &r, N, KL_PARALLEL);
  at = loop_or_zero(l, &at, &c, C, KL_VECTOR);
  KExpr *y = load(l, buf_of(l, n->in[0]), r);
  store(l, at, buf_of(l, n), add(l, muli(l, r, C), c), f01(l, bin(l, KB_EQ, y, c)));
}

/* The label y of row r (an i64 local, checked: an error names it) and the
 * row's max m and sum s of exp(x - m) as f32 locals, appended at *at. */
static void ce_row(L *l, KStmt ***at, int xb, int lb, KExpr *r, int64_t C, int *y, int *m, int *s) {
  KExpr *a1, *a2;
  *at = let(l, *at, y, load(l, lb, r));
  KStmt **err = if_(l, at, bin(l, KB_OR, bin(l, KB_LT, var(l, *y), ci(l, 0)), bin(l, KB_GE, var(l, *y), ci(l, C))));
  kg_error(&l->kg, err, var(l, *y));
  KExpr *base = muli(l, r, C);
  *at = let(l, *at, m, cf(l, -INFINITY));
  KStmt **in = loopv(l, at, &a1, C, 0);
  set(l, in, *m, bin(l, KB_MAX, var(l, *m), load(l, xb, add(l, base, a1))));
  *at = let(l, *at, s, cf(l, 0));
  in = loopv(l, at, &a2, C, 0);
  set(l, in, *s, add(l, var(l, *s), un(l, KU_EXP, bin(l, KB_SUB, load(l, xb, add(l, base, a2)), var(l, *m)))));
}


/* CROSS_ENTROPY: mean over rows of logsumexp(x[n]) - x[n, y[n]], as
 * PyTorch's log_softmax rounds it: log(s) - (x[n, y] - m) with m the row's
 * max and s the sum of exp(x - m) (both terms >= 0, so a confident row's
 * small loss is not cancelled against m); a label outside [0, C) is a
 * run-time error.  A kernel of rows in parallel writes each row's loss to
 * scratch; the node's kernel sums them in order (in f64), so the result
 * does not depend on the threads. */
static void lower_cross_entropy(L *l, const Node *n) {
  int64_t N = n->in[0]->shape.dim[0], C = n->in[0]->shape.dim[1];
  int xb = buf_of(l, n->in[0]), rows = add_scratch(l->p, n, N), tot, m, s, y;
  Kernel *k = l->kg.k, *rk = kernel_new(l, n);
  rk->name = arena_printf(l->a, "k%d_cross_entropy_rows", n->id);
  rk->opname = "cross_entropy_rows";
  KExpr *r, *r2;
  KStmt **at = &rk->body;
  KStmt **row = loopv(l, &at, &r, N, KL_PARALLEL);
  ce_row(l, &row, xb, buf_of(l, n->in[1]), r, C, &y, &m, &s);
  KExpr *xy = load(l, xb, add(l, muli(l, r, C), clampi(l, var(l, y), C)));
  store(l, row, rows, r, bin(l, KB_SUB, un(l, KU_LOG, var(l, s)), bin(l, KB_SUB, xy, var(l, m))));
  rk->errfmt = "label %lld out of range [0, %lld)";
  rk->errarg = C;
  rk->flops = 4.0 * (double)N * (double)C;
  l->p->kernels[l->p->nkernels++] = rk;
  build_on(l, k);
  at = &k->body;
  at = let(l, at, &tot, cd(l, 0));
  KStmt **sum = loopv(l, &at, &r2, N, 0);
  set(l, sum, tot, add(l, var(l, tot), cast(l, KT_F64, load(l, rows, r2))));
  store(l, at, buf_of(l, n), ci(l, 0), bin(l, KB_DIV, var(l, tot), cd(l, (double)N)));
  k->flops = (double)N;
}

/* CE_BWD: rows in parallel, each (exp(x - m) / s - [col == y]) dy / N. */
static void lower_ce_bwd(L *l, const Node *n) {
  int64_t N = n->shape.dim[0], C = n->shape.dim[1];
  int xb = buf_of(l, n->in[0]), m, s, y, sc;
  KExpr *r, *a;
  KStmt **at = &l->kg.k->body;
  KStmt **row = loopv(l, &at, &r, N, KL_PARALLEL);
  ce_row(l, &row, xb, buf_of(l, n->in[1]), r, C, &y, &m, &s);
  row = let(l, row, &sc, bin(l, KB_DIV, load(l, buf_of(l, n->in[2]), ci(l, 0)), cf(l, (double)N)));
  KStmt **in = loopv(l, &row, &a, C, KL_VECTOR);
  KExpr *idx = add(l, muli(l, r, C), a);
  KExpr *p = bin(l, KB_DIV, un(l, KU_EXP, bin(l, KB_SUB, load(l, xb, idx), var(l, m))), var(l, s));
  KExpr *t = sel(l, bin(l, KB_EQ, a, var(l, y)), cf(l, 1), cf(l, 0));
  store(l, in, buf_of(l, n), idx, mul(l, bin(l, KB_SUB, p, t), var(l, sc)));
  l->kg.k->errfmt = "label %lld out of range [0, %lld)";
  l->kg.k->errarg = C;
  l->kg.k->flops = 6.0 * (double)N * (double)C;
}

/* MSE, BCE_LOGITS: mean over equal-shaped operands. */
static void lower_loss(L *l, const Node *n) {
  int64_t N = numel(n->in[0]);
  int acc;
  KExpr *i;
  KStmt **at = &l->kg.k->body;
  at = let(l, at, &acc, cd(l, 0));
  KStmt **in = loopv(l, &at, &i, N, 0);
  KExpr *a = load(l, buf_of(l, n->in[0]), i), *b = load(l, buf_of(l, n->in[1]), i), *v;
  if (n->op == OP_MSE) {
    KExpr *d = bin(l, KB_SUB, a, b);
    v = mul(l, d, d);
  } else {
    /* PyTorch's (1 - t) z + max(-z, 0) + log(exp(-max(-z, 0)) + exp(-z - max(-z, 0))),
     * the log's argument being 1 + exp(-|z|); z - z t would cancel for t near 1 */
    KExpr *z = cf(l, 0), *one = cf(l, 1);
    KExpr *lg = un(l, KU_LOG, add(l, one, un(l, KU_EXP, un(l, KU_NEG, un(l, KU_ABS, a)))));
    KExpr *lin = add(l, mul(l, bin(l, KB_SUB, one, b), a), bin(l, KB_MAX, un(l, KU_NEG, a), z));
    v = add(l, lin, lg);
  }
  set(l, in, acc, add(l, var(l, acc), cast(l, KT_F64, v)));
  store(l, at, buf_of(l, n), ci(l, 0), bin(l, KB_DIV, var(l, acc), cd(l, (double)N)));
  l->kg.k->flops = 3.0 * (double)N;
}

/* CONV2D(x, w), CONV2D_BWD_X(dy, w), CONV2D_BWD_W(x, dy) as products on
 * the GEMM micro-kernel (conv.c lays the operands out), with CKK = C*KH*KW
 * and P = OH*OW:
 *   CONV2D:       col [N, CKK, P] = im2col(x); y[n] [O, P] = w [O, CKK] @ col[n]
 *   CONV2D_BWD_X: dcol[n] [CKK, P] = w^T @ dy[n] [O, P]; dx = col2im(dcol)
 *   CONV2D_BWD_W: col [N*P, CKK] = im2row(x); dyr [N*P, O] = rows of dy;
 *                 dw [O, CKK] = dyr^T @ col (summed over n then p in order)
 * Grouped convolutions (depthwise ones included) run as conv.c's direct
 * kernels, which sum only a group's channels. */
static void lower_conv(L *l, const Node *n) {
  const Shape *xs, *ws, *ys;
  if (n->op == OP_CONV2D) xs = &n->in[0]->shape, ws = &n->in[1]->shape, ys = &n->shape;
  else if (n->op == OP_CONV2D_BWD_X) xs = &n->shape, ws = &n->in[1]->shape, ys = &n->in[0]->shape;
  else xs = &n->in[0]->shape, ws = &n->shape, ys = &n->in[1]->shape;
  int64_t N = xs->dim[0], C = xs->dim[1], O = ws->dim[0], CKK = C * ws->dim[2] * ws->dim[3];
  int64_t P = ys->dim[2] * ys->dim[3];
  ConvGeom cg = conv_geom(n);
  Kernel *k = l->kg.k;
  if (N * C * O * P == 0 || CKK == 0 || cg.g != 1) {  /* empty or grouped: the direct kernels */
    conv_lower(&l->kg, n, buf_of(l, n), buf_of(l, n->in[0]), buf_of(l, n->in[1]));
    return;
  }
  const char *name = op_info[n->op].name;
  Kernel *pre = kernel_new(l, n);  /* im2col or rows of dy, before the product */
  if (n->op == OP_CONV2D) {
    int col = add_scratch(l->p, n, N * CKK * P);
    pre->name = arena_printf(l->a, "k%d_im2col", n->id);
    pre->opname = "im2col";
    conv_im2col(&l->kg, xs, ws, ys, &cg, buf_of(l, n->in[0]), col, CKK * P, P, 1);
    l->p->kernels[l->p->nkernels++] = pre;
    GemmOperand A = {buf_of(l, n->in[1]), 0, CKK, 1}, B = {col, CKK * P, P, 1}, Y = {buf_of(l, n), O * P, P, 1};
    lower_gemm(l, k, n, N, N, O, P, CKK, A, B, Y, NULL);
  } else if (n->op == OP_CONV2D_BWD_X) {
    /* the product is a kernel of its own; k (appended last) sums dcol into dx */
    int dcol = add_scratch(l->p, n, N * CKK * P);
    pre->name = arena_printf(l->a, "k%d_%s_gemm", n->id, name);
    pre->opname = "conv2d_bwd_x_gemm";
    GemmOperand A = {buf_of(l, n->in[1]), 0, 1, CKK}, B = {buf_of(l, n->in[0]), O * P, P, 1}, D = {dcol, CKK * P, P, 1};
    lower_gemm(l, pre, n, N, N, CKK, P, O, A, B, D, NULL);
    l->p->kernels[l->p->nkernels++] = pre;
    build_on(l, k);
    conv_col2im(&l->kg, xs, ws, ys, &cg, dcol, buf_of(l, n));
  } else {
    int col = add_scratch(l->p, n, N * P * CKK), rows = add_scratch(l->p, n, N * P * O);
    pre->name = arena_printf(l->a, "k%d_im2row", n->id);
    pre->opname = "im2row";
    conv_im2row(&l->kg, xs, ws, ys, &cg, buf_of(l, n->in[0]), col);
    l->p->kernels[l->p->nkernels++] = pre;
    Kernel *rk = kernel_new(l, n);
    rk->name = arena_printf(l->a, "k%d_rows", n->id);
    rk->opname = "rows";
    conv_rows(&l->kg, ys, buf_of(l, n->in[1]), rows);
    l->p->kernels[l->p->nkernels++] = rk;
    /* dw [O, CKK] = dyr^T @ col (C must be contiguous for the vectorizer) */
    GemmOperand A = {rows, 0, 1, O}, B = {col, 0, CKK, 1}, W = {buf_of(l, n), 0, CKK, 1};
    lower_gemm(l, k, n, 1, 1, O, CKK, N * P, A, B, W, NULL);
  }
}

/* MAXPOOL2D, AVGPOOL2D: window max or mean, no padding. */
static void lower_pool(L *l, const Node *n) {
  const Shape *xs = &n->in[0]->shape, *os = &n->shape;
  int64_t K = n->a.i[0], S = n->a.i[1];
  int ismax = n->op == OP_MAXPOOL2D, acc;
  KExpr *r, *oh, *ow, *kh, *kw;
  KStmt **at = &l->kg.k->body;
  at = loop_or_zero(l, &at, &r, os->dim[0] * os->dim[1], KL_PARALLEL);
  at = loop_or_zero(l, &at, &oh, os->dim[2], 0);
  at = loop_or_zero(l, &at, &ow, os->dim[3], KL_VECTOR);
  KStmt **in = let(l, at, &acc, cf(l, ismax ? -INFINITY : 0));
  KStmt **body = loopv(l, &in, &kh, K, 0);
  body = loop_or_zero(l, &body, &kw, K, 0);
  KExpr *xi = add(l, muli(l, r, xs->dim[2] * xs->dim[3]),
                  add(l, muli(l, add(l, muli(l, oh, S), kh), xs->dim[3]), add(l, muli(l, ow, S), kw)));
  KExpr *x = load(l, buf_of(l, n->in[0]), xi);
  set(l, body, acc, ismax ? bin(l, KB_MAX, var(l, acc), x) : add(l, var(l, acc), x));
  KExpr *res = ismax ? var(l, acc) : bin(l, KB_DIV, var(l, acc), cf(l, (double)(K * K)));
  store(l, in, buf_of(l, n), add(l, muli(l, r, os->dim[2] * os->dim[3]), add(l, muli(l, oh, os->dim[3]), ow)), res);
  l->kg.k->flops = (double)numel(n) * (double)(K * K);
}

/* MAXPOOL2D_BWD(x, dy), AVGPOOL2D_BWD(dy): per (n, c) plane (planes run in
 * parallel, so the scatter has no conflicts): zero the plane, then add each
 * dy to the window's first maximum, or dy/(K*K) to every window element. */
static void lower_pool_bwd(L *l, const Node *n) {
  int ismax = n->op == OP_MAXPOOL2D_BWD;
  const Node *dy = n->in[ismax ? 1 : 0];
  const Shape *xs = &n->shape, *ys = &dy->shape;
  int64_t K = n->a.i[0], S = n->a.i[1], HW = xs->dim[2] * xs->dim[3], W = xs->dim[3];
  int ob = buf_of(l, n), yb = buf_of(l, dy);
  KExpr *r, *z, *oh, *ow, *kh, *kw;
  KStmt **at = &l->kg.k->body;
  at = loop_or_zero(l, &at, &r, xs->dim[0] * xs->dim[1], KL_PARALLEL);
  KExpr *plane = muli(l, r, HW);
  KStmt **zl = loopv(l, &at, &z, HW, KL_VECTOR);
  store(l, zl, ob, add(l, plane, z), cf(l, 0));
  at = loop_or_zero(l, &at, &oh, ys->dim[2], 0);
  at = loop_or_zero(l, &at, &ow, ys->dim[3], 0);
  KExpr *g = load(l, yb, add(l, muli(l, r, ys->dim[2] * ys->dim[3]), add(l, muli(l, oh, ys->dim[3]), ow)));
  if (!ismax) {
    KStmt **body = loopv(l, &at, &kh, K, 0);
    body = loop_or_zero(l, &body, &kw, K, 0);
    KExpr *i = add(l, plane, add(l, muli(l, add(l, muli(l, oh, S), kh), W), add(l, muli(l, ow, S), kw)));
    store(l, body, ob, i, add(l, load(l, ob, i), bin(l, KB_DIV, g, cf(l, (double)(K * K)))));
    return;
  }
  int best, bi, c;
  at = let(l, at, &best, cf(l, -INFINITY));
  at = let(l, at, &bi, ci(l, -1));
  KStmt **body = loopv(l, &at, &kh, K, 0);
  body = loop_or_zero(l, &body, &kw, K, 0);
  KExpr *i = add(l, muli(l, add(l, muli(l, oh, S), kh), W), add(l, muli(l, ow, S), kw));
  KExpr *x = load(l, buf_of(l, n->in[0]), add(l, plane, i));
  body = let(l, body, &c, bin(l, KB_OR, bin(l, KB_GT, x, var(l, best)), bin(l, KB_LT, var(l, bi), ci(l, 0))));
  body = set(l, body, bi, sel(l, var(l, c), i, var(l, bi)));
  set(l, body, best, sel(l, var(l, c), x, var(l, best)));
  KExpr *oi = add(l, plane, var(l, bi));
  store(l, at, ob, oi, add(l, load(l, ob, oi), g));
}

/* OPT_*: torch.optim update rules, elementwise over the param; p and the
 * state buffers are written in place.  The hyperparameters (every f attr of
 * the update: lr, momentum, betas, eps, weight_decay...) are run-time values,
 * one slot group per update node (KProgram.hyper, read from ctx as f64):
 * another value reuses the program.  Zero versus nonzero momentum and
 * weight_decay, nesterov, AdamW and the rule are the code's structure.  The
 * f32 scalars are rounded from f64 expressions of the slots, as the
 * interpreter rounds them from the attrs, and step-dependent ones (Adam's
 * bias corrections) come from ctx[KCTX_STEP]; all are computed once per
 * chunk, before its element loop.  Every update of a program with the same
 * rule and compiled hyperparameters runs in one kernel
 * (lower_update_group): the params' elements in chunks of UPDATE_CHUNK, the
 * chunks of all params one PARALLEL range. */
enum { UPDATE_CHUNK = 4096 };

enum { MAX_USCALAR = 8 };
static void update_scalars(L *l, const Node *n, KStmt ***at, int *sc);
static void update_elem(L *l, const Node *n, KStmt **at, KExpr *i, const int *sc);

/* for (v = lo; v < hi; v++) with expression bounds; returns the body slot. */
static KStmt **loop_range(L *l, KStmt ***at, KExpr **ve, KExpr *lo, KExpr *hi, int flags) {
  return kg_loop(&l->kg, at, ve, lo, hi, 1, flags);
}

static void lower_update_group(L *l, const Node *const *ns, int cnt) {
  KStmt **at = &l->kg.k->body;
  int64_t par = 0;
  for (int k = 0; k < cnt; k++) par += (numel(ns[k]->in[0]) + UPDATE_CHUNK - 1) / UPDATE_CHUNK;
  int64_t c0 = 0;
  for (int k = 0; k < cnt; k++) {
    int64_t ne = numel(ns[k]->in[0]), nc = (ne + UPDATE_CHUNK - 1) / UPDATE_CHUNK;
    if (nc == 0) continue;
    int tv, sc[MAX_USCALAR];
    KStmt **body = loop(l, &at, &tv, par, KL_PARALLEL);
    KExpr *t = var(l, tv);
    body = if_(l, &body, bin(l, KB_AND, bin(l, KB_GE, t, ci(l, c0)), bin(l, KB_LT, t, ci(l, c0 + nc))));
    update_scalars(l, ns[k], &body, sc);
    KExpr *lo = muli(l, bin(l, KB_SUB, t, ci(l, c0)), UPDATE_CHUNK);
    KExpr *hi = bin(l, KB_MIN, addi(l, lo, UPDATE_CHUNK), ci(l, ne)), *i;
    body = loop_range(l, &body, &i, lo, hi, KL_VECTOR);
    update_elem(l, ns[k], body, i, sc);
    c0 += nc;
  }
  l->kg.k->flops = 0;
  for (int k = 0; k < cnt; k++) l->kg.k->flops += 8.0 * (double)numel(ns[k]->in[0]);
}

/* One update as a kernel of its own (lower_fn's entry; lower_program
 * groups updates through lower_update_group). */
static void lower_update(L *l, const Node *n) { lower_update_group(l, &n, 1); }

/* The first hyperparameter slot of update n: its f attrs in ops.def order. */
static int hyper_base(L *l, const Node *n) {
  if (l->hbase[n->id] >= 0) return l->hbase[n->id];
  KProgram *p = l->p;
  int base = p->nhyper;
  for (int k = 0; k < 6; k++) {
    char name[32];
    if (op_attr_name(n->op, k, name, sizeof name)) break;
    HyperSlot *h = &p->hyper[p->nhyper++];
    *h = (HyperSlot){n, n->id, k, arena_printf(l->a, "%s", name), n->a.f[k], 0};
    h->structural = !strcmp(name, "momentum") || !strcmp(name, "weight_decay");
  }
  return l->hbase[n->id] = base;
}

/* f64 hyperparameter f[k] of update n. */
static KExpr *hyp(L *l, const Node *n, int k) { return kg_hyper(&l->kg, hyper_base(l, n) + k); }

/* A local f32 rounded from the f64 expression e. */
static KStmt **let_f32(L *l, KStmt **at, int *v, KExpr *e) { return let(l, at, v, cast(l, KT_F32, e)); }

/* 1 - e in f64. */
static KExpr *one_minus(L *l, KExpr *e) { return bin(l, KB_SUB, cd(l, 1), e); }

/* The f32 scalars of update n's rule into locals sc[] (update_elem's names
 * below), computed from the hyperparameter slots at *at. */
static void update_scalars(L *l, const Node *n, KStmt ***at, int *sc) {
  KStmt **a = *at;
  switch (n->op) {
  case OP_OPT_SGD:   /* sc: wd, momentum, -lr */
    a = let_f32(l, a, &sc[0], hyp(l, n, 2));
    a = let_f32(l, a, &sc[1], hyp(l, n, 1));
    a = let_f32(l, a, &sc[2], un(l, KU_NEG, hyp(l, n, 0)));
    break;
  case OP_OPT_ADAM: {  /* sc: step size, eps*sqrt(bc2), 1-lr*wd, wd, 1-b1, b1, b2, 1-b2 */
    KExpr *st = ctxv(l, KCTX_STEP);
    KExpr *step = cast(l, KT_F64, sel(l, bin(l, KB_GT, st, ci(l, 0)), st, ci(l, 1)));
    KExpr *bc1 = one_minus(l, bin(l, KB_POW, hyp(l, n, 1), step));
    KExpr *bc2 = one_minus(l, bin(l, KB_POW, hyp(l, n, 2), step));
    /* torch's p - lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) with one division:
     * p - (lr/bc1 * sqrt(bc2)) * m / (sqrt(v) + eps * sqrt(bc2)) (rounds
     * differently from the interpreter by an ulp or so) */
    int sb2;
    a = let(l, a, &sb2, un(l, KU_SQRT, bc2));
    a = let_f32(l, a, &sc[0], bin(l, KB_MUL, bin(l, KB_DIV, hyp(l, n, 0), bc1), var(l, sb2)));
    a = let_f32(l, a, &sc[1], bin(l, KB_MUL, hyp(l, n, 3), var(l, sb2)));
    a = let_f32(l, a, &sc[2], one_minus(l, bin(l, KB_MUL, hyp(l, n, 0), hyp(l, n, 4))));
    a = let_f32(l, a, &sc[3], hyp(l, n, 4));
    a = let_f32(l, a, &sc[4], one_minus(l, hyp(l, n, 1)));
    a = let_f32(l, a, &sc[5], hyp(l, n, 1));
    a = let_f32(l, a, &sc[6], hyp(l, n, 2));
    a = let_f32(l, a, &sc[7], one_minus(l, hyp(l, n, 2)));
    break;
  }
  case OP_OPT_RMSPROP:  /* sc: wd, alpha, 1-alpha, eps, momentum, -lr */
    a = let_f32(l, a, &sc[0], hyp(l, n, 4));
    a = let_f32(l, a, &sc[1], hyp(l, n, 1));
    a = let_f32(l, a, &sc[2], one_minus(l, hyp(l, n, 1)));
    a = let_f32(l, a, &sc[3], hyp(l, n, 2));
    a = let_f32(l, a, &sc[4], hyp(l, n, 3));
    a = let_f32(l, a, &sc[5], un(l, KU_NEG, hyp(l, n, 0)));
    break;
  case OP_OPT_ADAGRAD:  /* sc: wd, eps, -lr */
    a = let_f32(l, a, &sc[0], hyp(l, n, 2));
    a = let_f32(l, a, &sc[1], hyp(l, n, 1));
    a = let_f32(l, a, &sc[2], un(l, KU_NEG, hyp(l, n, 0)));
    break;
  default: break;  /* RUNNING_STATS: batch_norm's momentum is the model's, compiled in */
  }
  *at = a;
}

/* The update of element i of n's param (sc: update_scalars). */
static void update_elem(L *l, const Node *n, KStmt **at, KExpr *i, const int *sc) {
  const double *f = n->a.f;   /* the structure: which hyperparameters are zero */
  int pb = buf_of(l, n->in[0]), gb = buf_of(l, n->in[1]);
  int sb = n->nin > 2 ? buf_of(l, n->in[2]) : -1, s2 = n->nin > 3 ? buf_of(l, n->in[3]) : -1;
  int p, g;
  at = let(l, at, &p, load(l, pb, i));
  at = let(l, at, &g, load(l, gb, i));
  KExpr *P = var(l, p);
  switch (n->op) {
  case OP_OPT_SGD: {  /* f: lr momentum weight_decay; i[0] nesterov */
    if (f[2] != 0) at = set(l, at, g, add(l, var(l, g), mul(l, P, var(l, sc[0]))));
    if (f[1] != 0) {
      int b;
      KExpr *first = bin(l, KB_LE, ctxv(l, KCTX_STEP), ci(l, 1));
      at = let(l, at, &b, sel(l, first, var(l, g), add(l, mul(l, load(l, sb, i), var(l, sc[1])), var(l, g))));
      at = store(l, at, sb, i, var(l, b));
      if (n->a.i[0]) at = set(l, at, g, add(l, var(l, g), mul(l, var(l, b), var(l, sc[1]))));
      else at = set(l, at, g, var(l, b));
    }
    store(l, at, pb, i, add(l, P, mul(l, var(l, g), var(l, sc[2]))));
    break;
  }
  case OP_OPT_ADAM: {  /* f: lr beta1 beta2 eps weight_decay; i[0] adamw */
    double wd = f[4];
    if (n->a.i[0] && wd != 0) at = set(l, at, p, mul(l, P, var(l, sc[2])));
    else if (wd != 0) at = set(l, at, g, add(l, var(l, g), mul(l, P, var(l, sc[3]))));
    int m, v;
    KExpr *m0 = load(l, sb, i), *G = var(l, g);
    at = let(l, at, &m, add(l, mul(l, var(l, sc[4]), G), mul(l, m0, var(l, sc[5]))));
    at = let(l, at, &v, add(l, mul(l, load(l, s2, i), var(l, sc[6])), mul(l, mul(l, var(l, sc[7]), G), G)));
    at = store(l, at, sb, i, var(l, m));
    at = store(l, at, s2, i, var(l, v));
    KExpr *den = add(l, un(l, KU_SQRT, var(l, v)), var(l, sc[1]));  /* eps * sqrt(bc2) */
    store(l, at, pb, i, add(l, var(l, p), bin(l, KB_DIV, mul(l, un(l, KU_NEG, var(l, sc[0])), var(l, m)), den)));
    break;
  }
  case OP_OPT_RMSPROP: {  /* f: lr alpha eps momentum weight_decay */
    if (f[4] != 0) at = set(l, at, g, add(l, var(l, g), mul(l, P, var(l, sc[0]))));
    int sq;
    KExpr *G = var(l, g);
    at = let(l, at, &sq, add(l, mul(l, load(l, sb, i), var(l, sc[1])), mul(l, mul(l, var(l, sc[2]), G), G)));
    at = store(l, at, sb, i, var(l, sq));
    KExpr *avg = add(l, un(l, KU_SQRT, var(l, sq)), var(l, sc[3]));
    if (f[3] > 0) {
      int b;
      at = let(l, at, &b, add(l, mul(l, load(l, s2, i), var(l, sc[4])), bin(l, KB_DIV, G, avg)));
      at = store(l, at, s2, i, var(l, b));
      store(l, at, pb, i, add(l, P, mul(l, var(l, b), var(l, sc[5]))));
    } else {
      store(l, at, pb, i, add(l, P, bin(l, KB_DIV, mul(l, var(l, sc[5]), G), avg)));
    }
    break;
  }
  case OP_OPT_ADAGRAD: {  /* f: lr eps weight_decay */
    if (f[2] != 0) at = set(l, at, g, add(l, var(l, g), mul(l, P, var(l, sc[0]))));
    int s;
    KExpr *G = var(l, g);
    at = let(l, at, &s, add(l, load(l, sb, i), mul(l, G, G)));
    at = store(l, at, sb, i, var(l, s));
    KExpr *sd = add(l, un(l, KU_SQRT, var(l, s)), var(l, sc[1]));
    store(l, at, pb, i, add(l, P, bin(l, KB_DIV, mul(l, var(l, sc[2]), G), sd)));
    break;
  }
  case OP_RUNNING_STATS: {  /* f: momentum; i[0] count; p, g: running mean and variance */
    double mom = f[0], c = (double)n->a.i[0];
    KExpr *bm = load(l, buf_of(l, n->in[2]), i), *bv = load(l, buf_of(l, n->in[3]), i);
    at = store(l, at, pb, i, add(l, mul(l, bm, cf(l, mom)), mul(l, P, cf(l, 1 - mom))));
    store(l, at, gb, i, add(l, mul(l, bv, cf(l, mom * c / (c - 1))), mul(l, var(l, g), cf(l, 1 - mom))));
    break;
  }
  default: NNDC_ASSERT(0);
  }
}

/* The reduction (KB_MAX or KB_ADD) of buf[base + t], t < n (n a multiple
 * of 8): eight partial results, combined pairwise. */
static KExpr *block_reduce(L *l, KStmt ***at, int op, int buf, KExpr *base, int64_t n) {
  enum { U = 8 };
  int acc[U];
  KExpr *t, *h[U];
  for (int u = 0; u < U; u++) *at = let(l, *at, &acc[u], load(l, buf, addi(l, base, u)));
  KStmt **body = kg_loop(&l->kg, at, &t, ci(l, U), ci(l, n), U, 0);
  for (int u = 0; u < U; u++)
    body = set(l, body, acc[u], bin(l, op, var(l, acc[u]), load(l, buf, add(l, base, addi(l, t, u)))));
  for (int u = 0; u < U; u++) h[u] = var(l, acc[u]);
  for (int w = U / 2; w >= 1; w /= 2)
    for (int u = 0; u < w; u++) h[u] = bin(l, op, h[u], h[u + w]);
  return h[0];
}

/* ATTN, ATTN_LSE, ATTN_BWD (q [B,Tq,D], k [B,Tk,D], v [B,Tk,Dv]): flash
 * attention.  Each PARALLEL item is one row of the result (a query's for
 * ATTN, ATTN_LSE and dq, a key's for dk and dv) and walks the other axis in
 * blocks of ATTN_BLK.  A block's scores s = scale q.k go to the item's own
 * ATTN_BLK floats of scratch (never the whole score matrix: O(rows), not
 * O(rows x keys)) as vector multiply-adds of the row's elements with the
 * walked operand transposed (a copy made by a kernel before, zero-padded);
 * lanes past the block's end are -inf, so its exps and sums vectorize.
 * ATTN and ATTN_LSE keep the running max m and sum l = sum exp(s - m),
 * rescaling l and (ATTN) the output row by exp(m_old - m) once per block;
 * ATTN divides by l at the end, ATTN_LSE stores m + log l.  ATTN_BWD
 * recomputes p = exp(s - lse) and, but for dv, dp = do_i.v_j beside it
 * (a second block), then dv_j = sum_i p do_i, dk_j = scale sum_i p (dp -
 * delta_i) q_i, dq_i = scale sum_j p (dp - delta_i) k_j.  Causal: only
 * col - row <= k, as loop bounds. */
enum { ATTN_BLK = 32 };

/* A kernel (before n's) copying x [B, R, C] transposed into new scratch
 * [B, C, R + ATTN_BLK], zero past R; returns the scratch buffer. */
static int attn_transposed(L *l, const Node *n, const Node *x) {
  int64_t B = x->shape.dim[0], R = x->shape.dim[1], C = x->shape.dim[2], RP = R + ATTN_BLK;
  Kernel *main = l->kg.k;
  int tb = add_scratch(l->p, n, B * C * RP), xb = buf_of(l, x);
  Kernel *k = kernel_new(l, n);
  k->name = arena_printf(l->a, "k%d_transpose%d", n->id, l->p->nkernels);
  k->opname = "attention_transpose";
  KExpr *bc, *rr;
  KStmt **at = &k->body;
  at = loopv(l, &at, &bc, B * C, KL_PARALLEL);
  at = loopv(l, &at, &rr, RP, KL_VECTOR);
  KExpr *src = add(l, muli(l, add(l, muli(l, bin(l, KB_DIV, bc, ci(l, C)), R), clampi(l, rr, R)), C),
                   bin(l, KB_REM, bc, ci(l, C)));
  store(l, at, tb, add(l, muli(l, bc, RP), rr), sel(l, bin(l, KB_LT, rr, ci(l, R)), load(l, xb, src), cf(l, 0)));
  l->p->kernels[l->p->nkernels++] = k;
  build_on(l, main);
  return tb;
}

/* blk[s + t] = sum over d < n of rowb[ro + d] * tb[(b n + d) W + x0 + t],
 * t < ATTN_BLK: the block's products of one row with the transposed copy
 * tb (row width W) of the walked operand. */
static void attn_block(L *l, KStmt ***at, int sb, KExpr *s, int rowb, KExpr *ro, int tb, KExpr *b, int64_t n, int64_t W,
                       KExpr *x0) {
  KExpr *t, *d;
  KStmt **z = loopv(l, at, &t, ATTN_BLK, KL_VECTOR);
  store(l, z, sb, add(l, s, t), cf(l, 0));
  KStmt **dl = loopv(l, at, &d, n, 0);
  int a;
  dl = let(l, dl, &a, load(l, rowb, add(l, ro, d)));
  KStmt **in = loopv(l, &dl, &t, ATTN_BLK, KL_VECTOR);
  KExpr *si = add(l, s, t);
  store(l, in, sb, si, add(l, load(l, sb, si), mul(l, var(l, a), load(l, tb, add(l, muli(l, add(l, muli(l, b, n), d), W), add(l, x0, t))))));
}

static void lower_attn(L *l, const Node *n) {
  const Node *qn = n->in[0], *kn = n->in[1];
  int64_t B = qn->shape.dim[0], Tq = qn->shape.dim[1], D = qn->shape.dim[2], Tk = kn->shape.dim[1];
  int64_t Dv = n->op == OP_ATTN_LSE ? 0 : n->in[2]->shape.dim[2];
  int which = n->op == OP_ATTN_BWD ? (int)n->a.i[2] : -1, bykey = which == 1 || which == 2;
  int qb = buf_of(l, qn), kb = buf_of(l, kn), vb = Dv ? buf_of(l, n->in[2]) : -1, ob = buf_of(l, n);
  int dob = -1, lseb = -1, deltab = -1;
  if (n->op == OP_ATTN_BWD) dob = buf_of(l, n->in[3]), lseb = buf_of(l, n->in[4]), deltab = buf_of(l, n->in[5]);
  int64_t kd = n->a.i[1], rows = bykey ? Tk : Tq, walk = bykey ? Tq : Tk, W = walk + ATTN_BLK;
  int64_t width = n->op == OP_ATTN_LSE ? 0 : n->shape.dim[2];
  int twice = n->op == OP_ATTN_BWD && which != 2;
  /* the walked operands transposed: k (or q) for the scores, v (or do) for dp */
  int st = attn_transposed(l, n, bykey ? qn : kn), dt = twice ? attn_transposed(l, n, bykey ? n->in[3] : n->in[2]) : -1;
  int sb = add_scratch(l->p, n, B * rows * ATTN_BLK * (twice ? 2 : 1));
  KStmt **at = &l->kg.k->body;
  KExpr *r, *c = NULL, *x0, *t, *u;
  at = loopv(l, &at, &r, B * rows, KL_PARALLEL);
  KExpr *b = bin(l, KB_DIV, r, ci(l, rows)), *row = bin(l, KB_REM, r, ci(l, rows));
  KExpr *lo = ci(l, 0), *hi = ci(l, walk), *orow = muli(l, r, width);
  if (n->a.i[0] && bykey) lo = bin(l, KB_MAX, bin(l, KB_SUB, row, ci(l, kd)), ci(l, 0)); /* i >= j - k */
  if (n->a.i[0] && !bykey) hi = bin(l, KB_MIN, addi(l, row, kd + 1), ci(l, Tk));          /* j <= i + k */
  KExpr *s0 = muli(l, r, ATTN_BLK * (twice ? 2 : 1)), *s1 = addi(l, s0, ATTN_BLK);
  if (width) {
    KStmt **z = loopv(l, &at, &c, width, KL_VECTOR);
    store(l, z, ob, add(l, orow, c), cf(l, 0));
  }
  int m = -1, sum = -1, cnt;
  if (n->op != OP_ATTN_BWD) {
    at = let(l, at, &m, cf(l, -INFINITY));
    at = let(l, at, &sum, cf(l, 0));
  }
  /* one block: x0 its first index along the walked axis, cnt its length */
  KStmt **blk = kg_loop(&l->kg, &at, &x0, lo, hi, ATTN_BLK, 0);
  blk = let(l, blk, &cnt, bin(l, KB_MIN, ci(l, ATTN_BLK), bin(l, KB_SUB, hi, x0)));
  KExpr *rowq = bykey ? NULL : add(l, muli(l, b, Tq), row);   /* the query row (query walks) */
  attn_block(l, &blk, sb, s0, bykey ? kb : qb, muli(l, r, D), st, b, D, W, x0);
  if (twice) attn_block(l, &blk, sb, s1, bykey ? vb : dob, muli(l, bykey ? r : rowq, Dv), dt, b, Dv, W, x0);
  /* the scores scaled (minus lse for key walks: p = exp of it), -inf past cnt */
  KStmt **fin = loopv(l, &blk, &u, ATTN_BLK, KL_VECTOR);
  KExpr *qu = add(l, muli(l, b, Tq), clampi(l, add(l, x0, u), Tq));  /* the query of lane u (key walks) */
  KExpr *sv = mul(l, load(l, sb, add(l, s0, u)), cf(l, n->a.f[0]));
  if (n->op == OP_ATTN_BWD) sv = bin(l, KB_SUB, sv, load(l, lseb, bykey ? qu : rowq));
  KExpr *live = bin(l, KB_LT, u, var(l, cnt));
  if (n->op == OP_ATTN_BWD) {
    /* p (dv) or p (dp - delta) scale (dq, dk), 0 past cnt */
    KExpr *p = un(l, KU_EXP, sv);
    if (twice)
      p = mul(l, mul(l, p, bin(l, KB_SUB, load(l, sb, add(l, s1, u)), load(l, deltab, bykey ? qu : rowq))), cf(l, n->a.f[0]));
    store(l, fin, sb, add(l, s0, u), sel(l, live, p, cf(l, 0)));
  }
  else {
    store(l, fin, sb, add(l, s0, u), sel(l, live, sv, cf(l, -INFINITY)));
    int mn, corr;
    blk = let(l, blk, &mn, bin(l, KB_MAX, var(l, m), block_reduce(l, &blk, KB_MAX, sb, s0, ATTN_BLK)));
    blk = let(l, blk, &corr, un(l, KU_EXP, bin(l, KB_SUB, var(l, m), var(l, mn))));
    KStmt **e = loopv(l, &blk, &u, ATTN_BLK, KL_VECTOR);
    store(l, e, sb, add(l, s0, u), un(l, KU_EXP, bin(l, KB_SUB, load(l, sb, add(l, s0, u)), var(l, mn))));
    blk = set(l, blk, sum, add(l, mul(l, var(l, sum), var(l, corr)), block_reduce(l, &blk, KB_ADD, sb, s0, ATTN_BLK)));
    blk = set(l, blk, m, var(l, mn));
    if (n->op == OP_ATTN_LSE) {
      store(l, at, ob, r, add(l, var(l, m), un(l, KU_LOG, var(l, sum))));
      l->kg.k->flops = (double)B * Tq * Tk * (2.0 * D + 6);
      return;
    }
    KStmt **rs = loopv(l, &blk, &c, Dv, KL_VECTOR);
    store(l, rs, ob, add(l, orow, c), mul(l, load(l, ob, add(l, orow, c)), var(l, corr)));
    int inv;
    at = let(l, at, &inv, bin(l, KB_DIV, cf(l, 1), var(l, sum)));
    KStmt **cv = loopv(l, &at, &c, Dv, KL_VECTOR);
    store(l, cv, ob, add(l, orow, c), mul(l, load(l, ob, add(l, orow, c)), var(l, inv)));
  }
  /* the block's rows of v, do, q or k, weighted, into the result's row */
  int w;
  KStmt **ax = loop_range(l, &blk, &t, ci(l, 0), var(l, cnt), 0);
  ax = let(l, ax, &w, load(l, sb, add(l, s0, t)));
  KExpr *ti = add(l, muli(l, b, walk), add(l, x0, t));
  int src = n->op == OP_ATTN ? vb : which == 2 ? dob : which == 1 ? qb : kb;
  KStmt **cv = loopv(l, &ax, &c, width, KL_VECTOR);
  KExpr *oi = add(l, orow, c);
  store(l, cv, ob, oi, add(l, load(l, ob, oi), mul(l, var(l, w), load(l, src, add(l, muli(l, ti, width), c)))));
  l->kg.k->flops = (double)B * Tq * Tk * (2.0 * D + 2.0 * width + (twice ? 2.0 * Dv : 0) + 8);
}

#define lower_none NULL  /* no kernel: leaves, RESHAPE (an alias) */

/* How each op is lowered: ops.def's lower column names lower_<lower>. */
typedef void (*LowerFn)(L *, const Node *);
static const LowerFn lower_fn[OP_COUNT] = {
#define OP(e, name, nin, flags, shape, kernel, vjp, lower, ...) [OP_##e] = lower_##lower,
#include "ir/ops.def"
};

/* ---------------------------------------------------------------- program */

static int add_buf(KProgram *p, KBufKind kind, const Node *n) {
  KBuffer *b = &p->bufs[p->nbufs];
  b->kind = kind;
  b->dt = n->dt;
  b->numel = numel(n);
  b->node = n;
  if (kind != KB_LEAF) {
    b->offset = p->arena_bytes;
    p->arena_bytes += ((size_t)b->numel * 4 + 63) & ~(size_t)63;
  }
  return p->nbufs++;
}

/* Updates of the same rule with the same hyperparameters (one kernel). */
static int same_update(const Node *m, const Node *n) {
  return (op_info[m->op].flags & F_UPDATE) && m->op == n->op && m->nin == n->nin &&
         !memcmp(m->a.f, n->a.f, sizeof n->a.f) && !memcmp(m->a.i, n->a.i, sizeof n->a.i);
}

/* need[id] = 1 for every node the roots depend on. */
static uint8_t *mark_needed(Arena *a, const Graph *g, Node *const *roots, int nroots) {
  uint8_t *need = arena_alloc(a, (size_t)g->nnodes + 1);
  for (int r = 0; r < nroots; r++) need[roots[r]->id] = 1;
  for (int i = g->nnodes - 1; i >= 0; i--) {
    const Node *n = g->nodes[i];
    if (!need[i]) continue;
    for (int j = 0; j < n->nin; j++) need[n->in[j]->id] = 1;
  }
  return need;
}

KProgram *lower_program(Diag *d, Arena *a, const Graph *g, Node *const *roots, int nroots) {
  KProgram *p = arena_alloc(a, sizeof *p);
  p->arena = a;
  p->target = (int)target_current();
  /* a node has at most one buffer and one kernel, but a MATMUL or a
   * convolution up to four of each (scratch operands, their packing) */
  p->bufs = arena_alloc(a, (4 * (size_t)g->nnodes + 1) * sizeof *p->bufs);
  p->kernels = arena_alloc(a, (4 * (size_t)g->nnodes + 1) * sizeof *p->kernels);
  p->node_buf = arena_alloc(a, ((size_t)g->nnodes + 1) * sizeof *p->node_buf);
  p->own_buf = p->node_buf;
  uint8_t *need = mark_needed(a, g, roots, nroots);
  L l = {.a = a, .p = p, .g = g, .kg = {.a = a, .p = p}};
  l.hbase = arena_alloc(a, ((size_t)g->nnodes + 1) * sizeof *l.hbase);
  int nupd = 0;
  for (int i = 0; i < g->nnodes; i++) {
    l.hbase[i] = -1;
    nupd += (op_info[g->nodes[i]->op].flags & F_UPDATE) != 0;
  }
  p->hyper = arena_alloc(a, (6 * (size_t)nupd + 1) * sizeof *p->hyper);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    p->node_buf[i] = -1;
    if (!need[i]) continue;
    int fl = op_info[n->op].flags;
    if (n->op == OP_RESHAPE) {
      p->node_buf[i] = p->node_buf[n->in[0]->id];
      continue;
    }
    int grp = g->fuse_group ? g->fuse_group[i] : -1;  /* passes/fuse.c: interior members have no buffer */
    if ((grp >= 0 && grp != i) || grp == FUSE_IN_PLACE) continue;
    p->node_buf[i] = add_buf(p, n->op == OP_CONST ? KB_CONST : (fl & F_LEAF) ? KB_LEAF : KB_ARENA, n);
    if ((fl & F_LEAF) || grp == FUSE_STATS) continue;  /* statistics: stored by their NORMALIZE's group */
    if (grp == i) {
      const Node *mm = lower_fused_matmul(g, n);
      if (!mm) {
        p->kernels[p->nkernels++] = lower_fused(a, p, g, n);
        continue;
      }
      /* a product with its epilogue: passes/fuse.c */
      Kernel *k = kernel_new(&l, n);
      GemmEpi epi;
      double flops = lower_fused_epi(a, p, g, n, mm, &epi);
      k->name = arena_printf(a, "k%d_fused", n->id);
      k->opname = lower_fused_name(a, g, n);
      lower_matmul_into(&l, mm, p->node_buf[i], mm != n ? &epi : NULL);
      k->flops += flops;
      p->kernels[p->nkernels++] = k;
      continue;
    }
    if (fl & F_UPDATE) continue;  /* below, after every other kernel */
    if (!lower_fn[n->op]) {
      diag_error(d, n->loc, "JIT: op '%s' not supported", op_info[n->op].name);
      return NULL;
    }
    Kernel *k = kernel_new(&l, n);
    lower_fn[n->op](&l, n);
    p->kernels[p->nkernels++] = k;
  }
  /* The updates, last: nothing of the step reads what they write (the
   * optimizer's params and states, batch_norm's running statistics), so a
   * group may compute the statistics they read (FUSE_STATS).  Those of one
   * rule are one kernel, at the last of them. */
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    if (!need[i] || !(op_info[n->op].flags & F_UPDATE)) continue;
    int later = 0, cnt = 0;
    for (int j = i + 1; j < g->nnodes && !later; j++) later = need[j] && same_update(g->nodes[j], n);
    if (later) continue;
    const Node **grp_n = arena_alloc(a, ((size_t)i + 1) * sizeof *grp_n);
    for (int j = 0; j <= i; j++)
      if (need[j] && same_update(g->nodes[j], n)) grp_n[cnt++] = g->nodes[j];
    Kernel *k = kernel_new(&l, n);
    if (cnt > 1) k->name = arena_printf(a, "k%d_%s_x%d", n->id, op_info[n->op].name, cnt);
    lower_update_group(&l, grp_n, cnt);
    p->kernels[p->nkernels++] = k;
  }
  return p;
}

void lower_fill_consts(const KProgram *p, void *base) {
  for (int b = 0; b < p->nbufs; b++) {
    const KBuffer *kb = &p->bufs[b];
    if (kb->kind != KB_CONST) continue;
    float *x = (float *)((char *)base + kb->offset);
    for (int64_t i = 0; i < kb->numel; i++) x[i] = (float)kb->node->a.f[0];
  }
}
