/* conv.c - 2-D convolution and its two gradients in kernel IR.
 *
 * Contract: lower.c runs convolutions as products on gemm.c's micro-kernel
 * and uses the layout kernels here: conv_im2col (the input under each
 * kernel element, per output position), conv_col2im (the input gradient
 * summed back from those columns), conv_im2row (the same as rows, for the
 * weight gradient) and conv_rows (dy as rows of positions).  conv_lower
 * keeps the direct kernels, with no scratch memory, for the degenerate
 * shapes (an empty dimension) the product form does not take:
 *  - CONV2D and CONV2D_BWD_X are sums of shifted planes, so they run as
 *    axpys: per output plane (PARALLEL), zero it, then for each (channel,
 *    kh, kw) add weight * the shifted input rows.  The row and column
 *    ranges are computed so every access is inside both planes (padding
 *    needs no masks), and the innermost loop is a contiguous (stride 1)
 *    axpy that the loop vectorizer turns into vector FMAs.
 *  - CONV2D_BWD_W is a reduction over (n, oh, ow) for every (kh, kw): per
 *    (o, c) (PARALLEL) a register tile of up to KH*KW scalar accumulators
 *    is updated from one dy load and the window of x, so each dy and x value
 *    is loaded once per tile instead of once per weight.
 * Strides, paddings and dilations are per axis (ConvGeom, from the attrs);
 * groups > 1 (w [O, C/G, KH, KW], output channel o reading the input
 * channels of group o / (O/G)) take the direct kernels, depthwise
 * convolutions included: per output plane they sum only C/G channels.
 * Every output element is summed in the same order whatever the thread
 * split.
 */
#include "kir.h"

ConvGeom conv_geom(const Node *n) {
  const int64_t *a = n->a.i;
  ConvGeom c = {{a[0], a[2]}, {a[1], a[3]}, {a[4], a[5]}, a[6]};
  return c;
}

/* Index of [n, c, h, w] in a [*, C, H, W] tensor. */
static KExpr *nchw(KGen *g, KExpr *n, KExpr *c, KExpr *h, KExpr *w, const Shape *s) {
  KExpr *e = kg_add(g, kg_muli(g, n, s->dim[1]), c);
  e = kg_add(g, kg_muli(g, e, s->dim[2]), h);
  return kg_add(g, kg_muli(g, e, s->dim[3]), w);
}

/* x[bn, c, ih, iw], 0 where (ih, iw) lies in the padding (any padding):
 * the load's index is clamped into x and the value selected. */
static KExpr *x_at(KGen *g, int xb, const Shape *xs, const ConvGeom *cg, KExpr *bn, KExpr *c, KExpr *ih, KExpr *iw) {
  if (cg->p[0] == 0 && cg->p[1] == 0) return kg_load(g, xb, nchw(g, bn, c, ih, iw, xs));
  int64_t H = xs->dim[2], W = xs->dim[3];
  KExpr *ok = kg_bin(g, KB_AND, kg_bin(g, KB_AND, kg_bin(g, KB_GE, ih, kg_int(g, 0)), kg_bin(g, KB_LT, ih, kg_int(g, H))),
                     kg_bin(g, KB_AND, kg_bin(g, KB_GE, iw, kg_int(g, 0)), kg_bin(g, KB_LT, iw, kg_int(g, W))));
  KExpr *cih = kg_bin(g, KB_MIN, kg_bin(g, KB_MAX, ih, kg_int(g, 0)), kg_int(g, H - 1));
  KExpr *ciw = kg_bin(g, KB_MIN, kg_bin(g, KB_MAX, iw, kg_int(g, 0)), kg_int(g, W - 1));
  return kg_sel(g, ok, kg_load(g, xb, nchw(g, bn, c, cih, ciw, xs)), kg_f32(g, 0));
}

/* x * c, or x itself when c is 1 (no dilation keeps the kernels as they were). */
static KExpr *scale(KGen *g, KExpr *x, int64_t c) { return c == 1 ? x : kg_muli(g, x, c); }

/* The output positions o in [0, n) whose input position o*S + k*D - P on
 * axis ax (0 h, 1 w) lies in [0, len): [max(0, ceil((P-k*D)/S)),
 * min(n, ceil((len+P-k*D)/S))). */
