/* inspect.c - looking inside a trained model through the gradient with
 * respect to its input (an input marked as a differentiation target, Node.wrt,
 * which pass_autodiff differentiates like a param):
 *
 *   nndc run M.nnd --feed ... --grad-input NAME [--png]
 *     DIR/grad.NAME.npy: d loss / d NAME, or, when the loss cannot be computed
 *     (no labels fed), d top logit / d NAME, the top logit being the sum over
 *     the samples of each one's largest logit (autodiff_top_logit); with --png,
 *     DIR/grad.NAME.png: each sample's input beside its saliency map.
 *   nndc attack M.nnd --load P --test NAME=FILE ... [--eps E1,E2,...]
 *     the test loss and metrics under the fast gradient sign method:
 *     x' = clip(x + eps * sign(d loss / d x), lo, hi) for every f32 input x
 *     the loss depends on (or the one --grad-input names), where [lo, hi] is
 *     [0, 1] when every test value of x lies in it (images) and the test
 *     data's own range otherwise; eps 0 is the clean figure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"

static Node *input_by_name(const Graph *g, const char *name) {
  for (int i = 0; i < g->ninputs; i++)
    if (!strcmp(g->inputs[i].name, name)) return g->inputs[i].node;
  return NULL;
}

Node *mark_target(Diag *d, Graph *g, const char *name) {
  Node *x = input_by_name(g, name);
  if (!x) {
    diag_error(d, (Loc){0}, "--grad-input: the model has no input named '%s'", name);
    fail(d);
  }
  if (x->dt != DT_F32) {
    diag_error(d, x->loc, "--grad-input: input '%s' is i32 and has no gradient", name);
    fail(d);
  }
  x->wrt = 1;
  return x;
}

/* fed[id] = 1 for every input ds feeds; [nnodes], malloc'd. */
static uint8_t *fed_mask(const Graph *g, const Dataset *ds) {
  uint8_t *fed = calloc((size_t)g->nnodes + 1, 1);
  if (!fed) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < ds->n; i++) fed[ds->inputs[i]->id] = 1;
  return fed;
}

Node *grad_input_prepare(Cli *c, Diag *d, Graph *g, const Dataset *ds) {
  Node *x = mark_target(d, g, c->grad_input);
  uint8_t *fed = fed_mask(g, ds);
  if (!fed[x->id]) {
    diag_error(d, x->loc, "--grad-input: input '%s' was not fed", c->grad_input);
    fail(d);
  }
  Node *obj = g->loss && computable(g, g->loss, fed) ? g->loss : NULL;
  if (!obj) {
    obj = autodiff_top_logit(d, g);
    if (!obj) fail(d);
    if (!computable(g, obj, fed)) {
      diag_error(d, obj->loc,
                 "--grad-input: neither the loss nor the first output can be computed from the inputs fed");
      fail(d);
    }
    int sm = obj->in[0]->in[0] != g->outputs[0].node;   /* the logits under the output's softmax */
    fprintf(stderr, "nndc: note: --grad-input: the loss needs an input that was not fed; grad.%s is the gradient "
            "of the top logit (the sum over the samples of each one's largest logit of %s '%s')\n",
            c->grad_input, sm ? "the operand of output" : "output", g->outputs[0].name);
  }
  free(fed);
  return obj;
}

/* ------------------------------------------------------ saliency maps */

/* The image geometry of input x: [N, C, H, W] (C 1 or 3), [N, H, W], or
 * [N, D] with D a square (a flattened square image); 0 if none. */
static int image_geometry(const Shape *s, int64_t *c, int64_t *h, int64_t *w) {
  *c = 1;
  if (s->rank == 4 && (s->dim[1] == 1 || s->dim[1] == 3)) *c = s->dim[1];
  else if (s->rank == 2) {
    int64_t r = (int64_t)llround(sqrt((double)s->dim[1]));
    if (r < 2 || r * r != s->dim[1]) return 0;
    *h = *w = r;
    return 1;
  } else if (s->rank != 3) return 0;
  *h = s->dim[s->rank - 2];
  *w = s->dim[s->rank - 1];
  return 1;
}

