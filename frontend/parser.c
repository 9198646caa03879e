/* parser.c - tokens to the syntax tree (spec §3), and the tree back to text.
 *
 * A recursive-descent parser; each parse function carries its grammar rule
 * as the comment above it.  A syntax error is reported and unwinds (longjmp)
 * to the innermost statement loop, which skips to the end of the statement
 * and goes on, so one run reports every broken statement.  After
 * FE_MAX_ERRORS errors parsing stops.  Newlines inside () and [] do not end a
 * statement: the parser counts open brackets and skips TK_NL while any is
 * open.  Nesting deeper than FE_MAX_DEPTH (parentheses, unary minus, blocks)
 * is an error, so hostile input cannot exhaust the C stack.
 * Everything built lives in the arena; the token array is freed here.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"

typedef struct Parser {
  Diag *d;
  Arena *a;
  Token *toks;
  int pos;
  int nest;          /* open ( and [: newlines are not statement ends */
  int depth;         /* nesting of expressions and blocks */
  jmp_buf *jb;       /* innermost statement loop */
  jmp_buf *abort_jb; /* too many errors: give up */
} Parser;

/* A growable array of pointers in the arena. */
typedef struct Vec {
  void **v;
  int n, cap;
} Vec;

static void vec_push(Arena *a, Vec *v, void *x) {
  if (v->n == v->cap) {
    int cap = v->cap ? v->cap * 2 : 8;
    void **nv = arena_alloc(a, sizeof(void *) * (size_t)cap);
    if (v->n) memcpy(nv, v->v, sizeof(void *) * (size_t)v->n);
    v->v = nv;
    v->cap = cap;
  }
  v->v[v->n++] = x;
}

/* ------------------------------------------------------------ tokens */

static Token *peek(Parser *p) {
  while (p->nest > 0 && p->toks[p->pos].kind == TK_NL) p->pos++;
  return &p->toks[p->pos];
}

static Token *next(Parser *p) {
  Token *t = peek(p);
  if (t->kind != TK_EOF) p->pos++;
  return t;
}

static int is(Parser *p, const char *s) { return lex_equal(peek(p), s); }

static int accept(Parser *p, const char *s) {
  if (!is(p, s)) return 0;
  p->pos++;
  return 1;
}

static const char *describe(Parser *p, const Token *t) {
  switch (t->kind) {
  case TK_EOF: return "end of file";
  case TK_NL: return *t->text == ';' ? "';'" : "end of line";
  case TK_STR: return "a string";
  default: return arena_printf(p->a, "'%.*s'", t->len > 32 ? 32 : t->len, t->text);
  }
}

