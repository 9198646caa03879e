/* sweep.c - `nndc sweep` (spec 9): hyperparameter search by grid or random
 * sampling over train keys (batch, epochs, seed) and optimizer options (lr,
 * momentum, weight_decay, beta1, beta2, eps, alpha).
 *
 * The optimizer options are run-time values of the compiled step
 * (engine_set_hyper), so the training programs are compiled once per shape
 * set: one per batch size, and per zero/nonzero momentum and weight_decay
 * (which change the update's code); the evaluation programs once in all.
 * Every trial runs on clones of those programs (engine_clone) with its own
 * params and optimizer state, from the same initialisation as `nndc train
 * --seed S`, so a trial's figures are those of the `nndc train` command line
 * printed for it.  --parallel P runs P trials at a time on threads, the
 * cores split among them; under an MPI launcher rank r runs trials r, r+K,
 * ... on its own and rank 0 gathers the results.  Ctrl-C stops every running
 * trial between two steps and prints the table of those that finished
 * (exit status 130).  A trial that fails (a loss that turns NaN) is
 * reported and left out of the table; the status is 1 only when every trial
 * failed. */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

enum { K_LR, K_MOMENTUM, K_WD, K_BETA1, K_BETA2, K_EPS, K_ALPHA, K_BATCH, K_EPOCHS, K_SEED, NKEYS };
enum { NOPT = K_BATCH };   /* keys before it are optimizer options */
static const char *const key_name[NKEYS] = {"lr", "momentum", "weight_decay", "beta1", "beta2", "eps", "alpha",
                                            "batch", "epochs", "seed"};

int optim_option(OptimCfg *o, const char *key, double v) {
  double *f[NOPT] = {&o->lr, &o->momentum, &o->weight_decay, &o->beta1, &o->beta2, &o->eps, &o->alpha};
  for (int k = 0; k < NOPT; k++)
    if (!strcmp(key, key_name[k])) {
      *f[k] = v;
      return 0;
    }
  return -1;
}

int optim_has_option(const Graph *tg, const char *key) {
  for (int i = 0; i < tg->nupdates; i++) {
    const Node *u = tg->updates[i];
    char an[32];
    for (int k = 0; u->op != OP_RUNNING_STATS && !op_attr_name(u->op, k, an, sizeof an); k++)
      if (!strcmp(an, key)) return 1;
  }
  return 0;
}

static double optim_value(const OptimCfg *o, int k) {
  const double v[NOPT] = {o->lr, o->momentum, o->weight_decay, o->beta1, o->beta2, o->eps, o->alpha};
  return v[k];
}

/* One swept key: grid values, or a distribution. */
typedef struct Axis {
  int key;
  int n;              /* grid values */
  double *v;          /* [n] */
  int log;            /* random: loguniform (else uniform) */
  double lo, hi;
} Axis;

/* A trial: every key's value, and what training it gave. */
typedef struct Trial {
  double v[NKEYS];
  int entry;          /* its compiled programs (Sweep.entries) */
  double status;      /* 0 not run or interrupted, 1 done, 2 failed */
  double train_loss, train_metric, test_loss, test_metric, seconds;
} Trial;
enum { NRESULT = 6 };  /* status .. seconds, gathered across MPI ranks */

/* The training program of one shape set. */
typedef struct Entry {
  double batch, mom_zero, wd_zero;  /* the key */
  Arena arena;
  Graph tg;
  Engine *step;
} Entry;

typedef struct Sweep {
  Cli *c;
  Axis ax[NKEYS];
  int nax;
  Trial *t;
  int nt;
  Entry *entries;
  int nentries;
  Graph eg, etail;
  TrainEngines eval;  /* step NULL */
  int has_eg, has_etail;
  Dataset train, test;
  int has_test;
  int threads;        /* per trial */
  pthread_mutex_t mu;
  int next;           /* the next trial to start */
  int rank, ranks;
  int printed;        /* live rows so far */
} Sweep;

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
  (void)sig;
  g_stop = 1;
}

static _Noreturn void sweep_usage(const char *fmt, const char *a, const char *b) {
  fputs("nndc: usage error: sweep: ", stderr);
  fprintf(stderr, fmt, a, b);
  fputs("\n(run 'nndc --help' for the commands)\n", stderr);
  exit(2);
}

