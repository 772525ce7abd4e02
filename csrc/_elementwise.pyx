# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Element-wise and reduction loops: sigmoid forward/backward, bias gradient.

backends/cython.py has already checked dtype, shape, contiguity and overlap, and
flattened every array, so the loops here trust their arguments.
"""
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

cdef extern from "_threads.h":
    int cg_openmp_enabled() noexcept nogil
    int cg_default_threads() noexcept nogil

cdef extern from "_sigmoid.h":
    # The forward's exp, in C so that it vectorizes (see the header).
    void cg_sigmoid_f(const float* x, float* out, Py_ssize_t n) noexcept nogil
    void cg_sigmoid_d(const double* x, double* out, Py_ssize_t n) noexcept nogil

ctypedef fused real:
    float
    double

# Below ~32K elements, starting threads costs more than the loop (measured).
cdef Py_ssize_t PARALLEL_MIN = 32768
# A column tile of the bias reduction: its running sums (8 KiB of float32) stay in L1.
cdef Py_ssize_t COLUMN_TILE = 2048

# Threads for the parallel loops. Kept here rather than in OpenMP's per-thread state,
# so a count set from one Python thread applies to kernels called from any thread.
cdef int num_threads = cg_default_threads()


def openmp_enabled() -> bool:
    """Was this module compiled with OpenMP?"""
    return bool(cg_openmp_enabled())


def get_num_threads() -> int:
    return num_threads


def set_num_threads(int n) -> None:
    global num_threads
    num_threads = n if cg_openmp_enabled() else 1


cdef inline real _dsigmoid(real g, real y) noexcept nogil:
    return g * y * (1 - y)


cdef inline void _sigmoid(const real* x, real* out, Py_ssize_t n) noexcept nogil:
    if real is float:
        cg_sigmoid_f(x, out, n)
    else:
        cg_sigmoid_d(x, out, n)


def sigmoid_forward(const real[::1] x, real[::1] out):
    cdef Py_ssize_t n = x.shape[0], chunk, start, c, nchunks
    if n == 0:
        return
    if n < PARALLEL_MIN or num_threads == 1:
        with nogil:
            _sigmoid(&x[0], &out[0], n)
    else:
        # One contiguous chunk per thread, so each runs the vectorized loop.
        nchunks = num_threads
        chunk = (n + nchunks - 1) // nchunks
        for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
            start = c * chunk
            if start < n:
                _sigmoid(&x[start], &out[start], min(chunk, n - start))


def sigmoid_backward(const real[::1] g, const real[::1] y, real[::1] out, bint accumulate):
    cdef Py_ssize_t i, n = g.shape[0]
    if n < PARALLEL_MIN or num_threads == 1:
        with nogil:
            for i in range(n):
                out[i] = _dsigmoid(g[i], y[i]) + (out[i] if accumulate else 0)
    else:
        for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
            out[i] = _dsigmoid(g[i], y[i]) + (out[i] if accumulate else 0)


cdef inline void _column_sums(const real* g, Py_ssize_t row_start, Py_ssize_t row_stop,
                              Py_ssize_t row_len, real* dst, Py_ssize_t col_start,
                              Py_ssize_t col_stop, bint accumulate) noexcept nogil:
    """dst[j] (+)= sum of g[i, j] over rows [row_start, row_stop), for j in the column range.
    Row by row, so the inner loop is contiguous and vectorizes."""
    cdef Py_ssize_t i, j
    cdef const real* row
    if not accumulate:
        for j in range(col_start, col_stop):
            dst[j] = 0
    for i in range(row_start, row_stop):
        row = g + i * row_len
        for j in range(col_start, col_stop):
            dst[j] += row[j]


def bias_backward(const real[:, ::1] g, real[::1] out, bint accumulate):
    """out[j] (+)= sum_i g[i, j]."""
    cdef Py_ssize_t rows = g.shape[0], cols = g.shape[1]
    cdef Py_ssize_t t, ntiles, tile, chunk, nchunks, j
    cdef const real* gp
    cdef real* partial
    cdef real s
    if cols == 0:
        return
    if rows == 0:
        if not accumulate:
            out[:] = 0
        return
    gp = &g[0, 0]
    if rows * cols < PARALLEL_MIN or num_threads == 1:
        with nogil:
            _column_sums(gp, 0, rows, cols, &out[0], 0, cols, accumulate)
    elif cols >= 2 * 16 * num_threads:
        # Wide: each thread owns whole column tiles and writes `out` directly, no temporary.
        tile = min(COLUMN_TILE, (cols + num_threads - 1) // num_threads)
        ntiles = (cols + tile - 1) // tile
        for t in prange(ntiles, nogil=True, schedule="static", num_threads=num_threads):
            _column_sums(gp, 0, rows, cols, &out[0], t * tile, min(cols, (t + 1) * tile),
                         accumulate)
    else:
        # Tall and narrow: each thread sums a block of rows into its own partial row
        # (num_threads * cols elements, small because cols is), then the partials are added.
        nchunks = num_threads
        partial = <real*>malloc(nchunks * cols * sizeof(real))
        if partial == NULL:
            raise MemoryError("bias_backward: cannot allocate per-thread partial sums")
        chunk = (rows + nchunks - 1) // nchunks
        for t in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
            _column_sums(gp, min(rows, t * chunk), min(rows, (t + 1) * chunk), cols,
                         partial + t * cols, 0, cols, False)
        with nogil:
            for j in range(cols):
                s = out[j] if accumulate else 0
                for t in range(nchunks):
                    s = s + partial[t * cols + j]
                out[j] = s
        free(partial)
