"""Argument checks both backends share, so they reject the same inputs with the same words.

Every check runs before anything is written: a call that fails leaves its `out`/`grad_*`
arrays exactly as they were (a failed `accumulate=True` call loses no gradient).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = FLOAT_DTYPES
# These checks run on every kernel call, so the common case is a few identity and tuple
# comparisons; the wording of an error is only worked out once something is wrong.


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} of shape {a.shape}"


def _shape_text(shape: Sequence) -> str:
    # A free entry is a name, written as it is: (out_features, 784).
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _shape_matches(got: tuple, want: Sequence) -> bool:
    if got == want:
        return True
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):  # a plain loop: this runs on every linear call
        if g != w and w.__class__ is not str:
            return False
    return True


def check_array(a: object, name: str, like: Optional[np.ndarray] = None,
                shape: Optional[Sequence] = None, ndim: Optional[int] = None) -> np.ndarray:
    """`a` must be a float32/float64 ndarray; with `like`, of like's dtype (and shape,
    unless `shape` or `ndim` is given); with `shape`, of that shape (a str entry names a
    length that can be anything); with `ndim`, of at least that many dimensions."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array of float32 or float64, "
                        f"got {type(a).__name__}")
    dtype = a.dtype
    if like is None:
        if dtype is not _F32 and dtype is not _F64 and dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected float32 or float64, got {dtype}")
    else:
        if shape is None and ndim is None:
            shape = like.shape
        if dtype is not like.dtype and dtype != like.dtype:
            want = f"{like.dtype} of shape {_shape_text(shape)}" if shape is not None \
                else str(like.dtype)
            raise TypeError(f"{name}: expected {want} (no silent casting), got {_describe(a)}")
    if shape is not None:
        if not _shape_matches(a.shape, shape):
            raise ValueError(f"{name}: expected {dtype} of shape {_shape_text(shape)}, "
                             f"got {_describe(a)}")
    elif ndim is not None and a.ndim < ndim:
        raise ValueError(f"{name}: expected at least {ndim} dimension(s), got {_describe(a)}")
    return a


def out_array(out: object, name: str, shape: tuple, dtype: np.dtype) -> Optional[np.ndarray]:
    """Check a caller-given output array: exact dtype and shape, C-contiguous, writable.
    Returns None when none was given (the caller allocates)."""
    if out is None:
        return None
    if isinstance(out, np.ndarray) and out.dtype is dtype and out.shape == shape \
            and out.flags.carray:  # carray: C-contiguous, aligned and writable
        return out
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array of {dtype} of shape "
                        f"{_shape_text(shape)}, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected {dtype} of shape {_shape_text(shape)} "
                        f"(no silent casting), got {_describe(out)}")
    if out.shape != shape:
        raise ValueError(f"{name}: expected {dtype} of shape {_shape_text(shape)}, "
                         f"got {_describe(out)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous (it is written in place), "
                         f"got a strided {_describe(out)}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: must be writable, got a read-only {_describe(out)}")
    if not out.flags.aligned:
        raise ValueError(f"{name}: must be aligned, got an unaligned {_describe(out)}")
    return out


def as_rows(a: np.ndarray) -> np.ndarray:
    """View an array of shape (..., n) as a matrix (rows, n): leading axes are batch axes."""
    return a if a.ndim == 2 else a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def check_flag(value: object, name: str) -> bool:
    if value is not True and value is not False and not isinstance(value, np.bool_):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


# One check per kernel signature, shared by both backends. Each returns the checked
# output arrays (None where the caller gave none).

def sigmoid_forward_args(x: object, out: object) -> Optional[np.ndarray]:
    x = check_array(x, "x")
    return out_array(out, "out", x.shape, x.dtype)


def sigmoid_backward_args(grad_out: object, y: object, out: object,
                          accumulate: object) -> Optional[np.ndarray]:
    grad_out = check_array(grad_out, "grad_out")
    check_array(y, "y", like=grad_out)
    check_flag(accumulate, "accumulate")
    return out_array(out, "out", grad_out.shape, grad_out.dtype)


def bias_backward_args(grad_out: object, out: object,
                       accumulate: object) -> Optional[np.ndarray]:
    grad_out = check_array(grad_out, "grad_out", ndim=1)
    check_flag(accumulate, "accumulate")
    return out_array(out, "out", grad_out.shape[-1:], grad_out.dtype)


def _check_linear_inputs(x: object, w: object, b: object = None) -> None:
    x = check_array(x, "x", ndim=1)
    w = check_array(w, "w", like=x, shape=("out_features", x.shape[-1]))
    if b is not None:
        check_array(b, "b", like=x, shape=(w.shape[0],))


def linear_forward_args(x: np.ndarray, w: np.ndarray, b: object,
                        out: object) -> Optional[np.ndarray]:
    _check_linear_inputs(x, w, b)
    return out_array(out, "out", x.shape[:-1] + (w.shape[0],), x.dtype)


