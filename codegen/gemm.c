/* gemm.c - tiled matrix products in kernel IR, and the small kernel-IR
 * builder (KGen) that gemm.c and conv.c share.
 *
 * Contract: gemm_lower fills an empty kernel with C[b] = A[b] @ B[b] for
 * operands given by strides (so a transposed operand is read in place).
 * gemm_pack (a kernel of its own, run before) copies B into column panels
 * of the tile's width, each K rows of contiguous elements, the last one
 * zero-padded to whole vectors.  The shape of the code:
 *   for each block of KC steps of k
 *     for each block of NCT column tiles (that slice of packed B stays in L2)
 *       for t in (row block of MR rows, column chunk) items (PARALLEL)
 *         for each column tile of the item in the block (and the remainder)
 *           KS_TILE: MR x nr accumulators, zero or C so far, plus the
 *           k block's products, stored to C; then the epilogue over the
 *           tile when the last k block is done
 * KS_TILE is the register-blocked micro-kernel: one function per tile shape
 * shared by every product of a program (codegen/llvm.c builds it from host
 * vectors, codegen/c.c prints it in GNU C vectors), so a product's own code
 * is small.  A tile that cannot use it (B unpacked and not whole vectors
 * wide, C strided) is expanded inline as scalar accumulators for the SLP
 * vectorizer.  Each C element is still summed in k order from 0 (in f32),
 * so results do not depend on the tiling or the thread split.
 */
#include <string.h>
#include "kir.h"
#include "target.h"

/* Micro-kernel: MR rows x nr columns of C in registers: nr is two vectors
 * of the target (32 on AVX-512, 16 on AVX2, 8 on generic x86-64), so the 2 MR accumulators, two B
 * vectors and an A broadcast fit the register file (32 zmm, 16 ymm) with no
 * spills.  NR is the largest nr. */
enum { MR = 6, NR = 32, KC = 256, NCT = 8 };

int gemm_target_nr(void) { return target_tile_nr(target_current()); }

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

KExpr *kg_un(KGen *g, int op, KExpr *x) {
  KExpr *e = kg_new(g, KX_UN, x->t);
  e->op = op;
  e->a[0] = x;
  return e;
}

KExpr *kg_ctx(KGen *g, int slot) {
  KExpr *e = kg_new(g, KX_CTX, KT_I64);
  e->i = slot;
  return e;
}

