"""Adam and AdamW (Adam with decoupled weight decay)."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from .. import backends
from .optimizer import Optimizer, ParamsT, check_number, grad_like, writable_param


def bias_corrections(lr: float, beta1: float, beta2: float, t: int) -> Tuple[float, float]:
    """(step_size, bias_correction2_sqrt) of Adam's step t, as the update kernel takes
    them: lr / (1 - beta1^t) and sqrt(1 - beta2^t)."""
    return lr / (1 - beta1 ** t), math.sqrt(1 - beta2 ** t)


class Adam(Optimizer):
    """PyTorch's Adam (`torch.optim.Adam`), for each parameter p with gradient g, at its
    step t = 1, 2, ...:

        p = p * (1 - lr * weight_decay)          with decoupled_weight_decay (AdamW)
        g = g (or -g with maximize) + weight_decay * p   otherwise
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        v_max = max(v_max, v); v = v_max       with amsgrad
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The state of a parameter is {'step': t, 'exp_avg': m, 'exp_avg_sq': v} (and
    'max_exp_avg_sq' with amsgrad), made at its first step with a gradient. Without
    amsgrad, m, v and p are updated by one call of the active backend's `adam_update`
    kernel (compiled: a single pass); weight decay and maximize first make the gradient
    it takes.
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _check_hyperparameters(self, group: Dict[str, Any], where: str) -> None:
        check_number(f"{where}lr", group["lr"])
        check_number(f"{where}eps", group["eps"])
        check_number(f"{where}weight_decay", group["weight_decay"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{where}betas: expected a pair of numbers in [0, 1), got "
                             f"{betas!r}")
        check_number(f"{where}betas[0]", betas[0], high=1.0)
        check_number(f"{where}betas[1]", betas[1], high=1.0)

    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """One update of every parameter that has a gradient; returns `closure()`'s loss
        when given (called first)."""
        loss = closure() if closure is not None else None
        adam_update = backends.optional_kernel("adam_update")
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
            maximize, decoupled = group["maximize"], group["decoupled_weight_decay"]
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                data = p.data
                if not isinstance(grad, np.ndarray) or grad.shape != data.shape:
                    raise self._bad_grad(p)
                state = self.state[p]
                if not state:
                    # C-ordered whatever the parameter's layout: the kernel writes them.
                    state.update(step=0, exp_avg=np.zeros(data.shape, data.dtype),
                                 exp_avg_sq=np.zeros(data.shape, data.dtype))
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = np.zeros(data.shape, data.dtype)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                if weight_decay and decoupled:
                    data *= 1 - lr * weight_decay
                grad = grad_like(grad, data)
                # Results go through out=: NumPy would turn a 0-d parameter's into scalars.
                if weight_decay and not decoupled:
                    g = np.multiply(data, weight_decay, out=np.empty_like(grad))
                    (np.subtract if maximize else np.add)(g, grad, out=g)
                elif maximize:
                    g = np.negative(grad, out=np.empty_like(grad))
                else:
                    g = grad
                step_size, bias_correction2_sqrt = bias_corrections(lr, beta1, beta2, t)
                param = writable_param(data)
                if amsgrad:
                    _amsgrad_update(param, g, m, v, state["max_exp_avg_sq"], step_size,
                                    beta1, beta2, eps, bias_correction2_sqrt)
                else:
                    adam_update(param, g, m, v, step_size=step_size, beta1=beta1, beta2=beta2,
                                eps=eps, bias_correction2_sqrt=bias_correction2_sqrt)
                if param is not data:
                    data[...] = param
        return loss


def _amsgrad_update(param: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray,
                    v_max: np.ndarray, step_size: float, beta1: float, beta2: float,
                    eps: float, bias_correction2_sqrt: float) -> None:
    """adam_update's formula with the running maximum of v in the denominator, in NumPy
    (the kernel keeps no maximum). Every result goes through out=, so 0-d arrays stay
    arrays."""
    work = np.empty_like(param)
    m *= beta1
    m += np.multiply(g, 1 - beta1, out=work)
    v *= beta2
    v += np.multiply(np.multiply(g, g, out=work), 1 - beta2, out=work)
    np.maximum(v_max, v, out=v_max)
    denom = np.sqrt(v_max, out=work)
    denom /= bias_correction2_sqrt
    denom += eps
    update = np.multiply(m, step_size, out=np.empty_like(param))
    update /= denom
    param -= update


class AdamW(Adam):
    """Adam with decoupled weight decay (`torch.optim.AdamW`): each step first shrinks
    p by the factor (1 - lr * weight_decay), and the gradient carries no decay term."""

    def __init__(self, params: ParamsT, lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)
