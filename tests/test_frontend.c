/* test_frontend.c - the .nnd frontend: every shared and example model
 * compiles with the expected params; symbolic dims bind from -D, feeds, the
 * train block and --batch; loops unroll; layers name and share params;
 * shadowing, imports, -D consts, folding, indexing, the train block and the
 * parsed dump. */
#include <criterion/criterion.h>
#include <math.h>
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
TestSuite(frontend, .init = setup, .fini = teardown);

static void compile_ok(const char *src, const BuildOpts *o) {
  int rc = util_compile(&D, &G, src, o);
  cr_assert_eq(rc, 0, "compile failed:\n%s", D.buf ? D.buf : "");
  cr_assert_eq(D.nerrors, 0);
}

static void compile_model(const char *dir, const char *name, const BuildOpts *o) {
  char path[1024];
  BuildOpts def = {0};
  snprintf(path, sizeof path, "%s/%s.nnd", dir, name);
  int rc = fe_compile_file(&D, &G, path, o ? o : &def);
  cr_assert_eq(rc, 0, "%s failed:\n%s", path, D.buf ? D.buf : "");
}

static Node *param(const char *name) {
  for (int i = 0; i < G.nparams; i++)
    if (!strcmp(G.params[i].name, name)) return G.params[i].node;
  cr_assert_fail("no param %s", name);
  return NULL;
}

static void expect_shape(const Node *n, const char *want) {
  char buf[128];
  shape_str(&n->shape, n->dt, buf, sizeof buf);
  cr_assert_str_eq(buf, want);
}

static int count_op(Op op) {
  int n = 0;
  for (int i = 0; i < G.nnodes; i++) n += G.nodes[i]->op == op;
  return n;
}

static int64_t sym(const char *name) {
  for (int i = 0; i < G.nsyms; i++)
    if (!strcmp(G.syms[i].name, name)) return G.syms[i].value;
  cr_assert_fail("symbol %s not bound", name);
  return -1;
}

static const char *models[] = {"mlp", "logreg", "deep_mlp", "lenet", "rnn", "lstm", "autoencoder"};

Test(frontend, shared_models_compile) {
  for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
    teardown();
    setup();
    compile_model(NNDC_SHARED_DIR "/models", models[i], NULL);
    cr_assert_eq(D.nerrors, 0, "%s", models[i]);
    cr_assert(G.loss && G.nparams > 0 && G.ninputs > 0, "%s", models[i]);
    cr_assert_str_eq(G.model_name, models[i]);
  }
  teardown();
  setup();
  compile_model(NNDC_SHARED_DIR "/models", "linreg", NULL);
  expect_shape(param("w"), "f32[3,1]");
}

Test(frontend, example_models_compile_like_shared) {
  for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
    teardown();
    setup();
    compile_model(NNDC_SHARED_DIR "/models", models[i], NULL);
    int np = G.nparams, ni = G.ninputs, no = G.noutputs, nm = G.nmetrics;
    int64_t values = 0;
    for (int k = 0; k < G.nparams; k++) values += shape_numel(&G.params[k].node->shape);
    teardown();
    setup();
    compile_model(NNDC_SRC_DIR "/examples", models[i], NULL);
    int64_t values2 = 0;
    for (int k = 0; k < G.nparams; k++) values2 += shape_numel(&G.params[k].node->shape);
    cr_assert_eq(G.nparams, np, "%s", models[i]);
    cr_assert_eq(values2, values, "%s", models[i]);
    cr_assert_eq(G.ninputs, ni, "%s", models[i]);
    cr_assert_eq(G.noutputs, no, "%s", models[i]);
    cr_assert_eq(G.nmetrics, nm, "%s", models[i]);
    cr_assert(G.loss, "%s", models[i]);
  }
}

