/* test_optim.c - optimizer updates as graph ops, against torch.optim 1.13.
 *
 * For each optimizer configuration of tests/golden/gen_optim.py (same table,
 * same order) the graph loss = sum(w * G) makes d loss/d w = G exactly; G is
 * fed the committed gradient of each step, pass_autodiff + pass_optim add the
 * update, the reference interpreter runs steps 1..4, and the param and the
 * optimizer state after every step must match torch's to 2 ulp (the
 * reference kernels in fact reproduce torch bit for bit).  The JIT runs the
 * same steps with its optimizer options as run-time values: a program
 * compiled with other options and then given the case's (engine_set_hyper,
 * on a clone too) must equal the program compiled with the case's bit for
 * bit, and torch to a few ulp.  Also a forward and backward golden of a tiny
 * MLP against torch autograd.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "util.h"

#define GOLD NNDC_SRC_DIR "/tests/golden/optim/"
#define STEPS 4

typedef struct Case {
  const char *name;
  OptimCfg o;  /* kind, lr, momentum, beta1, beta2, eps, alpha, weight_decay; nesterov */
} Case;

/* Must match CASES in gen_optim.py (unset torch defaults spelled out). */
static const Case cases[] = {
  {"sgd_plain", {OPTIM_SGD, 0.1, 0, 0, 0, 0, 0, 0, 0}},
  {"sgd_momentum", {OPTIM_SGD, 0.1, 0.9, 0, 0, 0, 0, 0, 0}},
  {"sgd_nesterov", {OPTIM_SGD, 0.1, 0.9, 0, 0, 0, 0, 0, 1}},
  {"sgd_wd", {OPTIM_SGD, 0.1, 0, 0, 0, 0, 0, 0.01, 0}},
  {"sgd_momentum_wd", {OPTIM_SGD, 0.05, 0.5, 0, 0, 0, 0, 0.1, 0}},
  {"adam", {OPTIM_ADAM, 0.01, 0, 0.9, 0.999, 1e-8, 0, 0, 0}},
  {"adam_wd", {OPTIM_ADAM, 0.01, 0, 0.8, 0.9, 1e-6, 0, 0.1, 0}},
  {"adamw", {OPTIM_ADAMW, 0.01, 0, 0.9, 0.999, 1e-8, 0, 0.1, 0}},
  {"rmsprop", {OPTIM_RMSPROP, 0.01, 0, 0, 0, 1e-8, 0.99, 0, 0}},
  {"rmsprop_momentum", {OPTIM_RMSPROP, 0.01, 0.9, 0, 0, 1e-8, 0.99, 0, 0}},
  {"rmsprop_wd", {OPTIM_RMSPROP, 0.02, 0.5, 0, 0, 1e-6, 0.9, 0.1, 0}},
  {"adagrad", {OPTIM_ADAGRAD, 0.1, 0, 0, 0, 1e-10, 0, 0, 0}},
  {"adagrad_wd", {OPTIM_ADAGRAD, 0.1, 0, 0, 0, 1e-6, 0, 0.1, 0}},
};

static float *load(const char *name, int64_t want_numel) {
  Diag d;
  Array a;
  char path[512];
  diag_init(&d);
  snprintf(path, sizeof path, "%s%s.npy", GOLD, name);
  cr_assert_eq(npy_read(&d, path, &a), 0, "%s", d.buf ? d.buf : path);
  cr_assert_eq(shape_numel(&a.shape), want_numel, "%s: %lld elements", name,
               (long long)shape_numel(&a.shape));
  diag_free(&d);
  return a.data;
}

static int exists(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s%s.npy", GOLD, name);
  return access(path, R_OK) == 0;
}

static Node *leaf(Graph *g, Op op, Shape s, const char *name) {
  return ir_leaf(g, (Loc){0}, op, DT_F32, &s, name);
}

static void set_params(Graph *g, Node **p, int n) {
  g->params = arena_alloc(g->arena, sizeof(Named) * (size_t)n);
  for (int i = 0; i < n; i++) g->params[i] = (Named){p[i]->name, p[i]};
  g->nparams = n;
}

