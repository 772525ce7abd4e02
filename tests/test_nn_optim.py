"""nn modules (shapes, dtype, initialization, parameter discovery) and the optimizers
against PyTorch's update rules, written out here in NumPy."""
from __future__ import annotations

import math

import numpy as np
import pytest

import cygrad as cg
from cygrad import Tensor, nn, optim
from cygrad import functional as F

EXACT = dict(rtol=1e-12, atol=1e-12)
STEPS = 5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


# -- nn.Linear ----------------------------------------------------------------------------

@pytest.mark.parametrize("in_features, out_features", [(1, 1), (4, 3), (784, 16), (3, 10)])
def test_linear_shapes_dtype_and_init(in_features, out_features):
    layer = nn.Linear(in_features, out_features, rng=0)
    assert layer.weight.shape == (out_features, in_features)
    assert layer.bias.shape == (out_features,)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32 and p.requires_grad is True
    bound = 1 / math.sqrt(in_features)
    values = np.concatenate([layer.weight.data.ravel(), layer.bias.data.ravel()])
    assert np.all(np.abs(values) <= np.float32(bound))
    if values.size >= 1000:  # uniform over the whole interval, not a narrower one
        assert values.max() > 0.95 * bound and values.min() < -0.95 * bound
        assert abs(values.mean()) < 0.05 * bound
    assert [id(p) for p in layer.parameters()] == [id(layer.weight), id(layer.bias)]


def test_linear_forward_is_x_w_transpose_plus_b(rng):
    layer = nn.Linear(4, 3, dtype=np.float64, rng=1)
    x = rng.standard_normal((5, 4))
    y = layer(Tensor(x))
    assert y.shape == (5, 3) and y.dtype == np.float64
    np.testing.assert_allclose(y.data, x @ layer.weight.data.T + layer.bias.data, **EXACT)
    y.sum().backward()
    np.testing.assert_allclose(layer.weight.grad, np.ones((3, 5)) @ x, **EXACT)
    np.testing.assert_allclose(layer.bias.grad, np.full(3, 5.0), **EXACT)


def test_linear_without_bias(rng):
    layer = nn.Linear(4, 3, bias=False, dtype=np.float64, rng=1)
    assert layer.bias is None
    assert layer.parameters() == [layer.weight]
    x = rng.standard_normal((2, 4))
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data.T, **EXACT)


def test_linear_float64_and_seeded():
    a, b = nn.Linear(5, 2, dtype=np.float64, rng=3), nn.Linear(5, 2, dtype=np.float64, rng=3)
    assert a.weight.dtype == np.float64 and a.bias.dtype == np.float64
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


def test_linear_float32_forward_stays_float32(rng):
    layer = nn.Linear(4, 3, rng=0)
    y = layer(Tensor(rng.standard_normal((2, 4)).astype(np.float32)))
    assert y.dtype == np.float32


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_linear_bad_sizes_raise(bad):
    with pytest.raises(ValueError):
        nn.Linear(bad, 3)
    with pytest.raises(ValueError):
        nn.Linear(3, bad)


# -- Module, Sequential -------------------------------------------------------------------

class _Block(nn.Module):
    def __init__(self):
        self.inner = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Tanh())
        self.extra = [nn.Linear(4, 4, rng=1)]
        self.scale = Tensor(np.ones(4, np.float32), requires_grad=True)
        self.buffer = Tensor(np.zeros(4, np.float32))  # no requires_grad: not a parameter

    def forward(self, x):
        return self.extra[0](self.inner(x)) * self.scale


def test_parameters_found_once_each_through_nesting():
    shared = nn.Linear(4, 4, rng=2)
    block = _Block()
    model = nn.Sequential(block, nn.ReLU(), shared, nn.Sigmoid(),
                          nn.Sequential(shared, nn.Sequential(nn.Linear(4, 2, rng=3))))
    params = model.parameters()
    inner, extra, last = block.inner[0], block.extra[0], model[4][1][0]
    want = [inner.weight, inner.bias, extra.weight, extra.bias, block.scale,
            shared.weight, shared.bias, last.weight, last.bias]
    assert len(params) == len(want) == len({id(p) for p in params})
    assert {id(p) for p in params} == {id(p) for p in want}
    assert all(p is not block.buffer for p in params)