Test(frontend, mlp_graph) {
  compile_model(NNDC_SHARED_DIR "/models", "mlp", NULL);
  cr_assert_eq(G.nparams, 4);
  cr_assert_str_eq(G.params[0].name, "W1");
  expect_shape(param("W1"), "f32[784,256]");
  cr_assert_eq(param("W1")->init.kind, INIT_HE_NORMAL);
  cr_assert_eq(param("W2")->init.kind, INIT_GLOROT_UNIFORM); /* default, rank 2 */
  cr_assert_eq(param("b2")->init.kind, INIT_ZEROS);          /* default, rank 1 */
  /* the train block's batch binds N */
  cr_assert_eq(sym("N"), 64);
  expect_shape(G.inputs[0].node, "f32[64,784]");
  expect_shape(G.inputs[1].node, "i32[64]");
  expect_shape(G.outputs[0].node, "f32[64,10]");
  cr_assert_str_eq(G.outputs[0].name, "probs");
  cr_assert_str_eq(G.metrics[0].name, "accuracy");
  cr_assert_eq(G.loss->op, OP_CROSS_ENTROPY);
  cr_assert_eq(G.train.opt.kind, OPTIM_ADAM);
  cr_assert_float_eq(G.train.opt.lr, 0.001, 1e-12);
  cr_assert_float_eq(G.train.opt.beta2, 0.999, 1e-12);
  cr_assert_eq(G.train.batch, 64);
  cr_assert_eq(G.train.epochs, 5);
  cr_assert_eq(G.train.shuffle, 1);
  cr_assert_eq(count_op(OP_MATMUL), 2);
  cr_assert_eq(count_op(OP_ARGMAX), 1);
  /* every node carries its source position */
  for (int i = 0; i < G.nnodes; i++) cr_assert(G.nodes[i]->loc.src && G.nodes[i]->loc.line > 0);
  cr_assert_eq(G.loss->loc.line, 13);
  cr_assert_eq(G.loss->loc.col, 8);
}

Test(frontend, layers_name_params) {
  compile_model(NNDC_SHARED_DIR "/models", "deep_mlp", NULL);
  expect_shape(param("h1.W"), "f32[784,512]");
  expect_shape(param("h1.b"), "f32[512]");
  expect_shape(param("h2.W"), "f32[512,256]");
  expect_shape(param("logits.W"), "f32[256,10]");
  cr_assert_eq(param("h1.W")->init.kind, INIT_HE_UNIFORM);
  cr_assert_eq(G.train.opt.kind, OPTIM_RMSPROP);
  cr_assert_eq(G.train.seed, 7);
  cr_assert_eq(count_op(OP_DROPOUT), 0); /* not training: identity */
  cr_assert_eq(count_op(OP_ELU), 2);
}

Test(frontend, dropout_in_training) {
  BuildOpts o = {0};
  o.training = 1;
  compile_model(NNDC_SHARED_DIR "/models", "deep_mlp", &o);
  cr_assert_eq(G.training, 1);
  cr_assert_eq(count_op(OP_DROPOUT), 2);
  int key = 0;
  for (int i = 0; i < G.nnodes; i++)
    if (G.nodes[i]->op == OP_DROPOUT) {
      cr_assert_eq(G.nodes[i]->a.i[0], ++key);
      cr_assert_float_eq(G.nodes[i]->a.f[0], 0.2, 1e-12);
    }
}

Test(frontend, rnn_unrolled_with_shared_params) {
  compile_model(NNDC_SHARED_DIR "/models", "rnn", NULL);
  cr_assert_eq(G.nparams, 5);
  expect_shape(param("h.Wx"), "f32[28,128]");
  expect_shape(param("h.Wh"), "f32[128,128]");
  expect_shape(param("h.b"), "f32[128]");
  cr_assert_eq(count_op(OP_MATMUL), 2 * 28 + 1);
  cr_assert_eq(count_op(OP_TANH), 28);
  cr_assert_eq(count_op(OP_SLICE), 28);
  /* x[:, t, :] is a slice at t then a reshape dropping the axis */
  int t = 0;
  for (int i = 0; i < G.nnodes; i++) {
    Node *n = G.nodes[i];
    if (n->op != OP_SLICE) continue;
    cr_assert_eq(n->a.i[0], 0);
    cr_assert_eq(n->a.i[1], t++);
    expect_shape(n, "f32[64,1,28]");
  }
}

Test(frontend, lstm_params_and_slices) {
  compile_model(NNDC_SHARED_DIR "/models", "lstm", NULL);
  expect_shape(param("h.Wx"), "f32[28,512]");
  expect_shape(param("h.Wh"), "f32[128,512]");
  expect_shape(param("h.b"), "f32[512]");
  cr_assert_eq(G.nparams, 5);
  cr_assert_eq(count_op(OP_SIGMOID), 3 * 28);
  expect_shape(G.outputs[0].node, "f32[64,10]");
}

