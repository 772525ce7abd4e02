"""What the process runs with: thread count for the parallel loops, build facts."""
from __future__ import annotations

import os
import platform
from typing import Dict

import numpy as np

from . import backends
from ._version import __version__


def _compiled():
    return backends._backends.get("cython") and backends._compiled._elementwise


def get_num_threads() -> int:
    """Threads the compiled element-wise loops use (1 without OpenMP); BLAS has its own."""
    module = _compiled()
    return module.get_num_threads() if module else 1


def set_num_threads(n: int) -> None:
    """Set the threads of the compiled loops, for every Python thread. The default is
    OpenMP's: OMP_NUM_THREADS if set, else the number of cores. A forked child keeps one
    thread (GNU OpenMP's pool does not survive fork). The products' thread count is the
    BLAS's (OPENBLAS_NUM_THREADS), whichever threads run them."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    module = _compiled()
    if module:
        module.set_num_threads(n)


def _blas() -> str:
    """The BLAS the compiled products call (backends/_blas.py chooses), with its version."""
    if not _compiled():
        return "none (the compiled module is not loaded)"
    name, _ = backends._compiled._linear.blas_in_use()
    try:
        if name == "numpy":
            owner = np
        else:
            import scipy as owner
        blas = owner.show_config(mode="dicts")["Build Dependencies"]["blas"]
        built = f"{blas.get('name')} {blas.get('version', '')}"
    except Exception as exc:  # show_config's layout is theirs, not ours
        built = f"unknown build ({type(exc).__name__})"
    if name == "numpy":
        return f"NumPy's {built}, shared with NumPy (CYGRAD_BLAS=scipy for SciPy's)"
    return f"SciPy's {built}"


def info() -> Dict[str, str]:
    """The facts `python -m cygrad info` prints."""
    module = _compiled()
    return {
        "cygrad": __version__,
        "active backend": backends.get_backend(),
        "backends": ", ".join(backends.available_backends()),
        "compiled module": "loaded" if module else
                           f"not loaded ({backends.compiled_import_error})",
        "OpenMP": ("on" if module and module.openmp_enabled() else "off"),
        "threads": str(get_num_threads()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        "BLAS": _blas(),
        "BLAS threads": {"openmp": "cygrad's OpenMP threads (one pool with the loops)",
                         "blas": "the BLAS's own pool"}[backends.blas_threads()],
        "NumPy": np.__version__,
        "Python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def add_arguments(parser) -> None:
    """`python -m cygrad info` takes no options."""


def run(args) -> int:
    facts = info()
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    return 0