def linear_backward_args(grad_out: object, x: np.ndarray, w: np.ndarray, grad_x: object,
                         grad_w: object, grad_b: object, accumulate: object,
                         need_grad_x: object, need_grad_w: object, need_grad_b: object
                         ) -> tuple:
    _check_linear_inputs(x, w)
    check_array(grad_out, "grad_out", like=x, shape=x.shape[:-1] + (w.shape[0],))
    for flag, name in ((accumulate, "accumulate"), (need_grad_x, "need_grad_x"),
                       (need_grad_w, "need_grad_w"), (need_grad_b, "need_grad_b")):
        check_flag(flag, name)
    return (out_array(grad_x, "grad_x", x.shape, x.dtype),
            out_array(grad_w, "grad_w", w.shape, x.dtype),
            out_array(grad_b, "grad_b", (w.shape[0],), x.dtype))


def matmul_backward_args(grad_out: object, a: object, b: object, grad_a: object,
                         grad_b: object, accumulate: object, need_grad_a: object,
                         need_grad_b: object) -> tuple:
    a = check_array(a, "a", shape=("m", "k"))
    b = check_array(b, "b", like=a, shape=(a.shape[1], "n"))
    check_array(grad_out, "grad_out", like=a, shape=(a.shape[0], b.shape[1]))
    for flag, name in ((accumulate, "accumulate"), (need_grad_a, "need_grad_a"),
                       (need_grad_b, "need_grad_b")):
        check_flag(flag, name)
    return (out_array(grad_a, "grad_a", a.shape, a.dtype),
            out_array(grad_b, "grad_b", b.shape, a.dtype))


# The optimizers' updates: the parameter and its state arrays are written in place.

def check_scalar(value: object, name: str) -> float:
    """A real number (int, float or NumPy's), as a Python float; bool is refused."""
    if value.__class__ is float:
        return value  # type: ignore[return-value]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} "
                        f"{value!r}")
    return float(value)


def _state_array(a: object, name: str, param: np.ndarray, others: tuple) -> np.ndarray:
    """An array the update writes: like `param` (dtype, shape), C-contiguous, writable,
    and sharing no memory with the arrays already checked (`others`, by name)."""
    if a is None:  # out_array's None means "allocate one": not an option here
        raise TypeError(f"{name}: expected a NumPy array of {param.dtype} of shape "
                        f"{_shape_text(param.shape)}, got None")
    out_array(a, name, param.shape, param.dtype)
    for other, other_name in others:
        # Both are C-contiguous, so overlapping bounds are shared elements.
        if np.may_share_memory(a, other):
            raise ValueError(f"{name}: shares memory with {other_name}; each state array "
                             f"must be an array of its own (np.zeros_like({other_name}))")
    return a  # type: ignore[return-value]


def sgd_update_args(param: object, grad: object, momentum_buffer: object, lr: object,
                    momentum: object, dampening: object, weight_decay: object,
                    nesterov: object, maximize: object, first: object) -> tuple:
    """Checks sgd_update's arguments; returns (lr, momentum, dampening, weight_decay) as
    floats and (nesterov, maximize, first) as bools."""
    param = check_array(param, "param")
    out_array(param, "param", param.shape, param.dtype)
    check_array(grad, "grad", like=param)
    scalars = (check_scalar(lr, "lr"), check_scalar(momentum, "momentum"),
               check_scalar(dampening, "dampening"),
               check_scalar(weight_decay, "weight_decay"))
    flags = (check_flag(nesterov, "nesterov"), check_flag(maximize, "maximize"),
             check_flag(first, "first"))
    if momentum_buffer is not None:
        _state_array(momentum_buffer, "momentum_buffer", param, ((param, "param"),))
    elif scalars[1] != 0:
        raise ValueError(f"momentum_buffer: required when momentum != 0 (got momentum="
                         f"{momentum!r}); pass np.empty_like(param) with first=True on the "
                         f"first step, then the same array on every later step")
    return scalars + flags


def adam_update_args(param: object, grad: object, exp_avg: object, exp_avg_sq: object,
                     step_size: object, beta1: object, beta2: object, eps: object,
                     bias_correction2_sqrt: object) -> tuple:
    """Checks adam_update's arguments; returns (step_size, beta1, beta2, eps,
    bias_correction2_sqrt) as floats."""
    param = check_array(param, "param")
    out_array(param, "param", param.shape, param.dtype)
    check_array(grad, "grad", like=param)
    _state_array(exp_avg, "exp_avg", param, ((param, "param"),))
    _state_array(exp_avg_sq, "exp_avg_sq", param, ((param, "param"), (exp_avg, "exp_avg")))
    return (check_scalar(step_size, "step_size"), check_scalar(beta1, "beta1"),
            check_scalar(beta2, "beta2"), check_scalar(eps, "eps"),
            check_scalar(bias_correction2_sqrt, "bias_correction2_sqrt"))
