/* codegen.h - from the tensor graph to native code: kir.h (kernel IR),
 * lower.c (graph -> kernels), llvm.c (kernels -> LLVM IR -> ORC LLJIT),
 * c.c (kernels -> C99 source).  The runtime runs a JitProgram over one arena. */
#ifndef NNDC_CODEGEN_H
#define NNDC_CODEGEN_H

#include "../ir/ir.h"

typedef struct JitProgram JitProgram;

/* Per-kernel profile entry (jit_profile; runtime/engine.c and `nndc bench` report it). */
typedef struct KernelProf {
  const char *name;    /* e.g. "matmul+add+relu" */
  Loc loc;             /* source line of the first node */
  double seconds;      /* accumulated */
  double flops;        /* per run */
  int64_t calls;
} KernelProf;

/* Compiles the nodes that roots[0..nroots) need (updates among the roots run
 * for their side effects).  threads: 0 = all cores.  Returns NULL after
 * reporting.  The graph must outlive the program. */
JitProgram *jit_compile(Diag *d, Graph *g, Node *const *roots, int nroots, int threads, int profile);
void  jit_bind(JitProgram *p, const Node *leaf, void *data);     /* borrowed */
/* Another instance of o's compiled code, with its own arena, bindings (none
 * yet) and a copy of o's hyperparameters; no compilation.  o must outlive it.
 * threads: 0 = o's. */
JitProgram *jit_clone(const JitProgram *o, int threads);
/* Sets the run-time hyperparameter `name` (ops.def's attribute name of the
 * OPT_* updates: "lr", "momentum", "beta1", ...) of update node upd (of the
 * caller's graph), or of every update when upd is NULL, for the next runs.
 * Returns the number of slots set (0: no update has it), or -1 (nothing set)
 * when v is zero where the program was compiled with nonzero momentum or
 * weight_decay or the other way round: that is another program. */
int   jit_set_hyper(JitProgram *p, const Node *upd, const char *name, double v);
int   jit_run(JitProgram *p, Diag *d, const RunCtx *ctx);
/* Data parallel: noise and dropout draw element i as part * numel + i (Interp.part). */
void  jit_set_part(JitProgram *p, int64_t part);
/* after(user, i) runs once kernel i has run (on the calling thread), e.g. to
 * send a gradient as soon as it is complete. */
void  jit_set_hook(JitProgram *p, void (*after)(void *user, int kernel), void *user);
/* The last kernel that writes node n's value (a root's: final after it), or
 * -1 when no kernel does (a leaf, a constant). */
int   jit_last_writer(JitProgram *p, const Node *n);
void *jit_value(JitProgram *p, const Node *n);                   /* a root's or leaf's data */
const KernelProf *jit_profile(JitProgram *p, int *n);
double jit_compile_seconds(JitProgram *p);
size_t jit_peak_bytes(JitProgram *p);
void  jit_free(JitProgram *p);

/* ------------------------------------------------------------------- c.c */

/* Ahead-of-time C (`nndc emit-c`, spec 10).  g: the model built with
 * training = 0 (the forward pass computes its outputs, loss and metrics);
 * tg: NULL, or the model built with training = 1 after pass_autodiff and
 * pass_optim (adds <m>_state and <m>_train_step); weights: NULL, or
 * [g->nparams] param values embedded as <m>_weights.  Both graphs are lowered
 * by lower_program exactly as for the JIT.  On success sets *header and
 * *source to malloc'd text (the caller frees both) and returns 0; -1 after
 * reporting. */
int c_emit(Diag *d, const Graph *g, const Graph *tg, float *const *weights, char **header, char **source);
/* The C identifier <m> of a model name: "h1.W" -> "h1_W", "2d" -> "m2d". */
char *c_model_ident(Arena *a, const char *name);

#endif
