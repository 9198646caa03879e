/* onnx_ops.c - one handler per ONNX op for the importer (onnx_import.c
 * walks the graph and calls them through ox_find_op): each reads its node's
 * inputs and attributes, checks what nnd can express (reporting the node,
 * its op type and the reason otherwise), and defines its outputs as nnd
 * expressions (ox_result), constants folded at import time
 * (ox_const_result) or aliases (ox_alias).  RNN, GRU and LSTM are unrolled
 * as a cell fn and a for loop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "onnx_imp.h"

/* ------------------------------------------------------------ op handlers */

static int op_binary(Imp *m) {
  const char *op = m->node->op_type;
  Val *a = ox_need_in(m, 0), *b = ox_need_in(m, 1);
  if (!a || !b) return -1;
  int cmp = !strcmp(op, "Equal") || !strcmp(op, "Less") || !strcmp(op, "Greater") || !strcmp(op, "LessOrEqual") ||
            !strcmp(op, "GreaterOrEqual");
  if (a->is_const && b->is_const && (a->vt == VT_I32 || cmp)) return ox_fold_binary(m, op, a, b, cmp ? VT_BOOL : a->vt);
  if (!cmp && (ox_float_operand(m, a) || ox_float_operand(m, b))) return -1;
  Val *v[2] = {a, b};
  int rank;
  int64_t dim[MAX_RANK];
  if (ox_broadcast(m, v, 2, &rank, dim)) return -1;
  const char *sym = NULL;
  int prec = P_ADD;
  m->lit_rank = rank;
  if (!strcmp(op, "Add")) sym = "+";
  else if (!strcmp(op, "Sub")) sym = "-";
  else if (!strcmp(op, "Mul")) sym = "*", prec = P_MUL;
  else if (!strcmp(op, "Div")) sym = "/", prec = P_MUL;
  else if (!strcmp(op, "Equal")) sym = "==", prec = P_CMP;
  else if (!strcmp(op, "Less")) sym = "<", prec = P_CMP;
  else if (!strcmp(op, "Greater")) sym = ">", prec = P_CMP;
  else if (!strcmp(op, "LessOrEqual")) sym = "<=", prec = P_CMP;
  else sym = ">=", prec = P_CMP;
  int lp = prec == P_CMP ? P_ADD : prec, rp = prec == P_CMP ? P_ADD : prec + 1;
  const char *x = ox_operand(m, a, lp), *y = ox_operand(m, b, rp);
  if (!x || !y) return -1;
  return ox_result(m, 0, arena_printf(m->a, "%s %s %s", x, sym, y), prec, cmp ? VT_BOOL : VT_F32, rank, dim, 0) ? 0 : -1;
}

static int op_pow(Imp *m) {
  Val *a = ox_need_in(m, 0), *b = ox_need_in(m, 1);
  if (!a || !b || ox_float_operand(m, a)) return -1;
  if (!b->is_const || b->n != 1) return ox_unsupported(m, "an exponent that is not one constant");
  const char *x = ox_operand(m, a, P_ATOM);
  if (!x) return -1;
  int rank;
  int64_t dim[MAX_RANK];
  Val *v[2] = {a, b};
  if (ox_broadcast(m, v, 2, &rank, dim)) return -1;
  return ox_result(m, 0, arena_printf(m->a, "%s ** %s", x, ox_num_text(m, b->c[0])), P_POW, VT_F32, rank, dim, 0) ? 0 : -1;
}

/* Max, Min, Sum, Mean of any number of inputs. */
static int op_variadic(Imp *m) {
  const char *op = m->node->op_type;
  int n = (int)m->node->n_input;
  if (n < 1 || n > 64) return ox_node_err(m, "%d inputs", n);
  Val *v[64] = {0};
  for (int k = 0; k < n; k++)
    if (!(v[k] = ox_need_in(m, k)) || ox_float_operand(m, v[k])) return -1;
  int rank;
  int64_t dim[MAX_RANK];
  if (ox_broadcast(m, v, n, &rank, dim)) return -1;
  int sum = !strcmp(op, "Sum") || !strcmp(op, "Mean");
  m->lit_rank = rank;
  const char *e = ox_operand(m, v[0], sum ? P_ADD : 0);
  if (!e) return -1;
  int prec = n == 1 ? v[0]->prec : sum ? P_ADD : P_ATOM;
  for (int k = 1; k < n; k++) {
    const char *y = ox_operand(m, v[k], sum ? P_ADD + 1 : 0);
    if (!y) return -1;
    e = sum ? arena_printf(m->a, "%s + %s", e, y)
            : arena_printf(m->a, "%s(%s, %s)", !strcmp(op, "Max") ? "maximum" : "minimum", e, y);
  }
  if (!strcmp(op, "Mean")) {
    e = arena_printf(m->a, "%s / %d", ox_paren(m, e, prec, P_MUL), n);
    prec = P_MUL;
  }
  return ox_result(m, 0, e, prec, VT_F32, rank, dim, 0) ? 0 : -1;
}

static int op_unary(Imp *m) {
  const char *op = m->node->op_type;
  Val *a = ox_need_in(m, 0);
  if (!a || ox_float_operand(m, a)) return -1;
  static const struct { const char *onnx, *fn; } map[] = {
    {"Abs", "abs"}, {"Sqrt", "sqrt"}, {"Exp", "exp"}, {"Log", "log"}, {"Relu", "relu"}, {"Sigmoid", "sigmoid"},
    {"Tanh", "tanh"}, {"Softplus", "softplus"}, {"Erf", "erf"}};
  const char *e = NULL;
  int prec = P_ATOM;
  if (!strcmp(op, "Neg")) {
    const char *x = ox_operand(m, a, P_UNARY);
    if (!x) return -1;
    e = arena_printf(m->a, "-%s", x);
    prec = P_UNARY;
  } else if (!strcmp(op, "Reciprocal")) {
    const char *x = ox_operand(m, a, P_MUL + 1);
    if (!x) return -1;
    e = arena_printf(m->a, "1 / %s", x);
    prec = P_MUL;
  } else {
    const char *x = ox_operand(m, a, 0);
    if (!x) return -1;
    int xp = a->is_const ? P_ATOM : a->prec;   /* x's precedence (a literal is an atom) */
    if (!strcmp(op, "HardSigmoid"))
      e = arena_printf(m->a, "clamp(%s * %s + %s, 0, 1)", ox_num_text(m, (float)ox_attr_f(m, "alpha", 0.2)), ox_paren(m, x, xp, P_MUL + 1),
                       ox_num_text(m, (float)ox_attr_f(m, "beta", 0.5)));
    else if (!strcmp(op, "HardSwish"))
      e = arena_printf(m->a, "%s * clamp(%s / 6 + 0.5, 0, 1)", ox_paren(m, x, xp, P_MUL), ox_paren(m, x, xp, P_MUL)), prec = P_MUL;
    else if (!strcmp(op, "Softsign")) e = arena_printf(m->a, "%s / (1 + abs(%s))", ox_paren(m, x, xp, P_MUL), x), prec = P_MUL;
    else if (!strcmp(op, "Selu"))
      prec = P_MUL, e = arena_printf(m->a, "%s * elu(%s, alpha=%s)", ox_num_text(m, (float)ox_attr_f(m, "gamma", 1.05070102214813232421875)), x,
                       ox_num_text(m, (float)ox_attr_f(m, "alpha", 1.67326319217681884765625)));
    else if (!strcmp(op, "Celu")) {
      const char *al = ox_num_text(m, (float)ox_attr_f(m, "alpha", 1.0));
      e = arena_printf(m->a, "%s * elu(%s / %s)", al, ox_paren(m, x, xp, P_MUL), al);
      prec = P_MUL;
    } else if (!strcmp(op, "ThresholdedRelu"))
      e = arena_printf(m->a, "where(%s > %s, %s, 0)", ox_paren(m, x, xp, P_ADD), ox_num_text(m, (float)ox_attr_f(m, "alpha", 1.0)), x);
    else if (!strcmp(op, "Mish")) e = arena_printf(m->a, "%s * tanh(softplus(%s))", ox_paren(m, x, xp, P_MUL), x), prec = P_MUL;
    else if (!strcmp(op, "LeakyRelu")) e = arena_printf(m->a, "leaky_relu(%s, slope=%s)", x, ox_num_text(m, (float)ox_attr_f(m, "alpha", 0.01)));
    else if (!strcmp(op, "Elu")) {
      double al = ox_attr_f(m, "alpha", 1.0);
      e = al == 1.0 ? arena_printf(m->a, "elu(%s)", x) : arena_printf(m->a, "elu(%s, alpha=%s)", x, ox_num_text(m, (float)al));
    } else if (!strcmp(op, "Gelu")) {
      if (strcmp(ox_attr_s(m, "approximate", "none"), "none")) return ox_unsupported(m, "Gelu with approximate='tanh'");
      e = arena_printf(m->a, "gelu(%s)", x);
    } else {
      for (size_t k = 0; k < sizeof map / sizeof *map; k++)
        if (!strcmp(op, map[k].onnx)) e = arena_printf(m->a, "%s(%s)", map[k].fn, x);
    }
  }
  NNDC_ASSERT(e);
  return ox_result(m, 0, e, prec, VT_F32, a->rank, a->dim, 0) ? 0 : -1;
}

static int op_clip(Imp *m) {
  Val *a = ox_need_in(m, 0);
  if (!a || ox_float_operand(m, a)) return -1;
  double lo = -INFINITY, hi = INFINITY;
  if (m->opset < 11) {
    lo = ox_attr_f(m, "min", -INFINITY);
    hi = ox_attr_f(m, "max", INFINITY);
  } else {
    Val *l = ox_in(m, 1), *h = ox_in(m, 2);
    if ((l && (!l->is_const || l->n != 1)) || (h && (!h->is_const || h->n != 1)))
      return ox_unsupported(m, "Clip bounds that are not constants");
    if (l) lo = l->c[0];
    if (h) hi = h->c[0];
  }
  const char *x = ox_operand(m, a, 0);
  if (!x) return -1;
  const char *e;
  if (isinf(lo) && isinf(hi)) return ox_alias(m, 0, a, VT_F32);
  if (isinf(hi)) e = lo == 0 ? arena_printf(m->a, "relu(%s)", x) : arena_printf(m->a, "maximum(%s, %s)", x, ox_num_text(m, (float)lo));
  else if (isinf(lo)) e = arena_printf(m->a, "minimum(%s, %s)", x, ox_num_text(m, (float)hi));
  else e = arena_printf(m->a, "clamp(%s, %s, %s)", x, ox_num_text(m, (float)lo), ox_num_text(m, (float)hi));
  return ox_result(m, 0, e, P_ATOM, VT_F32, a->rank, a->dim, 0) ? 0 : -1;
}

