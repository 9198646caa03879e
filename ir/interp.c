/* interp.c - the reference interpreter: one naive kernel per op.
 *
 * Contract: interp_run walks the graph in its (topological) order and
 * computes every wanted node and the nodes it depends on into malloc'd
 * buffers the interpreter owns (recomputed on every run, so new inputs give
 * new results).  INPUT, PARAM and STATE leaves are borrowed from the caller
 * through val[id]; an unbound one that is needed is an error.  Optimizer
 * updates are delegated to interp_update (interp_update.c) and write their
 * PARAM/STATE operands in place.
 *
 * This is the ORACLE every optimisation and backend is checked against, so
 * every kernel is the most obvious loop nest: flat indices unravelled with
 * strides, double accumulators, no blocking, no fusion.  f32 and i32 are
 * both 4 bytes, so data-movement ops copy 32-bit words whatever the dtype.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ir.h"

void interp_init(Interp *it, const Graph *g) {
  size_t n = g->nnodes > 0 ? (size_t)g->nnodes : 1;
  it->g = g;
  it->part = 0;
  it->val = calloc(n, sizeof(void *));
  it->owned = calloc(n, 1);
}

void interp_free(Interp *it) {
  if (it->val && it->owned)
    for (int i = 0; i < it->g->nnodes; i++)
      if (it->owned[i]) free(it->val[i]);
  free(it->val);
  free(it->owned);
  it->val = NULL;
  it->owned = NULL;
}

void ir_mark_deps(const Graph *g, Node *const *roots, int n, uint8_t *mask) {
  for (int k = 0; k < n; k++)
    if (roots[k]) mask[roots[k]->id] = 1;
  for (int i = g->nnodes - 1; i >= 0; i--)
    if (mask[i])
      for (int k = 0; k < g->nodes[i]->nin; k++) mask[g->nodes[i]->in[k]->id] = 1;
}

/* ------------------------------------------------------------ indexing */

static void strides(const Shape *s, int64_t *st) {
  int64_t m = 1;
  for (int k = s->rank - 1; k >= 0; k--) {
    st[k] = m;
    m *= s->dim[k];
  }
}

static void unravel(const Shape *s, int64_t i, int64_t *idx) {
  for (int k = s->rank - 1; k >= 0; k--) {
    idx[k] = s->dim[k] ? i % s->dim[k] : 0;
    i = s->dim[k] ? i / s->dim[k] : 0;
  }
}

/* Offset in operand shape `in` of output element i when `in` broadcasts to `out`. */
static int64_t bcast_offset(const Shape *out, const Shape *in, int64_t i) {
  int64_t off = 0, st = 1;
  for (int k = out->rank - 1, j = in->rank - 1; k >= 0; k--, j--) {
    int64_t ix = i % out->dim[k];
    i /= out->dim[k];
    if (j < 0) continue;
    if (in->dim[j] != 1) off += ix * st;
    st *= in->dim[j];
  }
  return off;
}

/* Element e of a node's value, as a double whatever its dtype. */
static double get(const Node *n, const void *v, int64_t e) {
  return n->dt == DT_I32 ? (double)((const int32_t *)v)[e] : (double)((const float *)v)[e];
}

/* Everything a kernel sees: the node, its operand values and its output. */
typedef struct K {
  const Node *n;
  const void *x[3];     /* first operands' values (concat/updates use val directly) */
  void *y;              /* [numel(n)] output */
  int64_t ny;           /* numel(n) */
  Diag *d;
  const RunCtx *ctx;
  void **val;
  int64_t part;         /* Interp.part */
} K;

/* Kernels return 0, -1 after reporting, or OOM (reported by the driver). */
#define OOM (-2)

#define X0 ((const float *)k->x[0])
#define X1 ((const float *)k->x[1])
#define Y ((float *)k->y)

/* ---------------------------------------------------------- elementwise */

static double binary(Op op, double a, double b) {
  switch (op) {
  case OP_ADD: return (float)a + (float)b;
  case OP_SUB: return (float)a - (float)b;
  case OP_MUL: return (float)a * (float)b;
  case OP_DIV: return (float)a / (float)b;
  case OP_MAXIMUM: return a > b ? a : b;
  case OP_MINIMUM: return a < b ? a : b;
  case OP_EQ: return a == b;
  case OP_NE: return a != b;
  case OP_LT: return a < b;
  case OP_LE: return a <= b;
  case OP_GT: return a > b;
  case OP_GE: return a >= b;
  default: NNDC_ASSERT(!"not a binary op");
  }
  return 0;
}

