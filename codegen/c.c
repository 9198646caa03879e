/* c.c - kernel IR -> C99 source: `nndc emit-c` (spec 10).
 *
 * Contract: c_emit lowers the forward graph (and, with --train, the training
 * step graph) with lower.c, exactly as the JIT does, and prints every kernel
 * of those KPrograms as a static C function with the JIT's calling
 * convention (kir.h), plus the functions of the public header: <m>_forward,
 * <m>_workspace_size and, for training, <m>_train_step and <m>_state_size.
 * The printed code is portable C99 needing only libm; OpenMP is optional
 * (pragmas sit under #ifdef _OPENMP).  It allocates nothing: intermediates
 * live at the planner's offsets in the caller's workspace.
 *
 * Because both backends print one lowered program, they agree by
 * construction; the only differences are libm's exp/log/log1p/tanh/erf
 * versus the JIT's own vector math (both within a few ulp of PyTorch's
 * float32 results: tests/test_math.c).  Kernel IR integers wrap (u64
 * arithmetic), which the dropout hash relies on; C's signed overflow is
 * undefined, so integer arithmetic that can overflow (anything touching
 * xor, shifts, big constants or the run context) is printed through small
 * wrapping helpers.
 *
 * Expressions in the IR are DAGs (the hash reuses subexpressions): a node
 * used twice in one statement is printed once into a `const` temporary.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codegen.h"
#include "kir.h"

/* ------------------------------------------------------------ text buffer */

/* Buf, buf_puts and buf_printf: ir/support/support.h */

static void indent(Buf *b, int depth) {
  for (int i = 0; i < depth; i++) buf_puts(b, "  ");
}

/* ------------------------------------------------------------------ names */

static const char *const keywords[] = {
  "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
  "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return",
  "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void",
  "volatile", "while", "_Bool", "_Complex", "_Imaginary", "bool", "true", "false", NULL,
};

/* Names a kernel body uses besides its buffers. */
static const char *const kernel_names[] = {
  "bufs", "lo", "hi", "ctx", "int64_t", "int32_t", "uint64_t", "size_t", "NULL", "INFINITY", "NAN",
  "expf", "exp", "logf", "log", "log1pf", "log1p", "sqrtf", "sqrt", "tanhf", "tanh", "erff", "erf",
  "floorf", "floor", "fabsf", "fabs", "fminf", "fmin", "fmaxf", "fmax", "powf", "pow", "fmodf", "fmod", "minf_", "maxf_", "mind_", "maxd_",
  "wadd", "wsub", "wmul", "wshr", "imin", "imax", "iabs", NULL,
};

static int listed(const char *const *list, const char *s) {
  for (int i = 0; list[i]; i++)
    if (!strcmp(s, list[i])) return 1;
  return 0;
}

/* A user name as a C identifier (a struct field): "h1.W" -> "h1_W"; bytes
 * that cannot appear in an identifier become '_'; C keywords get a trailing
 * '_' ("int" -> "int_"). */
static char *ident(Arena *a, const char *name) {
  size_t n = strlen(name);
  char *s = arena_alloc(a, n + 3);
  size_t j = 0;
  if (!isalpha((unsigned char)name[0]) && name[0] != '_') s[j++] = 'm';
  for (size_t i = 0; i < n; i++) s[j++] = isalnum((unsigned char)name[i]) ? name[i] : '_';
  s[j] = 0;
  if (listed(keywords, s)) s[j++] = '_', s[j] = 0;
  return s;
}

/* A buffer's local name in a kernel: also clear of the kernel's own names
 * and of v<n>, e<n> (its variables and temporaries). */
static char *local_ident(Arena *a, const char *name) {
  char *s = ident(a, name);
  int clash = listed(kernel_names, s);
  if ((s[0] == 'v' || s[0] == 'e') && s[1]) {
    const char *t = s + 1;
    while (isdigit((unsigned char)*t)) t++;
    clash |= !*t;
  }
  return clash ? arena_printf(a, "%s_", s) : s;
}

static char *upper(Arena *a, const char *s) {
  char *u = arena_strdup(a, s);
  for (char *c = u; *c; c++) *c = (char)toupper((unsigned char)*c);
  return u;
}

char *c_model_ident(Arena *a, const char *name) {
  char *s = ident(a, name && *name ? name : "model");
  /* a model prefix must not start with '_' (reserved at file scope) */
  return s[0] == '_' ? arena_printf(a, "m%s", s) : s;
}

/* ----------------------------------------------------- per-statement map */

/* What the printer knows about one expression node of the statement being
 * printed (expressions are DAGs: the key is the node's address). */
typedef struct Ent {
  const KExpr *e;
  int uses;        /* references from the statement's expressions */
  int temp;        /* -1, or the number of its `const` temporary eN */
  int wrap;        /* -1 unknown; 1 if integer arithmetic in it must wrap */
  int hoisted;     /* its subtree was visited by hoist() */
} Ent;

typedef struct Map {
  Ent *t;
  size_t cap, n;
} Map;

static size_t ptr_hash(const void *p) {
  uint64_t z = (uint64_t)(uintptr_t)p;
  z ^= z >> 33;
  z *= 0xff51afd7ed558ccdull;
  return (size_t)(z ^ (z >> 29));
}

static void map_clear(Map *m) {
  if (m->t) memset(m->t, 0, m->cap * sizeof *m->t);
  m->n = 0;
}

static Ent *map_get(Map *m, const KExpr *e);

static void map_rehash(Map *m) {
  Map old = *m;
  m->cap = m->cap ? 2 * m->cap : 256;
  m->t = calloc(m->cap, sizeof *m->t);
  if (!m->t) nndc_fatal(__FILE__, __LINE__, "out of memory");
  m->n = 0;
  for (size_t i = 0; i < old.cap; i++)
    if (old.t[i].e) *map_get(m, old.t[i].e) = old.t[i];
  free(old.t);
}

/* The entry of e, created on first sight. */
static Ent *map_get(Map *m, const KExpr *e) {
  if (2 * (m->n + 1) > m->cap) map_rehash(m);
  size_t i = ptr_hash(e) & (m->cap - 1);
  while (m->t[i].e && m->t[i].e != e) i = (i + 1) & (m->cap - 1);
  if (!m->t[i].e) {
    m->t[i] = (Ent){e, 0, -1, -1, 0};
    m->n++;
  }
  return &m->t[i];
}

/* ------------------------------------------------------------- a kernel */

enum { H_WADD = 1, H_WSUB = 2, H_WMUL = 4, H_WSHR = 8, H_IMIN = 16, H_IMAX = 32, H_IABS = 64, H_FILL = 128,
       H_FMIN = 256, H_FMAX = 512, H_DMIN = 1024, H_DMAX = 2048, H_HYPER = 4096 };

/* The state of printing one kernel. */
/* What the file must define besides the kernels: the H_* helpers, and the
 * micro-kernel of each KS_TILE shape (mr, nr, nc). */
struct Helpers {
  unsigned bits;
  int par;          /* some kernel has a parallel loop: run_par is needed */
  int ntile;
  int tile[64][3];
};

typedef struct Kp {
  Buf *o;
  const KProgram *p;
  const Kernel *k;
  const char *const *bname;  /* [nbufs] C names of the buffers */
  Map m;
  uint8_t *wrapvar;          /* [nvars] locals holding wrapping integers */
  uint8_t *readvar;          /* [nvars] locals read somewhere */
  uint8_t *bused, *bwritten; /* [nbufs] */
  int usectx, ntemps;
  int top;                   /* printing a whole expression: no outer parentheses */
  struct Helpers *helpers;   /* what the file must define */
} Kp;

static int nontrivial(const KExpr *e) {
  return e->kind != KX_CONST && e->kind != KX_VAR && e->kind != KX_CTX;
}

static int nargs(const KExpr *e) {
  switch (e->kind) {
  case KX_LOAD: case KX_UN: case KX_CAST: return 1;
  case KX_BIN: return 2;
  case KX_SELECT: return 3;
  default: return 0;
  }
}

