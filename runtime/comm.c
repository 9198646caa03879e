/* comm.c - the processes of a data-parallel training run (spec 11).
 *
 * Built with MPI (NNDC_HAVE_MPI) and started by an MPI launcher (mpirun sets
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK), comm_init joins
 * MPI_COMM_WORLD; otherwise, and in builds without MPI, there is one process
 * and every collective is a no-op.  Errors of MPI calls are returned
 * (MPI_ERRORS_RETURN) and reported naming the call; a process that dies is
 * noticed by the launcher, which ends the job (Open MPI's default) and
 * names the rank, so no survivor waits forever in a collective; one that
 * hangs is caught by the waits here (every collective is nonblocking and
 * polled), which give up after NNDC_MPI_TIMEOUT seconds (default 600).
 *
 * Gradients travel as one flat f32 buffer summed in buckets of at most
 * COMM_BUCKET floats: a few large calls instead of one per param, started
 * without waiting (MPI_Iallreduce) while the backward pass goes on. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime.h"
#ifdef NNDC_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_agreed = 0;

int comm_rank(void) { return g_rank; }
int comm_size(void) { return g_size; }
int comm_agreed_failure(void) { return g_agreed; }

int comm_launched(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

#ifdef NNDC_HAVE_MPI

static int g_active = 0;   /* MPI_Init was called (and MPI_Finalize not yet) */

static int mpi_check(Diag *d, int rc, const char *what) {
  if (rc == MPI_SUCCESS) return 0;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  diag_error(d, (Loc){0}, "rank %d: the %s failed: %s", g_rank, what, msg);
  return -1;
}

int comm_init(Diag *d, int *argc, char ***argv) {
  if (!comm_launched()) return 0;
  int provided;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    diag_error(d, (Loc){0}, "MPI_Init failed");
    return -1;
  }
  g_active = 1;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  return 0;
}

void comm_finalize(void) {
  if (g_active) MPI_Finalize();
  g_active = 0;
}

