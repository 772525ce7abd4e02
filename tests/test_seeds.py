"""The worked examples of the lecture notes cygrad grew from, through the Tensor API.

The notes (shared/seeds/) and the names these tests use for them:

- notes 000: "Topic 13: Backpropagation" (univariate chain rule with a regularizer, the
  backprop walkthrough, the multilayer net and its vectorized form);
- notes 001: "Backpropagation" (basic gates, "Some other derivatives", "Perceptron with 2
  inputs");
- notes 002: "Backpropagation in MLP (Tensor-level Computation)" (1-hidden-layer MLP with
  L2 regularisation, J = L + s);
- notes 003: "Deep Learning 03 - Gradient-Based Training, Part 1: Backpropagation" (gradient
  recap, sigmoid and log2 compositions, multiple inputs / outputs / uses, Jacobians);
- notes 004: "optimization-2" (gates, the (x + y) z circuit, the sigmoid neuron, staged
  computation, patterns in backward flow, the matrix-multiply gradient).

Numbers the notes print are literals here, each with the note and section it comes from;
a rounded printed number is compared to within half a unit of its last printed digit.
Every test runs on both backends ("cython" and "reference").
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import cygrad as cg
from cygrad import functional as F

EXACT = dict(rtol=1e-12, atol=1e-12)  # float64 results against float64 formulas
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: EXACT}


pytestmark = pytest.mark.usefixtures("backend")


# -- helpers ------------------------------------------------------------------------------

def leaf(value, dtype=np.float64) -> cg.Tensor:
    return cg.Tensor(np.array(value, dtype=dtype), requires_grad=True)


def kept(t: cg.Tensor) -> cg.Tensor:
    """An intermediate whose gradient the test reads after backward()."""
    return t.retain_grad()


def sigma(v: float) -> float:
    """The notes' sigmoid, 1 / (1 + e^-v)."""
    return 1.0 / (1 + math.exp(-v))


def dsigma(v: float) -> float:
    """sigma'(v) = sigma(v) (1 - sigma(v)) (notes 004, "Modularity: Sigmoid example")."""
    return sigma(v) * (1 - sigma(v))


def assert_printed(value, printed: str) -> None:
    """`value` rounds to the number a note prints: within half a unit of its last digit."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    half_unit = 0.5 * 10.0 ** -decimals
    assert abs(float(value) - float(printed)) <= half_unit, \
        f"{float(value)!r} does not round to the notes' {printed}"


def assert_close(got, want, dtype=np.float64) -> None:
    assert got is not None, "no gradient was computed"
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
    np.testing.assert_allclose(got, want, **TOL[dtype])


def central_difference(f, point, i, eps=1e-6) -> float:
    """d f / d point[i] by central differences, in float64."""
    plus, minus = list(point), list(point)
    plus[i] += eps
    minus[i] -= eps
    return (f(*plus) - f(*minus)) / (2 * eps)


# == notes 004, "Simple expressions and interpreting the gradient" =========================

def test_multiply_gate_at_x4_y_minus3():
    # notes 004, "Simple expressions, interpreting the gradient": x = 4, y = -3 gives
    # f(x, y) = xy = -12, df/dx = -3 (= y), df/dy = 4 (= x)
    x, y = leaf(4.0), leaf(-3.0)
    f = x * y
    f.backward()
    assert f.item() == -12
    assert x.grad == -3
    assert y.grad == 4
    # f(x + h) = f(x) + h df/dx: the derivative is the sensitivity to a small change
    h = 1e-3
    assert abs((4.0 + h) * -3.0 - (f.item() + h * float(x.grad))) < 1e-12


@pytest.mark.parametrize("x_value, y_value", [(4.0, -3.0), (-2.0, 5.0), (1e3, -1e-3)])
def test_add_gate_gradient_is_one_for_any_inputs(x_value, y_value):
    # notes 004, "Simple expressions": for f = x + y the derivative on both x and y is one
    # regardless of what the values of x, y are
    x, y = leaf(x_value), leaf(y_value)
    (x + y).backward()
    assert x.grad == 1 and y.grad == 1


def test_max_gate_at_x4_y2():
    # notes 004, "Simple expressions": inputs x = 4, y = 2: the max is 4, the (sub)gradient
    # is 1 on the larger input and 0 on the other
    x, y = leaf(4.0), leaf(2.0)
    m = cg.maximum(x, y)
    m.backward()
    assert m.item() == 4
    assert x.grad == 1 and y.grad == 0
    # the same gate as a reduction over [x, y]
    xy = leaf([4.0, 2.0])
    top = xy.max()
    top.backward()
    assert top.item() == 4
    np.testing.assert_array_equal(xy.grad, [1.0, 0.0])


# == notes 004, "Compound expressions with chain rule"; notes 001, "Simple example" ========

def test_circuit_x_plus_y_times_z_at_notes_values():
    # notes 004, "Compound expressions, chain rule, backpropagation" (also drawn in notes
    # 001, "Simple example", f(x,y,z) = (x+y).z): x = -2, y = 5, z = -4
    x, y, z = leaf(-2.0), leaf(5.0), leaf(-4.0)
    q = kept(x + y)
    f = q * z
    f.backward()
    assert q.item() == 3            # "q becomes 3"
    assert f.item() == -12          # "f becomes -12"
    assert z.grad == 3              # "gradient on z becomes 3"
    assert q.grad == -4             # "gradient on q becomes -4"
    assert x.grad == -4             # dfdx = 1.0 * dfdq
    assert y.grad == -4             # dfdy = 1.0 * dfdq
    # the notes' code, transcribed
    xv, yv, zv = -2, 5, -4
    qv = xv + yv
    dfdz, dfdq = qv, zv
    dfdx, dfdy = 1.0 * dfdq, 1.0 * dfdq
    assert [x.grad, y.grad, z.grad] == [dfdx, dfdy, dfdz]


# == notes 004, "Modularity: Sigmoid example" =============================================

def test_sigmoid_gate_at_input_1():
    # notes 004, "Modularity: Sigmoid example": "the sigmoid expression receives the input
    # 1.0 and computes the output 0.73 during the forward pass"; the local gradient is
    # "(1 - 0.73) * 0.73 ~= 0.2"
    u = leaf(1.0)
    y = u.sigmoid()
    y.backward()
    assert_printed(y.item(), "0.73")
    assert_printed(u.grad, "0.2")
    assert_close(u.grad, (1 - y.item()) * y.item())
    # the same local gradient from the kernel API, given the forward's output
    y_kernel = cg.kernels.sigmoid_forward(np.array([1.0]))
    assert_printed(y_kernel[0], "0.73")
    local = cg.kernels.sigmoid_backward(np.array([1.0]), y_kernel)
    assert_printed(local[0], "0.2")
    assert_close(local, [dsigma(1.0)])


@pytest.mark.parametrize("u_value", [1.0, -2.5, 0.0, 4.0])
def test_sigmoid_gate_equals_its_circuit_of_small_gates(u_value):
    # notes 004, "Modularity: Sigmoid example": the chain *-1, exp, +1, 1/x computes the
    # sigmoid; grouped into one gate it has the same gradient, sigma(u) (1 - sigma(u))
    u1, u2 = leaf(u_value), leaf(u_value)
    circuit = 1.0 / (1 + (-1.0 * u1).exp())
    grouped = u2.sigmoid()
    circuit.backward()
    grouped.backward()
    assert_close(circuit.data, grouped.data)
    assert_close(u1.grad, u2.grad)
    assert_close(u2.grad, dsigma(u_value))


def neuron_notes_code(w, x):
    """notes 004, "Modularity: Sigmoid example": the notes' neuron code, transcribed."""
    # forward pass
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    f = 1.0 / (1 + math.exp(-dot))  # sigmoid function
    # backward pass through the neuron (backpropagation)
    ddot = (1 - f) * f  # gradient on dot variable, using the sigmoid gradient derivation
    dx = [w[0] * ddot, w[1] * ddot]  # backprop into x
    dw = [x[0] * ddot, x[1] * ddot, 1.0 * ddot]  # backprop into w
    return dot, f, ddot, dx, dw


