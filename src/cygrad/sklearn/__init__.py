"""scikit-learn's multilayer perceptrons on cygrad's kernels: change only the import.

    from cygrad.sklearn import MLPClassifier   # was: from sklearn.neural_network import ...
    clf = MLPClassifier(hidden_layer_sizes=(100,), max_iter=200).fit(X, y)

The estimators subclass scikit-learn's and replace its solvers' inner loops, which are
private API: importing this module checks that the installed scikit-learn is a version
they were built and tested against (`SUPPORTED`), and refuses any other with an
ImportError that says which versions work. Needs the extra: pip install "cygrad[sklearn]".
"""
from __future__ import annotations

import inspect
from typing import Tuple

# The private methods the overrides rely on, with the signatures they override.
SUPPORTED = ((1, 7), (1, 10))  # [from, to): scikit-learn minor versions
_OVERRIDDEN = {
    "_fit_stochastic": ["self", "X", "y", "sample_weight", "activations", "deltas",
                        "coef_grads", "intercept_grads", "layer_units", "incremental"],
    "_fit_lbfgs": ["self", "X", "y", "sample_weight", "activations", "deltas",
                   "coef_grads", "intercept_grads", "layer_units"],
    "_forward_pass_fast": ["self", "X", "check_input"],
    "_validate_input": ["self", "X", "y", "incremental", "reset"],
    "_update_no_improvement_count": ["self", "early_stopping", "X", "y", "sample_weight"],
}


def _version(text: str) -> Tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def check_sklearn_version(version: str) -> None:
    """Raise ImportError unless scikit-learn `version` is within SUPPORTED."""
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED
    if not SUPPORTED[0] <= _version(version) < SUPPORTED[1]:
        raise ImportError(
            f"cygrad.sklearn: scikit-learn {version} is installed, but cygrad's "
            f"perceptrons replace private parts of scikit-learn's and are built for "
            f"scikit-learn >={lo_major}.{lo_minor},<{hi_major}.{hi_minor}. Install one "
            f'of those (pip install "scikit-learn>={lo_major}.{lo_minor},'
            f'<{hi_major}.{hi_minor}") or a cygrad release that supports {version}.')


def _check_private_api() -> None:
    from sklearn.neural_network import _multilayer_perceptron as mlp
    for name, want in _OVERRIDDEN.items():
        method = getattr(mlp.MLPClassifier, name, None)
        got = None if method is None else list(inspect.signature(method).parameters)
        if got != want:
            raise ImportError(
                f"cygrad.sklearn: scikit-learn's BaseMultilayerPerceptron.{name} has "
                f"changed (expected parameters {want}, found {got}); this scikit-learn "
                f"is not one cygrad's perceptrons support. Install scikit-learn "
                f">={SUPPORTED[0][0]}.{SUPPORTED[0][1]},<{SUPPORTED[1][0]}.{SUPPORTED[1][1]}.")


try:
    import sklearn
except ImportError as error:  # the optional extra is missing
    raise ImportError('cygrad.sklearn needs scikit-learn: pip install "cygrad[sklearn]"'
                      ) from error
check_sklearn_version(sklearn.__version__)
_check_private_api()

from ._estimators import MLPClassifier, MLPRegressor  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor", "SUPPORTED", "check_sklearn_version"]
