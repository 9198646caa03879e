/* onnx_import.c - an ONNX ModelProto to readable .nnd text and its parameter
 * set (spec §9, `nndc import`).
 *
 * The model is decoded with protobuf-c from the onnx.proto schema (the C is
 * generated at build time).  The graph's nodes are then walked once, in their
 * (topological) order, like a small abstract interpreter whose values are
 * either nnd expressions of a known shape (the run-time tensors) or constants
 * known at import time (initializers, Constant nodes, Shape of a static
 * shape, and the int arithmetic, Gather, Concat, Unsqueeze ... on them that
 * computes the shapes Reshape reads; a symbolic dimension travels through
 * those as a marker, so `x.view(x.size(0), -1)` becomes `reshape(x, [N, -1])`).
 *
 * Text: inputs with their shapes (a symbolic first dimension keeps its name),
 * the params an op reads (initializers, declared when first used as tensors,
 * shapes in the declaration, values in OnnxModel.tensors), one statement per
 * node, and the outputs in the graph's order.  Idioms read as layers: a
 * MatMul whose one use is a bias Add is `x @ W + b`, a Gemm whose weight is
 * used once keeps it transposed as `[in, out]`, and a Conv, Gemm, MatMul or
 * Add whose one use is an activation is written inside it,
 * `relu(conv2d(x, w, b, ...))`.  Names are the graph's where they are
 * identifiers, sanitized (and made unique) otherwise.
 *
 * Decisions:
 *   - ONNX int64/int32 tensors are nnd i32; bool tensors are f32 0/1 (what
 *     nnd's comparisons give).  Integer arithmetic exists only at import time.
 *   - A float constant used as a run-time operand is a literal when it has
 *     one element, else a param (so it is in the safetensors file).
 *   - Errors name the node ('NAME' (OpType)); unsupported ops are collected
 *     first and listed all at once, with counts, and nothing else is done.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* A chain of nodes read as one builtin (patterns.c's idea, here: PyTorch's
 * decomposed GELU and LayerNorm): its last node computes the builtin, the
 * others are skipped. */
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

/* ------------------------------------------------------------ errors */

static int node_err(Imp *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int node_err(Imp *m, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (m->node)
    diag_file_error(m->d, m->path, "node '%s' (%s): %s", m->node->name && *m->node->name ? m->node->name : "(unnamed)",
                    m->node->op_type ? m->node->op_type : "?", msg);
  else
    diag_file_error(m->d, m->path, "%s", msg);
  return -1;
}

static int unsupported(Imp *m, const char *what) {
  return node_err(m, "unsupported: %s", what);
}

/* ------------------------------------------------------------ maps */

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
  return h;
}

static Val *val_get(Imp *m, const char *oname) {
  if (!m->cap || !oname) return NULL;
  for (size_t i = hash_str(oname) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (!m->vals[i]) return NULL;
    if (!strcmp(m->vals[i]->oname, oname)) return m->vals[i];
  }
}

static void val_put(Imp *m, Val *v) {
  if (2 * (m->nvals + 1) > m->cap) {
    size_t ncap = m->cap ? 2 * m->cap : 64;
    Val **nv = arena_alloc(m->a, ncap * sizeof *nv);
    for (size_t k = 0; k < m->cap; k++) {
      if (!m->vals[k]) continue;
      size_t i = hash_str(m->vals[k]->oname) & (ncap - 1);
      while (nv[i]) i = (i + 1) & (ncap - 1);
      nv[i] = m->vals[k];
    }
    m->vals = nv;
    m->cap = ncap;
  }
  size_t i = hash_str(v->oname) & (m->cap - 1);
  while (m->vals[i] && strcmp(m->vals[i]->oname, v->oname)) i = (i + 1) & (m->cap - 1);
  if (!m->vals[i]) m->nvals++;
  m->vals[i] = v;
}

static int name_used(Imp *m, const char *s) {
  if (!m->ucap) return 0;
  for (size_t i = hash_str(s) & (m->ucap - 1); m->used[i]; i = (i + 1) & (m->ucap - 1))
    if (!strcmp(m->used[i], s)) return 1;
  return 0;
}

static void name_take(Imp *m, char *s) {
  if (2 * (m->nused + 1) > m->ucap) {
    size_t ncap = m->ucap ? 2 * m->ucap : 256;
    char **nu = arena_alloc(m->a, ncap * sizeof *nu);
    for (size_t k = 0; k < m->ucap; k++) {
      if (!m->used[k]) continue;
      size_t i = hash_str(m->used[k]) & (ncap - 1);
      while (nu[i]) i = (i + 1) & (ncap - 1);
      nu[i] = m->used[k];
    }
    m->used = nu;
    m->ucap = ncap;
  }
  size_t i = hash_str(s) & (m->ucap - 1);
  while (m->used[i]) i = (i + 1) & (m->ucap - 1);
  m->used[i] = s;
  m->nused++;
}

/* Keywords, types and builtins: never a value's name. */
static void reserve_names(Imp *m) {
  static const char *const words[] = {
    "input", "param", "const", "fn", "return", "for", "in", "output", "loss", "metric", "train", "step",
    "import", "true", "false", "f32", "i32", "inf", "flatten", "zeros", "ones", "full", "dim", "layer_norm",
    "batch_norm", "conv_transpose2d", "concat", "float", "erf"};
  for (size_t k = 0; k < sizeof words / sizeof *words; k++) name_take(m, (char *)words[k]);
  for (int k = 0; k < OP_COUNT; k++) name_take(m, (char *)op_info[k].name);
}

/* A new identifier from a graph name: [A-Za-z0-9_] kept, runs of anything
 * else one '_', a leading digit prefixed with 't', unique with _2, _3 ... */
static const char *new_name(Imp *m, const char *oname) {
  size_t n = strlen(oname);
  char *s = arena_alloc(m->a, n + 2);
  size_t k = 0;
  for (size_t i = 0; i < n && k < 64; i++) {
    char c = oname[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (ok) s[k++] = c;
    else if (k && s[k - 1] != '_') s[k++] = '_';
  }
  while (k > 1 && s[k - 1] == '_') k--;
  s[k] = 0;
  if (!k) s = arena_strdup(m->a, "v");
  else if (s[0] >= '0' && s[0] <= '9') s = arena_printf(m->a, "t%s", s);
  char *u = s;
  for (int i = 2; name_used(m, u); i++) u = arena_printf(m->a, "%s_%d", s, i);
  name_take(m, u);
  return u;
}

/* ------------------------------------------------------------ values */

/* a * b for sizes, saturating above MAX_DIM (so a hostile shape cannot overflow) */
static int64_t mul_sat(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > MAX_DIM || r < -MAX_DIM) return MAX_DIM + 1;
  return r;
}

static int is_sym(double c) { return c <= SYM_BASE + 0.5 && c > SYM_BASE - MAX_SYMS - 0.5; }

/* A dim as nnd text: the number or the symbol's name; NULL if unknown. */
static const char *dim_text(Imp *m, int64_t d) {
  if (d >= 0) return arena_printf(m->a, "%lld", (long long)d);
  if (d != DIM_UNKNOWN && -1 - d < m->nsyms) return m->sym[-1 - d];
  return NULL;
}

static const char *list_text(Imp *m, const int64_t *d, int n) {
  Buf b = {0};
  buf_puts(&b, "[");
  for (int k = 0; k < n; k++) {
    const char *t = dim_text(m, d[k]);
    if (!t) {
      free(b.s);
      return NULL;
    }
    buf_printf(&b, "%s%s", k ? ", " : "", t);
  }
  buf_puts(&b, "]");
  char *s = arena_strdup(m->a, b.s);
  free(b.s);
  return s;
}

static const char *ints_text(Imp *m, const int64_t *d, int n) {
  Buf b = {0};
  buf_puts(&b, "[");
  for (int k = 0; k < n; k++) buf_printf(&b, "%s%lld", k ? ", " : "", (long long)d[k]);
  buf_puts(&b, "]");
  char *s = arena_strdup(m->a, b.s);
  free(b.s);
  return s;
}

static const char *num_text(Imp *m, double v) {
  if (isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == (double)(int64_t)v && fabs(v) < 1e15) return arena_printf(m->a, "%lld", (long long)v);
  /* the shortest text that reads back as the same f32 (1e-05, not 9.99999975e-06) */
  char buf[64];
  for (int p = 6; p <= 17; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, v);
    if ((float)strtod(buf, NULL) == (float)v) break;
  }
  return arena_strdup(m->a, buf);
}

static Val *new_val(Imp *m, const char *oname) {
  Val *v = arena_alloc(m->a, sizeof *v);
  v->oname = oname;
  val_put(m, v);
  return v;
}

/* The dim value of a symbolic constant element, or the element. */
static int64_t c_dim(double c) { return is_sym(c) ? -1 - (int64_t)llround(SYM_BASE - c) : (int64_t)c; }

/* ------------------------------------------------------------ tensors */

static const char *dtype_name(int t) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return "float";
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return "double";
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return "int64";
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return "int32";
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return "bool";
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return "uint8";
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return "int8";
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return "float16";
  case ONNX__TENSOR_PROTO__DATA_TYPE__STRING: return "string";
  case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return "bfloat16";
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return "uint16";
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: return "int16";
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return "uint32";
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return "uint64";
  case ONNX__TENSOR_PROTO__DATA_TYPE__COMPLEX64: return "complex64";
  case ONNX__TENSOR_PROTO__DATA_TYPE__COMPLEX128: return "complex128";
  default: return "undefined";
  }
}

/* The nnd type of an ONNX element type; -1 when there is none. */
static int vtype_of(int t) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return VT_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return VT_I32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return VT_BOOL;
  default: return -1;
  }
}

static int shape_of_dims(Imp *m, const char *what, const int64_t *dims, size_t n, Val *v) {
  if (n > MAX_RANK) return node_err(m, "%s has rank %zu; nndc supports up to %d", what, n, MAX_RANK);
  v->rank = (int)n;
  int64_t numel = 1;
  for (size_t k = 0; k < n; k++) {
    if (dims[k] < 0 || dims[k] > MAX_DIM) return node_err(m, "%s has an invalid dimension %lld", what, (long long)dims[k]);
    v->dim[k] = dims[k];
    if (__builtin_mul_overflow(numel, dims[k], &numel) || numel > MAX_DIM)
      return node_err(m, "%s has too many elements", what);
  }
  v->n = numel;
  return 0;
}

/* Element i of a little-endian raw buffer of element type t. */
static double raw_elem(const uint8_t *p, int t, int64_t i) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: { float f; memcpy(&f, p + 4 * i, 4); return f; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: { double f; memcpy(&f, p + 8 * i, 8); return f; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: { int64_t x; memcpy(&x, p + 8 * i, 8); return (double)x; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: { int32_t x; memcpy(&x, p + 4 * i, 4); return x; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return (int8_t)p[i];
  default: return p[i];   /* bool, uint8 */
  }
}

static int elem_bytes(int t) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return 4;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return 8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return 1;
  default: return 0;
  }
}

/* A TensorProto (initializer or attribute) into a constant value v. */
static int tensor_to_val(Imp *m, const Onnx__TensorProto *t, const char *what, Val *v) {
  int dt = t->has_data_type ? t->data_type : 0;
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return node_err(m, "%s keeps its data in an external file, which nndc does not read", what);
  if (t->segment) return node_err(m, "%s is segmented, which nndc does not support", what);
  int eb = elem_bytes(dt);
  if (!eb) return node_err(m, "unsupported element type %s (%d) of %s", dtype_name(dt), dt, what);
  if (shape_of_dims(m, what, t->dims, t->n_dims, v)) return -1;
  int vt = vtype_of(dt);
  v->vt = vt < 0 ? (dt == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE ? VT_F32 : VT_I32) : (VType)vt;
  v->is_const = 1;
  int64_t n = v->n;
  /* the data's size is checked before anything of the shape's size is allocated */
  if (t->has_raw_data) {
    if ((uint64_t)t->raw_data.len != (uint64_t)n * (uint64_t)eb)
      return node_err(m, "%s has %zu bytes of data, but its shape %s of %s needs %lld", what, t->raw_data.len,
                      ints_text(m, v->dim, v->rank), dtype_name(dt), (long long)n * eb);
    v->c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v->c[i] = raw_elem(t->raw_data.data, dt, i);
    return 0;
  }
  size_t have;
  switch (dt) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: have = t->n_float_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: have = t->n_double_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: have = t->n_int64_data; break;
  default: have = t->n_int32_data; break;
  }
  if ((uint64_t)have != (uint64_t)n)
    return node_err(m, "%s has %zu values, but its shape %s needs %lld", what, have, ints_text(m, v->dim, v->rank),
                    (long long)n);
  v->c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: v->c[i] = t->float_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: v->c[i] = t->double_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: v->c[i] = (double)t->int64_data[i]; break;
    default: v->c[i] = t->int32_data[i]; break;
    }
  }
  return 0;
}

static void add_tensor(Imp *m, const char *name, const Val *v, const float *data) {
  if (m->ntensors == m->tcap) {
    int ncap = m->tcap ? 2 * m->tcap : 16;
    OnnxTensor *nt = arena_alloc(m->a, sizeof *nt * (size_t)ncap);
    if (m->ntensors) memcpy(nt, m->tensors, sizeof *nt * (size_t)m->ntensors);
    m->tensors = nt;
    m->tcap = ncap;
  }
  OnnxTensor *t = &m->tensors[m->ntensors++];
  t->name = name;
  t->shape.rank = v->rank;
  for (int k = 0; k < v->rank; k++) t->shape.dim[k] = v->dim[k];
  t->data = (float *)data;
}

static float *f32_copy(Imp *m, const Val *v) {
  float *f = arena_alloc(m->a, sizeof(float) * (size_t)(v->n ? v->n : 1));
  for (int64_t i = 0; i < v->n; i++) f[i] = (float)v->c[i];
  return f;
}

/* Declares constant v as a param (its values go to the parameter set). */
static void declare_param(Imp *m, Val *v) {
  if (v->param_done) return;
  v->param_done = 1;
  v->name = v->expr = new_name(m, v->oname);
  v->prec = P_ATOM;
  buf_printf(&m->params, "param %s: f32%s\n", v->name, list_text(m, v->dim, v->rank));
  add_tensor(m, v->name, v, f32_copy(m, v));
}

/* ------------------------------------------------------------ operands */

static Val *in(Imp *m, int k) {
  if ((size_t)k >= m->node->n_input || !*m->node->input[k]) return NULL;
  return val_get(m, m->node->input[k]);
}

static Val *need_in(Imp *m, int k) {
  Val *v = in(m, k);
  if (!v) node_err(m, "input %d is missing", k);
  return v;
}

static const char *paren(Imp *m, const char *e, int prec, int minprec) {
  return prec < minprec ? arena_printf(m->a, "(%s)", e) : e;
}

/* v as a run-time operand of precedence at least minprec: a constant becomes
 * a literal (one element) or a param; a pending expression is taken. */
static const char *operand(Imp *m, Val *v, int minprec) {
  if (v->is_const && !v->param_done) {
    if (v->n == 1 && v->rank == 0 && is_sym(v->c[0])) return dim_text(m, c_dim(v->c[0]));
    if (v->n == 1 && v->rank <= m->lit_rank) {   /* broadcasts like the literal */
      const char *t = num_text(m, v->c[0]);
      return paren(m, t, t[0] == '-' ? P_UNARY : P_ATOM, minprec);
    }
    if (v->n == 1 && v->vt != VT_I32)
      return arena_printf(m->a, "full(%s, %s)", list_text(m, v->dim, v->rank), num_text(m, v->c[0]));
    if (v->vt == VT_I32) {
      node_err(m, "unsupported: an integer constant tensor ('%s') used at run time (nnd has no integer constants)", v->oname);
      return NULL;
    }
    declare_param(m, v);
  }
  v->pending = 0;
  return paren(m, v->expr, v->prec, minprec);
}

/* ------------------------------------------------------------ results */

static int is_activation(const char *op) {
  static const char *const acts[] = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Softplus", "Gelu", "Clip"};
  for (size_t k = 0; k < sizeof acts / sizeof *acts; k++)
    if (!strcmp(op, acts[k])) return 1;
  return 0;
}

/* Whether the node producing value v (op) is written inside its one consumer. */
static int idiom(Imp *m, const Val *v, const char *op) {
  if (v->uses != 1 || v->graph_output || !v->consumer) return 0;
  const char *c = v->consumer->op_type;
  if (!strcmp(op, "MatMul") && !strcmp(c, "Add")) {
    for (size_t k = 0; k < v->consumer->n_input; k++) {
      Val *o = val_get(m, v->consumer->input[k]);
      if (o && o != v && o->is_init) return 1;
    }
    return 0;
  }
  static const char *const layers[] = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add"};
  for (size_t k = 0; k < sizeof layers / sizeof *layers; k++)
    if (!strcmp(op, layers[k])) return is_activation(c);
  return 0;
}

/* Output k of the node: expr of type vt and shape dim[0..rank); written as
 * a statement unless an idiom puts it inside its consumer. */
/* The value of output k, not yet defined; NULL after reporting. */
static Val *out_val(Imp *m, int k) {
  if ((size_t)k >= m->node->n_output || !*m->node->output[k]) {
    node_err(m, "output %d is missing", k);
    return NULL;
  }
  Val *v = val_get(m, m->node->output[k]);
  if (!v || v->expr || v->is_const) {
    node_err(m, "output '%s' is defined twice", m->node->output[k]);
    return NULL;
  }
  return v;
}

