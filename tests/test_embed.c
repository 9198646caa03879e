/* test_embed.c - the public embedding API (include/nndc.h) as a user sees it:
 * install the build into a temporary prefix, compile a small program against
 * it with `pkg-config --cflags --libs nndc`, and run a linear regression
 * whose forward pass, gradient step and loss are computed by hand:
 *   x = [[1,2,3],[4,5,6],[7,8,9]], t = [1,2,3], w = 0, b = 0
 *   loss = mean(t^2) = 14/3; dL/dw = -(2/3) x^T t = [-20,-24,-28]; dL/db = -4
 *   after sgd(lr=0.01): w = [0.2,0.24,0.28], b = 0.04,
 *   y = [1.56,3.72,5.88], loss = (0.56^2 + 1.72^2 + 2.88^2)/3 = 3.855466...
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nndc.h"
#include "tests/util.h"

static const char prog[] =
  "#include <stdio.h>\n"
  "#include <string.h>\n"
  "#include <nndc.h>\n"
  "static const char *src =\n"
  "  \"input x: f32[N, 3]\\n\"\n"
  "  \"input t: f32[N, 1]\\n\"\n"
  "  \"param w: f32[3, 1] = zeros\\n\"\n"
  "  \"param b: f32[1]\\n\"\n"
  "  \"output y = x @ w + b\\n\"\n"
  "  \"loss = mse(y, t)\\n\"\n"
  "  \"train {\\n  optimizer = sgd(lr=0.01)\\n}\\n\";\n"
  "static float scalar(nndc_model *m, const char *name) {\n"
  "  nndc_tensor_info info;\n"
  "  const float *v = nndc_output(m, name, &info);\n"
  "  return v && info.numel == 1 ? v[0] : -999.0f;\n"
  "}\n"
  "int main(int argc, char **argv) {\n"
  "  char path[4096];\n"
  "  nndc_define defs[] = {{\"N\", 3}};\n"
  "  nndc_options o = {defs, 1, NNDC_ENGINE_JIT, 1, 1, 0, 0};\n"
  "  if (argc != 3) return 2;\n"
  "  if (!strcmp(argv[1], \"interp\")) o.engine = NNDC_ENGINE_INTERP;\n"
  "  nndc_model *m = nndc_compile_string(\"linreg.nnd\", src, &o);\n"
  "  if (!nndc_ok(m)) { fputs(nndc_errors(m), stderr); return 1; }\n"
  "  nndc_tensor_info info;\n"
  "  printf(\"inputs %d %s %s\\n\", nndc_input_count(m), nndc_input_name(m, 0), nndc_input_name(m, 1));\n"
  "  nndc_input_info(m, 0, &info);\n"
  "  printf(\"xshape %d %lld %lld\\n\", info.rank, (long long)info.dims[0], (long long)info.dims[1]);\n"
  "  float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, t[3] = {1, 2, 3};\n"
  "  if (nndc_bind_input(m, \"x\", x) || nndc_bind_input(m, \"t\", t)) { fputs(nndc_errors(m), stderr); return 1; }\n"
  "  if (nndc_forward(m)) { fputs(nndc_errors(m), stderr); return 1; }\n"
  "  printf(\"loss0 %.7g\\n\", scalar(m, \"loss\"));\n"
  "  if (nndc_train_step(m)) { fputs(nndc_errors(m), stderr); return 1; }\n"
  "  printf(\"steploss %.7g steps %lld\\n\", scalar(m, \"loss\"), (long long)nndc_steps(m));\n"
  "  float *w = nndc_param(m, \"w\", &info), *b = nndc_param(m, \"b\", NULL);\n"
  "  printf(\"w %.7g %.7g %.7g b %.7g n %lld\\n\", w[0], w[1], w[2], b[0], (long long)info.numel);\n"
  "  if (nndc_forward(m)) { fputs(nndc_errors(m), stderr); return 1; }\n"
  "  const float *y = nndc_output(m, \"y\", &info);\n"
  "  printf(\"y %.7g %.7g %.7g loss1 %.7g\\n\", y[0], y[1], y[2], scalar(m, \"loss\"));\n"
  "  snprintf(path, sizeof path, \"%s/p.safetensors\", argv[2]);\n"
  "  if (nndc_save_params(m, path)) { fputs(nndc_errors(m), stderr); return 1; }\n"
  "  w[0] = 5;\n"
  "  if (nndc_load_params(m, path)) { fputs(nndc_errors(m), stderr); return 1; }\n"
  "  printf(\"reloaded %.7g\\n\", w[0]);\n"
  "  nndc_free(m);\n"
  "  /* inference without labels: the loss is skipped */\n"
  "  o.training = 0;\n"
  "  m = nndc_compile_string(\"linreg.nnd\", src, &o);\n"
  "  nndc_bind_input(m, \"x\", x);\n"
  "  if (nndc_load_params(m, path) || nndc_forward(m)) { fputs(nndc_errors(m), stderr); return 1; }\n"
  "  y = nndc_output(m, \"y\", NULL);\n"
  "  printf(\"infer %.7g loss %s train %d\\n\", y[2], nndc_output(m, \"loss\", NULL) ? \"computed\" : \"skipped\",\n"
  "         nndc_train_step(m));\n"
  "  nndc_free(m);\n"
  "  m = nndc_compile_string(\"bad.nnd\", \"input x: f32[2]\\noutput y = x @ q\\n\", &o);\n"
  "  printf(\"bad %d %s\", nndc_ok(m), nndc_errors(m));\n"
  "  printf(\"badforward %d\\n\", nndc_forward(m));\n"
  "  nndc_free(m);\n"
  "  return 0;\n"
  "}\n";

