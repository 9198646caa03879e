/* attention.c - recognises attention as users write it and makes it one
 * ATTN node, whose kernels never store the scores (flash attention).
 *
 * Contract: a batched product P @ v (P [B,Tq,Tk] or a reshape of it, v
 * [B,Tk,Dv]) where P = softmax(X) over the last axis, X = tril(Y, k, -inf)
 * with k >= 0 or X = Y, Y = S / c, S * c, c * S (c a one-element f32 CONST)
 * or Y = S, and S = q @ kt ([B,Tq,D] @ [B,D,Tk], possibly reshaped), every
 * one of them used once and none a role of the graph, becomes ATTN(q, k, v)
 * in place of the product (same node, same shape), with k = kt's transpose:
 * the operand of kt's TRANSPOSE (reshaped) when kt swaps the last two axes of
 * one, else a new TRANSPOSE.  The rest of the pattern is left dead for
 * simplify's DCE.  The gradient of ATTN (autodiff.c) recomputes the scores
 * block by block too, so the rewrite runs before pass_autodiff.
 *
 * Only sequences of at least min_keys keys are rewritten: below that the
 * score matrix is small and the GEMM kernels are faster.  NNDC_ATTENTION=
 * fused or unfused in the environment overrides the choice (tests, bench).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "passes.h"

typedef struct AttnMatch {
  Node *q, *kt, *v;
  double scale;
  int causal;
  int64_t k;
} AttnMatch;

static int is_scalar_const(const Node *n) {
  return n->op == OP_CONST && n->dt == DT_F32 && shape_numel(&n->shape) == 1;
}

/* n with its RESHAPE peeled (a reshape used once). */
static Node *peel(Node *n, const int *uses) {
  return n->op == OP_RESHAPE && uses[n->in[0]->id] == 1 ? n->in[0] : n;
}

/* 1 if the product m is an attention, filling *am. */
static int match(Node *m, const int *uses, AttnMatch *am) {
  if (m->op != OP_MATMUL || m->dt != DT_F32 || m->shape.rank != 3) return 0;
  Node *pa = m->in[0], *v = m->in[1];
  if (v->shape.rank != 3 || pa->shape.rank != 3 || uses[pa->id] != 1) return 0;
  Node *p = peel(pa, uses);
  if (p->op != OP_SOFTMAX || p->a.i[0] != p->shape.rank - 1) return 0;
  Node *x = p->in[0];
  if (uses[x->id] != 1) return 0;
  *am = (AttnMatch){.scale = 1};
  if (x->op == OP_TRIL) {
    if (x->a.i[0] < 0 || x->a.f[0] != -INFINITY || uses[x->in[0]->id] != 1) return 0;
    am->causal = 1, am->k = x->a.i[0];
    x = x->in[0];
  }
  Node *s = x;
  if ((x->op == OP_DIV || x->op == OP_MUL) && is_scalar_const(x->in[1]) && x->in[1]->a.f[0] != 0) {
    s = x->in[0], am->scale = x->op == OP_DIV ? 1 / x->in[1]->a.f[0] : x->in[1]->a.f[0];
  }
  else if (x->op == OP_MUL && is_scalar_const(x->in[0]))
    s = x->in[1], am->scale = x->in[0]->a.f[0];
  if (!shape_eq(&s->shape, &x->shape) || (s != x && uses[s->id] != 1)) return 0;
  Node *mm = peel(s, uses);
  if (mm->op != OP_MATMUL || mm->shape.rank != 3 || mm->in[0]->shape.rank != 3 || mm->in[1]->shape.rank != 3)
    return 0;
  if (!shape_eq(&mm->shape, &pa->shape)) return 0;
  am->q = mm->in[0], am->kt = mm->in[1], am->v = v;
  return 1;
}

/* k [B,Tk,D] from kt [B,D,Tk]. */
static Node *untranspose(Graph *g, Node *kt, const int *uses) {
  Shape ks = {3, {kt->shape.dim[0], kt->shape.dim[2], kt->shape.dim[1]}};
  Node *t = peel(kt, uses);
  int r = t->shape.rank;
  if (t->op == OP_TRANSPOSE && uses[t->id] == 1 && r >= 2 && t->a.i[r - 2] == r - 1 && t->a.i[r - 1] == r - 2) {
    int ok = 1;
    for (int j = 0; j < r - 2; j++) ok &= t->a.i[j] == j;
    if (ok) return ir_reshape(g, t->in[0], &ks);
  }
  Attr a;
  memset(&a, 0, sizeof a);
  a.i[0] = 0, a.i[1] = 2, a.i[2] = 1;
  return ir_build(g, OP_TRANSPOSE, &kt, 1, &a, kt->loc);
}

static void count_role(void *uses, Node **slot) {
  if (*slot) ((int *)uses)[(*slot)->id] += 2;  /* a role is never interior */
}

int pass_attention(Graph *g, int64_t min_keys) {
  const char *env = getenv("NNDC_ATTENTION");
  if (env && !strcmp(env, "unfused")) return 0;
  if (env && !strcmp(env, "fused")) min_keys = 0;
  int n = g->nnodes, rewritten = 0;
  int *uses = calloc((size_t)n + 1, sizeof *uses);
  NNDC_ASSERT(uses);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < g->nodes[i]->nin; j++) uses[g->nodes[i]->in[j]->id]++;
  ir_roles(g, count_role, uses);
  for (int i = 0; i < n; i++) {
    Node *m = g->nodes[i];
    AttnMatch am;
    if (!match(m, uses, &am) || am.kt->shape.dim[2] < min_keys) continue;
    Node **in = arena_alloc(g->arena, 3 * sizeof *in);
    in[0] = am.q, in[1] = untranspose(g, am.kt, uses), in[2] = am.v;
    Attr a;
  memset(&a, 0, sizeof a);
    a.f[0] = am.scale, a.i[0] = am.causal, a.i[1] = am.k;
    m->op = OP_ATTN, m->nin = 3, m->in = in, m->a = a;
    rewritten++;
  }
  free(uses);
  if (rewritten) ir_toposort(g);
  return rewritten;
}
