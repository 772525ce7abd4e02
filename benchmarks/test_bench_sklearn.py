"""`fit` of cygrad's MLPClassifier against scikit-learn's own, same hyperparameters and
max_iter, side by side: load_digits (64-100-10) and a synthetic 784-feature, 10-class set
of 10,000 samples (784-256-10); adam, default batch size. A group per data set."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from cygrad.sklearn import MLPClassifier  # noqa: E402

IMPLS = {"sklearn": (sk.MLPClassifier, {}),
         "cygrad": (MLPClassifier, {}),
         "cygrad float32": (MLPClassifier, {"dtype": np.float32})}


def _digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y, (100,), 20


def _synthetic():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((10, 784))
    y = rng.integers(0, 10, 10_000)
    X = centers[y] + 3 * rng.standard_normal((10_000, 784))
    return X, y, (256,), 2


DATA = {"digits": _digits, "synthetic 784-256-10": _synthetic}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("data", list(DATA))
def test_mlp_fit(benchmark, timed, data, impl):
    benchmark.group = f"MLPClassifier.fit {data} adam"
    X, y, hidden, max_iter = DATA[data]()
    cls, extra = IMPLS[impl]

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return cls(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=0,
                       **extra).fit(X, y)

    model = timed(fit, slow=True)
    # It trained what was timed: every epoch ran and the loss fell.
    assert model.n_iter_ == max_iter and model.loss_curve_[-1] < model.loss_curve_[0]
    assert model.score(X, y) > 0.5
