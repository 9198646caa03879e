/* ast.h - the frontend's internal syntax tree (lexer.c, parser.c, sema.c).
 *
 * The lexer turns one Source into a Token array; the parser turns tokens
 * into a File of Items (imports, functions, statements, the train block);
 * sema walks the items of every file and builds the tensor Graph.  Every
 * node of the tree lives in the compilation's Arena and keeps the Loc of
 * the token that made it, so diagnostics can point at the user's text.
 * Not installed: the AST is no contract outside frontend/.
 */
#ifndef NNDC_AST_H
#define NNDC_AST_H

#include "frontend.h"

#define FE_MAX_ERRORS 20   /* stop reporting after this many errors */
#define FE_MAX_DEPTH 256   /* deepest nesting of expressions and blocks */

/* ---------------------------------------------------------------- lexer.c */

typedef enum {
  TK_EOF,      /* end of the source */
  TK_NL,       /* a newline or ';' ending a statement */
  TK_IDENT,
  TK_KEYWORD,  /* input param const fn return for in output loss metric train step import true false */
  TK_NUM,
  TK_STR,      /* text between the quotes, escapes not interpreted */
  TK_PUNCT     /* operators and brackets: text says which */
} TokKind;

typedef struct Token {
  TokKind kind;
  const char *text;   /* into the Source's text (TK_STR: after the quote) */
  int len;            /* bytes of text */
  double num;         /* TK_NUM: value */
  int64_t ival;       /* TK_NUM: exact value of an integer literal */
  int is_int;         /* TK_NUM: written without '.' or exponent */
  Loc loc;
} Token;

/* Lexes the whole source.  Returns a malloc'd array ending with TK_EOF (the
 * caller frees it) and its length in *ntok.  Bad bytes, unterminated strings
 * and malformed numbers are reported and skipped. */
Token *lex_source(Diag *d, const Source *src, int *ntok);
/* 1 if the token is the punctuator or keyword spelled s. */
int lex_equal(const Token *t, const char *s);

/* --------------------------------------------------------------- parser.c */

typedef enum {
  EX_NUM,    /* text: the literal as written; num, is_int */
  EX_NAME,   /* text: the name */
  EX_BOOL,   /* true / false: is_int = 1, num = 1 or 0 */
  EX_LIST,   /* [items] */
  EX_BIN,    /* lhs op rhs; op is the operator's spelling */
  EX_NEG,    /* -lhs */
  EX_CALL,   /* text(args), argnames[k] NULL for positional */
  EX_INDEX,  /* lhs[items]; an item is an expression or an EX_SLICE */
  EX_SLICE   /* lhs:rhs inside an index, either may be NULL */
} ExprKind;

typedef struct Expr Expr;
struct Expr {
  ExprKind kind;
  Loc loc;             /* binary: the operator; call: the name; index: the '[' */
  const char *text;    /* EX_NUM, EX_NAME, EX_CALL */
  const char *op;      /* EX_BIN: "+", "==", "**", ... */
  double num;
  int64_t ival;        /* EX_NUM integer, EX_BOOL: exact value */
  int is_int;
  Expr *lhs, *rhs;
  Expr **items;        /* EX_LIST elements, EX_CALL args, EX_INDEX indices */
  const char **argnames; /* EX_CALL: [nitems], NULL entries for positional */
  Loc *argloc;         /* EX_CALL: where each argument (its name, if named) starts */
  int nitems;
};

typedef enum {
  ST_INPUT,   /* input names[0]: dt[dims] */
  ST_PARAM,   /* param names[0]: dt[dims] = init (init may be NULL) */
  ST_CONST,   /* const names[0] = value */
  ST_OUTPUT,  /* output names[0] [= value] */
  ST_LOSS,    /* loss [names[0]] = value (nnames 0: the unnamed loss) */
  ST_METRIC,  /* metric names[0] = value */
  ST_ASSIGN,  /* names[0], names[1], ... = value */
  ST_FOR      /* for names[0] in value..hi { body } */
} StmtKind;

typedef struct Stmt Stmt;
struct Stmt {
  StmtKind kind;
  Loc loc;             /* the statement's first token */
  const char **names;
  Loc *nameloc;
  int nnames;
  Expr *value;         /* right-hand side; ST_FOR: the start */
  Expr *hi;            /* ST_FOR: the end (exclusive) */
  DType dt;            /* ST_INPUT, ST_PARAM */
  Expr **dims;         /* ST_INPUT, ST_PARAM: [ndims] */
  int ndims;
  Loc typeloc;         /* the f32/i32 token */
  Expr *init;          /* ST_PARAM: EX_NAME or EX_CALL, or NULL */
  Stmt **body;         /* ST_FOR */
  int nbody;
};

typedef struct FnDef {
  const char *name;
  Loc loc;             /* the name */
  const char **params;
  Loc *paramloc;
  int nparams;
  Stmt **body;
  int nbody;
  Expr **rets;         /* `= expr` or the return list; nrets 0: returns nothing */
  int nrets;
  int is_layer;        /* sema: declares a param, directly or through a layer call */
  int layer_state;     /* sema: 0 unknown, 1 being computed, 2 known */
  int active;          /* sema: being inlined now (recursion check) */
} FnDef;

typedef struct TrainKey TrainKey;
struct TrainKey {
  const char *key;     /* the key, or the step's name in a `step NAME { ... }` */
  Loc loc;
  Expr *value;         /* NULL for a step */
  TrainKey *sub;       /* a step: its keys (loss, params, optimizer) */
  int nsub;
  int is_step;
};

typedef enum { IT_IMPORT, IT_FN, IT_STMT, IT_TRAIN } ItemKind;

typedef struct File File;

typedef struct Item {
  ItemKind kind;
  Loc loc;
  const char *path;    /* IT_IMPORT: as written */
  File *file;          /* IT_IMPORT: resolved by sema (NULL if unreadable) */
  FnDef *fn;           /* IT_FN */
  Stmt *stmt;          /* IT_STMT */
  TrainKey *keys;      /* IT_TRAIN */
  int nkeys;
} Item;

struct File {
  const Source *src;
  Item *items;
  int nitems;
  int executed;        /* sema: its statements ran (imports run once) */
};

/* Parses one source.  Syntax errors are reported and the parser resumes at
 * the next statement; the File holds what parsed.  Never NULL. */
File *parse_source(Diag *d, Arena *a, const Source *src);
/* Prints the tree back as .nnd text, fully parenthesised (arena string). */
char *parse_dump(Arena *a, const File *f);

#endif
