/* test_math.c - the JIT's and the emitted C's math against PyTorch float32.
 *
 * tests/golden/gen_math.py sweeps every unary routine over its whole range
 * (both signs from the smallest subnormal to FLT_MAX, dense grids around 0
 * and the branch points, +-0, +-inf, NaN) and writes PyTorch's float32
 * results, with losses row by row (confident and unconfident
 * cross_entropy rows, bce_logits and mse element by element, and their
 * batch means) and softmax / log_softmax of wide rows.  One model computes
 * every case; it runs on the JIT and as emitted C built by gcc -O2 and
 * clang -O2, and each result is compared with PyTorch's in ulps: NaN must
 * be NaN, an infinity that infinity, anything else within the case's ulps
 * (or within its absolute allowance, below).  NNDC_MATH_REPORT=1 prints the
 * largest distance of every case; NNDC_MATH_KEEP=1 keeps the emitted C.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codegen/codegen.h"
#include "tests/util.h"

#define GOLD NNDC_SRC_DIR "/tests/golden/math/"

/* What a result may differ from PyTorch's by: ulps, or an absolute
 * allowance of abs + xabs*|x| where PyTorch's own formula rounds an
 * intermediate that a later step cancels (elu's exp(x) - 1 near 0, gelu's
 * 1 + erf(x/sqrt 2) in the negative tail, log(sum) of a confident row
 * whose sum PyTorch adds in another order): there two evaluations that
 * both get that intermediate right to an ulp or two (libm's exp against
 * SLEEF's, an exact erf against PyTorch's approximation in gelu) may be
 * that far apart, which is many ulps of the result. */
typedef struct Tol {
  int ulps;
  double abs, xabs;
} Tol;

/* A unary case: NAME_x.npy, NAME_y.npy; the model's expression of x. */
typedef struct Unary {
  const char *name;
  const char *expr;   /* %s: the input */
  Tol tol;
} Unary;

#define ULP1 0x1p-24   /* ulp of the floats in [0.5, 1) */

static const Unary unary[] = {
  {"exp", "exp(%s)", {2, 0, 0}},
  {"log", "log(%s)", {2, 0, 0}},
  {"sqrt", "sqrt(%s)", {0, 0, 0}},
  {"tanh", "tanh(%s)", {2, 0, 0}},
  {"sigmoid", "sigmoid(%s)", {3, 0, 0}},
  {"softplus", "softplus(%s)", {2, 0, 0}},
  /* PyTorch's vectorized gelu takes erf from Abramowitz-Stegun 7.1.26, 1.5e-7
   * (2.5 ULP1) from erf, then rounds 1 + erf to 2^-23: 10 ULP1, times x/2 */
  {"gelu", "gelu(%s)", {4, 0, 5 * ULP1}},
  {"elu", "elu(%s)", {2, 2 * ULP1, 0}},                   /* 2 ulp of exp(x), times alpha */
  {"elu_a07", "elu(%s, alpha=0.7)", {2, 1.4 * ULP1, 0}},
  {"erf", "gelu(%s)", {2, 0, 0}},                         /* no spelling: build() retypes the node */
  {"relu", "relu(%s)", {0, 0, 0}},
  {"leaky_relu", "leaky_relu(%s)", {0, 0, 0}},
  {"abs", "abs(%s)", {0, 0, 0}},
  {"neg", "-%s", {0, 0, 0}},
  {"clamp", "clamp(%s, -0.5, 0.7)", {0, 0, 0}},
  {"pow_2", "%s ** 2", {0, 0, 0}},
  {"pow_3", "%s ** 3", {1, 0, 0}},
  {"pow_0p5", "%s ** 0.5", {0, 0, 0}},
  {"pow_m0p5", "%s ** -0.5", {1, 0, 0}},
  {"pow_m1", "%s ** -1", {0, 0, 0}},
  {"pow_m2", "%s ** -2", {1, 0, 0}},
  {"pow_1p5", "%s ** 1.5", {2, 0, 0}},
  {"pow_m1p5", "%s ** -1.5", {2, 0, 0}},
};

