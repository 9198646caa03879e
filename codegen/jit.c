/* jit.c - the JIT'ed program: lowering (lower.c) + native code (llvm.c) +
 * the runner that calls the kernels over one arena.
 *
 * Contract: jit_compile lowers the nodes the roots need, compiles every
 * kernel into one LLJIT and allocates one zeroed, 64-byte aligned arena for
 * all intermediates and CONST buffers (filled once).  jit_bind points a leaf
 * at caller memory (borrowed; updates write params and states in place).
 * jit_run calls the kernels in order; a kernel with a parallel loop of
 * extent `par` is split into at most `threads` contiguous chunks of [0, par)
 * run by OpenMP threads (each element is computed by the same code whatever
 * the split, so results do not depend on the thread count).  Errors that
 * kernels flag in ctx[] (a label out of range) are reported at the node.
 * The program's hyperparameters (KProgram.hyper: optimizer options) start at
 * their compiled values; jit_set_hyper changes them for the next runs.
 * jit_clone makes another instance of the same code (its own arena,
 * bindings and hyperparameters) without compiling: trials of a sweep.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "codegen.h"
#include "kir.h"

struct JitProgram {
  Arena arena;         /* owns the kernel IR */
  KProgram *kp;
  KernelFn *fns;       /* [nkernels] */
  LlvmJit *lj;
  void **bufs;         /* [nbufs] base address of each buffer */
  char *mem;           /* the arena block (kp->arena_bytes) */
  int threads;         /* > 0 */
  int profile;
  KernelProf *prof;    /* [nkernels] when profiling */
  double compile_s;    /* lowering + LLVM */
  int64_t part;        /* ctx[KCTX_PART] (jit_set_part) */
  void (*after)(void *user, int kernel);   /* jit_set_hook */
  void *user;
  double *hyper;       /* [kp->nhyper] current hyperparameter values */
  int64_t *ctx;        /* [KCTX_COUNT + kp->nhyper] the kernels' context */
  int borrowed;        /* a jit_clone: arena, kp, fns and lj are its origin's */
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) nndc_fatal(__FILE__, __LINE__, "out of memory");
  return p;
}

/* Allocates the arena block and points every non-leaf buffer into it. */
static void alloc_arena(JitProgram *p) {
  KProgram *kp = p->kp;
  size_t n = (kp->arena_bytes + 63) & ~(size_t)63;
  p->mem = aligned_alloc(64, n ? n : 64);
  if (!p->mem) nndc_fatal(__FILE__, __LINE__, "out of memory");
  memset(p->mem, 0, n ? n : 64);
  lower_fill_consts(kp, p->mem);
  p->bufs = xcalloc((size_t)kp->nbufs, sizeof *p->bufs);
  for (int b = 0; b < kp->nbufs; b++)
    if (kp->bufs[b].kind != KB_LEAF) p->bufs[b] = p->mem + kp->bufs[b].offset;
}

/* Hyperparameters from src (a clone's origin), else the compiled values. */
static void init_hyper(JitProgram *p, const double *src) {
  int n = p->kp->nhyper;
  p->hyper = xcalloc((size_t)n, sizeof *p->hyper);
  p->ctx = xcalloc((size_t)(KCTX_COUNT + n), sizeof *p->ctx);
  for (int k = 0; k < n; k++) p->hyper[k] = src ? src[k] : p->kp->hyper[k].value;
}

static void init_profile(JitProgram *p) {
  p->prof = xcalloc((size_t)p->kp->nkernels, sizeof *p->prof);
  for (int i = 0; i < p->kp->nkernels; i++) {
    const Kernel *k = p->kp->kernels[i];
    p->prof[i].name = k->opname;
    p->prof[i].loc = k->node->loc;
    p->prof[i].flops = k->flops;
  }
}

JitProgram *jit_compile(Diag *d, Graph *g, Node *const *roots, int nroots, int threads, int profile) {
  double t0 = now();
  JitProgram *p = xcalloc(1, sizeof *p);
  arena_init(&p->arena);
  p->threads = threads > 0 ? threads : omp_get_max_threads();
  p->profile = profile;
  p->kp = codegen_lower(d, &p->arena, g, roots, nroots);  /* simplify, fuse, lower, plan */
  if (!p->kp) {
    jit_free(p);
    return NULL;
  }
  p->fns = xcalloc((size_t)p->kp->nkernels, sizeof *p->fns);
  p->lj = llvm_compile(d, p->kp, p->fns);
  if (!p->lj) {
    jit_free(p);
    return NULL;
  }
  alloc_arena(p);
  init_profile(p);
  init_hyper(p, NULL);
  p->compile_s = now() - t0;
  return p;
}

JitProgram *jit_clone(const JitProgram *o, int threads) {
  JitProgram *p = xcalloc(1, sizeof *p);
  p->kp = o->kp;
  p->fns = o->fns;
  p->lj = o->lj;
  p->borrowed = 1;
  p->threads = threads > 0 ? threads : o->threads;
  alloc_arena(p);
  init_profile(p);
  init_hyper(p, o->hyper);
  return p;
}

