"""The optimizers' common base: parameter groups, per-parameter state, state dicts.

Layout and semantics are PyTorch's (`torch.optim.Optimizer`): `param_groups` is a list of
dicts, each holding 'params' (a list of Tensors) and every hyperparameter; `state` maps a
parameter to a dict of its buffers (NumPy arrays) and counters (numbers).
"""
from __future__ import annotations

import math
import numbers
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from .. import backends
from ..tensor import Tensor

ParamsT = Union[Iterable[Tensor], Iterable[Dict[str, Any]]]


def check_number(name: str, value: Any, low: float = 0.0, high: float = math.inf,
                 high_included: bool = False) -> None:
    """Raise unless `value` is a real number in [low, high) (or [low, high])."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} "
                        f"{value!r}")
    if low <= value < high or (high_included and value == high):
        return
    if high == math.inf:
        expected = "a non-negative number" if low == 0 else f"a number >= {low}"
    else:
        expected = f"a number in [{low}, {high}{']' if high_included else ')'}"
    raise ValueError(f"{name}: expected {expected}, got {value!r}")


def _add_scaled_numpy(out: np.ndarray, x: np.ndarray, alpha: float) -> None:
    out += alpha * x


def add_scaled_kernel() -> Callable[[np.ndarray, np.ndarray, float], None]:
    """The active backend's `add_scaled(out, x, alpha)`: out += alpha * x in place, the
    update every optimizer ends with. Both built-in backends have it (the compiled one runs
    BLAS axpy: one pass, no temporary); it is optional for a registered backend, which
    without it gets NumPy's `out += alpha * x`."""
    backend = backends.active()
    if hasattr(backend, "add_scaled"):
        return backend.add_scaled
    return _add_scaled_numpy


def writable_param(data: np.ndarray) -> np.ndarray:
    """`data` itself when an update kernel can write it in place (C-contiguous, aligned,
    writable), else a C-ordered copy, which the caller writes back (`data[...] = copy`)."""
    return data if data.flags.carray else np.array(data, order="C")