static int key_of(const char *s, size_t n) {
  for (int k = 0; k < NKEYS; k++)
    if (strlen(key_name[k]) == n && !strncmp(s, key_name[k], n)) return k;
  return -1;
}

/* A value of key k: integers >= 1 for batch and epochs, >= 0 for seed,
 * finite numbers >= 0 for the optimizer options. */
static double parse_value(int k, const char *s, const char *opt) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !isfinite(v) || v < 0 || (k >= NOPT && v != floor(v)) ||
      ((k == K_BATCH || k == K_EPOCHS) && v < 1))
    sweep_usage(k >= NOPT ? "%s: '%s' is not an integer (>= 1 for batch and epochs)"
                          : "%s: '%s' is not a number >= 0", opt, s);
  return v;
}

/* KEY=V1,V2,... */
static void parse_grid(Sweep *sw, const char *s) {
  const char *eq = strchr(s, '=');
  int k = eq ? key_of(s, (size_t)(eq - s)) : -1;
  if (k < 0) sweep_usage("--grid '%s': KEY=V1,V2,... with KEY one of lr momentum weight_decay beta1 beta2 eps "
                         "alpha batch epochs seed%s", s, "");
  Axis *a = &sw->ax[sw->nax++];
  a->key = k;
  char *list = strdup(eq + 1), *save = NULL;
  a->v = calloc(strlen(list) + 1, sizeof *a->v);
  for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    a->v[a->n++] = parse_value(k, tok, "--grid");
  if (a->n == 0) sweep_usage("--grid '%s': no values%s", s, "");
  free(list);
}

/* KEY=uniform(a,b) or KEY=loguniform(a,b) */
static void parse_range(Sweep *sw, const char *s) {
  const char *eq = strchr(s, '=');
  int k = eq ? key_of(s, (size_t)(eq - s)) : -1;
  Axis *a = &sw->ax[sw->nax];
  char lo[64], hi[64], tail;
  int log = eq && !strncmp(eq + 1, "log", 3);
  const char *d = eq ? eq + 1 + (log ? 3 : 0) : "";
  if (k < 0 || sscanf(d, "uniform(%63[^,],%63[^)])%c", lo, hi, &tail) != 2)
    sweep_usage("--range '%s': KEY=uniform(a,b) or KEY=loguniform(a,b)%s", s, "");
  a->key = k;
  a->log = log;
  a->lo = parse_value(k < NOPT ? k : K_LR, lo, "--range");
  a->hi = parse_value(k < NOPT ? k : K_LR, hi, "--range");
  if (a->hi < a->lo || (log && a->lo <= 0)) sweep_usage("--range '%s': needs a <= b%s", s, log ? " and a > 0" : "");
  sw->nax++;
}

/* Rounds to 4 significant digits, so the printed command line is exact. */
static double round4(double v) {
  char b[32];
  snprintf(b, sizeof b, "%.4g", v);
  return strtod(b, NULL);
}

static void make_trials(Sweep *sw, const double *base, uint64_t seed) {
  Cli *c = sw->c;
  int grid = c->ngrid > 0;
  sw->nt = 1;
  for (int j = 0; grid && j < sw->nax; j++) sw->nt *= sw->ax[j].n;
  if (!grid) sw->nt = (int)c->random;
  sw->t = calloc((size_t)sw->nt, sizeof *sw->t);
  for (int i = 0; i < sw->nt; i++) {
    Trial *t = &sw->t[i];
    memcpy(t->v, base, sizeof t->v);
    int rest = i;
    for (int j = sw->nax - 1; j >= 0; j--) {   /* grid: the last axis fastest */
      Axis *a = &sw->ax[j];
      if (grid) {
        t->v[a->key] = a->v[rest % a->n];
        rest /= a->n;
        continue;
      }
      double u = rng_uniform(seed, 0x5ee9u + (uint64_t)j, (uint64_t)i);
      double v = a->log ? exp(log(a->lo) + u * (log(a->hi) - log(a->lo))) : a->lo + u * (a->hi - a->lo);
      t->v[a->key] = a->key >= NOPT ? floor(v + 0.5) : round4(v);
      if ((a->key == K_BATCH || a->key == K_EPOCHS) && t->v[a->key] < 1) t->v[a->key] = 1;
    }
  }
}

