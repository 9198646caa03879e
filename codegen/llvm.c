/* llvm.c - kernel IR -> LLVM IR -> native code through ORC LLJIT.
 *
 * Contract: llvm_compile puts the kernels of a program into two modules
 * (kernel_heavy: convolution and pooling windows, optimized with the new
 * pass manager's default<O3>; the rest with LIGHT_PIPELINE, a vectorize-only
 * pipeline at a third of the compile time), for the host CPU, and adds them
 * to one LLJIT instance owned by the returned LlvmJit; kernels are looked up
 * by name.  NNDC_LLVM_PASSES=PIPELINE overrides both pipelines (experiments).  Each kernel is an outer function with the kir.h
 * calling convention that loads its buffer pointers and calls an internal
 * body whose buffer parameters are `noalias`, so the loop vectorizer needs no
 * runtime alias checks.  The body is inlined unless several kernels share it
 * (same code on other buffers: see "shared bodies").  Locals and loop variables are
 * allocas (promoted by SROA).  Floating-point ops carry only the `contract`
 * fast-math flag (FMA), so results match the interpreter to rounding.
 * Transcendentals are inline polynomial code (vmath below) so they vectorize.
 * NNDC_DUMP_LLVM=1 writes the optimized module to stderr (a debugging aid).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include "kir.h"
#include "target.h"

struct LlvmJit {
  LLVMOrcLLJITRef jit;
};

/* Emission state for one module. */
typedef struct Gen {
  LLVMContextRef c;
  LLVMModuleRef m;
  LLVMBuilderRef b;
  LLVMTypeRef f32, f64, i64, i32, i1, ptr;
  const KProgram *p;
  const Kernel *k;
  LLVMValueRef fn;          /* the body function being emitted */
  LLVMValueRef *bufp;       /* [nbufs] base pointer in fn, NULL if unused */
  LLVMValueRef *vars;       /* [k->nvars] allocas */
  LLVMValueRef lo, hi, ctx; /* fn's range and ctx parameters */
  LLVMValueRef math[KU_COUNT]; /* f32 -> f32 helpers for KU_EXP, KU_LOG, KU_LOG1P, KU_TANH, KU_ERF */
  const char *cpu, *feat;   /* the target's CPU and features, for function attributes */
  int heavy;                /* this module holds kernel_heavy kernels (else the others), */
  int from, to;             /* those of rank [from, to) among them */
  struct { int mr, nr, nc; LLVMValueRef fn; } tile[64];  /* micro-kernels made so far */
  int ntile;
} Gen;

static pthread_mutex_t jit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_llvm(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMInitializeNativeAsmParser();
}

/* Reports an LLVM error (and consumes it); returns 1 when there was one. */
static int llvm_failed(Diag *d, LLVMErrorRef e, const char *what) {
  if (!e) return 0;
  char *msg = LLVMGetErrorMessage(e);
  diag_error(d, (Loc){0}, "JIT: %s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return 1;
}

/* ---------------------------------------------------------- small helpers */

static LLVMTypeRef ktype(Gen *g, KType t) {
  switch (t) {
  case KT_F32: return g->f32;
  case KT_F64: return g->f64;
  case KT_I64: return g->i64;
  case KT_BOOL: return g->i1;
  }
  return NULL;
}

static int is_float(KType t) { return t == KT_F32 || t == KT_F64; }

static LLVMValueRef contract(LLVMValueRef v) {
  if (LLVMCanValueUseFastMathFlags(v)) LLVMSetFastMathFlags(v, LLVMFastMathAllowContract);
  return v;
}

/* Calls the overloaded intrinsic `name` on type t with args. */
static LLVMValueRef intrinsic(Gen *g, const char *name, LLVMTypeRef t, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(g->m, id, &t, 1);
  LLVMTypeRef ft = LLVMIntrinsicGetType(g->c, id, &t, 1);
  return LLVMBuildCall2(g->b, ft, f, args, (unsigned)n, "");
}

static LLVMValueRef cf32(Gen *g, double v) { return LLVMConstReal(g->f32, v); }
static LLVMValueRef ci32(Gen *g, int64_t v) { return LLVMConstInt(g->i32, (unsigned long long)v, 1); }

static LLVMValueRef f_add(Gen *g, LLVMValueRef a, LLVMValueRef b) { return contract(LLVMBuildFAdd(g->b, a, b, "")); }
static LLVMValueRef f_sub(Gen *g, LLVMValueRef a, LLVMValueRef b) { return contract(LLVMBuildFSub(g->b, a, b, "")); }
static LLVMValueRef f_mul(Gen *g, LLVMValueRef a, LLVMValueRef b) { return contract(LLVMBuildFMul(g->b, a, b, "")); }
static LLVMValueRef f_div(Gen *g, LLVMValueRef a, LLVMValueRef b) { return contract(LLVMBuildFDiv(g->b, a, b, "")); }

/* Horner: c[0] + x*(c[1] + x*(... c[n-1])) in f32. */
static LLVMValueRef horner(Gen *g, LLVMValueRef x, const double *c, int n) {
  LLVMValueRef r = cf32(g, c[n - 1]);
  for (int i = n - 2; i >= 0; i--) r = f_add(g, f_mul(g, r, x), cf32(g, c[i]));
  return r;
}

static LLVMValueRef fsel(Gen *g, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b, LLVMValueRef t, LLVMValueRef f) {
  return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, p, a, b, ""), t, f, "");
}

static LLVMValueRef fabs_(Gen *g, LLVMValueRef x) { return intrinsic(g, "llvm.fabs", g->f32, &x, 1); }

/* ------------------------------------------------------------------ vmath */

/* Starts an internal always-inline function float name(float); returns it
 * with the builder at its entry and *x its argument. */
static LLVMValueRef math_begin(Gen *g, const char *name, LLVMValueRef *x) {
  LLVMTypeRef ft = LLVMFunctionType(g->f32, &g->f32, 1, 0);
  LLVMValueRef f = LLVMAddFunction(g->m, name, ft);
  LLVMSetLinkage(f, LLVMInternalLinkage);
  unsigned ai = LLVMGetEnumAttributeKindForName("alwaysinline", 12);
  LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->c, ai, 0));
  LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, f, "entry"));
  *x = LLVMGetParam(f, 0);
  return f;
}

/* exp(x): x = n ln2 + r with |r| <= ln2/2 (ln2 split hi/lo, Cody-Waite);
 * exp(r) by a degree-7 Taylor polynomial (truncation < 1e-8 relative),
 * scaled by 2^n built in the exponent bits, as two factors so that n = 128
 * stays finite and results below FLT_MIN round once, into the subnormals.
 * Max error about 1 ulp over the whole range: x > EXP_HI (the largest float
 * whose exp is finite): +inf; x < -104: 0; NaN propagates. */