/* y[i] = a[bcast(i)] (op) b[bcast(i)]: a [..., M, N], b [..., 1, N] -> y [..., M, N] */
static int k_binary(K *k) {
  const Node *a = k->n->in[0], *b = k->n->in[1];
  for (int64_t i = 0; i < k->ny; i++) {
    double va = get(a, k->x[0], bcast_offset(&k->n->shape, &a->shape, i));
    double vb = get(b, k->x[1], bcast_offset(&k->n->shape, &b->shape, i));
    Y[i] = (float)binary(k->n->op, va, vb);
  }
  return 0;
}

/* x ** p in float as PyTorch computes it: products, quotients and square
 * roots for its special exponents (their overflow, underflow, -0 and -inf
 * are those of the products), powf otherwise. */
static float pow_f32(float x, double p) {
  if (p == 2) return x * x;
  if (p == 3) return x * x * x;
  if (p == -2) return 1 / (x * x);
  if (p == -1) return 1 / x;
  if (p == 0.5) return sqrtf(x);
  if (p == -0.5) return 1 / sqrtf(x);
  return powf(x, (float)p);
}

static double unary(Op op, const double *f, double x) {
  switch (op) {
  case OP_NEG: return -x;
  case OP_POW: return pow_f32((float)x, f[0]);
  case OP_RELU: return x <= 0 ? 0 : x;   /* NaN passes, as in PyTorch */
  case OP_SIGMOID: return 1 / (1 + exp(-x));
  case OP_TANH: return tanh(x);
  case OP_EXP: return exp(x);
  case OP_LOG: return log(x);
  case OP_SQRT: return sqrt(x);
  case OP_ABS: return fabs(x);
  case OP_SOFTPLUS: return x > 20 ? x : log1p(exp(x));
  case OP_ELU: return x > 0 ? x : f[0] * expm1(x);
  case OP_LEAKY_RELU: return x > 0 ? x : f[0] * x;
  case OP_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
  case OP_CLAMP: return x < f[0] ? f[0] : x > f[1] ? f[1] : x;
  case OP_ERF: return erf(x);
  case OP_SIGN: return (x > 0) - (x < 0);
  case OP_CAST: case OP_DETACH: return x;
  default: NNDC_ASSERT(!"not a unary op");
  }
  return 0;
}

double interp_ew(Op op, const double *f, const double *x) {
  NNDC_ASSERT(op_info[op].flags & F_EW);
  if (op == OP_WHERE) return x[0] != 0 ? x[1] : x[2];
  if (op == OP_NORMALIZE) return (float)(((float)x[0] - (float)x[1]) / sqrt(x[2] + f[0]));
  return op_info[op].nin == 2 ? binary(op, x[0], x[1]) : unary(op, f, x[0]);
}

/* table [V, D], ids i32 [P...] -> y [P..., D]: y[p, :] = table[ids[p], :] */
static int k_embedding(K *k) {
  int64_t V = k->n->in[0]->shape.dim[0], D = k->n->in[0]->shape.dim[1], P = shape_numel(&k->n->in[1]->shape);
  const int32_t *ids = k->x[1];
  for (int64_t p = 0; p < P; p++) {
    if (ids[p] < 0 || ids[p] >= V) {
      diag_error(k->d, k->n->loc, "embedding: id %d out of range [0, %lld)", (int)ids[p], (long long)V);
      return -1;
    }
    memcpy(Y + p * D, X0 + (int64_t)ids[p] * D, (size_t)D * sizeof(float));
  }
  return 0;
}

/* dy [P..., D], ids i32 [P...] -> y [V, D]: y[v, :] = sum over p with
 * ids[p] = v of dy[p, :], added in position order (in double) */
static int k_embedding_bwd(K *k) {
  int64_t V = k->n->shape.dim[0], D = k->n->shape.dim[1], P = shape_numel(&k->n->in[1]->shape);
  const int32_t *ids = k->x[1];
  double *acc = calloc((size_t)(V * D + 1), sizeof *acc);
  NNDC_ASSERT(acc);
  for (int64_t p = 0; p < P; p++)
    if (ids[p] >= 0 && ids[p] < V)
      for (int64_t d = 0; d < D; d++) acc[(int64_t)ids[p] * D + d] += X0[p * D + d];
  for (int64_t i = 0; i < V * D; i++) Y[i] = (float)acc[i];
  free(acc);
  return 0;
}

/* RAND, RANDN -> y [Attr.shape]: element i of stream (seed, key, step) */
static int k_noise(K *k) {
  uint64_t stream = rng_noise_stream((uint64_t)k->n->a.i[0], k->ctx->step);
  uint64_t base = (uint64_t)(k->part * k->ny);
  for (int64_t i = 0; i < k->ny; i++)
    Y[i] = k->n->op == OP_RAND ? rng_uniform(k->ctx->seed, stream, base + (uint64_t)i)
                               : rng_normal_of(rng_bits(k->ctx->seed, stream, base + (uint64_t)i));
  return 0;
}

