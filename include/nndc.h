/* nndc.h - the public C API for embedding nndc in another program.
 *
 * Compile a .nnd model (from a file or a string), bind input data, run the
 * forward pass or one training step, and read outputs, the loss and metrics
 * by name.  Params (and the optimizer state) are owned by the model,
 * initialised from the seed as `nndc train` does, and can be read or written
 * in place, loaded and saved (a .npy directory or a .safetensors file).
 *
 * Nothing here prints or exits.  A failed call returns NULL or -1 and
 * appends a diagnostic to the model's error text (nndc_errors).  A model
 * handle is not thread-safe; distinct handles are independent.
 *
 * Link: pkg-config --cflags --libs nndc
 */
#ifndef NNDC_H
#define NNDC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NNDC_MAX_RANK 8

typedef struct nndc_model nndc_model;

typedef enum { NNDC_ENGINE_JIT, NNDC_ENGINE_INTERP } nndc_engine;
typedef enum { NNDC_F32, NNDC_I32 } nndc_dtype;

/* A `-D NAME=VALUE`: binds a symbolic dimension or overrides a file-level const. */
typedef struct nndc_define {
  const char *name;
  double value;
} nndc_define;

/* Options of a compilation; a NULL pointer means all defaults (zero). */
typedef struct nndc_options {
  const nndc_define *defines;
  int ndefines;
  nndc_engine engine;  /* default: the JIT */
  int threads;         /* 0 = all cores */
  int training;        /* 1: also build the training step (nndc_train_step) */
  int has_seed;        /* 1: use seed instead of the train block's */
  uint64_t seed;       /* params initialisation and dropout */
} nndc_options;

/* Shape and element type of a tensor. */
typedef struct nndc_tensor_info {
  nndc_dtype dtype;
  int rank;
  int64_t dims[NNDC_MAX_RANK];
  int64_t numel;
} nndc_tensor_info;

/* Compile a model.  The handle is returned even when compilation fails
 * (NULL only when out of memory): check nndc_ok, read nndc_errors. */
nndc_model *nndc_compile_file(const char *path, const nndc_options *o);
/* `name` names the source in diagnostics; imports resolve relative to it. */
nndc_model *nndc_compile_string(const char *name, const char *text, const nndc_options *o);
int  nndc_ok(const nndc_model *m);               /* 1 if compiled without error */
const char *nndc_errors(const nndc_model *m);    /* every diagnostic so far ("" if none) */
void nndc_free(nndc_model *m);

/* Inputs, in declaration order. */
int nndc_input_count(const nndc_model *m);
const char *nndc_input_name(const nndc_model *m, int i);
int nndc_input_info(const nndc_model *m, int i, nndc_tensor_info *info);   /* 0 or -1 */
/* Borrows data (float for f32 inputs, int32_t for i32) until rebound or freed. */
int nndc_bind_input(nndc_model *m, const char *name, const void *data);

/* Params, in declaration order: the model's own buffers (writable). */
int nndc_param_count(const nndc_model *m);
const char *nndc_param_name(const nndc_model *m, int i);
float *nndc_param(nndc_model *m, const char *name, nndc_tensor_info *info); /* info may be NULL */
int nndc_load_params(nndc_model *m, const char *path);
int nndc_save_params(nndc_model *m, const char *path);   /* atomic */

/* One forward pass (training off): computes every output, the loss and the
 * metrics that the bound inputs allow (inference needs no labels); -1 if
 * nothing can be computed. */
int nndc_forward(nndc_model *m);
/* One optimizer step on the bound batch (needs options.training and every
 * input the loss needs); outputs, loss and metrics of the batch before the
 * update become readable. */
int nndc_train_step(nndc_model *m);
int64_t nndc_steps(const nndc_model *m);          /* optimizer steps taken */

/* The value of an output, "loss" or a metric after the last forward or
 * training step (NULL if it was not computed); valid until the next run. */
const void *nndc_output(nndc_model *m, const char *name, nndc_tensor_info *info);

#ifdef __cplusplus
}
#endif

#endif
