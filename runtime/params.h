/* params.h - validation of a policy's parameter values at load (runtime/params.c): what the
 * compiler enforces for literals, enforced for overrides too. */
#ifndef VXRT_PARAMS_H
#define VXRT_PARAMS_H

#include "artifact.h"
#include "vxrt.h"

/* Checks values[i] of every param of m against the rules of its use: a count (a param with
 * a unit: a budget or keep length) is a non-negative integer; a param that is an extent of a
 * tensor is a positive integer. VXRT_OK, or VXRT_ERR_PARAM naming the param, its value and
 * the rule (and the tensor, for an extent). */
vxrt_status vxrt_params_check(const art_manifest *m, const double *values);

#endif