static Node *sum_all(Graph *g, Node *x) {
  Attr a;
  memset(&a, 0, sizeof a);
  return ir_build(g, OP_SUM, &x, 1, &a, (Loc){0});
}

static Node *case_graph(Graph *g, Arena *a, const OptimCfg *o, Node **gin);

static void run_case(const Case *c) {
  Arena arena;
  Graph g;
  Diag d;
  arena_init(&arena);
  diag_init(&d);
  Shape s = {2, {2, 3}};
  Node *gin, *w = case_graph(&g, &arena, &c->o, &gin);
  cr_assert_eq(g.nupdates, 1);
  cr_assert_eq(ir_verify(&g, &d), 0, "%s", d.buf ? d.buf : "");

  float *p = load("p0", 6), *grads = load("grads", STEPS * 6);
  float *p_want = load(arena_printf(&arena, "%s.p", c->name), STEPS * 6);
  float *st[4] = {0}, *st_want[4] = {0};
  for (int k = 0; k < g.nstates; k++) {
    cr_assert(shape_eq(&g.states[k].node->shape, &s));
    st[k] = calloc(6, sizeof(float));
    const char *gold = arena_printf(&arena, "%s.%s", c->name, g.states[k].name + 2); /* skip "w." */
    if (exists(gold)) st_want[k] = load(gold, STEPS * 6);
  }
  for (int step = 1; step <= STEPS; step++) {
    Interp it;
    interp_init(&it, &g);
    it.val[w->id] = p;
    it.val[gin->id] = grads + (step - 1) * 6;
    for (int k = 0; k < g.nstates; k++) it.val[g.states[k].node->id] = st[k];
    uint8_t *want = calloc((size_t)g.nnodes, 1);
    ir_mark_deps(&g, g.updates, g.nupdates, want);
    RunCtx ctx = {0, step, 1};
    cr_assert_eq(interp_run(&it, &d, want, &ctx), 0, "%s", d.buf ? d.buf : "");
    free(want);
    interp_free(&it);
    char label[96];
    snprintf(label, sizeof label, "%s step %d param", c->name, step);
    cr_expect(util_compare(label, p, p_want + (step - 1) * 6, 6, 1e-30, 2.5e-7) <= 1, "%s", label);
    for (int k = 0; k < g.nstates; k++) {
      if (!st_want[k]) continue;
      snprintf(label, sizeof label, "%s step %d %s", c->name, step, g.states[k].name);
      cr_expect(util_compare(label, st[k], st_want[k] + (step - 1) * 6, 6, 1e-30, 2.5e-7) <= 1, "%s", label);
    }
  }
  for (int k = 0; k < g.nstates; k++) {
    free(st[k]);
    free(st_want[k]);
  }
  free(p);
  free(grads);
  free(p_want);
  diag_free(&d);
  arena_free(&arena);
}

/* The case's graph (loss sum(w * G)) with optimizer o, after pass_optim. */
static Node *case_graph(Graph *g, Arena *a, const OptimCfg *o, Node **gin) {
  Diag d;
  diag_init(&d);
  graph_init(g, a);
  Shape s = {2, {2, 3}};
  Node *w = leaf(g, OP_PARAM, s, "w");
  *gin = leaf(g, OP_INPUT, s, "G");
  set_params(g, &w, 1);
  g->loss = sum_all(g, ir_bin(g, OP_MUL, w, *gin));
  g->train.opt = *o;
  cr_assert_eq(pass_autodiff(&d, g), 0);
  cr_assert_eq(pass_optim(&d, g), 0, "%s", d.buf ? d.buf : "");
  diag_free(&d);
  return w;
}

