# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Matrix-product kernels on BLAS (gemm/gemv), and the optimizers' update on axpy; GIL
released.

Arrays are row-major (C-contiguous) and already checked by backends/cython.py. BLAS is
column-major; a row-major matrix is the column-major matrix of its transpose, so
C = op(A) @ op(B) is computed as C^T = op(B)^T @ op(A)^T with the operands swapped.
`accumulate` is BLAS's beta = 1: the product is added into C without a temporary.
The bias gradient, a sum over rows, is a matrix-vector product with a vector of ones.

Which BLAS, and whose threads run it, is cygrad/runtime.py's choice; the calls go through
_runtime.h (gemm, gemv, axpy on either integer interface; small work on this thread).
The compiled step's program (_plan.pxi) lives here too: its records call these loops.
Until `use_blas` has run, every kernel raises.
"""
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cimport numpy as cnp

cnp.import_array()

cdef extern from "_runtime.h":
    void cg_blas_use(void* const* routines, int ilp64) noexcept nogil
    int64_t cg_blas_max() noexcept nogil
    void cg_gemm_f(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                   float* c, int64_t ldc) noexcept nogil
    void cg_gemm_d(char ta, char tb, int64_t m, int64_t n, int64_t k, double alpha,
                   const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                   double* c, int64_t ldc) noexcept nogil
    void cg_gemv_f(char t, int64_t m, int64_t n, float alpha, const float* a, int64_t lda,
                   const float* x, float beta, float* y) noexcept nogil
    void cg_gemv_d(char t, int64_t m, int64_t n, double alpha, const double* a,
                   int64_t lda, const double* x, double beta, double* y) noexcept nogil
    void cg_axpy_f(int64_t n, float alpha, const float* x, float* y) noexcept nogil
    void cg_axpy_d(int64_t n, double alpha, const double* x, double* y) noexcept nogil
    int64_t CG_SMALL_WORK
    void cg_outer_f(int64_t m, int64_t n, const float* a, const float* b, int accumulate,
                    float* c) noexcept nogil
    void cg_outer_d(int64_t m, int64_t n, const double* a, const double* b, int accumulate,
                    double* c) noexcept nogil
    void cg_blas_threads_use(void* setter) noexcept nogil
    int cg_blas_threads_in_use() noexcept nogil
    void* cg_blas_threads_callback() noexcept nogil

ctypedef fused real:
    float
    double

ctypedef int64_t blasint  # sizes travel as 64-bit ints; cg_blas_max() bounds them

cdef str _blas_name = None
cdef bint _small_matrix_kernels = False


def use_blas(str name not None, addresses, bint ilp64):
    """Route every product through the BLAS `name`, given `addresses`: the integer
    addresses of its Fortran routines sgemm, dgemm, sgemv, dgemv, saxpy and daxpy, which
    must stay loaded, with 64-bit integers (`ilp64`) or 32-bit ones. Chosen by
    cygrad/runtime.py; not while kernels run. Small-matrix kernels are off until
    `use_small_matrix_kernels` says the BLAS has them."""
    global _blas_name, _small_matrix_kernels
    cdef void* routines[6]
    if addresses is None or len(addresses) != 6 or not all(
            isinstance(p, int) and p > 0 for p in addresses):
        raise ValueError("addresses: expected six nonzero int addresses "
                         "(sgemm, dgemm, sgemv, dgemv, saxpy, daxpy)")
    for i in range(6):
        routines[i] = <void*><size_t>addresses[i]
    cg_blas_use(routines, ilp64)
    _blas_name = name
    _small_matrix_kernels = False


def use_small_matrix_kernels(bint enable):
    """Whether the BLAS in use runs products of up to a million multiply-adds without
    packing its operands (OpenBLAS on AVX-512 cores): then a few rows against a large
    transposed matrix run in blocks of that size (_gemm). Set by cygrad/runtime.py after
    `use_blas`; not while kernels run."""
    global _small_matrix_kernels
    _small_matrix_kernels = enable


def small_matrix_kernels() -> bool:
    """The setting of `use_small_matrix_kernels`."""
    return _small_matrix_kernels


def share_blas_threads(size_t threads_setter):
    """Hand the BLAS's parallel jobs to this module's OpenMP threads through
    `threads_setter`, the address of its openblas_set_threads_callback_function; 0 takes
    the callback out again, leaving the BLAS on its own pool. The opt-in of
    cygrad.runtime.share_threads; not while products run."""
    cg_blas_threads_use(<void*>threads_setter)


def blas_in_use():
    """(name, largest size it takes) of the BLAS the products call; (None, 0) before
    `use_blas`."""
    return _blas_name, (cg_blas_max() if _blas_name is not None else 0)


include "_openmp_runtime.pxi"


def threads_callback() -> int:
    """The address of the callback `share_blas_threads` installs in the BLAS (0 in a build
    without OpenMP), so that cygrad/runtime.py can tell it from someone else's."""
    return <size_t>cg_blas_threads_callback()


