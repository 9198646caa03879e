/* graph.c - the op table, node builders and shape inference.
 *
 * Contract: ir_op checks the operand count, dtypes and shapes of one op and
 * appends a node with the inferred dtype and shape to g->nodes (ids are the
 * index, so the list stays topological); on a user error it reports at loc,
 * naming every shape involved, and returns NULL.  Leaves made by ir_leaf are
 * NOT added to g->inputs/params/states: the caller (sema, optim) registers
 * them, because it alone knows declaration order and sharing.  Axis
 * attributes given negative (softmax, argmax, concat) are normalised in the
 * node.  The ir_* shorthands are for passes, which only build valid nodes, so
 * they abort on an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ir.h"

const OpInfo op_info[OP_COUNT] = {
#define OP(e, name, nin, flags, shape, kernel, vjp, lower, heavy, attrs, ...) {name, nin, flags, heavy, attrs},
#include "ops.def"
};
_Static_assert(sizeof(op_info) / sizeof(op_info[0]) == OP_COUNT, "op_info covers ops.def");

int op_attr_default(Op op, const char *name, double *v) {
  if ((int)op < 0 || op >= OP_COUNT) return -1;
  size_t n = strlen(name);
  for (const char *p = op_info[op].attrs; *p;) {
    const char *end = strchr(p, ' ');
    if (!end) end = p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon && (size_t)(colon - p) == n && !strncmp(p, name, n)) {
      const char *d = memchr(colon + 1, ':', (size_t)(end - colon - 1));
      if (!d) return -1;
      *v = strtod(d + 1, NULL);
      return 0;
    }
    p = *end ? end + 1 : end;
  }
  return -1;
}

int op_attr_name(Op op, int fslot, char *buf, size_t n) {
  if ((int)op < 0 || op >= OP_COUNT || n == 0) return -1;
  char want[16];
  snprintf(want, sizeof want, "f%d", fslot);
  size_t wl = strlen(want);
  for (const char *p = op_info[op].attrs; *p;) {
    const char *end = strchr(p, ' ');
    if (!end) end = p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon && (size_t)(end - colon - 1) >= wl && !strncmp(colon + 1, want, wl) &&
        (colon + 1 + wl == end || colon[1 + wl] == ':')) {
      size_t len = (size_t)(colon - p) < n - 1 ? (size_t)(colon - p) : n - 1;
      memcpy(buf, p, len);
      buf[len] = 0;
      return 0;
    }
    p = *end ? end + 1 : end;
  }
  return -1;
}

void graph_init(Graph *g, Arena *a) {
  memset(g, 0, sizeof *g);
  g->arena = a;
}

/* 1 if the batch statistics update u (RUNNING_STATS) reads are in mask. */
static int stats_marked(const Node *u, const uint8_t *mask) {
  const Node *m = u->in[2];
  return mask[m->id] || (m->op == OP_RESHAPE && mask[m->in[0]->id]);
}

void graph_use_step(Graph *g, int k) {
  NNDC_ASSERT(k >= 1 && k <= g->train.nsteps && g->train.steps[k - 1].loss_node);
  const TrainStep *st = &g->train.steps[k - 1];
  g->step = k;
  g->loss = st->loss_node;
  g->train.opt = st->opt;
  for (int i = 0; i < g->nparams; i++) g->params[i].node->frozen = !st->trains[i];
  /* batch_norm's running statistics update where the step's forward pass
   * normalizes, as PyTorch's modules do in whichever forward runs in training
   * mode: only the calls its loss depends on */
  uint8_t *mask = arena_alloc(g->arena, (size_t)g->nnodes + 1);
  ir_mark_deps(g, &g->loss, 1, mask);
  int n = 0;
  for (int i = 0; i < g->nupdates; i++)
    if (g->updates[i]->op != OP_RUNNING_STATS || stats_marked(g->updates[i], mask)) g->updates[n++] = g->updates[i];
  g->nupdates = n;
}

Graph graph_steps_union(const Graph *const *tgs, int nsteps) {
  Graph all = *tgs[0];
  int n = 0;
  for (int k = 0; k < nsteps; k++) n += tgs[k]->nstates;
  all.states = arena_alloc(all.arena, sizeof *all.states * (size_t)(n + 1));
  all.nstates = 0;
  for (int k = 0; k < nsteps; k++)
    for (int i = 0; i < tgs[k]->nstates; i++) all.states[all.nstates++] = tgs[k]->states[i];
  return all;
}

/* ------------------------------------------------------------- shapes */

int dim_mul(int64_t a, int64_t b, int64_t *r) {
  if (a < 0 || b < 0) return 0;
  if (a != 0 && b > MAX_DIM / a) return 0;
  *r = a * b;
  return 1;
}

int64_t shape_numel(const Shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dim[i];
  return n;
}

int shape_eq(const Shape *a, const Shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dim[i] != b->dim[i]) return 0;
  return 1;
}

/* NumPy rule: align at the trailing axis; equal sizes or one of them 1. */
int shape_broadcast(const Shape *a, const Shape *b, Shape *out) {
  Shape r;
  r.rank = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r.rank; i++) {
    int ia = a->rank - r.rank + i, ib = b->rank - r.rank + i;
    int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
    if (da != db && da != 1 && db != 1) return 0;
    r.dim[i] = da == 1 ? db : da;
  }
  for (int i = r.rank; i < MAX_RANK; i++) r.dim[i] = 0;
  *out = r;
  return 1;
}

