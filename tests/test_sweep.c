/* test_sweep.c - `nndc sweep` on a tiny model and tiny data: the table, the
 * CSV and its order, one compilation per shape set (the -v count), that a
 * trial's figures are those of the `nndc train` command line it prints,
 * reproducible random search with --seed, Ctrl-C, and usage errors.  (The
 * run-time optimizer options themselves are checked against compiled ones
 * and torch in test_optim.) */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

static const char *MODEL =
    "input x: f32[N, 12]\n"
    "input y: i32[N]\n"
    "param W1: f32[12, 16]\n"
    "param b1: f32[16]\n"
    "param W2: f32[16, 4]\n"
    "param b2: f32[4]\n"
    "logits = relu(x @ W1 + b1) @ W2 + b2\n"
    "loss = cross_entropy(logits, y)\n"
    "metric accuracy = mean(argmax(logits, axis=1) == y)\n"
    "train {\n  optimizer = sgd(lr=0.1, momentum=0.9)\n  batch = 8\n  epochs = 2\n}\n";

static char *dir, args[2048];

/* The model and 160 training, 40 test samples; args: its files as options. */
static void setup(void) {
  dir = util_tmpdir();
  char p[512];
  snprintf(p, sizeof p, "%s/m.nnd", dir);
  cr_assert_eq(util_write_file(p, MODEL), 0);
  enum { NS = 200 };
  float *x = malloc(NS * 12 * sizeof *x);
  int32_t *y = malloc(NS * sizeof *y);
  util_fill(x, NS * 12, 3, -1, 1);
  for (int i = 0; i < NS; i++) {
    int best = 0;
    for (int k = 1; k < 4; k++)
      if (fabsf(x[i * 12 + k]) > fabsf(x[i * 12 + best])) best = k;
    y[i] = best;
  }
  Diag d;
  diag_init(&d);
  const char *names[4] = {"x", "y", "tx", "ty"};
  for (int f = 0; f < 4; f++) {
    int test = f >= 2, n = test ? 40 : 160, off = test ? 160 : 0;
    snprintf(p, sizeof p, "%s/%s.npy", dir, names[f]);
    Shape s = f % 2 ? (Shape){1, {n}} : (Shape){2, {n, 12}};
    const void *data = f % 2 ? (const void *)(y + off) : (const void *)(x + off * 12);
    cr_assert_eq(npy_write(&d, p, f % 2 ? EL_I32 : EL_F32, &s, data), 0);
  }
  diag_free(&d);
  free(x);
  free(y);
  snprintf(args, sizeof args, "%s/m.nnd --data x=%s/x.npy --data y=%s/y.npy --test x=%s/tx.npy --test y=%s/ty.npy",
           dir, dir, dir, dir, dir);
}

static void teardown(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  int st;
  free(util_run(cmd, &st));
  free(dir);
}

TestSuite(sweep, .init = setup, .fini = teardown, .timeout = 300);

/* The CSV's lines (malloc'd text; lines[] point into it). */
static int read_csv(const char *path, char **text, char **lines, int max) {
  FILE *f = fopen(path, "r");
  cr_assert(f, "%s", path);
  *text = calloc(1 << 16, 1);
  size_t n = fread(*text, 1, (1 << 16) - 1, f);
  fclose(f);
  (*text)[n] = 0;
  int k = 0;
  for (char *s = strtok(*text, "\n"); s && k < max; s = strtok(NULL, "\n")) lines[k++] = s;
  return k;
}

/* Field i (0-based) of a CSV line. */
static double field(const char *line, int i) {
  const char *p = line;
  for (int k = 0; k < i; k++) {
    p = strchr(p, ',');
    cr_assert(p, "field %d of '%s'", i, line);
    p++;
  }
  return strtod(p, NULL);
}

/* "compiled K training programs" in -v output. */
static int compiled(const char *o) {
  const char *p = strstr(o, "compiled ");
  cr_assert(p, "%s", o);
  return atoi(p + 9);
}

