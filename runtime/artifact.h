/* artifact.h - the compiled-policy artifact container: writer and validating reader.
 *
 * One self-describing file per compiled policy (layout in docs/runtime.md):
 *   "VXPOLICY" | u32 format | u32 manifest length | u64 FNV-1a of the manifest |
 *   manifest (JSON) | code sections (host shared objects, PTX), offsets relative to the
 *   first byte after the manifest.
 * vxc writes artifacts with art_write; libvxrt reads them with art_parse. This module knows
 * nothing of devices or the runtime's public API (vxc links it without libvxrt), must not
 * print or exit, and must return an error, never crash, whatever bytes it is handed.
 */
#ifndef VX_ARTIFACT_H
#define VX_ARTIFACT_H

#include <stddef.h>
#include <stdint.h>

#include "vxk.h"

#define ART_MAGIC "VXPOLICY"
#define ART_MAGIC_LEN 8
#define ART_FORMAT 1        /* the version this code writes and reads */
#define ART_HEADER_LEN 24   /* magic 8 + format 4 + manifest length 4 + manifest hash 8 */

/* Limits that keep a hostile manifest from asking for unbounded work. */
#define ART_MAX_MANIFEST (16u << 20)
#define ART_MAX_ITEMS 4096  /* params, fields, kernels or targets each */
#define ART_MAX_AXES 8
#define ART_MAX_STRING 256  /* bytes, names and other strings */

/* Error codes; they map one to one onto vxrt_status values in the runtime. */
typedef enum art_code {
  ART_OK = 0,
  ART_EFORMAT,   /* truncated, bad magic, bad manifest, out-of-bounds section */
  ART_EVERSION,  /* format version other than ART_FORMAT */
  ART_ECORRUPT,  /* checksum mismatch */
  ART_EARG,      /* writer: an invalid manifest was handed in */
  ART_ENOMEM,
  ART_EIO        /* writer: the file could not be written */
} art_code;

typedef struct art_error {
  art_code code;
  char msg[512];
} art_error;

typedef enum art_type { ART_I32 = 0, ART_F32 = 1 } art_type;
/* A field is any tensor the kernels address by index (runtime/vxk.h's tensors array): the
 * list is in the compiler's tensor order, inputs (q, k, v, ...) included, so that a
 * selection can name a field by its index. */
typedef enum art_stage { ART_PAGE = 0, ART_TOKEN, ART_ROW, ART_CONST, ART_STEP, ART_INPUT, ART_STAGE_COUNT } art_stage;
/* The kinds of runtime/vxk.h's host kernels (VXK_HOST_KERNELS: ART_K_<TAG>), plus append
 * (device-side cache writes) and the load-time scalars and requires. The values are the
 * public vxrt_kernel_kind's (policy.c checks them). */
typedef enum art_kernel_kind {
  ART_K_APPEND = 0, ART_K_SUMMARISE, ART_K_ROW, ART_K_SELECT, ART_K_ATTEND, ART_K_UPDATE,
  ART_K_CONST, ART_K_SCALARS, ART_K_REQUIRE, ART_K_COUNT
} art_kernel_kind;
typedef enum art_target_kind { ART_HOST_SO = 0, ART_PTX = 1 } art_target_kind;

typedef struct art_param {
  const char *name;
  art_type type;
  const char *unit;          /* "tokens", "pages" or "" */
  double def;                /* integral and within int32 for ART_I32 */
} art_param;

typedef struct art_field {
  const char *name;
  art_stage stage;
  const char *dtype;         /* one of art_dtype_names (the language's storage dtypes) */
  int naxes;
  const char *const *axes;   /* extent strings, non-empty */
  const char *init;          /* consts made by the runtime: "gaussian" or "load"; else NULL */
  const char *init_arg;      /* gaussian: the seed (a param's name or a number); load: a file */
} art_field;

/* The always-kept ranges and the selection (docs/runtime.md): the keep counts and top()
 * budgets themselves come from the `scalars` kernel, since they may depend on params. */
