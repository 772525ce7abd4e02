"""cg.compile: a replayed step equals the eager step (1,000 steps, both backends, both
dtypes, SGD and Adam), falls back with a warning naming what it cannot replay, and sees
parameters, hyperparameters, frozen layers, modes and modules changed between steps."""
from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

import cygrad as cg
from cygrad import functional as F

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-10, np.float32: 1e-5}


class Residual(cg.nn.Module):
    """A Module subclass using element-wise ops, reductions and an L2 penalty."""

    def __init__(self, dtype: object) -> None:
        super().__init__()
        self.first = cg.nn.Linear(6, 5, dtype=dtype)
        self.second = cg.nn.Linear(5, 5, dtype=dtype)
        self.head = cg.nn.Linear(5, 3, bias=False, dtype=dtype)
        self.scale = cg.Tensor(np.full(5, 0.5, dtype), requires_grad=True)

    def forward(self, x: cg.Tensor) -> cg.Tensor:
        h = self.first(x).tanh()
        h = h + self.second(h).relu() * self.scale - h.sigmoid() * 0.25
        h = h / (1.5 + (h * h).exp()) + (-h) * (h / 4.0) - h * h / (h * h + 1.0)
        return self.head(h)


def _sequential(dtype: object) -> cg.nn.Module:
    return cg.nn.Sequential(cg.nn.Linear(6, 8, dtype=dtype), cg.nn.Sigmoid(),
                            cg.nn.Linear(8, 8, dtype=dtype), cg.nn.ReLU(),
                            cg.nn.Linear(8, 3, dtype=dtype))


def _twins(make, dtype):
    """Two models with equal parameters: one trained eagerly, one compiled."""
    cg.manual_seed(0)
    a, b = make(dtype), make(dtype)
    for p, q in zip(a.parameters(), b.parameters()):
        q.data[...] = p.data
    return a, b


def _optimizer(name, params):
    if name == "sgd":
        return cg.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)
    if name == "plain-sgd":
        return cg.optim.SGD(params, lr=0.05)
    return cg.optim.Adam(params, lr=1e-3)


def _loss(model, x, y):
    out = model(x)
    return F.mse_loss(out, y) + F.l2_penalty(model.parameters(), 1e-3) \
        + (out * out).mean() * 0.01 - out.sum() * 1e-4


def _eager_step(model, opt, x, y):
    opt.zero_grad()
    loss = _loss(model, cg.Tensor(x), cg.Tensor(y))
    loss.backward()
    opt.step()
    return loss.item()


