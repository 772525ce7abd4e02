"""The compiled kernels against the reference (the oracle): float32 and float64, every shape
family the kernel API allows, with and without output arrays, accumulating or not, any input
layout, outputs that alias inputs, and any thread count."""
from __future__ import annotations

import numpy as np
import pytest

import cygrad
from cygrad.backends import cython as compiled
from cygrad.backends import reference

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
BACKENDS = [pytest.param(compiled, id="cython"), pytest.param(reference, id="reference")]
# How an output is passed: none (the kernel allocates), none with accumulate=True (nothing
# to add to: a plain result), a NaN-filled array to overwrite (NaN shows an output that is
# read when it should only be written), a filled array to add into.
OUT_MODES = ["new", "new-accumulate", "overwrite", "accumulate"]


def shape_id(shape: tuple) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def tol(dtype, terms: int = 1) -> dict:
    """assert_allclose tolerances for a result that is a sum of `terms` products of values in
    [-1, 1] (terms=1: an element-wise result).

    The backends round differently (libm's expf vs NumPy's exp, BLAS's blocked and fused
    multiply-adds vs NumPy's row-by-row or pairwise sums), so an element-wise result may
    differ by a few ulps: rtol. A sum rounds once per term, by at most half an ulp of the
    running sum and with random sign; the running sum of zero-mean terms is O(sqrt(terms)),
    so the accumulated error is O(sqrt(terms) * sqrt(terms) * eps) = O(terms * eps) (its
    standard deviation is about terms * eps / 8). Hence an atol that grows linearly with the
    number of terms summed: 2 * terms * eps is over ten standard deviations from a false
    alarm, and far below the O(1) error of a dropped, doubled or misplaced term.
    """
    eps = float(np.finfo(dtype).eps)
    return dict(rtol=8 * eps, atol=2 * eps * max(terms, 2))


def uniform(rng, shape, dtype, low=-1.0, high=1.0) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(dtype)


def out_arg(mode: str, shape: tuple, dtype, rng):
    """(out, accumulate) for one of OUT_MODES."""
    if mode == "new":
        return None, False
    if mode == "new-accumulate":
        return None, True
    if mode == "overwrite":
        return np.full(shape, np.nan, dtype), False
    return uniform(rng, shape, dtype), True


def copy_or_none(a):
    return None if a is None else a.copy()


def check_result(got, out, want, dtype, terms: int = 1) -> None:
    """`got` is `out` when one was given, has the input dtype, and matches the reference."""
    if out is not None:
        assert got is out
    assert type(got) is np.ndarray and got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, **tol(dtype, terms))


# ---------------------------------------------------------------------------- sigmoid

ELEMENTWISE_SHAPES = [(), (0,), (1,), (7,), (0, 5), (1, 513), (513, 1), (64, 256), (3, 5, 33),
                      (257, 513), (520, 520)]  # the last one runs threaded (> PARALLEL_MIN)