static int op_where(Imp *m) {
  Val *c = ox_need_in(m, 0), *a = ox_need_in(m, 1), *b = ox_need_in(m, 2);
  if (!c || !a || !b || ox_float_operand(m, a) || ox_float_operand(m, b)) return -1;
  Val *v[3] = {c, a, b};
  int rank;
  int64_t dim[MAX_RANK];
  if (ox_broadcast(m, v, 3, &rank, dim)) return -1;
  m->lit_rank = rank;
  const char *x = ox_operand(m, c, 0), *y = ox_operand(m, a, 0), *z = ox_operand(m, b, 0);
  if (!x || !y || !z) return -1;
  return ox_result(m, 0, arena_printf(m->a, "where(%s, %s, %s)", x, y, z), P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
}

/* PRelu: where(x < 0, slope * x, x) (the slope broadcasts). */
static int op_prelu(Imp *m) {
  Val *a = ox_need_in(m, 0), *sl = ox_need_in(m, 1);
  if (!a || !sl || ox_float_operand(m, a) || ox_float_operand(m, sl)) return -1;
  Val *v[2] = {a, sl};
  int rank;
  int64_t dim[MAX_RANK];
  if (ox_broadcast(m, v, 2, &rank, dim)) return -1;
  m->lit_rank = rank;
  const char *x = ox_operand(m, a, P_MUL + 1), *s = ox_operand(m, sl, P_MUL);
  if (!x || !s) return -1;
  return ox_result(m, 0, arena_printf(m->a, "where(%s < 0, %s * %s, %s)", x, s, x, x), P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
}

/* And, Or, Xor of bool (f32 0/1) tensors. */
static int op_logic(Imp *m) {
  const char *op = m->node->op_type;
  Val *a = ox_need_in(m, 0), *b = ox_need_in(m, 1);
  if (!a || !b) return -1;
  if (a->vt != VT_BOOL || b->vt != VT_BOOL) return ox_unsupported(m, "a logical op of non-bool tensors");
  Val *v[2] = {a, b};
  int rank;
  int64_t dim[MAX_RANK];
  if (ox_broadcast(m, v, 2, &rank, dim)) return -1;
  m->lit_rank = rank;
  int and = !strcmp(op, "And"), or = !strcmp(op, "Or");
  const char *x = ox_operand(m, a, and ? P_MUL : or ? 0 : P_ADD), *y = ox_operand(m, b, and ? P_MUL + 1 : or ? 0 : P_ADD);
  if (!x || !y) return -1;
  const char *e = and ? arena_printf(m->a, "%s * %s", x, y) : or ? arena_printf(m->a, "maximum(%s, %s)", x, y)
                      : arena_printf(m->a, "%s != %s", x, y);
  return ox_result(m, 0, e, and ? P_MUL : or ? P_ATOM : P_CMP, VT_BOOL, rank, dim, 0) ? 0 : -1;
}

/* Trilu: tril(x, k) for the lower part; the upper part is x - tril(x, k - 1). */
static int op_trilu(Imp *m) {
  Val *x = ox_need_in(m, 0), *kv = ox_in(m, 1);
  if (!x || ox_float_operand(m, x)) return -1;
  if (x->rank < 2) return ox_node_err(m, "the input must have rank >= 2");
  int64_t k = 0;
  if (kv) {
    if (!kv->is_const || kv->n != 1) return ox_unsupported(m, "a diagonal k computed at run time");
    k = ox_i64(kv->c[0]);
  }
  int upper = (int)ox_attr_i(m, "upper", 1);
  const char *xs = ox_operand(m, x, upper ? P_ADD : 0);
  if (!xs) return -1;
  if (upper && x->prec < P_ATOM && !x->name) return ox_unsupported(m, "Trilu of an inlined expression");
  const char *kt = ox_num_text(m, (double)(upper ? k - 1 : k));
  const char *e = upper ? arena_printf(m->a, "%s - tril(%s, k=%s)", xs, xs, kt) : arena_printf(m->a, "tril(%s, k=%s)", xs, kt);
  return ox_result(m, 0, e, upper ? P_ADD : P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
}

/* RandomNormal, RandomUniform (a static shape) and their *Like (the
 * input's shape, symbolic dims kept): `mean + scale * randn([...])`,
 * `low + (high - low) * rand([...])`, each its own statement (one draw per
 * node).  The draws are nndc's (its --seed), not those of the seed attribute. */
static int op_random(Imp *m) {
  const char *op = m->node->op_type;
  int like = strstr(op, "Like") != NULL, normal = !strncmp(op, "RandomNormal", 12);
  int64_t dim[MAX_RANK];
  int rank;
  if (like) {
    Val *x = ox_need_in(m, 0);
    if (!x) return -1;
    rank = x->rank;
    memcpy(dim, x->dim, sizeof(int64_t) * (size_t)rank);
  } else if ((rank = ox_attr_ints(m, "shape", dim, MAX_RANK)) < 0) {
    return -1;
  }
  if (ox_attr_i(m, "dtype", 1) != 1) return ox_unsupported(m, "random numbers of a type other than float");
  const char *sh = ox_list_text(m, dim, rank);
  if (!sh) return ox_unsupported(m, "random numbers of a shape unknown at import time");
  double lo = normal ? ox_attr_f(m, "mean", 0) : ox_attr_f(m, "low", 0);
  double sc = normal ? ox_attr_f(m, "scale", 1) : ox_attr_f(m, "high", 1) - lo;
  const char *e = arena_printf(m->a, "%s(%s)", normal ? "randn" : "rand", sh);
  if (sc != 1) e = arena_printf(m->a, "%s * %s", ox_num_text(m, sc), e);
  if (lo != 0) e = arena_printf(m->a, "%s + %s", ox_num_text(m, lo), e);
  return ox_result(m, 0, e, P_ATOM, VT_F32, rank, dim, 1) ? 0 : -1;
}

static int op_size(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  double *c = arena_alloc(m->a, sizeof(double));
  c[0] = 1;
  for (int k = 0; k < x->rank; k++) {
    if (x->dim[k] < 0) return ox_unsupported(m, "Size of a symbolic shape");
    c[0] *= (double)x->dim[k];
  }
  return ox_const_result(m, 0, VT_I32, 0, NULL, c, 1) ? 0 : -1;
}

static int op_not(Imp *m) {
  Val *a = ox_need_in(m, 0);
  if (!a) return -1;
  const char *x = ox_operand(m, a, P_ADD);
  if (!x) return -1;
  return ox_result(m, 0, arena_printf(m->a, "%s == 0", x), P_CMP, VT_BOOL, a->rank, a->dim, 0) ? 0 : -1;
}

/* [..., M, K] @ [..., K, N] with broadcast batch axes. */
static int matmul_shape(Imp *m, const Val *a, const Val *b, int *rank, int64_t *dim) {
  if (a->rank < 2 || b->rank < 2) return ox_unsupported(m, "MatMul of a 1-D operand");
  Val ba = *a, bb = *b;
  ba.rank -= 2;
  bb.rank -= 2;
  Val *v[2] = {&ba, &bb};
  if (ox_broadcast(m, v, 2, rank, dim)) return -1;
  int64_t k1 = a->dim[a->rank - 1], k2 = b->dim[b->rank - 2];
  if (k1 >= 0 && k2 >= 0 && k1 != k2)
    return ox_node_err(m, "MatMul of %s and %s", ox_list_text(m, a->dim, a->rank), ox_list_text(m, b->dim, b->rank));
  dim[(*rank)++] = a->dim[a->rank - 2];
  dim[(*rank)++] = b->dim[b->rank - 1];
  return 0;
}

static int op_matmul(Imp *m) {
  Val *a = ox_need_in(m, 0), *b = ox_need_in(m, 1);
  if (!a || !b || ox_float_operand(m, a) || ox_float_operand(m, b)) return -1;
  int rank;
  int64_t dim[MAX_RANK];
  if (matmul_shape(m, a, b, &rank, dim)) return -1;
  const char *x = ox_operand(m, a, P_MUL), *y = ox_operand(m, b, P_MUL + 1);
  if (!x || !y) return -1;
  return ox_result(m, 0, arena_printf(m->a, "%s @ %s", x, y), P_MUL, VT_F32, rank, dim, 0) ? 0 : -1;
}

/* Declares constant b as a param with its two axes swapped (a Gemm's
 * [out, in] weight read once becomes [in, out]: x @ W). */
static void declare_transposed(Imp *m, Val *b) {
  double *c = arena_alloc(m->a, sizeof(double) * (size_t)(b->n ? b->n : 1));
  int64_t r = b->dim[0], cols = b->dim[1];
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < cols; j++) c[j * r + i] = b->c[i * cols + j];
  b->c = c;
  b->dim[0] = cols;
  b->dim[1] = r;
  ox_declare_param(m, b);
}

static int op_gemm(Imp *m) {
  Val *a = ox_need_in(m, 0), *b = ox_need_in(m, 1), *c = ox_in(m, 2);
  if (!a || !b || ox_float_operand(m, a) || ox_float_operand(m, b)) return -1;
  if (a->rank != 2 || b->rank != 2) return ox_node_err(m, "Gemm needs 2-D A and B");
  int ta = (int)ox_attr_i(m, "transA", 0), tb = (int)ox_attr_i(m, "transB", 0);
  double alpha = ox_attr_f(m, "alpha", 1), beta = ox_attr_f(m, "beta", 1);
  const char *x = ta ? arena_printf(m->a, "transpose(%s)", ox_operand(m, a, 0)) : ox_operand(m, a, P_MUL);
  const char *y;
  int64_t M = a->dim[ta ? 1 : 0], N = b->dim[tb ? 0 : 1];
  if (tb && b->is_const && !b->param_done && b->uses == 1 && b->n > 1) {
    declare_transposed(m, b);
    y = b->expr;
  } else if (tb) {
    const char *t = ox_operand(m, b, 0);
    y = t ? arena_printf(m->a, "transpose(%s)", t) : NULL;
  } else {
    y = ox_operand(m, b, P_MUL + 1);
  }
  if (!x || !y) return -1;
  int64_t dim[2] = {M, N};
  const char *e = arena_printf(m->a, "%s @ %s", x, y);
  int prec = P_MUL;
  if (alpha != 1) e = arena_printf(m->a, "%s * %s", ox_num_text(m, (float)alpha), e);
  if (c && beta != 0) {
    if (ox_float_operand(m, c)) return -1;
    m->lit_rank = 2;
    const char *z = ox_operand(m, c, beta == 1 ? P_ADD + 1 : P_MUL + 1);
    if (!z) return -1;
    e = beta == 1 ? arena_printf(m->a, "%s + %s", e, z) : arena_printf(m->a, "%s + %s * %s", e, ox_num_text(m, (float)beta), z);
    prec = P_ADD;
  }
  return ox_result(m, 0, e, prec, VT_F32, 2, dim, 0) ? 0 : -1;
}

/* pads [top, left, bottom, right] from the attribute or auto_pad. */
static int pads4(Imp *m, const Val *x, const int64_t *k, const int64_t *st, const int64_t *dl, int64_t *p) {
  const char *ap = ox_attr_s(m, "auto_pad", "NOTSET");
  p[0] = p[1] = p[2] = p[3] = 0;
  if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
    for (int i = 0; i < 2; i++) {
      int64_t in = x->dim[2 + i];
      if (in < 0) return ox_unsupported(m, "auto_pad on a symbolic dimension");
      int64_t out = (in + st[i] - 1) / st[i];
      int64_t tot = (out - 1) * st[i] + (k[i] - 1) * dl[i] + 1 - in;
      if (tot < 0) tot = 0;
      p[i] = !strcmp(ap, "SAME_UPPER") ? tot / 2 : tot - tot / 2;
      p[i + 2] = tot - p[i];
    }
  } else if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) {
    return ox_unsupported(m, "this auto_pad");
  } else if (!strcmp(ap, "NOTSET")) {
    int n = ox_attr_ints(m, "pads", p, 4);
    if (n < 0) return -1;
    if (n != 0 && n != 4) return ox_unsupported(m, "pads other than 4 values");
  }
  for (int i = 0; i < 4; i++)
    if (p[i] < 0 || p[i] > (1 << 20)) return ox_node_err(m, "invalid pads");
  return 0;
}

static const char *pair_text(Imp *m, const int64_t *v) {
  return v[0] == v[1] ? ox_num_text(m, (double)v[0]) : arena_printf(m->a, "[%lld, %lld]", (long long)v[0], (long long)v[1]);
}

static int attr_pair(Imp *m, const char *name, int64_t def, int64_t *out) {
  out[0] = out[1] = def;
  int64_t v[4];
  int n = ox_attr_ints(m, name, v, 4);
  if (n < 0) return -1;
  if (n == 0) return 0;
  if (n != 2) return ox_unsupported(m, arena_printf(m->a, "%s with %d values (only 2-D is supported)", name, n));
  out[0] = v[0];
  out[1] = v[1];
  if (out[0] < 0 || out[1] < 0 || out[0] > (1 << 20) || out[1] > (1 << 20)) return ox_node_err(m, "invalid %s", name);
  return 0;
}

/* x [n, c, h, w] (dims d) padded by p [top, left, bottom, right] with value v:
 * `concat(full(...), x, full(...), axis=2)` then the same on axis 3. */
static const char *pad_text(Imp *m, const char *xs, const int64_t *d, const int64_t *p, const char *v) {
  const char *n = ox_dim_text(m, d[0]), *c = ox_dim_text(m, d[1]);
  if (!n || !c) {
    ox_unsupported(m, "padding a tensor of unknown shape");
    return NULL;
  }
  int64_t h = d[2] + p[0] + p[2];
  const char *e = xs;
  if (p[0] || p[2])
    e = arena_printf(m->a, "concat(%s%s%s, axis=2)",
                     p[0] ? arena_printf(m->a, "full([%s, %s, %lld, %lld], %s), ", n, c, (long long)p[0], (long long)d[3], v) : "", e,
                     p[2] ? arena_printf(m->a, ", full([%s, %s, %lld, %lld], %s)", n, c, (long long)p[2], (long long)d[3], v) : "");
  if (p[1] || p[3])
    e = arena_printf(m->a, "concat(%s%s%s, axis=3)",
                     p[1] ? arena_printf(m->a, "full([%s, %s, %lld, %lld], %s), ", n, c, (long long)h, (long long)p[1], v) : "", e,
                     p[3] ? arena_printf(m->a, ", full([%s, %s, %lld, %lld], %s)", n, c, (long long)h, (long long)p[3], v) : "");
  return e;
}

static const char *slice_text(Imp *m, const char *xs, int rank, const int64_t *lo, const int64_t *hi, const int64_t *full);

/* The output size and padding of ConvTranspose on axis i: from pads, or
 * auto_pad / output_shape (ONNX's rule); *pb, *pe: the crop at each end. */
static int convt_axis(Imp *m, int i, int64_t in, int64_t k, int64_t st, int64_t dl, int64_t op, int64_t *pb, int64_t *pe,
                      int64_t *out) {
  int64_t os[2], full = (in - 1) * st + op + dl * (k - 1) + 1;
  int nos = ox_attr_ints(m, "output_shape", os, 2);
  const char *ap = ox_attr_s(m, "auto_pad", "NOTSET");
  int same = !strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER");
  if (nos < 0) return -1;
  if (nos && nos != 2) return ox_unsupported(m, "output_shape with other than 2 values");
  if (nos || same) {
    *out = nos ? os[i] : in * st;
    int64_t tot = full - *out;
    int upper = !strcmp(ap, "SAME_UPPER");
    *pb = tot < 0 ? 0 : upper ? tot / 2 : tot - tot / 2;   /* larger than the full result: extended at the end */
    *pe = tot - *pb;
  } else if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) {
    return ox_unsupported(m, "this auto_pad");
  } else {
    *out = full - *pb - *pe;
  }
  if (*out < 1) return ox_node_err(m, "the output would be empty");
  return 0;
}

/* Conv and ConvTranspose (2-D).  Asymmetric pads: a Conv's input is padded
 * explicitly by the difference; a ConvTranspose's result is computed with
 * the smaller pad (and output_padding) and sliced. */
