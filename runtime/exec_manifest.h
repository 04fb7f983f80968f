/* exec_manifest.h - the executor's description of a policy (exec.h) read off an artifact's
 * manifest (artifact.h): the one mapping between the two, used by libvxrt (run.c) and by
 * tests that drive the executor directly. Kernel handles are the caller's to fill in. */
#ifndef VX_EXEC_MANIFEST_H
#define VX_EXEC_MANIFEST_H

#include "artifact.h"
#include "exec.h"

typedef struct exec_desc {
  exec_policy pol;
  const char **names;
  exec_tensor *tensors;
  exec_keep *keeps;
  exec_selection *selects;
} exec_desc;

/* Fills d; strings point into m, values into param_values (both must outlive d). Returns 0
 * when out of memory. */
int exec_describe(const art_manifest *m, const double *param_values, const char *base_dir, exec_desc *d);
void exec_desc_free(exec_desc *d);
/* The symbol name of the kernel of a kind in m, or NULL. */
const char *exec_kernel_entry(const art_manifest *m, art_kernel_kind kind);

#endif
