"""cygrad.sklearn against scikit-learn itself: same seed, same result; gradients against
finite differences; dtypes; the version gate; the ecosystem (Pipeline, GridSearchCV,
cross_val_score, clone, pickle)."""
from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
import scipy.optimize  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import shuffle  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

import cygrad.sklearn  # noqa: E402
from cygrad.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from cygrad.sklearn._network import Network  # noqa: E402


def _data(rng, n=120, features=6, outputs=1):
    X = rng.standard_normal((n, features))
    Y = X @ rng.standard_normal((features, outputs)) + 0.1 * rng.standard_normal((n, outputs))
    return X, Y


def _fit_both(ours_cls, theirs_cls, X, y, sample_weight=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = ours_cls(**params).fit(X, y, sample_weight=sample_weight)
        theirs = theirs_cls(**params).fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def _assert_same_model(ours, theirs, rtol=1e-7):
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert ours.out_activation_ == theirs.out_activation_
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=rtol)
    if getattr(theirs, "loss_curve_", None) is not None:
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)


SOLVERS = [dict(solver="adam"), dict(solver="sgd"),
           dict(solver="sgd", nesterovs_momentum=False, learning_rate="invscaling"),
           dict(solver="sgd", learning_rate="adaptive", momentum=0.5),
           dict(solver="lbfgs")]


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("solver", SOLVERS, ids=lambda d: "-".join(map(str, d.values())))
def test_classifier_matches_sklearn(backend, rng, solver, activation):
    """Same seed, same hyperparameters: the same weights as scikit-learn's, to rounding."""
    X, Y = _data(rng, outputs=3)
    y = Y.argmax(axis=1)  # three classes: softmax output
    ours, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(7, 5),
                             activation=activation, max_iter=15, random_state=0,
                             batch_size=32, alpha=1e-3, **solver)
    _assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-7)
    assert (ours.predict(X) == theirs.predict(X)).all()


@pytest.mark.parametrize("target", ["binary", "multilabel", "strings"])
def test_classifier_targets_match_sklearn(backend, rng, target):
    X, Y = _data(rng, outputs=3)
    y = {"binary": Y[:, 0] > 0, "multilabel": (Y > 0).astype(int),
         "strings": np.array(["cat", "dog", "eel"])[Y.argmax(axis=1)]}[target]
    ours, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(8,),
                             max_iter=20, random_state=1)
    _assert_same_model(ours, theirs)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_log_proba(X), theirs.predict_log_proba(X),
                               rtol=1e-7)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("outputs", [1, 2])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_regressor_matches_sklearn(backend, rng, solver, outputs, loss):
    X, Y = _data(rng, outputs=outputs)
    if loss == "poisson":
        Y = np.exp(Y / 3)
    y = Y.ravel() if outputs == 1 else Y
    ours, theirs = _fit_both(MLPRegressor, sk.MLPRegressor, X, y, loss=loss, solver=solver,
                             hidden_layer_sizes=(9,), max_iter=15, random_state=2,
                             learning_rate_init=1e-3 if solver != "sgd" else 1e-4)
    _assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(ours.score(X, y), theirs.score(X, y), rtol=1e-7)


def test_sample_weight_early_stopping_and_sparse_match_sklearn(backend, rng):
    X, Y = _data(rng, n=200, outputs=3)
    y = Y.argmax(axis=1)
    weights = rng.uniform(0.5, 2, len(y))
    params = dict(hidden_layer_sizes=(6,), max_iter=30, random_state=3, batch_size=40)
    _assert_same_model(*_fit_both(MLPClassifier, sk.MLPClassifier, X, y, weights, **params))
    ours, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, early_stopping=True,
                             n_iter_no_change=3, **params)
    _assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    assert ours.best_validation_score_ == theirs.best_validation_score_
    X_sparse = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0))
    ours, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X_sparse, y, **params)
    _assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(X_sparse), theirs.predict_proba(X_sparse))


def test_partial_fit_and_warm_start_match_sklearn(backend, rng):
    X, Y = _data(rng, outputs=3)
    y = Y.argmax(axis=1)
    ours, theirs = (cls(hidden_layer_sizes=(5,), random_state=4) for cls in
                    (MLPClassifier, sk.MLPClassifier))
    for start in range(0, 120, 40):
        for model in (ours, theirs):
            model.partial_fit(X[start:start + 40], y[start:start + 40], classes=[0, 1, 2])
    _assert_same_model(ours, theirs)
    # A pickled model continues where it stopped, optimizer state included.
    ours = pickle.loads(pickle.dumps(ours))
    for model in (ours, theirs):
        model.partial_fit(X, y)
    _assert_same_model(ours, theirs)
    ours, theirs = (cls(hidden_layer_sizes=(5,), random_state=4, warm_start=True, max_iter=5)
                    for cls in (MLPRegressor, sk.MLPRegressor))
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for model in (ours, theirs):
                model.fit(X, Y)
    _assert_same_model(ours, theirs)
    # hidden_layer_sizes changed after a fit: both go on training the fitted network
    for model in (ours, theirs):
        model.set_params(hidden_layer_sizes=(9,))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, Y)
        model.partial_fit(X, Y)
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    _assert_same_model(ours, theirs)


def test_in_place_shuffle_draws_sklearns_permutations():
    """The epoch loop shuffles its index array in place with the estimator's RandomState;
    sklearn.utils.shuffle on a copy gives the same order, epoch after epoch."""
    ours, theirs = np.random.RandomState(5), np.random.RandomState(5)
    idx, want = np.arange(1797), np.arange(1797)
    for _ in range(3):
        ours.shuffle(idx)
        want = shuffle(want, random_state=theirs)
        np.testing.assert_array_equal(idx, want)
    assert not (idx == np.arange(1797)).all()


