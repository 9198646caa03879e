/* test_npy.c - .npy reading and writing: files written by numpy
 * (tests/golden/npy/gen_npy.py) read back with the right values, files we
 * write are byte-identical to numpy's, and hostile headers are errors with a
 * clear message, never a crash. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "util.h"

#define GOLD NNDC_SRC_DIR "/tests/golden/npy/"

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)sz + 1);
  cr_assert_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
  fclose(f);
  *n = (size_t)sz;
  return b;
}

static void read_ok(const char *name, Array *a) {
  Diag d;
  diag_init(&d);
  char path[512];
  snprintf(path, sizeof path, GOLD "%s", name);
  int r = npy_read(&d, path, a);
  cr_assert_eq(r, 0, "%s: %s", name, d.buf ? d.buf : "");
  cr_assert_eq(d.nerrors, 0);
  diag_free(&d);
}

static void check_shape(const Array *a, int rank, const int64_t *dims) {
  cr_assert_eq(a->shape.rank, rank);
  for (int i = 0; i < rank; i++) cr_assert_eq(a->shape.dim[i], dims[i], "dim %d", i);
}

Test(npy, reads_numpy_f4) {
  Array a;
  read_ok("f4_2x3.npy", &a);
  cr_assert_eq(a.et, EL_F32);
  check_shape(&a, 2, (int64_t[]){2, 3});
  float want[6] = {1.5f, -2.25f, 3.0f, 0.1f, 1e-30f, -7e20f};
  cr_assert_eq(memcmp(a.data, want, sizeof want), 0);
  array_free(&a);
}

Test(npy, reads_numpy_ints) {
  Array a;
  read_ok("i4_4.npy", &a);
  cr_assert_eq(a.et, EL_I32);
  check_shape(&a, 1, (int64_t[]){4});
  int32_t wi[4] = {0, -1, 2147483647, -2147483647 - 1};
  cr_assert_eq(memcmp(a.data, wi, sizeof wi), 0);
  array_free(&a);

  read_ok("i8_2x2.npy", &a);
  cr_assert_eq(a.et, EL_I64);
  check_shape(&a, 2, (int64_t[]){2, 2});
  int64_t wl[4] = {5, -6, (int64_t)1 << 40, -((int64_t)1 << 33)};
  cr_assert_eq(memcmp(a.data, wl, sizeof wl), 0);
  array_free(&a);

  read_ok("u1_2x2x2.npy", &a);
  cr_assert_eq(a.et, EL_U8);
  check_shape(&a, 3, (int64_t[]){2, 2, 2});
  for (int i = 0; i < 8; i++) cr_assert_eq(((uint8_t *)a.data)[i], i * 30);
  array_free(&a);
}

Test(npy, reads_scalar_empty_and_versions) {
  Array a;
  read_ok("f4_scalar.npy", &a);
  cr_assert_eq(a.shape.rank, 0);
  cr_assert_eq(((float *)a.data)[0], 42.5f);
  array_free(&a);

  read_ok("f4_0x3.npy", &a);
  check_shape(&a, 2, (int64_t[]){0, 3});
  array_free(&a);

  read_ok("f4_v2.npy", &a);
  check_shape(&a, 1, (int64_t[]){3});
  cr_assert_eq(((float *)a.data)[2], 3.0f);
  array_free(&a);

  read_ok("i4_v3.npy", &a);
  check_shape(&a, 2, (int64_t[]){1, 2});
  cr_assert_eq(((int32_t *)a.data)[1], 8);
  array_free(&a);
}

/* What we write must be exactly what numpy writes for the same array. */
static void rewrite_identical(const char *name) {
  Array a;
  read_ok(name, &a);
  char *dir = util_tmpdir(), out[512], gold[512];
  snprintf(out, sizeof out, "%s/x.npy", dir);
  snprintf(gold, sizeof gold, GOLD "%s", name);
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, out, a.et, &a.shape, a.data), 0, "%s", d.buf ? d.buf : "");
  size_t n1, n2;
  uint8_t *b1 = slurp(out, &n1), *b2 = slurp(gold, &n2);
  cr_assert_eq(n1, n2, "%s: wrote %zu bytes, numpy wrote %zu", name, n1, n2);
  cr_assert_eq(memcmp(b1, b2, n1), 0, "%s: bytes differ from numpy's", name);
  free(b1);
  free(b2);
  array_free(&a);
  diag_free(&d);
  unlink(out);
  rmdir(dir);
  free(dir);
}