static Val *result(Imp *m, int k, const char *expr, int prec, VType vt, int rank, const int64_t *dim, int whole) {
  Val *v = out_val(m, k);
  if (!v) return NULL;
  const char *on = v->oname;
  v->vt = vt;
  v->rank = rank;
  for (int i = 0; i < rank; i++) v->dim[i] = dim[i];
  v->op = m->node->op_type;
  v->prec = prec;
  if (!whole && idiom(m, v, v->op)) {
    v->expr = expr;
    v->pending = 1;
    return v;
  }
  v->name = new_name(m, on);
  buf_printf(&m->body, "%s = %s\n", v->name, expr);
  v->expr = v->name;
  v->prec = P_ATOM;
  return v;
}

/* Output k is a constant of n elements c, shape dim. */
static Val *const_result(Imp *m, int k, VType vt, int rank, const int64_t *dim, double *c, int64_t n) {
  Val *v = out_val(m, k);
  if (!v) return NULL;
  v->vt = vt;
  v->rank = rank;
  for (int i = 0; i < rank; i++) v->dim[i] = dim[i];
  v->is_const = 1;
  v->c = c;
  v->n = n;
  return v;
}

/* Output k is the same value as src (Identity, Dropout, a no-op Cast). */
static int alias(Imp *m, int k, Val *src, VType vt) {
  Val *v = out_val(m, k);
  if (!v) return -1;
  const char *on = v->oname;
  int uses = v->uses, go = v->graph_output;
  const Onnx__NodeProto *cons = v->consumer;
  if (src->is_const) {
    *v = *src;
    v->oname = on, v->uses = uses, v->graph_output = go, v->consumer = cons, v->vt = vt;
    v->param_done = 0, v->name = NULL, v->expr = NULL, v->is_init = 0;
    return 0;
  }
  const char *e = operand(m, src, 0);
  if (!e) return -1;
  v->vt = vt;
  v->rank = src->rank;
  memcpy(v->dim, src->dim, sizeof v->dim);
  if (go) {
    v->name = new_name(m, on);
    buf_printf(&m->body, "%s = %s\n", v->name, e);
    v->expr = v->name;
    v->prec = P_ATOM;
  } else {
    v->name = src->name;
    v->expr = e;
    v->prec = src->prec < P_ATOM && e[0] == '(' ? P_ATOM : src->prec;
  }
  return 0;
}

/* ------------------------------------------------------------ attributes */

static const Onnx__AttributeProto *attr(Imp *m, const char *name) {
  for (size_t k = 0; k < m->node->n_attribute; k++)
    if (m->node->attribute[k]->name && !strcmp(m->node->attribute[k]->name, name)) return m->node->attribute[k];
  return NULL;
}

static int64_t attr_i(Imp *m, const char *name, int64_t def) {
  const Onnx__AttributeProto *a = attr(m, name);
  return a && a->has_i ? a->i : def;
}

static double attr_f(Imp *m, const char *name, double def) {
  const Onnx__AttributeProto *a = attr(m, name);
  return a && a->has_f ? a->f : def;
}

/* An ints attribute into out[0..max); returns the count or -1 (too many). */
static int attr_ints(Imp *m, const char *name, int64_t *out, int max) {
  const Onnx__AttributeProto *a = attr(m, name);
  if (!a) return 0;
  if (a->n_ints > (size_t)max) return node_err(m, "attribute %s has %zu values", name, a->n_ints);
  for (size_t k = 0; k < a->n_ints; k++) out[k] = a->ints[k];
  return (int)a->n_ints;
}

static const char *attr_s(Imp *m, const char *name, const char *def) {
  const Onnx__AttributeProto *a = attr(m, name);
  if (!a || !a->has_s) return def;
  return arena_strndup(m->a, (const char *)a->s.data, a->s.len);
}

/* A constant int list input (axes, shape, starts...) into out; -1 if absent or not constant. */
static int const_ints(Imp *m, Val *v, const char *what, int64_t *out, int max) {
  if (!v->is_const) return node_err(m, "%s must be a constant (it is computed at run time)", what);
  if (v->n > max) return node_err(m, "%s has %lld values", what, (long long)v->n);
  for (int64_t i = 0; i < v->n; i++) {
    if (is_sym(v->c[i])) return node_err(m, "%s depends on a symbolic dimension", what);
    out[i] = (int64_t)v->c[i];
  }
  return (int)v->n;
}

static int norm_axis(Imp *m, int64_t ax, int rank, int64_t *out) {
  *out = 0;
  if (ax < -rank || ax >= rank) return node_err(m, "axis %lld is out of range for rank %d", (long long)ax, rank);
  *out = ax < 0 ? ax + rank : ax;
  return 0;
}

/* ------------------------------------------------------------ shapes */

static int broadcast(Imp *m, Val **v, int n, int *rank, int64_t *dim) {
  *rank = 0;
  for (int i = 0; i < n; i++) if (v[i]->rank > *rank) *rank = v[i]->rank;
  for (int k = 0; k < *rank; k++) {
    int64_t d = 1;
    for (int i = 0; i < n; i++) {
      int j = k - (*rank - v[i]->rank);
      if (j < 0) continue;
      int64_t e = v[i]->dim[j];
      if (e == 1) continue;
      if (d == 1 || d == e) d = e;
      else if (d == DIM_UNKNOWN || e == DIM_UNKNOWN) d = DIM_UNKNOWN;
      else return node_err(m, "shapes %s and %s do not broadcast", list_text(m, v[0]->dim, v[0]->rank),
                           list_text(m, v[i]->dim, v[i]->rank));
    }
    dim[k] = d;
  }
  return 0;
}

/* ------------------------------------------------------------ import-time folding */

static int all_const(Imp *m) {
  for (size_t k = 0; k < m->node->n_input; k++) {
    if (!*m->node->input[k]) continue;
    Val *v = val_get(m, m->node->input[k]);
    if (!v || !v->is_const) return 0;
  }
  return 1;
}

/* Element (index of the broadcast result) of const v. */
static double bc_elem(const Val *v, int rank, const int64_t *dim, int64_t flat) {
  int64_t off = 0, stride = 1;
  for (int k = rank - 1; k >= 0; k--) {
    int64_t i = flat % dim[k];
    flat /= dim[k];
    int j = k - (rank - v->rank);
    if (j < 0) continue;
    if (v->dim[j] != 1) off += i * stride;
    stride *= v->dim[j];
  }
  return v->c[off];
}

static double fold_bin(const char *op, double a, double b, int is_int) {
  if (!strcmp(op, "Add")) return a + b;
  if (!strcmp(op, "Sub")) return a - b;
  if (!strcmp(op, "Mul")) return a * b;
  if (!strcmp(op, "Div")) return is_int ? (b ? trunc(a / b) : 0) : a / b;
  if (!strcmp(op, "Equal")) return a == b;
  if (!strcmp(op, "Less")) return a < b;
  if (!strcmp(op, "Greater")) return a > b;
  if (!strcmp(op, "Max")) return a > b ? a : b;
  if (!strcmp(op, "Min")) return a < b ? a : b;
  return a;
}

/* Elementwise binary ops on two constants (the int arithmetic of shapes). */
static int fold_binary(Imp *m, const char *op, Val *a, Val *b, VType vt) {
  Val *v[2] = {a, b};
  int rank;
  int64_t dim[MAX_RANK];
  if (broadcast(m, v, 2, &rank, dim)) return -1;
  int64_t n = 1;
  for (int k = 0; k < rank; k++) n = mul_sat(n, dim[k]);
  if (n > MAX_CONST_FOLD) return unsupported(m, "a constant computation this large");
  double *c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
  int sym = 0;
  for (int64_t i = 0; i < n; i++) {
    double x = bc_elem(a, rank, dim, i), y = bc_elem(b, rank, dim, i);
    sym |= is_sym(x) || is_sym(y);
    c[i] = fold_bin(op, x, y, a->vt == VT_I32);
  }
  if (sym) return unsupported(m, "arithmetic on a symbolic dimension at import time");
  return const_result(m, 0, vt, rank, dim, c, n) ? 0 : -1;
}

/* ------------------------------------------------------------ op handlers */

typedef int (*OpFn)(Imp *m);

static int float_operand(Imp *m, Val *v) {
  if (v->vt == VT_I32 && !v->is_const) return unsupported(m, "integer arithmetic at run time (nnd computes in f32)");
  return 0;
}

static int op_binary(Imp *m) {
  const char *op = m->node->op_type;
  Val *a = need_in(m, 0), *b = need_in(m, 1);
  if (!a || !b) return -1;
  int cmp = !strcmp(op, "Equal") || !strcmp(op, "Less") || !strcmp(op, "Greater") || !strcmp(op, "LessOrEqual") ||
            !strcmp(op, "GreaterOrEqual");
  if (a->is_const && b->is_const && (a->vt == VT_I32 || cmp)) return fold_binary(m, op, a, b, cmp ? VT_BOOL : a->vt);
  if (!cmp && (float_operand(m, a) || float_operand(m, b))) return -1;
  Val *v[2] = {a, b};
  int rank;
  int64_t dim[MAX_RANK];
  if (broadcast(m, v, 2, &rank, dim)) return -1;
  const char *sym = NULL;
  int prec = P_ADD;
  m->lit_rank = rank;
  if (!strcmp(op, "Add")) sym = "+";
  else if (!strcmp(op, "Sub")) sym = "-";
  else if (!strcmp(op, "Mul")) sym = "*", prec = P_MUL;
  else if (!strcmp(op, "Div")) sym = "/", prec = P_MUL;
  else if (!strcmp(op, "Equal")) sym = "==", prec = P_CMP;
  else if (!strcmp(op, "Less")) sym = "<", prec = P_CMP;
  else if (!strcmp(op, "Greater")) sym = ">", prec = P_CMP;
  else if (!strcmp(op, "LessOrEqual")) sym = "<=", prec = P_CMP;
  else sym = ">=", prec = P_CMP;
  int lp = prec == P_CMP ? P_ADD : prec, rp = prec == P_CMP ? P_ADD : prec + 1;
  const char *x = operand(m, a, lp), *y = operand(m, b, rp);
  if (!x || !y) return -1;
  return result(m, 0, arena_printf(m->a, "%s %s %s", x, sym, y), prec, cmp ? VT_BOOL : VT_F32, rank, dim, 0) ? 0 : -1;
}

static int op_pow(Imp *m) {
  Val *a = need_in(m, 0), *b = need_in(m, 1);
  if (!a || !b || float_operand(m, a)) return -1;
  if (!b->is_const || b->n != 1) return unsupported(m, "an exponent that is not one constant");
  const char *x = operand(m, a, P_ATOM);
  if (!x) return -1;
  int rank;
  int64_t dim[MAX_RANK];
  Val *v[2] = {a, b};
  if (broadcast(m, v, 2, &rank, dim)) return -1;
  return result(m, 0, arena_printf(m->a, "%s ** %s", x, num_text(m, b->c[0])), P_POW, VT_F32, rank, dim, 0) ? 0 : -1;
}

/* Max, Min, Sum, Mean of any number of inputs. */
static int op_variadic(Imp *m) {
  const char *op = m->node->op_type;
  int n = (int)m->node->n_input;
  if (n < 1 || n > 64) return node_err(m, "%d inputs", n);
  Val *v[64];
  for (int k = 0; k < n; k++)
    if (!(v[k] = need_in(m, k)) || float_operand(m, v[k])) return -1;
  int rank;
  int64_t dim[MAX_RANK];
  if (broadcast(m, v, n, &rank, dim)) return -1;
  int sum = !strcmp(op, "Sum") || !strcmp(op, "Mean");
  m->lit_rank = rank;
  const char *e = operand(m, v[0], sum ? P_ADD : 0);
  if (!e) return -1;
  int prec = n == 1 ? v[0]->prec : sum ? P_ADD : P_ATOM;
  for (int k = 1; k < n; k++) {
    const char *y = operand(m, v[k], sum ? P_ADD + 1 : 0);
    if (!y) return -1;
    e = sum ? arena_printf(m->a, "%s + %s", e, y)
            : arena_printf(m->a, "%s(%s, %s)", !strcmp(op, "Max") ? "maximum" : "minimum", e, y);
  }
  if (!strcmp(op, "Mean")) {
    e = arena_printf(m->a, "%s / %d", paren(m, e, prec, P_MUL), n);
    prec = P_MUL;
  }
  return result(m, 0, e, prec, VT_F32, rank, dim, 0) ? 0 : -1;
}

static int op_unary(Imp *m) {
  const char *op = m->node->op_type;
  Val *a = need_in(m, 0);
  if (!a || float_operand(m, a)) return -1;
  static const struct { const char *onnx, *fn; } map[] = {
    {"Abs", "abs"}, {"Sqrt", "sqrt"}, {"Exp", "exp"}, {"Log", "log"}, {"Relu", "relu"}, {"Sigmoid", "sigmoid"},
    {"Tanh", "tanh"}, {"Softplus", "softplus"}, {"Erf", "erf"}};
  const char *e = NULL;
  int prec = P_ATOM;
  if (!strcmp(op, "Neg")) {
    const char *x = operand(m, a, P_UNARY);
    if (!x) return -1;
    e = arena_printf(m->a, "-%s", x);
    prec = P_UNARY;
  } else if (!strcmp(op, "Reciprocal")) {
    const char *x = operand(m, a, P_MUL + 1);
    if (!x) return -1;
    e = arena_printf(m->a, "1 / %s", x);
    prec = P_MUL;
  } else {
    const char *x = operand(m, a, 0);
    if (!x) return -1;
    int xp = a->is_const ? P_ATOM : a->prec;   /* x's precedence (a literal is an atom) */
    if (!strcmp(op, "HardSigmoid"))
      e = arena_printf(m->a, "clamp(%s * %s + %s, 0, 1)", num_text(m, (float)attr_f(m, "alpha", 0.2)), paren(m, x, xp, P_MUL + 1),
                       num_text(m, (float)attr_f(m, "beta", 0.5)));
    else if (!strcmp(op, "HardSwish"))
      e = arena_printf(m->a, "%s * clamp(%s / 6 + 0.5, 0, 1)", paren(m, x, xp, P_MUL), paren(m, x, xp, P_MUL)), prec = P_MUL;
    else if (!strcmp(op, "Softsign")) e = arena_printf(m->a, "%s / (1 + abs(%s))", paren(m, x, xp, P_MUL), x), prec = P_MUL;
    else if (!strcmp(op, "Selu"))
      prec = P_MUL, e = arena_printf(m->a, "%s * elu(%s, alpha=%s)", num_text(m, (float)attr_f(m, "gamma", 1.05070102214813232421875)), x,
                       num_text(m, (float)attr_f(m, "alpha", 1.67326319217681884765625)));
    else if (!strcmp(op, "Celu")) {
      const char *al = num_text(m, (float)attr_f(m, "alpha", 1.0));
      e = arena_printf(m->a, "%s * elu(%s / %s)", al, paren(m, x, xp, P_MUL), al);
      prec = P_MUL;
    } else if (!strcmp(op, "ThresholdedRelu"))
      e = arena_printf(m->a, "where(%s > %s, %s, 0)", paren(m, x, xp, P_ADD), num_text(m, (float)attr_f(m, "alpha", 1.0)), x);
    else if (!strcmp(op, "Mish")) e = arena_printf(m->a, "%s * tanh(softplus(%s))", paren(m, x, xp, P_MUL), x), prec = P_MUL;
    else if (!strcmp(op, "LeakyRelu")) e = arena_printf(m->a, "leaky_relu(%s, slope=%s)", x, num_text(m, (float)attr_f(m, "alpha", 0.01)));
    else if (!strcmp(op, "Elu")) {
      double al = attr_f(m, "alpha", 1.0);
      e = al == 1.0 ? arena_printf(m->a, "elu(%s)", x) : arena_printf(m->a, "elu(%s, alpha=%s)", x, num_text(m, (float)al));
    } else if (!strcmp(op, "Gelu")) {
      if (strcmp(attr_s(m, "approximate", "none"), "none")) return unsupported(m, "Gelu with approximate='tanh'");
      e = arena_printf(m->a, "gelu(%s)", x);
    } else {
      for (size_t k = 0; k < sizeof map / sizeof *map; k++)
        if (!strcmp(op, map[k].onnx)) e = arena_printf(m->a, "%s(%s)", map[k].fn, x);
    }
  }
  NNDC_ASSERT(e);
  return result(m, 0, e, prec, VT_F32, a->rank, a->dim, 0) ? 0 : -1;
}

