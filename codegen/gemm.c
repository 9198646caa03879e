/* gemm.c - tiled matrix products in kernel IR, and the small kernel-IR
 * builder (KGen) that gemm.c and conv.c share.
 *
 * Contract: gemm_lower fills an empty kernel with C[b] = A[b] @ B[b] for
 * operands given by strides (so a transposed operand is read in place).
 * The shape of the code, for the LLVM vectorizers:
 *   for each block of KC steps of k (a slice of B that stays in L2)
 *     for t in row blocks of MR rows (PARALLEL, batch-major)
 *       for each column tile of nr columns (and one remainder tile)
 *         MR x nr scalar accumulators (KS_LET), zero or C so far
 *         for k in the block: acc[r][c] += A[i0+r, k] * B[k, j0+c]
 *         store the accumulators to C
 * After SROA the accumulators are loop-carried SSA values; the SLP
 * vectorizer turns each row of nr of them into two vector registers and the
 * B loads into vector loads, which is the register-blocked micro-kernel.
 * Each C element is still summed in k order from 0 (in f32), so results do
 * not depend on the tiling or the thread split.
 */
#include <string.h>
#include "kir.h"

/* Micro-kernel: MR rows x nr columns of C in registers: nr is two vectors
 * of the host (32 on AVX-512, 16 on AVX2), so the 2 MR accumulators, two B
 * vectors and an A broadcast fit the register file (32 zmm, 16 ymm) with no
 * spills.  NR is the largest nr. */
enum { MR = 6, NR = 32, KC = 256 };

static int host_nr(void) {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx512f") ? 32 : 16;
#else
  return 16;
#endif
}

/* ---------------------------------------------------------------- builder */

static KExpr *kg_new(KGen *g, KExprKind kind, KType t) {
  KExpr *e = arena_alloc(g->a, sizeof *e);
  e->kind = kind;
  e->t = t;
  return e;
}

KExpr *kg_int(KGen *g, int64_t v) {
  KExpr *e = kg_new(g, KX_CONST, KT_I64);
  e->i = v;
  return e;
}

KExpr *kg_f32(KGen *g, double v) {
  KExpr *e = kg_new(g, KX_CONST, KT_F32);
  e->f = (float)v;
  return e;
}

KExpr *kg_f64(KGen *g, double v) {
  KExpr *e = kg_new(g, KX_CONST, KT_F64);
  e->f = v;
  return e;
}

int kg_new_var(KGen *g, KType t) {
  Kernel *k = g->k;
  if (k->nvars >= g->cap) {
    int cap = k->nvars < 16 ? 32 : 2 * k->nvars;
    KType *v = arena_alloc(g->a, (size_t)cap * sizeof *v);
    if (k->nvars) memcpy(v, k->vtype, (size_t)k->nvars * sizeof *v);
    k->vtype = v;
    g->cap = cap;
  }
  k->vtype[k->nvars] = t;
  return k->nvars++;
}

KExpr *kg_var(KGen *g, int v) {
  KExpr *e = kg_new(g, KX_VAR, g->k->vtype[v]);
  e->var = v;
  return e;
}

static int is_int(const KExpr *e, int64_t v) {
  return e->kind == KX_CONST && e->t == KT_I64 && e->i == v;
}

/* A binary op; folds the integer identities index arithmetic produces. */
KExpr *kg_bin(KGen *g, int op, KExpr *x, KExpr *y) {
  NNDC_ASSERT(x->t == y->t);
  if (x->t == KT_I64 && x->kind == KX_CONST && y->kind == KX_CONST) {
    if (op == KB_ADD) return kg_int(g, x->i + y->i);
    if (op == KB_MUL) return kg_int(g, x->i * y->i);
    if (op == KB_SUB) return kg_int(g, x->i - y->i);
  }
  if (x->t == KT_I64) {
    if (op == KB_ADD && is_int(x, 0)) return y;
    if ((op == KB_ADD || op == KB_SUB) && is_int(y, 0)) return x;
    if (op == KB_MUL && (is_int(x, 0) || is_int(y, 0))) return kg_int(g, 0);
    if (op == KB_MUL && is_int(x, 1)) return y;
    if ((op == KB_MUL || op == KB_DIV) && is_int(y, 1)) return x;
    if (op == KB_REM && is_int(y, 1)) return kg_int(g, 0);
  }
  KExpr *e = kg_new(g, KX_BIN, op >= KB_LT && op <= KB_GE ? KT_BOOL : x->t);
  e->op = op;
  e->a[0] = x;
  e->a[1] = y;
  return e;
}

KExpr *kg_add(KGen *g, KExpr *x, KExpr *y) { return kg_bin(g, KB_ADD, x, y); }
KExpr *kg_addi(KGen *g, KExpr *x, int64_t c) { return kg_bin(g, KB_ADD, x, kg_int(g, c)); }
KExpr *kg_muli(KGen *g, KExpr *x, int64_t c) { return kg_bin(g, KB_MUL, x, kg_int(g, c)); }

