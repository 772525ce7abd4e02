"""The public kernel API: cygrad's kernels on plain NumPy arrays, for any autodiff engine.

Each function runs on the active backend (`cygrad.get_backend()`). The contract:

- Arrays are float32 or float64 and all arguments of a call share one dtype (no silent
  casting: a mismatch is a TypeError naming the argument).
- Inputs may have any memory layout; C-contiguous inputs are used without a copy.
- `out` / `grad_*` arrays are optional. When given, they must have the documented shape and
  dtype, be C-contiguous and writable (else ValueError/TypeError); they are written in place
  and returned (the very same objects). With `accumulate=True` the result is added into
  them (`grad += ...`, the rule for a value used in several places); the compiled backend
  does this without a temporary the size of the gradient.
- Inputs are read as they were when the call began, even if an output overlaps them.
- Checks run before anything is written: a call that raises leaves its outputs untouched.
- NaN and infinity propagate as in the NumPy formulas; nothing turns a NaN into a number.

Shapes follow PyTorch: a linear layer has `x` (..., in_features), `w` (out_features,
in_features), `b` (out_features,), and computes `y = x @ w.T + b`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from . import backends

Array = np.ndarray


def sigmoid_forward(x: Array, out: Optional[Array] = None) -> Array:
    """`1 / (1 + exp(-x))` element-wise, any shape. Stable: never overflows, so x = -1000
    gives a tiny non-negative number (here 0) and x = 1000 gives exactly 1. `out` may be `x`
    itself (in place)."""
    return backends.active().sigmoid_forward(x, out=out)


def sigmoid_backward(grad_out: Array, y: Array, out: Optional[Array] = None,
                     accumulate: bool = False) -> Array:
    """`grad_out * y * (1 - y)` element-wise, where `y = sigmoid(x)` is the forward's
    output (so no exp is recomputed). `grad_out`, `y`, `out`: one shape, any ndim. `out`
    may be `grad_out` itself (in place)."""
    return backends.active().sigmoid_backward(grad_out, y, out=out, accumulate=accumulate)


def bias_backward(grad_out: Array, out: Optional[Array] = None,
                  accumulate: bool = False) -> Array:
    """The gradient of a bias broadcast over every leading axis: `grad_out` (..., n) summed
    over every axis but the last, giving shape (n,). `grad_out` needs `ndim >= 1`."""
    return backends.active().bias_backward(grad_out, out=out, accumulate=accumulate)


def linear_forward(x: Array, w: Array, b: Optional[Array] = None,
                   out: Optional[Array] = None) -> Array:
    """`x @ w.T + b`: x (..., in_features), w (out_features, in_features), b (out_features,)
    or None; out (..., out_features)."""
    return backends.active().linear_forward(x, w, b, out=out)


def linear_backward(grad_out: Array, x: Array, w: Array, grad_x: Optional[Array] = None,
                    grad_w: Optional[Array] = None, grad_b: Optional[Array] = None,
                    accumulate: bool = False, need_grad_x: bool = True,
                    need_grad_w: bool = True, need_grad_b: bool = True
                    ) -> Tuple[Optional[Array], Optional[Array], Optional[Array]]:
    """Gradients of `y = x @ w.T + b` given `grad_out` = dL/dy (..., out_features):
    returns `(grad_x, grad_w, grad_b)` = `(grad_out @ w, grad_out.T @ x, grad_out.sum(0))`
    (leading axes of x and grad_out flattened into one batch axis). An output whose
    `need_grad_*` is False is not computed and is returned as None."""
    return backends.active().linear_backward(
        grad_out, x, w, grad_x=grad_x, grad_w=grad_w, grad_b=grad_b, accumulate=accumulate,
        need_grad_x=need_grad_x, need_grad_w=need_grad_w, need_grad_b=need_grad_b)


def matmul_backward(grad_out: Array, a: Array, b: Array, grad_a: Optional[Array] = None,
                    grad_b: Optional[Array] = None, accumulate: bool = False,
                    need_grad_a: bool = True, need_grad_b: bool = True
                    ) -> Tuple[Optional[Array], Optional[Array]]:
    """Gradients of `out = a @ b` for 2-D a (m, k), b (k, n), given `grad_out` (m, n):
    returns `(grad_a, grad_b)` = `(grad_out @ b.T, a.T @ grad_out)`; one not needed is None."""
    return backends.active().matmul_backward(
        grad_out, a, b, grad_a=grad_a, grad_b=grad_b, accumulate=accumulate,
        need_grad_a=need_grad_a, need_grad_b=need_grad_b)


def sgd_update(param: Array, grad: Array, momentum_buffer: Optional[Array] = None, *,
               lr: float, momentum: float = 0.0, dampening: float = 0.0,
               weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
               first: bool = False) -> None:
    """`torch.optim.SGD`'s update of one parameter, in place (the compiled backend: one
    pass, no temporary). Returns None. With `d` a temporary of the formula only:

        d = (-grad if maximize else grad) + weight_decay * param  (term skipped when 0)
        when momentum != 0:
            momentum_buffer = d                                          if first
            momentum_buffer = momentum * momentum_buffer + (1 - dampening) * d   else
            d = d + momentum * momentum_buffer if nesterov else momentum_buffer
        param -= lr * d

    `param` and `momentum_buffer` are written: C-contiguous, writable, of one shape and
    dtype, sharing no memory. `momentum_buffer` is needed when momentum != 0 (on the first
    step its contents are ignored: `np.empty_like(param)` with `first=True`). `grad` has
    param's shape and dtype, any layout. Scalars are rounded to the dtype, as NumPy does
    with a Python float; each operation is rounded in that order (no fused multiply-add),
    so both backends give the same bits."""
    backends.optional_kernel("sgd_update")(
        param, grad, momentum_buffer, lr=lr, momentum=momentum, dampening=dampening,
        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize, first=first)


def adam_update(param: Array, grad: Array, exp_avg: Array, exp_avg_sq: Array, *,
                step_size: float, beta1: float, beta2: float, eps: float,
                bias_correction2_sqrt: float = 1.0) -> None:
    """Adam's moments and step for one parameter, in place (the compiled backend: one pass,
    no temporary). Returns None. With m = exp_avg and v = exp_avg_sq:

        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * (grad * grad)
        param -= (step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)

    At step t, `torch.optim.Adam` has step_size = lr / (1 - beta1**t) and
    bias_correction2_sqrt = sqrt(1 - beta2**t); scikit-learn's adam has
    step_size = lr * sqrt(1 - beta2**t) / (1 - beta1**t) and bias_correction2_sqrt = 1.
    Weight decay, maximize and amsgrad are the caller's (pass the gradient they give).
    `param`, `exp_avg`, `exp_avg_sq` are written: C-contiguous, writable, of one shape
    and dtype, sharing no memory; `grad` has that shape and dtype, any layout. Scalars are
    rounded to the dtype and each operation in that order, so both backends agree bit for
    bit."""
    backends.optional_kernel("adam_update")(
        param, grad, exp_avg, exp_avg_sq, step_size=step_size, beta1=beta1, beta2=beta2,
        eps=eps, bias_correction2_sqrt=bias_correction2_sqrt)


__all__ = list(backends.KERNEL_NAMES) + list(backends.OPTIONAL_KERNEL_NAMES)
