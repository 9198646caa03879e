/* test_passes.c - the exact result of each graph pass on small graphs, in
 * the spirit of Lua's code.lua: pass_simplify (every fold, bit-exact with
 * the interpreter, every identity, CSE, DCE), pass_fuse (the groups, what
 * stays alone), the kernels that codegen_lower makes for a small MLP's
 * forward pass and training step, plan_memory (exact offsets of a hand-made
 * program, arena reuse on a long chain, no two live buffers overlapping in
 * a whole training step), and the training step `nndc ir --stage opt` dumps. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "codegen/codegen.h"
#include "codegen/kir.h"
#include "codegen/target.h"
#include "tests/util.h"

typedef UtilGraph T;

/* Builds the graph from .nnd source text (training: dropout active). */
static T *t_src(const char *src, int training) {
  T *t = util_graph_new();
  BuildOpts o = {.training = training};
  cr_assert_eq(util_compile(&t->d, &t->g, src, &o), 0, "%s", t->d.buf ? t->d.buf : "");
  return t;
}

static Shape shp(int rank, const int64_t *dims) {
  Shape s = {rank, {0}};
  for (int k = 0; k < rank; k++) s.dim[k] = dims[k];
  return s;
}
#define SHAPE(...) shp((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define SCALAR shp(0, NULL)

static Node *in(T *t, Shape s) {
  char name[16];
  snprintf(name, sizeof name, "x%d", t->g.nnodes);
  return ir_leaf(&t->g, (Loc){0}, OP_INPUT, DT_F32, &s, name);
}

static Node *cst(T *t, Shape s, double v) { return ir_const(&t->g, (Loc){0}, &s, v); }

static Node *op(T *t, Op o, Node *x, Node *y, const Attr *at) {
  Node *v[2] = {x, y};
  Node *n = ir_op(&t->g, &t->d, (Loc){0}, o, v, y ? 2 : 1, at);
  cr_assert(n, "ir_op %s failed: %s", op_info[o].name, t->d.buf ? t->d.buf : "");
  return n;
}

static Node *op1(T *t, Op o, Node *x) { return op(t, o, x, NULL, NULL); }
static Node *op2(T *t, Op o, Node *x, Node *y) { return op(t, o, x, y, NULL); }

static Attr attr_shape(Shape s) {
  Attr a;
  memset(&a, 0, sizeof a);
  a.shape = s;
  return a;
}

static Attr attr_i(int64_t i0, int64_t i1) {
  Attr a;
  memset(&a, 0, sizeof a);
  a.i[0] = i0;
  a.i[1] = i1;
  return a;
}

/* Makes outs[0..n) the graph's outputs "o0", "o1", ... */
static void set_outputs(T *t, Node **outs, int n) {
  t->g.outputs = arena_alloc(&t->a, (size_t)n * sizeof *t->g.outputs);
  for (int i = 0; i < n; i++) {
    t->g.outputs[i].name = arena_printf(&t->a, "o%d", i);
    t->g.outputs[i].node = outs[i];
  }
  t->g.noutputs = n;
}

/* The graph as one line: "input const=-20[2,3] add(0,1)", operands by id,
 * CONSTs with their value and (when not a scalar) shape. */
static const char *sig(T *t) {
  const char *s = "";
  for (int i = 0; i < t->g.nnodes; i++) {
    const Node *n = t->g.nodes[i];
    const char *w = op_info[n->op].name;
    if (n->op == OP_CONST) {
      w = arena_printf(&t->a, "const=%g", n->a.f[0]);
      for (int k = 0; k < n->shape.rank; k++)
        w = arena_printf(&t->a, "%s%s%lld", w, k ? "," : "[", (long long)n->shape.dim[k]);
      if (n->shape.rank) w = arena_printf(&t->a, "%s]", w);
    }
    for (int j = 0; j < n->nin; j++) w = arena_printf(&t->a, "%s%s%d", w, j ? "," : "(", n->in[j]->id);
    if (n->nin) w = arena_printf(&t->a, "%s)", w);
    s = arena_printf(&t->a, "%s%s%s", s, i ? " " : "", w);
  }
  return s;
}

/* Runs pass_simplify and checks that the result is valid with ids = positions. */
static void simplify(T *t) {
  cr_assert_eq(pass_simplify(&t->d, &t->g), 0);
  cr_assert_eq(ir_verify(&t->g, &t->d), 0, "invalid after simplify: %s", t->d.buf ? t->d.buf : "");
  for (int i = 0; i < t->g.nnodes; i++) cr_assert_eq(t->g.nodes[i]->id, i);
}

/* ------------------------------------------------------------- simplify */

Test(simplify, folds_a_constant_expression) {
  T *t = util_graph_new();
  Node *x = in(t, SHAPE(2, 3));
  Node *s = op2(t, OP_ADD, cst(t, SCALAR, 2), cst(t, SHAPE(2, 3), 3));   /* 5, shape [2,3] */
  Node *m = op2(t, OP_MUL, s, cst(t, SCALAR, 4));                        /* 20 */
  Node *n = op1(t, OP_NEG, m);                                           /* -20 */
  Node *y = op2(t, OP_ADD, x, n);
  set_outputs(t, &y, 1);
  cr_assert_eq(t->g.nnodes, 8);
  simplify(t);
  cr_expect_str_eq(sig(t), "input const=-20[2,3] add(0,1)");
  cr_expect_eq(t->g.outputs[0].node, y, "the output keeps its Node");
  cr_expect_eq(t->g.nodes[1], n, "the fold happens in place, in the last node of the expression");
  cr_expect_eq(n->op, OP_CONST);
  cr_expect(shape_eq(&n->a.shape, &n->shape));
  util_graph_free(t);
}

/* One folded op: its operands' values, the float result, the result shape. */
typedef struct Fold {
  Op op;
  double a, b;      /* b unused for unary ops */
  float want;
} Fold;

Test(simplify, folds_every_implemented_op_in_f32) {
  const Fold cases[] = {
    {OP_ADD, 1.5, -4, -2.5f},
    {OP_SUB, 1.5, -4, 5.5f},
    {OP_MUL, 1.5, -4, -6.0f},
    {OP_MUL, 1e30, 1e30, INFINITY},          /* overflows in f32 as the interpreter does */
    {OP_DIV, 1, 3, 1.0f / 3.0f},             /* the CONST holds the f32 quotient, not the f64 one */
    {OP_DIV, 1, 0, INFINITY},
    {OP_MAXIMUM, 1.5, -4, 1.5f},
    {OP_MINIMUM, 1.5, -4, -4.0f},
    {OP_NEG, 1.5, 0, -1.5f},
    {OP_ABS, -4, 0, 4.0f},
    {OP_RELU, -4, 0, 0.0f},
    {OP_RELU, 1.5, 0, 1.5f},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    T *t = util_graph_new();
    const Fold *f = &cases[c];
    int bin = op_info[f->op].nin == 2;
    Node *a = cst(t, SCALAR, f->a), *r;
    r = bin ? op2(t, f->op, a, cst(t, SHAPE(3), f->b)) : op1(t, f->op, a);
    set_outputs(t, &r, 1);
    simplify(t);
    cr_expect_eq(t->g.nnodes, 1, "%s: %s", op_info[f->op].name, sig(t));
    cr_expect_eq(r->op, OP_CONST, "%s not folded", op_info[f->op].name);
    cr_expect_eq(r->a.f[0], (double)f->want, "%s(%g, %g) = %.17g, want %.17g", op_info[f->op].name, f->a, f->b,
                 r->a.f[0], (double)f->want);
    cr_expect_eq(r->shape.rank, bin ? 1 : 0, "%s keeps the broadcast shape", op_info[f->op].name);
    util_graph_free(t);
  }
  /* expand of a CONST: the same value in the target shape */
  T *t = util_graph_new();
  Attr at = attr_shape(SHAPE(2, 3));
  Node *e = op(t, OP_EXPAND, cst(t, SHAPE(3), 0.5), NULL, &at);
  set_outputs(t, &e, 1);
  simplify(t);
  cr_expect_str_eq(sig(t), "const=0.5[2,3]");
  util_graph_free(t);
}

/* The bits of the fold of op(a, b) (a, b uniform CONSTs of shape [2]) and
 * of the interpreter's value of the unfolded node; *folded = 0 if not
 * folded. */
static void fold_vs_interp(Op o, float a, float b, uint32_t *fold_bits, uint32_t *interp_bits, int *folded) {
  T *t = util_graph_new();
  int bin = op_info[o].nin == 2;
  Node *r = bin ? op2(t, o, cst(t, SHAPE(2), a), cst(t, SHAPE(2), b)) : op1(t, o, cst(t, SHAPE(2), a));
  set_outputs(t, &r, 1);
  Interp it;
  interp_init(&it, &t->g);
  RunCtx ctx = {.seed = 1, .step = 1};
  cr_assert_eq(interp_run(&it, &t->d, NULL, &ctx), 0, "%s", t->d.buf ? t->d.buf : "");
  memcpy(interp_bits, it.val[r->id], 4);
  interp_free(&it);
  simplify(t);
  *folded = r->op == OP_CONST;
  float v = (float)r->a.f[0];
  memcpy(fold_bits, &v, 4);
  util_graph_free(t);
}

