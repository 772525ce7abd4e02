"""cygrad.optim.lr_scheduler against torch.optim.lr_scheduler: the learning rates of every
epoch, two parameter groups, state dicts, resuming, and argument checks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cygrad import Tensor, optim
from cygrad.optim import lr_scheduler

torch = pytest.importorskip("torch")

EPOCHS = 40
LRS = (0.1, 0.02)


class Halving:
    """A callable object: its attributes travel in LambdaLR's state dict."""

    def __init__(self, every: int):
        self.every = every

    def __call__(self, epoch: int) -> float:
        return 0.5 ** (epoch // self.every)


SCHEDULERS = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    "CosineAnnealingLR-to-zero": lambda m, o: m.CosineAnnealingLR(o, T_max=7),
    "LambdaLR": lambda m, o: m.LambdaLR(o, lambda epoch: 1 / (1 + epoch)),
    "LambdaLR-per-group": lambda m, o: m.LambdaLR(o, [lambda e: 0.95 ** e, Halving(4)]),
}


def _optimizers(cls=optim.SGD, torch_cls=None):
    ours = cls([{"params": [Tensor(np.zeros(2), requires_grad=True)], "lr": lr} for lr in LRS])
    torch_cls = torch_cls or getattr(torch.optim, cls.__name__)
    theirs = torch_cls([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr}
                        for lr in LRS])
    return ours, theirs


def _lrs(opt):
    return [group["lr"] for group in opt.param_groups]


def _assert_same_lrs(sched, torch_sched, opt, torch_opt):
    np.testing.assert_allclose(sched.get_last_lr(), torch_sched.get_last_lr(), rtol=1e-13)
    np.testing.assert_allclose(_lrs(opt), _lrs(torch_opt), rtol=1e-13)
    assert sched.last_epoch == torch_sched.last_epoch


def _epoch(opt, torch_opt, schedulers):
    opt.step()
    torch_opt.step()  # before the scheduler's step, as torch expects
    for sched in schedulers:
        sched.step()


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_matches_torch(name):
    opt, torch_opt = _optimizers()
    sched, torch_sched = SCHEDULERS[name](lr_scheduler, opt), SCHEDULERS[name](
        torch.optim.lr_scheduler, torch_opt)
    _assert_same_lrs(sched, torch_sched, opt, torch_opt)
    seen = set()
    for _ in range(EPOCHS):
        _epoch(opt, torch_opt, [sched, torch_sched])
        _assert_same_lrs(sched, torch_sched, opt, torch_opt)
        seen.add(tuple(sched.get_last_lr()))
    assert len(seen) > 2  # the rate did move
    assert [g["initial_lr"] for g in opt.param_groups] == list(LRS) == sched.base_lrs


def test_closed_forms():
    opt = optim.SGD([Tensor(np.zeros(1), requires_grad=True)], lr=0.1)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=0.01)
    for epoch in range(1, 9):
        sched.step()
        want = 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * epoch / 8)) / 2
        assert sched.get_last_lr()[0] == pytest.approx(want, rel=1e-12)
    opt = optim.SGD([Tensor(np.zeros(1), requires_grad=True)], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    got = []
    for _ in range(9):
        got.append(sched.get_last_lr()[0])
        sched.step()
    assert got == [1.0] * 4 + [0.5] * 4 + [0.25]


def test_two_schedulers_compose_as_in_torch():
    opt, torch_opt = _optimizers()
    ours = [lr_scheduler.StepLR(opt, 4, 0.5), lr_scheduler.ExponentialLR(opt, 0.95)]
    theirs = [torch.optim.lr_scheduler.StepLR(torch_opt, 4, 0.5),
              torch.optim.lr_scheduler.ExponentialLR(torch_opt, 0.95)]
    for _ in range(20):
        _epoch(opt, torch_opt, ours + theirs)
        np.testing.assert_allclose(_lrs(opt), _lrs(torch_opt), rtol=1e-13)


def test_scheduler_drives_the_optimizer_step():
    p = Tensor(np.zeros(1), requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = np.ones(1)
        opt.step()
        sched.step()
    np.testing.assert_allclose(p.data, -(1.0 + 0.5 + 0.25))


PLATEAU_CASES = {
    "min-rel": dict(),
    "min-abs-cooldown": dict(threshold=0.05, threshold_mode="abs", patience=1, cooldown=2),
    "max-rel-min_lr": dict(mode="max", patience=0, factor=0.5, min_lr=[0.01, 0.015]),
    "max-abs": dict(mode="max", threshold=0.1, threshold_mode="abs", patience=2, factor=0.2),
}


@pytest.mark.parametrize("case", list(PLATEAU_CASES))
def test_reduce_lr_on_plateau_matches_torch(case, rng):
    opt, torch_opt = _optimizers()
    sched = lr_scheduler.ReduceLROnPlateau(opt, **PLATEAU_CASES[case])
    torch_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_opt, **PLATEAU_CASES[case])
    # A metric that improves, stalls, wobbles, and improves again.
    metrics = np.concatenate([np.linspace(1, 0.5, 5), np.full(15, 0.5) + rng.normal(0, 0.02, 15),
                              np.linspace(0.5, 0.2, 10), np.full(20, 0.2)])
    lrs = set()
    for metric in metrics:
        opt.step()
        torch_opt.step()
        sched.step(metric)
        torch_sched.step(metric)
        _assert_same_lrs(sched, torch_sched, opt, torch_opt)
        assert sched.num_bad_epochs == torch_sched.num_bad_epochs
        lrs.add(tuple(_lrs(opt)))
    assert len(lrs) > 1
    sched.step(Tensor(np.array(0.1)))  # a 0-d Tensor is a metric too
    assert sched.best == pytest.approx(0.1) or PLATEAU_CASES[case].get("mode") == "max"


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "CosineAnnealingLR",
                                  "LambdaLR-per-group"])
