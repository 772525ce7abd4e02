"""Reductions (sum, mean, var, std, max, min, argmax, argmin) and softmax/log_softmax along
a dim.

Each takes PyTorch's `dim`/`keepdim` (canonical) and, but for var and std, NumPy's
`axis`/`keepdims`; `dim` may be an int or, for sum/mean/var/std/max/min, a tuple. A 0-d
tensor accepts dim 0 and -1, as in PyTorch (`loss.mean(0)` is the loss)."""
from __future__ import annotations

import builtins
import math
from typing import Optional

import numpy as np

from ..tensor import Tensor
from ._common import Dim, normalize_dim, normalize_dims, numpy_names, send


def _expand(g: np.ndarray, axes, keepdim: bool) -> np.ndarray:
    """Put back the reduced axes as length-1 axes, so `g` broadcasts over the input."""
    return g if keepdim else np.expand_dims(g, axes)


def sum(a: Tensor, dim: Dim = None, keepdim: bool = False, *,  # noqa: A001
        axis: Dim = None, keepdims: Optional[bool] = None) -> Tensor:
    """Sum over `dim` (every axis when None); d/da = 1 for every summed element."""
    if axis is not None or keepdims is not None:
        dim, keepdim = numpy_names("sum", dim, keepdim, axis, keepdims)
    axes = normalize_dims("sum", dim, a.data.ndim)

    def backward(g: np.ndarray) -> None:
        # add_grad broadcasts g over the summed axes (a reduction to 0-d needs no expand)
        if a.requires_grad:
            a.add_grad(g if g.ndim == 0 else _expand(g, axes, keepdim))

    return Tensor.from_op(np.asarray(a.data.sum(axis=axes, keepdims=keepdim)), (a,),
                          backward, "sum")


def mean(a: Tensor, dim: Dim = None, keepdim: bool = False, *,
         axis: Dim = None, keepdims: Optional[bool] = None) -> Tensor:
    """Mean over `dim` (every axis when None); d/da = 1/N for each of the N elements.
    Over no elements (N == 0) the mean is nan, as in PyTorch."""
    if axis is not None or keepdims is not None:
        dim, keepdim = numpy_names("mean", dim, keepdim, axis, keepdims)
    axes = normalize_dims("mean", dim, a.data.ndim)
    count = math.prod(a.data.shape[ax] for ax in axes)
    if count:
        out = np.asarray(a.data.mean(axis=axes, keepdims=keepdim))
    else:  # the mean of nothing is nan, as in PyTorch (without NumPy's warning)
        out = np.full(a.data.sum(axis=axes, keepdims=keepdim).shape, np.nan, a.data.dtype)

    def backward(g: np.ndarray) -> None:
        # count == 0: `a` is empty, and so is its gradient; 1 avoids dividing by 0
        if a.requires_grad:  # add_grad broadcasts the share over the averaged axes
            share = g if g.ndim == 0 else _expand(g, axes, keepdim)
            a.add_grad(share / np.asarray(count or 1, dtype=g.dtype), owned=True)

    return Tensor.from_op(out, (a,), backward, "mean")


def var(a: Tensor, dim: Dim = None, unbiased: Optional[bool] = None, keepdim: bool = False,
        *, correction: Optional[float] = None) -> Tensor:
    """Variance over `dim` (every axis when None): sum((a - mean)^2) / (N - correction),
    correction 1 by default (Bessel's), as torch.var; `unbiased=False` is correction 0.
    d/da = 2 (a - mean) / (N - correction). Where N <= correction the divisor is 0, as
    in PyTorch: nan for a sum of 0 (a single element), else inf."""
    if unbiased is not None and correction is not None:
        raise TypeError("var: got both unbiased and correction: pass one")
    if correction is None:
        correction = 0 if unbiased is False else 1
    if isinstance(correction, bool) or not isinstance(correction, (int, float)):
        raise TypeError(f"var: correction: expected a number, got {correction!r}")
    axes = normalize_dims("var", dim, a.data.ndim)
    count = math.prod(a.data.shape[ax] for ax in axes)
    centered = a.data - a.data.mean(axis=axes, keepdims=True) if count else a.data
    divisor = builtins.max(0, count - correction)
    scale = np.asarray(1 / divisor if divisor else np.inf, a.data.dtype)
    with np.errstate(invalid="ignore"):  # 0 * inf: nan, PyTorch's 0 / 0
        out = np.asarray((centered * centered).sum(axis=axes, keepdims=keepdim) * scale)

    def backward(g: np.ndarray) -> None:
        if a.requires_grad:
            share = g if g.ndim == 0 else _expand(g, axes, keepdim)
            with np.errstate(invalid="ignore"):
                a.add_grad(share * (2 * scale) * centered, owned=True)

    return Tensor.from_op(out, (a,), backward, "var")