def _assert_params_equal(a, b, rtol):
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt_name", ["sgd", "plain-sgd", "adam"])
@pytest.mark.parametrize("make", [_sequential, Residual], ids=["sequential", "module"])
def test_thousand_steps_equal_eager(backend, rng, dtype, opt_name, make):
    eager, compiled = _twins(make, dtype)
    opt_eager = _optimizer(opt_name, eager.parameters())
    opt_compiled = _optimizer(opt_name, compiled.parameters())
    calls = []

    def loss_fn(x, y):
        calls.append(1)
        return _loss(compiled, x, y)

    step = cg.compile(loss_fn, opt_compiled)
    xs = rng.standard_normal((50, 4, 6)).astype(dtype)
    ys = rng.standard_normal((50, 4, 3)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        for i in range(1000):
            expected = _eager_step(eager, opt_eager, xs[i % 50], ys[i % 50])
            loss = step(xs[i % 50], ys[i % 50])
            assert not loss.requires_grad and loss.dtype == dtype
            np.testing.assert_allclose(loss.item(), expected, rtol=RTOL[dtype] * 10)
    assert len(calls) == 1  # recorded once, then replayed
    _assert_params_equal(eager, compiled, RTOL[dtype])
    for p, q in zip(eager.parameters(), compiled.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_without_optimizer_gradients_accumulate_as_backward(backend, rng, dtype):
    eager, compiled = _twins(_sequential, dtype)
    step = cg.compile(lambda x, y: _loss(compiled, x, y))
    x = rng.standard_normal((4, 6)).astype(dtype)
    y = rng.standard_normal((4, 3)).astype(dtype)
    for _ in range(3):
        loss = step(x, y)
        expected = _loss(eager, cg.Tensor(x), cg.Tensor(y))
        expected.backward()
        np.testing.assert_allclose(loss.item(), expected.item(), rtol=RTOL[dtype])
    for p, q in zip(eager.parameters(), compiled.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=RTOL[dtype] * 10,
                                   atol=RTOL[dtype] * 1e-2)
    compiled.zero_grad()
    step(x, y)
    one = _loss(eager, cg.Tensor(x), cg.Tensor(y))
    eager.zero_grad()
    one.backward()
    for p, q in zip(eager.parameters(), compiled.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=RTOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_zero_d_and_one_element_parameters(backend, dtype, weight_decay):
    def make():
        return [cg.Tensor(np.asarray(0.5, dtype), requires_grad=True),
                cg.Tensor(np.full(1, -0.25, dtype), requires_grad=True)]
    eager, compiled = make(), make()

    def loss_of(params, x):
        scalar, single = params
        return ((x * scalar + single).tanh() - x).mean() + F.l2_penalty(params, 0.01)

    opt_eager = cg.optim.SGD(eager, lr=0.1, momentum=0.5, weight_decay=weight_decay)
    opt_compiled = cg.optim.SGD(compiled, lr=0.1, momentum=0.5, weight_decay=weight_decay)
    step = cg.compile(lambda x: loss_of(compiled, x), opt_compiled)
    x = np.linspace(-1, 1, 7).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(200):
            opt_eager.zero_grad()
            loss_of(eager, cg.Tensor(x)).backward()
            opt_eager.step()
            step(x)
    for p, q in zip(eager, compiled):
        assert q.shape == p.shape
        np.testing.assert_allclose(q.data, p.data, rtol=RTOL[dtype])


def _mlp_step(dtype=np.float64, **kwargs):
    cg.manual_seed(1)
    model = _sequential(dtype)
    opt = cg.optim.SGD(model.parameters(), lr=0.1)
    return model, opt, cg.compile(lambda x, y: F.mse_loss(model(x), y), opt, **kwargs)


def test_new_signature_records_a_new_plan(rng):
    model, _, step = _mlp_step()
    twin = _sequential(np.float64)
    for p, q in zip(model.parameters(), twin.parameters()):
        q.data[...] = p.data
    opt = cg.optim.SGD(twin.parameters(), lr=0.1)
    for batch in (4, 9, 4, 1, 9):
        x, y = rng.standard_normal((batch, 6)), rng.standard_normal((batch, 3))
        step(x, y)
        opt.zero_grad()
        F.mse_loss(twin(cg.Tensor(x)), cg.Tensor(y)).backward()
        opt.step()
    _assert_params_equal(twin, model, 1e-12)


@pytest.mark.parametrize("first", ["linear", "tanh"])
def test_each_step_reads_its_own_inputs_and_leaves_them(backend, rng, first):
    """Whether the plan reads the inputs where they lie (records only) or copies them in
    (a Python step, tanh, reads the input), each call computes on its own arrays, views
    of a larger one included, and writes none of them."""
    cg.manual_seed(2)
    model = cg.nn.Sequential(cg.nn.Linear(6, 4, dtype=np.float64), cg.nn.Sigmoid(),
                             cg.nn.Linear(4, 3, dtype=np.float64))

    def loss_fn(x, y):
        return F.mse_loss(model(x.tanh() if first == "tanh" else x), y)

    step = cg.compile(loss_fn, strict=True)
    xs, ys = rng.standard_normal((5, 4, 6)), rng.standard_normal((5, 4, 3))
    before = xs.copy(), ys.copy()
    for i in [0, 1, 2, 1, 3, 4, 0]:
        loss = step(xs[i], ys[i])
        x = cg.Tensor(xs[i])
        want = F.mse_loss(model(x.tanh() if first == "tanh" else x), cg.Tensor(ys[i]))
        assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_array_equal(xs, before[0])
    np.testing.assert_array_equal(ys, before[1])


def test_in_place_parameter_changes_are_seen(rng):
    model, _, step = _mlp_step()
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    step(x, y)
    step(x, y)
    weights = model.state_dict()
    model[0].weight.data[...] = 0.0  # a user's in-place edit
    model.load_state_dict({k: v * 2 for k, v in weights.items()})  # copies in place
    before = [p.data.copy() for p in model.parameters()]
    loss = step(x, y)
    expected = F.mse_loss(_forward_with(model, before, x), cg.Tensor(y))
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-12)


def _forward_with(model, arrays, x):
    twin = _sequential(np.float64)
    for p, a in zip(twin.parameters(), arrays):
        p.data[...] = a
    return twin(cg.Tensor(x))


def test_replaced_parameter_array_records_again(rng):
    model, _, step = _mlp_step()
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    step(x, y)
    step(x, y)
    new = np.zeros((8, 6))
    model[0].weight.data = new  # a new array object, not an in-place edit
    before = [p.data.copy() for p in model.parameters()]
    loss = step(x, y)
    expected = F.mse_loss(_forward_with(model, before, x), cg.Tensor(y))
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-12)
    assert model[0].weight.data is new and np.any(new != 0)  # the new array trained


def test_freezing_and_unfreezing_a_layer_is_seen(backend, rng):
    """requires_grad_(False) on a layer between steps: the compiled step stops computing
    and applying its gradient, as the eager step does, and starts again when unfrozen."""
    eager, compiled = _twins(_sequential, np.float64)
    opt_eager = cg.optim.SGD(eager.parameters(), lr=0.1, momentum=0.9)
    opt_compiled = cg.optim.SGD(compiled.parameters(), lr=0.1, momentum=0.9)
    step = cg.compile(lambda x, y: F.mse_loss(compiled(x), y), opt_compiled)
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    frozen_params = set(eager[2].parameters())
    for i in range(8):
        frozen = 2 <= i < 5
        for model in (eager, compiled):
            model[2].requires_grad_(not frozen)
        before = compiled[2].weight.data.copy()
        opt_eager.zero_grad()
        F.mse_loss(eager(cg.Tensor(x)), cg.Tensor(y)).backward()
        opt_eager.step()
        step(x, y)
        _assert_params_equal(eager, compiled, 1e-12)
        assert np.array_equal(compiled[2].weight.data, before) == frozen
        for p, q in zip(eager.parameters(), compiled.parameters()):
            assert (q.grad is None) == (p.grad is None) == (frozen and p in frozen_params)
            if p.grad is not None:
                np.testing.assert_allclose(q.grad, p.grad, rtol=1e-12)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_a_parameter_the_loss_does_not_reach_is_skipped(rng, opt_name):
    eager, compiled = _twins(_sequential, np.float64)
    opts = [_optimizer(opt_name, m.parameters()) for m in (eager, compiled)]
    step = cg.compile(lambda x, y: F.mse_loss(compiled[:3](x), y), opts[1])  # no head
    eager_steps = []
    for i in range(5):
        if i == 3:  # the update records run from here on, without the head
            opts[1].step = lambda: eager_steps.append(1)
        x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 8))
        opts[0].zero_grad()
        F.mse_loss(eager[:3](cg.Tensor(x)), cg.Tensor(y)).backward()
        opts[0].step()
        step(x, y)
        _assert_params_equal(eager, compiled, 1e-12)
        assert compiled[4].weight.grad is None and compiled[4].weight not in opts[1].state
    assert not eager_steps