#define EXP_HI 88.72283172607421875
static LLVMValueRef exp_body(Gen *g, LLVMValueRef x) {
  static const double c[] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040};
  LLVMValueRef xc = fsel(g, LLVMRealOGT, x, cf32(g, EXP_HI), cf32(g, EXP_HI), x);
  xc = fsel(g, LLVMRealOLT, xc, cf32(g, -104), cf32(g, -104), xc);
  LLVMValueRef t = f_mul(g, xc, cf32(g, 1.44269504088896341));
  LLVMValueRef n = intrinsic(g, "llvm.rint", g->f32, &t, 1);
  LLVMValueRef r = f_sub(g, xc, f_mul(g, n, cf32(g, 0.693145751953125)));
  r = f_sub(g, r, f_mul(g, n, cf32(g, 1.428606765330187045e-06)));
  LLVMValueRef p = horner(g, r, c, 8);
  LLVMValueRef ni = LLVMBuildFPToSI(g->b, n, g->i32, "");
  /* 2^n = 2^h 2^(n-h), both normal for n in [-150, 128] */
  LLVMValueRef h = LLVMBuildAShr(g->b, ni, ci32(g, 1), "");
  LLVMValueRef s1 = LLVMBuildBitCast(g->b, LLVMBuildShl(g->b, LLVMBuildAdd(g->b, h, ci32(g, 127), ""), ci32(g, 23), ""), g->f32, "");
  LLVMValueRef s2 = LLVMBuildBitCast(g->b, LLVMBuildShl(g->b, LLVMBuildAdd(g->b, LLVMBuildSub(g->b, ni, h, ""), ci32(g, 127), ""), ci32(g, 23), ""), g->f32, "");
  LLVMValueRef y = f_mul(g, f_mul(g, p, s1), s2);
  y = fsel(g, LLVMRealOGT, x, cf32(g, EXP_HI), cf32(g, INFINITY), y);
  y = fsel(g, LLVMRealOLT, x, cf32(g, -104), cf32(g, 0), y);
  return fsel(g, LLVMRealUNO, x, x, x, y);
}

/* log(x): x = m 2^e with m in [sqrt(.5), sqrt(2)); with f = m - 1 (exact)
 * and s = f/(2 + f), log(m) = f - (f^2/2 - s (f^2/2 + R(s^2))), R the
 * minimax polynomial of fdlibm's logf (|error| < 2^-25.7), so the only
 * large terms are exact.  Max error 1 ulp; denormals are scaled first;
 * x = 0: -inf; x < 0: NaN; +inf: +inf. */
static LLVMValueRef log_body(Gen *g, LLVMValueRef x) {
  static const double lg[] = {0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841};
  LLVMValueRef small = LLVMBuildFCmp(g->b, LLVMRealOLT, x, cf32(g, 1.17549435e-38), "");
  LLVMValueRef xs = LLVMBuildSelect(g->b, small, f_mul(g, x, cf32(g, 16777216.0)), x, "");
  LLVMValueRef bits = LLVMBuildBitCast(g->b, xs, g->i32, "");
  /* subtract the bits of sqrt(.5) so the mantissa lands in [sqrt(.5), sqrt(2)) */
  LLVMValueRef off = LLVMBuildSub(g->b, bits, ci32(g, 0x3f3504f3), "");
  LLVMValueRef e = LLVMBuildAShr(g->b, off, ci32(g, 23), "");
  LLVMValueRef mb = LLVMBuildSub(g->b, bits, LLVMBuildShl(g->b, e, ci32(g, 23), ""), "");
  LLVMValueRef m = LLVMBuildBitCast(g->b, mb, g->f32, "");
  LLVMValueRef ef = LLVMBuildSIToFP(g->b, e, g->f32, "");
  ef = LLVMBuildSelect(g->b, small, f_sub(g, ef, cf32(g, 24)), ef, "");
  LLVMValueRef f = f_sub(g, m, cf32(g, 1));
  LLVMValueRef s = f_div(g, f, f_add(g, cf32(g, 2), f));
  LLVMValueRef z = f_mul(g, s, s), w = f_mul(g, z, z);
  LLVMValueRef r = f_add(g, f_mul(g, z, f_add(g, cf32(g, lg[0]), f_mul(g, w, cf32(g, lg[2])))),
                         f_mul(g, w, f_add(g, cf32(g, lg[1]), f_mul(g, w, cf32(g, lg[3])))));
  LLVMValueRef hfsq = f_mul(g, cf32(g, 0.5), f_mul(g, f, f));
  /* ln2 split: the high part has 16 significant bits, so e*hi is exact */
  LLVMValueRef y = f_add(g, f_mul(g, s, f_add(g, hfsq, r)), f_mul(g, ef, cf32(g, 1.428606765330187045e-06)));
  y = f_add(g, f_add(g, f_sub(g, y, hfsq), f), f_mul(g, ef, cf32(g, 0.693145751953125)));
  y = fsel(g, LLVMRealOEQ, x, cf32(g, 0), cf32(g, -INFINITY), y);
  y = fsel(g, LLVMRealOLT, x, cf32(g, 0), cf32(g, NAN), y);
  y = fsel(g, LLVMRealOEQ, x, cf32(g, INFINITY), x, y);
  return fsel(g, LLVMRealUNO, x, x, x, y);
}

/* log1p(x) = log(u) + c/u, u = 1 + x rounded and c = x - (u - 1) (or
 * 1 - (u - x) when u > 2, where x is the larger term) its rounding error, so
 * small x keep every digit (u = 1: x exactly).  Max error about 2 ulp;
 * x = -1: -inf; below: NaN; +inf: +inf; NaN propagates. */
static LLVMValueRef log1p_body(Gen *g, LLVMValueRef x) {
  LLVMValueRef one = cf32(g, 1), u = f_add(g, one, x);
  LLVMValueRef c = fsel(g, LLVMRealOGT, u, cf32(g, 2), f_sub(g, one, f_sub(g, u, x)), f_sub(g, x, f_sub(g, u, one)));
  LLVMValueRef y = f_add(g, log_body(g, u), f_div(g, c, u));
  y = fsel(g, LLVMRealOEQ, x, cf32(g, INFINITY), x, y);
  return fsel(g, LLVMRealOEQ, x, cf32(g, -1), cf32(g, -INFINITY), y);
}

/* tanh(x): |x| < 0.3: odd Taylor series to x^13 (truncation < 1e-10, no
 * cancellation); else 1 - 2/(exp(2|x|)+1) with the sign of x (the
 * subtraction from 1 costs at most ~2 ulp(1)/0.29 < 5e-7 relative); large
 * |x| gives exp = inf and so +-1 exactly.  Max error 2 ulp (measured at
 * 0.3 by tests/test_math.c). */
static LLVMValueRef tanh_body(Gen *g, LLVMValueRef x) {
  static const double c[] = {1.0, -1.0 / 3, 2.0 / 15, -17.0 / 315, 62.0 / 2835, -1382.0 / 155925,
                             21844.0 / 6081075};
  LLVMValueRef ax = fabs_(g, x);
  LLVMValueRef ps = f_mul(g, x, horner(g, f_mul(g, x, x), c, 7));
  LLVMValueRef e = exp_body(g, f_mul(g, ax, cf32(g, 2)));
  LLVMValueRef t = f_sub(g, cf32(g, 1), f_div(g, cf32(g, 2), f_add(g, e, cf32(g, 1))));
  LLVMValueRef args[2] = {t, x};
  LLVMValueRef big = intrinsic(g, "llvm.copysign", g->f32, args, 2);
  return fsel(g, LLVMRealOLT, ax, cf32(g, 0.3), ps, big);
}

