"""Each op's replay: a forward that returns one call and a backward that returns a list
of calls, making the same kernel calls, in the same order, as the eager op (cygrad.ops,
cygrad.functional) and its backward, into the plan's buffers. An op's arguments that its
result does not show (a reduction's axes, a loss's reduction, a penalty's lambda) are read
from its backward's closure; the plan checks every replayed value and gradient against
the eager run when it is recorded, so a replay that does not reproduce its op is refused.
"""
from __future__ import annotations

import inspect
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .plan import Node, Plan, Record, Step, Unsupported


class _Closure(dict):
    """An op's backward's closure variables; a missing one makes the op unsupported (the
    step runs eagerly) rather than an error."""

    op = ""

    def __missing__(self, name: str) -> object:
        raise Unsupported(f"'{self.op}' (its argument '{name}' could not be read)")


def _nonlocals(node: Node) -> dict:
    names = _Closure(inspect.getclosurevars(node.backward).nonlocals)
    names.op = node.op
    return names



def _linear_forward(plan: Plan, node: Node) -> Step:
    k, value = plan.k, plan.value
    x, w = (value[id(p)] for p in node.parents[:2])
    b = value[id(node.parents[2])] if len(node.parents) == 3 else None
    y = value[id(node.out)]
    if plan.native(x, w, outputs=(y,), ndim=2) and (b is None or plan.native(b, y)):
        if b is None:
            return Record("product", x, w, y, False, True, False)
        return [Record("fill_rows", b, y), Record("product", x, w, y, False, True, True)]
    return lambda: k.linear_forward(x, w, b, out=y)


def _linear_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Step]:
    k, value = plan.k, plan.value
    x, w = (value[id(p)] for p in node.parents[:2])
    parents = list(node.parents) + [None] * (3 - len(node.parents))
    slots = [plan.slot(t) if t is not None and t.requires_grad else (None, False)
             for t in parents]
    accumulate = any(acc for _, acc in slots)
    fresh = [buffer for buffer, acc in slots if buffer is not None and not acc]
    grad_x, grad_w, grad_b = (buffer for buffer, _ in slots)
    calls: List[Step] = []
    if plan.native(g, x, w, outputs=(grad_x, grad_w), ndim=2) and (
            grad_b is None or plan.native(g, x, w, grad_x, grad_w, outputs=(grad_b,))):
        # one flag for all three, as the eager op: zero the ones this pass writes first
        if accumulate:
            calls += [Record("zero", buffer) for buffer in fresh]
        if grad_x is not None:  # grad_x (+)= g @ w
            calls.append(Record("product", g, w, grad_x, False, False, accumulate))
        if grad_w is not None:  # grad_w (+)= g.T @ x
            calls.append(Record("product", g, x, grad_w, True, False, accumulate))
        if grad_b is not None:
            calls.append(Record("bias_backward", g, grad_b, accumulate))
        return calls
    if accumulate:
        calls += [lambda buffer=buffer: buffer.fill(0) for buffer in fresh]
    calls.append(lambda: k.linear_backward(
        g, x, w, grad_x=grad_x, grad_w=grad_w, grad_b=grad_b, accumulate=accumulate,
        need_grad_x=grad_x is not None, need_grad_w=grad_w is not None,
        need_grad_b=grad_b is not None))
    return calls


# Above this many elements the eager element-wise kernels split the loop over threads; a
# Record runs on the calling thread, so larger ones stay calls into the backend.
_ONE_THREAD_MAX = 1 << 18


def _sigmoid_forward(plan: Plan, node: Node) -> Step:
    k, x, y = plan.k, plan.value[id(node.parents[0])], plan.value[id(node.out)]
    if y.size < _ONE_THREAD_MAX and plan.native(x, outputs=(y,)):
        return Record("sigmoid", x, y)
    return lambda: k.sigmoid_forward(x, out=y)


def _sigmoid_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Step]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    k, y = plan.k, plan.value[id(node.out)]
    out, accumulate = plan.slot(a)
    if out.size < _ONE_THREAD_MAX and plan.native(g, y, outputs=(out,)):
        return [Record("sigmoid_backward", g, y, out, accumulate)]
    return [lambda: k.sigmoid_backward(g, y, out=out, accumulate=accumulate)]


def _tanh_forward(plan: Plan, node: Node) -> Step:
    x, y = plan.value[id(node.parents[0])], plan.value[id(node.out)]
    return lambda: np.tanh(x, out=y)