/* x [..., H, W] -> y [..., H, W]: y[..., r, c] = c - r <= k ? x[..., r, c] : fill */
static int k_tril(K *k) {
  const Shape *s = &k->n->shape;
  int64_t H = s->dim[s->rank - 2], W = s->dim[s->rank - 1];
  for (int64_t i = 0; i < k->ny; i++) {
    int64_t c = i % W, r = i / W % H;
    Y[i] = c - r <= k->n->a.i[0] ? X0[i] : (float)k->n->a.f[0];
  }
  return 0;
}

/* The three-operand elementwise ops (WHERE, NORMALIZE) through interp_ew:
 * c [N, 1], a [N, M], b [] -> y [N, M], every operand broadcast. */
static int k_ew3(K *k) {
  for (int64_t i = 0; i < k->ny; i++) {
    double v[3];
    for (int j = 0; j < 3; j++) v[j] = get(k->n->in[j], k->x[j], bcast_offset(&k->n->shape, &k->n->in[j]->shape, i));
    Y[i] = (float)interp_ew(k->n->op, k->n->a.f, v);
  }
  return 0;
}

/* y[i] = f(x[i]): x [d...] -> y [d...] */
static int k_unary(K *k) {
  for (int64_t i = 0; i < k->ny; i++) Y[i] = (float)unary(k->n->op, k->n->a.f, get(k->n->in[0], k->x[0], i));
  return 0;
}

/* ----------------------------------------------------------- reductions */

/* Output offset of input element i: reduced axes collapse to 0. */
static int64_t reduce_offset(const Shape *in, uint64_t mask, int64_t i) {
  int64_t idx[MAX_RANK], off = 0;
  unravel(in, i, idx);
  for (int k = 0; k < in->rank; k++)
    if (!(mask >> k & 1)) off = off * in->dim[k] + idx[k];
  return off;
}

/* x [A, B, C], mask {1} -> y [A, C]: y[a, c] = sum/mean/max over b of x[a, b, c] */
static int k_reduce(K *k) {
  const Shape *in = &k->n->in[0]->shape;
  uint64_t mask = (uint64_t)k->n->a.i[0];
  if (mask == 0) mask = ((uint64_t)1 << in->rank) - 1;
  int64_t nin = shape_numel(in), cnt = k->ny ? nin / k->ny : 0;
  double *acc = malloc(sizeof(double) * (size_t)(k->ny ? k->ny : 1));
  if (!acc) return OOM;
  for (int64_t o = 0; o < k->ny; o++) acc[o] = k->n->op == OP_MAX ? -INFINITY : 0;
  for (int64_t i = 0; i < nin; i++) {
    int64_t o = reduce_offset(in, mask, i);
    if (k->n->op == OP_MAX) acc[o] = X0[i] > acc[o] ? X0[i] : acc[o];
    else acc[o] += X0[i];
  }
  for (int64_t o = 0; o < k->ny; o++) Y[o] = (float)(k->n->op == OP_MEAN ? acc[o] / (double)cnt : acc[o]);
  free(acc);
  return 0;
}

/* VAR: x [N, C, H, W], mean [1, C, 1, 1] (mask {0, 2, 3}) -> y [1, C, 1, 1]:
 * the mean of (x - mean)^2 over the mask (in double). */
static int k_var(K *k) {
  const Shape *in = &k->n->in[0]->shape;
  uint64_t mask = (uint64_t)k->n->a.i[0];
  if (mask == 0) mask = ((uint64_t)1 << in->rank) - 1;
  int64_t nin = shape_numel(in), cnt = k->ny ? nin / k->ny : 0;
  double *acc = calloc((size_t)(k->ny ? k->ny : 1), sizeof(double));
  if (!acc) return OOM;
  for (int64_t i = 0; i < nin; i++) {
    int64_t o = reduce_offset(in, mask, i);
    double d = (double)X0[i] - X1[o];
    acc[o] += d * d;
  }
  for (int64_t o = 0; o < k->ny; o++) Y[o] = (float)(acc[o] / (double)cnt);
  free(acc);
  return 0;
}

/* NORMALIZE_BWD: gy, x [N, D], mean, var [N, 1] (mask {1}) -> dx [N, D]:
 * with r = 1/sqrt(var + eps) and xhat = (x - mean) r per group,
 * dx = r (gy - mean(gy) - xhat mean(gy xhat)), the means over the group. */