/* Folding is exact: the folded CONST has the very bits the interpreter
 * computes for the node, signed zeros included, and a NaN operand is never
 * folded away (maximum and minimum propagate it as the interpreter does). */
Test(simplify, folds_bit_exactly_as_the_interpreter) {
  const struct { Op op; float a, b; } cases[] = {
    {OP_MAXIMUM, 0.0f, -0.0f}, {OP_MAXIMUM, -0.0f, 0.0f}, {OP_MINIMUM, 0.0f, -0.0f}, {OP_MINIMUM, -0.0f, 0.0f},
    {OP_MAXIMUM, 1.0f, NAN},   {OP_MINIMUM, 1.0f, NAN},   {OP_MAXIMUM, NAN, 1.0f},   {OP_MINIMUM, NAN, 1.0f},
    {OP_RELU, -0.0f, 0},       {OP_NEG, 0.0f, 0},         {OP_ABS, -0.0f, 0},        {OP_ADD, -0.0f, -0.0f},
    {OP_SUB, 0.0f, 0.0f},      {OP_MUL, -2.0f, 0.0f},     {OP_DIV, 1.0f, -0.0f},     {OP_DIV, 1.0f, 3.0f},
    {OP_ADD, 0.1f, 0.2f},      {OP_MUL, 3e38f, 10.0f},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    uint32_t fb, ib;
    int folded;
    fold_vs_interp(cases[c].op, cases[c].a, cases[c].b, &fb, &ib, &folded);
    float iv;
    memcpy(&iv, &ib, 4);
    if (isnan(iv)) {
      cr_expect(!folded, "%s(%g, %g) folded to a number; the interpreter gives NaN", op_info[cases[c].op].name,
                (double)cases[c].a, (double)cases[c].b);
      continue;
    }
    cr_expect(folded, "%s(%g, %g) not folded", op_info[cases[c].op].name, (double)cases[c].a, (double)cases[c].b);
    cr_expect_eq(fb, ib, "%s(%g, %g): folded bits %08x, interpreter %08x", op_info[cases[c].op].name,
                 (double)cases[c].a, (double)cases[c].b, fb, ib);
  }
}

Test(simplify, does_not_fold_the_rest) {
  T *t = util_graph_new();
  Node *o[6];
  o[0] = op2(t, OP_DIV, cst(t, SCALAR, 0), cst(t, SCALAR, 0));     /* NaN: kept */
  o[1] = op1(t, OP_EXP, cst(t, SCALAR, 1));                         /* no rule */
  o[2] = op2(t, OP_GT, cst(t, SCALAR, 2), cst(t, SCALAR, 1));       /* comparisons: no rule */
  Attr sum = attr_i(1, 0);
  o[3] = op(t, OP_SUM, cst(t, SHAPE(4), 1), NULL, &sum);           /* reductions: no rule */
  o[4] = op2(t, OP_MUL, in(t, SHAPE(3)), cst(t, SCALAR, 0));        /* x*0: NaN*0 is NaN */
  o[5] = op1(t, OP_SQRT, cst(t, SCALAR, 4));
  set_outputs(t, o, 6);
  simplify(t);
  /* the CONST 0 of o[0] and of o[4] are one node after CSE; so are the 1s */
  cr_expect_str_eq(sig(t), "const=0 div(0,0) const=1 exp(2) const=2 gt(4,2) const=1[4] sum(6) input mul(8,0) const=4 "
                           "sqrt(10)");
  util_graph_free(t);
}

/* The gradient of slicing a tensor into parts (SLICE_BWDs summed) is the
 * CONCAT of the parts, in order of their starts; pieces that leave a gap or
 * overlap stay a sum. */
static Node *piece(T *t, Node *x, int64_t start, int64_t cols) {
  Attr a = attr_i(0, start);
  a.shape = SHAPE(4, cols);
  return op(t, OP_SLICE_BWD, x, NULL, &a);
}

Test(simplify, sliced_gradients_become_a_concat) {
  T *t = util_graph_new();
  Node *p0 = in(t, SHAPE(4, 4)), *p1 = in(t, SHAPE(4, 3)), *p2 = in(t, SHAPE(4, 5));
  Node *o[2];
  Node *a = piece(t, p2, 7, 12), *b = piece(t, p0, 0, 12), *c = piece(t, p1, 4, 12);
  o[0] = op2(t, OP_ADD, op2(t, OP_ADD, a, b), c);
  Node *d = piece(t, p0, 0, 13), *e = piece(t, p2, 5, 13);  /* a gap at [4, 5) */
  o[1] = op2(t, OP_ADD, d, e);
  set_outputs(t, o, 2);
  simplify(t);
  cr_expect_str_eq(sig(t), "input input input concat(0,1,2) slice_bwd(0) slice_bwd(2) add(4,5)");
  cr_expect_eq(t->g.nodes[3]->a.i[0], 1, "along axis 1");
  util_graph_free(t);
}

Test(simplify, algebraic_identities) {
  T *t = util_graph_new();
  Node *x = in(t, SHAPE(2, 3));
  Attr same = attr_shape(SHAPE(2, 3));
  Node *o[10];
  o[0] = op2(t, OP_MUL, x, cst(t, SCALAR, 1));
  o[1] = op2(t, OP_MUL, cst(t, SCALAR, 1), x);
  o[2] = op2(t, OP_ADD, x, cst(t, SCALAR, 0));
  o[3] = op2(t, OP_ADD, cst(t, SHAPE(3), 0), x);
  o[4] = op2(t, OP_SUB, x, cst(t, SCALAR, 0));
  o[5] = op2(t, OP_DIV, x, cst(t, SCALAR, 1));
  o[6] = op1(t, OP_NEG, op1(t, OP_NEG, x));
  o[7] = op(t, OP_RESHAPE, x, NULL, &same);
  o[8] = op(t, OP_EXPAND, x, NULL, &same);
  o[9] = op2(t, OP_DIV, op2(t, OP_ADD, op2(t, OP_MUL, x, cst(t, SCALAR, 1)), cst(t, SCALAR, 0)),
             cst(t, SCALAR, 1));                                  /* a chain of them */
  set_outputs(t, o, 10);
  simplify(t);
  cr_expect_str_eq(sig(t), "input");
  for (int i = 0; i < 10; i++) cr_expect_eq(t->g.outputs[i].node, x, "output %d is not x", i);
  util_graph_free(t);
}

static Attr perm(int r, const int *p) {
  Attr a;
  memset(&a, 0, sizeof a);
  for (int k = 0; k < r; k++) a.i[k] = p[k];
  return a;
}

Test(simplify, transposes_that_cancel) {
  T *t = util_graph_new();
  Node *x = in(t, SHAPE(2, 3, 5));
  Attr p120 = perm(3, (int[]){1, 2, 0}), p201 = perm(3, (int[]){2, 0, 1}), p012 = perm(3, (int[]){0, 1, 2});
  Attr p021 = perm(3, (int[]){0, 2, 1});
  Node *o[4];
  o[0] = op(t, OP_TRANSPOSE, op(t, OP_TRANSPOSE, x, NULL, &p120), NULL, &p201);  /* undone */
  o[1] = op(t, OP_TRANSPOSE, x, NULL, &p012);                                     /* the identity */
  o[2] = op(t, OP_TRANSPOSE, op(t, OP_TRANSPOSE, x, NULL, &p021), NULL, &p021);   /* a swap twice */
  o[3] = op(t, OP_TRANSPOSE, op(t, OP_TRANSPOSE, x, NULL, &p120), NULL, &p120);   /* not undone */
  set_outputs(t, o, 4);
  simplify(t);
  for (int i = 0; i < 3; i++) cr_expect_eq(t->g.outputs[i].node, x, "output %d is not x", i);
  cr_expect_str_eq(sig(t), "input transpose(0) transpose(1)");
  util_graph_free(t);
}

/* transpose(transpose(a) @ b) -> transpose(b) @ a, the product reading b
 * transposed in place; kept when the product has another use. */