/* Tile k of out [n, c, h, 2w + 1]: the input (as is when in [0, 1], else
 * scaled to it), a grey column, and the saliency |grad| (the largest over
 * the channels) divided by the image's largest. */
static void saliency_tile(const float *x, const float *g, int64_t c, int64_t h, int64_t w, float *out) {
  int64_t m = c * h * w, W = 2 * w + 1;
  float lo = x[0], hi = x[0], top = 0;
  for (int64_t i = 0; i < m; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]), top = fmaxf(top, fabsf(g[i]));
  int scale = lo < 0 || hi > 1;
  for (int64_t ch = 0; ch < c; ch++)
    for (int64_t y = 0; y < h; y++) {
      float *row = out + (ch * h + y) * W;
      for (int64_t j = 0; j < w; j++) {
        float v = x[(ch * h + y) * w + j];
        row[j] = scale ? (hi > lo ? (v - lo) / (hi - lo) : 0) : v;
        float s = 0;
        for (int64_t k = 0; k < c; k++) s = fmaxf(s, fabsf(g[(k * h + y) * w + j]));
        row[w + 1 + j] = top > 0 ? s / top : 0;
      }
      row[w] = 0.5f;
    }
}

void grad_input_png(Diag *d, const Node *x, const float *xv, const float *gv, const char *dir) {
  int64_t c, h, w, n = x->shape.dim[0];
  if (x->shape.rank < 2 || !image_geometry(&x->shape, &c, &h, &w)) {
    fprintf(stderr, "nndc: note: --png: input '%s' is not shaped as images ([N,1,H,W], [N,3,H,W], [N,H,W] or "
            "[N,H*W] with H = W); no saliency map\n", x->name);
    return;
  }
  int64_t m = c * h * w, tile = c * h * (2 * w + 1);
  float *img = malloc((size_t)(n * tile) * sizeof *img);
  if (!img) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int64_t k = 0; k < n; k++) saliency_tile(xv + k * m, gv + k * m, c, h, w, img + k * tile);
  char path[4096];
  snprintf(path, sizeof path, "%s/grad.%s.png", dir, x->name);
  int rc = png_write_grid(d, path, img, n, c, h, 2 * w + 1);
  free(img);
  if (rc) fail(d);
  printf("wrote %s (each sample's input beside its saliency map |grad|)\n", path);
}

/* ------------------------------------------------------------- attack */

#define MAX_EPS 64

/* The model compiled at one batch size: loss, metrics and the gradient with
 * respect to the attacked inputs, and its two engines. */
typedef struct Fgsm {
  Arena a;
  Graph g;
  int64_t bs;          /* samples per batch */
  Engine *grad;        /* loss, metrics, d loss / d x of every target */
  Engine *eval;        /* loss and metrics */
  const Node **in;     /* [ds.n] the graph's input fed by ds.arrays[i] */
  const Node **dx;     /* [ds.n] d loss / d that input (NULL: not attacked) */
  float **adv;         /* [ds.n] the perturbed batch of a target */
} Fgsm;

/* What the attack shares across batch sizes. */
typedef struct Attack {
  Cli *c;
  Dataset ds;
  ModelState ms;
  uint8_t *target;     /* [ds.n] 1: ds.arrays[i] is attacked */
  float *lo, *hi;      /* [ds.n] its clipping range */
  double eps[MAX_EPS];
  int neps, nm;        /* epsilons; metrics */
  double *sums;        /* [neps][1 + nm]: sample-weighted loss, then metrics */
} Attack;

static int parse_eps(const char *s, double *eps) {
  int n = 0;
  for (const char *p = s;;) {
    char *end;
    double v = strtod(p, &end);
    if (end == p || !(v >= 0) || isinf(v) || n >= MAX_EPS || (*end && *end != ',')) return -1;
    eps[n++] = v;
    if (!*end) return n;
    p = end + 1;
  }
}