static int op_clip(Imp *m) {
  Val *a = need_in(m, 0);
  if (!a || float_operand(m, a)) return -1;
  double lo = -INFINITY, hi = INFINITY;
  if (m->opset < 11) {
    lo = attr_f(m, "min", -INFINITY);
    hi = attr_f(m, "max", INFINITY);
  } else {
    Val *l = in(m, 1), *h = in(m, 2);
    if ((l && (!l->is_const || l->n != 1)) || (h && (!h->is_const || h->n != 1)))
      return unsupported(m, "Clip bounds that are not constants");
    if (l) lo = l->c[0];
    if (h) hi = h->c[0];
  }
  const char *x = operand(m, a, 0);
  if (!x) return -1;
  const char *e;
  if (isinf(lo) && isinf(hi)) return alias(m, 0, a, VT_F32);
  if (isinf(hi)) e = lo == 0 ? arena_printf(m->a, "relu(%s)", x) : arena_printf(m->a, "maximum(%s, %s)", x, num_text(m, (float)lo));
  else if (isinf(lo)) e = arena_printf(m->a, "minimum(%s, %s)", x, num_text(m, (float)hi));
  else e = arena_printf(m->a, "clamp(%s, %s, %s)", x, num_text(m, (float)lo), num_text(m, (float)hi));
  return result(m, 0, e, P_ATOM, VT_F32, a->rank, a->dim, 0) ? 0 : -1;
}

static int op_where(Imp *m) {
  Val *c = need_in(m, 0), *a = need_in(m, 1), *b = need_in(m, 2);
  if (!c || !a || !b || float_operand(m, a) || float_operand(m, b)) return -1;
  Val *v[3] = {c, a, b};
  int rank;
  int64_t dim[MAX_RANK];
  if (broadcast(m, v, 3, &rank, dim)) return -1;
  m->lit_rank = rank;
  const char *x = operand(m, c, 0), *y = operand(m, a, 0), *z = operand(m, b, 0);
  if (!x || !y || !z) return -1;
  return result(m, 0, arena_printf(m->a, "where(%s, %s, %s)", x, y, z), P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
}

/* PRelu: where(x < 0, slope * x, x) (the slope broadcasts). */
static int op_prelu(Imp *m) {
  Val *a = need_in(m, 0), *sl = need_in(m, 1);
  if (!a || !sl || float_operand(m, a) || float_operand(m, sl)) return -1;
  Val *v[2] = {a, sl};
  int rank;
  int64_t dim[MAX_RANK];
  if (broadcast(m, v, 2, &rank, dim)) return -1;
  m->lit_rank = rank;
  const char *x = operand(m, a, P_MUL + 1), *s = operand(m, sl, P_MUL);
  if (!x || !s) return -1;
  return result(m, 0, arena_printf(m->a, "where(%s < 0, %s * %s, %s)", x, s, x, x), P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
}

/* And, Or, Xor of bool (f32 0/1) tensors. */
static int op_logic(Imp *m) {
  const char *op = m->node->op_type;
  Val *a = need_in(m, 0), *b = need_in(m, 1);
  if (!a || !b) return -1;
  if (a->vt != VT_BOOL || b->vt != VT_BOOL) return unsupported(m, "a logical op of non-bool tensors");
  Val *v[2] = {a, b};
  int rank;
  int64_t dim[MAX_RANK];
  if (broadcast(m, v, 2, &rank, dim)) return -1;
  m->lit_rank = rank;
  int and = !strcmp(op, "And"), or = !strcmp(op, "Or");
  const char *x = operand(m, a, and ? P_MUL : or ? 0 : P_ADD), *y = operand(m, b, and ? P_MUL + 1 : or ? 0 : P_ADD);
  if (!x || !y) return -1;
  const char *e = and ? arena_printf(m->a, "%s * %s", x, y) : or ? arena_printf(m->a, "maximum(%s, %s)", x, y)
                      : arena_printf(m->a, "%s != %s", x, y);
  return result(m, 0, e, and ? P_MUL : or ? P_ATOM : P_CMP, VT_BOOL, rank, dim, 0) ? 0 : -1;
}

/* Trilu: tril(x, k) for the lower part; the upper part is x - tril(x, k - 1). */
static int op_trilu(Imp *m) {
  Val *x = need_in(m, 0), *kv = in(m, 1);
  if (!x || float_operand(m, x)) return -1;
  if (x->rank < 2) return node_err(m, "the input must have rank >= 2");
  int64_t k = 0;
  if (kv) {
    if (!kv->is_const || kv->n != 1) return unsupported(m, "a diagonal k computed at run time");
    k = (int64_t)kv->c[0];
  }
  int upper = (int)attr_i(m, "upper", 1);
  const char *xs = operand(m, x, upper ? P_ADD : 0);
  if (!xs) return -1;
  if (upper && x->prec < P_ATOM && !x->name) return unsupported(m, "Trilu of an inlined expression");
  const char *kt = num_text(m, (double)(upper ? k - 1 : k));
  const char *e = upper ? arena_printf(m->a, "%s - tril(%s, k=%s)", xs, xs, kt) : arena_printf(m->a, "tril(%s, k=%s)", xs, kt);
  return result(m, 0, e, upper ? P_ADD : P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
}

static int op_size(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  double *c = arena_alloc(m->a, sizeof(double));
  c[0] = 1;
  for (int k = 0; k < x->rank; k++) {
    if (x->dim[k] < 0) return unsupported(m, "Size of a symbolic shape");
    c[0] *= (double)x->dim[k];
  }
  return const_result(m, 0, VT_I32, 0, NULL, c, 1) ? 0 : -1;
}

static int op_not(Imp *m) {
  Val *a = need_in(m, 0);
  if (!a) return -1;
  const char *x = operand(m, a, P_ADD);
  if (!x) return -1;
  return result(m, 0, arena_printf(m->a, "%s == 0", x), P_CMP, VT_BOOL, a->rank, a->dim, 0) ? 0 : -1;
}

/* [..., M, K] @ [..., K, N] with broadcast batch axes. */
static int matmul_shape(Imp *m, const Val *a, const Val *b, int *rank, int64_t *dim) {
  if (a->rank < 2 || b->rank < 2) return unsupported(m, "MatMul of a 1-D operand");
  Val ba = *a, bb = *b;
  ba.rank -= 2;
  bb.rank -= 2;
  Val *v[2] = {&ba, &bb};
  if (broadcast(m, v, 2, rank, dim)) return -1;
  int64_t k1 = a->dim[a->rank - 1], k2 = b->dim[b->rank - 2];
  if (k1 >= 0 && k2 >= 0 && k1 != k2)
    return node_err(m, "MatMul of %s and %s", list_text(m, a->dim, a->rank), list_text(m, b->dim, b->rank));
  dim[(*rank)++] = a->dim[a->rank - 2];
  dim[(*rank)++] = b->dim[b->rank - 1];
  return 0;
}

static int op_matmul(Imp *m) {
  Val *a = need_in(m, 0), *b = need_in(m, 1);
  if (!a || !b || float_operand(m, a) || float_operand(m, b)) return -1;
  int rank;
  int64_t dim[MAX_RANK];
  if (matmul_shape(m, a, b, &rank, dim)) return -1;
  const char *x = operand(m, a, P_MUL), *y = operand(m, b, P_MUL + 1);
  if (!x || !y) return -1;
  return result(m, 0, arena_printf(m->a, "%s @ %s", x, y), P_MUL, VT_F32, rank, dim, 0) ? 0 : -1;
}

/* Declares constant b as a param with its two axes swapped (a Gemm's
 * [out, in] weight read once becomes [in, out]: x @ W). */
static void declare_transposed(Imp *m, Val *b) {
  double *c = arena_alloc(m->a, sizeof(double) * (size_t)(b->n ? b->n : 1));
  int64_t r = b->dim[0], cols = b->dim[1];
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < cols; j++) c[j * r + i] = b->c[i * cols + j];
  b->c = c;
  b->dim[0] = cols;
  b->dim[1] = r;
  declare_param(m, b);
}

static int op_gemm(Imp *m) {
  Val *a = need_in(m, 0), *b = need_in(m, 1), *c = in(m, 2);
  if (!a || !b || float_operand(m, a) || float_operand(m, b)) return -1;
  if (a->rank != 2 || b->rank != 2) return node_err(m, "Gemm needs 2-D A and B");
  int ta = (int)attr_i(m, "transA", 0), tb = (int)attr_i(m, "transB", 0);
  double alpha = attr_f(m, "alpha", 1), beta = attr_f(m, "beta", 1);
  const char *x = ta ? arena_printf(m->a, "transpose(%s)", operand(m, a, 0)) : operand(m, a, P_MUL);
  const char *y;
  int64_t M = a->dim[ta ? 1 : 0], N = b->dim[tb ? 0 : 1];
  if (tb && b->is_const && !b->param_done && b->uses == 1 && b->n > 1) {
    declare_transposed(m, b);
    y = b->expr;
  } else if (tb) {
    const char *t = operand(m, b, 0);
    y = t ? arena_printf(m->a, "transpose(%s)", t) : NULL;
  } else {
    y = operand(m, b, P_MUL + 1);
  }
  if (!x || !y) return -1;
  int64_t dim[2] = {M, N};
  const char *e = arena_printf(m->a, "%s @ %s", x, y);
  int prec = P_MUL;
  if (alpha != 1) e = arena_printf(m->a, "%s * %s", num_text(m, (float)alpha), e);
  if (c && beta != 0) {
    if (float_operand(m, c)) return -1;
    m->lit_rank = 2;
    const char *z = operand(m, c, beta == 1 ? P_ADD + 1 : P_MUL + 1);
    if (!z) return -1;
    e = beta == 1 ? arena_printf(m->a, "%s + %s", e, z) : arena_printf(m->a, "%s + %s * %s", e, num_text(m, (float)beta), z);
    prec = P_ADD;
  }
  return result(m, 0, e, prec, VT_F32, 2, dim, 0) ? 0 : -1;
}

/* pads [top, left, bottom, right] from the attribute or auto_pad. */
static int pads4(Imp *m, const Val *x, const int64_t *k, const int64_t *st, const int64_t *dl, int64_t *p) {
  const char *ap = attr_s(m, "auto_pad", "NOTSET");
  p[0] = p[1] = p[2] = p[3] = 0;
  if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
    for (int i = 0; i < 2; i++) {
      int64_t in = x->dim[2 + i];
      if (in < 0) return unsupported(m, "auto_pad on a symbolic dimension");
      int64_t out = (in + st[i] - 1) / st[i];
      int64_t tot = (out - 1) * st[i] + (k[i] - 1) * dl[i] + 1 - in;
      if (tot < 0) tot = 0;
      p[i] = !strcmp(ap, "SAME_UPPER") ? tot / 2 : tot - tot / 2;
      p[i + 2] = tot - p[i];
    }
  } else if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) {
    return unsupported(m, "this auto_pad");
  } else if (!strcmp(ap, "NOTSET")) {
    int n = attr_ints(m, "pads", p, 4);
    if (n < 0) return -1;
    if (n != 0 && n != 4) return unsupported(m, "pads other than 4 values");
  }
  for (int i = 0; i < 4; i++)
    if (p[i] < 0 || p[i] > (1 << 20)) return node_err(m, "invalid pads");
  return 0;
}

static const char *pair_text(Imp *m, const int64_t *v) {
  return v[0] == v[1] ? num_text(m, (double)v[0]) : arena_printf(m->a, "[%lld, %lld]", (long long)v[0], (long long)v[1]);
}

static int attr_pair(Imp *m, const char *name, int64_t def, int64_t *out) {
  out[0] = out[1] = def;
  int64_t v[4];
  int n = attr_ints(m, name, v, 4);
  if (n < 0) return -1;
  if (n == 0) return 0;
  if (n != 2) return unsupported(m, arena_printf(m->a, "%s with %d values (only 2-D is supported)", name, n));
  out[0] = v[0];
  out[1] = v[1];
  if (out[0] < 0 || out[1] < 0 || out[0] > (1 << 20) || out[1] > (1 << 20)) return node_err(m, "invalid %s", name);
  return 0;
}

/* x [n, c, h, w] (dims d) padded by p [top, left, bottom, right] with value v:
 * `concat(full(...), x, full(...), axis=2)` then the same on axis 3. */
static const char *pad_text(Imp *m, const char *xs, const int64_t *d, const int64_t *p, const char *v) {
  const char *n = dim_text(m, d[0]), *c = dim_text(m, d[1]);
  if (!n || !c) {
    unsupported(m, "padding a tensor of unknown shape");
    return NULL;
  }
  int64_t h = d[2] + p[0] + p[2];
  const char *e = xs;
  if (p[0] || p[2])
    e = arena_printf(m->a, "concat(%s%s%s, axis=2)",
                     p[0] ? arena_printf(m->a, "full([%s, %s, %lld, %lld], %s), ", n, c, (long long)p[0], (long long)d[3], v) : "", e,
                     p[2] ? arena_printf(m->a, ", full([%s, %s, %lld, %lld], %s)", n, c, (long long)p[2], (long long)d[3], v) : "");
  if (p[1] || p[3])
    e = arena_printf(m->a, "concat(%s%s%s, axis=3)",
                     p[1] ? arena_printf(m->a, "full([%s, %s, %lld, %lld], %s), ", n, c, (long long)h, (long long)p[1], v) : "", e,
                     p[3] ? arena_printf(m->a, ", full([%s, %s, %lld, %lld], %s)", n, c, (long long)h, (long long)p[3], v) : "");
  return e;
}

static const char *slice_text(Imp *m, const char *xs, int rank, const int64_t *lo, const int64_t *hi, const int64_t *full);

/* The output size and padding of ConvTranspose on axis i: from pads, or
 * auto_pad / output_shape (ONNX's rule); *pb, *pe: the crop at each end. */
static int convt_axis(Imp *m, int i, int64_t in, int64_t k, int64_t st, int64_t dl, int64_t op, int64_t *pb, int64_t *pe,
                      int64_t *out) {
  int64_t os[2], full = (in - 1) * st + op + dl * (k - 1) + 1;
  int nos = attr_ints(m, "output_shape", os, 2);
  const char *ap = attr_s(m, "auto_pad", "NOTSET");
  int same = !strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER");
  if (nos < 0) return -1;
  if (nos && nos != 2) return unsupported(m, "output_shape with other than 2 values");
  if (nos || same) {
    *out = nos ? os[i] : in * st;
    int64_t tot = full - *out;
    int upper = !strcmp(ap, "SAME_UPPER");
    *pb = tot < 0 ? 0 : upper ? tot / 2 : tot - tot / 2;   /* larger than the full result: extended at the end */
    *pe = tot - *pb;
  } else if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) {
    return unsupported(m, "this auto_pad");
  } else {
    *out = full - *pb - *pe;
  }
  if (*out < 1) return node_err(m, "the output would be empty");
  return 0;
}

/* Conv and ConvTranspose (2-D).  Asymmetric pads: a Conv's input is padded
 * explicitly by the difference; a ConvTranspose's result is computed with
 * the smaller pad (and output_padding) and sliced. */
static int op_conv(Imp *m) {
  int tr = !strcmp(m->node->op_type, "ConvTranspose");
  Val *x = need_in(m, 0), *w = need_in(m, 1), *b = in(m, 2);
  if (!x || !w || float_operand(m, x) || float_operand(m, w)) return -1;
  if (x->rank != 4 || w->rank != 4) return unsupported(m, "a convolution that is not 2-D (input [N, C, H, W])");
  int64_t st[2], dl[2], p4[4], pad[2], op[2] = {0, 0}, k[2] = {w->dim[2], w->dim[3]};
  int64_t g = attr_i(m, "group", 1);
  if (attr_pair(m, "strides", 1, st) || attr_pair(m, "dilations", 1, dl)) return -1;
  if (st[0] < 1 || st[1] < 1 || dl[0] < 1 || dl[1] < 1 || g < 1 || g > MAX_DIM) return node_err(m, "invalid strides, dilations or group");
  if (k[0] < 1 || k[1] < 1 || k[0] > (1 << 20) || k[1] > (1 << 20)) return node_err(m, "invalid kernel shape");
  if (x->dim[1] >= 0 && (tr ? x->dim[1] != w->dim[0] : x->dim[1] != mul_sat(w->dim[1], g)))
    return node_err(m, "the input's %lld channels do not match the weight %s with group %lld", (long long)x->dim[1],
                    list_text(m, w->dim, 4), (long long)g);
  if (tr && attr_pair(m, "output_padding", 0, op)) return -1;
  if (tr) {
    p4[0] = p4[1] = p4[2] = p4[3] = 0;
    if (!strcmp(attr_s(m, "auto_pad", "NOTSET"), "NOTSET")) {
      int n = attr_ints(m, "pads", p4, 4);
      if (n < 0) return -1;
      if (n != 0 && n != 4) return unsupported(m, "pads other than 4 values");
    }
  } else if (pads4(m, x, k, st, dl, p4)) {
    return -1;
  }
  int64_t dim[4] = {x->dim[0], tr ? mul_sat(w->dim[1], g) : w->dim[0], 0, 0}, lo[4] = {0, 0, 0, 0}, hi[4], fulld[4];
  int crop = 0;
  for (int i = 0; i < 2; i++) {
    int64_t in = x->dim[2 + i];
    if (in < 0) return unsupported(m, "a convolution over a symbolic spatial dimension");
    if (p4[i] < 0 || p4[i + 2] < 0) return node_err(m, "negative pads");
    pad[i] = p4[i] < p4[i + 2] ? p4[i] : p4[i + 2];
    if (!tr) {
      dim[2 + i] = (in + p4[i] + p4[i + 2] - dl[i] * (k[i] - 1) - 1) / st[i] + 1;
      if (in + p4[i] + p4[i + 2] < dl[i] * (k[i] - 1) + 1) return node_err(m, "the output would be empty");
      continue;
    }
    int64_t pb = p4[i], pe = p4[i + 2], out = 0;
    if (convt_axis(m, i, in, k[i], st[i], dl[i], op[i], &pb, &pe, &out)) return -1;
    pad[i] = pb < pe ? pb : pe;
    if (pad[i] < 0) pad[i] = 0;
    int64_t base = (in - 1) * st[i] - 2 * pad[i] + dl[i] * (k[i] - 1) + 1, start = pb - pad[i];
    op[i] = start + out > base ? start + out - base : 0;
    if (op[i] >= (st[i] > dl[i] ? st[i] : dl[i])) return unsupported(m, "this output_padding or output_shape");
    dim[2 + i] = out;
    lo[2 + i] = start;
    hi[2 + i] = start + out;
    fulld[2 + i] = base + op[i];
    crop |= start != 0 || out != base + op[i];
  }
  const char *xs = operand(m, x, 0), *ws = operand(m, w, 0), *bs = b ? operand(m, b, 0) : NULL;
  if (!xs || !ws || (b && !bs)) return -1;
  if (!tr && (p4[0] != p4[2] || p4[1] != p4[3])) {
    int64_t extra[4] = {p4[0] - pad[0], p4[1] - pad[1], p4[2] - pad[0], p4[3] - pad[1]};
    if (!(xs = pad_text(m, xs, x->dim, extra, "0"))) return -1;
  }
  Buf e = {0};
  buf_printf(&e, "%s(%s, %s", tr ? "conv_transpose2d" : "conv2d", xs, ws);
  if (bs) buf_printf(&e, ", %s", bs);
  if (st[0] != 1 || st[1] != 1) buf_printf(&e, ", stride=%s", pair_text(m, st));
  if (pad[0] || pad[1]) buf_printf(&e, ", padding=%s", pair_text(m, pad));
  if (op[0] || op[1]) buf_printf(&e, ", output_padding=%s", pair_text(m, op));
  if (dl[0] != 1 || dl[1] != 1) buf_printf(&e, ", dilation=%s", pair_text(m, dl));
  if (g != 1) buf_printf(&e, ", groups=%lld", (long long)g);
  buf_puts(&e, ")");
  const char *s = arena_strdup(m->a, e.s);
  free(e.s);
  if (crop) {
    hi[0] = fulld[0] = dim[0];
    hi[1] = fulld[1] = dim[1];
    s = slice_text(m, s, 4, lo, hi, fulld);
  }
  return result(m, 0, s, P_ATOM, VT_F32, 4, dim, 0) ? 0 : -1;
}

