/* test_onnx.c - `nndc import` end to end: models exported by PyTorch's
 * torch.onnx.export (tests/golden/gen_onnx.py) import and match PyTorch's
 * outputs, the imported model works with check, bench, train (a train block
 * added by the user) and emit-c (built and run), and bad models (truncated,
 * unsupported ops, a wrong initializer size, external data, a dynamic
 * dimension, an unknown opset) give exit status 1 with a clear message.
 * The ONNX project's own backend tests run in tests/onnx/backend_suite.py. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define GOLD NNDC_SRC_DIR "/tests/golden/onnx/"

/* Imports GOLD<name>.onnx into dir; asserts success. */
static void import(const char *dir, const char *name) {
  int st;
  char *out = util_nndc(&st, "import " GOLD "%s.onnx -o %s", name, dir);
  cr_assert_eq(st, 0, "import %s: %s", name, out);
  free(out);
}

/* Runs the imported model on GOLD<name>_x.npy and compares with _y.npy. */
static void run_and_compare(const char *dir, const char *name, const char *engine) {
  int st;
  char *out = util_nndc(&st, "run %s/%s.nnd --load %s/%s.safetensors --feed x=" GOLD "%s_x.npy --out %s/out_%s --engine %s",
                   dir, name, dir, name, name, dir, engine, engine);
  cr_assert_eq(st, 0, "run %s: %s", name, out);
  free(out);
  char p[4096], q[4096];
  snprintf(p, sizeof p, "%s/out_%s/y.npy", dir, engine);
  snprintf(q, sizeof q, GOLD "%s_y.npy", name);
  Shape sg, se;
  float *got = util_read_f32(p, &sg), *exp = util_read_f32(q, &se);
  cr_assert(got && exp, "%s, %s", p, q);
  cr_assert(shape_eq(&sg, &se), "%s: output shape differs", name);
  char label[256];
  snprintf(label, sizeof label, "%s (%s)", name, engine);
  cr_expect_leq(util_compare(label, got, exp, shape_numel(&se), 1e-6, 1e-4), 1.0, "%s: outputs differ from PyTorch's", label);
  free(got);
  free(exp);
}

static const char *exported[] = {"mlp", "lenet", "cnn_bn", "resblock", "attention", "lstm", "gru_rnn",
                                  "autoencoder", "deep_mlp", "logreg", "linreg", "rnn_loop"};

Test(onnx, exported_models_match_torch, .timeout = 300) {
  char *dir = util_tmpdir();
  for (size_t i = 0; i < sizeof exported / sizeof *exported; i++) {
    import(dir, exported[i]);
    run_and_compare(dir, exported[i], "jit");
    run_and_compare(dir, exported[i], "interp");
  }
  free(dir);
}

/* The text keeps the graph's names and reads as layers. */
Test(onnx, imported_text_is_readable) {
  char *dir = util_tmpdir();
  import(dir, "lenet");
  char p[4096];
  snprintf(p, sizeof p, "cat %s/lenet.nnd", dir);
  int st;
  char *t = util_run(p, &st);
  cr_assert(strstr(t, "input x: f32[N, 1, 16, 16]"), "%s", t);
  cr_assert(strstr(t, "param conv1_weight: f32[6, 1, 5, 5]"), "%s", t);
  cr_assert(strstr(t, "param fc1_weight: f32[48, 32]"), "a Gemm's weight is kept as [in, out]: %s", t);
  cr_assert(strstr(t, "= relu(conv2d(x, conv1_weight, conv1_bias, padding=2))"), "%s", t);
  cr_assert(strstr(t, "reshape(MaxPool_1_output_0, [N, -1])"), "the static shape computation folds: %s", t);
  cr_assert(strstr(t, "relu(Reshape_output_0 @ fc1_weight + fc1_bias)"), "%s", t);
  free(t);
  snprintf(p, sizeof p, "cat %s/cnn_bn.nnd", dir);
  import(dir, "cnn_bn");
  t = util_run(p, &st);
  cr_assert(strstr(t, "= batch_norm(conv1_Conv_output_0, bn1_weight, bn1_bias)"), "%s", t);
  free(t);
  /* PyTorch 1.13's decomposed LayerNorm and GELU read as the builtins; the
   * initializer it wrote once for ln1 and ln2 (ln2's an Identity) is two params */
  snprintf(p, sizeof p, "cat %s/attention.nnd", dir);
  import(dir, "attention");
  t = util_run(p, &st);
  cr_assert(strstr(t, "= layer_norm(x, ln1_weight, ln1_bias)"), "%s", t);
  cr_assert(strstr(t, "= layer_norm(Add_output_0, ln2_weight, ln2_bias)"), "%s", t);
  cr_assert(strstr(t, "= gelu(fc1_Add_output_0)"), "%s", t);
  cr_assert(!strstr(t, "erf("), "%s", t);
  free(t);
  free(dir);
}

