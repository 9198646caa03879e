/* test_resume.c - exact resume: a training run stopped after some steps,
 * saved as a training checkpoint and continued from it in a fresh model
 * state ends bit for bit where an uninterrupted run ends (params, batch_norm
 * running statistics, optimizer state, step), for sgd with momentum and adam,
 * with dropout and shuffling; broken or mismatched checkpoints are clear
 * errors; and the command line's --save-every / --resume. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "util.h"

/* A small model with everything that carries state across steps: dropout
 * (noise keyed by the step), batch_norm (running statistics) and the
 * optimizer's buffers. */
static const char *MODEL =
    "input x: f32[N, 12]\n"
    "input y: i32[N]\n"
    "param W1: f32[12, 16]\n"
    "param b1: f32[16]\n"
    "param g: f32[16] = ones\n"
    "param be: f32[16]\n"
    "param W2: f32[16, 4]\n"
    "param b2: f32[4]\n"
    "bn = batch_norm(x @ W1 + b1, g, be)\n"
    "h = dropout(relu(bn), 0.25)\n"
    "logits = h @ W2 + b2\n"
    "loss = cross_entropy(logits, y)\n"
    "metric accuracy = mean(argmax(logits, axis=1) == y)\n"
    "train {\n  batch = 8\n  epochs = 3\n}\n";

enum { NS = 100, NX = 12 };   /* 12 steps per epoch, 4 samples dropped */

typedef struct Run {
  UtilGraph t;
  Dataset ds;
  const Node *in[2];
  Array arr[2];
} Run;

static void run_init(Run *r, OptimKind k) {
  util_graph_init(&r->t);
  BuildOpts bo = {NULL, 0, NULL, 0, 1, 0};
  cr_assert_eq(util_compile(&r->t.d, &r->t.g, MODEL, &bo), 0, "%s", r->t.d.buf);
  Graph *g = &r->t.g;
  OptimCfg o = {k, k == OPTIM_SGD ? 0.05 : 0.01, 0.9, 0.9, 0.999, 1e-8, 0.99, 0, 0};
  g->train.opt = o;
  g->train.seed = 7;
  cr_assert_eq(pass_autodiff(&r->t.d, g), 0);
  cr_assert_eq(pass_optim(&r->t.d, g), 0);
  r->arr[0] = (Array){EL_F32, {2, {NS, NX}}, malloc(NS * NX * 4)};
  r->arr[1] = (Array){EL_I32, {1, {NS}}, malloc(NS * 4)};
  util_fill(r->arr[0].data, NS * NX, 11, -1, 1);
  for (int i = 0; i < NS; i++) ((int32_t *)r->arr[1].data)[i] = (i * 7 + 3) % 4;
  for (int i = 0; i < 2; i++)
    for (int k2 = 0; k2 < g->ninputs; k2++)
      if (!strcmp(g->inputs[k2].name, i ? "y" : "x")) r->in[i] = g->inputs[k2].node;
  r->ds = (Dataset){2, r->in, r->arr, NS};
}

static void run_fini(Run *r) {
  array_free(&r->arr[0]);
  array_free(&r->arr[1]);
  util_graph_fini(&r->t);
}

static TrainOpts opts(int64_t epochs) {
  TrainOpts o;
  memset(&o, 0, sizeof o);
  o.engine.kind = ENGINE_JIT;
  o.epochs = epochs;
  o.shuffle = 1;
  o.seed = 7;
  return o;
}

static void same_state(const Graph *g, const ModelState *a, const ModelState *b) {
  cr_assert_eq(a->step, b->step, "step %lld != %lld", (long long)a->step, (long long)b->step);
  cr_assert_eq(a->epoch, b->epoch);
  cr_assert_eq(a->batch, b->batch);
  for (int i = 0; i < g->nparams; i++)
    cr_assert_eq(memcmp(a->params[i], b->params[i], (size_t)shape_numel(&g->params[i].node->shape) * 4), 0,
                 "param %s differs", g->params[i].name);
  for (int i = 0; i < g->nstates; i++)
    cr_assert_eq(memcmp(a->states[i], b->states[i], (size_t)shape_numel(&g->states[i].node->shape) * 4), 0,
                 "optimizer state %s differs", g->states[i].name);
  for (int i = 0; i < a->nsums; i++) cr_assert_eq(a->sums[i], b->sums[i], "sum %d differs", i);
}

