/* plan.c - memory planning: one arena, offsets by liveness.
 *
 * Contract: a KB_ARENA buffer is live from the first to the last kernel that
 * loads or stores it (a RESHAPE shares its operand's buffer index, so its
 * uses count for that buffer).  Root buffers (and CONST buffers, filled once
 * at compile time) live to the end of the program so they stay readable
 * after a run.  Buffers are placed in order of first use; each takes the
 * smallest gap between the buffers still live that fits (best fit), else
 * the end.  Two buffers share bytes only when one's last kernel comes
 * strictly before the other's first, since a kernel interleaves its loads
 * and stores.  Every kernel writes every element of its output before
 * reading it (lower.c zeroes accumulators), so no buffer relies on the
 * arena's initial zeros.
 */
#include <stdlib.h>
#include "kir.h"

/* Liveness of one buffer, in kernel indices. */
typedef struct Live {
  int first, last;    /* -1 if never touched */
  size_t size;        /* bytes, 64-aligned */
} Live;

static void touch(Live *lv, int b, int k) {
  if (lv[b].first < 0) lv[b].first = k;
  lv[b].last = k;
}

static void buf_expr(const KExpr *e, KirBufFn fn, void *ctx) {
  if (!e) return;
  if (e->kind == KX_LOAD) fn(ctx, e->buf, 0);
  for (int j = 0; j < 3; j++) buf_expr(e->a[j], fn, ctx);
}

void kir_buffers(const KStmt *s, KirBufFn fn, void *ctx) {
  for (; s; s = s->next) {
    if (s->kind == KS_STORE) fn(ctx, s->buf, 1);
    if (s->kind == KS_TILE) {  /* loads A and B (and C when accumulating); stores C */
      const KTile *t = s->tile;
      fn(ctx, t->abuf, 0), fn(ctx, t->bbuf, 0), fn(ctx, t->cbuf, 1);
      buf_expr(t->a0, fn, ctx), buf_expr(t->b0, fn, ctx), buf_expr(t->c0, fn, ctx);
      buf_expr(t->klen, fn, ctx), buf_expr(t->accum, fn, ctx);
    }
    buf_expr(s->lo, fn, ctx);
    buf_expr(s->hi, fn, ctx);
    buf_expr(s->idx, fn, ctx);
    buf_expr(s->val, fn, ctx);
    buf_expr(s->cond, fn, ctx);
    kir_buffers(s->body, fn, ctx);
  }
}

/* kir_buffers' callback: buffer b is used by the kernel being walked. */
typedef struct Walk {
  Live *lv;
  int k;
} Walk;

static void on_buf(void *ctx, int b, int store) {
  Walk *w = ctx;
  (void)store;
  touch(w->lv, b, w->k);
}

/* Orders buffer indices by first use (then index). */
static const Live *sort_lv;
static int by_first(const void *x, const void *y) {
  int a = *(const int *)x, b = *(const int *)y;
  if (sort_lv[a].first != sort_lv[b].first) return sort_lv[a].first < sort_lv[b].first ? -1 : 1;
  return a < b ? -1 : a > b;
}

/* A byte range [lo, hi) of the arena. */
typedef struct Range {
  size_t lo, hi;
} Range;

static int by_lo(const void *x, const void *y) {
  const Range *a = x, *b = y;
  return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* The best-fit offset for size bytes among the placed buffers order[0..n)
 * still live at kernel `at`: the smallest gap that fits, else the end. */
static size_t best_fit(const KProgram *p, const Live *lv, const int *order, int n, int at, size_t size,
                       Range *used) {
  int nu = 0;
  for (int i = 0; i < n; i++) {
    const Live *l = &lv[order[i]];
    if (l->last >= at && l->size > 0) used[nu++] = (Range){p->bufs[order[i]].offset, p->bufs[order[i]].offset + l->size};
  }
  qsort(used, (size_t)nu, sizeof *used, by_lo);
  size_t pos = 0, best = (size_t)-1, best_gap = (size_t)-1;
  for (int i = 0; i < nu; i++) {
    if (used[i].lo > pos && used[i].lo - pos >= size && used[i].lo - pos < best_gap)
      best = pos, best_gap = used[i].lo - pos;
    if (used[i].hi > pos) pos = used[i].hi;
  }
  return best != (size_t)-1 ? best : pos;
}

void plan_memory(KProgram *p, Node *const *roots, int nroots) {
  int nb = p->nbufs, nk = p->nkernels, n = 0;
  Live *lv = calloc((size_t)nb + 1, sizeof *lv);
  int *order = calloc((size_t)nb + 1, sizeof *order);
  Range *used = calloc((size_t)nb + 1, sizeof *used);
  NNDC_ASSERT(lv && order && used);
  for (int b = 0; b < nb; b++) {
    lv[b].first = lv[b].last = -1;
    lv[b].size = ((size_t)p->bufs[b].numel * 4 + 63) & ~(size_t)63;
  }
  for (int k = 0; k < nk; k++) {
    Walk w = {lv, k};
    kir_buffers(p->kernels[k]->body, on_buf, &w);
  }
  for (int r = 0; r < nroots; r++) {
    int b = p->node_buf[roots[r]->id];
    if (b >= 0 && lv[b].first >= 0) lv[b].last = nk;
  }
  for (int b = 0; b < nb; b++) {
    if (p->bufs[b].kind == KB_CONST) lv[b].first = -1, lv[b].last = nk;
    if (p->bufs[b].kind == KB_LEAF) continue;
    if (lv[b].first < 0 && p->bufs[b].kind == KB_ARENA) lv[b].first = lv[b].last = nk;  /* never touched */
    order[n++] = b;
  }
  sort_lv = lv;
  qsort(order, (size_t)n, sizeof *order, by_first);
  size_t top = 0;
  for (int i = 0; i < n; i++) {
    int b = order[i];
    p->bufs[b].offset = best_fit(p, lv, order, i, lv[b].first, lv[b].size, used);
    if (p->bufs[b].offset + lv[b].size > top) top = p->bufs[b].offset + lv[b].size;
  }
  p->arena_bytes = top;
  free(lv);
  free(order);
  free(used);
}