typedef enum art_keep_kind { ART_KEEP_FIRST = 0, ART_KEEP_LAST, ART_KEEP_GENERATED } art_keep_kind;
typedef struct art_keep {
  art_keep_kind kind;
  const char *unit;          /* "tokens" or "pages" */
  int at_prefill;            /* last N tokens of the prefill rather than of the row */
} art_keep;

typedef enum art_select_kind { ART_SELECT_TOP = 0, ART_SELECT_WHERE, ART_SELECT_ALL } art_select_kind;
typedef struct art_select {
  art_select_kind kind;
  int field;                 /* top: the score field; where: the 0/1 condition; all: -1 */
  const char *unit;          /* top: the budget's unit */
} art_select;

typedef struct art_kernel {
  const char *name;
  art_kernel_kind kind;
  const char *entry;         /* a C identifier: the symbol in the code section */
} art_kernel;

typedef struct art_target {
  const char *name;          /* "x86_64-linux", "sm_90" */
  art_target_kind kind;
  uint64_t offset;           /* from the first byte after the manifest (filled by art_write) */
  uint64_t size;
  uint64_t checksum;         /* FNV-1a 64 of the section (filled by art_write) */
  const unsigned char *data; /* art_write: the section's bytes; art_parse: points into the
                                buffer that was parsed */
  /* ART_PTX only (optional keys "shapes" and "gpu_kernels"; absent = none): the shapes the
   * module has entries for ("d128g4p16_bf16") and the GPU kernel kinds it exports for each
   * (runtime/vxk_gpu.h: entry "vxg_<kind>__<shape>"). */
  int nshapes, ngpu_kernels;
  const char *const *shapes;
  const char *const *gpu_kernels;
} art_target;

typedef struct art_manifest {
  int format;
  const char *vx_version;
  const char *source_hash;   /* 16 lowercase hex digits */
  const char *policy;
  int nparams, nfields, nkernels, ntargets;
  art_param *params;
  art_field *fields;
  art_kernel *kernels;
  art_target *targets;
  int nkeeps, nselects;      /* optional in the manifest: absent means none */
  art_keep *keeps;
  art_select *selects;
  int per_head;              /* the selection keeps the head axis */
  int token_granular;        /* it picks tokens, not pages */
  int nrequires;             /* conditions the require kernel checks */
  const char *const *require_texts; /* optional ("require_texts"): each condition as written,
                                       for messages; NULL when the artifact has none */
  void *owned_;              /* art_parse: everything above lives here; NULL otherwise */
} art_manifest;

/* FNV-1a 64-bit: the source hash and the section checksums. */
uint64_t art_fnv1a64(const void *data, size_t len);
/* Formats h as 16 lowercase hex digits plus NUL into buf (17 bytes). */
void art_hex64(uint64_t h, char buf[17]);

/* Writes m with the targets' data into a new malloc'ed buffer (*out, *outlen). The manifest
 * is checked with the same rules as art_parse; offsets, sizes and checksums of m->targets
 * are computed here (m is not modified). m->format is ignored: ART_FORMAT is written. */
art_code art_write(const art_manifest *m, unsigned char **out, size_t *outlen, art_error *err);
/* The same, into a file (written to path.tmp, then renamed). */
art_code art_write_file(const art_manifest *m, const char *path, art_error *err);

/* Parses and validates an artifact. On success *out owns a manifest whose strings are
 * copies and whose targets' data point into `bytes` (keep the buffer alive while using
 * them). Checks, in order: header length, magic, version, manifest length, manifest
 * checksum, JSON, every manifest field, section bounds and overlap, trailing bytes,
 * section checksums. */
art_code art_parse(const void *bytes, size_t len, art_manifest **out, art_error *err);
void art_manifest_free(art_manifest *m);

/* Names of the enumerations as they appear in the manifest. */
const char *art_type_name(art_type t);
const char *art_stage_name(art_stage s);
const char *art_kernel_kind_name(art_kernel_kind k);
const char *art_target_kind_name(art_target_kind k);
/* NULL-terminated list of the field dtypes a manifest may name. */
extern const char *const art_dtype_names[];

#endif /* VX_ARTIFACT_H */
