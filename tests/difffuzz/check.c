/* check.c - one program on every engine, compared with the reference.
 *
 * The reference is the double-precision interpreter.  For each program:
 * the forward pass (evaluation mode), then `steps` training steps (the
 * program's `# difffuzz: steps=K` line, default 2) whose outputs, loss,
 * metrics and gradients are recorded at every step, then the final params
 * and optimizer states.  The same runs are made by the JIT for every target
 * it can execute (NNDC_TARGET set before each compilation) and by emitted C
 * for every target (compiled with -std=c99 -O1 -Wall -Wextra -Werror
 * -pedantic and a generated driver, as in tests/test_emitc.c; emitted C has
 * no gradients to compare, its optimizer states hold them).  A value agrees
 * when |a - b| <= atol + rtol max(|a|, |b|) + srel scale, scale being the
 * largest |reference| of its tensor; i32 values must be equal.  After an
 * adaptive optimizer (Adam, RMSprop, Adagrad) a param element whose
 * gradient was a rounding-level residue at some step may move by up to
 * 2 lr per step and its states are noise: such elements are forgiven, and
 * when one of them moved differently the later steps are not compared.
 *
 * Everything runs in a child process, so a crash or a hang of the compiler
 * is reported as a class of its own instead of ending the fuzzer. */
#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "codegen/codegen.h"
#include "tests/util.h"
#include "gen.h"

/* Tolerances; DIFFFUZZ_TOL=atol,rtol,srel overrides them (0,0,0 shows that every value is compared). */
static double ATOL = 1e-5, RTOL = 1e-3, SREL = 2e-4;

static void tolerances(void) {
  const char *s = getenv("DIFFFUZZ_TOL");
  if (s) sscanf(s, "%lf,%lf,%lf", &ATOL, &RTOL, &SREL);
}

/* One recorded tensor: "fwd o1", "step2 loss", "step1 grad p3", "final param p3". */
typedef struct Rec {
  char label[112];
  int i32;
  int64_t n;
  float *v;            /* owned */
} Rec;

typedef struct Recs {
  Rec *r;
  int n, cap;
} Recs;

static void rec_add(Recs *rs, const char *label, int i32, const void *v, int64_t n) {
  if (rs->n == rs->cap) {
    rs->cap = rs->cap ? rs->cap * 2 : 32;
    rs->r = realloc(rs->r, (size_t)rs->cap * sizeof *rs->r);
    if (!rs->r) abort();
  }
  Rec *r = &rs->r[rs->n++];
  snprintf(r->label, sizeof r->label, "%s", label);
  r->i32 = i32;
  r->n = n;
  r->v = malloc((size_t)n * 4 + 4);
  if (!r->v) abort();
  if (v) memcpy(r->v, v, (size_t)n * 4);
}

static void recs_free(Recs *rs) {
  for (int i = 0; i < rs->n; i++) free(rs->r[i].v);
  free(rs->r);
  rs->r = NULL;
  rs->n = rs->cap = 0;
}

static const Rec *rec_find(const Recs *rs, const char *label) {
  for (int i = 0; i < rs->n; i++)
    if (!strcmp(rs->r[i].label, label)) return &rs->r[i];
  return NULL;
}

__attribute__((format(printf, 4, 5)))
static void fail(CheckResult *r, const char *cls, const char *where, const char *fmt, ...) {
  if (r->cls[0]) return;   /* the first failure is the one reported */
  snprintf(r->cls, sizeof r->cls, "%s", cls);
  snprintf(r->where, sizeof r->where, "%s", where);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->detail, sizeof r->detail, fmt, ap);
  va_end(ap);
}

/* ------------------------------------------------------------------ model */

/* A program compiled for one engine: the forward and the training graph. */
typedef struct Prog {
  Arena a;
  Diag d;
  Graph g, tg;
  ModelState ms;
  int has_ms;
} Prog;

