/* trainlog.c - looking at training: `nndc train --log F.csv [--log-every K]`
 * and `--plot F.svg`, fed by the training loop's progress and epoch reports
 * (rank 0 only under MPI: the other processes get no TrainLog).
 *
 * The CSV has a header row, then a row every K optimizer steps (default
 * 100) and a row at the end of each epoch, each flushed as soon as it is
 * written (a killed run keeps its rows; --resume appends to the file):
 *   step,epoch,batch,kind,loss,<metric>...,test_loss,test_<metric>...,lr,samples_per_s,seconds
 * kind "step": loss and metrics are the means over the batches since the
 * previous row of the same epoch (its first row: since the epoch began), the
 * test columns are empty; kind "epoch": the epoch's means and test figures,
 * as the summary line prints them.  samples_per_s is the epoch's training
 * throughput so far, seconds the wall time since this command started
 * training.  The SVG has one panel for the loss and one per metric: train
 * every K steps, train per epoch and test per epoch against the epoch
 * (fractional within an epoch), redrawn (atomically) after every epoch. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

enum { CURVE_STEPS, CURVE_TRAIN, CURVE_TEST, NCURVE };   /* the series of each panel */

/* A growing list of points. */
typedef struct Pts {
  double *x, *y;
  int n, cap;
} Pts;

struct TrainLog {
  Diag *d;
  const Graph *g;
  FILE *csv;           /* NULL: no --log */
  const char *svg;     /* NULL: no --plot */
  char *title;
  int64_t every;       /* a step row every K steps */
  int nm;              /* metrics */
  double lr, t0;
  int64_t step, nbatches;   /* of the last progress report */
  double sps;          /* its samples per second */
  int64_t win_epoch, win_batch;   /* where the last step row was */
  double *win_sums;    /* [1 + nm] the epoch's sums of loss and metrics there */
  double *row;         /* [1 + nm] scratch */
  Pts *curves;         /* [(1 + nm) * NCURVE]: panel k's curve c at k * NCURVE + c */
};

static void pts_add(Pts *p, double x, double y) {
  if (p->n == p->cap) {
    p->cap = p->cap ? 2 * p->cap : 64;
    p->x = realloc(p->x, (size_t)p->cap * sizeof *p->x);
    p->y = realloc(p->y, (size_t)p->cap * sizeof *p->y);
    if (!p->x || !p->y) nndc_fatal(__FILE__, __LINE__, "out of memory");
  }
  p->x[p->n] = x, p->y[p->n++] = y;
}

static void put_header(TrainLog *l) {
  fputs("step,epoch,batch,kind,loss", l->csv);
  for (int i = 0; i < l->nm; i++) fprintf(l->csv, ",%s", l->g->metrics[i].name);
  fputs(",test_loss", l->csv);
  for (int i = 0; i < l->nm; i++) fprintf(l->csv, ",test_%s", l->g->metrics[i].name);
  fputs(",lr,samples_per_s,seconds\n", l->csv);
}

/* One row: train figures v[1 + nm], test figures t[1 + nm] or NULL. */
static void put_row(TrainLog *l, int64_t step, int64_t epoch, int64_t batch, const char *kind, const double *v,
                    const double *t) {
  if (!l->csv) return;
  fprintf(l->csv, "%lld,%lld,%lld,%s", (long long)step, (long long)epoch, (long long)batch, kind);
  for (int i = 0; i <= l->nm; i++) fprintf(l->csv, ",%.7g", v[i]);
  for (int i = 0; i <= l->nm; i++)
    if (t) fprintf(l->csv, ",%.7g", t[i]);
    else fputc(',', l->csv);
  fprintf(l->csv, ",%.7g,%.1f,%.3f\n", l->lr, l->sps, now_s() - l->t0);
  fflush(l->csv);
}

static void redraw(TrainLog *l) {
  if (!l->svg) return;
  static const char *const label[NCURVE] = {"train (every K steps)", "train (epoch mean)", "test"};
  static const char *const color[NCURVE] = {"#9ecae1", "#1f77b4", "#d62728"};
  int np = 1 + l->nm;
  PlotSeries *s = calloc((size_t)(np * NCURVE), sizeof *s);
  PlotPanel *p = calloc((size_t)np, sizeof *p);
  if (!s || !p) nndc_fatal(__FILE__, __LINE__, "out of memory");
  char steps_label[64];
  snprintf(steps_label, sizeof steps_label, "train (every %lld steps)", (long long)l->every);
  for (int k = 0; k < np; k++) {
    int ns = 0;
    for (int c = 0; c < NCURVE; c++) {
      const Pts *q = &l->curves[k * NCURVE + c];
      if (!q->n) continue;
      s[k * NCURVE + ns++] = (PlotSeries){c == CURVE_STEPS ? steps_label : label[c], color[c], q->x, q->y, q->n,
                                          c != CURVE_STEPS};
    }
    p[k] = (PlotPanel){k ? l->g->metrics[k - 1].name : "loss", "epoch", s + k * NCURVE, ns};
  }
  if (plot_write_svg(l->d, l->svg, l->title, p, np)) flush_diag(l->d);   /* reported; training goes on */
  free(s);
  free(p);
}

