/* fuzz_npy.c - npy parsing of arbitrary bytes must report an error or
 * succeed with an array whose data matches its shape, never crash or leak. */
#include <stdlib.h>
#include <string.h>
#include "runtime/runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Diag d;
  diag_init(&d);
  Array a;
  if (npy_read_mem(&d, "fuzz.npy", data, size, &a) == 0) {
    NNDC_ASSERT(d.nerrors == 0 && a.data);
    int64_t numel = 1;
    for (int k = 0; k < a.shape.rank; k++) numel *= a.shape.dim[k];
    /* touch the last byte: the buffer must hold every element */
    if (numel) {
      volatile uint8_t last = ((const uint8_t *)a.data)[(size_t)numel * el_size(a.et) - 1];
      (void)last;
    }
    array_free(&a);
  } else {
    NNDC_ASSERT(d.nerrors > 0 && !a.data);
  }
  diag_free(&d);
  return 0;
}
