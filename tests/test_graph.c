/* test_graph.c - the IR core: shape inference of every op and its error
 * messages, checked dims, the verifier, the text and DOT dumps, and the
 * counter-based RNG with the parameter initializers and fans. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

static Arena A;
static Graph G;
static Diag D;
static const Loc NOLOC = {0};

static void setup(void) {
  arena_init(&A);
  graph_init(&G, &A);
  diag_init(&D);
}
static void teardown(void) {
  diag_free(&D);
  arena_free(&A);
}
TestSuite(graph, .init = setup, .fini = teardown);
TestSuite(rng);

static Shape shp(int rank, const int64_t *dims) {
  Shape s = {rank, {0}};
  for (int k = 0; k < rank; k++) s.dim[k] = dims[k];
  return s;
}
#define SHAPE(...) shp((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define SCALAR shp(0, NULL)

static Node *in_f(Shape s) { return ir_leaf(&G, NOLOC, OP_INPUT, DT_F32, &s, "x"); }
static Node *in_i(Shape s) { return ir_leaf(&G, NOLOC, OP_INPUT, DT_I32, &s, "y"); }

static Attr attr(void) {
  Attr a;
  memset(&a, 0, sizeof a);
  return a;
}

static void expect(Node *n, DType dt, Shape s) {
  char b1[96], b2[96];
  cr_assert(n, "unexpected error: %s", D.buf ? D.buf : "");
  cr_assert(n->dt == dt && shape_eq(&n->shape, &s), "got %s, want %s", shape_str(&n->shape, n->dt, b1, 96),
            shape_str(&s, dt, b2, 96));
}

/* ir_op must fail and its message contain `msg`. */
static void expect_error(Node *n, const char *msg) {
  cr_assert_null(n);
  cr_assert(D.buf && strstr(D.buf, msg), "message lacks \"%s\":\n%s", msg, D.buf ? D.buf : "(none)");
  diag_clear(&D);
}

static Node *op1(Op op, Node *x, const Attr *a) { return ir_op(&G, &D, NOLOC, op, &x, 1, a); }
static Node *op2(Op op, Node *x, Node *y, const Attr *a) {
  Node *in[2] = {x, y};
  return ir_op(&G, &D, NOLOC, op, in, 2, a);
}

/* ------------------------------------------------------------ op table */

Test(graph, op_table) {
  cr_assert_str_eq(op_info[OP_MATMUL].name, "matmul");
  cr_assert_eq(op_info[OP_CONCAT].nin, -1);
  cr_assert(op_info[OP_PARAM].flags & F_LEAF);
  cr_assert(op_info[OP_OPT_ADAM].flags & F_UPDATE);
  cr_assert_str_eq(op_info[OP_CAST].name, "float");
}

Test(graph, shape_utils) {
  char b[64];
  Shape s = SHAPE(64, 784), out;
  cr_assert_str_eq(shape_str(&s, DT_F32, b, sizeof b), "f32[64,784]");
  Shape sc = SCALAR;
  cr_assert_str_eq(shape_str(&sc, DT_I32, b, sizeof b), "i32[]");
  cr_assert_eq(shape_numel(&sc), 1);
  cr_assert_eq(shape_numel(&s), 64 * 784);
  Shape a = SHAPE(4, 1, 3), c = SHAPE(5, 1);
  cr_assert(shape_broadcast(&a, &c, &out));
  Shape want = SHAPE(4, 5, 3);
  cr_assert(shape_eq(&out, &want));
  Shape bad = SHAPE(2, 4);
  cr_assert(!shape_broadcast(&a, &bad, &out));
  int64_t r = -7;
  cr_assert(dim_mul(1 << 20, 1 << 20, &r) && r == (int64_t)1 << 40);
  r = -7;
  cr_assert(!dim_mul((int64_t)1 << 21, (int64_t)1 << 20, &r) && r == -7);
  cr_assert(!dim_mul(INT64_MAX, 3, &r));
}

/* ---------------------------------------------------- shape inference */

