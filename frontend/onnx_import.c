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
 * identifiers, sanitized (and made unique) otherwise.  Before the walk,
 * chains PyTorch writes for GELU and LayerNorm (below opsets 20 and 17) are
 * matched and read as gelu(x) and layer_norm(x, w, b).  The handler of each
 * op is in onnx_ops.c; what both files share is in onnx_imp.h.
 *
 * Decisions:
 *   - ONNX int64/int32 tensors are nnd i32; bool tensors are f32 0/1 (what
 *     nnd's comparisons give).  Integer arithmetic exists only at import time.
 *   - A float constant used as a run-time operand is a literal when it has
 *     one element, else a param (so it is in the safetensors file).
 *   - Errors name the node ('NAME' (OpType)); unsupported ops are collected
 *     first and listed all at once, with counts, and nothing else is done.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "onnx_imp.h"


/* ------------------------------------------------------------ errors */

int ox_node_err(Imp *m, const char *fmt, ...) {
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

int ox_unsupported(Imp *m, const char *what) {
  return ox_node_err(m, "unsupported: %s", what);
}

/* ------------------------------------------------------------ maps */

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
  return h;
}

Val *ox_val_get(Imp *m, const char *oname) {
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

void ox_name_take(Imp *m, char *s) {
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
  for (size_t k = 0; k < sizeof words / sizeof *words; k++) ox_name_take(m, (char *)words[k]);
  for (int k = 0; k < OP_COUNT; k++) ox_name_take(m, (char *)op_info[k].name);
}

/* A new identifier from a graph name: [A-Za-z0-9_] kept, runs of anything
 * else one '_', a leading digit prefixed with 't', unique with _2, _3 ... */
const char *ox_new_name(Imp *m, const char *oname) {
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
  ox_name_take(m, u);
  return u;
}

/* ------------------------------------------------------------ values */

/* a * b for sizes, saturating above MAX_DIM (so a hostile shape cannot overflow) */
int64_t ox_mul_sat(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > MAX_DIM || r < -MAX_DIM) return MAX_DIM + 1;
  return r;
}

int ox_is_sym(double c) { return c <= SYM_BASE + 0.5 && c > SYM_BASE - MAX_SYMS - 0.5; }

/* A dim as nnd text: the number or the symbol's name; NULL if unknown. */
const char *ox_dim_text(Imp *m, int64_t d) {
  if (d >= 0) return arena_printf(m->a, "%lld", (long long)d);
  if (d != DIM_UNKNOWN && -1 - d < m->nsyms) return m->sym[-1 - d];
  return NULL;
}

const char *ox_list_text(Imp *m, const int64_t *d, int n) {
  Buf b = {0};
  buf_puts(&b, "[");
  for (int k = 0; k < n; k++) {
    const char *t = ox_dim_text(m, d[k]);
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

const char *ox_ints_text(Imp *m, const int64_t *d, int n) {
  Buf b = {0};
  buf_puts(&b, "[");
  for (int k = 0; k < n; k++) buf_printf(&b, "%s%lld", k ? ", " : "", (long long)d[k]);
  buf_puts(&b, "]");
  char *s = arena_strdup(m->a, b.s);
  free(b.s);
  return s;
}

const char *ox_num_text(Imp *m, double v) {
  if (isinf(v)) return v > 0 ? "inf" : "-inf";
  if (isnan(v)) return "(0 * inf)";   /* nnd has no NaN literal; this folds to one */
  if (fabs(v) < 1e15 && v == (double)(int64_t)v) return arena_printf(m->a, "%lld", (long long)v);
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
int64_t ox_c_dim(double c) { return ox_is_sym(c) ? -1 - (int64_t)llround(SYM_BASE - c) : ox_i64(c); }

/* An integer constant element as int64: NaN and values beyond +-2^62 (which
 * no size, axis or index can be) become -2^62, so range checks reject them
 * and no conversion is undefined. */
int64_t ox_i64(double c) {
  if (!(c >= -0x1p62 && c <= 0x1p62)) return -((int64_t)1 << 62);
  return (int64_t)c;
}

/* ------------------------------------------------------------ tensors */

const char *ox_dtype_name(int t) {
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
int ox_vtype_of(int t) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return VT_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return VT_I32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return VT_BOOL;
  default: return -1;
  }
}

static int shape_of_dims(Imp *m, const char *what, const int64_t *dims, size_t n, Val *v) {
  if (n > MAX_RANK) return ox_node_err(m, "%s has rank %zu; nndc supports up to %d", what, n, MAX_RANK);
  v->rank = (int)n;
  int64_t numel = 1;
  for (size_t k = 0; k < n; k++) {
    if (dims[k] < 0 || dims[k] > MAX_DIM) return ox_node_err(m, "%s has an invalid dimension %lld", what, (long long)dims[k]);
    v->dim[k] = dims[k];
    if (__builtin_mul_overflow(numel, dims[k], &numel) || numel > MAX_DIM)
      return ox_node_err(m, "%s has too many elements", what);
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

/* Constants stay within f32's range (beyond it: +-inf), so every conversion
 * of one to float is defined. */
static double f32_range(double v) {
  if (v > FLT_MAX) return INFINITY;
  if (v < -FLT_MAX) return -INFINITY;
  return v;
}

/* A TensorProto (initializer or attribute) into a constant value v. */
int ox_tensor_to_val(Imp *m, const Onnx__TensorProto *t, const char *what, Val *v) {
  int dt = t->has_data_type ? t->data_type : 0;
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return ox_node_err(m, "%s keeps its data in an external file, which nndc does not read", what);
  if (t->segment) return ox_node_err(m, "%s is segmented, which nndc does not support", what);
  int eb = elem_bytes(dt);
  if (!eb) return ox_node_err(m, "unsupported element type %s (%d) of %s", ox_dtype_name(dt), dt, what);
  if (shape_of_dims(m, what, t->dims, t->n_dims, v)) return -1;
  int vt = ox_vtype_of(dt);
  v->vt = vt < 0 ? (dt == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE ? VT_F32 : VT_I32) : (VType)vt;
  v->is_const = 1;
  int64_t n = v->n;
  /* the data's size is checked before anything of the shape's size is allocated */
  if (t->has_raw_data) {
    if ((uint64_t)t->raw_data.len != (uint64_t)n * (uint64_t)eb)
      return ox_node_err(m, "%s has %zu bytes of data, but its shape %s of %s needs %lld", what, t->raw_data.len,
                      ox_ints_text(m, v->dim, v->rank), ox_dtype_name(dt), (long long)n * eb);
    v->c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v->c[i] = f32_range(raw_elem(t->raw_data.data, dt, i));
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
    return ox_node_err(m, "%s has %zu values, but its shape %s needs %lld", what, have, ox_ints_text(m, v->dim, v->rank),
                    (long long)n);
  v->c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: v->c[i] = t->float_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: v->c[i] = f32_range(t->double_data[i]); break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: v->c[i] = (double)t->int64_data[i]; break;
    default: v->c[i] = t->int32_data[i]; break;
    }
  }
  return 0;
}

void ox_add_tensor(Imp *m, const char *name, const Val *v, const float *data) {
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

float *ox_f32_copy(Imp *m, const Val *v) {
  float *f = arena_alloc(m->a, sizeof(float) * (size_t)(v->n ? v->n : 1));
  for (int64_t i = 0; i < v->n; i++) f[i] = (float)v->c[i];
  return f;
}

/* Declares constant v as a param (its values go to the parameter set). */
void ox_declare_param(Imp *m, Val *v) {
  if (v->param_done) return;
  v->param_done = 1;
  v->name = v->expr = ox_new_name(m, v->oname);
  v->prec = P_ATOM;
  buf_printf(&m->params, "param %s: f32%s\n", v->name, ox_list_text(m, v->dim, v->rank));
  ox_add_tensor(m, v->name, v, ox_f32_copy(m, v));
}

/* ------------------------------------------------------------ operands */

Val *ox_in(Imp *m, int k) {
  if ((size_t)k >= m->node->n_input || !*m->node->input[k]) return NULL;
  return ox_val_get(m, m->node->input[k]);
}

Val *ox_need_in(Imp *m, int k) {
  Val *v = ox_in(m, k);
  if (!v) ox_node_err(m, "input %d is missing", k);
  return v;
}

const char *ox_paren(Imp *m, const char *e, int prec, int minprec) {
  return prec < minprec ? arena_printf(m->a, "(%s)", e) : e;
}

/* v as a run-time operand of precedence at least minprec: a constant becomes
 * a literal (one element) or a param; a pending expression is taken. */
const char *ox_operand(Imp *m, Val *v, int minprec) {
  if (v->is_const && !v->param_done) {
    if (v->n == 1 && v->rank == 0 && ox_is_sym(v->c[0])) return ox_dim_text(m, ox_c_dim(v->c[0]));
    if (v->n == 1 && v->rank <= m->lit_rank) {   /* broadcasts like the literal */
      const char *t = ox_num_text(m, v->c[0]);
      return ox_paren(m, t, t[0] == '-' ? P_UNARY : P_ATOM, minprec);
    }
    if (v->n == 1 && v->vt != VT_I32)
      return arena_printf(m->a, "full(%s, %s)", ox_list_text(m, v->dim, v->rank), ox_num_text(m, v->c[0]));
    if (v->vt == VT_I32) {
      ox_node_err(m, "unsupported: an integer constant tensor ('%s') used at run time (nnd has no integer constants)", v->oname);
      return NULL;
    }
    ox_declare_param(m, v);
  }
  v->pending = 0;
  return ox_paren(m, v->expr, v->prec, minprec);
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
      Val *o = ox_val_get(m, v->consumer->input[k]);
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
Val *ox_out_val(Imp *m, int k) {
  if ((size_t)k >= m->node->n_output || !*m->node->output[k]) {
    ox_node_err(m, "output %d is missing", k);
    return NULL;
  }
  Val *v = ox_val_get(m, m->node->output[k]);
  if (!v || v->expr || v->is_const) {
    ox_node_err(m, "output '%s' is defined twice", m->node->output[k]);
    return NULL;
  }
  return v;
}

Val *ox_result(Imp *m, int k, const char *expr, int prec, VType vt, int rank, const int64_t *dim, int whole) {
  Val *v = ox_out_val(m, k);
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
  v->name = ox_new_name(m, on);
  buf_printf(&m->body, "%s = %s\n", v->name, expr);
  v->expr = v->name;
  v->prec = P_ATOM;
  return v;
}

/* Output k is a constant of n elements c, shape dim. */
Val *ox_const_result(Imp *m, int k, VType vt, int rank, const int64_t *dim, double *c, int64_t n) {
  Val *v = ox_out_val(m, k);
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
int ox_alias(Imp *m, int k, Val *src, VType vt) {
  Val *v = ox_out_val(m, k);
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
  const char *e = ox_operand(m, src, 0);
  if (!e) return -1;
  v->vt = vt;
  v->rank = src->rank;
  memcpy(v->dim, src->dim, sizeof v->dim);
  if (go) {
    v->name = ox_new_name(m, on);
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

const Onnx__AttributeProto *ox_attr(Imp *m, const char *name) {
  for (size_t k = 0; k < m->node->n_attribute; k++)
    if (m->node->attribute[k]->name && !strcmp(m->node->attribute[k]->name, name)) return m->node->attribute[k];
  return NULL;
}

int64_t ox_attr_i(Imp *m, const char *name, int64_t def) {
  const Onnx__AttributeProto *a = ox_attr(m, name);
  return a && a->has_i ? a->i : def;
}

double ox_attr_f(Imp *m, const char *name, double def) {
  const Onnx__AttributeProto *a = ox_attr(m, name);
  return a && a->has_f ? a->f : def;
}

/* An ints attribute into out[0..max); returns the count or -1 (too many). */
int ox_attr_ints(Imp *m, const char *name, int64_t *out, int max) {
  const Onnx__AttributeProto *a = ox_attr(m, name);
  if (!a) return 0;
  if (a->n_ints > (size_t)max) return ox_node_err(m, "attribute %s has %zu values", name, a->n_ints);
  for (size_t k = 0; k < a->n_ints; k++) out[k] = a->ints[k];
  return (int)a->n_ints;
}

const char *ox_attr_s(Imp *m, const char *name, const char *def) {
  const Onnx__AttributeProto *a = ox_attr(m, name);
  if (!a || !a->has_s) return def;
  return arena_strndup(m->a, (const char *)a->s.data, a->s.len);
}

/* A constant int list input (axes, shape, starts...) into out; -1 if absent or not constant. */
int ox_const_ints(Imp *m, Val *v, const char *what, int64_t *out, int max) {
  if (!v->is_const) return ox_node_err(m, "%s must be a constant (it is computed at run time)", what);
  if (v->n > max) return ox_node_err(m, "%s has %lld values", what, (long long)v->n);
  for (int64_t i = 0; i < v->n; i++) {
    if (ox_is_sym(v->c[i])) return ox_node_err(m, "%s depends on a symbolic dimension", what);
    out[i] = ox_i64(v->c[i]);
  }
  return (int)v->n;
}

int ox_norm_axis(Imp *m, int64_t ax, int rank, int64_t *out) {
  *out = 0;
  if (ax < -rank || ax >= rank) return ox_node_err(m, "axis %lld is out of range for rank %d", (long long)ax, rank);
  *out = ax < 0 ? ax + rank : ax;
  return 0;
}

/* ------------------------------------------------------------ shapes */

int ox_broadcast(Imp *m, Val **v, int n, int *rank, int64_t *dim) {
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
      else return ox_node_err(m, "shapes %s and %s do not broadcast", ox_list_text(m, v[0]->dim, v[0]->rank),
                           ox_list_text(m, v[i]->dim, v[i]->rank));
    }
    dim[k] = d;
  }
  return 0;
}

/* ------------------------------------------------------------ import-time folding */

int ox_all_const(Imp *m) {
  for (size_t k = 0; k < m->node->n_input; k++) {
    if (!*m->node->input[k]) continue;
    Val *v = ox_val_get(m, m->node->input[k]);
    if (!v || !v->is_const) return 0;
  }
  return 1;
}

/* Element (index of the broadcast result) of const v. */
double ox_bc_elem(const Val *v, int rank, const int64_t *dim, int64_t flat) {
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
int ox_fold_binary(Imp *m, const char *op, Val *a, Val *b, VType vt) {
  Val *v[2] = {a, b};
  int rank;
  int64_t dim[MAX_RANK];
  if (ox_broadcast(m, v, 2, &rank, dim)) return -1;
  int64_t n = 1;
  for (int k = 0; k < rank; k++) n = ox_mul_sat(n, dim[k]);
  if (n > MAX_CONST_FOLD) return ox_unsupported(m, "a constant computation this large");
  double *c = arena_alloc(m->a, sizeof(double) * (size_t)(n ? n : 1));
  int sym = 0;
  for (int64_t i = 0; i < n; i++) {
    double x = ox_bc_elem(a, rank, dim, i), y = ox_bc_elem(b, rank, dim, i);
    sym |= ox_is_sym(x) || ox_is_sym(y);
    c[i] = f32_range(fold_bin(op, x, y, a->vt == VT_I32));
  }
  if (sym) return ox_unsupported(m, "arithmetic on a symbolic dimension at import time");
  return ox_const_result(m, 0, vt, rank, dim, c, n) ? 0 : -1;
}

/* ------------------------------------------------------------ operand types */

int ox_float_operand(Imp *m, Val *v) {
  if (v->vt == VT_I32 && !v->is_const) return ox_unsupported(m, "integer arithmetic at run time (nnd computes in f32)");
  return 0;
}

/* ------------------------------------------------------------ the graph */

/* Every unsupported op, with counts, in one report; -1 if any. */
static int check_ops(Imp *m, const Onnx__GraphProto *g) {
  const char *names[64];
  int counts[64], n = 0, total = 0;
  for (size_t k = 0; k < g->n_node; k++) {
    const Onnx__NodeProto *nd = g->node[k];
    if (ox_find_op(nd)) continue;
    const char *op = nd->op_type ? nd->op_type : "?";
    if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx")) op = arena_printf(m->a, "%s.%s", nd->domain, op);
    int i = 0;
    while (i < n && strcmp(names[i], op)) i++;
    if (i == n && n < 64) names[n] = op, counts[n++] = 0;
    if (i < n) counts[i]++;
    if (i < n && counts[i] == 1) {
      m->node = nd;
      ox_node_err(m, "unsupported op %s", op);
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
    if (!mp->n_opset_import) return ox_node_err(m, "the model imports no opset of the default domain");
    m->opset = 18;   /* only other domains: their ops are reported as unsupported */
    return 0;
  }
  if (m->opset < 1 || m->opset > 18)
    return ox_node_err(m, "opset %lld of the default ONNX domain is not supported (nndc reads opsets 1 to 18)", (long long)m->opset);
  return 0;
}

/* Counts each value's uses and remembers its consumer (idioms, Gemm weights). */
static void count_uses(Imp *m, const Onnx__GraphProto *g) {
  for (size_t k = 0; k < g->n_node; k++) {
    const Onnx__NodeProto *nd = g->node[k];
    for (size_t i = 0; i < nd->n_input; i++) {
      Val *v = ox_val_get(m, nd->input[i]);
      if (v) v->uses++, v->consumer = nd;
    }
    for (size_t i = 0; i < nd->n_output; i++)
      if (*nd->output[i] && !ox_val_get(m, nd->output[i])) new_val(m, nd->output[i])->prod = nd;
  }
  for (size_t k = 0; k < g->n_output; k++) {
    Val *v = ox_val_get(m, g->output[k]->name);
    if (v) v->uses++, v->graph_output = 1;
  }
}

static int symbol(Imp *m, const char *dp) {
  const char *want = dp && *dp ? dp : "N";
  for (int k = 0; k < m->nsyms; k++)
    if (!strcmp(m->sym[k], want) || (dp && !strcmp(m->sym[k], dp))) return k;
  if (m->nsyms == MAX_SYMS) return -1;
  m->sym[m->nsyms] = ox_new_name(m, want);
  return m->nsyms++;
}

static int declare_input(Imp *m, const Onnx__ValueInfoProto *vi) {
  if (!vi->name || !*vi->name) return ox_node_err(m, "a graph input has no name");
  if (ox_val_get(m, vi->name)) return 0;   /* an initializer listed as an input (IR < 4) */
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return ox_node_err(m, "unsupported: input '%s' is not a tensor (a sequence, map or optional)", vi->name);
  int et = tp->tensor_type->has_elem_type ? tp->tensor_type->elem_type : 0;
  int vt = ox_vtype_of(et);
  if (vt < 0)
    return ox_node_err(m, "unsupported element type %s of input '%s' (nndc reads float, int32, int64 and bool inputs)", ox_dtype_name(et), vi->name);
  const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
  if (!sh) return ox_node_err(m, "input '%s' has no shape", vi->name);
  if (sh->n_dim > MAX_RANK) return ox_node_err(m, "input '%s' has rank %zu; nndc supports up to %d", vi->name, sh->n_dim, MAX_RANK);
  Val *v = new_val(m, vi->name);
  v->vt = (VType)vt;
  v->rank = (int)sh->n_dim;
  for (size_t k = 0; k < sh->n_dim; k++) {
    const Onnx__TensorShapeProto__Dimension *d = sh->dim[k];
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0) {
      if (d->dim_value > MAX_DIM) return ox_node_err(m, "input '%s' has an invalid dimension", vi->name);
      if (d->dim_value == 0) return ox_node_err(m, "unsupported: input '%s' is empty (a dimension of size 0)", vi->name);
      v->dim[k] = d->dim_value;
      continue;
    }
    const char *dp = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? d->dim_param : NULL;
    if (k != 0)
      return ox_node_err(m, "input '%s': dimension %zu ('%s') is dynamic and cannot be bound; only the first dimension may be symbolic",
                      vi->name, k, dp ? dp : "?");
    int s = symbol(m, dp);
    if (s < 0) return ox_node_err(m, "too many symbolic dimensions");
    v->dim[k] = -1 - s;
  }
  int64_t numel = 1;
  for (int k = 0; k < v->rank; k++) numel = ox_mul_sat(numel, v->dim[k] >= 0 ? v->dim[k] : 1);
  if (numel > MAX_DIM) return ox_node_err(m, "input '%s' has too many elements", vi->name);
  v->name = v->expr = ox_new_name(m, vi->name);
  v->prec = P_ATOM;
  const char *sh_text = ox_list_text(m, v->dim, v->rank);
  buf_printf(&m->head, "input %s: %s%s\n", v->name, vt == VT_I32 ? "i32" : "f32", sh_text);
  return 0;
}

static int declare_outputs(Imp *m, const Onnx__GraphProto *g) {
  for (size_t k = 0; k < g->n_output; k++) {
    const char *on = g->output[k]->name;
    Val *v = ox_val_get(m, on);
    if (!v || (!v->expr && !v->is_const)) return ox_node_err(m, "graph output '%s' is never computed", on ? on : "?");
    if (v->name && v->expr == v->name && !v->is_init && !v->param_done && v->op) {
      buf_printf(&m->outs, "output %s\n", v->name);
      continue;
    }
    const char *e = ox_operand(m, v, 0);
    if (!e) return -1;
    buf_printf(&m->outs, "output %s = %s\n", ox_new_name(m, on), e);
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
  if (g->n_sparse_initializer) return ox_node_err(m, "sparse initializers are not supported");
  for (size_t k = 0; k < g->n_initializer; k++) {
    const Onnx__TensorProto *t = g->initializer[k];
    if (!t->name || !*t->name) return ox_node_err(m, "initializer %zu has no name", k);
    if (ox_val_get(m, t->name)) return ox_node_err(m, "initializer '%s' is defined twice", t->name);
    Val *v = new_val(m, t->name);
    m->node = first_user(g, t->name);
    if (ox_tensor_to_val(m, t, arena_printf(m->a, "initializer '%s'", t->name), v)) return -1;
    v->is_init = 1;
  }
  m->node = NULL;
  return 0;
}

/* ------------------------------------------------------------ patterns */

/* The node computing value `name` if it is op and its result is read once
 * (by the chain being matched), else NULL. */
static const Onnx__NodeProto *single(Imp *m, const char *name, const char *op, int uses) {
  Val *v = ox_val_get(m, name);
  if (!v || !v->prod || v->uses != uses || v->graph_output || !v->prod->op_type || strcmp(v->prod->op_type, op)) return NULL;
  return v->prod;
}

/* The one consumer of value `name` if it is op. */
static const Onnx__NodeProto *next(Imp *m, const char *name, const char *op) {
  Val *v = ox_val_get(m, name);
  if (!v || v->uses != 1 || v->graph_output || !v->consumer || !v->consumer->op_type || strcmp(v->consumer->op_type, op)) return NULL;
  if (v->consumer->n_output < 1 || !*v->consumer->output[0]) return NULL;
  return v->consumer;
}

/* A one-element constant (an initializer or a Constant node's value). */
static int scalar(Imp *m, const char *name, double *out) {
  Val *v = ox_val_get(m, name);
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
  int bad = ox_tensor_to_val(m, a->t, "its value", &t);
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
  Val *v = ox_val_get(m, name);
  for (int i = 0; i < 64 && v && v->prod && v->prod->op_type && !strcmp(v->prod->op_type, "Identity") && v->prod->n_input == 1; i++)
    v = ox_val_get(m, v->prod->input[0]);
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
  Val *dvv = ox_val_get(m, d);
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
  Val *x = ox_val_get(m, p->x);
  if (!x || (!x->expr && !x->is_const) || ox_float_operand(m, x)) return ox_node_err(m, "the pattern's input is not computed");
  if (p->kind == PAT_GELU) {
    const char *xs = ox_operand(m, x, 0);
    if (!xs) return -1;
    return ox_result(m, 0, arena_printf(m->a, "gelu(%s)", xs), P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
  }
  Val *w = ox_val_get(m, p->w), *b = ox_val_get(m, p->b);
  if (!x->rank || x->dim[x->rank - 1] != w->dim[0]) return ox_node_err(m, "LayerNorm's scale does not match the last axis");
  const char *xs = ox_operand(m, x, 0), *ws = ox_operand(m, w, 0), *bs = ox_operand(m, b, 0);
  if (!xs || !ws || !bs) return -1;
  const char *es = (float)p->eps != 1e-5f ? arena_printf(m->a, ", eps=%s", ox_num_text(m, (float)p->eps)) : "";
  return ox_result(m, 0, arena_printf(m->a, "layer_norm(%s, %s, %s%s)", xs, ws, bs, es), P_ATOM, VT_F32, x->rank, x->dim, 0) ? 0 : -1;
}

static int translate(Imp *m, const Onnx__ModelProto *mp) {
  const Onnx__GraphProto *g = mp->graph;
  if (!g) return ox_node_err(m, "the model has no graph");
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
      if (*m->node->input[i] && !ox_val_get(m, m->node->input[i]))
        return ox_node_err(m, "input '%s' is not defined before it is used", m->node->input[i]);
    for (size_t i = 0; i < m->node->n_input; i++) {
      Val *v = ox_val_get(m, m->node->input[i]);
      if (v && !v->expr && !v->is_const) return ox_node_err(m, "input '%s' is used before it is computed", m->node->input[i]);
    }
    m->lit_rank = 0;
    if (ox_find_op(m->node)(m)) return -1;
    for (size_t i = 0; i < m->node->n_output; i++) {
      Val *v = ox_val_get(m, m->node->output[i]);
      if (v && !v->expr && !v->is_const && *m->node->output[i] && i == 0)
        return ox_node_err(m, "output '%s' was not computed", m->node->output[i]);
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
