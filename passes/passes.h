/* passes.h - graph-to-graph passes over the tensor IR.  Each pass says what it
 * requires and preserves; the pipeline is a straight list of calls. */
#ifndef NNDC_PASSES_H
#define NNDC_PASSES_H

#include "../ir/ir.h"

/* ----------------------------------------------------------- attention.c */

/* The fewest keys for which attention is fused (below, its GEMMs are faster). */
#define ATTN_MIN_KEYS 64
/* Turns every softmax(scale * q @ kt [tril(k >= 0, -inf)]) @ v with at least
 * min_keys keys into one ATTN node (in place of the product; the pattern's
 * other nodes are left dead) and renumbers the graph topologically if it
 * changed it.  NNDC_ATTENTION=fused|unfused overrides min_keys.  Run by
 * pass_autodiff before differentiating and by passes_optimize_ex first.
 * Returns the number of attentions rewritten. */
int pass_attention(Graph *g, int64_t min_keys);

/* ------------------------------------------------------------ autodiff.c */

/* Reverse mode.  Requires g->loss (a scalar).  Appends the backward nodes
 * (ordinary IR ops, one vector-Jacobian rule per op) and sets g->grads[i] to
 * d loss / d params[i] (a CONST 0 node when the loss does not depend on it).
 * Inputs marked wrt are differentiated too, into g->input_grads.
 * Returns 0, or -1 after reporting (no loss). */
int pass_autodiff(Diag *d, Graph *g);
/* The same for `loss`, a one-element f32 node of g other than g->loss (e.g.
 * run --grad-input's top logit when no labels are fed). */
int pass_autodiff_of(Diag *d, Graph *g, Node *loss);
/* The objective of a saliency map when no labels are fed: the sum over the
 * samples of each one's largest logit, sum(max(L, axis=-1)), where L is the
 * first output, or its operand when that output is softmax or log_softmax
 * over the last axis (the logits).  NULL after reporting (no f32 output). */
Node *autodiff_top_logit(Diag *d, Graph *g);
/* 1 if op has a vector-Jacobian rule (every op that is not F_LEAF or F_NOGRAD must). */
int autodiff_has_rule(Op op);

/* --------------------------------------------------------------- optim.c */

/* Requires pass_autodiff.  Adds the STATE leaves of g->train.opt (zero
 * initialised, named "<param>.<slot>", e.g. "W1.exp_avg") and one OPT_* update
 * node per param, in g->updates.  Returns 0 or -1. */
int pass_optim(Diag *d, Graph *g);
/* The same, but each optimizer update reads its gradient from a STATE leaf
 * "<param>.grad" (not in g->states) that the caller binds: data-parallel
 * training computes g->grads, averages them across processes, then updates. */
int pass_optim_split(Diag *d, Graph *g);

/* ------------------------------------------------------------ simplify.c */

/* Constant folding (elementwise ops of uniform f32 CONSTs), algebra (x*1,
 * x+0, x-0, x/1, neg(neg x), reshape/expand to the same shape), CSE and DCE.
 * Requires a valid graph; preserves validity, topological order and every
 * Node object that survives (ids are renumbered densely).  Params, inputs and
 * states are never removed; nodes the graph's roles (outputs, loss, metrics,
 * grads, updates) need are kept, their references replaced by the surviving
 * representative.  Returns 0. */
int pass_simplify(Diag *d, Graph *g);
/* The same, also keeping roots[0..nroots) alive (replaced in place by their
 * representatives); track[0..ntrack) are replaced by their representatives
 * too, or set to NULL when removed. */
int pass_simplify_ex(Diag *d, Graph *g, Node **roots, int nroots, Node **track, int ntrack);

/* ---------------------------------------------------------------- fuse.c */

/* Groups nodes into fused kernels and records them in g->fuse_group:
 * [nnodes] the id of the group's root (the node whose value leaves the group)
 * or -1 for a node lowered alone.  An elementwise node whose only user is an
 * elementwise node of the same shape joins its user's group, so a group is a
 * tree of f32 elementwise ops with one output, plus at most one MATMUL whose
 * sum the tree takes as its epilogue, plus TRANSPOSEs the MATMUL reads in
 * place.  FUSE_IN_PLACE marks a TRANSPOSE used only by (several) MATMULs,
 * which all read it in place.  Nodes among roots[0..nroots) and the graph's
 * roles are never interior.  Requires ids = positions; invalidated by any
 * pass that renumbers. Returns the number of groups. */
int pass_fuse(Diag *d, Graph *g, Node *const *roots, int nroots);
/* Appends to `ir_print` text the group of each fused node: "group %R: %a %b %R",
 * then "in place: %t ..." for the FUSE_IN_PLACE transposes. */
char *fuse_print(const Graph *g, Arena *a);

/* ------------------------------------------------------------ pipeline.c */

/* The optimizing pipeline: pass_simplify, pass_fuse (ir_verify after each in
 * debug builds).  Returns 0 or -1 after reporting. */
int passes_optimize(Diag *d, Graph *g);
/* The same, also keeping roots[0..nroots) alive and following track[0..ntrack)
 * to their representatives (pass_simplify_ex); the graph's fuse groups are
 * recomputed for the roots.  Returns 0 or -1 after reporting. */
int passes_optimize_ex(Diag *d, Graph *g, Node **roots, int nroots, Node **track, int ntrack);

#endif
