/* lower_fused.c - one kernel per fused elementwise group (passes/fuse.c).
 *
 * Contract: the group's members all have the root's shape, so one loop nest
 * over the root's (collapsed) shape computes every member at the same
 * element: each external operand is loaded with its broadcast strides, each
 * member's value becomes a local (so a value used twice, as relu uses its
 * operand, is computed once), and only the root is stored.  Values follow
 * the reference interpreter exactly as lower.c's elementwise kernels do.
 */
#include <string.h>
#include "kir.h"

/* The state of lowering one group. */
typedef struct F {
  Arena *a;
  KProgram *p;
  Kernel *k;
  int cap;            /* capacity of k->vtype */
  const Graph *g;
  int root;           /* id of the group's root */
  int *local;         /* [root + 1] local holding each member's value */
} F;

/* ------------------------------------------------------------ expressions */

static KExpr *ex_new(F *f, KExprKind kind, KType t) {
  KExpr *e = arena_alloc(f->a, sizeof *e);
  e->kind = kind;
  e->t = t;
  return e;
}

static KExpr *ci(F *f, int64_t v) {
  KExpr *e = ex_new(f, KX_CONST, KT_I64);
  e->i = v;
  return e;
}

static int new_var(F *f, KType t) {
  Kernel *k = f->k;
  if (k->nvars == f->cap) {
    int cap = f->cap ? 2 * f->cap : 16;
    KType *v = arena_alloc(f->a, (size_t)cap * sizeof *v);
    if (k->nvars) memcpy(v, k->vtype, (size_t)k->nvars * sizeof *v);
    k->vtype = v;
    f->cap = cap;
  }
  k->vtype[k->nvars] = t;
  return k->nvars++;
}

static KExpr *var(F *f, int v) {
  KExpr *e = ex_new(f, KX_VAR, f->k->vtype[v]);
  e->var = v;
  return e;
}

static int is_ci(const KExpr *e, int64_t v) { return e->kind == KX_CONST && e->t == KT_I64 && e->i == v; }

static KExpr *bin(F *f, int op, KExpr *x, KExpr *y) {
  NNDC_ASSERT(x->t == y->t);
  if (x->t == KT_I64) {  /* the identities index arithmetic produces */
    if (op == KB_ADD && is_ci(x, 0)) return y;
    if (op == KB_ADD && is_ci(y, 0)) return x;
    if (op == KB_MUL && (is_ci(x, 0) || is_ci(y, 0))) return ci(f, 0);
    if (op == KB_MUL && is_ci(y, 1)) return x;
  }
  KExpr *e = ex_new(f, KX_BIN, op >= KB_LT && op <= KB_GE ? KT_BOOL : x->t);
  e->op = op;
  e->a[0] = x;
  e->a[1] = y;
  return e;
}

static KExpr *add(F *f, KExpr *x, KExpr *y) { return bin(f, KB_ADD, x, y); }
static KExpr *mul(F *f, KExpr *x, KExpr *y) { return bin(f, KB_MUL, x, y); }

static KExpr *cast(F *f, KType t, KExpr *x) {
  if (x->t == t) return x;
  KExpr *e = ex_new(f, KX_CAST, t);
  e->a[0] = x;
  return e;
}

static KExpr *load(F *f, int buf, KExpr *idx) {
  KExpr *e = ex_new(f, KX_LOAD, f->p->bufs[buf].dt == DT_F32 ? KT_F32 : KT_I64);
  e->buf = buf;
  e->a[0] = idx;
  return e;
}



/* ------------------------------------------------------------- statements */

static KStmt *st_new(F *f, KStmtKind kind) {
  KStmt *s = arena_alloc(f->a, sizeof *s);
  s->kind = kind;
  return s;
}

/* Appends s at *at; returns where the next statement goes. */
static KStmt **emit(KStmt **at, KStmt *s) {
  *at = s;
  return &s->next;
}

/* ------------------------------------------------------------------ group */

static int in_group(const F *f, const Node *n) {
  return n->id <= f->root && f->g->fuse_group[n->id] == f->root;
}

/* The external operands of the group: ext[k] in first-use order, no repeats. */
static int externals(F *f, const Node **ext) {
  int n = 0;
  for (int i = 0; i <= f->root; i++) {
    const Node *m = f->g->nodes[i];
    if (!in_group(f, m)) continue;
    for (int j = 0; j < m->nin; j++) {
      int k = 0;
      if (in_group(f, m->in[j])) continue;
      while (k < n && ext[k] != m->in[j]) k++;
      if (k == n) ext[n++] = m->in[j];
    }
  }
  return n;
}