/* The training program for trial t's shape set, compiled at its first use. */
static int entry_of(Sweep *sw, Diag *d, Trial *t) {
  double key[3] = {t->v[K_BATCH], t->v[K_MOMENTUM] == 0, t->v[K_WD] == 0};
  for (int e = 0; e < sw->nentries; e++)
    if (!memcmp(&sw->entries[e].batch, key, sizeof key)) return e;
  Entry *en = &sw->entries[sw->nentries];
  memcpy(&en->batch, key, sizeof key);
  arena_init(&en->arena);
  compile(sw->c, d, &en->tg, &en->arena, 1, (int64_t)t->v[K_BATCH], NULL, 0);
  for (int k = 0; k < NOPT; k++) optim_option(&en->tg.train.opt, key_name[k], t->v[k]);
  if (pass_autodiff(d, &en->tg) || pass_optim(d, &en->tg)) fail(d);
  for (int j = 0; j < sw->nax; j++)
    if (sw->ax[j].key < NOPT && !optim_has_option(&en->tg, key_name[sw->ax[j].key]))
      sweep_usage("the model's optimizer has no option '%s'%s", key_name[sw->ax[j].key], "");
  TrainEngines te;
  EngineOpts eo = engine_opts(sw->c);
  eo.threads = sw->threads;
  if (rt_train_engines(d, &en->tg, NULL, NULL, &eo, &te)) fail(d);
  en->step = te.step;
  return sw->nentries++;
}

typedef struct Rec {
  Trial *t;
  int64_t epochs_done;
} Rec;

static void on_epoch_done(void *user, const EpochReport *r) {
  Rec *rec = user;
  rec->epochs_done = r->epoch;
  rec->t->train_loss = r->train_loss;
  rec->t->train_metric = r->train_metrics ? r->train_metrics[0] : NAN;
  rec->t->test_loss = r->has_test ? r->test_loss : NAN;
  rec->t->test_metric = r->has_test && r->test_metrics ? r->test_metrics[0] : NAN;
}

static void print_row(const Sweep *sw, const Trial *t, int i);

static void run_trial(Sweep *sw, Trial *t, int i) {
  Entry *en = &sw->entries[t->entry];
  Diag d;
  diag_init(&d);
  TrainEngines src = {en->step, sw->eval.eval, sw->eval.etail}, te;
  rt_train_engines_clone(&src, sw->threads, &te);
  for (int k = 0; k < NOPT; k++)
    if (optim_has_option(&en->tg, key_name[k])) engine_set_hyper(te.step, NULL, key_name[k], t->v[k]);
  ModelState ms;
  Rec rec = {t, 0};
  double t0 = now_s();
  int rc = model_state_init(&d, &en->tg, &ms, (uint64_t)t->v[K_SEED]);
  if (!rc) {
    TrainOpts o = {engine_opts(sw->c), (int64_t)t->v[K_EPOCHS], sw->c->no_shuffle ? 0 : en->tg.train.shuffle,
                   (uint64_t)t->v[K_SEED], NULL, on_epoch_done, &rec, NULL, 0, 0, &te, 1, &g_stop};
    rc = rt_train(&d, &en->tg, sw->has_eg ? &sw->eg : NULL, sw->has_etail ? &sw->etail : NULL, &ms, &sw->train,
                  sw->has_test ? &sw->test : NULL, &o);
    model_state_free(&en->tg, &ms);
  }
  rt_train_engines_free(&te);
  t->seconds = now_s() - t0;
  t->status = rc ? 2 : rec.epochs_done == (int64_t)t->v[K_EPOCHS] ? 1 : 0;
  pthread_mutex_lock(&sw->mu);
  if (rc) fprintf(stderr, "trial %d failed:\n%s", i + 1, d.buf ? d.buf : "");
  if (t->status == 1 && sw->rank == 0) print_row(sw, t, i);
  pthread_mutex_unlock(&sw->mu);
  diag_free(&d);
}

static void *worker(void *arg) {
  Sweep *sw = arg;
  for (;;) {
    pthread_mutex_lock(&sw->mu);
    int i = sw->next;
    while (i < sw->nt && i % sw->ranks != sw->rank) i++;
    sw->next = i + 1;
    pthread_mutex_unlock(&sw->mu);
    if (i >= sw->nt || g_stop) return NULL;
    run_trial(sw, &sw->t[i], i);
  }
}

/* ------------------------------------------------------------ the table */

static void fmt_key(char *b, size_t n, int k, double v) {
  if (k >= NOPT) snprintf(b, n, "%lld", (long long)v);
  else snprintf(b, n, "%.4g", v);
}