static int op_conv(Imp *m) {
  int tr = !strcmp(m->node->op_type, "ConvTranspose");
  Val *x = ox_need_in(m, 0), *w = ox_need_in(m, 1), *b = ox_in(m, 2);
  if (!x || !w || ox_float_operand(m, x) || ox_float_operand(m, w)) return -1;
  if (x->rank != 4 || w->rank != 4) return ox_unsupported(m, "a convolution that is not 2-D (input [N, C, H, W])");
  int64_t st[2], dl[2], p4[4], pad[2], op[2] = {0, 0}, k[2] = {w->dim[2], w->dim[3]};
  int64_t g = ox_attr_i(m, "group", 1);
  if (attr_pair(m, "strides", 1, st) || attr_pair(m, "dilations", 1, dl)) return -1;
  if (st[0] < 1 || st[1] < 1 || dl[0] < 1 || dl[1] < 1 || g < 1 || g > MAX_DIM) return ox_node_err(m, "invalid strides, dilations or group");
  if (k[0] < 1 || k[1] < 1 || k[0] > (1 << 20) || k[1] > (1 << 20)) return ox_node_err(m, "invalid kernel shape");
  if (x->dim[1] >= 0 && (tr ? x->dim[1] != w->dim[0] : x->dim[1] != ox_mul_sat(w->dim[1], g)))
    return ox_node_err(m, "the input's %lld channels do not match the weight %s with group %lld", (long long)x->dim[1],
                    ox_list_text(m, w->dim, 4), (long long)g);
  if (tr && attr_pair(m, "output_padding", 0, op)) return -1;
  if (tr) {
    p4[0] = p4[1] = p4[2] = p4[3] = 0;
    if (!strcmp(ox_attr_s(m, "auto_pad", "NOTSET"), "NOTSET")) {
      int n = ox_attr_ints(m, "pads", p4, 4);
      if (n < 0) return -1;
      if (n != 0 && n != 4) return ox_unsupported(m, "pads other than 4 values");
    }
  } else if (pads4(m, x, k, st, dl, p4)) {
    return -1;
  }
  int64_t dim[4] = {x->dim[0], tr ? ox_mul_sat(w->dim[1], g) : w->dim[0], 0, 0}, lo[4] = {0, 0, 0, 0}, hi[4], fulld[4];
  int crop = 0;
  for (int i = 0; i < 2; i++) {
    int64_t in = x->dim[2 + i];
    if (in < 0) return ox_unsupported(m, "a convolution over a symbolic spatial dimension");
    if (p4[i] < 0 || p4[i + 2] < 0) return ox_node_err(m, "negative pads");
    pad[i] = p4[i] < p4[i + 2] ? p4[i] : p4[i + 2];
    if (!tr) {
      dim[2 + i] = (in + p4[i] + p4[i + 2] - dl[i] * (k[i] - 1) - 1) / st[i] + 1;
      if (in + p4[i] + p4[i + 2] < dl[i] * (k[i] - 1) + 1) return ox_node_err(m, "the output would be empty");
      continue;
    }
    int64_t pb = p4[i], pe = p4[i + 2], out = 0;
    if (convt_axis(m, i, in, k[i], st[i], dl[i], op[i], &pb, &pe, &out)) return -1;
    pad[i] = pb < pe ? pb : pe;
    if (pad[i] < 0) pad[i] = 0;
    int64_t base = (in - 1) * st[i] - 2 * pad[i] + dl[i] * (k[i] - 1) + 1, start = pb - pad[i];
    op[i] = start + out > base ? start + out - base : 0;
    if (op[i] >= (st[i] > dl[i] ? st[i] : dl[i])) return ox_unsupported(m, "this output_padding or output_shape");
    dim[2 + i] = out;
    lo[2 + i] = start;
    hi[2 + i] = start + out;
    fulld[2 + i] = base + op[i];
    crop |= start != 0 || out != base + op[i];
  }
  const char *xs = ox_operand(m, x, 0), *ws = ox_operand(m, w, 0), *bs = b ? ox_operand(m, b, 0) : NULL;
  if (!xs || !ws || (b && !bs)) return -1;
  if (!tr && (p4[0] != p4[2] || p4[1] != p4[3])) {
    int64_t extra[4] = {p4[0] - pad[0], p4[1] - pad[1], p4[2] - pad[0], p4[3] - pad[1]};
    if (!(xs = pad_text(m, xs, x->dim, extra, "0"))) return -1;
  }
  Buf e = {0};
  buf_printf(&e, "%s(%s, %s", tr ? "conv_transpose2d" : "conv2d", xs, ws);
  if (bs) buf_printf(&e, ", %s", bs);
  if (st[0] != 1 || st[1] != 1) buf_printf(&e, ", stride=%s", pair_text(m, st));
  if (pad[0] || pad[1]) buf_printf(&e, ", padding=%s", pair_text(m, pad));
  if (op[0] || op[1]) buf_printf(&e, ", output_padding=%s", pair_text(m, op));
  if (dl[0] != 1 || dl[1] != 1) buf_printf(&e, ", dilation=%s", pair_text(m, dl));
  if (g != 1) buf_printf(&e, ", groups=%lld", (long long)g);
  buf_puts(&e, ")");
  const char *s = arena_strdup(m->a, e.s);
  free(e.s);
  if (crop) {
    hi[0] = fulld[0] = dim[0];
    hi[1] = fulld[1] = dim[1];
    s = slice_text(m, s, 4, lo, hi, fulld);
  }
  return ox_result(m, 0, s, P_ATOM, VT_F32, 4, dim, 0) ? 0 : -1;
}

static int op_pool(Imp *m) {
  const char *op = m->node->op_type;
  Val *x = ox_need_in(m, 0);
  if (!x || ox_float_operand(m, x)) return -1;
  if (m->node->n_output > 1 && *m->node->output[1]) return ox_unsupported(m, "MaxPool's Indices output");
  if (x->rank != 4) return ox_unsupported(m, "pooling that is not 2-D (input [N, C, H, W])");
  int global = !strncmp(op, "Global", 6);
  if (global) {
    int64_t dim[4] = {x->dim[0], x->dim[1], 1, 1};
    const char *xs = ox_operand(m, x, 0);
    if (!xs) return -1;
    return ox_result(m, 0, arena_printf(m->a, "%s(%s, axis=[2, 3], keepdims=true)", strstr(op, "Max") ? "max" : "mean", xs),
                  P_ATOM, VT_F32, 4, dim, 0) ? 0 : -1;
  }
  int64_t k[2], st[2], dl[2];
  if (attr_pair(m, "kernel_shape", 0, k) || attr_pair(m, "strides", 1, st) || attr_pair(m, "dilations", 1, dl)) return -1;
  if (k[0] < 1 || st[0] < 1 || st[1] < 1) return ox_node_err(m, "invalid kernel_shape or strides");
  if (k[0] != k[1] || st[0] != st[1]) return ox_unsupported(m, "a pooling window or stride that is not square");
  if (dl[0] != 1 || dl[1] != 1) return ox_unsupported(m, "pooling with dilations");
  int64_t p[4];
  if (pads4(m, x, k, st, dl, p)) return -1;
  int max = strstr(op, "Max") != NULL, ceil = (int)ox_attr_i(m, "ceil_mode", 0);
  int incl = (int)ox_attr_i(m, "count_include_pad", 0);
  int64_t dim[4] = {x->dim[0], x->dim[1], 0, 0};
  for (int i = 0; i < 2; i++) {
    int64_t n = x->dim[2 + i], span = n + p[i] + p[i + 2];
    if (n < 0) return ox_unsupported(m, "pooling over a symbolic spatial dimension");
    if (span < k[i]) return ox_node_err(m, "the window is larger than the input");
    int64_t out = (span - k[i]) / st[i] + 1;
    if (ceil && (span - k[i]) % st[i]) {   /* one more window, padded at the end (PyTorch's rule) */
      out++;
      if ((out - 1) * st[i] >= n + p[i]) out--;
      int64_t extra = (out - 1) * st[i] + k[i] - span;
      if (extra > 0) {
        if (!max && incl) return ox_unsupported(m, "AveragePool with ceil_mode and count_include_pad");
        p[i + 2] += extra;
      }
    }
    dim[2 + i] = out;
  }
  const char *xs = ox_operand(m, x, 0);
  if (!xs) return -1;
  const char *fn = max ? "maxpool2d" : "avgpool2d";
  const char *args = st[0] == k[0] ? arena_printf(m->a, "%lld", (long long)k[0])
                                   : arena_printf(m->a, "%lld, stride=%lld", (long long)k[0], (long long)st[0]);
  if (!p[0] && !p[1] && !p[2] && !p[3])
    return ox_result(m, 0, arena_printf(m->a, "%s(%s, %s)", fn, xs, args), P_ATOM, VT_F32, 4, dim, 0) ? 0 : -1;
  /* padding as concatenation: -inf for max, zeros for the average (divided
   * by the count of real elements unless count_include_pad) */
  const char *xp = pad_text(m, xs, x->dim, p, max ? "-inf" : "0");
  if (!xp) return -1;
  const char *e = arena_printf(m->a, "%s(%s, %s)", fn, xp, args);
  if (!max && !incl) {
    int64_t one[4] = {1, 1, x->dim[2], x->dim[3]};
    const char *mask = pad_text(m, arena_printf(m->a, "ones(%s)", ox_ints_text(m, one, 4)), one, p, "0");
    e = arena_printf(m->a, "%s / %s(%s, %s)", e, fn, mask, args);
  }
  return ox_result(m, 0, e, strchr(e, '/') && !max && !incl ? P_MUL : P_ATOM, VT_F32, 4, dim, 0) ? 0 : -1;
}

static int op_batchnorm(Imp *m) {
  Val *x = ox_need_in(m, 0), *w = ox_need_in(m, 1), *b = ox_need_in(m, 2), *mean = ox_need_in(m, 3), *var = ox_need_in(m, 4);
  if (!x || !w || !b || !mean || !var || ox_float_operand(m, x)) return -1;
  if (ox_attr_i(m, "training_mode", 0)) return ox_unsupported(m, "BatchNormalization in training mode");
  for (size_t k = 1; k < m->node->n_output; k++)
    if (*m->node->output[k]) return ox_unsupported(m, "BatchNormalization's running-statistics outputs");
  if (x->rank != 2 && x->rank != 4) return ox_unsupported(m, "BatchNormalization of an input that is not [N, C] or [N, C, H, W]");
  if (!mean->is_const || !var->is_const) return ox_unsupported(m, "running statistics computed at run time");
  int64_t C = x->dim[1];
  if (C < 0 || mean->n != C || var->n != C) return ox_node_err(m, "the running statistics do not have %lld values", (long long)C);
  double eps = ox_attr_f(m, "epsilon", 1e-5), mom = ox_attr_f(m, "momentum", 0.9);
  const char *xs = ox_operand(m, x, 0), *ws = ox_operand(m, w, 0), *bs = ox_operand(m, b, 0);
  if (!xs || !ws || !bs) return -1;
  Buf e = {0};
  buf_printf(&e, "batch_norm(%s, %s, %s", xs, ws, bs);
  /* PyTorch's momentum is 1 - ONNX's (0.1 is written 0.9f: rounded to 6 digits) */
  char mb[32];
  snprintf(mb, sizeof mb, "%.6g", 1 - mom);
  if (strcmp(mb, "0.1")) buf_printf(&e, ", momentum=%s", mb);
  if ((float)eps != 1e-5f) buf_printf(&e, ", eps=%s", ox_num_text(m, (float)eps));
  buf_puts(&e, ")");
  const char *s = arena_strdup(m->a, e.s);
  free(e.s);
  Val *y = ox_result(m, 0, s, P_ATOM, VT_F32, x->rank, x->dim, 1);
  if (!y) return -1;
  Val st = {0};
  st.rank = 1;
  st.dim[0] = C;
  ox_add_tensor(m, arena_printf(m->a, "%s.running_mean", y->name), &st, ox_f32_copy(m, mean));
  ox_add_tensor(m, arena_printf(m->a, "%s.running_var", y->name), &st, ox_f32_copy(m, var));
  return 0;
}

/* layer_norm over the last axis; over the axes from `axis` on it is written
 * on x reshaped to [outer, -1] and back, then scaled.  The optional Mean and
 * InvStdDev outputs are their own statements. */