Test(frontend, lenet_conv_bias_and_flatten) {
  compile_model(NNDC_SHARED_DIR "/models", "lenet", NULL);
  cr_assert_eq(count_op(OP_CONV2D), 2);
  cr_assert_eq(count_op(OP_MAXPOOL2D), 2);
  int found = 0;
  for (int i = 0; i < G.nnodes; i++) {
    Node *n = G.nodes[i];
    if (n->op == OP_RESHAPE && n->in[0] == param("c1b")) {
      expect_shape(n, "f32[6,1,1]");
      found = 1;
    }
    if (n->op == OP_MAXPOOL2D) cr_assert(n->a.i[0] == 2 && n->a.i[1] == 2);
  }
  cr_assert(found);
}

Test(frontend, batch_binding_order) {
  const char *src = "input x: f32[N, 4]\ninput y: f32[N]\noutput o = sum(x, axis=1) + y\n";
  compile_ok(src, NULL);
  cr_assert_eq(sym("N"), 32); /* the default batch */
  expect_shape(G.outputs[0].node, "f32[32]");
  teardown(), setup();
  BuildOpts o = {0};
  o.batch = 7;
  compile_ok("input x: f32[N, 4]\noutput o = x\ntrain { batch = 12 }\n", &o);
  cr_assert_eq(sym("N"), 7); /* --batch beats the train block */
  teardown(), setup();
  compile_ok("input x: f32[N, 4]\noutput o = x\ntrain { batch = 12 }\n", NULL);
  cr_assert_eq(sym("N"), 12);
  teardown(), setup();
  Define def = {"N", 5, 1};
  o.defs = &def;
  o.ndefs = 1;
  compile_ok("input x: f32[N, 4]\noutput o = x\n", &o); /* -D beats --batch */
  cr_assert_eq(sym("N"), 5);
  teardown(), setup();
  Feed feed = {"x", 100};
  BuildOpts of = {0};
  of.feeds = &feed;
  of.nfeeds = 1;
  compile_ok(src, &of); /* feeding 100 samples to x binds N for y too */
  cr_assert_eq(sym("N"), 100);
  expect_shape(G.inputs[1].node, "f32[100]");
  teardown(), setup();
  compile_ok("input y: f32[N]\ninput x: f32[N, 4]\n", &of); /* even when y comes first */
  cr_assert_eq(sym("N"), 100);
  expect_shape(G.inputs[0].node, "f32[100]");
}

Test(frontend, symbols_in_other_dims) {
  Define def = {"S", 9, 1};
  BuildOpts o = {&def, 1, NULL, 0, 0, 0};
  compile_ok("input x: f32[N, S]\nparam W: f32[S, N]\nh = zeros([N, S])\noutput o = x + h\n", &o);
  cr_assert_eq(sym("S"), 9);
  expect_shape(param("W"), "f32[9,32]");
  expect_shape(G.outputs[0].node, "f32[32,9]");
}

Test(frontend, loops_unroll_and_shadow) {
  compile_ok("input x: f32[2, 3]\nh = x\nfor t in 0..5 {\n  h = h + t\n}\noutput o = h * 2\n", NULL);
  cr_assert_eq(count_op(OP_ADD), 5);
  cr_assert_eq(count_op(OP_MUL), 1);
  /* the loop variable became a scalar const 0..4 */
  int k = 0;
  for (int i = 0; i < G.nnodes; i++)
    if (G.nodes[i]->op == OP_ADD) {
      Node *c = G.nodes[i]->in[1];
      cr_assert_eq(c->op, OP_CONST);
      cr_assert_eq(c->shape.rank, 0);
      cr_assert_float_eq(c->a.f[0], (double)k, 1e-12);
      k++;
    }
  /* o = (last h) * 2: shadowing gives the newest binding */
  Node *o = G.outputs[0].node;
  cr_assert_eq(o->in[0]->op, OP_ADD);
  cr_assert_float_eq(o->in[0]->in[1]->a.f[0], 4.0, 1e-12);
}