def blas_threads() -> str:
    """Whose threads run the products' parallel jobs: "openmp" (shared) or "blas" (the
    library's own pool: the default, and always without OpenMP, with a BLAS that has no
    callback, or in a forked child)."""
    return "openmp" if cg_blas_threads_in_use() else "blas"


cdef int _require_blas() except -1:
    if _blas_name is None:
        raise RuntimeError("no BLAS chosen yet: import cygrad, which chooses one "
                           "(cygrad/runtime.py)")
    return 0


cdef inline void _gemv(bint row_major_is_rows, blasint k, blasint n, blasint ld, const real* mat,
                       const real* vec, real* c) noexcept nogil:
    """c (n) += M @ vec (k), where the stored row-major matrix is M (n x k) when
    `row_major_is_rows`, else M^T (k x n)."""
    # Row-major (n x k) is column-major (k x n), to be transposed; row-major (k x n) is
    # column-major (n x k), used as it is.
    cdef char t = b'T' if row_major_is_rows else b'N'
    cdef blasint rows = k if row_major_is_rows else n
    cdef blasint cols = n if row_major_is_rows else k
    if real is float:
        cg_gemv_f(t, rows, cols, 1, mat, ld, vec, 1, c)
    else:
        cg_gemv_d(t, rows, cols, 1, mat, ld, vec, 1, c)


