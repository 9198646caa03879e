/* npy.c - NumPy .npy files (format versions 1.0, 2.0 and 3.0), and the
 * atomic file writer every data and checkpoint writer uses.
 *
 * Reading accepts little-endian f4, i4, i8 and u1 in C order.  The header is
 * a Python dict literal, parsed strictly by hand: every size in it is
 * checked (dims non-negative, product <= MAX_DIM with dim_mul, data exactly
 * present in the file) before anything is allocated from it, so a hostile
 * file is an error, never a crash or a huge allocation.
 *
 * Writing is atomic: the bytes go to PATH.tmp.<pid>, which is fsync'ed and
 * renamed over PATH; on failure the temporary is removed and the previous
 * PATH is left as it was. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "runtime.h"

static const char npy_magic[6] = {(char)0x93, 'N', 'U', 'M', 'P', 'Y'};

size_t el_size(ElemType et) {
  switch (et) {
  case EL_F32: return 4;
  case EL_I32: return 4;
  case EL_I64: return 8;
  case EL_U8: case EL_TEXT: return 1;
  case EL_U16: return 2;
  }
  NNDC_ASSERT(0);
}

void array_free(Array *a) {
  free(a->data);
  memset(a, 0, sizeof *a);
}

static const char *el_descr(ElemType et) {
  switch (et) {
  case EL_F32: return "<f4";
  case EL_I32: return "<i4";
  case EL_I64: return "<i8";
  case EL_U8: case EL_TEXT: return "|u1";
  case EL_U16: return "<u2";
  }
  NNDC_ASSERT(0);
}

/* ------------------------------------------------------ header parsing */

/* A cursor over the header text; err is the first problem found. */
typedef struct Hdr {
  const char *p, *end;
  const char *err;
  char errbuf[160];
} Hdr;

static void hdr_fail(Hdr *h, const char *msg) {
  if (!h->err) h->err = msg;
}

static void skip_ws(Hdr *h) {
  while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
    h->p++;
}

static int accept(Hdr *h, char c) {
  skip_ws(h);
  if (h->p < h->end && *h->p == c) {
    h->p++;
    return 1;
  }
  return 0;
}

/* string = '\'' chars '\'' | '"' chars '"'  (no escapes: npy never writes them) */
static int parse_str(Hdr *h, char *buf, size_t cap) {
  skip_ws(h);
  if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) {
    hdr_fail(h, "expected a quoted string");
    return -1;
  }
  char q = *h->p++;
  size_t n = 0;
  while (h->p < h->end && *h->p != q) {
    if (*h->p == '\\' || n + 1 >= cap) {
      hdr_fail(h, "string too long or escaped");
      return -1;
    }
    buf[n++] = *h->p++;
  }
  if (h->p >= h->end) {
    hdr_fail(h, "unterminated string");
    return -1;
  }
  h->p++;
  buf[n] = 0;
  return 0;
}

/* int = [-]digits ; kept within MAX_DIM so it cannot overflow */
static int parse_int(Hdr *h, int64_t *v) {
  skip_ws(h);
  int neg = 0;
  if (h->p < h->end && *h->p == '-') {
    neg = 1;
    h->p++;
  }
  if (h->p >= h->end || *h->p < '0' || *h->p > '9') {
    hdr_fail(h, "expected an integer in the shape");
    return -1;
  }
  int64_t x = 0;
  while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
    if (x <= MAX_DIM) x = x * 10 + (*h->p - '0');
    h->p++;
  }
  if (h->p < h->end && *h->p == 'L') h->p++;   /* Python 2 long */
  if (neg) {
    snprintf(h->errbuf, sizeof h->errbuf, "negative dimension -%lld in the shape", (long long)x);
    hdr_fail(h, h->errbuf);
    return -1;
  }
  if (x > MAX_DIM) {
    snprintf(h->errbuf, sizeof h->errbuf, "dimension too large in the shape (limit %lld)",
             (long long)MAX_DIM);
    hdr_fail(h, h->errbuf);
    return -1;
  }
  *v = x;
  return 0;
}

/* shape = '(' [int {',' int} [',']] ')' */
static int parse_shape(Hdr *h, Shape *s) {
  memset(s, 0, sizeof *s);
  if (!accept(h, '(')) {
    hdr_fail(h, "shape must be a tuple");
    return -1;
  }
  if (accept(h, ')')) return 0;
  for (;;) {
    int64_t v;
    if (parse_int(h, &v)) return -1;
    if (s->rank == MAX_RANK) {
      snprintf(h->errbuf, sizeof h->errbuf, "more than %d dimensions", MAX_RANK);
      hdr_fail(h, h->errbuf);
      return -1;
    }
    s->dim[s->rank++] = v;
    if (accept(h, ')')) return 0;
    if (!accept(h, ',')) {
      hdr_fail(h, "malformed shape tuple");
      return -1;
    }
    if (accept(h, ')')) return 0;
  }
}

