/* fuzz_safetensors.c - safetensors parsing of arbitrary bytes must report
 * an error or succeed with consistent tensors, never crash or leak. */
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
  diag_free(&d);
  return 0;
}
