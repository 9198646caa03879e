/* lower_fused.c - one kernel per fused group (passes/fuse.c).
 *
 * Contract: the group's elementwise members all have the root's shape, so
 * one loop nest over the root's (collapsed) shape computes every member at
 * the same element: each external operand is loaded with its broadcast
 * strides, each member's value becomes a local (so a value used twice, as
 * relu uses its operand, is computed once), and only the root is stored.
 * A group holding a MATMUL is the product's epilogue instead (lower.c runs
 * gemm.c with lower_fused_epi's GemmEpi): the same members, evaluated at
 * one element (b, row, col) of the product from its sum.  Values follow the
 * reference interpreter exactly as lower.c's elementwise kernels do
 * (lower_ew_value).  Expressions and statements are built with gemm.c's
 * KGen.
 */
#include <string.h>
#include "kir.h"

/* One group: its members and their external operands. */
typedef struct F {
  const KProgram *p;
  const Graph *g;
  int root;                 /* id of the group's root */
  const Node *mm;           /* the group's MATMUL, whose sum is its value, or NULL */
  const Node **ext;         /* external operands of the elementwise members */
  int next;
  int64_t (*st)[MAX_RANK];  /* [next + 1]: their strides over the root's shape, then the root's */
  int *local;               /* [root + 1] variable holding each member's value */
} F;

static int in_group(const F *f, const Node *n) {
  return n->id <= f->root && f->g->fuse_group[n->id] == f->root;
}

/* The members computed elementwise: all but the MATMUL and the TRANSPOSEs
 * the product reads through. */
static int ew_member(const F *f, const Node *n) {
  return in_group(f, n) && n != f->mm && n->op != OP_TRANSPOSE;
}

/* Fills f's external operands (first-use order, no repeats) and their
 * broadcast strides (rank of the root, not collapsed); returns the number
 * of elementwise members. */
static int setup(F *f, Arena *a, const Graph *g, const KProgram *p, const Node *root, const Node *mm) {
  *f = (F){.p = p, .g = g, .root = root->id, .mm = mm};
  f->local = arena_alloc(a, ((size_t)root->id + 1) * sizeof *f->local);
  f->ext = arena_alloc(a, ((size_t)root->id + 2) * sizeof *f->ext);
  int nmem = 0;
  for (int i = 0; i <= root->id; i++) {
    const Node *m = g->nodes[i];
    if (!ew_member(f, m)) continue;
    nmem++;
    for (int j = 0; j < m->nin; j++) {
      const Node *o = m->in[j];
      int k = 0;
      if (in_group(f, o)) continue;
      while (k < f->next && f->ext[k] != o) k++;
      if (k == f->next) f->ext[f->next++] = o;
    }
  }
  f->st = arena_alloc(a, ((size_t)f->next + 1) * sizeof *f->st);
  for (int k = 0; k < f->next; k++) lower_bcast_strides(&f->ext[k]->shape, root->shape.dim, root->shape.rank, f->st[k]);
  lower_bcast_strides(&root->shape, root->shape.dim, root->shape.rank, f->st[f->next]);
  return nmem;
}

static KExpr *strided(KGen *g, KExpr *const *ve, const int64_t *st, int r) {
  KExpr *e = kg_int(g, 0);
  for (int k = 0; k < r; k++) e = kg_add(g, e, kg_muli(g, ve[k], st[k]));
  return e;
}

/* The members' values at the element whose index along each of the r dims
 * (strides f->st) is ve[k], the MATMUL's being acc: interior members as
 * locals appended at *at; returns the root's value (f32). */
