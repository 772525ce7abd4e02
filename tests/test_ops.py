"""Every op of ops.py and functional.py against central finite differences (gradcheck), on
both backends; exact gradients where the rule is a convention (ties); the losses' edge
cases; and one random graph that must give the same gradients on both backends.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import cygrad as cg
from cygrad import Tensor
from cygrad import functional as F

EXACT = dict(rtol=1e-12, atol=1e-12)

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


def _t(rng, shape, low=-2.0, high=2.0, requires_grad=True) -> Tensor:
    return Tensor(rng.uniform(low, high, shape), requires_grad=requires_grad)


def _away_from_zero(rng, shape, low=0.2, high=2.0) -> Tensor:
    """Values with |x| in [low, high] and random signs: no kink (relu) or pole (div)
    within the finite-difference step."""
    magnitude = rng.uniform(low, high, shape)
    return Tensor(magnitude * rng.choice([-1.0, 1.0], shape), requires_grad=True)


def _check(fn, *inputs) -> None:
    assert cg.gradcheck(fn, list(inputs)) is True


# -- element-wise arithmetic --------------------------------------------------------------

BROADCAST = [((3, 4), (3, 4)), ((5,), (5,)), ((3, 4), (4,)), ((4,), (3, 4)),
             ((3, 4), (3, 1)), ((2, 3, 4), (3, 4)), ((3, 4), (2, 3, 4)), ((), (3, 4)),
             ((3, 4), ()), ((3, 1), (1, 4)), ((2, 1, 4), (3, 1)), ((2, 3, 4), (2, 3, 4))]


@pytest.mark.parametrize("shape_a, shape_b", BROADCAST, ids=str)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum"])
def test_binary_op_gradcheck(op, shape_a, shape_b, rng):
    if op == "div":
        a, b = _t(rng, shape_a), _away_from_zero(rng, shape_b, 0.5)
        fn = lambda a, b: a / b  # noqa: E731
    elif op == "pow":  # a positive base, so d/db = a^b log(a) exists
        a, b = _t(rng, shape_a, 0.5, 2.0), _t(rng, shape_b, -2.0, 2.0)
        fn = lambda a, b: a ** b  # noqa: E731
    else:
        a, b = _t(rng, shape_a), _t(rng, shape_b)
        fn = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
              "mul": lambda a, b: a * b, "maximum": cg.maximum}[op]
    out = fn(a, b)
    want = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
            "pow": np.power, "maximum": np.maximum}[op](a.data, b.data)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.data, want, **EXACT)
    _check(fn, a, b)


@pytest.mark.parametrize("expr", ["t * 2.5", "2.5 * t", "t + 3", "3 + t", "t - 1.5", "1.5 - t",
                                  "t / 3.0", "1 / t", "t ** 2", "t ** 3.5", "2.0 ** t", "-t",
                                  "-(2 - t) * t"])
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)], ids=str)
def test_python_number_operand_gradcheck(expr, shape, rng):
    t0 = _away_from_zero(rng, shape, 0.5, 2.0)
    if "**" in expr and not expr.startswith("2.0"):
        t0 = Tensor(np.abs(t0.data), requires_grad=True)
    fn = eval(f"lambda t: {expr}")  # noqa: S307 (test expressions above)
    np.testing.assert_allclose(fn(t0).data, fn(t0.data), **EXACT)
    _check(fn, t0)


# -- matrix product -----------------------------------------------------------------------

MATMUL = [((3, 4), (4, 5)), ((1, 4), (4, 1)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
          ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)),
          ((4,), (2, 4, 5)), ((2, 3, 4), (4,)), ((2, 1, 3, 4), (5, 4, 2))]


@pytest.mark.parametrize("needs", ["both", "a", "b"])
@pytest.mark.parametrize("shape_a, shape_b", MATMUL, ids=str)
def test_matmul_gradcheck(shape_a, shape_b, needs, rng):
    a = _t(rng, shape_a, requires_grad=needs in ("both", "a"))
    b = _t(rng, shape_b, requires_grad=needs in ("both", "b"))
    out = a @ b
    want = a.data @ b.data
    assert out.shape == want.shape
    np.testing.assert_allclose(out.data, want, **EXACT)
    _check(lambda a, b: a @ b, a, b)


def test_matmul_gradient_values(rng):
    a, b = _t(rng, (3, 4)), _t(rng, (4, 5))
    g = rng.standard_normal((3, 5))
    (a @ b).backward(g)
    np.testing.assert_allclose(a.grad, g @ b.data.T, **EXACT)
    np.testing.assert_allclose(b.grad, a.data.T @ g, **EXACT)


# -- reductions ---------------------------------------------------------------------------

AXES_3D = [None, 0, 1, 2, -1, (0, 2), (1, 2), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES_3D, ids=str)
@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reduction_gradcheck_3d(op, axis, keepdims, rng):
    x = _t(rng, (2, 3, 4))  # continuous random values: no ties for max
    out = getattr(x, op)(axis=axis, keepdims=keepdims)
    want = getattr(x.data, op)(axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(want)
    np.testing.assert_allclose(out.data, want, **EXACT)
    _check(lambda x: getattr(x, op)(axis=axis, keepdims=keepdims), x)


@pytest.mark.parametrize("shape, axis", [((5,), None), ((5,), 0), ((5,), -1), ((3, 4), None),
                                         ((3, 4), 0), ((3, 4), 1), ((3, 4), (0, 1)),
                                         ((), None)], ids=str)
@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reduction_gradcheck_1d_2d(op, shape, axis, rng):
    x = _t(rng, shape)
    for keepdims in (False, True):
        np.testing.assert_allclose(getattr(x, op)(axis=axis, keepdims=keepdims).data,
                                   getattr(x.data, op)(axis=axis, keepdims=keepdims), **EXACT)
        _check(lambda x: getattr(x, op)(axis=axis, keepdims=keepdims), x)


def test_max_ties_split_the_gradient_evenly():
    x = Tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [0, 0, 0]])
    x.grad = None
    x.max(axis=1).backward(np.array([2.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [[0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    x.grad = None
    x.max(axis=0, keepdims=True).backward(np.array([[4.0, 4.0, 4.0]]))
    np.testing.assert_array_equal(x.grad, [[0, 4.0, 4.0], [4.0, 0, 0]])
    x.grad = None
    y = Tensor([[5.0, 1.0], [5.0, 5.0]], requires_grad=True)
    y.max().backward()
    np.testing.assert_array_equal(y.grad, [[1 / 3, 0], [1 / 3, 1 / 3]])


def test_maximum_ties_split_the_gradient_evenly():
    a = Tensor([1.0, 2.0, 3.0, -1.0], requires_grad=True)
    b = Tensor([1.0, 5.0, 3.0, -2.0], requires_grad=True)
    cg.maximum(a, b).backward(np.array([2.0, 4.0, 6.0, 8.0]))
    np.testing.assert_array_equal(a.grad, [1.0, 0.0, 3.0, 8.0])
    np.testing.assert_array_equal(b.grad, [1.0, 4.0, 3.0, 0.0])
    c = Tensor([[0.0, 1.0], [-1.0, 0.0]], requires_grad=True)
    s = Tensor(0.0, requires_grad=True)  # broadcast: its gradient sums its shares
    cg.maximum(c, s).sum().backward()
    np.testing.assert_array_equal(c.grad, [[0.5, 1.0], [0.0, 0.5]])
    np.testing.assert_array_equal(s.grad, 0.5 + 0.0 + 1.0 + 0.5)


# -- element-wise functions ---------------------------------------------------------------

UNARY = {
    "exp": (lambda x: x.exp(), np.exp),
    "log": (lambda x: x.log(), np.log),
    "sigmoid": (lambda x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (lambda x: x.tanh(), np.tanh),
    "relu": (lambda x: x.relu(), lambda x: np.maximum(x, 0)),
    "neg": (lambda x: -x, np.negative),
    "F.sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "F.tanh": (F.tanh, np.tanh),
    "F.relu": (F.relu, lambda x: np.maximum(x, 0)),
}


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_op_gradcheck(name, shape, rng):
    fn, want = UNARY[name]
    x = _away_from_zero(rng, shape)
    if name == "log":
        x = Tensor(np.abs(x.data), requires_grad=True)
    np.testing.assert_allclose(fn(x).data, want(x.data), **EXACT)
    _check(fn, x)


# -- shape ops ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape, new", [((2, 3, 4), (6, 4)), ((2, 3, 4), (-1,)),
                                        ((3, 4), (2, 2, 3)), ((5,), (5, 1)), ((1,), ())],
                         ids=str)
def test_reshape_gradcheck(shape, new, rng):
    x = _t(rng, shape)
    assert x.reshape(new).shape == x.data.reshape(new).shape
    _check(lambda x: x.reshape(new), x)
    _check(lambda x: x.reshape(*new), x)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("empty", [(), []])
def test_an_empty_dim_reduces_every_axis_as_torch(op, empty, rng):
    x = _t(rng, (2, 3))
    out = getattr(x, op)(dim=empty)
    assert out.shape == () and out.item() == getattr(x.data, op)()
    _check(lambda x: getattr(x, op)(dim=empty), x)


@pytest.mark.parametrize("axes", [(0, 1, 2), (1, 2, 0), (2, 0, 1), (1, 0, 2), (0, 2, 1),
                                  (-1, 0, 1), (2, -3, -2), (-1, -2, -3)], ids=str)
def test_permute_gradcheck(axes, rng):
    x = _t(rng, (2, 3, 4))
    out = x.permute(*axes)
    want = x.data.transpose(*axes)
    assert out.shape == want.shape and out._op == "permute"
    np.testing.assert_array_equal(out.data, want)
    _check(lambda x: x.permute(*axes), x)
    _check(lambda x: x.permute(axes), x)  # one sequence, as torch.permute takes too


def test_permute_gradient_is_the_inverse_permutation(rng):
    x = _t(rng, (2, 3, 4))
    g = rng.standard_normal((4, 2, 3))
    x.permute(-1, 0, 1).backward(g)
    np.testing.assert_array_equal(x.grad, g.transpose(1, 2, 0))


@pytest.mark.parametrize("shape, dims", [((3, 4), (0, 1)), ((3, 4), (1, 0)), ((3, 4), (0, 0)),
                                         ((2, 3, 4), (1, 2)), ((2, 3, 4), (-1, 0)),
                                         ((2, 3, 4, 5), (-3, -2)), ((5,), (0, -1))], ids=str)
def test_transpose_swaps_two_dims_as_torch(shape, dims, rng):
    x = _t(rng, shape)
    swapped = list(range(len(shape)))
    i, j = (d % len(shape) for d in dims)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    np.testing.assert_array_equal(x.transpose(*dims).data, x.data.transpose(swapped))
    _check(lambda x: x.transpose(*dims), x)
    torch = pytest.importorskip("torch")
    assert x.transpose(*dims).shape == tuple(torch.zeros(shape).transpose(*dims).shape)


VAR_ARGS = {"all": {}, "dim": {"dim": 1}, "dims-keepdim": {"dim": (0, 2), "keepdim": True},
            "biased": {"unbiased": False}, "correction-0": {"correction": 0},
            "correction-2": {"correction": 2, "dim": -1}}


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("case", list(VAR_ARGS))
def test_var_and_std_match_torch(name, case, rng):
    torch = pytest.importorskip("torch")
    kwargs = VAR_ARGS[case]
    x = _t(rng, (3, 4, 5))
    theirs = torch.tensor(x.data, requires_grad=True)
    out, want = getattr(x, name)(**kwargs), getattr(theirs, name)(**kwargs)
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad, theirs.grad.numpy(), rtol=1e-10)
    _check(lambda x: getattr(x, name)(**kwargs), x)


@pytest.mark.parametrize("shape, correction", [((1,), 1), ((0,), 1), ((2,), 3), ((3,), 3)])
def test_var_without_degrees_of_freedom_is_torchs_nan_or_inf(shape, correction):
    x = Tensor(np.arange(1.0, 1.0 + math.prod(shape)).reshape(shape), requires_grad=True)
    want = {((1,), 1): np.nan, ((0,), 1): np.nan, ((2,), 3): np.inf, ((3,), 3): np.inf}
    out = x.var(correction=correction)
    np.testing.assert_array_equal(out.data, want[shape, correction])
    with pytest.raises(TypeError, match="^var: got both unbiased and correction"):
        x.var(unbiased=True, correction=1)


def test_var_over_an_empty_dim_is_over_every_axis(rng):
    """As the forward of torch.var(dim=()); its backward there (PyTorch 2.13) treats the
    empty dim as no axis and gives inf, so the gradient is checked against var()."""
    x = _t(rng, (3, 4))
    np.testing.assert_allclose(x.var(dim=()).data, x.var().data, rtol=1e-14)
    _check(lambda x: x.var(dim=()), x)


SHAPE_CALLS = {
    "squeeze()": lambda x: x.squeeze(), "squeeze(1)": lambda x: x.squeeze(1),
    "squeeze(0)": lambda x: x.squeeze(0), "squeeze((1, -1))": lambda x: x.squeeze((1, -1)),
    "unsqueeze(0)": lambda x: x.unsqueeze(0), "unsqueeze(-1)": lambda x: x.unsqueeze(-1),
    "unsqueeze(2)": lambda x: x.unsqueeze(2),
    "expand(4, 2, 5, 3, 2)": lambda x: x.expand(4, 2, 5, 3, 2),
    "expand(-1, 4, -1, 6)": lambda x: x.expand(-1, 4, -1, 6),
    "expand((3, 2, 1, 3, 1))": lambda x: x.expand((3, 2, 1, 3, 1)),
}


@pytest.mark.parametrize("call", list(SHAPE_CALLS))
def test_squeeze_unsqueeze_and_expand_match_torch(call, rng):
    """Shapes, values and gradients (expand's summed over the grown axes) as PyTorch's."""
    torch = pytest.importorskip("torch")
    fn = SHAPE_CALLS[call]
    x = _t(rng, (2, 1, 3, 1))
    theirs = torch.tensor(x.data, requires_grad=True)
    out, want = fn(x), fn(theirs)
    np.testing.assert_array_equal(out.data, want.detach().numpy())
    g = rng.standard_normal(out.shape)
    out.backward(g)
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad, theirs.grad.numpy(), rtol=1e-12)
    _check(fn, x)


def test_squeeze_unsqueeze_and_expand_refuse_what_torch_refuses(rng):
    x = _t(rng, (2, 1, 3))
    with pytest.raises(ValueError, match=r"^unsqueeze: dim: 4 is out of range .*\[-4, 3\]"):
        x.unsqueeze(4)
    with pytest.raises(ValueError, match="^squeeze: dim: 3 is out of range"):
        x.squeeze(3)
    with pytest.raises(ValueError, match="^expand: sizes: cannot expand axis 0 of size 2"):
        x.expand(3, 1, 3)
    with pytest.raises(ValueError, match="^expand: sizes: .* fewer dimensions"):
        x.expand(3, 3)
    with pytest.raises(ValueError, match="^expand: sizes: -1 cannot be a new leading axis"):
        x.expand(-1, 2, 1, 3)


def test_transpose_and_permute_refuse_what_torch_refuses(rng):
    x = _t(rng, (2, 3, 4))
    with pytest.raises(TypeError, match=r"^transpose: expected the two dims to swap.*"
                                        r"use permute\(1, 2, 0\)"):
        x.transpose(1, 2, 0)  # NumPy's transpose: an order of all the axes
    with pytest.raises(TypeError, match="^transpose: expected the two dims to swap"):
        x.transpose()
    with pytest.raises(ValueError, match="^transpose: dim: 3 is out of range"):
        x.transpose(0, 3)
    with pytest.raises(ValueError, match=r"^permute: dims: expected each of the 3 axes once"):
        x.permute(0, 1, 1)
    with pytest.raises(ValueError, match=r"^permute: dims: expected each of the 3 axes once"):
        x.permute(0, 1)


def test_T_gradcheck(rng):
    _check(lambda x: x.T, _t(rng, (3, 4)))
    _check(lambda x: x.T, _t(rng, (2, 3, 4)))


GETITEM = {
    "int": 1, "negative-int": -1, "slice": slice(1, 3), "step": (slice(None), slice(None, None, 2)),
    "reverse": slice(None, None, -1), "ellipsis": (Ellipsis, 1), "newaxis": (slice(None), None),
    "int-array": np.array([0, 2, 0]), "int-list": [3, 3, 3, 1],
    "int-array-2d": np.array([[0, 1], [1, 1]]),
    "pair-of-arrays": (np.array([1, 1, 0]), np.array([0, 3, 3])),
    "array-and-slice": (np.array([2, 2]), slice(1, None)),
}


@pytest.mark.parametrize("name", list(GETITEM))
def test_getitem_gradcheck(name, rng):
    index = GETITEM[name]
    x = _t(rng, (4, 5))
    np.testing.assert_array_equal(x[index].data, x.data[index])
    _check(lambda x: x[index], x)


def test_getitem_repeated_indices_add_up(rng):
    x = _t(rng, (4,))
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0, 0.0])
    m = _t(rng, (2, 3))
    m[np.array([1, 1, 0]), np.array([2, 2, 2])].backward(np.array([1.0, 2.0, 4.0]))
    np.testing.assert_array_equal(m.grad, [[0, 0, 4.0], [0, 0, 3.0]])
    v = _t(rng, (5,))
    v[Tensor([4.0, 4.0])].sum().backward()  # a Tensor of indices
    np.testing.assert_array_equal(v.grad, [0, 0, 0, 0, 2.0])


def test_getitem_boolean_mask(rng):
    x = _t(rng, (3, 4))
    mask = x.data > 0
    _check(lambda x: x[mask], x)
    x[mask].sum().backward()
    np.testing.assert_array_equal(x.grad, mask.astype(np.float64))


# -- functional ---------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape", [(3, 4), (4,), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_needs_grad", [True, False])
def test_linear_gradcheck(x_shape, bias, x_needs_grad, rng):
    x = _t(rng, x_shape, requires_grad=x_needs_grad)
    w = _t(rng, (5, 4))
    b = _t(rng, (5,)) if bias else None
    out = F.linear(x, w, b)
    want = x.data @ w.data.T + (b.data if bias else 0)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.data, want, **EXACT)
    if bias:
        _check(F.linear, x, w, b)
    else:
        _check(F.linear, x, w)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)], ids=str)
def test_mse_loss_gradcheck(shape, rng):
    p, t = _t(rng, shape), _t(rng, shape)
    loss = F.mse_loss(p, t)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), np.mean((p.data - t.data) ** 2), **EXACT)
    _check(F.mse_loss, p, t)
    _check(lambda p: F.mse_loss(p, t.data), p)  # an array target


@pytest.mark.parametrize("shape", [(4, 3), (3, 1), (4,), (12,), (2, 3, 4), ()], ids=str)
def test_mse_loss_shape_mismatch_raises(shape, rng):
    # no broadcasting of the target: a mismatch is almost always a bug in the caller
    with pytest.raises(ValueError, match="shape"):
        F.mse_loss(_t(rng, (3, 4)), _t(rng, shape))
    with pytest.raises(ValueError, match="shape"):
        F.mse_loss(_t(rng, (3, 4)), rng.standard_normal(shape))


@pytest.mark.parametrize("batch, classes", [(1, 2), (4, 5), (7, 3)])
def test_cross_entropy_gradcheck(batch, classes, rng):
    logits = _t(rng, (batch, classes), -3.0, 3.0)
    labels = rng.integers(0, classes, batch)
    loss = F.cross_entropy(logits, labels)
    z = logits.data
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(loss.item(), -log_softmax[np.arange(batch), labels].mean(),
                               **EXACT)
    _check(lambda z: F.cross_entropy(z, labels), logits)
    _check(lambda z: F.cross_entropy(z, list(labels)), logits)


def test_cross_entropy_gradient_values(rng):
    z = _t(rng, (3, 4))
    labels = np.array([3, 0, 0])
    F.cross_entropy(z, labels).backward()
    softmax = np.exp(z.data) / np.exp(z.data).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(z.grad, (softmax - np.eye(4)[labels]) / 3, **EXACT)


def test_cross_entropy_large_logits_are_stable():
    z = Tensor([[1000.0, -1000.0, 500.0], [2000.0, 1999.0, 0.0], [-3000.0, -3001.0, -3000.0]],
               requires_grad=True)
    labels = np.array([2, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.cross_entropy(z, labels)
        loss.backward()
    # by hand: row 0 log-probability of class 2 is 500 - 1000 (the rest underflows),
    # row 1 is -log(1 + e), row 2 is -log(2 + e^-1)
    want = (500.0 + np.log1p(np.e) + np.log(2 + np.exp(-1.0))) / 3
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12)
    assert np.all(np.isfinite(z.grad))
    np.testing.assert_allclose(z.grad.sum(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(z.grad[0], [1 / 3, 0, -1 / 3], atol=1e-15)


@pytest.mark.parametrize("labels", [[0, 3, 1], [0, -1, 1], [5, 0, 0]], ids=str)
def test_cross_entropy_label_out_of_range_raises(labels, rng):
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(_t(rng, (3, 3)), np.array(labels))


@pytest.mark.parametrize("labels", [[0.5, 1.0, 2.0], [0.0, 1.0, 1.25]], ids=str)
def test_cross_entropy_fractional_labels_raise_type_error(labels, rng):
    with pytest.raises(TypeError, match="target"):
        F.cross_entropy(_t(rng, (3, 3)), np.array(labels))


def test_cross_entropy_label_shape_mismatch_raises(rng):
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(_t(rng, (3, 3)), np.array([0, 1]))


@pytest.mark.parametrize("lam", [0.0, 0.1, 2.5])
def test_l2_penalty_value_and_gradcheck(lam, rng):
    w1, w2, b = _t(rng, (3, 4)), _t(rng, (2, 3, 2)), _t(rng, (5,))
    penalty = F.l2_penalty([w1, w2, b], lam)
    want = lam / 2 * sum(np.sum(p.data ** 2) for p in (w1, w2, b))
    assert penalty.shape == ()
    np.testing.assert_allclose(penalty.item(), want, rtol=1e-12, atol=1e-15)
    penalty.backward()
    for p in (w1, w2, b):
        np.testing.assert_allclose(p.grad, lam * p.data, **EXACT)
    _check(lambda a, b, c: F.l2_penalty([a, b, c], lam), w1, w2, b)
    _check(lambda a: F.l2_penalty((p for p in [a]), lam), w1)  # any iterable


# -- the same graph on both backends ------------------------------------------------------

PARITY_TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _mlp_gradients(backend: str, dtype) -> dict:
    """A small MLP with every kind of layer and loss, from fixed random numbers."""
    rng = np.random.default_rng(2024)
    draw = lambda *shape, scale=1.0: (rng.standard_normal(shape) * scale).astype(dtype)  # noqa
    x, target = draw(16, 10), draw(16, 3)
    labels = rng.integers(0, 3, 16)
    params = {"w1": draw(12, 10, scale=0.3), "b1": draw(12), "shift": draw(12),
              "w2": draw(8, 12, scale=0.3), "b2": draw(8), "scale": draw(1, 8),
              "w3": draw(8, 8, scale=0.3), "w4": draw(3, 8, scale=0.3), "b4": draw(3)}
    with cg.use_backend(backend):
        p = {k: Tensor(v, requires_grad=True) for k, v in params.items()}
        h = F.linear(x, p["w1"], p["b1"]).sigmoid() + p["shift"]  # (16, 12) + (12,)
        h = F.linear(h, p["w2"], p["b2"]).tanh() * p["scale"]     # (16, 8) * (1, 8)
        h = (h @ p["w3"].T).relu() + h                            # matmul, fork
        logits = F.linear(h, p["w4"], p["b4"])
        loss = (F.mse_loss(logits, target) + F.cross_entropy(logits, labels)
                + F.l2_penalty([p["w1"], p["w2"]], 1e-2) + logits.max(axis=1).mean())
        loss.backward()
    assert loss.dtype == dtype
    grads = {k: t.grad for k, t in p.items()}
    grads["loss"] = loss.data
    return grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backends_give_the_same_gradients(dtype, backend):
    # `backend` (cython, then reference) is also the active one when the graph is built
    # outside use_backend: compare each run with the other backend's.
    other = "reference" if backend == "cython" else "cython"
    got, want = _mlp_gradients(backend, dtype), _mlp_gradients(other, dtype)
    for name in want:
        assert got[name].dtype == dtype, name
        np.testing.assert_allclose(got[name], want[name], err_msg=name, **PARITY_TOL[dtype])
