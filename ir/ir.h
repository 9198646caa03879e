/* ir.h - the tensor IR shared by every stage, over the support layer every
 * stage uses (support/support.h: arena, diagnostics, RNG).  Sections are
 * named after the files that implement them.
 *
 * A Graph is a list of Nodes in topological order; every node has a concrete
 * shape (symbolic dims are bound by the frontend before the graph is built)
 * and the source location it came from.  All nodes, names and attribute
 * arrays of one compilation live in one Arena and are freed at once.
 */
#ifndef NNDC_IR_H
#define NNDC_IR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "support/support.h"

/* ---------------------------------------------------------------- graph.c */

#define MAX_RANK 8
#define MAX_DIM  ((int64_t)1 << 40)   /* largest dim and element count accepted */

typedef enum { DT_F32, DT_I32 } DType;

typedef struct Shape {
  int rank;
  int64_t dim[MAX_RANK];
} Shape;

typedef enum {
#define OP(e, name, nin, flags, ...) OP_##e,
#include "ops.def"
  OP_COUNT
} Op;

enum {
  F_LEAF = 1, F_EW = 2, F_REDUCE = 4, F_NOGRAD = 8, F_INTERNAL = 16, F_UPDATE = 32
};

typedef struct OpInfo {
  const char *name;
  int nin;      /* -1 variadic */
  int flags;
  int heavy;    /* ops.def's heavy column: its kernels get the JIT's full pipeline */
  const char *attrs;  /* ops.def's attrs column: "NAME:SLOT[:DEFAULT] ..." */
} OpInfo;
extern const OpInfo op_info[OP_COUNT];
/* The default of attribute `name` of op (ops.def's attrs column) in *v;
 * 0, or -1 when the op has no such attribute or it has no default. */
int op_attr_default(Op op, const char *name, double *v);
/* The name of the attribute ops.def stores in Attr.f[fslot] of op into
 * buf[n] (truncated); 0, or -1 when the op has none there. */
int op_attr_name(Op op, int fslot, char *buf, size_t n);

/* Attributes; which fields an op uses is written beside it in ops.def. */
typedef struct Attr {
  int64_t i[2 * MAX_RANK];
  double f[6];
  Shape shape;  /* target shape for CONST, RESHAPE, EXPAND, SLICE, SLICE_BWD, ONE_HOT, *_BWD */
} Attr;

typedef enum {
  INIT_DEFAULT, INIT_ZEROS, INIT_ONES, INIT_FULL, INIT_UNIFORM, INIT_NORMAL,
  INIT_GLOROT_UNIFORM, INIT_GLOROT_NORMAL, INIT_HE_UNIFORM, INIT_HE_NORMAL
} InitKind;

typedef struct Init {
  InitKind kind;  /* INIT_DEFAULT is resolved by sema: rank >= 2 glorot_uniform, else zeros */
  double a, b;    /* full: a = value; uniform: [a, b); normal: mean a, std b */
} Init;

typedef struct Node Node;
struct Node {
  int id;              /* index in Graph.nodes */
  Op op;
  DType dt;
  Shape shape;
  int nin;
  Node **in;           /* [nin] operands (arena) */
  Attr a;
  const char *name;    /* INPUT, PARAM, STATE: the name ("h1.W"); else NULL */
  Init init;           /* PARAM */
  int running;         /* PARAM: a running statistic of batch_norm: model state, saved
                        * and loaded with the params, never given to an optimizer */
  int wrt;             /* INPUT (f32): a differentiation target: pass_autodiff also gives
                        * d loss / d input in Graph.input_grads (run --grad-input, attack) */
  int frozen;          /* PARAM: not trained by this graph (a train block step's graph trains
                        * only the step's params): no gradient, no update */
  Loc loc;             /* where the user wrote it (autodiff: the forward node's) */
};

typedef struct Named {
  const char *name;
  Node *node;
} Named;

typedef enum { OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW, OPTIM_RMSPROP, OPTIM_ADAGRAD } OptimKind;

typedef struct OptimCfg {
  OptimKind kind;
  double lr, momentum, beta1, beta2, eps, alpha, weight_decay; /* torch.optim names and defaults */
  int nesterov;
} OptimCfg;

/* A `step NAME { loss = L; params = [...]; optimizer = ... }` of the train block (spec 8). */
#define MAX_STEPS 16         /* step blocks in one train block */
typedef struct TrainStep {
  const char *name;
  const char *loss;    /* the named loss it minimises */
  Node *loss_node;     /* resolved by sema */
  uint8_t *trains;     /* [nparams] 1 if the step trains param i (resolved by sema) */
  OptimCfg opt;
  Loc loc;             /* its name */
} TrainStep;

