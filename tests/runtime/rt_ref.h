/* rt_ref.h - independent reference codecs for the runtime tests' dtype checks.
 *
 * Written without looking at the runtime's bit tricks: a code's value comes from its fields
 * by ldexp in double, and encoding searches the sorted table of a format's finite values for
 * the nearest one (ties to the even code). Slow and obviously right; tests only.
 */
#ifndef RT_REF_H
#define RT_REF_H

#include <math.h>
#include <stdint.h>

#include "vxrt.h"

/* Format geometry: exponent bits, mantissa bits, bias; `ieee` formats have inf/NaN at the
 * top exponent, e4m3 only has NaN at S.1111.111. */
typedef struct rt_fmt {
  int ebits, mbits, bias, ieee;
} rt_fmt;

static inline rt_fmt rt_fmt_of(vxrt_dtype t) {
  switch (t) {
  case VXRT_F16: return (rt_fmt){5, 10, 15, 1};
  case VXRT_BF16: return (rt_fmt){8, 7, 127, 1};
  default: return (rt_fmt){4, 3, 7, 0};
  }
}

static inline int rt_is_nan_code(rt_fmt f, uint32_t c) {
  uint32_t e = (c >> f.mbits) & ((1u << f.ebits) - 1), m = c & ((1u << f.mbits) - 1);
  if (f.ieee) return e == (1u << f.ebits) - 1 && m != 0;
  return e == (1u << f.ebits) - 1 && m == (1u << f.mbits) - 1;
}

/* Value of a code (sign included); inf for IEEE inf codes, NaN for NaN codes. */
static inline double rt_decode(rt_fmt f, uint32_t c) {
  int nbits = 1 + f.ebits + f.mbits;
  double sign = (c >> (nbits - 1)) & 1 ? -1.0 : 1.0;
  uint32_t e = (c >> f.mbits) & ((1u << f.ebits) - 1), m = c & ((1u << f.mbits) - 1);
  if (rt_is_nan_code(f, c)) return NAN;
  if (f.ieee && e == (1u << f.ebits) - 1) return sign * INFINITY;
  if (e == 0) return sign * ldexp((double)m, 1 - f.bias - f.mbits);
  return sign * ldexp(1.0 + ldexp((double)m, -f.mbits), (int)e - f.bias);
}

/* Largest positive finite code. */
static inline uint32_t rt_max_code(rt_fmt f) {
  if (f.ieee) return (((1u << f.ebits) - 1) << f.mbits) - 1;
  return (((1u << f.ebits) - 1) << f.mbits) | ((1u << f.mbits) - 2);
}

/* Nearest code to x, ties to the even code. IEEE formats treat inf as the next value after
 * the largest finite one, one ulp further (so overflow rounds like IEEE); e4m3 saturates. */
static inline uint32_t rt_encode(rt_fmt f, float xf) {
  double x = xf;
  int nbits = 1 + f.ebits + f.mbits;
  uint32_t sign = signbit(x) ? 1u << (nbits - 1) : 0, top = rt_max_code(f);
  if (isnan(x)) return f.ieee ? ((((1u << f.ebits) - 1) << f.mbits) | (1u << (f.mbits - 1)))
                              : (sign | (((1u << f.ebits) - 1) << f.mbits) | ((1u << f.mbits) - 1));
  double a = fabs(x);
  double maxv = rt_decode(f, top);
  if (!f.ieee && a >= maxv) return sign | top;
  uint32_t lo = 0, hi = top;
  if (f.ieee) {
    double ulp = maxv - rt_decode(f, top - 1);
    if (a >= maxv + ulp) return sign | (top + 1);
    hi = top + 1; /* "value" maxv + ulp */
  }
  /* Largest code whose value <= a. */
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo + 1) / 2;
    double v = (f.ieee && mid == top + 1) ? maxv + (maxv - rt_decode(f, top - 1)) : rt_decode(f, mid);
    if (v <= a) lo = mid; else hi = mid - 1;
  }
  uint32_t c = lo;
  double vlo = rt_decode(f, c);
  if (vlo == a) return sign | c;
  uint32_t n = c + 1;
  double vhi = (f.ieee && n == top + 1) ? maxv + (maxv - rt_decode(f, top - 1)) : rt_decode(f, n);
  double dl = a - vlo, dh = vhi - a;
  uint32_t pick = dl < dh ? c : dh < dl ? n : (c % 2 == 0 ? c : n);
  return sign | pick;
}

#endif /* RT_REF_H */
