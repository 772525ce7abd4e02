"""cygrad.optim against torch.optim: every optimizer and option combination over many steps
with random gradients, on both backends, float32 and float64; parameter groups, state
dicts, argument checks, and 0-d / one-element parameters."""
from __future__ import annotations

import types

import numpy as np
import pytest

import cygrad
from cygrad import Tensor, backends, optim

torch = pytest.importorskip("torch")

STEPS = 50
SHAPES = [(3, 4), (5,), (), (1,)]  # 0-d and one-element parameters ride along everywhere
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
DTYPES = [np.float32, np.float64]

CASES = {
    "SGD": dict(lr=0.1),
    "SGD-momentum": dict(lr=0.05, momentum=0.9),
    "SGD-dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "SGD-nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "SGD-weight_decay": dict(lr=0.1, weight_decay=0.05),
    "SGD-momentum-weight_decay": dict(lr=0.03, momentum=0.8, dampening=0.1, weight_decay=0.05),
    "SGD-nesterov-weight_decay": dict(lr=0.03, momentum=0.7, nesterov=True, weight_decay=0.1),
    "SGD-maximize": dict(lr=0.1, maximize=True),
    "SGD-maximize-momentum-weight_decay": dict(lr=0.02, momentum=0.9, weight_decay=0.1,
                                               maximize=True),
    "Adam": dict(),
    "Adam-lr-betas-eps": dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6),
    "Adam-weight_decay": dict(lr=0.01, weight_decay=0.1),
    "Adam-amsgrad": dict(lr=0.01, amsgrad=True),
    "Adam-maximize-weight_decay": dict(lr=0.01, weight_decay=0.1, maximize=True),
    "Adam-amsgrad-maximize-weight_decay": dict(lr=0.01, weight_decay=0.05, amsgrad=True,
                                               maximize=True),
    "Adam-decoupled_weight_decay": dict(lr=0.01, weight_decay=0.1,
                                        decoupled_weight_decay=True),
    "AdamW": dict(lr=0.01),
    "AdamW-weight_decay-amsgrad": dict(lr=0.01, weight_decay=0.3, amsgrad=True),
    "AdamW-maximize": dict(lr=0.01, maximize=True),
}


def _classes(case):
    name = case.split("-")[0]
    return getattr(optim, name), getattr(torch.optim, name)


def _make(shapes, dtype, rng):
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ours = [Tensor(np.array(p), requires_grad=True) for p in start]
    theirs = [torch.tensor(p, requires_grad=True) for p in start]
    return ours, theirs


def _run(opt, torch_opt, ours, theirs, grads):
    """Give both the same gradients (None where a step skips a parameter) and step."""
    for step_grads in grads:
        opt.zero_grad()
        torch_opt.zero_grad()
        for p, q, g in zip(ours, theirs, step_grads):
            p.grad = None if g is None else g.copy()
            q.grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()
        torch_opt.step()


