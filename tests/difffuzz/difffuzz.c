/* difffuzz.c - differential fuzzing of the whole compiler (as Csmith and
 * YARPGen test C compilers): random well-typed programs (gen.c) run on the
 * reference interpreter, the JIT for every target the host executes, and
 * emitted C for every target (check.c); each failure is minimized
 * (reduce.c) and written to --out.
 *
 *   difffuzz [--seed S] [--count N] [--targets generic,avx2,avx512]
 *            [--out DIR] [--replay DIR] [--time-limit SEC] [--timeout SEC]
 *            [--cc CC] [--no-c] [--openmp yes|no|alt] [--threads T]
 *            [--reduce-time SEC] [--no-reduce] [--print] [--coverage] [-v]
 *
 * Program k of a run is generated from seed S + k; `--print` writes it to
 * stdout instead.  --replay runs every .nnd of DIR (a corpus: each must
 * pass).  The last line is `difffuzz: N passed, M failed`, preceded by the
 * count of each failure class; the exit status is 1 on any failure. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "gen.h"
#if defined(__has_include)
#if __has_include("codegen/target.h")
#include "codegen/target.h"
#define HAVE_TARGET_H 1
#endif
#endif

#define MAXT 8

typedef struct Opts {
  uint64_t seed;
  long count;
  const char *targets, *out, *replay, *cc, *openmp;
  double time_limit, reduce_time;
  int timeout, threads, no_c, no_reduce, print, coverage, verbose, c_rotate, no_jit;
} Opts;

typedef struct Tally {
  long passed, failed, skipped;
  char cls[32][48];
  long ncls[32];
  int k;
  long per_target_jit[MAXT], per_target_c[MAXT];
} Tally;

/* Copies src into dst[n], cut if it does not fit. */
static void copy(char *dst, size_t n, const char *src) {
  size_t k = strlen(src);
  if (k >= n) k = n - 1;
  memcpy(dst, src, k);
  dst[k] = 0;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(void) {
  fputs("usage: difffuzz [--seed S] [--count N] [--targets LIST] [--out DIR] [--replay DIR] [--time-limit SEC]\n"
        "                [--timeout SEC] [--cc CC] [--no-c] [--openmp yes|no|alt] [--threads T]\n"
        "                [--reduce-time SEC] [--no-reduce] [--c-rotate] [--no-jit] [--print] [--coverage] [-v]\n", stderr);
  exit(2);
}

static void parse(Opts *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
    if (ARG("--seed")) o->seed = strtoull(v, NULL, 0);
    else if (ARG("--count")) o->count = atol(v);
    else if (ARG("--targets")) o->targets = v;
    else if (ARG("--out")) o->out = v;
    else if (ARG("--replay")) o->replay = v;
    else if (ARG("--time-limit")) o->time_limit = atof(v);
    else if (ARG("--timeout")) o->timeout = atoi(v);
    else if (ARG("--cc")) o->cc = v;
    else if (ARG("--openmp")) o->openmp = v;
    else if (ARG("--threads")) o->threads = atoi(v);
    else if (ARG("--reduce-time")) o->reduce_time = atof(v);
    else if (!strcmp(a, "--no-c")) o->no_c = 1;
    else if (!strcmp(a, "--no-reduce")) o->no_reduce = 1;
    else if (!strcmp(a, "--c-rotate")) o->c_rotate = 1;
    else if (!strcmp(a, "--no-jit")) o->no_jit = 1;
    else if (!strcmp(a, "--print")) o->print = 1;
    else if (!strcmp(a, "--coverage")) o->coverage = 1;
    else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->verbose = 1;
    else usage();
#undef ARG
  }
}

/* Splits the target list; the JIT gets those the host executes. */
static void targets(const char *list, const char **all, int *nall, const char **jit, int *njit) {
  *nall = *njit = 0;
  static char s[512];   /* the names live as long as the run */
  char *save = NULL;
  snprintf(s, sizeof s, "%s", list);
  for (char *t = strtok_r(s, ",", &save); t && *nall < MAXT; t = strtok_r(NULL, ",", &save)) {
    all[(*nall)++] = t;
    int runs = 1;
#ifdef HAVE_TARGET_H
    int k = target_parse(t);
    if (k >= 0) runs = target_host_runs((TargetKind)k);
#endif
    if (runs) jit[(*njit)++] = t;
  }
  if (!*nall) all[(*nall)++] = "", jit[(*njit)++] = "";   /* NNDC_TARGET unset: the default */
}