/* erf(x): |x| < 1: x + x P(x^2), P a least-squares fit of erf(x)/x - 1 on
 * Chebyshev nodes (relative error 1.4e-9); 1 <= |x| < 4: 1 - exp(-x^2)
 * Q(t), t = 1/(1 + |x|/2), Q a fit of erfc(x) exp(x^2) (relative error
 * 4e-10; the rounding of x^2 costs erfc at most 1e-8 absolute), with the
 * sign of x; beyond: +-1 (erf(3.92) rounds to 1).  Max error 1 ulp. */
static LLVMValueRef erf_body(Gen *g, LLVMValueRef x) {
  static const double p[] = {0.1283791665100529, -0.3761262884332524, 0.11283612428246279, -0.026854808537287167,
                             0.005190053577974918, -0.0008024354130074518, 7.898210212256562e-05};
  static const double q[] = {-0.00015454404812370164, 0.2849170167817817, 0.2596666813353009, 0.34784374245809474,
                             -0.10361797194665336, 0.5631671102830716, -0.4710499255479977, 0.11928063002293258};
  LLVMValueRef ax = fabs_(g, x);
  LLVMValueRef small = f_add(g, x, f_mul(g, x, horner(g, f_mul(g, x, x), p, 7)));
  LLVMValueRef t = f_div(g, cf32(g, 1), f_add(g, cf32(g, 1), f_mul(g, ax, cf32(g, 0.5))));
  LLVMValueRef e = exp_body(g, LLVMBuildFNeg(g->b, f_mul(g, ax, ax), ""));
  LLVMValueRef y = f_sub(g, cf32(g, 1), f_mul(g, e, horner(g, t, q, 8)));
  LLVMValueRef args[2] = {fsel(g, LLVMRealOGE, ax, cf32(g, 4), cf32(g, 1), y), x};
  LLVMValueRef big = intrinsic(g, "llvm.copysign", g->f32, args, 2);
  return fsel(g, LLVMRealOLT, ax, cf32(g, 1), small, big);
}

static void make_math(Gen *g) {
  static const struct { int op; const char *name; LLVMValueRef (*body)(Gen *, LLVMValueRef); } fns[] = {
    {KU_EXP, "nndc_expf", exp_body}, {KU_LOG, "nndc_logf", log_body}, {KU_LOG1P, "nndc_log1pf", log1p_body},
    {KU_TANH, "nndc_tanhf", tanh_body}, {KU_ERF, "nndc_erff", erf_body},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    LLVMValueRef x, f = math_begin(g, fns[i].name, &x);
    LLVMBuildRet(g->b, fns[i].body(g, x));
    g->math[fns[i].op] = f;
  }
}

/* ------------------------------------------------------------ expressions */

static LLVMValueRef expr(Gen *g, const KExpr *e);

static LLVMValueRef elem_ptr(Gen *g, int buf, const KExpr *idx) {
  LLVMTypeRef et = g->p->bufs[buf].dt == DT_F32 ? g->f32 : g->i32;
  LLVMValueRef i = expr(g, idx);
  return LLVMBuildInBoundsGEP2(g->b, et, g->bufp[buf], &i, 1, "");
}

static LLVMValueRef ex_load(Gen *g, const KExpr *e) {
  int f = g->p->bufs[e->buf].dt == DT_F32;
  LLVMValueRef v = LLVMBuildLoad2(g->b, f ? g->f32 : g->i32, elem_ptr(g, e->buf, e->a[0]), "");
  LLVMSetAlignment(v, 4);
  return f ? v : LLVMBuildSExt(g->b, v, g->i64, "");
}

static LLVMValueRef ex_un(Gen *g, const KExpr *e) {
  LLVMValueRef x = expr(g, e->a[0]);
  LLVMTypeRef t = ktype(g, e->t);
  switch (e->op) {
  case KU_NEG: return is_float(e->t) ? LLVMBuildFNeg(g->b, x, "") : LLVMBuildNeg(g->b, x, "");
  case KU_ABS:
    if (is_float(e->t)) return intrinsic(g, "llvm.fabs", t, &x, 1);
    return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, x, LLVMConstInt(t, 0, 0), ""),
                           LLVMBuildNeg(g->b, x, ""), x, "");
  case KU_SQRT: return intrinsic(g, "llvm.sqrt", t, &x, 1);
  case KU_FLOOR: return intrinsic(g, "llvm.floor", t, &x, 1);
  case KU_NOT: return LLVMBuildNot(g->b, x, "");
  case KU_EXP: case KU_LOG: case KU_LOG1P: case KU_TANH: case KU_ERF:
    if (e->t == KT_F32) {
      LLVMTypeRef ft = LLVMFunctionType(g->f32, &g->f32, 1, 0);
      return LLVMBuildCall2(g->b, ft, g->math[e->op], &x, 1, "");
    } else {
      static const char *const f64name[] = {[KU_EXP] = "llvm.exp", [KU_LOG] = "llvm.log"};
      NNDC_ASSERT(e->op == KU_EXP || e->op == KU_LOG);
      return intrinsic(g, f64name[e->op], t, &x, 1);
    }
  default: NNDC_ASSERT(0);
  }
  return NULL;
}

static LLVMValueRef ex_cmp(Gen *g, int op, KType t, LLVMValueRef x, LLVMValueRef y) {
  static const LLVMRealPredicate fp[] = {LLVMRealOLT, LLVMRealOLE, LLVMRealOEQ, LLVMRealUNE, LLVMRealOGT, LLVMRealOGE};
  static const LLVMIntPredicate ip[] = {LLVMIntSLT, LLVMIntSLE, LLVMIntEQ, LLVMIntNE, LLVMIntSGT, LLVMIntSGE};
  if (is_float(t)) return LLVMBuildFCmp(g->b, fp[op - KB_LT], x, y, "");
  return LLVMBuildICmp(g->b, ip[op - KB_LT], x, y, "");
}

static LLVMValueRef ex_bin(Gen *g, const KExpr *e) {
  KType t = e->a[0]->t;
  LLVMValueRef x = expr(g, e->a[0]), y = expr(g, e->a[1]);
  int f = is_float(t);
  switch (e->op) {
  case KB_ADD: return f ? f_add(g, x, y) : LLVMBuildAdd(g->b, x, y, "");
  case KB_SUB: return f ? f_sub(g, x, y) : LLVMBuildSub(g->b, x, y, "");
  case KB_MUL: return f ? f_mul(g, x, y) : LLVMBuildMul(g->b, x, y, "");
  case KB_DIV: return f ? f_div(g, x, y) : LLVMBuildSDiv(g->b, x, y, "");
  case KB_REM: return f ? LLVMBuildFRem(g->b, x, y, "") : LLVMBuildSRem(g->b, x, y, "");
  case KB_MIN: return LLVMBuildSelect(g->b, ex_cmp(g, KB_LT, t, x, y), x, y, "");
  case KB_MAX: return LLVMBuildSelect(g->b, ex_cmp(g, KB_GT, t, x, y), x, y, "");
  case KB_POW: {
    LLVMValueRef a[2] = {x, y};
    return intrinsic(g, "llvm.pow", ktype(g, t), a, 2);
  }
  case KB_LT: case KB_LE: case KB_EQ: case KB_NE: case KB_GT: case KB_GE: return ex_cmp(g, e->op, t, x, y);
  case KB_AND: return LLVMBuildAnd(g->b, x, y, "");
  case KB_OR: return LLVMBuildOr(g->b, x, y, "");
  case KB_XOR: return LLVMBuildXor(g->b, x, y, "");
  case KB_SHR: return LLVMBuildLShr(g->b, x, y, "");
  default: NNDC_ASSERT(0);
  }
  return NULL;
}

