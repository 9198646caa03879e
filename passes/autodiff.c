/* autodiff.c - reverse-mode differentiation as a graph-to-graph pass.
 *
 * Walks the forward nodes backwards from g->loss and, for every node the loss
 * depends on and that depends on a param, applies that op's vector-Jacobian
 * rule: one small function that builds ordinary IR nodes from the forward
 * node, its operands and the incoming gradient dy (same shape as the node).
 * Contributions to one operand are summed with OP_ADD.  The backward nodes
 * are appended after the forward ones (the graph stays topological) and carry
 * the Loc of the forward node they come from.  Gradients follow PyTorch's
 * conventions (ties of maximum/minimum and of max reductions split evenly,
 * relu'(0) = 0, softplus threshold 20).
 *
 * Requires: g->loss set, a one-element f32 tensor.
 * Produces: g->grads[nparams] (arena); params the loss does not reach, and
 * frozen params (not in the graph's train step), get a CONST 0 of their
 * shape.  Inputs marked as differentiation targets (Node.wrt, f32) are
 * differentiated like params, into g->input_grads[ninputs] (NULL for the
 * others).  Preserves every forward node.
 */
#include <math.h>
#include <string.h>
#include "passes.h"

typedef struct AD {
  Graph *g;
  Diag *d;
  int nfwd;        /* nodes before the pass: the only ones with gradients */
  Node **grad;     /* [nfwd] accumulated d loss / d node, NULL if none */
  uint8_t *need;   /* [nfwd] 1 if the node depends on a param (wants a gradient) */
  int failed;      /* a rule reported an error */
} AD;

typedef void (*VjpRule)(AD *ad, Node *n, Node *dy);

/* ------------------------------------------------------------ helpers */

static int needs(AD *ad, Node *x) { return x->id < ad->nfwd && ad->need[x->id]; }

/* Adds contribution c (shape of x) to x's gradient. */
static void acc(AD *ad, Node *x, Node *c) {
  if (!needs(ad, x)) return;
  NNDC_ASSERT(shape_eq(&c->shape, &x->shape));
  Node *old = ad->grad[x->id];
  ad->grad[x->id] = old ? ir_bin(ad->g, OP_ADD, old, c) : c;
}

/* Adds a contribution that may still have the broadcast shape. */
static void acc_sum(AD *ad, Node *x, Node *c) {
  if (needs(ad, x)) acc(ad, x, ir_sum_to(ad->g, c, &x->shape));
}

static Node *add(AD *ad, Node *a, Node *b) { return ir_bin(ad->g, OP_ADD, a, b); }
static Node *sub(AD *ad, Node *a, Node *b) { return ir_bin(ad->g, OP_SUB, a, b); }
static Node *mul(AD *ad, Node *a, Node *b) { return ir_bin(ad->g, OP_MUL, a, b); }
static Node *dvd(AD *ad, Node *a, Node *b) { return ir_bin(ad->g, OP_DIV, a, b); }
static Node *num(AD *ad, double v) { return ir_scalar(ad->g, v); }
static Node *un(AD *ad, Op op, Node *x) { return ir_un(ad->g, op, x); }
static Node *cmp(AD *ad, Op op, Node *x, double v) { return ir_bin(ad->g, op, x, num(ad, v)); }

static Node *op1(AD *ad, Op op, Node *x, const Attr *a) { return ir_build(ad->g, op, &x, 1, a, x->loc); }
static Node *op2(AD *ad, Op op, Node *x, Node *y, const Attr *a) {
  Node *in[2] = {x, y};
  return ir_build(ad->g, op, in, 2, a, x->loc);
}

static Attr attr_zero(void) {
  Attr a;
  memset(&a, 0, sizeof a);
  return a;
}

/* A reduction over axis mask m (0 = all) of x; keepdims k. */
static Node *reduce(AD *ad, Op op, Node *x, int64_t m, int k) {
  Attr a = attr_zero();
  a.i[0] = m;
  a.i[1] = k;
  return op1(ad, op, x, &a);
}

static uint64_t full_mask(int64_t m, int rank) {
  return m ? (uint64_t)m : (((uint64_t)1 << rank) - 1);
}

/* The shape of a reduction of s over mask m with keepdims. */
static Shape keep_shape(const Shape *s, int64_t m) {
  Shape r = *s;
  uint64_t mm = full_mask(m, s->rank);
  for (int i = 0; i < s->rank; i++)
    if (mm >> i & 1) r.dim[i] = 1;
  return r;
}

