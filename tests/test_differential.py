"""cygrad against PyTorch on random computation graphs (tests/_graphs.py draws them):
forward values, the dtype and requires_grad of every value, every leaf's gradient, and the
leaves after two optimizer steps, on both backends, float32 and float64 mixed.

The examples are fixed (derandomized), so CI runs the same graphs every time. A longer
exploration:

    CYGRAD_DIFFERENTIAL_EXAMPLES=20000 python -m pytest tests/test_differential.py -q

and with other graphs than CI's (any integer seed; the same seed gives the same graphs):

    CYGRAD_DIFFERENTIAL_SEED=7 CYGRAD_DIFFERENTIAL_EXAMPLES=5000 python -m pytest \\
        tests/test_differential.py -q

A failure prints a standalone program that rebuilds the graph in cygrad and in PyTorch and
prints both sides' values.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings

import cygrad as cg

from _graph_ops import graphs
from _graphs import DTYPES, HEADER, Graph

torch = pytest.importorskip("torch", reason="PyTorch not installed")
# Values outside an op's domain (log of a negative, 0/0) are drawn on purpose: NumPy's
# warnings about them are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

EXAMPLES = int(os.environ.get("CYGRAD_DIFFERENTIAL_EXAMPLES", "500"))
SEED = os.environ.get("CYGRAD_DIFFERENTIAL_SEED")
# too_slow: each example draws a whole graph (dozens of choices, PyTorch run at every
# step), slower than hypothesis expects of one example. function_scoped_fixture: `backend`
# only selects the backend, the same for every example; nothing else carries over.
DIFFERENTIAL = settings(max_examples=EXAMPLES, deadline=None, database=None,
                        derandomize=SEED is None,
                        suppress_health_check=[HealthCheck.too_slow,
                                               HealthCheck.function_scoped_fixture])

# The one place for tolerances. The leaves are small exact numbers, so most results are
# exact in both libraries; the rest differ by the rounding of exp, log, tanh, ... and by the
# order in which sums add, a few units in the last place of the largest term, carried
# through up to a dozen ops. So: a relative part, and an absolute part scaled by the
# largest finite magnitude in the compared array, and for a leaf's gradient by the largest
# gradient on its way (a sum's error follows its largest term, not its result, which may
# cancel to 0). The dtype is the least precise one the value was computed from.
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


def differences(name: str, ours: Optional[np.ndarray], theirs: Optional[np.ndarray],
                dtype: str, precision: str, scale: float = 1.0) -> List[str]:
    """What differs between two arrays of `dtype`: None-ness, shape, NaN positions
    (exactly: NaN where PyTorch has NaN), infinities (by sign), finite values (within
    TOL[precision], the least precise dtype they were computed from, with the absolute
    part scaled by the largest of `scale` and the magnitudes in `theirs`)."""
    if ours is None or theirs is None:
        if ours is None and theirs is None:
            return []
        return [f"{name}: cygrad {'None' if ours is None else 'an array'}, "
                f"PyTorch {'None' if theirs is None else 'an array'}"]
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.shape != theirs.shape:
        return [f"{name}: shape {ours.shape}, PyTorch {theirs.shape}"]
    if dtype not in DTYPES:  # integers, booleans: exactly
        return [] if np.array_equal(ours, theirs) else [
            f"{name}: {ours.tolist()}, PyTorch {theirs.tolist()}"]
    ours64, theirs64 = ours.astype(np.float64), theirs.astype(np.float64)
    if not np.array_equal(np.isnan(ours64), np.isnan(theirs64)):
        return [f"{name}: NaN at {np.argwhere(np.isnan(ours64)).tolist()}, PyTorch at "
                f"{np.argwhere(np.isnan(theirs64)).tolist()}"]
    if not np.array_equal(np.where(np.isinf(ours64), ours64, 0),
                          np.where(np.isinf(theirs64), theirs64, 0)):
        return [f"{name}: infinities differ: {ours.tolist()}, PyTorch {theirs.tolist()}"]
    finite = np.isfinite(theirs64)
    scale = max(scale, _magnitude(theirs64))
    tol = TOL[precision]
    error = np.abs(ours64 - theirs64)[finite]
    bound = tol["atol"] * scale + tol["rtol"] * np.abs(theirs64[finite])
    if np.all(error <= bound):
        return []
    return [f"{name}: {ours.tolist()}, PyTorch {theirs.tolist()} (largest difference "
            f"{error.max():.3g}, allowed {bound[error.argmax()]:.3g})"]


def _magnitude(array: np.ndarray) -> float:
    """The largest finite |element| (0 for none)."""
    finite = np.abs(array[np.isfinite(array)])
    return float(finite.max()) if finite.size else 0.0


def run(lines: List[str], namespace: Dict[str, object]) -> Optional[str]:
    """Run the lines one by one; the first one that raises, with its error, or None."""
    for line in lines:
        try:
            exec(line, namespace)  # noqa: S102 (the graph's own generated lines)
        except Exception as exc:  # noqa: BLE001 (any error is a difference to report)
            return f"cygrad raised on `{line}`: {type(exc).__name__}: {exc}"
    return None


def _grad_scale(graph: Graph, theirs: Dict[str, object], leaf: int) -> float:
    """The largest gradient (PyTorch's) of any value computed from `leaf`: a leaf's
    gradient is a sum of products along paths, and its rounding error follows the largest
    of them, not the result (which may cancel: log(log_softmax(x)) near probability 1)."""
    scale = 1.0
    for i, value in enumerate(graph.values):
        grad = getattr(theirs[f"t{i}"], "grad", None)
        if leaf in value.leaves and grad is not None:
            scale = max(scale, _magnitude(grad.numpy()))
    return scale


def compare(graph: Graph, backend: str) -> List[str]:
    """Every difference between cygrad (on `backend`) and PyTorch on `graph`."""
    ours: Dict[str, object] = {}
    exec(HEADER, ours)  # noqa: S102
    steps = graph.steps
    theirs = graph.torch_env  # the forward ran while the graph was drawn
    for i, value in enumerate(graph.values):
        if value.requires_grad and not value.is_leaf:
            theirs[f"t{i}"].retain_grad()  # for the scale of the leaves' gradients
    exec("\n".join(graph.backward_lines("t", "torch.tensor")), theirs)  # noqa: S102
    error = run([f"a{i} = {s.ours}" for i, s in enumerate(steps)]
                + graph.backward_lines("a", ""), ours)
    if error:
        return [error]
    found: List[str] = []
    for i, value in enumerate(graph.values):
        a, t = ours[f"a{i}"], theirs[f"t{i}"]
        if isinstance(a, cg.Tensor):
            data, requires_grad = a.data, a.requires_grad
        else:  # argmax/argmin give a NumPy array of indices (their docstrings)
            data, requires_grad = np.asarray(a), False
        if str(data.dtype) != value.dtype:
            found.append(f"a{i} = {steps[i].ours}: dtype {data.dtype}, PyTorch "
                         f"{value.dtype}")
        if requires_grad != value.requires_grad:
            found.append(f"a{i} = {steps[i].ours}: requires_grad {requires_grad}, PyTorch "
                         f"{value.requires_grad}")
        found += differences(f"a{i} = {steps[i].ours}", data, t.detach().numpy(),
                             value.dtype, value.precision)
        if value.is_leaf and value.requires_grad:
            found += differences(f"a{i}.grad", a.grad,
                                 None if t.grad is None else t.grad.numpy(), value.dtype,
                                 graph.grad_precision(i), _grad_scale(graph, theirs, i))
    if graph.optimizer and not found:
        ours_line, theirs_line = graph.optimizer
        # Both updates start from PyTorch's gradients, compared above: Adam divides a
        # gradient far below its eps by eps, which would compare the gradients' last-place
        # differences again, magnified 10^8 times, instead of the update.
        exec("\n".join(graph.same_grads_lines()), {**ours, **theirs})  # noqa: S102
        exec(theirs_line.replace("{p}", graph.params("t")), theirs)  # noqa: S102
        error = run([ours_line.replace("{p}", graph.params("a"))], ours)
        if error:
            return [error]
        for i in graph.param_indices():
            found += differences(f"a{i} after two optimizer steps", ours[f"a{i}"].data,
                                 theirs[f"t{i}"].detach().numpy(), graph.values[i].dtype,
                                 graph.grad_precision(i))
    return found


@DIFFERENTIAL
@given(graph=graphs())
def test_graphs_match_torch(backend, graph):
    found = compare(graph, backend)
    assert not found, ("cygrad and PyTorch differ:\n  " + "\n  ".join(found)
                       + "\n\nReproducer:\n\n" + graph.program(backend))


if SEED is not None:  # another fixed set of graphs, for a longer exploration
    test_graphs_match_torch = seed(int(SEED))(test_graphs_match_torch)