static LLVMValueRef ex_cast(Gen *g, const KExpr *e) {
  KType from = e->a[0]->t, to = e->t;
  LLVMValueRef x = expr(g, e->a[0]);
  LLVMTypeRef t = ktype(g, to);
  if (from == to) return x;
  if (from == KT_BOOL) return is_float(to) ? LLVMBuildUIToFP(g->b, x, t, "") : LLVMBuildZExt(g->b, x, t, "");
  if (from == KT_I64) return is_float(to) ? LLVMBuildSIToFP(g->b, x, t, "") : LLVMBuildICmp(g->b, LLVMIntNE, x, LLVMConstInt(g->i64, 0, 0), "");
  if (to == KT_I64) return LLVMBuildFPToSI(g->b, x, t, "");
  if (to == KT_BOOL) return LLVMBuildFCmp(g->b, LLVMRealUNE, x, LLVMConstReal(ktype(g, from), 0), "");
  return from == KT_F32 ? LLVMBuildFPExt(g->b, x, t, "") : LLVMBuildFPTrunc(g->b, x, t, "");
}

static LLVMValueRef expr(Gen *g, const KExpr *e) {
  switch (e->kind) {
  case KX_CONST:
    if (is_float(e->t)) return LLVMConstReal(ktype(g, e->t), e->f);
    return LLVMConstInt(ktype(g, e->t), (unsigned long long)e->i, 1);
  case KX_VAR: return LLVMBuildLoad2(g->b, ktype(g, e->t), g->vars[e->var], "");
  case KX_CTX: {
    LLVMValueRef i = LLVMConstInt(g->i64, (unsigned long long)e->i, 0);
    LLVMValueRef v = LLVMBuildLoad2(g->b, g->i64, LLVMBuildInBoundsGEP2(g->b, g->i64, g->ctx, &i, 1, ""), "");
    return e->t == KT_F64 ? LLVMBuildBitCast(g->b, v, g->f64, "") : v;   /* a hyperparameter */
  }
  case KX_LOAD: return ex_load(g, e);
  case KX_UN: return ex_un(g, e);
  case KX_BIN: return ex_bin(g, e);
  case KX_SELECT: {
    LLVMValueRef c = expr(g, e->a[0]), x = expr(g, e->a[1]), y = expr(g, e->a[2]);
    return LLVMBuildSelect(g->b, c, x, y, "");
  }
  case KX_CAST: return ex_cast(g, e);
  }
  return NULL;
}

/* ------------------------------------------------------------- statements */

static void stmts(Gen *g, const KStmt *s);

static void st_loop(Gen *g, const KStmt *s) {
  LLVMValueRef lo = s->flags & KL_PARALLEL ? g->lo : expr(g, s->lo);
  LLVMValueRef hi = s->flags & KL_PARALLEL ? g->hi : expr(g, s->hi);
  LLVMBasicBlockRef cond = LLVMAppendBasicBlockInContext(g->c, g->fn, "cond");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(g->c, g->fn, "body");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(g->c, g->fn, "done");
  LLVMBuildStore(g->b, lo, g->vars[s->var]);
  LLVMBuildBr(g->b, cond);
  LLVMPositionBuilderAtEnd(g->b, cond);
  LLVMValueRef v = LLVMBuildLoad2(g->b, g->i64, g->vars[s->var], "");
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, v, hi, ""), body, done);
  LLVMPositionBuilderAtEnd(g->b, body);
  stmts(g, s->body);
  v = LLVMBuildLoad2(g->b, g->i64, g->vars[s->var], "");
  LLVMValueRef nv = LLVMBuildNSWAdd(g->b, v, LLVMConstInt(g->i64, (unsigned long long)s->step, 0), "");
  LLVMBuildStore(g->b, nv, g->vars[s->var]);
  LLVMBuildBr(g->b, cond);
  LLVMPositionBuilderAtEnd(g->b, done);
}

static void st_store(Gen *g, const KStmt *s) {
  LLVMValueRef v = expr(g, s->val);
  if (g->p->bufs[s->buf].dt == DT_I32) v = LLVMBuildTrunc(g->b, v, g->i32, "");
  LLVMValueRef st = LLVMBuildStore(g->b, v, elem_ptr(g, s->buf, s->idx));
  LLVMSetAlignment(st, 4);
}

static void st_ctx_store(Gen *g, int slot, LLVMValueRef v) {
  LLVMValueRef i = LLVMConstInt(g->i64, (unsigned long long)slot, 0);
  LLVMBuildStore(g->b, v, LLVMBuildInBoundsGEP2(g->b, g->i64, g->ctx, &i, 1, ""));
}

/* ------------------------------------------------------- micro-kernels */

static void add_fn_attr(Gen *g, LLVMValueRef f, const char *k, const char *v);
static void add_enum_attr(Gen *g, LLVMValueRef f, unsigned idx, const char *name);
static void target_attrs(Gen *g, LLVMValueRef f, const char *cpu, const char *feat);

static LLVMValueRef i64c(Gen *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }

/* &p[i] for a float pointer p and an i64 index i. */
static LLVMValueRef fptr(Gen *g, LLVMValueRef p, LLVMValueRef i) {
  return LLVMBuildInBoundsGEP2(g->b, g->f32, p, &i, 1, "");
}

/* The micro-kernel of KS_TILE for (mr, nr, nc), in explicit target vectors:
 * void tile(A, ars, acs, B, brs, C, crs, klen, accum) with mr x nr/VW
 * vector accumulators carried through the k loop, an A broadcast and nr/VW
 * B vector loads per step.  One function per shape, shared by every GEMM
 * of the module (kept out of line: it is the bulk of a product's code). */