/* Which arrays are attacked: the input --grad-input names, else every f32
 * input fed that the loss depends on; fails when there is none. */
static void choose_targets(Attack *at, Diag *d, Graph *g) {
  uint8_t *dep = calloc((size_t)g->nnodes + 1, 1);
  if (!dep) nndc_fatal(__FILE__, __LINE__, "out of memory");
  ir_mark_deps(g, &g->loss, 1, dep);
  if (at->c->grad_input) mark_target(d, g, at->c->grad_input);   /* fails on an unknown or i32 input */
  int n = 0;
  for (int i = 0; i < at->ds.n; i++) {
    const Node *x = at->ds.inputs[i];
    int pick = at->c->grad_input ? !strcmp(x->name, at->c->grad_input) : x->dt == DT_F32 && dep[x->id];
    at->target[i] = (uint8_t)pick;
    n += pick;
  }
  free(dep);
  if (!n && at->c->grad_input)
    diag_error(d, (Loc){0}, "--grad-input: input '%s' was not fed with --test", at->c->grad_input);
  else if (!n) diag_error(d, g->loss->loc, "attack: the loss depends on no f32 input that was fed");
  if (!n) fail(d);
}

/* The clipping range of each target: [0, 1] when its data lies in it, else the data's range. */
static void clip_ranges(Attack *at) {
  for (int i = 0; i < at->ds.n; i++) {
    if (!at->target[i]) continue;
    const float *v = at->ds.arrays[i].data;
    int64_t m = shape_numel(&at->ds.arrays[i].shape);
    float lo = m ? v[0] : 0, hi = m ? v[0] : 0;
    for (int64_t k = 0; k < m; k++) lo = fminf(lo, v[k]), hi = fmaxf(hi, v[k]);
    if (lo >= 0 && hi <= 1) lo = 0, hi = 1;
    at->lo[i] = lo, at->hi[i] = hi;
  }
}

static void fgsm_engines(Attack *at, Diag *d, Fgsm *f);

/* Compiles the model at batch size bs and builds its engines; the first
 * (raw: the test arrays read) also makes the dataset, the params and the
 * choice of targets, which the others share. */
static void fgsm_open(Attack *at, Diag *d, Fgsm *f, int64_t bs, const Array *raw) {
  Cli *c = at->c;
  memset(f, 0, sizeof *f);
  arena_init(&f->a);
  f->bs = bs;
  Graph *g = &f->g;
  compile(c, d, g, &f->a, 0, bs, NULL, 0);
  if (raw) {
    make_dataset(d, g, c->tests, c->ntests, raw, &at->ds, 1);
    init_state(c, d, g, &at->ms);
  }
  int n = at->ds.n;
  f->in = calloc((size_t)n, sizeof *f->in);
  f->dx = calloc((size_t)n, sizeof *f->dx);
  f->adv = calloc((size_t)n, sizeof *f->adv);
  if (!f->in || !f->dx || !f->adv) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < n; i++) f->in[i] = input_by_name(g, at->ds.inputs[i]->name);
  uint8_t *fed = fed_mask(g, &at->ds);
  if (!g->loss || !computable(g, g->loss, fed)) {
    diag_error(d, g->loss ? g->loss->loc : (Loc){0},
               "attack needs the model's loss and every input it depends on (the labels too) with --test");
    fail(d);
  }
  free(fed);
  if (raw) {
    at->target = calloc((size_t)n, 1);
    at->lo = calloc((size_t)n, sizeof *at->lo);
    at->hi = calloc((size_t)n, sizeof *at->hi);
    if (!at->target || !at->lo || !at->hi) nndc_fatal(__FILE__, __LINE__, "out of memory");
    choose_targets(at, d, g);
  }
  fgsm_engines(at, d, f);
}