/* Counts the uses of every node under e; records what the kernel reads. */
static void count(Kp *k, const KExpr *e) {
  Ent *x = map_get(&k->m, e);
  if (x->uses++) return;
  if (e->kind == KX_VAR) k->readvar[e->var] = 1;
  if (e->kind == KX_CTX) k->usectx = 1;
  if (e->kind == KX_LOAD) k->bused[e->buf] = 1;
  for (int i = 0; i < nargs(e); i++) count(k, e->a[i]);
}

static int is_wrap(Kp *k, const KExpr *e) {
  Ent *x = map_get(&k->m, e);
  if (x->wrap >= 0) return x->wrap;
  int w = 0;
  if (e->kind == KX_CTX) w = e->t == KT_I64;
  else if (e->kind == KX_CONST && e->t == KT_I64) w = e->i >= ((int64_t)1 << 31) || e->i < -((int64_t)1 << 31);
  else if (e->kind == KX_VAR) w = k->wrapvar[e->var];
  else if (e->kind == KX_BIN && (e->op == KB_XOR || e->op == KB_SHR)) w = 1;
  else if (e->kind != KX_CAST)   /* a cast to float ends the integer chain */
    for (int i = 0; i < nargs(e) && !w; i++) w = is_wrap(k, e->a[i]);
  x = map_get(&k->m, e);
  x->wrap = w;
  return w;
}

static const char *ctype(KType t) {
  switch (t) {
  case KT_F32: return "float";
  case KT_F64: return "double";
  case KT_I64: return "int64_t";
  default: return "int";
  }
}

/* A float literal that C reads back as the same value. */
static void print_float(Buf *o, double v, int f32) {
  if (isnan(v)) { buf_puts(o, f32 ? "NAN" : "(double)NAN"); return; }
  if (isinf(v)) { buf_puts(o, v > 0 ? (f32 ? "INFINITY" : "(double)INFINITY") : (f32 ? "(-INFINITY)" : "(-(double)INFINITY)")); return; }
  char s[64];
  snprintf(s, sizeof s, f32 ? "%.9g" : "%.17g", f32 ? (double)(float)v : v);
  if (!strpbrk(s, ".e")) strcat(s, ".0");
  buf_puts(o, s);
  if (f32) buf_puts(o, "f");
}

static void print_int(Buf *o, int64_t v) {
  if (v >= -((int64_t)1 << 31) && v < ((int64_t)1 << 31)) buf_printf(o, v < 0 ? "(%lld)" : "%lld", (long long)v);
  else buf_printf(o, "(int64_t)0x%016llxull", (unsigned long long)v);
}

static void print_expr(Kp *k, const KExpr *e);
static void print_top(Kp *k, const KExpr *e);

static void call1(Kp *k, const char *fn, const KExpr *a) {
  buf_printf(k->o, "%s(", fn);
  print_top(k, a);
  buf_puts(k->o, ")");
}

static void call2(Kp *k, const char *fn, const KExpr *a, const KExpr *b) {
  buf_printf(k->o, "%s(", fn);
  print_top(k, a);
  buf_puts(k->o, ", ");
  print_top(k, b);
  buf_puts(k->o, ")");
}

static void infix(Kp *k, const char *op, const KExpr *a, const KExpr *b) {
  int top = k->top;
  k->top = 0;
  if (!top) buf_puts(k->o, "(");
  print_expr(k, a);
  buf_printf(k->o, " %s ", op);
  print_expr(k, b);
  if (!top) buf_puts(k->o, ")");
}

/* Prints e as a whole statement part (index, right-hand side). */
static void print_top(Kp *k, const KExpr *e) {
  k->top = 1;
  print_expr(k, e);
  k->top = 0;
}

static void print_un(Kp *k, const KExpr *e) {
  static const char *const f32[] = {NULL, "fabsf", "sqrtf", "expf", "logf", "tanhf", "erff", "floorf", "log1pf"};
  static const char *const f64[] = {NULL, "fabs", "sqrt", "exp", "log", "tanh", "erf", "floor", "log1p"};
  const KExpr *a = e->a[0];
  if (e->op == KU_NOT) { call1(k, "!", a); return; }
  if (e->t == KT_I64) {
    if (e->op == KU_NEG && is_wrap(k, e)) { k->helpers->bits |= H_WSUB; buf_puts(k->o, "wsub(0, "); print_expr(k, a); buf_puts(k->o, ")"); }
    else if (e->op == KU_NEG) call1(k, "-", a);
    else if (e->op == KU_ABS) { k->helpers->bits |= H_IABS; call1(k, "iabs", a); }
    else print_expr(k, a);   /* sqrt, exp... of an integer: not produced by lower.c */
    return;
  }
  if (e->op == KU_NEG) { call1(k, "-", a); return; }
  NNDC_ASSERT(e->op > KU_NEG && e->op < KU_NOT);
  call1(k, e->t == KT_F32 ? f32[e->op] : f64[e->op], a);
}

static void print_int_bin(Kp *k, const KExpr *e) {
  static const char *const wfn[] = {"wadd", "wsub", "wmul"};
  static const unsigned wh[] = {H_WADD, H_WSUB, H_WMUL};
  const KExpr *a = e->a[0], *b = e->a[1];
  switch (e->op) {
  case KB_ADD: case KB_SUB: case KB_MUL:
    if (is_wrap(k, e)) {
      k->helpers->bits |= wh[e->op];
      call2(k, wfn[e->op], a, b);
    } else infix(k, e->op == KB_ADD ? "+" : e->op == KB_SUB ? "-" : "*", a, b);
    return;
  case KB_DIV: infix(k, "/", a, b); return;
  case KB_REM: infix(k, "%", a, b); return;
  case KB_MIN: k->helpers->bits |= H_IMIN; call2(k, "imin", a, b); return;
  case KB_MAX: k->helpers->bits |= H_IMAX; call2(k, "imax", a, b); return;
  case KB_XOR: infix(k, "^", a, b); return;
  case KB_SHR: k->helpers->bits |= H_WSHR; call2(k, "wshr", a, b); return;
  default: NNDC_ASSERT(0 && "integer op");
  }
}

static void print_bin(Kp *k, const KExpr *e) {
  static const char *const cmp[] = {"<", "<=", "==", "!=", ">", ">="};
  const KExpr *a = e->a[0], *b = e->a[1];
  int f32 = a->t == KT_F32;
  if (e->op >= KB_LT && e->op <= KB_GE) { infix(k, cmp[e->op - KB_LT], a, b); return; }
  if (e->op == KB_AND) { infix(k, "&&", a, b); return; }
  if (e->op == KB_OR) { infix(k, "||", a, b); return; }
  if (a->t == KT_I64 || a->t == KT_BOOL) { print_int_bin(k, e); return; }
  switch (e->op) {
  case KB_ADD: infix(k, "+", a, b); return;
  case KB_SUB: infix(k, "-", a, b); return;
  case KB_MUL: infix(k, "*", a, b); return;
  case KB_DIV: infix(k, "/", a, b); return;
  case KB_REM: call2(k, f32 ? "fmodf" : "fmod", a, b); return;
  case KB_MIN: k->helpers->bits |= f32 ? H_FMIN : H_DMIN; call2(k, f32 ? "minf_" : "mind_", a, b); return;
  case KB_MAX: k->helpers->bits |= f32 ? H_FMAX : H_DMAX; call2(k, f32 ? "maxf_" : "maxd_", a, b); return;
  case KB_POW: call2(k, f32 ? "powf" : "pow", a, b); return;
  default: NNDC_ASSERT(0 && "float op");
  }
}

