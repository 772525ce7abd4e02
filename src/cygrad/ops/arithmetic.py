"""Arithmetic: the operators `+ - * / ** @`, unary `-`, and element-wise maximum/minimum.
Operands broadcast as in NumPy; dtypes follow `binary`'s rule (docs/dtypes.md)."""
from __future__ import annotations

import numpy as np

from .. import backends
from ..tensor import Tensor, TensorLike
from ._common import binary, operands, send


def add(a: TensorLike, b: TensorLike) -> Tensor:
    """a + b."""
    a, b, receive = operands(a, b)

    def backward(g: np.ndarray) -> None:
        if a.requires_grad:
            receive(a, g, False)
        if b.requires_grad:
            receive(b, g, False)

    return Tensor.from_op(a.data + b.data, (a, b), backward, "add")


def sub(a: TensorLike, b: TensorLike) -> Tensor:
    """a - b."""
    a, b, receive = operands(a, b)

    def backward(g: np.ndarray) -> None:
        if a.requires_grad:
            receive(a, g, False)
        if b.requires_grad:
            receive(b, -g, True)

    return Tensor.from_op(a.data - b.data, (a, b), backward, "sub")


def mul(a: TensorLike, b: TensorLike) -> Tensor:
    """a * b."""
    a, b, receive = operands(a, b)

    def backward(g: np.ndarray) -> None:
        # d(ab)/da = b: each input's gradient is g times the other input (the swap gate)
        if a.requires_grad:
            receive(a, g * b.data, True)
        if b.requires_grad:
            receive(b, g * a.data, True)

    return Tensor.from_op(a.data * b.data, (a, b), backward, "mul")


def div(a: TensorLike, b: TensorLike) -> Tensor:
    """a / b."""
    a, b, receive = operands(a, b)
    out = a.data / b.data

    def backward(g: np.ndarray) -> None:
        # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
        if a.requires_grad:
            receive(a, g / b.data, True)
        if b.requires_grad:
            receive(b, -g * out / b.data, True)

    return Tensor.from_op(out, (a, b), backward, "div")


def pow(a: TensorLike, b: TensorLike) -> Tensor:  # noqa: A001 (the ** operator)
    """a ** b. d/da = b a^(b-1), d/db = a^b log(a), with PyTorch's conventions where those
    formulas degenerate: d/da is 0 where b == 0 (the formula gives 0 * inf = nan at
    a == 0), and d/db is 0 where a == 0 and b >= 0 (0 * log 0 = 0 * -inf there).
    Elsewhere the formulas' values stand: d/da = inf at a == 0 for 0 < b < 1, and nan
    for a < 0 with a fractional b."""
    a, b = binary(a, b)
    k = backends.active()
    out = a.data ** b.data

    def backward(g: np.ndarray) -> None:
        # The masked points are replaced below: their warnings would be noise.
        with np.errstate(divide="ignore", invalid="ignore"):
            if a.requires_grad:
                grad = g * b.data * a.data ** (b.data - 1)
                zero_exponent = b.data == 0
                if zero_exponent.any():
                    grad = np.where(zero_exponent, 0, grad)
                send(a, grad, owned=True, k=k)
            if b.requires_grad:
                # in the result's dtype, as PyTorch: a float32 base of a float64 power
                log_a = np.log(a.data.astype(out.dtype, copy=False))
                zero_base = (a.data == 0) & (b.data >= 0)
                if zero_base.any():
                    log_a = np.where(zero_base, 0, log_a)
                send(b, g * out * log_a, owned=True, k=k)

    return Tensor.from_op(out, (a, b), backward, "pow")


def neg(a: Tensor) -> Tensor:
    """-a."""
    def backward(g: np.ndarray) -> None:
        send(a, -g, owned=True)

    return Tensor.from_op(-a.data, (a,), backward, "neg")


def _select(a: Tensor, b: Tensor, out: np.ndarray, name: str) -> Tensor:
    """The element-wise max/min of a and b. The gradient goes to the input the value
    came from; a tie splits it evenly, and the other input gets 0 even if the gradient is
    inf or nan. Where either input is nan (no order), both get the whole gradient.
    These are PyTorch's conventions: for maximum, d/da = g/2 where a == b, 0 where a < b,
    else g (and d/db the same with a and b swapped)."""
    k = backends.active()
    below = np.less if name == "maximum" else np.greater  # below(x, y): x is not taken

    def backward(g: np.ndarray) -> None:
        shared = np.where(a.data == b.data, g * 0.5, g)
        if a.requires_grad:
            send(a, np.where(below(a.data, b.data), 0, shared), owned=True, k=k)
        if b.requires_grad:
            send(b, np.where(below(b.data, a.data), 0, shared), owned=True, k=k)

    return Tensor.from_op(out, (a, b), backward, name)


def maximum(a: TensorLike, b: TensorLike) -> Tensor:
    """Element-wise max(a, b) (nan where either is nan). The gradient goes to the larger
    input; a tie splits it evenly (g/2 each); where either is nan, both inputs get g, as
    in PyTorch."""
    a, b = binary(a, b)
    return _select(a, b, np.maximum(a.data, b.data), "maximum")


def minimum(a: TensorLike, b: TensorLike) -> Tensor:
    """Element-wise min(a, b) (nan where either is nan). The gradient goes to the smaller
    input; a tie splits it evenly (g/2 each); where either is nan, both inputs get g, as
    in PyTorch."""
    a, b = binary(a, b)
    return _select(a, b, np.minimum(a.data, b.data), "minimum")


def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """a @ b, as np.matmul: 1-D operands are promoted to matrices, stacks broadcast."""
    a, b = binary(a, b)
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
            a2 = a.data[None, :] if a.ndim == 1 else a.data
            b2 = b.data[:, None] if b.ndim == 1 else b.data
            g2 = g.reshape(np.matmul(a2, b2).shape)
            if a.requires_grad:
                ga = np.matmul(g2, np.swapaxes(b2, -1, -2))
                send(a, ga[..., 0, :] if a.ndim == 1 else ga, owned=True, k=k)
            if b.requires_grad:
                gb = np.matmul(np.swapaxes(a2, -1, -2), g2)
                send(b, gb[..., 0] if b.ndim == 1 else gb, owned=True, k=k)

    return Tensor.from_op(out, (a, b), backward, "matmul")
