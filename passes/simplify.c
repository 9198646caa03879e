/* simplify.c - constant folding, algebraic identities, common subexpression
 * elimination and dead code elimination over the tensor graph.
 *
 * Contract: one walk in topological order.  Each node first has its operands
 * replaced by their representatives (rep[]), then is folded in place into a
 * CONST (every operand a uniform f32 CONST and the op exactly computable in
 * f32), or replaced by an operand (x*1, x+0, x-0, x/1, neg(neg x), a
 * reshape/expand to its operand's shape, a transpose by the identity or
 * of a transpose it undoes), or by an earlier identical node
 * (same op, dtype, shape, operands and attributes).  Then the nodes that the
 * graph's roles, the caller's roots, params, inputs and states need are kept
 * in their order and renumbered; every role refers to its representative.
 * A sum of SLICE_BWDs that tile their shape along one axis becomes a
 * CONCAT of their operands; a transposed product of a transposed operand
 * is a product of transposed operands (transpose_products).  x*0 is not simplified (NaN*0 is NaN), nor are
 * updates or leaves other than CONST merged.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "passes.h"

/* The state of one run. */
typedef struct S {
  Graph *g;
  Node **rep;        /* [nnodes] representative of each node (itself if kept) */
  Node **table;      /* [cap] CSE hash table of representatives */
  size_t cap;
} S;

static Node *rep_of(S *s, Node *n) { return s->rep[n->id]; }

static int is_uconst(const Node *n) { return n->op == OP_CONST && n->dt == DT_F32; }

static int is_const_val(const Node *n, double v) { return is_uconst(n) && n->a.f[0] == v; }

/* --------------------------------------------------------------- folding */

/* Value of an f32 op on uniform f32 values, as the interpreter computes it
 * (interp_ew); 0 if the op is not folded: only the exactly rounded ones, so
 * a fold gives what every engine would compute. */
static int fold_value(const Node *n, const float *x, float *out) {
  switch (n->op) {
  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MAXIMUM: case OP_MINIMUM:
  case OP_NEG: case OP_ABS: case OP_RELU: case OP_DETACH: {
    double v[2] = {x[0], n->nin == 2 ? x[1] : 0};
    *out = (float)interp_ew(n->op, n->a.f, v);
    return 1;
  }
  case OP_EXPAND: *out = x[0]; return 1;
  default: return 0;
  }
}

/* Turns n into a CONST of its own shape when every operand is one. */
static int try_fold(Node *n) {
  if (n->dt != DT_F32 || n->nin == 0 || n->nin > 2) return 0;
  float x[2] = {0, 0}, v;
  for (int j = 0; j < n->nin; j++) {
    if (!is_uconst(n->in[j])) return 0;
    x[j] = (float)n->in[j]->a.f[0];
  }
  if (!fold_value(n, x, &v) || isnan(v)) return 0;
  n->op = OP_CONST;
  n->nin = 0;
  n->in = NULL;
  memset(&n->a, 0, sizeof n->a);
  n->a.f[0] = v;
  n->a.shape = n->shape;
  return 1;
}

/* --------------------------------------------------------------- algebra */

/* x if n computes x unchanged (same dtype and shape), else NULL. */
static Node *identity_of(const Node *n) {
  Node *x = n->nin > 0 ? n->in[0] : NULL, *y = n->nin > 1 ? n->in[1] : NULL;
  Node *r = NULL;
  switch (n->op) {
  case OP_ADD: r = is_const_val(y, 0) ? x : is_const_val(x, 0) ? y : NULL; break;
  case OP_SUB: r = is_const_val(y, 0) ? x : NULL; break;
  case OP_MUL: r = is_const_val(y, 1) ? x : is_const_val(x, 1) ? y : NULL; break;
  case OP_DIV: r = is_const_val(y, 1) ? x : NULL; break;
  case OP_NEG: r = x->op == OP_NEG ? x->in[0] : NULL; break;
  case OP_RESHAPE: case OP_EXPAND: r = x; break;
  case OP_TRANSPOSE: {  /* the identity permutation, or one undoing x's */
    const Node *y0 = x->op == OP_TRANSPOSE ? x->in[0] : x;
    int id = 1;
    for (int k = 0; k < n->shape.rank; k++)
      id &= (x->op == OP_TRANSPOSE ? x->a.i[n->a.i[k]] : n->a.i[k]) == k;
    r = id ? (Node *)y0 : NULL;
    break;
  }
  default: return NULL;
  }
  if (!r || r->dt != n->dt || !shape_eq(&r->shape, &n->shape)) return NULL;
  return r;
}

