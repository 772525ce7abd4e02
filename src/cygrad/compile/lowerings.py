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

from .plan import Call, Node, Plan, Unsupported


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



def _compiled(plan: Plan, inputs: Sequence[Optional[np.ndarray]],
              outputs: Sequence[Optional[np.ndarray]], name: str) -> Optional[object]:
    """The cython backend's compiled module (`name`: '_linear' or '_elementwise') when
    every array is 2-D, C-contiguous, aligned, of one dtype and no output overlaps
    another array: the checks the backend makes on every call, made once here (the
    arrays are fixed for the plan's life), so a replay calls the loop directly, exactly
    as the backend's fast path does. None otherwise: the replay calls the backend."""
    module = getattr(plan.k, name, None) if getattr(plan.k, "name", "") == "cython" else None
    arrays = [a for a in list(inputs) + list(outputs) if a is not None]
    if module is None or not arrays:
        return None
    dtype = arrays[0].dtype
    for a in arrays:
        if a.__class__ is not np.ndarray or a.dtype != dtype or a.ndim != 2 \
                or not (a.flags.c_contiguous and a.flags.aligned):
            return None
    for out in (o for o in outputs if o is not None):
        if not out.flags.writeable:
            return None
        others = [a for a in arrays if a is not out]
        if any(np.may_share_memory(out, a) for a in others):
            return None
    return module


def _linear_forward(plan: Plan, node: Node) -> Call:
    k, value = plan.k, plan.value
    x, w = (value[id(p)] for p in node.parents[:2])
    b = value[id(node.parents[2])] if len(node.parents) == 3 else None
    y = value[id(node.out)]
    direct = _compiled(plan, (x, w), (y,), "_linear")
    if direct is not None and (b is None or (b.dtype == y.dtype and b.ndim == 1 and
                                             b.flags.c_contiguous and b.flags.aligned)):
        return lambda: direct.linear_forward(x, w, b, y)
    return lambda: k.linear_forward(x, w, b, out=y)


def _linear_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
    k, value = plan.k, plan.value
    x, w = (value[id(p)] for p in node.parents[:2])
    parents = list(node.parents) + [None] * (3 - len(node.parents))
    slots = [plan.slot(t) if t is not None and t.requires_grad else (None, False)
             for t in parents]
    accumulate = any(acc for _, acc in slots)
    fresh = [buffer for buffer, acc in slots if buffer is not None and not acc]
    grad_x, grad_w, grad_b = (buffer for buffer, _ in slots)
    calls: List[Call] = []
    if accumulate:  # one flag for all three: zero the ones this pass writes first
        calls += [lambda buffer=buffer: buffer.fill(0) for buffer in fresh]
    direct = _compiled(plan, (g, x, w), (grad_x, grad_w), "_linear")
    if direct is not None and (grad_b is None or not any(
            np.may_share_memory(grad_b, a) for a in (g, x, w, grad_x, grad_w)
            if a is not None)):
        calls.append(lambda: direct.linear_backward(g, x, w, grad_x, grad_w, accumulate))
        if grad_b is not None:
            calls.append(lambda: direct.bias_backward(g, grad_b, accumulate))
        return calls
    calls.append(lambda: k.linear_backward(
        g, x, w, grad_x=grad_x, grad_w=grad_w, grad_b=grad_b, accumulate=accumulate,
        need_grad_x=grad_x is not None, need_grad_w=grad_w is not None,
        need_grad_b=grad_b is not None))
    return calls


def _sigmoid_forward(plan: Plan, node: Node) -> Call:
    k, x, y = plan.k, plan.value[id(node.parents[0])], plan.value[id(node.out)]
    direct = _compiled(plan, (x,), (y,), "_elementwise")
    if direct is not None:
        return lambda: direct.sigmoid_forward(x, y)
    return lambda: k.sigmoid_forward(x, out=y)


def _sigmoid_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    k, y = plan.k, plan.value[id(node.out)]
    out, accumulate = plan.slot(a)
    direct = _compiled(plan, (g, y), (out,), "_elementwise")
    if direct is not None:
        return [lambda: direct.sigmoid_backward(g, y, out, accumulate)]
    return [lambda: k.sigmoid_backward(g, y, out=out, accumulate=accumulate)]


def _tanh_forward(plan: Plan, node: Node) -> Call:
    x, y = plan.value[id(node.parents[0])], plan.value[id(node.out)]
    return lambda: np.tanh(x, out=y)


def _tanh_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
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


def _relu_forward(plan: Plan, node: Node) -> Call:
    x, y = plan.value[id(node.parents[0])], plan.value[id(node.out)]
    return lambda: np.maximum(x, 0, out=y)


def _relu_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    x = plan.value[id(a)]
    t, mask = plan.scratch(g), plan.scratch(x, bool)

    def local() -> None:  # a mask, not a product: 0 * inf would be nan
        np.less_equal(x, 0, out=mask)
        np.copyto(t, g)
        np.copyto(t, 0, where=mask)
    return [local, plan.send(a, t)]