Test(graph, elementwise_inference) {
  Node *x = in_f(SHAPE(64, 1, 3)), *y = in_f(SHAPE(5, 1)), *s = ir_scalar(&G, 2);
  expect(op2(OP_ADD, x, y, NULL), DT_F32, SHAPE(64, 5, 3));
  expect(op2(OP_MUL, s, y, NULL), DT_F32, SHAPE(5, 1));
  Node *l = in_i(SHAPE(5));
  expect(op2(OP_EQ, l, y, NULL), DT_F32, SHAPE(5, 5));   /* comparisons accept i32 */
  expect(op1(OP_CAST, l, NULL), DT_F32, SHAPE(5));
  Attr a = attr();
  a.f[0] = 3;
  expect(op1(OP_POW, x, &a), DT_F32, SHAPE(64, 1, 3));
  for (Op op = OP_NEG; op <= OP_SIGN; op++) expect(op1(op, y, &a), DT_F32, SHAPE(5, 1));
}

Test(graph, elementwise_errors) {
  Node *x = in_f(SHAPE(64, 256)), *y = in_f(SHAPE(10, 3)), *l = in_i(SHAPE(64));
  expect_error(op2(OP_ADD, x, y, NULL), "shape mismatch in 'add': f32[64,256] and f32[10,3] cannot broadcast");
  expect_error(op1(OP_RELU, l, NULL), "relu expects f32, got i32[64]");
  expect_error(op2(OP_SUB, x, l, NULL), "sub expects f32, got i32[64]");
  expect_error(ir_op(&G, &D, NOLOC, OP_ADD, &x, 1, NULL), "add expects 2 operands, got 1");
  Node *in3[3] = {x, x, x};
  expect_error(ir_op(&G, &D, NOLOC, OP_EXP, in3, 3, NULL), "exp expects 1 operand, got 3");
  cr_assert_eq(D.nerrors, 5);
}

Test(graph, reduction_inference) {
  Node *x = in_f(SHAPE(2, 3, 4));
  Attr a = attr();
  expect(op1(OP_SUM, x, &a), DT_F32, SCALAR);
  a.i[1] = 1;
  expect(op1(OP_MEAN, x, &a), DT_F32, SHAPE(1, 1, 1));
  a.i[0] = 0x5;
  expect(op1(OP_MAX, x, &a), DT_F32, SHAPE(1, 3, 1));
  a.i[1] = 0;
  expect(op1(OP_MAX, x, &a), DT_F32, SHAPE(3));
  a.i[0] = 0x8;
  expect_error(op1(OP_SUM, x, &a), "axis out of range for f32[2,3,4]");
  a = attr();
  a.i[0] = 1;
  expect(op1(OP_ARGMAX, x, &a), DT_I32, SHAPE(2, 4));
  a.i[0] = 3;
  expect_error(op1(OP_ARGMAX, x, &a), "axis 3 out of range for rank 3");
}

Test(graph, shape_op_inference) {
  Node *x = in_f(SHAPE(2, 3, 4));
  Attr a = attr();
  a.shape = SHAPE(6, 4);
  expect(op1(OP_RESHAPE, x, &a), DT_F32, SHAPE(6, 4));
  a.shape = SHAPE(5, 5);
  expect_error(op1(OP_RESHAPE, x, &a), "cannot reshape f32[2,3,4] to f32[5,5]");
  a.shape = SHAPE(5, 2, 3, 4);
  expect(op1(OP_EXPAND, x, &a), DT_F32, SHAPE(5, 2, 3, 4));
  a.shape = SHAPE(2, 3, 5);
  expect_error(op1(OP_EXPAND, x, &a), "f32[2,3,4] cannot broadcast to f32[2,3,5]");
  a = attr();
  a.i[0] = 2, a.i[1] = 0, a.i[2] = 1;
  expect(op1(OP_TRANSPOSE, x, &a), DT_F32, SHAPE(4, 2, 3));
  a.i[2] = 0;
  expect_error(op1(OP_TRANSPOSE, x, &a), "transpose: invalid permutation for f32[2,3,4]");
  a = attr();
  a.i[0] = 1, a.i[1] = 1, a.i[2] = 1;
  a.shape = SHAPE(1, 2, 3);
  Node *sl = op1(OP_SLICE, x, &a);
  expect(sl, DT_F32, SHAPE(1, 2, 3));
  a.shape = SHAPE(2, 3, 4);
  expect(op1(OP_SLICE_BWD, sl, &a), DT_F32, SHAPE(2, 3, 4));
  a.shape = SHAPE(1, 2, 4);
  expect_error(op1(OP_SLICE, x, &a), "f32[1,2,4] does not fit in f32[2,3,4]");
  Node *y = in_f(SHAPE(2, 5, 4)), *z = in_f(SHAPE(2, 5, 3));
  Node *cat[3] = {x, y, x};
  a = attr();
  a.i[0] = -2;
  Node *c = ir_op(&G, &D, NOLOC, OP_CONCAT, cat, 3, &a);
  expect(c, DT_F32, SHAPE(2, 11, 4));
  cr_assert_eq(c->a.i[0], 1);
  Node *bad[2] = {x, z};
  a.i[0] = 1;
  expect_error(ir_op(&G, &D, NOLOC, OP_CONCAT, bad, 2, &a),
               "shape mismatch in 'concat' along axis 1: f32[2,3,4] and f32[2,5,3]");
}