KExpr *kg_sel(KGen *g, KExpr *c, KExpr *x, KExpr *y) {
  NNDC_ASSERT(c->t == KT_BOOL && x->t == y->t);
  KExpr *e = kg_new(g, KX_SELECT, x->t);
  e->a[0] = c;
  e->a[1] = x;
  e->a[2] = y;
  return e;
}

KExpr *kg_cast(KGen *g, KType t, KExpr *x) {
  if (x->t == t) return x;
  KExpr *e = kg_new(g, KX_CAST, t);
  e->a[0] = x;
  return e;
}

KExpr *kg_load(KGen *g, int buf, KExpr *idx) {
  KExpr *e = kg_new(g, KX_LOAD, g->p->bufs[buf].dt == DT_F32 ? KT_F32 : KT_I64);
  e->buf = buf;
  e->a[0] = idx;
  return e;
}

static KStmt *kg_stmt(KGen *g, KStmtKind kind) {
  KStmt *s = arena_alloc(g->a, sizeof *s);
  s->kind = kind;
  return s;
}

static KStmt **kg_emit(KStmt **at, KStmt *s) {
  *at = s;
  return &s->next;
}

KStmt **kg_store(KGen *g, KStmt **at, int buf, KExpr *idx, KExpr *val) {
  KStmt *s = kg_stmt(g, KS_STORE);
  s->buf = buf;
  s->idx = idx;
  s->val = kg_cast(g, g->p->bufs[buf].dt == DT_F32 ? KT_F32 : KT_I64, val);
  return kg_emit(at, s);
}

KStmt **kg_let(KGen *g, KStmt **at, int *v, KExpr *init) {
  KStmt *s = kg_stmt(g, KS_LET);
  s->var = *v = kg_new_var(g, init->t);
  s->val = init;
  return kg_emit(at, s);
}

KStmt **kg_set(KGen *g, KStmt **at, int v, KExpr *val) {
  KStmt *s = kg_stmt(g, KS_SET);
  s->var = v;
  s->val = val;
  return kg_emit(at, s);
}

/* for (v = lo; v < hi; v += step); *at advances past the loop; returns its
 * body slot.  A PARALLEL loop runs over [0, hi) with hi constant. */
KStmt **kg_loop(KGen *g, KStmt ***at, KExpr **v, KExpr *lo, KExpr *hi, int64_t step, int flags) {
  KStmt *s = kg_stmt(g, KS_LOOP);
  s->var = kg_new_var(g, KT_I64);
  s->lo = lo;
  s->hi = hi;
  s->step = step;
  s->flags = flags;
  if (flags & KL_PARALLEL) {
    NNDC_ASSERT(is_int(lo, 0) && hi->kind == KX_CONST && step == 1);
    NNDC_ASSERT(g->k->par == 0 || g->k->par == hi->i);
    g->k->par = hi->i;
  }
  *v = kg_var(g, s->var);
  *at = kg_emit(*at, s);
  return &s->body;
}

/* for (v = 0; v < n; v++), elided (v = 0) when n == 1 and not PARALLEL. */
KStmt **kg_for(KGen *g, KStmt ***at, KExpr **v, int64_t n, int flags) {
  if (n == 1 && !(flags & KL_PARALLEL)) {
    *v = kg_int(g, 0);
    return *at;
  }
  return kg_loop(g, at, v, kg_int(g, 0), kg_int(g, n), 1, flags);
}

KStmt **kg_if(KGen *g, KStmt ***at, KExpr *cond) {
  KStmt *s = kg_stmt(g, KS_IF);
  s->cond = cond;
  *at = kg_emit(*at, s);
  return &s->body;
}

/* ------------------------------------------------------------------ gemm */

/* One product being lowered: operand strides and per-row-block bases. */
typedef struct Gemm {
  KGen *g;
  GemmOperand A, B, C;
  int64_t K;
  KExpr *abase, *bbase, *cbase; /* batch offsets of the current row block */
  KExpr *i0;                    /* first row of the block */
  KExpr *kb, *kend;             /* the k block [kb, kend) */
  int first_only;               /* one k block: accumulators start at 0 */
} Gemm;

static KExpr *at2(Gemm *m, const GemmOperand *o, KExpr *base, KExpr *r, KExpr *c) {
  KGen *g = m->g;
  return kg_add(g, base, kg_add(g, kg_muli(g, r, o->rs), kg_muli(g, c, o->cs)));
}

