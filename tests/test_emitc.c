/* test_emitc.c - `nndc emit-c` against the library's engines.
 *
 * For every shared model: emit the C (with --train) at a small batch, build
 * it with a generated driver by gcc (also under ASan+UBSan) and clang, with and without -fopenmp, at
 * -std=c99 -Wall -Wextra -Werror -pedantic; run one forward pass and one
 * training step on deterministic params and inputs; compare the outputs,
 * loss, metrics and the updated params with the reference interpreter and
 * the JIT running the same graphs, for the target NNDC_TARGET names (CTest
 * runs the suite once per target; see CMakeLists.txt).  Also: embedded weights (--weights), a
 * forward-only emission, and the command's errors. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codegen/codegen.h"
#include "codegen/target.h"
#include "tests/util.h"

/* A model of the suite: file and the -D that keep it small. */
typedef struct Case {
  const char *model;  /* a shared model's name, or a path */
  const char *defs;   /* command-line form */
  Define d[3];
  int nd;
  const char *m;      /* its C name when not the model's name */
  double state_rtol;  /* > 0: the optimizer states (gradients) are compared within this fraction
                       * of themselves or of the largest state; 0: 1e-3 of themselves + 1e-7 */
} Case;

static void model_path(char *buf, size_t n, const char *model) {
  if (strchr(model, '/')) snprintf(buf, n, "%s", model);
  else snprintf(buf, n, "%s/models/%s.nnd", NNDC_SHARED_DIR, model);
}

/* Everything one model's checks need, built through the library. */
typedef struct Ref {
  Arena a;
  Diag d;
  Graph g, tg;
  ModelState ms;
  void **inputs;      /* [ninputs] */
  double state_rtol;  /* Case.state_rtol */
  float *fwd;         /* outputs, loss, metrics of the forward pass, concatenated */
  int64_t nfwd;
  float *step;        /* outputs, loss, metrics of the training step, then the updated params, then the states */
  int64_t nstep;
  int64_t nstepout, nstepparams;  /* where the params and the states start in step */
} Ref;


static int out_nodes(const Graph *g, Node **n, const char **name) {
  int k = 0;
  for (int i = 0; i < g->noutputs; i++) name[k] = g->outputs[i].name, n[k++] = g->outputs[i].node;
  if (g->loss) name[k] = "loss", n[k++] = g->loss;
  for (int i = 0; i < g->nmetrics; i++) name[k] = g->metrics[i].name, n[k++] = g->metrics[i].node;
  return k;
}

static void build(Ref *r, const Case *c) {
  char path[1024];
  model_path(path, sizeof path, c->model);
  arena_init(&r->a);
  diag_init(&r->d);
  graph_init(&r->g, &r->a);
  graph_init(&r->tg, &r->a);
  BuildOpts fo = {c->d, c->nd, NULL, 0, 0, 0}, to = {c->d, c->nd, NULL, 0, 1, 0};
  int ok = !fe_compile_file(&r->d, &r->g, path, &fo) && !fe_compile_file(&r->d, &r->tg, path, &to) &&
           !pass_autodiff(&r->d, &r->tg) && !pass_optim(&r->d, &r->tg) &&
           !model_state_init(&r->d, &r->tg, &r->ms, r->tg.train.seed);
  cr_assert(ok, "%s: %s", c->model, r->d.buf ? r->d.buf : "");
  r->inputs = calloc((size_t)r->g.ninputs + 1, sizeof *r->inputs);
  for (int i = 0; i < r->g.ninputs; i++) {
    const Node *in = r->g.inputs[i].node;
    int64_t n = shape_numel(&in->shape);
    r->inputs[i] = calloc((size_t)n + 1, 4);
    if (in->dt == DT_F32) util_fill(r->inputs[i], n, 100 + (uint64_t)i, 0, 1);
    else
      for (int64_t j = 0; j < n; j++) ((int32_t *)r->inputs[i])[j] = (int32_t)((j * 7 + 3) % 10);
  }
}

static float *append(float *v, int64_t *n, const void *x, int64_t k) {
  v = realloc(v, (size_t)(*n + k + 1) * 4);
  memcpy(v + *n, x, (size_t)k * 4);
  *n += k;
  return v;
}

