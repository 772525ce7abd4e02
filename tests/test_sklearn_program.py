"""The perceptrons' compiled batch (cygrad/sklearn/_program.py) against `Network`'s NumPy
path: the same loss, gradients and Adam step for every activation, output and loss, with
and without sample weights; and which fits take it."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
import cygrad  # noqa: E402
from cygrad.sklearn._network import Network  # noqa: E402
from cygrad.sklearn._optimizers import FlatAdam, FlatSGD  # noqa: E402
from cygrad.sklearn._program import BatchProgram, BatchPrograms, new_program  # noqa: E402

pytest.importorskip("cygrad._linear")  # the compiled backend's module

OUTPUTS = [("softmax", "log_loss", 4), ("logistic", "log_loss", 3),
           ("identity", "squared_error", 2), ("exp", "poisson", 2)]
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.fixture(autouse=True)
def cython_backend():
    with cygrad.use_backend("cython"):
        yield


def _targets(rng, out_activation, n, outputs):
    if out_activation == "softmax":
        return np.eye(outputs, dtype=bool)[rng.integers(0, outputs, n)]
    if out_activation == "logistic":
        return rng.random((n, outputs)) > 0.5
    return rng.uniform(0.1, 2, (n, outputs))


def _adam(net):
    adam = FlatAdam([net.params], 1e-2, 0.9, 0.999, 1e-8)
    adam.ms, adam.vs = [np.zeros_like(net.params)], [np.zeros_like(net.params)]
    return adam


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("out", OUTPUTS, ids=lambda o: o[0])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_batch_program_equals_the_numpy_path(rng, activation, out, weighted, dtype):
    out_activation, loss, outputs = out
    X = rng.standard_normal((30, 5)).astype(dtype)
    Y = _targets(rng, out_activation, 30, outputs)
    weights = rng.uniform(0.5, 2, 30).astype(dtype) if weighted else None
    nets = [Network([5, 6, 4, outputs], dtype, activation, out_activation, loss, 0.3)
            for _ in range(2)]
    start = rng.uniform(-1, 1, nets[0].params.shape)
    for net in nets:
        net.params[...] = start
    ours, theirs = nets
    our_adam, their_adam = _adam(ours), _adam(theirs)
    program = BatchProgram(new_program(), ours, 8, weighted, our_adam)
    Y_cast = Y.astype(dtype)
    # Shuffled batches (index arrays) and an unshuffled one (a slice).
    for batch in [rng.permutation(30)[:8], np.arange(22, 30), slice(4, 12)]:
        got = program.step(X, Y_cast, weights, batch)
        want = theirs.loss_and_grads(X[batch], Y[batch],
                                     None if weights is None else weights[batch])
        np.testing.assert_allclose(got, want, **TOL[dtype])
        np.testing.assert_allclose(ours.grads, theirs.grads, **TOL[dtype])
        their_adam.update_params([theirs.params], [theirs.grads])
        np.testing.assert_allclose(ours.params, theirs.params, **TOL[dtype])
        assert our_adam.t == their_adam.t
        assert our_adam.learning_rate == their_adam.learning_rate
    assert ours.params.dtype == dtype and not np.array_equal(ours.params, start)


def test_sgd_keeps_its_python_update(rng):
    """SGD's update is not a record: the program leaves the parameters to it."""
    net = Network([3, 4, 2], np.float64, "relu", "identity", "squared_error", 0.0)
    net.params[...] = rng.uniform(-1, 1, net.params.shape)
    before = net.params.copy()
    sgd = FlatSGD([net.params], 0.1, "constant", 0.9, True, 0.5)
    programs = BatchPrograms.for_net(net, True, False, sgd)
    program = programs.get(5)
    assert program.adam is None and programs.get(5) is program
    program.step(rng.standard_normal((5, 3)), rng.standard_normal((5, 2)), None, slice(0, 5))
    np.testing.assert_array_equal(net.params, before)
    assert np.abs(net.grads).sum() > 0


def test_which_fits_take_the_program():
    net = Network([3, 4, 2], np.float64, "relu", "identity", "squared_error", 0.0)
    assert BatchPrograms.for_net(net, True, False, None) is not None
    assert BatchPrograms.for_net(net, False, False, None) is None  # sparse X
    with cygrad.use_backend("reference"):
        assert new_program() is None
        assert BatchPrograms.for_net(net, True, False, None) is None
