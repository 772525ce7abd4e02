"""Tensor: a NumPy array that records the operations applied to it, and backward().

The graph is a set of Tensors, each made by an op (cygrad.ops, cygrad.functional) that
stores its parents and a `backward(g)` closure. `backward()` visits the graph in reverse
topological order; each closure adds its contribution into its parents' gradient buffers,
so a value used in several places gets the sum of its gradients.
"""
from __future__ import annotations

import contextlib
import itertools
import operator
import threading
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_SMALL = 1024  # elements: below it, add_grad accumulates through a temporary


class _GradMode(threading.local):
    """Per thread, so no_grad in one thread leaves others recording. The class attribute
    is every thread's default: reading it never takes the missing-attribute path, which
    costs more than the rest of a small op's bookkeeping."""

    grad_enabled = True


_state = _GradMode()
# Creation order of op results: a node is always made after its parents, so sorting by
# it gives a topological order (as PyTorch's sequence numbers do).
_sequence = itertools.count()

Backward = Callable[[np.ndarray], None]
# cygrad.compile's recorder: called with (result, parents, backward, op) for every op while
# a step is being recorded, and with op "detach" (backward None) for a leaf made from
# another tensor's value; None otherwise, so an op pays one global lookup for it.
_recorder: Optional[Callable[..., None]] = None


def is_grad_enabled() -> bool:
    return _state.grad_enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Within the block, ops record nothing: results have requires_grad=False."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


def float_dtype(dtype: object) -> np.dtype:
    """`dtype` as a NumPy dtype, if it is float32 or float64 (the dtypes a Tensor has)."""
    try:
        result = np.dtype(dtype)
    except TypeError:
        result = None
    if result not in _FLOATS:
        raise TypeError(f"dtype: expected float32 or float64 (np.float32, np.float64 or "
                        f"their names), got {dtype!r}")
    return result


