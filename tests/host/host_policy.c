/* host_policy.c - see host_policy.h. */
#include "host_policy.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compile.h"

/* The artifact of the policy at path, as vxc would write it; NULL after printing why. */
static unsigned char *compile_artifact(const char *path, size_t *len) {
  char *text;
  int n;
  const char *error;
  if (!front_read_file(path, &text, &n, &error)) {
    fprintf(stderr, "%s: %s\n", path, error);
    return NULL;
  }
  Compilation c;
  CompileOptions o;
  compile_options_init(&o);
  unsigned char *bytes = NULL;
  if (!compile_source(&c, path, text, n, &o, &bytes, len)) {
    free(bytes);
    bytes = NULL;
  }
  free(text);
  diag_render(&c.diags, stderr, DIAG_TEXT);
  front_destroy(&c);
  return bytes;
}

static void *kernel(host_policy *hp, art_kernel_kind kind) {
  const char *entry = exec_kernel_entry(hp->man, kind);
  return entry ? dlsym(hp->dl, entry) : NULL;
}

int host_policy_compile(const char *path, host_policy *hp) {
  memset(hp, 0, sizeof *hp);
  size_t len;
  unsigned char *bytes = compile_artifact(path, &len);
  if (!bytes)
    return -1;
  art_error err;
  int rc = -1;
  if (art_parse(bytes, len, &hp->man, &err) != ART_OK) {
    fprintf(stderr, "%s: the artifact does not parse: %s\n", path, err.msg);
    goto done;
  }
  hp->values = calloc((size_t)hp->man->nparams + 1, sizeof(double));
  for (int i = 0; hp->values && i < hp->man->nparams; i++)
    hp->values[i] = hp->man->params[i].def;
  if (!hp->values || !exec_describe(hp->man, hp->values, NULL, &hp->desc)) {
    fprintf(stderr, "%s: out of memory\n", path);
    goto done;
  }
  /* the host code section, through a file: dlopen needs one */
  const art_target *t = &hp->man->targets[0];
  snprintf(hp->so_path, sizeof hp->so_path, "/tmp/vx-test-XXXXXX");
  int fd = mkstemp(hp->so_path);
  int ok = fd >= 0 && write(fd, t->data, (size_t)t->size) == (ssize_t)t->size;
  if (fd >= 0)
    close(fd);
  hp->dl = ok ? dlopen(hp->so_path, RTLD_NOW | RTLD_LOCAL) : NULL;
  if (!hp->dl) {
    fprintf(stderr, "%s: cannot load host code: %s\n", path, dlerror());
    goto done;
  }
  exec_kernels *k = &hp->desc.pol.k;
  k->kconst = (vxk_kernel)kernel(hp, ART_K_CONST);
  k->row = (vxk_kernel)kernel(hp, ART_K_ROW);
  k->summarise = (vxk_kernel)kernel(hp, ART_K_SUMMARISE);
  k->select = (vxk_kernel)kernel(hp, ART_K_SELECT);
  k->attend = (vxk_kernel)kernel(hp, ART_K_ATTEND);
  k->update = (vxk_kernel)kernel(hp, ART_K_UPDATE);
  k->scalars = (void (*)(vxk_ctx *, double *))kernel(hp, ART_K_SCALARS);
  k->require = (int (*)(vxk_ctx *))kernel(hp, ART_K_REQUIRE);
  if (!k->attend || !k->scalars || !k->require) {
    fprintf(stderr, "%s: host code lacks a kernel\n", path);
    goto done;
  }
  hp->pol = hp->desc.pol;
  rc = 0;
done:
  for (int i = 0; hp->man && i < hp->man->ntargets; i++)
    hp->man->targets[i].data = NULL; /* they pointed into bytes */
  free(bytes);
  return rc;
}

int host_policy_set(host_policy *hp, const char *name, double value) {
  for (int i = 0; i < hp->man->nparams; i++)
    if (!strcmp(hp->man->params[i].name, name)) {
      hp->values[i] = value;
      return 0;
    }
  return -1;
}

void host_policy_free(host_policy *hp) {
  if (hp->dl)
    dlclose(hp->dl);
  if (hp->so_path[0])
    unlink(hp->so_path);
  exec_desc_free(&hp->desc);
  art_manifest_free(hp->man);
  free(hp->values);
  memset(hp, 0, sizeof *hp);
}