static Node *transpose(AD *ad, Node *x, const int *perm) {
  Attr a = attr_zero();
  for (int k = 0; k < x->shape.rank; k++) a.i[k] = perm[k];
  return op1(ad, OP_TRANSPOSE, x, &a);
}

/* Swaps the last two axes of a rank-2 or rank-3 tensor. */
static Node *swap_last(AD *ad, Node *x) {
  static const int p2[] = {1, 0}, p3[] = {0, 2, 1};
  return transpose(ad, x, x->shape.rank == 2 ? p2 : p3);
}

/* An op with the forward node's attrs but a different target shape. */
static Attr attr_with_shape(const Node *n, const Shape *s) {
  Attr a = n->a;
  a.shape = *s;
  return a;
}

/* ------------------------------------------------ elementwise binary */

static void vjp_add(AD *ad, Node *n, Node *dy) {
  acc_sum(ad, n->in[0], dy);
  acc_sum(ad, n->in[1], dy);
}

static void vjp_sub(AD *ad, Node *n, Node *dy) {
  acc_sum(ad, n->in[0], dy);
  if (needs(ad, n->in[1])) acc_sum(ad, n->in[1], un(ad, OP_NEG, dy));
}

static void vjp_mul(AD *ad, Node *n, Node *dy) {
  Node *a = n->in[0], *b = n->in[1];
  if (needs(ad, a)) acc_sum(ad, a, mul(ad, dy, b));
  if (needs(ad, b)) acc_sum(ad, b, mul(ad, dy, a));
}

/* d(a/b) = dy/b, -dy*(a/b)/b as PyTorch. */
static void vjp_div(AD *ad, Node *n, Node *dy) {
  Node *a = n->in[0], *b = n->in[1];
  if (needs(ad, a)) acc_sum(ad, a, dvd(ad, dy, b));
  if (needs(ad, b)) acc_sum(ad, b, un(ad, OP_NEG, mul(ad, dy, dvd(ad, n, b))));
}

/* embedding(table, ids): the table's rows gather dy (ids: none). */
static void vjp_embedding(AD *ad, Node *n, Node *dy) {
  if (!needs(ad, n->in[0])) return;
  Attr a = attr_with_shape(n, &n->in[0]->shape);
  Node *in[2] = {dy, n->in[1]};
  acc(ad, n->in[0], ir_build(ad->g, OP_EMBEDDING_BWD, in, 2, &a, n->loc));
}

/* embedding_bwd is linear in dy: its adjoint gathers the rows again. */
static void vjp_embedding_bwd(AD *ad, Node *n, Node *dy) {
  Node *in[2] = {dy, n->in[1]};
  acc(ad, n->in[0], ir_build(ad->g, OP_EMBEDDING, in, 2, NULL, n->loc));
}

/* tril(x, k, fill): the kept elements take dy, the filled ones nothing. */
static void vjp_tril(AD *ad, Node *n, Node *dy) {
  Attr a = n->a;
  a.f[0] = 0;
  acc(ad, n->in[0], op1(ad, OP_TRIL, dy, &a));
}

/* where(c, a, b): a takes dy where c is nonzero, b elsewhere; c none. */
static void vjp_where(AD *ad, Node *n, Node *dy) {
  Node *zero = ir_scalar(ad->g, 0);
  for (int j = 1; j < 3; j++)
    if (needs(ad, n->in[j])) {
      Node *in[3] = {n->in[0], j == 1 ? dy : zero, j == 1 ? zero : dy};
      acc_sum(ad, n->in[j], ir_build(ad->g, OP_WHERE, in, 3, NULL, n->loc));
    }
}

/* normalize(x, mean, var) with mean and var the statistics of x over the
 * mask (sema builds it so): the gradient of the whole normalization, to x
 * alone, as one NORMALIZE_BWD; the statistics pass none (theirs is in it). */
static void vjp_normalize(AD *ad, Node *n, Node *dy) {
  Node *in[4] = {dy, n->in[0], n->in[1], n->in[2]};
  acc(ad, n->in[0], ir_build(ad->g, OP_NORMALIZE_BWD, in, 4, &n->a, n->loc));
}

