/* safetensors.c - parameter sets in the safetensors format:
 *   u64 little-endian N, N bytes of JSON, then the tensor data.
 * The JSON maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the data section); an optional
 * "__metadata__" object maps strings to strings (training checkpoints keep
 * their counters there); its values that are not strings are skipped.
 *
 * The reader is a strict hand-written JSON parser over hostile input: every
 * read is bounds-checked, nesting is limited, numbers are checked for
 * overflow, and the offsets must tile the data section exactly (sorted by
 * begin they start at 0, touch without overlap and end at its end), with
 * end - begin = numel * 4.  Only F32 is accepted.  The writer stores the
 * tensors in the given order, contiguous, with the header padded with
 * spaces to a multiple of 8, atomically. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

#define MAX_HEADER  (100u << 20)   /* bytes of JSON accepted */
#define MAX_DEPTH   64             /* nesting of skipped metadata */

/* ------------------------------------------------------------- writing */

/* Appends s to the growing text b, JSON-escaped. */
typedef struct Text {
  char *p;
  size_t n, cap;
  int oom;
} Text;

static void text_put(Text *t, const char *s, size_t n) {
  if (t->oom) return;
  if (t->n + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : 256;
    while (cap < t->n + n + 1) cap *= 2;
    char *p = realloc(t->p, cap);
    if (!p) {
      t->oom = 1;
      return;
    }
    t->p = p;
    t->cap = cap;
  }
  memcpy(t->p + t->n, s, n);
  t->n += n;
  t->p[t->n] = 0;
}

