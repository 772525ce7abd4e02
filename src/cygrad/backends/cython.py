"""The compiled backend: argument checks in Python, then the loops in csrc/.

Inputs may be any float32/float64 arrays of the right shapes: strided, Fortran-ordered or
read-only inputs are copied to a C-contiguous buffer first (correct, at the cost of a copy).
Output arrays are written in place and must be C-contiguous and writable (never a silent
copy that would leave the caller's array unwritten). An input that overlaps an output is
copied first, so results are always those of the inputs as they were at the call.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .. import _memory, runtime
from . import _checks
from ._checks import as_rows

_elementwise, _linear = runtime.load_compiled()  # the runtime has chosen their BLAS

Array = np.ndarray
name = "cython"

# The common call (fresh outputs, C-contiguous 2-D arrays of one dtype) goes straight to the
# compiled function, whose own checks are complete and run before anything is written; a
# call they refuse takes the full path below, which copies a strided input or raises the
# friendly error. This saves ~1 us a call: at batch 64 the adapters make six a step.
_REFUSED = (TypeError, ValueError)


def _is_matrix(a: object) -> bool:
    return a.__class__ is np.ndarray and a.ndim == 2


def _is_bool(flag: object) -> bool:
    return flag is True or flag is False


def _contiguous(a: Array) -> Array:
    """`a`, or an aligned C-ordered copy of it: what the BLAS module takes."""
    flags = a.flags
    return a if flags.c_contiguous and flags.aligned else np.array(a, order="C")


def detach_inputs(inputs: tuple, outputs: tuple, elementwise: bool = False) -> tuple:
    """Inputs read as they were when the call began: an input that overlaps an output is
    copied first. An element-wise kernel may write over an input that is exactly its
    output (in place), since each element is read before it is written."""
    mask = _memory.overlapping(inputs, outputs, elementwise)
    if not mask:
        return inputs
    return tuple(a.copy() if mask >> i & 1 else a for i, a in enumerate(inputs))


def sigmoid_forward(x: Array, out: Optional[Array] = None) -> Array:
    """sigmoid(x) = 1 / (1 + exp(-x)), overflow-free for any x; NaN stays NaN."""
    if out is None and x.__class__ is np.ndarray:
        out = np.empty(x.shape, x.dtype)
        try:
            _elementwise.sigmoid_forward(x, out)
            return out
        except _REFUSED:
            out = None
    out = _checks.sigmoid_forward_args(x, out)
    if out is None:
        out = np.empty(x.shape, x.dtype)
    else:
        (x,) = detach_inputs((x,), (out,), True)
    _elementwise.sigmoid_forward(x, out)  # copies a strided x itself
    return out


def sigmoid_backward(grad_out: Array, y: Array, out: Optional[Array] = None,
                     accumulate: bool = False) -> Array:
    """out (+)= grad_out * y * (1 - y), where y = sigmoid(x)."""
    if out is None and accumulate is False and grad_out.__class__ is np.ndarray and \
            y.__class__ is np.ndarray and y.shape == grad_out.shape:
        out = np.empty(grad_out.shape, grad_out.dtype)
        try:
            _elementwise.sigmoid_backward(grad_out, y, out, False)
            return out
        except _REFUSED:
            out = None
    out = _checks.sigmoid_backward_args(grad_out, y, out, accumulate)
    if out is None:
        out, accumulate = np.empty(grad_out.shape, grad_out.dtype), False
    else:
        grad_out, y = detach_inputs((grad_out, y), (out,), True)
    _elementwise.sigmoid_backward(grad_out, y, out, accumulate)  # copies strided inputs
    return out


def bias_backward(grad_out: Array, out: Optional[Array] = None,
                  accumulate: bool = False) -> Array:
    """out (+)= grad_out summed over every axis but the last."""
    out = _checks.bias_backward_args(grad_out, out, accumulate)
    if out is None:
        out, accumulate = np.empty(grad_out.shape[-1:], grad_out.dtype), False
    else:
        (grad_out,) = detach_inputs((grad_out,), (out,))
    _linear.bias_backward(as_rows(_contiguous(grad_out)), out, accumulate)
    return out


def linear_forward(x: Array, w: Array, b: Optional[Array] = None,
                   out: Optional[Array] = None) -> Array:
    """out = x @ w.T + b, with x of shape (..., in_features) and w (out_features, in_features)."""
    if out is None and _is_matrix(x) and _is_matrix(w):
        out = np.empty((x.shape[0], w.shape[0]), x.dtype)
        try:
            _linear.linear_forward(x, w, b, out)
            return out
        except _REFUSED:
            out = None
    out = _checks.linear_forward_args(x, w, b, out)
    if out is None:
        out = np.empty(x.shape[:-1] + (w.shape[0],), x.dtype)
    else:
        x, w, b = detach_inputs((x, w, b), (out,))
    b = None if b is None else _contiguous(b)
    _linear.linear_forward(as_rows(_contiguous(x)), _contiguous(w), b, as_rows(out))
    return out


def _outputs(given: tuple, shapes: tuple, needed: tuple, dtype: np.dtype,
             accumulate: bool) -> list:
    """The arrays to write: the caller's where given, else fresh ones (zeroed when
    accumulating, so one BLAS beta serves every output of the call)."""
    alloc = np.zeros if accumulate else np.empty
    return [(out if out is not None else alloc(shape, dtype)) if need else None
            for out, shape, need in zip(given, shapes, needed)]


def _linear_backward_direct(grad_out: Array, x: Array, w: Array, grad_x: object,
                            grad_w: object, grad_b: object, accumulate: bool,
                            need_grad_x: bool, need_grad_w: bool, need_grad_b: bool
                            ) -> Optional[tuple]:
    """linear_backward's common call, or None where the compiled functions would refuse it
    or an output overlaps an input. Everything is checked before the first write: grad_x
    and grad_w by the compiled function itself, grad_b here (it is written second)."""
    given = (grad_x, grad_w, grad_b)
    for a, need in zip(given, (need_grad_x, need_grad_w, need_grad_b)):
        if a is not None and (a.__class__ is not np.ndarray or not need):
            return None  # the checked path judges an unneeded output too
    # From here an output is None or needed (and an unneeded one is None).
    dtype, n = x.dtype, w.shape[0]
    if grad_b is not None and not (
            grad_b.dtype is dtype and grad_b.shape == (n,) and grad_b.flags.carray):
        return None
    if (grad_x is not None or grad_w is not None or grad_b is not None) and \
            _memory.overlapping((grad_out, x, w), given, False):
        return None
    alloc = np.zeros if accumulate else np.empty  # zeroed: one beta for every output
    if need_grad_x and grad_x is None:
        grad_x = alloc(x.shape, dtype)
    if need_grad_w and grad_w is None:
        grad_w = alloc(w.shape, dtype)
    try:
        _linear.linear_backward(grad_out, x, w, grad_x, grad_w, accumulate)
    except _REFUSED:
        return None
    if need_grad_b:
        if grad_b is None:
            grad_b = alloc((n,), dtype)
        _linear.bias_backward(grad_out, grad_b, accumulate)  # both checked: cannot refuse
    return grad_x, grad_w, grad_b


def linear_backward(grad_out: Array, x: Array, w: Array, grad_x: Optional[Array] = None,
                    grad_w: Optional[Array] = None, grad_b: Optional[Array] = None,
                    accumulate: bool = False, need_grad_x: bool = True,
                    need_grad_w: bool = True, need_grad_b: bool = True
                    ) -> Tuple[Optional[Array], Optional[Array], Optional[Array]]:
    """grad_x (+)= grad_out @ w, grad_w (+)= grad_out.T @ x, grad_b (+)= grad_out.sum(0)."""
    if _is_bool(accumulate) and _is_bool(need_grad_x) and _is_bool(need_grad_w) and \
            _is_bool(need_grad_b) and _is_matrix(grad_out) and _is_matrix(x) and _is_matrix(w):
        grads = _linear_backward_direct(grad_out, x, w, grad_x, grad_w, grad_b, accumulate,
                                        need_grad_x, need_grad_w, need_grad_b)
        if grads is not None:
            return grads
    given = _checks.linear_backward_args(grad_out, x, w, grad_x, grad_w, grad_b, accumulate,
                                         need_grad_x, need_grad_w, need_grad_b)
    grad_out, x, w = detach_inputs((grad_out, x, w), given)
    grad_x, grad_w, grad_b = _outputs(given, (x.shape, w.shape, w.shape[:1]),
                                      (need_grad_x, need_grad_w, need_grad_b), x.dtype,
                                      accumulate)
    g = as_rows(_contiguous(grad_out))
    _linear.linear_backward(g, as_rows(_contiguous(x)), _contiguous(w),
                            None if grad_x is None else as_rows(grad_x), grad_w, accumulate)
    if grad_b is not None:
        _linear.bias_backward(g, grad_b, accumulate)
    return grad_x, grad_w, grad_b


def matmul_backward(grad_out: Array, a: Array, b: Array, grad_a: Optional[Array] = None,
                    grad_b: Optional[Array] = None, accumulate: bool = False,
                    need_grad_a: bool = True, need_grad_b: bool = True
                    ) -> Tuple[Optional[Array], Optional[Array]]:
    """For out = a @ b: grad_a (+)= grad_out @ b.T, grad_b (+)= a.T @ grad_out."""
    given = _checks.matmul_backward_args(grad_out, a, b, grad_a, grad_b, accumulate,
                                         need_grad_a, need_grad_b)
    grad_out, a, b = detach_inputs((grad_out, a, b), given)
    grad_a, grad_b = _outputs(given, (a.shape, b.shape), (need_grad_a, need_grad_b), a.dtype,
                              accumulate)
    _linear.matmul_backward(_contiguous(grad_out), _contiguous(a), _contiguous(b), grad_a,
                            grad_b, accumulate)
    return grad_a, grad_b


def add_scaled(out: Array, x: Array, alpha: float) -> None:
    """out += alpha * x, in place: the optimizers' update, one pass on BLAS axpy with no
    temporary (`p -= lr * g` in NumPy makes two passes and a temporary). Arrays axpy does
    not take (another layout or dtype, partial overlap) go to NumPy instead."""
    if out.shape == x.shape and not _memory.overlapping((x,), (out,), True):
        try:
            _linear.add_scaled(out, x, alpha)  # checks everything before writing
            return
        except (TypeError, ValueError):
            pass
    out += alpha * x
