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

import cygrad as cg
from cygrad import functional as F

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
            lines += ["# one optimizer, two steps", ours.replace("{p}", self.params("a")),
                      theirs.replace("{p}", self.params("t"))]
            lines += [f"show('a{i} after step', a{i}.data, t{i}.detach().numpy())"
                      for i in self.param_indices()]
        return "\n".join(lines)

    def backward_lines(self, prefix: str, wrap: str) -> List[str]:
        return [f"{prefix}{i}.backward({wrap}({literal(g)}), retain_graph=True)"
                for i, g in self.seeds]

    def grad_precision(self, leaf: int) -> str:
        """float32 where the gradient of `leaf` passes through any float32 value."""
        return "float32" if any(v.precision == "float32" for v in self.values
                                if leaf in v.leaves) else "float64"

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

    def pick(self, accept: Callable[[Value], bool] = lambda v: True) -> Optional[int]:
        """An earlier float value that `accept`s, most often the latest one (long chains),
        sometimes an earlier one (forks)."""
        choices = [i for i, v in enumerate(self.graph.values)
                   if v.dtype in DTYPES and accept(v)]
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
    import torch  # the test module has already skipped when torch is missing
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


# ---------------------------------------------------------------------------- the ops
# Each op draws its inputs and parameters and adds one step; it returns False when the
# graph so far has no input it can take. PyTorch's spelling of the same op is on the
# right; where cygrad's name differs from PyTorch's, the comment says why they are equal.

UNARY = {
    "neg": ("-{0}", "-{0}"),
    "exp": ("{0}.exp()", "{0}.exp()"),
    "log": ("{0}.log()", "{0}.log()"),
    "sigmoid": ("{0}.sigmoid()", "{0}.sigmoid()"),
    "tanh": ("{0}.tanh()", "{0}.tanh()"),
    "relu": ("{0}.relu()", "{0}.relu()"),
    "F.relu": ("F.relu({0})", "TF.relu({0})"),
    "sqrt": ("{0}.sqrt()", "{0}.sqrt()"),
    "abs": ("{0}.abs()", "{0}.abs()"),
    "flatten": ("{0}.flatten()", "{0}.flatten()"),
}
OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def unary(d: Drawer, name: str) -> bool:
    i = d.pick()
    ours, theirs = UNARY[name]
    d.add(ours.format(f"a{i}"), theirs.format(f"t{i}"), [name], [i])
    return True


def operator(d: Drawer, name: str) -> bool:
    """a <op> b with a tensor on one side and a tensor, an array or a number on the other."""
    draw, symbol = d.draw, OPERATORS[name]
    i = d.pick()
    shape = d.graph.values[i].shape
    kind = draw(st.sampled_from(["value", "value", "new", "number", "number"]))
    inputs = [i]
    if kind == "value":
        j = d.pick(lambda v: broadcastable(v.shape, shape))
        other, other_t, inputs = f"a{j}", f"t{j}", [i, j]
    elif kind == "new":
        other, other_t, more = d.tensor_operand(broadcast_partner(draw, shape))
        inputs += more
    else:
        other = other_t = d.number()
    left, left_t, right, right_t = f"a{i}", f"t{i}", other, other_t
    if draw(st.booleans()):  # the tensor on the right: reflected operators
        left, left_t, right, right_t = right, right_t, left, left_t
    if d.signed_zero(right_t if name == "div" else left_t if name == "pow" else None):
        return False
    d.add(f"{left} {symbol} {right}", f"{left_t} {symbol} {right_t}", [name], inputs)
    return True


def maximum(d: Drawer, name: str) -> bool:
    i = d.pick()
    shape = d.graph.values[i].shape
    if d.draw(st.booleans()):
        j = d.pick(lambda v: broadcastable(v.shape, shape))
        other, other_t, inputs = f"a{j}", f"t{j}", [i, j]
    else:
        other, other_t, more = d.tensor_operand(broadcast_partner(d.draw, shape))
        inputs = [i] + more
    d.add(f"cg.maximum(a{i}, {other})", f"torch.maximum(t{i}, {other_t})", [name], inputs)
    return True


def minimum(d: Drawer, name: str) -> bool:
    i = d.pick()
    j = d.pick(lambda v: broadcastable(v.shape, d.graph.values[i].shape))
    d.add(f"cg.minimum(a{i}, a{j})", f"torch.minimum(t{i}, t{j})", [name], [i, j])
    return True


