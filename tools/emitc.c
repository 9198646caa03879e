/* emitc.c - `nndc emit-c M.nnd -o DIR [--train] [--weights P] [-D N=1]`:
 * ahead-of-time C (spec 10) through codegen/c.c.  Writes DIR/<m>.h and
 * DIR/<m>.c, m being the model's file name as a C identifier. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"

/* Writes text to DIR/NAME atomically. */
static void write_file(Diag *d, const char *dir, const char *name, const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  const void *part[1] = {text};
  size_t len[1] = {strlen(text)};
  if (rt_write_atomic(d, path, part, len, 1)) fail(d);
}

/* The params to embed: loaded from --weights into fresh buffers. */
static float **load_weights(Cli *c, Diag *d, const Graph *g) {
  float **w = calloc((size_t)g->nparams + 1, sizeof *w);
  if (!w) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < g->nparams; i++) {
    w[i] = calloc((size_t)shape_numel(&g->params[i].node->shape), sizeof(float));
    if (!w[i]) nndc_fatal(__FILE__, __LINE__, "out of memory");
  }
  if (ckpt_load(d, c->weights, g, w)) fail(d);
  flush_diag(d);   /* warnings about extra tensors */
  return w;
}

int cmd_emit_c(Cli *c, Diag *d) {
  if (!c->emit_dir) {
    fputs("nndc: usage error: emit-c needs -o DIR\n", stderr);
    return 2;
  }
  Arena a;
  arena_init(&a);
  Graph g, tgs[MAX_STEPS];
  const Graph *tgp[MAX_STEPS];
  int nsteps = 0;
  compile(c, d, &g, &a, 0, c->batch > 0 ? c->batch : 0, NULL, 0);
  if (c->train) {
    if (!g.loss && !g.train.nsteps) {
      diag_error(d, (Loc){0}, "emit-c --train needs a model with a loss");
      fail(d);
    }
    nsteps = compile_train(c, d, tgs, &a, c->batch > 0 ? c->batch : 0, 0);
    for (int k = 0; k < nsteps; k++) tgp[k] = &tgs[k];
  }
  float **w = c->weights ? load_weights(c, d, &g) : NULL;
  char *h = NULL, *src = NULL;
  if (c_emit_steps(d, &g, tgp, nsteps, w, &h, &src)) fail(d);
  if (mkdir(c->emit_dir, 0777) && errno != EEXIST) {
    diag_file_error(d, c->emit_dir, "cannot create the output directory: %s", strerror(errno));
    fail(d);
  }
  const char *m = c_model_ident(&a, g.model_name);
  write_file(d, c->emit_dir, arena_printf(&a, "%s.h", m), h);
  write_file(d, c->emit_dir, arena_printf(&a, "%s.c", m), src);
  printf("wrote %s/%s.h and %s/%s.c\n", c->emit_dir, m, c->emit_dir, m);
  free(h);
  free(src);
  if (w)
    for (int i = 0; i < g.nparams; i++) free(w[i]);
  free(w);
  arena_free(&a);
  return 0;
}