static int prog_build(Prog *p, const char *text) {
  arena_init(&p->a);
  diag_init(&p->d);
  graph_init(&p->g, &p->a);
  graph_init(&p->tg, &p->a);
  p->has_ms = 0;
  BuildOpts fo = {NULL, 0, NULL, 0, 0, 0}, to = {NULL, 0, NULL, 0, 1, 0};
  if (fe_compile_string(&p->d, &p->g, "fz.nnd", text, &fo) || fe_compile_string(&p->d, &p->tg, "fz.nnd", text, &to))
    return -1;
  if (!p->tg.loss) {
    diag_error(&p->d, (Loc){0}, "difffuzz: the program has no loss");
    return -1;
  }
  if (pass_autodiff(&p->d, &p->tg) || pass_optim(&p->d, &p->tg)) return -2;
  if (model_state_init(&p->d, &p->tg, &p->ms, p->tg.train.seed)) return -2;
  p->has_ms = 1;
  return 0;
}

static void prog_free(Prog *p) {
  if (p->has_ms) model_state_free(&p->tg, &p->ms);
  diag_free(&p->d);
  arena_free(&p->a);
}

static int out_nodes(const Graph *g, Node **n, const char **name) {
  int k = 0;
  for (int i = 0; i < g->noutputs; i++) name[k] = g->outputs[i].name, n[k++] = g->outputs[i].node;
  if (g->loss) name[k] = "loss", n[k++] = g->loss;
  for (int i = 0; i < g->nmetrics; i++) name[k] = g->metrics[i].name, n[k++] = g->metrics[i].node;
  return k;
}

static int steps_of(const char *text) {
  const char *s = strstr(text, "# difffuzz: steps=");
  int k = s ? atoi(s + 18) : 2;
  return k < 1 ? 1 : k > 5 ? 5 : k;
}