static void out_range(KGen *g, KExpr *k, const ConvGeom *cg, int ax, int64_t len, int64_t n, KExpr **lo, KExpr **hi) {
  int64_t S = cg->s[ax], P = cg->p[ax];
  k = scale(g, k, cg->d[ax]);
  KExpr *a = kg_bin(g, KB_SUB, kg_int(g, P + S - 1), k);
  KExpr *b = kg_bin(g, KB_SUB, kg_int(g, len + P + S - 1), k);
  *lo = kg_bin(g, KB_MAX, kg_bin(g, KB_DIV, a, kg_int(g, S)), kg_int(g, 0));
  *hi = kg_bin(g, KB_MIN, kg_bin(g, KB_DIV, b, kg_int(g, S)), kg_int(g, n));
}

/* The input position o*S + k*D - P of output position o and tap k on axis ax. */
static KExpr *in_pos(KGen *g, KExpr *o, KExpr *k, const ConvGeom *cg, int ax) {
  return kg_addi(g, kg_add(g, kg_muli(g, o, cg->s[ax]), scale(g, k, cg->d[ax])), -cg->p[ax]);
}

/* The shifted-plane sum shared by CONV2D and CONV2D_BWD_X:
 *   big[bn, q, oh*S+kh-P, ow*S+kw-P]  (the plane with H x W)
 *   small[bn, q, oh, ow]              (the plane with OH x OW)
 * fwd: out = small-shaped y, in = x (big); for (c, kh, kw): y += w[o,c,kh,kw] * x window.
 * bwd_x: out = big-shaped dx, in = dy (small); for (o, kh, kw): dx window += w[o,c,kh,kw] * dy. */
static void conv_axpy(KGen *g, const Node *n, int ob, int xb, int wb, int fwd) {
  const Shape *big = fwd ? &n->in[0]->shape : &n->shape, *small = fwd ? &n->shape : &n->in[0]->shape;
  const Shape *ws = &n->in[1]->shape;
  ConvGeom cg = conv_geom(n);
  int64_t CG = ws->dim[1], OG = ws->dim[0] / cg.g;  /* input, output channels per group */
  int64_t Q = fwd ? small->dim[1] : big->dim[1];   /* channels of the output */
  int64_t R = fwd ? CG : OG;                        /* channels summed over (of the group) */
  const Shape *os = fwd ? small : big;
  int64_t plane = os->dim[2] * os->dim[3];
  KExpr *r, *z, *q, *kh, *kw, *oh, *ow;
  KStmt **at = &g->k->body;
  at = kg_for(g, &at, &r, os->dim[0] * Q, KL_PARALLEL);
  KExpr *bn = kg_bin(g, KB_DIV, r, kg_int(g, Q)), *ch = kg_bin(g, KB_REM, r, kg_int(g, Q));
  KStmt **zl = kg_loop(g, &at, &z, kg_int(g, 0), kg_int(g, plane), 1, KL_VECTOR);
  kg_store(g, zl, ob, kg_add(g, kg_muli(g, r, plane), z), kg_f32(g, 0));
  at = kg_for(g, &at, &q, R, 0);
  at = kg_for(g, &at, &kh, ws->dim[2], 0);
  at = kg_for(g, &at, &kw, ws->dim[3], 0);
  /* fwd: ch = o, q = c in its group; bwd_x: ch = c, q = o in its group */
  KExpr *grp = cg.g == 1 ? kg_int(g, 0) : kg_bin(g, KB_DIV, ch, kg_int(g, fwd ? OG : CG));
  KExpr *qabs = cg.g == 1 ? q : kg_add(g, kg_muli(g, grp, fwd ? CG : OG), q);
  KExpr *cin = cg.g == 1 ? ch : kg_bin(g, KB_REM, ch, kg_int(g, CG));
  int wv;
  KExpr *widx = fwd ? nchw(g, ch, q, kh, kw, ws) : nchw(g, qabs, cin, kh, kw, ws);
  at = kg_let(g, at, &wv, kg_load(g, wb, widx));
  KExpr *hlo, *hhi, *wlo, *whi;
  out_range(g, kh, &cg, 0, big->dim[2], small->dim[2], &hlo, &hhi);
  out_range(g, kw, &cg, 1, big->dim[3], small->dim[3], &wlo, &whi);
  at = kg_loop(g, &at, &oh, hlo, hhi, 1, 0);
  at = kg_loop(g, &at, &ow, wlo, whi, 1, KL_VECTOR);
  KExpr *ih = in_pos(g, oh, kh, &cg, 0), *iw = in_pos(g, ow, kw, &cg, 1);
  KExpr *bi = nchw(g, bn, fwd ? qabs : ch, ih, iw, big), *si = nchw(g, bn, fwd ? ch : qabs, oh, ow, small);
  KExpr *oi = fwd ? si : bi, *ii = fwd ? bi : si;
  KExpr *prod = kg_bin(g, KB_MUL, kg_var(g, wv), kg_load(g, xb, ii));
  kg_store(g, at, ob, oi, kg_bin(g, KB_ADD, kg_load(g, ob, oi), prod));
  g->k->flops = 2.0 * (double)shape_numel(small) * (double)(CG * ws->dim[2] * ws->dim[3]);
}

