/* test_gemm.c - the tiled dense kernels (codegen/gemm.c, codegen/conv.c)
 * against the reference interpreter: matmul on odd and aligned sizes (tile
 * remainders in rows and columns, more than one k block, batches with a
 * shared right operand, transposed operands), convolution and both of its
 * gradients over strides, paddings and kernel shapes (including the tile
 * fallbacks for wide kernels), thread-count independence, and the
 * vectorized micro-kernel in the optimized LLVM IR. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "codegen/codegen.h"
#include "codegen/target.h"
#include "tests/util.h"

typedef UtilGraph T;

static Shape shp(int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  Shape s = {rank, {d0, d1, d2, d3}};
  return s;
}

static Node *in(T *t, Shape s) {
  char name[32];
  snprintf(name, sizeof name, "l%d", t->g.nnodes);
  return ir_leaf(&t->g, (Loc){0}, OP_INPUT, DT_F32, &s, name);
}

static Node *op(T *t, Op o, Node *a, Node *b, const Attr *at) {
  Node *x[2] = {a, b};
  Node *n = ir_op(&t->g, &t->d, (Loc){0}, o, x, b ? 2 : 1, at);
  cr_assert(n, "ir_op %s failed: %s", op_info[o].name, t->d.buf ? t->d.buf : "");
  return n;
}

static Attr ai(int64_t i0, int64_t i1) {
  Attr a;
  memset(&a, 0, sizeof a);
  a.i[0] = i0;
  a.i[1] = i1;
  return a;
}

static Node *mm(T *t, int64_t M, int64_t K, int64_t N) {
  return op(t, OP_MATMUL, in(t, shp(2, M, K, 0, 0)), in(t, shp(2, K, N, 0, 0)), NULL);
}

/* Runs roots on the interpreter and on the JIT with `threads` threads and
 * compares every root within tol; returns the JIT values (malloc'd copies,
 * one per root) when keep is set. */
static float **check_t(T *t, Node **roots, int nroots, double tol, int threads, int keep) {
  Interp it;
  interp_init(&it, &t->g);
  uint8_t *want = calloc((size_t)t->g.nnodes + 1, 1);
  ir_mark_deps(&t->g, roots, nroots, want);
  JitProgram *p = jit_compile(&t->d, &t->g, roots, nroots, threads, 0);
  cr_assert(p, "jit_compile failed: %s", t->d.buf ? t->d.buf : "");
  float **data = calloc((size_t)t->g.nnodes + 1, sizeof *data);
  for (int i = 0; i < t->g.nnodes; i++) {
    const Node *n = t->g.nodes[i];
    if (n->op != OP_INPUT) continue;
    int64_t cnt = shape_numel(&n->shape);
    data[i] = malloc((size_t)(cnt ? cnt : 1) * 4);
    util_fill(data[i], cnt, 11 + (uint64_t)i, -1, 1);
    it.val[i] = data[i];
    jit_bind(p, n, data[i]);
  }
  RunCtx ctx = {.seed = 1, .step = 1};
  cr_assert_eq(interp_run(&it, &t->d, want, &ctx), 0, "interp: %s", t->d.buf ? t->d.buf : "");
  cr_assert_eq(jit_run(p, &t->d, &ctx), 0, "jit: %s", t->d.buf ? t->d.buf : "");
  float **out = keep ? calloc((size_t)nroots, sizeof *out) : NULL;
  for (int r = 0; r < nroots; r++) {
    const Node *n = roots[r];
    char label[96];
    snprintf(label, sizeof label, "%%%d %s [%lld,%lld,%lld,%lld]", n->id, op_info[n->op].name,
             (long long)n->shape.dim[0], (long long)n->shape.dim[1], (long long)n->shape.dim[2],
             (long long)n->shape.dim[3]);
    int64_t cnt = shape_numel(&n->shape);
    double e = util_compare(label, jit_value(p, n), it.val[n->id], cnt, tol, tol);
    cr_expect(e <= 1, "%s: JIT differs from the interpreter (worst %g)", label, e);
    if (keep) {
      out[r] = malloc((size_t)(cnt ? cnt : 1) * 4);
      memcpy(out[r], jit_value(p, n), (size_t)cnt * 4);
    }
  }
  jit_free(p);
  interp_free(&it);
  for (int i = 0; i < t->g.nnodes; i++) free(data[i]);
  free(data);
  free(want);
  return out;
}

static void check(T *t, Node **roots, int nroots, double tol) { check_t(t, roots, nroots, tol, 2, 0); }