/* maximum/minimum: the winner takes dy, ties split it evenly. */
static void vjp_minmax(AD *ad, Node *n, Node *dy) {
  Node *a = n->in[0], *b = n->in[1];
  Op win_a = n->op == OP_MAXIMUM ? OP_GT : OP_LT, win_b = n->op == OP_MAXIMUM ? OP_LT : OP_GT;
  Node *tie = mul(ad, ir_bin(ad->g, OP_EQ, a, b), num(ad, 0.5));
  if (needs(ad, a)) acc_sum(ad, a, mul(ad, dy, add(ad, ir_bin(ad->g, win_a, a, b), tie)));
  if (needs(ad, b)) acc_sum(ad, b, mul(ad, dy, add(ad, ir_bin(ad->g, win_b, a, b), tie)));
}

/* ------------------------------------------------- elementwise unary */

/* Unary rules: dx = dy * f'(x, y). */
static void acc_un(AD *ad, Node *n, Node *dy, Node *deriv) { acc(ad, n->in[0], mul(ad, dy, deriv)); }

static void vjp_neg(AD *ad, Node *n, Node *dy) { acc(ad, n->in[0], un(ad, OP_NEG, dy)); }

/* x**p: p * x**(p-1). */
static void vjp_pow(AD *ad, Node *n, Node *dy) {
  double p = n->a.f[0];
  Node *x = n->in[0];
  if (p == 0) return;
  Node *d = x;
  if (p - 1 != 1) {
    Attr a = attr_zero();
    a.f[0] = p - 1;
    d = p - 1 == 0 ? num(ad, 1) : op1(ad, OP_POW, x, &a);
  }
  acc(ad, x, ir_expand(ad->g, mul(ad, mul(ad, dy, num(ad, p)), d), &x->shape));
}

static void vjp_relu(AD *ad, Node *n, Node *dy) { acc_un(ad, n, dy, cmp(ad, OP_GT, n->in[0], 0)); }

static void vjp_sigmoid(AD *ad, Node *n, Node *dy) {
  acc_un(ad, n, dy, mul(ad, n, sub(ad, num(ad, 1), n)));
}

static void vjp_tanh(AD *ad, Node *n, Node *dy) {
  acc_un(ad, n, dy, sub(ad, num(ad, 1), mul(ad, n, n)));
}

static void vjp_exp(AD *ad, Node *n, Node *dy) { acc_un(ad, n, dy, n); }
static void vjp_log(AD *ad, Node *n, Node *dy) { acc(ad, n->in[0], dvd(ad, dy, n->in[0])); }

/* sqrt: dy / (2 y). */
static void vjp_sqrt(AD *ad, Node *n, Node *dy) {
  acc(ad, n->in[0], dvd(ad, dy, mul(ad, n, num(ad, 2))));
}

static void vjp_abs(AD *ad, Node *n, Node *dy) { acc_un(ad, n, dy, un(ad, OP_SIGN, n->in[0])); }

/* softplus: sigmoid(x), exactly 1 above PyTorch's threshold 20. */
static void vjp_softplus(AD *ad, Node *n, Node *dy) {
  Node *x = n->in[0];
  Node *lin = cmp(ad, OP_GT, x, 20);
  Node *d = add(ad, lin, mul(ad, sub(ad, num(ad, 1), lin), un(ad, OP_SIGMOID, x)));
  acc_un(ad, n, dy, d);
}

/* elu: 1 where x > 0, else y + alpha. */
static void vjp_elu(AD *ad, Node *n, Node *dy) {
  Node *pos = cmp(ad, OP_GT, n->in[0], 0);
  Node *negd = add(ad, n, num(ad, n->a.f[0]));
  acc_un(ad, n, dy, add(ad, pos, mul(ad, sub(ad, num(ad, 1), pos), negd)));
}

static void vjp_leaky_relu(AD *ad, Node *n, Node *dy) {
  Node *pos = cmp(ad, OP_GT, n->in[0], 0);
  Node *d = add(ad, pos, mul(ad, sub(ad, num(ad, 1), pos), num(ad, n->a.f[0])));
  acc_un(ad, n, dy, d);
}