/* Runs the forward graph and one training step with engine `kind`. */
static void reference(Ref *r, EngineKind kind) {
  Graph *g = &r->g, *tg = &r->tg;
  Node *roots[64];
  const char *names[64];
  int n = out_nodes(g, roots, names);
  EngineOpts eo = {kind, 2, 0};
  Engine *e = engine_new(&r->d, g, roots, n, &eo);
  cr_assert(e, "%s", r->d.buf ? r->d.buf : "");
  for (int i = 0; i < g->nparams; i++) engine_bind(e, g->params[i].node, r->ms.params[i]);
  for (int i = 0; i < g->ninputs; i++) engine_bind(e, g->inputs[i].node, r->inputs[i]);
  RunCtx ctx = {g->train.seed, 1, 0};
  cr_assert_eq(engine_run(e, &r->d, &ctx), 0, "%s", r->d.buf ? r->d.buf : "");
  free(r->fwd);
  r->fwd = NULL;
  r->nfwd = 0;
  for (int i = 0; i < n; i++) r->fwd = append(r->fwd, &r->nfwd, engine_value(e, roots[i]), shape_numel(&roots[i]->shape));
  engine_free(e);

  /* the training step works on copies: params and zeroed state */
  int nt = out_nodes(tg, roots, names);
  for (int i = 0; i < tg->nupdates; i++) roots[nt + i] = tg->updates[i];
  e = engine_new(&r->d, tg, roots, nt + tg->nupdates, &eo);
  cr_assert(e, "%s", r->d.buf ? r->d.buf : "");
  float **p = calloc((size_t)tg->nparams + 1, sizeof *p), **s = calloc((size_t)tg->nstates + 1, sizeof *s);
  for (int i = 0; i < tg->nparams; i++) {
    int64_t k = shape_numel(&tg->params[i].node->shape);
    p[i] = malloc((size_t)k * 4);
    memcpy(p[i], r->ms.params[i], (size_t)k * 4);
    engine_bind(e, tg->params[i].node, p[i]);
  }
  for (int i = 0; i < tg->nstates; i++) {
    s[i] = calloc((size_t)shape_numel(&tg->states[i].node->shape), 4);
    engine_bind(e, tg->states[i].node, s[i]);
  }
  for (int i = 0; i < tg->ninputs; i++) engine_bind(e, tg->inputs[i].node, r->inputs[i]);
  RunCtx tctx = {tg->train.seed, 1, 1};
  cr_assert_eq(engine_run(e, &r->d, &tctx), 0, "%s", r->d.buf ? r->d.buf : "");
  free(r->step);
  r->step = NULL;
  r->nstep = 0;
  for (int i = 0; i < nt; i++) r->step = append(r->step, &r->nstep, engine_value(e, roots[i]), shape_numel(&roots[i]->shape));
  r->nstepout = r->nstep;
  for (int i = 0; i < tg->nparams; i++) r->step = append(r->step, &r->nstep, p[i], shape_numel(&tg->params[i].node->shape));
  r->nstepparams = r->nstep;
  for (int i = 0; i < tg->nstates; i++) r->step = append(r->step, &r->nstep, s[i], shape_numel(&tg->states[i].node->shape));
  engine_free(e);
  for (int i = 0; i < tg->nparams; i++) free(p[i]);
  for (int i = 0; i < tg->nstates; i++) free(s[i]);
  free(p);
  free(s);
}

static void ref_free(Ref *r) {
  for (int i = 0; i < r->g.ninputs; i++) free(r->inputs[i]);
  free(r->inputs);
  free(r->fwd);
  free(r->step);
  model_state_free(&r->tg, &r->ms);
  diag_free(&r->d);
  arena_free(&r->a);
}

/* Params then inputs, raw, in declaration order: what the driver reads. */
static void write_data(const Ref *r, const char *path) {
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  for (int i = 0; i < r->g.nparams; i++)
    fwrite(r->ms.params[i], 4, (size_t)shape_numel(&r->g.params[i].node->shape), f);
  for (int i = 0; i < r->g.ninputs; i++) fwrite(r->inputs[i], 4, (size_t)shape_numel(&r->g.inputs[i].node->shape), f);
  fclose(f);
}

/* Texts: the library's Buf (buf_printf). */

/* A driver for the emitted model m: reads params (unless `embedded`) and
 * inputs from argv[1], writes forward results, then (train) the step's
 * results and the updated params to argv[2], all as raw 4-byte values. */