static void text_printf(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(Text *t, const char *fmt, ...) {
  char buf[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  text_put(t, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void text_json_str(Text *t, const char *s) {
  text_put(t, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      text_put(t, e, 2);
    } else if (c < 0x20) {
      text_printf(t, "\\u%04x", c);
    } else {
      text_put(t, s, 1);
    }
  }
  text_put(t, "\"", 1);
}

static int64_t numel_of(const Shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dim[i];
  return n;
}

int st_write_meta(Diag *d, const char *path, const NamedTensor *t, int n, const StMeta *meta, int nmeta) {
  Text h = {0};
  uint64_t off = 0;
  text_put(&h, "{", 1);
  if (nmeta > 0) {
    text_put(&h, "\"__metadata__\":{", 16);
    for (int i = 0; i < nmeta; i++) {
      if (i) text_put(&h, ",", 1);
      text_json_str(&h, meta[i].key);
      text_put(&h, ":", 1);
      text_json_str(&h, meta[i].value);
    }
    text_put(&h, "}", 1);
  }
  for (int i = 0; i < n; i++) {
    uint64_t bytes = (uint64_t)numel_of(&t[i].shape) * 4;
    if (i || nmeta > 0) text_put(&h, ",", 1);
    text_json_str(&h, t[i].name);
    text_printf(&h, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int k = 0; k < t[i].shape.rank; k++)
      text_printf(&h, k ? ",%lld" : "%lld", (long long)t[i].shape.dim[k]);
    text_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                (unsigned long long)(off + bytes));
    off += bytes;
  }
  text_put(&h, "}", 1);
  while (!h.oom && h.n % 8) text_put(&h, " ", 1);
  const void **part = malloc(((size_t)n + 2) * sizeof *part);
  size_t *len = malloc(((size_t)n + 2) * sizeof *len);
  if (h.oom || !part || !len) {
    diag_file_error(d, path, "out of memory writing the safetensors header");
    free(h.p);
    free(part);
    free(len);
    return -1;
  }
  uint8_t nbuf[8];
  for (int k = 0; k < 8; k++) nbuf[k] = (uint8_t)((uint64_t)h.n >> (8 * k));
  part[0] = nbuf;
  len[0] = 8;
  part[1] = h.p;
  len[1] = h.n;
  for (int i = 0; i < n; i++) {
    part[i + 2] = t[i].data;
    len[i + 2] = (size_t)numel_of(&t[i].shape) * 4;
  }
  int r = rt_write_atomic(d, path, part, len, n + 2);
  free(h.p);
  free(part);
  free(len);
  return r;
}

int st_write(Diag *d, const char *path, const NamedTensor *t, int n) {
  return st_write_meta(d, path, t, n, NULL, 0);
}

/* ------------------------------------------------------------- reading */

/* The JSON cursor; err holds the first problem (then every parse fails). */
typedef struct Json {
  const char *p, *end, *start;
  char err[200];
} Json;

static int jfail(Json *j, const char *msg) {
  if (!j->err[0])
    snprintf(j->err, sizeof j->err, "bad header JSON at byte %ld: %s", (long)(j->p - j->start), msg);
  return -1;
}

static void jws(Json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int jaccept(Json *j, char c) {
  jws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return 1;
  }
  return 0;
}

static int jexpect(Json *j, char c) {
  if (jaccept(j, c)) return 0;
  char msg[32];
  snprintf(msg, sizeof msg, "expected '%c'", c);
  return jfail(j, msg);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int read_hex4(Json *j, unsigned *v) {
  if (j->end - j->p < 4) return jfail(j, "short \\u escape");
  *v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(j->p[i]);
    if (h < 0) return jfail(j, "bad \\u escape");
    *v = *v << 4 | (unsigned)h;
  }
  j->p += 4;
  return 0;
}

static void put_utf8(Text *t, unsigned cp) {
  char b[4];
  size_t n;
  if (cp < 0x80) { b[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { b[0] = (char)(0xC0 | cp >> 6); b[1] = (char)(0x80 | (cp & 63)); n = 2; }
  else if (cp < 0x10000) {
    b[0] = (char)(0xE0 | cp >> 12); b[1] = (char)(0x80 | (cp >> 6 & 63));
    b[2] = (char)(0x80 | (cp & 63)); n = 3;
  } else {
    b[0] = (char)(0xF0 | cp >> 18); b[1] = (char)(0x80 | (cp >> 12 & 63));
    b[2] = (char)(0x80 | (cp >> 6 & 63)); b[3] = (char)(0x80 | (cp & 63)); n = 4;
  }
  text_put(t, b, n);
}

/* \uXXXX, with a following low surrogate when XXXX is a high one. */
static int read_uescape(Json *j, Text *t) {
  unsigned cp, lo;
  if (read_hex4(j, &cp)) return -1;
  if (cp >= 0xDC00 && cp <= 0xDFFF) return jfail(j, "lone low surrogate");
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') return jfail(j, "lone high surrogate");
    j->p += 2;
    if (read_hex4(j, &lo)) return -1;
    if (lo < 0xDC00 || lo > 0xDFFF) return jfail(j, "bad surrogate pair");
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  }
  if (cp == 0) return jfail(j, "NUL in a string");
  put_utf8(t, cp);
  return 0;
}

/* string = '"' { char | '\\' escape } '"'; the decoded text goes to t. */
static int jstring_to(Json *j, Text *t) {
  t->n = 0;
  text_put(t, "", 0);
  if (!jaccept(j, '"')) return jfail(j, "expected a string");
  while (j->p < j->end && *j->p != '"') {
    char c = *j->p++;
    if ((unsigned char)c < 0x20) return jfail(j, "control character in a string");
    if (c != '\\') {
      text_put(t, &c, 1);
      continue;
    }
    if (j->p >= j->end) break;
    c = *j->p++;
    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *k = c ? strchr(from, c) : NULL;
    if (k) text_put(t, to + (k - from), 1);
    else if (c != 'u' || read_uescape(j, t)) return jfail(j, "bad escape in a string");
  }
  if (j->p >= j->end) return jfail(j, "unterminated string");
  j->p++;
  if (t->oom) return jfail(j, "out of memory");
  return 0;
}

/* A string into t (its buffer stays the caller's), or skipped when t is NULL. */
static int jstring(Json *j, Text *t) {
  if (t) return jstring_to(j, t);
  Text skip = {0};
  int r = jstring_to(j, &skip);
  free(skip.p);
  return r;
}

/* A non-negative integer (no sign, fraction or exponent) below 2^63. */
static int juint(Json *j, uint64_t *v) {
  jws(j);
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jfail(j, "expected a non-negative integer");
  uint64_t x = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    uint64_t digit = (uint64_t)(*j->p++ - '0');
    if (x > ((uint64_t)INT64_MAX - digit) / 10) return jfail(j, "integer too large");
    x = x * 10 + digit;
  }
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
    return jfail(j, "expected an integer, not a fraction");
  *v = x;
  return 0;
}

/* Skips any JSON value (the metadata), at most MAX_DEPTH deep. */
static int jskip(Json *j, int depth) {
  if (depth > MAX_DEPTH) return jfail(j, "nested too deeply");
  jws(j);
  if (j->p >= j->end) return jfail(j, "expected a value");
  char c = *j->p;
  if (c == '"') return jstring(j, NULL);
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->p++;
    if (jaccept(j, close)) return 0;
    do {
      if (c == '{' && (jstring(j, NULL) || jexpect(j, ':'))) return -1;
      if (jskip(j, depth + 1)) return -1;
    } while (jaccept(j, ','));
    return jexpect(j, close);
  }
  static const char *const words[] = {"true", "false", "null"};
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(words[i]);
    if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, words[i], n)) {
      j->p += n;
      return 0;
    }
  }
  const char *s = j->p;
  if (j->p < j->end && *j->p == '-') j->p++;
  while (j->p < j->end && strchr("0123456789.eE+-", *j->p)) j->p++;
  return j->p > s ? 0 : jfail(j, "unexpected character");
}