cdef inline void _gemm(bint trans_a, bint trans_b, blasint m, blasint n, blasint k,
                       const real* a, const real* b, real beta, real* c) noexcept nogil:
    """Row-major C (m x n) = op(A) (m x k) @ op(B) (k x n) + beta * C."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    # Leading dimensions of the stored (row-major) arrays; BLAS wants them >= 1.
    cdef blasint lda = max(1, m if trans_a else k)
    cdef blasint ldb = max(1, k if trans_b else n)
    cdef blasint ldc = max(1, n)
    cdef Py_ssize_t i, j
    if m == 0 or n == 0:
        return
    if k == 0:  # an empty sum: BLAS implementations differ on whether they touch C
        if beta == 0:
            for i in range(<Py_ssize_t>m * n):
                c[i] = 0
        return
    if k == 1 and <int64_t>m * n < CG_SMALL_WORK:
        # An outer product (a weight's gradient at batch 1): both operands are contiguous
        # vectors whatever the transposes, and one pass writes c.
        if real is float:
            cg_outer_f(m, n, a, b, beta != 0, c)
        else:
            cg_outer_d(m, n, a, b, beta != 0, c)
        return
    if m == 1 or n == 1:
        # One row (batch 1) or one column of output: a matrix-vector product, which
        # OpenBLAS's gemm runs far slower than its gemv (docs/threads.md, "Thresholds").
        if beta == 0:  # some OpenBLAS versions scale y by beta = 0, keeping NaNs
            for i in range(<Py_ssize_t>m * n):
                c[i] = 0
        if m == 1:  # c = op(B)^T @ a; the one row of op(A) is contiguous either way
            _gemv(trans_b, k, n, ldb, b, a, c)
        else:       # c = op(A) @ b; the one column of op(B) is contiguous either way
            _gemv(not trans_a, k, m, lda, a, b, c)
        return
    # Blocks of rows and columns, each its own BLAS call; the whole product by default.
    cdef blasint rows = m, cols = n
    cdef int64_t work = <int64_t>m * n * k
    if k <= _SHORT_INNER and CG_SMALL_WORK <= work <= _SPLIT_WORK:
        # A short inner size (a weight's gradient over a small batch): OpenBLAS wakes its
        # threads above CG_SMALL_WORK multiply-adds, and on such a product they cost more
        # than they save (docs/threads.md, "Thresholds"). Blocks of rows under that size
        # run on the calling thread.
        rows = max(1, (CG_SMALL_WORK - 1) // (<int64_t>n * k))
    elif (_small_matrix_kernels and trans_b and not trans_a
          and m * sizeof(real) <= _FEW_ROWS_BYTES and k >= _FEW_ROWS_MIN_INNER
          and _SMALL_KERNEL_WORK < work <= _BLOCKS_WORK):
        # A few rows against a transposed matrix (a layer's forward over a small batch):
        # whole, the BLAS packs the large operand on every call; in blocks of columns its
        # small-matrix kernels read it where it lies (docs/threads.md, "Thresholds").
        # Their limits for this transpose: a million multiply-adds, an output block of
        # _SMALL_KERNEL_MAX_OUTPUT elements.
        cols = max(1, min(_SMALL_KERNEL_WORK // (<int64_t>m * k), _SMALL_KERNEL_MAX_OUTPUT // m))
    i = 0
    while i < m:
        j = 0
        while j < n:
            if real is float:
                cg_gemm_f(tb, ta, min(cols, n - j), min(rows, m - i), k, 1,
                          b + (j * ldb if trans_b else j), ldb,
                          a + (i if trans_a else i * lda), lda, beta, c + i * ldc + j, ldc)
            else:
                cg_gemm_d(tb, ta, min(cols, n - j), min(rows, m - i), k, 1,
                          b + (j * ldb if trans_b else j), ldb,
                          a + (i if trans_a else i * lda), lda, beta, c + i * ldc + j, ldc)
            j += cols
        i += rows


cdef enum:
    _SHORT_INNER = 16      # inner sizes up to this, and
    _SPLIT_WORK = 1 << 22  # products up to this many multiply-adds, run in blocks
    # A few rows against a transposed matrix run in blocks where they have at most 64
    # bytes a column (16 float32 or 8 float64 rows), an inner size of at least 128 and up
    # to 2^23 multiply-adds: the shapes where blocks were measured to pay (docs/threads.md).
    _FEW_ROWS_BYTES = 64
    _FEW_ROWS_MIN_INNER = 128
    _BLOCKS_WORK = 1 << 23
    # OpenBLAS's small-matrix kernels (SkylakeX) for a transposed first operand of the
    # column-major call: at most this many multiply-adds and output elements.
    _SMALL_KERNEL_WORK = 1000000
    _SMALL_KERNEL_MAX_OUTPUT = 1200


cdef blasint _blas_int(Py_ssize_t n, str what) except -1:
    # SciPy's BLAS takes 32-bit sizes; a larger one would silently wrap around.
    if n > cg_blas_max():
        raise ValueError(f"{what}: a dimension of {n} exceeds the BLAS limit of "
                         f"{cg_blas_max()}")
    return <blasint>n


# The functions below take ndarrays rather than typed memoryviews: acquiring a memoryview
# costs more than a batch-1 product. Their checks are the memory-safety layer
# (_checks.pxi); backends/cython.py has given the friendly errors and made inputs contiguous.
include "_checks.pxi"


cdef int _expect(cnp.ndarray a, Py_ssize_t want_rows, Py_ssize_t want_cols,
                 str name) except -1:
    cdef Py_ssize_t rows = cnp.PyArray_DIM(a, 0)
    cdef Py_ssize_t cols = cnp.PyArray_DIM(a, 1) if cnp.PyArray_NDIM(a) > 1 else 1
    if rows != want_rows or cols != want_cols:
        raise ValueError(f"{name}: expected shape ({want_rows}, {want_cols}), "
                         f"got {(<object>a).shape}")
    return 0


cdef inline void* _data(object a) noexcept:
    """The first element of an ndarray, or NULL for None."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef void _fill_rows(void* out, const void* row, Py_ssize_t rows,
                     size_t row_bytes) noexcept nogil:
    """Copy `row` into each of the `rows` rows of `out`."""
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(<char*>out + i * row_bytes, row, row_bytes)


cdef void _product(int t, bint trans_a, bint trans_b, blasint m, blasint n, blasint k,
                   const void* a, const void* b, bint accumulate, void* c) noexcept nogil:
    """_gemm on the data of arrays of NumPy type `t`, float32 or float64: C (+)= A @ B."""
    if t == cnp.NPY_FLOAT32:
        _gemm(trans_a, trans_b, m, n, k, <const float*>a, <const float*>b,
              <float>accumulate, <float*>c)
    else:
        _gemm(trans_a, trans_b, m, n, k, <const double*>a, <const double*>b,
              <double>accumulate, <double*>c)