/* Up to this many (kh, kw) accumulators per tile of CONV2D_BWD_W. */
enum { MAX_TILE = 32 };

/* CONV2D_BWD_W(x, dy): dw[o,c,kh,kw] = sum_{n,oh,ow} dy[n,o,oh,ow]
 * x[n, o/(O/G)*C/G + c, oh*Sh+kh*Dh-Ph, ow*Sw+kw*Dw-Pw]. */
static void conv_bwd_w(KGen *g, const Node *n, int ob, int xb, int yb) {
  const Shape *xs = &n->in[0]->shape, *ys = &n->in[1]->shape, *ws = &n->shape;
  ConvGeom cg = conv_geom(n);
  int64_t C = ws->dim[1], KH = ws->dim[2], KW = ws->dim[3], OG = ws->dim[0] / cg.g;
  int rows = KH * KW <= MAX_TILE ? (int)KH : 1;  /* kh rows per tile */
  int cols = (int)(KW < MAX_TILE ? KW : MAX_TILE);
  KExpr *r, *kh0, *kw0, *bn, *oh, *ow;
  KStmt **at = &g->k->body;
  at = kg_for(g, &at, &r, ws->dim[0] * C, KL_PARALLEL);
  KExpr *o = kg_bin(g, KB_DIV, r, kg_int(g, C)), *c = kg_bin(g, KB_REM, r, kg_int(g, C));
  KExpr *cx = cg.g == 1 ? c : kg_add(g, kg_muli(g, kg_bin(g, KB_DIV, o, kg_int(g, OG)), C), c);  /* x's channel */
  if (rows == KH) kh0 = kg_int(g, 0);
  else at = kg_loop(g, &at, &kh0, kg_int(g, 0), kg_int(g, KH), 1, 0);
  if (cols == KW) kw0 = kg_int(g, 0);
  else at = kg_loop(g, &at, &kw0, kg_int(g, 0), kg_int(g, KW), 1, 0);
  int nt = cols == KW ? cols : 1;  /* columns per tile (1 when KW is too wide) */
  int acc[MAX_TILE], dv;
  for (int t = 0; t < rows * nt; t++) at = kg_let(g, at, &acc[t], kg_f32(g, 0));
  KStmt **body = kg_loop(g, &at, &bn, kg_int(g, 0), kg_int(g, ys->dim[0]), 1, 0);
  body = kg_for(g, &body, &oh, ys->dim[2], 0);
  body = kg_for(g, &body, &ow, ys->dim[3], 0);
  body = kg_let(g, body, &dv, kg_load(g, yb, nchw(g, bn, o, oh, ow, ys)));
  for (int t = 0; t < rows * nt; t++) {
    KExpr *kh = kg_addi(g, kh0, t / nt), *kw = kg_addi(g, kw0, t % nt);
    KExpr *xv = x_at(g, xb, xs, &cg, bn, cx, in_pos(g, oh, kh, &cg, 0), in_pos(g, ow, kw, &cg, 1));
    body = kg_set(g, body, acc[t], kg_bin(g, KB_ADD, kg_var(g, acc[t]), kg_bin(g, KB_MUL, kg_var(g, dv), xv)));
  }
  for (int t = 0; t < rows * nt; t++) {
    KExpr *kh = kg_addi(g, kh0, t / nt), *kw = kg_addi(g, kw0, t % nt);
    at = kg_store(g, at, ob, nchw(g, o, c, kh, kw, ws), kg_var(g, acc[t]));
  }
  g->k->flops = 2.0 * (double)shape_numel(ys) * (double)(C * KH * KW);
}

/* ------------------------------------------------------ GEMM formulation */

/* col[n*sn + (c*KH*KW + kh*KW + kw)*sk + (oh*OW + ow)*sp] =
 * x[n, c, oh*Sh+kh*Dh-Ph, ow*Sw+kw*Dw-Pw], 0 outside x (groups 1).  Rows of positions are split
 * into the zero margins and the stretch inside x, so no load is masked. */
