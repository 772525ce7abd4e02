"""Neural-network functions: layers and losses, each a single op with a fused backward."""
from __future__ import annotations

from typing import Iterable, List, Optional

import numpy as np

from . import backends
from .ops import as_tensor, relu, sigmoid, tanh
from .tensor import Tensor, TensorLike

__all__ = ["linear", "sigmoid", "relu", "tanh", "mse_loss", "cross_entropy", "l2_penalty"]


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


def linear(x: TensorLike, w: Tensor, b: Optional[Tensor] = None) -> Tensor:
    """y = x @ w.T + b, with x (..., in_features), w (out_features, in_features) and
    b (out_features,) or None: one forward and one backward kernel call."""
    x = as_tensor(x, w)
    k = backends.active()
    y = k.linear_forward(x.data, w.data, None if b is None else b.data)

    def backward(g: np.ndarray) -> None:
        (grad_x, grad_w, grad_b), accumulate = _slots((x, w, b))
        k.linear_backward(g, x.data, w.data, grad_x=grad_x, grad_w=grad_w, grad_b=grad_b,
                          accumulate=accumulate, need_grad_x=grad_x is not None,
                          need_grad_w=grad_w is not None, need_grad_b=grad_b is not None)

    parents = (x, w) if b is None else (x, w, b)
    return Tensor.from_op(y, parents, backward, "linear")


def mse_loss(prediction: Tensor, target: TensorLike) -> Tensor:
    """Mean squared error over all elements (PyTorch's default): mean((prediction - target)^2).
    dL/dprediction = 2 (prediction - target) / N."""
    target = as_tensor(target, prediction)
    if target.shape != prediction.shape:
        raise ValueError(f"target: expected shape {prediction.shape} (the prediction's), "
                         f"got {target.shape}")
    diff = prediction.data - target.data
    n = diff.size
    loss = np.asarray(np.vdot(diff, diff) / n, dtype=diff.dtype)

    def backward(g: np.ndarray) -> None:
        grad = diff * (g * (2 / n)).astype(diff.dtype)
        if target.requires_grad:
            target.add_grad(-grad, owned=True)
        if prediction.requires_grad:
            prediction.add_grad(grad, owned=True)

    return Tensor.from_op(loss, (prediction, target), backward, "mse_loss")


def cross_entropy(logits: Tensor, labels: object) -> Tensor:
    """Mean over the batch of -log softmax(logits)[label]; logits (batch, classes), labels
    integer class indices (batch,). Computed through a stable log-softmax (the row maximum
    is subtracted before exp). dL/dlogits = (softmax(logits) - onehot(labels)) / batch."""
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (batch, classes), got {logits.shape}")
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    batch, classes = logits.shape
    if labels.shape != (batch,):
        raise ValueError(f"labels: expected shape ({batch},), got {labels.shape}")
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and
                                               np.all(labels == np.round(labels))):
        raise TypeError(f"labels: expected integer class indices, got {labels.dtype}")
    labels = labels.astype(np.intp)
    if batch and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels: expected class indices in [0, {classes}), got values "
                         f"from {labels.min()} to {labels.max()}")
    shifted = logits.data - logits.data.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = exps.sum(axis=1, keepdims=True)
    rows = np.arange(batch)
    log_probs = shifted[rows, labels] - np.log(sums[:, 0])
    loss = np.asarray(-log_probs.mean() if batch else np.nan, dtype=logits.dtype)

    def backward(g: np.ndarray) -> None:
        grad = exps / sums  # softmax
        grad[rows, labels] -= 1
        grad *= (g / batch).astype(grad.dtype)
        logits.add_grad(grad, owned=True)

    return Tensor.from_op(loss, (logits,), backward, "cross_entropy")


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