/* STEPS steps of engine e from the committed p0 and grads; the params after each into out[STEPS * 6]. */
static void jit_steps(Graph *g, Engine *e, Node *w, Node *gin, float *out) {
  Diag d;
  diag_init(&d);
  float *p = load("p0", 6), *grads = load("grads", STEPS * 6), *st[4] = {0};
  engine_bind(e, w, p);
  for (int k = 0; k < g->nstates; k++) engine_bind(e, g->states[k].node, st[k] = calloc(6, sizeof(float)));
  for (int step = 1; step <= STEPS; step++) {
    engine_bind(e, gin, grads + (step - 1) * 6);
    RunCtx ctx = {0, step, 1};
    cr_assert_eq(engine_run(e, &d, &ctx), 0, "%s", d.buf ? d.buf : "");
    memcpy(out + (step - 1) * 6, p, 6 * sizeof(float));
  }
  for (int k = 0; k < g->nstates; k++) free(st[k]);
  free(p);
  free(grads);
  diag_free(&d);
}

/* Other options of the same structure (zero where c's are zero). */
static OptimCfg perturbed(const OptimCfg *c) {
  OptimCfg o = *c;
  o.lr *= 3, o.beta1 = 0.5, o.beta2 = 0.6, o.eps *= 10, o.alpha = 0.5;
  if (o.momentum != 0) o.momentum = 0.3;
  if (o.weight_decay != 0) o.weight_decay = 0.7;
  return o;
}

static void set_options(Engine *e, const OptimCfg *o) {
  static const char *const names[] = {"lr", "momentum", "beta1", "beta2", "eps", "alpha", "weight_decay"};
  const double v[] = {o->lr, o->momentum, o->beta1, o->beta2, o->eps, o->alpha, o->weight_decay};
  int set = 0;
  for (int k = 0; k < 7; k++) {
    int n = engine_set_hyper(e, NULL, names[k], v[k]);
    cr_assert_geq(n, 0, "%s", names[k]);
    set += n;
  }
  cr_expect_gt(set, 0);
}

static void jit_case(const Case *c) {
  Arena a1, a2;
  arena_init(&a1);
  arena_init(&a2);
  Graph g1, g2;
  Node *gin1, *gin2;
  OptimCfg other = perturbed(&c->o);
  Node *w1 = case_graph(&g1, &a1, &c->o, &gin1), *w2 = case_graph(&g2, &a2, &other, &gin2);
  Diag d;
  diag_init(&d);
  EngineOpts eo = {ENGINE_JIT, 1, 0};
  Engine *baked = engine_new(&d, &g1, g1.updates, g1.nupdates, &eo);
  Engine *compiled = engine_new(&d, &g2, g2.updates, g2.nupdates, &eo);
  cr_assert(baked && compiled, "%s", d.buf ? d.buf : "");
  Engine *clone = engine_clone(compiled, 1);
  set_options(compiled, &c->o);
  set_options(clone, &c->o);
  float want[STEPS * 6], got[STEPS * 6], got_clone[STEPS * 6];
  jit_steps(&g1, baked, w1, gin1, want);
  jit_steps(&g2, compiled, w2, gin2, got);
  jit_steps(&g2, clone, w2, gin2, got_clone);
  cr_expect(!memcmp(want, got, sizeof want), "%s: run-time options differ from compiled ones", c->name);
  cr_expect(!memcmp(want, got_clone, sizeof want), "%s: the clone differs", c->name);
  float *torch = load(arena_printf(&a1, "%s.p", c->name), STEPS * 6);
  cr_expect(util_compare(c->name, got, torch, STEPS * 6, 1e-30, 1e-6) <= 1, "%s: JIT vs torch", c->name);
  /* structure: a zero momentum or weight decay compiled nonzero is another program */
  if (c->o.momentum != 0) cr_expect_eq(engine_set_hyper(compiled, NULL, "momentum", 0), -1);
  if (c->o.weight_decay == 0) cr_expect_eq(engine_set_hyper(compiled, NULL, "weight_decay", 0.1), -1);
  cr_expect_eq(engine_set_hyper(compiled, NULL, "no_such_option", 1), 0);
  free(torch);
  engine_free(clone);
  engine_free(compiled);
  engine_free(baked);
  diag_free(&d);
  arena_free(&a1);
  arena_free(&a2);
}

