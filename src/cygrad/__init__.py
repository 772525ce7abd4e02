"""cygrad: reverse-mode automatic differentiation for NumPy arrays, with compiled kernels."""
from . import kernels
from ._version import __version__
from .backends import get_backend, register_backend, set_backend, use_backend
from .runtime import get_num_threads, set_num_threads

__all__ = ["__version__", "kernels", "get_backend", "set_backend", "use_backend",
           "register_backend", "get_num_threads", "set_num_threads"]
