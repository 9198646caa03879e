/* sema.c - the syntax tree to the tensor Graph (spec §4, §5, §7, §8).
 *
 * The whole program (main file and its imports, each file once) is parsed
 * first, so the train block (at the end of a file) can give the batch size
 * that binds symbolic dims before any statement runs.  Then statements run
 * in order like a small interpreter whose values are compile-time numbers,
 * lists, and graph nodes: functions are inlined at each call (recursion is
 * an error), `for` loops are unrolled, compile-time arithmetic is folded,
 * and each tensor operation becomes one ir_op call (which infers the shape
 * and reports a mismatch).  An erroneous statement binds its names to an
 * error value that later uses pass on silently, so one mistake gives one
 * message; after FE_MAX_ERRORS errors sema stops.
 *
 * Decisions the spec leaves open:
 *   - An empty file (or one with only functions) is a valid empty model.
 *   - argmax's axis defaults to -1, like softmax's.
 *   - The train block is evaluated before the statements, so its values are
 *     literals or -D names (file-level consts are not yet defined); a train
 *     block in an imported file is ignored with a warning.
 *   - Functions see their own locals and the file-level names.
 *   - Unary builtins of compile-time numbers fold (sqrt(2) is a number).
 *   - A user function may not take a builtin's name.
 *   - Train steps (spec 8): a param belongs to at most one step (each
 *     optimizer state has one owner), a step needs loss, params and
 *     optimizer, and `optimizer =` beside step blocks is an error; the steps'
 *     names are checked before the statements run, their losses and params
 *     after (graph_use_step then makes a training graph one step's).
 *   - Unrolling is bounded (FE_MAX_STEPS statements, FE_MAX_NODES nodes) so
 *     a hostile loop gives an error instead of exhausting memory or time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"

#define FE_MAX_CALL_DEPTH 64
#define FE_MAX_STEPS 1000000
#define FE_MAX_NODES 500000

/* ------------------------------------------------------------ values */

typedef enum {
  V_ERR,     /* an error was reported; uses stay silent */
  V_NONE,    /* no value: an absent argument, a function without return */
  V_INT,     /* compile-time integer (also true/false) */
  V_FLOAT,   /* compile-time float */
  V_TENSOR,  /* a graph node */
  V_LIST,    /* [a, b, ...] of values */
  V_TUPLE    /* several values returned by a function */
} VKind;

typedef struct Value Value;
struct Value {
  VKind kind;
  int64_t i;
  double f;
  Node *t;
  Value *items;  /* V_LIST, V_TUPLE */
  int n;
};

static const Value v_err = {V_ERR, 0, 0, NULL, NULL, 0};
static const Value v_none = {V_NONE, 0, 0, NULL, NULL, 0};

static Value v_int(int64_t i) { Value v = {V_INT, i, (double)i, NULL, NULL, 0}; return v; }
static Value v_float(double f) { Value v = {V_FLOAT, 0, f, NULL, NULL, 0}; return v; }
static Value v_tensor(Node *t) {
  Value v = {V_TENSOR, 0, 0, t, NULL, 0};
  if (!t) v.kind = V_ERR;
  return v;
}
static int is_num(Value v) { return v.kind == V_INT || v.kind == V_FLOAT; }
static double num_of(Value v) { return v.kind == V_INT ? (double)v.i : v.f; }

/* --------------------------------------------------------------- map */

/* String-keyed open-addressing hash map in the arena (names, fns, params). */
typedef struct Map {
  const char **keys;
  void **vals;
  int n, cap;
} Map;

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static void *map_get(const Map *m, const char *k) {
  if (!m->cap) return NULL;
  for (uint64_t i = hash_str(k) & (uint64_t)(m->cap - 1);; i = (i + 1) & (uint64_t)(m->cap - 1)) {
    if (!m->keys[i]) return NULL;
    if (!strcmp(m->keys[i], k)) return m->vals[i];
  }
}

static void map_put(Arena *a, Map *m, const char *k, void *v);

static void map_grow(Arena *a, Map *m) {
  Map old = *m;
  m->cap = old.cap ? old.cap * 2 : 16;
  m->n = 0;
  m->keys = arena_alloc(a, sizeof(char *) * (size_t)m->cap);
  m->vals = arena_alloc(a, sizeof(void *) * (size_t)m->cap);
  for (int i = 0; i < old.cap; i++)
    if (old.keys[i]) map_put(a, m, old.keys[i], old.vals[i]);
}

static void map_put(Arena *a, Map *m, const char *k, void *v) {
  if (2 * (m->n + 1) > m->cap) map_grow(a, m);
  uint64_t i = hash_str(k) & (uint64_t)(m->cap - 1);
  while (m->keys[i] && strcmp(m->keys[i], k)) i = (i + 1) & (uint64_t)(m->cap - 1);
  if (!m->keys[i]) m->n++;
  m->keys[i] = k;
  m->vals[i] = v;
}

/* ------------------------------------------------------------- state */

typedef struct Binding {
  Value v;
  int fixed;   /* 'i' input, 'p' param: can't be rebound */
} Binding;

typedef struct Sema {
  Diag *d;
  Graph *g;
  Arena *a;
  const BuildOpts *o;
  Map fns;             /* name -> FnDef */
  Map files;           /* resolved path -> File */
  Map params;          /* full param name -> Node */
  Map syms;            /* bound symbolic dim -> int64_t* */
  Map outs;            /* output and metric names used */
  Map fed;             /* symbol -> int64_t*: first dim of an input that is fed */
  Map *globals, *frame;
  const char *prefix;  /* inside a layer: "h1" or "enc.h1"; NULL at file level */
  Expr *rhs;           /* the call that is the whole right-hand side of the assignment being run */
  const char *rhs_name;  /* its first assigned name */
  int depth;           /* inlined calls now active */
  int dropout_key;
  int64_t steps;
  int stop;            /* budget exceeded or too many errors */
  int cap_in, cap_par, cap_out, cap_met, cap_sym, cap_loss;
  int64_t batch;
  TrainKey **stepkey;  /* [g->train.nsteps] the AST of each step (its loss and params) */
} Sema;

static int stopped(Sema *s) {
  if (s->d->nerrors >= FE_MAX_ERRORS) s->stop = 1;
  return s->stop;
}

static void push_named(Sema *s, Named **arr, int *n, int *cap, const char *name, Node *node) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 8;
    Named *a = arena_alloc(s->a, sizeof(Named) * (size_t)*cap);
    if (*n) memcpy(a, *arr, sizeof(Named) * (size_t)*n);
    *arr = a;
  }
  (*arr)[*n].name = name;
  (*arr)[*n].node = node;
  (*n)++;
}

static const char *shp(Sema *s, const Shape *sh, DType dt) {
  char buf[160];
  return arena_strdup(s->a, shape_str(sh, dt, buf, sizeof buf));
}

static const char *nshp(Sema *s, const Node *n) { return shp(s, &n->shape, n->dt); }

/* ----------------------------------------------------------- symbols */

static const Define *find_def(Sema *s, const char *name) {
  for (int i = s->o->ndefs - 1; i >= 0; i--)
    if (s->o->defs[i].name && !strcmp(s->o->defs[i].name, name)) return &s->o->defs[i];
  return NULL;
}

/* A -D value as a Value; integers beyond int64 range stay floats. */
static Value def_value(const Define *def) {
  if (def->is_int && fabs(def->value) < 4e18) return v_int((int64_t)def->value);
  return v_float(def->value);
}

static void sym_record(Sema *s, const char *name, int64_t v) {
  int64_t *p = arena_alloc(s->a, sizeof *p);
  *p = v;
  map_put(s->a, &s->syms, arena_strdup(s->a, name), p);
  if (s->g->nsyms == s->cap_sym) {
    s->cap_sym = s->cap_sym ? s->cap_sym * 2 : 8;
    Sym *a = arena_alloc(s->a, sizeof(Sym) * (size_t)s->cap_sym);
    if (s->g->nsyms) memcpy(a, s->g->syms, sizeof(Sym) * (size_t)s->g->nsyms);
    s->g->syms = a;
  }
  s->g->syms[s->g->nsyms].name = arena_strdup(s->a, name);
  s->g->syms[s->g->nsyms++].value = v;
}

/* ----------------------------------------------------------- lookups */

static Value eval(Sema *s, Expr *e);
static void exec_stmts(Sema *s, Stmt **body, int n);

static Binding *lookup(Sema *s, const char *name) {
  Binding *b = map_get(s->frame, name);
  if (!b && s->frame != s->globals) b = map_get(s->globals, name);
  return b;
}

static int bind(Sema *s, const char *name, Loc loc, Value v, int fixed) {
  Binding *b = map_get(s->frame, name);
  if (b && b->fixed) {
    diag_error(s->d, loc, "cannot rebind %s '%s'", b->fixed == 'i' ? "input" : "param", name);
    return -1;
  }
  if (!b) {
    b = arena_alloc(s->a, sizeof *b);
    map_put(s->a, s->frame, name, b);
  }
  b->v = v;
  b->fixed = fixed;
  return 0;
}

/* Converts a value used as a tensor; compile-time numbers become f32 scalars. */
static Node *to_tensor(Sema *s, Value v, Loc loc) {
  Shape scalar = {0, {0}};
  switch (v.kind) {
  case V_TENSOR: return v.t;
  case V_INT: case V_FLOAT: return ir_const(s->g, loc, &scalar, num_of(v));
  case V_ERR: return NULL;
  case V_LIST: diag_error(s->d, loc, "expected a tensor, found a list"); return NULL;
  case V_TUPLE: diag_error(s->d, loc, "expected one value, found %d", v.n); return NULL;
  case V_NONE: diag_error(s->d, loc, "expected a value, but the function returns nothing"); return NULL;
  }
  return NULL;
}

static int get_int(Sema *s, Value v, Loc loc, const char *what, int64_t *out) {
  if (v.kind == V_ERR) return -1;
  if (v.kind != V_INT) {
    diag_error(s->d, loc, "%s must be a compile-time integer", what);
    return -1;
  }
  *out = v.i;
  return 0;
}

static int get_num(Sema *s, Value v, Loc loc, const char *what, double *out) {
  if (v.kind == V_ERR) return -1;
  if (!is_num(v)) {
    diag_error(s->d, loc, "%s must be a compile-time number", what);
    return -1;
  }
  *out = num_of(v);
  return 0;
}

static int norm_axis(Sema *s, Loc loc, int64_t ax, const Node *x, int64_t *out) {
  int r = x->shape.rank;
  if (ax < -r || ax >= r) {
    diag_error(s->d, loc, "axis %lld is out of range for %s", (long long)ax, nshp(s, x));
    return -1;
  }
  *out = ax < 0 ? ax + r : ax;
  return 0;
}

/* Checks one dimension and folds it into the running element count. */
static int check_dim(Sema *s, Loc loc, int64_t v, int64_t *numel) {
  if (v <= 0) {
    diag_error(s->d, loc, "dimension must be positive, got %lld", (long long)v);
    return -1;
  }
  if (v > MAX_DIM || !dim_mul(*numel, v, numel)) {
    diag_error(s->d, loc, "tensor too large: the element count exceeds %lld", (long long)MAX_DIM);
    return -1;
  }
  return 0;
}

/* A shape written as a list [d, ...]; one -1 is allowed when neg1 != NULL
 * (its index is stored there, -1 if none). */
static int get_shape(Sema *s, Value v, Expr *e, Shape *out, int *neg1) {
  int64_t numel = 1;
  if (v.kind == V_ERR) return -1;
  if (v.kind != V_LIST) {
    diag_error(s->d, e->loc, "expected a shape list such as [2, 3]");
    return -1;
  }
  if (v.n > MAX_RANK) {
    diag_error(s->d, e->loc, "rank %d exceeds the maximum of %d", v.n, MAX_RANK);
    return -1;
  }
  if (neg1) *neg1 = -1;
  out->rank = v.n;
  for (int k = 0; k < MAX_RANK; k++) out->dim[k] = 0;
  for (int k = 0; k < v.n; k++) {
    Loc loc = e->kind == EX_LIST ? e->items[k]->loc : e->loc;
    if (get_int(s, v.items[k], loc, "a dimension", &out->dim[k])) return -1;
    if (neg1 && out->dim[k] == -1 && *neg1 < 0) {
      *neg1 = k;
      continue;
    }
    if (check_dim(s, loc, out->dim[k], &numel)) return -1;
  }
  return 0;
}