static void count_class(Tally *t, const CheckResult *r) {
  char key[96];
  const char *eng = strrchr(r->where, ' ');
  snprintf(key, sizeof key, "%s %s", r->cls, eng ? eng + 1 : r->where);
  key[47] = 0;
  for (int i = 0; i < t->k; i++)
    if (!strcmp(t->cls[i], key)) {
      t->ncls[i]++;
      return;
    }
  if (t->k < 32) {
    copy(t->cls[t->k], sizeof t->cls[0], key);
    t->ncls[t->k++] = 1;
  }
}

/* A file name part: class and engine, no spaces. */
static void slug(char *dst, size_t n, const CheckResult *r) {
  const char *eng = strrchr(r->where, ' ');
  snprintf(dst, n, "%s-%s%s%s", r->cls, eng ? eng + 1 : r->where, r->target[0] ? "-" : "", r->target);
  for (char *c = dst; *c; c++)
    if (*c == ' ' || *c == '/') *c = '_';
}

/* The program with the failure described in comments on top. */
static void write_failure(const char *dir, const char *name, const char *text, const CheckResult *r) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "difffuzz: cannot write %s: %s\n", path, strerror(errno));
    return;
  }
  fprintf(f, "# difffuzz failure: %s at %s%s%s\n", r->cls, r->where, r->target[0] ? ", NNDC_TARGET=" : "", r->target);
  int lines = 0;
  for (const char *p = r->detail; *p && lines < 12; lines++) {
    size_t k = strcspn(p, "\n");
    fprintf(f, "#   %.*s\n", (int)(k > 200 ? 200 : k), p);
    p += k + (p[k] ? 1 : 0);
  }
  fputs(text, f);
  fclose(f);
}

/* Counts and prints a failure; with --out writes the program (tag names
 * the files) and its minimized form. */
static void report(const Opts *o, const CheckOpts *co, Tally *t, const char *name, const char *text, const CheckResult *r,
                   const char *tag) {
  count_class(t, r);
  char first[256];
  copy(first, sizeof first, r->detail);
  first[strcspn(first, "\n")] = 0;
  printf("FAIL %s: %s at %s%s%s: %s\n", name, r->cls, r->where, r->target[0] ? ", target " : "", r->target, first);
  if (o->verbose) printf("%s\n", r->detail);
  fflush(stdout);
  if (!o->out) return;
  mkdir(o->out, 0777);
  char s[96], file[256];
  slug(s, sizeof s, r);
  snprintf(file, sizeof file, "%s-%s.orig.nnd", s, tag);
  write_failure(o->out, file, text, r);
  char *small = o->no_reduce ? strdup(text) : reduce_program(text, co, r, o->reduce_time);
  CheckResult rr = *r;
  CheckResult again;
  if (!o->no_reduce && check_program(small, co, &again)) rr = again;
  snprintf(file, sizeof file, "%s-%s.nnd", s, tag);
  write_failure(o->out, file, small, &rr);
  printf("  minimized: %s/%s (%zu -> %zu bytes)\n", o->out, file, strlen(text), strlen(small));
  fflush(stdout);
  free(small);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (s) s[n] = 0;
  fclose(f);
  return s;
}

static void replay(const Opts *o, const CheckOpts *co, Tally *t) {
  DIR *d = opendir(o->replay);
  if (!d) {
    fprintf(stderr, "difffuzz: cannot open %s: %s\n", o->replay, strerror(errno));
    exit(2);
  }
  char **names = NULL;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t k = strlen(e->d_name);
    if (k > 4 && !strcmp(e->d_name + k - 4, ".nnd")) {
      names = realloc(names, (size_t)(n + 1) * sizeof *names);
      names[n++] = strdup(e->d_name);
    }
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  for (int i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", o->replay, names[i]);
    char *text = read_text(path);
    CheckResult r;
    if (!text) continue;
    for (int j = 0; j < co->njit; j++) t->per_target_jit[j]++;
    for (int j = 0; co->emit_c && j < co->ntargets; j++) t->per_target_c[j]++;
    if (check_program(text, co, &r)) {
      t->failed++;
      char tag[256];
      snprintf(tag, sizeof tag, "%.*s", (int)strlen(names[i]) - 4, names[i]);
      report(o, co, t, names[i], text, &r, tag);
    } else {
      t->passed++;
      t->skipped += r.skipped;
      if (o->verbose) printf("ok %s%s\n", names[i], r.skipped ? " (skipped: the reference is not finite)" : "");
    }
    free(text);
    free(names[i]);
  }
  free(names);
}