/* ------------------------------------------------------------------- CSE */

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001B3ull; }

static uint64_t hash_node(const Node *n) {
  uint64_t h = mix(0xCBF29CE484222325ull, (uint64_t)n->op);
  h = mix(h, (uint64_t)n->dt);
  for (int k = 0; k < n->shape.rank; k++) h = mix(h, (uint64_t)n->shape.dim[k]);
  for (int j = 0; j < n->nin; j++) h = mix(h, (uint64_t)n->in[j]->id);
  for (int k = 0; k < 2 * MAX_RANK; k++) h = mix(h, (uint64_t)n->a.i[k]);
  uint64_t f;
  memcpy(&f, &n->a.f[0], sizeof f);
  return mix(h, f);
}

static int same_shape_attr(const Shape *a, const Shape *b) {
  return a->rank == b->rank && !memcmp(a->dim, b->dim, (size_t)a->rank * sizeof a->dim[0]);
}

static int same_node(const Node *a, const Node *b) {
  if (a->op != b->op || a->dt != b->dt || a->nin != b->nin || !shape_eq(&a->shape, &b->shape)) return 0;
  for (int j = 0; j < a->nin; j++)
    if (a->in[j] != b->in[j]) return 0;
  return !memcmp(a->a.i, b->a.i, sizeof a->a.i) && !memcmp(a->a.f, b->a.f, sizeof a->a.f) &&
         same_shape_attr(&a->a.shape, &b->a.shape);
}

static int cse_candidate(const Node *n) {
  int fl = op_info[n->op].flags;
  if (fl & F_UPDATE) return 0;
  return !(fl & F_LEAF) || n->op == OP_CONST;
}

/* The earlier node identical to n, or n after entering it in the table. */
static Node *cse(S *s, Node *n) {
  if (!cse_candidate(n)) return n;
  size_t i = (size_t)hash_node(n) & (s->cap - 1);
  for (; s->table[i]; i = (i + 1) & (s->cap - 1))
    if (same_node(s->table[i], n)) return s->table[i];
  s->table[i] = n;
  return n;
}

/* ------------------------------------------------------------------- DCE */

static void keep(void *live, Node **n) {
  if (*n) ((uint8_t *)live)[(*n)->id] = 1;
}

/* live[id] for every node the roles, roots and leaves need (after rep). */
static void mark_live(Graph *g, uint8_t *live, Node *const *roots, int nroots) {
  for (int i = 0; i < g->ninputs; i++) live[g->inputs[i].node->id] = 1;
  for (int i = 0; i < g->nparams; i++) live[g->params[i].node->id] = 1;
  for (int i = 0; i < g->nstates; i++) live[g->states[i].node->id] = 1;
  for (int i = 0; i < nroots; i++) live[roots[i]->id] = 1;
  ir_roles(g, keep, live);
  for (int i = g->nnodes - 1; i >= 0; i--) {
    const Node *n = g->nodes[i];
    if (!live[i]) continue;
    for (int j = 0; j < n->nin; j++) live[n->in[j]->id] = 1;
  }
}

static void to_rep(void *s, Node **n) {
  if (*n) *n = rep_of(s, *n);
}

/* Points every role of the graph at its representative. */
static void remap_roles(S *s, Graph *g) { ir_roles(g, to_rep, s); }

