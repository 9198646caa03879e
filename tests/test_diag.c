/* test_diag.c - every class of frontend error is reported at the right
 * line and column with the right message, compilation goes on to the next
 * statement and stops after 20 errors, and hostile input (deep nesting, a
 * 1 MB identifier, random bytes, NUL bytes, CRLF, huge loops) gives a
 * diagnostic, never a crash or a hang. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "util.h"

static Arena A;
static Graph G;
static Diag D;

static void setup(void) {
  arena_init(&A);
  graph_init(&G, &A);
  diag_init(&D);
}
static void teardown(void) {
  diag_free(&D);
  arena_free(&A);
}
TestSuite(diag, .init = setup, .fini = teardown);
TestSuite(hostile, .init = setup, .fini = teardown);

/* Compiles src and expects "test.nnd:LINE:COL: error: ...MSG..." (MSG a
 * substring of that message line). */
static void expect_error_o(const char *src, int line, int col, const char *msg, const BuildOpts *o) {
  int rc = util_compile(&D, &G, src, o);
  const char *buf = D.buf ? D.buf : "";
  cr_assert_eq(rc, -1, "expected an error for:\n%s", src);
  cr_assert_gt(D.nerrors, 0);
  char head[64];
  snprintf(head, sizeof head, "test.nnd:%d:%d: error: ", line, col);
  const char *p = strstr(buf, head);
  cr_assert(p, "no error at %d:%d; got:\n%s", line, col, buf);
  const char *eol = strchr(p, '\n');
  const char *m = strstr(p, msg);
  cr_assert(m && m < eol, "error at %d:%d lacks '%s'; got:\n%s", line, col, msg, buf);
}

static void expect_error(const char *src, int line, int col, const char *msg) {
  expect_error_o(src, line, col, msg, NULL);
}

/* ------------------------------------------------------------ names */

Test(diag, unknown_name_with_caret) {
  expect_error("input x: f32[2]\noutput o = x + y\n", 2, 16, "unknown name 'y'");
  cr_assert(strstr(D.buf, "output o = x + y\n               ^\n"), "%s", D.buf);
  cr_assert_eq(D.nerrors, 1);
}

Test(diag, unknown_function) { expect_error("output o = foo(1)\n", 1, 12, "unknown function 'foo'"); }

Test(diag, function_used_as_value) {
  expect_error("input x: f32[2]\noutput o = x + relu\n", 2, 16, "'relu' is a function");
}

Test(diag, unknown_initializer) {
  expect_error("param W: f32[2, 2] = magic\n", 1, 22, "unknown initializer 'magic'");
}

Test(diag, initializer_arguments) {
  expect_error("param W: f32[2] = full\n", 1, 19, "needs an argument");
  teardown(), setup();
  expect_error("param W: f32[2] = uniform(0, 1, 2)\n", 1, 33, "uniform() takes at most 2 arguments, got 3");
  teardown(), setup();
  expect_error("param W: f32[2] = he_normal\n", 1, 19, "rank >= 2");
}

Test(diag, unknown_optimizer_and_keys) {
  expect_error("train { optimizer = adamx(lr=1) }\n", 1, 21, "unknown optimizer 'adamx'");
  teardown(), setup();
  expect_error("train {\n  epoch = 3\n}\n", 2, 3, "unknown train key 'epoch'");
  teardown(), setup();
  expect_error("train {\n  optimizer = sgd(lr=0.1, beta1=0.9)\n}\n", 2, 27, "sgd() has no argument named 'beta1'");
  teardown(), setup();
  expect_error("train {\n  batch = 0\n}\n", 2, 11, "batch = 0 is out of range");
}

/* ---------------------------------------------------------- arity */

Test(diag, wrong_arity) {
  expect_error("input x: f32[2]\noutput o = relu(x, x)\n", 2, 20, "relu() takes at most 1 argument, got 2");
  teardown(), setup();
  expect_error("input x: f32[2]\nloss = mse(x)\n", 2, 8, "mse() needs 2 arguments; 'b' is missing");
  teardown(), setup();
  expect_error("fn f(a, b) = a + b\noutput o = f(1)\n", 2, 12, "f() needs 2 arguments; 'b' is missing");
}

