/* stream.c - streams, device buffers and CUDA graphs of libvxrt's public API (vxrt.h).
 *
 * A stream is a CUstream on CUDA (libvxrt's own, created blocking so that synchronous copies
 * order after its work, or an engine's wrapped one) and a placeholder on the CPU, where
 * every call completes before it returns. Events are CUDA events or host clock readings.
 * Buffers are the device memory primitives of device.c made public. Graphs wrap stream
 * capture (thread-local mode) and graph launch.
 * Every live object here keeps its device open. Never prints, never exits. */
#include <stdlib.h>
#include <time.h>

#include "vxrt_internal.h"

struct vxrt_event {
  vxrt_device *dev;
  vxcu_event ev;  /* CUDA */
  double host_ms; /* CPU: the monotonic clock at the last record */
};

struct vxrt_graph {
  vxrt_device *dev;
  vxcu_graph graph;
  vxcu_graph_exec exec;
};

static int cuda(const vxrt_device *dev) { return dev->info.kind == VXRT_CUDA; }

/* ------------------------------------------------------------------ streams */

static vxrt_status new_stream(vxrt_device *dev, vxcu_stream s, int owned, vxrt_stream **out) {
  vxrt_stream *x = calloc(1, sizeof *x);
  if (!x) return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory creating a stream");
  x->dev = dev;
  x->s = s;
  x->owned = owned;
  atomic_fetch_add(&dev->live, 1);
  *out = x;
  return VXRT_OK;
}