/* Uninterrupted 3 epochs against: stop after `stop` steps with a checkpoint
 * every `every` steps, then go on from the last one in a fresh state. */
static void resume_exact(OptimKind k, int64_t stop, int64_t every) {
  Run r;
  run_init(&r, k);
  Graph *g = &r.t.g;
  Diag *d = &r.t.d;
  char *dir = util_tmpdir(), ck[512];
  snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
  ModelState full, a, b;
  TrainOpts o = opts(3);
  cr_assert_eq(model_state_init(d, g, &full, 7), 0);
  cr_assert_eq(rt_train(d, g, NULL, NULL, &full, &r.ds, NULL, &o), 0, "%s", d->buf);
  cr_assert_eq(full.step, 36);

  cr_assert_eq(model_state_init(d, g, &a, 7), 0);
  o.save_path = ck;
  o.save_every = every;
  o.max_steps = stop;
  cr_assert_eq(rt_train(d, g, NULL, NULL, &a, &r.ds, NULL, &o), 0, "%s", d->buf);
  cr_assert_eq(a.step, stop);

  cr_assert_eq(model_state_init(d, g, &b, 99), 0);   /* another seed: everything must come from ck */
  cr_assert_eq(ckpt_load_train(d, ck, g, &b), 0, "%s", d->buf);
  cr_assert_eq(b.step, stop / every * every);
  cr_assert(b.resumed);
  o.save_path = NULL;
  o.max_steps = 0;
  cr_assert_eq(rt_train(d, g, NULL, NULL, &b, &r.ds, NULL, &o), 0, "%s", d->buf);
  same_state(g, &full, &b);
  model_state_free(g, &full);
  model_state_free(g, &a);
  model_state_free(g, &b);
  run_fini(&r);
  free(dir);
}

Test(resume, sgd_momentum_mid_epoch_is_bit_exact, .timeout = 120) { resume_exact(OPTIM_SGD, 17, 5); }
Test(resume, adam_mid_epoch_is_bit_exact, .timeout = 120) { resume_exact(OPTIM_ADAM, 17, 5); }
Test(resume, adam_at_epoch_end_is_bit_exact, .timeout = 120) { resume_exact(OPTIM_ADAM, 24, 12); }
Test(resume, first_step_is_bit_exact, .timeout = 120) { resume_exact(OPTIM_SGD, 1, 1); }

/* Writes a training checkpoint of a fresh state after 3 steps; returns its path. */
static char *trained_ckpt(Run *r, const char *dir) {
  ModelState ms;
  TrainOpts o = opts(1);
  o.max_steps = 3;
  cr_assert_eq(model_state_init(&r->t.d, &r->t.g, &ms, 7), 0);
  cr_assert_eq(rt_train(&r->t.d, &r->t.g, NULL, NULL, &ms, &r->ds, NULL, &o), 0);
  char *p = malloc(strlen(dir) + 32);
  sprintf(p, "%s/t.safetensors", dir);
  cr_assert_eq(ckpt_save_train(&r->t.d, p, &r->t.g, &ms, &ms.key), 0);
  model_state_free(&r->t.g, &ms);
  return p;
}

/* ckpt_load_train must fail, leave ms untouched and say `want`. */
static void load_fails(Run *r, const char *path, const char *want) {
  ModelState ms;
  cr_assert_eq(model_state_init(&r->t.d, &r->t.g, &ms, 7), 0);
  float before = ms.params[0][0];
  diag_clear(&r->t.d);
  cr_assert_eq(ckpt_load_train(&r->t.d, path, &r->t.g, &ms), -1, "loaded %s", path);
  cr_assert(strstr(r->t.d.buf, want), "want '%s' in: %s", want, r->t.d.buf);
  cr_assert_eq(ms.params[0][0], before);
  cr_assert_eq(ms.step, 0);
  cr_assert_eq(ms.resumed, 0);
  model_state_free(&r->t.g, &ms);
}