/* Metadata pairs being collected (NULL: metadata is skipped). */
typedef struct MetaList {
  StMeta *m;
  int n, cap;
} MetaList;

static int meta_add(Json *j, MetaList *ml, char *key, char *value) {
  if (ml->n == ml->cap) {
    int cap = ml->cap ? 2 * ml->cap : 8;
    StMeta *m = realloc(ml->m, (size_t)cap * sizeof *m);
    if (!m) {
      free(key);
      free(value);
      return jfail(j, "out of memory");
    }
    ml->m = m;
    ml->cap = cap;
  }
  ml->m[ml->n++] = (StMeta){key, value};
  return 0;
}

/* metadata = '{' [string ':' value {',' string ':' value}] '}'; string values
 * are kept in ml, others skipped.  Anything but an object is skipped whole. */
static int jmeta(Json *j, MetaList *ml) {
  jws(j);
  if (!ml || j->p >= j->end || *j->p != '{') return jskip(j, 0);
  j->p++;
  if (jaccept(j, '}')) return 0;
  do {
    Text k = {0}, v = {0};
    if (jstring(j, &k) || jexpect(j, ':')) {
      free(k.p);
      return -1;
    }
    jws(j);
    if (j->p < j->end && *j->p == '"') {
      if (jstring(j, &v)) {
        free(k.p);
        free(v.p);
        return -1;
      }
      if (meta_add(j, ml, k.p, v.p)) return -1;   /* it frees both on failure */
    } else {
      free(k.p);
      if (jskip(j, 1)) return -1;
    }
  } while (jaccept(j, ','));
  return jexpect(j, '}');
}

/* One tensor's entry as parsed, before its offsets are checked. */
typedef struct Entry {
  char *name;
  Shape shape;
  uint64_t begin, end;
} Entry;

/* shape = '[' [uint {',' uint}] ']' */
static int jshape(Json *j, Shape *s) {
  memset(s, 0, sizeof *s);
  if (jexpect(j, '[')) return -1;
  if (jaccept(j, ']')) return 0;
  do {
    uint64_t v;
    if (juint(j, &v)) return -1;
    if (s->rank == MAX_RANK) return jfail(j, "shape has more than 8 dimensions");
    if (v > (uint64_t)MAX_DIM) return jfail(j, "dimension too large");
    s->dim[s->rank++] = (int64_t)v;
  } while (jaccept(j, ','));
  return jexpect(j, ']');
}

/* entry = '{' "dtype": string, "shape": shape, "data_offsets": [uint, uint] '}' (any order) */
static int jentry(Json *j, Entry *e, char *dtype, size_t dcap) {
  Text key = {0};
  int seen = 0, r = 0;
  if (jexpect(j, '{')) return -1;
  do {
    if (jstring(j, &key) || jexpect(j, ':')) { r = -1; break; }
    if (!strcmp(key.p, "dtype") && !(seen & 1)) {
      Text v = {0};
      r = jstring(j, &v);
      snprintf(dtype, dcap, "%s", v.p ? v.p : "");
      free(v.p);
      seen |= 1;
    } else if (!strcmp(key.p, "shape") && !(seen & 2)) {
      r = jshape(j, &e->shape);
      seen |= 2;
    } else if (!strcmp(key.p, "data_offsets") && !(seen & 4)) {
      r = jexpect(j, '[') || juint(j, &e->begin) || jexpect(j, ',') || juint(j, &e->end) ||
          jexpect(j, ']') ? -1 : 0;
      seen |= 4;
    } else {
      r = jfail(j, "unknown or repeated key in a tensor entry");
    }
  } while (!r && jaccept(j, ','));
  free(key.p);
  if (r || jexpect(j, '}')) return -1;
  if (seen != 7) return jfail(j, "tensor entry lacks dtype, shape or data_offsets");
  return 0;
}

