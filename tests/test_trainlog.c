/* test_trainlog.c - `nndc train --log F.csv --log-every K --plot F.svg`:
 * the CSV's header, its rows (every K steps and per epoch) and their values
 * against the printed epoch summaries, step windows that partition the
 * epoch, appending on --resume, the SVG parsed by Python's xml.etree (its
 * panels, curves and points), and the errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

static const char *model =
    "input x: f32[N, 4]\n"
    "input y: i32[N]\n"
    "param W: f32[4, 3]\n"
    "param b: f32[3]\n"
    "logits = x @ W + b\n"
    "loss = cross_entropy(logits, y)\n"
    "metric accuracy = mean(argmax(logits, axis=1) == y)\n"
    "metric top = mean(max(softmax(logits), axis=1))\n"
    "train {\n  optimizer = sgd(lr=0.5)\n  batch = 8\n  epochs = 3\n}\n";

/* DIR/m.nnd, 48 training samples (6 batches of 8) and 20 test samples. */
static char *setup(void) {
  char *dir = util_tmpdir(), p[4096];
  snprintf(p, sizeof p, "%s/m.nnd", dir);
  cr_assert_eq(util_write_file(p, model), 0);
  Diag d;
  diag_init(&d);
  for (int k = 0; k < 2; k++) {
    int64_t n = k ? 20 : 48;
    Shape xs = {2, {n, 4}}, ys = {1, {n}};
    float x[48 * 4];
    int32_t y[48];
    util_fill(x, n * 4, 11 + (uint64_t)k, -1, 1);
    for (int64_t i = 0; i < n; i++) y[i] = x[4 * i] > 0 ? (x[4 * i + 1] > 0 ? 2 : 1) : 0;
    snprintf(p, sizeof p, "%s/%sx.npy", dir, k ? "t" : "");
    cr_assert_eq(npy_write(&d, p, EL_F32, &xs, x), 0);
    snprintf(p, sizeof p, "%s/%sy.npy", dir, k ? "t" : "");
    cr_assert_eq(npy_write(&d, p, EL_I32, &ys, y), 0);
  }
  diag_free(&d);
  return dir;
}

#define DATA "%s/m.nnd --data x=%s/x.npy --data y=%s/y.npy"
#define TEST " --test x=%s/tx.npy --test y=%s/ty.npy"

typedef struct Row {
  long step, epoch, batch;
  char kind[8];
  double v[10];   /* loss accuracy top test_loss test_accuracy test_top lr samples_per_s seconds */
  int has_test;
} Row;

/* Reads the CSV after its header (which must be `header`); returns the rows. */
static int read_rows(const char *path, const char *header, Row *rows, int max) {
  FILE *f = fopen(path, "r");
  cr_assert(f, "%s", path);
  char line[1024];
  cr_assert(fgets(line, sizeof line, f));
  cr_expect_str_eq(line, header);
  int n = 0;
  while (n < max && fgets(line, sizeof line, f)) {
    Row *r = &rows[n++];
    memset(r, 0, sizeof *r);
    char *p = line;
    r->step = strtol(p, &p, 10), p++;
    r->epoch = strtol(p, &p, 10), p++;
    r->batch = strtol(p, &p, 10), p++;
    size_t k = strcspn(p, ",");
    cr_assert(k < sizeof r->kind);
    memcpy(r->kind, p, k);
    p += k + 1;
    for (int i = 0; i < 9; i++) {
      char *end;
      r->v[i] = strtod(p, &end);
      if (end == p) r->v[i] = NAN;   /* an empty field */
      else if (i == 3) r->has_test = 1;
      p = end + 1;
    }
  }
  fclose(f);
  return n;
}

static const char *header = "step,epoch,batch,kind,loss,accuracy,top,test_loss,test_accuracy,test_top,lr,"
                            "samples_per_s,seconds\n";

/* Trains 3 epochs with --log DIR/log.csv --log-every 3 --plot DIR/p.svg; returns the output. */
static char *train_logged(const char *dir) {
  int st;
  char *o = util_nndc(&st, "train " DATA TEST " --log %s/log.csv --log-every 3 --plot %s/p.svg", dir, dir, dir, dir,
                      dir, dir, dir);
  cr_assert_eq(st, 0, "%s", o);
  return o;
}

