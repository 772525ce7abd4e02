"""Backend registry: which set of kernels the graph layer and `cygrad.kernels` call.

"cython" (compiled, the default) and "reference" (plain NumPy, the oracle) are built in;
`register_backend` adds others. The environment variable CYGRAD_BACKEND picks the one
active at import. The choice is process-wide: every thread sees the same backend.
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

_backends: Dict[str, Any] = {"reference": reference}
_active: Any = reference
# Why the compiled module could not be imported, if it could not.
compiled_import_error: Optional[str] = None

def user_chose_openmp_wait() -> bool:
    return "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ


@contextlib.contextmanager
def short_openmp_spin(needed: bool = True) -> Iterator[None]:
    """GOMP_SPINCOUNT=1000 in the environment while a GNU OpenMP runtime loads (it reads the
    variable once, then), if `needed` and the user did not choose the wait; afterwards the
    environment is as it was, so a library loaded later keeps its own default.

    Needed only where the BLAS keeps its own thread pool (an OpenBLAS older than 0.3.28, or
    CYGRAD_BLAS_THREADS=blas). There, after a parallel loop, GNU OpenMP's idle threads spin
    for ~300,000 iterations before sleeping and take the cores from the BLAS threads of the
    next matrix product (a training step at 1024x1024 ran 2x slower; with a spin of 1000 it
    ran as fast as on one thread). Where OpenMP's threads run the BLAS jobs too, the long
    spin is what keeps them ready for the next product, so OpenMP keeps its default."""
    if not needed or user_chose_openmp_wait():
        yield
        return
    os.environ["GOMP_SPINCOUNT"] = "1000"
    try:
        yield
    finally:
        del os.environ["GOMP_SPINCOUNT"]


def blas_threads() -> str:
    """Whose threads run the products' parallel jobs: "openmp" (cygrad's OpenMP threads,
    one pool with the element-wise loops) or "blas" (the BLAS library's own pool)."""
    compiled = _backends.get("cython")
    return compiled._linear.blas_threads() if compiled else "blas"


try:
    from . import _blas
    # The compiled module loads libgomp.
    with short_openmp_spin(needed=not _blas.jobs_will_run_on_openmp()):
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
    attribute) selectable as `name`."""
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


def _initial_backend() -> Any:
    wanted = os.environ.get("CYGRAD_BACKEND")
    if wanted:
        return _lookup(wanted)
    if "cython" in _backends:
        return _backends["cython"]
    warnings.warn(f"cygrad: {_missing_compiled_message()}; using the slow 'reference' "
                  "backend", RuntimeWarning, stacklevel=3)
    return reference


_active = _initial_backend()
