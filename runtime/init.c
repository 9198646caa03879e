/* init.c - parameter initializers on the counter-based RNG of support
 * (ir/support/support.h).  Every value is a pure function of (seed, param name,
 * element index), so parameters do not depend on thread count, engine or the
 * order params are initialised in.  Fans follow spec 7: PyTorch's rule,
 * except that a 2-D weight is stored [in, out] (x @ W), not torch's [out, in].
 */
#include <math.h>
#include "runtime.h"

void rng_fans(const Shape *s, double *fan_in, double *fan_out) {
  if (s->rank == 0) {
    *fan_in = *fan_out = 1;
  } else if (s->rank == 1) {
    *fan_in = *fan_out = (double)s->dim[0];
  } else if (s->rank == 2) {
    *fan_in = (double)s->dim[0];   /* [in, out] */
    *fan_out = (double)s->dim[1];
  } else {
    double receptive = 1;
    for (int k = 2; k < s->rank; k++) receptive *= (double)s->dim[k];
    *fan_in = (double)s->dim[1] * receptive;
    *fan_out = (double)s->dim[0] * receptive;
  }
}

static void fill_uniform(uint64_t seed, uint64_t stream, int64_t n, double lo, double hi, float *out) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)(lo + (hi - lo) * rng_uniform(seed, stream, (uint64_t)i));
}

static void fill_normal(uint64_t seed, uint64_t stream, int64_t n, double mean, double std, float *out) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)(mean + std * rng_normal(seed, stream, (uint64_t)i));
}

void rng_init_param(const Node *p, uint64_t seed, float *out) {
  int64_t n = shape_numel(&p->shape);
  uint64_t stream = rng_name_key(p->name);
  double fi, fo, b;
  InitKind kind = p->init.kind;
  if (kind == INIT_DEFAULT) kind = p->shape.rank >= 2 ? INIT_GLOROT_UNIFORM : INIT_ZEROS;
  rng_fans(&p->shape, &fi, &fo);
  if (fi <= 0) fi = 1;
  if (fo <= 0) fo = 1;
  switch (kind) {
  case INIT_ZEROS: case INIT_ONES: case INIT_FULL: case INIT_DEFAULT:
    b = kind == INIT_ONES ? 1 : kind == INIT_FULL ? p->init.a : 0;
    for (int64_t i = 0; i < n; i++) out[i] = (float)b;
    break;
  case INIT_UNIFORM: fill_uniform(seed, stream, n, p->init.a, p->init.b, out); break;
  case INIT_NORMAL: fill_normal(seed, stream, n, p->init.a, p->init.b, out); break;
  case INIT_GLOROT_UNIFORM:
    b = sqrt(6.0 / (fi + fo));
    fill_uniform(seed, stream, n, -b, b, out);
    break;
  case INIT_GLOROT_NORMAL: fill_normal(seed, stream, n, 0, sqrt(2.0 / (fi + fo)), out); break;
  case INIT_HE_UNIFORM:
    b = sqrt(6.0 / fi);
    fill_uniform(seed, stream, n, -b, b, out);
    break;
  case INIT_HE_NORMAL: fill_normal(seed, stream, n, 0, sqrt(2.0 / fi), out); break;
  }
}