static uint64_t hash_text(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* Inputs of g: f32 uniform in [-2, 2], i32 in [0, 4), keyed by the text. */
static void **make_inputs(const Graph *g, uint64_t key) {
  void **in = calloc((size_t)g->ninputs + 1, sizeof *in);
  for (int i = 0; i < g->ninputs; i++) {
    const Node *n = g->inputs[i].node;
    int64_t k = shape_numel(&n->shape);
    in[i] = calloc((size_t)k + 1, 4);
    for (int64_t j = 0; j < k; j++) {
      float u = rng_uniform(key, 1000 + (uint64_t)i, (uint64_t)j);
      if (n->dt == DT_F32) ((float *)in[i])[j] = -2 + 4 * u;
      else ((int32_t *)in[i])[j] = (int32_t)(u * 4) & 3;
    }
  }
  return in;
}

static void set_target(const char *t) {
  if (t && *t) setenv("NNDC_TARGET", t, 1);
  else unsetenv("NNDC_TARGET");
}

/* ---------------------------------------------------------------- engines */

/* The forward pass and the training steps on engine kind. */
static int run_engine(const char *text, EngineKind kind, int threads, int steps, uint64_t key, Recs *out,
                      CheckResult *r, const char *who) {
  Prog p;
  int rc = prog_build(&p, text);
  if (rc) {
    fail(r, rc == -1 ? "reject" : "pass-error", who, "%s", p.d.buf ? p.d.buf : "");
    prog_free(&p);
    return -1;
  }
  void **in = make_inputs(&p.g, key);
  Node *roots[256];
  const char *names[256];
  char label[160];
  EngineOpts eo = {kind, threads, 0};
  int n = out_nodes(&p.g, roots, names), ret = -1;
  Engine *e = engine_new(&p.d, &p.g, roots, n, &eo);
  if (!e) {
    fail(r, "compile-error", who, "forward: %s", p.d.buf ? p.d.buf : "");
    goto done;
  }
  for (int i = 0; i < p.g.nparams; i++) engine_bind(e, p.g.params[i].node, p.ms.params[i]);
  for (int i = 0; i < p.g.ninputs; i++) engine_bind(e, p.g.inputs[i].node, in[i]);
  RunCtx ctx = {p.g.train.seed, 1, 0};
  if (engine_run(e, &p.d, &ctx)) {
    fail(r, "run-error", who, "forward: %s", p.d.buf ? p.d.buf : "");
    engine_free(e);
    goto done;
  }
  for (int i = 0; i < n; i++) {
    snprintf(label, sizeof label, "fwd %s", names[i]);
    rec_add(out, label, roots[i]->dt == DT_I32, engine_value(e, roots[i]), shape_numel(&roots[i]->shape));
  }
  engine_free(e);

  Graph *tg = &p.tg;
  int nt = out_nodes(tg, roots, names), ng = 0;
  Node *gr[128];
  const char *gname[128];
  for (int i = 0; i < tg->nparams && i < 128; i++)
    if (tg->grads && tg->grads[i]) gr[ng] = tg->grads[i], gname[ng++] = tg->params[i].name;
  int nr = nt;
  for (int i = 0; i < ng && nr < 250; i++) roots[nr++] = gr[i];
  for (int i = 0; i < tg->nupdates && nr < 256; i++) roots[nr++] = tg->updates[i];
  e = engine_new(&p.d, tg, roots, nr, &eo);
  if (!e) {
    fail(r, "compile-error", who, "training step: %s", p.d.buf ? p.d.buf : "");
    goto done;
  }
  for (int i = 0; i < tg->nparams; i++) engine_bind(e, tg->params[i].node, p.ms.params[i]);
  for (int i = 0; i < tg->nstates; i++) engine_bind(e, tg->states[i].node, p.ms.states[i]);
  for (int i = 0; i < tg->ninputs; i++) engine_bind(e, tg->inputs[i].node, in[i]);
  for (int s = 1; s <= steps; s++) {
    RunCtx tctx = {tg->train.seed, s, 1};
    if (engine_run(e, &p.d, &tctx)) {
      fail(r, "run-error", who, "step %d: %s", s, p.d.buf ? p.d.buf : "");
      engine_free(e);
      goto done;
    }
    for (int i = 0; i < nt; i++) {
      snprintf(label, sizeof label, "step%d %s", s, names[i]);
      rec_add(out, label, roots[i]->dt == DT_I32, engine_value(e, roots[i]), shape_numel(&roots[i]->shape));
    }
    for (int i = 0; i < ng; i++) {
      snprintf(label, sizeof label, "step%d grad %s", s, gname[i]);
      rec_add(out, label, 0, engine_value(e, gr[i]), shape_numel(&gr[i]->shape));
    }
  }
  for (int i = 0; i < tg->nparams; i++) {
    snprintf(label, sizeof label, "final param %s", tg->params[i].name);
    rec_add(out, label, 0, p.ms.params[i], shape_numel(&tg->params[i].node->shape));
  }
  for (int i = 0; i < tg->nstates; i++) {
    snprintf(label, sizeof label, "final state %s", tg->states[i].name);
    rec_add(out, label, 0, p.ms.states[i], shape_numel(&tg->states[i].node->shape));
  }
  engine_free(e);
  ret = 0;
done:
  for (int i = 0; i < p.g.ninputs; i++) free(in[i]);
  free(in);
  prog_free(&p);
  return ret;
}

/* ------------------------------------------------------------- emitted C */


/* Field `kind` of every name of v (params, inputs, outputs, states) as "  EXPR;\n" lines. */
typedef enum { F_READ_PARAM, F_READ_INPUT, F_ALLOC_OUT, F_WRITE_OUT, F_ALLOC_STATE, F_WRITE_PARAM, F_WRITE_STATE } Field;

static void field(Buf *t, Field f, const char *name) {
  char *id = util_c_ident(name), *U = util_c_upper(name);
  switch (f) {
  case F_READ_PARAM: buf_printf(t, "  p.%s = rd(f, FZ_PARAM_%s_SIZE);\n", id, U); break;
  case F_READ_INPUT: buf_printf(t, "  in.%s = rd(f, FZ_INPUT_%s_SIZE);\n", id, U); break;
  case F_ALLOC_OUT: buf_printf(t, "  out.%s = malloc(FZ_OUTPUT_%s_SIZE * 4 + 4);\n", id, U); break;
  case F_WRITE_OUT: buf_printf(t, "  fwrite(out.%s, 4, FZ_OUTPUT_%s_SIZE, o);\n", id, U); break;
  case F_ALLOC_STATE: buf_printf(t, "  s.%s = calloc(FZ_STATE_%s_SIZE + 1, 4);\n", id, U); break;
  case F_WRITE_PARAM: buf_printf(t, "  fwrite(p.%s, 4, FZ_PARAM_%s_SIZE, o);\n", id, U); break;
  case F_WRITE_STATE: buf_printf(t, "  fwrite(s.%s, 4, FZ_STATE_%s_SIZE, o);\n", id, U); break;
  }
  free(id);
  free(U);
}

/* The driver: reads params and inputs from argv[1]; writes the forward
 * results, each step's results, the final params and states to argv[2]. */
static char *driver(const Prog *p, int steps) {
  const Graph *g = &p->g, *tg = &p->tg;
  Node *nodes[256];
  const char *names[256];
  int n = out_nodes(g, nodes, names);
  Buf t = {0}, wr = {0};
  buf_printf(&t, "#include <stdio.h>\n#include <stdlib.h>\n#include \"fz.h\"\n\n");
  buf_printf(&t, "static void *rd(FILE *f, size_t n) {\n  void *p = malloc(n * 4 + 4);\n"
           "  if (!p || fread(p, 4, n, f) != n) exit(3);\n  return p;\n}\n\n");
  buf_printf(&t, "int main(int argc, char **argv) {\n  FILE *f, *o;\n  fz_params p;\n  fz_inputs in;\n  fz_outputs out;\n"
           "  fz_state s;\n  int k;\n  void *ws = malloc(fz_workspace_size() + 64);\n"
           "  if (argc != 3 || !(f = fopen(argv[1], \"rb\")) || !(o = fopen(argv[2], \"wb\"))) return 2;\n");
  for (int i = 0; i < g->nparams; i++) field(&t, F_READ_PARAM, g->params[i].name);
  for (int i = 0; i < g->ninputs; i++) field(&t, F_READ_INPUT, g->inputs[i].name);
  for (int i = 0; i < n; i++) field(&t, F_ALLOC_OUT, names[i]);
  for (int i = 0; i < n; i++) field(&wr, F_WRITE_OUT, names[i]);
  buf_printf(&t, "  fz_forward(&p, &in, &out, ws);\n%s", wr.s ? wr.s : "");
  buf_printf(&t, "  s.step = 0;\n");
  for (int i = 0; i < tg->nstates; i++) field(&t, F_ALLOC_STATE, tg->states[i].name);
  buf_printf(&t, "  for (k = 0; k < %d; k++) {\n    fz_train_step(&p, &s, &in, &out, ws);\n%s  }\n", steps, wr.s ? wr.s : "");
  buf_printf(&t, "  if (s.step != %d) return 4;\n", steps);
  for (int i = 0; i < g->nparams; i++) field(&t, F_WRITE_PARAM, g->params[i].name);
  for (int i = 0; i < tg->nstates; i++) field(&t, F_WRITE_STATE, tg->states[i].name);
  buf_printf(&t, "  return fclose(o) != 0;\n}\n");
  free(wr.s);
  return t.s;
}

static int write_data(const Prog *p, void **in, const char *path) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  for (int i = 0; i < p->g.nparams; i++) fwrite(p->ms.params[i], 4, (size_t)shape_numel(&p->g.params[i].node->shape), f);
  for (int i = 0; i < p->g.ninputs; i++) fwrite(in[i], 4, (size_t)shape_numel(&p->g.inputs[i].node->shape), f);
  return fclose(f);
}

