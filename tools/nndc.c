/* nndc.c - the command line: the only place that prints to the user or exits.
 *
 *   nndc check M.nnd
 *   nndc ir M.nnd [--stage parsed|grad|opt] [--dot] [--grad-input NAME]
 *   nndc run M.nnd --feed NAME=FILE ... [--load P] [--out DIR] [--grad] [--grad-input NAME]
 *                  [--seed S] [--png]
 *   nndc train M.nnd --data NAME=FILE ... [--test NAME=FILE ...] [--load P] [--save P]
 *                    [--save-every K] [--resume] [--epochs E] [--batch B] [--seed S] [--no-shuffle]
 *                    [--log F.csv] [--log-every K] [--plot F.svg]
 *   nndc attack M.nnd --load P --test NAME=FILE ... [--eps E1,E2,...] [--batch B] [--grad-input NAME]
 *   mpirun -np K nndc train ...   (data-parallel, spec 11)
 *   nndc sweep M.nnd --data ... --test ... (--grid KEY=V1,... | --random N --range KEY=DIST)
 *                    [--parallel P] [--csv FILE] [--seed S] [--epochs E] [-v]
 *   nndc emit-c M.nnd -o DIR [--train] [--weights P]
 *   nndc bench M.nnd [--train] [--json] [--repeats R] [--baseline]
 *   nndc import MODEL.onnx [-o DIR]
 *   nndc export M.nnd [--load P] [--seed S] -o M.onnx
 * Every command takes -D NAME=VALUE; run, train and bench take --engine
 * jit|interp and --threads T.  Exit status: 0 ok, 1 model or data error
 * (diagnostics printed), 2 usage error. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include "codegen/target.h"

static void usage(void) {
  fputs("usage: nndc COMMAND MODEL.nnd [options]\n"
        "commands:\n"
        "  check M.nnd                        parse and type-check\n"
        "  ir M.nnd [--stage parsed|grad|opt] [--dot] [--grad-input NAME]\n"
        "  run M.nnd --feed NAME=FILE ... [--load P] [--out DIR] [--grad] [--grad-input NAME]\n"
        "            [--seed S] [--png]\n"
        "  train M.nnd --data NAME=FILE ... [--test NAME=FILE ...] [--load P] [--save P]\n"
        "              [--save-every K] [--resume] [--epochs E] [--batch B] [--seed S] [--no-shuffle]\n"
        "              [--log F.csv] [--log-every K] [--plot F.svg]\n"
        "              [--opt KEY=VALUE] (optimizer options: lr, momentum, weight_decay, beta1, ...)\n"
        "              (under mpirun -np K: data-parallel on K processes)\n"
        "  attack M.nnd --load P --test NAME=FILE ... [--eps E1,E2,...] [--batch B] [--grad-input NAME]\n"
        "              test loss and metrics under the fast gradient sign method at each epsilon\n"
        "  sweep M.nnd --data ... --test ... (--grid KEY=V1,V2,... | --random N --range KEY=DIST)\n"
        "              [--parallel P] [--csv FILE] [--seed S] [--epochs E] [-v]\n"
        "              KEY: lr momentum weight_decay beta1 beta2 eps alpha batch epochs seed;\n"
        "              DIST: uniform(a,b) or loguniform(a,b) (under mpirun: trials over the ranks)\n"
        "  emit-c M.nnd -o DIR [--train] [--weights P]\n"
        "  bench M.nnd [--train] [--json] [--repeats R] [--baseline]\n"
        "  generate M.nnd --load P [--prompt TEXT] [--tokens K] [--temperature T] [--top-k K] [--seed S]\n"
        "  import MODEL.onnx [-o DIR]         DIR/MODEL.nnd and DIR/MODEL.safetensors\n"
        "  export M.nnd [--load P] [--seed S] -o M.onnx   the evaluation graph as ONNX (opset 17)\n"
        "options for every command: -D NAME=VALUE\n"
        "options for run, train, bench, attack, emit-c: --target generic|avx2|avx512|host\n"
        "  (the code-generation target; default: NNDC_TARGET, else the host's best)\n"
        "options for run, train, bench, attack: --engine jit|interp, --threads T\n",
        stderr);
}

static _Noreturn void usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("nndc: usage error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\n(run 'nndc --help' for the commands)\n", stderr);
  va_end(ap);
  exit(2);
}

static int64_t parse_int(const char *opt, const char *s, int64_t lo) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *s == 0 || *end || v < lo) usage_error("%s needs an integer >= %lld, got '%s'", opt, (long long)lo, s);
  return v;
}

static Pair parse_pair(const char *opt, const char *s) {
  const char *eq = strchr(s, '=');
  if (!eq || eq == s || !eq[1]) usage_error("%s needs NAME=FILE, got '%s'", opt, s);
  Pair p = {strndup(s, (size_t)(eq - s)), eq + 1};
  return p;
}

static Define parse_define(const char *s) {
  const char *eq = strchr(s, '=');
  if (!eq || eq == s) usage_error("-D needs NAME=VALUE, got '%s'", s);
  Define d = {strndup(s, (size_t)(eq - s)), 0, 0};
  char *end;
  errno = 0;
  long long iv = strtoll(eq + 1, &end, 10);
  if (!errno && eq[1] && !*end) {
    d.value = (double)iv;
    d.is_int = 1;
    return d;
  }
  d.value = strtod(eq + 1, &end);
  if (!eq[1] || *end || !isfinite(d.value)) usage_error("-D %s: '%s' is not a number", d.name, eq + 1);
  return d;
}

/* Takes the value of option argv[*i] (as the next word). */
static const char *optval(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) usage_error("%s needs a value", argv[*i]);
  return argv[++*i];
}