static void print_header(const Sweep *sw) {
  const Graph *g = &sw->entries[0].tg;
  const char *m = g->nmetrics ? g->metrics[0].name : NULL;
  printf("%6s", "trial");
  for (int j = 0; j < sw->nax; j++) printf(" %12s", key_name[sw->ax[j].key]);
  printf(" %11s", "train_loss");
  if (m) printf(" %*s%s", (int)(11 - 6 < (int)strlen(m) ? 0 : 11 - 6 - strlen(m)), "train_", m);
  if (sw->has_test) printf(" %11s", "test_loss");
  if (m && sw->has_test) printf(" %*s%s", (int)(11 - 5 < (int)strlen(m) ? 0 : 11 - 5 - strlen(m)), "test_", m);
  printf(" %8s\n", "seconds");
}

static void print_row(const Sweep *sw, const Trial *t, int i) {
  (void)sw;
  char b[32];
  printf("%6d", i + 1);
  for (int j = 0; j < sw->nax; j++) {
    fmt_key(b, sizeof b, sw->ax[j].key, t->v[sw->ax[j].key]);
    printf(" %12s", b);
  }
  int m = sw->entries[0].tg.nmetrics > 0;
  printf(" %11.4f", t->train_loss);
  if (m) printf(" %11.4f", t->train_metric);
  if (sw->has_test) printf(" %11.4f", t->test_loss);
  if (m && sw->has_test) printf(" %11.4f", t->test_metric);
  printf(" %8.1f\n", t->seconds);
  fflush(stdout);
}

/* The figure trials are ranked by: the test metric (higher first), else the
 * test loss, else the train loss (lower first); as a value to sort up. */
static double rank_value(const Sweep *sw, const Trial *t) {
  int m = sw->entries[0].tg.nmetrics > 0;
  if (sw->has_test) return m ? -t->test_metric : t->test_loss;
  return t->train_loss;
}

static const Sweep *g_sort;
static int by_rank(const void *a, const void *b) {
  const Trial *x = *(const Trial *const *)a, *y = *(const Trial *const *)b;
  double u = rank_value(g_sort, x), v = rank_value(g_sort, y);
  if (u != v) return u < v ? -1 : 1;
  return x < y ? -1 : x > y;   /* stable: trial order */
}

static void write_csv(const Sweep *sw, Trial **order, int n) {
  Buf o = {0};
  const Graph *g = &sw->entries[0].tg;
  const char *m = g->nmetrics ? g->metrics[0].name : NULL;
  buf_puts(&o, "trial");
  for (int j = 0; j < sw->nax; j++) buf_printf(&o, ",%s", key_name[sw->ax[j].key]);
  buf_puts(&o, ",train_loss");
  if (m) buf_printf(&o, ",train_%s", m);
  if (sw->has_test) buf_printf(&o, ",test_loss");
  if (m && sw->has_test) buf_printf(&o, ",test_%s", m);
  buf_puts(&o, ",seconds\n");
  for (int r = 0; r < n; r++) {
    const Trial *t = order[r];
    char b[32];
    buf_printf(&o, "%d", (int)(t - sw->t) + 1);
    for (int j = 0; j < sw->nax; j++) {
      fmt_key(b, sizeof b, sw->ax[j].key, t->v[sw->ax[j].key]);
      buf_printf(&o, ",%s", b);
    }
    buf_printf(&o, ",%.9g", t->train_loss);
    if (m) buf_printf(&o, ",%.9g", t->train_metric);
    if (sw->has_test) buf_printf(&o, ",%.9g", t->test_loss);
    if (m && sw->has_test) buf_printf(&o, ",%.9g", t->test_metric);
    buf_printf(&o, ",%.3f\n", t->seconds);
  }
  Diag d;
  diag_init(&d);
  const void *part = o.s;
  size_t len = strlen(o.s);
  if (rt_write_atomic(&d, sw->c->csv, &part, &len, 1)) fail(&d);
  diag_free(&d);
  free(o.s);
}