int jit_set_hyper(JitProgram *p, const Node *upd, const char *name, double v) {
  int set = 0;
  for (int pass = 0; pass < 2; pass++)   /* check every slot, then set */
    for (int k = 0; k < p->kp->nhyper; k++) {
      const HyperSlot *h = &p->kp->hyper[k];
      if ((upd && h->node_id != upd->id) || strcmp(h->name, name)) continue;
      if (!pass && h->structural && (h->value == 0) != (v == 0)) return -1;
      if (pass) p->hyper[k] = v, set++;
    }
  return set;
}

void jit_set_part(JitProgram *p, int64_t part) { p->part = part; }

void jit_set_hook(JitProgram *p, void (*after)(void *user, int kernel), void *user) {
  p->after = after;
  p->user = user;
}

static int writes_buf(const KStmt *s, int b) {
  for (; s; s = s->next) {
    if (s->kind == KS_STORE && s->buf == b) return 1;
    if (s->kind == KS_TILE && s->tile->cbuf == b) return 1;
    if ((s->kind == KS_LOOP || s->kind == KS_IF) && writes_buf(s->body, b)) return 1;
  }
  return 0;
}

int jit_last_writer(JitProgram *p, const Node *n) {
  int b = p->kp->node_buf[n->id], last = -1;
  for (int i = 0; b >= 0 && i < p->kp->nkernels; i++)
    if (writes_buf(p->kp->kernels[i]->body, b)) last = i;
  return last;
}

void jit_bind(JitProgram *p, const Node *leaf, void *data) {
  int b = p->kp->node_buf[leaf->id];
  if (b >= 0 && p->kp->bufs[b].kind == KB_LEAF) p->bufs[b] = data;
}

/* Below this many elements of parallel work a kernel runs on one thread. */
enum { MIN_PAR_WORK = 16384 };

static void run_kernel(JitProgram *p, int i, int64_t *ctx) {
  const Kernel *k = p->kp->kernels[i];
  KernelFn fn = p->fns[i];
  int64_t par = k->par;
  int nt = p->threads;
  if (par < nt) nt = (int)par;
  if (par == 0 || nt <= 1 || (k->flops < MIN_PAR_WORK && par < MIN_PAR_WORK)) {
    fn(p->bufs, 0, par ? par : 1, ctx);
    return;
  }
  void **bufs = p->bufs;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
  for (int c = 0; c < nt; c++) fn(bufs, par * c / nt, par * (c + 1) / nt, ctx);
}

int jit_run(JitProgram *p, Diag *d, const RunCtx *c) {
  KProgram *kp = p->kp;
  for (int b = 0; b < kp->nbufs; b++) {
    if (p->bufs[b] || kp->bufs[b].numel == 0) continue;
    const Node *n = kp->bufs[b].node;
    diag_error(d, n->loc, "JIT: %s '%s' is not bound", op_info[n->op].name, n->name ? n->name : "?");
    return -1;
  }
  int64_t *ctx = p->ctx;
  memset(ctx, 0, KCTX_COUNT * sizeof *ctx);
  memcpy(ctx + KCTX_COUNT, p->hyper, (size_t)kp->nhyper * sizeof *p->hyper);  /* f64 bits */
  ctx[KCTX_SEED] = (int64_t)c->seed;
  ctx[KCTX_STEP] = c->step;
  ctx[KCTX_TRAINING] = c->training != 0;
  ctx[KCTX_PART] = p->part;
  for (int i = 0; i < kp->nkernels; i++) {
    double t0 = p->profile ? now() : 0;
    run_kernel(p, i, ctx);
    if (p->profile) {
      p->prof[i].seconds += now() - t0;
      p->prof[i].calls++;
    }
    if (ctx[KCTX_ERR]) {
      const Kernel *k = kp->kernels[i];
      diag_error(d, k->node->loc, k->errfmt ? k->errfmt : "run-time error %lld in kernel (%lld)",
                 (long long)ctx[KCTX_ERRVAL], (long long)k->errarg);
      return -1;
    }
    if (p->after) p->after(p->user, i);
  }
  return 0;
}

void *jit_value(JitProgram *p, const Node *n) {
  int b = p->kp->node_buf[n->id];
  return b >= 0 ? p->bufs[b] : NULL;
}

const KernelProf *jit_profile(JitProgram *p, int *n) {
  *n = p->profile ? p->kp->nkernels : 0;
  return p->profile ? p->prof : NULL;
}

double jit_compile_seconds(JitProgram *p) { return p->compile_s; }
size_t jit_peak_bytes(JitProgram *p) { return p->kp ? p->kp->arena_bytes : 0; }

void jit_free(JitProgram *p) {
  if (!p) return;
  if (!p->borrowed) {
    llvm_free(p->lj);
    free(p->fns);
    arena_free(&p->arena);
  }
  free(p->bufs);
  free(p->mem);
  free(p->prof);
  free(p->hyper);
  free(p->ctx);
  free(p);
}