/* ------------------------------------------------------ arguments */

typedef struct Arg {
  Expr *e;     /* NULL: not given */
  Value v;
  Loc loc;
} Arg;

#define MAX_ARGS 8

typedef struct Builtin Builtin;
typedef Value (*BuiltinFn)(Sema *s, const Builtin *b, Expr *call, Arg *arg);

struct Builtin {
  const char *name;
  BuiltinFn fn;
  Op op;
  int nreq;                       /* required leading params */
  const char *params[MAX_ARGS];   /* names, in positional order */
};

static int nparams_of(const char *const *params) {
  int n = 0;
  while (n < MAX_ARGS && params[n]) n++;
  return n;
}

/* Matches call arguments to params[] by position, then by name. */
static int match_args(Sema *s, Expr *call, const char *fname, const char *const *params, int np,
                      int nreq, Arg *arg) {
  int npos = 0;
  memset(arg, 0, sizeof(Arg) * MAX_ARGS);
  for (int k = 0; k < call->nitems; k++) {
    const char *an = call->argnames ? call->argnames[k] : NULL;
    int j = npos;
    if (an) {
      for (j = 0; j < np && strcmp(params[j], an); j++) {}
      if (j == np) {
        diag_error(s->d, call->argloc[k], "%s() has no argument named '%s'", fname, an);
        return -1;
      }
      if (arg[j].e) {
        diag_error(s->d, call->argloc[k], "argument '%s' of %s() given twice", an, fname);
        return -1;
      }
    } else if (npos++ >= np) {
      diag_error(s->d, call->argloc[k], "%s() takes at most %d argument%s, got %d", fname, np,
                 np == 1 ? "" : "s", call->nitems);
      return -1;
    }
    arg[j].e = call->items[k];
    arg[j].loc = call->argloc[k];
  }
  for (int j = 0; j < nreq; j++)
    if (!arg[j].e) {
      diag_error(s->d, call->loc, "%s() needs %d argument%s; '%s' is missing", fname, nreq,
                 nreq == 1 ? "" : "s", params[j]);
      return -1;
    }
  return 0;
}

/* Evaluates matched arguments; absent ones are V_NONE.  -1 if any failed. */
static int eval_args(Sema *s, Arg *arg) {
  int bad = 0;
  for (int j = 0; j < MAX_ARGS; j++) {
    arg[j].v = arg[j].e ? eval(s, arg[j].e) : v_none;
    if (arg[j].v.kind == V_ERR) bad = 1;
  }
  return bad ? -1 : 0;
}

static Node *arg_tensor(Sema *s, Arg *a) { return to_tensor(s, a->v, a->e->loc); }

static int opt_int(Sema *s, Arg *a, int64_t def, const char *what, int64_t *out) {
  if (!a->e) {
    *out = def;
    return 0;
  }
  return get_int(s, a->v, a->e->loc, what, out);
}

static int opt_num(Sema *s, Arg *a, double def, const char *what, double *out) {
  if (!a->e) {
    *out = def;
    return 0;
  }
  return get_num(s, a->v, a->e->loc, what, out);
}

static Value op1(Sema *s, Expr *call, Op op, Node *x, const Attr *at) {
  if (!x) return v_err;
  return v_tensor(ir_op(s->g, s->d, call->loc, op, &x, 1, at));
}

static Value op2(Sema *s, Loc loc, Op op, Node *x, Node *y, const Attr *at) {
  Node *in[2] = {x, y};
  if (!x || !y) return v_err;
  return v_tensor(ir_op(s->g, s->d, loc, op, in, 2, at));
}

/* ------------------------------------------------------- builtins */

/* rand(shape), randn(shape): noise with a key of its own (dropout's counter) */
static Value bi_noise(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  if (get_shape(s, arg[0].v, arg[0].e, &at.shape, NULL)) return v_err;
  at.i[0] = ++s->dropout_key;
  return v_tensor(ir_op(s->g, s->d, call->loc, b->op, NULL, 0, &at));
}

/* embedding(table, ids) */
static Value bi_embedding(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  (void)b;
  return op2(s, call->loc, OP_EMBEDDING, arg_tensor(s, &arg[0]), arg_tensor(s, &arg[1]), NULL);
}

/* tril(x, k=0, fill=0): the defaults of ops.def */
static Value bi_tril(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  double k0 = 0, f0 = 0;
  NNDC_ASSERT(op_attr_default(b->op, "k", &k0) == 0 && op_attr_default(b->op, "fill", &f0) == 0);
  if (opt_int(s, &arg[1], (int64_t)k0, "k", &at.i[0]) || opt_num(s, &arg[2], f0, "fill", &at.f[0])) return v_err;
  return op1(s, call, OP_TRIL, arg_tensor(s, &arg[0]), &at);
}

/* where(c, a, b): of three numbers a number */
static Value bi_where(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  (void)b;
  if (is_num(arg[0].v) && is_num(arg[1].v) && is_num(arg[2].v))
    return num_of(arg[0].v) != 0 ? arg[1].v : arg[2].v;
  Node *in[3] = {arg_tensor(s, &arg[0]), arg_tensor(s, &arg[1]), arg_tensor(s, &arg[2])};
  if (!in[0] || !in[1] || !in[2]) return v_err;
  return v_tensor(ir_op(s->g, s->d, call->loc, OP_WHERE, in, 3, NULL));
}

/* An elementwise builtin of a compile-time number is a number (the
 * interpreter's scalar evaluator; detach of a number is the number). */
static int fold_unary(Op op, double x, double *r) {
  static const double no_attrs[5];
  *r = interp_ew(op, no_attrs, &x);
  return 1;
}

/* relu(x) sigmoid(x) tanh(x) exp(x) log(x) sqrt(x) abs(x) softplus(x) gelu(x) */
static Value bi_unary(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  double r;
  if (is_num(arg[0].v) && fold_unary(b->op, num_of(arg[0].v), &r)) return v_float(r);
  return op1(s, call, b->op, arg_tensor(s, &arg[0]), NULL);
}

/* elu(x, alpha=1.0)  leaky_relu(x, slope=0.01): the defaults of ops.def */
static Value bi_unary_f(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  double def = 0;
  NNDC_ASSERT(op_attr_default(b->op, b->params[1], &def) == 0);
  if (opt_num(s, &arg[1], def, b->params[1], &at.f[0])) return v_err;
  return op1(s, call, b->op, arg_tensor(s, &arg[0]), &at);
}

/* clamp(x, lo, hi) */
static Value bi_clamp(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  (void)b;
  if (get_num(s, arg[1].v, arg[1].e->loc, "lo", &at.f[0]) ||
      get_num(s, arg[2].v, arg[2].e->loc, "hi", &at.f[1]))
    return v_err;
  return op1(s, call, OP_CLAMP, arg_tensor(s, &arg[0]), &at);
}

/* maximum(a, b)  minimum(a, b) */
static Value bi_binary(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  if (is_num(arg[0].v) && is_num(arg[1].v)) {
    double x = num_of(arg[0].v), y = num_of(arg[1].v);
    int max = b->op == OP_MAXIMUM;
    if (arg[0].v.kind == V_INT && arg[1].v.kind == V_INT)
      return v_int(max == (arg[0].v.i > arg[1].v.i) ? arg[0].v.i : arg[1].v.i);
    return v_float(max == (x > y) ? x : y);
  }
  return op2(s, call->loc, b->op, arg_tensor(s, &arg[0]), arg_tensor(s, &arg[1]), NULL);
}

/* The axis argument of a reduction: an int or a list of ints -> bitmask. */
static int axis_mask(Sema *s, Arg *a, const Node *x, int64_t *mask) {
  int64_t ax;
  if (!a->e) {
    *mask = x->shape.rank ? ((int64_t)1 << x->shape.rank) - 1 : 0;
    return 0;
  }
  *mask = 0;
  if (a->v.kind == V_LIST) {
    for (int k = 0; k < a->v.n; k++) {
      Loc loc = a->e->kind == EX_LIST ? a->e->items[k]->loc : a->e->loc;
      if (get_int(s, a->v.items[k], loc, "an axis", &ax) || norm_axis(s, loc, ax, x, &ax)) return -1;
      *mask |= (int64_t)1 << ax;
    }
    return 0;
  }
  if (get_int(s, a->v, a->e->loc, "axis", &ax) || norm_axis(s, a->e->loc, ax, x, &ax)) return -1;
  *mask = (int64_t)1 << ax;
  return 0;
}

/* sum(x, axis, keepdims=false)  mean(...)  max(...) */
static Value bi_reduce(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  Node *x = arg_tensor(s, &arg[0]);
  if (!x || axis_mask(s, &arg[1], x, &at.i[0])) return v_err;
  if (opt_int(s, &arg[2], 0, "keepdims", &at.i[1])) return v_err;
  at.i[1] = at.i[1] != 0;
  return op1(s, call, b->op, x, &at);
}

/* argmax(x, axis=-1)  softmax(x, axis=-1)  log_softmax(x, axis=-1) */
static Value bi_axis(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  int64_t ax;
  Node *x = arg_tensor(s, &arg[0]);
  if (!x || opt_int(s, &arg[1], -1, "axis", &ax)) return v_err;
  if (norm_axis(s, arg[1].e ? arg[1].e->loc : call->loc, ax, x, &at.i[0])) return v_err;
  return op1(s, call, b->op, x, &at);
}

/* transpose(x)  transpose(x, [perm]) */
static Value bi_transpose(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  Node *x = arg_tensor(s, &arg[0]);
  int r;
  (void)b;
  if (!x) return v_err;
  r = x->shape.rank;
  if (!arg[1].e) {
    if (r != 2) {
      diag_error(s->d, call->loc, "transpose(x) needs a 2-D tensor, got %s; give a permutation",
                 nshp(s, x));
      return v_err;
    }
    at.i[0] = 1;
    return op1(s, call, OP_TRANSPOSE, x, &at);
  }
  Value p = arg[1].v;
  int seen[MAX_RANK] = {0};
  if (p.kind != V_LIST || p.n != r) {
    diag_error(s->d, arg[1].e->loc, "transpose of %s needs a permutation list of %d axes",
               nshp(s, x), r);
    return v_err;
  }
  for (int k = 0; k < r; k++) {
    int64_t ax;
    if (get_int(s, p.items[k], arg[1].e->loc, "an axis", &ax) ||
        norm_axis(s, arg[1].e->loc, ax, x, &ax))
      return v_err;
    if (seen[ax]++) {
      diag_error(s->d, arg[1].e->loc, "axis %lld repeated in the permutation", (long long)ax);
      return v_err;
    }
    at.i[k] = ax;
  }
  return op1(s, call, OP_TRANSPOSE, x, &at);
}

static Value reshape_to(Sema *s, Loc loc, Node *x, const Shape *sh) {
  Attr at = {0};
  at.shape = *sh;
  if (shape_eq(&x->shape, sh)) return v_tensor(x);
  return v_tensor(ir_op(s->g, s->d, loc, OP_RESHAPE, &x, 1, &at));
}

/* reshape(x, [d, ...]) with at most one -1 */
static Value bi_reshape(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Shape sh;
  int neg1;
  Node *x = arg_tensor(s, &arg[0]);
  (void)b;
  if (!x || get_shape(s, arg[1].v, arg[1].e, &sh, &neg1)) return v_err;
  int64_t known = 1, n = shape_numel(&x->shape);
  for (int k = 0; k < sh.rank; k++)
    if (k != neg1) known *= sh.dim[k];
  if (neg1 >= 0) {
    if (n % known) {
      diag_error(s->d, call->loc, "cannot reshape %s to %s: %lld elements do not divide by %lld",
                 nshp(s, x), shp(s, &sh, x->dt), (long long)n, (long long)known);
      return v_err;
    }
    sh.dim[neg1] = n / known;
  }
  if (shape_numel(&sh) != n) {
    diag_error(s->d, call->loc, "cannot reshape %s to %s: element counts differ", nshp(s, x),
               shp(s, &sh, x->dt));
    return v_err;
  }
  return reshape_to(s, call->loc, x, &sh);
}

