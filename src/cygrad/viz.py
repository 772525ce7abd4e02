"""See the graph: Graphviz DOT text of a computation, a rendered picture, a model summary.

    x = cg.Tensor(-2.0, requires_grad=True); y = ...; z = ...
    f = (x + y) * z
    g = viz.trace(f, names={"x": x, "y": y, "z": z, "f": f})  # BEFORE backward
    f.backward()
    print(viz.to_dot(g))             # values and gradients on every node
    viz.render(g, "graph.svg")       # needs Graphviz (the `graphviz` package and `dot`)

`backward()` frees the graph it runs through (each op's parents are dropped) and keeps
only the leaves' gradients. To see the graph with its gradients, take `trace(t)` first:
the Graph it returns holds every node itself, and marks the intermediates with
`retain_grad()` so that their gradients are there after backward. (Or run
`backward(retain_graph=True)` and call `retain_grad()` on the intermediates yourself.)
"""
from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .nn import Module, Sequential
from .tensor import Tensor, no_grad

__all__ = ["Node", "Graph", "trace", "to_dot", "render", "summary", "ModelSummary",
           "LayerSummary", "format_value"]


@dataclass(frozen=True)
class Node:
    """One tensor of the graph. `op` is "" for a leaf; `inputs` are indices into
    `Graph.nodes`, in the op's argument order (an input used twice appears twice)."""
    tensor: Tensor
    op: str
    name: str
    inputs: Tuple[int, ...]

    @property
    def kind(self) -> str:
        """The op's name, "leaf" (a leaf that requires grad) or "const" (one that does not)."""
        if self.op:
            return self.op
        return "leaf" if self.tensor.requires_grad else "const"


@dataclass
class Graph:
    """The graph that produced `nodes[-1]`: nodes every one after its inputs, and edges
    (input index, node index), one per use. It keeps references to the tensors, so it
    still shows them after backward() has freed the graph itself."""
    nodes: List[Node]
    edges: List[Tuple[int, int]]

    @property
    def root(self) -> Node:
        return self.nodes[-1]

    def index(self, t: Tensor) -> int:
        """The position of tensor `t` in `nodes` (ValueError if it is not in the graph)."""
        for i, node in enumerate(self.nodes):
            if node.tensor is t:
                return i
        raise ValueError("t: this tensor is not in the graph")


Names = Optional[Mapping[str, Tensor]]


def _names_by_id(names: Names) -> Dict[int, str]:
    if names is None:
        return {}
    found = {}
    for name, t in names.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"names[{name!r}]: expected a Tensor, got {type(t).__name__}")
        found[id(t)] = str(name)
    return found


