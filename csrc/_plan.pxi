# A compiled step's plan as a program (included by _linear.pyx, whose products and bias
# reduction it calls): a flat array of kernel records, built once by
# cygrad/compile/plan.py, that `run()` executes in one loop with the GIL released. Each
# record calls the very loop the eager op calls, on the same buffers, so a replay gives
# the eager results bit for bit (but for the MSE loss's own value, summed here in double,
# which no gradient reads). A step of which some ops have no record keeps them as
# Python calls between runs of records; the GIL is taken back only there. SCALE and
# SOFTMAX_LOG_LOSS have no eager op: they serve scikit-learn's perceptrons
# (cygrad/sklearn/_program.py), and their tests hold them to NumPy's formulas.

from libc.float cimport DBL_EPSILON, FLT_EPSILON
from libc.math cimport log
from libc.stdint cimport uintptr_t
from libc.stdlib cimport realloc
from libc.string cimport memset
from numpy import copyto as np_copyto


cdef extern from "_sigmoid.h":
    float cg_exp_nonpositive_f(float x) noexcept nogil
    double cg_exp_nonpositive_d(double x) noexcept nogil
    void cg_sigmoid_f(const float* x, float* out, Py_ssize_t n) noexcept nogil
    void cg_sigmoid_d(const double* x, double* out, Py_ssize_t n) noexcept nogil
    void cg_sigmoid_backward_f(const float* g, const float* y, float* out, Py_ssize_t n,
                               int accumulate) noexcept nogil
    void cg_sigmoid_backward_d(const double* g, const double* y, double* out, Py_ssize_t n,
                               int accumulate) noexcept nogil

cdef extern from "_update.h":
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


cdef enum Code:
    CALL             # calls[m](), with the GIL
    PRODUCT          # c (+)= op(a) @ op(b): (m x k) @ (k x n); flags: trans_a, trans_b, acc
    FILL_ROWS        # each of the m rows of c = the n-vector a
    ZERO             # c[:n] = 0
    COPY             # c[:n] (+)= a[:n]
    SIGMOID          # c = sigmoid(a)
    SIGMOID_BACKWARD  # c (+)= a * b * (1 - b), a the gradient, b the output
    RELU             # c = a where a > 0 or a is NaN, else +0 (np.maximum(a, 0))
    RELU_BACKWARD    # c (+)= 0 where b <= 0, else a; a the gradient, b the input
    BIAS_BACKWARD    # c (n) (+)= column sums of a (m x n)
    MSE              # b = a - d; c[0] = sum(b * b) * s[0]: d the target, b the difference
    MSE_BACKWARD     # c (+)= (s[0] * b) * (a[0] / s[1]), a the loss's gradient
    BINARY           # c = a (+ - * /) b, the operator in m: 0 + 1 - 2 * 3 /
    SGD              # cg_sgd(n, c, a, b, s[0..4], nesterov=flag0, first=flag1)
    ADAM             # cg_adam(n, c, a, b, d, s[0..6])
    SCALE            # c (+)= s[0] * a
    SOFTMAX_LOG_LOSS  # rows of c (m x n): softmax, log loss against a into d[0], error;
                     # b the m row weights or NULL


ctypedef struct Record:
    int code
    bint is_float
    int64_t m, n, k
    bint flag0, flag1, flag2
    void* a
    void* b
    void* c
    void* d
    double s[7]


ctypedef struct InputUse:  # a record's pointer into an input buffer
    Py_ssize_t record
    int field              # 0: a, 1: b, 2: c, 3: d
    Py_ssize_t input
    Py_ssize_t offset      # bytes from the buffer's start


cdef inline void* _get_field(Record* r, int field) noexcept:
    return r.a if field == 0 else r.b if field == 1 else r.c if field == 2 else r.d


cdef inline void _set_field(Record* r, int field, void* p) noexcept:
    if field == 0:
        r.a = p
    elif field == 1:
        r.b = p
    elif field == 2:
        r.c = p
    else:
        r.d = p


