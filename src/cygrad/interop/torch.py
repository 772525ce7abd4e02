"""cygrad's kernels as PyTorch ops: autograd Functions, drop-in modules and `cygradify`.

    import torch
    from cygrad.interop.torch import cygradify
    model = cygradify(torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.Sigmoid(),
                                          torch.nn.Linear(256, 10)))
    torch.nn.functional.mse_loss(model(x), target).backward()   # cygrad's kernels ran

Data moves without copies: a CPU tensor is read through a NumPy view of its memory (the
forward keeps the views for the backward), and every result and gradient is a NumPy array
written by a kernel and wrapped with `torch.from_numpy` (a strided input is copied to a
contiguous buffer by the kernel, in the forward and again in the backward). Gradients run
on cygrad's kernels; only under `create_graph=True` (a gradient to be differentiated
again) is the backward written with PyTorch ops instead, so second derivatives are
PyTorch's.

What cygrad runs: CPU, strided tensors of float32 or float64, every tensor of a call of one
dtype. For anything else the two layers choose differently, on purpose:

- `LinearFunction` and `SigmoidFunction` are strict: they raise before computing anything,
  naming the argument: `TypeError` for a non-tensor, a dtype other than float32/float64 or a
  dtype unlike `x`'s (no silent casting); `ValueError` for a tensor not on the CPU or not
  strided (sparse). Calling a Function means asking for cygrad's kernels.
- `linear`, `sigmoid`, `Linear`, `Sigmoid` (and so a `cygradify`-ed model) fall back to
  PyTorch's own op (`torch.nn.functional.linear`, `torch.sigmoid`) for those inputs, and
  also under CPU autocast and wherever a graph is recorded (`torch.jit.trace`,
  `torch.jit.script`, `torch.compile`, `torch.export`), which cannot see through NumPy. A
  converted model thus keeps working after `model.cuda()`, `model.half()` or inside
  `torch.autocast`, exactly as before; errors (mixed dtypes, say) are then PyTorch's own.

`cygradify` keeps the very same module objects and `Parameter`s: it changes the class of each
`torch.nn.Linear` / `torch.nn.Sigmoid` to cygrad's subclass (as `torch.nn.utils.parametrize`
does), so optimizers, hooks, tied weights and state_dicts made before remain valid.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .. import kernels, runtime

# Loading the adapter leaves PyTorch's threads, and cygrad's, as they were. Where the user
# opted in to one thread pool before torch was loaded, the opt-in now also covers PyTorch's
# OpenMP runtime (docs/threads.md).
if runtime.threads_shared():
    runtime.share_threads()

__all__ = ["LinearFunction", "SigmoidFunction", "linear", "sigmoid", "Linear", "Sigmoid",
           "cygradify"]

Tensor = torch.Tensor
_DTYPES = (torch.float32, torch.float64)
_STRIDED = torch.strided

def _checked(t: object, name: str, like: Optional[Tensor] = None) -> Tensor:
    """`t`, after checking it is a tensor cygrad's kernels can read."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_cpu or t.layout is not torch.strided:
        raise ValueError(f"{name}: expected a strided CPU tensor, got a {t.layout} tensor "
                         f"on {t.device} (cygrad runs on NumPy arrays)")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {t.dtype}")
    if like is not None and t.dtype != like.dtype:
        raise TypeError(f"{name}: expected {like.dtype} like x (no silent casting), "
                        f"got {t.dtype}")
    return t


def _array(t: Tensor):
    """The NumPy view of `t`'s memory, strides and all (the kernels copy a strided input
    themselves). force=True: plain `.numpy()` refuses a tensor that requires grad, and
    `.detach().numpy()` costs half as much again, per tensor of every call."""
    return t.numpy(force=True)


def _wrap(a) -> Optional[Tensor]:
    return None if a is None else torch.from_numpy(a)


class _Linear(torch.autograd.Function):
    """LinearFunction without its checks, for `linear`, which has made them already."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Optional[Tensor] = None) -> Tensor:
        ctx.arrays = _array(x), _array(w)  # views, so the backward need not convert again
        y = kernels.linear_forward(*ctx.arrays, None if b is None else _array(b))
        # The inputs themselves: PyTorch then catches an in-place change before backward,
        # and a create_graph backward can differentiate through them.
        ctx.save_for_backward(x, w)
        return torch.from_numpy(y)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, w = ctx.saved_tensors
        # apply(x, w) without b gives two flags; PyTorch accepts a trailing None gradient.
        need_x, need_w, need_b = (*ctx.needs_input_grad, False)[:3]
        if torch.is_grad_enabled():  # create_graph=True: the formulas, differentiable
            g, rows = grad_out.reshape(-1, w.shape[0]), x.reshape(-1, w.shape[1])
            return (grad_out @ w if need_x else None, g.T @ rows if need_w else None,
                    g.sum(0) if need_b else None)
        # One call: grad_x, grad_w and the bias reduction share the read of grad_out, and
        # an input that needs no gradient costs nothing.
        grads = kernels.linear_backward(
            _array(grad_out), *ctx.arrays,
            need_grad_x=need_x, need_grad_w=need_w, need_grad_b=need_b)
        return tuple(_wrap(g) for g in grads)


class LinearFunction(_Linear):
    """`y = x @ w.T + b` on cygrad's kernels; x (..., in_features), w (out_features,
    in_features), b (out_features,) or None. Strict about inputs (see the module
    docstring); errors name the arguments x, w, b, as the kernels do."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Optional[Tensor] = None) -> Tensor:
        _checked(x, "x")
        _checked(w, "w", like=x)
        if b is not None:
            _checked(b, "b", like=x)
        return _Linear.forward(ctx, x, w, b)


