/* fuzz_onnx.c - arbitrary bytes through the ONNX importer (protobuf-c
 * decoding, the graph walk, shape folding, text and parameter set) must give
 * a model or diagnostics, never a crash, a hang or a leak; and a model the
 * importer accepts must compile (the text it writes is valid .nnd whose
 * params are exactly the tensors it returns). */
#include <stdlib.h>
#include <string.h>
#include "frontend/frontend.h"
#include "frontend/onnx_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Diag d;
  Arena a;
  diag_init(&d);
  arena_init(&a);
  OnnxModel om;
  int rc = fe_onnx_import(&d, &a, "fuzz.onnx", data, size, &om);
  NNDC_ASSERT((rc != 0) == (d.nerrors > 0));
  if (rc == 0) {
    NNDC_ASSERT(om.text);
    for (int i = 0; i < om.ntensors; i++) {
      int64_t n = shape_numel(&om.tensors[i].shape);
      if (n) {
        volatile float last = om.tensors[i].data[n - 1];  /* the buffer holds every element */
        (void)last;
      }
    }
    Graph g;
    Arena ga;
    arena_init(&ga);
    graph_init(&g, &ga);
    Define def = {"N", 2, 1};
    BuildOpts o = {&def, 1, NULL, 0, 0, 0};
    int crc = fe_compile_string(&d, &g, "/nonexistent/fuzz.nnd", om.text, &o);
    NNDC_ASSERT((crc != 0) == (d.nerrors > 0));
    arena_free(&ga);
  }
  arena_free(&a);
  diag_free(&d);
  return 0;
}