static KExpr *members(F *f, KGen *g, KStmt ***at, KExpr *const *ve, int r, KExpr *acc) {
  KExpr **ld = arena_alloc(g->a, ((size_t)f->next + 1) * sizeof *ld);
  for (int k = 0; k < f->next; k++) ld[k] = kg_load(g, f->p->node_buf[f->ext[k]->id], strided(g, ve, f->st[k], r));
  for (int i = 0; i <= f->root; i++) {
    const Node *m = f->g->nodes[i];
    if (!ew_member(f, m)) continue;
    KExpr *x[3] = {NULL, NULL, NULL};
    for (int j = 0; j < m->nin; j++) {
      const Node *o = m->in[j];
      if (o == f->mm) x[j] = acc;
      else if (in_group(f, o)) x[j] = kg_var(g, f->local[o->id]);
      else
        for (int k = 0; k < f->next; k++)
          if (f->ext[k] == o) x[j] = ld[k];
    }
    KExpr *v = lower_ew_value(g->a, m, x);
    if (i == f->root) return kg_cast(g, KT_F32, v);
    *at = kg_let(g, *at, &f->local[i], v);
  }
  NNDC_ASSERT(0 && "a group's root is elementwise");
  return acc;
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

/* The group's NORMALIZE whose statistics it computes (FUSE_STATS), or NULL. */
static const Node *stats_norm(const Graph *g, const Node *root) {
  for (int i = 0; i <= root->id; i++) {
    const Node *m = g->nodes[i];
    if (g->fuse_group[i] == root->id && m->op == OP_NORMALIZE && g->fuse_group[m->in[1]->id] == FUSE_STATS) return m;
  }
  return NULL;
}

/* Opens loops over the axes of s that are not kept (PARALLEL-free; the
 * innermost VECTOR when vec), ve[k] receiving their variables. */
static KStmt **free_axes(KGen *g2, KStmt **at, const Shape *s, const int *kept, KExpr **ve, int vec) {
  int last = -1;
  for (int k = 0; k < s->rank; k++)
    if (!kept[k]) last = k;
  for (int k = 0; k < s->rank; k++)
    if (!kept[k])
      at = kg_loop(g2, &at, &ve[k], kg_int(g2, 0), kg_int(g2, s->dim[k]), 1, vec && k == last ? KL_VECTOR : 0);
  return at;
}

/* A group with a normalization's NORMALIZE whose statistics are FUSE_STATS:
 * per group of statistics (a layer_norm's row, a batch_norm's channel:
 * PARALLEL) the mean of x and the mean of (x - mean)^2 in f64, as the MEAN
 * and VAR kernels compute them, stored to their buffers, then the members
 * over the group's elements (innermost loop VECTOR), which load them back
 * as operands. */
static void stats_rows(F *f, KGen *g2, const Node *root, const Node *nrm) {
  const KProgram *p = f->p;
  const Shape *s = &root->shape;
  int r = s->rank, kept[MAX_RANK] = {0}, a = -1, b = -1;
  uint64_t mask = (uint64_t)nrm->a.i[0];
  if (mask == 0) mask = ((uint64_t)1 << r) - 1;
  for (int k = 0; k < r; k++)
    if (!(mask >> k & 1) && s->dim[k] != 1) b = k, a = a < 0 ? k : a;
  int64_t G = 1;
  for (int k = a; a >= 0 && k <= b; k++) kept[k] = 1, G *= s->dim[k];
  double cnt = (double)shape_numel(s) / (double)(G ? G : 1);
  int xb = p->node_buf[nrm->in[0]->id], mb = p->node_buf[nrm->in[1]->id], vb = p->node_buf[nrm->in[2]->id];
  KExpr *gi, *ve[MAX_RANK];
  KStmt **at = &g2->k->body;
  at = kg_loop(g2, &at, &gi, kg_int(g2, 0), kg_int(g2, G), 1, KL_PARALLEL);
  KExpr *rest = gi;
  for (int k = b; a >= 0 && k >= a; k--) {
    ve[k] = k > a ? kg_bin(g2, KB_REM, rest, kg_int(g2, s->dim[k])) : rest;
    if (k > a) rest = kg_bin(g2, KB_DIV, rest, kg_int(g2, s->dim[k]));
  }
  const int64_t *st = f->st[f->next];  /* the root's strides: x has its shape */
  int s1, s2, mean;
  at = kg_let(g2, at, &s1, kg_f64(g2, 0));
  KStmt **in = free_axes(g2, at, s, kept, ve, 0);
  kg_set(g2, in, s1, kg_add(g2, kg_var(g2, s1), kg_cast(g2, KT_F64, kg_load(g2, xb, strided(g2, ve, st, r)))));
  while (*at) at = &(*at)->next;
  at = kg_let(g2, at, &mean, kg_cast(g2, KT_F32, kg_bin(g2, KB_DIV, kg_var(g2, s1), kg_f64(g2, cnt))));
  at = kg_store(g2, at, mb, gi, kg_var(g2, mean));
  at = kg_let(g2, at, &s2, kg_f64(g2, 0));
  in = free_axes(g2, at, s, kept, ve, 0);
  KExpr *dd = kg_cast(g2, KT_F64, kg_bin(g2, KB_SUB, kg_load(g2, xb, strided(g2, ve, st, r)), kg_var(g2, mean)));
  kg_set(g2, in, s2, kg_add(g2, kg_var(g2, s2), kg_bin(g2, KB_MUL, dd, dd)));
  while (*at) at = &(*at)->next;
  at = kg_store(g2, at, vb, gi, kg_cast(g2, KT_F32, kg_bin(g2, KB_DIV, kg_var(g2, s2), kg_f64(g2, cnt))));
  in = free_axes(g2, at, s, kept, ve, 1);
  KExpr *v = members(f, g2, &in, ve, r, NULL);
  kg_store(g2, in, p->node_buf[root->id], strided(g2, ve, st, r), v);
}

Kernel *lower_fused(Arena *a, KProgram *p, const Graph *g, const Node *root) {
  Kernel *k = arena_alloc(a, sizeof *k);
  k->node = root;
  k->name = arena_printf(a, "k%d_fused", root->id);
  k->opname = lower_fused_name(a, g, root);
  F f;
  int nmem = setup(&f, a, g, p, root, NULL);
  const Node *nrm = stats_norm(g, root);
  if (nrm) {
    KGen gs = {.a = a, .p = p, .k = k};
    stats_rows(&f, &gs, root, nrm);
    k->opname = arena_printf(a, "mean+var+%s", k->opname);
    k->flops = (double)(nmem + 4) * (double)shape_numel(&root->shape);
    return k;
  }
  int64_t dims[MAX_RANK];
  memcpy(dims, root->shape.dim, sizeof dims);
  int r = lower_collapse(dims, root->shape.rank, f.st, f.next + 1);
  /* the nest over the collapsed shape: outermost PARALLEL, innermost VECTOR */
  KGen g2 = {.a = a, .p = p, .k = k};
  KExpr *ve[MAX_RANK];
  KStmt **at = &k->body;
  for (int d = 0; d < r; d++)
    at = kg_loop(&g2, &at, &ve[d], kg_int(&g2, 0), kg_int(&g2, dims[d]), 1,
                 (d == 0 ? KL_PARALLEL : 0) | (d == r - 1 ? KL_VECTOR : 0));
  KExpr *v = members(&f, &g2, &at, ve, r, NULL);
  kg_store(&g2, at, p->node_buf[root->id], strided(&g2, ve, f.st[f.next], r), v);
  k->flops = (double)nmem * (double)shape_numel(&root->shape);
  return k;
}

/* ------------------------------------------------------ product epilogue */

const Node *lower_fused_matmul(const Graph *g, const Node *root) {
  for (int i = 0; i <= root->id; i++)
    if (g->fuse_group[i] == root->id && g->nodes[i]->op == OP_MATMUL) return g->nodes[i];
  return NULL;
}

/* gemm.c's epilogue: the members at element (b, row, col) of a [B?, M, N] root. */
static KExpr *epi_value(void *ctx, KGen *g, KStmt ***at, KExpr *acc, KExpr *b, KExpr *row, KExpr *col) {
  F *f = ctx;
  int r = f->g->nodes[f->root]->shape.rank;
  KExpr *ve[3] = {b, row, col};
  return members(f, g, at, r == 3 ? ve : ve + 1, r, acc);
}

double lower_fused_epi(Arena *a, KProgram *p, const Graph *g, const Node *root, const Node *mm, GemmEpi *epi) {
  F *f = arena_alloc(a, sizeof *f);
  int nmem = setup(f, a, g, p, root, mm);
  epi->fn = epi_value;
  epi->ctx = f;
  return (double)nmem * (double)shape_numel(&root->shape);
}
