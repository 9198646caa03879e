/* test_ckpt.c - model state, checkpoints (npy directories and safetensors
 * files: round trips, load checks naming the param, atomic saves that leave
 * the previous checkpoint intact on failure) and hostile safetensors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "util.h"

#define GOLD NNDC_SRC_DIR "/tests/golden/st/"

/* A graph with only leaves: params h1.W f32[4,3] (glorot), h1.b f32[3]
 * (full 0.5), out.W f32[3,2] (he_normal) and two optimizer states. */
typedef struct Model {
  Arena a;
  Graph g;
} Model;

static Node *add_param(Graph *g, const char *name, int rank, const int64_t *dims, InitKind k, double a) {
  Shape s = {rank, {0}};
  for (int i = 0; i < rank; i++) s.dim[i] = dims[i];
  Node *n = ir_leaf(g, (Loc){0}, OP_PARAM, DT_F32, &s, name);
  n->init.kind = k;
  n->init.a = a;
  g->params[g->nparams].name = n->name;
  g->params[g->nparams++].node = n;
  return n;
}

static void model_init(Model *m) {
  arena_init(&m->a);
  graph_init(&m->g, &m->a);
  Graph *g = &m->g;
  g->params = arena_alloc(&m->a, 4 * sizeof(Named));
  g->states = arena_alloc(&m->a, 2 * sizeof(Named));
  add_param(g, "h1.W", 2, (int64_t[]){4, 3}, INIT_GLOROT_UNIFORM, 0);
  add_param(g, "h1.b", 1, (int64_t[]){3}, INIT_FULL, 0.5);
  add_param(g, "out.W", 2, (int64_t[]){3, 2}, INIT_HE_NORMAL, 0);
  Shape s = {2, {4, 3}};
  for (int i = 0; i < 2; i++) {
    g->states[i].node = ir_leaf(g, (Loc){0}, OP_STATE, DT_F32, &s, i ? "h1.W.v" : "h1.W.m");
    g->states[i].name = g->states[i].node->name;
    g->nstates++;
  }
}

static void model_free(Model *m) { arena_free(&m->a); }

static int64_t pnumel(const Graph *g, int i) { return shape_numel(&g->params[i].node->shape); }

Test(state, init_fills_params_and_zeroes_states) {
  Model m;
  model_init(&m);
  Diag d;
  diag_init(&d);
  ModelState ms, ms2;
  cr_assert_eq(model_state_init(&d, &m.g, &ms, 42), 0);
  cr_assert_eq(ms.step, 0);
  for (int i = 0; i < m.g.nparams; i++) {
    float want[12];
    rng_init_param(m.g.params[i].node, 42, want);
    cr_assert_eq(memcmp(ms.params[i], want, (size_t)pnumel(&m.g, i) * 4), 0, "param %d", i);
  }
  for (int k = 0; k < 3; k++) cr_assert_eq(ms.params[1][k], 0.5f);
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 12; k++) cr_assert_eq(ms.states[i][k], 0.0f);
  cr_assert_eq(model_state_init(&d, &m.g, &ms2, 43), 0);
  cr_assert_neq(memcmp(ms.params[0], ms2.params[0], 12 * 4), 0, "seed ignored");
  model_state_free(&m.g, &ms);
  model_state_free(&m.g, &ms2);
  cr_assert_null(ms.params);
  diag_free(&d);
  model_free(&m);
}

/* Fills every param with distinct values derived from tag. */
static void fill_params(const Graph *g, float **p, int tag) {
  for (int i = 0; i < g->nparams; i++)
    for (int64_t k = 0; k < pnumel(g, i); k++) p[i][k] = (float)(tag * 1000 + i * 100 + k) + 0.25f;
}

static void check_params(const Graph *g, float **p, int tag) {
  for (int i = 0; i < g->nparams; i++)
    for (int64_t k = 0; k < pnumel(g, i); k++)
      cr_assert_eq(p[i][k], (float)(tag * 1000 + i * 100 + k) + 0.25f, "param %d elem %lld", i, (long long)k);
}

