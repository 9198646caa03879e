/* engine.c - one interface over the two ways to execute a graph: the
 * reference interpreter (ir/interp.c) and the JIT'ed program (codegen/). */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"
#include "../codegen/codegen.h"

struct Engine {
  EngineKind kind;
  Graph *g;
  Interp it;           /* ENGINE_INTERP */
  uint8_t *want;       /* [nnodes] nodes the interpreter computes */
  JitProgram *jit;     /* ENGINE_JIT */
};

Engine *engine_new(Diag *d, Graph *g, Node *const *roots, int nroots, const EngineOpts *o) {
  Engine *e = calloc(1, sizeof *e);
  if (!e) nndc_fatal(__FILE__, __LINE__, "out of memory");
  e->kind = o->kind;
  e->g = g;
  if (o->kind == ENGINE_JIT) {
    e->jit = jit_compile(d, g, roots, nroots, o->threads, o->profile);
    if (!e->jit) {
      free(e);
      return NULL;
    }
    return e;
  }
  interp_init(&e->it, g);
  e->want = calloc((size_t)g->nnodes + 1, 1);
  if (!e->want) nndc_fatal(__FILE__, __LINE__, "out of memory");
  ir_mark_deps(g, roots, nroots, e->want);
  return e;
}

void engine_bind(Engine *e, const Node *leaf, void *data) {
  if (e->jit) jit_bind(e->jit, leaf, data);
  else e->it.val[leaf->id] = data;
}

int engine_run(Engine *e, Diag *d, const RunCtx *ctx) {
  if (e->jit) return jit_run(e->jit, d, ctx);
  return interp_run(&e->it, d, e->want, ctx);
}

Engine *engine_clone(const Engine *o, int threads) {
  Engine *e = calloc(1, sizeof *e);
  if (!e) nndc_fatal(__FILE__, __LINE__, "out of memory");
  e->kind = o->kind;
  e->g = o->g;
  if (o->jit) {
    e->jit = jit_clone(o->jit, threads);
    return e;
  }
  interp_init(&e->it, e->g);
  e->want = malloc((size_t)e->g->nnodes + 1);
  if (!e->want) nndc_fatal(__FILE__, __LINE__, "out of memory");
  memcpy(e->want, o->want, (size_t)e->g->nnodes + 1);
  return e;
}

/* The interpreter reads the update nodes' attrs: set them there. */
static int interp_set_hyper(Graph *g, const Node *upd, const char *name, double v) {
  int set = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < g->nnodes; i++) {
      Node *n = g->nodes[i];
      if (!(op_info[n->op].flags & F_UPDATE) || n->op == OP_RUNNING_STATS || (upd && n != upd)) continue;
      char an[32];
      for (int k = 0; !op_attr_name(n->op, k, an, sizeof an); k++) {
        if (strcmp(an, name)) continue;
        int structural = !strcmp(an, "momentum") || !strcmp(an, "weight_decay");
        if (!pass && structural && (n->a.f[k] == 0) != (v == 0)) return -1;
        if (pass) n->a.f[k] = v, set++;
      }
    }
  return set;
}

int engine_set_hyper(Engine *e, const Node *upd, const char *name, double v) {
  return e->jit ? jit_set_hyper(e->jit, upd, name, v) : interp_set_hyper(e->g, upd, name, v);
}

void engine_set_part(Engine *e, int64_t part) {
  if (e->jit) jit_set_part(e->jit, part);
  else e->it.part = part;
}

void engine_set_hook(Engine *e, void (*after)(void *user, int kernel), void *user) {
  if (e->jit) jit_set_hook(e->jit, after, user);
}

int engine_ready_after(Engine *e, const Node *n) { return e->jit ? jit_last_writer(e->jit, n) : -1; }

void *engine_value(Engine *e, const Node *n) {
  if (e->jit) return jit_value(e->jit, n);
  return e->it.val[n->id];
}

const KernelProf *engine_profile(Engine *e, int *n) {
  if (e->jit) return jit_profile(e->jit, n);
  *n = 0;
  return NULL;
}

double engine_compile_seconds(Engine *e) { return e->jit ? jit_compile_seconds(e->jit) : 0; }
size_t engine_peak_bytes(Engine *e) { return e->jit ? jit_peak_bytes(e->jit) : 0; }

void engine_free(Engine *e) {
  if (!e) return;
  if (e->jit) jit_free(e->jit);
  else {
    interp_free(&e->it);
    free(e->want);
  }
  free(e);
}