Test(graph, matmul_inference) {
  expect(op2(OP_MATMUL, in_f(SHAPE(64, 784)), in_f(SHAPE(784, 256)), NULL), DT_F32, SHAPE(64, 256));
  expect(op2(OP_MATMUL, in_f(SHAPE(7, 3, 4)), in_f(SHAPE(7, 4, 5)), NULL), DT_F32, SHAPE(7, 3, 5));
  expect(op2(OP_MATMUL, in_f(SHAPE(7, 3, 4)), in_f(SHAPE(4, 5)), NULL), DT_F32, SHAPE(7, 3, 5));
  expect_error(op2(OP_MATMUL, in_f(SHAPE(64, 784)), in_f(SHAPE(256, 10)), NULL),
               "matmul: inner dimensions differ: f32[64,784] @ f32[256,10]");
  expect_error(op2(OP_MATMUL, in_f(SHAPE(2, 3, 4)), in_f(SHAPE(3, 4, 5)), NULL),
               "matmul: batch dimensions differ: f32[2,3,4] @ f32[3,4,5]");
  expect_error(op2(OP_MATMUL, in_f(SHAPE(4)), in_f(SHAPE(4, 5)), NULL), "matmul: unsupported ranks: f32[4] @ f32[4,5]");
}

Test(graph, element_count_overflow) {
  Node *x = in_f(SHAPE((int64_t)1 << 21, 4)), *w = in_f(SHAPE(4, (int64_t)1 << 21));
  expect_error(op2(OP_MATMUL, x, w, NULL), "too large");
  Attr a = attr();
  a.shape = SHAPE((int64_t)1 << 21, (int64_t)1 << 21);
  expect_error(op1(OP_EXPAND, x, &a), "too large");
  a.shape = SHAPE(-1, 4);
  expect_error(op1(OP_RESHAPE, x, &a), "out of range");
}

Test(graph, neural_and_loss_inference) {
  Node *x = in_f(SHAPE(8, 10)), *l = in_i(SHAPE(8));
  Attr a = attr();
  a.i[0] = -1;
  Node *sm = op1(OP_SOFTMAX, x, &a);
  expect(sm, DT_F32, SHAPE(8, 10));
  cr_assert_eq(sm->a.i[0], 1);
  a.i[0] = 2;
  expect_error(op1(OP_LOG_SOFTMAX, x, &a), "axis 2 out of range for rank 2");
  a = attr();
  a.f[0] = 0.5;
  expect(op1(OP_DROPOUT, x, &a), DT_F32, SHAPE(8, 10));
  a.f[0] = 1.0;
  expect_error(op1(OP_DROPOUT, x, &a), "p must be in [0, 1)");
  a.shape = SHAPE(8, 10);
  expect(op1(OP_ONE_HOT, l, &a), DT_F32, SHAPE(8, 10));
  expect_error(op1(OP_ONE_HOT, x, &a), "one_hot expects i32, got f32[8,10]");
  expect(op2(OP_CROSS_ENTROPY, x, l, NULL), DT_F32, SCALAR);
  expect_error(op2(OP_CROSS_ENTROPY, x, in_i(SHAPE(9)), NULL),
               "expects logits f32[N,C] and labels i32[N], got f32[8,10] and i32[9]");
  expect_error(op2(OP_CROSS_ENTROPY, x, in_f(SHAPE(8)), NULL), "labels must be i32, got f32[8]");
  expect(op2(OP_MSE, x, in_f(SHAPE(8, 10)), NULL), DT_F32, SCALAR);
  expect_error(op2(OP_MSE, x, in_f(SHAPE(8, 1)), NULL), "shape mismatch in 'mse': f32[8,10] and f32[8,1]");
  expect(op2(OP_BCE_LOGITS, x, in_f(SHAPE(8, 10)), NULL), DT_F32, SCALAR);
}