/* flatten(x) -> [dim0, product of the rest] */
static Value bi_flatten(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Node *x = arg_tensor(s, &arg[0]);
  Shape sh = {2, {0}};
  (void)b;
  if (!x) return v_err;
  if (x->shape.rank < 1) {
    diag_error(s->d, call->loc, "flatten needs a tensor of rank >= 1, got %s", nshp(s, x));
    return v_err;
  }
  sh.dim[0] = x->shape.dim[0];
  sh.dim[1] = 1;
  for (int k = 1; k < x->shape.rank; k++) sh.dim[1] *= x->shape.dim[k];
  return reshape_to(s, call->loc, x, &sh);
}

/* zeros([shape])  ones([shape])  full([shape], v) */
static Value bi_fill(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Shape sh;
  double v = b->params[1] ? 0 : (strcmp(b->name, "ones") == 0);
  if (get_shape(s, arg[0].v, arg[0].e, &sh, NULL)) return v_err;
  if (b->params[1] && get_num(s, arg[1].v, arg[1].e->loc, "the fill value", &v)) return v_err;
  return v_tensor(ir_const(s->g, call->loc, &sh, v));
}

/* float(i): i32 -> f32 */
static Value bi_float(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  (void)b;
  if (is_num(arg[0].v)) return v_float(num_of(arg[0].v));
  Node *x = arg_tensor(s, &arg[0]);
  if (x && x->dt == DT_F32) return v_tensor(x);
  return op1(s, call, OP_CAST, x, NULL);
}

/* dropout(x, p): inverted dropout in training, the identity otherwise */
static Value bi_dropout(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  (void)b;
  Node *x = arg_tensor(s, &arg[0]);
  if (!x || get_num(s, arg[1].v, arg[1].e->loc, "the dropout probability", &at.f[0])) return v_err;
  if (!(at.f[0] >= 0 && at.f[0] < 1)) {
    diag_error(s->d, arg[1].e->loc, "dropout probability must be in [0, 1), got %g", at.f[0]);
    return v_err;
  }
  if (!s->o->training) return v_tensor(x);
  at.i[0] = ++s->dropout_key;
  return op1(s, call, OP_DROPOUT, x, &at);
}

/* cross_entropy(logits, labels)  mse(a, b)  bce_logits(z, t) */
/* A shape of n dims of s from dims[k]. */
static Shape dims_of(const int64_t *d, int n) {
  Shape r = {n, {0}};
  for (int k = 0; k < n; k++) r.dim[k] = d[k];
  return r;
}

/* cross_entropy(logits [..., C], labels i32 [...]) over leading positions
 * is the mean over all of them: both flatten to [P, C] and [P]. */
static Value bi_loss(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Node *x = arg_tensor(s, &arg[0]), *y = arg_tensor(s, &arg[1]);
  if (x && y && b->op == OP_CROSS_ENTROPY && x->shape.rank > 2 && y->shape.rank == x->shape.rank - 1) {
    int same = 1;
    for (int k = 0; k < y->shape.rank; k++) same &= x->shape.dim[k] == y->shape.dim[k];
    if (same) {
      int64_t P = shape_numel(&y->shape), d2[2] = {P, x->shape.dim[x->shape.rank - 1]};
      Shape s2 = dims_of(d2, 2), s1 = dims_of(d2, 1);
      x = ir_reshape(s->g, x, &s2);
      y = ir_reshape(s->g, y, &s1);
    }
  }
  return op2(s, call->loc, b->op, x, y, NULL);
}

/* a @ b beyond MATMUL's own forms ([M,K]@[K,N], [B,M,K]@[B,K,N],
 * [B,M,K]@[K,N]): a [..., M, K] @ b [K, N] flattens a's leading axes into
 * the rows; otherwise the leading axes of both broadcast (EXPAND), flatten
 * into one batch axis for a batched product, and the result takes them
 * back: a [A..., M, K] @ b [B..., K, N] -> [broadcast(A, B)..., M, N]. */
static Value matmul(Sema *s, Loc loc, Node *a, Node *b) {
  if (!a || !b) return v_err;
  int ra = a->shape.rank, rb = b->shape.rank;
  int direct = (ra == 2 && rb == 2) || (ra == 3 && rb == 2) || (ra == 3 && rb == 3 && a->shape.dim[0] == b->shape.dim[0]);
  if (direct || ra < 2 || rb < 2 || a->dt != DT_F32 || b->dt != DT_F32 || a->shape.dim[ra - 1] != b->shape.dim[rb - 2])
    return op2(s, loc, OP_MATMUL, a, b, NULL);   /* the direct forms, and every error, from the shape rule */
  int64_t M = a->shape.dim[ra - 2], K = a->shape.dim[ra - 1], N = b->shape.dim[rb - 1];
  Shape la = dims_of(a->shape.dim, ra - 2), lb = dims_of(b->shape.dim, rb - 2), lead;
  if (!shape_broadcast(&la, &lb, &lead) || lead.rank + 2 > MAX_RANK) {
    char b1[128], b2[128];
    diag_error(s->d, loc, "matmul: the batch axes of %s and %s cannot broadcast", shape_str(&a->shape, a->dt, b1, sizeof b1),
               shape_str(&b->shape, b->dt, b2, sizeof b2));
    return v_err;
  }
  int64_t B = shape_numel(&lead);
  Shape out = lead;
  out.dim[out.rank++] = M;
  out.dim[out.rank++] = N;
  Node *y;
  if (rb == 2) {
    int64_t d[2] = {B * M, K};
    Shape s2 = dims_of(d, 2);
    Node *in[2] = {ir_reshape(s->g, a, &s2), b};
    y = ir_op(s->g, s->d, loc, OP_MATMUL, in, 2, NULL);
  } else {
    Shape ta = lead, tb = lead;
    ta.dim[ta.rank++] = M, ta.dim[ta.rank++] = K;
    tb.dim[tb.rank++] = K, tb.dim[tb.rank++] = N;
    int64_t da[3] = {B, M, K}, db[3] = {B, K, N};
    Shape a3 = dims_of(da, 3), b3 = dims_of(db, 3);
    Node *in[2] = {ir_reshape(s->g, ir_expand(s->g, a, &ta), &a3), ir_reshape(s->g, ir_expand(s->g, b, &tb), &b3)};
    y = ir_op(s->g, s->d, loc, OP_MATMUL, in, 2, NULL);
  }
  return y ? v_tensor(ir_reshape(s->g, y, &out)) : v_err;
}

/* concat(a, b, ..., axis=0): positional operands are gathered by eval_call */
static Value bi_concat_n(Sema *s, Expr *call, Node **in, int n, Arg *axis) {
  Attr at = {0};
  int64_t ax;
  if (n < 1) {
    diag_error(s->d, call->loc, "concat() needs at least one tensor");
    return v_err;
  }
  if (opt_int(s, axis, 0, "axis", &ax)) return v_err;
  if (norm_axis(s, axis->e ? axis->e->loc : call->loc, ax, in[0], &at.i[0])) return v_err;
  return v_tensor(ir_op(s->g, s->d, call->loc, OP_CONCAT, in, n, &at));
}

/* stride=, padding=, dilation=, output_padding= of fname: a compile-time
 * integer or a pair [h, w] of them, each >= lo; def for both when absent. */
static int pair_arg(Sema *s, Arg *a, int64_t def, int64_t lo, const char *fname, const char *what, int64_t out[2]) {
  out[0] = out[1] = def;
  if (!a->e) return 0;
  Loc loc[2] = {a->e->loc, a->e->loc};
  if (a->v.kind == V_LIST) {
    if (a->v.n != 2) {
      diag_error(s->d, a->e->loc, "%s: %s must be an integer or a pair [h, w], got a list of %d", fname, what, a->v.n);
      return -1;
    }
    for (int k = 0; k < 2; k++) {
      if (a->e->kind == EX_LIST) loc[k] = a->e->items[k]->loc;
      if (get_int(s, a->v.items[k], loc[k], what, &out[k])) return -1;
    }
  } else if (get_int(s, a->v, a->e->loc, what, &out[0])) {
    return -1;
  } else {
    out[1] = out[0];
  }
  for (int k = 0; k < 2; k++)
    if (out[k] < lo) {
      diag_error(s->d, loc[k], "%s: %s must be >= %lld, got %lld", fname, what, (long long)lo, (long long)out[k]);
      return -1;
    }
  return 0;
}

/* groups= of fname: a compile-time integer >= 1 (1 when absent). */
static int groups_arg(Sema *s, Arg *a, const char *fname, int64_t *g) {
  if (opt_int(s, a, 1, "groups", g)) return -1;
  if (*g < 1) {
    diag_error(s->d, a->e->loc, "%s: groups must be >= 1, got %lld", fname, (long long)*g);
    return -1;
  }
  return 0;
}

/* The convolution attrs (ops.def) of the stride, padding and dilation pairs. */
static void conv_attrs(Attr *at, const int64_t st[2], const int64_t pd[2], const int64_t dl[2], int64_t groups) {
  at->i[0] = st[0], at->i[1] = pd[0], at->i[2] = st[1], at->i[3] = pd[1];
  at->i[4] = dl[0], at->i[5] = dl[1], at->i[6] = groups;
}

/* y + bias b reshaped to [C,1,1], C = y's channels (arg: b's argument). */
static Value add_channel_bias(Sema *s, Expr *call, const char *fname, Value y, Node *w, Arg *arg) {
  if (y.kind == V_ERR || !arg->e) return y;
  Node *bias = arg_tensor(s, arg);
  if (!bias) return v_err;
  int64_t o = y.t->shape.dim[1];
  if (bias->shape.rank != 1 || bias->shape.dim[0] != o) {
    diag_error(s->d, arg->e->loc, "%s bias must be f32[%lld] for weights %s, got %s", fname, (long long)o, nshp(s, w),
               nshp(s, bias));
    return v_err;
  }
  Shape sh = {3, {o, 1, 1}};
  Value br = reshape_to(s, arg->e->loc, bias, &sh);
  if (br.kind == V_ERR) return v_err;
  return op2(s, call->loc, OP_ADD, y.t, br.t, NULL);
}

/* conv2d(x, w, b, stride=1, padding=0, dilation=1, groups=1) as
 * torch.nn.functional.conv2d: x [N,C,H,W], w [O,C/groups,KH,KW]; stride,
 * padding, dilation each an integer or a pair [h, w]; the bias is added as
 * b reshaped to [O,1,1].  The shape rule checks channels and sizes. */
static Value bi_conv2d(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  int64_t st[2], pd[2], dl[2], g;
  (void)b;
  Node *x = arg_tensor(s, &arg[0]), *w = arg_tensor(s, &arg[1]);
  if (!x || !w || pair_arg(s, &arg[3], 1, 1, "conv2d", "stride", st) ||
      pair_arg(s, &arg[4], 0, 0, "conv2d", "padding", pd) || pair_arg(s, &arg[5], 1, 1, "conv2d", "dilation", dl) ||
      groups_arg(s, &arg[6], "conv2d", &g))
    return v_err;
  conv_attrs(&at, st, pd, dl, g);
  return add_channel_bias(s, call, "conv2d", op2(s, call->loc, OP_CONV2D, x, w, &at), w, &arg[2]);
}

/* conv_transpose2d(x, w, b, stride=1, padding=0, output_padding=0,
 * groups=1, dilation=1) as torch.nn.functional.conv_transpose2d: x
 * [N,C_in,H,W], w [C_in,C_out/groups,KH,KW] -> [N,C_out,H_out,W_out], H_out
 * = (H-1) stride - 2 padding + dilation (KH-1) + output_padding + 1: the
 * input gradient of conv2d(., w) (CONV2D_BWD_X) with that output shape;
 * output_padding < stride or < dilation (torch's rule) picks among the
 * sizes whose convolution gives H back. */