/* `nndc train` with trial t's settings. */
static void print_command(const Sweep *sw, const Trial *t) {
  const Cli *c = sw->c;
  printf("nndc train %s", c->model);
  for (int i = 0; i < c->nfeeds; i++) printf(" --data %s=%s", c->feeds[i].name, c->feeds[i].path);
  for (int i = 0; i < c->ntests; i++) printf(" --test %s=%s", c->tests[i].name, c->tests[i].path);
  for (int i = 0; i < c->ndefs; i++) {
    if (c->defs[i].is_int) printf(" -D %s=%lld", c->defs[i].name, (long long)c->defs[i].value);
    else printf(" -D %s=%.17g", c->defs[i].name, c->defs[i].value);
  }
  printf(" --batch %lld --epochs %lld --seed %lld", (long long)t->v[K_BATCH], (long long)t->v[K_EPOCHS],
         (long long)t->v[K_SEED]);
  if (c->no_shuffle) printf(" --no-shuffle");
  for (int k = 0; k < NOPT; k++)
    if (optim_has_option(&sw->entries[0].tg, key_name[k])) printf(" --opt %s=%.4g", key_name[k], t->v[k]);
  printf("\n");
}

static int report(Sweep *sw) {
  Trial **order = calloc((size_t)sw->nt + 1, sizeof *order);
  int n = 0;
  for (int i = 0; i < sw->nt; i++)
    if (sw->t[i].status == 1) order[n++] = &sw->t[i];
  g_sort = sw;
  qsort(order, (size_t)n, sizeof *order, by_rank);
  int failed = 0;
  for (int i = 0; i < sw->nt; i++) failed += sw->t[i].status == 2;
  printf("\n%s: %d of %d trials finished", g_stop ? "interrupted" : "sweep", n, sw->nt);
  if (failed) printf(", %d failed", failed);
  int m = sw->entries[0].tg.nmetrics > 0;
  printf("; sorted by %s\n", !sw->has_test ? "train loss" : m ? "test metric" : "test loss");
  print_header(sw);
  for (int r = 0; r < n; r++) print_row(sw, order[r], (int)(order[r] - sw->t));
  if (sw->c->csv) {
    write_csv(sw, order, n);
    printf("wrote %s\n", sw->c->csv);
  }
  if (n) {
    printf("best (trial %d):\n  ", (int)(order[0] - sw->t) + 1);
    print_command(sw, order[0]);
  }
  fflush(stdout);
  free(order);
  return g_stop ? 130 : n == 0 && failed ? 1 : 0;   /* a diverging trial is a result, not an error */
}

/* ------------------------------------------------------------- the command */

static void check_args(Sweep *sw) {
  Cli *c = sw->c;
  if (c->nfeeds == 0) sweep_usage("needs --data NAME=FILE for the model's inputs%s%s", "", "");
  if (!c->ngrid == !c->random) sweep_usage("needs either --grid KEY=V1,V2,... or --random N --range KEY=DIST%s%s", "", "");
  if (c->random && !c->nrange) sweep_usage("--random N needs --range KEY=DIST%s%s", "", "");
  if (c->ngrid && c->nrange) sweep_usage("--range goes with --random, not --grid%s%s", "", "");
  if (c->load || c->save || c->resume) sweep_usage("--load, --save and --resume are not for sweep%s%s", "", "");
  for (int i = 0; i < c->ngrid; i++) parse_grid(sw, c->grid[i]);
  for (int i = 0; i < c->nrange; i++) parse_range(sw, c->range[i]);
  for (int j = 0; j < sw->nax; j++)
    for (int i = 0; i < j; i++)
      if (sw->ax[i].key == sw->ax[j].key) sweep_usage("'%s' is swept twice%s", key_name[sw->ax[j].key], "");
  if (c->engine == ENGINE_INTERP && c->parallel > 1)
    sweep_usage("--engine interp runs one trial at a time (no --parallel)%s%s", "", "");
}

/* The evaluation programs on the test data (once for every trial). */
static void open_test(Sweep *sw, Diag *d, Arena *a, Array *rawt) {
  Cli *c = sw->c;
  if (!c->ntests) return;
  int64_t ntest = rawt[0].shape.rank ? rawt[0].shape.dim[0] : 1;
  int64_t eb = ntest < 1000 ? ntest : 1000;
  compile(c, d, &sw->eg, a, 0, eb, NULL, 0);
  make_dataset(d, &sw->eg, c->tests, c->ntests, rawt, &sw->test, 1);
  sw->has_eg = sw->has_test = 1;
  int64_t rem = sw->test.nsamples % eb;
  if (rem && sw->eg.ninputs && sw->eg.inputs[0].node->shape.dim[0] == eb) {
    compile(c, d, &sw->etail, a, 0, rem, NULL, 0);
    sw->has_etail = 1;
  }
  EngineOpts eo = engine_opts(c);
  eo.threads = sw->threads;
  if (rt_train_engines(d, NULL, &sw->eg, sw->has_etail ? &sw->etail : NULL, &eo, &sw->eval)) fail(d);
}