Test(frontend, nested_layers_and_sharing) {
  const char *src =
    "fn dense(x, n) {\n  param W: f32[dim(x, -1), n]\n  param b: f32[n] = full(0.5)\n  return x @ W + b\n}\n"
    "fn block(x) {\n  h1 = dense(x, 8)\n  h2 = dense(relu(h1), 4)\n  return h2\n}\n"
    "input x: f32[N, 3]\n"
    "enc = block(x)\n"
    "for i in 0..3 {\n  s = dense(enc, 4)\n}\n"
    "output o = s\n";
  compile_ok(src, NULL);
  cr_assert_eq(G.nparams, 6);
  expect_shape(param("enc.h1.W"), "f32[3,8]");
  expect_shape(param("enc.h2.W"), "f32[8,4]");
  expect_shape(param("s.W"), "f32[4,4]");
  cr_assert_eq(param("s.b")->init.kind, INIT_FULL);
  cr_assert_float_eq(param("s.b")->init.a, 0.5, 1e-12);
  cr_assert_eq(count_op(OP_MATMUL), 5);
}

Test(frontend, multiple_returns_and_expression_fn) {
  compile_ok("fn sq(a) = a * a\nfn two(a) {\n  return a + 1, a - 1\n}\n"
             "input x: f32[4]\np, m = two(x)\noutput o = sq(p) + relu(sq(m))\n", NULL);
  cr_assert_eq(count_op(OP_MUL), 2);
  cr_assert_eq(count_op(OP_SUB), 1);
  cr_assert_eq(count_op(OP_RELU), 1);
}

Test(frontend, define_overrides_const) {
  Define def = {"T", 3, 1};
  BuildOpts o = {&def, 1, NULL, 0, 0, 0};
  const char *src = "const T = 28\ninput x: f32[N, T]\noutput o = x\n";
  compile_ok(src, &o);
  expect_shape(G.inputs[0].node, "f32[32,3]");
  teardown(), setup();
  compile_ok(src, NULL);
  expect_shape(G.inputs[0].node, "f32[32,28]");
}

Test(frontend, constant_folding) {
  compile_ok("const a = 7 / 2\nconst b = 2 ** 3\nconst c = (b - 1) * 2 + -1\nconst d = a > 3\n"
             "input x: f32[b, c]\noutput o = x * a + d\n", NULL);
  expect_shape(G.inputs[0].node, "f32[8,13]"); /* ints stay ints */
  Node *o = G.outputs[0].node;
  cr_assert_eq(o->op, OP_ADD);
  cr_assert_float_eq(o->in[0]->in[1]->a.f[0], 3.5, 1e-12); /* '/' gives a float */
  cr_assert_float_eq(o->in[1]->a.f[0], 1.0, 1e-12);        /* a comparison: 1 */
  cr_assert_eq(count_op(OP_CONST), 2);
}

Test(frontend, ops_and_attributes) {
  compile_ok("input x: f32[2, 3, 4]\ninput y: i32[2]\n"
             "a = sum(x, axis=[0, -1], keepdims=true)\n"
             "b = mean(x)\n"
             "c = argmax(x)\n"
             "d = transpose(x, [2, 0, 1])\n"
             "e = reshape(x, [-1, 4])\n"
             "f = concat(x, x, axis=-1)\n"
             "g = x[1, 1:, -2:]\n"
             "h = x ** 2 + elu(x, alpha=0.5) + clamp(x, -1, 1) + leaky_relu(x)\n"
             "i = softmax(x, axis=1) + float(y)[0]\n"
             "output o = a + b\noutput p = e\nmetric m = mean(float(c))\n", NULL);
  for (int k = 0; k < G.nnodes; k++) {
    Node *n = G.nodes[k];
    switch (n->op) {
    case OP_SUM: cr_assert_eq(n->a.i[0], 5); cr_assert_eq(n->a.i[1], 1); expect_shape(n, "f32[1,3,1]"); break;
    case OP_MEAN: if (n->in[0] == G.inputs[0].node) cr_assert_eq(n->a.i[0], 7); break;
    case OP_ARGMAX: cr_assert_eq(n->a.i[0], 2); expect_shape(n, "i32[2,3]"); break;
    case OP_TRANSPOSE: expect_shape(n, "f32[4,2,3]"); break;
    case OP_CONCAT: cr_assert_eq(n->a.i[0], 2); expect_shape(n, "f32[2,3,8]"); break;
    case OP_POW: cr_assert_float_eq(n->a.f[0], 2.0, 1e-12); break;
    case OP_ELU: cr_assert_float_eq(n->a.f[0], 0.5, 1e-12); break;
    case OP_LEAKY_RELU: cr_assert_float_eq(n->a.f[0], 0.01, 1e-12); break;
    case OP_CLAMP: cr_assert(n->a.f[0] == -1 && n->a.f[1] == 1); break;
    case OP_SOFTMAX: cr_assert_eq(n->a.i[0], 1); break;
    case OP_SLICE:
      if (n->in[0] == G.inputs[0].node) {
        cr_assert(n->a.i[0] == 1 && n->a.i[1] == 1 && n->a.i[2] == 2);
        expect_shape(n, "f32[1,2,2]");
      }
      break;
    default: break;
    }
  }
  expect_shape(G.outputs[1].node, "f32[6,4]");
  cr_assert_eq(count_op(OP_CAST), 2);
}

