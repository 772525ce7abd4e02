# The compiled modules' own checks: memory safety, not friendliness. backends/cython.py has
# given every error a user can meet before it calls in here; these keep a direct call of a
# compiled function from reading or writing out of bounds, or misreading an array.

cdef int _float_type(object a, str name) except -1:
    """The NumPy type number of `a`, a float32 or float64 ndarray in native byte order."""
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"{name}: expected a float32 or float64 ndarray, got "
                        f"{type(a).__name__}")
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    # A byte-swapped array ('>f8' on x86) has the same type number: refused, not misread.
    if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or \
            not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a):
        raise TypeError(f"{name}: expected a float32 or float64 ndarray in native byte "
                        f"order")
    return t


cdef int _check(object a, int typenum, int ndim, bint writable, str name) except -1:
    """`a` is an ndarray of dtype `typenum` and `ndim` dimensions, C-contiguous and
    aligned (and writable when it is written)."""
    if _float_type(a, name) != typenum:
        raise TypeError(f"{name}: arrays differ in dtype")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got {cnp.PyArray_NDIM(arr)}")
    if not (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)):
        raise ValueError(f"{name}: expected a C-contiguous, aligned array")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name}: expected a writable array")
    return 0
