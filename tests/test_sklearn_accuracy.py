"""Accuracy against scikit-learn's own perceptrons, same hyperparameters, mean over five
seeds: within one percentage point of accuracy (classifiers) or 0.01 of R² (regressors),
in float64 and in float32. Iteration counts are small to keep the run short; both sides
stop at the same count, so the comparison holds."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn import datasets  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from cygrad.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

SEEDS = range(5)


def _split(X, y, scale_target=False):
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    if scale_target:
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


CLASSIFICATION = {
    "digits": (lambda: datasets.load_digits(return_X_y=True), 30),
    "breast_cancer": (lambda: datasets.load_breast_cancer(return_X_y=True), 30),
    "wine": (lambda: datasets.load_wine(return_X_y=True), 40),
    "moons": (lambda: datasets.make_moons(n_samples=600, noise=0.25, random_state=0), 60),
}
REGRESSION = {
    "diabetes": (lambda: datasets.load_diabetes(return_X_y=True), 80),
    "make_regression": (lambda: datasets.make_regression(
        n_samples=600, n_features=20, noise=10.0, random_state=0), 40),
}


def _mean_score(cls, split, max_iter, **params):
    X_train, X_test, y_train, y_test = split
    scores = []
    # These problems are small: threaded BLAS only adds waiting on a shared machine.
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in SEEDS:
            model = cls(max_iter=max_iter, random_state=seed, **params).fit(X_train, y_train)
            scores.append(model.score(X_test, y_test))
    return float(np.mean(scores))


@pytest.mark.parametrize("name", sorted(CLASSIFICATION))
def test_classifier_accuracy_matches_sklearn(name):
    load, max_iter = CLASSIFICATION[name]
    split = _split(*load())
    theirs = _mean_score(sk.MLPClassifier, split, max_iter)
    assert theirs > 0.8  # a meaningful comparison: both actually learn
    for dtype in (np.float64, np.float32):
        ours = _mean_score(MLPClassifier, split, max_iter, dtype=dtype)
        assert abs(ours - theirs) <= 0.01, (dtype, ours, theirs)


@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_regressor_r2_matches_sklearn(name):
    load, max_iter = REGRESSION[name]
    split = _split(*load(), scale_target=True)
    theirs = _mean_score(sk.MLPRegressor, split, max_iter)
    assert theirs > 0.3
    for dtype in (np.float64, np.float32):
        ours = _mean_score(MLPRegressor, split, max_iter, dtype=dtype)
        assert abs(ours - theirs) <= 0.01, (dtype, ours, theirs)