static char *driver(const Ref *r, const char *m, int train, int embedded) {
  const Graph *g = &r->g;
  char *M = util_c_upper(m);
  Buf t = {0};
  buf_printf(&t, "#include <stdio.h>\n#include <stdlib.h>\n#include \"%s.h\"\n\n", m);
  buf_printf(&t, "static void *rd(FILE *f, size_t n) {\n  void *p = malloc(n * 4 + 4);\n"
          "  if (!p || fread(p, 4, n, f) != n) exit(3);\n  return p;\n}\n\n");
  buf_printf(&t, "int main(int argc, char **argv) {\n  FILE *f, *o;\n  %s_params p;\n  %s_inputs in;\n  %s_outputs out;\n", m, m, m);
  buf_printf(&t, "  void *ws = malloc(%s_workspace_size() + 64);\n", m);
  buf_printf(&t, "  if (argc != 3 || !(f = fopen(argv[1], \"rb\")) || !(o = fopen(argv[2], \"wb\"))) return 2;\n");
  for (int i = 0; i < g->nparams; i++) {
    char *id = util_c_ident(g->params[i].name), *U = util_c_upper(g->params[i].name);
    if (embedded) buf_printf(&t, "  p.%s = %s_weights.%s;\n  (void)rd(f, %s_PARAM_%s_SIZE);\n", id, m, id, M, U);
    else buf_printf(&t, "  p.%s = rd(f, %s_PARAM_%s_SIZE);\n", id, M, U);
    free(id);
    free(U);
  }
  for (int i = 0; i < g->ninputs; i++) {
    char *id = util_c_ident(g->inputs[i].name), *U = util_c_upper(g->inputs[i].name);
    buf_printf(&t, "  in.%s = rd(f, %s_INPUT_%s_SIZE);\n", id, M, U);
    free(id);
    free(U);
  }
  Node *nodes[64];
  const char *names[64];
  int n = out_nodes(g, nodes, names);
  for (int i = 0; i < n; i++) {
    char *id = util_c_ident(names[i]), *U = util_c_upper(names[i]);
    buf_printf(&t, "  out.%s = malloc(%s_OUTPUT_%s_SIZE * 4);\n", id, M, U);
    free(id);
    free(U);
  }
  Buf wr = {0};
  for (int i = 0; i < n; i++) {
    char *id = util_c_ident(names[i]), *U = util_c_upper(names[i]);
    buf_printf(&wr, "  fwrite(out.%s, 4, %s_OUTPUT_%s_SIZE, o);\n", id, M, U);
    free(id);
    free(U);
  }
  buf_printf(&t, "  %s_forward(&p, &in, &out, ws);\n%s", m, wr.s ? wr.s : "");
  if (train) {
    const Graph *tg = &r->tg;
    buf_printf(&t, "  %s_state s;\n  s.step = 0;\n", m);
    for (int i = 0; i < tg->nstates; i++) {
      char *id = util_c_ident(tg->states[i].name), *U = util_c_upper(tg->states[i].name);
      buf_printf(&t, "  s.%s = calloc(%s_STATE_%s_SIZE, 4);\n", id, M, U);
      free(id);
      free(U);
    }
    buf_printf(&t, "  %s_train_step(&p, &s, &in, &out, ws);\n%s", m, wr.s ? wr.s : "");
    buf_printf(&t, "  if (s.step != 1) return 4;\n");
    for (int i = 0; i < g->nparams; i++) {
      char *id = util_c_ident(g->params[i].name), *U = util_c_upper(g->params[i].name);
      buf_printf(&t, "  fwrite(p.%s, 4, %s_PARAM_%s_SIZE, o);\n", id, M, U);
      free(id);
      free(U);
    }
    for (int i = 0; i < tg->nstates; i++) {
      char *id = util_c_ident(tg->states[i].name), *U = util_c_upper(tg->states[i].name);
      buf_printf(&t, "  fwrite(s.%s, 4, %s_STATE_%s_SIZE, o);\n", id, M, U);
      free(id);
      free(U);
    }
  }
  buf_printf(&t, "  return fclose(o) != 0;\n}\n");
  free(wr.s);
  free(M);
  return t.s;
}

static float *read_floats(const char *path, int64_t *n) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "no output %s", path);
  float *v = malloc(1 << 26);
  *n = (int64_t)fread(v, 4, (1 << 24), f);
  fclose(f);
  return v;
}

static char *sh(const char *cmd) {
  int st;
  char *out = util_run(cmd, &st);
  cr_assert_eq(st, 0, "command failed (%d): %s\n%s", st, cmd, out);
  return out;
}

