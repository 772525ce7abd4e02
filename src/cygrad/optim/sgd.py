"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import numpy as np

from .. import backends
from .optimizer import Optimizer, ParamsT, check_number, grad_like, writable_param


class SGD(Optimizer):
    """PyTorch's SGD (`torch.optim.SGD`), for each parameter p with gradient g:

        d = g (or -g with maximize) + weight_decay * p
        buf = d on the first step, then momentum * buf + (1 - dampening) * d
        d = d + momentum * buf with nesterov, else buf   (when momentum != 0)
        p = p - lr * d

    The state of a parameter is {'momentum_buffer': buf} once momentum has been used.
    Each parameter is updated by one call of the active backend's `sgd_update` kernel
    (compiled: a single pass over the parameter, its gradient and its buffer).
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _check_hyperparameters(self, group: Dict[str, Any], where: str) -> None:
        check_number(f"{where}lr", group["lr"])
        check_number(f"{where}momentum", group["momentum"])
        check_number(f"{where}dampening", group["dampening"], low=-math.inf)
        check_number(f"{where}weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{where}nesterov: requires momentum > 0 and dampening = 0, "
                             f"got momentum={group['momentum']!r} and "
                             f"dampening={group['dampening']!r}")

    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """One update of every parameter that has a gradient; returns `closure()`'s loss
        when given (called first)."""
        loss = closure() if closure is not None else None
        sgd_update = backends.optional_kernel("sgd_update")
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            maximize = group["maximize"]
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                data = p.data
                if not isinstance(grad, np.ndarray) or grad.shape != data.shape:
                    raise self._bad_grad(p)
                buf, first = None, False
                if momentum:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        # An array even for a 0-d parameter: the kernel writes into it.
                        buf = state["momentum_buffer"] = np.empty(data.shape, data.dtype)
                        first = True
                param = writable_param(data)
                sgd_update(param, grad_like(grad, data), buf, lr=lr, momentum=momentum,
                           dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                           maximize=maximize, first=first)
                if param is not data:
                    data[...] = param
        return loss