int cmd_sweep(Cli *c, Diag *d) {
  static Sweep s;
  Sweep *sw = &s;
  sw->c = c;
  check_args(sw);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, NULL);

  sw->rank = comm_rank(), sw->ranks = comm_size();
  Array raw[MAX_ITEMS], rawt[MAX_ITEMS];
  read_arrays(d, c->feeds, c->nfeeds, raw);
  read_arrays(d, c->tests, c->ntests, rawt);
  Arena a;
  arena_init(&a);
  Graph g;   /* the model's own settings: the values of the keys not swept */
  compile(c, d, &g, &a, 1, c->batch, NULL, 0);
  double base[NKEYS];
  for (int k = 0; k < NOPT; k++) base[k] = optim_value(&g.train.opt, k);
  base[K_BATCH] = (double)g.inputs[0].node->shape.dim[0];
  base[K_EPOCHS] = (double)(c->epochs >= 0 ? c->epochs : g.train.epochs);
  base[K_SEED] = (double)g.train.seed;
  make_trials(sw, base, c->has_seed ? (uint64_t)c->seed : 0);
  int total = c->threads > 0 ? c->threads : omp_get_max_threads();
  int par = (int)(c->parallel > 0 ? c->parallel : 1);
  int mine = (sw->nt - sw->rank + sw->ranks - 1) / sw->ranks;
  if (par > mine) par = mine > 0 ? mine : 1;
  sw->threads = total / par > 0 ? total / par : 1;
  make_dataset(d, &g, c->feeds, c->nfeeds, raw, &sw->train, 1);
  sw->entries = calloc((size_t)sw->nt + 1, sizeof *sw->entries);
  double t0 = now_s();
  for (int i = 0; i < sw->nt; i++)   /* compile what this process's trials need */
    if (i % sw->ranks == sw->rank) sw->t[i].entry = entry_of(sw, d, &sw->t[i]);
  if (sw->nentries == 0) entry_of(sw, d, &sw->t[0]);   /* for the table's columns */
  open_test(sw, d, &a, rawt);
  for (int i = 0; i < c->nfeeds; i++) array_free(&raw[i]);
  for (int i = 0; i < c->ntests; i++) array_free(&rawt[i]);
  flush_diag(d);
  if (sw->rank == 0) {
    printf("sweep %s: %d trials, %d at a time (%d thread%s each)", c->model, sw->nt, par, sw->threads,
           sw->threads == 1 ? "" : "s");
    if (sw->ranks > 1) printf(" on each of %d processes", sw->ranks);
    printf("\n");
  }
  if (c->verbose)
    fprintf(stderr, "sweep: rank %d compiled %d training programs (one per shape set) and %d evaluation programs in %.2f s\n",
            sw->rank, sw->nentries, sw->has_eg + sw->has_etail, now_s() - t0);
  if (sw->rank == 0) print_header(sw);
  pthread_mutex_init(&sw->mu, NULL);
  pthread_t *th = calloc((size_t)par, sizeof *th);
  for (int p = 0; p < par; p++) pthread_create(&th[p], NULL, worker, sw);
  for (int p = 0; p < par; p++) pthread_join(th[p], NULL);
  free(th);
  if (sw->ranks > 1) {   /* rank 0 gathers every trial's results */
    double *r = calloc((size_t)sw->nt * NRESULT + 1, sizeof *r);
    for (int i = 0; i < sw->nt; i++)
      if (i % sw->ranks == sw->rank) memcpy(r + i * NRESULT, &sw->t[i].status, NRESULT * sizeof *r);
    if (comm_allreduce_f64(d, r, sw->nt * NRESULT)) fail(d);
    for (int i = 0; i < sw->nt; i++) memcpy(&sw->t[i].status, r + i * NRESULT, NRESULT * sizeof *r);
    free(r);
  }
  int rc = sw->rank == 0 ? report(sw) : 0;
  if (c->verbose && sw->rank == 0)
    fprintf(stderr, "sweep: %d programs compiled for %d trials\n", sw->nentries, sw->nt);
  return rc;
}
