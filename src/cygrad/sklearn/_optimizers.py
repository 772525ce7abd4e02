"""scikit-learn's SGD and Adam update rules, applied in place to a flat parameter vector.

scikit-learn's optimizers build a new array for every term of every update (seven
temporaries the size of each parameter per Adam step); these update in place: NumPy's
in-place multiply for a scale, and the backend's `add_scaled` (y += a * x, BLAS's axpy on
the compiled backend, the same BLAS as cygrad's products) for a scaled add, one pass each. The
schedules (`invscaling`, `adaptive`), the stopping rule and the attribute names
(`learning_rate`, `velocities`, `ms`, `vs`, `t`) are scikit-learn's own, inherited.
"""
from __future__ import annotations

from typing import List

import numpy as np
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

from ..optim.optimizer import add_scaled_kernel

Array = np.ndarray


class _InPlace:
    """One reusable work array per parameter (a fresh array each step would cost page
    faults at every step for large layers; not pickled, it is rebuilt on first use), and
    the state kept C-contiguous: BLAS then writes into the very arrays given."""

    _state_names: tuple = ()

    def _scratch(self, params: List[Array]) -> List[Array]:
        scratch = self.__dict__.get("_work")
        if scratch is None or len(scratch) != len(params) or \
                any(s.shape != p.shape or s.dtype != p.dtype for s, p in zip(scratch, params)):
            for name in self._state_names:
                setattr(self, name, [np.ascontiguousarray(s) for s in getattr(self, name)])
            scratch = self._work = [np.empty_like(p, order="C") for p in params]
        return scratch

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_work", None)
        return state


class FlatSGD(_InPlace, SGDOptimizer):
    """velocity = momentum * velocity - lr * grad; param += velocity, or with Nesterov's
    momentum param += momentum * velocity - lr * grad (scikit-learn's rule)."""

    _state_names = ("velocities",)

    def update_params(self, params: List[Array], grads: List[Array]) -> None:
        self._scratch(params)
        add_scaled = add_scaled_kernel()
        # Python floats: a NumPy float64 scalar would compute float32 arrays in float64.
        rate, momentum = float(self.learning_rate), float(self.momentum)
        for param, grad, velocity in zip(params, grads, self.velocities):
            velocity *= momentum
            add_scaled(velocity, grad, -rate)
            if self.nesterov:
                add_scaled(param, velocity, momentum)
                add_scaled(param, grad, -rate)
            else:
                add_scaled(param, velocity, 1.0)


class FlatAdam(_InPlace, AdamOptimizer):
    """m = beta_1 m + (1 - beta_1) g; v = beta_2 v + (1 - beta_2) g^2;
    param -= lr_t m / (sqrt(v) + epsilon), lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
    (scikit-learn's rule, its bias correction folded into the learning rate)."""

    _state_names = ("ms", "vs")

    def update_params(self, params: List[Array], grads: List[Array]) -> None:
        scratch = self._scratch(params)
        add_scaled = add_scaled_kernel()
        self.t += 1
        # Python floats: a NumPy float64 scalar would compute float32 arrays in float64.
        beta_1, beta_2 = float(self.beta_1), float(self.beta_2)
        self.learning_rate = float(self.learning_rate_init * np.sqrt(1 - beta_2 ** self.t)
                                   / (1 - beta_1 ** self.t))
        for param, grad, m, v, tmp in zip(params, grads, self.ms, self.vs, scratch):
            m *= beta_1
            add_scaled(m, grad, 1 - beta_1)
            np.multiply(grad, grad, out=tmp)
            v *= beta_2
            add_scaled(v, tmp, 1 - beta_2)
            np.sqrt(v, out=tmp)
            tmp += float(self.epsilon)
            np.divide(m, tmp, out=tmp)
            add_scaled(param, tmp, -self.learning_rate)
