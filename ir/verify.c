/* verify.c - the graph invariant checker, run after every pass in debug
 * builds and by the tests.
 *
 * Checks, for every node: its id is its index; its operands exist and come
 * before it (topological order); the operand count matches ops.def; leaves
 * that need a name have one; and re-running the shape rule of ir_op
 * (ir_infer, which also checks dtypes) gives exactly the node's dtype and
 * shape.  Graph roles (outputs, loss, metrics, grads, updates) must be nodes
 * of the graph.  Reports each problem and returns how many were found.
 */
#include <string.h>
#include "ir.h"

static int check_operands(const Graph *g, Diag *d, const Node *n) {
  int nin = op_info[n->op].nin;
  if (nin >= 0 ? n->nin != nin : n->nin < 1) {
    diag_error(d, n->loc, "verify: %%%d %s has %d operands, expected %d", n->id, op_info[n->op].name, n->nin, nin);
    return 1;
  }
  for (int k = 0; k < n->nin; k++) {
    const Node *x = n->in[k];
    if (!x || x->id < 0 || x->id >= n->id || g->nodes[x->id] != x) {
      diag_error(d, n->loc, "verify: operand %d of %%%d %s does not precede it", k, n->id, op_info[n->op].name);
      return 1;
    }
  }
  return 0;
}

/* Re-infers the node silently, then again with d to get the message. */
static int check_shape(Diag *d, const Node *n) {
  Attr a = n->a;
  DType dt;
  Shape s;
  char b1[128], b2[128];
  if (ir_infer(NULL, n->loc, n->op, n->in, n->nin, &a, &dt, &s)) {
    diag_error(d, n->loc, "verify: %%%d %s is ill-typed:", n->id, op_info[n->op].name);
    ir_infer(d, n->loc, n->op, n->in, n->nin, &a, &dt, &s);
    return 1;
  }
  if (n->op != OP_INPUT && n->op != OP_PARAM && n->op != OP_STATE && n->op != OP_CONST) {
    if (dt != n->dt || !shape_eq(&s, &n->shape)) {
      diag_error(d, n->loc, "verify: %%%d %s has type %s, its operands give %s", n->id, op_info[n->op].name,
                 shape_str(&n->shape, n->dt, b1, sizeof b1), shape_str(&s, dt, b2, sizeof b2));
      return 1;
    }
  }
  return 0;
}

static int check_leaf(Diag *d, const Node *n) {
  if (n->op == OP_CONST) {
    if (n->dt != DT_F32) {
      diag_error(d, n->loc, "verify: %%%d const must be f32", n->id);
      return 1;
    }
    return 0;
  }
  if (!n->name || !*n->name) {
    diag_error(d, n->loc, "verify: %%%d %s has no name", n->id, op_info[n->op].name);
    return 1;
  }
  if (n->op != OP_INPUT && n->dt != DT_F32) {
    diag_error(d, n->loc, "verify: %s '%s' must be f32", op_info[n->op].name, n->name);
    return 1;
  }
  return 0;
}

static int check_node(const Graph *g, Diag *d, int i) {
  const Node *n = g->nodes[i];
  Loc none = {0};
  if (!n || n->id != i) {
    diag_error(d, n ? n->loc : none, "verify: node at index %d has id %d", i, n ? n->id : -1);
    return 1;
  }
  if ((int)n->op < 0 || n->op >= OP_COUNT) {
    diag_error(d, n->loc, "verify: %%%d has invalid op %d", i, (int)n->op);
    return 1;
  }
  if (check_operands(g, d, n)) return 1;
  if ((op_info[n->op].flags & F_LEAF) && check_leaf(d, n)) return 1;
  return check_shape(d, n);
}

static int check_root(const Graph *g, Diag *d, const char *role, const Node *n) {
  Loc none = {0};
  if (n && (n->id < 0 || n->id >= g->nnodes || g->nodes[n->id] != n)) {
    diag_error(d, none, "verify: %s is not a node of the graph", role);
    return 1;
  }
  return 0;
}

static int check_roles(const Graph *g, Diag *d) {
  int bad = 0;
  for (int i = 0; i < g->ninputs; i++) bad += check_root(g, d, "an input", g->inputs[i].node);
  for (int i = 0; i < g->nparams; i++) bad += check_root(g, d, "a param", g->params[i].node);
  for (int i = 0; i < g->noutputs; i++) bad += check_root(g, d, "an output", g->outputs[i].node);
  bad += check_root(g, d, "the loss", g->loss);
  if (g->loss && (g->loss->shape.rank != 0 || g->loss->dt != DT_F32)) {
    diag_error(d, g->loss->loc, "verify: the loss must be an f32 scalar");
    bad++;
  }
  for (int i = 0; i < g->nmetrics; i++) bad += check_root(g, d, "a metric", g->metrics[i].node);
  for (int i = 0; g->grads && i < g->nparams; i++) bad += check_root(g, d, "a gradient", g->grads[i]);
  for (int i = 0; g->input_grads && i < g->ninputs; i++)
    if (g->input_grads[i]) bad += check_root(g, d, "an input's gradient", g->input_grads[i]);
  for (int i = 0; i < g->nstates; i++) bad += check_root(g, d, "a state", g->states[i].node);
  for (int i = 0; i < g->nupdates; i++) bad += check_root(g, d, "an update", g->updates[i]);
  return bad;
}

int ir_verify(const Graph *g, Diag *d) {
  int bad = 0;
  for (int i = 0; i < g->nnodes; i++) bad += check_node(g, d, i);
  return bad + check_roles(g, d);
}