void conv_im2col(KGen *g, const Shape *xs, const Shape *ws, const Shape *ys, const ConvGeom *cg, int xb, int colb,
                 int64_t sn, int64_t sk, int64_t sp) {
  int64_t C = xs->dim[1], H = xs->dim[2], W = xs->dim[3], KH = ws->dim[2], KW = ws->dim[3];
  int64_t OH = ys->dim[2], OW = ys->dim[3];
  KExpr *r, *kh, *kw, *oh, *ow;
  KStmt **at = &g->k->body;
  at = kg_for(g, &at, &r, xs->dim[0] * C, KL_PARALLEL);
  KExpr *bn = kg_bin(g, KB_DIV, r, kg_int(g, C)), *c = kg_bin(g, KB_REM, r, kg_int(g, C));
  at = kg_for(g, &at, &kh, KH, 0);
  at = kg_for(g, &at, &kw, KW, 0);
  KExpr *ck = kg_add(g, kg_muli(g, kg_add(g, kg_muli(g, c, KH), kh), KW), kw);
  KExpr *base = kg_add(g, kg_muli(g, bn, sn), kg_muli(g, ck, sk));
  KExpr *hlo, *hhi, *wlo, *whi;
  out_range(g, kh, cg, 0, H, OH, &hlo, &hhi);
  out_range(g, kw, cg, 1, W, OW, &wlo, &whi);
  at = kg_for(g, &at, &oh, OH, 0);
  KExpr *inrow = kg_bin(g, KB_AND, kg_bin(g, KB_GE, oh, hlo), kg_bin(g, KB_LT, oh, hhi));
  KExpr *rowbase = kg_add(g, base, kg_muli(g, kg_muli(g, oh, OW), sp));
  /* a row outside x: zeros */
  KStmt **zr = kg_if(g, &at, kg_bin(g, KB_EQ, kg_cast(g, KT_I64, inrow), kg_int(g, 0)));
  zr = kg_loop(g, &zr, &ow, kg_int(g, 0), kg_int(g, OW), 1, KL_VECTOR);
  kg_store(g, zr, colb, kg_add(g, rowbase, kg_muli(g, ow, sp)), kg_f32(g, 0));
  KStmt **in = kg_if(g, &at, inrow);
  KStmt **l0 = kg_loop(g, &in, &ow, kg_int(g, 0), wlo, 1, 0);
  kg_store(g, l0, colb, kg_add(g, rowbase, kg_muli(g, ow, sp)), kg_f32(g, 0));
  KStmt **l1 = kg_loop(g, &in, &ow, wlo, whi, 1, KL_VECTOR);
  KExpr *ih = in_pos(g, oh, kh, cg, 0), *iw = in_pos(g, ow, kw, cg, 1);
  kg_store(g, l1, colb, kg_add(g, rowbase, kg_muli(g, ow, sp)), kg_load(g, xb, nchw(g, bn, c, ih, iw, xs)));
  KStmt **l2 = kg_loop(g, &in, &ow, whi, kg_int(g, OW), 1, 0);
  kg_store(g, l2, colb, kg_add(g, rowbase, kg_muli(g, ow, sp)), kg_f32(g, 0));
  g->k->flops = 0;
}

/* col[(n*OH*OW + oh*OW + ow)*CKK + c*KH*KW + kh*KW + kw] = x[n, c,
 * oh*Sh+kh*Dh-Ph, ow*Sw+kw*Dw-Pw], 0 outside x (groups 1): a row of kernel elements per output position,
 * written contiguously (the rows layout CONV2D_BWD_W's product reads). */
void conv_im2row(KGen *g, const Shape *xs, const Shape *ws, const Shape *ys, const ConvGeom *cg, int xb, int colb) {
  int64_t C = xs->dim[1], KH = ws->dim[2], KW = ws->dim[3];
  int64_t OH = ys->dim[2], OW = ys->dim[3], CKK = C * KH * KW;
  KExpr *r, *ow, *c, *kh, *kw;
  KStmt **at = &g->k->body;
  at = kg_for(g, &at, &r, xs->dim[0] * OH, KL_PARALLEL);
  KExpr *bn = kg_bin(g, KB_DIV, r, kg_int(g, OH)), *oh = kg_bin(g, KB_REM, r, kg_int(g, OH));
  at = kg_for(g, &at, &ow, OW, 0);
  at = kg_for(g, &at, &c, C, 0);
  at = kg_for(g, &at, &kh, KH, 0);
  at = kg_for(g, &at, &kw, KW, KL_VECTOR);
  KExpr *ih = in_pos(g, oh, kh, cg, 0), *iw = in_pos(g, ow, kw, cg, 1);
  KExpr *dst = kg_add(g, kg_muli(g, kg_add(g, kg_muli(g, r, OW), ow), CKK),
                      kg_add(g, kg_muli(g, kg_add(g, kg_muli(g, c, KH), kh), KW), kw));
  kg_store(g, at, colb, dst, x_at(g, xb, xs, cg, bn, c, ih, iw));
  g->k->flops = 0;
}