static int op_pool(Imp *m) {
  const char *op = m->node->op_type;
  Val *x = need_in(m, 0);
  if (!x || float_operand(m, x)) return -1;
  if (m->node->n_output > 1 && *m->node->output[1]) return unsupported(m, "MaxPool's Indices output");
  if (x->rank != 4) return unsupported(m, "pooling that is not 2-D (input [N, C, H, W])");
  int global = !strncmp(op, "Global", 6);
  if (global) {
    int64_t dim[4] = {x->dim[0], x->dim[1], 1, 1};
    const char *xs = operand(m, x, 0);
    if (!xs) return -1;
    return result(m, 0, arena_printf(m->a, "%s(%s, axis=[2, 3], keepdims=true)", strstr(op, "Max") ? "max" : "mean", xs),
                  P_ATOM, VT_F32, 4, dim, 0) ? 0 : -1;
  }
  int64_t k[2], st[2], dl[2];
  if (attr_pair(m, "kernel_shape", 0, k) || attr_pair(m, "strides", 1, st) || attr_pair(m, "dilations", 1, dl)) return -1;
  if (k[0] < 1 || st[0] < 1 || st[1] < 1) return node_err(m, "invalid kernel_shape or strides");
  if (k[0] != k[1] || st[0] != st[1]) return unsupported(m, "a pooling window or stride that is not square");
  if (dl[0] != 1 || dl[1] != 1) return unsupported(m, "pooling with dilations");
  int64_t p[4];
  if (pads4(m, x, k, st, dl, p)) return -1;
  int max = strstr(op, "Max") != NULL, ceil = (int)attr_i(m, "ceil_mode", 0);
  int incl = (int)attr_i(m, "count_include_pad", 0);
  int64_t dim[4] = {x->dim[0], x->dim[1], 0, 0};
  for (int i = 0; i < 2; i++) {
    int64_t n = x->dim[2 + i], span = n + p[i] + p[i + 2];
    if (n < 0) return unsupported(m, "pooling over a symbolic spatial dimension");
    if (span < k[i]) return node_err(m, "the window is larger than the input");
    int64_t out = (span - k[i]) / st[i] + 1;
    if (ceil && (span - k[i]) % st[i]) {   /* one more window, padded at the end (PyTorch's rule) */
      out++;
      if ((out - 1) * st[i] >= n + p[i]) out--;
      int64_t extra = (out - 1) * st[i] + k[i] - span;
      if (extra > 0) {
        if (!max && incl) return unsupported(m, "AveragePool with ceil_mode and count_include_pad");
        p[i + 2] += extra;
      }
    }
    dim[2 + i] = out;
  }
  const char *xs = operand(m, x, 0);
  if (!xs) return -1;
  const char *fn = max ? "maxpool2d" : "avgpool2d";
  const char *args = st[0] == k[0] ? arena_printf(m->a, "%lld", (long long)k[0])
                                   : arena_printf(m->a, "%lld, stride=%lld", (long long)k[0], (long long)st[0]);
  if (!p[0] && !p[1] && !p[2] && !p[3])
    return result(m, 0, arena_printf(m->a, "%s(%s, %s)", fn, xs, args), P_ATOM, VT_F32, 4, dim, 0) ? 0 : -1;
  /* padding as concatenation: -inf for max, zeros for the average (divided
   * by the count of real elements unless count_include_pad) */
  const char *xp = pad_text(m, xs, x->dim, p, max ? "-inf" : "0");
  if (!xp) return -1;
  const char *e = arena_printf(m->a, "%s(%s, %s)", fn, xp, args);
  if (!max && !incl) {
    int64_t one[4] = {1, 1, x->dim[2], x->dim[3]};
    const char *mask = pad_text(m, arena_printf(m->a, "ones(%s)", ints_text(m, one, 4)), one, p, "0");
    e = arena_printf(m->a, "%s / %s(%s, %s)", e, fn, mask, args);
  }
  return result(m, 0, e, strchr(e, '/') && !max && !incl ? P_MUL : P_ATOM, VT_F32, 4, dim, 0) ? 0 : -1;
}

static int op_batchnorm(Imp *m) {
  Val *x = need_in(m, 0), *w = need_in(m, 1), *b = need_in(m, 2), *mean = need_in(m, 3), *var = need_in(m, 4);
  if (!x || !w || !b || !mean || !var || float_operand(m, x)) return -1;
  if (attr_i(m, "training_mode", 0)) return unsupported(m, "BatchNormalization in training mode");
  for (size_t k = 1; k < m->node->n_output; k++)
    if (*m->node->output[k]) return unsupported(m, "BatchNormalization's running-statistics outputs");
  if (x->rank != 2 && x->rank != 4) return unsupported(m, "BatchNormalization of an input that is not [N, C] or [N, C, H, W]");
  if (!mean->is_const || !var->is_const) return unsupported(m, "running statistics computed at run time");
  int64_t C = x->dim[1];
  if (C < 0 || mean->n != C || var->n != C) return node_err(m, "the running statistics do not have %lld values", (long long)C);
  double eps = attr_f(m, "epsilon", 1e-5), mom = attr_f(m, "momentum", 0.9);
  const char *xs = operand(m, x, 0), *ws = operand(m, w, 0), *bs = operand(m, b, 0);
  if (!xs || !ws || !bs) return -1;
  Buf e = {0};
  buf_printf(&e, "batch_norm(%s, %s, %s", xs, ws, bs);
  /* PyTorch's momentum is 1 - ONNX's (0.1 is written 0.9f: rounded to 6 digits) */
  char mb[32];
  snprintf(mb, sizeof mb, "%.6g", 1 - mom);
  if (strcmp(mb, "0.1")) buf_printf(&e, ", momentum=%s", mb);
  if ((float)eps != 1e-5f) buf_printf(&e, ", eps=%s", num_text(m, (float)eps));
  buf_puts(&e, ")");
  const char *s = arena_strdup(m->a, e.s);
  free(e.s);
  Val *y = result(m, 0, s, P_ATOM, VT_F32, x->rank, x->dim, 1);
  if (!y) return -1;
  Val st = {0};
  st.rank = 1;
  st.dim[0] = C;
  add_tensor(m, arena_printf(m->a, "%s.running_mean", y->name), &st, f32_copy(m, mean));
  add_tensor(m, arena_printf(m->a, "%s.running_var", y->name), &st, f32_copy(m, var));
  return 0;
}

/* layer_norm over the last axis; over the axes from `axis` on it is written
 * on x reshaped to [outer, -1] and back, then scaled.  The optional Mean and
 * InvStdDev outputs are their own statements. */
static int op_layernorm(Imp *m) {
  Val *x = need_in(m, 0), *w = need_in(m, 1), *b = in(m, 2);
  if (!x || !w || float_operand(m, x) || float_operand(m, w) || (b && float_operand(m, b))) return -1;
  int64_t ax;
  if (norm_axis(m, attr_i(m, "axis", -1), x->rank, &ax)) return -1;
  if (attr_i(m, "stash_type", 1) != 1) return unsupported(m, "LayerNormalization with stash_type other than float");
  double eps = attr_f(m, "epsilon", 1e-5);
  const char *es = (float)eps != 1e-5f ? arena_printf(m->a, ", eps=%s", num_text(m, (float)eps)) : "";
  int stats = 0;
  for (size_t k = 1; k < m->node->n_output && k < 3; k++) stats |= *m->node->output[k] != 0;
  const char *xs = operand(m, x, 0);
  if (!xs) return -1;
  if (stats && x->prec != P_ATOM) return unsupported(m, "LayerNormalization statistics of an inlined expression");
  const char *e;
  int prec = b ? P_ATOM : P_MUL;
  if (ax == x->rank - 1) {
    const char *ws = operand(m, w, b ? 0 : P_MUL + 1), *bs = b ? operand(m, b, 0) : NULL;
    if (!ws || (b && !bs)) return -1;
    e = b ? arena_printf(m->a, "layer_norm(%s, %s, %s%s)", xs, ws, bs, es) : arena_printf(m->a, "layer_norm(%s%s) * %s", xs, es, ws);
  } else {
    int64_t outer = 1;
    const char *ot = NULL;
    for (int k = 0; k < ax; k++) {
      if (x->dim[k] >= 0) outer = mul_sat(outer, x->dim[k]);
      else if (k == 0 && ax == 1) ot = dim_text(m, x->dim[0]);
      else return unsupported(m, "LayerNormalization over a shape unknown at import time");
    }
    const char *sh = list_text(m, x->dim, x->rank);
    const char *ws = operand(m, w, P_MUL + 1), *bs = b ? operand(m, b, P_ADD + 1) : NULL;
    if (!sh || !ws || (b && !bs)) return -1;
    if (!ot) ot = arena_printf(m->a, "%lld", (long long)outer);
    e = arena_printf(m->a, "reshape(layer_norm(reshape(%s, [%s, -1])%s), %s) * %s", xs, ot, es, sh, ws);
    prec = P_MUL;
    if (b) e = arena_printf(m->a, "%s + %s", e, bs), prec = P_ADD;
  }
  if (!result(m, 0, e, prec, VT_F32, x->rank, x->dim, 0)) return -1;
  if (!stats) return 0;
  int64_t sd[MAX_RANK], mask[MAX_RANK];
  int nm = 0;
  for (int k = 0; k < x->rank; k++) {
    sd[k] = k < ax ? x->dim[k] : 1;
    if (k >= ax) mask[nm++] = k;
  }
  const char *axes = nm == 1 ? arena_printf(m->a, "%lld", (long long)mask[0]) : ints_text(m, mask, nm);
  const char *mean = arena_printf(m->a, "mean(%s, axis=%s, keepdims=true)", xs, axes);
  Val *mv = NULL;
  if (m->node->n_output > 1 && *m->node->output[1]) {
    if (!(mv = result(m, 1, mean, P_ATOM, VT_F32, x->rank, sd, 1))) return -1;
    mean = mv->name;
  }
  if (m->node->n_output > 2 && *m->node->output[2]) {
    const char *var = arena_printf(m->a, "mean((%s - %s) ** 2, axis=%s, keepdims=true)", xs, mean, axes);
    const char *inv = arena_printf(m->a, "1 / sqrt(%s + %s)", var, num_text(m, (float)eps));
    if (!result(m, 2, inv, P_MUL, VT_F32, x->rank, sd, 1)) return -1;
  }
  return 0;
}

