"""`python -m cygrad explain "EXPR" name=value ...`: an expression's forward and backward
pass, stage by stage, as the notes work them out by hand.

    python -m cygrad explain "(x + y) * z" x=-2 y=5 z=-4

The expression is parsed with `ast` and checked against a whitelist before anything is
computed (it is never given to eval or exec): numbers, the names given on the command
line, `+ - * / **`, unary `-`, and calls to exp, log, sigmoid, tanh, relu and max(a, b)
(cygrad.maximum). Each name is a float64 scalar Tensor that requires grad.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import keyword
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import ops, viz
from ..tensor import Tensor
from . import output_file

# Each whitelisted piece of syntax becomes an op, by the name the graph records
# (`Tensor._op`); the op itself comes from the graph's own table, cygrad.ops.TABLE.
_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
FUNCTIONS = {"exp": ("exp", 1), "log": ("log", 1), "sigmoid": ("sigmoid", 1),
             "tanh": ("tanh", 1), "relu": ("relu", 1), "max": ("maximum", 2)}
ALLOWED = ("numbers, the names given on the command line, + - * / ** and unary -, and "
           "calls to exp, log, sigmoid, tanh, relu and max(a, b)")
_REFUSED = {ast.Attribute: "attribute access", ast.Subscript: "a subscript",
            ast.Lambda: "a lambda", ast.Compare: "a comparison", ast.BoolOp: "and/or",
            ast.IfExp: "a conditional expression", ast.List: "a list", ast.Tuple: "a tuple",
            ast.Dict: "a dict", ast.Set: "a set", ast.ListComp: "a comprehension",
            ast.GeneratorExp: "a generator", ast.NamedExpr: "an assignment (:=)",
            ast.JoinedStr: "an f-string"}

# A plan is the checked expression as plain data: ("input", name), ("const", number) or
# (op name, plan, ...). Building it evaluates nothing; only evaluate() computes.
Plan = tuple


class ExplainError(ValueError):
    """A refused expression or command-line value (exit status 2)."""


def parse(expression: str, names: Sequence[str]) -> Plan:
    """The plan of `expression`, checked against the whitelist (ExplainError otherwise)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExplainError(f"not a valid expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ExplainError("the expression is nested too deeply") from None

    def refuse(node: ast.AST, what: str) -> ExplainError:
        text = ast.get_source_segment(expression.strip(), node) or ""
        return ExplainError(f"refused {text!r} ({what}). Allowed: {ALLOWED}.")

    def plan(node: ast.AST) -> Plan:
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):  # bool, str, complex, None, ...
                raise refuse(node, f"a {type(node.value).__name__} constant")
            try:
                return ("const", float(node.value))
            except OverflowError:
                raise refuse(node, "a number too large for float64") from None
        if isinstance(node, ast.Name):
            if node.id in names:
                return ("input", node.id)
            if node.id in FUNCTIONS:
                raise refuse(node, f"'{node.id}' is a function: call it, as {node.id}(x)")
            raise ExplainError(f"unknown name {node.id!r}: give its value on the command "
                               f"line, as {node.id}=VALUE")
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise refuse(node, f"the operator {type(node.op).__name__}")
            return (_BINARY[type(node.op)], plan(node.left), plan(node.right))
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                raise refuse(node, f"the unary operator {type(node.op).__name__}")
            return ("neg", plan(node.operand))
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name not in FUNCTIONS:
                raise refuse(node, f"a call to {name!r}" if name else "a call")
            op, arity = FUNCTIONS[name]
            if node.keywords or len(node.args) != arity or \
                    any(isinstance(a, ast.Starred) for a in node.args):
                raise refuse(node, f"{name} takes {arity} argument{'s' * (arity > 1)}, "
                                   "no keywords")
            return (op,) + tuple(plan(a) for a in node.args)
        raise refuse(node, _REFUSED.get(type(node), type(node).__name__))

    try:
        return plan(tree.body)
    except RecursionError:
        raise ExplainError("the expression is nested too deeply") from None


def evaluate(plan: Plan, inputs: Mapping[str, Tensor]) -> Tensor:
    """The Tensor of a checked plan. A part with no input in it is folded into one
    constant leaf (`-2` is the number -2, not neg(2)), so the graph shows only the ops
    the gradient flows through."""
    kind = plan[0]
    if kind == "input":
        return inputs[plan[1]]
    if kind == "const":
        return Tensor(np.float64(plan[1]))
    args = []
    for part in plan[1:]:  # a loop, not a generator: one stack frame per level of nesting
        args.append(evaluate(part, inputs))
    out = ops.TABLE[kind](*args)
    return out if out.requires_grad else Tensor(out.data)


