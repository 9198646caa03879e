/* ckpt.c - model state (param and optimizer buffers) and checkpoints: a
 * parameter set is a directory of <param name>.npy files or one
 * .safetensors file, chosen by the path's suffix.
 *
 * Saving is atomic as a whole.  A .safetensors file is written to a
 * temporary and renamed.  A directory is written complete into a fresh
 * sibling PATH.tmp.<pid> (each file fsync'ed, then the directory); only
 * then is an existing PATH renamed to PATH.old.<pid>, the temporary renamed
 * to PATH, and the old one removed.  A failure before the swap removes the
 * temporary and leaves the previous checkpoint untouched.
 *
 * Loading reads and checks every param (presence, dtype f32, exact shape)
 * before copying any, so a failed load leaves the buffers as they were.
 *
 * A training checkpoint (.safetensors) adds the optimizer state as tensors
 * "optim/<state name>" (a name no param can have) and the counters in the
 * header's __metadata__: format "nndc-train-1", step, epoch, batch (steps
 * taken in that epoch), sums (the epoch's loss and metric sums, C99 hex
 * floats so they round-trip exactly), and the RunKey (seed, batch_size,
 * samples, ranks, shuffle) that resuming must match. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "runtime.h"

static int64_t numel_of(const Shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dim[i];
  return n;
}

/* ----------------------------------------------------------- model state */

int model_state_init(Diag *d, const Graph *g, ModelState *ms, uint64_t seed) {
  memset(ms, 0, sizeof *ms);
  ms->params = calloc((size_t)g->nparams + 1, sizeof *ms->params);
  ms->states = calloc((size_t)g->nstates + 1, sizeof *ms->states);
  ms->nsums = (g->train.nsteps > 1 ? g->train.nsteps : 1) + g->nmetrics;
  ms->sums = calloc((size_t)ms->nsums, sizeof *ms->sums);
  if (!ms->params || !ms->states || !ms->sums) goto oom;
  for (int i = 0; i < g->nparams; i++) {
    const Node *p = g->params[i].node;
    ms->params[i] = malloc((size_t)numel_of(&p->shape) * sizeof(float) + 1);
    if (!ms->params[i]) goto oom;
    rng_init_param(p, seed, ms->params[i]);
  }
  for (int i = 0; i < g->nstates; i++) {
    ms->states[i] = calloc((size_t)numel_of(&g->states[i].node->shape) + 1, sizeof(float));
    if (!ms->states[i]) goto oom;
  }
  return 0;
oom:
  diag_error(d, (Loc){0}, "out of memory allocating the model's parameters and optimizer state");
  model_state_free(g, ms);
  return -1;
}

void model_state_free(const Graph *g, ModelState *ms) {
  for (int i = 0; ms->params && i < g->nparams; i++) free(ms->params[i]);
  for (int i = 0; ms->states && i < g->nstates; i++) free(ms->states[i]);
  free(ms->params);
  free(ms->states);
  free(ms->sums);
  memset(ms, 0, sizeof *ms);
}

/* ---------------------------------------------------------------- paths */

static int has_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && !strcmp(s + n - m, suf);
}

/* path without trailing slashes ("ck/" -> "ck"), into buf[PATH_MAX]. */
static int strip_path(Diag *d, const char *path, char *buf) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  if (n == 0 || n + 32 >= PATH_MAX) {
    diag_error(d, (Loc){0}, "checkpoint path '%s' is empty or too long", path);
    return -1;
  }
  memcpy(buf, path, n);
  buf[n] = 0;
  return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  return flag == FTW_DP ? rmdir(p) : unlink(p);
}

/* Removes a directory tree (or a file); best effort. */
static void rm_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st)) return;
  if (!S_ISDIR(st.st_mode)) {
    unlink(path);
    return;
  }
  nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------ save */

/* Writes every param as tmp/<name>.npy and syncs the directory. */
static int write_npy_dir(Diag *d, const char *tmp, const Graph *g, float *const *params) {
  for (int i = 0; i < g->nparams; i++) {
    const Node *p = g->params[i].node;
    char file[2 * PATH_MAX];
    if (snprintf(file, sizeof file, "%s/%s.npy", tmp, g->params[i].name) >= (int)sizeof file) {
      diag_error(d, (Loc){0}, "checkpoint path for param '%s' is too long", g->params[i].name);
      return -1;
    }
    if (npy_write(d, file, EL_F32, &p->shape, params[i])) return -1;
  }
  if (rt_fsync_dir(tmp)) {
    diag_error(d, (Loc){0}, "cannot sync checkpoint directory '%s': %s", tmp, strerror(errno));
    return -1;
  }
  return 0;
}