/* dx[n, c, h, w] = sum over (kh, kw, oh, ow) with oh*Sh+kh*Dh-Ph = h and
 * ow*Sw+kw*Dw-Pw = w (groups 1) of dcol[n, c*KH*KW + kh*KW + kw, oh*OW + ow]: per (n, c)
 * plane (PARALLEL), zero it, then add each (kh, kw) plane of dcol at its
 * shift (the inverse of conv_im2col's layout sn = CKK*P, sk = P, sp = 1). */
void conv_col2im(KGen *g, const Shape *xs, const Shape *ws, const Shape *ys, const ConvGeom *cg, int dcolb, int dxb) {
  int64_t C = xs->dim[1], H = xs->dim[2], W = xs->dim[3], KH = ws->dim[2], KW = ws->dim[3];
  int64_t OH = ys->dim[2], OW = ys->dim[3], CKK = C * KH * KW;
  KExpr *r, *z, *kh, *kw, *oh, *ow;
  KStmt **at = &g->k->body;
  at = kg_for(g, &at, &r, xs->dim[0] * C, KL_PARALLEL);
  KExpr *bn = kg_bin(g, KB_DIV, r, kg_int(g, C)), *c = kg_bin(g, KB_REM, r, kg_int(g, C));
  KStmt **zl = kg_loop(g, &at, &z, kg_int(g, 0), kg_int(g, H * W), 1, KL_VECTOR);
  kg_store(g, zl, dxb, kg_add(g, kg_muli(g, r, H * W), z), kg_f32(g, 0));
  at = kg_for(g, &at, &kh, KH, 0);
  at = kg_for(g, &at, &kw, KW, 0);
  KExpr *ck = kg_add(g, kg_muli(g, kg_add(g, kg_muli(g, c, KH), kh), KW), kw);
  KExpr *base = kg_add(g, kg_muli(g, bn, CKK * OH * OW), kg_muli(g, ck, OH * OW));
  KExpr *hlo, *hhi, *wlo, *whi;
  out_range(g, kh, cg, 0, H, OH, &hlo, &hhi);
  out_range(g, kw, cg, 1, W, OW, &wlo, &whi);
  at = kg_loop(g, &at, &oh, hlo, hhi, 1, 0);
  at = kg_loop(g, &at, &ow, wlo, whi, 1, KL_VECTOR);
  KExpr *ih = in_pos(g, oh, kh, cg, 0), *iw = in_pos(g, ow, kw, cg, 1);
  KExpr *di = nchw(g, bn, c, ih, iw, xs);
  KExpr *v = kg_load(g, dcolb, kg_add(g, base, kg_add(g, kg_muli(g, oh, OW), ow)));
  kg_store(g, at, dxb, di, kg_bin(g, KB_ADD, kg_load(g, dxb, di), v));
  g->k->flops = (double)shape_numel(ys) / (double)ys->dim[1] * (double)CKK;
}

/* out[(n*P + p)*O + o] = dy[(n*O + o)*P + p]: dy [N, O, P] as rows of
 * positions (the right operand of CONV2D_BWD_W's product). */
void conv_rows(KGen *g, const Shape *ys, int yb, int ob) {
  int64_t O = ys->dim[1], P = ys->dim[2] * ys->dim[3];
  KExpr *r, *o;
  KStmt **at = &g->k->body;
  at = kg_for(g, &at, &r, ys->dim[0] * P, KL_PARALLEL);
  KExpr *bn = kg_bin(g, KB_DIV, r, kg_int(g, P)), *p = kg_bin(g, KB_REM, r, kg_int(g, P));
  at = kg_for(g, &at, &o, O, 0);
  KExpr *src = kg_add(g, kg_muli(g, kg_add(g, kg_muli(g, bn, O), o), P), p);
  kg_store(g, at, ob, kg_add(g, kg_muli(g, r, O), o), kg_load(g, yb, src));
  g->k->flops = 0;
}

void conv_lower(KGen *g, const Node *n, int ob, int b0, int b1) {
  switch (n->op) {
  case OP_CONV2D: conv_axpy(g, n, ob, b0, b1, 1); break;
  case OP_CONV2D_BWD_X: conv_axpy(g, n, ob, b0, b1, 0); break;
  case OP_CONV2D_BWD_W: conv_bwd_w(g, n, ob, b0, b1); break;
  default: NNDC_ASSERT(0 && "not a convolution");
  }
}
