/* onnx_import.h - an ONNX model (ModelProto) to .nnd source text and the
 * tensors of its parameter set (onnx_import.c).  The caller writes them
 * (`nndc import` writes DIR/<name>.nnd and DIR/<name>.safetensors). */
#ifndef NNDC_ONNX_IMPORT_H
#define NNDC_ONNX_IMPORT_H

#include "../ir/ir.h"

/* One tensor of the imported parameter set: a param of the .nnd, or a
 * batch_norm's running statistic (`PREFIX.running_mean`). */
typedef struct OnnxTensor {
  const char *name;    /* as the .nnd names it */
  Shape shape;
  float *data;         /* shape_numel(shape) values (arena) */
} OnnxTensor;

typedef struct OnnxModel {
  char *text;          /* the .nnd source (arena) */
  OnnxTensor *tensors; /* [ntensors] (arena) */
  int ntensors;
} OnnxModel;

/* Translates the serialized ModelProto buf[0..len) into out; `path` names
 * the model in diagnostics and the text's header comment.  Every error
 * (corrupt bytes, an unsupported opset, op or attribute, a dynamic shape,
 * an initializer of the wrong size, external data) is reported in d naming
 * the node and its op type; unsupported ops are all listed, with counts.
 * Returns 0, or -1 with errors in d.  Everything is allocated in a. */
int fe_onnx_import(Diag *d, Arena *a, const char *path, const uint8_t *buf, size_t len, OnnxModel *out);

#endif