def linear_forward(cnp.ndarray x not None, cnp.ndarray w not None, object b,
                   cnp.ndarray out not None):
    """out = x @ w.T (+ b): the bias is written first and the product added with beta = 1.
    `b` may be None."""
    _require_blas()
    cdef int t = _float_type(x, "x")
    _check(x, t, 2, False, "x")
    _check(w, t, 2, False, "w")
    _check(out, t, 2, True, "out")
    cdef blasint batch = _blas_int(x.shape[0], "x"), in_features = _blas_int(x.shape[1], "x")
    cdef blasint out_features = _blas_int(w.shape[0], "w")
    cdef bint has_bias = b is not None
    _expect(w, out_features, in_features, "w")
    _expect(out, batch, out_features, "out")
    if has_bias:
        _check(b, t, 1, False, "b")
        _expect(b, out_features, 1, "b")
    cdef void* xp = _data(x)
    cdef void* wp = _data(w)
    cdef void* bp = _data(b)
    cdef void* op = _data(out)
    cdef size_t row_bytes = out_features * cnp.PyArray_ITEMSIZE(out)
    with nogil:
        if has_bias:
            _fill_rows(op, bp, batch, row_bytes)
        _product(t, False, True, batch, out_features, in_features, xp, wp, has_bias, op)


def linear_backward(cnp.ndarray grad_out not None, cnp.ndarray x not None,
                    cnp.ndarray w not None, object grad_x, object grad_w, bint accumulate):
    """grad_x (+)= grad_out @ w; grad_w (+)= grad_out.T @ x. Either output may be None."""
    _require_blas()
    cdef int t = _float_type(grad_out, "grad_out")
    _check(grad_out, t, 2, False, "grad_out")
    _check(x, t, 2, False, "x")
    _check(w, t, 2, False, "w")
    cdef blasint batch = _blas_int(x.shape[0], "x"), in_features = _blas_int(x.shape[1], "x")
    cdef blasint out_features = _blas_int(w.shape[0], "w")
    cdef bint need_grad_x = grad_x is not None, need_grad_w = grad_w is not None
    _expect(w, out_features, in_features, "w")
    _expect(grad_out, batch, out_features, "grad_out")
    if need_grad_x:
        _check(grad_x, t, 2, True, "grad_x")
        _expect(grad_x, batch, in_features, "grad_x")
    if need_grad_w:
        _check(grad_w, t, 2, True, "grad_w")
        _expect(grad_w, out_features, in_features, "grad_w")
    cdef void* gp = _data(grad_out)
    cdef void* xp = _data(x)
    cdef void* wp = _data(w)
    cdef void* gxp = _data(grad_x)
    cdef void* gwp = _data(grad_w)
    with nogil:
        if need_grad_x:
            _product(t, False, False, batch, in_features, out_features, gp, wp, accumulate,
                     gxp)
        if need_grad_w:
            _product(t, True, False, out_features, in_features, batch, gp, xp, accumulate,
                     gwp)


def matmul_backward(cnp.ndarray grad_out not None, cnp.ndarray a not None,
                    cnp.ndarray b not None, object grad_a, object grad_b, bint accumulate):
    """For out = a @ b: grad_a (+)= grad_out @ b.T; grad_b (+)= a.T @ grad_out.
    Either output may be None."""
    _require_blas()
    cdef int t = _float_type(grad_out, "grad_out")
    _check(grad_out, t, 2, False, "grad_out")
    _check(a, t, 2, False, "a")
    _check(b, t, 2, False, "b")
    cdef blasint m = _blas_int(a.shape[0], "a"), k = _blas_int(a.shape[1], "a")
    cdef blasint n = _blas_int(b.shape[1], "b")
    cdef bint need_grad_a = grad_a is not None, need_grad_b = grad_b is not None
    _expect(b, k, n, "b")
    _expect(grad_out, m, n, "grad_out")
    if need_grad_a:
        _check(grad_a, t, 2, True, "grad_a")
        _expect(grad_a, m, k, "grad_a")
    if need_grad_b:
        _check(grad_b, t, 2, True, "grad_b")
        _expect(grad_b, k, n, "grad_b")
    cdef void* gp = _data(grad_out)
    cdef void* ap = _data(a)
    cdef void* bp = _data(b)
    cdef void* gap = _data(grad_a)
    cdef void* gbp = _data(grad_b)
    with nogil:
        if need_grad_a:
            _product(t, False, True, m, k, n, gp, bp, accumulate, gap)
        if need_grad_b:
            _product(t, True, False, k, n, m, ap, gp, accumulate, gbp)


