"""`python -m cygrad soak`: train a small MLP for many steps; check memory does not grow.

    python -m cygrad soak                      # 100,000 steps (a minute or two)
    python -m cygrad soak --steps 2000 --json  # the short version tests/test_soak.py runs

After a warm-up (allocator pools, NumPy's caches and the optimizer state are filled by then)
it records the process's resident memory (VmRSS from /proc/self/status, else the peak from
`resource`) and the bytes tracemalloc sees allocated (Python objects and NumPy array data),
runs the steps, collects garbage, and measures again. A leak of a few bytes per step shows in
tracemalloc after 100,000 steps; RSS also catches memory that tracemalloc cannot see (C
allocations in the compiled kernels, BLAS). Exit status 1 when either grew past its limit.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional

import numpy as np

from .. import backends, nn, optim
from .. import functional as F
from ..tensor import Tensor
from . import non_negative_float, non_negative_int, positive_int

MiB = 1 << 20


def rss_bytes() -> int:
    """The resident set size now (VmRSS); where /proc is missing, the peak so far."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # Unix only; reached only where /proc is missing

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes, Linux: KiB


def make_step(batch: int = 64, in_features: int = 16, hidden: int = 32, classes: int = 4,
              dtype: object = np.float32, seed: int = 0) -> Callable[[], float]:
    """One training step of a two-hidden-layer MLP (linear, sigmoid, linear, ReLU, linear,
    cross-entropy + L2 penalty, Adam): every kernel and the graph layer's bookkeeping."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(in_features, hidden, dtype=dtype, rng=rng), nn.Sigmoid(),
                          nn.Linear(hidden, hidden, dtype=dtype, rng=rng), nn.ReLU(),
                          nn.Linear(hidden, classes, dtype=dtype, rng=rng))
    x = Tensor(rng.standard_normal((batch, in_features)), dtype=dtype)
    labels = rng.integers(0, classes, batch)
    params = model.parameters()
    optimizer = optim.Adam(params, lr=1e-3)

    def step() -> float:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), labels) + F.l2_penalty(params, 1e-4)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


@dataclass
class Report:
    """What `soak` measured: bytes resident and traced (None: tracemalloc off) after the
    warm-up (`_start`) and after the steps (`_end`), and the loss of the first and last
    measured step."""
    steps: int
    seconds: float
    rss_start: int
    rss_end: int
    traced_start: Optional[int]
    traced_end: Optional[int]
    first_loss: float
    last_loss: float

    @property
    def rss_growth(self) -> int:
        return self.rss_end - self.rss_start

    @property
    def traced_growth(self) -> Optional[int]:
        if self.traced_start is None or self.traced_end is None:
            return None
        return self.traced_end - self.traced_start


def soak(step: Callable[[], float], steps: int, warmup: int = 1000,
         trace: bool = True) -> Report:
    """Run `warmup` steps, measure, run `steps` steps, measure again."""
    if trace:
        tracemalloc.start()
    try:
        for _ in range(warmup):
            step()
        gc.collect()
        traced_start = tracemalloc.get_traced_memory()[0] if trace else None
        rss_start = rss_bytes()
        start = time.perf_counter()
        first_loss = last_loss = step()
        for _ in range(steps - 1):
            last_loss = step()
        seconds = time.perf_counter() - start
        gc.collect()
        traced_end = tracemalloc.get_traced_memory()[0] if trace else None
        rss_end = rss_bytes()
    finally:
        if trace:
            tracemalloc.stop()
    return Report(steps, seconds, rss_start, rss_end, traced_start, traced_end, first_loss,
                  last_loss)


def problems(report: Report, max_rss_growth: int, max_traced_growth: int) -> List[str]:
    """What grew past its limit (empty: nothing did)."""
    found = []
    if report.rss_growth > max_rss_growth:
        found.append(f"RSS grew by {report.rss_growth / MiB:.1f} MiB "
                      f"(limit {max_rss_growth / MiB:.1f} MiB)")
    growth = report.traced_growth
    if growth is not None and growth > max_traced_growth:
        found.append(f"tracemalloc grew by {growth / 1024:.1f} KiB "
                      f"(limit {max_traced_growth / 1024:.1f} KiB)")
    if not np.isfinite(report.last_loss):
        found.append(f"the loss is {report.last_loss}")
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=positive_int, default=100_000,
                        help="measured training steps (default: 100,000)")
    parser.add_argument("--warmup", type=non_negative_int, default=1000,
                        help="steps before the first measurement (default: 1000)")
    parser.add_argument("--backend", choices=["cython", "reference"], default=None,
                        help="kernels to train on (default: the active backend)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="parameter and data dtype (default: float32)")
    parser.add_argument("--max-rss-growth-mib", type=non_negative_float, default=8.0,
                        help="exit 1 when RSS grew by more (default: 8 MiB)")
    parser.add_argument("--max-traced-growth-kib", type=non_negative_float, default=256.0,
                        help="exit 1 when tracemalloc's count grew by more (default: 256 KiB)")
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="RSS only (tracemalloc slows every allocation down)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """0: nothing grew past its limit; 1: something did (each named)."""
    try:
        with backends.use_backend(args.backend or backends.get_backend()):
            backend = backends.get_backend()
            report = soak(make_step(dtype=np.dtype(args.dtype)), args.steps, args.warmup,
                          trace=not args.no_tracemalloc)
    except RuntimeError as exc:  # e.g. --backend cython in a checkout that was not built
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nsoak: interrupted", file=sys.stderr)
        return 130
    found = problems(report, int(args.max_rss_growth_mib * MiB),
                     int(args.max_traced_growth_kib * 1024))
    if args.json:
        print(json.dumps(dict(asdict(report), rss_growth=report.rss_growth,
                              traced_growth=report.traced_growth, backend=backend,
                              dtype=args.dtype, problems=found)))
    else:
        traced = ("off" if report.traced_growth is None else
                  f"{report.traced_start / 1024:.1f} KiB -> {report.traced_end / 1024:.1f} KiB"
                  f" (growth {report.traced_growth / 1024:+.1f} KiB)")
        print(f"steps:       {report.steps} after {args.warmup} warm-up steps "
              f"({backend}, {args.dtype}, pid {os.getpid()})")
        print(f"time:        {report.seconds:.1f} s ({report.steps / report.seconds:.0f} steps/s)")
        print(f"RSS:         {report.rss_start / MiB:.1f} MiB -> {report.rss_end / MiB:.1f} MiB "
              f"(growth {report.rss_growth / MiB:+.2f} MiB)")
        print(f"tracemalloc: {traced}")
        print(f"loss:        {report.first_loss:.4f} -> {report.last_loss:.4f}")
        print("result:      " + ("; ".join(found) if found else "no growth beyond the limits"))
    return 1 if found else 0
