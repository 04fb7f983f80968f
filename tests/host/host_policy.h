/* host_policy.h - test support: compiles a .vx policy in-process into an artifact (the same
 * bytes vxc writes), reads it back with the runtime's parser, and describes it to the CPU
 * executor (runtime/exec.h) with the host code dlopen'ed from the artifact, so numeric
 * tests run the real compiled kernels through the real artifact path. */
#ifndef VX_TEST_HOST_POLICY_H
#define VX_TEST_HOST_POLICY_H

#include "exec_manifest.h"

typedef struct host_policy {
  exec_policy pol;  /* what tests hand the executor */
  exec_desc desc;
  art_manifest *man;
  double *values;   /* param values: defaults, then host_policy_set */
  void *dl;
  char so_path[64];
} host_policy;

/* Returns 0 on success; prints the reason and returns -1 otherwise. */
int host_policy_compile(const char *path, host_policy *hp);
/* Overrides a param by name (as a load-time override would); returns -1 if there is none. */
int host_policy_set(host_policy *hp, const char *name, double value);
void host_policy_free(host_policy *hp);

#endif