/* The first lines of s (for a report). */
static void clip(char *dst, size_t n, const char *s) {
  snprintf(dst, n, "%s", s);
}

/* Emits C for the current target, builds and runs it; records like run_engine (without grads). */
static int run_c(const char *text, const CheckOpts *o, int steps, uint64_t key, Recs *out, CheckResult *r, const char *who) {
  Prog p;
  int rc = prog_build(&p, text), ret = -1;
  if (rc) {
    fail(r, rc == -1 ? "reject" : "pass-error", who, "%s", p.d.buf ? p.d.buf : "");
    prog_free(&p);
    return -1;
  }
  void **in = make_inputs(&p.g, key);
  char *h = NULL, *src = NULL, *dir = util_tmpdir(), path[1200], cmd[4096], *res = NULL;
  int st;
  if (c_emit(&p.d, &p.g, &p.tg, NULL, &h, &src)) {
    fail(r, "emit-error", who, "%s", p.d.buf ? p.d.buf : "");
    goto done;
  }
  snprintf(path, sizeof path, "%s/fz.h", dir);
  util_write_file(path, h);
  snprintf(path, sizeof path, "%s/fz.c", dir);
  util_write_file(path, src);
  char *drv = driver(&p, steps);
  snprintf(path, sizeof path, "%s/driver.c", dir);
  util_write_file(path, drv);
  free(drv);
  snprintf(path, sizeof path, "%s/data.bin", dir);
  write_data(&p, in, path);
  const char *flags = "-std=c99 -O1 -Wall -Wextra -Werror -pedantic";
  snprintf(cmd, sizeof cmd, "cd %s && %s %s %s -c fz.c -o fz.o", dir, o->cc, flags, o->openmp ? "-fopenmp" : "");
  res = util_run(cmd, &st);
  if (st) {
    int warn = strstr(res, "-Werror") || strstr(res, "warning:");
    fail(r, warn ? "cc-warning" : "cc-error", who, "%s (generated code kept in %s)\n", res, dir);
    free(res);
    res = NULL;
    free(dir);   /* keep the directory for the report */
    dir = NULL;
    goto done;
  }
  free(res);
  snprintf(cmd, sizeof cmd, "cd %s && %s %s %s driver.c fz.o -o prog -lm && OMP_NUM_THREADS=2 ./prog data.bin out.bin",
           dir, o->cc, flags, o->openmp ? "-fopenmp" : "");
  res = util_run(cmd, &st);
  if (st) {
    char c[1200];
    clip(c, sizeof c, res);
    fail(r, "c-run-error", who, "exit %d: %s", st, c);
    goto done;
  }
  snprintf(path, sizeof path, "%s/out.bin", dir);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fail(r, "c-run-error", who, "no output");
    goto done;
  }
  Node *roots[256];
  const char *names[256];
  int n = out_nodes(&p.g, roots, names), nt;
  char label[160];
  int short_read = 0;
  float *buf = NULL;