Test(resume, broken_checkpoints_are_clear_errors, .timeout = 120) {
  Run r;
  run_init(&r, OPTIM_ADAM);
  char *dir = util_tmpdir(), p[600], cmd[1400];
  char *ck = trained_ckpt(&r, dir);
  int st;
  /* truncated in the data, and in the header */
  snprintf(p, sizeof p, "%s/trunc.safetensors", dir);
  snprintf(cmd, sizeof cmd, "head -c -100 %s > %s", ck, p);
  free(util_run(cmd, &st));
  load_fails(&r, p, "data section");
  snprintf(cmd, sizeof cmd, "head -c 40 %s > %s", ck, p);
  free(util_run(cmd, &st));
  load_fails(&r, p, "header length");
  /* garbage */
  snprintf(p, sizeof p, "%s/junk.safetensors", dir);
  cr_assert_eq(util_write_file(p, "not a checkpoint at all"), 0);
  load_fails(&r, p, "error");
  /* params only: no optimizer state, no counters */
  ModelState ms;
  cr_assert_eq(model_state_init(&r.t.d, &r.t.g, &ms, 7), 0);
  snprintf(p, sizeof p, "%s/params.safetensors", dir);
  cr_assert_eq(ckpt_save(&r.t.d, p, &r.t.g, ms.params), 0);
  load_fails(&r, p, "missing optimizer state 'W1.exp_avg'");
  /* the counters: a metadata value that is not a number */
  snprintf(p, sizeof p, "%s/meta.safetensors", dir);
  snprintf(cmd, sizeof cmd, "sed 's/\"step\":\"3\"/\"step\":\"z\"/' %s > %s", ck, p);
  free(util_run(cmd, &st));
  load_fails(&r, p, "metadata 'step' is not a non-negative integer");
  /* a checkpoint of another optimizer */
  Run s;
  run_init(&s, OPTIM_SGD);
  load_fails(&s, ck, "missing optimizer state 'W1.momentum_buffer'");
  run_fini(&s);
  /* a directory cannot resume */
  load_fails(&r, dir, "needs a .safetensors");
  /* the params of a training checkpoint load alone without a warning */
  diag_clear(&r.t.d);
  cr_assert_eq(ckpt_load(&r.t.d, ck, &r.t.g, ms.params), 0);
  cr_assert_eq(r.t.d.len, 0, "%s", r.t.d.buf);
  model_state_free(&r.t.g, &ms);
  free(ck);
  free(dir);
  run_fini(&r);
}

Test(resume, another_batch_or_seed_is_refused, .timeout = 120) {
  Run r;
  run_init(&r, OPTIM_ADAM);
  char *dir = util_tmpdir();
  char *ck = trained_ckpt(&r, dir);
  ModelState ms;
  cr_assert_eq(model_state_init(&r.t.d, &r.t.g, &ms, 7), 0);
  cr_assert_eq(ckpt_load_train(&r.t.d, ck, &r.t.g, &ms), 0);
  TrainOpts o = opts(1);
  o.seed = 8;
  diag_clear(&r.t.d);
  cr_assert_eq(rt_train(&r.t.d, &r.t.g, NULL, NULL, &ms, &r.ds, NULL, &o), -1);
  cr_assert(strstr(r.t.d.buf, "another seed"), "%s", r.t.d.buf);
  model_state_free(&r.t.g, &ms);
  free(ck);
  free(dir);
  run_fini(&r);
}