static int op_layernorm(Imp *m) {
  Val *x = ox_need_in(m, 0), *w = ox_need_in(m, 1), *b = ox_in(m, 2);
  if (!x || !w || ox_float_operand(m, x) || ox_float_operand(m, w) || (b && ox_float_operand(m, b))) return -1;
  int64_t ax;
  if (ox_norm_axis(m, ox_attr_i(m, "axis", -1), x->rank, &ax)) return -1;
  if (ox_attr_i(m, "stash_type", 1) != 1) return ox_unsupported(m, "LayerNormalization with stash_type other than float");
  double eps = ox_attr_f(m, "epsilon", 1e-5);
  const char *es = (float)eps != 1e-5f ? arena_printf(m->a, ", eps=%s", ox_num_text(m, (float)eps)) : "";
  int stats = 0;
  for (size_t k = 1; k < m->node->n_output && k < 3; k++) stats |= *m->node->output[k] != 0;
  const char *xs = ox_operand(m, x, 0);
  if (!xs) return -1;
  if (stats && x->prec != P_ATOM) return ox_unsupported(m, "LayerNormalization statistics of an inlined expression");
  const char *e;
  int prec = b ? P_ATOM : P_MUL;
  if (ax == x->rank - 1) {
    const char *ws = ox_operand(m, w, b ? 0 : P_MUL + 1), *bs = b ? ox_operand(m, b, 0) : NULL;
    if (!ws || (b && !bs)) return -1;
    e = b ? arena_printf(m->a, "layer_norm(%s, %s, %s%s)", xs, ws, bs, es) : arena_printf(m->a, "layer_norm(%s%s) * %s", xs, es, ws);
  } else {
    int64_t outer = 1;
    const char *ot = NULL;
    for (int k = 0; k < ax; k++) {
      if (x->dim[k] >= 0) outer = ox_mul_sat(outer, x->dim[k]);
      else if (k == 0 && ax == 1) ot = ox_dim_text(m, x->dim[0]);
      else return ox_unsupported(m, "LayerNormalization over a shape unknown at import time");
    }
    const char *sh = ox_list_text(m, x->dim, x->rank);
    const char *ws = ox_operand(m, w, P_MUL + 1), *bs = b ? ox_operand(m, b, P_ADD + 1) : NULL;
    if (!sh || !ws || (b && !bs)) return -1;
    if (!ot) ot = arena_printf(m->a, "%lld", (long long)outer);
    e = arena_printf(m->a, "reshape(layer_norm(reshape(%s, [%s, -1])%s), %s) * %s", xs, ot, es, sh, ws);
    prec = P_MUL;
    if (b) e = arena_printf(m->a, "%s + %s", e, bs), prec = P_ADD;
  }
  if (!ox_result(m, 0, e, prec, VT_F32, x->rank, x->dim, 0)) return -1;
  if (!stats) return 0;
  int64_t sd[MAX_RANK], mask[MAX_RANK];
  int nm = 0;
  for (int k = 0; k < x->rank; k++) {
    sd[k] = k < ax ? x->dim[k] : 1;
    if (k >= ax) mask[nm++] = k;
  }
  const char *axes = nm == 1 ? arena_printf(m->a, "%lld", (long long)mask[0]) : ox_ints_text(m, mask, nm);
  const char *mean = arena_printf(m->a, "mean(%s, axis=%s, keepdims=true)", xs, axes);
  Val *mv = NULL;
  if (m->node->n_output > 1 && *m->node->output[1]) {
    if (!(mv = ox_result(m, 1, mean, P_ATOM, VT_F32, x->rank, sd, 1))) return -1;
    mean = mv->name;
  }
  if (m->node->n_output > 2 && *m->node->output[2]) {
    const char *var = arena_printf(m->a, "mean((%s - %s) ** 2, axis=%s, keepdims=true)", xs, mean, axes);
    const char *inv = arena_printf(m->a, "1 / sqrt(%s + %s)", var, ox_num_text(m, (float)eps));
    if (!ox_result(m, 2, inv, P_MUL, VT_F32, x->rank, sd, 1)) return -1;
  }
  return 0;
}

static int op_softmax(Imp *m) {
  int logsm = !strcmp(m->node->op_type, "LogSoftmax");
  Val *x = ox_need_in(m, 0);
  if (!x || ox_float_operand(m, x)) return -1;
  int64_t ax;
  if (ox_norm_axis(m, ox_attr_i(m, "axis", m->opset >= 13 ? -1 : 1), x->rank, &ax)) return -1;
  const char *xs = ox_operand(m, x, 0);
  if (!xs) return -1;
  const char *fn = logsm ? "log_softmax" : "softmax";
  const char *e;
  if (m->opset >= 13 || ax == x->rank - 1) {
    e = ax == x->rank - 1 ? arena_printf(m->a, "%s(%s)", fn, xs) : arena_printf(m->a, "%s(%s, axis=%lld)", fn, xs, (long long)ax);
  } else {   /* opset < 13: over the axes from `axis` on, as one */
    int64_t outer = 1;
    for (int k = 0; k < ax; k++) {
      if (x->dim[k] < 0) return ox_unsupported(m, "Softmax (opset < 13) over a symbolic dimension");
      outer = ox_mul_sat(outer, x->dim[k]);
    }
    const char *sh = ox_list_text(m, x->dim, x->rank);
    if (!sh) return ox_unsupported(m, "an unknown shape");
    e = arena_printf(m->a, "reshape(%s(reshape(%s, [%lld, -1]), axis=1), %s)", fn, xs, (long long)outer, sh);
  }
  return ox_result(m, 0, e, P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
}

/* x reshaped to dim[0..rank) (a constant reshapes at import time). */
static int reshape_to(Imp *m, Val *x, int rank, const int64_t *dim, const char *shape_text) {
  if (x->is_const) {
    int64_t n = 1;
    for (int k = 0; k < rank; k++) {
      if (dim[k] < 0) return ox_unsupported(m, "reshaping a constant to a symbolic shape");
      n = ox_mul_sat(n, dim[k]);
    }
    if (n != x->n) return ox_node_err(m, "cannot reshape %lld values to %s", (long long)x->n, ox_ints_text(m, dim, rank));
    return ox_const_result(m, 0, x->vt, rank, dim, x->c, n) ? 0 : -1;
  }
  const char *sh = shape_text ? shape_text : ox_list_text(m, dim, rank);
  if (!sh) return ox_unsupported(m, "a reshape to a shape unknown at import time");
  const char *xs = ox_operand(m, x, 0);
  if (!xs) return -1;
  return ox_result(m, 0, arena_printf(m->a, "reshape(%s, %s)", xs, sh), P_ATOM, x->vt, rank, dim, 0) ? 0 : -1;
}

static int op_reshape(Imp *m) {
  Val *x = ox_need_in(m, 0), *s = ox_need_in(m, 1);
  if (!x || !s) return -1;
  if (!s->is_const) return ox_unsupported(m, "a Reshape whose shape is computed at run time");
  if (s->n > MAX_RANK) return ox_node_err(m, "a target shape of rank %lld", (long long)s->n);
  int rank = (int)s->n, neg = -1;
  int64_t dim[MAX_RANK], t[MAX_RANK];
  int allowzero = (int)ox_attr_i(m, "allowzero", 0);
  for (int k = 0; k < rank; k++) {
    double c = s->c[k];
    if (ox_is_sym(c)) dim[k] = t[k] = ox_c_dim(c);
    else if (c == 0 && !allowzero) {
      if (k >= x->rank) return ox_node_err(m, "a 0 in the target shape beyond the input's rank");
      dim[k] = t[k] = x->dim[k];
    } else if (c == -1) {
      if (neg >= 0) return ox_node_err(m, "two -1 in the target shape");
      neg = k;
      t[k] = -1;
      dim[k] = DIM_UNKNOWN;
    } else if (!(c >= 0 && c <= MAX_DIM)) return ox_node_err(m, "an invalid target dimension %g", c);
    else if (c == 0) return ox_unsupported(m, "an empty result (a dimension of size 0)");
    else dim[k] = t[k] = (int64_t)c;
  }
  if (neg >= 0) {   /* infer it: the input's elements over the others' (symbols cancel) */
    int64_t num = 1, den = 1, ok = 1;
    int symcount[MAX_SYMS] = {0};
    for (int k = 0; k < x->rank; k++) {
      if (x->dim[k] >= 0) num = ox_mul_sat(num, x->dim[k]);
      else if (x->dim[k] != DIM_UNKNOWN) symcount[-1 - x->dim[k]]++;
      else ok = 0;
    }
    for (int k = 0; k < rank; k++) {
      if (k == neg) continue;
      if (dim[k] >= 0) den = ox_mul_sat(den, dim[k]);
      else if (dim[k] != DIM_UNKNOWN) symcount[-1 - dim[k]]--;
    }
    int left = -1;
    for (int k = 0; k < MAX_SYMS; k++)
      if (symcount[k] == 1 && left < 0) left = k;
      else if (symcount[k]) ok = 0;
    if (ok && den && num % den == 0) {
      if (left < 0) dim[neg] = num / den;
      else if (num == den) dim[neg] = -1 - left;
    }
    if (x->is_const && den && num % den == 0) dim[neg] = t[neg] = num / den;
  }
  /* the text keeps the -1 (readable) unless everything is static */
  int stat = 1;
  for (int k = 0; k < rank; k++) stat &= dim[k] >= 0;
  const char *sh = NULL;
  if (!stat) {
    Buf b = {0};
    buf_puts(&b, "[");
    for (int k = 0; k < rank; k++) {
      const char *dt = k == neg ? "-1" : ox_dim_text(m, t[k]);
      if (!dt) {
        free(b.s);
        return ox_unsupported(m, "a reshape to a shape unknown at import time");
      }
      buf_printf(&b, "%s%s", k ? ", " : "", dt);
    }
    buf_puts(&b, "]");
    sh = arena_strdup(m->a, b.s);
    free(b.s);
  }
  return reshape_to(m, x, rank, dim, sh);
}

static int op_flatten(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  int64_t ax = ox_attr_i(m, "axis", 1);
  if (ax < 0) ax += x->rank;
  if (ax < 0 || ax > x->rank) return ox_node_err(m, "axis out of range");
  int64_t dim[2] = {1, 1};
  for (int k = 0; k < x->rank; k++) {
    int64_t *d = &dim[k < ax ? 0 : 1];
    if (x->dim[k] < 0) {
      if (*d == 1 && k == 0 && ax == 1) *d = x->dim[k];
      else return ox_unsupported(m, "Flatten over a symbolic dimension");
    } else if (*d >= 0) *d = ox_mul_sat(*d, x->dim[k]);
  }
  if (ax == 1 && !x->is_const) {
    const char *xs = ox_operand(m, x, 0);
    if (!xs) return -1;
    if (x->rank == 2) return ox_alias(m, 0, x, x->vt);
    return ox_result(m, 0, arena_printf(m->a, "flatten(%s)", xs), P_ATOM, x->vt, 2, dim, 0) ? 0 : -1;
  }
  return reshape_to(m, x, 2, dim, NULL);
}

/* Squeeze and Unsqueeze: axes from the attribute (opset < 13) or input 1. */
static int squeeze_axes(Imp *m, int64_t *axes) {
  if (m->opset < 13) return ox_attr_ints(m, "axes", axes, MAX_RANK);
  Val *a = ox_in(m, 1);
  return a ? ox_const_ints(m, a, "axes", axes, MAX_RANK) : 0;
}

static int op_squeeze(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  int64_t axes[MAX_RANK];
  int n = squeeze_axes(m, axes);
  if (n < 0) return -1;
  int drop[MAX_RANK] = {0};
  for (int i = 0; i < n; i++) {
    int64_t a;
    if (ox_norm_axis(m, axes[i], x->rank, &a)) return -1;
    if (x->dim[a] != 1) return ox_node_err(m, "axis %lld has size %s, not 1", (long long)a, ox_dim_text(m, x->dim[a]) ? ox_dim_text(m, x->dim[a]) : "?");
    drop[a] = 1;
  }
  if (!n)
    for (int k = 0; k < x->rank; k++) drop[k] = x->dim[k] == 1;
  int rank = 0;
  int64_t dim[MAX_RANK];
  for (int k = 0; k < x->rank; k++)
    if (!drop[k]) dim[rank++] = x->dim[k];
  return reshape_to(m, x, rank, dim, NULL);
}

static int op_unsqueeze(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  int64_t axes[MAX_RANK];
  int n = squeeze_axes(m, axes);
  if (n < 0) return -1;
  int rank = x->rank + n;
  if (rank > MAX_RANK) return ox_unsupported(m, "a result of rank above 8");
  int ins[MAX_RANK] = {0};
  for (int i = 0; i < n; i++) {
    int64_t a;
    if (ox_norm_axis(m, axes[i], rank, &a)) return -1;
    if (ins[a]) return ox_node_err(m, "axis %lld given twice", (long long)a);
    ins[a] = 1;
  }
  int64_t dim[MAX_RANK];
  for (int k = 0, j = 0; k < rank; k++) dim[k] = ins[k] ? 1 : x->dim[j++];
  return reshape_to(m, x, rank, dim, NULL);
}

static int op_transpose(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  int64_t perm[MAX_RANK];
  int n = ox_attr_ints(m, "perm", perm, MAX_RANK);
  if (n < 0) return -1;
  if (!n) {
    n = x->rank;
    for (int k = 0; k < n; k++) perm[k] = n - 1 - k;
  }
  if (n != x->rank) return ox_node_err(m, "perm has %d values for rank %d", n, x->rank);
  int seen[MAX_RANK] = {0}, ident = 1;
  int64_t dim[MAX_RANK];
  for (int k = 0; k < n; k++) {
    if (perm[k] < 0 || perm[k] >= n || seen[perm[k]]++) return ox_node_err(m, "perm is not a permutation");
    dim[k] = x->dim[perm[k]];
    ident &= perm[k] == k;
  }
  if (ident) return ox_alias(m, 0, x, x->vt);
  /* a weight stays a param read transposed (tied weights stay tied) */
  if (x->is_const && !(x->is_init && x->vt == VT_F32)) {
    if (x->n > MAX_CONST_FOLD) return ox_unsupported(m, "a constant computation this large");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(x->n ? x->n : 1));
    int64_t idx[MAX_RANK] = {0}, st[MAX_RANK];
    for (int k = n - 1, s = 1; k >= 0; s *= (int)x->dim[k], k--) st[k] = s;
    for (int64_t i = 0; i < x->n; i++) {
      int64_t off = 0;
      for (int k = 0; k < n; k++) off += idx[k] * st[perm[k]];
      c[i] = x->c[off];
      for (int k = n - 1; k >= 0 && ++idx[k] == dim[k]; k--) idx[k] = 0;
    }
    return ox_const_result(m, 0, x->vt, n, dim, c, x->n) ? 0 : -1;
  }
  const char *xs = ox_operand(m, x, 0);
  if (!xs) return -1;
  const char *e = n == 2 ? arena_printf(m->a, "transpose(%s)", xs) : arena_printf(m->a, "transpose(%s, %s)", xs, ox_ints_text(m, perm, n));
  return ox_result(m, 0, e, P_ATOM, x->vt, n, dim, 0) ? 0 : -1;
}