/* Row and column remainders of the 6 x 32 tile, and tiny products. */
Test(gemm, odd_and_aligned_sizes) {
  T *t = util_graph_new();
  static const int64_t sz[][3] = {
    {1, 1, 1}, {1, 3, 17}, {3, 17, 31}, {17, 31, 3}, {31, 257, 1}, {64, 64, 64},
    {257, 31, 17}, {6, 1, 32}, {12, 64, 96}, {5, 9, 33}, {1, 257, 257}, {257, 1, 64},
  };
  Node *r[16];
  int n = 0;
  for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) r[n++] = mm(t, sz[i][0], sz[i][1], sz[i][2]);
  check(t, r, n, 2e-5);
  util_graph_free(t);
}

/* K above the k-block size (256): accumulators resume from C. */
Test(gemm, k_blocks) {
  T *t = util_graph_new();
  Node *r[4];
  int n = 0;
  r[n++] = mm(t, 7, 513, 33);
  r[n++] = mm(t, 12, 600, 64);
  r[n++] = mm(t, 3, 257, 5);
  check(t, r, n, 5e-5);
  util_graph_free(t);
}

/* More columns than one column block (8 tiles): blocks inside k blocks,
 * split across column chunks, the remainder tile with the last block, and
 * an epilogue (bias, relu) applied once per element after the last k block. */
Test(gemm, column_blocks) {
  T *t = util_graph_new();
  Node *r[8];
  int n = 0;
  r[n++] = mm(t, 7, 300, 300);
  r[n++] = mm(t, 40, 100, 530);
  r[n++] = op(t, OP_MATMUL, in(t, shp(3, 3, 13, 70, 0)), in(t, shp(2, 70, 290, 0, 0)), NULL);
  Node *x = mm(t, 13, 520, 400), *b = in(t, shp(1, 400, 0, 0, 0));
  r[n++] = op(t, OP_RELU, op(t, OP_ADD, x, b, NULL), NULL, NULL);
  check(t, r, n, 5e-5);
  util_graph_free(t);
}

/* [B,M,K]@[B,K,N] and [B,M,K]@[K,N] (the right operand shared). */
Test(gemm, batched) {
  T *t = util_graph_new();
  Node *r[4];
  int n = 0;
  r[n++] = op(t, OP_MATMUL, in(t, shp(3, 3, 17, 31, 0)), in(t, shp(3, 3, 31, 16, 0)), NULL);
  r[n++] = op(t, OP_MATMUL, in(t, shp(3, 2, 7, 300, 0)), in(t, shp(2, 300, 33, 0, 0)), NULL);
  r[n++] = op(t, OP_MATMUL, in(t, shp(3, 4, 1, 3, 0)), in(t, shp(3, 4, 3, 1, 0)), NULL);
  check(t, r, n, 5e-5);
  util_graph_free(t);
}

/* The forms autodiff builds: transpose(a) @ b and a @ transpose(w). */
Test(gemm, transposed_operands) {
  T *t = util_graph_new();
  Attr p = ai(1, 0);
  Node *r[5];
  int n = 0;
  Node *x = in(t, shp(2, 64, 31, 0, 0)), *dy = in(t, shp(2, 64, 17, 0, 0)), *w = in(t, shp(2, 31, 17, 0, 0));
  r[n++] = op(t, OP_MATMUL, op(t, OP_TRANSPOSE, x, NULL, &p), dy, NULL);  /* [31,17] */
  r[n++] = op(t, OP_MATMUL, dy, op(t, OP_TRANSPOSE, w, NULL, &p), NULL);  /* [64,31] */
  Node *a = in(t, shp(2, 257, 3, 0, 0)), *b = in(t, shp(2, 33, 257, 0, 0));
  r[n++] = op(t, OP_MATMUL, op(t, OP_TRANSPOSE, a, NULL, &p), op(t, OP_TRANSPOSE, b, NULL, &p), NULL);
  Attr p3 = ai(0, 2);  /* batched: B's panels packed from its rows, the last one padded */
  p3.i[2] = 1;
  Node *q = in(t, shp(3, 3, 40, 31, 0)), *k = in(t, shp(3, 3, 45, 31, 0));
  r[n++] = op(t, OP_MATMUL, q, op(t, OP_TRANSPOSE, k, NULL, &p3), NULL);
  check(t, r, n, 5e-5);
  util_graph_free(t);
}

/* The sum order of each element does not depend on the thread split. */
Test(gemm, threads_identical) {
  T *t = util_graph_new();
  Node *r[2] = {mm(t, 100, 300, 70), NULL};
  Node *x = in(t, shp(4, 3, 2, 11, 13)), *w = in(t, shp(4, 4, 2, 3, 3));
  Attr c = ai(1, 1);
  r[1] = op(t, OP_CONV2D, x, w, &c);
  float **a = check_t(t, r, 2, 5e-5, 1, 1), **b = check_t(t, r, 2, 5e-5, 2, 1);
  for (int i = 0; i < 2; i++) {
    cr_expect(memcmp(a[i], b[i], (size_t)shape_numel(&r[i]->shape) * 4) == 0, "root %d differs by thread count", i);
    free(a[i]);
    free(b[i]);
  }
  free(a);
  free(b);
  util_graph_free(t);
}

