/* api.c - the public embedding API (include/nndc.h) over the library: the
 * top layer, above every stage (it drives frontend, passes and runtime), so
 * it lives beside include/ at the root rather than in any stage's folder.
 *
 * A model handle owns one arena holding the forward graph (training = 0) and,
 * with options.training, the training graph (training = 1, after
 * pass_autodiff and pass_optim); the ModelState (params and optimizer state,
 * shared by both graphs: they declare the same params in the same order);
 * and the engines, compiled lazily on the first run.  The forward engine is
 * rebuilt when the set of computable roots changes (which inputs are bound).
 * Every error goes to the handle's Diag; nothing prints or exits.
 */
#include <stdlib.h>
#include <string.h>
#include "nndc.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/runtime.h"

struct nndc_model {
  Arena a;
  Diag d;
  int ok;
  Graph g, tg;         /* forward; training step when has_train */
  int has_train;
  EngineOpts eo;
  ModelState ms;       /* params (and states) of tg when has_train, else of g */
  void **bound;        /* [ninputs] caller data, NULL until bound */
  Engine *fwd, *trn;
  Node **roots;        /* roots of fwd */
  int nroots;
  int last;            /* 0 none yet, 1 forward, 2 training step */
};

static nndc_model *model_new(const nndc_options *o) {
  nndc_model *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  arena_init(&m->a);
  diag_init(&m->d);
  graph_init(&m->g, &m->a);
  graph_init(&m->tg, &m->a);
  nndc_options none = {0};
  if (!o) o = &none;
  m->eo.kind = o->engine == NNDC_ENGINE_INTERP ? ENGINE_INTERP : ENGINE_JIT;
  m->eo.threads = o->threads > 0 ? o->threads : 0;
  m->has_train = o->training != 0;
  return m;
}

static Define *defines(nndc_model *m, const nndc_options *o) {
  if (!o || o->ndefines <= 0) return NULL;
  Define *d = arena_alloc(&m->a, (size_t)o->ndefines * sizeof *d);
  for (int i = 0; i < o->ndefines; i++) {
    d[i].name = arena_strdup(&m->a, o->defines[i].name ? o->defines[i].name : "");
    d[i].value = o->defines[i].value;
    d[i].is_int = d[i].value == (double)(int64_t)d[i].value;
  }
  return d;
}

/* Builds both graphs (path and text: text NULL reads the file) and the state. */
static nndc_model *compile(const char *path, const char *text, const nndc_options *o) {
  nndc_model *m = model_new(o);
  if (!m) return NULL;
  if (!path) path = "<string>";
  Define *defs = defines(m, o);
  int nd = o && o->ndefines > 0 ? o->ndefines : 0;
  BuildOpts fo = {defs, nd, NULL, 0, 0, 0}, to = {defs, nd, NULL, 0, 1, 0};
  int rc = text ? fe_compile_string(&m->d, &m->g, path, text, &fo) : fe_compile_file(&m->d, &m->g, path, &fo);
  if (!rc && m->has_train) {
    rc = text ? fe_compile_string(&m->d, &m->tg, path, text, &to) : fe_compile_file(&m->d, &m->tg, path, &to);
    if (!rc && !m->tg.loss) {
      diag_error(&m->d, (Loc){0}, "training needs a model with a loss");
      rc = -1;
    }
    if (!rc) rc = pass_autodiff(&m->d, &m->tg) || pass_optim(&m->d, &m->tg) ? -1 : 0;
  }
  if (rc) return m;
  Graph *sg = m->has_train ? &m->tg : &m->g;
  if (o && o->has_seed) m->g.train.seed = m->tg.train.seed = o->seed;
  if (model_state_init(&m->d, sg, &m->ms, sg->train.seed)) return m;
  m->bound = calloc((size_t)m->g.ninputs + 1, sizeof *m->bound);
  if (!m->bound) nndc_fatal(__FILE__, __LINE__, "out of memory");
  m->ok = 1;
  return m;
}

nndc_model *nndc_compile_file(const char *path, const nndc_options *o) { return compile(path, NULL, o); }

nndc_model *nndc_compile_string(const char *name, const char *text, const nndc_options *o) {
  return compile(name, text ? text : "", o);
}

int nndc_ok(const nndc_model *m) { return m && m->ok; }
const char *nndc_errors(const nndc_model *m) { return m && m->d.buf ? m->d.buf : ""; }

void nndc_free(nndc_model *m) {
  if (!m) return;
  engine_free(m->fwd);
  engine_free(m->trn);
  if (m->ok) model_state_free(m->has_train ? &m->tg : &m->g, &m->ms);
  free(m->bound);
  free(m->roots);
  diag_free(&m->d);
  arena_free(&m->a);
  free(m);
}