/* Builds dir/m.c with cc and flags, runs it on the data, compares with r. */
static void build_and_compare(const Ref *r, const char *dir, const char *m, const char *cc, const char *flags,
                              int train, const char *what) {
  char cmd[4096], outp[1024];
  snprintf(cmd, sizeof cmd,
           "cd %s && %s -std=c99 -Wall -Wextra -Werror -pedantic -O1 %s %s.c driver.c -o prog -lm && "
           "OMP_NUM_THREADS=3 ASAN_OPTIONS=detect_leaks=0 ./prog data.bin out.bin",
           dir, cc, flags, m);
  free(sh(cmd));
  snprintf(outp, sizeof outp, "%s/out.bin", dir);
  int64_t n;
  float *v = read_floats(outp, &n);
  int64_t want = r->nfwd + (train ? r->nstep : 0);
  cr_assert_eq(n, want, "%s %s %s: %lld values, expected %lld", m, cc, flags, (long long)n, (long long)want);
  char label[256];
  snprintf(label, sizeof label, "%s %s %s %s forward", m, what, cc, flags);
  cr_expect_leq(util_compare(label, v, r->fwd, r->nfwd, 1e-5, 1e-4), 1.0, "%s", label);
  if (train) {
    const float *got = v + r->nfwd;
    snprintf(label, sizeof label, "%s %s %s %s train step outputs", m, what, cc, flags);
    cr_expect_leq(util_compare(label, got, r->step, r->nstepout, 1e-5, 1e-4), 1.0, "%s", label);
    /* Optimizer states hold the gradient (Adam's exp_avg is 0.1 g after one
     * step): they check every gradient tightly. */
    snprintf(label, sizeof label, "%s %s %s %s train step states", m, what, cc, flags);
    double big = 0, atol = 1e-7, rtol = 1e-3;
    for (int64_t i = r->nstepparams; i < r->nstep; i++) big = fmax(big, fabs(r->step[i]));
    if (r->state_rtol > 0) atol = r->state_rtol * big, rtol = r->state_rtol;
    cr_expect_leq(util_compare(label, got + r->nstepparams, r->step + r->nstepparams, r->nstep - r->nstepparams,
                               atol, rtol), 1.0, "%s", label);
    /* Adam and RMSprop divide g by about |g|: where g is a rounding-level
     * residue the step is noise-sized (up to lr, 10 lr for RMSprop), so params
     * are compared tightly except for a few such elements, which must stay
     * within a tenth of the largest step. */
    snprintf(label, sizeof label, "%s %s %s %s train step params", m, what, cc, flags);
    int64_t np = r->nstepparams - r->nstepout, bad = 0;
    for (int64_t i = 0; i < np; i++) {
      double a = got[r->nstepout + i], b = r->step[r->nstepout + i];
      if (fabs(a - b) > 2e-6 + 1e-5 * fabs(b)) bad++;
    }
    cr_expect_leq(bad, np / 200, "%s: %lld of %lld params differ", label, (long long)bad, (long long)np);
    const OptimCfg *o = &r->tg.train.opt;
    double most = o->kind == OPTIM_RMSPROP ? o->lr / sqrt(1 - o->alpha) : o->lr;   /* largest sign-like step */
    cr_expect_leq(util_compare(label, got + r->nstepout, r->step + r->nstepout, np, most / 10, 1e-5), 1.0, "%s", label);
  }
  free(v);
}

static void emit(const char *model, const char *defs, const char *opts, const char *dir) {
  char cmd[4096], path[1024];
  model_path(path, sizeof path, model);
  snprintf(cmd, sizeof cmd, "%s emit-c %s -o %s %s %s", NNDC_BIN, path, dir, defs, opts);
  free(sh(cmd));
}

static void check_model(const Case *c) {
  Ref r = {0};
  build(&r, c);
  r.state_rtol = c->state_rtol;
  char *dir = util_tmpdir(), path[1024];
  emit(c->model, c->defs, "--train", dir);
  snprintf(path, sizeof path, "%s/data.bin", dir);
  write_data(&r, path);
  const char *m = c->m ? c->m : c->model;
  char *drv = driver(&r, m, 1, 0);
  snprintf(path, sizeof path, "%s/driver.c", dir);
  cr_assert_eq(util_write_file(path, drv), 0);
  free(drv);
  static const char *const cc[] = {"gcc", "clang"};
  /* without OpenMP the generated code also runs under the sanitizers: no
   * out-of-bounds access, no signed overflow in the dropout hash */
  static const char *const fl[] = {"-fsanitize=address,undefined -fno-sanitize-recover=all", "-fopenmp"};
  /* NNDC_TARGET picks the target of the emitted C (and of the JIT): C for
   * any target runs here, the JIT only for one the host executes */
  for (int e = 0; e < (target_host_runs(target_current()) ? 2 : 1); e++) {
    reference(&r, e ? ENGINE_JIT : ENGINE_INTERP);
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++)
        /* clang's sanitizers take minutes on the unrolled recurrent models:
         * the sanitized build is gcc's only */
        if ((e == 0 && !(i == 1 && j == 0)) || (i == 0 && j == 1)) build_and_compare(&r, dir, m, cc[i], fl[j], 1, e ? "vs jit" : "vs interp");
  }
  char rm[1100];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  free(sh(rm));
  free(dir);
  ref_free(&r);
}