def _tanh_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Step]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    y = plan.value[id(node.out)]
    t = plan.scratch(g)

    def local() -> None:  # g * (1 - y * y), as the eager op computes it
        np.multiply(y, y, out=t)
        np.subtract(1, t, out=t)
        np.multiply(g, t, out=t)
    return [local, plan.send(a, t)]


def _relu_forward(plan: Plan, node: Node) -> Step:
    x, y = plan.value[id(node.parents[0])], plan.value[id(node.out)]
    if plan.native(x, outputs=(y,)):
        return Record("relu", x, y)
    return lambda: np.maximum(x, 0, out=y)


def _relu_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Step]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    x = plan.value[id(a)]
    if plan.native(g, x, outputs=(plan.grad_buffer(a),)):
        out, accumulate = plan.slot(a)
        return [Record("relu_backward", g, x, out, accumulate)]
    t, mask = plan.scratch(g), plan.scratch(x, bool)

    def local() -> None:  # a mask, not a product: 0 * inf would be nan
        np.less_equal(x, 0, out=mask)
        np.copyto(t, g)
        np.copyto(t, 0, where=mask)
    return [local, plan.send(a, t)]


def _unary_forward(plan: Plan, node: Node) -> Step:
    x, y = plan.value[id(node.parents[0])], plan.value[id(node.out)]
    ufunc = np.exp if node.op == "exp" else np.negative
    return lambda: ufunc(x, out=y)


def _unary_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Step]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    t = plan.scratch(g)
    if node.op == "exp":  # g * e^a, reusing the output
        y = plan.value[id(node.out)]
        return [lambda: np.multiply(g, y, out=t), plan.send(a, t)]
    return [lambda: np.negative(g, out=t), plan.send(a, t)]


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}
_OPERATOR = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _elementwise(plan: Plan, op: str, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Step:
    """out = a (op) b: a Record for operands of out's shape (no broadcasting), else the
    ufunc; either way IEEE's one rounding per element, so the same bits."""
    if a.shape == b.shape == out.shape and plan.native(a, b, outputs=(out,)):
        return Record("binary", _OPERATOR[op], a, b, out)
    ufunc = _BINARY[op]
    return lambda: ufunc(a, b, out=out)


def _binary_forward(plan: Plan, node: Node) -> Step:
    a, b = (plan.value[id(p)] for p in node.parents)
    return _elementwise(plan, node.op, a, b, plan.value[id(node.out)])


def _binary_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Step]:
    a, b = node.parents
    calls: List[Step] = []
    for first, (t, other) in ((True, (a, b)), (False, (b, a))):  # x * x: t is both
        if not t.requires_grad:
            continue
        if node.op == "add" or (node.op == "sub" and first):
            calls.append(plan.send(t, g))
            continue
        scratch = plan.scratch(g)
        if node.op == "sub":
            calls.append(lambda s=scratch: np.negative(g, out=s))
        elif node.op == "div" and first:  # d(a/b)/da = 1/b
            calls.append(_elementwise(plan, "div", g, plan.value[id(other)], scratch))
        elif node.op == "div":  # d(a/b)/db = -a/b^2, as eager: (-g * out) / b
            y = plan.value[id(node.out)]

            def local(s=scratch, b=plan.value[id(t)], y=y) -> None:
                np.negative(g, out=s)
                np.multiply(s, y, out=s)
                np.divide(s, b, out=s)
            calls.append(local)
        else:  # d(ab)/da = b
            calls.append(_elementwise(plan, "mul", g, plan.value[id(other)], scratch))
        calls.append(plan.send(t, scratch))
    return calls


def _reduction_forward(plan: Plan, node: Node) -> Step:
    names = _nonlocals(node)
    axes, keepdim = names["axes"], names["keepdim"]
    if node.op == "mean" and not names["count"]:
        raise Unsupported("'mean' over no elements")
    x, y = plan.value[id(node.parents[0])], plan.value[id(node.out)]
    reduce = np.sum if node.op == "sum" else np.mean
    return lambda: reduce(x, axis=axes, keepdims=keepdim, out=y)


def _reduction_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Step]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    names = _nonlocals(node)
    axes, keepdim = names["axes"], names["keepdim"]
    calls: List[Step] = []
    share = g
    if node.op == "mean":
        count = np.asarray(names["count"], dtype=g.dtype)
        share = plan.scratch(g)
        calls.append(lambda: np.divide(g, count, out=share))
    expanded = share if keepdim else np.expand_dims(share, axes)
    calls.append(plan.send(a, np.broadcast_to(expanded, a.data.shape)))
    return calls