static LLVMValueRef tile_fn(Gen *g, int mr, int nr, int nc) {
  for (int i = 0; i < g->ntile; i++)
    if (g->tile[i].mr == mr && g->tile[i].nr == nr && g->tile[i].nc == nc) return g->tile[i].fn;
  NNDC_ASSERT(g->ntile < 64 && mr <= 8 && nr <= 64);
  int vw = target_vector_width((TargetKind)g->p->target), nv = nr / vw;
  LLVMTypeRef vt = LLVMVectorType(g->f32, (unsigned)vw);
  LLVMTypeRef pt[9] = {g->ptr, g->i64, g->i64, g->ptr, g->i64, g->ptr, g->i64, g->i64, g->i1};
  char name[64];
  snprintf(name, sizeof name, "nndc_tile_%dx%d_%d", mr, nr, nc);
  LLVMValueRef f = LLVMAddFunction(g->m, name, LLVMFunctionType(LLVMVoidTypeInContext(g->c), pt, 9, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  add_enum_attr(g, f, LLVMAttributeFunctionIndex, "noinline");
  add_enum_attr(g, f, LLVMAttributeFunctionIndex, "nounwind");
  target_attrs(g, f, g->cpu, g->feat);
  add_enum_attr(g, f, 1, "noalias");
  add_enum_attr(g, f, 4, "noalias");
  add_enum_attr(g, f, 6, "noalias");
  g->tile[g->ntile].mr = mr, g->tile[g->ntile].nr = nr, g->tile[g->ntile].nc = nc, g->tile[g->ntile].fn = f;
  g->ntile++;
  LLVMBuilderRef saved = g->b;
  g->b = LLVMCreateBuilderInContext(g->c);
  LLVMValueRef A = LLVMGetParam(f, 0), ars = LLVMGetParam(f, 1), acs = LLVMGetParam(f, 2);
  LLVMValueRef B = LLVMGetParam(f, 3), brs = LLVMGetParam(f, 4), C = LLVMGetParam(f, 5), crs = LLVMGetParam(f, 6);
  LLVMValueRef klen = LLVMGetParam(f, 7), accum = LLVMGetParam(f, 8);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(g->c, f, "entry");
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(g->c, f, "k");
  LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(g->c, f, "store");
  LLVMPositionBuilderAtEnd(g->b, entry);
  LLVMValueRef init[8][8], acc[8][8], next[8][8], zero = LLVMConstNull(vt);
  for (int r = 0; r < mr; r++) {
    LLVMValueRef row = fptr(g, C, LLVMBuildMul(g->b, i64c(g, r), crs, ""));
    for (int v = 0; v < nv; v++) {
      LLVMValueRef cv;
      if ((v + 1) * vw <= nc) {
        cv = LLVMBuildLoad2(g->b, vt, fptr(g, row, i64c(g, v * vw)), "");
        LLVMSetAlignment(cv, 4);
      } else {
        cv = zero;
        for (int c = v * vw; c < nc; c++) {
          LLVMValueRef x = LLVMBuildLoad2(g->b, g->f32, fptr(g, row, i64c(g, c)), "");
          LLVMSetAlignment(x, 4);
          cv = LLVMBuildInsertElement(g->b, cv, x, LLVMConstInt(g->i32, (unsigned)(c - v * vw), 0), "");
        }
      }
      init[r][v] = LLVMBuildSelect(g->b, accum, cv, zero, "");
    }
  }
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, klen, i64c(g, 0), ""), loop, exit);
  LLVMPositionBuilderAtEnd(g->b, loop);
  LLVMValueRef k = LLVMBuildPhi(g->b, g->i64, "");
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) acc[r][v] = LLVMBuildPhi(g->b, vt, "");
  LLVMValueRef bv[8], brow = fptr(g, B, LLVMBuildMul(g->b, k, brs, ""));
  for (int v = 0; v < nv; v++) {
    bv[v] = LLVMBuildLoad2(g->b, vt, fptr(g, brow, i64c(g, v * vw)), "");
    LLVMSetAlignment(bv[v], 4);
  }
  LLVMValueRef acol = fptr(g, A, LLVMBuildMul(g->b, k, acs, ""));
  LLVMValueRef *mask = calloc((size_t)vw, sizeof *mask);
  for (int i = 0; i < vw; i++) mask[i] = LLVMConstInt(g->i32, 0, 0);
  LLVMValueRef splat = LLVMConstVector(mask, (unsigned)vw);
  free(mask);
  for (int r = 0; r < mr; r++) {
    LLVMValueRef a = LLVMBuildLoad2(g->b, g->f32, fptr(g, acol, LLVMBuildMul(g->b, i64c(g, r), ars, "")), "");
    LLVMSetAlignment(a, 4);
    LLVMValueRef av = LLVMBuildInsertElement(g->b, LLVMGetUndef(vt), a, LLVMConstInt(g->i32, 0, 0), "");
    av = LLVMBuildShuffleVector(g->b, av, LLVMGetUndef(vt), splat, "");
    for (int v = 0; v < nv; v++) next[r][v] = f_add(g, acc[r][v], f_mul(g, av, bv[v]));
  }
  LLVMValueRef k1 = LLVMBuildNSWAdd(g->b, k, i64c(g, 1), "");
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, k1, klen, ""), loop, exit);
  LLVMValueRef kin[2] = {i64c(g, 0), k1};
  LLVMBasicBlockRef from[2] = {entry, loop};
  LLVMAddIncoming(k, kin, from, 2);
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) {
      LLVMValueRef in[2] = {init[r][v], next[r][v]};
      LLVMAddIncoming(acc[r][v], in, from, 2);
    }
  LLVMPositionBuilderAtEnd(g->b, exit);
  LLVMValueRef outs[8][8];  /* the phis first: they lead the block */
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) {
      LLVMValueRef in[2] = {init[r][v], next[r][v]};
      outs[r][v] = LLVMBuildPhi(g->b, vt, "");
      LLVMAddIncoming(outs[r][v], in, from, 2);
    }
  for (int r = 0; r < mr; r++) {
    LLVMValueRef row = fptr(g, C, LLVMBuildMul(g->b, i64c(g, r), crs, ""));
    for (int v = 0; v < nv; v++) {
      LLVMValueRef out = outs[r][v];
      if ((v + 1) * vw <= nc) {
        LLVMSetAlignment(LLVMBuildStore(g->b, out, fptr(g, row, i64c(g, v * vw))), 4);
        continue;
      }
      for (int c = v * vw; c < nc; c++) {
        LLVMValueRef x = LLVMBuildExtractElement(g->b, out, LLVMConstInt(g->i32, (unsigned)(c - v * vw), 0), "");
        LLVMSetAlignment(LLVMBuildStore(g->b, x, fptr(g, row, i64c(g, c))), 4);
      }
    }
  }
  LLVMBuildRetVoid(g->b);
  LLVMDisposeBuilder(g->b);
  g->b = saved;
  return f;
}

static void st_tile(Gen *g, const KStmt *s) {
  const KTile *t = s->tile;
  LLVMValueRef f = tile_fn(g, t->mr, t->nr, t->nc);
  LLVMValueRef args[9] = {
    fptr(g, g->bufp[t->abuf], expr(g, t->a0)), i64c(g, t->ars), i64c(g, t->acs),
    fptr(g, g->bufp[t->bbuf], expr(g, t->b0)), i64c(g, t->brs),
    fptr(g, g->bufp[t->cbuf], expr(g, t->c0)), i64c(g, t->crs),
    expr(g, t->klen), expr(g, t->accum)};
  LLVMBuildCall2(g->b, LLVMGlobalGetValueType(f), f, args, 9, "");
}

static void stmts(Gen *g, const KStmt *s) {
  for (; s; s = s->next) {
    switch (s->kind) {
    case KS_TILE: st_tile(g, s); break;
    case KS_LOOP: st_loop(g, s); break;
    case KS_STORE: st_store(g, s); break;
    case KS_LET: case KS_SET: LLVMBuildStore(g->b, expr(g, s->val), g->vars[s->var]); break;
    case KS_IF: {
      LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(g->c, g->fn, "then");
      LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(g->c, g->fn, "endif");
      LLVMBuildCondBr(g->b, expr(g, s->cond), then, done);
      LLVMPositionBuilderAtEnd(g->b, then);
      stmts(g, s->body);
      LLVMBuildBr(g->b, done);
      LLVMPositionBuilderAtEnd(g->b, done);
      break;
    }
    case KS_ERROR:
      st_ctx_store(g, KCTX_ERR, LLVMConstInt(g->i64, 1, 0));
      st_ctx_store(g, KCTX_ERRVAL, expr(g, s->val));
      break;
    }
  }
}