def test_a_constant_that_starts_requiring_grad_gets_it(rng):
    model = _sequential(np.float64)
    shift = cg.Tensor(rng.standard_normal(3))  # no grad: a constant in the first plan
    step = cg.compile(lambda x, y: F.mse_loss(model(x) + shift, y))
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    step(x, y)
    step(x, y)
    shift.requires_grad_(True)
    model.zero_grad()
    step(x, y)
    got = shift.grad.copy()
    shift.grad = None
    F.mse_loss(model(cg.Tensor(x)) + shift, cg.Tensor(y)).backward()
    np.testing.assert_allclose(got, shift.grad, rtol=1e-12)


def _with_dropout():
    return cg.nn.Sequential(cg.nn.Linear(6, 16, dtype=np.float64), cg.nn.Dropout(0.5, rng=3),
                            cg.nn.Linear(16, 3, dtype=np.float64))


def test_train_and_eval_modes_are_seen(rng):
    """A step recorded in eval mode (Dropout is the identity there) is not replayed once
    the model trains: Dropout runs again, and the step falls back to eager for it."""
    eager, compiled = _twins(lambda dtype: _with_dropout(), np.float64)
    step = cg.compile(lambda x, y: F.mse_loss(compiled(x), y))
    x, y = rng.standard_normal((8, 6)), rng.standard_normal((8, 3))

    def losses(steps):
        got = [step(x, y).item() for _ in range(steps)]
        want = [F.mse_loss(eager(cg.Tensor(x)), cg.Tensor(y)).item() for _ in range(steps)]
        np.testing.assert_allclose(got, want, rtol=1e-12)
        return got

    for model in (eager, compiled):
        model.eval()
    first, second = losses(2)
    assert second == pytest.approx(first, rel=1e-12)  # no mask
    for model in (eager, compiled):
        model.train()
    with pytest.warns(cg.CompileWarning, match="'dropout'"):
        got = losses(3)
    assert min(abs(a - b) for a, b in zip(got, got[1:])) > 1e-6  # a new mask each step


