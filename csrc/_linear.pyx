# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Matrix-product kernels on BLAS (gemm/gemv from scipy.linalg.cython_blas), GIL released.

Arrays are row-major (C-contiguous) and already checked by backends/cython.py. BLAS is
column-major; a row-major matrix is the column-major matrix of its transpose, so
C = op(A) @ op(B) is computed as C^T = op(B)^T @ op(A)^T with the operands swapped.
`accumulate` is BLAS's beta = 1: the product is added into C without a temporary.
The bias gradient, a sum over rows, is a matrix-vector product with a vector of ones:
BLAS's gemv runs it vectorized and threaded, faster than NumPy's sum(0) (measured), and in
the same thread pool as the products around it, so the two never compete for cores.
"""
from libc.limits cimport INT_MAX
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv

ctypedef fused real:
    float
    double


cdef inline void _gemv(bint row_major_is_rows, int k, int n, int ld, const real* mat,
                       const real* vec, real* c) noexcept nogil:
    """c (n) += M @ vec (k), where the stored row-major matrix is M (n x k) when
    `row_major_is_rows`, else M^T (k x n)."""
    # Row-major (n x k) is column-major (k x n), to be transposed; row-major (k x n) is
    # column-major (n x k), used as it is.
    cdef char t = b'T' if row_major_is_rows else b'N'
    cdef int rows = k if row_major_is_rows else n
    cdef int cols = n if row_major_is_rows else k
    cdef int one = 1
    cdef real alpha = 1, beta = 1
    if real is float:
        sgemv(&t, &rows, &cols, &alpha, <float*>mat, &ld, <float*>vec, &one, &beta, c, &one)
    else:
        dgemv(&t, &rows, &cols, &alpha, <double*>mat, &ld, <double*>vec, &one, &beta, c, &one)


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
    if m == 1 or n == 1:
        # One row (batch 1) or one column of output: a matrix-vector product. OpenBLAS's
        # gemm runs these shapes up to ~10x slower than its gemv (measured, float32:
        # 1x784 @ 784x1024 took 160 us in sgemm, 17 us in sgemv).
        if beta == 0:  # some OpenBLAS versions scale y by beta = 0, keeping NaNs
            for i in range(<Py_ssize_t>m * n):
                c[i] = 0
        if m == 1:  # c = op(B)^T @ a; the one row of op(A) is contiguous either way
            _gemv(trans_b, k, n, ldb, b, a, c)
        else:       # c = op(A) @ b; the one column of op(B) is contiguous either way
            _gemv(not trans_a, k, m, lda, a, b, c)
        return
    if real is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef int _blas_int(Py_ssize_t n, str what) except -1:
    # BLAS takes 32-bit sizes; a larger one would silently wrap around.
    if n > INT_MAX:
        raise ValueError(f"{what}: a dimension of {n} exceeds the BLAS limit of {INT_MAX}")
    return <int>n


cdef int _expect(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t want_rows,
                 Py_ssize_t want_cols, str name) except -1:
    # backends/cython.py checks shapes with friendly messages; this keeps a direct call to
    # this module from writing out of bounds.
    if rows != want_rows or cols != want_cols:
        raise ValueError(f"{name}: expected shape ({want_rows}, {want_cols}), "
                         f"got ({rows}, {cols})")
    return 0


cdef inline const real* _ptr(const real[:, ::1] a) noexcept nogil:
    # &a[0, 0] is out of bounds for a 0-size array; BLAS never reads it then.
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef inline real* _out_ptr(real[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


def linear_forward(const real[:, ::1] x not None, const real[:, ::1] w not None,
                   const real[::1] b, real[:, ::1] out not None):
    """out = x @ w.T (+ b): the bias is written first and the product added with beta = 1.
    `b` may be None."""
    cdef int batch = _blas_int(x.shape[0], "x"), in_features = _blas_int(x.shape[1], "x")
    cdef int out_features = _blas_int(w.shape[0], "w")
    cdef Py_ssize_t i, j
    cdef real beta = 0
    cdef bint has_bias = b is not None
    _expect(w.shape[0], w.shape[1], out_features, in_features, "w")
    _expect(out.shape[0], out.shape[1], batch, out_features, "out")
    if has_bias:
        _expect(b.shape[0], 1, out_features, 1, "b")
    with nogil:
        if has_bias:
            beta = 1
            for i in range(batch):
                for j in range(out_features):
                    out[i, j] = b[j]
        _gemm(False, True, batch, out_features, in_features, _ptr(x), _ptr(w), beta,
              _out_ptr(out))


def linear_backward(const real[:, ::1] grad_out not None, const real[:, ::1] x not None,
                    const real[:, ::1] w not None, real[:, ::1] grad_x, real[:, ::1] grad_w,
                    bint accumulate):
    """grad_x (+)= grad_out @ w; grad_w (+)= grad_out.T @ x. Either output may be None."""
    cdef int batch = _blas_int(x.shape[0], "x"), in_features = _blas_int(x.shape[1], "x")
    cdef int out_features = _blas_int(w.shape[0], "w")
    cdef real beta = 1 if accumulate else 0
    cdef bint need_grad_x = grad_x is not None, need_grad_w = grad_w is not None
    _expect(w.shape[0], w.shape[1], out_features, in_features, "w")
    _expect(grad_out.shape[0], grad_out.shape[1], batch, out_features, "grad_out")
    if need_grad_x:
        _expect(grad_x.shape[0], grad_x.shape[1], batch, in_features, "grad_x")
    if need_grad_w:
        _expect(grad_w.shape[0], grad_w.shape[1], out_features, in_features, "grad_w")
    with nogil:
        if need_grad_x:
            _gemm(False, False, batch, in_features, out_features, _ptr(grad_out), _ptr(w),
                  beta, _out_ptr(grad_x))
        if need_grad_w:
            _gemm(True, False, out_features, in_features, batch, _ptr(grad_out), _ptr(x),
                  beta, _out_ptr(grad_w))


def matmul_backward(const real[:, ::1] grad_out not None, const real[:, ::1] a not None,
                    const real[:, ::1] b not None, real[:, ::1] grad_a, real[:, ::1] grad_b,
                    bint accumulate):
    """For out = a @ b: grad_a (+)= grad_out @ b.T; grad_b (+)= a.T @ grad_out.
    Either output may be None."""
    cdef int m = _blas_int(a.shape[0], "a"), k = _blas_int(a.shape[1], "a")
    cdef int n = _blas_int(b.shape[1], "b")
    cdef real beta = 1 if accumulate else 0
    cdef bint need_grad_a = grad_a is not None, need_grad_b = grad_b is not None
    _expect(b.shape[0], b.shape[1], k, n, "b")
    _expect(grad_out.shape[0], grad_out.shape[1], m, n, "grad_out")
    if need_grad_a:
        _expect(grad_a.shape[0], grad_a.shape[1], m, k, "grad_a")
    if need_grad_b:
        _expect(grad_b.shape[0], grad_b.shape[1], k, n, "grad_b")
    with nogil:
        if need_grad_a:
            _gemm(False, True, m, k, n, _ptr(grad_out), _ptr(b), beta, _out_ptr(grad_a))
        if need_grad_b:
            _gemm(True, False, k, n, m, _ptr(a), _ptr(grad_out), beta, _out_ptr(grad_b))


cdef void _column_sums(const real* g, Py_ssize_t rows, Py_ssize_t cols, real* out,
                       bint accumulate) noexcept nogil:
    """out[j] (+)= sum_i g[i, j], for g too large for BLAS's 32-bit sizes: a plain loop."""
    cdef Py_ssize_t i, j
    if not accumulate:
        for j in range(cols):
            out[j] = 0
    for i in range(rows):
        for j in range(cols):
            out[j] += g[i * cols + j]


