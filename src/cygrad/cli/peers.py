"""Each peer written once: cygrad and the libraries it is compared with, on the same data.

Kernel peers: `<kernel>_impls(...)` takes the inputs and the output arrays and returns
{implementation name: zero-argument call}, every call writing the same outputs:

- "cygrad": the public API (`cygrad.kernels`), argument checks included;
- "bare": cygrad's compiled module called directly, without the checks (present when the
  compiled module is built; what the checks cost is the difference);
- "numpy": NumPy at its best, writing into the preallocated outputs where NumPy can;
  other "numpy_*" names are other ways a NumPy user would write it;
- "torch": PyTorch on the same memory (`torch.from_numpy`), when `torch` is given.

Training peers: one MLP training step (784-H-10, sigmoid hidden layer, MSE loss, plain SGD)
as a user of each library would write it: cygrad's graph layer, NumPy by hand (forward and
backward written out), the compiled step (`cygrad.compile`), PyTorch eager, HIPS autograd
and JAX's jit (when installed), all from the same weights and data; the step's kernel calls
alone (the floor a replayed step approaches); and the cost of one recorded op.

`python -m cygrad bench` and the suites in benchmarks/ time these; neither has its own copy.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .. import functional as F
from .. import kernels, nn, optim
from ..compile import compile as compile_step
from ..tensor import Tensor

Step = Callable[[], object]
Impls = Dict[str, Step]  # implementation name -> zero-argument call
IN_FEATURES, OUT_FEATURES, LR = 784, 10, 0.01


def _import(name: str) -> Optional[ModuleType]:
    """The module `name` (a peer, or one of cygrad's compiled modules), or None where it is
    not installed or built."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# -- kernels ------------------------------------------------------------------------------

def sigmoid_backward_impls(g: np.ndarray, y: np.ndarray, out: np.ndarray,
                           torch: Optional[ModuleType] = None) -> Impls:
    """out = g * y * (1 - y)."""
    def numpy() -> None:  # three passes, but no temporaries to allocate and fault in
        np.subtract(1, y, out=out)
        np.multiply(out, y, out=out)
        np.multiply(out, g, out=out)

    impls: Impls = {"cygrad": lambda: kernels.sigmoid_backward(g, y, out=out),
                    "numpy": numpy,
                    "numpy_alloc": lambda: np.multiply(g * y, 1 - y, out=out)}
    elementwise = _import("cygrad._elementwise")
    if elementwise is not None:
        impls["bare"] = lambda: elementwise.sigmoid_backward(g, y, out, False)
    if torch is not None:
        gt, yt, ot = map(torch.from_numpy, (g, y, out))
        # PyTorch's own autograd kernel for sigmoid, writing into `out`
        impls["torch"] = lambda: torch.ops.aten.sigmoid_backward.grad_input(
            gt, yt, grad_input=ot)
    return impls


def bias_backward_impls(g: np.ndarray, out: np.ndarray,
                        torch: Optional[ModuleType] = None) -> Impls:
    """out = g.sum(0). "numpy_sum" returns a new array instead of writing `out`."""
    ones = np.ones(g.shape[0], g.dtype)
    impls: Impls = {"cygrad": lambda: kernels.bias_backward(g, out=out),
                    "numpy": lambda: np.sum(g, 0, out=out),
                    "numpy_sum": lambda: g.sum(0),
                    # a BLAS matrix-vector product
                    "numpy_gemv": lambda: np.matmul(ones, g, out=out)}
    linear = _import("cygrad._linear")
    if linear is not None:
        impls["bare"] = lambda: linear.bias_backward(g, out, False)
    if torch is not None:
        gt, ot = torch.from_numpy(g), torch.from_numpy(out)
        impls["torch"] = lambda: torch.sum(gt, 0, out=ot)
    return impls


def linear_backward_impls(g: np.ndarray, x: np.ndarray, w: np.ndarray, grad_x: np.ndarray,
                          grad_w: np.ndarray, grad_b: np.ndarray, accumulate: bool = False,
                          torch: Optional[ModuleType] = None) -> Impls:
    """grad_x = g @ w, grad_w = g.T @ x, grad_b = g.sum(0); added into them when
    `accumulate`."""
    gx, gw, gb = grad_x, grad_w, grad_b

    def numpy() -> None:
        if accumulate:  # NumPy has no in-place product: each term is a temporary
            np.add(gx, g @ w, out=gx)
            np.add(gw, g.T @ x, out=gw)
            np.add(gb, g.sum(0), out=gb)
        else:
            np.matmul(g, w, out=gx)
            np.matmul(g.T, x, out=gw)
            np.sum(g, 0, out=gb)

    impls: Impls = {"cygrad": lambda: kernels.linear_backward(
        g, x, w, grad_x=gx, grad_w=gw, grad_b=gb, accumulate=accumulate), "numpy": numpy}
    linear = _import("cygrad._linear")
    if linear is not None:
        def bare() -> None:
            linear.linear_backward(g, x, w, gx, gw, accumulate)
            linear.bias_backward(g, gb, accumulate)
        impls["bare"] = bare
    if torch is not None:
        gt, xt, wt, gxt, gwt, gbt = map(torch.from_numpy, (g, x, w, gx, gw, gb))

        def torch_impl() -> None:
            if accumulate:  # addmm_ is a product with beta = 1, no temporary
                gxt.addmm_(gt, wt)
                gwt.addmm_(gt.T, xt)
                gbt.add_(gt.sum(0))
            else:
                torch.mm(gt, wt, out=gxt)
                torch.mm(gt.T, xt, out=gwt)
                torch.sum(gt, 0, out=gbt)
        impls["torch"] = torch_impl
    return impls


def matmul_backward_impls(g: np.ndarray, a: np.ndarray, b: np.ndarray, grad_a: np.ndarray,
                          grad_b: np.ndarray, accumulate: bool = False,
                          torch: Optional[ModuleType] = None) -> Impls:
    """For out = a @ b: grad_a = g @ b.T, grad_b = a.T @ g; added into them when
    `accumulate`."""
    ga, gb = grad_a, grad_b

    def numpy() -> None:
        if accumulate:
            np.add(ga, g @ b.T, out=ga)
            np.add(gb, a.T @ g, out=gb)
        else:
            np.matmul(g, b.T, out=ga)
            np.matmul(a.T, g, out=gb)

    impls: Impls = {"cygrad": lambda: kernels.matmul_backward(
        g, a, b, grad_a=ga, grad_b=gb, accumulate=accumulate), "numpy": numpy}
    linear = _import("cygrad._linear")
    if linear is not None:
        impls["bare"] = lambda: linear.matmul_backward(g, a, b, ga, gb, accumulate)
    if torch is not None:
        gt, at, bt, gat, gbt = map(torch.from_numpy, (g, a, b, ga, gb))

        def torch_impl() -> None:
            if accumulate:
                gat.addmm_(gt, bt.T)
                gbt.addmm_(at.T, gt)
            else:
                torch.mm(gt, bt.T, out=gat)
                torch.mm(at.T, gt, out=gbt)
        impls["torch"] = torch_impl
    return impls


# -- a whole training step ----------------------------------------------------------------


def _problem(batch: int, hidden: int, dtype: np.dtype) -> tuple:
    rng = np.random.default_rng(0)
    x = rng.random((batch, IN_FEATURES), dtype=np.float64).astype(dtype)
    target = rng.random((batch, OUT_FEATURES), dtype=np.float64).astype(dtype)
    model = nn.Sequential(nn.Linear(IN_FEATURES, hidden, dtype=dtype, rng=1), nn.Sigmoid(),
                          nn.Linear(hidden, OUT_FEATURES, dtype=dtype, rng=2))
    return x, target, model


def cygrad_step(batch: int, hidden: int, dtype=np.float32) -> Step:
    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    x = Tensor(x)
    opt = optim.SGD(model.parameters(), lr=LR)

    def step() -> float:
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def numpy_step(batch: int, hidden: int, dtype=np.float32) -> Step:
    """The step written out by hand: the forward, the chain rule, the update."""
    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    w1, b1, w2, b2 = (p.data.copy() for p in model.parameters())

    def step() -> float:
        nonlocal w1, b1, w2, b2  # updated in place; nonlocal only for the -= statements
        z = x @ w1.T
        z += b1
        h = 1 / (1 + np.exp(-z))
        out = h @ w2.T
        out += b2
        diff = out - target
        loss = np.vdot(diff, diff) / diff.size
        grad_out = diff * np.asarray(2 / diff.size, diff.dtype)
        grad_h = grad_out @ w2
        grad_z = grad_h * h * (1 - h)
        w2 -= LR * (grad_out.T @ h)
        b2 -= LR * grad_out.sum(0)
        w1 -= LR * (grad_z.T @ x)
        b1 -= LR * grad_z.sum(0)
        return float(loss)
    return step


def torch_step(batch: int, hidden: int, dtype=np.float32) -> Optional[Step]:
    torch = _import("torch")
    if torch is None:
        return None
    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    net = torch.nn.Sequential(torch.nn.Linear(IN_FEATURES, hidden), torch.nn.Sigmoid(),
                              torch.nn.Linear(hidden, OUT_FEATURES)).to(
        torch.float32 if np.dtype(dtype) == np.float32 else torch.float64)
    with torch.no_grad():
        for mine, theirs in zip(model.parameters(), net.parameters()):
            theirs.copy_(torch.from_numpy(mine.data))
    xt, tt = torch.from_numpy(x), torch.from_numpy(target)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()

    def step() -> float:
        opt.zero_grad()
        loss = loss_fn(net(xt), tt)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def autograd_step(batch: int, hidden: int, dtype=np.float32) -> Optional[Step]:
    autograd = _import("autograd")
    if autograd is None:
        return None
    import autograd.numpy as anp

    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    params: List[np.ndarray] = [p.data.copy() for p in model.parameters()]

    def loss_fn(ps: List[np.ndarray]) -> float:
        w1, b1, w2, b2 = ps
        h = 1 / (1 + anp.exp(-(anp.dot(x, w1.T) + b1)))
        diff = anp.dot(h, w2.T) + b2 - target
        return anp.mean(diff * diff)

    value_and_grad = autograd.value_and_grad(loss_fn)

    def step() -> float:
        loss, grads = value_and_grad(params)
        for p, g in zip(params, grads):
            p -= LR * g
        return float(loss)
    return step


def compiled_step(batch: int, hidden: int, dtype=np.float32) -> Step:
    """cygrad's step recorded once by `cygrad.compile` and replayed."""
    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    opt = optim.SGD(model.parameters(), lr=LR)
    step = compile_step(lambda x, y: F.mse_loss(model(x), y), opt, strict=True)
    return lambda: step(x, target).item()


def jax_step(batch: int, hidden: int, dtype=np.float32) -> Optional[Step]:
    """The loss, its gradient and the update in one `jax.jit` function. float32 only:
    JAX computes float64 only where x64 is switched on process-wide."""
    jax = _import("jax")
    if jax is None or np.dtype(dtype) != np.float32:
        return None
    jnp = jax.numpy
    x, target, model = _problem(batch, hidden, np.dtype(dtype))
    params = [jnp.asarray(p.data) for p in model.parameters()]
    x, target = jnp.asarray(x), jnp.asarray(target)

    def loss_fn(params, x, y):
        w1, b1, w2, b2 = params
        out = jax.nn.sigmoid(x @ w1.T + b1) @ w2.T + b2
        return jnp.mean((out - y) ** 2)

    @jax.jit
    def update(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return [p - LR * g for p, g in zip(params, grads)], loss

    def step() -> float:
        nonlocal params
        params, loss = update(params, x, target)
        return float(loss)
    return step


def kernel_calls(batch: int, hidden: int, dtype=np.float32) -> Step:
    """The step's forward and backward kernel calls alone, into preallocated arrays: the
    floor a replayed step approaches (no loss or update: those are element-wise)."""
    x, _, model = _problem(batch, hidden, np.dtype(dtype))
    w1, b1, w2, b2 = (p.data for p in model.parameters())
    z, out = np.empty((batch, hidden), dtype), np.empty((batch, OUT_FEATURES), dtype)
    grad_h, grad_z = np.empty_like(z), np.empty_like(z)
    grads = [np.empty_like(p) for p in (w1, b1, w2, b2)]
    grad_out = np.full((batch, OUT_FEATURES), 0.01, dtype)

    def step() -> float:
        kernels.linear_forward(x, w1, b1, out=z)
        kernels.sigmoid_forward(z, out=z)
        kernels.linear_forward(z, w2, b2, out=out)
        kernels.linear_backward(grad_out, z, w2, grad_x=grad_h, grad_w=grads[2],
                                grad_b=grads[3])
        kernels.sigmoid_backward(grad_h, z, out=grad_z)
        kernels.linear_backward(grad_z, x, w1, grad_w=grads[0], grad_b=grads[1],
                                need_grad_x=False)
        return float(out[0, 0])
    return step


def training_steps(batch: int, hidden: int, dtype=np.float32) -> Dict[str, Step]:
    """Implementation name -> one training step; peers that are not installed are left out."""
    steps = {"cygrad": cygrad_step(batch, hidden, dtype),
             "compiled": compiled_step(batch, hidden, dtype),
             "numpy": numpy_step(batch, hidden, dtype),
             "torch": torch_step(batch, hidden, dtype),
             "autograd": autograd_step(batch, hidden, dtype),
             "jax": jax_step(batch, hidden, dtype)}
    return {name: step for name, step in steps.items() if step is not None}


CHAIN_LENGTH = 100


def recorded_chain(length: int = CHAIN_LENGTH) -> Dict[str, Step]:
    """The graph's cost per op: record `length` multiplications of a 1-element float32
    tensor by itself in a chain (y = y * x), then run backward; a call's time over
    `length` is the cost of one recorded op, forward and backward. A call returns the
    gradient, (length + 1) x^length."""
    def chain(x: Any) -> Step:  # the same code on a cygrad Tensor and a torch tensor
        def step() -> object:
            x.grad = None
            y = x
            for _ in range(length):
                y = y * x
            y.sum().backward()
            return x.grad
        return step
    impls: Impls = {"cygrad": chain(Tensor(np.full(1, 1.0001, np.float32),
                                           requires_grad=True))}
    torch = _import("torch")
    if torch is not None:
        impls["torch"] = chain(torch.full((1,), 1.0001, dtype=torch.float32,
                                          requires_grad=True))
    return impls


def recorded_op() -> Dict[str, Step]:
    """The graph's own cost: record one multiply of two 1-element tensors, run backward."""
    a, b = Tensor(np.ones(1), requires_grad=True), Tensor(np.ones(1), requires_grad=True)

    def cygrad() -> None:
        a.grad = b.grad = None
        (a * b).sum().backward()
    impls: Impls = {"cygrad": cygrad}
    torch = _import("torch")
    if torch is not None:
        at = torch.ones(1, dtype=torch.float64, requires_grad=True)
        bt = torch.ones(1, dtype=torch.float64, requires_grad=True)

        def torch_op() -> None:
            at.grad = bt.grad = None
            (at * bt).sum().backward()
        impls["torch"] = torch_op
    return impls
