"""Losses (cygrad.functional and their nn modules): values and gradients against PyTorch on
both backends in float32 and float64, against finite differences, PyTorch's conventions at
the edges (probability 0 and 1, |x - y| at 0), and the errors for bad input."""
from __future__ import annotations

import numpy as np
import pytest

import cygrad as cg
from cygrad import Tensor, nn
from cygrad import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
BATCH, CLASSES = 6, 4


def _inputs(kind: str, rng: np.random.Generator, dtype) -> tuple:
    """(input, target) arrays for a loss of each kind."""
    shape = (BATCH, 3)
    if kind == "regression":
        return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    if kind == "probability":
        return (rng.uniform(0.05, 0.95, shape).astype(dtype),
                rng.uniform(0, 1, shape).astype(dtype))
    if kind == "logit":
        return (3 * rng.standard_normal(shape).astype(dtype),
                rng.uniform(0, 1, shape).astype(dtype))
    labels = rng.integers(0, CLASSES, BATCH)
    logits = rng.standard_normal((BATCH, CLASSES)).astype(dtype)
    if kind == "log_probability":
        logits = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return logits, labels


def _weights(rng, dtype, shape):
    return rng.uniform(0.5, 2, shape).astype(dtype)


# (name, ours, theirs, kind of inputs, options: (rng, dtype) -> kwargs, target differentiable)
CASES = [
    ("mse", F.mse_loss, TF.mse_loss, "regression", lambda r, d: {}, True),
    ("l1", F.l1_loss, TF.l1_loss, "regression", lambda r, d: {}, True),
    ("bce", F.binary_cross_entropy, TF.binary_cross_entropy, "probability",
     lambda r, d: {}, True),
    ("bce_weight", F.binary_cross_entropy, TF.binary_cross_entropy, "probability",
     lambda r, d: {"weight": _weights(r, d, (BATCH, 3))}, True),
    ("bce_logits", F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits,
     "logit", lambda r, d: {}, True),
    ("bce_logits_weights", F.binary_cross_entropy_with_logits,
     TF.binary_cross_entropy_with_logits, "logit",
     lambda r, d: {"weight": _weights(r, d, (BATCH, 1)), "pos_weight": _weights(r, d, (3,))},
     True),
    ("cross_entropy", F.cross_entropy, TF.cross_entropy, "class", lambda r, d: {}, False),
    ("cross_entropy_weight", F.cross_entropy, TF.cross_entropy, "class",
     lambda r, d: {"weight": _weights(r, d, (CLASSES,))}, False),
    ("cross_entropy_smoothing", F.cross_entropy, TF.cross_entropy, "class",
     lambda r, d: {"label_smoothing": 0.2}, False),
    ("cross_entropy_all", F.cross_entropy, TF.cross_entropy, "class",
     lambda r, d: {"weight": _weights(r, d, (CLASSES,)), "label_smoothing": 0.1,
                   "ignore_index": 2}, False),
    ("nll", F.nll_loss, TF.nll_loss, "log_probability", lambda r, d: {}, False),
    ("nll_weight_ignore", F.nll_loss, TF.nll_loss, "log_probability",
     lambda r, d: {"weight": _weights(r, d, (CLASSES,)), "ignore_index": 1}, False),
]
IDS = [case[0] for case in CASES]


