"""PyTorch's conventions where a derivative is undefined or its formula degenerates, the
handling of 0-d tensors in reductions, and PyTorch's type promotion for 0-d tensors and
numbers.

Each convention is a row: a function, its inputs and the gradients PyTorch gives. One test
asserts cygrad gives them (both backends, float32 and float64); another asserts torch
gives them, so the table holds PyTorch's values and not merely ours.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import cygrad as cg
from cygrad import Tensor

DTYPES = [np.float32, np.float64]
INF, NAN = math.inf, math.nan


# name: (function of the inputs, inputs, PyTorch's gradients of sum(function(inputs)))
CONVENTIONS = {
    # d/dx x^0 is 0 everywhere, also at 0 where b * x^(b-1) is 0 * inf
    "pow_zero_exponent": (lambda x: x ** 0, [[0.0, 1.0]], [[0.0, 0.0]]),
    # d/db a^b at a == 0, b >= 0 is 0, not a^b log(a) = 0 * -inf
    "pow_zero_base": (lambda a, b: a ** b, [[0.0, 2.0], [2.0, 2.0]],
                      [[0.0, 4.0], [0.0, 2.772588722239781]]),
    "pow_zero_base_zero_exponent": (lambda a, b: a ** b, [[0.0], [0.0]], [[0.0], [0.0]]),
    "pow_zero_base_negative_exponent": (lambda a, b: a ** b, [[0.0], [-1.0]],
                                        [[-INF], [-INF]]),
    "pow_zero_base_half_exponent": (lambda a, b: a ** b, [[0.0], [0.5]], [[INF], [0.0]]),
    "pow_negative_base_fraction": (lambda a, b: a ** b, [[-2.0], [0.5]], [[NAN], [NAN]]),
    "relu_at_zero": (lambda x: x.relu(), [[0.0, -1.0, 1.0]], [[0.0, 0.0, 1.0]]),
    "abs_at_zero": (lambda x: abs(x), [[0.0, -1.0, 1.0]], [[0.0, -1.0, 1.0]]),
    "sqrt_at_zero": (lambda x: x.sqrt(), [[0.0, 4.0]], [[INF, 0.25]]),
    "log_at_zero": (lambda x: x.log(), [[0.0, 4.0]], [[INF, 0.25]]),
    "max_ties_split": (lambda x: x.max(), [[1.0, 3.0, 3.0]], [[0.0, 0.5, 0.5]]),
    "min_ties_split": (lambda x: x.min(), [[1.0, 1.0, 3.0]], [[0.5, 0.5, 0.0]]),
    # with a dim: torch.amax/amin's convention (values only, ties split)
    "max_dim_ties_split": (lambda x: x.max(1), [[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]],
                           [[[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]]]),
    "min_dim_ties_split": (lambda x: x.min(0), [[[1.0, 3.0], [1.0, 2.0]]],
                           [[[0.5, 0.0], [0.5, 1.0]]]),
    "maximum_ties_split": (lambda a, b: cg.maximum(a, b), [[1.0, 2.0], [1.0, 3.0]],
                           [[0.5, 0.0], [0.5, 1.0]]),
    "minimum_ties_split": (lambda a, b: cg.minimum(a, b), [[1.0, 2.0], [1.0, 3.0]],
                           [[0.5, 1.0], [0.5, 0.0]]),
    # the bounds themselves pass the gradient
    "clamp_at_bounds": (lambda x: x.clamp(0, 1), [[0.0, 1.0, 0.5, 2.0, -1.0]],
                        [[1.0, 1.0, 1.0, 0.0, 0.0]]),
    "clamp_min_only": (lambda x: x.clamp(min=0), [[0.0, -1.0, 2.0]], [[1.0, 0.0, 1.0]]),
    "clamp_max_only": (lambda x: x.clamp(max=0), [[0.0, -1.0, 2.0]], [[1.0, 1.0, 0.0]]),
    "clamp_min_above_max": (lambda x: x.clamp(2, 1), [[0.0, 1.5, 3.0]], [[0.0, 0.0, 0.0]]),
    # An infinite incoming gradient: masks give the unselected elements 0, products nan.
    "relu_masks_inf": (lambda x: x.relu() * INF, [[-1.0, 0.0, 1.0]], [[0.0, 0.0, INF]]),
    "relu_passes_at_nan": (lambda x: x.log().relu(), [[-2.0, 2.0]], [[-0.5, 0.5]]),
    "clamp_masks_inf": (lambda x: x.clamp(0, 1) * INF, [[-1.0, 0.5, 2.0]],
                        [[0.0, INF, 0.0]]),
    "maximum_masks_inf": (lambda a, b: cg.maximum(a, b) * INF,
                          [[1.0, 2.0, 3.0], [2.0, 2.0, 1.0]],
                          [[0.0, INF, INF], [INF, INF, 0.0]]),
    "minimum_masks_inf": (lambda a, b: cg.minimum(a, b) * INF,
                          [[1.0, 2.0, 3.0], [2.0, 2.0, 1.0]],
                          [[INF, INF, 0.0], [0.0, INF, INF]]),
    "max_masks_inf": (lambda x: x.max() * INF, [[1.0, 3.0, 2.0]], [[0.0, INF, 0.0]]),
    "max_dim_multiplies_inf": (lambda x: x.max(0) * INF, [[1.0, 3.0, 2.0]],
                               [[NAN, INF, NAN]]),
    "abs_multiplies_inf": (lambda x: abs(x) * INF, [[-1.0, 0.0, 1.0]], [[-INF, NAN, INF]]),
    "pow_zero_exponent_masks_inf": (lambda x: x ** 0 * INF, [[0.0, 1.0]], [[0.0, 0.0]]),
    # At a nan input: sign(nan) is 0; nan has no order, so max/min let it through.
    "relu_at_nan": (lambda x: x.relu(), [[NAN, 1.0, -1.0]], [[1.0, 1.0, 0.0]]),
    "abs_at_nan": (lambda x: abs(x), [[NAN, -1.0]], [[0.0, -1.0]]),
    "clamp_at_nan": (lambda x: x.clamp(0, 1), [[NAN, 0.5]], [[0.0, 1.0]]),
    "l1_loss_at_nan": (lambda x, t: cg.functional.l1_loss(x, t), [[NAN, 1.0], [0.0, 0.0]],
                       [[0.0, 0.5], [0.0, -0.5]]),
    "maximum_at_nan": (lambda a, b: cg.maximum(a, b), [[NAN, 1.0, NAN, 2.0],
                                                       [1.0, NAN, NAN, 1.0]],
                       [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]]),
    "minimum_at_nan": (lambda a, b: cg.minimum(a, b), [[NAN, 1.0, NAN, 2.0],
                                                       [1.0, NAN, NAN, 1.0]],
                       [[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]),
    "max_at_nan": (lambda x: x.max(), [[NAN, 1.0, NAN]], [[0.5, 0.0, 0.5]]),
    "min_at_nan": (lambda x: x.min(), [[NAN, 1.0, NAN]], [[0.5, 0.0, 0.5]]),
    "max_dim_at_nan": (lambda x: x.max(1), [[[NAN, 1.0, NAN], [1.0, 2.0, 3.0]]],
                       [[[NAN, NAN, NAN], [0.0, 0.0, 1.0]]]),
    "min_dim_at_nan": (lambda x: x.min(1), [[[NAN, 1.0, 2.0], [1.0, 2.0, 3.0]]],
                       [[[NAN, NAN, NAN], [1.0, 0.0, 0.0]]]),
}

# The same functions in PyTorch's spelling, where it differs.
TORCH_SPELLING = {
    "max_dim_ties_split": lambda x: x.amax(1),
    "min_dim_ties_split": lambda x: x.amin(0),
    "maximum_ties_split": lambda a, b: a.maximum(b),
    "minimum_ties_split": lambda a, b: a.minimum(b),
    "maximum_masks_inf": lambda a, b: a.maximum(b) * INF,
    "minimum_masks_inf": lambda a, b: a.minimum(b) * INF,
    "max_dim_multiplies_inf": lambda x: x.amax(0) * INF,
    "l1_loss_at_nan": lambda x, t: __import__("torch").nn.functional.l1_loss(x, t),
    "maximum_at_nan": lambda a, b: a.maximum(b),
    "minimum_at_nan": lambda a, b: a.minimum(b),
    "max_dim_at_nan": lambda x: x.amax(1),
    "min_dim_at_nan": lambda x: x.amin(1),
}


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # log(0), 0 ** -1
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # (-2) ** 0.5
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CONVENTIONS)
def test_cygrad_follows_pytorch_convention(name, dtype, backend):
    fn, values, expected = CONVENTIONS[name]
    inputs = [Tensor(np.array(v, dtype), requires_grad=True) for v in values]
    fn(*inputs).sum().backward()
    for t, want in zip(inputs, expected):
        assert t.grad.dtype == dtype
        np.testing.assert_allclose(t.grad, np.array(want, dtype), rtol=1e-6)


@pytest.mark.parametrize("name", CONVENTIONS)
def test_the_table_holds_pytorchs_values(name):
    torch = pytest.importorskip("torch")
    fn, values, expected = CONVENTIONS[name]
    inputs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    TORCH_SPELLING.get(name, fn)(*inputs).sum().backward()
    for t, want in zip(inputs, expected):
        np.testing.assert_allclose(t.grad.numpy(), want, rtol=1e-12)


def test_max_with_dim_differs_from_torch_max_dim_only_in_ties():
    """torch.max(x, dim) sends a tie's gradient to the one index it returns; cygrad's
    max(dim) is torch.amax (docs/tensor.md): without ties the two agree."""
    torch = pytest.importorskip("torch")
    data = np.array([[1.0, 5.0, 3.0], [4.0, 2.0, 0.0]])
    x = Tensor(data, requires_grad=True)
    x.max(1).sum().backward()
    tx = torch.tensor(data, requires_grad=True)
    tx.max(1).values.sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())


# -- reductions of a 0-d tensor (a loss) ------------------------------------------------

REDUCTIONS_0D = {
    "sum": lambda s, d: s.sum(d), "mean": lambda s, d: s.mean(d),
    "max": lambda s, d: s.max(d), "min": lambda s, d: s.min(d),
    "sum_keepdim": lambda s, d: s.sum(d, keepdim=True),
    "max_keepdims": lambda s, d: s.max(axis=d, keepdims=True),
}
ALONG_ONE_DIM_0D = {  # name: (op, PyTorch's value, PyTorch's gradient)
    "softmax": (lambda s, d: s.softmax(d), 1.0, 0.0),
    "log_softmax": (lambda s, d: s.log_softmax(d), 0.0, 0.0),
}


@pytest.mark.parametrize("dim", [0, -1, (0,), None])
@pytest.mark.parametrize("name", REDUCTIONS_0D)
def test_reductions_of_a_0d_tensor_accept_dim_0_and_minus_1(name, dim, backend):
    s = Tensor(np.float32(2.5), requires_grad=True)
    out = REDUCTIONS_0D[name](s, dim)
    assert out.shape == () and out.dtype == np.float32 and out.item() == 2.5
    out.backward()
    assert s.grad.shape == () and s.grad.item() == 1.0


@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("name", ALONG_ONE_DIM_0D)
def test_softmax_of_a_0d_tensor_accepts_dim_0_and_minus_1(name, dim, backend):
    fn, value, grad = ALONG_ONE_DIM_0D[name]
    s = Tensor(np.float32(2.5), requires_grad=True)
    out = fn(s, dim)
    assert out.shape == () and out.dtype == np.float32 and out.item() == value
    out.backward()
    assert s.grad.shape == () and s.grad.item() == grad


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("dim", [0, -1, None])
def test_argmax_argmin_of_a_0d_tensor(op, dim):
    index = getattr(Tensor(3.0), op)(dim)
    assert index.shape == () and index.dtype == np.int64 and index.item() == 0


@pytest.mark.parametrize("dim", [1, -2])
@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "softmax", "argmax"])
def test_0d_tensor_refuses_other_dims(op, dim):
    with pytest.raises(ValueError, match=rf"^{op}: dim: {dim} is out of range"):
        getattr(Tensor(3.0), op)(dim)


def test_0d_reductions_match_torch():
    torch = pytest.importorskip("torch")
    ours_by_torch_name = {"sum": REDUCTIONS_0D["sum"], "mean": REDUCTIONS_0D["mean"],
                          "amax": REDUCTIONS_0D["max"], "amin": REDUCTIONS_0D["min"],
                          "softmax": ALONG_ONE_DIM_0D["softmax"][0],
                          "log_softmax": ALONG_ONE_DIM_0D["log_softmax"][0]}
    for name, ours_fn in ours_by_torch_name.items():
        for dim in (0, -1):
            s = Tensor(2.5, requires_grad=True)
            t = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
            ours, theirs = ours_fn(s, dim), getattr(t, name)(dim)
            assert ours.shape == tuple(theirs.shape)
            assert ours.item() == pytest.approx(theirs.item())
            ours.backward()
            theirs.backward()
            assert s.grad.item() == pytest.approx(t.grad.item())


# -- type promotion -----------------------------------------------------------------------

OPERATORS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
             "mul": lambda a, b: a * b, "div": lambda a, b: a / b,
             "pow": lambda a, b: a ** b, "maximum": cg.maximum, "minimum": cg.minimum}


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("op", OPERATORS)
def test_0d_tensor_does_not_promote_a_tensor_with_dimensions(op, swap, backend):
    vector = Tensor(np.array([1.5, 2.0, 3.0], np.float32), requires_grad=True)
    scalar = Tensor(np.float64(2.0), requires_grad=True)
    a, b = (scalar, vector) if swap else (vector, scalar)
    out = OPERATORS[op](a, b)
    assert out.dtype == np.float32
    out.sum().backward()
    assert vector.grad.dtype == np.float32 and scalar.grad.dtype == np.float64
    assert scalar.grad.shape == () and np.isfinite(scalar.grad)


@pytest.mark.parametrize("op", OPERATORS)
def test_promotion_matches_torch(op):
    torch = pytest.importorskip("torch")
    fn = OPERATORS[op]
    torch_fn = {"maximum": torch.maximum, "minimum": torch.minimum}.get(op, fn)
    shapes = [(3,), ()]
    for shape_a in shapes:
        for shape_b in shapes:
            for dtype_a, dtype_b in ((np.float32, np.float64), (np.float64, np.float32)):
                a = np.full(shape_a, 1.5, dtype_a)
                b = np.full(shape_b, 2.0, dtype_b)
                ours = fn(Tensor(a), Tensor(b))
                theirs = torch_fn(torch.from_numpy(a), torch.from_numpy(b))
                assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
                np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6)


@pytest.mark.parametrize("number", [2, 2.0, True, np.float64(2.0), np.int64(2),
                                    np.float32(2.0)], ids=repr)
@pytest.mark.parametrize("dtype", DTYPES)
def test_numbers_take_the_tensors_dtype(number, dtype):
    for shape in [(3,), ()]:  # also a 0-d tensor: a number never decides
        t = Tensor(np.ones(shape, dtype))
        for out in (t * number, number * t, t + number, number - t, t ** number):
            assert out.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_and_boolean_arrays_take_the_tensors_dtype(dtype):
    t = Tensor(np.ones(3, dtype))
    assert (t * np.array([1, 2, 3])).dtype == dtype
    assert (t + np.array([True, False, True])).dtype == dtype


def test_tensors_of_equal_rank_promote_to_float64():
    for shape in [(3,), ()]:
        a = Tensor(np.ones(shape, np.float32))
        b = Tensor(np.ones(shape, np.float64))
        assert (a * b).dtype == np.float64 and (b - a).dtype == np.float64
    # a float64 array operand counts as a tensor
    assert (Tensor(np.ones(3, np.float32)) * np.ones(3)).dtype == np.float64
    assert (Tensor(np.ones(3, np.float32)) * np.array(2.0)).dtype == np.float32


# -- empty tensors: what PyTorch returns, not an error -------------------------------------

EMPTY = {  # name: (cygrad's function, PyTorch's spelling, input shape)
    "softmax": (lambda x: x.softmax(-1), lambda x: x.softmax(-1), (0,)),
    "log_softmax": (lambda x: x.log_softmax(-1), lambda x: x.log_softmax(-1), (0,)),
    "softmax_empty_other_dim": (lambda x: x.softmax(0), lambda x: x.softmax(0), (0, 3)),
    "log_softmax_dim_1": (lambda x: x.log_softmax(1), lambda x: x.log_softmax(1), (0, 3)),
    "sum": (lambda x: x.sum(), lambda x: x.sum(), (0,)),
    "sum_dim": (lambda x: x.sum(0), lambda x: x.sum(0), (0, 3)),
    "mean": (lambda x: x.mean(), lambda x: x.mean(), (0,)),
    "mean_dim": (lambda x: x.mean(0), lambda x: x.mean(0), (0, 3)),
    "mean_dim_keepdim": (lambda x: x.mean(0, keepdim=True),
                         lambda x: x.mean(0, keepdim=True), (0, 3)),
    "mean_other_dim": (lambda x: x.mean(1), lambda x: x.mean(1), (0, 3)),
    "max_other_dim": (lambda x: x.max(1), lambda x: x.amax(1), (0, 3)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EMPTY)
def test_ops_of_empty_tensors_match_torch(name, dtype, backend):
    torch = pytest.importorskip("torch")
    ours_fn, torch_fn, shape = EMPTY[name]
    x = Tensor(np.zeros(shape, dtype), requires_grad=True)
    tx = torch.zeros(shape, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
    ours, theirs = ours_fn(x), torch_fn(tx)
    assert ours.shape == tuple(theirs.shape) and ours.dtype == dtype
    np.testing.assert_array_equal(ours.data, theirs.detach().numpy())  # nan where torch's
    ours.sum().backward()
    theirs.sum().backward()
    assert x.grad.shape == shape and x.grad.dtype == dtype
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_of_an_empty_tensor_is_an_error_as_in_torch(op):
    with pytest.raises(ValueError, match=rf"^{op}: the tensor of shape \(0,\) is empty"):
        getattr(Tensor(np.zeros(0)), op)()


# -- F.linear takes Tensors ------------------------------------------------------------------

@pytest.mark.parametrize("argument", ["weight", "bias"])
def test_linear_refuses_an_array_weight_or_bias_naming_it(argument):
    x, w, b = Tensor(np.ones((1, 2))), Tensor(np.ones((3, 2))), Tensor(np.ones(3))
    kwargs = {"weight": w, "bias": b}
    kwargs[argument] = kwargs[argument].data
    with pytest.raises(TypeError, match=rf"^linear: {argument}: expected a Tensor .*got "
                                        rf"ndarray: pass cg.Tensor\({argument}\)"):
        cg.functional.linear(x, **kwargs)