char *shape_str(const Shape *s, DType dt, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s[", dt == DT_I32 ? "i32" : "f32");
  for (int i = 0; i < s->rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)s->dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

/* ------------------------------------------------------- node storage */

static Node *new_node(Graph *g, Loc loc, Op op, Node **in, int nin) {
  if (g->nnodes == g->cap) {
    int cap = g->cap ? g->cap * 2 : 64;
    Node **nodes = arena_alloc(g->arena, sizeof(Node *) * (size_t)cap);
    if (g->nnodes) memcpy(nodes, g->nodes, sizeof(Node *) * (size_t)g->nnodes);
    g->nodes = nodes;
    g->cap = cap;
  }
  Node *n = arena_alloc(g->arena, sizeof *n);
  n->id = g->nnodes;
  n->op = op;
  n->loc = loc;
  n->nin = nin;
  if (nin > 0) {
    n->in = arena_alloc(g->arena, sizeof(Node *) * (size_t)nin);
    memcpy(n->in, in, sizeof(Node *) * (size_t)nin);
  }
  g->nodes[g->nnodes++] = n;
  return n;
}

Node *ir_leaf(Graph *g, Loc loc, Op op, DType dt, const Shape *s, const char *name) {
  NNDC_ASSERT(op_info[op].flags & F_LEAF);
  Node *n = new_node(g, loc, op, NULL, 0);
  n->dt = dt;
  n->shape = *s;
  n->a.shape = *s;
  n->name = name ? arena_strdup(g->arena, name) : NULL;
  return n;
}

Node *ir_const(Graph *g, Loc loc, const Shape *s, double v) {
  Node *n = ir_leaf(g, loc, OP_CONST, DT_F32, s, NULL);
  n->a.f[0] = v;
  return n;
}

/* ---------------------------------------------------- shape inference */

/* What one op's rule needs and produces; shared with verify.c via
 * ir_infer (declared there as an extern helper). */
typedef struct Infer {
  Diag *d;
  Loc loc;
  Op op;
  Node **in;
  int nin;
  Attr *a;         /* may be normalised (negative axes) */
  DType dt;        /* out */
  Shape shape;     /* out */
} Infer;

#define SBUF 96

static int fail(Infer *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Infer *f, const char *fmt, ...) {
  if (f->d) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    diag_error(f->d, f->loc, "%s", msg);
  }
  return -1;
}

static const char *sstr(const Node *n, char *buf) {
  return shape_str(&n->shape, n->dt, buf, SBUF);
}

static int want_f32(Infer *f, int k) {
  char b[SBUF];
  if (f->in[k]->dt == DT_F32) return 0;
  return fail(f, "%s expects f32, got %s", op_info[f->op].name, sstr(f->in[k], b));
}

static int want_all_f32(Infer *f) {
  for (int k = 0; k < f->nin; k++)
    if (want_f32(f, k)) return -1;
  return 0;
}

static int check_shape(Infer *f, const Shape *s) {
  int64_t n = 1;
  if (s->rank < 0 || s->rank > MAX_RANK) return fail(f, "%s: rank %d out of range", op_info[f->op].name, s->rank);
  for (int i = 0; i < s->rank; i++) {
    if (s->dim[i] < 0 || s->dim[i] > MAX_DIM)
      return fail(f, "%s: dimension %lld out of range", op_info[f->op].name, (long long)s->dim[i]);
    if (!dim_mul(n, s->dim[i], &n))
      return fail(f, "%s: tensor too large (element count overflows)", op_info[f->op].name);
  }
  return 0;
}

static int norm_axis(Infer *f, int64_t *axis, int rank) {
  if (*axis < 0) *axis += rank;
  if (*axis < 0 || *axis >= rank)
    return fail(f, "%s: axis %lld out of range for rank %d", op_info[f->op].name,
                (long long)*axis, rank);
  return 0;
}

/* INPUT, PARAM, STATE, CONST: no operands; the shape is Attr.shape (or
 * the declaration's), e.g. x is [N, 784]. */
static int infer_leaf(Infer *f) {
  f->shape = f->a->shape;
  f->dt = DT_F32;
  return check_shape(f, &f->shape);
}

/* a [..., M, N] (op) b [..., 1, N] -> out [..., M, N]: NumPy broadcasting
 * of the two shapes; comparisons take i32 operands too, out is f32. */
static int infer_binary(Infer *f) {
  char b1[SBUF], b2[SBUF];
  int cmp = f->op >= OP_EQ && f->op <= OP_GE;
  if (!cmp && want_all_f32(f)) return -1;
  if (!shape_broadcast(&f->in[0]->shape, &f->in[1]->shape, &f->shape))
    return fail(f, "shape mismatch in '%s': %s and %s cannot broadcast", op_info[f->op].name,
                sstr(f->in[0], b1), sstr(f->in[1], b2));
  f->dt = DT_F32;
  return 0;
}

/* c [N, 1], a [N, M], b [] -> out [N, M]: the three broadcast; a and b are
 * f32, the condition c f32 or i32 (nonzero picks a).  NORMALIZE's three
 * (x, mean, var) broadcast the same way, all f32. */
static int infer_where(Infer *f) {
  char b1[SBUF], b2[SBUF], b3[SBUF];
  if ((f->op != OP_WHERE && want_f32(f, 0)) || want_f32(f, 1) || want_f32(f, 2)) return -1;
  Shape s;
  if (!shape_broadcast(&f->in[0]->shape, &f->in[1]->shape, &s) || !shape_broadcast(&s, &f->in[2]->shape, &f->shape))
    return fail(f, "shape mismatch in 'where': %s, %s and %s cannot broadcast", sstr(f->in[0], b1), sstr(f->in[1], b2),
                sstr(f->in[2], b3));
  f->dt = DT_F32;
  return 0;
}

/* ATTN: q [B,Tq,D], k [B,Tk,D], v [B,Tk,Dv] -> o [B,Tq,Dv]; ATTN_LSE: q, k
 * -> [B,Tq]; ATTN_BWD: q, k, v, do [B,Tq,Dv], lse, delta [B,Tq] -> the shape
 * of q, k or v (Attr.i[2] = 0, 1, 2). */
static int infer_attn(Infer *f) {
  char b1[SBUF], b2[SBUF], b3[SBUF];
  if (want_all_f32(f)) return -1;
  const Shape *q = &f->in[0]->shape, *k = &f->in[1]->shape, *v = f->nin > 2 ? &f->in[2]->shape : k;
  if (q->rank != 3 || k->rank != 3 || v->rank != 3 || k->dim[0] != q->dim[0] || v->dim[0] != q->dim[0] ||
      k->dim[2] != q->dim[2] || v->dim[1] != k->dim[1])
    return fail(f, "%s: q, k, v must be [B,Tq,D], [B,Tk,D], [B,Tk,Dv], got %s, %s and %s", op_info[f->op].name,
                sstr(f->in[0], b1), sstr(f->in[1], b2), sstr(f->nin > 2 ? f->in[2] : f->in[1], b3));
  f->dt = DT_F32;
  Shape o = {3, {q->dim[0], q->dim[1], v->dim[2]}}, rows = {2, {q->dim[0], q->dim[1]}};
  if (f->op == OP_ATTN) f->shape = o;
  else if (f->op == OP_ATTN_LSE) f->shape = rows;
  else {
    if (!shape_eq(&f->in[3]->shape, &o) || !shape_eq(&f->in[4]->shape, &rows) || !shape_eq(&f->in[5]->shape, &rows))
      return fail(f, "attention_bwd: do %s, lse %s and delta %s do not match the attention", sstr(f->in[3], b1),
                  sstr(f->in[4], b2), sstr(f->in[5], b3));
    if (f->a->i[2] < 0 || f->a->i[2] > 2) return fail(f, "attention_bwd: which must be 0, 1 or 2");
    f->shape = f->in[f->a->i[2]]->shape;
  }
  return 0;
}

/* x [..., H, W] -> out [..., H, W] (f32, rank 2 at least). */
static int infer_tril(Infer *f) {
  char b[SBUF];
  if (want_f32(f, 0)) return -1;
  if (f->in[0]->shape.rank < 2) return fail(f, "tril needs a tensor of rank 2 or more, got %s", sstr(f->in[0], b));
  f->shape = f->in[0]->shape;
  f->dt = DT_F32;
  return 0;
}

/* EMBEDDING: table [V, D], ids i32 [A, B] -> out [A, B, D]. */
static int infer_embedding(Infer *f) {
  char b1[SBUF], b2[SBUF];
  const Shape *t = &f->in[0]->shape, *ids = &f->in[1]->shape;
  if (want_f32(f, 0)) return -1;
  if (t->rank != 2 || f->in[1]->dt != DT_I32 || ids->rank >= MAX_RANK)
    return fail(f, "embedding needs a table f32[V, D] and ids i32[...], got %s and %s", sstr(f->in[0], b1),
                sstr(f->in[1], b2));
  f->shape = *ids;
  f->shape.dim[f->shape.rank++] = t->dim[1];
  f->dt = DT_F32;
  return check_shape(f, &f->shape);
}

/* EMBEDDING_BWD: dy [A, B, D], ids i32 [A, B] -> the table's Attr.shape [V, D]. */
static int infer_embedding_bwd(Infer *f) {
  char b1[SBUF], b2[SBUF];
  const Shape *dy = &f->in[0]->shape, *ids = &f->in[1]->shape, *t = &f->a->shape;
  int ok = f->in[0]->dt == DT_F32 && f->in[1]->dt == DT_I32 && t->rank == 2 && dy->rank == ids->rank + 1 &&
           dy->dim[dy->rank - 1] == t->dim[1];
  for (int k = 0; ok && k < ids->rank; k++) ok = dy->dim[k] == ids->dim[k];
  if (!ok) return fail(f, "embedding_bwd: %s does not match ids %s", sstr(f->in[0], b1), sstr(f->in[1], b2));
  f->shape = *t;
  f->dt = DT_F32;
  return 0;
}

/* RAND, RANDN: no operands -> out Attr.shape. */
static int infer_noise(Infer *f) {
  f->shape = f->a->shape;
  f->dt = DT_F32;
  return check_shape(f, &f->shape);
}

/* x [d0, ..., dk] -> out [d0, ..., dk] (f32; CAST takes an i32 x). */
static int infer_unary(Infer *f) {
  if (f->op != OP_CAST && want_f32(f, 0)) return -1;
  f->shape = f->in[0]->shape;
  f->dt = DT_F32;
  return 0;
}

/* x [A, B, C] with axis mask {1} -> out [A, C], or [A, 1, C] with keepdims;
 * mask 0 reduces every axis (out []). */
static int infer_reduce(Infer *f) {
  const Shape *s = &f->in[0]->shape;
  uint64_t mask = (uint64_t)f->a->i[0];
  if (want_f32(f, 0)) return -1;
  if (s->rank < 64 && (mask >> s->rank) != 0) {
    char b[SBUF];
    return fail(f, "%s: axis out of range for %s", op_info[f->op].name, sstr(f->in[0], b));
  }
  if (mask == 0) mask = ((uint64_t)1 << s->rank) - 1;
  f->shape.rank = 0;
  for (int i = 0; i < s->rank; i++) {
    if (!(mask >> i & 1))
      f->shape.dim[f->shape.rank++] = s->dim[i];
    else if (f->a->i[1])
      f->shape.dim[f->shape.rank++] = 1;
  }
  if (f->op == OP_MAX && shape_numel(s) == 0) return fail(f, "max of an empty tensor");
  f->dt = DT_F32;
  return 0;
}

/* The keepdims shape of a reduction of x over mask (0: every axis) into *out. */
static int keep_shape(Infer *f, const Shape *x, Shape *out) {
  uint64_t mask = (uint64_t)f->a->i[0];
  if (x->rank < 64 && (mask >> x->rank) != 0) return fail(f, "%s: axis out of range", op_info[f->op].name);
  if (mask == 0) mask = ((uint64_t)1 << x->rank) - 1;
  *out = *x;
  for (int k = 0; k < x->rank; k++)
    if (mask >> k & 1) out->dim[k] = 1;
  return 0;
}

/* The statistics operands of VAR (x, mean), NORMALIZE (x, mean, var) and
 * NORMALIZE_BWD (gy, x, mean, var) have the keepdims shape of x reduced
 * over the mask. */
static int want_stats(Infer *f, const Shape *x, int first) {
  char b1[SBUF], b2[SBUF];
  Shape k;
  if (keep_shape(f, x, &k)) return -1;
  for (int j = first; j < f->nin; j++)
    if (!shape_eq(&f->in[j]->shape, &k))
      return fail(f, "%s: statistics %s do not match %s", op_info[f->op].name, sstr(f->in[j], b1),
                  shape_str(&k, DT_F32, b2, SBUF));
  return 0;
}

/* VAR: x [N, C, H, W], mean [1, C, 1, 1] (mask {0, 2, 3}) -> [1, C, 1, 1]. */
static int infer_var(Infer *f) {
  if (want_all_f32(f) || want_stats(f, &f->in[0]->shape, 1)) return -1;
  f->shape = f->in[1]->shape;
  f->dt = DT_F32;
  return 0;
}

/* NORMALIZE_BWD: gy [N, D], x [N, D], mean [N, 1], var [N, 1] -> dx [N, D]. */
static int infer_normalize_bwd(Infer *f) {
  char b1[SBUF], b2[SBUF];
  if (want_all_f32(f)) return -1;
  if (!shape_eq(&f->in[0]->shape, &f->in[1]->shape))
    return fail(f, "normalize_bwd: gradient %s does not match x %s", sstr(f->in[0], b1), sstr(f->in[1], b2));
  if (want_stats(f, &f->in[1]->shape, 2)) return -1;
  f->shape = f->in[1]->shape;
  f->dt = DT_F32;
  return 0;
}

/* x [N, C], axis 1 -> out i32 [N]: the axis is dropped. */
static int infer_argmax(Infer *f) {
  const Shape *s = &f->in[0]->shape;
  if (want_f32(f, 0)) return -1;
  if (norm_axis(f, &f->a->i[0], s->rank)) return -1;
  if (s->dim[f->a->i[0]] == 0) return fail(f, "argmax over an empty axis");
  f->shape.rank = 0;
  for (int i = 0; i < s->rank; i++)
    if (i != f->a->i[0]) f->shape.dim[f->shape.rank++] = s->dim[i];
  f->dt = DT_I32;
  return 0;
}

/* x [d0, ...] -> out Attr.shape, with the same number of elements. */
static int infer_reshape(Infer *f) {
  char b1[SBUF], b2[SBUF];
  if (check_shape(f, &f->a->shape)) return -1;
  f->dt = f->in[0]->dt;
  f->shape = f->a->shape;
  if (shape_numel(&f->shape) != shape_numel(&f->in[0]->shape))
    return fail(f, "reshape: cannot reshape %s to %s (element counts differ)", sstr(f->in[0], b1),
                shape_str(&f->shape, f->dt, b2, SBUF));
  return 0;
}

/* x [1, N] -> out Attr.shape [M, N]: broadcast x to the shape. */
static int infer_expand(Infer *f) {
  char b1[SBUF], b2[SBUF];
  Shape r;
  if (check_shape(f, &f->a->shape)) return -1;
  f->dt = f->in[0]->dt;
  f->shape = f->a->shape;
  if (!shape_broadcast(&f->in[0]->shape, &f->shape, &r) || !shape_eq(&r, &f->shape))
    return fail(f, "expand: %s cannot broadcast to %s", sstr(f->in[0], b1),
                shape_str(&f->shape, f->dt, b2, SBUF));
  return 0;
}

/* x [d0, d1, d2] with perm (2, 0, 1) -> out [d2, d0, d1]: out.dim[k] =
 * x.dim[perm[k]]. */
static int infer_transpose(Infer *f) {
  const Shape *s = &f->in[0]->shape;
  int seen[MAX_RANK] = {0};
  char b[SBUF];
  for (int k = 0; k < s->rank; k++) {
    int64_t p = f->a->i[k];
    if (p < 0 || p >= s->rank || seen[p])
      return fail(f, "transpose: invalid permutation for %s", sstr(f->in[0], b));
    seen[p] = 1;
    f->shape.dim[k] = s->dim[p];
  }
  f->shape.rank = s->rank;
  f->dt = f->in[0]->dt;
  return 0;
}

/* SLICE: out = a.shape taken at start; SLICE_BWD: operand placed into a.shape. */
static int infer_slice(Infer *f) {
  const Shape *big = f->op == OP_SLICE ? &f->in[0]->shape : &f->a->shape;
  const Shape *small = f->op == OP_SLICE ? &f->a->shape : &f->in[0]->shape;
  char b1[SBUF], b2[SBUF];
  if (check_shape(f, &f->a->shape)) return -1;
  f->dt = f->in[0]->dt;
  f->shape = f->a->shape;
  int ok = big->rank == small->rank;
  for (int k = 0; ok && k < big->rank; k++)
    ok = f->a->i[k] >= 0 && f->a->i[k] + small->dim[k] <= big->dim[k];
  if (!ok)
    return fail(f, "%s: %s does not fit in %s at the given start", op_info[f->op].name,
                shape_str(small, f->dt, b1, SBUF), shape_str(big, f->dt, b2, SBUF));
  return 0;
}

/* x0 [A, B0, C], x1 [A, B1, C], ... along axis 1 -> out [A, B0 + B1 + ..., C]. */
static int infer_concat(Infer *f) {
  char b1[SBUF], b2[SBUF];
  if (f->nin < 1) return fail(f, "concat needs at least one operand");
  const Node *x = f->in[0];
  if (norm_axis(f, &f->a->i[0], x->shape.rank)) return -1;
  int ax = (int)f->a->i[0];
  f->shape = x->shape;
  f->dt = x->dt;
  for (int k = 1; k < f->nin; k++) {
    const Node *y = f->in[k];
    int ok = y->dt == x->dt && y->shape.rank == x->shape.rank;
    for (int i = 0; ok && i < x->shape.rank; i++)
      ok = i == ax || y->shape.dim[i] == x->shape.dim[i];
    if (!ok)
      return fail(f, "shape mismatch in 'concat' along axis %d: %s and %s", ax, sstr(x, b1), sstr(y, b2));
    f->shape.dim[ax] += y->shape.dim[ax];
  }
  return check_shape(f, &f->shape);
}

/* a [M, K] @ b [K, N] -> [M, N]; a [B, M, K] @ b [B, K, N] -> [B, M, N];
 * a [B, M, K] @ b [K, N] -> [B, M, N]. */
static int infer_matmul(Infer *f) {
  const Node *x = f->in[0], *y = f->in[1];
  char b1[SBUF], b2[SBUF];
  if (want_all_f32(f)) return -1;
  int rx = x->shape.rank, ry = y->shape.rank;
  if (!((rx == 2 && ry == 2) || (rx == 3 && (ry == 3 || ry == 2))))
    return fail(f, "matmul: unsupported ranks: %s @ %s", sstr(x, b1), sstr(y, b2));
  if (x->shape.dim[rx - 1] != y->shape.dim[ry - 2])
    return fail(f, "matmul: inner dimensions differ: %s @ %s", sstr(x, b1), sstr(y, b2));
  if (rx == 3 && ry == 3 && x->shape.dim[0] != y->shape.dim[0])
    return fail(f, "matmul: batch dimensions differ: %s @ %s", sstr(x, b1), sstr(y, b2));
  f->shape = x->shape;
  f->shape.dim[rx - 1] = y->shape.dim[ry - 1];
  f->dt = DT_F32;
  return check_shape(f, &f->shape);
}

/* x [N, C] -> out [N, C], normalized along Attr.i[0]. */
static int infer_softmax(Infer *f) {
  if (want_f32(f, 0)) return -1;
  if (norm_axis(f, &f->a->i[0], f->in[0]->shape.rank)) return -1;
  f->shape = f->in[0]->shape;
  f->dt = DT_F32;
  return 0;
}

/* x [d0, ...] -> out [d0, ...]: the mask keeps x's shape. */
static int infer_dropout(Infer *f) {
  if (want_f32(f, 0)) return -1;
  if (!(f->a->f[0] >= 0 && f->a->f[0] < 1))
    return fail(f, "dropout: p must be in [0, 1), got %g", f->a->f[0]);
  f->shape = f->in[0]->shape;
  f->dt = DT_F32;
  return 0;
}

/* labels i32 [N] -> out f32 Attr.shape [N, C]. */
static int infer_one_hot(Infer *f) {
  const Node *x = f->in[0];
  char b1[SBUF], b2[SBUF];
  if (x->dt != DT_I32) return fail(f, "one_hot expects i32, got %s", sstr(x, b1));
  if (check_shape(f, &f->a->shape)) return -1;
  f->shape = f->a->shape;
  f->dt = DT_F32;
  int ok = f->shape.rank == x->shape.rank + 1;
  for (int i = 0; ok && i < x->shape.rank; i++) ok = f->shape.dim[i] == x->shape.dim[i];
  if (!ok)
    return fail(f, "one_hot: %s does not match %s", sstr(x, b1), shape_str(&f->shape, DT_F32, b2, SBUF));
  return 0;
}

/* cross_entropy: logits [N, C], labels i32 [N] -> out []; mse and
 * bce_logits: a [d...], b [d...] (one shape) -> out []. */
static int infer_loss(Infer *f) {
  const Node *x = f->in[0], *y = f->in[1];
  char b1[SBUF], b2[SBUF];
  f->shape.rank = 0;
  f->dt = DT_F32;
  if (f->op == OP_CROSS_ENTROPY) {
    if (want_f32(f, 0)) return -1;
    if (y->dt != DT_I32) return fail(f, "cross_entropy: labels must be i32, got %s", sstr(y, b1));
    if (x->shape.rank != 2 || y->shape.rank != 1 || x->shape.dim[0] != y->shape.dim[0])
      return fail(f, "cross_entropy: expects logits f32[N,C] and labels i32[N], got %s and %s",
                  sstr(x, b1), sstr(y, b2));
    return 0;
  }
  if (want_all_f32(f)) return -1;
  if (!shape_eq(&x->shape, &y->shape))
    return fail(f, "shape mismatch in '%s': %s and %s must be equal", op_info[f->op].name,
                sstr(x, b1), sstr(y, b2));
  return 0;
}

/* cross_entropy's gradient: logits [N, C], labels i32 [N], dy [] -> [N, C]. */
static int infer_ce_bwd(Infer *f) {
  char b[SBUF];
  Op op = f->op;
  f->op = OP_CROSS_ENTROPY;  /* the operands of the loss it differentiates */
  int bad = infer_loss(f);
  f->op = op;
  if (bad) return -1;
  if (f->in[2]->dt != DT_F32 || f->in[2]->shape.rank != 0)
    return fail(f, "cross_entropy_bwd: dy must be f32[], got %s", sstr(f->in[2], b));
  f->shape = f->in[0]->shape;
  return 0;
}

/* Output size of a window sliding over n with padding p; -1 if it does not fit. */
static int64_t window_out(int64_t n, int64_t k, int64_t stride, int64_t pad) {
  if (n + 2 * pad < k) return -1;
  return (n + 2 * pad - k) / stride + 1;
}

/* The convolution attrs (ops.def): i[0] stride_h, i[1] padding_h, i[2]
 * stride_w, i[3] padding_w, i[4] dilation_h, i[5] dilation_w, i[6] groups.
 * The legacy square form sets only i[0] stride and i[1] padding (i[2] == 0,
 * never a valid stride): it is normalised in place to the full form. */
static void conv_norm(Attr *a) {
  if (a->i[2] != 0) return;
  a->i[2] = a->i[0];
  a->i[3] = a->i[1];
  a->i[4] = a->i[5] = a->i[6] = 1;
}

/* Output size of conv2d along one axis of length n, kernel k, dilation d. */
static int64_t conv_out(int64_t n, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return window_out(n, dil * (k - 1) + 1, stride, pad);
}

/* conv2d(x, w) shape into out; 0 on success. */
static int conv_shape(Infer *f, const Shape *x, const Shape *w, Shape *out) {
  char b1[SBUF], b2[SBUF];
  const int64_t *a = f->a->i;
  int64_t g = a[6];
  if (a[0] < 1 || a[2] < 1 || a[4] < 1 || a[5] < 1 || a[1] < 0 || a[3] < 0 || g < 1)
    return fail(f, "conv2d: stride, dilation and groups must be >= 1 and padding >= 0");
  if (x->rank != 4 || w->rank != 4 || (g == 1 && x->dim[1] != w->dim[1]))
    return fail(f, "conv2d: expects x[N,C,H,W] and w[O,C,KH,KW], got %s and %s",
                shape_str(x, DT_F32, b1, SBUF), shape_str(w, DT_F32, b2, SBUF));
  if (x->dim[1] % g || w->dim[0] % g)
    return fail(f, "conv2d: groups=%lld must divide the input channels (%lld) and the output channels (%lld)",
                (long long)g, (long long)x->dim[1], (long long)w->dim[0]);
  if (w->dim[1] != x->dim[1] / g)
    return fail(f, "conv2d: with groups=%lld expects x[N,C,H,W] and w[O,C/%lld,KH,KW], got %s and %s", (long long)g,
                (long long)g, shape_str(x, DT_F32, b1, SBUF), shape_str(w, DT_F32, b2, SBUF));
  int64_t oh = conv_out(x->dim[2], w->dim[2], a[0], a[1], a[4]), ow = conv_out(x->dim[3], w->dim[3], a[2], a[3], a[5]);
  if (oh < 1 || ow < 1) {
    if (a[4] == 1 && a[5] == 1)
      return fail(f, "conv2d: kernel %s larger than padded input %s", shape_str(w, DT_F32, b2, SBUF),
                  shape_str(x, DT_F32, b1, SBUF));
    return fail(f, "conv2d: kernel %s with dilation [%lld, %lld] larger than padded input %s",
                shape_str(w, DT_F32, b2, SBUF), (long long)a[4], (long long)a[5], shape_str(x, DT_F32, b1, SBUF));
  }
  *out = (Shape){4, {x->dim[0], w->dim[0], oh, ow}};
  return check_shape(f, out);
}

/* A gradient dy of `got` positions where the convolution of x gives `full`:
 * equal, or (conv_transpose2d with output_padding >= stride, which torch
 * allows below the dilation) fewer by output_padding / stride rows, the
 * outputs x's extra rows would add; the kernels read dy's extent. */
static int conv_dy_fits(int64_t full, int64_t got, int64_t stride, int64_t dil) {
  int64_t most = ((stride > dil ? stride : dil) - 1) / stride;
  return got <= full && full - got <= most;
}

/* CONV2D: x [N, C, H, W], w [O, C/groups, KH, KW] -> y [N, O, OH, OW], OH =
 * (H + 2 padding_h - dilation_h (KH - 1) - 1) / stride_h + 1 (OW alike);
 * CONV2D_BWD_X: dy, w -> x's Attr.shape; CONV2D_BWD_W: x, dy -> w's
 * Attr.shape. */
static int infer_conv(Infer *f) {
  Shape o;
  char b1[SBUF], b2[SBUF];
  if (want_all_f32(f)) return -1;
  conv_norm(f->a);
  if (f->op == OP_CONV2D) {
    if (conv_shape(f, &f->in[0]->shape, &f->in[1]->shape, &f->shape)) return -1;
    f->dt = DT_F32;
    return 0;
  }
  f->shape = f->a->shape;
  f->dt = DT_F32;
  const Node *dy = f->op == OP_CONV2D_BWD_X ? f->in[0] : f->in[1];
  if (f->op == OP_CONV2D_BWD_X) {
    if (conv_shape(f, &f->a->shape, &f->in[1]->shape, &o)) return -1;
  } else {
    if (conv_shape(f, &f->in[0]->shape, &f->a->shape, &o)) return -1;
  }
  const Shape *d = &dy->shape;
  const int64_t *a = f->a->i;
  if (d->rank != 4 || d->dim[0] != o.dim[0] || d->dim[1] != o.dim[1] || !conv_dy_fits(o.dim[2], d->dim[2], a[0], a[4]) ||
      !conv_dy_fits(o.dim[3], d->dim[3], a[2], a[5]))
    return fail(f, "%s: gradient %s does not match the convolution output %s", op_info[f->op].name,
                sstr(dy, b1), shape_str(&o, DT_F32, b2, SBUF));
  return 0;
}

static int pool_shape(Infer *f, const Shape *x, Shape *out) {
  char b[SBUF];
  int64_t k = f->a->i[0], s = f->a->i[1];
  if (k < 1 || s < 1) return fail(f, "%s: size and stride must be >= 1", op_info[f->op].name);
  if (x->rank != 4)
    return fail(f, "%s expects x[N,C,H,W], got %s", op_info[f->op].name, shape_str(x, DT_F32, b, SBUF));
  int64_t oh = window_out(x->dim[2], k, s, 0), ow = window_out(x->dim[3], k, s, 0);
  if (oh < 1 || ow < 1)
    return fail(f, "%s: window %lld larger than input %s", op_info[f->op].name, (long long)k,
                shape_str(x, DT_F32, b, SBUF));
  *out = (Shape){4, {x->dim[0], x->dim[1], oh, ow}};
  return 0;
}

/* POOL: x [N, C, H, W] -> y [N, C, OH, OW], OH = (H - size) / stride + 1;
 * the _BWD ops give x's shape. */
static int infer_pool(Infer *f) {
  Shape o;
  char b1[SBUF], b2[SBUF];
  if (want_all_f32(f)) return -1;
  f->dt = DT_F32;
  if (f->op == OP_MAXPOOL2D || f->op == OP_AVGPOOL2D) return pool_shape(f, &f->in[0]->shape, &f->shape);
  const Node *dy = f->op == OP_MAXPOOL2D_BWD ? f->in[1] : f->in[0];
  f->shape = f->op == OP_MAXPOOL2D_BWD ? f->in[0]->shape : f->a->shape;
  if (check_shape(f, &f->shape) || pool_shape(f, &f->shape, &o)) return -1;
  if (!shape_eq(&o, &dy->shape))
    return fail(f, "%s: gradient %s does not match the pooling output %s", op_info[f->op].name,
                sstr(dy, b1), shape_str(&o, DT_F32, b2, SBUF));
  return 0;
}

/* p [d...], g [d...], states [d...] (one shape) -> out []: the update
 * writes p and the states in place. */
static int infer_update(Infer *f) {
  char b1[SBUF], b2[SBUF];
  if (want_all_f32(f)) return -1;
  for (int k = 1; k < f->nin; k++)
    if (!shape_eq(&f->in[k]->shape, &f->in[0]->shape))
      return fail(f, "%s: operand %s does not match parameter %s", op_info[f->op].name,
                  sstr(f->in[k], b1), sstr(f->in[0], b2));
  f->shape.rank = 0;
  f->dt = DT_F32;
  return 0;
}

/* The shape rule of each op: ops.def's shape column names infer_<shape>. */
typedef int (*InferFn)(Infer *);
static const InferFn shape_rule[OP_COUNT] = {
#define OP(e, name, nin, flags, shape, ...) [OP_##e] = infer_##shape,
#include "ops.def"
};

static int infer(Infer *f) {
  if (op_info[f->op].nin >= 0 && f->nin != op_info[f->op].nin)
    return fail(f, "%s expects %d operand%s, got %d", op_info[f->op].name, op_info[f->op].nin,
                op_info[f->op].nin == 1 ? "" : "s", f->nin);
  for (int k = 0; k < f->nin; k++)
    if (!f->in[k]) return fail(f, "%s: missing operand", op_info[f->op].name);
  return shape_rule[f->op](f);
}

int ir_infer(Diag *d, Loc loc, Op op, Node **in, int nin, Attr *a, DType *dt, Shape *shape) {
  if ((int)op < 0 || op >= OP_COUNT) {
    if (d) diag_error(d, loc, "invalid op %d", (int)op);
    return -1;
  }
  Infer f = {d, loc, op, in, nin, a, DT_F32, {0, {0}}};
  if (infer(&f)) return -1;
  *dt = f.dt;
  *shape = f.shape;
  for (int i = shape->rank; i < MAX_RANK; i++) shape->dim[i] = 0;
  return 0;
}

Node *ir_op(Graph *g, Diag *d, Loc loc, Op op, Node **in, int nin, const Attr *a) {
  Attr at;
  DType dt;
  Shape s;
  if (a) at = *a;
  else memset(&at, 0, sizeof at);
  if (nin < 0 || ir_infer(d, loc, op, in, nin, &at, &dt, &s)) return NULL;
  Node *n = new_node(g, loc, op, in, nin);
  n->a = at;
  n->dt = dt;
  n->shape = s;
  return n;
}

/* --------------------------------------------------- pass shorthands */

Node *ir_build(Graph *g, Op op, Node **in, int nin, const Attr *a, Loc loc) {
  Node *n = ir_op(g, NULL, loc, op, in, nin, a);
  NNDC_ASSERT(n && "a pass built an ill-shaped node");
  return n;
}

void ir_roles(Graph *g, void (*fn)(void *ctx, Node **slot), void *ctx) {
  for (int i = 0; i < g->noutputs; i++) fn(ctx, &g->outputs[i].node);
  for (int i = 0; i < g->nmetrics; i++) fn(ctx, &g->metrics[i].node);
  fn(ctx, &g->loss);
  for (int i = 0; g->grads && i < g->nparams; i++) fn(ctx, &g->grads[i]);
  for (int i = 0; g->input_grads && i < g->ninputs; i++)
    if (g->input_grads[i]) fn(ctx, &g->input_grads[i]);
  for (int i = 0; g->updates && i < g->nupdates; i++) fn(ctx, &g->updates[i]);
}

Node *ir_un(Graph *g, Op op, Node *x) { return ir_build(g, op, &x, 1, NULL, x->loc); }

Node *ir_bin(Graph *g, Op op, Node *x, Node *y) {
  Node *in[2] = {x, y};
  return ir_build(g, op, in, 2, NULL, x->loc);
}

Node *ir_scalar(Graph *g, double v) {
  Shape s = {0, {0}};
  Loc none = {0};
  return ir_const(g, none, &s, v);
}

/* RESHAPE or EXPAND of x to s; x itself when it has that shape. */
static Node *to_shape(Graph *g, Op op, Node *x, const Shape *s) {
  if (shape_eq(&x->shape, s)) return x;
  Attr a;
  memset(&a, 0, sizeof a);
  a.shape = *s;
  return ir_build(g, op, &x, 1, &a, x->loc);
}

Node *ir_reshape(Graph *g, Node *x, const Shape *s) { return to_shape(g, OP_RESHAPE, x, s); }

Node *ir_expand(Graph *g, Node *x, const Shape *s) { return to_shape(g, OP_EXPAND, x, s); }

/* Sums the axes broadcasting added (leading) or stretched (size 1 in s),
 * keeping dims, then reshapes to s. */
Node *ir_sum_to(Graph *g, Node *x, const Shape *s) {
  if (shape_eq(&x->shape, s)) return x;
  int lead = x->shape.rank - s->rank;
  NNDC_ASSERT(lead >= 0);
  Attr a;
  memset(&a, 0, sizeof a);
  for (int i = 0; i < x->shape.rank; i++) {
    int j = i - lead;
    if (j < 0 || (s->dim[j] == 1 && x->shape.dim[i] != 1)) a.i[0] |= (int64_t)1 << i;
    else NNDC_ASSERT(s->dim[j] == x->shape.dim[i]);
  }
  a.i[1] = 1;
  Node *r = x;
  if (a.i[0]) r = ir_build(g, OP_SUM, &x, 1, &a, x->loc);
  return ir_reshape(g, r, s);
}

/* Iterative depth-first post-order from each node in id order, operands
 * first: the old order where it was already topological, a node moved
 * ahead of its first user otherwise. */
void ir_toposort(Graph *g) {
  int n = g->nnodes;
  Node **out = malloc(sizeof(Node *) * (size_t)(n + 1));
  struct Frame { Node *x; int next; } *st = malloc(sizeof *st * (size_t)(n + 1));
  uint8_t *state = calloc((size_t)n + 1, 1);  /* 0 new, 1 on the stack, 2 placed */
  NNDC_ASSERT(out && st && state);
  int nout = 0;
  for (int r = 0; r < n; r++) {
    if (state[r]) continue;
    int sp = 0;
    st[sp++] = (struct Frame){g->nodes[r], 0};
    state[r] = 1;
    while (sp > 0) {
      struct Frame *f = &st[sp - 1];
      if (f->next < f->x->nin) {
        Node *o = f->x->in[f->next++];
        NNDC_ASSERT(state[o->id] != 1 && "a cycle in the graph");
        if (!state[o->id]) state[o->id] = 1, st[sp++] = (struct Frame){o, 0};
        continue;
      }
      state[f->x->id] = 2;
      out[nout++] = f->x;
      sp--;
    }
  }
  NNDC_ASSERT(nout == n);
  for (int i = 0; i < n; i++) g->nodes[i] = out[i], out[i]->id = i;
  g->fuse_group = NULL;
  free(out);
  free(st);
  free(state);
}

void graph_add_update(Graph *g, Node *u) {
  Node **ups = arena_alloc(g->arena, sizeof *ups * (size_t)(g->nupdates + 1));
  if (g->nupdates) memcpy(ups, g->updates, sizeof *ups * (size_t)g->nupdates);
  ups[g->nupdates++] = u;
  g->updates = ups;
}

int ir_swaps_last_two(const Node *t) {
  int r = t->shape.rank;
  if (t->op != OP_TRANSPOSE || t->dt != DT_F32 || r < 2 || r > 3) return 0;
  for (int k = 0; k < r - 2; k++)
    if (t->a.i[k] != k) return 0;
  return t->a.i[r - 2] == r - 1 && t->a.i[r - 1] == r - 2;
}

/* The statistics' groups of x over mask as [P, G, Q]: element (p, g, q) at
 * (p G + g) Q + q, group g's statistics at g.  The kept axes (of extent
 * above 1) must be adjacent: layer_norm's leading axes, batch_norm's axis 1. */
int norm_split(const Shape *s, uint64_t mask, int64_t *P, int64_t *G, int64_t *Q) {
  if (mask == 0) mask = ((uint64_t)1 << s->rank) - 1;
  int a = -1, b = -1;
  for (int k = 0; k < s->rank; k++)
    if (!(mask >> k & 1) && s->dim[k] != 1) b = k, a = a < 0 ? k : a;
  *P = *G = *Q = 1;
  for (int k = 0; k < s->rank; k++) {
    if (a < 0 || k < a) *P *= s->dim[k];
    else if (k > b) *Q *= s->dim[k];
    else if ((mask >> k & 1) && s->dim[k] != 1) return -1;
    else *G *= s->dim[k];
  }
  return 0;
}
