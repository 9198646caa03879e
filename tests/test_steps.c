/* test_steps.c - adversarial training (spec 8: named losses, step blocks).
 * The two steps of tests/golden/steps/gan.nnd (a generator with batch_norm,
 * a discriminator called on real, detached fake and fake samples, adam for
 * each) end where PyTorch's do (gen_steps.py), on the JIT and the
 * interpreter; with noise drawn inside the model, the engines and thread
 * counts agree and each step draws its own; a run stopped after an epoch and
 * resumed from its checkpoint ends bit for bit where an uninterrupted run
 * ends (both steps' optimizer state in the checkpoint). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define GOLD NNDC_SRC_DIR "/tests/golden/steps"
#define DATA "--data x=" GOLD "/x.npy --data z=" GOLD "/z.npy --no-shuffle"
#define NOISE_DATA "--data x=" GOLD "/x.npy --no-shuffle"

static const char *const PARAMS[] = {"g1.W", "g1.gamma", "g1.beta", "g1.running_mean", "g1.running_var",
                                     "fake.W", "fake.b", "dr.h.W", "dr.h.b", "dr.o.W", "dr.o.b"};
enum { NPARAMS = sizeof PARAMS / sizeof *PARAMS };

/* Largest |a - b| between param `name` in directories da and db. */
static double param_diff(const char *da, const char *db, const char *name) {
  char pa[1024], pb[1024];
  snprintf(pa, sizeof pa, "%s/%s.npy", da, name);
  snprintf(pb, sizeof pb, "%s/%s.npy", db, name);
  Shape sa, sb;
  float *a = util_read_f32(pa, &sa), *b = util_read_f32(pb, &sb);
  cr_assert(a && b && shape_eq(&sa, &sb), "%s: missing or misshapen", name);
  double m = 0;
  for (int64_t i = 0; i < shape_numel(&sa); i++) {
    double e = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
    if (e > m) m = e;
  }
  free(a);
  free(b);
  return m;
}

static void train_to(const char *engine, const char *model, const char *extra, const char *dir) {
  int st;
  char *out = util_nndc(&st, "train %s %s --engine %s --save %s %s", model, strstr(model, "noise") ? NOISE_DATA : DATA,
                        engine, dir, extra);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
}

static void golden(const char *engine) {
  char *dir = util_tmpdir();
  train_to(engine, GOLD "/gan.nnd", "--load " GOLD "/init", dir);
  for (int i = 0; i < NPARAMS; i++) {
    double e = param_diff(dir, GOLD "/after", PARAMS[i]);
    cr_expect_leq(e, 1e-5, "%s: %s differs from PyTorch by %g", engine, PARAMS[i], e);
  }
  free(dir);
}

Test(steps, pytorch_golden_jit) { golden("jit"); }
Test(steps, pytorch_golden_interp) { golden("interp"); }

Test(steps, progress_reports_every_loss) {
  int st;
  char *out = util_nndc(&st, "train " GOLD "/gan.nnd " DATA " --load " GOLD "/init");
  cr_assert_eq(st, 0, "%s", out);
  /* PyTorch's three iterations: d_loss 1.083979 1.144557 1.177749, g_loss 0.592457 0.560290 0.543702 */
  cr_expect(strstr(out, "train d_loss 1.1354 g_loss 0.5655 d_real"), "%s", out);
  free(out);
  /* run computes every named loss its feeds allow (evaluation mode) */
  char *dir = util_tmpdir();
  out = util_nndc(&st, "run " GOLD "/gan.nnd --feed z=" GOLD "/z.npy --load " GOLD "/init --out %s", dir);
  cr_assert_eq(st, 0, "%s", out);
  cr_expect(strstr(out, "g_loss = ") && strstr(out, "loss 'd_loss' skipped"), "%s", out);
  free(out);
  free(dir);
}

/* The golden model with its generator's noise drawn in the model. */
static char *noise_model(const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/noise.nnd", dir);
  FILE *f = fopen(GOLD "/gan.nnd", "r");
  cr_assert(f);
  static char text[8192];
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  char *at = strstr(text, "input z: f32[N, 2]");
  cr_assert(at);
  const char *repl = "z = randn([N, 2])";
  char out[8192];
  snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, repl, at + strlen("input z: f32[N, 2]"));
  cr_assert_eq(util_write_file(path, out), 0);
  return strdup(path);
}

