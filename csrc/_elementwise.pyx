# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Element-wise loops: sigmoid forward and backward, and the optimizers' updates.

The functions take ndarrays rather than typed memoryviews: acquiring a memoryview and
choosing a fused specialization cost more than the whole loop at small sizes. They check
dtype, size and the output's layout (_checks.pxi: memory safety, so that a direct call is
safe), and copy an input that is strided or unaligned; backends/cython.py has already
given the friendly errors.
"""
cimport numpy as cnp

cnp.import_array()

cdef extern from "_runtime.h":
    int cg_openmp_enabled() noexcept nogil
    int cg_default_threads() noexcept nogil
    int cg_on_fork_in_child(void (*handler)() noexcept nogil) noexcept nogil
    ctypedef void (*cg_task_t)(void* data, int i) noexcept nogil
    void cg_parallel(int n, cg_task_t body, void* data) noexcept nogil

cdef extern from "_sigmoid.h":
    # The forward's exp, in C so that it vectorizes (see the header).
    void cg_sigmoid_f(const float* x, float* out, Py_ssize_t n) noexcept nogil
    void cg_sigmoid_d(const double* x, double* out, Py_ssize_t n) noexcept nogil
    void cg_sigmoid_backward_f(const float* g, const float* y, float* out, Py_ssize_t n,
                               int accumulate) noexcept nogil
    void cg_sigmoid_backward_d(const double* g, const double* y, double* out, Py_ssize_t n,
                               int accumulate) noexcept nogil

cdef extern from "_update.h":
    # SGD's and Adam's updates, one pass per parameter (the header states the semantics).
    void cg_sgd_f(Py_ssize_t n, float* p, const float* g, float* buf, float lr,
                  float momentum, float one_minus_dampening, float weight_decay, float sign,
                  int nesterov, int first) noexcept nogil
    void cg_sgd_d(Py_ssize_t n, double* p, const double* g, double* buf, double lr,
                  double momentum, double one_minus_dampening, double weight_decay,
                  double sign, int nesterov, int first) noexcept nogil
    void cg_adam_f(Py_ssize_t n, float* p, const float* g, float* m, float* v,
                   float step_size, float beta1, float one_minus_beta1, float beta2,
                   float one_minus_beta2, float eps, float bias_correction2_sqrt) noexcept nogil
    void cg_adam_d(Py_ssize_t n, double* p, const double* g, double* m, double* v,
                   double step_size, double beta1, double one_minus_beta1, double beta2,
                   double one_minus_beta2, double eps,
                   double bias_correction2_sqrt) noexcept nogil

ctypedef fused real:
    float
    double

# Threads start only above this size: below it, waking a team that went to sleep during
# the products in between costs more than the loop (docs/threads.md, "Thresholds").
cdef Py_ssize_t PARALLEL_MIN = 1 << 18
parallel_min = PARALLEL_MIN  # for the tests, which check both sides of it

# Threads for the parallel loops. Kept here rather than in OpenMP's per-thread state,
# so a count set from one Python thread applies to kernels called from any thread.
cdef int num_threads = cg_default_threads()

# GNU OpenMP's thread pool does not survive fork: a child that starts a parallel loop after
# its parent ran one hangs. So a forked child (multiprocessing's default on Linux) runs the
# loops on one thread.
cdef bint forked = False


cdef void _after_fork_in_child() noexcept nogil:
    global num_threads, forked
    forked = True
    num_threads = 1


cg_on_fork_in_child(_after_fork_in_child)


def openmp_enabled() -> bool:
    """Was this module compiled with OpenMP?"""
    return bool(cg_openmp_enabled())


include "_openmp_runtime.pxi"


def get_num_threads() -> int:
    return num_threads


def default_threads() -> int:
    """OpenMP's default team: OMP_NUM_THREADS if set, else one thread per core (1 without
    OpenMP)."""
    return cg_default_threads()


def set_num_threads(int n) -> None:
    global num_threads
    num_threads = n if cg_openmp_enabled() and not forked else 1


include "_checks.pxi"


cdef cnp.ndarray _input(cnp.ndarray a, int typenum, Py_ssize_t n, str name):
    """`a` itself when C-contiguous and aligned, else an aligned C-ordered copy."""
    if _float_type(a, name) != typenum or cnp.PyArray_SIZE(a) != n:
        raise ValueError(f"{name}: expected the dtype and size of the first argument")
    if cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISALIGNED(a):
        return a
    return cnp.PyArray_NewCopy(a, cnp.NPY_CORDER)


cdef int _output(cnp.ndarray a, int typenum, Py_ssize_t n) except -1:
    if _float_type(a, "out") != typenum or cnp.PyArray_SIZE(a) != n:
        raise ValueError("out: expected the dtype and size of the first argument")
    if not (cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISALIGNED(a)
            and cnp.PyArray_ISWRITEABLE(a)):
        raise ValueError("out: expected a C-contiguous, aligned, writable array")
    return 0


cdef inline void _sigmoid_chunk(const real* x, real* out, Py_ssize_t n) noexcept nogil:
    if real is float:
        cg_sigmoid_f(x, out, n)
    else:
        cg_sigmoid_d(x, out, n)


cdef inline void _dsigmoid_chunk(const real* g, const real* y, real* out, Py_ssize_t n,
                                 bint accumulate) noexcept nogil:
    if real is float:
        cg_sigmoid_backward_f(g, y, out, n, accumulate)
    else:
        cg_sigmoid_backward_d(g, y, out, n, accumulate)


# The parallel loops: one contiguous chunk per thread, so each runs the vectorized loop.
# A chunk is a task of cg_parallel (_threads.h), which runs them on the OpenMP runtime in
# use; the arrays and their dtype travel as a struct.
ctypedef struct Chunks:
    const void* a
    const void* b
    void* out
    Py_ssize_t n, chunk
    bint single, accumulate  # single: float32


cdef inline Py_ssize_t _chunk_start(Chunks* c, int i, Py_ssize_t* length) noexcept nogil:
    cdef Py_ssize_t start = i * c.chunk
    length[0] = min(c.chunk, c.n - start) if start < c.n else 0
    return start


cdef void _forward_task(void* data, int i) noexcept nogil:
    cdef Chunks* c = <Chunks*>data
    cdef Py_ssize_t length, start = _chunk_start(c, i, &length)
    if length == 0:
        return
    if c.single:
        _sigmoid_chunk(<const float*>c.a + start, <float*>c.out + start, length)
    else:
        _sigmoid_chunk(<const double*>c.a + start, <double*>c.out + start, length)


cdef void _backward_task(void* data, int i) noexcept nogil:
    cdef Chunks* c = <Chunks*>data
    cdef Py_ssize_t length, start = _chunk_start(c, i, &length)
    if length == 0:
        return
    if c.single:
        _dsigmoid_chunk(<const float*>c.a + start, <const float*>c.b + start,
                        <float*>c.out + start, length, c.accumulate)
    else:
        _dsigmoid_chunk(<const double*>c.a + start, <const double*>c.b + start,
                        <double*>c.out + start, length, c.accumulate)


cdef void _sigmoid_forward(const real* x, real* out, Py_ssize_t n) noexcept nogil:
    cdef Chunks c
    if n < PARALLEL_MIN or num_threads == 1:
        _sigmoid_chunk(x, out, n)
        return
    c.a, c.b, c.out, c.n, c.accumulate = x, NULL, out, n, False
    c.single = real is float
    c.chunk = (n + num_threads - 1) // num_threads
    cg_parallel(num_threads, _forward_task, &c)


cdef void _sigmoid_backward(const real* g, const real* y, real* out, Py_ssize_t n,
                            bint accumulate) noexcept nogil:
    cdef Chunks c
    if n < PARALLEL_MIN or num_threads == 1:
        _dsigmoid_chunk(g, y, out, n, accumulate)
        return
    c.a, c.b, c.out, c.n, c.accumulate = g, y, out, n, accumulate
    c.single = real is float
    c.chunk = (n + num_threads - 1) // num_threads
    cg_parallel(num_threads, _backward_task, &c)


def sigmoid_forward(cnp.ndarray x not None, cnp.ndarray out not None):
    """out = sigmoid(x), element-wise; one dtype and size; out C-contiguous."""
    cdef int t = _float_type(x, "x")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    x = _input(x, t, n, "x")
    _output(out, t, n)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            _sigmoid_forward(<const float*>cnp.PyArray_DATA(x),
                             <float*>cnp.PyArray_DATA(out), n)
        else:
            _sigmoid_forward(<const double*>cnp.PyArray_DATA(x),
                             <double*>cnp.PyArray_DATA(out), n)


def sigmoid_backward(cnp.ndarray g not None, cnp.ndarray y not None, cnp.ndarray out not None,
                     bint accumulate):
    """out (+)= g * y * (1 - y), element-wise; one dtype and size; out C-contiguous."""
    cdef int t = _float_type(g, "g")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    g = _input(g, t, n, "g")
    y = _input(y, t, n, "y")
    _output(out, t, n)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            _sigmoid_backward(<const float*>cnp.PyArray_DATA(g),
                              <const float*>cnp.PyArray_DATA(y),
                              <float*>cnp.PyArray_DATA(out), n, accumulate)
        else:
            _sigmoid_backward(<const double*>cnp.PyArray_DATA(g),
                              <const double*>cnp.PyArray_DATA(y),
                              <double*>cnp.PyArray_DATA(out), n, accumulate)



# The optimizers' updates: one pass per parameter on the calling thread. They are
# memory-bound, and a parameter is rarely large enough for a team of threads to pay.
# These functions check everything the shared checks do (arrays of one dtype and shape,
# the written ones C-contiguous, aligned, writable and disjoint; scalars exactly Python
# floats or ints, flags exactly True or False), only more tersely, and before anything is
# written: backends/cython.py calls them first and words the error only when they refuse.

cdef bint _same_shape(cnp.ndarray a, cnp.ndarray b) noexcept:
    cdef int i, nd = cnp.PyArray_NDIM(a)
    if nd != cnp.PyArray_NDIM(b):
        return False
    for i in range(nd):
        if cnp.PyArray_DIMS(a)[i] != cnp.PyArray_DIMS(b)[i]:
            return False
    return True


cdef int _like_p(object a, cnp.ndarray p, int typenum, str name) except -1:
    if _float_type(a, name) != typenum or not _same_shape(<cnp.ndarray>a, p):
        raise ValueError(f"{name}: expected the dtype and shape of p")
    return 0


cdef int _written(object a, cnp.ndarray p, int typenum, str name) except -1:
    """`a` is an array the update writes: like p, C-contiguous, aligned, writable."""
    _like_p(a, p, typenum, name)
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if not (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISWRITEABLE(arr)):
        raise ValueError(f"{name}: expected a C-contiguous, aligned, writable array")
    return 0


cdef inline bint _overlap(cnp.ndarray a, cnp.ndarray b) noexcept:
    """Do two C-contiguous arrays share a byte? (Never when one is empty.)"""
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    return a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a)


cdef int _disjoint(cnp.ndarray a, cnp.ndarray b, str name, str other) except -1:
    if _overlap(a, b):
        raise ValueError(f"{name}: overlaps {other}; each array the update writes must be "
                         f"its own")
    return 0


cdef cnp.ndarray _gradient(object g, cnp.ndarray p, int typenum, tuple written):
    """g as the loop reads it: like p, C-contiguous and aligned, and a copy if it shares
    memory with an array the update writes (so it is read as it was when the call began)."""
    _like_p(g, p, typenum, "g")
    cdef cnp.ndarray arr = <cnp.ndarray>g
    if not (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)):
        return cnp.PyArray_NewCopy(arr, cnp.NPY_CORDER)
    for a in written:
        if a is not None and _overlap(arr, <cnp.ndarray>a):
            return cnp.PyArray_NewCopy(arr, cnp.NPY_CORDER)
    return arr


cdef double _real(object x, str name) except? -1:
    # Exactly float or int: a bool or a NumPy scalar is the shared checks' to judge.
    if type(x) is float or type(x) is int:
        return x
    raise TypeError(f"{name}: expected a Python float or int")


cdef bint _flag(object x, str name) except -1:
    if x is True or x is False:
        return x is True
    raise TypeError(f"{name}: expected True or False")


def sgd_update(cnp.ndarray p not None, g, buf, lr, momentum, dampening, weight_decay,
               nesterov, maximize, first):
    """torch.optim.SGD's update of p (and of buf when momentum != 0), in place, one pass
    (_update.h states the formula). Scalars are rounded to p's dtype, 1 - dampening after
    it is computed in double. buf may be None when momentum == 0 and is then not
    touched."""
    cdef int t = _float_type(p, "p")
    _written(p, p, t, "p")
    cdef double lr_, momentum_ = _real(momentum, "momentum")
    cdef double one_minus_dampening = 1.0 - _real(dampening, "dampening")
    cdef double weight_decay_ = _real(weight_decay, "weight_decay")
    lr_ = _real(lr, "lr")
    cdef bint nesterov_ = _flag(nesterov, "nesterov"), first_ = _flag(first, "first")
    cdef double sign = -1.0 if _flag(maximize, "maximize") else 1.0
    cdef void* bp = NULL
    if buf is not None:
        _written(buf, p, t, "buf")
        _disjoint(<cnp.ndarray>buf, p, "buf", "p")
        bp = cnp.PyArray_DATA(<cnp.ndarray>buf)
    elif momentum_ != 0:
        raise ValueError("buf: required when momentum != 0")
    cdef cnp.ndarray gc = _gradient(g, p, t, (p, buf))
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef void* pp = cnp.PyArray_DATA(p)
    cdef const void* gp = cnp.PyArray_DATA(gc)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            cg_sgd_f(n, <float*>pp, <const float*>gp, <float*>bp, <float>lr_,
                     <float>momentum_, <float>one_minus_dampening, <float>weight_decay_,
                     <float>sign, nesterov_, first_)
        else:
            cg_sgd_d(n, <double*>pp, <const double*>gp, <double*>bp, lr_, momentum_,
                     one_minus_dampening, weight_decay_, sign, nesterov_, first_)


def adam_update(cnp.ndarray p not None, g, m, v, step_size, beta1, beta2, eps,
                bias_correction2_sqrt):
    """Adam's update of m, v and p, in place, one pass (_update.h states the formula).
    Scalars are rounded to p's dtype, 1 - beta1 and 1 - beta2 after they are computed in
    double."""
    cdef int t = _float_type(p, "p")
    _written(p, p, t, "p")
    _written(m, p, t, "m")
    _written(v, p, t, "v")
    _disjoint(m, p, "m", "p")
    _disjoint(v, p, "v", "p")
    _disjoint(v, m, "v", "m")
    cdef double step_size_ = _real(step_size, "step_size")
    cdef double beta1_ = _real(beta1, "beta1"), beta2_ = _real(beta2, "beta2")
    cdef double eps_ = _real(eps, "eps")
    cdef double bc2 = _real(bias_correction2_sqrt, "bias_correction2_sqrt")
    cdef cnp.ndarray gc = _gradient(g, p, t, (p, m, v))
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef void* pp = cnp.PyArray_DATA(p)
    cdef const void* gp = cnp.PyArray_DATA(gc)
    cdef void* mp = cnp.PyArray_DATA(<cnp.ndarray>m)
    cdef void* vp = cnp.PyArray_DATA(<cnp.ndarray>v)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            cg_adam_f(n, <float*>pp, <const float*>gp, <float*>mp, <float*>vp,
                      <float>step_size_, <float>beta1_, <float>(1.0 - beta1_), <float>beta2_,
                      <float>(1.0 - beta2_), <float>eps_, <float>bc2)
        else:
            cg_adam_d(n, <double*>pp, <const double*>gp, <double*>mp, <double*>vp,
                      step_size_, beta1_, 1.0 - beta1_, beta2_, 1.0 - beta2_, eps_, bc2)