/* bool = 'True' | 'False' */
static int parse_bool(Hdr *h, int *b) {
  skip_ws(h);
  size_t left = (size_t)(h->end - h->p);
  if (left >= 4 && !memcmp(h->p, "True", 4)) {
    h->p += 4;
    *b = 1;
    return 0;
  }
  if (left >= 5 && !memcmp(h->p, "False", 5)) {
    h->p += 5;
    *b = 0;
    return 0;
  }
  hdr_fail(h, "fortran_order must be True or False");
  return -1;
}

static int descr_type(const char *s, ElemType *et) {
  if (!strcmp(s, "<f4")) *et = EL_F32;
  else if (!strcmp(s, "<i4")) *et = EL_I32;
  else if (!strcmp(s, "<i8")) *et = EL_I64;
  else if (!strcmp(s, "|u1") || !strcmp(s, "<u1") || !strcmp(s, "u1")) *et = EL_U8;
  else if (!strcmp(s, "<u2")) *et = EL_U16;
  else return -1;
  return 0;
}

/* header = '{' key ':' value {',' key ':' value} [','] '}'
 * with exactly the keys descr, fortran_order and shape. */
static void parse_dict(Hdr *h, ElemType *et, Shape *s) {
  int seen = 0, fortran = 0;
  char descr[32] = "", key[32];
  if (!accept(h, '{')) {
    hdr_fail(h, "header is not a dict");
    return;
  }
  while (!h->err && !accept(h, '}')) {
    if (parse_str(h, key, sizeof key)) break;
    if (!accept(h, ':')) {
      hdr_fail(h, "expected ':' after a key");
      break;
    }
    if (!strcmp(key, "descr") && !(seen & 1)) {
      seen |= 1;
      parse_str(h, descr, sizeof descr);
    } else if (!strcmp(key, "fortran_order") && !(seen & 2)) {
      seen |= 2;
      parse_bool(h, &fortran);
    } else if (!strcmp(key, "shape") && !(seen & 4)) {
      seen |= 4;
      parse_shape(h, s);
    } else {
      hdr_fail(h, "unknown or repeated key in the header");
      break;
    }
    if (h->err) break;
    if (!accept(h, ',')) {
      if (!accept(h, '}')) hdr_fail(h, "expected ',' or '}' in the header");
      break;
    }
  }
  if (h->err) return;
  skip_ws(h);
  if (h->p != h->end) hdr_fail(h, "junk after the header dict");
  else if (seen != 7) hdr_fail(h, "header lacks descr, fortran_order or shape");
  else if (fortran) hdr_fail(h, "fortran_order arrays are not supported (save in C order)");
  else if (descr_type(descr, et)) {
    snprintf(h->errbuf, sizeof h->errbuf,
             "unsupported dtype '%s' (supported: <f4, <i4, <i8, <u2, |u1)", descr);
    hdr_fail(h, h->errbuf);
  }
}

static uint32_t rd_le(const uint8_t *p, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* Checks magic, version and header of buf[n]; sets the type, shape and
 * offset of the data, which is checked to be exactly what the shape needs. */
static int parse_npy(Diag *d, const char *name, const uint8_t *buf, size_t n,
                     ElemType *et, Shape *s, size_t *off) {
  if (n < 10 || memcmp(buf, npy_magic, 6)) {
    diag_file_error(d, name, "not a .npy file (bad magic)");
    return -1;
  }
  int major = buf[6];
  if (major < 1 || major > 3) {
    diag_file_error(d, name, "unsupported .npy format version %d.%d", major, buf[7]);
    return -1;
  }
  size_t pre = major == 1 ? 10 : 12;
  if (n < pre) {
    diag_file_error(d, name, "truncated .npy preamble");
    return -1;
  }
  size_t hlen = rd_le(buf + 8, major == 1 ? 2 : 4);
  if (hlen > n - pre) {
    diag_file_error(d, name, "header length %zu is larger than the %zu bytes that follow it",
                    hlen, n - pre);
    return -1;
  }
  Hdr h = {(const char *)buf + pre, (const char *)buf + pre + hlen, NULL, {0}};
  parse_dict(&h, et, s);
  if (h.err) {
    diag_file_error(d, name, "bad .npy header: %s", h.err);
    return -1;
  }
  int64_t numel = 1;
  for (int i = 0; i < s->rank; i++)
    if (!dim_mul(numel, s->dim[i], &numel)) {
      diag_file_error(d, name, "shape has too many elements (limit %lld)", (long long)MAX_DIM);
      return -1;
    }
  *off = pre + hlen;
  size_t es = el_size(*et), have = n - *off;
  /* numel <= 2^40 and es <= 8, so the product cannot overflow */
  uint64_t want = (uint64_t)numel * es;
  if (want != have) {
    diag_file_error(d, name, "%s: header says %lld elements of %s (%llu bytes) but %zu bytes follow",
                    want > have ? "truncated" : "trailing garbage", (long long)numel,
                    el_descr(*et) + 1, (unsigned long long)want, have);
    return -1;
  }
  return 0;
}

int npy_read_mem(Diag *d, const char *name, const uint8_t *buf, size_t n, Array *out) {
  memset(out, 0, sizeof *out);
  size_t off;
  if (parse_npy(d, name, buf, n, &out->et, &out->shape, &off)) return -1;
  size_t bytes = n - off;
  out->data = malloc(bytes ? bytes : 1);
  if (!out->data) {
    diag_file_error(d, name, "out of memory for %zu bytes of data", bytes);
    return -1;
  }
  memcpy(out->data, buf + off, bytes);
  return 0;
}

/* Reads a whole file into a malloc'd buffer; the size comes from fstat and
 * the read must produce exactly that many bytes. */
uint8_t *rt_read_file(Diag *d, const char *path, size_t *n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    diag_file_error(d, path, "cannot open: %s", strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    diag_file_error(d, path, "not a regular file");
    close(fd);
    return NULL;
  }
  size_t size = (size_t)st.st_size, got = 0;
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) {
    diag_file_error(d, path, "out of memory reading %zu bytes", size);
    close(fd);
    return NULL;
  }
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      diag_file_error(d, path, "read error after %zu of %zu bytes: %s", got, size,
                      r < 0 ? strerror(errno) : "file shrank");
      free(buf);
      close(fd);
      return NULL;
    }
    got += (size_t)r;
  }
  close(fd);
  *n = size;
  return buf;
}