def test_state_dict_round_trip_resumes_the_schedule(name):
    opt, _ = _optimizers()
    sched = SCHEDULERS[name](lr_scheduler, opt)
    for _ in range(7):
        opt.step()
        sched.step()
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    assert saved_sched["last_epoch"] == 7 and "optimizer" not in saved_sched
    if name == "LambdaLR-per-group":
        assert saved_sched["lr_lambdas"] == [None, {"every": 4}]
        sched.lr_lambdas[1].every = 99  # restored below from the state dict
    resumed_opt, _ = _optimizers()
    resumed = SCHEDULERS[name](lr_scheduler, resumed_opt)
    resumed_opt.load_state_dict(saved_opt)
    resumed.load_state_dict(saved_sched)
    if name == "LambdaLR-per-group":
        assert resumed.lr_lambdas[1].every == 4
        sched.lr_lambdas[1].every = 4
    for _ in range(15):
        for o, s in ((opt, sched), (resumed_opt, resumed)):
            o.step()
            s.step()
        assert resumed.get_last_lr() == sched.get_last_lr()
        assert resumed.last_epoch == sched.last_epoch


def test_plateau_after_a_group_is_added():
    opt, _ = _optimizers()
    for min_lr in [0.001, [0.001, 0.002]]:
        sched = lr_scheduler.ReduceLROnPlateau(opt, patience=0, min_lr=min_lr)
        opt.add_param_group({"params": [Tensor(np.zeros(1), requires_grad=True)], "lr": 0.5})
        sched.step(1.0)
        if isinstance(min_lr, list):
            with pytest.raises(ValueError, match="min_lrs: holds 2 rates.*3 parameter groups"):
                sched.step(2.0)
        else:
            sched.step(2.0)
            assert _lrs(opt)[2] == pytest.approx(0.05) and sched.min_lrs == [0.001] * 3
        opt.param_groups.pop()


def test_plateau_state_dict_round_trip():
    opt, _ = _optimizers()
    sched = lr_scheduler.ReduceLROnPlateau(opt, patience=1)
    for metric in [1.0, 0.9, 0.95, 0.96]:
        sched.step(metric)
    saved = sched.state_dict()
    again = lr_scheduler.ReduceLROnPlateau(_optimizers()[0], patience=5)
    again.load_state_dict(saved)
    assert (again.best, again.num_bad_epochs, again.patience) == (0.9, 0, 1)


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "ExponentialLR"])
def test_resuming_with_last_epoch_matches_torch(name):
    """Built with last_epoch=k (after the optimizer's groups got 'initial_lr')."""
    opt, torch_opt = _optimizers()
    for o in (opt, torch_opt):
        for group in o.param_groups:
            group["initial_lr"] = group["lr"]
    ours = {"StepLR": lambda m, o: m.StepLR(o, 3, 0.5, last_epoch=5),
            "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, 10, 0.001, last_epoch=5),
            "ExponentialLR": lambda m, o: m.ExponentialLR(o, 0.9, last_epoch=5)}[name]
    sched, torch_sched = ours(lr_scheduler, opt), ours(torch.optim.lr_scheduler, torch_opt)
    _assert_same_lrs(sched, torch_sched, opt, torch_opt)
    for _ in range(10):
        _epoch(opt, torch_opt, [sched, torch_sched])
        _assert_same_lrs(sched, torch_sched, opt, torch_opt)


def test_bad_arguments_raise():
    opt = optim.SGD([Tensor(np.zeros(1), requires_grad=True)], lr=0.1)
    with pytest.raises(TypeError, match="optimizer: expected a cygrad.optim.Optimizer"):
        lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), 3)
    with pytest.raises(ValueError, match="step_size: expected an integer >= 1, got 0"):
        lr_scheduler.StepLR(opt, 0)
    with pytest.raises(TypeError, match="step_size: expected an integer"):
        lr_scheduler.StepLR(opt, 2.5)
    with pytest.raises(ValueError, match="T_max"):
        lr_scheduler.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match=r"milestones\[1\]"):
        lr_scheduler.MultiStepLR(opt, [3, -1])
    with pytest.raises(ValueError, match="gamma"):
        lr_scheduler.ExponentialLR(opt, gamma=-0.5)
    with pytest.raises(ValueError, match="lr_lambda: expected 1 functions"):
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0, lambda e: 1.0])
    with pytest.raises(ValueError, match="last_epoch: resuming at epoch 4 needs 'initial_lr'"):
        lr_scheduler.StepLR(opt, 3, last_epoch=4)
    with pytest.raises(ValueError, match="factor"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode: expected 'min' or 'max'"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="avg")
    with pytest.raises(ValueError, match="threshold_mode"):
        lr_scheduler.ReduceLROnPlateau(opt, threshold_mode="relative")
    with pytest.raises(ValueError, match="min_lr: expected 1 numbers"):
        lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="last_epoch"):
        lr_scheduler.StepLR(opt, 3).load_state_dict({"gamma": 0.5})
    assert opt.param_groups[0]["lr"] == 0.1  # the refused schedulers changed nothing
