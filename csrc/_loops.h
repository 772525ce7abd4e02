/* What the plain C loops of the kernels share (_sigmoid.h, _update.h, _runtime.h):

     CG_CLONES             a loop compiled for the x86-64 baseline, AVX2+FMA (x86-64-v3) and
                           AVX-512 (x86-64-v4); the loader picks what the CPU runs. With
                           GCC 11 or later on x86-64 Linux, else one plain build. No -march
                           is needed, so a wheel runs on any x86-64 CPU.
     CG_UNFUSED_BEGIN/END  around loops whose every product must be rounded on its own, as
                           NumPy's and the BLAS's are: a fused multiply-add skips that
                           rounding, and near the float range it changes the answer (-inf
                           plus a product that overflows to +inf is NaN; fused, the product
                           never overflows and the sum stays -inf). */
#ifndef CYGRAD_LOOPS_H
#define CYGRAD_LOOPS_H

#if defined(__GNUC__) && __GNUC__ >= 11 && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__)
#define CG_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CG_CLONES
#endif

#if defined(__clang__)
#define CG_UNFUSED_BEGIN _Pragma("clang fp contract(off)")
#define CG_UNFUSED_END _Pragma("clang fp contract(on)")
#elif defined(__GNUC__)
#define CG_UNFUSED_BEGIN _Pragma("GCC push_options") _Pragma("GCC optimize(\"fp-contract=off\")")
#define CG_UNFUSED_END _Pragma("GCC pop_options")
#else
#define CG_UNFUSED_BEGIN
#define CG_UNFUSED_END
#endif

#endif