Test(sweep, grid_table_csv_sorted_one_compile_per_batch) {
  int st;
  char *o = util_nndc(&st, "sweep %s --grid lr=0.1,0.01,0.3 --grid batch=8,16 --parallel 2 --threads 2 --csv %s/g.csv -v",
                      args, dir);
  cr_assert_eq(st, 0, "%s", o);
  cr_expect_eq(compiled(o), 2, "two batch sizes: two programs\n%s", o);
  cr_expect(strstr(o, "sweep: 6 of 6 trials finished; sorted by test metric"), "%s", o);
  cr_expect(strstr(o, "best (trial "), "%s", o);
  char path[512], *text, *l[16];
  snprintf(path, sizeof path, "%s/g.csv", dir);
  int n = read_csv(path, &text, l, 16);
  cr_assert_eq(n, 7, "header and 6 trials");
  cr_expect_str_eq(l[0], "trial,lr,batch,train_loss,train_accuracy,test_loss,test_accuracy,seconds");
  int seen[7] = {0};
  for (int r = 1; r < n; r++) {
    int t = (int)field(l[r], 0);
    cr_assert(t >= 1 && t <= 6);
    seen[t]++;
    /* grid order: lr outer, batch inner */
    double lr = field(l[r], 1), b = field(l[r], 2);
    double want_lr[3] = {0.1, 0.01, 0.3};
    cr_expect_eq(lr, want_lr[(t - 1) / 2], "trial %d lr %g", t, lr);
    cr_expect_eq(b, (t - 1) % 2 ? 16 : 8, "trial %d batch %g", t, b);
    if (r > 1) cr_expect_geq(field(l[r - 1], 6), field(l[r], 6), "sorted by test accuracy: row %d", r);
    double acc = field(l[r], 6);
    cr_expect(acc >= 0 && acc <= 1);
  }
  for (int t = 1; t <= 6; t++) cr_expect_eq(seen[t], 1, "trial %d", t);
  free(text);
  free(o);
  /* momentum 0 and 0.9 compile differently: two programs for one batch */
  o = util_nndc(&st, "sweep %s --grid momentum=0,0.5,0.9 -v", args);
  cr_assert_eq(st, 0, "%s", o);
  cr_expect_eq(compiled(o), 2, "%s", o);
  free(o);
}

/* A trial equals `nndc train` run with the command line the sweep prints for it. */
Test(sweep, best_trial_is_its_train_command) {
  int st;
  char *o = util_nndc(&st, "sweep %s --grid lr=0.05,0.2 --grid weight_decay=0,0.01 --parallel 2 --csv %s/b.csv", args,
                      dir);
  cr_assert_eq(st, 0, "%s", o);
  const char *cmd = strstr(o, "  nndc train ");
  cr_assert(cmd, "%s", o);
  char line[4096];
  snprintf(line, sizeof line, "%s", cmd + strlen("  nndc "));
  *strchr(line, '\n') = 0;
  char *t = util_nndc(&st, "%s", line);
  cr_assert_eq(st, 0, "%s\n%s", line, t);
  const char *e = strstr(t, "epoch 2/2: train loss");
  cr_assert(e, "%s", t);
  double tl, ta, sl, sa;
  cr_assert_eq(sscanf(e, "epoch 2/2: train loss %lf accuracy %lf | test loss %lf accuracy %lf", &tl, &ta, &sl, &sa), 4,
               "%s", e);
  char path[512], *text, *l[8];
  snprintf(path, sizeof path, "%s/b.csv", dir);
  cr_assert_eq(read_csv(path, &text, l, 8), 5);
  double got[4] = {field(l[1], 3), field(l[1], 4), field(l[1], 5), field(l[1], 6)}, want[4] = {tl, ta, sl, sa};
  for (int k = 0; k < 4; k++) cr_expect(fabs(got[k] - want[k]) <= 5e-5, "column %d: sweep %.9g, train %.4f", k, got[k], want[k]);
  free(text);
  free(t);
  free(o);
}