/* gelu(x) = x Phi(x): Phi(x) + x phi(x). */
static void vjp_gelu(AD *ad, Node *n, Node *dy) {
  Node *x = n->in[0];
  Node *cdf = mul(ad, add(ad, un(ad, OP_ERF, mul(ad, x, num(ad, M_SQRT1_2))), num(ad, 1)), num(ad, 0.5));
  Node *e = un(ad, OP_EXP, mul(ad, mul(ad, x, x), num(ad, -0.5)));
  Node *pdf = mul(ad, e, num(ad, 0.5 * M_2_SQRTPI * M_SQRT1_2));
  acc_un(ad, n, dy, add(ad, cdf, mul(ad, x, pdf)));
}

/* clamp: 1 where lo <= x <= hi. */
static void vjp_clamp(AD *ad, Node *n, Node *dy) {
  Node *x = n->in[0];
  acc_un(ad, n, dy, mul(ad, cmp(ad, OP_GE, x, n->a.f[0]), cmp(ad, OP_LE, x, n->a.f[1])));
}

/* erf: 2/sqrt(pi) exp(-x^2). */
static void vjp_erf(AD *ad, Node *n, Node *dy) {
  Node *x = n->in[0];
  Node *e = un(ad, OP_EXP, un(ad, OP_NEG, mul(ad, x, x)));
  acc_un(ad, n, dy, mul(ad, e, num(ad, M_2_SQRTPI)));
}

/* -------------------------------------------------------- reductions */

/* dy of a reduction of x, broadcast back to x's shape (keepdims first). */
static Node *unreduce(AD *ad, Node *n, Node *dy) {
  Node *x = n->in[0];
  Shape k = keep_shape(&x->shape, n->a.i[0]);
  return ir_expand(ad->g, ir_reshape(ad->g, dy, &k), &x->shape);
}

static void vjp_sum(AD *ad, Node *n, Node *dy) { acc(ad, n->in[0], unreduce(ad, n, dy)); }

static void vjp_mean(AD *ad, Node *n, Node *dy) {
  Node *x = n->in[0];
  int64_t cnt = shape_numel(&x->shape) / shape_numel(&n->shape);
  acc(ad, x, dvd(ad, unreduce(ad, n, dy), num(ad, (double)cnt)));
}

/* max: dy goes to the positions equal to the max, split evenly among ties
 * (PyTorch amax). */
static void vjp_max(AD *ad, Node *n, Node *dy) {
  Node *x = n->in[0];
  Shape k = keep_shape(&x->shape, n->a.i[0]);
  Node *mask = ir_bin(ad->g, OP_EQ, x, ir_reshape(ad->g, n, &k));
  Node *cnt = reduce(ad, OP_SUM, mask, n->a.i[0], 1);
  Node *share = dvd(ad, ir_reshape(ad->g, dy, &k), cnt);
  acc(ad, x, mul(ad, mask, share));
}

/* ------------------------------------------------------------- shape */

static void vjp_reshape(AD *ad, Node *n, Node *dy) {
  acc(ad, n->in[0], ir_reshape(ad->g, dy, &n->in[0]->shape));
}

static void vjp_expand(AD *ad, Node *n, Node *dy) { acc_sum(ad, n->in[0], dy); }

static void vjp_transpose(AD *ad, Node *n, Node *dy) {
  int inv[MAX_RANK];
  for (int k = 0; k < n->shape.rank; k++) inv[n->a.i[k]] = k;
  acc(ad, n->in[0], transpose(ad, dy, inv));
}

static void vjp_slice(AD *ad, Node *n, Node *dy) {
  Attr a = attr_with_shape(n, &n->in[0]->shape);
  acc(ad, n->in[0], op1(ad, OP_SLICE_BWD, dy, &a));
}

/* slice_bwd is linear in its operand: its adjoint is the slice. */
static void vjp_slice_bwd(AD *ad, Node *n, Node *dy) {
  Attr a = attr_with_shape(n, &n->in[0]->shape);
  acc(ad, n->in[0], op1(ad, OP_SLICE, dy, &a));
}

static void vjp_concat(AD *ad, Node *n, Node *dy) {
  int ax = (int)n->a.i[0];
  int64_t off = 0;
  for (int k = 0; k < n->nin; k++) {
    Node *x = n->in[k];
    if (needs(ad, x)) {
      Attr a = attr_zero();
      a.i[ax] = off;
      a.shape = x->shape;
      acc(ad, x, op1(ad, OP_SLICE, dy, &a));
    }
    off += x->shape.dim[ax];
  }
}

/* ------------------------------------------------------------ matmul */