/* Copies block [lo, hi) of axis ax of const x (import-time Slice, Gather, Concat pieces). */
static void const_block(const Val *x, int ax, int64_t lo, int64_t hi, double *out, int64_t *pos, int64_t outer_i,
                        int64_t inner) {
  int64_t d = x->dim[ax];
  for (int64_t j = lo; j < hi; j++)
    for (int64_t q = 0; q < inner; q++) out[(*pos)++] = x->c[(outer_i * d + j) * inner + q];
}

static int op_concat(Imp *m) {
  int n = (int)m->node->n_input;
  if (n < 1 || n > 64) return ox_node_err(m, "%d inputs", n);
  Val *v[64] = {0};
  for (int k = 0; k < n; k++)
    if (!(v[k] = ox_need_in(m, k))) return -1;
  if (!v[0]) return -1;   /* (n >= 1; for the compiler's bounds analysis) */
  int64_t ax;
  if (ox_norm_axis(m, ox_attr_i(m, "axis", 0), v[0]->rank, &ax)) return -1;
  int64_t dim[MAX_RANK];
  memcpy(dim, v[0]->dim, sizeof dim);
  dim[ax] = 0;
  for (int k = 0; k < n; k++) {
    if (v[k]->rank != v[0]->rank) return ox_node_err(m, "inputs of different ranks");
    if (v[k]->dim[ax] < 0) dim[ax] = DIM_UNKNOWN;
    else if (dim[ax] >= 0) dim[ax] += v[k]->dim[ax];
  }
  if (ox_all_const(m)) {
    int64_t outer = 1, total = 0;
    for (int k = 0; k < ax; k++) outer = ox_mul_sat(outer, dim[k]);
    for (int k = 0; k < n; k++) total += v[k]->n;
    if (total > MAX_CONST_FOLD || dim[ax] < 0) return ox_unsupported(m, "a constant computation this large");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(total ? total : 1));
    int64_t pos = 0;
    for (int64_t o = 0; o < outer; o++)
      for (int k = 0; k < n; k++) {
        int64_t inner = 1;
        for (int j = (int)ax + 1; j < v[k]->rank; j++) inner *= v[k]->dim[j];
        const_block(v[k], (int)ax, 0, v[k]->dim[ax], c, &pos, o, inner);
      }
    return ox_const_result(m, 0, v[0]->vt, v[0]->rank, dim, c, total) ? 0 : -1;
  }
  Buf e = {0};
  buf_puts(&e, "concat(");
  for (int k = 0; k < n; k++) {
    if (v[k]->dim[ax] == 0) continue;
    const char *s = ox_operand(m, v[k], 0);
    if (!s) {
      free(e.s);
      return -1;
    }
    buf_printf(&e, "%s, ", s);
  }
  buf_printf(&e, "axis=%lld)", (long long)ax);
  const char *s = arena_strdup(m->a, e.s);
  free(e.s);
  return ox_result(m, 0, s, P_ATOM, v[0]->vt, v[0]->rank, dim, 0) ? 0 : -1;
}

/* x[..., lo:hi, ...] on axis ax (the other axes whole) as text. */
static const char *slice_text(Imp *m, const char *xs, int rank, const int64_t *lo, const int64_t *hi, const int64_t *full) {
  int last = -1;
  for (int k = 0; k < rank; k++)
    if (lo[k] != 0 || hi[k] != full[k]) last = k;
  if (last < 0) return xs;
  Buf b = {0};
  buf_printf(&b, "%s[", xs);
  for (int k = 0; k <= last; k++) {
    if (k) buf_puts(&b, ", ");
    if (lo[k] == 0 && hi[k] == full[k]) buf_puts(&b, ":");
    else if (hi[k] == full[k]) buf_printf(&b, "%lld:", (long long)lo[k]);
    else buf_printf(&b, "%lld:%lld", (long long)lo[k], (long long)hi[k]);
  }
  buf_puts(&b, "]");
  char *s = arena_strdup(m->a, b.s);
  free(b.s);
  return s;
}

static int op_slice(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  int64_t st[MAX_RANK], en[MAX_RANK], ax[MAX_RANK], sp[MAX_RANK];
  int n, na, ns = 0;
  if (m->opset < 10) {
    n = ox_attr_ints(m, "starts", st, MAX_RANK);
    if (n < 0 || ox_attr_ints(m, "ends", en, MAX_RANK) != n) return n < 0 ? -1 : ox_node_err(m, "starts and ends differ in length");
    na = ox_attr_ints(m, "axes", ax, MAX_RANK);
  } else {
    Val *s = ox_need_in(m, 1), *e = ox_need_in(m, 2), *a = ox_in(m, 3), *p = ox_in(m, 4);
    if (!s || !e) return -1;
    if ((n = ox_const_ints(m, s, "starts", st, MAX_RANK)) < 0 || ox_const_ints(m, e, "ends", en, MAX_RANK) != n)
      return n < 0 || m->d->nerrors ? -1 : ox_node_err(m, "starts and ends differ in length");
    na = a ? ox_const_ints(m, a, "axes", ax, MAX_RANK) : 0;
    if (p && (ns = ox_const_ints(m, p, "steps", sp, MAX_RANK)) < 0) return -1;
  }
  if (na < 0) return -1;
  if (na && na != n) return ox_node_err(m, "axes and starts differ in length");
  int64_t lo[MAX_RANK], hi[MAX_RANK], dim[MAX_RANK];
  for (int k = 0; k < x->rank; k++) lo[k] = 0, hi[k] = dim[k] = x->dim[k];
  for (int i = 0; i < n; i++) {
    int64_t a = na ? ax[i] : i;
    if (ox_norm_axis(m, a, x->rank, &a)) return -1;
    if (ns && sp[i] != 1) return ox_unsupported(m, "Slice with a step other than 1");
    int64_t d = x->dim[a], s = st[i], e = en[i];
    if (d < 0) {
      if (s == 0 && e >= INT32_MAX) continue;
      return ox_unsupported(m, "slicing a symbolic dimension");
    }
    if (s < 0) s += d;
    if (e < 0) e += d;
    s = s < 0 ? 0 : s > d ? d : s;
    e = e < 0 ? 0 : e > d ? d : e;
    if (e <= s) return ox_unsupported(m, "an empty slice");
    lo[a] = s, hi[a] = e, dim[a] = e - s;
  }
  if (x->is_const) {
    int64_t total = 1;
    for (int k = 0; k < x->rank; k++) total = ox_mul_sat(total, dim[k]);
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(total ? total : 1));
    int64_t idx[MAX_RANK] = {0};
    for (int64_t i = 0; i < total; i++) {
      int64_t off = 0;
      for (int k = 0; k < x->rank; k++) off = off * x->dim[k] + lo[k] + idx[k];
      c[i] = x->c[off];
      for (int k = x->rank - 1; k >= 0 && ++idx[k] == dim[k]; k--) idx[k] = 0;
    }
    return ox_const_result(m, 0, x->vt, x->rank, dim, c, total) ? 0 : -1;
  }
  const char *xs = ox_operand(m, x, P_ATOM);
  if (!xs) return -1;
  const char *e = slice_text(m, xs, x->rank, lo, hi, x->dim);
  if (e == xs) return ox_alias(m, 0, x, x->vt);
  return ox_result(m, 0, e, P_ATOM, x->vt, x->rank, dim, 0) ? 0 : -1;
}

/* Split: each output one slice of axis `axis` (sizes from the attribute
 * (opset < 13) or input 1, else equal parts). */
static int op_split(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  int64_t ax, sz[64];
  int no = (int)m->node->n_output;
  if (no < 1 || no > 64) return ox_node_err(m, "%d outputs", no);
  if (ox_norm_axis(m, ox_attr_i(m, "axis", 0), x->rank, &ax)) return -1;
  int64_t d = x->dim[ax];
  if (d < 0) return ox_unsupported(m, "Split of a symbolic axis");
  Val *sv = m->opset >= 13 ? ox_in(m, 1) : NULL;
  int n = sv ? ox_const_ints(m, sv, "split", sz, 64) : ox_attr_ints(m, "split", sz, 64);
  if (n < 0) return -1;
  if (!n) {
    if (d % no) return ox_unsupported(m, "a Split into unequal parts without sizes");
    for (int k = 0; k < no; k++) sz[k] = d / no;
  } else if (n != no) return ox_node_err(m, "%d sizes for %d outputs", n, no);
  int64_t lo[MAX_RANK] = {0}, hi[MAX_RANK], off = 0;
  for (int k = 0; k < no; k++) {
    if (sz[k] < 1 || off + sz[k] > d) return ox_unsupported(m, "these split sizes");
    memcpy(hi, x->dim, sizeof hi);
    lo[ax] = off;
    hi[ax] = off + sz[k];
    off += sz[k];
    if (!*m->node->output[k]) continue;
    const char *xs = ox_operand(m, x, P_ATOM);
    if (!xs) return -1;
    int64_t dim[MAX_RANK];
    memcpy(dim, x->dim, sizeof dim);
    dim[ax] = sz[k];
    if (!ox_result(m, k, slice_text(m, xs, x->rank, lo, hi, x->dim), P_ATOM, x->vt, x->rank, dim, 0)) return -1;
  }
  if (off != d) return ox_node_err(m, "the split sizes add up to %lld, not %lld", (long long)off, (long long)d);
  return 0;
}

static int op_gather(Imp *m) {
  Val *x = ox_need_in(m, 0), *ix = ox_need_in(m, 1);
  if (!x || !ix) return -1;
  int64_t ax;
  if (ox_norm_axis(m, ox_attr_i(m, "axis", 0), x->rank, &ax)) return -1;
  int rank = x->rank - 1 + ix->rank;
  if (rank > MAX_RANK) return ox_unsupported(m, "a result of rank above 8");
  int64_t dim[MAX_RANK];
  for (int k = 0, j = 0; k < x->rank; k++) {
    if (k == ax)
      for (int i = 0; i < ix->rank; i++) dim[j++] = ix->dim[i];
    else dim[j++] = x->dim[k];
  }
  if (!ix->is_const) {
    if (ix->vt != VT_I32) return ox_node_err(m, "the indices are not integers");
    if (ax != 0 || x->rank < 2 || x->vt != VT_F32)
      return ox_unsupported(m, "Gather at run-time indices other than rows (axis 0 of a float tensor of rank >= 2)");
    const char *t = ox_operand(m, x, 0), *i = ox_operand(m, ix, 0);
    if (!t || !i) return -1;
    if (x->rank == 2)
      return ox_result(m, 0, arena_printf(m->a, "embedding(%s, %s)", t, i), P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
    /* rows of more than one axis: embedding of x as [V, -1], reshaped */
    const char *v = ox_dim_text(m, x->dim[0]), *sh = ox_list_text(m, dim, rank);
    if (!v || !sh) return ox_unsupported(m, "Gather on a shape unknown at import time");
    return ox_result(m, 0, arena_printf(m->a, "reshape(embedding(reshape(%s, [%s, -1]), %s), %s)", t, v, i, sh), P_ATOM, VT_F32,
                  rank, dim, 0) ? 0 : -1;
  }
  int64_t d = x->dim[ax];
  if (d < 0) return ox_unsupported(m, "Gather on a symbolic axis");
  int64_t idx[64];
  if (ix->n > 64 && !x->is_const) return ox_unsupported(m, "Gather of more than 64 constant indices");
  if (ix->rank > 1 && !x->is_const) return ox_unsupported(m, "Gather with multi-dimensional constant indices");
  if (x->is_const) {
    int64_t outer = 1, inner = 1, total;
    for (int k = 0; k < ax; k++) outer = ox_mul_sat(outer, x->dim[k]);
    for (int k = (int)ax + 1; k < x->rank; k++) inner *= x->dim[k];
    total = outer * ix->n * inner;
    if (total > MAX_CONST_FOLD) return ox_unsupported(m, "a constant computation this large");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(total ? total : 1));
    int64_t pos = 0;
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < ix->n; i++) {
        int64_t j = ox_i64(ix->c[i]);
        if (j < 0) j += d;
        if (j < 0 || j >= d) return ox_node_err(m, "index %lld is out of range for %lld", (long long)ix->c[i], (long long)d);
        const_block(x, (int)ax, j, j + 1, c, &pos, o, inner);
      }
    return ox_const_result(m, 0, x->vt, rank, dim, c, total) ? 0 : -1;
  }
  for (int64_t i = 0; i < ix->n; i++) {
    idx[i] = ox_i64(ix->c[i]);
    if (idx[i] < 0) idx[i] += d;
    if (idx[i] < 0 || idx[i] >= d) return ox_node_err(m, "index %lld is out of range for %lld", (long long)ix->c[i], (long long)d);
  }
  const char *xs = ox_operand(m, x, P_ATOM);
  if (!xs) return -1;
  Buf b = {0};
  if (ix->rank == 0) {   /* x[:, i]: the axis dropped */
    buf_printf(&b, "%s[", xs);
    for (int k = 0; k <= ax; k++) buf_printf(&b, "%s%s", k ? ", " : "", k == ax ? ox_num_text(m, (double)idx[0]) : ":");
    buf_puts(&b, "]");
  } else {
    int contiguous = 1;
    for (int64_t i = 1; i < ix->n; i++) contiguous &= idx[i] == idx[i - 1] + 1;
    int64_t lo[MAX_RANK] = {0}, hi[MAX_RANK];
    memcpy(hi, x->dim, sizeof hi);
    if (contiguous) {
      lo[ax] = idx[0];
      hi[ax] = idx[0] + ix->n;
      buf_puts(&b, slice_text(m, xs, x->rank, lo, hi, x->dim));
    } else {
      buf_puts(&b, "concat(");
      for (int64_t i = 0; i < ix->n; i++) {
        lo[ax] = idx[i];
        hi[ax] = idx[i] + 1;
        buf_printf(&b, "%s, ", slice_text(m, xs, x->rank, lo, hi, x->dim));
      }
      buf_printf(&b, "axis=%lld)", (long long)ax);
    }
  }
  const char *s = arena_strdup(m->a, b.s);
  free(b.s);
  return ox_result(m, 0, s, P_ATOM, x->vt, rank, dim, 0) ? 0 : -1;
}