def test_replaced_parameters_and_layers_are_seen(rng):
    """Assigning a new parameter Tensor or a new layer to the model between steps: the
    next step computes with it."""
    model = _sequential(np.float64)
    recorded = []

    def loss_fn(x, y):
        recorded.append(1)  # runs only when the step is recorded
        return F.mse_loss(model(x), y)

    step = cg.compile(loss_fn)
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))

    def check():
        want = F.mse_loss(model(cg.Tensor(x)), cg.Tensor(y)).item()
        assert step(x, y).item() == pytest.approx(want, rel=1e-12)

    step(x, y)
    check()
    model[0].weight = cg.Tensor(rng.standard_normal((8, 6)), requires_grad=True)
    check()
    model[1] = cg.nn.Tanh()
    check()
    model.append(cg.nn.Sigmoid())
    y = rng.random((4, 3))
    check()
    assert len(recorded) == 4
    model.train()  # already training: nothing changes, nothing is recorded
    model.zero_grad()
    check()
    check()
    assert len(recorded) == 4


def test_a_changed_module_setting_is_seen(rng):
    class Scaled(cg.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = cg.nn.Linear(6, 3, dtype=np.float64)
            self.scale = 2.0

        def forward(self, x):
            return self.linear(x) * self.scale

    model = Scaled()
    step = cg.compile(lambda x, y: F.mse_loss(model(x), y))
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    step(x, y)
    step(x, y)
    model.scale = 3.0
    want = F.mse_loss(model(cg.Tensor(x)), cg.Tensor(y)).item()
    assert step(x, y).item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_learning_rate_changes_are_seen(rng, momentum):
    eager, compiled = _twins(_sequential, np.float64)
    opt_eager = cg.optim.SGD(eager.parameters(), lr=0.1, momentum=momentum)
    opt_compiled = cg.optim.SGD(compiled.parameters(), lr=0.1, momentum=momentum)
    sched_eager = cg.optim.lr_scheduler.StepLR(opt_eager, step_size=3, gamma=0.5)
    sched_compiled = cg.optim.lr_scheduler.StepLR(opt_compiled, step_size=3, gamma=0.5)
    step = cg.compile(lambda x, y: F.mse_loss(compiled(x), y), opt_compiled)
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    for i in range(12):
        opt_eager.zero_grad()
        F.mse_loss(eager(cg.Tensor(x)), cg.Tensor(y)).backward()
        opt_eager.step()
        step(x, y)
        sched_eager.step()
        sched_compiled.step()
        if i == 7:
            opt_eager.param_groups[0]["lr"] = opt_compiled.param_groups[0]["lr"] = 0.3
        if i == 9:  # a group's momentum turned on (or off) between steps
            for opt in (opt_eager, opt_compiled):
                opt.param_groups[0]["momentum"] = 0.5 - momentum / 2
    _assert_params_equal(eager, compiled, 1e-12)


def _split_model():
    cg.manual_seed(0)
    return _sequential(np.float64)


def test_gradients_of_leaves_outside_the_optimizer_add_up(backend, rng):
    """The optimizer's zero_grad() clears only its own parameters: the other leaves'
    .grad adds up over calls, as with backward() (here a second optimizer steps the body
    every third call, accumulating its gradient)."""
    models, params = {}, {}
    for mode in ("eager", "compiled"):
        model = models[mode] = _split_model()
        head = cg.optim.SGD(model[4].parameters(), lr=0.1, momentum=0.9)
        body = cg.optim.SGD(list(model[0].parameters()) + list(model[2].parameters()),
                            lr=0.1)

        def loss_fn(x, y, model=model):
            return F.mse_loss(model(x), y)

        step = cg.compile(loss_fn, head)
        data = np.random.default_rng(0)
        for i in range(6):
            x, y = data.standard_normal((5, 6)), data.standard_normal((5, 3))
            if mode == "compiled":
                step(x, y)
            else:
                head.zero_grad()
                loss_fn(cg.Tensor(x), cg.Tensor(y)).backward()
                head.step()
            if i == 4:
                params[mode] = model[0].bias.grad.copy()
            if i % 3 == 2:
                body.step()
                body.zero_grad()
    _assert_params_equal(models["eager"], models["compiled"], 1e-12)
    np.testing.assert_allclose(params["compiled"], params["eager"], rtol=1e-12)


def test_regrouped_parameters_take_their_new_group_hyperparameters(backend, rng):
    models = {}
    for mode in ("eager", "compiled"):
        model = models[mode] = _split_model()
        ps = list(model.parameters())
        opt = cg.optim.SGD([{"params": ps[:4]}, {"params": ps[4:], "lr": 0.0}], lr=0.1)
        step = cg.compile(lambda x, y, model=model: F.mse_loss(model(x), y), opt)
        data = np.random.default_rng(0)
        for i in range(6):
            if i == 2:  # the head's first parameter moves to the body's group
                opt.param_groups[0]["params"].append(opt.param_groups[1]["params"].pop(0))
            if i == 4:  # one group for all
                first, second = opt.param_groups
                opt.param_groups[:] = [dict(first, params=first["params"] + second["params"])]
            x, y = data.standard_normal((5, 6)), data.standard_normal((5, 3))
            if mode == "compiled":
                step(x, y)
            else:
                opt.zero_grad()
                F.mse_loss(model(cg.Tensor(x)), cg.Tensor(y)).backward()
                opt.step()
    _assert_params_equal(models["eager"], models["compiled"], 1e-12)


def test_an_sgd_state_without_a_momentum_buffer(rng):
    """A state dict may hold momentum_buffer None (as torch's does before a step): the
    next step makes the buffer, as eager does."""
    eager, compiled = _twins(_sequential, np.float64)
    opts = [cg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (eager, compiled)]
    step = cg.compile(lambda x, y: F.mse_loss(compiled(x), y), opts[1])
    for i in range(5):
        if i == 2:
            for opt in opts:
                for p in opt.param_groups[0]["params"]:
                    opt.state[p]["momentum_buffer"] = None
        x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
        opts[0].zero_grad()
        F.mse_loss(eager(cg.Tensor(x)), cg.Tensor(y)).backward()
        opts[0].step()
        step(x, y)
    _assert_params_equal(eager, compiled, 1e-12)


def test_unsupported_op_falls_back_with_one_warning_naming_it(backend, rng):
    eager, compiled = _twins(_sequential, np.float64)
    opt_eager = cg.optim.SGD(eager.parameters(), lr=0.1)
    opt_compiled = cg.optim.SGD(compiled.parameters(), lr=0.1)

    def loss_of(model, x, y):
        return (model(x) - y).max()

    step = cg.compile(lambda x, y: loss_of(compiled, x, y), opt_compiled)
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    with pytest.warns(cg.CompileWarning, match="'max'"):
        step(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning, not one per step
        for _ in range(3):
            step(x, y)
    for _ in range(4):
        opt_eager.zero_grad()
        loss_of(eager, cg.Tensor(x), cg.Tensor(y)).backward()
        opt_eager.step()
    _assert_params_equal(eager, compiled, 1e-12)


def test_strict_raises_naming_the_op(rng):
    model = _sequential(np.float64)
    step = cg.compile(lambda x: model(x).abs().sum(), strict=True)
    with pytest.raises(RuntimeError, match="'abs'"):
        step(rng.standard_normal((2, 6)))


@pytest.mark.parametrize("read", [
    lambda t: t.item(), lambda t: float(t), lambda t: bool(t > 0) if t.ndim == 0 else 0,
    lambda t: t.tolist(), lambda t: np.asarray(t)])
def test_reading_a_value_during_the_step_falls_back(rng, read):
    model = _sequential(np.float64)

    def loss_fn(x, y):
        loss = F.mse_loss(model(x), y)
        if read(loss) is None:  # a data-dependent branch
            return loss * 2
        return loss

    step = cg.compile(loss_fn, cg.optim.SGD(model.parameters(), lr=0.1))
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    with pytest.warns(cg.CompileWarning, match="read of a value"):
        step(x, y)
    first = model[0].weight.data.copy()
    step(x, y)  # runs eagerly: the parameters still train
    assert not np.array_equal(first, model[0].weight.data)
    loss = F.mse_loss(model(cg.Tensor(x)), cg.Tensor(y))
    assert isinstance(loss.item(), float)  # the methods are themselves again


@pytest.mark.parametrize("draw", [
    lambda x: cg.randn(*x.shape, dtype=np.float64), lambda x: cg.rand_like(x)])
def test_random_numbers_drawn_during_the_step_fall_back(rng, draw):
    """Noise made inside fn is new at every step: a replay would repeat the recorded
    draw, so the step runs eagerly, drawing from the same generator as eager code."""
    model = _sequential(np.float64)

    def loss_fn(x, y):
        return F.mse_loss(model(x + draw(x) * 0.1), y)

    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    step = cg.compile(loss_fn)
    cg.manual_seed(5)
    with pytest.warns(cg.CompileWarning, match=r"cg\.rand.* \(random numbers drawn"):
        got = [step(x, y).item() for _ in range(3)]
    cg.manual_seed(5)
    want = [loss_fn(cg.Tensor(x), cg.Tensor(y)).item() for _ in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert len(set(got)) == 3
    with pytest.raises(RuntimeError, match=r"cg\.randn"):
        cg.compile(lambda x: model(x + cg.randn(*x.shape, dtype=np.float64)).sum(),
                   strict=True)(x)


@pytest.mark.parametrize("cut", [lambda t: t.detach(), lambda t: cg.Tensor(t)],
                         ids=["detach", "Tensor"])
def test_a_value_cut_from_the_graph_is_the_current_one(backend, rng, cut):
    """A target computed in the step and cut from the graph (a target network's output,
    a stop-gradient) is replayed from this step's values, not the recorded ones."""
    eager, compiled = _twins(_sequential, np.float64)
    cg.manual_seed(4)
    target = _sequential(np.float64)
    opts = [cg.optim.SGD(m.parameters(), lr=0.1) for m in (eager, compiled)]

    def loss_of(model, x, y):
        return F.mse_loss(model(x), cut(target(x)) + y)

    step = cg.compile(lambda x, y: loss_of(compiled, x, y), opts[1], strict=True)
    for _ in range(4):
        x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
        target[0].weight.data *= 0.9  # the target moves too
        opts[0].zero_grad()
        want = loss_of(eager, cg.Tensor(x), cg.Tensor(y))
        want.backward()
        opts[0].step()
        assert step(x, y).item() == pytest.approx(want.item(), rel=1e-12)
        assert target[0].weight.grad is None
    _assert_params_equal(eager, compiled, 1e-12)


def test_a_value_made_a_new_leaf_that_requires_grad_falls_back(rng):
    model = _sequential(np.float64)
    step = cg.compile(lambda x: cg.Tensor(model(x), requires_grad=True).sum())
    with pytest.warns(cg.CompileWarning, match="requires_grad=True"):
        step(rng.standard_normal((2, 6)))


def test_bad_arguments_are_named(rng):
    model = _sequential(np.float64)
    with pytest.raises(TypeError, match="fn"):
        cg.compile(42)
    with pytest.raises(TypeError, match="optimizer"):
        cg.compile(lambda x: model(x).sum(), optimizer="sgd")
    step = cg.compile(lambda x: model(x))
    with pytest.raises(TypeError, match="single-element loss"):
        step(rng.standard_normal((2, 6)))
    step = cg.compile(lambda x: model(x).sum())
    with pytest.raises(ValueError, match=r"inputs\[0\]"):
        step(cg.Tensor(rng.standard_normal((2, 6)), requires_grad=True))


def test_replay_allocates_nothing_that_stays(rng):
    model, _, step = _mlp_step(np.float32)
    x = rng.standard_normal((16, 6)).astype(np.float32)
    y = rng.standard_normal((16, 3)).astype(np.float32)
    tracemalloc.start()
    try:
        for _ in range(4000):  # Python's and NumPy's caches of small objects fill first
            step(x, y).item()
        first, _ = tracemalloc.get_traced_memory()
        for _ in range(4000):
            step(x, y).item()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert second - first < 16 * 1024, (first, second)


def test_a_compiled_step_inside_a_recorded_one_is_refused(rng):
    model = _sequential(np.float64)
    inner = cg.compile(lambda x: model(x).sum())
    outer = cg.compile(lambda x: inner(x) * 1.0)
    with pytest.raises(RuntimeError, match="being recorded"):
        outer(rng.standard_normal((2, 6)))
    assert isinstance(model(cg.Tensor(np.ones((1, 6)))).sum().item(), float)  # restored


def test_separate_compiled_steps_run_in_two_threads(rng):
    """While one thread records its step, another thread's compiled step replays (and a
    recording of its own waits for the first to finish) instead of being refused as a
    nested call."""
    import threading

    a, b = _sequential(np.float64), _sequential(np.float64)
    inside, leave = threading.Event(), threading.Event()

    def slow_loss(x, y):
        loss = F.mse_loss(a(x), y)
        inside.set()
        assert leave.wait(10)
        return loss

    step_a = cg.compile(slow_loss)
    step_b = cg.compile(lambda x, y: F.mse_loss(b(x), y))
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    step_b(x, y)  # recorded: the call below replays
    thread = threading.Thread(target=step_a, args=(x, y))
    thread.start()
    second = []
    other = threading.Thread(target=lambda: second.append(step_b(x[:2], y[:2]).item()))
    try:
        assert inside.wait(10)
        want = F.mse_loss(b(cg.Tensor(x)), cg.Tensor(y)).item()
        assert step_b(x, y).item() == pytest.approx(want, rel=1e-12)
        other.start()  # a new signature: its recording waits for a's
        other.join(0.2)
        assert other.is_alive() and not second
    finally:
        leave.set()
        thread.join()
        other.join()
    want = F.mse_loss(b(cg.Tensor(x[:2])), cg.Tensor(y[:2])).item()
    assert second == [pytest.approx(want, rel=1e-12)]


def test_the_recording_check_still_compares_values_beside_an_infinity():
    from cygrad.compile import _close

    eager = np.array([np.inf, 1.0, 2.0])
    assert _close(eager.copy(), eager)
    assert not _close(np.array([np.inf, 1.0, 2.5]), eager)


def test_on_the_reference_backend_the_plan_calls_the_reference_kernels(rng, monkeypatch):
    from cygrad.backends import reference
    cg.set_backend("reference")
    model, _, step = _mlp_step()
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    step(x, y)  # recorded
    calls = []
    for name in ("linear_forward", "linear_backward", "sigmoid_forward", "sigmoid_backward"):
        kernel = getattr(reference, name)
        monkeypatch.setattr(reference, name,
                            lambda *a, _k=kernel, _n=name, **kw: calls.append(_n) or _k(*a, **kw))
    for _ in range(3):
        step(x, y)
    # three Linear layers and one Sigmoid, three steps
    assert sorted(calls) == sorted(["linear_forward"] * 9 + ["linear_backward"] * 9
                                   + ["sigmoid_forward"] * 3 + ["sigmoid_backward"] * 3)