/* [M,K]@[K,N] and [B,M,K]@[B,K,N]: dA = dy B^T, dB = A^T dy.
 * [B,M,K]@[K,N]: dB sums over the batch, as [B*M,K]^T @ [B*M,N]. */
static void vjp_matmul(AD *ad, Node *n, Node *dy) {
  Node *a = n->in[0], *b = n->in[1];
  if (needs(ad, a)) acc(ad, a, op2(ad, OP_MATMUL, dy, swap_last(ad, b), NULL));
  if (!needs(ad, b)) return;
  if (a->shape.rank == b->shape.rank) {
    acc(ad, b, op2(ad, OP_MATMUL, swap_last(ad, a), dy, NULL));
    return;
  }
  int64_t bm = a->shape.dim[0] * a->shape.dim[1];
  Shape sa = {2, {bm, a->shape.dim[2]}}, sd = {2, {bm, dy->shape.dim[2]}};
  Node *a2 = ir_reshape(ad->g, a, &sa), *d2 = ir_reshape(ad->g, dy, &sd);
  acc(ad, b, op2(ad, OP_MATMUL, swap_last(ad, a2), d2, NULL));
}

/* ------------------------------------------------------------ neural */

/* softmax: y * (dy - sum(dy*y, axis, keepdims)). */
static void vjp_softmax(AD *ad, Node *n, Node *dy) {
  Node *s = reduce(ad, OP_SUM, mul(ad, dy, n), (int64_t)1 << n->a.i[0], 1);
  acc(ad, n->in[0], mul(ad, n, sub(ad, dy, s)));
}

/* attention(q, k, v) = o: flash attention's backward, the scores never
 * stored: the rows' log-sum-exps again (ATTN_LSE), delta = rowsum(dy * o),
 * then one ATTN_BWD per operand that wants a gradient. */
static void vjp_attn(AD *ad, Node *n, Node *dy) {
  Node *lse = op2(ad, OP_ATTN_LSE, n->in[0], n->in[1], &n->a);
  Node *delta = reduce(ad, OP_SUM, mul(ad, dy, n), (int64_t)1 << 2, 0);
  for (int j = 0; j < 3; j++) {
    if (!needs(ad, n->in[j])) continue;
    Attr a = n->a;
    a.i[2] = j;
    Node *in[6] = {n->in[0], n->in[1], n->in[2], dy, lse, delta};
    acc(ad, n->in[j], ir_build(ad->g, OP_ATTN_BWD, in, 6, &a, n->loc));
  }
}

/* log_softmax: dy - exp(y) * sum(dy, axis, keepdims). */
static void vjp_log_softmax(AD *ad, Node *n, Node *dy) {
  Node *s = reduce(ad, OP_SUM, dy, (int64_t)1 << n->a.i[0], 1);
  acc(ad, n->in[0], sub(ad, dy, mul(ad, un(ad, OP_EXP, n), s)));
}

/* The same mask (same key, same step) applied to dy. */
static void vjp_dropout(AD *ad, Node *n, Node *dy) { acc(ad, n->in[0], op1(ad, OP_DROPOUT, dy, &n->a)); }

/* cross_entropy: (softmax(z) - one_hot(labels)) * dy / N, one node whose
 * kernel writes each row once (CE_BWD). */
static void vjp_cross_entropy(AD *ad, Node *n, Node *dy) {
  Node *in[3] = {n->in[0], n->in[1], dy};
  acc(ad, n->in[0], ir_build(ad->g, OP_CE_BWD, in, 3, NULL, n->loc));
}

/* mse: 2 (a - b) / numel * dy; the negation for b. */
static void vjp_mse(AD *ad, Node *n, Node *dy) {
  Node *a = n->in[0], *b = n->in[1];
  Node *scale = mul(ad, dy, num(ad, 2.0 / (double)shape_numel(&a->shape)));
  Node *da = mul(ad, sub(ad, a, b), scale);
  acc(ad, a, da);
  if (needs(ad, b)) acc(ad, b, un(ad, OP_NEG, da));
}

/* bce_logits: (sigmoid(z) - t)/numel * dy for z; -z/numel * dy for t. */
static void vjp_bce_logits(AD *ad, Node *n, Node *dy) {
  Node *z = n->in[0], *t = n->in[1];
  Node *scale = dvd(ad, dy, num(ad, (double)shape_numel(&z->shape)));
  if (needs(ad, z)) acc(ad, z, mul(ad, sub(ad, un(ad, OP_SIGMOID, z), t), scale));
  if (needs(ad, t)) acc(ad, t, mul(ad, un(ad, OP_NEG, z), scale));
}

