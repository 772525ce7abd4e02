"""The compiled backend: argument checks in Python, then the loops in csrc/.

Inputs may be any float32/float64 arrays of the right shapes: strided, Fortran-ordered or
read-only inputs are copied to a C-contiguous buffer first (correct, at the cost of a copy).
Output arrays are written in place and must be C-contiguous and writable (never a silent
copy that would leave the caller's array unwritten). An input that overlaps an output is
copied first, so results are always those of the inputs as they were at the call.

Checks come in two layers. Here, in Python, every error a user can meet, in the words
_checks.py shares with the reference backend. In csrc/, only what keeps memory safe (a
direct call of a compiled function cannot read or write out of bounds); a call from here
never reaches those errors. One fast path skips the general path's copies and overlap
checks: where `_plain` holds for every array and the shapes agree (a handful of identity
and tuple comparisons), the call goes straight to the compiled function; everything else
takes the checked path.
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

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # native byte order only


def _plain(a: object, dtype: object, ndim: int = 0) -> bool:
    """The fast path's test of one array: an ndarray of `dtype` (float32 or float64, native
    byte order), C-contiguous and aligned (and of `ndim` dimensions, if given), which the
    compiled functions take as it is."""
    if a.__class__ is not np.ndarray or a.dtype is not dtype or (ndim and a.ndim != ndim):
        return False
    flags = a.flags
    return flags.c_contiguous and flags.aligned


def _fresh(out: object, shape: tuple, dtype: object) -> bool:
    """An output the fast path writes: a C-contiguous, aligned, writable array of exactly
    `shape` and `dtype`."""
    return out.__class__ is np.ndarray and out.dtype is dtype and out.shape == shape and \
        out.flags.carray


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
    if out is None and x.__class__ is np.ndarray and x.dtype in _FLOATS:
        out = np.empty(x.shape, x.dtype)
        _elementwise.sigmoid_forward(x, out)  # copies a strided x itself
        return out
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
            y.__class__ is np.ndarray and grad_out.dtype in _FLOATS and \
            y.dtype is grad_out.dtype and y.shape == grad_out.shape:
        out = np.empty(grad_out.shape, grad_out.dtype)
        _elementwise.sigmoid_backward(grad_out, y, out, False)  # copies strided inputs
        return out
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
    dtype = getattr(x, "dtype", None)
    if out is None and dtype in _FLOATS and _plain(x, dtype, 2) and _plain(w, dtype, 2) and \
            x.shape[1] == w.shape[1] and \
            (b is None or (_plain(b, dtype, 1) and b.shape[0] == w.shape[0])):
        out = np.empty((x.shape[0], w.shape[0]), dtype)
        _linear.linear_forward(x, w, b, out)
        return out
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


def _linear_backward_fast(grad_out: Array, x: Array, w: Array, grad_x: object,
                          grad_w: object, grad_b: object, accumulate: bool,
                          need_grad_x: bool, need_grad_w: bool, need_grad_b: bool
                          ) -> Optional[tuple]:
    """linear_backward's fast path (the graph layer's and the adapters' common call), or
    None where it does not apply: the checked path then takes the call."""
    dtype = x.dtype
    if dtype not in _FLOATS or not (_plain(grad_out, dtype, 2) and _plain(x, dtype, 2)
                                    and _plain(w, dtype, 2)):
        return None
    batch, (n, k) = x.shape[0], w.shape
    if x.shape[1] != k or grad_out.shape != (batch, n):
        return None
    for out, need, shape in ((grad_x, need_grad_x, x.shape), (grad_w, need_grad_w, w.shape),
                             (grad_b, need_grad_b, (n,))):
        if out is not None and not (need and _fresh(out, shape, dtype)):
            return None  # the checked path judges it (an unneeded output too)
    if (grad_x is not None or grad_w is not None or grad_b is not None) and \
            _memory.overlapping((grad_out, x, w), (grad_x, grad_w, grad_b), False):
        return None
    alloc = np.zeros if accumulate else np.empty  # zeroed: one beta for every output
    if need_grad_x and grad_x is None:
        grad_x = alloc(x.shape, dtype)
    if need_grad_w and grad_w is None:
        grad_w = alloc(w.shape, dtype)
    if need_grad_b and grad_b is None:
        grad_b = alloc((n,), dtype)
    _linear.linear_backward(grad_out, x, w, grad_x, grad_w, accumulate)
    if grad_b is not None:
        _linear.bias_backward(grad_out, grad_b, accumulate)
    return grad_x, grad_w, grad_b


def linear_backward(grad_out: Array, x: Array, w: Array, grad_x: Optional[Array] = None,
                    grad_w: Optional[Array] = None, grad_b: Optional[Array] = None,
                    accumulate: bool = False, need_grad_x: bool = True,
                    need_grad_w: bool = True, need_grad_b: bool = True
                    ) -> Tuple[Optional[Array], Optional[Array], Optional[Array]]:
    """grad_x (+)= grad_out @ w, grad_w (+)= grad_out.T @ x, grad_b (+)= grad_out.sum(0)."""
    if _is_bool(accumulate) and _is_bool(need_grad_x) and _is_bool(need_grad_w) and \
            _is_bool(need_grad_b) and x.__class__ is np.ndarray:
        grads = _linear_backward_fast(grad_out, x, w, grad_x, grad_w, grad_b, accumulate,
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
    dtype = getattr(out, "dtype", None)
    if dtype in _FLOATS and _fresh(out, out.shape, dtype) and _plain(x, dtype) and \
            x.shape == out.shape and not _memory.overlapping((x,), (out,), True):
        _linear.add_scaled(out, x, alpha)
        return
    out += alpha * x


def sgd_update(param: Array, grad: Array, momentum_buffer: Optional[Array] = None, *,
               lr: float, momentum: float = 0.0, dampening: float = 0.0,
               weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
               first: bool = False) -> None:
    """torch.optim.SGD's update of `param` and `momentum_buffer`, in place, in one pass:
    d = (-grad if maximize else grad) + weight_decay * param; with momentum != 0,
    buf = d if first else momentum * buf + (1 - dampening) * d and then
    d = d + momentum * buf if nesterov else buf; param -= lr * d."""
    try:
        # It checks everything the shared checks do, tersely, before it writes anything,
        # and copies a grad that is strided or overlaps what it writes.
        _elementwise.sgd_update(param, grad, momentum_buffer, lr, momentum, dampening,
                                weight_decay, nesterov, maximize, first)
        return
    except (TypeError, ValueError):
        pass
    args = _checks.sgd_update_args(param, grad, momentum_buffer, lr, momentum, dampening,
                                   weight_decay, nesterov, maximize, first)
    _elementwise.sgd_update(param, grad, momentum_buffer, *args)  # now as Python numbers


def adam_update(param: Array, grad: Array, exp_avg: Array, exp_avg_sq: Array, *,
                step_size: float, beta1: float, beta2: float, eps: float,
                bias_correction2_sqrt: float = 1.0) -> None:
    """Adam's update of `exp_avg` (m), `exp_avg_sq` (v) and `param`, in place, in one
    pass: m = beta1 * m + (1 - beta1) * grad, v = beta2 * v + (1 - beta2) * grad^2,
    param -= (step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)."""
    try:
        _elementwise.adam_update(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2,
                                 eps, bias_correction2_sqrt)  # checks as sgd_update's does
        return
    except (TypeError, ValueError):
        pass
    args = _checks.adam_update_args(param, grad, exp_avg, exp_avg_sq, step_size, beta1,
                                    beta2, eps, bias_correction2_sqrt)
    _elementwise.adam_update(param, grad, exp_avg, exp_avg_sq, *args)