static int op_reduce(Imp *m) {
  const char *op = m->node->op_type;
  Val *x = ox_need_in(m, 0);
  if (!x || ox_float_operand(m, x)) return -1;
  int64_t axes[MAX_RANK];
  int n;
  int axes_input = m->opset >= 18 || (!strcmp(op, "ReduceSum") && m->opset >= 13);
  if (axes_input) {
    Val *a = ox_in(m, 1);
    n = a ? ox_const_ints(m, a, "axes", axes, MAX_RANK) : 0;
  } else {
    n = ox_attr_ints(m, "axes", axes, MAX_RANK);
  }
  if (n < 0) return -1;
  int keep = (int)ox_attr_i(m, "keepdims", 1);
  if (n == 0 && ox_attr_i(m, "noop_with_empty_axes", 0)) return ox_alias(m, 0, x, VT_F32);
  int mask[MAX_RANK] = {0};
  for (int i = 0; i < n; i++) {
    int64_t a;
    if (ox_norm_axis(m, axes[i], x->rank, &a)) return -1;
    mask[a] = 1;
  }
  if (!n)
    for (int k = 0; k < x->rank; k++) mask[k] = 1, axes[n++] = k;
  int rank = 0;
  int64_t dim[MAX_RANK];
  for (int k = 0; k < x->rank; k++)
    if (!mask[k]) dim[rank++] = x->dim[k];
    else if (keep) dim[rank++] = 1;
  int64_t sorted[MAX_RANK], ns = 0;
  for (int k = 0; k < x->rank; k++)
    if (mask[k]) sorted[ns++] = k;
  const char *xs = ox_operand(m, x, 0);
  if (!xs) return -1;
  const char *ax = ns == 1 ? arena_printf(m->a, "%lld", (long long)sorted[0]) : ox_ints_text(m, sorted, (int)ns);
  const char *args = arena_printf(m->a, "axis=%s%s", ax, keep ? ", keepdims=true" : "");
  const char *e;
  if (!strcmp(op, "ReduceMean")) e = arena_printf(m->a, "mean(%s, %s)", xs, args);
  else if (!strcmp(op, "ReduceSum")) e = arena_printf(m->a, "sum(%s, %s)", xs, args);
  else if (!strcmp(op, "ReduceMax")) e = arena_printf(m->a, "max(%s, %s)", xs, args);
  else if (!strcmp(op, "ReduceMin")) e = arena_printf(m->a, "-max(-%s, %s)", ox_paren(m, xs, x->prec, P_UNARY), args);
  else if (!strcmp(op, "ReduceSumSquare")) e = arena_printf(m->a, "sum(%s ** 2, %s)", ox_paren(m, xs, x->prec, P_ATOM), args);
  else if (!strcmp(op, "ReduceL1")) e = arena_printf(m->a, "sum(abs(%s), %s)", xs, args);
  else if (!strcmp(op, "ReduceL2")) e = arena_printf(m->a, "sqrt(sum(%s ** 2, %s))", ox_paren(m, xs, x->prec, P_ATOM), args);
  else if (!strcmp(op, "ReduceLogSum")) e = arena_printf(m->a, "log(sum(%s, %s))", xs, args);
  else e = arena_printf(m->a, "log(sum(exp(%s), %s))", xs, args);
  return ox_result(m, 0, e, e[0] == '-' ? P_UNARY : P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
}

static int op_argmax(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x || ox_float_operand(m, x)) return -1;
  int amin = !strcmp(m->node->op_type, "ArgMin");
  if (ox_attr_i(m, "select_last_index", 0)) return ox_unsupported(m, "select_last_index");
  int64_t ax;
  if (ox_norm_axis(m, ox_attr_i(m, "axis", 0), x->rank, &ax)) return -1;
  int keep = (int)ox_attr_i(m, "keepdims", 1);
  int rank = 0;
  int64_t dim[MAX_RANK];
  for (int k = 0; k < x->rank; k++)
    if (k != ax) dim[rank++] = x->dim[k];
    else if (keep) dim[rank++] = 1;
  const char *xs = ox_operand(m, x, amin ? P_UNARY : 0);
  if (!xs) return -1;
  const char *e = arena_printf(m->a, "argmax(%s%s, axis=%lld)", amin ? "-" : "", xs, (long long)ax);
  if (keep) {
    const char *sh = ox_list_text(m, dim, rank);
    if (!sh) return ox_unsupported(m, "an unknown shape");
    e = arena_printf(m->a, "reshape(%s, %s)", e, sh);
  }
  return ox_result(m, 0, e, P_ATOM, VT_I32, rank, dim, 0) ? 0 : -1;
}

static int op_identity(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  if (!strcmp(m->node->op_type, "Dropout")) {
    if (m->opset >= 12 && m->node->n_input > 2 && *m->node->input[2]) {
      Val *t = ox_in(m, 2);
      if (!t || !t->is_const || t->c[0]) return ox_unsupported(m, "Dropout in training mode");
    }
    if (m->node->n_output > 1 && *m->node->output[1]) {   /* the mask: all kept outside training */
      const char *sh = ox_list_text(m, x->dim, x->rank);
      if (!sh) return ox_unsupported(m, "Dropout's mask of an unknown shape");
      if (!ox_result(m, 1, arena_printf(m->a, "ones(%s)", sh), P_ATOM, VT_BOOL, x->rank, x->dim, 1)) return -1;
    }
  }
  if (x->is_init) {   /* a copy of an initializer is a param of its own (see through_identity) */
    if (ox_alias(m, 0, x, x->vt)) return -1;
    ox_val_get(m, m->node->output[0])->is_init = 1;
    return 0;
  }
  return ox_alias(m, 0, x, x->vt);
}

static int op_constant(Imp *m) {
  const Onnx__AttributeProto *a = NULL;
  for (size_t k = 0; k < m->node->n_attribute; k++) a = m->node->attribute[k];
  if (!a || m->node->n_attribute != 1 || !a->name) return ox_node_err(m, "needs exactly one value attribute");
  Val t = {0};
  if (!strcmp(a->name, "value")) {
    if (!a->t) return ox_node_err(m, "attribute value holds no tensor");
    if (ox_tensor_to_val(m, a->t, "its value", &t)) return -1;
  } else if (!strcmp(a->name, "value_float") || !strcmp(a->name, "value_int")) {
    t.c = arena_alloc(m->a, sizeof(double));
    t.c[0] = a->name[6] == 'f' ? (double)a->f : (double)a->i;
    t.n = 1;
    t.vt = a->name[6] == 'f' ? VT_F32 : VT_I32;
  } else if (!strcmp(a->name, "value_floats") || !strcmp(a->name, "value_ints")) {
    int fl = a->name[6] == 'f';
    t.n = (int64_t)(fl ? a->n_floats : a->n_ints);
    t.c = arena_alloc(m->a, sizeof(double) * (size_t)(t.n ? t.n : 1));
    for (int64_t i = 0; i < t.n; i++) t.c[i] = fl ? (double)a->floats[i] : (double)a->ints[i];
    t.rank = 1;
    t.dim[0] = t.n;
    t.vt = fl ? VT_F32 : VT_I32;
  } else {
    return ox_unsupported(m, arena_printf(m->a, "Constant with attribute %s", a->name));
  }
  return ox_const_result(m, 0, t.vt, t.rank, t.dim, t.c, t.n) ? 0 : -1;
}

/* ConstantOfShape: `zeros([...])`, `full([...], v)` at run time (a
 * symbolic dimension allowed); an integer fill is a constant (static shape). */
static int op_constant_of_shape(Imp *m) {
  Val *s = ox_need_in(m, 0);
  if (!s) return -1;
  if (!s->is_const) return ox_unsupported(m, "a shape computed at run time");
  if (s->n > MAX_RANK) return ox_node_err(m, "a shape of rank %lld", (long long)s->n);
  int rank = (int)s->n;
  int64_t dim[MAX_RANK], n = 1;
  for (int k = 0; k < rank; k++) {
    dim[k] = ox_c_dim(s->c[k]);
    if (!ox_is_sym(s->c[k]) && !(s->c[k] >= 1 && s->c[k] <= MAX_DIM)) return ox_unsupported(m, "an empty or invalid shape");
    if (dim[k] >= 0 && __builtin_mul_overflow(n, dim[k], &n)) return ox_node_err(m, "too many elements");
  }
  double v = 0;
  VType vt = VT_F32;
  const Onnx__AttributeProto *a = ox_attr(m, "value");
  if (a && a->t) {
    Val t = {0};
    if (ox_tensor_to_val(m, a->t, "its value", &t)) return -1;
    if (t.n != 1) return ox_node_err(m, "value must have one element");
    v = t.c[0];
    vt = t.vt;
  }
  if (vt == VT_I32) {
    int stat = 1;
    for (int k = 0; k < rank; k++) stat &= dim[k] >= 0;
    if (!stat || n > MAX_CONST_FOLD) return ox_unsupported(m, "an integer ConstantOfShape of a symbolic or large shape");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) c[i] = v;
    return ox_const_result(m, 0, vt, rank, dim, c, n) ? 0 : -1;
  }
  const char *sh = ox_list_text(m, dim, rank);
  if (!sh) return ox_unsupported(m, "an unknown shape");
  const char *e = v == 0 ? arena_printf(m->a, "zeros(%s)", sh) : v == 1 ? arena_printf(m->a, "ones(%s)", sh)
                         : arena_printf(m->a, "full(%s, %s)", sh, ox_num_text(m, v));
  return ox_result(m, 0, e, P_ATOM, vt, rank, dim, 0) ? 0 : -1;
}

/* Expand: x broadcast to a shape, `x + zeros([...])` (a one-element constant:
 * `full([...], v)`; a constant of a static shape folds). */
static int op_expand(Imp *m) {
  Val *x = ox_need_in(m, 0), *s = ox_need_in(m, 1);
  if (!x || !s) return -1;
  if (!s->is_const) return ox_unsupported(m, "a shape computed at run time");
  if (s->n > MAX_RANK) return ox_node_err(m, "a shape of rank %lld", (long long)s->n);
  Val t = {0};
  t.rank = (int)s->n;
  for (int k = 0; k < t.rank; k++) {
    t.dim[k] = ox_c_dim(s->c[k]);
    if (!ox_is_sym(s->c[k]) && !(s->c[k] >= 1 && s->c[k] <= MAX_DIM)) return ox_unsupported(m, "an empty or invalid shape");
  }
  Val *v[2] = {x, &t};
  int rank;
  int64_t dim[MAX_RANK];
  if (ox_broadcast(m, v, 2, &rank, dim)) return -1;
  int stat = 1;
  int64_t n = 1;
  for (int k = 0; k < rank; k++) {
    stat &= dim[k] >= 0;
    if (dim[k] >= 0 && __builtin_mul_overflow(n, dim[k], &n)) return ox_node_err(m, "too many elements");
  }
  if (x->is_const && (x->vt == VT_I32 || x->n > 1)) {
    if (!stat || n > MAX_CONST_FOLD) return ox_unsupported(m, "expanding a constant to a symbolic or large shape");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) c[i] = ox_bc_elem(x, rank, dim, i);
    return ox_const_result(m, 0, x->vt, rank, dim, c, n) ? 0 : -1;
  }
  const char *sh = ox_list_text(m, dim, rank);
  if (!sh) return ox_unsupported(m, "an unknown shape");
  if (x->is_const) return ox_result(m, 0, arena_printf(m->a, "full(%s, %s)", sh, ox_num_text(m, x->c[0])), P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
  if (ox_float_operand(m, x)) return -1;
  const char *xs = ox_operand(m, x, P_ADD);
  if (!xs) return -1;
  return ox_result(m, 0, arena_printf(m->a, "%s + zeros(%s)", xs, sh), P_ADD, VT_F32, rank, dim, 0) ? 0 : -1;
}

static int op_shape(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  int64_t s = ox_attr_i(m, "start", 0), e = ox_attr_i(m, "end", x->rank);
  if (s < 0) s += x->rank;
  if (e < 0) e += x->rank;
  s = s < 0 ? 0 : s > x->rank ? x->rank : s;
  e = e < 0 ? 0 : e > x->rank ? x->rank : e;
  int64_t n = e > s ? e - s : 0;
  double *c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t k = 0; k < n; k++) {
    int64_t d = x->dim[s + k];
    if (d == DIM_UNKNOWN) return ox_unsupported(m, "Shape of a dimension unknown at import time");
    c[k] = d >= 0 ? (double)d : SYM_BASE - (double)(-1 - d);
  }
  int64_t dim[1] = {n};
  return ox_const_result(m, 0, VT_I32, 1, dim, c, n) ? 0 : -1;
}

