/* onnx_imp.h - the ONNX importer's internals, shared by onnx_import.c (the
 * values, the text, the graph walk, patterns) and onnx_ops.c (one handler
 * per ONNX op and the op table).  Not part of the frontend's interface
 * (onnx_import.h is); ox_ names the functions the two files share. */
#ifndef NNDC_ONNX_IMP_H
#define NNDC_ONNX_IMP_H

#include <onnx.pb-c.h>
#include "onnx_import.h"

#define SYM_BASE (-1e15)                 /* constant value SYM_BASE - k: symbolic dim k */
#define DIM_UNKNOWN INT64_MIN           /* a dim the importer cannot know */
#define MAX_SYMS 16
#define MAX_CONST_FOLD ((int64_t)1 << 22) /* elements an import-time op may produce */

enum { P_CMP = 1, P_ADD, P_MUL, P_UNARY, P_POW, P_ATOM };
typedef enum { VT_F32, VT_I32, VT_BOOL } VType;

/* One ONNX value (a graph input, an initializer, a node output). */
typedef struct Val {
  const char *oname;   /* the graph's name */
  const char *name;    /* the nnd identifier bound to it; NULL: none yet */
  const char *expr;    /* nnd expression (the name once bound) */
  int prec;            /* precedence of expr (P_*) */
  VType vt;
  int rank;
  int64_t dim[MAX_RANK]; /* >= 0, -1-k symbolic k, DIM_UNKNOWN */
  int is_const;        /* values known at import time */
  int64_t n;           /* elements of the constant */
  double *c;           /* [n] the constant (ints exact; SYM_BASE - k a symbolic dim) */
  int is_init;         /* an initializer */
  int uses;            /* node inputs and graph outputs that read it */
  const Onnx__NodeProto *consumer; /* the last node that reads it */
  int graph_output;
  int pending;         /* expr not yet written: its one consumer will (an idiom) */
  int param_done;      /* declared as a param */
  const char *op;      /* the op that produced it (NULL for inputs, constants) */
  const Onnx__NodeProto *prod; /* the node that computes it */
} Val;

/* A chain of nodes read as one builtin (PyTorch's decomposed GELU and
 * LayerNorm, matched before the walk): its last node computes the builtin,
 * the others are skipped. */
typedef struct Pattern {
  int kind;            /* PAT_* */
  const char *x, *w, *b; /* value names: the input, LayerNorm's scale and bias */
  double eps;
} Pattern;
enum { PAT_NONE, PAT_SKIP, PAT_GELU, PAT_LAYER_NORM };

typedef struct Imp {
  Diag *d;
  Arena *a;
  const char *path;
  int64_t opset;
  Val **vals;          /* open-addressing map oname -> Val */
  size_t cap, nvals;
  char **used;         /* identifiers taken (open addressing) */
  size_t ucap, nused;
  const char *sym[MAX_SYMS]; /* symbolic dims: nnd names */
  int nsyms;
  Buf head, params, fns, body, outs; /* the text's sections */
  int have_cell[3];    /* rnn_cell, gru_cell, lstm_cell written to fns */
  OnnxTensor *tensors;
  int ntensors, tcap;
  const Onnx__NodeProto *node; /* the node being translated (for errors) */
  int lit_rank;        /* a one-element constant of rank <= this is written as a number */
  Pattern *pat;        /* [n_node] */
} Imp;

typedef int (*OpFn)(Imp *m);

/* onnx_import.c */
void ox_add_tensor(Imp *m, const char *name, const Val *v, const float *data);
int ox_alias(Imp *m, int k, Val *src, VType vt);
int ox_all_const(Imp *m);
const Onnx__AttributeProto *ox_attr(Imp *m, const char *name);
double ox_attr_f(Imp *m, const char *name, double def);
int64_t ox_attr_i(Imp *m, const char *name, int64_t def);
int ox_attr_ints(Imp *m, const char *name, int64_t *out, int max);
const char *ox_attr_s(Imp *m, const char *name, const char *def);
double ox_bc_elem(const Val *v, int rank, const int64_t *dim, int64_t flat);
int ox_broadcast(Imp *m, Val **v, int n, int *rank, int64_t *dim);
int64_t ox_c_dim(double c);
int64_t ox_i64(double c);
int ox_const_ints(Imp *m, Val *v, const char *what, int64_t *out, int max);
Val *ox_const_result(Imp *m, int k, VType vt, int rank, const int64_t *dim, double *c, int64_t n);
void ox_declare_param(Imp *m, Val *v);
const char *ox_dim_text(Imp *m, int64_t d);
const char *ox_dtype_name(int t);
float *ox_f32_copy(Imp *m, const Val *v);
int ox_fold_binary(Imp *m, const char *op, Val *a, Val *b, VType vt);
Val *ox_in(Imp *m, int k);
const char *ox_ints_text(Imp *m, const int64_t *d, int n);
int ox_is_sym(double c);
const char *ox_list_text(Imp *m, const int64_t *d, int n);
int64_t ox_mul_sat(int64_t a, int64_t b);
void ox_name_take(Imp *m, char *s);
Val *ox_need_in(Imp *m, int k);
const char *ox_new_name(Imp *m, const char *oname);
int ox_node_err(Imp *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ox_norm_axis(Imp *m, int64_t ax, int rank, int64_t *out);
const char *ox_num_text(Imp *m, double v);
const char *ox_operand(Imp *m, Val *v, int minprec);
Val *ox_out_val(Imp *m, int k);
const char *ox_paren(Imp *m, const char *e, int prec, int minprec);
Val *ox_result(Imp *m, int k, const char *expr, int prec, VType vt, int rank, const int64_t *dim, int whole);
int ox_tensor_to_val(Imp *m, const Onnx__TensorProto *t, const char *what, Val *v);
int ox_unsupported(Imp *m, const char *what);
Val *ox_val_get(Imp *m, const char *oname);
int ox_vtype_of(int t);
int ox_float_operand(Imp *m, Val *v);

/* onnx_ops.c */
OpFn ox_find_op(const Onnx__NodeProto *n);  /* NULL: an op nndc does not import */

#endif
