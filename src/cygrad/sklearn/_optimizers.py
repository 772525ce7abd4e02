"""scikit-learn's SGD and Adam update rules, applied in place to a flat parameter vector.

scikit-learn's optimizers build a new array for every term of every update (seven
temporaries the size of each parameter per Adam step); these update in place. Adam is one
`adam_update` kernel pass per parameter (moments and step together, no temporary). SGD is
NumPy's in-place multiply for a scale and the backend's `add_scaled` (y += a * x, BLAS's
axpy on the compiled backend) for a scaled add, one pass each. The schedules
(`invscaling`, `adaptive`), the stopping rule and the attribute names (`learning_rate`,
`velocities`, `ms`, `vs`, `t`) are scikit-learn's own, inherited.

The solver keeps the state arrays C-contiguous and in the parameters' dtype (the kernels
write into the very arrays given, and refuse any other).
"""
from __future__ import annotations

from typing import List

import numpy as np
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

from .. import kernels
from ..optim.optimizer import add_scaled_kernel

Array = np.ndarray


class FlatSGD(SGDOptimizer):
    """velocity = momentum * velocity - lr * grad; param += velocity, or with Nesterov's
    momentum param += momentum * velocity - lr * grad (scikit-learn's rule)."""

    state_names = ("velocities",)

    def update_params(self, params: List[Array], grads: List[Array]) -> None:
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


class FlatAdam(AdamOptimizer):
    """m = beta_1 m + (1 - beta_1) g; v = beta_2 v + (1 - beta_2) g^2;
    param -= lr_t m / (sqrt(v) + epsilon), lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
    (scikit-learn's rule, its bias correction folded into the learning rate). The kernel
    runs scikit-learn's operations in scikit-learn's order, so float64 gives its bits."""

    state_names = ("ms", "vs")

    def next_step_size(self) -> float:
        """Count a step and return its lr_t (also kept as `learning_rate`)."""
        self.t += 1
        beta_1, beta_2 = float(self.beta_1), float(self.beta_2)
        # A Python float: a NumPy float64 scalar would compute float32 arrays in float64.
        self.learning_rate = float(self.learning_rate_init * np.sqrt(1 - beta_2 ** self.t)
                                   / (1 - beta_1 ** self.t))
        return self.learning_rate

    def update_params(self, params: List[Array], grads: List[Array]) -> None:
        step_size = self.next_step_size()
        beta_1, beta_2, eps = float(self.beta_1), float(self.beta_2), float(self.epsilon)
        for param, grad, m, v in zip(params, grads, self.ms, self.vs):
            kernels.adam_update(param, grad, m, v, step_size=step_size, beta1=beta_1,
                                beta2=beta_2, eps=eps)
