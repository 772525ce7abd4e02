/* The optimizers' updates, one pass over each parameter: SGD (momentum, dampening,
   Nesterov, weight decay, maximize) and Adam's moments and step. Pure C, no Python.

   Element-wise semantics, with every operation rounded in the arrays' dtype (float or
   double), in exactly the order written below, so that NumPy's expression of the same
   formula with the same scalars gives the same bits:
   - no fused multiply-add (CG_UNFUSED, _loops.h): a fused product skips a rounding;
   - the scalars arrive already rounded to the dtype; the `one_minus_*` ones are computed
     by the caller in double and then rounded, as NumPy rounds `1 - beta1` when it
     multiplies a float32 array by that Python float;
   - NaN and infinity propagate as IEEE arithmetic says: no element is skipped or clamped
     (a NaN in g gives a NaN in p, and in buf, m, v where those are written);
   - p, g, buf, m and v must not overlap one another (the callers check this); g is only
     read. n may be 0, and then nothing is read or written.

   The loops are compiled for several CPUs (CG_CLONES, _loops.h). They are memory-bound
   single passes, so they run on the calling thread. Each is written once for a type T
   and made for float (_f) and double (_d) below. */
#ifndef CYGRAD_UPDATE_H
#define CYGRAD_UPDATE_H
#include <math.h>
#include <stddef.h>
#include "_loops.h"

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
#define CG_SGD(name, T)                                                                    \
    CG_CLONES static void name(ptrdiff_t n, T *p, const T *g, T *buf, T lr, T momentum,     \
                               T one_minus_dampening, T weight_decay, T sign, int nesterov, \
                               int first) {                                                 \
        const int decay = weight_decay != (T)0;                                             \
        if (momentum == (T)0) {                                                             \
            for (ptrdiff_t i = 0; i < n; i++) {                                             \
                T d = sign * g[i];                                                          \
                if (decay) d = d + weight_decay * p[i];                                     \
                p[i] = p[i] - lr * d;                                                       \
            }                                                                               \
        } else if (first) {                                                                 \
            for (ptrdiff_t i = 0; i < n; i++) {                                             \
                T d = sign * g[i];                                                          \
                if (decay) d = d + weight_decay * p[i];                                     \
                buf[i] = d;                                                                 \
                p[i] = p[i] - lr * (nesterov ? d + momentum * d : d);                       \
            }                                                                               \
        } else {                                                                            \
            for (ptrdiff_t i = 0; i < n; i++) {                                             \
                T d = sign * g[i];                                                          \
                if (decay) d = d + weight_decay * p[i];                                     \
                T b = momentum * buf[i] + one_minus_dampening * d;                          \
                buf[i] = b;                                                                 \
                p[i] = p[i] - lr * (nesterov ? d + momentum * b : b);                       \
            }                                                                               \
        }                                                                                   \
    }

/* One pass of Adam over [0, n), its denominator DENOM written in terms of vi. */
#define CG_ADAM_PASS(T, DENOM)                                                             \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        T gi = g[i];                                                                        \
        T mi = beta1 * m[i] + one_minus_beta1 * gi;                                         \
        T vi = beta2 * v[i] + one_minus_beta2 * (gi * gi);                                  \
        m[i] = mi;                                                                          \
        v[i] = vi;                                                                          \
        p[i] = p[i] - (step_size * mi) / (DENOM + eps);                                     \
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
#define CG_ADAM(name, T, SQRT)                                                             \
    CG_CLONES static void name(ptrdiff_t n, T *p, const T *g, T *m, T *v, T step_size,      \
                               T beta1, T one_minus_beta1, T beta2, T one_minus_beta2,      \
                               T eps, T bias_correction2_sqrt) {                            \
        /* scikit-learn's rule divides by 1, which leaves every value as it is: a pass     \
           without it spares one division of two, the loop's bottleneck. */                 \
        const T c = bias_correction2_sqrt;                                                  \
        if (c == (T)1) {                                                                    \
            CG_ADAM_PASS(T, SQRT(vi))                                                       \
        } else {                                                                            \
            CG_ADAM_PASS(T, SQRT(vi) / c)                                                   \
        }                                                                                   \
    }

CG_UNFUSED_BEGIN
CG_SGD(cg_sgd_f, float)
CG_SGD(cg_sgd_d, double)
CG_ADAM(cg_adam_f, float, sqrtf)
CG_ADAM(cg_adam_d, double, sqrt)
CG_UNFUSED_END

#undef CG_SGD
#undef CG_ADAM
#undef CG_ADAM_PASS
#endif