/* An mr x nr tile of C at (i0, j0) over the current k block. */
static void gemm_tile(Gemm *m, KStmt **at, KExpr *j0, int mr, int nr) {
  KGen *g = m->g;
  int acc[MR][NR], av[MR], bv[NR];
  for (int r = 0; r < mr; r++)
    for (int c = 0; c < nr; c++) {
      KExpr *ci = at2(m, &m->C, m->cbase, kg_addi(g, m->i0, r), kg_addi(g, j0, c));
      KExpr *init = kg_f32(g, 0);
      if (!m->first_only)
        init = kg_sel(g, kg_bin(g, KB_EQ, m->kb, kg_int(g, 0)), init, kg_load(g, m->C.buf, ci));
      at = kg_let(g, at, &acc[r][c], init);
    }
  KExpr *k;
  KStmt **body = kg_loop(g, &at, &k, m->kb, m->kend, 1, 0);
  for (int r = 0; r < mr; r++)
    body = kg_let(g, body, &av[r], kg_load(g, m->A.buf, at2(m, &m->A, m->abase, kg_addi(g, m->i0, r), k)));
  for (int c = 0; c < nr; c++)
    body = kg_let(g, body, &bv[c], kg_load(g, m->B.buf, at2(m, &m->B, m->bbase, k, kg_addi(g, j0, c))));
  for (int r = 0; r < mr; r++)
    for (int c = 0; c < nr; c++) {
      KExpr *p = kg_bin(g, KB_MUL, kg_var(g, av[r]), kg_var(g, bv[c]));
      body = kg_set(g, body, acc[r][c], kg_bin(g, KB_ADD, kg_var(g, acc[r][c]), p));
    }
  for (int r = 0; r < mr; r++)
    for (int c = 0; c < nr; c++) {
      KExpr *ci = at2(m, &m->C, m->cbase, kg_addi(g, m->i0, r), kg_addi(g, j0, c));
      at = kg_store(g, at, m->C.buf, ci, kg_var(g, acc[r][c]));
    }
}

/* All column tiles of mr rows: full nr tiles in a loop, then the rest. */
static void gemm_rows(Gemm *m, KStmt **at, int64_t N, int mr) {
  KGen *g = m->g;
  int nr = host_nr();
  int64_t nfull = N / nr * nr;
  if (nfull > 0) {
    KExpr *j0;
    KStmt **body = kg_loop(g, &at, &j0, kg_int(g, 0), kg_int(g, nfull), nr, 0);
    gemm_tile(m, body, j0, mr, nr);
  }
  if (N > nfull) gemm_tile(m, at, kg_int(g, nfull), mr, (int)(N - nfull));
}

void gemm_lower(KGen *g, int64_t batch, int64_t M, int64_t N, int64_t K,
                GemmOperand A, GemmOperand B, GemmOperand C) {
  Gemm m = {.g = g, .A = A, .B = B, .C = C, .K = K};
  g->k->flops = 2.0 * (double)batch * (double)M * (double)N * (double)K;
  if (batch * M * N == 0) return;
  int64_t nrb = (M + MR - 1) / MR, mrem = M % MR;
  KStmt **at = &g->k->body;
  if (K == 0) {  /* an empty sum: C = 0 */
    m.first_only = 1;
    m.kb = m.kend = kg_int(g, 0);
  } else if (K <= KC) {
    m.first_only = 1;
    m.kb = kg_int(g, 0);
    m.kend = kg_int(g, K);
  } else {  /* k blocks outermost: a KC x N slice of B is reused by every row block */
    at = kg_loop(g, &at, &m.kb, kg_int(g, 0), kg_int(g, K), KC, 0);
    m.kend = kg_bin(g, KB_MIN, kg_addi(g, m.kb, KC), kg_int(g, K));
  }
  KExpr *t;
  at = kg_loop(g, &at, &t, kg_int(g, 0), kg_int(g, batch * nrb), 1, KL_PARALLEL);
  KExpr *b = batch > 1 ? kg_bin(g, KB_DIV, t, kg_int(g, nrb)) : kg_int(g, 0);
  KExpr *rb = batch > 1 ? kg_bin(g, KB_REM, t, kg_int(g, nrb)) : t;
  m.i0 = kg_muli(g, rb, MR);
  m.abase = kg_muli(g, b, A.bs);
  m.bbase = kg_muli(g, b, B.bs);
  m.cbase = kg_muli(g, b, C.bs);
  if (mrem == 0) {
    gemm_rows(&m, at, N, MR);
    return;
  }
  KExpr *full = kg_bin(g, KB_LE, kg_addi(g, m.i0, MR), kg_int(g, M));
  KStmt **then = kg_if(g, &at, full);
  gemm_rows(&m, then, N, MR);
  KStmt **rest = kg_if(g, &at, kg_bin(g, KB_GT, kg_addi(g, m.i0, MR), kg_int(g, M)));
  gemm_rows(&m, rest, N, (int)mrem);
}
