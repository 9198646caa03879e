/* target.h - the code-generation target: the vector ISA that the JIT
 * compiles for and that sizes the GEMM register tile (also in emitted C).
 *
 * Contract: a target is chosen per compilation.  target_set() fixes one for
 * the process (the CLI's --target); otherwise NNDC_TARGET (generic, avx2,
 * avx512 or host), read anew at each call, names it; otherwise the best one
 * the host runs.  lower_program records the target in its KProgram, so a
 * program's tiles and its machine code always agree.  Emitted C runs on any
 * x86-64 host whatever its target (GNU vectors degrade gracefully); the JIT
 * refuses a target the host cannot execute.
 */
#ifndef NNDC_TARGET_H
#define NNDC_TARGET_H

typedef enum TargetKind {
  TARGET_GENERIC, /* x86-64 baseline (SSE2): 4-float vectors, 8-column tiles */
  TARGET_AVX2,    /* x86-64-v3 (AVX2, FMA): 8-float vectors, 16-column tiles */
  TARGET_AVX512,  /* x86-64-v4 (AVX-512 F/BW/DQ/VL): 16-float vectors, 32 columns */
  TARGET_COUNT
} TargetKind;

/* The target of the next compilation (see the contract). */
TargetKind target_current(void);
/* Fixes the target for the process (-1: back to NNDC_TARGET / the host). */
void target_set(int t);
/* Parses "generic", "avx2", "avx512" or "host"; -1 for anything else. */
int target_parse(const char *name);
const char *target_name(TargetKind t);
/* The best target the host executes, and whether it executes t. */
TargetKind target_host(void);
int target_host_runs(TargetKind t);
/* Lanes of one f32 vector register, and the GEMM tile's columns (two of them). */
int target_vector_width(TargetKind t);
int target_tile_nr(TargetKind t);
/* LLVM's CPU name and features for t: the host's own when t is the host's
 * best target (the JIT tunes for the real processor), else the psABI level
 * (x86-64, x86-64-v3, x86-64-v4).  The caller frees both with free(). */
void target_llvm_cpu(TargetKind t, char **cpu, char **features);

#endif