/* conv2d and its gradients for x [N,C,H,W], w [O,C/groups,KH,KW], attrs c. */
static void conv_case_at(T *t, Node **r, int *n, Shape xs, Shape ws, Attr c) {
  Node *x = in(t, xs), *w = in(t, ws);
  Node *y = op(t, OP_CONV2D, x, w, &c);
  r[(*n)++] = y;
  Node *dy = in(t, y->shape);
  Attr bx = c, bw = c;
  bx.shape = x->shape;
  bw.shape = w->shape;
  r[(*n)++] = op(t, OP_CONV2D_BWD_X, dy, w, &bx);
  r[(*n)++] = op(t, OP_CONV2D_BWD_W, x, dy, &bw);
}

/* The same for the legacy attrs: stride and padding only. */
static void conv_case(T *t, Node **r, int *n, Shape xs, Shape ws, int64_t S, int64_t P) {
  conv_case_at(t, r, n, xs, ws, ai(S, P));
}

/* Strides (h, w), paddings (h, w), dilations (h, w), groups. */
static Attr conv_at(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t g) {
  Attr a = ai(sh, ph);
  a.i[2] = sw, a.i[3] = pw, a.i[4] = dh, a.i[5] = dw, a.i[6] = g;
  return a;
}

/* conv_transpose2d(x [N,C_in,H,W], w [C_in,C_out/g,KH,KW]) as CONV2D_BWD_X
 * with output_padding (oph, opw), and its gradients: conv2d(dy, w) (x's rows
 * and more when output_padding >= stride) and conv2d_bwd_w(dy, x). */
static void convt_case(T *t, Node **r, int *n, Shape xs, Shape ws, Attr c, int64_t oph, int64_t opw) {
  Node *x = in(t, xs), *w = in(t, ws);
  int64_t opd[2] = {oph, opw};
  c.shape = shp(4, xs.dim[0], ws.dim[1] * c.i[6], 0, 0);
  for (int k = 0; k < 2; k++)
    c.shape.dim[2 + k] = (xs.dim[2 + k] - 1) * c.i[2 * k] - 2 * c.i[2 * k + 1] + c.i[4 + k] * (ws.dim[2 + k] - 1) + opd[k] + 1;
  Node *y = op(t, OP_CONV2D_BWD_X, x, w, &c);
  r[(*n)++] = y;
  Node *dy = in(t, y->shape);
  Attr bw = c;
  bw.shape = w->shape;
  r[(*n)++] = op(t, OP_CONV2D, dy, w, &c);
  r[(*n)++] = op(t, OP_CONV2D_BWD_W, dy, x, &bw);
}

/* Dilation, per-axis strides and paddings (the GEMM path), groups 2 and
 * depthwise (the direct kernels), at odd and vector-aligned sizes. */
Test(gemm, conv_dilation_groups) {
  T *t = util_graph_new();
  Node *r[48];
  int n = 0;
  conv_case_at(t, r, &n, shp(4, 2, 3, 13, 11), shp(4, 5, 3, 3, 3), conv_at(1, 1, 2, 2, 2, 2, 1));
  conv_case_at(t, r, &n, shp(4, 2, 3, 9, 17), shp(4, 4, 3, 3, 4), conv_at(2, 3, 1, 2, 1, 2, 1));
  conv_case_at(t, r, &n, shp(4, 2, 8, 16, 16), shp(4, 16, 8, 3, 3), conv_at(1, 2, 1, 0, 3, 1, 1));
  conv_case_at(t, r, &n, shp(4, 2, 4, 9, 11), shp(4, 6, 2, 3, 3), conv_at(2, 1, 1, 1, 1, 2, 2));
  conv_case_at(t, r, &n, shp(4, 2, 8, 16, 16), shp(4, 16, 4, 3, 3), conv_at(1, 1, 1, 1, 1, 1, 2));
  conv_case_at(t, r, &n, shp(4, 3, 5, 10, 13), shp(4, 5, 1, 3, 3), conv_at(1, 2, 1, 1, 2, 1, 5));   /* depthwise */
  conv_case_at(t, r, &n, shp(4, 2, 16, 16, 16), shp(4, 16, 1, 3, 3), conv_at(1, 1, 1, 1, 1, 1, 16));
  conv_case_at(t, r, &n, shp(4, 1, 3, 7, 9), shp(4, 6, 1, 2, 3), conv_at(2, 1, 0, 1, 1, 3, 3));   /* multiplier 2 */
  check(t, r, n, 5e-5);
  util_graph_free(t);
}

