/* fuzz_parser.c - arbitrary bytes through the whole frontend (lexer, parser,
 * sema with inlining and unrolling, shape inference) must give a graph or
 * diagnostics, never a crash, a hang or a leak.  Embedded NUL bytes end the
 * text here (fe_compile_string takes a C string); test_diag covers NUL bytes
 * in files. */
#include <stdlib.h>
#include <string.h>
#include "frontend/frontend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  Diag d;
  Arena a;
  Graph g;
  diag_init(&d);
  arena_init(&a);
  graph_init(&g, &a);
  Define def = {"D", 3, 1};
  BuildOpts o = {&def, 1, NULL, 0, 1, 4};
  int rc = fe_compile_string(&d, &g, "/nonexistent/fuzz.nnd", text, &o);
  /* the contract: failure iff errors were reported */
  NNDC_ASSERT((rc != 0) == (d.nerrors > 0));
  if (rc == 0)
    for (int i = 0; i < g.nnodes; i++) NNDC_ASSERT(g.nodes[i]->id == i);
  arena_free(&a);
  diag_free(&d);
  free(text);
  return 0;
}
