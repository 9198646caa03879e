/* kir.h - the kernel IR: a small, printable loop-nest language between the
 * tensor graph and the two code generators (llvm.c: native code through ORC
 * LLJIT; c.c: C99 source).  lower.c builds it, kernels for the graph's nodes.
 *
 * A KProgram is a table of flat buffers (f32 or i32, C order) and a list of
 * kernels run in order.  A kernel is a list of statements over those buffers:
 * counted loops (one may be the PARALLEL loop that the runtime splits across
 * threads, inner ones may be marked VECTOR), stores of scalar expressions to
 * buffer elements, mutable scalar locals (accumulators), ifs and error
 * reports.  Indices are i64 expressions of loop variables.  Integer
 * arithmetic wraps (it is u64 arithmetic in two's complement; KB_SHR is a
 * logical shift), which the dropout hash relies on.
 *
 * Calling convention of a compiled kernel (both backends):
 *   void kernel(void **bufs, int64_t lo, int64_t hi, int64_t *ctx)
 * bufs[b] is the base address of buffer b of the program; every loop marked
 * KL_PARALLEL runs over [lo, hi) instead of its own bounds (which are always
 * [0, Kernel.par)); a kernel with par == 0 is called once with [0, 1).
 * ctx[KCTX_*] holds the run's seed, step and training flag, and the error
 * slots a kernel sets with KS_ERROR.
 */
#ifndef NNDC_KIR_H
#define NNDC_KIR_H

#include "../ir/ir.h"

typedef enum { KT_F32, KT_F64, KT_I64, KT_BOOL } KType;

/* Slots of the int64_t ctx[] array passed to every kernel. */
enum {
  KCTX_SEED,      /* RunCtx.seed (u64 bits) */
  KCTX_STEP,      /* RunCtx.step (1-based optimizer step) */
  KCTX_TRAINING,  /* RunCtx.training: 0 or 1 */
  KCTX_ERR,       /* set to 1 by KS_ERROR */
  KCTX_ERRVAL,    /* the offending value of the last KS_ERROR */
  KCTX_PART,      /* jit_set_part: noise element offset part * numel (data parallel) */
  KCTX_COUNT
};

typedef enum {
  KU_NEG, KU_ABS, KU_SQRT, KU_EXP, KU_LOG, KU_TANH, KU_ERF, KU_FLOOR,
  KU_LOG1P,       /* f32 only */
  KU_NOT,         /* bool */
  KU_COUNT
} KUnop;

typedef enum {
  KB_ADD, KB_SUB, KB_MUL, KB_DIV, KB_REM,   /* REM, DIV on i64: truncating */
  KB_MIN, KB_MAX, KB_POW,                   /* POW: floats only */
  KB_LT, KB_LE, KB_EQ, KB_NE, KB_GT, KB_GE, /* result KT_BOOL */
  KB_AND, KB_OR,                            /* bool */
  KB_XOR, KB_SHR,                           /* i64 bits (SHR logical) */
  KB_COUNT
} KBinop;

typedef enum {
  KX_CONST,   /* f (KT_F32, KT_F64) or i (KT_I64, KT_BOOL) */
  KX_VAR,     /* var: a loop variable or local */
  KX_CTX,     /* i: a KCTX_* slot, read as i64 (t KT_I64); or, t KT_F64, slot
               * KCTX_COUNT + k read as the f64 its bits hold: hyperparameter k */
  KX_LOAD,    /* buf[a[0]]; f32 buffers load KT_F32, i32 buffers KT_I64 (sign-extended) */
  KX_UN,      /* op: KUnop of a[0] */
  KX_BIN,     /* op: KBinop of a[0], a[1] (same type) */
  KX_SELECT,  /* a[0] (bool) ? a[1] : a[2] */
  KX_CAST     /* a[0] converted to t (i64 <-> float by value, f32 <-> f64, bool -> any as 0/1) */
} KExprKind;