Test(simplify, transposed_product_of_a_transpose) {
  T *t = util_graph_new();
  Node *a = in(t, SHAPE(7, 5)), *b = in(t, SHAPE(7, 11));
  Attr sw = perm(2, (int[]){1, 0});
  Node *o = op(t, OP_TRANSPOSE, op2(t, OP_MATMUL, op(t, OP_TRANSPOSE, a, NULL, &sw), b), NULL, &sw);
  set_outputs(t, &o, 1);
  simplify(t);
  cr_expect_str_eq(sig(t), "input input transpose(1) matmul(2,0)");
  cr_expect_eq(t->g.outputs[0].node, o, "the output keeps its Node");
  cr_expect_eq(o->shape.dim[0], 11);
  cr_expect_eq(o->shape.dim[1], 5);
  cr_expect_eq(t->g.nodes[2]->shape.dim[0], 11);
  cr_expect_eq(t->g.nodes[2]->shape.dim[1], 7);
  util_graph_free(t);

  t = util_graph_new();  /* batched, and a product used twice */
  Node *a3 = in(t, SHAPE(3, 7, 5)), *b3 = in(t, SHAPE(3, 7, 11));
  Attr sw3 = perm(3, (int[]){0, 2, 1});
  Node *m = op2(t, OP_MATMUL, op(t, OP_TRANSPOSE, a3, NULL, &sw3), b3);
  Node *oo[2] = {op(t, OP_TRANSPOSE, m, NULL, &sw3), op1(t, OP_NEG, m)};
  set_outputs(t, oo, 2);
  simplify(t);
  cr_expect_str_eq(sig(t), "input input transpose(0) matmul(2,1) transpose(3) neg(3)");
  util_graph_free(t);
}

Test(simplify, identities_that_do_not_hold_are_kept) {
  T *t = util_graph_new();
  Node *x = in(t, SHAPE(3));
  Attr other = attr_shape(SHAPE(3, 1));
  Node *o[8];
  o[0] = op2(t, OP_SUB, cst(t, SCALAR, 0), x);           /* 0 - x */
  o[1] = op2(t, OP_DIV, cst(t, SCALAR, 1), x);           /* 1 / x */
  o[2] = op2(t, OP_ADD, x, cst(t, SHAPE(2, 3), 0));      /* broadcasts x to [2,3] */
  o[3] = op2(t, OP_MUL, cst(t, SHAPE(2, 1), 1), x);      /* broadcasts x to [2,3] */
  o[4] = op2(t, OP_ADD, x, cst(t, SCALAR, 1));
  o[5] = op1(t, OP_NEG, x);
  o[6] = op(t, OP_RESHAPE, x, NULL, &other);
  o[7] = op2(t, OP_MUL, x, cst(t, SCALAR, -1));
  set_outputs(t, o, 8);
  simplify(t);
  cr_expect_str_eq(sig(t), "input const=0 sub(1,0) const=1 div(3,0) const=0[2,3] add(0,5) const=1[2,1] mul(7,0) "
                           "add(0,3) neg(0) reshape(0) const=-1 mul(0,12)");
  for (int i = 0; i < 8; i++) cr_expect_eq(t->g.outputs[i].node, o[i]);
  util_graph_free(t);
}

Test(simplify, common_subexpressions_merge) {
  T *t = util_graph_new();
  Node *x = in(t, SHAPE(2, 3)), *y = in(t, SHAPE(2, 3));
  Attr ax0 = attr_i(1, 0), ax1 = attr_i(2, 0), ax1b = attr_i(2, 0);
  Node *o[8];
  o[0] = op2(t, OP_ADD, op1(t, OP_EXP, x), op1(t, OP_EXP, x));       /* exp(x) + exp(x) */
  o[1] = op1(t, OP_EXP, y);                                           /* other operand: kept */
  o[2] = op(t, OP_SUM, x, NULL, &ax0);
  o[3] = op(t, OP_SUM, x, NULL, &ax1);                                /* other axes: kept */
  o[4] = op(t, OP_SUM, x, NULL, &ax1b);                               /* = o[3] */
  o[5] = op1(t, OP_EXP, op2(t, OP_MUL, x, cst(t, SCALAR, 1)));        /* exp(x*1) = exp(x) */
  o[6] = op2(t, OP_SUB, op1(t, OP_EXP, x), y);
  o[7] = op2(t, OP_SUB, op1(t, OP_EXP, x), y);                        /* = o[6], through exp */
  set_outputs(t, o, 8);
  simplify(t);
  cr_expect_str_eq(sig(t), "input input exp(0) add(2,2) exp(1) sum(0) sum(0) sub(2,1)");
  cr_expect_eq(t->g.outputs[4].node, t->g.outputs[3].node);
  cr_expect_eq(t->g.outputs[5].node, t->g.nodes[2]);
  cr_expect_eq(t->g.outputs[7].node, t->g.outputs[6].node);
  cr_expect_neq(t->g.outputs[2].node, t->g.outputs[3].node);
  util_graph_free(t);
}

Test(simplify, constants_merge_by_value_and_shape_params_never) {
  T *t = util_graph_new();
  Shape s = SHAPE(3);
  Node *p = ir_leaf(&t->g, (Loc){0}, OP_PARAM, DT_F32, &s, "p");
  Node *q = ir_leaf(&t->g, (Loc){0}, OP_PARAM, DT_F32, &s, "q");
  t->g.params = arena_alloc(&t->a, 2 * sizeof *t->g.params);
  t->g.params[0] = (Named){"p", p};
  t->g.params[1] = (Named){"q", q};
  t->g.nparams = 2;
  Node *o[4];
  o[0] = op2(t, OP_MUL, p, cst(t, SCALAR, 2));
  o[1] = op2(t, OP_MUL, q, cst(t, SCALAR, 2));     /* same const, other param: kept */
  o[2] = op2(t, OP_MUL, p, cst(t, SHAPE(3), 2));   /* same value, other shape */
  o[3] = op2(t, OP_MUL, p, cst(t, SCALAR, 3));
  set_outputs(t, o, 4);
  simplify(t);
  cr_expect_str_eq(sig(t), "param param const=2 mul(0,2) mul(1,2) const=2[3] mul(0,5) const=3 mul(0,7)");
  util_graph_free(t);
}

/* Two identical updates both run: they write their operands in place. */
Test(simplify, updates_never_merge) {
  T *t = util_graph_new();
  Shape s = SHAPE(3);
  Node *p = ir_leaf(&t->g, (Loc){0}, OP_PARAM, DT_F32, &s, "p");
  Node *gr = in(t, SHAPE(3));
  Node *buf = ir_leaf(&t->g, (Loc){0}, OP_STATE, DT_F32, &s, "p.momentum_buffer");
  Attr lr;
  memset(&lr, 0, sizeof lr);
  lr.f[0] = 0.1;
  Node *v[3] = {p, gr, buf};
  t->g.updates = arena_alloc(&t->a, 2 * sizeof *t->g.updates);
  for (int i = 0; i < 2; i++) {
    t->g.updates[i] = ir_op(&t->g, &t->d, (Loc){0}, OP_OPT_SGD, v, 3, &lr);
    cr_assert(t->g.updates[i], "%s", t->d.buf ? t->d.buf : "");
  }
  t->g.nupdates = 2;
  simplify(t);
  cr_expect_str_eq(sig(t), "param input state sgd_update(0,1,2) sgd_update(0,1,2)");
  cr_expect_neq(t->g.updates[0], t->g.updates[1]);
  util_graph_free(t);
}

