"""cygrad.gradcheck itself: it passes a right backward, catches a wrong one and says where,
and refuses input it cannot check."""
from __future__ import annotations

import re

import numpy as np
import pytest

import cygrad as cg
from cygrad import Tensor


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def _square(x: Tensor, wrong_at=None, factor: float = 1.0) -> Tensor:
    """x^2 with a hand-written backward; `wrong_at`: an element index whose gradient is
    `factor` times the right one (None: every element)."""
    def backward(g: np.ndarray) -> None:
        grad = 2 * x.data * g
        if wrong_at is None:
            grad = factor * grad
        else:
            grad[wrong_at] *= factor
        x.add_grad(grad, owned=True)

    return Tensor.from_op(x.data ** 2, (x,), backward, "square")


def _scaled_product(a: Tensor, b: Tensor, wrong_at) -> Tensor:
    """a * b whose backward adds the right gradient into a, and twice the right gradient
    into b at `wrong_at`."""
    def backward(g: np.ndarray) -> None:
        a.add_grad(g * b.data, owned=True)
        grad_b = g * a.data
        grad_b[wrong_at] *= 2
        b.add_grad(grad_b, owned=True)

    return Tensor.from_op(a.data * b.data, (a, b), backward, "scaled_product")


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_returns_true_on_a_correct_op(backend, rng):
    with cg.use_backend(backend):
        x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
        assert cg.gradcheck(_square, [x]) is True
        assert cg.gradcheck(lambda a, b: (a * b).sigmoid().sum(), (x, x)) is True
        scalar = Tensor(1.5, requires_grad=True)
        assert cg.gradcheck(lambda s: s.exp(), [scalar]) is True


def test_raises_on_twice_the_right_gradient(rng):
    x = Tensor(rng.uniform(0.5, 1.5, (3, 4)), requires_grad=True)
    with pytest.raises(cg.GradcheckError, match=r"inputs\[0\]"):
        cg.gradcheck(lambda x: _square(x, factor=2.0), [x])


@pytest.mark.parametrize("wrong_at", [(0, 0), (1, 2), (2, 3)], ids=str)
def test_error_names_the_input_and_the_element(wrong_at, rng):
    a = Tensor(rng.uniform(0.5, 1.5, (3, 4)), requires_grad=True)
    b = Tensor(rng.uniform(0.5, 1.5, (3, 4)), requires_grad=True)
    with pytest.raises(cg.GradcheckError) as info:
        cg.gradcheck(lambda a, b: _scaled_product(a, b, wrong_at), [a, b])
    message = str(info.value)
    assert "inputs[1]" in message and "inputs[0]" not in message
    assert re.search(re.escape(str(wrong_at)), message), message
    assert isinstance(info.value, AssertionError)  # a failed check, as pytest shows it


def test_error_names_a_later_input_when_an_earlier_one_is_skipped(rng):
    c = Tensor(rng.uniform(0.5, 1.5, (2, 2)))  # requires no grad: not checked
    x = Tensor(rng.uniform(0.5, 1.5, (5,)), requires_grad=True)
    with pytest.raises(cg.GradcheckError, match=r"inputs\[1\].*\(3,\)"):
        cg.gradcheck(lambda c, x: _square(x, wrong_at=3, factor=2.0) + c.sum(), [c, x])


def test_small_error_within_tolerance_passes_and_beyond_it_fails(rng):
    x = Tensor(rng.uniform(0.5, 1.5, (4,)), requires_grad=True)
    assert cg.gradcheck(lambda x: _square(x, factor=1 + 1e-5), [x]) is True
    with pytest.raises(cg.GradcheckError):
        cg.gradcheck(lambda x: _square(x, factor=1 + 1e-2), [x])


def test_leaves_the_inputs_untouched(rng):
    data = rng.standard_normal((3, 3))
    x = Tensor(data.copy(), requires_grad=True)
    cg.gradcheck(lambda x: x.tanh(), [x])
    np.testing.assert_array_equal(x.data, data)
    assert x.grad is None


@pytest.mark.parametrize("inputs", [[np.ones(3)], [1.0], (Tensor(np.ones(2)), np.ones(2)),
                                    Tensor(np.ones(3), requires_grad=True), "x"],
                         ids=["ndarray", "float", "mixed", "bare-tensor", "str"])
def test_inputs_that_are_not_tensors_raise_type_error(inputs):
    with pytest.raises(TypeError, match="inputs"):
        cg.gradcheck(lambda *xs: xs[0], inputs)


def test_no_input_requiring_grad_raises_value_error(rng):
    x = Tensor(rng.standard_normal(3))
    with pytest.raises(ValueError, match="requires_grad"):
        cg.gradcheck(lambda x: x * 2.0, [x])
    with pytest.raises(ValueError):
        cg.gradcheck(lambda x, y: x * y, [x, Tensor(np.ones(3))])
