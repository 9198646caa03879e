/* gen.c - random .nnd programs that are valid by construction.
 *
 * The generator keeps a pool of the values defined so far with their shapes
 * and a rough bound of their magnitude, and appends statements that apply an
 * op of the spec to values of the pool (making params and inputs of fitting
 * shapes where an op needs an operand).  Sizes are file-level consts D0..D5
 * (1, odd primes and aligned sizes) and `dim(v, k)` of earlier values, so the
 * reducer can shrink a const and keep the program consistent.  Values stay
 * in sane ranges: inputs are uniform in [-2, 2], exp and log see only
 * clamped or positive operands, divisors are bounded away from 0, and a
 * value whose bound grows past 16 is scaled down.  Comparisons and argmax
 * only see inputs, params and values one op away from them, so a rounding
 * difference between engines cannot flip them. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gen.h"

#define MAXV 96
#define MAXEL 4096      /* elements of one value */
#define NCONST 6

typedef struct GVal {
  char name[16];
  int rank;
  int64_t d[4];
  double mag;          /* rough bound of |value| */
  int depth;           /* ops since inputs and params */
  int alias;           /* a param, or a reshape of one (its output is a copy before the update) */
} GVal;

typedef struct Buf {
  char *s;
  size_t n, cap;
} Buf;

typedef struct Gen {
  uint64_t s;                /* rng state */
  Buf body, fns;
  GVal v[MAXV];
  int nv, ntmp, nparam, ninput, nout, nconstf, nmetric;
  int64_t cval[NCONST];      /* values of D0..D5 */
  int64_t N;                 /* the batch */
  int has_dense, has_cell, has_gate, has_mix;
  unsigned *feat;
} Gen;

static const char *const feat_names[] = {
#define GEN_NAME(name) #name,
  GEN_FEATURES(GEN_NAME)
#undef GEN_NAME
};

const char *gen_feature_name(int f) { return f >= 0 && f < GF_COUNT ? feat_names[f] : "?"; }

static void use(Gen *g, GenFeature f) {
  if (g->feat) g->feat[f]++;
}

