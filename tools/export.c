/* export.c - `nndc export M.nnd [--load P] [--seed S] [-D NAME=VALUE] -o
 * M.onnx`: the model's evaluation-mode forward graph as ONNX through
 * codegen/onnx.c.  The params are --load's, or §7's initialisation from the
 * seed.  A symbolic dimension that no -D binds stays symbolic: the model is
 * built a second time with it at twice its size, and what changes depends on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static int defined(const Cli *c, const char *name) {
  for (int i = 0; i < c->ndefs; i++)
    if (!strcmp(c->defs[i].name, name)) return 1;
  return 0;
}

/* The symbols of g that -D does not bind, each with g built at twice its value. */
static int symbols(Cli *c, Diag *d, const Graph *g, Arena *a, OnnxSym *syms) {
  int n = 0;
  for (int i = 0; i < g->nsyms && n < MAX_ITEMS; i++) {
    if (defined(c, g->syms[i].name)) continue;
    Define defs[MAX_ITEMS + 1];
    memcpy(defs, c->defs, sizeof(Define) * (size_t)c->ndefs);
    defs[c->ndefs] = (Define){g->syms[i].name, 2.0 * (double)g->syms[i].value, 1};
    Graph *alt = arena_alloc(a, sizeof *alt);
    graph_init(alt, a);
    BuildOpts o = {defs, c->ndefs + 1, NULL, 0, 0, 0};
    if (fe_compile_file(d, alt, c->model, &o)) fail(d);
    syms[n++] = (OnnxSym){g->syms[i].name, g->syms[i].value, alt};
  }
  return n;
}

int cmd_export(Cli *c, Diag *d) {
  if (!c->emit_dir) {
    fputs("nndc: usage error: export needs -o M.onnx\n", stderr);
    return 2;
  }
  Arena a;
  arena_init(&a);
  Graph g;
  compile(c, d, &g, &a, 0, 0, NULL, 0);
  OnnxSym syms[MAX_ITEMS];
  int nsyms = symbols(c, d, &g, &a, syms);
  ModelState ms;
  if (model_state_init(d, &g, &ms, g.train.seed)) fail(d);
  if (c->load && ckpt_load(d, c->load, &g, ms.params)) fail(d);
  uint8_t *buf;
  size_t len;
  if (onnx_export(d, &g, syms, nsyms, ms.params, &buf, &len)) fail(d);
  const void *part[1] = {buf};
  if (rt_write_atomic(d, c->emit_dir, part, &len, 1)) fail(d);
  flush_diag(d);   /* warnings about extra tensors in P */
  printf("%s: %d outputs -> %s (ONNX opset 17, %zu bytes", c->model, g.noutputs, c->emit_dir, len);
  for (int i = 0; i < nsyms; i++) printf("%s%s", i ? ", " : "; symbolic: ", syms[i].name);
  printf(")\n");
  free(buf);
  model_state_free(&g, &ms);
  arena_free(&a);
  return 0;
}
