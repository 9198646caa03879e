/* onnx.c - the tensor graph as an ONNX model (`nndc export`, spec 9): a
 * backend that prints the graph itself, not its kernels.
 *
 * The graph is the model built for evaluation (dropout gone, batch_norm on
 * its running statistics) before any pass, so attention is still its
 * products and softmax.  Its `output`s are the model's outputs, named as in
 * the .nnd, with the inputs they need (declaration order) and the params
 * they need as initializers.  Each node becomes one ONNX node or a short
 * chain (gelu is PyTorch's Erf form, which importers read back as GELU;
 * comparisons are a bool op and a Cast), and three idioms of sema become
 * one node: layer_norm's MEAN, VAR, NORMALIZE and affine are
 * LayerNormalization, batch_norm's evaluation form is BatchNormalization.
 *
 * Symbolic dims.  The IR's shapes are concrete; the caller also builds the
 * model with each symbol kept symbolic at twice its value (OnnxSym.alt), and
 * a dim that changes between the two is a * symbol + b.  Graph inputs and
 * outputs then carry dim_param, and the shapes nodes need (Reshape,
 * Expand, ConstantOfShape) use ONNX's 0 and -1 where they can, otherwise
 * Shape of an input that holds the symbol, scaled.  A value that changes
 * otherwise (a constant 1/N, a different graph) is an error that asks for
 * -D.  Serialized with protobuf-c (the C generated from onnx.proto). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <onnx.pb-c.h>
#include "codegen.h"

#define ONNX_OPSET 17
#define ONNX_IR_VERSION 8
enum { TY_FLOAT = 1, TY_INT32 = 6, TY_INT64 = 7, TY_BOOL = 9 };   /* TensorProto.DataType */

/* One dim of a node: the constant b (sym < 0) or a * symbol sym + b. */
typedef struct DimX {
  int sym;
  int64_t a, b;
} DimX;

typedef struct Ex {
  Diag *d;
  Arena *a;
  const Graph *g;
  const OnnxSym *syms;
  int nsyms;
  DimX (*dx)[MAX_RANK];  /* [nnodes] the dims of each node */
  const char **val;      /* [nnodes] the ONNX value of a node, once emitted */
  const char **hint;     /* [nnodes] an output's name for the node computing it */
  int *uses;             /* [nnodes] readers among the exported nodes (an output counts) */
  uint8_t *need;         /* [nnodes] nodes the outputs depend on */
  const char **symval;   /* [nsyms] int64 [1]: Shape of the input axis that is the symbol */
  const Node **symsrc;   /* [nsyms] that input */
  int *symaxis;          /* [nsyms] and its axis */
  Onnx__NodeProto **nodes;
  size_t nnodes, ncap;
  Onnx__TensorProto **inits;
  size_t ninits, icap;
  const Node *cur;       /* the node being exported: names and doc strings of what it emits */
  const char *curname;   /* its value's name */
  int ntmp;              /* helper values made for it */
  int failed;
} Ex;

/* ------------------------------------------------------------ names */

/* 1 if s is a name of the .nnd (an input, a param or an output). */
static int user_name(const Ex *x, const char *s) {
  const Graph *g = x->g;
  for (int i = 0; i < g->ninputs; i++)
    if (!strcmp(g->inputs[i].name, s)) return 1;
  for (int i = 0; i < g->nparams; i++)
    if (!strcmp(g->params[i].name, s)) return 1;
  for (int i = 0; i < g->noutputs; i++)
    if (!strcmp(g->outputs[i].name, s)) return 1;
  return 0;
}

/* A value name no .nnd name takes: s, then s_, s__, ... */
static const char *fresh(Ex *x, const char *s) {
  while (user_name(x, s)) s = arena_printf(x->a, "%s_", s);
  return s;
}

/* The value of node n: an output's name, a leaf's, else "<op>_<id>". */
static const char *name_of(Ex *x, const Node *n) {
  if (n->op == OP_INPUT || n->op == OP_PARAM) return n->name;
  if (x->hint[n->id]) return x->hint[n->id];
  return fresh(x, arena_printf(x->a, "%s_%d", op_info[n->op].name, n->id));
}

/* A helper value of the node being exported: "<its name>.<k>", which no
 * node's name ("<op>_<id>"), .nnd name (an identifier, or a param's
 * "<prefix>.<identifier>") or other helper can be. */
static const char *tmp(Ex *x) { return arena_printf(x->a, "%s.%d", x->curname, ++x->ntmp); }

