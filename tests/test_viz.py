"""See the graph: `python -m cygrad explain`, viz.to_dot / trace / render, viz.summary.

The explain numbers are the notes' (notes 004, "optimization-2"): the (x + y) z circuit
(x = -2, y = 5, z = -4: f = -12, dx = dy = -4, dz = 3) and the staged-computation example
f = (x + sigmoid(y)) / (sigmoid(x) + (x + y)^2) at x = 3, y = -4.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import cygrad as cg
from cygrad import viz
from cygrad.cli import explain
from cygrad.__main__ import main

CIRCUIT = ["(x + y) * z", "x=-2", "y=5", "z=-4"]
STAGED = ["(x + sigmoid(y)) / (sigmoid(x) + (x + y)**2)", "x=3", "y=-4"]


def _staged_by_hand(x: float, y: float):
    """The notes' staged forward and backward pass, line by line."""
    sigy = 1.0 / (1 + math.exp(-y))
    num = x + sigy
    sigx = 1.0 / (1 + math.exp(-x))
    xpy = x + y
    xpysqr = xpy ** 2
    den = sigx + xpysqr
    invden = 1.0 / den
    f = num * invden
    dnum, dinvden = invden, num
    dden = (-1.0 / (den ** 2)) * dinvden
    dsigx, dxpysqr = dden, dden
    dxpy = (2 * xpy) * dxpysqr
    dx, dy = dxpy, dxpy
    dx += ((1 - sigx) * sigx) * dsigx
    dx += dnum
    dsigy = dnum
    dy += ((1 - sigy) * sigy) * dsigy
    return f, dx, dy


def _results(text: str):
    """(f, {input: gradient}, {input: [contributions from the backward table]})."""
    f = float(re.search(r"^gradients of f = (\S+)$", text, re.M).group(1))
    grads = {n: float(v) for n, v in re.findall(r"^  d(\w+) = (\S+)", text, re.M)}
    parts = {}
    for name, value in re.findall(r"\bd(\w+) \+= (\S+?)(?:,|$)", text, re.M):
        parts.setdefault(name, []).append(float(value))
    return f, grads, parts


def _explain(capsys, *args):
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- explain: the notes' numbers ----------------------------------------------------------

@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_explain_circuit(capsys, backend):
    with cg.use_backend(backend):
        code, out, err = _explain(capsys, *CIRCUIT)
    assert code == 0 and err == ""
    f, grads, parts = _results(out)
    assert f == -12 and grads == {"x": -4, "y": -4, "z": 3}
    assert parts["n1"] == [-4] and parts["z"] == [3]  # df/dq = z, df/dz = q
    for table_row in ("n1    add    x, y    3", "f     mul    n1, z   -12"):
        assert table_row in out
    assert "dn1/dx = 1, dn1/dy = 1" in out  # the add gate's local gradients


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_explain_staged_example(capsys, backend):
    with cg.use_backend(backend):
        code, out, _ = _explain(capsys, *STAGED)
    assert code == 0
    f, grads, parts = _results(out)
    want_f, want_dx, want_dy = _staged_by_hand(3, -4)
    # the report prints 6 significant digits
    assert f == pytest.approx(want_f, rel=1e-5) and abs(f - 1.5456) < 5e-5
    assert grads["x"] == pytest.approx(want_dx, rel=1e-5) and abs(grads["x"] - 2.0596) < 5e-5
    assert grads["y"] == pytest.approx(want_dy, rel=1e-5) and abs(grads["y"] - 1.5922) < 5e-5
    # x is used three times, y twice: the contributions in the table add up to the gradient
    assert len(parts["x"]) == 3 and len(parts["y"]) == 2
    for name in "xy":
        assert sum(parts[name]) == pytest.approx(grads[name], rel=1e-5)
    # the notes' eight stages, with the division as one op: 7 ops in the backward table
    ops = re.findall(r"^  (?:n\d|f) +(\w+) ", out.split("backward pass")[1], re.M)
    assert ops == ["div", "add", "pow", "add", "sigmoid", "add", "sigmoid"]