static void roundtrip(const char *name, const char *listing) {
  Model m;
  model_init(&m);
  Diag d;
  diag_init(&d);
  ModelState a, b;
  cr_assert_eq(model_state_init(&d, &m.g, &a, 1), 0);
  cr_assert_eq(model_state_init(&d, &m.g, &b, 2), 0);
  fill_params(&m.g, a.params, 1);
  char *dir = util_tmpdir(), path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert_eq(ckpt_save(&d, path, &m.g, a.params), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(ckpt_load(&d, path, &m.g, b.params), 0, "%s", d.buf ? d.buf : "");
  check_params(&m.g, b.params, 1);
  /* saving again replaces the checkpoint and leaves nothing else behind */
  fill_params(&m.g, a.params, 2);
  cr_assert_eq(ckpt_save(&d, path, &m.g, a.params), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(ckpt_load(&d, path, &m.g, b.params), 0);
  check_params(&m.g, b.params, 2);
  cr_assert_eq(d.nerrors + d.nwarnings, 0, "%s", d.buf ? d.buf : "");
  char cmd[700];
  snprintf(cmd, sizeof cmd, "ls -A %s", dir);
  int st;
  char *out = util_run(cmd, &st);
  cr_assert_str_eq(out, listing, "left: %s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  free(util_run(cmd, &st));
  free(dir);
  model_state_free(&m.g, &a);
  model_state_free(&m.g, &b);
  diag_free(&d);
  model_free(&m);
}

Test(ckpt, roundtrip_dir) { roundtrip("ck/", "ck\n"); }

Test(ckpt, roundtrip_safetensors) { roundtrip("m.safetensors", "m.safetensors\n"); }

Test(ckpt, dir_holds_npy_per_param) {
  Model m;
  model_init(&m);
  Diag d;
  diag_init(&d);
  ModelState a;
  cr_assert_eq(model_state_init(&d, &m.g, &a, 1), 0);
  char *dir = util_tmpdir(), path[512];
  snprintf(path, sizeof path, "%s/ck", dir);
  cr_assert_eq(ckpt_save(&d, path, &m.g, a.params), 0);
  for (int i = 0; i < m.g.nparams; i++) {
    char f[600];
    snprintf(f, sizeof f, "%s/%s.npy", path, m.g.params[i].name);
    Array arr;
    cr_assert_eq(npy_read(&d, f, &arr), 0, "%s", d.buf ? d.buf : "");
    cr_assert_eq(arr.et, EL_F32);
    cr_assert(shape_eq(&arr.shape, &m.g.params[i].node->shape));
    cr_assert_eq(memcmp(arr.data, a.params[i], (size_t)pnumel(&m.g, i) * 4), 0);
    array_free(&arr);
  }
  char cmd[600];
  int st;
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  free(util_run(cmd, &st));
  free(dir);
  model_state_free(&m.g, &a);
  diag_free(&d);
  model_free(&m);
}

/* Load errors name the param; a failed load changes no buffer. */
static void load_errors(int st_format) {
  Model m;
  model_init(&m);
  Diag d;
  diag_init(&d);
  ModelState a, b;
  cr_assert_eq(model_state_init(&d, &m.g, &a, 1), 0);
  cr_assert_eq(model_state_init(&d, &m.g, &b, 1), 0);
  fill_params(&m.g, a.params, 3);
  fill_params(&m.g, b.params, 4);
  char *dir = util_tmpdir(), path[512];
  snprintf(path, sizeof path, st_format ? "%s/c.safetensors" : "%s/ck/", dir);
  /* a model whose h1.W is [10,3] and which lacks out.W, plus an extra */
  Model o;
  model_init(&o);
  o.g.params[0].node->shape.dim[0] = 10;
  o.g.params[2].name = "extra";
  o.g.params[2].node->name = "extra";
  float *ob[3];
  for (int i = 0; i < 3; i++) ob[i] = calloc(30, 4);
  cr_assert_eq(ckpt_save(&d, path, &o.g, ob), 0);
  cr_assert_eq(ckpt_load(&d, path, &m.g, b.params), -1);
  cr_assert_eq(d.nerrors, 2, "%s", d.buf);
  char want[700];
  snprintf(want, sizeof want, "checkpoint '%s': param 'h1.W' has shape f32[10,3], model wants f32[4,3]", path);
  cr_assert(strstr(d.buf, want), "%s", d.buf);
  snprintf(want, sizeof want, "checkpoint '%s': missing param 'out.W'", path);
  cr_assert(strstr(d.buf, want), "%s", d.buf);
  check_params(&m.g, b.params, 4);
  /* extra tensors only warn */
  diag_clear(&d);
  d.nerrors = d.nwarnings = 0;
  Model o2;
  model_init(&o2);
  add_param(&o2.g, "extra", 1, (int64_t[]){5}, INIT_ZEROS, 0);
  float *p2[4] = {a.params[0], a.params[1], a.params[2], ob[2]};
  cr_assert_eq(ckpt_save(&d, path, &o2.g, p2), 0);
  cr_assert_eq(ckpt_load(&d, path, &m.g, b.params), 0, "%s", d.buf);
  cr_assert_eq(d.nerrors, 0);
  cr_assert_eq(d.nwarnings, 1, "%s", d.buf);
  cr_assert(strstr(d.buf, "warning: checkpoint"), "%s", d.buf);
  cr_assert(strstr(d.buf, "'extra"), "%s", d.buf);
  check_params(&m.g, b.params, 3);
  model_free(&o2);
  for (int i = 0; i < 3; i++) free(ob[i]);
  char cmd[600];
  int st;
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  free(util_run(cmd, &st));
  free(dir);
  model_state_free(&m.g, &a);
  model_state_free(&m.g, &b);
  diag_free(&d);
  model_free(&o);
  model_free(&m);
}

Test(ckpt, load_errors_dir) { load_errors(0); }
Test(ckpt, load_errors_safetensors) { load_errors(1); }

Test(ckpt, load_wrong_dtype_and_missing_path) {
  Model m;
  model_init(&m);
  Diag d;
  diag_init(&d);
  ModelState a;
  cr_assert_eq(model_state_init(&d, &m.g, &a, 1), 0);
  char *dir = util_tmpdir(), path[512], f[600];
  snprintf(path, sizeof path, "%s/ck", dir);
  cr_assert_eq(ckpt_save(&d, path, &m.g, a.params), 0);
  snprintf(f, sizeof f, "%s/h1.b.npy", path);
  int32_t iv[3] = {1, 2, 3};
  cr_assert_eq(npy_write(&d, f, EL_I32, &m.g.params[1].node->shape, iv), 0);
  cr_assert_eq(ckpt_load(&d, path, &m.g, a.params), -1);
  cr_assert(strstr(d.buf, "param 'h1.b' has dtype i32, model wants f32"), "%s", d.buf);
  diag_clear(&d);
  snprintf(f, sizeof f, "%s/nothere", dir);
  cr_assert_eq(ckpt_load(&d, f, &m.g, a.params), -1);
  cr_assert(strstr(d.buf, "no such directory"), "%s", d.buf);
  diag_clear(&d);
  snprintf(f, sizeof f, "%s/nothere.safetensors", dir);
  cr_assert_eq(ckpt_load(&d, f, &m.g, a.params), -1);
  cr_assert(strstr(d.buf, "cannot open"), "%s", d.buf);
  char cmd[600];
  int st;
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  free(util_run(cmd, &st));
  free(dir);
  model_state_free(&m.g, &a);
  diag_free(&d);
  model_free(&m);
}

/* A failing save leaves the previous checkpoint readable and identical. */
static void failed_save_keeps_previous(int st_format) {
  Model m;
  model_init(&m);
  Diag d;
  diag_init(&d);
  ModelState a;
  cr_assert_eq(model_state_init(&d, &m.g, &a, 1), 0);
  fill_params(&m.g, a.params, 5);
  char *dir = util_tmpdir(), path[512], tmp[600];
  snprintf(path, sizeof path, st_format ? "%s/m.safetensors" : "%s/ck", dir);
  cr_assert_eq(ckpt_save(&d, path, &m.g, a.params), 0);
  char cmd[1200];
  int st;
  snprintf(cmd, sizeof cmd, "cd %s && find . -type f | sort | xargs md5sum", dir);
  char *before = util_run(cmd, &st);
  /* a regular file (or a directory, for the .safetensors temp file) where the temporary must go */
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  if (st_format) cr_assert_eq(mkdir(tmp, 0700), 0);
  else cr_assert_eq(util_write_file(tmp, "in the way"), 0);
  fill_params(&m.g, a.params, 6);
  cr_assert_eq(ckpt_save(&d, path, &m.g, a.params), -1);
  cr_assert_gt(d.nerrors, 0);
  if (st_format) rmdir(tmp);
  else unlink(tmp);
  char *after = util_run(cmd, &st);
  cr_assert_str_eq(after, before, "checkpoint changed by a failed save");
  ModelState b;
  cr_assert_eq(model_state_init(&d, &m.g, &b, 9), 0);
  cr_assert_eq(ckpt_load(&d, path, &m.g, b.params), 0);
  check_params(&m.g, b.params, 5);
  /* a parent that is a regular file: the save fails cleanly */
  char bad[700];
  snprintf(bad, sizeof bad, "%s/file", dir);
  cr_assert_eq(util_write_file(bad, "x"), 0);
  snprintf(bad, sizeof bad, st_format ? "%s/file/m.safetensors" : "%s/file/ck", dir);
  diag_clear(&d);
  cr_assert_eq(ckpt_save(&d, bad, &m.g, a.params), -1);
  cr_assert(strstr(d.buf, "error: "), "%s", d.buf);
  free(before);
  free(after);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  free(util_run(cmd, &st));
  free(dir);
  model_state_free(&m.g, &a);
  model_state_free(&m.g, &b);
  diag_free(&d);
  model_free(&m);
}

Test(ckpt, failed_save_keeps_previous_dir) { failed_save_keeps_previous(0); }
Test(ckpt, failed_save_keeps_previous_safetensors) { failed_save_keeps_previous(1); }

/* ------------------------------------------------------------ safetensors */

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

/* A set without tensors ("{}": a model without params, e.g. an imported
 * ONNX model whose weights are all inputs) writes and reads back. */
Test(st, empty_set_round_trips) {
  Diag d;
  diag_init(&d);
  char *dir = util_tmpdir(), path[4096];
  snprintf(path, sizeof path, "%s/empty.safetensors", dir);
  cr_assert_eq(st_write(&d, path, NULL, 0), 0, "%s", d.buf ? d.buf : "");
  NamedTensor *t = NULL;
  int n = -1;
  cr_assert_eq(st_read(&d, path, &t, &n), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(n, 0);
  st_free(t, n);
  cr_assert_neq(st_read_mem(&d, "x", (const uint8_t *)"\x02\0\0\0\0\0\0\0{{", 10, &t, &n), 0);
  diag_free(&d);
  free(dir);
}

Test(st, reads_golden) {
  Diag d;
  diag_init(&d);
  NamedTensor *t;
  int n;
  cr_assert_eq(st_read(&d, GOLD "golden.safetensors", &t, &n), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(n, 3);
  cr_assert_str_eq(t[0].name, "h1.W");
  cr_assert_str_eq(t[1].name, "h1.b");
  cr_assert_str_eq(t[2].name, "out\xc3\xa9.s");
  cr_assert_eq(t[0].shape.rank, 2);
  cr_assert_eq(t[0].shape.dim[1], 3);
  for (int k = 0; k < 6; k++) cr_assert_eq(t[0].data[k], k * 0.5f - 1);
  cr_assert_eq(t[1].data[0], 3.25f);
  cr_assert_eq(t[1].data[2], 7.0f);
  cr_assert_eq(t[2].shape.rank, 0);
  cr_assert_eq(t[2].data[0], 2.5f);
  st_free(t, n);
  diag_free(&d);
}

Test(st, write_layout) {
  float w[6] = {1, 2, 3, 4, 5, 6}, b[2] = {-1, -2};
  NamedTensor t[2] = {{"z\"q", {2, {3, 2}}, w}, {"a", {1, {2}}, b}};
  char *dir = util_tmpdir(), path[512];
  snprintf(path, sizeof path, "%s/x.safetensors", dir);
  Diag d;
  diag_init(&d);
  cr_assert_eq(st_write(&d, path, t, 2), 0);
  size_t n;
  uint8_t *buf = slurp(path, &n);
  uint64_t hl = 0;
  for (int k = 7; k >= 0; k--) hl = hl << 8 | buf[k];
  cr_assert_eq(hl % 8, 0);
  cr_assert_eq(n, 8 + hl + 32);
  cr_assert_eq(memcmp(buf + 8 + hl, w, 24), 0, "tensors in the given order, contiguous");
  cr_assert_eq(memcmp(buf + 8 + hl + 24, b, 8), 0);
  const char *want = "{\"z\\\"q\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}}";
  cr_assert_eq(memcmp(buf + 8, want, strlen(want)), 0, "%.*s", (int)hl, buf + 8);
  NamedTensor *r;
  int nr;
  cr_assert_eq(st_read(&d, path, &r, &nr), 0);
  cr_assert_eq(nr, 2);
  cr_assert_str_eq(r[0].name, "z\"q");
  cr_assert_eq(memcmp(r[1].data, b, 8), 0);
  st_free(r, nr);
  free(buf);
  unlink(path);
  rmdir(dir);
  free(dir);
  diag_free(&d);
}

/* A safetensors file from a header text and nbytes of data. */
static uint8_t *make_st(const char *hdr, size_t nbytes, size_t *n) {
  size_t hl = strlen(hdr);
  *n = 8 + hl + nbytes;
  uint8_t *b = calloc(1, *n + 1);
  for (int k = 0; k < 8; k++) b[k] = (uint8_t)((uint64_t)hl >> (8 * k));
  memcpy(b + 8, hdr, hl);
  return b;
}

static void st_bad_buf(const uint8_t *b, size_t n, const char *want) {
  Diag d;
  diag_init(&d);
  NamedTensor *t;
  int nt;
  cr_assert_eq(st_read_mem(&d, "bad.st", b, n, &t, &nt), -1, "accepted (want '%s')", want);
  cr_assert_geq(d.nerrors, 1);
  cr_assert(strstr(d.buf, "bad.st: error: "), "%s", d.buf);
  cr_assert(strstr(d.buf, want), "message '%s' lacks '%s'", d.buf, want);
  cr_assert_null(t);
  cr_assert_eq(nt, 0);
  diag_free(&d);
}

static void st_bad(const char *hdr, size_t nbytes, const char *want) {
  size_t n;
  uint8_t *b = make_st(hdr, nbytes, &n);
  st_bad_buf(b, n, want);
  free(b);
}

#define T(name, off) "\"" name "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" off "}"

Test(st, hostile_offsets) {
  st_bad("{" T("a", "[0,8]") "," T("b", "[8,20]") "}", 16, "tensor 'b': data_offsets [8, 20] are outside the 16-byte");
  st_bad("{" T("a", "[0,8]") "," T("b", "[4,12]") "}", 12, "tensor 'b': data_offsets begin at 4, overlapping");
  st_bad("{" T("a", "[0,8]") "," T("b", "[0,8]") "}", 8, "overlapping");
  st_bad("{" T("a", "[0,8]") "," T("b", "[12,20]") "}", 20, "leaving a gap");
  st_bad("{" T("a", "[0,8]") "}", 12, "the data section has 12 bytes but the tensors use 8");
  st_bad("{" T("a", "[0,12]") "}", 12, "span 12 bytes but its shape needs 8");
  st_bad("{" T("a", "[8,0]") "}", 8, "outside");
  st_bad("{" T("a", "[18446744073709551615,3]") "}", 8, "integer too large");
  st_bad("{" T("a", "[9223372036854775799,9223372036854775807]") "}", 8, "outside");
  st_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,0]}}", 0,
         "too many elements");
  st_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "non-negative integer");
  st_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "more than 8");
  st_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,4]}}", 4, "fraction");
}

