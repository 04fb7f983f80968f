/* kernels_so.c - a stand-in for compiler-generated host code, for tests/runtime only.
 *
 * Built as shared libraries (vxt_kernels_a, vxt_kernels_b: the same source with different
 * VXT_BIAS / VXT_NAME) that the tests embed in artifacts, to prove that libvxrt loads host
 * code from an artifact section (memfd + dlopen) and resolves kernel entries, before the
 * compiler can produce any. Exports plain C functions; no dependencies beyond libc.
 */
#ifndef VXT_BIAS
#define VXT_BIAS 0
#endif
#ifndef VXT_NAME
#define VXT_NAME "a"
#endif

int vxt_add(int a, int b);
const char *vxt_name(void);
void vxt_scale(float *x, int n, float s);

int vxt_add(int a, int b) { return a + b + VXT_BIAS; }

const char *vxt_name(void) { return VXT_NAME; }

/* State inside the loaded object: each loaded copy must have its own. */
static int calls;
int vxt_count(void);
int vxt_count(void) { return ++calls; }

void vxt_scale(float *x, int n, float s) {
  for (int i = 0; i < n; i++) x[i] *= s;
}