/* ------------------------------------------------ convolution, pooling */

static void vjp_conv2d(AD *ad, Node *n, Node *dy) {
  Node *x = n->in[0], *w = n->in[1];
  Attr ax = attr_with_shape(n, &x->shape), aw = attr_with_shape(n, &w->shape);
  if (needs(ad, x)) acc(ad, x, op2(ad, OP_CONV2D_BWD_X, dy, w, &ax));
  if (needs(ad, w)) acc(ad, w, op2(ad, OP_CONV2D_BWD_W, x, dy, &aw));
}

/* y's leading part of d's shape: a conv2d of an input with rows past
 * those dy covered (conv_transpose2d's output_padding >= stride) has more
 * outputs than that dy. */
static Node *crop_to(AD *ad, Node *y, const Node *d) {
  if (shape_eq(&y->shape, &d->shape)) return y;
  Attr a = attr_zero();
  a.shape = d->shape;
  return op1(ad, OP_SLICE, y, &a);
}

/* conv2d_bwd_x(d, w) is bilinear: <G, bwd_x(d, w)> = <conv2d(G, w), d>. */
static void vjp_conv2d_bwd_x(AD *ad, Node *n, Node *dy) {
  Node *d = n->in[0], *w = n->in[1];
  Attr a = attr_with_shape(n, &w->shape);
  if (needs(ad, d)) acc(ad, d, crop_to(ad, op2(ad, OP_CONV2D, dy, w, &a), d));
  if (needs(ad, w)) acc(ad, w, op2(ad, OP_CONV2D_BWD_W, dy, d, &a));
}

/* conv2d_bwd_w(x, d): <G, bwd_w(x, d)> = <conv2d(x, G), d>. */
static void vjp_conv2d_bwd_w(AD *ad, Node *n, Node *dy) {
  Node *x = n->in[0], *d = n->in[1];
  Attr a = attr_with_shape(n, &x->shape);
  if (needs(ad, d)) acc(ad, d, crop_to(ad, op2(ad, OP_CONV2D, x, dy, &a), d));
  if (needs(ad, x)) acc(ad, x, op2(ad, OP_CONV2D_BWD_X, d, dy, &a));
}

static void vjp_maxpool2d(AD *ad, Node *n, Node *dy) {
  Attr a = attr_with_shape(n, &n->in[0]->shape);
  acc(ad, n->in[0], op2(ad, OP_MAXPOOL2D_BWD, n->in[0], dy, &a));
}

/* Routing dy to each window's arg-max has no adjoint among the ops: the
 * second derivative through max pooling is reported, not guessed. */
static void vjp_maxpool2d_bwd(AD *ad, Node *n, Node *dy) {
  (void)dy;
  if (!needs(ad, n->in[1])) return;
  diag_error(ad->d, n->loc, "the gradient of maxpool2d's gradient is not supported");
  ad->failed = 1;
}

static void vjp_avgpool2d(AD *ad, Node *n, Node *dy) {
  Attr a = attr_with_shape(n, &n->in[0]->shape);
  acc(ad, n->in[0], op1(ad, OP_AVGPOOL2D_BWD, dy, &a));
}

/* avgpool2d_bwd is linear: its adjoint is the pooling itself. */
static void vjp_avgpool2d_bwd(AD *ad, Node *n, Node *dy) {
  acc(ad, n->in[0], op1(ad, OP_AVGPOOL2D, dy, &n->a));
}

/* -------------------------------------------------------- rule table */

#define vjp_none NULL  /* no gradient passes (F_NOGRAD) */

/* The gradient rule of each op: ops.def's vjp column names vjp_<vjp>. */
static const VjpRule rules[OP_COUNT] = {
#define OP(e, name, nin, flags, shape, kernel, vjp, ...) [OP_##e] = vjp_##vjp,
#include "ir/ops.def"
};

int autodiff_has_rule(Op op) { return op >= 0 && op < OP_COUNT && rules[op] != NULL; }

/* --------------------------------------------------------------- pass */

/* need[i]: node i is f32, passes gradients, and depends on a param that is
 * not frozen (a step's graph differentiates with respect to its params only)
 * or on an input marked wrt. */
