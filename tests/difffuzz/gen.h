/* gen.h - random, well-typed .nnd programs for differential fuzzing (gen.c),
 * the checks of one program on every engine (check.c) and the reducer of a
 * failing one (reduce.c).  See difffuzz.c for the tool around them. */
#ifndef NNDC_DIFFFUZZ_GEN_H
#define NNDC_DIFFFUZZ_GEN_H

#include <stdint.h>

/* ------------------------------------------------------------------ gen.c */

/* Features a program may exercise, for the coverage report. */
#define GEN_FEATURES(X) \
  X(unary) X(unary_param) X(pow) X(exp_log_sqrt) X(binary) X(broadcast) X(div) X(max_min) \
  X(compare) X(reduce_all) X(reduce_axis) X(reduce_axes) X(keepdims) X(argmax) X(softmax) \
  X(log_softmax) X(matmul2) X(matmul_batched) X(matmul_bcast) X(transpose2) X(transpose_perm) \
  X(reshape) X(flatten) X(slice) X(index) X(concat) X(conv2d) X(conv2d_bias) X(conv2d_stride) \
  X(conv2d_pad) X(conv2d_dilation) X(conv2d_groups) X(conv_transpose2d) X(maxpool) X(avgpool) X(pool_stride) X(dropout) X(layer) X(layer_loop) X(loop) \
  X(fn_expr) X(fn_multi) X(layer_norm) X(batch_norm) X(attention) X(creation) X(i32_input) X(const_scalar) X(center) X(mse) \
  X(cross_entropy) X(bce_logits) X(loss_reduce) X(metric) X(sgd) X(sgd_momentum) X(nesterov) \
  X(weight_decay) X(adam) X(adamw) X(rmsprop) X(rmsprop_momentum) X(adagrad)

#define GEN_ENUM(name) GF_##name,
typedef enum { GEN_FEATURES(GEN_ENUM) GF_COUNT } GenFeature;
#undef GEN_ENUM

/* Generates the program of `seed` (malloc'd text).  feat (may be NULL):
 * [GF_COUNT] counters, incremented for each feature the program uses. */
char *gen_program(uint64_t seed, unsigned *feat);
const char *gen_feature_name(int f);

/* ---------------------------------------------------------------- check.c */

/* What to run and how to compare. */
typedef struct CheckOpts {
  const char *const *targets;  /* NNDC_TARGET values for emitted C ("" = unset) */
  int ntargets;
  const char *const *jit_targets; /* those the JIT runs (the host executes them) */
  int njit;
  int emit_c;          /* 0: no emitted C */
  const char *cc;      /* compiler of emitted C */
  int openmp;          /* -fopenmp for emitted C */
  int threads;         /* JIT threads */
  int timeout_s;       /* per program (the child is killed after it) */
  int verbose;
} CheckOpts;

/* The outcome of one program: cls is "" when it passed; else a class
 * ("reject", "crash", "mismatch", "cc-warning", ...) with the phase and
 * engine in where ("fwd jit", "step2 c", ...) and the target. */
typedef struct CheckResult {
  char cls[32];
  char where[48];
  char target[16];
  char detail[2048];
  int skipped;         /* the reference itself is not finite: not comparable */
} CheckResult;

/* Runs every check of text in a child process (crashes and timeouts
 * included).  Returns 0 if it passed (or was skipped), 1 on a failure. */
int check_program(const char *text, const CheckOpts *o, CheckResult *r);

/* ---------------------------------------------------------------- reduce.c */

/* The smallest program found (malloc'd) that still fails as `want` does:
 * deletes statements, substitutes values by their operands, shrinks consts
 * and the batch, simplifies the optimizer; within budget_s seconds. */
char *reduce_program(const char *text, const CheckOpts *o, const CheckResult *want, double budget_s);

#endif
