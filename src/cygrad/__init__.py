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
from .ops import (argmax, argmin, cat, clamp, exp, flatten, log, log_softmax, matmul,
                  maximum, minimum, softmax, sqrt, stack)
from .creation import (arange, eye, full, full_like, manual_seed, ones, ones_like, rand,
                       rand_like, randn, randn_like, zeros, zeros_like)
from .runtime import get_num_threads, set_num_threads, share_threads
from . import data
from .serialization import load, save
from .tensor import Tensor, is_grad_enabled, no_grad
from .viz import summary
from .compile import CompiledStep, CompileWarning, compile  # noqa: A004

__all__ = ["__version__", "Tensor", "no_grad", "is_grad_enabled", "maximum", "functional",
           "nn", "optim", "kernels", "gradcheck", "GradcheckError", "get_backend",
           "set_backend", "use_backend", "register_backend", "get_num_threads",
           "set_num_threads", "summary", "minimum", "cat", "stack", "clamp", "sqrt", "exp",
           "log", "softmax", "log_softmax", "argmax", "argmin", "flatten", "matmul", "zeros",
           "ones", "full", "eye", "arange", "rand", "randn", "zeros_like", "ones_like",
           "full_like", "rand_like", "randn_like", "manual_seed", "data", "save", "load",
           "share_threads", "compile", "CompiledStep", "CompileWarning"]