Test(simplify, dead_code_goes_leaves_and_roots_stay) {
  T *t = util_graph_new();
  Node *x = in(t, SHAPE(4)), *unused = in(t, SHAPE(2));
  t->g.inputs = arena_alloc(&t->a, 2 * sizeof *t->g.inputs);
  t->g.inputs[0] = (Named){"x", x};
  t->g.inputs[1] = (Named){"unused", unused};
  t->g.ninputs = 2;
  Node *dead = op1(t, OP_TANH, op1(t, OP_EXP, x));                    /* no role needs it */
  Node *root = op1(t, OP_LOG, x);                                      /* kept as a root only */
  Node *gone = op1(t, OP_SIGMOID, x);                                  /* tracked, dead */
  Node *dup = op1(t, OP_LOG, x);                                       /* tracked, merged into root */
  Node *y = op1(t, OP_RELU, x);
  Node *l = op2(t, OP_MUL, op2(t, OP_MUL, y, cst(t, SCALAR, 1)), cst(t, SCALAR, 1));
  Attr all = attr_i(1, 0);
  Node *ls = op(t, OP_SUM, l, NULL, &all);
  set_outputs(t, &y, 1);
  t->g.loss = op2(t, OP_ADD, ls, cst(t, SCALAR, 0));                   /* loss = sum(y*1*1) + 0 */
  t->g.metrics = arena_alloc(&t->a, sizeof *t->g.metrics);
  t->g.metrics[0] = (Named){"m", op2(t, OP_DIV, y, cst(t, SCALAR, 1))};
  t->g.nmetrics = 1;
  Node *roots[1] = {root}, *track[3] = {gone, dup, dead};
  cr_assert_eq(pass_simplify_ex(&t->d, &t->g, roots, 1, track, 3), 0);
  cr_assert_eq(ir_verify(&t->g, &t->d), 0, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_str_eq(sig(t), "input input log(0) relu(0) sum(3)");
  cr_expect_eq(t->g.nodes[1], unused, "an unused input stays");
  cr_expect_eq(roots[0], root);
  cr_expect_null(track[0]);
  cr_expect_eq(track[1], root);
  cr_expect_null(track[2]);
  cr_expect_eq(t->g.loss, ls, "the loss is its representative");
  cr_expect_eq(t->g.metrics[0].node, y);
  cr_expect_eq(t->g.outputs[0].node, y);
  for (int i = 0; i < t->g.nnodes; i++) cr_expect_eq(t->g.nodes[i]->id, i);
  util_graph_free(t);
}

/* A small MLP (shared/models/mlp.nnd at 6-5-3, batch 4). */
static const char *MLP =
  "input x: f32[N, 6]\n"
  "input y: i32[N]\n"
  "param W1: f32[6, 5]\n"
  "param b1: f32[5]\n"
  "param W2: f32[5, 3]\n"
  "param b2: f32[3]\n"
  "h = relu(x @ W1 + b1)\n"
  "logits = h @ W2 + b2\n"
  "output probs = softmax(logits)\n"
  "loss = cross_entropy(logits, y)\n"
  "metric accuracy = mean(argmax(logits, axis=1) == y)\n"
  "train {\n  optimizer = adam(lr=0.001)\n  batch = 4\n}\n";

/* ----------------------------------------------------------------- fuse */

/* g->fuse_group as one line: "-1 -1 7 7", after checking the group roots
 * are members of their own group. */
static const char *groups(T *t) {
  const char *s = "";
  const int *fg = t->g.fuse_group;
  cr_assert(fg, "no fuse_group");
  for (int i = 0; i < t->g.nnodes; i++) {
    if (fg[i] >= 0) cr_assert_eq(fg[fg[i]], fg[i], "%%%d's group root %%%d is not its own root", i, fg[i]);
    s = arena_printf(&t->a, "%s%s%d", s, i ? " " : "", fg[i]);
  }
  return s;
}

/* pass_fuse with no roots; the expected number of groups. */
static const char *fuse(T *t, int ngroups) {
  cr_expect_eq(pass_fuse(&t->d, &t->g, NULL, 0), ngroups, "number of groups");
  return groups(t);
}

Test(fuse, matmul_epilogue) {
  T *t = t_src("input x: f32[4, 3]\nparam W: f32[3, 5]\nparam b: f32[5]\noutput y = relu(x @ W + b) * 2\n", 0);
  cr_assert_str_eq(sig(t), "input param param matmul(0,1) add(3,2) relu(4) const=2 mul(5,6)");
  cr_expect_str_eq(fuse(t, 1), "-1 -1 -1 7 7 7 -1 7");
  const char *p = fuse_print(&t->g, &t->a);
  cr_expect(strstr(p, "\ngroup %7: %3 %4 %5 -> %7\n"), "%s", p);
  cr_expect(!strstr(p, "group %4") && !strstr(p, "group %3"), "%s", p);
  util_graph_free(t);
}

Test(fuse, a_value_used_twice_stays_alone) {
  T *t = t_src("input x: f32[4, 3]\ne = exp(x)\noutput y = log(e * 2) + sqrt(e)\n", 0);
  cr_assert_str_eq(sig(t), "input exp(0) const=2 mul(1,2) log(3) sqrt(1) add(4,5)");
  cr_expect_str_eq(fuse(t, 1), "-1 -1 -1 6 6 6 6");
  cr_expect(strstr(fuse_print(&t->g, &t->a), "\ngroup %6: %3 %4 %5 -> %6\n"));
  util_graph_free(t);
}

Test(fuse, roles_and_roots_are_never_interior) {
  /* an output used by another elementwise node */
  T *t = t_src("input x: f32[4, 3]\nh = relu(x)\noutput h\noutput y = h * 2\n", 0);
  cr_assert_str_eq(sig(t), "input relu(0) const=2 mul(1,2)");
  cr_expect_str_eq(fuse(t, 0), "-1 -1 -1 -1");
  util_graph_free(t);
  /* the same chain without the role fuses; with a root it does not */
  t = t_src("input x: f32[4, 3]\nh = relu(x)\noutput y = h * 2\n", 0);
  cr_expect_str_eq(fuse(t, 1), "-1 3 -1 3");
  Node *root = t->g.nodes[1];
  cr_expect_eq(pass_fuse(&t->d, &t->g, &root, 1), 0);
  cr_expect_str_eq(groups(t), "-1 -1 -1 -1");
  util_graph_free(t);
  /* loss and metric */
  t = t_src("input s: f32[]\nl = exp(s)\nloss = l\nm = tanh(s)\nmetric mt = m\noutput y = l * 3 + m\n", 0);
  cr_assert_str_eq(sig(t), "input exp(0) tanh(0) const=3 mul(1,3) add(4,2)");
  cr_expect_str_eq(fuse(t, 1), "-1 -1 -1 -1 5 5");
  util_graph_free(t);
}

Test(fuse, shape_changes_break_groups) {
  T *t = t_src("input x: f32[2, 3]\ninput v: f32[3]\ninput i: i32[2, 3]\n"
               "output a = sum(exp(x))\n"                   /* a reduction is not elementwise */
               "output b = relu(transpose(log(x)))\n"       /* nor is a transpose */
               "output c = sqrt(reshape(tanh(x), [3, 2]))\n"  /* nor a reshape */
               "output d = abs(v) + x\n"                     /* abs is [3], the add [2,3] */
               "output e = float(i) * x\n"                   /* i32 -> f32 joins */
               "output f = (x > 0) - sigmoid(x)\n",          /* comparisons have f32 results */
               0);
  cr_assert_str_eq(sig(t), "input input input exp(0) sum(3) log(0) transpose(5) relu(6) tanh(0) reshape(8) sqrt(9) "
                           "abs(1) add(11,0) float(2) mul(13,0) const=0 gt(0,15) sigmoid(0) sub(16,17)");
  cr_expect_str_eq(fuse(t, 2), "-1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 14 14 -1 18 18 18");
  util_graph_free(t);
}

Test(fuse, expand_joins_its_user) {
  T *t = util_graph_new();
  Node *v = in(t, SHAPE(3)), *x = in(t, SHAPE(2, 3));
  Attr to = attr_shape(SHAPE(2, 3));
  Node *y = op2(t, OP_ADD, op(t, OP_EXPAND, op1(t, OP_EXP, v), NULL, &to), x);
  set_outputs(t, &y, 1);
  cr_assert_str_eq(sig(t), "input input exp(0) expand(2) add(3,1)");
  cr_expect_str_eq(fuse(t, 1), "-1 -1 -1 4 4");
  util_graph_free(t);
}

/* A role is pinned whatever its op: grads and updates set by hand on exp(x)
 * whose only user is elementwise. */
Test(fuse, grads_and_updates_are_never_interior) {
  for (int role = 0; role < 3; role++) {
    T *t = util_graph_new();
    Node *x = in(t, SHAPE(3));
    Shape s = SHAPE(3);
    Node *p = ir_leaf(&t->g, (Loc){0}, OP_PARAM, DT_F32, &s, "p");
    Node *e = op1(t, OP_EXP, x), *y = op2(t, OP_MUL, e, p);
    set_outputs(t, &y, 1);
    t->g.params = arena_alloc(&t->a, sizeof *t->g.params);
    t->g.params[0] = (Named){"p", p};
    t->g.nparams = 1;
    Node **one = arena_alloc(&t->a, sizeof *one);
    one[0] = e;
    if (role == 1) t->g.grads = one;
    if (role == 2) t->g.updates = one, t->g.nupdates = 1;
    cr_expect_str_eq(fuse(t, role == 0), role == 0 ? "-1 -1 3 3" : "-1 -1 -1 -1", "role %d", role);
    util_graph_free(t);
  }
}

/* The whole training step: the cross-entropy gradient is one node
 * (cross_entropy_bwd); only gt+mul (the relu gradient) fuses; add(x @ W1,
 * b1) feeds relu and its gradient's gt, so it stays alone.  No role is
 * interior. */
Test(fuse, mlp_training_step_groups) {
  T *t = t_src(MLP, 1);
  cr_assert_eq(pass_autodiff(&t->d, &t->g), 0, "%s", t->d.buf ? t->d.buf : "");
  cr_assert_eq(pass_optim(&t->d, &t->g), 0, "%s", t->d.buf ? t->d.buf : "");
  cr_assert_eq(passes_optimize(&t->d, &t->g), 0);
  cr_expect_str_eq(sig(t), "input input param param param param matmul(0,2) add(6,3) relu(7) matmul(8,4) add(9,5) "
                           "softmax(10) cross_entropy(10,1) argmax(10) eq(13,1) mean(14) const=1 "
                           "cross_entropy_bwd(10,1,16) sum(17) reshape(18) transpose(4) matmul(17,20) transpose(8) "
                           "matmul(22,17) const=0 gt(7,24) mul(21,25) sum(26) reshape(27) transpose(0) "
                           "matmul(29,26) state state adam_update(2,30,31,32) state state adam_update(3,28,34,35) "
                           "state state adam_update(4,23,37,38) state state adam_update(5,19,40,41)");
  /* forward products with their bias adds (the adds are used twice: by
   * relu and relu's derivative, by softmax and cross-entropy); the
   * backward's products with the transposes they read and relu's
   * derivative (gt, mul) as the epilogue of dh = dlogits @ W2^T */
  cr_expect_str_eq(groups(t), "-1 -1 -1 -1 -1 -1 7 7 -1 10 10 -1 -1 -1 -1 -1 -1 -1 -1 -1 26 26 23 23 -1 26 26 -1 "
                              "-1 30 30 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1");
  const char *p = fuse_print(&t->g, &t->a);
  cr_expect(strstr(p, "\ngroup %7: %6 -> %7\ngroup %10: %9 -> %10\ngroup %23: %22 -> %23\n"
                      "group %26: %20 %21 %25 -> %26\ngroup %30: %29 -> %30\n"), "%s", p);
  const int *fg = t->g.fuse_group;
  Graph *g = &t->g;
  for (int i = 0; i < g->nparams; i++) cr_expect(fg[g->grads[i]->id] < 0 || fg[g->grads[i]->id] == g->grads[i]->id);
  for (int i = 0; i < g->nupdates; i++) cr_expect_eq(fg[g->updates[i]->id], -1);
  cr_expect_eq(fg[g->loss->id], -1);
  util_graph_free(t);
}

/* ---------------------------------------------------------------- lower */

/* The roots model_train_steps (test_jit.c) compiles: loss, outputs,
 * metrics, updates. */
static int mlp_roots(T *t, Node **roots) {
  int n = 0;
  roots[n++] = t->g.loss;
  for (int i = 0; i < t->g.noutputs; i++) roots[n++] = t->g.outputs[i].node;
  for (int i = 0; i < t->g.nmetrics; i++) roots[n++] = t->g.metrics[i].node;
  for (int i = 0; i < t->g.nupdates; i++) roots[n++] = t->g.updates[i];
  return n;
}

/* The MLP's program through codegen_lower (arena pa); *tp receives the graph. */
static KProgram *mlp_program(Arena *pa, int train, T **tp, Node **roots, int *nroots) {
  T *t = t_src(MLP, train);
  if (train) {
    cr_assert_eq(pass_autodiff(&t->d, &t->g), 0, "%s", t->d.buf ? t->d.buf : "");
    cr_assert_eq(pass_optim(&t->d, &t->g), 0, "%s", t->d.buf ? t->d.buf : "");
  }
  *nroots = mlp_roots(t, roots);
  KProgram *p = codegen_lower(&t->d, pa, &t->g, roots, *nroots);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  *tp = t;
  return p;
}

/* The kernels' opnames joined by spaces. */
static const char *opnames(Arena *a, const KProgram *p) {
  const char *s = "";
  for (int k = 0; k < p->nkernels; k++) s = arena_printf(a, "%s%s%s", s, k ? " " : "", p->kernels[k]->opname);
  return s;
}

Test(lower, mlp_forward_kernels) {
  Arena pa;
  arena_init(&pa);
  T *t;
  Node *roots[64];
  int nr;
  KProgram *p = mlp_program(&pa, 0, &t, roots, &nr);
  cr_expect_str_eq(opnames(&pa, p), "matmul+add+relu matmul+add softmax cross_entropy_rows cross_entropy argmax eq mean");
  arena_free(&pa);
  util_graph_free(t);
}

Test(lower, mlp_training_step_kernels) {
  Arena pa;
  arena_init(&pa);
  T *t;
  Node *roots[64];
  int nr;
  KProgram *p = mlp_program(&pa, 1, &t, roots, &nr);
  /* the products' transposes are read in place; dh = dlogits @ W2^T
   * carries relu's derivative; dW2 = h^T @ dlogits, dW1 = x^T @ dh; W2^T
   * is packed (its rows are not contiguous); one Adam kernel for all */
  cr_expect_str_eq(opnames(&pa, p), "matmul+add relu matmul+add softmax cross_entropy_rows cross_entropy argmax eq mean cross_entropy_bwd "
                                    "sum transpose+matmul pack transpose+matmul+gt+mul sum transpose+matmul adam_update");
  arena_free(&pa);
  util_graph_free(t);
}

/* Buffer uses of kernel IR: KS_STORE targets and KX_LOAD sources. */
typedef struct Uses {
  int nstore, nload;
  int store[8], load[8];   /* the first few, in order */
  uint8_t *touched;        /* NULL, or [nbufs]: set for every buffer used */
} Uses;

static void on_use(void *ctx, int b, int store) {
  Uses *u = ctx;
  int *n = store ? &u->nstore : &u->nload, *v = store ? u->store : u->load;
  if (*n < 8) v[*n] = b;
  if (u->touched) u->touched[b] = 1;
  (*n)++;
}

static void uses_stmts(Uses *u, const KStmt *s) { kir_buffers(s, on_use, u); }

/* The group's kernel stores only its root, loads each external operand
 * once, and its interior members have no buffer. */
Test(lower, fused_group_kernel) {
  T *t = t_src("input x: f32[4, 3]\ninput z: f32[4, 5]\noutput y = relu(z + 1) * 2\n", 0);
  Arena pa;
  arena_init(&pa);
  Node *root = t->g.outputs[0].node;
  KProgram *p = codegen_lower(&t->d, &pa, &t->g, &root, 1);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_str_eq(opnames(&pa, p), "add+relu+mul");
  const int *nb = p->node_buf;  /* x 0, z 1, const 2, add 3, relu 4, const 5, mul 6 */
  cr_expect(nb[1] >= 0 && nb[2] >= 0 && nb[5] >= 0 && nb[6] >= 0);
  cr_expect_eq(nb[3], -1, "interior add has a buffer");
  cr_expect_eq(nb[4], -1, "interior relu has a buffer");
  cr_expect_eq(p->bufs[nb[6]].kind, KB_ARENA);
  cr_expect_eq(p->kernels[0]->node->id, 6, "the group's kernel computes its root");
  Uses u = {0};
  uses_stmts(&u, p->kernels[0]->body);
  cr_expect_eq(u.nstore, 1);
  cr_expect_eq(u.store[0], nb[6]);
  cr_expect_eq(u.nload, 3);
  cr_expect(u.load[0] == nb[1] && u.load[1] == nb[2] && u.load[2] == nb[5], "loads %d %d %d", u.load[0], u.load[1],
            u.load[2]);
  cr_expect_eq(p->kernels[0]->flops, 3.0 * 20, "3 ops on 20 elements");
  arena_free(&pa);
  util_graph_free(t);
}

/* A product with its epilogue is one kernel: it reads the product's
 * operands and the epilogue's (bias, constant), and writes only the root;
 * the product, the add and the relu have no buffers. */
Test(lower, matmul_epilogue_kernel) {
  T *t = t_src("input x: f32[4, 3]\nparam W: f32[3, 5]\nparam b: f32[5]\noutput y = relu(x @ W + b) * 2\n", 0);
  Arena pa;
  arena_init(&pa);
  Node *root = t->g.outputs[0].node;
  KProgram *p = codegen_lower(&t->d, &pa, &t->g, &root, 1);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_str_eq(opnames(&pa, p), "matmul+add+relu+mul");
  const int *nb = p->node_buf;  /* x 0, W 1, b 2, matmul 3, add 4, relu 5, const 6, mul 7 */
  cr_expect(nb[3] == -1 && nb[4] == -1 && nb[5] == -1, "interior members have buffers");
  Uses u = {.touched = calloc((size_t)p->nbufs + 1, 1)};
  uses_stmts(&u, p->kernels[0]->body);
  for (int b = 0; b < p->nbufs; b++) {
    int want = b == nb[0] || b == nb[1] || b == nb[2] || b == nb[6] || b == nb[7];
    cr_expect_eq(u.touched[b], want, "buffer %d", b);
  }
  for (int i = 0; i < u.nstore && i < 8; i++) cr_expect_eq(u.store[i], nb[7]);
  cr_expect_eq(p->kernels[0]->flops, 2.0 * 4 * 3 * 5 + 3.0 * 20, "the product and 3 ops on 20 elements");
  free(u.touched);
  arena_free(&pa);
  util_graph_free(t);
}

/* The optimizer updates every param in one kernel: 8 flops per element of
 * each, loading every param, gradient and state, storing params and states. */
Test(lower, one_update_kernel_for_all_params) {
  Arena pa;
  arena_init(&pa);
  T *t;
  Node *roots[64];
  int nr;
  KProgram *p = mlp_program(&pa, 1, &t, roots, &nr);
  const Kernel *upd = p->kernels[p->nkernels - 1];
  cr_expect_str_eq(upd->opname, "adam_update");
  cr_expect_eq(upd->flops, 8.0 * (6 * 5 + 5 + 5 * 3 + 3));
  Uses u = {.touched = calloc((size_t)p->nbufs + 1, 1)};
  uses_stmts(&u, upd->body);
  for (int i = 0; i < t->g.nupdates; i++) {
    const Node *n = t->g.updates[i];
    for (int j = 0; j < n->nin; j++)
      cr_expect(u.touched[p->node_buf[n->in[j]->id]], "update %d operand %d not touched", i, j);
  }
  free(u.touched);
  arena_free(&pa);
  util_graph_free(t);
}

/* Products read transposed operands in place, and share one packed copy of
 * a right operand; a group holds one product. */
Test(lower, transposes_fold_into_products) {
  T *t = t_src("input a: f32[16, 8]\nparam W: f32[16, 20]\nparam V: f32[20, 12]\n"
               "h = transpose(a) @ W\noutput y = (h @ V) * (relu(h) @ V)\n", 0);
  Arena pa;
  arena_init(&pa);
  Node *root = t->g.outputs[0].node;
  KProgram *p = codegen_lower(&t->d, &pa, &t->g, &root, 1);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  /* h is used twice, so a^T @ W is a kernel of its own; relu(h) @ V joins
   * the mul, h @ V (a second product) does not; V is packed once */
  cr_expect_str_eq(opnames(&pa, p), "pack transpose+matmul pack matmul relu matmul+mul");
  arena_free(&pa);
  util_graph_free(t);
}

/* A sum of products is one product-with-add kernel per term (each group
 * holds one product); a transpose read by several products is read in
 * place by all (one packed copy). */
Test(lower, sums_of_products_and_shared_transposes) {
  T *t = t_src("input a: f32[8, 16]\ninput b: f32[8, 16]\nparam W: f32[16, 12]\nparam V: f32[16, 12]\n"
               "output y = a @ W + b @ V + a @ V\n", 0);
  Arena pa;
  arena_init(&pa);
  Node *root = t->g.outputs[0].node;
  KProgram *p = codegen_lower(&t->d, &pa, &t->g, &root, 1);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_str_eq(opnames(&pa, p), "pack matmul pack matmul+add matmul+add");
  util_graph_free(t);
  t = t_src("input a: f32[8, 16]\nparam W: f32[12, 16]\noutput y = a @ transpose(W)\n"
            "output z = relu(a) @ transpose(W)\n", 0);
  Node *two[2] = {t->g.outputs[0].node, t->g.outputs[1].node};
  p = codegen_lower(&t->d, &pa, &t->g, two, 2);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_str_eq(opnames(&pa, p), "pack matmul relu matmul");
  cr_assert_eq(passes_optimize(&t->d, &t->g), 0);
  const char *text = fuse_print(&t->g, &t->a);
  cr_expect(strstr(text, "\nin place: %2\n"), "%s", text);
  arena_free(&pa);
  util_graph_free(t);
}

/* A convolution and its weight gradient run on the GEMM micro-kernel:
 * im2col then the product (its operand packed); im2row and rows of dy then
 * the product. */
Test(lower, convolutions_are_products) {
  T *t = t_src("input x: f32[2, 3, 9, 9]\nparam w: f32[8, 3, 3, 3]\nloss = sum(conv2d(x, w) * conv2d(x, w))\n"
               "train {\n  optimizer = sgd(lr=0.1)\n}\n", 1);
  cr_assert_eq(pass_autodiff(&t->d, &t->g), 0, "%s", t->d.buf ? t->d.buf : "");
  cr_assert_eq(pass_optim(&t->d, &t->g), 0, "%s", t->d.buf ? t->d.buf : "");
  Arena pa;
  arena_init(&pa);
  Node *root = t->g.updates[0];
  KProgram *p = codegen_lower(&t->d, &pa, &t->g, &root, 1);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  /* CSE leaves one conv2d, one gradient of it (added to itself) */
  cr_expect_str_eq(opnames(&pa, p), "im2col pack conv2d expand+mul im2row rows pack conv2d_bwd_w add sgd_update");
  arena_free(&pa);
  util_graph_free(t);
}

/* ----------------------------------------------------------------- plan */

static size_t aligned(int64_t numel) { return ((size_t)numel * 4 + 63) & ~(size_t)63; }

/* Checks p's plan against the kernels' own buffer uses: offsets 64-aligned
 * and inside the arena, the arena as large as its highest end, and no two
 * buffers whose lives overlap (first to last kernel that loads or stores it;
 * roots and CONSTs to the end) sharing a byte.  Returns the sum of the
 * planned buffers' sizes (what the arena would be with no reuse). */
static size_t check_plan(const KProgram *p, Node *const *roots, int nroots) {
  int nb = p->nbufs, nk = p->nkernels;
  int *first = malloc((size_t)nb * sizeof *first), *last = malloc((size_t)nb * sizeof *last);
  for (int b = 0; b < nb; b++) first[b] = last[b] = -1;
  uint8_t *touched = malloc((size_t)nb + 1);
  for (int k = 0; k < nk; k++) {
    Uses u = {.touched = touched};
    memset(touched, 0, (size_t)nb + 1);
    uses_stmts(&u, p->kernels[k]->body);
    cr_expect_gt(u.nstore, 0, "kernel %d stores nothing", k);
    for (int b = 0; b < nb; b++) {
      if (!touched[b]) continue;
      if (first[b] < 0) first[b] = k;
      last[b] = k;
    }
  }
  free(touched);
  for (int r = 0; r < nroots; r++) {
    int b = p->node_buf[roots[r]->id];
    if (b >= 0) last[b] = nk;
  }
  size_t sum = 0, top = 0;
  int pairs = 0;
  for (int b = 0; b < nb; b++) {
    const KBuffer *x = &p->bufs[b];
    if (x->kind == KB_LEAF) continue;
    if (x->kind == KB_CONST) first[b] = -1, last[b] = nk;
    if (first[b] < 0 && x->kind == KB_ARENA) first[b] = nk;
    cr_expect_eq(x->offset % 64, 0, "buffer %d at %zu", b, x->offset);
    cr_expect_leq(x->offset + aligned(x->numel), p->arena_bytes, "buffer %d ends past the arena", b);
    if (x->offset + aligned(x->numel) > top) top = x->offset + aligned(x->numel);
    sum += aligned(x->numel);
    for (int c = 0; c < b; c++) {
      const KBuffer *y = &p->bufs[c];
      if (y->kind == KB_LEAF || first[b] > last[c] || first[c] > last[b]) continue;
      pairs++;
      int apart = x->offset + aligned(x->numel) <= y->offset || y->offset + aligned(y->numel) <= x->offset;
      cr_expect(apart, "buffers %d [%zu,+%zu) kernels %d..%d and %d [%zu,+%zu) kernels %d..%d overlap", b, x->offset,
                aligned(x->numel), first[b], last[b], c, y->offset, aligned(y->numel), first[c], last[c]);
    }
  }
  cr_expect_eq(top, p->arena_bytes);
  cr_expect_gt(pairs, 0, "no two buffers live at once: a vacuous check");
  free(first);
  free(last);
  return sum;
}

/* A hand-made program for plan_memory: buffer sizes in floats, kernels as
 * the buffers they store and load (-1 ends a list). */
typedef struct Hand {
  Arena a;
  KProgram p;
  Node nodes[16];
} Hand;

static KExpr *kx(Arena *a, KExprKind kind, KType t) {
  KExpr *e = arena_alloc(a, sizeof *e);
  e->kind = kind;
  e->t = t;
  return e;
}

static void hand_kernel(Hand *h, const int *stores, const int *loads) {
  Arena *a = &h->a;
  KExpr *val = kx(a, KX_CONST, KT_F32), *zero = kx(a, KX_CONST, KT_I64);
  for (int i = 0; loads[i] >= 0; i++) {
    KExpr *l = kx(a, KX_LOAD, KT_F32), *s = kx(a, KX_BIN, KT_F32);
    l->buf = loads[i];
    l->a[0] = zero;
    s->op = KB_ADD;
    s->a[0] = val;
    s->a[1] = l;
    val = s;
  }
  KStmt *loop = arena_alloc(a, sizeof *loop), **at = &loop->body;  /* for (v0 = 0; v0 < 1; v0++) { stores } */
  loop->kind = KS_LOOP;
  loop->lo = zero;
  loop->hi = kx(a, KX_CONST, KT_I64);
  loop->hi->i = 1;
  loop->step = 1;
  for (int i = 0; stores[i] >= 0; i++) {
    KStmt *s = arena_alloc(a, sizeof *s);
    s->kind = KS_STORE;
    s->buf = stores[i];
    s->idx = zero;
    s->val = val;
    *at = s;
    at = &s->next;
  }
  Kernel *k = arena_alloc(a, sizeof *k);
  k->name = k->opname = "hand";
  k->nvars = 1;
  k->vtype = arena_alloc(a, sizeof *k->vtype);
  k->body = loop;
  h->p.kernels[h->p.nkernels++] = k;
}

enum { HA, HB, HC, HD, HE, HF, HG, HH, HK, HL, HN, HCOUNT };

/* Best fit, exactly: A..D are stored by kernel 0; A and C die there, so
 * kernel 1 finds the gaps [1,4) and [5,7) (in 64-byte units; the CONST K,
 * live throughout, holds [0,1)).  E (2 units) takes the tighter [5,7)
 * where first fit would take [1,4); F (3) then takes [1,4); G (1) finds no
 * gap and goes to the end.  H, first used by kernel 2, takes the first of
 * two equal 1-unit gaps.  N, never touched, comes last: it fits at 1 unless
 * the root H still holds [4,5).  The leaf L gets no offset. */
static void hand_plan(int h_is_root, const size_t *want_units) {
  Hand *h = calloc(1, sizeof *h);
  arena_init(&h->a);
  static const int64_t numel[HCOUNT] = {40, 16, 17, 1, 32, 48, 3, 1, 5, 100, 64};
  h->p.arena = &h->a;
  h->p.bufs = arena_alloc(&h->a, HCOUNT * sizeof *h->p.bufs);
  h->p.kernels = arena_alloc(&h->a, 4 * sizeof *h->p.kernels);
  h->p.node_buf = arena_alloc(&h->a, HCOUNT * sizeof *h->p.node_buf);
  h->p.nbufs = HCOUNT;
  for (int b = 0; b < HCOUNT; b++) {
    h->nodes[b].id = b;
    h->p.node_buf[b] = b;
    h->p.bufs[b] = (KBuffer){.kind = KB_ARENA, .dt = DT_F32, .numel = numel[b], .offset = 12345, .node = &h->nodes[b]};
  }
  h->p.bufs[HK].kind = KB_CONST;
  h->p.bufs[HL].kind = KB_LEAF;
  hand_kernel(h, (int[]){HA, HB, HC, HD, -1}, (int[]){HL, -1});
  hand_kernel(h, (int[]){HE, HF, HG, -1}, (int[]){HB, HD, -1});
  hand_kernel(h, (int[]){HH, -1}, (int[]){HE, HF, HG, HK, -1});
  Node *root = &h->nodes[HH];
  plan_memory(&h->p, &root, h_is_root);
  static const char names[] = "ABCDEFGHKLN";
  for (int b = 0; b < HCOUNT; b++) {
    if (b == HL) continue;
    cr_expect_eq(h->p.bufs[b].offset, want_units[b] * 64, "%c at %zu, want %zu", names[b], h->p.bufs[b].offset,
                 want_units[b] * 64);
  }
  cr_expect_eq(h->p.bufs[HL].offset, 12345, "the leaf was given an offset");
  cr_expect_eq(h->p.arena_bytes, 9 * 64);
  if (h_is_root) check_plan(&h->p, &root, 1);
  arena_free(&h->a);
  free(h);
}

Test(plan, best_fit_offsets) {
  /*                         A  B  C  D  E  F  G  H  K  L  N */
  hand_plan(1, (size_t[]){1, 4, 5, 7, 5, 1, 8, 4, 0, 0, 5});
  hand_plan(0, (size_t[]){1, 4, 5, 7, 5, 1, 8, 4, 0, 0, 1});
}

/* x @ W, then softmax, six times over: no two of the 12 kernels fuse. */
static T *chain(Node **last, Node **all) {
  T *t = util_graph_new();
  Node *h = in(t, SHAPE(32, 32));
  Shape s = SHAPE(32, 32);
  Node *w = ir_leaf(&t->g, (Loc){0}, OP_PARAM, DT_F32, &s, "W");
  Attr axis = attr_i(1, 0);
  for (int i = 0; i < 6; i++) {
    all[2 * i] = op2(t, OP_MATMUL, h, w);
    h = all[2 * i + 1] = op(t, OP_SOFTMAX, all[2 * i], NULL, &axis);
  }
  *last = h;
  return t;
}

/* 12 buffers of 4 KiB in a chain: each kernel reads the previous one and
 * writes the next, so two alternating buffers suffice, beside the one
 * packed copy of W (gemm_pack) that all six products read. */
Test(plan, a_chain_reuses_two_buffers) {
  Node *last, *all[12];
  T *t = chain(&last, all);
  Arena pa;
  arena_init(&pa);
  KProgram *p = codegen_lower(&t->d, &pa, &t->g, &last, 1);
  cr_assert(p);
  cr_expect_str_eq(opnames(&pa, p), "pack matmul softmax matmul softmax matmul softmax matmul softmax matmul "
                                    "softmax matmul softmax");
  cr_expect_eq(check_plan(p, &last, 1), 13 * 4096);
  cr_expect_eq(p->arena_bytes, 3 * 4096);
  int npack = 0;
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b].scratch) {
      npack++;
      cr_expect_eq(p->bufs[b].offset, 0);
    }
  cr_expect_eq(npack, 1);
  /* the last transpose comes after the last product: it takes W's copy's place */
  for (int i = 0; i < 12; i++)
    cr_expect_eq(p->bufs[p->node_buf[all[i]->id]].offset, i == 11 ? 0 : (size_t)(i % 2 + 1) * 4096);
  arena_free(&pa);
  util_graph_free(t);
}

