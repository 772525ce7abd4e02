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
from cygrad.cli import peers

SIZES = [(1, 64), (16, 128), (64, 256), (1024, 1024)]  # (batch, hidden)
IMPLS = ["compiled", "cygrad", "numpy", "torch", "jax", "kernels"]


def _step(impl: str, batch: int, hidden: int) -> Optional[Callable[[], float]]:
    if impl == "kernels":
        return peers.kernel_calls(batch, hidden)
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
    compiled, eager = peers.compiled_step(16, 128), peers.cygrad_step(16, 128)
    for _ in range(20):
        np.testing.assert_allclose(compiled(), eager(), rtol=1e-5)


def memory_growth(steps: int, batch: int = 16, hidden: int = 128) -> dict:
    """tracemalloc's and the RSS's growth (bytes) over the second half of `steps`: the
    first half lets Python's and NumPy's caches of small objects fill."""
    step = peers.compiled_step(batch, hidden)
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
