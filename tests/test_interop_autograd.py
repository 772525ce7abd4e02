"""cygrad inside HIPS autograd (`cygrad.interop.autograd`): the primitives against finite
differences and against autograd's own NumPy ops, first and second order, dtypes, errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("autograd", reason="autograd not installed")

import autograd.numpy as anp  # noqa: E402
from autograd import grad, hessian  # noqa: E402
from autograd.scipy.special import logsumexp  # noqa: E402
from autograd.test_util import check_grads  # noqa: E402

import cygrad  # noqa: E402
from cygrad.interop.autograd import linear, sigmoid  # noqa: E402

KERNELS = ("linear_forward", "linear_backward", "sigmoid_forward", "sigmoid_backward")


@pytest.fixture
def calls(monkeypatch):
    """Records each cygrad kernel call the primitives make: (name, argument types, flags)."""
    log = []
    for name in KERNELS:
        def spy(*args, _kernel=getattr(cygrad.kernels, name), _name=name, **kwargs):
            flags = {k: v for k, v in kwargs.items() if k.startswith("need_")}
            log.append((_name, {type(a) for a in args if a is not None}, flags))
            return _kernel(*args, **kwargs)
        monkeypatch.setattr(cygrad.kernels, name, spy)
    return log


def _native_linear(x, w, b=None):
    return anp.dot(x, w.T) + (0 if b is None else b)


def _native_sigmoid(x):
    return 1 / (1 + anp.exp(-x))


# --- the primitives against finite differences (order 2: the vjps are differentiable) -------

# argnum: check_grads differentiates with respect to these arguments only (default: the
# first); one at a time, autograd asks the vjp for a single gradient.
@pytest.mark.parametrize("x_shape", [(5, 4), (4,), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("with_bias, argnum", [
    (True, 0), (True, 1), (True, 2), (True, (0, 1, 2)), (False, 1), (False, (0, 1))],
    ids=lambda v: f"argnum={v}" if not isinstance(v, bool) else ("bias" if v else "no_bias"))
def test_linear_check_grads(rng, kernels, x_shape, with_bias, argnum):
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((3, 4)), rng.standard_normal(3)
    if with_bias:
        check_grads(linear, argnum, modes=["rev"])(x, w, b)
    else:
        check_grads(lambda x, w: linear(x, w), argnum, modes=["rev"])(x, w)


@pytest.mark.parametrize("shape", [(7,), (5, 4), (2, 3, 4)], ids=str)
def test_sigmoid_check_grads(rng, kernels, shape):
    check_grads(sigmoid, modes=["rev"])(rng.standard_normal(shape))


def test_composition_check_grads_to_third_order(rng):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    check_grads(lambda x, w, b: anp.sum(sigmoid(linear(x, w, b)) ** 2), (0, 1, 2),
                modes=["rev"], order=3)(x, w, b)


def test_only_the_requested_gradients_are_computed_in_one_call(rng, calls):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    grad(lambda w: anp.sum(linear(x, w, b)))(w)
    assert calls[-1][0] == "linear_backward"
    assert calls[-1][2] == dict(need_grad_x=False, need_grad_w=True, need_grad_b=False)
    grad(lambda p: anp.sum(linear(x, p[0], p[1])))((w, b))
    assert [c[0] for c in calls].count("linear_backward") == 2
    assert calls[-1][2] == dict(need_grad_x=False, need_grad_w=True, need_grad_b=True)


def test_kernels_only_ever_see_plain_arrays(rng, calls):
    x, w = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    f = lambda w: anp.sum(sigmoid(linear(x, w)) ** 2)  # noqa: E731
    np.testing.assert_allclose(
        hessian(f)(w), hessian(lambda w: anp.sum(_native_sigmoid(_native_linear(x, w)) ** 2))(w),
        rtol=1e-10, atol=1e-12)
    grad(f)(w)
    assert {c[0] for c in calls} == set(KERNELS)
    assert all(types == {np.ndarray} for _, types, _ in calls)


# --- a real network gives autograd's own gradients -------------------------------------------

def _params(rng, dtype=np.float64):
    sizes = [20, 32, 16, 3]
    return [(rng.standard_normal((n, m)).astype(dtype) / np.sqrt(m), np.zeros(n, dtype))
            for m, n in zip(sizes, sizes[1:])]


def _loss(ops, kind):
    lin, sig = ops

    def loss(params, x, target):
        h = x
        for i, (w, b) in enumerate(params):
            h = lin(h, w, b)
            if i < len(params) - 1:
                h = sig(h)
        if kind == "mse":
            return anp.mean((h - target) ** 2)
        logp = h - logsumexp(h, axis=1, keepdims=True)
        return -anp.mean(logp[np.arange(len(target)), target])
    return loss


@pytest.mark.parametrize("kind", ["mse", "cross_entropy"])
def test_mlp_gives_autograds_gradients(rng, kernels, calls, kind):
    params, x = _params(rng), rng.standard_normal((64, 20))
    target = rng.standard_normal((64, 3)) if kind == "mse" else np.arange(64) % 3
    want = grad(_loss((_native_linear, _native_sigmoid), kind))(params, x, target)
    assert not calls
    got = grad(_loss((linear, sigmoid), kind))(params, x, target)
    assert sorted(c[0] for c in calls) == sorted(
        ["linear_forward"] * 3 + ["linear_backward"] * 3 + ["sigmoid_forward"] * 2
        + ["sigmoid_backward"] * 2)
    for (gw, gb), (ww, wb) in zip(got, want):
        np.testing.assert_allclose(gw, ww, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(gb, wb, rtol=1e-6, atol=1e-12)


def test_float32(rng):
    params64, x64 = _params(rng), rng.standard_normal((64, 20))
    target = rng.standard_normal((64, 3))
    params32 = [(w.astype(np.float32), b.astype(np.float32)) for w, b in params64]
    want = grad(_loss((linear, sigmoid), "mse"))(params64, x64, target)
    # float32 network, float64 target: autograd hands a float64 gradient to the float32
    # output; it is cast, and every gradient keeps its parameter's dtype.
    got = grad(_loss((linear, sigmoid), "mse"))(params32, x64.astype(np.float32), target)
    for (gw, gb), (ww, wb) in zip(got, want):
        assert gw.dtype == gb.dtype == np.float32
        np.testing.assert_allclose(gw, ww, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(gb, wb, rtol=1e-4, atol=1e-6)


def test_python_float_is_float64():
    assert grad(sigmoid)(0.5) == pytest.approx(_native_sigmoid(0.5) * (1 - _native_sigmoid(0.5)))


# --- errors name the argument ----------------------------------------------------------------

def test_mixed_dtypes_are_a_type_error(rng):
    x, w = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((3, 4))
    with pytest.raises(TypeError, match=r"^w: expected float32 .*\(no silent casting\)"):
        grad(lambda w: anp.sum(linear(x, w)))(w)
    with pytest.raises(TypeError, match=r"^b: expected float32"):
        linear(x, w.astype(np.float32), np.zeros(3))


def test_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match="^x: expected float32 or float64, got int64"):
        sigmoid(np.arange(3))


def test_bias_is_positional(rng):
    # autograd traces positional arguments only; a keyword bias would escape the trace
    with pytest.raises(TypeError, match="positional"):
        linear(np.ones((2, 3)), np.ones((1, 3)), b=np.ones(1))


@pytest.mark.subprocess
def test_importing_cygrad_does_not_import_autograd():
    code = "import sys, cygrad, cygrad.interop; print('autograd' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False"]
