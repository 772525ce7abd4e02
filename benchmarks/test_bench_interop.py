"""One MLP training step in another engine, on its own ops and with cygrad swapped in.

The step: 784-H-10 network, sigmoid hidden layer, MSE loss, backward, SGD update, float32.
One group per (batch, hidden) size; read a group's table across:

- `torch`: `nn.Sequential(nn.Linear, nn.Sigmoid, nn.Linear)` and `torch.optim.SGD`;
- `torch+cygrad`: the same model after `cygrad.interop.torch.cygradify`;
- `autograd`: `autograd.grad` of a loss written with `autograd.numpy` (`dot`, `expit`);
- `autograd+cygrad`: the same loss with `cygrad.interop.autograd.linear` / `sigmoid`.

Each engine runs with its default threads (recorded in extra_info). Before timing, one step
with cygrad swapped in is checked against one step on the engine's own ops.

PyTorch runs at its own default OpenMP settings in both torch rows, and cygrad at its
defaults: its loops on its own OpenMP threads, its products on the BLAS's own threads. With
CYGRAD_SHARE_THREADS=1 (or `cygrad.share_threads()` after importing torch) the products'
jobs run on the OpenMP threads PyTorch uses instead (csrc/_blas_threads.h);
`python benchmarks/interference.py torch-order` compares both, in either import order.
"""
from __future__ import annotations

import importlib.util
from typing import Callable, List, Tuple

import numpy as np
import pytest

import cygrad

IN_FEATURES, OUT_FEATURES, LR = 784, 10, 0.1
SIZES = [(1, 64), (64, 256), (256, 512), (1024, 1024)]  # (batch, hidden)
IMPLS = ["torch", "torch+cygrad", "autograd", "autograd+cygrad"]

Step = Callable[[], object]
Make = Callable[[int, int, bool], Tuple[Step, Callable[[], List[np.ndarray]]]]


def _data(batch: int) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.random((batch, IN_FEATURES), dtype=np.float32),
            rng.random((batch, OUT_FEATURES), dtype=np.float32))


def _torch_step(batch: int, hidden: int, swap: bool):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch not installed")
    from cygrad.interop.torch import cygradify  # first: see interference.py torch-order
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(IN_FEATURES, hidden), torch.nn.Sigmoid(),
                                torch.nn.Linear(hidden, OUT_FEATURES))
    if swap:
        cygradify(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x, target = map(torch.from_numpy, _data(batch))

    def step():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        return loss

    return step, lambda: [p.detach().numpy() for p in model.parameters()]


def _autograd_step(batch: int, hidden: int, swap: bool):
    pytest.importorskip("autograd", reason="autograd not installed")
    import autograd.numpy as anp
    from autograd import grad
    from autograd.scipy.special import expit

    from cygrad.interop import autograd as cg_autograd

    if swap:
        linear, sigmoid = cg_autograd.linear, cg_autograd.sigmoid
    else:
        linear, sigmoid = (lambda x, w, b: anp.dot(x, w.T) + b), expit
    rng = np.random.default_rng(0)
    params = [((rng.uniform(-1, 1, (n, m)) / np.sqrt(m)).astype(np.float32),
               np.zeros(n, np.float32))
              for m, n in ((IN_FEATURES, hidden), (hidden, OUT_FEATURES))]
    x, target = _data(batch)

    def loss(params):
        (w1, b1), (w2, b2) = params
        return anp.mean((linear(sigmoid(linear(x, w1, b1)), w2, b2) - target) ** 2)

    gradient = grad(loss)

    def step():
        for (w, b), (gw, gb) in zip(params, gradient(params)):
            w -= np.float32(LR) * gw  # in place, as torch.optim.SGD updates
            b -= np.float32(LR) * gb

    return step, lambda: [a for pair in params for a in pair]


MAKERS = {"torch": _torch_step, "autograd": _autograd_step}


def _check_swap(make: Make, batch: int, hidden: int) -> None:
    """One step with cygrad swapped in changes the parameters as the engine's own ops do."""
    (native, native_params), (swapped, swapped_params) = (
        make(batch, hidden, False), make(batch, hidden, True))
    native()
    swapped()
    for got, want in zip(swapped_params(), native_params()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch, hidden", SIZES, ids=[f"b{b}-h{h}" for b, h in SIZES])
def test_mlp_step(benchmark, timed, batch, hidden, impl):
    engine, _, swap = impl.partition("+")
    benchmark.group = f"mlp step 784-{hidden}-10 batch={batch} float32"
    make = MAKERS[engine]
    step, _ = make(batch, hidden, bool(swap))
    if swap:
        _check_swap(make, batch, hidden)
    extra = {"cygrad_threads": cygrad.get_num_threads()}
    if engine == "torch":
        import torch
        extra["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info.update(extra)
    # Calibrated rounds at every size (about a second per benchmark, even for the 1024
    # steps): on a shared machine the minimum needs many samples to settle.
    timed(step)
