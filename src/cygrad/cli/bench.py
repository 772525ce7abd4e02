"""`python -m cygrad bench`: time cygrad's kernels against NumPy (and PyTorch, if installed).

A compact table without pytest; the full suites with every variant are in benchmarks/.
Each case builds its inputs once and times every implementation on them: cygrad's public
kernels (argument checks included) against each peer at its best, writing into
preallocated outputs with no temporaries where the peer allows. A time is the best of
several loops of calls (`time.perf_counter`; see `best_times`). The ratio is
peer time / cygrad time: above 1, cygrad is faster.

Every implementation timed here is written once, in cygrad.cli.peers, which the suites
in benchmarks/ time too.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..backends import get_backend
from ..runtime import get_num_threads
from . import output_file, peers

Impls = peers.Impls
Setup = Callable[[np.dtype, Optional[ModuleType]], Impls]  # (dtype, torch or None) -> Impls
PEERS = ("numpy", "torch", "autograd", "jax", "compiled")


@dataclass(frozen=True)
class Case:
    """One row of the table. `setup(dtype, torch)` makes the inputs and returns the calls
    (torch is None when PyTorch is not installed): "cygrad" and any of PEERS are timed."""
    name: str
    size: str
    setup: Setup
    quick: bool = True  # part of `--quick`


def _random(dtype: np.dtype, *shapes: Sequence[int]) -> List[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random(shape, dtype=dtype) for shape in shapes]


def _sigmoid_backward(n: int) -> Setup:
    def setup(dtype: np.dtype, torch: Optional[ModuleType]) -> Impls:
        g, y = _random(dtype, (n,), (n,))
        return peers.sigmoid_backward_impls(g, y, np.empty_like(g), torch)
    return setup


def _bias_backward(rows: int, cols: int) -> Setup:
    def setup(dtype: np.dtype, torch: Optional[ModuleType]) -> Impls:
        (g,) = _random(dtype, (rows, cols))
        return peers.bias_backward_impls(g, np.empty(cols, dtype), torch)
    return setup


def _linear_backward(batch: int, in_features: int, out_features: int,
                     accumulate: bool = False) -> Setup:
    def setup(dtype: np.dtype, torch: Optional[ModuleType]) -> Impls:
        x, w, g = _random(dtype, (batch, in_features), (out_features, in_features),
                          (batch, out_features))
        grads = np.zeros_like(x), np.zeros_like(w), np.zeros(out_features, dtype)
        return peers.linear_backward_impls(g, x, w, *grads, accumulate=accumulate,
                                           torch=torch)
    return setup


def _matmul_backward(m: int, k: int, n: int) -> Setup:
    def setup(dtype: np.dtype, torch: Optional[ModuleType]) -> Impls:
        a, b, g = _random(dtype, (m, k), (k, n), (m, n))
        return peers.matmul_backward_impls(g, a, b, np.empty_like(a), np.empty_like(b),
                                           torch=torch)
    return setup


def _training_step(batch: int, hidden: int) -> Setup:
    return lambda dtype, torch: peers.training_steps(batch, hidden, dtype)


CASES: List[Case] = [
    Case("sigmoid_backward", "1K", _sigmoid_backward(2**10)),
    Case("sigmoid_backward", "64K", _sigmoid_backward(2**16)),
    Case("sigmoid_backward", "1M", _sigmoid_backward(2**20)),
    Case("sigmoid_backward", "16M", _sigmoid_backward(2**24), quick=False),
    Case("bias_backward", "64x256", _bias_backward(64, 256)),
    Case("bias_backward", "1024x1024", _bias_backward(1024, 1024)),
    Case("bias_backward", "4096x4096", _bias_backward(4096, 4096), quick=False),
    Case("linear_backward", "64x784x256", _linear_backward(64, 784, 256)),
    Case("linear_backward +=", "64x784x256", _linear_backward(64, 784, 256, accumulate=True)),
    Case("linear_backward", "1024x1024x1024", _linear_backward(1024, 1024, 1024), quick=False),
    Case("matmul_backward", "64x784x256", _matmul_backward(64, 784, 256)),
    Case("matmul_backward", "1024x1024x1024", _matmul_backward(1024, 1024, 1024), quick=False),
    Case("MLP step 784-H-10", "batch 1, H 64", _training_step(1, 64)),
    Case("MLP step 784-H-10", "batch 16, H 128", _training_step(16, 128)),
    Case("MLP step 784-H-10", "batch 64, H 256", _training_step(64, 256)),
    Case("MLP step 784-H-10", "batch 1024, H 1024", _training_step(1024, 1024), quick=False),
    Case("recorded mul+sum", "1 element", lambda dtype, torch: peers.recorded_op()),
    Case(f"chain of {peers.CHAIN_LENGTH} mul", "1 element",
         lambda dtype, torch: peers.recorded_chain()),
]


def best_times(impls: Impls, repeats: int, min_loop_s: float, settle_s: float
               ) -> Dict[str, float]:
    """Seconds per call of each implementation: the minimum over loops of as many calls as
    fill `min_loop_s`. Each implementation in turn is first called untimed for `settle_s`
    (a warm-up, and time for the threads of another thread pool, still spinning after the
    last implementation's work, to go idle: PyTorch's threads are not NumPy's OpenBLAS,
    nor is SciPy's OpenBLAS where cygrad falls back to it), then timed over `repeats`
    loops. Two passes, the second
    in reverse order, so that a burst of load on a noisy machine rarely hits only one."""
    best = dict.fromkeys(impls, math.inf)
    for order in (list(impls), list(impls)[::-1]):
        for name in order:
            fn, calls, start = impls[name], 0, time.perf_counter()
            while calls == 0 or time.perf_counter() - start < settle_s:
                fn()
                calls += 1
            loop = range(max(1, math.ceil(min_loop_s * calls / (time.perf_counter() - start))))
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in loop:
                    fn()
                best[name] = min(best[name], (time.perf_counter() - start) / len(loop))
    return best


def _format_time(seconds: float) -> str:
    unit, scale = next((u, s) for u, s in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 0))
                       if seconds >= s)
    value = seconds / (scale or 1e-9)
    return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f} {unit}"


def _row(cells: Sequence[str]) -> str:
    # Fixed widths, so that a row is printed as soon as its case is timed.
    case, size, *numbers = cells
    return "  ".join([case.ljust(20), size.ljust(14)] + [n.rjust(9) for n in numbers]).rstrip()


def plot_ratios(results: List[Tuple[Case, Dict[str, float]]], peers: Sequence[str],
                path: str, title: str) -> None:
    """A bar per case and peer from 1 to peer time / cygrad time, on a log scale: to the
    right where cygrad is faster, to the left where it is slower."""
    from matplotlib.figure import Figure  # no pyplot: nothing global, no display needed

    # a case without a version for some peer gets no bar (NaN) for it
    ratios = {p: [times.get(p, math.nan) / times["cygrad"] for _, times in results]
              for p in peers}
    known = [r for rs in ratios.values() for r in rs if not math.isnan(r)]
    reach = max(max(known), 1 / min(known)) * 3  # room for labels
    fig = Figure(figsize=(9, 1.5 + 0.45 * len(results) * len(peers)))
    ax = fig.subplots()
    height = 0.8 / len(peers)
    for i, peer in enumerate(peers):
        rows = [r + i * height for r in range(len(results))]
        ax.barh(rows, [r - 1 for r in ratios[peer]], height, left=1,
                label=f"{peer} time / cygrad time")
        for row, r in zip(rows, ratios[peer]):
            if not math.isnan(r):
                ax.text(r, row, f" {r:.2f}x ", va="center",
                        ha="left" if r >= 1 else "right")
    ax.set_yticks([r + (len(peers) - 1) * height / 2 for r in range(len(results))],
                  [f"{case.name} {case.size}" for case, _ in results])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(1 / reach, reach)
    top = int(math.log2(reach))
    step = max(1, math.ceil((2 * top + 1) / 9))  # at most ~9 tick labels
    ticks = [2.0 ** k for k in range(-top, top + 1) if k % step == 0]
    ax.set_xticks(ticks, [f"{t:g}x" if t >= 1 else f"1/{1 / t:g}x" for t in ticks])
    ax.minorticks_off()
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_xlabel("peer time / cygrad time (right of 1: cygrad faster)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`bench [--quick] [--plot FILE.png] [--dtype float32|float64]`."""
    parser.add_argument("--quick", action="store_true",
                        help="small and medium sizes, fewer repeats (seconds, not minutes)")
    parser.add_argument("--plot", metavar="FILE.png", type=output_file,
                        help="also draw the ratios as a bar chart (needs matplotlib)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="dtype of every array (default: float32)")


def run(args: argparse.Namespace) -> int:
    """Time every case (or the quick ones), print the table, draw it if asked."""
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print("bench --plot needs matplotlib: pip install matplotlib", file=sys.stderr)
        return 1
    try:
        import torch
    except ImportError:
        torch = None
    # "compiled" is cygrad's own compiled step (MLP rows only): below 1x it beats eager.
    installed = [p for p in PEERS
                 if p in ("compiled", "numpy") or importlib.util.find_spec(p) is not None]
    repeats, min_loop_s, settle_s = (5, 0.01, 0.2) if args.quick else (10, 0.05, 0.3)
    dtype = np.dtype(args.dtype)
    title = (f"cygrad vs {', '.join(installed)}: {dtype}, cygrad backend {get_backend()!r}, "
             f"{get_num_threads()} thread(s)")
    print(f"{title}; best of 2 x {repeats} loops; ratio = peer time / cygrad time "
          "(> 1: cygrad faster)")
    for missing in sorted(set(PEERS) - set(installed)):
        print(f"({missing} not installed: pip install {missing} to compare with it)")
    print(_row(["case", "size", "cygrad"] + [h for p in installed for h in (p, f"{p}/cygrad")]))
    results = []
    for case in CASES:
        if args.quick and not case.quick:
            continue
        impls = case.setup(dtype, torch)
        shown = {name: impls[name] for name in ["cygrad", *installed] if name in impls}
        times = best_times(shown, repeats, min_loop_s, settle_s)
        cells = [case.name, case.size, _format_time(times["cygrad"])]
        for peer in installed:  # a peer a case has no version for gets a dash
            cells += ([_format_time(times[peer]), f"{times[peer] / times['cygrad']:.2f}x"]
                      if peer in times else ["-", "-"])
        print(_row(cells), flush=True)
        results.append((case, times))
    if args.plot:
        plot_ratios(results, installed, args.plot, title)
        print(f"plot written to {args.plot}")
    return 0
