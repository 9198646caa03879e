/* target.c - the code-generation target (target.h). */
#include <stdlib.h>
#include <string.h>
#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include "target.h"

static const char *const names[TARGET_COUNT] = {"generic", "avx2", "avx512"};
/* psABI micro-architecture levels as LLVM names them */
static const char *const cpus[TARGET_COUNT] = {"x86-64", "x86-64-v3", "x86-64-v4"};

static int fixed = -1;

int target_parse(const char *name) {
  if (!name) return -1;
  if (!strcmp(name, "host")) return (int)target_host();
  for (int t = 0; t < TARGET_COUNT; t++)
    if (!strcmp(name, names[t])) return t;
  return -1;
}

const char *target_name(TargetKind t) { return (unsigned)t < TARGET_COUNT ? names[t] : "?"; }

TargetKind target_host(void) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return TARGET_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return TARGET_AVX2;
#endif
  return TARGET_GENERIC;
}

int target_host_runs(TargetKind t) { return t <= target_host(); }

void target_set(int t) { fixed = t >= 0 && t < TARGET_COUNT ? t : -1; }

TargetKind target_current(void) {
  if (fixed >= 0) return (TargetKind)fixed;
  int t = target_parse(getenv("NNDC_TARGET"));
  return t >= 0 ? (TargetKind)t : target_host();
}

int target_vector_width(TargetKind t) { return t == TARGET_AVX512 ? 16 : t == TARGET_AVX2 ? 8 : 4; }

int target_tile_nr(TargetKind t) { return 2 * target_vector_width(t); }

void target_llvm_cpu(TargetKind t, char **cpu, char **features) {
  if (t == target_host()) {
    char *c = LLVMGetHostCPUName(), *f = LLVMGetHostCPUFeatures();
    *cpu = strdup(c);
    *features = strdup(f);
    LLVMDisposeMessage(c);
    LLVMDisposeMessage(f);
    return;
  }
  *cpu = strdup(cpus[t]);
  *features = strdup("");
}