/* A loss case: NAME_x.npy and NAME_t.npy (targets), NAME_y.npy (the loss
 * of each row alone, each computed by the model as its own slice) and
 * NAME_mean.npy (the whole batch). */
typedef struct Loss {
  const char *name;
  const char *fn;
  Tol tol;
} Loss;

static const Loss losses[] = {
  {"ce_one", "cross_entropy", {2, 0, 0}},
  {"ce2", "cross_entropy", {2, 0, 0}},
  {"ce7", "cross_entropy", {2, 0, 0}},
  /* PyTorch sums 10 terms in vector lanes, the kernels in order: the sum
   * near 1 may differ by an ulp of it, and the loss by as much */
  {"ce10", "cross_entropy", {4, 4 * ULP1, 0}},
  {"bce", "bce_logits", {2, 0, 0}},
  {"mse", "mse", {1, 0, 0}},
};

/* ------------------------------------------------------------------ model */

/* A result range of the model (its outputs concatenated) and PyTorch's. */
typedef struct Check {
  char label[48];
  int64_t off, n;
  float *want;        /* [n] */
  const float *x;     /* [n] the inputs of a unary case, else NULL */
  Tol tol;
} Check;

/* The model of every case: .nnd text, input data, outputs in order. */
typedef struct Model {
  char *text;
  size_t len;
  int nin;
  char *in_name[64];
  Array in[64];
  int nout;
  char *out_name[512];
  int64_t out_n[512];
  int64_t total;      /* elements of all outputs */
  int nchk;
  Check chk[64];
} Model;

__attribute__((format(printf, 2, 3)))
static void put(Model *m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int k = vasprintf(&s, fmt, ap);
  va_end(ap);
  cr_assert(k >= 0);
  m->text = realloc(m->text, m->len + (size_t)k + 1);
  memcpy(m->text + m->len, s, (size_t)k + 1);
  m->len += (size_t)k;
  free(s);
}

static Array load(const char *name, const char *part) {
  char path[512];
  Diag d;
  Array a;
  diag_init(&d);
  snprintf(path, sizeof path, GOLD "%s_%s.npy", name, part);
  cr_assert_eq(npy_read(&d, path, &a), 0, "%s: %s", path, d.buf ? d.buf : "");
  diag_free(&d);
  return a;
}

static int64_t numel(const Array *a) { return shape_numel(&a->shape); }

/* Declares input `name` holding golden array part of case `cs`. */
static const char *add_input(Model *m, const char *cs, const char *part) {
  Array a = load(cs, part);
  char *name = NULL;
  cr_assert(asprintf(&name, "%s_%s", cs, part) > 0);
  put(m, "input %s: %s[", name, a.et == EL_I32 ? "i32" : "f32");
  for (int k = 0; k < a.shape.rank; k++) put(m, "%s%lld", k ? ", " : "", (long long)a.shape.dim[k]);
  put(m, "]\n");
  cr_assert(m->nin < 64);
  m->in_name[m->nin] = name;
  m->in[m->nin++] = a;
  return name;
}

/* Declares output name = expr (text after the name) of n elements. */
__attribute__((format(printf, 4, 5)))
static void add_output(Model *m, const char *name, int64_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *e = NULL;
  cr_assert(vasprintf(&e, fmt, ap) >= 0);
  va_end(ap);
  put(m, "output %s = %s\n", name, e);
  free(e);
  cr_assert(m->nout < 512);
  m->out_name[m->nout] = strdup(name);
  m->out_n[m->nout++] = n;
  m->total += n;
}

/* A check of the last `n` output elements against want. */
static void add_check(Model *m, const char *label, int64_t n, const Array *want, const float *x, Tol tol) {
  cr_assert_eq(numel(want), n, "%s: golden size", label);
  cr_assert(m->nchk < 64);
  Check *c = &m->chk[m->nchk++];
  snprintf(c->label, sizeof c->label, "%s", label);
  c->off = m->total - n;
  c->n = n;
  c->want = want->data;
  c->x = x;
  c->tol = tol;
}