@pytest.mark.subprocess
def test_explain_as_a_program():
    for args, want in ((CIRCUIT, (-12, -4, -4)), (STAGED, _staged_by_hand(3, -4))):
        done = subprocess.run([sys.executable, "-m", "cygrad", "explain", *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        f, grads, _ = _results(done.stdout)
        assert [f, grads["x"], grads["y"]] == pytest.approx(list(want), rel=1e-5)


def test_explain_dot(capsys):
    code, out, _ = _explain(capsys, *CIRCUIT, "--dot")
    assert code == 0 and out.startswith("digraph") and "forward pass" not in out
    assert out.count("->") == 4 and "f = mul" in out and "grad -4" in out


def test_explain_unused_input_and_constant(capsys):
    code, out, _ = _explain(capsys, "x * -2 + 2 ** 3", "x=1.5", "w=7")
    f, grads, _ = _results(out)
    assert code == 0 and f == 5 and grads == {"x": -2, "w": 0}
    assert "(not used)" in out and "neg" not in out  # -2 and 2 ** 3 are constants


# -- explain: refused input ---------------------------------------------------------------

HOSTILE = ["__import__('os').system('touch {tmp}/owned')", "x.__class__", "open('f')",
           "[x]", "lambda: 1", "x if y else z", "x < y", "unknown + x", "x and y",
           "exp(x, y)", "exp(x=y)", "max(x)", "x % y", "exp", "'a'", "(x := 1)", "x +",
           "__import__", "x[0]", "{x: 1}", "getattr(x, 'data')"]


@pytest.mark.parametrize("expression", HOSTILE)
def test_explain_refuses(capsys, monkeypatch, tmp_path, expression):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a refused expression was evaluated")

    monkeypatch.setattr(explain, "evaluate", must_not_run)
    monkeypatch.setattr(explain, "eval", must_not_run, raising=False)
    expression = expression.replace("{tmp}", str(tmp_path))
    code, out, err = _explain(capsys, expression, "x=1", "y=2", "z=3")
    assert code == 2 and out == ""
    assert err.startswith("explain: ") and ("refused" in err or "name" in err
                                            or "not a valid expression" in err)
    assert not (tmp_path / "owned").exists()


@pytest.mark.parametrize("values, message", [
    (["x"], "expected NAME=VALUE"), (["x=abc"], "is not a number"),
    (["x="], "is not a number"), (["x=inf"], "finite"), (["2x=1"], "not a valid name"),
    (["x=1", "x=2"], "given twice"), (["exp=1"], "function"),
])
def test_explain_bad_values(capsys, values, message):
    code, out, err = _explain(capsys, "x + 1", *values)
    assert code == 2 and out == "" and message in err


def test_explain_names_not_given(capsys):
    code, _, err = _explain(capsys, "x * y", "x=1")
    assert code == 2 and "unknown name 'y'" in err and "y=VALUE" in err


# -- to_dot and trace ---------------------------------------------------------------------

def _circuit():
    x, y, z = (cg.Tensor(v, requires_grad=True) for v in (-2.0, 5.0, -4.0))
    q = x + y
    f = q * z
    return x, y, z, q, f


def _nodes(dot: str):
    return re.findall(r"^  (n\d+) \[label=<(.*)>, ", dot, re.M)


def test_to_dot_after_backward_shows_values_and_gradients():
    x, y, z, q, f = _circuit()
    graph = viz.trace(f, names={"x": x, "y": y, "z": z, "q": q, "f": f})  # before backward
    f.backward()
    dot = viz.to_dot(graph)
    nodes = dict(_nodes(dot))
    assert len(nodes) == 5  # x, y, z, add, mul
    edges = re.findall(r"^  (n\d+) -> (n\d+);$", dot, re.M)
    assert len(edges) == 4 and dot.count("->") == 4
    by_head = {re.match(r"<b>([^<]*)</b>", label).group(1): n for n, label in nodes.items()}
    assert set(by_head) == {"x", "y", "z", "q = add", "f = mul"}
    want = [("x", "q = add"), ("y", "q = add"), ("q = add", "f = mul"), ("z", "f = mul")]
    assert set(edges) == {(by_head[a], by_head[b]) for a, b in want}
    for head, value, grad in [("x", "-2", "-4"), ("y", "5", "-4"), ("z", "-4", "3"),
                              ("q = add", "3", "-4"), ("f = mul", "-12", "1")]:
        label = nodes[by_head[head]]
        assert f">{value}</font>" in label and f"grad {grad}<" in label
        assert "scalar float64" in label
    assert "(output)" in nodes[by_head["f = mul"]]
    assert ">grad " not in viz.to_dot(graph, show_grad=False)


def test_to_dot_of_a_tensor_and_its_names():
    x, y, z, q, f = _circuit()
    dot = viz.to_dot(f, names={"x": x})  # before backward: the tensor itself is enough
    heads = [re.match(r"<b>([^<]*)</b>", label).group(1) for _, label in _nodes(dot)]
    assert sorted(heads) == ["add", "leaf", "leaf", "mul", "x"] and ">grad " not in dot
    f.backward()
    with pytest.raises(RuntimeError, match="freed by backward.*trace"):
        viz.to_dot(f)
    with pytest.raises(TypeError, match="source"):
        viz.to_dot("f")


def test_trace_lists_forks_constants_and_arrays():
    w = cg.Tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    x = cg.Tensor(np.ones((2, 4)))  # data: a leaf that needs no gradient
    h = (x @ w.T).sigmoid()
    loss = (h * h).mean() * 2
    graph = viz.trace(loss)
    kinds = [node.kind for node in graph.nodes]
    assert kinds == ["const", "leaf", "transpose", "matmul", "sigmoid", "mul", "mean",
                     "const", "mul"]
    sq = graph.nodes[kinds.index("mul")]
    assert sq.inputs == (4, 4)  # h * h: one node, used twice, two edges
    assert len(graph.edges) == sum(len(n.inputs) for n in graph.nodes) == 9
    assert graph.root.tensor is loss and graph.index(w) == 1
    loss.backward()  # the graph was traced first, so it still shows every gradient
    assert all(n.tensor.grad is not None for n in graph.nodes if n.tensor.requires_grad)
    dot = viz.to_dot(graph)
    assert "(3, 4) float64" in dot and "min 0  mean 5.5  max 11" in dot
    assert dot.count("->") == 9


def test_trace_deep_chain():
    x = cg.Tensor(1.0, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    assert len(viz.trace(y).nodes) == 1 + 2 * 5000  # x, then a constant and a mul each


# -- render -------------------------------------------------------------------------------

def test_render_without_graphviz_says_how_to_get_it(monkeypatch, tmp_path):
    _, _, _, _, f = _circuit()
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz fails
    with pytest.raises(RuntimeError, match=r"pip install graphviz.*apt-get install graphviz"):
        viz.render(f, tmp_path / "g.svg")
    monkeypatch.setitem(sys.modules, "graphviz", types.ModuleType("graphviz"))
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)  # no `dot` on PATH
    with pytest.raises(RuntimeError, match=r"'dot' program.*apt-get install graphviz"):
        viz.render(f, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()
    with pytest.raises(ValueError, match=r"\.svg, \.png or \.pdf"):
        viz.render(f, tmp_path / "g.txt")


def test_explain_render_without_graphviz(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", None)
    code, out, err = _explain(capsys, *CIRCUIT, "--render", str(tmp_path / "g.svg"))
    assert code == 1 and "dx = -4" in out and "pip install graphviz" in err


HAVE_GRAPHVIZ = shutil.which("dot") is not None
try:
    import graphviz  # noqa: F401
except ImportError:
    HAVE_GRAPHVIZ = False


@pytest.mark.skipif(not HAVE_GRAPHVIZ, reason="graphviz not installed")
def test_render_svg(capsys, tmp_path):
    path = tmp_path / "graph.svg"
    assert main(["explain", *CIRCUIT, "--render", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    svg = path.read_text()
    assert "<svg" in svg and "f = mul" in svg and "grad &#45;4" in svg and "&#45;12" in svg


# -- summary ------------------------------------------------------------------------------

def test_summary_counts_parameters(capsys):
    model = cg.nn.Sequential(cg.nn.Linear(784, 256), cg.nn.Sigmoid(), cg.nn.Linear(256, 10))
    text = str(viz.summary(model, (1, 784)))
    rows = [line.split() for line in text.splitlines()]
    assert ["0", "Linear", "(1,", "256)", "200,960", "float32"] in rows
    assert ["1", "Sigmoid", "(1,", "256)", "0", "float32"] in rows
    assert ["2", "Linear", "(1,", "10)", "2,570", "float32"] in rows
    assert text.splitlines()[-1] == "total parameters: 203,530"
    assert 784 * 256 + 256 + 256 * 10 + 10 == 203_530
    assert all(p.grad is None for p in model.parameters())  # ran under no_grad


def test_summary_of_a_module_lists_its_children(capsys):
    class Net(cg.nn.Module):
        def __init__(self):
            self.encoder = cg.nn.Linear(5, 4, dtype=np.float64)
            self.blocks = [cg.nn.Tanh(), cg.nn.Linear(4, 3, bias=False, dtype=np.float64)]

        def forward(self, x):
            return self.blocks[1](self.blocks[0](self.encoder(x)))

    net = Net()
    text = str(viz.summary(net, (7, 5), dtype=np.float64))
    assert "encoder    Linear  (7, 4)" in text and "blocks[1]  Linear  (7, 3)" in text
    assert text.splitlines()[-1] == "total parameters: 36"  # 5*4 + 4 + 4*3
    assert "forward" not in vars(net.encoder)  # the recording wrappers are gone


def test_summary_returns_the_table_and_prints_nothing(capsys):
    """One way to show it: the REPL shows the returned object (its repr is the table),
    a script prints it; summary() itself prints nothing, so the REPL does not show it
    twice."""
    model = cg.nn.Sequential(cg.nn.Linear(3, 4, dtype=np.float64), cg.nn.ReLU(),
                             cg.nn.Linear(4, 2, dtype=np.float64))
    result = cg.summary(model, (5, 3), dtype=np.float64)
    assert capsys.readouterr().out == ""
    assert isinstance(result, viz.ModelSummary)
    assert repr(result) == str(result)
    assert str(result).splitlines()[0] == "Sequential: input (5, 3) float64, output (5, 2)"
    assert result.total_params == 3 * 4 + 4 + 4 * 2 + 2
    assert result.input_shape == (5, 3) and result.output_shape == (5, 2)
    assert [(r.name, r.type, r.output_shape, r.params) for r in result.layers] == [
        ("0", "Linear", (5, 4), 16), ("1", "ReLU", (5, 4), 0), ("2", "Linear", (5, 2), 10)]
    assert all(r.dtype == np.float64 for r in result.layers)
    print(result)
    assert capsys.readouterr().out == str(result) + "\n"


def test_summary_marks_a_layer_the_forward_pass_skips():
    class Skips(cg.nn.Module):
        def __init__(self):
            self.used = cg.nn.Linear(2, 2)
            self.unused = cg.nn.Linear(2, 3)

        def forward(self, x):
            return self.used(x)

    result = cg.summary(Skips(), (1, 2))
    unused = result.layers[1]
    assert unused.name == "unused" and unused.output_shape is None and unused.dtype is None
    assert "unused  Linear  (not called)" in str(result)
    assert result.total_params == 6 + 9


def test_summary_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match="^model: expected a Module, got list"):
        cg.summary([cg.nn.Linear(2, 2)], (1, 2))


def test_explain_uses_the_graphs_op_table():
    """explain has no op table of its own: each op it allows is cygrad.ops.TABLE's, under
    the name the graph records."""
    arity = dict(explain.FUNCTIONS.values())
    arity.update({op: 2 for op in explain._BINARY.values()}, neg=1)
    assert set(arity) <= set(cg.ops.TABLE)
    x = cg.Tensor(2.0, requires_grad=True)
    for name, n in arity.items():
        assert cg.ops.TABLE[name](*[x] * n)._op == name