/* ---------------------------------------------------------------- kernels */

static void add_fn_attr(Gen *g, LLVMValueRef f, const char *k, const char *v) {
  LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(g->c, k, (unsigned)strlen(k), v, (unsigned)strlen(v)));
}

static void add_enum_attr(Gen *g, LLVMValueRef f, unsigned idx, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(f, idx, LLVMCreateEnumAttribute(g->c, kind, 0));
}

static void target_attrs(Gen *g, LLVMValueRef f, const char *cpu, const char *feat) {
  add_fn_attr(g, f, "target-cpu", cpu);
  add_fn_attr(g, f, "target-features", feat);
  if (g->p->target == TARGET_AVX512) add_fn_attr(g, f, "prefer-vector-width", "512");
}

/* The body function: (noalias buffer pointers..., lo, hi, ctx). */
static LLVMValueRef emit_body(Gen *g, const Kernel *k, const int *ub, int nub, const char *cpu, const char *feat) {
  LLVMTypeRef *pt = calloc((size_t)nub + 3, sizeof *pt);
  for (int i = 0; i < nub; i++) pt[i] = g->ptr;
  pt[nub] = g->i64, pt[nub + 1] = g->i64, pt[nub + 2] = g->ptr;
  char *name = malloc(strlen(k->name) + 8);
  sprintf(name, "%s.body", k->name);
  LLVMValueRef f = LLVMAddFunction(g->m, name, LLVMFunctionType(LLVMVoidTypeInContext(g->c), pt, (unsigned)nub + 3, 0));
  free(name);
  free(pt);
  LLVMSetLinkage(f, LLVMInternalLinkage);
  add_enum_attr(g, f, LLVMAttributeFunctionIndex, "alwaysinline");
  add_enum_attr(g, f, LLVMAttributeFunctionIndex, "nounwind");
  target_attrs(g, f, cpu, feat);
  for (int i = 0; i < nub; i++) {
    add_enum_attr(g, f, (unsigned)i + 1, "noalias");
    g->bufp[ub[i]] = LLVMGetParam(f, (unsigned)i);
  }
  add_enum_attr(g, f, (unsigned)nub + 3, "noalias");
  g->fn = f;
  g->k = k;
  g->lo = LLVMGetParam(f, (unsigned)nub);
  g->hi = LLVMGetParam(f, (unsigned)nub + 1);
  g->ctx = LLVMGetParam(f, (unsigned)nub + 2);
  LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, f, "entry"));
  g->vars = calloc((size_t)k->nvars + 1, sizeof *g->vars);
  for (int v = 0; v < k->nvars; v++) g->vars[v] = LLVMBuildAlloca(g->b, ktype(g, k->vtype[v]), "");
  stmts(g, k->body);
  LLVMBuildRetVoid(g->b);
  free(g->vars);
  return f;
}

/* --------------------------------------------------------- shared bodies */

/* Kernels that differ only in which buffers they touch (the 28 steps of an
 * unrolled RNN, the same layer's GEMM in forward and backward) share one
 * body: a kernel's signature is its statements serialized with buffers
 * numbered in order of first use, plus those buffers' types.  Equal
 * signatures give the same body, which is emitted once and called from each
 * kernel's entry point with that kernel's buffers. */
typedef struct Sig {
  unsigned char *s;
  size_t n, cap;
  int *slot;       /* [nbufs] canonical number of a buffer in this kernel, -1 */
  int *ub, nub;    /* the kernel's buffers in canonical order */
} Sig;

static void sig_put(Sig *g, const void *x, size_t n) {
  if (g->n + n > g->cap) {
    g->cap = (g->n + n) * 2 + 256;
    g->s = realloc(g->s, g->cap);
    if (!g->s) nndc_fatal(__FILE__, __LINE__, "out of memory");
  }
  memcpy(g->s + g->n, x, n);
  g->n += n;
}

static void sig_int(Sig *g, int64_t v) { sig_put(g, &v, sizeof v); }

static void sig_buf(Sig *g, int b) {
  if (g->slot[b] < 0) {
    g->slot[b] = g->nub;
    g->ub[g->nub++] = b;
  }
  sig_int(g, g->slot[b]);
}

static void sig_expr(Sig *g, const KExpr *e) {
  if (!e) {
    sig_int(g, -1);
    return;
  }
  sig_int(g, e->kind);
  sig_int(g, e->t);
  switch (e->kind) {
  case KX_CONST: sig_put(g, &e->f, sizeof e->f); sig_int(g, e->i); break;
  case KX_VAR: sig_int(g, e->var); break;
  case KX_CTX: sig_int(g, e->i); break;
  case KX_LOAD: sig_buf(g, e->buf); break;
  case KX_UN: case KX_BIN: sig_int(g, e->op); break;
  case KX_SELECT: case KX_CAST: break;
  }
  for (int i = 0; i < 3; i++) sig_expr(g, e->a[i]);
}

static void sig_stmts(Sig *g, const KStmt *s) {
  for (; s; s = s->next) {
    sig_int(g, s->kind);
    sig_int(g, s->var);
    sig_int(g, s->flags);
    sig_int(g, s->step);
    if (s->kind == KS_STORE) sig_buf(g, s->buf);
    if (s->kind == KS_TILE) {
      const KTile *t = s->tile;
      int64_t v[7] = {t->mr, t->nr, t->nc, t->ars, t->acs, t->brs, t->crs};
      sig_put(g, v, sizeof v);
      sig_buf(g, t->abuf), sig_buf(g, t->bbuf), sig_buf(g, t->cbuf);
      sig_expr(g, t->a0), sig_expr(g, t->b0), sig_expr(g, t->c0), sig_expr(g, t->klen), sig_expr(g, t->accum);
    }
    sig_expr(g, s->lo);
    sig_expr(g, s->hi);
    sig_expr(g, s->idx);
    sig_expr(g, s->val);
    sig_expr(g, s->cond);
    sig_stmts(g, s->body);
  }
  sig_int(g, -2);
}

/* Fills g with k's signature and canonical buffer order. */
static void kernel_sig(Sig *g, const KProgram *p, const Kernel *k) {
  for (int i = 0; i < g->nub; i++) g->slot[g->ub[i]] = -1;
  g->n = 0;
  g->nub = 0;
  sig_int(g, k->nvars);
  for (int v = 0; v < k->nvars; v++) sig_int(g, k->vtype[v]);
  sig_stmts(g, k->body);
  for (int i = 0; i < g->nub; i++) sig_int(g, p->bufs[g->ub[i]].dt);
}

typedef struct BodyTab {
  struct { uint64_t h; unsigned char *s; size_t n; LLVMValueRef fn; int uses; } *e;
  size_t cap;
} BodyTab;