Test(graph, conv_pool_inference) {
  Node *x = in_f(SHAPE(2, 3, 28, 28)), *w = in_f(SHAPE(6, 3, 5, 5));
  Attr a = attr();
  a.i[0] = 1;
  Node *y = op2(OP_CONV2D, x, w, &a);
  expect(y, DT_F32, SHAPE(2, 6, 24, 24));
  a.i[0] = 2, a.i[1] = 2;
  expect(op2(OP_CONV2D, x, w, &a), DT_F32, SHAPE(2, 6, 14, 14));
  expect_error(op2(OP_CONV2D, x, in_f(SHAPE(6, 4, 5, 5)), &a),
               "conv2d: expects x[N,C,H,W] and w[O,C,KH,KW], got f32[2,3,28,28] and f32[6,4,5,5]");
  a.i[1] = 1;
  expect_error(op2(OP_CONV2D, in_f(SHAPE(1, 3, 2, 2)), w, &a), "larger than padded input");
  a = attr();
  a.i[0] = 1;
  a.shape = x->shape;
  expect(op2(OP_CONV2D_BWD_X, y, w, &a), DT_F32, x->shape);
  a.shape = w->shape;
  expect(op2(OP_CONV2D_BWD_W, x, y, &a), DT_F32, w->shape);
  expect_error(op2(OP_CONV2D_BWD_W, x, x, &a), "does not match the convolution output f32[2,6,24,24]");
  /* the legacy attrs (stride, padding) are normalised to the full form */
  cr_expect(y->a.i[2] == 1 && y->a.i[3] == 0 && y->a.i[4] == 1 && y->a.i[5] == 1 && y->a.i[6] == 1);
  /* stride (2, 1), padding (1, 0), dilation (2, 3), groups 3 */
  Node *xg = in_f(SHAPE(2, 6, 11, 13)), *wg = in_f(SHAPE(9, 2, 3, 3));
  a = attr();
  a.i[0] = 2, a.i[1] = 1, a.i[2] = 1, a.i[3] = 0, a.i[4] = 2, a.i[5] = 3, a.i[6] = 3;
  Node *yg = op2(OP_CONV2D, xg, wg, &a);
  expect(yg, DT_F32, SHAPE(2, 9, 5, 7));
  expect_error(op2(OP_CONV2D, xg, in_f(SHAPE(9, 6, 3, 3)), &a), "w[O,C/3,KH,KW]");
  expect_error(op2(OP_CONV2D, xg, in_f(SHAPE(8, 2, 3, 3)), &a), "groups=3 must divide");
  a.i[5] = 7;
  expect_error(op2(OP_CONV2D, xg, wg, &a), "with dilation [2, 7] larger than padded input");
  a.i[5] = 3;
  /* conv_transpose2d's output_padding >= stride (below the dilation): dy
   * may stop output_padding / stride rows short of x's convolution */
  a.shape = SHAPE(2, 6, 11, 14);
  expect(op2(OP_CONV2D_BWD_X, yg, wg, &a), DT_F32, a.shape);
  a.shape = SHAPE(2, 6, 11, 15);
  expect(op2(OP_CONV2D_BWD_X, yg, wg, &a), DT_F32, a.shape);
  a.shape = SHAPE(2, 6, 11, 16);
  expect_error(op2(OP_CONV2D_BWD_X, yg, wg, &a), "does not match the convolution output f32[2,9,5,10]");
  a.shape = SHAPE(2, 6, 13, 13);
  expect_error(op2(OP_CONV2D_BWD_X, yg, wg, &a), "does not match the convolution output f32[2,9,6,7]");
  a = attr();
  a.i[0] = 2, a.i[1] = 2;
  Node *p = op1(OP_MAXPOOL2D, y, &a);
  expect(p, DT_F32, SHAPE(2, 6, 12, 12));
  a.i[0] = 3;
  expect(op1(OP_AVGPOOL2D, y, &a), DT_F32, SHAPE(2, 6, 11, 11));
  a.i[0] = 2;
  expect(op2(OP_MAXPOOL2D_BWD, y, p, &a), DT_F32, y->shape);
  a.shape = y->shape;
  expect(op1(OP_AVGPOOL2D_BWD, p, &a), DT_F32, y->shape);
  a.i[0] = 30;
  expect_error(op1(OP_MAXPOOL2D, y, &a), "maxpool2d: window 30 larger than input f32[2,6,24,24]");
  expect_error(op1(OP_MAXPOOL2D, in_f(SHAPE(4, 4)), &a), "maxpool2d expects x[N,C,H,W], got f32[4,4]");
}

