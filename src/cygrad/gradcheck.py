"""Check a function's backward against central finite differences."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic gradient and the finite-difference one disagree."""


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence[Tensor], eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0) -> bool:
    """Compare the gradients backward() gives for `fn(*inputs)` with central differences
    (f(x + eps) - f(x - eps)) / 2 eps, computed in float64 on copies of the inputs.

    A non-scalar output is reduced to L = sum(output * r) with a fixed random r, so every
    output element takes part. Only inputs with requires_grad=True are checked. Returns
    True, or raises GradcheckError naming the input and its worst element.
    """
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(t, Tensor) for t in inputs):
        raise TypeError("inputs: expected a list or tuple of Tensors")
    copies = [Tensor(t.data.astype(np.float64), requires_grad=t.requires_grad)
              for t in inputs]
    if not any(t.requires_grad for t in copies):
        raise ValueError("inputs: none has requires_grad=True, there is nothing to check")
    first = fn(*copies)
    if not isinstance(first, Tensor):
        raise TypeError(f"fn: expected it to return a Tensor, got {type(first).__name__}")
    weights = np.random.default_rng(seed).uniform(0.5, 1.5, first.shape)

    def loss() -> float:
        return float(np.sum(fn(*copies).data.astype(np.float64) * weights))

    out = fn(*copies)
    if not out.requires_grad:
        raise ValueError("fn: its output does not depend on any input with requires_grad")
    out.backward(weights.astype(out.dtype))
    for index, t in enumerate(copies):
        if not t.requires_grad:
            continue
        analytic = np.zeros(t.shape) if t.grad is None else t.grad.astype(np.float64)
        numeric = np.zeros(t.shape)
        flat = t.data.reshape(-1)  # a view: perturbing it perturbs the input
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            plus = loss()
            flat[i] = original - eps
            minus = loss()
            flat[i] = original
            numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
        if not np.all(np.isfinite(analytic)) or not np.all(np.isfinite(numeric)):
            raise GradcheckError(f"inputs[{index}]: the gradient is not finite "
                                 f"(analytic {analytic}, numeric {numeric})")
        excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if np.any(excess > 0):
            worst = np.unravel_index(np.argmax(excess), t.shape)
            raise GradcheckError(
                f"inputs[{index}]: gradient mismatch at element {tuple(map(int, worst))}: "
                f"analytic {analytic[worst]:.8g}, numeric {numeric[worst]:.8g} "
                f"(atol={atol}, rtol={rtol})")
    return True