/* C-order strides of s broadcast to an output of rank r (0 on broadcast axes). */
static void bcast_strides(const Shape *s, const int64_t *odims, int r, int64_t *st) {
  int64_t acc = 1;
  for (int k = r - 1; k >= 0; k--) {
    int sk = k - (r - s->rank);
    int64_t d = sk >= 0 ? s->dim[sk] : 1;
    st[k] = (d == 1 && odims[k] != 1) || sk < 0 ? 0 : acc;
    acc *= d;
  }
}

/* Merges adjacent dims through which every stride set is contiguous; returns the new rank. */
static int collapse(int64_t *dims, int r, int64_t (*st)[MAX_RANK], int nst) {
  int w = 0;
  for (int k = 0; k < r; k++) {
    int ok = w > 0;
    for (int j = 0; ok && j < nst; j++) ok = st[j][w - 1] == st[j][k] * dims[k];
    if (ok) {
      dims[w - 1] *= dims[k];
      for (int j = 0; j < nst; j++) st[j][w - 1] = st[j][k];
      continue;
    }
    dims[w] = dims[k];
    for (int j = 0; j < nst; j++) st[j][w] = st[j][k];
    w++;
  }
  return w;
}

/* Opens the loop nest over dims[0..r) (outermost PARALLEL, innermost VECTOR);
 * ve[k] receives each index; returns the innermost body slot. */
static KStmt **nest(F *f, KStmt **at, const int64_t *dims, int r, KExpr **ve) {
  for (int k = 0; k < r; k++) {
    KStmt *s = st_new(f, KS_LOOP);
    s->var = new_var(f, KT_I64);
    s->lo = ci(f, 0);
    s->hi = ci(f, dims[k]);
    s->step = 1;
    s->flags = (k == 0 ? KL_PARALLEL : 0) | (k == r - 1 ? KL_VECTOR : 0);
    if (k == 0) f->k->par = dims[0];
    ve[k] = var(f, s->var);
    emit(at, s);
    at = &s->body;
  }
  return at;
}

static KExpr *strided(F *f, KExpr *const *ve, const int64_t *st, int r) {
  KExpr *e = ci(f, 0);
  for (int k = 0; k < r; k++) e = add(f, e, mul(f, ve[k], ci(f, st[k])));
  return e;
}

const char *lower_fused_name(Arena *a, const Graph *g, const Node *root) {
  const char *s = NULL;
  for (int i = 0; i <= root->id; i++) {
    const Node *m = g->nodes[i];
    if (g->fuse_group[i] != root->id) continue;
    s = s ? arena_printf(a, "%s+%s", s, op_info[m->op].name) : op_info[m->op].name;
  }
  return s;
}

/* The members' values as locals, then the store of the root. */
static void body(F *f, KStmt **at, const Node **ext, int next, int64_t (*st)[MAX_RANK], KExpr **ve, int r) {
  KExpr **ld = arena_alloc(f->a, (size_t)(next + 1) * sizeof *ld);
  for (int k = 0; k < next; k++) ld[k] = load(f, f->p->node_buf[ext[k]->id], strided(f, ve, st[k], r));
  for (int i = 0; i <= f->root; i++) {
    const Node *m = f->g->nodes[i];
    if (!in_group(f, m)) continue;
    KExpr *x[2] = {NULL, NULL};
    for (int j = 0; j < m->nin; j++) {
      if (in_group(f, m->in[j])) x[j] = var(f, f->local[m->in[j]->id]);
      else
        for (int k = 0; k < next; k++)
          if (ext[k] == m->in[j]) x[j] = ld[k];
    }
    KExpr *v = lower_ew_value(f->a, m, x);
    KStmt *s = st_new(f, i == f->root ? KS_STORE : KS_LET);
    if (i == f->root) {
      s->buf = f->p->node_buf[m->id];
      s->idx = strided(f, ve, st[next], r);
      s->val = cast(f, KT_F32, v);
    } else {
      s->var = f->local[i] = new_var(f, v->t);
      s->val = v;
    }
    at = emit(at, s);
  }
}