static void mark_need(AD *ad) {
  for (int i = 0; i < ad->nfwd; i++) {
    Node *n = ad->g->nodes[i];
    int fl = op_info[n->op].flags;
    if (n->op == OP_PARAM) { ad->need[i] = !n->frozen; continue; }
    if (n->op == OP_INPUT && n->wrt && n->dt == DT_F32) { ad->need[i] = 1; continue; }
    if ((fl & (F_LEAF | F_NOGRAD)) || n->dt != DT_F32) continue;
    for (int k = 0; k < n->nin && !ad->need[i]; k++) ad->need[i] = ad->need[n->in[k]->id];
  }
}

/* Applies n's rule with its gradient; new nodes take n's location. */
static void backprop_node(AD *ad, Node *n) {
  Node *dy = ad->grad[n->id];
  int first = ad->g->nnodes;
  NNDC_ASSERT(rules[n->op] != NULL);
  rules[n->op](ad, n, dy);
  for (int i = first; i < ad->g->nnodes; i++) ad->g->nodes[i]->loc = n->loc;
}

static void set_grads(AD *ad) {
  Graph *g = ad->g;
  g->grads = arena_alloc(g->arena, sizeof(Node *) * (size_t)(g->nparams ? g->nparams : 1));
  for (int i = 0; i < g->nparams; i++) {
    Node *p = g->params[i].node;
    g->grads[i] = ad->grad[p->id] ? ad->grad[p->id] : ir_const(g, p->loc, &p->shape, 0.0);
  }
  g->input_grads = NULL;
  for (int i = 0; i < g->ninputs; i++) {
    Node *x = g->inputs[i].node;
    if (!x->wrt || x->dt != DT_F32) continue;
    if (!g->input_grads) g->input_grads = arena_alloc(g->arena, sizeof(Node *) * (size_t)g->ninputs);
    g->input_grads[i] = ad->grad[x->id] ? ad->grad[x->id] : ir_const(g, x->loc, &x->shape, 0.0);
  }
}

int pass_autodiff(Diag *d, Graph *g) { return pass_autodiff_of(d, g, g->loss); }

Node *autodiff_top_logit(Diag *d, Graph *g) {
  Node *o = g->noutputs ? g->outputs[0].node : NULL;
  if (!o || o->dt != DT_F32 || o->shape.rank < 1) {
    diag_error(d, o ? o->loc : (Loc){0}, "the top logit needs a first output of f32 logits [..., C]");
    return NULL;
  }
  int last = o->shape.rank - 1;
  if ((o->op == OP_SOFTMAX || o->op == OP_LOG_SOFTMAX) && o->a.i[0] == last) o = o->in[0];
  Attr a;
  memset(&a, 0, sizeof a);
  a.i[0] = (int64_t)1 << last;
  Node *top = ir_build(g, OP_MAX, &o, 1, &a, o->loc);
  a.i[0] = 0;
  return ir_build(g, OP_SUM, &top, 1, &a, o->loc);
}

int pass_autodiff_of(Diag *d, Graph *g, Node *loss) {
  Loc none = {0};
  if (!loss) {
    diag_error(d, none, "the model has no loss to differentiate");
    return -1;
  }
  if (loss->dt != DT_F32 || shape_numel(&loss->shape) != 1) {
    char b[96];
    diag_error(d, loss->loc, "the loss must be a one-element f32 tensor, got %s",
               shape_str(&loss->shape, loss->dt, b, sizeof b));
    return -1;
  }
  pass_attention(g, ATTN_MIN_KEYS);  /* the fused attention's gradient never stores the scores */
  AD ad = {g, d, g->nnodes, NULL, NULL, 0};
  ad.grad = arena_alloc(g->arena, sizeof(Node *) * (size_t)(ad.nfwd + 1));
  ad.need = arena_alloc(g->arena, (size_t)ad.nfwd + 1);
  mark_need(&ad);
  if (ad.need[loss->id])
    ad.grad[loss->id] = ir_const(g, loss->loc, &loss->shape, 1.0);
  for (int i = ad.nfwd - 1; i >= 0 && !ad.failed; i--) {
    Node *n = g->nodes[i];
    if (ad.grad[i] && !(op_info[n->op].flags & F_LEAF)) backprop_node(&ad, n);
  }
  if (ad.failed) return -1;
  set_grads(&ad);
  return 0;
}