Test(steps, noise_same_on_every_engine_and_thread_count) {
  char *dir = util_tmpdir(), *model = noise_model(dir), a[1024], b[1024], c[1024];
  snprintf(a, sizeof a, "%s/jit", dir);
  snprintf(b, sizeof b, "%s/interp", dir);
  snprintf(c, sizeof c, "%s/jit1", dir);
  train_to("jit", model, "--load " GOLD "/init --epochs 2", a);
  train_to("interp", model, "--load " GOLD "/init --epochs 2", b);
  train_to("jit", model, "--load " GOLD "/init --epochs 2 --threads 1", c);
  /* and the noise matters: the result is not the golden run's on the fed z */
  double moved = 0;
  for (int i = 0; i < NPARAMS; i++) moved += param_diff(a, GOLD "/after", PARAMS[i]);
  cr_expect_gt(moved, 1e-3);
  for (int i = 0; i < NPARAMS; i++) {
    cr_expect_leq(param_diff(a, b, PARAMS[i]), 1e-5, "%s: jit != interp", PARAMS[i]);
    cr_expect_eq(param_diff(a, c, PARAMS[i]), 0, "%s: depends on the thread count", PARAMS[i]);
  }
  free(model);
  free(dir);
}

/* Each step draws its own noise, step 1 with the run's seed: after one
 * iteration of sgd(lr=0.5) from 0 on (w - n)^2 and (v - n)^2, w is the noise
 * step a drew and v the noise step b drew; `run --seed` draws step a's. */