static int op_cast(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x) return -1;
  int to = (int)ox_attr_i(m, "to", 0);
  int vt = ox_vtype_of(to);
  if (vt < 0) return ox_unsupported(m, arena_printf(m->a, "Cast to %s", ox_dtype_name(to)));
  if (x->is_const) {
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(x->n ? x->n : 1));
    for (int64_t i = 0; i < x->n; i++)
      c[i] = vt == VT_I32 ? (ox_is_sym(x->c[i]) ? x->c[i] : trunc(x->c[i])) : vt == VT_BOOL ? x->c[i] != 0 : (double)(float)x->c[i];
    return ox_const_result(m, 0, (VType)vt, x->rank, x->dim, c, x->n) ? 0 : -1;
  }
  if (vt == (int)x->vt || (vt == VT_F32 && x->vt == VT_BOOL)) return ox_alias(m, 0, x, (VType)vt);
  const char *xs = ox_operand(m, x, vt == VT_BOOL ? P_ADD : 0);
  if (!xs) return -1;
  if (vt == VT_BOOL) return ox_result(m, 0, arena_printf(m->a, "%s != 0", xs), P_CMP, VT_BOOL, x->rank, x->dim, 0) ? 0 : -1;
  if (vt == VT_F32) return ox_result(m, 0, arena_printf(m->a, "float(%s)", xs), P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
  return ox_unsupported(m, "Cast of a float tensor to an integer type at run time");
}

/* ------------------------------------------------------------ recurrent nodes */

/* v bound to a name (a statement if it is an expression). */
static const char *named(Imp *m, Val *v) {
  const char *e = ox_operand(m, v, 0);
  if (!e) return NULL;
  if (v->name && e == v->name) return e;
  const char *n = ox_new_name(m, v->oname);
  buf_printf(&m->body, "%s = %s\n", n, e);
  v->name = v->expr = n;
  v->prec = P_ATOM;
  return n;
}

/* A constant [rows, cols] (or a block of rows of it) as a new param,
 * transposed: [cols, nrows]. */
static const char *param_t(Imp *m, const char *name, const double *c, int64_t rows, int64_t cols) {
  Val *p = arena_alloc(m->a, sizeof *p);
  p->oname = name;
  p->rank = 2;
  p->dim[0] = cols;
  p->dim[1] = rows;
  p->n = rows * cols;
  p->c = arena_alloc(m->a, sizeof(double) * (size_t)(p->n ? p->n : 1));
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) p->c[j * rows + i] = c[i * cols + j];
  p->is_const = 1;
  ox_declare_param(m, p);
  return p->name;
}

static const char *param_vec(Imp *m, const char *name, const double *a, const double *b, int64_t n) {
  Val *p = arena_alloc(m->a, sizeof *p);
  p->oname = name;
  p->rank = 1;
  p->dim[0] = n;
  p->n = n;
  p->c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) p->c[i] = (a ? a[i] : 0) + (b ? b[i] : 0);
  p->is_const = 1;
  ox_declare_param(m, p);
  return p->name;
}

/* The cell functions, each written once (ONNX's gate orders). */
static const char *cell_fn(Imp *m, int kind, int lbr) {
  static const char *const names[3] = {"rnn_cell", "gru_cell", "lstm_cell"};
  if (m->have_cell[kind]) return names[kind];
  m->have_cell[kind] = 1;
  ox_name_take(m, (char *)names[kind]);
  if (kind == 0)
    buf_puts(&m->fns, "# ONNX RNN: h' = f(x Wi + h Ri + b)\n"
                      "fn rnn_cell(x, h, W, R, b) = tanh(x @ W + h @ R + b)\n");
  else if (kind == 1 && lbr)
    buf_puts(&m->fns, "# ONNX GRU (linear_before_reset): gates z, r, n\n"
                      "fn gru_cell(x, h, W, R, bw, br) {\n"
                      "  const H = dim(h, -1)\n"
                      "  gx = x @ W + bw\n"
                      "  gh = h @ R + br\n"
                      "  z = sigmoid(gx[:, 0:H] + gh[:, 0:H])\n"
                      "  r = sigmoid(gx[:, H:2*H] + gh[:, H:2*H])\n"
                      "  n = tanh(gx[:, 2*H:3*H] + r * gh[:, 2*H:3*H])\n"
                      "  return (1 - z) * n + z * h\n"
                      "}\n");
  else if (kind == 1)
    buf_puts(&m->fns, "# ONNX GRU: gates z, r, n\n"
                      "fn gru_cell(x, h, W, R, bw, br) {\n"
                      "  const H = dim(h, -1)\n"
                      "  gx = x @ W + bw\n"
                      "  z = sigmoid(gx[:, 0:H] + h @ R[:, 0:H] + br[0:H])\n"
                      "  r = sigmoid(gx[:, H:2*H] + h @ R[:, H:2*H] + br[H:2*H])\n"
                      "  n = tanh(gx[:, 2*H:3*H] + (r * h) @ R[:, 2*H:3*H] + br[2*H:3*H])\n"
                      "  return (1 - z) * n + z * h\n"
                      "}\n");
  else
    buf_puts(&m->fns, "# ONNX LSTM: gates i, o, f, c\n"
                      "fn lstm_cell(x, h, c, W, R, b) {\n"
                      "  const H = dim(h, -1)\n"
                      "  g = x @ W + h @ R + b\n"
                      "  i = sigmoid(g[:, 0:H])\n"
                      "  o = sigmoid(g[:, H:2*H])\n"
                      "  f = sigmoid(g[:, 2*H:3*H])\n"
                      "  c2 = f * c + i * tanh(g[:, 3*H:4*H])\n"
                      "  return o * tanh(c2), c2\n"
                      "}\n");
  return names[kind];
}

static int default_activations(Imp *m, int kind) {
  static const char *const def[3][3] = {{"Tanh"}, {"Sigmoid", "Tanh"}, {"Sigmoid", "Tanh", "Tanh"}};
  const Onnx__AttributeProto *a = ox_attr(m, "activations");
  if (!a) return 0;
  int n = kind == 0 ? 1 : kind == 1 ? 2 : 3;
  if (a->n_strings != (size_t)n) return ox_unsupported(m, "these activations");
  for (int k = 0; k < n; k++)
    if (a->strings[k].len != strlen(def[kind][k]) || memcmp(a->strings[k].data, def[kind][k], a->strings[k].len))
      return ox_unsupported(m, "activations other than the defaults");
  return 0;
}

/* RNN, GRU and LSTM (one direction, forward), unrolled over the static
 * sequence length: a cell function and a `for` loop carrying h (and c). */
static int op_recurrent(Imp *m) {
  const char *op = m->node->op_type;
  int kind = !strcmp(op, "RNN") ? 0 : !strcmp(op, "GRU") ? 1 : 2, G = kind == 0 ? 1 : kind == 1 ? 3 : 4;
  Val *x = ox_need_in(m, 0), *w = ox_need_in(m, 1), *r = ox_need_in(m, 2), *b = ox_in(m, 3), *sl = ox_in(m, 4), *h0 = ox_in(m, 5);
  Val *c0 = kind == 2 ? ox_in(m, 6) : NULL;
  if (!x || !w || !r || ox_float_operand(m, x)) return -1;
  if (strcmp(ox_attr_s(m, "direction", "forward"), "forward")) return ox_unsupported(m, "a reverse or bidirectional recurrence");
  if (ox_attr(m, "clip")) return ox_unsupported(m, "clip");
  if (ox_attr_i(m, "input_forget", 0)) return ox_unsupported(m, "input_forget");
  if (kind == 2 && ox_in(m, 7)) return ox_unsupported(m, "peepholes");
  if (default_activations(m, kind)) return -1;
  int layout = (int)ox_attr_i(m, "layout", 0), lbr = (int)ox_attr_i(m, "linear_before_reset", 0);
  if (x->rank != 3) return ox_node_err(m, "X must be 3-D");
  int64_t T = x->dim[layout ? 1 : 0], B = x->dim[layout ? 0 : 1], I = x->dim[2], H = ox_attr_i(m, "hidden_size", -1);
  if (T < 1) return ox_unsupported(m, "a sequence length unknown at import time");
  if (!w->is_const || !r->is_const || (b && !b->is_const)) return ox_unsupported(m, "weights computed at run time");
  if (H < 1 && r->rank == 3) H = r->dim[2];
  if (H > MAX_DIM) return ox_node_err(m, "an invalid hidden_size %lld", (long long)H);
  if (H < 1 || w->rank != 3 || r->rank != 3 || w->dim[0] != 1 || w->dim[1] != G * H || w->dim[2] != I ||
      r->dim[0] != 1 || r->dim[1] != G * H || r->dim[2] != H || (b && (b->rank != 2 || b->dim[1] != 2 * G * H)))
    return ox_node_err(m, "W, R or B does not have the shape hidden_size %lld asks for", (long long)H);
  if (sl) {
    if (!sl->is_const) return ox_unsupported(m, "sequence_lens computed at run time");
    for (int64_t i = 0; i < sl->n; i++)
      if (ox_i64(sl->c[i]) != T) return ox_unsupported(m, "sequences of different lengths");
  }
  const char *xs = named(m, x), *bt = ox_dim_text(m, B);
  if (!xs || !bt) return xs ? ox_unsupported(m, "a batch size unknown at import time") : -1;
  const char *base = m->node->output[0] && *m->node->output[0] ? m->node->output[0] : m->node->name ? m->node->name : op;
  const char *wn = param_t(m, w->oname, w->c, G * H, I), *rn = param_t(m, r->oname, r->c, G * H, H);
  const char *bs;
  if (kind == 1)
    bs = arena_printf(m->a, "%s, %s", param_vec(m, arena_printf(m->a, "%s_w", b ? b->oname : "B"), b ? b->c : NULL, NULL, G * H),
                      param_vec(m, arena_printf(m->a, "%s_r", b ? b->oname : "B"), b ? b->c + G * H : NULL, NULL, G * H));
  else
    bs = param_vec(m, b ? b->oname : arena_printf(m->a, "%s_B", base), b ? b->c : NULL, b ? b->c + G * H : NULL, G * H);
  const char *fn = cell_fn(m, kind, lbr);
  /* the state: h (and c), from initial_h / initial_c or zeros */
  const char *hn = ox_new_name(m, arena_printf(m->a, "%s_h", base)), *cn = kind == 2 ? ox_new_name(m, arena_printf(m->a, "%s_c", base)) : NULL;
  const char *st[2] = {hn, cn};
  Val *init[2] = {h0, c0};
  for (int k = 0; k < (kind == 2 ? 2 : 1); k++) {
    if (init[k]) {
      const char *e = ox_operand(m, init[k], 0);
      if (!e) return -1;
      buf_printf(&m->body, "%s = reshape(%s, [%s, %lld])\n", st[k], e, bt, (long long)H);
    } else {
      buf_printf(&m->body, "%s = zeros([%s, %lld])\n", st[k], bt, (long long)H);
    }
  }
  const char *tv = ox_new_name(m, "t");
  const char *xt = layout ? arena_printf(m->a, "%s[:, %s]", xs, tv) : arena_printf(m->a, "%s[%s]", xs, tv);
  const char *lhs = kind == 2 ? arena_printf(m->a, "%s, %s", hn, cn) : hn;
  const char *args = kind == 2 ? arena_printf(m->a, "%s, %s, %s, %s, %s", hn, cn, wn, rn, bs) : arena_printf(m->a, "%s, %s, %s, %s", hn, wn, rn, bs);
  Val *yv = m->node->n_output > 0 ? ox_val_get(m, m->node->output[0]) : NULL;
  int want_y = yv && yv->uses > 0;
  const char *yn = want_y ? ox_new_name(m, m->node->output[0]) : NULL;
  const char *ystep = want_y ? (layout ? arena_printf(m->a, "reshape(%s, [%s, 1, 1, %lld])", hn, bt, (long long)H)
                                      : arena_printf(m->a, "reshape(%s, [1, 1, %s, %lld])", hn, bt, (long long)H)) : NULL;
  int64_t first = 0;
  if (want_y) {   /* the first step outside the loop starts Y */
    buf_printf(&m->body, "%s = %s(%s, %s)\n", lhs, fn, layout ? arena_printf(m->a, "%s[:, 0]", xs) : arena_printf(m->a, "%s[0]", xs), args);
    buf_printf(&m->body, "%s = %s\n", yn, ystep);
    first = 1;
  }
  if (first < T) {
    buf_printf(&m->body, "for %s in %lld..%lld {\n  %s = %s(%s, %s)\n", tv, (long long)first, (long long)T, lhs, fn, xt, args);
    if (want_y) buf_printf(&m->body, "  %s = concat(%s, %s, axis=%d)\n", yn, yn, ystep, layout ? 1 : 0);
    buf_puts(&m->body, "}\n");
  }
  /* the outputs: Y [T, 1, B, H] (layout 1: [B, T, 1, H]), Y_h and Y_c [1, B, H] ([B, 1, H]) */
  if (want_y) {
    Val *v = ox_out_val(m, 0);
    if (!v) return -1;
    int64_t yd[4] = {T, 1, B, H}, yl[4] = {B, T, 1, H};
    v->vt = VT_F32, v->rank = 4, v->op = op, v->name = v->expr = yn, v->prec = P_ATOM;
    memcpy(v->dim, layout ? yl : yd, sizeof yd);
  }
  for (int k = 1; k <= (kind == 2 ? 2 : 1); k++) {
    if ((size_t)k >= m->node->n_output || !*m->node->output[k]) continue;
    Val *ov = ox_val_get(m, m->node->output[k]);
    if (!ov || !ov->uses) continue;
    int64_t d[3] = {1, B, H}, dl[3] = {B, 1, H};
    const char *e = layout ? arena_printf(m->a, "reshape(%s, [%s, 1, %lld])", st[k - 1], bt, (long long)H)
                           : arena_printf(m->a, "reshape(%s, [1, %s, %lld])", st[k - 1], bt, (long long)H);
    if (!ox_result(m, k, e, P_ATOM, VT_F32, 3, layout ? dl : d, 1)) return -1;
  }
  return 0;
}