# Rows of the bias gradient per gemv call: bounds the vector of ones (4 MiB in float32).
cdef Py_ssize_t BIAS_BLOCK_ROWS = 1 << 20


cdef void _column_sums(const real* g, Py_ssize_t rows, Py_ssize_t cols, real* out,
                       bint accumulate) noexcept nogil:
    """out[j] (+)= sum_i g[i, j], for g too wide for the BLAS in use: a plain loop."""
    cdef Py_ssize_t i, j
    if not accumulate:
        for j in range(cols):
            out[j] = 0
    for i in range(rows):
        for j in range(cols):
            out[j] += g[i * cols + j]


cdef int _bias_backward(const real* g, Py_ssize_t rows, Py_ssize_t cols, real* out,
                        bint accumulate) except -1 nogil:
    """out (+)= column sums of the row-major (rows x cols) g: g^T @ ones on gemv."""
    cdef Py_ssize_t i, r0
    cdef blasint m, n, lda
    cdef real alpha = 1, beta = 1 if accumulate else 0
    cdef real* ones
    if cols == 0:
        return 0
    if rows == 0 or cols > cg_blas_max():
        _column_sums(g, rows, cols, out, accumulate)
        return 0
    # Rows go in blocks; each block after the first adds (beta = 1).
    n = <blasint>min(rows, BIAS_BLOCK_ROWS)
    ones = <real*>malloc(n * sizeof(real))
    if ones == NULL:
        with gil:
            raise MemoryError("bias_backward: cannot allocate the vector of ones")
    for i in range(n):
        ones[i] = 1
    if not accumulate:  # some OpenBLAS versions scale y by beta = 0, keeping NaNs
        for i in range(cols):
            out[i] = 0
    m = lda = <blasint>cols
    r0 = 0
    while r0 < rows:
        n = <blasint>min(rows - r0, BIAS_BLOCK_ROWS)
        # Row-major g is the column-major (cols x rows) matrix A: out = A @ ones.
        if real is float:
            cg_gemv_f(b'N', m, n, alpha, g + r0 * cols, lda, ones, beta, out)
        else:
            cg_gemv_d(b'N', m, n, alpha, g + r0 * cols, lda, ones, beta, out)
        beta = 1
        r0 += n
    free(ones)
    return 0


def bias_backward(cnp.ndarray grad_out not None, cnp.ndarray out not None,
                  bint accumulate):
    """out (+)= grad_out.sum(0) = grad_out.T @ ones, on BLAS gemv."""
    _require_blas()
    cdef int t = _float_type(grad_out, "grad_out")
    _check(grad_out, t, 2, False, "grad_out")
    _check(out, t, 1, True, "out")
    cdef Py_ssize_t rows = grad_out.shape[0], cols = grad_out.shape[1]
    _expect(out, cols, 1, "out")
    cdef void* gp = _data(grad_out)
    cdef void* op = _data(out)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            _bias_backward(<const float*>gp, rows, cols, <float*>op, accumulate)
        else:
            _bias_backward(<const double*>gp, rows, cols, <double*>op, accumulate)


cdef void _axpy(real* y, const real* x, real alpha, Py_ssize_t n) noexcept nogil:
    """y += alpha * x."""
    if real is float:
        cg_axpy_f(n, alpha, x, y)
    else:
        cg_axpy_d(n, alpha, x, y)


def add_scaled(cnp.ndarray out not None, cnp.ndarray x not None, double alpha):
    """out += alpha * x (an optimizer's p -= lr * g) on BLAS axpy: one pass, no temporary,
    on the BLAS threads, which are awake after the products of the backward. Same dtype
    and size, both C-contiguous; x may be out itself but must not overlap it otherwise.
    alpha is rounded to the dtype first, as NumPy does with a Python float."""
    _require_blas()
    cdef int t = _float_type(out, "out")
    _check(out, t, cnp.PyArray_NDIM(out), True, "out")
    _check(x, t, cnp.PyArray_NDIM(x), False, "x")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(out)
    if cnp.PyArray_SIZE(x) != n:
        raise ValueError(f"x: expected {n} elements like out, got {cnp.PyArray_SIZE(x)}")
    cdef void* op = _data(out)
    cdef void* xp = _data(x)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            _axpy(<float*>op, <const float*>xp, <float>alpha, n)
        else:
            _axpy(<double*>op, <const double*>xp, alpha, n)


include "_plan.pxi"