def _unary_forward(plan: Plan, node: Node) -> Call:
    x, y = plan.value[id(node.parents[0])], plan.value[id(node.out)]
    ufunc = np.exp if node.op == "exp" else np.negative
    return lambda: ufunc(x, out=y)


def _unary_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    t = plan.scratch(g)
    if node.op == "exp":  # g * e^a, reusing the output
        y = plan.value[id(node.out)]
        return [lambda: np.multiply(g, y, out=t), plan.send(a, t)]
    return [lambda: np.negative(g, out=t), plan.send(a, t)]


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def _binary_forward(plan: Plan, node: Node) -> Call:
    a, b = (plan.value[id(p)] for p in node.parents)
    y, ufunc = plan.value[id(node.out)], _BINARY[node.op]
    return lambda: ufunc(a, b, out=y)


def _binary_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
    a, b = node.parents
    calls: List[Call] = []
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
            o = plan.value[id(other)]
            calls.append(lambda s=scratch, o=o: np.divide(g, o, out=s))
        elif node.op == "div":  # d(a/b)/db = -a/b^2, as eager: (-g * out) / b
            y = plan.value[id(node.out)]

            def local(s=scratch, b=plan.value[id(t)], y=y) -> None:
                np.negative(g, out=s)
                np.multiply(s, y, out=s)
                np.divide(s, b, out=s)
            calls.append(local)
        else:  # d(ab)/da = b
            o = plan.value[id(other)]
            calls.append(lambda s=scratch, o=o: np.multiply(g, o, out=s))
        calls.append(plan.send(t, scratch))
    return calls


def _reduction_forward(plan: Plan, node: Node) -> Call:
    names = _nonlocals(node)
    axes, keepdim = names["axes"], names["keepdim"]
    if node.op == "mean" and not names["count"]:
        raise Unsupported("'mean' over no elements")
    x, y = plan.value[id(node.parents[0])], plan.value[id(node.out)]
    reduce = np.sum if node.op == "sum" else np.mean
    return lambda: reduce(x, axis=axes, keepdims=keepdim, out=y)


def _reduction_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    names = _nonlocals(node)
    axes, keepdim = names["axes"], names["keepdim"]
    calls: List[Call] = []
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


def _mse_forward(plan: Plan, node: Node) -> Call:
    input, target, reduction, n = _mse_parts(plan, node)
    x, t, y = plan.value[id(input)], plan.value[id(target)], plan.value[id(node.out)]
    diff = plan.saved[node] = plan.scratch(x)  # kept for the backward

    def forward() -> None:
        np.subtract(x, t, out=diff)
        total = np.vdot(diff, diff)
        y[...] = total / n if reduction == "mean" else total
    return forward


def _mse_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
    input, target, reduction, n = _mse_parts(plan, node)
    diff = plan.saved[node]
    scale = plan.scratch(g)
    calls: List[Call] = [lambda: np.divide(g, n, out=scale) if reduction == "mean"
                         else np.copyto(scale, g)]
    for t, factor in ((input, 2), (target, -2)):
        if t.requires_grad:
            s = plan.scratch(diff)

            def local(s=s, factor=factor) -> None:  # (±2 * diff) * scale, as eager
                np.multiply(factor, diff, out=s)
                np.multiply(s, scale, out=s)
            calls += [local, plan.send(t, s)]
    return calls


def _l2_forward(plan: Plan, node: Node) -> Call:
    lam = _nonlocals(node)["lam"]
    arrays = [plan.value[id(p)] for p in node.parents]
    y = plan.value[id(node.out)]

    def forward() -> None:
        y[...] = lam / 2 * sum(float(np.vdot(p, p)) for p in arrays)
    return forward


def _l2_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
    lam = _nonlocals(node)["lam"]
    calls: List[Call] = []
    for p in node.parents:
        if p.requires_grad:
            data, s = plan.value[id(p)], plan.scratch(p.data)
            calls.append(lambda data=data, s=s: np.multiply(
                (g * lam).astype(s.dtype), data, out=s))
            calls.append(plan.send(p, s))
    return calls


LOWERINGS: Dict[str, Callable[[Plan, Node], Call]] = {
    "linear": _linear_forward, "sigmoid": _sigmoid_forward, "tanh": _tanh_forward,
    "relu": _relu_forward, "add": _binary_forward, "sub": _binary_forward,
    "mul": _binary_forward, "div": _binary_forward, "neg": _unary_forward,
    "exp": _unary_forward, "sum": _reduction_forward, "mean": _reduction_forward,
    "mse_loss": _mse_forward, "l2_penalty": _l2_forward,
}
BACKWARDS: Dict[str, Callable[[Plan, Node, np.ndarray], List[Call]]] = {
    "linear": _linear_backward, "sigmoid": _sigmoid_backward, "tanh": _tanh_backward,
    "relu": _relu_backward, "add": _binary_backward, "sub": _binary_backward,
    "mul": _binary_backward, "div": _binary_backward, "neg": _unary_backward,
    "exp": _unary_backward, "sum": _reduction_backward, "mean": _reduction_backward,
    "mse_loss": _mse_backward, "l2_penalty": _l2_backward,
}