static void model_unary(Model *m, const Unary *u) {
  const char *x = add_input(m, u->name, "x");
  Array y = load(u->name, "y");
  char out[64];
  snprintf(out, sizeof out, "y_%s", u->name);
  add_output(m, out, numel(&y), u->expr, x);
  /* the input array stays owned by m->in */
  add_check(m, u->name, numel(&y), &y, m->in[m->nin - 1].data, u->tol);
}

static void model_loss(Model *m, const Loss *l) {
  const char *x = add_input(m, l->name, "x"), *t = add_input(m, l->name, "t");
  Array y = load(l->name, "y"), mean = load(l->name, "mean");
  int64_t rows = numel(&y);
  for (int64_t r = 0; r < rows; r++) {
    char out[64];
    snprintf(out, sizeof out, "%s_r%lld", l->name, (long long)r);
    add_output(m, out, 1, "%s(%s[%lld:%lld], %s[%lld:%lld])", l->fn, x, (long long)r, (long long)r + 1, t,
               (long long)r, (long long)r + 1);
  }
  add_check(m, l->name, rows, &y, NULL, l->tol);
  char out[64], label[64];
  snprintf(out, sizeof out, "%s_mean", l->name);
  add_output(m, out, 1, "%s(%s, %s)", l->fn, x, t);
  snprintf(label, sizeof label, "%s mean", l->name);
  add_check(m, label, 1, &mean, NULL, l->tol);
}

/* softmax and log_softmax of NAME_x along both axes. */
static void model_softmax(Model *m, const char *fn) {
  const char *x = add_input(m, fn, "x");
  for (int ax = 1; ax >= 0; ax--) {
    char part[8], out[64], label[64];
    snprintf(part, sizeof part, "a%d", ax);
    Array y = load(fn, part);
    snprintf(out, sizeof out, "%s_a%d", fn, ax);
    add_output(m, out, numel(&y), "%s(%s, axis=%d)", fn, x, ax);
    snprintf(label, sizeof label, "%s axis %d", fn, ax);
    /* along axis 1 PyTorch sums the 9 terms in vector lanes */
    add_check(m, label, numel(&y), &y, NULL, (Tol){4, ax == 1 && !strcmp(fn, "log_softmax") ? 4 * ULP1 : 0, 0});
  }
}

static Model *model_new(void) {
  Model *m = calloc(1, sizeof *m);
  for (size_t i = 0; i < sizeof unary / sizeof *unary; i++) model_unary(m, &unary[i]);
  const char *x = add_input(m, "log_softplus", "x");
  Array y = load("log_softplus", "y");
  add_output(m, "log_softplus", 1, "mean(log(softplus(%s)))", x);   /* one fused kernel, then the mean */
  add_check(m, "mean(log(softplus))", 1, &y, NULL, (Tol){2, 0, 0});
  for (size_t i = 0; i < sizeof losses / sizeof *losses; i++) model_loss(m, &losses[i]);
  model_softmax(m, "softmax");
  model_softmax(m, "log_softmax");
  return m;
}

/* -------------------------------------------------------------- compare */

static int64_t ordered(float f) {
  int32_t i;
  memcpy(&i, &f, 4);
  return i < 0 ? -(int64_t)(i & 0x7fffffff) : i;
}

/* Distance in ulps (+-0 equal); NaN only matches NaN, infinity only itself. */
static double ulp_dist(float got, float want) {
  if (isnan(got) || isnan(want)) return isnan(got) && isnan(want) ? 0 : INFINITY;
  if (isinf(got) || isinf(want)) return got == want ? 0 : INFINITY;
  int64_t d = ordered(got) - ordered(want);
  return (double)(d < 0 ? -d : d);
}

