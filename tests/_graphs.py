"""Random computation graphs written as two small programs, one for cygrad and one for
PyTorch, that the differential test (test_differential.py) runs and compares.

A graph is a list of `Step`s: each defines one value, `a<i>` in cygrad and `t<i>` in
PyTorch, as one line of Python in each library. The test runs exactly these lines, so a
failure prints a standalone reproducer: the same lines with their imports.

The generator draws every step with hypothesis. It runs each PyTorch line as soon as it is
drawn: PyTorch is the oracle, so the shape, dtype and requires_grad of every value come
from it, and the next op only picks inputs that PyTorch accepts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from hypothesis import strategies as st

# Leaf values: exact small numbers put the ops on their kinks on purpose (0 for relu, abs,
# sqrt, log and pow; equal numbers for max ties; negatives outside log's and sqrt's
# domain), and every sum of them is exact, so both libraries see the same kinks.
# 30 makes exp overflow in float32 and softmax saturate (cross_entropy at probability 1).
PALETTE = (0.0, 0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 0.25, -0.125, 30.0, -30.0)
# Operands that are not tensors: Python and NumPy numbers (PyTorch takes a NumPy scalar as a
# number: it does not promote), on either side of an operator.
NUMBERS = (0, 1, 2, 3, -1, 0.0, 0.5, -0.5, 1.0, 2.0, -2.0, 3.0)
NUMBER_TYPES = ("", "np.float32", "np.float64", "np.int64")
DTYPES = ("float32", "float64")
MAX_LEAVES = 3

HEADER = """\
import numpy as np, torch, cygrad as cg
from math import inf, nan
from cygrad import functional as F
TF = torch.nn.functional
"""


def literal(array: np.ndarray) -> str:
    """Python source that rebuilds `array` exactly (repr of a float round-trips)."""
    if array.size == 0:  # tolist() forgets an empty array's shape
        return f"np.zeros({array.shape!r}, dtype=np.{array.dtype})"
    return f"np.array({array.tolist()!r}, dtype=np.{array.dtype})"  # nan, inf: imported


@dataclass
class Value:
    shape: Tuple[int, ...]
    dtype: str                  # "float32", "float64", or PyTorch's name for another
    requires_grad: bool
    is_leaf: bool
    # float32 where any value this one was computed from is float32: a float64 result of
    # float32 inputs carries their rounding (the tolerance follows the least precise)
    precision: str = "float64"
    leaves: Tuple[int, ...] = ()  # the leaves it was computed from


@dataclass
class Step:
    ours: str                   # cygrad expression (a<i> are earlier values)
    theirs: str                 # PyTorch expression (t<i> are earlier values)
    ops: Tuple[str, ...] = ()   # names of the ops it exercises, for the failure message


@dataclass
class Graph:
    steps: List[Step] = field(default_factory=list)
    values: List[Value] = field(default_factory=list)
    used: List[bool] = field(default_factory=list)
    # (value index, upstream gradient) for every sink that has a gradient
    seeds: List[Tuple[int, np.ndarray]] = field(default_factory=list)
    optimizer: Optional[Tuple[str, str]] = None   # (cygrad line, PyTorch line)
    # The PyTorch values the generator computed (t<i>): the forward need not run twice.
    torch_env: Dict[str, object] = field(default_factory=dict)

    def __repr__(self) -> str:  # hypothesis prints this; the reproducer says the rest
        ops = ", ".join(op for s in self.steps for op in s.ops)
        return f"<graph of {len(self.steps)} steps: {ops}>"

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(repr(self))

    def program(self, backend: str, compare: bool = True) -> str:
        """The standalone reproducer: both programs and a printout of what differs."""
        lines = [HEADER, f'cg.set_backend("{backend}")']
        lines += [f"a{i} = {s.ours}" for i, s in enumerate(self.steps)]
        lines += self.backward_lines("a", "")
        lines += [f"t{i} = {s.theirs}" for i, s in enumerate(self.steps)]
        lines += self.backward_lines("t", "torch.tensor")
        if compare:
            lines.append("def show(name, ours, theirs):\n"
                         "    print(name, ours if ours is None else ours.tolist(), "
                         "'torch:', theirs if theirs is None else theirs.tolist())")
            for i, v in enumerate(self.values):
                lines.append(f"show('a{i}', a{i}.data, t{i}.detach().numpy())")
                if v.is_leaf and v.requires_grad:
                    lines.append(f"show('a{i}.grad', a{i}.grad, "
                                 f"None if t{i}.grad is None else t{i}.grad.numpy())")
        if self.optimizer:
            ours, theirs = self.optimizer
            lines += ["# one optimizer, two steps, both from PyTorch's gradients"]
            lines += self.same_grads_lines()
            lines += [ours.replace("{p}", self.params("a")),
                      theirs.replace("{p}", self.params("t"))]
            lines += [f"show('a{i} after step', a{i}.data, t{i}.detach().numpy())"
                      for i in self.param_indices()]
        return "\n".join(lines)

    def backward_lines(self, prefix: str, wrap: str) -> List[str]:
        return [f"{prefix}{i}.backward({f'{wrap}({literal(g)})' if wrap else literal(g)}, "
                f"retain_graph=True)" for i, g in self.seeds]

    def grad_precision(self, leaf: int) -> str:
        """float32 where the gradient of `leaf` passes through any float32 value."""
        return "float32" if any(v.precision == "float32" for v in self.values
                                if leaf in v.leaves) else "float64"

    def same_grads_lines(self) -> List[str]:
        """Lines giving each parameter of ours PyTorch's gradient, where both have one."""
        return [f"if a{i}.grad is not None and t{i}.grad is not None: "
                f"a{i}.grad = t{i}.grad.numpy().astype(a{i}.grad.dtype)"
                for i in self.param_indices()]

    def param_indices(self) -> List[int]:
        return [i for i, v in enumerate(self.values) if v.is_leaf and v.requires_grad]

    def params(self, prefix: str) -> str:
        return "[" + ", ".join(f"{prefix}{i}" for i in self.param_indices()) + "]"