Test(optim, jit_runtime_options_match_compiled_and_torch) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) jit_case(&cases[i]);
}

/* Params a f32[3] and b (shape sb), loss sum(a) (or sum(a + b) with add), optimizer o, after pass_optim. */
static void two_param_graph(Graph *g, Arena *a, Diag *d, Shape sb, int add, OptimCfg o, Node **p) {
  arena_init(a);
  graph_init(g, a);
  diag_init(d);
  p[0] = leaf(g, OP_PARAM, (Shape){1, {3}}, "a"), p[1] = leaf(g, OP_PARAM, sb, "b");
  set_params(g, p, 2);
  g->loss = sum_all(g, add ? ir_bin(g, OP_ADD, p[0], p[1]) : p[0]);
  g->train.opt = o;
  cr_assert_eq(pass_autodiff(d, g), 0);
  cr_assert_eq(pass_optim(d, g), 0);
}

/* Options are per update node: another lr for one param leaves the other's alone. */
Test(optim, runtime_options_per_update) {
  for (int engine = 0; engine < 2; engine++) {
    Arena arena;
    Graph g;
    Diag d;
    Node *p[2];
    two_param_graph(&g, &arena, &d, (Shape){1, {3}}, 1, (OptimCfg){OPTIM_SGD, 0.5, 0, 0, 0, 0, 0, 0, 0}, p);
    EngineOpts eo = {engine ? ENGINE_INTERP : ENGINE_JIT, 1, 0};
    Engine *e = engine_new(&d, &g, g.updates, g.nupdates, &eo);
    cr_assert(e, "%s", d.buf ? d.buf : "");
    float va[3] = {1, 1, 1}, vb[3] = {1, 1, 1};
    engine_bind(e, p[0], va);
    engine_bind(e, p[1], vb);
    float st[2][3] = {{0}};
    for (int k = 0; k < g.nstates && k < 2; k++) engine_bind(e, g.states[k].node, st[k]);
    cr_expect_eq(engine_set_hyper(e, g.updates[1], "lr", 0.25), 1);
    RunCtx ctx = {0, 1, 1};
    cr_assert_eq(engine_run(e, &d, &ctx), 0, "%s", d.buf ? d.buf : "");
    cr_expect_eq(va[0], 0.5f, "a: %g", va[0]);    /* 1 - 0.5 * 1 */
    cr_expect_eq(vb[0], 0.75f, "b: %g", vb[0]);   /* 1 - 0.25 * 1 */
    engine_free(e);
    diag_free(&d);
    arena_free(&arena);
  }
}

Test(optim, matches_torch_every_configuration) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

