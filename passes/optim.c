/* optim.c - the optimizer step as graph ops.
 *
 * For every param p (with gradient g->grads[i] from pass_autodiff) this adds
 * the optimizer's state buffers as STATE leaves named "<p>.<slot>" (zero
 * initialised by the runtime, kept across steps, listed in g->states) and one
 * OPT_* update node (operands: p, grad, states...; attrs as ops.def lists),
 * listed in g->updates (after batch_norm's RUNNING_STATS updates, which sema
 * lists there; its running statistics get no optimizer).  The update rules themselves (torch.optim 1.13) are
 * the reference kernels in ir/interp_update.c and their lowerings.  A frozen
 * param (not in the graph's train step, spec 8) gets no update and no state.
 *
 * An output, metric or loss that is a param, or a reshape of one, would
 * alias the param's buffer, which its update writes in place: it becomes a
 * copy made before the updates (float() of an f32 tensor is one), so every
 * engine returns the values of the batch before the update (nndc.h).
 *
 * pass_optim_split (data-parallel training, runtime/train.c) differs in one
 * thing: each update reads its gradient from a STATE leaf "<p>.grad" that is
 * not in g->states, so the runtime can compute g->grads, combine them across
 * processes, bind the leaves to the result and then run the updates.
 *
 * Requires: pass_autodiff.  Preserves every existing node.
 */
#include <string.h>
#include "passes.h"

/* Slot names per optimizer, in operand order after (p, grad). */
static const char *const sgd_slots[] = {"momentum_buffer", NULL};
static const char *const adam_slots[] = {"exp_avg", "exp_avg_sq", NULL};
static const char *const rmsprop_slots[] = {"square_avg", "momentum_buffer", NULL};
static const char *const adagrad_slots[] = {"sum", NULL};

static const char *const *slots_of(OptimKind k) {
  switch (k) {
  case OPTIM_SGD: return sgd_slots;
  case OPTIM_ADAM: case OPTIM_ADAMW: return adam_slots;
  case OPTIM_RMSPROP: return rmsprop_slots;
  case OPTIM_ADAGRAD: return adagrad_slots;
  }
  return NULL;
}

static Op op_of(OptimKind k) {
  switch (k) {
  case OPTIM_SGD: return OP_OPT_SGD;
  case OPTIM_ADAM: case OPTIM_ADAMW: return OP_OPT_ADAM;
  case OPTIM_RMSPROP: return OP_OPT_RMSPROP;
  case OPTIM_ADAGRAD: return OP_OPT_ADAGRAD;
  }
  return OP_COUNT;
}

/* The update node's attrs, in the order ops.def lists them. */
static Attr optim_attr(const OptimCfg *o) {
  Attr a;
  memset(&a, 0, sizeof a);
  switch (o->kind) {
  case OPTIM_SGD:
    a.f[0] = o->lr, a.f[1] = o->momentum, a.f[2] = o->weight_decay;
    a.i[0] = o->nesterov;
    break;
  case OPTIM_ADAM: case OPTIM_ADAMW:
    a.f[0] = o->lr, a.f[1] = o->beta1, a.f[2] = o->beta2, a.f[3] = o->eps, a.f[4] = o->weight_decay;
    a.i[0] = o->kind == OPTIM_ADAMW;
    break;
  case OPTIM_RMSPROP:
    a.f[0] = o->lr, a.f[1] = o->alpha, a.f[2] = o->eps, a.f[3] = o->momentum, a.f[4] = o->weight_decay;
    break;
  case OPTIM_ADAGRAD:
    a.f[0] = o->lr, a.f[1] = o->eps, a.f[2] = o->weight_decay;
    break;
  }
  return a;
}

/* Grows an arena array of n elements of size sz to n + 1 (arena: copy). */
static void *grow(Arena *a, void *old, int n, size_t sz) {
  void *p = arena_alloc(a, sz * (size_t)(n + 1));
  if (n) memcpy(p, old, sz * (size_t)n);
  return p;
}

static Node *add_state(Graph *g, Node *p, const char *slot) {
  char *name = arena_printf(g->arena, "%s.%s", p->name ? p->name : "param", slot);
  Node *s = ir_leaf(g, p->loc, OP_STATE, DT_F32, &p->shape, name);
  g->states = grow(g->arena, g->states, g->nstates, sizeof *g->states);
  g->states[g->nstates++] = (Named){s->name, s};
  return s;
}

static void add_update(Graph *g, int i, const Attr *a, int split) {
  Node *p = g->params[i].node;
  Node *in[2 + 2] = {p, g->grads[i]};
  if (split)   /* a leaf the runtime binds to the combined gradient; not optimizer state */
    in[1] = ir_leaf(g, p->loc, OP_STATE, DT_F32, &p->shape,
                    arena_printf(g->arena, "%s.grad", p->name ? p->name : "param"));
  const char *const *slot = slots_of(g->train.opt.kind);
  int nin = 2;
  for (; *slot; slot++) in[nin++] = add_state(g, p, *slot);
  Node *u = ir_build(g, op_of(g->train.opt.kind), in, nin, a, p->loc);
  graph_add_update(g, u);
}

static Node *before_update(Graph *g, Node *n) {
  const Node *x = n;
  while (x->op == OP_RESHAPE) x = x->in[0];
  return x->op == OP_PARAM ? ir_un(g, OP_CAST, n) : n;
}

static int optim(Diag *d, Graph *g, int split) {
  Loc none = {0};
  if (!g->grads && g->nparams > 0) {
    diag_error(d, none, "pass_optim needs the gradients of pass_autodiff");
    return -1;
  }
  if (!slots_of(g->train.opt.kind)) {
    diag_error(d, none, "unknown optimizer kind %d", (int)g->train.opt.kind);
    return -1;
  }
  /* the copies first: kernels run in node order */
  for (int i = 0; i < g->noutputs; i++) g->outputs[i].node = before_update(g, g->outputs[i].node);
  for (int i = 0; i < g->nmetrics; i++) g->metrics[i].node = before_update(g, g->metrics[i].node);
  if (g->loss) g->loss = before_update(g, g->loss);
  Attr a = optim_attr(&g->train.opt);
  for (int i = 0; i < g->nparams; i++)
    if (!g->params[i].node->running && !g->params[i].node->frozen) add_update(g, i, &a, split);
  return 0;
}

int pass_optim(Diag *d, Graph *g) { return optim(d, g, 0); }
int pass_optim_split(Diag *d, Graph *g) { return optim(d, g, 1); }