static int k_normalize_bwd(K *k) {
  const Shape *in = &k->n->shape;
  uint64_t mask = (uint64_t)k->n->a.i[0];
  if (mask == 0) mask = ((uint64_t)1 << in->rank) - 1;
  const float *gy = X0, *x = X1, *mean = k->x[2], *var = k->val[k->n->in[3]->id];
  int64_t ng = shape_numel(&k->n->in[2]->shape), cnt = ng ? k->ny / ng : 0;
  double *s1 = calloc((size_t)(2 * ng + 1), sizeof(double)), *s2 = s1 + ng;
  if (!s1) return OOM;
  double eps = k->n->a.f[0];
  for (int64_t i = 0; i < k->ny; i++) {
    int64_t o = reduce_offset(in, mask, i);
    double xh = ((double)x[i] - mean[o]) / sqrt((double)var[o] + eps);
    s1[o] += gy[i];
    s2[o] += gy[i] * xh;
  }
  for (int64_t i = 0; i < k->ny; i++) {
    int64_t o = reduce_offset(in, mask, i);
    double r = 1 / sqrt((double)var[o] + eps), xh = ((double)x[i] - mean[o]) * r;
    Y[i] = (float)(r * (gy[i] - s1[o] / (double)cnt - xh * s2[o] / (double)cnt));
  }
  free(s1);
  return 0;
}

/* Splits a shape around axis: outer * n * inner elements. */
static void around(const Shape *s, int axis, int64_t *outer, int64_t *n, int64_t *inner) {
  *outer = *inner = 1;
  for (int k = 0; k < axis; k++) *outer *= s->dim[k];
  for (int k = axis + 1; k < s->rank; k++) *inner *= s->dim[k];
  *n = s->dim[axis];
}

/* x [N, C], axis 1 -> y i32 [N]: the first index of the largest */
static int k_argmax(K *k) {
  int64_t outer, n, inner;
  around(&k->n->in[0]->shape, (int)k->n->a.i[0], &outer, &n, &inner);
  int32_t *y = k->y;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t in = 0; in < inner; in++) {
      int64_t best = 0;
      for (int64_t j = 1; j < n; j++)
        if (X0[(o * n + j) * inner + in] > X0[(o * n + best) * inner + in]) best = j;
      y[o * inner + in] = (int32_t)best;
    }
  return 0;
}

/* -------------------------------------------------------------- shapes */

/* RESHAPE: x [d...] -> y [e...], the same elements in C order */
static int k_copy(K *k) {
  memcpy(k->y, k->x[0], sizeof(float) * (size_t)k->ny);
  return 0;
}

/* x [1, N] -> y [M, N]: y[m, n] = x[0, n] (broadcast) */
static int k_expand(K *k) {
  const uint32_t *x = k->x[0];
  uint32_t *y = k->y;
  for (int64_t i = 0; i < k->ny; i++) y[i] = x[bcast_offset(&k->n->shape, &k->n->in[0]->shape, i)];
  return 0;
}

/* x [d0, d1, d2], perm (2, 0, 1) -> y [d2, d0, d1]: y[i, j, k] = x[j, k, i] */
static int k_transpose(K *k) {
  const Shape *in = &k->n->in[0]->shape;
  int64_t st[MAX_RANK], idx[MAX_RANK];
  const uint32_t *x = k->x[0];
  uint32_t *y = k->y;
  strides(in, st);
  for (int64_t i = 0; i < k->ny; i++) {
    int64_t off = 0;
    unravel(&k->n->shape, i, idx);
    for (int d = 0; d < in->rank; d++) off += idx[d] * st[k->n->a.i[d]];
    y[i] = x[off];
  }
  return 0;
}

/* SLICE reads the window of the big operand; SLICE_BWD writes it into zeros. */
static int k_slice(K *k) {
  int bwd = k->n->op == OP_SLICE_BWD;
  const Shape *big = bwd ? &k->n->shape : &k->n->in[0]->shape;
  const Shape *small = bwd ? &k->n->in[0]->shape : &k->n->shape;
  int64_t st[MAX_RANK], idx[MAX_RANK], ns = shape_numel(small);
  const uint32_t *x = k->x[0];
  uint32_t *y = k->y;
  strides(big, st);
  if (bwd) memset(y, 0, sizeof(uint32_t) * (size_t)k->ny);
  for (int64_t i = 0; i < ns; i++) {
    int64_t off = 0;
    unravel(small, i, idx);
    for (int d = 0; d < big->rank; d++) off += (idx[d] + k->n->a.i[d]) * st[d];
    if (bwd) y[off] = x[i];
    else y[i] = x[off];
  }
  return 0;
}