static void print_expr(Kp *k, const KExpr *e) {
  Ent *x = map_get(&k->m, e);
  if (!(e->kind == KX_BIN && x->temp < 0)) k->top = 0;   /* only infix uses it */
  if (x->temp >= 0) {
    buf_printf(k->o, "e%d", x->temp);
    return;
  }
  static const char *const slot[] = {"CTX_SEED", "CTX_STEP", "CTX_TRAINING", "CTX_ERR", "CTX_ERRVAL", "CTX_PART"};
  switch (e->kind) {
  case KX_CONST:
    if (e->t == KT_F32 || e->t == KT_F64) print_float(k->o, e->f, e->t == KT_F32);
    else print_int(k->o, e->i);
    return;
  case KX_VAR: buf_printf(k->o, "v%d", e->var); return;
  case KX_CTX:
    if (e->t == KT_F64) {   /* hyperparameter slot e->i - KCTX_COUNT */
      k->helpers->bits |= H_HYPER;
      buf_printf(k->o, "hyper_(ctx, %lld)", (long long)(e->i - KCTX_COUNT));
      return;
    }
    NNDC_ASSERT(e->i >= 0 && e->i < KCTX_COUNT);
    buf_printf(k->o, "ctx[%s]", slot[e->i]);
    return;
  case KX_LOAD:
    if (k->p->bufs[e->buf].dt == DT_I32) buf_puts(k->o, "(int64_t)");
    buf_printf(k->o, "%s[", k->bname[e->buf]);
    print_top(k, e->a[0]);
    buf_puts(k->o, "]");
    return;
  case KX_UN: print_un(k, e); return;
  case KX_BIN: print_bin(k, e); return;
  case KX_SELECT:
    buf_puts(k->o, "(");
    print_expr(k, e->a[0]);
    buf_puts(k->o, " ? ");
    print_expr(k, e->a[1]);
    buf_puts(k->o, " : ");
    print_expr(k, e->a[2]);
    buf_puts(k->o, ")");
    return;
  case KX_CAST:
    if (e->t == KT_BOOL) {
      buf_puts(k->o, "(");
      print_expr(k, e->a[0]);
      buf_puts(k->o, " != 0)");
    } else {
      buf_printf(k->o, "(%s)", ctype(e->t));
      print_expr(k, e->a[0]);
    }
    return;
  }
}

/* Prints a `const` temporary for every node used twice, children first. */
static void hoist(Kp *k, const KExpr *e, int depth) {
  Ent *x = map_get(&k->m, e);
  if (x->hoisted) return;
  x->hoisted = 1;
  for (int i = 0; i < nargs(e); i++) hoist(k, e->a[i], depth);
  x = map_get(&k->m, e);
  if (x->uses < 2 || !nontrivial(e)) return;
  int t = k->ntemps++;
  indent(k->o, depth);
  buf_printf(k->o, "const %s e%d = ", ctype(e->t), t);
  print_top(k, e);
  buf_puts(k->o, ";\n");
  map_get(&k->m, e)->temp = t;
}

/* The expressions a statement evaluates itself (not its body). */
static int stmt_exprs(const KStmt *s, const KExpr **e) {
  switch (s->kind) {
  case KS_LOOP: e[0] = s->lo; e[1] = s->hi; return 2;
  case KS_STORE: e[0] = s->idx; e[1] = s->val; return 2;
  case KS_IF: e[0] = s->cond; return 1;
  case KS_TILE:
    e[0] = s->tile->a0, e[1] = s->tile->b0, e[2] = s->tile->c0, e[3] = s->tile->klen, e[4] = s->tile->accum;
    return 5;
  default: e[0] = s->val; return 1;
  }
}

/* Starts a statement: fresh map, use counts, temporaries. */
static void stmt_begin(Kp *k, const KStmt *s, int depth, int print) {
  const KExpr *e[5];
  int n = stmt_exprs(s, e);
  map_clear(&k->m);
  for (int i = 0; i < n; i++) count(k, e[i]);
  if (print)
    for (int i = 0; i < n; i++) hoist(k, e[i], depth);
}

/* Marks the locals that hold wrapping integers (to a fixed point), the
 * locals that are read, and the buffers, context and bounds the kernel uses. */
static int scan(Kp *k, const KStmt *s) {
  int changed = 0;
  for (; s; s = s->next) {
    stmt_begin(k, s, 0, 0);
    if (s->kind == KS_STORE) k->bused[s->buf] = k->bwritten[s->buf] = 1;
    if (s->kind == KS_TILE) {
      k->bused[s->tile->abuf] = k->bused[s->tile->bbuf] = 1;
      k->bused[s->tile->cbuf] = k->bwritten[s->tile->cbuf] = 1;
    }
    if (s->kind == KS_ERROR) k->usectx = 1;
    if ((s->kind == KS_LET || s->kind == KS_SET) && s->val->t == KT_I64 && !k->wrapvar[s->var] &&
        is_wrap(k, s->val))
      k->wrapvar[s->var] = 1, changed = 1;
    if (s->body) changed |= scan(k, s->body);
  }
  return changed;
}

static int has_parallel(const KStmt *s) {
  for (; s; s = s->next)
    if ((s->kind == KS_LOOP && (s->flags & KL_PARALLEL)) || (s->body && has_parallel(s->body))) return 1;
  return 0;
}

static void print_block(Kp *k, const KStmt *s, int depth);

static void print_loop(Kp *k, const KStmt *s, int depth) {
  Buf *o = k->o;
  indent(o, depth);
  if (s->flags & KL_PARALLEL) {
    buf_printf(o, "for (int64_t v%d = lo; v%d < hi; v%d++) {  /* parallel over [0, %lld) */\n", s->var, s->var,
            s->var, (long long)k->k->par);
  } else {
    buf_printf(o, "for (int64_t v%d = ", s->var);
    print_expr(k, s->lo);
    buf_printf(o, "; v%d < ", s->var);
    print_expr(k, s->hi);
    if (s->step == 1) buf_printf(o, "; v%d++) {\n", s->var);
    else buf_printf(o, "; v%d += %lld) {\n", s->var, (long long)s->step);
  }
  print_block(k, s->body, depth + 1);
  indent(o, depth);
  buf_puts(o, "}\n");
}

static void print_stmt(Kp *k, const KStmt *s, int depth) {
  Buf *o = k->o;
  stmt_begin(k, s, depth, 1);
  switch (s->kind) {
  case KS_LOOP: print_loop(k, s, depth); return;
  case KS_STORE:
    indent(o, depth);
    buf_printf(o, "%s[", k->bname[s->buf]);
    print_top(k, s->idx);
    buf_puts(o, k->p->bufs[s->buf].dt == DT_I32 ? "] = (int32_t)" : "] = ");
    if (k->p->bufs[s->buf].dt == DT_I32) print_expr(k, s->val);
    else print_top(k, s->val);
    buf_puts(o, ";\n");
    return;
  case KS_LET:
    indent(o, depth);
    buf_printf(o, "%s v%d = ", ctype(k->k->vtype[s->var]), s->var);
    print_top(k, s->val);
    buf_puts(o, ";\n");
    if (!k->readvar[s->var]) {
      indent(o, depth);
      buf_printf(o, "(void)v%d;\n", s->var);
    }
    return;
  case KS_SET:
    indent(o, depth);
    buf_printf(o, "v%d = ", s->var);
    print_top(k, s->val);
    buf_puts(o, ";\n");
    return;
  case KS_IF:
    indent(o, depth);
    buf_puts(o, "if (");
    print_top(k, s->cond);
    buf_puts(o, ") {\n");
    print_block(k, s->body, depth + 1);
    indent(o, depth);
    buf_puts(o, "}\n");
    return;
  case KS_TILE: {
    const KTile *t = s->tile;
    struct Helpers *h = k->helpers;
    int i = 0;
    while (i < h->ntile && !(h->tile[i][0] == t->mr && h->tile[i][1] == t->nr && h->tile[i][2] == t->nc)) i++;
    if (i == h->ntile) {
      NNDC_ASSERT(h->ntile < 64);
      h->tile[i][0] = t->mr, h->tile[i][1] = t->nr, h->tile[i][2] = t->nc;
      h->ntile++;
    }
    indent(o, depth);
    buf_printf(o, "tile_%dx%d_%d(&%s[", t->mr, t->nr, t->nc, k->bname[t->abuf]);
    print_top(k, t->a0);
    buf_printf(o, "], %lld, %lld, &%s[", (long long)t->ars, (long long)t->acs, k->bname[t->bbuf]);
    print_top(k, t->b0);
    buf_printf(o, "], %lld, &%s[", (long long)t->brs, k->bname[t->cbuf]);
    print_top(k, t->c0);
    buf_printf(o, "], %lld, ", (long long)t->crs);
    print_top(k, t->klen);
    buf_puts(o, ", ");
    print_top(k, t->accum);
    buf_puts(o, ");\n");
    return;
  }
  case KS_ERROR:
    indent(o, depth);
    buf_puts(o, "ctx[CTX_ERR] = 1;\n");
    indent(o, depth);
    buf_puts(o, "ctx[CTX_ERRVAL] = ");
    print_top(k, s->val);
    buf_puts(o, ";\n");
    return;
  }
}