Test(st, metadata_round_trips) {
  Diag d;
  diag_init(&d);
  char *dir = util_tmpdir(), p[512];
  snprintf(p, sizeof p, "%s/m.safetensors", dir);
  float v[3] = {1, 2, 3};
  NamedTensor t = {"a", {1, {3}}, v};
  StMeta m[2] = {{"k\"ey", "va\\lue\n"}, {"step", "12"}};
  cr_assert_eq(st_write_meta(&d, p, &t, 1, m, 2), 0);
  NamedTensor *out;
  StMeta *mo;
  int n, nm;
  cr_assert_eq(st_read_meta(&d, p, &out, &n, &mo, &nm), 0, "%s", d.buf);
  cr_assert_eq(n, 1);
  cr_assert_eq(nm, 2);
  cr_assert_str_eq(mo[0].key, "k\"ey");
  cr_assert_str_eq(mo[0].value, "va\\lue\n");
  cr_assert_str_eq(mo[1].value, "12");
  cr_assert_eq(memcmp(out[0].data, v, sizeof v), 0);
  st_free(out, n);
  st_meta_free(mo, nm);
  cr_assert_eq(st_read(&d, p, &out, &n), 0);   /* plain readers skip it */
  st_free(out, n);
  diag_free(&d);
  free(dir);
}

/* ---------------------------------------------------------- command line */

static void write_data(const char *dir) {
  char p[600];
  Shape sx = {2, {NS, NX}}, sy = {1, {NS}};
  float x[NS * NX];
  int32_t y[NS];
  util_fill(x, NS * NX, 5, -1, 1);
  for (int i = 0; i < NS; i++) y[i] = i % 4;
  Diag d;
  diag_init(&d);
  snprintf(p, sizeof p, "%s/x.npy", dir);
  cr_assert_eq(npy_write(&d, p, EL_F32, &sx, x), 0);
  snprintf(p, sizeof p, "%s/y.npy", dir);
  cr_assert_eq(npy_write(&d, p, EL_I32, &sy, y), 0);
  snprintf(p, sizeof p, "%s/m.nnd", dir);
  cr_assert_eq(util_write_file(p, MODEL), 0);
  diag_free(&d);
}

