/* driver.c - a backend's way in: from the caller's tensor graph to a lowered,
 * planned kernel program, for the JIT (jit.c) and the C printer (c.c) alike.
 *
 * Contract: codegen_lower never changes the caller's graph, which the
 * reference interpreter keeps running as the oracle, and whose Node pointers
 * the caller keeps using to bind leaves and read roots.  It copies the graph
 * into the program's arena, optimizes the copy (passes_optimize_ex: simplify,
 * fuse), lowers it (lower.c) and plans its memory (plan.c), then re-indexes
 * the program's node_buf (and its hyperparameter slots) by the caller's node ids.
 */
#include "kir.h"
#include "../passes/passes.h"

static Node *mapped(Node *const *map, const Node *n) { return n ? map[n->id] : NULL; }

static Named *copy_named(Arena *a, const Named *v, int n, Node *const *map) {
  Named *c = arena_alloc(a, ((size_t)n + 1) * sizeof *c);
  for (int i = 0; i < n; i++) c[i].name = v[i].name, c[i].node = mapped(map, v[i].node);
  return c;
}

static Node **copy_nodes(Arena *a, Node *const *v, int n, Node *const *map) {
  if (!v) return NULL;
  Node **c = arena_alloc(a, ((size_t)n + 1) * sizeof *c);
  for (int i = 0; i < n; i++) c[i] = mapped(map, v[i]);
  return c;
}

/* A copy of g whose nodes live in a; map[id of g] receives each copy.
 * Names, attributes of leaves and symbols are shared with g. */
static Graph *graph_copy(Arena *a, const Graph *g, Node **map) {
  Graph *c = arena_alloc(a, sizeof *c);
  *c = *g;
  c->arena = a;
  c->cap = g->nnodes + 1;
  c->nodes = arena_alloc(a, (size_t)c->cap * sizeof *c->nodes);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    Node *m = arena_alloc(a, sizeof *m);
    *m = *n;
    m->in = arena_alloc(a, ((size_t)n->nin + 1) * sizeof *m->in);
    for (int j = 0; j < n->nin; j++) m->in[j] = map[n->in[j]->id];
    c->nodes[i] = map[i] = m;
  }
  c->inputs = copy_named(a, g->inputs, g->ninputs, map);
  c->params = copy_named(a, g->params, g->nparams, map);
  c->outputs = copy_named(a, g->outputs, g->noutputs, map);
  c->metrics = copy_named(a, g->metrics, g->nmetrics, map);
  c->states = copy_named(a, g->states, g->nstates, map);
  c->grads = copy_nodes(a, g->grads, g->nparams, map);
  c->input_grads = copy_nodes(a, g->input_grads, g->ninputs, map);
  c->updates = copy_nodes(a, g->updates, g->nupdates, map);
  c->loss = mapped(map, g->loss);
  c->fuse_group = NULL;
  return c;
}

KProgram *codegen_lower(Diag *d, Arena *a, const Graph *g, Node *const *roots, int nroots) {
  Node **map = arena_alloc(a, ((size_t)g->nnodes + 1) * sizeof *map);
  Graph *c = graph_copy(a, g, map);
  Node **cr = arena_alloc(a, ((size_t)nroots + 1) * sizeof *cr);
  for (int r = 0; r < nroots; r++) cr[r] = map[roots[r]->id];
  if (passes_optimize_ex(d, c, cr, nroots, map, g->nnodes)) return NULL;
  KProgram *p = lower_program(d, a, c, cr, nroots);
  if (!p) return NULL;
  plan_memory(p, cr, nroots);
  int *nb = arena_alloc(a, ((size_t)g->nnodes + 1) * sizeof *nb);
  for (int i = 0; i < g->nnodes; i++) nb[i] = map[i] ? p->node_buf[map[i]->id] : -1;
  p->node_buf = nb;
  for (int i = 0; i < g->nnodes; i++)   /* hyperparameter slots: by the caller's ids too */
    for (int k = 0; map[i] && k < p->nhyper; k++)
      if (p->hyper[k].node == map[i]) p->hyper[k].node_id = i;
  return p;
}