def _assert_same(ours, theirs, dtype):
    for p, q in zip(ours, theirs):
        assert isinstance(p.data, np.ndarray) and p.dtype == dtype and p.shape == tuple(q.shape)
        np.testing.assert_allclose(p.data, q.detach().numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_matches_torch(case, dtype, backend, rng):
    ours, theirs = _make(SHAPES, dtype, rng)
    ours_cls, torch_cls = _classes(case)
    opt, torch_opt = ours_cls(ours, **CASES[case]), torch_cls(theirs, **CASES[case])
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    _run(opt, torch_opt, ours, theirs, grads)
    _assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("case", ["SGD", "SGD-momentum", "SGD-nesterov", "Adam", "AdamW"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_zero_d_and_one_element_parameters(case, weight_decay, dtype, backend, rng):
    """A 0-d parameter's update stays a 0-d array (NumPy would make `g + wd * p` a scalar,
    which the compiled in-place kernel does not take)."""
    shapes = [(), (1,), (1, 1)]
    ours, theirs = _make(shapes, dtype, rng)
    ours_cls, torch_cls = _classes(case)
    options = dict(CASES[case], weight_decay=weight_decay)
    opt, torch_opt = ours_cls(ours, **options), torch_cls(theirs, **options)
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(5)]
    _run(opt, torch_opt, ours, theirs, grads)
    _assert_same(ours, theirs, dtype)
    for state in opt.state.values():
        for name, value in state.items():
            if name != "step":
                assert isinstance(value, np.ndarray) and value.dtype == dtype


@pytest.mark.parametrize("case", ["SGD-momentum-weight_decay", "Adam-amsgrad", "AdamW"])
def test_param_groups_and_skipped_gradients_match_torch(case, backend, rng):
    """Per-group options, and parameters without a gradient on some steps (Adam counts
    steps per parameter)."""
    ours, theirs = _make(SHAPES, np.float64, rng)
    ours_cls, torch_cls = _classes(case)

    def groups(params):
        return [{"params": params[:2]}, {"params": params[2:], "lr": 0.003, "weight_decay": 0.2}]

    opt, torch_opt = ours_cls(groups(ours), **CASES[case]), torch_cls(groups(theirs), **CASES[case])
    grads = [[None if (step + i) % 3 == 0 else rng.standard_normal(s)
              for i, s in enumerate(SHAPES)] for step in range(STEPS)]
    _run(opt, torch_opt, ours, theirs, grads)
    _assert_same(ours, theirs, np.float64)
    assert opt.param_groups[1]["lr"] == 0.003 and opt.param_groups[0]["lr"] == CASES[case]["lr"]


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_a_gradient_of_the_wrong_shape_raises(cls):
    """NumPy would broadcast it into the update: a silently wrong step."""
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones((2, 3)), requires_grad=True)
    opt = cls([{"params": [a]}, {"params": [b]}], lr=0.1)
    b.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['params'\]\[0\]\.grad: "
                                         r"expected an array of shape \(2, 3\).*got shape \(3,\)"):
        opt.step()
    b.grad = [[1.0] * 3] * 2
    with pytest.raises(ValueError, match="got list"):
        opt.step()
    np.testing.assert_array_equal(b.data, 1)


def test_param_groups_hold_params_and_every_option():
    a, b = (Tensor(np.ones(2), requires_grad=True) for _ in range(2))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5, "tag": "head"}], lr=0.1,
                    momentum=0.9)
    assert opt.param_groups[0] == {"params": [a], "lr": 0.1, "momentum": 0.9, "dampening": 0,
                                   "weight_decay": 0, "nesterov": False, "maximize": False}
    assert opt.param_groups[1]["params"] == [b] and opt.param_groups[1]["lr"] == 0.5
    assert opt.param_groups[1]["tag"] == "head" and opt.defaults["lr"] == 0.1
    c = Tensor(np.ones(3), requires_grad=True)
    opt.add_param_group({"params": [c], "momentum": 0.0})
    assert opt.param_groups[2]["lr"] == 0.1 and opt.param_groups[2]["momentum"] == 0.0
    assert opt.state[c] == {}  # as in PyTorch, a parameter not stepped yet has empty state
    c.grad = np.ones(3)
    opt.step()
    np.testing.assert_allclose(c.data, 0.9)
    assert opt.state_dict()["state"] == {}  # no momentum used: nothing to save


def test_frozen_parameters_are_skipped_until_unfrozen():
    """As in PyTorch: fine-tuning passes model.parameters() with some of them frozen."""
    frozen = Tensor(np.ones(2))
    opt = optim.SGD([frozen], lr=0.5)
    opt.step()
    np.testing.assert_array_equal(frozen.data, 1)
    frozen.requires_grad = True
    (frozen * frozen).sum().backward()
    opt.step()
    np.testing.assert_allclose(frozen.data, 0.0)


