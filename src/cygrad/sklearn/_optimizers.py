"""scikit-learn's SGD and Adam update rules, applied in place to a flat parameter vector.

scikit-learn's optimizers build a new array for every term of every update (seven
temporaries the size of each parameter per Adam step); these write into preallocated
buffers instead. The schedules (`invscaling`, `adaptive`), the stopping rule and the
attribute names (`learning_rate`, `velocities`, `ms`, `vs`, `t`) are scikit-learn's own,
inherited.
"""
from __future__ import annotations

from typing import List

import numpy as np
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

Array = np.ndarray


class _Scratch:
    """One reusable work array per parameter: a fresh array each step costs page faults
    at every step for large layers. Not pickled (it is rebuilt on first use)."""

    def _scratch(self, params: List[Array]) -> List[Array]:
        scratch = self.__dict__.get("_work")
        if scratch is None or len(scratch) != len(params) or \
                any(s.shape != p.shape or s.dtype != p.dtype for s, p in zip(scratch, params)):
            scratch = self._work = [np.empty_like(p) for p in params]
        return scratch

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_work", None)
        return state


class FlatSGD(_Scratch, SGDOptimizer):
    """velocity = momentum * velocity - lr * grad; param += velocity, or with Nesterov's
    momentum param += momentum * velocity - lr * grad (scikit-learn's rule)."""

    def update_params(self, params: List[Array], grads: List[Array]) -> None:
        # Python floats: a NumPy float64 scalar would compute float32 arrays in float64.
        rate, momentum = float(self.learning_rate), float(self.momentum)
        for param, grad, velocity, step in zip(params, grads, self.velocities,
                                               self._scratch(params)):
            np.multiply(grad, rate, out=step)
            velocity *= momentum
            velocity -= step
            if self.nesterov:
                np.subtract(velocity * momentum, step, out=step)
                param += step
            else:
                param += velocity


class FlatAdam(_Scratch, AdamOptimizer):
    """m = beta_1 m + (1 - beta_1) g; v = beta_2 v + (1 - beta_2) g^2;
    param -= lr_t m / (sqrt(v) + epsilon), lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
    (scikit-learn's rule, its bias correction folded into the learning rate)."""

    def update_params(self, params: List[Array], grads: List[Array]) -> None:
        self.t += 1
        # Python floats: a NumPy float64 scalar would compute float32 arrays in float64.
        beta_1, beta_2 = float(self.beta_1), float(self.beta_2)
        self.learning_rate = float(self.learning_rate_init * np.sqrt(1 - beta_2 ** self.t)
                                   / (1 - beta_1 ** self.t))
        for param, grad, m, v, tmp in zip(params, grads, self.ms, self.vs,
                                          self._scratch(params)):
            np.multiply(grad, 1 - beta_1, out=tmp)
            m *= beta_1
            m += tmp
            np.multiply(grad, grad, out=tmp)
            tmp *= 1 - beta_2
            v *= beta_2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += float(self.epsilon)
            np.divide(m, tmp, out=tmp)
            tmp *= self.learning_rate
            param -= tmp