vxrt_status vxrt_stream_create(vxrt_device *dev, vxrt_stream **out) {
  if (!dev || !out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_stream_create: NULL argument");
  *out = NULL;
  vxcu_stream s = NULL;
  if (cuda(dev)) {
    vxrt_status st = vxrt_cuda_push(dev);
    if (st) return st;
    vxcu_result r = dev->cu.cuStreamCreate(&s, 0);
    vxrt_cuda_pop(dev);
    if (r) return vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuStreamCreate", r);
  }
  vxrt_status st = new_stream(dev, s, 1, out);
  if (st && s && vxrt_cuda_push(dev) == VXRT_OK) {
    dev->cu.cuStreamDestroy(s);
    vxrt_cuda_pop(dev);
  }
  return st;
}

vxrt_status vxrt_stream_wrap(vxrt_device *dev, void *custream, vxrt_stream **out) {
  if (!dev || !out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_stream_wrap: NULL argument");
  *out = NULL;
  if (!cuda(dev) && custream)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_stream_wrap: a CPU device has no CUDA streams");
  return new_stream(dev, (vxcu_stream)custream, 0, out);
}

vxrt_status vxrt_stream_sync(vxrt_stream *s) {
  if (!s) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_stream_sync: stream is NULL");
  if (!cuda(s->dev)) return VXRT_OK;
  vxrt_status st = vxrt_cuda_push(s->dev);
  if (st) return st;
  vxcu_result r = s->dev->cu.cuStreamSynchronize(s->s);
  vxrt_cuda_pop(s->dev);
  return r ? vxrt_cuda_fail(s->dev, VXRT_ERR_DEVICE, "cuStreamSynchronize", r) : VXRT_OK;
}

vxrt_status vxrt_stream_free(vxrt_stream *s) {
  if (!s) return VXRT_OK;
  if (s->owned && s->s && vxrt_cuda_push(s->dev) == VXRT_OK) {
    s->dev->cu.cuStreamDestroy(s->s);
    vxrt_cuda_pop(s->dev);
  }
  atomic_fetch_sub(&s->dev->live, 1);
  free(s);
  return VXRT_OK;
}

/* ------------------------------------------------------------------ events */

vxrt_status vxrt_event_create(vxrt_device *dev, vxrt_event **out) {
  if (!dev || !out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_event_create: NULL argument");
  *out = NULL;
  vxrt_event *e = calloc(1, sizeof *e);
  if (!e) return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory creating an event");
  e->dev = dev;
  if (cuda(dev)) {
    vxrt_status st = vxrt_cuda_push(dev);
    vxcu_result r = st ? 0 : dev->cu.cuEventCreate(&e->ev, VXCU_EVENT_DEFAULT);
    if (!st) vxrt_cuda_pop(dev);
    if (st || r) {
      free(e);
      return st ? st : vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuEventCreate", r);
    }
  }
  atomic_fetch_add(&dev->live, 1);
  *out = e;
  return VXRT_OK;
}

vxrt_status vxrt_event_record(vxrt_event *e, vxrt_stream *s) {
  if (!e || !s) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_event_record: NULL argument");
  if (s->dev != e->dev)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_event_record: the stream belongs to another device");
  if (!cuda(e->dev)) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    e->host_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    return VXRT_OK;
  }
  vxrt_status st = vxrt_cuda_push(e->dev);
  if (st) return st;
  vxcu_result r = e->dev->cu.cuEventRecord(e->ev, s->s);
  vxrt_cuda_pop(e->dev);
  return r ? vxrt_cuda_fail(e->dev, VXRT_ERR_DEVICE, "cuEventRecord", r) : VXRT_OK;
}

vxrt_status vxrt_event_elapsed(vxrt_event *start, vxrt_event *end, float *ms) {
  if (!start || !end || !ms) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_event_elapsed: NULL argument");
  if (start->dev != end->dev)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_event_elapsed: events of two devices");
  vxrt_device *dev = end->dev;
  if (!cuda(dev)) {
    *ms = (float)(end->host_ms - start->host_ms);
    return VXRT_OK;
  }
  if (!dev->cu.cuEventElapsedTime)
    return vxrt_fail(VXRT_ERR_UNSUPPORTED, "this CUDA driver has no cuEventElapsedTime_v2 (CUDA 12.8+)");
  vxrt_status st = vxrt_cuda_push(dev);
  if (st) return st;
  vxcu_result r = dev->cu.cuEventSynchronize(end->ev);
  if (!r) r = dev->cu.cuEventElapsedTime(ms, start->ev, end->ev);
  vxrt_cuda_pop(dev);
  return r ? vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuEventElapsedTime", r) : VXRT_OK;
}

vxrt_status vxrt_event_free(vxrt_event *e) {
  if (!e) return VXRT_OK;
  if (e->ev && vxrt_cuda_push(e->dev) == VXRT_OK) {
    e->dev->cu.cuEventDestroy(e->ev);
    vxrt_cuda_pop(e->dev);
  }
  atomic_fetch_sub(&e->dev->live, 1);
  free(e);
  return VXRT_OK;
}

/* ------------------------------------------------------------------ buffers */

vxrt_status vxrt_buffer_alloc(vxrt_device *dev, size_t bytes, uint64_t *addr) {
  if (!dev || !addr) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_buffer_alloc: NULL argument");
  *addr = 0;
  if (!bytes) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_buffer_alloc: 0 bytes");
  vxrt_status st = vxrt_mem_alloc(dev, bytes, addr);
  if (!st) atomic_fetch_add(&dev->live, 1);
  return st;
}

vxrt_status vxrt_buffer_free(vxrt_device *dev, uint64_t addr) {
  if (!dev) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_buffer_free: device is NULL");
  if (!addr) return VXRT_OK;
  vxrt_mem_free(dev, addr);
  atomic_fetch_sub(&dev->live, 1);
  return VXRT_OK;
}

vxrt_status vxrt_buffer_upload(vxrt_device *dev, uint64_t dst, const void *src, size_t bytes) {
  if (!dev || (bytes && (!dst || !src)))
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_buffer_upload: NULL argument");
  return vxrt_mem_write(dev, dst, src, bytes);
}

vxrt_status vxrt_buffer_download(vxrt_device *dev, void *dst, uint64_t src, size_t bytes) {
  if (!dev || (bytes && (!dst || !src)))
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_buffer_download: NULL argument");
  return vxrt_mem_read(dev, dst, src, bytes);
}

/* ------------------------------------------------------------------ graphs */

static vxrt_status graph_stream(const vxrt_stream *s, const char *fn) {
  if (!s) return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: stream is NULL", fn);
  if (!cuda(s->dev))
    return vxrt_fail(VXRT_ERR_UNSUPPORTED, "%s: CUDA graphs exist on CUDA devices only; on the "
                                           "CPU, make the calls directly", fn);
  if (!s->s)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: the legacy default stream cannot be captured; "
                                           "use vxrt_stream_create", fn);
  return vxrt_cuda_push(s->dev);
}

vxrt_status vxrt_graph_begin(vxrt_stream *s) {
  vxrt_status st = graph_stream(s, "vxrt_graph_begin");
  if (st) return st;
  vxcu_result r = s->dev->cu.cuStreamBeginCapture(s->s, VXCU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
  vxrt_cuda_pop(s->dev);
  return r ? vxrt_cuda_fail(s->dev, VXRT_ERR_DEVICE, "cuStreamBeginCapture", r) : VXRT_OK;
}

vxrt_status vxrt_graph_end(vxrt_stream *s, vxrt_graph **out) {
  if (!out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_graph_end: out is NULL");
  *out = NULL;
  vxrt_status st = graph_stream(s, "vxrt_graph_end");
  if (st) return st;
  vxrt_device *dev = s->dev;
  vxrt_graph *g = calloc(1, sizeof *g);
  vxcu_graph graph = NULL;
  vxcu_result r = dev->cu.cuStreamEndCapture(s->s, &graph); /* ends the capture in any case */
  const char *call = "cuStreamEndCapture (a call inside the capture failed, or the capture was "
                     "invalidated)";
  if (!r && g) {
    call = "cuGraphInstantiate";
    r = dev->cu.cuGraphInstantiate(&g->exec, graph, 0);
  }
  if (r || !g) {
    if (graph) dev->cu.cuGraphDestroy(graph);
    vxrt_cuda_pop(dev);
    free(g);
    return r ? vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, call, r)
             : vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory ending a capture");
  }
  vxrt_cuda_pop(dev);
  g->dev = dev;
  g->graph = graph;
  atomic_fetch_add(&dev->live, 1);
  *out = g;
  return VXRT_OK;
}

vxrt_status vxrt_graph_launch(vxrt_graph *g, vxrt_stream *s) {
  if (!g) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_graph_launch: graph is NULL");
  vxrt_status st = graph_stream(s, "vxrt_graph_launch");
  if (st) return st;
  if (s->dev != g->dev) {
    vxrt_cuda_pop(s->dev);
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_graph_launch: the stream belongs to another device");
  }
  vxcu_result r = g->dev->cu.cuGraphLaunch(g->exec, s->s);
  vxrt_cuda_pop(g->dev);
  return r ? vxrt_cuda_fail(g->dev, VXRT_ERR_DEVICE, "cuGraphLaunch", r) : VXRT_OK;
}

vxrt_status vxrt_graph_free(vxrt_graph *g) {
  if (!g) return VXRT_OK;
  if (vxrt_cuda_push(g->dev) == VXRT_OK) {
    g->dev->cu.cuGraphExecDestroy(g->exec);
    g->dev->cu.cuGraphDestroy(g->graph);
    vxrt_cuda_pop(g->dev);
  }
  atomic_fetch_sub(&g->dev->live, 1);
  free(g);
  return VXRT_OK;
}
