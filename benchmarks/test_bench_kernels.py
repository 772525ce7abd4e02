"""cygrad's kernels side by side with NumPy (and PyTorch, when installed).

One group per kernel, size and dtype; read a group's table across. The implementations:

- `cygrad`: the public API (`cygrad.kernels`), argument checks included;
- `bare`: cygrad's compiled module called directly, without the checks (what the wrapper
  costs is the difference; at small sizes that is most of the call);
- `numpy*`: NumPy at its best, writing into preallocated arrays where NumPy can;
- `torch`: PyTorch on the same memory (`torch.from_numpy`), skipped when not installed.

Thread counts: the kernel groups run with cygrad's default (every core); the `threads:`
groups set it with `cygrad.set_num_threads`. BLAS products use BLAS's own thread pool.
"""
from __future__ import annotations

import numpy as np
import pytest

import cygrad
from cygrad import kernels

_elementwise = pytest.importorskip("cygrad._elementwise", reason="compiled kernels not built")
_linear = pytest.importorskip("cygrad._linear", reason="compiled kernels not built")

SIGMOID_SIZES = [2**10, 2**16, 2**20, 2**24]
BIAS_SHAPES = [(64, 256), (1024, 1024), (4096, 4096)]
# (batch, in_features, out_features) of a linear layer; (m, k, n) of a matmul a @ b.
PRODUCT_SIZES = [(64, 784, 256), (1024, 1024, 1024)]
# From these sizes on a single call takes milliseconds: time a few calls, not a second's worth.
SLOW_ELEMENTS = 2**24
SLOW_PRODUCT = 1024**3  # batch * in_features * out_features, or m * k * n


