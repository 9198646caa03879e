/* data.c - data files fed to a model's inputs: reading by suffix, converting
 * to the input's dtype and per-sample shape (spec 9), and batches: the
 * per-epoch shuffle and the gather of one batch of samples.
 *
 * The first axis of a data file is the sample axis.  Each sample must hold
 * as many elements as one sample of the input (the product of its dims
 * 1..); it is then reshaped to them.  Conversions: u1 -> f32 divides by
 * 255; other integers -> f32 by value; integers -> i32 by value with a range
 * check; f32 -> i32 only for integral values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

static const char *el_name(ElemType et) {
  switch (et) {
  case EL_F32: return "f32";
  case EL_I32: return "i32";
  case EL_I64: return "i64";
  case EL_U8: return "u8";
  case EL_TEXT: return "text";
  case EL_U16: return "u16";
  }
  NNDC_ASSERT(0);
}

/* "u8[60000,28,28]" */
static char *array_str(const Array *a, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s[", el_name(a->et));
  for (int i = 0; i < a->shape.rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)a->shape.dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

static int has_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && !strcmp(s + n - m, suf);
}

int data_read(Diag *d, const char *path, Array *out) {
  if (has_suffix(path, ".npy")) return npy_read(d, path, out);
  if (has_suffix(path, ".txt")) {
    size_t n;
    uint8_t *b = rt_read_file(d, path, &n);
    if (!b) return -1;
    *out = (Array){EL_TEXT, {1, {(int64_t)n}}, b};
    return 0;
  }
  return idx_read(d, path, out);
}

/* Element i of a as a double (exact for every type but the largest i64). */
static double elem(const Array *a, int64_t i) {
  switch (a->et) {
  case EL_F32: return ((const float *)a->data)[i];
  case EL_I32: return ((const int32_t *)a->data)[i];
  case EL_I64: return (double)((const int64_t *)a->data)[i];
  case EL_U8: case EL_TEXT: return ((const uint8_t *)a->data)[i];
  case EL_U16: return ((const uint16_t *)a->data)[i];
  }
  NNDC_ASSERT(0);
}

static int is_int(ElemType et) { return et != EL_F32; }

int64_t data_windows(const Array *in, const Node *input) {
  if (in->shape.rank != 1 || !is_int(in->et) || input->dt != DT_I32 || input->shape.rank != 2) return -1;
  int64_t n = in->shape.dim[0], L = input->shape.dim[1];
  if (in->et != EL_TEXT && L < 2) return -1;  /* one integer per sample: plain data */
  return L >= 2 && n >= L ? (n - L) / (L - 1) + 1 : 0;
}

/* A stream of tokens (a text's bytes, or a 1-D integer array) fed to an
 * i32 [N, L] input: the windows tokens[k(L-1) : k(L-1) + L]. */
static int stream_windows(Diag *d, const char *path, const Array *in, const Node *input, Array *out) {
  char ib[160];
  int64_t ns = data_windows(in, input);
  if (ns < 0) {
    diag_file_error(d, path, "a text file feeds an i32[N, L] input of byte tokens (L >= 2), not '%s' (%s)",
                    input->name, shape_str(&input->shape, input->dt, ib, sizeof ib));
    return -1;
  }
  int64_t n = in->shape.dim[0], L = input->shape.dim[1];
  if (ns == 0) {
    diag_file_error(d, path, "holds %lld %s: fewer than one window of %lld for input '%s'", (long long)n,
                    in->et == EL_TEXT ? "bytes" : "tokens", (long long)L, input->name);
    return -1;
  }
  int32_t *buf = malloc((size_t)(ns * L) * sizeof *buf);
  if (!buf) {
    diag_file_error(d, path, "out of memory making %lld windows of %lld tokens", (long long)ns, (long long)L);
    return -1;
  }
  for (int64_t k = 0; k < ns; k++)
    for (int64_t t = 0; t < L; t++) {
      double v = elem(in, k * (L - 1) + t);
      if (!(v >= INT32_MIN && v <= INT32_MAX)) {
        free(buf);
        diag_file_error(d, path, "token %lld (%g) does not fit in i32", (long long)(k * (L - 1) + t), v);
        return -1;
      }
      buf[k * L + t] = (int32_t)v;
    }
  out->et = EL_I32;
  out->shape = input->shape;
  out->shape.dim[0] = ns;
  out->data = buf;
  return 0;
}

static void to_f32(const Array *in, int64_t numel, float *o) {
  for (int64_t i = 0; i < numel; i++)
    o[i] = in->et == EL_U8 ? (float)((const uint8_t *)in->data)[i] / 255.0f : (float)elem(in, i);
}

/* Fails at the first element that is not an integer in i32's range. */
static int to_i32(Diag *d, const char *path, const Array *in, int64_t numel, int32_t *o) {
  for (int64_t i = 0; i < numel; i++) {
    if (in->et == EL_I64) {
      int64_t v = ((const int64_t *)in->data)[i];
      if (v < INT32_MIN || v > INT32_MAX) {
        diag_file_error(d, path, "element %lld (%lld) does not fit in i32", (long long)i,
                        (long long)v);
        return -1;
      }
      o[i] = (int32_t)v;
      continue;
    }
    double v = elem(in, i);
    if (!(v == floor(v) && v >= INT32_MIN && v <= INT32_MAX)) {
      diag_file_error(d, path, "element %lld (%g) is not an integer for an i32 input", (long long)i, v);
      return -1;
    }
    o[i] = (int32_t)v;
  }
  return 0;
}

/* The per-sample element count of `input` and of `in` must agree. */
static int check_sample(Diag *d, const char *path, const Array *in, const Node *input) {
  char ab[160], ib[160];
  if (in->shape.rank < 1) {
    diag_file_error(d, path, "holds a scalar (%s); data needs a first, sample axis",
                    array_str(in, ab, sizeof ab));
    return -1;
  }
  if (input->shape.rank < 1) {
    diag_file_error(d, path, "input '%s' is a scalar; data can only feed inputs with a sample axis",
                    input->name);
    return -1;
  }
  int64_t per = 1, want = 1;
  for (int i = 1; i < in->shape.rank; i++) per *= in->shape.dim[i];
  for (int i = 1; i < input->shape.rank; i++) want *= input->shape.dim[i];
  if (per != want) {
    diag_file_error(d, path, "%s holds %lld elements per sample but input '%s' (%s) wants %lld",
                    array_str(in, ab, sizeof ab), (long long)per, input->name,
                    shape_str(&input->shape, input->dt, ib, sizeof ib), (long long)want);
    return -1;
  }
  return 0;
}

int data_convert(Diag *d, const char *path, const Array *in, const Node *input, Array *out) {
  memset(out, 0, sizeof *out);
  if (in->et == EL_TEXT || data_windows(in, input) >= 0) return stream_windows(d, path, in, input, out);
  if (check_sample(d, path, in, input)) return -1;
  Shape s = input->shape;
  s.dim[0] = in->shape.dim[0];
  int64_t numel = 1;
  for (int i = 0; i < in->shape.rank; i++) numel *= in->shape.dim[i];
  ElemType et = input->dt == DT_F32 ? EL_F32 : EL_I32;
  void *buf = malloc(numel ? (size_t)numel * 4 : 1);
  if (!buf) {
    diag_file_error(d, path, "out of memory converting %lld elements", (long long)numel);
    return -1;
  }
  if (et == EL_F32) {
    to_f32(in, numel, buf);
  } else if (to_i32(d, path, in, numel, buf)) {
    free(buf);
    return -1;
  }
  out->et = et;
  out->shape = s;
  out->data = buf;
  return 0;
}

/* Frees every array and the inputs and arrays vectors (all malloc'd). */
void dataset_free(Dataset *ds) {
  for (int i = 0; i < ds->n && ds->arrays; i++) array_free(&ds->arrays[i]);
  free(ds->arrays);
  free((void *)ds->inputs);
  memset(ds, 0, sizeof *ds);
}

/* Fisher-Yates, each swap drawn from the counter-based RNG keyed by
 * (seed, epoch), so the order is the same on every run and engine. */
void data_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm) {
  uint64_t stream = rng_mix(0x5348554646ull ^ (uint64_t)epoch);
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(rng_bits(seed, stream, (uint64_t)i) % (uint64_t)(i + 1));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

void data_gather(const Array *a, const int64_t *perm, int64_t first, int64_t batch, void *dst) {
  NNDC_ASSERT(a->shape.rank >= 1 && a->shape.dim[0] > 0);
  int64_t numel = 1;
  for (int i = 0; i < a->shape.rank; i++) numel *= a->shape.dim[i];
  size_t row = (size_t)(numel / a->shape.dim[0]) * el_size(a->et);
  for (int64_t b = 0; b < batch; b++) {
    int64_t k = perm ? perm[first + b] : first + b;
    NNDC_ASSERT(k >= 0 && k < a->shape.dim[0]);
    memcpy((char *)dst + (size_t)b * row, (const char *)a->data + (size_t)k * row, row);
  }
}
