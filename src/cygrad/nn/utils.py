"""Gradient clipping, as torch.nn.utils: clip_grad_norm_ and clip_grad_value_."""
from __future__ import annotations

import math
from typing import Iterable, List, Union

import numpy as np

from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]

Parameters = Union[Tensor, Iterable[Tensor]]


def _grads(parameters: Parameters, where: str) -> List[np.ndarray]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{where}: expected Tensors, got {type(p).__name__} at "
                            f"position {i}")
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(parameters: Parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: object = None) -> Tensor:
    """Scale the gradients in place so that their total norm is at most `max_norm`.

    The total norm is the `norm_type`-norm of all gradients together (as if concatenated;
    `inf` for the largest absolute value). Each gradient is multiplied by
    min(1, max_norm / (total_norm + 1e-6)), as PyTorch does. Returns the total norm before
    clipping, as a 0-d Tensor of the gradients' dtype. A non-finite norm raises
    RuntimeError when `error_if_nonfinite`; otherwise the gradients become non-finite, as
    in PyTorch. `foreach` is accepted for compatibility.
    """
    grads = _grads(parameters, "parameters")
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return Tensor(np.zeros((), np.float32))
    dtype = grads[0].dtype
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g), initial=0.0)) for g in grads)
    else:
        per_grad = [np.linalg.norm(g.reshape(-1).astype(np.float64), norm_type)
                    for g in grads]
        total = float(np.linalg.norm(per_grad, norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the "
                           f"gradients is non-finite ({total}), so it cannot be clipped; "
                           "pass error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1:  # a NaN norm makes the gradients NaN, as in PyTorch
        with np.errstate(invalid="ignore"):  # inf * 0 is NaN, as in PyTorch
            for g in grads:
                g *= g.dtype.type(coef)
    return Tensor(np.asarray(total, dtype=dtype))


def clip_grad_value_(parameters: Parameters, clip_value: float,
                     foreach: object = None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters, "parameters"):
        np.clip(g, -clip_value, clip_value, out=g)