/* State leaves are named <param>.<slot> in operand order, one update per param. */
Test(optim, states_and_updates) {
  static const struct { OptimKind k; Op op; int nstates; const char *first; } want[] = {
    {OPTIM_SGD, OP_OPT_SGD, 1, "b.momentum_buffer"},
    {OPTIM_ADAM, OP_OPT_ADAM, 2, "b.exp_avg"},
    {OPTIM_ADAMW, OP_OPT_ADAM, 2, "b.exp_avg"},
    {OPTIM_RMSPROP, OP_OPT_RMSPROP, 2, "b.square_avg"},
    {OPTIM_ADAGRAD, OP_OPT_ADAGRAD, 1, "b.sum"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    Arena arena;
    Graph g;
    Diag d;
    Node *p[2];
    two_param_graph(&g, &arena, &d, (Shape){2, {2, 2}}, 0, (OptimCfg){want[i].k, 0.1, 0, 0.9, 0.999, 1e-8, 0.99, 0, 0}, p);
    cr_expect_eq(g.nupdates, 2);
    cr_expect_eq(g.nstates, 2 * want[i].nstates);
    cr_expect_str_eq(g.states[want[i].nstates].name, want[i].first);
    cr_expect(shape_eq(&g.states[want[i].nstates].node->shape, &p[1]->shape));
    for (int k = 0; k < g.nupdates; k++) {
      Node *u = g.updates[k];
      cr_expect_eq(u->op, want[i].op);
      cr_expect_eq(u->in[0], p[k]);
      cr_expect_eq(u->in[1], g.grads[k]);
      cr_expect_eq(u->nin, 2 + want[i].nstates);
    }
    cr_expect_eq(g.updates[0]->a.i[0], want[i].k == OPTIM_ADAMW);
    cr_expect_eq(ir_verify(&g, &d), 0, "%s", d.buf ? d.buf : "");
    diag_free(&d);
    arena_free(&arena);
  }
}

Test(optim, needs_gradients) {
  Arena arena;
  Graph g;
  Diag d;
  arena_init(&arena);
  graph_init(&g, &arena);
  diag_init(&d);
  Node *p = leaf(&g, OP_PARAM, (Shape){1, {3}}, "a");
  set_params(&g, &p, 1);
  cr_expect_eq(pass_optim(&d, &g), -1);
  cr_expect_eq(d.nerrors, 1);
  diag_free(&d);
  arena_free(&arena);
}

/* relu(x @ W1 + b1) @ W2 + b2, cross_entropy: loss and gradients as torch. */
Test(optim, mlp_forward_backward_matches_torch) {
  Arena arena;
  Graph g;
  Diag d;
  arena_init(&arena);
  graph_init(&g, &arena);
  diag_init(&d);
  static const char *names[4] = {"W1", "b1", "W2", "b2"};
  Shape shapes[4] = {{2, {5, 6}}, {1, {6}}, {2, {6, 3}}, {1, {3}}};
  Node *p[4];
  float *pv[4];
  for (int i = 0; i < 4; i++) {
    p[i] = leaf(&g, OP_PARAM, shapes[i], names[i]);
    pv[i] = load(arena_printf(&arena, "mlp.%s", names[i]), shape_numel(&shapes[i]));
  }
  set_params(&g, p, 4);
  Node *x = leaf(&g, OP_INPUT, (Shape){2, {4, 5}}, "x");
  Shape sy = {1, {4}};
  Node *y = ir_leaf(&g, (Loc){0}, OP_INPUT, DT_I32, &sy, "y");
  Node *h = ir_un(&g, OP_RELU, ir_bin(&g, OP_ADD, ir_bin(&g, OP_MATMUL, x, p[0]), p[1]));
  Node *logits = ir_bin(&g, OP_ADD, ir_bin(&g, OP_MATMUL, h, p[2]), p[3]);
  g.loss = ir_bin(&g, OP_CROSS_ENTROPY, logits, y);
  cr_assert_eq(pass_autodiff(&d, &g), 0);

  float *xv = load("mlp.x", 20), *yv = load("mlp.y", 4), *loss = load("mlp.loss", 1);
  Interp it;
  interp_init(&it, &g);
  for (int i = 0; i < 4; i++) it.val[p[i]->id] = pv[i];
  it.val[x->id] = xv;
  it.val[y->id] = yv;  /* i32 data: npy_read keeps the file's element type */
  cr_assert_eq(interp_run(&it, &d, NULL, NULL), 0, "%s", d.buf ? d.buf : "");
  cr_expect(util_compare("mlp loss", it.val[g.loss->id], loss, 1, 1e-6, 1e-5) <= 1);
  for (int i = 0; i < 4; i++) {
    float *want = load(arena_printf(&arena, "mlp.grad.%s", names[i]), shape_numel(&shapes[i]));
    cr_expect(util_compare(names[i], it.val[g.grads[i]->id], want, shape_numel(&shapes[i]), 1e-6, 1e-5) <= 1,
              "gradient of %s", names[i]);
    free(want);
  }
  interp_free(&it);
  for (int i = 0; i < 4; i++) free(pv[i]);
  free(xv);
  free(yv);
  free(loss);
  diag_free(&d);
  arena_free(&arena);
}
