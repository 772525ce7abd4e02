"""The compiled training step: `step = cg.compile(loss_fn, optimizer)` records
`loss_fn`'s graph once per input signature and replays it as a plan (plan.py): the same
kernel calls into buffers allocated at record time, with no Tensor, closure or graph walk
per step.

A call is, with an optimizer: `optimizer.zero_grad(); loss = loss_fn(*inputs);
loss.backward(); optimizer.step()`; without one: `loss = loss_fn(*inputs);
loss.backward()` (gradients accumulate into `.grad`, as backward() does). It returns the
loss as a Tensor that requires no grad. docs/compile.md has the whole contract.
"""
from __future__ import annotations

import threading
import warnings
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .. import backends, creation
from .. import tensor as _tensor
from ..nn import module as _module
from ..nn.module import Module
from ..tensor import Tensor, is_grad_enabled
from .plan import Node, Plan, Unsupported
from .updates import updates_for

__all__ = ["compile", "CompiledStep", "CompileWarning"]

# Tensor methods that hand a value to Python: a branch on it would be frozen into the plan
_VALUE_READS = ("item", "tolist", "__array__", "numpy", "__bool__", "__float__",
                "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__")
_EAGER = object()  # the cache entry of a signature that runs eagerly
_recording: Optional["_Recording"] = None  # the step being recorded, by any thread


class CompileWarning(UserWarning):
    """A compiled step runs eagerly: the warning names the op it cannot replay."""