#define N4 {{"N", 4, 1}}
#define N4T2H32 {{"N", 4, 1}, {"T", 2, 1}, {"H", 32, 1}}

Test(emitc, mlp) { Case c = {"mlp", "-D N=4", N4, 1, NULL}; check_model(&c); }
Test(emitc, linreg) { Case c = {"linreg", "-D N=4", N4, 1, NULL}; check_model(&c); }
Test(emitc, logreg) { Case c = {"logreg", "-D N=4", N4, 1, NULL}; check_model(&c); }
Test(emitc, deep_mlp) { Case c = {"deep_mlp", "-D N=4", N4, 1, NULL}; check_model(&c); }
Test(emitc, autoencoder) { Case c = {"autoencoder", "-D N=4", N4, 1, NULL}; check_model(&c); }
Test(emitc, lenet) { Case c = {"lenet", "-D N=2", {{"N", 2, 1}}, 1, NULL}; check_model(&c); }
Test(emitc, rnn) { Case c = {"rnn", "-D N=4 -D T=2 -D H=32", N4T2H32, 3, NULL}; check_model(&c); }
Test(emitc, lstm) { Case c = {"lstm", "-D N=4 -D T=2 -D H=32", N4T2H32, 3, NULL}; check_model(&c); }

/* A model written into a fresh directory as FILE, then check_model
 * (state_rtol: Case's). */
static void check_source(const char *file, const char *text, const char *defs, Define d, const char *m,
                         double state_rtol) {
  char *dir = util_tmpdir(), path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  cr_assert_eq(util_write_file(path, text), 0);
  Case c = {path, defs, {d}, 1, m, state_rtol};
  check_model(&c);
  free(dir);
}

/* Names that are not C identifiers as they stand: a file name starting with
 * a digit, a param called `int` and one called `v1` (the printer's own
 * variables are v<n>), a layer param h1.W; an i32 output and a clamp. */
Test(emitc, odd_names) {
  check_source("2odd-names.nnd",
    "input x: f32[N, 3]\ninput lab: i32[N]\nparam int: f32[3, 10]\nparam v1: f32[10] = uniform(-1, 1)\n"
    "fn dense(x, units) {\n  param W: f32[dim(x, -1), units]\n  return x @ W\n}\n"
    "h1 = dense(x, 10)\nz = relu(x @ int + v1) + h1\noutput idx = argmax(z, axis=1)\n"
    "output z2 = clamp(z, -0.5, 0.5) ** 3\nloss = cross_entropy(z, lab)\n"
    "metric acc = mean(argmax(z, axis=1) == lab)\ntrain { optimizer = sgd(lr=0.1, momentum=0.9) }\n",
               "-D N=5", (Define){"N", 5, 1}, "m2odd_names", 0);
}

/* batch_norm (training: batch statistics and the running-statistics update
 * in place; evaluation: the running statistics) and layer_norm.  (The tanh
 * keeps b1's gradient from vanishing: a batch_norm right after the product
 * would cancel any shift common to the batch, leaving rounding noise.) */
Test(emitc, norm) {
  check_source("norm.nnd",
    "input x: f32[N, 2, 7, 5]\ninput y: i32[N]\nparam k: f32[3, 2, 3, 3]\nparam g1: f32[3] = uniform(0.5, 1.5)\n"
    "param b1: f32[3] = uniform(-1, 1)\nparam W: f32[6, 10]\nparam g2: f32[10] = ones\nparam b2: f32[10]\n"
    "fn block(x, w, b) {\n  return relu(batch_norm(x, w, b, momentum=0.2))\n}\n"
    "h1 = block(conv2d(x, k, padding=1), g1, b1)\np = flatten(maxpool2d(h1, 3))\n"
    "h2 = batch_norm(tanh(p @ W), g2, b2, eps=1e-3)\no = layer_norm(h2) + layer_norm(h2, g2, b2)\noutput logits = o\n"
    "loss = cross_entropy(o, y)\ntrain { optimizer = sgd(lr=0.1, momentum=0.9) }\n",
               "-D N=5", (Define){"N", 5, 1}, "norm", 0);
}