KExpr *kg_hyper(KGen *g, int k) {
  KExpr *e = kg_new(g, KX_CTX, KT_F64);
  e->i = KCTX_COUNT + k;
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

KStmt **kg_error(KGen *g, KStmt **at, KExpr *val) {
  KStmt *s = kg_stmt(g, KS_ERROR);
  s->val = val;
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

/* Columns of the remainder tile once packed: N % nr rounded up to whole
 * vectors (nr / 2), the padding zero-filled by gemm_pack. */
static int64_t rem_width(int64_t N, int nr) {
  int64_t w = N % nr, v = nr / 2;
  return (w + v - 1) / v * v;
}

int64_t gemm_pack_numel(int64_t M, int64_t N, int64_t K, int bcontig) {
  int nr = gemm_target_nr();
  /* Packing reads and writes B once more: worth it when at least two row
   * blocks read every panel, or when B's rows are not contiguous. */
  if ((M <= MR && bcontig) || K == 0 || N == 0) return 0;
  return K * (N / nr * nr + rem_width(N, nr));
}

/* Packed B: for each column tile j0 (nr wide, or the padded remainder of
 * width w), the K x width panel row after row at j0 * K, so the
 * micro-kernel reads B contiguously whatever B's strides. */
void gemm_pack(KGen *g, int64_t batch, int64_t N, int64_t K, GemmOperand B, int dst) {
  int nr = gemm_target_nr();
  int64_t nfull = N / nr * nr, w = rem_width(N, nr), per = K * (nfull + w);
  KExpr *t, *jt, *c;
  KStmt **at = &g->k->body;
  if (B.cs != 1 && B.rs == 1) {
    /* B read transposed: a panel's columns are rows of B's storage, so each
     * panel is copied whole (nr streams read in order, one written) rather
     * than row k across every panel, which touches a line per element */
    int64_t nt = nfull / nr + (w > 0);
    KExpr *k;
    at = kg_loop(g, &at, &t, kg_int(g, 0), kg_int(g, batch * nt), 1, KL_PARALLEL);
    KExpr *b = batch > 1 ? kg_bin(g, KB_DIV, t, kg_int(g, nt)) : kg_int(g, 0);
    KExpr *j = batch > 1 ? kg_bin(g, KB_REM, t, kg_int(g, nt)) : t;
    KExpr *wd = kg_sel(g, kg_bin(g, KB_LT, j, kg_int(g, nfull / nr)), kg_int(g, nr), kg_int(g, w));
    KExpr *out = kg_add(g, kg_muli(g, b, per), kg_muli(g, j, (int64_t)nr * K));
    KStmt **kl = kg_loop(g, &at, &k, kg_int(g, 0), kg_int(g, K), 1, 0);
    KStmt **cl = kg_loop(g, &kl, &c, kg_int(g, 0), wd, 1, KL_VECTOR);
    KExpr *col = kg_add(g, kg_muli(g, j, nr), c);
    KExpr *src = kg_add(g, kg_muli(g, b, B.bs), k);
    KExpr *v = kg_load(g, B.buf, kg_add(g, src, kg_muli(g, kg_bin(g, KB_MIN, col, kg_int(g, N - 1)), B.cs)));
    kg_store(g, cl, dst, kg_add(g, out, kg_add(g, kg_bin(g, KB_MUL, k, wd), c)),
             kg_sel(g, kg_bin(g, KB_LT, col, kg_int(g, N)), v, kg_f32(g, 0)));
    g->k->flops = 0;
    return;
  }
  at = kg_loop(g, &at, &t, kg_int(g, 0), kg_int(g, batch * K), 1, KL_PARALLEL);
  KExpr *b = batch > 1 ? kg_bin(g, KB_DIV, t, kg_int(g, K)) : kg_int(g, 0);
  KExpr *k = batch > 1 ? kg_bin(g, KB_REM, t, kg_int(g, K)) : t;
  KExpr *src = kg_add(g, kg_muli(g, b, B.bs), kg_muli(g, k, B.rs));
  KExpr *out = kg_muli(g, b, per);
  if (nfull > 0) {
    KStmt **tl = kg_loop(g, &at, &jt, kg_int(g, 0), kg_int(g, nfull), nr, 0);
    KStmt **cl = kg_loop(g, &tl, &c, kg_int(g, 0), kg_int(g, nr), 1, KL_VECTOR);
    KExpr *o = kg_add(g, out, kg_add(g, kg_add(g, kg_muli(g, jt, K), kg_muli(g, k, nr)), c));
    kg_store(g, cl, dst, o, kg_load(g, B.buf, kg_add(g, src, kg_muli(g, kg_add(g, jt, c), B.cs))));
  }
  if (w > 0) {
    KStmt **cl = kg_loop(g, &at, &c, kg_int(g, 0), kg_int(g, w), 1, KL_VECTOR);
    KExpr *o = kg_add(g, out, kg_add(g, kg_int(g, nfull * K), kg_add(g, kg_muli(g, k, w), c)));
    KExpr *col = kg_addi(g, c, nfull);
    KExpr *in = kg_bin(g, KB_LT, col, kg_int(g, N));
    /* a clamped index keeps the padding's load inside B */
    KExpr *v = kg_load(g, B.buf, kg_add(g, src, kg_muli(g, kg_bin(g, KB_MIN, col, kg_int(g, N - 1)), B.cs)));
    kg_store(g, cl, dst, o, kg_sel(g, in, v, kg_f32(g, 0)));
  }
  g->k->flops = 0;
}

/* One product being lowered: operand strides and per-item bases. */
typedef struct Gemm {
  KGen *g;
  GemmOperand A, B, C;
  int64_t K, N;
  int packed;                   /* B is gemm_pack's layout */
  const GemmEpi *epi;
  KExpr *b;                     /* batch index of the current item */
  KExpr *abase, *bbase, *cbase; /* batch offsets of the current item */
  KExpr *i0;                    /* first row of the block */
  KExpr *kb, *kend;             /* the k block [kb, kend) */
  int first_only;               /* one k block: accumulators start at 0 */
} Gemm;

static KExpr *at2(Gemm *m, const GemmOperand *o, KExpr *base, KExpr *r, KExpr *c) {
  KGen *g = m->g;
  return kg_add(g, base, kg_add(g, kg_muli(g, r, o->rs), kg_muli(g, c, o->cs)));
}

/* Stores the mr x nc accumulators to C, through the epilogue if any. */
static KStmt **gemm_store(Gemm *m, KStmt **at, KExpr *j0, int mr, int nc, int (*acc)[NR], int epi) {
  KGen *g = m->g;
  for (int r = 0; r < mr; r++)
    for (int c = 0; c < nc; c++) {
      KExpr *row = kg_addi(g, m->i0, r), *col = kg_addi(g, j0, c);
      KExpr *v = kg_var(g, acc[r][c]);
      if (epi) v = m->epi->fn(m->epi->ctx, g, &at, v, m->b, row, col);
      at = kg_store(g, at, m->C.buf, at2(m, &m->C, m->cbase, row, col), v);
    }
  return at;
}

/* The epilogue over a stored mr x nc tile of C at (i0, j0): C = epi(C). */
static void gemm_epilogue(Gemm *m, KStmt **at, KExpr *j0, int mr, int nc) {
  KGen *g = m->g;
  KExpr *r, *c;
  KStmt **rl = kg_for(g, &at, &r, mr, 0);
  KStmt **cl = kg_loop(g, &rl, &c, kg_int(g, 0), kg_int(g, nc), 1, KL_VECTOR);
  KExpr *row = kg_add(g, m->i0, r), *col = kg_add(g, j0, c);
  KExpr *ci = at2(m, &m->C, m->cbase, row, col);
  KExpr *v = m->epi->fn(m->epi->ctx, g, &cl, kg_load(g, m->C.buf, ci), m->b, row, col);
  kg_store(g, cl, m->C.buf, ci, v);
}

/* The tile as one KS_TILE statement (the shared micro-kernel), then the
 * epilogue once the last k block is summed. */
static void gemm_tile_call(Gemm *m, KStmt **at, KExpr *j0, int mr, int nc, int nr) {
  KGen *g = m->g;
  KTile *t = arena_alloc(g->a, sizeof *t);
  t->mr = mr, t->nr = nr, t->nc = nc;
  t->abuf = m->A.buf, t->bbuf = m->B.buf, t->cbuf = m->C.buf;
  t->a0 = at2(m, &m->A, m->abase, m->i0, m->kb);
  t->b0 = m->packed ? kg_add(g, m->bbase, kg_add(g, kg_muli(g, j0, m->K), kg_muli(g, m->kb, nr)))
                    : at2(m, &m->B, m->bbase, m->kb, j0);
  t->c0 = at2(m, &m->C, m->cbase, m->i0, j0);
  t->ars = m->A.rs, t->acs = m->A.cs;
  t->brs = m->packed ? nr : m->B.rs;
  t->crs = m->C.rs;
  t->klen = kg_bin(g, KB_SUB, m->kend, m->kb);
  t->accum = m->first_only ? kg_bin(g, KB_NE, kg_int(g, 0), kg_int(g, 0)) : kg_bin(g, KB_NE, m->kb, kg_int(g, 0));
  KStmt *s = arena_alloc(g->a, sizeof *s);
  s->kind = KS_TILE;
  s->tile = t;
  *at = s;
  at = &s->next;
  if (!m->epi) return;
  if (!m->first_only) at = kg_if(g, &at, kg_bin(g, KB_GE, m->kend, kg_int(g, m->K)));
  gemm_epilogue(m, at, j0, mr, nc);
}

/* An mr x nc tile of C at (i0, j0) over the current k block; nr >= nc
 * columns are computed (a packed remainder tile is padded with zeros). */
static void gemm_tile(Gemm *m, KStmt **at, KExpr *j0, int mr, int nc, int nr) {
  KGen *g = m->g;
  if (nr % (gemm_target_nr() / 2) == 0 && m->C.cs == 1 && (m->packed || m->B.cs == 1)) {
    gemm_tile_call(m, at, j0, mr, nc, nr);
    return;
  }
  int acc[MR][NR], av[MR], bv[NR];
  for (int r = 0; r < mr; r++)
    for (int c = 0; c < nr; c++) {
      KExpr *init = kg_f32(g, 0);
      if (!m->first_only && c < nc) {
        KExpr *ci = at2(m, &m->C, m->cbase, kg_addi(g, m->i0, r), kg_addi(g, j0, c));
        init = kg_sel(g, kg_bin(g, KB_EQ, m->kb, kg_int(g, 0)), init, kg_load(g, m->C.buf, ci));
      }
      at = kg_let(g, at, &acc[r][c], init);
    }
  KExpr *k;
  KStmt **body = kg_loop(g, &at, &k, m->kb, m->kend, 1, 0);
  for (int r = 0; r < mr; r++)
    body = kg_let(g, body, &av[r], kg_load(g, m->A.buf, at2(m, &m->A, m->abase, kg_addi(g, m->i0, r), k)));
  for (int c = 0; c < nr; c++) {
    KExpr *bi = m->packed ? kg_add(g, m->bbase, kg_add(g, kg_add(g, kg_muli(g, j0, m->K), kg_muli(g, k, nr)), kg_int(g, c)))
                          : at2(m, &m->B, m->bbase, k, kg_addi(g, j0, c));
    body = kg_let(g, body, &bv[c], kg_load(g, m->B.buf, bi));
  }
  for (int r = 0; r < mr; r++)
    for (int c = 0; c < nr; c++) {
      KExpr *p = kg_bin(g, KB_MUL, kg_var(g, av[r]), kg_var(g, bv[c]));
      body = kg_set(g, body, acc[r][c], kg_bin(g, KB_ADD, kg_var(g, acc[r][c]), p));
    }
  if (!m->epi) {
    gemm_store(m, at, j0, mr, nc, acc, 0);
  } else if (m->first_only) {
    gemm_store(m, at, j0, mr, nc, acc, 1);
  } else {  /* the epilogue applies once the last k block is summed */
    KExpr *last = kg_bin(g, KB_GE, m->kend, kg_int(g, m->K));
    KStmt **t = kg_if(g, &at, last);
    gemm_store(m, t, j0, mr, nc, acc, 1);
    KStmt **e = kg_if(g, &at, kg_bin(g, KB_LT, m->kend, kg_int(g, m->K)));
    gemm_store(m, e, j0, mr, nc, acc, 0);
  }
}

/* The column tiles [jlo, jhi) (multiples of nr) of mr rows, and the
 * remainder tile when `rem` holds. */
static void gemm_rows(Gemm *m, KStmt **at, KExpr *jlo, KExpr *jhi, KExpr *rem, int mr) {
  KGen *g = m->g;
  int nr = gemm_target_nr();
  int64_t N = m->N, nfull = N / nr * nr;
  if (nfull > 0) {
    KExpr *j0;
    KStmt **body = kg_loop(g, &at, &j0, jlo, jhi, nr, 0);
    gemm_tile(m, body, j0, mr, nr, nr);
  }
  if (N > nfull) {
    KStmt **r = rem ? kg_if(g, &at, rem) : at;
    int nc = (int)(N - nfull);
    gemm_tile(m, r, kg_int(g, nfull), mr, nc, m->packed ? (int)rem_width(N, nr) : nc);
  }
}

void gemm_lower(KGen *g, int64_t batch, int64_t M, int64_t N, int64_t K, GemmOperand A, GemmOperand B,
                GemmOperand C, int packed, const GemmEpi *epi) {
  Gemm m = {.g = g, .A = A, .B = B, .C = C, .K = K, .N = N, .packed = packed, .epi = epi};
  int nr = gemm_target_nr();
  g->k->flops = 2.0 * (double)batch * (double)M * (double)N * (double)K;
  if (batch * M * N == 0) return;
  int64_t nrb = (M + MR - 1) / MR, mrem = M % MR;
  int64_t ntiles = (N + nr - 1) / nr, nfull = N / nr;
  /* Items are (batch, row block, column chunk), column chunks innermost so a
   * thread's items share their A rows.  Too few row blocks for the threads
   * are split by column chunks of whole tiles. */
  int64_t ncb = batch * nrb >= 16 ? 1 : (16 + batch * nrb - 1) / (batch * nrb);
  if (ncb > ntiles) ncb = ntiles;
  int64_t cw = (ntiles + ncb - 1) / ncb;  /* tiles per chunk */
  ncb = (ntiles + cw - 1) / cw;
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
  /* Column blocks of NCT tiles inside the k block: their KC x NC slice of
   * packed B (128 KiB) stays in L2 while every row block passes over it. */
  int64_t nct = NCT, nblk = nfull > nct ? (nfull + nct - 1) / nct : 1;
  KExpr *jc = NULL;
  if (nblk > 1) at = kg_loop(g, &at, &jc, kg_int(g, 0), kg_int(g, nfull * nr), nct * nr, 0);
  KExpr *t;
  at = kg_loop(g, &at, &t, kg_int(g, 0), kg_int(g, batch * nrb * ncb), 1, KL_PARALLEL);
  KExpr *cb = ncb > 1 ? kg_bin(g, KB_REM, t, kg_int(g, ncb)) : kg_int(g, 0);
  KExpr *rt = ncb > 1 ? kg_bin(g, KB_DIV, t, kg_int(g, ncb)) : t;
  m.b = batch > 1 ? kg_bin(g, KB_DIV, rt, kg_int(g, nrb)) : kg_int(g, 0);
  KExpr *rb = batch > 1 ? kg_bin(g, KB_REM, rt, kg_int(g, nrb)) : rt;
  m.i0 = kg_muli(g, rb, MR);
  m.abase = kg_muli(g, m.b, A.bs);
  m.bbase = kg_muli(g, m.b, packed ? (B.bs ? K * (nfull * nr + rem_width(N, nr)) : 0) : B.bs);
  m.cbase = kg_muli(g, m.b, C.bs);
  KExpr *jlo = kg_muli(g, cb, cw * nr);
  KExpr *jhi = ncb > 1 ? kg_bin(g, KB_MIN, kg_addi(g, jlo, cw * nr), kg_int(g, nfull * nr)) : kg_int(g, nfull * nr);
  KExpr *rem = ncb > 1 ? kg_bin(g, KB_EQ, cb, kg_int(g, ncb - 1)) : NULL;
  if (jc) {  /* the chunk's columns within this column block; the remainder with the last block */
    jlo = kg_bin(g, KB_MAX, jlo, jc);
    jhi = kg_bin(g, KB_MIN, jhi, kg_addi(g, jc, nct * nr));
    KExpr *lastblk = kg_bin(g, KB_GE, kg_addi(g, jc, nct * nr), kg_int(g, nfull * nr));
    rem = rem ? kg_bin(g, KB_AND, rem, lastblk) : lastblk;
  }
  if (mrem == 0 || M < MR) {  /* every row block full, or none (no dead full tile) */
    gemm_rows(&m, at, jlo, jhi, rem, mrem == 0 ? MR : (int)mrem);
    return;
  }
  KExpr *full = kg_bin(g, KB_LE, kg_addi(g, m.i0, MR), kg_int(g, M));
  KStmt **then = kg_if(g, &at, full);
  gemm_rows(&m, then, jlo, jhi, rem, MR);
  KStmt **rest = kg_if(g, &at, kg_bin(g, KB_GT, kg_addi(g, m.i0, MR), kg_int(g, M)));
  gemm_rows(&m, rest, jlo, jhi, rem, (int)mrem);
}
