/* pipeline.c - the optimizing pipeline, in one place.
 *
 * Contract: passes_optimize runs attention, simplify then fuse on a graph in place;
 * passes_optimize_ex also keeps roots alive and follows tracked nodes to
 * their representatives (codegen/driver.c optimizes its copy of the
 * caller's graph with it).  ir_verify runs after every pass in debug builds.
 */
#include "passes.h"

/* An internal fault if a pass broke the graph (debug builds only). */
static void check(Graph *g) {
#ifndef NDEBUG
  Diag vd;
  diag_init(&vd);
  int bad = ir_verify(g, &vd);
  diag_free(&vd);
  NNDC_ASSERT(bad == 0 && "a pass produced an invalid graph");
#else
  (void)g;
#endif
}

int passes_optimize_ex(Diag *d, Graph *g, Node **roots, int nroots, Node **track, int ntrack) {
  pass_attention(g, ATTN_MIN_KEYS);
  if (pass_simplify_ex(d, g, roots, nroots, track, ntrack)) return -1;
  g->fuse_group = NULL;  /* ids changed */
  check(g);
  pass_fuse(d, g, roots, nroots);
  return 0;
}

int passes_optimize(Diag *d, Graph *g) { return passes_optimize_ex(d, g, NULL, 0, NULL, 0); }
