/* host_policy.h - test support: compiles a .vx policy in-process to host code, loads it
 * with dlopen and describes it as an exec_policy (runtime/exec.h), so numeric tests can run
 * the real compiled kernels through the CPU executor. */
#ifndef VX_TEST_HOST_POLICY_H
#define VX_TEST_HOST_POLICY_H

#include "exec.h"

typedef struct host_policy {
  exec_policy pol;
  void *dl;
  char so_path[64];
  double *values;
  const char **names;
  exec_tensor *tensors;
  exec_keep *keeps;
  exec_selection *sels;
  void *compilation; /* keeps the compiler's arena (names) alive */
} host_policy;

/* Returns 0 on success; prints the reason and returns -1 otherwise. */
int host_policy_compile(const char *path, host_policy *hp);
/* Overrides a param by name; returns -1 if there is none. */
int host_policy_set(host_policy *hp, const char *name, double value);
void host_policy_free(host_policy *hp);

#endif
