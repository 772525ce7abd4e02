"""The reference backend against central finite differences (float64), and what both
backends must do with extreme values: sigmoid_forward saturates without a floating-point
warning, and NaN and infinity propagate through every kernel."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from cygrad.backends import reference

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
# Central differences of a function that is linear in the perturbed entry are exact up to
# rounding: about eps * |L| / h = 1e-16 * 10 / 1e-6 = 1e-9. For the sigmoid the truncation
# error h**2 / 6 * |f'''| is below 1e-12. Both are far below these tolerances, and far below
# any wrong formula (a missing term or a transposed product is off by O(1)).
FD_TOL = dict(rtol=1e-6, atol=1e-7)


def numerical_gradient(loss, a: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """dL/da by central differences, perturbing `a` in place one entry at a time."""
    grad = np.empty_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        up = loss()
        a[i] = old - h
        down = loss()
        a[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


def shape_id(shape: tuple) -> str:
    return "x".join(map(str, shape))


# ------------------------------------------------------------- finite differences

@pytest.mark.parametrize("shape", [(1,), (7,), (3, 4), (2, 3, 4)], ids=shape_id)
def test_sigmoid_backward_is_the_derivative(shape, rng):
    x = rng.uniform(-5, 5, shape)
    g = rng.uniform(-1, 1, shape)  # L = sum(G * sigmoid(x))

    def loss():
        return np.sum(g * reference.sigmoid_forward(x))

    want = numerical_gradient(loss, x)
    got = reference.sigmoid_backward(g, reference.sigmoid_forward(x))
    np.testing.assert_allclose(got, want, **FD_TOL)


@pytest.mark.parametrize("shape", [(5,), (1, 5), (4, 5), (2, 3, 5), (4, 1)], ids=shape_id)
def test_bias_backward_is_the_derivative(shape, rng):
    z = rng.uniform(-1, 1, shape)
    b = rng.uniform(-1, 1, shape[-1:])
    g = rng.uniform(-1, 1, shape)  # L = sum(G * (z + b)), b broadcast over leading axes

    def loss():
        return np.sum(g * (z + b))

    np.testing.assert_allclose(reference.bias_backward(g), numerical_gradient(loss, b),
                               **FD_TOL)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("batch, in_features, out_features", [
    pytest.param((4,), 3, 5, id="4x3-to-5"), pytest.param((), 3, 5, id="1d-x"),
    pytest.param((2, 3), 4, 2, id="3d-x"), pytest.param((1,), 1, 1, id="1x1-to-1")])
def test_linear_backward_is_the_derivative(batch, in_features, out_features, with_bias,
                                           rng):
    x = rng.uniform(-1, 1, batch + (in_features,))
    w = rng.uniform(-1, 1, (out_features, in_features))
    b = rng.uniform(-1, 1, (out_features,)) if with_bias else None
    g = rng.uniform(-1, 1, batch + (out_features,))  # L = sum(G * linear_forward(x, w, b))

    def loss():
        return np.sum(g * reference.linear_forward(x, w, b))

    grad_x, grad_w, grad_b = reference.linear_backward(g, x, w)
    np.testing.assert_allclose(grad_x, numerical_gradient(loss, x), **FD_TOL)
    np.testing.assert_allclose(grad_w, numerical_gradient(loss, w), **FD_TOL)
    if with_bias:
        np.testing.assert_allclose(grad_b, numerical_gradient(loss, b), **FD_TOL)


@pytest.mark.parametrize("m, k, n", [(4, 3, 5), (1, 3, 1), (3, 1, 4), (5, 5, 5)],
                         ids=lambda v: str(v))
def test_matmul_backward_is_the_derivative(m, k, n, rng):
    a, b = rng.uniform(-1, 1, (m, k)), rng.uniform(-1, 1, (k, n))
    g = rng.uniform(-1, 1, (m, n))  # L = sum(G * (a @ b))

    def loss():
        return np.sum(g * (a @ b))

    grad_a, grad_b = reference.matmul_backward(g, a, b)
    np.testing.assert_allclose(grad_a, numerical_gradient(loss, a), **FD_TOL)
    np.testing.assert_allclose(grad_b, numerical_gradient(loss, b), **FD_TOL)


def backward_calls(rng) -> dict:
    """kernel -> (a call taking output arrays as keywords, {output name: shape})."""
    def u(*shape):
        return rng.uniform(-1, 1, shape)

    g, y, x, w, a, b = u(4, 5), u(4, 5), u(4, 3), u(5, 3), u(4, 3), u(3, 5)
    return {
        "sigmoid_backward": (lambda **o: (reference.sigmoid_backward(g, y, **o),),
                             {"out": (4, 5)}),
        "bias_backward": (lambda **o: (reference.bias_backward(g, **o),), {"out": (5,)}),
        "linear_backward": (lambda **o: reference.linear_backward(g, x, w, **o),
                            {"grad_x": (4, 3), "grad_w": (5, 3), "grad_b": (5,)}),
        "matmul_backward": (lambda **o: reference.matmul_backward(g, a, b, **o),
                            {"grad_a": (4, 3), "grad_b": (3, 5)}),
    }


@pytest.mark.parametrize("kernel", ["sigmoid_backward", "bias_backward", "linear_backward",
                                    "matmul_backward"])
def test_reference_writes_or_adds_into_the_given_arrays(kernel, rng):
    """The oracle's out= and accumulate= semantics, which the compiled backend is held to:
    accumulate=True adds the gradient to what is there; without it the array is
    overwritten (its old NaNs are not read)."""
    call, shapes = backward_calls(rng)[kernel]
    fresh = call()
    starts = {name: rng.uniform(-1, 1, shape) for name, shape in shapes.items()}
    outs = {name: start.copy() for name, start in starts.items()}
    got = call(**outs, accumulate=True)
    for got_i, name, fresh_i in zip(got, shapes, fresh):
        assert got_i is outs[name]
        np.testing.assert_allclose(got_i, starts[name] + fresh_i, rtol=1e-15, atol=1e-15)
    nans = {name: np.full(shape, np.nan) for name, shape in shapes.items()}
    got = call(**nans)
    for got_i, name, fresh_i in zip(got, shapes, fresh):
        assert got_i is nans[name]
        np.testing.assert_array_equal(got_i, fresh_i)


# ------------------------------------------------------------- sigmoid saturation

@pytest.mark.parametrize("size", [1, 40001], ids=["one", "threaded"])
@pytest.mark.parametrize("x, want", [(-1000.0, 0.0), (1000.0, 1.0), (-np.inf, 0.0),
                                     (np.inf, 1.0)], ids=["-1000", "+1000", "-inf", "+inf"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_forward_saturates_without_warning(kernels, dtype, x, want, size):
    xs = np.full(size, x, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            y = kernels.sigmoid_forward(xs)
    assert y.dtype == dtype and np.all(np.isfinite(y))
    if want == 1.0:
        assert np.all(y == 1)
    else:  # a tiny non-negative number; 0 allowed
        assert np.all(y >= 0) and np.all(y < np.finfo(dtype).tiny)


# ----------------------------------------------------------------- NaN propagation

def product_nan(a_nan: np.ndarray, b_nan: np.ndarray) -> np.ndarray:
    """Where a product of matrices is NaN, given where its factors are: entry (i, j) sums
    a[i, k] * b[k, j] over k, and one NaN term (even NaN * 0) makes the sum NaN."""
    return (a_nan.astype(float) @ np.ones(b_nan.shape) +
            np.ones(a_nan.shape) @ b_nan.astype(float)) > 0


def check_nan(got: np.ndarray, where: np.ndarray) -> None:
    assert where.any()  # the test puts a NaN somewhere it must show
    np.testing.assert_array_equal(np.isnan(got), where)


def with_nan(a: np.ndarray, *index) -> np.ndarray:
    a = a.copy()
    a[index] = np.nan
    return a


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_through_sigmoid(kernels, dtype, rng):
    x = with_nan(rng.uniform(-5, 5, (4, 5)).astype(dtype), 1, 2)
    check_nan(kernels.sigmoid_forward(x), np.isnan(x))
    g, y = rng.uniform(-1, 1, (2, 4, 5)).astype(dtype)
    g, y = with_nan(g, 0, 3), with_nan(y, 2, 1)
    check_nan(kernels.sigmoid_backward(g, y), np.isnan(g) | np.isnan(y))


@pytest.mark.parametrize("shape", [(4, 5), (20000, 7), (64, 4096)],
                         ids=["4x5", "20000x7-tall", "64x4096-wide"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_through_bias_backward(kernels, dtype, shape, rng):
    g = with_nan(rng.uniform(-1, 1, shape).astype(dtype), shape[0] - 1, 3)
    check_nan(kernels.bias_backward(g), np.isnan(g).any(axis=0))


@pytest.mark.parametrize("where", ["x", "w", "b"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_through_linear_forward(kernels, dtype, where, rng):
    args = dict(x=rng.uniform(-1, 1, (4, 3)), w=rng.uniform(-1, 1, (5, 3)),
                b=rng.uniform(-1, 1, 5))
    args = {k: v.astype(dtype) for k, v in args.items()}
    args[where] = with_nan(args[where], *{"x": (1, 2), "w": (2, 0), "b": (3,)}[where])
    x, w, b = args["x"], args["w"], args["b"]
    check_nan(kernels.linear_forward(x, w, b), product_nan(np.isnan(x), np.isnan(w).T)
              | np.isnan(b))


@pytest.mark.parametrize("where", ["grad_out", "x", "w"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_through_linear_backward(kernels, dtype, where, rng):
    args = dict(grad_out=rng.uniform(-1, 1, (4, 5)), x=rng.uniform(-1, 1, (4, 3)),
                w=rng.uniform(-1, 1, (5, 3)))
    args = {k: v.astype(dtype) for k, v in args.items()}
    args[where] = with_nan(args[where], *{"grad_out": (1, 3), "x": (2, 0), "w": (4, 1)}[where])
    g, x, w = (np.isnan(args[k]) for k in ("grad_out", "x", "w"))
    grad_x, grad_w, grad_b = kernels.linear_backward(**args)
    np.testing.assert_array_equal(np.isnan(grad_x), product_nan(g, w))
    np.testing.assert_array_equal(np.isnan(grad_w), product_nan(g.T, x))
    np.testing.assert_array_equal(np.isnan(grad_b), g.any(axis=0))
    assert np.isnan(grad_x).any() or np.isnan(grad_w).any()


@pytest.mark.parametrize("where", ["grad_out", "a", "b"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_through_matmul_backward(kernels, dtype, where, rng):
    args = dict(grad_out=rng.uniform(-1, 1, (4, 5)), a=rng.uniform(-1, 1, (4, 3)),
                b=rng.uniform(-1, 1, (3, 5)))
    args = {k: v.astype(dtype) for k, v in args.items()}
    args[where] = with_nan(args[where], *{"grad_out": (1, 3), "a": (2, 0), "b": (1, 4)}[where])
    g, a, b = (np.isnan(args[k]) for k in ("grad_out", "a", "b"))
    grad_a, grad_b = kernels.matmul_backward(**args)
    np.testing.assert_array_equal(np.isnan(grad_a), product_nan(g, b.T))
    np.testing.assert_array_equal(np.isnan(grad_b), product_nan(a.T, g))
    assert np.isnan(grad_a).any() or np.isnan(grad_b).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_in_an_accumulated_gradient_stays(kernels, dtype, rng):
    """accumulate=True adds to what is there: a NaN already in a gradient stays NaN."""
    def u(*shape):
        return rng.uniform(-1, 1, shape).astype(dtype)

    g, x, w, a, b = u(4, 5), u(4, 3), u(5, 3), u(4, 3), u(3, 5)
    outs = [with_nan(u(4, 5), 0, 0), with_nan(u(5), 1), with_nan(u(4, 3), 2, 2),
            with_nan(u(5, 3), 3, 1), with_nan(u(5), 4), with_nan(u(4, 3), 1, 0),
            with_nan(u(3, 5), 2, 4)]
    where = [np.isnan(o) for o in outs]
    got = [kernels.sigmoid_backward(g, u(4, 5), out=outs[0], accumulate=True),
           kernels.bias_backward(g, out=outs[1], accumulate=True),
           *kernels.linear_backward(g, x, w, *outs[2:5], accumulate=True),
           *kernels.matmul_backward(g, a, b, *outs[5:7], accumulate=True)]
    for got_i, where_i in zip(got, where):
        check_nan(got_i, where_i)


@pytest.mark.parametrize("dtype", DTYPES)
def test_infinity_propagates_as_in_the_formulas(kernels, dtype, rng):
    """+-inf give +-inf or NaN exactly where the NumPy formula does (which does not depend
    on the order of a sum: one NaN, or +inf and -inf together, make it NaN)."""
    def u(*shape):
        return rng.uniform(-1, 1, shape).astype(dtype)

    g, x, w, y, b = u(4, 5), u(4, 3), u(5, 3), u(4, 5), u(3, 5)
    g[1, 3], g[2, 0], x[0, 1], w[4, 2], y[3, 3], b[1, 4] = (
        np.inf, -np.inf, np.inf, -np.inf, np.inf, -np.inf)
    s = kernels.sigmoid_forward(g)
    assert s[1, 3] == 1 and s[2, 0] == 0 and np.all(np.isfinite(s))
    with np.errstate(invalid="ignore"):  # inf - inf in the formulas below is the point
        cases = [(kernels.sigmoid_backward(g, y), g * y * (1 - y)),
                 (kernels.bias_backward(g), g.sum(axis=0)),
                 (kernels.linear_forward(x, w), x @ w.T),
                 *zip(kernels.linear_backward(g, x, w), (g @ w, g.T @ x, g.sum(axis=0))),
                 *zip(kernels.matmul_backward(g, x, b), (g @ b.T, x.T @ g))]
    for got, want in cases:
        assert np.isinf(want).any() or np.isnan(want).any()
        for test in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(test(got), test(want))