static _Noreturn void fail(Parser *p, Loc loc, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static _Noreturn void fail(Parser *p, Loc loc, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  if (p->d->nerrors >= FE_MAX_ERRORS) longjmp(*p->abort_jb, 1);
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_error(p->d, loc, "%s", msg);
  if (p->d->nerrors >= FE_MAX_ERRORS) longjmp(*p->abort_jb, 1);
  longjmp(*p->jb, 1);
}

static Token *expect(Parser *p, const char *s) {
  Token *t = peek(p);
  if (!lex_equal(t, s)) fail(p, t->loc, "expected '%s', found %s", s, describe(p, t));
  p->pos++;
  return t;
}

static Token *expect_ident(Parser *p, const char *what) {
  Token *t = peek(p);
  if (t->kind != TK_IDENT) fail(p, t->loc, "expected %s, found %s", what, describe(p, t));
  p->pos++;
  return t;
}

static const char *tok_str(Parser *p, const Token *t) {
  return arena_strndup(p->a, t->text, (size_t)t->len);
}

static void open_nest(Parser *p, const char *s) {
  expect(p, s);
  p->nest++;
}

static void close_nest(Parser *p, const char *s) {
  expect(p, s);
  p->nest--;
}

static void enter(Parser *p, Loc loc) {
  if (++p->depth > FE_MAX_DEPTH)
    fail(p, loc, "nesting too deep (more than %d levels)", FE_MAX_DEPTH);
}

/* ------------------------------------------------------- expressions */

static Expr *parse_expr(Parser *p);
static Expr *parse_unary(Parser *p);

static Expr *new_expr(Parser *p, ExprKind k, Loc loc) {
  Expr *e = arena_alloc(p->a, sizeof *e);
  e->kind = k;
  e->loc = loc;
  return e;
}

static Expr *new_bin(Parser *p, const Token *op, Expr *l, Expr *r) {
  Expr *e = new_expr(p, EX_BIN, op->loc);
  e->op = tok_str(p, op);
  e->lhs = l;
  e->rhs = r;
  return e;
}

static void set_items(Parser *p, Expr *e, Vec *v) {
  e->nitems = v->n;
  e->items = arena_alloc(p->a, sizeof(Expr *) * (size_t)(v->n ? v->n : 1));
  for (int i = 0; i < v->n; i++) e->items[i] = v->v[i];
}

/* args = arg { "," arg } ;  arg = [ IDENT "=" ] expr  (positional before named) */
static void parse_args(Parser *p, Expr *call) {
  Vec items = {0}, names = {0}, locs = {0};
  int named = 0;
  open_nest(p, "(");
  while (!is(p, ")")) {
    if (items.n && !accept(p, ",")) fail(p, peek(p)->loc, "expected ',' or ')', found %s", describe(p, peek(p)));
    Token *t = peek(p);
    Loc *loc = arena_alloc(p->a, sizeof *loc);
    *loc = t->loc;
    const char *name = NULL;
    if (t->kind == TK_IDENT && lex_equal(&p->toks[p->pos + 1], "=")) {
      name = tok_str(p, t);
      p->pos += 2;
      named = 1;
    } else if (named) {
      fail(p, t->loc, "positional argument after a named one");
    }
    vec_push(p->a, &items, parse_expr(p));
    vec_push(p->a, &names, (void *)name);
    vec_push(p->a, &locs, loc);
  }
  close_nest(p, ")");
  set_items(p, call, &items);
  call->argnames = arena_alloc(p->a, sizeof(char *) * (size_t)(items.n ? items.n : 1));
  call->argloc = arena_alloc(p->a, sizeof(Loc) * (size_t)(items.n ? items.n : 1));
  for (int i = 0; i < items.n; i++) {
    call->argnames[i] = names.v[i];
    call->argloc[i] = *(Loc *)locs.v[i];
  }
}

/* index = expr | [ expr ] ":" [ expr ] */
static Expr *parse_index_item(Parser *p) {
  Token *t = peek(p);
  Expr *lo = is(p, ":") ? NULL : parse_expr(p);
  if (!accept(p, ":")) return lo;
  Expr *e = new_expr(p, EX_SLICE, t->loc);
  e->lhs = lo;
  e->rhs = (is(p, ",") || is(p, "]")) ? NULL : parse_expr(p);
  return e;
}

/* "[" index { "," index } "]" after a postfix operand */
static Expr *parse_index(Parser *p, Expr *x) {
  Expr *e = new_expr(p, EX_INDEX, peek(p)->loc);
  Vec items = {0};
  e->lhs = x;
  open_nest(p, "[");
  do vec_push(p->a, &items, parse_index_item(p));
  while (accept(p, ","));
  close_nest(p, "]");
  set_items(p, e, &items);
  return e;
}

/* "[" [ expr { "," expr } ] "]" */
static Expr *parse_list(Parser *p) {
  Expr *e = new_expr(p, EX_LIST, peek(p)->loc);
  Vec items = {0};
  open_nest(p, "[");
  if (!is(p, "]")) {
    do vec_push(p->a, &items, parse_expr(p));
    while (accept(p, ","));
  }
  close_nest(p, "]");
  set_items(p, e, &items);
  return e;
}

/* primary = NUMBER | IDENT | "true" | "false" | "(" expr ")" | list */
static Expr *parse_primary(Parser *p) {
  Token *t = peek(p);
  if (t->kind == TK_NUM) {
    Expr *e = new_expr(p, EX_NUM, t->loc);
    e->text = tok_str(p, t);
    e->num = t->num;
    e->ival = t->ival;
    e->is_int = t->is_int;
    p->pos++;
    return e;
  }
  if (t->kind == TK_IDENT) {
    Expr *e = new_expr(p, EX_NAME, t->loc);
    e->text = tok_str(p, t);
    p->pos++;
    return e;
  }
  if (lex_equal(t, "true") || lex_equal(t, "false")) {
    Expr *e = new_expr(p, EX_BOOL, t->loc);
    e->num = lex_equal(t, "true");
    e->ival = (int64_t)e->num;
    e->is_int = 1;
    p->pos++;
    return e;
  }
  if (lex_equal(t, "(")) {
    open_nest(p, "(");
    Expr *e = parse_expr(p);
    close_nest(p, ")");
    return e;
  }
  if (lex_equal(t, "[")) return parse_list(p);
  fail(p, t->loc, "expected an expression, found %s", describe(p, t));
}

/* postfix = primary { "(" [ args ] ")" | "[" index { "," index } "]" } */
static Expr *parse_postfix(Parser *p) {
  Expr *e = parse_primary(p);
  for (;;) {
    if (is(p, "(")) {
      if (e->kind != EX_NAME) fail(p, peek(p)->loc, "only a function name can be called");
      e->kind = EX_CALL;
      parse_args(p, e);
      if (is(p, "(")) fail(p, peek(p)->loc, "a call's result cannot be called");
    } else if (is(p, "[")) {
      e = parse_index(p, e);
    } else {
      return e;
    }
  }
}

/* power = postfix [ "**" unary ] */
static Expr *parse_power(Parser *p) {
  Expr *e = parse_postfix(p);
  if (is(p, "**")) {
    Token *op = next(p);
    e = new_bin(p, op, e, parse_unary(p));
  }
  return e;
}

/* unary = "-" unary | power */
static Expr *parse_unary(Parser *p) {
  Expr *e;
  enter(p, peek(p)->loc);
  if (is(p, "-")) {
    e = new_expr(p, EX_NEG, next(p)->loc);
    e->lhs = parse_unary(p);
  } else {
    e = parse_power(p);
  }
  p->depth--;
  return e;
}

/* mul = unary { ( "*" | "/" | "@" ) unary } */
static Expr *parse_mul(Parser *p) {
  Expr *e = parse_unary(p);
  while (is(p, "*") || is(p, "/") || is(p, "@")) {
    Token *op = next(p);
    e = new_bin(p, op, e, parse_unary(p));
  }
  return e;
}

/* add = mul { ( "+" | "-" ) mul } */
static Expr *parse_add(Parser *p) {
  Expr *e = parse_mul(p);
  while (is(p, "+") || is(p, "-")) {
    Token *op = next(p);
    e = new_bin(p, op, e, parse_mul(p));
  }
  return e;
}

/* expr = cmp ;  cmp = add [ ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) add ] */
static Expr *parse_expr(Parser *p) {
  static const char *cmps[] = {"==", "!=", "<", "<=", ">", ">="};
  Expr *e = parse_add(p);
  for (int k = 0; k < 6; k++)
    if (is(p, cmps[k])) {
      Token *op = next(p);
      return new_bin(p, op, e, parse_add(p));
    }
  return e;
}

/* -------------------------------------------------------- statements */

static void parse_stmts(Parser *p, Vec *out, int in_fn, FnDef *fn);

/* type = ( "f32" | "i32" ) "[" [ dim { "," dim } ] "]" */
static void parse_type(Parser *p, Stmt *s) {
  Token *t = expect_ident(p, "a type (f32 or i32)");
  Vec dims = {0};
  s->typeloc = t->loc;
  if (t->len == 3 && !memcmp(t->text, "f32", 3)) s->dt = DT_F32;
  else if (t->len == 3 && !memcmp(t->text, "i32", 3)) s->dt = DT_I32;
  else fail(p, t->loc, "unknown type '%.*s' (expected f32 or i32)", t->len > 32 ? 32 : t->len, t->text);
  open_nest(p, "[");
  if (!is(p, "]")) {
    do vec_push(p->a, &dims, parse_expr(p));
    while (accept(p, ","));
  }
  close_nest(p, "]");
  s->ndims = dims.n;
  s->dims = (Expr **)dims.v;
}

static void add_name(Parser *p, Stmt *s, Vec *names, Vec *locs, const Token *t) {
  Loc *loc = arena_alloc(p->a, sizeof *loc);
  *loc = t->loc;
  vec_push(p->a, names, (void *)tok_str(p, t));
  vec_push(p->a, locs, loc);
  s->nnames = names->n;
}

static void finish_names(Parser *p, Stmt *s, Vec *names, Vec *locs) {
  s->names = (const char **)names->v;
  s->nameloc = arena_alloc(p->a, sizeof(Loc) * (size_t)names->n);
  for (int i = 0; i < names->n; i++) s->nameloc[i] = *(Loc *)locs->v[i];
}

/* init = IDENT [ "(" args ")" ] */
static Expr *parse_init(Parser *p) {
  Token *t = expect_ident(p, "an initializer name");
  Expr *e = new_expr(p, EX_NAME, t->loc);
  e->text = tok_str(p, t);
  if (is(p, "(")) {
    e->kind = EX_CALL;
    parse_args(p, e);
  }
  return e;
}

/* "for" IDENT "in" expr ".." expr "{" { stmt } "}" */
static void parse_for(Parser *p, Stmt *s, int in_fn) {
  Vec body = {0};
  s->kind = ST_FOR;
  s->value = parse_expr(p);
  expect(p, "..");
  s->hi = parse_expr(p);
  enter(p, peek(p)->loc);
  expect(p, "{");
  parse_stmts(p, &body, in_fn, NULL);
  expect(p, "}");
  p->depth--;
  s->body = (Stmt **)body.v;
  s->nbody = body.n;
}

/* stmt = "input" IDENT ":" type | "param" IDENT ":" type [ "=" init ]
 *      | "const" IDENT "=" expr | "output" IDENT [ "=" expr ] | "loss" [ IDENT ] "=" expr
 *      | "metric" IDENT "=" expr | IDENT { "," IDENT } "=" expr
 *      | "for" IDENT "in" expr ".." expr "{" { stmt } "}" */
static Stmt *parse_stmt(Parser *p, int in_fn) {
  Token *t = next(p);
  Stmt *s = arena_alloc(p->a, sizeof *s);
  Vec names = {0}, locs = {0};
  s->loc = t->loc;
  if (lex_equal(t, "input") || lex_equal(t, "param")) {
    s->kind = lex_equal(t, "input") ? ST_INPUT : ST_PARAM;
    add_name(p, s, &names, &locs, expect_ident(p, "a name"));
    expect(p, ":");
    parse_type(p, s);
    if (s->kind == ST_PARAM && accept(p, "=")) s->init = parse_init(p);
  } else if (lex_equal(t, "const") || lex_equal(t, "metric")) {
    s->kind = lex_equal(t, "const") ? ST_CONST : ST_METRIC;
    add_name(p, s, &names, &locs, expect_ident(p, "a name"));
    expect(p, "=");
    s->value = parse_expr(p);
  } else if (lex_equal(t, "output")) {
    s->kind = ST_OUTPUT;
    add_name(p, s, &names, &locs, expect_ident(p, "a name"));
    if (accept(p, "=")) s->value = parse_expr(p);
  } else if (lex_equal(t, "loss")) {
    s->kind = ST_LOSS;
    if (peek(p)->kind == TK_IDENT) add_name(p, s, &names, &locs, next(p));
    expect(p, "=");
    s->value = parse_expr(p);
  } else if (lex_equal(t, "for")) {
    add_name(p, s, &names, &locs, expect_ident(p, "a loop variable"));
    expect(p, "in");
    parse_for(p, s, in_fn);
  } else if (t->kind == TK_IDENT) {
    s->kind = ST_ASSIGN;
    add_name(p, s, &names, &locs, t);
    while (accept(p, ",")) add_name(p, s, &names, &locs, expect_ident(p, "a name"));
    expect(p, "=");
    s->value = parse_expr(p);
  } else if (lex_equal(t, "return")) {
    fail(p, t->loc, in_fn ? "'return' must be the last statement of a function"
                          : "'return' outside a function");
  } else {
    fail(p, t->loc, "expected a statement, found %s", describe(p, t));
  }
  finish_names(p, s, &names, &locs);
  return s;
}

static void end_stmt(Parser *p, int in_block) {
  Token *t = peek(p);
  if (t->kind == TK_NL) p->pos++;
  else if (t->kind != TK_EOF && !(in_block && lex_equal(t, "}")))
    fail(p, t->loc, "expected end of statement, found %s", describe(p, t));
}

/* After an error: skip to the end of the statement (a '}' ends a block). */
static void sync(Parser *p, int in_block, int depth) {
  p->nest = 0;
  p->depth = depth;
  for (;;) {
    Token *t = &p->toks[p->pos];
    if (t->kind == TK_EOF) return;
    if (in_block && lex_equal(t, "}")) return;
    p->pos++;
    if (t->kind == TK_NL) return;
  }
}

/* "return" expr { "," expr }, the last thing in a function block */
static void parse_return(Parser *p, FnDef *fn) {
  Vec rets = {0};
  p->pos++;
  do vec_push(p->a, &rets, parse_expr(p));
  while (accept(p, ","));
  fn->rets = (Expr **)rets.v;
  fn->nrets = rets.n;
  while (peek(p)->kind == TK_NL) p->pos++;
  if (!is(p, "}")) fail(p, peek(p)->loc, "expected '}' after return, found %s", describe(p, peek(p)));
}

/* { stmt } inside a block, up to its '}'; fn: where a `return` goes. */
static void parse_stmts(Parser *p, Vec *out, int in_fn, FnDef *fn) {
  jmp_buf jb, *saved = p->jb;
  int depth = p->depth;
  p->jb = &jb;
  if (setjmp(jb)) sync(p, 1, depth);
  for (;;) {
    Token *t = peek(p);
    if (t->kind == TK_NL) {
      p->pos++;
      continue;
    }
    if (t->kind == TK_EOF || lex_equal(t, "}")) break;
    if (fn && lex_equal(t, "return")) {
      parse_return(p, fn);
      break;
    }
    vec_push(p->a, out, parse_stmt(p, in_fn));
    end_stmt(p, 1);
  }
  p->jb = saved;
}

/* fn = "fn" IDENT "(" [ IDENT { "," IDENT } ] ")" ( "=" expr | block ) ;
 * block = "{" { stmt } [ "return" expr { "," expr } ] "}" */
static FnDef *parse_fn(Parser *p) {
  FnDef *fn = arena_alloc(p->a, sizeof *fn);
  Vec params = {0}, locs = {0}, body = {0};
  Token *t = expect_ident(p, "a function name");
  fn->name = tok_str(p, t);
  fn->loc = t->loc;
  open_nest(p, "(");
  while (!is(p, ")")) {
    if (params.n) expect(p, ",");
    Token *a = expect_ident(p, "a parameter name");
    Loc *loc = arena_alloc(p->a, sizeof *loc);
    *loc = a->loc;
    vec_push(p->a, &params, (void *)tok_str(p, a));
    vec_push(p->a, &locs, loc);
  }
  close_nest(p, ")");
  fn->params = (const char **)params.v;
  fn->nparams = params.n;
  fn->paramloc = arena_alloc(p->a, sizeof(Loc) * (size_t)(params.n ? params.n : 1));
  for (int i = 0; i < params.n; i++) fn->paramloc[i] = *(Loc *)locs.v[i];
  if (accept(p, "=")) {
    fn->rets = arena_alloc(p->a, sizeof(Expr *));
    fn->rets[0] = parse_expr(p);
    fn->nrets = 1;
    return fn;
  }
  expect(p, "{");
  parse_stmts(p, &body, 1, fn);
  expect(p, "}");
  fn->body = (Stmt **)body.v;
  fn->nbody = body.n;
  return fn;
}

/* { IDENT "=" expr } up to the '}' of a train block or a step; steps: also
 * "step" IDENT "{" ... "}" (a step inside a step is reported by sema's
 * caller: the parser accepts none there). */
static TrainKey *parse_train_keys(Parser *p, int *nkeys, int steps) {
  Vec keys = {0};
  expect(p, "{");
  for (;;) {
    while (peek(p)->kind == TK_NL) p->pos++;
    if (accept(p, "}")) break;
    TrainKey *k = arena_alloc(p->a, sizeof *k);
    if (steps && is(p, "step")) {
      p->pos++;
      Token *t = expect_ident(p, "a step name");
      k->key = tok_str(p, t);
      k->loc = t->loc;
      k->is_step = 1;
      k->sub = parse_train_keys(p, &k->nsub, 0);
    } else {
      /* `loss` is a keyword, and a step's key */
      Token *t = !steps && is(p, "loss") ? next(p) : expect_ident(p, steps ? "a train key" : "a step key");
      k->key = tok_str(p, t);
      k->loc = t->loc;
      expect(p, "=");
      k->value = parse_expr(p);
    }
    vec_push(p->a, &keys, k);
    end_stmt(p, 1);
  }
  TrainKey *out = arena_alloc(p->a, sizeof(TrainKey) * (size_t)(keys.n ? keys.n : 1));
  for (int i = 0; i < keys.n; i++) out[i] = *(TrainKey *)keys.v[i];
  *nkeys = keys.n;
  return out;
}

/* train = "train" "{" { IDENT "=" expr | "step" IDENT "{" { IDENT "=" expr } "}" } "}" */
static void parse_train(Parser *p, Item *it) { it->keys = parse_train_keys(p, &it->nkeys, 1); }

/* item = import | fn | stmt | train ;  import = "import" STRING */
static Item *parse_item(Parser *p) {
  Token *t = peek(p);
  Item *it = arena_alloc(p->a, sizeof *it);
  it->loc = t->loc;
  if (lex_equal(t, "import")) {
    p->pos++;
    Token *s = peek(p);
    if (s->kind != TK_STR) fail(p, s->loc, "expected a file name string after import, found %s", describe(p, s));
    p->pos++;
    it->kind = IT_IMPORT;
    it->path = tok_str(p, s);
    it->loc = s->loc;
  } else if (lex_equal(t, "fn")) {
    p->pos++;
    it->kind = IT_FN;
    it->fn = parse_fn(p);
  } else if (lex_equal(t, "train")) {
    p->pos++;
    it->kind = IT_TRAIN;
    parse_train(p, it);
  } else {
    it->kind = IT_STMT;
    it->stmt = parse_stmt(p, 0);
  }
  return it;
}

static void parse_items(Parser *p, Vec *items) {
  jmp_buf jb;
  p->jb = &jb;
  if (setjmp(jb)) sync(p, 0, 0);
  for (;;) {
    Token *t = peek(p);
    if (t->kind == TK_EOF) return;
    if (t->kind == TK_NL) {
      p->pos++;
      continue;
    }
    vec_push(p->a, items, parse_item(p));
    end_stmt(p, 0);
  }
}

File *parse_source(Diag *d, Arena *a, const Source *src) {
  File *f = arena_alloc(a, sizeof *f);
  Vec *items = arena_alloc(a, sizeof *items);
  jmp_buf abort_jb;
  int ntok = 0;
  f->src = src;
  if (d->nerrors >= FE_MAX_ERRORS) return f;
  Token *toks = lex_source(d, src, &ntok);
  Parser *p = arena_alloc(a, sizeof *p);
  p->d = d;
  p->a = a;
  p->toks = toks;
  p->abort_jb = &abort_jb;
  if (!setjmp(abort_jb)) parse_items(p, items);
  free(toks);
  f->nitems = items->n;
  f->items = arena_alloc(a, sizeof(Item) * (size_t)(items->n ? items->n : 1));
  for (int i = 0; i < items->n; i++) f->items[i] = *(Item *)items->v[i];
  return f;
}

/* -------------------------------------------------------------- dump */

static void dump_expr(Buf *b, const Expr *e);

static void dump_items(Buf *b, const Expr *e, int with_names) {
  for (int i = 0; i < e->nitems; i++) {
    if (i) buf_printf(b, ", ");
    if (with_names && e->argnames[i]) buf_printf(b, "%s=", e->argnames[i]);
    dump_expr(b, e->items[i]);
  }
}

static void dump_expr(Buf *b, const Expr *e) {
  if (!e) return;
  switch (e->kind) {
  case EX_NUM: case EX_NAME: buf_printf(b, "%s", e->text); break;
  case EX_BOOL: buf_printf(b, "%s", e->num ? "true" : "false"); break;
  case EX_LIST: buf_printf(b, "["); dump_items(b, e, 0); buf_printf(b, "]"); break;
  case EX_BIN:
    buf_printf(b, "(");
    dump_expr(b, e->lhs);
    buf_printf(b, " %s ", e->op);
    dump_expr(b, e->rhs);
    buf_printf(b, ")");
    break;
  case EX_NEG: buf_printf(b, "(-"); dump_expr(b, e->lhs); buf_printf(b, ")"); break;
  case EX_CALL: buf_printf(b, "%s(", e->text); dump_items(b, e, 1); buf_printf(b, ")"); break;
  case EX_INDEX:
    dump_expr(b, e->lhs);
    buf_printf(b, "[");
    dump_items(b, e, 0);
    buf_printf(b, "]");
    break;
  case EX_SLICE: dump_expr(b, e->lhs); buf_printf(b, ":"); dump_expr(b, e->rhs); break;
  }
}

static void dump_type(Buf *b, const Stmt *s) {
  buf_printf(b, ": %s[", s->dt == DT_I32 ? "i32" : "f32");
  for (int i = 0; i < s->ndims; i++) {
    if (i) buf_printf(b, ", ");
    dump_expr(b, s->dims[i]);
  }
  buf_printf(b, "]");
}

static void dump_stmt(Buf *b, const Stmt *s, int ind) {
  buf_printf(b, "%*s", ind, "");
  switch (s->kind) {
  case ST_INPUT: buf_printf(b, "input %s", s->names[0]); dump_type(b, s); break;
  case ST_PARAM:
    buf_printf(b, "param %s", s->names[0]);
    dump_type(b, s);
    if (s->init) buf_printf(b, " = "), dump_expr(b, s->init);
    break;
  case ST_CONST: buf_printf(b, "const %s = ", s->names[0]); dump_expr(b, s->value); break;
  case ST_OUTPUT:
    buf_printf(b, "output %s", s->names[0]);
    if (s->value) buf_printf(b, " = "), dump_expr(b, s->value);
    break;
  case ST_LOSS:
    buf_printf(b, s->nnames ? "loss %s = " : "loss = ", s->nnames ? s->names[0] : "");
    dump_expr(b, s->value);
    break;
  case ST_METRIC: buf_printf(b, "metric %s = ", s->names[0]); dump_expr(b, s->value); break;
  case ST_ASSIGN:
    for (int i = 0; i < s->nnames; i++) buf_printf(b, "%s%s", i ? ", " : "", s->names[i]);
    buf_printf(b, " = ");
    dump_expr(b, s->value);
    break;
  case ST_FOR:
    buf_printf(b, "for %s in ", s->names[0]);
    dump_expr(b, s->value);
    buf_printf(b, "..");
    dump_expr(b, s->hi);
    buf_printf(b, " {\n");
    for (int i = 0; i < s->nbody; i++) dump_stmt(b, s->body[i], ind + 2);
    buf_printf(b, "%*s}", ind, "");
    break;
  }
  buf_printf(b, "\n");
}

static void dump_fn(Buf *b, const FnDef *fn) {
  buf_printf(b, "fn %s(", fn->name);
  for (int i = 0; i < fn->nparams; i++) buf_printf(b, "%s%s", i ? ", " : "", fn->params[i]);
  buf_printf(b, ") {\n");
  for (int i = 0; i < fn->nbody; i++) dump_stmt(b, fn->body[i], 2);
  if (fn->nrets) {
    buf_printf(b, "  return ");
    for (int i = 0; i < fn->nrets; i++) {
      if (i) buf_printf(b, ", ");
      dump_expr(b, fn->rets[i]);
    }
    buf_printf(b, "\n");
  }
  buf_printf(b, "}\n");
}

static void dump_train_keys(Buf *b, const TrainKey *k, int n, int ind) {
  for (int i = 0; i < n; i++) {
    if (k[i].is_step) {
      buf_printf(b, "%*sstep %s {\n", ind, "", k[i].key);
      dump_train_keys(b, k[i].sub, k[i].nsub, ind + 2);
      buf_printf(b, "%*s}\n", ind, "");
      continue;
    }
    buf_printf(b, "%*s%s = ", ind, "", k[i].key);
    dump_expr(b, k[i].value);
    buf_printf(b, "\n");
  }
}

char *parse_dump(Arena *a, const File *f) {
  Buf b = {0};
  buf_printf(&b, "# parsed: %s\n", f->src->path);
  for (int i = 0; i < f->nitems; i++) {
    const Item *it = &f->items[i];
    switch (it->kind) {
    case IT_IMPORT: buf_printf(&b, "import \"%s\"\n", it->path); break;
    case IT_FN: dump_fn(&b, it->fn); break;
    case IT_STMT: dump_stmt(&b, it->stmt, 0); break;
    case IT_TRAIN:
      buf_printf(&b, "train {\n");
      dump_train_keys(&b, it->keys, it->nkeys, 2);
      buf_printf(&b, "}\n");
      break;
    }
  }
  char *s = arena_strndup(a, b.s ? b.s : "", b.len);
  free(b.s);
  return s;
}