static uint64_t fnv(const unsigned char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
  return h;
}

/* The slot of signature sg in t: its body, or an empty slot to fill. */
static size_t body_find(BodyTab *t, const Sig *sg, uint64_t h) {
  size_t i = h & (t->cap - 1);
  while (t->e[i].s && !(t->e[i].h == h && t->e[i].n == sg->n && !memcmp(t->e[i].s, sg->s, sg->n)))
    i = (i + 1) & (t->cap - 1);
  return i;
}

/* The entry point: void name(void **bufs, i64 lo, i64 hi, i64 *ctx). */
static void emit_kernel(Gen *g, const Kernel *k, Sig *sg, BodyTab *t, const char *cpu, const char *feat) {
  kernel_sig(sg, g->p, k);
  uint64_t h = fnv(sg->s, sg->n);
  size_t slot = body_find(t, sg, h);
  LLVMValueRef body = t->e[slot].fn;
  if (!body) {
    for (int i = 0; i < g->p->nbufs; i++) g->bufp[i] = NULL;
    body = emit_body(g, k, sg->ub, sg->nub, cpu, feat);
    t->e[slot].h = h;
    t->e[slot].n = sg->n;
    t->e[slot].s = malloc(sg->n);
    if (!t->e[slot].s) nndc_fatal(__FILE__, __LINE__, "out of memory");
    memcpy(t->e[slot].s, sg->s, sg->n);
    t->e[slot].fn = body;
  } else if (t->e[slot].uses == 1) {
    /* shared: one copy of the code, called from every user */
    unsigned ai = LLVMGetEnumAttributeKindForName("alwaysinline", 12);
    LLVMRemoveEnumAttributeAtIndex(body, LLVMAttributeFunctionIndex, ai);
    add_enum_attr(g, body, LLVMAttributeFunctionIndex, "noinline");
  }
  t->e[slot].uses++;
  int nub = sg->nub;
  LLVMTypeRef pt[4] = {g->ptr, g->i64, g->i64, g->ptr};
  LLVMValueRef f = LLVMAddFunction(g->m, k->name, LLVMFunctionType(LLVMVoidTypeInContext(g->c), pt, 4, 0));
  target_attrs(g, f, cpu, feat);
  LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, f, "entry"));
  LLVMValueRef *args = calloc((size_t)nub + 3, sizeof *args);
  for (int i = 0; i < nub; i++) {
    LLVMValueRef idx = LLVMConstInt(g->i64, (unsigned long long)sg->ub[i], 0);
    args[i] = LLVMBuildLoad2(g->b, g->ptr, LLVMBuildInBoundsGEP2(g->b, g->ptr, LLVMGetParam(f, 0), &idx, 1, ""), "");
  }
  for (int i = 0; i < 3; i++) args[nub + i] = LLVMGetParam(f, (unsigned)i + 1);
  LLVMBuildCall2(g->b, LLVMGlobalGetValueType(body), body, args, (unsigned)nub + 3, "");
  LLVMBuildRetVoid(g->b);
  free(args);
}

/* Kernels whose loops have small constant trip counts (the windows of
 * convolutions and pooling) need O3's full unrolling and SLP vectorizer;
 * the others (elementwise, reductions, products on the shared micro-kernel,
 * updates) are as fast from a vectorize-only pipeline at a third of the
 * compile time.  Each set is a module of its own. */
/* ops.def's heavy column: window loops (convolution, pooling) gain from
 * the full O3 pipeline; the rest compile faster with LIGHT_PIPELINE. */
static int kernel_heavy(const Kernel *k) { return op_info[k->node->op].heavy; }

static const char LIGHT_PIPELINE[] =
  "always-inline,function(sroa,early-cse,simplifycfg,instcombine<no-verify-fixpoint>,loop-simplify,lcssa,"
  "loop-mssa(loop-rotate,licm),indvars,loop-vectorize,instcombine<no-verify-fixpoint>,simplifycfg)";

static int count_kernels(const KProgram *p, int heavy) {
  int n = 0;
  for (int i = 0; i < p->nkernels; i++) n += kernel_heavy(p->kernels[i]) == heavy;
  return n;
}

static void emit_kernels(Gen *g, const char *cpu, const char *feat) {
  const KProgram *p = g->p;
  Sig sg = {0};
  sg.slot = malloc(((size_t)p->nbufs + 1) * sizeof *sg.slot);
  sg.ub = malloc(((size_t)p->nbufs + 1) * sizeof *sg.ub);
  if (!sg.slot || !sg.ub) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < p->nbufs; i++) sg.slot[i] = -1;
  BodyTab t = {0};
  t.cap = 16;
  while (t.cap < 2 * (size_t)p->nkernels) t.cap *= 2;
  t.e = calloc(t.cap, sizeof *t.e);
  if (!t.e) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0, rank = 0; i < p->nkernels; i++) {
    if (kernel_heavy(p->kernels[i]) != g->heavy) continue;
    if (rank >= g->from && rank < g->to) emit_kernel(g, p->kernels[i], &sg, &t, cpu, feat);
    rank++;
  }
  for (size_t i = 0; i < t.cap; i++) free(t.e[i].s);
  free(t.e);
  free(sg.s);
  free(sg.slot);
  free(sg.ub);
}

/* ---------------------------------------------------------------- compile */

/* The target machine of program p's target (target.h). */
static LLVMTargetMachineRef target_machine(Diag *d, const KProgram *p, char **triple) {
  char *err = NULL;
  LLVMTargetRef t;
  *triple = LLVMGetDefaultTargetTriple();
  if (LLVMGetTargetFromTriple(*triple, &t, &err)) {
    diag_error(d, (Loc){0}, "JIT: no target for %s: %s", *triple, err);
    LLVMDisposeMessage(err);
    return NULL;
  }
  char *cpu, *feat;
  target_llvm_cpu((TargetKind)p->target, &cpu, &feat);
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(t, *triple, cpu, feat, LLVMCodeGenLevelAggressive,
                                                    LLVMRelocPIC, LLVMCodeModelJITDefault);
  free(cpu);
  free(feat);
  return tm;
}

static void gen_types(Gen *g) {
  g->f32 = LLVMFloatTypeInContext(g->c);
  g->f64 = LLVMDoubleTypeInContext(g->c);
  g->i64 = LLVMInt64TypeInContext(g->c);
  g->i32 = LLVMInt32TypeInContext(g->c);
  g->i1 = LLVMInt1TypeInContext(g->c);
  g->ptr = LLVMPointerTypeInContext(g->c, 0);
}