static Value bi_conv_transpose2d(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  int64_t st[2], pd[2], op[2], dl[2], g;
  char bx[96], bw[96];
  const char *fn = "conv_transpose2d";
  (void)b;
  Node *x = arg_tensor(s, &arg[0]), *w = arg_tensor(s, &arg[1]);
  if (!x || !w || pair_arg(s, &arg[3], 1, 1, fn, "stride", st) || pair_arg(s, &arg[4], 0, 0, fn, "padding", pd) ||
      pair_arg(s, &arg[5], 0, 0, fn, "output_padding", op) || groups_arg(s, &arg[6], fn, &g) ||
      pair_arg(s, &arg[7], 1, 1, fn, "dilation", dl))
    return v_err;
  const Shape *xs = &x->shape, *ws = &w->shape;
  snprintf(bx, sizeof bx, "%s", nshp(s, x));
  snprintf(bw, sizeof bw, "%s", nshp(s, w));
  if (x->dt != DT_F32 || w->dt != DT_F32 || xs->rank != 4 || ws->rank != 4 || ws->dim[0] != xs->dim[1]) {
    diag_error(s->d, call->loc, "%s: expects f32 x[N,C_in,H,W] and w[C_in,C_out/groups,KH,KW], got %s and %s", fn, bx, bw);
    return v_err;
  }
  if (xs->dim[1] % g) {
    diag_error(s->d, call->loc, "%s: groups=%lld must divide the input channels (%lld)", fn, (long long)g,
               (long long)xs->dim[1]);
    return v_err;
  }
  at.shape = (Shape){4, {xs->dim[0], ws->dim[1] * g, 0, 0}};
  for (int k = 0; k < 2; k++) {
    if (op[k] >= st[k] && op[k] >= dl[k]) {
      diag_error(s->d, arg[5].e->loc, "%s: output_padding %lld must be smaller than the stride (%lld) or the dilation (%lld)",
                 fn, (long long)op[k], (long long)st[k], (long long)dl[k]);
      return v_err;
    }
    int64_t n = (xs->dim[2 + k] - 1) * st[k] - 2 * pd[k] + dl[k] * (ws->dim[2 + k] - 1) + op[k] + 1;
    if (n < 1) {
      diag_error(s->d, call->loc, "%s: padding [%lld, %lld] leaves no output for x %s and w %s", fn, (long long)pd[0],
                 (long long)pd[1], bx, bw);
      return v_err;
    }
    at.shape.dim[2 + k] = n;
  }
  conv_attrs(&at, st, pd, dl, g);
  return add_channel_bias(s, call, fn, op2(s, call->loc, OP_CONV2D_BWD_X, x, w, &at), w, &arg[2]);
}

/* maxpool2d(x, size, stride=size)  avgpool2d(x, size, stride=size) */
static Value bi_pool(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  Attr at = {0};
  if (get_int(s, arg[1].v, arg[1].e->loc, "the pool size", &at.i[0]) ||
      opt_int(s, &arg[2], at.i[0], "stride", &at.i[1]))
    return v_err;
  if (at.i[0] < 1 || at.i[1] < 1) {
    diag_error(s->d, call->loc, "%s needs size >= 1 and stride >= 1", b->name);
    return v_err;
  }
  return op1(s, call, b->op, arg_tensor(s, &arg[0]), &at);
}

/* The statistics of x over mask as NORMALIZE(x, mean, var): mean and the
 * biased variance in *mean and *var (keepdims), xhat returned; NULL after
 * reporting. */
static Node *normalized(Sema *s, Loc loc, Node *x, int64_t mask, double eps, Node **mean, Node **var) {
  Attr red = {0};
  red.i[0] = mask;
  red.i[1] = 1;
  *mean = ir_op(s->g, s->d, loc, OP_MEAN, &x, 1, &red);
  if (!*mean) return NULL;
  Node *mv[2] = {x, *mean};
  *var = ir_op(s->g, s->d, loc, OP_VAR, mv, 2, &red);
  if (!*var) return NULL;
  Attr na = {0};
  na.i[0] = mask;
  na.f[0] = eps;
  Node *in[3] = {x, *mean, *var};
  return ir_op(s->g, s->d, loc, OP_NORMALIZE, in, 3, &na);
}

/* y * w + b with w and b ([D]) reshaped to sh (x's axis of them kept). */
static Value affine(Sema *s, Loc loc, Node *y, Node *w, Node *b, const Shape *sh) {
  Value wr = reshape_to(s, loc, w, sh), br = reshape_to(s, loc, b, sh);
  if (wr.kind == V_ERR || br.kind == V_ERR) return v_err;
  Node *yw[2] = {y, wr.t};
  Node *t = ir_op(s->g, s->d, loc, OP_MUL, yw, 2, NULL);
  Node *tb[2] = {t, br.t};
  return t ? v_tensor(ir_op(s->g, s->d, loc, OP_ADD, tb, 2, NULL)) : v_err;
}

/* w and b of a normalization over channels of size D: both f32[D]. */
static int want_affine(Sema *s, Expr *call, Arg *arg, int64_t D, Node **w, Node **b) {
  if (!arg[1].e) return 0;
  *w = arg_tensor(s, &arg[1]);
  *b = arg_tensor(s, &arg[2]);
  if (!*w || !*b) return -1;
  for (int k = 0; k < 2; k++) {
    const Node *t = k ? *b : *w;
    if (t->dt != DT_F32 || t->shape.rank != 1 || t->shape.dim[0] != D) {
      diag_error(s->d, arg[1 + k].e->loc, "%s: %s must be f32[%lld] (the %s of x), got %s", call->text, k ? "b" : "w",
                 (long long)D, !strcmp(call->text, "layer_norm") ? "last axis" : "channels", nshp(s, t));
      return -1;
    }
  }
  return 0;
}

/* layer_norm(x, w, b, eps=1e-5), layer_norm(x, eps=1e-5) over the last axis,
 * as torch.nn.functional.layer_norm (biased variance): MEAN, VAR and one
 * NORMALIZE (whose gradient is one NORMALIZE_BWD kernel); the affine
 * w * xhat + b fuses with the normalization into one kernel. */
static Value bi_layer_norm(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  (void)b;
  double eps = 1e-5;
  Node *x = arg_tensor(s, &arg[0]), *w = NULL, *bb = NULL, *mean, *var;
  if (!x || opt_num(s, &arg[3], 1e-5, "eps", &eps)) return v_err;
  if (x->dt != DT_F32 || x->shape.rank < 1) {
    diag_error(s->d, arg[0].e->loc, "layer_norm needs an f32 tensor of rank 1 or more, got %s", nshp(s, x));
    return v_err;
  }
  if (!(eps > 0)) {
    diag_error(s->d, arg[3].e->loc, "layer_norm: eps must be > 0, got %g", eps);
    return v_err;
  }
  if ((arg[1].e == NULL) != (arg[2].e == NULL)) {
    diag_error(s->d, call->loc, "layer_norm takes both w and b, or neither");
    return v_err;
  }
  int r = x->shape.rank;
  int64_t D = x->shape.dim[r - 1];
  if (want_affine(s, call, arg, D, &w, &bb)) return v_err;
  Node *y = normalized(s, call->loc, x, (int64_t)1 << (r - 1), eps, &mean, &var);
  if (!y) return v_err;
  if (!w) return v_tensor(y);
  Shape sh = {1, {D}};
  return affine(s, call->loc, y, w, bb, &sh);
}

/* A running statistic of batch_norm, the param PREFIX.name (created at its
 * first use, shared by later calls with the same prefix, as params are). */
static Node *running_stat(Sema *s, Loc loc, const char *prefix, const char *name, int64_t C, int ones) {
  const char *full = arena_printf(s->a, "%s.%s", prefix, name);
  Shape sh = {1, {C}};
  Node *n = map_get(&s->params, full);
  if (n && (!n->running || !shape_eq(&n->shape, &sh))) {
    diag_error(s->d, loc, "batch_norm's running statistic '%s' clashes with the param %s %s", full, full, nshp(s, n));
    return NULL;
  }
  if (!n) {
    n = ir_leaf(s->g, loc, OP_PARAM, DT_F32, &sh, full);
    n->init.kind = ones ? INIT_ONES : INIT_ZEROS;
    n->running = 1;
    map_put(s->a, &s->params, n->name, n);
    push_named(s, &s->g->params, &s->g->nparams, &s->cap_par, n->name, n);
  }
  return n;
}

/* batch_norm(x, w, b, momentum=0.1, eps=1e-5), x [N, C] or [N, C, H, W], as
 * torch.nn.BatchNorm1d/2d.  Training: the batch's statistics (MEAN, VAR,
 * NORMALIZE as layer_norm) and a RUNNING_STATS update of PREFIX.running_mean
 * and PREFIX.running_var (spec 6, Modes); evaluation: those two. */
static Value bi_batch_norm(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  (void)b;
  double mom = 0.1, eps = 1e-5;
  Node *x = arg_tensor(s, &arg[0]), *w = NULL, *bb = NULL;
  if (!x || opt_num(s, &arg[3], 0.1, "momentum", &mom) || opt_num(s, &arg[4], 1e-5, "eps", &eps)) return v_err;
  int r = x->shape.rank;
  if (x->dt != DT_F32 || (r != 2 && r != 4)) {
    diag_error(s->d, arg[0].e->loc, "batch_norm needs x f32[N, C] or f32[N, C, H, W], got %s", nshp(s, x));
    return v_err;
  }
  if (!(mom >= 0 && mom <= 1)) {
    diag_error(s->d, arg[3].e->loc, "batch_norm: momentum must be in [0, 1], got %g", mom);
    return v_err;
  }
  if (!(eps > 0)) {
    diag_error(s->d, arg[4].e->loc, "batch_norm: eps must be > 0, got %g", eps);
    return v_err;
  }
  int64_t C = x->shape.dim[1];
  if (want_affine(s, call, arg, C, &w, &bb)) return v_err;
  const char *prefix = s->prefix ? s->prefix : s->rhs == call ? s->rhs_name : NULL;
  if (!prefix) {
    diag_error(s->d, call->loc,
               "batch_norm keeps running statistics named after its assignment: at file level its call must be the "
               "whole right-hand side (h = batch_norm(...)), or inside a layer");
    return v_err;
  }
  const char *key = arena_printf(s->a, "#batch_norm %s", prefix);
  if (map_get(s->frame, key)) {
    diag_error(s->d, call->loc,
               "a second batch_norm with the prefix '%s' would share its running statistics; give each its own layer "
               "or assignment", prefix);
    return v_err;
  }
  map_put(s->a, s->frame, key, x);
  Node *rm = running_stat(s, call->loc, prefix, "running_mean", C, 0);
  Node *rv = running_stat(s, call->loc, prefix, "running_var", C, 1);
  if (!rm || !rv) return v_err;
  Shape ks = {r, {1, C, 1, 1}};
  int64_t mask = r == 2 ? 1 : 0xD, count = shape_numel(&x->shape) / (C ? C : 1);
  Node *y;
  if (s->o->training) {
    if (count <= 1) {
      diag_error(s->d, call->loc, "batch_norm needs more than one value per channel in training, got x %s",
                 nshp(s, x));
      return v_err;
    }
    Node *mean, *var;
    if (!(y = normalized(s, call->loc, x, mask, eps, &mean, &var))) return v_err;
    Shape cs = {1, {C}};
    Node *in[4] = {rm, rv, ir_reshape(s->g, mean, &cs), ir_reshape(s->g, var, &cs)};
    Attr ua = {0};
    ua.f[0] = mom;
    ua.i[0] = count;
    Node *u = ir_op(s->g, s->d, call->loc, OP_RUNNING_STATS, in, 4, &ua);
    if (!u) return v_err;
    graph_add_update(s->g, u);
  } else {
    Value m = reshape_to(s, call->loc, rm, &ks), v = reshape_to(s, call->loc, rv, &ks);
    if (m.kind == V_ERR || v.kind == V_ERR) return v_err;
    Shape sc = {0, {0}};
    Node *d[2] = {x, m.t}, *ve[2] = {v.t, ir_const(s->g, call->loc, &sc, eps)};
    Node *den = ir_op(s->g, s->d, call->loc, OP_ADD, ve, 2, NULL);
    den = den ? ir_op(s->g, s->d, call->loc, OP_SQRT, &den, 1, NULL) : NULL;
    Node *q[2] = {ir_op(s->g, s->d, call->loc, OP_SUB, d, 2, NULL), den};
    if (!q[0] || !q[1] || !(y = ir_op(s->g, s->d, call->loc, OP_DIV, q, 2, NULL))) return v_err;
  }
  return w ? affine(s, call->loc, y, w, bb, &ks) : v_tensor(y);
}