/* Puts the complete directory tmp in place of path (which may not exist). */
static int swap_in(Diag *d, const char *path, const char *tmp) {
  char old[PATH_MAX + 32];   /* strip_path left room for the suffix */
  snprintf(old, sizeof old, "%s.old.%ld", path, (long)getpid());
  struct stat st;
  int had = lstat(path, &st) == 0;
  if (had) {
    rm_tree(old);
    if (rename(path, old)) {
      diag_error(d, (Loc){0}, "cannot move the previous checkpoint '%s' aside: %s", path, strerror(errno));
      return -1;
    }
  }
  if (rename(tmp, path)) {
    int e = errno;
    if (had) rename(old, path);
    diag_error(d, (Loc){0}, "cannot move the new checkpoint into '%s': %s", path, strerror(e));
    return -1;
  }
  rt_fsync_parent(path);
  if (had) rm_tree(old);
  return 0;
}

static int save_dir(Diag *d, const char *path, const Graph *g, float *const *params) {
  char tmp[PATH_MAX + 32];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  struct stat st;
  if (lstat(tmp, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(tmp);  /* a dead save of ours */
  if (mkdir(tmp, 0755)) {
    diag_error(d, (Loc){0}, "cannot create checkpoint directory '%s': %s; '%s' is unchanged", tmp,
               strerror(errno), path);
    return -1;
  }
  if (write_npy_dir(d, tmp, g, params) || swap_in(d, path, tmp)) {
    rm_tree(tmp);
    diag_note(d, (Loc){0}, "the previous checkpoint '%s' (if any) is unchanged", path);
    return -1;
  }
  return 0;
}

static int save_st(Diag *d, const char *path, const Graph *g, float *const *params) {
  NamedTensor *t = calloc((size_t)g->nparams + 1, sizeof *t);
  if (!t) {
    diag_error(d, (Loc){0}, "out of memory saving '%s'", path);
    return -1;
  }
  for (int i = 0; i < g->nparams; i++) {
    t[i].name = g->params[i].name;
    t[i].shape = g->params[i].node->shape;
    t[i].data = params[i];
  }
  int r = st_write(d, path, t, g->nparams);
  free(t);
  return r;
}

int ckpt_save(Diag *d, const char *path, const Graph *g, float *const *params) {
  char p[PATH_MAX];
  if (strip_path(d, path, p)) return -1;
  if (has_suffix(p, ".safetensors")) return save_st(d, p, g, params);
  return save_dir(d, p, g, params);
}

/* ------------------------------------------------------------------ load */

/* Checks a tensor found for param i against the model; reports and returns -1 on mismatch. */
static int check_param(Diag *d, const char *path, const Named *pm, const char *dt, const Shape *s) {
  const Node *p = pm->node;
  char have[160], want[160];
  if (strcmp(dt, "f32")) {
    diag_error(d, p->loc, "checkpoint '%s': param '%s' has dtype %s, model wants f32", path, pm->name, dt);
    return -1;
  }
  if (!shape_eq(s, &p->shape)) {
    diag_error(d, p->loc, "checkpoint '%s': param '%s' has shape %s, model wants %s", path, pm->name,
               shape_str(s, DT_F32, have, sizeof have), shape_str(&p->shape, DT_F32, want, sizeof want));
    return -1;
  }
  return 0;
}

static int param_index(const Graph *g, const char *name) {
  for (int i = 0; i < g->nparams; i++)
    if (!strcmp(g->params[i].name, name)) return i;
  return -1;
}

static int load_st(Diag *d, const char *path, const Graph *g, float **params) {
  NamedTensor *t;
  int n, bad = 0;
  if (st_read(d, path, &t, &n)) return -1;
  int *at = malloc(((size_t)g->nparams + 1) * sizeof *at);
  if (!at) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < g->nparams; i++) at[i] = -1;
  for (int k = 0; k < n; k++) {
    int i = param_index(g, t[k].name);
    if (i < 0 && !strncmp(t[k].name, CKPT_STATE_PREFIX, strlen(CKPT_STATE_PREFIX))) continue;
    if (i < 0) diag_warn(d, (Loc){0}, "checkpoint '%s': tensor '%s' is not a param of the model; ignored", path, t[k].name);
    else at[i] = k;
  }
  for (int i = 0; i < g->nparams; i++) {
    if (at[i] < 0) {
      diag_error(d, g->params[i].node->loc, "checkpoint '%s': missing param '%s'", path, g->params[i].name);
      bad = 1;
    } else if (check_param(d, path, &g->params[i], "f32", &t[at[i]].shape)) {
      bad = 1;
    }
  }
  for (int i = 0; i < g->nparams && !bad; i++)
    memcpy(params[i], t[at[i]].data, (size_t)numel_of(&t[at[i]].shape) * sizeof(float));
  free(at);
  st_free(t, n);
  return bad ? -1 : 0;
}

static const char *el_name(ElemType et) {
  static const char *const names[] = {"f32", "i32", "i64", "u8"};
  return names[et];
}

/* Warns about each <name>.npy in dir that is no param of g. */
static void warn_extra(Diag *d, const char *path, const char *dir, const Graph *g) {
  DIR *dp = opendir(dir);
  if (!dp) return;
  struct dirent *e;
  while ((e = readdir(dp))) {
    size_t n = strlen(e->d_name);
    if (n <= 4 || strcmp(e->d_name + n - 4, ".npy")) continue;
    char stem[NAME_MAX + 1];
    snprintf(stem, sizeof stem, "%.*s", (int)(n - 4), e->d_name);
    if (param_index(g, stem) < 0)
      diag_warn(d, (Loc){0}, "checkpoint '%s': file '%s' is not a param of the model; ignored", path, e->d_name);
  }
  closedir(dp);
}

static int load_dir(Diag *d, const char *path, const char *dir, const Graph *g, float **params) {
  struct stat st;
  int missing = stat(dir, &st) != 0;
  if (missing || !S_ISDIR(st.st_mode)) {
    diag_error(d, (Loc){0}, "checkpoint '%s': %s", path,
               missing ? "no such directory" : "not a directory (nor a .safetensors file)");
    return -1;
  }
  Array *a = calloc((size_t)g->nparams + 1, sizeof *a);
  if (!a) nndc_fatal(__FILE__, __LINE__, "out of memory");
  int bad = 0;
  for (int i = 0; i < g->nparams; i++) {
    char file[2 * PATH_MAX];
    if (snprintf(file, sizeof file, "%s/%s.npy", dir, g->params[i].name) >= (int)sizeof file) {
      diag_error(d, g->params[i].node->loc, "checkpoint '%s': path for param '%s' is too long", path,
                 g->params[i].name);
      bad = 1;
    } else if (access(file, F_OK)) {
      diag_error(d, g->params[i].node->loc, "checkpoint '%s': missing param '%s' (no file '%s')", path,
                 g->params[i].name, file);
      bad = 1;
    } else if (npy_read(d, file, &a[i]) ||
               check_param(d, path, &g->params[i], el_name(a[i].et), &a[i].shape)) {
      bad = 1;
    }
  }
  if (!bad) warn_extra(d, path, dir, g);
  for (int i = 0; i < g->nparams; i++) {
    if (!bad) memcpy(params[i], a[i].data, (size_t)numel_of(&a[i].shape) * sizeof(float));
    array_free(&a[i]);
  }
  free(a);
  return bad ? -1 : 0;
}

int ckpt_load(Diag *d, const char *path, const Graph *g, float **params) {
  char p[PATH_MAX];
  if (strip_path(d, path, p)) return -1;
  if (has_suffix(p, ".safetensors")) return load_st(d, path, g, params);
  return load_dir(d, path, p, g, params);
}

/* ------------------------------------------------------ training checkpoints */

#define TRAIN_FORMAT "nndc-train-1"

/* The metadata pairs of a training checkpoint, formatted into buf. */
typedef struct MetaBuf {
  StMeta m[16];
  char val[16][64];
  char *sums;          /* malloc'd */
  int n;
} MetaBuf;

static void meta_put(MetaBuf *b, const char *key, const char *fmt, long long v) {
  snprintf(b->val[b->n], sizeof b->val[b->n], fmt, v);
  b->m[b->n].key = (char *)key;
  b->m[b->n].value = b->val[b->n];
  b->n++;
}

static int meta_build(MetaBuf *b, const ModelState *ms, const RunKey *k) {
  memset(b, 0, sizeof *b);
  b->m[b->n].key = "format";
  b->m[b->n++].value = TRAIN_FORMAT;
  meta_put(b, "step", "%lld", (long long)ms->step);
  meta_put(b, "epoch", "%lld", (long long)ms->epoch);
  meta_put(b, "batch", "%lld", (long long)ms->batch);
  meta_put(b, "seed", "%llu", (long long)k->seed);
  meta_put(b, "batch_size", "%lld", (long long)k->batch);
  meta_put(b, "samples", "%lld", (long long)k->samples);
  meta_put(b, "ranks", "%lld", (long long)k->ranks);
  meta_put(b, "shuffle", "%lld", (long long)k->shuffle);
  b->sums = malloc((size_t)ms->nsums * 40 + 1);
  if (!b->sums) return -1;
  size_t at = 0;
  b->sums[0] = 0;
  for (int i = 0; i < ms->nsums; i++)
    at += (size_t)sprintf(b->sums + at, i ? ",%a" : "%a", ms->sums[i]);
  b->m[b->n].key = "sums";
  b->m[b->n++].value = b->sums;
  return 0;
}

int ckpt_save_train(Diag *d, const char *path, const Graph *g, const ModelState *ms, const RunKey *key) {
  char p[PATH_MAX];
  if (strip_path(d, path, p)) return -1;
  if (!has_suffix(p, ".safetensors")) {
    diag_error(d, (Loc){0}, "checkpoint '%s': a training checkpoint (optimizer state and counters) "
               "needs a .safetensors path", path);
    return -1;
  }
  int n = g->nparams + g->nstates;
  NamedTensor *t = calloc((size_t)n + 1, sizeof *t);
  char **names = calloc((size_t)g->nstates + 1, sizeof *names);
  MetaBuf mb;
  int r = -1;
  if (!t || !names || meta_build(&mb, ms, key)) {
    diag_error(d, (Loc){0}, "out of memory saving '%s'", path);
    goto out;
  }
  for (int i = 0; i < g->nparams; i++)
    t[i] = (NamedTensor){g->params[i].name, g->params[i].node->shape, ms->params[i]};
  for (int i = 0; i < g->nstates; i++) {
    size_t len = strlen(CKPT_STATE_PREFIX) + strlen(g->states[i].name) + 1;
    names[i] = malloc(len);
    if (!names[i]) nndc_fatal(__FILE__, __LINE__, "out of memory");
    snprintf(names[i], len, "%s%s", CKPT_STATE_PREFIX, g->states[i].name);
    t[g->nparams + i] = (NamedTensor){names[i], g->states[i].node->shape, ms->states[i]};
  }
  r = st_write_meta(d, p, t, n, mb.m, mb.n);
out:
  for (int i = 0; names && i < g->nstates; i++) free(names[i]);
  free(names);
  free(t);
  if (mb.n) free(mb.sums);
  return r;
}

static const char *meta_get(const StMeta *m, int n, const char *key) {
  for (int i = 0; i < n; i++)
    if (!strcmp(m[i].key, key)) return m[i].value;
  return NULL;
}

/* An integer metadata value >= 0; -1 after reporting. */
static int meta_int(Diag *d, const char *path, const StMeta *m, int n, const char *key, int64_t *v) {
  const char *s = meta_get(m, n, key);
  char *end;
  errno = 0;
  unsigned long long x = s ? strtoull(s, &end, 10) : 0;
  if (!s || !*s || *end || errno || *s == '-' || x > (unsigned long long)INT64_MAX) {
    diag_error(d, (Loc){0}, "checkpoint '%s': metadata '%s' is %s", path, key,
               s ? "not a non-negative integer" : "missing");
    return -1;
  }
  *v = (int64_t)x;
  return 0;
}

/* The sums list: exactly ms->nsums finite hex (or decimal) floats. */
static int meta_sums(Diag *d, const char *path, const StMeta *m, int n, double *out, int nsums) {
  const char *s = meta_get(m, n, "sums");
  for (int i = 0; s && i < nsums; i++) {
    char *end;
    out[i] = strtod(s, &end);
    if (end == s || !isfinite(out[i]) || *end != (i + 1 < nsums ? ',' : 0)) {
      s = NULL;
      break;
    }
    s = end + (i + 1 < nsums);
  }
  if (!s) {
    diag_error(d, (Loc){0}, "checkpoint '%s': metadata 'sums' is missing or does not hold %d numbers "
               "(one per loss and metric)", path, nsums);
    return -1;
  }
  return 0;
}

/* Reads the counters and key from the metadata into ms (on success only). */
static int load_counters(Diag *d, const char *path, const StMeta *m, int n, ModelState *ms) {
  const char *f = meta_get(m, n, "format");
  if (!f || strcmp(f, TRAIN_FORMAT)) {
    diag_error(d, (Loc){0}, "checkpoint '%s' is not a training checkpoint (%s); --resume needs one "
               "written by 'nndc train --save'; load its params without --resume", path,
               f ? "unknown format" : "no counters in its metadata");
    return -1;
  }
  int64_t step, epoch, batch, seed, bs, samples, ranks, shuffle;
  double *sums = calloc((size_t)ms->nsums, sizeof *sums);
  if (!sums) nndc_fatal(__FILE__, __LINE__, "out of memory");
  if (meta_int(d, path, m, n, "step", &step) || meta_int(d, path, m, n, "epoch", &epoch) ||
      meta_int(d, path, m, n, "batch", &batch) || meta_int(d, path, m, n, "seed", &seed) ||
      meta_int(d, path, m, n, "batch_size", &bs) || meta_int(d, path, m, n, "samples", &samples) ||
      meta_int(d, path, m, n, "ranks", &ranks) || meta_int(d, path, m, n, "shuffle", &shuffle) ||
      meta_sums(d, path, m, n, sums, ms->nsums)) {
    free(sums);
    return -1;
  }
  ms->step = step;
  ms->epoch = epoch;
  ms->batch = batch;
  memcpy(ms->sums, sums, (size_t)ms->nsums * sizeof *sums);
  free(sums);
  ms->key = (RunKey){(uint64_t)seed, bs, samples, ranks, shuffle != 0};
  ms->resumed = 1;
  return 0;
}

/* Finds tensor `name` (with prefix pre) in t[n]: its index, or -1 after reporting. */
static int find_tensor(Diag *d, const char *path, const NamedTensor *t, int n, const char *pre,
                       const Named *want, const char *what) {
  size_t lp = strlen(pre);
  for (int k = 0; k < n; k++)
    if (!strncmp(t[k].name, pre, lp) && !strcmp(t[k].name + lp, want->name)) {
      if (check_param(d, path, want, "f32", &t[k].shape)) return -1;
      return k;
    }
  diag_error(d, want->node->loc, "checkpoint '%s': missing %s '%s'%s", path, what, want->name,
             *pre ? " (a params-only checkpoint, or one of another optimizer?)" : "");
  return -1;
}

int ckpt_load_train(Diag *d, const char *path, const Graph *g, ModelState *ms) {
  char p[PATH_MAX];
  if (strip_path(d, path, p)) return -1;
  if (!has_suffix(p, ".safetensors")) {
    diag_error(d, (Loc){0}, "checkpoint '%s': --resume needs a .safetensors training checkpoint", path);
    return -1;
  }
  NamedTensor *t;
  StMeta *m;
  int n, nm, bad = 0;
  if (st_read_meta(d, p, &t, &n, &m, &nm)) return -1;
  int *pat = malloc(((size_t)g->nparams + g->nstates + 1) * sizeof *pat), *sat = pat + g->nparams;
  if (!pat) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < g->nparams; i++) bad |= (pat[i] = find_tensor(d, path, t, n, "", &g->params[i], "param")) < 0;
  for (int i = 0; i < g->nstates; i++)
    bad |= (sat[i] = find_tensor(d, path, t, n, CKPT_STATE_PREFIX, &g->states[i], "optimizer state")) < 0;
  if (!bad && load_counters(d, path, m, nm, ms)) bad = 1;
  for (int i = 0; i < g->nparams && !bad; i++)
    memcpy(ms->params[i], t[pat[i]].data, (size_t)numel_of(&t[pat[i]].shape) * sizeof(float));
  for (int i = 0; i < g->nstates && !bad; i++)
    memcpy(ms->states[i], t[sat[i]].data, (size_t)numel_of(&t[sat[i]].shape) * sizeof(float));
  free(pat);
  st_free(t, n);
  st_meta_free(m, nm);
  return bad ? -1 : 0;
}
