"""The compiled training step (`cg.compile`) side by side with cygrad eager, NumPy by
hand, PyTorch eager, JAX jit and the step's kernel calls alone (forward and backward into
preallocated arrays, no update): one MLP step, 784-H-10, sigmoid, MSE, SGD, float32.

Run as a script for the memory figure over many replayed steps:
`python benchmarks/test_bench_compile.py --steps 100000` prints tracemalloc's and the RSS's
growth over the second half of the run.
"""
from __future__ import annotations

import argparse
import resource
import tracemalloc
from typing import Callable, Optional

import numpy as np
import pytest

import cygrad as cg
from cygrad import functional as F
from cygrad.cli import peers

SIZES = [(1, 64), (16, 128), (64, 256), (1024, 1024)]  # (batch, hidden)
IMPLS = ["compiled", "cygrad", "numpy", "torch", "jax", "kernels"]


def compiled_step(batch: int, hidden: int, dtype=np.float32) -> Callable[[], float]:
    x, target, model = peers._problem(batch, hidden, np.dtype(dtype))
    opt = cg.optim.SGD(model.parameters(), lr=peers.LR)
    step = cg.compile(lambda x, y: F.mse_loss(model(x), y), opt, strict=True)
    return lambda: step(x, target).item()


def jax_step(batch: int, hidden: int, dtype=np.float32) -> Callable[[], float]:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, target, model = peers._problem(batch, hidden, np.dtype(dtype))
    params = [jnp.asarray(p.data) for p in model.parameters()]
    x, target = jnp.asarray(x), jnp.asarray(target)

    def loss_fn(params, x, y):
        w1, b1, w2, b2 = params
        out = jax.nn.sigmoid(x @ w1.T + b1) @ w2.T + b2
        return jnp.mean((out - y) ** 2)

    @jax.jit
    def update(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return [p - peers.LR * g for p, g in zip(params, grads)], loss

    def step() -> float:
        nonlocal params
        params, loss = update(params, x, target)
        return float(loss)
    return step


def kernel_calls(batch: int, hidden: int, dtype=np.float32) -> Callable[[], float]:
    """The step's forward and backward kernel calls alone, into preallocated arrays: the
    floor a replayed plan approaches (no loss or update: those are element-wise)."""
    k = cg.kernels
    x, target, model = peers._problem(batch, hidden, np.dtype(dtype))
    w1, b1, w2, b2 = (p.data for p in model.parameters())
    z, out = np.empty((batch, hidden), dtype), np.empty((batch, 10), dtype)
    grad_h, grad_z = np.empty_like(z), np.empty_like(z)
    grads = [np.empty_like(p) for p in (w1, b1, w2, b2)]
    grad_out = np.full((batch, 10), 0.01, dtype)

    def step() -> float:
        k.linear_forward(x, w1, b1, out=z)
        k.sigmoid_forward(z, out=z)
        k.linear_forward(z, w2, b2, out=out)
        k.linear_backward(grad_out, z, w2, grad_x=grad_h, grad_w=grads[2], grad_b=grads[3])
        k.sigmoid_backward(grad_h, z, out=grad_z)
        k.linear_backward(grad_z, x, w1, grad_w=grads[0], grad_b=grads[1],
                          need_grad_x=False)
        return float(out[0, 0])
    return step


def _step(impl: str, batch: int, hidden: int) -> Optional[Callable[[], float]]:
    if impl == "compiled":
        return compiled_step(batch, hidden)
    if impl == "jax":
        return jax_step(batch, hidden)
    if impl == "kernels":
        return kernel_calls(batch, hidden)
    return peers.training_steps(batch, hidden, np.float32).get(impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch, hidden", SIZES, ids=lambda v: str(v))
def test_compiled_step(benchmark, timed, batch, hidden, impl):
    benchmark.group = f"compiled MLP step 784-{hidden}-10 batch {batch} float32"
    step = _step(impl, batch, hidden)
    if step is None:
        pytest.skip(f"{impl} not installed")
    values = [step() for _ in range(3)]
    assert all(np.isfinite(values))
    if impl != "kernels":
        assert values[-1] < values[0]  # it really trains
    timed(step, slow=batch >= 1024)


def test_compiled_equals_eager():
    """What the table compares is the same computation: 20 steps, same losses."""
    compiled, eager = compiled_step(16, 128), peers.cygrad_step(16, 128)
    for _ in range(20):
        np.testing.assert_allclose(compiled(), eager(), rtol=1e-5)


def memory_growth(steps: int, batch: int = 16, hidden: int = 128) -> dict:
    """tracemalloc's and the RSS's growth (bytes) over the second half of `steps`: the
    first half lets Python's and NumPy's caches of small objects fill."""
    step = compiled_step(batch, hidden)
    tracemalloc.start()
    try:
        for _ in range(steps // 2):
            step()
        traced, rss = tracemalloc.get_traced_memory()[0], _rss()
        for _ in range(steps - steps // 2):
            step()
        return {"tracemalloc": tracemalloc.get_traced_memory()[0] - traced,
                "rss": _rss() - rss}
    finally:
        tracemalloc.stop()


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, Linux: KiB


def test_memory_flat():
    growth = memory_growth(10_000, batch=1, hidden=16)
    assert growth["tracemalloc"] < 16 * 1024, growth


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args()
    print(memory_growth(args.steps, args.batch, args.hidden))
