"""The graph layer: Tensor construction, dtypes, broadcasting, gradient accumulation,
backward's errors, no_grad, retain_grad, deep graphs and the freeing of graphs.

Every graph test runs on both backends ("cython" and "reference"): the graph layer must
behave the same whichever kernels it calls.
"""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import cygrad as cg
from cygrad import Tensor
from cygrad import functional as F

EXACT = dict(rtol=1e-12, atol=1e-12)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def no_gc():
    """Cyclic garbage collection off: an object freed here was freed by reference counting,
    so the graph held no reference cycle."""
    was_enabled = gc.isenabled()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


def _param(rng, shape, dtype=np.float64, low=-1.0, high=1.0) -> Tensor:
    return Tensor(rng.uniform(low, high, shape).astype(dtype), requires_grad=True)


def _reduce_to(g: np.ndarray, shape: tuple) -> np.ndarray:
    """NumPy's broadcasting undone: the sum of `g` over the axes an operand of `shape`
    was stretched along."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


# -- construction -------------------------------------------------------------------------

@pytest.mark.parametrize("data, shape", [
    (3, ()), (2.5, ()), (True, ()), ([1, 2, 3], (3,)), ([[1.5, 2], [3, 4]], (2, 2)),
    (np.arange(6).reshape(2, 3), (2, 3)), (np.array([1, 2], dtype=np.int32), (2,)),
    (np.array([True, False]), (2,)), (np.array([1, 2], dtype=np.uint8), (2,)),
    (np.array([0.5, 1.5], dtype=np.float16), (2,)),
], ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(v))
def test_non_float32_data_becomes_float64(data, shape):
    t = Tensor(data)
    assert t.dtype == np.float64 and t.data.dtype == np.float64
    assert t.shape == shape and t.ndim == len(shape)
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=np.float64))
    assert t.grad is None and t.requires_grad is False


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_arrays_keep_their_dtype(dtype, rng):
    data = rng.standard_normal((3, 4)).astype(dtype)
    t = Tensor(data, requires_grad=True)
    assert t.dtype == dtype and t.requires_grad is True
    np.testing.assert_array_equal(t.data, data)
    assert Tensor(dtype(1.5)).dtype == dtype  # a NumPy float scalar too


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32", "float64"])
@pytest.mark.parametrize("data", [1, 2.5, [1, 2, 3], np.arange(4), np.ones(3, np.float32),
                                  np.ones(3, np.float64)], ids=repr)
def test_dtype_argument_converts(data, dtype):
    t = Tensor(data, dtype=dtype)
    assert t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128])
def test_dtype_argument_must_be_float32_or_float64(dtype):
    with pytest.raises(TypeError, match="dtype"):
        Tensor([1, 2], dtype=dtype)


@pytest.mark.parametrize("data", [None, object(), {"a": 1}, "abc", "1.5", [1, "a"], b"12",
                                  1 + 2j, np.array([1 + 2j])],
                         ids=["None", "object", "dict", "str", "numeric-str", "list-with-str",
                              "bytes", "complex", "complex-array"])
def test_bad_data_raises_type_error(data):
    # Not a number, list or ndarray of real numbers: refused, never converted silently
    # (a string parsed as a number, a complex number with its imaginary part dropped).
    with pytest.raises(TypeError, match="data"):
        Tensor(data)


def test_array_like_attributes(rng):
    data = rng.standard_normal((2, 3))
    t = Tensor(data)
    assert t.numpy() is t.data
    assert t.T.shape == (3, 2)
    np.testing.assert_array_equal(t.T.data, data.T)
    assert Tensor([[4.5]]).item() == 4.5 and isinstance(Tensor(2.0).item(), float)
    d = Tensor(data, requires_grad=True).detach()
    assert d.requires_grad is False
    np.testing.assert_array_equal(d.data, data)


def test_detach_stops_the_gradient(backend, rng):
    x = _param(rng, (4,))
    (x * x.detach()).sum().backward()
    np.testing.assert_allclose(x.grad, x.data, **EXACT)  # not 2x


# -- dtypes -------------------------------------------------------------------------------

def _f32_cases(rng):
    """name -> (inputs, fn): every op, with Python numbers on either side."""
    f32 = np.float32
    a, b, c = _param(rng, (3, 4), f32), _param(rng, (4,), f32), _param(rng, (3, 1), f32)
    pos = _param(rng, (3, 4), f32, 0.5, 2.0)
    w, bias = _param(rng, (5, 4), f32), _param(rng, (5,), f32)
    m = _param(rng, (4, 2), f32)
    batch = _param(rng, (2, 3, 4), f32)
    labels = np.array([0, 3, 1])
    return {
        "t*2.0": ([a], lambda a: a * 2.0), "2.0*t": ([a], lambda a: 2.0 * a),
        "t+1": ([a], lambda a: a + 1), "1+t": ([a], lambda a: 1 + a),
        "t-2.0": ([a], lambda a: a - 2.0), "2.0-t": ([a], lambda a: 2.0 - a),
        "t/3.0": ([a], lambda a: a / 3.0), "1/t": ([pos], lambda p: 1 / p),
        "t**2": ([a], lambda a: a ** 2), "t**0.5": ([pos], lambda p: p ** 0.5),
        "2.0**t": ([a], lambda a: 2.0 ** a), "-t": ([a], lambda a: -a),
        "add": ([a, b], lambda a, b: a + b), "sub": ([a, c], lambda a, c: a - c),
        "mul": ([a, c], lambda a, c: a * c), "div": ([a, pos], lambda a, p: a / p),
        "pow": ([pos, a], lambda p, a: p ** a),
        "maximum": ([a, b], lambda a, b: cg.maximum(a, b)),
        "maximum-number": ([a], lambda a: cg.maximum(a, 0.0)),
        "matmul": ([a, m], lambda a, m: a @ m), "matmul-1d": ([b, m], lambda b, m: b @ m),
        "matmul-3d": ([batch, m], lambda x, m: x @ m),
        "sum": ([a], lambda a: a.sum()), "sum-axis": ([a], lambda a: a.sum(axis=0)),
        "mean": ([a], lambda a: a.mean()),
        "mean-keepdims": ([a], lambda a: a.mean(axis=1, keepdims=True)),
        "max": ([a], lambda a: a.max()), "max-axis": ([a], lambda a: a.max(axis=1)),
        "exp": ([a], lambda a: a.exp()), "log": ([pos], lambda p: p.log()),
        "sigmoid": ([a], lambda a: a.sigmoid()), "tanh": ([a], lambda a: a.tanh()),
        "relu": ([a], lambda a: a.relu()), "reshape": ([a], lambda a: a.reshape(2, 6)),
        "transpose": ([batch], lambda x: x.transpose(2, 0)), "T": ([a], lambda a: a.T),
        "permute": ([batch], lambda x: x.permute(2, 0, 1)),
        "getitem": ([a], lambda a: a[[0, 2, 0], 1:]),
        "linear": ([a, w, bias], F.linear), "linear-3d": ([batch, w, bias], F.linear),
        "mse_loss": ([a, pos], F.mse_loss),
        "mse_loss-array": ([a], lambda a: F.mse_loss(a, np.zeros((3, 4), np.float32))),
        "cross_entropy": ([a], lambda a: F.cross_entropy(a, labels)),
        "l2_penalty": ([a, w], lambda a, w: F.l2_penalty([a, w], 0.1)),
        "chain": ([a, b], lambda a, b: ((a * 0.5 + b).sigmoid() * 3 - 1.5).tanh().mean()),
    }


@pytest.mark.parametrize("name", list(_f32_cases(np.random.default_rng(0))))
def test_float32_stays_float32(name, backend, rng):
    inputs, fn = _f32_cases(rng)[name]
    out = fn(*inputs)
    assert out.dtype == np.float32, f"{name}: result is {out.dtype}"
    out.backward(np.ones(out.shape, np.float32))
    for i, t in enumerate(inputs):
        assert t.grad is not None, f"{name}: inputs[{i}] got no gradient"
        assert t.grad.dtype == np.float32, f"{name}: inputs[{i}].grad is {t.grad.dtype}"
        assert t.grad.shape == t.shape
        assert np.all(np.isfinite(t.grad))


def test_gradient_has_its_tensors_dtype_when_dtypes_mix(backend, rng):
    a = _param(rng, (3, 4), np.float32)
    b = _param(rng, (3, 4), np.float64)
    out = a * b  # promotes, as NumPy does
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad, b.data.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(b.grad, a.data.astype(np.float64), **EXACT)


# -- broadcasting -------------------------------------------------------------------------

BROADCAST_SHAPES = [((3, 4), (4,)), ((3, 4), (3, 1)), ((2, 3, 4), (3, 4)), ((), (3, 4)),
                    ((3, 1), (1, 4)), ((4,), (3, 4)), ((2, 1, 4), (3, 1))]
BINARY = {
    "add": (lambda a, b: a + b, lambda g, a, b: (g, g)),
    "sub": (lambda a, b: a - b, lambda g, a, b: (g, -g)),
    "mul": (lambda a, b: a * b, lambda g, a, b: (g * b, g * a)),
    "div": (lambda a, b: a / b, lambda g, a, b: (g / b, -g * a / b ** 2)),
}


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("shape_a, shape_b", BROADCAST_SHAPES, ids=str)
def test_broadcasting_reduces_gradients_to_each_operand(op, shape_a, shape_b, backend, rng):
    forward, grads = BINARY[op]
    a = _param(rng, shape_a)
    b = _param(rng, shape_b, low=0.5, high=2.0)
    out = forward(a, b)
    want = forward(a.data, b.data)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.data, want, **EXACT)
    g = rng.standard_normal(want.shape)
    out.backward(g)
    a_full, b_full = np.broadcast_arrays(a.data, b.data)
    grad_a, grad_b = grads(g, a_full, b_full)
    assert a.grad.shape == shape_a and b.grad.shape == shape_b
    np.testing.assert_allclose(a.grad, _reduce_to(grad_a, shape_a), **EXACT)
    np.testing.assert_allclose(b.grad, _reduce_to(grad_b, shape_b), **EXACT)


def test_ndarray_plus_tensor_returns_a_tensor(backend, rng):
    x = _param(rng, (3, 4))
    array = rng.standard_normal((3, 4))
    for out in (array + x, array - x, array * x, array / x, array @ x.T):
        assert isinstance(out, Tensor) and out.requires_grad
    out = array + x
    np.testing.assert_allclose(out.data, array + x.data, **EXACT)
    (array * x).sum().backward()
    np.testing.assert_allclose(x.grad, array, **EXACT)


# -- gradients at forks -------------------------------------------------------------------

def test_value_used_twice_gets_the_sum(backend, rng):
    x = _param(rng, (5,))
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data, **EXACT)


def test_value_used_three_times_gets_the_sum(backend, rng):
    x = _param(rng, (2, 3))
    (x + x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 3.0))


def test_diamond_graph(backend, rng):
    x = _param(rng, (4,))
    a = x * 2.0
    d = a.exp() * a.sigmoid()  # a forks into two branches that meet again
    d.sum().backward()
    e, s = np.exp(2 * x.data), 1 / (1 + np.exp(-2 * x.data))
    np.testing.assert_allclose(x.grad, 2 * e * s + 2 * e * s * (1 - s), **EXACT)


def test_fork_into_kernel_ops_accumulates(backend, rng):
    # sigmoid and linear write into their input's gradient buffer through a kernel:
    # the second branch must add to the first, not overwrite it.
    x, w = _param(rng, (3, 4)), _param(rng, (2, 4))
    a = x * 1.5
    (a.sigmoid() + a.sigmoid()).sum().backward(retain_graph=False)
    s = 1 / (1 + np.exp(-1.5 * x.data))
    np.testing.assert_allclose(x.grad, 2 * 1.5 * s * (1 - s), **EXACT)
    x.grad = None
    h = x.tanh()
    (F.linear(h, w) + F.linear(h, w) + h.sum()).sum().backward()
    dh = 2 * np.ones((3, 2)) @ w.data + 6  # h.sum() is broadcast over 3 x 2 outputs
    np.testing.assert_allclose(x.grad, dh * (1 - np.tanh(x.data) ** 2), **EXACT)
    np.testing.assert_allclose(w.grad, 2 * np.ones((2, 3)) @ np.tanh(x.data), **EXACT)


def test_gradients_accumulate_across_backward_calls_until_zeroed(backend, rng):
    x = _param(rng, (3,))
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 3.0 + 2 * x.data, **EXACT)
    x.grad = None
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 3.0])


def test_explicit_grad_array_is_not_modified(backend, rng):
    x = _param(rng, (3,))
    g = np.array([1.0, 2.0, 3.0])
    y = x.reshape(3)
    y.backward(g, retain_graph=True)
    y.backward(g)
    np.testing.assert_array_equal(g, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])


# -- backward's errors and retain_graph ---------------------------------------------------

def test_backward_on_non_scalar_needs_grad(backend, rng):
    x = _param(rng, (3,))
    y = x * 2.0
    with pytest.raises(RuntimeError, match="grad"):
        y.backward()
    y.backward(np.ones(3))  # the failed call freed nothing
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


def test_backward_on_single_element_non_scalar_needs_no_grad(backend, rng):
    x = _param(rng, (1, 1))
    (x * 4.0).backward()
    np.testing.assert_array_equal(x.grad, [[4.0]])


@pytest.mark.parametrize("bad_shape", [(3,), (2, 1), (1, 3), (6,), ()], ids=str)
def test_backward_grad_of_wrong_shape_raises_value_error(bad_shape, backend, rng):
    x = _param(rng, (2, 3))
    with pytest.raises(ValueError, match="grad"):
        (x * 2.0).backward(np.ones(bad_shape))
    assert x.grad is None


def test_backward_without_requires_grad_raises(backend):
    with pytest.raises(RuntimeError):
        (Tensor([1.0, 2.0]) * 2.0).sum().backward()


def test_second_backward_through_freed_graph_raises(backend, rng):
    x = _param(rng, (3,))
    loss = (x.exp() * 2.0).sum()
    loss.backward()
    first = x.grad.copy()
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()
    np.testing.assert_array_equal(x.grad, first)


def test_backward_through_a_partly_freed_graph_raises(backend, rng):
    x = _param(rng, (3,))
    h = x.sigmoid()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        (h * 2.0).sum().backward()  # a new op on top of the freed sigmoid


def test_retain_graph_allows_a_second_backward(backend, rng):
    x, w = _param(rng, (4, 3)), _param(rng, (2, 3))
    loss = F.linear(x, w).sigmoid().mean()
    loss.backward(retain_graph=True)
    gx, gw = x.grad.copy(), w.grad.copy()
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * gx, **EXACT)
    np.testing.assert_allclose(w.grad, 2 * gw, **EXACT)
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()


# -- no_grad ------------------------------------------------------------------------------

def test_no_grad_records_nothing(backend, rng, no_gc):
    x = _param(rng, (3,))
    ref = weakref.ref(x)
    with cg.no_grad():
        assert cg.is_grad_enabled() is False
        y = (x * 2.0).exp() + x
        assert y.requires_grad is False
    assert cg.is_grad_enabled() is True
    np.testing.assert_allclose(y.data, np.exp(2 * x.data) + x.data, **EXACT)
    with pytest.raises(RuntimeError):
        y.sum().backward()
    del x
    assert ref() is None  # y holds no reference to its inputs


def test_no_grad_restores_after_an_exception(rng):
    x = _param(rng, (3,))
    with pytest.raises(ZeroDivisionError):
        with cg.no_grad():
            1 / 0
    assert cg.is_grad_enabled() is True
    assert (x * 2.0).requires_grad is True


def test_no_grad_nests(rng):
    x = _param(rng, (3,))
    with cg.no_grad():
        with cg.no_grad():
            pass
        assert cg.is_grad_enabled() is False
        assert (x + 1).requires_grad is False
    assert (x + 1).requires_grad is True


# -- retain_grad --------------------------------------------------------------------------

def test_retain_grad_keeps_an_intermediate_gradient(backend, rng):
    x = _param(rng, (3, 4))
    h = (x * 2.0).retain_grad()
    s = h.sigmoid()
    t = s * 3.0
    loss = t.sum()
    loss.backward()
    sig = 1 / (1 + np.exp(-2 * x.data))
    np.testing.assert_allclose(h.grad, 3 * sig * (1 - sig), **EXACT)
    np.testing.assert_allclose(x.grad, 6 * sig * (1 - sig), **EXACT)
    assert s.grad is None and t.grad is None and loss.grad is None


def test_retained_gradient_accumulates_across_backward_calls(backend, rng):
    x = _param(rng, (3,))
    h = (x * 2.0).retain_grad()
    loss = (h * h).sum().retain_grad()
    loss.backward(retain_graph=True)
    np.testing.assert_allclose(h.grad, 4 * x.data, **EXACT)
    np.testing.assert_array_equal(loss.grad, 1.0)
    loss.backward()
    np.testing.assert_allclose(h.grad, 8 * x.data, **EXACT)
    np.testing.assert_allclose(x.grad, 16 * x.data, **EXACT)  # the old h.grad did not flow


# -- deep graphs and freeing --------------------------------------------------------------

@pytest.mark.slow
def test_backward_through_100000_op_chain():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.sum().backward()  # no RecursionError
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])
    np.testing.assert_array_equal(y.data, [100_001.0, 100_002.0])


@pytest.mark.slow
def test_dropping_a_100000_op_chain_without_backward():
    x = Tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    ref = weakref.ref(y)
    del y  # no crash freeing a deep chain
    assert ref() is None


def _graph_builders(rng):
    """name -> a function building a graph and returning its op results, the output last:
    every op alone, then graphs of several."""
    x, w, b = _param(rng, (4, 3)), _param(rng, (2, 3)), _param(rng, (2,))
    pos = _param(rng, (4, 3), low=0.5, high=2.0)

    def diamond():
        a = x * 2.0
        e, s = a.exp(), a.sigmoid()
        return [a, e, s, e * s]

    def chain():
        h = [F.linear(x, w, b)]
        h.append(h[-1].tanh())
        h.append(F.mse_loss(h[-1], np.zeros((4, 2))) + F.l2_penalty([w], 0.1))
        return h

    single = {
        "add": lambda: x + pos, "sub": lambda: 1.0 - x, "mul": lambda: x * pos,
        "div": lambda: x / pos, "pow": lambda: pos ** x, "neg": lambda: -x,
        "maximum": lambda: cg.maximum(x, pos), "matmul": lambda: x @ w.T,
        "matmul-1d": lambda: b @ w, "sum": lambda: x.sum(axis=0), "mean": lambda: x.mean(),
        "max": lambda: x.max(axis=1), "exp": lambda: x.exp(), "log": lambda: pos.log(),
        "sigmoid": lambda: x.sigmoid(), "tanh": lambda: x.tanh(), "relu": lambda: x.relu(),
        "reshape": lambda: x.reshape(3, 4), "transpose": lambda: x.transpose(1, 0),
        "T": lambda: x.T, "getitem": lambda: x[[0, 0, 2]], "linear": lambda: F.linear(x, w, b),
        "mse_loss": lambda: F.mse_loss(x, pos),
        "cross_entropy": lambda: F.cross_entropy(x, [0, 1, 2, 0]),
        "l2_penalty": lambda: F.l2_penalty([w, b], 0.1),
    }
    builders = {name: (lambda fn=fn: [fn()]) for name, fn in single.items()}
    builders.update(diamond=diamond, chain=chain)
    return builders


@pytest.mark.parametrize("name", list(_graph_builders(np.random.default_rng(0))))
def test_graph_dropped_without_backward_is_freed(name, backend, rng, no_gc):
    results = _graph_builders(rng)[name]()
    assert results[-1].requires_grad
    refs = [weakref.ref(t) for t in results] + [weakref.ref(t.data) for t in results]
    del results  # freed by reference counting alone: the graph has no reference cycle
    assert [r() for r in refs] == [None] * len(refs)


def _loss_and_refs(rng):
    x = _param(rng, (4, 3))
    h = x.exp()
    s = F.linear(h, Tensor(rng.standard_normal((2, 3)))).sigmoid()
    loss = (s * h.sum(axis=1, keepdims=True)).mean()
    return x, loss, [weakref.ref(h), weakref.ref(h.data), weakref.ref(s), weakref.ref(s.data)]


def test_backward_releases_saved_forward_values(backend, rng, no_gc):
    x, loss, refs = _loss_and_refs(rng)
    assert all(r() is not None for r in refs)  # the graph holds them until backward
    loss.backward()
    assert [r() for r in refs] == [None] * len(refs)
    assert x.grad is not None and x.grad.shape == (4, 3)


def test_retain_graph_keeps_saved_forward_values(backend, rng, no_gc):
    x, loss, refs = _loss_and_refs(rng)
    loss.backward(retain_graph=True)
    assert all(r() is not None for r in refs)
    del loss
    assert [r() for r in refs] == [None] * len(refs)


# -- inputs that do not require grad ------------------------------------------------------

def _constant_cases(rng):
    """name -> (fn, inputs, which of the inputs require grad)."""
    a, b = rng.standard_normal((3, 4)), rng.uniform(0.5, 2, (3, 4))
    v, m = rng.standard_normal(4), rng.standard_normal((4, 2))
    w, bias = rng.standard_normal((5, 4)), rng.standard_normal(5)
    return {
        "add": (lambda a, b: a + b, [a, v], [True, False]),
        "sub": (lambda a, b: a - b, [a, v], [False, True]),
        "mul": (lambda a, b: a * b, [a, b], [True, False]),
        "div": (lambda a, b: a / b, [a, b], [False, True]),
        "pow-base": (lambda a, b: b ** a, [a, b], [True, False]),
        "pow-exponent": (lambda a, b: b ** a, [a, b], [False, True]),
        "maximum": (cg.maximum, [a, b], [False, True]),
        "matmul-a": (lambda a, m: a @ m, [a, m], [True, False]),
        "matmul-b": (lambda a, m: a @ m, [a, m], [False, True]),
        "matmul-1d": (lambda v, m: v @ m, [v, m], [False, True]),
        "linear-x": (F.linear, [a, w, bias], [False, True, True]),
        "linear-w": (F.linear, [a, w, bias], [True, False, True]),
        "linear-b": (F.linear, [a, w, bias], [True, True, False]),
        "linear-only-b": (F.linear, [a, w, bias], [False, False, True]),
        "mse_loss-target": (F.mse_loss, [a, b], [True, False]),
        "mse_loss-prediction": (F.mse_loss, [a, b], [False, True]),
        "l2_penalty": (lambda a, b: F.l2_penalty([a, b], 0.5), [a, b], [True, False]),
    }


@pytest.mark.parametrize("name", list(_constant_cases(np.random.default_rng(0))))
def test_inputs_without_requires_grad_get_no_gradient(name, backend, rng):
    fn, arrays, wanted = _constant_cases(rng)[name]
    inputs = [Tensor(a, requires_grad=r) for a, r in zip(arrays, wanted)]
    out = fn(*inputs)
    assert out.requires_grad
    out.backward(np.ones(out.shape))
    for i, (t, r) in enumerate(zip(inputs, wanted)):
        if r:
            assert t.grad is not None and t.grad.shape == t.shape, f"inputs[{i}]"
        else:
            assert t.grad is None, f"inputs[{i}] requires no grad but got one"


@pytest.mark.parametrize("kind", ["ours", "read-only", "float64", "strided"])
def test_a_gradient_set_by_the_user_takes_further_gradients(kind):
    """A writable C-contiguous .grad of the tensor's dtype is added into in place (as
    PyTorch does); any other is first replaced by such a copy, the user's array left as
    it was. Both inputs of x * x add into it."""
    x = Tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
    base = np.array([10.0, 20.0, 30.0], np.float64 if kind == "float64" else np.float32)
    user = np.repeat(base, 2)[::2] if kind == "strided" else base.copy()
    user.flags.writeable = kind != "read-only"
    before = user.copy()
    x.grad = user
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, before + 2 * x.data)
    assert x.grad.dtype == np.float32 and x.grad.flags.c_contiguous
    if kind == "ours":
        assert x.grad is user
    else:
        assert x.grad is not user
        np.testing.assert_array_equal(user, before)