def test_zero_grad_sets_grads_to_none(rng):
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Sigmoid(), nn.Linear(4, 2, rng=1))
    model(Tensor(rng.standard_normal((5, 3)).astype(np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_sequential_indexing_len_iteration_and_forward(rng):
    layers = [nn.Linear(3, 4, dtype=np.float64, rng=0), nn.ReLU(),
              nn.Linear(4, 2, dtype=np.float64, rng=1), nn.Tanh()]
    model = nn.Sequential(*layers)
    assert len(model) == 4
    assert model[0] is layers[0] and model[-1] is layers[-1]
    assert list(model) == layers
    x = rng.standard_normal((5, 3))
    h = np.maximum(x @ layers[0].weight.data.T + layers[0].bias.data, 0)
    want = np.tanh(h @ layers[2].weight.data.T + layers[2].bias.data)
    np.testing.assert_allclose(model(Tensor(x)).data, want, **EXACT)
    assert len(nn.Sequential()) == 0


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError):
        nn.Sequential(nn.ReLU(), lambda x: x)


# -- optimizers against PyTorch's rules ---------------------------------------------------

def _problem(rng, dtype=np.float64):
    """Two parameters and, for each step, a fixed gradient for each."""
    start = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    grads = [[rng.standard_normal(p.shape) for p in start] for _ in range(STEPS)]
    params = [Tensor(p.astype(dtype), requires_grad=True) for p in start]
    return start, grads, params


def _run(opt, params, grads, dtype=np.float64):
    for step_grads in grads:
        opt.zero_grad()
        assert all(p.grad is None for p in params)
        for p, g in zip(params, step_grads):
            p.grad = g.astype(dtype)
        given = [p.grad.copy() for p in params]
        opt.step()
        for p, g in zip(params, given):  # the optimizer reads the gradients, never writes
            np.testing.assert_array_equal(p.grad, g)


def _torch_sgd(start, grads, lr, momentum=0.0, weight_decay=0.0, dampening=0.0):
    """torch.optim.SGD's step (nesterov=False), element for element."""
    params = [p.copy() for p in start]
    buffers = [None] * len(params)
    for step_grads in grads:
        for i, (p, g) in enumerate(zip(params, step_grads)):
            d_p = g + weight_decay * p if weight_decay != 0 else g
            if momentum != 0:
                if buffers[i] is None:
                    buffers[i] = d_p.copy()
                else:
                    buffers[i] = momentum * buffers[i] + (1 - dampening) * d_p
                d_p = buffers[i]
            params[i] = p - lr * d_p
    return params


def _torch_adam(start, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """torch.optim.Adam's step (amsgrad=False, maximize=False), element for element."""
    beta1, beta2 = betas
    params = [p.copy() for p in start]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    for step, step_grads in enumerate(grads, start=1):
        for i, (p, g) in enumerate(zip(params, step_grads)):
            if weight_decay != 0:
                g = g + weight_decay * p
            exp_avg[i] = exp_avg[i] + (g - exp_avg[i]) * (1 - beta1)  # lerp_
            exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1 - beta2) * g * g
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            step_size = lr / bias_correction1
            denom = np.sqrt(exp_avg_sq[i]) / math.sqrt(bias_correction2) + eps
            params[i] = p - step_size * exp_avg[i] / denom
    return params


SGD_CASES = {"plain": dict(lr=0.1), "momentum": dict(lr=0.05, momentum=0.9),
             "weight_decay": dict(lr=0.1, weight_decay=0.01),
             "momentum+weight_decay": dict(lr=0.03, momentum=0.8, weight_decay=0.05)}
ADAM_CASES = {"default": dict(), "lr": dict(lr=0.01),
              "weight_decay": dict(lr=0.01, weight_decay=0.1),
              "betas+eps": dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)}


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_matches_pytorch_rule(case, rng):
    start, grads, params = _problem(rng)
    _run(optim.SGD(params, **SGD_CASES[case]), params, grads)
    for p, want in zip(params, _torch_sgd(start, grads, **SGD_CASES[case])):
        np.testing.assert_allclose(p.data, want, **EXACT)


@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_matches_pytorch_rule(case, rng):
    start, grads, params = _problem(rng)
    _run(optim.Adam(params, **ADAM_CASES[case]), params, grads)
    for p, want in zip(params, _torch_adam(start, grads, **ADAM_CASES[case])):
        np.testing.assert_allclose(p.data, want, **EXACT)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, **SGD_CASES["momentum+weight_decay"]),
                                  lambda ps: optim.Adam(ps, **ADAM_CASES["betas+eps"])],
                         ids=["SGD", "Adam"])
