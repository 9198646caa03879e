/* lexer.c - .nnd source text to tokens (spec §2).
 *
 * The whole source becomes one Token array ending with TK_EOF.  A newline or
 * ';' becomes one TK_NL (runs are collapsed); the parser ignores TK_NL inside
 * brackets, so the lexer needs no bracket state.  '\r' is whitespace, so CRLF
 * files lex like LF files.  The lexer reads Source.len bytes, so a NUL byte
 * in a file is a bad byte like any other, not the end.  Errors (a byte
 * outside the grammar, an unterminated string, a malformed number) are
 * reported at their position and lexing goes on after them.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"

static const char *keywords[] = {
  "input", "param", "const", "fn", "return", "for", "in", "output",
  "loss", "metric", "train", "step", "import", "true", "false",
};

/* Longest first, so "**" wins over "*" and ".." over ".". */
static const char *puncts[] = {
  "==", "!=", "<=", ">=", "**", "..", "+", "-", "*", "/", "@", "<", ">",
  "=", "(", ")", "[", "]", "{", "}", ",", ":",
};

typedef struct Lexer {
  Diag *d;
  const Source *src;
  const char *p, *end;
  int line;
  const char *line_start;
  Token *toks;
  int n, cap;
} Lexer;

int lex_equal(const Token *t, const char *s) {
  size_t n = strlen(s);
  return (t->kind == TK_PUNCT || t->kind == TK_KEYWORD) && (size_t)t->len == n &&
         memcmp(t->text, s, n) == 0;
}

static Loc here(Lexer *l, const char *p) {
  Loc loc = {l->src, l->line, (int)(p - l->line_start) + 1};
  return loc;
}

static Token *push(Lexer *l, TokKind kind, const char *start, int len) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 256;
    l->toks = realloc(l->toks, sizeof(Token) * (size_t)l->cap);
    if (!l->toks) nndc_fatal(__FILE__, __LINE__, "out of memory");
  }
  Token *t = &l->toks[l->n++];
  memset(t, 0, sizeof *t);
  t->kind = kind;
  t->text = start;
  t->len = len;
  t->loc = here(l, start);
  return t;
}

static int is_ident_start(int c) { return isalpha(c) || c == '_'; }
static int is_ident_char(int c) { return isalnum(c) || c == '_'; }

static void lex_ident(Lexer *l) {
  const char *s = l->p;
  while (l->p < l->end && is_ident_char((unsigned char)*l->p)) l->p++;
  if (l->p - s > (1 << 28)) {
    diag_error(l->d, here(l, s), "identifier too long");
    return;
  }
  Token *t = push(l, TK_IDENT, s, (int)(l->p - s));
  for (size_t k = 0; k < sizeof keywords / sizeof *keywords; k++)
    if (strlen(keywords[k]) == (size_t)t->len && !memcmp(keywords[k], s, (size_t)t->len))
      t->kind = TK_KEYWORD;
}

static int digit_at(Lexer *l, const char *p) {
  return p < l->end && isdigit((unsigned char)*p);
}

/* NUMBER: digits [. digits] [e [+-] digits] | . digits [exponent].  A '.'
 * followed by another '.' is a range, not a fraction: 0..T. */
static void lex_number(Lexer *l) {
  const char *s = l->p, *p = l->p;
  int is_int = 1, bad = 0;
  while (digit_at(l, p)) p++;
  if (p < l->end && *p == '.' && !(p + 1 < l->end && p[1] == '.')) {
    is_int = 0;
    p++;
    while (digit_at(l, p)) p++;
  }
  if (p < l->end && (*p == 'e' || *p == 'E')) {
    is_int = 0;
    p++;
    if (p < l->end && (*p == '+' || *p == '-')) p++;
    if (!digit_at(l, p)) bad = 1;
    while (digit_at(l, p)) p++;
  }
  /* 12abc, 1.5.2: glued garbage makes the whole run one malformed number */
  while (p < l->end && (is_ident_char((unsigned char)*p) || (*p == '.' && digit_at(l, p + 1)))) {
    bad = 1;
    p++;
  }
  l->p = p;
  if (bad || p - s > 400) {
    diag_error(l->d, here(l, s), "malformed number '%.*s'", (int)(p - s > 40 ? 40 : p - s), s);
    return;
  }
  char buf[512];
  memcpy(buf, s, (size_t)(p - s));
  buf[p - s] = 0;
  Token *t = push(l, TK_NUM, s, (int)(p - s));
  t->num = strtod(buf, NULL);
  t->is_int = is_int;
  if (is_int) t->ival = (int64_t)strtoull(buf, NULL, 10);
  if (is_int && t->num > 4.0e18) {
    diag_error(l->d, t->loc, "integer literal '%s' is too large", buf);
    l->n--;
  }
}

static void lex_string(Lexer *l) {
  const char *s = l->p;
  const char *p = s + 1;
  while (p < l->end && *p != '"' && *p != '\n') p++;
  if (p >= l->end || *p != '"') {
    diag_error(l->d, here(l, s), "unterminated string");
    l->p = p;
    return;
  }
  Token *t = push(l, TK_STR, s + 1, (int)(p - s - 1));
  t->loc = here(l, s);
  l->p = p + 1;
}

static void newline(Lexer *l) {
  if (l->n == 0 || l->toks[l->n - 1].kind != TK_NL) push(l, TK_NL, l->p, 1);
}

static int lex_punct(Lexer *l) {
  for (size_t k = 0; k < sizeof puncts / sizeof *puncts; k++) {
    size_t n = strlen(puncts[k]);
    if ((size_t)(l->end - l->p) >= n && !memcmp(l->p, puncts[k], n)) {
      push(l, TK_PUNCT, l->p, (int)n);
      l->p += n;
      return 1;
    }
  }
  return 0;
}

/* One token (or a skipped run of blanks/comment) at l->p. */
static void lex_one(Lexer *l) {
  unsigned char c = (unsigned char)*l->p;
  if (c == '\n') {
    newline(l);
    l->p++;
    l->line++;
    l->line_start = l->p;
  } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
    l->p++;
  } else if (c == '#') {
    while (l->p < l->end && *l->p != '\n') l->p++;
  } else if (c == ';') {
    newline(l);
    l->p++;
  } else if (is_ident_start(c)) {
    lex_ident(l);
  } else if (isdigit(c) || (c == '.' && digit_at(l, l->p + 1))) {
    lex_number(l);
  } else if (c == '"') {
    lex_string(l);
  } else if (!lex_punct(l)) {
    diag_error(l->d, here(l, l->p), "unexpected byte 0x%02X", c);
    l->p++;
  }
}

Token *lex_source(Diag *d, const Source *src, int *ntok) {
  Lexer l = {d, src, src->text, src->text + src->len, 1, src->text, NULL, 0, 0};
  while (l.p < l.end && d->nerrors < FE_MAX_ERRORS) lex_one(&l);
  newline(&l);
  push(&l, TK_EOF, l.p, 0);
  *ntok = l.n;
  return l.toks;
}