def clamp(d: Drawer, name: str) -> bool:
    """Bounds from the leaves' own numbers, so that elements sit on them; min > max too."""
    draw = d.draw
    i = d.pick()
    low, high = (draw(st.one_of(st.none(), st.sampled_from(NUMBERS))) for _ in range(2))
    if low is None and high is None:
        low = 0.0
    d.add(f"a{i}.clamp({low!r}, {high!r})", f"t{i}.clamp({low!r}, {high!r})", [name], [i])
    return True


def along(d: Drawer, name: str) -> bool:
    """softmax and log_softmax along one dim (0 or -1 for a 0-d tensor)."""
    i = d.pick()
    ndim = max(len(d.graph.values[i].shape), 1)
    dim = d.draw(st.integers(-ndim, ndim - 1))
    d.add(f"a{i}.{name}({dim})", f"t{i}.{name}({dim})", [name], [i])
    return True


def arg(d: Drawer, name: str) -> bool:
    """argmax/argmin: cygrad returns the indices as an int64 NumPy array, not a Tensor
    (its docstring: indices have no gradient); they are compared as values."""
    draw = d.draw
    i = d.pick(lambda v: math.prod(v.shape) > 0)
    if i is None:
        return False
    ndim = max(len(d.graph.values[i].shape), 1)
    dim = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1)))
    keepdim = draw(st.booleans())
    d.add(f"a{i}.{name}({dim!r}, {keepdim})", f"t{i}.{name}({dim!r}, {keepdim})", [name], [i])
    return True


def join(d: Drawer, name: str) -> bool:
    """cat along an existing dim, stack along a new one: two or three values of one shape
    (the same value twice too: a fork), mixed dtypes."""
    draw = d.draw
    i = d.pick(lambda v: name == "stack" or len(v.shape) > 0)
    if i is None:
        return False
    shape = d.graph.values[i].shape
    parts, parts_t, inputs = [f"a{i}"], [f"t{i}"], [i]
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.booleans()):
            j = d.pick(lambda v: v.shape == shape)
            parts.append(f"a{j}"), parts_t.append(f"t{j}"), inputs.append(j)
        else:
            ours, theirs, more = d.tensor_operand(shape, array_ok=False)
            parts.append(ours), parts_t.append(theirs)
            inputs += more
    ndim = len(shape) + (name == "stack")
    dim = draw(st.integers(-ndim, ndim - 1))
    d.add(f"cg.{name}([{', '.join(parts)}], {dim})",
          f"torch.{name}([{', '.join(parts_t)}], {dim})", [name], inputs)
    return True


COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


def comparison(d: Drawer, name: str) -> bool:
    """t > 0 and the like: cygrad gives a boolean NumPy array, not a Tensor (docs/dtypes.md,
    "Results that are not floats"); compared as values."""
    draw = d.draw
    i = d.pick()
    symbol = draw(st.sampled_from(COMPARISONS))
    if draw(st.booleans()):
        other = other_t = d.number()
        inputs = [i]
    else:
        j = d.pick(lambda v: broadcastable(v.shape, d.graph.values[i].shape))
        other, other_t, inputs = f"a{j}", f"t{j}", [i, j]
    d.add(f"a{i} {symbol} {other}", f"t{i} {symbol} {other_t}", [name], inputs)
    return True


def mask(d: Drawer, name: str) -> bool:
    """t[m > c]: a boolean mask over all axes or the leading ones, from a comparison of a
    value of that shape (the indexed value itself too)."""
    draw = d.draw
    i = d.pick(lambda v: len(v.shape) > 0)
    if i is None:
        return False
    shape = d.graph.values[i].shape
    lead = shape[:draw(st.integers(1, len(shape)))]
    j = d.pick(lambda v: v.shape == lead)
    if j is None:
        return False
    symbol = draw(st.sampled_from(COMPARISONS))
    number = d.number()
    d.add(f"a{i}[a{j} {symbol} {number}]", f"t{i}[t{j} {symbol} {number}]", [name], [i, j])
    return True


