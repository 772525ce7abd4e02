"""A recorded step as a plan: buffers allocated once, and flat lists of steps for the
forward and the backward that write into them (each op's steps come from lowerings.py).

On the compiled backend the steps become one Program (csrc/_plan.pxi): records that call
the eager ops' own loops, executed in one compiled loop with the GIL released, and the
ops without a record as Python calls between them. On the reference backend every step
is a Python call into the reference kernels, so the oracle checks the plan too.

`Plan(...)` raises `Unsupported`, naming the op or the reason, for a step it cannot
replay; the compiled step then runs eagerly. The backward's calls follow eager
backward()'s order, and each gradient buffer is overwritten by its first write of a pass
and added into by the others, as grad_slot() decides in the eager graph.
"""
from __future__ import annotations

import math
import numbers
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..tensor import Tensor, _topological_order

Call = Callable[[], None]


class Record:
    """A step of the compiled Program: `Program.<method>(*args)` appends it."""

    __slots__ = ("method", "args")

    def __init__(self, method: str, *args: object) -> None:
        self.method, self.args = method, args


Step = Union[Call, Record]


class Unsupported(Exception):
    """The plan cannot replay this step; the message names the op or the reason."""


class Node:
    """One recorded op: its result, parents, backward closure and name."""

    __slots__ = ("out", "parents", "backward", "op")

    def __init__(self, out: Tensor, parents: Sequence[Tensor], backward: Callable,
                 op: str) -> None:
        self.out, self.parents, self.backward, self.op = out, tuple(parents), backward, op


class Plan:
    """Buffers and steps for one input signature. `run()` replays forward and backward;
    `grads` pairs each leaf that requires grad with the buffer holding its gradient.
    `program` is the compiled Program on the compiled backend, else None: lowerings emit
    Records only when it exists."""

    def __init__(self, k: object, nodes: List[Node], inputs: List[Tensor], loss: Tensor):
        self.k = k
        self.value: Dict[int, np.ndarray] = {}  # id(tensor) -> the buffer of its value
        self.grad: Dict[int, np.ndarray] = {}   # id(tensor) -> the buffer of its gradient
        self.written: Dict[int, bool] = {}      # during build: gradient written yet?
        self.saved: Dict[Node, np.ndarray] = {}  # an op's forward values its backward reads
        self.program = new_program(k)
        self.updates: Any = None  # the optimizer's update records (updates.py), once made
        self.modules: Any = None  # the modules the recording called, as they were (compile)
        self.forward: List[Step] = []
        self.backward: List[Step] = []
        self.keep: List[Tensor] = []            # tensors whose ids key the dicts
        self.leaves: List[Tuple[Tensor, np.ndarray, bool]] = []  # with requires_grad
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
            steps = lower(self, node)
            self.forward.extend(steps if isinstance(steps, list) else [steps])
        if id(loss) not in self.value:
            raise Unsupported("the loss is not the result of an op on the inputs")
        self.loss = self.value[id(loss)]
        self._build_backward(nodes, loss, BACKWARDS)
        self.grads = [(t, self.grad[id(t)]) for t, _, _ in self.leaves
                      if id(t) in self.grad]
        if self.program is not None:
            self.program.inputs(*self.inputs)
            for step in self.forward + self.backward:
                _append(self.program, step, k)

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
        self.leaves.append((t, t.data, t.requires_grad))

    def grad_buffer(self, t: Tensor) -> np.ndarray:
        if id(t) not in self.grad:
            self.grad[id(t)] = np.zeros(t.data.shape, t.data.dtype)
        return self.grad[id(t)]

    def slot(self, t: Tensor) -> Tuple[np.ndarray, bool]:
        """(buffer, accumulate) for the next gradient written into `t`, as grad_slot()."""
        buffer = self.grad_buffer(t)
        accumulate = self.written.get(id(t), False)
        self.written[id(t)] = True
        return buffer, accumulate

    def scratch(self, like: np.ndarray, dtype: object = None) -> np.ndarray:
        return np.empty(like.shape, like.dtype if dtype is None else dtype)

    def native(self, *arrays: Optional[np.ndarray], outputs: Sequence[Any] = (),
               ndim: Optional[int] = None) -> bool:
        """Whether a Record may stand for the op on these arrays (inputs, then `outputs`):
        there is a Program, and every array is a C-contiguous, aligned ndarray of one
        dtype (of `ndim` dimensions when given), the outputs writable and overlapping no
        other array: the checks the backend makes on every call, made once here."""
        if self.program is None:
            return False
        given = [a for a in list(arrays) + list(outputs) if a is not None]
        if not given:
            return False
        dtype = given[0].dtype
        for a in given:
            if a.__class__ is not np.ndarray or a.dtype != dtype or \
                    not (a.flags.c_contiguous and a.flags.aligned) or \
                    (ndim is not None and a.ndim != ndim):
                return False
        for out in (o for o in outputs if o is not None):
            if not out.flags.writeable or any(
                    np.may_share_memory(out, a) for a in given if a is not out):
                return False
        return True

    def send(self, t: Tensor, g: np.ndarray) -> Step:
        """The step that adds gradient `g` (a buffer or view) into `t`, reducing the axes
        `t` was broadcast along as ops._common.send does."""
        out, accumulate = self.slot(t)
        shape = t.data.shape
        if g.shape == shape:
            if self.native(g, outputs=(out,)):
                return Record("copy", g, out, accumulate)
            if accumulate:
                return lambda: np.add(out, g, out=out)
            return lambda: np.copyto(out, g)
        lead = g.ndim - len(shape)
        k = self.k
        if len(shape) and lead > 0 and g.shape[lead:] == shape:
            rows = g.reshape(math.prod(g.shape[:lead]), t.data.size)
            flat = out.reshape(-1)
            if self.native(rows, outputs=(flat,)):
                return Record("bias_backward", rows, flat, accumulate)
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
        seed = self.grad_buffer(loss)
        self.written[id(loss)] = True
        seed_value = np.ones(loss.shape, loss.dtype)
        self.backward.append(Record("copy", seed_value, seed, False) if self.native(
            seed_value, outputs=(seed,)) else lambda: np.copyto(seed, seed_value))
        # eager backward()'s order, so gradients meeting at a fork add up in its order
        for tensor in reversed(_topological_order(loss)):
            node = by_id.get(id(tensor))
            if node is None:
                raise Unsupported(f"'{tensor._op}' (made outside the recorded step)")
            if id(tensor) in self.grad:
                self.backward.extend(backwards[node.op](self, node, self.grad[id(tensor)]))

    def run(self, *arrays: np.ndarray) -> None:
        """Replay the forward and the backward on `arrays` (of the recorded signature): the
        Program reads them in place where it may (Program.run), the Python steps from the
        inputs' buffers, into which they are copied."""
        if self.program is not None:
            self.program.run(*arrays)
            return
        for buffer, array in zip(self.inputs, arrays):
            np.copyto(buffer, array)
        for call in self.forward:
            call()  # type: ignore[operator]  (no Records without a Program)
        for call in self.backward:
            call()  # type: ignore[operator]


