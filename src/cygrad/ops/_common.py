"""What every op shares: turning operands into Tensors (with PyTorch's type promotion),
sending a gradient to an input, and reading `dim` arguments."""
from __future__ import annotations

import builtins
import functools
import math
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

from .. import backends
from ..tensor import Tensor, TensorLike, float_dtype

Dim = Union[None, int, Sequence[int]]
_WEAK = (int, float, bool, np.generic)  # operands that never decide a result's dtype


def as_tensor(value: TensorLike, like: Optional[Tensor] = None) -> Tensor:
    """A Tensor for an operand of an op whose other operand is `like`.

    Python numbers and NumPy scalars take `like`'s dtype, and so do integer and boolean
    arrays (a float tensor outranks them, as in PyTorch): float32 * 2.0 stays float32.
    Float arrays keep their dtype; without `like`, the rules of `Tensor(value)` apply.
    """
    if isinstance(value, Tensor):
        return value
    if like is not None:
        if isinstance(value, _WEAK):
            return Tensor(np.asarray(value, dtype=like.data.dtype))
        array = np.asarray(value)
        if array.dtype.kind in "biu":
            return Tensor(array.astype(like.data.dtype))
    return Tensor(value)


def to(a: Tensor, dtype: object) -> Tensor:
    """The tensor converted to `dtype` (float32 or float64); `a` itself when it has that
    dtype already (as torch.Tensor.to). The gradient is converted back to `a`'s dtype."""
    dtype = float_dtype(dtype)
    if a.data.dtype == dtype:
        return a

    def backward(g: np.ndarray) -> None:
        a.add_grad(g.astype(a.data.dtype), owned=True)

    return Tensor.from_op(a.data.astype(dtype), (a,), backward, "to")


def binary(a: TensorLike, b: TensorLike) -> Tuple[Tensor, Tensor]:
    """Both operands as Tensors of a common dtype, by PyTorch's rule: a 0-d tensor does
    not promote a tensor with dimensions (float32 (n,) * float64 () is float32); between
    two tensors that both have dimensions, or are both 0-d, float64 wins."""
    if isinstance(a, Tensor):
        if not isinstance(b, Tensor):
            b = as_tensor(b, a)
    else:
        b = as_tensor(b)
        a = as_tensor(a, b)
    a_dtype, b_dtype = a.data.dtype, b.data.dtype
    if a_dtype is not b_dtype and a_dtype != b_dtype:
        if a.data.ndim and not b.data.ndim:
            b = to(b, a_dtype)
        elif b.data.ndim and not a.data.ndim:
            a = to(a, b_dtype)
    return a, b


def send(t: Tensor, g: np.ndarray, owned: bool = False, k=None) -> None:
    """Add gradient `g` into `t`, summing over the axes `t` was broadcast along (with the
    backend `k`'s bias_backward kernel when `t` was broadcast along leading axes only, as a
    bias is). `owned`: nobody else holds `g`, so it may become `t`'s buffer."""
    if not t.requires_grad:
        return
    data = t.data
    if g.dtype is not data.dtype and g.dtype != data.dtype:
        g, owned = g.astype(data.dtype), True
    if g.shape != data.shape:
        lead = g.ndim - data.ndim
        if k is not None and data.ndim and lead > 0 and g.shape[lead:] == data.shape:
            out, accumulate = t.grad_slot()
            rows = g.reshape(math.prod(g.shape[:lead]), data.size)
            k.bias_backward(rows, out=out.reshape(-1), accumulate=accumulate)
            return
        stretched = tuple(lead + i for i, n in enumerate(data.shape)
                          if n == 1 and g.shape[lead + i] != 1)
        axes = tuple(range(lead)) + stretched
        g, owned = g.sum(axis=axes).reshape(data.shape), True
    t.add_grad(g, owned)


Receive = Callable[[Tensor, np.ndarray, bool], None]


def operands(a: TensorLike, b: TensorLike) -> Tuple[Tensor, Tensor, Receive]:
    """`binary(a, b)`, and how the op's backward hands an input `t` its gradient:
    `receive(t, g, owned)` (the caller checks `t.requires_grad` first).

    When `a` and `b` have one shape and one dtype (the common case), so have the result,
    its gradient and each input's gradient: nothing needs reducing or casting, and
    `add_grad` takes the gradient directly. Otherwise `send` reduces it, with the kernels
    of the backend active now (the backward runs on the backend that ran the forward)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        a_data, b_data = a.data, b.data
        if a_data.dtype is b_data.dtype and a_data.shape == b_data.shape:
            return a, b, Tensor._add_own_grad
    a, b = binary(a, b)
    if a.data.shape == b.data.shape and a.data.dtype == b.data.dtype:
        return a, b, Tensor._add_own_grad
    return a, b, functools.partial(send, k=backends.active())


def numpy_names(op: str, dim: Dim, keepdim: bool, axis: Dim,
                keepdims: Optional[bool]) -> Tuple[Dim, bool]:
    """`dim`/`keepdim` (PyTorch's names, canonical) from NumPy's `axis`/`keepdims` too."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{op}: got both dim and axis (its NumPy name): pass one")
        dim = axis
    if keepdims is not None:
        keepdim = keepdims
    return dim, bool(keepdim)


def normalize_dims(op: str, dim: Dim, ndim: int) -> Tuple[int, ...]:
    """The axes `dim` names, non-negative and sorted; every axis when `dim` is None or
    empty (`dim=()`, as PyTorch reads it).

    A 0-d tensor accepts dim 0 and -1 (as in PyTorch: a loss is 0-d, and `loss.mean(0)`
    is real code) and has no axis to reduce: the result is the tensor's value."""
    if dim is None or (isinstance(dim, (tuple, list)) and not dim):
        return tuple(range(ndim))
    if isinstance(dim, (int, np.integer)):
        dims = (dim,)
    elif isinstance(dim, (tuple, list)):
        dims = tuple(dim)
    else:
        raise TypeError(f"{op}: dim: expected an int or a tuple of ints, got {dim!r}")
    size = builtins.max(ndim, 1)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"{op}: dim: expected an int or a tuple of ints, got {dim!r}")
        if not -size <= d < size:
            raise ValueError(f"{op}: dim: {d} is out of range for a tensor of {ndim} "
                             f"dimension(s): expected a value in [{-size}, {size - 1}]")
    axes = sorted({int(d) % size for d in dims})
    if len(axes) != len(dims):
        raise ValueError(f"{op}: dim: {dim!r} names an axis twice")
    return tuple(axes) if ndim else ()


def normalize_dim(op: str, dim: object, ndim: int) -> Optional[int]:
    """One axis, for ops that work along a single one (softmax, argmax, cat): None for a
    0-d tensor's dim 0 or -1."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim: expected an int, got {dim!r}")
    axes = normalize_dims(op, dim, ndim)
    return axes[0] if axes else None
