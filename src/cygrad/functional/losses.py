"""Losses, as torch.nn.functional's: each one op whose backward is written out.

`reduction` is 'mean' (the default), 'sum' or 'none' (one loss per element, or per sample
for the class losses); see the package docstring for shapes and dtypes.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from ..ops import as_tensor, send
from ..ops.elementwise import sign
from ..tensor import Tensor, TensorLike

_REDUCTIONS = ("mean", "sum", "none")


# -- losses: shared parts -----------------------------------------------------------------

def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _check_smoothing(label_smoothing: float) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(
            label_smoothing, (int, float, np.floating)) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got "
                         f"{label_smoothing!r}")
    return float(label_smoothing)


def _pair(input: TensorLike, target: TensorLike, op: str
          ) -> Tuple[Tensor, Tensor, np.ndarray, np.ndarray]:
    """input and target as Tensors of one shape, and their values in the common dtype."""
    input = as_tensor(input)
    target = as_tensor(target, input)  # integer targets take the input's dtype
    if target.shape != input.shape:
        raise ValueError(f"{op}: target: expected shape {input.shape} (the input's), got "
                         f"{target.shape}; reshape one of them (no broadcasting in losses)")
    dtype = np.result_type(input.dtype, target.dtype)
    return input, target, input.data.astype(dtype, copy=False), \
        target.data.astype(dtype, copy=False)


def _broadcast_weight(weight: Any, shape: Tuple[int, ...], dtype: np.dtype, name: str,
                      op: str) -> Optional[np.ndarray]:
    if weight is None:
        return None
    array = np.asarray(weight.data if isinstance(weight, Tensor) else weight, dtype=dtype)
    try:
        fits = np.broadcast_shapes(array.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: {name}: expected a shape that broadcasts to the input's "
                         f"{shape}, got {array.shape}")
    return array


def _reduce(losses: np.ndarray, reduction: str, denominator: float) -> np.ndarray:
    """The loss value: per element ('none'), total ('sum'), or total / denominator
    ('mean'; NaN when the denominator is 0, as PyTorch's mean of nothing)."""
    if reduction == "none":
        return losses
    total = losses.sum(dtype=losses.dtype)
    if reduction == "sum":
        return np.asarray(total)
    return np.asarray(total / denominator if denominator else np.nan, dtype=losses.dtype)


def _scale(g: np.ndarray, reduction: str, denominator: float) -> np.ndarray:
    """dL/d(each element's loss): g, or g / denominator for 'mean'."""
    if reduction != "mean":
        return g
    return g / denominator if denominator else np.zeros_like(g)


def _elementwise_loss(op: str, losses: np.ndarray, reduction: str,
                      local_grads: Sequence[Tuple[Tensor, Callable[[], np.ndarray]]],
                      value: Optional[np.ndarray] = None) -> Tensor:
    """A loss made of one term per element: `local_grads` pairs each input with the
    derivative of each element's term (computed only in the backward)."""
    reduction = _check_reduction(reduction)
    n = losses.size
    if value is None:
        value = _reduce(losses, reduction, n)

    def backward(g: np.ndarray) -> None:
        scale = _scale(g, reduction, n)
        for t, local in local_grads:
            if t.requires_grad:
                send(t, local() * scale, owned=True)

    return Tensor.from_op(value, [t for t, _ in local_grads], backward, op)


# -- regression losses --------------------------------------------------------------------

def mse_loss(input: TensorLike, target: TensorLike, *, reduction: str = "mean") -> Tensor:
    """(input - target)^2 per element, reduced (by default the mean over all elements).
    d/dinput = 2 (input - target), d/dtarget = -2 (input - target), times the reduction's
    factor (1/N for the mean)."""
    input, target, x, t = _pair(input, target, "mse_loss")
    diff = x - t
    value = None
    if reduction in ("mean", "sum") and diff.size:
        total = np.vdot(diff, diff)  # one pass, no squared temporary
        value = np.asarray(total / diff.size if reduction == "mean" else total, diff.dtype)
    return _elementwise_loss("mse_loss", diff * diff if value is None else diff, reduction,
                             [(input, lambda: 2 * diff), (target, lambda: -2 * diff)], value)


def l1_loss(input: TensorLike, target: TensorLike, *, reduction: str = "mean") -> Tensor:
    """|input - target| per element, reduced. d/dinput = sign(input - target), which is 0
    where input == target and where either is nan (PyTorch's conventions)."""
    input, target, x, t = _pair(input, target, "l1_loss")
    diff = x - t
    return _elementwise_loss("l1_loss", np.abs(diff), reduction,
                             [(input, lambda: sign(diff)), (target, lambda: -sign(diff))])


# -- binary classification losses ---------------------------------------------------------

def binary_cross_entropy(input: TensorLike, target: TensorLike, weight: Any = None, *,
                         reduction: str = "mean") -> Tensor:
    """-weight * (target log(input) + (1 - target) log(1 - input)) per element, for
    probabilities `input` in [0, 1] (a ValueError otherwise).

    PyTorch's conventions at 0 and 1: each log is clamped at -100, so the loss is finite
    (at most 100 per element); d/dinput = weight (input - target) / max(input (1 - input),
    1e-12), finite too; d/dtarget = -weight logit(input), infinite at 0 and 1.
    """
    input, target, x, t = _pair(input, target, "binary_cross_entropy")
    if x.size and not (np.all(x >= 0) and np.all(x <= 1)):
        raise ValueError(f"binary_cross_entropy: input: expected probabilities in [0, 1], "
                         f"got values from {np.nanmin(x)} to {np.nanmax(x)}; for logits "
                         "use binary_cross_entropy_with_logits")
    w = _broadcast_weight(weight, x.shape, x.dtype, "weight", "binary_cross_entropy")
    with np.errstate(divide="ignore"):
        log_x, log_1mx = np.log(x), np.log1p(-x)
    losses = -(t * np.maximum(log_x, -100) + (1 - t) * np.maximum(log_1mx, -100))
    if w is not None:
        losses = losses * w

    def grad_input() -> np.ndarray:
        # PyTorch's floor is the float32 1e-12, also in float64
        grad = (x - t) / np.maximum(x * (1 - x), x.dtype.type(np.float32(1e-12)))
        return grad if w is None else grad * w

    def grad_target() -> np.ndarray:
        grad = log_1mx - log_x
        return grad if w is None else grad * w

    return _elementwise_loss("binary_cross_entropy", losses, reduction,
                             [(input, grad_input), (target, grad_target)])


def binary_cross_entropy_with_logits(input: TensorLike, target: TensorLike,
                                     weight: Any = None, *, reduction: str = "mean",
                                     pos_weight: Any = None) -> Tensor:
    """binary_cross_entropy(sigmoid(input), target) in one stable op:
    weight * ((1 - target) x + (1 + (pos_weight - 1) target) softplus(-x)), with
    softplus(-x) = log(1 + e^-x) computed without overflow. d/dx = weight (l sigmoid(x) -
    pos_weight target) with l = 1 + (pos_weight - 1) target (sigmoid(x) - target without
    pos_weight); d/dtarget = weight (pos_weight softplus(-x) - softplus(x)), which is
    -x + (pos_weight - 1) softplus(-x) without its inf - inf at x = -inf."""
    op = "binary_cross_entropy_with_logits"
    input, target, x, t = _pair(input, target, op)
    w = _broadcast_weight(weight, x.shape, x.dtype, "weight", op)
    pw = _broadcast_weight(pos_weight, x.shape, x.dtype, "pos_weight", op)
    softplus_neg = np.logaddexp(x.dtype.type(0), -x)
    if pw is None:
        losses = (1 - t) * x + softplus_neg
    else:
        losses = (1 - t) * x + (1 + (pw - 1) * t) * softplus_neg
    if w is not None:
        losses = losses * w

    def grad_input() -> np.ndarray:
        probability = np.exp(-softplus_neg)  # sigmoid(x), from the saved softplus
        grad = probability - t if pw is None else (1 + (pw - 1) * t) * probability - pw * t
        return grad if w is None else grad * w

    def grad_target() -> np.ndarray:
        grad = -x if pw is None else pw * softplus_neg - np.logaddexp(x.dtype.type(0), x)
        return grad if w is None else grad * w

    return _elementwise_loss(op, losses, reduction,
                             [(input, grad_input), (target, grad_target)])


# -- class losses -------------------------------------------------------------------------

def _classes(input: TensorLike, target: Any, weight: Any, ignore_index: int, op: str):
    """(input, its values as (N, C), labels (N,), whether each sample counts, the weight
    of each sample's class (0 for an ignored one) or None, class weights or None)."""
    input = as_tensor(input)
    if input.ndim not in (1, 2):
        raise ValueError(f"{op}: input: expected shape (batch, classes) or (classes,), got "
                         f"{input.shape}")
    x = input.data.reshape(-1, input.shape[-1])
    batch, classes = x.shape
    labels = np.asarray(target.data if isinstance(target, Tensor) else target)
    want = (batch,) if input.ndim == 2 else ()
    if labels.shape != want:
        raise ValueError(f"{op}: target: expected class indices of shape {want}, got "
                         f"{labels.shape}")
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and
                                               np.all(labels == np.round(labels))):
        raise TypeError(f"{op}: target: expected integer class indices, got {labels.dtype};"
                        " cast with target.astype(np.int64)")
    labels = labels.astype(np.intp).reshape(batch)
    valid = labels != ignore_index
    if valid.all():
        valid = None
    counted = labels if valid is None else labels[valid]
    if counted.size and (counted.min() < 0 or counted.max() >= classes):
        raise ValueError(f"{op}: target: expected class indices in [0, {classes}) (or "
                         f"ignore_index={ignore_index}), got values from {counted.min()} to "
                         f"{counted.max()}")
    if valid is not None:
        labels = np.where(valid, labels, 0)  # any index: these samples weigh 0
    class_weight = None
    if weight is not None:
        class_weight = np.asarray(weight.data if isinstance(weight, Tensor) else weight,
                                  dtype=x.dtype)
        if class_weight.shape != (classes,):
            raise ValueError(f"{op}: weight: expected one weight per class, shape "
                             f"({classes},), got {class_weight.shape}")
    sample_weight = None
    if class_weight is not None or valid is not None:
        sample_weight = class_weight[labels] if class_weight is not None else \
            np.ones(batch, x.dtype)
        if valid is not None:
            sample_weight = sample_weight * valid
    return input, x, labels, valid, sample_weight, class_weight


