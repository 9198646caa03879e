/* codegen.h - from the tensor graph to native code: kir.h (kernel IR),
 * lower.c (graph -> kernels), llvm.c (kernels -> LLVM IR -> ORC LLJIT),
 * c.c (kernels -> C99 source); and to other runtimes: onnx.c (the graph as
 * an ONNX model).  The runtime runs a JitProgram over one arena. */
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
/* The same with several train steps (spec 8): tgs[k] the graph of step k + 1
 * (graph_use_step, pass_autodiff, pass_optim); <m>_state holds every step's
 * optimizer state and a counter step_<name> per step, and each step is
 * <m>_train_step_<name>, drawing its noise with rng_step_seed(seed, k). */
int c_emit_steps(Diag *d, const Graph *g, const Graph *const *tgs, int ntg, float *const *weights, char **header,
                 char **source);
/* The C identifier <m> of a model name: "h1.W" -> "h1_W", "2d" -> "m2d". */
char *c_model_ident(Arena *a, const char *name);

/* ---------------------------------------------------------------- onnx.c */

/* A symbolic dimension that an export keeps symbolic: its name (the
 * dim_param), its value in the exported graph, and the same model built
 * with it at twice that value (the dims that change are the ones that
 * depend on it). */
typedef struct OnnxSym {
  const char *name;
  int64_t value;
  const Graph *alt;
} OnnxSym;

/* `nndc export` (spec 9).  g: the model built with training = 0 and no
 * pass run; its outputs become an ONNX model (opset 17, IR version 8): the
 * inputs and outputs named as in the .nnd, params[i] (the values of
 * g->params[i], those the outputs need) as initializers, each of
 * syms[0..nsyms) symbolic.  On success sets *buf (malloc'd, the caller
 * frees) and *len and returns 0; -1 after reporting, at its line, every op
 * ONNX cannot express and anything that ties the graph to a symbol's value. */
int onnx_export(Diag *d, const Graph *g, const OnnxSym *syms, int nsyms, float *const *params, uint8_t **buf,
                size_t *len);

#endif