def _torch_kwargs(kwargs: dict) -> dict:
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_and_gradients_match_pytorch(case, dtype, reduction, backend, rng):
    _, ours, theirs, kind, options, target_grad = case
    x, y = _inputs(kind, rng, dtype)
    kwargs = options(rng, dtype)
    x_t = Tensor(x.copy(), requires_grad=True)
    y_t = Tensor(y.copy(), requires_grad=True) if target_grad else y
    loss = ours(x_t, y_t, reduction=reduction, **kwargs)

    x_ref = torch.tensor(x, requires_grad=True)
    y_ref = torch.tensor(y, requires_grad=target_grad)
    want = theirs(x_ref, y_ref, reduction=reduction, **_torch_kwargs(kwargs))
    assert loss.dtype == dtype and loss.shape == tuple(want.shape)
    np.testing.assert_allclose(loss.data, want.detach().numpy(), **TOL[dtype])

    upstream = rng.uniform(0.5, 1.5, loss.shape).astype(dtype)
    loss.backward(upstream)
    want.backward(torch.tensor(upstream))
    assert x_t.grad.dtype == dtype
    np.testing.assert_allclose(x_t.grad, x_ref.grad.numpy(), **TOL[dtype])
    if target_grad:
        np.testing.assert_allclose(y_t.grad, y_ref.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_gradients_match_finite_differences(case, reduction, backend, rng):
    _, ours, _, kind, options, target_grad = case
    x, y = _inputs(kind, rng, np.float64)
    kwargs = options(rng, np.float64)
    if target_grad:
        inputs = [Tensor(x, requires_grad=True), Tensor(y, requires_grad=True)]
        assert cg.gradcheck(lambda a, b: ours(a, b, reduction=reduction, **kwargs), inputs)
    else:
        assert cg.gradcheck(lambda a: ours(a, y, reduction=reduction, **kwargs),
                            [Tensor(x, requires_grad=True)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_a_single_sample_matches_pytorch(dtype, backend, rng):
    logits = rng.standard_normal(CLASSES).astype(dtype)
    for reduction in REDUCTIONS:
        x = Tensor(logits.copy(), requires_grad=True)
        loss = F.cross_entropy(x, 2, reduction=reduction, label_smoothing=0.1)
        ref = torch.tensor(logits, requires_grad=True)
        want = TF.cross_entropy(ref, torch.tensor(2), reduction=reduction,
                                label_smoothing=0.1)
        assert loss.shape == tuple(want.shape) == ()
        loss.backward()
        want.backward()
        np.testing.assert_allclose(loss.data, want.detach().numpy(), **TOL[dtype])
        np.testing.assert_allclose(x.grad, ref.grad.numpy(), **TOL[dtype])


# -- PyTorch's conventions at the edges ---------------------------------------------------

def _edge(ours, theirs, x, y, dtype, target_grad=False, **kwargs):
    """Loss and gradients of ours and PyTorch's on edge values: equal, infinities included."""
    x_t = Tensor(np.array(x, dtype), requires_grad=True)
    y_t = Tensor(np.array(y, dtype), requires_grad=True) if target_grad else y
    x_ref = torch.tensor(np.array(x, dtype), requires_grad=True)
    y_ref = (torch.tensor(np.array(y, dtype), requires_grad=True) if target_grad
             else torch.tensor(y))
    loss, want = ours(x_t, y_t, **kwargs), theirs(x_ref, y_ref, **kwargs)
    np.testing.assert_allclose(loss.data, want.detach().numpy(), **TOL[dtype])
    loss.backward()
    want.backward()
    np.testing.assert_allclose(x_t.grad, x_ref.grad.numpy(), **TOL[dtype])
    if target_grad:
        np.testing.assert_allclose(y_t.grad, y_ref.grad.numpy(), **TOL[dtype])
    return loss, x_t.grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_at_probability_one_is_zero_with_zero_gradient(dtype, backend):
    loss, grad = _edge(F.cross_entropy, TF.cross_entropy, [[1000, 0], [0, 1000]], [0, 1],
                       dtype)
    assert loss.item() == 0 and np.signbit(loss.data) == 0  # 0.0, not -0.0
    np.testing.assert_array_equal(grad, 0)
    _edge(F.cross_entropy, TF.cross_entropy, [[1000, 0], [0, 1000]], [0, 1], dtype,
          label_smoothing=0.1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_the_improbable_class_is_finite(dtype, backend):
    loss, _ = _edge(F.cross_entropy, TF.cross_entropy, [[0, -1e4]], [1], dtype)
    assert loss.item() == pytest.approx(1e4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_l1_gradient_is_zero_where_input_equals_target(dtype, backend):
    _, grad = _edge(F.l1_loss, TF.l1_loss, [1.0, 2.0, -3.0], [1.0, 0.0, -3.0], dtype,
                    target_grad=True)
    np.testing.assert_array_equal(grad, np.array([0, 1, 0], dtype) / 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_at_zero_and_one(dtype, backend):
    x, y = [0.0, 1.0, 0.0, 1.0, 0.5], [0.0, 0.0, 1.0, 1.0, 1.0]
    for reduction in REDUCTIONS:
        loss, grad = _edge(F.binary_cross_entropy, TF.binary_cross_entropy, x, y, dtype,
                           target_grad=True, reduction="sum" if reduction == "none" else
                           reduction)
        assert np.isfinite(loss.data).all() and np.isfinite(grad).all()
    per_element = F.binary_cross_entropy(Tensor(np.array(x, dtype)), np.array(y, dtype),
                                         reduction="none")
    np.testing.assert_allclose(per_element.data, [0, 100, 100, 0, np.log(2)], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_with_logits_is_stable_for_large_logits(dtype, backend):
    x, y = [-200.0, -30.0, 0.0, 30.0, 200.0], [1.0, 0.0, 0.5, 1.0, 0.0]
    loss, grad = _edge(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits,
                       x, y, dtype, target_grad=True, reduction="sum")
    assert np.isfinite(loss.data) and np.isfinite(grad).all()
    _edge(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, x, y,
          dtype, target_grad=True, pos_weight=torch.tensor(np.array(3.0, dtype)))


@pytest.mark.parametrize("pos_weight", [0.5, 3.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_with_logits_target_gradient_at_infinite_logits(
        dtype, pos_weight, backend):
    """d/dtarget = pos_weight softplus(-x) - softplus(x): inf at x = -inf, -inf at +inf,
    where -x + (pos_weight - 1) softplus(-x) gives inf - inf for pos_weight < 1."""
    x = Tensor(np.array([-np.inf, np.inf, 2.0], dtype))
    ours = Tensor(np.array([0.0, 0.0, 0.5], dtype), requires_grad=True)
    theirs = torch.tensor(np.array([0.0, 0.0, 0.5], dtype), requires_grad=True)
    with np.errstate(invalid="ignore"):  # the loss itself is nan there, as PyTorch's
        F.binary_cross_entropy_with_logits(
            x, ours, pos_weight=Tensor(np.array(pos_weight, dtype)), reduction="sum"
        ).backward()
    TF.binary_cross_entropy_with_logits(
        torch.tensor(x.data), theirs, pos_weight=torch.tensor(np.array(pos_weight, dtype)),
        reduction="sum").backward()
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), **TOL[dtype])


# -- modules ------------------------------------------------------------------------------

def test_loss_modules_call_their_functions(rng):
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    p, q = rng.uniform(0.1, 0.9, (5, 3)), rng.uniform(0, 1, (5, 3))
    logits, labels = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    weight = rng.uniform(0.5, 2, 3)
    pairs = [
        (nn.MSELoss(reduction="sum"), F.mse_loss(Tensor(x), y, reduction="sum"), x, y),
        (nn.L1Loss(), F.l1_loss(Tensor(x), y), x, y),
        (nn.BCELoss(weight=weight), F.binary_cross_entropy(Tensor(p), q, weight), p, q),
        (nn.BCEWithLogitsLoss(pos_weight=weight, reduction="none"),
         F.binary_cross_entropy_with_logits(Tensor(x), q, reduction="none",
                                            pos_weight=weight), x, q),
        (nn.CrossEntropyLoss(weight, ignore_index=1, label_smoothing=0.3),
         F.cross_entropy(Tensor(logits), labels, weight, ignore_index=1,
                         label_smoothing=0.3), logits, labels),
        (nn.NLLLoss(weight, reduction="sum"),
         F.nll_loss(Tensor(logits), labels, weight, reduction="sum"), logits, labels),
    ]
    for module, want, a, b in pairs:
        np.testing.assert_array_equal(module(Tensor(a), b).data, want.data)
    assert repr(nn.MSELoss()) == "MSELoss()"
    assert repr(nn.L1Loss(reduction="sum")) == "L1Loss(reduction='sum')"
    assert nn.CrossEntropyLoss().parameters() == []


def test_cross_entropy_loss_module_matches_pytorch_module(rng):
    logits, labels = rng.standard_normal((8, 5)), rng.integers(0, 5, 8)
    ours = nn.CrossEntropyLoss(label_smoothing=0.05)(Tensor(logits), labels)
    theirs = torch.nn.CrossEntropyLoss(label_smoothing=0.05)(torch.tensor(logits),
                                                             torch.tensor(labels))
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-12)


# -- mixed dtypes, special cases ----------------------------------------------------------

def test_loss_of_float32_input_and_float64_target_is_float64_as_in_pytorch(rng):
    x = Tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    y = rng.standard_normal(4)
    loss = F.mse_loss(x, y)
    want = TF.mse_loss(torch.tensor(x.data), torch.tensor(y))
    assert loss.dtype == np.float64 and want.dtype == torch.float64
    loss.backward()
    assert x.grad.dtype == np.float32  # a gradient has its tensor's dtype


def test_integer_targets_take_the_input_dtype(rng):
    x = Tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    loss = F.mse_loss(x, np.array([0, 1, 2, 3]))
    assert loss.dtype == np.float32


def test_mean_of_nothing_is_nan_and_ignored_samples_get_no_gradient():
    assert np.isnan(F.mse_loss(Tensor(np.zeros(0)), np.zeros(0)).item())
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    loss = F.cross_entropy(x, [-100, -100])
    assert np.isnan(loss.item()) and np.isnan(TF.cross_entropy(
        torch.ones(2, 3), torch.tensor([-100, -100])).item())
    loss.backward()
    np.testing.assert_array_equal(x.grad, 0)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("bad", [-np.inf, np.nan])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_an_ignored_sample_with_an_infinite_or_nan_logit_counts_zero(
        bad, smoothing, reduction, backend):
    """A padding row masked to -inf (or holding nan) is ignored: its loss is 0, not
    0 * inf = nan, and the others' loss and gradients are PyTorch's."""
    logits = np.array([[bad, 0.0, 1.0], [1.0, 2.0, 0.5], [0.3, bad, -1.0]])
    labels = [-100, 1, -100]
    ours = Tensor(logits, requires_grad=True)
    theirs = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(ours, labels, reduction=reduction, label_smoothing=smoothing)
    want = TF.cross_entropy(theirs, torch.tensor(labels), reduction=reduction,
                            label_smoothing=smoothing)
    np.testing.assert_allclose(loss.data, want.detach().numpy(), **TOL[np.float64])
    loss.sum().backward()
    want.sum().backward()
    np.testing.assert_allclose(ours.grad[1], theirs.grad[1].numpy(), **TOL[np.float64])
    log_p = np.log(np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]))
    log_p[0] = bad
    nll = F.nll_loss(Tensor(log_p), [-100, 2], reduction=reduction)
    want = TF.nll_loss(torch.tensor(log_p), torch.tensor([-100, 2]), reduction=reduction)
    np.testing.assert_allclose(nll.data, want.numpy(), **TOL[np.float64])


def test_cross_entropy_keeps_accepting_integral_float_labels(rng):
    logits = Tensor(rng.standard_normal((3, 4)))
    np.testing.assert_array_equal(F.cross_entropy(logits, np.array([0.0, 3.0, 1.0])).data,
                                  F.cross_entropy(logits, np.array([0, 3, 1])).data)


# -- bad input ----------------------------------------------------------------------------

def test_bad_reduction_names_the_argument():
    with pytest.raises(ValueError, match="^reduction: expected 'mean', 'sum' or 'none', "
                                         "got 'avg'"):
        F.mse_loss(Tensor(np.zeros(2)), np.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match="^reduction"):
        nn.CrossEntropyLoss(reduction="average")


def test_shape_mismatch_is_refused_not_broadcast():
    with pytest.raises(ValueError, match=r"mse_loss: target: expected shape \(4, 1\) "
                                         r"\(the input's\), got \(4,\)"):
        F.mse_loss(Tensor(np.zeros((4, 1))), np.zeros(4))


def test_weights_must_broadcast_to_the_input():
    x = Tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"pos_weight: expected a shape that broadcasts to "
                                         r"the input's \(4, 3\), got \(2, 4, 3\)"):
        F.binary_cross_entropy_with_logits(x, np.zeros((4, 3)), pos_weight=np.ones((2, 4, 3)))
    with pytest.raises(ValueError, match=r"weight: expected a shape that broadcasts"):
        F.binary_cross_entropy(x, np.zeros((4, 3)), weight=np.ones(4))


def test_binary_cross_entropy_refuses_values_outside_zero_one():
    with pytest.raises(ValueError, match=r"input: expected probabilities in \[0, 1\].*"
                                         "binary_cross_entropy_with_logits"):
        F.binary_cross_entropy(Tensor(np.array([0.5, 1.5])), np.array([0.0, 1.0]))


def test_class_losses_check_labels_and_weights():
    logits = Tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 4\)"):
        F.cross_entropy(logits, [0, 4, 1])
    with pytest.raises(ValueError, match=r"target: expected class indices of shape \(3,\)"):
        F.nll_loss(logits, [0, 1])
    with pytest.raises(TypeError, match="target: expected integer class indices"):
        F.cross_entropy(logits, [0.5, 1, 2])
    with pytest.raises(ValueError, match=r"weight: expected one weight per class"):
        F.cross_entropy(logits, [0, 1, 2], weight=np.ones(3))
    for bad in (1.5, "0.1"):
        with pytest.raises(ValueError, match="^label_smoothing: expected a value in"):
            F.cross_entropy(logits, [0, 1, 2], label_smoothing=bad)
    with pytest.raises(ValueError, match=r"input: expected shape \(batch, classes\)"):
        F.cross_entropy(Tensor(np.zeros((2, 3, 4))), [0, 1])