static int op_softmax(Imp *m) {
  int logsm = !strcmp(m->node->op_type, "LogSoftmax");
  Val *x = need_in(m, 0);
  if (!x || float_operand(m, x)) return -1;
  int64_t ax;
  if (norm_axis(m, attr_i(m, "axis", m->opset >= 13 ? -1 : 1), x->rank, &ax)) return -1;
  const char *xs = operand(m, x, 0);
  if (!xs) return -1;
  const char *fn = logsm ? "log_softmax" : "softmax";
  const char *e;
  if (m->opset >= 13 || ax == x->rank - 1) {
    e = ax == x->rank - 1 ? arena_printf(m->a, "%s(%s)", fn, xs) : arena_printf(m->a, "%s(%s, axis=%lld)", fn, xs, (long long)ax);
  } else {   /* opset < 13: over the axes from `axis` on, as one */
    int64_t outer = 1;
    for (int k = 0; k < ax; k++) {
      if (x->dim[k] < 0) return unsupported(m, "Softmax (opset < 13) over a symbolic dimension");
      outer = mul_sat(outer, x->dim[k]);
    }
    const char *sh = list_text(m, x->dim, x->rank);
    if (!sh) return unsupported(m, "an unknown shape");
    e = arena_printf(m->a, "reshape(%s(reshape(%s, [%lld, -1]), axis=1), %s)", fn, xs, (long long)outer, sh);
  }
  return result(m, 0, e, P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
}

/* x reshaped to dim[0..rank) (a constant reshapes at import time). */
static int reshape_to(Imp *m, Val *x, int rank, const int64_t *dim, const char *shape_text) {
  if (x->is_const) {
    int64_t n = 1;
    for (int k = 0; k < rank; k++) {
      if (dim[k] < 0) return unsupported(m, "reshaping a constant to a symbolic shape");
      n = mul_sat(n, dim[k]);
    }
    if (n != x->n) return node_err(m, "cannot reshape %lld values to %s", (long long)x->n, ints_text(m, dim, rank));
    return const_result(m, 0, x->vt, rank, dim, x->c, n) ? 0 : -1;
  }
  const char *sh = shape_text ? shape_text : list_text(m, dim, rank);
  if (!sh) return unsupported(m, "a reshape to a shape unknown at import time");
  const char *xs = operand(m, x, 0);
  if (!xs) return -1;
  return result(m, 0, arena_printf(m->a, "reshape(%s, %s)", xs, sh), P_ATOM, x->vt, rank, dim, 0) ? 0 : -1;
}

static int op_reshape(Imp *m) {
  Val *x = need_in(m, 0), *s = need_in(m, 1);
  if (!x || !s) return -1;
  if (!s->is_const) return unsupported(m, "a Reshape whose shape is computed at run time");
  if (s->n > MAX_RANK) return node_err(m, "a target shape of rank %lld", (long long)s->n);
  int rank = (int)s->n, neg = -1;
  int64_t dim[MAX_RANK], t[MAX_RANK];
  int allowzero = (int)attr_i(m, "allowzero", 0);
  for (int k = 0; k < rank; k++) {
    double c = s->c[k];
    if (is_sym(c)) dim[k] = t[k] = c_dim(c);
    else if (c == 0 && !allowzero) {
      if (k >= x->rank) return node_err(m, "a 0 in the target shape beyond the input's rank");
      dim[k] = t[k] = x->dim[k];
    } else if (c == -1) {
      if (neg >= 0) return node_err(m, "two -1 in the target shape");
      neg = k;
      t[k] = -1;
      dim[k] = DIM_UNKNOWN;
    } else if (c < 0 || c > MAX_DIM) return node_err(m, "an invalid target dimension %g", c);
    else if (c == 0) return unsupported(m, "an empty result (a dimension of size 0)");
    else dim[k] = t[k] = (int64_t)c;
  }
  if (neg >= 0) {   /* infer it: the input's elements over the others' (symbols cancel) */
    int64_t num = 1, den = 1, ok = 1;
    int symcount[MAX_SYMS] = {0};
    for (int k = 0; k < x->rank; k++) {
      if (x->dim[k] >= 0) num = mul_sat(num, x->dim[k]);
      else if (x->dim[k] != DIM_UNKNOWN) symcount[-1 - x->dim[k]]++;
      else ok = 0;
    }
    for (int k = 0; k < rank; k++) {
      if (k == neg) continue;
      if (dim[k] >= 0) den = mul_sat(den, dim[k]);
      else if (dim[k] != DIM_UNKNOWN) symcount[-1 - dim[k]]--;
    }
    int left = -1;
    for (int k = 0; k < MAX_SYMS; k++)
      if (symcount[k] == 1 && left < 0) left = k;
      else if (symcount[k]) ok = 0;
    if (ok && den && num % den == 0) {
      if (left < 0) dim[neg] = num / den;
      else if (num == den) dim[neg] = -1 - left;
    }
    if (x->is_const && den && num % den == 0) dim[neg] = t[neg] = num / den;
  }
  /* the text keeps the -1 (readable) unless everything is static */
  int stat = 1;
  for (int k = 0; k < rank; k++) stat &= dim[k] >= 0;
  const char *sh = NULL;
  if (!stat) {
    Buf b = {0};
    buf_puts(&b, "[");
    for (int k = 0; k < rank; k++) {
      const char *dt = k == neg ? "-1" : dim_text(m, t[k]);
      if (!dt) {
        free(b.s);
        return unsupported(m, "a reshape to a shape unknown at import time");
      }
      buf_printf(&b, "%s%s", k ? ", " : "", dt);
    }
    buf_puts(&b, "]");
    sh = arena_strdup(m->a, b.s);
    free(b.s);
  }
  return reshape_to(m, x, rank, dim, sh);
}

static int op_flatten(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  int64_t ax = attr_i(m, "axis", 1);
  if (ax < 0) ax += x->rank;
  if (ax < 0 || ax > x->rank) return node_err(m, "axis out of range");
  int64_t dim[2] = {1, 1};
  for (int k = 0; k < x->rank; k++) {
    int64_t *d = &dim[k < ax ? 0 : 1];
    if (x->dim[k] < 0) {
      if (*d == 1 && k == 0 && ax == 1) *d = x->dim[k];
      else return unsupported(m, "Flatten over a symbolic dimension");
    } else if (*d >= 0) *d = mul_sat(*d, x->dim[k]);
  }
  if (ax == 1 && !x->is_const) {
    const char *xs = operand(m, x, 0);
    if (!xs) return -1;
    if (x->rank == 2) return alias(m, 0, x, x->vt);
    return result(m, 0, arena_printf(m->a, "flatten(%s)", xs), P_ATOM, x->vt, 2, dim, 0) ? 0 : -1;
  }
  return reshape_to(m, x, 2, dim, NULL);
}

/* Squeeze and Unsqueeze: axes from the attribute (opset < 13) or input 1. */
static int squeeze_axes(Imp *m, int64_t *axes) {
  if (m->opset < 13) return attr_ints(m, "axes", axes, MAX_RANK);
  Val *a = in(m, 1);
  return a ? const_ints(m, a, "axes", axes, MAX_RANK) : 0;
}

static int op_squeeze(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  int64_t axes[MAX_RANK];
  int n = squeeze_axes(m, axes);
  if (n < 0) return -1;
  int drop[MAX_RANK] = {0};
  for (int i = 0; i < n; i++) {
    int64_t a;
    if (norm_axis(m, axes[i], x->rank, &a)) return -1;
    if (x->dim[a] != 1) return node_err(m, "axis %lld has size %s, not 1", (long long)a, dim_text(m, x->dim[a]) ? dim_text(m, x->dim[a]) : "?");
    drop[a] = 1;
  }
  if (!n)
    for (int k = 0; k < x->rank; k++) drop[k] = x->dim[k] == 1;
  int rank = 0;
  int64_t dim[MAX_RANK];
  for (int k = 0; k < x->rank; k++)
    if (!drop[k]) dim[rank++] = x->dim[k];
  return reshape_to(m, x, rank, dim, NULL);
}

static int op_unsqueeze(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  int64_t axes[MAX_RANK];
  int n = squeeze_axes(m, axes);
  if (n < 0) return -1;
  int rank = x->rank + n;
  if (rank > MAX_RANK) return unsupported(m, "a result of rank above 8");
  int ins[MAX_RANK] = {0};
  for (int i = 0; i < n; i++) {
    int64_t a;
    if (norm_axis(m, axes[i], rank, &a)) return -1;
    if (ins[a]) return node_err(m, "axis %lld given twice", (long long)a);
    ins[a] = 1;
  }
  int64_t dim[MAX_RANK];
  for (int k = 0, j = 0; k < rank; k++) dim[k] = ins[k] ? 1 : x->dim[j++];
  return reshape_to(m, x, rank, dim, NULL);
}

static int op_transpose(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  int64_t perm[MAX_RANK];
  int n = attr_ints(m, "perm", perm, MAX_RANK);
  if (n < 0) return -1;
  if (!n) {
    n = x->rank;
    for (int k = 0; k < n; k++) perm[k] = n - 1 - k;
  }
  if (n != x->rank) return node_err(m, "perm has %d values for rank %d", n, x->rank);
  int seen[MAX_RANK] = {0}, ident = 1;
  int64_t dim[MAX_RANK];
  for (int k = 0; k < n; k++) {
    if (perm[k] < 0 || perm[k] >= n || seen[perm[k]]++) return node_err(m, "perm is not a permutation");
    dim[k] = x->dim[perm[k]];
    ident &= perm[k] == k;
  }
  if (ident) return alias(m, 0, x, x->vt);
  if (x->is_const) {
    if (x->n > MAX_CONST_FOLD) return unsupported(m, "a constant computation this large");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(x->n ? x->n : 1));
    int64_t idx[MAX_RANK] = {0}, st[MAX_RANK];
    for (int k = n - 1, s = 1; k >= 0; s *= (int)x->dim[k], k--) st[k] = s;
    for (int64_t i = 0; i < x->n; i++) {
      int64_t off = 0;
      for (int k = 0; k < n; k++) off += idx[k] * st[perm[k]];
      c[i] = x->c[off];
      for (int k = n - 1; k >= 0 && ++idx[k] == dim[k]; k--) idx[k] = 0;
    }
    return const_result(m, 0, x->vt, n, dim, c, x->n) ? 0 : -1;
  }
  const char *xs = operand(m, x, 0);
  if (!xs) return -1;
  const char *e = n == 2 ? arena_printf(m->a, "transpose(%s)", xs) : arena_printf(m->a, "transpose(%s, %s)", xs, ints_text(m, perm, n));
  return result(m, 0, e, P_ATOM, x->vt, n, dim, 0) ? 0 : -1;
}

/* Copies block [lo, hi) of axis ax of const x (import-time Slice, Gather, Concat pieces). */
static void const_block(const Val *x, int ax, int64_t lo, int64_t hi, double *out, int64_t *pos, int64_t outer_i,
                        int64_t inner) {
  int64_t d = x->dim[ax];
  for (int64_t j = lo; j < hi; j++)
    for (int64_t q = 0; q < inner; q++) out[(*pos)++] = x->c[(outer_i * d + j) * inner + q];
}

static int op_concat(Imp *m) {
  int n = (int)m->node->n_input;
  if (n < 1 || n > 64) return node_err(m, "%d inputs", n);
  Val *v[64];
  for (int k = 0; k < n; k++)
    if (!(v[k] = need_in(m, k))) return -1;
  int64_t ax;
  if (norm_axis(m, attr_i(m, "axis", 0), v[0]->rank, &ax)) return -1;
  int64_t dim[MAX_RANK];
  memcpy(dim, v[0]->dim, sizeof dim);
  dim[ax] = 0;
  for (int k = 0; k < n; k++) {
    if (v[k]->rank != v[0]->rank) return node_err(m, "inputs of different ranks");
    if (v[k]->dim[ax] < 0) dim[ax] = DIM_UNKNOWN;
    else if (dim[ax] >= 0) dim[ax] += v[k]->dim[ax];
  }
  if (all_const(m)) {
    int64_t outer = 1, total = 0;
    for (int k = 0; k < ax; k++) outer = mul_sat(outer, dim[k]);
    for (int k = 0; k < n; k++) total += v[k]->n;
    if (total > MAX_CONST_FOLD || dim[ax] < 0) return unsupported(m, "a constant computation this large");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(total ? total : 1));
    int64_t pos = 0;
    for (int64_t o = 0; o < outer; o++)
      for (int k = 0; k < n; k++) {
        int64_t inner = 1;
        for (int j = (int)ax + 1; j < v[k]->rank; j++) inner *= v[k]->dim[j];
        const_block(v[k], (int)ax, 0, v[k]->dim[ax], c, &pos, o, inner);
      }
    return const_result(m, 0, v[0]->vt, v[0]->rank, dim, c, total) ? 0 : -1;
  }
  Buf e = {0};
  buf_puts(&e, "concat(");
  for (int k = 0; k < n; k++) {
    if (v[k]->dim[ax] == 0) continue;
    const char *s = operand(m, v[k], 0);
    if (!s) {
      free(e.s);
      return -1;
    }
    buf_printf(&e, "%s, ", s);
  }
  buf_printf(&e, "axis=%lld)", (long long)ax);
  const char *s = arena_strdup(m->a, e.s);
  free(e.s);
  return result(m, 0, s, P_ATOM, v[0]->vt, v[0]->rank, dim, 0) ? 0 : -1;
}

/* x[..., lo:hi, ...] on axis ax (the other axes whole) as text. */
static const char *slice_text(Imp *m, const char *xs, int rank, const int64_t *lo, const int64_t *hi, const int64_t *full) {
  int last = -1;
  for (int k = 0; k < rank; k++)
    if (lo[k] != 0 || hi[k] != full[k]) last = k;
  if (last < 0) return xs;
  Buf b = {0};
  buf_printf(&b, "%s[", xs);
  for (int k = 0; k <= last; k++) {
    if (k) buf_puts(&b, ", ");
    if (lo[k] == 0 && hi[k] == full[k]) buf_puts(&b, ":");
    else if (hi[k] == full[k]) buf_printf(&b, "%lld:", (long long)lo[k]);
    else buf_printf(&b, "%lld:%lld", (long long)lo[k], (long long)hi[k]);
  }
  buf_puts(&b, "]");
  char *s = arena_strdup(m->a, b.s);
  free(b.s);
  return s;
}

static int op_slice(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  int64_t st[MAX_RANK], en[MAX_RANK], ax[MAX_RANK], sp[MAX_RANK];
  int n, na, ns = 0;
  if (m->opset < 10) {
    n = attr_ints(m, "starts", st, MAX_RANK);
    if (n < 0 || attr_ints(m, "ends", en, MAX_RANK) != n) return n < 0 ? -1 : node_err(m, "starts and ends differ in length");
    na = attr_ints(m, "axes", ax, MAX_RANK);
  } else {
    Val *s = need_in(m, 1), *e = need_in(m, 2), *a = in(m, 3), *p = in(m, 4);
    if (!s || !e) return -1;
    if ((n = const_ints(m, s, "starts", st, MAX_RANK)) < 0 || const_ints(m, e, "ends", en, MAX_RANK) != n)
      return n < 0 || m->d->nerrors ? -1 : node_err(m, "starts and ends differ in length");
    na = a ? const_ints(m, a, "axes", ax, MAX_RANK) : 0;
    if (p && (ns = const_ints(m, p, "steps", sp, MAX_RANK)) < 0) return -1;
  }
  if (na < 0) return -1;
  if (na && na != n) return node_err(m, "axes and starts differ in length");
  int64_t lo[MAX_RANK], hi[MAX_RANK], dim[MAX_RANK];
  for (int k = 0; k < x->rank; k++) lo[k] = 0, hi[k] = dim[k] = x->dim[k];
  for (int i = 0; i < n; i++) {
    int64_t a = na ? ax[i] : i;
    if (norm_axis(m, a, x->rank, &a)) return -1;
    if (ns && sp[i] != 1) return unsupported(m, "Slice with a step other than 1");
    int64_t d = x->dim[a], s = st[i], e = en[i];
    if (d < 0) {
      if (s == 0 && e >= INT32_MAX) continue;
      return unsupported(m, "slicing a symbolic dimension");
    }
    if (s < 0) s += d;
    if (e < 0) e += d;
    s = s < 0 ? 0 : s > d ? d : s;
    e = e < 0 ? 0 : e > d ? d : e;
    if (e <= s) return unsupported(m, "an empty slice");
    lo[a] = s, hi[a] = e, dim[a] = e - s;
  }
  if (x->is_const) {
    int64_t total = 1;
    for (int k = 0; k < x->rank; k++) total = mul_sat(total, dim[k]);
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(total ? total : 1));
    int64_t idx[MAX_RANK] = {0};
    for (int64_t i = 0; i < total; i++) {
      int64_t off = 0;
      for (int k = 0; k < x->rank; k++) off = off * x->dim[k] + lo[k] + idx[k];
      c[i] = x->c[off];
      for (int k = x->rank - 1; k >= 0 && ++idx[k] == dim[k]; k--) idx[k] = 0;
    }
    return const_result(m, 0, x->vt, x->rank, dim, c, total) ? 0 : -1;
  }
  const char *xs = operand(m, x, P_ATOM);
  if (!xs) return -1;
  const char *e = slice_text(m, xs, x->rank, lo, hi, x->dim);
  if (e == xs) return alias(m, 0, x, x->vt);
  return result(m, 0, e, P_ATOM, x->vt, x->rank, dim, 0) ? 0 : -1;
}

/* Split: each output one slice of axis `axis` (sizes from the attribute
 * (opset < 13) or input 1, else equal parts). */
static int op_split(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  int64_t ax, sz[64];
  int no = (int)m->node->n_output;
  if (no < 1 || no > 64) return node_err(m, "%d outputs", no);
  if (norm_axis(m, attr_i(m, "axis", 0), x->rank, &ax)) return -1;
  int64_t d = x->dim[ax];
  if (d < 0) return unsupported(m, "Split of a symbolic axis");
  Val *sv = m->opset >= 13 ? in(m, 1) : NULL;
  int n = sv ? const_ints(m, sv, "split", sz, 64) : attr_ints(m, "split", sz, 64);
  if (n < 0) return -1;
  if (!n) {
    if (d % no) return unsupported(m, "a Split into unequal parts without sizes");
    for (int k = 0; k < no; k++) sz[k] = d / no;
  } else if (n != no) return node_err(m, "%d sizes for %d outputs", n, no);
  int64_t lo[MAX_RANK] = {0}, hi[MAX_RANK], off = 0;
  for (int k = 0; k < no; k++) {
    if (sz[k] < 1 || off + sz[k] > d) return unsupported(m, "these split sizes");
    memcpy(hi, x->dim, sizeof hi);
    lo[ax] = off;
    hi[ax] = off + sz[k];
    off += sz[k];
    if (!*m->node->output[k]) continue;
    const char *xs = operand(m, x, P_ATOM);
    if (!xs) return -1;
    int64_t dim[MAX_RANK];
    memcpy(dim, x->dim, sizeof dim);
    dim[ax] = sz[k];
    if (!result(m, k, slice_text(m, xs, x->rank, lo, hi, x->dim), P_ATOM, x->vt, x->rank, dim, 0)) return -1;
  }
  if (off != d) return node_err(m, "the split sizes add up to %lld, not %lld", (long long)off, (long long)d);
  return 0;
}

static int op_gather(Imp *m) {
  Val *x = need_in(m, 0), *ix = need_in(m, 1);
  if (!x || !ix) return -1;
  int64_t ax;
  if (norm_axis(m, attr_i(m, "axis", 0), x->rank, &ax)) return -1;
  int rank = x->rank - 1 + ix->rank;
  if (rank > MAX_RANK) return unsupported(m, "a result of rank above 8");
  int64_t dim[MAX_RANK];
  for (int k = 0, j = 0; k < x->rank; k++) {
    if (k == ax)
      for (int i = 0; i < ix->rank; i++) dim[j++] = ix->dim[i];
    else dim[j++] = x->dim[k];
  }
  if (!ix->is_const) {
    if (ix->vt != VT_I32) return node_err(m, "the indices are not integers");
    if (ax != 0 || x->rank < 2 || x->vt != VT_F32)
      return unsupported(m, "Gather at run-time indices other than rows (axis 0 of a float tensor of rank >= 2)");
    const char *t = operand(m, x, 0), *i = operand(m, ix, 0);
    if (!t || !i) return -1;
    if (x->rank == 2)
      return result(m, 0, arena_printf(m->a, "embedding(%s, %s)", t, i), P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
    /* rows of more than one axis: embedding of x as [V, -1], reshaped */
    const char *v = dim_text(m, x->dim[0]), *sh = list_text(m, dim, rank);
    if (!v || !sh) return unsupported(m, "Gather on a shape unknown at import time");
    return result(m, 0, arena_printf(m->a, "reshape(embedding(reshape(%s, [%s, -1]), %s), %s)", t, v, i, sh), P_ATOM, VT_F32,
                  rank, dim, 0) ? 0 : -1;
  }
  int64_t d = x->dim[ax];
  if (d < 0) return unsupported(m, "Gather on a symbolic axis");
  int64_t idx[64];
  if (ix->n > 64 && !x->is_const) return unsupported(m, "Gather of more than 64 constant indices");
  if (ix->rank > 1 && !x->is_const) return unsupported(m, "Gather with multi-dimensional constant indices");
  if (x->is_const) {
    int64_t outer = 1, inner = 1, total;
    for (int k = 0; k < ax; k++) outer = mul_sat(outer, x->dim[k]);
    for (int k = (int)ax + 1; k < x->rank; k++) inner *= x->dim[k];
    total = outer * ix->n * inner;
    if (total > MAX_CONST_FOLD) return unsupported(m, "a constant computation this large");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(total ? total : 1));
    int64_t pos = 0;
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < ix->n; i++) {
        int64_t j = (int64_t)ix->c[i];
        if (j < 0) j += d;
        if (j < 0 || j >= d) return node_err(m, "index %lld is out of range for %lld", (long long)ix->c[i], (long long)d);
        const_block(x, (int)ax, j, j + 1, c, &pos, o, inner);
      }
    return const_result(m, 0, x->vt, rank, dim, c, total) ? 0 : -1;
  }
  for (int64_t i = 0; i < ix->n; i++) {
    idx[i] = (int64_t)ix->c[i];
    if (idx[i] < 0) idx[i] += d;
    if (idx[i] < 0 || idx[i] >= d) return node_err(m, "index %lld is out of range for %lld", (long long)ix->c[i], (long long)d);
  }
  const char *xs = operand(m, x, P_ATOM);
  if (!xs) return -1;
  Buf b = {0};
  if (ix->rank == 0) {   /* x[:, i]: the axis dropped */
    buf_printf(&b, "%s[", xs);
    for (int k = 0; k <= ax; k++) buf_printf(&b, "%s%s", k ? ", " : "", k == ax ? num_text(m, (double)idx[0]) : ":");
    buf_puts(&b, "]");
  } else {
    int contiguous = 1;
    for (int64_t i = 1; i < ix->n; i++) contiguous &= idx[i] == idx[i - 1] + 1;
    int64_t lo[MAX_RANK] = {0}, hi[MAX_RANK];
    memcpy(hi, x->dim, sizeof hi);
    if (contiguous) {
      lo[ax] = idx[0];
      hi[ax] = idx[0] + ix->n;
      buf_puts(&b, slice_text(m, xs, x->rank, lo, hi, x->dim));
    } else {
      buf_puts(&b, "concat(");
      for (int64_t i = 0; i < ix->n; i++) {
        lo[ax] = idx[i];
        hi[ax] = idx[i] + 1;
        buf_printf(&b, "%s, ", slice_text(m, xs, x->rank, lo, hi, x->dim));
      }
      buf_printf(&b, "axis=%lld)", (long long)ax);
    }
  }
  const char *s = arena_strdup(m->a, b.s);
  free(b.s);
  return result(m, 0, s, P_ATOM, x->vt, rank, dim, 0) ? 0 : -1;
}

