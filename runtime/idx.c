/* idx.c - IDX files, the format MNIST and Fashion-MNIST are distributed in,
 * raw or gzip-compressed (detected by the 1f 8b magic, not by the name).
 *
 * Layout: two zero bytes, a type code, the rank, rank big-endian u32 dims,
 * then the elements big-endian in C order.  Types become Array element
 * types as follows:
 *   0x08 u8  -> EL_U8        0x09 i8  -> EL_I32     0x0B i16 -> EL_I32
 *   0x0C i32 -> EL_I32       0x0D f32 -> EL_F32     0x0E f64 -> EL_F32 (rounded)
 * The payload must be exactly what the dims say: a short file (or a
 * truncated .gz stream) and trailing bytes are errors.  Memory for a
 * compressed payload grows with what actually decompresses, so a header
 * that lies about its size cannot force a huge allocation. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "runtime.h"

/* The bytes of an IDX file: a memory buffer, or a gzip stream over one. */
typedef struct Src {
  const uint8_t *buf;
  size_t n, pos;       /* raw: read position */
  int gz;
  z_stream z;          /* gz: the inflater, fed the whole buffer at once */
  int ended;           /* gz: Z_STREAM_END seen */
  const char *err;     /* gz: first zlib problem */
} Src;

static int src_open(Src *s, const uint8_t *buf, size_t n) {
  memset(s, 0, sizeof *s);
  s->buf = buf;
  s->n = n;
  s->gz = n >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
  if (!s->gz) return 0;
  if (inflateInit2(&s->z, 15 + 16) != Z_OK) return -1;
  s->z.next_in = (Bytef *)buf;
  s->z.avail_in = n > UINT32_MAX ? UINT32_MAX : (uInt)n;
  return 0;
}

static void src_close(Src *s) {
  if (s->gz) inflateEnd(&s->z);
}

/* Inflates up to n bytes into dst; returns how many were produced. */
static size_t gz_read(Src *s, uint8_t *dst, size_t n) {
  size_t got = 0;
  while (got < n && !s->ended && !s->err) {
    size_t want = n - got;
    s->z.next_out = dst + got;
    s->z.avail_out = want > (1u << 30) ? (1u << 30) : (uInt)want;
    uInt before = s->z.avail_out;
    int r = inflate(&s->z, Z_NO_FLUSH);
    got += before - s->z.avail_out;
    if (r == Z_STREAM_END) s->ended = 1;
    else if (r == Z_BUF_ERROR && s->z.avail_in == 0) s->err = "truncated gzip stream";
    else if (r != Z_OK && r != Z_BUF_ERROR) s->err = s->z.msg ? s->z.msg : "corrupt gzip data";
  }
  return got;
}

/* Reads up to n bytes; returns how many there were. */
static size_t src_read(Src *s, uint8_t *dst, size_t n) {
  if (s->gz) return gz_read(s, dst, n);
  size_t k = s->n - s->pos < n ? s->n - s->pos : n;
  memcpy(dst, s->buf + s->pos, k);
  s->pos += k;
  return k;
}

/* After the payload: the file must end here (a gzip stream with a good trailer). */
static const char *src_finish(Src *s) {
  if (!s->gz) return s->pos == s->n ? NULL : "trailing bytes after the data the header describes";
  uint8_t extra;
  if (gz_read(s, &extra, 1)) return "more data than the header describes";
  if (s->err) return s->err;
  if (s->z.avail_in) return "trailing bytes after the gzip stream";
  return NULL;
}

/* Element size and Array type of an IDX type code; 0 if unknown. */
static size_t idx_type(int code, ElemType *et, const char **name) {
  switch (code) {
  case 0x08: *et = EL_U8; *name = "u8"; return 1;
  case 0x09: *et = EL_I32; *name = "i8"; return 1;
  case 0x0B: *et = EL_I32; *name = "i16"; return 2;
  case 0x0C: *et = EL_I32; *name = "i32"; return 4;
  case 0x0D: *et = EL_F32; *name = "f32"; return 4;
  case 0x0E: *et = EL_F32; *name = "f64"; return 8;
  }
  return 0;
}

