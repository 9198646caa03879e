/* print.c - the text and Graphviz dumps of a graph (`nndc ir`).
 *
 * Text: one line per node, "%7 = matmul(%3, %5) : f32[64,256]  # mlp.nnd:12:5";
 * leaves show their name (and a PARAM its init), other nodes the attributes
 * their op uses (axis=, p=, stride=, ...).  Then one line per graph role:
 * "output NAME = %k", "loss = %k", "metric NAME = %k", "grad NAME = %k",
 * "update %k".  DOT: one box per node (op and shape), edges operand -> user.
 * Both return text allocated in the given arena.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ir.h"

/* A growing malloc'd string; copied into the arena when done. */
typedef struct Buf {
  char *s;
  size_t len, cap;
} Buf;

static void put(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (b->len + (size_t)n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < b->len + (size_t)n + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    NNDC_ASSERT(s && "out of memory printing IR");
    b->s = s;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

static char *finish(Buf *b, Arena *a) {
  char *r = arena_strndup(a, b->s ? b->s : "", b->len);
  free(b->s);
  return r;
}

static const char *init_name(const Init *in, char *buf, size_t n) {
  static const char *names[] = {"default", "zeros", "ones", "full", "uniform", "normal",
                                "glorot_uniform", "glorot_normal", "he_uniform", "he_normal"};
  const char *s = (unsigned)in->kind < sizeof names / sizeof names[0] ? names[in->kind] : "?";
  if (in->kind == INIT_FULL) snprintf(buf, n, "%s(%g)", s, in->a);
  else if (in->kind == INIT_UNIFORM || in->kind == INIT_NORMAL) snprintf(buf, n, "%s(%g, %g)", s, in->a, in->b);
  else snprintf(buf, n, "%s", s);
  return buf;
}

static void put_ints(Buf *b, const char *key, const int64_t *v, int n) {
  put(b, ", %s=[", key);
  for (int k = 0; k < n; k++) put(b, k ? ",%lld" : "%lld", (long long)v[k]);
  put(b, "]");
}

static void put_shape_attr(Buf *b, const Shape *s) {
  char sb[128];
  put(b, ", shape=%s", shape_str(s, DT_F32, sb, sizeof sb) + 3);
}

/* The attributes ops.def's attrs column lists for the op. */
static void put_attrs(Buf *b, const Node *n) {
  const Attr *a = &n->a;
  int r = n->nin ? n->in[0]->shape.rank : 0;
  char item[64];
  for (const char *p = op_info[n->op].attrs; *p;) {
    size_t len = strcspn(p, " ");
    snprintf(item, sizeof item, "%.*s", (int)len, p);
    p += len + (p[len] == ' ');
    char *slot = strchr(item, ':');
    NNDC_ASSERT(slot && "ops.def: an attribute is NAME:SLOT");
    *slot++ = 0;
    char *def = strchr(slot, ':');
    if (def) *def = 0;
    const char *name = item;
    if (slot[0] == 'f' && slot[1] >= '0' && slot[1] <= '9') put(b, ", %s=%g", name, a->f[slot[1] - '0']);
    else if (slot[0] == 'i' && slot[1] >= '0' && slot[1] <= '9') put(b, ", %s=%lld", name, (long long)a->i[slot[1] - '0']);
    else if (!strcmp(slot, "mask")) {
      if (a->i[0]) put(b, ", %s=0x%llx", name, (unsigned long long)a->i[0]);
    } else if (!strncmp(slot, "flag", 4)) {
      if (a->i[slot[4] - '0']) put(b, ", %s", name);
    } else if (!strcmp(slot, "shape")) put_shape_attr(b, &a->shape);
    else if (!strcmp(slot, "perm")) put_ints(b, name, a->i, r);
    else if (!strcmp(slot, "start")) put_ints(b, name, a->i, a->shape.rank);
    else NNDC_ASSERT(!"ops.def: unknown attribute slot");
  }
}

static void put_loc(Buf *b, Loc l) {
  if (!l.src) return;
  const char *p = l.src->path, *slash = strrchr(p, '/');
  put(b, "  # %s:%d:%d", slash ? slash + 1 : p, l.line, l.col);
}

static void put_node(Buf *b, const Node *n) {
  char sb[128], ib[96];
  put(b, "%%%d = %s(", n->id, op_info[n->op].name);
  if (n->op == OP_CONST) put(b, "%g", n->a.f[0]);
  else if (op_info[n->op].flags & F_LEAF) put(b, "\"%s\"", n->name ? n->name : "");
  if (n->op == OP_PARAM) put(b, ", %s", init_name(&n->init, ib, sizeof ib));
  for (int k = 0; k < n->nin; k++) put(b, k ? ", %%%d" : "%%%d", n->in[k]->id);
  put_attrs(b, n);   /* every op with attributes has operands, so ", " reads right */
  put(b, ") : %s", shape_str(&n->shape, n->dt, sb, sizeof sb));
  put_loc(b, n->loc);
  put(b, "\n");
}

static void put_named(Buf *b, const char *role, const Named *v, int n) {
  for (int i = 0; i < n; i++)
    if (v[i].node) put(b, "%s %s = %%%d\n", role, v[i].name, v[i].node->id);
}

char *ir_print(const Graph *g, Arena *a) {
  Buf b = {0};
  for (int i = 0; i < g->nnodes; i++) put_node(&b, g->nodes[i]);
  put_named(&b, "output", g->outputs, g->noutputs);
  if (g->loss) put(&b, "loss = %%%d\n", g->loss->id);
  put_named(&b, "metric", g->metrics, g->nmetrics);
  for (int i = 0; g->grads && i < g->nparams; i++)
    if (g->grads[i]) put(&b, "grad %s = %%%d\n", g->params[i].name, g->grads[i]->id);
  for (int i = 0; g->updates && i < g->nupdates; i++)
    if (g->updates[i]) put(&b, "update %%%d\n", g->updates[i]->id);
  return finish(&b, a);
}

/* Node label text: op, name or attrs, shape; quotes escaped for DOT. */
static void put_dot_label(Buf *b, const Node *n) {
  char sb[128];
  put(b, "%%%d %s", n->id, op_info[n->op].name);
  if (n->name) {
    put(b, " ");
    for (const char *p = n->name; *p; p++) put(b, *p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
  }
  put(b, "\\n%s", shape_str(&n->shape, n->dt, sb, sizeof sb));
}

/* Role k (an output, the loss or a metric) as an ellipse fed by its node. */
static void put_dot_role(Buf *b, int k, const char *role, const char *name, const Node *n) {
  if (!n) return;
  put(b, "  r%d [shape=ellipse, label=\"%s%s%s\"];\n  n%d -> r%d;\n", k, role, name ? " " : "",
      name ? name : "", n->id, k);
}

char *ir_print_dot(const Graph *g, Arena *a) {
  Buf b = {0};
  put(&b, "digraph nndc {\n  node [shape=box, fontname=\"monospace\"];\n");
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    put(&b, "  n%d [label=\"", n->id);
    put_dot_label(&b, n);
    put(&b, "\"%s];\n", op_info[n->op].flags & F_LEAF ? ", style=rounded" : "");
    for (int k = 0; k < n->nin; k++) put(&b, "  n%d -> n%d;\n", n->in[k]->id, n->id);
  }
  int k = 0;
  for (int i = 0; i < g->noutputs; i++) put_dot_role(&b, k++, "output", g->outputs[i].name, g->outputs[i].node);
  put_dot_role(&b, k++, "loss", NULL, g->loss);
  for (int i = 0; i < g->nmetrics; i++) put_dot_role(&b, k++, "metric", g->metrics[i].name, g->metrics[i].node);
  put(&b, "}\n");
  return finish(&b, a);
}
