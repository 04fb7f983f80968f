/* params.c - checks a loaded policy's parameter values, overrides included, against the
 * rules the compiler enforces for the literals it accepts (docs/language.md, section 4): a
 * count is a non-negative integer (E0805), an extent a positive integer (E0408). Without
 * this, budget=-5 ran and attended only the kept tokens, and R=0 ran with empty tensors. */
#include "params.h"

#include "extent.h"
#include "vxrt_internal.h"

/* A positive-integer rule for a param that is an extent: the first tensor it sizes. */
static vxrt_status check_extent(const art_manifest *m, int p, double v) {
  if (v >= 1)
    return VXRT_OK;
  const char *name = m->params[p].name;
  for (int f = 0; f < m->nfields; f++)
    for (int a = 0; a < m->fields[f].naxes; a++)
      if (vxrt_extent_names(m->fields[f].axes[a], name))
        return vxrt_fail(VXRT_ERR_PARAM,
                         "policy %s: parameter '%s' = %.17g: it is an extent (of '%s', axis %d: "
                         "%s), which must be a positive integer",
                         m->policy, name, v, m->fields[f].name, a + 1, m->fields[f].axes[a]);
  return VXRT_OK;
}

vxrt_status vxrt_params_check(const art_manifest *m, const double *values) {
  for (int p = 0; p < m->nparams; p++) {
    const art_param *pr = &m->params[p];
    double v = values[p];
    if (pr->unit && pr->unit[0] && (v < 0 || pr->type != ART_I32))
      return vxrt_fail(VXRT_ERR_PARAM,
                       "policy %s: parameter '%s' = %.17g: a count in %s must be a non-negative "
                       "integer",
                       m->policy, pr->name, v, pr->unit);
    if (pr->type == ART_I32) {
      vxrt_status s = check_extent(m, p, v);
      if (s)
        return s;
    }
  }
  return VXRT_OK;
}