/* Resize and Upsample by integer factors with nearest-neighbour sampling
 * (the modes where that repeats each pixel: asymmetric with floor, half_pixel
 * with rounding): x as [N, C, H, 1, W, 1] broadcast to [N, C, H, sh, W, sw]. */
static int op_resize(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x || ox_float_operand(m, x)) return -1;
  int up = !strcmp(m->node->op_type, "Upsample");
  const char *mode = ox_attr_s(m, "mode", "nearest");
  const char *ctm = up ? "asymmetric" : ox_attr_s(m, "coordinate_transformation_mode", m->opset >= 11 ? "half_pixel" : "asymmetric");
  const char *nm = up || m->opset < 11 ? "floor" : ox_attr_s(m, "nearest_mode", "round_prefer_floor");
  if (strcmp(mode, "nearest")) return ox_unsupported(m, "a Resize mode other than nearest");
  int half = !strcmp(ctm, "half_pixel") || !strcmp(ctm, "pytorch_half_pixel");
  if (!((!strcmp(ctm, "asymmetric") && !strcmp(nm, "floor")) || (half && strncmp(nm, "round", 5) == 0)))
    return ox_unsupported(m, "this coordinate_transformation_mode and nearest_mode");
  if (x->rank != 4) return ox_unsupported(m, "a Resize of a tensor that is not [N, C, H, W]");
  Val *sc = NULL, *sz = NULL;
  double f[4] = {1, 1, 1, 1};
  if (up && m->opset < 9) {
    const Onnx__AttributeProto *a = ox_attr(m, "scales");
    if (!a || a->n_floats != 4) return ox_node_err(m, "needs 4 scales");
    for (int k = 0; k < 4; k++) f[k] = a->floats[k];
  } else {
    sc = ox_in(m, up || m->opset < 11 ? 1 : 2);
    sz = up || m->opset < 11 ? NULL : ox_in(m, 3);
    if (sc && sc->n == 0) sc = NULL;
    if ((sc && !sc->is_const) || (sz && !sz->is_const)) return ox_unsupported(m, "scales or sizes computed at run time");
    if ((!sc) == (!sz)) return ox_node_err(m, "needs either scales or sizes");
    Val *v = sc ? sc : sz;
    if (v->n != 4) return ox_unsupported(m, "scales or sizes other than 4 values");
    for (int k = 0; k < 4; k++) {
      if (sz && x->dim[k] < 0) return ox_unsupported(m, "sizes of a symbolic dimension");
      f[k] = sc ? v->c[k] : v->c[k] / (double)x->dim[k];
    }
  }
  int64_t s[4];
  for (int k = 0; k < 4; k++) {
    s[k] = ox_i64(f[k]);
    if ((double)s[k] != f[k] || s[k] < 1 || s[k] > 1024 || (k < 2 && s[k] != 1))
      return ox_unsupported(m, "a Resize that is not an integer upsampling of H and W");
  }
  if (x->dim[2] < 0 || x->dim[3] < 0) return ox_unsupported(m, "a Resize of a symbolic spatial dimension");
  const char *xs = ox_operand(m, x, 0), *n = ox_dim_text(m, x->dim[0]), *c = ox_dim_text(m, x->dim[1]);
  if (!xs || !n || !c) return xs ? ox_unsupported(m, "an unknown shape") : -1;
  int64_t dim[4] = {x->dim[0], x->dim[1], x->dim[2] * s[2], x->dim[3] * s[3]};
  if (s[2] == 1 && s[3] == 1) return ox_alias(m, 0, x, VT_F32);
  const char *e = arena_printf(m->a, "reshape(reshape(%s, [%s, %s, %lld, 1, %lld, 1]) + zeros([%s, %s, %lld, %lld, %lld, %lld]), [%s, %s, %lld, %lld])",
                               xs, n, c, (long long)x->dim[2], (long long)x->dim[3], n, c, (long long)x->dim[2], (long long)s[2],
                               (long long)x->dim[3], (long long)s[3], n, c, (long long)dim[2], (long long)dim[3]);
  return ox_result(m, 0, e, P_ATOM, VT_F32, 4, dim, 0) ? 0 : -1;
}

/* SoftmaxCrossEntropyLoss with reduction mean or sum, no weights, no
 * ignore_index: cross_entropy over the class axis 1 (moved last for
 * [N, C, d...]); its log_prob output is log_softmax over axis 1. */
static int op_sce_loss(Imp *m) {
  Val *x = ox_need_in(m, 0), *y = ox_need_in(m, 1);
  if (!x || !y || ox_float_operand(m, x)) return -1;
  const char *red = ox_attr_s(m, "reduction", "mean");
  if (ox_in(m, 2)) return ox_unsupported(m, "class weights");
  if (ox_attr(m, "ignore_index")) return ox_unsupported(m, "ignore_index");
  if (strcmp(red, "mean") && strcmp(red, "sum")) return ox_unsupported(m, "reduction 'none'");
  if (y->vt != VT_I32 || y->is_const) return ox_unsupported(m, "labels that are not an integer input");
  if (x->rank < 2 || x->rank > 3 || y->rank != x->rank - 1) return ox_unsupported(m, "scores that are not [N, C] or [N, C, D]");
  const char *xs = ox_operand(m, x, 0), *ys = ox_operand(m, y, 0);
  if (!xs || !ys) return -1;
  const char *xl = x->rank == 3 ? arena_printf(m->a, "transpose(%s, [0, 2, 1])", xs) : xs;
  const char *e = arena_printf(m->a, "cross_entropy(%s, %s)", xl, ys);
  int prec = P_ATOM;
  if (!strcmp(red, "sum")) {
    int64_t cnt = 1;
    for (int k = 0; k < y->rank; k++) {
      if (y->dim[k] < 0) return ox_unsupported(m, "reduction 'sum' over a symbolic dimension");
      cnt = ox_mul_sat(cnt, y->dim[k]);
    }
    e = arena_printf(m->a, "%s * %lld", e, (long long)cnt);
    prec = P_MUL;
  }
  if (m->node->n_output > 1 && *m->node->output[1]) {   /* log_prob: x needs a name, read twice */
    if (x->prec != P_ATOM) return ox_unsupported(m, "log_prob of an inlined expression");
    if (!ox_result(m, 1, arena_printf(m->a, "log_softmax(%s, axis=1)", xs), P_ATOM, VT_F32, x->rank, x->dim, 1)) return -1;
  }
  return ox_result(m, 0, e, prec, VT_F32, 0, NULL, 1) ? 0 : -1;
}

/* Pad in constant mode: per padded axis, concat(full(...), x, full(...)). */
static int op_pad(Imp *m) {
  Val *x = ox_need_in(m, 0);
  if (!x || ox_float_operand(m, x)) return -1;
  if (strcmp(ox_attr_s(m, "mode", "constant"), "constant")) return ox_unsupported(m, "Pad modes other than constant");
  int64_t p[2 * MAX_RANK];
  int n;
  double v = 0;
  if (m->opset < 11) {
    n = ox_attr_ints(m, "pads", p, 2 * MAX_RANK);
    v = ox_attr_f(m, "value", 0);
  } else {
    Val *pv = ox_need_in(m, 1), *cv = ox_in(m, 2);
    if (!pv) return -1;
    n = ox_const_ints(m, pv, "pads", p, 2 * MAX_RANK);
    if (cv) {
      if (!cv->is_const || cv->n != 1) return ox_unsupported(m, "a pad value computed at run time");
      v = cv->c[0];
    }
    if (ox_in(m, 3)) return ox_unsupported(m, "Pad's axes input");
  }
  if (n < 0) return -1;
  if (n != 2 * x->rank) return ox_node_err(m, "%d pads for rank %d", n, x->rank);
  for (int k = 0; k < n; k++)
    if (p[k] < 0 || p[k] > (1 << 20)) return ox_unsupported(m, "negative (cropping) or huge pads");
  const char *e = ox_operand(m, x, 0);
  if (!e) return -1;
  int64_t dim[MAX_RANK];
  memcpy(dim, x->dim, sizeof dim);
  const char *vt = ox_num_text(m, v);
  for (int k = 0; k < x->rank; k++) {
    if (!p[k] && !p[k + x->rank]) continue;
    if (dim[k] < 0) return ox_unsupported(m, "padding a symbolic dimension");
    const char *part[2] = {"", ""};
    for (int side = 0; side < 2; side++) {
      int64_t d[MAX_RANK];
      memcpy(d, dim, sizeof d);
      d[k] = p[k + side * x->rank];
      if (!d[k]) continue;
      const char *sh = ox_list_text(m, d, x->rank);
      if (!sh) return ox_unsupported(m, "padding a tensor of unknown shape");
      part[side] = arena_printf(m->a, side ? ", full(%s, %s)" : "full(%s, %s), ", sh, vt);
    }
    e = arena_printf(m->a, "concat(%s%s%s, axis=%d)", part[0], e, part[1], k);
    dim[k] += p[k] + p[k + x->rank];
  }
  return ox_result(m, 0, e, P_ATOM, VT_F32, x->rank, dim, 0) ? 0 : -1;
}

/* ------------------------------------------------------------ op table */

typedef struct OpEntry {
  const char *name;
  OpFn fn;
} OpEntry;

static const OpEntry op_table[] = {
  {"Add", op_binary}, {"Sub", op_binary}, {"Mul", op_binary}, {"Div", op_binary}, {"Pow", op_pow},
  {"Equal", op_binary}, {"Less", op_binary}, {"Greater", op_binary}, {"LessOrEqual", op_binary},
  {"GreaterOrEqual", op_binary}, {"Max", op_variadic}, {"Min", op_variadic}, {"Sum", op_variadic},
  {"Mean", op_variadic}, {"Neg", op_unary}, {"Abs", op_unary}, {"Sqrt", op_unary}, {"Exp", op_unary},
  {"Log", op_unary}, {"Relu", op_unary}, {"LeakyRelu", op_unary}, {"Elu", op_unary}, {"Sigmoid", op_unary},
  {"Tanh", op_unary}, {"Softplus", op_unary}, {"Erf", op_unary}, {"Gelu", op_unary}, {"Reciprocal", op_unary},
  {"Clip", op_clip}, {"PRelu", op_prelu}, {"And", op_logic}, {"Or", op_logic}, {"Xor", op_logic},
  {"Trilu", op_trilu}, {"Size", op_size}, {"ArgMin", op_argmax}, {"HardSigmoid", op_unary}, {"HardSwish", op_unary},
  {"Softsign", op_unary}, {"Selu", op_unary}, {"Celu", op_unary}, {"ThresholdedRelu", op_unary}, {"Mish", op_unary}, {"Where", op_where}, {"Not", op_not}, {"MatMul", op_matmul}, {"Gemm", op_gemm},
  {"Conv", op_conv}, {"ConvTranspose", op_conv}, {"MaxPool", op_pool}, {"AveragePool", op_pool},
  {"GlobalAveragePool", op_pool}, {"GlobalMaxPool", op_pool}, {"BatchNormalization", op_batchnorm},
  {"LayerNormalization", op_layernorm}, {"Softmax", op_softmax}, {"LogSoftmax", op_softmax},
  {"Reshape", op_reshape}, {"Flatten", op_flatten}, {"Transpose", op_transpose}, {"Squeeze", op_squeeze},
  {"Unsqueeze", op_unsqueeze}, {"Concat", op_concat}, {"Slice", op_slice}, {"Split", op_split}, {"Gather", op_gather},
  {"ReduceMean", op_reduce}, {"ReduceSum", op_reduce}, {"ReduceMax", op_reduce}, {"ReduceMin", op_reduce},
  {"ReduceSumSquare", op_reduce}, {"ReduceL1", op_reduce}, {"ReduceL2", op_reduce}, {"ReduceLogSum", op_reduce},
  {"ReduceLogSumExp", op_reduce}, {"ArgMax", op_argmax}, {"Dropout", op_identity}, {"Identity", op_identity},
  {"Constant", op_constant}, {"Shape", op_shape}, {"Cast", op_cast}, {"ConstantOfShape", op_constant_of_shape}, {"Resize", op_resize}, {"Pad", op_pad}, {"SoftmaxCrossEntropyLoss", op_sce_loss}, {"Upsample", op_resize}, {"Expand", op_expand},
  {"RandomNormal", op_random}, {"RandomUniform", op_random}, {"RandomNormalLike", op_random},
  {"RandomUniformLike", op_random}, {"RNN", op_recurrent}, {"GRU", op_recurrent}, {"LSTM", op_recurrent},
};

OpFn ox_find_op(const Onnx__NodeProto *n) {
  if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx")) return NULL;
  if (!n->op_type) return NULL;
  for (size_t k = 0; k < sizeof op_table / sizeof *op_table; k++)
    if (!strcmp(n->op_type, op_table[k].name)) return op_table[k].fn;
  return NULL;
}
