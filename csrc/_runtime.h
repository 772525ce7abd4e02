/* What the compiled kernels see of cygrad's runtime: src/cygrad/runtime.py decides which
   BLAS and whose threads; this header carries the decisions out. The kernels include
   nothing else of it.

     cg_blas_use(routines, ilp64)      the runtime hands over the BLAS routines
     cg_blas_max()                     the largest size they take
     cg_gemm_f/_d, cg_gemv_f/_d,       column-major BLAS calls with 64-bit sizes, on
     cg_axpy_f/_d                      either integer interface of the BLAS
     cg_outer_f/_d                     c (+)= a b^T, the product of an inner size of 1
     cg_parallel(n, body, data)        n tasks on a team of n threads (_threads.h)

   Small work stays on the calling thread. OpenBLAS already runs a gemm below its own
   threshold on one thread, but splits a gemv or an axpy over its threads from a few
   thousand elements on; below CG_SMALL_WORK multiply-adds waking a team costs more than
   it saves, so these run here, in plain loops (docs/threads.md, "Thresholds"). */
#ifndef CYGRAD_RUNTIME_H
#define CYGRAD_RUNTIME_H

#include <stdint.h>
#include "_threads.h"
#include "_blas_threads.h"
#include "_loops.h"

#define CG_SMALL_WORK ((int64_t)1 << 18)

/* The plain loops are compiled for several CPUs (CG_CLONES, _loops.h): the BLAS they
   stand in for is too. */
/* The routines sgemm, dgemm, sgemv, dgemv, saxpy, daxpy (Fortran interface), with 64-bit
   integers (ilp64) or 32-bit ones. */
static struct {
    void *sgemm, *dgemm, *sgemv, *dgemv, *saxpy, *daxpy;
    int ilp64;
    int64_t max;
} cg_blas = {0};

static void cg_blas_use(void *const *routines, int ilp64) {
    cg_blas.sgemm = routines[0]; cg_blas.dgemm = routines[1];
    cg_blas.sgemv = routines[2]; cg_blas.dgemv = routines[3];
    cg_blas.saxpy = routines[4]; cg_blas.daxpy = routines[5];
    cg_blas.ilp64 = ilp64;
    cg_blas.max = ilp64 ? INT64_MAX : INT32_MAX;
}

static int64_t cg_blas_max(void) { return cg_blas.max; }

/* Sizes are checked against cg_blas_max() by the caller, so the 32-bit casts are exact. */
#define CG_GEMM(name, T, field)                                                            \
    static void name(char ta, char tb, int64_t m, int64_t n, int64_t k, T alpha,           \
                     const T *a, int64_t lda, const T *b, int64_t ldb, T beta, T *c,        \
                     int64_t ldc) {                                                         \
        if (cg_blas.ilp64) {                                                                \
            ((void (*)(const char *, const char *, const int64_t *, const int64_t *,        \
                       const int64_t *, const T *, const T *, const int64_t *, const T *,   \
                       const int64_t *, const T *, T *, const int64_t *))cg_blas.field)(    \
                &ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);            \
        } else {                                                                            \
            int m_ = (int)m, n_ = (int)n, k_ = (int)k;                                      \
            int lda_ = (int)lda, ldb_ = (int)ldb, ldc_ = (int)ldc;                          \
            ((void (*)(const char *, const char *, const int *, const int *, const int *,   \
                       const T *, const T *, const int *, const T *, const int *,           \
                       const T *, T *, const int *))cg_blas.field)(                         \
                &ta, &tb, &m_, &n_, &k_, &alpha, a, &lda_, b, &ldb_, &beta, c, &ldc_);      \
        }                                                                                   \
    }

/* y = alpha * op(A) @ x + beta * y for the column-major (m x n) A; beta is 0 or 1 here
   (0: y is overwritten, even where it held NaN). */
