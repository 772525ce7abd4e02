"""Neural-network functions, as torch.nn.functional: layers, activations, dropout and
losses. Each loss is one op whose backward is written out (no graph of small ops).

Losses take `reduction` = 'mean' (the default), 'sum' or 'none' (one loss per element,
or per sample for the class losses). `input` and `target` must have the same shape:
PyTorch broadcasts (N, 1) against (N,) into (N, N) with only a warning, a silent wrong
loss. The loss is computed in the common dtype of input and target (float32 with
float64 gives float64, as in PyTorch); each gradient has its tensor's dtype.
"""
from __future__ import annotations

from typing import Iterable, List, Optional

import numpy as np

from .. import backends
from ..creation import default_generator
from ..ops import as_tensor, log_softmax, relu, send, sigmoid, softmax, tanh
from ..tensor import Tensor, TensorLike
from .losses import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                     l1_loss, mse_loss, nll_loss)

__all__ = ["linear", "sigmoid", "relu", "tanh", "softmax", "log_softmax", "dropout",
           "mse_loss", "l1_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "l2_penalty"]


# -- layers -------------------------------------------------------------------------------

def _slots(tensors: Iterable[Optional[Tensor]]) -> tuple:
    """Gradient buffers for a kernel that writes several gradients with one `accumulate`
    flag: when some buffers already hold a gradient and others are new, the new ones are
    zeroed so that accumulating into all of them is right."""
    wanted = [t if t is not None and t.requires_grad else None for t in tensors]
    slots = [t.grad_slot() if t is not None else (None, False) for t in wanted]
    accumulate = any(acc for _, acc in slots)
    if accumulate:
        for buffer, acc in slots:
            if buffer is not None and not acc:
                buffer.fill(0)
    return [buffer for buffer, _ in slots], accumulate


def linear(input: TensorLike, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """y = input @ weight.T + bias, with input (..., in_features), weight (out_features,
    in_features) and bias (out_features,) or None: one forward and one backward kernel
    call."""
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"linear: {name}: expected a Tensor (as torch.nn.functional."
                            f"linear does), got {type(value).__name__}: pass "
                            f"cg.Tensor({name})")
    x = as_tensor(input, weight)
    k = backends.active()
    y = k.linear_forward(x.data, weight.data, None if bias is None else bias.data)

    def backward(g: np.ndarray) -> None:
        (grad_x, grad_w, grad_b), accumulate = _slots((x, weight, bias))
        k.linear_backward(g, x.data, weight.data, grad_x=grad_x, grad_w=grad_w,
                          grad_b=grad_b, accumulate=accumulate,
                          need_grad_x=grad_x is not None, need_grad_w=grad_w is not None,
                          need_grad_b=grad_b is not None)

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(y, parents, backward, "linear")


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,
            *, rng: object = None) -> Tensor:
    """In training, each element is zeroed with probability `p` and the others are scaled
    by 1 / (1 - p), so the expected value is unchanged; with training=False (or p=0) the
    input is returned. The mask is drawn from `rng` (a NumPy Generator or seed); without
    it, from cygrad's default generator, which `cg.manual_seed(seed)` resets (as
    torch.manual_seed does for PyTorch's dropout). `inplace` is accepted for
    compatibility: the result is a new tensor."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p <= 1:
        raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return input
    # default_generator() each time: manual_seed replaces the generator
    rng = default_generator() if rng is None else np.random.default_rng(rng)
    x = as_tensor(input)
    if p == 1:
        mask = np.zeros(x.shape, x.dtype)
    else:
        mask = rng.random(x.shape, dtype=x.dtype) >= x.dtype.type(p)
        mask = mask * x.dtype.type(1 / (1 - p))

    def backward(g: np.ndarray) -> None:
        send(x, g * mask, owned=True)

    return Tensor.from_op(x.data * mask, (x,), backward, "dropout")


# -- regularization -----------------------------------------------------------------------

def l2_penalty(params: Iterable[Tensor], lam: float) -> Tensor:
    """The weight-decay regularizer lam/2 * sum of w^2 over every parameter (the notes'
    R = 1/2 w^2 times lambda); its gradient for each parameter is lam * w."""
    params: List[Tensor] = list(params)
    if not params:
        raise ValueError("params: expected at least one tensor")
    dtype = np.result_type(*(p.dtype for p in params))
    total = np.asarray(lam / 2 * sum(float(np.vdot(p.data, p.data)) for p in params),
                       dtype=dtype)

    def backward(g: np.ndarray) -> None:
        for p in params:
            if p.requires_grad:
                p.add_grad((g * lam).astype(p.dtype) * p.data, owned=True)

    return Tensor.from_op(total, params, backward, "l2_penalty")
