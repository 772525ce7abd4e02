"""The Tensor API a PyTorch user reaches for: the ops added on top of the arithmetic
(sqrt, abs, clamp, minimum, min/max/sum/mean with dims, softmax, log_softmax, flatten,
view, indexing with masks, cat, stack, to), each against finite differences and against
PyTorch (values, gradients, dtypes) on both backends in float32 and float64; NumPy
interop, comparisons, argmax/argmin, and the constructors.
"""
from __future__ import annotations

import numpy as np
import pytest

import cygrad as cg
from cygrad import Tensor

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _uniform(low=-1.0, high=1.0):
    return lambda rng, shape: rng.uniform(low, high, shape)


def _away_from_zero(rng, shape):
    return rng.uniform(0.2, 1.0, shape) * rng.choice([-1.0, 1.0], shape)


def _distinct(rng, shape):
    """Values at least 1/n apart: no ties, and finite differences do not cross one."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) / n


def _clamp_inputs(rng, shape):
    """Values at least 0.05 from the bounds +-0.5."""
    return rng.choice([-1.0, 1.0], shape) * rng.choice([0.1, 0.3, 0.6, 0.9], shape) + \
        rng.uniform(-0.04, 0.04, shape)


MASK = np.array([[True, False, True, True], [False, False, True, False],
                 [True, True, False, False]])
ROWS = np.array([2, 0, 2, 1])  # 2 twice: its gradients add up

# name: (cygrad function, PyTorch function or None for the same, input makers and shapes)
CASES = {
    "sqrt": (lambda x: x.sqrt(), None, [(_uniform(0.5, 2.0), (3, 4))]),
    "abs": (lambda x: abs(x), None, [(_away_from_zero, (3, 4))]),
    "abs_method": (lambda x: x.abs(), None, [(_away_from_zero, (5,))]),
    "clamp": (lambda x: x.clamp(-0.5, 0.5), None, [(_clamp_inputs, (4, 5))]),
    "clamp_min": (lambda x: x.clamp(min=-0.5), None, [(_clamp_inputs, (4, 5))]),
    "clamp_max": (lambda x: x.clamp(max=0.5), None, [(_clamp_inputs, (4, 5))]),
    "clip": (lambda x: x.clip(-0.5, 0.5), None, [(_clamp_inputs, (7,))]),
    "minimum": (cg.minimum, lambda a, b: a.minimum(b),
                [(_distinct, (3, 4)), (_distinct, (4,))]),
    "maximum": (cg.maximum, lambda a, b: a.maximum(b),
                [(_distinct, (3, 4)), (_distinct, (3, 1))]),
    "max": (lambda x: x.max(), None, [(_distinct, (3, 4))]),
    "min": (lambda x: x.min(), None, [(_distinct, (3, 4))]),
    "max_dim": (lambda x: x.max(1), lambda x: x.amax(1), [(_distinct, (3, 4))]),
    "max_dim_keepdim": (lambda x: x.max(dim=0, keepdim=True),
                        lambda x: x.amax(0, keepdim=True), [(_distinct, (3, 4))]),
    "max_dims": (lambda x: x.max((0, 2)), lambda x: x.amax((0, 2)),
                 [(_distinct, (2, 3, 4))]),
    "min_dim": (lambda x: x.min(-1), lambda x: x.amin(-1), [(_distinct, (3, 4))]),
    "min_axis": (lambda x: x.min(axis=0, keepdims=True),
                 lambda x: x.amin(0, keepdim=True), [(_distinct, (3, 4))]),
    "sum_dim": (lambda x: x.sum(dim=1, keepdim=True), None, [(_uniform(), (3, 4))]),
    "sum_dims": (lambda x: x.sum((0, -1)), None, [(_uniform(), (2, 3, 4))]),
    "mean_dim": (lambda x: x.mean(dim=-1), None, [(_uniform(), (3, 4))]),
    "mean_axis": (lambda x: x.mean(axis=0, keepdims=True),
                  lambda x: x.mean(0, keepdim=True), [(_uniform(), (3, 4))]),
    "softmax": (lambda x: x.softmax(1), None, [(_uniform(-3, 3), (3, 5))]),
    "softmax_dim0": (lambda x: cg.softmax(x, 0), lambda x: x.softmax(0),
                     [(_uniform(-3, 3), (3, 5))]),
    "softmax_3d": (lambda x: x.softmax(-2), None, [(_uniform(-3, 3), (2, 3, 4))]),
    "log_softmax": (lambda x: x.log_softmax(-1), None, [(_uniform(-3, 3), (3, 5))]),
    "log_softmax_dim0": (lambda x: cg.log_softmax(x, 0), lambda x: x.log_softmax(0),
                         [(_uniform(-3, 3), (4, 2))]),
    "flatten": (lambda x: x.flatten(), None, [(_uniform(), (2, 3, 4))]),
    "flatten_range": (lambda x: x.flatten(1, 2), None, [(_uniform(), (2, 3, 4, 2))]),
    "view": (lambda x: x.view(4, -1), None, [(_uniform(), (2, 3, 4))]),
    "reshape_tuple": (lambda x: x.reshape((3, 8)), None, [(_uniform(), (2, 3, 4))]),
    "mask": (lambda x: x[MASK], lambda x: x[__import__("torch").from_numpy(MASK)],
             [(_uniform(), (3, 4))]),
    "mask_from_comparison": (lambda x: x[x > 0.04], None, [(_distinct, (3, 4))]),
    "rows": (lambda x: x[ROWS], lambda x: x[__import__("torch").from_numpy(ROWS)],
             [(_uniform(), (3, 4))]),
    "slice_and_mask": (lambda x: x[1:, MASK[0]],
                       lambda x: x[1:, __import__("torch").from_numpy(MASK[0])],
                       [(_uniform(), (3, 4))]),
    "cat": (lambda a, b: cg.cat([a, b]), lambda a, b: __import__("torch").cat([a, b]),
            [(_uniform(), (2, 3)), (_uniform(), (4, 3))]),
    "cat_dim1": (lambda a, b, c: cg.cat((a, b, c), dim=1),
                 lambda a, b, c: __import__("torch").cat((a, b, c), dim=1),
                 [(_uniform(), (2, 3)), (_uniform(), (2, 1)), (_uniform(), (2, 2))]),
    "stack": (lambda a, b: cg.stack([a, b]), lambda a, b: __import__("torch").stack([a, b]),
              [(_uniform(), (2, 3)), (_uniform(), (2, 3))]),
    "stack_last": (lambda a, b: cg.stack([a, b], dim=-1),
                   lambda a, b: __import__("torch").stack([a, b], dim=-1),
                   [(_uniform(), (2, 3)), (_uniform(), (2, 3))]),
    "stack_middle": (lambda a, b, c: cg.stack([a, b, c], 1),
                     lambda a, b, c: __import__("torch").stack([a, b, c], 1),
                     [(_uniform(), (2, 3)), (_uniform(), (2, 3)), (_uniform(), (2, 3))]),
}


def _inputs(name, rng, dtype):
    return [Tensor(make(rng, shape).astype(dtype), requires_grad=True)
            for make, shape in CASES[name][2]]


@pytest.mark.parametrize("name", CASES)
def test_gradient_matches_finite_differences(name, backend, rng):
    cg.gradcheck(CASES[name][0], _inputs(name, rng, np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_pytorch(name, dtype, backend, rng):
    torch = pytest.importorskip("torch")
    fn, torch_fn, _ = CASES[name]
    inputs = _inputs(name, rng, dtype)
    theirs_inputs = [torch.tensor(t.data, requires_grad=True) for t in inputs]
    ours = fn(*inputs)
    theirs = (torch_fn or fn)(*theirs_inputs)
    assert ours.shape == tuple(theirs.shape)
    assert ours.dtype == dtype
    assert str(theirs.dtype) == f"torch.{np.dtype(dtype).name}"
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), **TOL[dtype])
    weights = rng.uniform(0.5, 1.5, ours.shape).astype(dtype)
    ours.backward(weights)
    theirs.backward(torch.from_numpy(weights))
    for t, tt in zip(inputs, theirs_inputs):
        assert t.grad.dtype == dtype
        np.testing.assert_allclose(t.grad, tt.grad.numpy(), **TOL[dtype])


def test_op_table_names_what_results_record():
    for name, op in cg.ops.TABLE.items():
        assert callable(op)
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    for out in (x + 1, x * x, x.sqrt(), x.clamp(0, 1), x.max(0), x.softmax(1), x[0],
                cg.cat([x, x]), cg.stack([x, x]), x.flatten(), x.to(np.float32)):
        assert out._op in cg.ops.TABLE


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_stable_for_large_inputs(dtype, backend):
    x = Tensor(np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]], dtype),
               requires_grad=True)
    y, log_y = x.softmax(1), x.log_softmax(1)
    assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(log_y.data))
    np.testing.assert_allclose(y.data.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(log_y.data[0], [0, -1000, -2000], rtol=1e-6)
    (y.sum() + log_y.sum()).backward()
    assert np.all(np.isfinite(x.grad))


def test_log_softmax_keeps_entries_near_zero_in_float32(backend):
    x = Tensor(np.array([[-0.8341551], [-15.0]], np.float32))
    want = np.log(np.exp(np.float64(-0.8341551)) /
                  (np.exp(np.float64(-0.8341551)) + np.exp(np.float64(-15.0))))
    np.testing.assert_allclose(x.log_softmax(0).data[0, 0], want, rtol=1e-5)


def test_softmax_requires_one_int_dim():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(TypeError, match="^softmax: dim: expected an int"):
        x.softmax((0, 1))
    with pytest.raises(ValueError, match=r"^log_softmax: dim: 2 is out of range"):
        x.log_softmax(2)


# -- dims: PyTorch's names and NumPy's ---------------------------------------------------

def test_dim_and_axis_spellings_agree():
    x = Tensor(np.arange(24.0).reshape(2, 3, 4))
    for op in ("sum", "mean", "max", "min"):
        want = getattr(x, op)(dim=1, keepdim=True).data
        np.testing.assert_array_equal(getattr(x, op)(axis=1, keepdims=True).data, want)
        np.testing.assert_array_equal(getattr(x, op)(1, True).data, want)
        with pytest.raises(TypeError, match=f"^{op}: got both dim and axis"):
            getattr(x, op)(dim=1, axis=1)
    np.testing.assert_array_equal(x.argmax(axis=2), x.argmax(dim=2))


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_bad_dims_are_named(op):
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=rf"^{op}: dim: 2 is out of range .* \[-2, 1\]"):
        getattr(x, op)(2)
    with pytest.raises(ValueError, match=f"^{op}: dim: .* names an axis twice"):
        getattr(x, op)((0, -2))
    with pytest.raises(TypeError, match=f"^{op}: dim: expected an int or a tuple"):
        getattr(x, op)(1.0)


# -- argmax / argmin ----------------------------------------------------------------------

@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [None, 0, 1, -1])
@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_argmax_argmin_match_pytorch(op, dim, keepdim):
    torch = pytest.importorskip("torch")
    data = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, -1.0, -1.0], [5.0, 0.0, 5.0, 0.0]])
    ours = getattr(Tensor(data), op)(dim, keepdim)
    theirs = getattr(torch.from_numpy(data), op)(dim, keepdim)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.int64
    np.testing.assert_array_equal(ours, theirs.numpy())  # ties: the first index
    assert getattr(cg, op)(Tensor(data), dim, keepdim).tolist() == theirs.tolist()


def test_empty_reductions():
    empty = Tensor(np.zeros((0, 3)), requires_grad=True)
    with pytest.raises(ValueError, match="^argmax: the tensor is empty"):
        empty.argmax()
    with pytest.raises(ValueError, match="^argmin: the tensor of shape .* is empty along"):
        empty.argmin(0)
    with pytest.raises(ValueError, match="^max: the tensor of shape .* is empty along"):
        empty.max()
    with pytest.raises(ValueError, match="^min: the tensor of shape .* is empty along"):
        empty.min(0)
    # along a dim that is not empty, there is a (empty) result, as in PyTorch
    assert empty.max(1).shape == (0,) and empty.argmax(1).shape == (0,)
    empty.max(1).sum().backward()
    assert empty.grad.shape == (0, 3)


# -- NumPy interop and comparisons --------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_sees_the_data(dtype):
    t = Tensor(np.arange(6, dtype=dtype).reshape(2, 3), requires_grad=True)
    assert np.asarray(t) is t.data
    assert np.array(t, copy=False) is t.data
    copied = np.array(t)
    assert copied.dtype == dtype and copied is not t.data
    np.testing.assert_array_equal(copied, t.data)
    other = np.float64 if dtype == np.float32 else np.float32
    assert np.asarray(t, dtype=other).dtype == other
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        with pytest.raises(ValueError, match="without a copy"):
            np.array(t, dtype=other, copy=False)
    else:  # NumPy 1's copy=False means "copy only if needed", and never reaches __array__
        assert np.array(t, dtype=other, copy=False).dtype == other
    assert np.exp(t).dtype == dtype and isinstance(np.exp(t), np.ndarray)
    assert np.asarray([Tensor(1.0), Tensor(2.0)]).dtype == np.float64  # never objects


def test_tolist_and_item():
    t = Tensor(np.array([[1.5, 2.0], [3.0, 4.0]], np.float32))
    assert t.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert Tensor(2.5).tolist() == 2.5 and isinstance(Tensor(2.5).tolist(), float)


COMPARISONS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
               ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
               "!=": lambda a, b: a != b}


@pytest.mark.parametrize("op", COMPARISONS)
def test_comparisons_give_boolean_arrays(op):
    compare = COMPARISONS[op]
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([3.0, 2.0, 1.0])
    want = compare(a, b)
    for left, right in ((Tensor(a), Tensor(b)), (Tensor(a), b), (a, Tensor(b))):
        got = compare(left, right)
        assert isinstance(got, np.ndarray) and got.dtype == bool
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(compare(Tensor(a), 2), compare(a, 2))
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(want, compare(torch.from_numpy(a), torch.from_numpy(b)))


def test_tensors_hash_by_identity():
    a, b = Tensor([1.0, 2.0]), Tensor([1.0, 2.0])
    assert len({a, b}) == 2 and {a: 1, b: 2}[a] == 1
    assert a in [a] and hash(a) != hash(b)


@pytest.mark.parametrize("index", [[[0, 1], [1, 0]], [slice(None), 1], [None, 0],
                                   [Ellipsis, 1], [np.array([0, 1]), 0]], ids=str)
def test_a_list_that_pytorch_reads_as_a_tuple_is_refused(index):
    """PyTorch reads such a list as a tuple of indices, NumPy as one array: the two give
    different results, so the index must say which it means."""
    t = Tensor(np.arange(12.0).reshape(3, 4))
    with pytest.raises(TypeError, match=r"^index: .* is read as a tuple of indices by "
                                        r"PyTorch and as one array by NumPy"):
        t[index]
    assert t[tuple(index)].shape == t.data[tuple(index)].shape  # the tuple works
    assert t[[0, 2, 0]].shape == (3, 4)  # a flat list of ints is one array in both


def test_float_index_tensor_must_hold_whole_numbers():
    x = Tensor(np.arange(4.0), requires_grad=True)
    np.testing.assert_array_equal(x[Tensor([3, 1])].data, [3.0, 1.0])
    with pytest.raises(TypeError, match="^index: a Tensor used as an index must hold"):
        x[Tensor([0.5])]


# -- to, float, double --------------------------------------------------------------------

def test_to_converts_and_sends_the_gradient_back(backend):
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    assert x.to(np.float64) is x and x.double() is x and x.to("float64") is x
    y = x.float()
    assert y.dtype == np.float32 and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad, [2.0, 4.0])
    with pytest.raises(TypeError, match="^dtype: expected float32 or float64"):
        x.to(np.int32)


# -- bad input ----------------------------------------------------------------------------

def test_bad_input_errors_name_the_argument():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="^clamp: expected at least one of min and max"):
        x.clamp()
    with pytest.raises(TypeError, match="^clamp: min: expected a number or None"):
        x.clamp(Tensor(0.0))
    with pytest.raises(ValueError, match="^reshape: shape: cannot arrange 6 elements"):
        x.view(4, 2)
    with pytest.raises(ValueError, match="^flatten: start_dim"):
        x.flatten(1, 0)
    with pytest.raises(TypeError, match="^cat: tensors: expected a list or tuple"):
        cg.cat(x)
    with pytest.raises(ValueError, match="^cat: tensors: expected at least one"):
        cg.cat([])
    with pytest.raises(ValueError, match="^cat: tensors: expected shapes that differ only"):
        cg.cat([x, Tensor(np.ones((2, 2)))])
    with pytest.raises(ValueError, match="^cat: tensors: expected tensors of one number"):
        cg.cat([Tensor(1.0), Tensor(2.0)])
    with pytest.raises(ValueError, match="^stack: tensors: expected tensors of one shape"):
        cg.stack([x, Tensor(np.ones((3, 2)))])
    with pytest.raises(ValueError, match="^stack: dim: 3 is out of range"):
        cg.stack([x, x], dim=3)


def test_flatten_of_0d_tensor_is_1d(backend):
    s = Tensor(2.0, requires_grad=True)
    f = s.flatten()
    assert f.shape == (1,)
    f.sum().backward()
    assert s.grad.shape == () and s.grad == 1.0


def test_cat_mixed_dtypes_gives_float64_and_each_gradient_its_dtype(backend):
    a = Tensor(np.ones(2, np.float32), requires_grad=True)
    b = Tensor(np.ones(3, np.float64), requires_grad=True)
    out = cg.cat([a, b])
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


# -- constructors -------------------------------------------------------------------------

CONSTRUCTORS = {
    "zeros": (lambda **kw: cg.zeros(2, 3, **kw), np.zeros((2, 3))),
    "zeros_tuple": (lambda **kw: cg.zeros((2, 3), **kw), np.zeros((2, 3))),
    "ones": (lambda **kw: cg.ones([4], **kw), np.ones(4)),
    "full": (lambda **kw: cg.full((2, 2), 1.5, **kw), np.full((2, 2), 1.5)),
    "full_int": (lambda **kw: cg.full(3, 7, **kw), np.full(3, 7.0)),
    "eye": (lambda **kw: cg.eye(3, **kw), np.eye(3)),
    "eye_rect": (lambda **kw: cg.eye(2, 4, **kw), np.eye(2, 4)),
    "arange": (lambda **kw: cg.arange(5, **kw), np.arange(5.0)),
    "arange_step": (lambda **kw: cg.arange(1, 2, 0.25, **kw), np.arange(1, 2, 0.25)),
    "arange_down": (lambda **kw: cg.arange(3, 0, -1, **kw), np.arange(3.0, 0.0, -1.0)),
}


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_constructors(name):
    make, want = CONSTRUCTORS[name]
    t = make()
    assert isinstance(t, Tensor) and t.dtype == np.float32 and not t.requires_grad
    np.testing.assert_array_equal(t.data, want)
    t = make(dtype=np.float64, requires_grad=True)
    assert t.dtype == np.float64 and t.requires_grad and t.is_leaf


def test_constructors_match_pytorch():
    torch = pytest.importorskip("torch")
    pairs = [(cg.zeros(2, 3), torch.zeros(2, 3)), (cg.ones(4), torch.ones(4)),
             (cg.full((2, 2), 1.5), torch.full((2, 2), 1.5)),
             (cg.eye(2, 3), torch.eye(2, 3)),
             (cg.arange(1, 2, 0.25), torch.arange(1, 2, 0.25)),
             (cg.arange(0, 1, 0.1), torch.arange(0, 1, 0.1))]
    for ours, theirs in pairs:
        assert ours.shape == tuple(theirs.shape) and str(theirs.dtype) == "torch.float32"
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [None, np.float32, np.float64])
def test_like_constructors_take_shape_and_dtype(dtype):
    for source_dtype in DTYPES:
        t = Tensor(np.ones((2, 3), source_dtype))
        want = source_dtype if dtype is None else dtype
        for out in (cg.zeros_like(t, dtype=dtype), cg.ones_like(t, dtype=dtype),
                    cg.full_like(t, 2.5, dtype=dtype), cg.rand_like(t, dtype=dtype),
                    cg.randn_like(t, dtype=dtype, requires_grad=True)):
            assert out.shape == (2, 3) and out.dtype == want
        np.testing.assert_array_equal(cg.full_like(t, 2.5).data, 2.5)
        np.testing.assert_array_equal(cg.zeros_like(t).data, 0)
        np.testing.assert_array_equal(cg.ones_like(t).data, 1)


@pytest.mark.parametrize("make", [cg.rand, cg.randn])
def test_random_numbers_are_reproducible(make):
    a = make(3, 4, generator=np.random.default_rng(5))
    b = make((3, 4), generator=5)  # an int seeds a new generator
    np.testing.assert_array_equal(a.data, b.data)
    cg.manual_seed(11)
    c = make(100)
    cg.manual_seed(11)
    np.testing.assert_array_equal(make(100).data, c.data)
    assert not np.array_equal(make(100).data, c.data)  # the default generator moved on
    assert make(2, dtype=np.float64).dtype == np.float64


def test_random_distributions():
    generator = np.random.default_rng(0)
    u = cg.rand(20000, generator=generator).data
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    n = cg.randn(20000, generator=generator, dtype=np.float64).data
    assert abs(n.mean()) < 0.03 and abs(n.std() - 1) < 0.03


def test_constructor_errors():
    with pytest.raises(ValueError, match="^zeros: size: expected non-negative ints"):
        cg.zeros(2, -1)
    with pytest.raises(ValueError, match="^ones: size: expected non-negative ints"):
        cg.ones(2.5)
    with pytest.raises(TypeError, match="^dtype: expected float32 or float64"):
        cg.zeros(2, dtype=np.int64)
    with pytest.raises(TypeError, match="^generator: expected a numpy.random.Generator"):
        cg.rand(2, generator="seed")
    with pytest.raises(ValueError, match="^arange: step: expected a non-zero number"):
        cg.arange(0, 1, 0)
    with pytest.raises(TypeError, match="^seed: expected an int"):
        cg.manual_seed(1.5)
    with pytest.raises(TypeError, match="^input: expected a Tensor"):
        cg.zeros_like(np.ones(3))


# -- indexing with ints and arrays: PyTorch's shapes -----------------------------------------

MASK_4X5 = np.array([[True, False, True, True, False]] * 4)
INDICES = {  # an int and an array separated by a slice, None or Ellipsis; and the rest
    "int_slice_list": (0, slice(None), [1]),
    "int_slice_list_of_two": (0, slice(None), [2, 0]),
    "slice_int_list": (slice(None), 0, [1, 1]),
    "list_slice_list": ([0, 1], slice(None), [1, 3]),
    "int_ellipsis_list": (1, Ellipsis, [0, 0, 2]),
    "ellipsis_int_list": (Ellipsis, 0, [1]),
    "int_none_slice_list": (0, None, slice(1, 3), [1, 1]),
    "int_list_slice_int": (1, [[0, 2]], slice(None), 2),
    "int_mask": (0, np.array([True, False, True])),
    "int_slice_mask": (1, slice(None), MASK_4X5),
    "int_list_list": (0, [2, 1], [1, 1]),
    "int_ellipsis_list_slice": (0, Ellipsis, [1], slice(None)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", INDICES)
def test_indexing_with_ints_and_arrays_matches_torch(name, dtype, backend, rng):
    torch = pytest.importorskip("torch")
    index = INDICES[name]
    data = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    x, tx = Tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    ours = x[index]
    theirs = tx[tuple(torch.tensor(p) if isinstance(p, (list, np.ndarray)) else p
                      for p in index)]
    assert ours.shape == tuple(theirs.shape) and ours.dtype == dtype
    np.testing.assert_array_equal(ours.data, theirs.detach().numpy())
    weights = rng.standard_normal(ours.shape).astype(dtype)
    (ours * Tensor(weights)).sum().backward()
    (theirs * torch.from_numpy(weights)).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), **TOL[dtype])


def test_indexing_with_an_int_and_a_list_has_torchs_shape_not_numpys():
    x = Tensor(np.zeros((2, 3, 4)))
    assert x[0, :, [1]].shape == (3, 1)  # NumPy: (1, 3)
    assert x[[0], :, [1]].shape == (1, 3)  # arrays only: the two agree


@pytest.mark.parametrize("dtype", DTYPES)
def test_indexing_with_ints_and_arrays_passes_gradcheck(dtype, backend, rng):
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    assert cg.gradcheck(lambda t: t[1, :, [0, 2, 2]] * 2.0, (x,))


# -- PyTorch's method names for the operators ------------------------------------------------

ALIASES = {"add": "__add__", "sub": "__sub__", "mul": "__mul__", "div": "__truediv__",
           "pow": "__pow__", "matmul": "__matmul__", "maximum": None, "minimum": None}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ALIASES) + ["neg"])
def test_operator_methods_match_torch(name, dtype, backend, rng):
    torch = pytest.importorskip("torch")
    a_data = rng.uniform(0.5, 2.0, (3, 3)).astype(dtype)
    b_data = rng.uniform(0.5, 2.0, (3, 3)).astype(dtype)
    a, b = Tensor(a_data, requires_grad=True), Tensor(b_data, requires_grad=True)
    ta, tb = torch.tensor(a_data, requires_grad=True), torch.tensor(b_data, requires_grad=True)
    args, targs = ((), ()) if name == "neg" else ((b,), (tb,))
    ours, theirs = getattr(a, name)(*args), getattr(ta, name)(*targs)
    assert ours._op == name and ours.dtype == dtype
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), **TOL[dtype])
    ours.sum().backward()
    theirs.sum().backward()
    for t, tt in ((a, ta), (b, tb))[:1 + bool(args)]:
        np.testing.assert_allclose(t.grad, tt.grad.numpy(), **TOL[dtype])


def test_operator_methods_are_the_operators():
    for name, dunder in ALIASES.items():
        assert getattr(Tensor, name) is cg.ops.TABLE[name]
        if dunder:
            assert getattr(Tensor, dunder) is cg.ops.TABLE[name]
    assert Tensor.neg is Tensor.__neg__ is cg.ops.TABLE["neg"]


def test_pow_of_a_float32_base_and_float64_exponent_is_computed_in_float64(backend):
    """The result is float64, and so must be d/db = a^b log(a): log of the float32 base
    taken in float32 would lose digits beyond 1e-7."""
    torch = pytest.importorskip("torch")
    base = np.array([0.5, 3.0], np.float32)
    exponent = np.array([0.5, 1.5])
    b = Tensor(exponent, requires_grad=True)
    out = base ** b
    out.sum().backward()
    tb = torch.tensor(exponent, requires_grad=True)
    (torch.from_numpy(base) ** tb).sum().backward()
    assert out.dtype == np.float64 and b.grad.dtype == np.float64
    np.testing.assert_allclose(b.grad, tb.grad.numpy(), rtol=1e-14)