static int op_reduce(Imp *m) {
  const char *op = m->node->op_type;
  Val *x = need_in(m, 0);
  if (!x || float_operand(m, x)) return -1;
  int64_t axes[MAX_RANK];
  int n;
  int axes_input = m->opset >= 18 || (!strcmp(op, "ReduceSum") && m->opset >= 13);
  if (axes_input) {
    Val *a = in(m, 1);
    n = a ? const_ints(m, a, "axes", axes, MAX_RANK) : 0;
  } else {
    n = attr_ints(m, "axes", axes, MAX_RANK);
  }
  if (n < 0) return -1;
  int keep = (int)attr_i(m, "keepdims", 1);
  if (n == 0 && attr_i(m, "noop_with_empty_axes", 0)) return alias(m, 0, x, VT_F32);
  int mask[MAX_RANK] = {0};
  for (int i = 0; i < n; i++) {
    int64_t a;
    if (norm_axis(m, axes[i], x->rank, &a)) return -1;
    mask[a] = 1;
  }
  if (!n)
    for (int k = 0; k < x->rank; k++) mask[k] = 1, axes[n++] = k;
  int rank = 0;
  int64_t dim[MAX_RANK];
  for (int k = 0; k < x->rank; k++)
    if (!mask[k]) dim[rank++] = x->dim[k];
    else if (keep) dim[rank++] = 1;
  int64_t sorted[MAX_RANK], ns = 0;
  for (int k = 0; k < x->rank; k++)
    if (mask[k]) sorted[ns++] = k;
  const char *xs = operand(m, x, 0);
  if (!xs) return -1;
  const char *ax = ns == 1 ? arena_printf(m->a, "%lld", (long long)sorted[0]) : ints_text(m, sorted, (int)ns);
  const char *args = arena_printf(m->a, "axis=%s%s", ax, keep ? ", keepdims=true" : "");
  const char *e;
  if (!strcmp(op, "ReduceMean")) e = arena_printf(m->a, "mean(%s, %s)", xs, args);
  else if (!strcmp(op, "ReduceSum")) e = arena_printf(m->a, "sum(%s, %s)", xs, args);
  else if (!strcmp(op, "ReduceMax")) e = arena_printf(m->a, "max(%s, %s)", xs, args);
  else if (!strcmp(op, "ReduceMin")) e = arena_printf(m->a, "-max(-%s, %s)", paren(m, xs, x->prec, P_UNARY), args);
  else if (!strcmp(op, "ReduceSumSquare")) e = arena_printf(m->a, "sum(%s ** 2, %s)", paren(m, xs, x->prec, P_ATOM), args);
  else if (!strcmp(op, "ReduceL1")) e = arena_printf(m->a, "sum(abs(%s), %s)", xs, args);
  else if (!strcmp(op, "ReduceL2")) e = arena_printf(m->a, "sqrt(sum(%s ** 2, %s))", paren(m, xs, x->prec, P_ATOM), args);
  else if (!strcmp(op, "ReduceLogSum")) e = arena_printf(m->a, "log(sum(%s, %s))", xs, args);
  else e = arena_printf(m->a, "log(sum(exp(%s), %s))", xs, args);
  return result(m, 0, e, e[0] == '-' ? P_UNARY : P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
}

static int op_argmax(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x || float_operand(m, x)) return -1;
  int amin = !strcmp(m->node->op_type, "ArgMin");
  if (attr_i(m, "select_last_index", 0)) return unsupported(m, "select_last_index");
  int64_t ax;
  if (norm_axis(m, attr_i(m, "axis", 0), x->rank, &ax)) return -1;
  int keep = (int)attr_i(m, "keepdims", 1);
  int rank = 0;
  int64_t dim[MAX_RANK];
  for (int k = 0; k < x->rank; k++)
    if (k != ax) dim[rank++] = x->dim[k];
    else if (keep) dim[rank++] = 1;
  const char *xs = operand(m, x, amin ? P_UNARY : 0);
  if (!xs) return -1;
  const char *e = arena_printf(m->a, "argmax(%s%s, axis=%lld)", amin ? "-" : "", xs, (long long)ax);
  if (keep) {
    const char *sh = list_text(m, dim, rank);
    if (!sh) return unsupported(m, "an unknown shape");
    e = arena_printf(m->a, "reshape(%s, %s)", e, sh);
  }
  return result(m, 0, e, P_ATOM, VT_I32, rank, dim, 0) ? 0 : -1;
}

static int op_identity(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  if (!strcmp(m->node->op_type, "Dropout")) {
    if (m->opset >= 12 && m->node->n_input > 2 && *m->node->input[2]) {
      Val *t = in(m, 2);
      if (!t || !t->is_const || t->c[0]) return unsupported(m, "Dropout in training mode");
    }
    if (m->node->n_output > 1 && *m->node->output[1]) {   /* the mask: all kept outside training */
      const char *sh = list_text(m, x->dim, x->rank);
      if (!sh) return unsupported(m, "Dropout's mask of an unknown shape");
      if (!result(m, 1, arena_printf(m->a, "ones(%s)", sh), P_ATOM, VT_BOOL, x->rank, x->dim, 1)) return -1;
    }
  }
  if (x->is_init) {   /* a copy of an initializer is a param of its own (see through_identity) */
    if (alias(m, 0, x, x->vt)) return -1;
    val_get(m, m->node->output[0])->is_init = 1;
    return 0;
  }
  return alias(m, 0, x, x->vt);
}

static int op_constant(Imp *m) {
  const Onnx__AttributeProto *a = NULL;
  for (size_t k = 0; k < m->node->n_attribute; k++) a = m->node->attribute[k];
  if (!a || m->node->n_attribute != 1 || !a->name) return node_err(m, "needs exactly one value attribute");
  Val t = {0};
  if (!strcmp(a->name, "value")) {
    if (!a->t) return node_err(m, "attribute value holds no tensor");
    if (tensor_to_val(m, a->t, "its value", &t)) return -1;
  } else if (!strcmp(a->name, "value_float") || !strcmp(a->name, "value_int")) {
    t.c = arena_alloc(m->a, sizeof(double));
    t.c[0] = a->name[6] == 'f' ? (double)a->f : (double)a->i;
    t.n = 1;
    t.vt = a->name[6] == 'f' ? VT_F32 : VT_I32;
  } else if (!strcmp(a->name, "value_floats") || !strcmp(a->name, "value_ints")) {
    int fl = a->name[6] == 'f';
    t.n = (int64_t)(fl ? a->n_floats : a->n_ints);
    t.c = arena_alloc(m->a, sizeof(double) * (size_t)(t.n ? t.n : 1));
    for (int64_t i = 0; i < t.n; i++) t.c[i] = fl ? (double)a->floats[i] : (double)a->ints[i];
    t.rank = 1;
    t.dim[0] = t.n;
    t.vt = fl ? VT_F32 : VT_I32;
  } else {
    return unsupported(m, arena_printf(m->a, "Constant with attribute %s", a->name));
  }
  return const_result(m, 0, t.vt, t.rank, t.dim, t.c, t.n) ? 0 : -1;
}

/* ConstantOfShape: `zeros([...])`, `full([...], v)` at run time (a
 * symbolic dimension allowed); an integer fill is a constant (static shape). */
static int op_constant_of_shape(Imp *m) {
  Val *s = need_in(m, 0);
  if (!s) return -1;
  if (!s->is_const) return unsupported(m, "a shape computed at run time");
  if (s->n > MAX_RANK) return node_err(m, "a shape of rank %lld", (long long)s->n);
  int rank = (int)s->n;
  int64_t dim[MAX_RANK], n = 1;
  for (int k = 0; k < rank; k++) {
    dim[k] = c_dim(s->c[k]);
    if (!is_sym(s->c[k]) && (s->c[k] < 1 || s->c[k] > MAX_DIM)) return unsupported(m, "an empty or invalid shape");
    if (dim[k] >= 0 && __builtin_mul_overflow(n, dim[k], &n)) return node_err(m, "too many elements");
  }
  double v = 0;
  VType vt = VT_F32;
  const Onnx__AttributeProto *a = attr(m, "value");
  if (a && a->t) {
    Val t = {0};
    if (tensor_to_val(m, a->t, "its value", &t)) return -1;
    if (t.n != 1) return node_err(m, "value must have one element");
    v = t.c[0];
    vt = t.vt;
  }
  if (vt == VT_I32) {
    int stat = 1;
    for (int k = 0; k < rank; k++) stat &= dim[k] >= 0;
    if (!stat || n > MAX_CONST_FOLD) return unsupported(m, "an integer ConstantOfShape of a symbolic or large shape");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) c[i] = v;
    return const_result(m, 0, vt, rank, dim, c, n) ? 0 : -1;
  }
  const char *sh = list_text(m, dim, rank);
  if (!sh) return unsupported(m, "an unknown shape");
  const char *e = v == 0 ? arena_printf(m->a, "zeros(%s)", sh) : v == 1 ? arena_printf(m->a, "ones(%s)", sh)
                         : arena_printf(m->a, "full(%s, %s)", sh, num_text(m, v));
  return result(m, 0, e, P_ATOM, vt, rank, dim, 0) ? 0 : -1;
}

/* Expand: x broadcast to a shape, `x + zeros([...])` (a one-element constant:
 * `full([...], v)`; a constant of a static shape folds). */
static int op_expand(Imp *m) {
  Val *x = need_in(m, 0), *s = need_in(m, 1);
  if (!x || !s) return -1;
  if (!s->is_const) return unsupported(m, "a shape computed at run time");
  if (s->n > MAX_RANK) return node_err(m, "a shape of rank %lld", (long long)s->n);
  Val t = {0};
  t.rank = (int)s->n;
  for (int k = 0; k < t.rank; k++) {
    t.dim[k] = c_dim(s->c[k]);
    if (!is_sym(s->c[k]) && (s->c[k] < 1 || s->c[k] > MAX_DIM)) return unsupported(m, "an empty or invalid shape");
  }
  Val *v[2] = {x, &t};
  int rank;
  int64_t dim[MAX_RANK];
  if (broadcast(m, v, 2, &rank, dim)) return -1;
  int stat = 1;
  int64_t n = 1;
  for (int k = 0; k < rank; k++) {
    stat &= dim[k] >= 0;
    if (dim[k] >= 0 && __builtin_mul_overflow(n, dim[k], &n)) return node_err(m, "too many elements");
  }
  if (x->is_const && (x->vt == VT_I32 || x->n > 1)) {
    if (!stat || n > MAX_CONST_FOLD) return unsupported(m, "expanding a constant to a symbolic or large shape");
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) c[i] = bc_elem(x, rank, dim, i);
    return const_result(m, 0, x->vt, rank, dim, c, n) ? 0 : -1;
  }
  const char *sh = list_text(m, dim, rank);
  if (!sh) return unsupported(m, "an unknown shape");
  if (x->is_const) return result(m, 0, arena_printf(m->a, "full(%s, %s)", sh, num_text(m, x->c[0])), P_ATOM, VT_F32, rank, dim, 0) ? 0 : -1;
  if (float_operand(m, x)) return -1;
  const char *xs = operand(m, x, P_ADD);
  if (!xs) return -1;
  return result(m, 0, arena_printf(m->a, "%s + zeros(%s)", xs, sh), P_ADD, VT_F32, rank, dim, 0) ? 0 : -1;
}

static int op_shape(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  int64_t s = attr_i(m, "start", 0), e = attr_i(m, "end", x->rank);
  if (s < 0) s += x->rank;
  if (e < 0) e += x->rank;
  s = s < 0 ? 0 : s > x->rank ? x->rank : s;
  e = e < 0 ? 0 : e > x->rank ? x->rank : e;
  int64_t n = e > s ? e - s : 0;
  double *c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t k = 0; k < n; k++) {
    int64_t d = x->dim[s + k];
    if (d == DIM_UNKNOWN) return unsupported(m, "Shape of a dimension unknown at import time");
    c[k] = d >= 0 ? (double)d : SYM_BASE - (double)(-1 - d);
  }
  int64_t dim[1] = {n};
  return const_result(m, 0, VT_I32, 1, dim, c, n) ? 0 : -1;
}

static int op_cast(Imp *m) {
  Val *x = need_in(m, 0);
  if (!x) return -1;
  int to = (int)attr_i(m, "to", 0);
  int vt = vtype_of(to);
  if (vt < 0) return unsupported(m, arena_printf(m->a, "Cast to %s", dtype_name(to)));
  if (x->is_const) {
    double *c = arena_alloc(m->a, sizeof(double) * (size_t)(x->n ? x->n : 1));
    for (int64_t i = 0; i < x->n; i++)
      c[i] = vt == VT_I32 ? (is_sym(x->c[i]) ? x->c[i] : trunc(x->c[i])) : vt == VT_BOOL ? x->c[i] != 0 : (double)(float)x->c[i];
    return const_result(m, 0, (VType)vt, x->rank, x->dim, c, x->n) ? 0 : -1;
  }
  if (vt == (int)x->vt || (vt == VT_F32 && x->vt == VT_BOOL)) return alias(m, 0, x, (VType)vt);
  const char *xs = operand(m, x, vt == VT_BOOL ? P_ADD : 0);
  if (!xs) return -1;
  if (vt == VT_BOOL) return result(m, 0, arena_printf(m->a, "%s != 0", xs), P_CMP, VT_BOOL, x->rank, x->dim, 0) ? 0 : -1;
  if (vt == VT_F32) return result(m, 0, arena_printf(m->a, "float(%s)", xs), P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
  return unsupported(m, "Cast of a float tensor to an integer type at run time");
}

/* ------------------------------------------------------------ recurrent nodes */

/* v bound to a name (a statement if it is an expression). */
static const char *named(Imp *m, Val *v) {
  const char *e = operand(m, v, 0);
  if (!e) return NULL;
  if (v->name && e == v->name) return e;
  const char *n = new_name(m, v->oname);
  buf_printf(&m->body, "%s = %s\n", n, e);
  v->name = v->expr = n;
  v->prec = P_ATOM;
  return n;
}

/* A constant [rows, cols] (or a block of rows of it) as a new param,
 * transposed: [cols, nrows]. */
static const char *param_t(Imp *m, const char *name, const double *c, int64_t rows, int64_t cols) {
  Val *p = arena_alloc(m->a, sizeof *p);
  p->oname = name;
  p->rank = 2;
  p->dim[0] = cols;
  p->dim[1] = rows;
  p->n = rows * cols;
  p->c = arena_alloc(m->a, sizeof(double) * (size_t)(p->n ? p->n : 1));
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) p->c[j * rows + i] = c[i * cols + j];
  p->is_const = 1;
  declare_param(m, p);
  return p->name;
}

static const char *param_vec(Imp *m, const char *name, const double *a, const double *b, int64_t n) {
  Val *p = arena_alloc(m->a, sizeof *p);
  p->oname = name;
  p->rank = 1;
  p->dim[0] = n;
  p->n = n;
  p->c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) p->c[i] = (a ? a[i] : 0) + (b ? b[i] : 0);
  p->is_const = 1;
  declare_param(m, p);
  return p->name;
}