def _label(n: int) -> str:
    for unit, scale in (("M", 2**20), ("K", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def _group(benchmark, name: str) -> None:
    benchmark.group = name
    benchmark.extra_info.update(backend=cygrad.get_backend(), threads=cygrad.get_num_threads())


def _torch():
    return pytest.importorskip("torch", reason="PyTorch not installed (optional peer)")


def _f64(*arrays: np.ndarray):
    return [a.astype(np.float64) for a in arrays]


# --- sigmoid_backward: out = g * y * (1 - y) -------------------------------------------------

@pytest.mark.parametrize("impl", ["cygrad", "bare", "numpy", "numpy_noalloc", "torch"])
@pytest.mark.parametrize("n", SIGMOID_SIZES, ids=_label)
def test_sigmoid_backward(benchmark, timed, data, check, dtype, n, impl):
    _group(benchmark, f"sigmoid_backward n={_label(n)} {dtype}")
    g, y = data(dtype, (n,), (n,))
    out = np.empty_like(g)
    if impl == "cygrad":
        fn = lambda: kernels.sigmoid_backward(g, y, out=out)  # noqa: E731
    elif impl == "bare":
        fn = lambda: _elementwise.sigmoid_backward(g, y, out, False)  # noqa: E731
    elif impl == "numpy":
        fn = lambda: np.multiply(g * y, 1 - y, out=out)  # noqa: E731
    elif impl == "numpy_noalloc":
        def fn():  # three passes, but no temporaries to allocate and fault in
            np.subtract(1, y, out=out)
            np.multiply(out, y, out=out)
            np.multiply(out, g, out=out)
    else:
        torch = _torch()
        gt, yt, ot = map(torch.from_numpy, (g, y, out))
        # PyTorch's own autograd kernel for sigmoid, writing into `out`
        fn = lambda: torch.ops.aten.sigmoid_backward.grad_input(gt, yt, grad_input=ot)  # noqa
    timed(fn, slow=n >= SLOW_ELEMENTS)
    g, y = _f64(g, y)
    check(out, g * y * (1 - y))


@pytest.mark.parametrize("n", [2**24], ids=_label)
def test_threads_sigmoid_backward(benchmark, timed, data, check, dtype, n, threads):
    _group(benchmark, f"threads: sigmoid_backward n={_label(n)} {dtype}")
    g, y = data(dtype, (n,), (n,))
    out = np.empty_like(g)
    timed(lambda: kernels.sigmoid_backward(g, y, out=out), slow=True)
    g, y = _f64(g, y)
    check(out, g * y * (1 - y))


# --- bias_backward: out = g.sum(0) -----------------------------------------------------------

@pytest.mark.parametrize("impl", ["cygrad", "bare", "numpy_sum", "numpy_sum_out",
                                  "numpy_gemv", "torch"])
@pytest.mark.parametrize("shape", BIAS_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bias_backward(benchmark, timed, data, check, dtype, shape, impl):
    _group(benchmark, f"bias_backward {shape[0]}x{shape[1]} {dtype}")
    (g,) = data(dtype, shape)
    out = np.empty(shape[1], dtype)
    if impl == "cygrad":
        fn = lambda: kernels.bias_backward(g, out=out)  # noqa: E731
    elif impl == "bare":
        fn = lambda: _linear.bias_backward(g, out, False)  # noqa: E731
    elif impl == "numpy_sum":
        fn = lambda: g.sum(0)  # noqa: E731
    elif impl == "numpy_sum_out":
        fn = lambda: np.sum(g, 0, out=out)  # noqa: E731
    elif impl == "numpy_gemv":
        ones = np.ones(shape[0], dtype)
        fn = lambda: np.matmul(ones, g, out=out)  # noqa: E731  (a BLAS matrix-vector product)
    else:
        torch = _torch()
        gt, ot = torch.from_numpy(g), torch.from_numpy(out)
        fn = lambda: torch.sum(gt, 0, out=ot)  # noqa: E731
    result = timed(fn, slow=g.size >= SLOW_ELEMENTS)
    want = g.sum(0, dtype=np.float64)
    check(result if impl == "numpy_sum" else out, want)


@pytest.mark.parametrize("shape", [(4096, 4096)], ids=lambda s: "x".join(map(str, s)))
def test_threads_bias_backward(benchmark, timed, data, check, dtype, shape, threads):
    _group(benchmark, f"threads: bias_backward {shape[0]}x{shape[1]} {dtype}")
    (g,) = data(dtype, shape)
    out = np.empty(shape[1], dtype)
    timed(lambda: kernels.bias_backward(g, out=out), slow=True)
    check(out, g.sum(0, dtype=np.float64))


# --- linear_backward: grad_x = g @ w, grad_w = g.T @ x, grad_b = g.sum(0) --------------------

@pytest.mark.parametrize("impl", ["cygrad", "bare", "numpy", "torch"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["write", "accumulate"])
@pytest.mark.parametrize("size", PRODUCT_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_linear_backward(benchmark, timed, data, check, dtype, size, accumulate, impl):
    batch, in_features, out_features = size
    mode = "accumulate" if accumulate else "write"
    _group(benchmark, f"linear_backward {batch}x{in_features}x{out_features} {mode} {dtype}")
    x, w, g, *start = data(dtype, (batch, in_features), (out_features, in_features),
                           (batch, out_features), (batch, in_features),
                           (out_features, in_features), (out_features,))
    gx, gw, gb = grads = [s.copy() for s in start]
    if impl == "cygrad":
        fn = lambda: kernels.linear_backward(  # noqa: E731
            g, x, w, grad_x=gx, grad_w=gw, grad_b=gb, accumulate=accumulate)
    elif impl == "bare":
        def fn():
            _linear.linear_backward(g, x, w, gx, gw, accumulate)
            _linear.bias_backward(g, gb, accumulate)
    elif impl == "numpy" and accumulate:
        def fn():  # NumPy has no in-place product: each term is a temporary
            np.add(gx, g @ w, out=gx)
            np.add(gw, g.T @ x, out=gw)
            np.add(gb, g.sum(0), out=gb)
    elif impl == "numpy":
        def fn():
            np.matmul(g, w, out=gx)
            np.matmul(g.T, x, out=gw)
            np.sum(g, 0, out=gb)
    else:
        torch = _torch()
        gt, xt, wt, gxt, gwt, gbt = map(torch.from_numpy, (g, x, w, gx, gw, gb))
        if accumulate:
            def fn():  # addmm_ is BLAS with beta = 1, no temporary
                gxt.addmm_(gt, wt)
                gwt.addmm_(gt.T, xt)
                gbt.add_(gt.sum(0))
        else:
            def fn():
                torch.mm(gt, wt, out=gxt)
                torch.mm(gt.T, xt, out=gwt)
                torch.sum(gt, 0, out=gbt)

    def reset():
        for grad, s in zip(grads, start):
            np.copyto(grad, s)

    timed(fn, slow=batch * in_features * out_features >= SLOW_PRODUCT,
          reset=reset if accumulate else None)
    g, x, w, *start = _f64(g, x, w, *start)
    base = start if accumulate else [0, 0, 0]
    for got, want, b in zip(grads, (g @ w, g.T @ x, g.sum(0)), base):
        check(got, want + b)


# --- matmul_backward, out = a @ b: grad_a = g @ b.T, grad_b = a.T @ g ------------------------

@pytest.mark.parametrize("impl", ["cygrad", "bare", "numpy", "torch"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["write", "accumulate"])
@pytest.mark.parametrize("size", PRODUCT_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_backward(benchmark, timed, data, check, dtype, size, accumulate, impl):
    m, k, n = size
    mode = "accumulate" if accumulate else "write"
    _group(benchmark, f"matmul_backward {m}x{k}x{n} {mode} {dtype}")
    a, b, g, *start = data(dtype, (m, k), (k, n), (m, n), (m, k), (k, n))
    ga, gb = grads = [s.copy() for s in start]
    if impl == "cygrad":
        fn = lambda: kernels.matmul_backward(  # noqa: E731
            g, a, b, grad_a=ga, grad_b=gb, accumulate=accumulate)
    elif impl == "bare":
        fn = lambda: _linear.matmul_backward(g, a, b, ga, gb, accumulate)  # noqa: E731
    elif impl == "numpy" and accumulate:
        def fn():
            np.add(ga, g @ b.T, out=ga)
            np.add(gb, a.T @ g, out=gb)
    elif impl == "numpy":
        def fn():
            np.matmul(g, b.T, out=ga)
            np.matmul(a.T, g, out=gb)
    else:
        torch = _torch()
        gt, at, bt, gat, gbt = map(torch.from_numpy, (g, a, b, ga, gb))
        if accumulate:
            def fn():
                gat.addmm_(gt, bt.T)
                gbt.addmm_(at.T, gt)
        else:
            def fn():
                torch.mm(gt, bt.T, out=gat)
                torch.mm(at.T, gt, out=gbt)

    def reset():
        for grad, s in zip(grads, start):
            np.copyto(grad, s)

    timed(fn, slow=m * k * n >= SLOW_PRODUCT, reset=reset if accumulate else None)
    g, a, b, *start = _f64(g, a, b, *start)
    base = start if accumulate else [0, 0]
    for got, want, s in zip(grads, (g @ b.T, a.T @ g), base):
        check(got, want + s)