Test(gemm, conv_transpose2d) {
  T *t = util_graph_new();
  Node *r[32];
  int n = 0;
  convt_case(t, r, &n, shp(4, 2, 4, 5, 6), shp(4, 4, 3, 3, 3), conv_at(2, 2, 1, 1, 1, 1, 1), 1, 1);
  convt_case(t, r, &n, shp(4, 2, 4, 5, 5), shp(4, 4, 3, 3, 2), conv_at(1, 2, 0, 1, 1, 1, 2), 0, 1);
  convt_case(t, r, &n, shp(4, 2, 2, 4, 5), shp(4, 2, 3, 3, 2), conv_at(2, 2, 1, 1, 2, 2, 1), 1, 0);
  convt_case(t, r, &n, shp(4, 1, 2, 5, 4), shp(4, 2, 3, 3, 2), conv_at(1, 1, 1, 1, 2, 2, 1), 1, 1);
  convt_case(t, r, &n, shp(4, 2, 16, 8, 8), shp(4, 16, 8, 4, 4), conv_at(2, 2, 1, 1, 1, 1, 1), 0, 0);
  convt_case(t, r, &n, shp(4, 2, 8, 7, 7), shp(4, 8, 1, 3, 3), conv_at(2, 2, 1, 1, 1, 1, 8), 1, 1);  /* depthwise */
  check(t, r, n, 5e-5);
  util_graph_free(t);
}

Test(gemm, conv_stride_padding) {
  T *t = util_graph_new();
  Node *r[32];
  int n = 0;
  conv_case(t, r, &n, shp(4, 2, 3, 9, 11), shp(4, 5, 3, 3, 3), 1, 0);
  conv_case(t, r, &n, shp(4, 2, 3, 9, 11), shp(4, 5, 3, 3, 3), 2, 1);
  conv_case(t, r, &n, shp(4, 3, 2, 7, 8), shp(4, 4, 2, 3, 2), 1, 2);   /* padding > kernel - 1 */
  conv_case(t, r, &n, shp(4, 1, 3, 13, 10), shp(4, 2, 3, 4, 3), 3, 0);  /* stride > 1, uneven */
  conv_case(t, r, &n, shp(4, 2, 1, 28, 28), shp(4, 6, 1, 5, 5), 1, 0);  /* LeNet's first layer */
  conv_case(t, r, &n, shp(4, 1, 2, 5, 5), shp(4, 3, 2, 5, 5), 1, 0);    /* 1x1 output */
  check(t, r, n, 5e-5);
  util_graph_free(t);
}

/* Kernels wider than the 32-accumulator tile of CONV2D_BWD_W. */
Test(gemm, conv_wide_kernels) {
  T *t = util_graph_new();
  Node *r[16];
  int n = 0;
  conv_case(t, r, &n, shp(4, 2, 2, 9, 10), shp(4, 3, 2, 7, 6), 1, 1);    /* 42 > 32: a tile per kh row */
  conv_case(t, r, &n, shp(4, 1, 2, 3, 40), shp(4, 2, 2, 2, 34), 1, 0);   /* KW > 32: one weight per tile */
  conv_case(t, r, &n, shp(4, 1, 1, 4, 36), shp(4, 2, 1, 1, 33), 2, 1);
  check(t, r, n, 5e-5);
  util_graph_free(t);
}

/* NNDC_DUMP_LLVM=1 shows vector multiply-adds (fmul+fadd contract, fused by
 * the backend) in the matmul micro-kernel. */
Test(gemm, vectorizes) {
  T *t = util_graph_new();
  Node *r = mm(t, 12, 40, 64);
  char path[] = "/tmp/nndc-gemm-dump-XXXXXX";
  int fd = mkstemp(path), saved = dup(2);
  cr_assert(fd >= 0);
  fflush(stderr);
  dup2(fd, 2);
  setenv("NNDC_DUMP_LLVM", "1", 1);
  JitProgram *p = jit_compile(&t->d, &t->g, &r, 1, 1, 0);
  unsetenv("NNDC_DUMP_LLVM");
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  cr_assert(p);
  jit_free(p);
  FILE *f = fdopen(fd, "r");
  fseek(f, 0, SEEK_SET);
  char line[4096];
  int fma = 0;
  char want[32];  /* the vectors of the target compiled for (NNDC_TARGET in the per-target runs) */
  snprintf(want, sizeof want, "<%d x float>", target_vector_width(target_current()));
  while (fgets(line, sizeof line, f)) fma += (strstr(line, "fmuladd") || strstr(line, "fadd")) && strstr(line, want);
  fclose(f);
  unlink(path);
  cr_expect(fma >= 6, "expected vector FMAs (%s) in the micro-kernel, found %d", want, fma);
  util_graph_free(t);
}