typedef struct KExpr KExpr;
struct KExpr {
  KExprKind kind;
  KType t;         /* the type of the result */
  int op;          /* KX_UN: KUnop, KX_BIN: KBinop */
  int var;         /* KX_VAR */
  int buf;         /* KX_LOAD: index into KProgram.bufs */
  double f;        /* KX_CONST floats */
  int64_t i;       /* KX_CONST ints and bools, KX_CTX slot */
  KExpr *a[3];
};

typedef enum {
  KS_LOOP,    /* for (var = lo; var < hi; var += step) body */
  KS_STORE,   /* buf[idx] = val (f32 buffers take KT_F32, i32 buffers KT_I64, truncated) */
  KS_LET,     /* declares local var = val (mutable; visible to the end of its block) */
  KS_SET,     /* var = val */
  KS_IF,      /* if (cond) body */
  KS_ERROR,   /* ctx[KCTX_ERR] = 1, ctx[KCTX_ERRVAL] = val (i64); execution goes on */
  KS_TILE     /* tile: a register block of a product (gemm.c), below */
} KStmtKind;

/* A register tile of a product, the micro-kernel every GEMM shares (one
 * compiled function per (mr, nr, nc)): for r < mr, c < nc
 *   C[c0 + r*crs + c] = (accum ? C[...] : 0) + sum over k < klen, in order, of
 *                       A[a0 + r*ars + k*acs] * B[b0 + k*brs + c]
 * B's columns nc..nr are read (a packed panel's zero padding) but not
 * stored; nr is a whole number of host vectors. */
typedef struct KTile {
  int mr, nr, nc;
  int abuf, bbuf, cbuf;
  struct KExpr *a0, *b0, *c0;   /* element offsets (i64) */
  int64_t ars, acs, brs, crs;
  struct KExpr *klen;           /* i64, >= 0 */
  struct KExpr *accum;          /* bool */
} KTile;

enum { KL_PARALLEL = 1, KL_VECTOR = 2 };

typedef struct KStmt KStmt;
struct KStmt {
  KStmtKind kind;
  KStmt *next;        /* next statement of the block */
  int var;            /* KS_LOOP, KS_LET, KS_SET */
  int flags;          /* KS_LOOP: KL_* */
  int buf;            /* KS_STORE */
  int64_t step;       /* KS_LOOP: > 0 */
  KExpr *lo, *hi;     /* KS_LOOP bounds (i64); hi exclusive */
  KExpr *idx;         /* KS_STORE element index (i64) */
  KExpr *val;         /* KS_STORE, KS_LET, KS_SET, KS_ERROR */
  KExpr *cond;        /* KS_IF */
  KStmt *body;        /* KS_LOOP, KS_IF: first statement */
  KTile *tile;        /* KS_TILE */
};

typedef enum {
  KB_LEAF,    /* INPUT, PARAM, STATE: bound by the caller at run time */
  KB_ARENA,   /* an intermediate at `offset` in the program's arena */
  KB_CONST    /* filled once at compile time (CONST nodes) at `offset` */
} KBufKind;

typedef struct KBuffer {
  KBufKind kind;
  DType dt;
  int64_t numel;      /* elements */
  size_t offset;      /* KB_ARENA, KB_CONST: byte offset in the arena (64-aligned) */
  const Node *node;   /* the node that defines it (KB_LEAF: the leaf) */
  int scratch;        /* a kernel's work space (packed operand) for `node`, not its value */
} KBuffer;

typedef struct Kernel {
  const char *name;   /* symbol: "k12_matmul" */
  const char *opname; /* profile name: "matmul" */
  const Node *node;   /* the graph node it computes (loc for profile and errors) */
  int64_t par;        /* extent of the KL_PARALLEL loops; 0 = none */
  int nvars;
  KType *vtype;       /* [nvars] type of each loop variable (KT_I64) and local */
  KStmt *body;
  double flops;       /* estimate per call of the whole kernel */
  const char *errfmt; /* KS_ERROR message, printf with (long long errval, long long errarg) */
  int64_t errarg;
} Kernel;

