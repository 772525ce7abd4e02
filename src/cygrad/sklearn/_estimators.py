"""`MLPClassifier` and `MLPRegressor`: scikit-learn's, trained on cygrad's kernels.

The constructors are scikit-learn's, parameter for parameter, plus `dtype`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import neural_network

from ._base import DTYPE_CONSTRAINT, KernelPerceptron


class MLPClassifier(KernelPerceptron, neural_network.MLPClassifier):
    """scikit-learn's `MLPClassifier` (same parameters, defaults, methods, attributes and
    warnings) whose training and prediction run on cygrad's kernels.

    `dtype` (np.float64, scikit-learn's precision, or np.float32) is the precision of
    the weights and of every computation; inputs are converted to it. See
    `sklearn.neural_network.MLPClassifier` for the other parameters.
    """

    _parameter_constraints: dict = {**neural_network.MLPClassifier._parameter_constraints,
                                    "dtype": DTYPE_CONSTRAINT}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dtype: Any = np.float64):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.dtype = dtype


class MLPRegressor(KernelPerceptron, neural_network.MLPRegressor):
    """scikit-learn's `MLPRegressor` (same parameters, defaults, methods, attributes and
    warnings) whose training and prediction run on cygrad's kernels.

    `dtype` (np.float64, scikit-learn's precision, or np.float32) is the precision of
    the weights and of every computation; inputs and targets are converted to it. See
    `sklearn.neural_network.MLPRegressor` for the other parameters.
    """

    _parameter_constraints: dict = {**neural_network.MLPRegressor._parameter_constraints,
                                    "dtype": DTYPE_CONSTRAINT}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu",
                 *, solver="adam", alpha=0.0001, batch_size="auto",
                 learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype: Any = np.float64):
        super().__init__(
            loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            solver=solver, alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.dtype = dtype