def std(a: Tensor, dim: Dim = None, unbiased: Optional[bool] = None, keepdim: bool = False,
        *, correction: Optional[float] = None) -> Tensor:
    """Standard deviation: the square root of `var` with the same arguments, as
    torch.std; its gradient is nan where it is 0, as PyTorch's."""
    return var(a, dim, unbiased, keepdim, correction=correction).sqrt()


def _extreme(a: Tensor, dim: Dim, keepdim: bool, pick, name: str) -> Tensor:
    axes = normalize_dims(name, dim, a.data.ndim)
    if any(a.data.shape[ax] == 0 for ax in axes):
        raise ValueError(f"{name}: the tensor of shape {a.shape} is empty along the "
                         f"reduced dim(s) {axes}: there is no {name}imum")
    out = np.asarray(pick(a.data, axis=axes, keepdims=True))

    def backward(g: np.ndarray) -> None:
        winners = a.data == out
        if dim is None and np.isnan(out).any():  # the result is nan: the nans share g
            winners = np.isnan(a.data)
        # PyTorch: the full reduction masks (the others get 0 even when g is inf or nan),
        # the reduction along dims multiplies (inf * 0 is nan there, as in torch.amax; and
        # a nan result has no winner: g / 0 * 0 is nan for its whole slice).
        with np.errstate(divide="ignore", invalid="ignore"):
            share = _expand(g, axes, keepdim) / winners.sum(axis=axes, keepdims=True)
            grad = np.where(winners, share, 0) if dim is None else share * winners
        send(a, grad.astype(a.data.dtype, copy=False), owned=True)

    result = out if keepdim else np.asarray(out.squeeze(axis=axes))
    return Tensor.from_op(result, (a,), backward, name)


def max(a: Tensor, dim: Dim = None, keepdim: bool = False, *,  # noqa: A001
        axis: Dim = None, keepdims: Optional[bool] = None) -> Tensor:
    """Largest element(s) over `dim` (every axis when None); nan if any is nan. The
    gradient goes to the maximum; ties split it evenly, as torch.max() and torch.amax do.
    At a nan result, as in PyTorch: without a dim the nan elements share the gradient;
    with a dim (torch.amax) every element of that slice gets nan.

    With a dim this returns the values only (torch.amax), not PyTorch's (values, indices)
    pair: use `argmax(dim)` for the indices. torch.max(dim)'s gradient goes to the one
    index it returns; the even split here is the same for every tie, whichever index."""
    if axis is not None or keepdims is not None:
        dim, keepdim = numpy_names("max", dim, keepdim, axis, keepdims)
    return _extreme(a, dim, keepdim, np.max, "max")


def min(a: Tensor, dim: Dim = None, keepdim: bool = False, *,  # noqa: A001
        axis: Dim = None, keepdims: Optional[bool] = None) -> Tensor:
    """Smallest element(s) over `dim`: as `max` (values only, ties split evenly, the
    same conventions at nan)."""
    if axis is not None or keepdims is not None:
        dim, keepdim = numpy_names("min", dim, keepdim, axis, keepdims)
    return _extreme(a, dim, keepdim, np.min, "min")