#define READ(lbl, i32v, cnt)                                                   \
  do {                                                                         \
    int64_t cnt_ = (cnt);                                                      \
    buf = realloc(buf, (size_t)cnt_ * 4 + 4);                                  \
    if (fread(buf, 4, (size_t)cnt_, f) != (size_t)cnt_) short_read = 1;        \
    rec_add(out, lbl, i32v, buf, cnt_);                                        \
  } while (0)
  for (int i = 0; i < n; i++) {
    snprintf(label, sizeof label, "fwd %s", names[i]);
    READ(label, roots[i]->dt == DT_I32, shape_numel(&roots[i]->shape));
  }
  nt = out_nodes(&p.tg, roots, names);
  for (int s = 1; s <= steps; s++)
    for (int i = 0; i < n && i < nt; i++) {
      snprintf(label, sizeof label, "step%d %s", s, names[i]);
      READ(label, roots[i]->dt == DT_I32, shape_numel(&roots[i]->shape));
    }
  for (int i = 0; i < p.tg.nparams; i++) {
    snprintf(label, sizeof label, "final param %s", p.tg.params[i].name);
    READ(label, 0, shape_numel(&p.tg.params[i].node->shape));
  }
  for (int i = 0; i < p.tg.nstates; i++) {
    snprintf(label, sizeof label, "final state %s", p.tg.states[i].name);
    READ(label, 0, shape_numel(&p.tg.states[i].node->shape));
  }
#undef READ
  free(buf);
  fclose(f);
  if (short_read) fail(r, "c-run-error", who, "the driver wrote fewer values than expected");
  else ret = 0;
done:
  free(res);
  if (dir) {
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    free(util_run(cmd, &st));
    free(dir);
  }
  free(h);
  free(src);
  for (int i = 0; i < p.g.ninputs; i++) free(in[i]);
  free(in);
  prog_free(&p);
  return ret;
}

/* ------------------------------------------------------------- comparison */

static int finite_all(const Recs *rs) {
  for (int i = 0; i < rs->n; i++)
    if (!rs->r[i].i32)
      for (int64_t j = 0; j < rs->r[i].n; j++)
        if (!isfinite(rs->r[i].v[j])) return 0;
  return 1;
}

/* The largest |gradient| of the reference, over every param and step. */
static double grad_scale(const Recs *ref) {
  double m = 0;
  for (int i = 0; i < ref->n; i++)
    if (strstr(ref->r[i].label, " grad "))
      for (int64_t j = 0; j < ref->r[i].n; j++) m = fmax(m, fabs(ref->r[i].v[j]));
  return m;
}

/* Whether param element j of `param` had a rounding-level gradient at some
 * step: small beside its tensor's gradient or beside every gradient (a
 * param whose gradient is 0 in exact arithmetic gets residues only). */