/* The CSV without its seconds column. */
static char *csv_values(const char *path) {
  char *text, *l[32];
  int n = read_csv(path, &text, l, 32);
  char *out = calloc(1 << 16, 1);
  for (int r = 0; r < n; r++) {
    *strrchr(l[r], ',') = 0;
    strcat(out, l[r]);
    strcat(out, "\n");
  }
  free(text);
  return out;
}

Test(sweep, random_search_reproducible_with_seed) {
  int st;
  char p[3][512];
  const int seeds[3] = {5, 5, 6};
  for (int k = 0; k < 3; k++) {
    snprintf(p[k], sizeof p[k], "%s/r%d.csv", dir, k);
    char *o = util_nndc(&st, "sweep %s --random 4 --range 'lr=loguniform(0.001,0.5)' --range 'batch=uniform(4,20)' "
                        "--epochs 1 --seed %d --parallel %d --csv %s -v", args, seeds[k], k + 1, p[k]);
    cr_assert_eq(st, 0, "%s", o);
    cr_expect(strstr(o, "4 of 4 trials finished"), "%s", o);
    free(o);
  }
  char *a = csv_values(p[0]), *b = csv_values(p[1]), *c = csv_values(p[2]);
  cr_expect_str_eq(a, b, "same seed, another --parallel: the same trials and results");
  cr_expect_str_neq(a, c, "another seed: other trials");
  char *text, *l[8];
  int n = read_csv(p[0], &text, l, 8);
  for (int r = 1; r < n; r++) {
    double lr = field(l[r], 1), bs = field(l[r], 2);
    cr_expect(lr >= 0.001 && lr <= 0.5, "lr %g", lr);
    cr_expect(bs >= 4 && bs <= 20 && bs == floor(bs), "batch %g", bs);
  }
  free(text);
  free(a);
  free(b);
  free(c);
}

/* Ctrl-C: the running trials stop between steps; the table of those that finished, status 130. */
Test(sweep, interrupt_prints_what_finished) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "%s sweep %s --grid lr=0.01,0.02,0.03,0.04,0.05,0.06 --epochs 1000000 --threads 1 & "
           "p=$!; sleep 1.5; kill -INT $p; wait $p; echo status=$?", NNDC_BIN, args);
  int st;
  char *o = util_run(cmd, &st);
  cr_expect(strstr(o, "interrupted: 0 of 6 trials finished"), "%s", o);
  cr_expect(strstr(o, "status=130"), "%s", o);
  free(o);
}

Test(sweep, usage_errors) {
  static const struct { const char *opts, *msg; } bad[] = {
    {"--grid foo=1,2", "KEY one of lr"},
    {"--grid lr=0.1,x", "'x' is not a number"},
    {"--grid batch=0", "is not an integer"},
    {"--grid beta1=0.9", "no option 'beta1'"},
    {"--random 3 --range 'lr=normal(0,1)'", "uniform(a,b) or KEY=loguniform(a,b)"},
    {"--random 3 --range 'lr=loguniform(0,1)'", "a > 0"},
    {"--random 3", "needs --range"},
    {"--grid lr=0.1 --random 2 --range 'lr=uniform(0,1)'", "either --grid"},
    {"", "either --grid"},
    {"--grid lr=0.1 --grid lr=0.2", "swept twice"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int st;
    char *o = util_nndc(&st, "sweep %s %s", args, bad[i].opts);
    cr_expect_eq(st, 2, "%s: status %d\n%s", bad[i].opts, st, o);
    cr_expect(strstr(o, bad[i].msg), "%s: %s", bad[i].opts, o);
    free(o);
  }
}

/* A trial whose loss diverges is reported and left out; the others stand. */
Test(sweep, diverging_trial_is_left_out) {
  int st;
  char *o = util_nndc(&st, "sweep %s --grid lr=0.1,1e30 --epochs 1", args);
  cr_expect_eq(st, 0, "%s", o);
  cr_expect(strstr(o, "trial 2 failed"), "%s", o);
  cr_expect(strstr(o, "sweep: 1 of 2 trials finished, 1 failed"), "%s", o);
  cr_expect(strstr(o, "best (trial 1)"), "%s", o);
  free(o);
}