Test(npy, writes_like_numpy) {
  rewrite_identical("f4_2x3.npy");
  rewrite_identical("i4_4.npy");
  rewrite_identical("i8_2x2.npy");
  rewrite_identical("u1_2x2x2.npy");
  rewrite_identical("f4_scalar.npy");
  rewrite_identical("f4_0x3.npy");
}

Test(npy, roundtrip_rank8) {
  Shape s = {8, {2, 1, 3, 1, 2, 1, 1, 2}};
  float x[24];
  util_fill(x, 24, 7, -5, 5);
  char *dir = util_tmpdir(), path[512];
  snprintf(path, sizeof path, "%s/r8.npy", dir);
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, path, EL_F32, &s, x), 0);
  Array a;
  cr_assert_eq(npy_read(&d, path, &a), 0);
  cr_assert(shape_eq(&a.shape, &s));
  cr_assert_eq(memcmp(a.data, x, sizeof x), 0);
  array_free(&a);
  diag_free(&d);
  unlink(path);
  rmdir(dir);
  free(dir);
}

/* Builds a v1.0 .npy in memory from a header text and nbytes of data. */
static uint8_t *make_npy(const char *hdr, size_t nbytes, size_t *n) {
  size_t hl = strlen(hdr);
  *n = 10 + hl + nbytes;
  uint8_t *b = calloc(1, *n + 1);
  memcpy(b, "\x93NUMPY\x01\x00", 8);
  b[8] = (uint8_t)(hl & 0xff);
  b[9] = (uint8_t)(hl >> 8);
  memcpy(b + 10, hdr, hl);
  return b;
}

/* Reading must fail with an error whose text contains `want`. */
static void expect_bad(const uint8_t *b, size_t n, const char *want) {
  Diag d;
  diag_init(&d);
  Array a;
  int r = npy_read_mem(&d, "bad.npy", b, n, &a);
  cr_assert_eq(r, -1, "accepted a bad file (want '%s')", want);
  cr_assert_eq(d.nerrors, 1);
  cr_assert(strstr(d.buf, "bad.npy: error: "), "%s", d.buf);
  cr_assert(strstr(d.buf, want), "message '%s' lacks '%s'", d.buf, want);
  cr_assert_null(a.data);
  diag_free(&d);
}

static void expect_hdr(const char *hdr, size_t nbytes, const char *want) {
  size_t n;
  uint8_t *b = make_npy(hdr, nbytes, &n);
  expect_bad(b, n, want);
  free(b);
}

Test(npy, good_handmade_header) {
  size_t n;
  uint8_t *b = make_npy("{\"shape\":(3,),\"descr\":\"<u1\",\"fortran_order\":False}\n", 3, &n);
  b[n - 1] = 9;
  Diag d;
  diag_init(&d);
  Array a;
  cr_assert_eq(npy_read_mem(&d, "m.npy", b, n, &a), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(a.et, EL_U8);
  cr_assert_eq(a.shape.dim[0], 3);
  cr_assert_eq(((uint8_t *)a.data)[2], 9);
  array_free(&a);
  diag_free(&d);
  free(b);
}

Test(npy, hostile_sizes) {
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }", 12,
             "truncated: header says 1000 elements of f4 (4000 bytes) but 12 bytes follow");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12, "trailing garbage");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 1000000000000), }",
             0, "too many elements");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 0,
             "dimension too large");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -2), }", 0,
             "negative dimension -2");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4,
             "more than 8 dimensions");
}

