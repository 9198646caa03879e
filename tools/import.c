/* import.c - `nndc import MODEL.onnx [-o DIR]`: the ONNX importer's text and
 * parameter set (frontend/onnx_import.c) written as DIR/<name>.nnd and
 * DIR/<name>.safetensors, then the written model compiled once as a check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"
#include "frontend/onnx_import.h"

/* The model's name: the file name without its directory and .onnx. */
static char *model_name(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (n > 5 && !strcmp(base + n - 5, ".onnx")) n -= 5;
  return strndup(base, n ? n : 1);
}

static int write_params(Diag *d, const char *path, const OnnxModel *om) {
  NamedTensor *t = calloc((size_t)om->ntensors + 1, sizeof *t);
  for (int i = 0; i < om->ntensors; i++) {
    t[i].name = om->tensors[i].name;
    t[i].shape = om->tensors[i].shape;
    t[i].data = om->tensors[i].data;
  }
  int rc = st_write(d, path, t, om->ntensors);
  free(t);
  return rc;
}

int cmd_import(Cli *c, Diag *d) {
  size_t len;
  uint8_t *buf = rt_read_file(d, c->model, &len);
  if (!buf) fail(d);
  Arena a;
  arena_init(&a);
  OnnxModel om;
  int rc = fe_onnx_import(d, &a, c->model, buf, len, &om);
  free(buf);
  if (rc) fail(d);
  const char *dir = c->emit_dir ? c->emit_dir : ".";
  if (mkdir(dir, 0777) && errno != EEXIST) {
    diag_file_error(d, dir, "cannot create the directory: %s", strerror(errno));
    fail(d);
  }
  char *name = model_name(c->model);
  char *nnd = arena_printf(&a, "%s/%s.nnd", dir, name), *st = arena_printf(&a, "%s/%s.safetensors", dir, name);
  const void *part[1] = {om.text};
  size_t plen[1] = {strlen(om.text)};
  if (rt_write_atomic(d, nnd, part, plen, 1) || write_params(d, st, &om)) fail(d);
  /* the written model must compile: anything else is an importer bug */
  Graph g;
  Arena ga;
  arena_init(&ga);
  graph_init(&g, &ga);
  BuildOpts o = {c->defs, c->ndefs, NULL, 0, 0, 0};
  if (fe_compile_file(d, &g, nnd, &o)) {
    diag_file_error(d, nnd, "the imported model does not compile (an importer bug; please report it)");
    fail(d);
  }
  flush_diag(d);
  printf("%s: %d inputs, %d params (%d tensors in %s), %d outputs, %d nodes -> %s\n", c->model, g.ninputs, g.nparams,
         om.ntensors, st, g.noutputs, g.nnodes, nnd);
  arena_free(&ga);
  arena_free(&a);
  free(name);
  return 0;
}