static int residue_grad(const Recs *ref, const char *param, int64_t j, int steps, double gscale) {
  char label[160];
  for (int s = 1; s <= steps; s++) {
    snprintf(label, sizeof label, "step%d grad %s", s, param);
    const Rec *g = rec_find(ref, label);
    if (!g) return 1;   /* no gradient reaches it */
    double scale = 0;
    for (int64_t i = 0; i < g->n; i++) scale = fmax(scale, fabs(g->v[i]));
    if (fabs(g->v[j]) <= 1e-3 * scale + 1e-4 * gscale + 1e-7) return 1;
  }
  return 0;
}

/* The param a state belongs to ("p3.exp_avg" -> "p3"), in buf. */
static const char *owner(const char *state, char *buf, size_t n) {
  snprintf(buf, n, "%s", state);
  char *dot = strrchr(buf, '.');
  if (dot) *dot = 0;
  return buf;
}

static int within(double x, double y, double scale) {
  return isfinite(x) && fabs(x - y) <= ATOL + RTOL * fmax(fabs(x), fabs(y)) + SREL * scale;
}

/* The largest step an adaptive optimizer takes on one element per step
 * whatever its gradient (so also for a residue's): lr for Adam and Adagrad
 * (g / sqrt(g^2)); lr / sqrt(1 - alpha) for RMSprop's first steps (its
 * average starts at 0), over (1 - momentum) with momentum. */
static double max_step(const OptimCfg *opt) {
  double s = opt->lr;
  if (opt->kind == OPTIM_RMSPROP) s /= sqrt(1 - fmin(opt->alpha, 0.999999));
  if (opt->momentum > 0 && opt->momentum < 1) s /= 1 - opt->momentum;
  return s;
}

/* Whether an adaptive optimizer moved some param element that only had a
 * rounding-level gradient differently on the two engines: a sign-like step
 * of a residue is noise, and everything computed after it (the later steps,
 * that element's states) is not comparable. */
static int noisy_update(const Recs *ref, const Recs *got, int steps, double gscale) {
  for (int i = 0; i < got->n; i++) {
    const Rec *b = &got->r[i], *a = rec_find(ref, b->label);
    if (!a || a->n != b->n || strncmp(b->label, "final param ", 12)) continue;
    double scale = 0;
    for (int64_t j = 0; j < a->n; j++) scale = fmax(scale, fabs(a->v[j]));
    for (int64_t j = 0; j < a->n; j++)
      if (!within(b->v[j], a->v[j], scale) && residue_grad(ref, b->label + 12, j, steps, gscale)) return 1;
  }
  return 0;
}

/* Compares every record of got with ref's; fails r on the first mismatch. */
static void compare(const Recs *ref, const Recs *got, const OptimCfg *opt, int steps, CheckResult *r, const char *who) {
  int adaptive = opt->kind == OPTIM_ADAM || opt->kind == OPTIM_ADAMW || opt->kind == OPTIM_RMSPROP || opt->kind == OPTIM_ADAGRAD;
  double gscale = grad_scale(ref);
  int noisy = adaptive && noisy_update(ref, got, steps, gscale);
  for (int i = 0; i < got->n; i++) {
    const Rec *b = &got->r[i], *a = rec_find(ref, b->label);
    if (!a) continue;
    int step = !strncmp(b->label, "step", 4) ? atoi(b->label + 4) : 0;
    if (noisy && step >= 2) continue;
    char where[64];
    snprintf(where, sizeof where, "%.40s %s", b->label, who);
    if (a->n != b->n) {
      fail(r, "mismatch", where, "%s: %lld values, the reference has %lld", b->label, (long long)b->n, (long long)a->n);
      return;
    }
    double scale = 0;
    if (!a->i32)
      for (int64_t j = 0; j < a->n; j++) scale = fmax(scale, fabs(a->v[j]));
    int bad = 0;
    char msg[1024] = "", own[128];
    size_t ml = 0;
    int is_param = !strncmp(b->label, "final param ", 12), is_state = !strncmp(b->label, "final state ", 12);
    const char *param = is_param ? b->label + 12 : is_state ? owner(b->label + 12, own, sizeof own) : NULL;
    for (int64_t j = 0; j < a->n; j++) {
      int ok;
      double x = 0, y = 0;
      if (a->i32) {
        int32_t p, q;
        memcpy(&p, &a->v[j], 4);
        memcpy(&q, &b->v[j], 4);
        ok = p == q, x = q, y = p;
      } else {
        x = b->v[j], y = a->v[j];
        ok = within(x, y, scale);
        /* a residue's step: at most `step` per step on a param (see max_step); its states are noise */
        if (!ok && adaptive && param && isfinite(x) && (is_state || fabs(x - y) <= 2 * max_step(opt) * steps * 1.01 + ATOL) &&
            residue_grad(ref, param, j, steps, gscale))
          ok = 1;
      }
      if (!ok) {
        if (bad < 3 && ml < sizeof msg - 200)
          ml += (size_t)snprintf(msg + ml, sizeof msg - ml, "%s[%lld]: got %.9g, want %.9g (scale %.3g)\n", b->label,
                                 (long long)j, x, y, scale);
        bad++;
      }
    }
    if (bad) {
      fail(r, "mismatch", where, "%d of %lld values differ\n%s", bad, (long long)a->n, msg);
      return;
    }
  }
}

