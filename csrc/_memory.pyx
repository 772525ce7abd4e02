# cython: boundscheck=False, wraparound=False
"""Which inputs of a kernel call overlap its outputs. np.may_share_memory answers the same
question, but a kernel call asks it up to nine times and the Python call costs more than
the small kernels it guards."""
cimport numpy as cnp

cnp.import_array()


cdef inline bint _extent(cnp.ndarray a, char** low, char** high) noexcept:
    """The byte range [low, high) that `a`'s elements lie in; False when `a` is empty."""
    cdef char* start = <char*>cnp.PyArray_DATA(a)
    cdef Py_ssize_t i, below = 0, above = cnp.PyArray_ITEMSIZE(a)
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp* strides = cnp.PyArray_STRIDES(a)
    for i in range(cnp.PyArray_NDIM(a)):
        if dims[i] == 0:
            return False
        if strides[i] > 0:
            above += strides[i] * (dims[i] - 1)
        else:
            below += strides[i] * (dims[i] - 1)
    low[0] = start + below
    high[0] = start + above
    return True


cdef inline bint _identical(cnp.ndarray a, cnp.ndarray b) noexcept:
    """Same first element, same shape, same strides: the very same elements in order."""
    cdef int i, nd = cnp.PyArray_NDIM(a)
    if cnp.PyArray_DATA(a) != cnp.PyArray_DATA(b) or nd != cnp.PyArray_NDIM(b):
        return False
    for i in range(nd):
        if cnp.PyArray_DIMS(a)[i] != cnp.PyArray_DIMS(b)[i] or \
                cnp.PyArray_STRIDES(a)[i] != cnp.PyArray_STRIDES(b)[i]:
            return False
    return True


def overlapping(tuple inputs, tuple outputs, bint in_place_ok):
    """A bit mask: bit i is set when inputs[i] shares memory with any output. With
    `in_place_ok`, an input that is exactly an output does not count. None entries are
    skipped."""
    cdef int mask = 0, i
    cdef char *in_low, *in_high, *out_low, *out_high
    for i in range(len(inputs)):
        a = inputs[i]
        if a is None or not _extent(a, &in_low, &in_high):
            continue
        for out in outputs:
            if out is None or not _extent(out, &out_low, &out_high):
                continue
            if in_low < out_high and out_low < in_high and not (
                    in_place_ok and _identical(a, out)):
                mask |= 1 << i
                break
    return mask