/* x0 [A, B0, C], x1 [A, B1, C] along 1 -> y [A, B0 + B1, C] */
static int k_concat(K *k) {
  int ax = (int)k->n->a.i[0];
  int64_t outer, n, inner, base = 0;
  uint32_t *y = k->y;
  around(&k->n->shape, ax, &outer, &n, &inner);
  for (int j = 0; j < k->n->nin; j++) {
    const Node *x = k->n->in[j];
    const uint32_t *xv = k->val[x->id];
    int64_t m = x->shape.dim[ax];
    for (int64_t o = 0; o < outer; o++)
      for (int64_t a = 0; a < m; a++)
        for (int64_t in = 0; in < inner; in++)
          y[(o * n + base + a) * inner + in] = xv[(o * m + a) * inner + in];
    base += m;
  }
  return 0;
}

/* -------------------------------------------------------------- matrix */

/* a [B, M, K] @ b [B, K, N] -> y [B, M, N] (b may be [K, N]): sums in double */
static int k_matmul(K *k) {
  const Shape *a = &k->n->in[0]->shape, *b = &k->n->in[1]->shape;
  int64_t batch = a->rank == 3 ? a->dim[0] : 1;
  int64_t M = a->dim[a->rank - 2], K_ = a->dim[a->rank - 1], N = b->dim[b->rank - 1];
  int64_t bstride = b->rank == 3 ? K_ * N : 0;
  for (int64_t p = 0; p < batch; p++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t q = 0; q < K_; q++)
          s += (double)X0[p * M * K_ + i * K_ + q] * X1[p * bstride + q * N + j];
        Y[p * M * N + i * N + j] = (float)s;
      }
  return 0;
}

/* -------------------------------------------------------------- neural */

/* x [N, C] along 1 -> y [N, C]: exp(x - max) / sum, or its log */
static int k_softmax(K *k) {
  int64_t outer, n, inner;
  around(&k->n->shape, (int)k->n->a.i[0], &outer, &n, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t in = 0; in < inner; in++) {
      const float *x = X0 + o * n * inner + in;
      float *y = Y + o * n * inner + in;
      double mx = -INFINITY, s = 0;
      for (int64_t j = 0; j < n; j++) mx = x[j * inner] > mx ? x[j * inner] : mx;
      for (int64_t j = 0; j < n; j++) s += exp(x[j * inner] - mx);
      for (int64_t j = 0; j < n; j++)
        y[j * inner] = (float)(k->n->op == OP_SOFTMAX ? exp(x[j * inner] - mx) / s
                                                       : x[j * inner] - mx - log(s));
    }
  return 0;
}

/* ATTN, ATTN_LSE, ATTN_BWD (q [B,Tq,D], k [B,Tk,D], v [B,Tk,Dv]): per batch
 * the whole score matrix S = scale q k^T (masked: -inf where col - row > k)
 * and P = softmax(S) by rows, in double.  The backward recomputes P and
 * ignores its lse and delta operands (the lowering's shortcuts): with
 * dP = do v^T and dS = P (dP - rowsum(P dP)), dq = scale dS k,
 * dk = scale dS^T q, dv = P^T do. */
static int k_attn(K *k) {
  const Node *n = k->n;
  const Shape *qs = &n->in[0]->shape, *ks = &n->in[1]->shape;
  int64_t B = qs->dim[0], Tq = qs->dim[1], D = qs->dim[2], Tk = ks->dim[1];
  int64_t Dv = n->nin > 2 ? n->in[2]->shape.dim[2] : 0;
  const float *q = k->x[0], *kk = k->x[1], *v = n->nin > 2 ? k->x[2] : NULL;
  const float *dout = n->op == OP_ATTN_BWD ? k->val[n->in[3]->id] : NULL;
  double scale = n->a.f[0];
  int which = (int)n->a.i[2];
  int64_t per = n->op == OP_ATTN_BWD ? k->ny / (B ? B : 1) : 0;  /* elements of the result per batch */
  double *P = malloc(sizeof(double) * (size_t)(2 * Tq * Tk + per + 1)), *dS = P + Tq * Tk, *acc = dS + Tq * Tk;
  if (!P) return OOM;
  for (int64_t b = 0; b < B; b++) {
    const float *qb = q + b * Tq * D, *kb = kk + b * Tk * D, *vb = v ? v + b * Tk * Dv : NULL;
    for (int64_t i = 0; i < Tq; i++) {
      double mx = -INFINITY, sum = 0, *row = P + i * Tk;
      for (int64_t j = 0; j < Tk; j++) {
        double sc = 0;
        for (int64_t d = 0; d < D; d++) sc += (double)qb[i * D + d] * kb[j * D + d];
        row[j] = n->a.i[0] && j - i > n->a.i[1] ? -INFINITY : sc * scale;
        mx = row[j] > mx ? row[j] : mx;
      }
      for (int64_t j = 0; j < Tk; j++) sum += exp(row[j] - mx);
      if (n->op == OP_ATTN_LSE) Y[b * Tq + i] = (float)(mx + log(sum));
      for (int64_t j = 0; j < Tk; j++) row[j] = exp(row[j] - mx) / sum;
      for (int64_t c = 0; n->op == OP_ATTN && c < Dv; c++) {
        double o = 0;
        for (int64_t j = 0; j < Tk; j++) o += row[j] * vb[j * Dv + c];
        Y[(b * Tq + i) * Dv + c] = (float)o;
      }
    }
    if (n->op != OP_ATTN_BWD) continue;
    const float *db = dout + b * Tq * Dv;
    for (int64_t i = 0; i < Tq; i++) {
      double delta = 0;
      for (int64_t j = 0; j < Tk; j++) {
        double dp = 0;
        for (int64_t c = 0; c < Dv; c++) dp += (double)db[i * Dv + c] * vb[j * Dv + c];
        dS[i * Tk + j] = dp;
        delta += P[i * Tk + j] * dp;
      }
      for (int64_t j = 0; j < Tk; j++) dS[i * Tk + j] = P[i * Tk + j] * (dS[i * Tk + j] - delta);
    }
    memset(acc, 0, sizeof(double) * (size_t)per);
    for (int64_t i = 0; i < Tq; i++)
      for (int64_t j = 0; j < Tk; j++) {
        if (which == 0)
          for (int64_t d = 0; d < D; d++) acc[i * D + d] += scale * dS[i * Tk + j] * kb[j * D + d];
        else if (which == 1)
          for (int64_t d = 0; d < D; d++) acc[j * D + d] += scale * dS[i * Tk + j] * qb[i * D + d];
        else
          for (int64_t c = 0; c < Dv; c++) acc[j * Dv + c] += P[i * Tk + j] * db[i * Dv + c];
      }
    for (int64_t e = 0; e < per; e++) Y[b * per + e] = (float)acc[e];
  }
  free(P);
  return 0;
}