/* ------------------------------------------------------------------ child */

static void check_child(const char *text, const CheckOpts *o, CheckResult *r) {
  tolerances();
  int steps = steps_of(text);
  uint64_t key = hash_text(text);
  Recs ref = {0}, got = {0};
  snprintf(r->where, sizeof r->where, "interp");
  set_target(NULL);
  if (run_engine(text, ENGINE_INTERP, 1, steps, key, &ref, r, "interp")) goto done;
  if (!finite_all(&ref)) {
    r->skipped = 1;
    goto done;
  }
  /* the optimizer of the program, for the comparison of params */
  Prog p;
  OptimCfg opt = {0};
  if (!prog_build(&p, text)) opt = p.tg.train.opt;
  prog_free(&p);
  for (int t = 0; t < o->njit && !r->cls[0]; t++) {
    char who[48];
    snprintf(who, sizeof who, "jit");
    snprintf(r->target, sizeof r->target, "%s", o->jit_targets[t]);
    snprintf(r->where, sizeof r->where, "jit (running)");
    set_target(o->jit_targets[t]);
    if (!run_engine(text, ENGINE_JIT, o->threads, steps, key, &got, r, who)) compare(&ref, &got, &opt, steps, r, who);
    recs_free(&got);
  }
  for (int t = 0; o->emit_c && t < o->ntargets && !r->cls[0]; t++) {
    snprintf(r->target, sizeof r->target, "%s", o->targets[t]);
    snprintf(r->where, sizeof r->where, "c (running)");
    set_target(o->targets[t]);
    if (!run_c(text, o, steps, key, &got, r, "c")) compare(&ref, &got, &opt, steps, r, "c");
    recs_free(&got);
  }
done:
  set_target(NULL);
  if (!r->cls[0]) r->target[0] = 0;
  recs_free(&ref);
  recs_free(&got);
}

int check_program(const char *text, const CheckOpts *o, CheckResult *out) {
  CheckResult *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) abort();
  memset(r, 0, sizeof *r);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) abort();
  if (pid == 0) {
    setpgid(0, 0);   /* the compilers it starts die with it */
    alarm((unsigned)(o->timeout_s > 0 ? o->timeout_s : 300));
    check_child(text, o, r);
    _exit(0);
  }
  setpgid(pid, pid);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {}
  *out = *r;
  munmap(r, sizeof *r);
  if (WIFSIGNALED(st)) {
    int sig = WTERMSIG(st);
    kill(-pid, SIGKILL);   /* its own process group: compilers and drivers it left */
    char where[48];
    snprintf(where, sizeof where, "%s", out->where);
    char *p = strstr(where, " (running)");
    if (p) *p = 0;
    memset(out->cls, 0, sizeof out->cls);
    snprintf(out->cls, sizeof out->cls, "%s", sig == SIGALRM ? "timeout" : "crash");
    snprintf(out->where, sizeof out->where, "%s", where);
    snprintf(out->detail, sizeof out->detail, "signal %d (%s)", sig, strsignal(sig));
    out->skipped = 0;
  } else if (WIFEXITED(st) && WEXITSTATUS(st) && !out->cls[0]) {
    snprintf(out->cls, sizeof out->cls, "crash");
    snprintf(out->detail, sizeof out->detail, "exit status %d", WEXITSTATUS(st));
  }
  return out->cls[0] != 0;
}