Test(graph, update_and_leaf_inference) {
  Shape s = SHAPE(3, 4);
  Node *p = ir_leaf(&G, NOLOC, OP_PARAM, DT_F32, &s, "w");
  Node *m = ir_leaf(&G, NOLOC, OP_STATE, DT_F32, &s, "w.m");
  Node *in[4] = {p, in_f(s), m, m};
  expect(ir_op(&G, &D, NOLOC, OP_OPT_ADAM, in, 4, NULL), DT_F32, SCALAR);
  in[3] = in_f(SHAPE(4));
  expect_error(ir_op(&G, &D, NOLOC, OP_OPT_ADAM, in, 4, NULL), "operand f32[4] does not match parameter f32[3,4]");
  Node *c = ir_const(&G, NOLOC, &s, 1.5);
  expect(c, DT_F32, s);
  cr_assert_eq(c->a.f[0], 1.5);
  cr_assert_str_eq(p->name, "w");
  cr_assert_eq(p->id, 0);
  cr_assert_eq(G.nodes[c->id], c);
}

Test(graph, sum_to_and_shorthands) {
  Node *x = in_f(SHAPE(4, 5, 3));
  Shape to = SHAPE(5, 1);
  Node *r = ir_sum_to(&G, x, &to);
  expect(r, DT_F32, to);
  cr_assert_eq(r->op, OP_RESHAPE);
  cr_assert_eq(r->in[0]->op, OP_SUM);
  cr_assert_eq(r->in[0]->a.i[0], 0x5);   /* the added axis 0 and the stretched axis 2 */
  cr_assert_eq(ir_sum_to(&G, x, &x->shape), x);
  Shape s = SCALAR;
  expect(ir_sum_to(&G, x, &s), DT_F32, s);
  Shape e = SHAPE(2, 4, 5, 3);
  expect(ir_expand(&G, x, &e), DT_F32, e);
  expect(ir_bin(&G, OP_ADD, x, ir_scalar(&G, 1)), DT_F32, x->shape);
}

/* -------------------------------------------------------------- verify */

/* A small model: x @ W + b, relu, cross-entropy, with roles set. */
static Node *build_mlp(const Source *src) {
  Loc l1 = {src, 3, 5}, l2 = {src, 4, 9};
  Shape xs = SHAPE(4, 6), ws = SHAPE(6, 3), bs = SHAPE(3), ys = SHAPE(4);
  Node *x = ir_leaf(&G, l1, OP_INPUT, DT_F32, &xs, "x");
  Node *y = ir_leaf(&G, l1, OP_INPUT, DT_I32, &ys, "y");
  Node *w = ir_leaf(&G, l1, OP_PARAM, DT_F32, &ws, "h.W");
  w->init.kind = INIT_HE_NORMAL;
  Node *b = ir_leaf(&G, l1, OP_PARAM, DT_F32, &bs, "h.b");
  Node *mm = op2(OP_MATMUL, x, w, NULL);
  mm->loc = l2;
  Node *h = ir_un(&G, OP_RELU, ir_bin(&G, OP_ADD, mm, b));
  Node *loss = op2(OP_CROSS_ENTROPY, h, y, NULL);
  G.outputs = arena_alloc(&A, sizeof(Named));
  G.outputs[0] = (Named){"logits", h};
  G.noutputs = 1;
  G.loss = loss;
  return loss;
}

Test(graph, verifier_accepts_built_graphs) {
  build_mlp(NULL);
  Node *x = in_f(SHAPE(2, 3, 8, 8)), *w = in_f(SHAPE(4, 3, 3, 3));
  Attr a = attr();
  a.i[0] = 1, a.i[1] = 1;
  Node *y = op2(OP_CONV2D, x, w, &a);
  a.i[0] = 2, a.i[1] = 2;
  op1(OP_MAXPOOL2D, y, &a);
  cr_assert_eq(ir_verify(&G, &D), 0, "%s", D.buf ? D.buf : "");
}