cdef tuple _bounds(cnp.ndarray a):
    """(lowest, one past the highest) address of `a`'s bytes, whatever its strides."""
    cdef uintptr_t low = <uintptr_t>cnp.PyArray_DATA(a), high = low
    cdef int d
    cdef Py_ssize_t reach
    if cnp.PyArray_SIZE(a) == 0:
        return low, low
    for d in range(cnp.PyArray_NDIM(a)):
        reach = cnp.PyArray_STRIDE(a, d) * (cnp.PyArray_DIM(a, d) - 1)
        if reach < 0:
            low += reach
        else:
            high += reach
    return low, high + cnp.PyArray_ITEMSIZE(a)


cdef class Program:
    """Records appended by the methods below (each checks its arrays once: dtype,
    C-contiguity, alignment, writability, sizes) and executed by `run()`. The program
    holds a reference to every array a record points into."""

    cdef Record* records
    cdef Py_ssize_t size, capacity
    cdef list calls, arrays
    cdef tuple input_buffers
    # Reading the inputs in place: `written` holds the (start, end) addresses of every
    # array a record writes or a Python call holds; `may_borrow` is False where a call
    # may hold anything. On its first run after a change, the program notes where records
    # point into the input buffers (`uses`) and copies the ranges to C (`ranges`).
    cdef list written
    cdef bint calls_hold_unknown
    cdef InputUse* uses
    cdef uintptr_t* ranges
    cdef Py_ssize_t n_uses, n_ranges, noted_for
    cdef bint may_borrow

    def __cinit__(self):
        self.records, self.size, self.capacity = NULL, 0, 0
        self.calls, self.arrays, self.input_buffers = [], [], ()
        self.written, self.calls_hold_unknown = [], False
        self.uses, self.ranges, self.n_uses, self.n_ranges, self.noted_for = NULL, NULL, 0, 0, -1

    def __dealloc__(self):
        free(self.records)
        free(self.uses)
        free(self.ranges)

    def __len__(self):
        return self.size

    cdef Record* _append(self, int code, object like) except NULL:
        cdef Record* grown
        if self.size == self.capacity:
            self.capacity = max(16, 2 * self.capacity)
            grown = <Record*>realloc(self.records, self.capacity * sizeof(Record))
            if grown == NULL:
                raise MemoryError("Program: cannot grow the record array")
            self.records = grown
        cdef Record* r = &self.records[self.size]
        memset(r, 0, sizeof(Record))
        r.code = code
        if like is not None:
            r.is_float = _float_type(like, "like") == cnp.NPY_FLOAT32
        return r

    cdef Py_ssize_t _commit(self):
        """Count the record _append began, once its arrays have passed their checks (a
        record refused half-way is never run, and the next one overwrites it)."""
        self.size += 1
        return self.size - 1

    cdef void* _array(self, object a, object like, bint writable, Py_ssize_t size,
                      str name) except NULL:
        """The data of `a`, an array of `like`'s dtype with `size` elements, checked."""
        _check(a, cnp.PyArray_TYPE(<cnp.ndarray>like), cnp.PyArray_NDIM(<cnp.ndarray>a),
               writable, name)
        if cnp.PyArray_SIZE(<cnp.ndarray>a) != size:
            raise ValueError(f"{name}: expected {size} elements, got "
                             f"{cnp.PyArray_SIZE(<cnp.ndarray>a)}")
        self.arrays.append(a)
        if size == 0:
            return <void*>self  # never read: a non-NULL stand-in
        if writable:
            self.written.append(_bounds(a))
        return cnp.PyArray_DATA(<cnp.ndarray>a)

    # -- records ------------------------------------------------------------------------
    def call(self, fn not None, arrays=None) -> None:
        """fn(), with the GIL, at this point of the program. `arrays`: every array fn
        reads or writes; None where that is not known, and then run() always copies the
        inputs into their buffers, where fn may read them."""
        cdef Record* r = self._append(CALL, None)
        if arrays is None:
            self.calls_hold_unknown = True
        else:
            self.written.extend([_bounds(a) for a in arrays])
        r.m = len(self.calls)
        self.calls.append(fn)
        self._commit()

    def product(self, a, b, c, bint trans_a, bint trans_b, bint accumulate) -> None:
        """c (+)= op(a) @ op(b) for 2-D arrays, op a transpose where asked."""
        cdef Record* r = self._append(PRODUCT, c)
        cdef Py_ssize_t m = c.shape[0], n = c.shape[1]
        cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
        r.a = self._array(a, c, False, m * k, "a")
        r.b = self._array(b, c, False, k * n, "b")
        r.c = self._array(c, c, True, m * n, "c")
        if (a.shape[1] if trans_a else a.shape[0]) != m or \
                (b.shape[0] if trans_b else b.shape[1]) != n or \
                (b.shape[1] if trans_b else b.shape[0]) != k:
            raise ValueError("product: shapes do not match")
        r.m, r.n, r.k = _blas_int(m, "c"), _blas_int(n, "c"), _blas_int(k, "a")
        r.flag0, r.flag1, r.flag2 = trans_a, trans_b, accumulate
        self._commit()

    def fill_rows(self, row, c) -> None:
        """Every row of the 2-D c = row."""
        cdef Record* r = self._append(FILL_ROWS, c)
        r.m, r.n = c.shape[0], c.shape[1]
        r.a = self._array(row, c, False, r.n, "row")
        r.c = self._array(c, c, True, r.m * r.n, "c")
        self._commit()

    def zero(self, c) -> None:
        cdef Record* r = self._append(ZERO, c)
        r.n = c.size
        r.c = self._array(c, c, True, r.n, "c")
        self._commit()

    def copy(self, a, c, bint accumulate) -> None:
        """c (+)= a, element by element."""
        cdef Record* r = self._append(COPY, c)
        r.n = c.size
        r.a = self._array(a, c, False, r.n, "a")
        r.c = self._array(c, c, True, r.n, "c")
        r.flag2 = accumulate
        self._commit()

    def binary(self, str operator, a, b, c) -> None:
        """c = a (operator) b for arrays of one shape; operator is '+', '-', '*' or '/'."""
        cdef Record* r = self._append(BINARY, c)
        r.m = "+-*/".find(operator) if len(operator) == 1 else -1
        if r.m < 0:
            raise ValueError(f"operator: expected '+', '-', '*' or '/', got {operator!r}")
        r.n = c.size
        r.a = self._array(a, c, False, r.n, "a")
        r.b = self._array(b, c, False, r.n, "b")
        r.c = self._array(c, c, True, r.n, "c")
        self._commit()

    def scale(self, a, c, double factor, bint accumulate) -> int:
        """c (+)= factor * a, element by element (set_scale changes the factor); its
        index."""
        cdef Record* r = self._append(SCALE, c)
        r.n = c.size
        r.a = self._array(a, c, False, r.n, "a")
        r.c = self._array(c, c, True, r.n, "c")
        r.s[0] = factor
        r.flag2 = accumulate
        return self._commit()

    def set_scale(self, Py_ssize_t index, double factor) -> None:
        self._record(index, SCALE).s[0] = factor

    def softmax_log_loss(self, out, y, weight, loss) -> None:
        """Each row of the 2-D `out` (the output layer's values) becomes its softmax p;
        loss[0] = -sum_i w_i sum_j y_ij log(clip(p_ij, eps, 1 - eps)) / sum_i w_i (a
        term only where y_ij != 0); then out = ((p - y) * w_i) / sum_i w_i, the log loss's
        gradient at the softmax's input. w_i = weight[i], or 1 where weight is None."""
        cdef Record* r = self._append(SOFTMAX_LOG_LOSS, out)
        if out.ndim != 2:
            raise ValueError(f"out: expected 2 dimensions, got {out.ndim}")
        r.m, r.n = out.shape[0], out.shape[1]
        r.c = self._array(out, out, True, r.m * r.n, "out")
        r.a = self._array(y, out, False, r.m * r.n, "y")
        if weight is not None:
            r.b = self._array(weight, out, False, r.m, "weight")
        r.d = self._array(loss, out, True, 1, "loss")
        self._commit()

    @property
    def python_calls(self) -> int:
        """How many records are Python calls (the rest run without the GIL)."""
        return sum(1 for i in range(self.size) if self.records[i].code == CALL)

    def sigmoid(self, a, c) -> None:
        cdef Record* r = self._append(SIGMOID, c)
        r.n = c.size
        r.a = self._array(a, c, False, r.n, "a")
        r.c = self._array(c, c, True, r.n, "c")
        self._commit()

    def sigmoid_backward(self, g, y, c, bint accumulate) -> None:
        cdef Record* r = self._append(SIGMOID_BACKWARD, c)
        r.n = c.size
        r.a = self._array(g, c, False, r.n, "g")
        r.b = self._array(y, c, False, r.n, "y")
        r.c = self._array(c, c, True, r.n, "c")
        r.flag2 = accumulate
        self._commit()

    def relu(self, a, c) -> None:
        cdef Record* r = self._append(RELU, c)
        r.n = c.size
        r.a = self._array(a, c, False, r.n, "a")
        r.c = self._array(c, c, True, r.n, "c")
        self._commit()

    def relu_backward(self, g, x, c, bint accumulate) -> None:
        cdef Record* r = self._append(RELU_BACKWARD, c)
        r.n = c.size
        r.a = self._array(g, c, False, r.n, "g")
        r.b = self._array(x, c, False, r.n, "x")
        r.c = self._array(c, c, True, r.n, "c")
        r.flag2 = accumulate
        self._commit()

    def bias_backward(self, g, c, bint accumulate) -> None:
        """c (+)= g.sum(0) for the 2-D g, as the eager bias_backward."""
        cdef Record* r = self._append(BIAS_BACKWARD, c)
        r.m, r.n = g.shape[0], g.shape[1]
        r.a = self._array(g, c, False, r.m * r.n, "g")
        r.c = self._array(c, c, True, r.n, "c")
        r.flag2 = accumulate
        self._commit()

    def mse(self, x, target, diff, out, bint mean) -> None:
        """diff = x - target; out = sum(diff ** 2) (/ n with mean)."""
        cdef Record* r = self._append(MSE, out)
        r.n = x.size
        r.a = self._array(x, out, False, r.n, "x")
        r.d = self._array(target, out, False, r.n, "target")
        r.b = self._array(diff, out, True, r.n, "diff")
        r.c = self._array(out, out, True, 1, "out")
        r.s[0] = 1.0 / r.n if mean else 1.0
        self._commit()

    def mse_backward(self, g, diff, c, double factor, bint mean, bint accumulate) -> None:
        """c (+)= (factor * diff) * (g / n with mean, else g)."""
        cdef Record* r = self._append(MSE_BACKWARD, c)
        r.n = c.size
        r.a = self._array(g, c, False, 1, "g")
        r.b = self._array(diff, c, False, r.n, "diff")
        r.c = self._array(c, c, True, r.n, "c")
        r.s[0], r.s[1] = factor, (r.n if mean else 1)
        r.flag2 = accumulate
        self._commit()

    def sgd(self, param, grad, buf) -> int:
        """An SGD update of param (set_sgd gives its hyperparameters); its index."""
        cdef Record* r = self._append(SGD, param)
        r.n = param.size
        r.c = self._array(param, param, True, r.n, "param")
        r.a = self._array(grad, param, False, r.n, "grad")
        if buf is not None:
            r.b = self._array(buf, param, True, r.n, "momentum_buffer")
        return self._commit()

    def set_sgd(self, tuple indices not None, double lr, double momentum,
                double one_minus_dampening, double weight_decay, double sign,
                bint nesterov, bint first) -> None:
        """The hyperparameters of the SGD records at `indices` (a param group's)."""
        cdef Record* r
        for index in indices:
            r = self._record(index, SGD)
            if momentum != 0 and r.b == NULL:
                raise ValueError("set_sgd: momentum without a momentum buffer")
            r.s[0], r.s[1], r.s[2], r.s[3], r.s[4] = lr, momentum, one_minus_dampening, \
                weight_decay, sign
            r.flag0, r.flag1 = nesterov, first

    def adam(self, param, grad, exp_avg, exp_avg_sq) -> int:
        """An Adam update of param (set_adam gives its hyperparameters); its index."""
        cdef Record* r = self._append(ADAM, param)
        r.n = param.size
        r.c = self._array(param, param, True, r.n, "param")
        r.a = self._array(grad, param, False, r.n, "grad")
        r.b = self._array(exp_avg, param, True, r.n, "exp_avg")
        r.d = self._array(exp_avg_sq, param, True, r.n, "exp_avg_sq")
        return self._commit()

    def set_adam(self, Py_ssize_t index, double step_size, double beta1,
                 double one_minus_beta1, double beta2, double one_minus_beta2, double eps,
                 double bias_correction2_sqrt) -> None:
        cdef Record* r = self._record(index, ADAM)
        r.s[0], r.s[1], r.s[2], r.s[3] = step_size, beta1, one_minus_beta1, beta2
        r.s[4], r.s[5], r.s[6] = one_minus_beta2, eps, bias_correction2_sqrt

    cdef int _note_input_uses(self) except -1:
        """Note every record field that points into an input buffer, copy the written
        ranges to C, and decide whether inputs may be read in place: not where a Python
        call may hold anything, nor where the program writes an input buffer."""
        cdef Py_ssize_t i, j, f, count
        cdef uintptr_t p
        self._aim_uses(self.input_buffers)  # not left at a caller's arrays of a last run
        buffers = [_bounds(b) for b in self.input_buffers]
        found = []
        for i in range(self.size):
            for f in range(4):
                p = <uintptr_t>_get_field(&self.records[i], f)
                for j, (low, high) in enumerate(buffers):
                    if low <= p < high:
                        found.append((i, f, j, p - low))
        self.may_borrow = not self.calls_hold_unknown and not any(
            low < w_high and w_low < high
            for low, high in buffers for w_low, w_high in self.written)
        free(self.uses)
        free(self.ranges)
        self.uses = <InputUse*>malloc(max(1, len(found)) * sizeof(InputUse))
        self.ranges = <uintptr_t*>malloc(max(1, 2 * len(self.written)) * sizeof(uintptr_t))
        self.n_uses = self.n_ranges = 0
        self.noted_for = -1
        if self.uses == NULL or self.ranges == NULL:
            raise MemoryError("Program: cannot note where the records read the inputs")
        for count, (i, f, j, p) in enumerate(found):
            self.uses[count].record, self.uses[count].field = i, f
            self.uses[count].input, self.uses[count].offset = j, p
        for count, (low, high) in enumerate(self.written):
            self.ranges[2 * count], self.ranges[2 * count + 1] = low, high
        self.n_uses, self.n_ranges = len(found), len(self.written)
        self.noted_for = self.size
        return 0

    cdef void _aim_uses(self, sources):
        """Point each noted record field at its input in `sources` (a sequence of arrays
        in the inputs' order), at the offset it has in the input's buffer."""
        cdef Py_ssize_t u
        cdef InputUse* use
        for u in range(self.n_uses):
            use = &self.uses[u]
            _set_field(&self.records[use.record], use.field, <char*>cnp.PyArray_DATA(
                <cnp.ndarray>sources[use.input]) + use.offset)

    cdef bint _overlaps_written(self, cnp.ndarray a):
        """Whether the C-contiguous `a` shares a byte with a written array."""
        cdef uintptr_t low = <uintptr_t>cnp.PyArray_DATA(a)
        cdef uintptr_t high = low + <uintptr_t>cnp.PyArray_NBYTES(a)
        cdef Py_ssize_t w
        for w in range(self.n_ranges):
            if low < self.ranges[2 * w + 1] and self.ranges[2 * w] < high:
                return True
        return False

    cdef Record* _record(self, Py_ssize_t index, int code) except NULL:
        if not 0 <= index < self.size or self.records[index].code != code:
            raise IndexError(f"index: no record of that kind at {index}")
        return &self.records[index]

    def inputs(self, *buffers) -> None:
        """The buffers that hold `run(*arrays)`'s arrays, in order."""
        for b in buffers:
            _check(b, _float_type(b, "buffer"), cnp.PyArray_NDIM(<cnp.ndarray>b), True,
                   "buffer")
        self._aim_uses(self.input_buffers)  # not left at a caller's arrays of a last run
        self.input_buffers = buffers
        self.noted_for = -1

    # -- running ------------------------------------------------------------------------
    def run(self, *arrays) -> None:
        """Execute every record in order on `arrays`, the inputs; the GIL is released
        except for Python calls. An array of its buffer's dtype, size and layout is read
        where it lies, unless it shares memory with an array the program writes; any
        other is copied into its buffer first (all of them are where a Python call may
        read the buffers)."""
        _require_blas()
        cdef Py_ssize_t i = 0, start
        cdef cnp.ndarray a, b
        if len(arrays) != len(self.input_buffers):
            raise ValueError(f"arrays: expected {len(self.input_buffers)}, got {len(arrays)}")
        if self.noted_for != self.size:
            self._note_input_uses()
        sources = []
        for i in range(len(arrays)):
            a, b = arrays[i], self.input_buffers[i]
            if cnp.PyArray_TYPE(a) == cnp.PyArray_TYPE(b) and cnp.PyArray_ISNOTSWAPPED(a) \
                    and cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISALIGNED(a) and \
                    cnp.PyArray_SIZE(a) == cnp.PyArray_SIZE(b):
                if self.may_borrow and cnp.PyArray_SIZE(a) > 0 and not self._overlaps_written(a):
                    sources.append(a)
                    continue
                memcpy(cnp.PyArray_DATA(b), cnp.PyArray_DATA(a), cnp.PyArray_NBYTES(b))
            else:  # another layout or dtype: NumPy's copy (and its errors)
                np_copyto(b, a)
            sources.append(b)
        self._aim_uses(sources)
        i = 0
        while i < self.size:
            if self.records[i].code == CALL:
                self.calls[self.records[i].m]()
                i += 1
                continue
            start = i
            while i < self.size and self.records[i].code != CALL:
                i += 1
            with nogil:
                _execute(self.records + start, i - start)