#define CG_GEMV(name, T, field)                                                            \
    static void name##_blas(char t, int64_t m, int64_t n, T alpha, const T *a,             \
                            int64_t lda, const T *x, T beta, T *y) {                        \
        int64_t one = 1;                                                                    \
        if (cg_blas.ilp64) {                                                                \
            ((void (*)(const char *, const int64_t *, const int64_t *, const T *, const T *, \
                       const int64_t *, const T *, const int64_t *, const T *, T *,         \
                       const int64_t *))cg_blas.field)(                                     \
                &t, &m, &n, &alpha, a, &lda, x, &one, &beta, y, &one);                      \
        } else {                                                                            \
            int m_ = (int)m, n_ = (int)n, lda_ = (int)lda, one_ = 1;                        \
            ((void (*)(const char *, const int *, const int *, const T *, const T *,        \
                       const int *, const T *, const int *, const T *, T *,                 \
                       const int *))cg_blas.field)(                                         \
                &t, &m_, &n_, &alpha, a, &lda_, x, &one_, &beta, y, &one_);                 \
        }                                                                                   \
    }                                                                                       \
    CG_CLONES static void name##_loop(char t, int64_t m, int64_t n, T alpha,          \
                                           const T *a, int64_t lda, const T *x, T *y) {     \
        int64_t i, j, l;                                                                    \
        if (t == 'N') { /* y += alpha * x_j * column j, four columns a pass over y */      \
            for (j = 0; j + 4 <= n; j += 4) {                                               \
                T s0 = alpha * x[j], s1 = alpha * x[j + 1];                                 \
                T s2 = alpha * x[j + 2], s3 = alpha * x[j + 3];                             \
                const T *c0 = a + j * lda, *c1 = c0 + lda, *c2 = c1 + lda, *c3 = c2 + lda;  \
                for (i = 0; i < m; i++)                                                     \
                    y[i] += (s0 * c0[i] + s1 * c1[i]) + (s2 * c2[i] + s3 * c3[i]);          \
            }                                                                               \
            for (; j < n; j++) {                                                            \
                T s = alpha * x[j];                                                         \
                const T *col = a + j * lda;                                                 \
                for (i = 0; i < m; i++) y[i] += s * col[i];                                 \
            }                                                                               \
            return;                                                                         \
        }                                                                                   \
        for (j = 0; j < n; j++) { /* y_j += alpha * column j . x, in sixteen lanes */      \
            const T *col = a + j * lda;                                                     \
            T acc[16] = {0}, s = 0;                                                         \
            for (i = 0; i + 16 <= m; i += 16)                                               \
                for (l = 0; l < 16; l++) acc[l] += col[i + l] * x[i + l];                   \
            for (l = 0; l < 16; l++) s += acc[l];                                           \
            for (; i < m; i++) s += col[i] * x[i];                                          \
            y[j] += alpha * s;                                                              \
        }                                                                                   \
    }                                                                                       \
    static void name(char t, int64_t m, int64_t n, T alpha, const T *a, int64_t lda,       \
                     const T *x, T beta, T *y) {                                            \
        int64_t i, ny = t == 'N' ? m : n;                                                   \
        if (beta == 0)                                                                      \
            for (i = 0; i < ny; i++) y[i] = 0;                                              \
        if (m * n >= CG_SMALL_WORK)                                                         \
            name##_blas(t, m, n, alpha, a, lda, x, 1, y);                                   \
        else                                                                                \
            name##_loop(t, m, n, alpha, a, lda, x, y);                                      \
    }

/* y += alpha * x, in pieces the BLAS takes. */
#define CG_AXPY(name, T, field)                                                            \
    CG_CLONES static void name##_loop(int64_t n, T alpha, const T *x, T *y) {         \
        int64_t i;                                                                          \
        for (i = 0; i < n; i++) y[i] += alpha * x[i];                                       \
    }                                                                                       \
    static void name(int64_t n, T alpha, const T *x, T *y) {                                \
        int64_t start = 0;                                                                  \
        if (n < CG_SMALL_WORK) {                                                            \
            name##_loop(n, alpha, x, y);                                                    \
            return;                                                                         \
        }                                                                                   \
        while (start < n) {                                                                 \
            int64_t count = n - start < cg_blas.max ? n - start : cg_blas.max, one = 1;     \
            if (cg_blas.ilp64) {                                                            \
                ((void (*)(const int64_t *, const T *, const T *, const int64_t *, T *,     \
                           const int64_t *))cg_blas.field)(                                 \
                    &count, &alpha, x + start, &one, y + start, &one);                      \
            } else {                                                                        \
                int count_ = (int)count, one_ = 1;                                          \
                ((void (*)(const int *, const T *, const T *, const int *, T *,             \
                           const int *))cg_blas.field)(                                     \
                    &count_, &alpha, x + start, &one_, y + start, &one_);                   \
            }                                                                               \
            start += count;                                                                 \
        }                                                                                   \
    }

/* Row-major c (m x n) = a (m) b^T (n), or c += a b^T with accumulate: the product a
   batch of one makes (a weight's gradient at batch 1). A gemm would first zero c in a
   pass of its own, then add the product in a second; this writes each element once. */
#define CG_OUTER(name, T)                                                                  \
    CG_CLONES static void name(int64_t m, int64_t n, const T *a, const T *b,           \
                                    int accumulate, T *c) {                                 \
        int64_t i, j;                                                                       \
        for (i = 0; i < m; i++) {                                                           \
            T s = a[i];                                                                     \
            T *row = c + i * n;                                                             \
            if (accumulate)                                                                 \
                for (j = 0; j < n; j++) row[j] += s * b[j];                                 \
            else                                                                            \
                for (j = 0; j < n; j++) row[j] = s * b[j];                                  \
        }                                                                                   \
    }

CG_GEMM(cg_gemm_f, float, sgemm)
CG_GEMM(cg_gemm_d, double, dgemm)
CG_GEMV(cg_gemv_f, float, sgemv)
CG_GEMV(cg_gemv_d, double, dgemv)
CG_AXPY(cg_axpy_f, float, saxpy)
CG_AXPY(cg_axpy_d, double, daxpy)
CG_UNFUSED_BEGIN /* as the BLAS's products round (_loops.h) */
CG_OUTER(cg_outer_f, float)
CG_OUTER(cg_outer_d, double)
CG_UNFUSED_END

#undef CG_GEMM
#undef CG_GEMV
#undef CG_AXPY
#undef CG_OUTER
#endif