Test(graph, verifier_rejects_broken_graphs) {
  Node *loss = build_mlp(NULL);
  Node *mm = G.nodes[4];
  cr_assert_eq(mm->op, OP_MATMUL);
  mm->shape.dim[1] = 7;                   /* wrong shape */
  cr_assert(ir_verify(&G, &D) >= 1);
  cr_assert(strstr(D.buf, "has type f32[4,7], its operands give f32[4,3]"), "%s", D.buf);
  mm->shape.dim[1] = 3;
  diag_clear(&D);
  cr_assert_eq(ir_verify(&G, &D), 0, "%s", D.buf ? D.buf : "");
  Node *tmp = mm->in[0];
  mm->in[0] = loss;                       /* operand after its user */
  cr_assert(ir_verify(&G, &D) >= 1);
  cr_assert(strstr(D.buf, "does not precede it"), "%s", D.buf);
  mm->in[0] = tmp;
  diag_clear(&D);
  mm->nin = 1;                            /* arity */
  cr_assert(ir_verify(&G, &D) >= 1);
  cr_assert(strstr(D.buf, "has 1 operands, expected 2"), "%s", D.buf);
  mm->nin = 2;
  diag_clear(&D);
  G.nodes[1]->dt = DT_F32;                /* labels no longer i32 */
  cr_assert(ir_verify(&G, &D) >= 1);
  cr_assert(strstr(D.buf, "labels must be i32"), "%s", D.buf);
}

/* --------------------------------------------------------------- print */

Test(graph, text_dump) {
  Source *src = diag_add_source(&D, "models/mlp.nnd", "a\nb\nc\nd\n", 8);
  build_mlp(src);
  char *s = ir_print(&G, &A);
  cr_assert(strstr(s, "%0 = input(\"x\") : f32[4,6]  # mlp.nnd:3:5\n"), "%s", s);
  cr_assert(strstr(s, "%1 = input(\"y\") : i32[4]"), "%s", s);
  cr_assert(strstr(s, "%2 = param(\"h.W\", he_normal) : f32[6,3]"), "%s", s);
  cr_assert(strstr(s, "%4 = matmul(%0, %2) : f32[4,3]  # mlp.nnd:4:9\n"), "%s", s);
  cr_assert(strstr(s, "%5 = add(%4, %3) : f32[4,3]"), "%s", s);
  cr_assert(strstr(s, "%7 = cross_entropy(%6, %1) : f32[]"), "%s", s);
  cr_assert(strstr(s, "output logits = %6\n"), "%s", s);
  cr_assert(strstr(s, "loss = %7\n"), "%s", s);
  Attr a = attr();
  a.i[0] = 1;
  op1(OP_SOFTMAX, G.nodes[6], &a);
  a.f[0] = 0.25;
  a.i[0] = 3;
  op1(OP_DROPOUT, G.nodes[6], &a);
  s = ir_print(&G, &A);
  cr_assert(strstr(s, "%8 = softmax(%6, axis=1) : f32[4,3]"), "%s", s);
  cr_assert(strstr(s, "%9 = dropout(%6, p=0.25, key=3) : f32[4,3]"), "%s", s);
}

Test(graph, dot_dump) {
  build_mlp(NULL);
  char *s = ir_print_dot(&G, &A);
  cr_assert(strncmp(s, "digraph", 7) == 0, "%s", s);
  cr_assert(strstr(s, "n0 -> n4;"), "%s", s);
  cr_assert(strstr(s, "n2 -> n4;"), "%s", s);
  cr_assert(strstr(s, "matmul\\nf32[4,3]"), "%s", s);
  int st;
  char *which = util_run("command -v dot", &st);
  free(which);
  if (st != 0) cr_skip_test("graphviz dot not installed");
  char *dir = util_tmpdir(), path[512], cmd[1200];
  snprintf(path, sizeof path, "%s/g.dot", dir);
  cr_assert_eq(util_write_file(path, s), 0);
  snprintf(cmd, sizeof cmd, "dot -Tsvg %s -o %s/g.svg", path, dir);
  char *out = util_run(cmd, &st);
  cr_assert_eq(st, 0, "dot rejected the graph: %s", out);
  free(out);
  free(dir);
}

/* ----------------------------------------------------------------- rng */

static Node *param(Arena *a, Graph *g, Shape s, InitKind k, double p0, double p1, const char *name) {
  Node *p = ir_leaf(g, NOLOC, OP_PARAM, DT_F32, &s, name);
  p->init = (Init){k, p0, p1};
  (void)a;
  return p;
}

