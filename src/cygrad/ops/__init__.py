"""Differentiable ops: each one's forward and backward, side by side.

An op computes its result from its inputs' `.data` and returns `Tensor.from_op(result,
parents, backward, name)`. `backward(g)` receives dL/d(result) and adds each input's
gradient with `send` (or straight into `grad_slot()` through a kernel); inputs with
requires_grad=False get nothing. An op whose backward calls a kernel runs it on the
backend that ran the forward.

`TABLE` maps each op's name (the name its results record, `Tensor._op`) to the op; the
Tensor operators and methods are bound from it, below.
"""
from __future__ import annotations

from typing import Callable, Dict

from ..tensor import Tensor
from ._common import as_tensor, send, to
from .arithmetic import add, div, matmul, maximum, minimum, mul, neg, pow, sub
from .elementwise import abs, clamp, exp, log, relu, sigmoid, sqrt, tanh
from .reductions import argmax, argmin, log_softmax, max, mean, min, softmax, std, sum, var
from .shape import (cat, expand, flatten, getitem, permute, reshape, reversed_axes, squeeze,
                    stack, transpose, unsqueeze)

TABLE: Dict[str, Callable[..., Tensor]] = {
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "neg": neg,
    "matmul": matmul, "maximum": maximum, "minimum": minimum,
    "exp": exp, "log": log, "sqrt": sqrt, "abs": abs, "sigmoid": sigmoid, "tanh": tanh,
    "relu": relu, "clamp": clamp,
    "sum": sum, "mean": mean, "max": max, "min": min, "var": var,
    "softmax": softmax, "log_softmax": log_softmax,
    "reshape": reshape, "transpose": transpose, "permute": permute, "getitem": getitem,
    "cat": cat, "stack": stack, "to": to, "expand": expand,
}

__all__ = sorted(TABLE) + ["TABLE", "as_tensor", "send", "argmax", "argmin", "flatten"]


def _reflected(op: Callable[..., Tensor]) -> Callable[..., Tensor]:
    return lambda self, other: op(other, self)


# Tensor attribute -> op. Methods that are not ops (argmax, flatten, view) call ops.
_METHODS = {
    "__add__": add, "__sub__": sub, "__mul__": mul, "__truediv__": div, "__pow__": pow,
    "__matmul__": matmul, "__radd__": _reflected(add), "__rsub__": _reflected(sub),
    "__rmul__": _reflected(mul), "__rtruediv__": _reflected(div),
    "__rpow__": _reflected(pow), "__rmatmul__": _reflected(matmul), "__neg__": neg,
    "__abs__": abs, "__getitem__": getitem,
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "matmul": matmul,
    "neg": neg, "maximum": maximum, "minimum": minimum,
    "sum": sum, "mean": mean, "max": max, "min": min, "argmax": argmax, "argmin": argmin,
    "var": var, "std": std,
    "softmax": softmax, "log_softmax": log_softmax,
    "exp": exp, "log": log, "sqrt": sqrt, "abs": abs, "sigmoid": sigmoid, "tanh": tanh,
    "relu": relu, "clamp": clamp, "clip": clamp,
    "reshape": reshape, "view": reshape, "flatten": flatten, "transpose": transpose,
    "permute": permute, "squeeze": squeeze, "unsqueeze": unsqueeze, "expand": expand,
    "to": to,
}
for _name, _op in _METHODS.items():
    setattr(Tensor, _name, _op)
Tensor.T = property(reversed_axes, doc="The tensor with its axes reversed.")
