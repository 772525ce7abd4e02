"""Differentiable ops: each one's forward and backward, side by side.

An op computes its result from its inputs' `.data`, and returns `Tensor.from_op(result,
parents, backward, name)`. `backward(g)` receives dL/d(result) and adds each input's
gradient with `_send` (or straight into `grad_slot()` through a kernel). The backend that
ran the forward runs the backward. Inputs with requires_grad=False get nothing.
"""
from __future__ import annotations

import builtins
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import backends
from .tensor import Tensor, TensorLike

Axis = Union[None, int, Tuple[int, ...]]
# sum, max and pow below are the ops (Tensor.sum, ...); the builtins are builtins.sum, ...


def as_tensor(value: TensorLike, like: Optional[Tensor] = None) -> Tensor:
    """A Tensor for an operand. Python numbers take `like`'s dtype (float32 * 2.0 stays
    float32, as in NumPy 2); arrays keep theirs (non-float ones become float64)."""
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float)):
        return Tensor(np.asarray(value, dtype=like.dtype))
    return Tensor(value)


def _send(t: Tensor, g: np.ndarray, k, owned: bool = False) -> None:
    """Add gradient `g` into `t`, summing over the axes `t` was broadcast along."""
    if not t.requires_grad:
        return
    if g.dtype != t.dtype:
        g, owned = g.astype(t.dtype), True
    if g.shape != t.shape:
        lead = g.ndim - t.ndim
        if t.ndim and lead > 0 and g.shape[lead:] == t.shape:
            # Broadcast along leading axes only, as a bias is: a bias_backward kernel call.
            out, accumulate = t.grad_slot()
            rows = g.reshape(math.prod(g.shape[:lead]), t.size)
            k.bias_backward(rows, out=out.reshape(-1), accumulate=accumulate)
            return
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(t.shape) if n == 1 and g.shape[lead + i] != 1)
        g, owned = g.sum(axis=axes).reshape(t.shape), True
    t.add_grad(g, owned=owned)


def _binary(a: TensorLike, b: TensorLike) -> Tuple[Tensor, Tensor]:
    if isinstance(a, Tensor):
        return a, as_tensor(b, a)
    b = as_tensor(b)
    return as_tensor(a, b), b


# -- arithmetic ---------------------------------------------------------------------------

def add(a: TensorLike, b: TensorLike) -> Tensor:
    a, b = _binary(a, b)
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        _send(a, g, k)
        _send(b, g, k)

    return Tensor.from_op(a.data + b.data, (a, b), backward, "add")


def sub(a: TensorLike, b: TensorLike) -> Tensor:
    a, b = _binary(a, b)
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        _send(a, g, k)
        if b.requires_grad:
            _send(b, -g, k, owned=True)

    return Tensor.from_op(a.data - b.data, (a, b), backward, "sub")


def mul(a: TensorLike, b: TensorLike) -> Tensor:
    a, b = _binary(a, b)
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        # d(ab)/da = b: each input's gradient is g times the other input (the swap gate)
        if a.requires_grad:
            _send(a, g * b.data, k, owned=True)
        if b.requires_grad:
            _send(b, g * a.data, k, owned=True)

    return Tensor.from_op(a.data * b.data, (a, b), backward, "mul")


def div(a: TensorLike, b: TensorLike) -> Tensor:
    a, b = _binary(a, b)
    k = backends.active()
    out = a.data / b.data

    def backward(g: np.ndarray) -> None:
        # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
        if a.requires_grad:
            _send(a, g / b.data, k, owned=True)
        if b.requires_grad:
            _send(b, -g * out / b.data, k, owned=True)

    return Tensor.from_op(out, (a, b), backward, "div")


def pow(a: TensorLike, b: TensorLike) -> Tensor:  # noqa: A001 (the ** operator)
    a, b = _binary(a, b)
    k = backends.active()
    out = a.data ** b.data

    def backward(g: np.ndarray) -> None:
        # d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log(a)
        if a.requires_grad:
            _send(a, g * b.data * a.data ** (b.data - 1), k, owned=True)
        if b.requires_grad:
            _send(b, g * out * np.log(a.data), k, owned=True)

    return Tensor.from_op(out, (a, b), backward, "pow")