def trace(t: Tensor, names: Names = None, retain_grads: bool = True) -> Graph:
    """The graph that produced `t`: every op node and leaf (constants included) from `t`
    back to the leaves. Take it before `t.backward()`, which frees the graph.
    `names` maps a name to a tensor of the graph, shown instead of its op.
    `retain_grads`: call `retain_grad()` on every op node, so that after backward their
    `.grad` holds dt/d(node) for the picture (leaves that require grad get theirs anyway).
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"t: expected a Tensor, got {type(t).__name__}")
    given = _names_by_id(names)
    index: Dict[int, int] = {}
    nodes: List[Node] = []
    edges: List[Tuple[int, int]] = []
    # Iterative post-order walk (parents in argument order): nodes come out in the order
    # the forward pass made them, and a chain 100,000 ops deep needs no recursion.
    stack: List[Tuple[Tensor, bool]] = [(t, False)]
    while stack:
        node, parents_done = stack.pop()
        if id(node) in index:
            continue
        if not parents_done:
            if node._op and node.requires_grad and not node._parents:
                raise RuntimeError(
                    f"trace: the graph through '{node._op}' was freed by backward(); take "
                    "trace(t) before backward(), or pass retain_graph=True to backward()")
            stack.append((node, True))
            stack.extend((p, False) for p in reversed(node._parents) if id(p) not in index)
            continue
        inputs = tuple(index[id(p)] for p in node._parents)
        index[id(node)] = len(nodes)
        edges.extend((i, len(nodes)) for i in inputs)
        nodes.append(Node(node, node._op, given.get(id(node), ""), inputs))
        if retain_grads and node._op and node.requires_grad:
            node.retain_grad()
    return Graph(nodes, edges)


def _with_names(graph: Graph, names: Names) -> Graph:
    given = _names_by_id(names)
    if not given:
        return graph
    nodes = [replace(n, name=given[id(n.tensor)]) if id(n.tensor) in given else n
             for n in graph.nodes]
    return Graph(nodes, list(graph.edges))


def format_value(a: Optional[np.ndarray], digits: int = 4) -> str:
    """A scalar (or one-element array) as its number; a larger array as min/mean/max."""
    if a is None:
        return ""
    a = np.asarray(a)
    if a.size == 1:
        return f"{a.item():.{digits}g}"
    if a.size == 0:
        return "empty"
    return (f"min {a.min():.{digits}g}  mean {a.mean():.{digits}g}  "
            f"max {a.max():.{digits}g}")


def _shape(t: Tensor) -> str:
    return "scalar" if t.ndim == 0 else str(t.shape)


def _label(node: Node, is_root: bool, show_grad: bool) -> str:
    # An HTML-like label, so value and gradient can be told apart by colour, as the
    # notes' circuit diagrams write values in green and gradients in red.
    t, esc = node.tensor, html.escape
    head = node.name or node.kind
    if node.name and node.op:
        head = f"{node.name} = {node.op}"
    lines = [f"<b>{esc(head)}</b>", esc(f"{_shape(t)} {t.dtype}"),
             f'<font color="#1e7b34">{esc(format_value(t.data))}</font>']
    if show_grad and t.grad is not None:
        lines.append(f'<font color="#c0392b">{esc("grad " + format_value(t.grad))}</font>')
    if is_root:
        lines[0] += " (output)"
    return "<" + "<br/>".join(lines) + ">"


def to_dot(source: Union[Tensor, Graph], show_grad: bool = True, names: Names = None) -> str:
    """Graphviz DOT text of the graph of `source` (a Tensor, or a Graph from `trace()`):
    one node per op and per leaf, labelled with its op (or "leaf", "const", or its name),
    shape, dtype, value and, when `show_grad` and it has one, its gradient; an edge from
    each input to the op that used it. A Tensor is traced now: after `backward()` pass
    the Graph traced before it instead (see the module's docstring)."""
    graph = trace(source, retain_grads=False) if isinstance(source, Tensor) else source
    if not isinstance(graph, Graph):
        raise TypeError(f"source: expected a Tensor or a Graph, got {type(source).__name__}")
    graph = _with_names(graph, names)
    lines = ["digraph cygrad {",
             "  rankdir=LR;",  # inputs on the left, output on the right, as in the notes
             '  node [fontname="Helvetica", fontsize=11];',
             '  edge [color="#555555"];']
    last = len(graph.nodes) - 1
    for i, node in enumerate(graph.nodes):
        if node.op:
            style = 'shape=box, style="rounded,filled", fillcolor="#eaf2fb"'
        elif node.tensor.requires_grad:
            style = 'shape=ellipse, style=filled, fillcolor="#e8f6e8"'
        else:
            style = 'shape=ellipse, style=filled, fillcolor="#eeeeee"'
        if i == last:
            style += ", penwidth=2"
        lines.append(f"  n{i} [label={_label(node, i == last, show_grad)}, {style}];")
    lines += [f"  n{a} -> n{b};" for a, b in graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


FORMATS = ("svg", "png", "pdf")
_HOW_TO_GET = ("install the Python package (pip install graphviz) and the Graphviz "
               "programs (e.g. apt-get install graphviz, brew install graphviz, or "
               "conda install graphviz)")


def _graphviz():
    """The `graphviz` module, checked to find the `dot` program."""
    try:
        import graphviz
    except ImportError:
        raise RuntimeError(f"render: the graphviz Python package is not installed; "
                           f"{_HOW_TO_GET}. to_dot() needs neither.") from None
    if shutil.which("dot") is None:
        raise RuntimeError(f"render: the Graphviz 'dot' program is not on PATH; "
                           f"{_HOW_TO_GET}. to_dot() needs neither.")
    return graphviz


def render(source: Union[Tensor, Graph], path: Union[str, Path], show_grad: bool = True,
           names: Names = None) -> Path:
    """Write the picture of `to_dot(source, show_grad, names)` to `path`; its suffix
    (.svg, .png or .pdf) picks the format. Needs the `graphviz` Python package and the
    Graphviz `dot` program: RuntimeError, saying how to get them, when either is missing."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"path: expected a .svg, .png or .pdf file, got {str(path)!r}")
    dot = to_dot(source, show_grad=show_grad, names=names)  # before any Graphviz check
    graphviz = _graphviz()
    try:
        picture = graphviz.Source(dot).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RuntimeError(f"render: Graphviz 'dot' could not be run; {_HOW_TO_GET}") from None
    path.write_bytes(picture)
    return path


# -- model summary ------------------------------------------------------------------------

def _layers(model: Module) -> List[Tuple[str, Module]]:
    """Sequential: its layers, named by position; any other module: its children, named
    by attribute (`blocks[2]` for one in a list)."""
    if isinstance(model, Sequential):
        return [(str(i), layer) for i, layer in enumerate(model.layers)]
    found = []
    for key, value in vars(model).items():
        if isinstance(value, Module):
            found.append((key, value))
        elif isinstance(value, (list, tuple)):
            found += [(f"{key}[{i}]", v) for i, v in enumerate(value) if isinstance(v, Module)]
    return found


_ABSENT = object()


def _count(params: Sequence[Tensor]) -> int:
    return sum(int(p.size) for p in params)


@dataclass(frozen=True)
class LayerSummary:
    """One row of a ModelSummary: `output_shape` and `dtype` are None for a layer the
    forward pass did not call."""
    name: str
    type: str
    output_shape: Optional[Tuple[int, ...]]
    params: int
    dtype: Optional[np.dtype]


@dataclass(frozen=True)
class ModelSummary:
    """What `summary()` returns. Its str() and repr() are the table, so the REPL shows it
    once and `print(summary(...))` prints it; the numbers are attributes."""
    model_type: str
    input_shape: Tuple[int, ...]
    input_dtype: np.dtype
    output_shape: Optional[Tuple[int, ...]]
    layers: Tuple[LayerSummary, ...]
    total_params: int

    def __str__(self) -> str:
        rows = [("layer", "type", "output shape", "params", "dtype")]
        rows += [(layer.name, layer.type,
                  "(not called)" if layer.output_shape is None else str(layer.output_shape),
                  f"{layer.params:,}", "" if layer.dtype is None else str(layer.dtype))
                 for layer in self.layers]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        right = (False, False, False, True, False)  # counts line up on the right

        def line(row: Tuple[str, ...]) -> str:
            cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)]
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(rows[0]))
        output = "?" if self.output_shape is None else self.output_shape
        return "\n".join([f"{self.model_type}: input {self.input_shape} {self.input_dtype}, "
                          f"output {output}", line(rows[0]), rule]
                         + [line(r) for r in rows[1:]]
                         + [rule, f"total parameters: {self.total_params:,}"])

    __repr__ = __str__


def summary(model: Module, input_shape: Union[int, Sequence[int]],
            dtype: object = np.float32) -> ModelSummary:
    """The model's layers (a Sequential's layers, or another module's children): name,
    type, output shape, parameter count and output dtype, with the total parameter count
    (shared parameters counted once). Runs `model` on zeros of `input_shape` (the whole
    input, batch axis included, e.g. (1, 784)) under no_grad.

    Returns a ModelSummary and prints nothing: its str() and repr() are the table, so in
    the REPL `cg.summary(model, (1, 784))` shows it (once), and a script prints it with
    `print(cg.summary(model, (1, 784)))`."""
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a Module, got {type(model).__name__}")
    shape = (int(input_shape),) if np.isscalar(input_shape) else tuple(map(int, input_shape))
    layers = _layers(model)
    outputs: Dict[int, Tensor] = {}

    def recording(key: int, forward):
        def wrapped(*args, **kwargs):
            out = outputs[key] = forward(*args, **kwargs)
            return out
        return wrapped

    # An instance attribute shadows the class's forward: each layer reports its output
    # however the model routes data through it; put back afterwards, even on an error.
    saved: Dict[int, Tuple[Module, object]] = {}
    for _, m in layers:
        if id(m) not in saved:  # a layer listed twice is hooked once
            saved[id(m)] = (m, vars(m).get("forward", _ABSENT))
            m.forward = recording(id(m), m.forward)
    try:
        with no_grad():
            out = model(Tensor(np.zeros(shape, dtype=dtype)))
    finally:
        for m, previous in saved.values():
            if previous is _ABSENT:
                del m.forward
            else:
                m.forward = previous

    rows = []
    for name, m in layers:
        t = outputs.get(id(m))
        rows.append(LayerSummary(name, type(m).__name__, None if t is None else tuple(t.shape),
                                 _count(m.parameters()), None if t is None else t.dtype))
    out_shape = getattr(out, "shape", None)
    return ModelSummary(type(model).__name__, shape, np.dtype(dtype),
                        None if out_shape is None else tuple(out_shape), tuple(rows),
                        _count(model.parameters()))