Test(steps, noise_drawn_per_step) {
  char *dir = util_tmpdir(), path[1024];
  snprintf(path, sizeof path, "%s/m.nnd", dir);
  cr_assert_eq(util_write_file(path,
                               "input x: f32[N, 4]\nparam w: f32[3]\nparam v: f32[3]\nn = randn([3])\noutput noise = n\n"
                               "loss la = sum((w - n) ** 2) + 0 * mean(x)\nloss lb = sum((v - n) ** 2)\n"
                               "train {\n  step a { loss = la; params = [w]; optimizer = sgd(lr=0.5) }\n"
                               "  step b { loss = lb; params = [v]; optimizer = sgd(lr=0.5) }\n  batch = 24\n}\n"),
               0);
  int st;
  char *out = util_nndc(&st, "train %s --data x=" GOLD "/x.npy --seed 5 --save %s/p", path, dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  out = util_nndc(&st, "run %s --seed 5 --out %s/r", path, dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  char pw[1024], pv[1024], pn[1024];
  snprintf(pw, sizeof pw, "%s/p/w.npy", dir);
  snprintf(pv, sizeof pv, "%s/p/v.npy", dir);
  snprintf(pn, sizeof pn, "%s/r/noise.npy", dir);
  Shape s;
  float *w = util_read_f32(pw, &s), *v = util_read_f32(pv, &s), *n = util_read_f32(pn, &s);
  cr_assert(w && v && n);
  for (int i = 0; i < 3; i++) {
    cr_expect_float_eq(w[i], n[i], 1e-6, "w[%d] %g != step a's noise %g", i, w[i], n[i]);
    cr_expect(v[i] != w[i] && v[i] > -6 && v[i] < 6, "v[%d] %g: step b drew step a's noise", i, v[i]);
  }
  free(w);
  free(v);
  free(n);
  free(dir);
}

/* The two checkpoints hold the same tensors bit for bit, both steps' states among them. */
static void same_tensors(const char *pa, const char *pb) {
  Diag d;
  diag_init(&d);
  const char *path[2] = {pa, pb};
  NamedTensor *t[2];
  int n[2];
  for (int k = 0; k < 2; k++) cr_assert_eq(st_read(&d, path[k], &t[k], &n[k]), 0, "%s", d.buf);
  cr_assert_eq(n[0], n[1]);
  int states = 0;
  for (int i = 0; i < n[0]; i++) {
    const NamedTensor *a = &t[0][i], *b = t[1];
    while (b < t[1] + n[1] && strcmp(a->name, b->name)) b++;
    cr_assert_lt(b, t[1] + n[1], "%s missing", a->name);
    cr_assert_eq(memcmp(a->data, b->data, (size_t)shape_numel(&a->shape) * 4), 0, "%s differs", a->name);
    states += !strncmp(a->name, CKPT_STATE_PREFIX, strlen(CKPT_STATE_PREFIX));
  }
  /* adam's two buffers for each of the 9 trained params, in both steps */
  cr_expect_eq(states, 18, "%d optimizer states", states);
  for (int k = 0; k < 2; k++) st_free(t[k], n[k]);
  diag_free(&d);
}

Test(steps, resume_keeps_every_steps_optimizer_state) {
  char *dir = util_tmpdir(), *model = noise_model(dir), a[1024], b[1024], c[1024];
  snprintf(a, sizeof a, "%s/full.safetensors", dir);
  snprintf(b, sizeof b, "%s/half.safetensors", dir);
  snprintf(c, sizeof c, "%s/resumed.safetensors", dir);
  int st;
  char *out = util_nndc(&st, "train %s " NOISE_DATA " --epochs 2 --save %s", model, a);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  out = util_nndc(&st, "train %s " NOISE_DATA " --epochs 1 --save %s", model, b);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  out = util_nndc(&st, "train %s " NOISE_DATA " --epochs 2 --load %s --resume --save %s", model, b, c);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  same_tensors(a, c);
  free(model);
  free(dir);
}

/* ------------------------------------------------------------- emit-c */

/* The state fields of gan.nnd's training: both steps' optimizer states. */
static char **state_names(int *n) {
  UtilGraph *t[2] = {util_graph_new(), util_graph_new()};
  static char text[8192];
  FILE *f = fopen(GOLD "/gan.nnd", "r");
  cr_assert(f);
  text[fread(text, 1, sizeof text - 1, f)] = 0;
  fclose(f);
  const Graph *gp[2];
  for (int k = 0; k < 2; k++) {
    BuildOpts o = {.training = 1};
    cr_assert_eq(util_compile(&t[k]->d, &t[k]->g, text, &o), 0, "%s", t[k]->d.buf);
    graph_use_step(&t[k]->g, k + 1);
    cr_assert_eq(pass_autodiff(&t[k]->d, &t[k]->g), 0);
    cr_assert_eq(pass_optim(&t[k]->d, &t[k]->g), 0);
    gp[k] = &t[k]->g;
  }
  Graph all = graph_steps_union(gp, 2);
  char **names = calloc((size_t)all.nstates + 1, sizeof *names);
  for (int i = 0; i < all.nstates; i++) names[i] = strdup(all.states[i].name);
  *n = all.nstates;
  for (int k = 0; k < 2; k++) util_graph_free(t[k]);
  return names;
}

/* A driver of the emitted gan: loads the init params and the 24 samples,
 * runs gan_train_step_d then gan_train_step_g on each batch of 8, writes
 * every param as raw floats in PARAMS order. */
static char *step_driver(void) {
  Buf t = {0};
  buf_printf(&t, "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include \"gan.h\"\n\n"
                 "static float *rd(const char *path, size_t n, size_t skip) {\n"
                 "  float *p = malloc(n * 4 + 4);\n  FILE *f = fopen(path, \"rb\");\n"
                 "  if (!p || !f || fseek(f, 128 + (long)skip * 4, SEEK_SET) || fread(p, 4, n, f) != n) exit(3);\n"
                 "  fclose(f);\n  return p;\n}\n\nint main(void) {\n  gan_params p;\n  gan_inputs in;\n"
                 "  gan_outputs out;\n  gan_state s;\n  memset(&out, 0, sizeof out);\n  memset(&s, 0, sizeof s);\n"
                 "  void *ws = malloc(gan_workspace_size() + 64);\n");
  for (int i = 0; i < NPARAMS; i++) {
    char *id = util_c_ident(PARAMS[i]), *U = util_c_upper(PARAMS[i]);
    buf_printf(&t, "  p.%s = rd(\"%s/init/%s.npy\", GAN_PARAM_%s_SIZE, 0);\n", id, GOLD, PARAMS[i], U);
    free(id);
    free(U);
  }
  int ns;
  char **st = state_names(&ns);
  for (int i = 0; i < ns; i++) {
    char *id = util_c_ident(st[i]), *U = util_c_upper(st[i]);
    buf_printf(&t, "  s.%s = calloc(GAN_STATE_%s_SIZE, 4);\n", id, U);
    free(id);
    free(U);
    free(st[i]);
  }
  free(st);
  buf_printf(&t, "  float d_loss, g_loss;\n  out.d_loss = &d_loss;\n  out.g_loss = &g_loss;\n"
                 "  for (int it = 0; it < 3; it++) {\n"
                 "    in.x = rd(\"%s/x.npy\", 8 * 4, (size_t)it * 8 * 4);\n"
                 "    in.z = rd(\"%s/z.npy\", 8 * 2, (size_t)it * 8 * 2);\n"
                 "    gan_train_step_d(&p, &s, &in, &out, ws);\n    gan_train_step_g(&p, &s, &in, &out, ws);\n"
                 "    printf(\"%%d %%.6f %%.6f\\n\", it + 1, d_loss, g_loss);\n  }\n"
                 "  if (s.step_d != 3 || s.step_g != 3) return 4;\n  FILE *o = fopen(\"out.bin\", \"wb\");\n",
             GOLD, GOLD);
  for (int i = 0; i < NPARAMS; i++) {
    char *id = util_c_ident(PARAMS[i]), *U = util_c_upper(PARAMS[i]);
    buf_printf(&t, "  fwrite(p.%s, 4, GAN_PARAM_%s_SIZE, o);\n", id, U);
    free(id);
    free(U);
  }
  buf_printf(&t, "  return fclose(o) != 0;\n}\n");
  return t.s;
}

/* The emitted step functions train as PyTorch does (and so as the JIT and
 * the interpreter, which pytorch_golden_* hold to the same values). */
Test(steps, emitted_c_step_functions) {
  char *dir = util_tmpdir(), path[1024];
  int st;
  char *out = util_nndc(&st, "emit-c " GOLD "/gan.nnd --train -D N=8 -o %s", dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  char *h = NULL;
  snprintf(path, sizeof path, "%s/gan.h", dir);
  FILE *f = fopen(path, "r");
  cr_assert(f);
  h = calloc(1 << 16, 1);
  cr_assert(fread(h, 1, (1 << 16) - 1, f) > 0);
  fclose(f);
  cr_expect(strstr(h, "void   gan_train_step_d(gan_params *p, gan_state *s,"), "%s", h);
  cr_expect(strstr(h, "void   gan_train_step_g(gan_params *p, gan_state *s,"), "%s", h);
  cr_expect(strstr(h, "/* step d: minimises d_loss"), "%s", h);
  free(h);
  char *drv = step_driver();
  snprintf(path, sizeof path, "%s/driver.c", dir);
  cr_assert_eq(util_write_file(path, drv), 0);
  free(drv);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cd %s && gcc -std=c99 -Wall -Wextra -Werror -pedantic -O1 gan.c driver.c -o prog -lm && ./prog",
           dir);
  out = util_run(cmd, &st);
  cr_assert_eq(st, 0, "%s", out);
  /* PyTorch: iteration 3: d_loss 1.177749 g_loss 0.543702 */
  cr_expect(strstr(out, "3 1.1777"), "%s", out);
  free(out);
  snprintf(path, sizeof path, "%s/out.bin", dir);
  f = fopen(path, "rb");
  cr_assert(f);
  for (int i = 0; i < NPARAMS; i++) {
    char gp[1024];
    snprintf(gp, sizeof gp, GOLD "/after/%s.npy", PARAMS[i]);
    Shape s;
    float *want = util_read_f32(gp, &s);
    int64_t n = shape_numel(&s);
    float *got = malloc((size_t)n * 4);
    cr_assert_eq(fread(got, 4, (size_t)n, f), (size_t)n);
    cr_expect_leq(util_compare(PARAMS[i], got, want, n, 1e-5, 0), 1.0, "%s differs from PyTorch", PARAMS[i]);
    free(got);
    free(want);
  }
  fclose(f);
  free(dir);
}

/* Each step differentiates its own loss with respect to its own params
 * only, on the params the steps before it updated: both losses reach both
 * params (no detach), sgd(lr=0.1) from w = 1, v = 2 on (w + v)^2 gives
 * w = 1 - 0.2 (1 + 2) = 0.4 in step a (v untouched), then
 * v = 2 - 0.2 (0.4 + 2) = 1.52 in step b. */
Test(steps, each_step_its_params_in_order) {
  char *dir = util_tmpdir(), path[1024];
  snprintf(path, sizeof path, "%s/m.nnd", dir);
  cr_assert_eq(util_write_file(path, "input x: f32[N, 4]\nparam w: f32[] = full(1)\nparam v: f32[] = full(2)\n"
                                     "loss la = (w + v) ** 2 + 0 * mean(x)\nloss lb = (w + v) ** 2\n"
                                     "train {\n  step a { loss = la; params = [w]; optimizer = sgd(lr=0.1) }\n"
                                     "  step b { loss = lb; params = [v]; optimizer = sgd(lr=0.1) }\n  batch = 24\n}\n"),
               0);
  for (int e = 0; e < 2; e++) {
    int st;
    char *out = util_nndc(&st, "train %s --data x=" GOLD "/x.npy --engine %s --save %s/p%d", path, e ? "interp" : "jit",
                          dir, e);
    cr_assert_eq(st, 0, "%s", out);
    cr_expect(strstr(out, "train la 9.0000 lb 5.7600"), "%s", out);   /* (1+2)^2, then (0.4+2)^2 */
    free(out);
    char pw[1024], pv[1024];
    snprintf(pw, sizeof pw, "%s/p%d/w.npy", dir, e);
    snprintf(pv, sizeof pv, "%s/p%d/v.npy", dir, e);
    Shape s;
    float *w = util_read_f32(pw, &s), *v = util_read_f32(pv, &s);
    cr_assert(w && v);
    cr_expect_float_eq(w[0], 0.4f, 1e-6, "w %g", w[0]);
    cr_expect_float_eq(v[0], 1.52f, 1e-6, "v %g", v[0]);
    free(w);
    free(v);
  }
  free(dir);
}