/* A hyperparameter the update kernels read at run time (an optimizer's lr,
 * momentum, ...): ctx[KCTX_COUNT + k] holds the f64 bits of slot k's value,
 * so another value needs no recompilation.  Whether momentum or
 * weight_decay is zero changes the code (structural): such a slot keeps the
 * zero-ness it was compiled with. */
typedef struct HyperSlot {
  const Node *node;   /* the OPT_* update node of the lowered graph */
  int node_id;        /* its id in the caller's graph (codegen_lower), else node->id */
  int attr;           /* the Attr.f index it replaces */
  const char *name;   /* ops.def's attribute name: "lr", "momentum", "beta1", ... */
  double value;       /* the compiled value, node->a.f[attr] */
  int structural;     /* zero and nonzero values compile differently */
} HyperSlot;

typedef struct KProgram {
  Arena *arena;       /* owns every kernel, statement and expression */
  HyperSlot *hyper; int nhyper;  /* runtime hyperparameters, each update's slots together */
  KBuffer *bufs;  int nbufs;
  Kernel **kernels; int nkernels;
  int *node_buf;      /* [graph nnodes] buffer of each node, -1 if not computed */
  int *own_buf;       /* the same indexed by the ids of the graph that was lowered
                       * (after codegen_lower, node_buf is by the caller's ids) */
  size_t arena_bytes; /* size of the one block holding KB_ARENA and KB_CONST buffers */
  int target;         /* the TargetKind it was lowered for (tile widths) */
} KProgram;

/* ---------------------------------------------------------------- lower.c */

/* Lowers the nodes that roots[0..nroots) need, one kernel per non-leaf node
 * (RESHAPE aliases its operand, CONST fills at compile time).  Returns NULL
 * after reporting an op it cannot lower. */
KProgram *lower_program(Diag *d, Arena *a, const Graph *g, Node *const *roots, int nroots);
/* The value of elementwise node n (an F_EW op, CAST or EXPAND) of its
 * operand values x, as an f32 expression allocated in a; shared by the
 * one-node kernels of lower.c and the fused groups of lower_fused.c. */
KExpr *lower_ew_value(Arena *a, const Node *n, KExpr **x);
/* C-order strides of s broadcast to an output of rank r with dims odims (0
 * on broadcast axes), and the merging of adjacent output dims through which
 * every one of nst stride sets is contiguous (returns the new rank): the
 * loop nests of elementwise kernels, here and in lower_fused.c. */
void lower_bcast_strides(const Shape *s, const int64_t *odims, int r, int64_t *st);
int lower_collapse(int64_t *dims, int r, int64_t (*st)[MAX_RANK], int nst);
/* Writes the CONST buffers of p into arena memory base (arena_bytes bytes). */
void lower_fill_consts(const KProgram *p, void *base);

/* ----------------------------------------------------------------- llvm.c */

typedef void (*KernelFn)(void **bufs, int64_t lo, int64_t hi, int64_t *ctx);
typedef struct LlvmJit LlvmJit;

/* Compiles every kernel of p into one module and one LLJIT; fns[k] receives
 * kernel k's entry point.  Returns NULL after reporting. */
LlvmJit *llvm_compile(Diag *d, const KProgram *p, KernelFn *fns);
void llvm_free(LlvmJit *j);
/* Builds p's modules and compiles them to object code without loading them
 * (so for any target, also one this host cannot execute): the bytes of
 * object code, or 0 after reporting an error in d. */
size_t llvm_compile_object(Diag *d, const KProgram *p);

/* ---------------------------------------------------------- lower_fused.c */

/* One kernel for the fused group (g->fuse_group, passes/fuse.c) whose root is
 * `root`: loads of the group's external operands, the members' values as
 * locals, one store to the root's buffer (p->node_buf[root->id], assigned by
 * the caller; interior members have none). */
Kernel *lower_fused(Arena *a, KProgram *p, const Graph *g, const Node *root);
/* The MATMUL of the group rooted at root, or NULL if it has none. */
const Node *lower_fused_matmul(const Graph *g, const Node *root);
/* "matmul+add+relu": the op names of the group's members in order. */
const char *lower_fused_name(Arena *a, const Graph *g, const Node *root);
/* Fills *epi with the epilogue computing the group's elementwise members
 * from the sum of its MATMUL mm (gemm_lower's GemmEpi); returns their flops. */
