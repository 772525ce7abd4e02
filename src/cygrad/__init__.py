"""cygrad: reverse-mode automatic differentiation for NumPy arrays, with compiled kernels.

    import numpy as np, cygrad as cg
    w = cg.Tensor(np.random.randn(256, 784) * 0.01, requires_grad=True)
    loss = (cg.functional.linear(x, w).sigmoid() ** 2).mean()
    loss.backward()          # w.grad is a NumPy array
"""
from . import backends, functional, kernels, nn, optim
from ._version import __version__
from .backends import get_backend, register_backend, set_backend, use_backend
from .gradcheck import GradcheckError, gradcheck
from .ops import maximum
from .runtime import get_num_threads, set_num_threads
from . import data
from .serialization import load, save
from .tensor import Tensor, is_grad_enabled, no_grad
from .viz import summary

__all__ = ["__version__", "Tensor", "no_grad", "is_grad_enabled", "maximum", "functional",
           "nn", "optim", "kernels", "gradcheck", "GradcheckError", "get_backend",
           "set_backend", "use_backend", "register_backend", "get_num_threads",
           "set_num_threads", "summary", "data", "save", "load"]