Test(st, hostile_header) {
  size_t n;
  uint8_t *b = make_st("{}", 0, &n);
  b[7] = 0x7f;   /* absurd header length */
  st_bad_buf(b, n, "header length 9151314442816847874 is larger than the 2 bytes");
  b[7] = 0;
  b[0] = 3;
  st_bad_buf(b, n, "header length 3");
  free(b);
  st_bad_buf((const uint8_t *)"\x02\0\0\0", 4, "shorter than its 8-byte header length");
  st_bad("{" T("a", "[0,8]") "," T("a", "[8,16]") "}", 16, "tensor 'a' appears twice");
  st_bad("{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "tensor 'w' has dtype F16; only F32");
  st_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0, "lacks");
  st_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unknown");
  st_bad("{" T("a", "[0,8]") "} x", 8, "junk");
  st_bad("{" T("a", "[0,8]"), 8, "expected '}'");
  st_bad("[]", 0, "expected '{'");
  st_bad("{\"a\":", 0, "expected '{'");
  st_bad("{\"a\\q\":1}", 0, "bad escape");
  st_bad("{\"a\\ud800\":1}", 0, "surrogate");
  st_bad("{\"a\\u00", 0, "\\u escape");
  st_bad("{\"a", 0, "unterminated");
  st_bad("{\"a\x01\":1}", 0, "control character");
  st_bad("{\"__metadata__\":{\"a\":[1,{\"b\":tru}]}}", 0, "unexpected character");
  char deep[300];
  size_t k = (size_t)snprintf(deep, sizeof deep, "{\"__metadata__\":");
  for (int i = 0; i < 100; i++) deep[k++] = '[';
  deep[k] = 0;
  st_bad(deep, 0, "nested too deeply");
}

