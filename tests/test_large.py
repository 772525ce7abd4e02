"""Arrays of more than 2^31 elements (float32, ~8.6 GB each): indices past int32 range.

Opt-in, and slow (about a minute, up to ~11 GiB of memory): they carry the `large` marker
and run only when a marker expression selects it, otherwise they are skipped saying so:

    python -m pytest -m large -q -p no:cacheprovider

The data are patterned so that every result is known exactly without a second big array:
zeros (np.zeros maps them lazily, so reading them costs no memory) with a few marked
elements at the start, middle, around 2^31 and at the end. A loop that stops short, wraps
around at 2^31 or reads the wrong element changes a sum or leaves a marker out.
"""
from __future__ import annotations


import numpy as np
import pytest

import cygrad as cg

pytestmark = pytest.mark.large


@pytest.fixture(autouse=True)
def _only_when_asked_for(request):
    """Skipped unless `-m` names the marker: each array is ~8.6 GB and the file takes about
    a minute, too much for an ordinary run."""
    if "large" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("arrays of 2^31+ elements (~8.6 GB each, about a minute): "
                    "run with -m large")

GiB = 1 << 30
INT32_LIMIT = 2 ** 31
N = INT32_LIMIT + 128        # the buffer: divisible by 8 and 128
N1 = INT32_LIMIT + 17        # the element-wise kernels' length: an odd tail
MARKS = [0, 1, 7, 2 ** 30 + 3, INT32_LIMIT - 2, INT32_LIMIT - 1, INT32_LIMIT,
         INT32_LIMIT + 1, INT32_LIMIT + 9, N1 - 1]


def _require_memory(gib: float) -> None:
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    available = int(fields["MemAvailable"].split()[0]) * 1024
    if available < gib * GiB:
        pytest.skip(f"needs {gib} GiB of available memory, {available / GiB:.1f} GiB free")


def _marked_zeros(n: int) -> np.ndarray:
    """float32 zeros, and 1, 2, 3, ... at MARKS (small integers: every sum is exact)."""
    a = np.zeros(n, np.float32)
    a[MARKS] = np.arange(1, len(MARKS) + 1, dtype=np.float32)
    return a


def test_sigmoid_kernels_past_2_31_elements():
    """sigmoid_backward (threaded, serial, accumulating) and sigmoid_forward (chunked per
    thread), in place on 2^31 + 17 elements: each element written once with its own
    value, nothing past the end."""
    _require_memory(12)
    k = cg.kernels
    g = np.full(N, 2.0, np.float32)
    y = np.zeros(N, np.float32)
    marks = np.array(MARKS)
    g[marks] = np.arange(1, len(MARKS) + 1, dtype=np.float32)
    y[marks] = 0.25  # y (1 - y) = 3/16, exact
    cg.set_num_threads(2)

    # out = g * y * (1 - y): 0 where y = 0, g * 3/16 at the marks
    assert k.sigmoid_backward(g[:N1], y[:N1], out=g[:N1]) is not None
    want = np.arange(1, len(MARKS) + 1, dtype=np.float32) * np.float32(0.1875)
    np.testing.assert_array_equal(g[marks], want)
    assert np.count_nonzero(g[:N1]) == len(MARKS)
    assert (g[N1:] == 2.0).all()  # past n: untouched

    # accumulate, on one thread: + y * y * (1 - y) = 3/64 at the marks
    cg.set_num_threads(1)
    k.sigmoid_backward(y[:N1], y[:N1], out=g[:N1], accumulate=True)
    want = want + np.float32(0.046875)
    np.testing.assert_array_equal(g[marks], want)
    assert np.count_nonzero(g[:N1]) == len(MARKS)

    # forward, in place: sigmoid(0) = 1/2 everywhere but the marks
    cg.set_num_threads(2)
    k.sigmoid_forward(g[:N1], out=g[:N1])
    np.testing.assert_allclose(g[marks], 1 / (1 + np.exp(-want.astype(np.float64))),
                               rtol=1e-6)
    assert np.count_nonzero(g[:N1] != 0.5) == len(MARKS)
    assert (g[N1:] == 2.0).all()


@pytest.mark.parametrize("shape", [(N // 8, 8), (N // 128, 128), (2, N // 16, 8), (N, 1),
                                   (1, N)], ids=["rows-x8", "rows-x128", "3d", "Nx1", "1xN"])
def test_bias_backward_past_2_31_elements(shape):
    """Column sums of 2^31 + 128 elements in several shapes, among them more than 2^31 rows
    (BLAS takes them in blocks) and more than 2^31 columns: exactly the marks' sums."""
    _require_memory(11)
    g = _marked_zeros(N).reshape(shape)
    cols = shape[-1]
    want = np.zeros(cols, np.float64)
    np.add.at(want, np.array(MARKS) % cols, np.arange(1, len(MARKS) + 1))
    out = cg.kernels.bias_backward(g)
    assert out.shape == (cols,) and out.dtype == np.float32
    if cols > len(MARKS):
        np.testing.assert_array_equal(out[np.array(MARKS) % cols], want[np.array(MARKS) % cols])
        assert np.count_nonzero(out) == np.count_nonzero(want)
    else:
        np.testing.assert_array_equal(out, want)
    if cols <= 128:  # accumulating into a start of ones
        start = np.ones(cols, np.float32)
        assert cg.kernels.bias_backward(g, out=start, accumulate=True) is start
        np.testing.assert_array_equal(start, want + 1)


ROWS = INT32_LIMIT + 1


def test_linear_forward_with_more_than_2_31_rows():
    """2^31 + 1 rows, no input features (no memory for x), a bias of 5: every output row
    is 5 - or the call is refused with a ValueError naming x. Never a silent short write
    (the BLAS sizes are 32-bit)."""
    _require_memory(10)
    x = np.zeros((ROWS, 0), np.float32)
    w = np.zeros((1, 0), np.float32)
    b = np.array([5.0], np.float32)
    try:
        out = cg.kernels.linear_forward(x, w, b)
    except ValueError as exc:
        assert str(exc).startswith("x:"), exc
        return
    assert out.shape == (ROWS, 1)
    np.testing.assert_array_equal(out[[0, INT32_LIMIT - 1, INT32_LIMIT, ROWS - 1], 0], 5.0)
    assert (out == 5.0).all()


@pytest.mark.parametrize("kernel", ["linear_backward", "matmul_backward"])
def test_products_over_more_than_2_31_rows(kernel):
    """A sum over 2^31 + 128 rows (x = grad_out = the marked zeros, one feature; weights 1):
    grad_w = sum of squares, grad_b = sum - or a ValueError naming the argument."""
    _require_memory(10)
    g = _marked_zeros(N).reshape(N, 1)
    one = np.ones((1, 1), np.float32)
    marks = np.arange(1, len(MARKS) + 1, dtype=np.float64)
    try:
        if kernel == "linear_backward":
            _, grad_w, grad_b = cg.kernels.linear_backward(g, g, one, need_grad_x=False)
            np.testing.assert_array_equal(grad_b, [marks.sum()])
        else:
            _, grad_w = cg.kernels.matmul_backward(g, g, one, need_grad_a=False)
    except ValueError as exc:
        assert str(exc).split(":")[0] in ("x", "a", "grad_out"), exc
        return
    np.testing.assert_array_equal(grad_w, [[(marks ** 2).sum()]])