Test(onnx, imported_model_checks_benches_and_fine_tunes, .timeout = 300) {
  char *dir = util_tmpdir();
  import(dir, "lenet");
  int st;
  char *out = util_nndc(&st, "check %s/lenet.nnd", dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  out = util_nndc(&st, "bench %s/lenet.nnd -D N=4 --repeats 2", dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  /* fine-tuning: the user adds labels, a loss and a train block */
  char p[4096], cmd[8192];
  snprintf(cmd, sizeof cmd,
           "printf 'input labels: i32[N]\\nloss = cross_entropy(y, labels)\\ntrain {\\n  optimizer = sgd(lr=0.01)\\n  batch = 3\\n}\\n' >> %s/lenet.nnd",
           dir);
  free(util_run(cmd, &st));
  cr_assert_eq(st, 0);
  snprintf(p, sizeof p, "%s/labels.npy", dir);
  Shape s = {1, {3}};
  int32_t lab[3] = {1, 7, 3};
  Diag d;
  diag_init(&d);
  cr_assert_eq(npy_write(&d, p, EL_I32, &s, lab), 0);
  diag_free(&d);
  out = util_nndc(&st, "train %s/lenet.nnd --load %s/lenet.safetensors --data x=" GOLD "lenet_x.npy --data labels=%s --epochs 2 --save %s/tuned.safetensors",
             dir, dir, p, dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  out = util_nndc(&st, "run %s/lenet.nnd --load %s/tuned.safetensors --feed x=" GOLD "lenet_x.npy --out %s/tuned", dir, dir, dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  free(dir);
}

/* emit-c of an imported model (weights embedded) builds with -Werror and
 * gives the model's outputs. */
Test(onnx, emit_c_of_imported_model_builds_and_matches, .timeout = 300) {
  char *dir = util_tmpdir();
  import(dir, "cnn_bn");
  int st;
  char *out = util_nndc(&st, "emit-c %s/cnn_bn.nnd -o %s/c -D N=4 --weights %s/cnn_bn.safetensors", dir, dir, dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  char p[4096];
  snprintf(p, sizeof p, "%s/c/main.c", dir);
  cr_assert_eq(util_write_file(p,
    "#include <stdio.h>\n#include <stdlib.h>\n#include \"cnn_bn.h\"\n"
    "int main(int argc, char **argv) {\n"
    "  (void)argc;\n"
    "  FILE *f = fopen(argv[1], \"rb\");\n"
    "  static unsigned char buf[1 << 16];\n"
    "  size_t n = fread(buf, 1, sizeof buf, f);\n"
    "  fclose(f);\n"
    "  size_t h = 10 + (size_t)(buf[8] | buf[9] << 8);\n"
    "  if (n < h + 4 * 4 * 3 * 8 * 8) return 3;\n"
    "  static float x[4 * 3 * 8 * 8], y[4 * 5];\n"
    "  for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = ((float *)(void *)(buf + h))[i];\n"
    "  cnn_bn_inputs in = {x};\n"
    "  cnn_bn_outputs out = {y};\n"
    "  void *ws = malloc(cnn_bn_workspace_size());\n"
    "  cnn_bn_forward(&cnn_bn_weights, &in, &out, ws);\n"
    "  free(ws);\n"
    "  for (int i = 0; i < 20; i++) printf(\"%.9g\\n\", y[i]);\n"
    "  return 0;\n"
    "}\n"), 0);
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cd %s/c && gcc -std=c99 -O1 -Wall -Werror -o m main.c cnn_bn.c -lm 2>&1 && ./m " GOLD "cnn_bn_x.npy", dir);
  out = util_run(cmd, &st);
  cr_assert_eq(st, 0, "%s", out);
  Shape se;
  float *exp = util_read_f32(GOLD "cnn_bn_y.npy", &se), got[20];
  cr_assert(exp);
  char *s = out;
  for (int i = 0; i < 20; i++) got[i] = strtof(s, &s);
  cr_expect_leq(util_compare("cnn_bn (emitted C)", got, exp, 20, 1e-6, 1e-4), 1.0);
  free(exp);
  free(out);
  free(dir);
}

/* Each bad model: exit status 1 (not a crash) and the expected message. */
Test(onnx, bad_models_exit_1_with_a_clear_error) {
  static const struct { const char *model, *msg; } cs[] = {
    {"err_unsupported", "3 nodes of 2 unsupported ops: Hardmax (2), Round (1)"},
    {"err_unsupported", "node 'hm1' (Hardmax): unsupported op Hardmax"},
    {"err_init_size", "node 'mm' (MatMul): initializer 'W' has 8 bytes of data, but its shape [4, 3] of float needs 48"},
    {"err_external", "initializer 'W' keeps its data in an external file"},
    {"err_dynamic", "dimension 1 ('T') is dynamic and cannot be bound"},
    {"err_opset", "opset 99 of the default ONNX domain is not supported"},
    {"err_attr", "node 'pool' (MaxPool): unsupported: a pooling window or stride that is not square"},
  };
  char *dir = util_tmpdir();
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
    int st;
    char *out = util_nndc(&st, "import " GOLD "%s.onnx -o %s 2>&1", cs[i].model, dir);
    cr_expect_eq(st, 1, "%s: status %d: %s", cs[i].model, st, out);
    cr_expect(strstr(out, cs[i].msg), "%s: expected '%s' in: %s", cs[i].model, cs[i].msg, out);
    free(out);
  }
  /* truncated at every 97th byte, and an empty file */
  char cmd[8192];
  for (int cut = 0; cut < 6000; cut += 97) {
    snprintf(cmd, sizeof cmd, "head -c %d " GOLD "mlp.onnx > %s/t.onnx", cut, dir);
    free(util_run(cmd, &(int){0}));
    int st;
    char *out = util_nndc(&st, "import %s/t.onnx -o %s 2>&1", dir, dir);
    cr_expect_eq(st, 1, "cut at %d: status %d: %s", cut, st, out);
    free(out);
  }
  int st;
  char *out = util_nndc(&st, "import %s/missing.onnx 2>&1", dir);
  cr_expect_eq(st, 1, "%s", out);
  free(out);
  free(dir);
}