/* Grouped, dilated, per-axis strided and depthwise conv2d and a grouped
 * conv_transpose2d with output_padding and a bias, forward and --train
 * (the direct convolution kernels and the GEMM path's dilation). */
Test(emitc, conv_variants) {
  check_source("convs.nnd",
    "input x: f32[N, 4, 9, 8]\ninput lab: i32[N]\n"
    "param w1: f32[6, 2, 3, 3]\nparam b1: f32[6] = uniform(-1, 1)\nparam w2: f32[6, 1, 3, 3]\n"
    "param w3: f32[6, 2, 3, 2]\nparam b3: f32[4] = uniform(-1, 1)\nparam w4: f32[3, 4, 2, 2]\n"
    "param wf: f32[84, 10]\n"
    "h = relu(conv2d(x, w1, b1, stride=[1, 2], padding=1, dilation=[2, 1], groups=2))\n"   /* [N,6,7,4] */
    "h = tanh(conv2d(h, w2, padding=1, groups=6))\n"                                       /* [N,6,7,4] */
    "u = conv_transpose2d(h, w3, b3, stride=2, padding=1, output_padding=1, groups=2)\n"  /* [N,4,14,7] */
    "v = conv2d(u, w4, stride=2, dilation=[1, 2], padding=[0, 1])\n"                      /* [N,3,7,4] */
    "z = flatten(v) @ wf\noutput u\nloss = cross_entropy(z, lab)\n"
    "train { optimizer = adam(lr=0.01) }\n",
               "-D N=3", (Define){"N", 3, 1}, "convs", 0);
}

/* Attention fused into flash-attention kernels (passes/attention.c): 70
 * keys, a causal mask and heads of 6 (not a whole number of vectors), so
 * the key blocks end part-way; forward and --train (ATTN_LSE, ATTN_BWD). */
Test(emitc, flash_attention) {
  check_source("flash.nnd",
    "const T = 70\ninput x: f32[N, T, 12]\ninput y: i32[N]\n"
    "fn heads(z) {\n  return transpose(reshape(z, [dim(z, 0), T, 2, 6]), [0, 2, 1, 3])\n}\n"
    "param wq: f32[12, 12]\nparam wk: f32[12, 12]\nparam wv: f32[12, 12]\nparam wo: f32[12, 10]\n"
    "s = softmax(tril(heads(x @ wq) @ transpose(heads(x @ wk), [0, 1, 3, 2]) / sqrt(6), fill=-inf))\n"
    "o = reshape(transpose(s @ heads(x @ wv), [0, 2, 1, 3]), [dim(x, 0), T, 12])\n"
    "z = mean(o, axis=1) @ wo\noutput logits = z\nloss = cross_entropy(z, y)\n"
    "train { optimizer = sgd(lr=0.1, momentum=0.9) }\n",
               "-D N=3", (Define){"N", 3, 1}, "flash", 0);
}

/* Our examples beyond the shared models, the CNN with batch_norm and the
 * transformer encoder (layer_norm, 4-D batched products, softmax over
 * keys), with sgd instead of their adam: some of their gradients are exact
 * zeros but for rounding (a bias of k shifts every score of a row alike,
 * which softmax cancels), and Adam's first step turns any such residue into
 * a step of lr whose sign is noise. */
static void example_with_sgd(const char *name, const char *defs, Define d, double state_rtol) {
  char src[512], file[128];
  snprintf(src, sizeof src, "%s/examples/%s.nnd", NNDC_SRC_DIR, name);
  FILE *f = fopen(src, "rb");
  cr_assert(f, "%s", src);
  Buf text = {0};
  char line[1024];
  while (fgets(line, sizeof line, f))
    buf_puts(&text, strstr(line, "optimizer = adam") ? "  optimizer = sgd(lr=0.1, momentum=0.9)\n" : line);
  fclose(f);
  snprintf(file, sizeof file, "%s.nnd", name);
  check_source(file, text.s, defs, d, name, state_rtol);
  free(text.s);
}

