"""Backend registry: which set of kernels the graph layer and `cygrad.kernels` call.

"cython" (compiled, the default) and "reference" (plain NumPy, the oracle) are built in;
`register_backend` adds others. The environment variable CYGRAD_BACKEND picks the one
active at import. The choice is process-wide: every thread sees the same backend. Which
BLAS and whose threads the compiled backend runs on is cygrad/runtime.py's business.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from types import ModuleType
from typing import Any, Dict, Iterator, Optional

from . import reference

KERNEL_NAMES = ("matmul_backward", "linear_forward", "linear_backward", "bias_backward",
                "sigmoid_forward", "sigmoid_backward")
# The optimizers' updates: both built-in backends have them; a registered backend may
# leave them out, and then runs the reference's (NumPy) ones.
OPTIONAL_KERNEL_NAMES = ("sgd_update", "adam_update")

_backends: Dict[str, Any] = {"reference": reference}
_active: Any = reference
# Why the compiled module could not be imported, if it could not.
compiled_import_error: Optional[str] = None

try:
    from . import cython as _compiled
    _backends["cython"] = _compiled
except ImportError as exc:  # e.g. a source checkout used without building it
    compiled_import_error = f"{type(exc).__name__}: {exc}"


def _missing_compiled_message() -> str:
    return ("the compiled 'cython' backend is not available "
            f"({compiled_import_error}); build it with `pip install .` "
            "from the source checkout (needs a C compiler)")


def register_backend(name: str, backend: Any) -> None:
    """Make `backend` (a module or object with every kernel of KERNEL_NAMES as a callable
    attribute, and any of OPTIONAL_KERNEL_NAMES) selectable as `name`."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty string, got {name!r}")
    missing = [k for k in KERNEL_NAMES if not callable(getattr(backend, k, None))]
    if missing:
        raise ValueError(f"backend: {name!r} lacks the kernel(s) {', '.join(missing)}")
    _backends[name] = backend


def available_backends() -> list:
    return sorted(_backends)


def _lookup(name: object) -> Any:
    if name == "cython" and "cython" not in _backends:
        raise RuntimeError(_missing_compiled_message())
    try:
        return _backends[name]  # type: ignore[index]
    except (KeyError, TypeError):
        raise ValueError(f"backend: unknown name {name!r}; known: "
                         f"{', '.join(repr(n) for n in available_backends())}") from None


def active() -> Any:
    """The active backend object (what ops call kernels on)."""
    return _active


def optional_kernel(name: str) -> Any:
    """The active backend's kernel `name` (one of OPTIONAL_KERNEL_NAMES), or the
    reference's where that backend lacks it."""
    kernel = getattr(_active, name, None)
    return kernel if kernel is not None else getattr(reference, name)


def get_backend() -> str:
    """The name of the active backend."""
    return next(n for n, b in _backends.items() if b is _active)


def set_backend(name: str) -> None:
    """Make `name` ("cython", "reference", or a registered name) the active backend."""
    global _active
    _active = _lookup(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[ModuleType]:
    """`with use_backend(name):` runs the block on that backend and restores the previous
    one on exit, also after an exception. Contexts nest."""
    global _active
    previous, _active = _active, _lookup(name)
    try:
        yield _active
    finally:
        _active = previous


ENV = "CYGRAD_BACKEND"


def _initial_backend() -> Any:
    wanted = os.environ.get(ENV)
    if wanted:
        if wanted not in _backends and wanted != "cython":
            raise ValueError(f"{ENV}: unknown backend {wanted!r}; expected one of "
                             f"{', '.join(repr(n) for n in available_backends())} "
                             f"(unset it for the default, 'cython')")
        return _lookup(wanted)
    if "cython" in _backends:
        return _backends["cython"]
    warnings.warn(f"cygrad: {_missing_compiled_message()}; using the slow 'reference' "
                  "backend", RuntimeWarning, stacklevel=3)
    return reference


_active = _initial_backend()
