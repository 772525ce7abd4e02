"""A recorded step as a plan: buffers allocated once, and flat lists of calls for the
forward and the backward that write into them (each op's calls come from lowerings.py).

`Plan(...)` raises `Unsupported`, naming the op or the reason, for a step it cannot
replay; the compiled step then runs eagerly. The backward's calls follow eager
backward()'s order, and each gradient buffer is overwritten by its first write of a pass
and added into by the others, as grad_slot() decides in the eager graph.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence, Tuple

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
        from .lowerings import BACKWARDS, LOWERINGS  # here: lowerings.py builds on Plan
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
        self._build_backward(nodes, loss, BACKWARDS)
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
    def _build_backward(self, nodes: List[Node], loss: Tensor, backwards: dict) -> None:
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
                self.backward.extend(backwards[node.op](self, node, self.grad[id(tensor)]))

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