/* dim(x, k): a compile-time integer */
static Value bi_dim(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  int64_t k;
  (void)b;
  (void)call;
  if (arg[0].v.kind != V_TENSOR) {
    diag_error(s->d, arg[0].e->loc, "dim() needs a tensor");
    return v_err;
  }
  if (get_int(s, arg[1].v, arg[1].e->loc, "the axis of dim()", &k) ||
      norm_axis(s, arg[1].e->loc, k, arg[0].v.t, &k))
    return v_err;
  return v_int(arg[0].v.t->shape.dim[k]);
}

/* The builtin of each op users spell: ops.def's sema column names bi_<sema>
 * and its params; bi_none marks the ops users do not spell. */
static Value bi_none(Sema *s, const Builtin *b, Expr *call, Arg *arg) {
  (void)b;
  (void)arg;
  diag_error(s->d, call->loc, "unknown function '%s'", call->text);
  return v_err;
}
#define bi_concat NULL  /* variadic operands, `axis` named: call_concat */

static const Builtin op_builtins[OP_COUNT] = {
#define OP(e, name, nin, flags, shape, kernel, vjp, lower, heavy, attrs, sema, nreq, ...) \
  [OP_##e] = {name, bi_##sema, OP_##e, nreq, {__VA_ARGS__}},
#include "ir/ops.def"
};

/* Builtins that are no op of their own: shorthands and compile-time values. */
static const Builtin sugar[] = {
  {"flatten", bi_flatten, OP_RESHAPE, 1, {"x"}},
  {"zeros", bi_fill, OP_CONST, 1, {"shape"}},
  {"ones", bi_fill, OP_CONST, 1, {"shape"}},
  {"full", bi_fill, OP_CONST, 2, {"shape", "value"}},
  {"dim", bi_dim, OP_INPUT, 2, {"x", "k"}},
  {"layer_norm", bi_layer_norm, OP_NORMALIZE, 1, {"x", "w", "b", "eps"}},
  {"batch_norm", bi_batch_norm, OP_NORMALIZE, 3, {"x", "w", "b", "momentum", "eps"}},
  {"conv_transpose2d", bi_conv_transpose2d, OP_CONV2D_BWD_X, 2,
   {"x", "w", "b", "stride", "padding", "output_padding", "groups", "dilation"}},
};

static const Builtin *find_builtin(const char *name) {
  for (int k = 0; k < OP_COUNT; k++)
    if (op_builtins[k].fn != bi_none && !strcmp(op_builtins[k].name, name)) return &op_builtins[k];
  for (size_t k = 0; k < sizeof sugar / sizeof *sugar; k++)
    if (!strcmp(sugar[k].name, name)) return &sugar[k];
  return NULL;
}

/* concat: every positional argument is an operand; `axis` is named. */
static Value call_concat(Sema *s, Expr *call) {
  Node **in = arena_alloc(s->a, sizeof(Node *) * (size_t)(call->nitems + 1));
  Arg axis = {0};
  int n = 0, bad = 0;
  for (int k = 0; k < call->nitems; k++) {
    const char *an = call->argnames[k];
    if (an && strcmp(an, "axis")) {
      diag_error(s->d, call->argloc[k], "concat() has no argument named '%s'", an);
      return v_err;
    }
    if (an) {
      axis.e = call->items[k];
      axis.v = eval(s, axis.e);
      bad |= axis.v.kind == V_ERR;
      continue;
    }
    Value v = eval(s, call->items[k]);
    in[n] = to_tensor(s, v, call->items[k]->loc);
    bad |= !in[n++];
  }
  if (bad) return v_err;
  return bi_concat_n(s, call, in, n, &axis);
}

static Value call_builtin(Sema *s, const Builtin *b, Expr *call) {
  Arg arg[MAX_ARGS];
  if (!b->fn) return call_concat(s, call);
  if (match_args(s, call, b->name, b->params, nparams_of(b->params), b->nreq, arg) || eval_args(s, arg)) return v_err;
  return b->fn(s, b, call, arg);
}

/* ------------------------------------------------------ functions */

static int stmts_make_layer(Sema *s, Stmt **body, int n);

/* A call of batch_norm anywhere in e: it keeps running statistics. */
static int calls_batch_norm(const Expr *e) {
  if (!e) return 0;
  if (e->kind == EX_CALL && !strcmp(e->text, "batch_norm")) return 1;
  if (calls_batch_norm(e->lhs) || calls_batch_norm(e->rhs)) return 1;
  for (int k = 0; k < e->nitems; k++)
    if (calls_batch_norm(e->items[k])) return 1;
  return 0;
}

/* A layer declares a param, directly, by calling batch_norm (its running
 * statistics) or by assigning a layer call. */
static int fn_is_layer(Sema *s, FnDef *fn) {
  if (fn->layer_state == 2) return fn->is_layer;
  if (fn->layer_state == 1) return 0;   /* recursion: reported when called */
  fn->layer_state = 1;
  fn->is_layer = stmts_make_layer(s, fn->body, fn->nbody);
  for (int k = 0; k < fn->nrets && !fn->is_layer; k++) fn->is_layer = calls_batch_norm(fn->rets[k]);
  fn->layer_state = 2;
  return fn->is_layer;
}

static int stmts_make_layer(Sema *s, Stmt **body, int n) {
  for (int i = 0; i < n; i++) {
    Stmt *st = body[i];
    if (st->kind == ST_PARAM || calls_batch_norm(st->value)) return 1;
    if (st->kind == ST_FOR && stmts_make_layer(s, st->body, st->nbody)) return 1;
    if (st->kind == ST_ASSIGN && st->value->kind == EX_CALL) {
      FnDef *f = map_get(&s->fns, st->value->text);
      if (f && fn_is_layer(s, f)) return 1;
    }
  }
  return 0;
}

/* Inlines fn at a call; prefix names its params (layers only). */
static Value call_user(Sema *s, FnDef *fn, Expr *call, const char *prefix) {
  Arg arg[MAX_ARGS];
  Value *vals;
  if (fn->active) {
    diag_error(s->d, call->loc, "recursive call of '%s' (functions are inlined, so recursion is not allowed)", fn->name);
    return v_err;
  }
  if (s->depth >= FE_MAX_CALL_DEPTH) {
    diag_error(s->d, call->loc, "calls nested more than %d deep", FE_MAX_CALL_DEPTH);
    return v_err;
  }
  if (fn->nparams > MAX_ARGS || call->nitems > MAX_ARGS) {
    /* many parameters: positional only */
    if (call->nitems != fn->nparams) {
      diag_error(s->d, call->loc, "%s() takes %d argument%s, got %d", fn->name, fn->nparams,
                 fn->nparams == 1 ? "" : "s", call->nitems);
      return v_err;
    }
    vals = arena_alloc(s->a, sizeof(Value) * (size_t)call->nitems);
    for (int k = 0; k < call->nitems; k++)
      if ((vals[k] = eval(s, call->items[k])).kind == V_ERR) return v_err;
  } else {
    if (match_args(s, call, fn->name, fn->params, fn->nparams, fn->nparams, arg) || eval_args(s, arg))
      return v_err;
    vals = arena_alloc(s->a, sizeof(Value) * (size_t)(fn->nparams + 1));
    for (int k = 0; k < fn->nparams; k++) vals[k] = arg[k].v;
  }
  Map *frame = arena_alloc(s->a, sizeof *frame), *saved = s->frame;
  const char *saved_prefix = s->prefix;
  s->frame = frame;
  if (prefix) s->prefix = prefix;
  fn->active = 1;
  s->depth++;
  for (int k = 0; k < fn->nparams; k++) bind(s, fn->params[k], fn->paramloc[k], vals[k], 0);
  exec_stmts(s, fn->body, fn->nbody);
  Value r = v_none;
  if (fn->nrets == 1) {
    r = eval(s, fn->rets[0]);
  } else if (fn->nrets > 1) {
    r.kind = V_TUPLE;
    r.n = fn->nrets;
    r.items = arena_alloc(s->a, sizeof(Value) * (size_t)fn->nrets);
    for (int k = 0; k < fn->nrets; k++)
      if ((r.items[k] = eval(s, fn->rets[k])).kind == V_ERR) r.kind = V_ERR;
  }
  s->depth--;
  fn->active = 0;
  s->frame = saved;
  s->prefix = saved_prefix;
  return r;
}

/* prefix: the layer name when this call is an assignment's whole right side. */
static Value eval_call(Sema *s, Expr *e, const char *prefix) {
  FnDef *fn = map_get(&s->fns, e->text);
  if (fn) {
    if (fn_is_layer(s, fn) && !prefix) {
      diag_error(s->d, e->loc,
                 "layer '%s' declares params, so its call must be the whole right-hand side of an assignment (h = %s(...))",
                 fn->name, fn->name);
      return v_err;
    }
    return call_user(s, fn, e, fn_is_layer(s, fn) ? prefix : NULL);
  }
  const Builtin *b = find_builtin(e->text);
  if (b) return call_builtin(s, b, e);
  if (lookup(s, e->text)) diag_error(s->d, e->loc, "'%s' is not a function", e->text);
  else diag_error(s->d, e->loc, "unknown function '%s'", e->text);
  return v_err;
}

/* ---------------------------------------------------- expressions */

static Value eval_name(Sema *s, Expr *e) {
  Binding *b = lookup(s, e->text);
  if (b) return b->v;
  int64_t *sym = map_get(&s->syms, e->text);
  if (sym) return v_int(*sym);
  const Define *def = find_def(s, e->text);
  if (def) {
    Value v = def_value(def);
    if (v.kind == V_INT) sym_record(s, e->text, v.i);
    return v;
  }
  if (!strcmp(e->text, "inf")) return v_float(INFINITY);   /* the builtin constant (spec 6), unless bound */
  if (map_get(&s->fns, e->text) || find_builtin(e->text))
    diag_error(s->d, e->loc, "'%s' is a function; call it as %s(...)", e->text, e->text);
  else
    diag_error(s->d, e->loc, "unknown name '%s'", e->text);
  return v_err;
}

/* b ** p for p >= 0; |b| >= 2 overflows within 63 steps, so this is short. */
static int64_t ipow(int64_t b, int64_t p, int *ovf) {
  int64_t r = 1;
  if (b == 0 || b == 1) return p == 0 ? 1 : b;
  if (b == -1) return p % 2 ? -1 : 1;
  while (p-- > 0 && !*ovf) *ovf = __builtin_mul_overflow(r, b, &r);
  return r;
}

/* Both operands compile-time: fold.  int op int stays int, except '/'. */
static Value fold_bin(Sema *s, Expr *e, Value a, Value b) {
  const char *op = e->op;
  double x = num_of(a), y = num_of(b);
  int ints = a.kind == V_INT && b.kind == V_INT, ovf = 0;
  int64_t r = 0;
  if (!strcmp(op, "==")) return v_int(x == y);
  if (!strcmp(op, "!=")) return v_int(x != y);
  if (!strcmp(op, "<")) return v_int(ints ? a.i < b.i : x < y);
  if (!strcmp(op, "<=")) return v_int(ints ? a.i <= b.i : x <= y);
  if (!strcmp(op, ">")) return v_int(ints ? a.i > b.i : x > y);
  if (!strcmp(op, ">=")) return v_int(ints ? a.i >= b.i : x >= y);
  if (!strcmp(op, "@")) {
    diag_error(s->d, e->loc, "'@' needs tensor operands, not compile-time numbers");
    return v_err;
  }
  if (!strcmp(op, "/")) return v_float(x / y);
  if (!ints || (!strcmp(op, "**") && b.i < 0)) {
    switch (*op) {
    case '+': return v_float(x + y);
    case '-': return v_float(x - y);
    default: return v_float(op[1] ? pow(x, y) : x * y);
    }
  }
  switch (*op) {
  case '+': ovf = __builtin_add_overflow(a.i, b.i, &r); break;
  case '-': ovf = __builtin_sub_overflow(a.i, b.i, &r); break;
  default: r = op[1] ? ipow(a.i, b.i, &ovf) : (ovf = __builtin_mul_overflow(a.i, b.i, &r), r); break;
  }
  if (ovf) {
    diag_error(s->d, e->loc, "integer overflow in a compile-time expression");
    return v_err;
  }
  return v_int(r);
}

static Op bin_op(const char *op) {
  static const struct { const char *s; Op op; } t[] = {
    {"+", OP_ADD}, {"-", OP_SUB}, {"*", OP_MUL}, {"/", OP_DIV}, {"@", OP_MATMUL},
    {"==", OP_EQ}, {"!=", OP_NE}, {"<", OP_LT}, {"<=", OP_LE}, {">", OP_GT}, {">=", OP_GE},
  };
  for (size_t k = 0; k < sizeof t / sizeof *t; k++)
    if (!strcmp(t[k].s, op)) return t[k].op;
  return OP_POW;
}

static Value eval_bin(Sema *s, Expr *e) {
  Value a = eval(s, e->lhs), b = eval(s, e->rhs);
  if (a.kind == V_ERR || b.kind == V_ERR) return v_err;
  if (is_num(a) && is_num(b)) return fold_bin(s, e, a, b);
  Op op = bin_op(e->op);
  if (op == OP_POW) {
    Attr at = {0};
    if (!is_num(b)) {
      diag_error(s->d, e->rhs->loc, "the exponent of '**' must be a compile-time number");
      return v_err;
    }
    at.f[0] = num_of(b);
    Node *x = to_tensor(s, a, e->lhs->loc);
    if (!x) return v_err;
    return v_tensor(ir_op(s->g, s->d, e->loc, OP_POW, &x, 1, &at));
  }
  if (op == OP_MATMUL) return matmul(s, e->loc, to_tensor(s, a, e->lhs->loc), to_tensor(s, b, e->rhs->loc));
  return op2(s, e->loc, op, to_tensor(s, a, e->lhs->loc), to_tensor(s, b, e->rhs->loc), NULL);
}

static Value eval_neg(Sema *s, Expr *e) {
  Value v = eval(s, e->lhs);
  if (v.kind == V_INT && v.i == INT64_MIN) {
    diag_error(s->d, e->loc, "integer overflow in a compile-time expression");
    return v_err;
  }
  if (v.kind == V_INT) return v_int(-v.i);
  if (v.kind == V_FLOAT) return v_float(-v.f);
  Node *x = to_tensor(s, v, e->lhs->loc);
  if (!x) return v_err;
  return v_tensor(ir_op(s->g, s->d, e->loc, OP_NEG, &x, 1, NULL));
}

static Value eval_list(Sema *s, Expr *e) {
  Value v = {V_LIST, 0, 0, NULL, NULL, e->nitems};
  v.items = arena_alloc(s->a, sizeof(Value) * (size_t)(e->nitems + 1));
  for (int k = 0; k < e->nitems; k++)
    if ((v.items[k] = eval(s, e->items[k])).kind == V_ERR) return v_err;
  return v;
}

/* One index item on axis k of x: start and size; *drop for an integer index. */
static int index_axis(Sema *s, Expr *it, int k, const Node *x, int64_t *start, int64_t *size, int *drop) {
  int64_t n = x->shape.dim[k], lo = 0, hi = n;
  if (it->kind != EX_SLICE) {
    if (get_int(s, eval(s, it), it->loc, "an index", &lo)) return -1;
    int64_t i = lo < 0 ? lo + n : lo;
    if (i < 0 || i >= n) {
      diag_error(s->d, it->loc, "index %lld is out of range for axis %d of %s", (long long)lo, k, nshp(s, x));
      return -1;
    }
    *start = i;
    *size = 1;
    *drop = 1;
    return 0;
  }
  if (it->lhs && get_int(s, eval(s, it->lhs), it->lhs->loc, "a slice bound", &lo)) return -1;
  if (it->rhs && get_int(s, eval(s, it->rhs), it->rhs->loc, "a slice bound", &hi)) return -1;
  int64_t a = lo < 0 ? lo + n : lo, b = hi < 0 ? hi + n : hi;
  if (a < 0 || b > n || a >= b) {
    diag_error(s->d, it->loc, "slice %lld:%lld is empty or out of range for axis %d of %s",
               (long long)lo, (long long)hi, k, nshp(s, x));
    return -1;
  }
  *start = a;
  *size = b - a;
  *drop = 0;
  return 0;
}

/* x[i, a:b, ...] -> SLICE, then RESHAPE dropping integer-indexed axes. */
static Value eval_index(Sema *s, Expr *e) {
  Value xv = eval(s, e->lhs);
  Attr at = {0};
  Shape kept = {0, {0}};
  int any = 0, ndrop = 0;
  if (xv.kind == V_ERR) return v_err;
  if (xv.kind != V_TENSOR) {
    diag_error(s->d, e->loc, "only a tensor can be indexed");
    return v_err;
  }
  Node *x = xv.t;
  if (e->nitems > x->shape.rank) {
    diag_error(s->d, e->loc, "%d indices for %s", e->nitems, nshp(s, x));
    return v_err;
  }
  at.shape = x->shape;
  for (int k = 0; k < x->shape.rank; k++) {
    int drop = 0;
    if (k < e->nitems && index_axis(s, e->items[k], k, x, &at.i[k], &at.shape.dim[k], &drop))
      return v_err;
    any |= at.shape.dim[k] != x->shape.dim[k] || drop;
    ndrop += drop;
    if (!drop) kept.dim[kept.rank++] = at.shape.dim[k];
  }
  if (!any) return xv;
  Node *y = ir_op(s->g, s->d, e->loc, OP_SLICE, &x, 1, &at);
  if (!y || !ndrop) return v_tensor(y);
  return reshape_to(s, e->loc, y, &kept);
}

static Value eval(Sema *s, Expr *e) {
  switch (e->kind) {
  case EX_NUM:
    if (e->is_int) return v_int(e->ival);
    return v_float(e->num);
  case EX_BOOL: return v_int(e->ival);
  case EX_NAME: return eval_name(s, e);
  case EX_LIST: return eval_list(s, e);
  case EX_NEG: return eval_neg(s, e);
  case EX_BIN: return eval_bin(s, e);
  case EX_CALL: return eval_call(s, e, NULL);
  case EX_INDEX: return eval_index(s, e);
  case EX_SLICE: break;
  }
  diag_error(s->d, e->loc, "a slice is only allowed inside []");
  return v_err;
}

/* ----------------------------------------------------- statements */

static const Feed *find_feed(Sema *s, const char *input) {
  for (int i = 0; i < s->o->nfeeds; i++)
    if (s->o->feeds[i].name && !strcmp(s->o->feeds[i].name, input)) return &s->o->feeds[i];
  return NULL;
}

/* A symbolic dim: -D, then the feed's sample count (first dim of an input),
 * then the batch (first dim of an input). */
static int bind_symbol(Sema *s, Expr *e, int first, const Feed *feed, int64_t *out) {
  int64_t *bound = map_get(&s->syms, e->text);
  const Define *def = bound ? NULL : find_def(s, e->text);
  if (bound) *out = *bound;
  else if (def && def_value(def).kind == V_INT) *out = def_value(def).i;
  else if (def) {
    diag_error(s->d, e->loc, "-D %s must be an integer to size a dimension", e->text);
    return -1;
  } else if (first) {
    int64_t *fed = map_get(&s->fed, e->text);
    *out = feed ? feed->nsamples : fed ? *fed : s->batch;
  }
  else {
    diag_error(s->d, e->loc, "symbolic dimension '%s' is not bound; use -D %s=VALUE", e->text, e->text);
    return -1;
  }
  if (first && feed && feed->nsamples != *out) {
    diag_error(s->d, e->loc, "symbolic dimension '%s' is bound to %lld and to %lld (the samples fed to '%s')",
               e->text, (long long)*out, (long long)feed->nsamples, feed->name);
    return -1;
  }
  if (!bound) sym_record(s, e->text, *out);
  return 0;
}

/* The dims of an input or param type; inputs bind their symbolic names. */
static int eval_type(Sema *s, Stmt *st, Shape *sh) {
  int64_t numel = 1;
  const Feed *feed = st->kind == ST_INPUT ? find_feed(s, st->names[0]) : NULL;
  if (st->ndims > MAX_RANK) {
    diag_error(s->d, st->typeloc, "rank %d exceeds the maximum of %d", st->ndims, MAX_RANK);
    return -1;
  }
  memset(sh, 0, sizeof *sh);
  sh->rank = st->ndims;
  for (int k = 0; k < st->ndims; k++) {
    Expr *e = st->dims[k];
    if (e->kind == EX_NAME && !lookup(s, e->text)) {
      if (bind_symbol(s, e, st->kind == ST_INPUT && k == 0, feed, &sh->dim[k])) return -1;
    } else if (get_int(s, eval(s, e), e->loc, "a dimension", &sh->dim[k])) {
      return -1;
    }
    if (check_dim(s, e->loc, sh->dim[k], &numel)) return -1;
  }
  return 0;
}

static void exec_input(Sema *s, Stmt *st) {
  Shape sh;
  const char *name = st->names[0];
  if (s->frame != s->globals) {
    diag_error(s->d, st->loc, "an input must be declared at file level");
    return;
  }
  if (lookup(s, name)) {
    diag_error(s->d, st->nameloc[0], "duplicate name '%s'", name);
    return;
  }
  if (eval_type(s, st, &sh)) {
    bind(s, name, st->nameloc[0], v_err, 'i');
    return;
  }
  Node *n = ir_leaf(s->g, st->nameloc[0], OP_INPUT, st->dt, &sh, name);
  push_named(s, &s->g->inputs, &s->g->ninputs, &s->cap_in, n->name, n);
  bind(s, name, st->nameloc[0], v_tensor(n), 'i');
}

typedef struct InitSpec {
  const char *name;
  InitKind kind;
  int nreq;
  const char *params[MAX_ARGS];
  double a, b;      /* defaults */
  int fans;         /* needs rank >= 2 for fan_in/fan_out */
} InitSpec;

static const InitSpec inits[] = {
  {"zeros", INIT_ZEROS, 0, {NULL}, 0, 0, 0},
  {"ones", INIT_ONES, 0, {NULL}, 0, 0, 0},
  {"full", INIT_FULL, 1, {"value"}, 0, 0, 0},
  {"uniform", INIT_UNIFORM, 0, {"a", "b"}, 0, 1, 0},
  {"normal", INIT_NORMAL, 0, {"mean", "std"}, 0, 1, 0},
  {"glorot_uniform", INIT_GLOROT_UNIFORM, 0, {NULL}, 0, 0, 1},
  {"glorot_normal", INIT_GLOROT_NORMAL, 0, {NULL}, 0, 0, 1},
  {"he_uniform", INIT_HE_UNIFORM, 0, {NULL}, 0, 0, 1},
  {"he_normal", INIT_HE_NORMAL, 0, {NULL}, 0, 0, 1},
};

static int eval_init(Sema *s, Stmt *st, const Shape *sh, Init *init) {
  Expr *e = st->init;
  const InitSpec *spec = NULL;
  Arg arg[MAX_ARGS];
  memset(init, 0, sizeof *init);
  if (!e) {
    init->kind = sh->rank >= 2 ? INIT_GLOROT_UNIFORM : INIT_ZEROS;
    return 0;
  }
  for (size_t k = 0; k < sizeof inits / sizeof *inits; k++)
    if (!strcmp(inits[k].name, e->text)) spec = &inits[k];
  if (!spec) {
    diag_error(s->d, e->loc, "unknown initializer '%s'", e->text);
    return -1;
  }
  if (spec->fans && sh->rank < 2) {
    diag_error(s->d, e->loc, "%s needs a param of rank >= 2 (fan-in and fan-out), got %s",
               spec->name, shp(s, sh, st->dt));
    return -1;
  }
  init->kind = spec->kind;
  if (e->kind == EX_NAME) {
    if (spec->nreq) {
      diag_error(s->d, e->loc, "initializer %s needs an argument: %s(value)", spec->name, spec->name);
      return -1;
    }
    init->a = spec->a;
    init->b = spec->b;
    return 0;
  }
  if (match_args(s, e, spec->name, spec->params, nparams_of(spec->params), spec->nreq, arg) || eval_args(s, arg) ||
      opt_num(s, &arg[0], spec->a, spec->params[0] ? spec->params[0] : "argument", &init->a) ||
      opt_num(s, &arg[1], spec->b, spec->params[1] ? spec->params[1] : "argument", &init->b))
    return -1;
  return 0;
}

static void exec_param(Sema *s, Stmt *st) {
  Shape sh;
  Init init;
  const char *name = st->names[0];
  if (map_get(s->frame, name)) {
    diag_error(s->d, st->nameloc[0], "duplicate name '%s'", name);
    return;
  }
  if (st->dt != DT_F32) {
    diag_error(s->d, st->typeloc, "a param must be f32");
    bind(s, name, st->nameloc[0], v_err, 'p');
    return;
  }
  if (eval_type(s, st, &sh) || eval_init(s, st, &sh, &init)) {
    bind(s, name, st->nameloc[0], v_err, 'p');
    return;
  }
  const char *full = s->prefix ? arena_printf(s->a, "%s.%s", s->prefix, name) : arena_strdup(s->a, name);
  Node *n = map_get(&s->params, full);
  if (n && !shape_eq(&n->shape, &sh)) {
    diag_error(s->d, st->nameloc[0], "param '%s' declared again as %s; it was %s", full,
               shp(s, &sh, DT_F32), nshp(s, n));
    bind(s, name, st->nameloc[0], v_err, 'p');
    return;
  }
  if (!n) {
    n = ir_leaf(s->g, st->nameloc[0], OP_PARAM, DT_F32, &sh, full);
    n->init = init;
    map_put(s->a, &s->params, n->name, n);
    push_named(s, &s->g->params, &s->g->nparams, &s->cap_par, n->name, n);
  }
  bind(s, name, st->nameloc[0], v_tensor(n), 'p');
}

static void exec_const(Sema *s, Stmt *st) {
  const Define *def = s->frame == s->globals ? find_def(s, st->names[0]) : NULL;
  Value v = def ? def_value(def) : eval(s, st->value);
  if (v.kind != V_ERR && !is_num(v)) {
    diag_error(s->d, st->value->loc, "const '%s' must be a compile-time number", st->names[0]);
    v = v_err;
  }
  bind(s, st->names[0], st->nameloc[0], v, 0);
}

static int at_file_level(Sema *s, Stmt *st, const char *what) {
  if (s->frame == s->globals) return 1;
  diag_error(s->d, st->loc, "%s must be at file level, not inside a function", what);
  return 0;
}

/* output NAME [= e], metric NAME = e, loss [NAME] = e */
static void exec_result(Sema *s, Stmt *st) {
  static const char *what[] = {"output", "loss", "metric"};
  int kind = st->kind == ST_OUTPUT ? 0 : st->kind == ST_LOSS ? 1 : 2;
  const char *name = st->nnames ? st->names[0] : NULL;
  Loc loc = st->value ? st->value->loc : st->nameloc[0];
  if (!at_file_level(s, st, what[kind])) return;
  Value v = st->value ? eval(s, st->value) : eval_name(s, &(Expr){.kind = EX_NAME, .loc = loc, .text = name});
  Node *n = to_tensor(s, v, loc);
  if (name && st->value && bind(s, name, st->nameloc[0], n ? v_tensor(n) : v_err, 0)) return;
  if (!n) return;
  if (kind == 1 && !name && s->g->loss) {
    diag_error(s->d, st->loc, "loss is defined twice");
    return;
  }
  if (kind == 1 && (n->shape.rank != 0 || n->dt != DT_F32)) {
    diag_error(s->d, loc, "loss must be a scalar f32, got %s", nshp(s, n));
    return;
  }
  if (kind == 1 && !name) {
    s->g->loss = n;
    return;
  }
  if (map_get(&s->outs, name)) {
    diag_error(s->d, st->nameloc[0], "duplicate %s name '%s'", what[kind], name);
    return;
  }
  map_put(s->a, &s->outs, name, n);
  if (kind == 0) push_named(s, &s->g->outputs, &s->g->noutputs, &s->cap_out, name, n);
  else if (kind == 1) push_named(s, &s->g->losses, &s->g->nlosses, &s->cap_loss, name, n);
  else push_named(s, &s->g->metrics, &s->g->nmetrics, &s->cap_met, name, n);
}

static void exec_assign(Sema *s, Stmt *st) {
  Expr *e = st->value, *saved_rhs = s->rhs;
  const char *saved_name = s->rhs_name;
  Value v;
  s->rhs = e->kind == EX_CALL ? e : NULL;
  s->rhs_name = st->names[0];
  if (e->kind == EX_CALL && map_get(&s->fns, e->text))
    v = eval_call(s, e, s->prefix ? arena_printf(s->a, "%s.%s", s->prefix, st->names[0]) : st->names[0]);
  else
    v = eval(s, e);
  s->rhs = saved_rhs;
  s->rhs_name = saved_name;
  int n = v.kind == V_TUPLE ? v.n : 1;
  if (v.kind == V_NONE) {
    diag_error(s->d, e->loc, "'%s' returns no value", e->kind == EX_CALL ? e->text : "this");
    v = v_err;
  } else if (v.kind != V_ERR && n != st->nnames) {
    diag_error(s->d, e->loc, "%d value%s assigned to %d name%s", n, n == 1 ? "" : "s", st->nnames,
               st->nnames == 1 ? "" : "s");
    v = v_err;
  }
  for (int k = 0; k < st->nnames; k++)
    bind(s, st->names[k], st->nameloc[k], v.kind == V_TUPLE ? v.items[k] : v, 0);
}

/* Unrolling is bounded: every statement run and loop iteration counts. */
static int over_budget(Sema *s, Stmt *st) {
  if (++s->steps <= FE_MAX_STEPS && s->g->nnodes <= FE_MAX_NODES) return 0;
  diag_error(s->d, st->loc, "model too large: unrolling exceeds %d steps or %d nodes",
             FE_MAX_STEPS, FE_MAX_NODES);
  s->stop = 1;
  return 1;
}

static void exec_for(Sema *s, Stmt *st) {
  int64_t lo, hi;
  if (get_int(s, eval(s, st->value), st->value->loc, "a loop bound", &lo) ||
      get_int(s, eval(s, st->hi), st->hi->loc, "a loop bound", &hi))
    return;
  for (int64_t t = lo; t < hi && !stopped(s); t++) {
    if (over_budget(s, st) || bind(s, st->names[0], st->nameloc[0], v_int(t), 0)) return;
    exec_stmts(s, st->body, st->nbody);
  }
}

static void exec_stmt(Sema *s, Stmt *st) {
  if (over_budget(s, st)) return;
  switch (st->kind) {
  case ST_INPUT: exec_input(s, st); break;
  case ST_PARAM: exec_param(s, st); break;
  case ST_CONST: exec_const(s, st); break;
  case ST_OUTPUT: case ST_LOSS: case ST_METRIC: exec_result(s, st); break;
  case ST_ASSIGN: exec_assign(s, st); break;
  case ST_FOR: exec_for(s, st); break;
  }
}

static void exec_stmts(Sema *s, Stmt **body, int n) {
  for (int i = 0; i < n && !stopped(s); i++) exec_stmt(s, body[i]);
}

/* ---------------------------------------------------------- train */

typedef struct OptimSpec {
  const char *name;
  OptimKind kind;
  const char *keys[MAX_ARGS];
} OptimSpec;

static const OptimSpec optims[] = {
  {"sgd", OPTIM_SGD, {"lr", "momentum", "nesterov", "weight_decay"}},
  {"adam", OPTIM_ADAM, {"lr", "beta1", "beta2", "eps", "weight_decay"}},
  {"adamw", OPTIM_ADAMW, {"lr", "beta1", "beta2", "eps", "weight_decay"}},
  {"rmsprop", OPTIM_RMSPROP, {"lr", "alpha", "eps", "momentum", "weight_decay"}},
  {"adagrad", OPTIM_ADAGRAD, {"lr", "eps", "weight_decay"}},
};

/* torch.optim defaults (sgd's lr: the spec's 0.01). */
static void optim_defaults(OptimCfg *c, OptimKind k) {
  memset(c, 0, sizeof *c);
  c->kind = k;
  c->beta1 = 0.9;
  c->beta2 = 0.999;
  c->alpha = 0.99;
  switch (k) {
  case OPTIM_SGD: c->lr = 0.01; break;
  case OPTIM_ADAM: c->lr = 0.001; c->eps = 1e-8; break;
  case OPTIM_ADAMW: c->lr = 0.001; c->eps = 1e-8; c->weight_decay = 0.01; break;
  case OPTIM_RMSPROP: c->lr = 0.01; c->eps = 1e-8; break;
  case OPTIM_ADAGRAD: c->lr = 0.01; c->eps = 1e-10; break;
  }
}

static double *optim_field(OptimCfg *c, const char *key) {
  if (!strcmp(key, "lr")) return &c->lr;
  if (!strcmp(key, "momentum")) return &c->momentum;
  if (!strcmp(key, "beta1")) return &c->beta1;
  if (!strcmp(key, "beta2")) return &c->beta2;
  if (!strcmp(key, "eps")) return &c->eps;
  if (!strcmp(key, "alpha")) return &c->alpha;
  return &c->weight_decay;
}

static void read_optimizer(Sema *s, Expr *e, OptimCfg *c) {
  const OptimSpec *spec = NULL;
  Arg arg[MAX_ARGS];
  if (e->kind != EX_NAME && e->kind != EX_CALL) {
    diag_error(s->d, e->loc, "expected an optimizer such as adam(lr=0.001)");
    return;
  }
  for (size_t k = 0; k < sizeof optims / sizeof *optims; k++)
    if (!strcmp(optims[k].name, e->text)) spec = &optims[k];
  if (!spec) {
    diag_error(s->d, e->loc, "unknown optimizer '%s' (expected sgd, adam, adamw, rmsprop or adagrad)", e->text);
    return;
  }
  optim_defaults(c, spec->kind);
  if (e->kind == EX_NAME) return;
  if (match_args(s, e, spec->name, spec->keys, nparams_of(spec->keys), 0, arg) || eval_args(s, arg)) return;
  for (int j = 0; j < MAX_ARGS && spec->keys[j]; j++) {
    double v;
    if (!arg[j].e || get_num(s, arg[j].v, arg[j].e->loc, spec->keys[j], &v)) continue;
    if (v < 0) diag_error(s->d, arg[j].e->loc, "%s must not be negative", spec->keys[j]);
    if (!strcmp(spec->keys[j], "nesterov")) c->nesterov = v != 0;
    else *optim_field(c, spec->keys[j]) = v;
  }
}

static void read_train_key(Sema *s, TrainKey *k, TrainCfg *t) {
  static const char *ints[] = {"batch", "epochs", "shuffle", "seed"};
  int64_t v;
  if (!strcmp(k->key, "optimizer")) {
    read_optimizer(s, k->value, &t->opt);
    return;
  }
  int j = 0;
  while (j < 4 && strcmp(ints[j], k->key)) j++;
  if (j == 4) {
    diag_error(s->d, k->loc, "unknown train key '%s' (expected optimizer, batch, epochs, shuffle or seed)", k->key);
    return;
  }
  if (get_int(s, eval(s, k->value), k->value->loc, k->key, &v)) return;
  if (v < (j < 2 ? 1 : 0) || (j == 2 && v > 1)) {
    diag_error(s->d, k->value->loc, "%s = %lld is out of range", k->key, (long long)v);
    return;
  }
  if (j == 0) t->batch = v;
  else if (j == 1) t->epochs = v;
  else if (j == 2) t->shuffle = (int)v;
  else t->seed = (uint64_t)v;
}

/* step NAME { loss = L; params = [...]; optimizer = ... }: the loss and the
 * params are names resolved once the statements ran (resolve_steps). */
static void read_step(Sema *s, TrainKey *k, TrainStep *st) {
  static const char *keys[] = {"loss", "params", "optimizer"};
  TrainKey *seen[3] = {NULL, NULL, NULL};
  st->name = k->key;
  st->loc = k->loc;
  for (int i = 0; i < k->nsub; i++) {
    TrainKey *sk = &k->sub[i];
    int j = 0;
    while (j < 3 && strcmp(keys[j], sk->key)) j++;
    if (j == 3) {
      diag_error(s->d, sk->loc, "unknown key '%s' in step '%s' (expected loss, params or optimizer)", sk->key, st->name);
      continue;
    }
    if (seen[j]) {
      diag_error(s->d, sk->loc, "step '%s' sets %s twice", st->name, sk->key);
      continue;
    }
    seen[j] = sk;
    if (j == 0 && sk->value->kind != EX_NAME)
      diag_error(s->d, sk->value->loc, "expected the name of a loss (loss NAME = ...)");
    else if (j == 0) st->loss = sk->value->text;
    else if (j == 2) read_optimizer(s, sk->value, &st->opt);
  }
  for (int j = 0; j < 3; j++)
    if (!seen[j]) diag_error(s->d, k->loc, "step '%s' needs %s", st->name,
                             j == 0 ? "a loss (loss = NAME)" : j == 1 ? "params = [...] (layer prefixes or param names)"
                                                                   : "an optimizer (optimizer = adam(lr=...))");
}

/* The train block's step blocks, in order, into t->steps (and s->stepkey). */
static void read_steps(Sema *s, Item *it, TrainCfg *t) {
  int n = 0;
  for (int k = 0; k < it->nkeys; k++) n += it->keys[k].is_step;
  if (!n) return;
  t->steps = arena_alloc(s->a, sizeof *t->steps * (size_t)n);
  s->stepkey = arena_alloc(s->a, sizeof *s->stepkey * (size_t)n);
  for (int k = 0; k < it->nkeys; k++) {
    TrainKey *key = &it->keys[k];
    if (!key->is_step) {
      if (!strcmp(key->key, "optimizer"))
        diag_error(s->d, key->loc, "a train block with step blocks gives each step its own optimizer, not 'optimizer ='");
      continue;
    }
    if (t->nsteps == MAX_STEPS) {
      diag_error(s->d, key->loc, "more than %d steps in a train block", MAX_STEPS);
      return;
    }
    for (int j = 0; j < t->nsteps; j++)
      if (!strcmp(t->steps[j].name, key->key))
        diag_error(s->d, key->loc, "duplicate step '%s' (first at line %d)", key->key, t->steps[j].loc.line);
    s->stepkey[t->nsteps] = key;
    read_step(s, key, &t->steps[t->nsteps++]);
  }
}

static void read_train(Sema *s, File *f) {
  TrainCfg *t = &s->g->train;
  Item *seen = NULL;
  memset(t, 0, sizeof *t);
  optim_defaults(&t->opt, OPTIM_SGD);
  t->batch = 32;
  t->epochs = 1;
  t->shuffle = 1;
  for (int i = 0; i < f->nitems; i++) {
    Item *it = &f->items[i];
    if (it->kind != IT_TRAIN) continue;
    if (seen) {
      diag_error(s->d, it->loc, "duplicate train block");
      continue;
    }
    seen = it;
    read_steps(s, it, t);
    for (int k = 0; k < it->nkeys; k++)
      if (!it->keys[k].is_step && !(t->nsteps && !strcmp(it->keys[k].key, "optimizer")))
        read_train_key(s, &it->keys[k], t);
  }
}

/* 1 if param name p is `x` or lies under the layer prefix `x` ("x.W", "x.h1.b"). */
static int under_prefix(const char *p, const char *x) {
  size_t n = strlen(x);
  return !strncmp(p, x, n) && (p[n] == 0 || p[n] == '.');
}

/* A step's params = [...]: marks owner[i] = step k for every param it names
 * (a param in two steps is an error: each optimizer state has one owner). */
static void resolve_params(Sema *s, int k, Expr *list, int *owner) {
  const Graph *g = s->g;
  const TrainStep *st = &g->train.steps[k];
  if (list->kind != EX_LIST || list->nitems == 0) {
    diag_error(s->d, list->loc, "params of step '%s' must be a non-empty list such as [g1, g2]", st->name);
    return;
  }
  for (int j = 0; j < list->nitems; j++) {
    Expr *e = list->items[j];
    if (e->kind != EX_NAME) {
      diag_error(s->d, e->loc, "expected a layer prefix or a param name");
      continue;
    }
    int hits = 0;
    for (int i = 0; i < g->nparams; i++) {
      const Node *p = g->params[i].node;
      if (p->running || !under_prefix(p->name, e->text)) continue;
      hits++;
      if (owner[i] >= 0 && owner[i] != k)
        diag_error(s->d, e->loc, "param '%s' is in step '%s' and in step '%s': a param is trained by one step",
                   p->name, g->train.steps[owner[i]].name, st->name);
      owner[i] = k;
    }
    if (!hits) diag_error(s->d, e->loc, "'%s' names no param and no layer prefix of a param", e->text);
  }
}

static Node *find_loss(const Graph *g, const char *name) {
  for (int i = 0; i < g->nlosses; i++)
    if (!strcmp(g->losses[i].name, name)) return g->losses[i].node;
  return NULL;
}

/* After the statements: each step's loss and params exist (graph_use_step
 * then makes a training graph one step's). */
static void resolve_steps(Sema *s) {
  Graph *g = s->g;
  TrainCfg *t = &g->train;
  if (!t->nsteps) {
    if (s->o->training && !g->loss && g->nlosses)
      diag_error(s->d, g->losses[0].node->loc, "named losses are trained by step blocks, and the train block has none "
                 "(step NAME { loss = %s; params = [...]; optimizer = ... })", g->losses[0].name);
    return;
  }
  int *owner = arena_alloc(s->a, sizeof *owner * (size_t)(g->nparams + 1));
  for (int i = 0; i < g->nparams; i++) owner[i] = -1;
  for (int k = 0; k < t->nsteps; k++) {
    TrainKey *key = s->stepkey[k];
    TrainStep *st = &t->steps[k];
    for (int j = 0; j < key->nsub; j++) {
      TrainKey *sk = &key->sub[j];
      if (!strcmp(sk->key, "loss") && st->loss && !(st->loss_node = find_loss(g, st->loss)))
        diag_error(s->d, sk->value->loc, "step '%s': '%s' is not a named loss (loss %s = ...)", st->name, st->loss,
                   st->loss);
      if (!strcmp(sk->key, "params")) resolve_params(s, k, sk->value, owner);
    }
  }
  for (int k = 0; k < t->nsteps; k++) {
    t->steps[k].trains = arena_alloc(s->a, (size_t)g->nparams + 1);
    for (int i = 0; i < g->nparams; i++) t->steps[k].trains[i] = owner[i] == k;
  }
}

/* ------------------------------------------------------------ files */

static const char *join_path(Sema *s, const char *from, const char *rel) {
  const char *slash = strrchr(from, '/');
  if (rel[0] == '/' || !slash) return arena_strdup(s->a, rel);
  return arena_printf(s->a, "%.*s/%s", (int)(slash - from), from, rel);
}

/* The identity of a file for "imported once": its real path if it exists. */
static const char *file_key(Sema *s, const char *path) {
  char *r = realpath(path, NULL);
  if (!r) return arena_strdup(s->a, path);
  const char *k = arena_strdup(s->a, r);
  free(r);
  return k;
}

static void add_fn(Sema *s, FnDef *fn) {
  FnDef *old = map_get(&s->fns, fn->name);
  if (old)
    diag_error(s->d, fn->loc, "duplicate function '%s' (first defined at %s:%d)", fn->name,
               old->loc.src->path, old->loc.line);
  else if (find_builtin(fn->name))
    diag_error(s->d, fn->loc, "function '%s' has the name of a builtin", fn->name);
  else
    map_put(s->a, &s->fns, fn->name, fn);
}

/* Parses src, registers its functions and loads its imports (each once). */
static File *load_file(Sema *s, const Source *src, const char *key) {
  File *f = parse_source(s->d, s->a, src);
  map_put(s->a, &s->files, key, f);
  for (int i = 0; i < f->nitems && !stopped(s); i++) {
    Item *it = &f->items[i];
    if (it->kind == IT_FN) add_fn(s, it->fn);
    if (it->kind == IT_TRAIN && f != map_get(&s->files, key)) continue;
    if (it->kind != IT_IMPORT) continue;
    const char *path = join_path(s, src->path, it->path);
    const char *k = file_key(s, path);
    it->file = map_get(&s->files, k);
    if (it->file) continue;
    Source *isrc = diag_read_source(s->d, path, it->loc);
    if (isrc) it->file = load_file(s, isrc, k);
  }
  return f;
}

/* Runs a file's statements in order; an import runs the imported file once. */
static void exec_file(Sema *s, File *f, File *main) {
  if (f->executed) return;
  f->executed = 1;
  for (int i = 0; i < f->nitems && !stopped(s); i++) {
    Item *it = &f->items[i];
    if (it->kind == IT_IMPORT && it->file) exec_file(s, it->file, main);
    else if (it->kind == IT_STMT) exec_stmt(s, it->stmt);
    else if (it->kind == IT_TRAIN && f != main)
      diag_warn(s->d, it->loc, "train block in an imported file is ignored");
  }
}

/* Before any statement runs: the symbol naming the first dim of a fed
 * input is bound by the feed even where an unfed input uses it first. */
static void scan_feeds(Sema *s, File *f) {
  if (f->executed) return;
  f->executed = 1;
  for (int i = 0; i < f->nitems; i++) {
    Item *it = &f->items[i];
    if (it->kind == IT_IMPORT && it->file) scan_feeds(s, it->file);
    if (it->kind != IT_STMT || it->stmt->kind != ST_INPUT || it->stmt->ndims < 1) continue;
    Expr *d0 = it->stmt->dims[0];
    const Feed *feed = find_feed(s, it->stmt->names[0]);
    if (feed && d0->kind == EX_NAME && !map_get(&s->fed, d0->text))
      map_put(s->a, &s->fed, d0->text, (void *)&feed->nsamples);
  }
}

static void unmark(File *f) {
  if (!f->executed) return;
  f->executed = 0;
  for (int i = 0; i < f->nitems; i++)
    if (f->items[i].kind == IT_IMPORT && f->items[i].file) unmark(f->items[i].file);
}

static const char *model_name(Arena *a, const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (n > 4 && !strcmp(base + n - 4, ".nnd")) n -= 4;
  return arena_strndup(a, base, n);
}

static int compile_source(Diag *d, Graph *g, const Source *src, const BuildOpts *opts) {
  static const BuildOpts none;
  Sema *s = arena_alloc(g->arena, sizeof *s);
  int err0 = d->nerrors;
  s->d = d;
  s->g = g;
  s->a = g->arena;
  s->o = opts ? opts : &none;
  s->globals = s->frame = arena_alloc(s->a, sizeof(Map));
  g->model_name = model_name(s->a, src->path);
  g->training = s->o->training;
  File *main = load_file(s, src, file_key(s, src->path));
  read_train(s, main);
  s->batch = s->o->batch > 0 ? s->o->batch : g->train.batch;
  scan_feeds(s, main);
  unmark(main);
  if (d->nerrors == err0) exec_file(s, main, main);
  if (d->nerrors == err0) resolve_steps(s);
  return d->nerrors > err0 ? -1 : 0;
}

int fe_compile_string(Diag *d, Graph *g, const char *path, const char *text, const BuildOpts *opts) {
  const Source *src = diag_add_source(d, path, text, strlen(text));
  return compile_source(d, g, src, opts);
}

int fe_compile_file(Diag *d, Graph *g, const char *path, const BuildOpts *opts) {
  Loc none = {NULL, 0, 0};
  const Source *src = diag_read_source(d, path, none);
  if (!src) return -1;
  return compile_source(d, g, src, opts);
}

char *fe_dump_parsed(Diag *d, Arena *a, const char *path) {
  Loc none = {NULL, 0, 0};
  int err0 = d->nerrors;
  const Source *src = diag_read_source(d, path, none);
  if (!src) return NULL;
  File *f = parse_source(d, a, src);
  if (d->nerrors > err0) return NULL;
  return parse_dump(a, f);
}