/* The cell functions, each written once (ONNX's gate orders). */
static const char *cell_fn(Imp *m, int kind, int lbr) {
  static const char *const names[3] = {"rnn_cell", "gru_cell", "lstm_cell"};
  if (m->have_cell[kind]) return names[kind];
  m->have_cell[kind] = 1;
  name_take(m, (char *)names[kind]);
  if (kind == 0)
    buf_puts(&m->fns, "# ONNX RNN: h' = f(x Wi + h Ri + b)\n"
                      "fn rnn_cell(x, h, W, R, b) = tanh(x @ W + h @ R + b)\n");
  else if (kind == 1 && lbr)
    buf_puts(&m->fns, "# ONNX GRU (linear_before_reset): gates z, r, n\n"
                      "fn gru_cell(x, h, W, R, bw, br) {\n"
                      "  const H = dim(h, -1)\n"
                      "  gx = x @ W + bw\n"
                      "  gh = h @ R + br\n"
                      "  z = sigmoid(gx[:, 0:H] + gh[:, 0:H])\n"
                      "  r = sigmoid(gx[:, H:2*H] + gh[:, H:2*H])\n"
                      "  n = tanh(gx[:, 2*H:3*H] + r * gh[:, 2*H:3*H])\n"
                      "  return (1 - z) * n + z * h\n"
                      "}\n");
  else if (kind == 1)
    buf_puts(&m->fns, "# ONNX GRU: gates z, r, n\n"
                      "fn gru_cell(x, h, W, R, bw, br) {\n"
                      "  const H = dim(h, -1)\n"
                      "  gx = x @ W + bw\n"
                      "  z = sigmoid(gx[:, 0:H] + h @ R[:, 0:H] + br[0:H])\n"
                      "  r = sigmoid(gx[:, H:2*H] + h @ R[:, H:2*H] + br[H:2*H])\n"
                      "  n = tanh(gx[:, 2*H:3*H] + (r * h) @ R[:, 2*H:3*H] + br[2*H:3*H])\n"
                      "  return (1 - z) * n + z * h\n"
                      "}\n");
  else
    buf_puts(&m->fns, "# ONNX LSTM: gates i, o, f, c\n"
                      "fn lstm_cell(x, h, c, W, R, b) {\n"
                      "  const H = dim(h, -1)\n"
                      "  g = x @ W + h @ R + b\n"
                      "  i = sigmoid(g[:, 0:H])\n"
                      "  o = sigmoid(g[:, H:2*H])\n"
                      "  f = sigmoid(g[:, 2*H:3*H])\n"
                      "  c2 = f * c + i * tanh(g[:, 3*H:4*H])\n"
                      "  return o * tanh(c2), c2\n"
                      "}\n");
  return names[kind];
}

static int default_activations(Imp *m, int kind) {
  static const char *const def[3][3] = {{"Tanh"}, {"Sigmoid", "Tanh"}, {"Sigmoid", "Tanh", "Tanh"}};
  const Onnx__AttributeProto *a = attr(m, "activations");
  if (!a) return 0;
  int n = kind == 0 ? 1 : kind == 1 ? 2 : 3;
  if (a->n_strings != (size_t)n) return unsupported(m, "these activations");
  for (int k = 0; k < n; k++)
    if (a->strings[k].len != strlen(def[kind][k]) || memcmp(a->strings[k].data, def[kind][k], a->strings[k].len))
      return unsupported(m, "activations other than the defaults");
  return 0;
}

/* RNN, GRU and LSTM (one direction, forward), unrolled over the static
 * sequence length: a cell function and a `for` loop carrying h (and c). */
static int op_recurrent(Imp *m) {
  const char *op = m->node->op_type;
  int kind = !strcmp(op, "RNN") ? 0 : !strcmp(op, "GRU") ? 1 : 2, G = kind == 0 ? 1 : kind == 1 ? 3 : 4;
  Val *x = need_in(m, 0), *w = need_in(m, 1), *r = need_in(m, 2), *b = in(m, 3), *sl = in(m, 4), *h0 = in(m, 5);
  Val *c0 = kind == 2 ? in(m, 6) : NULL;
  if (!x || !w || !r || float_operand(m, x)) return -1;
  if (strcmp(attr_s(m, "direction", "forward"), "forward")) return unsupported(m, "a reverse or bidirectional recurrence");
  if (attr(m, "clip")) return unsupported(m, "clip");
  if (attr_i(m, "input_forget", 0)) return unsupported(m, "input_forget");
  if (kind == 2 && in(m, 7)) return unsupported(m, "peepholes");
  if (default_activations(m, kind)) return -1;
  int layout = (int)attr_i(m, "layout", 0), lbr = (int)attr_i(m, "linear_before_reset", 0);
  if (x->rank != 3) return node_err(m, "X must be 3-D");
  int64_t T = x->dim[layout ? 1 : 0], B = x->dim[layout ? 0 : 1], I = x->dim[2], H = attr_i(m, "hidden_size", -1);
  if (T < 1) return unsupported(m, "a sequence length unknown at import time");
  if (!w->is_const || !r->is_const || (b && !b->is_const)) return unsupported(m, "weights computed at run time");
  if (H < 1 && r->rank == 3) H = r->dim[2];
  if (H > MAX_DIM) return node_err(m, "an invalid hidden_size %lld", (long long)H);
  if (H < 1 || w->rank != 3 || r->rank != 3 || w->dim[0] != 1 || w->dim[1] != G * H || w->dim[2] != I ||
      r->dim[0] != 1 || r->dim[1] != G * H || r->dim[2] != H || (b && (b->rank != 2 || b->dim[1] != 2 * G * H)))
    return node_err(m, "W, R or B does not have the shape hidden_size %lld asks for", (long long)H);
  if (sl) {
    if (!sl->is_const) return unsupported(m, "sequence_lens computed at run time");
    for (int64_t i = 0; i < sl->n; i++)
      if ((int64_t)sl->c[i] != T) return unsupported(m, "sequences of different lengths");
  }
  const char *xs = named(m, x), *bt = dim_text(m, B);
  if (!xs || !bt) return xs ? unsupported(m, "a batch size unknown at import time") : -1;
  const char *base = m->node->output[0] && *m->node->output[0] ? m->node->output[0] : m->node->name ? m->node->name : op;
  const char *wn = param_t(m, w->oname, w->c, G * H, I), *rn = param_t(m, r->oname, r->c, G * H, H);
  const char *bs;
  if (kind == 1)
    bs = arena_printf(m->a, "%s, %s", param_vec(m, arena_printf(m->a, "%s_w", b ? b->oname : "B"), b ? b->c : NULL, NULL, G * H),
                      param_vec(m, arena_printf(m->a, "%s_r", b ? b->oname : "B"), b ? b->c + G * H : NULL, NULL, G * H));
  else
    bs = param_vec(m, b ? b->oname : arena_printf(m->a, "%s_B", base), b ? b->c : NULL, b ? b->c + G * H : NULL, G * H);
  const char *fn = cell_fn(m, kind, lbr);
  /* the state: h (and c), from initial_h / initial_c or zeros */
  const char *hn = new_name(m, arena_printf(m->a, "%s_h", base)), *cn = kind == 2 ? new_name(m, arena_printf(m->a, "%s_c", base)) : NULL;
  const char *st[2] = {hn, cn};
  Val *init[2] = {h0, c0};
  for (int k = 0; k < (kind == 2 ? 2 : 1); k++) {
    if (init[k]) {
      const char *e = operand(m, init[k], 0);
      if (!e) return -1;
      buf_printf(&m->body, "%s = reshape(%s, [%s, %lld])\n", st[k], e, bt, (long long)H);
    } else {
      buf_printf(&m->body, "%s = zeros([%s, %lld])\n", st[k], bt, (long long)H);
    }
  }
  const char *tv = new_name(m, "t");
  const char *xt = layout ? arena_printf(m->a, "%s[:, %s]", xs, tv) : arena_printf(m->a, "%s[%s]", xs, tv);
  const char *lhs = kind == 2 ? arena_printf(m->a, "%s, %s", hn, cn) : hn;
  const char *args = kind == 2 ? arena_printf(m->a, "%s, %s, %s, %s, %s", hn, cn, wn, rn, bs) : arena_printf(m->a, "%s, %s, %s, %s", hn, wn, rn, bs);
  Val *yv = m->node->n_output > 0 ? val_get(m, m->node->output[0]) : NULL;
  int want_y = yv && yv->uses > 0;
  const char *yn = want_y ? new_name(m, m->node->output[0]) : NULL;
  const char *ystep = want_y ? (layout ? arena_printf(m->a, "reshape(%s, [%s, 1, 1, %lld])", hn, bt, (long long)H)
                                      : arena_printf(m->a, "reshape(%s, [1, 1, %s, %lld])", hn, bt, (long long)H)) : NULL;
  int64_t first = 0;
  if (want_y) {   /* the first step outside the loop starts Y */
    buf_printf(&m->body, "%s = %s(%s, %s)\n", lhs, fn, layout ? arena_printf(m->a, "%s[:, 0]", xs) : arena_printf(m->a, "%s[0]", xs), args);
    buf_printf(&m->body, "%s = %s\n", yn, ystep);
    first = 1;
  }
  if (first < T) {
    buf_printf(&m->body, "for %s in %lld..%lld {\n  %s = %s(%s, %s)\n", tv, (long long)first, (long long)T, lhs, fn, xt, args);
    if (want_y) buf_printf(&m->body, "  %s = concat(%s, %s, axis=%d)\n", yn, yn, ystep, layout ? 1 : 0);
    buf_puts(&m->body, "}\n");
  }
  /* the outputs: Y [T, 1, B, H] (layout 1: [B, T, 1, H]), Y_h and Y_c [1, B, H] ([B, 1, H]) */
  if (want_y) {
    Val *v = out_val(m, 0);
    if (!v) return -1;
    int64_t yd[4] = {T, 1, B, H}, yl[4] = {B, T, 1, H};
    v->vt = VT_F32, v->rank = 4, v->op = op, v->name = v->expr = yn, v->prec = P_ATOM;
    memcpy(v->dim, layout ? yl : yd, sizeof yd);
  }
  for (int k = 1; k <= (kind == 2 ? 2 : 1); k++) {
    if ((size_t)k >= m->node->n_output || !*m->node->output[k]) continue;
    Val *ov = val_get(m, m->node->output[k]);
    if (!ov || !ov->uses) continue;
    int64_t d[3] = {1, B, H}, dl[3] = {B, 1, H};
    const char *e = layout ? arena_printf(m->a, "reshape(%s, [%s, 1, %lld])", st[k - 1], bt, (long long)H)
                           : arena_printf(m->a, "reshape(%s, [1, %s, %lld])", st[k - 1], bt, (long long)H);
    if (!result(m, k, e, P_ATOM, VT_F32, 3, layout ? dl : d, 1)) return -1;
  }
  return 0;
}

/* ------------------------------------------------------------ op table */

typedef struct OpEntry {
  const char *name;
  OpFn fn;
} OpEntry;

static const OpEntry op_table[] = {
  {"Add", op_binary}, {"Sub", op_binary}, {"Mul", op_binary}, {"Div", op_binary}, {"Pow", op_pow},
  {"Equal", op_binary}, {"Less", op_binary}, {"Greater", op_binary}, {"LessOrEqual", op_binary},
  {"GreaterOrEqual", op_binary}, {"Max", op_variadic}, {"Min", op_variadic}, {"Sum", op_variadic},
  {"Mean", op_variadic}, {"Neg", op_unary}, {"Abs", op_unary}, {"Sqrt", op_unary}, {"Exp", op_unary},
  {"Log", op_unary}, {"Relu", op_unary}, {"LeakyRelu", op_unary}, {"Elu", op_unary}, {"Sigmoid", op_unary},
  {"Tanh", op_unary}, {"Softplus", op_unary}, {"Erf", op_unary}, {"Gelu", op_unary}, {"Reciprocal", op_unary},
  {"Clip", op_clip}, {"PRelu", op_prelu}, {"And", op_logic}, {"Or", op_logic}, {"Xor", op_logic},
  {"Trilu", op_trilu}, {"Size", op_size}, {"ArgMin", op_argmax}, {"HardSigmoid", op_unary}, {"HardSwish", op_unary},
  {"Softsign", op_unary}, {"Selu", op_unary}, {"Celu", op_unary}, {"ThresholdedRelu", op_unary}, {"Mish", op_unary}, {"Where", op_where}, {"Not", op_not}, {"MatMul", op_matmul}, {"Gemm", op_gemm},
  {"Conv", op_conv}, {"ConvTranspose", op_conv}, {"MaxPool", op_pool}, {"AveragePool", op_pool},
  {"GlobalAveragePool", op_pool}, {"GlobalMaxPool", op_pool}, {"BatchNormalization", op_batchnorm},
  {"LayerNormalization", op_layernorm}, {"Softmax", op_softmax}, {"LogSoftmax", op_softmax},
  {"Reshape", op_reshape}, {"Flatten", op_flatten}, {"Transpose", op_transpose}, {"Squeeze", op_squeeze},
  {"Unsqueeze", op_unsqueeze}, {"Concat", op_concat}, {"Slice", op_slice}, {"Split", op_split}, {"Gather", op_gather},
  {"ReduceMean", op_reduce}, {"ReduceSum", op_reduce}, {"ReduceMax", op_reduce}, {"ReduceMin", op_reduce},
  {"ReduceSumSquare", op_reduce}, {"ReduceL1", op_reduce}, {"ReduceL2", op_reduce}, {"ReduceLogSum", op_reduce},
  {"ReduceLogSumExp", op_reduce}, {"ArgMax", op_argmax}, {"Dropout", op_identity}, {"Identity", op_identity},
  {"Constant", op_constant}, {"Shape", op_shape}, {"Cast", op_cast}, {"ConstantOfShape", op_constant_of_shape}, {"Expand", op_expand},
  {"RNN", op_recurrent}, {"GRU", op_recurrent}, {"LSTM", op_recurrent},
};

static OpFn find_op(const Onnx__NodeProto *n) {
  if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx")) return NULL;
  if (!n->op_type) return NULL;
  for (size_t k = 0; k < sizeof op_table / sizeof *op_table; k++)
    if (!strcmp(n->op_type, op_table[k].name)) return op_table[k].fn;
  return NULL;
}

/* ------------------------------------------------------------ the graph */

/* Every unsupported op, with counts, in one report; -1 if any. */
static int check_ops(Imp *m, const Onnx__GraphProto *g) {
  const char *names[64];
  int counts[64], n = 0, total = 0;
  for (size_t k = 0; k < g->n_node; k++) {
    const Onnx__NodeProto *nd = g->node[k];
    if (find_op(nd)) continue;
    const char *op = nd->op_type ? nd->op_type : "?";
    if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx")) op = arena_printf(m->a, "%s.%s", nd->domain, op);
    int i = 0;
    while (i < n && strcmp(names[i], op)) i++;
    if (i == n && n < 64) names[n] = op, counts[n++] = 0;
    if (i < n) counts[i]++;
    if (i < n && counts[i] == 1) {
      m->node = nd;
      node_err(m, "unsupported op %s", op);
    }
    total++;
  }
  m->node = NULL;
  if (!n) return 0;
  Buf b = {0};
  for (int i = 0; i < n; i++) buf_printf(&b, "%s%s (%d)", i ? ", " : "", names[i], counts[i]);
  diag_file_error(m->d, m->path, "%d node%s of %d unsupported op%s: %s", total, total == 1 ? "" : "s", n, n == 1 ? "" : "s", b.s);
  free(b.s);
  return -1;
}

static int check_opset(Imp *m, const Onnx__ModelProto *mp) {
  m->opset = -1;
  for (size_t k = 0; k < mp->n_opset_import; k++) {
    const Onnx__OperatorSetIdProto *o = mp->opset_import[k];
    if (!o->domain || !*o->domain || !strcmp(o->domain, "ai.onnx")) m->opset = o->has_version ? o->version : 1;
  }
  if (m->opset < 0) {
    if (!mp->n_opset_import) return node_err(m, "the model imports no opset of the default domain");
    m->opset = 18;   /* only other domains: their ops are reported as unsupported */
    return 0;
  }
  if (m->opset < 1 || m->opset > 18)
    return node_err(m, "opset %lld of the default ONNX domain is not supported (nndc reads opsets 1 to 18)", (long long)m->opset);
  return 0;
}

/* Counts each value's uses and remembers its consumer (idioms, Gemm weights). */
static void count_uses(Imp *m, const Onnx__GraphProto *g) {
  for (size_t k = 0; k < g->n_node; k++) {
    const Onnx__NodeProto *nd = g->node[k];
    for (size_t i = 0; i < nd->n_input; i++) {
      Val *v = val_get(m, nd->input[i]);
      if (v) v->uses++, v->consumer = nd;
    }
    for (size_t i = 0; i < nd->n_output; i++)
      if (*nd->output[i] && !val_get(m, nd->output[i])) new_val(m, nd->output[i])->prod = nd;
  }
  for (size_t k = 0; k < g->n_output; k++) {
    Val *v = val_get(m, g->output[k]->name);
    if (v) v->uses++, v->graph_output = 1;
  }
}

static int symbol(Imp *m, const char *dp) {
  const char *want = dp && *dp ? dp : "N";
  for (int k = 0; k < m->nsyms; k++)
    if (!strcmp(m->sym[k], want) || (dp && !strcmp(m->sym[k], dp))) return k;
  if (m->nsyms == MAX_SYMS) return -1;
  m->sym[m->nsyms] = new_name(m, want);
  return m->nsyms++;
}