Test(diag, wrong_argument_name) {
  expect_error("input x: f32[2]\noutput o = elu(x, beta=1)\n", 2, 19, "elu() has no argument named 'beta'");
  teardown(), setup();
  expect_error("input x: f32[2]\noutput o = elu(x, 1, alpha=1)\n", 2, 22, "argument 'alpha' of elu() given twice");
  teardown(), setup();
  expect_error("input x: f32[2]\noutput o = concat(x, x, dim=0)\n", 2, 25, "concat() has no argument named 'dim'");
}

Test(diag, positional_after_named) {
  expect_error("input x: f32[2]\noutput o = elu(alpha=1, x)\n", 2, 25, "positional argument after a named one");
}

Test(diag, destructuring_count) {
  expect_error("fn two(a) {\n  return a, a\n}\nx, y, z = two(1)\n", 4, 11, "2 values assigned to 3 names");
}

/* --------------------------------------------------------- shapes */

Test(diag, shape_mismatch_names_both_shapes) {
  expect_error("input a: f32[2, 3]\ninput b: f32[4, 5]\noutput o = a @ b\n", 3, 14, "f32[2,3]");
  cr_assert(strstr(D.buf, "f32[4,5]"), "%s", D.buf);
  teardown(), setup();
  expect_error("input a: f32[2, 3]\ninput b: f32[4]\noutput o = a + b\n", 3, 14, "f32[2,3] and f32[4]");
}

Test(diag, reshape_and_index_shapes) {
  expect_error("input x: f32[2, 3]\noutput o = reshape(x, [4, 2])\n", 2, 12, "cannot reshape f32[2,3]");
  teardown(), setup();
  expect_error("input x: f32[2, 3]\noutput o = x[2]\n", 2, 14, "index 2 is out of range for axis 0 of f32[2,3]");
  teardown(), setup();
  expect_error("input x: f32[2, 3]\noutput o = x[:, 2:1]\n", 2, 17, "slice 2:1 is empty or out of range");
  teardown(), setup();
  expect_error("input x: f32[2, 3]\noutput o = x[0, 0, 0]\n", 2, 13, "3 indices for f32[2,3]");
  teardown(), setup();
  expect_error("input x: f32[2, 3]\noutput o = sum(x, axis=2)\n", 2, 24, "axis 2 is out of range for f32[2,3]");
  teardown(), setup();
  expect_error("input x: f32[2, 3, 4]\noutput o = transpose(x)\n", 2, 12, "transpose(x) needs a 2-D tensor");
}

Test(diag, loss_must_be_scalar) {
  expect_error("input x: f32[2]\nloss = x\n", 2, 8, "loss must be a scalar f32, got f32[2]");
}

/* ------------------------------------------------- compile-time values */

Test(diag, non_constant_index_and_slice) {
  expect_error("input x: f32[4, 4]\ni = x[0, 0]\noutput o = x[:, i]\n", 3, 17, "an index must be a compile-time integer");
  teardown(), setup();
  expect_error("input x: f32[4, 4]\ni = x[0, 0]\noutput o = x[0:i]\n", 3, 16, "a slice bound must be a compile-time integer");
}

Test(diag, non_constant_loop_and_dims) {
  expect_error("input x: f32[3]\nfor t in 0..x { }\n", 2, 13, "a loop bound must be a compile-time integer");
  teardown(), setup();
  expect_error("input x: f32[3]\nparam W: f32[x, 2]\n", 2, 14, "a dimension must be a compile-time integer");
  teardown(), setup();
  expect_error("input x: f32[3]\nconst c = x\n", 2, 11, "const 'c' must be a compile-time number");
  teardown(), setup();
  expect_error("input x: f32[2]\noutput o = 2 ** x\n", 2, 17, "the exponent of '**' must be a compile-time number");
  teardown(), setup();
  expect_error("input x: f32[2]\nparam W: f32[2.5]\n", 2, 14, "a dimension must be a compile-time integer");
}

Test(diag, symbolic_dims) {
  expect_error("param W: f32[S, 2]\n", 1, 14, "symbolic dimension 'S' is not bound; use -D S=VALUE");
  teardown(), setup();
  Feed feeds[2] = {{"x", 10}, {"y", 20}};
  BuildOpts o = {0};
  o.feeds = feeds;
  o.nfeeds = 2;
  expect_error_o("input x: f32[N, 2]\ninput y: i32[N]\n", 2, 14, "'N' is bound to 10 and to 20", &o);
}

