"""Layers: Linear, activations, Dropout, Flatten, Identity, Softmax, LogSoftmax."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from .. import functional as F
from .. import ops
from ..creation import default_generator
from ..tensor import Tensor, TensorLike
from .module import Module, module_error


def check_size(name: str, value: Any) -> int:
    """A layer size: a positive int (bools and floats are refused, as PyTorch does)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def check_probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def _required_dim(dim: Optional[int], layer: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{layer}: dim: expected the axis to normalize over (dim=1 for "
                        f"(batch, classes)), got {dim!r}; PyTorch's implicit choice when "
                        "it is omitted is deprecated")
    return int(dim)


class Linear(Module):
    """y = input @ weight.T + bias, with weight (out_features, in_features) and bias
    (out_features,); input (..., in_features).

    Initialization as PyTorch's: weight and bias uniform in [-1/sqrt(in_features),
    1/sqrt(in_features)], drawn from `rng` (a NumPy Generator or seed), or from cygrad's
    default generator (reset by `cg.manual_seed`, as torch.manual_seed). The
    default dtype is float32, as PyTorch's; an input of another dtype is an error (no
    silent casting) that says which layer and how to fix it.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: object = np.float32, rng: object = None):
        super().__init__()
        self.in_features = check_size("in_features", in_features)
        self.out_features = check_size("out_features", out_features)
        rng = default_generator() if rng is None else np.random.default_rng(rng)
        bound = 1 / math.sqrt(in_features)
        dtype = np.float32 if dtype is None else dtype
        self.weight = Tensor(rng.uniform(-bound, bound, (out_features, in_features)),
                             requires_grad=True, dtype=dtype)
        self.bias: Optional[Tensor] = (
            Tensor(rng.uniform(-bound, bound, out_features), requires_grad=True, dtype=dtype)
            if bias else None)

    def forward(self, input: TensorLike) -> Tensor:
        try:
            return F.linear(input, self.weight, self.bias)
        except (TypeError, ValueError) as exc:
            error = self._input_error(input)
            if error is None:
                raise
            raise error from exc

    def _input_error(self, input: TensorLike) -> Optional[Exception]:
        """The kernel names its own argument (`w`); say instead what is wrong with the
        input of this layer, and how to fix it."""
        x = input.data if isinstance(input, Tensor) else np.asarray(input)
        want = self.weight.dtype
        if x.dtype != want:
            return module_error(self, TypeError, (
                f"input: expected {want} (the layer's dtype), got {x.dtype} of shape "
                f"{x.shape}; cast with x.astype(np.{want}), or build the layer with "
                f"dtype=np.{x.dtype}"))
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            got = "a scalar" if x.ndim == 0 else f"{x.shape[-1]} (shape {x.shape})"
            return module_error(self, ValueError, (
                f"input: expected (..., {self.in_features}) features, got {got}; give "
                f"inputs of {self.in_features} features, or build the layer with "
                f"in_features={x.shape[-1] if x.ndim else 1}"))
        return None

    def _describe(self) -> str:
        return f"Linear({self.in_features} -> {self.out_features})"

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, dtype={self.weight.dtype}")


class Identity(Module):
    """Returns its input; any constructor arguments are ignored (as PyTorch's)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()

    def forward(self, input: TensorLike) -> TensorLike:
        return input


class Sigmoid(Module):
    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(Module):
    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class ReLU(Module):
    """max(input, 0). `inplace` is accepted for compatibility; the result is always a new
    tensor (the graph keeps the input for the backward)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input)


class Softmax(Module):
    """exp(x) / sum(exp(x)) along `dim`. `dim` is required: PyTorch's implicit choice
    when it is omitted is deprecated and picks the batch axis for some shapes."""

    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = _required_dim(dim, "Softmax")

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """log(softmax(x)) along `dim`, computed stably (x - max - log(sum(exp(x - max))))."""

    def __init__(self, dim: Optional[int] = None):
        Module.__init__(self)
        self.dim = _required_dim(dim, "LogSoftmax")

    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self.dim)


class Dropout(Module):
    """In training mode, zeroes each element with probability `p` and scales the others
    by 1 / (1 - p); in evaluation mode (`eval()`), returns the input.

    The mask comes from `rng` (a seed or Generator, kept by the layer), or without it
    from cygrad's default generator, which `cg.manual_seed(seed)` makes reproducible.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, rng: object = None):
        super().__init__()
        self.p = check_probability("p", p)
        self.inplace = bool(inplace)  # accepted for compatibility; the result is new
        self.rng = None if rng is None else np.random.default_rng(rng)

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, rng=self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """Reshapes dimensions start_dim..end_dim into one: (N, 1, 8, 8) -> (N, 64)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name}: expected an int, got {value!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, input: Tensor) -> Tensor:
        # often the first layer: it takes the NumPy batch as it comes
        return ops.flatten(ops.as_tensor(input), self.start_dim, self.end_dim)

    def _describe(self) -> str:
        return f"Flatten({self.start_dim}, {self.end_dim})"

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