static int declare_input(Imp *m, const Onnx__ValueInfoProto *vi) {
  if (!vi->name || !*vi->name) return node_err(m, "a graph input has no name");
  if (val_get(m, vi->name)) return 0;   /* an initializer listed as an input (IR < 4) */
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return node_err(m, "unsupported: input '%s' is not a tensor (a sequence, map or optional)", vi->name);
  int et = tp->tensor_type->has_elem_type ? tp->tensor_type->elem_type : 0;
  int vt = vtype_of(et);
  if (vt < 0)
    return node_err(m, "unsupported element type %s of input '%s' (nndc reads float, int32, int64 and bool inputs)", dtype_name(et), vi->name);
  const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
  if (!sh) return node_err(m, "input '%s' has no shape", vi->name);
  if (sh->n_dim > MAX_RANK) return node_err(m, "input '%s' has rank %zu; nndc supports up to %d", vi->name, sh->n_dim, MAX_RANK);
  Val *v = new_val(m, vi->name);
  v->vt = (VType)vt;
  v->rank = (int)sh->n_dim;
  for (size_t k = 0; k < sh->n_dim; k++) {
    const Onnx__TensorShapeProto__Dimension *d = sh->dim[k];
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0) {
      if (d->dim_value > MAX_DIM) return node_err(m, "input '%s' has an invalid dimension", vi->name);
      if (d->dim_value == 0) return node_err(m, "unsupported: input '%s' is empty (a dimension of size 0)", vi->name);
      v->dim[k] = d->dim_value;
      continue;
    }
    const char *dp = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? d->dim_param : NULL;
    if (k != 0)
      return node_err(m, "input '%s': dimension %zu ('%s') is dynamic and cannot be bound; only the first dimension may be symbolic",
                      vi->name, k, dp ? dp : "?");
    int s = symbol(m, dp);
    if (s < 0) return node_err(m, "too many symbolic dimensions");
    v->dim[k] = -1 - s;
  }
  int64_t numel = 1;
  for (int k = 0; k < v->rank; k++) numel = mul_sat(numel, v->dim[k] >= 0 ? v->dim[k] : 1);
  if (numel > MAX_DIM) return node_err(m, "input '%s' has too many elements", vi->name);
  v->name = v->expr = new_name(m, vi->name);
  v->prec = P_ATOM;
  const char *sh_text = list_text(m, v->dim, v->rank);
  buf_printf(&m->head, "input %s: %s%s\n", v->name, vt == VT_I32 ? "i32" : "f32", sh_text);
  return 0;
}

static int declare_outputs(Imp *m, const Onnx__GraphProto *g) {
  for (size_t k = 0; k < g->n_output; k++) {
    const char *on = g->output[k]->name;
    Val *v = val_get(m, on);
    if (!v || (!v->expr && !v->is_const)) return node_err(m, "graph output '%s' is never computed", on ? on : "?");
    if (v->name && v->expr == v->name && !v->is_init && !v->param_done && v->op) {
      buf_printf(&m->outs, "output %s\n", v->name);
      continue;
    }
    const char *e = operand(m, v, 0);
    if (!e) return -1;
    buf_printf(&m->outs, "output %s = %s\n", new_name(m, on), e);
  }
  return 0;
}

/* The first node that reads value `name` (errors about an initializer name it). */
static const Onnx__NodeProto *first_user(const Onnx__GraphProto *g, const char *name) {
  for (size_t k = 0; k < g->n_node; k++)
    for (size_t i = 0; i < g->node[k]->n_input; i++)
      if (!strcmp(g->node[k]->input[i], name)) return g->node[k];
  return NULL;
}

static int load_initializers(Imp *m, const Onnx__GraphProto *g) {
  if (g->n_sparse_initializer) return node_err(m, "sparse initializers are not supported");
  for (size_t k = 0; k < g->n_initializer; k++) {
    const Onnx__TensorProto *t = g->initializer[k];
    if (!t->name || !*t->name) return node_err(m, "initializer %zu has no name", k);
    if (val_get(m, t->name)) return node_err(m, "initializer '%s' is defined twice", t->name);
    Val *v = new_val(m, t->name);
    m->node = first_user(g, t->name);
    if (tensor_to_val(m, t, arena_printf(m->a, "initializer '%s'", t->name), v)) return -1;
    v->is_init = 1;
  }
  m->node = NULL;
  return 0;
}

/* ------------------------------------------------------------ patterns */

/* The node computing value `name` if it is op and its result is read once
 * (by the chain being matched), else NULL. */
static const Onnx__NodeProto *single(Imp *m, const char *name, const char *op, int uses) {
  Val *v = val_get(m, name);
  if (!v || !v->prod || v->uses != uses || v->graph_output || !v->prod->op_type || strcmp(v->prod->op_type, op)) return NULL;
  return v->prod;
}

/* The one consumer of value `name` if it is op. */
static const Onnx__NodeProto *next(Imp *m, const char *name, const char *op) {
  Val *v = val_get(m, name);
  if (!v || v->uses != 1 || v->graph_output || !v->consumer || !v->consumer->op_type || strcmp(v->consumer->op_type, op)) return NULL;
  if (v->consumer->n_output < 1 || !*v->consumer->output[0]) return NULL;
  return v->consumer;
}

/* A one-element constant (an initializer or a Constant node's value). */
static int scalar(Imp *m, const char *name, double *out) {
  Val *v = val_get(m, name);
  if (v && v->is_const) {
    if (v->n != 1) return 0;
    *out = v->c[0];
    return 1;
  }
  if (!v || !v->prod || !v->prod->op_type || strcmp(v->prod->op_type, "Constant") || v->prod->n_attribute != 1) return 0;
  const Onnx__AttributeProto *a = v->prod->attribute[0];
  if (!a->name) return 0;
  if (!strcmp(a->name, "value_float")) return *out = a->f, 1;
  if (strcmp(a->name, "value") || !a->t) return 0;
  Val t = {0};
  const Onnx__NodeProto *saved = m->node;
  int nerr = m->d->nerrors;
  m->node = v->prod;
  int bad = tensor_to_val(m, a->t, "its value", &t);
  m->node = saved;
  if (bad) {   /* reported again (once) when the node itself is read */
    m->d->nerrors = nerr;
    return 0;
  }
  if (t.n != 1) return 0;
  *out = t.c[0];
  return 1;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-5 * fabs(b) + 1e-12; }

/* The other input of binary node n than `name`; NULL if none or both. */
static const char *other(const Onnx__NodeProto *n, const char *name) {
  if (n->n_input != 2) return NULL;
  if (!strcmp(n->input[0], name) && strcmp(n->input[1], name)) return n->input[1];
  if (!strcmp(n->input[1], name) && strcmp(n->input[0], name)) return n->input[0];
  return NULL;
}

static size_t node_index(const Onnx__GraphProto *g, const Onnx__NodeProto *n) {
  for (size_t k = 0; k < g->n_node; k++)
    if (g->node[k] == n) return k;
  return (size_t)-1;
}

/* x * 0.5 * (1 + erf(x / sqrt(2))), PyTorch's GELU below opset 20, anchored
 * at its Erf node. */
static void match_gelu(Imp *m, const Onnx__GraphProto *g, size_t k) {
  const Onnx__NodeProto *erf = g->node[k], *div, *add, *mul, *half;
  double c;
  if (erf->n_input != 1 || erf->n_output != 1 || !(div = single(m, erf->input[0], "Div", 1)) || div->n_input != 2 ||
      !scalar(m, div->input[1], &c) || !near(c, 1.4142135623730951))
    return;
  const char *x = div->input[0];
  if (!(add = next(m, erf->output[0], "Add")) || !other(add, erf->output[0]) || !scalar(m, other(add, erf->output[0]), &c) ||
      c != 1 || !(mul = next(m, add->output[0], "Mul")) || !other(mul, add->output[0]) || strcmp(other(mul, add->output[0]), x) ||
      !(half = next(m, mul->output[0], "Mul")) || !other(half, mul->output[0]) || !scalar(m, other(half, mul->output[0]), &c) ||
      c != 0.5)
    return;
  const Onnx__NodeProto *chain[4] = {div, erf, add, mul};
  for (int i = 0; i < 4; i++) {
    size_t j = node_index(g, chain[i]);
    if (j == (size_t)-1 || m->pat[j].kind) return;
  }
  for (int i = 0; i < 4; i++) m->pat[node_index(g, chain[i])].kind = PAT_SKIP;
  size_t last = node_index(g, half);
  m->pat[last].kind = PAT_GELU;
  m->pat[last].x = x;
}

/* The value behind a chain of Identity nodes (PyTorch writes equal
 * initializers once, the others as Identity of it). */
static Val *through_identity(Imp *m, const char *name) {
  Val *v = val_get(m, name);
  for (int i = 0; i < 64 && v && v->prod && v->prod->op_type && !strcmp(v->prod->op_type, "Identity") && v->prod->n_input == 1; i++)
    v = val_get(m, v->prod->input[0]);
  return v;
}

static int last_axis(const Onnx__NodeProto *n) {
  for (size_t a = 0; a < n->n_attribute; a++) {
    const Onnx__AttributeProto *at = n->attribute[a];
    if (at->name && !strcmp(at->name, "axes")) return at->n_ints == 1 && at->ints[0] == -1;
  }
  return 0;
}

/* (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) * w + b over the last
 * axis, PyTorch's LayerNorm below opset 17, anchored at the first ReduceMean. */
static void match_layer_norm(Imp *m, const Onnx__GraphProto *g, size_t k) {
  const Onnx__NodeProto *rm = g->node[k], *sub, *pw, *rv, *ad, *sq, *dv, *mw, *ab;
  double c, eps;
  if (rm->n_input != 1 || rm->n_output != 1 || !last_axis(rm) || !(sub = next(m, rm->output[0], "Sub")) ||
      sub->n_input != 2 || strcmp(sub->input[1], rm->output[0]))
    return;
  const char *x = rm->input[0], *d = sub->output[0];
  Val *dvv = val_get(m, d);
  if (strcmp(sub->input[0], x) || !dvv || dvv->uses != 2 || dvv->graph_output) return;
  /* d's two readers: Pow(d, 2) and Div(d, ...) */
  pw = dv = NULL;
  for (size_t j = 0; j < g->n_node; j++) {
    const Onnx__NodeProto *n = g->node[j];
    if (n->n_input >= 1 && !strcmp(n->input[0], d) && n->op_type && !strcmp(n->op_type, "Pow")) pw = n;
    if (n->n_input >= 1 && !strcmp(n->input[0], d) && n->op_type && !strcmp(n->op_type, "Div")) dv = n;
  }
  if (!pw || !dv || pw->n_input != 2 || !scalar(m, pw->input[1], &c) || c != 2 || pw->n_output != 1 ||
      !(rv = next(m, pw->output[0], "ReduceMean")) || !last_axis(rv) || !(ad = next(m, rv->output[0], "Add")) ||
      !other(ad, rv->output[0]) || !scalar(m, other(ad, rv->output[0]), &eps) || !(sq = next(m, ad->output[0], "Sqrt")) ||
      dv->n_input != 2 || strcmp(dv->input[1], sq->output[0]) || !next(m, sq->output[0], "Div") ||
      !(mw = next(m, dv->output[0], "Mul")) || !(ab = next(m, mw->output[0], "Add")))
    return;
  const char *w = other(mw, dv->output[0]), *b = other(ab, mw->output[0]);
  Val *wv = w ? through_identity(m, w) : NULL, *bv = b ? through_identity(m, b) : NULL;
  if (!wv || !bv || !wv->is_init || !bv->is_init || wv->rank != 1 || bv->rank != 1 || wv->dim[0] != bv->dim[0]) return;
  const Onnx__NodeProto *chain[8] = {rm, sub, pw, rv, ad, sq, dv, mw};
  for (int i = 0; i < 8; i++) {
    size_t j = node_index(g, chain[i]);
    if (j == (size_t)-1 || m->pat[j].kind) return;
  }
  for (int i = 0; i < 8; i++) m->pat[node_index(g, chain[i])].kind = PAT_SKIP;
  size_t last = node_index(g, ab);
  m->pat[last] = (Pattern){PAT_LAYER_NORM, x, w, b, eps};
}

static void match_patterns(Imp *m, const Onnx__GraphProto *g) {
  m->pat = arena_alloc(m->a, sizeof *m->pat * (g->n_node + 1));
  for (size_t k = 0; k < g->n_node; k++) {
    const char *op = g->node[k]->op_type;
    if (op && !strcmp(op, "Erf")) match_gelu(m, g, k);
    else if (op && !strcmp(op, "ReduceMean") && m->opset < 18) match_layer_norm(m, g, k);
  }
}

/* The last node of a pattern: gelu(x) or layer_norm(x, w, b, eps=...). */
static int op_pattern(Imp *m, const Pattern *p) {
  Val *x = val_get(m, p->x);
  if (!x || (!x->expr && !x->is_const) || float_operand(m, x)) return node_err(m, "the pattern's input is not computed");
  if (p->kind == PAT_GELU) {
    const char *xs = operand(m, x, 0);
    if (!xs) return -1;
    return result(m, 0, arena_printf(m->a, "gelu(%s)", xs), P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
  }
  Val *w = val_get(m, p->w), *b = val_get(m, p->b);
  if (!x->rank || x->dim[x->rank - 1] != w->dim[0]) return node_err(m, "LayerNorm's scale does not match the last axis");
  const char *xs = operand(m, x, 0), *ws = operand(m, w, 0), *bs = operand(m, b, 0);
  if (!xs || !ws || !bs) return -1;
  const char *es = (float)p->eps != 1e-5f ? arena_printf(m->a, ", eps=%s", num_text(m, (float)p->eps)) : "";
  return result(m, 0, arena_printf(m->a, "layer_norm(%s, %s, %s%s)", xs, ws, bs, es), P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
}

static int translate(Imp *m, const Onnx__ModelProto *mp) {
  const Onnx__GraphProto *g = mp->graph;
  if (!g) return node_err(m, "the model has no graph");
  if (check_opset(m, mp) || check_ops(m, g)) return -1;
  if (load_initializers(m, g)) return -1;
  for (size_t k = 0; k < g->n_input; k++)
    if (declare_input(m, g->input[k])) return -1;
  count_uses(m, g);
  match_patterns(m, g);
  for (size_t k = 0; k < g->n_node; k++) {
    m->node = g->node[k];
    if (m->pat[k].kind == PAT_SKIP) continue;
    if (m->pat[k].kind) {   /* the chain's inputs are checked by op_pattern */
      if (op_pattern(m, &m->pat[k])) return -1;
      continue;
    }
    for (size_t i = 0; i < m->node->n_input; i++)
      if (*m->node->input[i] && !val_get(m, m->node->input[i]))
        return node_err(m, "input '%s' is not defined before it is used", m->node->input[i]);
    for (size_t i = 0; i < m->node->n_input; i++) {
      Val *v = val_get(m, m->node->input[i]);
      if (v && !v->expr && !v->is_const) return node_err(m, "input '%s' is used before it is computed", m->node->input[i]);
    }
    m->lit_rank = 0;
    if (find_op(m->node)(m)) return -1;
    for (size_t i = 0; i < m->node->n_output; i++) {
      Val *v = val_get(m, m->node->output[i]);
      if (v && !v->expr && !v->is_const && *m->node->output[i] && i == 0)
        return node_err(m, "output '%s' was not computed", m->node->output[i]);
    }
  }
  m->node = NULL;
  return declare_outputs(m, g);
}

static char *assemble(Imp *m, const Onnx__ModelProto *mp) {
  Buf b = {0};
  buf_printf(&b, "# Imported from %s by nndc import", m->path);
  if (mp->producer_name && *mp->producer_name)
    buf_printf(&b, " (producer: %s%s%s)", mp->producer_name, mp->producer_version && *mp->producer_version ? " " : "",
               mp->producer_version ? mp->producer_version : "");
  buf_printf(&b, "; ONNX opset %lld.\n# Params are loaded with --load <this name>.safetensors.\n\n", (long long)m->opset);
  if (m->head.s) buf_puts(&b, m->head.s);
  if (m->params.s) buf_printf(&b, "\n%s", m->params.s);
  if (m->fns.s) buf_printf(&b, "\n%s", m->fns.s);
  if (m->body.s) buf_printf(&b, "\n%s", m->body.s);
  if (m->outs.s) buf_printf(&b, "\n%s", m->outs.s);
  char *s = arena_strdup(m->a, b.s ? b.s : "");
  free(b.s);
  return s;
}

int fe_onnx_import(Diag *d, Arena *a, const char *path, const uint8_t *buf, size_t len, OnnxModel *out) {
  memset(out, 0, sizeof *out);
  Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
  if (!mp) {
    diag_file_error(d, path, "not a valid ONNX model (the protobuf data is truncated or corrupt)");
    return -1;
  }
  Imp m = {0};
  m.d = d;
  m.a = a;
  m.path = path;
  reserve_names(&m);
  int rc = translate(&m, mp);
  if (!rc) {
    out->text = assemble(&m, mp);
    out->tensors = m.tensors;
    out->ntensors = m.ntensors;
  }
  free(m.head.s);
  free(m.params.s);
  free(m.fns.s);
  free(m.body.s);
  free(m.outs.s);
  onnx__model_proto__free_unpacked(mp, NULL);
  return rc;
}
