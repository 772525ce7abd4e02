"""Loss modules: each holds its options and calls the function of `cygrad.functional`."""
from __future__ import annotations

from typing import Any, Optional

from .. import functional as F
from ..functional.losses import _check_reduction, _check_smoothing
from ..tensor import Tensor, TensorLike
from .module import Module


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class MSELoss(_Loss):
    """`functional.mse_loss`: (input - target)^2, reduced."""

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """`functional.l1_loss`: |input - target|, reduced."""

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return F.l1_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(_Loss):
    """`functional.cross_entropy`: log-softmax of logits and negative log-likelihood of
    integer class labels, with optional class `weight`, `ignore_index` and
    `label_smoothing`."""

    def __init__(self, weight: Optional[Any] = None, ignore_index: int = -100,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, int(ignore_index)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    """`functional.nll_loss`: -input[n, target[n]] on log-probabilities."""

    def __init__(self, weight: Optional[Any] = None, ignore_index: int = -100,
                 reduction: str = "mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, int(ignore_index)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class BCELoss(_Loss):
    """`functional.binary_cross_entropy` on probabilities in [0, 1]."""

    def __init__(self, weight: Optional[Any] = None, reduction: str = "mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """`functional.binary_cross_entropy_with_logits`: sigmoid and BCE in one stable op."""

    def __init__(self, weight: Optional[Any] = None, reduction: str = "mean",
                 pos_weight: Optional[Any] = None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input: Tensor, target: TensorLike) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)