def neg(a: Tensor) -> Tensor:
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        _send(a, -g, k, owned=True)

    return Tensor.from_op(-a.data, (a,), backward, "neg")


def maximum(a: TensorLike, b: TensorLike) -> Tensor:
    """Element-wise max. The gradient goes to the larger input; a tie splits it evenly."""
    a, b = _binary(a, b)
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        share_a = (a.data > b.data) + 0.5 * (a.data == b.data)
        if a.requires_grad:
            _send(a, g * share_a, k, owned=True)
        if b.requires_grad:
            _send(b, g * (1 - share_a), k, owned=True)

    return Tensor.from_op(np.maximum(a.data, b.data), (a, b), backward, "maximum")


# -- matrix product -----------------------------------------------------------------------

def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    a, b = _binary(a, b)
    k = backends.active()
    out = np.matmul(a.data, b.data)
    if a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype:
        def backward(g: np.ndarray) -> None:
            # Each input's gradient written straight into its buffer by the kernel.
            for t, need_a in ((a, True), (b, False)):
                if t.requires_grad:
                    buffer, accumulate = t.grad_slot()
                    k.matmul_backward(g, a.data, b.data, accumulate=accumulate,
                                      need_grad_a=need_a, need_grad_b=not need_a,
                                      **{"grad_a" if need_a else "grad_b": buffer})
    else:
        def backward(g: np.ndarray) -> None:
            # 1-D operands are promoted to matrices (as np.matmul does), stacks broadcast.
            a2 = a.data[None, :] if a.ndim == 1 else a.data
            b2 = b.data[:, None] if b.ndim == 1 else b.data
            g2 = g.reshape(np.matmul(a2, b2).shape)
            if a.requires_grad:
                ga = np.matmul(g2, np.swapaxes(b2, -1, -2))
                _send(a, ga[..., 0, :] if a.ndim == 1 else ga, k, owned=True)
            if b.requires_grad:
                gb = np.matmul(np.swapaxes(a2, -1, -2), g2)
                _send(b, gb[..., 0] if b.ndim == 1 else gb, k, owned=True)

    return Tensor.from_op(out, (a, b), backward, "matmul")


# -- reductions ---------------------------------------------------------------------------

def _normalize_axis(axis: Axis, ndim: int) -> Tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < builtins.max(ndim, 1):
            raise ValueError(f"axis: {ax} is out of range for a tensor of {ndim} dimension(s)")
    return tuple(sorted(int(ax) % builtins.max(ndim, 1) for ax in axes))


