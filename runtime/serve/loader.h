/* loader.h - what vx-serve's model loaders share (weights.c, hf.c; bpe.c reads its JSON
 * through it): arrays the model owns,
 * read-only file mappings, the config's plausibility check, and safetensors files (a header
 * parsed from a mapping, tensors as f32: in place when f32 and aligned, else converted once).
 * Internal to runtime/serve/'s loaders; never prints, never exits, trusts no file. */
#ifndef SERVE_LOADER_H
#define SERVE_LOADER_H

#include <cjson/cJSON.h>

#include "model.h"

/* An array of n floats freed with the model; NULL when out of memory. */
float *loader_own(model *m, size_t n);
/* Maps the file read-only into *out. Returns 0, or -1 with a message naming it. */
int loader_map(const char *path, model_map *out, char *err);
/* Keeps a mapping with the model (unmapped by model_free); on failure unmaps it. */
int loader_keep_map(model *m, model_map mp, char *err);
/* Checks the shapes are positive and consistent; `path` names the source in the message. */
int loader_check_config(const model_config *c, const char *path, char *err);

typedef struct st_file {
  cJSON *hdr;               /* the parsed header: tensor name -> {dtype, shape, data_offsets} */
  const unsigned char *data;
  size_t data_len;
  const char *path;
  int in_place;             /* tensors handed out in place (the mapping must stay) */
} st_file;

/* Parses the safetensors header of a mapped file. Returns 0, or -1 naming the file. */
int st_open(st_file *f, const model_map *mp, const char *path, char *err);
void st_close(st_file *f);
/* The tensor `name` as f32 of shape [d0] (d1 <= 0) or [d0][d1], checked against the header;
 * NULL with a message naming the file and tensor. */
const float *st_tensor(model *m, st_file *f, const char *name, int d0, int d1, char *err);

/* hf.c: a Hugging Face model folder into m (whose maps it fills). */
/* A JSON file holding an object; NULL with a message naming it (*missing: it does not exist). */
cJSON *loader_read_json(const char *path, int *missing, char *err);
int hf_load(model *m, const char *dir, char *err);

#endif