/* x [d...] -> y [d...]: x / (1 - p) where rng(seed, key, step, i) >= p, else 0 */
static int k_dropout(K *k) {
  double p = k->n->a.f[0];
  if (!k->ctx->training || p == 0) return k_copy(k);
  uint64_t base = (uint64_t)(k->part * k->ny);
  for (int64_t i = 0; i < k->ny; i++) {
    int keep = rng_dropout_keep(k->ctx->seed, (uint64_t)k->n->a.i[0], k->ctx->step, base + (uint64_t)i, (float)p);
    Y[i] = keep ? (float)(X0[i] / (1.0 - p)) : 0.0f;
  }
  return 0;
}

/* labels i32 [N] -> y [N, C]: y[n, c] = labels[n] == c */
static int k_one_hot(K *k) {
  const int32_t *x = k->x[0];
  int64_t c = k->n->shape.dim[k->n->shape.rank - 1], rows = c ? k->ny / c : 0;
  memset(k->y, 0, sizeof(float) * (size_t)k->ny);
  for (int64_t r = 0; r < rows; r++)
    if (x[r] >= 0 && x[r] < c) Y[r * c + x[r]] = 1;
  return 0;
}

/* Row r of logits x [N, C]: its max *mx and sum *se of exp(x - mx); -1
 * after reporting a label outside [0, C). */
static int ce_row(K *k, const float *x, int32_t lab, int64_t C, double *mx, double *se) {
  if (lab < 0 || lab >= C) {
    diag_error(k->d, k->n->loc, "label %d out of range [0, %lld)", (int)lab, (long long)C);
    return -1;
  }
  *mx = -INFINITY, *se = 0;
  for (int64_t j = 0; j < C; j++) *mx = x[j] > *mx ? x[j] : *mx;
  for (int64_t j = 0; j < C; j++) *se += exp(x[j] - *mx);
  return 0;
}

/* logits [N, C], labels i32 [N] -> y []: mean over n of logsumexp(x[n]) - x[n, y[n]] */
static int k_cross_entropy(K *k) {
  const Shape *s = &k->n->in[0]->shape;
  int64_t N = s->dim[0], C = s->dim[1];
  const int32_t *lab = k->x[1];
  double total = 0, mx, se;
  for (int64_t r = 0; r < N; r++) {
    const float *x = X0 + r * C;
    if (ce_row(k, x, lab[r], C, &mx, &se)) return -1;
    total += -(x[lab[r]] - mx - log(se));
  }
  Y[0] = (float)(N ? total / (double)N : NAN);
  return 0;
}

/* logits [N, C], labels i32 [N], dy [] -> y [N, C]:
 * (softmax(x[n]) - one_hot(labels[n])) dy / N */