/* Replaces n's operands by their representatives, copying the operand array
 * (it may be shared with another node). */
static void remap_operands(S *s, Node *n) {
  int changed = 0;
  for (int j = 0; j < n->nin; j++) changed |= rep_of(s, n->in[j]) != n->in[j];
  if (!changed) return;
  Node **in = arena_alloc(s->g->arena, (size_t)n->nin * sizeof *in);
  for (int j = 0; j < n->nin; j++) in[j] = rep_of(s, n->in[j]);
  n->in = in;
}

/* ------------------------------------------------------------ concat */

enum { MAX_PIECES = 64 };

/* Collects the non-ADD leaves of the tree of same-shape ADDs at n. */
static int add_leaves(Node *n, const Shape *sh, Node **leaf, int nleaf) {
  if (nleaf < 0) return -1;
  if (n->op != OP_ADD || n->dt != DT_F32 || !shape_eq(&n->shape, sh)) {
    if (nleaf == MAX_PIECES) return -1;
    leaf[nleaf] = n;
    return nleaf + 1;
  }
  for (int j = 0; j < 2; j++) nleaf = add_leaves(n->in[j], sh, leaf, nleaf);
  return nleaf;
}

static int sort_ax;
static int by_start(const void *x, const void *y) {
  int64_t a = (*(Node *const *)x)->a.i[sort_ax], b = (*(Node *const *)y)->a.i[sort_ax];
  return a < b ? -1 : a > b;
}

/* A sum of SLICE_BWDs whose pieces tile n's shape along one axis (the
 * gradient of slicing a tensor into parts, as the LSTM's gates) is the
 * CONCAT of the pieces: n becomes that CONCAT in place. */
static int try_concat(S *s, Node *n) {
  if (n->op != OP_ADD || n->dt != DT_F32) return 0;
  Node *leaf[MAX_PIECES];
  int nl = add_leaves(n, &n->shape, leaf, 0), ax = -1, r = n->shape.rank;
  if (nl < 2) return 0;
  for (int k = 0; k < nl; k++) {
    const Node *b = leaf[k];
    if (b->op != OP_SLICE_BWD) return 0;
    const Node *x = b->in[0];
    for (int d = 0; d < r; d++) {
      if (b->a.i[d] == 0 && x->shape.dim[d] == n->shape.dim[d]) continue;
      if (ax >= 0 && ax != d) return 0;
      ax = d;
    }
  }
  if (ax < 0) return 0;
  sort_ax = ax;
  qsort(leaf, (size_t)nl, sizeof *leaf, by_start);
  int64_t at = 0;
  for (int k = 0; k < nl; k++) {
    if (leaf[k]->a.i[ax] != at) return 0;
    at += leaf[k]->in[0]->shape.dim[ax];
  }
  if (at != n->shape.dim[ax]) return 0;
  Node **in = arena_alloc(s->g->arena, (size_t)nl * sizeof *in);
  for (int k = 0; k < nl; k++) in[k] = leaf[k]->in[0];
  n->op = OP_CONCAT;
  n->in = in;
  n->nin = nl;
  memset(&n->a, 0, sizeof n->a);
  n->a.i[0] = ax;
  return 1;
}

static void simplify_node(S *s, Node *n) {
  remap_operands(s, n);
  try_concat(s, n);
  if (try_fold(n)) {
    s->rep[n->id] = cse(s, n);
    return;
  }
  Node *x = identity_of(n);
  s->rep[n->id] = x ? x : cse(s, n);
}

/* ------------------------------------------------- transposed products */

static void count_use(void *uses, Node **n) {
  if (*n) ((int *)uses)[(*n)->id]++;
}

/* transpose(transpose(a0) @ b), the gradient of x @ transpose(W) with
 * respect to W, is b^T @ a0: one product whose first operand is b read
 * transposed in place (passes/fuse.c), instead of a product and a copy of
 * its result transposed.  The product, used only by the transpose, becomes
 * b^T in place, the transpose the product.  Matrices or batches of them.
 * Returns the number of rewrites. */
