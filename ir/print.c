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

/* Texts are built in a Buf (support.h) and copied into the arena when done. */
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
  buf_printf(b, ", %s=[", key);
  for (int k = 0; k < n; k++) buf_printf(b, k ? ",%lld" : "%lld", (long long)v[k]);
  buf_printf(b, "]");
}

static void put_shape_attr(Buf *b, const Shape *s) {
  char sb[128];
  buf_printf(b, ", shape=%s", shape_str(s, DT_F32, sb, sizeof sb) + 3);
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
    if (slot[0] == 'f' && slot[1] >= '0' && slot[1] <= '9') buf_printf(b, ", %s=%g", name, a->f[slot[1] - '0']);
    else if (slot[0] == 'i' && slot[1] >= '0' && slot[1] <= '9') buf_printf(b, ", %s=%lld", name, (long long)a->i[slot[1] - '0']);
    else if (!strcmp(slot, "mask")) {
      if (a->i[0]) buf_printf(b, ", %s=0x%llx", name, (unsigned long long)a->i[0]);
    } else if (!strncmp(slot, "flag", 4)) {
      if (a->i[slot[4] - '0']) buf_printf(b, ", %s", name);
    } else if (!strcmp(slot, "shape")) put_shape_attr(b, &a->shape);
    else if (!strcmp(slot, "perm")) put_ints(b, name, a->i, r);
    else if (!strcmp(slot, "start")) put_ints(b, name, a->i, a->shape.rank);
    else NNDC_ASSERT(!"ops.def: unknown attribute slot");
  }
}

static void put_loc(Buf *b, Loc l) {
  if (!l.src) return;
  const char *p = l.src->path, *slash = strrchr(p, '/');
  buf_printf(b, "  # %s:%d:%d", slash ? slash + 1 : p, l.line, l.col);
}

static void put_node(Buf *b, const Node *n) {
  char sb[128], ib[96];
  buf_printf(b, "%%%d = %s(", n->id, op_info[n->op].name);
  if (n->op == OP_CONST) buf_printf(b, "%g", n->a.f[0]);
  else if (op_info[n->op].flags & F_LEAF) buf_printf(b, "\"%s\"", n->name ? n->name : "");
  if (n->op == OP_PARAM) buf_printf(b, ", %s", init_name(&n->init, ib, sizeof ib));
  for (int k = 0; k < n->nin; k++) buf_printf(b, k ? ", %%%d" : "%%%d", n->in[k]->id);
  put_attrs(b, n);   /* every op with attributes has operands, so ", " reads right */
  buf_printf(b, ") : %s", shape_str(&n->shape, n->dt, sb, sizeof sb));
  put_loc(b, n->loc);
  buf_printf(b, "\n");
}

static void put_named(Buf *b, const char *role, const Named *v, int n) {
  for (int i = 0; i < n; i++)
    if (v[i].node) buf_printf(b, "%s %s = %%%d\n", role, v[i].name, v[i].node->id);
}

char *ir_print(const Graph *g, Arena *a) {
  Buf b = {0};
  for (int i = 0; i < g->nnodes; i++) put_node(&b, g->nodes[i]);
  put_named(&b, "output", g->outputs, g->noutputs);
  if (g->loss) buf_printf(&b, "loss = %%%d\n", g->loss->id);
  put_named(&b, "metric", g->metrics, g->nmetrics);
  for (int i = 0; g->grads && i < g->nparams; i++)
    if (g->grads[i]) buf_printf(&b, "grad %s = %%%d\n", g->params[i].name, g->grads[i]->id);
  for (int i = 0; g->input_grads && i < g->ninputs; i++)
    if (g->input_grads[i]) buf_printf(&b, "grad input %s = %%%d\n", g->inputs[i].name, g->input_grads[i]->id);
  for (int i = 0; g->updates && i < g->nupdates; i++)
    if (g->updates[i]) buf_printf(&b, "update %%%d\n", g->updates[i]->id);
  return finish(&b, a);
}

/* Node label text: op, name or attrs, shape; quotes escaped for DOT. */
static void put_dot_label(Buf *b, const Node *n) {
  char sb[128];
  buf_printf(b, "%%%d %s", n->id, op_info[n->op].name);
  if (n->name) {
    buf_printf(b, " ");
    for (const char *p = n->name; *p; p++) buf_printf(b, *p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
  }
  buf_printf(b, "\\n%s", shape_str(&n->shape, n->dt, sb, sizeof sb));
}

/* Role k (an output, the loss or a metric) as an ellipse fed by its node. */
static void put_dot_role(Buf *b, int k, const char *role, const char *name, const Node *n) {
  if (!n) return;
  buf_printf(b, "  r%d [shape=ellipse, label=\"%s%s%s\"];\n  n%d -> r%d;\n", k, role, name ? " " : "",
      name ? name : "", n->id, k);
}

char *ir_print_dot(const Graph *g, Arena *a) {
  Buf b = {0};
  buf_printf(&b, "digraph nndc {\n  node [shape=box, fontname=\"monospace\"];\n");
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    buf_printf(&b, "  n%d [label=\"", n->id);
    put_dot_label(&b, n);
    buf_printf(&b, "\"%s];\n", op_info[n->op].flags & F_LEAF ? ", style=rounded" : "");
    for (int k = 0; k < n->nin; k++) buf_printf(&b, "  n%d -> n%d;\n", n->in[k]->id, n->id);
  }
  int k = 0;
  for (int i = 0; i < g->noutputs; i++) put_dot_role(&b, k++, "output", g->outputs[i].name, g->outputs[i].node);
  put_dot_role(&b, k++, "loss", NULL, g->loss);
  for (int i = 0; i < g->nmetrics; i++) put_dot_role(&b, k++, "metric", g->metrics[i].name, g->metrics[i].node);
  buf_printf(&b, "}\n");
  return finish(&b, a);
}