static uint64_t rd_be(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* Converts numel big-endian elements of IDX type code from raw into out. */
static void convert(int code, const uint8_t *raw, int64_t numel, void *out) {
  int32_t *oi = out;
  float *of = out;
  for (int64_t i = 0; i < numel; i++) {
    switch (code) {
    case 0x09: oi[i] = (int8_t)raw[i]; break;
    case 0x0B: oi[i] = (int16_t)rd_be(raw + 2 * i, 2); break;
    case 0x0C: oi[i] = (int32_t)(uint32_t)rd_be(raw + 4 * i, 4); break;
    case 0x0D: {
      uint32_t u = (uint32_t)rd_be(raw + 4 * i, 4);
      memcpy(&of[i], &u, 4);
      break;
    }
    case 0x0E: {
      uint64_t u = rd_be(raw + 8 * i, 8);
      double x;
      memcpy(&x, &u, 8);
      of[i] = (float)x;
      break;
    }
    }
  }
}

/* Reads exactly want payload bytes into a buffer grown as data arrives. */
static uint8_t *read_payload(Diag *d, const char *name, Src *s, size_t want) {
  size_t cap = want < (1u << 20) ? want : (1u << 20), got = 0;
  uint8_t *buf = malloc(cap ? cap : 1);
  while (buf) {
    got += src_read(s, buf + got, cap - got);
    if (got < cap || cap == want) break;
    size_t ncap = cap > want / 2 ? want : cap * 2;
    uint8_t *nb = realloc(buf, ncap);
    if (!nb) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = nb;
    cap = ncap;
  }
  if (!buf) {
    diag_file_error(d, name, "out of memory for %zu bytes of data", want);
    return NULL;
  }
  if (got < want) {
    diag_file_error(d, name, "truncated: header says %zu bytes of data but only %zu follow%s%s",
                    want, got, s->err ? ": " : "", s->err ? s->err : "");
    free(buf);
    return NULL;
  }
  return buf;
}

/* Reads magic and dims; sets the shape, the type code and payload bytes. */
static int read_header(Diag *d, const char *name, Src *s, Shape *sh, int *code, size_t *bytes) {
  uint8_t h[4 + 4 * 255];
  if (src_read(s, h, 4) < 4) {
    diag_file_error(d, name, "not an IDX file (shorter than its 4-byte magic)%s%s",
                    s->err ? ": " : "", s->err ? s->err : "");
    return -1;
  }
  ElemType et;
  const char *tname;
  size_t es = idx_type(h[2], &et, &tname);
  if (h[0] || h[1] || !es || h[3] < 1 || h[3] > MAX_RANK) {
    diag_file_error(d, name, "not an IDX file (bad magic 0x%08x)%s", (unsigned)rd_be(h, 4),
                    !h[0] && !h[1] && es && h[3] > MAX_RANK ? ": too many dimensions" : "");
    return -1;
  }
  sh->rank = h[3];
  if (src_read(s, h + 4, 4 * (size_t)sh->rank) < 4 * (size_t)sh->rank) {
    diag_file_error(d, name, "truncated IDX header");
    return -1;
  }
  int64_t numel = 1;
  for (int i = 0; i < sh->rank; i++) {
    sh->dim[i] = (int64_t)rd_be(h + 4 + 4 * i, 4);
    if (!dim_mul(numel, sh->dim[i], &numel)) {
      diag_file_error(d, name, "IDX shape has too many elements (limit %lld)", (long long)MAX_DIM);
      return -1;
    }
  }
  *code = h[2];
  *bytes = (size_t)numel * es;
  return 0;
}

int idx_read_mem(Diag *d, const char *name, const uint8_t *buf, size_t n, Array *out) {
  memset(out, 0, sizeof *out);
  Src s;
  if (src_open(&s, buf, n)) {
    diag_file_error(d, name, "cannot start zlib");
    return -1;
  }
  int code;
  size_t bytes;
  uint8_t *raw = NULL;
  const char *tname;
  if (read_header(d, name, &s, &out->shape, &code, &bytes) ||
      !(raw = read_payload(d, name, &s, bytes)))
    goto fail;
  const char *why = src_finish(&s);
  if (why) {
    diag_file_error(d, name, "%s", why);
    goto fail;
  }
  src_close(&s);
  size_t es = idx_type(code, &out->et, &tname);
  if (code == 0x08) {
    out->data = raw;
    return 0;
  }
  int64_t numel = (int64_t)(bytes / es);
  out->data = malloc(numel ? (size_t)numel * 4 : 1);
  if (!out->data) {
    diag_file_error(d, name, "out of memory converting %lld %s elements", (long long)numel, tname);
    free(raw);
    memset(out, 0, sizeof *out);
    return -1;
  }
  convert(code, raw, numel, out->data);
  free(raw);
  return 0;
fail:
  src_close(&s);
  free(raw);
  memset(out, 0, sizeof *out);
  return -1;
}

int idx_read(Diag *d, const char *path, Array *out) {
  memset(out, 0, sizeof *out);
  size_t n;
  uint8_t *buf = rt_read_file(d, path, &n);
  if (!buf) return -1;
  int r = idx_read_mem(d, path, buf, n, out);
  free(buf);
  return r;
}
