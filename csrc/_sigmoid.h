/* Vectorizable sigmoid loops, forward and backward.

   libm's exp is a scalar call, so a loop over it cannot use SIMD; NumPy's exp can, and the
   sigmoid forward was 6x slower than NumPy's expression for it. Here exp is written out
   with operations a compiler vectorizes: exp(r + n ln2) = 2^n exp(r), n = round(x / ln2),
   |r| <= ln2/2, exp(r) by its Taylor series (degree 7 for float, 13 for double: the first
   omitted term is below half an ulp), 2^n built from its exponent bits.

   The loops are compiled for several CPUs (CG_CLONES, _loops.h; docs/threads.md has what
   each clone gains). */
#ifndef CYGRAD_SIGMOID_H
#define CYGRAD_SIGMOID_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_loops.h"

/* exp(x) for x <= 0; exactly 0 once 2^n would leave the normal range (x below -87.68
   in float, -708.73 in double, where the true result is subnormal); NaN stays NaN. */
static inline float cg_exp_nonpositive_f(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = (x - n * 0.693359375f) + n * 2.12194440e-4f; /* x - n ln2, in two parts */
    float p = 1.0f + r * (1.0f + r * (1.0f / 2 + r * (1.0f / 6 + r * (1.0f / 24 + r * (
        1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    int32_t tb, k;
    memcpy(&tb, &t, sizeof tb);
    k = tb - 0x4B400000; /* the integer n, read from t's low mantissa bits */
    int32_t sb = (k + 127) << 23;
    float scale;
    memcpy(&scale, &sb, sizeof scale);
    float e = p * scale;
    e = x < -87.68f ? 0.0f : e; /* below, n < -126: 2^n is not a normal float */
    return x != x ? x : e;
}

static inline double cg_exp_nonpositive_d(double x) {
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    double t = x * 1.4426950408889634074 + magic;
    double n = t - magic;
    double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0; /* 1/13! */
    p = 1.0 / 479001600.0 + r * p;
    p = 1.0 / 39916800.0 + r * p;
    p = 1.0 / 3628800.0 + r * p;
    p = 1.0 / 362880.0 + r * p;
    p = 1.0 / 40320.0 + r * p;
    p = 1.0 / 5040.0 + r * p;
    p = 1.0 / 720.0 + r * p;
    p = 1.0 / 120.0 + r * p;
    p = 1.0 / 24.0 + r * p;
    p = 1.0 / 6.0 + r * p;
    p = 0.5 + r * p;
    p = 1.0 + r * p;
    p = 1.0 + r * p;
    int64_t tb, k;
    memcpy(&tb, &t, sizeof tb);
    k = tb - INT64_C(0x4338000000000000);
    int64_t sb = (k + 1023) << 52;
    double scale;
    memcpy(&scale, &sb, sizeof scale);
    double e = p * scale;
    e = x < -708.73 ? 0.0 : e; /* below, n < -1022: 2^n is not a normal double */
    return x != x ? x : e;
}

/* sigmoid(x) = 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0, both with
   e = exp(-|x|) <= 1, which never overflows. */
CG_CLONES static void cg_sigmoid_f(const float* x, float* out, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = x[i];
        float e = cg_exp_nonpositive_f(v < 0 ? v : -v);
        out[i] = (v >= 0 ? 1.0f : e) / (1.0f + e);
    }
}

CG_CLONES static void cg_sigmoid_d(const double* x, double* out, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        double v = x[i];
        double e = cg_exp_nonpositive_d(v < 0 ? v : -v);
        out[i] = (v >= 0 ? 1.0 : e) / (1.0 + e);
    }
}

/* out (+)= g * y * (1 - y): memory-bound for large arrays, but in cache the wider clones
   run ahead of the baseline's SSE2. Unfused (_loops.h), so every clone gives the
   reference's result bit for bit. */
CG_UNFUSED_BEGIN
CG_CLONES static void cg_sigmoid_backward_f(const float* g, const float* y, float* out,
                                            ptrdiff_t n, int accumulate) {
    if (accumulate)
        for (ptrdiff_t i = 0; i < n; i++) out[i] += g[i] * y[i] * (1.0f - y[i]);
    else
        for (ptrdiff_t i = 0; i < n; i++) out[i] = g[i] * y[i] * (1.0f - y[i]);
}

CG_CLONES static void cg_sigmoid_backward_d(const double* g, const double* y, double* out,
                                            ptrdiff_t n, int accumulate) {
    if (accumulate)
        for (ptrdiff_t i = 0; i < n; i++) out[i] += g[i] * y[i] * (1.0 - y[i]);
    else
        for (ptrdiff_t i = 0; i < n; i++) out[i] = g[i] * y[i] * (1.0 - y[i]);
}
CG_UNFUSED_END
#endif