Test(diag, bad_dimensions) {
  expect_error("input x: f32[0]\n", 1, 14, "dimension must be positive, got 0");
  teardown(), setup();
  expect_error("input x: f32[4, -3]\n", 1, 17, "dimension must be positive, got -3");
  teardown(), setup();
  expect_error("input x: f32[1000000, 1000000, 1000000]\n", 1, 32, "tensor too large");
  teardown(), setup();
  expect_error("h = zeros([3, 0])\n", 1, 15, "dimension must be positive, got 0");
  teardown(), setup();
  expect_error("const a = 9223372036854775807 * 2\n", 1, 11, "integer literal");
  teardown(), setup();
  expect_error("const a = 3000000000 * 3000000000 * 3\n", 1, 35, "integer overflow");
  teardown(), setup();
  expect_error("input x: f32[1, 2, 3, 4, 5, 6, 7, 8, 9]\n", 1, 10, "rank 9 exceeds the maximum of 8");
  teardown(), setup();
  expect_error("const a = -(-2305843009213693952 * 4)\n", 1, 11, "integer overflow");
  teardown(), setup();
  expect_error("const a = 3 ** 1000000000000000000\n", 1, 13, "integer overflow");
  teardown(), setup();
  cr_assert_eq(util_compile(&D, &G, "const a = (-1) ** 1000000000000000001\ninput x: f32[-a]\n", NULL), 0);
  cr_assert_eq(G.inputs[0].node->shape.dim[0], 1);
}

/* ------------------------------------------------------ duplicates */

Test(diag, duplicate_names) {
  expect_error("input x: f32[2]\ninput x: f32[3]\n", 2, 7, "duplicate name 'x'");
  teardown(), setup();
  expect_error("param W: f32[2]\nparam W: f32[2]\n", 2, 7, "duplicate name 'W'");
  teardown(), setup();
  expect_error("input W: f32[2]\nparam W: f32[2]\n", 2, 7, "duplicate name 'W'");
  teardown(), setup();
  expect_error("fn f(a) = a\nfn f(b) = b\n", 2, 4, "duplicate function 'f'");
  teardown(), setup();
  expect_error("input x: f32[2]\noutput o = x\noutput o = x\n", 3, 8, "duplicate output name 'o'");
  teardown(), setup();
  expect_error("fn d(x, n) {\n  param W: f32[n]\n  return x + W\n}\ninput x: f32[4]\nh = d(x, 4)\nh = d(x, 2)\n",
               2, 9, "param 'h.W' declared again as f32[2]; it was f32[4]");
}

Test(diag, rebinding_input_or_param) {
  expect_error("input x: f32[2]\nx = x + 1\n", 2, 1, "cannot rebind input 'x'");
  teardown(), setup();
  expect_error("param W: f32[2]\nfor W in 0..2 { }\n", 2, 5, "cannot rebind param 'W'");
  teardown(), setup();
  expect_error("input x: f32[2]\noutput x = x * 2\n", 2, 8, "cannot rebind input 'x'");
}

/* --------------------------------------------------- functions */

Test(diag, layer_call_not_whole_rhs) {
  expect_error("fn d(x) {\n  param W: f32[2, 2]\n  return x @ W\n}\ninput x: f32[1, 2]\nh = relu(d(x))\n",
               6, 10, "layer 'd' declares params, so its call must be the whole right-hand side");
}

Test(diag, recursion) {
  expect_error("fn f(x) = x + f(x)\noutput o = f(1)\n", 1, 15, "recursive call of 'f'");
  teardown(), setup();
  expect_error("fn f(x) = g(x)\nfn g(x) = f(x)\noutput o = f(1)\n", 2, 11, "recursive call of 'f'");
}

Test(diag, deep_call_chain) {
  char src[8192];
  size_t n = 0;
  for (int i = 0; i < 100; i++) n += (size_t)snprintf(src + n, sizeof src - n, "fn f%d(x) = f%d(x)\n", i, i + 1);
  n += (size_t)snprintf(src + n, sizeof src - n, "fn f100(x) = x\noutput o = f0(1)\n");
  cr_assert_eq(util_compile(&D, &G, src, NULL), -1);
  cr_assert(strstr(D.buf, "calls nested more than 64 deep"), "%s", D.buf);
}

Test(diag, statements_outside_their_place) {
  expect_error("fn f(x) {\n  output o = x\n  return x\n}\nh = f(1)\n", 2, 3, "output must be at file level");
  teardown(), setup();
  expect_error("return 1\n", 1, 1, "'return' outside a function");
  teardown(), setup();
  expect_error("fn f(x) {\n  return x\n  y = 1\n}\n", 3, 3, "expected '}' after return");
}

