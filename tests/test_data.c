/* test_data.c - IDX files (raw and gzip, every type code, hostile ones),
 * the real Fashion-MNIST files, data_convert's checks and conversions, and
 * the shuffle and gather of batches. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "util.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/"

/* An IDX file in memory: type code, dims, big-endian payload. */
typedef struct Bytes {
  uint8_t *p;
  size_t n;
} Bytes;

static Bytes make_idx(int code, int rank, const uint32_t *dims, const uint8_t *payload, size_t bytes) {
  Bytes b = {calloc(1, 4 + 4 * (size_t)rank + bytes + 1), 4 + 4 * (size_t)rank + bytes};
  b.p[2] = (uint8_t)code;
  b.p[3] = (uint8_t)rank;
  for (int i = 0; i < rank; i++)
    for (int k = 0; k < 4; k++) b.p[4 + 4 * i + k] = (uint8_t)(dims[i] >> (24 - 8 * k));
  if (bytes) memcpy(b.p + 4 + 4 * rank, payload, bytes);
  return b;
}

static Bytes gzip_buf(Bytes in) {
  z_stream z = {0};
  cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
  Bytes out = {malloc(deflateBound(&z, in.n) + 64), 0};
  z.next_in = in.p;
  z.avail_in = (uInt)in.n;
  z.next_out = out.p;
  z.avail_out = (uInt)deflateBound(&z, in.n) + 64;
  cr_assert_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.n = z.total_out;
  deflateEnd(&z);
  return out;
}

static void read_ok(Bytes b, Array *a) {
  Diag d;
  diag_init(&d);
  int r = idx_read_mem(&d, "t.idx", b.p, b.n, a);
  cr_assert_eq(r, 0, "%s", d.buf ? d.buf : "");
  diag_free(&d);
}

static void expect_bad(Bytes b, const char *want) {
  Diag d;
  diag_init(&d);
  Array a;
  cr_assert_eq(idx_read_mem(&d, "bad.idx", b.p, b.n, &a), -1, "accepted (want '%s')", want);
  cr_assert_eq(d.nerrors, 1);
  cr_assert(strstr(d.buf, "bad.idx: error: "), "%s", d.buf);
  cr_assert(strstr(d.buf, want), "message '%s' lacks '%s'", d.buf, want);
  cr_assert_null(a.data);
  diag_free(&d);
}

/* Each type code, raw and gzip'd, gives the documented type and values. */
Test(idx, every_type_raw_and_gz) {
  uint32_t dims[2] = {2, 3};
  uint8_t u8[6] = {0, 1, 127, 128, 200, 255};
  uint8_t i8[6] = {0, 1, 0x7f, 0x80, 0xff, 0xfe};
  uint8_t i16[12] = {0, 1, 0xff, 0xff, 0x80, 0, 0x7f, 0xff, 0x01, 0x00, 0, 0};
  uint8_t i32[24] = {0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 1, 0, 0};
  uint8_t f32[24] = {0x3f, 0xc0, 0, 0, 0xc0, 0x10, 0, 0, 0, 0, 0, 0, 0x7f, 0x7f, 0xff, 0xff, 0x3e, 0x80, 0, 0};
  uint8_t f64[48] = {0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc0, 0x02, 0, 0, 0, 0, 0, 0};
  int32_t wi8[6] = {0, 1, 127, -128, -1, -2};
  int32_t wi16[6] = {1, -1, -32768, 32767, 256, 0};
  int32_t wi32[6] = {1, -1, INT32_MIN, INT32_MAX, 65536, 0};
  float wf32[6] = {1.5f, -2.25f, 0, 3.40282347e38f, 0.25f, 0};
  float wf64[6] = {1.5f, -2.25f, 0, 0, 0, 0};
  struct {
    int code;
    const uint8_t *payload;
    size_t bytes;
    ElemType et;
    const void *want;
  } c[] = {
    {0x08, u8, 6, EL_U8, u8},       {0x09, i8, 6, EL_I32, wi8},     {0x0B, i16, 12, EL_I32, wi16},
    {0x0C, i32, 24, EL_I32, wi32},  {0x0D, f32, 24, EL_F32, wf32},  {0x0E, f64, 48, EL_F32, wf64},
  };
  for (size_t k = 0; k < sizeof c / sizeof c[0]; k++)
    for (int gz = 0; gz < 2; gz++) {
      Bytes b = make_idx(c[k].code, 2, dims, c[k].payload, c[k].bytes);
      if (gz) {
        Bytes z = gzip_buf(b);
        free(b.p);
        b = z;
        cr_assert_eq(b.p[0], 0x1f);
      }
      Array a;
      read_ok(b, &a);
      cr_assert_eq(a.et, c[k].et, "code 0x%x", c[k].code);
      cr_assert_eq(a.shape.rank, 2);
      cr_assert_eq(a.shape.dim[0], 2);
      cr_assert_eq(a.shape.dim[1], 3);
      cr_assert_eq(memcmp(a.data, c[k].want, 6 * el_size(a.et)), 0, "code 0x%x gz %d", c[k].code, gz);
      array_free(&a);
      free(b.p);
    }
}

