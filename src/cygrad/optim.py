"""Optimizers: update parameters in place from their gradients, with PyTorch's rules."""
from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

import numpy as np

from . import backends
from .tensor import Tensor


def _add_scaled(out: np.ndarray, x: np.ndarray, alpha: float) -> None:
    """out += alpha * x on the active backend (one pass, no temporary on the compiled one)."""
    getattr(backends.active(), "add_scaled", backends.reference.add_scaled)(out, x, alpha)


class Optimizer:
    def __init__(self, params: Iterable[Tensor], lr: float):
        self.params: List[Tensor] = list(params)
        if not self.params:
            raise ValueError("params: expected at least one tensor (an empty list was given)")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise ValueError(f"params[{i}]: expected a Tensor with requires_grad=True")
        if not lr >= 0:
            raise ValueError(f"lr: expected a non-negative number, got {lr!r}")
        self.lr = lr

    def zero_grad(self) -> None:
        """Forget the gradients (set to None, as PyTorch does by default)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """g = grad + weight_decay * p; with momentum: buf = momentum * buf + g (buf = g on the
    first step); p -= lr * buf (or lr * g without momentum). PyTorch's rule, no dampening."""

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0,
                 weight_decay: float = 0):
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError("momentum, weight_decay: expected non-negative numbers")
        self.momentum, self.weight_decay = momentum, weight_decay
        self._buffers: List[Optional[np.ndarray]] = [None] * len(self.params)

    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = self._buffers[i]
                if buf is None:
                    buf = self._buffers[i] = np.array(g, dtype=p.dtype)
                else:
                    buf *= self.momentum
                    buf += g
                g = buf
            _add_scaled(p.data, g, -self.lr)


class Adam(Optimizer):
    """m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr * m_hat / (sqrt(v_hat) + eps),
    with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t); g = grad + weight_decay * p.
    PyTorch's rule."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0):
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.t = 0
        self._m = [np.zeros_like(p.data) for p in self.params]
        self._v = [np.zeros_like(p.data) for p in self.params]

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        correction1, correction2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, m, v in zip(self.params, self._m, self._v):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            denom = np.sqrt(v / correction2)
            denom += self.eps
            p.data -= (self.lr / correction1) * m / denom