Test(frontend, train_block_optimizers) {
  compile_ok("train {\n  optimizer = adamw(0.01, beta1=0.8)\n  epochs = 3\n  shuffle = false\n  seed = 42\n}\n", NULL);
  cr_assert_eq(G.train.opt.kind, OPTIM_ADAMW);
  cr_assert_float_eq(G.train.opt.lr, 0.01, 1e-12);
  cr_assert_float_eq(G.train.opt.beta1, 0.8, 1e-12);
  cr_assert_float_eq(G.train.opt.weight_decay, 0.01, 1e-12);
  cr_assert_float_eq(G.train.opt.eps, 1e-8, 1e-20);
  cr_assert_eq(G.train.epochs, 3);
  cr_assert_eq(G.train.shuffle, 0);
  cr_assert_eq(G.train.seed, 42);
  cr_assert_eq(G.train.batch, 32);
  teardown(), setup();
  compile_ok("train { optimizer = sgd(0.5, 0.9, true) }\n", NULL);
  cr_assert_eq(G.train.opt.kind, OPTIM_SGD);
  cr_assert(G.train.opt.lr == 0.5 && G.train.opt.momentum == 0.9 && G.train.opt.nesterov == 1);
  teardown(), setup();
  compile_ok("", NULL); /* an empty model is valid, with the default train config */
  cr_assert_eq(G.nnodes, 0);
  cr_assert_eq(G.train.opt.kind, OPTIM_SGD);
  cr_assert_float_eq(G.train.opt.lr, 0.01, 1e-12);
  cr_assert_eq(G.train.epochs, 1);
  teardown(), setup();
  compile_ok("train { optimizer = adagrad }\n", NULL);
  cr_assert_float_eq(G.train.opt.eps, 1e-10, 1e-20);
}

Test(frontend, crlf_and_semicolons) {
  compile_ok("input x: f32[2, 3]\r\nparam W: f32[3,\r\n  4]\r\nh = x @ W; output o = h\r\n", NULL);
  expect_shape(G.outputs[0].node, "f32[2,4]");
}

Test(frontend, imports_once_and_cycles) {
  char *dir = util_tmpdir();
  char p[512], q[512], m[512];
  snprintf(p, sizeof p, "%s/layers.nnd", dir);
  snprintf(q, sizeof q, "%s/sub/act.nnd", dir);
  snprintf(m, sizeof m, "%s/model.nnd", dir);
  char sub[512];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  cr_assert_eq(mkdir(sub, 0755), 0);
  cr_assert_eq(util_write_file(p, "import \"sub/act.nnd\"\nfn dense(x, n) {\n  param W: f32[dim(x, -1), n]\n  return act(x @ W)\n}\n"), 0);
  cr_assert_eq(util_write_file(q, "import \"../layers.nnd\"\nfn act(x) = relu(x)\n"), 0);
  cr_assert_eq(util_write_file(m, "import \"layers.nnd\"\nimport \"sub/act.nnd\"\ninput x: f32[N, 3]\nh = dense(x, 5)\noutput o = act(h)\n"), 0);
  BuildOpts o = {0};
  int rc = fe_compile_file(&D, &G, m, &o);
  cr_assert_eq(rc, 0, "%s", D.buf ? D.buf : "");
  expect_shape(param("h.W"), "f32[3,5]");
  cr_assert_eq(count_op(OP_RELU), 2);
  cr_assert_str_eq(G.model_name, "model");
  free(dir);
}