Test(idx, hostile) {
  uint32_t dims[2] = {2, 3};
  uint8_t pay[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  Bytes b = make_idx(0x08, 2, dims, pay, 6);
  b.p[0] = 1;
  expect_bad(b, "not an IDX file (bad magic 0x01000802)");
  b.p[0] = 0;
  b.p[2] = 0x0A;
  expect_bad(b, "bad magic 0x00000a02");
  b.p[2] = 0x08;
  b.p[3] = 0;
  expect_bad(b, "bad magic");
  b.p[3] = 9;
  expect_bad(b, "too many dimensions");
  b.p[3] = 2;
  b.n = 17;
  expect_bad(b, "truncated: header says 6 bytes of data but only 5 follow");
  b.n = 9;
  expect_bad(b, "truncated IDX header");
  b.n = 2;
  expect_bad(b, "not an IDX file");
  free(b.p);
  b = make_idx(0x08, 2, dims, pay, 7);
  expect_bad(b, "trailing bytes");
  free(b.p);
  uint32_t huge[4] = {0xffffffff, 0xffffffff, 0xffffffff, 2};
  b = make_idx(0x0E, 4, huge, pay, 8);
  expect_bad(b, "too many elements");
  free(b.p);
  /* a header that promises 4 GB but holds 8 bytes */
  uint32_t big[1] = {0xffffffff};
  b = make_idx(0x08, 1, big, pay, 8);
  expect_bad(b, "truncated: header says 4294967295 bytes");
  Bytes z = gzip_buf(b);
  expect_bad(z, "truncated");
  free(z.p);
  free(b.p);
}

Test(idx, truncated_and_corrupt_gzip) {
  uint32_t dims[1] = {3000};
  uint8_t pay[3000];
  for (int i = 0; i < 3000; i++) pay[i] = (uint8_t)(i * 7 % 251);
  Bytes b = make_idx(0x08, 1, dims, pay, sizeof pay);
  Bytes z = gzip_buf(b);
  Array a;
  read_ok(z, &a);
  cr_assert_eq(memcmp(a.data, pay, sizeof pay), 0);
  array_free(&a);
  /* cut anywhere, even in the 8-byte trailer: an error, never short data */
  size_t full = z.n;
  for (size_t cut = 0; cut < full; cut += (cut < 30 || cut > full - 12) ? 1 : 37) {
    z.n = cut;
    Diag d;
    diag_init(&d);
    cr_assert_eq(idx_read_mem(&d, "cut.gz", z.p, z.n, &a), -1, "cut at %zu of %zu accepted", cut, full);
    diag_free(&d);
  }
  z.n = full;
  z.p[full - 3] ^= 0x40;   /* the length in the trailer */
  expect_bad(z, "incorrect length check");
  z.p[full - 3] ^= 0x40;
  z.p[full - 8] ^= 1;      /* the CRC */
  expect_bad(z, "incorrect data check");
  z.p[full - 8] ^= 1;
  /* a gzip whose payload holds one byte more than the header says */
  Bytes b2 = make_idx(0x08, 1, dims, pay, sizeof pay);
  b2.n += 1;
  Bytes z2 = gzip_buf(b2);
  expect_bad(z2, "more data than the header describes");
  free(z2.p);
  free(b2.p);
  free(z.p);
  free(b.p);
}

/* A truncated .gz file on disk, read through data_read by its IDX path. */
Test(idx, truncated_gz_file) {
  char *dir = util_tmpdir(), path[512];
  snprintf(path, sizeof path, "%s/t-labels-idx1-ubyte.gz", dir);
  uint32_t dims[1] = {5000};
  uint8_t pay[5000];
  for (int i = 0; i < 5000; i++) pay[i] = (uint8_t)(i % 10);
  Bytes b = make_idx(0x08, 1, dims, pay, sizeof pay);
  gzFile g = gzopen(path, "wb");
  cr_assert(g);
  cr_assert_eq(gzwrite(g, b.p, (unsigned)b.n), (int)b.n);
  cr_assert_eq(gzclose(g), Z_OK);
  Diag d;
  diag_init(&d);
  Array a;
  cr_assert_eq(data_read(&d, path, &a), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(a.shape.dim[0], 5000);
  cr_assert_eq(memcmp(a.data, pay, sizeof pay), 0);
  array_free(&a);
  FILE *f = fopen(path, "r+b");
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fclose(f);
  cr_assert_eq(truncate(path, sz / 2), 0);
  cr_assert_eq(data_read(&d, path, &a), -1);
  cr_assert(strstr(d.buf, "truncated"), "%s", d.buf);
  diag_free(&d);
  unlink(path);
  rmdir(dir);
  free(dir);
  free(b.p);
}

static void read_fmnist(const char *name, Array *a) {
  char path[256];
  snprintf(path, sizeof path, FMNIST "%s", name);
  Diag d;
  diag_init(&d);
  cr_assert_eq(data_read(&d, path, a), 0, "%s", d.buf ? d.buf : "");
  diag_free(&d);
}

Test(idx, fashion_mnist) {
  if (access(FMNIST "train-images-idx3-ubyte.gz", R_OK) ||
      access(FMNIST "t10k-labels-idx1-ubyte.gz", R_OK) ||
      access(FMNIST "train-labels-idx1-ubyte.gz", R_OK))
    cr_skip_test("Fashion-MNIST not installed");
  Array img, lab;
  read_fmnist("train-images-idx3-ubyte.gz", &img);
  cr_assert_eq(img.et, EL_U8);
  cr_assert_eq(img.shape.rank, 3);
  cr_assert_eq(img.shape.dim[0], 60000);
  cr_assert_eq(img.shape.dim[1], 28);
  cr_assert_eq(img.shape.dim[2], 28);
  int64_t sum = 0;
  for (int64_t i = 0; i < 60000LL * 784; i++) sum += ((uint8_t *)img.data)[i];
  cr_assert(sum > 60000LL * 784 * 50 && sum < 60000LL * 784 * 100, "mean pixel out of range");
  array_free(&img);
  /* Fashion-MNIST is balanced: 6000 train and 1000 test labels per class */
  const char *names[2] = {"train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
  int64_t per[2] = {6000, 1000};
  for (int k = 0; k < 2; k++) {
    read_fmnist(names[k], &lab);
    cr_assert_eq(lab.et, EL_U8);
    cr_assert_eq(lab.shape.rank, 1);
    cr_assert_eq(lab.shape.dim[0], per[k] * 10);
    int64_t count[10] = {0};
    for (int64_t i = 0; i < lab.shape.dim[0]; i++) {
      uint8_t v = ((uint8_t *)lab.data)[i];
      cr_assert_lt(v, 10);
      count[v]++;
    }
    for (int c = 0; c < 10; c++) cr_assert_eq(count[c], per[k], "class %d", c);
    array_free(&lab);
  }
}

/* --------------------------------------------------------- data_convert */

static Node input_node(DType dt, int rank, const int64_t *dims) {
  Node n;
  memset(&n, 0, sizeof n);
  n.op = OP_INPUT;
  n.dt = dt;
  n.name = "x";
  n.shape.rank = rank;
  for (int i = 0; i < rank; i++) n.shape.dim[i] = dims[i];
  return n;
}

static Array arr(ElemType et, int rank, const int64_t *dims, const void *data, size_t bytes) {
  Array a;
  memset(&a, 0, sizeof a);
  a.et = et;
  a.shape.rank = rank;
  for (int i = 0; i < rank; i++) a.shape.dim[i] = dims[i];
  a.data = malloc(bytes ? bytes : 1);
  memcpy(a.data, data, bytes);
  return a;
}

Test(data, convert_u8_to_f32_reshaped) {
  uint8_t px[2 * 2 * 3] = {0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 254};
  Array in = arr(EL_U8, 3, (int64_t[]){2, 2, 3}, px, sizeof px);
  Node x = input_node(DT_F32, 2, (int64_t[]){32, 6});
  Diag d;
  diag_init(&d);
  Array out;
  cr_assert_eq(data_convert(&d, "px.npy", &in, &x, &out), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(out.et, EL_F32);
  cr_assert_eq(out.shape.rank, 2);
  cr_assert_eq(out.shape.dim[0], 2);
  cr_assert_eq(out.shape.dim[1], 6);
  for (int i = 0; i < 12; i++) cr_assert_eq(((float *)out.data)[i], (float)px[i] / 255.0f, "elem %d", i);
  cr_assert_eq(((float *)out.data)[1], 1.0f);
  array_free(&out);
  array_free(&in);
  diag_free(&d);
}

Test(data, convert_ints) {
  Diag d;
  diag_init(&d);
  Array out;
  Node y = input_node(DT_I32, 1, (int64_t[]){8});
  int64_t l[3] = {3, -7, 2147483647};
  Array in = arr(EL_I64, 1, (int64_t[]){3}, l, sizeof l);
  cr_assert_eq(data_convert(&d, "y.npy", &in, &y, &out), 0);
  cr_assert_eq(out.et, EL_I32);
  cr_assert_eq(((int32_t *)out.data)[1], -7);
  cr_assert_eq(((int32_t *)out.data)[2], 2147483647);
  array_free(&out);
  ((int64_t *)in.data)[2] = 2147483648LL;
  cr_assert_eq(data_convert(&d, "y.npy", &in, &y, &out), -1);
  cr_assert(strstr(d.buf, "y.npy: error: element 2 (2147483648) does not fit in i32"), "%s", d.buf);
  array_free(&in);

  float f[3] = {1, 9, -4};
  in = arr(EL_F32, 1, (int64_t[]){3}, f, sizeof f);
  cr_assert_eq(data_convert(&d, "y.npy", &in, &y, &out), 0);
  cr_assert_eq(((int32_t *)out.data)[2], -4);
  array_free(&out);
  ((float *)in.data)[1] = 9.5f;
  cr_assert_eq(data_convert(&d, "y.npy", &in, &y, &out), -1);
  cr_assert(strstr(d.buf, "element 1 (9.5) is not an integer"), "%s", d.buf);
  ((float *)in.data)[1] = 1e10f;
  cr_assert_eq(data_convert(&d, "y.npy", &in, &y, &out), -1);
  array_free(&in);

  uint8_t u[2] = {9, 200};
  in = arr(EL_U8, 1, (int64_t[]){2}, u, sizeof u);
  cr_assert_eq(data_convert(&d, "y.npy", &in, &y, &out), 0);
  cr_assert_eq(((int32_t *)out.data)[1], 200);
  array_free(&out);
  array_free(&in);

  int32_t i4[2] = {-3, 16777217};
  in = arr(EL_I32, 1, (int64_t[]){2}, i4, sizeof i4);
  Node xf = input_node(DT_F32, 1, (int64_t[]){4});
  cr_assert_eq(data_convert(&d, "y.npy", &in, &xf, &out), 0);
  cr_assert_eq(((float *)out.data)[0], -3.0f);
  cr_assert_eq(((float *)out.data)[1], 16777216.0f);
  array_free(&out);
  array_free(&in);
  diag_free(&d);
}

Test(data, convert_mismatch) {
  Diag d;
  diag_init(&d);
  Array out;
  float f[10 * 5] = {0};
  Array in = arr(EL_F32, 2, (int64_t[]){10, 5}, f, sizeof f);
  Node x = input_node(DT_F32, 3, (int64_t[]){10, 2, 3});
  cr_assert_eq(data_convert(&d, "x.npy", &in, &x, &out), -1);
  cr_assert(strstr(d.buf, "x.npy: error: f32[10,5] holds 5 elements per sample but input 'x' (f32[10,2,3]) wants 6"),
            "%s", d.buf);
  cr_assert_null(out.data);
  in.shape.rank = 0;
  cr_assert_eq(data_convert(&d, "x.npy", &in, &x, &out), -1);
  cr_assert(strstr(d.buf, "sample axis"), "%s", d.buf);
  in.shape.rank = 2;
  Node s = input_node(DT_F32, 0, NULL);
  cr_assert_eq(data_convert(&d, "x.npy", &in, &s, &out), -1);
  cr_assert_eq(d.nerrors, 3);
  array_free(&in);
  diag_free(&d);
}

Test(data, npy_by_suffix) {
  char *dir = util_tmpdir(), path[512];
  snprintf(path, sizeof path, "%s/v.npy", dir);
  Shape s = {2, {2, 2}};
  int32_t v[4] = {1, 2, 3, 4};
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, path, EL_I32, &s, v), 0);
  Array a;
  cr_assert_eq(data_read(&d, path, &a), 0);
  cr_assert_eq(a.et, EL_I32);
  cr_assert_eq(memcmp(a.data, v, sizeof v), 0);
  array_free(&a);
  /* the same bytes under a non-.npy name are read as IDX and rejected */
  char other[512];
  snprintf(other, sizeof other, "%s/v.bin", dir);
  cr_assert_eq(rename(path, other), 0);
  cr_assert_eq(data_read(&d, other, &a), -1);
  cr_assert(strstr(d.buf, "not an IDX file (bad magic 0x934e554d)"), "%s", d.buf);
  diag_free(&d);
  unlink(other);
  rmdir(dir);
  free(dir);
}

/* A stream of token ids (u2 .npy, i4, the bytes of a text) fed to an
 * i32 [N, L] input: windows of L sharing one token; other inputs refuse it. */
Test(data, token_streams_are_windowed) {
  char *dir = util_tmpdir(), path[512];
  snprintf(path, sizeof path, "%s/tok.npy", dir);
  uint16_t tok[10] = {0, 1, 2, 3, 4, 5, 60000, 7, 8, 9};
  Shape s = {1, {10}};
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, path, EL_U16, &s, tok), 0);
  Array a, out;
  cr_assert_eq(data_read(&d, path, &a), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(a.et, EL_U16);
  Node x = input_node(DT_I32, 2, (int64_t[]){32, 4});
  cr_assert_eq(data_windows(&a, &x), 3);
  cr_assert_eq(data_convert(&d, path, &a, &x, &out), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(out.shape.dim[0], 3);
  cr_assert_eq(out.shape.dim[1], 4);
  const int32_t want[12] = {0, 1, 2, 3, 3, 4, 5, 60000, 60000, 7, 8, 9};
  for (int i = 0; i < 12; i++) cr_expect_eq(((int32_t *)out.data)[i], want[i], "elem %d", i);
  array_free(&out);
  Node x11 = input_node(DT_I32, 2, (int64_t[]){32, 11});  /* longer than the stream */
  cr_assert_eq(data_convert(&d, path, &a, &x11, &out), -1);
  cr_assert(strstr(d.buf, "holds 10 tokens: fewer than one window of 11"), "%s", d.buf);
  Node f = input_node(DT_F32, 2, (int64_t[]){32, 4});  /* not a token input: per-sample counts */
  cr_assert_eq(data_windows(&a, &f), -1);
  cr_assert_eq(data_convert(&d, path, &a, &f, &out), -1);
  Node y = input_node(DT_I32, 1, (int64_t[]){32});     /* one label per sample: plain data */
  cr_assert_eq(data_windows(&a, &y), -1);
  cr_assert_eq(data_convert(&d, path, &a, &y, &out), 0);
  cr_assert_eq(out.shape.dim[0], 10);
  cr_assert_eq(((int32_t *)out.data)[6], 60000);
  array_free(&out);
  array_free(&a);
  diag_free(&d);
  unlink(path);
  rmdir(dir);
  free(dir);
}

/* ------------------------------------------------------ shuffle, gather */

Test(data, permutation) {
  enum { N = 50, E = 2000 };
  int64_t p[N], q[N];
  int64_t pos0[N] = {0};
  int differs = 0;
  for (int64_t ep = 0; ep < E; ep++) {
    data_permutation(7, ep, N, p);
    int seen[N] = {0};
    for (int i = 0; i < N; i++) {
      cr_assert(p[i] >= 0 && p[i] < N);
      cr_assert_eq(seen[p[i]]++, 0, "not a permutation");
      if (p[i] == 0) pos0[i]++;
    }
    data_permutation(7, ep, N, q);
    cr_assert_eq(memcmp(p, q, sizeof p), 0, "not deterministic");
    data_permutation(8, ep, N, q);
    differs += memcmp(p, q, sizeof p) != 0;
  }
  cr_assert_eq(differs, E, "the seed must change the order");
  /* sample 0 lands in each position about E/N = 40 times */
  for (int i = 0; i < N; i++) cr_assert(pos0[i] > 10 && pos0[i] < 80, "position %d: %lld", i, (long long)pos0[i]);
  data_permutation(7, 0, N, p);
  data_permutation(7, 1, N, q);
  cr_assert_neq(memcmp(p, q, sizeof p), 0, "epochs must differ");
  data_permutation(1, 0, 1, p);
  cr_assert_eq(p[0], 0);
  data_permutation(1, 0, 0, p);
}

Test(data, gather) {
  int32_t v[5][3];
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 3; j++) v[i][j] = 10 * i + j;
  Array a = arr(EL_I32, 2, (int64_t[]){5, 3}, v, sizeof v);
  int64_t perm[5] = {4, 0, 3, 1, 2};
  int32_t dst[2][3];
  data_gather(&a, perm, 1, 2, dst);
  cr_assert_eq(dst[0][0], 0);
  cr_assert_eq(dst[0][2], 2);
  cr_assert_eq(dst[1][0], 30);
  cr_assert_eq(dst[1][1], 31);
  array_free(&a);
  uint8_t u[4] = {1, 2, 3, 4};
  a = arr(EL_U8, 1, (int64_t[]){4}, u, sizeof u);
  uint8_t ub[3];
  data_gather(&a, perm + 2, 0, 3, ub);
  cr_assert_eq(ub[0], 4);
  cr_assert_eq(ub[1], 2);
  cr_assert_eq(ub[2], 3);
  array_free(&a);
}
