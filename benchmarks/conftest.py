"""Fixtures the benchmark suites share: dtype, thread counts, input data, timing, checks.

Each benchmark group is one side-by-side comparison (cygrad against NumPy, PyTorch when
installed, and cygrad's compiled module called bare), so a group's table is read across.
Benchmarks never assert timings, only that what was timed computed the right thing.
"""
from __future__ import annotations

import functools
import os
import time
from typing import Callable, List, Optional, Tuple

import numpy as np
import pytest

import cygrad

# Calls that take milliseconds are timed a fixed, small number of rounds (pytest-benchmark
# would otherwise spend a second or more on each), so the whole suite stays in minutes.
FEW_ROUNDS = 7
# Rounds of a fast call whose outputs are reset before every round (accumulate=True).
RESET_ROUNDS = 200
# Before timing, each benchmark calls its function for this long, untimed. Besides warming
# caches, this lets the threads of a pool used by the previous benchmark go idle: PyTorch's
# threads are not NumPy's OpenBLAS (nor is SciPy's, where cygrad falls back to it), and a
# pool's threads keep spinning for a while after a call, taking the cores the other pool
# needs: a call right after a switch of pools can take many times its settled time.
SETTLE_S = 0.25

# Tolerance of a result against a float64 recomputation: a float32 sum over a few
# thousand terms loses more digits than one element-wise product does.
TOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}


def thread_counts() -> List[int]:
    """1, 2, 4, ... up to the number of cores, then the number of cores itself."""
    cores = os.cpu_count() or 1
    counts = [1, 2]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return counts + ([cores] if cores > counts[-1] else [])


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request) -> np.dtype:
    return np.dtype(request.param)


@pytest.fixture(autouse=True)
def _restore_threads():
    """A benchmark that sets cygrad's thread count must not leak it into the next one."""
    before = cygrad.get_num_threads()
    yield
    cygrad.set_num_threads(before)


@pytest.fixture(params=thread_counts(), ids=lambda n: f"threads={n}")
def threads(request) -> int:
    """cygrad's compiled loops set to run on this many threads (restored afterwards)."""
    cygrad.set_num_threads(request.param)
    return request.param


@functools.lru_cache(maxsize=4)
def _arrays(shapes: Tuple[Tuple[int, ...], ...], dtype: np.dtype) -> Tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    return tuple(rng.random(shape, dtype=dtype) for shape in shapes)


@pytest.fixture
def data() -> Callable[..., Tuple[np.ndarray, ...]]:
    """`data(dtype, *shapes)`: uniform [0, 1) arrays, made once and shared by every
    implementation of a group (the large ones take longer to make than to time).
    Nothing benchmarked writes into its inputs."""
    return lambda dtype, *shapes: _arrays(tuple(shapes), np.dtype(dtype))


@pytest.fixture
def timed(benchmark) -> Callable[..., None]:
    """`timed(fn, slow=False, reset=None) -> fn()'s result`: after SETTLE_S of untimed
    calls, time `fn()`, calibrated by pytest-benchmark, or a few single calls when `slow`.
    `reset` runs untimed before every call, so an accumulating call always starts from the
    same gradients and its last result can be checked exactly."""
    def run(fn: Callable[[], object], slow: bool = False,
            reset: Optional[Callable[[], None]] = None) -> object:
        if not benchmark.disabled:
            _settle(fn, reset)
        if not slow and reset is None:
            return benchmark(fn)
        rounds = FEW_ROUNDS if slow else RESET_ROUNDS
        return benchmark.pedantic(fn, setup=reset, rounds=rounds, iterations=1)
    return run


def _settle(fn: Callable[[], object], reset: Optional[Callable[[], None]]) -> None:
    deadline = time.perf_counter() + SETTLE_S
    while True:
        if reset is not None:
            reset()
        fn()
        if time.perf_counter() >= deadline:
            return


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    """`got` (float32 or float64) against `want`, computed in float64."""
    tol = TOL[got.dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.fixture
def check() -> Callable[[np.ndarray, np.ndarray], None]:
    return assert_close
