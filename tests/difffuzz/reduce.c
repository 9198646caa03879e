/* reduce.c - shrinks a failing program while it keeps failing the same way.
 *
 * A candidate is kept when check_program gives the same class, on the same
 * engine and target, as the original failure (only that engine and target
 * are run).  Candidates, tried until none helps or the budget is spent:
 * delete a line (a whole block from a line that opens one); replace a value
 * by one of its operands (delete `v = f(a, b)`, rename later uses of v to a
 * or b); keep one term of the loss; shrink a const or the batch (1, 2, half,
 * minus one); one training step; plain SGD. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "gen.h"

typedef struct Lines {
  char **l;
  int n;
} Lines;

static Lines split(const char *text) {
  Lines ls = {0};
  const char *p = text;
  while (*p) {
    const char *e = strchr(p, '\n');
    size_t k = e ? (size_t)(e - p) : strlen(p);
    ls.l = realloc(ls.l, (size_t)(ls.n + 1) * sizeof *ls.l);
    ls.l[ls.n] = strndup(p, k);
    ls.n++;
    p += k + (e ? 1 : 0);
  }
  return ls;
}

static void lines_free(Lines *ls) {
  for (int i = 0; i < ls->n; i++) free(ls->l[i]);
  free(ls->l);
}

/* Lines [0, n) without [skip0, skip1), line `rep` replaced by `with` (if >= 0). */
static char *join(const Lines *ls, int skip0, int skip1, int rep, const char *with) {
  size_t cap = 1;
  for (int i = 0; i < ls->n; i++) cap += strlen(ls->l[i]) + 1;
  if (with) cap += strlen(with) + 1;
  char *s = malloc(cap), *q = s;
  for (int i = 0; i < ls->n; i++) {
    if (i >= skip0 && i < skip1) continue;
    const char *t = i == rep ? with : ls->l[i];
    size_t k = strlen(t);
    memcpy(q, t, k);
    q += k;
    *q++ = '\n';
  }
  *q = 0;
  return s;
}

static const char *engine_of(const char *where) {
  const char *s = strrchr(where, ' ');
  return s ? s + 1 : where;
}

typedef struct Red {
  CheckOpts o;
  const CheckResult *want;
  double deadline;
  int tried, kept;
} Red;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Whether candidate s fails as the original did. */
static int same_failure(Red *r, const char *s) {
  CheckResult got;
  r->tried++;
  if (!check_program(s, &r->o, &got)) return 0;
  if (strcmp(got.cls, r->want->cls) || strcmp(engine_of(got.where), engine_of(r->want->where))) return 0;
  if (!strcmp(got.cls, "reject")) {
    /* the same message, wherever it points */
    const char *a = strstr(got.detail, "error:"), *b = strstr(r->want->detail, "error:");
    if (!a || !b) return 0;
    size_t ka = strcspn(a, "\n"), kb = strcspn(b, "\n");
    return ka == kb && !strncmp(a, b, ka);
  }
  return 1;
}

/* Tries candidate c (taken); on success replaces *text and returns 1. */
static int try(Red *r, char **text, char *c) {
  if (now() > r->deadline || !strcmp(c, *text)) {
    free(c);
    return 0;
  }
  if (same_failure(r, c)) {
    free(*text);
    *text = c;
    r->kept++;
    return 1;
  }
  free(c);
  return 0;
}

/* The line closing the block that line i opens (i itself if none). */
static int block_end(const Lines *ls, int i) {
  int depth = 0;
  for (int k = i; k < ls->n; k++) {
    for (const char *c = ls->l[k]; *c && *c != '#'; c++) depth += *c == '{' ? 1 : *c == '}' ? -1 : 0;
    if (depth <= 0) return k;
  }
  return i;
}