class _Sigmoid(torch.autograd.Function):
    """SigmoidFunction without its check, for `sigmoid`, which has made it already."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.y = kernels.sigmoid_forward(_array(x))
        y = torch.from_numpy(ctx.y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the formula, differentiable
            return grad_out * y * (1 - y)
        return torch.from_numpy(kernels.sigmoid_backward(_array(grad_out), ctx.y))


class SigmoidFunction(_Sigmoid):
    """`y = 1 / (1 + exp(-x))` on cygrad's kernels; the backward reuses `y` (no second
    exp). Strict about inputs (see the module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return _Sigmoid.forward(ctx, _checked(x, "x"))


# Only PyTorch 2.13 is tested; these two keep the extra's floor (torch>=2.1) importable.
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # PyTorch < 2.4: no device argument, a CPU-specific call instead
        return torch.is_autocast_cpu_enabled()


def _runs_natively(*tensors: Optional[Tensor]) -> bool:
    """True where cygrad's Functions would refuse the inputs, or where a call through NumPy
    could not be recorded: PyTorch's own op runs instead."""
    if torch.jit.is_tracing() or _is_compiling():
        return True
    if _cpu_autocast():
        return True  # autocast would run nn.Linear in bfloat16; keep its behaviour
    dtype = tensors[0].dtype if isinstance(tensors[0], Tensor) else None
    if dtype not in _DTYPES:
        return True
    for t in tensors:  # a plain loop: this runs on every call of a converted model
        if t is not None and (not isinstance(t, Tensor) or t.dtype != dtype
                              or not t.is_cpu or t.layout is not _STRIDED):
            return True
    return False


@torch.jit.unused
def linear(x: Tensor, w: Tensor, b: Optional[Tensor] = None) -> Tensor:
    """`x @ w.T + b`, as `torch.nn.functional.linear(x, w, b)` computes it: on cygrad's
    kernels for CPU float32/float64 tensors of one dtype, else by PyTorch itself."""
    if _runs_natively(x, w, b):
        return torch.nn.functional.linear(x, w, b)
    return _Linear.apply(x, w, b)


@torch.jit.unused
def sigmoid(x: Tensor) -> Tensor:
    """`1 / (1 + exp(-x))` as `torch.sigmoid` computes it: on cygrad's kernels for CPU
    float32/float64 tensors, else by PyTorch itself."""
    if _runs_natively(x):
        return torch.sigmoid(x)
    return _Sigmoid.apply(x)


class Linear(torch.nn.Linear):
    """`torch.nn.Linear` whose forward and backward run on cygrad's kernels. Same
    parameters (`weight` (out_features, in_features), `bias` (out_features,)), same
    initialization and state_dict keys; falls back to PyTorch where cygrad cannot run."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = torch.float32) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, input: Tensor) -> Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles only this branch
            return torch.nn.functional.linear(input, self.weight, self.bias)
        return linear(input, self.weight, self.bias)


class Sigmoid(torch.nn.Sigmoid):
    """`torch.nn.Sigmoid` on cygrad's kernels; falls back to PyTorch where cygrad cannot
    run."""

    def forward(self, input: Tensor) -> Tensor:
        if torch.jit.is_scripting():
            return torch.sigmoid(input)
        return sigmoid(input)


# Exact types only: a subclass may have its own forward, which a swap would lose.
_SWAPS = {torch.nn.Linear: Linear, torch.nn.Sigmoid: Sigmoid}


def cygradify(module: torch.nn.Module) -> torch.nn.Module:
    """Make every `torch.nn.Linear` and `torch.nn.Sigmoid` in `module` (itself included,
    recursively) run on cygrad's kernels, in place, and return `module`. The modules and
    their Parameters stay the same objects (their class becomes cygrad's `Linear` /
    `Sigmoid`); subclasses of them and every other module are left alone."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    for m in module.modules():
        swap = _SWAPS.get(type(m))
        if swap is not None:
            # cygrad's classes add no state and no __init__ work, so re-classing keeps
            # everything else (parameters, hooks, training flag) exactly as it was.
            m.__class__ = swap
    return module