def _class_loss(op: str, input: Tensor, losses: np.ndarray, reduction: str,
                denominator: float, grad_fn: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """A loss with one term per sample; `grad_fn(scale)` is dL/dx as (N, C), given
    dL/d(each sample's loss) as (N,) or one number."""
    value = _reduce(losses, reduction, denominator)
    if input.ndim == 1 and reduction == "none":
        value = value.reshape(())

    def backward(g: np.ndarray) -> None:
        scale = _scale(g, reduction, denominator)
        per_sample = scale.reshape(-1) if reduction == "none" else scale
        send(input, grad_fn(per_sample).reshape(input.shape), owned=True)

    return Tensor.from_op(value, (input,), backward, op)


def cross_entropy(input: TensorLike, target: Any, weight: Any = None, *,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of logits `input` (batch, classes) or (classes,) against integer class
    indices `target` (batch,) or (): with log p = log_softmax(input) (the row maximum
    subtracted first: no overflow), a sample's loss is

        w[y] (1 - s) (-log p[y]) + (s / C) sum_c w[c] (-log p[c])

    with s = label_smoothing, C classes and w the class weights (1 if None). Samples whose
    label is `ignore_index` count 0; 'mean' divides by the total w[y] of the others (the
    batch size without weights). d/dinput = (w[y] (1 - s) + (s / C) sum(w)) softmax
    - (1 - s) w[y] onehot(y) - (s / C) w.

    PyTorch's convention at probability 1: a sample whose label gets all the probability
    (say logits (1000, 0), label 0) has loss exactly 0 and gradient 0, not NaN.
    """
    op = "cross_entropy"
    _check_reduction(reduction)
    smoothing = _check_smoothing(label_smoothing)
    input, x, labels, valid, sample_weight, class_weight = _classes(
        input, target, weight, ignore_index, op)
    batch, classes = x.shape
    rows = np.arange(batch)
    shifted = x - x.max(axis=1, keepdims=True) if batch else x
    exps = np.exp(shifted)
    sums = exps.sum(axis=1, keepdims=True)
    log_sums = np.log(sums)
    # 0 - log p, not -log p: a probability of 1 gives a loss of 0.0, not -0.0
    nll = 0 - (shifted[rows, labels] - log_sums[:, 0])
    with np.errstate(invalid="ignore"):  # an ignored sample's inf or nan, replaced below
        losses = nll if sample_weight is None else nll * sample_weight
        if smoothing:
            log_p = shifted - log_sums
            smooth = -(log_p.sum(axis=1) if class_weight is None else log_p @ class_weight)
            losses = (1 - smoothing) * losses + (smoothing / classes) * smooth
    if valid is not None:
        losses = np.where(valid, losses, 0)
    denominator = batch if sample_weight is None else float(sample_weight.sum())

    def grad(row_scale: np.ndarray) -> np.ndarray:
        grad = exps / sums  # softmax
        if sample_weight is None and not smoothing:
            grad[rows, labels] -= 1
        else:
            picked = (1 - smoothing) * (1 if sample_weight is None else sample_weight)
            total_weight = classes if class_weight is None else class_weight.sum()
            spread = (smoothing / classes) * (1 if class_weight is None else class_weight)
            present = 1 if valid is None else valid
            grad *= np.reshape(picked + (smoothing / classes) * total_weight * present,
                               (-1, 1))
            grad[rows, labels] -= picked
            if smoothing:
                grad -= spread * np.reshape(present, (-1, 1))
        grad *= np.reshape(row_scale, (-1, 1)) if np.ndim(row_scale) else row_scale
        return grad

    return _class_loss(op, input, losses.astype(x.dtype, copy=False), reduction,
                       denominator, grad)


def nll_loss(input: TensorLike, target: Any, weight: Any = None, *,
             ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities `input` (batch, classes) or (classes,)
    at integer class indices `target`: -w[y] input[y] per sample (w: class weights, 1 if
    None; 0 for label `ignore_index`). 'mean' divides by the total w[y]. Feed it
    log_softmax(logits, 1): together they are cross_entropy."""
    op = "nll_loss"
    _check_reduction(reduction)
    input, x, labels, valid, sample_weight, _ = _classes(input, target, weight,
                                                         ignore_index, op)
    batch = x.shape[0]
    rows = np.arange(batch)
    picked = 1 if sample_weight is None else sample_weight
    with np.errstate(invalid="ignore"):  # an ignored sample's -inf or nan, replaced below
        losses = 0 - x[rows, labels] * picked
    if valid is not None:
        losses = np.where(valid, losses, 0)
    denominator = batch if sample_weight is None else float(sample_weight.sum())

    def grad(row_scale: np.ndarray) -> np.ndarray:
        grad = np.zeros_like(x)
        grad[rows, labels] = -(picked * row_scale)
        return grad

    return _class_loss(op, input, np.asarray(losses, x.dtype), reduction, denominator, grad)