static void print_block(Kp *k, const KStmt *s, int depth) {
  for (; s; s = s->next) print_stmt(k, s, depth);
}

/* "mlp.nnd:12: h = relu(x @ W1 + b1)", safe inside a C comment. */
static void print_source_line(Buf *o, Loc loc) {
  if (!loc.src) {
    buf_puts(o, "(no source line)");
    return;
  }
  const char *slash = strrchr(loc.src->path, '/');
  buf_printf(o, "%s:%d: ", slash ? slash + 1 : loc.src->path, loc.line);
  const char *t = loc.src->text;
  for (int line = 1; line < loc.line && *t; t++)
    if (*t == '\n') line++;
  while (*t == ' ' || *t == '\t') t++;
  const char *end = t;
  while (*end && *end != '\n' && *end != '\r') end++;
  while (end > t && (end[-1] == ' ' || end[-1] == '\t')) end--;
  for (const char *c = t; c < end; c++) {
    if (*c == '*' && c[1] == '/') buf_puts(o, "* ");          /* would end the comment */
    else if (*c == '/' && c[1] == '*') buf_puts(o, "/ ");     /* -Wcomment */
    else if (*c == '?' && c[1] == '?') buf_puts(o, "? ");     /* trigraphs */
    else if (*c == '\\') buf_puts(o, "\\ ");                  /* line splice */
    else if ((unsigned char)*c < 32) buf_puts(o, " ");
    else buf_printf(o, "%c", *c);
  }
}

static void print_shape(Buf *o, const Node *n) {
  char s[256];
  buf_puts(o, shape_str(&n->shape, n->dt, s, sizeof s));
}

static void print_kernel_comment(Buf *o, const KProgram *p, const Kernel *kn, const char *const *bname) {
  const Node *n = kn->node;
  buf_printf(o, "/* %s: ", kn->name);
  print_source_line(o, n->loc);
  int b = p->own_buf[n->id];
  buf_printf(o, "\n *   %s = %s(", b >= 0 ? bname[b] : "?", op_info[n->op].name);
  for (int j = 0; j < n->nin; j++) {
    int ib = p->own_buf[n->in[j]->id];
    buf_printf(o, "%s%s", j ? ", " : "", ib >= 0 ? bname[ib] : "?");
  }
  buf_puts(o, ") : ");
  print_shape(o, n);
  buf_puts(o, " */\n");
}

static void print_kernel(Buf *o, const KProgram *p, const Kernel *kn, const char *prefix,
                         const char *const *bname, struct Helpers *helpers) {
  Kp k = {.o = o, .p = p, .k = kn, .bname = bname, .helpers = helpers};
  k.wrapvar = calloc((size_t)kn->nvars + 1, 1);
  k.readvar = calloc((size_t)kn->nvars + 1, 1);
  k.bused = calloc((size_t)p->nbufs + 1, 1);
  k.bwritten = calloc((size_t)p->nbufs + 1, 1);
  if (!k.wrapvar || !k.readvar || !k.bused || !k.bwritten) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i <= kn->nvars && scan(&k, kn->body); i++) {}
  print_kernel_comment(o, p, kn, bname);
  buf_printf(o, "static void %s_%s(void **bufs, int64_t lo, int64_t hi, int64_t *ctx) {\n", prefix, kn->name);
  for (int b = 0; b < p->nbufs; b++) {
    if (!k.bused[b]) continue;
    const char *t = p->bufs[b].dt == DT_I32 ? "int32_t" : "float";
    buf_printf(o, "  %s%s *%s = bufs[%d];\n", k.bwritten[b] ? "" : "const ", t, bname[b], b);
  }
  if (!has_parallel(kn->body)) buf_puts(o, "  (void)lo;\n  (void)hi;\n");
  if (!k.usectx) buf_puts(o, "  (void)ctx;\n");
  print_block(&k, kn->body, 1);
  buf_puts(o, "}\n\n");
  free(k.m.t);
  free(k.wrapvar);
  free(k.readvar);
  free(k.bused);
  free(k.bwritten);
}

/* ------------------------------------------------------------- a program */

/* One lowered graph and how its buffers are named and bound. */
typedef struct Prog {
  const Graph *g;
  KProgram *kp;
  const char *prefix;   /* "fwd" or "train": prefix of its static functions */
  const char **bname;   /* [nbufs] */
  const char *hyper;    /* a training step's optimizer options: "<m>_hyper" or, with step
                         * blocks, "<m>_hyper_<step>"; NULL for the forward program */
  const char *hyper_m;  /* its macros' prefix: "<M>_HYPER" or "<M>_HYPER_<STEP>" */
} Prog;

static int name_taken(const char **names, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (!strcmp(names[i], s)) return 1;
  return 0;
}

/* Leaves keep their user name (as in the header's fields), intermediates
 * are t<node id>_<op>, constants c<node id>. */
static void name_buffers(Arena *a, Prog *pr) {
  const KProgram *p = pr->kp;
  pr->bname = arena_alloc(a, ((size_t)p->nbufs + 1) * sizeof *pr->bname);
  for (int b = 0; b < p->nbufs; b++) {
    const KBuffer *kb = &p->bufs[b];
    const char *s;
    if (kb->kind == KB_LEAF) s = local_ident(a, kb->node->name ? kb->node->name : "leaf");
    else if (kb->kind == KB_CONST) s = arena_printf(a, "c%d", kb->node->id);
    else s = arena_printf(a, "t%d_%s%s", kb->node->id, op_info[kb->node->op].name, kb->scratch ? "_pack" : "");
    while (name_taken(pr->bname, b, s)) s = arena_printf(a, "%s_%d", s, b);
    pr->bname[b] = s;
  }
}

static void print_program(Buf *o, const Prog *pr, struct Helpers *helpers) {
  const KProgram *p = pr->kp;
  for (int i = 0; i < p->nkernels; i++) print_kernel(o, p, p->kernels[i], pr->prefix, pr->bname, helpers);
  buf_printf(o, "/* Runs the %d kernels in order over the bound buffers. */\n", p->nkernels);
  buf_printf(o, "static void %s_run(void **bufs, int64_t *ctx) {\n", pr->prefix);
  for (int i = 0; i < p->nkernels; i++) {
    const Kernel *kn = p->kernels[i];
    if (kn->par > 0) buf_printf(o, "  run_par(%s_%s, bufs, %lld, ctx);\n", pr->prefix, kn->name, (long long)kn->par);
    if (kn->par > 0) helpers->par = 1;
    else buf_printf(o, "  %s_%s(bufs, 0, 1, ctx);\n", pr->prefix, kn->name);
  }
  if (!p->nkernels) buf_puts(o, "  (void)bufs;\n  (void)ctx;\n");
  buf_puts(o, "}\n\n");
}

/* Binds every buffer of the program: leaves to the caller's structs,
 * intermediates to the workspace, constants filled there. */