struct GemmEpi;
double lower_fused_epi(Arena *a, KProgram *p, const Graph *g, const Node *root, const Node *mm,
                       struct GemmEpi *epi);

/* ----------------------------------------------------------------- gemm.c */

/* A small kernel-IR builder shared by gemm.c and conv.c.  It appends
 * variables to k->vtype (growing it itself: a caller that also adds
 * variables must treat the capacity as unknown afterwards). */
typedef struct KGen {
  Arena *a;
  const KProgram *p;
  Kernel *k;
  int cap;            /* capacity of k->vtype; 0 = unknown, regrown on the next variable */
} KGen;

KExpr *kg_int(KGen *g, int64_t v);
KExpr *kg_f32(KGen *g, double v);
KExpr *kg_f64(KGen *g, double v);
int    kg_new_var(KGen *g, KType t);
KExpr *kg_var(KGen *g, int v);
KExpr *kg_bin(KGen *g, int op, KExpr *x, KExpr *y);   /* folds integer identities */
KExpr *kg_add(KGen *g, KExpr *x, KExpr *y);
KExpr *kg_addi(KGen *g, KExpr *x, int64_t c);
KExpr *kg_muli(KGen *g, KExpr *x, int64_t c);
KExpr *kg_sel(KGen *g, KExpr *c, KExpr *x, KExpr *y);
KExpr *kg_un(KGen *g, int op, KExpr *x);       /* KUnop */
KExpr *kg_ctx(KGen *g, int slot);               /* ctx[KCTX_*] */
KExpr *kg_hyper(KGen *g, int k);                /* hyperparameter slot k (f64) */
KExpr *kg_cast(KGen *g, KType t, KExpr *x);
KExpr *kg_load(KGen *g, int buf, KExpr *idx);
/* Statement builders append at `at` and return the next statement's slot. */
KStmt **kg_store(KGen *g, KStmt **at, int buf, KExpr *idx, KExpr *val);
KStmt **kg_error(KGen *g, KStmt **at, KExpr *val);  /* KS_ERROR */
KStmt **kg_let(KGen *g, KStmt **at, int *v, KExpr *init);
KStmt **kg_set(KGen *g, KStmt **at, int v, KExpr *val);
/* Loops and ifs advance *at past themselves and return their body slot. */
KStmt **kg_loop(KGen *g, KStmt ***at, KExpr **v, KExpr *lo, KExpr *hi, int64_t step, int flags);
KStmt **kg_for(KGen *g, KStmt ***at, KExpr **v, int64_t n, int flags);
KStmt **kg_if(KGen *g, KStmt ***at, KExpr *cond);

/* A matrix operand: element (r, c) of batch b is buf[b*bs + r*rs + c*cs]. */
typedef struct GemmOperand {
  int buf;
  int64_t bs, rs, cs;
} GemmOperand;

/* An epilogue: the value stored at C's element (b, row, col) given its
 * complete sum acc (f32), e.g. + bias then an activation.  It may append
 * KS_LETs at *at and load any buffer but C. */
typedef struct GemmEpi {
  KExpr *(*fn)(void *ctx, KGen *g, KStmt ***at, KExpr *acc, KExpr *b, KExpr *row, KExpr *col);
  void *ctx;
} GemmEpi;

/* Columns of the GEMM register tile for the current target (target.h): two
 * vectors (8 generic, 16 with AVX2, 32 with AVX-512). */
int gemm_target_nr(void);
/* Elements of the packed copy of B that gemm_lower reads for an M x K x N
 * product (per batch of B), or 0 when B is better read in place; bcontig:
 * B's rows are contiguous (column stride 1). */
int64_t gemm_pack_numel(int64_t M, int64_t N, int64_t K, int bcontig);
/* Fills g->k (empty) with the packing of B ([batch of] K x N, strides B)
 * into buffer dst: column panels of the micro-kernel's width, each K rows
 * of contiguous elements, the last panel zero-padded to whole vectors. */
