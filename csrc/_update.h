/* The optimizers' updates, one pass over each parameter: SGD (momentum, dampening,
   Nesterov, weight decay, maximize) and Adam's moments and step. Pure C, no Python.

   Element-wise semantics, with every operation rounded in the arrays' dtype (float or
   double), in exactly the order written below, so that NumPy's expression of the same
   formula with the same scalars gives the same bits:
   - no fused multiply-add (fp-contract is off here): a fused product skips a rounding;
   - the scalars arrive already rounded to the dtype; the `one_minus_*` ones are computed
     by the caller in double and then rounded, as NumPy rounds `1 - beta1` when it
     multiplies a float32 array by that Python float;
   - NaN and infinity propagate as IEEE arithmetic says: no element is skipped or clamped
     (a NaN in g gives a NaN in p, and in buf, m, v where those are written);
   - p, g, buf, m and v must not overlap one another (the callers check this); g is only
     read. n may be 0, and then nothing is read or written.

   With GCC 11 or later on x86-64 Linux the loops are compiled three times (target_clones),
   as the sigmoid loops in _sigmoid.h are: baseline, AVX2+FMA and AVX-512; the loader picks
   the best one the CPU runs. The loops are memory-bound single passes, so they run on the
   calling thread. */
#ifndef CYGRAD_UPDATE_H
#define CYGRAD_UPDATE_H
#include <math.h>
#include <stddef.h>

#if defined(__GNUC__) && __GNUC__ >= 11 && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__)
#define CG_UPDATE_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CG_UPDATE_CLONES
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

/* torch.optim.SGD's update of one parameter, for i in [0, n):
       d = sign*g + weight_decay*p        (the product only when weight_decay != 0: an
                                           infinite p with no decay must not give NaN)
   when momentum != 0:
       buf = d                                        if first
       buf = momentum*buf + one_minus_dampening*d     otherwise
       d = d + momentum*buf                           if nesterov
       d = buf                                        otherwise
   then
       p = p - lr*d
   buf may be NULL when momentum == 0 (it is then neither read nor written); first and
   nesterov are ignored then. sign is +1, or -1 to maximize. */
CG_UPDATE_CLONES static void cg_sgd_f(ptrdiff_t n, float *p, const float *g, float *buf,
                                      float lr, float momentum, float one_minus_dampening,
                                      float weight_decay, float sign, int nesterov,
                                      int first) {
    const int decay = weight_decay != 0.0f;
    if (momentum == 0.0f) {
        for (ptrdiff_t i = 0; i < n; i++) {
            float d = sign * g[i];
            if (decay) d = d + weight_decay * p[i];
            p[i] = p[i] - lr * d;
        }
    } else if (first) {
        for (ptrdiff_t i = 0; i < n; i++) {
            float d = sign * g[i];
            if (decay) d = d + weight_decay * p[i];
            buf[i] = d;
            p[i] = p[i] - lr * (nesterov ? d + momentum * d : d);
        }
    } else {
        for (ptrdiff_t i = 0; i < n; i++) {
            float d = sign * g[i];
            if (decay) d = d + weight_decay * p[i];
            float b = momentum * buf[i] + one_minus_dampening * d;
            buf[i] = b;
            p[i] = p[i] - lr * (nesterov ? d + momentum * b : b);
        }
    }
}

CG_UPDATE_CLONES static void cg_sgd_d(ptrdiff_t n, double *p, const double *g, double *buf,
                                      double lr, double momentum, double one_minus_dampening,
                                      double weight_decay, double sign, int nesterov,
                                      int first) {
    const int decay = weight_decay != 0.0;
    if (momentum == 0.0) {
        for (ptrdiff_t i = 0; i < n; i++) {
            double d = sign * g[i];
            if (decay) d = d + weight_decay * p[i];
            p[i] = p[i] - lr * d;
        }
    } else if (first) {
        for (ptrdiff_t i = 0; i < n; i++) {
            double d = sign * g[i];
            if (decay) d = d + weight_decay * p[i];
            buf[i] = d;
            p[i] = p[i] - lr * (nesterov ? d + momentum * d : d);
        }
    } else {
        for (ptrdiff_t i = 0; i < n; i++) {
            double d = sign * g[i];
            if (decay) d = d + weight_decay * p[i];
            double b = momentum * buf[i] + one_minus_dampening * d;
            buf[i] = b;
            p[i] = p[i] - lr * (nesterov ? d + momentum * b : b);
        }
    }
}

/* Adam's moments and parameter update, for i in [0, n):
       m = beta1*m + one_minus_beta1*g
       v = beta2*v + one_minus_beta2*(g*g)
       p = p - (step_size*m) / (sqrt(v)/bias_correction2_sqrt + eps)
   torch.optim.Adam: step_size = lr/(1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t);
   scikit-learn's adam: step_size = lr*sqrt(1 - beta2^t)/(1 - beta1^t),
   bias_correction2_sqrt = 1 (the division is then exact).
   step_size*m is rounded before the division, as both torch (addcdiv) and scikit-learn
   (-lr_t * m / denom) evaluate it. Weight decay, maximize and amsgrad are the caller's:
   it passes the gradient that results (amsgrad needs the running maximum of v in the
   denominator, which this loop does not keep). */
CG_UPDATE_CLONES static void cg_adam_f(ptrdiff_t n, float *p, const float *g, float *m,
                                       float *v, float step_size, float beta1,
                                       float one_minus_beta1, float beta2,
                                       float one_minus_beta2, float eps,
                                       float bias_correction2_sqrt) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + one_minus_beta1 * gi;
        float vi = beta2 * v[i] + one_minus_beta2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] - (step_size * mi) / (sqrtf(vi) / bias_correction2_sqrt + eps);
    }
}

CG_UPDATE_CLONES static void cg_adam_d(ptrdiff_t n, double *p, const double *g, double *m,
                                       double *v, double step_size, double beta1,
                                       double one_minus_beta1, double beta2,
                                       double one_minus_beta2, double eps,
                                       double bias_correction2_sqrt) {
    for (ptrdiff_t i = 0; i < n; i++) {
        double gi = g[i];
        double mi = beta1 * m[i] + one_minus_beta1 * gi;
        double vi = beta2 * v[i] + one_minus_beta2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] - (step_size * mi) / (sqrt(vi) / bias_correction2_sqrt + eps);
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
#undef CG_UPDATE_CLONES
#endif