static int transpose_products(Graph *g, Node *const *roots, int nroots) {
  int *uses = calloc((size_t)g->nnodes + 1, sizeof *uses), done = 0;
  NNDC_ASSERT(uses);
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i]->nin; j++) uses[g->nodes[i]->in[j]->id]++;
  for (int i = 0; i < nroots; i++) uses[roots[i]->id]++;
  ir_roles(g, count_use, uses);
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i], *m = n->in ? n->in[0] : NULL;
    if (!ir_swaps_last_two(n) || m->op != OP_MATMUL || uses[m->id] != 1 || !ir_swaps_last_two(m->in[0])) continue;
    Node *a0 = m->in[0]->in[0], *b = m->in[1];
    int r = b->shape.rank;
    if (a0->shape.rank != r || m->shape.rank != r) continue;
    Node **in = arena_alloc(g->arena, 2 * sizeof *in);
    in[0] = m, in[1] = a0;
    m->op = OP_TRANSPOSE;
    m->in = &m->in[1];   /* b */
    m->nin = 1;
    memset(&m->a, 0, sizeof m->a);
    for (int k = 0; k < r; k++) m->a.i[k] = k;
    m->a.i[r - 2] = r - 1, m->a.i[r - 1] = r - 2;
    m->shape = b->shape;
    m->shape.dim[r - 2] = b->shape.dim[r - 1], m->shape.dim[r - 1] = b->shape.dim[r - 2];
    n->op = OP_MATMUL;
    n->in = in;
    n->nin = 2;
    memset(&n->a, 0, sizeof n->a);
    done++;
  }
  free(uses);
  return done;
}

/* Keeps the live nodes in order and renumbers them. */
static void compact(Graph *g, const uint8_t *live) {
  int w = 0;
  for (int i = 0; i < g->nnodes; i++) {
    if (!live[i]) continue;
    g->nodes[w] = g->nodes[i];
    g->nodes[w]->id = w;
    w++;
  }
  g->nnodes = w;
}

int pass_simplify_ex(Diag *d, Graph *g, Node **roots, int nroots, Node **track, int ntrack) {
  (void)d;
  int n = g->nnodes;
  S s = {.g = g};
  s.rep = calloc((size_t)n + 1, sizeof *s.rep);
  for (s.cap = 16; s.cap < 2 * (size_t)n; s.cap *= 2) {}
  s.table = calloc(s.cap, sizeof *s.table);
  uint8_t *live = calloc((size_t)n + 1, 1);
  NNDC_ASSERT(s.rep && s.table && live);
  for (int i = 0; i < n; i++) {
    Node *x = g->nodes[i];
    s.rep[i] = x;
    if (!(op_info[x->op].flags & F_LEAF)) simplify_node(&s, x);
    else if (x->op == OP_CONST) s.rep[i] = cse(&s, x);
  }
  remap_roles(&s, g);
  for (int i = 0; i < nroots; i++) roots[i] = rep_of(&s, roots[i]);
  mark_live(g, live, roots, nroots);
  for (int i = 0; i < ntrack; i++)
    if (track[i]) track[i] = live[rep_of(&s, track[i])->id] ? rep_of(&s, track[i]) : NULL;
  compact(g, live);
  if (transpose_products(g, roots, nroots)) {  /* their first transposes may be dead now */
    memset(live, 0, (size_t)g->nnodes + 1);
    mark_live(g, live, roots, nroots);
    for (int i = 0; i < ntrack; i++)
      if (track[i] && !live[track[i]->id]) track[i] = NULL;
    compact(g, live);
  }
  free(s.rep);
  free(s.table);
  free(live);
  return 0;
}

int pass_simplify(Diag *d, Graph *g) { return pass_simplify_ex(d, g, NULL, 0, NULL, 0); }
