"""cygrad's kernels as HIPS autograd primitives: `linear(x, w, b)` and `sigmoid(x)`.

    import autograd.numpy as anp
    from autograd import grad
    from cygrad.interop.autograd import linear, sigmoid

    def loss(params, x, t):
        (w1, b1), (w2, b2) = params
        return anp.mean((linear(sigmoid(linear(x, w1, b1)), w2, b2) - t) ** 2)

    grads = grad(loss)(params, x, t)   # cygrad's kernels ran forward and backward

They mix freely with `autograd.numpy` inside any function given to `autograd.grad` (and
`value_and_grad`, `elementwise_grad`, ...). `@primitive` unwraps autograd's boxes, so the
kernels always receive plain NumPy arrays; the vector-Jacobian products (one
`linear_backward` call computes every gradient autograd asks for, skipping the others) run on
plain arrays too. Under a higher-order trace (`grad` of `grad`, `hessian`) the incoming
gradient is itself boxed: the products are then written with `autograd.numpy` so autograd
can differentiate them again. Reverse mode only: forward mode (`make_jvp`) is not defined.

dtypes follow cygrad's kernel contract. Inputs are NumPy arrays (or Python floats, taken as
float64) of float32 or float64, all of one call's arguments of one dtype; anything else is a
`TypeError` naming the argument (`w: expected float32 ... (no silent casting), got float64
...`). Results and gradients have the inputs' dtype. A gradient arriving in another dtype
(autograd promotes, so a float32 output compared with a float64 target receives a float64
gradient) is cast to the output's dtype first.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp, defvjp_argnums, primitive
from autograd.tracer import isbox

from .. import kernels

__all__ = ["linear", "sigmoid"]

Array = np.ndarray


@primitive
def linear(x: Array, w: Array, b: Optional[Array] = None, /) -> Array:
    """`x @ w.T + b` on cygrad's kernels: x (..., in_features), w (out_features,
    in_features), b (out_features,) or None. Arguments are positional: autograd traces only
    positional arguments."""
    return kernels.linear_forward(np.asarray(x), np.asarray(w),
                                  None if b is None else np.asarray(b))


def _linear_vjp(argnums: Sequence[int], ans: Array, args: tuple,
                kwargs: dict) -> Callable[[Array], Tuple[Array, ...]]:
    x, w = args[0], args[1]

    def vjp(g: Array) -> Tuple[Array, ...]:
        if isbox(g) or isbox(x) or isbox(w):
            # Being differentiated again: the same formulas, in ops autograd can trace.
            lead = tuple(range(anp.ndim(x) - 1))
            grads = (anp.dot(g, w), anp.tensordot(g, x, (lead, lead)), anp.sum(g, axis=lead))
        else:
            grads = kernels.linear_backward(
                np.asarray(g, dtype=ans.dtype), np.asarray(x), np.asarray(w),
                need_grad_x=0 in argnums, need_grad_w=1 in argnums, need_grad_b=2 in argnums)
        return tuple(grads[i] for i in argnums)

    return vjp


# defvjp_argnums rather than one defvjp maker per argument: a single kernel call then
# computes all the gradients autograd needs, reading grad_out once.
defvjp_argnums(linear, _linear_vjp)


@primitive
def sigmoid(x: Array) -> Array:
    """`1 / (1 + exp(-x))` element-wise on cygrad's kernels, any shape; its gradient reuses
    the output (no second exp)."""
    return kernels.sigmoid_forward(np.asarray(x))


def _sigmoid_vjp(ans: Array, x: Array) -> Callable[[Array], Array]:
    def vjp(g: Array) -> Array:
        if isbox(g) or isbox(ans):
            return g * ans * (1 - ans)  # differentiable again (see _linear_vjp)
        return kernels.sigmoid_backward(np.asarray(g, dtype=ans.dtype), ans)

    return vjp


defvjp(sigmoid, _sigmoid_vjp)
