"""Whole training steps and single recorded ops, written for cygrad and for each peer.

One MLP training step (784-H-10, sigmoid hidden layer, MSE loss, plain SGD) as a user of
each library would write it: cygrad's graph layer, NumPy by hand (forward and backward
written out), PyTorch eager and HIPS autograd (when installed). All start from the same
weights and data. `python -m cygrad bench` and benchmarks/test_bench_training.py time them.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np

from . import functional as F
from . import nn, optim
from .tensor import Tensor

Step = Callable[[], object]
IN_FEATURES, OUT_FEATURES, LR = 784, 10, 0.01


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


def _problem(batch: int, hidden: int, dtype: np.dtype) -> tuple:
    rng = np.random.default_rng(0)
    x = rng.random((batch, IN_FEATURES), dtype=np.float64).astype(dtype)
    target = rng.random((batch, OUT_FEATURES), dtype=np.float64).astype(dtype)
    model = nn.Sequential(nn.Linear(IN_FEATURES, hidden, dtype=dtype, rng=1), nn.Sigmoid(),
                          nn.Linear(hidden, OUT_FEATURES, dtype=dtype, rng=2))
    return x, target, model


def cygrad_step(batch: int, hidden: int, dtype=np.float32) -> Step:
    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    x = Tensor(x)
    opt = optim.SGD(model.parameters(), lr=LR)

    def step() -> float:
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def numpy_step(batch: int, hidden: int, dtype=np.float32) -> Step:
    """The step written out by hand: the forward, the chain rule, the update."""
    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    w1, b1, w2, b2 = (p.data.copy() for p in model.parameters())

    def step() -> float:
        nonlocal w1, b1, w2, b2  # updated in place; nonlocal only for the -= statements
        z = x @ w1.T
        z += b1
        h = 1 / (1 + np.exp(-z))
        out = h @ w2.T
        out += b2
        diff = out - target
        loss = np.vdot(diff, diff) / diff.size
        grad_out = diff * np.asarray(2 / diff.size, diff.dtype)
        grad_h = grad_out @ w2
        grad_z = grad_h * h * (1 - h)
        w2 -= LR * (grad_out.T @ h)
        b2 -= LR * grad_out.sum(0)
        w1 -= LR * (grad_z.T @ x)
        b1 -= LR * grad_z.sum(0)
        return float(loss)
    return step


def torch_step(batch: int, hidden: int, dtype=np.float32) -> Optional[Step]:
    torch = _import("torch")
    if torch is None:
        return None
    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    net = torch.nn.Sequential(torch.nn.Linear(IN_FEATURES, hidden), torch.nn.Sigmoid(),
                              torch.nn.Linear(hidden, OUT_FEATURES)).to(
        torch.float32 if np.dtype(dtype) == np.float32 else torch.float64)
    with torch.no_grad():
        for mine, theirs in zip(model.parameters(), net.parameters()):
            theirs.copy_(torch.from_numpy(mine.data))
    xt, tt = torch.from_numpy(x), torch.from_numpy(target)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()

    def step() -> float:
        opt.zero_grad()
        loss = loss_fn(net(xt), tt)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def autograd_step(batch: int, hidden: int, dtype=np.float32) -> Optional[Step]:
    autograd = _import("autograd")
    if autograd is None:
        return None
    import autograd.numpy as anp

    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    params: List[np.ndarray] = [p.data.copy() for p in model.parameters()]

    def loss_fn(ps: List[np.ndarray]) -> float:
        w1, b1, w2, b2 = ps
        h = 1 / (1 + anp.exp(-(anp.dot(x, w1.T) + b1)))
        diff = anp.dot(h, w2.T) + b2 - target
        return anp.mean(diff * diff)

    value_and_grad = autograd.value_and_grad(loss_fn)

    def step() -> float:
        loss, grads = value_and_grad(params)
        for p, g in zip(params, grads):
            p -= LR * g
        return float(loss)
    return step


def training_steps(batch: int, hidden: int, dtype=np.float32) -> Dict[str, Step]:
    """Implementation name -> one training step; peers that are not installed are left out."""
    steps = {"cygrad": cygrad_step(batch, hidden, dtype),
             "numpy": numpy_step(batch, hidden, dtype),
             "torch": torch_step(batch, hidden, dtype),
             "autograd": autograd_step(batch, hidden, dtype)}
    return {name: step for name, step in steps.items() if step is not None}


def recorded_op() -> Dict[str, Step]:
    """The graph's own cost: record one multiply of two 1-element tensors, run backward."""
    a, b = Tensor(np.ones(1), requires_grad=True), Tensor(np.ones(1), requires_grad=True)

    def cygrad() -> None:
        a.grad = b.grad = None
        (a * b).sum().backward()
    impls: Dict[str, Step] = {"cygrad": cygrad}
    torch = _import("torch")
    if torch is not None:
        at = torch.ones(1, dtype=torch.float64, requires_grad=True)
        bt = torch.ones(1, dtype=torch.float64, requires_grad=True)

        def torch_op() -> None:
            at.grad = bt.grad = None
            (at * bt).sum().backward()
        impls["torch"] = torch_op
    return impls