typedef struct TrainCfg {
  OptimCfg opt;        /* the optimizer; with steps, the built step's (Graph.step) */
  TrainStep *steps;    /* [nsteps] in the order written (0: one loss, one optimizer) */
  int nsteps;
  int64_t batch, epochs;
  int shuffle;
  uint64_t seed;
} TrainCfg;

/* A bound symbolic dimension or file-level const, for headers and dumps. */
typedef struct Sym {
  const char *name;
  int64_t value;
} Sym;

/* fuse_group of a TRANSPOSE that the MATMULs using it read in place, and of
 * a MEAN or VAR that the group of the NORMALIZE using them computes (a
 * buffer, no kernel of its own). */
enum { FUSE_IN_PLACE = -2, FUSE_STATS = -3 };

typedef struct Graph {
  Arena *arena;        /* owns everything below (not owned by the graph) */
  Node **nodes;        /* [nnodes] topological order */
  int nnodes, cap;
  Named *inputs;   int ninputs;    /* INPUT nodes in declaration order */
  Named *params;   int nparams;    /* PARAM nodes in declaration order */
  Named *outputs;  int noutputs;   /* `output NAME = e` in order */
  Node *loss;                      /* `loss = e`, or NULL; in a step's graph, the step's loss */
  Named *losses;   int nlosses;    /* `loss NAME = e` in order */
  int step;                        /* the train block's step this graph trains (1-based; 0: none) */
  Named *metrics;  int nmetrics;   /* `metric NAME = e` */
  Node **grads;                    /* [nparams] d loss / d param, after pass_autodiff */
  Node **input_grads;              /* [ninputs] d loss / d input for inputs marked wrt (else NULL),
                                    * after pass_autodiff; NULL when none is marked */
  Named *states;   int nstates;    /* optimizer STATE leaves, after pass_optim */
  Node **updates;  int nupdates;   /* OPT_* nodes, after pass_optim */
  Sym *syms;       int nsyms;      /* bound symbolic dims */
  TrainCfg train;
  int training;                    /* built for training: dropout active */
  const char *model_name;          /* file name without .nnd (arena) */
  int *fuse_group;                 /* [nnodes] after pass_fuse: id of the node's group root, -1 alone,
                                    * FUSE_IN_PLACE (passes/fuse.c); else NULL */
} Graph;

void graph_init(Graph *g, Arena *a);
/* Makes g (built for training, before pass_autodiff) the graph of the train
 * block's step k (1-based): its loss, its optimizer, and every param the
 * step does not train frozen (spec 8). */
void graph_use_step(Graph *g, int k);
/* The params of tgs[0] and the optimizer states of every step's graph, in
 * step order (distinct names: a param belongs to one step): what a run with
 * several steps saves, loads and emits as its state.  A shallow copy of
 * tgs[0] with a new states array in its arena. */
Graph graph_steps_union(const Graph *const *tgs, int nsteps);
/* Appends update node u (F_UPDATE) to g->updates (arena-grown). */
void graph_add_update(Graph *g, Node *u);

/* Builds a node with shape inference.  On a shape or type error reports at loc
 * (naming both shapes) and returns NULL.  `a` may be NULL (all zero). */
Node *ir_op(Graph *g, Diag *d, Loc loc, Op op, Node **in, int nin, const Attr *a);
Node *ir_leaf(Graph *g, Loc loc, Op op, DType dt, const Shape *s, const char *name);
Node *ir_const(Graph *g, Loc loc, const Shape *s, double v);
/* Shorthands for passes; abort on a shape error (passes only build valid nodes). */
Node *ir_un(Graph *g, Op op, Node *x);
Node *ir_bin(Graph *g, Op op, Node *x, Node *y);
Node *ir_scalar(Graph *g, double v);
Node *ir_reshape(Graph *g, Node *x, const Shape *s);
Node *ir_expand(Graph *g, Node *x, const Shape *s);
Node *ir_sum_to(Graph *g, Node *x, const Shape *s);   /* undo broadcasting: reduce x to shape s */
Node *ir_build(Graph *g, Op op, Node **in, int nin, const Attr *a, Loc loc); /* aborting ir_op */
/* Calls fn(ctx, slot) for every role of g that names a node: outputs,
 * metrics, the loss, gradients and updates (slot may be rewritten; *slot
 * may be NULL): the one walk of a graph's roles for the passes. */