/* Checks every case of m against got (the model's outputs concatenated). */
static void compare(const Model *m, const float *got, const char *engine) {
  int report = getenv("NNDC_MATH_REPORT") != NULL;
  for (int c = 0; c < m->nchk; c++) {
    const Check *k = &m->chk[c];
    double worst = 0, used = 0;   /* largest distance; largest share of the allowance used */
    int64_t nbad = 0, wi = 0;
    for (int64_t i = 0; i < k->n; i++) {
      float g = got[k->off + i], w = k->want[i];
      double u = ulp_dist(g, w), allow = k->tol.abs + (k->x ? k->tol.xabs * fabs(k->x[i]) : 0);
      if (u > worst) worst = u, wi = i;
      if (u <= k->tol.ulps) continue;
      if (isfinite(u) && fabs((double)g - w) <= allow) {
        used = fmax(used, fabs((double)g - w) / allow);
        continue;
      }
      if (nbad++ < 4)
        fprintf(stderr, "%s %s[%lld]: x %.9g: got %.9g, PyTorch %.9g (%.0f ulp)\n", engine, k->label, (long long)i,
                k->x ? k->x[i] : NAN, g, w, u);
    }
    if (report)
      fprintf(stderr, "%-6s %-22s max %10.0f ulp (at x %-12.6g) allowance used %4.2f%s\n", engine, k->label, worst,
              k->x ? k->x[wi] : NAN, used, nbad ? "  FAIL" : "");
    cr_expect_eq(nbad, 0, "%s %s: %lld of %lld results differ from PyTorch (worst %.0f ulp)", engine, k->label,
                 (long long)nbad, (long long)k->n, worst);
  }
}

/* ------------------------------------------------------------- engines */

/* The model's graph; erf, which has no spelling, is the gelu node of
 * output y_erf retyped. */
static void build(UtilGraph *t, const Model *m) {
  cr_assert_eq(fe_compile_string(&t->d, &t->g, "mathcases.nnd", m->text, &(BuildOpts){0}), 0, "%s",
               t->d.buf ? t->d.buf : "");
  for (int i = 0; i < t->g.noutputs; i++)
    if (!strcmp(t->g.outputs[i].name, "y_erf")) {
      cr_assert_eq(t->g.outputs[i].node->op, OP_GELU);
      t->g.outputs[i].node->op = OP_ERF;
    }
}

static float *run_jit(const Model *m) {
  UtilGraph *t = util_graph_new();
  build(t, m);
  Node *roots[512];
  cr_assert(t->g.noutputs <= 512);
  for (int i = 0; i < t->g.noutputs; i++) roots[i] = t->g.outputs[i].node;
  EngineOpts eo = {ENGINE_JIT, 1, 0};
  Engine *e = engine_new(&t->d, &t->g, roots, t->g.noutputs, &eo);
  cr_assert(e, "%s", t->d.buf ? t->d.buf : "");
  for (int i = 0; i < m->nin; i++) engine_bind(e, t->g.inputs[i].node, m->in[i].data);
  RunCtx ctx = {0, 1, 0};
  cr_assert_eq(engine_run(e, &t->d, &ctx), 0, "%s", t->d.buf ? t->d.buf : "");
  float *got = malloc((size_t)m->total * 4);
  int64_t off = 0;
  for (int i = 0; i < m->nout; i++) {
    memcpy(got + off, engine_value(e, roots[i]), (size_t)m->out_n[i] * 4);
    off += m->out_n[i];
  }
  engine_free(e);
  util_graph_free(t);
  return got;
}

static char *upper(const char *s) {
  char *u = strdup(s);
  for (char *c = u; *c; c++) *c = (char)toupper((unsigned char)*c);
  return u;
}

/* A driver for the emitted model: inputs from argv[1] in order, every
 * output to argv[2], as raw 4-byte values. */
