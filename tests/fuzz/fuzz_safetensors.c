/* fuzz_safetensors.c - safetensors parsing of arbitrary bytes must report
 * an error or succeed with consistent tensors, never crash or leak; the
 * same with the metadata's string pairs collected (training checkpoints). */
#include <stdlib.h>
#include <string.h>
#include "runtime/runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Diag d;
  diag_init(&d);
  NamedTensor *t;
  int n;
  if (st_read_mem(&d, "fuzz.safetensors", data, size, &t, &n) == 0) {
    NNDC_ASSERT(d.nerrors == 0);
    for (int i = 0; i < n; i++) {
      int64_t numel = 1;
      for (int k = 0; k < t[i].shape.rank; k++) numel *= t[i].shape.dim[k];
      NNDC_ASSERT((uint64_t)numel * 4 <= size && t[i].name && t[i].data);
      if (numel) {
        volatile float last = t[i].data[numel - 1];  /* the buffer holds every element */
        (void)last;
      }
    }
    st_free(t, n);
  } else {
    NNDC_ASSERT(d.nerrors > 0 && !t && n == 0);
  }
  StMeta *m;
  int nm;
  diag_free(&d);
  diag_init(&d);
  if (st_read_mem_meta(&d, "fuzz.safetensors", data, size, &t, &n, &m, &nm) == 0) {
    NNDC_ASSERT(d.nerrors == 0);
    for (int i = 0; i < nm; i++) NNDC_ASSERT(m[i].key && m[i].value);
    st_free(t, n);
    st_meta_free(m, nm);
  } else {
    NNDC_ASSERT(d.nerrors > 0 && !t && n == 0 && !m && nm == 0);
  }
  diag_free(&d);
  return 0;
}