Test(trainlog, csv_rows_match_the_printed_summaries) {
  char *dir = setup();
  char *o = train_logged(dir);
  char path[4096];
  snprintf(path, sizeof path, "%s/log.csv", dir);
  Row r[32];
  int n = read_rows(path, header, r, 32);
  cr_assert_eq(n, 9, "3 epochs of (2 step rows + 1 epoch row), got %d", n);
  const char *p = o;
  for (int e = 0; e < 3; e++) {
    Row *s1 = &r[3 * e], *s2 = &r[3 * e + 1], *ep = &r[3 * e + 2];
    cr_expect_str_eq(s1->kind, "step");
    cr_expect_str_eq(s2->kind, "step");
    cr_expect_str_eq(ep->kind, "epoch");
    cr_expect(s1->step == 6 * e + 3 && s2->step == 6 * e + 6 && ep->step == 6 * e + 6, "steps of epoch %d", e + 1);
    cr_expect(s1->batch == 3 && s2->batch == 6 && ep->batch == 6 && ep->epoch == e + 1 && s1->epoch == e + 1);
    cr_expect(!s1->has_test && !s2->has_test && ep->has_test, "test figures on epoch rows only");
    /* the two windows of 3 batches partition the epoch */
    for (int i = 0; i < 3; i++)
      cr_expect(fabs((s1->v[i] + s2->v[i]) / 2 - ep->v[i]) < 1e-5, "epoch %d column %d: windows %g %g, epoch %g",
                e + 1, i, s1->v[i], s2->v[i], ep->v[i]);
    double pr[6];
    char want[64];
    snprintf(want, sizeof want, "epoch %d/3: train loss", e + 1);
    p = strstr(p, want);
    cr_assert(p, "%s", o);
    cr_assert_eq(sscanf(p + strlen(want), "%lf accuracy %lf top %lf | test loss %lf accuracy %lf top %lf", &pr[0],
                        &pr[1], &pr[2], &pr[3], &pr[4], &pr[5]), 6, "%s", p);
    for (int i = 0; i < 6; i++)
      cr_expect(fabs(ep->v[i] - pr[i]) <= 5.01e-5, "epoch %d column %d: csv %g, printed %.4f", e + 1, i, ep->v[i],
                pr[i]);
    for (int k = 3 * e; k < 3 * e + 3; k++) {
      cr_expect_float_eq(r[k].v[6], 0.5, 1e-9, "lr");
      cr_expect(r[k].v[7] > 0, "samples/s");
      cr_expect(k == 0 || r[k].v[8] >= r[k - 1].v[8], "seconds never go back");
    }
  }
  free(o);
  free(dir);
}

Test(trainlog, svg_is_well_formed_with_every_curve) {
  char *dir = setup();
  int st;
  char *o = train_logged(dir);
  free(o);
  /* per panel: its title, then each polyline's point count and its legend */
  char cmd[8192];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c \"\n"
           "import sys, xml.etree.ElementTree as E\n"
           "S = '{http://www.w3.org/2000/svg}'\n"
           "root = E.parse(sys.argv[1]).getroot()\n"
           "assert root.tag == S + 'svg', root.tag\n"
           "for g in root.findall(S + 'g'):\n"
           "    texts = [t.text for t in g.findall(S + 'text')]\n"
           "    lines = [len(p.get('points').split()) for p in g.findall(S + 'polyline')]\n"
           "    print(texts[0], lines, [t for t in texts if t == 'test' or t.startswith('train')])\n"
           "\" %s/p.svg; ls %s | grep -c tmp", dir, dir);
  o = util_run(cmd, &st);
  const char *want =
      "loss [6, 3, 3] ['train (every 3 steps)', 'train (epoch mean)', 'test']\n"
      "accuracy [6, 3, 3] ['train (every 3 steps)', 'train (epoch mean)', 'test']\n"
      "top [6, 3, 3] ['train (every 3 steps)', 'train (epoch mean)', 'test']\n"
      "0\n";
  cr_expect_str_eq(o, want, "got:\n%s(with no leftover temporary file either)", o);
  free(o);
  free(dir);
}

Test(trainlog, resume_appends_and_no_test_leaves_columns_empty) {
  char *dir = setup();
  int st;
  char *o = util_nndc(&st, "train " DATA " --epochs 1 --save %s/ck.safetensors --log %s/r.csv --log-every 3", dir,
                      dir, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", o);
  free(o);
  o = util_nndc(&st, "train " DATA " --epochs 2 --load %s/ck.safetensors --resume --log %s/r.csv --log-every 3", dir,
                dir, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", o);
  free(o);
  char path[4096];
  snprintf(path, sizeof path, "%s/r.csv", dir);
  Row r[16];
  int n = read_rows(path, header, r, 16);   /* one header */
  cr_assert_eq(n, 6, "%d rows", n);
  static const long steps[6] = {3, 6, 6, 9, 12, 12};
  for (int i = 0; i < 6; i++) {
    cr_expect_eq(r[i].step, steps[i], "row %d", i);
    cr_expect(!r[i].has_test && isnan(r[i].v[3]), "no --test: empty test columns");
  }
  free(dir);
}

Test(trainlog, errors) {
  char *dir = setup();
  int st;
  char *o = util_nndc(&st, "train " DATA " --log-every 3", dir, dir, dir);
  cr_expect_eq(st, 2, "%s", o);
  cr_expect(strstr(o, "--log-every needs --log"), "%s", o);
  free(o);
  o = util_nndc(&st, "train " DATA " --log %s/no/such/dir/l.csv", dir, dir, dir, dir);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "error: cannot write the training log"), "%s", o);
  free(o);
  o = util_nndc(&st, "train " DATA " --plot %s/no/such/dir/p.svg", dir, dir, dir, dir);
  cr_expect_eq(st, 1, "%s", o);
  cr_expect(strstr(o, "error:"), "%s", o);
  cr_expect(!strstr(o, "epoch 1/"), "fails before training: %s", o);
  free(o);
  free(dir);
}