@pytest.mark.parametrize("form", ["scalar gates", "vector", "linear"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_neuron_at_notes_weights(form, dtype):
    # notes 004, "Modularity: Sigmoid example": w = [2,-3,-3], x = [-1, -2]
    w_list, x_list = [2, -3, -3], [-1, -2]
    dot_want, f_want, ddot_want, dx_want, dw_want = neuron_notes_code(w_list, x_list)
    w, x = leaf(w_list, dtype), leaf(x_list, dtype)
    if form == "scalar gates":
        dot = w[0] * x[0] + w[1] * x[1] + w[2]
    elif form == "vector":
        dot = (w[:2] * x).sum() + w[2]
    else:  # one linear unit: weight (out_features=1, in_features=2), bias w[2]
        dot = F.linear(x.reshape(1, 2), w[:2].reshape(1, 2), w[2:]).reshape(())
    dot = kept(dot)
    f = F.sigmoid(dot)
    f.backward()
    assert dot.item() == dot_want == 1    # notes 001 caches this input: "exp(-1(cached input))"
    assert_close(f.data, f_want, dtype)
    assert_close(dot.grad, ddot_want, dtype)
    assert_close(x.grad, dx_want, dtype)
    assert_close(w.grad, dw_want, dtype)
    assert x.grad.dtype == dtype and w.grad.dtype == dtype
    # the numbers notes 004 prints for this neuron: output 0.73, local gradient ~= 0.2
    assert_printed(f.item(), "0.73")
    assert_printed(dot.grad, "0.2")


# == notes 001, "Perceptron with 2 inputs" ===============================================

def test_perceptron_with_2_inputs_gate_by_gate():
    # notes 001, "Perceptron with 2 inputs": f(w,x) = 1 / (1 + e^-(w0 x0 + w1 x1 + w2)), each
    # gate a node. Its printed steps imply w0 = 2, x0 = -1 (dw0 = 0.2 * -1, dx0 = 0.2 * 2)
    # and a dot product of 1 (exp(-1)); it is notes 004's neuron, w = [2,-3,-3], x = [-1,-2].
    w0, w1, w2 = leaf(2.0), leaf(-3.0), leaf(-3.0)
    x0, x1 = leaf(-1.0), leaf(-2.0)
    p0, p1 = kept(w0 * x0), kept(w1 * x1)
    s01 = kept(p0 + p1)
    dot = kept(s01 + w2)
    neg = kept(-1.0 * dot)             # the negative gain node
    e = kept(neg.exp())
    den = kept(e + 1)                  # the increment node
    f = 1.0 / den                      # the 1/x node
    f.backward()                       # 1. "considering that or error(dout) is 1"
    assert neg.item() == -1            # 4. "exp(-1(cached input))"
    assert_printed(den.item(), "1.37")
    # 2. "The gradient of the input of the 1/x will be -1/(1.37^2), -0.53"
    assert_printed(den.grad, "-0.53")
    assert_close(den.grad, -1 / den.item() ** 2)
    # 3. "The increment node does not change the gradient on it's input ... -0.53"
    assert_printed(e.grad, "-0.53")
    assert_close(e.grad, den.grad)
    # 4. "The exp node input gradient will be (exp(-1(cached input)) * -0.53), -0.2"
    assert_printed(neg.grad, "-0.2")
    assert_close(neg.grad, math.exp(-1) * den.grad)
    # 5. "The negative gain node will be it's input gradient (-1 * -0.2), 0.2"
    assert_printed(dot.grad, "0.2")
    assert_close(dot.grad, -1 * neg.grad)
    # 6. "The sum node will distribute the gradients, so, dw2=0.2, and the sum node also 0.2"
    assert_printed(w2.grad, "0.2")
    assert_printed(s01.grad, "0.2")
    # 7. "The sum node again distribute the gradients so again 0.2"
    assert_printed(p0.grad, "0.2")
    assert_printed(p1.grad, "0.2")
    assert_close([w2.grad, s01.grad, p0.grad, p1.grad], [dot.grad] * 4)
    # 8. "dw0 will be (0.2 * -1), -0.2"; 9. "dx0 will be (0.2 * 2). 0.4"
    assert_printed(w0.grad, "-0.2")
    assert_printed(x0.grad, "0.4")
    # all five gradients agree with notes 004's neuron code at the same values
    _, _, _, dx_want, dw_want = neuron_notes_code([2, -3, -3], [-1, -2])
    assert_close([x0.grad, x1.grad], dx_want)
    assert_close([w0.grad, w1.grad, w2.grad], dw_want)


# == notes 001, "Some other derivatives" ==================================================

@pytest.mark.parametrize("x_value", [-2.5, -0.5, 0.75, 3.0])
def test_other_derivatives(x_value):
    # notes 001, "Some other derivatives" (also the unary gates of notes 004, "Modularity"):
    # f(x) = 1/x -> -1/x^2; f_c(x) = c + x -> 1; f(x) = e^x -> e^x; f_a(x) = ax -> a
    c, a = 7.0, -3.0
    x = leaf(x_value)
    (1 / x).backward()
    assert_close(x.grad, -1 / x_value ** 2)
    x = leaf(x_value)
    (c + x).backward()
    assert x.grad == 1
    x = leaf(x_value)
    y = x.exp()
    y.backward()
    assert_close(y.data, math.exp(x_value))
    assert_close(x.grad, math.exp(x_value))
    x = leaf(x_value)
    (a * x).backward()
    assert x.grad == a


# == notes 004, "Backprop in practice: Staged computation" ================================

def staged_notes_code(x, y):
    """notes 004, "Backprop in practice: Staged computation": the notes' forward and
    backward code for f(x,y) = (x + sigma(y)) / (sigma(x) + (x + y)^2), transcribed."""
    # forward pass
    sigy = 1.0 / (1 + math.exp(-y))  # sigmoid in numerator #(1)
    num = x + sigy  # numerator #(2)
    sigx = 1.0 / (1 + math.exp(-x))  # sigmoid in denominator #(3)
    xpy = x + y  # (4)
    xpysqr = xpy ** 2  # (5)
    den = sigx + xpysqr  # denominator #(6)
    invden = 1.0 / den  # (7)
    f = num * invden  # done! #(8)
    forward = dict(sigy=sigy, num=num, sigx=sigx, xpy=xpy, xpysqr=xpysqr, den=den,
                   invden=invden, f=f)
    # backprop f = num * invden
    dnum = invden  # gradient on numerator #(8)
    dinvden = num  # (8)
    # backprop invden = 1.0 / den
    dden = (-1.0 / (den ** 2)) * dinvden  # (7)
    # backprop den = sigx + xpysqr
    dsigx = (1) * dden  # (6)
    dxpysqr = (1) * dden  # (6)
    # backprop xpysqr = xpy**2
    dxpy = (2 * xpy) * dxpysqr  # (5)
    # backprop xpy = x + y
    dx = (1) * dxpy  # (4)
    dy = (1) * dxpy  # (4)
    # backprop sigx = 1.0 / (1 + math.exp(-x))
    dx += ((1 - sigx) * sigx) * dsigx  # Notice += !! See notes below #(3)
    # backprop num = x + sigy
    dx += (1) * dnum  # (2)
    dsigy = (1) * dnum  # (2)
    # backprop sigy = 1.0 / (1 + math.exp(-y))
    dy += ((1 - sigy) * sigy) * dsigy  # (1)
    backward = dict(num=dnum, invden=dinvden, den=dden, sigx=dsigx, xpysqr=dxpysqr,
                    xpy=dxpy, sigy=dsigy, x=dx, y=dy)
    return forward, backward


def staged_plain(x, y):
    return (x + sigma(y)) / (sigma(x) + (x + y) ** 2)


SIGMOIDS = {
    "method": lambda t: t.sigmoid(),
    "functional": F.sigmoid,
    "gates": lambda t: 1.0 / (1 + (-t).exp()),  # as the notes' code writes it
}


def staged_cygrad(x, y, sigmoid=SIGMOIDS["method"]):
    """The notes' stages as Tensor ops, each intermediate keeping its gradient."""
    t = {}
    t["sigy"] = kept(sigmoid(y))  # (1)
    t["num"] = kept(x + t["sigy"])  # (2)
    t["sigx"] = kept(sigmoid(x))  # (3)
    t["xpy"] = kept(x + y)  # (4)
    t["xpysqr"] = kept(t["xpy"] ** 2)  # (5)
    t["den"] = kept(t["sigx"] + t["xpysqr"])  # (6)
    t["invden"] = kept(1.0 / t["den"])  # (7)
    t["f"] = t["num"] * t["invden"]  # (8)
    return t


# notes 004, "Backprop in practice: Staged computation": "x = 3 # example values, y = -4"
STAGED_NOTES_POINT = (3.0, -4.0)


@pytest.mark.parametrize("sigmoid", list(SIGMOIDS))
@pytest.mark.parametrize("point", [STAGED_NOTES_POINT, (-1.5, 0.5), (0.2, 2.0)], ids=str)
def test_staged_computation_matches_notes_code(point, sigmoid):
    x, y = leaf(point[0]), leaf(point[1])
    t = staged_cygrad(x, y, SIGMOIDS[sigmoid])
    t["f"].backward()
    forward, backward = staged_notes_code(*point)
    for name, value in forward.items():  # every forward variable the notes name
        assert_close(t[name].data, value)
    for name, value in backward.items():  # d<name> for every variable, then dx and dy
        got = {"x": x, "y": y}[name] if name in ("x", "y") else t[name]
        assert_close(got.grad, value)


def test_staged_computation_against_finite_differences():
    # notes 004, "Backprop in practice: Staged computation", at x = 3, y = -4
    x, y = leaf(STAGED_NOTES_POINT[0]), leaf(STAGED_NOTES_POINT[1])
    t = staged_cygrad(x, y)
    t["f"].backward()
    assert_close(t["f"].data, staged_plain(*STAGED_NOTES_POINT))
    for i, grad in enumerate([x.grad, y.grad]):
        numeric = central_difference(staged_plain, STAGED_NOTES_POINT, i)
        assert abs(float(grad) - numeric) <= 1e-8 * (1 + abs(numeric))
    assert cg.gradcheck(lambda a, b: staged_cygrad(a, b)["f"],
                        [leaf(STAGED_NOTES_POINT[0]), leaf(STAGED_NOTES_POINT[1])])


# == Gradients add up at forks (notes 004 staged computation; notes 003 "multiple uses") ==

def test_gradients_add_up_at_forks_in_staged_computation():
    # notes 004, "Gradients add up at forks": x reaches f through xpy (4), sigx (3) and
    # num (2); the notes' code adds the three with +=
    x, y = leaf(STAGED_NOTES_POINT[0]), leaf(STAGED_NOTES_POINT[1])
    t = staged_cygrad(x, y)
    t["f"].backward()
    fwd, bwd = staged_notes_code(*STAGED_NOTES_POINT)
    through_xpy = 1 * bwd["xpy"]
    through_sigx = (1 - fwd["sigx"]) * fwd["sigx"] * bwd["sigx"]
    through_num = 1 * bwd["num"]
    assert_close(x.grad, through_xpy + through_sigx + through_num)
    # overwriting with = would leave only the last branch's share
    assert abs(float(x.grad) - through_num) > 0.1
    through_y_xpy = 1 * bwd["xpy"]
    through_sigy = (1 - fwd["sigy"]) * fwd["sigy"] * bwd["sigy"]
    assert_close(y.grad, through_y_xpy + through_sigy)


def test_gradients_add_up_at_forks_small_examples():
    # notes 004, "Gradients add up at forks": a variable used several times gets the sum
    x = leaf(3.0)
    (x * x).backward()                 # 3 + 3
    assert x.grad == 6
    x = leaf(3.0)
    (x + x + x).backward()             # 1 + 1 + 1
    assert x.grad == 3
    x, y = leaf(2.0), leaf(5.0)
    (x * y + x).backward()             # y + 1
    assert x.grad == 6 and y.grad == 2


def test_multiple_uses_sum_incoming_deltas():
    # notes 003, "Gradient (multiple uses)": the output of g(x) used n times:
    # delta_x = g'(x) * sum_k delta_k ("sum up all incoming delta-values")
    x_value, deltas = 0.4, (2.0, -3.0, 5.0)
    x = leaf(x_value)
    u = kept(x.sigmoid())              # g = sigmoid
    y = deltas[0] * u + deltas[1] * u + deltas[2] * u
    y.backward()
    assert_close(u.grad, sum(deltas))
    assert_close(x.grad, dsigma(x_value) * sum(deltas))
    # uses with value-dependent deltas: y = u * u + e^u, so delta = u + u + e^u
    x = leaf(x_value)
    u = kept(x.sigmoid())
    (u * u + u.exp()).backward()
    s = sigma(x_value)
    assert_close(u.grad, 2 * s + math.exp(s))
    assert_close(x.grad, dsigma(x_value) * (2 * s + math.exp(s)))


def test_multiple_outputs_sum_over_outputs():
    # notes 003, "Gradient (multiple outputs)": z_k = f_k(x); delta_x = sum_k f'_k(x) delta_zk
    x_value = -0.7
    x = leaf(x_value)
    z1, z2, z3 = kept(x.exp()), kept(x.tanh()), kept(x.sigmoid())
    y = 2.0 * z1 - 3.0 * z2 + 5.0 * z3
    y.backward()
    assert [float(z.grad) for z in (z1, z2, z3)] == [2.0, -3.0, 5.0]
    want = (math.exp(x_value) * 2.0 + (1 - math.tanh(x_value) ** 2) * -3.0
            + dsigma(x_value) * 5.0)
    assert_close(x.grad, want)


# == notes 004, "Patterns in backward flow" ===============================================

def test_patterns_in_backward_flow_circuit():
    # notes 004, "Patterns in backward flow": f = 2 (x y + max(z, w)). The text prints the
    # gradient 2.00 reaching the + gate, y = -4.00, and z > w; x, z, w are otherwise free:
    # x = 3, z = 2, w = -1 here.
    x, y, z, w = leaf(3.0), leaf(-4.0), leaf(2.0), leaf(-1.0)
    xy = kept(x * y)
    m = kept(cg.maximum(z, w))
    s = kept(xy + m)
    f = s * 2.0
    f.backward()
    assert s.grad == 2.00
    # "the + gate routed the gradient of 2.00 to both of its inputs, equally and unchanged"
    assert xy.grad == 2.00 and m.grad == 2.00
    # "the max operation routed the gradient of 2.00 to the z variable, which had a higher
    # value than w, and the gradient on w remains zero"
    assert z.grad == 2.00
    assert w.grad == 0
    # "the gradient on x is -8.00, which is -4.00 x 2.00" (the multiply gate swaps inputs)
    assert x.grad == -8.00
    assert x.grad == y.item() * xy.grad
    assert y.grad == x.item() * xy.grad


def test_scaling_the_data_by_1000_scales_the_weight_gradient_by_1000():
    # notes 004, "Patterns in backward flow", unintuitive effects: "if you multiplied all
    # input data examples x_i by 1000 during preprocessing, then the gradient on the
    # weights will be 1000 times larger"
    rng = np.random.default_rng(4)
    data = rng.standard_normal((6, 4))
    w_value = rng.standard_normal((3, 4))
    dscores = rng.standard_normal((6, 3))  # the gradient arriving on the scores w^T x_i
    grads = []
    for scale in (1.0, 1000.0):
        w = leaf(w_value)
        F.linear(cg.Tensor(data * scale), w).backward(dscores)
        grads.append(w.grad)
    assert_close(grads[1], 1000 * grads[0])
    # the multiply gate gives the small input a huge gradient and the large one a tiny one
    small, big = leaf(1e-3), leaf(1e3)
    (small * big).backward()
    assert small.grad == 1e3 and big.grad == 1e-3


# == notes 004, "Gradients for vectorized operations" =====================================

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matrix_matrix_multiply_gradient(dtype):
    # notes 004, "Gradients for vectorized operations": W = randn(5, 10), X = randn(10, 3),
    # D = W.dot(X), dD = randn(*D.shape); dW = dD.dot(X.T), dX = W.T.dot(dD)
    rng = np.random.default_rng(0)
    W_np = rng.standard_normal((5, 10)).astype(dtype)
    X_np = rng.standard_normal((10, 3)).astype(dtype)
    dD = rng.standard_normal((5, 3)).astype(dtype)
    W, X = leaf(W_np, dtype), leaf(X_np, dtype)
    D = W @ X
    assert D.shape == (5, 3)
    D.backward(dD)
    # dimension analysis: dW has W's size [5 x 10], dX has X's size [10 x 3]
    assert W.grad.shape == (5, 10) and X.grad.shape == (10, 3)
    assert W.grad.dtype == dtype and X.grad.dtype == dtype
    assert_close(D.data, W_np.dot(X_np), dtype)
    assert_close(W.grad, dD.dot(X_np.T), dtype)
    assert_close(X.grad, W_np.T.dot(dD), dtype)


def test_matrix_multiply_gradient_through_transposes():
    # notes 004, "Gradients for vectorized operations": D = W X written as (X^T W^T)^T has
    # the same gradients, dW = dD X^T and dX = W^T dD
    rng = np.random.default_rng(1)
    W_np, X_np, dD = (rng.standard_normal(s) for s in ((5, 10), (10, 3), (5, 3)))
    W, X = leaf(W_np), leaf(X_np)
    (X.T @ W.T).T.backward(dD)
    assert_close(W.grad, dD.dot(X_np.T))
    assert_close(X.grad, W_np.T.dot(dD))


# == notes 003 =============================================================================

@pytest.mark.parametrize("x1_value, x2_value", [(1.0, 2.0), (-3.0, 0.5), (0.25, -4.0)])
def test_recap_gradient_of_x1_squared_plus_5_x1_x2(x1_value, x2_value):
    # notes 003, "Recap: Gradient": f = x1^2 + 5 x1 x2, df/dx1 = 2 x1 + 5 x2, df/dx2 = 5 x1
    x1, x2 = leaf(x1_value), leaf(x2_value)
    f = x1 ** 2 + 5 * x1 * x2
    f.backward()
    assert_close(f.data, x1_value ** 2 + 5 * x1_value * x2_value)
    assert_close(x1.grad, 2 * x1_value + 5 * x2_value)
    assert_close(x2.grad, 5 * x1_value)
    # the gradient gathered in one vector, of x's shape (denominator layout)
    x = leaf([x1_value, x2_value])
    (x[0] ** 2 + 5 * x[0] * x[1]).backward()
    assert_close(x.grad, [2 * x1_value + 5 * x2_value, 5 * x1_value])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_derivative_at_0_is_a_quarter(dtype):
    # notes 003, "Gradient (single univariate function)" and its "Example": y = sigma(u) at
    # u = 0: delta_u = sigma(0)(1 - sigma(0)) = 0.25 * 1 = 0.25
    u = leaf(0.0, dtype)
    y = u.sigmoid()
    y.backward()
    assert y.item() == 0.5
    assert u.grad == 0.25 and u.grad.dtype == dtype
    # the kernel API, on the forward's output y = sigma(0) = 0.5
    y0 = cg.kernels.sigmoid_forward(np.zeros(3, dtype))
    np.testing.assert_array_equal(y0, [0.5] * 3)
    delta = cg.kernels.sigmoid_backward(np.ones(3, dtype), y0)
    np.testing.assert_array_equal(delta, [0.25] * 3)
    assert delta.dtype == dtype
    # with an upstream delta_y other than 1 the kernel scales it: delta_u = 0.25 delta_y
    delta = cg.kernels.sigmoid_backward(np.array([2.0, -4.0], dtype), np.array([0.5, 0.5],
                                                                                dtype))
    np.testing.assert_array_equal(delta, [0.5, -1.0])


def test_composition_sigmoid_of_log2():
    # notes 003, "Gradient (composition of two univariate functions)", its "Example":
    # y = sigma(u), u = log2(v), at u = 0 (v = 1): delta_u = 0.25 * 1 = 0.25,
    # delta_v = 1 / (v log(2)) * delta_u ~= 1.44 * 0.25 = 0.36
    v = leaf(1.0)
    u = kept(v.log() / math.log(2))
    y = u.sigmoid()
    y.backward()
    assert u.item() == 0
    assert u.grad == 0.25
    assert_printed(v.grad, "0.36")
    assert_close(v.grad, 0.25 / math.log(2))
    # the local derivative log2'(v) at v = 1 alone
    v = leaf(1.0)
    (v.log() / math.log(2)).backward()
    assert_printed(v.grad, "1.44")


def test_composition_of_n_univariate_functions_is_product_of_local_gradients():
    # notes 003, "Gradient (composition of univariate functions)": delta_{z_(i-1)} =
    # f'_i(z_(i-1)) delta_{z_i}: the gradient is the product of the local gradients on the path
    x_value = 0.3
    x = leaf(x_value)
    z1 = kept(x.sigmoid())
    z2 = kept(z1.tanh())
    z3 = kept(z2.exp())
    y = z3 ** 3
    y.backward()
    v1 = sigma(x_value)
    v2 = math.tanh(v1)
    v3 = math.exp(v2)
    local = [dsigma(x_value), 1 - v2 ** 2, v3, 3 * v3 ** 2]  # f1' ... f4'
    assert_close(z3.grad, local[3])
    assert_close(z2.grad, local[2] * local[3])
    assert_close(z1.grad, local[1] * local[2] * local[3])
    assert_close(x.grad, local[0] * local[1] * local[2] * local[3])


@pytest.mark.parametrize("w_value, x_value, b_value", [(2.0, -1.0, 0.5), (-0.3, 4.0, -2.0)])
def test_linear_unit_multiple_inputs(w_value, x_value, b_value):
    # notes 003, "Gradient (multiple inputs)": y = wx + b; delta_x = w, delta_w = x,
    # delta_b = 1
    w, x, b = leaf(w_value), leaf(x_value), leaf(b_value)
    (w * x + b).backward()
    assert x.grad == w_value and w.grad == x_value and b.grad == 1


def test_compute_graph_matmul_matmul_norm():
    # notes 003, "Forward propagation (example)" / "Backward propagation (example)": inputs
    # x, W1^T, W2^T; z1 = W1^T x, z2 = W2^T z1, y_hat = ||z2||; delta_y_hat = 1
    rng = np.random.default_rng(3)
    x_np = rng.standard_normal((4, 1))
    W1T_np = rng.standard_normal((3, 4))
    W2T_np = rng.standard_normal((2, 3))
    x, W1T, W2T = leaf(x_np), leaf(W1T_np), leaf(W2T_np)
    z1 = kept(W1T @ x)
    z2 = kept(W2T @ z1)
    y_hat = ((z2 ** 2).sum()) ** 0.5
    y_hat.backward()
    z1_np = W1T_np @ x_np
    z2_np = W2T_np @ z1_np
    assert_close(y_hat.data, np.linalg.norm(z2_np))
    d_z2 = z2_np / np.linalg.norm(z2_np)       # gradient of the norm
    d_z1 = W2T_np.T @ d_z2                      # back through z2 = W2^T z1
    assert_close(z2.grad, d_z2)
    assert_close(W2T.grad, d_z2 @ z1_np.T)
    assert_close(z1.grad, d_z1)
    assert_close(W1T.grad, d_z1 @ x_np.T)
    assert_close(x.grad, W1T_np.T @ d_z1)
    # the same graph with W1, W2 as the leaves and .T as an operator
    W1, W2 = leaf(W1T_np.T), leaf(W2T_np.T)
    (((W2.T @ (W1.T @ cg.Tensor(x_np))) ** 2).sum() ** 0.5).backward()
    assert_close(W1.grad, (d_z1 @ x_np.T).T)
    assert_close(W2.grad, (d_z2 @ z1_np.T).T)


def test_jacobian_transpose_times_delta_out():
    # notes 003, "Gradient computation in general": for v_out = f(v_in),
    # delta_in = J_f(v_in)^T delta_out
    rng = np.random.default_rng(5)
    A = rng.standard_normal((3, 4))
    v_np = rng.standard_normal(4)
    delta_out = rng.standard_normal(3)
    v = leaf(v_np)
    out = (cg.Tensor(A) @ v).tanh()
    assert out.shape == (3,)
    out.backward(delta_out)
    J = (1 - np.tanh(A @ v_np) ** 2)[:, None] * A   # J[o, i] = d out_o / d v_i
    # the analytic Jacobian against central differences
    J_numeric = np.empty_like(J)
    for i in range(4):
        step = np.zeros(4)
        step[i] = 1e-6
        J_numeric[:, i] = (np.tanh(A @ (v_np + step)) - np.tanh(A @ (v_np - step))) / 2e-6
    np.testing.assert_allclose(J, J_numeric, rtol=1e-6, atol=1e-8)
    assert_close(v.grad, J.T @ delta_out)


# == notes 000, "The Chain Rule revisited" / "Using the computation graph" ================

# (w, b, x, t, lambda): the notes give the formulas only; several points are checked
CHAIN_RULE_POINTS = [(0.5, -0.2, 1.5, 1.0, 0.1), (-1.3, 0.7, -2.0, 0.0, 0.01),
                     (2.0, 1.0, 0.3, 0.25, 1.0), (0.0, 0.0, 4.0, 1.0, 0.5)]


@pytest.mark.parametrize("point", CHAIN_RULE_POINTS, ids=str)
@pytest.mark.parametrize("penalty", ["ops", "l2_penalty"])
def test_univariate_chain_rule_with_regularizer(point, penalty):
    # notes 000, "The Chain Rule revisited": z = wx + b, y = sigma(z), L = 1/2 (y - t)^2,
    # R = 1/2 w^2, L_reg = L + lambda R
    w_value, b_value, x_value, t_value, lam = point
    w, b = leaf(w_value), leaf(b_value)
    z = kept(w * x_value + b)
    y = kept(F.sigmoid(z))
    L = kept(0.5 * (y - t_value) ** 2)
    if penalty == "ops":
        R = kept(0.5 * w ** 2)
        L_reg = L + lam * R
    else:  # l2_penalty is lambda/2 w^2 = lambda R
        R = None
        L_reg = L + F.l2_penalty([w], lam)
    L_reg.backward()
    s = sigma(w_value * x_value + b_value)
    # "How you would have done it in calculus class": the expanded cost and its derivatives
    # dL_reg/dw = (sigma(wx + b) - t) sigma'(wx + b) x + lambda w
    # dL_reg/db = (sigma(wx + b) - t) sigma'(wx + b)
    assert_close(L_reg.data, 0.5 * (s - t_value) ** 2 + lam / 2 * w_value ** 2)
    dsig = dsigma(w_value * x_value + b_value)
    assert_close(w.grad, (s - t_value) * dsig * x_value + lam * w_value)
    assert_close(b.grad, (s - t_value) * dsig)
    # "Example Walkthrough": L_reg_bar = 1, R_bar = lambda, L_bar = 1, y_bar = L_bar (y - t),
    # z_bar = y_bar sigma'(z), w_bar = z_bar x + R_bar w, b_bar = z_bar
    y_bar = 1.0 * (s - t_value)
    z_bar = y_bar * dsig
    assert L.grad == 1
    if R is not None:
        assert_close(R.grad, lam)
    assert_close(y.grad, y_bar)
    assert_close(z.grad, z_bar)
    assert_close(w.grad, z_bar * x_value + lam * w_value)
    assert_close(b.grad, z_bar)


@pytest.mark.parametrize("t_value", [-0.8, 0.0, 1.1])
def test_multivariable_chain_rule_easy_case(t_value):
    # notes 000, "Multivariable chain rule: the easy case": d/dt f(x(t), y(t)) =
    # df/dx dx/dt + df/dy dy/dt, here f = x y + y, x(t) = t^2, y(t) = e^t
    t = leaf(t_value)
    x, y = kept(t ** 2), kept(t.exp())
    f = x * y + y
    f.backward()
    xv, yv = t_value ** 2, math.exp(t_value)
    x_bar, y_bar = yv, xv + 1
    assert_close(x.grad, x_bar)
    assert_close(y.grad, y_bar)
    assert_close(t.grad, x_bar * 2 * t_value + y_bar * yv)   # t_bar = x_bar dx/dt + y_bar dy/dt


def multilayer_scalar_formulas(W1, b1, W2, b2, x, t):
    """notes 000, "Backprop on a multilayer net", "Derivation of Gradients": the scalar
    formulas, one loop per index, in plain Python."""
    n_hidden, n_in, n_out = len(W1), len(x), len(W2)
    z = [sum(W1[i][j] * x[j] for j in range(n_in)) + b1[i] for i in range(n_hidden)]
    h = [sigma(z_i) for z_i in z]
    y = [sum(W2[k][i] * h[i] for i in range(n_hidden)) + b2[k] for k in range(n_out)]
    L = 0.5 * sum((y[k] - t[k]) ** 2 for k in range(n_out))
    y_bar = [1.0 * (y[k] - t[k]) for k in range(n_out)]
    W2_bar = [[y_bar[k] * h[i] for i in range(n_hidden)] for k in range(n_out)]
    b2_bar = list(y_bar)
    h_bar = [sum(y_bar[k] * W2[k][i] for k in range(n_out)) for i in range(n_hidden)]
    z_bar = [h_bar[i] * dsigma(z[i]) for i in range(n_hidden)]
    W1_bar = [[z_bar[i] * x[j] for j in range(n_in)] for i in range(n_hidden)]
    b1_bar = list(z_bar)
    return L, dict(W1=W1_bar, b1=b1_bar, W2=W2_bar, b2=b2_bar, h=h_bar, z=z_bar, y=y_bar)


@pytest.mark.parametrize("orientation", ["column", "vector", "linear"])
def test_multilayer_net_backward(orientation):
    # notes 000, "Backprop on a multilayer net": z = W1 x + b1, h = sigma(z),
    # y = W2 h + b2, L = 1/2 ||t - y||^2; vectorized backward pass:
    # y_bar = y - t, W2_bar = y_bar h^T, b2_bar = y_bar, h_bar = W2^T y_bar,
    # z_bar = h_bar o sigma'(z), W1_bar = z_bar x^T, b1_bar = z_bar
    rng = np.random.default_rng(7)
    n_in, n_hidden, n_out = 3, 4, 2
    W1_np, b1_np = rng.standard_normal((n_hidden, n_in)), rng.standard_normal(n_hidden)
    W2_np, b2_np = rng.standard_normal((n_out, n_hidden)), rng.standard_normal(n_out)
    x_np, t_np = rng.standard_normal(n_in), rng.standard_normal(n_out)

    # the vectorized formulas in NumPy (column vectors)
    x_c, t_c = x_np[:, None], t_np[:, None]
    z_c = W1_np @ x_c + b1_np[:, None]
    h_c = 1 / (1 + np.exp(-z_c))
    y_c = W2_np @ h_c + b2_np[:, None]
    y_bar = 1.0 * (y_c - t_c)
    W2_bar, b2_bar = y_bar @ h_c.T, y_bar
    h_bar = W2_np.T @ y_bar
    z_bar = h_bar * h_c * (1 - h_c)
    W1_bar, b1_bar = z_bar @ x_c.T, z_bar
    # ... agree with the scalar formulas
    L_scalar, scalar = multilayer_scalar_formulas(W1_np.tolist(), b1_np.tolist(),
                                                  W2_np.tolist(), b2_np.tolist(),
                                                  x_np.tolist(), t_np.tolist())
    for name, value in dict(W1=W1_bar, b1=b1_bar, W2=W2_bar, b2=b2_bar, h=h_bar, z=z_bar,
                            y=y_bar).items():
        assert_close(np.reshape(scalar[name], value.shape), value)

    W1, W2 = leaf(W1_np), leaf(W2_np)
    if orientation == "column":      # the notes' orientation, x a column
        b1, b2 = leaf(b1_np[:, None]), leaf(b2_np[:, None])
        x, t = cg.Tensor(x_c), cg.Tensor(t_c)
        z = kept(W1 @ x + b1)
        h = kept(z.sigmoid())
        y = kept(W2 @ h + b2)
    elif orientation == "vector":    # 1-D vectors
        b1, b2 = leaf(b1_np), leaf(b2_np)
        x, t = cg.Tensor(x_np), cg.Tensor(t_np)
        z = kept(W1 @ x + b1)
        h = kept(z.sigmoid())
        y = kept(W2 @ h + b2)
    else:                            # functional.linear: x a row, y = x @ W.T + b
        b1, b2 = leaf(b1_np), leaf(b2_np)
        x, t = cg.Tensor(x_np[None, :]), cg.Tensor(t_np[None, :])
        z = kept(F.linear(x, W1, b1))
        h = kept(F.sigmoid(z))
        y = kept(F.linear(h, W2, b2))
    L = 0.5 * ((t - y) ** 2).sum()
    L.backward()
    assert_close(L.data, L_scalar)
    assert_close(y.grad.reshape(-1), y_bar.reshape(-1))
    assert_close(h.grad.reshape(-1), h_bar.reshape(-1))
    assert_close(z.grad.reshape(-1), z_bar.reshape(-1))
    assert_close(W2.grad, W2_bar)
    assert_close(W1.grad, W1_bar)
    assert_close(b2.grad.reshape(-1), b2_bar.reshape(-1))
    assert_close(b1.grad.reshape(-1), b1_bar.reshape(-1))


# == notes 002, "Backpropagation in MLP (Tensor-level Computation)" =======================

PHI = {  # the hidden activation phi: (cygrad function, NumPy phi, NumPy phi')
    "sigmoid": (F.sigmoid, lambda z: 1 / (1 + np.exp(-z)),
                lambda z: (1 / (1 + np.exp(-z))) * (1 - 1 / (1 + np.exp(-z)))),
    "tanh": (F.tanh, np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "relu": (F.relu, lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
}


def mlp_notes_formulas(W1, W2, x, lam, phi, phi_prime, loss, label, target):
    """notes 002, "Forward Propagation II-V" and "Backpropagation III-IX", in NumPy with
    x a column vector."""
    z = W1 @ x                                            # z = W1 x
    h = phi(z)                                            # h = phi(z)
    o = W2 @ h                                            # o = W2 h
    q = o.shape[0]
    if loss == "cross_entropy":   # l(o, y) = -log softmax(o)[y]
        p = np.exp(o - o.max()) / np.exp(o - o.max()).sum()
        L = -math.log(p[label, 0])
        dL_do = p - np.eye(q)[:, [label]]
    else:                         # l(o, y) = mean((o - target)^2)
        L = float(np.mean((o - target) ** 2))
        dL_do = 2 * (o - target) / q
    s = lam / 2 * (np.sum(W1 ** 2) + np.sum(W2 ** 2))    # IV: s = lambda/2 (|W1|^2 + |W2|^2)
    dJ_dL, dJ_ds = 1.0, 1.0                               # III
    dJ_do = dJ_dL * dL_do                                 # IV
    ds_dW1, ds_dW2 = lam * W1, lam * W2                   # V
    dJ_dW2 = dJ_do @ h.T + dJ_ds * ds_dW2                 # VI
    dJ_dh = W2.T @ dJ_do                                  # VII
    dJ_dz = dJ_dh * phi_prime(z)                          # VIII
    dJ_dW1 = dJ_dz @ x.T + dJ_ds * ds_dW1                 # IX
    return dict(L=L, s=s, J=L + s), dict(o=dJ_do, h=dJ_dh, z=dJ_dz, W1=dJ_dW1, W2=dJ_dW2)


def mlp_setup(dtype, seed=11):
    rng = np.random.default_rng(seed)
    d, n_hidden, q = 5, 4, 3          # x in R^d, W1 in R^(h x d), W2 in R^(q x h)
    W1 = rng.standard_normal((n_hidden, d)).astype(dtype)
    W2 = rng.standard_normal((q, n_hidden)).astype(dtype)
    x = rng.standard_normal((d, 1)).astype(dtype)
    label = 2
    target = rng.standard_normal((q, 1)).astype(dtype)
    return W1, W2, x, label, target


def mlp_cygrad(W1, W2, x_np, label, target, lam, phi, loss, orientation):
    """z = W1 x, h = phi(z), o = W2 h, L = l(o, y), s = lambda/2 (||W1||^2 + ||W2||^2),
    J = L + s, with every named intermediate keeping its gradient."""
    q = W2.shape[0]
    if orientation == "column":       # the notes' orientation: o = W2 h with x a column
        z = kept(W1 @ cg.Tensor(x_np))
        h = kept(phi(z))
        o = kept(W2 @ h)              # (q, 1)
        o_row = o.reshape(1, q)
    else:                             # functional.linear with weights (out, in): x a row
        z = kept(F.linear(cg.Tensor(x_np.T), W1))
        h = kept(phi(z))
        o = kept(F.linear(h, W2))     # (1, q)
        o_row = o
    if loss == "cross_entropy":
        L = kept(F.cross_entropy(o_row, np.array([label])))
    else:
        L = kept(F.mse_loss(o_row, cg.Tensor(target.T)))
    s = kept(F.l2_penalty([W1, W2], lam))
    J = L + s
    return J, dict(z=z, h=h, o=o, L=L, s=s)


@pytest.mark.parametrize("orientation", ["column", "linear"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("phi_name", list(PHI))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlp_with_l2_regularisation(phi_name, loss, orientation, dtype):
    # notes 002, "Forward Propagation I-V" and "Backpropagation III-IX": 1 hidden layer,
    # no bias, linear output; dJ/dW2 = dJ/do h^T + lambda W2,
    # dJ/dh = W2^T dJ/do, dJ/dz = dJ/dh (.) phi'(z), dJ/dW1 = dJ/dz x^T + lambda W1
    lam = 0.1
    phi, phi_np, phi_prime = PHI[phi_name]
    W1_np, W2_np, x_np, label, target = mlp_setup(dtype)
    W1, W2 = leaf(W1_np, dtype), leaf(W2_np, dtype)
    J, t = mlp_cygrad(W1, W2, x_np, label, target, lam, phi, loss, orientation)
    J.backward()
    values, want = mlp_notes_formulas(*(a.astype(np.float64) for a in (W1_np, W2_np, x_np)),
                                      lam, phi_np, phi_prime, loss, label,
                                      target.astype(np.float64))
    assert_close(t["L"].data, values["L"], dtype)
    assert_close(t["s"].data, values["s"], dtype)
    assert_close(J.data, values["J"], dtype)
    assert t["L"].grad == 1 and t["s"].grad == 1          # dJ/dL = 1, dJ/ds = 1
    as_notes = (lambda g: g) if orientation == "column" else (lambda g: g.T)
    for name in ("o", "h", "z"):
        assert_close(as_notes(t[name].grad), want[name], dtype)
    assert_close(W2.grad, want["W2"], dtype)
    assert_close(W1.grad, want["W1"], dtype)
    assert W1.grad.dtype == dtype and W2.grad.dtype == dtype


def test_regulariser_gradient_is_lambda_w():
    # notes 002, "Backpropagation V": ds/dW1 = lambda W1, ds/dW2 = lambda W2, for
    # s = lambda/2 (||W1||_F^2 + ||W2||_F^2), with the norms taken over the flattened matrix
    lam = 0.3
    W1_np, W2_np, _, _, _ = mlp_setup(np.float64)
    W1, W2 = leaf(W1_np), leaf(W2_np)
    s = F.l2_penalty([W1, W2], lam)
    assert_close(s.data, lam / 2 * (np.linalg.norm(W1_np.ravel()) ** 2
                                     + np.linalg.norm(W2_np.ravel()) ** 2))
    s.backward()
    assert_close(W1.grad, lam * W1_np)
    assert_close(W2.grad, lam * W2_np)
    # the same regulariser written with Tensor ops
    W1, W2 = leaf(W1_np), leaf(W2_np)
    (lam / 2 * ((W1 ** 2).sum() + (W2 ** 2).sum())).backward()
    assert_close(W1.grad, lam * W1_np)
    assert_close(W2.grad, lam * W2_np)


def test_mlp_gradient_descent_update():
    # notes 002, "Backpropagation X": W(l) <- W(l) - eta dJ/dW(l), l in {1, 2}, eta in (0, 1]
    lam, eta = 0.1, 0.5
    W1_np, W2_np, x_np, label, target = mlp_setup(np.float64)
    W1, W2 = leaf(W1_np), leaf(W2_np)
    J, _ = mlp_cygrad(W1, W2, x_np, label, target, lam, F.sigmoid, "cross_entropy",
                      "column")
    J.backward()
    grads = W1.grad.copy(), W2.grad.copy()
    cg.optim.SGD([W1, W2], lr=eta).step()
    assert_close(W1.data, W1_np - eta * grads[0])
    assert_close(W2.data, W2_np - eta * grads[1])
    # dJ/dW = dL/dW + lambda W, so SGD's weight_decay = lambda on L alone takes the same step
    V1, V2 = leaf(W1_np), leaf(W2_np)
    _, t = mlp_cygrad(V1, V2, x_np, label, target, lam, F.sigmoid, "cross_entropy", "column")
    t["L"].backward()
    cg.optim.SGD([V1, V2], lr=eta, weight_decay=lam).step()
    assert_close(V1.data, W1.data)
    assert_close(V2.data, W2.data)