/* Differentiates f's graph with respect to the targets and compiles its two engines. */
static void fgsm_engines(Attack *at, Diag *d, Fgsm *f) {
  Graph *g = &f->g;
  int n = at->ds.n, nr = 0;
  for (int i = 0; i < n; i++)
    if (at->target[i]) ((Node *)f->in[i])->wrt = 1;
  if (pass_autodiff(d, g)) fail(d);
  Node **roots = calloc((size_t)(1 + g->nmetrics + n), sizeof *roots);
  if (!roots) nndc_fatal(__FILE__, __LINE__, "out of memory");
  roots[nr++] = g->loss;
  for (int i = 0; i < g->nmetrics; i++) roots[nr++] = g->metrics[i].node;
  EngineOpts eo = engine_opts(at->c);
  f->eval = engine_new(d, g, roots, nr, &eo);
  for (int i = 0; i < n; i++)
    for (int k = 0; at->target[i] && k < g->ninputs; k++)
      if (g->inputs[k].node == f->in[i]) {
        f->dx[i] = roots[nr++] = g->input_grads[k];
        f->adv[i] = malloc((size_t)shape_numel(&f->in[i]->shape) * sizeof(float));
        if (!f->adv[i]) nndc_fatal(__FILE__, __LINE__, "out of memory");
      }
  f->grad = f->eval ? engine_new(d, g, roots, nr, &eo) : NULL;
  free(roots);
  if (!f->eval || !f->grad) fail(d);
  for (int i = 0; i < g->nparams; i++) {
    engine_bind(f->grad, g->params[i].node, at->ms.params[i]);
    engine_bind(f->eval, g->params[i].node, at->ms.params[i]);
  }
}

static void fgsm_close(Fgsm *f, int n) {
  engine_free(f->grad);
  engine_free(f->eval);
  for (int i = 0; i < n; i++) free(f->adv[i]);
  free(f->in);
  free(f->dx);
  free(f->adv);
  arena_free(&f->a);
}

/* Adds engine e's loss and metrics, weighted by the batch size, into sums[0 .. 1 + nm). */
static void add_figures(const Fgsm *f, Engine *e, double *sums) {
  double w = (double)f->bs;
  sums[0] += w * *(float *)engine_value(e, f->g.loss);
  for (int i = 0; i < f->g.nmetrics; i++) sums[1 + i] += w * *(float *)engine_value(e, f->g.metrics[i].node);
}

/* The batch of samples [first, first + bs): the clean figures (eps 0) and
 * those at every epsilon. */
static void fgsm_batch(Attack *at, Diag *d, Fgsm *f, int64_t first) {
  RunCtx ctx = {0, 1, 0};
  for (int i = 0; i < at->ds.n; i++) {
    const Array *arr = &at->ds.arrays[i];
    int64_t per = shape_numel(&arr->shape) / arr->shape.dim[0];
    void *x = (char *)arr->data + (size_t)(first * per) * 4;   /* f32 and i32: 4 bytes */
    engine_bind(f->grad, f->in[i], x);
    engine_bind(f->eval, f->in[i], at->target[i] ? (void *)f->adv[i] : x);
  }
  if (engine_run(f->grad, d, &ctx)) fail(d);
  for (int k = 0; k < at->neps; k++) {
    double *sums = at->sums + k * (1 + at->nm);
    if (at->eps[k] == 0) {
      add_figures(f, f->grad, sums);
      continue;
    }
    for (int i = 0; i < at->ds.n; i++) {
      if (!at->target[i]) continue;
      const Array *arr = &at->ds.arrays[i];
      int64_t m = shape_numel(&f->in[i]->shape);
      const float *x = (const float *)arr->data + first * (m / f->bs), *gx = engine_value(f->grad, f->dx[i]);
      float e = (float)at->eps[k];
      for (int64_t j = 0; j < m; j++) {
        float v = x[j] + e * (float)((gx[j] > 0) - (gx[j] < 0));
        f->adv[i][j] = fminf(fmaxf(v, at->lo[i]), at->hi[i]);
      }
    }
    if (engine_run(f->eval, d, &ctx)) fail(d);
    add_figures(f, f->eval, sums);
  }
}