/* The whole header: an object of tensor entries and optional __metadata__. */
static int jheader(Json *j, Diag *d, const char *name, Entry **out, int *n, MetaList *ml) {
  Entry *e = NULL;
  int ne = 0, cap = 0;
  Text key = {0};
  char dtype[64];
  int r = jexpect(j, '{'), empty = 0;
  if (!r && !(empty = jaccept(j, '}'))) do {
    if ((r = jstring(j, &key) || jexpect(j, ':') ? -1 : 0)) break;
    if (!strcmp(key.p, "__metadata__")) {
      r = jmeta(j, ml);
      continue;
    }
    for (int i = 0; i < ne; i++)
      if (!strcmp(e[i].name, key.p)) {
        diag_file_error(d, name, "tensor '%s' appears twice", key.p);
        r = -2;
      }
    if (r) break;
    if (ne == cap) {
      cap = cap ? 2 * cap : 16;
      Entry *ne2 = realloc(e, (size_t)cap * sizeof *e);
      if (!ne2) { r = jfail(j, "out of memory"); break; }
      e = ne2;
    }
    memset(&e[ne], 0, sizeof e[ne]);
    e[ne].name = key.p;
    key = (Text){0};
    ne++;
    if ((r = jentry(j, &e[ne - 1], dtype, sizeof dtype))) break;
    if (strcmp(dtype, "F32")) {
      diag_file_error(d, name, "tensor '%s' has dtype %s; only F32 is supported", e[ne - 1].name, dtype);
      r = -2;
    }
  } while (!r && jaccept(j, ','));
  if (!r && !empty) r = jexpect(j, '}');   /* "{}": a set without tensors */
  jws(j);
  if (!r && j->p != j->end) r = jfail(j, "junk after the header object");
  free(key.p);
  if (r == -1) diag_file_error(d, name, "%s", j->err);
  *out = e;
  *n = ne;
  return r ? -1 : 0;
}