def new_program(k: object) -> Any:
    """A compiled Program on the compiled backend, else None."""
    linear = getattr(k, "_linear", None) if getattr(k, "name", "") == "cython" else None
    return None if linear is None else linear.Program()


def _append(program: Any, step: Step, k: object) -> None:
    if isinstance(step, Record):
        getattr(program, step.method)(*step.args)
    else:
        program.call(step, _arrays_held(step, k))


def _arrays_held(step: Call, k: object) -> Optional[List[np.ndarray]]:
    """Every array a lowering's Python step can reach: those its closure and default
    arguments hold, directly, in tuples, through a bound method, or through a function of
    cygrad's it holds. None where it holds anything else: the program then never reads
    the inputs in place. A library's function, a ufunc, a module, the kernels `k` and
    plain constants hold no plan buffer."""
    arrays: List[np.ndarray] = []
    pending: List[Any] = [step]
    seen = set()
    while pending:
        value = pending.pop()
        if isinstance(value, np.ndarray):
            arrays.append(value)
        elif isinstance(value, tuple):
            pending.extend(value)
        elif isinstance(value, types.FunctionType):
            ours = value is step or (value.__module__ or "").startswith("cygrad.")
            if ours and id(value) not in seen:
                seen.add(id(value))
                try:
                    pending.extend(c.cell_contents for c in value.__closure__ or ())
                except ValueError:  # a cell not yet filled
                    return None
                pending.extend(value.__defaults__ or ())
                pending.extend((value.__kwdefaults__ or {}).values())
        elif isinstance(value, (types.BuiltinMethodType, types.MethodType)):
            owner = value.__self__
            if not (owner is None or isinstance(owner, types.ModuleType)):
                pending.append(owner)  # a bound method reaches its object
            if isinstance(value, types.MethodType):
                pending.append(value.__func__)
        elif not (value is None or value is k or isinstance(value, (
                numbers.Number, str, np.generic, np.dtype, np.ufunc, types.ModuleType))):
            return None
    return arrays
