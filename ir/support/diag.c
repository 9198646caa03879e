/* diag.c - the diagnostics sink.  Messages are formatted as
 *   FILE:LINE:COL: error: MESSAGE
 *   <the source line>
 *   <spaces>^
 * and appended to Diag.buf; the CLI decides where they go.  Sources read
 * through the sink stay alive until diag_free so any Loc can be quoted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "support.h"

void diag_init(Diag *d) { memset(d, 0, sizeof *d); }

void diag_clear(Diag *d) {
  d->len = 0;
  if (d->buf) d->buf[0] = 0;
}

void diag_free(Diag *d) {
  Source *s = d->sources;
  while (s) {
    Source *n = s->next;
    free(s->path);
    free(s->text);
    free(s);
    s = n;
  }
  free(d->buf);
  memset(d, 0, sizeof *d);
}

/* Messages accumulate in the Diag's text, a Buf by other names. */
static void append(Diag *d, const char *s, size_t n) {
  Buf b = {d->buf, d->len, d->cap};
  buf_put(&b, s, n);
  d->buf = b.s, d->len = b.len, d->cap = b.cap;
}

static void appendf(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(Diag *d, const char *fmt, ...) {
  Buf b = {d->buf, d->len, d->cap};
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(&b, fmt, ap);
  va_end(ap);
  d->buf = b.s, d->len = b.len, d->cap = b.cap;
}

/* Quotes the line of loc (at most 200 columns of it) and a caret under col. */
static void quote_line(Diag *d, Loc loc) {
  const char *t = loc.src->text, *end = t + loc.src->len;
  const char *p = t;
  for (int l = 1; l < loc.line && p < end; p++)
    if (*p == '\n') l++;
  const char *e = p;
  while (e < end && *e != '\n' && *e != '\r') e++;
  size_t n = (size_t)(e - p), shown = n > 200 ? 200 : n;
  for (size_t i = 0; i < shown; i++) {
    unsigned char c = (unsigned char)p[i];
    char ch = (c == '\t' || (c >= 32 && c < 127) || c >= 128) ? (char)c : '?';
    append(d, &ch, 1);
  }
  append(d, "\n", 1);
  int col = loc.col - 1;
  if (col > (int)shown) col = (int)shown;
  for (int i = 0; i < col; i++) append(d, p[i] == '\t' ? "\t" : " ", 1);
  append(d, "^\n", 2);
}

void diag_vreport(Diag *d, const char *kind, Loc loc, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (loc.src)
    appendf(d, "%s:%d:%d: %s: ", loc.src->path, loc.line, loc.col, kind);
  else
    appendf(d, "nndc: %s: ", kind);
  append(d, msg, strlen(msg));
  append(d, "\n", 1);
  if (loc.src && loc.line > 0) quote_line(d, loc);
}

#define REPORT(kind, counter)              \
  va_list ap;                              \
  va_start(ap, fmt);                       \
  diag_vreport(d, kind, loc, fmt, ap);     \
  va_end(ap);                              \
  counter

void diag_error(Diag *d, Loc loc, const char *fmt, ...) { REPORT("error", d->nerrors++); }
void diag_warn(Diag *d, Loc loc, const char *fmt, ...) { REPORT("warning", d->nwarnings++); }
void diag_note(Diag *d, Loc loc, const char *fmt, ...) { REPORT("note", (void)0); }

void diag_file_error(Diag *d, const char *path, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  appendf(d, "%s: error: ", path);
  append(d, msg, strlen(msg));
  append(d, "\n", 1);
  d->nerrors++;
}

Source *diag_add_source(Diag *d, const char *path, const char *text, size_t len) {
  Source *s = calloc(1, sizeof *s);
  char *p = strdup(path), *t = malloc(len + 1);
  if (!s || !p || !t) nndc_fatal(__FILE__, __LINE__, "out of memory");
  memcpy(t, text, len);
  t[len] = 0;
  s->path = p;
  s->text = t;
  s->len = len;
  s->next = d->sources;
  d->sources = s;
  return s;
}

Source *diag_read_source(Diag *d, const char *path, Loc from) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (from.src) diag_error(d, from, "cannot open '%s': %s", path, strerror(errno));
    else diag_file_error(d, path, "cannot open: %s", strerror(errno));
    return NULL;
  }
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) nndc_fatal(__FILE__, __LINE__, "out of memory");
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) break;
    if (len == cap) buf = realloc(buf, cap *= 2);
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    if (from.src) diag_error(d, from, "cannot read '%s'", path);
    else diag_file_error(d, path, "cannot read (is it a directory?)");
    return NULL;
  }
  Source *s = diag_add_source(d, path, buf, len);
  free(buf);
  return s;
}