cdef int _execute(Record* records, Py_ssize_t count) except -1 nogil:
    cdef Py_ssize_t i
    cdef Record* r
    for i in range(count):
        r = &records[i]
        if r.is_float:
            _execute_one(r, <float>0)
        else:
            _execute_one(r, <double>0)
    return 0


cdef int _execute_one(Record* r, real kind) except -1 nogil:
    cdef const real* a = <const real*>r.a
    cdef real* b = <real*>r.b
    cdef real* c = <real*>r.c
    cdef real* d = <real*>r.d
    cdef Py_ssize_t i, n = r.n
    cdef real v, scale
    cdef double total
    if r.code == PRODUCT:
        _gemm(r.flag0, r.flag1, r.m, r.n, r.k, a, <const real*>b, <real>r.flag2, c)
    elif r.code == FILL_ROWS:
        _fill_rows(c, a, r.m, n * sizeof(real))
    elif r.code == ZERO:
        memset(c, 0, n * sizeof(real))
    elif r.code == COPY:
        if r.flag2:
            for i in range(n):
                c[i] += a[i]
        else:
            memcpy(c, a, n * sizeof(real))
    elif r.code == BINARY:
        if r.m == 0:
            for i in range(n):
                c[i] = a[i] + b[i]
        elif r.m == 1:
            for i in range(n):
                c[i] = a[i] - b[i]
        elif r.m == 2:
            for i in range(n):
                c[i] = a[i] * b[i]
        else:
            for i in range(n):
                c[i] = a[i] / b[i]
    elif r.code == SIGMOID:
        if real is float:
            cg_sigmoid_f(a, c, n)
        else:
            cg_sigmoid_d(a, c, n)
    elif r.code == SIGMOID_BACKWARD:
        if real is float:
            cg_sigmoid_backward_f(a, b, c, n, r.flag2)
        else:
            cg_sigmoid_backward_d(a, b, c, n, r.flag2)
    elif r.code == RELU:
        # One comparison (false for NaN) and a select, on values read unconditionally: a
        # loop without branches, which the compiler vectorizes. A branch per element
        # mispredicts on about half of a layer's signs.
        for i in range(n):
            v = a[i]
            c[i] = 0 if v <= 0 else v  # -0.0 too becomes +0.0, as np.maximum gives
    elif r.code == RELU_BACKWARD:
        if r.flag2:
            for i in range(n):
                v = a[i]
                c[i] += 0 if b[i] <= 0 else v
        else:
            for i in range(n):
                v = a[i]
                c[i] = 0 if b[i] <= 0 else v
    elif r.code == BIAS_BACKWARD:
        _bias_backward(a, r.m, n, c, r.flag2)
    elif r.code == MSE:
        total = 0
        for i in range(n):
            b[i] = a[i] - d[i]
            total += <double>b[i] * b[i]
        c[0] = <real>(total * r.s[0])
    elif r.code == MSE_BACKWARD:
        scale = a[0] / <real>r.s[1]
        for i in range(n):
            v = (<real>r.s[0] * b[i]) * scale
            if r.flag2:
                c[i] += v
            else:
                c[i] = v
    elif r.code == SGD:
        if real is float:
            cg_sgd_f(n, c, a, b, <float>r.s[0], <float>r.s[1], <float>r.s[2], <float>r.s[3],
                     <float>r.s[4], r.flag0, r.flag1)
        else:
            cg_sgd_d(n, c, a, b, r.s[0], r.s[1], r.s[2], r.s[3], r.s[4], r.flag0, r.flag1)
    elif r.code == ADAM:
        if real is float:
            cg_adam_f(n, c, a, b, d, <float>r.s[0], <float>r.s[1], <float>r.s[2],
                      <float>r.s[3], <float>r.s[4], <float>r.s[5], <float>r.s[6])
        else:
            cg_adam_d(n, c, a, b, d, r.s[0], r.s[1], r.s[2], r.s[3], r.s[4], r.s[5], r.s[6])
    elif r.code == SCALE:
        scale = <real>r.s[0]
        if r.flag2:
            for i in range(n):
                c[i] += scale * a[i]
        else:
            for i in range(n):
                c[i] = scale * a[i]
    elif r.code == SOFTMAX_LOG_LOSS:
        _softmax_log_loss(c, a, <const real*>b, d, r.m, n)
    return 0


