/* mpi_train.c - data-parallel training under mpirun (spec 11), end to end:
 * 2 and 3 processes train the shared MLP (also with dropout) for 20 steps and
 * end with the params of one process with the combined batch (to 1e-5 relative);
 * --test evaluation shared among 2 processes equals one process's; a killed
 * process ends the job with an error naming it within seconds and leaves a
 * checkpoint that resumes; a hung one ends it after NNDC_MPI_TIMEOUT; processes that disagree about the model or the
 * data stop at startup; adversarial training (several train steps, spec 8)
 * with noise drawn in the model matches one process too.  Built and registered only with MPI and without the
 * sanitizers (Open MPI's own allocations are not ours to check). */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "util.h"

#define MPIRUN MPIEXEC " --oversubscribe --allow-run-as-root"
#define MLP NNDC_SHARED_DIR "/models/mlp.nnd"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *sh(int *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *sh(int *st, const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return util_run(cmd, st);
}

/* n samples of random images x f32[n, 784] and labels y i32[n] in dir. */
static void write_data(const char *dir, const char *stem, int64_t n, uint64_t seed) {
  Diag d;
  diag_init(&d);
  char p[600];
  Shape sx = {2, {n, 784}}, sy = {1, {n}};
  float *x = malloc((size_t)n * 784 * 4);
  int32_t *y = malloc((size_t)n * 4);
  util_fill(x, n * 784, seed, 0, 1);
  for (int64_t i = 0; i < n; i++) y[i] = (int32_t)((i * 7 + seed) % 10);
  snprintf(p, sizeof p, "%s/%sx.npy", dir, stem);
  cr_assert_eq(npy_write(&d, p, EL_F32, &sx, x), 0);
  snprintf(p, sizeof p, "%s/%sy.npy", dir, stem);
  cr_assert_eq(npy_write(&d, p, EL_I32, &sy, y), 0);
  free(x);
  free(y);
  diag_free(&d);
}

/* max |a - b| / max |b| over each param of two checkpoints. */
static void same_params(const char *pa, const char *pb, double tol) {
  Diag d;
  diag_init(&d);
  NamedTensor *a, *b;
  int na, nb;
  cr_assert_eq(st_read(&d, pa, &a, &na), 0, "%s", d.buf);
  cr_assert_eq(st_read(&d, pb, &b, &nb), 0, "%s", d.buf);
  cr_assert_eq(na, nb);
  for (int i = 0; i < nb; i++) {
    if (!strncmp(b[i].name, CKPT_STATE_PREFIX, strlen(CKPT_STATE_PREFIX))) continue;
    cr_assert_str_eq(a[i].name, b[i].name);
    int64_t n = shape_numel(&b[i].shape);
    double diff = 0, mag = 0;
    for (int64_t k = 0; k < n; k++) {
      diff = fmax(diff, fabs((double)a[i].data[k] - b[i].data[k]));
      mag = fmax(mag, fabs((double)b[i].data[k]));
    }
    cr_assert(diff <= tol * mag, "param %s: max difference %g, relative %g", b[i].name, diff, diff / mag);
  }
  st_free(a, na);
  st_free(b, nb);
  diag_free(&d);
}

/* K processes with batch 24 / K against one with batch 24, 20 steps, with
 * the MLP's optimizer replaced by `opt` (NULL: its own adam), and with
 * dropout after its hidden layer. */