/* A convolution's weight gradient before batch_norm sums dz * x over every
 * position, and batch_norm's backward makes dz sum to zero per channel: the
 * sum is sum dz (x - mean x), a cancellation that leaves the float32
 * results (JIT, C) off the interpreter's double sums by about 1e-3 of the
 * largest gradient: they are compared at that scale. */
Test(emitc, cnn_bn) { example_with_sgd("cnn_bn", "-D N=4", (Define){"N", 4, 1}, 5e-3); }
Test(emitc, transformer) { example_with_sgd("transformer", "-D N=2", (Define){"N", 2, 1}, 0); }
/* randn in the forward pass and the step: the same draws in every engine
 * (a few of the 650,000 gradients sum four terms that cancel to 1e-5: they
 * are compared at 2e-4 of the largest) */
Test(emitc, vae) { example_with_sgd("vae", "-D N=4", (Define){"N", 4, 1}, 2e-4); }

/* --weights embeds the params: the forward pass needs none from the caller;
 * without --train the header has no state and no train_step. */
Test(emitc, embedded_weights) {
  Case c = {"deep_mlp", "-D N=4", N4, 1, NULL, 0};
  Ref r = {0};
  build(&r, &c);
  reference(&r, ENGINE_INTERP);
  char *dir = util_tmpdir(), path[1024], opts[1100];
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  cr_assert_eq(ckpt_save(&r.d, path, &r.g, r.ms.params), 0, "%s", r.d.buf ? r.d.buf : "");
  snprintf(opts, sizeof opts, "--weights %s", path);
  emit(c.model, c.defs, opts, dir);
  snprintf(opts, sizeof opts, "cat %s/deep_mlp.h", dir);
  char *h = sh(opts);
  cr_expect(strstr(h, "extern const deep_mlp_params deep_mlp_weights;"), "%s", h);
  cr_expect(!strstr(h, "train_step"), "forward-only header declares a training step");
  cr_expect(strstr(h, "#define DEEP_MLP_N 4"), "%s", h);
  free(h);
  snprintf(path, sizeof path, "%s/data.bin", dir);
  write_data(&r, path);
  /* the driver reads the params from the file and ignores them */
  char *drv = driver(&r, c.model, 0, 1);
  snprintf(path, sizeof path, "%s/driver.c", dir);
  cr_assert_eq(util_write_file(path, drv), 0);
  free(drv);
  build_and_compare(&r, dir, c.model, "gcc", "", 0, "embedded");
  snprintf(opts, sizeof opts, "rm -rf %s", dir);
  free(sh(opts));
  free(dir);
  ref_free(&r);
}

/* The generated source quotes each kernel's source line and names buffers
 * after the model's params; the header declares exactly the spec's API. */
Test(emitc, readable_and_declares_api) {
  char *dir = util_tmpdir(), cmd[1200];
  emit("mlp", "-D N=1", "--train", dir);
  snprintf(cmd, sizeof cmd, "cat %s/mlp.c %s/mlp.h", dir, dir);
  char *s = sh(cmd);
  cr_expect(strstr(s, "mlp.nnd:10: h = relu(x @ W1 + b1)"), "no source line comment");
  cr_expect(strstr(s, "const float *W1 = bufs["), "params are not named");
  cr_expect(strstr(s, "#define MLP_N 1"));
  cr_expect(strstr(s, "typedef struct {\n  float *W1;"));
  cr_expect(strstr(s, "size_t mlp_workspace_size(void);"));
  cr_expect(strstr(s, "void   mlp_forward(const mlp_params *p, const mlp_inputs *in, mlp_outputs *out, void *workspace);"));
  cr_expect(strstr(s, "void   mlp_train_step(mlp_params *p, mlp_state *s, const mlp_inputs *in, mlp_outputs *out, void *workspace);"));
  cr_expect(strstr(s, "float *W1_exp_avg;"));
  cr_expect(strstr(s, "const int32_t *y;"));
  cr_expect(!strstr(s, "malloc"), "generated code allocates");
  free(s);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  free(sh(cmd));
  free(dir);
}