void comm_abort(int code) {
  if (g_active && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds a collective may wait for the other processes (NNDC_MPI_TIMEOUT, default 600). */
static double wait_limit(void) {
  const char *s = getenv("NNDC_MPI_TIMEOUT");
  double t = s ? strtod(s, NULL) : 0;
  return t > 0 ? t : 600;
}

/* Waits for r[0..n) by polling rather than MPI_Waitall, so that a process
 * that hangs (stopped, deadlocked, swapping) ends the job after wait_limit()
 * seconds instead of holding the others forever; spins a little, then
 * sleeps 20 us per poll.  Every collective of this file ends here. */
static int timed_wait(Diag *d, int n, MPI_Request *r, const char *what) {
  int done = 0;
  double t0 = mono_s(), limit = wait_limit();
  for (long polls = 0;; polls++) {
    if (mpi_check(d, MPI_Testall(n, r, &done, MPI_STATUSES_IGNORE), what)) return -1;
    if (done) return 0;
    if (polls > 1000) {
      if (mono_s() - t0 > limit) {
        diag_error(d, (Loc){0}, "rank %d: the other processes did not take part in the %s for %.0f s "
                   "(a process hangs?); stopping the job (NNDC_MPI_TIMEOUT sets the limit)", g_rank, what, limit);
        return -1;
      }
      nanosleep(&(struct timespec){0, 20000}, NULL);
    }
  }
}

static MPI_Request g_req[COMM_MAX_PENDING];
static int g_npending = 0;

int comm_start_sum_f32(Diag *d, float *buf, int64_t n) {
  for (int64_t at = 0; g_size > 1 && at < n; at += COMM_BUCKET) {
    int cnt = (int)(n - at < COMM_BUCKET ? n - at : COMM_BUCKET);
    if (g_npending == COMM_MAX_PENDING && comm_wait_all(d)) return -1;
    if (mpi_check(d, MPI_Iallreduce(MPI_IN_PLACE, buf + at, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                    &g_req[g_npending]), "gradient reduction"))
      return -1;
    g_npending++;
  }
  return 0;
}

void comm_progress(void) {
  int done;
  if (g_npending) MPI_Testall(g_npending, g_req, &done, MPI_STATUSES_IGNORE);
}

int comm_wait_all(Diag *d) {
  int n = g_npending;
  g_npending = 0;
  return n ? timed_wait(d, n, g_req, "gradient reduction") : 0;
}

int comm_allreduce_f32(Diag *d, float *buf, int64_t n) {
  return comm_start_sum_f32(d, buf, n) || comm_wait_all(d) ? -1 : 0;
}

int comm_allreduce_f64(Diag *d, double *buf, int n) {
  if (g_size == 1 || n == 0) return 0;
  MPI_Request r;
  if (mpi_check(d, MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &r),
                "sum of the evaluation"))
    return -1;
  return timed_wait(d, 1, &r, "sum of the evaluation");
}

int comm_bcast(Diag *d, void *buf, int64_t bytes) {
  for (int64_t at = 0; g_size > 1 && at < bytes; at += (int64_t)COMM_BUCKET * 4) {
    int cnt = (int)(bytes - at < (int64_t)COMM_BUCKET * 4 ? bytes - at : (int64_t)COMM_BUCKET * 4);
    MPI_Request r;
    if (mpi_check(d, MPI_Ibcast((char *)buf + at, cnt, MPI_BYTE, 0, MPI_COMM_WORLD, &r), "broadcast of the state") ||
        timed_wait(d, 1, &r, "broadcast of the state"))
      return -1;
  }
  return 0;
}

int comm_allgather_u64(Diag *d, const uint64_t *mine, int n, uint64_t *all) {
  if (g_size == 1) {
    memcpy(all, mine, (size_t)n * sizeof *all);
    return 0;
  }
  MPI_Request r;
  if (mpi_check(d, MPI_Iallgather(mine, n, MPI_UINT64_T, all, n, MPI_UINT64_T, MPI_COMM_WORLD, &r),
                "startup check"))
    return -1;
  return timed_wait(d, 1, &r, "startup check");
}

#else  /* one process */

int comm_init(Diag *d, int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (comm_launched())
    diag_warn(d, (Loc){0}, "started by an MPI launcher, but this nndc was built without MPI: "
              "every process trains alone");
  return 0;
}
void comm_finalize(void) {}
void comm_abort(int code) { (void)code; }
int comm_allreduce_f32(Diag *d, float *buf, int64_t n) { (void)d; (void)buf; (void)n; return 0; }
int comm_allreduce_f64(Diag *d, double *buf, int n) { (void)d; (void)buf; (void)n; return 0; }
int comm_bcast(Diag *d, void *buf, int64_t bytes) { (void)d; (void)buf; (void)bytes; return 0; }
int comm_start_sum_f32(Diag *d, float *buf, int64_t n) { (void)d; (void)buf; (void)n; return 0; }
void comm_progress(void) {}
int comm_wait_all(Diag *d) { (void)d; return 0; }
int comm_allgather_u64(Diag *d, const uint64_t *mine, int n, uint64_t *all) {
  (void)d;
  memcpy(all, mine, (size_t)n * sizeof *all);
  return 0;
}

#endif

/* Every rank states the same list of values (what[i] names vals[i]); the
 * first rank whose value differs from rank 0's is reported by rank 0, and
 * every rank fails (an agreed failure: all of them stop at this point). */
int comm_check_same(Diag *d, const uint64_t *vals, const char *const *what, int n) {
  if (g_size == 1) return 0;
  uint64_t *all = malloc((size_t)n * (size_t)g_size * sizeof *all);
  if (!all) nndc_fatal(__FILE__, __LINE__, "out of memory");
  if (comm_allgather_u64(d, vals, n, all)) {
    free(all);
    return -1;
  }
  int bad = 0;
  for (int r = 1; r < g_size && !bad; r++)
    for (int i = 0; i < n && !bad; i++)
      if (all[(size_t)r * n + i] != all[i]) {
        bad = 1;
        if (g_rank == 0)
          diag_error(d, (Loc){0}, "the processes disagree: rank %d has %s %llu, rank 0 has %llu "
                     "(every process must train the same model on data of the same size)", r, what[i],
                     (unsigned long long)all[(size_t)r * n + i], (unsigned long long)all[i]);
      }
  free(all);
  g_agreed = bad;
  return bad ? -1 : 0;
}