class _Recording:
    """Records every op run by this thread while active and the modules called, and notes
    what a replay could not repeat: a read of a tensor's value (a data-dependent branch),
    random numbers drawn. The first one is the `reason` the step is not replayed."""

    _lock = threading.Lock()  # the recorder hook and the patched methods are global

    def __init__(self) -> None:
        self.nodes: List[Node] = []
        self.reason: Optional[str] = None
        self.modules: List[Module] = []
        self.thread = threading.get_ident()

    def __enter__(self) -> "_Recording":
        global _recording
        self._lock.acquire()
        _recording = self
        self.saved = {name: getattr(Tensor, name) for name in _VALUE_READS}
        for name, method in self.saved.items():
            setattr(Tensor, name, self._guard(name, method))
        self.module_call = Module.__call__
        Module.__call__ = self._note_calls(self.module_call)  # type: ignore[method-assign]
        creation.on_draw = self._drew
        _tensor._recorder = self._record
        return self

    def __exit__(self, *exc: object) -> None:
        global _recording
        _recording = None
        _tensor._recorder = None
        creation.on_draw = None
        Module.__call__ = self.module_call  # type: ignore[method-assign]
        for name, method in self.saved.items():
            setattr(Tensor, name, method)
        self._lock.release()

    def _record(self, out: Tensor, parents: Any, backward: Callable, op: str) -> None:
        if threading.get_ident() == self.thread:
            self.nodes.append(Node(out, parents, backward, op))

    def _drew(self, op: str) -> None:
        self._refuse(f"cg.{op} (random numbers drawn during the step, which a replay "
                     "would repeat)")

    def _refuse(self, reason: str) -> None:
        if self.reason is None and threading.get_ident() == self.thread:
            self.reason = reason

    def _note_calls(self, call: Callable) -> Callable:
        recording = self

        def noted(module: Module, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == recording.thread:
                recording.modules.append(module)
            return call(module, *args, **kwargs)
        return noted

    def _guard(self, name: str, method: Callable) -> Callable:
        recording = self

        def guarded(*args: Any, **kwargs: Any) -> Any:
            recording._refuse(f"Tensor.{name} (a read of a value during the step)")
            return method(*args, **kwargs)
        return guarded


class _Modules:
    """The modules a recording called and every module under them, as they were: each
    one's attributes (its training flag, parameters, submodules, settings) and its
    container's contents, compared by identity. The comparison runs again only once some
    module has changed since (nn.module counts the changes)."""

    def __init__(self, called: List[Module]) -> None:
        self.modules: List[Module] = []
        seen = set()
        for top in called:
            if id(top) in seen:  # and so is every module under it
                continue
            for module in top.modules():
                if id(module) not in seen:
                    seen.add(id(module))
                    self.modules.append(module)
        self.state = [_state(m) for m in self.modules]
        self.changes = _module.changes

    def unchanged(self) -> bool:
        """Whether every module is as it was (then the current count is noted)."""
        for module, before in zip(self.modules, self.state):
            now = _state(module)
            if len(now) != len(before) or any(a is not b for a, b in zip(now, before)):
                return False
        self.changes = _module.changes
        return True


def _state(module: Module) -> list:
    """A module's attribute names and values, then its container's items."""
    state: list = []
    for name, value in vars(module).items():
        state += (name, value)
    storage = getattr(module, module._storage) if module._storage else ()
    if isinstance(storage, dict):
        for key, value in storage.items():
            state += (key, value)
    else:
        state += storage
    return state


def _close(plan_value: np.ndarray, eager: np.ndarray) -> bool:
    if plan_value.shape != eager.shape:
        return False
    scale = float(np.max(np.abs(eager), initial=0.0, where=np.isfinite(eager)))
    rtol = 1e-4 if eager.dtype == np.float32 else 1e-9
    return bool(np.allclose(plan_value, eager, rtol=rtol, atol=rtol * scale, equal_nan=True))


class CompiledStep:
    """`loss_fn` compiled with `optimizer`; call it with the inputs. See `compile`."""

    def __init__(self, fn: Callable[..., Tensor], optimizer: Any = None,
                 strict: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"fn: expected a callable returning a scalar loss Tensor, got "
                            f"{type(fn).__name__}")
        if optimizer is not None and not (hasattr(optimizer, "step")
                                           and hasattr(optimizer, "param_groups")):
            raise TypeError(f"optimizer: expected a cygrad.optim optimizer or None, got "
                            f"{type(optimizer).__name__}")
        self.fn, self.optimizer, self.strict = fn, optimizer, bool(strict)
        self._plans: Dict[tuple, Any] = {}

    # -- calling --------------------------------------------------------------------------
    def __call__(self, *inputs: Any) -> Tensor:
        recording = _recording  # another thread's waits for the lock, in _record
        if recording is not None and recording.thread == threading.get_ident():
            raise RuntimeError("cg.compile: a compiled step was called while a step is "
                               "being recorded: call the model's forward inside fn, not "
                               "another compiled step")
        arrays, signature = [], []
        for i, x in enumerate(inputs):
            if x.__class__ is not np.ndarray or x.dtype.char not in "fd":
                x = _as_input(i, x)
            arrays.append(x)
            signature.append((x.shape, x.dtype))
        key = (backends.active(), is_grad_enabled(), tuple(signature))
        plan = self._plans.get(key)
        if plan is None:
            return self._record(key, arrays)
        if plan is _EAGER:
            return self._eager(arrays)
        for t, array, requires_grad in plan.leaves:
            # a parameter's array replaced, or a layer frozen or unfrozen: record again
            if t.data is not array or t.requires_grad != requires_grad:
                return self._record(key, arrays)
        modules = plan.modules
        if modules.changes != _module.changes and not modules.unchanged():
            return self._record(key, arrays)  # a module's attribute or contents changed
        plan.run(*arrays)
        self._deliver(plan)
        return Tensor._of(plan.loss.copy())

    def _deliver(self, plan: Plan) -> None:
        """Hand the gradients to the leaves (as backward() would), then step."""
        if self.optimizer is None:
            for t, g in plan.grads:
                t.add_grad(g)
            return
        optimizer = self.optimizer
        updates = updates_for(optimizer, plan)
        # The records read the gradients' buffers; zero_grad() would clear nothing that
        # is not set again below.
        stepped = updates.step(optimizer)
        if not stepped:
            optimizer.zero_grad()
        else:
            for t in updates.ungraded:
                t.grad = None
        for t, g in updates.cleared:
            t.grad = g
        for t, g in updates.accumulated:  # leaves outside the optimizer
            t.add_grad(g)
        if not stepped:
            optimizer.step()

    def _eager(self, arrays: List[np.ndarray]) -> Tensor:
        if self.optimizer is not None:
            self.optimizer.zero_grad()
        loss = self.fn(*(Tensor(a) for a in arrays))
        _check_loss(loss)
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
        return loss.detach()

    # -- recording ------------------------------------------------------------------------
    def _record(self, key: tuple, arrays: List[np.ndarray]) -> Tensor:
        """Run the step eagerly while recording it, build its plan and check the plan
        against the eager values and gradients; the step itself is the eager one."""
        if self.optimizer is not None:
            self.optimizer.zero_grad()
        inputs = [Tensor(a) for a in arrays]
        with _Recording() as recording:
            loss = self.fn(*inputs)
        _check_loss(loss)
        plan, reason = None, recording.reason
        if reason is None:
            try:
                plan = Plan(backends.active(), recording.nodes, inputs, loss)
                plan.run(*arrays)
            except Unsupported as exc:
                reason = str(exc)
        if plan is not None:
            reason = _mismatch(plan, recording.nodes, loss)
        before = {id(t): None if t.grad is None else t.grad.copy()
                  for t, _ in (plan.grads if plan is not None else ())}
        loss.backward()
        if plan is not None and reason is None:
            for t, g in plan.grads:
                old = before[id(t)]
                eager = t.grad if old is None else t.grad - old
                if not _close(g, eager):
                    reason = "a gradient that the plan does not reproduce"
                    break
        if self.optimizer is not None:
            self.optimizer.step()
        if reason is not None:
            self._give_up(key, reason)
        else:
            plan.modules = _Modules(recording.modules)
            self._plans[key] = plan
        return loss.detach()

    def _give_up(self, key: tuple, reason: str) -> None:
        message = (f"cg.compile: {getattr(self.fn, '__name__', 'fn')} cannot be replayed as "
                   f"a plan because of {reason}; it runs eagerly (same results, no speed-up)")
        if self.strict:
            raise RuntimeError(message + ". Pass strict=False to run it eagerly, or "
                               "rewrite the step without it")
        warnings.warn(message, CompileWarning, stacklevel=4)
        self._plans[key] = _EAGER

    def __repr__(self) -> str:
        return f"CompiledStep({getattr(self.fn, '__name__', self.fn)!r}, " \
               f"optimizer={type(self.optimizer).__name__ if self.optimizer else None})"


def compile(fn: Callable[..., Tensor], optimizer: Any = None,  # noqa: A001 (torch.compile)
            strict: bool = False) -> CompiledStep:
    """A training step that records `fn`'s graph once per input signature (shapes, dtypes,
    backend) and replays it as a plan.

    `fn(*inputs)` returns a single-element loss Tensor built from the model's parameters.
    With `optimizer`, a call is `optimizer.zero_grad(); loss = fn(*inputs);
    loss.backward(); optimizer.step()`; without, `loss = fn(*inputs); loss.backward()`
    (gradients accumulate in `.grad`). Returns the loss (requires_grad=False).

    A step the plan cannot replay (an op without a lowering, a read of a value such as
    `.item()` during the step) runs eagerly after one CompileWarning naming the op, or
    raises RuntimeError with `strict=True`.
    """
    return CompiledStep(fn, optimizer, strict)


def _as_input(index: int, x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        if x.requires_grad:
            raise ValueError(f"inputs[{index}]: a compiled step's inputs must not require "
                             f"grad (the plan computes the parameters' gradients): pass "
                             f"x.detach() or the array")
        return x.data
    array = x if x.__class__ is np.ndarray else np.asarray(x)
    if array.dtype.char not in "fd":  # float32, float64; others as Tensor makes them
        return Tensor(array).data
    return array


def _check_loss(loss: Any) -> None:
    if not isinstance(loss, Tensor) or loss.data.size != 1:
        what = f"shape {loss.shape}" if isinstance(loss, Tensor) else type(loss).__name__
        raise TypeError(f"fn: expected it to return a single-element loss Tensor, got {what}")


def _mismatch(plan: Plan, nodes: List[Node], loss: Tensor) -> Optional[str]:
    for node in nodes:
        if not _close(plan.value[id(node.out)], node.out.data):
            return f"'{node.op}' (its replayed value differs from the eager one)"
    return None
