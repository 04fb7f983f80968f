/* forward_cuda.h - vx-serve's decode step on the GPU: a Llama-architecture decoder's dense
 * layers with bf16 weights resident on the device, matrix products through cuBLAS (loaded
 * at run time), elementwise kernels from hand-written PTX (forward_cuda.ptx), and the
 * policy's attention through libvxrt's batched calls on device buffers. One step of every
 * layer for a batch of rows is queued on one stream, so it can be captured once in a CUDA
 * graph (vxrt_graph_begin / fwdgpu_step / vxrt_graph_end on fwdgpu_stream) and replayed.
 * Sits under runtime/serve/ beside forward.c (the CPU's math) and is used by bench.c.
 * Never prints, never exits; allocates only in fwdgpu_create (and fwdgpu_selftest). */
#ifndef SERVE_FORWARD_CUDA_H
#define SERVE_FORWARD_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "vxrt.h"

typedef struct fwdgpu fwdgpu;

/* Where the device weights come from: the host model's f32 arrays converted to bf16 on the
 * device, or seeded random values made on the device (the host model then only gives the
 * shapes; its weight arrays are not read). */
typedef enum fwdgpu_weights { FWDGPU_WEIGHTS_HOST = 0, FWDGPU_WEIGHTS_RANDOM } fwdgpu_weights;

/* Loads libcuda and cuBLAS (libcublas.so.13, else .12; $VX_CUBLAS first), makes a stream on
 * dev's context, loads the PTX, allocates the weights and every buffer a step of up to
 * max_batch rows needs, and fills the weights. Errors: -1 with the reason in err (no GPU,
 * no cuBLAS, out of device memory). */
int fwdgpu_create(vxrt_device *dev, const model *m, int max_batch, fwdgpu_weights w, uint64_t seed,
                  fwdgpu **out, char *err);
void fwdgpu_destroy(fwdgpu *g);

/* The stream every step's work is queued on (libvxrt's wrap of fwdgpu's CUstream). */
vxrt_stream *fwdgpu_stream(fwdgpu *g);
/* The cuBLAS library loaded ("libcublas.so.13"). */
const char *fwdgpu_blas_name(const fwdgpu *g);
/* Free and total device memory (cuMemGetInfo). */
int fwdgpu_mem_info(fwdgpu *g, size_t *free_bytes, size_t *total_bytes, char *err);
/* Fills n elements at addr (f32, f16 or bf16) with seeded uniform values in [-scale, scale),
 * queued on the stream. */
int fwdgpu_fill(fwdgpu *g, uint64_t addr, size_t n, vxrt_dtype t, float scale, uint64_t seed, char *err);
/* The value fwdgpu_fill writes at index i before rounding (its host twin, for tests). */
float fwdgpu_fill_value(uint64_t seed, uint64_t i, float scale);
/* Sets the next step's input token and position of rows 0..n-1 (queued on the stream; the
 * host arrays may be reused when it returns). A step writes its greedy tokens and advances
 * the positions itself, so this is needed only to start, or to force tokens. */
int fwdgpu_set_rows(fwdgpu *g, const int32_t *tokens, const int32_t *pos, int n, char *err);
/* Queues one decode step of every layer for rows 0..n-1, which are the slots of b (prepared
 * for this step with vxrt_batch_prepare on fwdgpu_stream): embedding, per layer RMSNorm,
 * QKV, q/k norm and RoPE, vxrt_decode_append/select/attend, output projection and residual,
 * RMSNorm, SwiGLU MLP and residual; then the final norm, the logits, greedy tokens into the
 * next step's input, positions + 1. Launches only: capturable in a graph. */
int fwdgpu_step(fwdgpu *g, vxrt_batch *b, int n, char *err);
/* Called after each step is queued: waits, blocking (the thread sleeps, it does not spin),
 * until the step queued before it has finished, then marks this one. The host so stays one
 * step ahead of the GPU, and libvxrt's own wait in the next vxrt_batch_prepare is short. */
int fwdgpu_pace(fwdgpu *g, char *err);
/* Waits for the stream and copies the last step's logits [n][vocab] / greedy tokens [n]. */
int fwdgpu_read_logits(fwdgpu *g, float *dst, int n, char *err);
int fwdgpu_read_tokens(fwdgpu *g, int32_t *dst, int n, char *err);
/* Bytes of weights one step reads (every matrix once, bf16) and the allocations fwdgpu has
 * made so far, host and device (a step makes none: bench prints the difference). */
double fwdgpu_weight_bytes(const fwdgpu *g);
long fwdgpu_allocations(const fwdgpu *g);
/* Runs every PTX kernel and one cuBLAS product on small inputs against host C; writes one
 * line per check into report (cap bytes). Returns the number of failed checks, -1 on error. */
int fwdgpu_selftest(fwdgpu *g, char *report, size_t cap);

#endif