def reduction(d: Drawer, name: str) -> bool:
    """sum, mean, max, min over every axis, one axis (negative too) or several, with
    keepdim; in PyTorch's spelling (dim, keepdim), NumPy's (axis, keepdims) or none.
    cygrad's max(dim) returns the values only, as torch.amax does (docs/tensor.md)."""
    draw = d.draw
    i = d.pick()
    ndim = len(d.graph.values[i].shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    keepdims = draw(st.booleans())
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-max(ndim, 1), max(ndim, 1) - 1))  # 0-d: 0 and -1
    else:
        axis = tuple(draw(st.lists(st.integers(0, ndim - 1), unique=True, min_size=1,
                                   max_size=ndim))) if ndim else (0,)
    torch_name = {"max": "amax", "min": "amin"}.get(name, name)
    theirs = f"t{i}.{torch_name}(dim={axis!r}, keepdim={keepdims})"
    if name in ("max", "min") and axis is None:
        # Over every axis cygrad's max/min is torch.max()/min() (the gradient masks: the
        # others get 0), with dims torch.amax/amin (it multiplies): their docstrings.
        theirs = f"t{i}.{name}()" + (f".reshape({(1,) * ndim!r})" if keepdims else "")
    spelling = draw(st.sampled_from(["torch", "numpy", "bare"]))
    if spelling == "bare" and axis is None and not keepdims:
        ours, theirs = f"a{i}.{name}()", f"t{i}.{name}()"
    elif spelling == "numpy":  # NumPy's names for the same arguments
        ours = f"a{i}.{name}(axis={axis!r}, keepdims={keepdims})"
    else:
        ours = f"a{i}.{name}(dim={axis!r}, keepdim={keepdims})"
    d.add(ours, theirs, [name], [i])
    return True


def reshape(d: Drawer, name: str) -> bool:
    draw = d.draw
    i = d.pick()
    size = math.prod(d.graph.values[i].shape)
    factors = [n for n in range(1, size + 1) if size % n == 0]
    shape, rest = [], size
    for _ in range(draw(st.integers(0, 3))):
        n = draw(st.sampled_from([n for n in factors if rest % n == 0]))
        shape.append(n)
        rest //= n
    if rest != 1 or draw(st.booleans()):
        shape.append(rest)
    if shape and draw(st.booleans()):
        shape[draw(st.integers(0, len(shape) - 1))] = -1
    d.add(f"a{i}.reshape({tuple(shape)!r})", f"t{i}.reshape({tuple(shape)!r})", [name], [i])
    return True


def transpose(d: Drawer, name: str) -> bool:
    """cygrad's transpose(*axes) is NumPy's (a permutation): PyTorch's permute."""
    draw = d.draw
    i = d.pick()
    ndim = len(d.graph.values[i].shape)
    if ndim == 2 and draw(st.booleans()):
        d.add(f"a{i}.T", f"t{i}.T", ["T"], [i])
        return True
    perm = tuple(draw(st.permutations(range(ndim))))
    if draw(st.booleans()):
        d.add(f"a{i}.transpose()", f"t{i}.permute({tuple(reversed(range(ndim)))!r})",
              [name], [i])
    else:
        d.add(f"a{i}.transpose({perm!r})", f"t{i}.permute({perm!r})", [name], [i])
    return True


def getitem(d: Drawer, name: str) -> bool:
    """Integers (negative too), slices with steps, and a list of integers (repeats add up
    in the gradient) on some axes."""
    draw = d.draw
    i = d.pick(lambda v: len(v.shape) > 0)
    if i is None:
        return False
    shape = d.graph.values[i].shape
    parts: List[str] = []
    used_list = False
    for n in shape[:draw(st.integers(1, len(shape)))]:
        kinds = ["slice"] if n == 0 else ["int", "slice"] if used_list else \
            ["int", "slice", "list"]  # an empty axis (a mask's result) has no position
        kind = draw(st.sampled_from(kinds))
        if kind == "int":
            parts.append(repr(draw(st.integers(-n, n - 1))))
        elif kind == "slice":
            start = draw(st.one_of(st.none(), st.integers(-n, n)))
            stop = draw(st.one_of(st.none(), st.integers(-n, n)))
            step = draw(st.sampled_from([None, 1, 2]))
            parts.append(":".join("" if x is None else str(x) for x in (start, stop))
                         + ("" if step is None else f":{step}"))
        else:
            used_list = True
            parts.append(repr(draw(st.lists(st.integers(-n, n - 1), min_size=1,
                                            max_size=4))))
    index = ", ".join(parts)
    d.add(f"a{i}[{index}]", f"t{i}[{index}]", [name], [i])
    return True


