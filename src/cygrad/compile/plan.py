"""A recorded step as a plan: buffers allocated once, and a flat list of kernel calls
for the forward and the backward that write into them.

`build(...)` lowers each recorded op to a forward call and a backward call that make the
same kernel calls, in the same order, as the eager op and its backward, so a replay gives
the eager result. An op without a lowering raises `Unsupported` (naming it), and the step
then runs eagerly. An op's arguments that its result does not show (a reduction's axes, a
loss's reduction, a penalty's lambda) are read from its backward's closure, and every
lowered value and gradient is checked against the eager run at record time, so a lowering
that does not reproduce the op is refused rather than replayed.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..tensor import Tensor, _topological_order

Call = Callable[[], None]


class Unsupported(Exception):
    """The plan cannot replay this step; the message names the op or the reason."""


class Node:
    """One recorded op: its result, parents, backward closure and name."""

    __slots__ = ("out", "parents", "backward", "op")

    def __init__(self, out: Tensor, parents: Sequence[Tensor], backward: Callable,
                 op: str) -> None:
        self.out, self.parents, self.backward, self.op = out, tuple(parents), backward, op


def _nonlocals(node: Node) -> dict:
    return inspect.getclosurevars(node.backward).nonlocals


class Plan:
    """Buffers and calls for one input signature. `run()` replays forward and backward;
    `grads` pairs each leaf that requires grad with the buffer holding its gradient."""

    def __init__(self, k: object, nodes: List[Node], inputs: List[Tensor], loss: Tensor):
        self.k = k
        self.value: Dict[int, np.ndarray] = {}  # id(tensor) -> the buffer of its value
        self.grad: Dict[int, np.ndarray] = {}   # id(tensor) -> the buffer of its gradient
        self.written: Dict[int, bool] = {}      # during build: gradient written yet?
        self.saved: Dict[Node, np.ndarray] = {}  # an op's forward values its backward reads
        self.forward: List[Call] = []
        self.backward: List[Call] = []
        self.keep: List[Tensor] = []            # tensors whose ids key the dicts
        self.leaves: List[Tuple[Tensor, np.ndarray]] = []
        self.inputs = [self._input(t) for t in inputs]
        for node in nodes:
            for p in node.parents:
                self._operand(p)
            if node.out._retains_grad:
                raise Unsupported(f"retain_grad() on the result of '{node.op}'")
            lower = LOWERINGS.get(node.op)
            if lower is None:
                raise Unsupported(f"'{node.op}'")
            self._own(node.out)
            self.value[id(node.out)] = np.empty_like(node.out.data)
            self.forward.append(lower(self, node))
        if id(loss) not in self.value:
            raise Unsupported("the loss is not the result of an op on the inputs")
        self.loss = self.value[id(loss)]
        self._build_backward(nodes, loss)
        self.grads = [(t, self.grad[id(t)]) for t, _ in self.leaves if id(t) in self.grad]
        # leaves whose update `data += alpha * grad` may call the compiled axpy directly
        self.axpy = getattr(k, "_linear", None) if getattr(k, "name", "") == "cython" \
            else None
        self.axpy_ids = {id(t) for t, g in self.grads if _writable_like(t.data, g)}

    # -- buffers ------------------------------------------------------------------------
    def _own(self, t: Tensor) -> None:
        self.keep.append(t)

    def _input(self, t: Tensor) -> np.ndarray:
        self._own(t)
        buffer = self.value[id(t)] = np.array(t.data, order="C")
        return buffer

    def _operand(self, t: Tensor) -> None:
        if id(t) in self.value:
            return
        if t._op:  # made by an op outside the recording: its value would go stale
            raise Unsupported(f"a tensor made by '{t._op}' before the step")
        self._own(t)
        self.value[id(t)] = t.data  # a leaf: read in place, so in-place edits are seen
        self.leaves.append((t, t.data))

    def _grad_buffer(self, t: Tensor) -> np.ndarray:
        if id(t) not in self.grad:
            self.grad[id(t)] = np.zeros(t.data.shape, t.data.dtype)
        return self.grad[id(t)]

    def slot(self, t: Tensor) -> Tuple[np.ndarray, bool]:
        """(buffer, accumulate) for the next gradient written into `t`, as grad_slot()."""
        buffer = self._grad_buffer(t)
        accumulate = self.written.get(id(t), False)
        self.written[id(t)] = True
        return buffer, accumulate

    def scratch(self, like: np.ndarray, dtype: object = None) -> np.ndarray:
        return np.empty(like.shape, like.dtype if dtype is None else dtype)

    def send(self, t: Tensor, g: np.ndarray) -> Call:
        """The call that adds gradient `g` (a buffer or view) into `t`, reducing the axes
        `t` was broadcast along as ops._common.send does."""
        out, accumulate = self.slot(t)
        shape = t.data.shape
        if g.shape == shape:
            if accumulate:
                return lambda: np.add(out, g, out=out)
            return lambda: np.copyto(out, g)
        lead = g.ndim - len(shape)
        k = self.k
        if len(shape) and lead > 0 and g.shape[lead:] == shape:
            rows = g.reshape(math.prod(g.shape[:lead]), t.data.size)
            flat = out.reshape(-1)
            return lambda: k.bias_backward(rows, out=flat, accumulate=accumulate)
        stretched = tuple(lead + i for i, n in enumerate(shape)
                          if n == 1 and g.shape[lead + i] != 1)
        axes = tuple(range(lead)) + stretched
        if accumulate:
            return lambda: np.add(out, g.sum(axis=axes).reshape(shape), out=out)
        return lambda: np.copyto(out, g.sum(axis=axes).reshape(shape))

    # -- backward -----------------------------------------------------------------------
    def _build_backward(self, nodes: List[Node], loss: Tensor) -> None:
        if not loss.requires_grad:
            raise Unsupported("the loss does not require grad")
        if loss.data.size != 1:
            raise Unsupported(f"the loss has shape {loss.shape}, not a single element")
        by_id = {id(n.out): n for n in nodes}
        seed = self._grad_buffer(loss)
        self.written[id(loss)] = True
        seed_value = np.ones(loss.shape, loss.dtype)
        self.backward.append(lambda: np.copyto(seed, seed_value))
        # eager backward()'s order, so gradients meeting at a fork add up in its order
        for tensor in reversed(_topological_order(loss)):
            node = by_id.get(id(tensor))
            if node is None:
                raise Unsupported(f"'{tensor._op}' (made outside the recorded step)")
            if id(tensor) in self.grad:
                self.backward.extend(BACKWARDS[node.op](self, node, self.grad[id(tensor)]))

    def run(self) -> None:
        for call in self.forward:
            call()
        for call in self.backward:
            call()


def _writable_like(data: np.ndarray, grad: np.ndarray) -> bool:
    flags = data.flags
    return data.__class__ is np.ndarray and data.dtype == grad.dtype and \
        flags.c_contiguous and flags.aligned and flags.writeable and \
        not np.may_share_memory(data, grad)


# -- lowerings: forward (returns one call) and backward (returns a list of calls) --------

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
    axes, keepdim = names["axes"], names.get("keepdim", False)
    x, y = plan.value[id(node.parents[0])], plan.value[id(node.out)]
    reduce = np.sum if node.op == "sum" else np.mean
    return lambda: reduce(x, axis=axes, keepdims=keepdim, out=y)


def _reduction_backward(plan: Plan, node: Node, g: np.ndarray) -> List[Call]:
    a = node.parents[0]
    if not a.requires_grad:
        return []
    names = _nonlocals(node)
    axes, keepdim = names["axes"], names.get("keepdim", False)
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