/* -------------------------------------------------------- imports */

Test(diag, missing_and_unreadable_imports) {
  expect_error("import \"nope.nnd\"\ninput x: f32[2]\n", 1, 8, "cannot open");
  cr_assert(strstr(D.buf, "nope.nnd"), "%s", D.buf);
  teardown(), setup();
  char *dir = util_tmpdir();
  char m[512], sub[512];
  snprintf(m, sizeof m, "%s/m.nnd", dir);
  snprintf(sub, sizeof sub, "%s/sub.nnd", dir);
  cr_assert_eq(mkdir(sub, 0755), 0); /* a directory where a file should be */
  cr_assert_eq(util_write_file(m, "# comment\nimport \"sub.nnd\"\n"), 0);
  BuildOpts o = {0};
  cr_assert_eq(fe_compile_file(&D, &G, m, &o), -1);
  char head[600];
  snprintf(head, sizeof head, "%s:2:8: error: cannot", m);
  cr_assert(strstr(D.buf, head), "%s", D.buf);
  free(dir);
}

/* -------------------------------------------------------- lexical */

Test(diag, lexical_errors) {
  expect_error("input x: f32[2] $\n", 1, 17, "unexpected byte 0x24");
  teardown(), setup();
  expect_error("import \"abc\n", 1, 8, "unterminated string");
  teardown(), setup();
  expect_error("const a = 1e+\n", 1, 11, "malformed number '1e+'");
  teardown(), setup();
  expect_error("const a = 12abc\n", 1, 11, "malformed number '12abc'");
  teardown(), setup();
  expect_error("const a = 1.2.3\n", 1, 11, "malformed number '1.2.3'");
  teardown(), setup();
  expect_error("const a = \xc3\xa9\n", 1, 11, "unexpected byte 0xC3");
}

Test(diag, syntax_errors_recover) {
  int rc = util_compile(&D, &G, "h = 1 +\ninput x: f32[2]\nk = (x\noutput o = x @\n", NULL);
  cr_assert_eq(rc, -1);
  cr_assert(strstr(D.buf, "test.nnd:1:8: error: expected an expression, found end of line"), "%s", D.buf);
  /* inside the open '(' the newline does not end line 3's statement */
  cr_assert(strstr(D.buf, "test.nnd:4:1: error: expected ')', found 'output'"), "%s", D.buf);
  cr_assert_eq(D.nerrors, 2, "%s", D.buf);
  teardown(), setup();
  expect_error("input x: f33[2]\n", 1, 10, "unknown type 'f33' (expected f32 or i32)");
  teardown(), setup();
  expect_error("input x: f32[2] y\n", 1, 17, "expected end of statement, found 'y'");
  teardown(), setup();
  expect_error("output o = f(1)(2)\n", 1, 16, "a call's result cannot be called");
}

/* ------------------------------------------------------- convolutions */

/* conv2d / conv_transpose2d misuse: groups, channel dims, non-constant or
 * out-of-range stride, dilation and padding, pair lists of the wrong
 * length, output_padding too large, a dilated kernel past the padded input,
 * a wrong bias, no output left: each an error at its argument or call. */