/* A root keeps its buffer to the end: one in the middle of the chain costs
 * one more buffer; when every node is a root nothing is shared. */
Test(plan, roots_are_never_shared) {
  Node *last, *all[12];
  T *t = chain(&last, all);
  Arena pa;
  arena_init(&pa);
  Node *two[2] = {all[3], last};
  KProgram *p = codegen_lower(&t->d, &pa, &t->g, two, 2);
  cr_assert(p);
  cr_expect_eq(check_plan(p, two, 2), 13 * 4096);
  cr_expect_eq(p->arena_bytes, 4 * 4096);
  size_t mid = p->bufs[p->node_buf[all[3]->id]].offset;
  for (int i = 4; i < 12; i++) cr_expect_neq(p->bufs[p->node_buf[all[i]->id]].offset, mid, "%%%d reuses the root", i);
  p = codegen_lower(&t->d, &pa, &t->g, all, 12);
  cr_assert(p);
  cr_expect_eq(check_plan(p, all, 12), 13 * 4096);
  cr_expect_eq(p->arena_bytes, 12 * 4096);  /* the last transpose reuses W's packed copy */
  arena_free(&pa);
  util_graph_free(t);
}

/* The JIT runs the chain over its two reused buffers and agrees with the
 * reference interpreter. */
Test(plan, reused_chain_computes_the_same) {
  Node *last, *all[12];
  T *t = chain(&last, all);
  float *x = malloc(32 * 32 * 4), *w = malloc(32 * 32 * 4);
  util_fill(x, 32 * 32, 1, -1, 1);
  util_fill(w, 32 * 32, 2, -0.3f, 0.3f);
  Interp it;
  interp_init(&it, &t->g);
  it.val[0] = x;
  it.val[1] = w;
  RunCtx ctx = {.seed = 1, .step = 1};
  cr_assert_eq(interp_run(&it, &t->d, NULL, &ctx), 0, "%s", t->d.buf ? t->d.buf : "");
  JitProgram *j = jit_compile(&t->d, &t->g, &last, 1, 1, 0);
  cr_assert(j, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_eq(jit_peak_bytes(j), 3 * 4096);
  jit_bind(j, t->g.nodes[0], x);
  jit_bind(j, t->g.nodes[1], w);
  cr_assert_eq(jit_run(j, &t->d, &ctx), 0, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_leq(util_compare("chain", jit_value(j, last), it.val[last->id], 32 * 32, 1e-5, 1e-5), 1);
  jit_free(j);
  interp_free(&it);
  free(x);
  free(w);
  util_graph_free(t);
}

/* Forward 576 bytes of buffers (cross_entropy's per-row losses among them)
 * in 256; the training step 1728 in 896 with
 * AVX2's 16-column tiles (the products' epilogues and transposes need no
 * buffers of their own; W2^T's packed copy needs one, padded to whole tiles,
 * so its size depends on the target: each target is pinned). */
Test(plan, mlp_no_live_buffers_overlap) {
  static const size_t want_sum[TARGET_COUNT][2] = {{576, 1728}, {576, 1728}, {576, 1792}};
  static const size_t want_arena[TARGET_COUNT][2] = {{256, 896}, {256, 896}, {256, 960}};
  for (int tk = 0; tk < TARGET_COUNT * 2; tk++) {
    int train = tk % 2, target = tk / 2;
    target_set(target);
    Arena pa;
    arena_init(&pa);
    T *t;
    Node *roots[64];
    int nr;
    KProgram *p = mlp_program(&pa, train, &t, roots, &nr);
    size_t sum = check_plan(p, roots, nr);
    cr_expect_eq(sum, want_sum[target][train], "%s train %d: %zu", target_name(target), train, sum);
    cr_expect_eq(p->arena_bytes, want_arena[target][train], "%s train %d: %zu bytes", target_name(target), train,
                 p->arena_bytes);
    arena_free(&pa);
    util_graph_free(t);
  }
  target_set(-1);
}

/* ------------------------------------------------------------- pipeline */

/* A one-param training step: the gradient's seed broadcast, the relu mask
 * and the chain rule fuse into one kernel, relu(x*w)*2 into another; x*w
 * (used by relu and by relu's gradient) stays alone. */
static const char *TINY = "input x: f32[2, 3]\nparam w: f32[3]\nloss = mean(relu(x * w) * 2)\n"
                          "train {\n  optimizer = sgd(lr=0.5, momentum=0.9)\n}\n";

Test(pipeline, tiny_training_step_groups) {
  T *t = t_src(TINY, 1);
  cr_assert_eq(pass_autodiff(&t->d, &t->g), 0, "%s", t->d.buf ? t->d.buf : "");
  cr_assert_eq(pass_optim(&t->d, &t->g), 0, "%s", t->d.buf ? t->d.buf : "");
  Node *upd = t->g.updates[0];
  Arena pa;
  arena_init(&pa);
  KProgram *p = codegen_lower(&t->d, &pa, &t->g, (Node *[]){t->g.loss, upd}, 2);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_str_eq(opnames(&pa, p), "mul relu+mul mean expand+div+mul+gt+mul+mul sum sgd_update");
  check_plan(p, (Node *[]){t->g.loss, upd}, 2);
  arena_free(&pa);
  cr_assert_eq(passes_optimize(&t->d, &t->g), 0);
  cr_expect_str_eq(sig(t), "input param mul(0,1) relu(2) const=2 mul(3,4) mean(5) const=1 const=6 reshape(7) "
                           "expand(9) div(10,8) mul(11,4) const=0 gt(2,13) mul(12,14) mul(15,0) sum(16) reshape(17) "
                           "state sgd_update(1,18,19)");
  const char *d = fuse_print(&t->g, &t->a);
  cr_expect(strstr(d, "update %20\ngroup %5: %3 -> %5\ngroup %16: %10 %11 %12 %14 %15 -> %16\n"), "%s", d);
  util_graph_free(t);
}

/* `nndc ir --stage opt` dumps the whole optimized training step: pass_optim's state
 * leaf named "<param>.<slot>", its update node, then the fused groups. */
Test(pipeline, cli_ir_stage_opt) {
  char *dir = util_tmpdir(), path[512], cmd[1200];
  snprintf(path, sizeof path, "%s/tiny.nnd", dir);
  cr_assert_eq(util_write_file(path, TINY), 0);
  snprintf(cmd, sizeof cmd, "%s ir %s --stage opt", NNDC_BIN, path);
  int st;
  char *o = util_run(cmd, &st);
  cr_expect_eq(st, 0, "%s", o);
  cr_expect(strstr(o, "\n%18 = reshape(%17, shape=[3]) : f32[3]  # tiny.nnd:3:20\n"
                      "%19 = state(\"w.momentum_buffer\") : f32[3]  # tiny.nnd:2:7\n"
                      "%20 = sgd_update(%1, %18, %19, lr=0.5, momentum=0.9, weight_decay=0, nesterov=0) : f32[]  "
                      "# tiny.nnd:2:7\n"
                      "loss = %6\ngrad w = %18\nupdate %20\n"
                      "group %5: %3 -> %5\ngroup %16: %10 %11 %12 %14 %15 -> %16\n"),
            "%s", o);
  free(o);
  unlink(path);
  rmdir(dir);
  free(dir);
}

/* The attentions passes/attention.c rewrites in src (T keys). */
static int attentions(const char *src) {
  T *t = t_src(src, 0);
  int n = pass_attention(&t->g, ATTN_MIN_KEYS), atn = 0;
  for (int i = 0; i < t->g.nnodes; i++) atn += t->g.nodes[i]->op == OP_ATTN;
  cr_assert_eq(ir_verify(&t->g, &t->d), 0, "%s", t->d.buf ? t->d.buf : "");
  for (int i = 0; i < t->g.nnodes; i++)
    for (int j = 0; j < t->g.nodes[i]->nin; j++) cr_assert_lt(t->g.nodes[i]->in[j]->id, i, "not topological");
  cr_assert_eq(n, atn);
  util_graph_free(t);
  return n;
}

/* Fused: causal or not, any scale spelling, 4-D heads or 3-D; not fused:
 * fewer keys than ATTN_MIN_KEYS, the probabilities also an output, a mask
 * other than -inf, a non-constant scale, a softmax over another axis. */
Test(passes, attention_pattern) {
  const char *qkv = "input q: f32[2, 3, 80, 8]\ninput k: f32[2, 3, 80, 8]\ninput v: f32[2, 3, 80, 4]\n"
                    "input s: f32[]\nkt = transpose(k, [0, 1, 3, 2])\n";
  char src[1024];
  const char *yes[] = {"output o = softmax(tril(q @ kt / sqrt(8), fill=-inf)) @ v\n",
                       "output o = softmax(q @ kt) @ v\n",
                       "output o = softmax(0.5 * (q @ kt), axis=-1) @ v\n",
                       "output o = softmax(tril(q @ kt * 0.3, k=3, fill=-inf)) @ v + softmax(q @ kt) @ v\n"};
  const char *no[] = {"p = softmax(q @ kt)\noutput o = p @ v\noutput p\n",
                      "output o = softmax(tril(q @ kt, fill=-1e9)) @ v\n",
                      "output o = softmax(tril(q @ kt, k=-1, fill=-inf)) @ v\n",
                      "output o = softmax(q @ kt * s) @ v\n",
                      "output o = transpose(softmax(q @ kt, axis=2), [0, 1, 3, 2]) @ v\n"};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
    snprintf(src, sizeof src, "%s%s", qkv, yes[i]);
    cr_expect_eq(attentions(src), i == 3 ? 2 : 1, "%s", yes[i]);
  }
  for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
    snprintf(src, sizeof src, "%s%s", qkv, no[i]);
    cr_expect_eq(attentions(src), 0, "%s", no[i]);
  }
  cr_expect_eq(attentions("input q: f32[4, 63, 8]\ninput k: f32[4, 63, 8]\ninput v: f32[4, 63, 8]\n"
                          "output o = softmax(q @ transpose(k, [0, 2, 1])) @ v\n"), 0, "63 keys");
  cr_expect_eq(attentions("input q: f32[4, 5, 8]\ninput k: f32[4, 64, 8]\ninput v: f32[4, 64, 8]\n"
                          "output o = softmax(q @ transpose(k, [0, 2, 1])) @ v\n"), 1, "64 keys, 5 queries");
}