Test(emitc, errors) {
  int st;
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "%s emit-c %s/models/mlp.nnd 2>&1", NNDC_BIN, NNDC_SHARED_DIR);
  free(util_run(cmd, &st));
  cr_expect_eq(st, 2, "emit-c without -o must be a usage error");
  char *dir = util_tmpdir();
  snprintf(cmd, sizeof cmd, "%s/bad.nnd", dir);
  util_write_file(cmd, "input x: f32[N, 3]\noutput y = x @ q\n");
  snprintf(cmd, sizeof cmd, "%s emit-c %s/bad.nnd -o %s/out 2>&1", NNDC_BIN, dir, dir);
  char *out = util_run(cmd, &st);
  cr_expect_eq(st, 1, "%s", out);
  cr_expect(strstr(out, "bad.nnd:2:"), "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s emit-c %s/models/mlp.nnd -o %s/out --weights %s/missing.safetensors 2>&1", NNDC_BIN,
           NNDC_SHARED_DIR, dir, dir);
  out = util_run(cmd, &st);
  cr_expect_eq(st, 1, "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  free(sh(cmd));
  free(dir);
}

/* emit-c --train reads the optimizer options from <m>_hyper at every step:
 * one sgd step (momentum: the buffer is the gradient on step 1) with the
 * compiled lr moves W by -0.1 g; with W's lr set to 0.05 and b's to 0 it
 * moves W by exactly half that and leaves b alone. */
Test(emitc, train_step_reads_runtime_options) {
  char *dir = util_tmpdir(), p[600], cmd[2000];
  snprintf(p, sizeof p, "%s/lin.nnd", dir);
  util_write_file(p, "input x: f32[N, 3]\ninput t: f32[N, 1]\nparam W: f32[3, 1] = ones\nparam b: f32[1]\n"
                     "loss = mse(x @ W + b, t)\ntrain {\n  optimizer = sgd(lr=0.1, momentum=0.9)\n  batch = 2\n}\n");
  snprintf(p, sizeof p, "%s/driver.c", dir);
  util_write_file(p,
      "#include <stdio.h>\n#include <stdlib.h>\n#include \"lin.h\"\n"
      "static void step(float *W, float *b) {\n"
      "  float x[6] = {1, 2, 3, -1, 0.5f, 2}, t[2] = {0, 1}, loss, mb[3] = {0}, bb[1] = {0};\n"
      "  W[0] = W[1] = W[2] = 1; b[0] = 0;\n"
      "  lin_params p = {W, b};\n  lin_inputs in = {x, t};\n  lin_outputs out = {&loss};\n"
      "  lin_state s = {0, mb, bb};\n"
      "  void *ws = malloc(lin_workspace_size() + 1);\n  lin_train_step(&p, &s, &in, &out, ws);\n  free(ws);\n}\n"
      "int main(void) {\n"
      "  float W0[3], b0[1], W1[3], b1[1];\n"
      "  if (lin_hyper[LIN_HYPER_W_LR] != 0.1 || lin_hyper[LIN_HYPER_B_MOMENTUM] != 0.9) return 3;\n"
      "  step(W0, b0);\n"
      "  lin_hyper[LIN_HYPER_W_LR] = 0.05;\n  lin_hyper[LIN_HYPER_B_LR] = 0;\n"
      "  step(W1, b1);\n"
      "  for (int i = 0; i < 3; i++) printf(\"%.9g %.9g\\n\", 1 - W0[i], 1 - W1[i]);\n"
      "  printf(\"%.9g %.9g\\n\", b0[0], b1[0]);\n  return 0;\n}\n");
  snprintf(cmd, sizeof cmd, "%s emit-c %s/lin.nnd --train -o %s 2>&1 && cd %s && cc -std=c99 -Wall -Wextra -Werror -pedantic "
           "-O1 lin.c driver.c -o prog -lm 2>&1 && ./prog", NNDC_BIN, dir, dir, dir);
  int st;
  char *out = util_run(cmd, &st);
  cr_assert_eq(st, 0, "%s", out);
  double d0[4], d1[4];
  const char *s = strstr(out, "lin.c\n");   /* after emit-c's line */
  cr_assert(s, "%s", out);
  s += 6;
  for (int i = 0; i < 4; i++) {
    int n;
    cr_assert_eq(sscanf(s, "%lf %lf%n", &d0[i], &d1[i], &n), 2, "%s", out);
    s += n;
  }
  for (int i = 0; i < 3; i++) {
    cr_expect(d0[i] != 0, "W[%d] did not move: %s", i, out);
    cr_expect(fabs(d1[i] - d0[i] / 2) <= 1e-6 * fabs(d0[i]), "W[%d]: %g vs half of %g", i, d1[i], d0[i]);
  }
  cr_expect(d0[3] != 0 && d1[3] == 0, "b: %g then %g (lr 0)", d0[3], d1[3]);
  free(out);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  free(sh(cmd));
  free(dir);
}