static void matches_model(const char *src, int K, const char *opt, int dropout, double tol) {
  char *dir = util_tmpdir(), model[600];
  write_data(dir, "", 480, 1);
  int st;
  char *out;
  snprintf(model, sizeof model, "%s/m.nnd", dir);
  out = sh(&st, "sed -e 's/adam(lr=0.001)/%s/' %s %s > %s", opt ? opt : "adam(lr=0.001)",
           dropout ? "-e 's/^h = relu(x @ W1 + b1)/h = dropout(relu(x @ W1 + b1), 0.3)/'" : "", src, model);
  cr_assert_eq(st, 0);
  free(out);
#define TRAIN "%s train %s --data x=%s/x.npy --data y=%s/y.npy --epochs 1 --threads 1"
  out = sh(&st, TRAIN " --batch 24 --save %s/one.safetensors 2>&1", NNDC_BIN, model, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  out = sh(&st, MPIRUN " -np %d " TRAIN " --batch %d --save %s/k.safetensors 2>&1", K, NNDC_BIN, model, dir, dir,
           24 / K, dir);
  cr_assert_eq(st, 0, "%s", out);
  char want[64];
  snprintf(want, sizeof want, "batch %d x %d processes", 24 / K, K);
  cr_assert(strstr(out, want), "%s", out);
  cr_assert(strstr(out, "(step 20)"), "%s", out);
  char *first = strstr(out, "training ");
  cr_assert(first && !strstr(first + 1, "training "), "progress from more than rank 0: %s", out);
  free(out);
  char a[600], b[600];
  snprintf(a, sizeof a, "%s/k.safetensors", dir);
  snprintf(b, sizeof b, "%s/one.safetensors", dir);
  same_params(a, b, tol);
  free(dir);
}

static void matches_one_process(int K, const char *opt, int dropout, double tol) {
  matches_model(MLP, K, opt, dropout, tol);
}

#define SGD "sgd(lr=0.05, momentum=0.9)"
Test(mpi, lstm_on_two_processes_equals_one, .timeout = 600) {
  matches_model(NNDC_SHARED_DIR "/models/lstm.nnd", 2, SGD, 0, 1e-5);
}
Test(mpi, two_processes_equal_one_with_the_combined_batch, .timeout = 300) { matches_one_process(2, SGD, 0, 1e-5); }
Test(mpi, three_processes_equal_one_with_the_combined_batch, .timeout = 300) { matches_one_process(3, SGD, 0, 1e-5); }
/* dropout masks are keyed by the sample's place in the global batch */
Test(mpi, dropout_does_not_depend_on_the_process_count, .timeout = 300) {
  matches_one_process(2, SGD, 1, 1e-5);
  matches_one_process(3, SGD, 1, 1e-5);
}
/* Adam divides each gradient element by its own running magnitude, so the
 * summation-order differences of nearly cancelling elements become
 * differences of the order of lr in their updates: measured 2e-4 of the
 * params' magnitude after 20 steps on 3 processes. */
Test(mpi, adam_on_three_processes_is_close, .timeout = 300) { matches_one_process(3, NULL, 0, 1e-3); }

/* Several train steps (tests/golden/steps/gan.nnd without its batch_norm,
 * whose statistics are each process's own, and with its generator's noise
 * drawn in the model): every step's gradients are averaged. */
Test(mpi, train_steps_on_two_processes_equal_one, .timeout = 300) {
  char *dir = util_tmpdir(), model[600];
  snprintf(model, sizeof model, "%s/gan.nnd", dir);
  int st;
  char *out = sh(&st, "sed -e 's/relu(batch_norm(x @ W, gamma, beta))/relu(x @ W * gamma + beta)/' "
                 "-e 's/^input z: f32\\[N, 2\\]/z = randn([N, 2])/' %s/tests/golden/steps/gan.nnd > %s",
                 NNDC_SRC_DIR, model);
  cr_assert_eq(st, 0);
  free(out);
  out = sh(&st, "grep -c 'randn(\\|batch_norm(' %s", model);
  cr_assert_str_eq(out, "1\n", "the sed did not apply: %s", out);
  free(out);
#define GTRAIN "%s train %s --data x=" NNDC_SRC_DIR "/tests/golden/steps/x.npy --epochs 3 --threads 1"
  out = sh(&st, GTRAIN " --batch 8 --save %s/one.safetensors 2>&1", NNDC_BIN, model, dir);
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  out = sh(&st, MPIRUN " -np 2 " GTRAIN " --batch 4 --save %s/k.safetensors 2>&1", NNDC_BIN, model, dir);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert(strstr(out, "d_loss") && strstr(out, "(step 9)"), "%s", out);
  free(out);
  char a[600], b[600];
  snprintf(a, sizeof a, "%s/k.safetensors", dir);
  snprintf(b, sizeof b, "%s/one.safetensors", dir);
  same_params(a, b, 1e-5);
  free(dir);
}

/* The "| test loss ..." part of the epoch line. */
static char *test_part(const char *out) {
  const char *p = strstr(out, "| test loss");
  cr_assert(p, "%s", out);
  const char *e = strstr(p, "  (");
  cr_assert(e, "%s", out);
  return strndup(p, (size_t)(e - p));
}

Test(mpi, test_evaluation_shared_equals_one_process, .timeout = 300) {
  char *dir = util_tmpdir(), model[600];
  write_data(dir, "", 96, 1);
  write_data(dir, "t", 2300, 2);   /* batches of 1000, 1000 and a tail of 300 */
  /* lr 0: the params stay as initialised, only the evaluation differs */
  snprintf(model, sizeof model, "%s/m.nnd", dir);
  int st;
  char *out = sh(&st, "sed 's/adam(lr=0.001)/sgd(lr=0)/' " MLP " > %s", model);
  cr_assert_eq(st, 0);
  free(out);
#define EVAL "%s train %s --data x=%s/x.npy --data y=%s/y.npy --test x=%s/tx.npy --test y=%s/ty.npy --epochs 1 --threads 1 --batch 16"
  char *one = sh(&st, EVAL " 2>&1", NNDC_BIN, model, dir, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", one);
  /* --log: rank 0 alone writes it (3 steps of 2 x 16: a header, a step row, an epoch row) */
  char *two = sh(&st, MPIRUN " -np 2 " EVAL " --log %s/l.csv --log-every 2 2>&1", NNDC_BIN, model, dir, dir, dir, dir, dir);
  cr_assert_eq(st, 0, "%s", two);
  char *lines = sh(&st, "wc -l < %s/l.csv; cut -d, -f1-4 %s/l.csv | tail -n 2", dir, dir);
  cr_expect_str_eq(lines, "3\n2,1,2,step\n3,1,3,epoch\n", "%s", lines);
  free(lines);
  char *a = test_part(one), *b = test_part(two);
  cr_assert_str_eq(a, b, "one process: %s\ntwo: %s", one, two);
  free(a);
  free(b);
  free(one);
  free(two);
  free(dir);
}

Test(mpi, killed_process_ends_the_job_and_the_checkpoint_resumes, .timeout = 300) {
  char *dir = util_tmpdir(), ck[600], pid[600];
  write_data(dir, "", 480, 1);
  snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
  snprintf(pid, sizeof pid, "%s/rank1.pid", dir);
  /* rank 1 notes its pid; the job would run for minutes */
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "cd %s && " MPIRUN " -np 2 sh -c '[ $OMPI_COMM_WORLD_RANK = 1 ] && echo $$ > rank1.pid; "
           "exec %s train " MLP " --data x=x.npy --data y=y.npy --batch 12 --epochs 100000 --threads 1 "
           "--save ck.safetensors --save-every 10' > job.log 2>&1; echo $? > job.status",
           dir, NNDC_BIN);
  pid_t child = fork();
  cr_assert(child >= 0);
  if (child == 0) {
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  struct stat sb;
  double t0 = now_s();
  while ((stat(ck, &sb) || stat(pid, &sb)) && now_s() - t0 < 120) usleep(50000);
  cr_assert(now_s() - t0 < 120, "no checkpoint written");
  usleep(300000);
  FILE *f = fopen(pid, "r");
  long p = 0;
  cr_assert(f && fscanf(f, "%ld", &p) == 1);
  fclose(f);
  double tk = now_s();
  cr_assert_eq(kill((pid_t)p, SIGKILL), 0);
  char status[600];
  snprintf(status, sizeof status, "%s/job.status", dir);
  while (stat(status, &sb) && now_s() - tk < 60) usleep(50000);
  double waited = now_s() - tk;
  if (stat(status, &sb)) kill(child, SIGKILL);
  cr_assert(waited < 30, "the job still ran %.0f s after rank 1 was killed", waited);
  int st;
  char *out = sh(&st, "cat %s/job.status; cat %s/job.log", dir, dir);
  cr_assert(atoi(out) != 0, "the job exited 0: %s", out);
  cr_assert(strstr(out, "rank 1"), "the error does not name rank 1: %s", out);
  free(out);
  /* the checkpoint on disk is whole and goes on, on as many processes */
  out = sh(&st, "cd %s && " MPIRUN " -np 2 %s train " MLP " --data x=x.npy --data y=y.npy --batch 12 --epochs 2 "
           "--threads 1 --load ck.safetensors --resume 2>&1", dir, NNDC_BIN);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert(strstr(out, "resuming after step"), "%s", out);
  free(out);
  waitpid(child, NULL, 0);
  free(dir);
}

/* A process that stops answering (SIGSTOP) ends the job after NNDC_MPI_TIMEOUT. */
Test(mpi, hung_process_ends_the_job_after_the_timeout, .timeout = 300) {
  char *dir = util_tmpdir(), pid[600], status[600];
  write_data(dir, "", 480, 1);
  snprintf(pid, sizeof pid, "%s/rank1.pid", dir);
  snprintf(status, sizeof status, "%s/job.status", dir);
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "cd %s && NNDC_MPI_TIMEOUT=3 " MPIRUN " -x NNDC_MPI_TIMEOUT -np 2 sh -c '[ $OMPI_COMM_WORLD_RANK = 1 ] && "
           "echo $$ > rank1.pid; exec %s train " MLP " --data x=x.npy --data y=y.npy --batch 12 --epochs 100000 "
           "--threads 1' > job.log 2>&1; echo $? > job.status", dir, NNDC_BIN);
  pid_t child = fork();
  cr_assert(child >= 0);
  if (child == 0) {
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  struct stat sb;
  double t0 = now_s();
  while (stat(pid, &sb) && now_s() - t0 < 120) usleep(50000);
  int st;
  char *log = NULL;
  do {   /* stopped in the middle of training (the startup's waits are covered alike) */
    free(log);
    usleep(100000);
    log = sh(&st, "cat %s/job.log", dir);
  } while (!strstr(log, "  batch ") && now_s() - t0 < 120);   /* a progress line */
  free(log);
  FILE *f = fopen(pid, "r");
  long p = 0;
  cr_assert(f && fscanf(f, "%ld", &p) == 1);
  fclose(f);
  double ts = now_s();
  cr_assert_eq(kill((pid_t)p, SIGSTOP), 0);
  while (stat(status, &sb) && now_s() - ts < 90) usleep(50000);
  double waited = now_s() - ts;
  if (stat(status, &sb)) {
    kill((pid_t)p, SIGKILL);
    kill(child, SIGKILL);
  }
  cr_assert(waited < 60, "the job still ran %.0f s after rank 1 stopped", waited);
  char *out = sh(&st, "cat %s/job.status; cat %s/job.log", dir, dir);
  cr_assert(atoi(out) != 0, "the job exited 0: %s", out);
  cr_assert(strstr(out, "did not take part in the gradient reduction for 3 s") ||
            strstr(out, "did not take part in the sum of the evaluation for 3 s"), "%s", out);
  free(out);
  waitpid(child, NULL, 0);
  free(dir);
}

Test(mpi, processes_that_disagree_stop_at_startup, .timeout = 300) {
  char *dir = util_tmpdir();
  write_data(dir, "", 96, 1);
  write_data(dir, "s", 48, 1);
  int st;
  double t0 = now_s();
  char *out = sh(&st, "cd %s && " MPIRUN " -np 2 sh -c 'd=; [ $OMPI_COMM_WORLD_RANK = 1 ] && d=s; "
                 "exec %s train " MLP " --data x=${d}x.npy --data y=${d}y.npy --batch 8 --threads 1' 2>&1",
                 dir, NNDC_BIN);
  cr_assert_neq(st, 0, "%s", out);
  cr_assert(strstr(out, "rank 1 has training samples 48, rank 0 has 96"), "%s", out);
  cr_assert(now_s() - t0 < 60);
  free(out);
  out = sh(&st, "cd %s && sed 's/256/128/g' " MLP " > small.nnd && " MPIRUN " -np 2 sh -c 'm=" MLP
           "; [ $OMPI_COMM_WORLD_RANK = 1 ] && m=small.nnd; exec %s train $m --data x=x.npy --data y=y.npy "
           "--batch 8 --threads 1' 2>&1", dir, NNDC_BIN);
  cr_assert_neq(st, 0, "%s", out);
  cr_assert(strstr(out, "rank 1 has a model of graph hash"), "%s", out);
  free(out);
  free(dir);
}

/* nndc sweep under mpirun: rank r runs trials r, r+K, ... alone (compiling
 * only the shape sets it needs), rank 0 prints the table and the CSV of all:
 * the same figures as one process. */
Test(mpi, sweep_spreads_trials_over_ranks, .timeout = 300) {
  char *dir = util_tmpdir();
  write_data(dir, "", 96, 1);
  write_data(dir, "t", 40, 2);
  int st;
#define SWEEP "%s sweep " MLP " --data x=%s/x.npy --data y=%s/y.npy --test x=%s/tx.npy --test y=%s/ty.npy " \
              "--grid lr=0.001,0.01 --grid batch=8,16 --epochs 1 --threads 1 -v --csv %s/%s.csv 2>&1; " \
              "cut -d, -f1-7 %s/%s.csv"
  char *one = sh(&st, SWEEP, NNDC_BIN, dir, dir, dir, dir, dir, "one", dir, "one");
  cr_assert_eq(st, 0, "%s", one);
  char *two = sh(&st, MPIRUN " -np 2 " SWEEP, NNDC_BIN, dir, dir, dir, dir, dir, "two", dir, "two");
  cr_assert_eq(st, 0, "%s", two);
  cr_expect(strstr(two, "rank 0 compiled 1 training programs"), "trials 1, 3 (batch 8) on rank 0\n%s", two);
  cr_expect(strstr(two, "rank 1 compiled 1 training programs"), "trials 2, 4 (batch 16) on rank 1\n%s", two);
  const char *a = strstr(one, "trial,lr"), *b = strstr(two, "trial,lr");
  cr_assert(a && b, "%s\n%s", one, two);
  cr_expect_str_eq(a, b, "one process:\n%s\ntwo:\n%s", one, two);
  free(one);
  free(two);
  free(dir);
}