@pytest.mark.parametrize("with_out", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=shape_id)
def test_sigmoid_forward_matches_reference(shape, dtype, with_out, rng):
    x = uniform(rng, shape, dtype, -12, 12)  # both branches of the stable formula
    out = np.full(shape, np.nan, dtype) if with_out else None
    want = reference.sigmoid_forward(x)
    got = compiled.sigmoid_forward(x, out=out)
    check_result(got, out, want, dtype)
    assert np.all((got >= 0) & (got <= 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_forward_over_its_whole_range(dtype):
    """From where exp underflows to where the sigmoid rounds to 1, and the values where
    the stable formula switches branch or the exp changes regime."""
    low = -750 if dtype == np.float64 else -110
    x = np.concatenate([np.linspace(low, 60, 200001), [-0.0, 0.0, 1e-30, -1e-30, -87.0, -87.3,
                                                       -87.34, -87.5, -87.68, -708.0, -708.39,
                                                       -708.5, -708.73, 16.0, 37.0]]).astype(dtype)
    want = reference.sigmoid_forward(x)
    got = compiled.sigmoid_forward(x)
    # A few ulps everywhere; subnormal results may be flushed to 0 ("a tiny non-negative
    # number, 0 allowed"), normal ones may not.
    np.testing.assert_allclose(got, want, rtol=tol(dtype)["rtol"], atol=2 * np.finfo(dtype).tiny)
    normal = want >= np.finfo(dtype).tiny
    np.testing.assert_allclose(got[normal], want[normal], rtol=tol(dtype)["rtol"])
    assert np.all(got >= 0) and np.all(got[x >= 60] == 1)


@pytest.mark.parametrize("mode", OUT_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=shape_id)
def test_sigmoid_backward_matches_reference(shape, dtype, mode, rng):
    g, y = uniform(rng, shape, dtype), uniform(rng, shape, dtype, 0, 1)
    out, accumulate = out_arg(mode, shape, dtype, rng)
    want = reference.sigmoid_backward(g, y, out=copy_or_none(out), accumulate=accumulate)
    got = compiled.sigmoid_backward(g, y, out=out, accumulate=accumulate)
    check_result(got, out, want, dtype)


# ---------------------------------------------------------------------- bias_backward

# The parallel reduction has two paths, chosen by width at a given thread count (here 2):
# "wide" (threads own column tiles) when there are >= 32 columns per thread, else "tall"
# (threads own row blocks and their partial sums are added).
BIAS_SHAPES = [
    pytest.param((0,), id="0"), pytest.param((1,), id="1"), pytest.param((7,), id="7"),
    pytest.param((0, 5), id="0x5"), pytest.param((5, 0), id="5x0"),
    pytest.param((2, 0, 3), id="2x0x3"), pytest.param((1, 7), id="1x7"),
    pytest.param((7, 1), id="7x1"), pytest.param((1, 513), id="1x513"),
    pytest.param((513, 1), id="513x1"), pytest.param((3, 5, 33), id="3x5x33"),
    pytest.param((257, 513), id="257x513-wide"), pytest.param((300, 300), id="300x300-wide"),
    pytest.param((64, 4096), id="64x4096-wide"), pytest.param((600, 64), id="600x64-wide-edge"),
    pytest.param((20000, 7), id="20000x7-tall"), pytest.param((1000, 63), id="1000x63-tall-edge"),
    pytest.param((50, 400, 3), id="50x400x3-tall"),
]


def rows_of(shape: tuple) -> int:
    return int(np.prod(shape[:-1]))


@pytest.mark.usefixtures("each_blas")
@pytest.mark.parametrize("mode", OUT_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BIAS_SHAPES)
def test_bias_backward_matches_reference(shape, dtype, mode, rng):
    cygrad.set_num_threads(2)  # fixes which parallel path each shape takes
    g = uniform(rng, shape, dtype)
    out, accumulate = out_arg(mode, shape[-1:], dtype, rng)
    want = reference.bias_backward(g, out=copy_or_none(out), accumulate=accumulate)
    got = compiled.bias_backward(g, out=out, accumulate=accumulate)
    check_result(got, out, want, dtype, terms=rows_of(shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_backward_of_a_broadcast_view(dtype, rng):
    # Stride 0: every row is the same memory. Small integers keep every partial sum exact
    # (equal terms do not cancel, so rounding would grow like rows**2 * eps).
    row = rng.integers(-8, 9, 7).astype(dtype)
    g = np.broadcast_to(row, (5000, 7))
    assert g.strides[0] == 0
    np.testing.assert_array_equal(compiled.bias_backward(g), 5000 * row)


# -------------------------------------------------------------------- linear kernels

# (batch shape, in_features, out_features); a batch shape () is a 1-D x.
LINEAR_CASES = [
    pytest.param((1,), 1, 1, id="1x1-to-1"),
    pytest.param((1,), 33, 17, id="batch1"),
    pytest.param((), 33, 17, id="1d-x"),
    pytest.param((9,), 1, 5, id="in1"),
    pytest.param((9,), 5, 1, id="out1"),
    pytest.param((64,), 256, 128, id="64x256-to-128"),
    pytest.param((257,), 513, 33, id="257x513-to-33"),
    pytest.param((3, 5), 33, 17, id="3d-x"),
    pytest.param((300,), 64, 300, id="300x64-to-300-threaded-bias"),
    # an inner size of 16 over 2^18 multiply-adds: the forward runs in blocks of rows
    pytest.param((300,), 16, 130, id="300x16-to-130-short-inner"),
    # a few rows against the transposed weight over 10^6 multiply-adds: blocks of columns
    # where the BLAS has small-matrix kernels (both dtypes at 8 rows, float32 at 16), the
    # last one narrower
    pytest.param((8,), 784, 200, id="8x784-to-200-few-rows"),
    pytest.param((16,), 784, 130, id="16x784-to-130-few-rows"),
    pytest.param((0,), 5, 3, id="batch0"),
    pytest.param((4,), 0, 3, id="in0"),
    pytest.param((4,), 5, 0, id="out0"),
    pytest.param((2, 0), 5, 3, id="3d-batch0"),
]


@pytest.fixture(params=[False, True], ids=["whole", "small-matrix-blocks"])
def each_blocking(each_blas, request):
    """each_blas, with the blocks for small-matrix kernels (csrc/_linear.pyx, _gemm) off
    and on whatever this CPU: on any BLAS they must give the whole product's numbers."""
    from cygrad import _linear
    _linear.use_small_matrix_kernels(request.param)
    yield request.param  # each_blas's teardown puts the process's setting back


def linear_inputs(rng, dtype, batch, in_features, out_features):
    x = uniform(rng, batch + (in_features,), dtype)
    w = uniform(rng, (out_features, in_features), dtype)
    b = uniform(rng, (out_features,), dtype)
    g = uniform(rng, batch + (out_features,), dtype)
    return x, w, b, g


@pytest.mark.usefixtures("each_blocking")
@pytest.mark.parametrize("with_out", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, in_features, out_features", LINEAR_CASES)
def test_linear_forward_matches_reference(batch, in_features, out_features, dtype, with_bias,
                                          with_out, rng):
    x, w, b, _ = linear_inputs(rng, dtype, batch, in_features, out_features)
    b = b if with_bias else None
    out = np.full(batch + (out_features,), np.nan, dtype) if with_out else None
    want = reference.linear_forward(x, w, b)
    got = compiled.linear_forward(x, w, b, out=out)
    check_result(got, out, want, dtype, terms=in_features + 1)


@pytest.mark.usefixtures("each_blas")
@pytest.mark.parametrize("mode", OUT_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, in_features, out_features", LINEAR_CASES)
def test_linear_backward_matches_reference(batch, in_features, out_features, dtype, mode,
                                           rng):
    x, w, _, g = linear_inputs(rng, dtype, batch, in_features, out_features)
    outs = [out_arg(mode, shape, dtype, rng)[0] for shape in (x.shape, w.shape, w.shape[:1])]
    accumulate = mode in ("new-accumulate", "accumulate")
    want = reference.linear_backward(g, x, w, *map(copy_or_none, outs), accumulate=accumulate)
    got = compiled.linear_backward(g, x, w, *outs, accumulate=accumulate)
    assert type(got) is tuple and len(got) == 3
    rows = rows_of(x.shape)
    for got_i, out_i, want_i, terms in zip(got, outs, want, (out_features, rows, rows)):
        check_result(got_i, out_i, want_i, dtype, terms)


NEEDS = [(gx, gw, gb) for gx in (True, False) for gw in (True, False) for gb in (True, False)]


def needs_id(needs: tuple) -> str:
    return "+".join(n for n, need in zip(("x", "w", "b"), needs) if need) or "none"


@pytest.mark.usefixtures("each_blas")
@pytest.mark.parametrize("mode", OUT_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("needs", NEEDS, ids=needs_id)
def test_linear_backward_need_flags(needs, dtype, mode, rng):
    """An output not needed is None and a given array for it is left untouched; the others
    are those of the full call."""
    x, w, _, g = linear_inputs(rng, dtype, (37,), 23, 19)
    outs = [out_arg(mode, shape, dtype, rng)[0] for shape in (x.shape, w.shape, w.shape[:1])]
    before = [copy_or_none(o) for o in outs]
    accumulate = mode in ("new-accumulate", "accumulate")
    flags = dict(zip(("need_grad_x", "need_grad_w", "need_grad_b"), needs))
    want = reference.linear_backward(g, x, w, *map(copy_or_none, outs), accumulate=accumulate)
    got = compiled.linear_backward(g, x, w, *outs, accumulate=accumulate, **flags)
    for need, got_i, out_i, old, want_i in zip(needs, got, outs, before, want):
        if need:
            check_result(got_i, out_i, want_i, dtype, terms=37)
        else:
            assert got_i is None
            if out_i is not None:
                assert out_i.tobytes() == old.tobytes()


# ------------------------------------------------------------------- matmul_backward

# (m, k, n) for out = a (m, k) @ b (k, n)
MATMUL_CASES = [
    pytest.param(1, 1, 1, id="1x1x1"), pytest.param(1, 33, 17, id="m1"),
    pytest.param(17, 33, 1, id="n1"), pytest.param(33, 1, 17, id="k1"),
    pytest.param(64, 256, 128, id="64x256x128"), pytest.param(257, 513, 33, id="257x513x33"),
    pytest.param(300, 300, 300, id="300x300x300"), pytest.param(0, 3, 4, id="m0"),
    # grad_b = a.T @ g, an inner size of 16 over 2^18 multiply-adds: blocks of rows, the
    # last one shorter
    pytest.param(16, 130, 300, id="16x130x300-short-inner"),
    # grad_a = g @ b.T, a few rows against a transposed matrix: blocks of columns
    pytest.param(8, 200, 784, id="8x200x784-few-rows"),
    pytest.param(3, 0, 4, id="k0"), pytest.param(3, 4, 0, id="n0"),
]


def matmul_inputs(rng, dtype, m, k, n):
    return uniform(rng, (m, n), dtype), uniform(rng, (m, k), dtype), uniform(rng, (k, n), dtype)


@pytest.mark.usefixtures("each_blocking")
@pytest.mark.parametrize("mode", OUT_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, n", MATMUL_CASES)
def test_matmul_backward_matches_reference(m, k, n, dtype, mode, rng):
    g, a, b = matmul_inputs(rng, dtype, m, k, n)
    outs = [out_arg(mode, shape, dtype, rng)[0] for shape in (a.shape, b.shape)]
    accumulate = mode in ("new-accumulate", "accumulate")
    want = reference.matmul_backward(g, a, b, *map(copy_or_none, outs), accumulate=accumulate)
    got = compiled.matmul_backward(g, a, b, *outs, accumulate=accumulate)
    assert type(got) is tuple and len(got) == 2
    for got_i, out_i, want_i, terms in zip(got, outs, want, (n, m)):
        check_result(got_i, out_i, want_i, dtype, terms)


@pytest.mark.usefixtures("each_blas")
@pytest.mark.parametrize("mode", OUT_MODES)
@pytest.mark.parametrize("needs", [(True, False), (False, True), (False, False)],
                         ids=["a", "b", "none"])
def test_matmul_backward_need_flags(needs, mode, rng):
    g, a, b = matmul_inputs(rng, np.float64, 37, 23, 19)
    outs = [out_arg(mode, shape, np.float64, rng)[0] for shape in (a.shape, b.shape)]
    before = [copy_or_none(o) for o in outs]
    accumulate = mode in ("new-accumulate", "accumulate")
    flags = dict(need_grad_a=needs[0], need_grad_b=needs[1])
    want = reference.matmul_backward(g, a, b, *map(copy_or_none, outs), accumulate=accumulate)
    got = compiled.matmul_backward(g, a, b, *outs, accumulate=accumulate, **flags)
    for need, got_i, out_i, old, want_i in zip(needs, got, outs, before, want):
        if need:
            check_result(got_i, out_i, want_i, np.float64, terms=37)
        else:
            assert got_i is None
            if out_i is not None:
                assert out_i.tobytes() == old.tobytes()


# ------------------------------------------------------------ input memory layouts

def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The values of `a` in another memory layout."""
    if layout == "fortran":
        v = np.asfortranarray(a)
    elif layout == "transposed":
        v = np.ascontiguousarray(a.T).T
    elif layout == "strided":
        big = np.zeros(tuple(2 * d + 1 for d in a.shape), a.dtype)
        v = big[(slice(1, None, 2),) * a.ndim]
        v[...] = a
    elif layout == "reversed":
        flip = (slice(None, None, -1),) * a.ndim
        v = a[flip].copy()[flip]
    elif layout == "readonly":
        v = a.copy()
        v.flags.writeable = False
    elif layout == "unaligned":  # e.g. a field of a packed record, or a network buffer
        raw = np.zeros(a.nbytes + a.itemsize, np.uint8)
        v = raw[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
        v[...] = a
        assert not v.flags.aligned
    else:
        raise AssertionError(layout)
    np.testing.assert_array_equal(v, a)
    # the layout really is one the compiled backend must copy (or read-only / unaligned)
    if layout in ("strided", "reversed") or (layout in ("fortran", "transposed")
                                              and a.ndim >= 2):
        assert not v.flags.c_contiguous
    if layout == "readonly":
        assert not v.flags.writeable
    return v


# kernel -> (input shapes, the number of terms its longest sum has)
LAYOUT_INPUTS = {
    "sigmoid_forward": (dict(x=(3, 37, 23)), 1),
    "sigmoid_backward": (dict(grad_out=(37, 23), y=(37, 23)), 1),
    "bias_backward": (dict(grad_out=(3, 37, 23)), 3 * 37),
    "linear_forward": (dict(x=(3, 37, 23), w=(19, 23), b=(19,)), 24),
    "linear_backward": (dict(grad_out=(3, 37, 19), x=(3, 37, 23), w=(19, 23)), 3 * 37),
    "matmul_backward": (dict(grad_out=(37, 19), a=(37, 23), b=(23, 19)), 37),
}
LAYOUTS = ["fortran", "transposed", "strided", "reversed", "readonly", "unaligned"]


def as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", list(LAYOUT_INPUTS))
def test_non_contiguous_inputs(kernel, dtype, layout, backend, rng):
    shapes, terms = LAYOUT_INPUTS[kernel]
    inputs = {name: uniform(rng, shape, dtype) for name, shape in shapes.items()}
    strided = {name: relayout(a, layout) for name, a in inputs.items()}
    want = as_tuple(getattr(reference, kernel)(**inputs))
    got = as_tuple(getattr(backend, kernel)(**strided))
    assert len(got) == len(want)
    for got_i, want_i in zip(got, want):
        check_result(got_i, None, want_i, dtype, terms)
    for name, a in inputs.items():  # inputs are only read
        np.testing.assert_array_equal(strided[name], a)


# ---------------------------------------------------------- outputs aliasing inputs
# Inputs are read as they were when the call began, so each result must equal the
# reference computed on copies, where nothing aliases.

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(7,), (37, 23), (520, 520)], ids=shape_id)
def test_sigmoid_forward_in_place(shape, backend, rng):
    x = uniform(rng, shape, np.float32, -12, 12)
    want = reference.sigmoid_forward(x.copy())
    got = backend.sigmoid_forward(x, out=x)
    assert got is x
    np.testing.assert_allclose(got, want, **tol(np.float32))


@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
@pytest.mark.parametrize("target", ["grad_out", "y"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(7,), (37, 23), (520, 520)], ids=shape_id)
def test_sigmoid_backward_in_place(shape, backend, target, accumulate, rng):
    g, y = uniform(rng, shape, np.float64), uniform(rng, shape, np.float64, 0, 1)
    out = g if target == "grad_out" else y
    want = reference.sigmoid_backward(g.copy(), y.copy(), out=out.copy(), accumulate=accumulate)
    got = backend.sigmoid_backward(g, y, out=out, accumulate=accumulate)
    assert got is out
    np.testing.assert_allclose(got, want, **tol(np.float64))


@pytest.mark.parametrize("shift", ["out-ahead", "out-behind"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [7, 270000], ids=["n7", "n270000-threaded"])
def test_sigmoid_backward_shifted_overlap(n, backend, shift, rng):
    # out and grad_out are the same buffer one element apart: an element written early
    # must not be read later as an input.
    buf = uniform(rng, (n + 1,), np.float64)
    y = uniform(rng, (n,), np.float64, 0, 1)
    g, out = (buf[:-1], buf[1:]) if shift == "out-ahead" else (buf[1:], buf[:-1])
    want = reference.sigmoid_backward(g.copy(), y, out=out.copy(), accumulate=True)
    got = backend.sigmoid_backward(g, y, out=out, accumulate=True)
    assert got is out
    np.testing.assert_allclose(got, want, **tol(np.float64))


@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(37, 23), (300, 300), (20000, 7)], ids=shape_id)
def test_bias_backward_out_is_a_row_of_grad_out(shape, backend, accumulate, rng):
    g = uniform(rng, shape, np.float64)
    out = g[0]  # written while the sum still has to read it
    want = reference.bias_backward(g.copy(), out=out.copy(), accumulate=accumulate)
    got = backend.bias_backward(g, out=out, accumulate=accumulate)
    assert got is out
    np.testing.assert_allclose(got, want, **tol(np.float64, shape[0]))


@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_backward_of_1d_in_place(backend, accumulate, rng):
    g = uniform(rng, (37,), np.float64)
    want = reference.bias_backward(g.copy(), out=g.copy(), accumulate=accumulate)
    got = backend.bias_backward(g, out=g, accumulate=accumulate)
    assert got is g
    np.testing.assert_allclose(got, want, **tol(np.float64))


@pytest.mark.parametrize("target", ["x", "w", "b"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_forward_out_aliases_input(backend, target, rng):
    # batch = in_features = out_features, so out can be x or w; b is out's first row.
    x, w, b, _ = linear_inputs(rng, np.float64, (40,), 40, 40)
    want = reference.linear_forward(x.copy(), w.copy(), b.copy())
    if target == "b":
        out = np.empty((40, 40))
        out[0] = b
        b = out[0]  # the bias, read after its row of out may have been written
    else:
        out = x if target == "x" else w
    got = backend.linear_forward(x, w, b, out=out)
    assert got is out
    np.testing.assert_allclose(got, want, **tol(np.float64, 41))


@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
@pytest.mark.parametrize("aliases", ["grad_x=x,grad_w=w", "grad_x=grad_out", "grad_b=grad_out[0]",
                                     "grad_w=x"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_backward_outputs_alias_inputs(backend, aliases, accumulate, rng):
    x, w, _, g = linear_inputs(rng, np.float64, (40,), 40, 40)
    copies = dict(grad_out=g.copy(), x=x.copy(), w=w.copy())
    outs = {"grad_x=x,grad_w=w": dict(grad_x=x, grad_w=w), "grad_x=grad_out": dict(grad_x=g),
            "grad_b=grad_out[0]": dict(grad_b=g[0]), "grad_w=x": dict(grad_w=x)}[aliases]
    want = reference.linear_backward(**copies, accumulate=accumulate,
                                     **{k: v.copy() for k, v in outs.items()})
    got = backend.linear_backward(g, x, w, accumulate=accumulate, **outs)
    for name, got_i, want_i in zip(("grad_x", "grad_w", "grad_b"), got, want):
        if name in outs:
            assert got_i is outs[name]
        np.testing.assert_allclose(got_i, want_i, **tol(np.float64, 40))


@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
@pytest.mark.parametrize("aliases", ["grad_a=a", "grad_b=b", "grad_a=a,grad_b=b",
                                     "grad_a=grad_out", "grad_a=overlaps-a"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_backward_outputs_alias_inputs(backend, aliases, accumulate, rng):
    buf = uniform(rng, (60, 40), np.float64)
    a = buf[:40]  # (40, 40): a, b, grad_out and the gradients all have one shape
    g, b = uniform(rng, (40, 40), np.float64), uniform(rng, (40, 40), np.float64)
    copies = dict(grad_out=g.copy(), a=a.copy(), b=b.copy())
    outs = {"grad_a=a": dict(grad_a=a), "grad_b=b": dict(grad_b=b),
            "grad_a=a,grad_b=b": dict(grad_a=a, grad_b=b), "grad_a=grad_out": dict(grad_a=g),
            "grad_a=overlaps-a": dict(grad_a=buf[20:])}[aliases]  # half of a's rows
    want = reference.matmul_backward(**copies, accumulate=accumulate,
                                     **{k: v.copy() for k, v in outs.items()})
    got = backend.matmul_backward(g, a, b, accumulate=accumulate, **outs)
    for name, got_i, want_i in zip(("grad_a", "grad_b"), got, want):
        if name in outs:
            assert got_i is outs[name]
        np.testing.assert_allclose(got_i, want_i, **tol(np.float64, 40))


# ---------------------------------------------------------------------- thread count

def run_all_kernels(inputs: dict) -> list:
    """Every kernel once on threaded sizes, into fresh arrays and accumulated into copies."""
    g, y, start, bias, bias_start, x, w, b, gl, a, mb, gm = (
        inputs[k] for k in ("g", "y", "start", "bias", "bias_start", "x", "w", "b", "gl", "a",
                            "mb", "gm"))
    return [
        compiled.sigmoid_forward(g),
        compiled.sigmoid_backward(g, y),
        compiled.sigmoid_backward(g, y, out=start.copy(), accumulate=True),
        compiled.bias_backward(bias),
        compiled.bias_backward(bias, out=bias_start.copy(), accumulate=True),
        compiled.linear_forward(x, w, b),
        *compiled.linear_backward(gl, x, w),
        *compiled.matmul_backward(gm, a, mb),
    ]


@pytest.mark.parametrize("threads", [2, 3, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_thread_count(dtype, threads, rng):
    """Element-wise loops, the wide reduction (each column summed by one thread, in row
    order) and the BLAS products give bit-identical results at any thread count. 211 x 191
    elements: the threads' chunks start off any SIMD boundary."""
    def u(*shape):
        return uniform(rng, shape, dtype)

    inputs = dict(g=u(211, 191), y=uniform(rng, (211, 191), dtype, 0, 1), start=u(211, 191),
                  bias=u(64, 4096), bias_start=u(4096),  # wide up to 128 threads
                  # grad_b is a wide reduction too: 16 x 2048, 32768 elements
                  x=u(16, 64), w=u(2048, 64), b=u(2048), gl=u(16, 2048), a=u(200, 150),
                  mb=u(150, 170), gm=u(200, 170))
    cygrad.set_num_threads(1)
    assert cygrad.get_num_threads() == 1
    serial = run_all_kernels(inputs)
    cygrad.set_num_threads(threads)
    if cygrad.runtime.info()["OpenMP"] == "on":
        assert cygrad.get_num_threads() == threads
    parallel = run_all_kernels(inputs)
    for s, p in zip(serial, parallel):
        assert s.dtype == p.dtype == dtype
        np.testing.assert_array_equal(p, s)


TALL_CASES = [pytest.param((20000, 7), 2, id="20000x7-2threads"),
              pytest.param((20000, 7), 3, id="20000x7-3threads"),
              pytest.param((50, 400, 3), 2, id="50x400x3-2threads"),
              # more threads than rows: some threads get no rows at all
              pytest.param((17, 2000), 64, id="17x2000-64threads")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, threads", TALL_CASES)
def test_tall_bias_backward_with_threads(shape, threads, dtype, rng):
    """The tall reduction adds per-thread partial sums, so its rounding (not its value)
    depends on the thread count. Exactly representable sums (small integers) must be
    bit-identical at any thread count; random data agrees within the summation tolerance,
    and a repeated call at one thread count is bit-identical."""
    exact = rng.integers(-8, 9, shape).astype(dtype)  # every partial sum is exact
    noisy = uniform(rng, shape, dtype)
    start = rng.integers(-8, 9, shape[-1:]).astype(dtype)
    cygrad.set_num_threads(1)
    serial = [compiled.bias_backward(exact), compiled.bias_backward(noisy),
              compiled.bias_backward(exact, out=start.copy(), accumulate=True)]
    cygrad.set_num_threads(threads)
    parallel = [compiled.bias_backward(exact), compiled.bias_backward(noisy),
                compiled.bias_backward(exact, out=start.copy(), accumulate=True)]
    again = compiled.bias_backward(noisy)
    np.testing.assert_array_equal(parallel[0], exact.sum(axis=tuple(range(len(shape) - 1)),
                                                         dtype=np.float64))
    np.testing.assert_array_equal(parallel[0], serial[0])
    np.testing.assert_array_equal(parallel[2], serial[2])
    np.testing.assert_allclose(parallel[1], serial[1], **tol(dtype, rows_of(shape)))
    np.testing.assert_array_equal(again, parallel[1])


def test_threaded_shapes_are_above_the_threshold():
    from cygrad import _elementwise
    assert 520 * 520 > _elementwise.parallel_min and 270000 > _elementwise.parallel_min
    assert 257 * 513 < _elementwise.parallel_min  # and one just below it, serial


@pytest.mark.parametrize("n", [1, 17, 300_000], ids=["1", "17", "threaded"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_backward_accumulating_an_overflowing_product(n, dtype):
    """out = -inf plus a product that overflows to +inf is NaN, as the formula says. A fused
    multiply-add would skip the product's rounding (no overflow) and leave -inf: the loops
    are compiled without fusing, in every CPU-specific clone."""
    big = np.finfo(dtype).max ** (1 / 3) * 2  # g * y * (1 - y) ~ 8 * max: overflows
    g, y = np.full(n, -big, dtype), np.full(n, -big, dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the point
        want = reference.sigmoid_backward(g, y, out=np.full(n, -np.inf, dtype),
                                          accumulate=True)
    assert np.isnan(want).all()
    got = compiled.sigmoid_backward(g, y, out=np.full(n, -np.inf, dtype), accumulate=True)
    np.testing.assert_array_equal(got, want)