static char *driver(const Model *m) {
  Model d = {0};
  put(&d, "#include <stdio.h>\n#include <stdlib.h>\n#include \"mathcases.h\"\n\n");
  put(&d, "static void *rd(FILE *f, size_t n) {\n  void *p = malloc(n * 4 + 4);\n"
          "  if (!p || fread(p, 4, n, f) != n) exit(3);\n  return p;\n}\n\n");
  put(&d, "int main(int argc, char **argv) {\n  FILE *f, *o;\n  mathcases_params p = {0};\n"
          "  mathcases_inputs in;\n  mathcases_outputs out;\n"
          "  void *ws = malloc(mathcases_workspace_size() + 64);\n"
          "  if (argc != 3 || !(f = fopen(argv[1], \"rb\")) || !(o = fopen(argv[2], \"wb\"))) return 2;\n");
  for (int i = 0; i < m->nin; i++) {
    char *u = upper(m->in_name[i]);
    put(&d, "  in.%s = rd(f, MATHCASES_INPUT_%s_SIZE);\n", m->in_name[i], u);
    free(u);
  }
  for (int i = 0; i < m->nout; i++) put(&d, "  out.%s = malloc(%lld * 4);\n", m->out_name[i], (long long)m->out_n[i]);
  put(&d, "  mathcases_forward(&p, &in, &out, ws);\n");
  for (int i = 0; i < m->nout; i++) put(&d, "  fwrite(out.%s, 4, %lld, o);\n", m->out_name[i], (long long)m->out_n[i]);
  put(&d, "  return fclose(o) != 0;\n}\n");
  return d.text;
}

static void write_in(const char *dir, const char *file, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  cr_assert_eq(util_write_file(path, text), 0, "%s", path);
}

/* Emits the model's C into a fresh directory with its driver and data. */
static char *emit(const Model *m) {
  UtilGraph *t = util_graph_new();
  build(t, m);
  char *h = NULL, *src = NULL, *dir = util_tmpdir(), path[1024];
  cr_assert_eq(c_emit(&t->d, &t->g, NULL, NULL, &h, &src), 0, "%s", t->d.buf ? t->d.buf : "");
  write_in(dir, "mathcases.h", h);
  write_in(dir, "mathcases.c", src);
  char *drv = driver(m);
  write_in(dir, "driver.c", drv);
  free(drv);
  free(h);
  free(src);
  snprintf(path, sizeof path, "%s/data.bin", dir);
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  for (int i = 0; i < m->nin; i++) fwrite(m->in[i].data, 4, (size_t)numel(&m->in[i]), f);
  fclose(f);
  util_graph_free(t);
  return dir;
}

static float *run_c(const Model *m, const char *cc) {
  char *dir = emit(m), cmd[2048];
  snprintf(cmd, sizeof cmd, "cd %s && %s -std=c99 -O2 mathcases.c driver.c -o prog -lm && ./prog data.bin out.bin",
           dir, cc);
  int st;
  char *out = util_run(cmd, &st);
  cr_assert_eq(st, 0, "%s\n%s", cmd, out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s/out.bin", dir);
  FILE *f = fopen(cmd, "rb");
  cr_assert(f, "no %s", cmd);
  float *got = malloc((size_t)m->total * 4 + 4);
  size_t n = fread(got, 4, (size_t)m->total + 1, f);
  fclose(f);
  cr_assert_eq((int64_t)n, m->total, "%s: %zu results, expected %lld", cc, n, (long long)m->total);
  if (getenv("NNDC_MATH_KEEP")) fprintf(stderr, "%s: emitted C kept in %s\n", cc, dir);
  else {
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    free(util_run(cmd, &st));
  }
  free(dir);
  return got;
}

static void model_free(Model *m) {
  for (int i = 0; i < m->nin; i++) free(m->in_name[i]), array_free(&m->in[i]);
  for (int i = 0; i < m->nout; i++) free(m->out_name[i]);
  for (int c = 0; c < m->nchk; c++) free(m->chk[c].want);
  free(m->text);
  free(m);
}

static void check_engine(const char *engine) {
  Model *m = model_new();
  float *got = !strcmp(engine, "jit") ? run_jit(m) : run_c(m, engine);
  compare(m, got, engine);
  free(got);
  model_free(m);
}

Test(math, jit, .timeout = 120) { check_engine("jit"); }
Test(math, emitc_gcc, .timeout = 120) { check_engine("gcc"); }
Test(math, emitc_clang, .timeout = 120) { check_engine("clang"); }