static void add_pair(Pair *arr, int *n, Pair p, const char *opt) {
  if (*n >= MAX_ITEMS) usage_error("too many %s options", opt);
  arr[(*n)++] = p;
}

static void parse_option(Cli *c, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  if (!strncmp(a, "-D", 2)) {
    if (c->ndefs >= MAX_ITEMS) usage_error("too many -D options");
    c->defs[c->ndefs++] = parse_define(a[2] ? a + 2 : optval(argc, argv, i));
  } else if (!strcmp(a, "--feed") || !strcmp(a, "--data")) {
    add_pair(c->feeds, &c->nfeeds, parse_pair(a, optval(argc, argv, i)), a);
  } else if (!strcmp(a, "--test")) {
    add_pair(c->tests, &c->ntests, parse_pair(a, optval(argc, argv, i)), a);
  } else if (!strcmp(a, "--opt")) {
    Pair p = parse_pair(a, optval(argc, argv, i));
    char *end;
    double v = strtod(p.path, &end);
    if (*end || !isfinite(v) || v < 0) usage_error("--opt %s: '%s' is not a number >= 0", p.name, p.path);
    add_pair(c->opts, &c->nopts, p, a);
  } else if (!strcmp(a, "--grid") || !strcmp(a, "--range")) {
    int *n = a[2] == 'g' ? &c->ngrid : &c->nrange;
    if (*n >= MAX_ITEMS) usage_error("too many %s options", a);
    (a[2] == 'g' ? c->grid : c->range)[(*n)++] = optval(argc, argv, i);
  } else if (!strcmp(a, "--random")) c->random = parse_int(a, optval(argc, argv, i), 1);
  else if (!strcmp(a, "--parallel")) c->parallel = parse_int(a, optval(argc, argv, i), 1);
  else if (!strcmp(a, "--csv")) c->csv = optval(argc, argv, i);
  else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) c->verbose = 1;
  else if (!strcmp(a, "--load")) c->load = optval(argc, argv, i);
  else if (!strcmp(a, "--save")) c->save = optval(argc, argv, i);
  else if (!strcmp(a, "--out")) c->out = optval(argc, argv, i);
  else if (!strcmp(a, "-o")) c->emit_dir = optval(argc, argv, i);
  else if (!strcmp(a, "--weights")) c->weights = optval(argc, argv, i);
  else if (!strcmp(a, "--stage")) {
    c->stage = optval(argc, argv, i);
    if (strcmp(c->stage, "parsed") && strcmp(c->stage, "grad") && strcmp(c->stage, "opt"))
      usage_error("--stage must be parsed, grad or opt, got '%s'", c->stage);
  } else if (!strcmp(a, "--dot")) c->dot = 1;
  else if (!strcmp(a, "--grad")) c->grad = 1;
  else if (!strcmp(a, "--png")) c->png = 1;
  else if (!strcmp(a, "--train")) c->train = 1;
  else if (!strcmp(a, "--json")) c->json = 1;
  else if (!strcmp(a, "--baseline")) c->baseline = 1;
  else if (!strcmp(a, "--no-shuffle")) c->no_shuffle = 1;
  else if (!strcmp(a, "--resume")) c->resume = 1;
  else if (!strcmp(a, "--save-every")) c->save_every = parse_int(a, optval(argc, argv, i), 1);
  else if (!strcmp(a, "--epochs")) c->epochs = parse_int(a, optval(argc, argv, i), 0);
  else if (!strcmp(a, "--batch")) c->batch = parse_int(a, optval(argc, argv, i), 1);
  else if (!strcmp(a, "--repeats")) c->repeats = parse_int(a, optval(argc, argv, i), 1);
  else if (!strcmp(a, "--grad-input")) c->grad_input = optval(argc, argv, i);
  else if (!strcmp(a, "--eps")) c->eps = optval(argc, argv, i);
  else if (!strcmp(a, "--log")) c->log = optval(argc, argv, i);
  else if (!strcmp(a, "--plot")) c->plot = optval(argc, argv, i);
  else if (!strcmp(a, "--log-every")) c->log_every = parse_int(a, optval(argc, argv, i), 1);
  else if (!strcmp(a, "--prompt")) c->prompt = optval(argc, argv, i);
  else if (!strcmp(a, "--tokens")) c->tokens = parse_int(a, optval(argc, argv, i), 0);
  else if (!strcmp(a, "--top-k")) c->top_k = parse_int(a, optval(argc, argv, i), 0);
  else if (!strcmp(a, "--temperature")) {
    const char *v = optval(argc, argv, i);
    char *end;
    errno = 0;
    c->temperature = strtod(v, &end);
    if (errno || *v == 0 || *end || !(c->temperature >= 0) || isinf(c->temperature))
      usage_error("--temperature needs a number >= 0, got '%s'", v);
  }
  else if (!strcmp(a, "--seed")) {
    c->seed = parse_int(a, optval(argc, argv, i), 0);
    c->has_seed = 1;
  } else if (!strcmp(a, "--threads")) c->threads = (int)parse_int(a, optval(argc, argv, i), 1);
  else if (!strcmp(a, "--target")) {
    const char *t = optval(argc, argv, i);
    int k = target_parse(t);
    if (k < 0) usage_error("--target must be generic, avx2, avx512 or host, got '%s'", t);
    target_set(k);
  } else if (!strcmp(a, "--engine")) {
    const char *e = optval(argc, argv, i);
    if (!strcmp(e, "jit")) c->engine = ENGINE_JIT;
    else if (!strcmp(e, "interp")) c->engine = ENGINE_INTERP;
    else usage_error("--engine must be jit or interp, got '%s'", e);
  } else usage_error("unknown option '%s'", a);
}