static void stats(const float *x, int64_t n, double *mean, double *std, double *lo, double *hi) {
  double s = 0, s2 = 0;
  *lo = INFINITY, *hi = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
    if (x[i] < *lo) *lo = x[i];
    if (x[i] > *hi) *hi = x[i];
  }
  *mean = s / (double)n;
  *std = sqrt(s2 / (double)n - *mean * *mean);
}

Test(rng, determinism) {
  cr_assert_eq(rng_name_key("h1.W"), rng_name_key("h1.W"));
  cr_assert_neq(rng_name_key("h1.W"), rng_name_key("h1.b"));
  cr_assert_eq(rng_name_key(""), 0xcbf29ce484222325ull);   /* FNV-1a offset basis */
  cr_assert_eq(rng_name_key("a"), 0xaf63dc4c8601ec8cull);  /* FNV-1a("a") */
  Arena a;
  Graph g;
  arena_init(&a);
  graph_init(&g, &a);
  Node *p = param(&a, &g, SHAPE(16, 8), INIT_GLOROT_UNIFORM, 0, 0, "h.W");
  Node *q = param(&a, &g, SHAPE(16, 8), INIT_GLOROT_UNIFORM, 0, 0, "h2.W");
  float x[128], y[128], z[128], w[128];
  rng_init_param(p, 1, x);
  rng_init_param(p, 1, y);
  rng_init_param(p, 2, z);
  rng_init_param(q, 1, w);
  cr_assert_eq(memcmp(x, y, sizeof x), 0);
  int same_seed = 0, same_name = 0;
  for (int i = 0; i < 128; i++) same_seed += x[i] == z[i], same_name += x[i] == w[i];
  cr_assert(same_seed < 4 && same_name < 4);
  cr_assert_eq(rng_normal(3, 4, 5), rng_normal(3, 4, 5));
  cr_assert_neq(rng_normal(3, 4, 5), rng_normal(3, 4, 6));
  arena_free(&a);
}

Test(rng, normal_draws) {
  enum { N = 200000 };
  float *x = malloc(sizeof(float) * N);
  for (int i = 0; i < N; i++) x[i] = rng_normal(9, 1, (uint64_t)i);
  double m, s, lo, hi;
  stats(x, N, &m, &s, &lo, &hi);
  cr_assert(fabs(m) < 0.01 && fabs(s - 1) < 0.01, "mean %g std %g", m, s);
  cr_assert(isfinite(lo) && isfinite(hi) && lo < -4 && hi > 4);
  free(x);
}

Test(rng, fans) {
  double fi, fo;
  Shape m = SHAPE(784, 256), c = SHAPE(6, 3, 5, 5), v = SHAPE(10), t3 = SHAPE(4, 5, 6);
  rng_fans(&m, &fi, &fo);
  cr_assert(fi == 784 && fo == 256);        /* [in, out]: not torch's [out, in] */
  rng_fans(&c, &fi, &fo);
  cr_assert(fi == 75 && fo == 150);
  rng_fans(&v, &fi, &fo);
  cr_assert(fi == 10 && fo == 10);
  rng_fans(&t3, &fi, &fo);
  cr_assert(fi == 30 && fo == 24);
}

/* Initializer statistics on a 256x256 param (fan_in = fan_out = 256) and on
 * a 512x128 one (fans differ, so in/out mix-ups show). */