static int is_word(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* s with every whole-word `from` (not followed by '.', '(' or ':') replaced by `to`. */
static char *rename_word(const char *s, const char *from, const char *to) {
  size_t kf = strlen(from), kt = strlen(to), cap = strlen(s) + 1, n = 0;
  char *r = malloc(cap);
  for (const char *p = s; *p;) {
    if (!strncmp(p, from, kf) && (p == s || !is_word(p[-1])) && !is_word(p[kf]) && p[kf] != '(') {
      if (n + kt + 1 > cap) r = realloc(r, cap = (n + kt + 1) * 2);
      memcpy(r + n, to, kt);
      n += kt;
      p += kf;
    } else {
      if (n + 2 > cap) r = realloc(r, cap *= 2);
      r[n++] = *p++;
    }
  }
  r[n] = 0;
  return r;
}

/* `NAME = EXPR` at file level: NAME (in buf) and where EXPR starts. */
static const char *assignment(const char *l, char *name, size_t n) {
  const char *p = l;
  if (!isalpha((unsigned char)*p) && *p != '_') return NULL;
  size_t k = 0;
  while (is_word(p[k])) k++;
  if (p[k] != ' ' || p[k + 1] != '=' || p[k + 2] != ' ' || k >= n) return NULL;
  static const char *const kw[] = {"loss", "output", "const", "param", "input", "metric", NULL};
  for (int i = 0; kw[i]; i++)
    if (k == strlen(kw[i]) && !strncmp(p, kw[i], k)) return NULL;
  memcpy(name, p, k);
  name[k] = 0;
  return p + k + 3;
}

static int pass_delete(Red *r, char **text) {
  int any = 0;
  Lines ls = split(*text);
  for (int i = ls.n - 1; i >= 0; i--) {
    if (i >= ls.n) continue;
    int e = block_end(&ls, i);
    if (strchr(ls.l[i], '}') && !strchr(ls.l[i], '{')) continue;
    if (try(r, text, join(&ls, i, e + 1, -1, NULL))) {
      any = 1;
      lines_free(&ls);
      ls = split(*text);
    }
  }
  lines_free(&ls);
  return any;
}

static int pass_substitute(Red *r, char **text) {
  int any = 0;
  Lines ls = split(*text);
  for (int i = ls.n - 1; i >= 0; i--) {
    if (i >= ls.n) continue;
    char name[64];
    const char *e = assignment(ls.l[i], name, sizeof name);
    if (!e) continue;
    int changed = 0;
    /* every identifier of the expression that names a value */
    for (const char *p = e; *p; p++) {
      if (!isalpha((unsigned char)*p) || (p > e && is_word(p[-1]))) continue;
      size_t k = 0;
      while (is_word(p[k])) k++;
      char op[64];
      if (k >= sizeof op || p[k] == '(') continue;
      memcpy(op, p, k);
      op[k] = 0;
      if (!strcmp(op, name) || !isdigit((unsigned char)op[k - 1])) continue;
      char *tail;
      Lines after = {ls.l + i + 1, ls.n - i - 1};
      char *t = join(&after, 0, 0, -1, NULL);
      tail = rename_word(t, name, op);
      free(t);
      Lines before = {ls.l, i};
      char *head = join(&before, 0, 0, -1, NULL);
      char *c = malloc(strlen(head) + strlen(tail) + 1);
      strcpy(c, head);
      strcat(c, tail);
      free(head);
      free(tail);
      if (try(r, text, c)) {
        changed = any = 1;
        break;
      }
    }
    if (changed) {
      lines_free(&ls);
      ls = split(*text);
    }
  }
  lines_free(&ls);
  return any;
}

/* Numbers of `const D = V`, `batch = V`, `steps=K`; one term of the loss; SGD. */
static int pass_shrink(Red *r, char **text) {
  int any = 0;
  Lines ls = split(*text);
  for (int i = 0; i < ls.n; i++) {
    const char *l = ls.l[i];
    char buf[512];
    long v;
    char name[64];
    if (sscanf(l, "const %63s = %ld", name, &v) == 2 && !strchr(l, '.') && v > 1) {
      long c[4] = {1, 2, v / 2, v - 1};
      for (int k = 0; k < 4; k++) {
        if (c[k] >= v || c[k] < 1) continue;
        snprintf(buf, sizeof buf, "const %s = %ld", name, c[k]);
        if (try(r, text, join(&ls, 0, 0, i, buf))) { any = 1; break; }
      }
    } else if (sscanf(l, "  batch = %ld", &v) == 1 && v > 1) {
      long c[3] = {1, 2, v / 2};
      for (int k = 0; k < 3; k++) {
        if (c[k] >= v || c[k] < 1) continue;
        snprintf(buf, sizeof buf, "  batch = %ld", c[k]);
        if (try(r, text, join(&ls, 0, 0, i, buf))) { any = 1; break; }
      }
    } else if (sscanf(l, "# difffuzz: steps=%ld", &v) == 1 && v > 1) {
      if (try(r, text, join(&ls, 0, 0, i, "# difffuzz: steps=1"))) any = 1;
    } else if (!strncmp(l, "  optimizer = ", 14) && strcmp(l, "  optimizer = sgd(lr=0.1)")) {
      if (try(r, text, join(&ls, 0, 0, i, "  optimizer = sgd(lr=0.1)"))) any = 1;
    } else if (!strncmp(l, "loss = ", 7)) {
      /* each top-level term alone */
      const char *p = l + 7, *start = p;
      int depth = 0;
      for (;; p++) {
        if (*p == '(' || *p == '[') depth++;
        if (*p == ')' || *p == ']') depth--;
        if (!*p || (depth == 0 && !strncmp(p, " + ", 3))) {
          if (start != l + 7 || *p) {
            snprintf(buf, sizeof buf, "loss = %.*s", (int)(p - start), start);
            if (try(r, text, join(&ls, 0, 0, i, buf))) { any = 1; break; }
          }
          if (!*p) break;
          start = p + 3;
        }
      }
    }
    if (any) {
      lines_free(&ls);
      ls = split(*text);
    }
  }
  lines_free(&ls);
  return any;
}

char *reduce_program(const char *text, const CheckOpts *o, const CheckResult *want, double budget_s) {
  Red r = {*o, want, now() + budget_s, 0, 0};
  /* only the engine and target that failed */
  const char *eng = engine_of(want->where);
  static const char *one[1];
  one[0] = want->target;
  if (!strcmp(eng, "jit")) {
    r.o.emit_c = 0;
    r.o.jit_targets = one;
    r.o.njit = 1;
  } else if (!strcmp(eng, "c")) {
    r.o.njit = 0;
    r.o.targets = one;
    r.o.ntargets = 1;
  } else {
    r.o.njit = 0;
    r.o.emit_c = 0;
  }
  char *t = strdup(text);
  for (int round = 0; round < 20 && now() < r.deadline; round++) {
    int any = pass_delete(&r, &t);
    any |= pass_substitute(&r, &t);
    any |= pass_shrink(&r, &t);
    if (!any) break;
  }
  if (o->verbose) fprintf(stderr, "difffuzz: reduced with %d of %d candidates\n", r.kept, r.tried);
  return t;
}