static void print_binds(Buf *o, const Prog *pr, Arena *a, struct Helpers *helpers) {
  const KProgram *p = pr->kp;
  buf_printf(o, "  void *bufs[%d];\n", p->nbufs > 0 ? p->nbufs : 1);
  for (int b = 0; b < p->nbufs; b++) {
    const KBuffer *kb = &p->bufs[b];
    const Node *n = kb->node;
    buf_printf(o, "  bufs[%d] = ", b);
    if (kb->kind != KB_LEAF) buf_printf(o, "ws + %zu;", kb->offset);
    else if (n->op == OP_INPUT) buf_printf(o, "(void *)in->%s;", ident(a, n->name));
    else if (n->op == OP_PARAM) buf_printf(o, "p->%s;", ident(a, n->name));
    else buf_printf(o, "s->%s;", ident(a, n->name));
    buf_printf(o, "  /* %s ", pr->bname[b]);
    print_shape(o, n);
    buf_puts(o, " */\n");
  }
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b].kind == KB_CONST) {
      helpers->bits |= H_FILL;
      buf_printf(o, "  fill(bufs[%d], %lld, ", b, (long long)p->bufs[b].numel);
      print_float(o, p->bufs[b].node->a.f[0], 1);
      buf_puts(o, ");\n");
    }
}

/* The nodes copied to <m>_outputs: outputs, loss, metrics. */
/* Outputs, the loss, the named losses and the metrics; a train step's graph
 * (spec 8) gives its own named loss only. */
static int out_nodes(const Graph *g, Node **n, const char **name) {
  int k = 0;
  for (int i = 0; i < g->noutputs; i++) name[k] = g->outputs[i].name, n[k++] = g->outputs[i].node;
  if (g->loss && !g->step) name[k] = "loss", n[k++] = g->loss;
  for (int i = 0; i < g->nlosses; i++)
    if (!g->step || g->losses[i].node == g->loss) name[k] = g->losses[i].name, n[k++] = g->losses[i].node;
  for (int i = 0; i < g->nmetrics; i++) name[k] = g->metrics[i].name, n[k++] = g->metrics[i].node;
  return k;
}

static int out_max(const Graph *g) { return g->noutputs + g->nlosses + g->nmetrics + 1; }

static void print_copy_out(Buf *o, const Prog *pr, Arena *a) {
  int nmax = out_max(pr->g);
  Node **n = arena_alloc(a, (size_t)nmax * sizeof *n);
  const char **name = arena_alloc(a, (size_t)nmax * sizeof *name);
  int k = out_nodes(pr->g, n, name);
  for (int i = 0; i < k; i++) {
    int b = pr->kp->node_buf[n[i]->id];
    NNDC_ASSERT(b >= 0);
    const char *f = ident(a, name[i]);
    buf_printf(o, "  if (out->%s) memcpy(out->%s, bufs[%d], %lld * sizeof *out->%s);\n", f, f, b,
            (long long)shape_numel(&n[i]->shape), f);
  }
}

/* ----------------------------------------------------------- the header */

typedef struct Emit {
  Diag *d;
  Arena *a;
  const char *m, *M;      /* model prefix, upper case */
  const Graph *g, *tg;     /* tg: the training graph, or the union of the steps' (its states) */
  const Graph *const *steps;  /* [nsteps] each train step's graph (spec 8); steps[0] == tg for one */
  int nsteps;
  Prog fwd, *train;        /* train: [nsteps] */
  float *const *weights;
  struct Helpers helpers;
} Emit;

/* Fields of one struct: reports two names that map to one C field. */
static int check_fields(Emit *e, const Named *v, int n, const char *what) {
  const char **seen = arena_alloc(e->a, ((size_t)n + 1) * sizeof *seen);
  for (int i = 0; i < n; i++) {
    seen[i] = ident(e->a, v[i].name);
    for (int j = 0; j < i; j++)
      if (!strcmp(seen[i], seen[j])) {
        diag_error(e->d, v[i].node->loc, "emit-c: %s '%s' and '%s' have the same C name '%s'", what, v[j].name,
                   v[i].name, seen[i]);
        return -1;
      }
  }
  return 0;
}

static void print_fields(Emit *e, Buf *o, const Named *v, int n, const char *type, const char *kind) {
  for (int i = 0; i < n; i++) {
    const Node *x = v[i].node;
    const char *t = x->dt == DT_I32 ? (type[0] == 'c' ? "const int32_t" : "int32_t") : type;
    buf_printf(o, "  %s *%s;", t, ident(e->a, v[i].name));
    buf_printf(o, "  /* %s %s ", kind, v[i].name);
    print_shape(o, x);
    buf_puts(o, " */\n");
  }
}

static void print_size_macros(Emit *e, Buf *o, const Named *v, int n, const char *kind) {
  for (int i = 0; i < n; i++)
    buf_printf(o, "#define %s_%s_%s_SIZE %lld\n", e->M, kind, upper(e->a, ident(e->a, v[i].name)),
            (long long)shape_numel(&v[i].node->shape));
}

static Named *outputs_named(Emit *e, const Graph *g, int *n) {
  int nmax = out_max(g);
  Node **nodes = arena_alloc(e->a, (size_t)nmax * sizeof *nodes);
  const char **name = arena_alloc(e->a, (size_t)nmax * sizeof *name);
  *n = out_nodes(g, nodes, name);
  Named *v = arena_alloc(e->a, (size_t)nmax * sizeof *v);
  for (int i = 0; i < *n; i++) v[i] = (Named){name[i], nodes[i]};
  return v;
}

/* The optimizer options as run-time values: one slot per option of each
 * param's update, named by macros; state.hyper may point at other values. */
static void print_hyper_decl(Emit *e, Buf *o, const Prog *pr) {
  const KProgram *kp = pr->kp;
  if (!kp->nhyper) return;
  buf_printf(o, "\n/* Optimizer options, read by every call of the training step from %s\n"
             " * (which starts at the compiled values): slot %s_<PARAM>_<OPTION> holds that\n"
             " * option of the param's update (lr, momentum, beta1, beta2, eps, weight_decay...);\n"
             " * change them between steps without recompiling.  Zero versus nonzero momentum\n"
             " * and weight_decay is compiled in: keep it. */\n",
             pr->hyper, pr->hyper_m);
  buf_printf(o, "#define %s_COUNT %d\n", pr->hyper_m, kp->nhyper);
  for (int k = 0; k < kp->nhyper; k++) {
    const HyperSlot *h = &kp->hyper[k];
    const char *pn = h->node->in[0]->name ? h->node->in[0]->name : "param";
    buf_printf(o, "#define %s_%s_%s %d\n", pr->hyper_m, upper(e->a, ident(e->a, pn)), upper(e->a, h->name), k);
  }
  buf_printf(o, "extern double %s[%s_COUNT];\n", pr->hyper, pr->hyper_m);
}

static void print_hyper_default(Buf *o, const Prog *pr) {
  const KProgram *kp = pr->kp;
  if (!kp->nhyper) return;
  buf_printf(o, "double %s[%s_COUNT] = {", pr->hyper, pr->hyper_m);
  for (int k = 0; k < kp->nhyper; k++) {
    buf_puts(o, k % 6 ? " " : "\n  ");
    print_float(o, kp->hyper[k].value, 0);
    buf_puts(o, ",");
  }
  buf_puts(o, "\n};\n\n");
}

static size_t state_bytes(const Graph *tg) {
  size_t b = 0;
  for (int i = 0; i < tg->nstates; i++) b += (size_t)shape_numel(&tg->states[i].node->shape) * sizeof(float);
  return b;
}

/* The name of train step k's entry point: <m>_train_step, or with step
 * blocks <m>_train_step_<name>; its step counter in <m>_state likewise. */
static const char *step_fn(Emit *e, int k) {
  const Graph *g = e->steps[k];
  return g->step ? arena_printf(e->a, "%s_train_step_%s", e->m, ident(e->a, g->train.steps[g->step - 1].name))
                 : arena_printf(e->a, "%s_train_step", e->m);
}

static const char *step_counter(Emit *e, int k) {
  const Graph *g = e->steps[k];
  return g->step ? arena_printf(e->a, "step_%s", ident(e->a, g->train.steps[g->step - 1].name)) : "step";
}