def _arg(a: Tensor, dim: Optional[int], keepdim: bool, pick, name: str) -> np.ndarray:
    if dim is None:  # an index into the flattened tensor
        if a.data.size == 0:
            raise ValueError(f"{name}: the tensor is empty")
        index = pick(a.data.reshape(-1))
        return np.full((1,) * a.data.ndim if keepdim else (), index, np.int64)
    axis = normalize_dim(name, dim, a.data.ndim)
    if axis is None:  # a 0-d tensor: its one element
        return np.zeros((), np.int64)
    if a.data.shape[axis] == 0:
        raise ValueError(f"{name}: the tensor of shape {a.shape} is empty along dim {dim}")
    return np.asarray(pick(a.data, axis=axis, keepdims=keepdim), np.int64)


def argmax(a: Tensor, dim: Optional[int] = None, keepdim: bool = False, *,
           axis: Optional[int] = None, keepdims: Optional[bool] = None) -> np.ndarray:
    """Index of the largest element along `dim` (into the flattened tensor when None),
    as an int64 NumPy array (indices have no gradient). A tie gives the first index,
    as in PyTorch."""
    if axis is not None or keepdims is not None:
        dim, keepdim = numpy_names("argmax", dim, keepdim, axis, keepdims)
    return _arg(a, dim, keepdim, np.argmax, "argmax")


def argmin(a: Tensor, dim: Optional[int] = None, keepdim: bool = False, *,
           axis: Optional[int] = None, keepdims: Optional[bool] = None) -> np.ndarray:
    """Index of the smallest element along `dim`: as `argmax`."""
    if axis is not None or keepdims is not None:
        dim, keepdim = numpy_names("argmin", dim, keepdim, axis, keepdims)
    return _arg(a, dim, keepdim, np.argmin, "argmin")


def _along(name: str, a: Tensor, dim: object):
    axis = normalize_dim(name, dim, a.data.ndim)
    return () if axis is None else axis  # () reduces nothing: a 0-d tensor


def _empty(a: Tensor, name: str) -> Tensor:
    """softmax/log_softmax of a tensor with no elements: an empty result, as in PyTorch
    (the maximum they subtract does not exist)."""
    return Tensor.from_op(a.data.copy(), (a,), lambda g: send(a, g.copy(), owned=True),
                          name)


def softmax(a: Tensor, dim: int) -> Tensor:
    """e^a / sum(e^a) along `dim`, computed as e^(a - max) so that no exp overflows.
    d/da: y * (g - sum(g * y)), with y the output."""
    axis = _along("softmax", a, dim)
    if a.data.size == 0:
        return _empty(a, "softmax")
    shifted = a.data - a.data.max(axis=axis, keepdims=True)
    y = np.exp(shifted)
    y /= y.sum(axis=axis, keepdims=True)

    def backward(g: np.ndarray) -> None:
        send(a, y * (g - (g * y).sum(axis=axis, keepdims=True)), owned=True)

    return Tensor.from_op(y, (a,), backward, "softmax")


def log_softmax(a: Tensor, dim: int) -> Tensor:
    """a - log(sum(e^a)) along `dim`, computed with the maximum subtracted first (no
    overflow, and no log(0) for very negative entries). d/da: g - softmax * sum(g).
    The sum and its log are computed in float64: in float32, the log of a sum 1 + tiny
    keeps `tiny` only to 1e-7, and for the likeliest entry `tiny` is its whole value."""
    axis = _along("log_softmax", a, dim)
    if a.data.size == 0:
        return _empty(a, "log_softmax")
    shifted = a.data - a.data.max(axis=axis, keepdims=True)
    log_total = np.log(np.exp(shifted).sum(axis=axis, keepdims=True, dtype=np.float64))
    y = (shifted - log_total).astype(a.data.dtype, copy=False)

    def backward(g: np.ndarray) -> None:
        send(a, g - np.exp(y) * g.sum(axis=axis, keepdims=True), owned=True)

    return Tensor.from_op(y, (a,), backward, "log_softmax")