def grad_like(grad: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The gradient in its parameter's dtype: a gradient set by hand may differ, and the
    update kernels take one dtype per call."""
    return grad if grad.dtype is data.dtype or grad.dtype == data.dtype else \
        grad.astype(data.dtype)


class Optimizer:
    """Base class: holds `param_groups`, `state` and `defaults`; subclasses define `step`
    and `_check_hyperparameters`.

    `params` is an iterable of Tensors (one group) or of dicts (one group each, every dict
    holding 'params' and optionally its own hyperparameters; the constructor's arguments
    are the defaults for the rest)."""

    def __init__(self, params: ParamsT, defaults: Dict[str, Any]):
        self._check_hyperparameters(defaults, "")
        self.defaults: Dict[str, Any] = dict(defaults)
        # As PyTorch's: `optimizer.state[p]` is {} for a parameter not stepped yet.
        self.state: Dict[Tensor, Dict[str, Any]] = defaultdict(dict)
        self.param_groups: List[Dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError("params: expected an iterable of Tensors or of dicts, got one "
                            "Tensor; pass a list: [tensor]")
        groups = list(params)
        if not groups:
            raise ValueError("params: expected at least one tensor (an empty list was given)")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _check_hyperparameters(self, group: Dict[str, Any], where: str) -> None:
        """Raise if one of `group`'s hyperparameters is out of range; `where` prefixes
        the message ("" for the constructor's arguments, else "param_groups[i]: ")."""
        if "lr" in group:
            check_number(f"{where}lr", group["lr"])

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a group: a dict holding 'params' and optionally hyperparameters, which
        default to the constructor's. A parameter may belong to one group only."""
        where = f"param_groups[{len(self.param_groups)}]"
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"{where}: expected a dict with a 'params' key, got "
                            f"{type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(f"{where}['params']: expected an ordered iterable of Tensors, "
                            "got a set (its order, and so the state dict's, changes from "
                            "run to run); pass a list")
        params = list(params)
        if not params:
            raise ValueError(f"{where}['params']: expected at least one tensor, got none")
        seen = {p for group in self.param_groups for p in group["params"]}
        for i, p in enumerate(params):
            # A frozen parameter (requires_grad=False) is accepted, as in PyTorch: it has
            # no gradient, so steps skip it until it is unfrozen.
            if not isinstance(p, Tensor):
                raise ValueError(f"{where}['params'][{i}]: expected a Tensor, got "
                                 f"{type(p).__name__}")
            if p in seen:
                raise ValueError(f"{where}['params'][{i}]: this parameter is already in a "
                                 "parameter group; each may appear once")
            seen.add(p)
        group = {"params": params}
        group.update((k, v) for k, v in param_group.items() if k != "params")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_hyperparameters(group, f"{where}: ")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set them to None (the default, as PyTorch's), or with
        `set_to_none=False` fill the existing arrays with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def _bad_grad(self, p: Tensor) -> ValueError:
        """The error for a gradient that is not an array of its parameter's shape (one set
        by hand: backward() always makes the right one)."""
        where = next(f"param_groups[{i}]['params'][{j}].grad"
                     for i, group in enumerate(self.param_groups)
                     for j, q in enumerate(group["params"]) if q is p)
        got = (f"shape {p.grad.shape}" if isinstance(p.grad, np.ndarray)
               else type(p.grad).__name__)
        return ValueError(f"{where}: expected an array of shape {p.shape} like its "
                          f"parameter, got {got}")

    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """Update every parameter that has a gradient; return `closure()` if given (it is
        called first: it recomputes the loss and its gradients)."""
        raise NotImplementedError

    # -- state dicts -------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """{'state': {index: {name: array or number}}, 'param_groups': [{..., 'params':
        [index, ...]}]}, PyTorch's layout: parameters are numbered in group order.

        Unlike PyTorch's, the arrays are copies: a saved state dict does not change as
        training goes on (with PyTorch it does, unless deep-copied)."""
        index: Dict[Tensor, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index[p] = len(index)
                packed["params"].append(index[p])
            groups.append(packed)
        state = {index[p]: {k: v.copy() if isinstance(v, np.ndarray) else v
                            for k, v in s.items()}
                 for p, s in self.state.items() if p in index and s}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore what `state_dict()` returned (also a `torch.optim` state dict whose
        tensors were turned into NumPy arrays). The groups must match this optimizer's in
        number and size; arrays are copied, cast to their parameter's dtype."""
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state_dict: expected a dict with keys 'state' and "
                             "'param_groups' (what Optimizer.state_dict() returns)")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict: holds {len(saved_groups)} parameter group(s), "
                             f"this optimizer has {len(self.param_groups)}; load a state "
                             "dict saved from an optimizer built with the same groups")
        by_index: Dict[int, Tensor] = {}
        groups = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            indices = list(saved.get("params", ()))
            if len(indices) != len(group["params"]):
                raise ValueError(f"state_dict['param_groups'][{i}]: holds {len(indices)} "
                                 f"parameter(s), this optimizer's group {i} holds "
                                 f"{len(group['params'])}")
            by_index.update(zip((int(k) for k in indices), group["params"]))
            restored = {k: v for k, v in saved.items() if k != "params"}
            restored["params"] = group["params"]
            for key, value in self.defaults.items():  # an option newer than the save
                restored.setdefault(key, value)
            self._check_hyperparameters(restored, f"state_dict['param_groups'][{i}]: ")
            groups.append(restored)
        state: Dict[Tensor, Dict[str, Any]] = defaultdict(dict)
        for key, saved_state in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                raise ValueError(f"state_dict['state'][{key!r}]: no parameter has this "
                                 "index in 'param_groups'")
            state[p] = {name: _restore(value, p, f"state_dict['state'][{key!r}][{name!r}]",
                                       counter=name == "step")
                        for name, value in saved_state.items()}
        self.state, self.param_groups = state, groups

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines + [")"])


def _restore(value: Any, param: Tensor, where: str, counter: bool) -> Any:
    """A saved state value for `param`: a counter becomes a number, a buffer a fresh
    C-contiguous array of the parameter's shape and dtype."""
    if value is None or isinstance(value, numbers.Number):
        return value
    array = np.asarray(value)
    if counter:
        if array.size != 1:
            raise ValueError(f"{where}: expected a number, got an array of shape "
                             f"{array.shape}")
        number = float(array.reshape(()))
        return int(number) if number.is_integer() else number
    if array.shape != param.shape:
        raise ValueError(f"{where}: expected an array of shape {param.shape} like its "
                         f"parameter, got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{where}: expected a float array, got dtype {array.dtype}")
    return np.array(array, dtype=param.dtype, order="C", copy=True)