cdef inline real _exp_nonpositive(real x) noexcept nogil:
    if real is float:
        return cg_exp_nonpositive_f(x)
    else:
        return cg_exp_nonpositive_d(x)


cdef void _softmax_log_loss(real* out, const real* y, const real* weight, real* loss,
                            Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """The SOFTMAX_LOG_LOSS record, in scikit-learn's operations: each row less its
    maximum (the exponentials are then at most 1), exponentiated, divided by its sum;
    the probabilities clipped to [eps, 1 - eps] for the log."""
    cdef Py_ssize_t i, j
    cdef real* row
    cdef const real* target
    cdef real top, total, p, w = 1, inv
    cdef real eps = FLT_EPSILON if real is float else DBL_EPSILON
    cdef double weight_sum = rows, log_sum = 0, row_log
    if weight != NULL:
        weight_sum = 0
        for i in range(rows):
            weight_sum += weight[i]
    if rows == 0 or cols == 0:
        loss[0] = 0
        return
    inv = <real>(1.0 / weight_sum)
    for i in range(rows):
        row = out + i * cols
        top = row[0]
        for j in range(1, cols):
            top = row[j] if row[j] > top else top
        for j in range(cols):
            row[j] = row[j] - top
    for i in range(rows * cols):  # one long loop, which the compiler vectorizes
        out[i] = _exp_nonpositive(out[i])
    for i in range(rows):
        row, target = out + i * cols, y + i * cols
        total = 0
        for j in range(cols):
            total += row[j]
        row_log = 0
        if weight != NULL:
            w = weight[i]
        for j in range(cols):
            p = row[j] / total
            if target[j] != 0:
                row_log += target[j] * log(min(max(p, eps), 1 - eps))
            row[j] = ((p - target[j]) * w) * inv  # w = 1 without weights: exact
        log_sum += w * row_log
    loss[0] = <real>(-log_sum / weight_sum)