void ir_roles(Graph *g, void (*fn)(void *ctx, Node **slot), void *ctx);
/* Renumbers g's nodes into a topological order after a pass rewired a node
 * to operands built after it (the order is kept where it already was
 * topological); drops g->fuse_group. */
void ir_toposort(Graph *g);

/* Whether t is a TRANSPOSE (f32) swapping the last two axes of a rank-2 or
 * rank-3 tensor: a transposed matrix or batch of matrices, which a product
 * can read in place (passes/fuse.c, passes/simplify.c). */
int ir_swaps_last_two(const Node *t);
/* The groups of a normalization of shape s over the axes of mask (0: all)
 * as [P, G, Q]: element (p, g, q) at (p G + g) Q + q, group g's statistics
 * at g; -1 when the kept axes (of extent above 1) are not adjacent. */
int norm_split(const Shape *s, uint64_t mask, int64_t *P, int64_t *G, int64_t *Q);
int64_t shape_numel(const Shape *s);                 /* product of dims (1 for a scalar) */
int shape_eq(const Shape *a, const Shape *b);
int shape_broadcast(const Shape *a, const Shape *b, Shape *out); /* 0 if incompatible */
char *shape_str(const Shape *s, DType dt, char *buf, size_t n);  /* "f32[64,784]" */
/* Checked multiply: returns 0 and leaves *r unset when a*b exceeds MAX_DIM. */
int dim_mul(int64_t a, int64_t b, int64_t *r);
/* The shape rule of ir_op without building a node (verify.c re-runs it):
 * fills *dt and *shape, may normalise axes in *a; d may be NULL (silent). */
int ir_infer(Diag *d, Loc loc, Op op, Node **in, int nin, Attr *a, DType *dt, Shape *shape);

/* ---------------------------------------------------------------- print.c */

/* Text dump: one line per node "%7 = matmul(%3, %5) : f32[64,256]  # mlp.nnd:12". */
char *ir_print(const Graph *g, Arena *a);
/* Graphviz DOT, accepted by `dot -Tsvg`. */
char *ir_print_dot(const Graph *g, Arena *a);

/* --------------------------------------------------------------- verify.c */

/* Checks operand order, arity, dtypes and re-infers every shape; reports and
 * returns the number of problems (0 = valid). */
int ir_verify(const Graph *g, Diag *d);

/* --------------------------------------------------------------- interp.c */

/* Per-run context shared by every engine. */
typedef struct RunCtx {
  uint64_t seed;     /* dropout stream */
  int64_t step;      /* 1-based optimizer step (also keys dropout masks) */
  int training;      /* dropout active */
} RunCtx;

/* The reference interpreter: naive, obviously correct kernels for every op.
 * The caller binds every INPUT, PARAM and STATE leaf it needs by setting
 * val[leaf->id] (borrowed; updates write params and states in place);
 * interp_run computes every other wanted node into buffers it owns. */
typedef struct Interp {
  const Graph *g;
  void **val;        /* [nnodes] f32 or i32 data, NULL until computed */
  uint8_t *owned;    /* [nnodes] 1 if val[i] is the interpreter's */
  int64_t part;      /* data parallel: this process's slice of the global batch; noise and
                      * dropout draw their element i as element part * numel + i (0: one process) */
} Interp;

void interp_init(Interp *it, const Graph *g);
/* want: [nnodes] mask of nodes to compute (NULL = all); their operands are
 * computed too.  Returns 0, or -1 after reporting (e.g. an unbound leaf). */
int  interp_run(Interp *it, Diag *d, const uint8_t *want, const RunCtx *ctx);
void interp_free(Interp *it);
/* Runs one F_UPDATE node (torch.optim rule) on val[] in place; 0 or -1.
 * Implemented in interp_update.c. */
int interp_update(const Node *n, void **val, const RunCtx *ctx);
/* The value of elementwise op (F_EW but EXPAND) with attrs f at operand
 * values x, as the interpreter computes it: the one scalar evaluator of the
 * compiler (sema's folding of numbers, simplify's constant folding). */
double interp_ew(Op op, const double *f, const double *x);

/* Marks in mask[nnodes] every node that roots[0..n) depend on (roots too). */
void ir_mark_deps(const Graph *g, Node *const *roots, int n, uint8_t *mask);

#endif