Test(frontend, dump_parsed) {
  char *dir = util_tmpdir();
  char m[512];
  snprintf(m, sizeof m, "%s/d.nnd", dir);
  cr_assert_eq(util_write_file(m, "import \"x.nnd\"\nfn f(a, b) = a * b\ninput x: f32[N, 2]\n"
                                  "param W: f32[2, 2] = uniform(-1, b=1)\n"
                                  "h, g = f(x, -x ** 2 + 1)[0, :1]\nfor t in 0..3 { h = h @ W }\n"
                                  "output o = h == g\nloss = mean(h)\ntrain { batch = 4 }\n"), 0);
  char *s = fe_dump_parsed(&D, &A, m);
  cr_assert(s, "%s", D.buf ? D.buf : "");
  char want[2048];
  snprintf(want, sizeof want,
           "# parsed: %s\n"
           "import \"x.nnd\"\n"
           "fn f(a, b) {\n  return (a * b)\n}\n"
           "input x: f32[N, 2]\n"
           "param W: f32[2, 2] = uniform((-1), b=1)\n"
           "h, g = f(x, ((-(x ** 2)) + 1))[0, :1]\n"
           "for t in 0..3 {\n  h = (h @ W)\n}\n"
           "output o = (h == g)\n"
           "loss = mean(h)\n"
           "train {\n  batch = 4\n}\n", m);
  cr_assert_str_eq(s, want);
  free(dir);
}

/* detach(x): the builtin builds DETACH (an identity without gradient); of a
 * compile-time number it is the number. */
Test(frontend, detach_builtin) {
  UtilGraph *t = util_graph_new();
  cr_assert_eq(util_compile(&t->d, &t->g, "const c = detach(2.5)\ninput x: f32[3]\noutput y = detach(x) * c\n", NULL), 0,
               "%s", t->d.buf ? t->d.buf : "");
  int found = 0;
  for (int i = 0; i < t->g.nnodes; i++) found += t->g.nodes[i]->op == OP_DETACH;
  cr_expect_eq(found, 1);
  util_graph_free(t);
}

/* where(c, a, b): the builtin with broadcasting, a number of three numbers,
 * and a clear error when the shapes cannot broadcast. */
Test(frontend, where_builtin) {
  UtilGraph *t = util_graph_new();
  cr_assert_eq(util_compile(&t->d, &t->g,
                            "const k = where(1, 2.5, 3)\ninput x: f32[4, 3]\ninput m: f32[4, 1]\n"
                            "output y = where(m > 0, x, k) + where(x > 0, 0, -inf)\n", NULL), 0,
               "%s", t->d.buf ? t->d.buf : "");
  int found = 0;
  for (int i = 0; i < t->g.nnodes; i++) found += t->g.nodes[i]->op == OP_WHERE;
  cr_expect_eq(found, 2);
  util_graph_free(t);
  t = util_graph_new();
  cr_expect_neq(util_compile(&t->d, &t->g, "input x: f32[4, 3]\ninput m: f32[5]\noutput y = where(m, x, x)\n", NULL), 0);
  cr_expect(t->d.buf && strstr(t->d.buf, "cannot broadcast"), "%s", t->d.buf ? t->d.buf : "");
  util_graph_free(t);
}

/* tril(x, k=0, fill=0): the values (col - row <= k kept), the defaults, a
 * causal mask with fill=-inf, and the rank error. */
Test(frontend, tril_builtin) {
  UtilGraph *t = util_graph_new();
  cr_assert_eq(util_compile(&t->d, &t->g, "input x: f32[2, 3, 4]\noutput y = tril(x)\noutput z = tril(x, k=1, fill=-inf)\n",
                            NULL), 0, "%s", t->d.buf ? t->d.buf : "");
  const Node *y = t->g.outputs[0].node, *z = t->g.outputs[1].node;
  cr_expect_eq(y->op, OP_TRIL);
  cr_expect_eq(y->a.i[0], 0);
  cr_expect_eq(y->a.f[0], 0);
  cr_expect_eq(z->a.i[0], 1);
  cr_expect(isinf(z->a.f[0]) && z->a.f[0] < 0);
  float xv[24], *want = malloc(24 * 4);
  for (int i = 0; i < 24; i++) xv[i] = (float)i + 1, want[i] = (i % 4) - (i / 4 % 3) <= 1 ? xv[i] : -INFINITY;
  Interp it;
  interp_init(&it, &t->g);
  it.val[t->g.inputs[0].node->id] = xv;
  RunCtx ctx = {1, 1, 0};
  cr_assert_eq(interp_run(&it, &t->d, NULL, &ctx), 0, "%s", t->d.buf ? t->d.buf : "");
  const float *zv = it.val[z->id], *yv = it.val[y->id];
  for (int i = 0; i < 24; i++) {
    cr_expect_eq(zv[i], want[i], "z[%d] = %g, want %g", i, zv[i], want[i]);
    cr_expect_eq(yv[i], (i % 4) - (i / 4 % 3) <= 0 ? xv[i] : 0.0f, "y[%d] = %g", i, yv[i]);
  }
  interp_free(&it);
  free(want);
  util_graph_free(t);
  t = util_graph_new();
  cr_expect_neq(util_compile(&t->d, &t->g, "input x: f32[4]\noutput y = tril(x)\n", NULL), 0);
  cr_expect(t->d.buf && strstr(t->d.buf, "rank 2 or more"), "%s", t->d.buf ? t->d.buf : "");
  util_graph_free(t);
}