/* Builds and optimizes the module of p in context c. */
static LLVMModuleRef build_module(Diag *d, LLVMContextRef c, const KProgram *p, int heavy, int from, int to) {
  Gen g = {.c = c, .p = p, .heavy = heavy, .from = from, .to = to};
  gen_types(&g);
  g.m = LLVMModuleCreateWithNameInContext("nndc", c);
  g.b = LLVMCreateBuilderInContext(c);
  g.bufp = calloc((size_t)p->nbufs + 1, sizeof *g.bufp);
  char *triple;
  LLVMTargetMachineRef tm = target_machine(d, p, &triple);
  if (!tm) {
    LLVMDisposeMessage(triple);
    return NULL;
  }
  LLVMSetTarget(g.m, triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(g.m, td);
  char *cpu, *feat;
  target_llvm_cpu((TargetKind)p->target, &cpu, &feat);
  make_math(&g);
  g.cpu = cpu, g.feat = feat;
  emit_kernels(&g, cpu, feat);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  const char *pipeline = getenv("NNDC_LLVM_PASSES");  /* for experiments: another pass pipeline */
  LLVMErrorRef e = LLVMRunPasses(g.m, pipeline && *pipeline ? pipeline : heavy ? "default<O3>" : LIGHT_PIPELINE, tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (getenv("NNDC_DUMP_LLVM")) {
    char *s = LLVMPrintModuleToString(g.m);
    fputs(s, stderr);
    LLVMDisposeMessage(s);
  }
  free(cpu);
  free(feat);
  LLVMDisposeTargetData(td);
  LLVMDisposeTargetMachine(tm);
  LLVMDisposeMessage(triple);
  LLVMDisposeBuilder(g.b);
  free(g.bufp);
  if (llvm_failed(d, e, "optimizing")) {
    LLVMDisposeModule(g.m);
    return NULL;
  }
  return g.m;
}

/* One module of a program, optimized and compiled to object code on a
 * thread of its own (own context and target machine). */
typedef struct Part {
  const KProgram *p;
  int heavy, from, to;        /* build_module's selection */
  LLVMMemoryBufferRef obj;    /* the object code; NULL after an error in d */
  Diag d;
} Part;

static void *compile_part(void *arg) {
  Part *pt = arg;
  LLVMContextRef c = LLVMContextCreate();
  LLVMModuleRef m = build_module(&pt->d, c, pt->p, pt->heavy, pt->from, pt->to);
  char *triple = NULL, *err = NULL;
  LLVMTargetMachineRef tm = m ? target_machine(&pt->d, pt->p, &triple) : NULL;
  if (tm && LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &err, &pt->obj)) {
    diag_error(&pt->d, (Loc){0}, "code generation failed: %s", err ? err : "?");
    pt->obj = NULL;
  }
  if (err) LLVMDisposeMessage(err);
  if (tm) LLVMDisposeTargetMachine(tm);
  if (triple) LLVMDisposeMessage(triple);
  if (m) LLVMDisposeModule(m);
  LLVMContextDispose(c);
  return NULL;
}

/* Builds and compiles the modules of p to object code (part[0..*np)), on
 * threads of their own: each class of kernels in chunks of at least 8, at
 * most one per CPU.  Returns 0, or -1 after reporting in d (no object left). */
static int compile_parts(Diag *d, const KProgram *p, Part *part, int *np_out) {
  long ncpu = getenv("NNDC_COMPILE_THREADS") ? atol(getenv("NNDC_COMPILE_THREADS")) : sysconf(_SC_NPROCESSORS_ONLN);
  int nt = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu, np = 0;
  for (int heavy = 0; heavy < 2; heavy++) {
    int n = count_kernels(p, heavy), k = (n + 7) / 8;
    if (k > nt) k = nt;
    for (int c = 0; c < k; c++) part[np++] = (Part){.p = p, .heavy = heavy, .from = n * c / k, .to = n * (c + 1) / k};
  }
  pthread_t th[16];
  int started[16] = {0};
  for (int i = 0; i < np; i++) {
    diag_init(&part[i].d);
    if (i > 0) started[i] = pthread_create(&th[i], NULL, compile_part, &part[i]) == 0;
  }
  for (int i = 0; i < np; i++)
    if (!started[i]) compile_part(&part[i]);  /* the first part, or one no thread was made for */
  for (int i = 1; i < np; i++)
    if (started[i]) pthread_join(th[i], NULL);
  int bad = 0;
  for (int i = 0; i < np; i++) {
    if (!part[i].obj && !bad) {
      bad = 1;
      diag_error(d, (Loc){0}, "JIT: %s", part[i].d.buf ? part[i].d.buf : "code generation failed");
    }
    diag_free(&part[i].d);
  }
  if (bad)
    for (int i = 0; i < np; i++)
      if (part[i].obj) LLVMDisposeMemoryBuffer(part[i].obj);
  *np_out = bad ? 0 : np;
  return bad ? -1 : 0;
}

static LlvmJit *compile_locked(Diag *d, const KProgram *p, KernelFn *fns) {
  Part part[16];
  int np;
  if (compile_parts(d, p, part, &np)) return NULL;
  LLVMOrcLLJITRef jit;
  int bad = llvm_failed(d, LLVMOrcCreateLLJIT(&jit, LLVMOrcCreateLLJITBuilder()), "creating LLJIT");
  LlvmJit *j = NULL;
  LLVMOrcJITDylibRef jd = NULL;
  if (!bad) {
    j = calloc(1, sizeof *j);
    j->jit = jit;
    jd = LLVMOrcLLJITGetMainJITDylib(jit);
    LLVMOrcDefinitionGeneratorRef dg;
    bad = llvm_failed(d, LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&dg, LLVMOrcLLJITGetGlobalPrefix(jit), NULL, NULL),
                      "process symbols");
    if (!bad) LLVMOrcJITDylibAddGenerator(jd, dg);
  }
  for (int i = 0; i < np; i++) {
    if (bad) {
      LLVMDisposeMemoryBuffer(part[i].obj);
      continue;
    }
    if (llvm_failed(d, LLVMOrcLLJITAddObjectFile(jit, jd, part[i].obj), "adding object code")) bad = 1;
  }
  if (bad) {
    llvm_free(j);
    return NULL;
  }
  for (int i = 0; i < p->nkernels; i++) {
    LLVMOrcExecutorAddress a;
    if (llvm_failed(d, LLVMOrcLLJITLookup(jit, &a, p->kernels[i]->name), "lookup")) {
      llvm_free(j);
      return NULL;
    }
    fns[i] = (KernelFn)(uintptr_t)a;
  }
  return j;
}

LlvmJit *llvm_compile(Diag *d, const KProgram *p, KernelFn *fns) {
  if (!target_host_runs((TargetKind)p->target)) {
    diag_error(d, (Loc){0}, "JIT: this host cannot execute code for target '%s' (it runs up to '%s'); emit-c writes C for any target",
               target_name((TargetKind)p->target), target_name(target_host()));
    return NULL;
  }
  pthread_once(&init_once, init_llvm);
  pthread_mutex_lock(&jit_lock);
  LlvmJit *j = compile_locked(d, p, fns);
  pthread_mutex_unlock(&jit_lock);
  return j;
}

size_t llvm_compile_object(Diag *d, const KProgram *p) {
  pthread_once(&init_once, init_llvm);
  Part part[16];
  int np;
  if (compile_parts(d, p, part, &np)) return 0;
  size_t bytes = 0;
  for (int i = 0; i < np; i++) {
    bytes += LLVMGetBufferSize(part[i].obj);
    LLVMDisposeMemoryBuffer(part[i].obj);
  }
  return bytes;
}

void llvm_free(LlvmJit *j) {
  if (!j) return;
  pthread_mutex_lock(&jit_lock);
  LLVMOrcDisposeLLJIT(j->jit);
  pthread_mutex_unlock(&jit_lock);
  free(j);
}
