"""The reference backend: each kernel is its textbook formula, written in NumPy.

This file defines "correct". It has no speed tricks; the compiled backend is tested
against it, and it is tested against finite differences. The formulas are those of the
lecture notes: for a linear layer y = x W^T + b with upstream gradient G = dL/dy,
dL/dx = G W, dL/dW = G^T x, dL/db = sum of G over the batch; for y = sigmoid(x),
dL/dx = G * y * (1 - y).

All inputs are read before any output is written, so an output may alias an input.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from . import _checks

Array = np.ndarray
name = "reference"


def _store(value: Array, out: Optional[Array], accumulate: bool) -> Array:
    """Put a computed gradient where the caller asked: a fresh array, `out`, or out +=."""
    if out is None:
        return np.asarray(value)
    if accumulate:
        out += value  # a value used in several places gets the sum of its gradients
    else:
        out[...] = value
    return out


def sigmoid_forward(x: Array, out: Optional[Array] = None) -> Array:
    """sigmoid(x) = 1 / (1 + exp(-x)), computed as e^x / (1 + e^x) for x < 0 so that
    exp never overflows."""
    out = _checks.sigmoid_forward_args(x, out)
    with np.errstate(under="ignore"):  # e^-|x| underflowing to 0 is the right answer
        e = np.exp(-np.abs(x))
    return _store((np.where(x >= 0, 1, e) / (1 + e)).astype(x.dtype, copy=False), out, False)


def sigmoid_backward(grad_out: Array, y: Array, out: Optional[Array] = None,
                     accumulate: bool = False) -> Array:
    """d/dx sigmoid(x) = y * (1 - y), with y = sigmoid(x): dL/dx = grad_out * y * (1 - y)."""
    out = _checks.sigmoid_backward_args(grad_out, y, out, accumulate)
    # NumPy 1 casts 0-d float32 arithmetic with Python numbers up to float64: cast back.
    return _store((grad_out * y * (1 - y)).astype(y.dtype, copy=False), out, accumulate)


def bias_backward(grad_out: Array, out: Optional[Array] = None,
                  accumulate: bool = False) -> Array:
    """The bias was broadcast over every leading axis, so its gradient sums over them."""
    out = _checks.bias_backward_args(grad_out, out, accumulate)
    return _store(grad_out.sum(axis=tuple(range(grad_out.ndim - 1))), out, accumulate)


def linear_forward(x: Array, w: Array, b: Optional[Array] = None,
                   out: Optional[Array] = None) -> Array:
    """y = x W^T + b."""
    out = _checks.linear_forward_args(x, w, b, out)
    y = x @ w.T
    if b is not None:
        y = y + b
    return _store(y, out, False)


def linear_backward(grad_out: Array, x: Array, w: Array, grad_x: Optional[Array] = None,
                    grad_w: Optional[Array] = None, grad_b: Optional[Array] = None,
                    accumulate: bool = False, need_grad_x: bool = True,
                    need_grad_w: bool = True, need_grad_b: bool = True
                    ) -> Tuple[Optional[Array], Optional[Array], Optional[Array]]:
    """For y = x W^T + b: dL/dx = G W, dL/dW = G^T x, dL/db = sum of G over the batch."""
    grad_x, grad_w, grad_b = _checks.linear_backward_args(
        grad_out, x, w, grad_x, grad_w, grad_b, accumulate, need_grad_x, need_grad_w,
        need_grad_b)
    g2, x2 = _checks.as_rows(grad_out), _checks.as_rows(x)  # leading axes are batch axes
    dx = grad_out @ w if need_grad_x else None
    dw = g2.T @ x2 if need_grad_w else None
    db = g2.sum(axis=0) if need_grad_b else None
    return (_store(dx, grad_x, accumulate) if need_grad_x else None,
            _store(dw, grad_w, accumulate) if need_grad_w else None,
            _store(db, grad_b, accumulate) if need_grad_b else None)


def matmul_backward(grad_out: Array, a: Array, b: Array, grad_a: Optional[Array] = None,
                    grad_b: Optional[Array] = None, accumulate: bool = False,
                    need_grad_a: bool = True, need_grad_b: bool = True
                    ) -> Tuple[Optional[Array], Optional[Array]]:
    """For out = a @ b: dL/da = G b^T, dL/db = a^T G."""
    grad_a, grad_b = _checks.matmul_backward_args(grad_out, a, b, grad_a, grad_b, accumulate,
                                                  need_grad_a, need_grad_b)
    da = grad_out @ b.T if need_grad_a else None
    db = a.T @ grad_out if need_grad_b else None
    return (_store(da, grad_a, accumulate) if need_grad_a else None,
            _store(db, grad_b, accumulate) if need_grad_b else None)


def add_scaled(out: Array, x: Array, alpha: float) -> None:
    """out += alpha * x, in place: the optimizers' update (not a kernel of KERNEL_NAMES;
    a backend without it gets this one)."""
    out += alpha * x


def sgd_update(param: Array, grad: Array, momentum_buffer: Optional[Array] = None, *,
               lr: float, momentum: float = 0.0, dampening: float = 0.0,
               weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
               first: bool = False) -> None:
    """torch.optim.SGD's update, in place:

        d = (-grad if maximize else grad) + weight_decay * param   (when weight_decay != 0)
        buf = d if first else momentum * buf + (1 - dampening) * d (when momentum != 0)
        d = d + momentum * buf if nesterov else buf                 (when momentum != 0)
        param = param - lr * d
    """
    lr, momentum, dampening, weight_decay, nesterov, maximize, first = \
        _checks.sgd_update_args(param, grad, momentum_buffer, lr, momentum, dampening,
                                weight_decay, nesterov, maximize, first)
    real = param.dtype.type  # each scalar rounded to the dtype, as NumPy does a Python float
    d = real(-1.0 if maximize else 1.0) * grad  # a new array: grad is read before any write
    if real(weight_decay) != 0:
        d = d + real(weight_decay) * param
    if real(momentum) != 0:
        buf = momentum_buffer
        buf[...] = d if first else real(momentum) * buf + real(1.0 - dampening) * d
        d = d + real(momentum) * buf if nesterov else buf
    param[...] = param - real(lr) * d


def adam_update(param: Array, grad: Array, exp_avg: Array, exp_avg_sq: Array, *,
                step_size: float, beta1: float, beta2: float, eps: float,
                bias_correction2_sqrt: float = 1.0) -> None:
    """Adam's moments and step, in place (m = exp_avg, v = exp_avg_sq):

        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * (grad * grad)
        param = param - (step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)
    """
    step_size, beta1, beta2, eps, bias_correction2_sqrt = _checks.adam_update_args(
        param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2, eps, bias_correction2_sqrt)
    real = param.dtype.type
    m = real(beta1) * exp_avg + real(1.0 - beta1) * grad
    v = real(beta2) * exp_avg_sq + real(1.0 - beta2) * (grad * grad)
    p = param - (real(step_size) * m) / (np.sqrt(v) / real(bias_correction2_sqrt) + real(eps))
    exp_avg[...], exp_avg_sq[...], param[...] = m, v, p