int main(int argc, char **argv) {
  Opts o = {.seed = 1, .count = 100, .cc = "gcc", .openmp = "alt", .reduce_time = 90, .timeout = 300, .threads = 2};
  parse(&o, argc, argv);
  setenv("NNDC_ATTENTION", "fused", 0);  /* short generated sequences take the flash-attention kernels too */
#ifdef HAVE_TARGET_H
  const char *deflist = "generic,avx2,avx512";
#else
  const char *deflist = "";
#endif
  const char *all[MAXT], *jit[MAXT];
  int nall, njit;
  targets(o.targets ? o.targets : deflist, all, &nall, jit, &njit);
  if (o.no_jit) njit = 0;
  CheckOpts co = {all, nall, jit, njit, !o.no_c, o.cc, 0, o.threads, o.timeout, o.verbose};
  unsigned feat[GF_COUNT] = {0};
  Tally t = {0};
  if (o.print) {
    for (long k = 0; k < o.count; k++) {
      char *p = gen_program(o.seed + (uint64_t)k, NULL);
      fputs(p, stdout);
      free(p);
    }
    return 0;
  }
  double start = now();
  if (o.replay) {
    co.openmp = !strcmp(o.openmp, "yes");
    replay(&o, &co, &t);
  } else {
    for (long k = 0; k < o.count; k++) {
      if (o.time_limit > 0 && now() - start > o.time_limit) {
        printf("difffuzz: time limit reached after %ld programs\n", k);
        break;
      }
      uint64_t seed = o.seed + (uint64_t)k;
      co.openmp = !strcmp(o.openmp, "yes") || (!strcmp(o.openmp, "alt") && (seed & 1));
      /* --c-rotate: emitted C for one target per program, in turn */
      co.targets = o.c_rotate ? &all[k % nall] : all;
      co.ntargets = o.c_rotate ? 1 : nall;
      for (int i = 0; i < njit; i++) t.per_target_jit[i]++;
      for (int i = 0; !o.no_c && i < nall; i++) t.per_target_c[i] += !o.c_rotate || i == k % nall;
      char *text = gen_program(seed, feat);
      CheckResult r;
      char name[64];
      snprintf(name, sizeof name, "seed %llu", (unsigned long long)seed);
      if (check_program(text, &co, &r)) {
        t.failed++;
        char tag[32];
        snprintf(tag, sizeof tag, "%llu", (unsigned long long)seed);
        report(&o, &co, &t, name, text, &r, tag);
      } else {
        t.passed++;
        t.skipped += r.skipped;
        if (o.verbose) printf("ok %s%s\n", name, r.skipped ? " (skipped: the reference is not finite)" : "");
      }
      if ((k + 1) % 50 == 0)
        printf("difffuzz: %ld programs, %ld failed, %.0f s\n", k + 1, t.failed, now() - start);
      fflush(stdout);
      free(text);
    }
  }
  if (o.coverage && !o.replay) {
    printf("difffuzz: coverage (uses of each feature):");
    for (int f = 0; f < GF_COUNT; f++) printf("%s %s=%u", f % 8 ? "" : "\n ", gen_feature_name(f), feat[f]);
    printf("\n");
  }
  printf("difffuzz: programs per target: jit");
  for (int i = 0; i < njit; i++) printf(" %s=%ld", jit[i][0] ? jit[i] : "(default)", t.per_target_jit[i]);
  printf("; emitted C%s", o.no_c ? " off" : "");
  for (int i = 0; !o.no_c && i < nall; i++) printf(" %s=%ld", all[i][0] ? all[i] : "(default)", t.per_target_c[i]);
  printf(" (%s); %.0f s\n", o.cc, now() - start);
  if (t.skipped) printf("difffuzz: %ld skipped (the reference is not finite; counted as passed)\n", t.skipped);
  for (int i = 0; i < t.k; i++) printf("difffuzz: %s: %ld\n", t.cls[i], t.ncls[i]);
  printf("difffuzz: %ld passed, %ld failed\n", t.passed, t.failed);
  return t.failed ? 1 : 0;
}
