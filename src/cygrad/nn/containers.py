"""Containers: Sequential, ModuleList, ModuleDict, ParameterList, with PyTorch's keys."""
from __future__ import annotations

from collections import OrderedDict
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union,
                    overload)

import numpy as np

from ..tensor import Tensor
from .module import Module, _check_name, changed


def _check_module(value: Any, where: str) -> "Module":
    if not isinstance(value, Module):
        raise TypeError(f"{where}: expected a Module, got {type(value).__name__}")
    return value


class _ModuleSequence(Module):
    """Modules kept in a list, named by position ("0", "1", ...)."""

    _storage = "layers"

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        self.layers: List[Module] = [_check_module(m, f"modules[{i}]")
                                     for i, m in enumerate(modules)]

    def _named_members(self) -> Iterator[Tuple[str, Any]]:
        yield from ((str(i), m) for i, m in enumerate(self.layers))
        yield from super()._named_members()

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return type(self)(*self.layers[index]) if isinstance(self, Sequential) \
                else type(self)(self.layers[index])
        return self.layers[index]

    def __setitem__(self, index: int, module: Module) -> None:
        self.layers[index] = _check_module(module, f"[{index}]")
        changed()

    def __delitem__(self, index: Union[int, slice]) -> None:
        del self.layers[index]  # later modules are renumbered, as in PyTorch
        changed()

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def append(self, module: Module) -> "_ModuleSequence":
        self.layers.append(_check_module(module, "module"))
        changed()
        return self

    def extend(self, modules: Iterable[Module]) -> "_ModuleSequence":
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        self.layers.insert(index, _check_module(module, "module"))
        changed()

    def pop(self, index: int = -1) -> Module:
        """Remove the module at `index` and return it (the others are numbered again)."""
        module = self.layers[index]
        del self[index]
        return module


class Sequential(_ModuleSequence):
    """Applies its modules in order. `Sequential(a, b, c)`; its state-dict keys are
    `0.weight`, `0.bias`, ... as torch.nn.Sequential's. `Sequential(OrderedDict(...))`
    names them instead, and a named module is also an attribute (`model.fc1`).

    Names follow torch.nn.Sequential's: a slice keeps them (`model[2:]` has keys `2.*`),
    `append` names the new module by its position, and deleting or inserting a module
    numbers them all again."""

    def __init__(self, *modules: Any):
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            super().__init__(modules[0].values())
            self._names: List[str] = [str(name) for name in modules[0]]
        else:
            super().__init__(modules)
            self._number()

    def _named_members(self) -> Iterator[Tuple[str, Any]]:
        yield from zip(self._names, self.layers)
        yield from Module._named_members(self)

    def __getattr__(self, name: str) -> Any:  # only for names not found the usual way
        names = self.__dict__.get("_names")
        if names is not None and name in names:
            return self.layers[names.index(name)]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        names = self.__dict__.get("_names")
        if names is not None and name in names:
            self[names.index(name)] = value
        else:
            super().__setattr__(name, value)

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return Sequential(OrderedDict(zip(self._names[index], self.layers[index])))
        return self.layers[index]

    def _number(self) -> None:  # after a deletion or insertion, as PyTorch numbers them
        self._names = [str(i) for i in range(len(self.layers))]

    def __delitem__(self, index: Union[int, slice]) -> None:
        super().__delitem__(index)
        self._number()

    def append(self, module: Module) -> "Sequential":
        super().append(module)
        self._names.append(str(len(self.layers) - 1))
        return self

    def insert(self, index: int, module: Module) -> None:
        super().insert(index, module)
        self._number()

    def add_module(self, name: str, module: Optional[Module]) -> None:
        """Append `module` under `name` (or replace the module of that name), as
        torch.nn.Sequential's add_module."""
        _check_name(name, "add_module")
        if name in self._names:
            self[self._names.index(name)] = module
        else:
            self.append(module)
            self._names[-1] = name

    def forward(self, input: Any) -> Any:
        for layer in self.layers:
            input = layer(input)
        return input


class ModuleList(_ModuleSequence):
    """A list of modules, registered under `name.0`, `name.1`, ...; no forward."""

    def __iadd__(self, modules: Iterable[Module]) -> "ModuleList":
        return self.extend(modules)


class ModuleDict(Module):
    """A dict of modules, registered under `name.key`; keeps insertion order. An entry is
    also an attribute (`heads.cls`)."""

    _storage = "_entries"

    def __init__(self, modules: Optional[Union[Mapping[str, Module],
                                               Iterable[Tuple[str, Module]]]] = None):
        super().__init__()
        self._entries: Dict[str, Module] = {}
        if modules is not None:
            self.update(modules)

    def _named_members(self) -> Iterator[Tuple[str, Any]]:
        yield from self._entries.items()
        yield from super()._named_members()

    def __getattr__(self, name: str) -> Any:  # an entry as an attribute, as in PyTorch
        entries = self.__dict__.get("_entries")
        if entries is not None and name in entries:
            return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        entries = self.__dict__.get("_entries")
        if entries is not None and name in entries:
            self[name] = value
        else:
            super().__setattr__(name, value)

    def __getitem__(self, key: str) -> Module:
        return self._entries[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str):
            raise TypeError(f"key: expected a str, got {type(key).__name__}")
        self._entries[key] = _check_module(module, f"[{key!r}]")
        changed()

    def __delitem__(self, key: str) -> None:
        del self._entries[key]
        changed()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> Iterable[str]:
        return self._entries.keys()

    def values(self) -> Iterable[Module]:
        return self._entries.values()

    def items(self) -> Iterable[Tuple[str, Module]]:
        return self._entries.items()

    def pop(self, key: str) -> Module:
        module = self._entries.pop(key)
        changed()
        return module

    def clear(self) -> None:
        self._entries.clear()
        changed()

    def update(self, modules: Union[Mapping[str, Module],
                                    Iterable[Tuple[str, Module]]]) -> None:
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in pairs:
            self[key] = module


class ParameterList(Module):
    """A list of parameters, registered under `name.0`, `name.1`, ... (also after
    `requires_grad_(False)`). Arrays are made into Tensors with requires_grad=True."""

    _storage = "params"

    def __init__(self, values: Optional[Iterable[Any]] = None):
        super().__init__()
        self.params: List[Tensor] = []
        if values is not None:
            self.extend(values)

    def _named_members(self) -> Iterator[Tuple[str, Any]]:
        yield from ((str(i), p) for i, p in enumerate(self.params))
        yield from super()._named_members()

    @staticmethod
    def _parameter(value: Any) -> Tensor:
        if isinstance(value, Tensor):
            return value
        if isinstance(value, np.ndarray):
            return Tensor(value, requires_grad=True)
        raise TypeError(f"value: expected a Tensor or a NumPy array, got "
                        f"{type(value).__name__}")

    @overload
    def __getitem__(self, index: int) -> Tensor: ...

    @overload
    def __getitem__(self, index: slice) -> "ParameterList": ...

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return ParameterList(self.params[index])
        return self.params[index]

    def __setitem__(self, index: int, value: Any) -> None:
        self.params[index] = self._parameter(value)
        changed()

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.params)

    def append(self, value: Any) -> "ParameterList":
        self.params.append(self._parameter(value))
        changed()
        return self

    def extend(self, values: Iterable[Any]) -> "ParameterList":
        for value in values:
            self.append(value)
        return self

    def extra_repr(self) -> str:
        return ", ".join(f"({i}): Tensor of shape {p.shape} ({p.dtype})"
                         for i, p in enumerate(self.params))