TrainLog *trainlog_open(Cli *c, Diag *d, const Graph *g) {
  if ((!c->log && !c->plot) || comm_rank() != 0) return NULL;
  TrainLog *l = calloc(1, sizeof *l);
  if (!l) nndc_fatal(__FILE__, __LINE__, "out of memory");
  l->d = d, l->g = g, l->nm = g->nmetrics, l->svg = c->plot;
  l->every = c->log_every ? c->log_every : 100;
  l->lr = g->train.opt.lr;
  l->t0 = now_s();
  l->win_sums = calloc((size_t)l->nm + 1, sizeof *l->win_sums);
  l->row = calloc((size_t)l->nm + 1, sizeof *l->row);
  l->curves = calloc((size_t)(l->nm + 1) * NCURVE, sizeof *l->curves);
  size_t tl = strlen(c->model) + 32;
  l->title = malloc(tl);
  if (!l->win_sums || !l->row || !l->curves || !l->title) nndc_fatal(__FILE__, __LINE__, "out of memory");
  snprintf(l->title, tl, "nndc train %s", c->model);
  if (c->log) {
    l->csv = fopen(c->log, c->resume ? "a" : "w");
    if (!l->csv) {
      diag_file_error(d, c->log, "cannot write the training log: %s", strerror(errno));
      fail(d);
    }
    if (ftell(l->csv) == 0) put_header(l);
    fflush(l->csv);
  }
  if (l->svg && plot_write_svg(d, l->svg, l->title, NULL, 0)) fail(d);   /* a bad path fails before training */
  return l;
}

void trainlog_step(TrainLog *l, const TrainProgress *p) {
  if (!l) return;
  l->step = p->step, l->sps = p->samples_per_s, l->nbatches = p->nbatches;
  if (p->step % l->every) return;
  if (l->win_epoch != p->epoch || l->win_batch >= p->batch) {
    l->win_epoch = p->epoch, l->win_batch = 0;
    memset(l->win_sums, 0, (size_t)(l->nm + 1) * sizeof *l->win_sums);
  }
  double nb = (double)(p->batch - l->win_batch), b = (double)p->batch;
  for (int i = 0; i <= l->nm; i++) {
    double sum = b * (i ? p->metrics[i - 1] : p->loss);
    l->row[i] = (sum - l->win_sums[i]) / nb;
    l->win_sums[i] = sum;
    pts_add(&l->curves[i * NCURVE + CURVE_STEPS], (double)(p->epoch - 1) + b / (double)p->nbatches, l->row[i]);
  }
  l->win_batch = p->batch;
  put_row(l, p->step, p->epoch, p->batch, "step", l->row, NULL);
}

void trainlog_epoch(TrainLog *l, const EpochReport *r) {
  if (!l) return;
  double *test = r->has_test ? calloc((size_t)l->nm + 1, sizeof *test) : NULL;
  for (int i = 0; i <= l->nm; i++) {
    l->row[i] = i ? r->train_metrics[i - 1] : r->train_loss;
    pts_add(&l->curves[i * NCURVE + CURVE_TRAIN], (double)r->epoch, l->row[i]);
    if (!test) continue;
    test[i] = i ? r->test_metrics[i - 1] : r->test_loss;
    pts_add(&l->curves[i * NCURVE + CURVE_TEST], (double)r->epoch, test[i]);
  }
  put_row(l, l->step, r->epoch, l->nbatches, "epoch", l->row, test);
  free(test);
  redraw(l);
}

void trainlog_close(TrainLog *l) {
  if (!l) return;
  if (l->csv) fclose(l->csv);
  for (int i = 0; i < (l->nm + 1) * NCURVE; i++) {
    free(l->curves[i].x);
    free(l->curves[i].y);
  }
  free(l->curves);
  free(l->win_sums);
  free(l->row);
  free(l->title);
  free(l);
}