Test(st, accepts_odd_but_valid_json) {
  size_t n;
  uint8_t *b = make_st(" {\n \"__metadata__\" : {\"x\": [1, -2.5e3, true, null, {\"y\": \"\\u00e9\\n\"}]},"
                       "\"\\u0041\\/b\" : { \"data_offsets\" : [ 0 , 8 ] , \"shape\" : [ 2 ] , \"dtype\" : \"F32\" } ,"
                       "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[8,8]} }  ", 8, &n);
  float v[2] = {1.5f, -3};
  memcpy(b + n - 8, v, 8);
  Diag d;
  diag_init(&d);
  NamedTensor *t;
  int nt;
  cr_assert_eq(st_read_mem(&d, "ok.st", b, n, &t, &nt), 0, "%s", d.buf ? d.buf : "");
  cr_assert_eq(nt, 2);
  cr_assert_str_eq(t[0].name, "A/b");
  cr_assert_eq(t[0].data[1], -3.0f);
  cr_assert_eq(t[1].shape.dim[0], 0);
  st_free(t, nt);
  /* every prefix is an error, never a crash */
  for (size_t k = 0; k < n; k++) {
    cr_assert_eq(st_read_mem(&d, "p.st", b, k, &t, &nt), -1, "prefix %zu accepted", k);
  }
  diag_free(&d);
  free(b);
}
