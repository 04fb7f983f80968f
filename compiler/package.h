/* package.h - packs a compiled policy into the artifact libvxrt loads (runtime/artifact.h):
 * the manifest that describes VIR's tensors, kernels, keep ranges and selection, plus the
 * host code. The only place where compiler structures meet the artifact format. */
#ifndef VX_PACKAGE_H
#define VX_PACKAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "cg.h"
#include "diag.h"
#include "vir.h"

/* Whether m fits the artifact format's limits; reports why not. Cheap: call it before code
 * generation. */
bool pkg_fits(const VirModule *m, Diags *diags, Span where);
/* PTX for one sm, beside the host code: its shapes' names ("d128g4p16_bf16"). */
typedef struct PkgPtx {
  const char *sm;
  const CgPtxResult *ptx;
  const char *const *shapes;
  int nshapes;
} PkgPtx;

/* Writes the artifact with host code and nptx PTX sections to path (atomically); path NULL
 * writes into *out / *outlen instead. */
bool pkg_emit(const VirModule *m, const Source *src, const CgHostResult *host, const PkgPtx *ptx, int nptx,
              const char *path, unsigned char **out, size_t *outlen, Diags *diags, Span where);
/* Writes the artifact to path (atomically: path.tmp, then a rename). */
bool pkg_write(const VirModule *m, const Source *src, const CgHostResult *host, const char *path,
               Diags *diags, Span where);
/* The same into a malloc'd buffer. */
bool pkg_build(const VirModule *m, const Source *src, const CgHostResult *host, unsigned char **out,
               size_t *outlen, Diags *diags, Span where);

#endif
