"""cygrad's kernels side by side with NumPy (and PyTorch, when installed).

One group per kernel, size and dtype; read a group's table across. The implementations:

- `cygrad`: the public API (`cygrad.kernels`), argument checks included;
- `bare`: cygrad's compiled module called directly, without the checks (what the wrapper
  costs is the difference; at small sizes that is most of the call);
- `numpy`: NumPy at its best, writing into preallocated arrays where NumPy can; the other
  `numpy_*` are other ways of writing it (`numpy_alloc`: the plain expression);
- `torch`: PyTorch on the same memory (`torch.from_numpy`), skipped when not installed.

Each implementation is written once, in cygrad.cli.peers (`python -m cygrad bench` times
the same ones).

Threads: the element-wise loops run on cygrad's own threads, cygrad's default (every
core) in the kernel groups and `cygrad.set_num_threads(n)` in the `threads:` groups. The
products (linear_backward, matmul_backward) run on the BLAS's own threads, whose count is
the BLAS's (e.g. OPENBLAS_NUM_THREADS), not set_num_threads'; cygrad leaves NumPy's BLAS
and its threads as they are. Running the products on cygrad's OpenMP threads instead is
opt-in (CYGRAD_SHARE_THREADS=1 or `cygrad.share_threads()`; `python -m cygrad info` says
which threads run them).
"""
from __future__ import annotations

import numpy as np
import pytest

import cygrad
from cygrad import kernels
from cygrad.cli import peers

pytest.importorskip("cygrad._elementwise", reason="compiled kernels not built")
pytest.importorskip("cygrad._linear", reason="compiled kernels not built")

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


def _torch(impl: str):
    """PyTorch when `impl` is its peer (skipped, saying why, where it is not installed)."""
    if impl != "torch":
        return None
    return pytest.importorskip("torch", reason="PyTorch not installed (optional peer)")


def _f64(*arrays: np.ndarray):
    return [a.astype(np.float64) for a in arrays]


# --- sigmoid_backward: out = g * y * (1 - y) -------------------------------------------------

@pytest.mark.parametrize("impl", ["cygrad", "bare", "numpy", "numpy_alloc", "torch"])
@pytest.mark.parametrize("n", SIGMOID_SIZES, ids=_label)
def test_sigmoid_backward(benchmark, timed, data, check, dtype, n, impl):
    _group(benchmark, f"sigmoid_backward n={_label(n)} {dtype}")
    g, y = data(dtype, (n,), (n,))
    out = np.empty_like(g)
    fn = peers.sigmoid_backward_impls(g, y, out, _torch(impl))[impl]
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

@pytest.mark.parametrize("impl", ["cygrad", "bare", "numpy", "numpy_sum", "numpy_gemv",
                                  "torch"])
@pytest.mark.parametrize("shape", BIAS_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bias_backward(benchmark, timed, data, check, dtype, shape, impl):
    _group(benchmark, f"bias_backward {shape[0]}x{shape[1]} {dtype}")
    (g,) = data(dtype, shape)
    out = np.empty(shape[1], dtype)
    fn = peers.bias_backward_impls(g, out, _torch(impl))[impl]
    result = timed(fn, slow=g.size >= SLOW_ELEMENTS)
    want = g.sum(0, dtype=np.float64)
    check(result if impl == "numpy_sum" else out, want)  # numpy_sum returns a new array


@pytest.mark.parametrize("shape", [(4096, 4096)], ids=lambda s: "x".join(map(str, s)))
def test_threads_bias_backward(benchmark, timed, data, check, dtype, shape, threads):
    _group(benchmark, f"threads: bias_backward {shape[0]}x{shape[1]} {dtype}")
    (g,) = data(dtype, shape)
    out = np.empty(shape[1], dtype)
    timed(lambda: kernels.bias_backward(g, out=out), slow=True)
    check(out, g.sum(0, dtype=np.float64))


def _reset(grads, start):
    def reset():
        for grad, s in zip(grads, start):
            np.copyto(grad, s)
    return reset


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
    grads = [s.copy() for s in start]
    fn = peers.linear_backward_impls(g, x, w, *grads, accumulate=accumulate,
                                     torch=_torch(impl))[impl]
    timed(fn, slow=batch * in_features * out_features >= SLOW_PRODUCT,
          reset=_reset(grads, start) if accumulate else None)
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
    grads = [s.copy() for s in start]
    fn = peers.matmul_backward_impls(g, a, b, *grads, accumulate=accumulate,
                                     torch=_torch(impl))[impl]
    timed(fn, slow=m * k * n >= SLOW_PRODUCT,
          reset=_reset(grads, start) if accumulate else None)
    g, a, b, *start = _f64(g, a, b, *start)
    base = start if accumulate else [0, 0]
    for got, want, s in zip(grads, (g @ b.T, a.T @ g), base):
        check(got, want + s)
