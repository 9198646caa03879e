/* bench.c - `nndc bench`: compile time by stage, time per step over repeats
 * after warm-up (min/median/max), samples/s, GFLOP/s from an op-level FLOP
 * count, the arena's peak bytes and a per-kernel profile.  --baseline also
 * times the reference interpreter in the same run and prints the ratio;
 * --json prints one JSON object for scripts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

/* FLOPs of one node at the op level (multiply-add = 2). */
static double node_flops(const Node *n) {
  double out = (double)shape_numel(&n->shape);
  const Shape *a = n->nin > 0 ? &n->in[0]->shape : NULL;
  switch (n->op) {
  case OP_MATMUL: {
    const Shape *b = &n->in[1]->shape;
    return 2.0 * out * (double)b->dim[b->rank - 2];
  }
  case OP_CONV2D: {
    const Shape *w = &n->in[1]->shape;
    return 2.0 * out * (double)(w->dim[1] * w->dim[2] * w->dim[3]);
  }
  case OP_CONV2D_BWD_X: case OP_CONV2D_BWD_W: {
    const Shape *dy = n->op == OP_CONV2D_BWD_X ? &n->in[0]->shape : &n->in[1]->shape;
    const Shape *w = n->op == OP_CONV2D_BWD_X ? &n->in[1]->shape : &n->shape;
    return 2.0 * (double)shape_numel(dy) * (double)(w->dim[1] * w->dim[2] * w->dim[3]);
  }
  case OP_INPUT: case OP_PARAM: case OP_STATE: case OP_CONST: case OP_RESHAPE:
    return 0;
  case OP_OPT_SGD: case OP_OPT_ADAM: case OP_OPT_RMSPROP: case OP_OPT_ADAGRAD:
    return 10.0 * (double)shape_numel(&n->in[0]->shape);
  default:
    return a && shape_numel(a) > out ? (double)shape_numel(a) : out;
  }
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

typedef struct Timing {
  double compile_s, min_s, med_s, max_s;
  size_t peak;
} Timing;

/* Random but valid inputs: f32 uniform [0,1), i32 labels 0/1. */
static void **make_inputs(const Graph *g) {
  void **buf = calloc((size_t)g->ninputs + 1, sizeof *buf);
  for (int i = 0; i < g->ninputs; i++) {
    const Node *n = g->inputs[i].node;
    int64_t m = shape_numel(&n->shape);
    buf[i] = malloc((size_t)m * 4 + 4);
    for (int64_t k = 0; k < m; k++) {
      if (n->dt == DT_I32) ((int32_t *)buf[i])[k] = (int32_t)(k % 2);
      else ((float *)buf[i])[k] = rng_uniform(1, (uint64_t)i, (uint64_t)k);
    }
  }
  return buf;
}

static int time_engine(Diag *d, Graph *g, Node **roots, int nroots, const EngineOpts *eo, ModelState *ms,
                       void **inputs, int64_t repeats, int training, Timing *t, Engine **keep) {
  double t0 = now_s();
  Engine *e = engine_new(d, g, roots, nroots, eo);
  if (!e) return -1;
  t->compile_s = eo->kind == ENGINE_JIT ? engine_compile_seconds(e) : now_s() - t0;
  t->peak = engine_peak_bytes(e);
  for (int i = 0; i < g->nparams; i++) engine_bind(e, g->params[i].node, ms->params[i]);
  for (int i = 0; i < g->nstates; i++) engine_bind(e, g->states[i].node, ms->states[i]);
  for (int i = 0; i < g->ninputs; i++) engine_bind(e, g->inputs[i].node, inputs[i]);
  double *s = calloc((size_t)repeats, sizeof *s);
  int64_t warm = repeats < 3 ? 1 : 3;
  for (int64_t r = -warm; r < repeats; r++) {
    RunCtx ctx = {g->train.seed, ++ms->step, training};
    double a = now_s();
    if (engine_run(e, d, &ctx)) {
      engine_free(e);
      free(s);
      return -1;
    }
    if (r >= 0) s[r] = now_s() - a;
  }
  qsort(s, (size_t)repeats, sizeof *s, cmp_double);
  t->min_s = s[0];
  t->med_s = s[repeats / 2];
  t->max_s = s[repeats - 1];
  free(s);
  if (keep) *keep = e;
  else engine_free(e);
  return 0;
}

static void print_profile(const Cli *c, Engine *e, double step_s) {
  int n = 0;
  const KernelProf *k = engine_profile(e, &n);
  if (c->json) {
    printf(",\"kernels\":[");
    for (int i = 0; i < n; i++)
      printf("%s{\"name\":\"%s\",\"line\":%d,\"calls\":%lld,\"seconds\":%.9f,\"gflops\":%.3f}", i ? "," : "",
             k[i].name, k[i].loc.line, (long long)k[i].calls, k[i].seconds,
             k[i].seconds > 0 ? k[i].flops * (double)k[i].calls / k[i].seconds * 1e-9 : 0.0);
    printf("]");
    return;
  }
  if (n == 0) return;
  double total = 0;
  for (int i = 0; i < n; i++) total += k[i].seconds;
  int *order = malloc((size_t)n * sizeof *order);
  for (int i = 0; i < n; i++) order[i] = i;
  for (int i = 1; i < n; i++)   /* insertion sort by time, descending */
    for (int j = i; j > 0 && k[order[j]].seconds > k[order[j - 1]].seconds; j--) {
      int t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  printf("per-kernel profile (%.0f us per step in kernels, top 15):\n", total / (double)(k[0].calls ? k[0].calls : 1) * 1e6);
  printf("  %6s %9s %8s  %-28s %s\n", "share", "us/call", "GFLOP/s", "kernel", "source");
  for (int i = 0; i < n && i < 15; i++) {
    const KernelProf *p = &k[order[i]];
    double per = p->calls ? p->seconds / (double)p->calls : 0;
    printf("  %5.1f%% %9.1f %8.2f  %-28s %s:%d\n", total > 0 ? 100 * p->seconds / total : 0, per * 1e6,
           per > 0 ? p->flops / per * 1e-9 : 0, p->name, p->loc.src ? p->loc.src->path : "?", p->loc.line);
  }
  (void)step_s;
  free(order);
}

int cmd_bench(Cli *c, Diag *d) {
  Arena a;
  arena_init(&a);
  Graph g;
  double t0 = now_s();
  compile(c, d, &g, &a, c->train, c->batch, NULL, 0);
  double t_front = now_s() - t0;
  t0 = now_s();
  if (c->train && (pass_autodiff(d, &g) || pass_optim(d, &g))) fail(d);
  double t_pass = now_s() - t0;
  if (c->train && !g.loss) fail(d);
  int nroots = 0;
  Node **roots = calloc((size_t)(g.noutputs + g.nmetrics + g.nupdates + 2), sizeof *roots);
  for (int i = 0; i < g.noutputs; i++) roots[nroots++] = g.outputs[i].node;
  if (g.loss) roots[nroots++] = g.loss;
  for (int i = 0; c->train && i < g.nupdates; i++) roots[nroots++] = g.updates[i];
  if (nroots == 0) {
    diag_error(d, (Loc){0}, "nothing to benchmark: the model has no output or loss");
    fail(d);
  }
  uint8_t *mask = calloc((size_t)g.nnodes + 1, 1);
  ir_mark_deps(&g, roots, nroots, mask);
  double flops = 0;
  for (int i = 0; i < g.nnodes; i++)
    if (mask[i]) flops += node_flops(g.nodes[i]);
  ModelState ms;
  if (model_state_init(d, &g, &ms, g.train.seed)) fail(d);
  void **inputs = make_inputs(&g);
  int64_t reps = c->repeats > 0 ? c->repeats : 20;
  EngineOpts eo = {c->engine, c->threads, 1};
  Timing t, tb = {0};
  Engine *e = NULL;
  if (time_engine(d, &g, roots, nroots, &eo, &ms, inputs, reps, c->train, &t, &e)) fail(d);
  if (c->baseline) {
    EngineOpts bo = {ENGINE_INTERP, c->threads, 0};
    if (time_engine(d, &g, roots, nroots, &bo, &ms, inputs, reps < 5 ? reps : 5, c->train, &tb, NULL)) fail(d);
  }
  int64_t batch = g.ninputs && g.inputs[0].node->shape.rank ? g.inputs[0].node->shape.dim[0] : 1;
  double sps = (double)batch / t.med_s, gf = flops / t.med_s * 1e-9;
  double total_compile = t_front + t_pass + t.compile_s;
  if (c->json) {
    printf("{\"model\":\"%s\",\"train\":%s,\"engine\":\"%s\",\"batch\":%lld,\"threads\":%d,\"repeats\":%lld,"
           "\"compile_ms\":%.3f,\"frontend_ms\":%.3f,\"passes_ms\":%.3f,\"codegen_ms\":%.3f,"
           "\"step_us_min\":%.3f,\"step_us_median\":%.3f,\"step_us_max\":%.3f,\"samples_per_s\":%.1f,"
           "\"flops_per_step\":%.0f,\"gflops\":%.3f,\"peak_bytes\":%zu",
           g.model_name, c->train ? "true" : "false", c->engine == ENGINE_JIT ? "jit" : "interp", (long long)batch,
           c->threads, (long long)reps, total_compile * 1e3, t_front * 1e3, t_pass * 1e3, t.compile_s * 1e3,
           t.min_s * 1e6, t.med_s * 1e6, t.max_s * 1e6, sps, flops, gf, t.peak);
    if (c->baseline)
      printf(",\"baseline_interp_us_median\":%.3f,\"speedup_vs_interp\":%.2f", tb.med_s * 1e6, tb.med_s / t.med_s);
    print_profile(c, e, t.med_s);
    printf("}\n");
  } else {
    printf("%s (%s, batch %lld, %s engine)\n", c->model, c->train ? "training step" : "forward", (long long)batch,
           c->engine == ENGINE_JIT ? "jit" : "interp");
    printf("compile: %.1f ms (frontend %.1f, passes %.1f, codegen %.1f)\n", total_compile * 1e3, t_front * 1e3,
           t_pass * 1e3, t.compile_s * 1e3);
    printf("step: min %.1f us, median %.1f us, max %.1f us over %lld repeats\n", t.min_s * 1e6, t.med_s * 1e6,
           t.max_s * 1e6, (long long)reps);
    printf("throughput: %.0f samples/s, %.2f GFLOP/s (%.1f MFLOP per step), arena %zu bytes\n", sps, gf,
           flops * 1e-6, t.peak);
    if (c->baseline)
      printf("baseline interpreter: median %.1f us: jit is %.1fx faster\n", tb.med_s * 1e6, tb.med_s / t.med_s);
    print_profile(c, e, t.med_s);
  }
  engine_free(e);
  model_state_free(&g, &ms);
  for (int i = 0; i < g.ninputs; i++) free(inputs[i]);
  free(inputs);
  free(roots);
  free(mask);
  arena_free(&a);
  return 0;
}