Test(diag, convolution_arguments) {
  static const struct { const char *src; int line, col; const char *msg; } cs[] = {
    {"input x: f32[2, 3, 8, 8]\nparam w: f32[4, 1, 3, 3]\noutput y = conv2d(x, w, groups=2)\n",
     3, 12, "groups=2 must divide the input channels (3)"},
    {"input x: f32[2, 4, 8, 8]\nparam w: f32[3, 2, 3, 3]\noutput y = conv2d(x, w, groups=2)\n",
     3, 12, "and the output channels (3)"},
    {"input x: f32[2, 4, 8, 8]\nparam w: f32[4, 4, 3, 3]\noutput y = conv2d(x, w, groups=2)\n",
     3, 12, "w[O,C/2,KH,KW]"},
    {"input x: f32[2, 4, 8, 8]\nparam w: f32[4, 4, 3, 3]\noutput y = conv2d(x, w, groups=0)\n",
     3, 32, "groups must be >= 1, got 0"},
    {"input x: f32[2, 4, 8, 8]\ninput s: f32[1]\nparam w: f32[4, 4, 3, 3]\noutput y = conv2d(x, w, stride=s)\n",
     4, 32, "stride must be a compile-time integer"},
    {"input x: f32[2, 4, 8, 8]\nparam w: f32[4, 4, 3, 3]\noutput y = conv2d(x, w, stride=[2, 1.5])\n",
     3, 36, "stride must be a compile-time integer"},
    {"input x: f32[2, 4, 8, 8]\nparam w: f32[4, 4, 3, 3]\noutput y = conv2d(x, w, stride=0)\n",
     3, 32, "stride must be >= 1, got 0"},
    {"input x: f32[2, 4, 8, 8]\nparam w: f32[4, 4, 3, 3]\noutput y = conv2d(x, w, dilation=[1, 0])\n",
     3, 38, "dilation must be >= 1, got 0"},
    {"input x: f32[2, 4, 8, 8]\nparam w: f32[4, 4, 3, 3]\noutput y = conv2d(x, w, padding=-1)\n",
     3, 33, "padding must be >= 0, got -1"},
    {"input x: f32[2, 4, 8, 8]\nparam w: f32[4, 4, 3, 3]\noutput y = conv2d(x, w, padding=[1, 2, 3])\n",
     3, 33, "padding must be an integer or a pair [h, w], got a list of 3"},
    {"input x: f32[1, 1, 5, 5]\nparam w: f32[1, 1, 3, 3]\noutput y = conv2d(x, w, dilation=3)\n",
     3, 12, "with dilation [3, 3] larger than padded input f32[1,1,5,5]"},
    {"input x: f32[1, 4, 5, 5]\nparam w: f32[4, 3, 3, 3]\noutput y = conv_transpose2d(x, w, stride=2, output_padding=2)\n",
     3, 60, "output_padding 2 must be smaller than the stride (2) or the dilation (1)"},
    {"input x: f32[1, 4, 5, 5]\nparam w: f32[4, 3, 3, 3]\nparam b: f32[4]\noutput y = conv_transpose2d(x, w, b)\n",
     4, 35, "conv_transpose2d bias must be f32[3]"},
    {"input x: f32[1, 3, 5, 5]\nparam w: f32[4, 3, 3, 3]\noutput y = conv_transpose2d(x, w)\n",
     3, 12, "expects f32 x[N,C_in,H,W] and w[C_in,C_out/groups,KH,KW], got f32[1,3,5,5] and f32[4,3,3,3]"},
    {"input x: f32[1, 4, 5, 5]\nparam w: f32[4, 3, 3, 3]\noutput y = conv_transpose2d(x, w, groups=3)\n",
     3, 12, "groups=3 must divide the input channels (4)"},
    {"input x: f32[1, 4, 1, 1]\nparam w: f32[4, 3, 1, 1]\noutput y = conv_transpose2d(x, w, padding=1)\n",
     3, 12, "leaves no output"},
  };
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
    if (i) teardown(), setup();
    expect_error(cs[i].src, cs[i].line, cs[i].col, cs[i].msg);
    cr_expect_eq(D.nerrors, 1, "%s", D.buf);
  }
}

Test(diag, semantic_errors_continue_and_stop_at_20) {
  int rc = util_compile(&D, &G, "a = b\nc = d\ne = a + 1\n", NULL);
  cr_assert_eq(rc, -1);
  cr_assert_eq(D.nerrors, 2, "%s", D.buf); /* 'a' is an error value: no third message */
  teardown(), setup();
  char src[4096] = "";
  for (int i = 0; i < 40; i++) strcat(src, "x = $\n");
  cr_assert_eq(util_compile(&D, &G, src, NULL), -1);
  cr_assert_eq(D.nerrors, 20);
  teardown(), setup();
  src[0] = 0;
  for (int i = 0; i < 40; i++) strcat(src, "x = unknown\n");
  cr_assert_eq(util_compile(&D, &G, src, NULL), -1);
  cr_assert_eq(D.nerrors, 20);
}

/* -------------------------------------------------------- hostile */

static char *repeat(const char *head, const char *unit, size_t n, const char *mid, const char *unit2,
                    size_t n2, const char *tail) {
  size_t len = strlen(head) + strlen(unit) * n + strlen(mid) + strlen(unit2) * n2 + strlen(tail) + 1;
  char *s = malloc(len), *p = s;
  p += sprintf(p, "%s", head);
  for (size_t i = 0; i < n; i++) p += sprintf(p, "%s", unit);
  p += sprintf(p, "%s", mid);
  for (size_t i = 0; i < n2; i++) p += sprintf(p, "%s", unit2);
  sprintf(p, "%s", tail);
  return s;
}