/* <m>_state and the training entry points. */
static void emit_train_decls(Emit *e, Buf *o) {
  const Graph *tg = e->tg;
  const char *m = e->m;
  if (e->nsteps > 1)
    buf_printf(o, "\n/* Optimizer state: zero every buffer and step counter before the first\n"
                " * training step.  step_NAME counts the steps NAME took; each call of\n"
                " * %s_train_step_NAME increments it first (Adam's bias correction and the\n"
                " * noise use it).  The buffers may be carved from one block of\n"
                " * %s_state_size() bytes. */\n"
                "typedef struct {\n", m, m);
  else
    buf_printf(o, "\n/* Optimizer state: zero every buffer and step before the first\n"
                " * %s.  step counts the steps taken; each call increments it\n"
                " * first (Adam's bias correction and the dropout masks use it).  The\n"
                " * buffers may be carved from one block of %s_state_size() bytes. */\n"
                "typedef struct {\n", step_fn(e, 0), m);
  for (int k = 0; k < e->nsteps; k++) buf_printf(o, "  int64_t %s;\n", step_counter(e, k));
  print_fields(e, o, tg->states, tg->nstates, "float", "state");
  buf_printf(o, "} %s_state;\n\n", m);
  buf_printf(o, "size_t %s_state_size(void);   /* bytes of all the state buffers together */\n", m);
  if (tg->train.nsteps)
    buf_printf(o, "/* The train block's steps (adversarial training): call them in this order\n"
                " * on each batch.  Each minimises its own loss over its own params with its\n"
                " * own optimizer and state, drawing its own noise; out receives the\n"
                " * outputs, the step's loss and the metrics of the batch computed before\n"
                " * its update. */\n");
  for (int k = 0; k < e->nsteps; k++) {
    const Graph *g = e->steps[k];
    if (g->step) {
      const TrainStep *st = &g->train.steps[g->step - 1];
      buf_printf(o, "/* step %s: minimises %s (noise seed %llu) */\n", st->name, st->loss,
                 (unsigned long long)rng_step_seed(g->train.seed, k));
    } else {
      buf_printf(o, "/* One optimizer step on the batch in `in` (dropout seed %llu): updates p and\n"
                  " * s in place; out receives the outputs, loss and metrics of the batch\n"
                  " * computed before the update. */\n", (unsigned long long)g->train.seed);
    }
    buf_printf(o, "void   %s(%s_params *p, %s_state *s, const %s_inputs *in, %s_outputs *out, void *workspace);\n",
               step_fn(e, k), m, m, m, m);
    print_hyper_decl(e, o, &e->train[k]);
  }
}

static char *emit_header(Emit *e) {
  Buf o = {0};
  const Graph *g = e->g;
  const char *m = e->m, *M = e->M;
  buf_printf(&o, "/* %s.h - generated by `nndc emit-c` from %s.nnd: the model as portable C99.\n", m,
          g->model_name ? g->model_name : m);
  buf_puts(&o, " *\n"
            " * Shapes are fixed at the sizes below.  The caller owns every buffer: params,\n"
            " * inputs, outputs, the workspace (scratch memory of *_workspace_size() bytes,\n"
            " * best 64-byte aligned) and, for training, the optimizer state.  Nothing is\n"
            " * allocated.  *_forward computes every output, the loss and the metrics, so\n"
            " * every input must be given; an output field left NULL is not written.  The\n"
            " * forward pass never writes the params.  Class labels outside [0, C) are\n"
            " * not reported (the JIT reports them): they are clamped into range, so\n"
            " * check labels first.  Build with -fopenmp to run the parallel loops on\n"
            " * several threads (optional). */\n");
  buf_printf(&o, "#ifndef %s_H\n#define %s_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n", M, M);
  buf_puts(&o, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  buf_puts(&o, "/* bound sizes and file-level constants */\n");
  for (int i = 0; i < g->nsyms; i++) buf_printf(&o, "#define %s_%s %lld\n", M, upper(e->a, ident(e->a, g->syms[i].name)), (long long)g->syms[i].value);
  buf_puts(&o, "/* elements of each tensor */\n");
  int nout;
  Named *outs = outputs_named(e, g, &nout);
  print_size_macros(e, &o, g->params, g->nparams, "PARAM");
  print_size_macros(e, &o, g->inputs, g->ninputs, "INPUT");
  print_size_macros(e, &o, outs, nout, "OUTPUT");
  if (e->tg) print_size_macros(e, &o, e->tg->states, e->tg->nstates, "STATE");
  buf_puts(&o, "\n/* one field per param, in declaration order */\ntypedef struct {\n");
  print_fields(e, &o, g->params, g->nparams, "float", "param");
  if (!g->nparams) buf_puts(&o, "  char unused_;  /* the model has no params */\n");
  buf_printf(&o, "} %s_params;\n\ntypedef struct {\n", m);
  print_fields(e, &o, g->inputs, g->ninputs, "const float", "input");
  if (!g->ninputs) buf_puts(&o, "  char unused_;  /* the model has no inputs */\n");
  buf_printf(&o, "} %s_inputs;\n\n/* outputs, then the loss, then the metrics; NULL fields are skipped */\ntypedef struct {\n", m);
  print_fields(e, &o, outs, nout, "float", "output");
  if (!nout) buf_puts(&o, "  char unused_;  /* the model has no outputs */\n");
  buf_printf(&o, "} %s_outputs;\n\n", m);
  buf_printf(&o, "/* bytes of scratch memory needed by %s_forward%s%s */\nsize_t %s_workspace_size(void);\n", m,
          e->tg ? " and " : "", e->tg ? arena_printf(e->a, "%s_train_step%s", m, e->nsteps > 1 || e->tg->train.nsteps ? "_*" : "") : "", m);
  buf_printf(&o, "void   %s_forward(const %s_params *p, const %s_inputs *in, %s_outputs *out, void *workspace);\n", m, m, m, m);
  if (e->tg) emit_train_decls(e, &o);
  if (e->weights)
    buf_printf(&o, "\n/* the embedded trained weights (read-only: for %s_forward only) */\nextern const %s_params %s_weights;\n", m, m, m);
  buf_printf(&o, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif /* %s_H */\n", M);
  return o.s;
}

/* ----------------------------------------------------------- the source */

/* The micro-kernel of a KS_TILE shape (kir.h).  With GNU C (gcc, clang)
 * the accumulators are named L-float vectors (L = 8, or 4 for the generic
 * target's tiles), so they stay in registers and each k step is nc/L loads
 * of B, mr broadcasts of A and mr*nc/L multiply-adds; other compilers get
 * the plain loops.  Columns past nc (B's zero padding) are not computed. */
static void print_tile_fn(Buf *o, const int *t) {
  /* nu: the vectors holding stored columns (the rest would be computed
   * from B's padding and never stored: no code for them at all) */
  int mr = t[0], nr = t[1], nc = t[2], L = nr >= 16 ? 8 : 4, nu = (nc + L - 1) / L;
  buf_printf(o, "static void tile_%dx%d_%d(const float *restrict A, int64_t ars, int64_t acs, const float *restrict B,\n"
             "    int64_t brs, float *restrict C, int64_t crs, int64_t klen, int accum) {\n", mr, nr, nc);
  buf_printf(o, "#if defined(__GNUC__)\n  const nndc_v%d z = {0};\n", L);
  for (int r = 0; r < mr; r++) {
    buf_printf(o, "  nndc_v%d", L);
    for (int v = 0; v < nu; v++) buf_printf(o, "%s c%d_%d = z", v ? "," : "", r, v);
    buf_puts(o, ";\n");
  }
  buf_puts(o, "  if (accum) {\n");
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nu; v++) {
      int w = nc - v * L < L ? nc - v * L : L;
      if (w == L) buf_printf(o, "    memcpy(&c%d_%d, C + %d * crs + %d, %d);\n", r, v, r, v * L, 4 * L);
      else buf_printf(o, "    NNDC_LDN(c%d_%d, C + %d * crs + %d, %d);\n", r, v, r, v * L, w);
    }
  buf_puts(o, "  }\n  for (int64_t k = 0; k < klen; k++) {\n    const float *b = B + k * brs, *a = A + k * acs;\n");
  for (int v = 0; v < nu; v++) buf_printf(o, "    nndc_v%d b%d;\n    memcpy(&b%d, b + %d, %d);\n", L, v, v, v * L, 4 * L);
  for (int r = 0; r < mr; r++) {
    buf_printf(o, "    {\n      const nndc_v%d av = z + a[%d * ars];\n     ", L, r);
    for (int v = 0; v < nu; v++) buf_printf(o, " c%d_%d += av * b%d;", r, v, v);
    buf_puts(o, "\n    }\n");
  }
  buf_puts(o, "  }\n");
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nu; v++) {
      int w = nc - v * L < L ? nc - v * L : L;
      if (w == L) buf_printf(o, "  memcpy(C + %d * crs + %d, &c%d_%d, %d);\n", r, v * L, r, v, 4 * L);
      else buf_printf(o, "  NNDC_STN(C + %d * crs + %d, c%d_%d, %d);\n", r, v * L, r, v, w);
    }
  buf_puts(o, "#else\n");
  buf_printf(o, "  float acc[%d][%d];\n", mr, nc);
  buf_printf(o, "  for (int r = 0; r < %d; r++)\n    for (int c = 0; c < %d; c++) acc[r][c] = accum ? C[r * crs + c] : 0.0f;\n",
          mr, nc);
  buf_puts(o, "  for (int64_t k = 0; k < klen; k++) {\n    const float *b = B + k * brs;\n");
  buf_printf(o, "    for (int r = 0; r < %d; r++) {\n      const float a = A[r * ars + k * acs];\n"
             "      for (int c = 0; c < %d; c++) acc[r][c] += a * b[c];\n    }\n  }\n", mr, nc);
  buf_printf(o, "  for (int r = 0; r < %d; r++)\n    for (int c = 0; c < %d; c++) C[r * crs + c] = acc[r][c];\n", mr, nc);
  buf_puts(o, "#endif\n}\n\n");
}