/* A usable model, or -1 with an error saying why not. */
static int usable(nndc_model *m) {
  if (!m) return -1;
  if (m->ok) return 0;
  diag_error(&m->d, (Loc){0}, "the model did not compile");
  return -1;
}

static void info_of(const Node *n, nndc_tensor_info *info) {
  if (!info) return;
  memset(info, 0, sizeof *info);
  info->dtype = n->dt == DT_I32 ? NNDC_I32 : NNDC_F32;
  info->rank = n->shape.rank;
  for (int k = 0; k < n->shape.rank && k < NNDC_MAX_RANK; k++) info->dims[k] = n->shape.dim[k];
  info->numel = shape_numel(&n->shape);
}

static int find(const Named *v, int n, const char *name) {
  for (int i = 0; name && i < n; i++)
    if (!strcmp(v[i].name, name)) return i;
  return -1;
}

/* ----------------------------------------------------------------- inputs */

int nndc_input_count(const nndc_model *m) { return m && m->ok ? m->g.ninputs : 0; }

const char *nndc_input_name(const nndc_model *m, int i) {
  return m && m->ok && i >= 0 && i < m->g.ninputs ? m->g.inputs[i].name : NULL;
}

int nndc_input_info(const nndc_model *m, int i, nndc_tensor_info *info) {
  if (!m || !m->ok || i < 0 || i >= m->g.ninputs) return -1;
  info_of(m->g.inputs[i].node, info);
  return 0;
}

int nndc_bind_input(nndc_model *m, const char *name, const void *data) {
  if (usable(m)) return -1;
  int i = find(m->g.inputs, m->g.ninputs, name);
  if (i < 0) {
    diag_error(&m->d, (Loc){0}, "the model has no input named '%s'", name ? name : "(null)");
    return -1;
  }
  m->bound[i] = (void *)data;
  return 0;
}

/* ----------------------------------------------------------------- params */

int nndc_param_count(const nndc_model *m) { return m && m->ok ? m->g.nparams : 0; }

const char *nndc_param_name(const nndc_model *m, int i) {
  return m && m->ok && i >= 0 && i < m->g.nparams ? m->g.params[i].name : NULL;
}

float *nndc_param(nndc_model *m, const char *name, nndc_tensor_info *info) {
  if (usable(m)) return NULL;
  int i = find(m->g.params, m->g.nparams, name);
  if (i < 0) {
    diag_error(&m->d, (Loc){0}, "the model has no param named '%s'", name ? name : "(null)");
    return NULL;
  }
  info_of(m->g.params[i].node, info);
  return m->ms.params[i];
}

int nndc_load_params(nndc_model *m, const char *path) {
  if (usable(m)) return -1;
  return ckpt_load(&m->d, path, &m->g, m->ms.params) ? -1 : 0;
}

int nndc_save_params(nndc_model *m, const char *path) {
  if (usable(m)) return -1;
  return ckpt_save(&m->d, path, &m->g, m->ms.params) ? -1 : 0;
}

/* ------------------------------------------------------------------- runs */

static int out_roots(const Graph *g, Node **r) {
  int n = 0;
  for (int i = 0; i < g->noutputs; i++) r[n++] = g->outputs[i].node;
  if (g->loss) r[n++] = g->loss;
  for (int i = 0; i < g->nmetrics; i++) r[n++] = g->metrics[i].node;
  return n;
}

/* Whether every input node n depends on is bound. */
static int computable(nndc_model *m, const Graph *g, Node *n) {
  uint8_t *mask = calloc((size_t)g->nnodes + 1, 1);
  if (!mask) nndc_fatal(__FILE__, __LINE__, "out of memory");
  ir_mark_deps(g, &n, 1, mask);
  int ok = 1;
  for (int i = 0; i < g->ninputs; i++)
    if (mask[g->inputs[i].node->id] && !m->bound[i]) ok = 0;
  free(mask);
  return ok;
}

static void bind_all(nndc_model *m, Engine *e, const Graph *g, Node **roots, int nroots) {
  uint8_t *mask = calloc((size_t)g->nnodes + 1, 1);
  if (!mask) nndc_fatal(__FILE__, __LINE__, "out of memory");
  ir_mark_deps(g, roots, nroots, mask);
  for (int i = 0; i < g->nparams; i++) engine_bind(e, g->params[i].node, m->ms.params[i]);
  for (int i = 0; i < g->nstates; i++) engine_bind(e, g->states[i].node, m->ms.states[i]);
  for (int i = 0; i < g->ninputs; i++)
    if (mask[g->inputs[i].node->id]) engine_bind(e, g->inputs[i].node, m->bound[i]);
  free(mask);
}