def test_optimizers_keep_float32_parameters_float32(make, rng):
    start, grads, params = _problem(rng, np.float32)
    _run(make(params), params, grads, np.float32)
    reference = [Tensor(p, requires_grad=True) for p in start]
    _run(make(reference), reference, grads)
    for p, want in zip(params, reference):
        assert p.dtype == np.float32
        np.testing.assert_allclose(p.data, want.data, rtol=1e-5, atol=1e-6)


def test_parameter_without_gradient_is_left_alone(rng):
    a, b = Tensor(rng.standard_normal(3), requires_grad=True), Tensor(np.ones(2), requires_grad=True)
    for opt in (optim.SGD([a, b], lr=0.1, momentum=0.9, weight_decay=0.1),
                optim.Adam([a, b], lr=0.1, weight_decay=0.1)):
        a.grad, b.grad = np.ones(3), None
        before = a.data.copy()
        opt.step()
        np.testing.assert_array_equal(b.data, np.ones(2))
        assert not np.array_equal(a.data, before)


def test_optimizer_zero_grad_sets_grads_to_none(rng):
    params = [Tensor(rng.standard_normal(3), requires_grad=True) for _ in range(2)]
    for p in params:
        p.grad = np.ones(3)
    optim.Adam(params).zero_grad()
    assert all(p.grad is None for p in params)


def test_optimizer_accepts_a_generator_of_parameters():
    model = nn.Sequential(nn.Linear(2, 2, rng=0), nn.Linear(2, 1, rng=1))
    opt = optim.SGD((p for p in model.parameters()), lr=0.1)
    assert len(opt.param_groups[0]["params"]) == 4


def test_training_step_reduces_the_loss(rng):
    model = nn.Sequential(nn.Linear(4, 8, dtype=np.float64, rng=0), nn.Tanh(),
                          nn.Linear(8, 1, dtype=np.float64, rng=1))
    x, y = Tensor(rng.standard_normal((32, 4))), Tensor(rng.standard_normal((32, 1)))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("lr", [-0.1, float("nan")])
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_bad_lr_raises(cls, lr):
    with pytest.raises(ValueError, match="lr"):
        cls([Tensor(np.ones(2), requires_grad=True)], lr=lr)


@pytest.mark.parametrize("params", [[], [np.ones(2)],
                                    [Tensor(np.ones(2), requires_grad=True), 3.0]],
                         ids=["empty", "ndarray", "number"])
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_bad_params_raise(cls, params):
    with pytest.raises(ValueError, match="params"):
        cls(params, lr=0.1)


def test_bad_hyperparameters_raise():
    p = [Tensor(np.ones(2), requires_grad=True)]
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(p, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.SGD(p, lr=0.1, weight_decay=-1.0)
    for betas in [(1.0, 0.999), (0.9, -0.1)]:
        with pytest.raises(ValueError, match="betas"):
            optim.Adam(p, betas=betas)


def test_backend_choice_does_not_change_an_optimizer_step(rng):
    results = []
    for backend in ("cython", "reference"):
        with cg.use_backend(backend):
            layer = nn.Linear(3, 2, dtype=np.float64, rng=0)
            x = Tensor(np.random.default_rng(1).standard_normal((4, 3)))
            opt = optim.Adam(layer.parameters(), lr=0.01)
            for _ in range(STEPS):
                opt.zero_grad()
                F.mse_loss(layer(x), np.zeros((4, 2))).backward()
                opt.step()
            results.append([p.data.copy() for p in layer.parameters()])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, **EXACT)