static int k_ce_bwd(K *k) {
  const Shape *s = &k->n->in[0]->shape;
  int64_t N = s->dim[0], C = s->dim[1];
  const int32_t *lab = k->x[1];
  double scale = (double)((const float *)k->x[2])[0] / (double)N, mx, se;
  for (int64_t r = 0; r < N; r++) {
    const float *x = X0 + r * C;
    if (ce_row(k, x, lab[r], C, &mx, &se)) return -1;
    for (int64_t j = 0; j < C; j++) Y[r * C + j] = (float)((exp(x[j] - mx) / se - (j == lab[r])) * scale);
  }
  return 0;
}

/* a [d...], b [d...] -> y []: mean of (a - b)^2, or of bce_logits(a, b) */
static int k_mse_bce(K *k) {
  int64_t n = shape_numel(&k->n->in[0]->shape);
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    double a = X0[i], b = X1[i];
    total += k->n->op == OP_MSE ? (a - b) * (a - b) : fmax(a, 0) - a * b + log1p(exp(-fabs(a)));
  }
  Y[0] = (float)(n ? total / (double)n : NAN);
  return 0;
}

/* ------------------------------------------------- convolution, pooling */

/* Visits every (output position, kernel tap) pair of conv2d(x[N,C,H,W],
 * w[O,C/G,KH,KW]) -> y[N,O,OH,OW] inside the padded input: dir 0 computes y,
 * 1 accumulates dx from dy, 2 accumulates dw from dy.  a is the op's
 * i[0..6]: stride, padding per axis, dilation per axis, groups G (output
 * channel o reads the input channels of its group, o / (O/G)).  ys is dy's
 * shape for the gradients (it may stop short of x's last outputs). */
static int conv_loop(const Shape *xs, const Shape *ws, const Shape *ys, const int64_t *a, int dir, float *x, float *w,
                     float *y) {
  int64_t N = xs->dim[0], C = xs->dim[1], H = xs->dim[2], W = xs->dim[3];
  int64_t O = ws->dim[0], CG = ws->dim[1], KH = ws->dim[2], KW = ws->dim[3], OH = ys->dim[2], OW = ys->dim[3];
  int64_t OG = O / a[6];  /* output channels per group */
  double *acc = dir == 0 ? NULL : calloc((size_t)(dir == 1 ? N * C * H * W : O * CG * KH * KW), sizeof(double));
  if (dir != 0 && !acc) return OOM;
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < O; o++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double s = 0;
          float *yp = &y[((n * O + o) * OH + oh) * OW + ow];
          for (int64_t c = 0; c < CG; c++)
            for (int64_t i = 0; i < KH; i++)
              for (int64_t j = 0; j < KW; j++) {
                int64_t h = oh * a[0] - a[1] + i * a[4], v = ow * a[2] - a[3] + j * a[5];
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                int64_t xi = ((n * C + o / OG * CG + c) * H + h) * W + v, wi = ((o * CG + c) * KH + i) * KW + j;
                if (dir == 0) s += (double)x[xi] * w[wi];
                else if (dir == 1) acc[xi] += (double)*yp * w[wi];
                else acc[wi] += (double)*yp * x[xi];
              }
          if (dir == 0) *yp = (float)s;
        }
  if (dir == 1)
    for (int64_t i = 0; i < N * C * H * W; i++) x[i] = (float)acc[i];
  if (dir == 2)
    for (int64_t i = 0; i < O * CG * KH * KW; i++) w[i] = (float)acc[i];
  free(acc);
  return 0;
}

/* x [N, C, H, W], w [O, C/G, KH, KW] -> y [N, O, OH, OW] (and the two gradients) */
static int k_conv(K *k) {
  const Node *n = k->n;
  const int64_t *at = n->a.i;
  float *a = (float *)k->x[0], *b = (float *)k->x[1];
  if (n->op == OP_CONV2D) return conv_loop(&n->in[0]->shape, &n->in[1]->shape, &n->shape, at, 0, a, b, Y);
  if (n->op == OP_CONV2D_BWD_X) return conv_loop(&n->shape, &n->in[1]->shape, &n->in[0]->shape, at, 1, Y, b, a);
  return conv_loop(&n->in[0]->shape, &n->shape, &n->in[1]->shape, at, 2, a, Y, b);
}

/* Pool windows of x[N,C,H,W] (shape xs) -> y[N,C,OH,OW] (shape ys):
 * MAXPOOL2D/AVGPOOL2D compute y; the _BWD ops route dy (y) into dx (x). */
