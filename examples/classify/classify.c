/* classify.c - classifies Fashion-MNIST test images with the ahead-of-time C
 * of examples/mlp.nnd (`nndc emit-c ... --weights mlp.safetensors -D N=1`):
 * no nndc library at run time, only the generated mlp.c, its embedded
 * trained weights and libm.
 *
 *   classify t10k-images-idx3-ubyte t10k-labels-idx1-ubyte
 *
 * Reads the IDX files (uncompressed), runs one image at a time, prints the
 * accuracy. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "mlp.h"

/* Reads an IDX file of unsigned bytes; returns the data and its item count. */
static unsigned char *read_idx(const char *path, long *items, long *item_size) {
  FILE *f = fopen(path, "rb");
  unsigned char h[4];
  if (!f || fread(h, 1, 4, f) != 4 || h[0] || h[1] || h[2] != 8) {
    fprintf(stderr, "%s: not an uncompressed IDX file of bytes (gunzip it first)\n", path);
    exit(1);
  }
  long dims[4] = {1, 1, 1, 1};
  for (int k = 0; k < h[3] && k < 4; k++) {
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) exit(1);
    dims[k] = (long)b[0] << 24 | (long)b[1] << 16 | (long)b[2] << 8 | b[3];
  }
  *items = dims[0];
  *item_size = dims[1] * dims[2] * dims[3];
  unsigned char *data = malloc((size_t)(*items * *item_size));
  if (!data || fread(data, 1, (size_t)(*items * *item_size), f) != (size_t)(*items * *item_size)) {
    fprintf(stderr, "%s: truncated\n", path);
    exit(1);
  }
  fclose(f);
  return data;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fputs("usage: classify IMAGES LABELS\n", stderr);
    return 2;
  }
  long n, size, nl, one;
  unsigned char *img = read_idx(argv[1], &n, &size);
  unsigned char *lab = read_idx(argv[2], &nl, &one);
  if (size != MLP_INPUT_X_SIZE / MLP_N || nl != n) {
    fputs("images and labels do not match the model\n", stderr);
    return 1;
  }
  float x[MLP_INPUT_X_SIZE], probs[MLP_OUTPUT_PROBS_SIZE], loss, acc;
  int32_t y[MLP_N];
  void *ws = malloc(mlp_workspace_size());
  mlp_inputs in = {x, y};
  mlp_outputs out = {probs, &loss, &acc};
  long correct = 0;
  for (long i = 0; i < n; i++) {
    for (long j = 0; j < size; j++) x[j] = img[i * size + j] / 255.0f;
    y[0] = lab[i];
    mlp_forward(&mlp_weights, &in, &out, ws);
    int best = 0;
    for (int c = 1; c < 10; c++)
      if (probs[c] > probs[best]) best = c;
    correct += best == lab[i];
  }
  printf("accuracy %.4f on %ld test images\n", (double)correct / (double)n, n);
  free(ws);
  free(img);
  free(lab);
  return 0;
}