Kernel *lower_fused(Arena *a, KProgram *p, const Graph *g, const Node *root) {
  F f = {.a = a, .p = p, .g = g, .root = root->id};
  f.k = arena_alloc(a, sizeof *f.k);
  f.k->node = root;
  f.k->name = arena_printf(a, "k%d_fused", root->id);
  f.k->opname = lower_fused_name(a, g, root);
  f.local = arena_alloc(a, ((size_t)root->id + 1) * sizeof *f.local);
  const Node **ext = arena_alloc(a, ((size_t)root->id + 2) * sizeof *ext);
  int next = externals(&f, ext), nmem = 0;
  int64_t (*st)[MAX_RANK] = arena_alloc(a, (size_t)(next + 1) * sizeof *st);
  int64_t dims[MAX_RANK];
  int r = root->shape.rank;
  memcpy(dims, root->shape.dim, sizeof dims);
  for (int k = 0; k < next; k++) bcast_strides(&ext[k]->shape, dims, r, st[k]);
  bcast_strides(&root->shape, dims, r, st[next]);
  r = collapse(dims, r, st, next + 1);
  KExpr *ve[MAX_RANK];
  KStmt **at = nest(&f, &f.k->body, dims, r, ve);
  body(&f, at, ext, next, st, ve, r);
  for (int i = 0; i <= root->id; i++) nmem += in_group(&f, g->nodes[i]);
  f.k->flops = (double)nmem * (double)shape_numel(&root->shape);
  return f.k;
}

/* ------------------------------------------------------ product epilogue */

const Node *lower_fused_matmul(const Graph *g, const Node *root) {
  for (int i = 0; i <= root->id; i++)
    if (g->fuse_group[i] == root->id && g->nodes[i]->op == OP_MATMUL) return g->nodes[i];
  return NULL;
}

/* The epilogue of a product's group: its elementwise members (all of the
 * group but the MATMUL and the TRANSPOSEs it reads through) at one element
 * of the product. */
typedef struct Epi {
  F f;
  const Node *mm;
  const Node **ext;       /* external operands of the elementwise members */
  int next;
  int64_t (*st)[MAX_RANK];  /* their broadcast strides over the root's shape */
  int *local;             /* [root + 1] KGen variable of each member */
} Epi;

static int epi_member(const Epi *e, const Node *n) {
  return in_group(&e->f, n) && n != e->mm && n->op != OP_TRANSPOSE;
}

static KExpr *epi_value(void *ctx, KGen *g, KStmt ***at, KExpr *acc, KExpr *b, KExpr *row, KExpr *col) {
  Epi *e = ctx;
  const Graph *gr = e->f.g;
  int r = gr->nodes[e->f.root]->shape.rank;
  KExpr *ve[3] = {b, row, col}, **v = r == 3 ? ve : ve + 1;
  KExpr **ld = arena_alloc(g->a, ((size_t)e->next + 1) * sizeof *ld);
  for (int k = 0; k < e->next; k++) {
    KExpr *idx = kg_int(g, 0);
    for (int d = 0; d < r; d++) idx = kg_add(g, idx, kg_muli(g, v[d], e->st[k][d]));
    ld[k] = kg_load(g, e->f.p->node_buf[e->ext[k]->id], idx);
  }
  for (int i = 0; i <= e->f.root; i++) {
    const Node *m = gr->nodes[i];
    if (!epi_member(e, m)) continue;
    KExpr *x[2] = {NULL, NULL};
    for (int j = 0; j < m->nin; j++) {
      const Node *o = m->in[j];
      if (o == e->mm) x[j] = acc;
      else if (in_group(&e->f, o)) x[j] = kg_var(g, e->local[o->id]);
      else
        for (int k = 0; k < e->next; k++)
          if (e->ext[k] == o) x[j] = ld[k];
    }
    KExpr *val = lower_ew_value(g->a, m, x);
    if (i == e->f.root) return kg_cast(g, KT_F32, val);
    *at = kg_let(g, *at, &e->local[i], val);
  }
  NNDC_ASSERT(0 && "the root of a product's group is elementwise");
  return acc;
}

double lower_fused_epi(Arena *a, KProgram *p, const Graph *g, const Node *root, const Node *mm, GemmEpi *epi) {
  Epi *e = arena_alloc(a, sizeof *e);
  e->f = (F){.a = a, .p = p, .g = g, .root = root->id};
  e->mm = mm;
  e->local = arena_alloc(a, ((size_t)root->id + 1) * sizeof *e->local);
  e->ext = arena_alloc(a, ((size_t)root->id + 2) * sizeof *e->ext);
  int nmem = 0;
  for (int i = 0; i <= root->id; i++) {
    const Node *m = g->nodes[i];
    if (!epi_member(e, m)) continue;
    nmem++;
    for (int j = 0; j < m->nin; j++) {
      const Node *o = m->in[j];
      int k = 0;
      if (in_group(&e->f, o)) continue;
      while (k < e->next && e->ext[k] != o) k++;
      if (k == e->next) e->ext[e->next++] = o;
    }
  }
  e->st = arena_alloc(a, ((size_t)e->next + 1) * sizeof *e->st);
  for (int k = 0; k < e->next; k++) bcast_strides(&e->ext[k]->shape, root->shape.dim, root->shape.rank, e->st[k]);
  epi->fn = epi_value;
  epi->ctx = e;
  return (double)nmem * (double)shape_numel(&root->shape);
}
