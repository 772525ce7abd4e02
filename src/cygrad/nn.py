"""Modules: plain Python classes that hold parameters and compose ops."""
from __future__ import annotations

import math
from typing import Iterator, List, Optional

import numpy as np

from . import functional as F
from .tensor import Tensor


class Module:
    """Base class. Parameters are the Tensor attributes with requires_grad=True, found
    recursively through Module attributes and lists/tuples of them."""

    def forward(self, *args, **kwargs) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs) -> Tensor:
        return self.forward(*args, **kwargs)

    def parameters(self) -> List[Tensor]:
        found: List[Tensor] = []
        seen = set()
        # An explicit stack, not a recursive closure: a closure that calls itself is a
        # reference cycle, left for the garbage collector on every call.
        stack: List[object] = [self]
        while stack:
            value = stack.pop()
            if isinstance(value, Tensor):
                if value.requires_grad and id(value) not in seen:
                    seen.add(id(value))
                    found.append(value)
            elif isinstance(value, Module):
                stack.extend(reversed(list(vars(value).values())))
            elif isinstance(value, (list, tuple)):
                stack.extend(reversed(value))
        return found

    def zero_grad(self) -> None:
        """Forget the gradients (set to None, as PyTorch does by default)."""
        for p in self.parameters():
            p.grad = None

    def children(self) -> Iterator["Module"]:
        for value in vars(self).values():
            if isinstance(value, Module):
                yield value
            elif isinstance(value, (list, tuple)):
                yield from (v for v in value if isinstance(v, Module))

    def __repr__(self) -> str:
        inner = [f"  {line}" for child in self.children() for line in repr(child).split("\n")]
        extra = self.extra_repr()
        if not inner:
            return f"{type(self).__name__}({extra})"
        return "\n".join([f"{type(self).__name__}({extra}"] + inner + [")"])

    def extra_repr(self) -> str:
        return ""


class Linear(Module):
    """y = x @ weight.T + bias, with weight (out_features, in_features), bias (out_features,).

    Initialization as PyTorch's: weight and bias uniform in [-1/sqrt(in_features),
    1/sqrt(in_features)]. `rng` (a numpy Generator or seed) makes it reproducible.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: object = np.float32, rng: object = None):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        rng = np.random.default_rng(rng)
        bound = 1 / math.sqrt(in_features)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Tensor(rng.uniform(-bound, bound, (out_features, in_features)),
                             requires_grad=True, dtype=dtype)
        self.bias: Optional[Tensor] = (
            Tensor(rng.uniform(-bound, bound, out_features), requires_grad=True, dtype=dtype)
            if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, dtype={self.weight.dtype}")


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Sequential(Module):
    """Applies its modules in order."""

    def __init__(self, *modules: Module):
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"modules[{i}]: expected a Module, got {type(m).__name__}")
        self.layers = list(modules)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)