@pytest.mark.parametrize("out", [("softmax", "log_loss", 3), ("logistic", "log_loss", 2),
                                 ("identity", "squared_error", 1), ("exp", "poisson", 2)])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_gradients_match_finite_differences(backend, rng, activation, out):
    """The backward pass (L2 term and sample weights included) against central
    differences of the loss. (With several outputs, scikit-learn's squared error is the
    mean over outputs but its gradient their sum, which the estimators keep: one output.)"""
    out_activation, loss, outputs = out
    net = Network([4, 5, 3, outputs], np.float64, activation, out_activation, loss, 0.3)
    net.params[...] = rng.uniform(-1, 1, net.params.shape)
    X = rng.standard_normal((9, 4))
    if out_activation == "softmax":
        Y = np.eye(outputs, dtype=bool)[rng.integers(0, outputs, 9)]
    elif out_activation == "logistic":
        Y = rng.random((9, outputs)) > 0.5
    else:
        Y = rng.uniform(0.1, 2, (9, outputs))
    weights = rng.uniform(0.5, 2, 9)

    def loss_at(flat):
        return net.loss_grad_flat(flat, X, Y, weights)[0]

    def grad_at(flat):
        return net.loss_grad_flat(flat, X, Y, weights)[1]

    start = net.params.copy()
    err = scipy.optimize.check_grad(loss_at, grad_at, start, epsilon=1e-6)
    assert err < 1e-5 * max(1.0, np.linalg.norm(grad_at(start)))


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_float32_computes_in_float32(backend, rng, cls):
    X, Y = _data(rng, outputs=3)
    y = Y.argmax(axis=1) if cls is MLPClassifier else Y[:, 0]
    for solver in ["adam", "sgd", "lbfgs"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = cls(dtype=np.float32, solver=solver, max_iter=10, random_state=0).fit(X, y)
            wide = cls(solver=solver, max_iter=10, random_state=0).fit(X, y)
        assert all(c.dtype == np.float32 for c in model.coefs_ + model.intercepts_)
        out = model.predict_proba(X) if cls is MLPClassifier else model.predict(X)
        assert out.dtype == np.float32
        want = wide.predict_proba(X) if cls is MLPClassifier else wide.predict(X)
        np.testing.assert_allclose(out, want, rtol=2e-3, atol=2e-3)
    # float64 is the default even for float32 input (scikit-learn would follow the input).
    with pytest.warns(ConvergenceWarning):
        model = cls(max_iter=5, random_state=0).fit(X.astype(np.float32), y)
    assert model.coefs_[0].dtype == np.float64


@pytest.mark.parametrize("bad", [np.int32, "float16", np.complex64, 4])
def test_bad_dtype_is_refused_naming_it(rng, bad):
    X, Y = _data(rng)
    with pytest.raises(InvalidParameterError, match="'dtype' parameter of MLPRegressor"):
        MLPRegressor(dtype=bad).fit(X, Y.ravel())


def test_convergence_warning(rng):
    X, Y = _data(rng)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPRegressor(max_iter=2).fit(X, Y.ravel())


def test_ecosystem(rng):
    """Pipeline, GridSearchCV in two processes, cross_val_score, clone, pickle."""
    X, Y = _data(rng, n=150, outputs=3)
    y = Y.argmax(axis=1)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=40, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                                     "mlpclassifier__dtype": [np.float32, np.float64]},
                              cv=3, n_jobs=2).fit(X, y)
        scores = cross_val_score(MLPRegressor(max_iter=40, random_state=0), X, Y[:, 0], cv=3)
    assert isinstance(search.best_estimator_[-1], MLPClassifier)
    assert search.best_score_ > 0.6 and len(scores) == 3 and np.isfinite(scores).all()
    twin = clone(search.best_estimator_)
    assert twin.get_params()["mlpclassifier__dtype"] is search.best_params_[
        "mlpclassifier__dtype"]
    restored = pickle.loads(pickle.dumps(search.best_estimator_))
    np.testing.assert_array_equal(restored.predict_proba(X),
                                  search.best_estimator_.predict_proba(X))


def test_version_gate():
    low, high = cygrad.sklearn.SUPPORTED
    cygrad.sklearn.check_sklearn_version(f"{low[0]}.{low[1]}.0")
    cygrad.sklearn.check_sklearn_version(f"{high[0]}.{high[1] - 1}.1rc1")
    for version in [f"{low[0]}.{low[1] - 1}.2", f"{high[0]}.{high[1]}.0", "2.0.0"]:
        with pytest.raises(ImportError, match=rf"scikit-learn {version} is installed.*"
                                              rf">={low[0]}\.{low[1]},<{high[0]}\.{high[1]}"):
            cygrad.sklearn.check_sklearn_version(version)


@pytest.mark.subprocess
def test_private_api_gate(monkeypatch):
    """A scikit-learn whose overridden private methods changed shape is refused by name."""
    cygrad.sklearn._check_private_api()
    monkeypatch.setattr(sk.MLPClassifier, "_fit_lbfgs", lambda self, X, y: None)
    with pytest.raises(ImportError, match=r"BaseMultilayerPerceptron\._fit_lbfgs has changed"):
        cygrad.sklearn._check_private_api()


def test_import_cygrad_does_not_import_sklearn():
    code = "import sys, cygrad; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