def _as_float_array(data: object, dtype: object = None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    try:
        array = np.asarray(data)
    except ValueError as exc:  # e.g. a ragged list
        raise TypeError(f"data: expected a number, list or array of real numbers: {exc}") \
            from None
    if array.dtype.kind not in "biuf":  # strings, bytes, complex, objects: no silent parse
        raise TypeError(f"data: expected a number, list or array of real numbers, "
                        f"got {type(data).__name__} of dtype {array.dtype}")
    if dtype is not None:
        return array.astype(float_dtype(dtype), copy=False)
    if array.dtype not in _FLOATS:  # ints, bools, float16, byte-swapped floats: float64
        array = array.astype(np.float64)
    return array


class Tensor:
    """An n-dimensional float32/float64 array that can record its gradient.

    `Tensor(data, requires_grad=False, dtype=None)`: `data` is a number, list, ndarray or
    Tensor. Without `dtype`, float32 and float64 arrays keep their dtype and their memory
    (no copy is made); everything else (Python numbers, lists, float16, integers, bools)
    becomes float64. `dtype` (float32 or float64) converts. Complex numbers, strings and
    objects are refused (TypeError). docs/dtypes.md has the whole policy.
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_op",
                 "_retains_grad", "_sequence", "__weakref__")
    # Make `ndarray + Tensor` call Tensor.__radd__ instead of broadcasting over the Tensor.
    __array_priority__ = 1000

    def __init__(self, data: object, requires_grad: bool = False, dtype: object = None):
        self.data: np.ndarray = _as_float_array(data, dtype)
        self.grad: Optional[np.ndarray] = None
        self.requires_grad = bool(requires_grad)
        self._parents: Tuple[Tensor, ...] = ()
        self._backward: Optional[Backward] = None
        self._op = ""  # "" for a leaf; an op's name otherwise
        self._retains_grad = False
        self._sequence = -1  # leaves are never ordered
        if _recorder is not None and isinstance(data, Tensor):
            _recorder(self, (data,), None, "detach")  # a replay must take data's new value

    @classmethod
    def _of(cls, data: np.ndarray) -> "Tensor":
        """A leaf over `data`, a float32 or float64 ndarray the caller vouches for: the
        constructor's conversions and checks skipped (a compiled step's loss)."""
        out = cls.__new__(cls)
        out.data, out.grad, out.requires_grad = data, None, False
        out._parents, out._backward, out._op = (), None, ""
        out._retains_grad, out._sequence = False, -1
        return out

    @classmethod
    def from_op(cls, data: np.ndarray, parents: Sequence["Tensor"], backward: Backward,
                op: str) -> "Tensor":
        """The result of an op: records `parents` and `backward` when a parent needs a
        gradient and recording is on. `backward(g)` receives dL/d(result) and must add
        each parent's gradient through `parent.grad_slot()` or `parent.add_grad()`."""
        out = cls.__new__(cls)
        # NumPy gives a scalar, not a 0-d array, for arithmetic on 0-d arrays
        out.data = data if type(data) is np.ndarray else np.asarray(data)
        out.grad = None
        out._retains_grad = False
        out._op = op
        out._sequence = next(_sequence)
        out.requires_grad = False
        out._parents = ()
        out._backward = None
        if _state.grad_enabled:
            for parent in parents:  # a loop, not any(): no generator for one or two parents
                if parent.requires_grad:
                    out.requires_grad = True
                    out._parents = tuple(parents)
                    out._backward = backward
                    break
        if _recorder is not None:
            _recorder(out, parents, backward, op)
        return out

    # -- array-like attributes ------------------------------------------------------------
    @property
    def shape(self) -> Tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        return not self._op

    def __len__(self) -> int:
        return len(self.data)

    def item(self) -> float:
        return self.data.item()

    def tolist(self) -> object:
        """The values as (nested lists of) Python floats; a 0-d tensor gives a float."""
        return self.data.tolist()

    def __array__(self, dtype: object = None, copy: Optional[bool] = None) -> np.ndarray:
        """NumPy's view of the tensor: `np.asarray(t)` is `t.data` (no copy), with the
        `dtype` and `copy` arguments as NumPy 2 passes them (copy=False refuses to copy).
        NumPy 1 passes no `copy`: its `np.array(t, copy=False)` means "copy only if
        needed", which NumPy itself applies to what this returns."""
        if dtype is None or np.dtype(dtype) == self.data.dtype:
            return self.data.copy() if copy else self.data
        if copy is False:
            raise ValueError(f"__array__: a {self.data.dtype} tensor cannot be seen as "
                             f"{np.dtype(dtype)} without a copy: pass copy=None or True")
        return self.data.astype(dtype)

    def float(self) -> "Tensor":
        """The tensor as float32 (itself if it is float32 already); differentiable."""
        return self.to(np.float32)

    def double(self) -> "Tensor":
        """The tensor as float64 (itself if it is float64 already); differentiable."""
        return self.to(np.float64)

    # Comparisons give boolean NumPy arrays, with no gradient: masks for indexing
    # (`t[t > 0]`). Equality is element-wise as in PyTorch, so hashing stays by identity.
    __hash__ = object.__hash__

    def __lt__(self, other: object) -> np.ndarray:
        return self.data < _operand(other)

    def __le__(self, other: object) -> np.ndarray:
        return self.data <= _operand(other)

    def __gt__(self, other: object) -> np.ndarray:
        return self.data > _operand(other)

    def __ge__(self, other: object) -> np.ndarray:
        return self.data >= _operand(other)

    def __eq__(self, other: object) -> np.ndarray:  # type: ignore[override]
        return self.data == _operand(other)

    def __ne__(self, other: object) -> np.ndarray:  # type: ignore[override]
        return self.data != _operand(other)

    def numpy(self) -> np.ndarray:
        return self.data

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor(self)

    def retain_grad(self) -> "Tensor":
        """Keep this intermediate's gradient in `.grad` after backward."""
        self._retains_grad = True
        return self

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if not self.is_leaf:
            raise RuntimeError("requires_grad_: only leaf tensors can change requires_grad")
        self.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def __repr__(self) -> str:
        extra = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        return f"Tensor({body}, dtype={self.dtype}{extra})"

    def __bool__(self) -> bool:
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.data)

    # -- gradient buffers -----------------------------------------------------------------
    def grad_slot(self) -> Tuple[np.ndarray, bool]:
        """(buffer, accumulate) for a kernel to write this tensor's gradient into: the
        existing gradient with accumulate=True, or a new buffer to overwrite."""
        grad = self.grad
        if grad is None:
            grad = self.grad = np.empty(self.data.shape, self.data.dtype)
            return grad, False
        if not (grad.flags.c_contiguous and grad.flags.writeable) or grad.dtype != self.dtype:
            grad = self.grad = np.array(grad, dtype=self.dtype, order="C")  # a user's .grad
        return grad, True

    def add_grad(self, value: np.ndarray, owned: bool = False) -> None:
        """Add `value` (of this tensor's shape, or one that broadcasts to it) into the
        gradient. `owned`: the caller hands the array over (nobody else holds it), so it
        can become the buffer."""
        grad = self.grad
        data = self.data
        if grad is None:
            if owned and type(value) is np.ndarray and value.dtype == data.dtype \
                    and value.shape == data.shape and value.flags.c_contiguous:
                self.grad = value
            else:
                grad = self.grad = np.empty(data.shape, data.dtype)
                grad[...] = value  # broadcasts and casts in one pass
            return
        flags = grad.flags
        if not (type(grad) is np.ndarray and grad.dtype == data.dtype and flags.writeable
                and flags.c_contiguous):
            grad, _ = self.grad_slot()  # a user's .grad: made a buffer of ours first
        if grad.size <= _SMALL:
            # NumPy's in-place add checks its output for overlap, which costs twice the
            # add itself on a few elements: a temporary and a copy back cost less.
            grad[...] = grad + value
        else:
            grad += value

    def _add_own_grad(self, value: np.ndarray, owned: bool = False) -> None:
        """add_grad for a `value` of exactly this tensor's shape and dtype (the gradient
        of an op on operands of one shape and dtype), without add_grad's shape and dtype
        checks: the first one is kept as it is when owned and C-contiguous, and a small
        one is added into the buffer here."""
        grad = self.grad
        if grad is None:
            if owned and value.__class__ is np.ndarray and value.flags.c_contiguous:
                self.grad = value
                return
        elif grad.__class__ is np.ndarray and grad.dtype is value.dtype \
                and grad.size <= _SMALL:
            flags = grad.flags
            if flags.c_contiguous and flags.writeable:  # a buffer add_grad would keep
                grad[...] = grad + value  # as add_grad adds a small gradient
                return
        self.add_grad(value, owned)

    # -- backward -------------------------------------------------------------------------
    def backward(self, grad: object = None, retain_graph: bool = False) -> None:
        """Compute the gradient of this tensor with respect to every tensor it came from
        that requires one, adding it into their `.grad`. `grad` is dL/d(this tensor); it
        may be omitted only for a single-element tensor (then it is 1)."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input "
                               "with requires_grad=True went into it, or it was made "
                               "under no_grad())")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be omitted only for a single-element"
                                   f" tensor; this one has shape {self.shape}: pass grad=")
            seed = np.empty(self.data.shape, self.data.dtype)
            seed.fill(1)
        else:
            seed = _as_float_array(grad, self.dtype)
            if seed.shape != self.shape:
                raise ValueError(f"grad: expected shape {self.shape}, got {seed.shape}")
        order = _topological_order(self)
        # Intermediates' .grad buffers carry this pass's gradients; one kept by
        # retain_grad() from an earlier pass must not flow again, so it waits aside.
        kept = {}
        for node in order:
            if node.grad is not None:
                kept[node], node.grad = node.grad, None
        self.add_grad(seed, owned=grad is None)
        for node in reversed(order):
            backward = node._backward
            if backward is None:
                raise RuntimeError(f"backward: the graph through '{node._op}' was already "
                                   "freed by an earlier backward(); pass retain_graph=True "
                                   "to the first call to go through it twice")
            g = node.grad
            if g is not None:
                backward(g)
            if not retain_graph:  # drop the saved forward values now
                node._backward = None
                node._parents = ()
            if not node._retains_grad:
                node.grad = None
            elif node in kept:
                node.grad = kept[node] if g is None else kept[node] + g

    # -- operators and methods: bound at import from the ops (cygrad.ops) -----------------


def _operand(value: object) -> object:
    return value.data if isinstance(value, Tensor) else value


def _topological_order(root: Tensor) -> List[Tensor]:
    """The op nodes (not leaves) that `root` depends on, each after all its parents: the
    nodes reached from `root`, in the order they were made (a parent is always made
    before its result). Iterative: a chain 100,000 ops deep does not hit the recursion
    limit. A node freed by backward() has no parents left; backward() reports it."""
    if not root._op:
        return []
    order = [root]
    seen = {root}  # Tensors hash by identity
    for node in order:  # `order` grows while it is read: a breadth-first walk
        for parent in node._parents:
            if parent._op and parent.requires_grad and parent not in seen:
                seen.add(parent)
                order.append(parent)
    order.sort(key=_made_at)
    return order


_made_at = operator.attrgetter("_sequence")


TensorLike = Union[Tensor, np.ndarray, float, int]
