/* png.c - a grid of images as a PNG file (`nndc run --png`, spec 9).
 *
 * png_write_grid lays out the n images of v [n, c, h, w] (c 1: grayscale,
 * c 3: RGB, float values in [0, 1], clamped; NaN is black) row by row,
 * ceil(sqrt(n)) per row, with a one-pixel black border between them, as an
 * 8-bit PNG: IHDR, one IDAT of the rows (filter type 0) deflated by zlib,
 * IEND; every chunk's CRC is zlib's crc32.  The file is written atomically
 * (rt_write_atomic).  Returns 0, or -1 after reporting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "runtime.h"

static void be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A chunk of `len` data bytes at p + 8 (p has room for 12 + len): length,
 * type, data, CRC of type and data. */
static size_t chunk(uint8_t *p, const char *type, size_t len) {
  be32(p, (uint32_t)len);
  memcpy(p + 4, type, 4);
  be32(p + 8 + len, (uint32_t)crc32(crc32(0, Z_NULL, 0), p + 4, (uInt)(len + 4)));
  return 12 + len;
}

static uint8_t pixel(float v) {
  if (!(v > 0)) return 0;   /* NaN too */
  return v >= 1 ? 255 : (uint8_t)lrintf(v * 255);
}

int png_write_grid(Diag *d, const char *path, const float *v, int64_t n, int64_t c, int64_t h, int64_t w) {
  NNDC_ASSERT(c == 1 || c == 3);
  int64_t cols = 1;
  while (cols * cols < n) cols++;
  int64_t rows = n > 0 ? (n + cols - 1) / cols : 1;
  int64_t W = cols * (w + 1) - 1, H = rows * (h + 1) - 1, stride = W * c + 1;
  if (n < 1 || h < 1 || w < 1 || W > (1 << 20) || H > (1 << 20) || (double)stride * (double)H > 1e9) {
    diag_error(d, (Loc){0}, "%s: a grid of %lld images of %lldx%lld is no image PNG can hold here", path,
               (long long)n, (long long)h, (long long)w);
    return -1;
  }
  size_t raw_len = (size_t)(stride * H);
  uint8_t *raw = calloc(raw_len, 1);
  uLongf zlen = compressBound((uLong)raw_len);
  uint8_t *out = malloc(8 + 25 + 12 + zlen + 12);
  if (!raw || !out) {
    free(raw);
    free(out);
    diag_error(d, (Loc){0}, "%s: out of memory for the image", path);
    return -1;
  }
  for (int64_t k = 0; k < n; k++) {
    int64_t y0 = k / cols * (h + 1), x0 = k % cols * (w + 1);
    for (int64_t y = 0; y < h; y++)
      for (int64_t x = 0; x < w; x++)
        for (int64_t ch = 0; ch < c; ch++)
          raw[(y0 + y) * stride + 1 + (x0 + x) * c + ch] = pixel(v[((k * c + ch) * h + y) * w + x]);
  }
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t *p = out;
  memcpy(p, sig, 8);
  p += 8;
  be32(p + 8, (uint32_t)W);
  be32(p + 12, (uint32_t)H);
  p[16] = 8;                  /* bit depth */
  p[17] = c == 3 ? 2 : 0;     /* RGB or grayscale */
  p[18] = p[19] = p[20] = 0;  /* deflate, adaptive filtering, no interlace */
  p += chunk(p, "IHDR", 13);
  int zr = compress2(p + 8, &zlen, raw, (uLong)raw_len, 6);
  free(raw);
  if (zr != Z_OK) {
    free(out);
    diag_error(d, (Loc){0}, "%s: zlib could not compress the image (%d)", path, zr);
    return -1;
  }
  p += chunk(p, "IDAT", zlen);
  p += chunk(p, "IEND", 0);
  const void *part[1] = {out};
  size_t len[1] = {(size_t)(p - out)};
  int r = rt_write_atomic(d, path, part, len, 1);
  free(out);
  return r;
}
