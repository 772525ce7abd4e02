# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Matrix-product kernels on BLAS (sgemm/dgemm from scipy.linalg.cython_blas), GIL released.

Arrays are row-major (C-contiguous) and already checked by backends/cython.py. BLAS is
column-major; a row-major matrix is the column-major matrix of its transpose, so
C = op(A) @ op(B) is computed as C^T = op(B)^T @ op(A)^T with the operands swapped.
`accumulate` is BLAS's beta = 1: the product is added into C without a temporary.
"""
from scipy.linalg.cython_blas cimport dgemm, sgemm

ctypedef fused real:
    float
    double


cdef inline void _gemm(bint trans_a, bint trans_b, int m, int n, int k,
                       const real* a, const real* b, real beta, real* c) noexcept nogil:
    """Row-major C (m x n) = op(A) (m x k) @ op(B) (k x n) + beta * C."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    # Leading dimensions of the stored (row-major) arrays; BLAS wants them >= 1.
    cdef int lda = max(1, m if trans_a else k)
    cdef int ldb = max(1, k if trans_b else n)
    cdef int ldc = max(1, n)
    cdef real alpha = 1
    cdef Py_ssize_t i
    if m == 0 or n == 0:
        return
    if k == 0:  # an empty sum: BLAS implementations differ on whether they touch C
        if beta == 0:
            for i in range(<Py_ssize_t>m * n):
                c[i] = 0
        return
    if real is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef inline const real* _ptr(const real[:, ::1] a) noexcept nogil:
    # &a[0, 0] is out of bounds for a 0-size array; BLAS never reads it then.
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef inline real* _out_ptr(real[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


def linear_forward(const real[:, ::1] x, const real[:, ::1] w, const real[::1] b,
                   real[:, ::1] out):
    """out = x @ w.T (+ b): the bias is written first and the product added with beta = 1.
    `b` may be None."""
    cdef int batch = x.shape[0], in_features = x.shape[1], out_features = w.shape[0]
    cdef Py_ssize_t i, j
    cdef real beta = 0
    cdef bint has_bias = b is not None
    with nogil:
        if has_bias:
            beta = 1
            for i in range(batch):
                for j in range(out_features):
                    out[i, j] = b[j]
        _gemm(False, True, batch, out_features, in_features, _ptr(x), _ptr(w), beta,
              _out_ptr(out))


def linear_backward(const real[:, ::1] grad_out, const real[:, ::1] x, const real[:, ::1] w,
                    real[:, ::1] grad_x, real[:, ::1] grad_w, bint accumulate):
    """grad_x (+)= grad_out @ w; grad_w (+)= grad_out.T @ x. Either output may be None."""
    cdef int batch = x.shape[0], in_features = x.shape[1], out_features = w.shape[0]
    cdef real beta = 1 if accumulate else 0
    cdef bint need_grad_x = grad_x is not None, need_grad_w = grad_w is not None
    with nogil:
        if need_grad_x:
            _gemm(False, False, batch, in_features, out_features, _ptr(grad_out), _ptr(w),
                  beta, _out_ptr(grad_x))
        if need_grad_w:
            _gemm(True, False, out_features, in_features, batch, _ptr(grad_out), _ptr(x),
                  beta, _out_ptr(grad_w))


def matmul_backward(const real[:, ::1] grad_out, const real[:, ::1] a, const real[:, ::1] b,
                    real[:, ::1] grad_a, real[:, ::1] grad_b, bint accumulate):
    """For out = a @ b: grad_a (+)= grad_out @ b.T; grad_b (+)= a.T @ grad_out.
    Either output may be None."""
    cdef int m = a.shape[0], k = a.shape[1], n = b.shape[1]
    cdef real beta = 1 if accumulate else 0
    cdef bint need_grad_a = grad_a is not None, need_grad_b = grad_b is not None
    with nogil:
        if need_grad_a:
            _gemm(False, True, m, k, n, _ptr(grad_out), _ptr(b), beta, _out_ptr(grad_a))
        if need_grad_b:
            _gemm(True, False, k, n, m, _ptr(a), _ptr(grad_out), beta, _out_ptr(grad_b))