static double value_after(const char *out, const char *key) {
  const char *p = strstr(out, key);
  cr_assert(p, "no '%s' in:\n%s", key, out);
  return strtod(p + strlen(key), NULL);
}

static char *install(void) {
  char *dir = util_tmpdir(), cmd[4096];
  snprintf(cmd, sizeof cmd, "cmake --install %s --prefix %s/prefix 2>&1", NNDC_BUILD_DIR, dir);
  int st;
  char *out = util_run(cmd, &st);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  return dir;
}

static void run_engine(const char *dir, const char *engine) {
  char cmd[8192];
  int st;
  /* a sanitized library needs the sanitizer runtime in the program too */
#if defined(__SANITIZE_ADDRESS__)
  const char *san = "-fsanitize=address,undefined";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  const char *san = "-fsanitize=address,undefined";
#else
  const char *san = "";
#endif
#else
  const char *san = "";
#endif
  snprintf(cmd, sizeof cmd,
           "cd %s && export PKG_CONFIG_PATH=%s/prefix/lib/pkgconfig && "
           "cc -std=c99 -Wall -Wextra -Werror -pedantic %s prog.c $(pkg-config --cflags --libs nndc) -o prog && "
           "./prog %s %s 2>&1",
           dir, dir, san, engine, dir);
  char *out = util_run(cmd, &st);
  cr_assert_eq(st, 0, "%s\n%s", cmd, out);
  cr_expect(strstr(out, "inputs 2 x t\n"), "%s", out);
  cr_expect(strstr(out, "xshape 2 3 3\n"), "%s", out);
  cr_expect_float_eq(value_after(out, "loss0 "), 14.0 / 3, 1e-5, "%s", out);
  cr_expect_float_eq(value_after(out, "steploss "), 14.0 / 3, 1e-5, "%s", out);
  cr_expect_eq((int)value_after(out, " steps "), 1, "%s", out);
  cr_expect_float_eq(value_after(out, "w "), 0.2, 1e-6, "%s", out);
  const char *w = strstr(out, "w ");
  char *end;
  double w0 = strtod(w + 2, &end), w1 = strtod(end, &end), w2 = strtod(end, &end);
  cr_expect_float_eq(w0, 0.2, 1e-6);
  cr_expect_float_eq(w1, 0.24, 1e-6);
  cr_expect_float_eq(w2, 0.28, 1e-6);
  cr_expect_float_eq(value_after(out, " b "), 0.04, 1e-6, "%s", out);
  cr_expect_eq((int)value_after(out, " n "), 3, "%s", out);
  const char *y = strstr(out, "y ");
  double y0 = strtod(y + 2, &end), y1 = strtod(end, &end), y2 = strtod(end, &end);
  cr_expect_float_eq(y0, 1.56, 1e-5, "%s", out);
  cr_expect_float_eq(y1, 3.72, 1e-5, "%s", out);
  cr_expect_float_eq(y2, 5.88, 1e-5, "%s", out);
  cr_expect_float_eq(value_after(out, "loss1 "), 11.5664 / 3, 1e-5, "%s", out);
  cr_expect_float_eq(value_after(out, "reloaded "), 0.2, 1e-7, "%s", out);
  cr_expect_float_eq(value_after(out, "infer "), 5.88, 1e-5, "%s", out);
  cr_expect(strstr(out, "loss skipped train -1\n"), "%s", out);
  cr_expect(strstr(out, "bad 0 bad.nnd:2:"), "%s", out);
  cr_expect(strstr(out, "badforward -1\n"), "%s", out);
  free(out);
}