def matmul(d: Drawer, name: str) -> bool:
    """a @ b for 1-D and 2-D operands and a stack of matrices times a matrix; both of one
    dtype (PyTorch refuses mixed ones). The right operand is an earlier value that fits,
    the left one's transpose (a fork), a new leaf or a constant."""
    draw = d.draw
    i = d.pick(lambda v: 1 <= len(v.shape) <= 3)
    if i is None:
        return False
    a = d.graph.values[i]
    k = a.shape[-1]
    if len(a.shape) == 2 and draw(st.booleans()):
        d.add(f"a{i} @ a{i}.T", f"t{i} @ t{i}.T", [name, "T"], [i])
        return True
    j = d.pick(lambda v: v.dtype == a.dtype and 1 <= len(v.shape) <= 2 and v.shape[0] == k)
    if j is not None and draw(st.booleans()):
        other, other_t, inputs = f"a{j}", f"t{j}", [i, j]
    else:
        shape = (k,) if draw(st.booleans()) else (k, draw(st.integers(1, 3)))
        other, other_t, more = d.tensor_operand(shape, a.dtype)
        inputs = [i] + more
    d.add(f"a{i} @ {other}", f"t{i} @ {other_t}", [name], inputs)
    return True


def linear(d: Drawer, name: str) -> bool:
    """F.linear(x, w, b): x (..., in_features), w (out_features, in_features)."""
    draw = d.draw
    i = d.pick(lambda v: 1 <= len(v.shape) <= 3)
    if i is None:
        return False
    x = d.graph.values[i]
    out_features = draw(st.integers(1, 3))
    w, w_t, inputs = d.tensor_operand((out_features, x.shape[-1]), x.dtype, False)
    args, args_t = f"a{i}, {w}", f"t{i}, {w_t}"
    if draw(st.booleans()):
        b, b_t, more = d.tensor_operand((out_features,), x.dtype, False)
        args, args_t, inputs = f"{args}, {b}", f"{args_t}, {b_t}", inputs + more
    d.add(f"F.linear({args})", f"TF.linear({args_t})", [name], [i] + inputs)
    return True


REDUCTIONS = ("mean", "sum", "none")
PROBABILITIES = (0.0, 1.0, 0.5, 0.25)


def _reduction(d: Drawer) -> Tuple[str, str]:
    """Loss keyword arguments: PyTorch's default, or one of its reductions."""
    reduction = d.draw(st.sampled_from((None,) + REDUCTIONS))
    return ("", "") if reduction is None else (f", reduction={reduction!r}",) * 2


def pointwise_loss(d: Drawer, name: str) -> bool:
    """mse_loss, l1_loss, binary_cross_entropy(_with_logits): an input and a target of its
    shape and dtype. binary_cross_entropy's input must be probabilities (PyTorch refuses
    others, and the step is left out); its targets are probabilities too."""
    draw = d.draw
    i = d.pick()
    a = d.graph.values[i]
    j = d.pick(lambda v: v.shape == a.shape and v.dtype == a.dtype)
    if name.startswith("binary") or j is None or j == i or draw(st.booleans()):
        if name.startswith("binary"):
            data = literal(d.array(a.shape, a.dtype, PROBABILITIES))
            target, target_t, inputs = f"cg.Tensor({data})", f"torch.tensor({data})", []
        else:
            target, target_t, inputs = d.tensor_operand(a.shape, a.dtype, False)
    else:
        target, target_t, inputs = f"a{j}", f"t{j}", [j]
    kw, kw_t = _reduction(d)
    d.add(f"F.{name}(a{i}, {target}{kw})", f"TF.{name}(t{i}, {target_t}{kw_t})", [name],
          [i] + inputs)
    return True


def class_loss(d: Drawer, name: str) -> bool:
    """cross_entropy and nll_loss: (batch, classes) and integer labels; large logits put
    the probability of a label at exactly 1 (or 0)."""
    draw = d.draw
    i = d.pick(lambda v: len(v.shape) == 2)
    if i is None:
        return False
    batch, classes = d.graph.values[i].shape
    labels = draw(st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch))
    kw, kw_t = _reduction(d)
    if name == "cross_entropy" and draw(st.booleans()):
        kw += ", label_smoothing=0.25"
        kw_t += ", label_smoothing=0.25"
    d.add(f"F.{name}(a{i}, {labels!r}{kw})",
          f"TF.{name}(t{i}, torch.tensor({labels!r}){kw_t})", [name], [i])
    return True