static void parse_args(Cli *c, int argc, char **argv) {
  memset(c, 0, sizeof *c);
  c->engine = ENGINE_JIT;
  c->epochs = -1;
  c->tokens = -1;
  c->temperature = 1;
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage();
    exit(argc < 2 ? 2 : 0);
  }
  c->cmd = argv[1];
  static const char *cmds[] = {"check", "ir", "run", "train", "emit-c", "bench", "generate", "import", "export",
                               "attack", "sweep"};
  int known = 0;
  for (size_t k = 0; k < sizeof cmds / sizeof *cmds; k++) known |= !strcmp(c->cmd, cmds[k]);
  if (!known) usage_error("unknown command '%s'", c->cmd);
  for (int i = 2; i < argc; i++) {
    if (argv[i][0] == '-' && argv[i][1]) parse_option(c, argc, argv, &i);
    else if (!c->model) c->model = argv[i];
    else usage_error("unexpected argument '%s'", argv[i]);
  }
  if (!c->model) usage_error("%s needs a model file", c->cmd);
  if (c->resume && !c->load) usage_error("--resume needs --load CHECKPOINT");
  if (c->save_every && !c->save) usage_error("--save-every needs --save PATH");
  if (c->log_every && !c->log) usage_error("--log-every needs --log FILE.csv");
  size_t n = c->save ? strlen(c->save) : 0;
  if (c->save_every && (n < 12 || strcmp(c->save + n - 12, ".safetensors")))
    usage_error("--save-every needs a .safetensors --save path (a training checkpoint), got '%s'", c->save);
}

/* Prints the diagnostics gathered so far and forgets them. */
void flush_diag(Diag *d) {
  if (d->len) fputs(d->buf, stderr);
  diag_clear(d);
}

/* Under MPI, an error every process met at the same point (they disagree
 * about the run) ends each of them; an error of one process aborts the job,
 * so that none of the others waits for it in a collective. */
_Noreturn void fail(Diag *d) {
  flush_diag(d);
  if (comm_size() > 1) {
    if (comm_agreed_failure()) {
      comm_finalize();
      exit(1);
    }
    fflush(NULL);
    comm_abort(1);
  }
  exit(1);
}

double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Builds the graph of the model with the command line's -D values. */
void compile(Cli *c, Diag *d, Graph *g, Arena *a, int training, int64_t batch,
                    const Feed *feeds, int nfeeds) {
  graph_init(g, a);
  BuildOpts o = {c->defs, c->ndefs, feeds, nfeeds, training, batch};
  if (fe_compile_file(d, g, c->model, &o)) fail(d);
  if (training && c->has_seed) g->train.seed = (uint64_t)c->seed;
  else if (c->has_seed) g->train.seed = (uint64_t)c->seed;
}