def test_changing_a_groups_lr_changes_the_step():
    p = Tensor(np.zeros(2), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = 0.25
    p.grad = np.ones(2)
    opt.step()
    np.testing.assert_allclose(p.data, -0.25)


def test_zero_grad_set_to_none_false_zeroes_in_place():
    p = Tensor(np.ones(3), requires_grad=True)
    p.grad = grad = np.full(3, 2.0)
    opt = optim.Adam([p])
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad
    np.testing.assert_array_equal(grad, 0)
    opt.zero_grad()
    assert p.grad is None


def test_step_calls_the_closure_and_returns_its_loss():
    p = Tensor(np.array([3.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 9.0
    np.testing.assert_allclose(p.data, [3.0 - 0.1 * 6.0])


# -- state dicts ------------------------------------------------------------------------

def _trained(case, rng, steps=7):
    params = [Tensor(rng.standard_normal(s), requires_grad=True) for s in SHAPES]
    cls, _ = _classes(case)
    opt = cls([{"params": params[:1]}, {"params": params[1:], "lr": 0.002}], **CASES[case])
    for _ in range(steps):
        for p in params:
            p.grad = rng.standard_normal(p.shape)
        opt.step()
    return params, opt


def test_state_dict_has_pytorchs_layout(rng):
    params, opt = _trained("Adam-amsgrad", rng)
    state = opt.state_dict()
    assert set(state) == {"state", "param_groups"}
    assert [g["params"] for g in state["param_groups"]] == [[0], [1, 2, 3]]
    assert state["param_groups"][1]["lr"] == 0.002
    assert state["param_groups"][0]["betas"] == (0.9, 0.999)
    assert sorted(state["state"]) == [0, 1, 2, 3]
    entry = state["state"][2]
    assert set(entry) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert entry["step"] == 7 and entry["exp_avg"].shape == ()
    entry["exp_avg"][...] = 123.0  # a copy: the optimizer's own state is untouched
    assert opt.state[params[2]]["exp_avg"] != 123.0
    momentum = _trained("SGD-momentum", rng)[1].state_dict()["state"]
    assert set(momentum[0]) == {"momentum_buffer"}


@pytest.mark.parametrize("case", ["SGD-nesterov-weight_decay", "Adam-amsgrad", "AdamW"])
def test_state_dict_round_trip_resumes_the_same_run(case, backend, rng):
    params, opt = _trained(case, np.random.default_rng(1), steps=5)
    saved = opt.state_dict()
    copies = [Tensor(p.data.copy(), requires_grad=True) for p in params]
    cls, _ = _classes(case)
    resumed = cls([{"params": copies[:1]}, {"params": copies[1:]}], lr=0.5)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[1]["lr"] == 0.002
    assert resumed.param_groups[1]["params"] == copies[1:]
    for _ in range(5):
        grads = [rng.standard_normal(p.shape) for p in params]
        for p, c, g in zip(params, copies, grads):
            p.grad, c.grad = g, g.copy()
        opt.step()
        resumed.step()
    for p, c in zip(params, copies):
        np.testing.assert_array_equal(p.data, c.data)


@pytest.mark.parametrize("case", ["SGD-momentum-weight_decay", "Adam-amsgrad"])
def test_loads_a_torch_state_dict(case, rng):
    """A torch.optim state dict, its tensors turned into arrays, continues the same run."""
    ours, theirs = _make(SHAPES, np.float64, rng)
    ours_cls, torch_cls = _classes(case)
    torch_opt = torch_cls(theirs, **CASES[case])
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(10)]
    for step_grads in grads[:5]:  # torch trains alone, then hands over its state
        for q, g in zip(theirs, step_grads):
            q.grad = torch.from_numpy(g.copy())
        torch_opt.step()
    for p, q in zip(ours, theirs):
        p.data[...] = q.detach().numpy()
    saved = torch_opt.state_dict()
    converted = {"param_groups": saved["param_groups"],
                 "state": {i: {k: v.numpy() if torch.is_tensor(v) else v for k, v in s.items()}
                           for i, s in saved["state"].items()}}
    opt = ours_cls(ours, lr=1.0)
    opt.load_state_dict(converted)
    _run(opt, torch_opt, ours, theirs, grads[5:])
    _assert_same(ours, theirs, np.float64)


def test_load_state_dict_checks_groups_and_shapes(rng):
    params, opt = _trained("Adam", rng)
    saved = opt.state_dict()
    with pytest.raises(ValueError, match="2 parameter group.*has 1"):
        optim.Adam(params).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"param_groups'\]\[1\]: holds 3 parameter.*holds 2"):
        optim.Adam([{"params": params[:1]}, {"params": params[1:3]}]).load_state_dict(saved)
    swapped = [Tensor(np.zeros((4, 3)), requires_grad=True)] + params[1:]
    with pytest.raises(ValueError, match=r"\['exp_avg'\]: expected an array of shape \(4, 3\)"):
        optim.Adam([{"params": swapped[:1]}, {"params": swapped[1:]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    older = opt.state_dict()
    del older["param_groups"][0]["amsgrad"]  # saved before the option existed
    opt.load_state_dict(older)
    assert opt.param_groups[0]["amsgrad"] is False
    bad = opt.state_dict()
    bad["param_groups"][0]["eps"] = -1.0
    with pytest.raises(ValueError, match="eps"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["eps"] == 1e-8  # nothing was half-loaded


# -- arguments --------------------------------------------------------------------------

def _p():
    return [Tensor(np.ones(2), requires_grad=True)]


@pytest.mark.parametrize("make, name", [
    (lambda: optim.SGD(_p(), lr=-0.1), "lr"),
    (lambda: optim.SGD(_p(), lr=0.1, momentum=-0.5), "momentum"),
    (lambda: optim.SGD(_p(), lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda: optim.SGD(_p(), lr=0.1, nesterov=True), "nesterov"),
    (lambda: optim.SGD(_p(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (lambda: optim.Adam(_p(), lr=float("nan")), "lr"),
    (lambda: optim.Adam(_p(), eps=-1), "eps"),
    (lambda: optim.Adam(_p(), weight_decay=-1), "weight_decay"),
    (lambda: optim.Adam(_p(), betas=(1.0, 0.999)), r"betas\[0\]"),
    (lambda: optim.Adam(_p(), betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda: optim.Adam(_p(), betas=(0.9,)), "betas"),
    (lambda: optim.AdamW(_p(), weight_decay=-0.01), "weight_decay"),
    (lambda: optim.SGD([{"params": _p()}, {"params": _p(), "lr": -1}], lr=0.1),
     r"param_groups\[1\]: lr"),
])
def test_bad_hyperparameters_raise_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=f"^{name}|: {name}"):
        make()


def test_non_numbers_and_bad_params_raise():
    with pytest.raises(TypeError, match="lr: expected a real number, got str"):
        optim.SGD(_p(), lr="0.1")
    with pytest.raises(TypeError, match="pass a list"):
        optim.SGD(_p()[0], lr=0.1)
    with pytest.raises(TypeError, match="set"):
        optim.SGD([{"params": set(_p())}], lr=0.1)
    p = _p()
    with pytest.raises(ValueError, match="already in a parameter group"):
        optim.SGD([{"params": p}, {"params": p}], lr=0.1)
    with pytest.raises(ValueError, match=r"\['params'\]\[1\]: expected a Tensor, got ndarray"):
        optim.Adam(p + [np.ones(2)])
    with pytest.raises(TypeError, match="'params' key"):
        optim.Adam(p).add_param_group([Tensor(np.ones(2), requires_grad=True)])


def test_defaults_are_pytorchs():
    for ours_cls, torch_cls in [(optim.SGD, torch.optim.SGD), (optim.Adam, torch.optim.Adam),
                                (optim.AdamW, torch.optim.AdamW)]:
        ours = ours_cls(_p()).defaults
        theirs = torch_cls([torch.zeros(1, requires_grad=True)]).defaults
        for key, value in ours.items():
            assert theirs[key] == value, (ours_cls.__name__, key)


def test_a_backend_without_add_scaled_steps_with_numpy(monkeypatch, rng):
    kernels = {name: getattr(backends.reference, name) for name in backends.KERNEL_NAMES}
    minimal = types.SimpleNamespace(name="minimal", **kernels)
    monkeypatch.setattr(backends, "_backends", dict(backends._backends))
    cygrad.register_backend("minimal", minimal)
    w = Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    start, g = w.data.copy(), rng.standard_normal((3, 2))
    with cygrad.use_backend("minimal"):
        opt = optim.SGD([w], lr=0.1, momentum=0.9)
        w.grad = g
        opt.step()
    np.testing.assert_allclose(w.data, start - 0.1 * g, rtol=1e-15)


def test_a_custom_optimizer_subclasses_optimizer_as_in_torch():
    class SignSGD(optim.Optimizer):
        def __init__(self, params, lr=0.1, tag=None):
            super().__init__(params, dict(lr=lr, tag=tag))

        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.data -= group["lr"] * np.sign(p.grad)
                        self.state[p]["count"] = self.state[p].get("count", 0) + 1

    p = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = SignSGD([p], lr=0.5)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(2):
        p.grad = np.array([3.0, -0.1])
        opt.step()
        sched.step()
    np.testing.assert_allclose(p.data, [1.0 - 0.75, -2.0 + 0.75])
    assert opt.state_dict()["state"] == {0: {"count": 2}}
    with pytest.raises(ValueError, match="^lr: expected a non-negative number"):
        SignSGD([p], lr=-1.0)