Test(resume_cli, save_every_and_resume_match_one_run, .timeout = 300) {
  char *dir = util_tmpdir();
  write_data(dir);
  int st;
  char *out;
#define DATA "%s/m.nnd --data x=%s/x.npy --data y=%s/y.npy --seed 3"
  out = util_nndc(&st, "train " DATA " --epochs 3 --save %s/full.safetensors", dir, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  out = util_nndc(&st, "train " DATA " --epochs 2 --save %s/part.safetensors --save-every 5", dir, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert(strstr(out, "(step 24)"), "%s", out);
  free(out);
  out = util_nndc(&st, "train " DATA " --epochs 3 --load %s/part.safetensors --resume --save %s/res.safetensors", dir, dir, dir,
             dir, dir);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert(strstr(out, "resuming after step 24 (epoch 2)"), "%s", out);
  cr_assert(!strstr(out, "epoch 2/3:"), "epoch 2 reported again: %s", out);
  cr_assert(strstr(out, "epoch 3/3:"), "%s", out);
  free(out);
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cmp %s/full.safetensors %s/res.safetensors", dir, dir);
  out = util_run(cmd, &st);
  cr_assert_eq(st, 0, "resumed checkpoint differs from one run: %s", out);
  free(out);
  /* --load without --resume: params only, the optimizer state skipped silently */
  out = util_nndc(&st, "train " DATA " --epochs 1 --load %s/part.safetensors", dir, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert(!strstr(out, "warning"), "%s", out);
  cr_assert(!strstr(out, "resuming"), "%s", out);
  free(out);
  /* another batch cannot resume */
  out = util_nndc(&st, "train " DATA " --batch 4 --load %s/part.safetensors --resume", dir, dir, dir, dir);
  cr_assert_eq(st, 1, "%s", out);
  cr_assert(strstr(out, "another batch"), "%s", out);
  free(out);
  /* a truncated checkpoint */
  snprintf(cmd, sizeof cmd, "head -c 1000 %s/part.safetensors > %s/bad.safetensors", dir, dir);
  free(util_run(cmd, &st));
  out = util_nndc(&st, "train " DATA " --load %s/bad.safetensors --resume", dir, dir, dir, dir);
  cr_assert_eq(st, 1, "%s", out);
  cr_assert(strstr(out, "bad.safetensors: error:"), "%s", out);
  free(out);
  free(dir);
}

Test(resume_cli, usage_errors) {
  int st;
  char *out = util_nndc(&st, "train m.nnd --data x=x.npy --resume");
  cr_assert_eq(st, 2, "%s", out);
  cr_assert(strstr(out, "--resume needs --load"), "%s", out);
  free(out);
  out = util_nndc(&st, "train m.nnd --data x=x.npy --save-every 3");
  cr_assert_eq(st, 2, "%s", out);
  free(out);
  out = util_nndc(&st, "train m.nnd --data x=x.npy --save ck --save-every 3");
  cr_assert_eq(st, 2, "%s", out);
  cr_assert(strstr(out, ".safetensors"), "%s", out);
  free(out);
}

/* -------------------------------------------- overlap: gradients completed early */

typedef struct Seen {
  Engine *e;
  const Graph *g;
  int *ready;          /* [nparams] */
  float **early;       /* [nparams] the gradient as copied by the hook */
  int calls, last;
} Seen;

static void on_kernel(void *user, int k) {
  Seen *s = user;
  cr_assert_eq(k, s->last + 1, "hook out of order: %d after %d", k, s->last);
  s->last = k;
  s->calls++;
  for (int i = 0; i < s->g->nparams; i++)
    if (s->ready[i] == k)
      memcpy(s->early[i], engine_value(s->e, s->g->grads[i]), (size_t)shape_numel(&s->g->params[i].node->shape) * 4);
}

/* engine_ready_after: a gradient copied right after the kernel it names is
 * already the final value (what the data-parallel overlap relies on). */
Test(resume, gradients_are_final_after_the_kernel_that_completes_them, .timeout = 120) {
  Run r;
  run_init(&r, OPTIM_SGD);
  Graph *g = &r.t.g;
  ModelState ms;
  cr_assert_eq(model_state_init(&r.t.d, g, &ms, 7), 0);
  Node *roots[16];
  int n = 0;
  roots[n++] = g->loss;
  for (int i = 0; i < g->nparams; i++)
    if (g->grads[i]) roots[n++] = g->grads[i];
  EngineOpts eo = {ENGINE_JIT, 1, 0};
  Engine *e = engine_new(&r.t.d, g, roots, n, &eo);
  cr_assert(e, "%s", r.t.d.buf);
  for (int i = 0; i < g->nparams; i++) engine_bind(e, g->params[i].node, ms.params[i]);
  float xb[8 * NX];
  int32_t yb[8];
  memcpy(xb, r.arr[0].data, sizeof xb);
  memcpy(yb, r.arr[1].data, sizeof yb);
  engine_bind(e, r.in[0], xb);
  engine_bind(e, r.in[1], yb);
  Seen s = {e, g, calloc((size_t)g->nparams, sizeof(int)), calloc((size_t)g->nparams, sizeof(float *)), 0, -1};
  int early = 0;
  for (int i = 0; i < g->nparams; i++) {
    s.ready[i] = g->grads[i] ? engine_ready_after(e, g->grads[i]) : -2;
    s.early[i] = calloc((size_t)shape_numel(&g->params[i].node->shape), 4);
    early += s.ready[i] >= 0;
  }
  cr_assert_geq(early, 4, "only %d gradients have a kernel that completes them", early);
  engine_set_hook(e, on_kernel, &s);
  RunCtx ctx = {7, 1, 1};
  cr_assert_eq(engine_run(e, &r.t.d, &ctx), 0, "%s", r.t.d.buf);
  cr_assert_gt(s.calls, 0);
  for (int i = 0; i < g->nparams; i++) {
    if (s.ready[i] < 0) continue;
    cr_assert_eq(memcmp(s.early[i], engine_value(e, g->grads[i]), (size_t)shape_numel(&g->params[i].node->shape) * 4), 0,
                 "gradient of %s changed after kernel %d", g->params[i].name, s.ready[i]);
  }
  for (int i = 0; i < g->nparams; i++) free(s.early[i]);
  free(s.early);
  free(s.ready);
  engine_free(e);
  model_state_free(g, &ms);
  run_fini(&r);
}