def bias_backward(const real[:, ::1] grad_out not None, real[::1] out not None,
                  bint accumulate):
    """out (+)= grad_out.sum(0) = grad_out.T @ ones, on BLAS gemv."""
    cdef Py_ssize_t rows = grad_out.shape[0], cols = grad_out.shape[1], i, r0
    _expect(out.shape[0], 1, cols, 1, "out")
    cdef int m, n, lda, one = 1
    cdef real alpha = 1, beta = 1 if accumulate else 0
    cdef real* ones
    if cols == 0:
        return
    if rows == 0:
        if not accumulate:
            out[:] = 0
        return
    if cols > INT_MAX:
        with nogil:
            _column_sums(&grad_out[0, 0], rows, cols, &out[0], accumulate)
        return
    # Rows go in blocks that fit an int; each block after the first adds (beta = 1).
    n = <int>min(rows, INT_MAX)
    ones = <real*>malloc(n * sizeof(real))
    if ones == NULL:
        raise MemoryError("bias_backward: cannot allocate the vector of ones")
    m = lda = <int>cols
    with nogil:
        for i in range(n):
            ones[i] = 1
        if not accumulate:  # some OpenBLAS versions scale y by beta = 0, keeping NaNs
            for i in range(cols):
                out[i] = 0
        r0 = 0
        while r0 < rows:
            n = <int>min(rows - r0, INT_MAX)
            # Row-major grad_out is the column-major (cols x rows) matrix A: out = A @ ones.
            if real is float:
                sgemv(b"N", &m, &n, &alpha, <float*>&grad_out[r0, 0], &lda, ones, &one,
                      &beta, &out[0], &one)
            else:
                dgemv(b"N", &m, &n, &alpha, <double*>&grad_out[r0, 0], &lda, ones, &one,
                      &beta, &out[0], &one)
            beta = 1
            r0 += n
    free(ones)
