/* target_runs.c - `target_runs NAME [--emitted]`: whether the per-target
 * CTest entry for target NAME (codegen/target.h) has work to do: exit 0 when
 * it does, 77 (CTest's skip) when NAME is the host's own target (the plain
 * entries test it) or, without --emitted, when the host cannot execute its
 * code (emitted C for any target runs anywhere); 2 for an unknown name. */
#include <stdio.h>
#include <string.h>
#include "codegen/target.h"

int main(int argc, char **argv) {
  int t = argc >= 2 ? target_parse(argv[1]) : -1;
  int emitted = argc == 3 && !strcmp(argv[2], "--emitted");
  if (t < 0 || argc > 3 || (argc == 3 && !emitted)) {
    fprintf(stderr, "usage: target_runs generic|avx2|avx512|host [--emitted]\n");
    return 2;
  }
  if ((TargetKind)t == target_host()) {
    printf("target %s is this host's: the plain entry tests it\n", argv[1]);
    return 77;
  }
  if (!emitted && !target_host_runs((TargetKind)t)) {
    printf("this host (%s) cannot execute target %s: skipped\n", target_name(target_host()), argv[1]);
    return 77;
  }
  return 0;
}