/* The 4- and 8-float vector types (4 for the generic target's 8-column
 * tiles, whose packed panels are padded to 4 columns only) and their
 * unaligned loads and stores of the first n lanes (macros: a vector passed
 * by value changes the ABI without AVX), for the micro-kernels under GNU C. */
static const char tile_prelude[] =
  "#if defined(__GNUC__)\n"
  "typedef float nndc_v4 __attribute__((vector_size(16)));\n"
  "typedef float nndc_v8 __attribute__((vector_size(32)));\n"
  "#define NNDC_LDN(v, p, n) do { float t_[8] = {0}; memcpy(t_, (p), (size_t)(n) * 4); memcpy(&(v), t_, sizeof(v)); } while (0)\n"
  "#define NNDC_STN(p, v, n) do { float t_[8]; memcpy(t_, &(v), sizeof(v)); memcpy((p), t_, (size_t)(n) * 4); } while (0)\n"
  "#endif\n\n";

static const char *const helper_src[] = {
  "static int64_t wadd(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }\n",
  "static int64_t wsub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }\n",
  "static int64_t wmul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }\n",
  "static int64_t wshr(int64_t a, int64_t b) { return (int64_t)((uint64_t)a >> b); }\n",
  "static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }\n",
  "static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }\n",
  "static int64_t iabs(int64_t a) { return a < 0 ? -a : a; }\n",
  "static void fill(void *x, int64_t n, float v) {\n  for (int64_t i = 0; i < n; i++) ((float *)x)[i] = v;\n}\n",
  /* min and max as the interpreter and the JIT compute them (not fminf:
   * a NaN operand and signed zeros give the same answer everywhere) */
  "static float minf_(float a, float b) { return a < b ? a : b; }\n",
  "static float maxf_(float a, float b) { return a > b ? a : b; }\n",
  "static double mind_(double a, double b) { return a < b ? a : b; }\n",
  "static double maxd_(double a, double b) { return a > b ? a : b; }\n",
  /* a hyperparameter: the f64 whose bits ctx[CTX_COUNT + k] holds */
  "static double hyper_(const int64_t *ctx, int k) {\n  double v;\n  memcpy(&v, ctx + CTX_COUNT + k, sizeof v);\n  return v;\n}\n",
};

static void print_prologue(Emit *e, Buf *o) {
  buf_printf(o, "/* %s.c - generated by `nndc emit-c` from %s.nnd; see %s.h for the interface.\n"
             " *\n"
             " * Each kernel below computes one node of the model's graph and carries its\n"
             " * source line.  Kernels take the buffer table (bufs), the range [lo, hi) of\n"
             " * their parallel loop, and the run context (seed, step, training flag).\n"
             " * This is the program the nndc JIT compiles, printed as C. */\n",
          e->m, e->g->model_name ? e->g->model_name : e->m, e->m);
  buf_printf(o, "#include <math.h>\n#include <stdint.h>\n#include <stddef.h>\n#include <string.h>\n"
             "#ifdef _OPENMP\n#include <omp.h>\n#endif\n#include \"%s.h\"\n\n", e->m);
  buf_puts(o, "enum { CTX_SEED, CTX_STEP, CTX_TRAINING, CTX_ERR, CTX_ERRVAL, CTX_PART, CTX_COUNT };\n\n");
  buf_puts(o, "typedef void (*kernel_fn)(void **bufs, int64_t lo, int64_t hi, int64_t *ctx);\n\n");
  if (e->helpers.par)
    buf_puts(o, "/* Runs kernel k over [0, par) split across the OpenMP threads (each element\n"
             " * of the parallel loop is independent, so any split gives the same result). */\n"
             "static void run_par(kernel_fn k, void **bufs, int64_t par, int64_t *ctx) {\n"
             "#ifdef _OPENMP\n"
             "#pragma omp parallel\n"
             "  {\n"
             "    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();\n"
             "    int64_t lo = par * t / nt, hi = par * (t + 1) / nt;\n"
             "    if (lo < hi) k(bufs, lo, hi, ctx);\n"
             "  }\n"
             "#else\n"
             "  k(bufs, 0, par, ctx);\n"
             "#endif\n"
             "}\n\n");
  if (e->helpers.bits) buf_puts(o, "/* helpers: kernel IR integers wrap like u64; min and max as the interpreter */\n");
  for (size_t i = 0; i < sizeof helper_src / sizeof *helper_src; i++)
    if (e->helpers.bits & (1u << i)) buf_puts(o, helper_src[i]);
  if (e->helpers.bits) buf_puts(o, "\n");
  if (e->helpers.ntile) buf_puts(o, tile_prelude);
  for (int i = 0; i < e->helpers.ntile; i++) print_tile_fn(o, e->helpers.tile[i]);
}

static void print_weights(Emit *e, Buf *o) {
  const Graph *g = e->g;
  for (int i = 0; i < g->nparams; i++) {
    int64_t n = shape_numel(&g->params[i].node->shape);
    const float *w = e->weights[i];
    buf_printf(o, "/* %s ", g->params[i].name);
    print_shape(o, g->params[i].node);
    buf_printf(o, " */\nstatic const float %s_w_%s[%lld] = {", e->m, ident(e->a, g->params[i].name), (long long)n);
    for (int64_t j = 0; j < n; j++) {
      buf_puts(o, j % 8 ? " " : "\n  ");
      print_float(o, w[j], 1);
      buf_puts(o, ",");
    }
    buf_puts(o, "\n};\n\n");
  }
  buf_printf(o, "/* forward never writes params, so casting away const is safe */\nconst %s_params %s_weights = {", e->m, e->m);
  for (int i = 0; i < g->nparams; i++)
    buf_printf(o, "%s\n  (float *)%s_w_%s", i ? "," : "", e->m, ident(e->a, g->params[i].name));
  if (!g->nparams) buf_puts(o, "0");
  buf_puts(o, "\n};\n\n");
}


