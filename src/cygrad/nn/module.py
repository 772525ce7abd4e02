"""Module: the base class of layers and models, as torch.nn.Module.

A module's parameters and submodules are its attributes, found by walking `vars(self)`
in assignment order: a leaf Tensor with requires_grad=True is a parameter (and stays one
after `requires_grad_(False)`; an op's result kept on the module is not), a Module is a
child. The items of a plain list, tuple or dict attribute register too, named `attr.0` /
`attr.key` as a ModuleList / ModuleDict / ParameterList would name them: torch.nn.Module
silently skips them, so the layers never train.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import (Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional,
                    Set, Tuple, TypeVar)

import numpy as np

from ..tensor import Tensor

T = TypeVar("T", bound="Module")

_PARAMETER_NAMES = "_parameter_names"  # attribute names ever given a parameter
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

# How many times an attribute of any module, or a container's contents, has been set or
# deleted: a compiled step compares the modules it recorded only after this has moved.
changes = 0


def changed() -> None:
    """Count a change to a module (the containers call it when their contents change)."""
    global changes
    changes += 1


class _IncompatibleKeys(NamedTuple):
    missing_keys: List[str]
    unexpected_keys: List[str]


class StateDictError(RuntimeError, ValueError):
    """A state dict that does not fit the module: a RuntimeError as in PyTorch, and a
    ValueError as every other bad argument in cygrad."""


def _check_name(name: Any, op: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{op}: name: expected a str, got {type(name).__name__}")
    if not name or "." in name:
        raise ValueError(f"{op}: name: expected a non-empty name without a dot (a dot "
                         f"separates the levels of a state dict's keys), got {name!r}")


class Module:
    """Base class: subclass it, assign parameters and submodules in `__init__`, and define
    `forward`. Calling `super().__init__()` first is customary but not required."""

    training: bool = True  # a class default, so subclasses that skip __init__ work
    _storage: Optional[str] = None  # a container's attribute holding its items

    def __init__(self) -> None:
        self.training = True

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Tensor):
            names = self.__dict__.get(_PARAMETER_NAMES)
            if not value.is_leaf and names is not None and name in names:
                raise TypeError(f"{type(self).__name__}.{name}: cannot assign the result of "
                                f"'{value._op}' to a parameter (it would never be trained): "
                                "assign a leaf Tensor (result.detach().requires_grad_()), "
                                "or keep the result under another name")
            if value.requires_grad and value.is_leaf:
                if names is None:
                    names = self.__dict__[_PARAMETER_NAMES] = {}
                names[name] = None
        object.__setattr__(self, name, value)
        changed()

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        changed()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.forward(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            _locate(exc, self)
            raise

    # -- what a module holds --------------------------------------------------------------
    def _named_members(self) -> Iterator[Tuple[str, Any]]:
        """(name, parameter or child module), in attribute order."""
        registered = self.__dict__.get(_PARAMETER_NAMES, ())
        for name, value in vars(self).items():
            if name == self._storage:
                continue
            if isinstance(value, Tensor):
                if (value.requires_grad and value.is_leaf) or name in registered:
                    yield name, value
            elif isinstance(value, Module):
                yield name, value
            elif type(value) in (list, tuple, dict):
                items = value.items() if type(value) is dict else enumerate(value)
                for key, item in items:
                    if isinstance(item, Module) or (isinstance(item, Tensor) and
                                                    item.requires_grad and item.is_leaf):
                        yield f"{name}.{key}", item

    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        """(name, module) for each direct submodule, each module once."""
        seen: Set[int] = set()
        for name, value in self._named_members():
            if isinstance(value, Module) and id(value) not in seen:
                seen.add(id(value))
                yield name, value

    def children(self) -> Iterator["Module"]:
        for _, module in self.named_children():
            yield module

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        """Make `module` the child `name` (as `self.name = module`), as PyTorch's."""
        _check_name(name, "add_module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: module: expected a Module or None, got "
                            f"{type(module).__name__}")
        setattr(self, name, module)

    register_module = add_module

    def register_parameter(self, name: str, param: Optional[Tensor]) -> None:
        """Make `param` (a leaf Tensor, or None) the parameter `name`; it stays one when
        it does not require grad (a frozen parameter), as PyTorch's."""
        _check_name(name, "register_parameter")
        if param is not None and not (isinstance(param, Tensor) and param.is_leaf):
            got = f"the result of '{param._op}'" if isinstance(param, Tensor) else \
                type(param).__name__
            raise TypeError(f"register_parameter: param: expected a leaf Tensor or None, "
                            f"got {got}")
        if param is not None:
            self.__dict__.setdefault(_PARAMETER_NAMES, {})[name] = None
        setattr(self, name, param)

    def get_submodule(self, target: str) -> "Module":
        """The submodule at dotted path `target` ('' is this module), as PyTorch's."""
        module = self
        for part in target.split(".") if target else ():
            child = dict(module.named_children()).get(part)
            if child is None:
                raise AttributeError(f"get_submodule: {type(module).__name__} has no "
                                     f"submodule {part!r} (looking up {target!r})")
            module = child
        return module

    def get_parameter(self, target: str) -> Tensor:
        """The parameter at dotted path `target` (as in `named_parameters()`)."""
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        param = dict(module.named_parameters(recurse=False)).get(name)
        if param is None:
            raise AttributeError(f"get_parameter: {type(module).__name__} has no parameter "
                                 f"{name!r} (looking up {target!r})")
        return param

    def named_modules(self, memo: Optional[Set[int]] = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, "Module"]]:
        """(dotted name, module) for this module ('' by default) and every submodule,
        depth first in attribute order; a module reached twice is listed once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, value in self._named_members():
            if isinstance(value, Module):
                yield from value.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                               remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        """This module and every submodule, each once, in `named_modules()`'s order (the
        same walk, without building the names)."""
        found: List[Module] = []
        self._collect_modules(found, set())
        return iter(found)

    def _collect_modules(self, found: List["Module"], memo: Set[int]) -> None:
        if id(self) in memo:
            return
        memo.add(id(self))
        found.append(self)
        for _, value in self._named_members():
            if isinstance(value, Module):
                value._collect_modules(found, memo)

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[Tuple[str, Tensor]]:
        """(dotted name, parameter) in PyTorch's order: a module's own parameters, then
        its children's (and those held in a list or dict attribute) in attribute order; a
        shared parameter is listed once, under its first name."""
        seen: Set[int] = set()
        for name, p in self._walk_parameters(prefix, set(), remove_duplicate, recurse):
            if remove_duplicate:
                if id(p) in seen:
                    continue
                seen.add(id(p))
            yield name, p

    def _walk_parameters(self, prefix: str, memo: Set[int], remove_duplicate: bool,
                         recurse: bool) -> Iterator[Tuple[str, Tensor]]:
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        members = list(self._named_members())
        dotted = [f"{prefix}.{name}" if prefix else name for name, _ in members]
        # A parameter attribute comes first (PyTorch's _parameters); one in a list or dict
        # comes where a ParameterList child would, among the children.
        for full, (name, value) in zip(dotted, members):
            if isinstance(value, Tensor) and "." not in name:
                yield full, value
        for full, (name, value) in zip(dotted, members):
            if isinstance(value, Module):
                if recurse:
                    yield from value._walk_parameters(full, memo, remove_duplicate, True)
            elif "." in name:
                yield full, value

    def parameters(self, recurse: bool = True) -> List[Tensor]:
        """The parameters, each once, in `named_parameters()`'s order (the same walk,
        without building the names: optimizers and gradient clipping call this every
        step). A list (PyTorch gives a generator): it can be indexed and iterated more
        than once, and `list(...)` of it works the same."""
        found: List[Tensor] = []
        self._collect_parameters(found, set(), set(), recurse)
        return found

    def _collect_parameters(self, found: List[Tensor], seen: Set[int], memo: Set[int],
                            recurse: bool) -> None:
        """`_walk_parameters` with remove_duplicate=True, appending to `found` the
        parameters not in `seen` (ids) yet."""
        if id(self) in memo:
            return
        memo.add(id(self))
        members = list(self._named_members())
        for name, value in members:
            if isinstance(value, Tensor) and "." not in name and id(value) not in seen:
                seen.add(id(value))
                found.append(value)
        for name, value in members:
            if isinstance(value, Module):
                if recurse:
                    value._collect_parameters(found, seen, memo, True)
            elif "." in name and id(value) not in seen:
                seen.add(id(value))
                found.append(value)

    # -- state dict -----------------------------------------------------------------------
    def state_dict(self, destination: Optional[Dict[str, Any]] = None, prefix: str = "",
                   keep_vars: bool = False) -> "OrderedDict[str, Tensor]":
        """Every parameter under PyTorch's dotted key (`0.weight`, `blocks.1.bias`), a
        shared one under each of its names. Values are detached Tensors that share memory
        with the parameters (`keep_vars=True`: the parameters themselves)."""
        if destination is None:
            destination = OrderedDict()
        for name, p in self.named_parameters(prefix=prefix.rstrip("."),
                                             remove_duplicate=False):
            destination[name] = p if keep_vars else Tensor(p.data)
        return destination

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Copy `state_dict`'s values (Tensors, NumPy arrays, or arrays of another library
        that NumPy can read) into the parameters in place, so an optimizer holding them
        keeps working. Values are cast to each parameter's dtype, as PyTorch's copy does.
        Nothing is copied unless every value fits: shapes must match, and with `strict`
        the keys too. Returns `(missing_keys, unexpected_keys)`. `assign=True` makes the
        parameters share the values' memory instead (same shape, same dtype required)."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping of names to arrays (as "
                            f"state_dict() returns), got {type(state_dict).__name__}")
        own = dict(self.named_parameters(remove_duplicate=False))
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        problems, arrays = [], {}
        for key, p in own.items():
            if key not in state_dict:
                continue
            array = _as_array(state_dict[key], key)
            if array.shape != p.shape:
                problems.append(f"size mismatch for {key}: copying a param with shape "
                                f"{array.shape} from checkpoint, the shape in current model"
                                f" is {p.shape}.")
            elif assign and array.dtype != p.dtype:
                problems.append(f"dtype mismatch for {key}: assign=True needs {p.dtype}, "
                                f"got {array.dtype}; pass assign=False to copy and cast.")
            elif assign and not array.flags.writeable:
                problems.append(f"read-only array for {key}: assign=True needs a writable "
                                f"one (an optimizer updates it in place); pass assign=False "
                                f"to copy it.")
            arrays[key] = array
        if strict:
            if unexpected:
                problems.insert(0, "Unexpected key(s) in state_dict: "
                                + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                problems.insert(0, "Missing key(s) in state_dict: "
                                + ", ".join(f'"{k}"' for k in missing) + ". ")
        if problems:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:"
                                 + "".join(f"\n\t{p}" for p in problems))
        for key, array in arrays.items():
            if assign:
                own[key].data = array
            else:
                own[key].data[...] = array
        return _IncompatibleKeys(missing, unexpected)

    # -- modes, dtypes, gradients ---------------------------------------------------------
    def train(self: T, mode: bool = True) -> T:
        """Set training mode (Dropout active) on this module and every submodule."""
        if not isinstance(mode, bool):
            raise ValueError(f"mode: expected True or False, got {mode!r}")
        for module in self.modules():
            module.training = mode
        return self

    def eval(self: T) -> T:
        """Evaluation mode: `train(False)`."""
        return self.train(False)

    def requires_grad_(self: T, requires_grad: bool = True) -> T:
        """Switch gradient recording of every parameter on or off (freeze a layer)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set to None (PyTorch's default), or fill with zeros."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.fill(0)

    def to(self: T, *args: Any, **kwargs: Any) -> T:
        """`to(dtype)`, `to(device)`, `to(device, dtype)`, `to(tensor)` as in PyTorch: the
        parameters (and gradients) are converted in place, the Tensor objects stay the same
        (optimizers built on them keep working). The only device is "cpu"."""
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        if kwargs:
            raise TypeError(f"to: unexpected argument(s) {', '.join(kwargs)}")
        for arg in args:
            if isinstance(arg, Tensor):
                dtype = arg.dtype
            elif isinstance(arg, str) and not arg.startswith("float"):
                device = arg
            else:
                dtype = arg
        if device is not None and str(device).split(":")[0] != "cpu":
            raise ValueError(f"device: cygrad runs on the CPU only, got {device!r}")
        if dtype is None:
            return self
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            dtype = None
        if dtype not in _FLOATS:
            raise TypeError(f"dtype: expected np.float32 or np.float64, got {args or kwargs}")
        for p in self.parameters():
            p.data = p.data.astype(dtype, copy=False)
            if p.grad is not None:
                p.grad = p.grad.astype(dtype, copy=False)
        return self

    def cpu(self: T) -> T:
        """This module: its arrays are in the CPU's memory already."""
        return self

    def float(self: T) -> T:
        return self.to(np.float32)

    def double(self: T) -> T:
        return self.to(np.float64)

    def apply(self: T, fn: Callable[["Module"], None]) -> T:
        """Call `fn` on every submodule (children first) and then on this module."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- printing -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ")
                 for name, child in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n  " + "\n  ".join(lines) + "\n)" if lines else ")")

    def _describe(self) -> str:
        """The short name errors give this module, e.g. `Linear(64 -> 128)`."""
        return f"{type(self).__name__}()"


def _as_array(value: Any, key: str) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.data
    try:
        array = np.asarray(value)
    except Exception as exc:  # e.g. a torch tensor that requires grad
        raise TypeError(f"state_dict[{key!r}]: expected an array, got "
                        f"{type(value).__name__} ({exc})") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"state_dict[{key!r}]: expected an array of numbers, got "
                        f"{type(value).__name__} of dtype {array.dtype}")
    return array


# -- errors that name the layer and its place in the model --------------------------------

def module_error(module: Module, kind: type, detail: str) -> Exception:
    """An error raised by `module`'s forward: its message starts with the module's place
    in the model, filled in as the error passes up through the enclosing modules."""
    exc = kind(f"{module._describe()}: {detail}")
    exc.cygrad_module, exc.cygrad_detail = module, detail
    return exc


def _locate(exc: BaseException, caller: Module) -> None:
    """Rewrite a `module_error` raised below `caller` to start with its path from
    `caller` (`Sequential[0] Linear(64 -> 128): ...`); the outermost caller writes last."""
    culprit = getattr(exc, "cygrad_module", None)
    if culprit is None or culprit is caller:
        return
    for name, module in caller.named_modules():
        if module is culprit:
            path = "".join(f"[{part}]" if part.isdigit() else f".{part}"
                           for part in name.split("."))
            exc.args = (f"{type(caller).__name__}{path} {culprit._describe()}: "
                        f"{exc.cygrad_detail}",)
            return