/* Progress after the samples [prev, done): on a terminal one line redrawn, else a line per quarter. */
static void show_progress(int tty, int64_t prev, int64_t done, int64_t total) {
  if (tty) {
    fprintf(stderr, "\r\033[Kattack: %lld/%lld samples", (long long)done, (long long)total);
    fflush(stderr);
  } else if (done * 4 / total > prev * 4 / total)
    fprintf(stderr, "attack: %lld/%lld samples\n", (long long)done, (long long)total);
}

static void print_table(const Attack *at, const Graph *g, int64_t n) {
  printf("%10s %10s", "eps", "loss");
  for (int i = 0; i < g->nmetrics; i++) printf(" %10s", g->metrics[i].name);
  printf("\n");
  for (int k = 0; k < at->neps; k++) {
    const double *s = at->sums + k * (1 + at->nm);
    printf("%10g %10.4f", at->eps[k], s[0] / (double)n);
    for (int i = 0; i < at->nm; i++) printf(" %10.4f", s[1 + i] / (double)n);
    printf("\n");
  }
}

int cmd_attack(Cli *c, Diag *d) {
  static Attack at;
  at.c = c;
  at.neps = parse_eps(c->eps ? c->eps : "0,0.05,0.1,0.2", at.eps);
  if (at.neps < 0) {
    fprintf(stderr, "nndc: usage error: --eps needs numbers >= 0 separated by commas (at most %d), got '%s'\n",
            MAX_EPS, c->eps);
    return 2;
  }
  if (c->ntests == 0) {
    fputs("nndc: usage error: attack needs --test NAME=FILE for the model's inputs and labels\n", stderr);
    return 2;
  }
  if (!c->load) fputs("nndc: note: attack without --load attacks the params as initialised\n", stderr);
  Array raw[MAX_ITEMS];
  read_arrays(d, c->tests, c->ntests, raw);
  int64_t n = raw[0].shape.rank ? raw[0].shape.dim[0] : 1;
  if (n < 1) {
    diag_file_error(d, c->tests[0].path, "holds no samples to attack");
    fail(d);
  }
  int64_t bs = c->batch > 0 && c->batch < n ? c->batch : n < 1000 ? n : 1000;
  Fgsm full, tail;
  fgsm_open(&at, d, &full, bs, raw);
  for (int i = 0; i < c->ntests; i++) array_free(&raw[i]);
  n = at.ds.nsamples;
  int64_t nfull = n / bs, rem = n - nfull * bs;
  if (rem) fgsm_open(&at, d, &tail, rem, NULL);
  clip_ranges(&at);
  at.nm = full.g.nmetrics;
  at.sums = calloc((size_t)(at.neps * (1 + at.nm)), sizeof *at.sums);
  if (!at.sums) nndc_fatal(__FILE__, __LINE__, "out of memory");
  printf("attack %s: FGSM on %lld test samples, batch %lld, %s engine;", c->model, (long long)n, (long long)bs,
         c->engine == ENGINE_JIT ? "jit" : "interp");
  for (int i = 0; i < at.ds.n; i++)
    if (at.target[i]) printf(" %s clipped to [%g, %g]", at.ds.inputs[i]->name, at.lo[i], at.hi[i]);
  printf("\n");
  fflush(stdout);
  int tty = isatty(2);
  double t0 = now_s();
  for (int64_t b = 0; b < nfull; b++) {
    fgsm_batch(&at, d, &full, b * bs);
    show_progress(tty, b * bs, (b + 1) * bs, n);
  }
  if (rem) {
    fgsm_batch(&at, d, &tail, nfull * bs);
    show_progress(tty, nfull * bs, n, n);
  }
  if (tty) fputs("\r\033[K", stderr);
  print_table(&at, &full.g, n);
  printf("(%.1f s)\n", now_s() - t0);
  int nd = at.ds.n;
  dataset_free(&at.ds);
  model_state_free(&full.g, &at.ms);
  fgsm_close(&full, nd);
  if (rem) fgsm_close(&tail, nd);
  free(at.target);
  free(at.lo);
  free(at.hi);
  free(at.sums);
  return 0;
}