int npy_read(Diag *d, const char *path, Array *out) {
  memset(out, 0, sizeof *out);
  size_t n, off;
  uint8_t *buf = rt_read_file(d, path, &n);
  if (!buf) return -1;
  if (parse_npy(d, path, buf, n, &out->et, &out->shape, &off)) {
    free(buf);
    return -1;
  }
  /* Keep the one buffer: slide the data to its front. */
  size_t bytes = n - off;
  memmove(buf, buf + off, bytes);
  uint8_t *shrunk = realloc(buf, bytes ? bytes : 1);
  out->data = shrunk ? shrunk : buf;
  return 0;
}

/* ------------------------------------------------------------- writing */

static int write_full(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = write(fd, b, n > (1u << 30) ? (1u << 30) : n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

int rt_fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = fsync(fd);
  close(fd);
  return r;
}

void rt_fsync_parent(const char *path) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  rt_fsync_dir(dir);
}

int rt_write_atomic(Diag *d, const char *path, const void *const *part, const size_t *len, int nparts) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
    diag_file_error(d, path, "path too long");
    return -1;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    diag_file_error(d, path, "cannot create temporary file '%s': %s", tmp, strerror(errno));
    return -1;
  }
  const char *what = NULL;
  for (int i = 0; i < nparts && !what; i++)
    if (write_full(fd, part[i], len[i])) what = "write";
  if (!what && fsync(fd)) what = "fsync";
  if (close(fd) && !what) what = "close";
  if (!what && rename(tmp, path)) what = "rename";
  if (what) {
    int e = errno;
    unlink(tmp);
    diag_file_error(d, path, "cannot write (%s failed: %s); the previous file is unchanged", what,
                    strerror(e));
    return -1;
  }
  rt_fsync_parent(path);
  return 0;
}

/* "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" padded with
 * spaces and a newline so the data starts at a multiple of 64 bytes. */
static size_t format_header(char *buf, size_t cap, ElemType et, const Shape *s) {
  size_t n = (size_t)snprintf(buf, cap, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                              el_descr(et));
  for (int i = 0; i < s->rank; i++)
    n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)s->dim[i]);
  n += (size_t)snprintf(buf + n, cap - n, "%s), }", s->rank == 1 ? "," : "");
  size_t total = (10 + n + 1 + 63) / 64 * 64;
  while (10 + n + 1 < total) buf[n++] = ' ';
  buf[n++] = '\n';
  return n;
}

int npy_write(Diag *d, const char *path, ElemType et, const Shape *s, const void *data) {
  NNDC_ASSERT(s->rank >= 0 && s->rank <= MAX_RANK);
  char pre[10 + 502];
  size_t hlen = format_header(pre + 10, sizeof pre - 10, et, s);
  memcpy(pre, npy_magic, 6);
  pre[6] = 1;
  pre[7] = 0;
  pre[8] = (char)(hlen & 0xff);
  pre[9] = (char)(hlen >> 8);
  int64_t numel = 1;
  for (int i = 0; i < s->rank; i++) numel *= s->dim[i];
  const void *part[2] = {pre, data};
  size_t len[2] = {10 + hlen, (size_t)numel * el_size(et)};
  return rt_write_atomic(d, path, part, len, 2);
}
