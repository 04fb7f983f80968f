/* report.h - the cost report (vxc --report): bytes read and FLOPs per decode step and row
 * for a policy's scoring (select kernel), attention (attend kernel) and state update, and
 * the predicted speedup over dense attention. Derived from the VIR after the passes; the
 * counting rule is docs/report.md. Knows nothing of LLVM or of the runtime: it counts
 * what the VIR says a step does, it measures nothing. */
#ifndef VX_REPORT_H
#define VX_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "vir.h"

/* What the report is asked for: shapes, context, budget (vxc's --report options). */
typedef struct ReportOptions {
  bool enabled;          /* --report given */
  bool json;             /* --report=json or --format=json */
  bool format_given;     /* --format=... seen (needs --report) */
  bool other_given;      /* a shape/context/budget option seen (needs --report) */
  bool argv_seen;        /* the command line was scanned for the JSON report */
  bool json_errors;      /* it asks for it: option errors are JSON objects too */
  long long context;     /* N, tokens in the row; 0 = not given */
  long long budget;      /* top() budget in tokens; -1 = the policy's own */
  DType kv_dtype;        /* storage of k and v */
  long long G, D, P;
  double density;        /* expected fraction selected by where() among the other tokens */
  long long layers;      /* decoder layers, for a selection that reads 'layer'; 0 = not given */
} ReportOptions;

/* Defaults: bf16 KV, Llama-3.1-8B attention shapes (G = 4, D = 128), P = 16, density 0.05. */
void report_options_init(ReportOptions *o);
/* If argv[*i] is a report option, consumes it (and its value, advancing *i) and returns 1;
 * returns 0 for any other argument, and -1 after printing a usage error to stderr. */
int report_parse_option(ReportOptions *o, int argc, char **argv, int *i);
/* Checks the options as a whole once all are parsed; false after printing a usage error. */
bool report_check_options(const ReportOptions *o);

typedef struct ReportCost {
  double bytes;  /* bytes read */
  double flops;
} ReportCost;

/* One tensor the select kernel reads from memory every step. */
typedef struct ReportRead {
  const char *tensor;
  DType dtype;
  bool per_token;    /* per token, else per page */
  double per_elem;   /* bytes per page or per token */
  double bytes;      /* per step */
} ReportRead;

enum {
  REPORT_MAX_READS = 32, REPORT_MAX_NOTES = 8, REPORT_NOTE_LEN = 240,
  REPORT_MAX_LAYERS = 4096, REPORT_MAX_LAYER_RANGES = 64
};

/* Consecutive layers whose figures are the same (--layers, a selection that reads 'layer'). */
typedef struct ReportLayers {
  int first, last;
  double selected;  /* tokens attended per step and query head */
  bool estimate;    /* selected depends on the data */
  ReportCost total;
  double speedup;   /* predicted, over dense, in these layers */
} ReportLayers;

/* The machine balance the predicted speedup assumes, in FLOPs per byte: an H100 SXM's dense
 * bf16 peak over its HBM bandwidth (989 TFLOP/s / 3.35 TB/s). A step whose FLOPs per byte
 * exceed it is compute bound. */
#define REPORT_BALANCE 295.0

typedef struct Report {
  const char *policy;
  ReportOptions opt;
  long long npages;         /* ceil(N / P) */
  double budget;            /* the top() budget in tokens; -1 when the policy has no top() */
  bool budget_from_source;  /* not overridden by --budget */
  double keep;              /* always-kept tokens (generated tokens count 0) */
  double selected;          /* tokens attended per step and query head */
  double union_tokens;      /* tokens of K and V read per step: the union of the group's
                               selections (per head: up to G of them), else selected */
  bool estimate;            /* selected depends on the data (where()); uses opt.density */
  bool select_all;
  bool token_granular, per_head;
  bool scoring_skipped;     /* the budget covers the row: the runtime skips scoring */
  ReportCost scoring;       /* the select kernel */
  ReportCost attention;     /* the attend kernel: softmax(q.k) v over the selection + modifiers */
  double modifier_flops;    /* the part of attention.flops spent in the logit modifiers */
  ReportCost update;        /* the update kernel (state written after attention) */
  ReportCost total;         /* scoring + attention + update */
  ReportCost dense;         /* dense attention over all N tokens */
  double speedup_bytes, speedup_flops;  /* dense / total */
  double speedup;           /* dense / total by the roofline: max(bytes, FLOPs / REPORT_BALANCE) */
  bool flops_bound;         /* the policy's step is compute bound at REPORT_BALANCE */
  bool layer_dependent;     /* the select kernel reads 'layer' */
  ReportLayers layer_ranges[REPORT_MAX_LAYER_RANGES]; /* with --layers: the figures per layer;
                               the ones above are then the mean over the layers */
  int nlayer_ranges;
  ReportRead reads[REPORT_MAX_READS];
  int nreads;
  char notes[REPORT_MAX_NOTES][REPORT_NOTE_LEN];
  int nnotes;
} Report;

/* Computes the report of m (after pass_run) for o. On failure (an extent or budget that
 * cannot be evaluated, a require that does not hold) returns false with a message in err. */
bool report_compute(const VirModule *m, const ReportOptions *o, Report *r, char *err, size_t errlen);
/* Prints r as text, or as one JSON object (one line) when json. */
void report_print(FILE *out, const Report *r, bool json);
/* report_compute then report_print to out; errors to err. Returns vxc's exit code. */
int report_run(const VirModule *m, const ReportOptions *o, FILE *out, FILE *err);

#endif