/* layer_norm is one kernel: its MEAN and VAR are computed by the group of
 * the NORMALIZE and the affine (statistics, normalization and affine in
 * one pass over each row), and still stored for their users; a mean that
 * something before the group also uses keeps its own kernel. */
Test(lower, layer_norm_one_kernel) {
  T *t = t_src("input x: f32[5, 3, 7]\nparam w: f32[7]\nparam b: f32[7]\noutput y = layer_norm(x, w, b) * 2\n", 0);
  Arena pa;
  arena_init(&pa);
  Node *root = t->g.outputs[0].node;
  KProgram *p = codegen_lower(&t->d, &pa, &t->g, &root, 1);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_eq(p->nkernels, 1, "%s", opnames(&pa, p));
  cr_expect_str_eq(opnames(&pa, p), "mean+var+normalize+mul+add+mul");
  arena_free(&pa);
  util_graph_free(t);
  t = t_src("input x: f32[5, 7]\noutput m = mean(x, axis=1, keepdims=true) * 3\noutput y = layer_norm(x)\n", 0);
  arena_init(&pa);
  Node *roots[2] = {t->g.outputs[0].node, t->g.outputs[1].node};
  p = codegen_lower(&t->d, &pa, &t->g, roots, 2);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_str_eq(opnames(&pa, p), "mean mul var normalize");
  arena_free(&pa);
  util_graph_free(t);
  /* batch_norm in training mode: the batch statistics over
   * [N, H, W] per channel (rows of 4 x 3 = 12 positions): one kernel; over
   * [N] of an [N, C] input (no row to vectorize over): the three kernels */
  t = t_src("input x: f32[5, 3, 4, 3]\ninput z: f32[6, 4]\nparam w: f32[3]\nparam b: f32[3]\n"
            "param w2: f32[4]\nparam b2: f32[4]\n"
            "h = batch_norm(x, w, b)\nh2 = batch_norm(z, w2, b2)\noutput y = relu(h)\noutput y2 = h2\n", 1);
  arena_init(&pa);
  Node *r2[2] = {t->g.outputs[0].node, t->g.outputs[1].node};
  p = codegen_lower(&t->d, &pa, &t->g, r2, 2);
  cr_assert(p, "%s", t->d.buf ? t->d.buf : "");
  cr_expect_str_eq(opnames(&pa, p), "mean var normalize+mul+add mean+var+normalize+mul+add+relu");
  arena_free(&pa);
  util_graph_free(t);
}