int nndc_forward(nndc_model *m) {
  if (usable(m)) return -1;
  const Graph *g = &m->g;
  size_t cap = (size_t)(g->noutputs + g->nmetrics + 2);
  Node **want = calloc(cap, sizeof *want), **all = calloc(cap, sizeof *all);
  if (!want || !all) nndc_fatal(__FILE__, __LINE__, "out of memory");
  int n = 0, nall = out_roots(g, all);
  for (int i = 0; i < nall; i++)
    if (computable(m, g, all[i])) want[n++] = all[i];
  free(all);
  if (n == 0) {
    free(want);
    diag_error(&m->d, (Loc){0}, "nothing to compute: every output, loss and metric needs an input that is not bound");
    return -1;
  }
  if (!m->fwd || n != m->nroots || memcmp(want, m->roots, (size_t)n * sizeof *want)) {
    engine_free(m->fwd);
    free(m->roots);
    m->roots = want;
    m->nroots = n;
    m->fwd = engine_new(&m->d, &m->g, want, n, &m->eo);
    if (!m->fwd) {
      m->nroots = 0;
      return -1;
    }
  } else free(want);
  bind_all(m, m->fwd, g, m->roots, m->nroots);
  RunCtx ctx = {g->train.seed, m->ms.step + 1, 0};
  m->last = 0;
  if (engine_run(m->fwd, &m->d, &ctx)) return -1;
  m->last = 1;
  return 0;
}

int nndc_train_step(nndc_model *m) {
  if (usable(m)) return -1;
  Graph *tg = &m->tg;
  if (!m->has_train) {
    diag_error(&m->d, (Loc){0}, "nndc_train_step needs a model compiled with options.training = 1");
    return -1;
  }
  for (int i = 0; i < tg->ninputs; i++)
    if (!m->bound[i]) {
      diag_error(&m->d, (Loc){0}, "nndc_train_step: input '%s' is not bound", tg->inputs[i].name);
      return -1;
    }
  if (!m->trn) {
    Node **roots = arena_alloc(&m->a, (size_t)(tg->noutputs + tg->nmetrics + tg->nupdates + 2) * sizeof *roots);
    int n = out_roots(tg, roots);
    for (int i = 0; i < tg->nupdates; i++) roots[n++] = tg->updates[i];
    m->trn = engine_new(&m->d, tg, roots, n, &m->eo);
    if (!m->trn) return -1;
  }
  for (int i = 0; i < tg->nparams; i++) engine_bind(m->trn, tg->params[i].node, m->ms.params[i]);
  for (int i = 0; i < tg->nstates; i++) engine_bind(m->trn, tg->states[i].node, m->ms.states[i]);
  for (int i = 0; i < tg->ninputs; i++) engine_bind(m->trn, tg->inputs[i].node, m->bound[i]);
  RunCtx ctx = {tg->train.seed, m->ms.step + 1, 1};
  m->last = 0;
  if (engine_run(m->trn, &m->d, &ctx)) return -1;
  m->ms.step++;
  m->last = 2;
  return 0;
}

int64_t nndc_steps(const nndc_model *m) { return m && m->ok ? m->ms.step : 0; }

/* The output, loss or metric called name in g, or NULL. */
static Node *result_named(const Graph *g, const char *name) {
  if (!name) return NULL;
  if (!strcmp(name, "loss")) return g->loss;
  int i = find(g->outputs, g->noutputs, name);
  if (i >= 0) return g->outputs[i].node;
  i = find(g->metrics, g->nmetrics, name);
  return i >= 0 ? g->metrics[i].node : NULL;
}

const void *nndc_output(nndc_model *m, const char *name, nndc_tensor_info *info) {
  if (usable(m)) return NULL;
  if (!m->last) {
    diag_error(&m->d, (Loc){0}, "nndc_output: no forward pass or training step has run");
    return NULL;
  }
  Node *n = result_named(m->last == 2 ? &m->tg : &m->g, name);
  if (!n) {
    diag_error(&m->d, (Loc){0}, "the model has no output, loss or metric named '%s'", name ? name : "(null)");
    return NULL;
  }
  if (m->last == 1) {
    int found = 0;
    for (int i = 0; i < m->nroots; i++) found |= m->roots[i] == n;
    if (!found) {
      diag_error(&m->d, (Loc){0}, "'%s' was not computed: it needs an input that is not bound", name);
      return NULL;
    }
  }
  info_of(n, info);
  return engine_value(m->last == 2 ? m->trn : m->fwd, n);
}