/* The body of an entry point (forward or train_step) after its opening
 * line: the context (seed, step and training flag as C text), the buffer
 * table, the kernels, the copies out. */
static void print_entry(Emit *e, Buf *o, Prog *pr, const char *pre, const char *step_training, uint64_t seed) {
  buf_puts(o, "  char *ws = workspace;\n");
  buf_puts(o, pre);
  int nh = pr->kp->nhyper;
  buf_printf(o, "  int64_t ctx[CTX_COUNT + %d] = {(int64_t)%lluull, %s, 0, 0};  /* seed, step, training */\n", nh,
             (unsigned long long)seed, step_training);
  if (nh)   /* the optimizer options after the fixed slots, as f64 bits */
    buf_printf(o, "  memcpy(ctx + CTX_COUNT, %s, sizeof(double) * %d);\n", pr->hyper, nh);
  print_binds(o, pr, e->a, &e->helpers);
  buf_puts(o, "  (void)p;\n  (void)in;\n  (void)ws;\n");
  buf_printf(o, "  %s_run(bufs, ctx);\n", pr->prefix);
  print_copy_out(o, pr, e->a);
  buf_puts(o, "  (void)out;\n}\n");
}

static char *emit_source(Emit *e) {
  Buf body = {0}, o = {0};
  const char *m = e->m;
  buf_printf(&body, "/* ---- forward: %d kernels, %zu bytes of workspace ---- */\n\n", e->fwd.kp->nkernels,
          e->fwd.kp->arena_bytes);
  print_program(&body, &e->fwd, &e->helpers);
  size_t ws = e->fwd.kp->arena_bytes;
  for (int k = 0; e->tg && k < e->nsteps; k++) {
    Prog *tr = &e->train[k];
    buf_printf(&body, "/* ---- training step%s%s: %d kernels, %zu bytes of workspace ---- */\n\n", e->steps[k]->step ? " " : "",
               e->steps[k]->step ? e->steps[k]->train.steps[e->steps[k]->step - 1].name : "", tr->kp->nkernels,
               tr->kp->arena_bytes);
    print_program(&body, tr, &e->helpers);
    if (tr->kp->arena_bytes > ws) ws = tr->kp->arena_bytes;
  }
  Buf fns = {0};
  buf_printf(&fns, "size_t %s_workspace_size(void) { return %zu; }\n\n", m, ws);
  buf_printf(&fns, "void %s_forward(const %s_params *p, const %s_inputs *in, %s_outputs *out, void *workspace) {\n", m, m, m, m);
  print_entry(e, &fns, &e->fwd, "", "1, 0", e->g->train.seed);
  if (e->tg) buf_printf(&fns, "\nsize_t %s_state_size(void) { return %zu; }\n", m, state_bytes(e->tg));
  for (int k = 0; e->tg && k < e->nsteps; k++) {
    const char *c = step_counter(e, k);
    buf_puts(&fns, "\n");
    print_hyper_default(&fns, &e->train[k]);
    buf_printf(&fns, "void %s(%s_params *p, %s_state *s, const %s_inputs *in, %s_outputs *out, void *workspace) {\n",
               step_fn(e, k), m, m, m, m);
    print_entry(e, &fns, &e->train[k], arena_printf(e->a, "  s->%s++;\n", c), arena_printf(e->a, "s->%s, 1", c),
                rng_step_seed(e->steps[k]->train.seed, k));
  }
  print_prologue(e, &o);
  if (e->weights) print_weights(e, &o);
  buf_puts(&o, body.s);
  buf_puts(&o, fns.s);
  free(body.s);
  free(fns.s);
  return o.s;
}

/* --------------------------------------------------------------- driver */

static int lower(Emit *e, Prog *pr, const Graph *g, int train, const char *prefix) {
  int n = 0, nmax = out_max(g) + (train ? g->nupdates : 0);
  Node **roots = arena_alloc(e->a, ((size_t)nmax + 1) * sizeof *roots);
  const char **name = arena_alloc(e->a, ((size_t)nmax + 1) * sizeof *name);
  n = out_nodes(g, roots, name);
  if (train)
    for (int i = 0; i < g->nupdates; i++) roots[n++] = g->updates[i];
  if (n == 0) {
    diag_error(e->d, (Loc){0}, "emit-c: the model has no output, loss or metric to compute");
    return -1;
  }
  pr->g = g;
  pr->prefix = prefix;
  pr->kp = codegen_lower(e->d, e->a, g, roots, n);  /* the JIT's kernels: simplified, fused, planned */
  if (!pr->kp) return -1;
  name_buffers(e->a, pr);
  return 0;
}

/* The training graph must have the forward graph's inputs and params. */
static int check_same_leaves(Emit *e, const Graph *tg) {
  const Graph *g = e->g;
  if (g->nparams != tg->nparams || g->ninputs != tg->ninputs) {
    diag_error(e->d, (Loc){0}, "emit-c: the training graph has other inputs or params than the forward graph");
    return -1;
  }
  for (int i = 0; i < g->ninputs; i++)
    if (!shape_eq(&g->inputs[i].node->shape, &tg->inputs[i].node->shape)) {
      char a[128], b[128];
      diag_error(e->d, g->inputs[i].node->loc,
                 "emit-c: input '%s' is %s in the forward pass but %s in the training step; bind its size with -D",
                 g->inputs[i].name, shape_str(&g->inputs[i].node->shape, g->inputs[i].node->dt, a, sizeof a),
                 shape_str(&tg->inputs[i].node->shape, tg->inputs[i].node->dt, b, sizeof b));
      return -1;
    }
  return 0;
}

int c_emit(Diag *d, const Graph *g, const Graph *tg, float *const *weights, char **header, char **source) {
  return c_emit_steps(d, g, tg ? &tg : NULL, tg ? 1 : 0, weights, header, source);
}

int c_emit_steps(Diag *d, const Graph *g, const Graph *const *tgs, int ntg, float *const *weights, char **header,
                 char **source) {
  Arena a;
  arena_init(&a);
  Graph all = ntg > 1 ? graph_steps_union(tgs, ntg) : ntg ? *tgs[0] : *g;
  Emit e = {.d = d, .a = &a, .g = g, .tg = ntg ? &all : NULL, .steps = tgs, .nsteps = ntg, .weights = weights};
  e.m = c_model_ident(&a, g->model_name);
  e.M = upper(&a, e.m);
  e.train = arena_alloc(&a, sizeof *e.train * (size_t)(ntg + 1));
  int nout, rc = -1;
  Named *outs = outputs_named(&e, g, &nout);
  if (check_fields(&e, g->params, g->nparams, "params") || check_fields(&e, g->inputs, g->ninputs, "inputs") ||
      check_fields(&e, outs, nout, "outputs"))
    goto done;
  if (ntg && check_fields(&e, all.states, all.nstates, "optimizer states")) goto done;
  for (int k = 0; k < ntg; k++)
    if (check_same_leaves(&e, tgs[k])) goto done;
  if (lower(&e, &e.fwd, g, 0, "fwd")) goto done;
  for (int k = 0; k < ntg; k++) {
    if (lower(&e, &e.train[k], tgs[k], 1, ntg > 1 ? arena_printf(&a, "train%d", k) : "train")) goto done;
    const char *sn = tgs[k]->step ? ident(&a, tgs[k]->train.steps[tgs[k]->step - 1].name) : NULL;
    e.train[k].hyper = sn ? arena_printf(&a, "%s_hyper_%s", e.m, sn) : arena_printf(&a, "%s_hyper", e.m);
    e.train[k].hyper_m = sn ? arena_printf(&a, "%s_HYPER_%s", e.M, upper(&a, sn)) : arena_printf(&a, "%s_HYPER", e.M);
  }
  *source = emit_source(&e);
  *header = emit_header(&e);
  rc = 0;
done:
  arena_free(&a);
  return rc;
}