Test(hostile, deep_parentheses) {
  char *s = repeat("output o = ", "(", 100000, "1", ")", 100000, "\n");
  cr_assert_eq(util_compile(&D, &G, s, NULL), -1);
  cr_assert(strstr(D.buf, "test.nnd:1:"), "%s", D.buf);
  cr_assert(strstr(D.buf, "nesting too deep (more than 256 levels)"), "%s", D.buf);
  free(s);
  /* 200 levels are fine */
  teardown(), setup();
  s = repeat("const c = ", "(", 200, "1", ")", 200, "\ninput x: f32[c]\n");
  cr_assert_eq(util_compile(&D, &G, s, NULL), 0, "%s", D.buf ? D.buf : "");
  free(s);
}

Test(hostile, deep_unary_lists_and_blocks) {
  char *s = repeat("const c = ", "-", 100000, "1", "", 0, "\n");
  cr_assert_eq(util_compile(&D, &G, s, NULL), -1);
  cr_assert(strstr(D.buf, "nesting too deep"), "%s", D.buf);
  free(s);
  teardown(), setup();
  s = repeat("h = ", "[", 100000, "", "]", 100000, "\n");
  cr_assert_eq(util_compile(&D, &G, s, NULL), -1);
  cr_assert(strstr(D.buf, "nesting too deep"), "%s", D.buf);
  free(s);
  teardown(), setup();
  s = repeat("", "for i in 0..1 {\n", 50000, "", "}\n", 50000, "");
  cr_assert_eq(util_compile(&D, &G, s, NULL), -1);
  cr_assert(strstr(D.buf, "nesting too deep"), "%s", D.buf);
  free(s);
}

Test(hostile, megabyte_identifier) {
  char *s = repeat("output o = ", "a", 1 << 20, "", "", 0, " + 1\n");
  cr_assert_eq(util_compile(&D, &G, s, NULL), -1);
  cr_assert(strstr(D.buf, "test.nnd:1:12: error: unknown name 'aaaa"), "%.200s", D.buf);
  cr_assert_lt(strlen(D.buf), 4096); /* messages and quoted lines are capped */
  free(s);
  teardown(), setup();
  s = repeat("input ", "b", 1 << 20, ": f32[2]\noutput o = ", "b", 1 << 20, "\n");
  cr_assert_eq(util_compile(&D, &G, s, NULL), 0);
  cr_assert_eq(strlen(G.inputs[0].name), (size_t)1 << 20);
  free(s);
}

Test(hostile, random_bytes) {
  uint64_t x = 88172645463325252ull;
  for (int round = 0; round < 40; round++) {
    size_t n = 1 + (size_t)(x % 20000);
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      /* half the rounds: bytes from the language's alphabet */
      s[i] = round & 1 ? (char)(1 + x % 255) : "ab(),[]:=+-*/@ 0.1e\n{}#fnfor in input f32 x"[x % 44];
    }
    s[n] = 0;
    int rc = util_compile(&D, &G, s, NULL);
    cr_assert_eq(rc != 0, D.nerrors > 0);
    cr_assert_leq(D.nerrors, 30);
    free(s);
    teardown(), setup();
  }
}

Test(hostile, empty_and_comment_only) {
  cr_assert_eq(util_compile(&D, &G, "", NULL), 0);
  cr_assert_eq(G.nnodes, 0);
  teardown(), setup();
  cr_assert_eq(util_compile(&D, &G, "# nothing\n\n   \n;;\n", NULL), 0);
  cr_assert_eq(D.nerrors, 0);
}

Test(hostile, crlf_positions) {
  expect_error("input x: f32[2]\r\noutput o = x + y\r\n", 2, 16, "unknown name 'y'");
  /* the quoted line does not carry the '\r' */
  cr_assert(strstr(D.buf, "output o = x + y\n"), "%s", D.buf);
}

Test(hostile, nul_byte_in_file) {
  char *dir = util_tmpdir();
  char m[512];
  snprintf(m, sizeof m, "%s/nul.nnd", dir);
  FILE *f = fopen(m, "wb");
  cr_assert(f);
  fwrite("input x: f32[2]\0\noutput o = x\n", 1, 30, f);
  fclose(f);
  BuildOpts o = {0};
  cr_assert_eq(fe_compile_file(&D, &G, m, &o), -1);
  char head[600];
  snprintf(head, sizeof head, "%s:1:16: error: unexpected byte 0x00", m);
  cr_assert(strstr(D.buf, head), "%s", D.buf);
  free(dir);
}

