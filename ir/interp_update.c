/* interp_update.c - reference kernels of the optimizer update ops, exactly
 * torch.optim 1.13's single-tensor implementations: the same defaults, the
 * same order of float operations, and scalars (bias corrections, step sizes)
 * computed in double then rounded to float as torch's CPU kernels do.
 * torch's CPU kernels evaluate `t.add_(x, alpha=a)` as fma(a, x, t) and
 * `t.addcmul_(x, y, value=v)` as fma(v*x, y, t); the loops below spell those
 * fmaf calls out, which makes the results match torch bit for bit
 * (tests/test_optim.c).
 *
 * interp_update(n, val, ctx): n is an OPT_* node; val[in->id] holds the f32
 * buffers of its operands (param, grad, states...), all of the param's
 * shape; param and states are updated in place.  ctx->step is the 1-based
 * number of the step being taken.  Returns 0.
 */
#include <math.h>
#include "ir.h"

/* Operand k's buffer. */
static float *buf(const Node *n, void **val, int k) { return (float *)val[n->in[k]->id]; }

/* torch: d_p = g + wd*p; buf = clone(d_p) on the first step, else
 * buf*momentum + d_p (dampening 0); nesterov: d_p + momentum*buf; p += -lr*d_p. */
static void sgd(const Node *n, void **val, int64_t cnt, int64_t step) {
  float *p = buf(n, val, 0), *g = buf(n, val, 1), *b = buf(n, val, 2);
  double lr = n->a.f[0], mom = n->a.f[1], wd = n->a.f[2];
  float flr = (float)-lr, fmom = (float)mom, fwd = (float)wd;
  for (int64_t i = 0; i < cnt; i++) {
    float d = g[i];
    if (wd != 0) d = fmaf(fwd, p[i], d);
    if (mom != 0) {
      b[i] = step <= 1 ? d : fmaf(1.0f, d, b[i] * fmom);
      d = n->a.i[0] ? fmaf(fmom, b[i], d) : b[i];
    }
    p[i] = fmaf(flr, d, p[i]);
  }
}

/* torch adam/adamw (amsgrad off). */
static void adam(const Node *n, void **val, int64_t cnt, int64_t step) {
  float *p = buf(n, val, 0), *g = buf(n, val, 1), *m = buf(n, val, 2), *v = buf(n, val, 3);
  double lr = n->a.f[0], b1 = n->a.f[1], b2 = n->a.f[2], eps = n->a.f[3], wd = n->a.f[4];
  int adamw = (int)n->a.i[0];
  double bc1 = 1 - pow(b1, (double)step), bc2 = 1 - pow(b2, (double)step);
  double step_size = lr / bc1, bc2_sqrt = sqrt(bc2);
  float fb1 = (float)b1, f1b1 = (float)(1 - b1), fb2 = (float)b2, f1b2 = (float)(1 - b2);
  float fdecay = (float)(1 - lr * wd), fwd = (float)wd, fbc2 = (float)bc2_sqrt;
  float feps = (float)eps, fstep = (float)-step_size;
  for (int64_t i = 0; i < cnt; i++) {
    float gi = g[i];
    if (adamw) p[i] = p[i] * fdecay;
    else if (wd != 0) gi = fmaf(fwd, p[i], gi);
    m[i] = fmaf(f1b1, gi, m[i] * fb1);
    v[i] = fmaf(f1b2 * gi, gi, v[i] * fb2);
    float denom = sqrtf(v[i]) / fbc2 + feps;
    p[i] = p[i] + fstep * m[i] / denom;
  }
}

/* torch rmsprop, centered=False. */
static void rmsprop(const Node *n, void **val, int64_t cnt) {
  float *p = buf(n, val, 0), *g = buf(n, val, 1), *sq = buf(n, val, 2), *b = buf(n, val, 3);
  double lr = n->a.f[0], alpha = n->a.f[1], eps = n->a.f[2], mom = n->a.f[3], wd = n->a.f[4];
  float fa = (float)alpha, f1a = (float)(1 - alpha), feps = (float)eps, fmom = (float)mom;
  float flr = (float)-lr, fwd = (float)wd;
  for (int64_t i = 0; i < cnt; i++) {
    float gi = g[i];
    if (wd != 0) gi = fmaf(fwd, p[i], gi);
    sq[i] = fmaf(f1a * gi, gi, sq[i] * fa);
    float avg = sqrtf(sq[i]) + feps;
    if (mom > 0) {
      b[i] = b[i] * fmom + gi / avg;
      p[i] = fmaf(flr, b[i], p[i]);
    } else {
      p[i] = p[i] + flr * gi / avg;
    }
  }
}

/* torch adagrad, lr_decay 0 and initial_accumulator_value 0. */
static void adagrad(const Node *n, void **val, int64_t cnt, int64_t step) {
  float *p = buf(n, val, 0), *g = buf(n, val, 1), *sum = buf(n, val, 2);
  double lr = n->a.f[0], eps = n->a.f[1], wd = n->a.f[2], lr_decay = 0;
  double clr = lr / (1 + (double)(step - 1) * lr_decay);
  float fclr = (float)-clr, feps = (float)eps, fwd = (float)wd;
  for (int64_t i = 0; i < cnt; i++) {
    float gi = g[i];
    if (wd != 0) gi = fmaf(fwd, p[i], gi);
    sum[i] = fmaf(1.0f * gi, gi, sum[i]);
    float std = sqrtf(sum[i]) + feps;
    p[i] = p[i] + fclr * gi / std;
  }
}

/* torch.nn.BatchNorm's running statistics: r = momentum * batch + (1 -
 * momentum) * r in double, the batch variance made unbiased (count /
 * (count - 1)); operands running_mean, running_var, mean, var. */
static void running_stats(const Node *n, void **val, int64_t cnt) {
  float *rm = buf(n, val, 0), *rv = buf(n, val, 1), *m = buf(n, val, 2), *v = buf(n, val, 3);
  double mom = n->a.f[0], c = (double)n->a.i[0], unb = c / (c - 1);
  for (int64_t i = 0; i < cnt; i++) {
    rm[i] = (float)(mom * m[i] + (1 - mom) * rm[i]);
    rv[i] = (float)(mom * ((double)v[i] * unb) + (1 - mom) * rv[i]);
  }
}

int interp_update(const Node *n, void **val, const RunCtx *ctx) {
  int64_t cnt = shape_numel(&n->in[0]->shape);
  int64_t step = ctx && ctx->step > 0 ? ctx->step : 1;
  switch (n->op) {
  case OP_OPT_SGD: sgd(n, val, cnt, step); break;
  case OP_OPT_ADAM: adam(n, val, cnt, step); break;
  case OP_OPT_RMSPROP: rmsprop(n, val, cnt); break;
  case OP_OPT_ADAGRAD: adagrad(n, val, cnt, step); break;
  case OP_RUNNING_STATS: running_stats(n, val, cnt); break;
  default: NNDC_ASSERT(!"interp_update: not an update op");
  }
  return 0;
}