Test(rng, initializer_statistics) {
  static const struct { InitKind k; double a, b; int rows, cols; double mean, std, bound; } cases[] = {
    {INIT_ZEROS, 0, 0, 256, 256, 0, 0, 0},
    {INIT_ONES, 0, 0, 256, 256, 1, 0, 1},
    {INIT_FULL, 2.5, 0, 256, 256, 2.5, 0, 2.5},
    {INIT_UNIFORM, -1, 3, 256, 256, 1, 4 / 3.4641016, -1},
    {INIT_NORMAL, 0.5, 2, 256, 256, 0.5, 2, -1},
    {INIT_GLOROT_UNIFORM, 0, 0, 256, 256, 0, 0.0625, 0.108253},      /* sqrt(6/512) */
    {INIT_GLOROT_UNIFORM, 0, 0, 512, 128, 0, 0.0559017, 0.0968246},  /* sqrt(6/640) */
    {INIT_GLOROT_NORMAL, 0, 0, 256, 256, 0, 0.0625, -1},
    {INIT_HE_UNIFORM, 0, 0, 256, 256, 0, 0.0883883, 0.153093},       /* sqrt(6/256) */
    {INIT_HE_UNIFORM, 0, 0, 512, 128, 0, 0.0625, 0.108253},          /* sqrt(6/512) */
    {INIT_HE_NORMAL, 0, 0, 256, 256, 0, 0.0883883, -1},
    {INIT_HE_NORMAL, 0, 0, 128, 512, 0, 0.125, -1},                  /* sqrt(2/128) */
    {INIT_DEFAULT, 0, 0, 256, 256, 0, 0.0625, 0.108253},              /* rank 2: glorot_uniform */
  };
  Arena a;
  Graph g;
  arena_init(&a);
  graph_init(&g, &a);
  float *x = malloc(sizeof(float) * 65536);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Node *p = param(&a, &g, SHAPE(cases[i].rows, cases[i].cols), cases[i].k, cases[i].a, cases[i].b, "w");
    double m, s, lo, hi;
    rng_init_param(p, 42, x);
    stats(x, 65536, &m, &s, &lo, &hi);
    double tol = cases[i].std * 0.02 + 1e-9;
    cr_assert(fabs(m - cases[i].mean) < tol + cases[i].std * 0.02, "case %zu: mean %g", i, m);
    cr_assert(fabs(s - cases[i].std) < tol, "case %zu: std %g, want %g", i, s, cases[i].std);
    if (cases[i].bound > 0) {
      cr_assert(hi <= cases[i].bound + 1e-6 && hi > cases[i].bound * 0.99, "case %zu: max %g", i, hi);
      if (cases[i].std > 0) cr_assert(lo >= -cases[i].bound - 1e-6 && lo < -cases[i].bound * 0.99, "case %zu", i);
    }
    if (cases[i].k == INIT_UNIFORM) cr_assert(lo >= -1 && hi < 3 && lo < -0.99 && hi > 2.99);
  }
  Node *b = param(&a, &g, SHAPE(7), INIT_DEFAULT, 0, 0, "b");   /* rank 1 default: zeros */
  x[3] = 5;
  rng_init_param(b, 42, x);
  for (int i = 0; i < 7; i++) cr_assert_eq(x[i], 0);
  free(x);
  arena_free(&a);
}

/* ops.def's rows are consistent: an op passes gradients iff it has a
 * gradient rule (leaves aside), and every attribute spec names a known slot
 * and, where a builtin reads a default, parses it. */
Test(ops, rows_are_consistent) {
  for (int op = 0; op < OP_COUNT; op++) {
    int fl = op_info[op].flags;
    if (fl & F_LEAF) continue;
    cr_expect_eq(autodiff_has_rule((Op)op), !(fl & F_NOGRAD), "%s: F_NOGRAD and its vjp column disagree",
                 op_info[op].name);
    char spec[256];
    snprintf(spec, sizeof spec, "%s", op_info[op].attrs);
    for (char *item = strtok(spec, " "); item; item = strtok(NULL, " ")) {
      char *slot = strchr(item, ':');
      cr_assert(slot, "%s: attribute '%s' has no slot", op_info[op].name, item);
      *slot++ = 0;
      char *def = strchr(slot, ':');
      if (def) *def++ = 0;
      int ok = ((slot[0] == 'f' && slot[1] >= '0' && slot[1] <= '4') || (slot[0] == 'i' && slot[1] >= '0' && slot[1] <= '9'))
                   ? slot[2] == 0
                   : !strcmp(slot, "mask") || !strcmp(slot, "flag0") || !strcmp(slot, "flag1") || !strcmp(slot, "shape") ||
                         !strcmp(slot, "perm") || !strcmp(slot, "start");
      cr_expect(ok, "%s: attribute %s has unknown slot '%s'", op_info[op].name, item, slot);
      double v = -1;
      cr_expect_eq(op_attr_default((Op)op, item, &v), def ? 0 : -1, "%s: default of %s", op_info[op].name, item);
      if (def) cr_expect_float_eq(v, strtod(def, NULL), 1e-12);
    }
  }
  double v;
  cr_expect_eq(op_attr_default(OP_ELU, "alpha", &v), 0);
  cr_expect_float_eq(v, 1.0, 0);
  cr_expect_eq(op_attr_default(OP_LEAKY_RELU, "slope", &v), 0);
  cr_expect_float_eq(v, 0.01, 1e-12);
  cr_expect_eq(op_attr_default(OP_ELU, "beta", &v), -1);
}