int compile_train(Cli *c, Diag *d, Graph *tgs, Arena *a, int64_t batch, int split) {
  compile(c, d, &tgs[0], a, 1, batch, NULL, 0);
  int n = tgs[0].train.nsteps > 0 ? tgs[0].train.nsteps : 1;
  for (int k = 0; k < n; k++) {
    if (k) compile(c, d, &tgs[k], a, 1, batch, NULL, 0);
    if (tgs[k].train.nsteps) graph_use_step(&tgs[k], k + 1);
    for (int i = 0; i < c->nopts; i++)   /* --opt KEY=VALUE over the optimizer (of every step) */
      if (optim_option(&tgs[k].train.opt, c->opts[i].name, strtod(c->opts[i].path, NULL)))
        usage_error("--opt: the optimizer has no option '%s' (lr, momentum, weight_decay, beta1, beta2, eps, alpha)",
                    c->opts[i].name);
    if (pass_autodiff(d, &tgs[k]) || (split ? pass_optim_split(d, &tgs[k]) : pass_optim(d, &tgs[k]))) fail(d);
  }
  return n;
}

void write_text(const char *s) {
  fputs(s, stdout);
  if (*s && s[strlen(s) - 1] != '\n') fputc('\n', stdout);
}

static int cmd_check(Cli *c, Diag *d) {
  Arena a;
  arena_init(&a);
  Graph g;
  compile(c, d, &g, &a, 0, 0, NULL, 0);
  int64_t values = 0;
  for (int i = 0; i < g.nparams; i++) values += shape_numel(&g.params[i].node->shape);
  flush_diag(d);
  char named[64] = "";
  if (g.nlosses)
    snprintf(named, sizeof named, ", %d named losses, %d train steps", g.nlosses, g.train.nsteps);
  printf("%s: ok: %d inputs, %d params (%lld values), %d outputs%s%s, %d metrics, %d nodes\n", c->model,
         g.ninputs, g.nparams, (long long)values, g.noutputs, g.loss ? ", a loss" : "", named, g.nmetrics, g.nnodes);
  arena_free(&a);
  return 0;
}

static int cmd_ir(Cli *c, Diag *d) {
  Arena a;
  arena_init(&a);
  if (c->stage && !strcmp(c->stage, "parsed")) {
    char *s = fe_dump_parsed(d, &a, c->model);
    if (!s) fail(d);
    flush_diag(d);
    write_text(s);
    arena_free(&a);
    return 0;
  }
  Graph g;
  int stage_grad = c->stage != NULL;
  compile(c, d, &g, &a, stage_grad, 0, NULL, 0);
  if (stage_grad && c->grad_input) mark_target(d, &g, c->grad_input);   /* "grad input NAME = %N" too */
  if (stage_grad && pass_autodiff(d, &g)) fail(d);
  int opt = c->stage && !strcmp(c->stage, "opt");
  if (opt && pass_optim(d, &g)) fail(d);
  if (opt && passes_optimize(d, &g)) fail(d);  /* simplify, fuse: what the JIT lowers */
  if (ir_verify(&g, d)) fail(d);
  flush_diag(d);
  write_text(c->dot ? ir_print_dot(&g, &a) : opt ? fuse_print(&g, &a) : ir_print(&g, &a));
  arena_free(&a);
  return 0;
}

int main(int argc, char **argv) {
  static Cli c;   /* static: the names it holds stay reachable until exit */
  Diag d;
  diag_init(&d);
  if (comm_init(&d, &argc, &argv)) fail(&d);   /* MPI, when started by its launcher */
  flush_diag(&d);
  parse_args(&c, argc, argv);
  int rc;
  if (!strcmp(c.cmd, "check")) rc = cmd_check(&c, &d);
  else if (!strcmp(c.cmd, "ir")) rc = cmd_ir(&c, &d);
  else if (!strcmp(c.cmd, "run")) rc = cmd_run(&c, &d);
  else if (!strcmp(c.cmd, "train")) rc = cmd_train(&c, &d);
  else if (!strcmp(c.cmd, "bench")) rc = cmd_bench(&c, &d);
  else if (!strcmp(c.cmd, "generate")) rc = cmd_generate(&c, &d);
  else if (!strcmp(c.cmd, "import")) rc = cmd_import(&c, &d);
  else if (!strcmp(c.cmd, "export")) rc = cmd_export(&c, &d);
  else if (!strcmp(c.cmd, "attack")) rc = cmd_attack(&c, &d);
  else if (!strcmp(c.cmd, "sweep")) rc = cmd_sweep(&c, &d);
  else rc = cmd_emit_c(&c, &d);
  flush_diag(&d);
  diag_free(&d);
  comm_finalize();
  return rc;
}