# ---------------------------------------------------------------------------- drawing

class Drawer:
    """Draws one graph step by step; `names` gives each value's variable in both programs."""

    def __init__(self, draw: Callable):
        self.draw = draw
        self.graph = Graph()
        self.torch_env: Dict[str, object] = _torch_namespace()

    # -- values ---------------------------------------------------------------------------
    def add(self, ours: str, theirs: str, ops: Sequence[str] = (),
            inputs: Sequence[int] = ()) -> int:
        """Append a step, run its PyTorch line, and record the value it makes; its index,
        or -1 where PyTorch refuses the step (then it is left out)."""
        i = len(self.graph.steps)
        try:
            t = eval(theirs, self.torch_env)  # noqa: S307 (our own generated line)
        except (RuntimeError, IndexError, ValueError):  # e.g. a maximum of nothing: PyTorch
            return -1                                      # refuses, nothing to compare
        self.torch_env[f"t{i}"] = t
        self.graph.steps.append(Step(ours, theirs, tuple(ops)))
        dtype = str(t.dtype).replace("torch.", "")
        sources = [self.graph.values[j] for j in inputs]
        precision = "float32" if dtype == "float32" or any(
            v.precision == "float32" for v in sources) else "float64"
        leaves = tuple(sorted({leaf for v in sources for leaf in v.leaves}))
        self.graph.values.append(Value(tuple(t.shape), dtype, bool(t.requires_grad),
                                       not ops, precision, leaves if ops else (i,)))
        self.graph.used.append(False)
        for j in inputs:
            self.graph.used[j] = True
        return i

    def leaf(self, shape: Tuple[int, ...], dtype: Optional[str] = None,
             requires_grad: Optional[bool] = None) -> int:
        draw = self.draw
        dtype = dtype or draw(st.sampled_from(DTYPES))
        if requires_grad is None:
            requires_grad = draw(st.sampled_from([True, True, True, False]))
        data = self.array(shape, dtype)
        flag = ", requires_grad=True" if requires_grad else ""
        return self.add(f"cg.Tensor({literal(data)}{flag})",
                        f"torch.tensor({literal(data)}{flag})")

    def array(self, shape: Tuple[int, ...], dtype: str,
              choices: Optional[Sequence[float]] = None) -> np.ndarray:
        """Elements of `choices`, or else mostly PALETTE's numbers and some uniform in
        [-4, 4]. One draw seeds them all: element by element, hypothesis would spend most
        of the run drawing numbers."""
        rng = np.random.default_rng(self.draw(st.integers(0, 2**32 - 1)))
        n = math.prod(shape)
        if choices is not None:
            data = rng.choice(choices, n)
        else:
            data = np.where(rng.random(n) < 0.75, rng.choice(PALETTE, n),
                            rng.uniform(-4, 4, n))
        return data.astype(dtype).reshape(shape)

    def signed_zero(self, operand: Optional[str]) -> bool:
        """Whether `operand` (PyTorch source) is a computed value holding -0.0. The sign
        a computed zero takes depends on the formula (PyTorch's losses give -0.0 where
        cygrad's give +0.0, both right), and a division by it (or a negative power) turns
        that into infinities of opposite signs: such divisors are left out."""
        if operand is None or not operand[0] == "t" or not operand[1:].isdigit():
            return False
        i = int(operand[1:])
        if self.graph.values[i].is_leaf:
            return False
        value = self.torch_env[operand].detach().numpy()
        return bool(np.any((value == 0) & np.signbit(value)))

    def n_leaves(self) -> int:
        return sum(v.is_leaf for v in self.graph.values)

    def tensor_operand(self, shape: Tuple[int, ...], dtype: Optional[str] = None,
                       array_ok: bool = True) -> Tuple[str, str, List[int]]:
        """(cygrad source, PyTorch source, inputs) of a tensor of `shape`: a new leaf while
        there are fewer than MAX_LEAVES, else a constant without gradient: a NumPy array
        where cygrad takes one (`array_ok`: operators), else a Tensor (as PyTorch wants)."""
        dtype = dtype or self.draw(st.sampled_from(DTYPES))
        if self.n_leaves() < MAX_LEAVES and self.draw(st.booleans()):
            j = self.leaf(shape, dtype)
            return f"a{j}", f"t{j}", [j]
        data = literal(self.array(shape, dtype))
        return data if array_ok else f"cg.Tensor({data})", f"torch.tensor({data})", []

    def pick(self, accept: Callable[[Value], bool] = lambda v: True,
             probabilities: bool = False) -> Optional[int]:
        """An earlier float value that `accept`s (and holds numbers in [0, 1] only, with
        `probabilities`), most often the latest one (long chains), sometimes an earlier
        one (forks)."""
        choices = [i for i, v in enumerate(self.graph.values)
                   if v.dtype in DTYPES and accept(v) and (not probabilities or (
                       lambda x: bool(((x >= 0) & (x <= 1)).all()))(self.torch_env[f"t{i}"]))]
        if not choices:
            return None
        if self.draw(st.booleans()):
            return choices[-1]
        return self.draw(st.sampled_from(choices))

    def number(self) -> str:
        value = self.draw(st.sampled_from(NUMBERS))
        kind = self.draw(st.sampled_from(NUMBER_TYPES))
        if kind == "np.int64" or (kind and isinstance(value, int)):
            value = int(value) if kind == "np.int64" else float(value)
        return f"{kind}({value!r})" if kind else repr(value)


def _torch_namespace() -> Dict[str, object]:
    namespace: Dict[str, object] = {}
    exec(HEADER, namespace)  # noqa: S102 (fixed text)
    return namespace


def broadcast_partner(draw: Callable, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """A shape that broadcasts with `shape`: itself, a suffix, some axes set to 1, 0-d, or
    one more leading axis."""
    kind = draw(st.sampled_from(["same", "ones", "suffix", "scalar", "lead"]))
    if kind == "same":
        return shape
    if kind == "ones":
        return tuple(1 if draw(st.booleans()) else n for n in shape)
    if kind == "suffix":
        return shape[draw(st.integers(0, len(shape))):]
    if kind == "scalar":
        return ()
    return (draw(st.integers(1, 2)),) + shape if len(shape) < 3 else shape


def broadcastable(a: Tuple[int, ...], b: Tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False
