"""The ops of the random graphs (tests/_graphs.py holds the graph and the drawing), and
`graphs()`, the hypothesis strategy the differential test draws from.

Each op draws its inputs and parameters and adds one step in cygrad's and PyTorch's
spelling; it returns False when the graph so far has no input it can take. Where cygrad's
spelling or result differs from PyTorch's on purpose, a comment points at the doc.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Tuple

from hypothesis import strategies as st

import cygrad as cg
from cygrad import functional as F

from _graphs import DTYPES, MAX_LEAVES, NUMBERS, Drawer, Graph, broadcast_partner, \
    broadcastable, literal

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
    # "zero_d": a 0-d tensor or array, often of the other dtype (it must not promote a
    # tensor with dimensions, docs/dtypes.md rule 3)
    kind = draw(st.sampled_from(["value", "value", "new", "zero_d", "number", "number"]))
    inputs = [i]
    if kind == "value":
        j = d.pick(lambda v: broadcastable(v.shape, shape))
        other, other_t, inputs = f"a{j}", f"t{j}", [i, j]
    elif kind in ("new", "zero_d"):
        partner = () if kind == "zero_d" else broadcast_partner(draw, shape)
        other, other_t, more = d.tensor_operand(partner)
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
    """A random factorization of the size, in any order; one axis may be -1. An empty
    value (a mask that selected nothing) takes empty shapes."""
    draw = d.draw
    i = d.pick()
    size = math.prod(d.graph.values[i].shape)
    if size == 0:
        shape = draw(st.sampled_from([(0,), (2, 0), (0, 3, 1)]))
        d.add(f"a{i}.reshape({shape!r})", f"t{i}.reshape({shape!r})", [name], [i])
        return True
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
    """.T, transpose(dim0, dim1) (two axes swapped, negative ones too) and permute(dims),
    each as PyTorch's."""
    draw = d.draw
    i = d.pick()
    ndim = len(d.graph.values[i].shape)
    kind = draw(st.sampled_from(["T", "transpose", "permute"] if ndim else ["permute"]))
    if kind == "T" and ndim == 2:
        d.add(f"a{i}.T", f"t{i}.T", ["T"], [i])
    elif kind == "transpose" and ndim:
        dim0, dim1 = (draw(st.integers(-ndim, ndim - 1)) for _ in range(2))
        d.add(f"a{i}.transpose({dim0}, {dim1})", f"t{i}.transpose({dim0}, {dim1})",
              [name], [i])
    else:
        perm = tuple(draw(st.permutations(range(ndim))))
        d.add(f"a{i}.permute({perm!r})", f"t{i}.permute({perm!r})", ["permute"], [i])
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
    shape and dtype. binary_cross_entropy's input must be probabilities, 0 and 1 included
    (a sigmoid's or softmax's output, a clamped value); its targets are probabilities too."""
    draw = d.draw
    i = d.pick(probabilities=name == "binary_cross_entropy")
    if i is None:
        return False
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
    i = d.pick(lambda v: len(v.shape) == 2 and v.shape[1] > 0)  # a label needs a class
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