Test(hostile, huge_loops_are_bounded) {
  cr_assert_eq(util_compile(&D, &G, "for i in 0..1000000000000 { }\n", NULL), -1);
  cr_assert(strstr(D.buf, "test.nnd:1:1: error: model too large"), "%s", D.buf);
  teardown(), setup();
  cr_assert_eq(util_compile(&D, &G, "c = 0\nfor i in 0..3000000 {\n  c = c + 1\n}\n", NULL), -1);
  cr_assert(strstr(D.buf, "model too large"), "%s", D.buf);
}

/* ------------------------------------------------- train steps (spec 8) */

/* Two layers (a.W, a.b and b.W, b.b), two named losses; STEPS is the train block's body. */
static void expect_step_error(const char *steps, int line, int col, const char *msg, int training) {
  char src[2048];
  snprintf(src, sizeof src,
           "fn dense(x, n) {\n  param W: f32[dim(x, -1), n]\n  param b: f32[n]\n  return x @ W + b\n}\n"
           "input x: f32[4, 3]\na = dense(x, 3)\nb = dense(a, 1)\nparam c: f32[1]\n"
           "loss la = mean(a * a)\nloss lb = mean(b * b) + sum(c * c)\n"
           "train {\n%s}\n", steps);
  BuildOpts o = {.training = training};
  teardown(), setup();
  expect_error_o(src, line, col, msg, &o);
}

Test(diag, train_steps) {
  /* line 12 is `train {`; the steps start on line 13 */
  expect_step_error("  step s { loss = nope; params = [a]; optimizer = sgd }\n", 13, 19, "'nope' is not a named loss", 0);
  expect_step_error("  step s { loss = la; params = [a, q]; optimizer = sgd }\n", 13, 36, "'q' names no param", 0);
  expect_step_error("  step s { loss = la; params = [a.W]; optimizer = sgd }\n", 13, 34, "unexpected byte", 0);
  expect_step_error("  step s { loss = la; params = [a]; optimizer = sgd }\n  step t { loss = lb; params = [b, a]; "
                    "optimizer = sgd }\n", 14, 36, "param 'a.W' is in step 's' and in step 't'", 0);
  expect_step_error("  step s { loss = la; params = [a] }\n", 13, 8, "step 's' needs an optimizer", 0);
  expect_step_error("  step s { params = [a]; optimizer = sgd }\n", 13, 8, "step 's' needs a loss", 0);
  expect_step_error("  step s { loss = la; optimizer = sgd }\n", 13, 8, "step 's' needs params", 0);
  expect_step_error("  optimizer = adam\n  step s { loss = la; params = [a]; optimizer = sgd }\n", 13, 3,
                    "each step its own optimizer", 0);
  expect_step_error("  step s { loss = la; params = [a]; optimizer = sgd }\n  step s { loss = lb; params = [b]; "
                    "optimizer = sgd }\n", 14, 8, "duplicate step 's'", 0);
  expect_step_error("  step s { loss = la; lr = 1; params = [a]; optimizer = sgd }\n", 13, 23,
                    "unknown key 'lr' in step 's'", 0);
  expect_step_error("  step s { loss = la; params = a; optimizer = sgd }\n", 13, 32, "must be a non-empty list", 0);
  expect_step_error("  step s { loss = la; params = []; optimizer = sgd }\n", 13, 32, "must be a non-empty list", 0);
  expect_step_error("  step s { loss = la; loss = lb; params = [a]; optimizer = sgd }\n", 13, 23, "sets loss twice", 0);
  expect_step_error("  step s { loss = la; params = [a]; optimizer = nadam }\n", 13, 49, "unknown optimizer", 0);
  expect_step_error("  batch = 4\n", 10, 11, "named losses are trained by step blocks", 1);
}

Test(diag, named_losses) {
  expect_error("input x: f32[2]\nloss l = x\n", 2, 10, "loss must be a scalar");
  expect_error("input x: f32[2]\nloss l = sum(x)\nmetric l = mean(x)\n", 3, 8, "duplicate metric name 'l'");
  expect_error("input x: f32[2]\nloss l = sum(x)\nloss l = mean(x)\n", 3, 6, "duplicate loss name 'l'");
}