static int k_pool(K *k) {
  const Node *n = k->n;
  int bwd = n->op == OP_MAXPOOL2D_BWD || n->op == OP_AVGPOOL2D_BWD;
  int isavg = n->op == OP_AVGPOOL2D || n->op == OP_AVGPOOL2D_BWD;
  const Shape *xs = bwd ? &n->shape : &n->in[0]->shape;
  const Shape *ys = n->op == OP_MAXPOOL2D_BWD ? &n->in[1]->shape : bwd ? &n->in[0]->shape : &n->shape;
  const float *x = n->op == OP_AVGPOOL2D_BWD ? NULL : X0;
  const float *dy = n->op == OP_MAXPOOL2D_BWD ? X1 : X0;
  int64_t sz = n->a.i[0], st = n->a.i[1], H = xs->dim[2], W = xs->dim[3], OH = ys->dim[2], OW = ys->dim[3];
  int64_t planes = xs->dim[0] * xs->dim[1];
  if (bwd) memset(k->y, 0, sizeof(float) * (size_t)k->ny);
  for (int64_t pl = 0; pl < planes; pl++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        int64_t yi = (pl * OH + oh) * OW + ow, best = -1;
        double s = 0;
        for (int64_t i = 0; i < sz; i++)
          for (int64_t j = 0; j < sz; j++) {
            int64_t xi = (pl * H + oh * st + i) * W + ow * st + j;
            if (isavg && bwd) Y[xi] += (float)(dy[yi] / (double)(sz * sz));
            else if (isavg) s += x[xi];
            else if (best < 0 || x[xi] > x[best]) best = xi;
          }
        if (!bwd) Y[yi] = (float)(isavg ? s / (double)(sz * sz) : x[best]);
        else if (!isavg) Y[best] += dy[yi];
      }
  return 0;
}

/* p [d...], g [d...], states [d...]: one torch.optim step in place (interp_update.c) */
static int k_update(K *k) {
  if (interp_update(k->n, k->val, k->ctx)) {
    diag_error(k->d, k->n->loc, "%s failed", op_info[k->n->op].name);
    return -1;
  }
  Y[0] = 0;
  return 0;
}

/* ------------------------------------------------------------- driver */

/* y [Attr.shape] = Attr.f[0] everywhere */
static int k_const(K *k) {
  for (int64_t i = 0; i < k->ny; i++) Y[i] = (float)k->n->a.f[0];
  return 0;
}

#define k_none NULL  /* leaves whose value comes from outside */

/* The reference kernel of each op: ops.def's kernel column names k_<kernel>. */
static int (*const kernel_of[OP_COUNT])(K *) = {
#define OP(e, name, nin, flags, shape, kernel, ...) [OP_##e] = k_##kernel,
#include "ops.def"
};

static int kernel(K *k) {
  NNDC_ASSERT(kernel_of[k->n->op] && "interp: op without a kernel");
  return kernel_of[k->n->op](k);
}

/* Computes node n into a fresh buffer; its operands are already computed. */
static int eval_node(Interp *it, Diag *d, const Node *n, const RunCtx *ctx) {
  int id = n->id;
  if (n->op == OP_INPUT || n->op == OP_PARAM || n->op == OP_STATE) {
    if (it->val[id]) return 0;
    diag_error(d, n->loc, "%s '%s' is not fed", op_info[n->op].name, n->name ? n->name : "?");
    return -1;
  }
  if (it->owned[id]) free(it->val[id]);
  it->val[id] = NULL;
  it->owned[id] = 0;
  K k = {n, {NULL, NULL, NULL}, NULL, shape_numel(&n->shape), d, ctx, it->val, it->part};
  for (int j = 0; j < n->nin && j < 3; j++) k.x[j] = it->val[n->in[j]->id];
  k.y = malloc(sizeof(float) * (size_t)(k.ny ? k.ny : 1));
  if (!k.y) {
    diag_error(d, n->loc, "out of memory computing %s", op_info[n->op].name);
    return -1;
  }
  it->val[id] = k.y;
  it->owned[id] = 1;
  int rc = kernel(&k);
  if (rc == OOM) diag_error(d, n->loc, "out of memory computing %s", op_info[n->op].name);
  return rc ? -1 : 0;
  return 0;
}

int interp_run(Interp *it, Diag *d, const uint8_t *want, const RunCtx *ctx) {
  const Graph *g = it->g;
  RunCtx none = {0, 1, 0};
  if (!it->val || !it->owned) {
    diag_error(d, (Loc){0}, "out of memory starting the interpreter");
    return -1;
  }
  uint8_t *need = calloc(g->nnodes > 0 ? (size_t)g->nnodes : 1, 1);
  if (!need) {
    diag_error(d, (Loc){0}, "out of memory starting the interpreter");
    return -1;
  }
  if (want) memcpy(need, want, (size_t)g->nnodes);
  else memset(need, 1, (size_t)g->nnodes);
  ir_mark_deps(g, NULL, 0, need);
  int rc = 0;
  for (int i = 0; i < g->nnodes && rc == 0; i++)
    if (need[i]) rc = eval_node(it, d, g->nodes[i], ctx ? ctx : &none);
  free(need);
  return rc;
}