def _mse_parts(plan: Plan, node: Node) -> tuple:
    names = _nonlocals(node)
    reduction, n = names["reduction"], names["n"]
    input, target = node.parents
    if reduction not in ("mean", "sum") or not n or input.dtype != target.dtype:
        raise Unsupported(f"'mse_loss' with reduction={reduction!r} or mixed dtypes")
    return input, target, reduction, n


def _mse_forward(plan: Plan, node: Node) -> Step:
    input, target, reduction, n = _mse_parts(plan, node)
    x, t, y = plan.value[id(input)], plan.value[id(target)], plan.value[id(node.out)]
    diff = plan.saved[node] = plan.scratch(x)  # kept for the backward
    if x.shape == t.shape and plan.native(x, t, outputs=(diff, y)):
        return Record("mse", x, t, diff, y, reduction == "mean")

    def forward() -> None:
        np.subtract(x, t, out=diff)
        total = np.vdot(diff, diff)
        y[...] = total / n if reduction == "mean" else total
    return forward


def _mse_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Step]:
    input, target, reduction, n = _mse_parts(plan, node)
    diff = plan.saved[node]
    if all(not t.requires_grad or (t.data.shape == diff.shape and plan.native(
            g, diff, outputs=(plan.grad_buffer(t),))) for t in (input, target)):
        records: List[Step] = []
        for t, factor in ((input, 2.0), (target, -2.0)):
            if t.requires_grad:  # (±2 * diff) * (g / n), as eager
                out, accumulate = plan.slot(t)
                records.append(Record("mse_backward", g, diff, out, factor,
                                      reduction == "mean", accumulate))
        return records
    scale = plan.scratch(g)
    calls: List[Step] = [lambda: np.divide(g, n, out=scale) if reduction == "mean"
                         else np.copyto(scale, g)]
    for t, factor in ((input, 2), (target, -2)):
        if t.requires_grad:
            s = plan.scratch(diff)

            def local(s=s, factor=factor) -> None:  # (±2 * diff) * scale, as eager
                np.multiply(factor, diff, out=s)
                np.multiply(s, scale, out=s)
            calls += [local, plan.send(t, s)]
    return calls


def _l2_forward(plan: Plan, node: Node) -> Step:
    lam = _nonlocals(node)["lam"]
    arrays = [plan.value[id(p)] for p in node.parents]
    y = plan.value[id(node.out)]

    def forward() -> None:
        y[...] = lam / 2 * sum(float(np.vdot(p, p)) for p in arrays)
    return forward


def _l2_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Step]:
    lam = _nonlocals(node)["lam"]
    calls: List[Step] = []
    for p in node.parents:
        if p.requires_grad:
            data, s = plan.value[id(p)], plan.scratch(p.data)
            calls.append(lambda data=data, s=s: np.multiply(
                (g * lam).astype(s.dtype), data, out=s))
            calls.append(plan.send(p, s))
    return calls


def _detach_forward(plan: Plan, node: Node) -> List[Step]:
    """`t.detach()` or `Tensor(t)`: t's value, cut from the graph. Where the eager result
    shares t's memory (the same dtype), the plan's is t's buffer too."""
    if node.out.requires_grad:
        raise Unsupported("a tensor made from another's value with requires_grad=True")
    source = node.parents[0]
    x = plan.value[id(source)]
    if np.shares_memory(node.out.data, source.data):
        plan.value[id(node.out)] = x
        return []
    y = plan.value[id(node.out)]
    return [lambda: np.copyto(y, x, casting="unsafe")]


LOWERINGS: Dict[str, Callable[[Plan, Node], Step]] = {
    "linear": _linear_forward, "sigmoid": _sigmoid_forward, "tanh": _tanh_forward,
    "relu": _relu_forward, "add": _binary_forward, "sub": _binary_forward,
    "mul": _binary_forward, "div": _binary_forward, "neg": _unary_forward,
    "exp": _unary_forward, "sum": _reduction_forward, "mean": _reduction_forward,
    "mse_loss": _mse_forward, "l2_penalty": _l2_forward, "detach": _detach_forward,
}
BACKWARDS: Dict[str, Callable[[Plan, Node, np.ndarray], List[Step]]] = {
    "linear": _linear_backward, "sigmoid": _sigmoid_backward, "tanh": _tanh_backward,
    "relu": _relu_backward, "add": _binary_backward, "sub": _binary_backward,
    "mul": _binary_backward, "div": _binary_backward, "neg": _unary_backward,
    "exp": _unary_backward, "sum": _reduction_backward, "mean": _reduction_backward,
    "mse_loss": _mse_backward, "l2_penalty": _l2_backward,
}