Test(embed, installed_library_through_pkg_config) {
  char *dir = install(), path[4096];
  snprintf(path, sizeof path, "%s/prog.c", dir);
  cr_assert_eq(util_write_file(path, prog), 0);
  run_engine(dir, "jit");
  run_engine(dir, "interp");
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  int st;
  free(util_run(cmd, &st));
  free(dir);
}

/* The installed tree holds what the pkg-config file promises. */
Test(embed, install_layout) {
  char *dir = install(), cmd[4096];
  snprintf(cmd, sizeof cmd,
           "cd %s/prefix && test -f include/nndc.h && test -f lib/libnndc.a && "
           "PKG_CONFIG_PATH=$PWD/lib/pkgconfig pkg-config --libs nndc && rm -rf %s",
           dir, dir);
  int st;
  char *out = util_run(cmd, &st);
  cr_expect_eq(st, 0, "%s", out);
  cr_expect(strstr(out, "-lnndc"), "%s", out);
  cr_expect(strstr(out, "-lLLVM-"), "%s", out);
  free(out);
  free(dir);
}

/* A training step's outputs are the batch's values before the update, also
 * an output that is a param or a reshape of one (whose buffer the update
 * writes in place): on the JIT and on the interpreter. */
Test(embed, training_step_outputs_are_before_the_update) {
  const char *src = "input x: f32[2, 3]\nparam p: f32[3, 2] = normal(0, 0.5)\noutput o1 = p\n"
                    "output o2 = reshape(p, [6])\nloss = mean((x @ p) * (x @ p))\n"
                    "train {\n  optimizer = sgd(lr=0.5)\n}\n";
  for (int e = 0; e < 2; e++) {
    nndc_options o = {0};
    o.engine = e ? NNDC_ENGINE_INTERP : NNDC_ENGINE_JIT;
    o.training = 1;
    nndc_model *m = nndc_compile_string("before.nnd", src, &o);
    cr_assert(nndc_ok(m), "%s", nndc_errors(m));
    float x[6] = {1, -2, 0.5f, 3, 0.25f, -1}, before[6];
    cr_assert_eq(nndc_bind_input(m, "x", x), 0, "%s", nndc_errors(m));
    memcpy(before, nndc_param(m, "p", NULL), sizeof before);
    cr_assert_eq(nndc_train_step(m), 0, "%s", nndc_errors(m));
    const float *o1 = nndc_output(m, "o1", NULL), *o2 = nndc_output(m, "o2", NULL), *after = nndc_param(m, "p", NULL);
    cr_assert(o1 && o2 && after, "%s", nndc_errors(m));
    int moved = 0;
    for (int i = 0; i < 6; i++) {
      cr_expect_eq(o1[i], before[i], "engine %d: o1[%d] = %g, the param before the step is %g", e, i, o1[i], before[i]);
      cr_expect_eq(o2[i], before[i], "engine %d: o2[%d] = %g, the param before the step is %g", e, i, o2[i], before[i]);
      moved += after[i] != before[i];
    }
    cr_expect_gt(moved, 0, "the step moved no weight");
    nndc_free(m);
  }
}