def parse_values(items: Sequence[str]) -> Dict[str, float]:
    """`["x=-2", "y=5"]` -> {"x": -2.0, "y": 5.0}; ExplainError for a malformed item."""
    values: Dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise ExplainError(f"{item!r}: expected NAME=VALUE, e.g. x=-2")
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ExplainError(f"{item!r}: {name!r} is not a valid name")
        if name in FUNCTIONS:
            raise ExplainError(f"{item!r}: {name!r} is a function's name; choose another")
        if name in values:
            raise ExplainError(f"{item!r}: {name!r} is given twice")
        try:
            value = float(text)
        except ValueError:
            raise ExplainError(f"{item!r}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ExplainError(f"{item!r}: expected a finite number, got {text!r}")
        values[name] = value
    return values


def _fmt(v: Optional[np.ndarray]) -> str:
    return "0" if v is None else viz.format_value(v, digits=6)  # None: no gradient reached it


def _table(rows: List[Tuple[str, ...]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _local_gradients(node: viz.Node, parents: Sequence[Tensor]) -> List[Optional[float]]:
    """d node / d input for each input that requires grad (None for a constant), computed
    by cygrad itself: the op run again on fresh leaves holding the same values."""
    copies = [Tensor(p.data, requires_grad=p.requires_grad) for p in parents]
    out = ops.TABLE[node.op](*copies)
    out.backward()
    return [None if not c.requires_grad else float(0 if c.grad is None else c.grad.item())
            for c in copies]


def _fresh(candidates: Iterable[str], taken: set) -> str:
    """The first candidate name not taken (by an input of the same name, say)."""
    name = next(c for c in candidates if c not in taken)
    taken.add(name)
    return name


@dataclass
class Explanation:
    """`text`: the report; `graph`: traced before backward, holding values and gradients;
    `names`: each input, intermediate (n1, n2, ...) and the output (f) by its report name."""
    text: str
    graph: viz.Graph
    names: Dict[str, Tensor]


def explain(expression: str, values: Mapping[str, float]) -> Explanation:
    """Forward and backward pass of `expression` at `values`, staged as in the notes."""
    plan = parse(expression, list(values))  # refused here, before any Tensor exists
    inputs = {n: Tensor(np.float64(v), requires_grad=True) for n, v in values.items()}
    with np.errstate(all="ignore"):  # log(-1) shows as nan in the tables instead
        try:
            f = evaluate(plan, inputs)
        except RecursionError:
            raise ExplainError("the expression is nested too deeply") from None
        graph = viz.trace(f)  # before backward, which frees the graph
        if f.requires_grad:
            f.backward()
        names = {n: t for n, t in inputs.items()}
        taken = set(values)
        numbered = (f"n{i}" for i in itertools.count(1))
        for node in graph.nodes:
            if node.op and node.tensor is not f:
                names[_fresh(numbered, taken)] = node.tensor
        # the output is f (also when the expression is just one input: "f = x")
        root = _fresh(itertools.chain(["f"], (f"f{i}" for i in itertools.count(1))), taken)
        if all(t is not f for t in names.values()):
            names[root] = f
        text = _report(expression, inputs, graph, {id(t): n for n, t in names.items()}, root)
    return Explanation(text, graph, names)


def _report(expression: str, inputs: Mapping[str, Tensor], graph: viz.Graph,
            names: Mapping[int, str], root: str) -> str:
    def label(i: int) -> str:  # a constant is shown as its number
        t = graph.nodes[i].tensor
        return names.get(id(t), _fmt(t.data))

    forward = [("node", "op", "inputs", "value")]
    forward += [(n, "input", "", _fmt(t.data)) for n, t in inputs.items()]
    forward += [(label(i), node.op, ", ".join(map(label, node.inputs)), _fmt(node.tensor.data))
                for i, node in enumerate(graph.nodes) if node.op]
    backward = [("node", "op", "value", "local gradient(s)", "upstream", "gradient")]
    for i, node in reversed(list(enumerate(graph.nodes))):
        if not node.op:
            continue
        me, up = label(i), float(0 if node.tensor.grad is None else node.tensor.grad)
        local = _local_gradients(node, [graph.nodes[j].tensor for j in node.inputs])
        pairs = [(label(j), d) for j, d in zip(node.inputs, local) if d is not None]
        backward.append((me, node.op, _fmt(node.tensor.data),
                         ", ".join(f"d{me}/d{p} = {d:.6g}" for p, d in pairs), _fmt(up),
                         ", ".join(f"d{p} += {d * up:.6g}" for p, d in pairs)))

    where = ", ".join(f"{n} = {_fmt(t.data)}" for n, t in inputs.items())
    lines = [f"{root} = {expression.strip()}" + (f"    where {where}" if where else ""), "",
             "forward pass: each node computed from its inputs", *_table(forward), ""]
    if len(backward) > 1:
        lines += ["backward pass, in reverse order: gradient = local * upstream, added up at "
                  "forks", *_table(backward), ""]
    f = graph.root.tensor
    used = {id(node.tensor) for node in graph.nodes} if f.requires_grad else set()
    lines.append(f"gradients of {root} = {_fmt(f.data)}")
    lines += [f"  d{n} = {_fmt(t.grad)}" + ("" if id(t) in used else "    (not used)")
              for n, t in inputs.items()]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("expression", help=f"the expression; allowed: {ALLOWED}. One that "
                        "starts with '-' goes after --, as in: explain -- \"-x * y\" x=1 y=2")
    parser.add_argument("values", nargs="*", metavar="NAME=VALUE",
                        help="the value of each name in the expression, e.g. x=-2")
    parser.add_argument("--dot", action="store_true",
                        help="print the graph as Graphviz DOT text instead of the tables")
    parser.add_argument("--render", metavar="FILE", type=output_file,
                        help="also draw the graph to FILE (.svg, .png, .pdf; needs Graphviz)")


def run(args: argparse.Namespace) -> int:
    """0: explained; 2: a refused expression or value; 1: the picture could not be drawn."""
    try:
        if args.render and Path(args.render).suffix.lower().lstrip(".") not in viz.FORMATS:
            raise ExplainError(f"--render {args.render}: expected a .svg, .png or .pdf file")
        result = explain(args.expression, parse_values(args.values))
    except ExplainError as exc:
        print(f"explain: {exc}", file=sys.stderr)
        return 2
    if args.dot:
        sys.stdout.write(viz.to_dot(result.graph, names=result.names))
    else:
        sys.stdout.write(result.text)
    if args.render:
        try:
            viz.render(result.graph, args.render, names=result.names)
        except (RuntimeError, OSError) as exc:
            print(f"explain: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.render}", file=sys.stderr if args.dot else sys.stdout)
    return 0