__attribute__((format(printf, 2, 3)))
static void put(Buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (b->n + (size_t)k + 1 > b->cap) {
    b->cap = (b->n + (size_t)k + 1) * 2;
    b->s = realloc(b->s, b->cap);
    if (!b->s) abort();
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

/* splitmix64 */
static uint64_t next(Gen *g) {
  uint64_t z = (g->s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static int rnd(Gen *g, int n) { return n <= 1 ? 0 : (int)(next(g) % (uint64_t)n); }
static int chance(Gen *g, int pct) { return rnd(g, 100) < pct; }
static double frnd(Gen *g, double lo, double hi) { return lo + (hi - lo) * (double)(next(g) >> 11) / 9007199254740992.0; }

static int64_t numel(const GVal *v) {
  int64_t n = 1;
  for (int k = 0; k < v->rank; k++) n *= v->d[k];
  return n;
}

/* A const D<k> whose value is at most lim (-1 if none). */
static int pick_const(Gen *g, int64_t lim) {
  int c[NCONST], n = 0;
  for (int k = 0; k < NCONST; k++)
    if (g->cval[k] <= lim) c[n++] = k;
  return n ? c[rnd(g, n)] : -1;
}

/* The text of axis a of v: dim(v, a), or N for a batch axis of an input. */
static const char *dtext(const GVal *v, int a, char *buf) {
  snprintf(buf, 40, "dim(%s, %d)", v->name, a);
  return buf;
}

/* "[dim(v,0), ...]" of v's shape. */
static void shape_text(const GVal *v, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "[");
  for (int a = 0; a < v->rank; a++) {
    char t[40];
    k += (size_t)snprintf(buf + k, n - k, "%s%s", a ? ", " : "", dtext(v, a, t));
  }
  snprintf(buf + k, n - k, "]");
}

static GVal *add_val(Gen *g, const char *prefix, int rank, const int64_t *d, double mag, int depth) {
  if (g->nv >= MAXV) return NULL;
  GVal *v = &g->v[g->nv++];
  int id = prefix[0] == 'p' ? ++g->nparam : prefix[0] == 'x' || prefix[0] == 'y' || prefix[0] == 'k' ? ++g->ninput : ++g->ntmp;
  snprintf(v->name, sizeof v->name, "%s%d", prefix, id);
  v->rank = rank;
  for (int k = 0; k < rank; k++) v->d[k] = d[k];
  v->mag = mag;
  v->depth = depth;
  v->alias = 0;
  return v;
}

static const char *param_init(Gen *g, int rank, double *mag) {
  static char buf[64];
  *mag = 1;
  switch (rnd(g, 10)) {
  case 0: return "";
  case 1: snprintf(buf, sizeof buf, " = uniform(-%.2g, %.2g)", 0.5 + frnd(g, 0, 1), 0.5 + frnd(g, 0, 1)); *mag = 1.5; return buf;
  case 2: *mag = 1.5; return " = normal(0, 0.5)";
  case 3: return rank >= 2 ? " = he_uniform" : " = uniform(-1, 1)";
  case 4: return rank >= 2 ? " = he_normal" : " = normal(0.1, 0.3)";
  case 5: return rank >= 2 ? " = glorot_normal" : " = full(0.3)";
  case 6: return " = ones";
  default: return rank >= 2 ? " = glorot_uniform" : " = uniform(-1, 1)";
  }
}

/* Declares a param of rank r whose axis texts are t[0..r) (values d). */
static GVal *new_param(Gen *g, int r, char t[][40], const int64_t *d) {
  double mag;
  const char *init = param_init(g, r, &mag);
  if (r <= 1 && !strcmp(init, "")) mag = 0.01;   /* zeros */
  GVal *p = add_val(g, "p", r, d, mag, 0);
  if (!p) return NULL;
  p->alias = 1;
  put(&g->body, "param %s: f32[", p->name);
  for (int k = 0; k < r; k++) put(&g->body, "%s%s", k ? ", " : "", t[k]);
  put(&g->body, "]%s\n", init);
  /* a zero-initialised vector gives exact zeros (ties of relu, max): a few are kept on purpose */
  if (r <= 1 && !strcmp(init, "") && chance(g, 70)) {
    g->body.n -= 1;
    put(&g->body, " = uniform(-1, 1)\n");
    p->mag = 1;
  }
  return p;
}

/* Assigns expr (printf-formatted) to a new temporary of the given shape;
 * scales it down when its bound exceeds 16. */
__attribute__((format(printf, 6, 7)))
static GVal *assign(Gen *g, int rank, const int64_t *d, double mag, int depth, const char *fmt, ...) {
  GVal tmp = {.rank = rank};
  for (int k = 0; k < rank; k++) tmp.d[k] = d[k];
  if (numel(&tmp) > MAXEL) return NULL;
  GVal *v = add_val(g, "v", rank, d, mag, depth);
  if (!v) return NULL;
  char e[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e, sizeof e, fmt, ap);
  va_end(ap);
  if (mag > 16) {
    double s = 4 / mag;
    put(&g->body, "%s = (%s) * %.3g\n", v->name, e, s);
    v->mag = mag * s;
  } else put(&g->body, "%s = %s\n", v->name, e);
  return v;
}

/* A random value of the pool of rank in [lo, hi] (NULL if none); prefers recent ones. */
static GVal *pick(Gen *g, int lo, int hi) {
  int c[MAXV], n = 0;
  for (int k = 0; k < g->nv; k++)
    if (g->v[k].rank >= lo && g->v[k].rank <= hi) c[n++] = k;
  if (!n) return NULL;
  int k = chance(g, 50) ? n - 1 - rnd(g, n < 4 ? n : 4) : rnd(g, n);
  return &g->v[c[k]];
}

/* ------------------------------------------------------------ elementwise */

static GVal *st_unary(Gen *g) {
  GVal *x = pick(g, 0, 4);
  if (!x) return NULL;
  const char *n = x->name;
  double m = x->mag;
  char e[256];
  GenFeature f = GF_unary;
  switch (rnd(g, 25)) {
  case 0: snprintf(e, sizeof e, "relu(%s)", n); break;
  case 1: snprintf(e, sizeof e, "sigmoid(%s)", n); m = 1; break;
  case 2: snprintf(e, sizeof e, "tanh(%s)", n); m = 1; break;
  case 3: snprintf(e, sizeof e, "abs(%s)", n); break;
  case 4: snprintf(e, sizeof e, "softplus(%s)", n); m += 0.7; break;
  case 5: snprintf(e, sizeof e, "gelu(%s)", n); break;
  case 6: snprintf(e, sizeof e, "-%s", n); break;
  case 7: snprintf(e, sizeof e, "elu(%s)", n); break;
  case 8: snprintf(e, sizeof e, "elu(%s, alpha=%.2g)", n, frnd(g, 0.1, 2)); f = GF_unary_param; m *= 2; break;
  case 9: snprintf(e, sizeof e, "leaky_relu(%s)", n); break;
  case 10: snprintf(e, sizeof e, "leaky_relu(%s, slope=%.2g)", n, frnd(g, 0.01, 0.5)); f = GF_unary_param; break;
  case 11: {
    double lo = -frnd(g, 0.1, 1.5), hi = frnd(g, 0.1, 1.5);
    snprintf(e, sizeof e, "clamp(%s, %.2g, %.2g)", n, lo, hi);
    f = GF_unary_param;
    m = 1.5;
    break;
  }
  case 12: snprintf(e, sizeof e, "exp(clamp(%s, -4, 2))", n); f = GF_exp_log_sqrt; m = 7.4; break;
  case 13: snprintf(e, sizeof e, "exp(tanh(%s))", n); f = GF_exp_log_sqrt; m = 2.8; break;
  case 14: snprintf(e, sizeof e, "log(softplus(%s) + 0.1)", n); f = GF_exp_log_sqrt; m = log(m + 2) + 2.5; break;
  case 15: snprintf(e, sizeof e, "log(abs(%s) + 0.2)", n); f = GF_exp_log_sqrt; m = log(m + 1) + 1.7; break;
  case 16: snprintf(e, sizeof e, "sqrt(abs(%s) + 0.01)", n); f = GF_exp_log_sqrt; m = sqrt(m) + 0.2; break;
  case 17: snprintf(e, sizeof e, "sqrt(sigmoid(%s))", n); f = GF_exp_log_sqrt; m = 1; break;
  case 18: snprintf(e, sizeof e, "tanh(%s) ** %d", n, 2 + rnd(g, 2)); f = GF_pow; m = 1; break;
  case 19: snprintf(e, sizeof e, "(abs(%s) + 0.1) ** 0.5", n); f = GF_pow; m = sqrt(m) + 0.4; break;
  case 20: snprintf(e, sizeof e, "(abs(%s) + 0.5) ** -1", n); f = GF_pow; m = 2; break;
  case 21: snprintf(e, sizeof e, "%s * detach(tanh(%s))", n, n); break;   /* the gradient sees one factor */
  case 23: {   /* noise: the same draws on every engine for the run's seed and step */
    char sh[200];
    shape_text(x, sh, sizeof sh);
    if (rnd(g, 2)) snprintf(e, sizeof e, "%s + 0.5 * randn(%s)", n, sh), m += 2;
    else snprintf(e, sizeof e, "%s * rand(%s)", n, sh);
    break;
  }
  case 22:
    if (x->rank >= 2) snprintf(e, sizeof e, "tril(%s, k=%d, fill=%.2g)", n, rnd(g, 5) - 2, frnd(g, -1, 1));
    else snprintf(e, sizeof e, "relu(%s)", n);
    break;
  default:
    if (m > 4) snprintf(e, sizeof e, "tanh(%s) ** 2", n), m = 1;
    else snprintf(e, sizeof e, "%s ** 2", n), m = m * m;
    f = GF_pow;
    break;
  }
  use(g, f);
  return assign(g, x->rank, x->d, m, x->depth + 1, "%s", e);
}

/* A second operand for x: a pool value that broadcasts to x's shape, a new
 * param of a broadcast shape, or a literal.  Sets *mag, *depth. */
static void operand(Gen *g, const GVal *x, char *buf, size_t n, double *mag, int *depth, int allow_lit) {
  int c[MAXV], nc = 0;
  for (int k = 0; k < g->nv; k++) {
    const GVal *w = &g->v[k];
    if (w == x || w->rank > x->rank) continue;
    int ok = 1;
    for (int a = 0; a < w->rank; a++) {
      int64_t dw = w->d[w->rank - 1 - a], dx = x->d[x->rank - 1 - a];
      if (dw != dx && dw != 1) ok = 0;
    }
    if (ok) c[nc++] = k;
  }
  int r = rnd(g, 10);
  if (allow_lit && r < 2) {
    snprintf(buf, n, "%.3g", frnd(g, -2, 2));
    *mag = 2;
    *depth = 0;
    return;
  }
  if (nc && r < 6) {
    const GVal *w = &g->v[c[rnd(g, nc)]];
    snprintf(buf, n, "%s", w->name);
    *mag = w->mag;
    *depth = w->depth;
    if (w->rank < x->rank || numel(w) < numel(x)) use(g, GF_broadcast);
    return;
  }
  /* a param of a suffix of x's shape, some axes 1 */
  int r2 = x->rank ? 1 + rnd(g, x->rank) : 0;
  char t[4][40];
  int64_t d[4];
  for (int a = 0; a < r2; a++) {
    int ax = x->rank - r2 + a;
    if (chance(g, 30)) snprintf(t[a], 40, "1"), d[a] = 1;
    else dtext(x, ax, t[a]), d[a] = x->d[ax];
  }
  GVal *p = new_param(g, r2, t, d);
  if (!p) {
    snprintf(buf, n, "0.5");
    *mag = 1;
    *depth = 0;
    return;
  }
  if (r2 < x->rank || numel(p) < numel(x)) use(g, GF_broadcast);
  snprintf(buf, n, "%s", p->name);
  *mag = p->mag;
  *depth = 0;
}

static GVal *st_binary(Gen *g) {
  GVal *x = pick(g, 0, 4);
  if (!x) return NULL;
  char y[64];
  double my;
  int dy;
  operand(g, x, y, sizeof y, &my, &dy, 1);
  int depth = (x->depth > dy ? x->depth : dy) + 1;
  switch (rnd(g, 9)) {
  case 0: use(g, GF_binary); return assign(g, x->rank, x->d, x->mag + my, depth, "%s + %s", x->name, y);
  case 1: use(g, GF_binary); return assign(g, x->rank, x->d, x->mag + my, depth, "%s - %s", y, x->name);
  case 2: use(g, GF_binary); return assign(g, x->rank, x->d, x->mag * my, depth, "%s * %s", x->name, y);
  case 3: use(g, GF_div); return assign(g, x->rank, x->d, x->mag * 2, depth, "%s / (abs(%s) + 0.5)", x->name, y);
  case 4: use(g, GF_div); return assign(g, x->rank, x->d, my, depth, "%s / (1 + %s * %s)", y, x->name, x->name);
  case 5: use(g, GF_max_min); return assign(g, x->rank, x->d, x->mag + my, depth, "maximum(%s, %s)", x->name, y);
  case 6: use(g, GF_max_min); return assign(g, x->rank, x->d, x->mag + my, depth, "minimum(%s, %s)", y, x->name);
  case 7: use(g, GF_binary); return assign(g, x->rank, x->d, x->mag + my, depth, "where(%s > 0, %s, %s)", y, x->name, y);
  default: use(g, GF_binary); return assign(g, x->rank, x->d, x->mag * 0.5 + my, depth, "0.5 * %s + %s", x->name, y);
  }
}

/* (a OP b) on shallow values, scaling a third. */
static GVal *st_compare(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x || x->depth > 1) return NULL;
  char y[64];
  double my;
  int dy;
  operand(g, x, y, sizeof y, &my, &dy, 1);
  if (dy > 1) return NULL;
  static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
  use(g, GF_compare);
  const char *op = ops[rnd(g, 6)];
  if (chance(g, 50)) return assign(g, x->rank, x->d, 1, 0, "(%s %s %s)", x->name, op, y);
  GVal *z = pick(g, 0, 4);
  (void)z;
  return assign(g, x->rank, x->d, x->mag, x->depth + 1, "%s * (%s %s %s) + 0.1 * %s", x->name, x->name, op, y, x->name);
}

/* ------------------------------------------------------------- reductions */

static GVal *st_reduce(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  static const char *const ops[] = {"sum", "mean", "max"};
  int op = rnd(g, 3), keep = chance(g, 40), form = rnd(g, 3);
  char e[256], ax[64] = "";
  int64_t d[4];
  int r = 0;
  uint32_t mask = 0;
  if (form == 0 || x->rank == 1) {
    mask = (1u << x->rank) - 1;
    if (form == 0 && chance(g, 50)) use(g, GF_reduce_all);
    else {
      /* all axes named explicitly */
      snprintf(ax, sizeof ax, ", axis=[");
      for (int a = 0; a < x->rank; a++) snprintf(ax + strlen(ax), sizeof ax - strlen(ax), "%s%d", a ? ", " : "", a);
      strcat(ax, "]");
      use(g, GF_reduce_axes);
    }
  } else if (form == 1 || x->rank < 3) {
    int a = rnd(g, x->rank);
    mask = 1u << a;
    snprintf(ax, sizeof ax, ", axis=%d", chance(g, 30) ? a - x->rank : a);
    use(g, GF_reduce_axis);
  } else {
    int a = rnd(g, x->rank), b = (a + 1 + rnd(g, x->rank - 1)) % x->rank;
    mask = (1u << a) | (1u << b);
    snprintf(ax, sizeof ax, ", axis=[%d, %d]", b, chance(g, 30) ? a - x->rank : a);
    use(g, GF_reduce_axes);
  }
  int64_t cnt = 1;
  for (int a = 0; a < x->rank; a++) {
    if (mask & (1u << a)) {
      cnt *= x->d[a];
      if (keep) d[r++] = 1;
    } else d[r++] = x->d[a];
  }
  if (keep) use(g, GF_keepdims);
  snprintf(e, sizeof e, "%s(%s%s%s)", ops[op], x->name, ax, keep ? (chance(g, 50) ? ", keepdims=true" : ", keepdims=1") : (chance(g, 20) ? ", keepdims=false" : ""));
  double m = op == 0 ? x->mag * pow((double)cnt, 0.75) : x->mag;
  return assign(g, r, d, m, x->depth + 1, "%s", e);
}

/* x - mean(x, axis, keepdims) and friends: a reduction broadcast back. */
static GVal *st_center(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  int a = rnd(g, x->rank);
  use(g, GF_center);
  use(g, GF_keepdims);
  if (chance(g, 50))
    return assign(g, x->rank, x->d, 2 * x->mag, x->depth + 2, "%s - mean(%s, axis=%d, keepdims=true)", x->name, x->name, a);
  if (chance(g, 50))
    return assign(g, x->rank, x->d, 1, x->depth + 2, "%s / (sum(abs(%s), axis=%d, keepdims=true) + 1)", x->name, x->name, a);
  return assign(g, x->rank, x->d, x->mag, x->depth + 2, "%s - max(%s, axis=%d, keepdims=true)", x->name, x->name, a - x->rank);
}

static GVal *st_softmax(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  int a = rnd(g, x->rank), lsm = chance(g, 40);
  char ax[32] = "";
  if (a != x->rank - 1 || chance(g, 50)) snprintf(ax, sizeof ax, ", axis=%d", chance(g, 30) ? a - x->rank : a);
  use(g, lsm ? GF_log_softmax : GF_softmax);
  return assign(g, x->rank, x->d, lsm ? 2 * x->mag + 4 : 1, x->depth + 1, "%s(%s%s)", lsm ? "log_softmax" : "softmax", x->name, ax);
}

static GVal *st_argmax(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x || x->depth > 1) return NULL;
  int a = rnd(g, x->rank);
  int64_t d[4];
  int r = 0;
  for (int k = 0; k < x->rank; k++)
    if (k != a) d[r++] = x->d[k];
  use(g, GF_argmax);
  return assign(g, r, d, (double)x->d[a], 0, "float(argmax(%s, axis=%d))", x->name, chance(g, 30) ? a - x->rank : a);
}

/* ----------------------------------------------------------------- matrix */

static GVal *st_matmul(Gen *g) {
  GVal *x = pick(g, 2, 3);
  if (!x) return NULL;
  char t[4][40], rhs[128];
  int64_t d[4], od[4];
  double mb = 1;
  int depth = x->depth;
  int r = x->rank, k = pick_const(g, 32);
  if (k < 0) return NULL;
  int64_t K = x->d[r - 1], Nn = g->cval[k];
  /* a pool value of a fitting shape? */
  for (int i = g->nv - 1; i >= 0 && chance(g, 85); i--) {
    GVal *w = &g->v[i];
    if (w == x) continue;
    if (w->rank == 2 && w->d[0] == K) {
      snprintf(rhs, sizeof rhs, "%s", w->name), Nn = w->d[1], mb = w->mag, depth = w->depth > depth ? w->depth : depth;
      use(g, r == 3 ? GF_matmul_bcast : GF_matmul2);
      goto have;
    }
    if (w->rank == 2 && w->d[1] == K) {
      snprintf(rhs, sizeof rhs, "transpose(%s)", w->name), Nn = w->d[0], mb = w->mag, depth = w->depth > depth ? w->depth : depth;
      use(g, r == 3 ? GF_matmul_bcast : GF_matmul2);
      use(g, GF_transpose2);
      goto have;
    }
    if (r == 3 && w->rank == 3 && w->d[0] == x->d[0] && w->d[1] == K) {
      snprintf(rhs, sizeof rhs, "%s", w->name), Nn = w->d[2], mb = w->mag, depth = w->depth > depth ? w->depth : depth;
      use(g, GF_matmul_batched);
      goto have;
    }
    if (r == 3 && w->rank == 3 && w->d[0] == x->d[0] && w->d[2] == K) {
      snprintf(rhs, sizeof rhs, "transpose(%s, [0, 2, 1])", w->name), Nn = w->d[1], mb = w->mag, depth = w->depth > depth ? w->depth : depth;
      use(g, GF_matmul_batched);
      use(g, GF_transpose_perm);
      goto have;
    }
  }
  {
    int batched = r == 3 && chance(g, 40), q = 0;
    if (batched) dtext(x, 0, t[q]), d[q++] = x->d[0];
    dtext(x, r - 1, t[q]), d[q++] = K;
    snprintf(t[q], 40, "D%d", k), d[q++] = Nn;
    GVal *p = new_param(g, q, t, d);
    if (!p) return NULL;
    snprintf(rhs, sizeof rhs, "%s", p->name);
    mb = p->mag;
    use(g, r == 2 ? GF_matmul2 : batched ? GF_matmul_batched : GF_matmul_bcast);
  }
have:
  for (int a = 0; a < r - 1; a++) od[a] = x->d[a];
  od[r - 1] = Nn;
  double m = x->mag * mb * sqrt((double)K) * 0.7;
  if (r == 2 && chance(g, 20)) {
    /* left product by a param: [D, M] @ x */
    int k2 = pick_const(g, 17);
    if (k2 < 0) return NULL;
    snprintf(t[0], 40, "D%d", k2), d[0] = g->cval[k2];
    dtext(x, 0, t[1]), d[1] = x->d[0];
    GVal *p = new_param(g, 2, t, d);
    if (!p) return NULL;
    int64_t o2[2] = {g->cval[k2], x->d[1]};
    use(g, GF_matmul2);
    return assign(g, 2, o2, x->mag * sqrt((double)x->d[0]), x->depth + 1, "%s @ %s", p->name, x->name);
  }
  return assign(g, r, od, m, depth + 1, "%s @ %s", x->name, rhs);
}

static GVal *st_transpose(Gen *g) {
  GVal *x = pick(g, 2, 4);
  if (!x) return NULL;
  int64_t d[4];
  if (x->rank == 2 && chance(g, 60)) {
    d[0] = x->d[1], d[1] = x->d[0];
    use(g, GF_transpose2);
    return assign(g, 2, d, x->mag, x->depth + 1, "transpose(%s)", x->name);
  }
  int p[4] = {0, 1, 2, 3};
  for (int k = x->rank - 1; k > 0; k--) {
    int j = rnd(g, k + 1), t = p[k];
    p[k] = p[j], p[j] = t;
  }
  char e[128];
  size_t n = (size_t)snprintf(e, sizeof e, "transpose(%s, [", x->name);
  for (int k = 0; k < x->rank; k++) n += (size_t)snprintf(e + n, sizeof e - n, "%s%d", k ? ", " : "", p[k]), d[k] = x->d[p[k]];
  snprintf(e + n, sizeof e - n, "])");
  use(g, GF_transpose_perm);
  return assign(g, x->rank, d, x->mag, x->depth + 1, "%s", e);
}

static GVal *st_reshape(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  int64_t d[4];
  char t[4][96], e[480];
  int r = 0, form = rnd(g, 4);
  if (form == 0 && x->rank >= 2) {
    d[0] = x->d[0];
    d[1] = numel(x) / x->d[0];
    use(g, GF_flatten);
    GVal *v = assign(g, 2, d, x->mag, x->depth + 1, "flatten(%s)", x->name);
    if (v && x->alias && x->mag <= 16) v->alias = 1;
    return v;
  }
  if (form == 1 || x->rank == 4) {
    if (x->rank < 2) return NULL;
    int a = rnd(g, x->rank - 1), minus = chance(g, 30);
    for (int k = 0; k < x->rank; k++) {
      if (k == a) {
        d[r] = x->d[a] * x->d[a + 1];
        if (minus) snprintf(t[r], 96, "-1");
        else snprintf(t[r], 96, "dim(%s, %d) * dim(%s, %d)", x->name, a, x->name, a + 1);
        r++, k++;
      } else dtext(x, k, t[r]), d[r++] = x->d[k];
    }
  } else if (form == 2) {
    /* split an axis by a factor (or insert a 1) */
    int a = rnd(g, x->rank);
    int64_t n = x->d[a], f = 1;
    for (int64_t q = 2; q < n; q++)
      if (n % q == 0) { f = q; if (chance(g, 50)) break; }
    for (int k = 0; k < x->rank; k++) {
      if (k == a) {
        snprintf(t[r], 40, "%lld", (long long)f), d[r++] = f;
        if (chance(g, 30)) snprintf(t[r], 40, "-1");
        else snprintf(t[r], 40, "%lld", (long long)(n / f));
        d[r++] = n / f;
      } else dtext(x, k, t[r]), d[r++] = x->d[k];
    }
  } else {
    d[0] = numel(x);
    snprintf(t[0], 40, "-1");
    r = 1;
  }
  size_t n = (size_t)snprintf(e, sizeof e, "reshape(%s, [", x->name);
  for (int k = 0; k < r; k++) n += (size_t)snprintf(e + n, sizeof e - n, "%s%s", k ? ", " : "", t[k]);
  snprintf(e + n, sizeof e - n, "])");
  use(g, GF_reshape);
  GVal *v = assign(g, r, d, x->mag, x->depth + 1, "%s", e);
  if (v && x->alias && x->mag <= 16) v->alias = 1;
  return v;
}

static GVal *st_slice(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  char e[256];
  int64_t d[4];
  int r = 0, any = 0;
  size_t n = (size_t)snprintf(e, sizeof e, "%s[", x->name);
  for (int a = 0; a < x->rank; a++) {
    int64_t s = x->d[a];
    char ix[48];
    int form = rnd(g, 3);
    if (a == x->rank - 1 && !any) form = x->rank > 1 && chance(g, 30) ? 2 : 1;
    if (form == 2 && x->rank == 1) form = 1;
    if (form == 0) {
      snprintf(ix, sizeof ix, ":");
      d[r++] = s;
    } else if (form == 1) {
      int64_t lo = rnd(g, (int)s), hi = lo + 1 + rnd(g, (int)(s - lo));
      if (chance(g, 30)) {
        if (hi == s) snprintf(ix, sizeof ix, "%lld:", (long long)(lo - s));
        else snprintf(ix, sizeof ix, "%lld:%lld", (long long)(lo - s), (long long)(hi - s));
      } else if (lo == 0 && chance(g, 50)) snprintf(ix, sizeof ix, ":%lld", (long long)hi);
      else if (hi == s && chance(g, 50)) snprintf(ix, sizeof ix, "%lld:", (long long)lo);
      else snprintf(ix, sizeof ix, "%lld:%lld", (long long)lo, (long long)hi);
      d[r++] = hi - lo;
      any = 1;
    } else {
      int64_t i = rnd(g, (int)s);
      snprintf(ix, sizeof ix, "%lld", (long long)(chance(g, 30) ? i - s : i));
      use(g, GF_index);
      any = 1;
    }
    n += (size_t)snprintf(e + n, sizeof e - n, "%s%s", a ? ", " : "", ix);
  }
  snprintf(e + n, sizeof e - n, "]");
  use(g, GF_slice);
  return assign(g, r, d, x->mag, x->depth + 1, "%s", e);
}

static GVal *st_concat(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  int a = rnd(g, x->rank), nops = 2 + chance(g, 30);
  int64_t d[4], tot = x->d[a];
  for (int k = 0; k < x->rank; k++) d[k] = x->d[k];
  char e[1024], o[400];
  double m = x->mag;
  size_t n = (size_t)snprintf(e, sizeof e, "concat(%s", x->name);
  for (int i = 1; i < nops; i++) {
    int form = rnd(g, 3);
    GVal *w = NULL;
    for (int k = g->nv - 1; k >= 0 && form == 0; k--) {
      GVal *c = &g->v[k];
      int ok = c != x && c->rank == x->rank;
      for (int q = 0; ok && q < x->rank; q++)
        if (q != a && c->d[q] != x->d[q]) ok = 0;
      if (ok) { w = c; break; }
    }
    if (w) {
      snprintf(o, sizeof o, "%s", w->name), tot += w->d[a], m = m > w->mag ? m : w->mag;
    } else if (form == 1 && x->d[a] > 1) {
      int64_t hi = 1 + rnd(g, (int)x->d[a] - 1);
      char ix[160] = "";
      for (int q = 0; q < x->rank; q++) {
        char one[40];
        snprintf(one, sizeof one, "%s%s", q ? ", " : "", q == a ? "" : ":");
        if (q == a) snprintf(one, sizeof one, "%s0:%lld", q ? ", " : "", (long long)hi);
        strcat(ix, one);
      }
      snprintf(o, sizeof o, "tanh(%s)[%s]", x->name, ix), tot += hi;
    } else {
      char t[4][40];
      int64_t pd[4];
      int k = pick_const(g, 8);
      if (k < 0) return NULL;
      for (int q = 0; q < x->rank; q++) {
        if (q == a) snprintf(t[q], 40, "D%d", k), pd[q] = g->cval[k];
        else dtext(x, q, t[q]), pd[q] = x->d[q];
      }
      GVal *p = new_param(g, x->rank, t, pd);
      if (!p) return NULL;
      snprintf(o, sizeof o, "%s", p->name), tot += pd[a];
    }
    n += (size_t)snprintf(e + n, sizeof e - n, ", %s", o);
  }
  if (a == 0 && chance(g, 30)) snprintf(e + n, sizeof e - n, ")");
  else snprintf(e + n, sizeof e - n, ", axis=%d)", chance(g, 30) ? a - x->rank : a);
  d[a] = tot;
  use(g, GF_concat);
  return assign(g, x->rank, d, m + 1, x->depth + 1, "%s", e);
}

/* ------------------------------------------------------------ convolution */

/* A rank-4 value, made from a rank-3 or rank-2 one by reshape if needed. */
static GVal *image(Gen *g) {
  GVal *x = pick(g, 4, 4);
  if (x && chance(g, 80)) return x;
  GVal *y = pick(g, 2, 3);
  if (!y) return x;
  int64_t d[4] = {y->d[0], 1, y->d[1], y->rank == 3 ? y->d[2] : 1};
  GVal *v;
  if (y->rank == 3)
    v = assign(g, 4, d, y->mag, y->depth + 1, "reshape(%s, [dim(%s, 0), 1, dim(%s, 1), dim(%s, 2)])", y->name, y->name, y->name, y->name);
  else v = assign(g, 4, d, y->mag, y->depth + 1, "reshape(%s, [dim(%s, 0), 1, dim(%s, 1), 1])", y->name, y->name, y->name);
  if (v && y->alias && y->mag <= 16) v->alias = 1;
  return v;
}

/* An option's text: ", name=v" or ", name=[vh, vw]" (always when they
 * differ), nothing for the default v = dflt (sometimes spelled anyway). */
static void conv_opt(Gen *g, char *opt, size_t n, const char *name, const int *v, int dflt) {
  size_t k = strlen(opt);
  if (v[0] != v[1] || chance(g, 25)) snprintf(opt + k, n - k, ", %s=[%d, %d]", name, v[0], v[1]);
  else if (v[0] != dflt || chance(g, 20)) snprintf(opt + k, n - k, ", %s=%d", name, v[0]);
}

/* conv2d with per-axis stride, padding and dilation and groups (depthwise
 * included), or conv_transpose2d with output_padding and groups. */
static GVal *st_conv(Gen *g) {
  GVal *x = image(g);
  if (!x) return NULL;
  static const int ks[] = {1, 2, 3, 3, 5};
  int64_t H = x->d[2], W = x->d[3], C = x->d[1], HW[2] = {H, W};
  int tr = chance(g, 20);
  for (int tries = 0; tries < 8; tries++) {
    int kk[2], st[2], pd[2], dl[2] = {1, 1}, op[2] = {0, 0};
    kk[0] = ks[rnd(g, 5)], kk[1] = chance(g, 70) ? kk[0] : ks[rnd(g, 5)];
    st[0] = chance(g, 60) ? 1 : 2 + rnd(g, 2), st[1] = chance(g, 80) ? st[0] : 1 + rnd(g, 3);
    pd[0] = chance(g, 50) ? 0 : 1 + rnd(g, 2), pd[1] = chance(g, 80) ? pd[0] : rnd(g, 3);
    if (!tr && chance(g, 25)) dl[0] = 1 + rnd(g, 3), dl[1] = chance(g, 70) ? dl[0] : 1 + rnd(g, 2);
    int k = pick_const(g, 8);
    if (k < 0) return NULL;
    int64_t O = g->cval[k], grp = 1;
    char otext[40];
    snprintf(otext, sizeof otext, "D%d", k);
    /* groups: a divisor of C (C itself: depthwise), O then a multiple of it */
    if (C > 1 && chance(g, 35)) {
      for (grp = C; grp > 1 && !(C % grp == 0 && chance(g, 60)); grp--) {}
      if (grp == 1) grp = C;
      if (O % grp) O = grp * (1 + rnd(g, 2)), snprintf(otext, sizeof otext, "%lld", (long long)O);
    }
    int64_t od[4] = {x->d[0], O, 0, 0};
    int ok = 1;
    for (int a = 0; a < 2; a++) {
      if (tr) {
        if (pd[a] > (kk[a] - 1)) pd[a] = kk[a] - 1;   /* keep the output non-empty and small */
        if (st[a] > 1 && chance(g, 40)) op[a] = rnd(g, st[a]);
        od[2 + a] = (HW[a] - 1) * st[a] - 2 * pd[a] + kk[a] + op[a];
      } else {
        int64_t span = (int64_t)dl[a] * (kk[a] - 1) + 1;
        if (HW[a] + 2 * pd[a] < span) ok = 0;
        else od[2 + a] = (HW[a] + 2 * pd[a] - span) / st[a] + 1;
      }
      ok &= od[2 + a] >= 1;
    }
    if (!ok) continue;
    if (od[0] * O * od[2] * od[3] > MAXEL || od[0] * O * od[2] * od[3] * C * kk[0] * kk[1] > 400000) continue;
    char t[4][40], e[320], opt[160] = "", b[40] = "";
    int64_t d[4] = {tr ? C : O, tr ? O / grp : C / grp, kk[0], kk[1]};
    if (tr) dtext(x, 1, t[0]), snprintf(t[1], 40, "%lld", (long long)(O / grp));
    else if (grp == 1) snprintf(t[0], 40, "%s", otext), dtext(x, 1, t[1]);
    else snprintf(t[0], 40, "%s", otext), snprintf(t[1], 40, "%lld", (long long)(C / grp));
    snprintf(t[2], 40, "%d", kk[0]);
    snprintf(t[3], 40, "%d", kk[1]);
    GVal *w = new_param(g, 4, t, d);
    if (!w) return NULL;
    if (chance(g, 60)) {
      char tb[1][40];
      int64_t db[1] = {O};
      snprintf(tb[0], 40, "%s", otext);
      GVal *bb = new_param(g, 1, tb, db);
      if (!bb) return NULL;
      snprintf(b, sizeof b, ", %s", bb->name);
      use(g, GF_conv2d_bias);
    }
    conv_opt(g, opt, sizeof opt, "stride", st, 1);
    conv_opt(g, opt, sizeof opt, "padding", pd, 0);
    if (tr) conv_opt(g, opt, sizeof opt, "output_padding", op, 0);
    else conv_opt(g, opt, sizeof opt, "dilation", dl, 1);
    if (grp > 1 || chance(g, 10)) snprintf(opt + strlen(opt), sizeof opt - strlen(opt), ", groups=%lld", (long long)grp);
    if (st[0] != 1 || st[1] != 1) use(g, GF_conv2d_stride);
    if (pd[0] || pd[1]) use(g, GF_conv2d_pad);
    if (dl[0] != 1 || dl[1] != 1) use(g, GF_conv2d_dilation);
    if (grp > 1) use(g, GF_conv2d_groups);
    use(g, tr ? GF_conv_transpose2d : GF_conv2d);
    snprintf(e, sizeof e, "%s(%s, %s%s%s)", tr ? "conv_transpose2d" : "conv2d", x->name, w->name, b, opt);
    double fan = (double)(tr ? O / grp : C / grp) * kk[0] * kk[1];
    return assign(g, 4, od, x->mag * w->mag * sqrt(fan) * 0.7 + 1, x->depth + 1, "%s", e);
  }
  return NULL;
}

static GVal *st_pool(Gen *g) {
  GVal *x = image(g);
  if (!x) return NULL;
  int64_t H = x->d[2], W = x->d[3], lim = H < W ? H : W;
  int size = 1 + rnd(g, (int)(lim < 4 ? lim : 4));
  int stride = chance(g, 50) ? size : 1 + rnd(g, 3), avg = chance(g, 50);
  char opt[32] = "";
  if (stride != size || chance(g, 20)) snprintf(opt, sizeof opt, ", stride=%d", stride);
  if (stride != size) use(g, GF_pool_stride);
  int64_t d[4] = {x->d[0], x->d[1], (H - size) / stride + 1, (W - size) / stride + 1};
  use(g, avg ? GF_avgpool : GF_maxpool);
  return assign(g, 4, d, x->mag, x->depth + 1, "%s(%s, %d%s)", avg ? "avgpool2d" : "maxpool2d", x->name, size, opt);
}

/* ------------------------------------------------------ neural, creation */

static GVal *st_dropout(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  static const double ps[] = {0.1, 0.25, 0.5, 0.75};
  double p = ps[rnd(g, 4)];
  use(g, GF_dropout);
  return assign(g, x->rank, x->d, x->mag / (1 - p), x->depth + 1, "dropout(%s, %g)", x->name, p);
}

/* layer_norm over the last axis, with or without w and b, and batch_norm
 * over [N, C] or [N, C, H, W] (training steps: the batch's statistics and
 * the running-statistics update; forward runs: the running statistics). */
static GVal *st_norm(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  static const double epss[] = {1e-5, 1e-3, 0.1};
  double eps = epss[rnd(g, 3)];
  char t[1][40], opt[64] = "", e[256];
  int64_t cnt = x->rank >= 2 ? numel(x) / (x->d[1] ? x->d[1] : 1) : 0;
  int bn = (x->rank == 2 || x->rank == 4) && cnt > 1 && chance(g, 50);
  int a = bn ? 1 : x->rank - 1;
  int64_t d[1] = {x->d[a]};
  dtext(x, a, t[0]);
  if (eps != 1e-5 || chance(g, 20)) snprintf(opt, sizeof opt, ", eps=%g", eps);
  if (bn) {
    GVal *w = new_param(g, 1, t, d), *b = w ? new_param(g, 1, t, d) : NULL;
    if (!b) return NULL;
    if (chance(g, 30)) snprintf(opt + strlen(opt), sizeof opt - strlen(opt), ", momentum=%g", 0.05 + frnd(g, 0, 0.9));
    use(g, GF_batch_norm);
    snprintf(e, sizeof e, "batch_norm(%s, %s, %s%s)", x->name, w->name, b->name, opt);
    /* a whole right-hand side, never scaled: the running statistics take its name */
    return assign(g, x->rank, x->d, fmin(3 * w->mag * sqrt((double)cnt) + b->mag, 16), x->depth + 2, "%s", e);
  }
  use(g, GF_layer_norm);
  if (chance(g, 50)) {
    GVal *w = new_param(g, 1, t, d), *b = w ? new_param(g, 1, t, d) : NULL;
    if (!b) return NULL;
    snprintf(e, sizeof e, "layer_norm(%s, %s, %s%s)", x->name, w->name, b->name, opt);
    return assign(g, x->rank, x->d, fmin(3 * w->mag * sqrt((double)d[0]) + b->mag, 16), x->depth + 2, "%s", e);
  }
  return assign(g, x->rank, x->d, fmin(sqrt((double)d[0]), 16), x->depth + 2, "layer_norm(%s%s)", x->name, opt);
}

/* Attention as users write it (passes/attention.c fuses it; difffuzz sets
 * NNDC_ATTENTION=fused so that short sequences fuse too): x [A, T, C] ->
 * softmax(scale (x Wq) (x Wk)^T [causal]) (x Wv) [A, T, F]. */
static GVal *st_attn(Gen *g) {
  GVal *x = pick(g, 3, 3);
  if (!x || x->d[1] < 1) return NULL;
  int64_t E = 1 + rnd(g, 9), F = 1 + rnd(g, 9), dq[2] = {x->d[2], E}, dv[2] = {x->d[2], F};
  char t[2][40], tv[2][40];
  dtext(x, 2, t[0]);
  dtext(x, 2, tv[0]);
  snprintf(t[1], sizeof t[1], "%lld", (long long)E);
  snprintf(tv[1], sizeof tv[1], "%lld", (long long)F);
  GVal *wq = new_param(g, 2, t, dq), *wk = wq ? new_param(g, 2, t, dq) : NULL, *wv = wk ? new_param(g, 2, tv, dv) : NULL;
  if (!wv) return NULL;
  double scale = 1 / sqrt((double)E * (x->mag * x->mag + 1) * (wq->mag * wk->mag + 0.1) * (double)x->d[2]);
  char sc[48], e[256], m[320];
  switch (rnd(g, 3)) {
  case 0: snprintf(sc, sizeof sc, " * %.4g", scale); break;
  case 1: snprintf(sc, sizeof sc, " / %.4g", 1 / scale); break;
  default: sc[0] = 0;
  }
  const char *pre = sc[0] == 0 ? "" : "(", *post = sc[0] == 0 ? "" : ")";
  snprintf(e, sizeof e, "%s(%s @ %s) @ transpose(%s @ %s, [0, 2, 1])%s%s", pre, x->name, wq->name, x->name, wk->name, post, sc);
  if (chance(g, 50)) snprintf(m, sizeof m, "tril(%s, k=%d, fill=-inf)", e, rnd(g, 3));
  else snprintf(m, sizeof m, "%s", e);
  use(g, GF_attention);
  int64_t d[3] = {x->d[0], x->d[1], F};
  return assign(g, 3, d, fmin(x->mag * wv->mag * (double)x->d[2], 16), x->depth + 3, "softmax(%s) @ (%s @ %s)", m,
                x->name, wv->name);
}

static GVal *st_creation(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  char s[200];
  shape_text(x, s, sizeof s);
  use(g, GF_creation);
  switch (rnd(g, 3)) {
  case 0: return assign(g, x->rank, x->d, x->mag + 1, x->depth + 1, "%s + full(%s, %.3g)", x->name, s, frnd(g, -1, 1));
  case 1: return assign(g, x->rank, x->d, x->mag, x->depth + 1, "%s * ones(%s) - zeros(%s)", x->name, s, s);
  default: {
    int64_t d[4];
    for (int k = 0; k < x->rank; k++) d[k] = x->d[k];
    d[0] *= 2;
    use(g, GF_concat);
    return assign(g, x->rank, d, x->mag, x->depth + 1, "concat(%s, zeros(%s), axis=0)", x->name, s);
  }
  }
}

static GVal *st_const(Gen *g) {
  GVal *x = pick(g, 0, 4);
  if (!x) return NULL;
  int c = ++g->nconstf;
  double v = frnd(g, -1.5, 1.5);
  put(&g->body, "const c%d = %.3g\n", c, v);
  use(g, GF_const_scalar);
  return assign(g, x->rank, x->d, x->mag * 1.5 + 1, x->depth + 1, "%s * c%d + c%d * c%d", x->name, c, c, c);
}

static GVal *st_i32(Gen *g) {
  int k = pick_const(g, 17);
  if (k < 0) return NULL;
  int64_t d[2] = {g->N, g->cval[k]};
  char name[16];
  snprintf(name, sizeof name, "k%d", ++g->ninput);
  put(&g->body, "input %s: i32[N, D%d]\n", name, k);
  use(g, GF_i32_input);
  if (chance(g, 50)) return assign(g, 2, d, 3, 0, "float(%s) * 0.5", name);
  return assign(g, 2, d, 1, 0, "(%s %s %d)", name, chance(g, 50) ? "==" : ">=", rnd(g, 4));
}

/* --------------------------------------------------------- layers, loops */

static GVal *st_layer(Gen *g) {
  GVal *x = pick(g, 2, 3);
  if (!x) return NULL;
  int k = pick_const(g, 32);
  if (k < 0) return NULL;
  int64_t d[4];
  for (int a = 0; a < x->rank; a++) d[a] = x->d[a];
  d[x->rank - 1] = g->cval[k];
  g->has_dense = 1;
  use(g, GF_layer);
  GVal *v = assign(g, x->rank, d, fmin(x->mag * 2 + 1, 16), x->depth + 1, "dense(%s, D%d)", x->name, k);
  return v;
}

static GVal *st_rnn(Gen *g) {
  GVal *x = pick(g, 3, 3);
  if (!x || x->d[1] > 7) return NULL;
  int k = pick_const(g, 17);
  if (k < 0) return NULL;
  int64_t d[2] = {x->d[0], g->cval[k]};
  GVal *h = add_val(g, "h", 2, d, 1, x->depth + 2);
  if (!h) return NULL;
  g->has_cell = 1;
  use(g, GF_layer_loop);
  use(g, GF_loop);
  put(&g->body, "%s = zeros([dim(%s, 0), D%d])\n", h->name, x->name, k);
  put(&g->body, "for t in 0..dim(%s, 1) {\n  %s = cell(%s[:, t, :], %s)\n}\n", x->name, h->name, x->name, h->name);
  return h;
}

static GVal *st_loop(Gen *g) {
  GVal *x = pick(g, 0, 4);
  if (!x) return NULL;
  char y[64];
  double my;
  int dy, n = 1 + rnd(g, 4);
  operand(g, x, y, sizeof y, &my, &dy, 0);
  GVal *v = assign(g, x->rank, x->d, 1, x->depth + 1, "tanh(%s)", x->name);
  if (!v) return NULL;
  use(g, GF_loop);
  if (chance(g, 50)) put(&g->body, "for i in 0..%d {\n  %s = tanh(%s * 0.5 + %s)\n}\n", n, v->name, v->name, y);
  else put(&g->body, "for i in 1..%d {\n  %s = %s * 0.9 + tanh(%s) * (0.1 * i)\n}\n", n + 1, v->name, v->name, y);
  v->mag = n * 2 + 1;
  v->depth += 2 * n;
  return v;
}

static GVal *st_fn(Gen *g) {
  GVal *x = pick(g, 1, 4);
  if (!x) return NULL;
  char y[64];
  double my;
  int dy;
  operand(g, x, y, sizeof y, &my, &dy, 0);
  if (chance(g, 50)) {
    g->has_gate = 1;
    use(g, GF_fn_expr);
    return assign(g, x->rank, x->d, x->mag + my, x->depth + 1, "gate(%s, %s)", x->name, y);
  }
  /* two results */
  if (g->nv + 2 > MAXV) return NULL;
  GVal *a = add_val(g, "v", x->rank, x->d, x->mag, x->depth + 2), *b = add_val(g, "v", x->rank, x->d, x->mag + 1, x->depth + 2);
  g->has_mix = 1;
  use(g, GF_fn_multi);
  put(&g->body, "%s, %s = mix(%s, %s)\n", a->name, b->name, x->name, y);
  return b;
}

/* --------------------------------------------------------------- program */

static void inputs(Gen *g) {
  int n = 1 + rnd(g, 3);
  for (int i = 0; i < n; i++) {
    int r = 1 + rnd(g, 4);
    int64_t d[4] = {g->N, 1, 1, 1}, tot = g->N;
    char t[4][40];
    snprintf(t[0], 40, "N");
    for (int a = 1; a < r; a++) {
      int k = pick_const(g, r == 4 ? (a == 1 ? 5 : 13) : 32);
      if (k < 0 || tot * g->cval[k] > MAXEL / 2) k = pick_const(g, 3);
      if (k < 0) { r = a; break; }
      snprintf(t[a], 40, "D%d", k), d[a] = g->cval[k], tot *= d[a];
    }
    GVal *x = add_val(g, "x", r, d, 2, 0);
    put(&g->body, "input %s: f32[", x->name);
    for (int a = 0; a < r; a++) put(&g->body, "%s%s", a ? ", " : "", t[a]);
    put(&g->body, "]\n");
  }
}

/* A value of the pool that the loss can use, preferring late ones. */
static GVal *late(Gen *g, int lo, int hi) {
  for (int k = g->nv - 1; k >= 0; k--)
    if (g->v[k].rank >= lo && g->v[k].rank <= hi && chance(g, 60)) return &g->v[k];
  return pick(g, lo, hi);
}

/* A fresh input of x's shape (data for a loss): "input yK: f32[...]". */
static const char *target_like(Gen *g, const GVal *x, char *name) {
  char sh[200];
  shape_text(x, sh, sizeof sh);
  snprintf(name, 16, "y%d", ++g->ninput);
  put(&g->body, "input %s: f32%s\n", name, sh);
  return name;
}

static void loss(Gen *g) {
  int n = 1 + rnd(g, 3), done = 0;
  Buf l = {0};
  for (int i = 0; i < n || !done; i++) {
    char term[256] = "", y[16];
    GVal *x;
    switch (rnd(g, 5)) {
    case 0:
      if (!(x = late(g, 0, 4)) || !target_like(g, x, y)) continue;
      snprintf(term, sizeof term, "mse(%s, %s)", x->name, y);
      use(g, GF_mse);
      break;
    case 1:
      if (!(x = late(g, 2, 2)) || x->d[1] < 2) continue;
      {
        GVal lab = *x;
        snprintf(lab.name, sizeof lab.name, "%s", x->name);
        if (!target_like(g, &lab, y)) continue;
        snprintf(term, sizeof term, "cross_entropy(%s, argmax(%s, axis=1))", x->name, y);
      }
      use(g, GF_cross_entropy);
      break;
    case 2:
      if (!(x = late(g, 0, 4)) || !target_like(g, x, y)) continue;
      if (chance(g, 50)) snprintf(term, sizeof term, "bce_logits(%s, sigmoid(%s))", x->name, y);
      else snprintf(term, sizeof term, "bce_logits(%s, %s > 0)", x->name, y);
      use(g, GF_bce_logits);
      break;
    default:
      if (!(x = late(g, 0, 4))) continue;
      if (chance(g, 40)) snprintf(term, sizeof term, "mean(%s * %s)", x->name, x->name);
      else if (chance(g, 50)) snprintf(term, sizeof term, "mean(%s)", x->name);
      else snprintf(term, sizeof term, "sum(%s) * %.3g", x->name, 1.0 / (double)numel(x));
      use(g, GF_loss_reduce);
      break;
    }
    put(&l, "%s%s%s", done ? " + " : "", done && chance(g, 50) ? "0.5 * " : "", term);
    done = 1;
  }
  put(&g->body, "loss = %s\n", l.s);
  free(l.s);
}

static void outputs(Gen *g) {
  int n = 1 + rnd(g, 3);
  for (int i = 0; i < n; i++) {
    GVal *x = chance(g, 50) ? &g->v[g->nv - 1 - rnd(g, g->nv < 3 ? g->nv : 3)] : pick(g, 0, 4);
    if (x->rank >= 1 && x->depth <= 1 && chance(g, 30)) {
      put(&g->body, "output o%d = argmax(%s, axis=%d)\n", ++g->nout, x->name, rnd(g, x->rank));
      use(g, GF_argmax);
    } else put(&g->body, "output o%d = %s\n", ++g->nout, x->name);
  }
  if (chance(g, 30)) {
    GVal *x = pick(g, 0, 4);
    put(&g->body, "metric m%d = mean(%s)\n", ++g->nmetric, x->name);
    use(g, GF_metric);
  }
  if (chance(g, 20)) {
    GVal *x = pick(g, 2, 2);
    if (x && x->depth <= 1 && x != &g->v[0] && g->v[0].rank == 2 && g->v[0].d[0] == x->d[0]) {
      put(&g->body, "metric m%d = mean(argmax(%s, axis=1) == argmax(%s, axis=1))\n", ++g->nmetric, x->name, g->v[0].name);
      use(g, GF_metric);
    }
  }
}

static void train(Gen *g, Buf *b) {
  double lr = chance(g, 50) ? 0.01 : chance(g, 50) ? 0.1 : 0.003;
  put(b, "train {\n  optimizer = ");
  switch (rnd(g, 7)) {
  case 0: put(b, "sgd(lr=%g)", lr); use(g, GF_sgd); break;
  case 1:
    put(b, "sgd(lr=%g, momentum=%g", lr, chance(g, 50) ? 0.9 : 0.5);
    use(g, GF_sgd_momentum);
    if (chance(g, 50)) put(b, ", nesterov=true"), use(g, GF_nesterov);
    if (chance(g, 50)) put(b, ", weight_decay=0.01"), use(g, GF_weight_decay);
    put(b, ")");
    break;
  case 2:
    put(b, "adam(lr=%g", lr);
    if (chance(g, 50)) put(b, ", beta1=0.8, beta2=0.99");
    if (chance(g, 30)) put(b, ", eps=1e-6");
    if (chance(g, 30)) put(b, ", weight_decay=0.1"), use(g, GF_weight_decay);
    put(b, ")");
    use(g, GF_adam);
    break;
  case 3: put(b, "adamw(lr=%g%s)", lr, chance(g, 50) ? ", weight_decay=0.05" : ""); use(g, GF_adamw); break;
  case 4:
    put(b, "rmsprop(lr=%g", lr);
    if (chance(g, 50)) put(b, ", alpha=0.9");
    if (chance(g, 40)) put(b, ", momentum=0.5"), use(g, GF_rmsprop_momentum);
    put(b, ")");
    use(g, GF_rmsprop);
    break;
  case 5: put(b, "adagrad(lr=%g%s)", lr, chance(g, 50) ? ", eps=1e-6" : ""); use(g, GF_adagrad); break;
  default: put(b, "sgd(lr=%g, weight_decay=0.1)", lr); use(g, GF_sgd); use(g, GF_weight_decay); break;
  }
  put(b, "\n  batch = %lld\n", (long long)g->N);
  if (chance(g, 50)) put(b, "  seed = %d\n", rnd(g, 1000));
  put(b, "}\n");
}

typedef GVal *(*Stmt)(Gen *);

char *gen_program(uint64_t seed, unsigned *feat) {
  Gen g = {0};
  g.s = seed * 0x2545f4914f6cdd1dULL + 1;
  g.feat = feat;
  static const int64_t sizes[] = {1, 2, 2, 3, 3, 3, 5, 5, 5, 7, 7, 8, 8, 13, 16, 17, 32, 31, 33, 64};
  static const int64_t batches[] = {1, 2, 3, 3, 4, 5, 8};
  for (int k = 0; k < NCONST; k++) g.cval[k] = sizes[rnd(&g, (int)(sizeof sizes / sizeof *sizes))];
  g.cval[rnd(&g, NCONST)] = 2 + rnd(&g, 2);   /* at least one small size */
  g.N = batches[rnd(&g, 7)];
  inputs(&g);
  static const struct { Stmt f; int w; } st[] = {
    {st_unary, 14}, {st_binary, 14}, {st_compare, 2}, {st_reduce, 6}, {st_center, 3}, {st_softmax, 3},
    {st_argmax, 1}, {st_matmul, 8}, {st_transpose, 3}, {st_reshape, 4}, {st_slice, 4}, {st_concat, 3},
    {st_conv, 5}, {st_pool, 3}, {st_dropout, 2}, {st_creation, 1}, {st_const, 1}, {st_i32, 1},
    {st_layer, 3}, {st_rnn, 2}, {st_loop, 2}, {st_fn, 2}, {st_norm, 3}, {st_attn, 2},
  };
  int total = 0, nst = (int)(sizeof st / sizeof *st);
  for (int k = 0; k < nst; k++) total += st[k].w;
  int n = 3 + rnd(&g, chance(&g, 30) ? 24 : 12);
  for (int i = 0, tries = 0; i < n && tries < 200; tries++) {
    int r = rnd(&g, total), k = 0;
    while (r >= st[k].w) r -= st[k].w, k++;
    if (g.nv >= MAXV - 8) break;
    if (st[k].f(&g)) i++;
  }
  outputs(&g);
  loss(&g);
  Buf out = {0};
  int steps = 1 + rnd(&g, 3);
  put(&out, "# difffuzz seed %llu\n# difffuzz: steps=%d\n", (unsigned long long)seed, steps);
  for (int k = 0; k < NCONST; k++) put(&out, "const D%d = %lld\n", k, (long long)g.cval[k]);
  if (g.has_dense)
    put(&out, "fn dense(x, units) {\n  param W: f32[dim(x, -1), units]%s\n  param b: f32[units]\n  return x @ W + b\n}\n",
        chance(&g, 50) ? " = he_uniform" : "");
  if (g.has_cell)
    put(&out, "fn cell(x, h) {\n  param Wx: f32[dim(x, -1), dim(h, -1)]\n  param Wh: f32[dim(h, -1), dim(h, -1)]\n"
              "  param b: f32[dim(h, -1)]\n  return tanh(x @ Wx + h @ Wh + b)\n}\n");
  if (g.has_gate) put(&out, "fn gate(a, b) = a * sigmoid(b) + b\n");
  if (g.has_mix) put(&out, "fn mix(a, b) {\n  s = sigmoid(b)\n  return a * s, a - s\n}\n");
  put(&out, "%s", g.body.s);
  train(&g, &out);
  free(g.body.s);
  free(g.fns.s);
  return out.s;
}