/* embedding(table, ids): [V, D] and i32 [...] give [..., D]; a clear
 * error for f32 ids or a table that is not a matrix. */
Test(frontend, embedding_builtin) {
  UtilGraph *t = util_graph_new();
  cr_assert_eq(util_compile(&t->d, &t->g, "input ids: i32[2, 3]\nparam e: f32[10, 4]\noutput y = embedding(e, ids)\n", NULL),
               0, "%s", t->d.buf ? t->d.buf : "");
  const Node *y = t->g.outputs[0].node;
  cr_expect_eq(y->op, OP_EMBEDDING);
  cr_expect(y->shape.rank == 3 && y->shape.dim[0] == 2 && y->shape.dim[1] == 3 && y->shape.dim[2] == 4);
  util_graph_free(t);
  static const char *const bad[] = {"input ids: f32[2]\nparam e: f32[10, 4]\noutput y = embedding(e, ids)\n",
                                    "input ids: i32[2]\nparam e: f32[10]\noutput y = embedding(e, ids)\n"};
  for (int i = 0; i < 2; i++) {
    t = util_graph_new();
    cr_expect_neq(util_compile(&t->d, &t->g, bad[i], NULL), 0);
    cr_expect(t->d.buf && strstr(t->d.buf, "embedding needs a table f32[V, D] and ids i32[...]"), "%s", t->d.buf ? t->d.buf : "");
    util_graph_free(t);
  }
}

/* rand(shape) and randn(shape): nodes of that shape, each call its own key. */
Test(frontend, noise_builtins) {
  UtilGraph *t = util_graph_new();
  cr_assert_eq(util_compile(&t->d, &t->g, "input x: f32[2, 3]\noutput a = x + randn([2, 3])\noutput b = rand([dim(x, 0), 3])\n"
                            "output c = rand([2, 3])\n", NULL), 0, "%s", t->d.buf ? t->d.buf : "");
  int64_t keys[3];
  int n = 0;
  for (int i = 0; i < t->g.nnodes; i++) {
    const Node *x = t->g.nodes[i];
    if (x->op != OP_RAND && x->op != OP_RANDN) continue;
    cr_expect(x->shape.rank == 2 && x->shape.dim[0] == 2 && x->shape.dim[1] == 3);
    if (n < 3) keys[n++] = x->a.i[0];
  }
  cr_expect_eq(n, 3);
  cr_expect(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
  util_graph_free(t);
}

/* `@` broadcasts leading batch axes; axes that cannot broadcast are an error. */
Test(frontend, matmul_batch_broadcast_shapes) {
  UtilGraph *t = util_graph_new();
  cr_assert_eq(util_compile(&t->d, &t->g, "input a: f32[7, 2, 3, 4]\ninput b: f32[2, 4, 5]\ninput c: f32[4, 6]\n"
                            "output y = a @ b\noutput z = a @ c\n", NULL), 0, "%s", t->d.buf ? t->d.buf : "");
  const Shape *y = &t->g.outputs[0].node->shape, *z = &t->g.outputs[1].node->shape;
  cr_expect(y->rank == 4 && y->dim[0] == 7 && y->dim[1] == 2 && y->dim[2] == 3 && y->dim[3] == 5);
  cr_expect(z->rank == 4 && z->dim[0] == 7 && z->dim[1] == 2 && z->dim[2] == 3 && z->dim[3] == 6);
  util_graph_free(t);
  t = util_graph_new();
  cr_expect_neq(util_compile(&t->d, &t->g, "input a: f32[7, 2, 3, 4]\ninput b: f32[3, 4, 5]\noutput y = a @ b\n", NULL), 0);
  cr_expect(t->d.buf && strstr(t->d.buf, "cannot broadcast"), "%s", t->d.buf ? t->d.buf : "");
  util_graph_free(t);
}
