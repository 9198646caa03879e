/* fuse.c - groups nodes into fused kernels (g->fuse_group).
 *
 * Contract: an elementwise node (or EXPAND) with an f32 result, exactly one
 * use in the whole graph, not a root nor a role of the graph, whose user is
 * elementwise with an f32 result of the same shape, joins its user's group.
 * Walking backwards, a user's group is final before its operands are looked
 * at, so every group is a tree of elementwise ops whose root (the highest
 * id) is the only member whose value leaves the group; interior members
 * need no buffer.  codegen/lower_fused.c lowers a group to one kernel: the
 * loads of its external operands, the tree in registers, one store.
 *
 * Products join too: a MATMUL with one use whose user is such an
 * elementwise node of its shape joins the user's group (at most one per
 * group), which becomes the product with the rest of the tree as its
 * epilogue (bias, activation, an activation's derivative in the backward);
 * and a TRANSPOSE swapping the last two axes whose one use is a MATMUL
 * joins the product's group (a group of its own if it has none), which then
 * reads the operand in place with swapped strides; one used only by
 * several MATMULs is FUSE_IN_PLACE, read in place by all of them.  An
 * elementwise node that could take a product its user's group cannot (the
 * group has one) roots a group of its own: a sum of products becomes one
 * product-with-add kernel per term.
 *
 * A normalization's statistics join the kernel of its NORMALIZE: when the
 * NORMALIZE normalizes with a MEAN and a VAR of its own operand over the
 * same axes (layer_norm's last axis; batch_norm's all but the channels,
 * when a channel has rows of at least 8 positions to vectorize over), is in no product's group (a group of its own if it has none),
 * and every other user of the MEAN and the VAR comes after the group's
 * root, they are FUSE_STATS: the group's kernel computes them row by row
 * (codegen/lower_fused.c) and stores them for their later users (the
 * backward's NORMALIZE_BWD): statistics, normalization and affine in one
 * kernel.
 */
#include <stdlib.h>
#include <string.h>
#include "passes.h"

static int fusible(const Node *n) {
  return n->dt == DT_F32 && ((op_info[n->op].flags & F_EW) || n->op == OP_EXPAND);
}

static void pin(void *pinned, Node **n) {
  if (*n) ((uint8_t *)pinned)[(*n)->id] = 1;
}

/* pinned[id] = 1 for every node whose value must stay in a buffer of its own. */
static void pin_roles(Graph *g, uint8_t *pinned, Node *const *roots, int nroots) {
  ir_roles(g, pin, pinned);
  for (int i = 0; i < nroots; i++) pinned[roots[i]->id] = 1;
}

/* Whether every user of s but n and v (through RESHAPEs, which alias
 * it) comes after node `root` or is an update (lowered after every other
 * kernel: codegen/lower.c). */
static int used_after(const Graph *g, const Node *s, const Node *n, const Node *v, int root) {
  for (int j = s->id + 1; j < g->nnodes; j++) {
    const Node *u = g->nodes[j];
    for (int k = 0; k < u->nin; k++) {
      if (u->in[k] != s || u == n || u == v) continue;
      if (u->op == OP_RESHAPE ? !used_after(g, u, n, v, root) : j <= root && !(op_info[u->op].flags & F_UPDATE))
        return 0;
    }
  }
  return 1;
}

/* The NORMALIZEs whose MEAN and VAR their group computes (see above);
 * returns the number of groups added. */
static int fuse_stats(Graph *g, int *group, const uint8_t *has_mm) {
  int added = 0;
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i], *x = n->nin == 3 ? n->in[0] : NULL, *mean = x ? n->in[1] : NULL, *var = x ? n->in[2] : NULL;
    if (n->op != OP_NORMALIZE || !shape_eq(&x->shape, &n->shape)) continue;
    int64_t mask = n->a.i[0], P, G, Q;
    if (mean->op != OP_MEAN || mean->in[0] != x || mean->a.i[0] != mask || !mean->a.i[1] || var->op != OP_VAR ||
        var->in[0] != x || var->in[1] != mean || var->a.i[0] != mask)
      continue;
    /* rows (layer_norm), or channels with whole rows of positions (batch_norm) */
    if (norm_split(&x->shape, (uint64_t)mask, &P, &G, &Q) || (P != 1 && Q < 8)) continue;
    if (group[mean->id] != -1 || group[var->id] != -1 || (group[i] >= 0 && has_mm[group[i]])) continue;
    int root = group[i] >= 0 ? group[i] : i;
    if (!used_after(g, mean, n, var, root) || !used_after(g, var, n, var, root)) continue;
    if (group[i] < 0) group[i] = i, added++;
    group[mean->id] = group[var->id] = FUSE_STATS;
  }
  return added;
}