static int by_begin(const void *a, const void *b) {
  const Entry *x = *(const Entry *const *)a, *y = *(const Entry *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Each entry's bytes match its shape; together they tile [0, dlen) exactly. */
static int check_offsets(Diag *d, const char *name, Entry *e, int n, uint64_t dlen) {
  for (int i = 0; i < n; i++) {
    int64_t numel = 1;
    for (int k = 0; k < e[i].shape.rank; k++)
      if (!dim_mul(numel, e[i].shape.dim[k], &numel)) {
        diag_file_error(d, name, "tensor '%s' has too many elements", e[i].name);
        return -1;
      }
    if (e[i].end < e[i].begin || e[i].end > dlen) {
      diag_file_error(d, name, "tensor '%s': data_offsets [%llu, %llu] are outside the %llu-byte data section",
                      e[i].name, (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                      (unsigned long long)dlen);
      return -1;
    }
    if (e[i].end - e[i].begin != (uint64_t)numel * 4) {
      diag_file_error(d, name, "tensor '%s': data_offsets span %llu bytes but its shape needs %llu",
                      e[i].name, (unsigned long long)(e[i].end - e[i].begin),
                      (unsigned long long)numel * 4);
      return -1;
    }
  }
  Entry **s = malloc(((size_t)n + 1) * sizeof *s);
  if (!s) {
    diag_file_error(d, name, "out of memory");
    return -1;
  }
  for (int i = 0; i < n; i++) s[i] = &e[i];
  qsort(s, (size_t)n, sizeof *s, by_begin);
  uint64_t at = 0;
  int r = 0;
  for (int i = 0; i < n && !r; i++) {
    if (s[i]->begin != at) {
      diag_file_error(d, name, "tensor '%s': data_offsets begin at %llu, %s at %llu", s[i]->name,
                      (unsigned long long)s[i]->begin, s[i]->begin < at ? "overlapping data that ends" : "leaving a gap; expected",
                      (unsigned long long)at);
      r = -1;
    }
    at = s[i]->end;
  }
  if (!r && at != dlen) {
    diag_file_error(d, name, "the data section has %llu bytes but the tensors use %llu",
                    (unsigned long long)dlen, (unsigned long long)at);
    r = -1;
  }
  free(s);
  return r;
}

static void free_entries(Entry *e, int n) {
  for (int i = 0; i < n; i++) free(e[i].name);
  free(e);
}

/* Moves each entry's name and a copy of its data into out[n]. */
static int take_tensors(Diag *d, const char *name, Entry *e, int n, const uint8_t *data,
                        NamedTensor **out) {
  NamedTensor *t = calloc((size_t)n + 1, sizeof *t);
  if (!t) goto oom;
  for (int i = 0; i < n; i++) {
    size_t bytes = (size_t)(e[i].end - e[i].begin);
    float *f = malloc(bytes ? bytes : 1);
    if (!f) {
      st_free(t, i);
      goto oom;
    }
    memcpy(f, data + e[i].begin, bytes);
    t[i].name = e[i].name;
    e[i].name = NULL;
    t[i].shape = e[i].shape;
    t[i].data = f;
  }
  *out = t;
  return 0;
oom:
  diag_file_error(d, name, "out of memory reading tensors");
  return -1;
}

void st_meta_free(StMeta *m, int n) {
  if (!m) return;
  for (int i = 0; i < n; i++) {
    free(m[i].key);
    free(m[i].value);
  }
  free(m);
}

static int read_mem(Diag *d, const char *name, const uint8_t *buf, size_t len, NamedTensor **out, int *n,
                    MetaList *ml) {
  *out = NULL;
  *n = 0;
  if (len < 8) {
    diag_file_error(d, name, "not a safetensors file (%zu bytes, shorter than its 8-byte header length)", len);
    return -1;
  }
  uint64_t hl = 0;
  for (int k = 7; k >= 0; k--) hl = hl << 8 | buf[k];
  if (hl > len - 8 || hl > MAX_HEADER) {
    diag_file_error(d, name, "header length %llu is larger than the %zu bytes that follow it%s",
                    (unsigned long long)hl, len - 8, hl > MAX_HEADER ? " (limit 100 MB)" : "");
    return -1;
  }
  Json j = {(const char *)buf + 8, (const char *)buf + 8 + hl, (const char *)buf + 8, {0}};
  Entry *e;
  int ne;
  if (jheader(&j, d, name, &e, &ne, ml) ||
      check_offsets(d, name, e, ne, len - 8 - hl) ||
      take_tensors(d, name, e, ne, buf + 8 + hl, out)) {
    free_entries(e, ne);
    return -1;
  }
  free_entries(e, ne);
  *n = ne;
  return 0;
}

int st_read_mem(Diag *d, const char *name, const uint8_t *buf, size_t len, NamedTensor **out, int *n) {
  return read_mem(d, name, buf, len, out, n, NULL);
}

int st_read_mem_meta(Diag *d, const char *name, const uint8_t *buf, size_t len, NamedTensor **out, int *n,
                     StMeta **meta, int *nmeta) {
  MetaList ml = {0};
  *meta = NULL;
  *nmeta = 0;
  int r = read_mem(d, name, buf, len, out, n, &ml);
  if (r) {
    st_meta_free(ml.m, ml.n);
    return r;
  }
  *meta = ml.m;
  *nmeta = ml.n;
  return 0;
}

int st_read_meta(Diag *d, const char *path, NamedTensor **out, int *n, StMeta **meta, int *nmeta) {
  *out = NULL;
  *n = 0;
  if (meta) *meta = NULL;
  if (nmeta) *nmeta = 0;
  size_t len;
  uint8_t *buf = rt_read_file(d, path, &len);
  if (!buf) return -1;
  int r = meta ? st_read_mem_meta(d, path, buf, len, out, n, meta, nmeta) : read_mem(d, path, buf, len, out, n, NULL);
  free(buf);
  return r;
}

int st_read(Diag *d, const char *path, NamedTensor **out, int *n) {
  return st_read_meta(d, path, out, n, NULL, NULL);
}

void st_free(NamedTensor *t, int n) {
  if (!t) return;
  for (int i = 0; i < n; i++) {
    free((char *)t[i].name);
    free(t[i].data);
  }
  free(t);
}
