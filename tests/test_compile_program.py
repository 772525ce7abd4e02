"""The compiled step's Program (csrc/_plan.pxi): each record gives the eager kernel's
result bit for bit, a plain MLP step replays with no Python call between its records, and
SGD's and Adam's updates run as records where they can and through `optimizer.step()`
where they cannot."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import scipy.special as scipy_special

import cygrad as cg
from cygrad import functional as F
from cygrad import kernels

_linear = pytest.importorskip("cygrad._linear")  # the compiled backend's module
DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True)
def cython_backend():
    with cg.use_backend("cython"):
        yield


def _run(build):
    program = _linear.Program()
    build(program)
    program.run()
    return program


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 7), (5, 3), (33, 17), (0, 4)])
def test_records_equal_the_eager_kernels(rng, dtype, shape):
    rows, cols = shape
    a = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape).astype(dtype)
    a.flat[:3] = [0, np.nan, -0.0][:a.size]
    w = rng.standard_normal((4, cols)).astype(dtype)
    bias = rng.standard_normal(4).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    outs = {name: np.full(s, 7, dtype) for name, s in [
        ("linear", (rows, 4)), ("sigmoid", shape), ("dsigmoid", shape), ("relu", shape),
        ("drelu", shape), ("bias", (cols,)), ("sum", shape), ("prod", shape),
        ("quot", shape), ("copy", shape), ("gw", (4, cols))]}
    g4 = rng.standard_normal((rows, 4)).astype(dtype)

    def build(p):
        p.fill_rows(bias, outs["linear"])
        p.product(a, w, outs["linear"], False, True, True)
        p.sigmoid(a, outs["sigmoid"])
        p.sigmoid_backward(b, y, outs["dsigmoid"], True)
        p.relu(a, outs["relu"])
        p.relu_backward(b, a, outs["drelu"], False)
        p.bias_backward(a, outs["bias"], True)
        p.binary("+", a, b, outs["sum"])
        p.binary("*", a, b, outs["prod"])
        p.binary("/", a, b, outs["quot"])
        p.copy(a, outs["copy"], True)
        p.product(g4, a, outs["gw"], True, False, False)
    program = _run(build)
    assert program.python_calls == 0 and len(program) == 12

    def same(got, want):  # the same bits: zeros' signs (relu of -0.0) included
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
        assert got.dtype == want.dtype
    same(outs["linear"], kernels.linear_forward(a, w, bias))
    same(outs["sigmoid"], kernels.sigmoid_forward(a))
    seven = np.full(shape, 7, dtype)
    kernels.sigmoid_backward(b, y, out=seven, accumulate=True)
    same(outs["dsigmoid"], seven)
    same(outs["relu"], np.maximum(a, 0))
    same(outs["drelu"], np.where(a <= 0, 0, b).astype(dtype))
    bias_sum = np.full(cols, 7, dtype)
    kernels.bias_backward(a, out=bias_sum, accumulate=True)
    same(outs["bias"], bias_sum)
    with np.errstate(all="ignore"):
        same(outs["sum"], a + b)
        same(outs["prod"], a * b)
        same(outs["quot"], a / b)
    same(outs["copy"], 7 + a)
    same(outs["gw"], kernels.linear_backward(g4, a, w, need_grad_x=False,
                                             need_grad_b=False)[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mean", [True, False])
def test_mse_records_equal_the_eager_loss(rng, dtype, mean):
    x = cg.Tensor(rng.standard_normal((6, 3)).astype(dtype), requires_grad=True)
    t = cg.Tensor(rng.standard_normal((6, 3)).astype(dtype), requires_grad=True)
    loss = F.mse_loss(x, t, reduction="mean" if mean else "sum")
    loss.backward()
    diff, out = np.empty((6, 3), dtype), np.empty((), dtype)
    g = np.array(1, dtype)  # the loss's gradient, as backward() seeds it
    gx, gt = np.empty((6, 3), dtype), np.full((6, 3), 2, dtype)

    def build(p):
        p.mse(x.data, t.data, diff, out, mean)
        p.mse_backward(g, diff, gx, 2.0, mean, False)
        p.mse_backward(g, diff, gt, -2.0, mean, True)
    _run(build)
    np.testing.assert_allclose(out, loss.data, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_array_equal(gx, x.grad)
    np.testing.assert_array_equal(gt, 2 + t.grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_scale_record_and_its_factor(rng, dtype, accumulate):
    a = rng.standard_normal((5, 3)).astype(dtype)
    c = np.full((5, 3), 2, dtype)
    program = _linear.Program()
    index = program.scale(a, c, 0.5, accumulate)
    program.set_scale(index, 0.3)  # the factor of the next runs
    program.run()
    want = np.multiply(a, dtype(0.3))
    np.testing.assert_array_equal(c, 2 + want if accumulate else want)
    with pytest.raises(IndexError):
        program.set_scale(index + 1, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(1, 3), (7, 10), (40, 2)])
def test_softmax_log_loss_record_against_numpy(rng, dtype, weighted, shape):
    """scikit-learn's softmax, log loss (probabilities clipped to [eps, 1 - eps]) and
    output error, with and without sample weights; soft targets as well as one-hot."""
    rows, cols = shape
    out = (5 * rng.standard_normal(shape)).astype(dtype)
    out[0, 0] = 200  # the other classes' probabilities underflow: the clip is reached
    y = np.eye(cols, dtype=dtype)[rng.integers(0, cols, rows)]
    y[-1] = rng.dirichlet(np.ones(cols))
    weight = rng.uniform(0.5, 2, rows).astype(dtype) if weighted else None
    loss = np.full(1, 7, dtype)
    logits = out.copy()
    program = _linear.Program()
    program.softmax_log_loss(out, y, weight, loss)
    program.run()

    w = np.ones(rows) if weight is None else weight.astype(np.float64)
    exp = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    prob = exp / exp.sum(axis=1, keepdims=True)
    eps = np.finfo(dtype).eps
    clipped = np.clip(prob, eps, 1 - eps)
    want_loss = -np.average(scipy_special.xlogy(y, clipped), weights=w, axis=0).sum()
    want_error = (prob - y) * w[:, None] / w.sum()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(loss[0], want_loss, **tol)
    np.testing.assert_allclose(out, want_error, **tol)
    assert out.dtype == loss.dtype == dtype


def test_records_refuse_bad_arrays():
    program = _linear.Program()
    a = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="dtype"):
        program.sigmoid(a, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="elements"):
        program.sigmoid(a, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        program.sigmoid(a, np.zeros((4, 3), np.float32).T)
    readonly = np.zeros((3, 4), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        program.relu(a, readonly)
    with pytest.raises(ValueError, match="operator"):
        program.binary("%", a, a, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="shapes"):
        program.product(a, a, np.zeros((3, 3), np.float32), False, False, False)
    with pytest.raises(IndexError):
        program.set_sgd((0,), 0.1, 0, 1, 0, 1, False, False)
    with pytest.raises(ValueError, match="^weight: expected 3 elements"):
        program.softmax_log_loss(a, a, np.ones(4, np.float32), np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="^out: expected 2 dimensions"):
        program.softmax_log_loss(a.reshape(-1), a.reshape(-1), None, np.zeros(1, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        program.scale(a, np.zeros((3, 4)), 1.0, False)
    assert len(program) == 0


def _mlp(activation, dtype=np.float32):
    cg.manual_seed(0)
    return cg.nn.Sequential(cg.nn.Linear(12, 16, dtype=dtype), activation(),
                            cg.nn.Linear(16, 4, dtype=dtype))


@pytest.mark.parametrize("activation", [cg.nn.Sigmoid, cg.nn.ReLU])
@pytest.mark.parametrize("make_optimizer", [
    lambda ps: cg.optim.SGD(ps, lr=0.1),
    lambda ps: cg.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    lambda ps: cg.optim.Adam(ps, lr=1e-2),
    lambda ps: cg.optim.AdamW(ps, lr=1e-2),
], ids=["sgd", "nesterov", "adam", "adamw"])
def test_mlp_step_replays_without_python(rng, activation, make_optimizer):
    model = _mlp(activation)
    opt = make_optimizer(model.parameters())
    step = cg.compile(lambda x, y: F.mse_loss(model(x), y), opt, strict=True)
    x = rng.standard_normal((8, 12)).astype(np.float32)
    y = rng.standard_normal((8, 4)).astype(np.float32)
    for _ in range(3):
        step(x, y)
    (plan,) = step._plans.values()
    assert plan.program.python_calls == 0
    assert plan.updates is not None and plan.updates.program.python_calls == 0
    assert sum(len(records) for records in plan.updates.groups) == 4


def test_updates_fall_back_where_records_cannot(rng):
    """Adam with amsgrad runs optimizer.step(); results equal the eager step's."""
    eager, compiled = _mlp(cg.nn.Sigmoid), _mlp(cg.nn.Sigmoid)
    opts = [cg.optim.Adam(m.parameters(), lr=1e-2, amsgrad=True) for m in (eager, compiled)]
    step = cg.compile(lambda x, y: F.mse_loss(compiled(x), y), opts[1], strict=True)
    x = rng.standard_normal((8, 12)).astype(np.float32)
    y = rng.standard_normal((8, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(20):
            opts[0].zero_grad()
            F.mse_loss(eager(cg.Tensor(x)), cg.Tensor(y)).backward()
            opts[0].step()
            step(x, y)
    (plan,) = step._plans.values()
    assert plan.updates is not None and not plan.updates.step(opts[1])  # refused
    for p, q in zip(eager.parameters(), compiled.parameters()):
        np.testing.assert_array_equal(q.data, p.data)
        assert opts[1].state[q]["step"] == opts[0].state[p]["step"] == 20


def test_state_replaced_by_load_state_dict_is_seen(rng):
    """load_state_dict gives the optimizer new state arrays: the records are rebuilt on
    them, so the loaded moments are the ones updated."""
    eager, compiled = _mlp(cg.nn.ReLU), _mlp(cg.nn.ReLU)
    opts = [cg.optim.Adam(m.parameters(), lr=1e-2) for m in (eager, compiled)]
    step = cg.compile(lambda x, y: F.mse_loss(compiled(x), y), opts[1], strict=True)
    x = rng.standard_normal((8, 12)).astype(np.float32)
    y = rng.standard_normal((8, 4)).astype(np.float32)

    def eager_step():
        opts[0].zero_grad()
        F.mse_loss(eager(cg.Tensor(x)), cg.Tensor(y)).backward()
        opts[0].step()
    for _ in range(5):
        eager_step()
        step(x, y)
    saved = opts[0].state_dict()
    for _ in range(5):
        eager_step()
    opts[1].load_state_dict(opts[0].state_dict())
    compiled.load_state_dict(eager.state_dict())
    for _ in range(5):
        eager_step()
        step(x, y)
    for p, q in zip(eager.parameters(), compiled.parameters()):
        np.testing.assert_array_equal(q.data, p.data)
    assert saved  # the state dict round trip itself is tested in test_optim_api.py


# -- inputs: read where they lie, or copied in --------------------------------------------
def _product_program(dtype=np.float32):
    """c = x @ w with x the program's one input: (program, buffer, w, c)."""
    program = _linear.Program()
    buffer = np.full((3, 4), np.nan, dtype)
    w = np.arange(20, dtype=dtype).reshape(4, 5) / 10
    c = np.zeros((3, 5), dtype)
    program.product(buffer, w, c, False, False, False)
    program.inputs(buffer)
    return program, buffer, w, c


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_input_is_read_where_it_lies(rng, dtype):
    program, buffer, w, c = _product_program(dtype)
    for _ in range(2):
        x = rng.standard_normal((3, 4)).astype(dtype)
        before = x.copy()
        program.run(x)
        np.testing.assert_allclose(c, x @ w, rtol=1e-6)
        np.testing.assert_array_equal(x, before)
    assert np.isnan(buffer).all()  # never copied into


@pytest.mark.parametrize("make", [
    lambda x: np.asfortranarray(x), lambda x: x.astype(np.float64),
    lambda x: x.reshape(-1)[::-1].reshape(3, 4)[::-1, ::-1].copy(order="F"),
], ids=["fortran-order", "float64", "strided"])
def test_an_input_of_another_layout_is_copied_in(rng, make):
    program, buffer, w, c = _product_program()
    x = rng.standard_normal((3, 4)).astype(np.float32)
    program.run(make(x))
    np.testing.assert_array_equal(buffer, x)
    np.testing.assert_allclose(c, x @ w, rtol=1e-6)
    x2 = rng.standard_normal((3, 4)).astype(np.float32)
    program.run(x2)  # read in place again: the records point back at the caller's array
    np.testing.assert_allclose(c, x2 @ w, rtol=1e-6)
    np.testing.assert_array_equal(buffer, x)


def test_an_input_sharing_memory_with_a_written_array_is_copied_in():
    """The output itself as the input: read in place, the product would overwrite what
    it reads."""
    program = _linear.Program()
    buffer, w = np.zeros((3, 4), np.float32), np.eye(4, dtype=np.float32) * 2
    out = np.arange(12, dtype=np.float32).reshape(3, 4)
    program.product(buffer, w, out, False, False, False)
    program.inputs(buffer)
    want = out @ w
    program.run(out)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(buffer, want / 2)


@pytest.mark.parametrize("holds", ["unknown", "the buffer"])
def test_a_python_call_that_may_read_the_buffer_keeps_the_copy(rng, holds):
    program, buffer, w, c = _product_program()
    seen = []
    program.call(lambda: seen.append(buffer.copy()),
                 None if holds == "unknown" else [buffer[1:]])
    x = rng.standard_normal((3, 4)).astype(np.float32)
    program.run(x)
    np.testing.assert_array_equal(seen[-1], x)
    np.testing.assert_allclose(c, x @ w, rtol=1e-6)


def test_a_python_call_holding_other_arrays_lets_inputs_be_read_in_place(rng):
    program, buffer, w, c = _product_program()
    d = np.zeros_like(c)
    program.call(lambda: np.multiply(c, 2, out=d), [c, d])
    x = rng.standard_normal((3, 4)).astype(np.float32)
    program.run(x)
    np.testing.assert_allclose(d, 2 * (x @ w), rtol=1e-6)
    assert np.isnan(buffer).all()
    x = d[:, 1:]  # inside what the call writes, and not C-contiguous: copied
    before = x.copy()
    program.run(x)
    np.testing.assert_array_equal(buffer, before)
    np.testing.assert_allclose(c, before @ w, rtol=1e-6)


def test_arrays_held_by_python_steps():
    from cygrad.compile.plan import _arrays_held
    a, b = np.zeros(3), np.ones(3)
    k = object()
    assert {id(v) for v in _arrays_held(lambda: np.add(a, b, out=b), k)} == {id(a), id(b)}
    assert _arrays_held(lambda s=a, axes=(0,): k.f(s, axes), k) == [a]
    assert {id(v) for v in _arrays_held(b.fill, k)} == {id(b)}  # a bound method
    assert _arrays_held(np.add.reduce, k) == []
    holder = [a]
    assert _arrays_held(lambda: holder[0].fill(0), k) is None
    assert _arrays_held(functools.partial(np.add, a, b), k) is None


def test_records_appended_after_a_run_still_read_the_inputs(rng):
    program, buffer, w, c = _product_program()
    x = rng.standard_normal((3, 4)).astype(np.float32)
    program.run(x)
    d = np.zeros((3, 4), np.float32)
    program.copy(buffer, d, False)  # a second record reading the input
    x2 = rng.standard_normal((3, 4)).astype(np.float32)
    program.run(x2)
    np.testing.assert_array_equal(d, x2)
    np.testing.assert_allclose(c, x2 @ w, rtol=1e-6)