int pass_fuse(Diag *d, Graph *g, Node *const *roots, int nroots) {
  (void)d;
  int n = g->nnodes, ngroups = 0;
  int *uses = calloc((size_t)n + 1, sizeof *uses), *user = calloc((size_t)n + 1, sizeof *user);
  int *mmuses = calloc((size_t)n + 1, sizeof *mmuses);
  uint8_t *pinned = calloc((size_t)n + 1, 1), *has_mm = calloc((size_t)n + 1, 1);
  int *group = arena_alloc(g->arena, ((size_t)n + 1) * sizeof *group);
  NNDC_ASSERT(uses && user && mmuses && pinned && has_mm);
  for (int i = 0; i < n; i++) {
    const Node *x = g->nodes[i];
    NNDC_ASSERT(x->id == i);
    group[i] = -1;
    for (int j = 0; j < x->nin; j++) {
      uses[x->in[j]->id]++, user[x->in[j]->id] = i;
      mmuses[x->in[j]->id] += x->op == OP_MATMUL;
    }
  }
  pin_roles(g, pinned, roots, nroots);
  for (int i = n - 1; i >= 0; i--) {
    const Node *x = g->nodes[i];
    if (!pinned[i] && uses[i] > 1 && ir_swaps_last_two(x) && mmuses[i] == uses[i]) {
      group[i] = FUSE_IN_PLACE;
      continue;
    }
    if (pinned[i] || uses[i] != 1) continue;
    const Node *u = g->nodes[user[i]];
    int join = 0;
    if (fusible(x)) {
      /* x stays the root of a group of its own when it can take a product
       * its user's group cannot (a sum of products: one product each) */
      int ucarries = group[u->id] >= 0 && has_mm[group[u->id]], xtakes = 0;
      for (int j = 0; j < x->nin; j++) {
        const Node *m = x->in[j];
        xtakes |= m->op == OP_MATMUL && m->dt == DT_F32 && uses[m->id] == 1 && !pinned[m->id] &&
                  shape_eq(&m->shape, &x->shape);
      }
      join = fusible(u) && shape_eq(&x->shape, &u->shape) && !(ucarries && xtakes);
    }
    else if (x->op == OP_MATMUL && x->dt == DT_F32)
      join = fusible(u) && shape_eq(&x->shape, &u->shape) && !(group[u->id] >= 0 && has_mm[group[u->id]]);
    else if (ir_swaps_last_two(x))
      join = u->op == OP_MATMUL;
    if (!join) continue;
    if (group[u->id] < 0) group[u->id] = u->id, ngroups++;
    group[i] = group[u->id];
    if (x->op == OP_MATMUL) has_mm[group[i]] = 1;
  }
  ngroups += fuse_stats(g, group, has_mm);
  g->fuse_group = group;
  free(uses);
  free(user);
  free(mmuses);
  free(pinned);
  free(has_mm);
  return ngroups;
}

char *fuse_print(const Graph *g, Arena *a) {
  char *s = ir_print(g, a);
  for (int r = 0; g->fuse_group && r < g->nnodes; r++) {
    if (g->fuse_group[r] != r) continue;
    char *line = arena_printf(a, "group %%%d:", r);
    for (int i = 0; i <= r; i++)
      if (g->fuse_group[i] == r) line = arena_printf(a, "%s %s%%%d", line, i == r ? "-> " : "", i);
    s = arena_printf(a, "%s%s\n", s, line);
  }
  const char *ip = NULL;
  for (int i = 0; g->fuse_group && i < g->nnodes; i++)
    if (g->fuse_group[i] == FUSE_IN_PLACE) ip = arena_printf(a, "%s %%%d", ip ? ip : "in place:", i);
  if (ip) s = arena_printf(a, "%s%s\n", s, ip);
  const char *st = NULL;
  for (int i = 0; g->fuse_group && i < g->nnodes; i++)
    if (g->fuse_group[i] == FUSE_STATS) st = arena_printf(a, "%s %%%d", st ? st : "statistics in their group:", i);
  return st ? arena_printf(a, "%s%s\n", s, st) : s;
}