def _has_unary(name: str) -> Callable[[], bool]:
    ours = UNARY[name][0]
    if ours.startswith("F."):
        return lambda: hasattr(F, ours[2:].split("(")[0])
    method = ours.split(".")[-1].split("(")[0] if "." in ours else None
    return lambda: method is None or hasattr(cg.Tensor, method)


def _has_method(name: str) -> Callable[[], bool]:
    return lambda: hasattr(cg.Tensor, name)


def _always() -> bool:
    return True


# name -> (how to draw it, whether this cygrad has it)
OPS: Dict[str, Tuple[Callable[[Drawer, str], bool], Callable[[], bool]]] = {
    **{name: (unary, _has_unary(name)) for name in UNARY},
    **{name: (operator, _always) for name in OPERATORS},
    "maximum": (maximum, lambda: hasattr(cg, "maximum")),
    **{name: (reduction, _has_method(name)) for name in ("sum", "mean", "max", "min")},
    "minimum": (minimum, lambda: hasattr(cg, "minimum")),
    "clamp": (clamp, _has_method("clamp")),
    **{name: (along, _has_method(name)) for name in ("softmax", "log_softmax")},
    **{name: (arg, _has_method(name)) for name in ("argmax", "argmin")},
    **{name: (join, lambda name=name: hasattr(cg, name)) for name in ("cat", "stack")},
    "comparison": (comparison, lambda: cg.Tensor.__gt__ is not object.__gt__),
    "mask": (mask, lambda: cg.Tensor.__gt__ is not object.__gt__),
    "reshape": (reshape, _always),
    "transpose": (transpose, _always),
    "getitem": (getitem, _always),
    "matmul": (matmul, _always),
    "linear": (linear, lambda: hasattr(F, "linear")),
    **{name: (pointwise_loss, lambda name=name: hasattr(F, name))
       for name in ("mse_loss", "l1_loss", "binary_cross_entropy",
                    "binary_cross_entropy_with_logits")},
    **{name: (class_loss, lambda name=name: hasattr(F, name))
       for name in ("cross_entropy", "nll_loss")},
}


def available_ops() -> List[str]:
    """The ops this cygrad has (new ones join the graphs as they land)."""
    return sorted(name for name, (_, has) in OPS.items() if has())


@st.composite
def graphs(draw: Callable, min_ops: int = 2, max_ops: int = 12) -> Graph:
    """A random graph of `min_ops`..`max_ops` ops over 1..3 leaves, with upstream
    gradients for its sinks and, sometimes, an optimizer to step its leaves."""
    d = Drawer(draw)
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    d.leaf(shape, requires_grad=True)
    for _ in range(draw(st.integers(0, MAX_LEAVES - 1))):
        d.leaf(broadcast_partner(draw, shape))
    names = available_ops()
    n_ops = draw(st.integers(min_ops, max_ops))
    done = 0
    while done < n_ops:
        name = draw(st.sampled_from(names))
        if OPS[name][0](d, name):
            done += 1
    g = d.graph
    for i, (v, used) in enumerate(zip(g.values, g.used)):
        if not used and not v.is_leaf and v.requires_grad and v.dtype in DTYPES:
            g.seeds.append((i, d.array(v.shape, v.dtype)))
    if g.seeds and draw(st.integers(0, 3)) == 0:
        g.optimizer = draw(st.sampled_from(OPTIMIZERS))
    g.torch_env = d.torch_env
    return g


# "{p}" is the list of leaves that require grad.
OPTIMIZERS = [
    ("opt = cg.optim.SGD({p}, lr=0.1); opt.step(); opt.step()",
     "opt = torch.optim.SGD({p}, lr=0.1); opt.step(); opt.step()"),
    ("opt = cg.optim.SGD({p}, lr=0.1, momentum=0.9, weight_decay=0.01); "
     "opt.step(); opt.step()",
     "opt = torch.optim.SGD({p}, lr=0.1, momentum=0.9, weight_decay=0.01); "
     "opt.step(); opt.step()"),
    ("opt = cg.optim.Adam({p}, lr=0.01); opt.step(); opt.step()",
     "opt = torch.optim.Adam({p}, lr=0.01); opt.step(); opt.step()"),
]