def _expand(g: np.ndarray, axes: Tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Put back the reduced axes as length-1 axes, so `g` broadcasts over the input."""
    return g if keepdims else np.expand_dims(g, axes)


def sum(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    axes = _normalize_axis(axis, a.ndim)
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        # every summed element gets the whole upstream gradient
        _send(a, np.broadcast_to(_expand(g, axes, keepdims), a.shape), k)

    return Tensor.from_op(np.asarray(a.data.sum(axis=axes, keepdims=keepdims)), (a,),
                          backward, "sum")


def mean(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    axes = _normalize_axis(axis, a.ndim)
    count = math.prod(a.shape[ax] for ax in axes)
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        share = _expand(g, axes, keepdims) / np.asarray(count, dtype=g.dtype)
        _send(a, np.broadcast_to(share, a.shape), k)

    return Tensor.from_op(np.asarray(a.data.mean(axis=axes, keepdims=keepdims)), (a,),
                          backward, "mean")


def max(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Largest element(s). The gradient goes to the maximum; ties split it evenly."""
    axes = _normalize_axis(axis, a.ndim)
    if a.size == 0:
        raise ValueError("max: the tensor is empty")
    out = np.asarray(a.data.max(axis=axes, keepdims=True))
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        winners = a.data == out
        share = winners / winners.sum(axis=axes, keepdims=True)
        _send(a, (_expand(g, axes, keepdims) * share).astype(a.dtype, copy=False), k,
              owned=True)

    result = out if keepdims else np.asarray(out.squeeze(axis=axes))
    return Tensor.from_op(result, (a,), backward, "max")


# -- element-wise functions ---------------------------------------------------------------

def exp(a: Tensor) -> Tensor:
    k = backends.active()
    y = np.exp(a.data)

    def backward(g: np.ndarray) -> None:
        _send(a, g * y, k, owned=True)  # d e^x/dx = e^x: reuse the output

    return Tensor.from_op(y, (a,), backward, "exp")


def log(a: Tensor) -> Tensor:
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        _send(a, g / a.data, k, owned=True)

    return Tensor.from_op(np.log(a.data), (a,), backward, "log")


def sigmoid(a: Tensor) -> Tensor:
    k = backends.active()
    y = k.sigmoid_forward(a.data)

    def backward(g: np.ndarray) -> None:
        # d/dx = y * (1 - y): reuse the output, no second exp
        out, accumulate = a.grad_slot()
        k.sigmoid_backward(g, y, out=out, accumulate=accumulate)

    return Tensor.from_op(y, (a,), backward, "sigmoid")


def tanh(a: Tensor) -> Tensor:
    k = backends.active()
    y = np.tanh(a.data)

    def backward(g: np.ndarray) -> None:
        _send(a, g * (1 - y * y), k, owned=True)

    return Tensor.from_op(y, (a,), backward, "tanh")


def relu(a: Tensor) -> Tensor:
    k = backends.active()
    y = np.maximum(a.data, 0)

    def backward(g: np.ndarray) -> None:
        _send(a, g * (a.data > 0), k, owned=True)  # the gradient at 0 is taken as 0

    return Tensor.from_op(y, (a,), backward, "relu")


# -- shape --------------------------------------------------------------------------------

def reshape(a: Tensor, *shape: Union[int, Sequence[int]]) -> Tensor:
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0])
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        _send(a, g.reshape(a.shape), k)

    return Tensor.from_op(a.data.reshape(shape), (a,), backward, "reshape")


def transpose(a: Tensor, *axes: Union[int, Sequence[int]]) -> Tensor:
    """Permute the axes (reverse them when none are given), as ndarray.transpose."""
    if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
        axes = tuple(axes[0])
    perm = tuple(axes) if axes else tuple(reversed(range(a.ndim)))
    inverse = np.argsort([ax % a.ndim for ax in perm])  # negative axes count from the end
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        _send(a, g.transpose(inverse), k)

    return Tensor.from_op(a.data.transpose(perm), (a,), backward, "transpose")


def getitem(a: Tensor, index: object) -> Tensor:
    if isinstance(index, Tensor):
        index = index.data.astype(np.intp)
    k = backends.active()

    def backward(g: np.ndarray) -> None:
        full = np.zeros(a.shape, a.dtype)
        np.add.at(full, index, g)  # repeated indices add up
        _send(a, full, k, owned=True)

    return Tensor.from_op(np.asarray(a.data[index]), (a,), backward, "getitem")


# -- binding to Tensor --------------------------------------------------------------------

def _reflected(op):
    return lambda self, other: op(other, self)


for _name, _op in {"__add__": add, "__sub__": sub, "__mul__": mul, "__truediv__": div,
                   "__pow__": pow, "__matmul__": matmul, "__radd__": _reflected(add),
                   "__rsub__": _reflected(sub), "__rmul__": _reflected(mul),
                   "__rtruediv__": _reflected(div), "__rpow__": _reflected(pow),
                   "__rmatmul__": _reflected(matmul), "__neg__": neg,
                   "__getitem__": getitem, "sum": sum, "mean": mean, "max": max, "exp": exp,
                   "log": log, "sigmoid": sigmoid, "tanh": tanh, "relu": relu,
                   "reshape": reshape, "transpose": transpose}.items():
    setattr(Tensor, _name, _op)
Tensor.T = property(transpose, doc="The tensor with its axes reversed.")
