"""Element-wise functions of one tensor. Where a derivative is undefined or its formula
degenerates, each op takes PyTorch's value, stated in its docstring."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import backends
from ..tensor import Tensor
from ._common import send


def exp(a: Tensor) -> Tensor:
    """e^a; d/da = e^a."""
    y = np.exp(a.data)

    def backward(g: np.ndarray) -> None:
        send(a, g * y, owned=True)  # reuse the output

    return Tensor.from_op(y, (a,), backward, "exp")


def log(a: Tensor) -> Tensor:
    """Natural logarithm; d/da = 1/a, which is inf at a == 0 (as in PyTorch)."""
    def backward(g: np.ndarray) -> None:
        with np.errstate(divide="ignore"):  # 1/0 = inf is the stated value
            send(a, g / a.data, owned=True)

    return Tensor.from_op(np.log(a.data), (a,), backward, "log")


def sqrt(a: Tensor) -> Tensor:
    """Square root; d/da = 1 / (2 sqrt(a)), which is inf at a == 0 (as in PyTorch)."""
    y = np.sqrt(a.data)

    def backward(g: np.ndarray) -> None:
        with np.errstate(divide="ignore"):
            send(a, g / (2 * y), owned=True)

    return Tensor.from_op(y, (a,), backward, "sqrt")


def sign(x: np.ndarray) -> np.ndarray:
    """np.sign with PyTorch's sign(nan) = 0: the derivative of |x| (and of losses built on
    it) at a nan input."""
    return np.where(np.isnan(x), np.zeros((), x.dtype), np.sign(x))


def abs(a: Tensor) -> Tensor:  # noqa: A001 (torch.abs)
    """|a|; d/da = sign(a), which is 0 at a == 0 and at a == nan (PyTorch's sign(nan)).
    A product, not a mask: an inf gradient at a == 0 gives nan, as in PyTorch."""
    def backward(g: np.ndarray) -> None:
        send(a, g * sign(a.data), owned=True)

    return Tensor.from_op(np.abs(a.data), (a,), backward, "abs")


def sigmoid(a: Tensor) -> Tensor:
    """1 / (1 + e^-a); d/da = y (1 - y) with y the output."""
    k = backends.active()  # the backward runs on the backend that ran the forward
    y = k.sigmoid_forward(a.data)

    def backward(g: np.ndarray) -> None:
        # d/dx = y * (1 - y): reuse the output, no second exp
        out, accumulate = a.grad_slot()
        k.sigmoid_backward(g, y, out=out, accumulate=accumulate)

    return Tensor.from_op(y, (a,), backward, "sigmoid")


def tanh(a: Tensor) -> Tensor:
    """tanh(a); d/da = 1 - y^2 with y the output."""
    y = np.tanh(a.data)

    def backward(g: np.ndarray) -> None:
        send(a, g * (1 - y * y), owned=True)

    return Tensor.from_op(y, (a,), backward, "tanh")


def relu(a: Tensor) -> Tensor:
    """max(a, 0); d/da = 0 where a <= 0 (also at a == 0), else 1, as in PyTorch: where
    a <= 0 the gradient is 0 even if the incoming one is inf or nan, and where a is nan
    the incoming gradient passes."""
    y = np.maximum(a.data, 0)

    def backward(g: np.ndarray) -> None:
        send(a, np.where(a.data <= 0, 0, g), owned=True)  # a mask, not a product: 0 * inf

    return Tensor.from_op(y, (a,), backward, "relu")


def _bound(name: str, value: object) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) \
            and not isinstance(value, bool):
        return float(value)  # a Python float: the tensor's dtype decides the result's
    raise TypeError(f"clamp: {name}: expected a number or None, got {type(value).__name__}"
                    f" (tensor bounds are not supported: use cg.maximum/cg.minimum)")


def clamp(a: Tensor, min: Optional[float] = None,  # noqa: A002 (PyTorch's names)
          max: Optional[float] = None) -> Tensor:  # noqa: A002
    """a limited to [min, max] (either bound may be None): minimum(maximum(a, min), max),
    so where min > max every element is max, as in PyTorch. d/da = 1 where
    min <= a <= max (the bounds included, as in PyTorch), else 0 (also when the incoming
    gradient is inf or nan, as in PyTorch)."""
    low, high = _bound("min", min), _bound("max", max)
    if low is None and high is None:
        raise ValueError("clamp: expected at least one of min and max to be a number")
    y = a.data if low is None else np.maximum(a.data, low)
    y = y if high is None else np.minimum(y, high)

    def backward(g: np.ndarray) -> None:
        inside = np.ones(a.data.shape, bool) if low is None else a.data >= low
        if high is not None:
            inside &= a.data <= high
        send(a, np.where(inside, g, 0), owned=True)

    return Tensor.from_op(np.asarray(y), (a,), backward, "clamp")