Test(npy, hostile_dtypes) {
  expect_hdr("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", 8,
             "unsupported dtype '<f8'");
  expect_hdr("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", 4,
             "unsupported dtype '>f4'");
  expect_hdr("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, "fortran_order");
  size_t n;
  uint8_t *b = slurp(GOLD "f8_bad.npy", &n);
  expect_bad(b, n, "unsupported dtype '<f8'");
  free(b);
  b = slurp(GOLD "f4_fortran_bad.npy", &n);
  expect_bad(b, n, "fortran_order");
  free(b);
  b = slurp(GOLD "f4_be_bad.npy", &n);
  expect_bad(b, n, "unsupported dtype '>f4'");
  free(b);
}

Test(npy, hostile_headers) {
  expect_hdr("['descr', '<f4']", 0, "not a dict");
  expect_hdr("{'descr': '<f4', 'shape': (1,), }", 4, "lacks");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4, "unknown");
  expect_hdr("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4,
             "repeated");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", 4, "junk");
  expect_hdr("{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", 4, "header");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1,,), }", 4, "shape");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': 1, }", 4, "tuple");
  expect_hdr("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", 4, "True or False");
  expect_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4, "expected");
  expect_hdr("{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", 4, "expected ','");
}

Test(npy, hostile_preamble) {
  size_t n;
  uint8_t *b = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4, &n);
  b[8] = 0xff;   /* header length 0xff.. far past the end of the file */
  b[9] = 0xff;
  expect_bad(b, n, "header length 65535 is larger than");
  b[8] = 0x3c;
  b[9] = 0;
  b[1] = 'X';
  expect_bad(b, n, "bad magic");
  b[1] = 'N';
  b[6] = 9;
  expect_bad(b, n, "version 9");
  b[6] = 2;   /* v2 takes 4 length bytes: now the length is absurd */
  expect_bad(b, n, "header length");
  free(b);
  expect_bad((const uint8_t *)"\x93NUMPY", 6, "bad magic");
  expect_bad((const uint8_t *)"", 0, "bad magic");
  /* every prefix of a valid file is an error, not a crash */
  b = slurp(GOLD "f4_2x3.npy", &n);
  for (size_t k = 0; k < n; k++) {
    Diag d;
    diag_init(&d);
    Array a;
    cr_assert_eq(npy_read_mem(&d, "p.npy", b, k, &a), -1, "prefix %zu accepted", k);
    diag_free(&d);
  }
  free(b);
}

Test(npy, missing_file) {
  Diag d;
  diag_init(&d);
  Array a;
  cr_assert_eq(npy_read(&d, "/nonexistent/x.npy", &a), -1);
  cr_assert(strstr(d.buf, "/nonexistent/x.npy: error: cannot open"), "%s", d.buf);
  diag_free(&d);
}

Test(npy, failed_write_keeps_previous_file) {
  char *dir = util_tmpdir(), path[512], tmp[600];
  snprintf(path, sizeof path, "%s/keep.npy", dir);
  Shape s = {1, {3}};
  float old[3] = {1, 2, 3}, neu[3] = {4, 5, 6};
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, path, EL_F32, &s, old), 0);
  /* a directory where the temporary file must go makes the write fail */
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  cr_assert_eq(mkdir(tmp, 0700), 0);
  cr_assert_eq(npy_write(&d, path, EL_F32, &s, neu), -1);
  cr_assert(strstr(d.buf, "cannot create temporary file"), "%s", d.buf);
  Array a;
  cr_assert_eq(npy_read(&d, path, &a), 0);
  cr_assert_eq(memcmp(a.data, old, sizeof old), 0);
  array_free(&a);
  rmdir(tmp);
  /* a directory at the target: rename fails, the temporary is removed */
  char target[600];
  snprintf(target, sizeof target, "%s/sub.npy", dir);
  cr_assert_eq(mkdir(target, 0700), 0);
  cr_assert_eq(npy_write(&d, target, EL_F32, &s, neu), -1);
  char ttmp[700];
  snprintf(ttmp, sizeof ttmp, "%s.tmp.%ld", target, (long)getpid());
  cr_assert_neq(access(ttmp, F_OK), 0, "temporary left behind");
  rmdir(target);
  /* success replaces the file and leaves no temporary */
  cr_assert_eq(npy_write(&d, path, EL_F32, &s, neu), 0);
  cr_assert_neq(access(tmp, F_OK), 0);
  cr_assert_eq(npy_read(&d, path, &a), 0);
  cr_assert_eq(memcmp(a.data, neu, sizeof neu), 0);
  array_free(&a);
  diag_free(&d);
  unlink(path);
  rmdir(dir);
  free(dir);
}