void gemm_pack(KGen *g, int64_t batch, int64_t N, int64_t K, GemmOperand B, int dst);
/* Fills g->k (empty) with C[b] = A[b] @ B[b], b < batch, A [M,K], B [K,N],
 * C [M,N]: register-tiled, (row block, column chunk) items PARALLEL.  With
 * `packed`, B.buf holds gemm_pack's layout (B.bs nonzero when every batch
 * has its own B); with epi, C receives epi(sum) instead of the sum.  Sets
 * par and flops. */
void gemm_lower(KGen *g, int64_t batch, int64_t M, int64_t N, int64_t K, GemmOperand A, GemmOperand B,
                GemmOperand C, int packed, const GemmEpi *epi);

/* ----------------------------------------------------------------- conv.c */

/* A convolution's geometry (ops.def attrs i[0..6]): stride, padding and
 * dilation per axis (h, w) and groups. */
typedef struct ConvGeom {
  int64_t s[2], p[2], d[2];  /* strides, paddings, dilations: [0] h, [1] w */
  int64_t g;                 /* groups: w is [O, C/g, KH, KW] */
} ConvGeom;
ConvGeom conv_geom(const Node *n);
/* Fills g->k (empty) with the kernel of n: CONV2D, CONV2D_BWD_X or
 * CONV2D_BWD_W (any geometry, any groups, no scratch); ob is n's buffer, b0
 * and b1 its operands'. */
void conv_lower(KGen *g, const Node *n, int ob, int b0, int b1);
/* The GEMM formulation (lower.c; groups 1): x [N,C,H,W], w [O,C,KH,KW], y [N,O,OH,OW].
 * conv_im2col fills g->k with col[n*sn + ckk*sk + p*sp] = the input under
 * kernel element ckk = (c, kh, kw) at output position p = (oh, ow), 0 in
 * the padding; conv_col2im sums a [N, C*KH*KW, OH*OW] dcol back into dx;
 * conv_rows copies dy [N,O,P] to [N*P, O]. */
void conv_im2col(KGen *g, const Shape *xs, const Shape *ws, const Shape *ys, const ConvGeom *cg, int xb, int colb,
                 int64_t sn, int64_t sk, int64_t sp);
void conv_im2row(KGen *g, const Shape *xs, const Shape *ws, const Shape *ys, const ConvGeom *cg, int xb, int colb);
void conv_col2im(KGen *g, const Shape *xs, const Shape *ws, const Shape *ys, const ConvGeom *cg, int dcolb, int dxb);
void conv_rows(KGen *g, const Shape *ys, int yb, int ob);

/* ----------------------------------------------------------------- plan.c */

/* Memory planning of a lowered program: gives every KB_ARENA buffer an arena
 * offset by liveness (first to last kernel that loads or stores it), reusing
 * freed space best-fit; the buffers of nodes among roots[0..nroots) (of the
 * graph p was lowered from) and CONST buffers live to the end, so roots stay
 * readable after a run.  Sets p->arena_bytes. */
void plan_memory(KProgram *p, Node *const *roots, int nroots);
/* Calls fn(ctx, buf, store) for every buffer use under s, in statement
 * order: KS_STORE targets and KS_TILE's C (store = 1), KX_LOAD sources and
 * KS_TILE's A and B (store = 0): the one walk of the kernel IR's buffer
 * uses (memory planning, tests). */
typedef void (*KirBufFn)(void *ctx, int buf, int store);
void kir_buffers(const KStmt *s, KirBufFn fn, void *ctx);

/* --------------------------------------------------------------- driver.c */

/* A backend's way in: copies g into arena a (the caller's graph is never
 * changed, so the interpreter stays the oracle on it), optimizes the copy
 * keeping roots (passes_optimize_ex), lowers it with lower_program, plans
 * memory with plan_memory, and returns the program with node_buf indexed by
 * the ids of g (a node merged into another maps to its buffer).  NULL after
 * reporting. */
KProgram *codegen_lower(Diag *d, Arena *a, const Graph *g, Node *const *roots, int nroots);

#endif