static int fail_at(Ex *x, const Node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(Ex *x, const Node *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_vreport(x->d, "error", n->loc, fmt, ap);
  va_end(ap);
  x->failed = 1;
  return -1;
}

/* ------------------------------------------------------------ protobuf */

/* Appends p to the arena array *arr of *n (capacity *cap). */
static void push(Arena *a, void ***arr, size_t *n, size_t *cap, void *p) {
  if (*n == *cap) {
    size_t c = *cap ? 2 * *cap : 64;
    void **b = arena_alloc(a, sizeof(void *) * c);
    if (*n) memcpy(b, *arr, sizeof(void *) * *n);
    *arr = b;
    *cap = c;
  }
  (*arr)[(*n)++] = p;
}

static char **strs(Ex *x, const char *const *s, int n) {
  char **r = arena_alloc(x->a, sizeof(char *) * (size_t)(n ? n : 1));
  for (int i = 0; i < n; i++) r[i] = (char *)s[i];
  return r;
}

/* A node op(in[0..nin)) -> out, named after out, its doc string the .nnd line it came from. */
static Onnx__NodeProto *node(Ex *x, const char *op, const char *const *in, int nin, const char *out) {
  Onnx__NodeProto *n = arena_alloc(x->a, sizeof *n);
  *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
  n->op_type = (char *)op;
  n->n_input = (size_t)nin;
  n->input = strs(x, in, nin);
  n->n_output = 1;
  n->output = strs(x, &out, 1);
  n->name = (char *)out;
  if (x->cur && x->cur->loc.src) {   /* the file's name, not its path: an export does not depend on the directory */
    const char *p = x->cur->loc.src->path, *base = strrchr(p, '/');
    n->doc_string = arena_printf(x->a, "%s:%d", base ? base + 1 : p, x->cur->loc.line);
  }
  push(x->a, (void ***)&x->nodes, &x->nnodes, &x->ncap, n);
  return n;
}

/* A one-input node with a fresh helper output; returns the output. */
static const char *node1(Ex *x, const char *op, const char *in, const char *out) {
  node(x, op, &in, 1, out ? out : (out = tmp(x)));
  return out;
}

static const char *node2(Ex *x, const char *op, const char *a, const char *b, const char *out) {
  const char *in[2] = {a, b};
  node(x, op, in, 2, out ? out : (out = tmp(x)));
  return out;
}

static Onnx__AttributeProto *attr(Ex *x, Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType t) {
  Onnx__AttributeProto *at = arena_alloc(x->a, sizeof *at);
  *at = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
  at->name = (char *)name;
  at->has_type = 1;
  at->type = t;
  Onnx__AttributeProto **arr = arena_alloc(x->a, sizeof *arr * (n->n_attribute + 1));
  if (n->n_attribute) memcpy(arr, n->attribute, sizeof *arr * n->n_attribute);
  arr[n->n_attribute++] = at;
  n->attribute = arr;
  return at;
}

static void attr_i(Ex *x, Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *at = attr(x, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  at->has_i = 1;
  at->i = v;
}

static void attr_f(Ex *x, Onnx__NodeProto *n, const char *name, double v) {
  Onnx__AttributeProto *at = attr(x, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  at->has_f = 1;
  at->f = (float)v;
}

static void attr_ints(Ex *x, Onnx__NodeProto *n, const char *name, const int64_t *v, int k) {
  Onnx__AttributeProto *at = attr(x, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  at->n_ints = (size_t)k;
  at->ints = arena_alloc(x->a, sizeof(int64_t) * (size_t)(k ? k : 1));
  memcpy(at->ints, v, sizeof(int64_t) * (size_t)k);
}

/* A tensor of type ty, dims[0..rank), its bytes (little-endian) copied. */
static Onnx__TensorProto *tensor(Ex *x, const char *name, int ty, const int64_t *dims, int rank, const void *data,
                                 size_t bytes) {
  Onnx__TensorProto *t = arena_alloc(x->a, sizeof *t);
  *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
  t->name = (char *)name;
  t->has_data_type = 1;
  t->data_type = ty;
  t->n_dims = (size_t)rank;
  t->dims = arena_alloc(x->a, sizeof(int64_t) * (size_t)(rank ? rank : 1));
  if (rank) memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
  t->has_raw_data = 1;
  t->raw_data.len = bytes;
  t->raw_data.data = arena_alloc(x->a, bytes ? bytes : 1);
  if (bytes) memcpy(t->raw_data.data, data, bytes);
  return t;
}

static void attr_s(Ex *x, Onnx__NodeProto *n, const char *name, const char *v) {
  Onnx__AttributeProto *at = attr(x, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  at->has_s = 1;
  at->s = (ProtobufCBinaryData){strlen(v), (uint8_t *)v};
}

static void attr_t(Ex *x, Onnx__NodeProto *n, const char *name, Onnx__TensorProto *t) {
  attr(x, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR)->t = t;
}

/* A Constant node of the given tensor contents; returns its value. */
static const char *constant(Ex *x, int ty, const int64_t *dims, int rank, const void *data, size_t bytes) {
  const char *out = tmp(x);
  attr_t(x, node(x, "Constant", NULL, 0, out), "value", tensor(x, NULL, ty, dims, rank, data, bytes));
  return out;
}

static const char *const_f(Ex *x, double v) {
  float f = (float)v;
  return constant(x, TY_FLOAT, NULL, 0, &f, sizeof f);
}

static const char *const_i64s(Ex *x, const int64_t *v, int n) {
  int64_t dim = n;
  return constant(x, TY_INT64, &dim, 1, v, sizeof(int64_t) * (size_t)n);
}

static const char *cast(Ex *x, const char *in, int to) {
  const char *out = tmp(x);
  attr_i(x, node(x, "Cast", &in, 1, out), "to", to);
  return out;
}

/* ------------------------------------------------------------ symbolic dims */

static int dx_eq(DimX p, DimX q) { return p.sym == q.sym && p.a == q.a && p.b == q.b; }

static int dx_static(const DimX *d, int rank) {
  for (int k = 0; k < rank; k++)
    if (d[k].sym >= 0) return 0;
  return 1;
}

/* The int64 [1] value of symbol j: Shape of the input axis that is it. */
static const char *sym_value(Ex *x, int j) {
  if (!x->symval[j]) {
    const Node *save = x->cur;
    x->cur = NULL;
    const char *in = x->symsrc[j]->name, *out = fresh(x, arena_printf(x->a, "%s_dim", x->syms[j].name));
    Onnx__NodeProto *n = node(x, "Shape", &in, 1, out);
    attr_i(x, n, "start", x->symaxis[j]);
    attr_i(x, n, "end", x->symaxis[j] + 1);
    x->symval[j] = out;
    x->cur = save;
  }
  return x->symval[j];
}

/* The int64 [rank] tensor of dims d: a constant, or runs of constants
 * concatenated with a * (the symbol's Shape) + b. */
static const char *shape_tensor(Ex *x, const DimX *d, int rank) {
  int64_t v[MAX_RANK];
  for (int k = 0; k < rank; k++) v[k] = d[k].b;
  if (dx_static(d, rank)) return const_i64s(x, v, rank);
  const char *part[MAX_RANK];
  int np = 0;
  for (int k = 0; k < rank;) {
    if (d[k].sym < 0) {
      int e = k;
      while (e < rank && d[e].sym < 0) e++;
      part[np++] = const_i64s(x, v + k, e - k);
      k = e;
      continue;
    }
    const char *s = sym_value(x, d[k].sym);
    if (d[k].a != 1) s = node2(x, "Mul", s, const_i64s(x, &d[k].a, 1), NULL);
    if (d[k].b) s = node2(x, "Add", s, const_i64s(x, &d[k].b, 1), NULL);
    part[np++] = s;
    k++;
  }
  if (np == 1) return part[0];
  const char *out = tmp(x);
  attr_i(x, node(x, "Concat", part, np, out), "axis", 0);
  return out;
}

/* The dims of every node: a dim that changes in the graph built at twice a
 * symbol's value is a * symbol + b.  The graphs must otherwise agree. */
static int find_dims(Ex *x) {
  const Graph *g = x->g;
  for (int j = 0; j < x->nsyms; j++) {
    const Graph *h = x->syms[j].alt;
    if (h->nnodes != g->nnodes) {
      diag_error(x->d, (Loc){0}, "export: the model's graph depends on the size of %s; bind it with -D %s=VALUE",
                 x->syms[j].name, x->syms[j].name);
      return -1;
    }
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    if (!x->need[i]) continue;
    for (int k = 0; k < n->shape.rank; k++) x->dx[i][k] = (DimX){-1, 0, n->shape.dim[k]};
    for (int j = 0; j < x->nsyms; j++) {
      const Node *m = x->syms[j].alt->nodes[i];
      const char *s = x->syms[j].name;
      if (m->op != n->op || m->nin != n->nin || m->shape.rank != n->shape.rank || m->dt != n->dt ||
          memcmp(m->a.i, n->a.i, sizeof n->a.i) || memcmp(m->a.f, n->a.f, sizeof n->a.f))
        return fail_at(x, n, "export: this %s depends on the value of %s, which ONNX keeps symbolic; bind it with -D %s=VALUE",
                       op_info[n->op].name, s, s);
      for (int k = 0; k < n->shape.rank; k++) {
        int64_t delta = m->shape.dim[k] - n->shape.dim[k], v = x->syms[j].value;
        if (!delta) continue;
        if (x->dx[i][k].sym >= 0 || delta % v)
          return fail_at(x, n, "export: a dimension of this %s is not a multiple of one symbolic size; bind them with -D",
                         op_info[n->op].name);
        x->dx[i][k] = (DimX){j, delta / v, n->shape.dim[k] - delta / v * v};
      }
    }
  }
  for (int j = 0; j < x->nsyms; j++)
    for (int i = 0; i < g->ninputs && !x->symsrc[j]; i++) {
      const Node *in = g->inputs[i].node;
      for (int k = 0; k < in->shape.rank && !x->symsrc[j]; k++)
        if (x->need[in->id] && dx_eq(x->dx[in->id][k], (DimX){j, 1, 0})) x->symsrc[j] = in, x->symaxis[j] = k;
    }
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; x->need[i] && k < g->nodes[i]->shape.rank; k++) {
      int j = x->dx[i][k].sym;
      if (j >= 0 && !x->symsrc[j])
        return fail_at(x, g->nodes[i], "export: this %s has a dimension of symbolic size %s but no input has %s as a dimension; bind it with -D %s=VALUE",
                       op_info[g->nodes[i]->op].name, x->syms[j].name, x->syms[j].name, x->syms[j].name);
    }
  return 0;
}

/* ------------------------------------------------------------ ops */

static const char *value(Ex *x, const Node *n);

/* The ONNX op of an op that maps one to one (the same operands), or NULL. */
static const char *direct_op(Op op) {
  switch (op) {
  case OP_ADD: return "Add";
  case OP_SUB: return "Sub";
  case OP_MUL: return "Mul";
  case OP_DIV: return "Div";
  case OP_MAXIMUM: return "Max";
  case OP_MINIMUM: return "Min";
  case OP_NEG: return "Neg";
  case OP_RELU: return "Relu";
  case OP_SIGMOID: return "Sigmoid";
  case OP_TANH: return "Tanh";
  case OP_EXP: return "Exp";
  case OP_LOG: return "Log";
  case OP_SQRT: return "Sqrt";
  case OP_ABS: return "Abs";
  case OP_SOFTPLUS: return "Softplus";
  case OP_ERF: return "Erf";
  case OP_SIGN: return "Sign";
  case OP_DETACH: return "Identity";
  case OP_MATMUL: return "MatMul";
  default: return NULL;
  }
}

/* 1 if ONNX can express op (in the evaluation graph's meaning). */
static int exportable(Op op) {
  if (direct_op(op)) return 1;
  switch (op) {
  case OP_INPUT: case OP_PARAM: case OP_CONST:
  case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE:
  case OP_POW: case OP_ELU: case OP_LEAKY_RELU: case OP_GELU: case OP_CLAMP: case OP_CAST:
  case OP_WHERE: case OP_TRIL: case OP_SUM: case OP_MEAN: case OP_MAX: case OP_ARGMAX:
  case OP_RESHAPE: case OP_EXPAND: case OP_TRANSPOSE: case OP_SLICE: case OP_CONCAT:
  case OP_SOFTMAX: case OP_LOG_SOFTMAX: case OP_RAND: case OP_RANDN: case OP_VAR: case OP_NORMALIZE:
  case OP_EMBEDDING: case OP_CROSS_ENTROPY: case OP_MSE: case OP_BCE_LOGITS:
  case OP_CONV2D: case OP_CONV2D_BWD_X: case OP_MAXPOOL2D: case OP_AVGPOOL2D:
    return 1;
  default:
    return 0;
  }
}

/* Why ONNX cannot express op (its evaluation graph never holds the others). */
static const char *why_not(Op op) {
  if (op == OP_DROPOUT) return "a training-mode dropout mask from nndc's counter-based RNG";
  if (op == OP_STATE || (op_info[op].flags & F_UPDATE)) return "optimizer state and updates belong to training";
  if (op >= OP_ATTN && op <= OP_ATTN_BWD) return "fused attention; export the graph before passes";
  return "a gradient or training op, not part of the evaluation graph";
}

/* The axes of a reduction mask over rank axes (0: all) into ax; their count. */
static int mask_axes(uint64_t mask, int rank, int64_t *ax) {
  int n = 0;
  for (int k = 0; k < rank; k++)
    if (!mask || (mask >> k & 1)) ax[n++] = k;
  return n;
}

/* ReduceMean/ReduceMax (axes an attribute in opset 17) or ReduceSum (an input). */
static const char *reduce(Ex *x, const char *op, const char *in, uint64_t mask, int rank, int keep, const char *out) {
  int64_t ax[MAX_RANK];
  int n = mask_axes(mask, rank, ax);
  Onnx__NodeProto *r;
  if (!strcmp(op, "ReduceSum")) {
    r = node(x, op, (const char *const[]){in, const_i64s(x, ax, n)}, 2, out);
  } else {
    r = node(x, op, &in, 1, out);
    attr_ints(x, r, "axes", ax, n);
  }
  attr_i(x, r, "keepdims", keep);
  return out;
}

/* A comparison: a bool op (Not of Equal for ne), operands of mixed dtypes as f32, Cast to f32. */
static const char *compare(Ex *x, const Node *n, const char *out) {
  static const char *const ops[] = {"Equal", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"};
  const char *a = value(x, n->in[0]), *b = value(x, n->in[1]);
  if (!a || !b) return NULL;
  if (n->in[0]->dt != n->in[1]->dt) {
    if (n->in[0]->dt == DT_I32) a = cast(x, a, TY_FLOAT);
    else b = cast(x, b, TY_FLOAT);
  }
  const char *c = node2(x, ops[n->op - OP_EQ], a, b, NULL);
  if (n->op == OP_NE) c = node1(x, "Not", c, NULL);
  Onnx__NodeProto *k = node(x, "Cast", &c, 1, out);
  attr_i(x, k, "to", TY_FLOAT);
  return out;
}

/* gelu(x) = x / sqrt(2) |> Erf |> + 1 |> * x |> * 0.5: PyTorch's form below opset 20. */
static const char *gelu(Ex *x, const char *in, const char *out) {
  const char *t = node2(x, "Div", in, const_f(x, 1.4142135623730951), NULL);
  t = node1(x, "Erf", t, NULL);
  t = node2(x, "Add", t, const_f(x, 1), NULL);
  t = node2(x, "Mul", in, t, NULL);
  return node2(x, "Mul", t, const_f(x, 0.5), out);
}

/* A constant: a scalar Constant, else ConstantOfShape (its shape may be symbolic). */
static const char *fill(Ex *x, const Node *n, double v, const char *out) {
  float f = (float)v;
  if (!n->shape.rank) {
    attr_t(x, node(x, "Constant", NULL, 0, out), "value", tensor(x, NULL, TY_FLOAT, NULL, 0, &f, sizeof f));
    return out;
  }
  const char *s = shape_tensor(x, x->dx[n->id], n->shape.rank);
  int64_t one = 1;
  attr_t(x, node(x, "ConstantOfShape", &s, 1, out), "value", tensor(x, NULL, TY_FLOAT, &one, 1, &f, sizeof f));
  return out;
}

/* reshape: the target's static dims, -1 for its first symbolic dim (an
 * importer infers it from the input, be it N or 4 N), 0 for another that
 * keeps the input's dim in place; else the computed shape. */
static const char *reshape(Ex *x, const Node *n, const char *out) {
  const Node *src = n->in[0];
  const DimX *s = x->dx[src->id], *t = x->dx[n->id];
  int r = n->shape.rank, dyn = 0, minus = 0;
  int64_t v[MAX_RANK];
  for (int k = 0; k < r; k++) {
    if (t[k].sym < 0) v[k] = t[k].b;
    else if (!minus++) v[k] = -1;
    else if (k < src->shape.rank && dx_eq(s[k], t[k])) v[k] = 0;
    else dyn = 1;
  }
  const char *in = value(x, src);
  if (!in) return NULL;
  return node2(x, "Reshape", in, dyn ? shape_tensor(x, t, r) : const_i64s(x, v, r), out);
}

/* expand: bidirectional broadcasting, so a symbolic dim the operand already has is a 1. */
static const char *expand(Ex *x, const Node *n, const char *out) {
  const Node *src = n->in[0];
  const DimX *s = x->dx[src->id], *t = x->dx[n->id];
  int r = n->shape.rank, off = r - src->shape.rank, dyn = 0;
  int64_t v[MAX_RANK];
  for (int k = 0; k < r; k++) {
    if (t[k].sym < 0) v[k] = t[k].b;
    else if (k >= off && dx_eq(s[k - off], t[k])) v[k] = 1;
    else dyn = 1;
  }
  const char *in = value(x, src);
  if (!in) return NULL;
  return node2(x, "Expand", in, dyn ? shape_tensor(x, t, r) : const_i64s(x, v, r), out);
}

/* slice: Slice over the axes it narrows (to a static size, or a symbolic axis whole). */
static const char *slice(Ex *x, const Node *n, const char *out) {
  const Node *src = n->in[0];
  const DimX *s = x->dx[src->id], *t = x->dx[n->id];
  int64_t st[MAX_RANK], en[MAX_RANK], ax[MAX_RANK];
  int na = 0;
  for (int k = 0; k < n->shape.rank; k++) {
    if (n->a.i[k] == 0 && dx_eq(s[k], t[k])) continue;
    if (t[k].sym >= 0) {
      fail_at(x, n, "export: this slice keeps a part of symbolic size %s of an axis; bind it with -D", x->syms[t[k].sym].name);
      return NULL;
    }
    st[na] = n->a.i[k];
    en[na] = n->a.i[k] + n->shape.dim[k];
    ax[na++] = k;
  }
  const char *in = value(x, src);
  if (!in) return NULL;
  if (!na) return node1(x, "Identity", in, out);
  const char *args[4] = {in, const_i64s(x, st, na), const_i64s(x, en, na), const_i64s(x, ax, na)};
  node(x, "Slice", args, 4, out);
  return out;
}

/* tril(x, k, fill): Trilu; a nonzero fill is Where over Trilu of ones (a [H, W] constant). */
static const char *tril(Ex *x, const Node *n, const char *out) {
  const char *in = value(x, n->in[0]);
  if (!in) return NULL;
  int r = n->shape.rank;
  const char *k = constant(x, TY_INT64, NULL, 0, &n->a.i[0], sizeof(int64_t));   /* Trilu's k: a scalar */
  if (n->a.f[0] == 0) {
    Onnx__NodeProto *t = node(x, "Trilu", (const char *const[]){in, k}, 2, out);
    attr_i(x, t, "upper", 0);
    return out;
  }
  if (x->dx[n->id][r - 1].sym >= 0 || x->dx[n->id][r - 2].sym >= 0) {
    fail_at(x, n, "export: tril with a fill over a symbolic size; bind it with -D");
    return NULL;
  }
  int64_t hw[2] = {n->shape.dim[r - 2], n->shape.dim[r - 1]}, one = 1;
  float f1 = 1;
  const char *ones = tmp(x);
  attr_t(x, node(x, "ConstantOfShape", (const char *const[]){const_i64s(x, hw, 2)}, 1, ones), "value",
         tensor(x, NULL, TY_FLOAT, &one, 1, &f1, sizeof f1));
  const char *m = tmp(x);
  attr_i(x, node(x, "Trilu", (const char *const[]){ones, k}, 2, m), "upper", 0);
  node(x, "Where", (const char *const[]){cast(x, m, TY_BOOL), in, const_f(x, n->a.f[0])}, 3, out);
  return out;
}

/* rand, randn: RandomUniform/RandomNormal, or their *Like of a ConstantOfShape for a symbolic shape. */
static const char *noise(Ex *x, const Node *n, const char *out) {
  const char *op = n->op == OP_RAND ? "RandomUniform" : "RandomNormal";
  Onnx__NodeProto *r;
  if (dx_static(x->dx[n->id], n->shape.rank)) {
    r = node(x, op, NULL, 0, out);
    attr_ints(x, r, "shape", n->shape.dim, n->shape.rank);
  } else {
    const char *z = fill(x, n, 0, tmp(x));
    r = node(x, arena_printf(x->a, "%sLike", op), &z, 1, out);
  }
  attr_i(x, r, "dtype", TY_FLOAT);
  return out;
}

/* conv2d: Conv; conv_transpose2d (CONV2D_BWD_X of sema): ConvTranspose with the output_padding its shape implies. */
static const char *conv(Ex *x, const Node *n, const char *out) {
  const char *in = value(x, n->in[0]), *w = value(x, n->in[1]);
  if (!in || !w) return NULL;
  const int64_t *i = n->a.i, *ws = n->in[1]->shape.dim;
  int64_t st[2] = {i[0], i[2]}, pd[4] = {i[1], i[3], i[1], i[3]}, dl[2] = {i[4], i[5]}, ks[2] = {ws[2], ws[3]};
  int tr = n->op == OP_CONV2D_BWD_X;
  Onnx__NodeProto *c = node(x, tr ? "ConvTranspose" : "Conv", (const char *const[]){in, w}, 2, out);
  attr_ints(x, c, "kernel_shape", ks, 2);
  attr_ints(x, c, "strides", st, 2);
  attr_ints(x, c, "pads", pd, 4);
  attr_ints(x, c, "dilations", dl, 2);
  attr_i(x, c, "group", i[6]);
  if (tr) {
    int64_t op[2];
    for (int k = 0; k < 2; k++)
      op[k] = n->shape.dim[2 + k] - ((n->in[0]->shape.dim[2 + k] - 1) * st[k] - 2 * pd[k] + dl[k] * (ks[k] - 1) + 1);
    attr_ints(x, c, "output_padding", op, 2);
  }
  return out;
}

static const char *pool(Ex *x, const Node *n, const char *out) {
  const char *in = value(x, n->in[0]);
  if (!in) return NULL;
  int64_t ks[2] = {n->a.i[0], n->a.i[0]}, st[2] = {n->a.i[1], n->a.i[1]};
  Onnx__NodeProto *p = node(x, n->op == OP_MAXPOOL2D ? "MaxPool" : "AveragePool", &in, 1, out);
  attr_ints(x, p, "kernel_shape", ks, 2);
  attr_ints(x, p, "strides", st, 2);
  return out;
}

/* The losses, as the mean PyTorch takes: cross_entropy is
 * SoftmaxCrossEntropyLoss over [P, C] and [P] (int64); mse and bce_logits
 * elementwise, then ReduceMean over every axis. */
static const char *loss(Ex *x, const Node *n, const char *out) {
  const char *a = value(x, n->in[0]), *b = value(x, n->in[1]);
  if (!a || !b) return NULL;
  int r = n->in[0]->shape.rank;
  if (n->op == OP_CROSS_ENTROPY) {
    int64_t pc[2] = {-1, n->in[0]->shape.dim[r - 1]}, p = -1;
    const char *l = node2(x, "Reshape", a, const_i64s(x, pc, 2), NULL);
    const char *t = cast(x, node2(x, "Reshape", b, const_i64s(x, &p, 1), NULL), TY_INT64);
    attr_s(x, node(x, "SoftmaxCrossEntropyLoss", (const char *const[]){l, t}, 2, out), "reduction", "mean");
    return out;
  }
  const char *e;
  if (n->op == OP_MSE) {
    const char *dd = node2(x, "Sub", a, b, NULL);
    e = node2(x, "Mul", dd, dd, NULL);
  } else {   /* max(z, 0) - z t + log(1 + exp(-|z|)) */
    const char *sp = node1(x, "Softplus", node1(x, "Neg", node1(x, "Abs", a, NULL), NULL), NULL);
    e = node2(x, "Add", node2(x, "Sub", node1(x, "Relu", a, NULL), node2(x, "Mul", a, b, NULL), NULL), sp, NULL);
  }
  int rb = n->in[1]->shape.rank;
  return reduce(x, "ReduceMean", e, 0, r > rb ? r : rb, 0, out);
}

/* --------------------------------------------- layer_norm, batch_norm */

static int sole(const Ex *x, const Node *n) { return x->uses[n->id] == 1; }

/* The first axis of layer_norm's NORMALIZE z: x over axes ax.. (the last
 * ones) with MEAN and VAR of x over them; -1 when z is not that. */
static int ln_axis(const Node *z) {
  if (z->op != OP_NORMALIZE) return -1;
  const Node *in = z->in[0], *m = z->in[1], *v = z->in[2];
  int r = in->shape.rank;
  if (m->op != OP_MEAN || m->in[0] != in || m->a.i[0] != z->a.i[0] || !m->a.i[1] || v->op != OP_VAR ||
      v->in[0] != in || v->in[1] != m || v->a.i[0] != z->a.i[0] || !r)
    return -1;
  uint64_t mask = (uint64_t)z->a.i[0], all = ((uint64_t)1 << r) - 1;
  if (!mask) mask = all;
  int ax = r;
  while (ax > 0 && (mask >> (ax - 1) & 1)) ax--;
  return ax < r && mask == (all & ~(((uint64_t)1 << ax) - 1)) ? ax : -1;
}

/* 1 if w has the normalized shape: x's dims from axis ax. */
static int norm_shaped(const Node *w, const Node *in, int ax) {
  if (w->dt != DT_F32 || w->shape.rank != in->shape.rank - ax) return 0;
  for (int k = 0; k < w->shape.rank; k++)
    if (w->shape.dim[k] != in->shape.dim[ax + k]) return 0;
  return 1;
}

/* The value v over the dims of s from axis ax (the default scale and bias of LayerNormalization and BatchNormalization). */
static const char *filled(Ex *x, const Shape *s, int ax, double v) {
  const char *out = tmp(x);
  int64_t one = 1;
  float f = (float)v;
  const char *sh = const_i64s(x, s->dim + ax, s->rank - ax);
  attr_t(x, node(x, "ConstantOfShape", &sh, 1, out), "value", tensor(x, NULL, TY_FLOAT, &one, 1, &f, sizeof f));
  return out;
}

/* n is layer_norm: NORMALIZE z alone, z * w, or z * w + b (each read once) -> LayerNormalization. */
static const char *layer_norm(Ex *x, const Node *n, const char *out) {
  const Node *z = n, *w = NULL, *b = NULL;
  if (n->op == OP_ADD && n->in[0]->op == OP_MUL && sole(x, n->in[0])) {
    b = n->in[1];
    z = n->in[0];
  }
  if (z->op == OP_MUL && z->in[0]->op == OP_NORMALIZE && sole(x, z->in[0])) {
    w = z->in[1];
    z = z->in[0];
  }
  int ax = ln_axis(z);
  if (ax < 0 || (n != z && !w) || (w && !norm_shaped(w, z->in[0], ax)) || (b && !norm_shaped(b, z->in[0], ax)))
    return NULL;
  const char *in = value(x, z->in[0]), *ws = w ? value(x, w) : filled(x, &z->in[0]->shape, ax, 1),
             *bs = b ? value(x, b) : NULL;
  if (!in || !ws || (b && !bs)) return NULL;
  Onnx__NodeProto *l = node(x, "LayerNormalization", (const char *const[]){in, ws, bs}, bs ? 3 : 2, out);
  attr_i(x, l, "axis", ax);
  attr_f(x, l, "epsilon", z->a.f[0]);
  return out;
}

/* v of shape [1, C(, 1, 1)] as rank r: the [C] tensor it is a reshape of, or NULL. */
static const Node *channels(const Node *v, int64_t C, int r) {
  if (v->op != OP_RESHAPE || v->shape.rank != r || v->shape.dim[0] != 1 || v->shape.dim[1] != C) return NULL;
  for (int k = 2; k < r; k++)
    if (v->shape.dim[k] != 1) return NULL;
  const Node *s = v->in[0];
  return s->dt == DT_F32 && s->shape.rank == 1 && s->shape.dim[0] == C ? s : NULL;
}

/* n is sema's evaluation batch_norm, (x - rm) / sqrt(rv + eps) [* w + b]
 * with rm, rv, w, b of [C] reshaped to x's channel axis, each intermediate
 * read once -> BatchNormalization. */
static const char *batch_norm(Ex *x, const Node *n, const char *out) {
  const Node *q = n, *w = NULL, *b = NULL;
  if (n->op == OP_ADD && n->in[0]->op == OP_MUL && sole(x, n->in[0]) && n->in[0]->in[0]->op == OP_DIV &&
      sole(x, n->in[0]->in[0])) {
    q = n->in[0]->in[0];
    w = n->in[0]->in[1];
    b = n->in[1];
  }
  if (q->op != OP_DIV || q->in[0]->op != OP_SUB || !sole(x, q->in[0]) || q->in[1]->op != OP_SQRT || !sole(x, q->in[1]))
    return NULL;
  const Node *in = q->in[0]->in[0], *ad = q->in[1]->in[0];
  int r = in->shape.rank;
  if ((r != 2 && r != 4) || !shape_eq(&in->shape, &n->shape) || ad->op != OP_ADD || !sole(x, ad) ||
      ad->in[1]->op != OP_CONST || ad->in[1]->shape.rank)
    return NULL;
  int64_t C = in->shape.dim[1];
  const Node *rm = channels(q->in[0]->in[1], C, r), *rv = channels(ad->in[0], C, r);
  const Node *wc = w ? channels(w, C, r) : NULL, *bc = b ? channels(b, C, r) : NULL;
  if (!rm || !rv || (w && (!wc || !bc))) return NULL;
  Shape cs = {1, {C}};
  const char *args[5] = {value(x, in), wc ? value(x, wc) : filled(x, &cs, 0, 1), bc ? value(x, bc) : filled(x, &cs, 0, 0),
                         value(x, rm), value(x, rv)};
  for (int k = 0; k < 5; k++)
    if (!args[k]) return NULL;
  attr_f(x, node(x, "BatchNormalization", args, 5, out), "epsilon", ad->in[1]->a.f[0]);
  return out;
}

/* ------------------------------------------------------------ one node */

/* The operands of n as values, into v; -1 if one failed. */
static int operands(Ex *x, const Node *n, const char **v) {
  for (int k = 0; k < n->nin; k++)
    if (!(v[k] = value(x, n->in[k]))) return -1;
  return 0;
}

static const char *emit(Ex *x, const Node *n, const char *out) {
  const char *r, *v[8] = {0};
  if ((n->op == OP_ADD || n->op == OP_MUL || n->op == OP_NORMALIZE) && (r = layer_norm(x, n, out))) return r;
  if ((n->op == OP_ADD || n->op == OP_DIV) && (r = batch_norm(x, n, out))) return r;
  if (x->failed) return NULL;
  const char *op = direct_op(n->op);
  if (op) return operands(x, n, v) ? NULL : (node(x, op, v, n->nin, out), out);
  switch (n->op) {
  case OP_CONST: return fill(x, n, n->a.f[0], out);
  case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE: return compare(x, n, out);
  case OP_RESHAPE: return reshape(x, n, out);
  case OP_EXPAND: return expand(x, n, out);
  case OP_SLICE: return slice(x, n, out);
  case OP_TRIL: return tril(x, n, out);
  case OP_RAND: case OP_RANDN: return noise(x, n, out);
  case OP_CONV2D: case OP_CONV2D_BWD_X: return conv(x, n, out);
  case OP_MAXPOOL2D: case OP_AVGPOOL2D: return pool(x, n, out);
  case OP_CROSS_ENTROPY: case OP_MSE: case OP_BCE_LOGITS: return loss(x, n, out);
  default: break;
  }
  if (n->nin > 8 && n->op != OP_CONCAT) return NULL;
  if (n->op == OP_CONCAT) {
    const char **cv = arena_alloc(x->a, sizeof(char *) * (size_t)n->nin);
    if (operands(x, n, cv)) return NULL;
    attr_i(x, node(x, "Concat", cv, n->nin, out), "axis", n->a.i[0]);
    return out;
  }
  if (operands(x, n, v)) return NULL;
  int rank = n->nin ? n->in[0]->shape.rank : 0;
  Onnx__NodeProto *o;
  switch (n->op) {
  case OP_POW: return node2(x, "Pow", v[0], const_f(x, n->a.f[0]), out);
  case OP_ELU: attr_f(x, node(x, "Elu", v, 1, out), "alpha", n->a.f[0]); return out;
  case OP_LEAKY_RELU: attr_f(x, node(x, "LeakyRelu", v, 1, out), "alpha", n->a.f[0]); return out;
  case OP_GELU: return gelu(x, v[0], out);
  case OP_CLAMP: node(x, "Clip", (const char *const[]){v[0], const_f(x, n->a.f[0]), const_f(x, n->a.f[1])}, 3, out); return out;
  case OP_CAST: attr_i(x, node(x, "Cast", v, 1, out), "to", TY_FLOAT); return out;
  case OP_WHERE: node(x, "Where", (const char *const[]){cast(x, v[0], TY_BOOL), v[1], v[2]}, 3, out); return out;
  case OP_SUM: return reduce(x, "ReduceSum", v[0], (uint64_t)n->a.i[0], rank, (int)n->a.i[1], out);
  case OP_MEAN: return reduce(x, "ReduceMean", v[0], (uint64_t)n->a.i[0], rank, (int)n->a.i[1], out);
  case OP_MAX: return reduce(x, "ReduceMax", v[0], (uint64_t)n->a.i[0], rank, (int)n->a.i[1], out);
  case OP_ARGMAX:
    o = node(x, "ArgMax", v, 1, tmp(x));
    attr_i(x, o, "axis", n->a.i[0]);
    attr_i(x, o, "keepdims", 0);
    attr_i(x, node(x, "Cast", (const char *const *)o->output, 1, out), "to", TY_INT32);
    return out;
  case OP_TRANSPOSE: attr_ints(x, node(x, "Transpose", v, 1, out), "perm", n->a.i, rank); return out;
  case OP_SOFTMAX: attr_i(x, node(x, "Softmax", v, 1, out), "axis", n->a.i[0]); return out;
  case OP_LOG_SOFTMAX: attr_i(x, node(x, "LogSoftmax", v, 1, out), "axis", n->a.i[0]); return out;
  case OP_VAR: {   /* mean((x - mean)^2) over the mask, keepdims */
    const char *dd = node2(x, "Sub", v[0], v[1], NULL);
    return reduce(x, "ReduceMean", node2(x, "Mul", dd, dd, NULL), (uint64_t)n->a.i[0], rank, 1, out);
  }
  case OP_NORMALIZE:   /* (x - mean) / sqrt(var + eps) */
    return node2(x, "Div", node2(x, "Sub", v[0], v[1], NULL),
                 node1(x, "Sqrt", node2(x, "Add", v[2], const_f(x, n->a.f[0]), NULL), NULL), out);
  case OP_EMBEDDING: attr_i(x, node(x, "Gather", v, 2, out), "axis", 0); return out;
  default: return NULL;
  }
}

/* The ONNX value of n, emitting n (after what it reads) on first use; NULL after an error. */
static const char *value(Ex *x, const Node *n) {
  if (x->failed) return NULL;
  if (x->val[n->id]) return x->val[n->id];
  if (n->op == OP_INPUT || n->op == OP_PARAM) return x->val[n->id] = n->name;
  const Node *cur = x->cur;
  const char *curname = x->curname;
  int ntmp = x->ntmp;
  x->cur = n;
  x->curname = name_of(x, n);
  x->ntmp = 0;
  const char *r = emit(x, n, x->curname);
  if (!r && !x->failed) fail_at(x, n, "export: ONNX cannot express this %s here", op_info[n->op].name);
  x->cur = cur;
  x->curname = curname;
  x->ntmp = ntmp;
  return x->val[n->id] = r;
}

/* ------------------------------------------------------------ the model */

/* The type of node n (f32 or i32) with its dims: a symbol as dim_param, a
 * dim that is another multiple of it left unknown. */
static Onnx__ValueInfoProto *value_info(Ex *x, const char *name, const Node *n) {
  Onnx__TensorShapeProto *sh = arena_alloc(x->a, sizeof *sh);
  *sh = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
  sh->n_dim = (size_t)n->shape.rank;
  sh->dim = arena_alloc(x->a, sizeof *sh->dim * (size_t)(n->shape.rank ? n->shape.rank : 1));
  for (int k = 0; k < n->shape.rank; k++) {
    Onnx__TensorShapeProto__Dimension *d = arena_alloc(x->a, sizeof *d);
    *d = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
    DimX e = x->dx[n->id][k];
    if (e.sym < 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = e.b;
    } else if (e.a == 1 && e.b == 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = (char *)x->syms[e.sym].name;
    }
    sh->dim[k] = d;
  }
  Onnx__TypeProto__Tensor *tt = arena_alloc(x->a, sizeof *tt);
  *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
  tt->has_elem_type = 1;
  tt->elem_type = n->dt == DT_I32 ? TY_INT32 : TY_FLOAT;
  tt->shape = sh;
  Onnx__TypeProto *ty = arena_alloc(x->a, sizeof *ty);
  *ty = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
  ty->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  ty->tensor_type = tt;
  Onnx__ValueInfoProto *vi = arena_alloc(x->a, sizeof *vi);
  *vi = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
  vi->name = (char *)name;
  vi->type = ty;
  return vi;
}

/* Marks what the outputs need, counts readers, names the nodes that compute
 * an output after it, and reports every op ONNX cannot express. */
static int prepare(Ex *x) {
  const Graph *g = x->g;
  Node **roots = arena_alloc(x->a, sizeof(Node *) * (size_t)(g->noutputs ? g->noutputs : 1));
  for (int i = 0; i < g->noutputs; i++) roots[i] = g->outputs[i].node;
  ir_mark_deps(g, roots, g->noutputs, x->need);
  int bad = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    if (!x->need[i]) continue;
    for (int k = 0; k < n->nin; k++) x->uses[n->in[k]->id]++;
    if (!exportable(n->op)) {
      diag_error(x->d, n->loc, "export: ONNX cannot express '%s' (%s)", op_info[n->op].name, why_not(n->op));
      bad++;
    }
  }
  for (int i = 0; i < g->noutputs; i++) {
    const Node *n = g->outputs[i].node;
    x->uses[n->id]++;
    if (n->op != OP_INPUT && n->op != OP_PARAM && !x->hint[n->id]) x->hint[n->id] = g->outputs[i].name;
  }
  return bad ? -1 : 0;
}

static Onnx__GraphProto *build_graph(Ex *x, float *const *params) {
  const Graph *g = x->g;
  Onnx__GraphProto *gp = arena_alloc(x->a, sizeof *gp);
  *gp = (Onnx__GraphProto)ONNX__GRAPH_PROTO__INIT;
  gp->name = (char *)(g->model_name ? g->model_name : "model");
  gp->input = arena_alloc(x->a, sizeof *gp->input * (size_t)(g->ninputs + 1));
  for (int i = 0; i < g->ninputs; i++) {
    const Node *n = g->inputs[i].node;
    if (x->need[n->id]) gp->input[gp->n_input++] = value_info(x, n->name, n);
  }
  for (int i = 0; i < g->nparams; i++) {
    const Node *n = g->params[i].node;
    if (!x->need[n->id]) continue;
    push(x->a, (void ***)&x->inits, &x->ninits, &x->icap,
         tensor(x, n->name, TY_FLOAT, n->shape.dim, n->shape.rank, params[i], sizeof(float) * (size_t)shape_numel(&n->shape)));
  }
  gp->output = arena_alloc(x->a, sizeof *gp->output * (size_t)(g->noutputs + 1));
  for (int i = 0; i < g->noutputs; i++) {
    const Node *n = g->outputs[i].node;
    const char *v = value(x, n), *name = g->outputs[i].name;
    if (!v) return NULL;
    if (strcmp(v, name)) {
      x->cur = n;
      node1(x, "Identity", v, name);
      x->cur = NULL;
    }
    gp->output[gp->n_output++] = value_info(x, name, n);
  }
  gp->node = x->nodes;
  gp->n_node = x->nnodes;
  gp->initializer = x->inits;
  gp->n_initializer = x->ninits;
  return gp;
}

int onnx_export(Diag *d, const Graph *g, const OnnxSym *syms, int nsyms, float *const *params, uint8_t **buf,
                size_t *len) {
  Arena a;
  arena_init(&a);
  Ex x = {.d = d, .a = &a, .g = g, .syms = syms, .nsyms = nsyms};
  size_t nn = (size_t)(g->nnodes ? g->nnodes : 1), ns = (size_t)(nsyms ? nsyms : 1);
  x.dx = arena_alloc(&a, sizeof *x.dx * nn);
  x.val = arena_alloc(&a, sizeof *x.val * nn);
  x.hint = arena_alloc(&a, sizeof *x.hint * nn);
  x.uses = arena_alloc(&a, sizeof *x.uses * nn);
  x.need = arena_alloc(&a, nn);
  x.symval = arena_alloc(&a, sizeof *x.symval * ns);
  x.symsrc = arena_alloc(&a, sizeof *x.symsrc * ns);
  x.symaxis = arena_alloc(&a, sizeof *x.symaxis * ns);
  int rc = -1;
  if (!g->noutputs) {
    diag_error(d, (Loc){0}, "export: the model has no `output` to export");
    goto out;
  }
  if (prepare(&x) || find_dims(&x)) goto out;
  Onnx__GraphProto *gp = build_graph(&x, params);
  if (!gp) goto out;
  Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets[1] = {&opset};
  opset.domain = "";
  opset.has_version = 1;
  opset.version = ONNX_OPSET;
  Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
  m.has_ir_version = 1;
  m.ir_version = ONNX_IR_VERSION;
  m.n_opset_import = 1;
  m.opset_import = opsets;
  m.producer_name = "nndc";
  m.producer_version = "0.1";
  m.graph = gp;
  m.doc_string = arena_printf(&a, "%s: the evaluation-mode forward graph, exported by nndc", g->model_name ? g->model_name : "model");
  *len = onnx__model_proto__get_packed_size(&m);
  *buf = malloc(*len ? *len : 1);
  if (!*buf) nndc_fatal(__FILE__, __LINE__, "out of memory");
  onnx__model_proto__pack(&m, *buf);
  rc = 0;
out:
  arena_free(&a);
  return rc;
}
